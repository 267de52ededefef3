//! Slack incoming webhook.
//!
//! `POST <url>` `{"text","blocks"}`; Slack answers `200 ok`, `429` with `Retry-After` when
//! over about one message a second, and 400/403/404/410 with a short reason otherwise.

use super::render::{Dialect, Message, esc};
use super::wire::{self, Verdict};
use secrecy::{ExposeSecret, SecretString};
use url::Url;

pub struct Slack {
    /// The full incoming-webhook URL (the URL is the credential).
    pub url: SecretString,
}

impl Slack {
    pub fn body(msg: &Message) -> serde_json::Value {
        let header: String = msg.title.chars().take(150).collect();
        let body: String = msg.body(Dialect::SlackMrkdwn).chars().take(3000).collect();
        serde_json::json!({
            "text": esc(Dialect::SlackMrkdwn, &msg.title),
            "blocks": [
                {"type": "header", "text": {"type": "plain_text", "text": header, "emoji": true}},
                {"type": "section", "text": {"type": "mrkdwn", "text": body}},
            ],
        })
    }

    pub async fn send(&self, client: &reqwest::Client, msg: &Message) -> Verdict {
        let Ok(url) = Url::parse(self.url.expose_secret()) else {
            return Verdict::Permanent("the Slack webhook URL in the vault is not a URL".into());
        };
        let body = serde_json::to_vec(&Self::body(msg)).expect("JSON");
        match wire::post_json(client, &url, &[], body).await {
            Ok(reply) => classify(&reply),
            Err(v) => v,
        }
    }
}

pub fn classify(reply: &wire::Reply) -> Verdict {
    let v = wire::by_status("Slack", reply);
    match (&v, reply.status.as_u16()) {
        (Verdict::Permanent(r), 404 | 403 | 410) => Verdict::Permanent(format!(
            "{r}; the webhook was removed, revoked or its channel archived: create a new incoming webhook and put its URL in the vault"
        )),
        _ => v,
    }
}
