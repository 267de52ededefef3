//! Small shared vocabulary: marketplaces, languages, severities, channel kinds.
//!
//! These enums appear in the config, in the vault schema, in probe outcomes and in alerts, so
//! they live in one place with their canonical spelling.

use serde::{Deserialize, Serialize};
use std::fmt;

mod spec;
pub use spec::{
    ChannelSpec, ConfigField, Endpoint, Field, FieldType, MarketplaceSpec, Robot,
    TELEGRAM_GROUP_LIMITS, TokenAt,
};

/// Declares a closed vocabulary from one table: the enum, `ALL` (every variant, in table
/// order), `as_str` (its canonical id, which is also its serde and config spelling), `parse`
/// and `Display`. A variant cannot be added without its id, and `ALL` cannot forget one.
macro_rules! vocabulary {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $($(#[$vmeta:meta])* $variant:ident = $id:literal),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $id)] $variant),+
        }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: [$name; [$($id),+].len()] = [$($name::$variant),+];

            /// The canonical id (config, vault, alerts, metrics).
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $id),+
                }
            }

            pub fn parse(s: &str) -> Option<Self> {
                match s {
                    $($id => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

vocabulary! {
    /// The marketplaces storeguard can prove a login for. A new one is a line here, then
    /// whatever the compiler asks for: its [`MarketplaceSpec`], its probe, its vault schema,
    /// its endpoint default and its fake.
    #[derive(PartialOrd, Ord)]
    pub enum Marketplace {
        Ozon = "ozon",
        Amazon = "amazon",
        Alibaba = "alibaba",
        Aliexpress = "aliexpress",
        Wildberries = "wildberries",
        YandexMarket = "yandex_market",
        Lazada = "lazada",
        Shopee = "shopee",
        TiktokShop = "tiktok_shop",
    }
}

/// Language of messages and tables.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Language {
    #[default]
    #[serde(rename = "en")]
    En,
    #[serde(rename = "zh-CN")]
    ZhCn,
}

impl Language {
    pub fn as_str(self) -> &'static str {
        match self {
            Language::En => "en",
            Language::ZhCn => "zh-CN",
        }
    }
}

/// Severity of an incident, used for routing (`min_severity`).
///
/// Ordered from least to most urgent: an UNKNOWN (the marketplace could not be asked) is less
/// actionable for a seller than a WARNING, which is less urgent than a CRITICAL.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Unknown,
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Unknown => "unknown",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

vocabulary! {
    /// The kinds of alert channel.
    pub enum ChannelKind {
        Webhook = "webhook",
        Slack = "slack",
        Telegram = "telegram",
        Email = "email",
        Dingtalk = "dingtalk",
        Wecom = "wecom",
        Feishu = "feishu",
        Alertmanager = "alertmanager",
        Log = "log",
    }
}

#[cfg(test)]
mod vocabulary_tests {
    use super::*;

    #[test]
    fn every_id_round_trips_through_parse_and_serde() {
        for m in Marketplace::ALL {
            assert_eq!(Marketplace::parse(m.as_str()), Some(m));
            assert_eq!(serde_json::to_value(m).unwrap(), m.as_str());
            assert!(!m.display_name().is_empty());
            assert!(!m.spec().account_required || !m.spec().account_help.is_empty());
        }
        for k in ChannelKind::ALL {
            assert_eq!(ChannelKind::parse(k.as_str()), Some(k));
            assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
        }
        assert_eq!(Marketplace::parse("wildberry"), None);
    }

    #[test]
    fn every_spec_entry_is_complete() {
        for m in Marketplace::ALL {
            let spec = m.spec();
            assert!(!spec.endpoints.is_empty(), "{m} has no endpoint");
            for e in spec.endpoints {
                let u = url::Url::parse(e.default).unwrap();
                assert_eq!(u.scheme(), "https", "{m}.{}", e.key);
            }
            assert!(spec.vault_fields.iter().any(|f| f.secret), "{m}");
            let mut names: Vec<_> = spec.vault_fields.iter().map(|f| f.name).collect();
            names.sort();
            names.dedup();
            assert_eq!(names.len(), spec.vault_fields.len(), "{m} repeats a field");
        }
        for k in ChannelKind::ALL {
            let spec = k.spec();
            assert!(!spec.display_name.is_empty());
            assert_eq!(spec.limits.is_empty(), k == ChannelKind::Log, "{k}");
            if let Some(r) = &spec.robot {
                let fields = spec.vault_fields.expect("a robot has a vault entry");
                for name in [r.token_field, "url"] {
                    assert!(
                        fields.iter().any(|f| f.name == name && f.secret),
                        "{k}.{name}"
                    );
                }
                assert!(r.example.starts_with(&format!("https://{}", r.hosts[0])));
            }
        }
    }
}
