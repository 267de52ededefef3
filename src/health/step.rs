//! One check's consequences, decided without I/O: the store's new health, the marketplace-wide
//! group, which alerts go out alone and which the group speaks for, how long each is held, and
//! the store's backoff. The daemon takes a lock, builds a [`Picture`], calls [`step`], routes the
//! events to channels, writes one transaction and commits the result to memory.
//!
//! Rules:
//! - **Grouping.** When enough stores of one marketplace are unreachable or throttled at once,
//!   one marketplace-wide incident opens instead of one per store ([`super::apply_group`]).
//!   While it is forming or open, the per-store outage alerts it covers are not sent alone.
//! - **Sweep grace.** Stores of one sweep finish at different moments, so a store's outage alert
//!   waits a sweep's spread before it goes out: a group forming meanwhile replaces it.
//! - **Covering.** A group that opens covers the outage incidents of its stores whose alert is
//!   still waiting out that grace; one that already went out alone stays alone (its resolution
//!   is sent alone too), so no incident is both announced alone and left to the group.
//! - **Holds.** Maintenance windows and silences hold a store's alerts until they end; the
//!   daemon decides at release whether each is still true (see `daemon::still_relevant`).
//! - **Backoff.** A refused key or a throttle backs the store off (10 min doubling to 2 h, or
//!   the marketplace's `Retry-After`), never past [`MAX_BACKOFF`]; a good manual check lifts it.

use super::{Rules, StoreHealth, StoreRef, apply, apply_group, is_outage};
use crate::event::{AlertEvent, EventKind};
use crate::outcome::{FindingKind, Outcome, Status};
use chrono::{DateTime, Utc};
use std::time::Duration;

/// A store's backoff: checks before `until` are skipped; `level` counts refusals in a row.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Backoff {
    pub until: Option<DateTime<Utc>>,
    pub level: u32,
}

/// The longest backoff [`next_backoff`] sets. A stored backoff ending later than this from
/// now is from a clock that was ahead (stepped back since): it is cut to this.
pub const MAX_BACKOFF: Duration = Duration::from_secs(7200);

impl Backoff {
    /// This backoff with an end no later than `MAX_BACKOFF` after `now`.
    pub fn bounded(self, now: DateTime<Utc>) -> Backoff {
        let limit = now + chrono::Duration::from_std(MAX_BACKOFF).unwrap_or_default();
        Backoff {
            until: self.until.map(|u| u.min(limit)),
            level: self.level,
        }
    }
}

/// Backoff after a refused or throttled check: never hammer a marketplace with a bad key.
pub fn next_backoff(prev: Backoff, outcome: &Outcome, now: DateTime<Utc>) -> Backoff {
    let rate = outcome
        .findings
        .iter()
        .find(|f| f.kind == FindingKind::RateLimited);
    let refused = outcome.has(FindingKind::AuthRejected);
    if rate.is_none() && !refused {
        return Backoff::default();
    }
    let level = (prev.level + 1).min(8);
    let wait = if let Some(secs) = rate.and_then(|f| f.retry_after_secs) {
        Duration::from_secs(secs.clamp(60, 3600).min(MAX_BACKOFF.as_secs()))
    } else if refused {
        // 10 min, 20, 40, 80, capped at 2 h: a fixed key is still noticed the same morning,
        // and `check now` bypasses it.
        Duration::from_secs(600 * 2u64.pow(level - 1)).min(MAX_BACKOFF)
    } else {
        Duration::from_secs(60 * 2u64.pow(level - 1)).min(Duration::from_secs(1800))
    };
    Backoff {
        until: Some(now + chrono::Duration::from_std(wait).unwrap_or_default()),
        level,
    }
}

/// Another store of the same marketplace, as the daemon last saw it.
#[derive(Clone, Copy, Debug)]
pub struct Peer<'a> {
    pub id: &'a str,
    pub last: Option<&'a Outcome>,
    pub health: &'a StoreHealth,
}

