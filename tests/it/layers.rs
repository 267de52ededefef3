//! The import rules of the house, read from the source: the pure policy in `health` stays pure,
//! the leaves stay leaves, and the I/O modules that must not know each other do not.

use std::collections::BTreeSet;
use std::path::Path;

/// The files of a module: `src/<name>.rs`, or everything under `src/<name>/`.
fn files(module: &str) -> Vec<std::path::PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let single = root.join(format!("{module}.rs"));
    if single.is_file() {
        return vec![single];
    }
    let mut out = Vec::new();
    let mut dirs = vec![root.join(module)];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    assert!(!out.is_empty(), "no source for {module}");
    out
}

/// The crate modules a module names (`crate::x`, `crate::{x, y}`), and whether it names tokio.
fn imports(module: &str) -> (BTreeSet<String>, bool) {
    let mut names = BTreeSet::new();
    let mut tokio = false;
    for f in files(module) {
        let text = std::fs::read_to_string(&f).unwrap();
        let word = |s: &str| -> String {
            s.chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect()
        };
        for (i, _) in text.match_indices("crate::") {
            let rest = &text[i + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                let end = group.find('}').unwrap_or(group.len());
                for part in group[..end].split(',') {
                    let w = word(part.trim());
                    if !w.is_empty() {
                        names.insert(w);
                    }
                }
            } else {
                names.insert(word(rest));
            }
        }
        tokio |= text.contains("tokio::") || text.contains("use tokio");
    }
    names.remove(module);
    names.remove("");
    (names, tokio)
}

#[test]
fn the_house_keeps_its_import_rules() {
    let forbidden: &[(&str, &[&str])] = &[
        (
            "health",
            &[
                "alert",
                "state",
                "marketplace",
                "route",
                "daemon",
                "web",
                "cli",
                "vault",
            ],
        ),
        ("state", &["alert", "marketplace", "daemon", "web", "cli"]),
        ("route", &["alert", "state", "daemon", "web", "cli"]),
        ("marketplace", &["alert", "daemon", "web", "cli", "state"]),
        ("alert", &["marketplace", "daemon", "cli", "state"]),
        (
            "config",
            &["alert", "state", "daemon", "web", "cli", "vault"],
        ),
    ];
    let mut broken = Vec::new();
    for (module, never) in forbidden {
        let (names, _) = imports(module);
        for n in *never {
            if names.contains(*n) {
                broken.push(format!("{module} imports {n}"));
            }
        }
    }
    // Leaves import only other leaves.
    let leaves = [
        "model", "event", "outcome", "duration", "schedule", "i18n", "zone",
    ];
    for leaf in leaves {
        let (names, _) = imports(leaf);
        for n in names.iter().filter(|n| !leaves.contains(&n.as_str())) {
            broken.push(format!("leaf {leaf} imports {n}"));
        }
    }
    // The one HTML escaper is a leaf too: e-mail and the page both use it.
    let html =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/web/html.rs"))
            .unwrap();
    if html
        .lines()
        .any(|l| l.trim_start().starts_with("use crate::"))
    {
        broken.push("web::html imports the crate".into());
    }
    // The policy is synchronous.
    if imports("health").1 {
        broken.push("health names tokio".into());
    }
    assert!(broken.is_empty(), "{broken:#?}");
    // The reader sees what it checks: health does name its own inputs.
    assert!(imports("health").0.contains("event"));
}

#[test]
fn the_alert_code_reaches_the_web_layer_only_for_its_escaper() {
    for f in files("alert") {
        let text = std::fs::read_to_string(&f).unwrap();
        for (i, _) in text.match_indices("crate::web::") {
            let rest = &text[i + "crate::web::".len()..];
            assert!(
                rest.starts_with("html::escape"),
                "{} uses the web layer: {}",
                f.display(),
                &rest[..rest.len().min(40)]
            );
        }
    }
}

#[test]
fn no_source_file_outgrows_the_house() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut dirs = vec![root.clone()];
    let mut long = Vec::new();
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
                continue;
            }
            let rel = p
                .strip_prefix(&root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            // Fakes stand in for whole services; they may be long.
            let fake = rel.starts_with("fake/") || rel.ends_with("/fake.rs");
            if p.extension().is_some_and(|x| x == "rs") && !fake {
                let n = std::fs::read_to_string(&p).unwrap().lines().count();
                if n > 900 {
                    long.push(format!("{rel}: {n} lines"));
                }
            }
        }
    }
    assert!(long.is_empty(), "{long:#?}");
}
