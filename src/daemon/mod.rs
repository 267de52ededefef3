//! The daemon: schedules checks, runs them through the health machine into SQLite, delivers the
//! alert outbox, serves status and metrics, and reacts to signals.
//!
//! `run` takes its shutdown future and clock as parameters so tests can drive it. Reload
//! (SIGHUP) builds the new config, prober and channels first and swaps them in only when all of
//! that succeeded; otherwise the old ones keep running.

pub mod api;
pub mod metrics;
pub mod page;

use crate::alert::Delivery;
use crate::clock::{BoxFuture, Clock};
use crate::config::{Config, Store};
use crate::event::AlertEvent;
use crate::health::MAX_BACKOFF;
use crate::health::{self, Rules, StoreHealth, StoreRef};
use crate::model::Marketplace;
use crate::outcome::{FindingKind, Outcome};
use crate::route::Routed;
use crate::state::{Backoff, State};
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
        tz: chrono_tz::Tz,
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
    pub state: Arc<State>,
    pub clock: Arc<dyn Clock>,
    pub metrics: metrics::Metrics,
    pub limits: Limits,
    pub api_token: RwLock<Option<secrecy::SecretString>>,
    /// The open alert about the state database, if writes are failing.
    fault_event: Mutex<Option<AlertEvent>>,
    /// Ad-hoc silences (`storeguard silence`), store id → until.
    pub silences: Mutex<HashMap<String, DateTime<Utc>>>,
    check_now: mpsc::UnboundedSender<String>,
    outbox_kick: Notify,
    replan: Notify,
    in_flight: Mutex<HashSet<String>>,
    /// Unix ms of the scheduler's last loop, for the watchdog and /healthz.
    pub heartbeat: AtomicI64,
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
}

