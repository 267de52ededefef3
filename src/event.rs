//! The vocabulary every stage shares: an alert event, what it is about, and its ids.
//!
//! This is a leaf: it imports only [`crate::model`] and [`crate::outcome`]. The health machine
//! and the daemon create events, routing picks their channels, the state stores them in the
//! outbox and the channels render them; none of those needs another for the words.

use crate::model::{Marketplace, Severity};
use crate::outcome::FindingKind;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::borrow::Cow;

/// What happened to an incident.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    Opened,
    Reminder,
    Resolved,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Opened => "opened",
            EventKind::Reminder => "reminder",
            EventKind::Resolved => "resolved",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "opened" => Some(EventKind::Opened),
            "reminder" => Some(EventKind::Reminder),
            "resolved" => Some(EventKind::Resolved),
            _ => None,
        }
    }
}

/// What an event is about.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Subject {
    /// One store of the config.
    Store {
        id: String,
        name: String,
        marketplace: Marketplace,
    },
    /// A marketplace-wide outage, grouped over its stores.
    Marketplace(Marketplace),
    /// storeguard itself (a rejected reload): no store, no marketplace.
    Daemon,
}

/// The key of a marketplace-wide subject is this prefix and the marketplace id.
pub const GROUP_PREFIX: &str = "marketplace:";

/// The key of the daemon's own subject.
pub const DAEMON_KEY: &str = "storeguard";

impl Subject {
    pub fn store(id: &str, name: &str, marketplace: Marketplace) -> Subject {
        Subject::Store {
            id: id.to_string(),
            name: name.to_string(),
            marketplace,
        }
    }

    /// The subject as one string: the store id, `marketplace:<id>` or `storeguard`. It is the
    /// webhook's `store_id`, and the outbox keeps alerts of one key in order.
    pub fn key(&self) -> Cow<'_, str> {
        match self {
            Subject::Store { id, .. } => Cow::Borrowed(id),
            Subject::Marketplace(m) => Cow::Owned(format!("{GROUP_PREFIX}{}", m.as_str())),
            Subject::Daemon => Cow::Borrowed(DAEMON_KEY),
        }
    }

    /// A name for people: the store's name, the marketplace's or storeguard's.
    pub fn name(&self) -> &str {
        match self {
            Subject::Store { name, .. } => name,
            Subject::Marketplace(m) => m.display_name(),
            Subject::Daemon => "storeguard daemon",
        }
    }

    /// The marketplace, when the subject has one.
    pub fn marketplace(&self) -> Option<Marketplace> {
        match self {
            Subject::Store { marketplace, .. } => Some(*marketplace),
            Subject::Marketplace(m) => Some(*m),
            Subject::Daemon => None,
        }
    }

    /// The store id, when the subject is a store.
    pub fn store_id(&self) -> Option<&str> {
        match self {
            Subject::Store { id, .. } => Some(id),
            _ => None,
        }
    }

    fn tag(&self) -> &'static str {
        match self {
            Subject::Store { .. } => "store",
            Subject::Marketplace(_) => "marketplace",
            Subject::Daemon => "daemon",
        }
    }
}

/// One alert, as stored in the outbox and handed to channels. Holds no secret.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(into = "Stored", try_from = "Stored")]
pub struct AlertEvent {
    /// Stable id: the webhook `Idempotency-Key`, the same on every retry.
    pub event_id: String,
    pub event: EventKind,
    pub incident_id: String,
    pub subject: Subject,
    pub severity: Severity,
    pub finding: FindingKind,
    /// Sanitised detail from the probe (e.g. the marketplace's error text).
    pub detail: String,
    pub opened_at: DateTime<Utc>,
    /// When the event was created (delivery time is added by channels that send one).
    pub created_at: DateTime<Utc>,
    /// For grouped incidents: the stores affected.
    pub affected: Vec<String>,
    /// Marked test message (`storeguard alert test`).
    pub test: bool,
}

/// The outbox form of an event: flat, as the rows written before subjects were typed (those
/// carry no `subject` and are read by their key).
#[derive(Serialize, Deserialize)]
struct Stored {
    event_id: String,
    event: EventKind,
    incident_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    subject: Option<String>,
    store_id: String,
    store_name: String,
    #[serde(default)]
    marketplace: Option<Marketplace>,
    severity: Severity,
    finding: FindingKind,
    detail: String,
    opened_at: DateTime<Utc>,
    created_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    affected: Vec<String>,
    #[serde(default)]
    test: bool,
}

impl From<AlertEvent> for Stored {
    fn from(e: AlertEvent) -> Stored {
        Stored {
            subject: Some(e.subject.tag().to_string()),
            store_id: e.subject.key().into_owned(),
            store_name: e.subject.name().to_string(),
            marketplace: e.subject.marketplace(),
            event_id: e.event_id,
            event: e.event,
            incident_id: e.incident_id,
            severity: e.severity,
            finding: e.finding,
            detail: e.detail,
            opened_at: e.opened_at,
            created_at: e.created_at,
            affected: e.affected,
            test: e.test,
        }
    }
}

