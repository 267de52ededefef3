//! Fuzz targets, shared by the mutation loop (`examples/fuzz.rs`) and the regression replay
//! (`tests/it/fuzz.rs`, run by `cargo test`).
//!
//! Every target takes arbitrary bytes and must return without panicking. HTTP targets read
//! their input as: bytes 0–1 the status (folded into 100..=599), byte 2 the length L of a
//! `Retry-After` value, the next L bytes that value, the rest the body.

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};
use std::path::Path;
use storeguard::alert::wire::{Redactor, Reply, Verdict};
use storeguard::alert::{alertmanager, dingtalk, feishu, slack, telegram, wecom, wire};
use storeguard::config::Config;
use storeguard::model::{ChannelKind, Marketplace};
use storeguard::vault::{Document, Schema};

/// Every target, in the order `all` runs them.
pub const TARGETS: &[&str] = &[
    "config",
    "vault_entry",
    "ozon",
    "amazon",
    "iop",
    "wildberries",
    "yandex_market",
    "shopee",
    "tiktok_shop",
    "mail",
    "mail_auth",
    "webhook",
    "slack",
    "telegram",
    "dingtalk",
    "wecom",
    "feishu",
    "alertmanager",
];

/// Whether the target reads the HTTP framing above.
pub fn is_http(target: &str) -> bool {
    !matches!(target, "config" | "vault_entry" | "mail" | "mail_auth")
}

/// Splits an HTTP target's input into status, headers and body.
pub fn http_parts(data: &[u8]) -> (u16, HeaderMap, &[u8]) {
    let status = match data {
        [a, b, ..] => 100 + (u16::from_be_bytes([*a, *b]) % 500),
        _ => 200,
    };
    let mut headers = HeaderMap::new();
    let rest = data.get(2..).unwrap_or(&[]);
    let (value, body) = match rest.split_first() {
        Some((&len, tail)) => {
            let len = (len as usize).min(tail.len());
            (&tail[..len], &tail[len..])
        }
        None => (&[][..], rest),
    };
    if !value.is_empty()
        && let Ok(v) = HeaderValue::from_bytes(value)
    {
        headers.insert(RETRY_AFTER, v);
    }
    (status, headers, body)
}

/// Builds an HTTP target's input (the inverse of [`http_parts`]).
pub fn http_input(status: u16, retry_after: &str, body: &[u8]) -> Vec<u8> {
    let mut v = (status - 100).to_be_bytes().to_vec();
    let ra = &retry_after.as_bytes()[..retry_after.len().min(255)];
    v.push(ra.len() as u8);
    v.extend_from_slice(ra);
    v.extend_from_slice(body);
    v
}

fn schemas() -> Vec<Schema> {
    let mut v: Vec<Schema> = Marketplace::ALL.into_iter().map(Schema::Store).collect();
    v.extend(ChannelKind::ALL.into_iter().map(Schema::Channel));
    v.push(Schema::Daemon);
    v
}

/// What the delivery worker does with a channel's verdict: scrub its reason.
fn consume(v: Verdict) {
    let r = Redactor::default();
    match v {
        Verdict::Delivered => {}
        Verdict::Retry { reason, .. } | Verdict::Permanent(reason) => {
            let _ = r.scrub(&reason);
        }
    }
}

/// Runs `target` on `data`. False for an unknown target.
pub fn run(target: &str, data: &[u8]) -> bool {
    match target {
        "mail" => {
            static CATALOGUE: std::sync::OnceLock<storeguard::mail::Catalogue> =
                std::sync::OnceLock::new();
            let c = CATALOGUE.get_or_init(storeguard::mail::Catalogue::builtin);
            let _ = c.classify(data);
        }
        "mail_auth" => {
            // The provider's Authentication-Results header, and IMAP folder names.
            let _ = storeguard::mail::auth::top_results(data);
            let text = String::from_utf8_lossy(data);
            let r = storeguard::mail::auth::parse_results(&text);
            assert!(r.dkim_pass.iter().all(|d| !d.contains(';')));
            let name = storeguard::mail::imap::decode_utf7(&text);
            let _ = storeguard::mail::imap::pick_folders(&[(name, false)], &[]);
        }
        "config" => {
            let text = String::from_utf8_lossy(data);
            if let Err(e) = Config::from_toml(Path::new("/fuzz/storeguard.toml"), &text) {
                let _ = e.to_string();
            }
        }
        "vault_entry" => {
            let text = String::from_utf8_lossy(data);
            for schema in schemas() {
                match Document::parse(&text, schema) {
                    Ok(doc) => {
                        // What `vault show` / write-back do with a parsed entry.
                        for (_, shown) in doc.entries() {
                            let _ = shown.masked();
                        }
                        let back = doc.to_toml();
                        let _ = Document::parse(&back, schema);
                    }
                    Err(e) => {
                        let _ = e.to_string();
                    }
                }
            }
        }
        "ozon" | "amazon" | "iop" | "wildberries" | "yandex_market" | "shopee" | "tiktok_shop" => {
            let (status, headers, body) = http_parts(data);
            match target {
                "ozon" => storeguard::marketplace::fuzz::ozon(status, headers, body),
                "amazon" => storeguard::marketplace::fuzz::amazon(status, headers, body),
                "wildberries" => storeguard::marketplace::fuzz::wildberries(status, headers, body),
                "shopee" => storeguard::marketplace::fuzz::shopee(status, headers, body),
                "tiktok_shop" => storeguard::marketplace::fuzz::tiktok_shop(status, headers, body),
                "yandex_market" => {
                    storeguard::marketplace::fuzz::yandex_market(status, headers, body)
                }
                _ => storeguard::marketplace::fuzz::iop(status, headers, body),
            }
        }
        "webhook" | "slack" | "telegram" | "dingtalk" | "wecom" | "feishu" | "alertmanager" => {
            let (status, headers, body) = http_parts(data);
            let Ok(status) = StatusCode::from_u16(status) else {
                return true;
            };
            let reply = Reply {
                status,
                headers,
                body: body.to_vec(),
            };
            let _ = reply.excerpt();
            let _ = reply.retry_after();
            consume(match target {
                "webhook" => wire::by_status("the webhook receiver", &reply),
                "slack" => slack::classify(&reply),
                "telegram" => telegram::classify(&reply),
                "dingtalk" => dingtalk::classify(&reply),
                "wecom" => wecom::classify(&reply),
                "feishu" => feishu::classify(&reply),
                _ => alertmanager::classify(&reply),
            });
        }
        _ => return false,
    }
    true
}

/// Files under `dir/<target>/`, sorted (missing directory: none).
pub fn files(dir: &Path, target: &str) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir.join(target)) {
        for e in rd.flatten() {
            if e.path().is_file()
                && let Ok(b) = std::fs::read(e.path())
            {
                out.push((e.file_name().to_string_lossy().into_owned(), b));
            }
        }
    }
    out.sort();
    out
}
