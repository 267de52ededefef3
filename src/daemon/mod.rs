//! The daemon: schedules checks, runs them through the health machine into SQLite, delivers the
//! alert outbox, serves status and metrics, and reacts to signals.
//!
//! `run` takes its shutdown future and clock as parameters so tests can drive it. Reload
//! (SIGHUP) builds the new config, prober and channels first and swaps them in only when all of
//! that succeeded; otherwise the old ones keep running.

mod check;
mod commit;
mod fleet;
mod housekeeping;
pub mod mail;
mod outbox;
mod parts;
mod reload;
mod schedule;
pub mod systemd;

pub use check::{run_check, silence};
use housekeeping::*;
use outbox::*;
pub use parts::RealParts;
pub use reload::check_reload;
use reload::*;
use schedule::*;

use crate::alert::Delivery;
use crate::clock::{BoxFuture, Clock};
use crate::config::{Config, Store};
use crate::event::AlertEvent;
use crate::health::MAX_BACKOFF;
use crate::health::{self, Rules, StoreHealth, StoreRef};
use crate::model::Marketplace;
use crate::outcome::{FindingKind, Outcome};
use crate::route::Routed;
use crate::state::{Backend, Backoff, State};
use chrono::{DateTime, Utc};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::{Notify, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Runs one check of one store (implemented by the marketplace prober).
pub trait Checker: Send + Sync + 'static {
    /// `None` when the store is not in the probe's config (removed by a reload meanwhile).
    fn check<'a>(&'a self, store_id: &'a str, now: DateTime<Utc>)
    -> BoxFuture<'a, Option<Outcome>>;

    /// Whether the store's credentials changed since they were read (a fixed key): a store
    /// backing off is then checked at its next tick. Cheap: asked at every skipped tick.
    fn entry_changed(&self, _store_id: &str) -> bool {
        false
    }

    /// Enabled stores whose credentials could not be read, with the reason.
    fn unreadable(&self) -> Vec<(String, String)> {
        Vec::new()
    }

    /// What the state file remembers of a store's last check, given once at start: facts that
    /// only accumulate over time (the first day an authorisation was seen working) go on.
    fn remember(&self, _store_id: &str, _facts: &crate::outcome::Facts) {}

    /// Replica mode: where rotated tokens go besides the local vault file.
    fn set_token_mirror(&self, _mirror: Arc<dyn crate::marketplace::TokenMirror>) {}
}

/// Delivers one event to one channel (implemented by the channel set).
pub trait Sender: Send + Sync + 'static {
    fn send<'a>(
        &'a self,
        channel: &'a str,
        event: &'a AlertEvent,
        now: DateTime<Utc>,
    ) -> BoxFuture<'a, Delivery>;
}

/// Builds the prober and channels for a config (called at start and on every reload).
pub trait Parts: Send + Sync + 'static {
    fn build(&self, config: &Arc<Config>) -> anyhow::Result<(Arc<dyn Checker>, Arc<dyn Sender>)>;

    /// The mailboxes to watch, with their secrets. One that cannot be read is left out (and
    /// logged): the others are still watched.
    fn mail(&self, _config: &Config) -> Vec<mail::MailLogin> {
        Vec::new()
    }

    /// The vault files and identity the checker reads (replica mode keeps them in step with
    /// the fleet database); `None` for parts without a vault.
    fn vault(&self) -> Option<(crate::vault::Vault, Arc<crate::vault::Identity>)> {
        None
    }
}

/// Tunables that are not user config.
#[derive(Clone, Debug)]
pub struct Limits {
    pub max_concurrent_checks: usize,
    pub max_concurrent_per_marketplace: usize,
    /// How long SIGTERM waits for in-flight checks.
    pub drain_deadline: Duration,
    /// Undelivered events older than this are given up (logged and counted).
    pub alert_max_age: Duration,
    pub retry_base: Duration,
    pub retry_cap: Duration,
    /// How often the dead-man's switch is pinged.
    pub heartbeat_every: Duration,
    /// Most status-listener connections served at once (see [`Limits::for_open_files`]).
    pub max_connections: usize,
}

/// Descriptors kept free of the status listener for everything else: the state database and
/// its journal, the vault reads of a reload, logs, signal and notify sockets, the runtime.
const FD_RESERVE: u64 = 192;