impl TryFrom<Stored> for AlertEvent {
    type Error = String;

    fn try_from(s: Stored) -> Result<AlertEvent, String> {
        let tag = match s.subject.as_deref() {
            Some(t) => t,
            // Rows from before typed subjects: the daemon's faults had the key `storeguard`
            // (and a placeholder marketplace), grouped incidents the `marketplace:` prefix.
            None if s.finding == FindingKind::DaemonFault && s.store_id == DAEMON_KEY => "daemon",
            None if s.store_id.starts_with(GROUP_PREFIX) => "marketplace",
            None => "store",
        };
        let subject = match tag {
            "daemon" => Subject::Daemon,
            "marketplace" => {
                let m = s
                    .store_id
                    .strip_prefix(GROUP_PREFIX)
                    .and_then(Marketplace::parse)
                    .or(s.marketplace)
                    .ok_or("a marketplace event without a known marketplace")?;
                Subject::Marketplace(m)
            }
            "store" => Subject::Store {
                marketplace: s.marketplace.ok_or("a store event without a marketplace")?,
                id: s.store_id,
                name: s.store_name,
            },
            other => return Err(format!("unknown event subject `{other}`")),
        };
        Ok(AlertEvent {
            event_id: s.event_id,
            event: s.event,
            incident_id: s.incident_id,
            subject,
            severity: s.severity,
            finding: s.finding,
            detail: s.detail,
            opened_at: s.opened_at,
            created_at: s.created_at,
            affected: s.affected,
            test: s.test,
        })
    }
}

fn short_hash(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0u8]);
    }
    hex::encode(&h.finalize()[..12])
}

/// A stable incident id from what defines the incident.
pub fn incident_id(subject_key: &str, finding: FindingKind, opened_at: DateTime<Utc>) -> String {
    short_hash(&[
        subject_key,
        finding.as_str(),
        &opened_at.timestamp_millis().to_string(),
    ])
}

/// A stable event id: the same incident, kind and sequence number always give the same id.
pub fn event_id(incident_id: &str, kind: EventKind, seq: u32) -> String {
    short_hash(&[incident_id, kind.as_str(), &seq.to_string()])
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn event(subject: Subject, finding: FindingKind) -> AlertEvent {
        let now = Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap();
        AlertEvent {
            event_id: "e".into(),
            event: EventKind::Opened,
            incident_id: "i".into(),
            subject,
            severity: Severity::Warning,
            finding,
            detail: "d".into(),
            opened_at: now,
            created_at: now,
            affected: vec![],
            test: false,
        }
    }

    #[test]
    fn every_subject_survives_the_outbox() {
        for (subject, finding) in [
            (
                Subject::store("storeguard", "a store named like us", Marketplace::Amazon),
                FindingKind::DaemonFault,
            ),
            (
                Subject::Marketplace(Marketplace::Ozon),
                FindingKind::Unreachable,
            ),
            (Subject::Daemon, FindingKind::DaemonFault),
        ] {
            let e = event(subject, finding);
            let json = serde_json::to_string(&e).unwrap();
            assert_eq!(
                serde_json::from_str::<AlertEvent>(&json).unwrap(),
                e,
                "{json}"
            );
        }
        let daemon =
            serde_json::to_value(event(Subject::Daemon, FindingKind::DaemonFault)).unwrap();
        assert_eq!(daemon["marketplace"], serde_json::Value::Null);
        assert_eq!(daemon["store_id"], "storeguard");
    }

    #[test]
    fn rows_written_before_typed_subjects_are_read_by_their_key() {
        let row = |store_id: &str, finding: &str| {
            format!(
                r#"{{"event_id":"e","event":"opened","incident_id":"i","store_id":"{store_id}",
                "store_name":"n","marketplace":"ozon","severity":"warning","finding":"{finding}",
                "detail":"","opened_at":"2026-11-01T00:00:00Z","created_at":"2026-11-01T00:00:00Z"}}"#
            )
        };
        let read = |s: String| serde_json::from_str::<AlertEvent>(&s).unwrap().subject;
        assert_eq!(read(row("storeguard", "daemon_fault")), Subject::Daemon);
        assert_eq!(
            read(row("marketplace:aliexpress", "unreachable")),
            Subject::Marketplace(Marketplace::Aliexpress)
        );
        assert_eq!(
            read(row("ozon-main", "auth_rejected")),
            Subject::store("ozon-main", "n", Marketplace::Ozon)
        );
    }

    #[test]
    fn ids_are_stable() {
        let t = Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap();
        let a = incident_id("s", FindingKind::AuthRejected, t);
        assert_eq!(a, incident_id("s", FindingKind::AuthRejected, t));
        assert_ne!(a, incident_id("s2", FindingKind::AuthRejected, t));
        assert_eq!(a.len(), 24);
        assert_ne!(
            event_id(&a, EventKind::Opened, 0),
            event_id(&a, EventKind::Opened, 1)
        );
    }
}
