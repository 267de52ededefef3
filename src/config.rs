//! `storeguard.toml`: the strict raw schema and the validated [`Config`] everything else uses.
//!
//! The raw types mirror the file one to one and refuse unknown keys. [`Config::from_toml`]
//! turns them into validated types once: cron strings parsed, durations parsed, references
//! between stores and channels resolved, endpoints checked. Every problem is reported with
//! `file:line:col` and a sentence that says what to do; all problems are collected, not just the
//! first. No secret belongs in this file, and no error message quotes a source line.

use crate::model::{AmazonRegion, ChannelKind, Language, Marketplace, Severity};
use crate::schedule::CronSchedule;
use serde::Deserialize;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;
use url::Url;

/// Where the config lives when neither `--config` nor `$STOREGUARD_CONFIG` says otherwise.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/storeguard/storeguard.toml";
/// Largest config file we read; a real one is a few hundred KiB for thousands of stores.
const MAX_CONFIG_BYTES: u64 = 32 * 1024 * 1024;

// ---------------------------------------------------------------------------------------------
// Raw schema
// ---------------------------------------------------------------------------------------------

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    daemon: RawDaemon,
    #[serde(default)]
    defaults: RawDefaults,
    #[serde(default)]
    marketplace: RawMarketplaces,
    #[serde(default, rename = "store")]
    stores: Vec<Spanned<RawStore>>,
    #[serde(default, rename = "channel")]
    channels: Vec<Spanned<RawChannel>>,
    #[serde(default, rename = "maintenance")]
    maintenance: Vec<Spanned<RawMaintenance>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDaemon {
    state_dir: Option<Spanned<String>>,
    vault_dir: Option<Spanned<String>>,
    identity: Option<Spanned<String>>,
    listen: Option<Spanned<String>>,
    timezone: Option<Spanned<String>>,
    language: Option<Language>,
    history_retention: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDefaults {
    schedule: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    failure_threshold: Option<Spanned<u32>>,
    success_threshold: Option<Spanned<u32>>,
    remind_every: Option<Spanned<String>>,
    expiry_warning: Option<Vec<Spanned<String>>>,
    password_max_age: Option<Spanned<String>>,
    channels: Option<Vec<Spanned<String>>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawMarketplaces {
    ozon: Option<RawEndpoint>,
    amazon: Option<RawAmazon>,
    alibaba: Option<RawEndpoint>,
    aliexpress: Option<RawEndpoint>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawEndpoint {
    endpoint: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAmazon {
    token_endpoint: Option<Spanned<String>>,
    na: Option<Spanned<String>>,
    eu: Option<Spanned<String>>,
    fe: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStore {
    id: Spanned<String>,
    marketplace: Spanned<Marketplace>,
    name: Option<String>,
    account: Option<Spanned<toml::Value>>,
    region: Option<AmazonRegion>,
    marketplaces: Option<Vec<String>>,
    schedule: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    channels: Option<Vec<Spanned<String>>>,
    proxy: Option<Spanned<String>>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default = "yes")]
    enabled: bool,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawChannel {
    name: Spanned<String>,
    kind: Spanned<ChannelKind>,
    min_severity: Option<Severity>,
    language: Option<Language>,
    // Email.
    from: Option<Spanned<String>>,
    to: Option<Spanned<Vec<String>>>,
    smtp_host: Option<Spanned<String>>,
    smtp_port: Option<Spanned<u16>>,
    smtp_tls: Option<Spanned<SmtpTls>>,
    // Telegram.
    chat_id: Option<Spanned<toml::Value>>,
    // Alertmanager peers.
    urls: Option<Spanned<Vec<Spanned<String>>>>,
    // Base-URL override for the IM services (tests, Lark, private deployments).
    endpoint: Option<Spanned<String>>,
    // Routing filters.
    stores: Option<Vec<String>>,
    tags: Option<Vec<String>>,
    marketplaces: Option<Vec<Marketplace>>,
    events: Option<Vec<Spanned<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMaintenance {
    name: Option<String>,
    schedule: Option<Spanned<String>>,
    duration: Option<Spanned<String>>,
    start: Option<Spanned<toml::Value>>,
    end: Option<Spanned<toml::Value>>,
    stores: Option<Vec<String>>,
    tags: Option<Vec<String>>,
    marketplaces: Option<Vec<Marketplace>>,
}

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
    pub timezone: chrono_tz::Tz,
    pub language: Language,
    pub history_retention: Duration,
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

/// Marketplace base URLs (overridable so tests and sandboxes can point anywhere).
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoints {
    pub ozon: Url,
    pub amazon_token: Url,
    pub amazon_na: Url,
    pub amazon_eu: Url,
    pub amazon_fe: Url,
    pub alibaba: Url,
    pub aliexpress: Url,
}

impl Endpoints {
    pub fn amazon_region(&self, region: AmazonRegion) -> &Url {
        match region {
            AmazonRegion::Na => &self.amazon_na,
            AmazonRegion::Eu => &self.amazon_eu,
            AmazonRegion::Fe => &self.amazon_fe,
        }
    }
}

impl Default for Endpoints {
    fn default() -> Self {
        let u = |s: &str| Url::parse(s).expect("built-in URL");
        Endpoints {
            ozon: u("https://api-seller.ozon.ru"),
            amazon_token: u("https://api.amazon.com/auth/o2/token"),
            amazon_na: u("https://sellingpartnerapi-na.amazon.com"),
            amazon_eu: u("https://sellingpartnerapi-eu.amazon.com"),
            amazon_fe: u("https://sellingpartnerapi-fe.amazon.com"),
            alibaba: u("https://openapi-api.alibaba.com"),
            aliexpress: u("https://api-sg.aliexpress.com"),
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
    pub region: Option<AmazonRegion>,
    /// Expected Amazon marketplace ids.
    pub marketplaces: Vec<String>,
    pub schedule: CronSchedule,
    pub timeout: Duration,
    /// Channels this store's alerts go to (the store's own list, else the defaults).
    pub channels: Vec<String>,
    /// Egress proxy (http, https or socks5); its password, if any, is in the vault.
    pub proxy: Option<Url>,
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
    pub events: Vec<String>,
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
        tz: chrono_tz::Tz,
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
// Errors
// ---------------------------------------------------------------------------------------------

/// No key or string in the config may hold a control character: every value ends up on a
/// terminal, in a log line or in an alert, where an escape sequence would rewrite what the
/// reader sees (and a CR or LF would forge a line).
fn refuse_control_characters(text: &str, c: &mut Collector<'_>) {
    use toml::de::{DeTable, DeValue};
    fn table(t: &DeTable<'_>, path: &str, c: &mut Collector<'_>) {
        for (k, v) in t {
            let key = if path.is_empty() {
                k.get_ref().to_string()
            } else {
                format!("{path}.{}", k.get_ref())
            };
            check(k.get_ref(), k.span(), &key, c);
            value(v, &key, c);
        }
    }
    fn value(v: &Spanned<DeValue<'_>>, path: &str, c: &mut Collector<'_>) {
        match v.get_ref() {
            DeValue::String(s) => check(s, v.span(), path, c),
            DeValue::Array(a) => {
                for (i, x) in a.iter().enumerate() {
                    value(x, &format!("{path}[{i}]"), c);
                }
            }
            DeValue::Table(t) => table(t, path, c),
            _ => {}
        }
    }
    fn check(s: &str, span: std::ops::Range<usize>, path: &str, c: &mut Collector<'_>) {
        if let Some(ch) = s.chars().find(|ch| ch.is_control()) {
            c.at(
                span,
                format!(
                    "`{}` holds a control character ({})",
                    crate::outcome::sanitize(path, 80),
                    ch.escape_unicode()
                ),
                "remove it: names, ids and settings are plain text on one line",
            );
        }
    }
    if let Ok(doc) = DeTable::parse(text) {
        table(doc.get_ref(), "", c);
    }
}

/// Position in a file, 1-based.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub path: PathBuf,
    pub line: usize,
    pub col: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.path.display(), self.line, self.col)
    }
}

/// One problem in the config: where, what, and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub location: Option<Location>,
    pub message: String,
    pub help: String,
}

impl fmt::Display for Problem {
    /// Messages quote the config's text (and the TOML parser's excerpt of it): control
    /// characters are shown escaped, never sent to the terminal.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use crate::outcome::printable;
        match &self.location {
            Some(l) => write!(
                f,
                "{}: {}",
                printable(&l.to_string()),
                printable(&self.message)
            )?,
            None => f.write_str(&printable(&self.message))?,
        }
        if !self.help.is_empty() {
            write!(f, "\n  help: {}", printable(&self.help))?;
        }
        Ok(())
    }
}

/// Every problem found in a config file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl ConfigError {
    fn one(
        location: Option<Location>,
        message: impl Into<String>,
        help: impl Into<String>,
    ) -> Self {
        ConfigError {
            problems: vec![Problem {
                location,
                message: message.into(),
                help: help.into(),
            }],
        }
    }
}

/// Converts byte offsets to line/column for one source text.
struct Source<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Source<'_> {
    fn locate(&self, offset: usize) -> Location {
        let offset = offset.min(self.text.len());
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let col = before[line_start..].chars().count() + 1;
        Location {
            path: self.path.to_path_buf(),
            line,
            col,
        }
    }
}

struct Collector<'a> {
    src: Source<'a>,
    problems: Vec<Problem>,
}

