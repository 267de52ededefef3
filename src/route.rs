//! Which channels an alert event goes to, and whether it is held for maintenance.
//!
//! A store's own `channels` list, else `[defaults] channels` (resolved when the config is
//! validated), filtered by each channel's `min_severity`, its `stores` / `tags` /
//! `marketplaces` selector and its `events` list. Grouped marketplace incidents and alerts about
//! storeguard itself go to the default channels.

use crate::config::{Config, Store};
use crate::event::{AlertEvent, Subject};
use chrono::{DateTime, Utc};

/// An event with the channels it goes to, and the end of a maintenance window holding it.
#[derive(Clone, Debug)]
pub struct Routed {
    pub event: AlertEvent,
    pub channels: Vec<String>,
    pub hold_until: Option<DateTime<Utc>>,
}

/// Channel names for `event`, in config order.
pub fn channels_for(config: &Config, event: &AlertEvent) -> Vec<String> {
    let store = event.subject.store_id().and_then(|id| config.store(id));
    let candidates: &[String] = match store {
        Some(store) => &store.channels,
        None => &config.defaults.channels,
    };
    let affected: Vec<&Store> = event
        .affected
        .iter()
        .filter_map(|id| config.store(id))
        .collect();
    candidates
        .iter()
        .filter(|name| {
            let Some(c) = config.channel(name) else {
                return false;
            };
            if event.severity < c.min_severity {
                return false;
            }
            if !c.events.is_empty() && !c.events.contains(&event.event) {
                return false;
            }
            if c.filter.is_empty() {
                return true;
            }
            match (&event.subject, store) {
                (_, Some(s)) => c.filter.matches(s),
                // A grouped incident passes when any affected store does.
                (Subject::Marketplace(m), None) => {
                    affected.iter().any(|s| c.filter.matches(s))
                        || (c.filter.stores.is_empty()
                            && c.filter.tags.is_empty()
                            && c.filter.marketplaces.contains(m))
                }
                // Alerts about storeguard itself ignore store filters; so does a store the
                // config no longer has.
                (Subject::Daemon | Subject::Store { .. }, None) => true,
            }
        })
        .cloned()
        .collect()
}

/// When notifications for `store` are held at `now` (maintenance window or silence), the
/// time they are released.
pub fn held_until(
    config: &Config,
    store: &Store,
    silenced_until: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let tz = config.daemon.timezone;
    config
        .maintenance
        .iter()
        .filter(|m| m.selector.matches(store))
        .filter_map(|m| m.open_until(tz, now))
        .chain(silenced_until.filter(|u| *u > now))
        .max()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventKind;
    use crate::model::{Marketplace, Severity};
    use crate::outcome::FindingKind;
    use std::path::Path;

    fn config() -> Config {
        Config::from_toml(
            Path::new("/x/storeguard.toml"),
            "[defaults]\nchannels = [\"all\", \"crit\", \"ozon-only\", \"resolved-only\", \"tagged\"]\n\
             [[channel]]\nname = \"all\"\nkind = \"log\"\n\
             [[channel]]\nname = \"crit\"\nkind = \"log\"\nmin_severity = \"critical\"\n\
             [[channel]]\nname = \"ozon-only\"\nkind = \"log\"\nstores = [\"ozon-*\"]\n\
             [[channel]]\nname = \"resolved-only\"\nkind = \"log\"\nevents = [\"resolved\"]\n\
             [[channel]]\nname = \"tagged\"\nkind = \"log\"\ntags = [\"vip\"]\n\
             [[store]]\nid = \"ozon-main\"\nmarketplace = \"ozon\"\naccount = \"1\"\ntags = [\"vip\"]\n\
             [[store]]\nid = \"ali\"\nmarketplace = \"aliexpress\"\naccount = \"2\"\n\
             [[store]]\nid = \"own\"\nmarketplace = \"ozon\"\naccount = \"3\"\nchannels = [\"crit\"]\n\
             [[maintenance]]\nstart = 2026-01-01T00:00:00Z\nend = 2026-01-02T00:00:00Z\ntags = [\"vip\"]\n",
        )
        .unwrap()
    }

    fn event(store: &str, severity: Severity, kind: EventKind) -> AlertEvent {
        AlertEvent {
            event_id: "e".into(),
            event: kind,
            incident_id: "i".into(),
            subject: crate::event::Subject::store(store, store, Marketplace::Ozon),
            severity,
            finding: FindingKind::AuthRejected,
            detail: String::new(),
            opened_at: Utc::now(),
            created_at: Utc::now(),
            affected: vec![],
            test: false,
        }
    }

    #[test]
    fn filters_by_severity_store_tag_and_event() {
        let c = config();
        assert_eq!(
            channels_for(
                &c,
                &event("ozon-main", Severity::Critical, EventKind::Opened)
            ),
            vec!["all", "crit", "ozon-only", "tagged"]
        );
        assert_eq!(
            channels_for(&c, &event("ali", Severity::Warning, EventKind::Opened)),
            vec!["all"]
        );
        assert_eq!(
            channels_for(&c, &event("ali", Severity::Warning, EventKind::Resolved)),
            vec!["all", "resolved-only"]
        );
        // A store's own list overrides the defaults.
        assert_eq!(
            channels_for(&c, &event("own", Severity::Critical, EventKind::Opened)),
            vec!["crit"]
        );
        assert!(channels_for(&c, &event("own", Severity::Warning, EventKind::Opened)).is_empty());
    }

    #[test]
    fn grouped_events_pass_when_an_affected_store_does() {
        let c = config();
        let mut e = event("marketplace:ozon", Severity::Unknown, EventKind::Opened);
        e.affected = vec!["ozon-main".into(), "own".into()];
        assert_eq!(channels_for(&c, &e), vec!["all", "ozon-only", "tagged"]);
    }

    #[test]
    fn maintenance_holds_by_selector() {
        use chrono::TimeZone;
        let c = config();
        let inside = Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap();
        let end = Utc.with_ymd_and_hms(2026, 1, 2, 0, 0, 0).unwrap();
        assert_eq!(
            held_until(&c, c.store("ozon-main").unwrap(), None, inside),
            Some(end)
        );
        assert_eq!(held_until(&c, c.store("ali").unwrap(), None, inside), None);
        let later = inside + chrono::Duration::hours(30);
        assert_eq!(
            held_until(&c, c.store("ali").unwrap(), Some(later), inside),
            Some(later)
        );
    }
}
