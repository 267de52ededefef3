//! Prometheus Alertmanager: `POST {peer}/api/v2/alerts` to every configured peer.
//!
//! Labels are exactly alertname, marketplace, store_id, finding and severity, so the same
//! incident sent by two storeguard instances has one fingerprint and Alertmanager dedupes it.
//! A firing alert carries an explicit `endsAt` past the next reminder, so Alertmanager does not
//! auto-resolve it after its `resolve_timeout` while the incident is still open; a resolved
//! event sends `endsAt = now`. As Prometheus does, one peer accepting counts as delivered.

use super::render::Message;
use super::wire::{self, Verdict};
use super::{AlertEvent, EventKind};
use chrono::{DateTime, SecondsFormat, Utc};
use secrecy::{ExposeSecret, SecretString};
use std::time::Duration;
use url::Url;

pub const ALERTNAME: &str = "StoreLoginAbnormal";
/// `alertname` of `storeguard alert test` messages: never mistaken for an incident.
pub const TEST_ALERTNAME: &str = "StoreguardTest";
/// How long a test alert stays active.
const TEST_TTL: Duration = Duration::from_secs(300);

pub struct Alertmanager {
    pub peers: Vec<Url>,
    pub bearer_token: Option<SecretString>,
    /// How long a firing alert stays active without a re-send.
    pub firing_ttl: Duration,
}

/// The alert array for one event.
pub fn body(
    event: &AlertEvent,
    msg: &Message,
    now: DateTime<Utc>,
    firing_ttl: Duration,
) -> serde_json::Value {
    let ends_at = match (event.test, event.event) {
        (true, _) => now + ttl(TEST_TTL),
        (false, EventKind::Resolved) => now,
        (false, EventKind::Opened | EventKind::Reminder) => now + ttl(firing_ttl),
    };
    let starts_at = if event.opened_at > now {
        now
    } else {
        event.opened_at
    };
    let mut labels = serde_json::json!({
        "alertname": if event.test { TEST_ALERTNAME } else { ALERTNAME },
        "store_id": event.subject.key(),
        "finding": event.finding.as_str(),
        "severity": event.severity.as_str(),
    });
    // Alerts about storeguard itself carry no marketplace label (absent, not a placeholder).
    if let Some(m) = event.subject.marketplace() {
        labels["marketplace"] = m.as_str().into();
    }
    serde_json::json!([{
        "labels": labels,
        "annotations": {
            "summary": msg.title,
            "description": msg.text,
        },
        "startsAt": starts_at.to_rfc3339_opts(SecondsFormat::Millis, true),
        "endsAt": ends_at.to_rfc3339_opts(SecondsFormat::Millis, true),
    }])
}

fn ttl(d: Duration) -> chrono::TimeDelta {
    chrono::TimeDelta::from_std(d).unwrap_or(chrono::TimeDelta::hours(1))
}

impl Alertmanager {
    pub async fn send(
        &self,
        client: &reqwest::Client,
        event: &AlertEvent,
        msg: &Message,
        now: DateTime<Utc>,
    ) -> Verdict {
        let body = serde_json::to_vec(&body(event, msg, now, self.firing_ttl)).expect("JSON");
        let mut headers = Vec::new();
        if let Some(t) = &self.bearer_token {
            headers.push(("authorization", format!("Bearer {}", t.expose_secret())));
        }
        let sends = self.peers.iter().enumerate().map(|(i, peer)| {
            let url = wire::join(peer, "/api/v2/alerts");
            let body = body.clone();
            let headers = &headers;
            async move {
                let v = match wire::post_json(client, &url, headers, body).await {
                    Ok(reply) => classify(&reply),
                    Err(v) => v,
                };
                (i, v)
            }
        });
        let results = futures_util::future::join_all(sends).await;
        combine(results)
    }
}

/// 200 accepted; 429 and 5xx retry; 400 (and auth failures) permanent.
pub fn classify(reply: &wire::Reply) -> Verdict {
    match wire::by_status("Alertmanager", reply) {
        Verdict::Permanent(r) if matches!(reply.status.as_u16(), 401 | 403) => {
            Verdict::Permanent(format!("{r}; check bearer_token in the vault"))
        }
        v => v,
    }
}

/// Delivered when any peer accepted; else retry if any peer may accept later; else permanent.
fn combine(results: Vec<(usize, Verdict)>) -> Verdict {
    if results.iter().any(|(_, v)| *v == Verdict::Delivered) {
        return Verdict::Delivered;
    }
    let mut retry: Option<Verdict> = None;
    let mut permanent = Vec::new();
    for (i, v) in results {
        match v {
            Verdict::Delivered => unreachable!(),
            Verdict::Retry {
                after,
                reason,
                throttled,
            } => {
                let reason = format!("peer {}: {reason}", i + 1);
                retry = Some(match retry {
                    None => Verdict::Retry {
                        after,
                        reason,
                        throttled,
                    },
                    Some(Verdict::Retry {
                        after: a0,
                        reason: r0,
                        throttled: t0,
                    }) => Verdict::Retry {
                        after: match (a0, after) {
                            (Some(x), Some(y)) => Some(x.min(y)),
                            _ => None,
                        },
                        reason: format!("{r0}; {reason}"),
                        throttled: t0 && throttled,
                    },
                    Some(other) => other,
                });
            }
            Verdict::Permanent(r) => permanent.push(format!("peer {}: {r}", i + 1)),
        }
    }
    match retry {
        Some(r) => r,
        None if permanent.is_empty() => {
            Verdict::Permanent("no Alertmanager peer configured".into())
        }
        None => Verdict::Permanent(permanent.join("; ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_accepting_peer_is_enough() {
        let r = combine(vec![(0, Verdict::retry("down")), (1, Verdict::Delivered)]);
        assert_eq!(r, Verdict::Delivered);
        let r = combine(vec![
            (0, Verdict::retry("down")),
            (1, Verdict::Permanent("400".into())),
        ]);
        assert!(matches!(r, Verdict::Retry { .. }));
        let r = combine(vec![(0, Verdict::Permanent("400".into()))]);
        assert_eq!(r, Verdict::Permanent("peer 1: 400".into()));
    }
}
