//! `storeguard run`: the daemon under a terminal or systemd (Type=notify).

use super::load_config;
use crate::config::Config;
/// Kept here too: tests and the bench build the daemon from these.
pub use crate::daemon::RealParts;
use crate::daemon::systemd::{
    lock_state_dir, notify_ready, raise_open_file_limit, signals, watchdog,
};
use crate::daemon::{self, Parts};
use crate::vault::{EntryId, Identity, Schema, Vault};
use anyhow::anyhow;
use clap::{Args, ValueEnum};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

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
    // Colour only for a person at a terminal: a log file or a pipe gets plain text.
    let colour = {
        use std::io::IsTerminal as _;
        std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
    };
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Auto if journald => builder.without_time().compact().with_ansi(false).try_init(),
        _ => builder.compact().with_ansi(colour).try_init(),
    };
}

/// The vault problems that stop the daemon from starting: loose permissions, no recipients, a
/// channel's entry missing, undecryptable or incomplete. A store's entry fails alone: the
/// prober reads it once and reports it (see `run`). (`config check` and `vault verify` treat
/// store entries as errors too.)
pub fn vault_problems(config: &Config, vault: &Vault, identity: &Identity) -> Vec<String> {
    let mut problems = vault.permission_problems();
    if let Err(e) = vault.recipients() {
        problems.push(e.to_string());
    }
    for c in config.channels.iter().filter(|c| c.kind.has_vault_entry()) {
        if let Err(e) = vault.load(
            &EntryId::channel(&c.name),
            Schema::Channel(c.kind),
            identity,
        ) {
            problems.push(e.to_string());
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
    let fleet_password = match config.daemon.state {
        crate::config::StateLocation::Postgres { .. } => {
            super::replicas::password(&config, Some(&identity))?
        }
        crate::config::StateLocation::Sqlite => None,
    };
    if let crate::config::StateLocation::Postgres { .. } = config.daemon.state {
        super::replicas::pull_at_start(&config, &identity, fleet_password.clone())?;
    }
    let vault = Vault::open(&config.daemon.vault_dir)?;
    let stale = vault.clean_stale_temp_files()?;
    if stale > 0 {
        tracing::info!(
            files = stale,
            "removed temp files of an interrupted vault write"
        );
    }
    let problems = vault_problems(&config, &vault, &identity);
    if !problems.is_empty() {
        return Err(anyhow!(
            "refusing to start: {} vault problem{}:\n{}",
            problems.len(),
            if problems.len() == 1 { "" } else { "s" },
            problems.join("\n")
        ));
    }
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
                fleet_password,
                limits: daemon::Limits::default().for_open_files(nofile),
                ..daemon::Options::default()
            },
            listener,
            reload_rx,
            shutdown,
            |shared| {
                // Stores whose entry the prober could not read: checked at once, so they show
                // UNKNOWN `vault_unreadable` and are alerted now, not at their next tick.
                for (store, problem) in shared.live().probe.unreadable() {
                    tracing::error!(
                        store = %store,
                        "this store cannot be checked until its vault entry is fixed (the others are watched): {problem}"
                    );
                    shared.check_now(&store);
                }
                notify_ready(&shared);
                shared.tasks.spawn(watchdog(shared.clone()));
            },
        )
        .await
    })?;
    Ok(ExitCode::SUCCESS)
}
