//! Background chores on the injected clock: history pruning and compaction, the dead-man's
//! switch.

use super::*;

/// Dead-man's switch, healthchecks-style: a ping every minute while the scheduler runs and the
/// state database takes writes, `<url>/fail` with a short reason otherwise. At most 3 tries of
/// 10 s each per minute; the URL (a secret) never reaches a log line.
pub(super) async fn heartbeat(
    shared: Arc<Shared>,
    url: secrecy::SecretString,
    cancel: CancellationToken,
) {
    use secrecy::ExposeSecret;
    let Ok(client) = crate::http::client_builder(Duration::from_secs(10)).build() else {
        return;
    };
    let base = url.expose_secret().trim_end_matches('/').to_string();
    if url::Url::parse(&base).map_or(true, |u| crate::http::check_url(&u).is_err()) {
        tracing::error!(
            "heartbeat_url is not an https URL (plain http only to loopback); the dead-man's switch is off"
        );
        return;
    }
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = crate::clock::sleep_for(&*shared.clock, shared.limits.heartbeat_every) => {}
        }
        let now = shared.clock.now();
        let fault = if !shared.scheduler_alive(now) {
            Some("scheduler stalled")
        } else if shared.metrics.state_fault.load(Ordering::Relaxed) {
            Some("state database not writable")
        } else {
            None
        };
        for attempt in 0..3 {
            let req = match fault {
                None => client.get(&base),
                Some(reason) => client.post(format!("{base}/fail")).body(reason),
            };
            match req.send().await {
                Ok(r) if r.status().is_success() => break,
                Ok(r) => tracing::warn!(
                    status = r.status().as_u16(),
                    attempt,
                    "heartbeat ping refused"
                ),
                Err(e) => tracing::warn!(
                    attempt,
                    "heartbeat ping failed: {}",
                    crate::http::HttpError::from_reqwest(e)
                ),
            }
        }
    }
}

/// Prunes and compacts old history once an hour.
pub(super) async fn housekeeping(shared: Arc<Shared>, cancel: CancellationToken) {
    loop {
        let retention = shared.live().config.daemon.history_retention;
        // A cutoff before the calendar begins keeps everything (never "now": that would
        // delete all history).
        let before = crate::duration::before(shared.clock.now(), retention)
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        match shared.state.prune(before) {
            Ok(n) if n > 0 => {
                tracing::info!(rows = n, "pruned login history older than the retention")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("cannot prune history: {e}"),
        }
        // Raw login records older than a week fold into daily runs (see `State::compact`).
        match shared.state.compact(shared.clock.now()) {
            Ok(c) if c.checks > 0 => {
                tracing::info!(
                    records = c.checks,
                    runs = c.runs,
                    "compacted old login history"
                )
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("cannot compact history: {e}"),
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = crate::clock::sleep_for(&*shared.clock, Duration::from_secs(3600)) => {}
        }
    }
}