impl Default for Options {
    fn default() -> Self {
        Options {
            clock: Arc::new(crate::clock::SystemClock),
            limits: Limits::default(),
            api_token: None,
            heartbeat_url: None,
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
    } = options;
    let state = Arc::new(State::open(&config.daemon.state_dir)?);
    state.quick_check()?;
    let (probe, sender) = parts.build(&config)?;
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
        state,
        clock: clock.clone(),
        metrics: metrics::Metrics::default(),
        limits,
        api_token: RwLock::new(api_token),
        silences: Mutex::new(silences),
        fault_event: Mutex::new(None),
        check_now: check_tx,
        outbox_kick: Notify::new(),
        replan: Notify::new(),
        in_flight: Mutex::new(HashSet::new()),
        heartbeat: AtomicI64::new(clock.now().timestamp_millis()),
    });

    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();

    tracker.spawn(api::serve(listener, shared.clone(), cancel.clone()));
    tracker.spawn(deliver_loop(shared.clone(), cancel.clone()));
    tracker.spawn(reload_loop(shared.clone(), parts, reload, cancel.clone()));
    tracker.spawn(housekeeping(shared.clone(), cancel.clone()));
    if let Some(url) = heartbeat_url {
        tracker.spawn(heartbeat(shared.clone(), url, cancel.clone()));
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
        listen = %config.daemon.listen,
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

fn plan(shared: &Shared, now: DateTime<Utc>) -> BinaryHeap<Reverse<(DateTime<Utc>, String)>> {
    let live = shared.live();
    let mut heap = BinaryHeap::new();
    let mut mem = shared.stores.lock().unwrap_or_else(|e| e.into_inner());
    for store in live.config.stores.iter().filter(|s| s.enabled) {
        let due =
            crate::schedule::next_due(&store.schedule, live.config.daemon.timezone, &store.id, now);
        let entry = mem.entry(store.id.clone()).or_default();
        entry.next_due = due;
        if let Some(due) = due {
            heap.push(Reverse((due, store.id.clone())));
        }
    }
    heap
}

async fn schedule_loop(
    shared: Arc<Shared>,
    mut check_rx: mpsc::UnboundedReceiver<String>,
    cancel: CancellationToken,
    checks: TaskTracker,
) {
    let limits = shared.limits.clone();
    let global = Arc::new(Semaphore::new(limits.max_concurrent_checks));
    let per_market: Arc<BTreeMap<Marketplace, Arc<Semaphore>>> = Arc::new(
        Marketplace::ALL
            .into_iter()
            .map(|m| {
                (
                    m,
                    Arc::new(Semaphore::new(limits.max_concurrent_per_marketplace)),
                )
            })
            .collect(),
    );
    let mut now = shared.clock.now();
    let mut heap = plan(&shared, now);
    loop {
        shared
            .heartbeat
            .store(shared.clock.now().timestamp_millis(), Ordering::Relaxed);
        let next = heap.peek().map(|Reverse((t, _))| *t);
        let wake = next.unwrap_or(now + chrono::Duration::seconds(60));
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = shared.replan.notified() => {
                heap = plan(&shared, shared.clock.now());
                continue;
            }
            Some(id) = check_rx.recv() => {
                spawn_check(&shared, &checks, &global, &per_market, id, true);
                continue;
            }
            _ = shared.clock.sleep_until(wake) => {}
        }
        let t = shared.clock.now();
        if t + chrono::Duration::seconds(60) < now {
            // The clock went backwards: re-plan from the new "now" instead of waiting for
            // due times that are now far away.
            tracing::warn!("system clock moved backwards; re-planning the schedule");
            // Backoffs end as long after the new "now" as they did after the old one.
            let step = t - now;
            for m in shared
                .stores
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .values_mut()
            {
                m.backoff.until = m.backoff.until.map(|u| u + step);
                m.backoff = m.backoff.bounded(t);
            }
            heap = plan(&shared, t);
            now = t;
            continue;
        }
        now = t;
        let live = shared.live();
        while let Some(Reverse((due, _))) = heap.peek() {
            if *due > now {
                break;
            }
            let Reverse((_, id)) = heap.pop().expect("peeked");
            let Some(store) = live.config.store(&id).filter(|s| s.enabled) else {
                continue;
            };
            // Next firing after now: ticks missed while away are skipped, not replayed.
            let next_due =
                crate::schedule::next_due(&store.schedule, live.config.daemon.timezone, &id, now);
            let backoff_until = {
                let mut mem = shared.stores.lock().unwrap_or_else(|e| e.into_inner());
                let m = mem.entry(id.clone()).or_default();
                m.next_due = next_due;
                // A clock stepped back while storeguard was not looking (between two ticks).
                m.backoff = m.backoff.bounded(now);
                m.backoff.until
            };
            if let Some(n) = next_due {
                heap.push(Reverse((n, id.clone())));
            }
            if backoff_until.is_some_and(|u| u > now) {
                if live.probe.entry_changed(&id) {
                    // The seller fixed the key: no reason to wait out a backoff for the old one.
                    tracing::info!(store = %id, "vault entry changed: checking now, backoff lifted");
                    let mut mem = shared.stores.lock().unwrap_or_else(|e| e.into_inner());
                    if let Some(m) = mem.get_mut(&id) {
                        m.backoff = Backoff::default();
                    }
                } else {
                    shared
                        .metrics
                        .checks_skipped_backoff
                        .fetch_add(1, Ordering::Relaxed);
                    continue;
                }
            }
            spawn_check(&shared, &checks, &global, &per_market, id, false);
        }
    }
}

fn spawn_check(
    shared: &Arc<Shared>,
    checks: &TaskTracker,
    global: &Arc<Semaphore>,
    per_market: &Arc<BTreeMap<Marketplace, Arc<Semaphore>>>,
    store_id: String,
    manual: bool,
) {
    let Some(store) = shared.live().config.store(&store_id).cloned() else {
        return;
    };
    {
        let mut inflight = shared.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        if !inflight.insert(store_id.clone()) {
            return; // already being checked
        }
    }
    let shared = shared.clone();
    let global = global.clone();
    let market = per_market[&store.marketplace].clone();
    checks.spawn(async move {
        let _g = global.acquire_owned().await;
        let _m = market.acquire_owned().await;
        run_check(&shared, &store, manual).await;
        shared
            .in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&store.id);
    });
}

