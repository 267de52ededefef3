//! The CLI as a user runs it: the real binary, real files, the reference `age` CLI.

use crate::util::{Run, Setup, storeguard};
use std::fs;
use std::os::unix::fs::PermissionsExt;

/// Exact messages for every class of bad config, pinned as trycmd cases in tests/cmd/.
#[test]
fn cli_cases() {
    trycmd::TestCases::new().case("tests/cmd/*.toml");
}

#[test]
fn every_shipped_config_parses() {
    let mut n = 0;
    for entry in fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/config")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            storeguard::config::Config::load(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            n += 1;
        }
    }
    assert!(n >= 2, "expected the starter and the example config");
}

#[test]
fn init_then_config_check_passes() {
    let s = Setup::init();
    let out = s.run(&["config", "check"], None);
    assert!(out.status.success(), "{}", out.stderr_str());
    assert!(out.stdout_str().contains(": OK"));
    // init never overwrites.
    let again = s.run(&["init"], None);
    assert!(!again.status.success());
    assert!(
        again
            .stderr_str()
            .contains("already exists; init never overwrites anything")
    );
    let mode = fs::metadata(s.dir.path().join("identity.txt"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
}

#[test]
fn vault_round_trip_show_masks_and_reveal_prints() {
    let s = Setup::init();
    s.add_ozon_store("ozon-main", "1234567", "CANARY-cli-roundtrip-0001");
    let shown = s.run(&["vault", "show", "store/ozon-main"], None);
    assert!(shown.status.success(), "{}", shown.stderr_str());
    assert!(shown.stdout_str().contains("********0001"));
    assert!(!shown.stdout_str().contains("CANARY-cli-roundtrip"));
    let revealed = s.run(&["vault", "show", "--reveal", "store/ozon-main"], None);
    assert!(revealed.stdout_str().contains("CANARY-cli-roundtrip-0001"));
    let list = s.run(&["vault", "list"], None);
    assert!(list.status.success(), "{}", list.stdout_str());
    assert!(list.stdout_str().contains("store/ozon-main"));
    let verify = s.run(&["vault", "verify"], None);
    assert!(verify.status.success());
    assert!(
        verify.stdout_str().contains("2 entries, 0 bad"),
        "{}",
        verify.stdout_str()
    );
    let rm = s.run(&["vault", "rm", "store/ozon-main"], None);
    assert!(rm.status.success());
    let list = s.run(&["vault", "list"], None);
    assert!(
        !list.status.success(),
        "a configured store without an entry is reported"
    );
    assert!(list.stdout_str().contains("MISSING"));
}

#[test]
fn age_cli_decrypts_what_storeguard_wrote_and_back() {
    let age = crate::util::age_cli();
    let s = Setup::init();
    s.add_ozon_store("ozon-main", "1234567", "CANARY-cli-age-0002");
    let file = s.dir.path().join("vault/stores/ozon-main.age");
    let out = std::process::Command::new(&age)
        .args(["-d", "-i"])
        .arg(s.dir.path().join("identity.txt"))
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plain = String::from_utf8(out.stdout).unwrap();
    assert!(
        plain.contains("api_key = \"CANARY-cli-age-0002\""),
        "{plain}"
    );

    // An entry written by `age -a -R recipients.txt` is read by storeguard.
    let plain = "client_id = \"1234567\"\napi_key = \"CANARY-cli-age-0003\"\n";
    let mut child = std::process::Command::new(&age)
        .args(["-a", "-R"])
        .arg(s.dir.path().join("vault/recipients.txt"))
        .arg("-o")
        .arg(&file)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(plain.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success());
    let shown = s.run(&["vault", "show", "--reveal", "store/ozon-main"], None);
    assert!(shown.status.success(), "{}", shown.stderr_str());
    assert!(shown.stdout_str().contains("CANARY-cli-age-0003"));
    assert!(s.run(&["config", "check"], None).status.success());
}

#[test]
fn wrong_identity_truncation_and_bit_flips_are_clean_errors() {
    let s = Setup::init();
    s.add_ozon_store("ozon-main", "1234567", "CANARY-cli-trunc-0004");
    let file = s.dir.path().join("vault/stores/ozon-main.age");
    let good = fs::read(&file).unwrap();

    let check = |label: &str| {
        let before = fs::read(&file).unwrap();
        let out = s.run(&["vault", "show", "store/ozon-main"], None);
        let err = out.stderr_str();
        assert!(!err.contains("panicked"), "{label}: {err}");
        assert!(!err.contains("CANARY"), "{label}: {err}");
        assert!(!out.stdout_str().contains("CANARY"), "{label}");
        assert_eq!(fs::read(&file).unwrap(), before, "{label}: file changed");
        out
    };

    // Every truncation offset.
    for cut in 0..good.len() {
        fs::write(&file, &good[..cut]).unwrap();
        let out = check(&format!("cut at {cut}"));
        if cut + 2 < good.len() {
            assert!(!out.status.success(), "cut at {cut} succeeded");
            assert!(
                out.stderr_str().contains("cannot decrypt"),
                "cut at {cut}: {}",
                out.stderr_str()
            );
        }
    }
    // Bit flips, one byte in every 7 (covers header, armor and payload).
    for i in (0..good.len()).step_by(7) {
        let mut bad = good.clone();
        bad[i] ^= 0x04;
        fs::write(&file, &bad).unwrap();
        check(&format!("flip at {i}"));
    }
    fs::write(&file, &good).unwrap();

    // Another identity.
    let other = s.dir.path().join("other.txt");
    storeguard::vault::Identity::generate()
        .write_new(&other)
        .unwrap();
    s.set_identity(&other);
    let out = check("wrong identity");
    assert!(!out.status.success());
    assert!(
        out.stderr_str().contains("no matching key"),
        "{}",
        out.stderr_str()
    );
}

#[test]
fn identity_readable_by_others_is_refused_like_ssh() {
    let s = Setup::init();
    let id = s.dir.path().join("identity.txt");
    fs::set_permissions(&id, fs::Permissions::from_mode(0o644)).unwrap();
    let out = s.run(&["config", "check"], None);
    assert!(!out.status.success());
    let err = out.stderr_str();
    assert!(err.contains("WARNING: UNPROTECTED IDENTITY FILE!"), "{err}");
    assert!(err.contains("Permissions 0644"), "{err}");
    assert!(
        err.contains(&format!("chmod 600 {}", id.display())),
        "{err}"
    );
    fs::set_permissions(&id, fs::Permissions::from_mode(0o600)).unwrap();
    assert!(s.run(&["config", "check"], None).status.success());
}

#[test]
fn store_add_keeps_the_file_byte_for_byte() {
    let s = Setup::init();
    let path = s.dir.path().join("storeguard.toml");
    let mut original = fs::read_to_string(&path).unwrap();
    original.push_str("\n# 手工注释: keep me   \n[[store]]   # trailing comment\nid = \"wb\"  \nmarketplace = \"ozon\"\naccount = \"42\"\nname = \"Ozon 旧店\"\nenabled = false\n\n\n");
    fs::write(&path, &original).unwrap();
    s.add_ozon_store("ozon-new", "777", "CANARY-cli-add-0005");
    let after = fs::read_to_string(&path).unwrap();
    assert!(after.starts_with(&original), "the existing text changed");
    let added = &after[original.len()..];
    assert!(added.contains("[[store]]\nid = \"ozon-new\""), "{added}");
    assert!(!after.contains("CANARY"));
    assert!(s.run(&["config", "check"], None).status.success());
}

/// `store add` of an Ozon store `id` (account 1) with `secrets` on stdin.
fn store_add_ozon(s: &Setup, id: &str, secrets: &str) -> Run {
    s.run(
        &[
            "store",
            "add",
            "--marketplace",
            "ozon",
            "--id",
            id,
            "--name",
            "Ozon",
            "--account",
            "1",
        ],
        Some(secrets),
    )
}

#[test]
fn store_add_refuses_an_invalid_store_and_writes_nothing() {
    let s = Setup::init();
    let path = s.dir.path().join("storeguard.toml");
    let before = fs::read(&path).unwrap();
    let out = store_add_ozon(&s, "x", "client_id = \"1\"\n");
    assert!(!out.status.success());
    assert!(
        out.stderr_str().contains("missing field `api_key`"),
        "{}",
        out.stderr_str()
    );
    assert_eq!(fs::read(&path).unwrap(), before);
    assert!(!s.dir.path().join("vault/stores/x.age").exists());
}

#[test]
fn store_add_leaves_the_config_alone_when_the_vault_cannot_be_written() {
    let s = Setup::init();
    let path = s.dir.path().join("storeguard.toml");
    let before = fs::read(&path).unwrap();
    fs::remove_file(s.dir.path().join("vault/recipients.txt")).unwrap();
    let out = store_add_ozon(
        &s,
        "ozon-late",
        "client_id = \"1\"\napi_key = \"CANARY-cli-add-0012\"\n",
    );
    assert!(!out.status.success());
    let err = out.stderr_str();
    assert!(err.contains("recipients"), "{err}");
    assert!(!err.contains("CANARY"), "{err}");
    assert_eq!(fs::read(&path).unwrap(), before, "the config changed");
    assert!(!s.dir.path().join("vault/stores/ozon-late.age").exists());
}

#[test]
fn secrets_never_reach_error_messages() {
    let s = Setup::init();
    s.add_ozon_store("ozon-main", "1", "CANARY-cli-err-0006");
    // Malformed documents on stdin quoting the canary in every position.
    for doc in [
        "client_id = \"1\"\napi_key = CANARY-cli-err-0007\n",
        "client_id = \"1\"\napi_key = \"CANARY-cli-err-0008\"\nextra = \"CANARY-cli-err-0009\"\n",
        "client_id = [\"CANARY-cli-err-0010\"]\napi_key = \"k\"\n",
        "\"CANARY-cli-err-0011\n",
    ] {
        let out = s.run(&["vault", "put", "store/ozon-main"], Some(doc));
        assert!(!out.status.success());
        let all = format!("{}{}", out.stdout_str(), out.stderr_str());
        assert!(!all.contains("CANARY"), "{all}");
        assert!(all.contains("store/ozon-main"), "{all}");
    }
}

/// D11: an argument (or config text) with escape sequences reaches the terminal escaped.
#[test]
fn escape_sequences_never_reach_the_terminal() {
    let s = Setup::init();
    let out = s.run(&["otp", "x\u{1b}]0;owned\u{7}\u{1b}[2J"], None);
    assert!(!out.status.success());
    let err = out.stderr_str();
    assert!(err.contains("x\\u{1b}]0;owned\\u{7}\\u{1b}[2J"), "{err}");
    assert!(!err.contains('\u{1b}') && !err.contains('\u{7}'), "{err:?}");
    let config = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/cmd/configs/control-chars.toml"
    );
    let out = s.run(&["config", "check", "--config", config], None);
    assert!(!out.status.success());
    let err = out.stderr_str();
    assert!(
        err.contains("store id `ozon\\u{1b}[2J` is not allowed"),
        "{err}"
    );
    assert!(!err.contains('\u{1b}') && !err.contains('\u{7}'), "{err:?}");
}

/// D8: durations past the calendar are refused with a message (no panic, exit 1), and an
/// offline silence is capped as the API caps it.
#[test]
fn huge_durations_are_refused_not_panicked_on() {
    let s = Setup::init();
    s.add_ozon_store("ozon-a", "1", "CANARY-dur-0001");
    for args in [
        &["silence", "ozon-a", "--for", "100000000d"][..],
        &["history", "ozon-a", "--since", "100000000d"][..],
        &["silence", "ozon-a", "--for", "36500d"][..],
    ] {
        let out = s.run(args, None);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", out.stderr_str());
        assert!(!out.stderr_str().contains("panicked"), "{args:?}");
    }
    assert!(
        s.run(&["silence", "ozon-a", "--for", "36500d"], None)
            .stderr_str()
            .contains("at most 90d")
    );
}

/// A closed pipe ends a listing quietly (exit 0, no panic), and an error's cause is said once.
#[test]
fn pipes_close_quietly_and_errors_read_once() {
    let s = Setup::init();
    s.add_ozon_store("ozon-a", "1", "CANARY-pipe-0001");
    s.add_ozon_store("ozon-b", "2", "CANARY-pipe-0002");
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = s
        .command(&["vault", "list"])
        .stdin(std::process::Stdio::null())
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?} {stderr}", out.status);
    assert!(!stderr.contains("panicked"), "{stderr}");
    // No state file yet: the cause once, then the advice.
    let out = s.run(&["status"], None);
    assert!(!out.status.success());
    let err = out.stderr_str();
    assert_eq!(
        err.matches("unable to open database file").count(),
        1,
        "{err}"
    );
    assert!(
        err.trim_end().lines().last().unwrap().contains("help:"),
        "{err}"
    );
    // A damaged entry: named once on its line.
    fs::write(s.dir.path().join("vault/stores/ozon-b.age"), "garbage\n").unwrap();
    let out = s.run(&["vault", "verify"], None);
    assert!(!out.status.success());
    let line = out
        .stdout_str()
        .lines()
        .find(|l| l.starts_with("bad"))
        .unwrap()
        .to_string();
    assert_eq!(line.matches("store/ozon-b").count(), 1, "{line}");
    assert!(line.contains("cannot decrypt"), "{line}");
}

