//! The fleet's PostgreSQL: versioned schema, replica heartbeats, shard leases with fencing
//! terms (all times are the database's `now()`, never a replica's clock), and the vault's
//! entries as the same armored age text the files hold.
//!
//! A fenced write runs in a transaction that first locks its shard's lease row `FOR SHARE`,
//! checking that this replica still holds it with the same term and that it has not expired.
//! A takeover (`UPDATE … term = term + 1`) waits for that lock, so a fenced write either
//! commits before the new term exists or is refused after it.

use super::plan::LeaseView;
use chrono::{DateTime, Utc};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use secrecy::{ExposeSecret, SecretString};
use std::str::FromStr;
use std::time::Duration;
use tokio_postgres::NoTls;

/// The schema version this build writes; `MIGRATIONS[n]` takes the database from `n` to `n + 1`.
pub const SCHEMA_VERSION: i64 = 2;

const MIGRATIONS: &[&str] = &[
    "
CREATE TABLE replicas (
    name TEXT PRIMARY KEY,
    started_at TIMESTAMPTZ NOT NULL,
    seen_at TIMESTAMPTZ NOT NULL,
    version TEXT NOT NULL,
    fenced_refusals BIGINT NOT NULL DEFAULT 0,
    takeovers BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE leases (
    shard INTEGER PRIMARY KEY,
    holder TEXT,
    term BIGINT NOT NULL DEFAULT 0,
    until TIMESTAMPTZ NOT NULL DEFAULT '-infinity',
    acquired_at TIMESTAMPTZ,
    renewed_at TIMESTAMPTZ
);
CREATE TABLE vault_entries (
    entry TEXT PRIMARY KEY,
    armored TEXT NOT NULL,
    generation BIGINT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    updated_by TEXT NOT NULL
);
",
    "
-- The daemon's state, as in the SQLite file (times in Unix ms): every replica reads every
-- store's, and writes only those of the shards it holds.
CREATE SEQUENCE store_versions;
CREATE TABLE stores (
    id BIGSERIAL PRIMARY KEY,
    store_id TEXT NOT NULL UNIQUE,
    health TEXT NOT NULL DEFAULT '{}',
    last_outcome TEXT,
    backoff_until_ms BIGINT,
    backoff_level INTEGER NOT NULL DEFAULT 0,
    -- Raised by every write: replicas follow the stores they do not hold by it.
    version BIGINT NOT NULL DEFAULT nextval('store_versions')
);
CREATE INDEX stores_version ON stores (version);
CREATE TABLE checks (
    store BIGINT NOT NULL,
    at_ms BIGINT NOT NULL,
    status SMALLINT NOT NULL,
    findings TEXT,
    latency_ms BIGINT NOT NULL,
    egress TEXT,
    account TEXT,
    -- The replica that made the check.
    replica TEXT NOT NULL,
    PRIMARY KEY (store, at_ms)
);
CREATE TABLE incidents (
    incident_id TEXT PRIMARY KEY,
    store_id TEXT NOT NULL,
    finding TEXT NOT NULL,
    severity TEXT NOT NULL,
    opened_at_ms BIGINT NOT NULL,
    resolved_at_ms BIGINT,
    detail TEXT NOT NULL
);
CREATE INDEX incidents_store ON incidents (store_id, opened_at_ms);
CREATE TABLE outbox (
    seq BIGSERIAL PRIMARY KEY,
    event_id TEXT NOT NULL,
    channel TEXT NOT NULL,
    store_id TEXT NOT NULL,
    -- The subject's shard: only the replica holding its lease delivers the row.
    shard INTEGER NOT NULL,
    incident_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    next_attempt_ms BIGINT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    delivered_at_ms BIGINT,
    gave_up_at_ms BIGINT,
    last_error TEXT,
    held BOOLEAN NOT NULL DEFAULT false,
    UNIQUE (event_id, channel)
);
CREATE INDEX outbox_pending ON outbox (shard, next_attempt_ms)
    WHERE delivered_at_ms IS NULL AND gave_up_at_ms IS NULL;
CREATE INDEX outbox_pending_store ON outbox (channel, store_id, seq)
    WHERE delivered_at_ms IS NULL AND gave_up_at_ms IS NULL;
CREATE INDEX outbox_incident ON outbox (incident_id, channel) WHERE kind = 'opened';
CREATE TABLE silences (
    store_id TEXT PRIMARY KEY,
    until_ms BIGINT NOT NULL
);
CREATE TABLE mail_cursors (
    mailbox TEXT NOT NULL,
    folder TEXT NOT NULL,
    uid_validity BIGINT NOT NULL,
    last_uid BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    PRIMARY KEY (mailbox, folder)
);
CREATE TABLE mail_records (
    mail_hash TEXT NOT NULL,
    store_id TEXT NOT NULL,
    at_ms BIGINT NOT NULL,
    seen_at_ms BIGINT NOT NULL,
    event TEXT NOT NULL,
    finding TEXT,
    verdict TEXT NOT NULL,
    domain TEXT NOT NULL,
    facts TEXT NOT NULL,
    mailbox TEXT NOT NULL,
    alerted BOOLEAN NOT NULL,
    PRIMARY KEY (mail_hash, store_id)
);
CREATE INDEX mail_records_store ON mail_records (store_id, at_ms);
",
];

/// Serialises schema changes between replicas starting together (any fixed number will do;
/// this one spells `SGRD`).
const MIGRATION_LOCK: i64 = 0x5347_5244;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("PostgreSQL {target}: {detail}\n  help: {help}")]
    Connect {
        target: String,
        detail: String,
        help: &'static str,
    },
    #[error("PostgreSQL {target}: {detail}")]
    Query { target: String, detail: String },
    #[error(
        "refused a write for shard {shard}: this replica's lease (term {term}) was taken over or expired"
    )]
    Fenced { shard: u32, term: i64 },
    #[error(
        "{entry} changed in the database while it was being written (generation {expected} → {found})\n  help: run the command again so it starts from the current version"
    )]
    Conflict {
        entry: String,
        expected: i64,
        found: i64,
    },
    #[error(
        "the fleet's database was written by a newer storeguard (schema {found}; this one knows up to {known})\n  help: upgrade this replica to the version the others run"
    )]
    TooNew { found: i64, known: i64 },
    #[error(
        "[replicas] shards = {config}, but the fleet runs with {fleet} and replica(s) {holders} still hold leases\n  help: give every replica the same shards; to change it, stop them all, then start one with the new value"
    )]
    ShardsInUse {
        config: u32,
        fleet: u32,
        holders: String,
    },
}

