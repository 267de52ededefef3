//! The health state machine: outcomes in, incidents and alert events out.
//!
//! Pure: it takes `now` as an argument and never reads the clock or does I/O, so every rule is
//! unit- and property-tested without sleeping. Per store it keeps, for each finding kind, a
//! streak counter, the open incident if any, and the facts last seen (to notice changes).
//!
//! Rules (DESIGN.md, "Outcome of a check"):
//! - CRITICAL and WARNING findings open an incident at once; UNKNOWN ones after
//!   `failure_threshold` checks in a row.
//! - An incident resolves after `success_threshold` checks without its finding. A check that
//!   could not reach a verdict (an UNKNOWN finding) says nothing about the other incidents, so it
//!   neither resolves them nor counts towards resolving them.
//! - While open, an incident reminds every `remind_every`; `credential_expiring` instead notifies
//!   once per threshold of `expiry_warning` that it crosses.
//! - `account_changed` opens when roles, marketplaces, premium tier, store name or key expiry
//!   differ from what was last seen.

use crate::event::{AlertEvent, EventKind, Subject};
use crate::model::{Marketplace, Severity};
use crate::outcome::{Facts, Finding, FindingKind, Outcome, Status, rfc3339};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// Thresholds that drive the machine (from `[defaults]`).
#[derive(Clone, Debug)]
pub struct Rules {
    pub failure_threshold: u32,
    pub success_threshold: u32,
    pub remind_every: Duration,
    /// Longest first.
    pub expiry_warning: Vec<Duration>,
}

impl Rules {
    pub fn from_config(d: &crate::config::Defaults) -> Self {
        Rules {
            failure_threshold: d.failure_threshold.max(1),
            success_threshold: d.success_threshold.max(1),
            remind_every: d.remind_every,
            expiry_warning: d.expiry_warning.clone(),
        }
    }
}

/// An open incident.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    pub id: String,
    pub finding: FindingKind,
    pub severity: Severity,
    #[serde(serialize_with = "rfc3339::serialize")]
    pub opened_at: DateTime<Utc>,
    #[serde(serialize_with = "rfc3339::serialize")]
    pub last_notified_at: DateTime<Utc>,
    pub detail: String,
    /// Reminders sent so far (gives each reminder a distinct, stable event id).
    pub reminders: u32,
    /// Clean checks in a row since the finding last appeared.
    pub clean: u32,
    /// For `credential_expiring`: the smallest warning threshold already notified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notified_threshold_secs: Option<u64>,
    /// Covered by a marketplace-wide grouped incident: its own alerts are not sent.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub grouped: bool,
}

/// The facts compared for `account_changed`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SeenFacts {
    pub roles: Vec<String>,
    pub marketplaces: Vec<String>,
    pub premium: Option<String>,
    pub store_name: Option<String>,
    #[serde(serialize_with = "rfc3339::option")]
    pub expires_at: Option<DateTime<Utc>>,
}

impl SeenFacts {
    fn from_facts(f: &Facts) -> Self {
        let mut roles = f.roles.clone();
        roles.sort();
        roles.dedup();
        let mut marketplaces = f.marketplaces.clone();
        marketplaces.sort();
        marketplaces.dedup();
        SeenFacts {
            roles,
            marketplaces,
            premium: f.premium.clone(),
            store_name: f.store_name.clone(),
            expires_at: f.expires_at,
        }
    }

    /// Names of the facts that changed. A fact the new check did not report is not a change
    /// (Ozon's seller info is fetched once a day, for example).
    fn changes(&self, new: &SeenFacts) -> Vec<&'static str> {
        let mut out = Vec::new();
        if !new.roles.is_empty() && new.roles != self.roles {
            out.push("roles");
        }
        if !new.marketplaces.is_empty() && new.marketplaces != self.marketplaces {
            out.push("marketplaces");
        }
        if new.premium.is_some() && new.premium != self.premium {
            out.push("premium tier");
        }
        if new.store_name.is_some() && new.store_name != self.store_name {
            out.push("store name");
        }
        // Some APIs report expiry relative to the moment of the call: only a move of more than a
        // day (a renewed or re-issued key) is a change.
        if let Some(n) = new.expires_at {
            let moved = self
                .expires_at
                .is_none_or(|o| (n - o).num_seconds().abs() > 86_400);
            if moved {
                out.push("key expiry");
            }
        }
        out
    }

    /// Keeps old values for facts the new check did not report.
    fn merge(&mut self, new: SeenFacts) {
        if !new.roles.is_empty() {
            self.roles = new.roles;
        }
        if !new.marketplaces.is_empty() {
            self.marketplaces = new.marketplaces;
        }
        if new.premium.is_some() {
            self.premium = new.premium;
        }
        if new.store_name.is_some() {
            self.store_name = new.store_name;
        }
        if new.expires_at.is_some() {
            self.expires_at = new.expires_at;
        }
    }
}

