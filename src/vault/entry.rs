//! The secret documents inside vault files, and their per-kind schemas.
//!
//! A vault file decrypts to a small TOML document. Parsing never echoes a value: a syntax error
//! reports a line number only, and schema errors name the field, never its content.

use crate::model::{ChannelKind, Marketplace};
use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use std::fmt;
use zeroize::Zeroizing;

/// What a vault entry belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EntryKind {
    Store,
    Channel,
    Daemon,
    /// A mailbox watched for security mail (`mailbox/NAME`).
    Mailbox,
}

impl EntryKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::Store => "store",
            EntryKind::Channel => "channel",
            EntryKind::Daemon => "daemon",
            EntryKind::Mailbox => "mailbox",
        }
    }

    /// Sub-directory of the vault holding this kind's files.
    pub fn dir(self) -> &'static str {
        match self {
            EntryKind::Store => "stores",
            EntryKind::Channel => "channels",
            EntryKind::Daemon => "daemon",
            EntryKind::Mailbox => "mailboxes",
        }
    }
}

/// `store/ozon-main`, `channel/ops`, `daemon/api`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EntryId {
    pub kind: EntryKind,
    pub name: String,
}

impl EntryId {
    pub fn store(name: &str) -> Self {
        EntryId {
            kind: EntryKind::Store,
            name: name.to_string(),
        }
    }

    pub fn mailbox(name: &str) -> Self {
        EntryId {
            kind: EntryKind::Mailbox,
            name: name.to_string(),
        }
    }

    pub fn channel(name: &str) -> Self {
        EntryId {
            kind: EntryKind::Channel,
            name: name.to_string(),
        }
    }

    /// The daemon's own secrets (status API token, heartbeat URL).
    pub fn daemon() -> Self {
        EntryId {
            kind: EntryKind::Daemon,
            name: "api".to_string(),
        }
    }

    /// The fleet database's password (`daemon/postgres`), when PostgreSQL asks for one.
    pub fn postgres() -> Self {
        EntryId {
            kind: EntryKind::Daemon,
            name: "postgres".to_string(),
        }
    }

    pub fn parse(s: &str) -> Result<Self, String> {
        let (kind, name) = s.split_once('/').ok_or_else(|| {
            format!(
                "`{s}` is not an entry name; write KIND/NAME, e.g. store/ozon-main or channel/ops"
            )
        })?;
        let kind = match kind {
            "store" | "stores" => EntryKind::Store,
            "channel" | "channels" => EntryKind::Channel,
            "daemon" => EntryKind::Daemon,
            "mailbox" | "mailboxes" => EntryKind::Mailbox,
            other => {
                return Err(format!(
                    "unknown entry kind `{other}`; use store/NAME, channel/NAME, mailbox/NAME, daemon/api or daemon/postgres"
                ));
            }
        };
        let valid = {
            let mut chars = name.chars();
            matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit())
                && chars
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
                && name.len() <= 64
        };
        if !valid {
            return Err(format!(
                "`{name}` is not a valid name; use lowercase letters, digits, '-' and '_'"
            ));
        }
        Ok(EntryId {
            kind,
            name: name.to_string(),
        })
    }
}

impl fmt::Display for EntryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.kind.as_str(), self.name)
    }
}

/// The schema an entry is validated against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Schema {
    Store(Marketplace),
    Channel(ChannelKind),
    Daemon,
    /// `daemon/postgres`: the password of the fleet's database user.
    Postgres,
    /// A mailbox's login: an app password, or OAuth 2 (`xoauth2`).
    Mailbox {
        xoauth2: bool,
    },
}

pub use crate::model::{Field, FieldType};

const WEB: &[Field] = &[
    Field::text(
        "login",
        true,
        false,
        "seller-centre login (e-mail or phone)",
    ),
    Field::text("password", true, true, "seller-centre password"),
    Field::text(
        "totp_secret",
        false,
        true,
        "2FA secret (base32), for `storeguard otp`",
    ),
    Field::time(
        "password_changed_at",
        "when the password was last changed (RFC 3339)",
    ),
];
const DAEMON: &[Field] = &[
    Field::text("api_token", true, true, "bearer token for the status API"),
    Field::text("heartbeat_url", false, true, "dead-man's-switch ping URL"),
];
const POSTGRES: &[Field] = &[Field::text(
    "password",
    true,
    true,
    "password of the database user named in [daemon] state",
)];
const MAILBOX_PASSWORD: &[Field] = &[Field::text(
    "password",
    true,
    true,
    "the mailbox's app password (QQ/163: 授权码 from the mail settings, not the login password)",
)];
const MAILBOX_XOAUTH2: &[Field] = &[
    Field::text("client_id", true, false, "OAuth client id of the app"),
    Field::text("client_secret", true, true, "OAuth client secret"),
    Field::text(
        "refresh_token",
        true,
        true,
        "refresh token from consenting to mail access (storeguard saves each new one)",
    ),
    Field::text(
        "token_endpoint",
        true,
        false,
        "the provider's token URL (Gmail: https://oauth2.googleapis.com/token)",
    ),
];
const NONE: &[Field] = &[];

