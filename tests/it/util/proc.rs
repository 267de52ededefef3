//! Running the real daemon binary in tests: start/stop/kill, its API, polling with a deadline,
//! and worlds of fake marketplaces wired to webhook receivers.

use super::receiver::Receiver;
use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use storeguard::demo::{StoreSpec, World, WorldConfig};
use storeguard::model::{ChannelKind, Marketplace};

/// A free port outside the kernel's ephemeral range (32768+), so fakes and receivers that bind
/// port 0 later can never be handed the same port before the daemon binds it.
pub fn free_port() -> u16 {
    loop {
        let port = 20_000 + (rand_u64() % 12_000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

pub struct Daemon {
    pub child: Option<Child>,
    pub log: PathBuf,
    pub api: String,
}

impl Daemon {
    pub fn start(world: &World, port: u16) -> Daemon {
        Self::start_env(world, port, &[])
    }

    pub fn start_env(world: &World, port: u16, env: &[(&str, String)]) -> Daemon {
        Self::start_under(world, port, env, &[])
    }

    /// Starts the daemon through `wrapper` (e.g. `prlimit --nofile=1024:1024 --`), which must
    /// exec it, so the child's pid is the daemon's.
    pub fn start_under(
        world: &World,
        port: u16,
        env: &[(&str, String)],
        wrapper: &[&str],
    ) -> Daemon {
        let log = world.path().join(format!("daemon-{}.log", rand_u64()));
        let file = std::fs::File::create(&log).unwrap();
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
            .env_remove("CREDENTIALS_DIRECTORY")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file);
        for (k, v) in env {
            c.env(k, v);
        }
        Daemon {
            child: Some(c.spawn().unwrap()),
            log,
            api: format!("http://127.0.0.1:{port}"),
        }
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

pub async fn world(stores: Vec<StoreSpec>, port: u16, receiver: &Receiver, remind: &str) -> World {
    world_with(stores, port, &[("hook", "", receiver)], remind, "").await
}

/// A world whose default channels are webhooks `(name, extra settings, receiver)`.
pub async fn world_with(
    stores: Vec<StoreSpec>,
    port: u16,
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
        listen: format!("127.0.0.1:{port}"),
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

pub async fn wait_checked(d: &Daemon, id: &str) {
    eventually(
        Duration::from_secs(20),
        &format!("{id} checked"),
        || async { d.store(id).await.is_some_and(|s| s["status"] != "PENDING") },
    )
    .await;
}
