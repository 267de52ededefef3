//! `bench floor`: storeguard next to the floor of one HTTP exchange, in the same run on the same
//! machine. One nginx on loopback answers the Ozon probe (`/v1/roles`, `/v1/seller/info`) for
//! 10,000 stores. Measured side by side:
//! - `wrk` (1 thread, 64 connections) against the same URL: CPU per request, the floor;
//! - the daemon in steady state (credentials in memory; probe → classify → health → SQLite):
//!   CPU of its threads per check;
//! - a cold `storeguard check --all` of the real binary (decrypt every entry, probe, classify):
//!   CPU per store, wall time and peak RSS;
//! - Python `requests` with 64 threads posting the same request once per store: CPU per request.
//!
//! Each tool that is not installed is said so, and its rows are left out.

use super::*;

const ROLES: &str = r#"{"expires_at":"2027-06-01T00:00:00Z","roles":[{"name":"Admin","methods":["/v1/actions","/v2/product/list"]},{"name":"Statistics","methods":["/v1/analytics/data"]}]}"#;
const SELLER_INFO: &str = r#"{"company":{"name":"x"},"subscription":{"type":"PREMIUM"}}"#;

fn find(paths: &[&str]) -> Option<PathBuf> {
    paths.iter().map(PathBuf::from).find(|p| p.is_file())
}

/// CPU (user + sys) of this process's waited-for children so far.
fn children_cpu() -> Duration {
    use nix::sys::resource::{UsageWho, getrusage};
    getrusage(UsageWho::RUSAGE_CHILDREN).map_or(Duration::ZERO, |u| {
        let t = |tv: nix::sys::time::TimeVal| {
            Duration::from_secs(tv.tv_sec() as u64) + Duration::from_micros(tv.tv_usec() as u64)
        };
        t(u.user_time()) + t(u.system_time())
    })
}

/// The largest RSS of any waited-for child so far (kB).
fn children_max_rss_kb() -> u64 {
    use nix::sys::resource::{UsageWho, getrusage};
    getrusage(UsageWho::RUSAGE_CHILDREN).map_or(0, |u| u.max_rss() as u64)
}

