//! Running the real daemon binary in tests: start/stop/kill, its API, polling with a deadline,
//! and worlds of fake marketplaces wired to webhook receivers.

use super::receiver::Receiver;
use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use storeguard::demo::{StoreSpec, World, WorldConfig};
use storeguard::model::{ChannelKind, Marketplace};

pub struct Daemon {
    pub child: Option<Child>,
    pub log: PathBuf,
    /// `http://127.0.0.1:PORT` of its status listener (worlds listen on port 0: the daemon
    /// says which port it was given).
    pub api: String,
}

impl Daemon {
    pub fn start(world: &World) -> Daemon {
        Self::start_env(world, &[])
    }

    pub fn start_env(world: &World, env: &[(&str, String)]) -> Daemon {
        Self::start_under(world, env, &[])
    }

    /// Starts the daemon through `wrapper` (e.g. `prlimit --nofile=1024:1024 --`), which must
    /// exec it, so the child's pid is the daemon's.
    pub fn start_under(world: &World, env: &[(&str, String)], wrapper: &[&str]) -> Daemon {
        let mut c = match wrapper.split_first() {
            None => Command::new(super::BIN),
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(super::BIN);
                c
            }
        };
        c.arg("--config")
            .arg(&world.config_path)
            .arg("run")
            .env("STOREGUARD_LOG", "info")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("CREDENTIALS_DIRECTORY");
        for (k, v) in env {
            c.env(k, v);
        }
        Self::spawn(c, world.path().join(format!("daemon-{}.log", rand_u64())))
    }

    /// Spawns `c` (a daemon, however wrapped) with its stderr copied line by line into `log`,
    /// and returns once it says it runs, with the address its listener was given, or once
    /// its stderr closes (it did not start: `api` then reaches nothing).
    pub fn spawn(mut c: Command, log: PathBuf) -> Daemon {
        use std::io::{BufRead, Write};
        let mut child = c
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let mut file = std::fs::File::create(&log).unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let _ = writeln!(file, "{line}");
                let _ = file.flush();
                if line.contains("storeguard running")
                    && let Some(addr) = listen_addr(&line)
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(addr);
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| "127.0.0.1:0".into());
        Daemon {
            child: Some(child),
            log,
            api: format!("http://{addr}"),
        }
    }

    /// `127.0.0.1:PORT` of the status listener.
    pub fn addr(&self) -> &str {
        self.api.trim_start_matches("http://")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub async fn stores(&self) -> Option<serde_json::Value> {
        let client = storeguard::http::client_builder(Duration::from_secs(2))
            .build()
            .unwrap();
        let resp = client
            .get(format!("{}/api/v1/stores", self.api))
            .send()
            .await
            .ok()?;
        resp.json().await.ok()
    }

    pub async fn store(&self, id: &str) -> Option<serde_json::Value> {
        let all = self.stores().await?;
        all.as_array()?.iter().find(|s| s["id"] == id).cloned()
    }

    pub async fn response(&self, path: &str) -> Option<reqwest::Response> {
        let client = storeguard::http::client_builder(Duration::from_secs(5))
            .build()
            .unwrap();
        client.get(format!("{}{path}", self.api)).send().await.ok()
    }

    pub async fn get(&self, path: &str) -> Option<(u16, String)> {
        let client = storeguard::http::client_builder(Duration::from_secs(2))
            .build()
            .unwrap();
        let resp = client
            .get(format!("{}{path}", self.api))
            .send()
            .await
            .ok()?;
        let status = resp.status().as_u16();
        Some((status, resp.text().await.ok()?))
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child.as_ref().unwrap().id() as i32);
        nix::sys::signal::kill(pid, sig).unwrap();
    }

    /// SIGHUP: reload the config and the vault.
    pub fn reload(&self) {
        self.signal(nix::sys::signal::Signal::SIGHUP);
    }

    /// Waits (at most 20 s) until the log has a line containing `text`.
    pub async fn wait_log(&self, text: &str) {
        eventually(Duration::from_secs(20), &format!("log: {text}"), || async {
            self.log().contains(text)
        })
        .await;
    }

    /// Waits (at most 20 s) until store `id` has been checked again after now.
    pub async fn wait_next_check(&self, id: &str) {
        let last = self.store(id).await.expect("the store is listed")["last_check"].clone();
        eventually(
            Duration::from_secs(20),
            &format!("{id} checked again"),
            || async {
                self.store(id)
                    .await
                    .is_some_and(|s| s["last_check"] != last)
            },
        )
        .await;
    }

    /// SIGTERM and wait; returns the exit status.
    pub fn stop(mut self) -> std::process::ExitStatus {
        self.signal(nix::sys::signal::Signal::SIGTERM);
        let mut child = self.child.take().unwrap();
        wait_child(&mut child, Duration::from_secs(20))
    }

    pub fn kill9(mut self) {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The `listen` field of a "storeguard running" log line, text (`listen=ADDR`) or JSON.
fn listen_addr(line: &str) -> Option<String> {
    let rest = line
        .split_once("listen=")
        .map(|(_, r)| r)
        .or_else(|| line.split_once("\"listen\":\"").map(|(_, r)| r))?;
    let addr: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '[' | ']'))
        .collect();
    (!addr.is_empty()).then_some(addr)
}

