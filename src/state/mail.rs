//! What the mailbox watchers keep: folder cursors and login records from security mail.

use super::*;

/// Where a folder was read up to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MailCursor {
    pub uid_validity: u32,
    pub last_uid: u32,
    pub updated_at: DateTime<Utc>,
}

/// One security mail as a login record of one store. Holds no body, link or code.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct MailRecord {
    /// Hash of the Message-ID (of the raw message when it has none).
    pub mail_hash: String,
    pub store_id: String,
    /// When the mail arrived (the server's INTERNALDATE, else its Date).
    pub at: DateTime<Utc>,
    /// The mail event (`new_sign_in`, …, `phishing_suspected`) or `unclassified`.
    pub event: String,
    /// The alert's finding, when one was raised (`suspicious_login` for a sign-in outside
    /// login hours); `None`: recorded only.
    pub finding: Option<String>,
    /// `authenticated`, `unverified`, `spoofed` or `look-alike`.
    pub verdict: String,
    /// The From domain.
    pub domain: String,
    /// Labelled facts (When, Device, Near, Место …), redacted.
    pub facts: Vec<(String, String)>,
    pub mailbox: String,
    /// Whether an alert was queued (false for back-filled history and unclassified mail).
    pub alerted: bool,
}

impl State {
    /// The cursor of one folder, if it was read before.
    pub fn mail_cursor(
        &self,
        mailbox: &str,
        folder: &str,
    ) -> Result<Option<MailCursor>, StateError> {
        let conn = self.conn();
        let row = conn
            .prepare_cached(
                "SELECT uid_validity, last_uid, updated_at_ms FROM mail_cursors
                 WHERE mailbox = ?1 AND folder = ?2",
            )?
            .query_row(params![mailbox, folder], |r| {
                Ok(MailCursor {
                    uid_validity: r.get::<_, i64>(0)? as u32,
                    last_uid: r.get::<_, i64>(1)? as u32,
                    updated_at: from_ms(r.get(2)?),
                })
            })
            .optional()?;
        Ok(row)
    }

    /// Records what one batch of a folder held and moves its cursor, atomically: a kill before
    /// the commit reads the batch again, after it never. A mail already recorded for a store
    /// (the same Message-ID in two folders, or read again after UIDVALIDITY changed) is not
    /// recorded or alerted again. Returns how many records were new.
    pub fn record_mail(
        &self,
        mailbox: &str,
        folder: &str,
        cursor: MailCursor,
        mails: &[(MailRecord, Option<Routed>)],
    ) -> Result<usize, StateError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let mut new = 0;
        for (m, routed) in mails {
            let facts =
                serde_json::to_string(&m.facts).map_err(|e| StateError::Corrupt(e.to_string()))?;
            let inserted = exec(
                &tx,
                "INSERT OR IGNORE INTO mail_records (mail_hash, store_id, at_ms, seen_at_ms, event,
                     finding, verdict, domain, facts, mailbox, alerted)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                params![
                    m.mail_hash,
                    m.store_id,
                    ms(m.at),
                    ms(cursor.updated_at),
                    m.event,
                    m.finding,
                    m.verdict,
                    m.domain,
                    facts,
                    m.mailbox,
                    m.alerted && routed.is_some()
                ],
            )?;
            if inserted == 0 {
                continue;
            }
            new += 1;
            if let Some(r) = routed {
                record_notice(&tx, r)?;
            }
        }
        exec(
            &tx,
            "INSERT INTO mail_cursors (mailbox, folder, uid_validity, last_uid, updated_at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (mailbox, folder) DO UPDATE SET uid_validity = ?3, last_uid = ?4,
                 updated_at_ms = ?5",
            params![
                mailbox,
                folder,
                cursor.uid_validity as i64,
                cursor.last_uid as i64,
                ms(cursor.updated_at)
            ],
        )?;
        tx.commit()?;
        Ok(new)
    }

    /// Queues notices: events about something that happened once (a mail, a refused mailbox
    /// login), whose incidents are closed as they open.
    pub fn record_notices(&self, routed: &[Routed]) -> Result<(), StateError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        for r in routed {
            record_notice(&tx, r)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Login records, newest first: of one store, or of all.
    pub fn mail_records(
        &self,
        store_id: Option<&str>,
        limit: usize,
    ) -> Result<Vec<MailRecord>, StateError> {
        self.mail_records_since(store_id, DateTime::<Utc>::MIN_UTC, limit)
    }

    /// Login records that arrived at or after `since`, newest first.
    pub fn mail_records_since(
        &self,
        store_id: Option<&str>,
        since: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<MailRecord>, StateError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT mail_hash, store_id, at_ms, event, finding, verdict, domain, facts, mailbox,
                    alerted
             FROM mail_records WHERE (?1 IS NULL OR store_id = ?1) AND at_ms >= ?3
             ORDER BY at_ms DESC, mail_hash LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![store_id, limit as i64, ms(since)], |r| {
            let facts: String = r.get(7)?;
            Ok(MailRecord {
                mail_hash: r.get(0)?,
                store_id: r.get(1)?,
                at: from_ms(r.get(2)?),
                event: r.get(3)?,
                finding: r.get(4)?,
                verdict: r.get(5)?,
                domain: r.get(6)?,
                facts: serde_json::from_str(&facts).unwrap_or_default(),
                mailbox: r.get(8)?,
                alerted: r.get(9)?,
            })
        })?;
        let mut out = Vec::new();
        for r in rows {
            out.push(r?);
        }
        Ok(out)
    }
}

fn record_notice(tx: &rusqlite::Transaction<'_>, r: &Routed) -> Result<(), StateError> {
    record_event(tx, r)?;
    exec(
        tx,
        "UPDATE incidents SET resolved_at_ms = opened_at_ms
         WHERE incident_id = ?1 AND resolved_at_ms IS NULL",
        params![r.event.incident_id],
    )?;
    Ok(())
}