/// Probe → health → one SQLite transaction → memory. Memory advances only when the write
/// succeeded, so a failed write (disk full) loses no event: the next check derives it again.
/// The post-probe part runs under the store-map lock, so marketplace-wide grouping sees a
/// consistent picture and two checks cannot both open the same grouped incident.
pub async fn run_check(shared: &Shared, store: &Store, manual: bool) {
    let live = shared.live();
    let started = shared.clock.now();
    let Some(outcome) = live.probe.check(&store.id, started).await else {
        return;
    };
    let now = shared.clock.now();
    let mut mem = shared.stores.lock().unwrap_or_else(|e| e.into_inner());
    let prev = mem.get(&store.id).cloned().unwrap_or_default();
    let group_id = crate::event::Subject::Marketplace(store.marketplace)
        .key()
        .into_owned();
    // Only stores whose latest outcome is an outage can count towards the group: those, in
    // config order, instead of every peer of the marketplace.
    let candidates: Vec<&Store> = {
        let outages = shared.outages.lock().unwrap_or_else(|e| e.into_inner());
        let mut at: Vec<usize> = outages
            .iter()
            .chain(std::iter::once(&store.id))
            .filter_map(|id| live.config.store_position(id))
            .collect();
        at.sort_unstable();
        at.dedup();
        at.into_iter()
            .map(|i| &live.config.stores[i])
            .filter(|s| s.enabled && s.marketplace == store.marketplace)
            .collect()
    };
    let peers: Vec<health::Peer<'_>> = candidates
        .iter()
        .filter_map(|s| match mem.get(&s.id) {
            Some(m) => Some(health::Peer {
                id: &s.id,
                last: m.last.as_ref(),
                health: &m.health,
            }),
            // This store before its first check: `step` puts the new outcome in its place.
            None if s.id == store.id => Some(health::Peer {
                id: &s.id,
                last: None,
                health: &prev.health,
            }),
            None => None,
        })
        .collect();
    let no_group = StoreHealth::default();
    let silenced = shared
        .silences
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&store.id)
        .copied();
    let picture = health::Picture {
        store: StoreRef {
            id: &store.id,
            name: &store.name,
            marketplace: store.marketplace,
        },
        health: &prev.health,
        backoff: prev.backoff,
        peers: &peers,
        marketplace_stores: live
            .enabled_per_marketplace
            .get(&store.marketplace)
            .copied()
            .unwrap_or(0),
        group: mem.get(&group_id).map_or(&no_group, |m| &m.health),
        held_until: crate::route::held_until(&live.config, store, silenced, now),
        // Stores of one sweep finish at different moments: a sweep's spread (jitter + probe
        // timeout).
        sweep_grace: chrono::Duration::from_std(
            (store.schedule.min_interval() / 10).min(Duration::from_secs(30)) + store.timeout,
        )
        .unwrap_or_default(),
        manual,
    };
    let health::Step {
        health,
        events,
        group,
        covered,
        backoff,
    } = health::step(&picture, &outcome, &live.rules, now);
    drop(peers);
    let routed: Vec<Routed> = events
        .into_iter()
        .map(|d| Routed {
            channels: if d.alone {
                crate::route::channels_for(&live.config, &d.event)
            } else {
                Vec::new()
            },
            event: d.event,
            hold_until: d.hold_until,
        })
        .collect();
    let mut extra: Vec<(&str, &StoreHealth)> =
        covered.iter().map(|(id, h)| (id.as_str(), h)).collect();
    if let Some(g) = &group {
        extra.push((group_id.as_str(), g));
    }
    let write = shared
        .state
        .record_check(&outcome, &health, &routed, backoff, &extra);
    shared.metrics.record_check(&outcome);
    match write {
        Ok(()) => {
            if shared.metrics.state_fault.swap(false, Ordering::Relaxed) {
                tracing::info!("state database writable again");
                fault_alert(shared, &live, None, now);
            }
            for r in &routed {
                tracing::info!(
                    store = %r.event.subject.key(),
                    event = r.event.event.as_str(),
                    finding = r.event.finding.as_str(),
                    channels = r.channels.len(),
                    held = r.hold_until.is_some(),
                    "incident {}",
                    r.event.event.as_str()
                );
            }
            note_outage(shared, &store.id, &outcome);
            let m = mem.entry(store.id.clone()).or_default();
            m.health = health;
            m.last = Some(outcome);
            m.backoff = backoff;
            if let Some(g) = group {
                mem.entry(group_id).or_default().health = g;
            }
            for (id, h) in covered {
                mem.entry(id).or_default().health = h;
            }
            drop(mem);
            if routed.iter().any(|r| !r.channels.is_empty()) {
                shared.outbox_kick.notify_one();
            }
        }
        Err(e) => {
            shared
                .metrics
                .state_write_errors
                .fetch_add(1, Ordering::Relaxed);
            let first = !shared.metrics.state_fault.swap(true, Ordering::Relaxed);
            tracing::error!(store = %store.id, disk_full = e.is_disk_full(), "cannot record the check: {e}");
            if first {
                let what = if e.is_disk_full() {
                    "the disk is full"
                } else {
                    "a write failed"
                };
                fault_alert(
                    shared,
                    &live,
                    Some(format!(
                        "the state database cannot be written ({what}); checks go on, but login history and alerts are not recorded until there is room"
                    )),
                    now,
                );
            }
            // Keep the outcome visible in status, but not the health transition.
            note_outage(shared, &store.id, &outcome);
            mem.entry(store.id.clone()).or_default().last = Some(outcome);
        }
    }
}