impl Collector<'_> {
    fn at(
        &mut self,
        span: std::ops::Range<usize>,
        message: impl Into<String>,
        help: impl Into<String>,
    ) {
        let location = Some(self.src.locate(span.start));
        self.problems.push(Problem {
            location,
            message: message.into(),
            help: help.into(),
        });
    }
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
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
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
        match store.marketplace {
            Marketplace::Ozon => &self.endpoints.ozon,
            Marketplace::Amazon => self
                .endpoints
                .amazon_region(store.region.unwrap_or(AmazonRegion::Na)),
            Marketplace::Alibaba => &self.endpoints.alibaba,
            Marketplace::Aliexpress => &self.endpoints.aliexpress,
        }
    }
}

/// The toml error's own sentence, without the quoted source line (which could hold a value).
fn toml_message(e: &toml::de::Error) -> String {
    let mut m = e.message().trim().replace('\n', " ");
    // "invalid type: string \"…\", expected u32": drop the quoted value, say the type in words.
    if m.starts_with("invalid type") || m.starts_with("invalid value") {
        let mut out = String::with_capacity(m.len());
        let mut in_quotes = false;
        for c in m.chars() {
            if c == '"' {
                in_quotes = !in_quotes;
                continue;
            }
            if !in_quotes {
                out.push(c);
            }
        }
        m = out
            .replace("string ,", "a string,")
            .replace("integer ,", "a number,")
            .replace("expected u32", "expected a whole number")
            .replace("expected u16", "expected a port number")
            .replace("expected a boolean", "expected true or false");
    }
    if m.starts_with("unknown field") {
        m
    } else {
        // Keep messages short and on one line.
        m.chars().take(300).collect()
    }
}

