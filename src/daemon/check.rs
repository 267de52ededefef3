//! One check through the house: probe, `health::step`, routing, memory, the group commit.

use super::commit::{self, Before, Failed, Pending};
use super::*;
use crate::state::{CheckWrite, OutcomeRow};

/// Probe → health → memory → the group commit ([`commit`]), waited for. A failed write (disk
/// full) puts memory back, so it loses no event: the next check derives it again. The
/// decision runs under the store-map lock, so marketplace-wide grouping sees a consistent
/// picture and two checks cannot both open the same grouped incident.
pub async fn run_check(shared: &Shared, store: &Store, manual: bool) {
    // Replica mode: only the holder of the store's shard probes it, under that lease.
    let fence = match shared.state.leases() {
        None => None,
        Some(leases) => match leases.fence_for_store(&store.id, std::time::Instant::now()) {
            Some(f) => Some(f),
            None => return,
        },
    };
    let live = shared.live();
    let started = shared.clock.now();
    let Some(outcome) = live.probe.check(&store.id, started).await else {
        return;
    };
    let now = shared.clock.now();
    let queued = decide(shared, &live, store, outcome, manual, fence, now);
    let result = match queued {
        Ok((queued, committed, raised)) => {
            let result = commit::wait(shared, queued, committed).await;
            if result.is_ok() {
                for (subject, event, finding, channels, held) in raised {
                    tracing::info!(
                        store = %subject,
                        event,
                        finding,
                        channels,
                        held,
                        "incident {event}"
                    );
                }
            }
            result
        }
        Err(f) => Err(f),
    };
    match result {
        Ok(()) => {
            if shared.metrics.state_fault.swap(false, Ordering::Relaxed) {
                tracing::info!("state database writable again");
                fault_alert(shared, &live, None, now);
            }
        }
        Err(Failed { message, disk_full }) => {
            shared
                .metrics
                .state_write_errors
                .fetch_add(1, Ordering::Relaxed);
            let first = !shared.metrics.state_fault.swap(true, Ordering::Relaxed);
            tracing::error!(store = %store.id, disk_full, "cannot record the check: {message}");
            if first {
                let what = if disk_full {
                    "the disk is full"
                } else {
                    "a write failed"
                };
                fault_alert(
                    shared,
                    &live,
                    Some(format!(
                        "the state database cannot be written ({what}); checks go on, but login history and alerts are not recorded until there is room"
                    )),
                    now,
                );
            }
        }
    }
}

/// What a decided check waits for: its commit, and the incident events to log once it is in.
type Queued = Result<
    (
        usize,
        tokio::sync::oneshot::Receiver<Result<(), Failed>>,
        Vec<(String, &'static str, &'static str, usize, bool)>,
    ),
    Failed,
>;

/// The locked part of a check: `health::step` on the store map, memory advanced, the rows
/// queued for the group commit.
fn decide(
    shared: &Shared,
    live: &Live,
    store: &Store,
    outcome: Outcome,
    manual: bool,
    fence: Option<crate::replica::Fence>,
    now: DateTime<Utc>,
) -> Queued {
    // The outcome's row and JSON need no lock: built first, the critical section is shorter.
    let row = OutcomeRow::new(&outcome);
    let mut mem = shared.stores.lock().unwrap_or_else(|e| e.into_inner());
    let fresh = StoreMem::default();
    let prev = mem.get(&store.id).unwrap_or(&fresh);
    let group_id = crate::event::Subject::Marketplace(store.marketplace)
        .key()
        .into_owned();
    // Only stores whose latest outcome is an outage can count towards the group: those, in
    // config order, instead of every peer of the marketplace.
    let candidates: Vec<&Store> = {
        let outages = shared.outages.lock().unwrap_or_else(|e| e.into_inner());
        let mut at: Vec<usize> = outages
            .iter()
            .chain(std::iter::once(&store.id))
            .filter_map(|id| live.config.store_position(id))
            .collect();
        at.sort_unstable();
        at.dedup();
        at.into_iter()
            .map(|i| &live.config.stores[i])
            .filter(|s| s.enabled && s.marketplace == store.marketplace)
            .collect()
    };
    let peers: Vec<health::Peer<'_>> = candidates
        .iter()
        .filter_map(|s| match mem.get(&s.id) {
            Some(m) => Some(health::Peer {
                id: &s.id,
                last: m.last.as_ref(),
                health: &m.health,
            }),
            // This store before its first check: `step` puts the new outcome in its place.
            None if s.id == store.id => Some(health::Peer {
                id: &s.id,
                last: None,
                health: &prev.health,
            }),
            None => None,
        })
        .collect();
    let no_group = StoreHealth::default();
    let silenced = shared
        .silences
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&store.id)
        .copied();
    let picture = health::Picture {
        store: StoreRef {
            id: &store.id,
            name: &store.name,
            marketplace: store.marketplace,
        },
        health: &prev.health,
        backoff: prev.backoff,
        peers: &peers,
        marketplace_stores: live
            .enabled_per_marketplace
            .get(&store.marketplace)
            .copied()
            .unwrap_or(0),
        group: mem.get(&group_id).map_or(&no_group, |m| &m.health),
        held_until: crate::route::held_until(&live.config, store, silenced, now),
        // Stores of one sweep finish at different moments: a sweep's spread (jitter + probe
        // timeout).
        sweep_grace: chrono::Duration::from_std(
            (store.schedule.min_interval() / 10).min(Duration::from_secs(30)) + store.timeout,
        )
        .unwrap_or_default(),
        manual,
    };
    let health::Step {
        health,
        events,
        group,
        covered,
        backoff,
    } = health::step(&picture, &outcome, &live.rules, now);
    drop(peers);
    let routed: Vec<Routed> = events
        .into_iter()
        .map(|d| Routed {
            channels: if d.alone {
                crate::route::channels_for(&live.config, &d.event)
            } else {
                Vec::new()
            },
            event: d.event,
            hold_until: d.hold_until,
        })
        .collect();
    let mut extra: Vec<(&str, &StoreHealth)> =
        covered.iter().map(|(id, h)| (id.as_str(), h)).collect();
    if let Some(g) = &group {
        extra.push((group_id.as_str(), g));
    }
    let write = row
        .and_then(|row| CheckWrite::new(row, &health, routed, backoff, &extra))
        .map(|w| match fence {
            Some(f) => w.fenced(f),
            None => w,
        });
    drop(extra);
    shared.metrics.record_check(&outcome);
    note_outage(shared, &store.id, &outcome);
    // Either queued for the commit, or not recordable.
    match write {
        Ok(write) => {
            // Logged once the commit is in: what each raised incident event was.
            let raised: Vec<(String, &'static str, &'static str, usize, bool)> = write
                .routed()
                .iter()
                .map(|r| {
                    (
                        r.event.subject.key().into_owned(),
                        r.event.event.as_str(),
                        r.event.finding.as_str(),
                        r.channels.len(),
                        r.hold_until.is_some(),
                    )
                })
                .collect();
            let m = mem.entry(store.id.clone()).or_default();
            let mut before = Before {
                store: (
                    store.id.clone(),
                    std::mem::replace(&mut m.health, health),
                    std::mem::replace(&mut m.backoff, backoff),
                ),
                others: Vec::with_capacity(covered.len() + 1),
            };
            m.last = Some(outcome);
            if let Some(g) = group {
                let old =
                    std::mem::replace(&mut mem.entry(group_id.clone()).or_default().health, g);
                before.others.push((group_id, old));
            }
            for (id, h) in covered {
                let old = std::mem::replace(&mut mem.entry(id.clone()).or_default().health, h);
                before.others.push((id, old));
            }
            let (done, committed) = tokio::sync::oneshot::channel();
            let queued = shared.commits.push(Pending {
                write,
                before,
                done,
            });
            Ok((queued, committed, raised))
        }
        Err(e) => {
            // Keep the outcome visible in status, but not the health transition.
            mem.entry(store.id.clone()).or_default().last = Some(outcome);
            Err(Failed {
                message: e.to_string(),
                disk_full: e.is_disk_full(),
            })
        }
    }
}