/// Alerts about the state database go straight to the default channels: the outbox lives in
/// that database and cannot take them. `Some(detail)` opens the fault, `None` resolves it.
fn fault_alert(shared: &Shared, live: &Live, detail: Option<String>, now: DateTime<Utc>) {
    let mut slot = shared.fault_event.lock().unwrap_or_else(|e| e.into_inner());
    let event = match detail {
        Some(d) => {
            let e = daemon_event(&d, now);
            *slot = Some(e.clone());
            e
        }
        None => {
            let Some(mut e) = slot.take() else { return };
            e.event = crate::event::EventKind::Resolved;
            e.event_id = health::event_id(&e.incident_id, crate::event::EventKind::Resolved, 0);
            e.created_at = now;
            e
        }
    };
    let channels = crate::route::channels_for(&live.config, &event);
    let sender = live.sender.clone();
    let clock = shared.clock.clone();
    tokio::spawn(async move {
        for channel in channels {
            for _ in 0..3 {
                match sender.send(&channel, &event, clock.now()).await {
                    Delivery::Delivered | Delivery::Permanent(_) => break,
                    Delivery::Retry(after) => {
                        tokio::time::sleep(
                            after
                                .unwrap_or(Duration::from_secs(2))
                                .min(Duration::from_secs(10)),
                        )
                        .await
                    }
                }
            }
        }
    });
}

/// Keeps `Shared::outages` in step with a store's latest outcome (`stores` must be locked).
fn note_outage(shared: &Shared, store_id: &str, outcome: &Outcome) {
    let mut outages = shared.outages.lock().unwrap_or_else(|e| e.into_inner());
    if health::is_outage(outcome) {
        if !outages.contains(store_id) {
            outages.insert(store_id.to_string());
        }
    } else {
        outages.remove(store_id);
    }
}

fn retry_delay(limits: &Limits, attempts: u32, asked: Option<Duration>) -> Duration {
    let exp = limits
        .retry_base
        .saturating_mul(2u32.saturating_pow(attempts.min(16)))
        .min(limits.retry_cap);
    match asked {
        Some(a) => a.min(Duration::from_secs(3600)).max(Duration::from_secs(1)),
        None => exp,
    }
}