fn toml_help(e: &toml::de::Error) -> String {
    let m = e.message();
    if m.starts_with("unknown field") {
        "remove it or fix its spelling; config/storeguard.example.toml lists every option".into()
    } else if m.starts_with("unknown variant") {
        "use one of the values listed".into()
    } else if m.starts_with("invalid type") {
        "give the value the type shown (strings in quotes, numbers bare, lists in [ ])".into()
    } else if m.starts_with("missing field") {
        "add the field; config/storeguard.example.toml shows an example".into()
    } else if m.starts_with("duplicate key") {
        "a key may appear once per table; remove one of them".into()
    } else {
        "fix the TOML syntax at that position (strings need quotes, tables need [brackets])".into()
    }
}

fn relative_to(config_path: &Path, p: &str) -> PathBuf {
    let p = PathBuf::from(p);
    if p.is_absolute() {
        p
    } else {
        config_path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .map_or_else(|| p.clone(), |d| d.join(&p))
    }
}

fn is_loopback_host(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// Parses an endpoint URL: https anywhere, plain http only to loopback.
pub fn check_endpoint(text: &str) -> Result<Url, (String, String)> {
    let url = Url::parse(text.trim()).map_err(|e| {
        (
            format!("`{text}` is not a URL ({e})"),
            "write a full URL such as \"https://api-seller.ozon.ru\"".to_string(),
        )
    })?;
    match url.scheme() {
        "https" => {}
        "http" if is_loopback_host(&url) => {}
        "http" => {
            return Err((
                format!("`{text}` uses plain http to a host that is not loopback"),
                "use https:// (plain http is allowed only to 127.0.0.1, ::1 or localhost, for tests)"
                    .into(),
            ));
        }
        other => {
            return Err((
                format!("`{text}` has scheme `{other}`"),
                "use an https:// URL".into(),
            ));
        }
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err((
            "an endpoint must not carry a user name or password".into(),
            "keep credentials in the vault, not in storeguard.toml".into(),
        ));
    }
    if url.host().is_none() {
        return Err((format!("`{text}` has no host"), "write a full URL".into()));
    }
    Ok(url)
}

fn is_valid_id(id: &str) -> bool {
    let mut chars = id.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
        && id.len() <= 64
}

fn duration_field(
    c: &mut Collector<'_>,
    v: Option<&Spanned<String>>,
    default: Duration,
    what: &str,
    min: Duration,
) -> Duration {
    let Some(v) = v else { return default };
    match crate::duration::parse(v.get_ref()) {
        Ok(d) if d < min => {
            c.at(
                v.span(),
                format!("{what} `{}` is too short", v.get_ref()),
                format!("use at least {}", crate::duration::format(min)),
            );
            default
        }
        Ok(d) => d,
        Err(e) => {
            c.at(v.span(), format!("{what}: {e}"), "");
            default
        }
    }
}

fn schedule_field(c: &mut Collector<'_>, v: &Spanned<String>) -> Option<CronSchedule> {
    match CronSchedule::parse(v.get_ref()) {
        Ok(s) => Some(s),
        Err(e) => {
            c.at(
                v.span(),
                e,
                "write a crontab schedule such as \"*/10 * * * *\" (every 10 minutes)",
            );
            None
        }
    }
}

fn endpoint_field(c: &mut Collector<'_>, v: Option<&Spanned<String>>, default: &Url) -> Url {
    match v {
        None => default.clone(),
        Some(v) => match check_endpoint(v.get_ref()) {
            Ok(u) => u,
            Err((m, h)) => {
                c.at(v.span(), m, h);
                default.clone()
            }
        },
    }
}

fn scalar_string(v: &toml::Value) -> Option<String> {
    match v {
        toml::Value::String(s) => Some(s.trim().to_string()),
        toml::Value::Integer(i) => Some(i.to_string()),
        _ => None,
    }
}

fn validate(raw: RawConfig, c: &mut Collector<'_>) -> Config {
    let path = c.src.path.to_path_buf();
    let d = &raw.daemon;

    let state_dir = d.state_dir.as_ref().map_or_else(
        || PathBuf::from("/var/lib/storeguard"),
        |s| relative_to(&path, s.get_ref()),
    );
    let vault_dir = d.vault_dir.as_ref().map_or_else(
        || relative_to(&path, "vault"),
        |s| relative_to(&path, s.get_ref()),
    );
    let identity = match &d.identity {
        Some(p) => relative_to(&path, p.get_ref()),
        None => match std::env::var_os("CREDENTIALS_DIRECTORY") {
            Some(dir) if Path::new(&dir).join("identity").exists() => {
                Path::new(&dir).join("identity")
            }
            _ => relative_to(&path, "identity.txt"),
        },
    };
    let listen = match &d.listen {
        None => SocketAddr::from(([127, 0, 0, 1], 9464)),
        Some(l) => match l.get_ref().parse::<SocketAddr>() {
            Ok(a) => a,
            Err(_) => {
                c.at(
                    l.span(),
                    format!("listen address `{}` is not an IP:port", l.get_ref()),
                    "write it like \"127.0.0.1:9464\" (keep it on loopback unless you set up the API token)",
                );
                SocketAddr::from(([127, 0, 0, 1], 9464))
            }
        },
    };
    let timezone = match &d.timezone {
        None => chrono_tz::UTC,
        Some(t) => match t.get_ref().parse::<chrono_tz::Tz>() {
            Ok(tz) => tz,
            Err(_) => {
                c.at(
                    t.span(),
                    format!("unknown timezone `{}`", t.get_ref()),
                    "use an IANA name such as \"Asia/Shanghai\", \"Europe/Moscow\" or \"UTC\"",
                );
                chrono_tz::UTC
            }
        },
    };
    let history_retention = duration_field(
        c,
        d.history_retention.as_ref(),
        Duration::from_secs(90 * 86_400),
        "history_retention",
        Duration::from_secs(86_400),
    );
    let daemon = DaemonConfig {
        state_dir,
        vault_dir,
        identity,
        listen,
        timezone,
        language: d.language.unwrap_or_default(),
        history_retention,
    };

    // [defaults]
    let rd = &raw.defaults;
    let default_schedule = CronSchedule::parse("*/10 * * * *").expect("built-in schedule");
    let schedule = rd
        .schedule
        .as_ref()
        .and_then(|s| schedule_field(c, s))
        .unwrap_or(default_schedule);
    let timeout = duration_field(
        c,
        rd.timeout.as_ref(),
        Duration::from_secs(30),
        "timeout",
        Duration::from_secs(1),
    );
    let threshold =
        |c: &mut Collector<'_>, v: &Option<Spanned<u32>>, default: u32, what: &str| match v {
            None => default,
            Some(v) if *v.get_ref() == 0 => {
                c.at(
                    v.span(),
                    format!("{what} must be at least 1"),
                    "use 1 to act on the first check",
                );
                default
            }
            Some(v) => *v.get_ref(),
        };
    let failure_threshold = threshold(c, &rd.failure_threshold, 3, "failure_threshold");
    let success_threshold = threshold(c, &rd.success_threshold, 2, "success_threshold");
    let remind_every = duration_field(
        c,
        rd.remind_every.as_ref(),
        Duration::from_secs(6 * 3600),
        "remind_every",
        Duration::from_secs(1),
    );
    let password_max_age = duration_field(
        c,
        rd.password_max_age.as_ref(),
        Duration::from_secs(90 * 86_400),
        "password_max_age",
        Duration::from_secs(86_400),
    );
    let mut expiry_warning: Vec<Duration> = match &rd.expiry_warning {
        None => vec![14, 3, 1]
            .into_iter()
            .map(|d| Duration::from_secs(d * 86_400))
            .collect(),
        Some(list) => list
            .iter()
            .filter_map(|v| match crate::duration::parse(v.get_ref()) {
                Ok(d) if !d.is_zero() => Some(d),
                Ok(_) => {
                    c.at(
                        v.span(),
                        "an expiry warning of zero never fires",
                        "use e.g. \"1d\"",
                    );
                    None
                }
                Err(e) => {
                    c.at(v.span(), format!("expiry_warning: {e}"), "");
                    None
                }
            })
            .collect(),
    };
    expiry_warning.sort_by(|a, b| b.cmp(a));
    expiry_warning.dedup();

    // [[channel]] first, so names can be resolved.
    let mut channels = Vec::new();
    let mut channel_names = HashSet::new();
    for ch in raw.channels {
        let span = ch.span();
        let ch = ch.into_inner();
        if let Some(ch) = validate_channel(c, ch, span, &mut channel_names) {
            channels.push(ch);
        }
    }
    let check_channel_refs =
        |c: &mut Collector<'_>, list: &[Spanned<String>], names: &HashSet<String>| -> Vec<String> {
            let mut out = Vec::new();
            for n in list {
                if names.contains(n.get_ref()) {
                    if !out.contains(n.get_ref()) {
                        out.push(n.get_ref().clone());
                    }
                } else {
                    let known: Vec<&str> = {
                        let mut v: Vec<&str> = names.iter().map(String::as_str).collect();
                        v.sort_unstable();
                        v
                    };
                    c.at(
                        n.span(),
                        format!("unknown channel `{}`", n.get_ref()),
                        if known.is_empty() {
                            "define it in a [[channel]] table first".to_string()
                        } else {
                            format!(
                                "define it in a [[channel]] table, or use one of: {}",
                                known.join(", ")
                            )
                        },
                    );
                }
            }
            out
        };
    let default_channels = rd
        .channels
        .as_ref()
        .map(|l| check_channel_refs(c, l, &channel_names))
        .unwrap_or_default();

    let defaults = Defaults {
        schedule,
        timeout,
        failure_threshold,
        success_threshold,
        remind_every,
        expiry_warning,
        password_max_age,
        channels: default_channels,
    };

    // [marketplace.*]
    let base = Endpoints::default();
    let m = &raw.marketplace;
    let ep = |m: &Option<RawEndpoint>| m.as_ref().and_then(|e| e.endpoint.clone());
    let amazon = m.amazon.as_ref();
    let endpoints = Endpoints {
        ozon: endpoint_field(c, ep(&m.ozon).as_ref(), &base.ozon),
        amazon_token: endpoint_field(
            c,
            amazon.and_then(|a| a.token_endpoint.as_ref()),
            &base.amazon_token,
        ),
        amazon_na: endpoint_field(c, amazon.and_then(|a| a.na.as_ref()), &base.amazon_na),
        amazon_eu: endpoint_field(c, amazon.and_then(|a| a.eu.as_ref()), &base.amazon_eu),
        amazon_fe: endpoint_field(c, amazon.and_then(|a| a.fe.as_ref()), &base.amazon_fe),
        alibaba: endpoint_field(c, ep(&m.alibaba).as_ref(), &base.alibaba),
        aliexpress: endpoint_field(c, ep(&m.aliexpress).as_ref(), &base.aliexpress),
    };

    // [[store]]
    let mut stores = Vec::new();
    // Offsets, located only for a duplicate: locating walks the text from its start.
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut schedules: HashMap<String, CronSchedule> = HashMap::new();
    for st in raw.stores {
        let table_span = st.span();
        let st = st.into_inner();
        let id = st.id.get_ref().clone();
        if !is_valid_id(&id) {
            c.at(
                st.id.span(),
                format!("store id `{id}` is not allowed"),
                "use lowercase letters, digits, '-' and '_', starting with a letter or digit (e.g. \"ozon-main\")",
            );
        }
        if let Some(&first) = seen.get(&id) {
            let first = c.src.locate(first);
            c.at(
                st.id.span(),
                format!(
                    "duplicate store id `{id}` (first defined at line {})",
                    first.line
                ),
                "give every [[store]] its own id",
            );
        } else {
            seen.insert(id.clone(), st.id.span().start);
        }
        let marketplace = *st.marketplace.get_ref();
        let account = match &st.account {
            None => None,
            Some(v) => match scalar_string(v.get_ref()) {
                Some(s) if !s.is_empty() => Some(s),
                _ => {
                    c.at(
                        v.span(),
                        "account must be a number or a string",
                        "write the account number, e.g. account = \"1234567\"",
                    );
                    None
                }
            },
        };
        if account.is_none() && st.account.is_none() && marketplace.spec().account_required {
            c.at(
                table_span.clone(),
                format!("store `{id}` has no `account`"),
                marketplace.spec().account_help,
            );
        }
        if marketplace == Marketplace::Amazon && st.region.is_none() {
            c.at(
                table_span.clone(),
                format!("Amazon store `{id}` has no `region`"),
                "add region = \"na\", \"eu\" or \"fe\" (the Selling Partner API region of its marketplaces)",
            );
        }
        if marketplace != Marketplace::Amazon && st.region.is_some() {
            c.at(
                table_span.clone(),
                format!("store `{id}`: `region` applies only to Amazon stores"),
                "remove it",
            );
        }
        if marketplace != Marketplace::Amazon && st.marketplaces.is_some() {
            c.at(
                table_span.clone(),
                format!("store `{id}`: `marketplaces` applies only to Amazon stores"),
                "remove it",
            );
        }
        let schedule = match &st.schedule {
            // Stores that spell out the same schedule share one parse.
            Some(s) => match schedules.get(s.get_ref()) {
                Some(parsed) => Some(parsed.clone()),
                None => {
                    let parsed = schedule_field(c, s);
                    if let Some(p) = &parsed {
                        schedules.insert(s.get_ref().clone(), p.clone());
                    }
                    parsed
                }
            },
            None => Some(defaults.schedule.clone()),
        };
        // The minimum intervals protect real marketplaces; fakes on loopback may be polled fast.
        let on_loopback = match marketplace {
            Marketplace::Ozon => is_loopback_host(&endpoints.ozon),
            Marketplace::Amazon => {
                is_loopback_host(&endpoints.amazon_token)
                    && is_loopback_host(
                        endpoints.amazon_region(st.region.unwrap_or(AmazonRegion::Na)),
                    )
            }
            Marketplace::Alibaba => is_loopback_host(&endpoints.alibaba),
            Marketplace::Aliexpress => is_loopback_host(&endpoints.aliexpress),
        };
        if let Some(sched) = schedule.as_ref().filter(|_| !on_loopback) {
            let min = marketplace.min_check_interval();
            if sched.min_interval() < min {
                let (span, whose) = match &st.schedule {
                    Some(s) => (s.span(), "its schedule"),
                    None => (
                        rd.schedule
                            .as_ref()
                            .map_or(table_span.clone(), |s| s.span()),
                        "the default schedule",
                    ),
                };
                c.at(
                    span,
                    format!(
                        "store `{id}`: {whose} `{}` checks more often than {} allows (at most every {})",
                        sched.as_str(),
                        marketplace.display_name(),
                        crate::duration::format(min)
                    ),
                    format!(
                        "use a schedule such as \"*/{} * * * *\" or slower; tighter checks get the key throttled",
                        (min.as_secs() / 60).max(1)
                    ),
                );
            }
        }
        let timeout = duration_field(
            c,
            st.timeout.as_ref(),
            defaults.timeout,
            "timeout",
            Duration::from_secs(1),
        );
        let store_channels = match &st.channels {
            Some(l) => check_channel_refs(c, l, &channel_names),
            None => defaults.channels.clone(),
        };
        let proxy = st.proxy.as_ref().and_then(|p| match Url::parse(p.get_ref()) {
            Ok(u) if matches!(u.scheme(), "http" | "https" | "socks5" | "socks5h") => {
                if u.password().is_some() {
                    c.at(
                        p.span(),
                        "the proxy URL carries a password",
                        format!("remove it here and put proxy_password in the vault: storeguard vault edit store/{id}"),
                    );
                    None
                } else {
                    Some(u)
                }
            }
            Ok(u) => {
                c.at(p.span(), format!("proxy scheme `{}` is not supported", u.scheme()), "use http://, https:// or socks5://");
                None
            }
            Err(e) => {
                c.at(p.span(), format!("`{}` is not a proxy URL ({e})", p.get_ref()), "write it like \"socks5://10.0.0.2:1080\"");
                None
            }
        });
        let name = st.name.clone().unwrap_or_else(|| id.clone());
        if let Some(schedule) = schedule {
            stores.push(Store {
                id,
                marketplace,
                name,
                account,
                region: st.region,
                marketplaces: st.marketplaces.clone().unwrap_or_default(),
                schedule,
                timeout,
                channels: store_channels,
                proxy,
                tags: st.tags.clone(),
                enabled: st.enabled,
            });
        }
    }

    let mut maintenance = Vec::new();
    for (i, m) in raw.maintenance.into_iter().enumerate() {
        let span = m.span();
        let m = m.into_inner();
        let name = m
            .name
            .clone()
            .unwrap_or_else(|| format!("maintenance #{}", i + 1));
        let time = |c: &mut Collector<'_>,
                    v: &Spanned<toml::Value>,
                    what: &str|
         -> Option<chrono::DateTime<chrono::Utc>> {
            let text = match v.get_ref() {
                toml::Value::Datetime(d) => d.to_string(),
                toml::Value::String(s) => s.clone(),
                _ => String::new(),
            };
            match chrono::DateTime::parse_from_rfc3339(&text) {
                Ok(t) => Some(t.with_timezone(&chrono::Utc)),
                Err(_) => {
                    c.at(
                        v.span(),
                        format!("{name}: `{what}` is not a date and time"),
                        "write it like 2026-12-01T02:00:00+08:00",
                    );
                    None
                }
            }
        };
        let window = match (&m.schedule, &m.duration, &m.start, &m.end) {
            (Some(s), Some(d), None, None) => {
                let schedule = schedule_field(c, s);
                let duration = duration_field(
                    c,
                    Some(d),
                    Duration::ZERO,
                    "duration",
                    Duration::from_secs(60),
                );
                schedule.map(|schedule| Window::Recurring {
                    schedule: Box::new(schedule),
                    duration,
                })
            }
            (None, None, Some(a), Some(b)) => match (time(c, a, "start"), time(c, b, "end")) {
                (Some(start), Some(end)) if start < end => Some(Window::Fixed { start, end }),
                (Some(_), Some(_)) => {
                    c.at(
                        b.span(),
                        format!("{name}: `end` is not after `start`"),
                        "swap them or fix the dates",
                    );
                    None
                }
                _ => None,
            },
            _ => {
                c.at(
                    span,
                    format!("{name}: give either `schedule` and `duration`, or `start` and `end`"),
                    "e.g. schedule = \"0 3 * * 0\" with duration = \"2h\" (Sundays 03:00-05:00), or start/end dates",
                );
                None
            }
        };
        let selector = Selector {
            stores: m.stores.clone().unwrap_or_default(),
            tags: m.tags.clone().unwrap_or_default(),
            marketplaces: m.marketplaces.clone().unwrap_or_default(),
        };
        if let Some(window) = window {
            maintenance.push(Maintenance {
                name,
                window,
                selector,
            });
        }
    }

    let mut store_index = HashMap::with_capacity(stores.len());
    for (i, s) in stores.iter().enumerate() {
        store_index.entry(s.id.clone()).or_insert(i);
    }
    Config {
        path,
        daemon,
        defaults,
        endpoints,
        stores,
        channels,
        maintenance,
        store_index,
    }
}

