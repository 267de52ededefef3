//! Replica mode: joining the fleet, the lease loop, and what taking a shard over reloads.
//!
//! A store is checked only by the replica whose lease covers its shard ([`Leases`]); its
//! check is written under that lease's fence, and its alerts are delivered by the same
//! replica. When a lease is taken, the stores of its shard are read back from the database
//! (what the previous holder last wrote) before this replica checks any of them.

use super::*;
use crate::config::StateLocation;
use crate::replica::{Db, Replica, Target, plan};
use crate::state::{Fleet, PgState};

/// What replica mode cannot run yet, said before anything starts.
fn unsupported(config: &Config) -> Option<String> {
    // An XOAUTH2 mailbox rotates its refresh token in this replica's vault file only.
    let oauth: Vec<&str> = config
        .mailboxes
        .iter()
        .filter(|m| m.auth == crate::config::MailAuth::Xoauth2)
        .map(|m| m.name.as_str())
        .collect();
    if !oauth.is_empty() {
        return Some(format!(
            "XOAUTH2 mailboxes ({}) do not run on several replicas yet\n  help: use an app password for them, or watch them from a single-box storeguard",
            oauth.join(", ")
        ));
    }
    None
}

/// The mailboxes this replica watches now (those of the shards it holds).
fn watched(shared: &Shared) -> Vec<String> {
    let Some(leases) = shared.state.leases() else {
        return Vec::new();
    };
    let now = std::time::Instant::now();
    shared
        .live()
        .config
        .mailboxes
        .iter()
        .filter(|m| {
            leases
                .fence_for_store(&super::mail::mailbox_key(&m.name), now)
                .is_some()
        })
        .map(|m| m.name.clone())
        .collect()
}

/// Rotated tokens, from the local vault file to the fleet database under the store's fence.
pub(super) struct Tokens {
    state: Arc<Backend>,
    files: crate::vault::Vault,
}

impl Tokens {
    pub(super) fn new(state: Arc<Backend>, files: crate::vault::Vault) -> Tokens {
        Tokens { state, files }
    }
}

impl crate::marketplace::TokenMirror for Tokens {
    fn rotated(&self, entry: &crate::vault::EntryId, generation: u64) -> Result<(), String> {
        let (Some(fleet), Some(leases)) = (self.state.fleet(), self.state.leases()) else {
            return Ok(());
        };
        let fence = leases
            .last_fence_for_store(&entry.name)
            .ok_or("this replica no longer holds the store's shard")?;
        let armored = self.files.read_sealed(entry).map_err(|e| e.to_string())?;
        let stored = crate::replica::StoredEntry {
            entry: entry.to_string(),
            armored,
            generation: generation as i64,
        };
        match fleet.push_entry(fence, &stored) {
            Ok(()) => Ok(()),
            Err(crate::state::StateError::Fleet(e)) if e.is_fenced() => {
                leases.refused(fence);
                Err(e.to_string())
            }
            Err(e) => Err(e.to_string()),
        }
    }
}

/// Joins the fleet: checks the config, migrates the database, takes a first share of the
/// leases. Returns the state backend and the replica (for [`lease_loop`]).
pub(super) async fn open(
    config: &Config,
    password: Option<secrecy::SecretString>,
) -> anyhow::Result<Option<(Backend, Replica)>> {
    let StateLocation::Postgres { url } = &config.daemon.state else {
        return Ok(None);
    };
    if let Some(why) = unsupported(config) {
        anyhow::bail!("replica mode: {why}");
    }
    let ttl = config.replicas.lease_ttl;
    let target = Target {
        url: url.clone(),
        password,
        replica: config.daemon.replica.clone(),
        timeout: plan::tick(ttl),
    };
    // Two pools: the lease loop's connections live on the daemon's runtime, the state's on
    // the fleet backend's own.
    let mut replica = Replica::join(Db::new(&target)?, config.replicas.shards, ttl).await?;
    let first = replica.tick().await?;
    replica.publish();
    tracing::info!(
        replica = %config.daemon.replica,
        shards = first.acquired.len(),
        of = config.replicas.shards,
        "joined the fleet"
    );
    let pg = PgState::new(Db::new(&target)?, config.replicas.shards);
    let fleet = Fleet::new(pg, replica.leases())?;
    Ok(Some((Backend::Fleet(fleet), replica)))
}

