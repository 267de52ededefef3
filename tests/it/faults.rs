//! Fault suites: a damaged vault on reload, a full state disk, a clock that jumps, and the daemon
//! killed at random points of its sweeps and deliveries. Loopback only, bounded in time.

use crate::util::proc::*;
use crate::util::receiver::{Receiver, SLOW, UP};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use storeguard::alert::Delivery;
use storeguard::clock::{BoxFuture, Clock, ManualClock};
use storeguard::config::Config;
use storeguard::daemon::{self, Checker, Parts, Sender, Shared};
use storeguard::demo::{StoreSpec, World, WorldConfig};
use storeguard::event::{AlertEvent, EventKind};
use storeguard::fake::Scenario;
use storeguard::model::Marketplace;

fn ozon(id: &str) -> StoreSpec {
    StoreSpec::new(id, id, Marketplace::Ozon)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_vault_entries_on_sighup_fail_alone() {
    let receiver = Receiver::start().await;
    let stores = ["garbage", "truncated", "other-key", "fine"]
        .map(ozon)
        .to_vec();
    let w = world(stores, &receiver, "1h").await;
    let d = Daemon::start(&w);
    for id in ["garbage", "truncated", "other-key", "fine"] {
        wait_checked(&d, id).await;
    }
    let dir = w.path().join("vault/stores");
    std::fs::write(dir.join("garbage.age"), b"\x00\x01 this is not age \xff").unwrap();
    let t = std::fs::read(dir.join("truncated.age")).unwrap();
    std::fs::write(dir.join("truncated.age"), &t[..t.len() / 2]).unwrap();
    let other = age::x25519::Identity::generate().to_public();
    let sealed = storeguard::vault::encrypt(
        b"client_id = \"1\"\napi_key = \"CANARY-fault-other\"\n",
        &[other],
    )
    .unwrap();
    std::fs::write(dir.join("other-key.age"), sealed).unwrap();
    d.reload();
    for id in ["garbage", "truncated", "other-key"] {
        eventually(
            Duration::from_secs(20),
            &format!("{id} unreadable"),
            || async {
                d.store(id).await.is_some_and(|s| {
                    s["status"] == "UNKNOWN"
                        && s["findings"]
                            .as_array()
                            .is_some_and(|f| f.iter().any(|f| f["kind"] == "vault_unreadable"))
                })
            },
        )
        .await;
    }
    let before = d.store("fine").await.unwrap()["last_check"].clone();
    eventually(Duration::from_secs(10), "fine keeps running", || async {
        d.store("fine")
            .await
            .is_some_and(|s| s["status"] == "OK" && s["last_check"] != before)
    })
    .await;
    let log = d.log();
    assert!(!log.contains("CANARY"), "{log}");
    assert!(d.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_state_disk_fails_cleanly_alerts_and_recovers() {
    let prlimit = ["/usr/bin/prlimit", "/bin/prlimit"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("prlimit (util-linux) is needed for the disk-full test");
    let receiver = Receiver::start().await;
    let stores: Vec<_> = (0..20).map(|i| ozon(&format!("s{i}"))).collect();
    let w = world(stores, &receiver, "1h").await;
    // A file-size limit stands in for a full disk; SIGXFSZ is ignored so writes fail with
    // EFBIG instead of killing the process. 600 kB leaves room for the schema and the first
    // round of checks of all 20 stores, and the write-ahead log passes it within seconds.
    let log = w.path().join("daemon-full.log");
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg(format!(
            "trap '' XFSZ; exec {prlimit} --fsize=600000:unlimited {} --config {} run",
            crate::util::BIN,
            w.config_path.display()
        ))
        .env("STOREGUARD_LOG", "info");
    let mut d = Daemon::spawn(c, log.clone());
    let mut child = d.child.take().unwrap();
    d.wait_log("cannot record the check").await;
    let (_, metrics) = d.get("/metrics").await.unwrap();
    assert!(metrics.contains("storeguard_state_fault 1"), "{metrics}");
    eventually(Duration::from_secs(20), "fault alert delivered", || async {
        receiver
            .delivered()
            .iter()
            .any(|r| r.field("finding") == "daemon_fault" && r.field("event") == "opened")
    })
    .await;
    // Still checking while the disk is full.
    d.wait_next_check("s0").await;
    // Make room: the daemon recovers by itself.
    let ok = Command::new(prlimit)
        .args([
            "--pid",
            &child.id().to_string(),
            "--fsize=unlimited:unlimited",
        ])
        .status()
        .unwrap();
    assert!(ok.success());
    d.wait_log("state database writable again").await;
    let (_, metrics) = d.get("/metrics").await.unwrap();
    assert!(metrics.contains("storeguard_state_fault 0"), "{metrics}");
    eventually(Duration::from_secs(20), "fault resolved alert", || async {
        receiver
            .delivered()
            .iter()
            .any(|r| r.field("finding") == "daemon_fault" && r.field("event") == "resolved")
    })
    .await;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    wait_child(&mut child, Duration::from_secs(20));
    let state = storeguard::state::State::open_read_only(&w.path().join("state")).unwrap();
    assert_eq!(state.integrity_check().unwrap(), "ok");
    assert!(
        state.load_stores().unwrap().len() >= 20,
        "previous data intact and readable"
    );
}

/// Records the events it delivers; while `down`, answers "retry later" instead.
struct Counter {
    events: std::sync::Mutex<Vec<AlertEvent>>,
    down: std::sync::atomic::AtomicBool,
}

impl Sender for Counter {
    fn send<'a>(
        &'a self,
        _: &'a str,
        e: &'a AlertEvent,
        _: chrono::DateTime<chrono::Utc>,
    ) -> BoxFuture<'a, Delivery> {
        if self.down.load(Ordering::SeqCst) {
            return Box::pin(async { Delivery::Retry(None) });
        }
        self.events.lock().unwrap().push(e.clone());
        Box::pin(async { Delivery::Delivered })
    }
}

struct CountingProbe {
    inner: Arc<dyn Checker>,
    checks: AtomicUsize,
}

impl Checker for CountingProbe {
    fn check<'a>(
        &'a self,
        id: &'a str,
        now: chrono::DateTime<chrono::Utc>,
    ) -> BoxFuture<'a, Option<storeguard::outcome::Outcome>> {
        self.checks.fetch_add(1, Ordering::SeqCst);
        self.inner.check(id, now)
    }

    fn entry_changed(&self, id: &str) -> bool {
        self.inner.entry_changed(id)
    }

    fn unreadable(&self) -> Vec<(String, String)> {
        self.inner.unreadable()
    }
}