impl Schema {
    pub fn fields(self) -> &'static [Field] {
        match self {
            Schema::Store(m) => m.spec().vault_fields,
            Schema::Channel(k) => k.spec().vault_fields.unwrap_or(NONE),
            Schema::Daemon => DAEMON,
            Schema::Postgres => POSTGRES,
            Schema::Mailbox { xoauth2: false } => MAILBOX_PASSWORD,
            Schema::Mailbox { xoauth2: true } => MAILBOX_XOAUTH2,
        }
    }

    /// Fields of the optional `[web]` table (stores only).
    pub fn web_fields(self) -> Option<&'static [Field]> {
        matches!(self, Schema::Store(_)).then_some(WEB)
    }

    pub fn describe(self) -> String {
        match self {
            Schema::Store(m) => format!("{} store", m.display_name()),
            Schema::Channel(k) => format!("{k} channel"),
            Schema::Daemon => "daemon entry".into(),
            Schema::Postgres => "database password".into(),
            Schema::Mailbox { xoauth2: false } => "mailbox (password)".into(),
            Schema::Mailbox { xoauth2: true } => "mailbox (XOAUTH2)".into(),
        }
    }
}

/// Why a secret document was refused. Never carries a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct EntryError {
    pub message: String,
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// Line of the first `key =` in `text`, for messages that must not quote the line.
fn key_line(text: &str, key: &str) -> Option<usize> {
    text.lines()
        .position(|l| {
            let l = l.trim_start();
            l.strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        })
        .map(|i| i + 1)
}

fn at(text: &str, key: &str) -> String {
    key_line(text, key).map_or_else(String::new, |l| format!("line {l}: "))
}

/// A parsed, schema-checked secret document. Values live in [`SecretString`]s.
pub struct Document {
    pub generation: u64,
    fields: Vec<(String, SecretString)>,
    times: Vec<(String, DateTime<Utc>)>,
    web: Option<Box<Document>>,
}

impl fmt::Debug for Document {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Document")
            .field("generation", &self.generation)
            .field(
                "fields",
                &self
                    .fields
                    .iter()
                    .map(|(k, _)| k.as_str())
                    .collect::<Vec<_>>(),
            )
            .field("web", &self.web.is_some())
            .finish()
    }
}

impl Document {
    /// Parses and validates `text` against `schema`.
    pub fn parse(text: &str, schema: Schema) -> Result<Document, EntryError> {
        let mut table: toml::Table = toml::from_str(text).map_err(|e| EntryError {
            message: match e.span() {
                Some(s) => format!(
                    "line {}: not valid TOML (each line is `field = \"value\"`, values in double quotes)",
                    line_of(text, s.start)
                ),
                None => "not valid TOML (each line is `field = \"value\"`)".into(),
            },
        })?;
        Self::from_table(text, &mut table, schema, false)
    }

