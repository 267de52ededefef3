//! The daemon's state on the fleet's PostgreSQL: the same rows as the SQLite file (login
//! history, store health, incidents, the outbox, silences, mail cursors and records), shared
//! by every replica. Writes of a store's check carry the fence of its shard and are refused
//! when this replica's term is stale; an outbox row is delivered only by the replica holding
//! its subject's shard, so a store's alerts stay in order and a takeover repeats at most the
//! one delivery in flight, with the same `event_id`.

use super::*;
use crate::replica::{Db, DbError, Fence, shard_of};
use tokio_postgres::types::ToSql;

/// State rows on PostgreSQL, for one replica.
#[derive(Clone, Debug)]
pub struct PgState {
    db: Db,
    shards: u32,
}

type Tx<'a> = deadpool_postgres::Transaction<'a>;

impl From<DbError> for StateError {
    fn from(e: DbError) -> Self {
        StateError::Fleet(e)
    }
}

impl PgState {
    /// The state of a fleet cut into `shards` (the schema must be migrated: see
    /// [`Db::migrate`]).
    pub fn new(db: Db, shards: u32) -> PgState {
        PgState { db, shards }
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    fn err(&self, e: tokio_postgres::Error) -> StateError {
        StateError::Fleet(self.db.query_err(e))
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StateError> {
        Ok(self.db.client().await?)
    }

    async fn query(
        &self,
        sql: &str,
        p: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, StateError> {
        let c = self.client().await?;
        let st = c.prepare_cached(sql).await.map_err(|e| self.err(e))?;
        c.query(&st, p).await.map_err(|e| self.err(e))
    }

    async fn execute(&self, sql: &str, p: &[&(dyn ToSql + Sync)]) -> Result<u64, StateError> {
        let c = self.client().await?;
        let st = c.prepare_cached(sql).await.map_err(|e| self.err(e))?;
        c.execute(&st, p).await.map_err(|e| self.err(e))
    }

    /// Every store's persisted state.
    pub async fn load_stores(&self) -> Result<Vec<StoreRow>, StateError> {
        let rows = self
            .query(
                "SELECT store_id, health, last_outcome, backoff_until_ms, backoff_level
                 FROM stores ORDER BY store_id",
                &[],
            )
            .await?;
        rows.iter().map(store_row).collect()
    }

    /// The persisted state of some stores (a replica that takes a shard over reads what its
    /// previous holder wrote).
    pub async fn load_stores_of(&self, ids: &[String]) -> Result<Vec<StoreRow>, StateError> {
        let rows = self
            .query(
                "SELECT store_id, health, last_outcome, backoff_until_ms, backoff_level
                 FROM stores WHERE store_id = ANY($1) ORDER BY store_id",
                &[&ids],
            )
            .await?;
        rows.iter().map(store_row).collect()
    }

    /// The stores written since `version` (by any replica), and the newest version seen: a
    /// replica follows the stores it does not hold with this, a few rows per tick.
    pub async fn stores_changed_since(
        &self,
        version: i64,
    ) -> Result<(Vec<StoreRow>, i64), StateError> {
        let rows = self
            .query(
                "SELECT store_id, health, last_outcome, backoff_until_ms, backoff_level, version
                 FROM stores WHERE version > $1 ORDER BY version",
                &[&version],
            )
            .await?;
        let newest = rows.last().map_or(version, |r| r.get(5));
        Ok((
            rows.iter().map(store_row).collect::<Result<_, _>>()?,
            newest,
        ))
    }

    /// Records finished checks in one transaction. A check whose fence is stale (its shard
    /// was taken over) is not written; the positions of those are returned. The others are
    /// written together, each with its alerts.
    pub async fn record_checks(&self, rows: &[&CheckWrite]) -> Result<Vec<usize>, StateError> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(|e| self.err(e))?;
        let valid = self
            .lock_fences(&tx, rows.iter().filter_map(|r| r.fence))
            .await?;
        let mut refused = Vec::new();
        for (i, row) in rows.iter().enumerate() {
            if row.fence.is_some_and(|f| !valid.contains(&f)) {
                refused.push(i);
                continue;
            }
            self.write_check(&tx, row).await?;
        }
        tx.commit().await.map_err(|e| self.err(e))?;
        Ok(refused)
    }

    /// Locks the lease rows of `fences` for the rest of the transaction and returns those
    /// still held by this replica with the same term, unexpired by the database's clock.
    async fn lock_fences(
        &self,
        tx: &Tx<'_>,
        fences: impl Iterator<Item = Fence>,
    ) -> Result<Vec<Fence>, StateError> {
        let mut shards: Vec<i32> = Vec::new();
        let mut terms: Vec<i64> = Vec::new();
        for f in fences {
            if !shards.contains(&(f.shard as i32)) {
                shards.push(f.shard as i32);
                terms.push(f.term);
            }
        }
        if shards.is_empty() {
            return Ok(Vec::new());
        }
        let st = tx
            .prepare_cached(
                "SELECT l.shard, l.term FROM leases l
                 JOIN unnest($1::int[], $2::bigint[]) AS h(shard, term)
                   ON l.shard = h.shard AND l.term = h.term
                 WHERE l.holder = $3 AND l.until > clock_timestamp()
                 ORDER BY l.shard
                 FOR SHARE OF l",
            )
            .await
            .map_err(|e| self.err(e))?;
        Ok(tx
            .query(&st, &[&shards, &terms, &self.db.me()])
            .await
            .map_err(|e| self.err(e))?
            .iter()
            .map(|r| Fence {
                shard: r.get::<_, i32>(0) as u32,
                term: r.get(1),
            })
            .collect())
    }

    async fn write_check(&self, tx: &Tx<'_>, row: &CheckWrite) -> Result<(), StateError> {
        let upsert_health = tx
            .prepare_cached(
                "INSERT INTO stores (store_id, health) VALUES ($1, $2)
                 ON CONFLICT (store_id) DO UPDATE SET health = $2,
                     version = nextval('store_versions')",
            )
            .await
            .map_err(|e| self.err(e))?;
        for (id, json) in &row.others {
            tx.execute(&upsert_health, &[id, json])
                .await
                .map_err(|e| self.err(e))?;
        }
        let st = tx
            .prepare_cached(
                "INSERT INTO stores (store_id, health, last_outcome, backoff_until_ms, backoff_level)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (store_id) DO UPDATE SET health = $2, last_outcome = $3,
                     backoff_until_ms = $4, backoff_level = $5, version = nextval('store_versions')
                 RETURNING id",
            )
            .await
            .map_err(|e| self.err(e))?;
        let id: i64 = tx
            .query_one(
                &st,
                &[
                    &row.row.store_id,
                    &row.health,
                    &row.row.outcome,
                    &row.backoff.until.map(ms),
                    &(row.backoff.level as i32),
                ],
            )
            .await
            .map_err(|e| self.err(e))?
            .get(0);
        let st = tx
            .prepare_cached(
                "INSERT INTO checks (store, at_ms, status, findings, latency_ms, egress, account, replica)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                 ON CONFLICT (store, at_ms) DO UPDATE SET status = $3, findings = $4,
                     latency_ms = $5, egress = $6, account = $7, replica = $8",
            )
            .await
            .map_err(|e| self.err(e))?;
        tx.execute(
            &st,
            &[
                &id,
                &row.row.at_ms,
                &(row.row.status as i16),
                &row.row.findings,
                &row.row.latency_ms,
                &row.row.egress,
                &row.row.account,
                &self.db.me(),
            ],
        )
        .await
        .map_err(|e| self.err(e))?;
        for r in &row.routed {
            self.write_event(tx, r).await?;
        }
        Ok(())
    }

    async fn write_event(&self, tx: &Tx<'_>, routed: &Routed) -> Result<(), StateError> {
        use crate::event::EventKind;
        let event = &routed.event;
        let key = event.subject.key();
        let sql = match event.event {
            EventKind::Opened => {
                "INSERT INTO incidents (incident_id, store_id, finding, severity, opened_at_ms, detail)
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (incident_id) DO NOTHING"
            }
            EventKind::Resolved => "UPDATE incidents SET resolved_at_ms = $2 WHERE incident_id = $1",
            EventKind::Reminder => "UPDATE incidents SET detail = $2 WHERE incident_id = $1",
        };
        let st = tx.prepare_cached(sql).await.map_err(|e| self.err(e))?;
        let opened = ms(event.opened_at);
        let created = ms(event.created_at);
        let (finding, severity) = (event.finding.as_str(), event.severity.as_str());
        let key_ref: &str = &key;
        let params: Vec<&(dyn ToSql + Sync)> = match event.event {
            EventKind::Opened => vec![
                &event.incident_id,
                &key_ref,
                &finding,
                &severity,
                &opened,
                &event.detail,
            ],
            EventKind::Resolved => vec![&event.incident_id, &created],
            EventKind::Reminder => vec![&event.incident_id, &event.detail],
        };
        tx.execute(&st, &params).await.map_err(|e| self.err(e))?;
        let payload =
            serde_json::to_string(event).map_err(|e| StateError::Corrupt(e.to_string()))?;
        let (next, held) = match routed.hold_until {
            Some(t) => (ms(t), true),
            None => (created, false),
        };
        let shard = shard_of(key_ref, self.shards) as i32;
        let kind = match event.event {
            EventKind::Opened => "opened",
            EventKind::Resolved => "resolved",
            EventKind::Reminder => "reminder",
        };
        let st = tx
            .prepare_cached(
                "INSERT INTO outbox (event_id, channel, store_id, shard, incident_id, kind, payload,
                     created_at_ms, next_attempt_ms, held)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                 ON CONFLICT (event_id, channel) DO NOTHING",
            )
            .await
            .map_err(|e| self.err(e))?;
        for channel in &routed.channels {
            tx.execute(
                &st,
                &[
                    &event.event_id,
                    channel,
                    &key_ref,
                    &shard,
                    &event.incident_id,
                    &kind,
                    &payload,
                    &created,
                    &next,
                    &held,
                ],
            )
            .await
            .map_err(|e| self.err(e))?;
        }
        Ok(())
    }

    /// Queues events that do not come from a check (grouped incidents, daemon faults).
    pub async fn record_events(&self, routed: &[Routed]) -> Result<(), StateError> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(|e| self.err(e))?;
        for r in routed {
            self.write_event(&tx, r).await?;
        }
        tx.commit().await.map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Queues notices: incidents closed as they open (a mail, a refused mailbox login).
    pub async fn record_notices(&self, routed: &[Routed]) -> Result<(), StateError> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(|e| self.err(e))?;
        for r in routed {
            self.write_notice(&tx, r).await?;
        }
        tx.commit().await.map_err(|e| self.err(e))?;
        Ok(())
    }

