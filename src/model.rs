//! Small shared vocabulary: marketplaces, languages, severities, channel kinds.
//!
//! These enums appear in the config, in the vault schema, in probe outcomes and in alerts, so
//! they live in one place with their canonical spelling.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

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
    }
}

/// What storeguard knows about a marketplace beyond its id.
#[derive(Debug)]
pub struct MarketplaceSpec {
    /// The name sellers know it by.
    pub display_name: &'static str,
    /// The tightest schedule the marketplace's rate limits allow for a probe.
    pub min_check_interval: Duration,
    /// What a store's `account` holds, as `store add` asks for it.
    pub account_prompt: &'static str,
    /// Whether a store must name its `account` (`config check` insists).
    pub account_required: bool,
    /// What to write when it is missing.
    pub account_help: &'static str,
}

impl Marketplace {
    /// Its table entry; a new marketplace does not compile until it has one.
    pub fn spec(self) -> &'static MarketplaceSpec {
        const MINUTE: Duration = Duration::from_secs(60);
        const SELLER_ID: &str = "Seller id";
        const SELLER_ID_HELP: &str =
            "add account = \"<seller id>\" (the seller id the app was authorised for)";
        const OZON: MarketplaceSpec = MarketplaceSpec {
            display_name: "Ozon",
            min_check_interval: MINUTE,
            account_prompt: "Client-Id (account number)",
            account_required: true,
            account_help: "add account = \"<Client-Id>\" (the seller account number shown next to the API key)",
        };
        // 0.016 requests/second per app+seller pair: a probe every 5 minutes at most.
        const AMAZON: MarketplaceSpec = MarketplaceSpec {
            display_name: "Amazon",
            min_check_interval: Duration::from_secs(300),
            account_prompt: "Seller id (optional)",
            account_required: false,
            account_help: "",
        };
        const ALIBABA: MarketplaceSpec = MarketplaceSpec {
            display_name: "Alibaba.com",
            min_check_interval: MINUTE,
            account_prompt: SELLER_ID,
            account_required: true,
            account_help: SELLER_ID_HELP,
        };
        const ALIEXPRESS: MarketplaceSpec = MarketplaceSpec {
            display_name: "AliExpress",
            min_check_interval: MINUTE,
            account_prompt: SELLER_ID,
            account_required: true,
            account_help: SELLER_ID_HELP,
        };
        match self {
            Marketplace::Ozon => &OZON,
            Marketplace::Amazon => &AMAZON,
            Marketplace::Alibaba => &ALIBABA,
            Marketplace::Aliexpress => &ALIEXPRESS,
        }
    }

    /// Display name as sellers know it.
    pub fn display_name(self) -> &'static str {
        self.spec().display_name
    }

    /// The tightest schedule the marketplace's rate limits allow for a probe.
    pub fn min_check_interval(self) -> Duration {
        self.spec().min_check_interval
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

/// Amazon SP-API region.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AmazonRegion {
    Na,
    Eu,
    Fe,
}

impl AmazonRegion {
    pub fn as_str(self) -> &'static str {
        match self {
            AmazonRegion::Na => "na",
            AmazonRegion::Eu => "eu",
            AmazonRegion::Fe => "fe",
        }
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
        assert_eq!(Marketplace::parse("wildberries"), None);
    }
}
