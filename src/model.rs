//! Small shared vocabulary: marketplaces, languages, severities, channel kinds.
//!
//! These enums appear in the config, in the vault schema, in probe outcomes and in alerts, so
//! they live in one place with their canonical spelling.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The marketplaces storeguard can prove a login for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Marketplace {
    Ozon,
    Amazon,
    Alibaba,
    Aliexpress,
}

impl Marketplace {
    pub const ALL: [Marketplace; 4] = [
        Marketplace::Ozon,
        Marketplace::Amazon,
        Marketplace::Alibaba,
        Marketplace::Aliexpress,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Marketplace::Ozon => "ozon",
            Marketplace::Amazon => "amazon",
            Marketplace::Alibaba => "alibaba",
            Marketplace::Aliexpress => "aliexpress",
        }
    }

    /// Display name as sellers know it.
    pub fn display_name(self) -> &'static str {
        match self {
            Marketplace::Ozon => "Ozon",
            Marketplace::Amazon => "Amazon",
            Marketplace::Alibaba => "Alibaba.com",
            Marketplace::Aliexpress => "AliExpress",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.as_str() == s)
    }

    /// The tightest schedule the marketplace's rate limits allow for a probe.
    pub fn min_check_interval(self) -> std::time::Duration {
        match self {
            // 0.016 requests/second per app+seller pair: a probe every 5 minutes at most.
            Marketplace::Amazon => std::time::Duration::from_secs(300),
            _ => std::time::Duration::from_secs(60),
        }
    }
}

impl fmt::Display for Marketplace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
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

/// The kinds of alert channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelKind {
    Webhook,
    Slack,
    Telegram,
    Email,
    Dingtalk,
    Wecom,
    Feishu,
    Alertmanager,
    Log,
}

impl ChannelKind {
    pub const ALL: [ChannelKind; 9] = [
        ChannelKind::Webhook,
        ChannelKind::Slack,
        ChannelKind::Telegram,
        ChannelKind::Email,
        ChannelKind::Dingtalk,
        ChannelKind::Wecom,
        ChannelKind::Feishu,
        ChannelKind::Alertmanager,
        ChannelKind::Log,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Webhook => "webhook",
            ChannelKind::Slack => "slack",
            ChannelKind::Telegram => "telegram",
            ChannelKind::Email => "email",
            ChannelKind::Dingtalk => "dingtalk",
            ChannelKind::Wecom => "wecom",
            ChannelKind::Feishu => "feishu",
            ChannelKind::Alertmanager => "alertmanager",
            ChannelKind::Log => "log",
        }
    }
}

impl fmt::Display for ChannelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
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
