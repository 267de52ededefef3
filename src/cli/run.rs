//! `storeguard run`: the daemon under a terminal or systemd (Type=notify).

use super::load_config;
use crate::alert::{AlertEvent, ChannelSet, Delivery};
use crate::clock::BoxFuture;
use crate::config::Config;
use crate::daemon::{self, Checker, Parts, Sender};
use crate::marketplace::Prober;
use crate::outcome::Outcome;
use crate::vault::{EntryId, Identity, Schema, Vault};
use anyhow::anyhow;
use chrono::{DateTime, Utc};
use clap::{Args, ValueEnum};
use std::path::Path;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Log format: auto (compact without timestamps under journald), text, or json
    #[arg(long, value_enum, default_value_t = LogFormat::Auto)]
    pub log_format: LogFormat,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum LogFormat {
    Auto,
    Text,
    Json,
}

/// Sets up tracing on stderr. `STOREGUARD_LOG` (or `RUST_LOG`) filters, default `info`.
pub fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = std::env::var("STOREGUARD_LOG")
        .ok()
        .or_else(|| std::env::var("RUST_LOG").ok())
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Auto if journald => builder.without_time().compact().with_ansi(false).try_init(),
        _ => builder.compact().try_init(),
    };
}

impl Checker for Prober {
    fn check<'a>(
        &'a self,
        store_id: &'a str,
        now: DateTime<Utc>,
    ) -> BoxFuture<'a, Option<Outcome>> {
        Box::pin(Prober::check(self, store_id, now))
    }

    fn entry_changed(&self, store_id: &str) -> bool {
        Prober::entry_changed(self, store_id)
    }
}

impl Sender for ChannelSet {
    fn send<'a>(
        &'a self,
        channel: &'a str,
        event: &'a AlertEvent,
        now: DateTime<Utc>,
    ) -> BoxFuture<'a, Delivery> {
        Box::pin(ChannelSet::send(self, channel, event, now))
    }
}

/// Real prober and channels; the prober is kept across reloads (token caches survive).
pub struct RealParts {
    pub vault: Vault,
    pub identity: Arc<Identity>,
    prober: Mutex<Option<Arc<Prober>>>,
}

impl RealParts {
    pub fn new(vault: Vault, identity: Arc<Identity>) -> Self {
        RealParts {
            vault,
            identity,
            prober: Mutex::new(None),
        }
    }
}

impl Parts for RealParts {
    fn build(&self, config: &Arc<Config>) -> anyhow::Result<(Arc<dyn Checker>, Arc<dyn Sender>)> {
        let channels = Arc::new(ChannelSet::new(config, &self.vault, &self.identity)?);
        let mut slot = self.prober.lock().unwrap_or_else(|e| e.into_inner());
        let prober = match slot.as_ref() {
            Some(p) => {
                p.reload(config.clone())?;
                p.clone()
            }
            None => {
                let p = Arc::new(Prober::new(
                    config.clone(),
                    self.vault.clone(),
                    self.identity.clone(),
                )?);
                *slot = Some(p.clone());
                p
            }
        };
        Ok((prober, channels))
    }
}

/// What the vault says about the config at start.
#[derive(Debug, Default)]
pub struct VaultProblems {
    /// Problems that stop the daemon: loose permissions, no recipients, a channel's entry.
    pub fatal: Vec<String>,
    /// Enabled stores whose entry is missing, unreadable or incomplete, with the problem. Each
    /// fails alone: it is checked (and alerted) as `vault_unreadable`, the others are watched.
    pub stores: Vec<(String, String)>,
}

/// The vault problems of `config`: see [`VaultProblems`]. (`config check` and `vault
/// verify` treat every one of them as an error.)
pub fn vault_problems(config: &Config, vault: &Vault, identity: &Identity) -> VaultProblems {
    let mut problems = VaultProblems {
        fatal: vault.permission_problems(),
        stores: Vec::new(),
    };
    if let Err(e) = vault.recipients() {
        problems.fatal.push(e.to_string());
    }
    let enabled: Vec<&crate::config::Store> = config.stores.iter().filter(|s| s.enabled).collect();
    let stores: Vec<(EntryId, Schema)> = enabled
        .iter()
        .map(|s| (EntryId::store(&s.id), Schema::Store(s.marketplace)))
        .collect();
    for (store, result) in enabled.iter().zip(vault.load_all(&stores, identity)) {
        if let Err(e) = result {
            problems.stores.push((store.id.clone(), e.to_string()));
        }
    }
    for c in config
        .channels
        .iter()
        .filter(|c| c.kind != crate::model::ChannelKind::Log)
    {
        if let Err(e) = vault.load(
            &EntryId::channel(&c.name),
            Schema::Channel(c.kind),
            identity,
        ) {
            problems.fatal.push(e.to_string());
        }
    }
    problems
}

