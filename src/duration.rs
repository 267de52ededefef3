//! Human durations in the config: `"90s"`, `"6h"`, `"14d"`.

use std::time::Duration;

/// The longest duration storeguard accepts anywhere (100 years). Longer ones are refused
/// rather than wrapped: "keep forever" written as `200000000000d` would otherwise overflow the
/// date maths and make a cutoff of *now*.
pub const MAX: Duration = Duration::from_secs(36_500 * 86_400);

/// Parses a human duration such as `90s`, `15m`, `6h`, `14d` or `1h 30m` (at most [`MAX`]).
pub fn parse(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("empty duration; write it like \"90s\", \"15m\", \"6h\" or \"14d\"".into());
    }
    let shown = crate::outcome::sanitize(t, 40);
    let d = humantime::parse_duration(t).map_err(|e| {
        format!(
            "`{shown}` is not a duration ({e}); write it like \"90s\", \"15m\", \"6h\" or \"14d\""
        )
    })?;
    if d > MAX {
        return Err(format!(
            "`{shown}` is longer than 100 years (36500d), the longest duration storeguard takes"
        ));
    }
    Ok(d)
}

/// `t - d`, or `None` when it would leave the calendar.
pub fn before(
    t: chrono::DateTime<chrono::Utc>,
    d: Duration,
) -> Option<chrono::DateTime<chrono::Utc>> {
    t.checked_sub_signed(chrono::Duration::from_std(d).ok()?)
}

/// `t + d`, or `None` when it would leave the calendar.
pub fn after(
    t: chrono::DateTime<chrono::Utc>,
    d: Duration,
) -> Option<chrono::DateTime<chrono::Utc>> {
    t.checked_add_signed(chrono::Duration::from_std(d).ok()?)
}

/// Formats a duration compactly for messages ("14d", "6h", "90s").
pub fn format(d: Duration) -> String {
    let s = d.as_secs();
    if s != 0 && s.is_multiple_of(86_400) {
        format!("{}d", s / 86_400)
    } else if s != 0 && s.is_multiple_of(3_600) {
        format!("{}h", s / 3_600)
    } else if s != 0 && s.is_multiple_of(60) {
        format!("{}m", s / 60)
    } else if d.subsec_millis() != 0 {
        format!("{}ms", d.as_millis())
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_forms_the_config_documents() {
        assert_eq!(parse("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse("6h").unwrap(), Duration::from_secs(6 * 3600));
        assert_eq!(parse("14d").unwrap(), Duration::from_secs(14 * 86_400));
        assert_eq!(parse("1h 30m").unwrap(), Duration::from_secs(5400));
        assert!(parse("").is_err());
        assert!(parse("soon").unwrap_err().contains("write it like"));
        // D7/D8: "keep forever" spellings are refused, not wrapped.
        assert!(parse("36500d").is_ok());
        for huge in ["36501d", "100000000d", "200000000000d"] {
            assert!(parse(huge).unwrap_err().contains("100 years"), "{huge}");
        }
        assert!(!parse("\x1b]0;owned\x07").unwrap_err().contains('\x1b'));
    }

    #[test]
    fn date_maths_never_panics() {
        let now = chrono::Utc::now();
        assert!(before(now, MAX).is_some());
        assert!(after(now, MAX).is_some());
        assert!(before(now, Duration::from_secs(u64::MAX)).is_none());
        assert!(
            after(
                chrono::DateTime::<chrono::Utc>::MAX_UTC,
                Duration::from_secs(1)
            )
            .is_none()
        );
    }

    #[test]
    fn formats_round_numbers() {
        assert_eq!(format(Duration::from_secs(14 * 86_400)), "14d");
        assert_eq!(format(Duration::from_secs(7200)), "2h");
        assert_eq!(format(Duration::from_secs(90)), "90s");
        assert_eq!(format(Duration::from_millis(1500)), "1500ms");
    }
}
