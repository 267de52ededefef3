//! Human durations in the config: `"90s"`, `"6h"`, `"14d"`.

use std::time::Duration;

/// Parses a human duration such as `90s`, `15m`, `6h`, `14d` or `1h 30m`.
pub fn parse(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("empty duration; write it like \"90s\", \"15m\", \"6h\" or \"14d\"".into());
    }
    humantime::parse_duration(t).map_err(|e| {
        format!("`{t}` is not a duration ({e}); write it like \"90s\", \"15m\", \"6h\" or \"14d\"")
    })
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
    }

    #[test]
    fn formats_round_numbers() {
        assert_eq!(format(Duration::from_secs(14 * 86_400)), "14d");
        assert_eq!(format(Duration::from_secs(7200)), "2h");
        assert_eq!(format(Duration::from_secs(90)), "90s");
        assert_eq!(format(Duration::from_millis(1500)), "1500ms");
    }
}