    fn from_table(
        text: &str,
        table: &mut toml::Table,
        schema: Schema,
        is_web: bool,
    ) -> Result<Document, EntryError> {
        let fields = if is_web {
            schema.web_fields().unwrap_or(NONE)
        } else {
            schema.fields()
        };
        let mut generation = 0;
        let mut web = None;
        let mut out_fields = Vec::new();
        let mut out_times = Vec::new();
        let keys: Vec<String> = table.keys().cloned().collect();
        for key in keys {
            let mut value = table.remove(&key).expect("key listed");
            if !is_web && key == "generation" {
                generation = match value {
                    toml::Value::Integer(g) if g >= 0 => g as u64,
                    _ => {
                        return Err(EntryError {
                            message: format!(
                                "{}`generation` must be a whole number",
                                at(text, "generation")
                            ),
                        });
                    }
                };
                continue;
            }
            if !is_web && key == "web" && schema.web_fields().is_some() {
                let toml::Value::Table(ref mut t) = value else {
                    return Err(EntryError {
                        message:
                            "`web` must be a table: write [web] on its own line, then its fields"
                                .into(),
                    });
                };
                web = Some(Box::new(Self::from_table(text, t, schema, true)?));
                continue;
            }
            let Some(field) = fields.iter().find(|f| f.name == key) else {
                let mut expected: Vec<&str> = fields.iter().map(|f| f.name).collect();
                if !is_web && schema.web_fields().is_some() {
                    expected.push("[web]");
                }
                return Err(EntryError {
                    message: format!(
                        "{}unknown field `{}` for a {}{}; expected {}",
                        at(text, &key),
                        printable_key(&key),
                        schema.describe(),
                        if is_web { " [web] table" } else { "" },
                        if expected.is_empty() {
                            "no fields".to_string()
                        } else {
                            expected.join(", ")
                        }
                    ),
                });
            };
            match (field.ty, &mut value) {
                (FieldType::Text, toml::Value::String(s)) => {
                    let s = std::mem::take(s);
                    // The probes refuse to send such a value (it cannot be a header or a form
                    // field as is), so the vault refuses to hold it: found by `vault verify`,
                    // `config check` and the start-up check instead of at the first probe.
                    if s.chars().any(char::is_control) {
                        return Err(EntryError {
                            message: format!(
                                "{}`{key}` holds a line break, NUL or other control character, which no marketplace or channel accepts; paste the value again without it",
                                at(text, &key)
                            ),
                        });
                    }
                    if s.trim().is_empty() && field.required {
                        return Err(EntryError {
                            message: format!(
                                "{}`{key}` is empty; {} is required",
                                at(text, &key),
                                field.help
                            ),
                        });
                    }
                    out_fields.push((key, SecretString::from(s)));
                }
                (FieldType::Text, toml::Value::Integer(i)) if !field.secret => {
                    out_fields.push((key, SecretString::from(i.to_string())));
                }
                (FieldType::Time, toml::Value::Datetime(d)) => {
                    let t = parse_time(&d.to_string()).ok_or_else(|| EntryError {
                        message: format!("{}`{key}` needs a full date and time with offset, e.g. 2026-01-31T00:00:00Z", at(text, &key)),
                    })?;
                    out_times.push((key, t));
                }
                (FieldType::Time, toml::Value::String(s)) => {
                    let t = parse_time(s).ok_or_else(|| EntryError {
                        message: format!(
                            "{}`{key}` is not a date; write it like 2026-01-31T00:00:00Z",
                            at(text, &key)
                        ),
                    })?;
                    out_times.push((key, t));
                }
                (FieldType::Text, _) => {
                    return Err(EntryError {
                        message: format!(
                            "{}`{key}` must be a string in double quotes",
                            at(text, &key)
                        ),
                    });
                }
                (FieldType::Time, _) => {
                    return Err(EntryError {
                        message: format!(
                            "{}`{key}` must be a date such as 2026-01-31T00:00:00Z",
                            at(text, &key)
                        ),
                    });
                }
            }
        }
        for field in fields.iter().filter(|f| f.required) {
            if !out_fields.iter().any(|(k, _)| k == field.name) {
                return Err(EntryError {
                    message: format!(
                        "missing field `{}`{} ({}) for a {}",
                        field.name,
                        if is_web { " in [web]" } else { "" },
                        field.help,
                        schema.describe()
                    ),
                });
            }
        }
        // A robot webhook is given whole as `url`, or as its token: one of the two.
        let token_field = match schema {
            Schema::Channel(k) => k.spec().robot.as_ref().map(|r| r.token_field),
            Schema::Store(_) | Schema::Daemon | Schema::Postgres | Schema::Mailbox { .. } => None,
        };
        if let Some(token) = token_field.filter(|_| !is_web) {
            let has = |n: &str| out_fields.iter().any(|(k, _)| k == n);
            if has("url") == has(token) {
                return Err(EntryError {
                    message: format!(
                        "give the webhook URL exactly as copied as `url`, or only its token as `{token}` (one of the two) for a {}",
                        schema.describe()
                    ),
                });
            }
        }
        if schema == Schema::Channel(ChannelKind::Email) {
            let has = |n: &str| out_fields.iter().any(|(k, _)| k == n);
            if has("smtp_username") != has("smtp_password") {
                return Err(EntryError {
                    message: "give both smtp_username and smtp_password, or neither".into(),
                });
            }
        }
        Ok(Document {
            generation,
            fields: out_fields,
            times: out_times,
            web,
        })
    }

