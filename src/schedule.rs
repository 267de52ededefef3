//! Cron schedules for checks.
//!
//! Accepts the 5-field crontab form (`*/10 * * * *`) and the 6-field form with seconds in front
//! (`0 */10 * * * *`). Day-of-week numbers follow crontab (0 and 7 are Sunday, 1 is Monday); the
//! `cron` crate numbers Sunday as 1, so numbers are rewritten to names before parsing.

use chrono::{DateTime, TimeZone, Utc};
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

/// A parsed cron schedule, remembering the text the user wrote.
///
/// Cheap to clone (every store of a config shares its schedule) and its shortest interval is
/// computed once, at parse time: it sets every store's jitter and is read on every check.
#[derive(Clone)]
pub struct CronSchedule {
    text: String,
    schedule: Arc<cron::Schedule>,
    min_interval: Duration,
}

impl fmt::Debug for CronSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CronSchedule({:?})", self.text)
    }
}

impl PartialEq for CronSchedule {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

const DAY_NAMES: [&str; 8] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN"];

fn crontab_day_of_week(field: &str) -> Result<String, String> {
    // Rewrite numbers outside a step (`*/2` keeps its 2) to day names.
    let mut out = String::with_capacity(field.len() + 8);
    let mut chars = field.chars().peekable();
    let mut after_slash = false;
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() {
            let mut num = String::from(c);
            while let Some(d) = chars.peek().copied().filter(char::is_ascii_digit) {
                num.push(d);
                chars.next();
            }
            if after_slash {
                out.push_str(&num);
            } else {
                let n: usize = num.parse().map_err(|_| format!("`{num}` is not a day"))?;
                let name = DAY_NAMES.get(n).ok_or_else(|| {
                    format!("day of week `{n}` is out of range (0-7, 0 and 7 are Sunday)")
                })?;
                out.push_str(name);
            }
            after_slash = false;
        } else {
            after_slash = c == '/';
            out.push(c);
        }
    }
    Ok(out)
}