/// Everything one check's consequences depend on, besides the outcome and the rules.
#[derive(Clone, Debug)]
pub struct Picture<'a> {
    pub store: StoreRef<'a>,
    /// The store's health before this check.
    pub health: &'a StoreHealth,
    pub backoff: Backoff,
    /// Stores of the marketplace whose latest outcome is an outage, in config order. This
    /// store's entry, if any, is replaced by the check at hand.
    pub peers: &'a [Peer<'a>],
    /// Enabled stores of the marketplace.
    pub marketplace_stores: usize,
    /// The marketplace-wide group's health before this check.
    pub group: &'a StoreHealth,
    /// The end of a maintenance window or silence that holds this store's alerts.
    pub held_until: Option<DateTime<Utc>>,
    /// How long an outage alert waits for a group to form: a sweep's spread.
    pub sweep_grace: chrono::Duration,
    /// Asked for by a person (`check now`): a good answer lifts the backoff.
    pub manual: bool,
}

/// An event and what the step decided about it.
#[derive(Clone, Debug, PartialEq)]
pub struct Decided {
    pub event: AlertEvent,
    /// False when the marketplace-wide group speaks for it: it goes to no channel.
    pub alone: bool,
    /// Held (maintenance, silence, sweep grace) until then.
    pub hold_until: Option<DateTime<Utc>>,
}

/// The consequences of one check.
#[derive(Clone, Debug)]
pub struct Step {
    /// The store's new health.
    pub health: StoreHealth,
    /// The store's events, then the group's.
    pub events: Vec<Decided>,
    /// The group's new health, when it changed.
    pub group: Option<StoreHealth>,
    /// Other stores whose outage incidents the group now covers, with their new health.
    pub covered: Vec<(String, StoreHealth)>,
    pub backoff: Backoff,
}

const OUTAGES: [FindingKind; 2] = [FindingKind::Unreachable, FindingKind::RateLimited];

