//! Login history: raw checks, their daily compaction into runs, and the reads over both.

use super::*;

impl State {
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
