//! Message catalogues: one TOML file per language (`src/i18n/en.toml`, `src/i18n/zh-CN.toml`).
//!
//! Every user-facing sentence of tables, alerts and pages lives there, not in the code. Both
//! catalogues must have the same keys; a unit test fails on a missing translation.

use crate::model::Language;
use std::collections::HashMap;
use std::sync::OnceLock;

const EN: &str = include_str!("i18n/en.toml");
const ZH_CN: &str = include_str!("i18n/zh-CN.toml");

fn parse(text: &str) -> HashMap<String, String> {
    let table: toml::Table = toml::from_str(text).expect("catalogue is valid TOML");
    table
        .into_iter()
        .map(|(k, v)| {
            (
                k,
                v.as_str()
                    .expect("catalogue values are strings")
                    .to_string(),
            )
        })
        .collect()
}

fn catalogue(lang: Language) -> &'static HashMap<String, String> {
    static EN_MAP: OnceLock<HashMap<String, String>> = OnceLock::new();
    static ZH_MAP: OnceLock<HashMap<String, String>> = OnceLock::new();
    match lang {
        Language::En => EN_MAP.get_or_init(|| parse(EN)),
        Language::ZhCn => ZH_MAP.get_or_init(|| parse(ZH_CN)),
    }
}

/// An English count with its noun: "1 store", "0 stores", "2 stores" (lines the catalogues do
/// not carry: CLI summaries, the service manager's status line).
pub fn counted(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

/// The text for `key`; falls back to English, then to the key itself (a missing text shows
/// as its key, never as nothing).
pub fn text(lang: Language, key: &str) -> &'static str {
    lookup(lang, key).unwrap_or_else(|| missing(key))
}

/// A key without a text, kept once for the life of the process (keys come from the code, so
/// there are only so many).
fn missing(key: &str) -> &'static str {
    static MISSING: std::sync::Mutex<Vec<&'static str>> = std::sync::Mutex::new(Vec::new());
    let mut seen = MISSING.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(k) = seen.iter().find(|k| **k == key) {
        return k;
    }
    let k: &'static str = Box::leak(key.to_string().into_boxed_str());
    seen.push(k);
    k
}

/// The text for `key` in `lang` or else English, when there is one.
pub fn lookup(lang: Language, key: &str) -> Option<&'static str> {
    catalogue(lang)
        .get(key)
        .or_else(|| catalogue(Language::En).get(key))
        .map(String::as_str)
}

/// The text for `key` with `{name}` placeholders filled in.
pub fn format(lang: Language, key: &str, args: &[(&str, &str)]) -> String {
    fill(text(lang, key), args)
}

/// One piece of a catalogue template: text as it is, or the name of a `{name}` placeholder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Piece<'a> {
    Text(&'a str),
    Arg(&'a str),
}

/// The pieces of `template` in order. A `{` without a closing `}` is text.
pub fn pieces(template: &str) -> impl Iterator<Item = Piece<'_>> {
    let mut rest = template;
    let mut pending: Option<Piece<'_>> = None;
    std::iter::from_fn(move || {
        if let Some(p) = pending.take() {
            return Some(p);
        }
        if rest.is_empty() {
            return None;
        }
        let Some(open) = rest.find('{') else {
            return Some(Piece::Text(std::mem::take(&mut rest)));
        };
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            return Some(Piece::Text(std::mem::take(&mut rest)));
        };
        let text = &rest[..open];
        let arg = Piece::Arg(&after[..close]);
        rest = &after[close + 1..];
        if text.is_empty() {
            Some(arg)
        } else {
            pending = Some(arg);
            Some(Piece::Text(text))
        }
    })
}

/// Fills `{name}` placeholders of `template` in one pass: a value that itself contains `{x}` is
/// left alone, and a placeholder without a value stays as it is.
pub fn fill(template: &str, args: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len() + 32);
    for piece in pieces(template) {
        match piece {
            Piece::Text(t) => out.push_str(t),
            Piece::Arg(name) => match args.iter().find(|(n, _)| *n == name) {
                Some((_, v)) => out.push_str(v),
                None => {
                    out.push('{');
                    out.push_str(name);
                    out.push('}');
                }
            },
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn placeholders_are_filled_once() {
        assert_eq!(
            fill("a {x} b {y} {z} {", &[("x", "{y}"), ("y", "2")]),
            "a {y} b 2 {z} {"
        );
        assert_eq!(fill("{x}{x}", &[("x", "1")]), "11");
    }

    #[test]
    fn a_missing_text_shows_its_key() {
        assert_eq!(text(Language::ZhCn, "no.such.key"), "no.such.key");
        assert!(std::ptr::eq(
            text(Language::En, "no.such.key"),
            text(Language::En, "no.such.key")
        ));
        assert_eq!(lookup(Language::En, "no.such.key"), None);
    }

    #[test]
    fn catalogues_have_the_same_keys() {
        let en: BTreeSet<_> = catalogue(Language::En).keys().collect();
        let zh: BTreeSet<_> = catalogue(Language::ZhCn).keys().collect();
        let missing_zh: Vec<_> = en.difference(&zh).collect();
        let missing_en: Vec<_> = zh.difference(&en).collect();
        assert!(
            missing_zh.is_empty(),
            "missing in zh-CN.toml: {missing_zh:?}"
        );
        assert!(missing_en.is_empty(), "missing in en.toml: {missing_en:?}");
    }

    #[test]
    fn placeholders_match_between_languages() {
        let names = |s: &str| -> BTreeSet<String> {
            s.split('{')
                .skip(1)
                .filter_map(|p| p.split_once('}').map(|(n, _)| n.to_string()))
                .collect()
        };
        for (k, v) in catalogue(Language::En) {
            let zh = &catalogue(Language::ZhCn)[k];
            assert_eq!(names(v), names(zh), "placeholders differ for {k}");
        }
    }

    #[test]
    fn every_finding_and_status_has_words() {
        for lang in [Language::En, Language::ZhCn] {
            for f in crate::outcome::FindingKind::ALL {
                assert!(
                    lookup(lang, &format!("finding.{}", f.as_str())).is_some(),
                    "{f}"
                );
            }
            for s in ["OK", "WARNING", "CRITICAL", "UNKNOWN"] {
                assert!(lookup(lang, &format!("status.{s}")).is_some());
            }
        }
    }

    #[test]
    fn store_counts_agree_with_their_number() {
        let stores = |n| counted(n, "store", "stores");
        assert_eq!(stores(0), "0 stores");
        assert_eq!(stores(1), "1 store");
        assert_eq!(stores(10_000), "10000 stores");
        assert_eq!(
            counted(1, "login record", "login records"),
            "1 login record"
        );
    }
}