impl DbError {
    /// Whether this is a refusal by the fence (counted, never retried).
    pub fn is_fenced(&self) -> bool {
        matches!(self, DbError::Fenced { .. })
    }
}

/// How to reach the database: the `[daemon] state` URL (which never holds a password) and the
/// password from the vault or a systemd credential, when the server asks for one.
#[derive(Clone)]
pub struct Target {
    pub url: String,
    pub password: Option<SecretString>,
    /// The replica's name: its leases' holder, and its `application_name`, so that
    /// `pg_stat_activity` tells replicas apart.
    pub replica: String,
    /// Statement and lock waits end after this (a third of the lease: a tick must not hang).
    pub timeout: Duration,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Target({})", self.url)
    }
}

/// A pool of connections to the fleet's database, named for one replica.
#[derive(Clone)]
pub struct Db {
    pool: Pool,
    target: String,
    me: String,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Db({} as {})", self.target, self.me)
    }
}

/// One replica's row, for `storeguard replicas`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ReplicaRow {
    pub name: String,
    pub started_at: DateTime<Utc>,
    pub seen_at: DateTime<Utc>,
    pub version: String,
    pub fenced_refusals: i64,
    pub takeovers: i64,
}

/// One lease as stored.
#[derive(Clone, Debug, serde::Serialize)]
pub struct LeaseRow {
    pub shard: u32,
    pub holder: Option<String>,
    pub term: i64,
    pub until: Option<DateTime<Utc>>,
    pub acquired_at: Option<DateTime<Utc>>,
    pub renewed_at: Option<DateTime<Utc>>,
}

