//! What every HTTP channel shares: one POST with storeguard's client hygiene, the reply read
//! with a cap, the generic status-code verdict, and scrubbing of reasons.
//!
//! A channel's URL carries its token (DingTalk `access_token`, WeCom `key`, the Telegram bot
//! token in the path, the whole Slack/webhook URL), so nothing here ever formats a URL, and
//! every reason a service sends back is scrubbed of the channel's secrets and of anything that
//! looks like a URL before it reaches a log line or a `Delivery::Permanent`.

use crate::http::{self, HttpError};
use crate::outcome::sanitize;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use std::time::Duration;
use url::Url;
use zeroize::Zeroizing;

/// Largest reply we read from an alert service (they answer a few hundred bytes).
pub const MAX_REPLY_BYTES: usize = 64 * 1024;
/// Cap on a service's `Retry-After` / `retry_after`: a hostile value cannot park a channel.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);
/// Per-request timeout for alert services.
pub const TIMEOUT: Duration = Duration::from_secs(15);

/// A channel's verdict with the reason kept for logs (the public [`super::Delivery`] drops
/// the reason of a retry).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Delivered,
    Retry {
        after: Option<Duration>,
        reason: String,
        /// The service said we are sending too fast: hold the channel for `after`.
        throttled: bool,
    },
    Permanent(String),
}

impl Verdict {
    pub fn retry(reason: impl Into<String>) -> Self {
        Verdict::Retry {
            after: None,
            reason: reason.into(),
            throttled: false,
        }
    }

    pub fn throttled(after: Duration, reason: impl Into<String>) -> Self {
        Verdict::Retry {
            after: Some(after.min(MAX_RETRY_AFTER)),
            reason: reason.into(),
            throttled: true,
        }
    }
}

/// A reply as read.
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// The whole reply as one printable line. Not cut short here: a cut could split a secret
    /// the service echoed, and the redactor must see it whole (reasons are cut after scrubbing).
    pub fn excerpt(&self) -> String {
        sanitize(&String::from_utf8_lossy(&self.body), MAX_REPLY_BYTES)
    }

    pub fn retry_after(&self) -> Option<Duration> {
        http::retry_after(&self.headers, MAX_RETRY_AFTER)
    }
}

