//! The `log` channel: one structured log line per alert (journald under systemd).

use super::AlertEvent;
use super::render::Message;

pub fn send(channel: &str, event: &AlertEvent, msg: &Message) {
    tracing::warn!(
        target: "storeguard::alert",
        channel = %channel,
        event_id = %event.event_id,
        event = event.event.as_str(),
        incident_id = %event.incident_id,
        store_id = %event.subject.key(),
        marketplace = event.subject.marketplace().map_or("", |m| m.as_str()),
        finding = event.finding.as_str(),
        severity = event.severity.as_str(),
        affected = event.affected.len(),
        test = event.test,
        "{}",
        msg.title
    );
}
