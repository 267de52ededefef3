//! SIGHUP: re-reading the config and the vault, refusing a reload that would stop monitoring,
//! and storeguard's own alert about a rejected one.

use super::*;

pub(super) async fn reload_loop(
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
                shared.mail_restart.notify_one();
                tracing::info!(stores = config.stores.len(), "configuration reloaded");
                reload_incident(&shared, None, shared.clock.now());
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
pub(super) fn reload_incident(shared: &Shared, problem: Option<&str>, now: DateTime<Utc>) {
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
pub(super) fn daemon_event(detail: &str, now: DateTime<Utc>) -> AlertEvent {
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
