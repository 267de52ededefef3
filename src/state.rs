//! Durable state in SQLite (WAL): login history, per-store health, incidents and the alert outbox.
//!
//! One transaction per check result writes the history row, the store's new health and the
//! outbox rows for the events it produced, so a crash can never leave an incident opened without
//! its alert queued (or the other way round). Nothing here holds a secret.
//!
//! `synchronous = NORMAL` in WAL mode: a committed transaction survives a killed process; a power
//! cut may lose the last commits, which the next check then produces again.

use crate::alert::AlertEvent;
use crate::health::StoreHealth;
use crate::outcome::{Outcome, Status};
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
}

impl StateError {
    /// Whether the failure is the disk being full (or a file-size limit).
    pub fn is_disk_full(&self) -> bool {
        let e = match self {
            StateError::Sql(e) | StateError::Open { source: e, .. } => e,
            StateError::Corrupt(_) => return false,
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

/// An event with the channels it goes to, and the end of a maintenance window holding it.
#[derive(Clone, Debug)]
pub struct Routed {
    pub event: AlertEvent,
    pub channels: Vec<String>,
    pub hold_until: Option<DateTime<Utc>>,
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
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Backoff {
    pub until: Option<DateTime<Utc>>,
    pub level: u32,
}

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
INSERT OR IGNORE INTO meta (key, value) VALUES ('schema', '1');
";

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
        let conn = Connection::open(&path)
            .map_err(|e| open_err(e, "check that state_dir is writable and not on a full disk"))?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(|e| {
                open_err(
                    e,
                    "the state file may be damaged; move it aside to start fresh",
                )
            })?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.execute_batch(SCHEMA).map_err(|e| {
            open_err(
                e,
                "the state file may be damaged; move it aside to start fresh",
            )
        })?;
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
            tx.execute(
                "INSERT INTO stores (store_id, health) VALUES (?1, ?2)
                 ON CONFLICT (store_id) DO UPDATE SET health = ?2",
                params![id, json],
            )?;
        }
        let health_json =
            serde_json::to_string(health).map_err(|e| StateError::Corrupt(e.to_string()))?;
        let outcome_json =
            serde_json::to_string(outcome).map_err(|e| StateError::Corrupt(e.to_string()))?;
        tx.execute(
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
        let store_rowid: i64 = tx.query_row(
            "SELECT id FROM stores WHERE store_id = ?1",
            [&outcome.store_id],
            |r| r.get(0),
        )?;
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
        tx.execute(
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
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT o.seq, o.channel, o.payload, o.attempts, o.created_at_ms, o.held FROM outbox o
             WHERE o.delivered_at_ms IS NULL AND o.gave_up_at_ms IS NULL AND o.next_attempt_ms <= ?1
               AND NOT EXISTS (SELECT 1 FROM outbox p
                   WHERE p.channel = o.channel AND p.store_id = o.store_id AND p.seq < o.seq
                     AND p.delivered_at_ms IS NULL AND p.gave_up_at_ms IS NULL)
             ORDER BY o.seq LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![ms(now), limit as i64], |r| {
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
                "SELECT MAX(c.at_ms) FROM checks c JOIN stores s ON s.id = c.store WHERE s.store_id = ?1",
                [store_id],
                |r| r.get(0),
            )
            .optional()?
            .flatten();
        Ok(v.map(from_ms))
    }
}

fn record_event(tx: &rusqlite::Transaction<'_>, routed: &Routed) -> Result<(), StateError> {
    let event = &routed.event;
    use crate::alert::EventKind;
    match event.event {
        EventKind::Opened => {
            tx.execute(
                "INSERT OR IGNORE INTO incidents (incident_id, store_id, finding, severity, opened_at_ms, detail)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    event.incident_id,
                    event.store_id,
                    event.finding.as_str(),
                    event.severity.as_str(),
                    ms(event.opened_at),
                    event.detail
                ],
            )?;
        }
        EventKind::Resolved => {
            tx.execute(
                "UPDATE incidents SET resolved_at_ms = ?2 WHERE incident_id = ?1",
                params![event.incident_id, ms(event.created_at)],
            )?;
        }
        EventKind::Reminder => {
            tx.execute(
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
        tx.execute(
            "INSERT OR IGNORE INTO outbox (event_id, channel, store_id, payload, created_at_ms, next_attempt_ms, held)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![event.event_id, channel, event.store_id, payload, ms(event.created_at), next, held],
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
            event: crate::alert::EventKind::Opened,
            incident_id: format!("inc-{id}"),
            store_id: store.into(),
            store_name: store.into(),
            marketplace: Marketplace::Ozon,
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
}
