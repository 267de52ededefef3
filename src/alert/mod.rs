//! Alert events and their delivery to channels.
//!
//! The health machine emits [`AlertEvent`]s into the outbox; a delivery worker hands each to
//! every routed channel. A channel answers [`Delivery::Delivered`], [`Delivery::Retry`] or
//! [`Delivery::Permanent`], decided from the reply (body included, where a service answers 200
//! on failure). An event's `event_id` is stable across retries and restarts.
//!
//! [`ChannelSet`] holds every configured channel with its vault secrets, its language and its
//! rate limiter; [`render`] writes an event as a message a seller understands (zh-CN or en).
//! Each service lives in its own module, with its request format, signing and reply verdict;
//! [`fake`] has loopback fakes of every service for tests and demos.

pub mod alertmanager;
pub mod dingtalk;
pub mod email;
#[cfg(feature = "testkit")]
pub mod fake;
pub mod feishu;
pub mod limit;
mod log;
pub mod render;
pub mod slack;
pub mod telegram;
pub mod webhook;
pub mod wecom;
pub mod wire;

pub use crate::event::{AlertEvent, EventKind, Subject};
pub use render::{Dialect, Message, Tone, render};

use crate::config::{Channel, ChannelSettings, Config};
use crate::model::{ChannelKind, Language, Severity, TokenAt};
use crate::outcome::{FindingKind, sanitize};
use crate::vault::{Document, EntryId, Identity, Schema, Vault};
use anyhow::{anyhow, bail};
use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};

use std::fmt;
use std::sync::Mutex;
use std::time::Duration;
use url::Url;
use wire::{Redactor, Verdict};

/// A channel's verdict on one delivery attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivery {
    Delivered,
    /// Try again later; `Some` when the service said how long to wait.
    Retry(Option<Duration>),
    /// The service refused for good (bad token, bad request); `reason` is sanitised.
    Permanent(String),
}

impl fmt::Display for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Delivery::Delivered => f.write_str("delivered"),
            Delivery::Retry(None) => f.write_str("will retry"),
            Delivery::Retry(Some(d)) => write!(f, "will retry in {} s", d.as_secs().max(1)),
            Delivery::Permanent(r) => write!(f, "refused: {r}"),
        }
    }
}

/// One delivery attempt with its (sanitised) reason, for `storeguard alert test` and logs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attempt {
    pub delivery: Delivery,
    /// Why a retry was asked for (or the refusal), scrubbed of secrets and URLs.
    pub reason: Option<String>,
    /// The channel's own limiter held the message back: nothing was sent.
    pub held: bool,
}

/// Every configured channel, ready to send. Holds secrets: its `Debug` shows names only.
pub struct ChannelSet {
    channels: Vec<Built>,
    client: reqwest::Client,
    tz: crate::zone::Zone,
}

struct Built {
    name: String,
    kind: ChannelKind,
    language: Language,
    limiter: Mutex<limit::Limiter>,
    redactor: Redactor,
    imp: Imp,
}

enum Imp {
    Log,
    Webhook(webhook::Webhook),
    Slack(slack::Slack),
    Telegram(telegram::Telegram),
    Email(Box<email::Email>),
    DingTalk(dingtalk::DingTalk),
    WeCom(wecom::WeCom),
    Feishu(feishu::Feishu),
    Alertmanager(alertmanager::Alertmanager),
}

impl fmt::Debug for ChannelSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChannelSet")
            .field(
                "channels",
                &self
                    .channels
                    .iter()
                    .map(|c| format!("{} ({}, {})", c.name, c.kind, c.language.as_str()))
                    .collect::<Vec<_>>(),
            )
            .field("timezone", &self.tz)
            .finish()
    }
}

impl ChannelSet {
    /// Builds every configured channel; loads each channel's vault entry (log needs none).
    /// Every broken channel is reported, not just the first.
    pub fn new(config: &Config, vault: &Vault, identity: &Identity) -> anyhow::Result<ChannelSet> {
        Self::build(config, vault, identity, |_| true)
    }

    /// Builds only the channel `name` (for `storeguard alert test`).
    pub fn only(
        config: &Config,
        vault: &Vault,
        identity: &Identity,
        name: &str,
    ) -> anyhow::Result<ChannelSet> {
        if config.channel(name).is_none() {
            let known: Vec<&str> = config.channels.iter().map(|c| c.name.as_str()).collect();
            bail!(
                "no channel named `{}` in {}\n  help: configured channels: {}",
                sanitize(name, 64),
                config.path.display(),
                if known.is_empty() {
                    "none (add a [[channel]] table)".to_string()
                } else {
                    known.join(", ")
                }
            );
        }
        Self::build(config, vault, identity, |c| c.name == name)
    }

