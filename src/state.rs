//! Durable state in SQLite (WAL): login history, per-store health, incidents and the alert outbox.
//!
//! One transaction per check result writes the history row, the store's new health and the
//! outbox rows for the events it produced, so a crash can never leave an incident opened without
//! its alert queued (or the other way round). Nothing here holds a secret.
//!
//! `synchronous = NORMAL` in WAL mode: a committed transaction survives a killed process; a power
//! cut may lose the last commits, which the next check then produces again.

use crate::event::AlertEvent;
use crate::health::StoreHealth;
use crate::outcome::{Outcome, Status};
use crate::route::Routed;
use chrono::{DateTime, TimeZone, Utc};
use rusqlite::{Connection, OptionalExtension, params};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// State file name inside `state_dir`.
pub const FILE_NAME: &str = "storeguard.db";

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state database {path}: {source}\n  help: {help}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
        help: &'static str,
    },
    #[error("state database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("state database: stored data is damaged ({0})")]
    Corrupt(String),
    #[error(
        "state database {} was written by a newer storeguard (schema {found}; this one knows up to {known})\n  help: run the newer storeguard, or start this one with another [daemon] state_dir",
        path.display()
    )]
    TooNew {
        path: PathBuf,
        found: u32,
        known: u32,
    },
    #[error(
        "state database {} is damaged: {detail}\n  help: stop storeguard and keep a copy of the file; then recover it \
         (`sqlite3 {0} .recover | sqlite3 {0}.recovered`, then move {0}.recovered into its place) or move it aside \
         (`mv {0} {0}.damaged`) to start with empty history (open problems are alerted again)",
        path.display()
    )]
    Damaged { path: PathBuf, detail: String },
}

impl StateError {
    /// Whether the failure is the disk being full (or a file-size limit).
    pub fn is_disk_full(&self) -> bool {
        let e = match self {
            StateError::Sql(e) | StateError::Open { source: e, .. } => e,
            StateError::Corrupt(_) | StateError::Damaged { .. } | StateError::TooNew { .. } => {
                return false;
            }
        };
        matches!(
            e.sqlite_error_code(),
            Some(rusqlite::ErrorCode::DiskFull) | Some(rusqlite::ErrorCode::SystemIoFailure)
        )
    }
}

pub fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub fn from_ms(v: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(v).single().unwrap_or_default()
}

fn status_code(s: Status) -> i64 {
    s.exit_code() as i64
}

fn status_from(code: i64) -> Status {
    match code {
        0 => Status::Ok,
        1 => Status::Warning,
        2 => Status::Critical,
        _ => Status::Unknown,
    }
}

/// One login record.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct CheckRow {
    pub store_id: String,
    pub at: DateTime<Utc>,
    pub status: Status,
    pub findings: Vec<String>,
    pub latency_ms: u64,
    pub egress: Option<String>,
    pub account: Option<String>,
}

/// Raw login records are kept this many days; older ones are folded into runs by
/// [`State::compact`].
pub const RAW_HISTORY_DAYS: i64 = 7;

/// Consecutive checks of one store with the same outcome (status, findings, egress, account)
/// within one UTC day, as [`State::compact`] keeps them once they are older than
/// [`RAW_HISTORY_DAYS`]. Latency survives as min / average / max.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct RunRow {
    pub store_id: String,
    /// The first check of the run.
    pub from: DateTime<Utc>,
    /// The last check of the run.
    pub to: DateTime<Utc>,
    pub checks: u64,
    pub status: Status,
    pub findings: Vec<String>,
    pub egress: Option<String>,
    pub account: Option<String>,
    pub latency_min_ms: u64,
    pub latency_max_ms: u64,
    pub latency_avg_ms: u64,
}

/// One entry of a store's whole history: a raw check (recent) or a compacted run (older).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum HistoryEntry {
    Check(CheckRow),
    Run(RunRow),
}

impl HistoryEntry {
    /// When the entry ends (the check's time, or the last check of a run).
    pub fn at(&self) -> DateTime<Utc> {
        match self {
            HistoryEntry::Check(c) => c.at,
            HistoryEntry::Run(r) => r.to,
        }
    }
}

/// What one [`State::compact`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Compacted {
    /// Raw check rows folded away.
    pub checks: u64,
    /// Run rows written (new or extended).
    pub runs: u64,
}

/// A store's persisted state.
#[derive(Clone, Debug)]
pub struct StoreRow {
    pub store_id: String,
    pub health: StoreHealth,
    pub last_outcome: Option<Outcome>,
    pub backoff_until: Option<DateTime<Utc>>,
    pub backoff_level: u32,
}

/// An outbox row due for delivery.
#[derive(Clone, Debug)]
pub struct OutboxRow {
    pub seq: i64,
    pub channel: String,
    pub event: AlertEvent,
    pub attempts: u32,
    pub created_at: DateTime<Utc>,
    /// Held by a maintenance window or silence until `next_attempt`: decide at release.
    pub held: bool,
}

/// An incident as recorded (open or resolved).
#[derive(Clone, Debug, serde::Serialize)]
pub struct IncidentRow {
    pub incident_id: String,
    pub store_id: String,
    pub finding: String,
    pub severity: String,
    pub opened_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub detail: String,
}

/// Backoff to persist with a check.
pub use crate::health::Backoff;