/// What one check of `p.store` with `outcome` at `now` means. Pure.
pub fn step(p: &Picture<'_>, outcome: &Outcome, rules: &Rules, now: DateTime<Utc>) -> Step {
    let mut health = p.health.clone();
    let events = apply(&mut health, &p.store, outcome, rules, now);

    // The group over the latest picture, this store's new outcome included.
    let mut affected: Vec<String> = Vec::new();
    let mut qualified = 0;
    let this = Peer {
        id: p.store.id,
        last: Some(outcome),
        health: &health,
    };
    let mut seen_this = false;
    let mut consider = |peer: &Peer<'_>| {
        if peer.last.is_some_and(is_outage) {
            affected.push(peer.id.to_string());
            let streak = OUTAGES.iter().any(|k| {
                peer.health.open.contains_key(k)
                    || peer.health.streaks.get(k).copied().unwrap_or(0) >= rules.failure_threshold
            });
            if streak {
                qualified += 1;
            }
        }
    };
    for peer in p.peers {
        if peer.id == p.store.id {
            seen_this = true;
            consider(&this);
        } else {
            consider(peer);
        }
    }
    if !seen_this {
        consider(&this);
    }
    let mut group = p.group.clone();
    let (group_events, hold_outage) = apply_group(
        &mut group,
        p.store.marketplace,
        p.marketplace_stores,
        &affected,
        qualified,
        now,
    );

    let mut decided = Vec::with_capacity(events.len() + group_events.len());
    for e in events {
        let alone = match e.event {
            EventKind::Opened => {
                let grouped = hold_outage && OUTAGES.contains(&e.finding);
                if grouped && let Some(inc) = health.open.get_mut(&e.finding) {
                    inc.grouped = true;
                }
                !grouped
            }
            // A reminder or resolution goes where its opening went.
            _ => !p
                .health
                .open
                .get(&e.finding)
                .is_some_and(|i| i.id == e.incident_id && i.grouped),
        };
        let outage_opened = e.event == EventKind::Opened && OUTAGES.contains(&e.finding);
        let hold_until = if outage_opened && alone {
            p.held_until.max(Some(now + p.sweep_grace))
        } else {
            p.held_until
        };
        decided.push(Decided {
            event: e,
            alone,
            hold_until,
        });
    }

    // A group that opens now covers the outage incidents of its stores whose alert is still
    // waiting out the sweep grace (it is then dropped at release). One already sent stays alone.
    let mut covered: Vec<(String, StoreHealth)> = Vec::new();
    if group_events.iter().any(|e| e.event == EventKind::Opened) {
        let still_held = |opened_at: DateTime<Utc>| now - opened_at < p.sweep_grace;
        for id in &affected {
            if id == p.store.id {
                for k in OUTAGES {
                    if let Some(inc) = health.open.get_mut(&k)
                        && still_held(inc.opened_at)
                    {
                        inc.grouped = true;
                        for d in decided.iter_mut().filter(|d| d.event.incident_id == inc.id) {
                            d.alone = d.event.event != EventKind::Opened && d.alone;
                        }
                    }
                }
                continue;
            }
            let Some(peer) = p.peers.iter().find(|peer| peer.id == id) else {
                continue;
            };
            let mut h = peer.health.clone();
            let mut changed = false;
            for k in OUTAGES {
                if let Some(inc) = h.open.get_mut(&k)
                    && !inc.grouped
                    && still_held(inc.opened_at)
                {
                    inc.grouped = true;
                    changed = true;
                }
            }
            if changed {
                covered.push((id.clone(), h));
            }
        }
    }
    for e in group_events {
        decided.push(Decided {
            event: e,
            alone: true,
            hold_until: None,
        });
    }

    let backoff = if p.manual && outcome.status == Status::Ok {
        Backoff::default()
    } else {
        next_backoff(p.backoff, outcome, now)
    };
    Step {
        health,
        events: decided,
        group: (group != *p.group).then_some(group),
        covered,
        backoff,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Marketplace;
    use crate::outcome::{Facts, Finding};
    use chrono::TimeZone;
    use proptest::prelude::*;
    use std::collections::{HashMap, HashSet};

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap()
    }

    fn outcome(id: &str, kind: Option<FindingKind>, at: DateTime<Utc>) -> Outcome {
        Outcome::new(
            id,
            Marketplace::Ozon,
            at,
            kind.map(|k| Finding::new(k, "detail"))
                .into_iter()
                .collect(),
            Facts::default(),
        )
    }

    #[test]
    fn backoff_grows_and_resets() {
        let now = Utc::now();
        let bad = outcome("s", Some(FindingKind::AuthRejected), now);
        let b1 = next_backoff(Backoff::default(), &bad, now);
        assert_eq!(b1.level, 1);
        assert_eq!(b1.until, Some(now + chrono::Duration::minutes(10)));
        let b2 = next_backoff(b1, &bad, now);
        assert_eq!(b2.until, Some(now + chrono::Duration::minutes(20)));
        let mut b = b2;
        for _ in 0..10 {
            b = next_backoff(b, &bad, now);
        }
        assert_eq!(b.until, Some(now + chrono::Duration::hours(2)));
        let ok = outcome("s", None, now);
        assert_eq!(next_backoff(b, &ok, now), Backoff::default());
    }

    /// An opened alert: routed alone?, the hold of it, when the group covered its incident.
    struct Opened {
        alone: bool,
        hold: Option<DateTime<Utc>>,
        covered: Option<DateTime<Utc>>,
    }

    /// The daemon's memory, as a test keeps it: health and last outcome per store, the group.
    struct Sim {
        ids: Vec<String>,
        health: HashMap<String, StoreHealth>,
        last: HashMap<String, Outcome>,
        group: StoreHealth,
        rules: Rules,
        grace: chrono::Duration,
        opened: HashMap<String, Opened>,
        out: Vec<(DateTime<Utc>, Decided)>,
    }

    impl Sim {
        fn new(stores: usize, threshold: u32) -> Sim {
            Sim {
                ids: (0..stores).map(|i| format!("s{i}")).collect(),
                health: HashMap::new(),
                last: HashMap::new(),
                group: StoreHealth::default(),
                rules: Rules {
                    failure_threshold: threshold,
                    success_threshold: 1,
                    remind_every: Duration::from_secs(3600),
                    expiry_warning: vec![],
                },
                grace: chrono::Duration::seconds(45),
                opened: HashMap::new(),
                out: Vec::new(),
            }
        }

        fn check(&mut self, store: usize, kind: Option<FindingKind>, now: DateTime<Utc>) {
            let id = self.ids[store].clone();
            let o = outcome(&id, kind, now);
            let empty = StoreHealth::default();
            let peers: Vec<Peer<'_>> = self
                .ids
                .iter()
                .filter(|s| **s == id || self.last.get(*s).is_some_and(is_outage))
                .map(|s| Peer {
                    id: s,
                    last: self.last.get(s),
                    health: self.health.get(s).unwrap_or(&empty),
                })
                .collect();
            let picture = Picture {
                store: StoreRef {
                    id: &id,
                    name: &id,
                    marketplace: Marketplace::Ozon,
                },
                health: self.health.get(&id).unwrap_or(&empty),
                backoff: Backoff::default(),
                peers: &peers,
                marketplace_stores: self.ids.len(),
                group: &self.group,
                held_until: None,
                sweep_grace: self.grace,
                manual: false,
            };
            let s = step(&picture, &o, &self.rules, now);
            for d in &s.events {
                if d.event.event == EventKind::Opened {
                    let opened = Opened {
                        alone: d.alone,
                        hold: d.hold_until,
                        covered: None,
                    };
                    self.opened.insert(d.event.incident_id.clone(), opened);
                }
                self.out.push((now, d.clone()));
            }
            for (cid, h) in &s.covered {
                self.mark_covered(h, now);
                self.health.insert(cid.clone(), h.clone());
            }
            self.mark_covered(&s.health, now);
            self.health.insert(id.clone(), s.health);
            self.last.insert(id, o);
            if let Some(g) = s.group {
                self.group = g;
            }
        }

        fn mark_covered(&mut self, h: &StoreHealth, now: DateTime<Utc>) {
            for inc in h.open.values().filter(|i| i.grouped) {
                if let Some(e) = self.opened.get_mut(&inc.id)
                    && e.covered.is_none()
                {
                    e.covered = Some(now);
                }
            }
        }

        /// Whether an opened alert reached a channel: routed alone and not dropped at release
        /// (the daemon drops a held opened whose incident the group covered meanwhile).
        fn opened_sent(&self, incident: &str) -> bool {
            self.opened.get(incident).is_some_and(|o| {
                o.alone && !matches!((o.hold, o.covered), (Some(h), Some(c)) if c < h)
            })
        }
    }

    fn kind() -> impl Strategy<Value = Option<FindingKind>> {
        prop_oneof![
            3 => Just(None),
            3 => Just(Some(FindingKind::Unreachable)),
            1 => Just(Some(FindingKind::RateLimited)),
            1 => Just(Some(FindingKind::AuthRejected)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// Over random outcome sequences of one marketplace: no resolved without its opened;
        /// no incident both announced alone and left to the group; nothing held for ever.
        #[test]
        fn grouping_and_holds_keep_their_promises(
            stores in 3usize..7,
            threshold in 1u32..3,
            checks in proptest::collection::vec((0usize..7, kind(), 0i64..120), 1..120),
        ) {
            let mut sim = Sim::new(stores, threshold);
            let mut now = t0();
            for (store, k, gap) in checks {
                now += chrono::Duration::seconds(gap);
                sim.check(store % stores, k, now);
            }
            let mut opened_ids = HashSet::new();
            for (at, d) in &sim.out {
                let id = &d.event.incident_id;
                match d.event.event {
                    EventKind::Opened => {
                        opened_ids.insert(id.clone());
                    }
                    EventKind::Resolved | EventKind::Reminder => {
                        prop_assert!(opened_ids.contains(id), "{:?} without an opened", d.event.event);
                        if d.event.subject.store_id().is_some() {
                            // Alone exactly when its opening reached a channel.
                            prop_assert_eq!(
                                d.alone,
                                sim.opened_sent(id),
                                "incident {} at {}: {:?}",
                                id,
                                at,
                                d.event.event
                            );
                        }
                    }
                }
                if let Some(h) = d.hold_until {
                    prop_assert!(h <= *at + sim.grace, "held until {} at {}", h, at);
                }
            }
        }
    }
}