    async fn write_notice(&self, tx: &Tx<'_>, r: &Routed) -> Result<(), StateError> {
        self.write_event(tx, r).await?;
        tx.execute(
            "UPDATE incidents SET resolved_at_ms = opened_at_ms
             WHERE incident_id = $1 AND resolved_at_ms IS NULL",
            &[&r.event.incident_id],
        )
        .await
        .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Rows due for one channel (`None`: every channel) among the shards this replica holds
    /// (`shards`), oldest first, never a row while an older one of the same (channel, store)
    /// is still pending.
    pub async fn due_outbox_for(
        &self,
        channel: Option<&str>,
        shards: &[u32],
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<OutboxRow>, StateError> {
        let shards: Vec<i32> = shards.iter().map(|s| *s as i32).collect();
        let rows = self
            .query(
                "SELECT o.seq, o.channel, o.payload, o.attempts, o.created_at_ms, o.held FROM outbox o
                 WHERE o.delivered_at_ms IS NULL AND o.gave_up_at_ms IS NULL AND o.next_attempt_ms <= $1
                   AND o.shard = ANY($4)
                   AND NOT EXISTS (SELECT 1 FROM outbox p
                       WHERE p.channel = o.channel AND p.store_id = o.store_id AND p.seq < o.seq
                         AND p.delivered_at_ms IS NULL AND p.gave_up_at_ms IS NULL)
                   AND ($3::text IS NULL OR o.channel = $3)
                 ORDER BY o.seq LIMIT $2",
                &[&ms(now), &(limit as i64), &channel, &shards],
            )
            .await?;
        rows.iter()
            .map(|r| {
                let seq: i64 = r.get(0);
                let payload: String = r.get(2);
                let event: AlertEvent = serde_json::from_str(&payload)
                    .map_err(|e| StateError::Corrupt(format!("outbox row {seq}: {e}")))?;
                Ok(OutboxRow {
                    seq,
                    channel: r.get(1),
                    event,
                    attempts: r.get::<_, i32>(3) as u32,
                    created_at: from_ms(r.get(4)),
                    held: r.get(5),
                })
            })
            .collect()
    }

    /// Each channel with pending rows in `shards`, and when its earliest one is due.
    pub async fn pending_channels(
        &self,
        shards: &[u32],
    ) -> Result<Vec<(String, DateTime<Utc>)>, StateError> {
        let shards: Vec<i32> = shards.iter().map(|s| *s as i32).collect();
        let rows = self
            .query(
                "SELECT channel, MIN(next_attempt_ms) FROM outbox
                 WHERE delivered_at_ms IS NULL AND gave_up_at_ms IS NULL AND shard = ANY($1)
                 GROUP BY channel ORDER BY channel",
                &[&shards],
            )
            .await?;
        Ok(rows.iter().map(|r| (r.get(0), from_ms(r.get(1)))).collect())
    }

    pub async fn mark_delivered(&self, seq: i64, now: DateTime<Utc>) -> Result<(), StateError> {
        self.execute(
            "UPDATE outbox SET delivered_at_ms = $2, attempts = attempts + 1, last_error = NULL WHERE seq = $1",
            &[&seq, &ms(now)],
        )
        .await?;
        Ok(())
    }

    pub async fn mark_retry(
        &self,
        seq: i64,
        next: DateTime<Utc>,
        error: &str,
    ) -> Result<(), StateError> {
        self.execute(
            "UPDATE outbox SET next_attempt_ms = $2, attempts = attempts + 1, last_error = $3 WHERE seq = $1",
            &[&seq, &ms(next), &error],
        )
        .await?;
        Ok(())
    }

    pub async fn mark_gave_up(
        &self,
        seq: i64,
        now: DateTime<Utc>,
        reason: &str,
    ) -> Result<(), StateError> {
        self.execute(
            "UPDATE outbox SET gave_up_at_ms = $2, attempts = attempts + 1, last_error = $3 WHERE seq = $1",
            &[&seq, &ms(now), &reason],
        )
        .await?;
        Ok(())
    }

    /// Pending outbox rows of the whole fleet.
    pub async fn outbox_depth(&self) -> Result<u64, StateError> {
        let rows = self
            .query(
                "SELECT COUNT(*) FROM outbox WHERE delivered_at_ms IS NULL AND gave_up_at_ms IS NULL",
                &[],
            )
            .await?;
        Ok(rows[0].get::<_, i64>(0) as u64)
    }

    /// Count of every outbox row with this event id.
    pub async fn outbox_rows_for(&self, event_id: &str) -> Result<u64, StateError> {
        let rows = self
            .query(
                "SELECT COUNT(*) FROM outbox WHERE event_id = $1",
                &[&event_id],
            )
            .await?;
        Ok(rows[0].get::<_, i64>(0) as u64)
    }

    /// The channels an event was queued for.
    pub async fn channels_of(&self, event_id: &str) -> Result<Vec<String>, StateError> {
        let rows = self
            .query(
                "SELECT channel FROM outbox WHERE event_id = $1 ORDER BY seq",
                &[&event_id],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Whether the incident's `opened` alert reached `channel`.
    pub async fn opened_delivered(
        &self,
        incident_id: &str,
        channel: &str,
    ) -> Result<bool, StateError> {
        let rows = self
            .query(
                "SELECT EXISTS (SELECT 1 FROM outbox WHERE incident_id = $1 AND channel = $2
                     AND kind = 'opened' AND delivered_at_ms IS NOT NULL)",
                &[&incident_id, &channel],
            )
            .await?;
        Ok(rows[0].get(0))
    }

    /// Whether an incident is still open.
    pub async fn incident_open(&self, incident_id: &str) -> Result<bool, StateError> {
        let rows = self
            .query(
                "SELECT resolved_at_ms FROM incidents WHERE incident_id = $1",
                &[&incident_id],
            )
            .await?;
        Ok(rows
            .first()
            .is_some_and(|r| r.get::<_, Option<i64>>(0).is_none()))
    }

    /// A store's incidents, newest first.
    pub async fn incidents(
        &self,
        store_id: &str,
        limit: usize,
    ) -> Result<Vec<IncidentRow>, StateError> {
        let rows = self
            .query(
                "SELECT incident_id, store_id, finding, severity, opened_at_ms, resolved_at_ms, detail
                 FROM incidents WHERE store_id = $1 ORDER BY opened_at_ms DESC LIMIT $2",
                &[&store_id, &(limit as i64)],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| IncidentRow {
                incident_id: r.get(0),
                store_id: r.get(1),
                finding: r.get(2),
                severity: r.get(3),
                opened_at: from_ms(r.get(4)),
                resolved_at: r.get::<_, Option<i64>>(5).map(from_ms),
                detail: r.get(6),
            })
            .collect())
    }

    /// Silences a store's notifications until `until`.
    pub async fn set_silence(
        &self,
        store_id: &str,
        until: DateTime<Utc>,
    ) -> Result<(), StateError> {
        self.execute(
            "INSERT INTO silences (store_id, until_ms) VALUES ($1, $2)
             ON CONFLICT (store_id) DO UPDATE SET until_ms = $2",
            &[&store_id, &ms(until)],
        )
        .await?;
        Ok(())
    }

    /// Silences still in force at `now`.
    pub async fn silences(
        &self,
        now: DateTime<Utc>,
    ) -> Result<std::collections::HashMap<String, DateTime<Utc>>, StateError> {
        let rows = self
            .query(
                "SELECT store_id, until_ms FROM silences WHERE until_ms > $1",
                &[&ms(now)],
            )
            .await?;
        Ok(rows.iter().map(|r| (r.get(0), from_ms(r.get(1)))).collect())
    }

    /// A store's login records since `since`, newest first.
    pub async fn history(
        &self,
        store_id: &str,
        since: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<CheckRow>, StateError> {
        let rows = self
            .query(
                "SELECT c.at_ms, c.status, c.findings, c.latency_ms, c.egress, c.account
                 FROM checks c JOIN stores s ON s.id = c.store
                 WHERE s.store_id = $1 AND c.at_ms >= $2 ORDER BY c.at_ms DESC LIMIT $3",
                &[&store_id, &ms(since), &(limit as i64)],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| CheckRow {
                store_id: store_id.to_string(),
                at: from_ms(r.get(0)),
                status: status_from(i64::from(r.get::<_, i16>(1))),
                findings: r
                    .get::<_, Option<String>>(2)
                    .map(|s| s.split(',').map(str::to_string).collect())
                    .unwrap_or_default(),
                latency_ms: r.get::<_, i64>(3) as u64,
                egress: r.get(4),
                account: r.get(5),
            })
            .collect())
    }

    /// The newest `per_store` login records of every store since `since`, newest first (the
    /// status page's strips): one index range per store.
    pub async fn recent_checks(
        &self,
        since: DateTime<Utc>,
        per_store: usize,
    ) -> Result<std::collections::HashMap<String, Vec<CheckRow>>, StateError> {
        let mut out: std::collections::HashMap<String, Vec<CheckRow>> =
            std::collections::HashMap::new();
        if per_store == 0 {
            return Ok(out);
        }
        let rows = self
            .query(
                "SELECT s.store_id, c.at_ms, c.status, c.findings, c.latency_ms, c.egress, c.account
                 FROM stores s CROSS JOIN LATERAL (
                     SELECT * FROM checks c WHERE c.store = s.id AND c.at_ms >= $1
                     ORDER BY c.at_ms DESC LIMIT $2) c
                 ORDER BY s.store_id, c.at_ms DESC",
                &[&ms(since), &(per_store as i64)],
            )
            .await?;
        for r in &rows {
            let row = CheckRow {
                store_id: r.get(0),
                at: from_ms(r.get(1)),
                status: status_from(i64::from(r.get::<_, i16>(2))),
                findings: r
                    .get::<_, Option<String>>(3)
                    .map(|s| s.split(',').map(str::to_string).collect())
                    .unwrap_or_default(),
                latency_ms: r.get::<_, i64>(4) as u64,
                egress: r.get(5),
                account: r.get(6),
            };
            out.entry(row.store_id.clone()).or_default().push(row);
        }
        Ok(out)
    }

    /// Deletes login records older than `before`, and delivered or abandoned outbox rows and
    /// resolved incidents older than it. Returns how many history rows went.
    pub async fn prune(&self, before: DateTime<Utc>) -> Result<usize, StateError> {
        let t = ms(before);
        let n = self
            .execute("DELETE FROM checks WHERE at_ms < $1", &[&t])
            .await?;
        self.execute(
            "DELETE FROM outbox WHERE (delivered_at_ms IS NOT NULL OR gave_up_at_ms IS NOT NULL) AND created_at_ms < $1",
            &[&t],
        )
        .await?;
        self.execute(
            "DELETE FROM incidents WHERE resolved_at_ms IS NOT NULL AND resolved_at_ms < $1",
            &[&t],
        )
        .await?;
        Ok(n as usize)
    }

    /// The cursor of one folder, if it was read before.
    pub async fn mail_cursor(
        &self,
        mailbox: &str,
        folder: &str,
    ) -> Result<Option<MailCursor>, StateError> {
        let rows = self
            .query(
                "SELECT uid_validity, last_uid, updated_at_ms FROM mail_cursors
                 WHERE mailbox = $1 AND folder = $2",
                &[&mailbox, &folder],
            )
            .await?;
        Ok(rows.first().map(|r| MailCursor {
            uid_validity: r.get::<_, i64>(0) as u32,
            last_uid: r.get::<_, i64>(1) as u32,
            updated_at: from_ms(r.get(2)),
        }))
    }

    /// Records one batch of a folder and moves its cursor, atomically; a mail already
    /// recorded for a store is not recorded or alerted again. Returns how many were new.
    pub async fn record_mail(
        &self,
        mailbox: &str,
        folder: &str,
        cursor: MailCursor,
        mails: &[(MailRecord, Option<Routed>)],
    ) -> Result<usize, StateError> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(|e| self.err(e))?;
        let mut new = 0;
        for (m, routed) in mails {
            let facts =
                serde_json::to_string(&m.facts).map_err(|e| StateError::Corrupt(e.to_string()))?;
            let inserted = tx
                .execute(
                    "INSERT INTO mail_records (mail_hash, store_id, at_ms, seen_at_ms, event,
                         finding, verdict, domain, facts, mailbox, alerted)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
                     ON CONFLICT (mail_hash, store_id) DO NOTHING",
                    &[
                        &m.mail_hash,
                        &m.store_id,
                        &ms(m.at),
                        &ms(cursor.updated_at),
                        &m.event,
                        &m.finding,
                        &m.verdict,
                        &m.domain,
                        &facts,
                        &m.mailbox,
                        &(m.alerted && routed.is_some()),
                    ],
                )
                .await
                .map_err(|e| self.err(e))?;
            if inserted == 0 {
                continue;
            }
            new += 1;
            if let Some(r) = routed {
                self.write_notice(&tx, r).await?;
            }
        }
        tx.execute(
            "INSERT INTO mail_cursors (mailbox, folder, uid_validity, last_uid, updated_at_ms)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (mailbox, folder) DO UPDATE SET uid_validity = $3, last_uid = $4,
                 updated_at_ms = $5",
            &[
                &mailbox,
                &folder,
                &i64::from(cursor.uid_validity),
                &i64::from(cursor.last_uid),
                &ms(cursor.updated_at),
            ],
        )
        .await
        .map_err(|e| self.err(e))?;
        tx.commit().await.map_err(|e| self.err(e))?;
        Ok(new)
    }