/// Everything the machine remembers about one store.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StoreHealth {
    /// Consecutive checks with each (not yet open) finding.
    #[serde(default)]
    pub streaks: BTreeMap<FindingKind, u32>,
    #[serde(default)]
    pub open: BTreeMap<FindingKind, Incident>,
    #[serde(default)]
    pub seen: Option<SeenFacts>,
}

/// Who the store is, for the events.
#[derive(Clone, Debug)]
pub struct StoreRef<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub marketplace: Marketplace,
}

pub use crate::event::{event_id, incident_id};

mod step;
pub use step::{Backoff, Decided, MAX_BACKOFF, Peer, Picture, Step, next_backoff, step};

impl StoreRef<'_> {
    fn subject(&self) -> Subject {
        Subject::store(self.id, self.name, self.marketplace)
    }
}

fn event(
    subject: Subject,
    inc: &Incident,
    kind: EventKind,
    seq: u32,
    now: DateTime<Utc>,
    detail: &str,
) -> AlertEvent {
    AlertEvent {
        event_id: event_id(&inc.id, kind, seq),
        event: kind,
        incident_id: inc.id.clone(),
        subject,
        severity: inc.severity,
        finding: inc.finding,
        detail: detail.to_string(),
        opened_at: inc.opened_at,
        created_at: now,
        affected: Vec::new(),
        test: false,
    }
}