async fn deliver_loop(shared: Arc<Shared>, cancel: CancellationToken) {
    // One worker per channel with pending alerts: a channel that accepts the connection and
    // never answers costs its own timeout per alert and delays no other channel. Each worker
    // delivers its channel's rows one at a time, oldest first, so per-channel, per-store order
    // holds as before.
    let workers = TaskTracker::new();
    let busy: Arc<Mutex<HashSet<String>>> = Arc::default();
    loop {
        if cancel.is_cancelled() {
            break;
        }
        let now = shared.clock.now();
        let pending = match shared.state.pending_channels() {
            Ok(p) => p,
            Err(e) => {
                tracing::error!("cannot read the alert outbox: {e}");
                Vec::new()
            }
        };
        let mut wake = now + chrono::Duration::seconds(30);
        for (channel, due) in pending {
            let mut running = busy.lock().unwrap_or_else(|e| e.into_inner());
            if running.contains(&channel) {
                continue;
            }
            if due <= now {
                running.insert(channel.clone());
                workers.spawn(channel_worker(
                    shared.clone(),
                    channel,
                    cancel.clone(),
                    busy.clone(),
                ));
            } else {
                wake = wake.min(due);
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            // New rows, or a worker that finished (its channel may have more later).
            _ = shared.outbox_kick.notified() => {}
            _ = shared.clock.sleep_until(wake) => {}
        }
    }
    workers.close();
    workers.wait().await;
}

/// Delivers one channel's due rows until none is due, then leaves (the loop above starts a
/// new worker when more become due).
async fn channel_worker(
    shared: Arc<Shared>,
    channel: String,
    cancel: CancellationToken,
    busy: Arc<Mutex<HashSet<String>>>,
) {
    loop {
        if cancel.is_cancelled() {
            break;
        }
        let now = shared.clock.now();
        let rows = match shared.state.due_outbox_for(Some(&channel), now, 200) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!("cannot read the alert outbox: {e}");
                Vec::new()
            }
        };
        if rows.is_empty() {
            break;
        }
        let live = shared.live();
        for row in &rows {
            if cancel.is_cancelled() {
                break;
            }
            deliver_row(&shared, &live, row).await;
        }
    }
    busy.lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&channel);
    shared.outbox_kick.notify_one();
}

/// One attempt at one outbox row, and its bookkeeping.
async fn deliver_row(shared: &Arc<Shared>, live: &Live, row: &crate::state::OutboxRow) {
    let now = shared.clock.now();
    let age = (now - row.created_at).to_std().unwrap_or_default();
    // An old row is still sent while it says something true: an `opened` of an incident still
    // open, a `resolved` whose opening reached the channel (a receiver would otherwise keep the
    // incident open for ever). So a long outage of the channel, or a clock that jumps a day
    // ahead, never leaves a reminder of an incident the receiver was not told about. A week
    // past the cap, a row is given up whatever it says.
    let hard_cap = shared.limits.alert_max_age.saturating_mul(7);
    if age > hard_cap || (age > shared.limits.alert_max_age && !still_relevant(shared, row)) {
        tracing::warn!(
            channel = %row.channel,
            event_id = %row.event.event_id,
            store = %row.event.subject.key(),
            attempts = row.attempts,
            "giving up on an alert older than {}",
            crate::duration::format(shared.limits.alert_max_age)
        );
        shared.metrics.alert(&row.channel, "gave_up");
        let _ = shared.state.mark_gave_up(row.seq, now, "too old");
        return;
    }
    if row.held && !still_relevant(shared, row) {
        shared
            .metrics
            .alert(&row.channel, "dropped_after_maintenance");
        let _ = shared
            .state
            .mark_gave_up(row.seq, now, "held for maintenance; no longer relevant");
        return;
    }
    let verdict = live.sender.send(&row.channel, &row.event, now).await;
    let now = shared.clock.now();
    let result = match verdict {
        Delivery::Delivered => {
            shared.metrics.alert(&row.channel, "delivered");
            shared.state.mark_delivered(row.seq, now)
        }
        Delivery::Retry(after) => {
            shared.metrics.alert(&row.channel, "retry");
            let wait = retry_delay(&shared.limits, row.attempts, after);
            tracing::debug!(channel = %row.channel, event_id = %row.event.event_id, "delivery will be retried in {}", crate::duration::format(wait));
            shared.state.mark_retry(
                row.seq,
                now + chrono::Duration::from_std(wait).unwrap_or_default(),
                "retry",
            )
        }
        Delivery::Permanent(reason) => {
            shared.metrics.alert(&row.channel, "gave_up");
            tracing::warn!(channel = %row.channel, event_id = %row.event.event_id, "channel refused the alert for good: {reason}");
            shared.state.mark_gave_up(row.seq, now, &reason)
        }
    };
    if let Err(e) = result {
        tracing::error!("cannot update the alert outbox: {e}");
    }
}