    /// Login records from security mail since `since`, newest first: of one store, or of all.
    pub async fn mail_records_since(
        &self,
        store_id: Option<&str>,
        since: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<MailRecord>, StateError> {
        let rows = self
            .query(
                "SELECT mail_hash, store_id, at_ms, event, finding, verdict, domain, facts, mailbox,
                        alerted
                 FROM mail_records WHERE ($1::text IS NULL OR store_id = $1) AND at_ms >= $3
                 ORDER BY at_ms DESC, mail_hash LIMIT $2",
                &[&store_id, &(limit as i64), &ms(since)],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| MailRecord {
                mail_hash: r.get(0),
                store_id: r.get(1),
                at: from_ms(r.get(2)),
                event: r.get(3),
                finding: r.get(4),
                verdict: r.get(5),
                domain: r.get(6),
                facts: serde_json::from_str(r.get::<_, &str>(7)).unwrap_or_default(),
                mailbox: r.get(8),
                alerted: r.get(9),
            })
            .collect())
    }
}

fn store_row(r: &tokio_postgres::Row) -> Result<StoreRow, StateError> {
    let store_id: String = r.get(0);
    let health: StoreHealth = serde_json::from_str(r.get::<_, &str>(1))
        .map_err(|e| StateError::Corrupt(format!("health of {store_id}: {e}")))?;
    let last_outcome = match r.get::<_, Option<&str>>(2) {
        Some(o) => Some(
            serde_json::from_str(o)
                .map_err(|e| StateError::Corrupt(format!("last outcome of {store_id}: {e}")))?,
        ),
        None => None,
    };
    Ok(StoreRow {
        store_id,
        health,
        last_outcome,
        backoff_until: r.get::<_, Option<i64>>(3).map(from_ms),
        backoff_level: r.get::<_, i32>(4) as u32,
    })
}
