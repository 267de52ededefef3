//! Lays out the release `storeguard` binary's code so that what a daemon runs (start-up, a
//! sweep, the idle loop) sits together: the kernel maps code 64 KB around every page fault, so
//! functions scattered over the whole text keep most of it resident. The list of functions is
//! `scripts/link-order.txt` (see `scripts/link-order` to regenerate it); names that are not in
//! the binary are skipped, so a stale list only costs memory, never correctness.
//!
//! The same build packs the binary's relative relocations (`-z pack-relative-relocs`, DT_RELR):
//! a PIE carries one 24-byte record per pointer the loader must fix up, 53,500 of them (1.3 MB)
//! read at every start and kept resident, where the packed form is a 22 KB bitmap. The loader
//! must know the format (glibc 2.36 or later), so it is only used when the glibc it is built
//! against has it, and such a binary then needs glibc 2.36 where it runs;
//! `STOREGUARD_NO_RELR=1` builds one for an older system.
//!
//! Only where the linker is LLD, which reads `--symbol-ordering-file`: x86_64 Linux with Rust
//! 1.90 or later (its default linker), unless the build picks another linker.

use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=scripts/link-order.txt");
    let env = |k: &str| std::env::var(k).unwrap_or_default();
    let order = Path::new(&env("CARGO_MANIFEST_DIR")).join("scripts/link-order.txt");
    let lld = env("PROFILE") == "release"
        && env("TARGET") == "x86_64-unknown-linux-gnu"
        && !env("CARGO_ENCODED_RUSTFLAGS").contains("link")
        && std::env::var_os("CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER").is_none()
        && rustc_links_with_lld(&env("RUSTC"));
    if !lld {
        return;
    }
    let arg = "cargo:rustc-link-arg-bin=storeguard";
    if order.is_file() {
        println!("{arg}=-Wl,--symbol-ordering-file={}", order.display());
        println!("{arg}=-Wl,--no-warn-symbol-ordering");
    }
    println!("cargo:rerun-if-env-changed=STOREGUARD_NO_RELR");
    if glibc_at_least(2, 36) && std::env::var_os("STOREGUARD_NO_RELR").is_none() {
        println!("{arg}=-Wl,-z,pack-relative-relocs");
    }
}

/// Whether the C library the binary links against is glibc of at least `major.minor`, as
/// `getconf GNU_LIBC_VERSION` says ("glibc 2.36"); false when that cannot be told.
fn glibc_at_least(major: u32, minor: u32) -> bool {
    let text = command_output("getconf", "GNU_LIBC_VERSION");
    text.trim()
        .strip_prefix("glibc ")
        .is_some_and(|version| major_minor(version) >= (major, minor))
}

/// Whether this rustc links x86_64 Linux binaries with its bundled LLD by default (1.90+).
fn rustc_links_with_lld(rustc: &str) -> bool {
    // "rustc 1.95.0 (59807616e 2026-04-14)"
    let text = command_output(rustc, "--version");
    text.split_whitespace()
        .nth(1)
        .is_some_and(|version| major_minor(version) >= (1, 90))
}

/// What `program arg` prints on stdout; empty when it cannot be run.
fn command_output(program: &str, arg: &str) -> String {
    std::process::Command::new(program)
        .arg(arg)
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
        .unwrap_or_default()
}

/// The first two numbers of a version such as "2.36", "1.95.0" or "1.96.0-nightly"; a part
/// that is not a number counts as 0.
fn major_minor(version: &str) -> (u32, u32) {
    let mut parts = version
        .split(['.', '-'])
        .map(|p| p.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}
