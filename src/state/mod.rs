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

mod backend;
mod history;
mod mail;
mod outbox;
mod pg;
#[cfg(test)]
mod tests;

pub use backend::{Backend, Fleet};
pub use mail::{MailCursor, MailRecord};
use outbox::record_event;
pub use pg::PgState;

/// State file name inside `state_dir`.
pub const FILE_NAME: &str = "storeguard.db";

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The fleet's PostgreSQL (replica mode).
    #[error("state database: {0}")]
    Fleet(crate::replica::DbError),
    #[error("state database: {0}")]
    Unavailable(String),
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
            StateError::Corrupt(_)
            | StateError::Damaged { .. }
            | StateError::TooNew { .. }
            | StateError::Fleet(_)
            | StateError::Unavailable(_) => {
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
    /// A security mail from the store's mailbox.
    Mail(MailRecord),
}

impl HistoryEntry {
    /// When the entry ends (the check's time, or the last check of a run).
    pub fn at(&self) -> DateTime<Utc> {
        match self {
            HistoryEntry::Check(c) => c.at,
            HistoryEntry::Run(r) => r.to,
            HistoryEntry::Mail(m) => m.at,
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
";

/// Version 2: what the mailbox watchers keep. Per folder, its UIDVALIDITY and the last UID
/// read, so a restart neither misses nor repeats a mail; per security mail and store, one
/// login record (never the body: the event, times, sender domain, verdict, labelled facts and
/// a hash of the Message-ID, which keeps one alert per mail).
const MAIL_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS mail_cursors (
    mailbox TEXT NOT NULL,
    folder TEXT NOT NULL,
    uid_validity INTEGER NOT NULL,
    last_uid INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    PRIMARY KEY (mailbox, folder)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS mail_records (
    mail_hash TEXT NOT NULL,
    store_id TEXT NOT NULL,
    at_ms INTEGER NOT NULL,
    seen_at_ms INTEGER NOT NULL,
    event TEXT NOT NULL,
    finding TEXT,
    verdict TEXT NOT NULL,
    domain TEXT NOT NULL,
    facts TEXT NOT NULL,
    mailbox TEXT NOT NULL,
    alerted INTEGER NOT NULL,
    PRIMARY KEY (mail_hash, store_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS mail_records_store ON mail_records (store_id, at_ms);
";

/// The schema version this build writes. A file of an older version is migrated forward at
/// open (each step in [`MIGRATIONS`], in one transaction); a newer one is refused.
pub const SCHEMA_VERSION: u32 = 2;

/// `MIGRATIONS[n]` takes a file from version `n + 1` to `n + 2`.
const MIGRATIONS: &[&str] = &[MAIL_SCHEMA];

/// What to do when the state file could not be opened for reading, from why the file itself
/// could not be opened (`None`: it can be, SQLite failed on something else).
fn read_only_help(file: Option<std::io::ErrorKind>) -> &'static str {
    match file {
        Some(std::io::ErrorKind::NotFound) => {
            "no state yet: the daemon (`storeguard run`) records every check there; a one-off `storeguard check` records nothing"
        }
        Some(std::io::ErrorKind::PermissionDenied) => {
            "this user may not read it: run the command as the daemon's user (e.g. `sudo -u storeguard storeguard status`) or as root"
        }
        _ => "check [daemon] state_dir and that the file is a storeguard state database",
    }
}

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
        match found {
            // A new file gets every table of this version at once.
            None => {
                conn.execute_batch(MAIL_SCHEMA)?;
                conn.execute(
                    "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema', ?1)",
                    [SCHEMA_VERSION.to_string()],
                )?;
            }
            Some(found) if found < SCHEMA_VERSION => migrate(&mut conn, found)?,
            Some(_) => {}
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
            help: read_only_help(std::fs::File::open(&path).err().map(|e| e.kind())),
            path: path.clone(),
            source,
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
        let row = CheckWrite::new(
            OutcomeRow::new(outcome)?,
            health,
            routed.to_vec(),
            backoff,
            others,
        )?;
        self.record_checks(&[&row])
    }

    /// Records finished checks in one transaction (group commit): all of them or none. Each
    /// check keeps its own rows together with its alerts, so a check is never split from them.
    pub fn record_checks(&self, rows: &[&CheckWrite]) -> Result<(), StateError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        for row in rows {
            write_check(&tx, row)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Moves the write-ahead log into the database file and truncates it.
    pub fn checkpoint(&self) -> Result<(), StateError> {
        self.conn()
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        Ok(())
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

/// The outcome's half of a [`CheckWrite`]: the history row and the outcome's JSON, built from
/// the outcome alone, so the daemon serialises it before it locks the store map.
#[derive(Debug)]
pub struct OutcomeRow {
    store_id: String,
    outcome: String,
    at_ms: i64,
    status: i64,
    findings: Option<String>,
    latency_ms: i64,
    egress: Option<String>,
    account: Option<String>,
}

impl OutcomeRow {
    /// The outcome serialised; fails only if the outcome cannot be written as JSON.
    pub fn new(outcome: &Outcome) -> Result<OutcomeRow, StateError> {
        let findings = (!outcome.findings.is_empty()).then(|| {
            let mut s = String::new();
            for (i, f) in outcome.findings.iter().enumerate() {
                if i > 0 {
                    s.push(',');
                }
                s.push_str(f.kind.as_str());
            }
            s
        });
        Ok(OutcomeRow {
            store_id: outcome.store_id.clone(),
            outcome: to_json(outcome)?,
            at_ms: ms(outcome.checked_at),
            status: status_code(outcome.status),
            findings,
            latency_ms: outcome.facts.latency_ms.min(i64::MAX as u64) as i64,
            egress: outcome.facts.egress.clone(),
            account: outcome.facts.account.clone(),
        })
    }
}

/// One finished check, serialised and ready for [`State::record_checks`]: built by the task
/// that ran the check, so the JSON work happens outside the database lock.
#[derive(Debug)]
pub struct CheckWrite {
    row: OutcomeRow,
    health: String,
    backoff: Backoff,
    others: Vec<(String, String)>,
    routed: Vec<Routed>,
    /// The lease of the store's shard this check was made under (replica mode): the write
    /// is refused when it is stale.
    fence: Option<crate::replica::Fence>,
}

impl CheckWrite {
    /// `row` is the outcome's ([`OutcomeRow::new`]); `routed` pairs each event with its channels;
    /// `others` are health rows of other stores (or a grouped incident) that change with this
    /// check.
    pub fn new(
        row: OutcomeRow,
        health: &StoreHealth,
        routed: Vec<Routed>,
        backoff: Backoff,
        others: &[(&str, &StoreHealth)],
    ) -> Result<CheckWrite, StateError> {
        Ok(CheckWrite {
            row,
            health: to_json(health)?,
            backoff,
            others: others
                .iter()
                .map(|(id, h)| Ok((id.to_string(), to_json(*h)?)))
                .collect::<Result<_, StateError>>()?,
            routed,
            fence: None,
        })
    }

    /// Marks the check as made under `fence` (replica mode).
    pub fn fenced(mut self, fence: crate::replica::Fence) -> CheckWrite {
        self.fence = Some(fence);
        self
    }

    /// The events this check raised, with their channels.
    pub fn routed(&self) -> &[Routed] {
        &self.routed
    }
}

/// JSON for a state column; a failure is reported as damaged data.
fn to_json<T: serde::Serialize + ?Sized>(v: &T) -> Result<String, StateError> {
    serde_json::to_string(v).map_err(|e| StateError::Corrupt(e.to_string()))
}

fn write_check(tx: &rusqlite::Transaction<'_>, row: &CheckWrite) -> Result<(), StateError> {
    for (id, json) in &row.others {
        exec(
            tx,
            "INSERT INTO stores (store_id, health) VALUES (?1, ?2)
             ON CONFLICT (store_id) DO UPDATE SET health = ?2",
            params![id, json],
        )?;
    }
    // Two plain statements: an upsert with `RETURNING id` would have SQLite build (and tear
    // down) an ephemeral table for the one row it returns, 14k of the group commit's 38k
    // instructions per check; the history row looks the id up through the `store_id` index.
    exec(
        tx,
        "INSERT INTO stores (store_id, health, last_outcome, backoff_until_ms, backoff_level)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (store_id) DO UPDATE SET health = ?2, last_outcome = ?3,
             backoff_until_ms = ?4, backoff_level = ?5",
        params![
            row.row.store_id,
            row.health,
            row.row.outcome,
            row.backoff.until.map(ms),
            row.backoff.level as i64
        ],
    )?;
    exec(
        tx,
        "INSERT OR REPLACE INTO checks (store, at_ms, status, findings, latency_ms, egress, account)
         VALUES ((SELECT id FROM stores WHERE store_id = ?1), ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            row.row.store_id,
            row.row.at_ms,
            row.row.status,
            row.row.findings,
            row.row.latency_ms,
            row.row.egress,
            row.row.account
        ],
    )?;
    for r in &row.routed {
        record_event(tx, r)?;
    }
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
