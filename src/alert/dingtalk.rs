//! DingTalk custom robot (钉钉自定义机器人), with optional 加签 signing.
//!
//! `POST {base}/robot/send?access_token=TOKEN[&timestamp=MS&sign=S]` with a markdown message.
//! DingTalk answers HTTP 200 even when it refuses, so the verdict comes from `errcode`.

use super::render::{Dialect, Message};
use super::wire::{self, Verdict};
use base64::Engine;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use std::time::Duration;
use url::Url;

pub const DEFAULT_BASE: &str = "https://oapi.dingtalk.com";

/// DingTalk's 加签: base64 of HMAC-SHA256(key = secret, message = `timestamp + "\n" + secret`),
/// `timestamp` in milliseconds. The caller URL-encodes it (the query serializer does).
pub fn sign(secret: &str, timestamp_ms: i64) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(format!("{timestamp_ms}\n{secret}").as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

pub struct DingTalk {
    pub base: Url,
    pub access_token: SecretString,
    pub sign_secret: Option<SecretString>,
}

impl DingTalk {
    /// The request URL (holds the token: never log it).
    pub fn url(&self, now: DateTime<Utc>) -> Url {
        let mut u = wire::join(&self.base, "/robot/send");
        {
            let mut q = u.query_pairs_mut();
            q.append_pair("access_token", self.access_token.expose_secret());
            if let Some(secret) = &self.sign_secret {
                let ts = now.timestamp_millis();
                q.append_pair("timestamp", &ts.to_string());
                q.append_pair("sign", &sign(secret.expose_secret(), ts));
            }
        }
        u
    }

    pub fn body(msg: &Message) -> serde_json::Value {
        serde_json::json!({
            "msgtype": "markdown",
            "markdown": {
                "title": msg.title,
                "text": format!("### {}\n\n{}", msg.title_in(Dialect::Markdown), msg.markdown),
            },
            "at": {"atMobiles": [], "isAtAll": false},
        })
    }

    pub async fn send(
        &self,
        client: &reqwest::Client,
        msg: &Message,
        now: DateTime<Utc>,
    ) -> Verdict {
        let body = serde_json::to_vec(&Self::body(msg)).expect("JSON");
        match wire::post_json(client, &self.url(now), &[], body).await {
            Ok(reply) => classify(&reply),
            Err(v) => v,
        }
    }
}

/// `errcode` 0 delivered; 130101 throttled (DingTalk holds the robot for ten minutes);
/// -1 busy; 310000 (keyword, signature, timestamp or IP refused) and the rest permanent.
pub fn classify(reply: &wire::Reply) -> Verdict {
    let Some(code) = reply.json().and_then(|j| {
        j.get("errcode")
            .and_then(serde_json::Value::as_i64)
            .map(|c| (c, j))
    }) else {
        return match wire::by_status("DingTalk", reply) {
            Verdict::Delivered => Verdict::retry(format!(
                "DingTalk answered HTTP {} without an errcode: {}",
                reply.status.as_u16(),
                reply.excerpt()
            )),
            v => v,
        };
    };
    let (code, json) = code;
    let errmsg = json
        .get("errmsg")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("");
    match code {
        0 => Verdict::Delivered,
        130101 => Verdict::throttled(
            Duration::from_secs(600),
            format!(
                "DingTalk rate limit (errcode 130101: {errmsg}); the robot is held for 10 minutes"
            ),
        ),
        -1 => Verdict::retry(format!("DingTalk is busy (errcode -1: {errmsg})")),
        310000 => Verdict::Permanent(format!(
            "DingTalk refused the message (errcode 310000: {errmsg}); check the robot's security settings: keyword, 加签 secret (sign_secret in the vault) and IP allow-list"
        )),
        300001 | 400013 | 400101 | 400102 => Verdict::Permanent(format!(
            "DingTalk refused the robot's token (errcode {code}: {errmsg}); check access_token in the vault"
        )),
        _ => Verdict::Permanent(format!(
            "DingTalk refused the message (errcode {code}: {errmsg})"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signing_vector_from_channels_md() {
        assert_eq!(
            sign("SECtest0123456789", 1_700_000_000_000),
            "yBKp5IlG6qCzcQWmgyRK/ziJBdVNJmHfFE2ST/CzT/g="
        );
    }

    #[test]
    fn url_carries_encoded_signature() {
        use chrono::TimeZone;
        let d = DingTalk {
            base: Url::parse("http://127.0.0.1:9/").unwrap(),
            access_token: SecretString::from("tok"),
            sign_secret: Some(SecretString::from("SECtest0123456789")),
        };
        let now = Utc.timestamp_millis_opt(1_700_000_000_000).unwrap();
        assert_eq!(
            d.url(now).as_str(),
            "http://127.0.0.1:9/robot/send?access_token=tok&timestamp=1700000000000&sign=yBKp5IlG6qCzcQWmgyRK%2FziJBdVNJmHfFE2ST%2FCzT%2Fg%3D"
        );
    }
}
