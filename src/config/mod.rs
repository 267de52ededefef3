//! `storeguard.toml`: the strict raw schema and the validated [`Config`] everything else uses.
//!
//! The raw types mirror the file one to one and refuse unknown keys. [`Config::from_toml`]
//! turns them into validated types once: cron strings parsed, durations parsed, references
//! between stores and channels resolved, endpoints checked. Every problem is reported with
//! `file:line:col` and a sentence that says what to do; all problems are collected, not just the
//! first. No secret belongs in this file, and no error message quotes a source line.

use crate::model::{ChannelKind, Language, Marketplace, Severity};
use crate::schedule::CronSchedule;
use serde::Deserialize;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;
use url::Url;

mod channel;
mod daemon;
mod defaults;
mod endpoints;
mod error;
mod mailbox;
mod maintenance;
mod parse;
mod raw;
mod store;
#[cfg(test)]
mod tests;
mod validate;

use defaults::channel_refs;
use error::*;
pub use error::{ConfigError, Location, Problem};
use raw::*;
use store::StoreCx;
pub use validate::check_endpoint;
use validate::*;

/// Where the config lives when neither `--config` nor `$STOREGUARD_CONFIG` says otherwise.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/storeguard/storeguard.toml";
/// Largest config file we read; a real one is a few hundred KiB for thousands of stores.
const MAX_CONFIG_BYTES: u64 = 32 * 1024 * 1024;

// ---------------------------------------------------------------------------------------------
// Validated types
// ---------------------------------------------------------------------------------------------

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file this was read from.
    pub path: PathBuf,
    pub daemon: DaemonConfig,
    pub defaults: Defaults,
    pub endpoints: Endpoints,
    pub stores: Vec<Store>,
    pub channels: Vec<Channel>,
    pub maintenance: Vec<Maintenance>,
    /// `[mail]`: settings of the mailbox watchers.
    pub mail: MailSettings,
    /// `[[mailbox]]`: the stores' mailboxes, watched for marketplace security mail.
    pub mailboxes: Vec<Mailbox>,
    /// `[replicas]`.
    pub replicas: ReplicaSettings,
    /// Store id → position in `stores` (lookups run on every check; a config holds up to
    /// 100,000 stores).
    store_index: HashMap<String, usize>,
}

#[derive(Debug, Clone)]
pub struct DaemonConfig {
    pub state_dir: PathBuf,
    pub vault_dir: PathBuf,
    /// Where the identity comes from (config, systemd credential, or next to the config).
    pub identity: PathBuf,
    pub listen: SocketAddr,
    pub timezone: crate::zone::Zone,
    pub language: Language,
    pub history_retention: Duration,
    /// `[daemon] state`: SQLite in `state_dir` (one box), or the fleet's PostgreSQL.
    pub state: StateLocation,
    /// `[daemon] replica`: this replica's name in the fleet (default: the host name).
    pub replica: String,
}

/// Where the daemon keeps its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateLocation {
    /// `storeguard.db` in `[daemon] state_dir`: the embedded default for one box.
    Sqlite,
    /// `postgres://user@host[:port]/database`: several replicas share it. The URL never holds
    /// the password (the vault entry `daemon/postgres` or the systemd credential `postgres`).
    Postgres { url: String },
}

/// `[replicas]`: how the fleet splits its stores (only read in replica mode).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaSettings {
    /// Stores are hashed into this many shards, one lease each.
    pub shards: u32,
    /// How long a lease lasts without renewal; a dead replica's stores are taken over within
    /// `lease_ttl + lease_ttl / 3`.
    pub lease_ttl: Duration,
}

#[derive(Debug, Clone)]
pub struct Defaults {
    pub schedule: CronSchedule,
    pub timeout: Duration,
    pub failure_threshold: u32,
    pub success_threshold: u32,
    pub remind_every: Duration,
    /// Sorted longest first, e.g. 14d, 3d, 1d.
    pub expiry_warning: Vec<Duration>,
    pub password_max_age: Duration,
    pub channels: Vec<String>,
}