#[test]
fn otp_prints_the_rfc6238_code() {
    let s = Setup::init();
    s.add_store_doc(
        "ozon-web",
        "client_id = \"5\"\napi_key = \"CANARY-cli-otp-0012\"\n[web]\nlogin = \"seller@example.com\"\npassword = \"CANARY-cli-otp-0013\"\ntotp_secret = \"GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\"\n",
    );
    let out = s.run(&["otp", "ozon-web", "--time", "59"], None);
    assert!(out.status.success(), "{}", out.stderr_str());
    assert_eq!(out.stdout_str(), "287082  (valid for 1 s)\n");
    let none = Setup::init();
    none.add_ozon_store("plain", "5", "CANARY-cli-otp-0014");
    let out = none.run(&["otp", "plain"], None);
    assert!(!out.status.success());
    assert!(out.stderr_str().contains("no web-login 2FA secret"));
}

#[test]
fn vault_edit_validates_before_saving() {
    let s = Setup::init();
    s.add_ozon_store("ozon-main", "1", "CANARY-cli-edit-0015");
    let file = s.dir.path().join("vault/stores/ozon-main.age");
    // An "editor" that replaces the key.
    let editor = s.dir.path().join("ed.sh");
    fs::write(
        &editor,
        "#!/bin/sh\nsed -i 's/CANARY-cli-edit-0015/CANARY-cli-edit-0016/' \"$1\"\n",
    )
    .unwrap();
    fs::set_permissions(&editor, fs::Permissions::from_mode(0o755)).unwrap();
    let out = s.run_env(
        &["vault", "edit", "store/ozon-main"],
        &[("EDITOR", editor.to_str().unwrap())],
    );
    assert!(out.status.success(), "{}", out.stderr_str());
    assert!(out.stderr_str().contains("generation 2"));
    let shown = s.run(&["vault", "show", "--reveal", "store/ozon-main"], None);
    assert!(shown.stdout_str().contains("CANARY-cli-edit-0016"));
    // An editor that breaks the document: nothing is written.
    let before = fs::read(&file).unwrap();
    let breaker = s.dir.path().join("break.sh");
    fs::write(&breaker, "#!/bin/sh\necho 'api_key = broken' >> \"$1\"\n").unwrap();
    fs::set_permissions(&breaker, fs::Permissions::from_mode(0o755)).unwrap();
    let out = s.run_env(
        &["vault", "edit", "store/ozon-main"],
        &[("EDITOR", breaker.to_str().unwrap())],
    );
    assert!(!out.status.success());
    assert!(!out.stderr_str().contains("CANARY"));
    assert_eq!(fs::read(&file).unwrap(), before);
}