/// Alerts about the state database go straight to the default channels: the outbox lives in
/// that database and cannot take them. `Some(detail)` opens the fault, `None` resolves it.
pub(super) fn fault_alert(
    shared: &Shared,
    live: &Live,
    detail: Option<String>,
    now: DateTime<Utc>,
) {
    fault_alert_in(shared, &shared.fault_event, live, detail, now);
}

/// [`fault_alert`] for the incident kept in `slot` (the state database's, or the leases').
pub(super) fn fault_alert_in(
    shared: &Shared,
    slot: &Mutex<Option<AlertEvent>>,
    live: &Live,
    detail: Option<String>,
    now: DateTime<Utc>,
) {
    let mut slot = slot.lock().unwrap_or_else(|e| e.into_inner());
    let event = match detail {
        Some(d) => {
            let e = daemon_event(&d, now);
            *slot = Some(e.clone());
            e
        }
        None => {
            let Some(mut e) = slot.take() else { return };
            e.event = crate::event::EventKind::Resolved;
            e.event_id = health::event_id(&e.incident_id, crate::event::EventKind::Resolved, 0);
            e.created_at = now;
            e
        }
    };
    let channels = crate::route::channels_for(&live.config, &event);
    let sender = live.sender.clone();
    let clock = shared.clock.clone();
    shared.tasks.spawn(async move {
        for channel in channels {
            for _ in 0..3 {
                match sender.send(&channel, &event, clock.now()).await {
                    Delivery::Delivered | Delivery::Permanent(_) => break,
                    Delivery::Retry(after) => {
                        tokio::time::sleep(
                            after
                                .unwrap_or(Duration::from_secs(2))
                                .min(Duration::from_secs(10)),
                        )
                        .await
                    }
                }
            }
        }
    });
}

/// Keeps `Shared::outages` in step with a store's latest outcome (`stores` must be locked).
pub(super) fn note_outage(shared: &Shared, store_id: &str, outcome: &Outcome) {
    let mut outages = shared.outages.lock().unwrap_or_else(|e| e.into_inner());
    if health::is_outage(outcome) {
        if !outages.contains(store_id) {
            outages.insert(store_id.to_string());
        }
    } else {
        outages.remove(store_id);
    }
}

/// Silences a store's notifications for `duration` (the `silence` API).
pub fn silence(
    shared: &Shared,
    store_id: &str,
    duration: Duration,
) -> Result<DateTime<Utc>, String> {
    if shared.live().config.store(store_id).is_none() {
        return Err(format!("no store `{store_id}`"));
    }
    let until =
        shared.clock.now() + chrono::Duration::from_std(duration).map_err(|e| e.to_string())?;
    shared
        .state
        .set_silence(store_id, until)
        .map_err(|e| e.to_string())?;
    shared
        .silences
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(store_id.to_string(), until);
    tracing::info!(store = store_id, until = %until, "notifications silenced");
    Ok(until)
}