/// Everything `storeguard replicas` shows, read in one snapshot.
#[derive(Clone, Debug)]
pub struct Fleet {
    pub now: DateTime<Utc>,
    pub replicas: Vec<ReplicaRow>,
    pub leases: Vec<LeaseRow>,
}

/// A lease this replica acted on: the shard and its fencing term.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fence {
    pub shard: u32,
    pub term: i64,
}

/// What a fenced vault write expects to replace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// Whatever is there (or nothing).
    Any,
    /// Exactly this generation (an edit that started from it).
    Exactly(i64),
    /// Anything older than the new entry (a rotation: never go back to an older token).
    Older,
}

/// A vault entry as the database holds it: the armored age text and its generation.
#[derive(Clone, Debug)]
pub struct StoredEntry {
    pub entry: String,
    pub armored: String,
    pub generation: i64,
}

fn ttl_ms(ttl: Duration) -> i64 {
    ttl.as_millis().min(i64::MAX as u128) as i64
}

impl Db {
    /// A pool for the replica `target` names. Nothing connects until the first query.
    pub fn new(target: &Target) -> Result<Db, DbError> {
        let shown = target.url.clone();
        let mut pg = tokio_postgres::Config::from_str(&target.url).map_err(|e| DbError::Connect {
            target: shown.clone(),
            detail: crate::outcome::sanitize(&e.to_string(), 200),
            help: "write [daemon] state like \"postgres://storeguard@db.internal:5432/storeguard\"",
        })?;
        if let Some(p) = &target.password {
            pg.password(p.expose_secret());
        }
        let ms = target.timeout.as_millis().max(100);
        pg.application_name(format!("storeguard {}", target.replica))
            .connect_timeout(target.timeout.max(Duration::from_secs(1)))
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(10))
            // A replica stopped (SIGSTOP) inside a transaction must not keep its lock on a
            // lease row: the server ends such a session, and the write never commits.
            .options(format!(
                "-c statement_timeout={ms} -c lock_timeout={ms} -c idle_in_transaction_session_timeout={ms}"
            ));
        let manager = Manager::from_config(
            pg,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(4)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(target.timeout.max(Duration::from_secs(1))))
            .create_timeout(Some(target.timeout.max(Duration::from_secs(1))))
            .build()
            .map_err(|e| DbError::Connect {
                target: shown.clone(),
                detail: e.to_string(),
                help: "report this: the pool could not be built",
            })?;
        Ok(Db {
            pool,
            target: shown,
            me: target.replica.clone(),
        })
    }

    /// This replica's name.
    pub fn me(&self) -> &str {
        &self.me
    }

    /// A query's failure, in the server's words, naming the database.
    pub(crate) fn query_err(&self, e: tokio_postgres::Error) -> DbError {
        DbError::Query {
            target: self.target.clone(),
            detail: crate::outcome::sanitize(&pg_detail(&e), 300),
        }
    }

    /// A pooled connection (a dead one is replaced).
    pub(crate) async fn client(&self) -> Result<deadpool_postgres::Object, DbError> {
        self.pool.get().await.map_err(|e| {
            let (detail, help) = match &e {
                deadpool_postgres::PoolError::Backend(b) => (
                    pg_detail(b),
                    if b.as_db_error().is_some_and(|d| {
                        d.code() == &tokio_postgres::error::SqlState::INVALID_PASSWORD
                    }) {
                        "put the database password in the vault entry daemon/postgres, or in the systemd credential `postgres`"
                    } else {
                        "check that PostgreSQL runs and that [daemon] state names its host, port, user and database"
                    },
                ),
                other => (
                    other.to_string(),
                    "check that PostgreSQL runs and answers within a third of [replicas] lease_ttl",
                ),
            };
            DbError::Connect {
                target: self.target.clone(),
                detail: crate::outcome::sanitize(&detail, 300),
                help,
            }
        })
    }

    /// Brings the schema to [`SCHEMA_VERSION`] and the lease table to `shards` rows, under an
    /// advisory lock so replicas starting together do it once. A database written by a newer
    /// build is refused; the shard count may change only while nobody holds a lease.
    pub async fn migrate(&self, shards: u32) -> Result<(), DbError> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(|e| self.query_err(e))?;
        let q = |e| self.query_err(e);
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(q)?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS storeguard_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        )
        .await
        .map_err(q)?;
        let meta = |key: &'static str| {
            let tx = &tx;
            async move {
                tx.query_opt("SELECT value FROM storeguard_meta WHERE key = $1", &[&key])
                    .await
                    .map(|r| r.map(|r| r.get::<_, String>(0)))
            }
        };
        let found: i64 = meta("schema")
            .await
            .map_err(q)?
            .map(|v| v.parse().unwrap_or(i64::MAX))
            .unwrap_or(0);
        if found > SCHEMA_VERSION {
            return Err(DbError::TooNew {
                found,
                known: SCHEMA_VERSION,
            });
        }
        for (i, step) in MIGRATIONS.iter().enumerate().skip(found as usize) {
            tx.batch_execute(step).await.map_err(q)?;
            tracing::info!(to = i + 1, "fleet database migrated");
        }
        tx.execute(
            "INSERT INTO storeguard_meta (key, value) VALUES ('schema', $1)
             ON CONFLICT (key) DO UPDATE SET value = $1",
            &[&SCHEMA_VERSION.to_string()],
        )
        .await
        .map_err(q)?;
        let fleet: Option<u32> = meta("shards")
            .await
            .map_err(q)?
            .and_then(|v| v.parse().ok());
        if fleet != Some(shards) {
            if let Some(fleet) = fleet {
                let rows = tx
                    .query(
                        "SELECT DISTINCT holder FROM leases WHERE holder IS NOT NULL AND until > now() ORDER BY 1",
                        &[],
                    )
                    .await
                    .map_err(q)?;
                if !rows.is_empty() {
                    let holders: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
                    return Err(DbError::ShardsInUse {
                        config: shards,
                        fleet,
                        holders: holders.join(", "),
                    });
                }
            }
            // Terms must keep growing across the change: start the new rows above every old one.
            let top: i64 = tx
                .query_one("SELECT COALESCE(MAX(term), 0) FROM leases", &[])
                .await
                .map_err(q)?
                .get(0);
            tx.execute("DELETE FROM leases", &[]).await.map_err(q)?;
            tx.execute(
                "INSERT INTO leases (shard, term) SELECT s, $2 FROM generate_series(0, $1 - 1) AS s",
                &[&(shards as i32), &top],
            )
            .await
            .map_err(q)?;
            tx.execute(
                "INSERT INTO storeguard_meta (key, value) VALUES ('shards', $1)
                 ON CONFLICT (key) DO UPDATE SET value = $1",
                &[&shards.to_string()],
            )
            .await
            .map_err(q)?;
        }
        tx.commit().await.map_err(q)?;
        Ok(())
    }

    /// Records that this replica is alive (and its counters); the first beat sets `started_at`.
    pub async fn heartbeat(&self, fenced_refusals: u64, takeovers: u64) -> Result<(), DbError> {
        let c = self.client().await?;
        let st = c
            .prepare_cached(
                "INSERT INTO replicas (name, started_at, seen_at, version, fenced_refusals, takeovers)
                 VALUES ($1, now(), now(), $2, $3, $4)
                 ON CONFLICT (name) DO UPDATE SET seen_at = now(), version = $2,
                     fenced_refusals = $3, takeovers = $4",
            )
            .await
            .map_err(|e| self.query_err(e))?;
        c.execute(
            &st,
            &[
                &self.me,
                &env!("CARGO_PKG_VERSION"),
                &(fenced_refusals as i64),
                &(takeovers as i64),
            ],
        )
        .await
        .map_err(|e| self.query_err(e))?;
        Ok(())
    }

    /// A fresh `started_at` for a replica (re)joining under a name that may be in the table.
    pub async fn rejoin(&self) -> Result<(), DbError> {
        let c = self.client().await?;
        c.execute("DELETE FROM replicas WHERE name = $1", &[&self.me])
            .await
            .map_err(|e| self.query_err(e))?;
        Ok(())
    }

    /// The replicas seen within `ttl`, sorted, and every lease with its live holder.
    pub async fn view(&self, ttl: Duration) -> Result<(Vec<String>, Vec<LeaseView>), DbError> {
        let c = self.client().await?;
        let live = c
            .query(
                "SELECT name FROM replicas WHERE seen_at > now() - $1 * interval '1 millisecond' ORDER BY name",
                &[&(ttl_ms(ttl) as f64)],
            )
            .await
            .map_err(|e| self.query_err(e))?
            .iter()
            .map(|r| r.get::<_, String>(0))
            .collect();
        let leases = c
            .query(
                "SELECT shard, CASE WHEN until > now() THEN holder END FROM leases ORDER BY shard",
                &[],
            )
            .await
            .map_err(|e| self.query_err(e))?
            .iter()
            .map(|r| LeaseView {
                shard: r.get::<_, i32>(0) as u32,
                holder: r.get(1),
            })
            .collect();
        Ok((live, leases))
    }

    /// Takes a free or expired lease with a new term; `None` when someone holds it. Also
    /// returns the previous holder when their lease had expired (a takeover).
    pub async fn acquire(
        &self,
        shard: u32,
        ttl: Duration,
    ) -> Result<Option<(i64, Option<String>)>, DbError> {
        let c = self.client().await?;
        let st = c
            .prepare_cached(
                "UPDATE leases l SET holder = $2, term = l.term + 1,
                     until = now() + $3 * interval '1 millisecond', acquired_at = now(), renewed_at = now()
                 FROM (SELECT shard, holder FROM leases WHERE shard = $1 FOR UPDATE) old
                 WHERE l.shard = old.shard AND (l.until <= now() OR l.holder IS NULL)
                 RETURNING l.term, old.holder",
            )
            .await
            .map_err(|e| self.query_err(e))?;
        match c
            .query_opt(&st, &[&(shard as i32), &self.me, &(ttl_ms(ttl) as f64)])
            .await
        {
            Ok(row) => Ok(row.map(|r| {
                let prev: Option<String> = r.get(1);
                (r.get(0), prev.filter(|p| *p != self.me))
            })),
            // Someone's fenced write holds the row longer than our lock wait: try next tick.
            Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE) => {
                Ok(None)
            }
            Err(e) => Err(self.query_err(e)),
        }
    }

    /// Extends the leases `held` (shard, term) that are still this replica's and unexpired;
    /// returns the shards renewed. A shard missing from the answer is lost.
    pub async fn renew(&self, held: &[Fence], ttl: Duration) -> Result<Vec<u32>, DbError> {
        if held.is_empty() {
            return Ok(Vec::new());
        }
        let shards: Vec<i32> = held.iter().map(|f| f.shard as i32).collect();
        let terms: Vec<i64> = held.iter().map(|f| f.term).collect();
        let c = self.client().await?;
        let st = c
            .prepare_cached(
                "UPDATE leases l SET until = now() + $4 * interval '1 millisecond', renewed_at = now()
                 FROM unnest($1::int[], $2::bigint[]) AS h(shard, term)
                 WHERE l.shard = h.shard AND l.term = h.term AND l.holder = $3 AND l.until > now()
                 RETURNING l.shard",
            )
            .await
            .map_err(|e| self.query_err(e))?;
        Ok(
            c.query(&st, &[&shards, &terms, &self.me, &(ttl_ms(ttl) as f64)])
                .await
                .map_err(|e| self.query_err(e))?
                .iter()
                .map(|r| r.get::<_, i32>(0) as u32)
                .collect(),
        )
    }

    /// Gives leases back at once (a clean stop, or rebalancing), so nobody waits for them
    /// to expire. The term stays: the next holder's is higher.
    pub async fn release(&self, held: &[Fence]) -> Result<(), DbError> {
        if held.is_empty() {
            return Ok(());
        }
        let shards: Vec<i32> = held.iter().map(|f| f.shard as i32).collect();
        let terms: Vec<i64> = held.iter().map(|f| f.term).collect();
        let c = self.client().await?;
        c.execute(
            "UPDATE leases l SET holder = NULL, until = '-infinity'
             FROM unnest($1::int[], $2::bigint[]) AS h(shard, term)
             WHERE l.shard = h.shard AND l.term = h.term AND l.holder = $3",
            &[&shards, &terms, &self.me],
        )
        .await
        .map_err(|e| self.query_err(e))?;
        Ok(())
    }

    /// Removes this replica's heartbeat row (a clean stop).
    pub async fn leave(&self) -> Result<(), DbError> {
        self.rejoin().await
    }

    /// Replicas and leases for `storeguard replicas`.
    pub async fn fleet(&self) -> Result<Fleet, DbError> {
        let c = self.client().await?;
        let q = |e| self.query_err(e);
        let now: DateTime<Utc> = c.query_one("SELECT now()", &[]).await.map_err(q)?.get(0);
        let replicas = c
            .query(
                "SELECT name, started_at, seen_at, version, fenced_refusals, takeovers FROM replicas ORDER BY name",
                &[],
            )
            .await
            .map_err(q)?
            .iter()
            .map(|r| ReplicaRow {
                name: r.get(0),
                started_at: r.get(1),
                seen_at: r.get(2),
                version: r.get(3),
                fenced_refusals: r.get(4),
                takeovers: r.get(5),
            })
            .collect();
        let leases = c
            .query(
                "SELECT shard, holder, term, CASE WHEN until > '-infinity' THEN until END,
                        acquired_at, renewed_at
                 FROM leases ORDER BY shard",
                &[],
            )
            .await
            .map_err(q)?
            .iter()
            .map(|r| LeaseRow {
                shard: r.get::<_, i32>(0) as u32,
                holder: r.get(1),
                term: r.get(2),
                until: r.get(3),
                acquired_at: r.get(4),
                renewed_at: r.get(5),
            })
            .collect();
        Ok(Fleet {
            now,
            replicas,
            leases,
        })
    }

    /// One vault entry (`store/ozon-main`), if the database holds it.
    pub async fn vault_get(&self, entry: &str) -> Result<Option<StoredEntry>, DbError> {
        let c = self.client().await?;
        Ok(c.query_opt(
            "SELECT entry, armored, generation FROM vault_entries WHERE entry = $1",
            &[&entry],
        )
        .await
        .map_err(|e| self.query_err(e))?
        .map(|r| stored_entry(&r)))
    }

    /// The vault entries of these names that the database holds.
    pub async fn vault_get_many(&self, names: &[String]) -> Result<Vec<StoredEntry>, DbError> {
        let c = self.client().await?;
        Ok(c.query(
            "SELECT entry, armored, generation FROM vault_entries WHERE entry = ANY($1) ORDER BY entry",
            &[&names],
        )
        .await
        .map_err(|e| self.query_err(e))?
        .iter()
        .map(stored_entry)
        .collect())
    }

    /// Every vault entry, by name.
    pub async fn vault_all(&self) -> Result<Vec<StoredEntry>, DbError> {
        let c = self.client().await?;
        Ok(c.query(
            "SELECT entry, armored, generation FROM vault_entries ORDER BY entry",
            &[],
        )
        .await
        .map_err(|e| self.query_err(e))?
        .iter()
        .map(stored_entry)
        .collect())
    }

    /// Writes an entry under the fence of its store's shard: refused when the lease is no
    /// longer this replica's (`Fenced`) or when the stored generation is not `expected`
    /// (`Conflict`). A rotated token and the proof that its writer still held the store are
    /// one transaction.
    pub async fn vault_put_fenced(
        &self,
        fence: Fence,
        new: &StoredEntry,
        expected: Expect,
    ) -> Result<(), DbError> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(|e| self.query_err(e))?;
        check_fence(&tx, &self.me, fence)
            .await
            .map_err(|e| e.unwrap_or_else(|e| self.query_err(e)))?;
        let found: Option<i64> = tx
            .query_opt(
                "SELECT generation FROM vault_entries WHERE entry = $1 FOR UPDATE",
                &[&new.entry],
            )
            .await
            .map_err(|e| self.query_err(e))?
            .map(|r| r.get(0));
        let fits = match expected {
            Expect::Any => true,
            Expect::Exactly(g) => found == Some(g),
            Expect::Older => found.is_none_or(|g| g < new.generation),
        };
        if !fits {
            return Err(DbError::Conflict {
                entry: new.entry.clone(),
                expected: match expected {
                    Expect::Exactly(g) => g,
                    Expect::Any | Expect::Older => new.generation - 1,
                },
                found: found.unwrap_or(0),
            });
        }
        tx.execute(
            "INSERT INTO vault_entries (entry, armored, generation, updated_at, updated_by)
             VALUES ($1, $2, $3, now(), $4)
             ON CONFLICT (entry) DO UPDATE SET armored = $2, generation = $3,
                 updated_at = now(), updated_by = $4",
            &[&new.entry, &new.armored, &new.generation, &self.me],
        )
        .await
        .map_err(|e| self.query_err(e))?;
        tx.commit().await.map_err(|e| self.query_err(e))?;
        Ok(())
    }

    /// The vault's `recipients.txt` as imported (`None` before the first import).
    pub async fn vault_recipients(&self) -> Result<Option<String>, DbError> {
        let c = self.client().await?;
        Ok(c.query_opt(
            "SELECT value FROM storeguard_meta WHERE key = 'vault_recipients'",
            &[],
        )
        .await
        .map_err(|e| self.query_err(e))?
        .map(|r| r.get(0)))
    }

    /// Writes entries that are newer than what the database holds (`vault import`): an
    /// entry whose stored generation is the same or higher is left alone, so importing an old
    /// copy never undoes a rotation. Returns the entries written.
    /// `recipients` (the text of `recipients.txt`) replaces the stored one, in the same
    /// transaction.
    pub async fn vault_import(
        &self,
        recipients: &str,
        entries: &[StoredEntry],
    ) -> Result<Vec<String>, DbError> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(|e| self.query_err(e))?;
        tx.execute(
            "INSERT INTO storeguard_meta (key, value) VALUES ('vault_recipients', $1)
             ON CONFLICT (key) DO UPDATE SET value = $1",
            &[&recipients],
        )
        .await
        .map_err(|e| self.query_err(e))?;
        let mut written = Vec::new();
        for e in entries {
            let n = tx
                .execute(
                    "INSERT INTO vault_entries (entry, armored, generation, updated_at, updated_by)
                     VALUES ($1, $2, $3, now(), $4)
                     ON CONFLICT (entry) DO UPDATE SET armored = $2, generation = $3,
                         updated_at = now(), updated_by = $4
                     WHERE vault_entries.generation < $3",
                    &[&e.entry, &e.armored, &e.generation, &self.me],
                )
                .await
                .map_err(|e| self.query_err(e))?;
            if n == 1 {
                written.push(e.entry.clone());
            }
        }
        tx.commit().await.map_err(|e| self.query_err(e))?;
        Ok(written)
    }
}

