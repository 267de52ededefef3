//! `bench fleet`: the lease layer of several replicas on a real PostgreSQL (started here on
//! loopback, as the tests do): settling, the cost of a tick, fenced writes, 100,000 stores over
//! three replicas, the database's CPU and connections, and the takeover time.

use super::{Row, median, process_cpu, row, runs_note};
use std::time::{Duration, Instant};
use storeguard::replica::{Db, Expect, Replica, StoredEntry, Target, plan};

#[allow(dead_code)]
#[path = "../../tests/it/util/pg.rs"]
mod pg;

/// CPU of the server: the postmaster with its reaped children, plus every live backend.
fn server_cpu(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, a)| a).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let reaped: u64 = [13, 14]
        .iter()
        .filter_map(|i| f.get(*i).and_then(|v| v.parse::<u64>().ok()))
        .sum();
    let mut total = process_cpu(&pid.to_string()) + Duration::from_millis(reaped * 10);
    for p in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let name = p.file_name();
        let Some(child) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let s = std::fs::read_to_string(p.path().join("stat")).unwrap_or_default();
        let ppid = s
            .rsplit_once(')')
            .and_then(|(_, a)| a.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u32>().ok());
        if ppid == Some(pid) {
            total += process_cpu(child);
        }
    }
    total
}

fn self_cpu() -> Duration {
    process_cpu("self")
}

fn target(url: &str, name: &str, ttl: Duration) -> Target {
    Target {
        url: url.to_string(),
        password: None,
        replica: name.to_string(),
        timeout: plan::tick(ttl),
    }
}

