//! Delivery of the outbox: one worker per channel with due rows, retries, release after holds.

use super::*;

pub(super) fn retry_delay(limits: &Limits, attempts: u32, asked: Option<Duration>) -> Duration {
    let exp = limits
        .retry_base
        .saturating_mul(2u32.saturating_pow(attempts.min(16)))
        .min(limits.retry_cap);
    match asked {
        Some(a) => a.min(Duration::from_secs(3600)).max(Duration::from_secs(1)),
        None => exp,
    }
}

pub(super) async fn deliver_loop(shared: Arc<Shared>, cancel: CancellationToken) {
    // One worker per channel with pending alerts: a channel that accepts the connection and
    // never answers costs its own timeout per alert and delays no other channel. Each worker
    // delivers its channel's rows one at a time, oldest first, so per-channel, per-store order
    // holds as before.
    let workers = TaskTracker::new();
    let busy: Arc<Mutex<HashSet<String>>> = Arc::default();
    loop {
        if cancel.is_cancelled() {
            break;
        }
        let now = shared.clock.now();
        let pending = match shared.state.pending_channels() {
            Ok(p) => p,
            Err(e) => {
                tracing::error!("cannot read the alert outbox: {e}");
                Vec::new()
            }
        };
        let mut wake = now + chrono::Duration::seconds(30);
        for (channel, due) in pending {
            let mut running = busy.lock().unwrap_or_else(|e| e.into_inner());
            if running.contains(&channel) {
                continue;
            }
            if due <= now {
                running.insert(channel.clone());
                workers.spawn(channel_worker(
                    shared.clone(),
                    channel,
                    cancel.clone(),
                    busy.clone(),
                ));
            } else {
                wake = wake.min(due);
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            // New rows, or a worker that finished (its channel may have more later).
            _ = shared.outbox_kick.notified() => {}
            _ = shared.clock.sleep_until(wake) => {}
        }
    }
    workers.close();
    workers.wait().await;
}

/// Delivers one channel's due rows until none is due, then leaves (the loop above starts a
/// new worker when more become due).
pub(super) async fn channel_worker(
    shared: Arc<Shared>,
    channel: String,
    cancel: CancellationToken,
    busy: Arc<Mutex<HashSet<String>>>,
) {
    loop {
        if cancel.is_cancelled() {
            break;
        }
        let now = shared.clock.now();
        let rows = match shared.state.due_outbox_for(Some(&channel), now, 200) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!("cannot read the alert outbox: {e}");
                Vec::new()
            }
        };
        if rows.is_empty() {
            break;
        }
        let live = shared.live();
        for row in &rows {
            if cancel.is_cancelled() {
                break;
            }
            deliver_row(&shared, &live, row).await;
        }
    }
    busy.lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&channel);
    shared.outbox_kick.notify_one();
}

/// One attempt at one outbox row, and its bookkeeping.
pub(super) async fn deliver_row(shared: &Arc<Shared>, live: &Live, row: &crate::state::OutboxRow) {
    let now = shared.clock.now();
    let age = (now - row.created_at).to_std().unwrap_or_default();
    // An old row is still sent while it says something true: an `opened` of an incident still
    // open, a `resolved` whose opening reached the channel (a receiver would otherwise keep the
    // incident open for ever). So a long outage of the channel, or a clock that jumps a day
    // ahead, never leaves a reminder of an incident the receiver was not told about. A week
    // past the cap, a row is given up whatever it says.
    let hard_cap = shared.limits.alert_max_age.saturating_mul(7);
    if age > hard_cap || (age > shared.limits.alert_max_age && !still_relevant(shared, row)) {
        tracing::warn!(
            channel = %row.channel,
            event_id = %row.event.event_id,
            store = %row.event.subject.key(),
            attempts = row.attempts,
            "giving up on an alert older than {}",
            crate::duration::format(shared.limits.alert_max_age)
        );
        shared.metrics.alert(&row.channel, "gave_up");
        let _ = shared.state.mark_gave_up(row.seq, now, "too old");
        return;
    }
    if row.held && !still_relevant(shared, row) {
        shared
            .metrics
            .alert(&row.channel, "dropped_after_maintenance");
        let _ = shared
            .state
            .mark_gave_up(row.seq, now, "held for maintenance; no longer relevant");
        return;
    }
    let verdict = live.sender.send(&row.channel, &row.event, now).await;
    let now = shared.clock.now();
    let result = match verdict {
        Delivery::Delivered => {
            shared.metrics.alert(&row.channel, "delivered");
            shared.state.mark_delivered(row.seq, now)
        }
        Delivery::Retry(after) => {
            shared.metrics.alert(&row.channel, "retry");
            let wait = retry_delay(&shared.limits, row.attempts, after);
            tracing::debug!(channel = %row.channel, event_id = %row.event.event_id, "delivery will be retried in {}", crate::duration::format(wait));
            shared.state.mark_retry(
                row.seq,
                now + chrono::Duration::from_std(wait).unwrap_or_default(),
                "retry",
            )
        }
        Delivery::Permanent(reason) => {
            shared.metrics.alert(&row.channel, "gave_up");
            tracing::warn!(channel = %row.channel, event_id = %row.event.event_id, "channel refused the alert for good: {reason}");
            shared.state.mark_gave_up(row.seq, now, &reason)
        }
    };
    if let Err(e) = result {
        tracing::error!("cannot update the alert outbox: {e}");
    }
}

/// At the end of a maintenance window: an incident still open is notified; reminders held in
/// the window are dropped; a resolution is sent only where its opening was.
pub(super) fn still_relevant(shared: &Shared, row: &crate::state::OutboxRow) -> bool {
    use crate::event::EventKind;
    let state = &shared.state;
    let id = &row.event.incident_id;
    match row.event.event {
        EventKind::Opened => {
            // Covered by a grouped incident meanwhile: the group speaks for it.
            let grouped = shared
                .stores
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(row.event.subject.key().as_ref())
                .and_then(|m| m.health.open.get(&row.event.finding))
                .is_some_and(|i| i.id == *id && i.grouped);
            !grouped && state.incident_open(id).unwrap_or(true)
        }
        EventKind::Reminder => false,
        EventKind::Resolved => state.opened_delivered(id, &row.channel).unwrap_or(true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delay_is_capped_and_honours_retry_after() {
        let l = Limits::default();
        assert_eq!(retry_delay(&l, 0, None), Duration::from_secs(5));
        assert_eq!(retry_delay(&l, 3, None), Duration::from_secs(40));
        assert_eq!(retry_delay(&l, 30, None), Duration::from_secs(600));
        assert_eq!(
            retry_delay(&l, 0, Some(Duration::from_secs(17))),
            Duration::from_secs(17)
        );
        assert_eq!(
            retry_delay(&l, 0, Some(Duration::from_secs(999_999_999))),
            Duration::from_secs(3600)
        );
    }
}
