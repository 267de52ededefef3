//! Where the daemon's state lives: the SQLite file of one box, or the fleet's PostgreSQL.
//!
//! Both answer the same calls, synchronously, as the daemon has always made them (a SQLite
//! call blocks its thread for a few microseconds). A PostgreSQL call runs on the fleet's own
//! small runtime, from a scoped thread, so it may borrow its arguments and never needs the
//! caller's runtime; the caller's thread waits for one round trip.

use super::*;
use crate::replica::Leases;
use std::sync::Arc;

/// The daemon's state.
pub enum Backend {
    /// One box: `storeguard.db` in `state_dir`.
    Sqlite(State),
    /// Several replicas on one PostgreSQL.
    Fleet(Fleet),
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Backend::Sqlite(s) => s.fmt(f),
            Backend::Fleet(fl) => write!(f, "Fleet({:?})", fl.pg.db()),
        }
    }
}

/// The fleet's state: the rows on PostgreSQL, this replica's leases, and the runtime its
/// connections live on.
pub struct Fleet {
    pg: PgState,
    leases: Arc<Leases>,
    rt: Option<tokio::runtime::Runtime>,
}

impl Fleet {
    /// `pg` must be fresh (its connections are made on the runtime started here).
    pub fn new(pg: PgState, leases: Arc<Leases>) -> Result<Fleet, StateError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("storeguard-db")
            .enable_all()
            .build()
            .map_err(|e| StateError::Corrupt(format!("cannot start the database runtime: {e}")))?;
        Ok(Fleet {
            pg,
            leases,
            rt: Some(rt),
        })
    }

    pub fn leases(&self) -> &Arc<Leases> {
        &self.leases
    }

    pub fn pg(&self) -> &PgState {
        &self.pg
    }

    /// Writes a rotated entry to the database under `fence`, never over a newer generation.
    pub fn push_entry(
        &self,
        fence: crate::replica::Fence,
        entry: &crate::replica::StoredEntry,
    ) -> Result<(), StateError> {
        self.run(async {
            self.pg
                .db()
                .vault_put_fenced(fence, entry, crate::replica::Expect::Older)
                .await
                .map_err(StateError::Fleet)
        })
    }

    /// Runs `fut` to completion on the fleet's runtime and waits for it.
    fn run<T: Send>(
        &self,
        fut: impl std::future::Future<Output = Result<T, StateError>> + Send,
    ) -> Result<T, StateError> {
        let Some(rt) = &self.rt else {
            return Err(StateError::Unavailable(
                "the daemon is shutting down".into(),
            ));
        };
        let handle = rt.handle();
        std::thread::scope(|s| {
            match std::thread::Builder::new()
                .name("storeguard-dbcall".into())
                .spawn_scoped(s, || handle.block_on(fut))
            {
                Ok(t) => t.join().unwrap_or_else(|p| std::panic::resume_unwind(p)),
                Err(e) => Err(StateError::Unavailable(format!(
                    "no thread for a database call ({e}); raise the process limits"
                ))),
            }
        })
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        // May run inside the daemon's runtime, where a blocking shutdown is not allowed.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl Backend {
    /// The fleet's leases (replica mode).
    pub fn leases(&self) -> Option<&Arc<Leases>> {
        match self {
            Backend::Sqlite(_) => None,
            Backend::Fleet(f) => Some(&f.leases),
        }
    }

    pub fn fleet(&self) -> Option<&Fleet> {
        match self {
            Backend::Sqlite(_) => None,
            Backend::Fleet(f) => Some(f),
        }
    }

    pub fn quick_check(&self) -> Result<(), StateError> {
        match self {
            Backend::Sqlite(s) => s.quick_check(),
            Backend::Fleet(_) => Ok(()),
        }
    }

    pub fn load_stores(&self) -> Result<Vec<StoreRow>, StateError> {
        match self {
            Backend::Sqlite(s) => s.load_stores(),
            Backend::Fleet(f) => f.run(f.pg.load_stores()),
        }
    }

    /// The rows of some stores (replica mode: after taking their shard over).
    pub fn load_stores_of(&self, ids: &[String]) -> Result<Vec<StoreRow>, StateError> {
        match self {
            Backend::Sqlite(s) => Ok(s
                .load_stores()?
                .into_iter()
                .filter(|r| ids.contains(&r.store_id))
                .collect()),
            Backend::Fleet(f) => f.run(f.pg.load_stores_of(ids)),
        }
    }

    /// Replica mode: the stores written since `version` by any replica, and the newest
    /// version (one box: nothing).
    pub fn stores_changed_since(&self, version: i64) -> Result<(Vec<StoreRow>, i64), StateError> {
        match self {
            Backend::Sqlite(_) => Ok((Vec::new(), version)),
            Backend::Fleet(f) => f.run(f.pg.stores_changed_since(version)),
        }
    }

    /// Writes finished checks together; returns the positions of those refused because their
    /// fence was stale (never any on one box).
    pub fn record_checks(&self, rows: &[&CheckWrite]) -> Result<Vec<usize>, StateError> {
        match self {
            Backend::Sqlite(s) => s.record_checks(rows).map(|()| Vec::new()),
            Backend::Fleet(f) => {
                let refused = f.run(f.pg.record_checks(rows))?;
                for i in &refused {
                    if let Some(fence) = rows[*i].fence {
                        f.leases.refused(fence);
                    }
                }
                Ok(refused)
            }
        }
    }

    pub fn record_events(&self, routed: &[Routed]) -> Result<(), StateError> {
        match self {
            Backend::Sqlite(s) => s.record_events(routed),
            Backend::Fleet(f) => f.run(f.pg.record_events(routed)),
        }
    }

    pub fn record_notices(&self, routed: &[Routed]) -> Result<(), StateError> {
        match self {
            Backend::Sqlite(s) => s.record_notices(routed),
            Backend::Fleet(f) => f.run(f.pg.record_notices(routed)),
        }
    }

    /// Due rows; in replica mode only those of the shards this replica may act on now.
    pub fn due_outbox_for(
        &self,
        channel: Option<&str>,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<OutboxRow>, StateError> {
        match self {
            Backend::Sqlite(s) => s.due_outbox_for(channel, now, limit),
            Backend::Fleet(f) => {
                let shards = f.leases.trusted(std::time::Instant::now());
                f.run(f.pg.due_outbox_for(channel, &shards, now, limit))
            }
        }
    }

    pub fn pending_channels(&self) -> Result<Vec<(String, DateTime<Utc>)>, StateError> {
        match self {
            Backend::Sqlite(s) => s.pending_channels(),
            Backend::Fleet(f) => {
                let shards = f.leases.trusted(std::time::Instant::now());
                f.run(f.pg.pending_channels(&shards))
            }
        }
    }

    pub fn mark_delivered(&self, seq: i64, now: DateTime<Utc>) -> Result<(), StateError> {
        match self {
            Backend::Sqlite(s) => s.mark_delivered(seq, now),
            Backend::Fleet(f) => f.run(f.pg.mark_delivered(seq, now)),
        }
    }

    pub fn mark_retry(&self, seq: i64, next: DateTime<Utc>, error: &str) -> Result<(), StateError> {
        match self {
            Backend::Sqlite(s) => s.mark_retry(seq, next, error),
            Backend::Fleet(f) => f.run(f.pg.mark_retry(seq, next, error)),
        }
    }

    pub fn mark_gave_up(
        &self,
        seq: i64,
        now: DateTime<Utc>,
        reason: &str,
    ) -> Result<(), StateError> {
        match self {
            Backend::Sqlite(s) => s.mark_gave_up(seq, now, reason),
            Backend::Fleet(f) => f.run(f.pg.mark_gave_up(seq, now, reason)),
        }
    }

    pub fn outbox_depth(&self) -> Result<u64, StateError> {
        match self {
            Backend::Sqlite(s) => s.outbox_depth(),
            Backend::Fleet(f) => f.run(f.pg.outbox_depth()),
        }
    }

    pub fn outbox_rows_for(&self, event_id: &str) -> Result<u64, StateError> {
        match self {
            Backend::Sqlite(s) => s.outbox_rows_for(event_id),
            Backend::Fleet(f) => f.run(f.pg.outbox_rows_for(event_id)),
        }
    }

    pub fn channels_of(&self, event_id: &str) -> Result<Vec<String>, StateError> {
        match self {
            Backend::Sqlite(s) => s.channels_of(event_id),
            Backend::Fleet(f) => f.run(f.pg.channels_of(event_id)),
        }
    }

    pub fn opened_delivered(&self, incident_id: &str, channel: &str) -> Result<bool, StateError> {
        match self {
            Backend::Sqlite(s) => s.opened_delivered(incident_id, channel),
            Backend::Fleet(f) => f.run(f.pg.opened_delivered(incident_id, channel)),
        }
    }

    pub fn incident_open(&self, incident_id: &str) -> Result<bool, StateError> {
        match self {
            Backend::Sqlite(s) => s.incident_open(incident_id),
            Backend::Fleet(f) => f.run(f.pg.incident_open(incident_id)),
        }
    }

    pub fn incidents(&self, store_id: &str, limit: usize) -> Result<Vec<IncidentRow>, StateError> {
        match self {
            Backend::Sqlite(s) => s.incidents(store_id, limit),
            Backend::Fleet(f) => f.run(f.pg.incidents(store_id, limit)),
        }
    }

    pub fn set_silence(&self, store_id: &str, until: DateTime<Utc>) -> Result<(), StateError> {
        match self {
            Backend::Sqlite(s) => s.set_silence(store_id, until),
            Backend::Fleet(f) => f.run(f.pg.set_silence(store_id, until)),
        }
    }

    pub fn silences(
        &self,
        now: DateTime<Utc>,
    ) -> Result<std::collections::HashMap<String, DateTime<Utc>>, StateError> {
        match self {
            Backend::Sqlite(s) => s.silences(now),
            Backend::Fleet(f) => f.run(f.pg.silences(now)),
        }
    }

    pub fn prune(&self, before: DateTime<Utc>) -> Result<usize, StateError> {
        match self {
            Backend::Sqlite(s) => s.prune(before),
            Backend::Fleet(f) => f.run(f.pg.prune(before)),
        }
    }

    /// Folds old login records into runs (one box; the fleet keeps raw records until
    /// `history_retention`).
    pub fn compact(&self, now: DateTime<Utc>) -> Result<Compacted, StateError> {
        match self {
            Backend::Sqlite(s) => s.compact(now),
            Backend::Fleet(_) => Ok(Compacted::default()),
        }
    }

    pub fn checkpoint(&self) -> Result<(), StateError> {
        match self {
            Backend::Sqlite(s) => s.checkpoint(),
            Backend::Fleet(_) => Ok(()),
        }
    }

    pub fn mail_cursor(
        &self,
        mailbox: &str,
        folder: &str,
    ) -> Result<Option<MailCursor>, StateError> {
        match self {
            Backend::Sqlite(s) => s.mail_cursor(mailbox, folder),
            Backend::Fleet(f) => f.run(f.pg.mail_cursor(mailbox, folder)),
        }
    }

    pub fn record_mail(
        &self,
        mailbox: &str,
        folder: &str,
        cursor: MailCursor,
        mails: &[(MailRecord, Option<Routed>)],
    ) -> Result<usize, StateError> {
        match self {
            Backend::Sqlite(s) => s.record_mail(mailbox, folder, cursor, mails),
            Backend::Fleet(f) => f.run(f.pg.record_mail(mailbox, folder, cursor, mails)),
        }
    }

    pub fn mail_records(
        &self,
        store_id: Option<&str>,
        limit: usize,
    ) -> Result<Vec<MailRecord>, StateError> {
        match self {
            Backend::Sqlite(s) => s.mail_records(store_id, limit),
            Backend::Fleet(f) => {
                f.run(f.pg.mail_records_since(store_id, DateTime::<Utc>::MIN_UTC, limit))
            }
        }
    }

    pub fn mail_records_since(
        &self,
        store_id: Option<&str>,
        since: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<MailRecord>, StateError> {
        match self {
            Backend::Sqlite(s) => s.mail_records_since(store_id, since, limit),
            Backend::Fleet(f) => f.run(f.pg.mail_records_since(store_id, since, limit)),
        }
    }

    pub fn recent_checks(
        &self,
        since: DateTime<Utc>,
        per_store: usize,
    ) -> Result<std::collections::HashMap<String, Vec<CheckRow>>, StateError> {
        match self {
            Backend::Sqlite(s) => s.recent_checks(since, per_store),
            Backend::Fleet(f) => f.run(f.pg.recent_checks(since, per_store)),
        }
    }

    /// A store's whole history since `since`, newest first (raw records and, on one box,
    /// compacted runs).
    pub fn timeline(
        &self,
        store_id: &str,
        since: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<HistoryEntry>, StateError> {
        match self {
            Backend::Sqlite(s) => s.timeline(store_id, since, limit),
            Backend::Fleet(f) => Ok(f
                .run(f.pg.history(store_id, since, limit))?
                .into_iter()
                .map(HistoryEntry::Check)
                .collect()),
        }
    }

    pub fn history(
        &self,
        store_id: &str,
        since: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<CheckRow>, StateError> {
        match self {
            Backend::Sqlite(s) => s.history(store_id, since, limit),
            Backend::Fleet(f) => f.run(f.pg.history(store_id, since, limit)),
        }
    }
}