/// Marketplace base URLs, one per [`crate::model::Endpoint`] of each marketplace's spec
/// (overridable in `[marketplace.<id>]` so tests and sandboxes can point anywhere).
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoints {
    urls: HashMap<(Marketplace, &'static str), Url>,
}

impl Endpoints {
    /// The URL of `key` for `m`. Keys come from the spec table, so a key it does not list is a
    /// bug in the caller.
    pub fn get(&self, m: Marketplace, key: &'static str) -> &Url {
        self.urls
            .get(&(m, key))
            .unwrap_or_else(|| panic!("{m} has no endpoint `{key}` in its spec"))
    }

    /// Overrides one endpoint; `key` must be in the marketplace's spec.
    pub fn set(&mut self, m: Marketplace, key: &str, url: Url) -> bool {
        match m.spec().endpoints.iter().find(|e| e.key == key) {
            Some(e) => {
                self.urls.insert((m, e.key), url);
                true
            }
            None => false,
        }
    }
}

impl Default for Endpoints {
    fn default() -> Self {
        let mut urls = HashMap::new();
        for m in Marketplace::ALL {
            for e in m.spec().endpoints {
                urls.insert((m, e.key), Url::parse(e.default).expect("built-in URL"));
            }
        }
        Endpoints { urls }
    }
}

/// `[mail]`.
#[derive(Debug, Clone, PartialEq)]
pub struct MailSettings {
    /// DNS server for DKIM and DMARC lookups; `None`: the system's.
    pub resolver: Option<SocketAddr>,
    /// How far back a mailbox's first run reads into history (recorded, not alerted).
    pub backfill: Duration,
    /// How often folders are read when the server has no IDLE (Mail.ru, 163), and the spam
    /// and extra folders when it has: IDLE watches only INBOX.
    pub poll: Duration,
    /// A user file of extra senders and rules (`[mail] catalogue`), checked at load: its path
    /// and text.
    pub catalogue: Option<(PathBuf, String)>,
}

impl MailSettings {
    /// The catalogue mail is classified by: the built-in one with the user's file, if any.
    pub fn catalogue(&self) -> crate::mail::Catalogue {
        match &self.catalogue {
            // Checked when the config was loaded.
            Some((_, text)) => crate::mail::Catalogue::with_user(text)
                .unwrap_or_else(|_| crate::mail::Catalogue::builtin()),
            None => crate::mail::Catalogue::builtin(),
        }
    }
}

/// How a mailbox connection is secured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MailTls {
    /// Implicit TLS (993).
    Tls,
    /// STARTTLS on the plain port (143), required.
    Starttls,
    /// No TLS: loopback only (a test server).
    None,
}

/// How storeguard logs in to a mailbox; its secrets are in the vault entry `mailbox/NAME`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum MailAuth {
    /// An app password (QQ/163 授权码, Yandex, Mail.ru): vault `password`.
    #[default]
    Password,
    /// OAuth 2 (Gmail, Outlook): vault `client_id`, `client_secret`, `refresh_token`,
    /// `token_endpoint`.
    Xoauth2,
}

/// One mailbox watched for the security mail of the stores it serves.
#[derive(Debug, Clone, PartialEq)]
pub struct Mailbox {
    pub name: String,
    pub host: String,
    pub port: u16,
    pub tls: MailTls,
    pub username: String,
    pub auth: MailAuth,
    /// Ids of the stores whose security mail arrives here.
    pub stores: Vec<String>,
    /// Folders watched besides INBOX and the spam folder.
    pub folders: Vec<String>,
}

/// When a store's team signs in (`login_hours = "08:00-22:00 Asia/Shanghai"`): a sign-in code,
/// new sign-in or approval request outside these hours is `suspicious_login`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoginHours {
    pub start: chrono::NaiveTime,
    pub end: chrono::NaiveTime,
    pub tz: crate::zone::Zone,
}

impl LoginHours {
    /// Parses `HH:MM-HH:MM ZONE` (the zone optional: the daemon's timezone). A range whose end
    /// is before its start runs past midnight (`20:00-04:00`).
    pub fn parse(s: &str, default_tz: crate::zone::Zone) -> Result<LoginHours, String> {
        let mut words = s.split_whitespace();
        let range = words.next().ok_or("empty")?;
        let tz = match words.next() {
            None => default_tz,
            Some(z) => z
                .parse::<crate::zone::Zone>()
                .map_err(|_| format!("unknown timezone `{}`", crate::outcome::sanitize(z, 40)))?,
        };
        if words.next().is_some() {
            return Err("more than a range and a timezone".into());
        }
        let (a, b) = range
            .split_once('-')
            .ok_or("no `-` between the two times")?;
        let time = |t: &str| {
            chrono::NaiveTime::parse_from_str(t, "%H:%M").map_err(|_| {
                format!(
                    "`{}` is not a time like 08:00",
                    crate::outcome::sanitize(t, 20)
                )
            })
        };
        let (start, end) = (time(a)?, time(b)?);
        if start == end {
            return Err("the range is empty".into());
        }
        Ok(LoginHours { start, end, tz })
    }