fn validate_channel(
    c: &mut Collector<'_>,
    ch: RawChannel,
    span: std::ops::Range<usize>,
    names: &mut HashSet<String>,
) -> Option<Channel> {
    let name = ch.name.get_ref().clone();
    let kind = *ch.kind.get_ref();
    let mut ok = true;
    if !is_valid_id(&name) {
        c.at(
            ch.name.span(),
            format!("channel name `{name}` is not allowed"),
            "use lowercase letters, digits, '-' and '_' (e.g. \"ops-dingtalk\")",
        );
        ok = false;
    }
    if !names.insert(name.clone()) {
        c.at(
            ch.name.span(),
            format!("duplicate channel name `{name}`"),
            "give every [[channel]] its own name",
        );
        ok = false;
    }
    // Settings that belong to one kind only.
    let mut only =
        |present: bool, field: &str, for_kinds: &[ChannelKind], at: std::ops::Range<usize>| {
            if present && !for_kinds.contains(&kind) {
                let kinds: Vec<&str> = for_kinds.iter().map(|k| k.as_str()).collect();
                c.at(
                    at,
                    format!(
                        "channel `{name}`: `{field}` applies only to {} channels",
                        kinds.join("/")
                    ),
                    "remove it",
                );
                ok = false;
            }
        };
    use ChannelKind as K;
    let sp = |o: Option<std::ops::Range<usize>>| o.unwrap_or(span.clone());
    only(
        ch.from.is_some(),
        "from",
        &[K::Email],
        sp(ch.from.as_ref().map(|v| v.span())),
    );
    only(
        ch.to.is_some(),
        "to",
        &[K::Email],
        sp(ch.to.as_ref().map(|v| v.span())),
    );
    only(
        ch.smtp_host.is_some(),
        "smtp_host",
        &[K::Email],
        sp(ch.smtp_host.as_ref().map(|v| v.span())),
    );
    only(
        ch.smtp_port.is_some(),
        "smtp_port",
        &[K::Email],
        sp(ch.smtp_port.as_ref().map(|v| v.span())),
    );
    only(
        ch.smtp_tls.is_some(),
        "smtp_tls",
        &[K::Email],
        sp(ch.smtp_tls.as_ref().map(|v| v.span())),
    );
    only(
        ch.chat_id.is_some(),
        "chat_id",
        &[K::Telegram],
        sp(ch.chat_id.as_ref().map(|v| v.span())),
    );
    only(
        ch.urls.is_some(),
        "urls",
        &[K::Alertmanager],
        sp(ch.urls.as_ref().map(|v| v.span())),
    );
    only(
        ch.endpoint.is_some(),
        "endpoint",
        &[
            K::Dingtalk,
            K::Wecom,
            K::Feishu,
            K::Telegram,
            K::Slack,
            K::Webhook,
        ],
        sp(ch.endpoint.as_ref().map(|v| v.span())),
    );
    let endpoint = ch
        .endpoint
        .as_ref()
        .and_then(|e| match check_endpoint(e.get_ref()) {
            Ok(u) => Some(u),
            Err((m, h)) => {
                c.at(e.span(), m, h);
                None
            }
        });
    let missing = |c: &mut Collector<'_>, field: &str, example: &str| {
        c.at(
            span.clone(),
            format!("{kind} channel `{name}` has no `{field}`"),
            format!("add {field} = {example}"),
        );
    };
    let settings = match kind {
        K::Email => {
            let from = ch.from.as_ref().map(|v| v.get_ref().clone());
            let to = ch
                .to
                .as_ref()
                .map(|v| v.get_ref().clone())
                .unwrap_or_default();
            let host = ch.smtp_host.as_ref().map(|v| v.get_ref().clone());
            if from.is_none() {
                missing(c, "from", "\"storeguard@example.com\"");
            }
            if to.is_empty() {
                missing(c, "to", "[\"ops@example.com\"]");
            }
            if host.is_none() {
                missing(c, "smtp_host", "\"smtp.example.com\"");
            }
            let tls = ch
                .smtp_tls
                .as_ref()
                .map_or(SmtpTls::Starttls, |t| *t.get_ref());
            if let (Some(h), Some(t)) = (&host, &ch.smtp_tls) {
                let loopback =
                    h == "localhost" || h.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
                if *t.get_ref() == SmtpTls::None && !loopback {
                    c.at(
                        t.span(),
                        format!(
                            "channel `{name}`: smtp_tls = \"none\" to a host that is not loopback"
                        ),
                        "use \"starttls\" or \"tls\"; plain SMTP is allowed only to a local relay",
                    );
                }
            }
            let port = ch.smtp_port.as_ref().map_or(
                match tls {
                    SmtpTls::Tls => 465,
                    SmtpTls::Starttls => 587,
                    SmtpTls::None => 25,
                },
                |p| *p.get_ref(),
            );
            match (from, host) {
                (Some(from), Some(smtp_host)) if !to.is_empty() => ChannelSettings::Email {
                    from,
                    to,
                    smtp_host,
                    smtp_port: port,
                    tls,
                },
                _ => {
                    ok = false;
                    ChannelSettings::None
                }
            }
        }
        K::Telegram => match ch.chat_id.as_ref().and_then(|v| scalar_string(v.get_ref())) {
            Some(chat_id) => ChannelSettings::Telegram { chat_id, endpoint },
            None => {
                missing(c, "chat_id", "\"-1001234567890\"");
                ok = false;
                ChannelSettings::None
            }
        },
        K::Alertmanager => {
            let mut urls = Vec::new();
            for u in ch
                .urls
                .as_ref()
                .map(|u| u.get_ref().as_slice())
                .unwrap_or_default()
            {
                match check_endpoint(u.get_ref()) {
                    Ok(url) => urls.push(url),
                    Err((m, h)) => c.at(u.span(), m, h),
                }
            }
            if ch.urls.as_ref().is_none_or(|u| u.get_ref().is_empty()) {
                missing(
                    c,
                    "urls",
                    "[\"http://127.0.0.1:9093\"] (every Alertmanager peer)",
                );
                ok = false;
            }
            ChannelSettings::Alertmanager { urls }
        }
        K::Log => ChannelSettings::None,
        _ => ChannelSettings::Endpoint(endpoint),
    };
    let mut events = Vec::new();
    for e in ch.events.iter().flatten() {
        if matches!(e.get_ref().as_str(), "opened" | "reminder" | "resolved") {
            events.push(e.get_ref().clone());
        } else {
            c.at(
                e.span(),
                format!("channel `{name}`: unknown event `{}`", e.get_ref()),
                "use \"opened\", \"reminder\" or \"resolved\"",
            );
            ok = false;
        }
    }
    ok.then_some(Channel {
        name,
        kind,
        min_severity: ch.min_severity.unwrap_or(Severity::Unknown),
        language: ch.language,
        settings,
        filter: Selector {
            stores: ch.stores.clone().unwrap_or_default(),
            tags: ch.tags.clone().unwrap_or_default(),
            marketplaces: ch.marketplaces.clone().unwrap_or_default(),
        },
        events,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml(Path::new("/etc/storeguard/storeguard.toml"), text)
    }

    fn first(text: &str) -> Problem {
        load(text).unwrap_err().problems.remove(0)
    }

    const OZON: &str = "[[store]]\nid = \"ozon-main\"\nmarketplace = \"ozon\"\naccount = \"123\"\n";

    #[test]
    fn store_lookup_by_id_survives_edits_of_the_list() {
        let mut text = String::new();
        for i in 0..50 {
            text.push_str(&format!(
                "[[store]]\nid = \"s{i}\"\nmarketplace = \"ozon\"\naccount = \"{i}\"\nschedule = \"*/15 * * * *\"\n"
            ));
        }
        let mut c = load(&text).unwrap();
        assert_eq!(c.store("s37").unwrap().account.as_deref(), Some("37"));
        assert_eq!(c.store_position("s37"), Some(37));
        assert!(c.store("s50").is_none());
        // Stores that spell out the same schedule share one parse, with its interval.
        assert_eq!(
            c.stores[3].schedule.min_interval(),
            Duration::from_secs(900)
        );
        // A caller that edits the list still finds stores (the index is only a shortcut).
        c.stores.remove(0);
        assert_eq!(c.store("s37").unwrap().id, "s37");
        assert_eq!(c.store_position("s37"), Some(36));
        assert!(c.store("s0").is_none());
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let c = load(OZON).unwrap();
        assert_eq!(c.stores.len(), 1);
        assert_eq!(c.stores[0].name, "ozon-main");
        assert_eq!(c.defaults.failure_threshold, 3);
        assert_eq!(c.daemon.vault_dir, PathBuf::from("/etc/storeguard/vault"));
        assert_eq!(c.daemon.listen.to_string(), "127.0.0.1:9464");
        assert_eq!(
            c.defaults.expiry_warning[0],
            Duration::from_secs(14 * 86_400)
        );
    }

    #[test]
    fn unknown_key_points_at_it() {
        let p = first("[defaults]\nshedule = \"* * * * *\"\n");
        assert_eq!(p.location.as_ref().unwrap().line, 2);
        assert_eq!(p.location.as_ref().unwrap().col, 1);
        assert!(
            p.message.starts_with("unknown field `shedule`"),
            "{}",
            p.message
        );
    }

    #[test]
    fn amazon_schedule_tighter_than_five_minutes_is_refused() {
        let p = first(
            "[[store]]\nid = \"amz\"\nmarketplace = \"amazon\"\nregion = \"na\"\nschedule = \"*/2 * * * *\"\n",
        );
        assert!(p.message.contains("at most every 5m"), "{}", p.message);
        assert_eq!(p.location.unwrap().line, 5);
    }

    #[test]
    fn fast_schedules_are_allowed_against_loopback_fakes() {
        let text = "[marketplace.amazon]\ntoken_endpoint = \"http://127.0.0.1:1/auth/o2/token\"\nna = \"http://127.0.0.1:2\"\n\
                    [[store]]\nid = \"amz\"\nmarketplace = \"amazon\"\nregion = \"na\"\nschedule = \"*/2 * * * * *\"\n";
        assert!(load(text).is_ok());
    }

    #[test]
    fn amazon_without_region() {
        let p = first("[[store]]\nid = \"amz\"\nmarketplace = \"amazon\"\n");
        assert!(p.message.contains("has no `region`"));
    }

    #[test]
    fn duplicate_ids_and_unknown_channels_all_reported() {
        let e = load(&format!("{OZON}{OZON}channels = [\"nope\"]\n")).unwrap_err();
        assert_eq!(e.problems.len(), 2, "{e}");
        assert!(e.problems[0].message.contains("duplicate store id"));
        assert!(e.problems[1].message.contains("unknown channel `nope`"));
    }

    #[test]
    fn plain_http_only_to_loopback() {
        assert!(load("[marketplace.ozon]\nendpoint = \"http://127.0.0.1:8080\"\n").is_ok());
        assert!(load("[marketplace.ozon]\nendpoint = \"http://[::1]:8080\"\n").is_ok());
        let p = first("[marketplace.ozon]\nendpoint = \"http://api-seller.ozon.ru\"\n");
        assert!(p.message.contains("not loopback"));
    }

    #[test]
    fn globs() {
        assert!(glob_match("ozon-*", "ozon-main"));
        assert!(glob_match("*", "x"));
        assert!(glob_match("a?c", "abc"));
        assert!(glob_match("*-main", "ozon-main"));
        assert!(!glob_match("ozon-*", "amazon-us"));
        assert!(!glob_match("a?c", "ac"));
    }

    #[test]
    fn maintenance_windows() {
        use chrono::TimeZone;
        let c = load(&format!(
            "{OZON}[[maintenance]]\nname = \"weekly\"\nschedule = \"0 3 * * *\"\nduration = \"2h\"\nstores = [\"ozon-*\"]\n\
             [[maintenance]]\nstart = 2026-12-01T00:00:00Z\nend = \"2026-12-02T00:00:00Z\"\n"
        ))
        .unwrap();
        let tz = chrono_tz::UTC;
        let at = |h: u32, m: u32| chrono::Utc.with_ymd_and_hms(2026, 11, 3, h, m, 0).unwrap();
        let weekly = &c.maintenance[0];
        assert_eq!(weekly.open_until(tz, at(2, 59)), None);
        assert_eq!(weekly.open_until(tz, at(3, 0)), Some(at(5, 0)));
        assert_eq!(weekly.open_until(tz, at(4, 30)), Some(at(5, 0)));
        assert_eq!(weekly.open_until(tz, at(5, 0)), None);
        assert!(weekly.selector.matches(&c.stores[0]));
        let fixed = &c.maintenance[1];
        let d1 = chrono::Utc.with_ymd_and_hms(2026, 12, 1, 12, 0, 0).unwrap();
        assert!(fixed.open_until(tz, d1).is_some());
        let p = first(&format!(
            "{OZON}[[maintenance]]\nschedule = \"0 3 * * *\"\n"
        ));
        assert!(p.message.contains("either `schedule` and `duration`"));
    }

    #[test]
    fn bom_and_crlf_are_accepted() {
        let text = format!("\u{feff}{}", OZON.replace('\n', "\r\n"));
        assert!(load(&text).is_ok());
    }

    #[test]
    fn empty_file_is_an_error() {
        assert!(first("  \n").message.contains("empty"));
    }

    #[test]
    fn relative_paths_follow_the_config_file() {
        let c = Config::from_toml(
            Path::new("/srv/sg/storeguard.toml"),
            "[daemon]\nstate_dir = \"state\"\nidentity = \"id.txt\"\n",
        )
        .unwrap();
        assert_eq!(c.daemon.state_dir, PathBuf::from("/srv/sg/state"));
        assert_eq!(c.daemon.identity, PathBuf::from("/srv/sg/id.txt"));
    }

    #[test]
    fn channel_settings_are_checked_per_kind() {
        let p = first("[[channel]]\nname = \"tg\"\nkind = \"telegram\"\n");
        assert!(p.message.contains("has no `chat_id`"));
        let p = first("[[channel]]\nname = \"hook\"\nkind = \"webhook\"\nchat_id = 5\n");
        assert!(p.message.contains("applies only to telegram"));
    }
}
