//! The daemon as a process: its state-directory lock, its open-file limit, signals, and the
//! systemd protocol (READY, RELOADING, WATCHDOG, STATUS).

use super::Shared;
use anyhow::anyhow;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Takes `daemon.lock` in the state directory for the life of the process, and writes this
/// process's id into it. Two daemons on one state directory would each open their own
/// incident for one failure and leave one of them open for ever.
pub fn lock_state_dir(dir: &Path) -> anyhow::Result<std::fs::File> {
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
pub fn raise_open_file_limit() -> u64 {
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
pub fn signals(
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
pub fn notify_ready(shared: &Shared) {
    let (views, _) = crate::web::view::from_daemon(shared, crate::web::view::Accounts::Hidden);
    let status = crate::web::view::summary(&views);
    let _ = sd_notify::notify(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status(&status),
    ]);
}

/// Pings the watchdog while the scheduler is alive, and refreshes STATUS.
pub async fn watchdog(shared: Arc<Shared>) {
    let every = sd_notify::watchdog_enabled().map(|d| d / 2);
    let tick = every
        .unwrap_or(Duration::from_secs(30))
        .min(Duration::from_secs(30));
    loop {
        tokio::select! {
            _ = shared.cancel.cancelled() => return,
            _ = tokio::time::sleep(tick) => {}
        }
        let now = shared.clock.now();
        let (views, _) = crate::web::view::from_daemon(&shared, crate::web::view::Accounts::Hidden);
        let status = crate::web::view::summary(&views);
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