/// Inside a transaction: locks the shard's lease row for the rest of it and checks that
/// `me` still holds it with `fence.term`, unexpired by the database's clock. Every write that
/// matters starts with this; `Err(Ok(Fenced))` is the refusal.
pub async fn check_fence(
    tx: &deadpool_postgres::Transaction<'_>,
    me: &str,
    fence: Fence,
) -> Result<(), Result<DbError, tokio_postgres::Error>> {
    let st = tx
        .prepare_cached(
            "SELECT 1 FROM leases WHERE shard = $1 AND holder = $2 AND term = $3
                 AND until > clock_timestamp() FOR SHARE",
        )
        .await
        .map_err(Err)?;
    let row = tx
        .query_opt(&st, &[&(fence.shard as i32), &me, &fence.term])
        .await
        .map_err(Err)?;
    match row {
        Some(_) => Ok(()),
        None => Err(Ok(DbError::Fenced {
            shard: fence.shard,
            term: fence.term,
        })),
    }
}

/// A `SELECT entry, armored, generation` row.
fn stored_entry(r: &tokio_postgres::Row) -> StoredEntry {
    StoredEntry {
        entry: r.get(0),
        armored: r.get(1),
        generation: r.get(2),
    }
}

/// The server's own words for an error (`db error: ERROR: …` says less than its message).
fn pg_detail(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(d) => format!("{}: {}", d.severity(), d.message()),
        None => {
            let mut s = e.to_string();
            let mut src = std::error::Error::source(e);
            while let Some(inner) = src {
                s.push_str(": ");
                s.push_str(&inner.to_string());
                src = inner.source();
            }
            s
        }
    }
}