/// The smallest `expiry_warning` threshold that `expires_at` is inside of at `now`.
fn crossed_threshold(
    rules: &Rules,
    expires_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Option<Duration> {
    let left = (expires_at? - now).to_std().unwrap_or(Duration::ZERO);
    rules
        .expiry_warning
        .iter()
        .copied()
        .filter(|t| left <= *t)
        .min()
}

/// Adds the derived `account_changed` finding to an outcome's findings, and updates what was
/// seen. Facts are compared only when the check reached a verdict about the login.
fn derive_findings(health: &mut StoreHealth, outcome: &Outcome) -> Vec<Finding> {
    let mut findings = outcome.findings.clone();
    let verdict = !outcome
        .findings
        .iter()
        .any(|f| matches!(f.kind.status(), Status::Unknown | Status::Critical));
    if verdict {
        let new = SeenFacts::from_facts(&outcome.facts);
        match &mut health.seen {
            Some(seen) => {
                let mut changed = seen.changes(&new);
                // A refresh moves the token's expiry: that is storeguard's own doing.
                if outcome.facts.tokens_renewed {
                    changed.retain(|c| *c != "key expiry");
                }
                if !changed.is_empty() {
                    findings.push(Finding::new(
                        FindingKind::AccountChanged,
                        format!("changed: {}", changed.join(", ")),
                    ));
                }
                seen.merge(new);
            }
            None => health.seen = Some(new),
        }
    }
    findings
}

/// Applies one outcome. Returns the events to send, in order.
pub fn apply(
    health: &mut StoreHealth,
    store: &StoreRef<'_>,
    outcome: &Outcome,
    rules: &Rules,
    now: DateTime<Utc>,
) -> Vec<AlertEvent> {
    let findings = derive_findings(health, outcome);
    let mut events = Vec::new();
    let inconclusive = findings.iter().any(|f| f.kind.needs_threshold());
    let present: BTreeMap<FindingKind, &Finding> = findings.iter().map(|f| (f.kind, f)).collect();

    // Streaks: reset for absent findings, count present ones.
    health.streaks.retain(|k, _| present.contains_key(k));
    for (kind, finding) in &present {
        if let Some(inc) = health.open.get_mut(kind) {
            inc.clean = 0;
            inc.detail = finding.detail.clone();
            let due = if *kind == FindingKind::CredentialExpiring {
                // Expiry: one notification per threshold crossed; no periodic reminders.
                match crossed_threshold(rules, outcome.facts.expires_at, now).map(|t| t.as_secs()) {
                    Some(secs) if inc.notified_threshold_secs.is_none_or(|n| secs < n) => {
                        inc.notified_threshold_secs = Some(secs);
                        true
                    }
                    _ => false,
                }
            } else {
                now.signed_duration_since(inc.last_notified_at)
                    .to_std()
                    .unwrap_or(Duration::ZERO)
                    >= rules.remind_every
            };
            if due {
                inc.reminders += 1;
                inc.last_notified_at = now;
                let seq = inc.reminders;
                events.push(event(
                    store.subject(),
                    inc,
                    EventKind::Reminder,
                    seq,
                    now,
                    &finding.detail,
                ));
            }
            continue;
        }
        let streak = health.streaks.entry(*kind).or_insert(0);
        *streak += 1;
        let due = !kind.needs_threshold() || *streak >= rules.failure_threshold;
        if due {
            health.streaks.remove(kind);
            let id = incident_id(store.id, *kind, now);
            let inc = Incident {
                id,
                finding: *kind,
                severity: kind.severity(),
                opened_at: now,
                last_notified_at: now,
                detail: finding.detail.clone(),
                reminders: 0,
                clean: 0,
                grouped: false,
                notified_threshold_secs: if *kind == FindingKind::CredentialExpiring {
                    crossed_threshold(rules, outcome.facts.expires_at, now).map(|t| t.as_secs())
                } else {
                    None
                },
            };
            events.push(event(
                store.subject(),
                &inc,
                EventKind::Opened,
                0,
                now,
                &finding.detail,
            ));
            health.open.insert(*kind, inc);
        }
    }

    // Resolution: count clean checks for open incidents whose finding is absent.
    let mut resolved = Vec::new();
    for (kind, inc) in health.open.iter_mut() {
        if present.contains_key(kind) {
            continue;
        }
        // An inconclusive check says nothing about a login verdict.
        if inconclusive && !kind.needs_threshold() {
            continue;
        }
        inc.clean += 1;
        if inc.clean >= rules.success_threshold {
            resolved.push(*kind);
        }
    }
    for kind in resolved {
        if let Some(inc) = health.open.remove(&kind) {
            events.push(event(
                store.subject(),
                &inc,
                EventKind::Resolved,
                0,
                now,
                &inc.detail,
            ));
        }
    }
    events
}

/// How many stores of a marketplace must be unreachable or rate limited together for one
/// grouped incident: at least half of them, and at least 3.
pub fn group_threshold(total: usize) -> usize {
    total.div_ceil(2).max(3)
}

/// Whether an outcome counts towards a marketplace-wide outage.
pub fn is_outage(o: &Outcome) -> bool {
    o.has(FindingKind::Unreachable) || o.has(FindingKind::RateLimited)
}

/// The marketplace-wide grouped incident, kept in a `StoreHealth` under the pseudo store id
/// `marketplace:<name>`.
///
/// `affected`: stores whose latest check was unreachable or rate limited. `qualified`: how many
/// of them have been so for `failure_threshold` checks (or already have an incident). The group
/// is *forming* as soon as enough stores are affected, which holds back their own alerts; it
/// *opens* once enough of them qualify, and resolves as one when fewer than the threshold are
/// still affected. Returns the events and whether per-store outage alerts are held back.
pub fn apply_group(
    group: &mut StoreHealth,
    marketplace: Marketplace,
    total: usize,
    affected: &[String],
    qualified: usize,
    now: DateTime<Utc>,
) -> (Vec<AlertEvent>, bool) {
    let threshold = group_threshold(total);
    let subject = Subject::Marketplace(marketplace);
    let id = subject.key().into_owned();
    let forming = total >= 3 && affected.len() >= threshold;
    let mut events = Vec::new();
    let kind = FindingKind::Unreachable;
    match group.open.get_mut(&kind) {
        Some(inc) if !forming => {
            let mut e = event(subject, inc, EventKind::Resolved, 0, now, &inc.detail);
            e.affected = affected.to_vec();
            events.push(e);
            group.open.remove(&kind);
        }
        Some(inc) => {
            inc.detail = format!("{} of {total} stores affected", affected.len());
        }
        None if forming && qualified >= threshold => {
            let detail = format!("{} of {total} stores affected", affected.len());
            let inc = Incident {
                id: incident_id(&id, kind, now),
                finding: kind,
                severity: Severity::Unknown,
                opened_at: now,
                last_notified_at: now,
                detail: detail.clone(),
                reminders: 0,
                clean: 0,
                notified_threshold_secs: None,
                grouped: false,
            };
            let mut e = event(subject, &inc, EventKind::Opened, 0, now, &detail);
            e.affected = affected.to_vec();
            events.push(e);
            group.open.insert(kind, inc);
        }
        None => {}
    }
    (events, forming || group.open.contains_key(&kind))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn rules() -> Rules {
        Rules {
            failure_threshold: 3,
            success_threshold: 2,
            remind_every: Duration::from_secs(3600),
            expiry_warning: vec![
                Duration::from_secs(14 * 86_400),
                Duration::from_secs(3 * 86_400),
                Duration::from_secs(86_400),
            ],
        }
    }

    fn t(mins: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap() + chrono::Duration::minutes(mins)
    }

    const STORE: StoreRef<'static> = StoreRef {
        id: "ozon-main",
        name: "Ozon 主店",
        marketplace: Marketplace::Ozon,
    };

    fn outcome(kinds: &[FindingKind], at: DateTime<Utc>) -> Outcome {
        Outcome::new(
            "ozon-main",
            Marketplace::Ozon,
            at,
            kinds.iter().map(|k| Finding::new(*k, "detail")).collect(),
            Facts::default(),
        )
    }

    fn kinds(events: &[AlertEvent]) -> Vec<(EventKind, FindingKind)> {
        events.iter().map(|e| (e.event, e.finding)).collect()
    }

    #[test]
    fn critical_opens_at_once_and_resolves_after_threshold() {
        let mut h = StoreHealth::default();
        let ev = apply(
            &mut h,
            &STORE,
            &outcome(&[FindingKind::AuthRejected], t(0)),
            &rules(),
            t(0),
        );
        assert_eq!(
            kinds(&ev),
            vec![(EventKind::Opened, FindingKind::AuthRejected)]
        );
        assert_eq!(ev[0].severity, Severity::Critical);
        // Still broken: no event until remind_every passes.
        assert!(
            apply(
                &mut h,
                &STORE,
                &outcome(&[FindingKind::AuthRejected], t(10)),
                &rules(),
                t(10)
            )
            .is_empty()
        );
        let ev = apply(
            &mut h,
            &STORE,
            &outcome(&[FindingKind::AuthRejected], t(60)),
            &rules(),
            t(60),
        );
        assert_eq!(
            kinds(&ev),
            vec![(EventKind::Reminder, FindingKind::AuthRejected)]
        );
        // One clean check is not enough, two are.
        assert!(apply(&mut h, &STORE, &outcome(&[], t(70)), &rules(), t(70)).is_empty());
        let ev = apply(&mut h, &STORE, &outcome(&[], t(80)), &rules(), t(80));
        assert_eq!(
            kinds(&ev),
            vec![(EventKind::Resolved, FindingKind::AuthRejected)]
        );
        assert!(h.open.is_empty());
    }

    #[test]
    fn unknown_needs_failure_threshold_in_a_row() {
        let mut h = StoreHealth::default();
        let u = [FindingKind::Unreachable];
        assert!(apply(&mut h, &STORE, &outcome(&u, t(0)), &rules(), t(0)).is_empty());
        assert!(apply(&mut h, &STORE, &outcome(&u, t(1)), &rules(), t(1)).is_empty());
        // A clean check breaks the streak.
        assert!(apply(&mut h, &STORE, &outcome(&[], t(2)), &rules(), t(2)).is_empty());
        assert!(apply(&mut h, &STORE, &outcome(&u, t(3)), &rules(), t(3)).is_empty());
        assert!(apply(&mut h, &STORE, &outcome(&u, t(4)), &rules(), t(4)).is_empty());
        let ev = apply(&mut h, &STORE, &outcome(&u, t(5)), &rules(), t(5));
        assert_eq!(
            kinds(&ev),
            vec![(EventKind::Opened, FindingKind::Unreachable)]
        );
        assert_eq!(ev[0].severity, Severity::Unknown);
    }

    #[test]
    fn inconclusive_checks_do_not_resolve_login_incidents() {
        let mut h = StoreHealth::default();
        apply(
            &mut h,
            &STORE,
            &outcome(&[FindingKind::AuthRejected], t(0)),
            &rules(),
            t(0),
        );
        for i in 1..10 {
            let ev = apply(
                &mut h,
                &STORE,
                &outcome(&[FindingKind::Unreachable], t(i)),
                &rules(),
                t(i),
            );
            assert!(ev.iter().all(|e| e.event != EventKind::Resolved));
        }
        assert!(h.open.contains_key(&FindingKind::AuthRejected));
    }

    #[test]
    fn a_refresh_that_moves_the_token_expiry_is_not_an_account_change() {
        let expiry = t(0) + chrono::Duration::days(100);
        let mut h = StoreHealth::default();
        let mut o = outcome(&[], t(0));
        o.facts.expires_at = Some(expiry);
        assert!(apply(&mut h, &STORE, &o, &rules(), t(0)).is_empty());
        // storeguard refreshed the tokens: the new refresh token lives longer.
        let mut renewed = outcome(&[], t(10));
        renewed.facts.expires_at = Some(expiry + chrono::Duration::days(7));
        renewed.facts.tokens_renewed = true;
        assert!(apply(&mut h, &STORE, &renewed, &rules(), t(10)).is_empty());
        // The same move without a refresh of ours is a change (someone re-issued the key).
        let mut moved = outcome(&[], t(20));
        moved.facts.expires_at = Some(expiry + chrono::Duration::days(30));
        let ev = apply(&mut h, &STORE, &moved, &rules(), t(20));
        assert_eq!(
            kinds(&ev),
            vec![(EventKind::Opened, FindingKind::AccountChanged)]
        );
    }

    #[test]
    fn account_changed_when_roles_differ() {
        let mut h = StoreHealth::default();
        let mut o = outcome(&[], t(0));
        o.facts.roles = vec!["Admin".into()];
        assert!(apply(&mut h, &STORE, &o, &rules(), t(0)).is_empty());
        let mut o2 = outcome(&[], t(10));
        o2.facts.roles = vec!["Admin".into(), "Finance".into()];
        let ev = apply(&mut h, &STORE, &o2, &rules(), t(10));
        assert_eq!(
            kinds(&ev),
            vec![(EventKind::Opened, FindingKind::AccountChanged)]
        );
        assert!(ev[0].detail.contains("roles"));
        // Same facts again: resolves after success_threshold.
        let mut o3 = outcome(&[], t(20));
        o3.facts.roles = vec!["Finance".into(), "Admin".into()];
        assert!(apply(&mut h, &STORE, &o3, &rules(), t(20)).is_empty());
        let ev = apply(&mut h, &STORE, &o3, &rules(), t(30));
        assert_eq!(
            kinds(&ev),
            vec![(EventKind::Resolved, FindingKind::AccountChanged)]
        );
        // Facts a check did not report are not a change.
        let o4 = outcome(&[], t(40));
        assert!(apply(&mut h, &STORE, &o4, &rules(), t(40)).is_empty());
    }

    #[test]
    fn expiry_notifies_once_per_threshold() {
        let mut h = StoreHealth::default();
        let expires = t(0) + chrono::Duration::days(10);
        let mut sent = Vec::new();
        let mut at = t(0);
        while at < expires {
            let mut o = outcome(&[FindingKind::CredentialExpiring], at);
            o.facts.expires_at = Some(expires);
            sent.extend(apply(&mut h, &STORE, &o, &rules(), at));
            at += chrono::Duration::hours(1);
        }
        // Opened inside 14d, then one notice at 3d and one at 1d: nothing in between.
        assert_eq!(
            kinds(&sent),
            vec![
                (EventKind::Opened, FindingKind::CredentialExpiring),
                (EventKind::Reminder, FindingKind::CredentialExpiring),
                (EventKind::Reminder, FindingKind::CredentialExpiring),
            ]
        );
        let ids: std::collections::HashSet<_> = sent.iter().map(|e| e.event_id.clone()).collect();
        assert_eq!(ids.len(), 3);
    }

    #[test]
    fn ids_are_stable() {
        let a = incident_id("s", FindingKind::AuthRejected, t(0));
        assert_eq!(a, incident_id("s", FindingKind::AuthRejected, t(0)));
        assert_ne!(a, incident_id("s", FindingKind::AuthRejected, t(1)));
        assert_ne!(
            event_id(&a, EventKind::Reminder, 1),
            event_id(&a, EventKind::Reminder, 2)
        );
    }

    #[test]
    fn group_opens_once_and_resolves_as_one() {
        let mut g = StoreHealth::default();
        let names: Vec<String> = (0..40).map(|i| format!("s{i}")).collect();
        // 10 of 40 affected: below half.
        let (ev, hold) = apply_group(&mut g, Marketplace::Ozon, 40, &names[..10], 10, t(0));
        assert!(ev.is_empty() && !hold);
        // 37 affected but not yet for failure_threshold checks: forming, holds per-store alerts.
        let (ev, hold) = apply_group(&mut g, Marketplace::Ozon, 40, &names[..37], 0, t(1));
        assert!(ev.is_empty() && hold);
        let (ev, hold) = apply_group(&mut g, Marketplace::Ozon, 40, &names[..37], 37, t(2));
        assert_eq!(
            kinds(&ev),
            vec![(EventKind::Opened, FindingKind::Unreachable)]
        );
        assert_eq!(ev[0].affected.len(), 37);
        assert_eq!(ev[0].subject.key(), "marketplace:ozon");
        assert!(hold);
        let (ev, _) = apply_group(&mut g, Marketplace::Ozon, 40, &names[..38], 38, t(3));
        assert!(ev.is_empty(), "no second open");
        let (ev, hold) = apply_group(&mut g, Marketplace::Ozon, 40, &names[..2], 2, t(4));
        assert_eq!(
            kinds(&ev),
            vec![(EventKind::Resolved, FindingKind::Unreachable)]
        );
        assert!(!hold);
        // Two stores of a marketplace of two never group.
        let mut small = StoreHealth::default();
        let (ev, hold) = apply_group(&mut small, Marketplace::Amazon, 2, &names[..2], 2, t(5));
        assert!(ev.is_empty() && !hold);
        assert_eq!(group_threshold(5), 3);
        assert_eq!(group_threshold(9), 5);
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn finding_set() -> impl Strategy<Value = Vec<FindingKind>> {
            prop::collection::vec(
                prop::sample::select(vec![
                    FindingKind::AuthRejected,
                    FindingKind::PermissionMissing,
                    FindingKind::Unreachable,
                    FindingKind::RateLimited,
                    FindingKind::Posture,
                ]),
                0..3,
            )
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(300))]

            /// Over any sequence of outcomes: no resolve without an open, no second open while
            /// open, reminders never faster than remind_every, event ids unique.
            #[test]
            fn invariants_hold(seq in prop::collection::vec((finding_set(), 1i64..180), 1..80)) {
                let rules = rules();
                let mut h = StoreHealth::default();
                let mut now = t(0);
                let mut open: BTreeMap<FindingKind, DateTime<Utc>> = BTreeMap::new();
                let mut ids = std::collections::HashSet::new();
                for (found, step) in seq {
                    now += chrono::Duration::minutes(step);
                    let mut dedup = found.clone();
                    dedup.sort();
                    dedup.dedup();
                    for e in apply(&mut h, &STORE, &outcome(&dedup, now), &rules, now) {
                        prop_assert!(ids.insert(e.event_id.clone()), "duplicate event id");
                        match e.event {
                            EventKind::Opened => {
                                prop_assert!(!open.contains_key(&e.finding), "opened twice");
                                open.insert(e.finding, now);
                            }
                            EventKind::Reminder => {
                                let last = open.get(&e.finding).copied();
                                prop_assert!(last.is_some(), "reminder without open");
                                let gap = (now - last.unwrap()).to_std().unwrap();
                                prop_assert!(gap >= rules.remind_every, "reminder too soon");
                                open.insert(e.finding, now);
                            }
                            EventKind::Resolved => {
                                prop_assert!(open.remove(&e.finding).is_some(), "resolve without open");
                            }
                        }
                    }
                    prop_assert_eq!(open.keys().collect::<Vec<_>>(), h.open.keys().collect::<Vec<_>>());
                }
            }
        }
    }
}