    fn build(
        config: &Config,
        vault: &Vault,
        identity: &Identity,
        wanted: impl Fn(&Channel) -> bool,
    ) -> anyhow::Result<ChannelSet> {
        let client = crate::http::client_builder(wire::TIMEOUT)
            .build()
            .map_err(|e| {
                anyhow!(
                    "cannot build the HTTP client: {}",
                    crate::http::HttpError::from_reqwest(e)
                )
            })?;
        let mut channels = Vec::new();
        let mut problems = Vec::new();
        for ch in config.channels.iter().filter(|c| wanted(c)) {
            match build_channel(config, ch, vault, identity) {
                Ok(b) => channels.push(b),
                Err(e) => problems.push(format!("channel `{}`: {e:#}", ch.name)),
            }
        }
        if !problems.is_empty() {
            bail!("{}", problems.join("\n"));
        }
        Ok(ChannelSet {
            channels,
            client,
            tz: config.daemon.timezone,
        })
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.channels.iter().map(|c| c.name.as_str())
    }

    pub fn kind(&self, name: &str) -> Option<ChannelKind> {
        self.get(name).map(|c| c.kind)
    }

    /// The language messages to `name` are written in.
    pub fn language(&self, name: &str) -> Option<Language> {
        self.get(name).map(|c| c.language)
    }

    /// The message `name` would get for `event`.
    pub fn render_for(&self, name: &str, event: &AlertEvent) -> Option<Message> {
        self.get(name).map(|c| render(event, c.language, self.tz))
    }

    fn get(&self, name: &str) -> Option<&Built> {
        self.channels.iter().find(|c| c.name == name)
    }

    /// One delivery attempt of `event` to channel `name` (rate limit applied: Retry without
    /// sending when over). `now` is the injected clock used for signatures' timestamps,
    /// sent_at, endsAt, rate buckets.
    pub async fn send(&self, name: &str, event: &AlertEvent, now: DateTime<Utc>) -> Delivery {
        self.attempt(name, event, now).await.delivery
    }

    /// Like [`ChannelSet::send`], keeping the reason of a retry.
    pub async fn attempt(&self, name: &str, event: &AlertEvent, now: DateTime<Utc>) -> Attempt {
        let Some(ch) = self.get(name) else {
            let reason = format!("no channel named `{}`", sanitize(name, 64));
            return Attempt {
                delivery: Delivery::Permanent(reason.clone()),
                reason: Some(reason),
                held: false,
            };
        };
        let acquired = ch
            .limiter
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .try_acquire(now);
        if let Err(wait) = acquired {
            tracing::debug!(channel = %ch.name, wait_ms = wait.as_millis() as u64, "rate limit: holding the message");
            return Attempt {
                delivery: Delivery::Retry(Some(wait)),
                reason: Some(format!(
                    "held back by storeguard to stay within the {} limit",
                    ch.kind
                )),
                held: true,
            };
        }
        let msg = render(event, ch.language, self.tz);
        let c = &self.client;
        let verdict = match &ch.imp {
            Imp::Log => {
                log::send(&ch.name, event, &msg);
                Verdict::Delivered
            }
            Imp::Webhook(w) => w.send(c, event, &msg, now).await,
            Imp::Slack(s) => s.send(c, &msg).await,
            Imp::Telegram(t) => t.send(c, &msg).await,
            Imp::Email(e) => e.send(event, &msg, now).await,
            Imp::DingTalk(d) => d.send(c, &msg, now).await,
            Imp::WeCom(w) => w.send(c, &msg).await,
            Imp::Feishu(f) => f.send(c, &msg, now).await,
            Imp::Alertmanager(a) => a.send(c, event, &msg, now).await,
        };
        match verdict {
            Verdict::Delivered => {
                tracing::debug!(channel = %ch.name, event_id = %event.event_id, "alert delivered");
                Attempt {
                    delivery: Delivery::Delivered,
                    reason: None,
                    held: false,
                }
            }
            Verdict::Retry {
                after,
                reason,
                throttled,
            } => {
                if throttled && let Some(after) = after {
                    ch.limiter
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .block(now, after);
                }
                let reason = ch.redactor.scrub(&reason);
                tracing::warn!(channel = %ch.name, event_id = %event.event_id, %reason, "alert not delivered, will retry");
                Attempt {
                    delivery: Delivery::Retry(after),
                    reason: Some(reason),
                    held: false,
                }
            }
            Verdict::Permanent(reason) => {
                let reason = ch.redactor.scrub(&reason);
                tracing::warn!(channel = %ch.name, event_id = %event.event_id, %reason, "alert refused");
                Attempt {
                    delivery: Delivery::Permanent(reason.clone()),
                    reason: Some(reason),
                    held: false,
                }
            }
        }
    }
}

