//! The HTML status page end to end: the real daemon binary against the fake marketplaces, the
//! page loaded in a real headless Chromium and checked on the rendered DOM, every page swept for
//! canary secrets, and `storeguard status --open`.
//!
//! Chromium is Debian's (`apt-get install -y chromium`, as `.ci/run` does); without it the
//! browser test fails with that hint instead of passing silently. `STOREGUARD_CHROMIUM` points
//! at another binary.

use crate::util::proc::Daemon;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use storeguard::demo::{StoreSpec, World, WorldConfig};
use storeguard::fake::Scenario;
use storeguard::model::Marketplace;

const CHROMIUM: &str = "/usr/bin/chromium";

/// A port nothing listens on (bound and let go at once).
fn dead_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("process did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Polls `cond` until it holds or `limit` passes (then fails with `what`).
async fn eventually<F, Fut>(limit: Duration, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        if cond().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The stores of these tests: three broken for good, one key expiring in 12 days, the rest fine.
fn stores() -> Vec<StoreSpec> {
    use Marketplace::*;
    vec![
        StoreSpec::new("ozon-ok", "Ozon OK", Ozon),
        StoreSpec::new("ozon-exp", "Ozon 圣彼得堡店", Ozon).with(Scenario::ExpiringInDays(12)),
        StoreSpec::new("ozon-dead", "<i>Ozon</i> & 'Dead'", Ozon).with(Scenario::DeactivatedKey),
        StoreSpec::new("ozon-blocked", "Ozon Blocked", Ozon).with(Scenario::CompanyBlocked),
        StoreSpec::new("amazon-us", "Amazon US — Acme", Amazon),
        StoreSpec::new("alibaba-yiwu", "阿里巴巴国际站 — 义乌", Alibaba),
        StoreSpec::new("aliexpress-main", "速卖通旗舰店", Aliexpress)
            .with(Scenario::SellerMismatch("2000099999999".into())),
    ]
}

const BROKEN: [(&str, &str); 3] = [
    ("ozon-dead", "login refused (key, token or secret rejected)"),
    ("ozon-blocked", "account blocked or suspended"),
    (
        "aliexpress-main",
        "credentials belong to a different account",
    ),
];

/// Adds `tags = [...]` to the stores of a world's config.
fn tag_stores(world: &World, tags: &[(&str, &str)]) {
    let mut cfg = std::fs::read_to_string(&world.config_path).unwrap();
    for (id, list) in tags {
        let line = format!("id = \"{id}\"\n");
        assert!(cfg.contains(&line), "{id}");
        cfg = cfg.replacen(&line, &format!("{line}tags = [{list}]\n"), 1);
    }
    std::fs::write(&world.config_path, cfg).unwrap();
}

async fn world(stores: Vec<StoreSpec>, schedule: &str) -> World {
    let wc = WorldConfig {
        schedule: schedule.into(),
        failure_threshold: 1,
        ..WorldConfig::default()
    };
    let w = World::build(stores, wc).await.unwrap();
    tag_stores(
        &w,
        &[
            ("ozon-ok", "\"ru\""),
            ("ozon-exp", "\"ru\", \"key-rotation\""),
            ("ozon-dead", "\"ru\""),
            ("ozon-blocked", "\"ru\""),
        ],
    );
    w
}

/// The `<tr>` of a store in a page or DOM dump.
fn row<'a>(page: &'a str, id: &str) -> &'a str {
    let start = page
        .find(&format!("<tr id=\"store-{id}\""))
        .unwrap_or_else(|| panic!("no row for {id} in:\n{page}"));
    let end = page[start..].find("</tr>").unwrap();
    &page[start..start + end]
}

