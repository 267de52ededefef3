//! Counters and the Prometheus text exposition of `/metrics`.

use super::Shared;
use crate::outcome::{Outcome, Status};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

#[derive(Default)]
pub struct Metrics {
    checks: Mutex<BTreeMap<&'static str, u64>>,
    alerts: Mutex<BTreeMap<(String, &'static str), u64>>,
    pub checks_skipped_backoff: AtomicU64,
    pub state_write_errors: AtomicU64,
    /// Transactions that recorded finished checks (group commit: several checks share one).
    pub state_commits: AtomicU64,
    pub state_fault: AtomicBool,
    pub reloads_ok: AtomicU64,
    pub reloads_failed: AtomicU64,
}

impl Metrics {
    pub fn record_check(&self, o: &Outcome) {
        *self
            .checks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(o.status.as_str())
            .or_default() += 1;
    }

    pub fn alert(&self, channel: &str, result: &'static str) {
        *self
            .alerts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry((channel.to_string(), result))
            .or_default() += 1;
    }

    pub fn checks_total(&self) -> u64 {
        self.checks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .sum()
    }
}

/// Escapes a label value (ids are validated, but names of channels come from config).
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// A metric without labels: its help, type and one value.
fn single(out: &mut String, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
    header(out, name, kind, help);
    let _ = writeln!(out, "{name} {value}");
}

/// Renders every metric in the Prometheus text format.
pub fn render(shared: &Shared) -> String {
    let live = shared.live();
    let now = shared.clock.now();
    let mem = shared
        .stores
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let mut out = String::with_capacity(256 + live.config.stores.len() * 600);
    let stores: Vec<_> = live.config.stores.iter().filter(|s| s.enabled).collect();

    header(
        &mut out,
        "storeguard_store_up",
        "gauge",
        "1 when the store's last check proved the login works (OK or WARNING).",
    );
    for s in &stores {
        let up = mem
            .get(&s.id)
            .and_then(|m| m.last.as_ref())
            .is_some_and(|o| matches!(o.status, Status::Ok | Status::Warning));
        let _ = writeln!(
            out,
            "storeguard_store_up{{store=\"{}\",marketplace=\"{}\"}} {}",
            label(&s.id),
            s.marketplace,
            u8::from(up)
        );
    }
    header(
        &mut out,
        "storeguard_store_status",
        "gauge",
        "Last check status: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.",
    );
    for s in &stores {
        if let Some(o) = mem.get(&s.id).and_then(|m| m.last.as_ref()) {
            let _ = writeln!(
                out,
                "storeguard_store_status{{store=\"{}\",marketplace=\"{}\"}} {}",
                label(&s.id),
                s.marketplace,
                o.status.exit_code()
            );
        }
    }
    header(
        &mut out,
        "storeguard_store_last_check_timestamp_seconds",
        "gauge",
        "Unix time of the store's last check.",
    );
    for s in &stores {
        if let Some(o) = mem.get(&s.id).and_then(|m| m.last.as_ref()) {
            let _ = writeln!(
                out,
                "storeguard_store_last_check_timestamp_seconds{{store=\"{}\",marketplace=\"{}\"}} {}",
                label(&s.id),
                s.marketplace,
                o.checked_at.timestamp()
            );
        }
    }
    header(
        &mut out,
        "storeguard_store_check_latency_seconds",
        "gauge",
        "Latency of the store's last check.",
    );
    for s in &stores {
        if let Some(o) = mem.get(&s.id).and_then(|m| m.last.as_ref()) {
            let _ = writeln!(
                out,
                "storeguard_store_check_latency_seconds{{store=\"{}\",marketplace=\"{}\"}} {:.3}",
                label(&s.id),
                s.marketplace,
                o.facts.latency_ms as f64 / 1000.0
            );
        }
    }
    header(
        &mut out,
        "storeguard_store_credential_expiry_seconds",
        "gauge",
        "Seconds until the store's key or token expires (negative when expired).",
    );
    for s in &stores {
        if let Some(exp) = mem
            .get(&s.id)
            .and_then(|m| m.last.as_ref())
            .and_then(|o| o.facts.expires_at)
        {
            let _ = writeln!(
                out,
                "storeguard_store_credential_expiry_seconds{{store=\"{}\",marketplace=\"{}\"}} {}",
                label(&s.id),
                s.marketplace,
                (exp - now).num_seconds()
            );
        }
    }
    header(
        &mut out,
        "storeguard_store_open_incidents",
        "gauge",
        "Open incidents per store.",
    );
    for s in &stores {
        let n = mem.get(&s.id).map_or(0, |m| m.health.open.len());
        let _ = writeln!(
            out,
            "storeguard_store_open_incidents{{store=\"{}\",marketplace=\"{}\"}} {n}",
            label(&s.id),
            s.marketplace
        );
    }
    header(
        &mut out,
        "storeguard_checks_total",
        "counter",
        "Checks run since start, by status.",
    );
    {
        let checks = shared
            .metrics
            .checks
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for st in ["OK", "WARNING", "CRITICAL", "UNKNOWN"] {
            let _ = writeln!(
                out,
                "storeguard_checks_total{{status=\"{st}\"}} {}",
                checks.get(st).copied().unwrap_or(0)
            );
        }
    }
    single(
        &mut out,
        "storeguard_checks_skipped_backoff_total",
        "counter",
        "Scheduled checks skipped while a store backs off after a refusal or rate limit.",
        shared
            .metrics
            .checks_skipped_backoff
            .load(Ordering::Relaxed),
    );
    header(
        &mut out,
        "storeguard_alerts_total",
        "counter",
        "Alert delivery attempts by channel and result (delivered, retry, gave_up).",
    );
    {
        let alerts = shared
            .metrics
            .alerts
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for ((ch, result), n) in alerts.iter() {
            let _ = writeln!(
                out,
                "storeguard_alerts_total{{channel=\"{}\",result=\"{result}\"}} {n}",
                label(ch)
            );
        }
    }
    single(
        &mut out,
        "storeguard_outbox_depth",
        "gauge",
        "Alerts waiting for delivery.",
        shared.state.outbox_depth().unwrap_or(0),
    );
    single(
        &mut out,
        "storeguard_state_write_errors_total",
        "counter",
        "Failed writes to the state database (e.g. disk full).",
        shared.metrics.state_write_errors.load(Ordering::Relaxed),
    );
    if let Some(leases) = shared.state.leases() {
        let stats = leases.stats();
        let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        single(
            &mut out,
            "storeguard_replica_leases_held",
            "gauge",
            "Shard leases this replica holds and acts on now.",
            leases.trusted(std::time::Instant::now()).len(),
        );
        single(
            &mut out,
            "storeguard_replica_takeovers_total",
            "counter",
            "Shard leases taken after their previous holder's had expired.",
            load(&stats.takeovers),
        );
        single(
            &mut out,
            "storeguard_replica_leases_lost_total",
            "counter",
            "Shard leases this replica could not renew in time.",
            load(&stats.lost),
        );
        single(
            &mut out,
            "storeguard_replica_fenced_writes_refused_total",
            "counter",
            "Writes the fleet database refused because this replica's lease term was stale.",
            load(&stats.fenced_refusals),
        );
        single(
            &mut out,
            "storeguard_replica_failed_ticks_total",
            "counter",
            "Lease renewals that could not reach the fleet database.",
            load(&stats.failed_ticks),
        );
    }
    single(
        &mut out,
        "storeguard_state_commits_total",
        "counter",
        "Transactions that recorded finished checks; under load several checks share one.",
        shared.metrics.state_commits.load(Ordering::Relaxed),
    );
    single(
        &mut out,
        "storeguard_state_fault",
        "gauge",
        "1 while the last write to the state database failed.",
        u8::from(shared.metrics.state_fault.load(Ordering::Relaxed)),
    );
    header(
        &mut out,
        "storeguard_config_reloads_total",
        "counter",
        "Configuration reloads by result.",
    );
    let _ = writeln!(
        out,
        "storeguard_config_reloads_total{{result=\"ok\"}} {}",
        shared.metrics.reloads_ok.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        out,
        "storeguard_config_reloads_total{{result=\"rejected\"}} {}",
        shared.metrics.reloads_failed.load(Ordering::Relaxed)
    );
    header(
        &mut out,
        "storeguard_build_info",
        "gauge",
        "storeguard version.",
    );
    let _ = writeln!(
        out,
        "storeguard_build_info{{version=\"{}\"}} 1",
        crate::VERSION
    );
    out
}
