//! Telegram bot (`sendMessage`), HTML parse mode.
//!
//! `POST {base}/bot<TOKEN>/sendMessage` `{"chat_id","text","parse_mode":"HTML"}`. HTML needs only
//! `&`, `<` and `>` escaped, which makes it the parse mode whose escaping is easy to get right
//! (MarkdownV2 reserves eighteen characters). The reply's `ok` decides; `retry_after` is
//! honoured.

use super::render::{Dialect, Message};
use super::wire::{self, Verdict};
use secrecy::{ExposeSecret, SecretString};
use std::time::Duration;
use url::Url;

pub const DEFAULT_BASE: &str = "https://api.telegram.org";
/// Telegram's limit on a message's text, in characters after entity parsing.
const MAX_TEXT_CHARS: usize = 4096;

pub struct Telegram {
    pub base: Url,
    pub bot_token: SecretString,
    pub chat_id: String,
}

impl Telegram {
    pub fn url(&self) -> Url {
        wire::join(
            &self.base,
            &format!("/bot{}/sendMessage", self.bot_token.expose_secret()),
        )
    }

    /// A chat id starting with `-` is a group or channel (stricter limits).
    pub fn is_group(chat_id: &str) -> bool {
        chat_id.starts_with('-')
    }

    pub fn body(&self, msg: &Message) -> serde_json::Value {
        let html = format!(
            "<b>{}</b>\n\n{}",
            msg.title_in(Dialect::TelegramHtml),
            msg.body(Dialect::TelegramHtml)
        );
        if html.chars().count() <= MAX_TEXT_CHARS {
            serde_json::json!({
                "chat_id": self.chat_id,
                "text": html,
                "parse_mode": "HTML",
                "link_preview_options": {"is_disabled": true},
            })
        } else {
            // Too long to cut safely inside markup: send plain text, cut.
            let plain: String = format!("{}\n\n{}", msg.title, msg.text)
                .chars()
                .take(MAX_TEXT_CHARS)
                .collect();
            serde_json::json!({
                "chat_id": self.chat_id,
                "text": plain,
                "link_preview_options": {"is_disabled": true},
            })
        }
    }

    pub async fn send(&self, client: &reqwest::Client, msg: &Message) -> Verdict {
        let body = serde_json::to_vec(&self.body(msg)).expect("JSON");
        match wire::post_json(client, &self.url(), &[], body).await {
            Ok(reply) => classify(&reply),
            Err(v) => v,
        }
    }
}

/// `ok: true` delivered; `error_code` 429 with `parameters.retry_after` throttled; 5xx retry;
/// other errors (bad token, chat not found, bot kicked, bad markup) permanent.
pub fn classify(reply: &wire::Reply) -> Verdict {
    let Some(j) = reply.json().filter(|j| j.get("ok").is_some()) else {
        return match wire::by_status("Telegram", reply) {
            Verdict::Delivered => Verdict::retry(format!(
                "Telegram answered HTTP {} without `ok`: {}",
                reply.status.as_u16(),
                reply.excerpt()
            )),
            v => v,
        };
    };
    if j.get("ok").and_then(serde_json::Value::as_bool) == Some(true) {
        return Verdict::Delivered;
    }
    let code = j
        .get("error_code")
        .and_then(serde_json::Value::as_i64)
        .unwrap_or(i64::from(reply.status.as_u16()));
    let desc = j
        .get("description")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("");
    let params = j.get("parameters");
    let retry_after = params
        .and_then(|p| p.get("retry_after"))
        .and_then(serde_json::Value::as_u64)
        .map(Duration::from_secs);
    if code == 429 || retry_after.is_some() {
        let after = retry_after.or_else(|| reply.retry_after());
        return match after {
            Some(a) => Verdict::throttled(a, format!("Telegram rate limit ({desc})")),
            None => Verdict::retry(format!("Telegram rate limit ({desc})")),
        };
    }
    if code >= 500 {
        return Verdict::retry(format!("Telegram error {code}: {desc}"));
    }
    if let Some(new_id) = params
        .and_then(|p| p.get("migrate_to_chat_id"))
        .and_then(serde_json::Value::as_i64)
    {
        return Verdict::Permanent(format!(
            "Telegram: the group became a supergroup; set chat_id = \"{new_id}\" in storeguard.toml"
        ));
    }
    let hint = match code {
        401 | 404 => "; check bot_token in the vault",
        403 => "; add the bot to the chat again",
        _ => "",
    };
    Verdict::Permanent(format!(
        "Telegram refused the message ({code}: {desc}){hint}"
    ))
}