/// Waits until every store was checked at least twice (so strips have cells; once for the
/// refused key) and the broken ones are CRITICAL.
async fn wait_for_history(d: &Daemon) {
    let ready = |page: &str| -> Result<(), String> {
        for s in stores() {
            if !page.contains(&format!("<tr id=\"store-{}\"", s.id)) {
                return Err(format!("no row for {}", s.id));
            }
            // A refused key backs off for 10 minutes: one check is all it gets here.
            let want = if s.id == "ozon-dead" { 1 } else { 2 };
            let cells = row(page, &s.id).matches("<span class=\"c ").count();
            if cells < want {
                return Err(format!("{}: {cells} checks", s.id));
            }
        }
        for (id, _) in BROKEN {
            if !row(page, id).contains("data-status=\"CRITICAL\"") {
                return Err(format!("{id} not CRITICAL: {}", row(page, id)));
            }
        }
        Ok(())
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let why = match d.get("/").await {
            Some((200, page)) => match ready(&page) {
                Ok(()) => return,
                Err(why) => why,
            },
            other => format!("no page: {other:?}"),
        };
        assert!(
            Instant::now() < deadline,
            "timed out waiting for two checks of every store: {why}\n{}",
            d.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn chromium() -> PathBuf {
    let path =
        std::env::var_os("STOREGUARD_CHROMIUM").map_or(PathBuf::from(CHROMIUM), PathBuf::from);
    assert!(
        path.exists(),
        "Chromium is missing at {}: the status-page browser test needs it. Install it with \
         `apt-get update && apt-get install -y chromium` (.ci/run does), or set \
         STOREGUARD_CHROMIUM to a Chromium binary.",
        path.display()
    );
    path
}

/// Runs headless Chromium on `url` with `extra` flags and a fresh profile; returns its stdout.
fn browse(scratch: &Path, url: &str, extra: &[String]) -> String {
    let profile = tempfile::tempdir_in(scratch).unwrap();
    let out = profile.path().join("stdout");
    let err = profile.path().join("stderr");
    let mut c = Command::new(chromium());
    c.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-proxy-server",
        "--hide-scrollbars",
    ])
    .arg(format!(
        "--user-data-dir={}",
        profile.path().join("profile").display()
    ))
    .args(extra)
    .arg(url)
    .env("HOME", profile.path())
    .stdin(Stdio::null())
    .stdout(std::fs::File::create(&out).unwrap())
    .stderr(std::fs::File::create(&err).unwrap());
    let mut child = c.spawn().unwrap();
    let status = wait(&mut child, Duration::from_secs(120));
    let stdout = std::fs::read_to_string(&out).unwrap_or_default();
    assert!(
        status.success(),
        "chromium failed on {url}: {status}\n{}",
        std::fs::read_to_string(&err).unwrap_or_default()
    );
    stdout
}

fn dump_dom(scratch: &Path, url: &str) -> String {
    let dom = browse(scratch, url, &["--dump-dom".to_string()]);
    assert!(dom.contains("</html>"), "no DOM for {url}: {dom}");
    dom
}

/// Saves a 1280×1600 screenshot of `url` at `path`.
fn screenshot(scratch: &Path, url: &str, path: &Path) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let _ = std::fs::remove_file(path);
    browse(
        scratch,
        url,
        &[
            format!("--screenshot={}", path.display()),
            "--window-size=1280,1600".to_string(),
        ],
    );
    let png = std::fs::read(path).unwrap_or_default();
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000,
        "no screenshot at {}",
        path.display()
    );
}

