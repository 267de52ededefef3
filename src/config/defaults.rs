//! `[defaults]`: what every store gets unless it says otherwise.

use super::*;

impl Defaults {
    pub(super) fn from_raw(
        rd: &RawDefaults,
        c: &mut Collector<'_>,
        channel_names: &HashSet<String>,
    ) -> Defaults {
        let default_schedule = CronSchedule::parse("*/10 * * * *").expect("built-in schedule");
        let schedule = rd
            .schedule
            .as_ref()
            .and_then(|s| schedule_field(c, s))
            .unwrap_or(default_schedule);
        let timeout = duration_field(
            c,
            rd.timeout.as_ref(),
            Duration::from_secs(30),
            "timeout",
            Duration::from_secs(1),
        );
        let threshold =
            |c: &mut Collector<'_>, v: &Option<Spanned<u32>>, default: u32, what: &str| match v {
                None => default,
                Some(v) if *v.get_ref() == 0 => {
                    c.at(
                        v.span(),
                        format!("{what} must be at least 1"),
                        "use 1 to act on the first check",
                    );
                    default
                }
                Some(v) => *v.get_ref(),
            };
        let failure_threshold = threshold(c, &rd.failure_threshold, 3, "failure_threshold");
        let success_threshold = threshold(c, &rd.success_threshold, 2, "success_threshold");
        let remind_every = duration_field(
            c,
            rd.remind_every.as_ref(),
            Duration::from_secs(6 * 3600),
            "remind_every",
            Duration::from_secs(1),
        );
        let password_max_age = duration_field(
            c,
            rd.password_max_age.as_ref(),
            Duration::from_secs(90 * 86_400),
            "password_max_age",
            Duration::from_secs(86_400),
        );
        let mut expiry_warning: Vec<Duration> = match &rd.expiry_warning {
            None => vec![14, 3, 1]
                .into_iter()
                .map(|d| Duration::from_secs(d * 86_400))
                .collect(),
            Some(list) => list
                .iter()
                .filter_map(|v| match crate::duration::parse(v.get_ref()) {
                    Ok(d) if !d.is_zero() => Some(d),
                    Ok(_) => {
                        c.at(
                            v.span(),
                            "an expiry warning of zero never fires",
                            "use e.g. \"1d\"",
                        );
                        None
                    }
                    Err(e) => {
                        c.at(v.span(), format!("expiry_warning: {e}"), "");
                        None
                    }
                })
                .collect(),
        };
        expiry_warning.sort_by(|a, b| b.cmp(a));
        expiry_warning.dedup();

        let default_channels = rd
            .channels
            .as_ref()
            .map(|l| channel_refs(c, l, channel_names))
            .unwrap_or_default();

        Defaults {
            schedule,
            timeout,
            failure_threshold,
            success_threshold,
            remind_every,
            expiry_warning,
            password_max_age,
            channels: default_channels,
        }
    }
}

/// Channel names as given, each checked against the `[[channel]]` tables, without repeats.
pub(super) fn channel_refs(
    c: &mut Collector<'_>,
    list: &[Spanned<String>],
    names: &HashSet<String>,
) -> Vec<String> {
    let mut out = Vec::new();
    for n in list {
        if names.contains(n.get_ref()) {
            if !out.contains(n.get_ref()) {
                out.push(n.get_ref().clone());
            }
        } else {
            let known: Vec<&str> = {
                let mut v: Vec<&str> = names.iter().map(String::as_str).collect();
                v.sort_unstable();
                v
            };
            c.at(
                n.span(),
                format!("unknown channel `{}`", n.get_ref()),
                if known.is_empty() {
                    "define it in a [[channel]] table first".to_string()
                } else {
                    format!(
                        "define it in a [[channel]] table, or use one of: {}",
                        known.join(", ")
                    )
                },
            );
        }
    }
    out
}
