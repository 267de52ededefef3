//! Several replicas on one PostgreSQL: each store is in one of `shards` shards, each shard has
//! one lease, and only the replica holding a shard's lease probes its stores and writes their
//! tokens. Leases are renewed every [`plan::tick`] and trusted for [`plan::trust_for`] after
//! the renewal started, so a replica that cannot renew (database down, network cut, process
//! stopped) stops acting before its lease can expire for anyone else; every write that matters
//! also carries the lease's term and the database refuses a stale one ([`db::check_fence`]).

pub mod db;
pub mod plan;
pub mod vault_sync;

pub use db::{Db, DbError, Expect, Fence, Fleet, LeaseRow, ReplicaRow, StoredEntry, Target};
pub use plan::{DEFAULT_LEASE_TTL, DEFAULT_SHARDS, Held, shard_of};

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// Counters of one replica, for `/metrics` and the `replicas` table.
#[derive(Debug, Default)]
pub struct Stats {
    /// Leases taken whose previous holder's lease had expired (not released).
    pub takeovers: AtomicU64,
    /// Leases this replica held and failed to renew in time.
    pub lost: AtomicU64,
    /// Writes the database refused because the lease's term was stale.
    pub fenced_refusals: AtomicU64,
    /// Ticks that could not reach the database.
    pub failed_ticks: AtomicU64,
}

/// The leases a replica may act on, as its lease loop last published them: read by every
/// check (is this store mine?) and delivery (which outbox rows are mine?).
#[derive(Debug)]
pub struct Leases {
    shards: u32,
    held: RwLock<BTreeMap<u32, Held>>,
    /// Shards given back but not yet released in the database (shard → term): no check
    /// starts on them, but one in flight may still write under their fence.
    releasing: RwLock<BTreeMap<u32, i64>>,
    stats: Arc<Stats>,
}

impl Leases {
    /// No lease at all: for a reader of the fleet's state (the command line), which acts on
    /// no shard.
    pub fn none(shards: u32) -> Arc<Leases> {
        Arc::new(Leases {
            shards,
            held: RwLock::new(BTreeMap::new()),
            releasing: RwLock::new(BTreeMap::new()),
            stats: Arc::default(),
        })
    }

    fn held(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<u32, Held>> {
        self.held.read().unwrap_or_else(|e| e.into_inner())
    }

    pub fn shards(&self) -> u32 {
        self.shards
    }

    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    /// The fence of a store's shard: `Some` exactly when this replica is to probe the store.
    pub fn fence_for_store(&self, store_id: &str, now: Instant) -> Option<Fence> {
        let shard = shard_of(store_id, self.shards);
        self.held()
            .get(&shard)
            .filter(|h| h.trusted_at(now))
            .map(|h| Fence {
                shard,
                term: h.term,
            })
    }

    /// The fence of a store's shard as last renewed, trusted or not: for a write the
    /// database must decide (a rotated token, already spent at the marketplace, is offered
    /// to the database even late; it refuses it when the term moved on).
    pub fn last_fence_for_store(&self, store_id: &str) -> Option<Fence> {
        let shard = shard_of(store_id, self.shards);
        let term = self.held().get(&shard).map(|h| h.term).or_else(|| {
            self.releasing
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .get(&shard)
                .copied()
        })?;
        Some(Fence { shard, term })
    }

    /// The shards this replica may act on at `now`.
    pub fn trusted(&self, now: Instant) -> Vec<u32> {
        self.held()
            .iter()
            .filter(|(_, h)| h.trusted_at(now))
            .map(|(s, _)| *s)
            .collect()
    }

    /// A write under `fence` was refused: counted, and the lease is not used again.
    pub fn refused(&self, fence: Fence) {
        self.stats.fenced_refusals.fetch_add(1, Ordering::Relaxed);
        let mut held = self.held.write().unwrap_or_else(|e| e.into_inner());
        if held.get(&fence.shard).is_some_and(|h| h.term == fence.term) {
            held.remove(&fence.shard);
        }
    }
}

/// What one tick changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TickReport {
    pub acquired: Vec<u32>,
    /// Of `acquired`: shards whose previous holder's lease had expired, with that holder.
    pub took_over: Vec<(u32, String)>,
    pub released: Vec<u32>,
    /// Held shards that could not be renewed (taken over, or expired while unreachable).
    pub lost: Vec<u32>,
}

