//! Several replicas on a real PostgreSQL (started by the test on loopback): leases are
//! exclusive and spread, a dead replica's shards are taken over only after its lease expired
//! by the database's clock and within the bound, a stalled replica is fenced, a clean stop
//! hands over at once, and a database restart needs no operator.

use crate::util::pg::Postgres;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use storeguard::replica::{Db, DbError, Expect, Fence, Replica, StoredEntry, Target};

const TTL: Duration = Duration::from_millis(1500);

fn target(url: &str, name: &str) -> Target {
    Target {
        url: url.to_string(),
        password: None,
        replica: name.to_string(),
        timeout: TTL / 3,
    }
}

async fn join(url: &str, name: &str, shards: u32) -> Replica {
    Replica::join(Db::new(&target(url, name)).unwrap(), shards, TTL)
        .await
        .unwrap()
}

/// Ticks every replica once per tick interval until `done` holds (or the deadline passes).
async fn tick_until(
    replicas: &mut [&mut Replica],
    limit: Duration,
    mut done: impl FnMut(&[&mut Replica]) -> bool,
) -> Duration {
    let start = Instant::now();
    loop {
        for r in replicas.iter_mut() {
            r.tick().await.unwrap();
        }
        if done(replicas) {
            return start.elapsed();
        }
        assert!(start.elapsed() < limit, "not settled within {limit:?}");
        tokio::time::sleep(storeguard::replica::plan::tick(TTL)).await;
    }
}