    /// Whether `at` falls inside the hours, in their timezone.
    pub fn contains(&self, at: chrono::DateTime<chrono::Utc>) -> bool {
        let t = at.with_timezone(&self.tz).time();
        if self.start < self.end {
            self.start <= t && t < self.end
        } else {
            t >= self.start || t < self.end
        }
    }
}

/// One store to watch.
#[derive(Debug, Clone)]
pub struct Store {
    pub id: String,
    pub marketplace: Marketplace,
    pub name: String,
    /// The expected account number (Ozon Client-Id, Alibaba/AliExpress seller id, Amazon seller id).
    pub account: Option<String>,
    /// One of the marketplace's `regions` (its spec), when it has any.
    pub region: Option<&'static str>,
    /// Expected Amazon marketplace ids.
    pub marketplaces: Vec<String>,
    pub schedule: CronSchedule,
    pub timeout: Duration,
    /// Channels this store's alerts go to (the store's own list, else the defaults).
    pub channels: Vec<String>,
    /// Egress proxy (http, https or socks5); its password, if any, is in the vault.
    pub proxy: Option<Url>,
    /// When the store's team signs in; `None`: every sign-in mail is a WARNING record.
    pub login_hours: Option<LoginHours>,
    pub tags: Vec<String>,
    pub enabled: bool,
}

/// How email reaches the SMTP server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// STARTTLS on the submission port (587), required.
    Starttls,
    /// Implicit TLS (465).
    Tls,
    /// No TLS: only to a loopback relay.
    None,
}

/// An alert channel's non-secret settings.
#[derive(Debug, Clone)]
pub struct Channel {
    pub name: String,
    pub kind: ChannelKind,
    pub min_severity: Severity,
    pub language: Option<Language>,
    pub settings: ChannelSettings,
    /// Which alerts the channel takes (empty lists match everything).
    pub filter: Selector,
    /// Event kinds the channel takes: "opened", "reminder", "resolved" (empty = all).
    pub events: Vec<crate::event::EventKind>,
}

/// Selects stores by id glob (`ozon-*`), tag or marketplace. An empty selector matches all;
/// otherwise a store matches when every non-empty list has a match.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Selector {
    pub stores: Vec<String>,
    pub tags: Vec<String>,
    pub marketplaces: Vec<Marketplace>,
}

impl Selector {
    pub fn is_empty(&self) -> bool {
        self.stores.is_empty() && self.tags.is_empty() && self.marketplaces.is_empty()
    }

    pub fn matches(&self, store: &Store) -> bool {
        (self.stores.is_empty() || self.stores.iter().any(|g| glob_match(g, &store.id)))
            && (self.tags.is_empty() || self.tags.iter().any(|t| store.tags.contains(t)))
            && (self.marketplaces.is_empty() || self.marketplaces.contains(&store.marketplace))
    }
}

/// `*` matches any run of characters, `?` one character; everything else literally.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// When a maintenance window is open.
#[derive(Debug, Clone)]
pub enum Window {
    /// Opens at every firing of the cron schedule (daemon timezone) for `duration`.
    Recurring {
        schedule: Box<CronSchedule>,
        duration: Duration,
    },
    /// Open from `start` to `end`.
    Fixed {
        start: chrono::DateTime<chrono::Utc>,
        end: chrono::DateTime<chrono::Utc>,
    },
}

/// A maintenance window: checks run and are recorded, notifications are held.
#[derive(Debug, Clone)]
pub struct Maintenance {
    pub name: String,
    pub window: Window,
    pub selector: Selector,
}

impl Maintenance {
    /// The end of the window open at `now`, if one is.
    pub fn open_until(
        &self,
        tz: crate::zone::Zone,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Option<chrono::DateTime<chrono::Utc>> {
        match &self.window {
            Window::Fixed { start, end } => (*start <= now && now < *end).then_some(*end),
            Window::Recurring { schedule, duration } => {
                let d = chrono::Duration::from_std(*duration).ok()?;
                // The first firing after (now - duration) started a window still open at now.
                let since = (now - d).with_timezone(&tz);
                let start = schedule.next_after(&since)?.with_timezone(&chrono::Utc);
                (start <= now).then_some(start + d)
            }
        }
    }
}

#[derive(Debug, Clone)]
pub enum ChannelSettings {
    None,
    Email {
        from: String,
        to: Vec<String>,
        smtp_host: String,
        smtp_port: u16,
        tls: SmtpTls,
    },
    Telegram {
        chat_id: String,
        endpoint: Option<Url>,
    },
    Alertmanager {
        urls: Vec<Url>,
    },
    /// DingTalk, WeCom, Feishu, Slack, webhook: the base URL override, if any.
    Endpoint(Option<Url>),
}

// ---------------------------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------------------------

/// Picks the config path: `--config`, else `$STOREGUARD_CONFIG`, else the default.
pub fn resolve_path(flag: Option<&Path>) -> PathBuf {
    if let Some(p) = flag {
        return p.to_path_buf();
    }
    match std::env::var_os("STOREGUARD_CONFIG") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(DEFAULT_CONFIG_PATH),
    }
}