#[test]
fn sigkill_during_put_and_rekey_never_tears_an_entry() {
    crate::util::kill_storm(200);
}

/// D6: `vault edit` keeps the decrypted entry in a 0700 directory whatever the umask; SIGTERM or
/// SIGHUP (a dropped SSH session) wipes it, and a copy left by a SIGKILL is wiped by the next
/// command this user runs.
#[test]
fn vault_edit_never_leaves_plaintext_behind() {
    use std::process::Stdio;
    let s = Setup::init();
    s.add_ozon_store("ozon-main", "1", "CANARY-cli-edit-0042");
    let editor = s.dir.path().join("hold.sh");
    let marker = s.dir.path().join("editing");
    fs::write(
        &editor,
        format!(
            "#!/bin/sh\necho \"$1\" > {}.tmp && mv {0}.tmp {0}\nexec sleep 30 </dev/null >/dev/null 2>&1\n",
            marker.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&editor, fs::Permissions::from_mode(0o755)).unwrap();
    let start = || {
        let _ = fs::remove_file(&marker);
        let child = s
            .command(&["vault", "edit", "store/ozon-main"])
            .env("EDITOR", &editor)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while !marker.exists() {
            assert!(
                std::time::Instant::now() < deadline,
                "the editor never started"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let file = std::path::PathBuf::from(fs::read_to_string(&marker).unwrap().trim());
        let dir = file.parent().unwrap().to_path_buf();
        assert!(
            fs::read_to_string(&file)
                .unwrap()
                .contains("CANARY-cli-edit-0042")
        );
        assert_eq!(
            fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        (child, dir)
    };
    for sig in [
        nix::sys::signal::Signal::SIGTERM,
        nix::sys::signal::Signal::SIGHUP,
    ] {
        let (child, dir) = start();
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), sig).unwrap();
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(
            stderr.contains("decrypted copy was wiped"),
            "{sig}: {stderr}"
        );
        assert!(!stderr.contains("CANARY"));
        assert!(!dir.exists(), "{sig} left {}", dir.display());
    }
    let (mut child, dir) = start();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(dir.exists());
    let out = s.run(&["vault", "list"], None);
    assert!(out.status.success(), "{}", out.stderr_str());
    assert!(!dir.exists(), "the next command wipes what SIGKILL left");
}