pub fn run(config_path: &Path, args: RunArgs) -> anyhow::Result<ExitCode> {
    init_logging(args.log_format);
    let config = Arc::new(load_config(config_path)?);
    // Held until the process exits: one daemon per state directory.
    let _state_lock = lock_state_dir(&config.daemon.state_dir)?;
    let identity = Arc::new(super::load_identity(&config)?);
    let vault = Vault::open(&config.daemon.vault_dir)?;
    let stale = vault.clean_stale_temp_files()?;
    if stale > 0 {
        tracing::info!(
            files = stale,
            "removed temp files of an interrupted vault write"
        );
    }
    let problems = vault_problems(&config, &vault, &identity);
    if !problems.fatal.is_empty() {
        return Err(anyhow!(
            "refusing to start: {} vault problem{}:\n{}",
            problems.fatal.len(),
            if problems.fatal.len() == 1 { "" } else { "s" },
            problems.fatal.join("\n")
        ));
    }
    for (store, problem) in &problems.stores {
        tracing::error!(
            store = %store,
            "this store cannot be checked until its vault entry is fixed (the others are watched): {problem}"
        );
    }
    let unreadable: Vec<String> = problems.stores.into_iter().map(|(id, _)| id).collect();
    let daemon_entry = vault
        .load(&EntryId::daemon(), Schema::Daemon, &identity)
        .ok();
    let api_token = daemon_entry
        .as_ref()
        .and_then(|d| d.get("api_token").cloned());
    let heartbeat_url = daemon_entry
        .as_ref()
        .and_then(|d| d.get("heartbeat_url").cloned());
    if api_token.is_none() {
        tracing::warn!(
            "no daemon/api entry in the vault: POST requests to the status API are refused (create one with `storeguard vault put daemon/api`)"
        );
    }
    let nofile = raise_open_file_limit();
    let parts: Arc<dyn Parts> = Arc::new(RealParts::new(vault, identity));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("storeguard")
        .build()?;
    rt.block_on(async move {
        let (reload_tx, reload_rx) = tokio::sync::mpsc::unbounded_channel();
        let shutdown = signals(reload_tx)?;
        let listener = daemon::bind(&config).await?;
        daemon::run(
            config,
            parts,
            daemon::Options {
                api_token,
                heartbeat_url,
                limits: daemon::Limits::default().for_open_files(nofile),
                ..daemon::Options::default()
            },
            listener,
            reload_rx,
            shutdown,
            |shared| {
                // Checked at once, so they show UNKNOWN `vault_unreadable` and are alerted now,
                // not at their next schedule tick.
                for id in &unreadable {
                    shared.check_now(id);
                }
                notify_ready(&shared);
                tokio::spawn(watchdog(shared));
            },
        )
        .await
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Takes `daemon.lock` in the state directory for the life of the process, and writes this
/// process's id into it. Two daemons on one state directory would each open their own
/// incident for one failure and leave one of them open for ever.
fn lock_state_dir(dir: &Path) -> anyhow::Result<std::fs::File> {
    use std::io::{Read, Seek, Write};
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let shown = crate::outcome::sanitize(&dir.display().to_string(), 200);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| anyhow!("cannot create the state directory {shown}: {e}"))?;
    let path = dir.join("daemon.lock");
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(|e| anyhow!("cannot open {shown}/daemon.lock: {e}"))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            let who = text
                .trim()
                .parse::<u32>()
                .map_or("another process".to_string(), |pid| {
                    format!("process {pid}")
                });
            return Err(anyhow!(
                "another storeguard daemon ({who}) is already running on the state directory {shown}\n  help: stop it first, or give this configuration its own [daemon] state_dir"
            ));
        }
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(anyhow!("cannot lock {shown}/daemon.lock: {e}"));
        }
    }
    file.set_len(0)
        .and_then(|_| file.rewind())
        .and_then(|_| writeln!(file, "{}", std::process::id()))
        .map_err(|e| anyhow!("cannot write {shown}/daemon.lock: {e}"))?;
    Ok(file)
}

/// Raises the soft open-file limit to the hard one (systemd's default soft limit is 1,024;
/// the unit sets `LimitNOFILE=` higher) and returns the soft limit now in force.
fn raise_open_file_limit() -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return 1024;
    };
    if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        tracing::debug!(from = soft, to = hard, "raised the open-file limit");
        return hard;
    }
    soft
}

/// SIGTERM/SIGINT resolve the returned future; SIGHUP asks for a reload.
fn signals(
    reload: tokio::sync::mpsc::UnboundedSender<()>,
) -> anyhow::Result<impl std::future::Future<Output = ()> + Send> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading configuration and vault");
            let _ = sd_notify::notify(&[sd_notify::NotifyState::Reloading]);
            if reload.send(()).is_err() {
                return;
            }
            let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
        }
    });
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
    })
}

/// READY once everything is loaded; then WATCHDOG pings while the scheduler is alive, and a
/// STATUS line with counts.
fn notify_ready(shared: &daemon::Shared) {
    let statuses = daemon::api::store_statuses(shared, false);
    let status = daemon::api::summary(&statuses);
    let _ = sd_notify::notify(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status(&status),
    ]);
}

/// Pings the watchdog while the scheduler is alive, and refreshes STATUS.
pub async fn watchdog(shared: Arc<daemon::Shared>) {
    let every = sd_notify::watchdog_enabled().map(|d| d / 2);
    let tick = every
        .unwrap_or(Duration::from_secs(30))
        .min(Duration::from_secs(30));
    loop {
        tokio::time::sleep(tick).await;
        let now = shared.clock.now();
        let statuses = daemon::api::store_statuses(&shared, false);
        let status = daemon::api::summary(&statuses);
        if every.is_some() && shared.scheduler_alive(now) {
            let _ = sd_notify::notify(&[
                sd_notify::NotifyState::Watchdog,
                sd_notify::NotifyState::Status(&status),
            ]);
        } else {
            let _ = sd_notify::notify(&[sd_notify::NotifyState::Status(&status)]);
        }
    }
}