/// `target/test-artifacts/`, next to the binary under test.
fn artifacts() -> PathBuf {
    Path::new(crate::util::BIN)
        .ancestors()
        .nth(2)
        .unwrap()
        .join("test-artifacts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_in_a_real_browser_shows_broken_stores_and_expiry() {
    chromium();
    let w = world(stores(), "* * * * * *").await;
    let d = Daemon::start(&w);
    wait_for_history(&d).await;
    let scratch = w.path();
    let base = d.api.clone();

    let dom = dump_dom(scratch, &format!("{base}/"));
    // The inline script ran and the inline style sheet applied under the page's CSP.
    assert!(dom.contains("data-js=\"on\""), "script blocked:\n{dom}");
    assert!(dom.contains("data-css=\"on\""), "style blocked:\n{dom}");
    for (id, words) in BROKEN {
        let r = row(&dom, id);
        assert!(r.contains("data-status=\"CRITICAL\""), "{id}: {r}");
        assert!(
            r.contains("<span class=\"badge critical\">CRITICAL</span>"),
            "{id}: {r}"
        );
        assert!(r.contains(words), "{id} should say `{words}`: {r}");
        assert!(
            r.contains("<span class=\"c critical\" title=\""),
            "{id}: {r}"
        );
    }
    assert!(row(&dom, "ozon-dead").contains("Api-key is deactivated"));
    assert!(row(&dom, "ozon-blocked").contains("Company is blocked"));
    // Store names are text, not markup.
    assert!(
        row(&dom, "ozon-dead").contains("&lt;i&gt;Ozon&lt;/i&gt; &amp; 'Dead'"),
        "{}",
        row(&dom, "ozon-dead")
    );
    // Expiry in words and as a date.
    let expiring = row(&dom, "ozon-exp");
    let date = (chrono::Utc::now() + chrono::Duration::days(12))
        .format("%Y-%m-%d")
        .to_string();
    assert!(
        expiring.contains(&format!(
            "<span class=\"expiry soon\">in 12 days</span> <span class=\"date\">{date}</span>"
        )),
        "{expiring}"
    );
    assert!(expiring.contains("data-status=\"WARNING\""), "{expiring}");
    for id in ["ozon-ok", "amazon-us", "alibaba-yiwu"] {
        assert!(row(&dom, id).contains("data-status=\"OK\""), "{id}");
    }
    assert!(
        dom.contains("class=\"n critical\" data-count=\"3\""),
        "summary"
    );
    assert!(!dom.contains("CANARY"));

    // Chinese, filtered to the critical stores, through the form's query string.
    let zh = dump_dom(scratch, &format!("{base}/?status=CRITICAL&lang=zh-CN"));
    assert!(zh.contains("<html lang=\"zh-CN\""));
    assert_eq!(zh.matches("<tr id=\"store-").count(), 3, "{zh}");
    assert!(row(&zh, "ozon-dead").contains(">严重</span>"));
    assert!(row(&zh, "ozon-blocked").contains("账户已被封禁或暂停"));
    let zh_all = dump_dom(scratch, &format!("{base}/?lang=zh-CN&tag=key-rotation"));
    assert_eq!(zh_all.matches("<tr id=\"store-").count(), 1);
    assert!(row(&zh_all, "ozon-exp").contains("12 天后到期"));

    // One store's page: incident, what to do, history with latency.
    let store = dump_dom(scratch, &format!("{base}/stores/ozon-dead"));
    assert!(store.contains("data-status=\"CRITICAL\""));
    assert!(store.contains("What to do:"));
    assert!(store.contains("<b>still open</b>"));
    assert!(store.contains(" ms</td>"));
    assert!(!store.contains("CANARY"));

    screenshot(
        scratch,
        &format!("{base}/"),
        &artifacts().join("status-page.png"),
    );
    screenshot(
        scratch,
        &format!("{base}/stores/ozon-dead?lang=zh-CN"),
        &artifacts().join("status-page-store-zh.png"),
    );
    assert!(!d.log().contains("CANARY"));
    assert!(d.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_page_shows_a_canary_secret_and_every_page_is_locked_down() {
    let w = world(stores(), "* * * * * *").await;
    let d = Daemon::start(&w);
    wait_for_history(&d).await;

    let mut paths = vec![
        "/".to_string(),
        "/?lang=zh-CN".into(),
        "/?lang=en&status=CRITICAL".into(),
        "/?q=%3Cscript%3Ealert(1)%3C/script%3E&tag=%22%3E&marketplace=%3Cx%3E&lang=%3Cy%3E".into(),
    ];
    for s in stores() {
        paths.push(format!("/stores/{}", s.id));
        paths.push(format!("/stores/{}?lang=zh-CN", s.id));
    }
    for path in &paths {
        let r = d.response(path).await.unwrap();
        assert_eq!(r.status().as_u16(), 200, "{path}");
        let h = r.headers();
        assert_eq!(h["content-type"], "text/html; charset=utf-8");
        assert_eq!(h["x-content-type-options"], "nosniff");
        let csp = h["content-security-policy"].to_str().unwrap().to_string();
        assert!(csp.starts_with("default-src 'none';"), "{csp}");
        assert!(!csp.contains("unsafe"), "{csp}");
        let body = r.text().await.unwrap();
        assert!(!body.contains("CANARY"), "{path} shows a secret");
        assert!(!body.contains("<script>alert"), "{path}");
        assert!(!body.contains("<x>") && !body.contains("<y>"), "{path}");
        assert_eq!(body.matches("<script").count(), 1, "{path}");
    }
    // The search box reflects its text escaped; the form works without script.
    let (_, page) = d.get("/?q=dead").await.unwrap();
    assert_eq!(page.matches("<tr id=\"store-").count(), 1);
    assert!(page.contains("store-ozon-dead"));
    let (_, page) = d
        .get("/?q=%3Cscript%3Ealert(1)%3C/script%3E")
        .await
        .unwrap();
    assert!(page.contains("value=\"&lt;script&gt;alert(1)&lt;/script&gt;\""));

    // Unknown stores: a 404 page that does not repeat what was asked.
    for path in [
        "/stores/nope",
        "/stores/%3Cscript%3Ealert(1)%3C%2Fscript%3E",
        "/stores/..%2f..%2fetc%2fpasswd",
        "/stores/%ff%fe",
    ] {
        let r = d.response(path).await.unwrap();
        assert_eq!(r.status().as_u16(), 404, "{path}");
        assert_eq!(r.headers()["x-content-type-options"], "nosniff");
        let body = r.text().await.unwrap();
        assert!(body.contains("No such store"), "{path}: {body}");
        assert!(!body.contains("script") && !body.contains("passwd") && !body.contains("nope"));
    }
    // Loopback listener: account numbers are shown (the API's rule: no token needed here).
    let (_, page) = d.get("/").await.unwrap();
    assert!(row(&page, "ozon-ok").contains(&storeguard::demo::account_of(0, Marketplace::Ozon)));
    assert!(!d.log().contains("CANARY"));
    assert!(d.stop().success());
}

/// A one-shot HTTP answer on loopback, standing in for the daemon's listener.
fn fake_listener() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let mut s = s;
            let mut buf = [0u8; 1024];
            let _ = std::io::Read::read(&mut s, &mut buf);
            let _ = s.write_all(
                b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\nconnection: close\r\n\r\nok\n",
            );
        }
    });
    port
}