/// How long a firing Alertmanager alert stays active without a re-send: past the next
/// reminder, with room for a late one.
fn firing_ttl(config: &Config) -> Duration {
    (config.defaults.remind_every * 2).max(Duration::from_secs(3600))
}

fn build_channel(
    config: &Config,
    ch: &Channel,
    vault: &Vault,
    identity: &Identity,
) -> anyhow::Result<Built> {
    let mut redactor = Redactor::default();
    let doc = if !ch.kind.has_vault_entry() {
        None
    } else {
        let doc: Document = vault.load(
            &EntryId::channel(&ch.name),
            Schema::Channel(ch.kind),
            identity,
        )?;
        for field in Schema::Channel(ch.kind)
            .fields()
            .iter()
            .filter(|f| f.secret)
        {
            if let Some(v) = doc.get(field.name) {
                if field.name == "url" {
                    redactor.add_url(v.expose_secret().trim());
                } else {
                    redactor.add(v.expose_secret().trim());
                }
            }
        }
        Some(doc)
    };
    let secret = |field: &str| -> Option<SecretString> {
        doc.as_ref()
            .and_then(|d| d.get(field))
            .filter(|v| !v.expose_secret().trim().is_empty())
            .map(|v| SecretString::from(v.expose_secret().trim().to_string()))
    };
    let required = |field: &str| -> anyhow::Result<SecretString> {
        secret(field).ok_or_else(|| {
            anyhow!(
                "the vault entry has no `{field}`\n  help: storeguard vault edit channel/{}",
                ch.name
            )
        })
    };
    let endpoint = match &ch.settings {
        ChannelSettings::Endpoint(e) => e.clone(),
        ChannelSettings::Telegram { endpoint, .. } => endpoint.clone(),
        _ => None,
    };
    let base = |default: &str| -> Url {
        endpoint
            .clone()
            .unwrap_or_else(|| Url::parse(default).expect("built-in URL"))
    };
    let mut telegram_group = false;
    let imp = match ch.kind {
        ChannelKind::Log => Imp::Log,
        ChannelKind::Webhook => Imp::Webhook(webhook::Webhook {
            url: receiver_url(&required("url")?, endpoint.as_ref(), &ch.name)?,
            signing_secret: secret("signing_secret"),
        }),
        ChannelKind::Slack => Imp::Slack(slack::Slack {
            url: receiver_url(&required("url")?, endpoint.as_ref(), &ch.name)?,
        }),
        ChannelKind::Telegram => {
            let ChannelSettings::Telegram { chat_id, .. } = &ch.settings else {
                bail!("telegram channel without chat_id");
            };
            telegram_group = telegram::Telegram::is_group(chat_id);
            Imp::Telegram(telegram::Telegram {
                base: base(telegram::DEFAULT_BASE),
                bot_token: token_in_path(required("bot_token")?, "bot_token", &ch.name)?,
                chat_id: chat_id.clone(),
            })
        }
        ChannelKind::Email => {
            let ChannelSettings::Email {
                from,
                to,
                smtp_host,
                smtp_port,
                tls,
            } = &ch.settings
            else {
                bail!("email channel without its settings");
            };
            let from = email::mailbox(from).map_err(|e| anyhow!("from: {e}"))?;
            let to = to
                .iter()
                .map(|t| email::mailbox(t).map_err(|e| anyhow!("to: {e}")))
                .collect::<anyhow::Result<Vec<_>>>()?;
            if *tls == crate::config::SmtpTls::None && !email::is_loopback(smtp_host) {
                bail!("smtp_tls = \"none\" is allowed only to a loopback relay");
            }
            Imp::Email(Box::new(email::Email {
                from,
                to,
                host: smtp_host.clone(),
                port: *smtp_port,
                tls: *tls,
                username: secret("smtp_username"),
                password: secret("smtp_password"),
            }))
        }
        ChannelKind::Dingtalk => Imp::DingTalk(dingtalk::DingTalk {
            base: base(dingtalk::DEFAULT_BASE),
            access_token: match secret("url") {
                Some(url) => robot_url(ch.kind, &url, &ch.name)?.0,
                None => required("access_token")?,
            },
            sign_secret: secret("sign_secret"),
        }),
        ChannelKind::Wecom => Imp::WeCom(wecom::WeCom {
            base: base(wecom::DEFAULT_BASE),
            key: match secret("url") {
                Some(url) => robot_url(ch.kind, &url, &ch.name)?.0,
                None => required("key")?,
            },
        }),
        ChannelKind::Feishu => {
            let (token, origin) = match secret("url") {
                Some(url) => robot_url(ch.kind, &url, &ch.name)?,
                None => (required("hook_token")?, None),
            };
            Imp::Feishu(feishu::Feishu {
                // A Lark URL says which of the two services it is; `endpoint` still wins.
                base: match (&endpoint, origin) {
                    (None, Some(origin)) => origin,
                    _ => base(feishu::DEFAULT_BASE),
                },
                hook_token: token_in_path(token, "hook_token", &ch.name)?,
                sign_secret: secret("sign_secret"),
            })
        }
        ChannelKind::Alertmanager => {
            let ChannelSettings::Alertmanager { urls } = &ch.settings else {
                bail!("alertmanager channel without urls");
            };
            Imp::Alertmanager(alertmanager::Alertmanager {
                peers: urls.clone(),
                bearer_token: secret("bearer_token"),
                firing_ttl: firing_ttl(config),
            })
        }
    };
    Ok(Built {
        name: ch.name.clone(),
        kind: ch.kind,
        language: ch.language.unwrap_or(config.daemon.language),
        limiter: Mutex::new(limit::Limiter::new(limit::limits(ch.kind, telegram_group))),
        redactor,
        imp,
    })
}

