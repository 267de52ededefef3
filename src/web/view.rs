//! One store as every reader sees it: `/api/v1/stores` (JSON), the status page, the sd_notify
//! status line and `storeguard status`, built from the daemon's memory or from the state file.
//! Holds no secret; the account number only when the caller may see it.

use crate::config::{Config, Store};
use crate::daemon::Shared;
use crate::health::StoreHealth;
use crate::model::{Language, Marketplace, Severity};
use crate::outcome::{Finding, FindingKind, Outcome, Status};
use crate::state::{CheckRow, StoreRow};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Whether a view carries account numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accounts {
    Shown,
    Hidden,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct StoreView {
    pub id: String,
    pub name: String,
    pub marketplace: Marketplace,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    pub enabled: bool,
    /// Status of the last check; `None` (`"PENDING"` in JSON) before the first one.
    #[serde(with = "pending")]
    pub status: Option<Status>,
    pub findings: Vec<Finding>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_check: Option<DateTime<Utc>>,
    /// When the next check runs (after a backoff, when one is in force); none when disabled or
    /// not known (read from the state file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_check: Option<DateTime<Utc>>,
    /// Checks wait after a refused or throttled login.
    #[serde(default)]
    pub backing_off: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    pub open_incidents: Vec<OpenIncident>,
    /// The newest login records, newest first (the page's strip; not in JSON).
    #[serde(skip)]
    pub recent: Vec<CheckRow>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct OpenIncident {
    pub incident_id: String,
    pub finding: FindingKind,
    pub severity: Severity,
    pub opened_at: DateTime<Utc>,
}

/// What is known of one store besides its config.
#[derive(Clone, Copy, Default)]
pub struct Known<'a> {
    pub last: Option<&'a Outcome>,
    pub health: Option<&'a StoreHealth>,
    pub next_check: Option<DateTime<Utc>>,
    pub backing_off: bool,
}

impl StoreView {
    pub fn of(store: &Store, known: Known<'_>, accounts: Accounts) -> StoreView {
        let last = known.last;
        StoreView {
            id: store.id.clone(),
            name: store.name.clone(),
            marketplace: store.marketplace,
            tags: store.tags.clone(),
            enabled: store.enabled,
            status: last.map(|o| o.status),
            findings: last.map(|o| o.findings.clone()).unwrap_or_default(),
            account: match accounts {
                Accounts::Shown => last
                    .and_then(|o| o.facts.account.clone())
                    .or_else(|| store.account.clone()),
                Accounts::Hidden => None,
            },
            expires_at: last.and_then(|o| o.facts.expires_at),
            last_check: last.map(|o| o.checked_at),
            next_check: known.next_check.filter(|_| store.enabled),
            backing_off: known.backing_off && store.enabled,
            latency_ms: last.map(|o| o.facts.latency_ms),
            open_incidents: known.health.map_or_else(Vec::new, |h| {
                let mut v: Vec<OpenIncident> = h
                    .open
                    .values()
                    .map(|i| OpenIncident {
                        incident_id: i.id.clone(),
                        finding: i.finding,
                        severity: i.severity,
                        opened_at: i.opened_at,
                    })
                    .collect();
                v.sort_by_key(|i| (i.opened_at, i.finding));
                v
            }),
            recent: Vec::new(),
        }
    }

    /// The status in words of `lang` ("PENDING" before the first check).
    pub fn status_words(&self, lang: Language) -> String {
        match self.status {
            Some(s) => crate::i18n::text(lang, &format!("status.{}", s.as_str())).to_string(),
            None => "PENDING".to_string(),
        }
    }
}

/// Every configured store, from the daemon's memory, plus the open marketplace-wide incidents.
pub fn from_daemon(shared: &Shared, accounts: Accounts) -> (Vec<StoreView>, usize) {
    let live = shared.live();
    let now = shared.clock.now();
    let tz = live.config.daemon.timezone;
    let mem = shared.stores.lock().unwrap_or_else(|e| e.into_inner());
    let views = live
        .config
        .stores
        .iter()
        .map(|s| {
            let m = mem.get(&s.id);
            let known = Known {
                last: m.and_then(|m| m.last.as_ref()),
                health: m.map(|m| &m.health),
                next_check: m.and_then(|m| m.next_check(s, tz, now)),
                backing_off: m.and_then(|m| m.backoff.until).is_some_and(|u| u > now),
            };
            StoreView::of(s, known, accounts)
        })
        .collect();
    let grouped = mem
        .iter()
        .filter(|(k, _)| k.starts_with(crate::event::GROUP_PREFIX))
        .map(|(_, m)| m.health.open.len())
        .sum();
    (views, grouped)
}

/// Every configured store, from the rows of the state file (no schedule is known there).
pub fn from_state(config: &Config, rows: &[StoreRow], now: DateTime<Utc>) -> Vec<StoreView> {
    let rows: std::collections::HashMap<&str, &StoreRow> =
        rows.iter().map(|r| (r.store_id.as_str(), r)).collect();
    config
        .stores
        .iter()
        .map(|s| {
            let row = rows.get(s.id.as_str()).copied();
            let known = Known {
                last: row.and_then(|r| r.last_outcome.as_ref()),
                health: row.map(|r| &r.health),
                next_check: None,
                backing_off: row.and_then(|r| r.backoff_until).is_some_and(|u| u > now),
            };
            StoreView::of(s, known, Accounts::Shown)
        })
        .collect()
}

/// The worst news first: a line for the sd_notify STATUS.
pub fn summary(views: &[StoreView]) -> String {
    let count = |s: Status| views.iter().filter(|v| v.status == Some(s)).count();
    format!(
        "{}: {} OK, {} WARNING, {} CRITICAL, {} UNKNOWN",
        crate::i18n::counted(
            views.iter().filter(|s| s.enabled).count(),
            "store",
            "stores"
        ),
        count(Status::Ok),
        count(Status::Warning),
        count(Status::Critical),
        count(Status::Unknown)
    )
}

/// `status` as `"OK"` … `"UNKNOWN"`, or `"PENDING"` before the first check.
mod pending {
    use crate::outcome::Status;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<Status>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(st) => st.serialize(s),
            None => s.serialize_str("PENDING"),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Status>, D::Error> {
        let s = String::deserialize(d)?;
        if s == "PENDING" {
            return Ok(None);
        }
        Status::parse(&s)
            .map(Some)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown status {s:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_says_pending_before_the_first_check_and_round_trips() {
        let config = Config::from_toml(
            std::path::Path::new("storeguard.toml"),
            "[[store]]\nid = \"s1\"\nmarketplace = \"ozon\"\naccount = \"123\"\n",
        )
        .unwrap();
        let v = StoreView::of(&config.stores[0], Known::default(), Accounts::Shown);
        assert_eq!(v.account.as_deref(), Some("123"));
        let hidden = StoreView::of(&config.stores[0], Known::default(), Accounts::Hidden);
        assert_eq!(hidden.account, None);
        let json = serde_json::to_value(&v).unwrap();
        assert_eq!(json["status"], "PENDING");
        assert_eq!(json["marketplace"], "ozon");
        let back: StoreView = serde_json::from_value(json).unwrap();
        assert_eq!(back, v);
    }
}