/// One replica's view of its leases.
#[derive(Debug)]
pub struct Replica {
    db: Db,
    shards: u32,
    ttl: Duration,
    held: BTreeMap<u32, Held>,
    stats: Arc<Stats>,
    leases: Arc<Leases>,
    /// Given back by the last tick, not yet released in the database.
    releasing: Vec<Fence>,
}

impl Replica {
    /// Joins the fleet: brings the schema up to date and announces this replica. Holds no
    /// lease until the first [`Replica::tick`].
    pub async fn join(db: Db, shards: u32, ttl: Duration) -> Result<Replica, DbError> {
        db.migrate(shards).await?;
        db.rejoin().await?;
        db.heartbeat(0, 0).await?;
        let stats = Arc::<Stats>::default();
        Ok(Replica {
            db,
            shards,
            ttl,
            held: BTreeMap::new(),
            leases: Arc::new(Leases {
                shards,
                held: RwLock::new(BTreeMap::new()),
                releasing: RwLock::new(BTreeMap::new()),
                stats: stats.clone(),
            }),
            stats,
            releasing: Vec::new(),
        })
    }

    /// What checks and deliveries read; see [`Replica::publish`].
    pub fn leases(&self) -> Arc<Leases> {
        self.leases.clone()
    }

    /// Makes the leases as of the last tick the ones checks and deliveries act on. Called
    /// after the stores of newly taken shards were read, so that no check of such a store
    /// starts from what this replica knew before the previous holder's checks.
    pub fn publish(&mut self) {
        // A lease a refused write dropped there since the last tick was renewed or lost by
        // this tick (the database decided), so the tick's view replaces it.
        *self.leases.held.write().unwrap_or_else(|e| e.into_inner()) = self.held.clone();
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    pub fn stats(&self) -> Arc<Stats> {
        self.stats.clone()
    }

    pub fn shards(&self) -> u32 {
        self.shards
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Renews what is held, looks at the fleet and takes or gives back shards per
    /// [`plan::plan`]. On a database error the held leases stay as they are: their trust runs
    /// out on its own, and the next tick that gets through learns which survived.
    pub async fn tick(&mut self) -> Result<TickReport, DbError> {
        let report = self.tick_holding_releases().await?;
        self.release_pending().await?;
        Ok(report)
    }

    /// [`Replica::tick`], except that the shards it gives back stay held in the database
    /// (though no longer acted on here) until [`Replica::release_pending`]: the daemon first
    /// lets the checks of those stores that are in flight finish, so that a token one of them
    /// rotates reaches the database before anyone else may take the store.
    pub async fn tick_holding_releases(&mut self) -> Result<TickReport, DbError> {
        let r = self.tick_inner().await;
        if r.is_err() {
            self.stats.failed_ticks.fetch_add(1, Ordering::Relaxed);
        }
        r
    }

    /// Gives back the shards the last tick let go of.
    pub async fn release_pending(&mut self) -> Result<(), DbError> {
        let give = std::mem::take(&mut self.releasing);
        if let Err(e) = self.db.release(&give).await {
            // They expire on their own if the database stays away.
            self.releasing = give;
            return Err(e);
        }
        let mut releasing = self
            .leases
            .releasing
            .write()
            .unwrap_or_else(|e| e.into_inner());
        for f in &give {
            if releasing.get(&f.shard) == Some(&f.term) {
                releasing.remove(&f.shard);
            }
        }
        Ok(())
    }

    async fn tick_inner(&mut self) -> Result<TickReport, DbError> {
        let mut report = TickReport::default();
        let started = Instant::now();
        let trusted_until = started + plan::trust_for(self.ttl);
        self.db
            .heartbeat(
                self.stats.fenced_refusals.load(Ordering::Relaxed),
                self.stats.takeovers.load(Ordering::Relaxed),
            )
            .await?;
        let fences = self.fences_held();
        let renewed = self.db.renew(&fences, self.ttl).await?;
        for f in &fences {
            if renewed.contains(&f.shard) {
                if let Some(h) = self.held.get_mut(&f.shard) {
                    h.trusted_until = trusted_until;
                }
            } else {
                self.held.remove(&f.shard);
                report.lost.push(f.shard);
            }
        }
        self.stats
            .lost
            .fetch_add(report.lost.len() as u64, Ordering::Relaxed);
        let (live, leases) = self.db.view(self.ttl).await?;
        let plan = plan::plan(self.shards, self.db.me(), &live, &leases);
        let give: Vec<Fence> = plan
            .release
            .iter()
            .filter_map(|s| {
                self.held.remove(s).map(|h| Fence {
                    shard: *s,
                    term: h.term,
                })
            })
            .collect();
        // Checks stop using a shard before the database lets anyone else take it.
        if !give.is_empty() {
            let mut published = self.leases.held.write().unwrap_or_else(|e| e.into_inner());
            let mut releasing = self
                .leases
                .releasing
                .write()
                .unwrap_or_else(|e| e.into_inner());
            for f in &give {
                published.remove(&f.shard);
                releasing.insert(f.shard, f.term);
            }
        }
        report.released = give.iter().map(|f| f.shard).collect();
        self.releasing.extend(give);
        for shard in plan.acquire {
            // A lease taken now is trusted from now, not from the start of the tick.
            let at = Instant::now();
            if let Some((term, prev)) = self.db.acquire(shard, self.ttl).await? {
                self.held.insert(
                    shard,
                    Held {
                        term,
                        trusted_until: at + plan::trust_for(self.ttl),
                    },
                );
                report.acquired.push(shard);
                if let Some(prev) = prev {
                    report.took_over.push((shard, prev));
                }
            }
        }
        self.stats
            .takeovers
            .fetch_add(report.took_over.len() as u64, Ordering::Relaxed);
        Ok(report)
    }

    fn fences_held(&self) -> Vec<Fence> {
        self.held
            .iter()
            .map(|(s, h)| Fence {
                shard: *s,
                term: h.term,
            })
            .collect()
    }

    /// The fence to write under for `shard`, while this replica still trusts its lease.
    pub fn fence(&self, shard: u32, now: Instant) -> Option<Fence> {
        self.held
            .get(&shard)
            .filter(|h| h.trusted_at(now))
            .map(|h| Fence {
                shard,
                term: h.term,
            })
    }

    /// The fence of a store's shard: `Some` exactly when this replica is to probe the store.
    pub fn fence_for_store(&self, store_id: &str, now: Instant) -> Option<Fence> {
        self.fence(shard_of(store_id, self.shards), now)
    }

    /// The shards this replica may act on at `now`.
    pub fn trusted(&self, now: Instant) -> Vec<u32> {
        self.held
            .iter()
            .filter(|(_, h)| h.trusted_at(now))
            .map(|(s, _)| *s)
            .collect()
    }

    /// Counts a refusal by the fence (the caller's write was stale) and drops the lease: the
    /// database has already said it is someone else's.
    pub fn refused(&mut self, fence: Fence) {
        self.stats.fenced_refusals.fetch_add(1, Ordering::Relaxed);
        if self
            .held
            .get(&fence.shard)
            .is_some_and(|h| h.term == fence.term)
        {
            self.held.remove(&fence.shard);
        }
    }

    /// A clean stop: gives every lease back at once and removes the heartbeat, so the others
    /// take over on their next tick instead of after the lease expires.
    pub async fn leave(mut self) -> Result<(), DbError> {
        let mut fences = self.fences_held();
        fences.append(&mut self.releasing);
        self.held.clear();
        self.publish();
        self.db.release(&fences).await?;
        self.db.leave().await
    }
}
