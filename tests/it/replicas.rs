//! Several replicas on a real PostgreSQL (started by the test on loopback): leases are
//! exclusive and spread, a dead replica's shards are taken over only after its lease expired
//! by the database's clock and within the bound, a stalled replica is fenced, a clean stop
//! hands over at once, and a database restart needs no operator.

use crate::util::pg::Postgres;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use storeguard::replica::{Db, DbError, Fence, Replica, StoredEntry, Target};

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
        .vault_put_fenced(stale, &entry(1, "first"), None)
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
            Some(1),
        )
        .await
        .unwrap();
    // Woken up: it does not trust the lease any more, and a write with the old term is refused.
    assert!(paused.elapsed() >= storeguard::replica::plan::trust_for(TTL));
    assert_eq!(a.fence(shard, Instant::now()), None);
    let err = a
        .db()
        .vault_put_fenced(stale, &entry(2, "late write by a"), Some(1))
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
        .vault_put_fenced(f, &entry(2, "from a stale read"), Some(1))
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
            None,
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
