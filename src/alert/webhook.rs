//! storeguard's own webhook: the JSON format in CHANNELS.md, an `Idempotency-Key`, and an
//! optional HMAC-SHA256 body signature in `X-Storeguard-Signature: sha256=<hex>`.

use super::AlertEvent;
use super::render::Message;
use super::wire::{self, Verdict};
use chrono::{DateTime, SecondsFormat, Utc};
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use url::Url;

/// `sha256=<hex of HMAC-SHA256(key = secret, message = body)>`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

pub struct Webhook {
    pub url: SecretString,
    pub signing_secret: Option<SecretString>,
}

/// The body, in the configured language for `summary`.
pub fn body(event: &AlertEvent, msg: &Message, now: DateTime<Utc>) -> serde_json::Value {
    let mut b = serde_json::json!({
        "version": 1,
        "event_id": event.event_id,
        "event": event.event.as_str(),
        "incident_id": event.incident_id,
        "store_id": event.subject.key(),
        "store_name": event.subject.name(),
        // null for alerts about storeguard itself.
        "marketplace": event.subject.marketplace().map(|m| m.as_str()),
        "severity": event.severity.as_str(),
        "finding": event.finding.as_str(),
        "summary": msg.title,
        "opened_at": event.opened_at.to_rfc3339_opts(SecondsFormat::Secs, true),
        "sent_at": now.to_rfc3339_opts(SecondsFormat::Secs, true),
    });
    if !event.affected.is_empty() {
        b["affected"] = serde_json::json!(event.affected);
    }
    if event.test {
        b["test"] = serde_json::Value::Bool(true);
    }
    b
}

impl Webhook {
    pub async fn send(
        &self,
        client: &reqwest::Client,
        event: &AlertEvent,
        msg: &Message,
        now: DateTime<Utc>,
    ) -> Verdict {
        let Ok(url) = Url::parse(self.url.expose_secret()) else {
            return Verdict::Permanent("the webhook URL in the vault is not a URL".into());
        };
        let body = serde_json::to_vec(&body(event, msg, now)).expect("JSON");
        let mut headers = vec![("idempotency-key", event.event_id.clone())];
        if let Some(secret) = &self.signing_secret {
            headers.push((
                "x-storeguard-signature",
                signature(secret.expose_secret(), &body),
            ));
        }
        match wire::post_json(client, &url, &headers, body).await {
            Ok(reply) => wire::by_status("the webhook receiver", &reply),
            Err(v) => v,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_hex() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