/// At the end of a maintenance window: an incident still open is notified; reminders held in
/// the window are dropped; a resolution is sent only where its opening was.
fn still_relevant(shared: &Shared, row: &crate::state::OutboxRow) -> bool {
    use crate::event::EventKind;
    let state = &shared.state;
    let id = &row.event.incident_id;
    match row.event.event {
        EventKind::Opened => {
            // Covered by a grouped incident meanwhile: the group speaks for it.
            let grouped = shared
                .stores
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(row.event.subject.key().as_ref())
                .and_then(|m| m.health.open.get(&row.event.finding))
                .is_some_and(|i| i.id == *id && i.grouped);
            !grouped && state.incident_open(id).unwrap_or(true)
        }
        EventKind::Reminder => false,
        EventKind::Resolved => state.opened_delivered(id, &row.channel).unwrap_or(true),
    }
}

/// Silences a store's notifications for `duration` (the `silence` API).
pub fn silence(
    shared: &Shared,
    store_id: &str,
    duration: Duration,
) -> Result<DateTime<Utc>, String> {
    if shared.live().config.store(store_id).is_none() {
        return Err(format!("no store `{store_id}`"));
    }
    let until =
        shared.clock.now() + chrono::Duration::from_std(duration).map_err(|e| e.to_string())?;
    shared
        .state
        .set_silence(store_id, until)
        .map_err(|e| e.to_string())?;
    shared
        .silences
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(store_id.to_string(), until);
    tracing::info!(store = store_id, until = %until, "notifications silenced");
    Ok(until)
}

async fn reload_loop(
    shared: Arc<Shared>,
    parts: Arc<dyn Parts>,
    mut reload: mpsc::UnboundedReceiver<()>,
    cancel: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            r = reload.recv() => if r.is_none() { return },
        }
        let previous = shared.live().config.clone();
        let path = previous.path.clone();
        let result = Config::load(&path)
            .map_err(|e| anyhow::anyhow!("{e}"))
            .and_then(|c| {
                check_reload(&previous, &c)?;
                let c = Arc::new(c);
                let (probe, sender) = parts.build(&c)?;
                Ok((c, probe, sender))
            });
        match result {
            Ok((config, probe, sender)) => {
                *shared.live.write().unwrap_or_else(|e| e.into_inner()) =
                    Arc::new(Live::new(config.clone(), probe, sender));
                shared.metrics.reloads_ok.fetch_add(1, Ordering::Relaxed);
                shared.replan.notify_one();
                reload_incident(&shared, None, shared.clock.now());
                tracing::info!(stores = config.stores.len(), "configuration reloaded");
            }
            Err(e) => {
                shared
                    .metrics
                    .reloads_failed
                    .fetch_add(1, Ordering::Relaxed);
                tracing::error!(
                    "configuration reload rejected; the previous configuration keeps running:\n{e:#}"
                );
                let detail = format!(
                    "configuration reload rejected, previous configuration still running: {e:#}"
                );
                reload_incident(&shared, Some(&detail), shared.clock.now());
            }
        }
    }
}