pub struct State {
    conn: Mutex<Connection>,
    path: PathBuf,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "State({})", self.path.display())
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS stores (
    id INTEGER PRIMARY KEY,
    store_id TEXT NOT NULL UNIQUE,
    health TEXT NOT NULL DEFAULT '{}',
    last_outcome TEXT,
    backoff_until_ms INTEGER,
    backoff_level INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS checks (
    store INTEGER NOT NULL,
    at_ms INTEGER NOT NULL,
    status INTEGER NOT NULL,
    findings TEXT,
    latency_ms INTEGER NOT NULL,
    egress TEXT,
    account TEXT,
    PRIMARY KEY (store, at_ms)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS incidents (
    incident_id TEXT PRIMARY KEY,
    store_id TEXT NOT NULL,
    finding TEXT NOT NULL,
    severity TEXT NOT NULL,
    opened_at_ms INTEGER NOT NULL,
    resolved_at_ms INTEGER,
    detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS incidents_store ON incidents (store_id, opened_at_ms);
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL,
    channel TEXT NOT NULL,
    store_id TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    next_attempt_ms INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    delivered_at_ms INTEGER,
    gave_up_at_ms INTEGER,
    last_error TEXT,
    held INTEGER NOT NULL DEFAULT 0,
    UNIQUE (event_id, channel)
);
CREATE TABLE IF NOT EXISTS silences (
    store_id TEXT PRIMARY KEY,
    until_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (next_attempt_ms)
    WHERE delivered_at_ms IS NULL AND gave_up_at_ms IS NULL;
-- `due_outbox` asks, for every candidate row, whether an older row of the same (channel, store)
-- is still pending: without this index that is a scan of the whole outbox per candidate.
CREATE INDEX IF NOT EXISTS outbox_pending_store ON outbox (channel, store_id, seq)
    WHERE delivered_at_ms IS NULL AND gave_up_at_ms IS NULL;
-- Compacted login history (see `State::compact`): consecutive checks of one store with the same
-- outcome within one UTC day, folded into one row.
CREATE TABLE IF NOT EXISTS check_runs (
    store INTEGER NOT NULL,
    from_ms INTEGER NOT NULL,
    to_ms INTEGER NOT NULL,
    checks INTEGER NOT NULL,
    status INTEGER NOT NULL,
    findings TEXT,
    egress TEXT,
    account TEXT,
    latency_min_ms INTEGER NOT NULL,
    latency_max_ms INTEGER NOT NULL,
    latency_sum_ms INTEGER NOT NULL,
    PRIMARY KEY (store, from_ms)
) WITHOUT ROWID;
INSERT OR IGNORE INTO meta (key, value) VALUES ('schema', '1');
";

/// The schema version this build writes. A file of an older version is migrated forward at
/// open (each step in [`MIGRATIONS`], in one transaction); a newer one is refused.
pub const SCHEMA_VERSION: u32 = 1;

/// `MIGRATIONS[n]` takes a file from version `n + 1` to `n + 2`.
const MIGRATIONS: &[&str] = &[];

impl State {
    /// Opens (creating if needed) the state database in `dir`.
    pub fn open(dir: &Path) -> Result<State, StateError> {
        let path = dir.join(FILE_NAME);
        let open_err = |source, help| StateError::Open {
            path: path.clone(),
            source,
            help,
        };
        if let Err(e) = std::fs::create_dir_all(dir) {
            return Err(open_err(
                rusqlite::Error::InvalidPath(dir.to_path_buf()),
                if e.kind() == std::io::ErrorKind::PermissionDenied {
                    "the state directory is not writable by this user; fix its owner or set [daemon] state_dir"
                } else {
                    "create the state directory or set [daemon] state_dir"
                },
            ));
        }
        let mut conn = Connection::open(&path)
            .map_err(|e| open_err(e, "check that state_dir is writable and not on a full disk"))?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.set_prepared_statement_cache_capacity(64);
        // A file that is not a database, or whose schema pages are damaged, fails here.
        let damaged = |e: rusqlite::Error| match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase) => {
                StateError::Damaged {
                    path: path.clone(),
                    detail: crate::outcome::sanitize(&e.to_string(), 300),
                }
            }
            _ => open_err(
                e,
                "the state file may be damaged; move it aside to start fresh",
            ),
        };
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(damaged)?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        let found = schema_version(&conn).map_err(damaged)?;
        if let Some(found) = found.filter(|v| *v > SCHEMA_VERSION) {
            return Err(StateError::TooNew {
                path,
                found,
                known: SCHEMA_VERSION,
            });
        }
        conn.execute_batch(SCHEMA).map_err(damaged)?;
        if let Some(found) = found.filter(|v| *v < SCHEMA_VERSION) {
            migrate(&mut conn, found)?;
        }
        Ok(State {
            conn: Mutex::new(conn),
            path,
        })
    }

    /// Opens an existing database read-only (for `status`/`history` while the daemon runs).
    pub fn open_read_only(dir: &Path) -> Result<State, StateError> {
        let path = dir.join(FILE_NAME);
        let conn = Connection::open_with_flags(
            &path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|source| StateError::Open {
            path: path.clone(),
            source,
            help: "no state yet: start the daemon (storeguard run) or run a check first",
        })?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        Ok(State {
            conn: Mutex::new(conn),
            path,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every store's persisted state.
    pub fn load_stores(&self) -> Result<Vec<StoreRow>, StateError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT store_id, health, last_outcome, backoff_until_ms, backoff_level FROM stores ORDER BY store_id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Option<String>>(2)?,
                r.get::<_, Option<i64>>(3)?,
                r.get::<_, i64>(4)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (store_id, health, outcome, until, level) = row?;
            let health: StoreHealth = serde_json::from_str(&health)
                .map_err(|e| StateError::Corrupt(format!("health of {store_id}: {e}")))?;
            let last_outcome = match outcome {
                Some(o) => Some(serde_json::from_str(&o).map_err(|e| {
                    StateError::Corrupt(format!("last outcome of {store_id}: {e}"))
                })?),
                None => None,
            };
            out.push(StoreRow {
                store_id,
                health,
                last_outcome,
                backoff_until: until.map(from_ms),
                backoff_level: level as u32,
            });
        }
        Ok(out)
    }

    /// Records one check: history row, store health, incidents and outbox rows, atomically.
    /// `routed` pairs each event with the channels it goes to; `others` are health rows of other
    /// stores (or a grouped incident) that change in the same transaction.
    pub fn record_check(
        &self,
        outcome: &Outcome,
        health: &StoreHealth,
        routed: &[Routed],
        backoff: Backoff,
        others: &[(&str, &StoreHealth)],
    ) -> Result<(), StateError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        for (id, g) in others {
            let json = serde_json::to_string(g).map_err(|e| StateError::Corrupt(e.to_string()))?;
            exec(
                &tx,
                "INSERT INTO stores (store_id, health) VALUES (?1, ?2)
                 ON CONFLICT (store_id) DO UPDATE SET health = ?2",
                params![id, json],
            )?;
        }
        let health_json =
            serde_json::to_string(health).map_err(|e| StateError::Corrupt(e.to_string()))?;
        let outcome_json =
            serde_json::to_string(outcome).map_err(|e| StateError::Corrupt(e.to_string()))?;
        exec(
            &tx,
            "INSERT INTO stores (store_id, health, last_outcome, backoff_until_ms, backoff_level)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (store_id) DO UPDATE SET health = ?2, last_outcome = ?3,
                 backoff_until_ms = ?4, backoff_level = ?5",
            params![
                outcome.store_id,
                health_json,
                outcome_json,
                backoff.until.map(ms),
                backoff.level as i64
            ],
        )?;
        let store_rowid: i64 = tx
            .prepare_cached("SELECT id FROM stores WHERE store_id = ?1")?
            .query_row([&outcome.store_id], |r| r.get(0))?;
        let findings = if outcome.findings.is_empty() {
            None
        } else {
            Some(
                outcome
                    .findings
                    .iter()
                    .map(|f| f.kind.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
            )
        };
        exec(
            &tx,
            "INSERT OR REPLACE INTO checks (store, at_ms, status, findings, latency_ms, egress, account)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                store_rowid,
                ms(outcome.checked_at),
                status_code(outcome.status),
                findings,
                outcome.facts.latency_ms as i64,
                outcome.facts.egress,
                outcome.facts.account
            ],
        )?;
        for r in routed {
            record_event(&tx, r)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Queues events that do not come from a check (grouped incidents, daemon faults).
    pub fn record_events(&self, routed: &[Routed]) -> Result<(), StateError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        for r in routed {
            record_event(&tx, r)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Undelivered outbox rows whose time has come, oldest first, at most one per
    /// (channel, store) behind an older pending row (delivery keeps per-store order).
    pub fn due_outbox(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<OutboxRow>, StateError> {
        self.due_outbox_for(None, now, limit)
    }

    /// Rows due for one channel (`None`: every channel), oldest first, never a row while an
    /// older one of the same (channel, store) is still pending.
    pub fn due_outbox_for(
        &self,
        channel: Option<&str>,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<OutboxRow>, StateError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT o.seq, o.channel, o.payload, o.attempts, o.created_at_ms, o.held FROM outbox o
             WHERE o.delivered_at_ms IS NULL AND o.gave_up_at_ms IS NULL AND o.next_attempt_ms <= ?1
               AND NOT EXISTS (SELECT 1 FROM outbox p
                   WHERE p.channel = o.channel AND p.store_id = o.store_id AND p.seq < o.seq
                     AND p.delivered_at_ms IS NULL AND p.gave_up_at_ms IS NULL)
               AND (?3 IS NULL OR o.channel = ?3)
             ORDER BY o.seq LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![ms(now), limit as i64, channel], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, i64>(4)?,
                r.get::<_, i64>(5)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (seq, channel, payload, attempts, created, held) = row?;
            let event: AlertEvent = serde_json::from_str(&payload)
                .map_err(|e| StateError::Corrupt(format!("outbox row {seq}: {e}")))?;
            out.push(OutboxRow {
                seq,
                channel,
                event,
                attempts: attempts as u32,
                created_at: from_ms(created),
                held: held != 0,
            });
        }
        Ok(out)
    }

    /// The earliest time a pending outbox row becomes due.
    pub fn next_outbox_due(&self) -> Result<Option<DateTime<Utc>>, StateError> {
        let conn = self.conn();
        let v: Option<i64> = conn.query_row(
            "SELECT MIN(next_attempt_ms) FROM outbox WHERE delivered_at_ms IS NULL AND gave_up_at_ms IS NULL",
            [],
            |r| r.get(0),
        )?;
        Ok(v.map(from_ms))
    }

    /// Each channel with pending rows, and when its earliest one is due.
    pub fn pending_channels(&self) -> Result<Vec<(String, DateTime<Utc>)>, StateError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT channel, MIN(next_attempt_ms) FROM outbox
             WHERE delivered_at_ms IS NULL AND gave_up_at_ms IS NULL GROUP BY channel",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
        let mut out = Vec::new();
        for row in rows {
            let (channel, due) = row?;
            out.push((channel, from_ms(due)));
        }
        Ok(out)
    }

    pub fn mark_delivered(&self, seq: i64, now: DateTime<Utc>) -> Result<(), StateError> {
        self.conn().execute(
            "UPDATE outbox SET delivered_at_ms = ?2, attempts = attempts + 1, last_error = NULL WHERE seq = ?1",
            params![seq, ms(now)],
        )?;
        Ok(())
    }

    pub fn mark_retry(&self, seq: i64, next: DateTime<Utc>, error: &str) -> Result<(), StateError> {
        self.conn().execute(
            "UPDATE outbox SET next_attempt_ms = ?2, attempts = attempts + 1, last_error = ?3 WHERE seq = ?1",
            params![seq, ms(next), error],
        )?;
        Ok(())
    }

    pub fn mark_gave_up(
        &self,
        seq: i64,
        now: DateTime<Utc>,
        reason: &str,
    ) -> Result<(), StateError> {
        self.conn().execute(
            "UPDATE outbox SET gave_up_at_ms = ?2, attempts = attempts + 1, last_error = ?3 WHERE seq = ?1",
            params![seq, ms(now), reason],
        )?;
        Ok(())
    }

    /// Pending (undelivered, not given up) outbox rows.
    pub fn outbox_depth(&self) -> Result<u64, StateError> {
        let n: i64 = self.conn().query_row(
            "SELECT COUNT(*) FROM outbox WHERE delivered_at_ms IS NULL AND gave_up_at_ms IS NULL",
            [],
            |r| r.get(0),
        )?;
        Ok(n as u64)
    }

    /// A store's login records since `since`, newest first.
    pub fn history(
        &self,
        store_id: &str,
        since: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<CheckRow>, StateError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT c.at_ms, c.status, c.findings, c.latency_ms, c.egress, c.account
             FROM checks c JOIN stores s ON s.id = c.store
             WHERE s.store_id = ?1 AND c.at_ms >= ?2 ORDER BY c.at_ms DESC LIMIT ?3",
        )?;
        let rows = stmt.query_map(params![store_id, ms(since), limit as i64], |r| {
            Ok(CheckRow {
                store_id: store_id.to_string(),
                at: from_ms(r.get(0)?),
                status: status_from(r.get(1)?),
                findings: r
                    .get::<_, Option<String>>(2)?
                    .map(|s| s.split(',').map(str::to_string).collect())
                    .unwrap_or_default(),
                latency_ms: r.get::<_, i64>(3)? as u64,
                egress: r.get(4)?,
                account: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Imports login records as they are (one transaction); for tools, tests and benchmarks
    /// that build a history without running checks. Rows of unknown stores create the store.
    pub fn import_checks(&self, rows: &[CheckRow]) -> Result<usize, StateError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let mut ids: std::collections::HashMap<&str, i64> = std::collections::HashMap::new();
        {
            let mut ins = tx.prepare_cached(
                "INSERT OR REPLACE INTO checks (store, at_ms, status, findings, latency_ms, egress, account)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            for r in rows {
                let store = match ids.get(r.store_id.as_str()) {
                    Some(id) => *id,
                    None => {
                        let id = store_rowid(&tx, &r.store_id)?;
                        ids.insert(&r.store_id, id);
                        id
                    }
                };
                ins.execute(params![
                    store,
                    ms(r.at),
                    status_code(r.status),
                    join_findings(&r.findings),
                    r.latency_ms.min(i64::MAX as u64) as i64,
                    r.egress,
                    r.account
                ])?;
            }
        }
        tx.commit()?;
        Ok(rows.len())
    }

    /// Compaction for housekeeping: raw login records older than [`RAW_HISTORY_DAYS`] before
    /// `now` are folded into runs (see [`State::compact_before`]).
    pub fn compact(&self, now: DateTime<Utc>) -> Result<Compacted, StateError> {
        self.compact_before(now - chrono::Duration::days(RAW_HISTORY_DAYS))
    }

    /// Folds every raw login record older than `cutoff` into runs: consecutive checks of one
    /// store with the same status, findings, egress and account, never across a UTC day
    /// boundary (so each store keeps at least one row a day, with its check count and latency
    /// min / avg / max). A run is extended across calls, so compacting hourly gives the same
    /// rows as compacting once. Idempotent; one transaction.
    ///
    /// Size: raw rows grow with checks (10,000 stores every 10 min = 1.44 M rows a day); runs grow
    /// with stores × days + outcome changes (≈ 10,000 a day when nothing happens).
    pub fn compact_before(&self, cutoff: DateTime<Utc>) -> Result<Compacted, StateError> {
        const DAY_MS: i64 = 86_400_000;
        let cutoff = ms(cutoff);
        let mut done = Compacted::default();
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        {
            let stores: Vec<i64> = {
                let mut st = tx.prepare("SELECT id FROM stores ORDER BY id")?;
                st.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?
            };
            let mut old = tx.prepare_cached(
                "SELECT at_ms, status, findings, latency_ms, egress, account FROM checks
                 WHERE store = ?1 AND at_ms < ?2 ORDER BY at_ms",
            )?;
            let mut last = tx.prepare_cached(
                "SELECT from_ms, to_ms, checks, status, findings, egress, account,
                        latency_min_ms, latency_max_ms, latency_sum_ms
                 FROM check_runs WHERE store = ?1 ORDER BY from_ms DESC LIMIT 1",
            )?;
            let mut put = tx.prepare_cached(
                "INSERT OR REPLACE INTO check_runs (store, from_ms, to_ms, checks, status, findings,
                     egress, account, latency_min_ms, latency_max_ms, latency_sum_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )?;
            let mut del =
                tx.prepare_cached("DELETE FROM checks WHERE store = ?1 AND at_ms < ?2")?;
            for store in stores {
                let rows: Vec<(i64, RunKey, i64)> = old
                    .query_map(params![store, cutoff], |r| {
                        Ok((
                            r.get::<_, i64>(0)?,
                            RunKey {
                                status: r.get(1)?,
                                findings: r.get(2)?,
                                egress: r.get(4)?,
                                account: r.get(5)?,
                            },
                            r.get::<_, i64>(3)?,
                        ))
                    })?
                    .collect::<Result<_, _>>()?;
                if rows.is_empty() {
                    continue;
                }
                let mut cur: Option<(Run, bool)> = last
                    .query_row([store], |r| {
                        Ok(Run {
                            from: r.get(0)?,
                            to: r.get(1)?,
                            checks: r.get(2)?,
                            key: RunKey {
                                status: r.get(3)?,
                                findings: r.get(4)?,
                                egress: r.get(5)?,
                                account: r.get(6)?,
                            },
                            min: r.get(7)?,
                            max: r.get(8)?,
                            sum: r.get(9)?,
                        })
                    })
                    .optional()?
                    .map(|run| (run, false));
                let mut write = |run: &Run| -> Result<(), StateError> {
                    put.execute(params![
                        store,
                        run.from,
                        run.to,
                        run.checks,
                        run.key.status,
                        run.key.findings,
                        run.key.egress,
                        run.key.account,
                        run.min,
                        run.max,
                        run.sum
                    ])?;
                    done.runs += 1;
                    Ok(())
                };
                for (at, key, latency) in rows {
                    done.checks += 1;
                    match cur.as_mut() {
                        Some((run, changed))
                            if run.key == key
                                && at > run.to
                                && at.div_euclid(DAY_MS) == run.to.div_euclid(DAY_MS) =>
                        {
                            run.to = at;
                            run.checks += 1;
                            run.min = run.min.min(latency);
                            run.max = run.max.max(latency);
                            run.sum = run.sum.saturating_add(latency);
                            *changed = true;
                        }
                        _ => {
                            if let Some((run, true)) = &cur {
                                write(run)?;
                            }
                            cur = Some((
                                Run {
                                    from: at,
                                    to: at,
                                    checks: 1,
                                    key,
                                    min: latency,
                                    max: latency,
                                    sum: latency,
                                },
                                true,
                            ));
                        }
                    }
                }
                if let Some((run, true)) = &cur {
                    write(run)?;
                }
                del.execute(params![store, cutoff])?;
            }
        }
        tx.commit()?;
        Ok(done)
    }

    /// A store's compacted runs that end at or after `since`, newest first.
    pub fn runs(
        &self,
        store_id: &str,
        since: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<RunRow>, StateError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT r.from_ms, r.to_ms, r.checks, r.status, r.findings, r.egress, r.account,
                    r.latency_min_ms, r.latency_max_ms, r.latency_sum_ms
             FROM check_runs r JOIN stores s ON s.id = r.store
             WHERE s.store_id = ?1 AND r.to_ms >= ?2 ORDER BY r.from_ms DESC LIMIT ?3",
        )?;
        let rows = stmt.query_map(params![store_id, ms(since), limit as i64], |r| {
            let checks = r.get::<_, i64>(2)?.max(1);
            Ok(RunRow {
                store_id: store_id.to_string(),
                from: from_ms(r.get(0)?),
                to: from_ms(r.get(1)?),
                checks: checks as u64,
                status: status_from(r.get(3)?),
                findings: split_findings(r.get(4)?),
                egress: r.get(5)?,
                account: r.get(6)?,
                latency_min_ms: r.get::<_, i64>(7)?.max(0) as u64,
                latency_max_ms: r.get::<_, i64>(8)?.max(0) as u64,
                latency_avg_ms: (r.get::<_, i64>(9)?.max(0) / checks) as u64,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// A store's whole history since `since`, newest first: the raw records of the last
    /// [`RAW_HISTORY_DAYS`], then the compacted runs before them.
    pub fn timeline(
        &self,
        store_id: &str,
        since: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<HistoryEntry>, StateError> {
        let mut out: Vec<HistoryEntry> = self
            .history(store_id, since, limit)?
            .into_iter()
            .map(HistoryEntry::Check)
            .collect();
        if out.len() < limit {
            let runs = self.runs(store_id, since, limit - out.len())?;
            out.extend(runs.into_iter().map(HistoryEntry::Run));
        }
        // Raw rows are newer than runs, except after a clock step back: keep newest first.
        out.sort_by_key(|e| std::cmp::Reverse(e.at()));
        Ok(out)
    }

    /// `(raw login records, compacted runs)` in the file.
    pub fn history_counts(&self) -> Result<(u64, u64), StateError> {
        let conn = self.conn();
        let raw: i64 = conn.query_row("SELECT COUNT(*) FROM checks", [], |r| r.get(0))?;
        let runs: i64 = conn.query_row("SELECT COUNT(*) FROM check_runs", [], |r| r.get(0))?;
        Ok((raw as u64, runs as u64))
    }

    /// Moves the write-ahead log into the database file and truncates it.
    pub fn checkpoint(&self) -> Result<(), StateError> {
        self.conn()
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        Ok(())
    }

    /// The newest `per_store` login records of every store since `since`, newest first, in one
    /// query (the status page's strips). Each store costs one index seek for its cut-off time
    /// and one range scan, however long the history is.
    pub fn recent_checks(
        &self,
        since: DateTime<Utc>,
        per_store: usize,
    ) -> Result<std::collections::HashMap<String, Vec<CheckRow>>, StateError> {
        let mut out: std::collections::HashMap<String, Vec<CheckRow>> =
            std::collections::HashMap::new();
        if per_store == 0 {
            return Ok(out);
        }
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "WITH cut AS MATERIALIZED (
                 SELECT s.id AS id, s.store_id AS store_id,
                        MAX(?1, COALESCE((SELECT c2.at_ms FROM checks c2 WHERE c2.store = s.id
                                          ORDER BY c2.at_ms DESC LIMIT 1 OFFSET ?2), ?1)) AS from_ms
                 FROM stores s)
             SELECT cut.store_id, c.at_ms, c.status, c.findings, c.latency_ms, c.egress, c.account
             FROM cut JOIN checks c ON c.store = cut.id AND c.at_ms >= cut.from_ms
             ORDER BY cut.store_id, c.at_ms DESC",
        )?;
        let rows = stmt.query_map(params![ms(since), (per_store - 1) as i64], |r| {
            Ok(CheckRow {
                store_id: r.get(0)?,
                at: from_ms(r.get(1)?),
                status: status_from(r.get(2)?),
                findings: r
                    .get::<_, Option<String>>(3)?
                    .map(|s| s.split(',').map(str::to_string).collect())
                    .unwrap_or_default(),
                latency_ms: r.get::<_, i64>(4)? as u64,
                egress: r.get(5)?,
                account: r.get(6)?,
            })
        })?;
        for row in rows {
            let row = row?;
            out.entry(row.store_id.clone()).or_default().push(row);
        }
        Ok(out)
    }

    /// A store's incidents, newest first.
    pub fn incidents(&self, store_id: &str, limit: usize) -> Result<Vec<IncidentRow>, StateError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT incident_id, store_id, finding, severity, opened_at_ms, resolved_at_ms, detail
             FROM incidents WHERE store_id = ?1 ORDER BY opened_at_ms DESC LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![store_id, limit as i64], |r| {
            Ok(IncidentRow {
                incident_id: r.get(0)?,
                store_id: r.get(1)?,
                finding: r.get(2)?,
                severity: r.get(3)?,
                opened_at: from_ms(r.get(4)?),
                resolved_at: r.get::<_, Option<i64>>(5)?.map(from_ms),
                detail: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Deletes login records older than `before`, and delivered/abandoned outbox rows older
    /// than `before`. Returns how many history rows went.
    pub fn prune(&self, before: DateTime<Utc>) -> Result<usize, StateError> {
        let conn = self.conn();
        let n = conn.execute("DELETE FROM checks WHERE at_ms < ?1", [ms(before)])?;
        conn.execute("DELETE FROM check_runs WHERE to_ms < ?1", [ms(before)])?;
        conn.execute(
            "DELETE FROM outbox WHERE (delivered_at_ms IS NOT NULL OR gave_up_at_ms IS NOT NULL) AND created_at_ms < ?1",
            [ms(before)],
        )?;
        conn.execute(
            "DELETE FROM incidents WHERE resolved_at_ms IS NOT NULL AND resolved_at_ms < ?1",
            [ms(before)],
        )?;
        Ok(n)
    }

    /// Count of every outbox row with this event id (tests and diagnostics).
    pub fn outbox_rows_for(&self, event_id: &str) -> Result<u64, StateError> {
        let n: i64 = self.conn().query_row(
            "SELECT COUNT(*) FROM outbox WHERE event_id = ?1",
            [event_id],
            |r| r.get(0),
        )?;
        Ok(n as u64)
    }

    /// The channels an event was queued for.
    pub fn channels_of(&self, event_id: &str) -> Result<Vec<String>, StateError> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare_cached("SELECT channel FROM outbox WHERE event_id = ?1 ORDER BY seq")?;
        let rows = stmt.query_map([event_id], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Whether an incident is still open.
    pub fn incident_open(&self, incident_id: &str) -> Result<bool, StateError> {
        let v: Option<Option<i64>> = self
            .conn()
            .query_row(
                "SELECT resolved_at_ms FROM incidents WHERE incident_id = ?1",
                [incident_id],
                |r| r.get(0),
            )
            .optional()?;
        Ok(matches!(v, Some(None)))
    }

    /// Whether the incident's `opened` alert reached `channel`.
    pub fn opened_delivered(&self, incident_id: &str, channel: &str) -> Result<bool, StateError> {
        let n: i64 = self.conn().query_row(
            "SELECT COUNT(*) FROM outbox WHERE channel = ?2 AND delivered_at_ms IS NOT NULL
               AND json_extract(payload, '$.incident_id') = ?1 AND json_extract(payload, '$.event') = 'opened'",
            params![incident_id, channel],
            |r| r.get(0),
        )?;
        Ok(n > 0)
    }

    /// Silences a store's notifications until `until` (`storeguard silence`).
    pub fn set_silence(&self, store_id: &str, until: DateTime<Utc>) -> Result<(), StateError> {
        self.conn().execute(
            "INSERT INTO silences (store_id, until_ms) VALUES (?1, ?2)
             ON CONFLICT (store_id) DO UPDATE SET until_ms = ?2",
            params![store_id, ms(until)],
        )?;
        Ok(())
    }

    /// Silences still in force at `now`.
    pub fn silences(
        &self,
        now: DateTime<Utc>,
    ) -> Result<std::collections::HashMap<String, DateTime<Utc>>, StateError> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare_cached("SELECT store_id, until_ms FROM silences WHERE until_ms > ?1")?;
        let rows = stmt.query_map([ms(now)], |r| {
            Ok((r.get::<_, String>(0)?, from_ms(r.get(1)?)))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// `PRAGMA quick_check` (every page and record, no index cross-check): damage anywhere in
    /// the file is found at start, not when a check first reads the damaged row.
    pub fn quick_check(&self) -> Result<(), StateError> {
        let damaged = |detail: String| StateError::Damaged {
            path: self.path.clone(),
            detail: crate::outcome::sanitize(&detail, 300),
        };
        let conn = self.conn();
        let mut stmt = conn
            .prepare("PRAGMA quick_check(5)")
            .map_err(|e| damaged(e.to_string()))?;
        let rows: Vec<String> = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .and_then(|rows| rows.collect())
            .map_err(|e| damaged(e.to_string()))?;
        if rows.len() == 1 && rows[0] == "ok" {
            Ok(())
        } else {
            Err(damaged(rows.join("; ")))
        }
    }

    /// `PRAGMA integrity_check`: "ok" when the file is sound.
    pub fn integrity_check(&self) -> Result<String, StateError> {
        Ok(self
            .conn()
            .query_row("PRAGMA integrity_check", [], |r| r.get::<_, String>(0))?)
    }

    /// When the store was last checked, from the history.
    pub fn last_check(&self, store_id: &str) -> Result<Option<DateTime<Utc>>, StateError> {
        let v: Option<i64> = self
            .conn()
            .query_row(
                "SELECT MAX(t) FROM (
                     SELECT MAX(c.at_ms) AS t FROM checks c JOIN stores s ON s.id = c.store WHERE s.store_id = ?1
                     UNION ALL
                     SELECT MAX(r.to_ms) FROM check_runs r JOIN stores s ON s.id = r.store WHERE s.store_id = ?1)",
                [store_id],
                |r| r.get(0),
            )
            .optional()?
            .flatten();
        Ok(v.map(from_ms))
    }
}

/// What makes two consecutive checks one run.
#[derive(PartialEq)]
struct RunKey {
    status: i64,
    findings: Option<String>,
    egress: Option<String>,
    account: Option<String>,
}

/// A run being built by `compact_before` (times in ms).
struct Run {
    from: i64,
    to: i64,
    checks: i64,
    key: RunKey,
    min: i64,
    max: i64,
    sum: i64,
}

fn join_findings(findings: &[String]) -> Option<String> {
    (!findings.is_empty()).then(|| findings.join(","))
}

fn split_findings(v: Option<String>) -> Vec<String> {
    v.map(|s| s.split(',').map(str::to_string).collect())
        .unwrap_or_default()
}

/// The stores table's row id for `store_id`, creating the row if needed.
fn store_rowid(tx: &rusqlite::Transaction<'_>, store_id: &str) -> Result<i64, StateError> {
    tx.execute(
        "INSERT OR IGNORE INTO stores (store_id) VALUES (?1)",
        [store_id],
    )?;
    Ok(tx.query_row(
        "SELECT id FROM stores WHERE store_id = ?1",
        [store_id],
        |r| r.get(0),
    )?)
}

/// The file's schema version; `None` for a new, empty file.
fn schema_version(conn: &Connection) -> rusqlite::Result<Option<u32>> {
    let has_meta: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta')",
        [],
        |r| r.get(0),
    )?;
    if !has_meta {
        return Ok(None);
    }
    let v: Option<String> = conn
        .query_row("SELECT value FROM meta WHERE key = 'schema'", [], |r| {
            r.get(0)
        })
        .optional()?;
    // A version that is not a number is not one this build wrote: treat it as newer.
    Ok(v.map(|v| v.trim().parse().unwrap_or(u32::MAX)))
}

/// Runs the migrations from version `from` to [`SCHEMA_VERSION`], all or nothing.
fn migrate(conn: &mut Connection, from: u32) -> Result<(), StateError> {
    let tx = conn.transaction()?;
    for (i, step) in MIGRATIONS
        .iter()
        .enumerate()
        .skip(from.saturating_sub(1) as usize)
    {
        tx.execute_batch(step)?;
        tracing::info!(to = i + 2, "state database migrated");
    }
    tx.execute(
        "UPDATE meta SET value = ?1 WHERE key = 'schema'",
        [SCHEMA_VERSION.to_string()],
    )?;
    tx.commit()?;
    Ok(())
}

/// `execute` through the connection's statement cache: parsing these statements costs more
/// than running them, and they run on every check.
fn exec(
    tx: &rusqlite::Transaction<'_>,
    sql: &str,
    p: impl rusqlite::Params,
) -> rusqlite::Result<usize> {
    tx.prepare_cached(sql)?.execute(p)
}

fn record_event(tx: &rusqlite::Transaction<'_>, routed: &Routed) -> Result<(), StateError> {
    let event = &routed.event;
    use crate::event::EventKind;
    match event.event {
        EventKind::Opened => {
            exec(
                tx,
                "INSERT OR IGNORE INTO incidents (incident_id, store_id, finding, severity, opened_at_ms, detail)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    event.incident_id,
                    event.subject.key(),
                    event.finding.as_str(),
                    event.severity.as_str(),
                    ms(event.opened_at),
                    event.detail
                ],
            )?;
        }
        EventKind::Resolved => {
            exec(
                tx,
                "UPDATE incidents SET resolved_at_ms = ?2 WHERE incident_id = ?1",
                params![event.incident_id, ms(event.created_at)],
            )?;
        }
        EventKind::Reminder => {
            exec(
                tx,
                "UPDATE incidents SET detail = ?2 WHERE incident_id = ?1",
                params![event.incident_id, event.detail],
            )?;
        }
    }
    let payload = serde_json::to_string(event).map_err(|e| StateError::Corrupt(e.to_string()))?;
    let (next, held) = match routed.hold_until {
        Some(t) => (ms(t), 1),
        None => (ms(event.created_at), 0),
    };
    for channel in &routed.channels {
        exec(
            tx,
            "INSERT OR IGNORE INTO outbox (event_id, channel, store_id, payload, created_at_ms, next_attempt_ms, held)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![event.event_id, channel, event.subject.key(), payload, ms(event.created_at), next, held],
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::{Rules, StoreRef, apply};
    use crate::model::Marketplace;
    use crate::outcome::{Facts, Finding, FindingKind};
    use std::time::Duration;

    fn rules() -> Rules {
        Rules {
            failure_threshold: 1,
            success_threshold: 1,
            remind_every: Duration::from_secs(3600),
            expiry_warning: vec![],
        }
    }

    #[test]
    fn a_check_writes_history_health_and_outbox_together() {
        let dir = tempfile::tempdir().unwrap();
        let st = State::open(dir.path()).unwrap();
        let now = Utc::now();
        let store = StoreRef {
            id: "s1",
            name: "S1",
            marketplace: Marketplace::Ozon,
        };
        let mut h = StoreHealth::default();
        let o = Outcome::new(
            "s1",
            Marketplace::Ozon,
            now,
            vec![Finding::new(FindingKind::AuthRejected, "refused")],
            Facts::default(),
        );
        let events = apply(&mut h, &store, &o, &rules(), now);
        let routed: Vec<_> = events
            .into_iter()
            .map(|event| Routed {
                event,
                channels: vec!["hook".to_string()],
                hold_until: None,
            })
            .collect();
        st.record_check(&o, &h, &routed, Backoff::default(), &[])
            .unwrap();
        // Recording the same events again (a retried transaction) adds nothing.
        st.record_check(&o, &h, &routed, Backoff::default(), &[])
            .unwrap();
        assert_eq!(st.outbox_depth().unwrap(), 1);
        let due = st.due_outbox(now, 10).unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].event.finding, FindingKind::AuthRejected);
        st.mark_delivered(due[0].seq, now).unwrap();
        assert_eq!(st.outbox_depth().unwrap(), 0);
        let stores = st.load_stores().unwrap();
        assert_eq!(stores[0].health, h);
        let hist = st
            .history("s1", now - chrono::Duration::hours(1), 10)
            .unwrap();
        assert_eq!(hist.len(), 1);
        assert_eq!(hist[0].findings, vec!["auth_rejected"]);
        assert_eq!(st.incidents("s1", 10).unwrap().len(), 1);
        assert_eq!(st.integrity_check().unwrap(), "ok");
    }

    /// The JSON columns as a released storeguard writes them: what this build writes must stay
    /// readable by it, and what an older build wrote must stay readable by this one.
    #[test]
    fn stored_json_columns_match_their_golden_fixtures() {
        use chrono::TimeZone;
        let at = Utc.with_ymd_and_hms(2026, 11, 26, 1, 30, 0).unwrap();
        let store = StoreRef {
            id: "ozon-main",
            name: "Ozon 主店",
            marketplace: Marketplace::Ozon,
        };
        let mut facts = Facts {
            account: Some("1234567".into()),
            latency_ms: 182,
            http_status: Some(404),
            egress: Some("direct".into()),
            ..Facts::default()
        };
        facts.roles = vec!["Admin".into()];
        let o = Outcome::new(
            "ozon-main",
            Marketplace::Ozon,
            at,
            vec![Finding::new(
                FindingKind::AuthRejected,
                "Api-key is deactivated",
            )],
            facts,
        );
        let mut h = StoreHealth::default();
        let events = apply(&mut h, &store, &o, &rules(), at);
        let golden = [
            (
                "health.json",
                serde_json::to_value(&h).unwrap(),
                include_str!("../tests/fixtures/state/health.json"),
            ),
            (
                "last_outcome.json",
                serde_json::to_value(&o).unwrap(),
                include_str!("../tests/fixtures/state/last_outcome.json"),
            ),
            (
                "outbox_payload.json",
                serde_json::to_value(&events[0]).unwrap(),
                include_str!("../tests/fixtures/state/outbox_payload.json"),
            ),
        ];
        for (name, now, fixture) in golden {
            let fixture: serde_json::Value = serde_json::from_str(fixture).unwrap();
            assert_eq!(
                now,
                fixture,
                "{name} changed: a stored row of the old form would no longer read the same\n{}",
                serde_json::to_string_pretty(&now).unwrap()
            );
        }
        let read_h: StoreHealth =
            serde_json::from_str(include_str!("../tests/fixtures/state/health.json")).unwrap();
        assert_eq!(read_h, h);
        let read_o: Outcome =
            serde_json::from_str(include_str!("../tests/fixtures/state/last_outcome.json"))
                .unwrap();
        assert_eq!(read_o.findings, o.findings);
        let read_e: AlertEvent =
            serde_json::from_str(include_str!("../tests/fixtures/state/outbox_payload.json"))
                .unwrap();
        assert_eq!(read_e, events[0]);
    }

    #[test]
    fn a_newer_schema_is_refused_and_the_version_is_recorded() {
        let dir = tempfile::tempdir().unwrap();
        drop(State::open(dir.path()).unwrap());
        let path = dir.path().join(FILE_NAME);
        let version = |p: &Path| -> String {
            Connection::open(p)
                .unwrap()
                .query_row("SELECT value FROM meta WHERE key = 'schema'", [], |r| {
                    r.get(0)
                })
                .unwrap()
        };
        assert_eq!(version(&path), SCHEMA_VERSION.to_string());
        Connection::open(&path)
            .unwrap()
            .execute("UPDATE meta SET value = '99' WHERE key = 'schema'", [])
            .unwrap();
        let e = State::open(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains("written by a newer storeguard (schema 99; this one knows up to 1)"),
            "{e}"
        );
        assert!(e.contains("help:"), "{e}");
        // An older version is brought forward.
        Connection::open(&path)
            .unwrap()
            .execute("UPDATE meta SET value = '0' WHERE key = 'schema'", [])
            .unwrap();
        drop(State::open(dir.path()).unwrap());
        assert_eq!(version(&path), SCHEMA_VERSION.to_string());
    }

    #[test]
    fn recent_checks_gives_each_store_its_newest_rows_in_one_query() {
        let dir = tempfile::tempdir().unwrap();
        let st = State::open(dir.path()).unwrap();
        let now = Utc::now();
        let at = |i: i64| now - chrono::Duration::minutes(i);
        // 1,000 stores with 60 checks each, 5 of them 10 days old; plus one store with 3.
        {
            let mut conn = st.conn();
            let tx = conn.transaction().unwrap();
            for s in 0..1000 {
                tx.execute(
                    "INSERT INTO stores (store_id) VALUES (?1)",
                    [format!("s{s:04}")],
                )
                .unwrap();
                let id = tx.last_insert_rowid();
                for i in 0..60i64 {
                    let t = if i >= 55 { at(14_400 + i) } else { at(i) };
                    tx.execute(
                        "INSERT INTO checks (store, at_ms, status, findings, latency_ms) VALUES (?1, ?2, ?3, ?4, 7)",
                        params![id, ms(t), i % 3, if i % 3 == 2 { Some("auth_rejected") } else { None }],
                    )
                    .unwrap();
                }
            }
            tx.execute("INSERT INTO stores (store_id) VALUES ('few')", [])
                .unwrap();
            let id = tx.last_insert_rowid();
            for i in 0..3 {
                tx.execute(
                    "INSERT INTO checks (store, at_ms, status, latency_ms) VALUES (?1, ?2, 0, 7)",
                    params![id, ms(at(i))],
                )
                .unwrap();
            }
            tx.execute("INSERT INTO stores (store_id) VALUES ('none')", [])
                .unwrap();
            tx.commit().unwrap();
        }
        let started = std::time::Instant::now();
        let all = st
            .recent_checks(now - chrono::Duration::days(30), 48)
            .unwrap();
        let took = started.elapsed();
        assert_eq!(all.len(), 1001, "stores without checks are absent");
        let s7 = &all["s0007"];
        assert_eq!(s7.len(), 48);
        assert_eq!(s7[0].at, from_ms(ms(at(0))), "newest first");
        assert_eq!(s7[47].at, from_ms(ms(at(47))));
        assert_eq!(s7[2].findings, vec!["auth_rejected"]);
        assert_eq!(s7[2].status, Status::Critical);
        assert_eq!(all["few"].len(), 3);
        // Agrees with the per-store query.
        assert_eq!(
            *s7,
            st.history("s0007", now - chrono::Duration::days(30), 48)
                .unwrap()
        );
        // `since` cuts old rows too.
        let recent = st
            .recent_checks(now - chrono::Duration::days(1), 100)
            .unwrap();
        assert_eq!(recent["s0001"].len(), 55);
        assert!(st.recent_checks(now, 0).unwrap().is_empty());
        assert!(took < std::time::Duration::from_secs(5), "{took:?}");
    }

    #[test]
    fn outbox_keeps_order_per_store_and_channel() {
        let dir = tempfile::tempdir().unwrap();
        let st = State::open(dir.path()).unwrap();
        let now = Utc::now();
        let mk = |id: &str, store: &str| AlertEvent {
            event_id: id.into(),
            event: crate::event::EventKind::Opened,
            incident_id: format!("inc-{id}"),
            subject: crate::event::Subject::store(store, store, Marketplace::Ozon),
            severity: crate::model::Severity::Critical,
            finding: FindingKind::AuthRejected,
            detail: String::new(),
            opened_at: now,
            created_at: now,
            affected: vec![],
            test: false,
        };
        let r = |e: AlertEvent| Routed {
            event: e,
            channels: vec!["hook".into()],
            hold_until: None,
        };
        st.record_events(&[r(mk("a1", "a")), r(mk("a2", "a")), r(mk("b1", "b"))])
            .unwrap();
        let due = st.due_outbox(now, 10).unwrap();
        let ids: Vec<_> = due.iter().map(|r| r.event.event_id.as_str()).collect();
        assert_eq!(ids, vec!["a1", "b1"]);
        // a1 postponed: a2 still waits behind it.
        st.mark_retry(due[0].seq, now + chrono::Duration::minutes(5), "down")
            .unwrap();
        let due = st.due_outbox(now, 10).unwrap();
        let ids: Vec<_> = due.iter().map(|r| r.event.event_id.as_str()).collect();
        assert_eq!(ids, vec!["b1"]);
    }
    fn check(store: &str, at: DateTime<Utc>, status: Status, latency: u64) -> CheckRow {
        CheckRow {
            store_id: store.into(),
            at,
            status,
            findings: if status == Status::Ok {
                vec![]
            } else {
                vec!["auth_rejected".into()]
            },
            latency_ms: latency,
            egress: Some("direct".into()),
            account: Some("1000001".into()),
        }
    }

    /// 10 days of checks every 10 minutes for "a", with a bad spell on day 2 from 06:00 to 08:00
    /// and an account change on day 5 at noon.
    fn ten_days(t0: DateTime<Utc>) -> Vec<CheckRow> {
        let mut rows = Vec::new();
        for k in 0..(10 * 144) {
            let at = t0 + chrono::Duration::minutes(10 * k);
            let day = k / 144;
            let minute = (k % 144) * 10;
            let bad = day == 2 && (360..480).contains(&minute);
            let mut r = check(
                "a",
                at,
                if bad { Status::Critical } else { Status::Ok },
                100 + (k % 7) as u64,
            );
            if day > 5 || (day == 5 && minute >= 720) {
                r.account = Some("1000002".into());
            }
            rows.push(r);
        }
        rows
    }

    #[test]
    fn compaction_folds_old_checks_into_daily_runs() {
        let dir = tempfile::tempdir().unwrap();
        let st = State::open(dir.path()).unwrap();
        let t0 = Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap();
        let rows = ten_days(t0);
        st.import_checks(&rows).unwrap();
        st.import_checks(&[check("b", t0, Status::Ok, 5)]).unwrap();
        let now = t0 + chrono::Duration::days(10);
        let done = st.compact(now).unwrap();
        // Days 0..3 are older than 7 days; "b" has one old check.
        assert_eq!(done.checks, 3 * 144 + 1);
        let (raw, runs) = st.history_counts().unwrap();
        assert_eq!(raw, 7 * 144);
        // Day 0: 1 run, day 1: 1, day 2: ok / bad / ok = 3; plus "b" = 6.
        assert_eq!(runs, 6);
        let runs = st.runs("a", t0, 100).unwrap();
        assert_eq!(runs.len(), 5);
        assert_eq!(runs.iter().map(|r| r.checks).sum::<u64>(), 3 * 144);
        let bad = runs.iter().find(|r| r.status == Status::Critical).unwrap();
        assert_eq!(bad.checks, 12);
        assert_eq!(bad.findings, vec!["auth_rejected"]);
        assert_eq!(bad.from, t0 + chrono::Duration::hours(48 + 6));
        assert_eq!(bad.to, t0 + chrono::Duration::minutes((48 + 8) * 60 - 10));
        // Newest first, no run crosses midnight.
        assert!(runs.windows(2).all(|w| w[0].from > w[1].to));
        for r in &runs {
            assert_eq!(r.from.date_naive(), r.to.date_naive());
            assert!(r.latency_min_ms >= 100 && r.latency_max_ms <= 106);
            assert!(r.latency_min_ms <= r.latency_avg_ms && r.latency_avg_ms <= r.latency_max_ms);
        }
        // history() keeps its meaning: the raw records, which now start 7 days back.
        let h = st.history("a", t0, 100_000).unwrap();
        assert_eq!(h.len(), 7 * 144);
        assert!(h.iter().all(|c| c.at >= now - chrono::Duration::days(7)));
        // timeline() reads both, newest first, and covers every check once.
        let tl = st.timeline("a", t0, 100_000).unwrap();
        assert_eq!(tl.len(), 7 * 144 + 5);
        assert!(tl.windows(2).all(|w| w[0].at() >= w[1].at()));
        let covered: u64 = tl
            .iter()
            .map(|e| match e {
                HistoryEntry::Check(_) => 1,
                HistoryEntry::Run(r) => r.checks,
            })
            .sum();
        assert_eq!(covered, 10 * 144);
        // Idempotent.
        assert_eq!(st.compact(now).unwrap(), Compacted::default());
        assert_eq!(st.history_counts().unwrap(), (7 * 144, 6));
        // A store whose raw rows are all compacted still has a last check.
        assert_eq!(st.last_check("b").unwrap(), Some(t0));
        // Retention removes runs too.
        st.prune(t0 + chrono::Duration::days(2)).unwrap();
        assert_eq!(st.runs("a", t0, 100).unwrap().len(), 3);
        assert_eq!(st.integrity_check().unwrap(), "ok");
    }

    #[test]
    fn hourly_compaction_equals_one_compaction() {
        let t0 = Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap();
        let rows = ten_days(t0);
        let once = tempfile::tempdir().unwrap();
        let a = State::open(once.path()).unwrap();
        a.import_checks(&rows).unwrap();
        a.compact(t0 + chrono::Duration::days(10)).unwrap();
        let hourly = tempfile::tempdir().unwrap();
        let b = State::open(hourly.path()).unwrap();
        b.import_checks(&rows).unwrap();
        for h in 0..=(10 * 24) {
            b.compact(t0 + chrono::Duration::hours(h)).unwrap();
        }
        assert_eq!(
            a.timeline("a", t0, 100_000).unwrap(),
            b.timeline("a", t0, 100_000).unwrap()
        );
        assert_eq!(a.history_counts().unwrap(), b.history_counts().unwrap());
    }

    #[test]
    fn a_due_outbox_query_uses_the_pending_store_index() {
        let dir = tempfile::tempdir().unwrap();
        let st = State::open(dir.path()).unwrap();
        let conn = st.conn();
        let plan: Vec<String> = conn
            .prepare(
                "EXPLAIN QUERY PLAN SELECT 1 FROM outbox p WHERE p.channel = 'c' AND p.store_id = 's'
                 AND p.seq < 5 AND p.delivered_at_ms IS NULL AND p.gave_up_at_ms IS NULL",
            )
            .unwrap()
            .query_map([], |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(
            plan.iter().any(|p| p.contains("outbox_pending_store")),
            "{plan:?}"
        );
    }
}
