//! Feishu / Lark custom bot (飞书自定义机器人), with optional signature.
//!
//! `POST {base}/open-apis/bot/v2/hook/TOKEN` with an interactive card; Lark is the same API
//! on `open.larksuite.com` (set `endpoint`). Signing differs from DingTalk: the key is
//! `timestamp + "\n" + secret`, the message is empty, the timestamp is in seconds, and both go
//! in the JSON body. Feishu answers HTTP 200 on refusals too, so the verdict comes from `code`.

use super::render::{Dialect, Message};
use super::wire::{self, Verdict};
use base64::Engine;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use std::time::Duration;
use url::Url;

pub const DEFAULT_BASE: &str = "https://open.feishu.cn";

/// Feishu's signature: base64 of HMAC-SHA256 with key `timestamp + "\n" + secret` over an
/// empty message; `timestamp` in seconds. Not URL-encoded (it travels in the JSON body).
pub fn sign(secret: &str, timestamp_s: i64) -> String {
    let key = format!("{timestamp_s}\n{secret}");
    let mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("HMAC takes any key");
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

pub struct Feishu {
    pub base: Url,
    pub hook_token: SecretString,
    pub sign_secret: Option<SecretString>,
}

impl Feishu {
    pub fn url(&self) -> Url {
        wire::join(
            &self.base,
            &format!("/open-apis/bot/v2/hook/{}", self.hook_token.expose_secret()),
        )
    }

    pub fn body(&self, msg: &Message, now: DateTime<Utc>) -> serde_json::Value {
        let mut body = serde_json::json!({
            "msg_type": "interactive",
            "card": {
                "config": {"wide_screen_mode": true},
                "header": {
                    "template": msg.tone.feishu_template(),
                    "title": {"tag": "plain_text", "content": msg.title},
                },
                "elements": [
                    {"tag": "div", "text": {"tag": "lark_md", "content": msg.body(Dialect::LarkMd)}},
                ],
            },
        });
        if let Some(secret) = &self.sign_secret {
            let ts = now.timestamp();
            body["timestamp"] = serde_json::Value::String(ts.to_string());
            body["sign"] = serde_json::Value::String(sign(secret.expose_secret(), ts));
        }
        body
    }

    pub async fn send(
        &self,
        client: &reqwest::Client,
        msg: &Message,
        now: DateTime<Utc>,
    ) -> Verdict {
        let body = serde_json::to_vec(&self.body(msg, now)).expect("JSON");
        match wire::post_json(client, &self.url(), &[], body).await {
            Ok(reply) => classify(&reply),
            Err(v) => v,
        }
    }
}

/// `code` (or the older `StatusCode`) 0 delivered; 11232 throttled; 19021 (signature or
/// time), 19022 (IP), 19024 (keyword) and the rest permanent.
pub fn classify(reply: &wire::Reply) -> Verdict {
    let parsed = reply.json().and_then(|j| {
        let code = j
            .get("code")
            .or_else(|| j.get("StatusCode"))
            .and_then(serde_json::Value::as_i64)?;
        let msg = j
            .get("msg")
            .or_else(|| j.get("StatusMessage"))
            .and_then(serde_json::Value::as_str)
            .unwrap_or("")
            .to_string();
        Some((code, msg))
    });
    let Some((code, msg)) = parsed else {
        return match wire::by_status("Feishu", reply) {
            Verdict::Delivered => Verdict::retry(format!(
                "Feishu answered HTTP {} without a code: {}",
                reply.status.as_u16(),
                reply.excerpt()
            )),
            v => v,
        };
    };
    if reply.status.is_server_error() {
        return wire::by_status("Feishu", reply);
    }
    match code {
        0 => Verdict::Delivered,
        11232 => Verdict::throttled(
            Duration::from_secs(60),
            format!("Feishu rate limit (code 11232: {msg})"),
        ),
        19021 => Verdict::Permanent(format!(
            "Feishu refused the signature (code 19021: {msg}); check sign_secret in the vault and this server's clock"
        )),
        19022 => Verdict::Permanent(format!(
            "Feishu refused this server's IP address (code 19022: {msg}); check the bot's IP allow-list"
        )),
        19024 => Verdict::Permanent(format!(
            "Feishu refused the message: keyword missing (code 19024: {msg}); add a keyword the message contains (e.g. storeguard) or turn the keyword check off"
        )),
        _ => Verdict::Permanent(format!("Feishu refused the message (code {code}: {msg})")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signing_vector_from_channels_md() {
        assert_eq!(
            sign("demo-secret", 1_700_000_000),
            "mYHw2R2SOm8Rw/sne3lQdmz4sOfntKR+1P/8RKKTwmA="
        );
    }
}
