//! `[[maintenance]]`: windows in which a marketplace's failures are expected.

use super::*;

impl Maintenance {
    /// The `i`-th (from 0) `[[maintenance]]` table.
    pub(super) fn from_raw(
        m: Spanned<RawMaintenance>,
        i: usize,
        c: &mut Collector<'_>,
    ) -> Option<Maintenance> {
        let span = m.span();
        let m = m.into_inner();
        let name = m
            .name
            .clone()
            .unwrap_or_else(|| format!("maintenance #{}", i + 1));
        let time = |c: &mut Collector<'_>,
                    v: &Spanned<toml::Value>,
                    what: &str|
         -> Option<chrono::DateTime<chrono::Utc>> {
            let text = match v.get_ref() {
                toml::Value::Datetime(d) => d.to_string(),
                toml::Value::String(s) => s.clone(),
                _ => String::new(),
            };
            match chrono::DateTime::parse_from_rfc3339(&text) {
                Ok(t) => Some(t.with_timezone(&chrono::Utc)),
                Err(_) => {
                    c.at(
                        v.span(),
                        format!("{name}: `{what}` is not a date and time"),
                        "write it like 2026-12-01T02:00:00+08:00",
                    );
                    None
                }
            }
        };
        let window = match (&m.schedule, &m.duration, &m.start, &m.end) {
            (Some(s), Some(d), None, None) => {
                let schedule = schedule_field(c, s);
                let duration = duration_field(
                    c,
                    Some(d),
                    Duration::ZERO,
                    "duration",
                    Duration::from_secs(60),
                );
                schedule.map(|schedule| Window::Recurring {
                    schedule: Box::new(schedule),
                    duration,
                })
            }
            (None, None, Some(a), Some(b)) => match (time(c, a, "start"), time(c, b, "end")) {
                (Some(start), Some(end)) if start < end => Some(Window::Fixed { start, end }),
                (Some(_), Some(_)) => {
                    c.at(
                        b.span(),
                        format!("{name}: `end` is not after `start`"),
                        "swap them or fix the dates",
                    );
                    None
                }
                _ => None,
            },
            _ => {
                c.at(
                    span,
                    format!("{name}: give either `schedule` and `duration`, or `start` and `end`"),
                    "e.g. schedule = \"0 3 * * 0\" with duration = \"2h\" (Sundays 03:00-05:00), or start/end dates",
                );
                None
            }
        };
        let selector = Selector {
            stores: m.stores.clone().unwrap_or_default(),
            tags: m.tags.clone().unwrap_or_default(),
            marketplaces: m.marketplaces.clone().unwrap_or_default(),
        };
        window.map(|window| Maintenance {
            name,
            window,
            selector,
        })
    }
}
