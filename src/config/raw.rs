//! The raw schema: the file one to one, unknown keys refused.

use super::*;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub(super) daemon: RawDaemon,
    #[serde(default)]
    pub(super) defaults: RawDefaults,
    #[serde(default)]
    pub(super) marketplace: RawMarketplaces,
    #[serde(default, rename = "store")]
    pub(super) stores: Vec<Spanned<RawStore>>,
    #[serde(default, rename = "channel")]
    pub(super) channels: Vec<Spanned<RawChannel>>,
    #[serde(default, rename = "maintenance")]
    pub(super) maintenance: Vec<Spanned<RawMaintenance>>,
    #[serde(default)]
    pub(super) mail: RawMail,
    #[serde(default, rename = "mailbox")]
    pub(super) mailboxes: Vec<Spanned<RawMailbox>>,
    #[serde(default)]
    pub(super) replicas: RawReplicas,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawReplicas {
    pub(super) shards: Option<Spanned<i64>>,
    pub(super) lease_ttl: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMail {
    pub(super) resolver: Option<Spanned<String>>,
    pub(super) backfill: Option<Spanned<String>>,
    pub(super) poll: Option<Spanned<String>>,
    pub(super) catalogue: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMailbox {
    pub(super) name: Spanned<String>,
    pub(super) host: Spanned<String>,
    pub(super) port: Option<Spanned<u16>>,
    pub(super) tls: Option<Spanned<MailTls>>,
    pub(super) username: Spanned<String>,
    pub(super) auth: Option<MailAuth>,
    pub(super) stores: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    pub(super) folders: Vec<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDaemon {
    pub(super) state_dir: Option<Spanned<String>>,
    pub(super) vault_dir: Option<Spanned<String>>,
    pub(super) identity: Option<Spanned<String>>,
    pub(super) listen: Option<Spanned<String>>,
    pub(super) timezone: Option<Spanned<String>>,
    pub(super) language: Option<Language>,
    pub(super) history_retention: Option<Spanned<String>>,
    pub(super) state: Option<Spanned<String>>,
    pub(super) replica: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDefaults {
    pub(super) schedule: Option<Spanned<String>>,
    pub(super) timeout: Option<Spanned<String>>,
    pub(super) failure_threshold: Option<Spanned<u32>>,
    pub(super) success_threshold: Option<Spanned<u32>>,
    pub(super) remind_every: Option<Spanned<String>>,
    pub(super) expiry_warning: Option<Vec<Spanned<String>>>,
    pub(super) password_max_age: Option<Spanned<String>>,
    pub(super) channels: Option<Vec<Spanned<String>>>,
}

/// `[marketplace.<id>]` tables of endpoint overrides; ids and keys are checked against the
/// spec table when the config is validated.
pub(super) type RawMarketplaces = std::collections::BTreeMap<
    String,
    Spanned<std::collections::BTreeMap<String, Spanned<String>>>,
>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStore {
    pub(super) id: Spanned<String>,
    pub(super) marketplace: Spanned<Marketplace>,
    pub(super) name: Option<String>,
    pub(super) account: Option<Spanned<toml::Value>>,
    pub(super) region: Option<Spanned<String>>,
    pub(super) marketplaces: Option<Vec<String>>,
    pub(super) schedule: Option<Spanned<String>>,
    pub(super) timeout: Option<Spanned<String>>,
    pub(super) channels: Option<Vec<Spanned<String>>>,
    pub(super) proxy: Option<Spanned<String>>,
    pub(super) login_hours: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) tags: Vec<String>,
    #[serde(default = "yes")]
    pub(super) enabled: bool,
}

pub(super) fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawChannel {
    pub(super) name: Spanned<String>,
    pub(super) kind: Spanned<ChannelKind>,
    pub(super) min_severity: Option<Severity>,
    pub(super) language: Option<Language>,
    // Email.
    pub(super) from: Option<Spanned<String>>,
    pub(super) to: Option<Spanned<Vec<String>>>,
    pub(super) smtp_host: Option<Spanned<String>>,
    pub(super) smtp_port: Option<Spanned<u16>>,
    pub(super) smtp_tls: Option<Spanned<SmtpTls>>,
    // Telegram.
    pub(super) chat_id: Option<Spanned<toml::Value>>,
    // Alertmanager peers.
    pub(super) urls: Option<Spanned<Vec<Spanned<String>>>>,
    // Base-URL override for the IM services (tests, Lark, private deployments).
    pub(super) endpoint: Option<Spanned<String>>,
    // Routing filters.
    pub(super) stores: Option<Vec<String>>,
    pub(super) tags: Option<Vec<String>>,
    pub(super) marketplaces: Option<Vec<Marketplace>>,
    pub(super) events: Option<Vec<Spanned<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMaintenance {
    pub(super) name: Option<String>,
    pub(super) schedule: Option<Spanned<String>>,
    pub(super) duration: Option<Spanned<String>>,
    pub(super) start: Option<Spanned<toml::Value>>,
    pub(super) end: Option<Spanned<toml::Value>>,
    pub(super) stores: Option<Vec<String>>,
    pub(super) tags: Option<Vec<String>>,
    pub(super) marketplaces: Option<Vec<Marketplace>>,
}