impl Limits {
    /// Sizes the status listener's connection cap to the open-file limit in force: checks
    /// (one socket each, plus pooled ones) and deliveries (one per channel worker) keep theirs,
    /// and the listener gets at most half of what is left, never more than 1,024. Under the
    /// usual soft limit of 1,024 that is 256 connections; a flood of idle clients can then no
    /// longer starve a reload, a delivery or a check of descriptors.
    pub fn for_open_files(mut self, nofile: u64) -> Limits {
        let checks = 2 * (self.max_concurrent_checks as u64);
        let spare = nofile.saturating_sub(FD_RESERVE + checks + 64);
        self.max_connections = (spare / 2).clamp(16, 1024) as usize;
        self
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_concurrent_checks: 128,
            max_concurrent_per_marketplace: 64,
            drain_deadline: Duration::from_secs(10),
            alert_max_age: Duration::from_secs(24 * 3600),
            retry_base: Duration::from_secs(5),
            retry_cap: Duration::from_secs(600),
            heartbeat_every: Duration::from_secs(60),
            max_connections: 1024,
        }
    }
}

/// What the daemon keeps in memory per store.
#[derive(Clone, Debug, Default)]
pub struct StoreMem {
    pub health: StoreHealth,
    pub last: Option<Outcome>,
    pub backoff: Backoff,
    pub next_due: Option<DateTime<Utc>>,
}

impl StoreMem {
    /// When the store is next checked: the next schedule firing, or, while a backoff is in
    /// force, the first firing at or after its end (the scheduler skips firings inside it).
    pub fn next_check(
        &self,
        store: &Store,
        tz: crate::zone::Zone,
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        let mut due = self.next_due?;
        let Some(until) = self.backoff.until.filter(|u| *u > now) else {
            return Some(due);
        };
        // At most one firing a second, inside a backoff of at most MAX_BACKOFF.
        for _ in 0..=MAX_BACKOFF.as_secs() {
            if due >= until {
                return Some(due);
            }
            due = crate::schedule::next_due(&store.schedule, tz, &store.id, due)?;
        }
        Some(until)
    }
}

/// The live parts, swapped as a whole on reload.
pub struct Live {
    pub config: Arc<Config>,
    pub probe: Arc<dyn Checker>,
    pub sender: Arc<dyn Sender>,
    pub rules: Rules,
    /// Enabled stores per marketplace (the denominator of marketplace-wide grouping).
    pub enabled_per_marketplace: HashMap<Marketplace, usize>,
}

impl Live {
    pub fn new(config: Arc<Config>, probe: Arc<dyn Checker>, sender: Arc<dyn Sender>) -> Self {
        let rules = Rules::from_config(&config.defaults);
        let mut enabled_per_marketplace = HashMap::new();
        for s in config.stores.iter().filter(|s| s.enabled) {
            *enabled_per_marketplace.entry(s.marketplace).or_insert(0) += 1;
        }
        Live {
            config,
            probe,
            sender,
            rules,
            enabled_per_marketplace,
        }
    }
}

/// Shared daemon state (the status listener reads it).
pub struct Shared {
    pub live: RwLock<Arc<Live>>,
    pub stores: Mutex<HashMap<String, StoreMem>>,
    /// Ids of the stores whose latest outcome is an outage (unreachable or rate limited):
    /// marketplace-wide grouping looks at these instead of every store on every check.
    /// Changed only while `stores` is locked, and always locked after it.
    outages: Mutex<HashSet<String>>,
    /// Finished checks waiting for their group commit.
    commits: commit::Commits,
    pub state: Arc<Backend>,
    pub clock: Arc<dyn Clock>,
    pub metrics: crate::web::metrics::Metrics,
    pub limits: Limits,
    pub api_token: RwLock<Option<secrecy::SecretString>>,
    /// The open alert about the state database, if writes are failing.
    fault_event: Mutex<Option<AlertEvent>>,
    /// The open alert about shard leases this replica lost (replica mode).
    lease_fault: Mutex<Option<AlertEvent>>,
    /// Ad-hoc silences (`storeguard silence`), store id → until.
    pub silences: Mutex<HashMap<String, DateTime<Utc>>>,
    check_now: mpsc::UnboundedSender<String>,
    outbox_kick: Notify,
    replan: Notify,
    /// A reload took effect: the mailbox watchers start again with its mailboxes and secrets.
    mail_restart: Notify,
    in_flight: Mutex<HashSet<String>>,
    /// Unix ms of the scheduler's last loop, for the watchdog and /healthz.
    pub heartbeat: AtomicI64,
    /// Every task the daemon starts, waited for (briefly) at shutdown.
    pub tasks: TaskTracker,
    /// Cancelled at shutdown: every long-running task watches it.
    pub cancel: CancellationToken,
}

