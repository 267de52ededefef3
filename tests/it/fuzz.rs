//! Replays every fuzz seed (`fuzz/corpus/`) and every input that once crashed a parser
//! (`fuzz/regressions/`) through its target: none may panic. The mutation loop itself is
//! `examples/fuzz.rs`.

#[path = "../../fuzz/targets.rs"]
#[allow(dead_code)] // shared with examples/fuzz.rs, which uses all of it
mod targets;

use std::path::Path;

#[test]
fn corpus_and_regressions_replay_without_panicking() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut replayed = 0;
    for dir in ["corpus", "regressions"] {
        // Every directory must be a known target (a typo would silently skip regressions).
        if let Ok(rd) = std::fs::read_dir(root.join(dir)) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                assert!(
                    targets::TARGETS.contains(&name.as_str()),
                    "fuzz/{dir}/{name}: not a fuzz target"
                );
            }
        }
        for target in targets::TARGETS {
            for (file, data) in targets::files(&root.join(dir), target) {
                let ok = std::panic::catch_unwind(|| targets::run(target, &data));
                assert!(
                    matches!(ok, Ok(true)),
                    "fuzz/{dir}/{target}/{file} panicked"
                );
                replayed += 1;
            }
        }
    }
    assert!(replayed >= 40, "only {replayed} fuzz inputs found");
}

#[test]
fn every_target_has_seeds() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    for target in targets::TARGETS {
        assert!(
            !targets::files(&root, target).is_empty(),
            "fuzz/corpus/{target} has no seed"
        );
    }
}

#[test]
fn http_framing_round_trips() {
    let input = targets::http_input(429, "7", b"{}");
    let (status, headers, body) = targets::http_parts(&input);
    assert_eq!(status, 429);
    assert_eq!(headers.get("retry-after").unwrap(), "7");
    assert_eq!(body, b"{}");
}