/// Renews, rebalances and takes over leases every [`plan::tick`] until shutdown, then gives
/// every lease back so the others take over at once.
pub(super) async fn lease_loop(
    shared: Arc<Shared>,
    mut replica: Replica,
    vault: Option<(crate::vault::Vault, Arc<crate::vault::Identity>)>,
    cancel: CancellationToken,
) {
    let mut every = tokio::time::interval(plan::tick(replica.ttl()));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    let mut seen_version = 0;
    let mut mailboxes = watched(&shared);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = every.tick() => {}
        }
        match replica.tick_holding_releases().await {
            Ok(report) => {
                if !report.released.is_empty() {
                    let shards = replica.shards();
                    settle(&shared, |id| {
                        report
                            .released
                            .contains(&crate::replica::shard_of(id, shards))
                    })
                    .await;
                }
                if let Err(e) = replica.release_pending().await {
                    tracing::warn!("cannot hand shards back (they expire on their own): {e}");
                }
                if failing {
                    tracing::info!("the fleet database answers again");
                    failing = false;
                }
                if !report.acquired.is_empty() {
                    if let Some((files, identity)) = &vault {
                        pull_shards(&shared, &replica, files, identity, &report.acquired).await;
                    }
                    reload_shards(&shared, replica.shards(), &report.acquired);
                }
                replica.publish();
                let now_watched = watched(&shared);
                if now_watched != mailboxes {
                    mailboxes = now_watched;
                    shared.mail_restart.notify_one();
                }
                seen_version = follow_others(&shared, replica.shards(), seen_version);
                // Another replica may have queued an alert for a store of ours (a mail its
                // watcher read): look at the outbox every tick, not only when kicked here.
                shared.outbox_kick.notify_one();
                // A silence set through any replica's API holds on every replica.
                if let Ok(silences) = shared.state.silences(shared.clock.now()) {
                    *shared.silences.lock().unwrap_or_else(|e| e.into_inner()) = silences;
                }
                if !report.acquired.is_empty() || !report.released.is_empty() {
                    tracing::info!(
                        acquired = report.acquired.len(),
                        taken_over = report.took_over.len(),
                        released = report.released.len(),
                        "shard leases moved"
                    );
                    shared.outbox_kick.notify_one();
                }
                if !report.lost.is_empty() {
                    let live = shared.live();
                    tracing::warn!(shards = report.lost.len(), "shard leases lost");
                    lease_alert(
                        &shared,
                        &live,
                        Some(format!(
                            "replica {} lost {} shard lease(s) it could not renew in time; their stores are checked by the other replicas",
                            shared.live().config.daemon.replica,
                            report.lost.len()
                        )),
                    );
                } else if !report.acquired.is_empty()
                    || !replica.trusted(std::time::Instant::now()).is_empty()
                {
                    let live = shared.live();
                    lease_alert(&shared, &live, None);
                }
            }
            Err(e) => {
                if !failing {
                    tracing::warn!("cannot renew the shard leases: {e}");
                    failing = true;
                }
            }
        }
    }
    // The checks in flight finish (their tokens reach the database) before anyone else may
    // take their stores.
    settle(&shared, |_| true).await;
    if let Err(e) = replica.leave().await {
        tracing::warn!("could not hand the shard leases back (they expire on their own): {e}");
    }
}