/// POSTs `body` (JSON) to `url`. Transport failures come back as a retry verdict whose reason
/// holds no URL.
pub async fn post_json(
    client: &reqwest::Client,
    url: &Url,
    headers: &[(&'static str, String)],
    body: Vec<u8>,
) -> Result<Reply, Verdict> {
    if http::check_url(url).is_err() {
        return Err(Verdict::Permanent(
            "refusing plain http to a host that is not loopback; use an https:// URL".into(),
        ));
    }
    let mut req = client
        .post(url.clone())
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body);
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let resp = req
        .send()
        .await
        .map_err(|e| Verdict::retry(HttpError::from_reqwest(e).to_string()))?;
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = match http::read_capped(resp, MAX_REPLY_BYTES).await {
        Ok(b) => b,
        Err(e) => return Err(Verdict::retry(format!("reading the reply: {e}"))),
    };
    Ok(Reply {
        status,
        headers,
        body,
    })
}

/// The verdict from the HTTP status alone: 2xx delivered; 408, 429 and 5xx retry (honouring
/// `Retry-After`); a redirect or any other 4xx is permanent.
pub fn by_status(service: &str, reply: &Reply) -> Verdict {
    let s = reply.status;
    if s.is_success() {
        Verdict::Delivered
    } else if s == StatusCode::TOO_MANY_REQUESTS {
        match reply.retry_after() {
            Some(d) => Verdict::throttled(
                d,
                format!("{service} answered HTTP 429 (too many requests)"),
            ),
            None => Verdict::Retry {
                after: None,
                reason: format!("{service} answered HTTP 429 (too many requests)"),
                throttled: false,
            },
        }
    } else if s == StatusCode::REQUEST_TIMEOUT || s.is_server_error() {
        Verdict::Retry {
            after: reply.retry_after(),
            reason: format!("{service} answered HTTP {}", s.as_u16()),
            throttled: false,
        }
    } else if s.is_redirection() {
        Verdict::Permanent(format!(
            "{service} answered with a redirect (HTTP {}); storeguard does not follow redirects: put the final URL in the vault",
            s.as_u16()
        ))
    } else {
        let ex = reply.excerpt();
        Verdict::Permanent(if ex.is_empty() {
            format!("{service} refused the message (HTTP {})", s.as_u16())
        } else {
            format!("{service} refused the message (HTTP {}: {ex})", s.as_u16())
        })
    }
}

/// Appends `path` to the base URL's path (`https://h/prefix` + `/a/b` → `https://h/prefix/a/b`).
pub fn join(base: &Url, path: &str) -> Url {
    let mut u = base.clone();
    let joined = format!("{}{}", base.path().trim_end_matches('/'), path);
    u.set_path(&joined);
    u.set_query(None);
    u.set_fragment(None);
    u
}

/// Removes a channel's secrets (and anything URL-like) from text that came back from a
/// service or a library, then makes it one short printable line.
#[derive(Default)]
pub struct Redactor {
    secrets: Vec<Zeroizing<String>>,
}

impl Redactor {
    pub fn add(&mut self, secret: &str) {
        // Very short values would redact ordinary words; no real token is this short.
        if secret.chars().count() >= 6 {
            self.secrets.push(Zeroizing::new(secret.to_string()));
            let encoded: String = url::form_urlencoded::byte_serialize(secret.as_bytes()).collect();
            if encoded != secret {
                self.secrets.push(Zeroizing::new(encoded));
            }
        }
    }

    /// A URL that is itself a secret: the whole of it, and each part long enough to be a
    /// token (path segments, query values, a password), since a service may echo only those.
    pub fn add_url(&mut self, url: &str) {
        self.add(url);
        if let Ok(u) = Url::parse(url) {
            for seg in u.path_segments().into_iter().flatten() {
                if seg.len() >= 8 {
                    self.add(seg);
                }
            }
            for (_, v) in u.query_pairs() {
                if v.len() >= 8 {
                    self.add(&v);
                }
            }
            if let Some(p) = u.password() {
                self.add(p);
            }
        }
    }

    pub fn scrub(&self, text: &str) -> String {
        // URLs go first, whole (a secret URL's parts, like `https://`, would otherwise be
        // redacted piecemeal and leave the rest of the URL standing).
        let words: Vec<&str> = text
            .split_whitespace()
            .map(|w| {
                if w.contains("://") || w.contains("access_token=") || w.contains("key=") {
                    "[URL]"
                } else {
                    w
                }
            })
            .collect();
        let secrets: Vec<&str> = self.secrets.iter().map(|s| s.as_str()).collect();
        sanitize(&crate::outcome::redact(&words.join(" "), &secrets), 300)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_keeps_a_prefix() {
        let b = Url::parse("http://127.0.0.1:8080/prefix/").unwrap();
        assert_eq!(
            join(&b, "/robot/send").as_str(),
            "http://127.0.0.1:8080/prefix/robot/send"
        );
        let b = Url::parse("https://oapi.dingtalk.com").unwrap();
        assert_eq!(
            join(&b, "/robot/send").as_str(),
            "https://oapi.dingtalk.com/robot/send"
        );
    }

    #[test]
    fn scrub_removes_secrets_and_urls() {
        let mut r = Redactor::default();
        r.add("CANARY-tok/en+1");
        r.add_url("https://hooks.example.com/services/T0/B0/CANARY-seg-1234?t=CANARY-q-5678");
        let s = r.scrub(
            "bad token CANARY-tok/en+1 at https://x/y?access_token=CANARY-tok%2Fen%2B1\n\x1b[31m",
        );
        assert!(!s.contains("CANARY"), "{s}");
        assert!(!s.contains("https"), "{s}");
        assert_eq!(s, "bad token [REDACTED] at [URL] [31m");
        let s = r.scrub("segment CANARY-seg-1234 and CANARY-q-5678 echoed");
        assert_eq!(s, "segment [REDACTED] and [REDACTED] echoed");
    }
}