pub fn wait_child(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "daemon did not exit within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn rand_u64() -> u64 {
    let mut b = [0u8; 8];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut b)
        .unwrap();
    u64::from_le_bytes(b)
}

/// Polls `cond` until it holds or `limit` passes (then fails with `what`).
pub async fn eventually<F, Fut>(limit: Duration, what: &str, mut cond: F)
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
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn world(stores: Vec<StoreSpec>, receiver: &Receiver, remind: &str) -> World {
    world_with(stores, &[("hook", "", receiver)], remind, "").await
}

/// A world whose default channels are webhooks `(name, extra settings, receiver)`.
pub async fn world_with(
    stores: Vec<StoreSpec>,
    hooks: &[(&str, &str, &Receiver)],
    remind: &str,
    extra: &str,
) -> World {
    let mut channels_toml = String::new();
    for (name, settings, _) in hooks {
        channels_toml.push_str(&format!(
            "[[channel]]\nname = \"{name}\"\nkind = \"webhook\"\n{settings}\n"
        ));
    }
    channels_toml.push_str(extra);
    let wc = WorldConfig {
        schedule: "* * * * * *".into(),
        failure_threshold: 1,
        success_threshold: 1,
        remind_every: remind.into(),
        extra: channels_toml,
        channels: hooks.iter().map(|(n, _, _)| n.to_string()).collect(),
        ..WorldConfig::default()
    };
    let w = World::build(stores, wc).await.unwrap();
    for (name, _, receiver) in hooks {
        w.put_channel(
            name,
            ChannelKind::Webhook,
            &format!("url = \"{}\"\n", receiver.url),
        )
        .unwrap();
    }
    w
}

pub fn ozon(id: &str) -> StoreSpec {
    StoreSpec::new(id, id, Marketplace::Ozon)
}

/// A world of `stores` reporting to `receiver`, and its daemon once every store was checked.
pub async fn started(stores: Vec<StoreSpec>, receiver: &Receiver, remind: &str) -> (World, Daemon) {
    let ids: Vec<String> = stores.iter().map(|s| s.id.clone()).collect();
    let w = world(stores, receiver, remind).await;
    let d = Daemon::start(&w);
    for id in &ids {
        wait_checked(&d, id).await;
    }
    (w, d)
}

pub async fn wait_checked(d: &Daemon, id: &str) {
    eventually(
        Duration::from_secs(20),
        &format!("{id} checked"),
        || async { d.store(id).await.is_some_and(|s| s["status"] != "PENDING") },
    )
    .await;
}