impl Shared {
    pub fn live(&self) -> Arc<Live> {
        self.live.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Asks for a check of `store_id` now. False when the store is unknown.
    pub fn check_now(&self, store_id: &str) -> bool {
        if self.live().config.store(store_id).is_none() {
            return false;
        }
        self.check_now.send(store_id.to_string()).is_ok()
    }

    /// Whether the scheduler loop ran recently.
    pub fn scheduler_alive(&self, now: DateTime<Utc>) -> bool {
        now.timestamp_millis() - self.heartbeat.load(Ordering::Relaxed) < 120_000
    }
}

/// How a daemon runs: its clock, limits and API token.
pub struct Options {
    pub clock: Arc<dyn Clock>,
    pub limits: Limits,
    pub api_token: Option<secrecy::SecretString>,
    /// Dead-man's switch: pinged every minute while healthy, `<url>/fail` when not.
    pub heartbeat_url: Option<secrecy::SecretString>,
    /// Replica mode: the fleet database's password, when it asks for one.
    pub fleet_password: Option<secrecy::SecretString>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            clock: Arc::new(crate::clock::SystemClock),
            limits: Limits::default(),
            api_token: None,
            heartbeat_url: None,
            fleet_password: None,
        }
    }
}

/// Starts everything and runs until `shutdown` resolves.
/// Binds `[daemon] listen` for [`run`] / [`Daemon::start`].
pub async fn bind(config: &Config) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(config.daemon.listen)
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot listen on {}: {e}\n  help: another storeguard may be running; change [daemon] listen",
                config.daemon.listen
            )
        })
}

/// A running daemon, started by [`Daemon::start`].
pub struct Daemon {
    shared: Arc<Shared>,
    addr: std::net::SocketAddr,
    reload: mpsc::UnboundedSender<()>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Daemon {
    /// Starts a daemon on `listener` (bind port 0 for tests: no port is guessed) and returns
    /// once it is ready, or with the error that kept it from starting.
    pub async fn start(
        config: Arc<Config>,
        parts: Arc<dyn Parts>,
        options: Options,
        listener: tokio::net::TcpListener,
    ) -> anyhow::Result<Daemon> {
        let addr = listener.local_addr()?;
        let (reload, reload_rx) = mpsc::unbounded_channel();
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<Arc<Shared>>();
        let task = tokio::spawn(run(
            config,
            parts,
            options,
            listener,
            reload_rx,
            async move {
                let _ = stop_rx.await;
            },
            move |shared| {
                let _ = ready_tx.send(shared);
            },
        ));
        match ready_rx.await {
            Ok(shared) => Ok(Daemon {
                shared,
                addr,
                reload,
                stop: Some(stop),
                task,
            }),
            // Dropped unsent: `run` ended before it was ready.
            Err(_) => match task.await {
                Ok(Err(e)) => Err(e),
                Ok(Ok(())) => Err(anyhow::anyhow!("the daemon stopped before it was ready")),
                Err(e) => Err(anyhow::anyhow!("the daemon task failed: {e}")),
            },
        }
    }

    /// Everything the daemon holds (status, API, state).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// The address the status API listens on.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.addr
    }

    /// Re-reads the config and the vault, as SIGHUP does.
    pub fn reload(&self) {
        let _ = self.reload.send(());
    }

    /// Stops checking, drains what is in flight and returns how the daemon ended.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task
            .await
            .map_err(|e| anyhow::anyhow!("the daemon task failed: {e}"))?
    }
}