/// Refuses a reload that would silently stop the monitoring: a config with no stores, no
/// enabled store, or no channel, where the running one has them. A file cut short after
/// `[daemon]` (a save on a full disk, a bad copy) is valid TOML and passes `config check`.
pub fn check_reload(previous: &Config, next: &Config) -> anyhow::Result<()> {
    let enabled = |c: &Config| c.stores.iter().filter(|s| s.enabled).count();
    let problem = if !previous.stores.is_empty() && next.stores.is_empty() {
        Some(format!(
            "the new configuration has no [[store]] (the running one has {})",
            previous.stores.len()
        ))
    } else if enabled(previous) > 0 && enabled(next) == 0 {
        Some(format!(
            "every store is disabled in the new configuration (the running one checks {})",
            enabled(previous)
        ))
    } else if !previous.channels.is_empty() && next.channels.is_empty() {
        Some(format!(
            "the new configuration has no [[channel]] (the running one has {})",
            previous.channels.len()
        ))
    } else {
        None
    };
    match problem {
        Some(p) => Err(anyhow::anyhow!(
            "{p}: monitoring would stop, so it is not loaded
  help: check that {} was saved whole; to stop monitoring on purpose, stop the service",
            crate::outcome::sanitize(&next.path.display().to_string(), 200)
        )),
        None => Ok(()),
    }
}

/// The incident of a rejected reload. `Some(detail)`: a reload was rejected; it opens the
/// incident, or updates the detail of the one already open (no second alert for the same
/// state of affairs). `None`: a configuration loaded (a good reload, or a start), which
/// resolves every such incident still open, on the channels its opening went to.
fn reload_incident(shared: &Shared, problem: Option<&str>, now: DateTime<Utc>) {
    use crate::event::{EventKind, Subject};
    let live = shared.live();
    let open: Vec<crate::state::IncidentRow> = match shared
        .state
        .incidents(crate::event::DAEMON_KEY, 64)
    {
        Ok(rows) => rows
            .into_iter()
            .filter(|i| i.resolved_at.is_none() && i.finding == FindingKind::DaemonFault.as_str())
            .collect(),
        Err(e) => {
            tracing::error!("cannot read storeguard's own incidents: {e}");
            return;
        }
    };
    let routed: Vec<Routed> = match problem {
        Some(detail) => match open.first() {
            Some(inc) => {
                let mut e = daemon_event(detail, inc.opened_at);
                e.incident_id = inc.incident_id.clone();
                e.event = EventKind::Reminder;
                e.event_id = health::event_id(&inc.incident_id, EventKind::Reminder, 0);
                e.created_at = now;
                // No channel: the open alert already says a reload is refused.
                vec![Routed {
                    event: e,
                    channels: Vec::new(),
                    hold_until: None,
                }]
            }
            None => {
                let event = daemon_event(detail, now);
                let channels = crate::route::channels_for(&live.config, &event);
                vec![Routed {
                    event,
                    channels,
                    hold_until: None,
                }]
            }
        },
        None => open
            .iter()
            .map(|inc| {
                let event = AlertEvent {
                    event_id: health::event_id(&inc.incident_id, EventKind::Resolved, 0),
                    event: EventKind::Resolved,
                    incident_id: inc.incident_id.clone(),
                    subject: Subject::Daemon,
                    severity: crate::model::Severity::Warning,
                    finding: FindingKind::DaemonFault,
                    detail: inc.detail.clone(),
                    opened_at: inc.opened_at,
                    created_at: now,
                    affected: Vec::new(),
                    test: false,
                };
                let opened = health::event_id(&inc.incident_id, EventKind::Opened, 0);
                let mut channels: Vec<String> = shared
                    .state
                    .channels_of(&opened)
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|c| live.config.channel(c).is_some())
                    .collect();
                if channels.is_empty() {
                    channels = crate::route::channels_for(&live.config, &event);
                }
                tracing::info!(
                    "the configuration loads again: storeguard's reload alert is resolved"
                );
                Routed {
                    event,
                    channels,
                    hold_until: None,
                }
            })
            .collect(),
    };
    if routed.is_empty() {
        return;
    }
    if let Err(e) = shared.state.record_events(&routed) {
        tracing::error!("cannot queue the reload alert: {e}");
    }
    shared.outbox_kick.notify_one();
}