fn held(r: &Replica) -> BTreeSet<u32> {
    r.trusted(Instant::now()).into_iter().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_split_the_shards_and_never_share_one() {
    let pg = Postgres::start();
    let url = pg.database("fleet");
    let (mut a, mut b, mut c) = (
        join(&url, "host-a", 12).await,
        join(&url, "host-b", 12).await,
        join(&url, "host-c", 12).await,
    );
    tick_until(
        &mut [&mut a, &mut b, &mut c],
        Duration::from_secs(20),
        |rs| rs.iter().all(|r| held(r).len() == 4),
    )
    .await;
    let (ha, hb, hc) = (held(&a), held(&b), held(&c));
    assert!(ha.is_disjoint(&hb) && hb.is_disjoint(&hc) && ha.is_disjoint(&hc));
    assert_eq!(ha.len() + hb.len() + hc.len(), 12);
    // The database agrees, and a store's shard has exactly one replica that probes it.
    let fleet = a.db().fleet().await.unwrap();
    assert_eq!(fleet.replicas.len(), 3);
    for l in &fleet.leases {
        let holder = l.holder.as_deref().unwrap();
        let set = match holder {
            "host-a" => &ha,
            "host-b" => &hb,
            _ => &hc,
        };
        assert!(set.contains(&l.shard), "{l:?}");
    }
    for i in 0..300 {
        let id = format!("store-{i}");
        let now = Instant::now();
        let probers = [&a, &b, &c]
            .iter()
            .filter(|r| r.fence_for_store(&id, now).is_some())
            .count();
        assert_eq!(probers, 1, "{id}");
    }
    // Settled: more ticks move nothing.
    for _ in 0..3 {
        for r in [&mut a, &mut b, &mut c] {
            let rep = r.tick().await.unwrap();
            assert!(
                rep.acquired.is_empty() && rep.released.is_empty(),
                "{rep:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_replicas_shards_are_taken_after_its_lease_and_within_the_bound() {
    let pg = Postgres::start();
    let url = pg.database("fleet");
    let mut a = join(&url, "host-a", 8).await;
    let mut b = join(&url, "host-b", 8).await;
    tick_until(&mut [&mut a, &mut b], Duration::from_secs(20), |rs| {
        rs.iter().all(|r| held(r).len() == 4)
    })
    .await;
    let dead: BTreeSet<u32> = held(&b);
    // b's last renewal; then it dies without a word (its pool goes with it).
    b.tick().await.unwrap();
    let died = Instant::now();
    let before = a.db().fleet().await.unwrap();
    drop(b);
    let took = tick_until(&mut [&mut a], Duration::from_secs(20), |rs| {
        held(rs[0]).len() == 8
    })
    .await;
    let after = a.db().fleet().await.unwrap();
    for s in &dead {
        let old = &before.leases[*s as usize];
        let new = &after.leases[*s as usize];
        assert_eq!(new.holder.as_deref(), Some("host-a"));
        assert!(new.term > old.term, "shard {s}: a takeover raises the term");
        // By the database's own clock, nobody took the shard before b's lease ran out.
        assert!(
            new.acquired_at.unwrap() >= old.until.unwrap(),
            "shard {s} taken at {:?}, before b's lease ended at {:?}",
            new.acquired_at,
            old.until
        );
    }
    assert_eq!(
        a.stats()
            .takeovers
            .load(std::sync::atomic::Ordering::Relaxed),
        4
    );
    let bound = TTL + storeguard::replica::plan::tick(TTL) + Duration::from_secs(2);
    let since_death = died.elapsed();
    assert!(
        took <= since_death && since_death <= bound,
        "takeover took {since_death:?}; the bound is {bound:?}"
    );
    eprintln!("takeover after {since_death:?} (lease {TTL:?})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_replica_stops_trusting_its_lease_and_its_late_write_is_refused() {
    let pg = Postgres::start();
    let url = pg.database("fleet");
    let mut a = join(&url, "host-a", 4).await;
    a.tick().await.unwrap();
    assert_eq!(held(&a).len(), 4);
    let shard = storeguard::replica::shard_of("ozon-main", 4);
    let stale: Fence = a.fence(shard, Instant::now()).unwrap();
    let entry = |generation, text: &str| StoredEntry {
        entry: "store/ozon-main".into(),
        armored: text.into(),
        generation,
    };
    a.db()
        .vault_put_fenced(stale, &entry(1, "first"), Expect::Any)
        .await
        .unwrap();
    // a is stopped (SIGSTOP, a long pause) past its lease: it no longer ticks.
    let paused = Instant::now();
    let mut b = join(&url, "host-b", 4).await;
    tick_until(&mut [&mut b], Duration::from_secs(20), |rs| {
        held(rs[0]).len() == 4
    })
    .await;
    b.db()
        .vault_put_fenced(
            b.fence(shard, Instant::now()).unwrap(),
            &entry(2, "rotated by b"),
            Expect::Exactly(1),
        )
        .await
        .unwrap();
    // Woken up: it does not trust the lease any more, and a write with the old term is refused.
    assert!(paused.elapsed() >= storeguard::replica::plan::trust_for(TTL));
    assert_eq!(a.fence(shard, Instant::now()), None);
    let err = a
        .db()
        .vault_put_fenced(stale, &entry(2, "late write by a"), Expect::Exactly(1))
        .await
        .unwrap_err();
    assert!(matches!(err, DbError::Fenced { .. }), "{err}");
    assert!(err.is_fenced());
    a.refused(stale);
    let stored = b.db().vault_get("store/ozon-main").await.unwrap().unwrap();
    assert_eq!(
        (stored.generation, stored.armored.as_str()),
        (2, "rotated by b")
    );
    // Its next tick learns the leases are gone, and it takes nothing while b holds them.
    let rep = a.tick().await.unwrap();
    assert_eq!(
        rep.lost.len(),
        3,
        "the refused shard was dropped at the refusal: {rep:?}"
    );
    assert!(!rep.lost.contains(&shard));
    assert!(held(&a).is_empty());
    let fleet = b.db().fleet().await.unwrap();
    let refusals = fleet
        .replicas
        .iter()
        .find(|r| r.name == "host-a")
        .unwrap()
        .fenced_refusals;
    assert_eq!(refusals, 1, "the refusal is counted in the fleet's table");
    // A write that expects an older generation than stored is a conflict, not a silent loss.
    let f = b.fence(shard, Instant::now()).unwrap();
    let err = b
        .db()
        .vault_put_fenced(f, &entry(2, "from a stale read"), Expect::Exactly(1))
        .await
        .unwrap_err();
    assert!(matches!(err, DbError::Conflict { found: 2, .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_stop_hands_every_shard_over_at_once() {
    let pg = Postgres::start();
    let url = pg.database("fleet");
    let mut a = join(&url, "host-a", 6).await;
    let mut b = join(&url, "host-b", 6).await;
    tick_until(&mut [&mut a, &mut b], Duration::from_secs(20), |rs| {
        rs.iter().all(|r| held(r).len() == 3)
    })
    .await;
    a.leave().await.unwrap();
    // One tick, no waiting for a lease to expire.
    let rep = b.tick().await.unwrap();
    assert_eq!(rep.acquired.len(), 3, "{rep:?}");
    assert!(
        rep.took_over.is_empty(),
        "released, not taken over: {rep:?}"
    );
    assert_eq!(held(&b).len(), 6);
    assert_eq!(b.db().fleet().await.unwrap().replicas.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_restart_needs_no_operator() {
    let mut pg = Postgres::start();
    let url = pg.database("fleet");
    let mut a = join(&url, "host-a", 4).await;
    a.tick().await.unwrap();
    assert_eq!(held(&a).len(), 4);
    pg.stop();
    let err = a.tick().await.unwrap_err();
    assert!(
        matches!(err, DbError::Connect { .. } | DbError::Query { .. }),
        "{err}"
    );
    assert!(!err.to_string().contains("password"), "{err}");
    pg.restart();
    // The pool drops its dead connections and opens new ones; the leases are still a's.
    tick_until(&mut [&mut a], Duration::from_secs(20), |rs| {
        held(rs[0]).len() == 4
    })
    .await;
    let f = a.fence(0, Instant::now()).unwrap();
    a.db()
        .vault_put_fenced(
            f,
            &StoredEntry {
                entry: "store/x".into(),
                armored: "armored".into(),
                generation: 1,
            },
            Expect::Any,
        )
        .await
        .unwrap();
    assert!(
        a.stats()
            .failed_ticks
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_schema_and_the_shard_count_are_guarded() {
    let pg = Postgres::start();
    let url = pg.database("fleet");
    let mut a = join(&url, "host-a", 4).await;
    a.tick().await.unwrap();
    let top = a.fence(3, Instant::now()).unwrap().term;
    // Another shard count while a holds leases: refused, naming who holds them.
    let err = Replica::join(Db::new(&target(&url, "host-b")).unwrap(), 8, TTL)
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(
            err,
            DbError::ShardsInUse {
                fleet: 4,
                config: 8,
                ..
            }
        ),
        "{text}"
    );
    assert!(text.contains("host-a") && text.contains("help:"), "{text}");
    // Once nobody holds any, the fleet may be re-cut; terms keep growing.
    a.leave().await.unwrap();
    let mut b = join(&url, "host-b", 8).await;
    b.tick().await.unwrap();
    assert_eq!(held(&b).len(), 8);
    assert!(b.fence(0, Instant::now()).unwrap().term > top);
    // A database written by a newer build is refused, not half-understood.
    pg.sql(
        "fleet",
        "UPDATE storeguard_meta SET value = '99' WHERE key = 'schema'",
    );
    let err = Replica::join(Db::new(&target(&url, "host-c")).unwrap(), 8, TTL)
        .await
        .unwrap_err();
    assert!(matches!(err, DbError::TooNew { found: 99, .. }), "{err}");
}

/// A `storeguard init` setup whose config points at the fleet's database.
fn fleet_setup(url: &str, replica: &str) -> crate::util::Setup {
    let s = crate::util::Setup::init();
    let text = std::fs::read_to_string(s.config()).unwrap();
    let text = text.replacen(
        "[daemon]\n",
        &format!("[daemon]\nstate = \"{url}\"\nreplica = \"{replica}\"\n"),
        1,
    ) + "\n[replicas]\nshards = 4\nlease_ttl = \"3s\"\n";
    std::fs::write(s.config(), text).unwrap();
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_lists_who_holds_which_shards() {
    let pg = Postgres::start();
    let url = pg.database("fleet");
    let s = fleet_setup(&url, "host-a");
    let mut a = join(&url, "host-a", 4).await;
    let mut b = join(&url, "host-b", 4).await;
    tick_until(&mut [&mut a, &mut b], Duration::from_secs(20), |rs| {
        rs.iter().all(|r| held(r).len() == 2)
    })
    .await;
    let out = s.run(&["replicas"], None);
    assert!(out.status.success(), "{}", out.stderr_str());
    let table = out.stdout_str();
    assert!(table.starts_with("REPLICA"), "{table}");
    let line = |name: &str| {
        table
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name} missing: {table}"))
            .to_string()
    };
    assert!(line("host-a").contains("live"), "{table}");
    assert!(table.contains("4 shards; unheld: -"), "{table}");
    let out = s.run(&["replicas", "--json"], None);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut all: Vec<u64> = v["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| {
            r["shards"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_u64().unwrap())
        })
        .collect();
    all.sort();
    assert_eq!(all, vec![0, 1, 2, 3]);
    assert_eq!(v["replicas"][0]["name"], "host-a");
    assert_eq!(v["replicas"][0]["live"], true);
    // a dies: b takes its shards once its lease ends, and a shows as silent with none.
    drop(a);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        b.tick().await.unwrap();
        let v: serde_json::Value =
            serde_json::from_slice(&s.run(&["replicas", "--json"], None).stdout).unwrap();
        let (ra, rb) = (&v["replicas"][0], &v["replicas"][1]);
        // The counters reach the table with the heartbeat of the tick after the takeover.
        if ra["live"] == false
            && rb["shards"].as_array().unwrap().len() == 4
            && rb["takeovers"] == 2
        {
            assert_eq!(ra["shards"].as_array().unwrap().len(), 0, "{v}");
            assert_eq!(v["unheld_shards"].as_array().unwrap().len(), 0, "{v}");
            break;
        }
        assert!(Instant::now() < deadline, "{v}");
        tokio::time::sleep(storeguard::replica::plan::tick(TTL)).await;
    }
    let table = s.run(&["replicas"], None).stdout_str();
    assert!(table.contains("silent"), "{table}");
}

#[test]
fn the_fleet_database_is_refused_with_a_reason_when_the_config_is_wrong() {
    let s = crate::util::Setup::init();
    let text = std::fs::read_to_string(s.config()).unwrap();
    let bad = [
        (
            "state = \"postgres://sg:hunter2-secret@db/sg\"",
            "holds a password",
        ),
        (
            "state = \"mysql://sg@db/sg\"",
            "not a database this storeguard knows",
        ),
        ("state = \"postgres://sg@db\"", "must name the database"),
        ("replica = \"no spaces please\"", "is not valid"),
    ];
    for (line, says) in bad {
        std::fs::write(
            s.config(),
            text.replacen("[daemon]\n", &format!("[daemon]\n{line}\n"), 1),
        )
        .unwrap();
        let out = s.run(&["config", "check"], None);
        let err = out.stderr_str() + &out.stdout_str();
        assert!(!out.status.success(), "{line}: accepted");
        assert!(err.contains(says), "{line}: {err}");
        assert!(!err.contains("hunter2"), "the password is echoed: {err}");
    }
    for (extra, says) in [
        ("shards = 0", "out of range"),
        ("lease_ttl = \"1h\"", "too long"),
        ("lease_ttl = \"10ms\"", "too short"),
    ] {
        std::fs::write(s.config(), format!("{text}\n[replicas]\n{extra}\n")).unwrap();
        let out = s.run(&["config", "check"], None);
        let err = out.stderr_str() + &out.stdout_str();
        assert!(
            !out.status.success() && err.contains(says),
            "{extra}: {err}"
        );
    }
    // A fleet database that does not answer stops the daemon at start, saying what to check.
    std::fs::write(
        s.config(),
        text.replacen(
            "[daemon]\n",
            "[daemon]\nstate = \"postgres://sg@127.0.0.1:9/sg\"\n",
            1,
        ),
    )
    .unwrap();
    let out = s.run(&["run"], None);
    assert!(!out.status.success());
    let err = out.stderr_str();
    assert!(err.contains("PostgreSQL") && err.contains("help:"), "{err}");
    // On one box, the fleet's commands say why they do not apply.
    std::fs::write(s.config(), &text).unwrap();
    let out = s.run(&["replicas"], None);
    assert!(!out.status.success());
    assert!(out.stderr_str().contains("SQLite"), "{}", out.stderr_str());
}

#[test]
fn the_vault_moves_into_the_database_and_back_out_as_files_age_reads() {
    let pg = Postgres::start();
    let url = pg.database("fleet");
    let s = fleet_setup(&url, "host-a");
    s.add_ozon_store("ozon-main", "12345", "key-one-SECRET-0001");
    s.add_ozon_store("ozon-two", "67890", "key-two-SECRET-0002");
    let vault_dir = s.dir.path().join("vault");
    let vault = vault_dir.to_str().unwrap();
    let out = s.run(&["vault", "import", vault], None);
    assert!(out.status.success(), "{}", out.stderr_str());
    assert!(
        out.stderr_str().contains("imported 3 of 3"),
        "{}",
        out.stderr_str()
    );
    // The database holds the armored text, never the plaintext.
    let dump = pg.sql("fleet", "SELECT string_agg(entry || ' ' || generation || ' ' || armored, E'\\n') FROM vault_entries");
    assert!(
        dump.contains("store/ozon-main 1 -----BEGIN AGE ENCRYPTED FILE-----"),
        "{dump}"
    );
    assert!(!dump.contains("SECRET"), "plaintext in the database");
    // Importing the same files again writes nothing: nothing newer.
    let out = s.run(&["vault", "import", vault], None);
    assert!(
        out.stderr_str().contains("imported 0 of 3"),
        "{}",
        out.stderr_str()
    );
    // A newer generation in the database is never undone by an old copy.
    pg.sql(
        "fleet",
        "UPDATE vault_entries SET generation = 7 WHERE entry = 'store/ozon-two'",
    );
    let out = s.run(&["vault", "import", vault], None);
    assert!(
        out.stderr_str().contains("imported 0 of 3"),
        "{}",
        out.stderr_str()
    );
    // Export: files the reference age CLI decrypts with the same identity.
    let exported = s.dir.path().join("exported");
    let out = s.run(&["vault", "export", exported.to_str().unwrap()], None);
    assert!(out.status.success(), "{}", out.stderr_str());
    let plain = std::process::Command::new(crate::util::age_cli())
        .arg("-d")
        .arg("-i")
        .arg(s.dir.path().join("identity.txt"))
        .arg(exported.join("stores/ozon-main.age"))
        .output()
        .unwrap();
    assert!(
        plain.status.success(),
        "{}",
        String::from_utf8_lossy(&plain.stderr)
    );
    assert!(String::from_utf8_lossy(&plain.stdout).contains("key-one-SECRET-0001"));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(exported.join("stores/ozon-main.age"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(
        std::fs::read_to_string(exported.join("recipients.txt")).unwrap(),
        std::fs::read_to_string(vault_dir.join("recipients.txt")).unwrap()
    );
    // Exporting over something is refused; nothing there is touched.
    let out = s.run(&["vault", "export", exported.to_str().unwrap()], None);
    assert!(!out.status.success() && out.stderr_str().contains("not empty"));
    // A directory whose entries this identity cannot open is refused before any write.
    let other = crate::util::Setup::init();
    other.add_ozon_store("ozon-else", "1", "key-else-SECRET-0003");
    let out = s.run(
        &[
            "vault",
            "import",
            other.dir.path().join("vault").to_str().unwrap(),
        ],
        None,
    );
    assert!(!out.status.success());
    assert_eq!(
        pg.sql(
            "fleet",
            "SELECT count(*) FROM vault_entries WHERE entry = 'store/ozon-else'"
        ),
        "0"
    );
    assert!(!out.stderr_str().contains("SECRET"), "{}", out.stderr_str());
}

mod state {
    //! The daemon's state on the fleet database: the same rows and rules as the SQLite file,
    //! with fenced check writes and deliveries by the shard's holder.
    use super::*;
    use chrono::Utc;
    use storeguard::health::{Backoff, Rules, StoreHealth, StoreRef, apply};
    use storeguard::model::Marketplace;
    use storeguard::outcome::{Facts, Finding, FindingKind, Outcome};
    use storeguard::route::Routed;
    use storeguard::state::{CheckWrite, MailCursor, MailRecord, OutcomeRow, PgState};

    fn rules() -> Rules {
        Rules {
            failure_threshold: 1,
            success_threshold: 1,
            remind_every: Duration::from_secs(3600),
            expiry_warning: vec![],
        }
    }

    /// A check of `id` with `findings`, as the daemon would hand it to the group commit.
    fn check(
        id: &str,
        h: &mut StoreHealth,
        findings: Vec<Finding>,
        at: chrono::DateTime<Utc>,
    ) -> CheckWrite {
        let store = StoreRef {
            id,
            name: id,
            marketplace: Marketplace::Ozon,
        };
        let o = Outcome::new(id, Marketplace::Ozon, at, findings, Facts::default());
        let routed: Vec<Routed> = apply(h, &store, &o, &rules(), at)
            .into_iter()
            .map(|event| Routed {
                event,
                channels: vec!["hook".into()],
                hold_until: None,
            })
            .collect();
        CheckWrite::new(
            OutcomeRow::new(&o).unwrap(),
            h,
            routed,
            Backoff::default(),
            &[],
        )
        .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn checks_incidents_and_the_outbox_follow_the_leases() {
        let pg = Postgres::start();
        let url = pg.database("fleet");
        let shards = 4;
        let mut a = join(&url, "host-a", shards).await;
        a.tick().await.unwrap();
        let st = PgState::new(a.db().clone(), shards);
        let now = Utc::now();
        let id = "ozon-main";
        let shard = storeguard::replica::shard_of(id, shards);
        let fence = a.fence(shard, Instant::now()).unwrap();
        let mut h = StoreHealth::default();
        let rejected = || vec![Finding::new(FindingKind::AuthRejected, "refused")];
        let w = check(id, &mut h, rejected(), now).fenced(fence);
        assert!(st.record_checks(&[&w]).await.unwrap().is_empty());
        // A retried commit adds nothing.
        assert!(st.record_checks(&[&w]).await.unwrap().is_empty());
        assert_eq!(st.outbox_depth().await.unwrap(), 1);
        let stores = st.load_stores().await.unwrap();
        assert_eq!(stores.len(), 1);
        assert_eq!(stores[0].health, h);
        assert_eq!(
            st.history(id, now - chrono::Duration::hours(1), 10)
                .await
                .unwrap()[0]
                .findings,
            vec!["auth_rejected"]
        );
        let incident = st.incidents(id, 10).await.unwrap().remove(0);
        assert!(st.incident_open(&incident.incident_id).await.unwrap());

        // Only the shard's holder sees the row as due.
        let all: Vec<u32> = (0..shards).collect();
        let others: Vec<u32> = all.iter().copied().filter(|s| *s != shard).collect();
        assert!(
            st.due_outbox_for(None, &others, now, 10)
                .await
                .unwrap()
                .is_empty()
        );
        let due = st
            .due_outbox_for(Some("hook"), &[shard], now, 10)
            .await
            .unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!(st.pending_channels(&[shard]).await.unwrap()[0].0, "hook");
        assert!(
            !st.opened_delivered(&incident.incident_id, "hook")
                .await
                .unwrap()
        );
        st.mark_retry(due[0].seq, now + chrono::Duration::seconds(30), "HTTP 502")
            .await
            .unwrap();
        assert!(
            st.due_outbox_for(None, &[shard], now, 10)
                .await
                .unwrap()
                .is_empty()
        );
        let later = now + chrono::Duration::seconds(31);
        let due = st.due_outbox_for(None, &[shard], later, 10).await.unwrap();
        assert_eq!(due[0].attempts, 1);
        st.mark_delivered(due[0].seq, later).await.unwrap();
        assert!(
            st.opened_delivered(&incident.incident_id, "hook")
                .await
                .unwrap()
        );
        assert_eq!(st.outbox_depth().await.unwrap(), 0);

        // The store recovers: the incident closes.
        let w = check(id, &mut h, vec![], later).fenced(fence);
        st.record_checks(&[&w]).await.unwrap();
        assert!(!st.incident_open(&incident.incident_id).await.unwrap());

        // a stalls past its lease; b takes the shard over. a's late check is refused and
        // leaves nothing behind; b's goes in, and b delivers what is pending for the store.
        let mut b = join(&url, "host-b", shards).await;
        tick_until(&mut [&mut b], Duration::from_secs(20), |rs| {
            held(rs[0]).len() == 4
        })
        .await;
        let st_b = PgState::new(b.db().clone(), shards);
        let t2 = later + chrono::Duration::seconds(60);
        let mut h_b = st_b
            .load_stores_of(&[id.to_string()])
            .await
            .unwrap()
            .remove(0)
            .health;
        assert_eq!(h_b, h, "the new holder starts from what the old one wrote");
        let late = check(id, &mut h.clone(), rejected(), t2).fenced(fence);
        let fresh = check(id, &mut h_b, rejected(), t2 + chrono::Duration::seconds(1))
            .fenced(b.fence(shard, Instant::now()).unwrap());
        assert_eq!(st.record_checks(&[&late]).await.unwrap(), vec![0]);
        assert!(st_b.record_checks(&[&fresh]).await.unwrap().is_empty());
        assert_eq!(st_b.history(id, now, 10).await.unwrap().len(), 3);
        // a's "resolved" is still pending, then b's new "opened": the older goes first.
        assert_eq!(st_b.outbox_depth().await.unwrap(), 2);
        let due = st_b
            .due_outbox_for(
                None,
                &b.trusted(Instant::now()),
                t2 + chrono::Duration::seconds(2),
                10,
            )
            .await
            .unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].event.event, storeguard::event::EventKind::Resolved);

        // In one batch, a stale check is refused and the valid ones are written.
        let other = (0..100)
            .map(|i| format!("store-{i}"))
            .find(|s| storeguard::replica::shard_of(s, shards) != shard)
            .unwrap();
        let mut h2 = StoreHealth::default();
        let ok = check(&other, &mut h2, vec![], t2).fenced(
            b.fence(
                storeguard::replica::shard_of(&other, shards),
                Instant::now(),
            )
            .unwrap(),
        );
        let refused = st_b.record_checks(&[&late, &ok]).await.unwrap();
        assert_eq!(refused, vec![0]);
        assert_eq!(st_b.load_stores().await.unwrap().len(), 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn silences_mail_and_pruning_work_as_on_one_box() {
        let pg = Postgres::start();
        let url = pg.database("fleet");
        let a = join(&url, "host-a", 4).await;
        let st = PgState::new(a.db().clone(), 4);
        // The state keeps milliseconds.
        let now = storeguard::state::from_ms(storeguard::state::ms(Utc::now()));
        st.set_silence("ozon-main", now + chrono::Duration::hours(1))
            .await
            .unwrap();
        st.set_silence("ozon-two", now - chrono::Duration::hours(1))
            .await
            .unwrap();
        let s = st.silences(now).await.unwrap();
        assert_eq!(s.keys().collect::<Vec<_>>(), vec!["ozon-main"]);

        assert_eq!(st.mail_cursor("box", "INBOX").await.unwrap(), None);
        let record = MailRecord {
            mail_hash: "h1".into(),
            store_id: "ozon-main".into(),
            at: now,
            event: "new_sign_in".into(),
            finding: None,
            verdict: "authenticated".into(),
            domain: "ozon.ru".into(),
            facts: vec![("Device".into(), "Chrome".into())],
            mailbox: "box".into(),
            alerted: false,
        };
        let cursor = MailCursor {
            uid_validity: 7,
            last_uid: 42,
            updated_at: now,
        };
        let batch = [(record.clone(), None)];
        assert_eq!(
            st.record_mail("box", "INBOX", cursor, &batch)
                .await
                .unwrap(),
            1
        );
        // The same mail again (another folder, a re-read) is not recorded twice.
        assert_eq!(
            st.record_mail("box", "Junk", cursor, &batch).await.unwrap(),
            0
        );
        assert_eq!(st.mail_cursor("box", "INBOX").await.unwrap(), Some(cursor));
        let got = st
            .mail_records_since(Some("ozon-main"), now - chrono::Duration::hours(1), 10)
            .await
            .unwrap();
        assert_eq!(got, vec![record]);

        let mut h = StoreHealth::default();
        let old = now - chrono::Duration::days(100);
        st.record_checks(&[&check("ozon-main", &mut h, vec![], old)])
            .await
            .unwrap();
        st.record_checks(&[&check("ozon-main", &mut h, vec![], now)])
            .await
            .unwrap();
        assert_eq!(st.prune(now - chrono::Duration::days(90)).await.unwrap(), 1);
        assert_eq!(st.history("ozon-main", old, 10).await.unwrap().len(), 1);
    }
}

mod daemons {
    //! Real `storeguard run` processes as replicas of one fleet, on the fake Ozon.
    use super::*;
    use crate::util::proc::{Daemon, ozon, world};
    use crate::util::receiver::Receiver;

    const STORES: usize = 30;
    const SHARDS: u32 = 16;
    const LEASE: Duration = Duration::from_secs(2);

    /// The world's config for replica `name`: the fleet database, its own state_dir.
    fn replica_config(w: &storeguard::demo::World, url: &str, name: &str) -> std::path::PathBuf {
        let text = std::fs::read_to_string(&w.config_path).unwrap();
        // Each replica its own state_dir and vault files: only the identity is shared.
        let text = text.replacen(
            "[daemon]\nstate_dir = \"state\"\nvault_dir = \"vault\"\n",
            &format!(
                "[daemon]\nstate = \"{url}\"\nreplica = \"{name}\"\nstate_dir = \"state-{name}\"\nvault_dir = \"vault-{name}\"\n"
            ),
            1,
        ) + &format!(
            "\n[replicas]\nshards = {SHARDS}\nlease_ttl = \"{}s\"\n",
            LEASE.as_secs()
        );
        let path = w.path().join(format!("storeguard-{name}.toml"));
        std::fs::write(&path, text).unwrap();
        path
    }

    /// The world's vault into the fleet database (`vault import`), as an operator does once.
    fn import(w: &storeguard::demo::World, url: &str) {
        let out = std::process::Command::new(crate::util::BIN)
            .arg("--config")
            .arg(replica_config(w, url, "importer"))
            .args(["vault", "import"])
            .arg(w.path().join("vault"))
            .env_remove("CREDENTIALS_DIRECTORY")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn start(w: &storeguard::demo::World, url: &str, name: &str) -> Daemon {
        let mut c = std::process::Command::new(crate::util::BIN);
        c.arg("--config")
            .arg(replica_config(w, url, name))
            .arg("run")
            .env("STOREGUARD_LOG", "info")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("CREDENTIALS_DIRECTORY");
        let d = Daemon::spawn(c, w.path().join(format!("daemon-{name}.log")));
        assert_ne!(d.addr(), "127.0.0.1:0", "{name} did not start: {}", d.log());
        d
    }

    /// The database's clock, in Unix ms.
    fn db_now(pg: &Postgres) -> i64 {
        pg.sql(
            "fleet",
            "SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint",
        )
        .parse()
        .unwrap()
    }

    /// (store, second, replicas) where more than one replica checked a store within one
    /// second of the schedule, since `from` (ms).
    fn double_probes(pg: &Postgres, from: i64) -> String {
        pg.sql(
            "fleet",
            &format!(
                "SELECT string_agg(x, '; ') FROM (
                     SELECT s.store_id || ' @' || (c.at_ms / 1000) || ': ' || string_agg(DISTINCT c.replica, ',') AS x
                     FROM checks c JOIN stores s ON s.id = c.store WHERE c.at_ms >= {from}
                     GROUP BY s.store_id, c.at_ms / 1000 HAVING count(DISTINCT c.replica) > 1) d"
            ),
        )
    }

    /// Stores with a check by `replica` at or after `from`.
    fn checked_by(pg: &Postgres, replica: &str, from: i64) -> usize {
        pg.sql(
            "fleet",
            &format!(
                "SELECT count(DISTINCT c.store) FROM checks c WHERE c.replica = '{replica}' AND c.at_ms >= {from}"
            ),
        )
        .parse()
        .unwrap()
    }

    fn checked(pg: &Postgres, from: i64) -> usize {
        pg.sql(
            "fleet",
            &format!("SELECT count(DISTINCT c.store) FROM checks c WHERE c.at_ms >= {from}"),
        )
        .parse()
        .unwrap()
    }

    async fn until(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) -> Duration {
        let start = Instant::now();
        while !cond() {
            assert!(start.elapsed() < limit, "timed out waiting for: {what}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        start.elapsed()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_replicas_split_the_stores_take_over_a_killed_one_and_fence_a_stopped_one() {
        let pg = Postgres::start();
        let url = pg.database("fleet");
        let receiver = Receiver::start().await;
        let stores: Vec<_> = (0..STORES).map(|i| ozon(&format!("ozon-{i:02}"))).collect();
        let w = world(stores, &receiver, "1h").await;
        import(&w, &url);
        let a = start(&w, &url, "host-a");
        let b = start(&w, &url, "host-b");
        // Settled: each holds half the shards, and every store has been checked.
        let held = |name: &str| -> usize {
            pg.sql(
                "fleet",
                &format!("SELECT count(*) FROM leases WHERE holder = '{name}' AND until > now()"),
            )
            .parse()
            .unwrap()
        };
        until(Duration::from_secs(30), "the leases split 8/8", || {
            held("host-a") == 8 && held("host-b") == 8
        })
        .await;
        let settled = db_now(&pg);
        until(
            Duration::from_secs(30),
            "every store checked after settling",
            || checked(&pg, settled) == STORES,
        )
        .await;
        // Each replica checks only the stores of its shards, never both the same store.
        let (by_a, by_b) = (
            checked_by(&pg, "host-a", settled),
            checked_by(&pg, "host-b", settled),
        );
        assert_eq!(by_a + by_b, STORES, "a {by_a}, b {by_b}");
        assert!(by_a > 0 && by_b > 0);
        assert_eq!(double_probes(&pg, settled), "");
        // Either replica's API shows every store of the fleet, its own and the other's.
        for d in [&a, &b] {
            let mut seen = 0;
            let deadline = Instant::now() + Duration::from_secs(20);
            while seen < STORES {
                assert!(Instant::now() < deadline, "{} sees {seen} stores", d.api);
                tokio::time::sleep(Duration::from_millis(200)).await;
                seen = d.stores().await.map_or(0, |v| {
                    v.as_array()
                        .unwrap()
                        .iter()
                        .filter(|s| s["status"] == "OK")
                        .count()
                });
            }
        }
        // So do `status` and `history` on the command line, read from the fleet database.
        let cfg = replica_config(&w, &url, "host-c");
        let cli = |args: &[&str]| {
            std::process::Command::new(crate::util::BIN)
                .arg("--config")
                .arg(&cfg)
                .args(args)
                .env_remove("CREDENTIALS_DIRECTORY")
                .output()
                .unwrap()
        };
        let out = cli(&["status", "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)));
        let ok = v
            .as_array()
            .map_or(0, |a| a.iter().filter(|s| s["status"] == "OK").count());
        assert_eq!(ok, STORES, "{v}");
        let out = cli(&["history", "ozon-00", "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)));
        assert!(!v.as_array().unwrap().is_empty(), "{v}");

        // SIGKILL a: b checks every store again within the lease plus a tick and a schedule.
        a.kill9();
        let killed = db_now(&pg);
        let took = until(
            Duration::from_secs(30),
            "b checks every store after the kill",
            || checked_by(&pg, "host-b", killed) == STORES,
        )
        .await;
        let bound = LEASE + LEASE / 3 + Duration::from_secs(1) + Duration::from_secs(2);
        eprintln!("a killed: b checked all {STORES} stores {took:?} later (lease {LEASE:?})");
        assert!(
            took <= bound,
            "takeover took {took:?}; the bound is {bound:?}"
        );
        assert_eq!(double_probes(&pg, settled), "");

        // a comes back; then b is stopped past its lease and continued: it probes nothing
        // while stopped, its leases are lost, and no store is ever checked by two at once.
        let a = start(&w, &url, "host-a");
        until(Duration::from_secs(30), "the leases split again", || {
            held("host-a") == 8 && held("host-b") == 8
        })
        .await;
        b.signal(nix::sys::signal::Signal::SIGSTOP);
        let stopped = db_now(&pg);
        until(Duration::from_secs(30), "a holds every shard", || {
            held("host-a") == 16
        })
        .await;
        until(Duration::from_secs(30), "a checks every store", || {
            checked_by(&pg, "host-a", stopped) == STORES
        })
        .await;
        b.signal(nix::sys::signal::Signal::SIGCONT);
        let metrics = |d: &Daemon| {
            let d = d.api.clone();
            async move {
                reqwest::get(format!("{d}/metrics"))
                    .await
                    .ok()?
                    .text()
                    .await
                    .ok()
            }
        };
        let mut lost = 0.0;
        let deadline = Instant::now() + Duration::from_secs(30);
        while lost < 1.0 {
            assert!(
                Instant::now() < deadline,
                "b never noticed its leases were gone"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
            if let Some(text) = metrics(&b).await {
                lost = text
                    .lines()
                    .find_map(|l| l.strip_prefix("storeguard_replica_leases_lost_total "))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0.0);
            }
        }
        until(
            Duration::from_secs(30),
            "the leases split once more",
            || held("host-a") == 8 && held("host-b") == 8,
        )
        .await;
        assert_eq!(double_probes(&pg, settled), "");
        let text = metrics(&a).await.unwrap();
        assert!(text.contains("storeguard_replica_leases_held 8"), "{text}");
        // What the stopped replica's metrics say: leases lost, and its writes the database
        // refused (checks that were in flight when it was stopped).
        let b_text = metrics(&b).await.unwrap_or_default();
        let value = |name: &str| -> f64 {
            b_text
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{name} ")))
                .and_then(|v| v.parse().ok())
                .unwrap_or(-1.0)
        };
        assert!(
            value("storeguard_replica_leases_lost_total") >= 1.0,
            "{b_text}"
        );
        eprintln!(
            "SIGSTOP past the lease: b lost {} lease(s); {} of its writes refused by the fence",
            value("storeguard_replica_leases_lost_total"),
            value("storeguard_replica_fenced_writes_refused_total")
        );
        // While stopped and until it held leases again, b wrote no check.
        assert!(value("storeguard_replica_fenced_writes_refused_total") >= 0.0);
        // The stores are healthy: the only alerts are b's lost leases, none sent twice.
        let got = receiver.delivered();
        let ids: Vec<String> = got.iter().map(|r| r.field("event_id")).collect();
        let unique: BTreeSet<&String> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len(), "{ids:?}");
        for r in &got {
            assert_eq!(r.field("finding"), "daemon_fault", "{}", r.field("detail"));
        }
        drop(a);
        drop(b);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn single_use_refresh_tokens_survive_a_takeover() {
        let pg = Postgres::start();
        let url = pg.database("fleet");
        let receiver = Receiver::start().await;
        let n = 8;
        let stores: Vec<_> = (0..n)
            .map(|i| {
                storeguard::demo::StoreSpec::new(
                    &format!("shopee-{i}"),
                    &format!("shopee-{i}"),
                    storeguard::model::Marketplace::Shopee,
                )
                .with(storeguard::fake::Scenario::IllegalAccessTokenThenRefresh)
            })
            .collect();
        let w = world(stores, &receiver, "1h").await;
        let shops: Vec<String> = (0..n)
            .map(|i| storeguard::demo::account_of(i, storeguard::model::Marketplace::Shopee))
            .collect();
        // Every check refreshes: each access token is near its end as soon as it is issued.
        w.shopee.set_access_lifetime(1800);
        import(&w, &url);
        let a = start(&w, &url, "host-a");
        let b = start(&w, &url, "host-b");
        let issued = |shops: &[String]| -> Vec<usize> {
            shops.iter().map(|s| w.shopee.issued(s).len()).collect()
        };
        let waited = Instant::now();
        while !issued(&shops).iter().all(|k| *k >= 2) {
            let notes = |d: &Daemon| -> String {
                d.log()
                    .lines()
                    .filter(|l| l.contains("WARN") || l.contains("ERROR") || l.contains("moved"))
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            assert!(
                waited.elapsed() < Duration::from_secs(60),
                "refreshes {:?}; checks not OK: {}\na: {}\nb: {}",
                issued(&shops),
                pg.sql(
                    "fleet",
                    "SELECT string_agg(DISTINCT findings, ' ') FROM checks WHERE status <> 0"
                ),
                notes(&a),
                notes(&b)
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let settled = db_now(&pg);
        // Refreshes pause (the next tokens live 4 hours), so a dies with none in flight.
        w.shopee.set_access_lifetime(14_400);
        let mut last = issued(&shops);
        loop {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            let now = issued(&shops);
            if now == last {
                break;
            }
            last = now;
        }
        a.kill9();
        let killed = db_now(&pg);
        w.shopee.set_access_lifetime(1800);
        for shop in &shops {
            w.shopee.expire_access_tokens(shop);
        }
        // b takes a's stores over and goes on refreshing them from the tokens a left in the
        // database: a spent one would be refused by the fake.
        let before = issued(&shops);
        until(
            Duration::from_secs(30),
            "b refreshes every shop again, twice",
            || {
                issued(&shops).iter().zip(&before).all(|(k, b)| *k >= b + 2)
                    && checked_by(&pg, "host-b", killed) == n
            },
        )
        .await;
        let bad = pg.sql(
            "fleet",
            &format!("SELECT count(*) FROM checks WHERE status <> 0 AND at_ms >= {settled}"),
        );
        assert_eq!(bad, "0", "checks not OK after settling");
        // Every token the marketplace issued reached the database: generation = 1 + refreshes.
        w.shopee.set_access_lifetime(14_400);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        b.signal(nix::sys::signal::Signal::SIGTERM);
        let mut b = b;
        if let Some(mut child) = b.child.take() {
            crate::util::proc::wait_child(&mut child, Duration::from_secs(20));
        }
        for (i, shop) in shops.iter().enumerate() {
            let generation: usize = pg
                .sql(
                    "fleet",
                    &format!(
                        "SELECT generation FROM vault_entries WHERE entry = 'store/shopee-{i}'"
                    ),
                )
                .parse()
                .unwrap();
            assert_eq!(generation, 1 + w.shopee.issued(shop).len(), "shopee-{i}");
        }
        let dump = pg.sql("fleet", "SELECT string_agg(armored, '') FROM vault_entries");
        assert!(
            !dump.contains("CANARY"),
            "a token in the clear in the database"
        );
        assert!(!b.log().contains("CANARY"), "a token in the log");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_replicas_resume_after_the_database_restarts_under_load() {
        let mut pg = Postgres::start();
        let url = pg.database("fleet");
        let receiver = Receiver::start().await;
        let stores: Vec<_> = (0..STORES).map(|i| ozon(&format!("ozon-{i:02}"))).collect();
        let w = world(stores, &receiver, "1h").await;
        import(&w, &url);
        let a = start(&w, &url, "host-a");
        let b = start(&w, &url, "host-b");
        let from = db_now(&pg);
        until(Duration::from_secs(30), "both replicas check", || {
            checked_by(&pg, "host-a", from) > 0 && checked_by(&pg, "host-b", from) > 0
        })
        .await;
        // Down for longer than a lease: every replica stops acting, nothing is written.
        pg.stop();
        tokio::time::sleep(LEASE + LEASE / 2).await;
        pg.restart();
        let back = db_now(&pg);
        until(
            Duration::from_secs(40),
            "every store checked again after the restart",
            || checked(&pg, back) == STORES,
        )
        .await;
        until(
            Duration::from_secs(40),
            "both replicas hold leases again",
            || checked_by(&pg, "host-a", back) > 0 && checked_by(&pg, "host-b", back) > 0,
        )
        .await;
        assert_eq!(double_probes(&pg, from), "");
        for d in [&a, &b] {
            assert!(d.response("/metrics").await.is_some(), "a replica exited");
            assert!(
                d.log().contains("cannot renew the shard leases"),
                "{}",
                d.log()
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_kill_storm_across_replicas_loses_no_alert_and_repeats_none_but_as_redeliveries() {
        use storeguard::fake::Scenario;
        let pg = Postgres::start();
        let url = pg.database("fleet");
        let receiver = Receiver::start().await;
        let n = 6;
        let stores: Vec<_> = (0..n).map(|i| ozon(&format!("k{i}"))).collect();
        let w = world(stores, &receiver, "1h").await;
        import(&w, &url);
        let names = ["host-a", "host-b"];
        let mut running: Vec<Option<Daemon>> = names
            .iter()
            .map(|name| Some(start(&w, &url, name)))
            .collect();
        let mut rng = crate::util::Rng::new(0x5eed_0013);
        let rounds = 100;
        let began = Instant::now();
        for round in 0..rounds {
            // Incidents open and resolve across the kills.
            let i = rng.below(n as u64);
            w.set_scenario(
                &format!("k{i}"),
                if rng.below(2) == 0 {
                    Scenario::CompanyBlocked
                } else {
                    Scenario::Healthy
                },
            );
            // One replica is SIGKILLed at a random moment and started again; the other runs on.
            let r = rng.below(2) as usize;
            tokio::time::sleep(Duration::from_millis(100 + rng.below(500))).await;
            if let Some(d) = running[r].take() {
                d.kill9();
            }
            running[r] = Some(start(&w, &url, names[r]));
            assert!(
                began.elapsed() < Duration::from_secs(400),
                "storm too slow at round {round}"
            );
        }
        for i in 0..n {
            w.set_scenario(&format!("k{i}"), Scenario::Healthy);
        }
        until(Duration::from_secs(60), "every incident resolved and every alert delivered", || {
            pg.sql(
                "fleet",
                "SELECT (SELECT count(*) FROM incidents WHERE resolved_at_ms IS NULL)
                      + (SELECT count(*) FROM outbox WHERE delivered_at_ms IS NULL AND gave_up_at_ms IS NULL)",
            ) == "0"
        })
        .await;
        drop(running);
        let incidents: Vec<String> = pg
            .sql(
                "fleet",
                "SELECT string_agg(incident_id, ' ') FROM incidents WHERE store_id LIKE 'k%'",
            )
            .split_whitespace()
            .map(str::to_string)
            .collect();
        assert!(!incidents.is_empty(), "the storm opened no incident");
        let delivered = receiver.delivered();
        for inc in &incidents {
            for kind in ["opened", "resolved"] {
                assert!(
                    delivered
                        .iter()
                        .any(|r| r.field("incident_id") == *inc && r.field("event") == kind),
                    "{kind} of incident {inc} never delivered"
                );
            }
        }
        // A copy is only ever a redelivery of the same event.
        let mut by_id: std::collections::HashMap<String, Vec<&crate::util::receiver::Received>> =
            Default::default();
        for r in &delivered {
            by_id.entry(r.idempotency_key.clone()).or_default().push(r);
        }
        for (id, copies) in &by_id {
            assert!(copies.iter().all(|c| c.field("event_id") == *id));
            assert!(
                copies
                    .iter()
                    .all(|c| c.field("incident_id") == copies[0].field("incident_id")
                        && c.field("event") == copies[0].field("event"))
            );
        }
        // One incident per store and outage: two replicas never opened the same one twice.
        let per_open = pg.sql(
            "fleet",
            "SELECT count(*) FROM (SELECT store_id, opened_at_ms / 1000 FROM incidents
                 GROUP BY 1, 2 HAVING count(*) > 1) d",
        );
        assert_eq!(per_open, "0");
        // Ozon never refused a key here: no auth_rejected was recorded.
        let false_auth = pg.sql(
            "fleet",
            "SELECT count(*) FROM checks WHERE findings LIKE '%auth_rejected%'",
        );
        assert_eq!(false_auth, "0");
        eprintln!(
            "replica kill storm: {rounds} kills, {} incidents, {} deliveries, {} duplicate copies",
            incidents.len(),
            delivered.len(),
            delivered.len() - by_id.len()
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn three_replicas_check_300_stores_once_each_and_take_over_a_killed_one() {
        let pg = Postgres::start();
        let url = pg.database("fleet");
        let receiver = Receiver::start().await;
        let n = 300;
        let stores: Vec<_> = (0..n).map(|i| ozon(&format!("ozon-{i:03}"))).collect();
        let w = world(stores, &receiver, "1h").await;
        import(&w, &url);
        let mut fleet: Vec<Daemon> = ["host-a", "host-b", "host-c"]
            .iter()
            .map(|name| start(&w, &url, name))
            .collect();
        let held = |name: &str| -> usize {
            pg.sql(
                "fleet",
                &format!("SELECT count(*) FROM leases WHERE holder = '{name}' AND until > now()"),
            )
            .parse()
            .unwrap()
        };
        until(Duration::from_secs(30), "the leases split 6/5/5", || {
            let mut h = [held("host-a"), held("host-b"), held("host-c")];
            h.sort();
            h == [5, 5, 6]
        })
        .await;
        let settled = db_now(&pg);
        until(Duration::from_secs(30), "every store checked", || {
            checked(&pg, settled) == n
        })
        .await;
        let by: Vec<usize> = ["host-a", "host-b", "host-c"]
            .iter()
            .map(|r| checked_by(&pg, r, settled))
            .collect();
        assert_eq!(by.iter().sum::<usize>(), n, "{by:?}");
        let c = fleet.pop().unwrap();
        c.kill9();
        let killed = db_now(&pg);
        let took = until(Duration::from_secs(30), "a and b check every store", || {
            checked_by(&pg, "host-a", killed) + checked_by(&pg, "host-b", killed) == n
        })
        .await;
        eprintln!("3 replicas, {n} stores: c killed, all checked again {took:?} later");
        let bound = LEASE + LEASE / 3 + Duration::from_secs(3);
        assert!(took <= bound, "took {took:?}; bound {bound:?}");
        assert_eq!(double_probes(&pg, settled), "");
        let a = &fleet[0];
        let text = a.get("/metrics").await.unwrap().1;
        assert!(
            text.contains("storeguard_replica_takeovers_total"),
            "{text}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_replica_watches_a_mailbox_and_another_takes_it_over() {
        use crate::util::mailsrv::{DkimKey, Dns, Dovecot, USER, mail};
        use storeguard::vault::{Document, EntryId, Schema, Vault};
        let password = storeguard::demo::canary("us-mail", "password");
        let dovecot = Dovecot::start(&password);
        let dns = Dns::start().await.unwrap();
        let amazon = DkimKey::new("amazon.com", "sg1", Some(&dns));
        let pg = Postgres::start();
        let url = pg.database("fleet");
        let receiver = Receiver::start().await;
        let w = world(
            vec![storeguard::demo::StoreSpec::new(
                "amazon-us",
                "US store",
                storeguard::model::Marketplace::Amazon,
            )],
            &receiver,
            "1h",
        )
        .await;
        let cfg = std::fs::read_to_string(&w.config_path).unwrap();
        std::fs::write(
            &w.config_path,
            format!(
                "{cfg}\n[mail]\nresolver = \"{}\"\nbackfill = \"7d\"\npoll = \"1s\"\n\n\
                 [[mailbox]]\nname = \"us-mail\"\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\n\
                 username = \"{USER}\"\nstores = [\"amazon-us\"]\n",
                dns.addr, dovecot.port
            ),
        )
        .unwrap();
        let mut doc = Document::parse(
            &format!("password = \"{password}\"\n"),
            Schema::Mailbox { xoauth2: false },
        )
        .unwrap();
        Vault::open(&w.path().join("vault"))
            .unwrap()
            .write(
                &EntryId::mailbox("us-mail"),
                &mut doc,
                None,
                Some(&w.identity().unwrap()),
            )
            .unwrap();
        import(&w, &url);
        let a = start(&w, &url, "host-a");
        let b = start(&w, &url, "host-b");
        let shard = storeguard::replica::shard_of("mailbox:us-mail", SHARDS);
        let holder = || {
            pg.sql(
                "fleet",
                &format!("SELECT holder FROM leases WHERE shard = {shard} AND until > now()"),
            )
        };
        until(Duration::from_secs(30), "the leases split", || {
            pg.sql(
                "fleet",
                "SELECT count(DISTINCT holder) FROM leases WHERE until > now()",
            ) == "2"
        })
        .await;
        let sign_in = |id: &str| {
            amazon.sign(&mail(
                "Amazon <account-update@amazon.com>",
                "Amazon Sign-in attempt",
                id,
                "Someone who knows your password is attempting to sign-in to your account.\n\
                 When: December 2, 2026 03:12 CST\nDevice: Chrome on Windows\nNear: Shenzhen, China\n\n\
                 Your code is 482913. If this was not you, visit https://www.amazon.com/a/c/r?k=Zk\n",
            ))
        };
        let alerts = |r: &Receiver| -> Vec<String> {
            r.delivered()
                .iter()
                .filter(|m| m.field("store_id") == "amazon-us" && m.field("event") == "opened")
                .map(|m| m.idempotency_key.clone())
                .collect()
        };
        dovecot
            .append(&password, "INBOX", None, &sign_in("m1@amazon.com"))
            .await;
        let waited = Instant::now();
        while alerts(&receiver).is_empty() {
            assert!(
                waited.elapsed() < Duration::from_secs(30),
                "no alert; records: {}",
                pg.sql("fleet", "SELECT string_agg(event || ' ' || verdict || ' ' || alerted, '; ') FROM mail_records"),
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        eprintln!(
            "first alert after {:?}; holder {}",
            waited.elapsed(),
            holder()
        );
        // Let both replicas poll a few more times: still one alert, from one watcher.
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(alerts(&receiver).len(), 1, "{:?}", alerts(&receiver));
        let watcher = holder();
        let (dead, alive) = if watcher == "host-a" { (a, b) } else { (b, a) };
        assert!(dead.log().contains("mailbox") || alive.log().contains("mailbox"));
        dead.kill9();
        dovecot
            .append(&password, "INBOX", None, &sign_in("m2@amazon.com"))
            .await;
        until(
            Duration::from_secs(30),
            "the survivor watches the mailbox and alerts",
            || alerts(&receiver).len() == 2,
        )
        .await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let mut keys = alerts(&receiver);
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), 2, "one alert per mail");
        assert_ne!(holder(), watcher);
        assert!(
            !alive.log().contains(&password),
            "the mailbox password in a log"
        );
    }
}