/// Checks a robot webhook URL pasted whole (`storeguard channel add` asks before writing
/// anything). The error names neither the URL nor its token.
pub fn check_robot_url(kind: ChannelKind, url: &SecretString, channel: &str) -> anyhow::Result<()> {
    robot_url(kind, url, channel).map(|_| ())
}

/// A robot webhook URL pasted whole (DingTalk, WeCom, Feishu/Lark): https, the service's own
/// host and path, and the token where the service puts it. Returns the token and, for
/// Feishu/Lark, the origin the URL names. Errors never quote the URL (it is the secret).
fn robot_url(
    kind: ChannelKind,
    url: &SecretString,
    channel: &str,
) -> anyhow::Result<(SecretString, Option<Url>)> {
    let Some(robot) = kind.spec().robot.as_ref() else {
        return Err(anyhow!(
            "channel/{channel}: `url` is not used by this kind of channel"
        ));
    };
    let expected = robot.example;
    let refuse = |what: &str| {
        anyhow!(
            "channel/{channel}: `url` {what} (expected {expected})\n  help: copy the webhook URL from the robot's settings again, or put only its token in the entry"
        )
    };
    let u = Url::parse(url.expose_secret().trim()).map_err(|_| refuse("is not a URL"))?;
    if u.scheme() != "https" {
        return Err(refuse("is not https"));
    }
    let host = u.host_str().unwrap_or("").to_ascii_lowercase();
    if !robot.hosts.contains(&host.as_str()) {
        return Err(refuse(
            "is not this service's robot URL (host or path differ)",
        ));
    }
    let token = match robot.token_at {
        TokenAt::Query(name) if u.path() == robot.path => u
            .query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.to_string())
            .filter(|v| !v.is_empty()),
        TokenAt::PathAfter(prefix) => match u.path().strip_prefix(prefix) {
            Some(t) => Some(t.to_string()).filter(|t| !t.is_empty() && !t.contains('/')),
            None => {
                return Err(refuse(
                    "is not this service's robot URL (host or path differ)",
                ));
            }
        },
        TokenAt::Query(_) => {
            return Err(refuse(
                "is not this service's robot URL (host or path differ)",
            ));
        }
    };
    // A robot with more than one host (Feishu and Lark) sends to the one its URL names.
    let origin = (robot.hosts.len() > 1)
        .then(|| Url::parse(&format!("https://{host}")).ok())
        .flatten();
    let token = token.ok_or_else(|| refuse("has no token in it"))?;
    Ok((SecretString::from(token), origin))
}

/// A token that goes into a URL path must not be able to change the path.
fn token_in_path(token: SecretString, field: &str, channel: &str) -> anyhow::Result<SecretString> {
    let ok = token
        .expose_secret()
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '_' | '-'));
    if ok {
        Ok(token)
    } else {
        bail!(
            "`{field}` holds characters a token cannot have (paste only the token, not the whole URL)\n  help: storeguard vault edit channel/{channel}"
        )
    }
}