struct TestParts {
    real: storeguard::cli::run::RealParts,
    probe: std::sync::Mutex<Option<Arc<CountingProbe>>>,
    sender: Arc<Counter>,
}

impl Parts for TestParts {
    fn build(&self, config: &Arc<Config>) -> anyhow::Result<(Arc<dyn Checker>, Arc<dyn Sender>)> {
        let (inner, _) = self.real.build(config)?;
        let p = Arc::new(CountingProbe {
            inner,
            checks: AtomicUsize::new(0),
        });
        *self.probe.lock().unwrap() = Some(p.clone());
        Ok((p, self.sender.clone()))
    }
}

/// A daemon in this process on a manual clock, with counting probe and sender.
struct InProcess {
    clock: ManualClock,
    parts: Arc<TestParts>,
    sender: Arc<Counter>,
    shared: Arc<Shared>,
    daemon: daemon::Daemon,
    _world: World,
}

impl InProcess {
    /// Starts at `start` (on the real date: the fakes check timestamps).
    async fn start(w: World, start: chrono::DateTime<chrono::Utc>) -> InProcess {
        let config = Arc::new(Config::load(&w.config_path).unwrap());
        let vault = storeguard::vault::Vault::open(&config.daemon.vault_dir).unwrap();
        let identity = Arc::new(w.identity().unwrap());
        let sender = Arc::new(Counter {
            events: Default::default(),
            down: Default::default(),
        });
        let parts = Arc::new(TestParts {
            real: storeguard::cli::run::RealParts::new(vault, identity),
            probe: Default::default(),
            sender: sender.clone(),
        });
        let clock = ManualClock::new(start);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let daemon = tokio::time::timeout(
            Duration::from_secs(10),
            daemon::Daemon::start(
                config,
                parts.clone(),
                daemon::Options {
                    clock: Arc::new(clock.clone()),
                    ..daemon::Options::default()
                },
                listener,
            ),
        )
        .await
        .expect("the daemon gets ready")
        .expect("the daemon starts");
        let shared = daemon.shared().clone();
        // The scheduler has planned every store: moving the clock now passes their firings.
        let deadline = Instant::now() + Duration::from_secs(10);
        while storeguard::web::view::from_daemon(&shared, storeguard::web::view::Accounts::Hidden)
            .0
            .iter()
            .any(|s| s.enabled && s.next_check.is_none())
        {
            assert!(Instant::now() < deadline, "the scheduler plans the stores");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        InProcess {
            clock,
            parts,
            sender,
            shared,
            daemon,
            _world: w,
        }
    }

    fn checks(&self) -> usize {
        self.parts
            .probe
            .lock()
            .unwrap()
            .as_ref()
            .unwrap()
            .checks
            .load(Ordering::SeqCst)
    }

    /// Waits for `want` checks in all, then makes sure no more arrive.
    async fn settle(&self, want: usize) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.checks() < want {
            assert!(
                Instant::now() < deadline,
                "expected {want} checks, have {}",
                self.checks()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(self.checks(), want, "burst of checks");
    }

    fn events(&self, kind: EventKind) -> usize {
        self.sender
            .events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.event == kind)
            .count()
    }

    async fn stop(self) {
        self.daemon.shutdown().await.unwrap();
    }
}

/// A second before a firing of a `*/period` minutes schedule, on the real date.
fn before_firing(period_secs: i64) -> chrono::DateTime<chrono::Utc> {
    let now = chrono::Utc::now();
    chrono::DateTime::<chrono::Utc>::from_timestamp(
        now.timestamp() - now.timestamp() % period_secs + period_secs - 1,
        0,
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clock_jumps_cause_no_burst_of_checks_and_no_reminder_storm() {
    let wc = WorldConfig {
        schedule: "*/10 * * * *".into(),
        remind_every: "30m".into(),
        failure_threshold: 1,
        success_threshold: 1,
        ..WorldConfig::default()
    };
    let stores: Vec<_> = (0..5).map(|i| ozon(&format!("c{i}"))).collect();
    let w = World::build(stores, wc).await.unwrap();
    w.set_scenario("c0", Scenario::CompanyBlocked);
    let d = InProcess::start(w, before_firing(600)).await;
    let clock = &d.clock;
    clock.advance(Duration::from_secs(40)); // past the firing + jitter
    d.settle(5).await;
    assert_eq!(d.events(EventKind::Opened), 1);

    // Forward one hour: six firings were missed; each store checks once, not six times.
    clock.advance(Duration::from_secs(3600));
    d.settle(10).await;
    let reminders = d.events(EventKind::Reminder);
    assert!(reminders <= 1, "reminder storm: {reminders}");

    // Back one hour: the schedule is re-planned, nothing fires at once.
    let back = clock.now() - chrono::Duration::hours(1);
    clock.set(back);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(d.checks(), 10, "a jump back must not fire checks");
    // The next firing in the new timeline checks each store once.
    clock.advance(Duration::from_secs(600));
    d.settle(15).await;
    let reminders = d.events(EventKind::Reminder);
    assert!(reminders <= 1, "reminder after jumping back: {reminders}");
    d.stop().await;
}

/// An `opened` that could not be delivered for a day (the channel was down, or the clock
/// jumped 25 h ahead) is still delivered while its incident is open, before any reminder: the
/// receiver never gets a reminder of an incident it was not told about.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_opened_held_up_for_a_day_still_comes_before_its_reminder() {
    let wc = WorldConfig {
        schedule: "*/10 * * * *".into(),
        remind_every: "1h".into(),
        failure_threshold: 1,
        success_threshold: 1,
        ..WorldConfig::default()
    };
    let w = World::build(vec![ozon("j0")], wc).await.unwrap();
    w.set_scenario("j0", Scenario::CompanyBlocked);
    let d = InProcess::start(w, before_firing(600)).await;
    d.sender.down.store(true, Ordering::SeqCst);
    d.clock.advance(Duration::from_secs(40));
    d.settle(1).await;
    let queued = || {
        d.shared
            .state
            .outbox_depth()
            .expect("the outbox is readable")
    };
    assert_eq!(queued(), 1, "the opened waits in the outbox");
    // 25 hours later: the next check is a reminder, and the channel is back.
    d.clock.advance(Duration::from_secs(25 * 3600));
    d.settle(2).await;
    d.sender.down.store(false, Ordering::SeqCst);
    d.clock.advance(Duration::from_secs(1));
    let deadline = Instant::now() + Duration::from_secs(20);
    while d.events(EventKind::Reminder) == 0 {
        assert!(Instant::now() < deadline, "the reminder is delivered");
        d.clock.advance(Duration::from_secs(1));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let kinds: Vec<EventKind> = d
        .sender
        .events
        .lock()
        .unwrap()
        .iter()
        .map(|e| e.event)
        .collect();
    assert_eq!(kinds, [EventKind::Opened, EventKind::Reminder]);
    d.stop().await;
}

/// D10: while a store backs off, status shows when it is really checked next (the first
/// firing after the backoff, not the next firing it will skip), and a clock stepped back a day
/// does not stretch the backoff by that day.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backoff_shows_in_next_check_and_survives_a_clock_stepped_back() {
    let wc = WorldConfig {
        schedule: "* * * * *".into(),
        failure_threshold: 1,
        success_threshold: 1,
        ..WorldConfig::default()
    };
    let w = World::build(vec![ozon("b0")], wc).await.unwrap();
    w.set_scenario("b0", Scenario::WrongKey);
    let d = InProcess::start(w, before_firing(60)).await;
    let next_check = || {
        storeguard::web::view::from_daemon(&d.shared, storeguard::web::view::Accounts::Hidden).0[0]
            .next_check
            .expect("a next check")
    };
    d.clock.advance(Duration::from_secs(61)); // past the firing + jitter
    d.settle(1).await;
    let checked = d.clock.now();
    // The key is refused: 10 minutes of backoff over an every-minute schedule.
    let shown = next_check();
    assert!(
        shown >= checked + chrono::Duration::minutes(9),
        "next_check {shown} ignores the backoff (checked at {checked})"
    );
    assert!(shown <= checked + chrono::Duration::minutes(12), "{shown}");
    // Minutes pass inside the backoff: firings are skipped, as shown.
    for _ in 0..5 {
        d.clock.advance(Duration::from_secs(60));
        tokio::task::yield_now().await;
    }
    d.settle(1).await;
    // The clock is stepped back a day (an NTP correction of a clock that ran ahead).
    let back = d.clock.now() - chrono::Duration::days(1);
    d.clock.set(back);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(d.checks(), 1, "a step back fires nothing at once");
    let shown = next_check();
    assert!(
        shown <= back + chrono::Duration::minutes(7),
        "the backoff now ends {shown}, a day after the step back to {back}"
    );
    // The rest of the backoff passes in the new timeline and the store is checked again.
    for _ in 0..7 {
        d.clock.advance(Duration::from_secs(60));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    d.settle(2).await;
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_points_loses_no_alert_and_tears_no_row() {
    let receiver = Receiver::start().await;
    let stores: Vec<_> = (0..6).map(|i| ozon(&format!("k{i}"))).collect();
    let w = world(stores, &receiver, "1h").await;
    let mut rng = crate::util::Rng::new(0x5eed_0006);
    let rounds = 200;
    let started = Instant::now();
    for round in 0..rounds {
        // Flip a store between broken and healthy so incidents open and resolve across kills.
        let i = rng.below(6);
        let broken = rng.below(2) == 0;
        w.set_scenario(
            &format!("k{i}"),
            if broken {
                Scenario::CompanyBlocked
            } else {
                Scenario::Healthy
            },
        );
        receiver.set_mode(if rng.below(3) == 0 { SLOW } else { UP }, rng.below(400));
        let d = Daemon::start(&w);
        std::thread::sleep(Duration::from_millis(100 + rng.below(700)));
        d.kill9();
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "storm too slow at round {round}"
        );
    }
    // Everything healthy, one clean run to the end.
    for i in 0..6 {
        w.set_scenario(&format!("k{i}"), Scenario::Healthy);
    }
    receiver.set_mode(UP, 0);
    let d = Daemon::start(&w);
    for i in 0..6 {
        wait_checked(&d, &format!("k{i}")).await;
    }
    eventually(
        Duration::from_secs(60),
        "all incidents resolved and outbox drained",
        || async {
            let stores = d.stores().await.unwrap_or_default();
            let open = stores.as_array().map_or(1, |a| {
                a.iter()
                    .filter(|s| {
                        s["open_incidents"]
                            .as_array()
                            .is_some_and(|o| !o.is_empty())
                    })
                    .count()
            });
            let depth = d
                .get("/metrics")
                .await
                .map(|(_, m)| m.contains("storeguard_outbox_depth 0"))
                .unwrap_or(false);
            open == 0 && depth
        },
    )
    .await;
    assert!(d.stop().success());

    let state = storeguard::state::State::open_read_only(&w.path().join("state")).unwrap();
    assert_eq!(state.integrity_check().unwrap(), "ok", "no torn page");
    state.load_stores().expect("every store row parses");
    // No alert lost: every incident ever opened was delivered opened and resolved.
    let delivered = receiver.delivered();
    let mut opened_incidents = std::collections::HashSet::new();
    for i in 0..6 {
        for inc in state.incidents(&format!("k{i}"), 10_000).unwrap() {
            assert!(
                inc.resolved_at.is_some(),
                "incident {} left open",
                inc.incident_id
            );
            opened_incidents.insert(inc.incident_id);
        }
    }
    for inc in &opened_incidents {
        for kind in ["opened", "resolved"] {
            assert!(
                delivered
                    .iter()
                    .any(|r| r.field("incident_id") == *inc && r.field("event") == kind),
                "{kind} of incident {inc} never delivered"
            );
        }
    }
    // Duplicates (at-least-once) carry the same event id and the same content.
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
    eprintln!(
        "kill storm: {rounds} kills, {} incidents, {} deliveries, {} duplicate copies",
        opened_incidents.len(),
        delivered.len(),
        delivered.len() - by_id.len()
    );
    assert!(
        !opened_incidents.is_empty(),
        "the storm produced no incident to check"
    );
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_clients_leave_the_daemon_unaffected() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let receiver = Receiver::start().await;
    let (w, d) = started(vec![ozon("h0")], &receiver, "1h").await;
    let pid = d.child.as_ref().unwrap().id();
    let addr = d.addr().to_string();

    // Oversized headers: refused with 431 (or the connection is closed), never buffered.
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let big = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(1 << 20)
    );
    let _ = s.write_all(big.as_bytes()).await;
    let mut answer = vec![0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut answer))
        .await
        .unwrap()
        .unwrap_or(0);
    let head = String::from_utf8_lossy(&answer[..n]).to_string();
    assert!(n == 0 || head.contains(" 431 "), "{head}");

    // An oversized body on a POST: no crash, a normal status.
    let client = storeguard::http::client_builder(Duration::from_secs(10))
        .build()
        .unwrap();
    let r = client
        .post(format!("{}/api/v1/stores/h0/check", d.api))
        .bearer_auth(storeguard::demo::canary("daemon", "api-token"))
        .body(vec![b'x'; 4 << 20])
        .send()
        .await;
    if let Ok(r) = r {
        assert!([202, 413].contains(&r.status().as_u16()), "{}", r.status());
    }

    // Thousands of connections that never finish their request.
    let rss_before = rss_kib(pid);
    let mut slow = Vec::new();
    for _ in 0..2000 {
        if let Ok(mut c) = tokio::net::TcpStream::connect(&addr).await {
            let _ = c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await;
            slow.push(c);
        }
    }
    let rss_during = rss_kib(pid);
    assert!(
        rss_during < rss_before + 64 * 1024,
        "RSS grew from {rss_before} to {rss_during} KiB"
    );
    // Checks go on meanwhile (read from the state file, not the flooded listener).
    let state = storeguard::state::State::open_read_only(&w.path().join("state")).unwrap();
    let last = state.last_check("h0").unwrap();
    eventually(
        Duration::from_secs(10),
        "checks continue under the flood",
        || async { state.last_check("h0").unwrap() > last },
    )
    .await;
    drop(slow);
    eventually(
        Duration::from_secs(20),
        "listener answers again",
        || async { d.get("/healthz").await.is_some_and(|(s, _)| s == 200) },
    )
    .await;
    eprintln!(
        "listener flood: RSS {rss_before} KiB before, {rss_during} KiB with 2000 open connections"
    );
    assert!(d.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_mans_switch_is_pinged_while_healthy() {
    let receiver = Receiver::start().await;
    let w = World::build(vec![ozon("p0")], WorldConfig::default())
        .await
        .unwrap();
    let config = Arc::new(Config::load(&w.config_path).unwrap());
    let vault = storeguard::vault::Vault::open(&config.daemon.vault_dir).unwrap();
    let identity = Arc::new(w.identity().unwrap());
    let parts = Arc::new(TestParts {
        real: storeguard::cli::run::RealParts::new(vault, identity),
        probe: Default::default(),
        sender: Arc::new(Counter {
            events: Default::default(),
            down: Default::default(),
        }),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let d = daemon::Daemon::start(
        config,
        parts,
        daemon::Options {
            heartbeat_url: Some(format!("{}/CANARY-heartbeat-uuid", receiver.url).into()),
            limits: daemon::Limits {
                heartbeat_every: Duration::from_millis(200),
                ..daemon::Limits::default()
            },
            ..daemon::Options::default()
        },
        listener,
    )
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while receiver.all().len() < 3 {
        assert!(Instant::now() < deadline, "no heartbeat pings");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    d.shutdown().await.unwrap();
}
