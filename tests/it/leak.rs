//! Leak sweep: run the demo and a representative set of scenarios through every surface, then
//! grep everything captured — stdout/stderr, text and JSON logs, alert payloads, the status API,
//! metrics, the state database and the temp dirs — for the `CANARY` marker that every fixture
//! secret carries. Zero hits, or the test names the place.

use crate::util::proc::*;
use crate::util::receiver::Receiver;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;
use storeguard::demo::StoreSpec;
use storeguard::fake::Scenario;
use storeguard::model::Marketplace;

const MARK: &str = "CANARY";

fn assert_clean(place: &str, bytes: &[u8]) {
    let hit = bytes.windows(MARK.len()).position(|w| w == MARK.as_bytes());
    if let Some(at) = hit {
        let from = at.saturating_sub(60);
        let to = (at + 80).min(bytes.len());
        panic!(
            "a fixture secret leaked into {place}: …{}…",
            String::from_utf8_lossy(&bytes[from..to])
        );
    }
}

/// Every file under `dir` except the vault's ciphertext, which holds the secrets by design
/// (encrypted: the marker cannot appear in its bytes either, and is checked too).
fn sweep_dir(dir: &Path) -> usize {
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let p = entry.path();
        if p.is_dir() {
            n += sweep_dir(&p);
        } else if let Ok(bytes) = std::fs::read(&p) {
            assert_clean(&p.display().to_string(), &bytes);
            n += 1;
        }
    }
    n
}