    pub fn get(&self, name: &str) -> Option<&SecretString> {
        self.fields.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    pub fn time(&self, name: &str) -> Option<DateTime<Utc>> {
        self.times.iter().find(|(k, _)| k == name).map(|(_, v)| *v)
    }

    pub fn web(&self) -> Option<&Document> {
        self.web.as_deref()
    }

    /// Field names and values, in schema order, for `vault show`.
    pub fn entries(&self) -> Vec<(String, Shown<'_>)> {
        let mut out: Vec<(String, Shown<'_>)> = self
            .fields
            .iter()
            .map(|(k, v)| (k.clone(), Shown::Secret(v)))
            .collect();
        out.extend(self.times.iter().map(|(k, v)| (k.clone(), Shown::Time(*v))));
        out
    }

    /// Renders the document back to TOML (for re-encryption). The result is zeroized on drop.
    pub fn to_toml(&self) -> Zeroizing<String> {
        let mut out = Zeroizing::new(format!("generation = {}\n", self.generation));
        out.push_str(&self.to_toml_body());
        out
    }

    /// The fields without the generation line (what a person edits).
    pub fn to_toml_body(&self) -> Zeroizing<String> {
        let mut out = Zeroizing::new(String::new());
        self.write_fields(&mut out);
        if let Some(web) = &self.web {
            out.push_str("\n[web]\n");
            web.write_fields(&mut out);
        }
        out
    }

    fn write_fields(&self, out: &mut Zeroizing<String>) {
        for (k, v) in &self.fields {
            out.push_str(k);
            out.push_str(" = ");
            push_toml_string(out, v.expose_secret());
            out.push('\n');
        }
        for (k, v) in &self.times {
            out.push_str(&format!(
                "{k} = {}\n",
                v.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ));
        }
    }

    /// Replaces (or adds) text fields, e.g. after a token refresh.
    pub fn set(&mut self, name: &str, value: SecretString) {
        match self.fields.iter_mut().find(|(k, _)| k == name) {
            Some((_, v)) => *v = value,
            None => self.fields.push((name.to_string(), value)),
        }
    }

    pub fn set_time(&mut self, name: &str, value: DateTime<Utc>) {
        match self.times.iter_mut().find(|(k, _)| k == name) {
            Some((_, v)) => *v = value,
            None => self.times.push((name.to_string(), value)),
        }
    }
}

/// A value as `vault show` may print it.
pub enum Shown<'a> {
    Secret(&'a SecretString),
    Time(DateTime<Utc>),
}

impl Shown<'_> {
    /// Masked to the last four characters (short values fully masked).
    pub fn masked(&self) -> String {
        match self {
            Shown::Secret(s) => mask(s.expose_secret()),
            Shown::Time(t) => t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        }
    }

    pub fn reveal(&self) -> String {
        match self {
            Shown::Secret(s) => s.expose_secret().to_string(),
            Shown::Time(t) => t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        }
    }
}

/// `****abcd`; values shorter than 12 characters show nothing.
pub fn mask(s: &str) -> String {
    let n = s.chars().count();
    if n < 12 {
        "*".repeat(n.clamp(4, 8))
    } else {
        let tail: String = s.chars().skip(n - 4).collect();
        format!("********{tail}")
    }
}

fn printable_key(k: &str) -> String {
    k.chars().filter(|c| !c.is_control()).take(64).collect()
}

fn push_toml_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s.trim())
        .ok()
        .map(|d| d.with_timezone(&Utc))
        .or_else(|| {
            chrono::NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map(|d| d.and_utc())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CANARY: &str = "CANARY-entry-7f3a9c";

    #[test]
    fn ozon_entry_round_trips() {
        let text = format!("client_id = \"123456\"\napi_key = \"{CANARY}\"\n");
        let doc = Document::parse(&text, Schema::Store(Marketplace::Ozon)).unwrap();
        assert_eq!(doc.get("api_key").unwrap().expose_secret(), CANARY);
        let again = Document::parse(&doc.to_toml(), Schema::Store(Marketplace::Ozon)).unwrap();
        assert_eq!(again.get("client_id").unwrap().expose_secret(), "123456");
        assert!(!format!("{doc:?}").contains(CANARY));
        assert!(!format!("{doc:#?}").contains(CANARY));
    }

    #[test]
    fn errors_never_echo_values() {
        let cases = [
            format!("client_id = \"1\"\napi_key = {CANARY}\n"),
            format!("client_id = \"1\"\napi_key = \"{CANARY}\"\nnope = \"{CANARY}\"\n"),
            format!("client_id = \"1\"\napi_key = [\"{CANARY}\"]\n"),
            format!("client_id = \"1\"\n\"{CANARY}\n"),
            format!("client_id = \"1\"\napi_key = \"{CANARY}\"\n[web]\npassword = 5\n"),
        ];
        for text in cases {
            let e = Document::parse(&text, Schema::Store(Marketplace::Ozon)).unwrap_err();
            assert!(!e.message.contains(CANARY), "{}", e.message);
            assert!(!e.message.contains("CANARY"), "{}", e.message);
        }
    }

    #[test]
    fn values_that_can_never_be_sent_are_refused() {
        // D12: CR/LF/NUL in a key passed every check until the probe refused to send it.
        for bad in ["\\r\\n", "\\n", "\\u0000", "\\u001b"] {
            let text = format!("client_id = \"1\"\napi_key = \"{CANARY}{bad}x\"\n");
            let e = Document::parse(&text, Schema::Store(Marketplace::Ozon)).unwrap_err();
            assert!(
                e.message.contains("line 2: `api_key` holds"),
                "{}",
                e.message
            );
            assert!(!e.message.contains("CANARY"));
        }
    }

    #[test]
    fn syntax_errors_give_a_line() {
        let e = Document::parse(
            "client_id = \"1\"\napi_key = oops\n",
            Schema::Store(Marketplace::Ozon),
        )
        .unwrap_err();
        assert!(e.message.starts_with("line 2:"), "{}", e.message);
    }

    #[test]
    fn a_robot_webhook_is_its_url_or_its_token() {
        let ding = Schema::Channel(ChannelKind::Dingtalk);
        assert!(
            Document::parse(
                "url = \"https://oapi.dingtalk.com/robot/send?access_token=t\"\n",
                ding
            )
            .is_ok()
        );
        assert!(Document::parse("access_token = \"t\"\n", ding).is_ok());
        let neither = Document::parse("sign_secret = \"SEC1\"\n", ding).unwrap_err();
        assert!(
            neither.message.contains("one of the two"),
            "{}",
            neither.message
        );
        let both =
            Document::parse("url = \"https://x\"\naccess_token = \"t\"\n", ding).unwrap_err();
        assert!(both.message.contains("one of the two"));
    }

    #[test]
    fn missing_and_unknown_fields() {
        let e =
            Document::parse("client_id = \"1\"\n", Schema::Store(Marketplace::Ozon)).unwrap_err();
        assert!(e.message.contains("missing field `api_key`"));
        let e = Document::parse(
            "client_id = \"1\"\napi_key=\"k\"\nregion = \"x\"\n",
            Schema::Store(Marketplace::Ozon),
        )
        .unwrap_err();
        assert!(
            e.message.starts_with("line 3: unknown field `region`"),
            "{}",
            e.message
        );
    }

    #[test]
    fn web_table_and_times() {
        let text = "app_key = \"1\"\napp_secret = \"s\"\naccess_token = \"a\"\nrefresh_token = \"r\"\n\
                    refresh_token_expires_at = 2027-01-01T00:00:00Z\n[web]\nlogin = \"me@example.com\"\n\
                    password = \"p\"\ntotp_secret = \"JBSWY3DPEHPK3PXP\"\npassword_changed_at = \"2026-01-01\"\n";
        let doc = Document::parse(text, Schema::Store(Marketplace::Aliexpress)).unwrap();
        assert!(doc.time("refresh_token_expires_at").is_some());
        let web = doc.web().unwrap();
        assert_eq!(
            web.get("totp_secret").unwrap().expose_secret(),
            "JBSWY3DPEHPK3PXP"
        );
        assert!(web.time("password_changed_at").is_some());
        let back = Document::parse(&doc.to_toml(), Schema::Store(Marketplace::Aliexpress)).unwrap();
        assert!(back.web().is_some());
    }

    #[test]
    fn masking() {
        assert_eq!(mask("abcdefghijklmnop"), "********mnop");
        assert_eq!(mask("short"), "*****");
        assert_eq!(mask(""), "****");
    }

    #[test]
    fn entry_ids() {
        assert_eq!(
            EntryId::parse("store/ozon-main").unwrap(),
            EntryId::store("ozon-main")
        );
        assert!(EntryId::parse("ozon-main").is_err());
        assert!(EntryId::parse("store/../x").is_err());
        assert!(EntryId::parse("secret/x").is_err());
    }
}
