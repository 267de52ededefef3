//! Lays out the release `storeguard` binary's code so that what a daemon runs (start-up, a
//! sweep, the idle loop) sits together: the kernel maps code 64 KB around every page fault, so
//! functions scattered over the whole text keep most of it resident. The list of functions is
//! `scripts/link-order.txt` (see `scripts/link-order` to regenerate it); names that are not in
//! the binary are skipped, so a stale list only costs memory, never correctness.
//!
//! Only where the linker is LLD, which reads `--symbol-ordering-file`: x86_64 Linux with Rust
//! 1.90 or later (its default linker), unless the build picks another linker.

use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=scripts/link-order.txt");
    let env = |k: &str| std::env::var(k).unwrap_or_default();
    let order = Path::new(&env("CARGO_MANIFEST_DIR")).join("scripts/link-order.txt");
    let wanted = env("PROFILE") == "release"
        && env("TARGET") == "x86_64-unknown-linux-gnu"
        && !env("CARGO_ENCODED_RUSTFLAGS").contains("link")
        && std::env::var_os("CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER").is_none()
        && rustc_links_with_lld(&env("RUSTC"))
        && order.is_file();
    if wanted {
        let arg = "cargo:rustc-link-arg-bin=storeguard";
        println!("{arg}=-Wl,--symbol-ordering-file={}", order.display());
        println!("{arg}=-Wl,--no-warn-symbol-ordering");
    }
}

/// Whether this rustc links x86_64 Linux binaries with its bundled LLD by default (1.90+).
fn rustc_links_with_lld(rustc: &str) -> bool {
    let Ok(out) = std::process::Command::new(rustc).arg("--version").output() else {
        return false;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    // "rustc 1.95.0 (59807616e 2026-04-14)"
    let mut parts = text
        .split_whitespace()
        .nth(1)
        .unwrap_or("")
        .split(['.', '-'])
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major, minor) >= (1, 90)
}