#[test]
fn the_demo_prints_no_secret() {
    let out = Command::new(crate::util::BIN)
        .args(["demo", "--pace", "1"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_clean("demo stdout", &out.stdout);
    assert_clean("demo stderr", &out.stderr);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("alert →"),
        "the demo printed no alert: {text}"
    );
    // Act 4: the mailbox's two mails, each alerted once, neither with its link or code.
    assert_eq!(
        text.matches("Amazon: sign-in outside login hours").count(),
        1,
        "{text}"
    );
    assert_eq!(
        text.matches("Amazon: phishing mail suspected").count(),
        1,
        "{text}"
    );
    assert!(text.contains("amazon.com (authenticated)"), "{text}");
    assert!(
        !text.contains("482913"),
        "the sign-in code was printed: {text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_surface_shows_a_fixture_secret() {
    let receiver = Receiver::start().await;
    let stores = vec![
        StoreSpec::new("ozon-ok", "Ozon OK", Marketplace::Ozon),
        StoreSpec::new("ozon-bad", "Ozon deactivated", Marketplace::Ozon)
            .with(Scenario::DeactivatedKey),
        StoreSpec::new("ozon-html", "Ozon HTML", Marketplace::Ozon).with(Scenario::Html200),
        StoreSpec::new("amz-grant", "Amazon revoked", Marketplace::Amazon)
            .with(Scenario::InvalidGrant),
        StoreSpec::new("amz-expired", "Amazon expired token", Marketplace::Amazon)
            .with(Scenario::ExpiredAccessToken),
        StoreSpec::new("ali-refresh", "Alibaba refresh", Marketplace::Alibaba)
            .with(Scenario::IllegalAccessTokenThenRefresh),
        StoreSpec::new("ali-sig", "Alibaba signature", Marketplace::Alibaba)
            .with(Scenario::IncompleteSignature),
        StoreSpec::new(
            "ae-other",
            "AliExpress other seller",
            Marketplace::Aliexpress,
        )
        .with(Scenario::SellerMismatch("2000099999999".into())),
        StoreSpec::new(
            "ae-refresh-bad",
            "AliExpress refresh refused",
            Marketplace::Aliexpress,
        )
        .with(Scenario::IllegalRefreshToken),
        StoreSpec::new("wb-ok", "Wildberries OK", Marketplace::Wildberries),
        StoreSpec::new("wb-scope", "Wildberries scope", Marketplace::Wildberries)
            .with(Scenario::MissingRole),
        StoreSpec::new("ym-ok", "Yandex Market OK", Marketplace::YandexMarket),
        StoreSpec::new(
            "ym-revoked",
            "Yandex Market revoked",
            Marketplace::YandexMarket,
        )
        .with(Scenario::DeactivatedKey),
        StoreSpec::new("lz-refresh", "Lazada refresh", Marketplace::Lazada)
            .with(Scenario::IllegalAccessTokenThenRefresh),
        StoreSpec::new("sp-refresh", "Shopee refresh", Marketplace::Shopee)
            .with(Scenario::IllegalAccessTokenThenRefresh),
        StoreSpec::new("sp-banned", "Shopee banned", Marketplace::Shopee)
            .with(Scenario::CompanyBlocked),
        StoreSpec::new("tt-refresh", "TikTok refresh", Marketplace::TiktokShop)
            .with(Scenario::IllegalAccessTokenThenRefresh),
        StoreSpec::new("tt-ip", "TikTok IP", Marketplace::TiktokShop).with(Scenario::IpRestricted),
    ];
    let w = world(stores, &receiver, "2s").await;
    // The webhook signs its payloads: its signing secret is a fixture secret too.
    w.put_channel(
        "hook",
        storeguard::model::ChannelKind::Webhook,
        &format!(
            "url = \"{}?token=CANARY-hook-url-token\"\nsigning_secret = \"CANARY-hook-signing\"\n",
            receiver.url
        ),
    )
    .unwrap();

    // One-off checks, table and JSON.
    for args in [
        vec!["check"],
        vec!["check", "--json"],
        vec!["config", "check"],
        vec!["vault", "list"],
        vec!["vault", "verify"],
    ] {
        let out = Command::new(crate::util::BIN)
            .arg("--config")
            .arg(&w.config_path)
            .args(&args)
            .output()
            .unwrap();
        assert_clean(&format!("`{}` stdout", args.join(" ")), &out.stdout);
        assert_clean(&format!("`{}` stderr", args.join(" ")), &out.stderr);
    }

    // The daemon with JSON logs, long enough for alerts, reminders and token refreshes.
    let d = Daemon::start_env(&w, &[("STOREGUARD_LOG", "debug".to_string())]);
    for id in ["ozon-bad", "amz-grant", "ae-other"] {
        wait_checked(&d, id).await;
    }
    eventually(Duration::from_secs(30), "alerts delivered", || async {
        receiver.delivered().len() >= 4
    })
    .await;
    w.set_scenario("ozon-bad", Scenario::Healthy);
    // A refused key backs off; ask for a check now, as a seller who fixed it would.
    let client = storeguard::http::client_builder(Duration::from_secs(5))
        .build()
        .unwrap();
    let r = client
        .post(format!("{}/api/v1/stores/ozon-bad/check", d.api))
        .bearer_auth(storeguard::demo::canary("daemon", "api-token"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    eventually(Duration::from_secs(30), "a resolution", || async {
        receiver
            .delivered()
            .iter()
            .any(|r| r.field("event") == "resolved")
    })
    .await;
    for path in ["/api/v1/stores", "/metrics", "/healthz"] {
        let (_, body) = d.get(path).await.unwrap();
        assert_clean(path, body.as_bytes());
    }
    for args in [
        vec!["status"],
        vec!["status", "--json"],
        vec!["history", "ozon-bad"],
        vec!["history", "ozon-bad", "--json"],
    ] {
        let out = Command::new(crate::util::BIN)
            .arg("--config")
            .arg(&w.config_path)
            .args(&args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_clean(&format!("`{}`", args.join(" ")), &out.stdout);
        assert_clean(&format!("`{}` stderr", args.join(" ")), &out.stderr);
    }
    assert!(d.stop().success());
    // JSON logs too.
    let dj = {
        let mut c = Command::new(crate::util::BIN);
        c.arg("--config")
            .arg(&w.config_path)
            .args(["run", "--log-format", "json"])
            .env("STOREGUARD_LOG", "debug");
        Daemon::spawn(c, w.path().join("daemon-json.log"))
    };
    wait_checked(&dj, "ali-refresh").await;
    eventually(Duration::from_secs(20), "json log lines", || async {
        dj.log().lines().count() > 5
    })
    .await;
    assert!(
        dj.log().lines().next().unwrap_or("").starts_with('{'),
        "json logs"
    );
    assert!(dj.stop().success());

    // Everything the receiver got, raw.
    for r in receiver.all() {
        assert_clean("a webhook payload", r.body.to_string().as_bytes());
        assert_clean("a webhook header", r.idempotency_key.as_bytes());
    }
    // Every file the world left: logs, state database (and WAL), config, vault ciphertext.
    let files = sweep_dir(w.path());
    assert!(files > 10, "swept only {files} files");
    // And the system temp dir's storeguard leftovers (e.g. decrypted edit copies).
    for base in [std::env::temp_dir(), "/dev/shm".into()] {
        if let Ok(rd) = std::fs::read_dir(&base) {
            for e in rd.flatten() {
                if e.file_name()
                    .to_string_lossy()
                    .starts_with("storeguard-edit-")
                {
                    sweep_dir(&e.path());
                }
            }
        }
    }
}
