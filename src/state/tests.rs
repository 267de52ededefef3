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
            include_str!("../../tests/fixtures/state/health.json"),
        ),
        (
            "last_outcome.json",
            serde_json::to_value(&o).unwrap(),
            include_str!("../../tests/fixtures/state/last_outcome.json"),
        ),
        (
            "outbox_payload.json",
            serde_json::to_value(&events[0]).unwrap(),
            include_str!("../../tests/fixtures/state/outbox_payload.json"),
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
        serde_json::from_str(include_str!("../../tests/fixtures/state/health.json")).unwrap();
    assert_eq!(read_h, h);
    let read_o: Outcome =
        serde_json::from_str(include_str!("../../tests/fixtures/state/last_outcome.json")).unwrap();
    assert_eq!(read_o.findings, o.findings);
    let read_e: AlertEvent = serde_json::from_str(include_str!(
        "../../tests/fixtures/state/outbox_payload.json"
    ))
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
        e.contains("written by a newer storeguard (schema 99; this one knows up to 2)"),
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
    // A version-1 file (before the mailbox watchers) gains their tables.
    Connection::open(&path)
        .unwrap()
        .execute_batch(
            "DROP TABLE mail_cursors; DROP TABLE mail_records;
             UPDATE meta SET value = '1' WHERE key = 'schema';",
        )
        .unwrap();
    let s = State::open(dir.path()).unwrap();
    assert_eq!(version(&path), "2");
    assert_eq!(s.mail_cursor("m", "INBOX").unwrap(), None);
    assert!(s.mail_records(None, 10).unwrap().is_empty());
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
            HistoryEntry::Mail(_) => 0,
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

#[test]
fn a_mail_is_recorded_and_alerted_once_with_its_cursor() {
    use crate::event::{AlertEvent, EventKind, Subject};
    use crate::model::{Marketplace, Severity};
    use crate::outcome::FindingKind;
    let dir = tempfile::tempdir().unwrap();
    let s = State::open(dir.path()).unwrap();
    let now = Utc.timestamp_opt(1_800_000_000, 0).unwrap();
    let record = MailRecord {
        mail_hash: "h1".into(),
        store_id: "amazon-us".into(),
        at: now,
        event: "new_sign_in".into(),
        finding: Some("new_sign_in".into()),
        verdict: "authenticated".into(),
        domain: "amazon.com".into(),
        facts: vec![("Near".into(), "Shenzhen".into())],
        mailbox: "m".into(),
        alerted: true,
    };
    let routed = Routed {
        event: AlertEvent {
            event_id: "mail-1".into(),
            event: EventKind::Opened,
            incident_id: "mail:h1:amazon-us".into(),
            subject: Subject::store("amazon-us", "US", Marketplace::Amazon),
            severity: Severity::Warning,
            finding: FindingKind::NewSignIn,
            detail: "mail from amazon.com".into(),
            opened_at: now,
            created_at: now,
            affected: vec![],
            test: false,
        },
        channels: vec!["hook".into()],
        hold_until: None,
    };
    let cursor = MailCursor {
        uid_validity: 7,
        last_uid: 3,
        updated_at: now,
    };
    let batch = [(record.clone(), Some(routed))];
    assert_eq!(s.record_mail("m", "INBOX", cursor, &batch).unwrap(), 1);
    // Read again (a copy in another folder, or a rebuilt folder): no second record or alert.
    assert_eq!(s.record_mail("m", "Junk", cursor, &batch).unwrap(), 0);
    assert_eq!(s.outbox_rows_for("mail-1").unwrap(), 1);
    assert!(!s.incident_open("mail:h1:amazon-us").unwrap());
    assert_eq!(s.mail_cursor("m", "INBOX").unwrap(), Some(cursor));
    assert_eq!(s.mail_records(Some("amazon-us"), 5).unwrap(), vec![record]);
    assert!(s.mail_records(Some("other"), 5).unwrap().is_empty());
}

#[test]
fn reading_a_missing_state_says_what_writes_it() {
    let dir = tempfile::tempdir().unwrap();
    let Err(e) = State::open_read_only(dir.path()) else {
        panic!("a missing state file opened");
    };
    let text = e.to_string();
    assert!(text.contains("no state yet"), "{text}");
    assert!(text.contains("storeguard run"), "{text}");
    // A one-off check records nothing: the help must not send the user to it.
    assert!(text.contains("records nothing"), "{text}");
    // Unreadable or broken files get their own help.
    assert!(
        read_only_help(Some(std::io::ErrorKind::PermissionDenied)).contains("sudo -u storeguard")
    );
    assert!(read_only_help(None).contains("state_dir"));
    // A directory in place of the file is not "no state yet".
    std::fs::create_dir(dir.path().join(FILE_NAME)).unwrap();
    let Err(e) = State::open_read_only(dir.path()) else {
        panic!("a directory opened as the state file");
    };
    assert!(!e.to_string().contains("no state yet"), "{e}");
}
