//! IANA timezones for schedules and messages.
//!
//! A name is looked up once in the tz database built into the binary (jiff's bundle of TZif
//! data) and kept for the life of the process, so a [`Zone`] is a `Copy` handle that costs
//! nothing to pass around. There are about 600 names, so what is kept is bounded. [`Zone`] is a
//! [`chrono::TimeZone`]: cron's schedules and chrono's formatting work in it directly.
//!
//! Local times follow chrono's rules: a time in a gap (the hour skipped when clocks go forward)
//! has no instant, and a time in a fold (the hour repeated when they go back) has two, the
//! earlier first. `%Z` prints the zone's abbreviation at that instant ("CST", "CEST", "+04").

use std::fmt;
use std::str::FromStr;
use std::sync::{Mutex, OnceLock, PoisonError};

use chrono::{FixedOffset, MappedLocalTime, NaiveDate, NaiveDateTime, NaiveTime, TimeZone};
use jiff::tz::{AmbiguousOffset, TimeZoneDatabase};

/// One IANA timezone, by its canonical name.
#[derive(Clone, Copy)]
pub struct Zone(&'static Known);

struct Known {
    name: &'static str,
    tz: jiff::tz::TimeZone,
}

static UTC_ZONE: Known = Known {
    name: "UTC",
    tz: jiff::tz::TimeZone::UTC,
};

/// A name that is not in the tz database.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown timezone")]
pub struct UnknownZone;

fn database() -> &'static TimeZoneDatabase {
    static DB: OnceLock<TimeZoneDatabase> = OnceLock::new();
    DB.get_or_init(TimeZoneDatabase::bundled)
}

/// Every zone looked up so far: at most one entry per name in the database.
static KNOWN: Mutex<Vec<&'static Known>> = Mutex::new(Vec::new());

impl Zone {
    pub const UTC: Zone = Zone(&UTC_ZONE);

    /// The zone of an IANA name such as "Asia/Shanghai" (ASCII case does not matter).
    pub fn named(name: &str) -> Result<Zone, UnknownZone> {
        if name.eq_ignore_ascii_case("UTC") {
            return Ok(Zone::UTC);
        }
        let mut known = KNOWN.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(k) = known.iter().find(|k| k.name.eq_ignore_ascii_case(name)) {
            return Ok(Zone(k));
        }
        let tz = database().get(name).map_err(|_| UnknownZone)?;
        // The database answers `Etc/Unknown` with a stand-in zone; it is no place's time.
        let canonical = tz
            .iana_name()
            .filter(|n| *n != "Etc/Unknown")
            .ok_or(UnknownZone)?;
        if let Some(k) = known.iter().find(|k| k.name == canonical) {
            return Ok(Zone(k));
        }
        let name: &'static str = Box::leak(canonical.to_owned().into_boxed_str());
        let k: &'static Known = Box::leak(Box::new(Known { name, tz }));
        known.push(k);
        Ok(Zone(k))
    }

    /// The canonical IANA name.
    pub fn name(self) -> &'static str {
        self.0.name
    }

    /// The offset and abbreviation in force at `ts`.
    fn at(self, ts: jiff::Timestamp) -> ZoneOffset {
        let info = self.0.tz.to_offset_info(ts);
        ZoneOffset {
            zone: self,
            fix: fixed(info.offset()),
            abbr: Abbr::new(info.abbreviation()),
        }
    }

    /// The offset in force at the instant `local` names under `offset`.
    fn local_at(self, local: &NaiveDateTime, offset: jiff::tz::Offset) -> ZoneOffset {
        let utc = local.and_utc().timestamp() - i64::from(offset.seconds());
        self.at(timestamp(utc))
    }
}

impl PartialEq for Zone {
    fn eq(&self, other: &Zone) -> bool {
        self.0.name == other.0.name
    }
}

impl Eq for Zone {}

impl fmt::Debug for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.name)
    }
}

impl fmt::Display for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.name)
    }
}

impl FromStr for Zone {
    type Err = UnknownZone;

    fn from_str(s: &str) -> Result<Zone, UnknownZone> {
        Zone::named(s)
    }
}

/// Seconds since the epoch as jiff's instant, held to the years jiff knows (±9999): further
/// out, the offset is that of the nearest instant it knows.
fn timestamp(secs: i64) -> jiff::Timestamp {
    let min = jiff::Timestamp::MIN.as_second();
    let max = jiff::Timestamp::MAX.as_second();
    jiff::Timestamp::from_second(secs.clamp(min, max)).unwrap_or(jiff::Timestamp::UNIX_EPOCH)
}

/// jiff allows offsets up to ±25:59:59, chrono up to ±23:59:59; no zone has used either.
fn fixed(offset: jiff::tz::Offset) -> FixedOffset {
    FixedOffset::east_opt(offset.seconds())
        .unwrap_or_else(|| FixedOffset::east_opt(0).expect("zero is an offset"))
}

