//! Alert events and their delivery to channels.
//!
//! The health machine emits [`AlertEvent`]s into the outbox; a delivery worker hands each to
//! every routed channel. A channel answers [`Delivery::Delivered`], [`Delivery::Retry`] or
//! [`Delivery::Permanent`], decided from the reply (body included, where a service answers 200
//! on failure). An event's `event_id` is stable across retries and restarts.

use crate::model::{Marketplace, Severity};
use crate::outcome::FindingKind;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::time::Duration;

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

/// One alert, as stored in the outbox and handed to channels. Holds no secret.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlertEvent {
    /// Stable id: the webhook `Idempotency-Key`, the same on every retry.
    pub event_id: String,
    pub event: EventKind,
    pub incident_id: String,
    /// The store, or `marketplace:<name>` for a marketplace-wide grouped incident.
    pub store_id: String,
    pub store_name: String,
    pub marketplace: Marketplace,
    pub severity: Severity,
    pub finding: FindingKind,
    /// Sanitised detail from the probe (e.g. the marketplace's error text).
    pub detail: String,
    pub opened_at: DateTime<Utc>,
    /// When the event was created (delivery time is added by channels that send one).
    pub created_at: DateTime<Utc>,
    /// For grouped incidents: the stores affected.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub affected: Vec<String>,
    /// Marked test message (`storeguard alert test`).
    #[serde(default)]
    pub test: bool,
}

/// A channel's verdict on one delivery attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivery {
    Delivered,
    /// Try again later; `Some` when the service said how long to wait.
    Retry(Option<Duration>),
    /// The service refused for good (bad token, bad request); `reason` is sanitised.
    Permanent(String),
}