impl Config {
    /// Reads and validates the config file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let meta = std::fs::metadata(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                ConfigError::one(
                    None,
                    format!("{}: config file not found", path.display()),
                    format!(
                        "create one with `storeguard init --config {}`, or point --config / \
                         $STOREGUARD_CONFIG at an existing file",
                        path.display()
                    ),
                )
            } else {
                ConfigError::one(
                    None,
                    format!("{}: cannot read the config file: {e}", path.display()),
                    "check that the file exists and that this user may read it",
                )
            }
        })?;
        if meta.is_dir() {
            return Err(ConfigError::one(
                None,
                format!("{}: is a directory, not a config file", path.display()),
                "point --config at the storeguard.toml file itself",
            ));
        }
        if meta.len() > MAX_CONFIG_BYTES {
            return Err(ConfigError::one(
                None,
                format!("{}: config file is larger than 32 MiB", path.display()),
                "this is not a storeguard config; point --config at the right file",
            ));
        }
        let bytes = std::fs::read(path).map_err(|e| {
            ConfigError::one(
                None,
                format!("{}: cannot read the config file: {e}", path.display()),
                "check that this user may read it",
            )
        })?;
        let text = match String::from_utf8(bytes) {
            Ok(t) => t,
            Err(e) => {
                let valid = e.utf8_error().valid_up_to();
                let partial = String::from_utf8_lossy(&e.as_bytes()[..valid]).into_owned();
                let loc = Source {
                    path,
                    text: &partial,
                }
                .locate(valid);
                return Err(ConfigError::one(
                    Some(loc),
                    "the config file is not valid UTF-8",
                    "save it as UTF-8 (names in Chinese are fine, the encoding must be UTF-8)",
                ));
            }
        };
        Config::from_toml(path, &text)
    }

    /// Validates config text; `path` is used for messages and to resolve relative paths.
    pub fn from_toml(path: &Path, text: &str) -> Result<Config, ConfigError> {
        // A UTF-8 byte-order mark (Windows editors) is harmless: skip it. CRLF is valid TOML.
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let src = Source { path, text };
        if text.trim().is_empty() {
            return Err(ConfigError::one(
                Some(src.locate(0)),
                "the config file is empty",
                "start from config/storeguard.example.toml, or run `storeguard init` to write one",
            ));
        }
        let raw: RawConfig = parse::raw_config(text).map_err(|e| {
            let loc = e.span().map(|s| src.locate(s.start));
            ConfigError::one(loc, toml_message(&e), toml_help(&e))
        })?;
        let mut c = Collector {
            src,
            problems: Vec::new(),
        };
        refuse_control_characters(text, &mut c);
        let config = validate(raw, &mut c);
        if c.problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError {
                problems: c.problems,
            })
        }
    }

    pub fn store(&self, id: &str) -> Option<&Store> {
        match self.store_index.get(id).and_then(|&i| self.stores.get(i)) {
            Some(s) if s.id == id => Some(s),
            // `stores` was changed after validation: look it up the slow way.
            _ => self.stores.iter().find(|s| s.id == id),
        }
    }

    /// Keeps only the stores `keep` accepts (a one-off check of some of them), index included.
    pub fn retain_stores(&mut self, mut keep: impl FnMut(&Store) -> bool) {
        self.stores.retain(|s| keep(s));
        self.store_index.clear();
        for (i, s) in self.stores.iter().enumerate() {
            self.store_index.entry(s.id.clone()).or_insert(i);
        }
    }

    /// The position of store `id` in `stores`.
    pub fn store_position(&self, id: &str) -> Option<usize> {
        match self.store_index.get(id) {
            Some(&i) if self.stores.get(i).is_some_and(|s| s.id == id) => Some(i),
            _ => self.stores.iter().position(|s| s.id == id),
        }
    }

    pub fn channel(&self, name: &str) -> Option<&Channel> {
        self.channels.iter().find(|c| c.name == name)
    }

    /// The endpoint a store's probe talks to first.
    pub fn base_url(&self, store: &Store) -> &Url {
        let m = store.marketplace;
        let key = store.region.unwrap_or(m.spec().endpoints[0].key);
        self.endpoints.get(m, key)
    }
}