pub fn bench_fleet(args: &super::Args, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let rt = super::runtime("storeguard", 2)?;
    let pg = pg::Postgres::start();
    let url = pg.database("fleet");
    let pid = pg.pid().unwrap_or(0);
    let shards = plan::DEFAULT_SHARDS;
    let ttl = args
        .lease_ttl
        .map_or(plan::DEFAULT_LEASE_TTL, Duration::from_secs_f64);
    rt.block_on(async {
        let names = ["host-a", "host-b", "host-c"];
        let mut fleet = Vec::new();
        for n in names {
            fleet.push(Replica::join(Db::new(&target(&url, n, ttl))?, shards, ttl).await?);
        }
        // Settling: every replica ticks in turn until each holds its share.
        let start = Instant::now();
        let mut rounds = 0;
        loop {
            rounds += 1;
            for r in fleet.iter_mut() {
                r.tick().await?;
            }
            let now = Instant::now();
            if fleet.iter().all(|r| r.trusted(now).len() >= 21) {
                break;
            }
            anyhow::ensure!(rounds < 100, "the fleet did not settle");
        }
        let settle = start.elapsed();
        rows.push(row(
            format!("3 replicas, {shards} shards: settled from empty"),
            "-",
            format!("{rounds} rounds of ticks, {:.0} ms", settle.as_secs_f64() * 1e3),
            None,
        ));

        // A steady tick: heartbeat, renew every lease, read the fleet (no lease moves).
        let mut per_tick_us = Vec::new();
        let mut db_per_tick_us = Vec::new();
        let mut wall_ms = Vec::new();
        for _ in 0..args.runs {
            let n = 300;
            let (c0, d0, w0) = (self_cpu(), server_cpu(pid), Instant::now());
            for _ in 0..n / 3 {
                for r in fleet.iter_mut() {
                    r.tick().await?;
                }
            }
            let wall = w0.elapsed();
            per_tick_us.push((self_cpu() - c0).as_secs_f64() * 1e6 / n as f64);
            db_per_tick_us.push((server_cpu(pid) - d0).as_secs_f64() * 1e6 / n as f64);
            wall_ms.push(wall.as_secs_f64() * 1e3 / n as f64);
        }
        rows.push(row(
            format!("one replica's tick (~{} shards renewed), every {:?}", shards / 3, plan::tick(ttl)),
            "-",
            format!(
                "replica CPU **{:.0} µs** ({}), database CPU **{:.0} µs** ({}), wall {:.2} ms",
                median(per_tick_us.clone()),
                runs_note(&per_tick_us, "µs", 0),
                median(db_per_tick_us.clone()),
                runs_note(&db_per_tick_us, "µs", 0),
                median(wall_ms.clone()),
            ),
            None,
        ));

        // Fenced writes: a rotated token written under its shard's lease, from all three at
        // once, in rounds of 300 with a tick between (as the daemon renews while it works).
        let writes = args.events.max(300);
        let (c0, d0, w0) = (self_cpu(), server_cpu(pid), Instant::now());
        let mut lat = Vec::with_capacity(writes);
        let mut done = 0;
        while done < writes {
            for r in fleet.iter_mut() {
                r.tick().await?;
            }
            let mut jobs = Vec::new();
            for r in &fleet {
                let now = Instant::now();
                let fences: Vec<_> =
                    r.trusted(now).into_iter().filter_map(|s| r.fence(s, now)).collect();
                let db = r.db().clone();
                let from = done;
                jobs.push(tokio::spawn(async move {
                    let mut lat = Vec::with_capacity(100);
                    for i in from..from + 100 {
                        let f = fences[i % fences.len()];
                        let e = StoredEntry {
                            entry: format!("store/s{}-{i}", f.shard),
                            armored: "-----BEGIN AGE ENCRYPTED FILE-----\n(bench)\n-----END AGE ENCRYPTED FILE-----\n".into(),
                            generation: 1,
                        };
                        let t = Instant::now();
                        db.vault_put_fenced(f, &e, Expect::Any).await?;
                        lat.push(t.elapsed().as_secs_f64() * 1e3);
                    }
                    Ok::<_, anyhow::Error>(lat)
                }));
            }
            for j in jobs {
                lat.extend(j.await??);
            }
            done += 300;
        }
        let wall = w0.elapsed();
        let n = lat.len();
        lat.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
        rows.push(row(
            format!("fenced token write-backs ({n}, 3 replicas at once)"),
            "-",
            format!(
                "**{:.0}/s**; p50 {:.2} ms, p99 {:.2} ms; replica CPU {:.0} µs, database CPU {:.0} µs per write",
                n as f64 / wall.as_secs_f64(),
                lat[n / 2],
                lat[n * 99 / 100],
                (self_cpu() - c0).as_secs_f64() * 1e6 / n as f64,
                (server_cpu(pid) - d0).as_secs_f64() * 1e6 / n as f64,
            ),
            None,
        ));

        // 100,000 stores: who probes each (shard hash + lease lookup), and the spread.
        for r in fleet.iter_mut() {
            r.tick().await?;
        }
        let stores = 100_000;
        let ids: Vec<String> = (0..stores).map(|i| format!("store-{i:06}")).collect();
        let t = Instant::now();
        let now = Instant::now();
        let mut per = [0usize; 3];
        let mut none = 0;
        for id in &ids {
            let mut owners = fleet
                .iter()
                .enumerate()
                .filter(|(_, r)| r.fence_for_store(id, now).is_some());
            match (owners.next(), owners.next()) {
                (Some((i, _)), None) => per[i] += 1,
                (None, _) => none += 1,
                (Some(_), Some(_)) => anyhow::bail!("{id} has two probers"),
            }
        }
        let each = t.elapsed().as_secs_f64() * 1e9 / (stores * 3) as f64;
        rows.push(row(
            format!("{stores} stores over 3 replicas: one prober each"),
            "exactly one",
            format!(
                "{} / {} / {} stores, {none} without; {each:.0} ns per store and replica to decide",
                per[0], per[1], per[2]
            ),
            Some(none == 0),
        ));
        let conns: i64 = {
            let out = pg.sql(
                "fleet",
                "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'storeguard %'",
            );
            out.parse().unwrap_or(-1)
        };
        rows.push(row(
            "database connections of 3 replicas",
            "-",
            format!("{conns} (a pool of at most 4 per replica)"),
            None,
        ));

        // Takeover: host-c dies without a word right after renewing; the others tick on until
        // they hold every shard.
        for r in fleet.iter_mut() {
            r.tick().await?;
        }
        let dead = fleet.pop().expect("three replicas");
        drop(dead);
        let died = Instant::now();
        loop {
            for r in fleet.iter_mut() {
                r.tick().await?;
            }
            let now = Instant::now();
            if fleet.iter().map(|r| r.trusted(now).len()).sum::<usize>() == shards as usize {
                break;
            }
            tokio::time::sleep(plan::tick(ttl)).await;
        }
        let took = died.elapsed();
        let bound = ttl + plan::tick(ttl);
        rows.push(row(
            format!("takeover of a dead replica's {} shards (lease {ttl:?})", shards / 3),
            "≤ 60 s",
            format!("**{:.1} s** (bound: lease + one tick = {:.1} s)", took.as_secs_f64(), bound.as_secs_f64()),
            Some(took <= Duration::from_secs(60)),
        ));
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(())
}

/// `bench fleet-daemons`: three real `storeguard run` replicas on one PostgreSQL and the fake
/// Ozon, `--stores` stores checked every 30 s: per-replica CPU per check, the database's CPU
/// per check and connections, and the takeover of a SIGKILLed replica.
pub fn bench_fleet_daemons(args: &super::Args, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    use storeguard::demo::{StoreSpec, World};
    use storeguard::model::Marketplace;
    let bin = super::bin_path(args)?;
    let n = args.stores;
    let fakes = super::runtime("fake", 1)?;
    let pg = pg::Postgres::start();
    let url = pg.database("fleet");
    let pid = pg.pid().unwrap_or(0);
    let ttl = args.lease_ttl.unwrap_or(15.0);
    eprintln!("fleet-daemons: {n} Ozon stores, 3 replicas, lease {ttl} s…");
    let specs: Vec<StoreSpec> = (0..n)
        .map(|i| {
            StoreSpec::new(
                &format!("s{i:06}"),
                &format!("Store {i}"),
                Marketplace::Ozon,
            )
        })
        .collect();
    let world: World = fakes.block_on(World::build(
        specs,
        super::world_config("*/30 * * * * *", Duration::from_millis(20), "127.0.0.1:0"),
    ))?;
    let base = std::fs::read_to_string(&world.config_path)?;
    let config_for = |name: &str| -> anyhow::Result<std::path::PathBuf> {
        let text = base.replacen(
            "[daemon]\nstate_dir = \"state\"\nvault_dir = \"vault\"\n",
            &format!(
                "[daemon]\nstate = \"{url}\"\nreplica = \"{name}\"\nstate_dir = \"state-{name}\"\nvault_dir = \"vault-{name}\"\n"
            ),
            1,
        ) + &format!("\n[replicas]\nshards = 64\nlease_ttl = \"{}ms\"\n", (ttl * 1000.0) as u64);
        let path = world.path().join(format!("storeguard-{name}.toml"));
        std::fs::write(&path, text)?;
        Ok(path)
    };
    let t = Instant::now();
    let out = std::process::Command::new(&bin)
        .arg("--config")
        .arg(config_for("importer")?)
        .args(["vault", "import"])
        .arg(world.path().join("vault"))
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "import: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let import = t.elapsed();
    let count = |sql: &str| -> i64 { pg.sql("fleet", sql).parse().unwrap_or(-1) };
    let db_now = || count("SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint");
    let mut replicas = Vec::new();
    for name in ["host-a", "host-b", "host-c"] {
        let log = std::fs::File::create(world.path().join(format!("{name}.log")))?;
        let child = std::process::Command::new(&bin)
            .envs(super::UNIT_ENV.iter().copied())
            .arg("--config")
            .arg(config_for(name)?)
            .arg("run")
            .env("STOREGUARD_LOG", "warn")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("CREDENTIALS_DIRECTORY")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()?;
        replicas.push((name, super::Child { child }));
    }
    let started = db_now();
    let deadline = Instant::now() + Duration::from_secs(600);
    while count(&format!(
        "SELECT count(DISTINCT store) FROM checks WHERE at_ms >= {started}"
    )) < n as i64
    {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the fleet did not check every store"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    let up = Instant::now();
    // Two sweeps of steady state.
    let window = Duration::from_secs(60);
    let cpu0: Vec<Duration> = replicas
        .iter()
        .map(|(_, c)| process_cpu(&c.child.id().to_string()))
        .collect();
    let (d0, w0) = (server_cpu(pid), db_now());
    std::thread::sleep(window);
    let w1 = db_now();
    let db_cpu = server_cpu(pid) - d0;
    let mut parts = Vec::new();
    let mut total = 0i64;
    for (i, (name, c)) in replicas.iter().enumerate() {
        let cpu = process_cpu(&c.child.id().to_string()) - cpu0[i];
        let checks = count(&format!(
            "SELECT count(*) FROM checks WHERE replica = '{name}' AND at_ms >= {w0} AND at_ms < {w1}"
        ));
        total += checks;
        parts.push(format!(
            "{name} {checks} checks, {:.0} µs",
            cpu.as_secs_f64() * 1e6 / checks.max(1) as f64
        ));
    }
    let conns =
        count("SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'storeguard %'");
    rows.push(row(
        format!("{n} stores every 30 s over 3 replicas: CPU per check (real binaries, fake Ozon, 20 ms)"),
        "-",
        format!(
            "{}; database CPU **{:.0} µs** per check; {conns} connections; first sweep done {:.0} s after start (vault import {:.1} s)",
            parts.join("; "),
            db_cpu.as_secs_f64() * 1e6 / total.max(1) as f64,
            (up - t).as_secs_f64() - import.as_secs_f64(),
            import.as_secs_f64()
        ),
        None,
    ));
    // Takeover: c is SIGKILLed; its shards' leases move, then its stores are checked again.
    let (_, mut dead) = replicas.pop().expect("three");
    let killed = db_now();
    dead.child.kill()?;
    let _ = dead.child.wait();
    drop(dead);
    let t = Instant::now();
    while count("SELECT count(*) FROM leases WHERE holder = 'host-c' AND until > now()") > 0
        || count("SELECT count(*) FROM leases WHERE holder IS NOT NULL AND until > now()") < 64
    {
        anyhow::ensure!(t.elapsed() < Duration::from_secs(300), "no takeover");
        std::thread::sleep(Duration::from_millis(100));
    }
    let leases_moved = t.elapsed();
    let orphans = count(&format!(
        "SELECT count(DISTINCT c.store) FROM checks c WHERE c.replica = 'host-c' AND c.at_ms >= {w0}"
    ));
    while count(&format!(
        "SELECT count(DISTINCT c.store) FROM checks c WHERE c.at_ms >= {killed} AND c.replica <> 'host-c'"
    )) < n as i64
    {
        anyhow::ensure!(
            t.elapsed() < Duration::from_secs(300),
            "c's stores not checked again"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let checked_again = t.elapsed();
    rows.push(row(
        format!("takeover of a SIGKILLed replica ({orphans} stores, lease {ttl} s)"),
        "≤ 60 s",
        format!(
            "leases moved after **{:.1} s**; every store checked again after {:.1} s (the next 30 s sweep)",
            leases_moved.as_secs_f64(),
            checked_again.as_secs_f64()
        ),
        Some(checked_again <= Duration::from_secs(60)),
    ));
    drop(replicas);
    Ok(())
}
