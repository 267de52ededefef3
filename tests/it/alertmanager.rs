//! The alertmanager channel against the real Prometheus Alertmanager binary (Debian's
//! `prometheus-alertmanager`), started on loopback with its own storage and clustering off.
//!
//! An opened event shows up firing; the same incident from a second storeguard instance (a
//! second `ChannelSet` with its own vault) dedupes into the same alert (one fingerprint); the
//! resolved event makes it resolved. Polls use a bounded deadline; nothing sleeps for a fixed
//! time. Without the binary the test fails with the install command.

use chrono::Utc;
use serde_json::Value;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use storeguard::alert::fake::Sandbox;
use storeguard::alert::{AlertEvent, ChannelSet, Delivery, EventKind};
use storeguard::model::{ChannelKind, Marketplace, Severity};
use storeguard::outcome::FindingKind;

const INSTALL_HINT: &str = "this test needs Prometheus Alertmanager: `apt-get install -y prometheus-alertmanager` \
     (binary /usr/bin/prometheus-alertmanager; set STOREGUARD_ALERTMANAGER to use another path)";

const CONFIG: &str = r#"
route:
  receiver: "null"
  group_by: ["alertname", "marketplace", "store_id", "finding"]
  group_wait: 1s
receivers:
  - name: "null"
"#;

struct Alertmanager {
    child: Child,
    base: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn binary() -> PathBuf {
    let p = std::env::var_os("STOREGUARD_ALERTMANAGER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/prometheus-alertmanager"));
    assert!(p.is_file(), "{} not found.\n{INSTALL_HINT}", p.display());
    p
}

fn client() -> reqwest::Client {
    storeguard::http::client_builder(Duration::from_secs(5))
        .build()
        .unwrap()
}

/// Starts Alertmanager on a free loopback port and waits (bounded) until it is ready.
async fn start() -> Alertmanager {
    let bin = binary();
    let mut last_log = String::new();
    // Alertmanager cannot take a bound socket, so a port can be taken between our probe and
    // its bind; then it exits at once and we try another.
    for _ in 0..3 {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("alertmanager.yml");
        std::fs::write(&cfg, CONFIG).unwrap();
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let log = dir.path().join("alertmanager.log");
        let child = Command::new(&bin)
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(dir.path().join("stderr.log")).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}\n{INSTALL_HINT}", bin.display()));
        let mut am = Alertmanager {
            child,
            base: format!("http://127.0.0.1:{port}"),
            log: dir.path().join("stderr.log"),
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        let c = client();
        loop {
            if let Ok(Some(_)) = am.child.try_wait() {
                last_log = std::fs::read_to_string(&am.log).unwrap_or_default();
                break;
            }
            if let Ok(r) = c.get(format!("{}/-/ready", am.base)).send().await
                && r.status().is_success()
            {
                return am;
            }
            assert!(
                Instant::now() < deadline,
                "Alertmanager not ready within 30 s:\n{}",
                std::fs::read_to_string(&am.log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    panic!("Alertmanager did not start:\n{last_log}");
}

impl Alertmanager {
    async fn alerts(&self) -> Vec<Value> {
        let url = format!(
            "{}/api/v2/alerts?active=true&inhibited=true&silenced=true&unprocessed=true",
            self.base
        );
        let r = client().get(url).send().await.unwrap();
        assert!(r.status().is_success());
        let v: Value = r.json().await.unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .filter(|a| a["labels"]["alertname"] == "StoreLoginAbnormal")
            .cloned()
            .collect()
    }

    /// Polls until `done` holds for the alert list, for at most 20 s.
    async fn wait_for(&self, what: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let alerts = self.alerts().await;
            if done(&alerts) {
                return alerts;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; alerts now: {alerts:#?}\nlog:\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// One storeguard "instance": its own vault and ChannelSet, pointing at the same Alertmanager.
fn instance(am: &Alertmanager) -> (Sandbox, ChannelSet) {
    let sb = Sandbox::new().unwrap();
    sb.put_channel("am", ChannelKind::Alertmanager, "").unwrap();
    let config = sb
        .config(
            "timezone = \"Asia/Shanghai\"",
            &format!(
                "[[channel]]\nname = \"am\"\nkind = \"alertmanager\"\nurls = [\"{}\"]\n",
                am.base
            ),
        )
        .unwrap();
    let set = ChannelSet::new(&config, &sb.vault, &sb.identity).unwrap();
    (sb, set)
}

fn event(kind: EventKind, event_id: &str) -> AlertEvent {
    let now = Utc::now();
    AlertEvent {
        event_id: event_id.into(),
        event: kind,
        incident_id: "inc-1".into(),
        subject: storeguard::event::Subject::store("ozon-main", "Ozon 主店", Marketplace::Ozon),
        severity: Severity::Critical,
        finding: FindingKind::AuthRejected,
        detail: "Api-key is deactivated".into(),
        opened_at: now - chrono::TimeDelta::minutes(10),
        created_at: now,
        affected: vec![],
        test: false,
    }
}

#[tokio::test]
async fn real_alertmanager_fires_dedupes_and_resolves() {
    let am = start().await;
    let (_a_home, a) = instance(&am);
    let (_b_home, b) = instance(&am);

    // Instance A opens the incident: firing.
    assert_eq!(
        a.send("am", &event(EventKind::Opened, "a-1"), Utc::now())
            .await,
        Delivery::Delivered
    );
    let alerts = am
        .wait_for("one active alert", |a| {
            a.len() == 1 && a[0]["status"]["state"] == "active"
        })
        .await;
    let alert = &alerts[0];
    assert_eq!(
        alert["labels"],
        serde_json::json!({"alertname": "StoreLoginAbnormal", "marketplace": "ozon",
                           "store_id": "ozon-main", "finding": "auth_rejected",
                           "severity": "critical"})
    );
    let fingerprint = alert["fingerprint"].as_str().unwrap().to_string();
    let ends: chrono::DateTime<Utc> = alert["endsAt"].as_str().unwrap().parse().unwrap();
    assert!(ends > Utc::now() + chrono::TimeDelta::hours(1), "{alert:#}");
    assert!(
        alert["annotations"]["summary"]
            .as_str()
            .unwrap()
            .starts_with("[CRITICAL] Ozon 主店")
    );

    // Instance B sees the same incident (its own event id, a reminder): still one alert.
    assert_eq!(
        b.send("am", &event(EventKind::Reminder, "b-7"), Utc::now())
            .await,
        Delivery::Delivered
    );
    assert_eq!(
        b.send("am", &event(EventKind::Opened, "b-1"), Utc::now())
            .await,
        Delivery::Delivered
    );
    let alerts = am.wait_for("still one alert", |a| a.len() == 1).await;
    assert_eq!(alerts[0]["fingerprint"], fingerprint.as_str());

    // Resolved: endsAt = now, and Alertmanager stops listing it as active.
    let resolved_at = Utc::now();
    assert_eq!(
        a.send("am", &event(EventKind::Resolved, "a-2"), resolved_at)
            .await,
        Delivery::Delivered
    );
    am.wait_for("the alert resolved", |alerts| {
        alerts.iter().all(|x| {
            let ends: Option<chrono::DateTime<Utc>> =
                x["endsAt"].as_str().and_then(|e| e.parse().ok());
            x["fingerprint"] != fingerprint.as_str()
                || ends.is_some_and(|e| e <= Utc::now())
                || x["status"]["state"] == "resolved"
        })
    })
    .await;
}