/// Waits until no check of a store `mine` selects is in flight (bounded by the longest store
/// timeout and a margin: a hung probe does not hold a shard forever).
async fn settle(shared: &Shared, mine: impl Fn(&str) -> bool) {
    let longest = shared
        .live()
        .config
        .stores
        .iter()
        .map(|s| s.timeout)
        .max()
        .unwrap_or_default();
    let deadline = std::time::Instant::now() + longest + Duration::from_secs(5);
    while std::time::Instant::now() < deadline {
        let busy = shared
            .in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .any(|id| mine(id));
        if !busy {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The ids of the configured stores in `taken` shards.
fn stores_of(shared: &Shared, shards: u32, taken: &[u32]) -> Vec<String> {
    shared
        .live()
        .config
        .stores
        .iter()
        .filter(|s| taken.contains(&crate::replica::shard_of(&s.id, shards)))
        .map(|s| s.id.clone())
        .collect()
}

/// Brings the vault files of the stores in `taken` shards up to the database's (their last
/// holder may have rotated their tokens), before any of them is checked here. The prober
/// sees the changed files at their next check.
async fn pull_shards(
    shared: &Shared,
    replica: &Replica,
    files: &crate::vault::Vault,
    identity: &crate::vault::Identity,
    taken: &[u32],
) {
    let names: Vec<String> = stores_of(shared, replica.shards(), taken)
        .iter()
        .map(|id| crate::vault::EntryId::store(id).to_string())
        .collect();
    if names.is_empty() {
        return;
    }
    match crate::replica::vault_sync::pull(replica.db(), files, identity, Some(&names)).await {
        Ok(p) => {
            if p.written > 0 {
                tracing::info!(
                    entries = p.written,
                    "vault entries of the shards taken over read from the fleet database"
                );
            }
            for name in p.local_newer {
                tracing::warn!(entry = %name, "this replica's vault file is newer than the fleet database's; run `storeguard vault import` with it");
            }
        }
        Err(e) => tracing::warn!("cannot read the vault entries of the shards taken over: {e}"),
    }
}

/// Reads back the rows of the stores in `shards` (written by their previous holder).
fn reload_shards(shared: &Shared, shards: u32, taken: &[u32]) {
    let live = shared.live();
    let ids = stores_of(shared, shards, taken);
    if ids.is_empty() {
        return;
    }
    let rows = match shared.state.load_stores_of(&ids) {
        Ok(rows) => rows,
        Err(e) => {
            tracing::warn!("cannot read the stores of the shards taken over: {e}");
            return;
        }
    };
    let now = shared.clock.now();
    let mut mem = shared.stores.lock().unwrap_or_else(|e| e.into_inner());
    for row in rows {
        if let Some(last) = &row.last_outcome {
            live.probe.remember(&row.store_id, &last.facts);
        }
        let m = mem.entry(row.store_id.clone()).or_default();
        m.health = row.health;
        m.last = row.last_outcome;
        m.backoff = Backoff {
            until: row.backoff_until,
            level: row.backoff_level,
        }
        .bounded(now);
    }
}

/// Copies what the other replicas wrote about their stores into memory, so that the status
/// page, the API and marketplace-wide grouping see the whole fleet. The stores of shards this
/// replica holds are its own to know; they are left alone. Returns the newest version seen.
fn follow_others(shared: &Shared, shards: u32, since: i64) -> i64 {
    let (rows, newest) = match shared.state.stores_changed_since(since) {
        Ok(v) => v,
        Err(e) => {
            tracing::debug!("cannot follow the other replicas' stores: {e}");
            return since;
        }
    };
    if rows.is_empty() {
        return newest;
    }
    let mine: std::collections::HashSet<u32> = shared
        .state
        .leases()
        .map(|l| l.trusted(std::time::Instant::now()).into_iter().collect())
        .unwrap_or_default();
    let mut mem = shared.stores.lock().unwrap_or_else(|e| e.into_inner());
    for row in rows {
        if mine.contains(&crate::replica::shard_of(&row.store_id, shards)) {
            continue;
        }
        let m = mem.entry(row.store_id).or_default();
        m.health = row.health;
        m.last = row.last_outcome;
        m.backoff = Backoff {
            until: row.backoff_until,
            level: row.backoff_level,
        };
    }
    newest
}

/// The `daemon_fault` of lost leases: opened once per streak, resolved when leases are held
/// again. Sent directly, like the state database's own fault: the database may be what
/// failed.
fn lease_alert(shared: &Shared, live: &Live, detail: Option<String>) {
    check::fault_alert_in(
        shared,
        &shared.lease_fault,
        live,
        detail,
        shared.clock.now(),
    );
}
