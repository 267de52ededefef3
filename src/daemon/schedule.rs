//! The scheduler: every enabled store on its cron schedule, skipped firings while it backs off,
//! checks now on request, under the global and per-marketplace caps.

use super::*;

pub(super) fn plan(
    shared: &Shared,
    now: DateTime<Utc>,
) -> BinaryHeap<Reverse<(DateTime<Utc>, String)>> {
    let live = shared.live();
    let mut heap = BinaryHeap::new();
    let mut mem = shared.stores.lock().unwrap_or_else(|e| e.into_inner());
    for store in live.config.stores.iter().filter(|s| s.enabled) {
        let due =
            crate::schedule::next_due(&store.schedule, live.config.daemon.timezone, &store.id, now);
        let entry = mem.entry(store.id.clone()).or_default();
        entry.next_due = due;
        if let Some(due) = due {
            heap.push(Reverse((due, store.id.clone())));
        }
    }
    heap
}

pub(super) async fn schedule_loop(
    shared: Arc<Shared>,
    mut check_rx: mpsc::UnboundedReceiver<String>,
    cancel: CancellationToken,
    checks: TaskTracker,
) {
    let limits = shared.limits.clone();
    let global = Arc::new(Semaphore::new(limits.max_concurrent_checks));
    let per_market: Arc<BTreeMap<Marketplace, Arc<Semaphore>>> = Arc::new(
        Marketplace::ALL
            .into_iter()
            .map(|m| {
                (
                    m,
                    Arc::new(Semaphore::new(limits.max_concurrent_per_marketplace)),
                )
            })
            .collect(),
    );
    let mut now = shared.clock.now();
    let mut heap = plan(&shared, now);
    loop {
        shared
            .heartbeat
            .store(shared.clock.now().timestamp_millis(), Ordering::Relaxed);
        let next = heap.peek().map(|Reverse((t, _))| *t);
        let wake = next.unwrap_or(now + chrono::Duration::seconds(60));
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = shared.replan.notified() => {
                heap = plan(&shared, shared.clock.now());
                continue;
            }
            Some(id) = check_rx.recv() => {
                spawn_check(&shared, &checks, &global, &per_market, id, true);
                continue;
            }
            _ = shared.clock.sleep_until(wake) => {}
        }
        let t = shared.clock.now();
        if t + chrono::Duration::seconds(60) < now {
            // The clock went backwards: re-plan from the new "now" instead of waiting for
            // due times that are now far away.
            tracing::warn!("system clock moved backwards; re-planning the schedule");
            // Backoffs end as long after the new "now" as they did after the old one.
            let step = t - now;
            for m in shared
                .stores
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .values_mut()
            {
                m.backoff.until = m.backoff.until.map(|u| u + step);
                m.backoff = m.backoff.bounded(t);
            }
            heap = plan(&shared, t);
            now = t;
            continue;
        }
        now = t;
        let live = shared.live();
        while let Some(Reverse((due, _))) = heap.peek() {
            if *due > now {
                break;
            }
            let Reverse((_, id)) = heap.pop().expect("peeked");
            let Some(store) = live.config.store(&id).filter(|s| s.enabled) else {
                continue;
            };
            // Next firing after now: ticks missed while away are skipped, not replayed.
            let next_due =
                crate::schedule::next_due(&store.schedule, live.config.daemon.timezone, &id, now);
            let backoff_until = {
                let mut mem = shared.stores.lock().unwrap_or_else(|e| e.into_inner());
                let m = mem.entry(id.clone()).or_default();
                m.next_due = next_due;
                // A clock stepped back while storeguard was not looking (between two ticks).
                m.backoff = m.backoff.bounded(now);
                m.backoff.until
            };
            if let Some(n) = next_due {
                heap.push(Reverse((n, id.clone())));
            }
            if backoff_until.is_some_and(|u| u > now) {
                if live.probe.entry_changed(&id) {
                    // The seller fixed the key: no reason to wait out a backoff for the old one.
                    tracing::info!(store = %id, "vault entry changed: checking now, backoff lifted");
                    let mut mem = shared.stores.lock().unwrap_or_else(|e| e.into_inner());
                    if let Some(m) = mem.get_mut(&id) {
                        m.backoff = Backoff::default();
                    }
                } else {
                    shared
                        .metrics
                        .checks_skipped_backoff
                        .fetch_add(1, Ordering::Relaxed);
                    continue;
                }
            }
            spawn_check(&shared, &checks, &global, &per_market, id, false);
        }
    }
}

pub(super) fn spawn_check(
    shared: &Arc<Shared>,
    checks: &TaskTracker,
    global: &Arc<Semaphore>,
    per_market: &Arc<BTreeMap<Marketplace, Arc<Semaphore>>>,
    store_id: String,
    manual: bool,
) {
    let Some(store) = shared.live().config.store(&store_id).cloned() else {
        return;
    };
    {
        let mut inflight = shared.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        if !inflight.insert(store_id.clone()) {
            return; // already being checked
        }
    }
    let shared = shared.clone();
    let global = global.clone();
    let market = per_market[&store.marketplace].clone();
    checks.spawn(async move {
        let _g = global.acquire_owned().await;
        let _m = market.acquire_owned().await;
        run_check(&shared, &store, manual).await;
        shared
            .in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&store.id);
    });
}
