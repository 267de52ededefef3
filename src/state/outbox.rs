//! The outbox: events queued with their channels, claimed when due, marked after each
//! attempt; incidents as recorded.

use super::*;

impl State {
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
}

pub(super) fn record_event(
    tx: &rusqlite::Transaction<'_>,
    routed: &Routed,
) -> Result<(), StateError> {
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