struct Nginx {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Nginx {
    fn start(bin: &Path) -> anyhow::Result<Nginx> {
        let dir = tempfile::Builder::new().prefix("sg-nginx-").tempdir()?;
        let port = free_port()?;
        let d = dir.path().display();
        let conf = format!(
            "worker_processes 1;\ndaemon off;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
             events {{ worker_connections 1024; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
             fastcgi_temp_path {d}/fcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
             keepalive_requests 1000000;\n\
             server {{\n    listen 127.0.0.1:{port};\n    default_type application/json;\n\
             location = /v1/roles {{ return 200 '{ROLES}'; }}\n\
             location = /v1/seller/info {{ return 200 '{SELLER_INFO}'; }}\n  }}\n}}\n"
        );
        let path = dir.path().join("nginx.conf");
        std::fs::write(&path, conf)?;
        let child = std::process::Command::new(bin)
            .arg("-c")
            .arg(&path)
            .arg("-p")
            .arg(dir.path())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return Err(anyhow!("nginx did not listen"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Nginx {
            child: Child { child },
            port,
            _dir: dir,
        })
    }

    fn pid(&self) -> String {
        self.child.child.id().to_string()
    }
}

/// `wrk` for `secs` against `url` with the probe's headers: (requests, CPU of wrk).
fn run_wrk(bin: &Path, url: &str, secs: u64) -> anyhow::Result<(u64, Duration)> {
    let dir = tempfile::tempdir()?;
    let script = dir.path().join("post.lua");
    std::fs::write(
        &script,
        "wrk.method = \"POST\"\nwrk.body = \"{}\"\n\
         wrk.headers[\"Content-Type\"] = \"application/json\"\n\
         wrk.headers[\"Client-Id\"] = \"1000001\"\nwrk.headers[\"Api-Key\"] = \"bench-key\"\n",
    )?;
    let before = children_cpu();
    let out = std::process::Command::new(bin)
        .args(["-t1", "-c64", &format!("-d{secs}s"), "-s"])
        .arg(&script)
        .arg(url)
        .output()?;
    let cpu = children_cpu().saturating_sub(before);
    let text = String::from_utf8_lossy(&out.stdout);
    let requests = text
        .lines()
        .find(|l| l.contains("requests in"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| anyhow!("wrk printed no request count: {text}"))?;
    Ok((requests, cpu))
}

const PYTHON: &str = r#"
import sys, threading, concurrent.futures as cf
import requests
url, n = sys.argv[1], int(sys.argv[2])
local = threading.local()
def one(i):
    s = getattr(local, "s", None)
    if s is None:
        s = local.s = requests.Session()
    r = s.post(url, json={}, headers={"Client-Id": str(1000000 + i), "Api-Key": "bench-key"}, timeout=10)
    r.json()
with cf.ThreadPoolExecutor(64) as ex:
    list(ex.map(one, range(n)))
"#;

/// Two rounds of `one(0..n)`, the second measured: CPU of the runtime's threads per request.
/// Driven from a task on the runtime, the requests of a round are tasks nobody joins one by one,
/// as the daemon drives its checks (see `sweep`); the first round warms the pool as the daemon's
/// first sweep does.
async fn per_request_cpu<F, Fut>(n: usize, one: F) -> anyhow::Result<f64>
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let round = move || {
        let one = one.clone();
        tokio::spawn(async move {
            let requests = tokio_util::task::TaskTracker::new();
            let failed = Arc::new(std::sync::Mutex::new(None));
            for i in 0..n {
                let (one, failed) = (one.clone(), failed.clone());
                requests.spawn(async move {
                    if let Err(e) = one(i).await {
                        failed.lock().unwrap().get_or_insert(e);
                    }
                });
            }
            requests.close();
            requests.wait().await;
            let failed = failed.lock().unwrap().take();
            failed.map_or(Ok(()), Err)
        })
    };
    round().await??;
    let c0 = threads_cpu("storeguard");
    round().await??;
    let cpu = threads_cpu("storeguard").saturating_sub(c0);
    Ok(cpu.as_secs_f64() * 1e6 / n.max(1) as f64)
}

/// `n` POSTs of the Ozon probe through a client built as the daemon builds its own, at most
/// `concurrency` in flight, on the current runtime: CPU of its threads per request.
async fn client_alone(url: &str, n: usize, concurrency: usize) -> anyhow::Result<f64> {
    let client = storeguard::http::client_builder(Duration::from_secs(10)).build()?;
    let gate = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let url = url.to_string();
    let one = move |i: usize| {
        let (client, gate, url) = (client.clone(), gate.clone(), url.clone());
        async move {
            let _g = gate.acquire_owned().await;
            let r = client
                .post(url)
                .header("Client-Id", (1_000_000 + i).to_string())
                .header("Api-Key", "bench-key")
                .json(&serde_json::json!({}))
                .send()
                .await?;
            anyhow::ensure!(r.status() == 200, "nginx answered {}", r.status());
            r.bytes().await?;
            anyhow::Ok(())
        }
    };
    per_request_cpu(n, one).await
}

/// The same requests through hyper's own pooled client (HTTP/1, no TLS, no redirect or
/// timeout layer): what any client on hyper and tokio costs, below reqwest.
async fn hyper_alone(url: &str, n: usize, concurrency: usize) -> anyhow::Result<f64> {
    use http_body_util::{BodyExt, Full};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    let client: Client<_, Full<bytes::Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let uri: hyper::Uri = url.parse()?;
    let gate = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let one = move |i: usize| {
        let (client, gate, uri) = (client.clone(), gate.clone(), uri.clone());
        async move {
            let _g = gate.acquire_owned().await;
            let req = hyper::Request::post(uri)
                .header("Client-Id", (1_000_000 + i).to_string())
                .header("Api-Key", "bench-key")
                .header("Content-Type", "application/json")
                .body(Full::new(bytes::Bytes::from_static(b"{}")))?;
            let r = client.request(req).await?;
            anyhow::ensure!(r.status() == 200, "nginx answered {}", r.status());
            r.into_body().collect().await?;
            anyhow::Ok(())
        }
    };
    per_request_cpu(n, one).await
}

/// Python `requests`, 64 threads, one POST per store: (wall, CPU), or why it did not run.
fn run_python(url: &str, n: usize) -> Result<(Duration, Duration), String> {
    let ok = std::process::Command::new("python3")
        .args(["-c", "import requests"])
        .output()
        .map_err(|e| format!("python3: {e}"))?;
    if !ok.status.success() {
        return Err("python3 has no `requests` (pip install requests)".into());
    }
    let before = children_cpu();
    let t = Instant::now();
    let out = std::process::Command::new("python3")
        .args(["-c", PYTHON, url, &n.to_string()])
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok((t.elapsed(), children_cpu().saturating_sub(before)))
}

/// A world of `n` Ozon stores whose endpoint is nginx.
fn nginx_world(n: usize, port: u16) -> anyhow::Result<(tokio::runtime::Runtime, Bench)> {
    let fakes = runtime("fake", 1)?;
    let specs = (0..n)
        .map(|i| {
            StoreSpec::new(
                &format!("s{i:06}"),
                &format!("Store {i}"),
                Marketplace::Ozon,
            )
        })
        .collect();
    let world = on_disk(fakes.block_on(World::build(
        specs,
        world_config(NEVER, Duration::ZERO, "127.0.0.1:0"),
    ))?)?;
    let text = std::fs::read_to_string(&world.config_path)?;
    let fake = world.ozon.url().to_string();
    let text = text.replacen(
        &format!("[marketplace.ozon]\nendpoint = \"{fake}\""),
        &format!("[marketplace.ozon]\nendpoint = \"http://127.0.0.1:{port}\""),
        1,
    );
    anyhow::ensure!(
        text.contains(&format!("127.0.0.1:{port}")),
        "endpoint not rewritten"
    );
    std::fs::write(&world.config_path, text)?;
    Ok((fakes, world))
}

pub fn bench_floor(args: &Args, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let n = args.stores;
    let Some(nginx_bin) = find(&["/usr/sbin/nginx", "/usr/bin/nginx"]) else {
        eprintln!("floor: nginx is not installed (apt-get install nginx-light): skipped");
        return Ok(());
    };
    let wrk = find(&["/usr/bin/wrk", "/usr/local/bin/wrk"]);
    if wrk.is_none() {
        eprintln!("floor: wrk is not installed (apt-get install wrk): its rows are left out");
    }
    let bin = bin_path(args)?;
    let nginx = Nginx::start(&nginx_bin)?;
    let url = format!("http://127.0.0.1:{}/v1/roles", nginx.port);
    let (fakes, world) = nginx_world(n, nginx.port)?;
    let config = Arc::new(Config::load(&world.config_path).map_err(|e| anyhow!("{e}"))?);

    let (mut cold_cpu, mut cold_wall, mut cold_rss) = (Vec::new(), Vec::new(), Vec::new());
    let (mut warm, mut wrk_cpu, mut python_cpu) = (Vec::new(), Vec::new(), Vec::new());
    let (mut client, mut bare) = (Vec::new(), Vec::new());
    let mut python_note = None;
    for run in 0..args.runs {
        eprintln!(
            "floor: run {}/{} with {n} stores against nginx…",
            run + 1,
            args.runs
        );
        // Cold check first: the children's peak RSS is then storeguard's.
        let before = children_cpu();
        let t = Instant::now();
        let out = std::process::Command::new(&bin)
            .arg("--config")
            .arg(&world.config_path)
            .args(["check", "--all", "--json"])
            .env("STOREGUARD_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()?;
        cold_wall.push(t.elapsed().as_secs_f64());
        cold_cpu.push(children_cpu().saturating_sub(before).as_secs_f64() * 1e6 / n as f64);
        if run == 0 {
            cold_rss.push(mb(children_max_rss_kb()));
        }
        anyhow::ensure!(out.code().is_some(), "the cold check was killed");

        // The daemon in steady state: the second and later sweeps (seller-info is fetched once
        // a day, so the first sweep makes two requests per store).
        let rt = runtime("storeguard", 2)?;
        let parts = real_parts(&config)?;
        let limits = limits_for(args);
        let options = daemon::Options {
            limits: limits.clone(),
            ..daemon::Options::default()
        };
        let per_check = rt.block_on(async {
            let d = InProcess::start(config.clone(), parts, options).await?;
            sweep(&d.shared, &limits).await;
            let c0 = threads_cpu("storeguard");
            let checks = sweep(&d.shared, &limits).await;
            let cpu = threads_cpu("storeguard").saturating_sub(c0);
            d.stop().await?;
            anyhow::Ok(cpu.as_secs_f64() * 1e6 / checks.max(1) as f64)
        })?;
        // The HTTP client alone, same runtime shape and concurrency: the part of a check that
        // is reqwest's, not storeguard's.
        let alone = rt.block_on(client_alone(&url, n, limits.max_concurrent_checks))?;
        let hyper = rt.block_on(hyper_alone(&url, n, limits.max_concurrent_checks))?;
        drop(rt);
        warm.push(per_check);
        client.push(alone);
        bare.push(hyper);

        if let Some(wrk) = &wrk {
            let (requests, cpu) = run_wrk(wrk, &url, 5)?;
            wrk_cpu.push(cpu.as_secs_f64() * 1e6 / requests.max(1) as f64);
        }
        match run_python(&url, n) {
            Ok((_, cpu)) => python_cpu.push(cpu.as_secs_f64() * 1e6 / n as f64),
            Err(e) => python_note = Some(e),
        }
    }
    eprintln!(
        "  nginx used {:.2} s of CPU in all",
        process_cpu(&nginx.pid()).as_secs_f64()
    );
    let w = median(warm.clone());
    let c = median(cold_cpu.clone());
    let wall = median(cold_wall.clone());
    let floor = (!wrk_cpu.is_empty()).then(|| median(wrk_cpu.clone()));
    let py = (!python_cpu.is_empty()).then(|| median(python_cpu.clone()));
    let ratio = |a: f64, b: Option<f64>| {
        b.map_or("-".to_string(), |b| {
            let r = a / b;
            if r < 1.0 {
                format!("{r:.2}×")
            } else {
                format!("{r:.1}×")
            }
        })
    };
    rows.push(row(
        format!("daemon steady state, CPU per check ({n} Ozon stores on nginx; creds in memory; probe + classify + state)"),
        "≤ 4× wrk",
        format!(
            "**{w:.0} µs** ({}); wrk {} per request ({}): **{}**",
            runs_note(&warm, "µs", 0),
            floor.map_or("not installed".into(), |f| format!("{f:.1} µs")),
            runs_note(&wrk_cpu, "µs", 1),
            ratio(w, floor)
        ),
        floor.map(|f| w <= 4.0 * f),
    ));
    let alone = median(client.clone());
    rows.push(row(
        format!("the HTTP client alone: reqwest, same runtime, {n} POSTs of the probe"),
        "-",
        format!(
            "{alone:.0} µs per request ({}); {} wrk; the rest of a check is storeguard's: {:.0} µs",
            runs_note(&client, "µs", 0),
            ratio(alone, floor),
            (w - alone).max(0.0)
        ),
        None,
    ));
    let h = median(bare.clone());
    rows.push(row(
        format!("below reqwest: hyper's pooled client, same runtime, {n} POSTs of the probe"),
        "-",
        format!(
            "{h:.0} µs per request ({}); {} wrk",
            runs_note(&bare, "µs", 0),
            ratio(h, floor),
        ),
        None,
    ));
    rows.push(row(
        format!(
            "cold `storeguard check --all`, CPU per store (decrypt + probe + classify), {n} stores"
        ),
        "≤ 0.1× Python",
        format!(
            "**{c:.0} µs** ({}); Python requests (64 threads) {} per request: **{}**; {} wrk",
            runs_note(&cold_cpu, "µs", 0),
            py.map_or_else(
                || python_note.clone().unwrap_or_default(),
                |p| format!("{p:.0} µs ({})", runs_note(&python_cpu, "µs", 0))
            ),
            ratio(c, py),
            ratio(c, floor)
        ),
        py.map(|p| c <= 0.1 * p),
    ));
    rows.push(row(
        format!("{n}-store sweep wall (cold check)"),
        "≤ 2 s",
        format!("**{wall:.2} s** ({})", runs_note(&cold_wall, "s", 2)),
        Some(wall <= 2.0),
    ));
    let rss = cold_rss.first().copied().unwrap_or(0.0);
    rows.push(row(
        format!("peak RSS, {n}-store cold check"),
        "≤ 40 MB",
        format!("**{rss:.1} MB** (first run)"),
        Some(rss <= 40.0),
    ));
    drop(world);
    drop(fakes);
    drop(nginx);
    Ok(())
}
