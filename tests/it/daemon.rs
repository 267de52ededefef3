//! The daemon as it runs in production: the real binary, fake marketplaces and a real webhook
//! receiver on loopback, signals, sd_notify on a socket the test owns, and promtool.

use crate::util::proc::*;
use crate::util::receiver::{DOWN, Receiver, SLOW, UP};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use storeguard::demo::StoreSpec;
use storeguard::fake::Scenario;
use storeguard::model::Marketplace;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn break_remind_fix_gives_one_opened_reminders_and_one_resolved() {
    let receiver = Receiver::start().await;
    let w = world(vec![ozon("ozon-a"), ozon("ozon-b")], &receiver, "3s").await;
    let d = Daemon::start(&w);
    wait_checked(&d, "ozon-b").await;
    assert!(
        receiver.delivered().is_empty(),
        "healthy stores alert nothing"
    );

    w.set_scenario("ozon-b", Scenario::CompanyBlocked);
    eventually(Duration::from_secs(20), "opened", || async {
        receiver.events("ozon-b", "opened").len() == 1
    })
    .await;
    eventually(Duration::from_secs(30), "two reminders", || async {
        receiver.events("ozon-b", "reminder").len() >= 2
    })
    .await;
    w.set_scenario("ozon-b", Scenario::Healthy);
    eventually(Duration::from_secs(20), "resolved", || async {
        receiver.events("ozon-b", "resolved").len() == 1
    })
    .await;
    // A few more checks: nothing more arrives.
    d.wait_next_check("ozon-b").await;
    let all = receiver.delivered();
    let opened = receiver.events("ozon-b", "opened");
    assert_eq!(opened.len(), 1);
    assert_eq!(receiver.events("ozon-b", "resolved").len(), 1);
    assert!(receiver.events("ozon-a", "opened").is_empty());
    let incident = opened[0].field("incident_id");
    assert!(all.iter().all(|r| r.field("incident_id") == incident));
    let keys: std::collections::HashSet<_> =
        all.iter().map(|r| r.idempotency_key.clone()).collect();
    assert_eq!(keys.len(), all.len(), "every event has its own id");
    assert!(all.iter().all(|r| r.idempotency_key == r.field("event_id")));
    assert_eq!(opened[0].field("finding"), "account_blocked");
    assert_eq!(opened[0].field("severity"), "critical");
    assert!(!d.log().contains("CANARY"));
    // A log that goes to a file is plain text, without colour codes.
    assert!(!d.log().contains('\x1b'), "{}", d.log());
    assert!(d.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_neither_repeat_opened_nor_lose_resolved() {
    let receiver = Receiver::start().await;
    let w = world(vec![ozon("ozon-a")], &receiver, "1h").await;
    w.set_scenario("ozon-a", Scenario::CompanyBlocked);
    let d = Daemon::start(&w);
    eventually(Duration::from_secs(20), "opened", || async {
        receiver.events("ozon-a", "opened").len() == 1
    })
    .await;

    // Graceful restart.
    assert!(d.stop().success());
    let d = Daemon::start(&w);
    let first = d.store("ozon-a").await;
    eventually(Duration::from_secs(20), "checked after restart", || async {
        d.store("ozon-a").await.is_some_and(|s| {
            s["last_check"]
                != first
                    .as_ref()
                    .map_or(serde_json::Value::Null, |f| f["last_check"].clone())
                && s["status"] == "CRITICAL"
        })
    })
    .await;
    // Hard kill.
    d.kill9();
    let d = Daemon::start(&w);
    wait_checked(&d, "ozon-a").await;
    eventually(Duration::from_secs(10), "a check after kill -9", || async {
        d.store("ozon-a")
            .await
            .is_some_and(|s| s["status"] == "CRITICAL")
    })
    .await;
    assert_eq!(
        receiver.events("ozon-a", "opened").len(),
        1,
        "no duplicate opened after restarts"
    );

    w.set_scenario("ozon-a", Scenario::Healthy);
    eventually(
        Duration::from_secs(20),
        "resolved after restarts",
        || async { receiver.events("ozon-a", "resolved").len() == 1 },
    )
    .await;
    assert_eq!(receiver.events("ozon-a", "opened").len(), 1);
    assert!(d.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receiver_outage_queues_in_order_and_kill9_redelivers_same_event_id() {
    let receiver = Receiver::start().await;
    receiver.set_mode(DOWN, 0);
    let w = world(vec![ozon("ozon-a"), ozon("ozon-b")], &receiver, "1h").await;
    let d = Daemon::start(&w);
    wait_checked(&d, "ozon-a").await;
    w.set_scenario("ozon-a", Scenario::CompanyBlocked);
    w.set_scenario("ozon-b", Scenario::CompanyBlocked);
    eventually(Duration::from_secs(20), "both opened (queued)", || async {
        d.store("ozon-a").await.is_some_and(|s| {
            s["open_incidents"]
                .as_array()
                .is_some_and(|a| !a.is_empty())
        }) && d.store("ozon-b").await.is_some_and(|s| {
            s["open_incidents"]
                .as_array()
                .is_some_and(|a| !a.is_empty())
        })
    })
    .await;
    w.set_scenario("ozon-a", Scenario::Healthy);
    eventually(Duration::from_secs(20), "a resolved (queued)", || async {
        d.store("ozon-a")
            .await
            .is_some_and(|s| s["open_incidents"].as_array().is_some_and(|a| a.is_empty()))
    })
    .await;
    eventually(Duration::from_secs(20), "attempts while down", || async {
        !receiver.all().is_empty()
    })
    .await;
    assert!(receiver.delivered().is_empty());

    receiver.set_mode(UP, 0);
    eventually(Duration::from_secs(60), "queue drained", || async {
        receiver.events("ozon-a", "opened").len() == 1
            && receiver.events("ozon-a", "resolved").len() == 1
            && receiver.events("ozon-b", "opened").len() == 1
    })
    .await;
    let order: Vec<String> = receiver
        .delivered()
        .iter()
        .filter(|r| r.field("store_id") == "ozon-a")
        .map(|r| r.field("event"))
        .collect();
    assert_eq!(order, vec!["opened", "resolved"], "per-store order kept");

    // kill -9 while a delivery is in flight: the event comes again with the same id.
    receiver.set_mode(SLOW, 3000);
    let before = receiver.all().len();
    w.set_scenario("ozon-b", Scenario::Healthy);
    eventually(Duration::from_secs(20), "resolved in flight", || async {
        receiver.all().len() > before
    })
    .await;
    d.kill9();
    receiver.set_mode(UP, 0);
    let d = Daemon::start(&w);
    eventually(Duration::from_secs(60), "redelivered", || async {
        receiver.events("ozon-b", "resolved").len() >= 2
    })
    .await;
    let copies = receiver.events("ozon-b", "resolved");
    assert!(
        copies
            .iter()
            .all(|r| r.idempotency_key == copies[0].idempotency_key)
    );
    assert!(d.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_rejects_a_broken_config_and_applies_a_good_one() {
    let receiver = Receiver::start().await;
    let (w, d) = started(vec![ozon("ozon-a")], &receiver, "1h").await;
    let good = std::fs::read_to_string(&w.config_path).unwrap();

    std::fs::write(&w.config_path, format!("{good}\n[defaults]\nbogus = 1\n")).unwrap();
    d.reload();
    d.wait_log("configuration reload rejected").await;
    eventually(
        Duration::from_secs(20),
        "alert about the rejected reload",
        || async {
            receiver
                .delivered()
                .iter()
                .any(|r| r.field("store_id") == "storeguard")
        },
    )
    .await;
    d.wait_next_check("ozon-a").await;

    let with_new = good.replacen(
        "[[store]]",
        "[[store]]\nid = \"ozon-new\"\nmarketplace = \"ozon\"\naccount = \"1000000\"\n\n[[store]]",
        1,
    );
    std::fs::write(&w.config_path, with_new).unwrap();
    d.reload();
    eventually(Duration::from_secs(10), "new store listed", || async {
        d.store("ozon-new").await.is_some()
    })
    .await;
    d.wait_log("configuration reloaded").await;
    // The good reload resolves the rejected one's alert.
    eventually(Duration::from_secs(20), "reload alert resolved", || async {
        !receiver.events("storeguard", "resolved").is_empty()
    })
    .await;
    assert!(d.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sd_notify_ready_after_load_and_watchdog_pings() {
    let receiver = Receiver::start().await;
    let w = world(vec![ozon("ozon-a")], &receiver, "1h").await;
    let sock_path = w.path().join("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let env = [
        ("NOTIFY_SOCKET", sock_path.display().to_string()),
        ("WATCHDOG_USEC", "1000000".to_string()),
    ];
    let d = Daemon::start_env(&w, &env);
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline
        && !(got.iter().any(|m: &String| m.contains("READY=1"))
            && got.iter().any(|m| m.contains("WATCHDOG=1")))
    {
        let mut buf = [0u8; 4096];
        if let Ok(n) = sock.recv(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    let ready = got
        .iter()
        .position(|m| m.contains("READY=1"))
        .expect("READY sent");
    let watchdog = got
        .iter()
        .position(|m| m.contains("WATCHDOG=1"))
        .expect("WATCHDOG pinged");
    assert!(ready < watchdog);
    assert!(got[ready].contains("STATUS="));
    // The listener answers once READY was sent.
    assert_eq!(d.get("/healthz").await.map(|(s, _)| s), Some(200));
    assert!(d.stop().success());
    let stopping = {
        let mut buf = [0u8; 4096];
        sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut all = String::new();
        while let Ok(n) = sock.recv(&mut buf) {
            all.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        all
    };
    assert!(stopping.contains("STOPPING=1"), "{stopping}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_ready_and_a_clear_error_on_a_bad_vault() {
    let receiver = Receiver::start().await;
    let w = world(vec![ozon("ozon-a")], &receiver, "1h").await;
    // A store's damaged entry fails alone (see below); a channel's stops the start, since
    // alerts could not go out.
    std::fs::write(
        w.path().join("vault/channels/hook.age"),
        "-----BEGIN AGE ENCRYPTED FILE-----\ngarbage\n",
    )
    .unwrap();
    let sock_path = w.path().join("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).unwrap();
    sock.set_nonblocking(true).unwrap();
    let mut d = Daemon::start_env(&w, &[("NOTIFY_SOCKET", sock_path.display().to_string())]);
    let status = wait_child(d.child.as_mut().unwrap(), Duration::from_secs(20));
    assert!(!status.success());
    let log = d.log();
    assert!(log.contains("refusing to start"), "{log}");
    assert!(log.contains("channel/hook: cannot decrypt"), "{log}");
    let mut buf = [0u8; 4096];
    let mut all = String::new();
    while let Ok(n) = sock.recv(&mut buf) {
        all.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(!all.contains("READY=1"), "{all}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_pass_promtool_and_api_needs_the_token_for_post() {
    let receiver = Receiver::start().await;
    let w = world(
        vec![
            ozon("ozon-a"),
            StoreSpec::new("amz", "Amazon", Marketplace::Amazon),
        ],
        &receiver,
        "1h",
    )
    .await;
    let d = Daemon::start(&w);
    wait_checked(&d, "ozon-a").await;
    wait_checked(&d, "amz").await;
    let (status, metrics) = d.get("/metrics").await.unwrap();
    assert_eq!(status, 200);
    assert!(
        metrics.contains("storeguard_store_up{store=\"ozon-a\",marketplace=\"ozon\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("storeguard_outbox_depth "));
    assert!(!metrics.contains("CANARY"));
    let promtool = ["/usr/bin/promtool", "/usr/local/bin/promtool"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("promtool is needed to validate /metrics: apt-get install -y prometheus");
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(metrics.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let client = storeguard::http::client_builder(Duration::from_secs(2))
        .build()
        .unwrap();
    let url = format!("{}/api/v1/stores/ozon-a/check", d.api);
    assert_eq!(
        client.post(&url).send().await.unwrap().status().as_u16(),
        401
    );
    assert_eq!(
        client
            .post(&url)
            .bearer_auth("wrong")
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        401
    );
    let token = storeguard::demo::canary("daemon", "api-token");
    assert_eq!(
        client
            .post(&url)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        202
    );
    let missing = format!("{}/api/v1/stores/..%2f..%2fetc/check", d.api);
    assert_eq!(
        client
            .post(&missing)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        404
    );
    assert!(d.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_filters_pick_channels_per_store_and_event() {
    let ozon_only = Receiver::start().await;
    let resolved_only = Receiver::start().await;
    let hooks = [
        ("ozon-hook", "stores = [\"ozon-*\"]", &ozon_only),
        ("resolved-hook", "events = [\"resolved\"]", &resolved_only),
    ];
    let w = world_with(vec![ozon("ozon-a"), ozon("shop-b")], &hooks, "1h", "").await;
    let d = Daemon::start(&w);
    wait_checked(&d, "shop-b").await;
    w.set_scenario("ozon-a", Scenario::CompanyBlocked);
    w.set_scenario("shop-b", Scenario::CompanyBlocked);
    eventually(Duration::from_secs(20), "ozon-a opened", || async {
        ozon_only.distinct("ozon-a", "opened") == 1
    })
    .await;
    // shop-b's opened goes to no hook here: see it open in the daemon before it heals.
    eventually(Duration::from_secs(20), "shop-b opened", || async {
        d.store("shop-b").await.is_some_and(|s| {
            s["open_incidents"]
                .as_array()
                .is_some_and(|a| !a.is_empty())
        })
    })
    .await;
    w.set_scenario("ozon-a", Scenario::Healthy);
    w.set_scenario("shop-b", Scenario::Healthy);
    eventually(Duration::from_secs(20), "both resolved", || async {
        resolved_only.distinct("ozon-a", "resolved") == 1
            && resolved_only.distinct("shop-b", "resolved") == 1
    })
    .await;
    eventually(
        Duration::from_secs(20),
        "ozon-a resolved on its hook",
        || async { ozon_only.distinct("ozon-a", "resolved") == 1 },
    )
    .await;
    assert!(
        ozon_only
            .delivered()
            .iter()
            .all(|r| r.field("store_id") == "ozon-a"),
        "store filter"
    );
    assert!(
        resolved_only
            .delivered()
            .iter()
            .all(|r| r.field("event") == "resolved"),
        "event filter"
    );
    assert!(d.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintenance_holds_notifications_and_releases_what_is_still_open() {
    let receiver = Receiver::start().await;
    let now = chrono::Utc::now();
    let end = now + chrono::Duration::seconds(8);
    let window = format!(
        "[[maintenance]]\nname = \"upgrade\"\nstart = \"{}\"\nend = \"{}\"\nstores = [\"held-*\"]\n",
        (now - chrono::Duration::minutes(1)).to_rfc3339(),
        end.to_rfc3339()
    );
    let w = world_with(
        vec![ozon("held-a"), ozon("held-b"), ozon("free")],
        &[("hook", "", &receiver)],
        "1h",
        &window,
    )
    .await;
    let d = Daemon::start(&w);
    wait_checked(&d, "held-b").await;
    w.set_scenario("held-a", Scenario::CompanyBlocked);
    w.set_scenario("held-b", Scenario::CompanyBlocked);
    w.set_scenario("free", Scenario::CompanyBlocked);
    eventually(
        Duration::from_secs(20),
        "free store alerts at once",
        || async { receiver.events("free", "opened").len() == 1 },
    )
    .await;
    eventually(
        Duration::from_secs(20),
        "held stores checked and recorded",
        || async {
            d.store("held-a")
                .await
                .is_some_and(|s| s["status"] == "CRITICAL")
                && d.store("held-b")
                    .await
                    .is_some_and(|s| s["status"] == "CRITICAL")
        },
    )
    .await;
    // held-b recovers inside the window: nothing about it is ever sent.
    w.set_scenario("held-b", Scenario::Healthy);
    eventually(Duration::from_secs(20), "held-b recovered", || async {
        d.store("held-b").await.is_some_and(|s| s["status"] == "OK")
    })
    .await;
    assert!(
        chrono::Utc::now() < end,
        "the window ended too early for the test"
    );
    assert!(
        receiver.events("held-a", "opened").is_empty(),
        "held during the window"
    );
    // After the window: held-a (still broken) is notified once; held-b never.
    eventually(Duration::from_secs(30), "held-a released", || async {
        receiver.events("held-a", "opened").len() == 1
    })
    .await;
    let b: Vec<_> = receiver
        .delivered()
        .into_iter()
        .filter(|r| r.field("store_id") == "held-b")
        .collect();
    assert!(b.is_empty(), "{b:?}");
    assert!(d.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn marketplace_outage_is_one_grouped_incident() {
    let receiver = Receiver::start().await;
    let stores: Vec<_> = (0..6).map(|i| ozon(&format!("ozon-{i}"))).collect();
    let w = world(stores, &receiver, "1h").await;
    let d = Daemon::start(&w);
    for i in 0..6 {
        wait_checked(&d, &format!("ozon-{i}")).await;
    }
    for i in 0..6 {
        w.set_scenario(&format!("ozon-{i}"), Scenario::ServerError);
    }
    eventually(Duration::from_secs(20), "grouped opened", || async {
        receiver.events("marketplace:ozon", "opened").len() == 1
    })
    .await;
    let opened = &receiver.events("marketplace:ozon", "opened")[0];
    assert!(
        opened.body["affected"]
            .as_array()
            .is_some_and(|a| a.len() >= 3)
    );
    for i in 0..6 {
        w.set_scenario(&format!("ozon-{i}"), Scenario::Healthy);
    }
    eventually(Duration::from_secs(20), "grouped resolved", || async {
        receiver.events("marketplace:ozon", "resolved").len() == 1
    })
    .await;
    // A few more checks, then: only the grouped pair was sent, never per-store outage alerts.
    d.wait_next_check("ozon-0").await;
    let all = receiver.delivered();
    assert_eq!(
        all.len(),
        2,
        "{:?}",
        all.iter()
            .map(|r| (r.field("store_id"), r.field("event")))
            .collect::<Vec<_>>()
    );
    assert!(d.stop().success());
}

/// D2: a channel that accepts the connection and never answers costs its own timeout per alert
/// and delays no other channel. Eight stores break at once; both channels get every alert, and
/// the healthy webhook has all eight while the dead one is still on its first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_channel_delays_only_itself() {
    // Accepts and holds every connection, never reads or answers.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}/hook", dead.local_addr().unwrap());
    let held = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    {
        let held = held.clone();
        std::thread::spawn(move || {
            for conn in dead.incoming().flatten() {
                held.lock().unwrap().push(conn);
            }
        });
    }
    let healthy = Receiver::start().await;
    let placeholder = Receiver::start().await;
    let stores: Vec<_> = (0..8).map(|i| ozon(&format!("ozon-{i}"))).collect();
    let w = crate::util::proc::world_with(
        stores,
        &[("dead", "", &placeholder), ("hook", "", &healthy)],
        "1h",
        "",
    )
    .await;
    w.put_channel(
        "dead",
        storeguard::model::ChannelKind::Webhook,
        &format!("url = \"{dead_url}\"\n"),
    )
    .unwrap();
    let d = Daemon::start(&w);
    for i in 0..8 {
        wait_checked(&d, &format!("ozon-{i}")).await;
    }
    let broke = Instant::now();
    for i in 0..8 {
        w.set_scenario(&format!("ozon-{i}"), Scenario::CompanyBlocked);
    }
    // One delivery to the dead channel waits for its timeout (15 s); the webhook does not.
    eventually(
        Duration::from_secs(12),
        "all eight at the healthy webhook",
        || async { (0..8).all(|i| healthy.events(&format!("ozon-{i}"), "opened").len() == 1) },
    )
    .await;
    println!(
        "healthy webhook had all 8 alerts {:?} after the stores broke, next to a dead channel",
        broke.elapsed()
    );
    assert!(
        !held.lock().unwrap().is_empty(),
        "the dead channel was tried"
    );
    assert!(placeholder.all().is_empty());
    assert!(d.stop().success());
}

/// D3: under systemd's usual open-file limit (1,024, not raisable here), 1,100 idle local
/// connections to the status port must not starve the daemon: a SIGHUP still loads a changed
/// config, and a store that breaks meanwhile is still alerted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_cannot_use_up_the_daemons_descriptors() {
    let receiver = Receiver::start().await;
    let w = world(vec![ozon("ozon-a")], &receiver, "1h").await;
    let d = Daemon::start_under(&w, &[], &["prlimit", "--nofile=1024:1024", "--"]);
    wait_checked(&d, "ozon-a").await;
    let mut idle = Vec::new();
    for _ in 0..1100 {
        match tokio::net::TcpStream::connect(d.addr()).await {
            Ok(s) => idle.push(s),
            Err(_) => break,
        }
    }
    assert!(idle.len() > 1024, "opened {} connections", idle.len());
    let good = std::fs::read_to_string(&w.config_path).unwrap();
    let with_new = good.replacen(
        "[[store]]",
        "[[store]]\nid = \"ozon-new\"\nmarketplace = \"ozon\"\naccount = \"1000000\"\n\n[[store]]",
        1,
    );
    std::fs::write(&w.config_path, with_new).unwrap();
    d.reload();
    w.set_scenario("ozon-a", Scenario::CompanyBlocked);
    eventually(
        Duration::from_secs(8),
        "reload and alert despite the flood",
        || async {
            d.log().contains("configuration reloaded")
                && receiver.events("ozon-a", "opened").len() == 1
        },
    )
    .await;
    let log = d.log();
    assert!(!log.contains("Too many open files"), "{log}");
    drop(idle);
    eventually(Duration::from_secs(15), "new store listed", || async {
        d.store("ozon-new").await.is_some()
    })
    .await;
    assert!(d.stop().success());
}

/// D4: a config cut short after `[daemon]` is valid TOML with no stores; a SIGHUP must not load
/// it (monitoring would stop with /healthz still ok), and says so through the running channels.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_refuses_a_config_that_drops_every_store() {
    let receiver = Receiver::start().await;
    let (w, d) = started(vec![ozon("ozon-a")], &receiver, "1h").await;
    let good = std::fs::read_to_string(&w.config_path).unwrap();
    let cut = &good[..good.find("[defaults]").or(good.find("[[")).unwrap()];
    assert!(cut.contains("[daemon]") && !cut.contains("[[store]]"));
    std::fs::write(&w.config_path, cut).unwrap();
    d.reload();
    d.wait_log("configuration reload rejected").await;
    assert!(d.log().contains("has no [[store]]"), "{}", d.log());
    eventually(Duration::from_secs(20), "alert about it", || async {
        !receiver.events("storeguard", "opened").is_empty()
    })
    .await;
    let opened = receiver.events("storeguard", "opened").remove(0);
    assert_eq!(opened.field("finding"), "daemon_fault");
    // D9: about storeguard itself, so no marketplace (not a placeholder one).
    assert!(opened.body["marketplace"].is_null(), "{}", opened.body);
    d.wait_next_check("ozon-a").await;

    // A second bad reload is the same state of affairs: no second alert.
    d.reload();
    eventually(
        Duration::from_secs(10),
        "second reload rejected",
        || async { d.log().matches("configuration reload rejected").count() >= 2 },
    )
    .await;
    // D9: the good config back, and the alert resolves (same incident, once).
    std::fs::write(&w.config_path, &good).unwrap();
    d.reload();
    eventually(Duration::from_secs(20), "the alert resolves", || async {
        !receiver.events("storeguard", "resolved").is_empty()
    })
    .await;
    let resolved = receiver.events("storeguard", "resolved");
    assert_eq!(resolved.len(), 1);
    assert_eq!(
        resolved[0].field("incident_id"),
        opened.field("incident_id")
    );
    assert_eq!(receiver.events("storeguard", "opened").len(), 1);
    assert!(d.stop().success());
}

/// D5: a second daemon on the same state directory refuses to start and names the first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_daemon_on_one_state_dir_refuses_to_start() {
    let receiver = Receiver::start().await;
    let w = world(vec![ozon("ozon-a")], &receiver, "1h").await;
    let first = Daemon::start(&w);
    wait_checked(&first, "ozon-a").await;
    let pid = first.child.as_ref().unwrap().id();
    let out = Command::new(env!("CARGO_BIN_EXE_storeguard"))
        .arg("--config")
        .arg(&w.config_path)
        .arg("run")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("CREDENTIALS_DIRECTORY")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(&format!(
            "another storeguard daemon (process {pid}) is already running"
        )),
        "{stderr}"
    );
    assert!(first.stop().success());
}

/// Damage inside the state file is found at start, with what to do, instead of when a check
/// first reads the damaged page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_state_file_is_refused_at_start() {
    let receiver = Receiver::start().await;
    let (w, d) = started(vec![ozon("ozon-a"), ozon("ozon-b")], &receiver, "1h").await;
    assert!(d.stop().success());
    let config = storeguard::config::Config::load(&w.config_path).unwrap();
    let db = config.daemon.state_dir.join(storeguard::state::FILE_NAME);
    // The WAL was checkpointed at stop. Scribble over the last page (history, not read at
    // start), then over the second (schema, read at once).
    let good = std::fs::read(&db).unwrap();
    assert!(good.len() >= 3 * 4096, "{} bytes", good.len());
    for page in [good.len() / 4096 - 1, 1] {
        let mut bytes = good.clone();
        bytes[page * 4096..page * 4096 + 64].fill(0xA5);
        std::fs::write(&db, &bytes).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_storeguard"))
            .arg("--config")
            .arg(&w.config_path)
            .arg("run")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("CREDENTIALS_DIRECTORY")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("page {page}: the daemon started on a damaged state file");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
        assert!(!status.success(), "page {page}");
        assert!(
            stderr.contains("storeguard.db is damaged"),
            "page {page}: {stderr}"
        );
        assert!(stderr.contains(".recover"), "{stderr}");
    }
}

/// One store whose vault entry is missing and one whose entry is damaged do not keep the
/// daemon from starting: they show UNKNOWN `vault_unreadable` and are alerted, the rest are
/// watched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_with_bad_vault_entries_fail_alone_at_start() {
    let receiver = Receiver::start().await;
    let w = world(
        vec![ozon("ozon-good"), ozon("ozon-gone"), ozon("ozon-torn")],
        &receiver,
        "1h",
    )
    .await;
    let config = storeguard::config::Config::load(&w.config_path).unwrap();
    let entry = |id: &str| {
        config
            .daemon
            .vault_dir
            .join("stores")
            .join(format!("{id}.age"))
    };
    std::fs::remove_file(entry("ozon-gone")).unwrap();
    let torn = std::fs::read(entry("ozon-torn")).unwrap();
    std::fs::write(entry("ozon-torn"), &torn[..torn.len() / 2]).unwrap();
    let d = Daemon::start(&w);
    wait_checked(&d, "ozon-good").await;
    assert_eq!(d.store("ozon-good").await.unwrap()["status"], "OK");
    for id in ["ozon-gone", "ozon-torn"] {
        eventually(
            Duration::from_secs(20),
            "the bad store is alerted",
            || async {
                receiver
                    .events(id, "opened")
                    .iter()
                    .any(|r| r.field("finding") == "vault_unreadable")
            },
        )
        .await;
        let s = d.store(id).await.unwrap();
        assert_eq!(s["status"], "UNKNOWN", "{s}");
    }
    assert!(
        d.log()
            .contains("cannot be checked until its vault entry is fixed")
    );
    assert!(d.stop().success());
}

/// A key fixed with `vault put` is used at the store's next tick, without SIGHUP and without
/// waiting out the backoff the refused key earned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fixed_key_is_noticed_at_the_next_tick() {
    let receiver = Receiver::start().await;
    let w = world(vec![ozon("ozon-a")], &receiver, "1h").await;
    w.set_scenario("ozon-a", Scenario::WrongKey);
    let d = Daemon::start(&w);
    eventually(
        Duration::from_secs(20),
        "the refused key is alerted",
        || async { !receiver.events("ozon-a", "opened").is_empty() },
    )
    .await;
    assert_eq!(d.store("ozon-a").await.unwrap()["status"], "CRITICAL");
    // The seller puts the right key (the fake accepts it from now on).
    w.set_scenario("ozon-a", Scenario::Healthy);
    let account = storeguard::demo::account_of(0, Marketplace::Ozon);
    let key = storeguard::demo::canary("ozon-a", "api-key");
    let mut put = Command::new(env!("CARGO_BIN_EXE_storeguard"))
        .arg("--config")
        .arg(&w.config_path)
        .args(["vault", "put", "store/ozon-a"])
        .env_remove("CREDENTIALS_DIRECTORY")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    std::io::Write::write_all(
        put.stdin.as_mut().unwrap(),
        format!("client_id = \"{account}\"\napi_key = \"{key}\"\n").as_bytes(),
    )
    .unwrap();
    drop(put.stdin.take());
    assert!(put.wait().unwrap().success());
    // Backed off for 10 minutes; the fixed key is checked within seconds.
    eventually(
        Duration::from_secs(20),
        "resolved with the fixed key",
        || async { !receiver.events("ozon-a", "resolved").is_empty() },
    )
    .await;
    assert_eq!(d.store("ozon-a").await.unwrap()["status"], "OK");
    d.wait_log("vault entry changed").await;
    assert!(d.stop().success());
}