/// A local time as jiff's civil time, or `None` past the years it knows.
fn civil(local: &NaiveDateTime) -> Option<jiff::civil::DateTime> {
    use chrono::{Datelike, Timelike};
    let year = i16::try_from(local.year()).ok()?;
    jiff::civil::DateTime::new(
        year,
        local.month() as i8,
        local.day() as i8,
        local.hour() as i8,
        local.minute() as i8,
        // A leap second (chrono's 60th) is the last second of its minute.
        local.second().min(59) as i8,
        local.nanosecond().min(999_999_999) as i32,
    )
    .ok()
}

/// A zone abbreviation kept inline ("CST", "CEST", "+0530"), so an offset stays `Copy`.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Abbr {
    len: u8,
    bytes: [u8; 7],
}

impl Abbr {
    /// An abbreviation longer than 7 bytes (none is, in the database) is not kept: the offset
    /// prints as digits instead.
    fn new(s: &str) -> Abbr {
        let mut bytes = [0; 7];
        match bytes.get_mut(..s.len()) {
            Some(b) => {
                b.copy_from_slice(s.as_bytes());
                Abbr {
                    len: s.len() as u8,
                    bytes,
                }
            }
            None => Abbr { len: 0, bytes },
        }
    }

    fn as_str(&self) -> Option<&str> {
        let s = std::str::from_utf8(&self.bytes[..usize::from(self.len)]).ok()?;
        (!s.is_empty()).then_some(s)
    }
}

/// The offset of a [`Zone`] at one instant, with its abbreviation.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ZoneOffset {
    zone: Zone,
    fix: FixedOffset,
    abbr: Abbr,
}

impl chrono::Offset for ZoneOffset {
    fn fix(&self) -> FixedOffset {
        self.fix
    }
}

impl fmt::Display for ZoneOffset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.abbr.as_str() {
            Some(a) => f.write_str(a),
            None => write!(f, "{}", self.fix),
        }
    }
}

impl fmt::Debug for ZoneOffset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl TimeZone for Zone {
    type Offset = ZoneOffset;

    fn from_offset(offset: &ZoneOffset) -> Zone {
        offset.zone
    }

    fn offset_from_local_date(&self, local: &NaiveDate) -> MappedLocalTime<ZoneOffset> {
        self.offset_from_local_datetime(&local.and_time(NaiveTime::MIN))
    }

    fn offset_from_local_datetime(&self, local: &NaiveDateTime) -> MappedLocalTime<ZoneOffset> {
        let Some(civil) = civil(local) else {
            // Past the years the database knows: the offset of the nearest instant it knows.
            return MappedLocalTime::Single(self.at(timestamp(local.and_utc().timestamp())));
        };
        match self.0.tz.to_ambiguous_timestamp(civil).offset() {
            AmbiguousOffset::Unambiguous { offset } => {
                MappedLocalTime::Single(self.local_at(local, offset))
            }
            AmbiguousOffset::Gap { .. } => MappedLocalTime::None,
            // The offset before the fold is the larger one, so its instant is the earlier.
            AmbiguousOffset::Fold { before, after } => MappedLocalTime::Ambiguous(
                self.local_at(local, before),
                self.local_at(local, after),
            ),
        }
    }

    fn offset_from_utc_date(&self, utc: &NaiveDate) -> ZoneOffset {
        self.offset_from_utc_datetime(&utc.and_time(NaiveTime::MIN))
    }