fn set_listen(setup: &crate::util::Setup, port: u16) {
    let cfg = std::fs::read_to_string(setup.config()).unwrap();
    let mut out = String::new();
    let mut done = false;
    for line in cfg.lines() {
        if !done && line.trim_start().starts_with("[daemon]") {
            out.push_str(line);
            out.push_str(&format!("\nlisten = \"127.0.0.1:{port}\"\n"));
            done = true;
            continue;
        }
        if line.trim_start().starts_with("listen") {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    assert!(done);
    std::fs::write(setup.config(), out).unwrap();
}

#[test]
fn status_open_launches_the_browser_or_prints_the_url() {
    let setup = crate::util::Setup::init();
    let port = fake_listener();
    set_listen(&setup, port);
    let url = format!("http://127.0.0.1:{port}/");

    // $BROWSER wins; it gets the URL (and nothing secret).
    let seen = setup.dir.path().join("browser-args");
    let browser = setup.dir.path().join("browser.sh");
    std::fs::write(
        &browser,
        format!("#!/bin/sh\nprintf '%s\\n' \"$@\" > '{}'\n", seen.display()),
    )
    .unwrap();
    std::fs::set_permissions(
        &browser,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let mut c = setup.command(&["status", "--open"]);
    c.env("BROWSER", &browser)
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY");
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), format!("{url}\n"));
    assert_eq!(std::fs::read_to_string(&seen).unwrap(), format!("{url}\n"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("opened in"));

    // No browser (a server over SSH): the URL and the tunnel to use.
    let mut c = setup.command(&["status", "--open"]);
    c.env_remove("BROWSER")
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY");
    let out = c.output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), format!("{url}\n"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("ssh -L {port}:127.0.0.1:{port}")),
        "{err}"
    );

    // Daemon not running: say so, exit 1, open nothing.
    set_listen(&setup, dead_port());
    std::fs::remove_file(&seen).unwrap();
    let mut c = setup.command(&["status", "--open"]);
    c.env("BROWSER", &browser);
    let out = c.output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not answer"));
    assert!(!seen.exists());
}

/// Produces `docs/status-page.png` from the demo world (run by hand:
/// `cargo test --test page -- --ignored docs_screenshot`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "writes docs/status-page.png; run by hand"]
async fn docs_screenshot() {
    chromium();
    let wc = WorldConfig {
        schedule: "* * * * * *".into(),
        failure_threshold: 2,
        ..WorldConfig::default()
    };
    let w = World::build(storeguard::demo::demo_stores(), wc)
        .await
        .unwrap();
    tag_stores(
        &w,
        &[
            ("ozon-moscow", "\"ru\""),
            ("ozon-outlet", "\"ru\""),
            ("ozon-kazan", "\"ru\""),
            ("ozon-spb", "\"ru\""),
            ("amazon-us", "\"na\""),
            ("amazon-ca", "\"na\""),
            ("amazon-kitchen", "\"na\""),
        ],
    );
    let d = Daemon::start(&w);
    // A quiet minute of history, then the demo's four breakages.
    eventually(Duration::from_secs(60), "history", || async {
        d.get("/").await.is_some_and(|(_, p)| {
            row(&p, "ozon-moscow")
                .matches("<span class=\"c ok\"")
                .count()
                >= 30
        })
    })
    .await;
    for (id, s) in [
        ("ozon-outlet", Scenario::DeactivatedKey),
        ("ozon-kazan", Scenario::CompanyBlocked),
        ("amazon-ca", Scenario::MissingRole),
        (
            "aliexpress-home",
            Scenario::SellerMismatch("2000099999999".into()),
        ),
    ] {
        w.set_scenario(id, s);
    }
    eventually(Duration::from_secs(60), "broken stores", || async {
        d.get("/").await.is_some_and(|(_, p)| {
            row(&p, "ozon-kazan")
                .matches("<span class=\"c critical\"")
                .count()
                >= 8
        })
    })
    .await;
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/status-page.png");
    screenshot(w.path(), &format!("{}/", d.api), &out);
    println!("wrote {}", out.display());
    assert!(d.stop().success());
}