impl CronSchedule {
    /// Parses a 5- or 6-field cron expression.
    pub fn parse(text: &str) -> Result<Self, String> {
        let fields: Vec<&str> = text.split_whitespace().collect();
        let mut six: Vec<String> = match fields.len() {
            5 => std::iter::once("0")
                .chain(fields.iter().copied())
                .map(String::from)
                .collect(),
            6 => fields.iter().map(|s| s.to_string()).collect(),
            n => {
                return Err(format!(
                    "`{text}` has {n} fields; write 5 (minute hour day month weekday, as in crontab) \
                     or 6 (with seconds first)"
                ));
            }
        };
        six[5] = crontab_day_of_week(&six[5])?;
        let schedule = cron::Schedule::from_str(&six.join(" "))
            .map_err(|e| format!("`{text}` is not a valid cron schedule: {e}"))?;
        if schedule.after(&reference_instant()).next().is_none() {
            return Err(format!(
                "`{text}` never fires; check the day and month fields"
            ));
        }
        let min_interval = sample_min_interval(&schedule);
        Ok(CronSchedule {
            text: text.trim().to_string(),
            schedule: Arc::new(schedule),
            min_interval,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The next firing strictly after `after`, in timezone `tz`.
    pub fn next_after<Tz: TimeZone>(&self, after: &DateTime<Tz>) -> Option<DateTime<Tz>> {
        self.schedule.after(after).next()
    }

    /// The shortest gap between two firings, sampled over a year of firings (bounded work,
    /// done once when the schedule is parsed).
    pub fn min_interval(&self) -> Duration {
        self.min_interval
    }
}

fn sample_min_interval(schedule: &cron::Schedule) -> Duration {
    let start = reference_instant();
    let mut prev: Option<DateTime<Utc>> = None;
    let mut min = Duration::MAX;
    // 1,000 consecutive firings cover every pattern that matters for rate limits (the
    // tightest gaps repeat within an hour or a day); the bound keeps validation fast.
    for t in schedule.after(&start).take(1000) {
        if let Some(p) = prev {
            let gap = (t - p).to_std().unwrap_or(Duration::ZERO);
            min = min.min(gap);
        }
        prev = Some(t);
    }
    min
}

/// A store's fixed offset after each firing, so that many stores on the same schedule do not
/// all fire in the same millisecond: up to a tenth of the interval, at most 30 s, derived from
/// the store id (stable across restarts).
pub fn jitter(store_id: &str, schedule: &CronSchedule) -> Duration {
    use sha2::{Digest, Sha256};
    let span = (schedule.min_interval() / 10).min(Duration::from_secs(30));
    if span.is_zero() {
        return Duration::ZERO;
    }
    let h = Sha256::digest(store_id.as_bytes());
    let n = u64::from_le_bytes(h[..8].try_into().expect("8 bytes"));
    Duration::from_millis(n % span.as_millis().max(1) as u64)
}

/// When a store is next due after `now`: the next firing in the daemon's timezone, plus the
/// store's jitter. Missed firings are skipped, never replayed.
pub fn next_due(
    schedule: &CronSchedule,
    tz: crate::zone::Zone,
    store_id: &str,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let local = now.with_timezone(&tz);
    let next = schedule.next_after(&local)?.with_timezone(&Utc);
    Some(next + chrono::Duration::from_std(jitter(store_id, schedule)).unwrap_or_default())
}

fn reference_instant() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
        .single()
        .expect("valid date")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Datelike;

    #[test]
    fn five_and_six_fields() {
        let five = CronSchedule::parse("*/10 * * * *").unwrap();
        assert_eq!(five.min_interval(), Duration::from_secs(600));
        let six = CronSchedule::parse("30 */5 * * * *").unwrap();
        assert_eq!(six.min_interval(), Duration::from_secs(300));
        let every_second = CronSchedule::parse("* * * * * *").unwrap();
        assert_eq!(every_second.min_interval(), Duration::from_secs(1));
    }

    #[test]
    fn weekday_numbers_follow_crontab() {
        // 1-5 is Monday to Friday in crontab.
        let s = CronSchedule::parse("0 9 * * 1-5").unwrap();
        let next = s.next_after(&reference_instant()).unwrap(); // 2026-01-01 is a Thursday
        assert_eq!(next.weekday(), chrono::Weekday::Thu);
        let sunday = CronSchedule::parse("0 9 * * 0").unwrap();
        assert_eq!(
            sunday.next_after(&reference_instant()).unwrap().weekday(),
            chrono::Weekday::Sun
        );
        let seven = CronSchedule::parse("0 9 * * 7").unwrap();
        assert_eq!(
            seven.next_after(&reference_instant()).unwrap().weekday(),
            chrono::Weekday::Sun
        );
        let step = CronSchedule::parse("0 9 * * */2").unwrap();
        assert!(step.next_after(&reference_instant()).is_some());
    }

    #[test]
    fn jitter_spreads_stores_and_is_stable() {
        let s = CronSchedule::parse("*/10 * * * *").unwrap();
        let a = jitter("store-a", &s);
        assert_eq!(a, jitter("store-a", &s));
        assert!(a < Duration::from_secs(30));
        let distinct: std::collections::HashSet<_> = (0..1000)
            .map(|i| jitter(&format!("s{i}"), &s).as_millis())
            .collect();
        assert!(distinct.len() > 900, "{}", distinct.len());
    }

    #[test]
    fn next_due_follows_the_timezone() {
        let s = CronSchedule::parse("0 9 * * *").unwrap();
        let tz: crate::zone::Zone = "Asia/Shanghai".parse().unwrap();
        let now = Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap();
        let due = next_due(&s, tz, "x", now).unwrap();
        // 09:00 in Shanghai is 01:00 UTC, plus at most 30 s of jitter.
        assert!(due >= Utc.with_ymd_and_hms(2026, 11, 1, 1, 0, 0).unwrap());
        assert!(due <= Utc.with_ymd_and_hms(2026, 11, 1, 1, 0, 30).unwrap());
    }

    #[test]
    fn errors_say_what_to_write() {
        assert!(
            CronSchedule::parse("* * *")
                .unwrap_err()
                .contains("has 3 fields")
        );
        assert!(CronSchedule::parse("61 * * * *").is_err());
        assert!(
            CronSchedule::parse("0 0 30 2 *")
                .unwrap_err()
                .contains("never fires")
        );
        assert!(
            CronSchedule::parse("0 9 * * 8")
                .unwrap_err()
                .contains("out of range")
        );
    }
}