    fn offset_from_utc_datetime(&self, utc: &NaiveDateTime) -> ZoneOffset {
        self.at(timestamp(utc.and_utc().timestamp()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Offset, Utc};

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> chrono::DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    #[test]
    fn names_are_found_once_and_compare_by_name() {
        let a = Zone::named("Asia/Shanghai").unwrap();
        let b: Zone = "asia/SHANGHAI".parse().unwrap();
        assert_eq!(a.name(), "Asia/Shanghai");
        assert_eq!(b.name(), "Asia/Shanghai");
        assert!(std::ptr::eq(a.0, b.0));
        assert_eq!(a, b);
        assert_ne!(a, Zone::UTC);
        assert_eq!(Zone::named("utc").unwrap(), Zone::UTC);
        assert_eq!(Zone::UTC.to_string(), "UTC");
        for bad in [
            "Mars/Olympus",
            "",
            "Etc/Unknown",
            "../../etc/passwd",
            "Asia/",
        ] {
            assert_eq!(Zone::named(bad), Err(UnknownZone), "{bad}");
        }
    }

    #[test]
    fn utc_instants_get_the_offset_and_abbreviation_in_force() {
        let sh = Zone::named("Asia/Shanghai").unwrap();
        let t = utc(2026, 11, 1, 1, 0).with_timezone(&sh);
        assert_eq!(
            t.format("%Y-%m-%d %H:%M %Z").to_string(),
            "2026-11-01 09:00 CST"
        );
        let berlin = Zone::named("Europe/Berlin").unwrap();
        let summer = utc(2026, 7, 1, 12, 0).with_timezone(&berlin);
        assert_eq!(summer.format("%H:%M %Z %z").to_string(), "14:00 CEST +0200");
        let winter = utc(2026, 12, 1, 12, 0).with_timezone(&berlin);
        assert_eq!(winter.format("%H:%M %Z").to_string(), "13:00 CET");
        let dubai = Zone::named("Asia/Dubai").unwrap();
        assert_eq!(
            utc(2026, 1, 1, 0, 0)
                .with_timezone(&dubai)
                .format("%Z")
                .to_string(),
            "+04"
        );
        // Far outside the database's years: an offset, not a panic.
        let far = chrono::DateTime::<Utc>::MAX_UTC.with_timezone(&berlin);
        assert_eq!(far.offset().fix().local_minus_utc(), 3600);
    }

    #[test]
    fn local_times_in_gaps_have_none_and_in_folds_two_earlier_first() {
        let berlin = Zone::named("Europe/Berlin").unwrap();
        let at = |d: u32, h: u32, m: u32| {
            NaiveDate::from_ymd_opt(2026, if d == 29 { 3 } else { 10 }, d)
                .unwrap()
                .and_hms_opt(h, m, 0)
                .unwrap()
        };
        // 2026-03-29 02:00 → 03:00 in Berlin.
        assert_eq!(
            berlin.from_local_datetime(&at(29, 2, 30)),
            MappedLocalTime::None
        );
        // 2026-10-25 03:00 → 02:00.
        match berlin.from_local_datetime(&at(25, 2, 30)) {
            MappedLocalTime::Ambiguous(early, late) => {
                assert_eq!(early.with_timezone(&Utc), utc(2026, 10, 25, 0, 30));
                assert_eq!(late.with_timezone(&Utc), utc(2026, 10, 25, 1, 30));
                assert_eq!(early.format("%Z").to_string(), "CEST");
                assert_eq!(late.format("%Z").to_string(), "CET");
            }
            other => panic!("{other:?}"),
        }
        let single = berlin.from_local_datetime(&at(25, 12, 0)).single().unwrap();
        assert_eq!(single.with_timezone(&Utc), utc(2026, 10, 25, 11, 0));
    }

    /// Every zone chrono-tz knows is here, with the same offsets, abbreviations and local-time
    /// answers, 2020-2025: each day at midnight UTC, and every quarter hour of the days the
    /// offset changes. The bundle holds tz 2026f, chrono-tz 2025b; in between, tz 2025c
    /// corrected Moldova's clock changes since 2022 (at 02:00 and 03:00 local, not an hour
    /// before), and that is the only difference.
    #[test]
    fn every_zone_agrees_with_chrono_tz() {
        let same =
            |old: chrono_tz::Tz, new: Zone, t: chrono::DateTime<Utc>| -> Result<(), String> {
                let a = t.with_timezone(&old);
                let b = t.with_timezone(&new);
                if a.offset().fix() != b.offset().fix()
                    || a.format("%Z").to_string() != b.format("%Z").to_string()
                {
                    return Err(format!("{} at {t}: {a} vs {b}", old.name()));
                }
                let local = a.naive_local() + chrono::Duration::minutes(30);
                let la = old
                    .from_local_datetime(&local)
                    .map(|x| x.with_timezone(&Utc));
                let lb = new
                    .from_local_datetime(&local)
                    .map(|x| x.with_timezone(&Utc));
                if la != lb {
                    return Err(format!("{} local {local}: {la:?} vs {lb:?}", old.name()));
                }
                Ok(())
            };
        let mut differ = Vec::new();
        let mut checked = 0;
        for old in chrono_tz::TZ_VARIANTS {
            let Ok(new) = Zone::named(old.name()) else {
                differ.push(format!("{} is missing", old.name()));
                continue;
            };
            let day = chrono::Duration::days(1);
            let mut t = utc(2020, 1, 1, 0, 0);
            let found = loop {
                if t >= utc(2026, 1, 1, 0, 0) {
                    break Ok(());
                }
                let changes = t.with_timezone(&old).offset().fix()
                    != (t + day).with_timezone(&old).offset().fix();
                let step = if changes { 15 } else { 24 * 60 };
                let end = t + day;
                let mut r = Ok(());
                while t < end && r.is_ok() {
                    r = same(old, new, t);
                    checked += 1;
                    t += chrono::Duration::minutes(step);
                }
                if r.is_err() {
                    break r;
                }
            };
            if let Err(e) = found {
                differ.push(e);
            }
        }
        assert!(checked > 1_000_000, "{checked}");
        let zones: Vec<&str> = differ
            .iter()
            .map(|d| d.split(' ').next().unwrap())
            .collect();
        assert_eq!(zones, ["Europe/Chisinau", "Europe/Tiraspol"], "{differ:#?}");
    }
}
