//! WeCom group robot (企业微信群机器人).
//!
//! `POST {base}/cgi-bin/webhook/send?key=KEY` with a markdown message of at most 4096 bytes.
//! WeCom answers HTTP 200 even when it refuses, so the verdict comes from `errcode`.

use super::render::{Dialect, Message};
use super::wire::{self, Verdict};
use secrecy::{ExposeSecret, SecretString};
use std::time::Duration;
use url::Url;

pub const DEFAULT_BASE: &str = "https://qyapi.weixin.qq.com";
/// WeCom's limit on `markdown.content`, in bytes.
pub const MAX_MARKDOWN_BYTES: usize = 4096;

pub struct WeCom {
    pub base: Url,
    pub key: SecretString,
}

impl WeCom {
    pub fn url(&self) -> Url {
        let mut u = wire::join(&self.base, "/cgi-bin/webhook/send");
        u.query_pairs_mut()
            .append_pair("key", self.key.expose_secret());
        u
    }

    pub fn body(msg: &Message) -> serde_json::Value {
        let content = format!(
            "### {}\n\n{}",
            msg.title_in(Dialect::Markdown),
            msg.markdown
        );
        serde_json::json!({
            "msgtype": "markdown",
            "markdown": {"content": truncate_bytes(&content, MAX_MARKDOWN_BYTES)},
        })
    }

    pub async fn send(&self, client: &reqwest::Client, msg: &Message) -> Verdict {
        let body = serde_json::to_vec(&Self::body(msg)).expect("JSON");
        match wire::post_json(client, &self.url(), &[], body).await {
            Ok(reply) => classify(&reply),
            Err(v) => v,
        }
    }
}

/// Cuts `s` to at most `max` bytes on a character boundary, marking the cut with `…`.
pub fn truncate_bytes(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// `errcode` 0 delivered; 45009 (over 20 a minute) and -1 (busy) retry; 93000 (bad key) and
/// the rest permanent.
pub fn classify(reply: &wire::Reply) -> Verdict {
    let parsed = reply.json().and_then(|j| {
        let code = j.get("errcode").and_then(serde_json::Value::as_i64)?;
        let msg = j
            .get("errmsg")
            .and_then(serde_json::Value::as_str)
            .unwrap_or("")
            .to_string();
        Some((code, msg))
    });
    let Some((code, errmsg)) = parsed else {
        return match wire::by_status("WeCom", reply) {
            Verdict::Delivered => Verdict::retry(format!(
                "WeCom answered HTTP {} without an errcode: {}",
                reply.status.as_u16(),
                reply.excerpt()
            )),
            v => v,
        };
    };
    match code {
        0 => Verdict::Delivered,
        45009 => Verdict::throttled(
            Duration::from_secs(60),
            format!("WeCom rate limit (errcode 45009: {errmsg})"),
        ),
        -1 | 45033 => Verdict::retry(format!("WeCom is busy (errcode {code}: {errmsg})")),
        93000 => Verdict::Permanent(format!(
            "WeCom refused the robot key (errcode 93000: {errmsg}); the robot was removed or the key is wrong: put the key from the robot's webhook URL in the vault"
        )),
        _ => Verdict::Permanent(format!(
            "WeCom refused the message (errcode {code}: {errmsg})"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_respects_characters() {
        let s = "告警".repeat(1000);
        let t = truncate_bytes(&s, 4096);
        assert!(t.len() <= 4096);
        assert!(t.ends_with('…'));
        assert_eq!(truncate_bytes("short", 4096), "short");
    }
}