/// The receiver URL from the vault, checked (https, or plain http to loopback), with its
/// origin replaced by the config's `endpoint` when one is set. Errors never quote the URL.
fn receiver_url(
    url: &SecretString,
    endpoint: Option<&Url>,
    channel: &str,
) -> anyhow::Result<SecretString> {
    let parsed = Url::parse(url.expose_secret()).map_err(|_| {
        anyhow!("`url` in the vault is not a URL\n  help: storeguard vault edit channel/{channel}")
    })?;
    let url = match endpoint {
        None => parsed,
        Some(e) => {
            let mut u = e.clone();
            u.set_path(&format!(
                "{}{}",
                e.path().trim_end_matches('/'),
                parsed.path()
            ));
            u.set_query(parsed.query());
            u
        }
    };
    crate::http::check_url(&url).map_err(|_| {
        anyhow!(
            "`url` in the vault uses plain http to a host that is not loopback\n  help: use the https:// URL: storeguard vault edit channel/{channel}"
        )
    })?;
    if !url.username().is_empty() || url.password().is_some() {
        // Allowed by some receivers, but reqwest would send it as basic auth: say so plainly.
        tracing::debug!(
            channel,
            "webhook URL carries user info; it is sent as basic auth"
        );
    }
    Ok(SecretString::from(url.to_string()))
}

/// A clearly marked test event for `storeguard alert test`.
pub fn test_event(
    config: &Config,
    channel: &str,
    lang: Language,
    now: DateTime<Utc>,
) -> AlertEvent {
    // An example store of the first store's marketplace; with no store yet, storeguard itself.
    let subject = match config.stores.first() {
        Some(s) => Subject::store(
            "example-store",
            crate::i18n::text(lang, "alert.test.store_name"),
            s.marketplace,
        ),
        None => Subject::Daemon,
    };
    AlertEvent {
        event_id: format!("test-{}-{}", channel, now.timestamp_millis()),
        event: EventKind::Opened,
        incident_id: format!("test-{channel}"),
        subject,
        severity: Severity::Critical,
        finding: FindingKind::AuthRejected,
        detail: String::new(),
        opened_at: now,
        created_at: now,
        affected: vec![],
        test: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn robot_urls_give_their_token_and_nothing_else() {
        let token = |kind, url: &str| {
            robot_url(kind, &SecretString::from(url.to_string()), "c")
                .map(|(t, o)| (t.expose_secret().to_string(), o.map(|o| o.to_string())))
        };
        assert_eq!(
            token(
                ChannelKind::Feishu,
                "https://open.larksuite.com/open-apis/bot/v2/hook/abc-123"
            )
            .unwrap(),
            ("abc-123".into(), Some("https://open.larksuite.com/".into()))
        );
        assert_eq!(
            token(
                ChannelKind::Feishu,
                "https://open.feishu.cn/open-apis/bot/v2/hook/t1"
            )
            .unwrap()
            .0,
            "t1"
        );
        assert_eq!(
            token(
                ChannelKind::Dingtalk,
                " https://oapi.dingtalk.com/robot/send?access_token=x1 "
            )
            .unwrap()
            .0,
            "x1"
        );
        for (kind, bad) in [
            (
                ChannelKind::Dingtalk,
                "http://oapi.dingtalk.com/robot/send?access_token=x",
            ),
            (
                ChannelKind::Dingtalk,
                "https://oapi.dingtalk.com.evil.example/robot/send?access_token=x",
            ),
            (
                ChannelKind::Dingtalk,
                "https://oapi.dingtalk.com/robot/send",
            ),
            (
                ChannelKind::Wecom,
                "https://qyapi.weixin.qq.com/other?key=x",
            ),
            (
                ChannelKind::Feishu,
                "https://open.feishu.cn/open-apis/bot/v2/hook/a/b",
            ),
            (ChannelKind::Feishu, "not a url SECRET"),
        ] {
            let e = token(kind, bad).unwrap_err().to_string();
            assert!(!e.contains("evil") && !e.contains("SECRET"), "{e}");
        }
    }

    #[allow(dead_code)]
    fn channel_set_and_its_send_future_cross_threads(set: &ChannelSet, ev: &AlertEvent) {
        fn is_send_sync<T: Send + Sync>(_: &T) {}
        fn is_send<T: Send>(_: T) {}
        is_send_sync(set);
        is_send(set.send("x", ev, Utc::now()));
    }

    #[test]
    fn delivery_reads_well() {
        assert_eq!(Delivery::Delivered.to_string(), "delivered");
        assert_eq!(
            Delivery::Retry(Some(Duration::from_secs(60))).to_string(),
            "will retry in 60 s"
        );
        assert_eq!(
            Delivery::Permanent("bad key".into()).to_string(),
            "refused: bad key"
        );
    }
}