/// Runs a daemon on `listener` until `shutdown` resolves; `ready` is called once it is up.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    config: Arc<Config>,
    parts: Arc<dyn Parts>,
    options: Options,
    listener: tokio::net::TcpListener,
    reload: mpsc::UnboundedReceiver<()>,
    shutdown: impl std::future::Future<Output = ()> + Send,
    ready: impl FnOnce(Arc<Shared>) + Send,
) -> anyhow::Result<()> {
    let Options {
        clock,
        limits,
        api_token,
        heartbeat_url,
        fleet_password,
    } = options;
    let (state, replica) = match fleet::open(&config, fleet_password).await? {
        Some((backend, replica)) => (Arc::new(backend), Some(replica)),
        None => (
            Arc::new(Backend::Sqlite(State::open(&config.daemon.state_dir)?)),
            None,
        ),
    };
    state.quick_check()?;
    let (probe, sender) = parts.build(&config)?;
    let vault = parts.vault();
    if let (Backend::Fleet(_), Some((files, _))) = (state.as_ref(), &vault) {
        probe.set_token_mirror(Arc::new(fleet::Tokens::new(state.clone(), files.clone())));
    }
    let mut mem = HashMap::new();
    let started = clock.now();
    for row in state.load_stores()? {
        mem.insert(
            row.store_id.clone(),
            StoreMem {
                health: row.health,
                last: row.last_outcome,
                // Written by a clock that may have been ahead of this one.
                backoff: Backoff {
                    until: row.backoff_until,
                    level: row.backoff_level,
                }
                .bounded(started),
                next_due: None,
            },
        );
    }
    for (id, m) in &mem {
        if let Some(last) = &m.last {
            probe.remember(id, &last.facts);
        }
    }
    let silences = state.silences(clock.now())?;
    let (check_tx, check_rx) = mpsc::unbounded_channel();
    let outages = mem
        .iter()
        .filter(|(_, m)| m.last.as_ref().is_some_and(health::is_outage))
        .map(|(id, _)| id.clone())
        .collect();
    let shared = Arc::new(Shared {
        live: RwLock::new(Arc::new(Live::new(config.clone(), probe, sender))),
        stores: Mutex::new(mem),
        outages: Mutex::new(outages),
        commits: commit::Commits::default(),
        state,
        clock: clock.clone(),
        metrics: crate::web::metrics::Metrics::default(),
        limits,
        api_token: RwLock::new(api_token),
        silences: Mutex::new(silences),
        fault_event: Mutex::new(None),
        lease_fault: Mutex::new(None),
        check_now: check_tx,
        outbox_kick: Notify::new(),
        replan: Notify::new(),
        mail_restart: Notify::new(),
        in_flight: Mutex::new(HashSet::new()),
        heartbeat: AtomicI64::new(clock.now().timestamp_millis()),
        tasks: TaskTracker::new(),
        cancel: CancellationToken::new(),
    });

    let cancel = shared.cancel.clone();
    let tracker = shared.tasks.clone();

    // The address the listener was given (`listen = "127.0.0.1:0"` picks a free port).
    let listening = listener
        .local_addr()
        .map_or_else(|_| config.daemon.listen.to_string(), |a| a.to_string());
    tracker.spawn(mail::supervise(
        shared.clone(),
        parts.clone(),
        cancel.clone(),
    ));
    tracker.spawn(crate::web::serve(listener, shared.clone(), cancel.clone()));
    tracker.spawn(deliver_loop(shared.clone(), cancel.clone()));
    tracker.spawn(reload_loop(shared.clone(), parts, reload, cancel.clone()));
    tracker.spawn(housekeeping(shared.clone(), cancel.clone()));
    if let Some(url) = heartbeat_url {
        tracker.spawn(heartbeat(shared.clone(), url, cancel.clone()));
    }
    if let Some(replica) = replica {
        tracker.spawn(fleet::lease_loop(
            shared.clone(),
            replica,
            vault,
            cancel.clone(),
        ));
    }
    let checks = TaskTracker::new();
    let sched = tokio::spawn(schedule_loop(
        shared.clone(),
        check_rx,
        cancel.clone(),
        checks.clone(),
    ));
    tracker.close();

    // Started with a configuration that loads: a rejected reload's alert is over.
    reload_incident(&shared, None, clock.now());
    ready(shared.clone());
    tracing::info!(
        stores = config.stores.iter().filter(|s| s.enabled).count(),
        channels = config.channels.len(),
        listen = %listening,
        "storeguard running"
    );

    shutdown.await;
    tracing::info!("shutting down: no new checks; waiting for in-flight ones");
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    cancel.cancel();
    let _ = sched.await;
    checks.close();
    if tokio::time::timeout(shared.limits.drain_deadline, checks.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            "in-flight checks did not finish within the drain deadline; they are abandoned (they will run again after restart)"
        );
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), tracker.wait()).await;
    tracing::info!("stopped");
    Ok(())
}