/// An alert about storeguard itself (a rejected reload, a state file it cannot write).
fn daemon_event(detail: &str, now: DateTime<Utc>) -> AlertEvent {
    let first_line = crate::outcome::sanitize(detail.lines().next().unwrap_or(""), 300);
    let incident = health::incident_id(crate::event::DAEMON_KEY, FindingKind::DaemonFault, now);
    AlertEvent {
        event_id: health::event_id(&incident, crate::event::EventKind::Opened, 0),
        event: crate::event::EventKind::Opened,
        incident_id: incident,
        subject: crate::event::Subject::Daemon,
        severity: crate::model::Severity::Warning,
        finding: FindingKind::DaemonFault,
        detail: first_line,
        opened_at: now,
        created_at: now,
        affected: Vec::new(),
        test: false,
    }
}

/// Dead-man's switch, healthchecks-style: a ping every minute while the scheduler runs and the
/// state database takes writes, `<url>/fail` with a short reason otherwise. At most 3 tries of
/// 10 s each per minute; the URL (a secret) never reaches a log line.
async fn heartbeat(shared: Arc<Shared>, url: secrecy::SecretString, cancel: CancellationToken) {
    use secrecy::ExposeSecret;
    let Ok(client) = crate::http::client_builder(Duration::from_secs(10)).build() else {
        return;
    };
    let base = url.expose_secret().trim_end_matches('/').to_string();
    if url::Url::parse(&base).map_or(true, |u| crate::http::check_url(&u).is_err()) {
        tracing::error!(
            "heartbeat_url is not an https URL (plain http only to loopback); the dead-man's switch is off"
        );
        return;
    }
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = crate::clock::sleep_for(&*shared.clock, shared.limits.heartbeat_every) => {}
        }
        let now = shared.clock.now();
        let fault = if !shared.scheduler_alive(now) {
            Some("scheduler stalled")
        } else if shared.metrics.state_fault.load(Ordering::Relaxed) {
            Some("state database not writable")
        } else {
            None
        };
        for attempt in 0..3 {
            let req = match fault {
                None => client.get(&base),
                Some(reason) => client.post(format!("{base}/fail")).body(reason),
            };
            match req.send().await {
                Ok(r) if r.status().is_success() => break,
                Ok(r) => tracing::warn!(
                    status = r.status().as_u16(),
                    attempt,
                    "heartbeat ping refused"
                ),
                Err(e) => tracing::warn!(
                    attempt,
                    "heartbeat ping failed: {}",
                    crate::http::HttpError::from_reqwest(e)
                ),
            }
        }
    }
}

/// Prunes and compacts old history once an hour.
async fn housekeeping(shared: Arc<Shared>, cancel: CancellationToken) {
    loop {
        let retention = shared.live().config.daemon.history_retention;
        // A cutoff before the calendar begins keeps everything (never "now": that would
        // delete all history).
        let before = crate::duration::before(shared.clock.now(), retention)
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        match shared.state.prune(before) {
            Ok(n) if n > 0 => {
                tracing::info!(rows = n, "pruned login history older than the retention")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("cannot prune history: {e}"),
        }
        // Raw login records older than a week fold into daily runs (see `State::compact`).
        match shared.state.compact(shared.clock.now()) {
            Ok(c) if c.checks > 0 => {
                tracing::info!(
                    records = c.checks,
                    runs = c.runs,
                    "compacted old login history"
                )
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("cannot compact history: {e}"),
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = crate::clock::sleep_for(&*shared.clock, Duration::from_secs(3600)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delay_is_capped_and_honours_retry_after() {
        let l = Limits::default();
        assert_eq!(retry_delay(&l, 0, None), Duration::from_secs(5));
        assert_eq!(retry_delay(&l, 3, None), Duration::from_secs(40));
        assert_eq!(retry_delay(&l, 30, None), Duration::from_secs(600));
        assert_eq!(
            retry_delay(&l, 0, Some(Duration::from_secs(17))),
            Duration::from_secs(17)
        );
        assert_eq!(
            retry_delay(&l, 0, Some(Duration::from_secs(999_999_999))),
            Duration::from_secs(3600)
        );
    }
}
