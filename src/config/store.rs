//! `[[store]]`: one store to watch.

use super::*;

/// What checking a store needs from the rest of the config, and what it remembers between
/// stores (ids seen, schedules parsed).
pub(super) struct StoreCx<'a> {
    pub(super) defaults: &'a Defaults,
    pub(super) raw_defaults: &'a RawDefaults,
    pub(super) endpoints: &'a Endpoints,
    pub(super) channel_names: &'a HashSet<String>,
    /// The daemon's timezone (`login_hours` without a zone of its own).
    pub(super) timezone: crate::zone::Zone,
    /// Offsets, located only for a duplicate: locating walks the text from its start.
    pub(super) seen: HashMap<String, usize>,
    /// Stores that spell out the same schedule share one parse.
    pub(super) schedules: HashMap<String, CronSchedule>,
}

impl Store {
    pub(super) fn from_raw(
        st: Spanned<RawStore>,
        cx: &mut StoreCx<'_>,
        c: &mut Collector<'_>,
    ) -> Option<Store> {
        let table_span = st.span();
        let st = st.into_inner();
        let id = st.id.get_ref().clone();
        if !is_valid_id(&id) {
            c.at(
                st.id.span(),
                format!("store id `{id}` is not allowed"),
                "use lowercase letters, digits, '-' and '_', starting with a letter or digit (e.g. \"ozon-main\")",
            );
        }
        if let Some(&first) = cx.seen.get(&id) {
            let first = c.src.locate(first);
            c.at(
                st.id.span(),
                format!(
                    "duplicate store id `{id}` (first defined at line {})",
                    first.line
                ),
                "give every [[store]] its own id",
            );
        } else {
            cx.seen.insert(id.clone(), st.id.span().start);
        }
        let marketplace = *st.marketplace.get_ref();
        let account = match &st.account {
            None => None,
            Some(v) => match scalar_string(v.get_ref()) {
                Some(s) if !s.is_empty() => Some(s),
                _ => {
                    c.at(
                        v.span(),
                        "account must be a number or a string",
                        "write the account number, e.g. account = \"1234567\"",
                    );
                    None
                }
            },
        };
        if account.is_none() && st.account.is_none() && marketplace.spec().account_required {
            c.at(
                table_span.clone(),
                format!("store `{id}` has no `account`"),
                marketplace.spec().account_help,
            );
        }
        let spec = marketplace.spec();
        // "na", "eu" or "fe"
        let quoted = || {
            let q: Vec<String> = spec.regions.iter().map(|r| format!("\"{r}\"")).collect();
            match q.split_last() {
                Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
                _ => q.join(""),
            }
        };
        let region = match (&st.region, spec.regions.is_empty()) {
            (None, false) => {
                c.at(
                    table_span.clone(),
                    format!("{} store `{id}` has no `region`", spec.display_name),
                    format!("add region = {} ({})", quoted(), spec.region_help),
                );
                None
            }
            (Some(r), false) => {
                let want = r.get_ref().trim().to_ascii_lowercase();
                let found = spec.regions.iter().copied().find(|x| *x == want);
                if found.is_none() {
                    c.at(
                        r.span(),
                        format!(
                            "unknown {} region `{}`",
                            spec.display_name,
                            crate::outcome::sanitize(r.get_ref(), 20)
                        ),
                        format!("use {} ({})", quoted(), spec.region_help),
                    );
                }
                found
            }
            (Some(_), true) => {
                c.at(
                    table_span.clone(),
                    format!(
                        "store `{id}`: {} stores take no `region`",
                        spec.display_name
                    ),
                    "remove it",
                );
                None
            }
            (None, true) => None,
        };
        if marketplace != Marketplace::Amazon && st.marketplaces.is_some() {
            c.at(
                table_span.clone(),
                format!("store `{id}`: `marketplaces` applies only to Amazon stores"),
                "remove it",
            );
        }
        let schedule = match &st.schedule {
            // Stores that spell out the same schedule share one parse.
            Some(s) => match cx.schedules.get(s.get_ref()) {
                Some(parsed) => Some(parsed.clone()),
                None => {
                    let parsed = schedule_field(c, s);
                    if let Some(p) = &parsed {
                        cx.schedules.insert(s.get_ref().clone(), p.clone());
                    }
                    parsed
                }
            },
            None => Some(cx.defaults.schedule.clone()),
        };
        // The minimum intervals protect real marketplaces; fakes on loopback may be polled fast.
        // The endpoints this store talks to: its own region's (of the regions) and the rest.
        let on_loopback = spec
            .endpoints
            .iter()
            .filter(|e| !spec.regions.contains(&e.key) || region == Some(e.key))
            .all(|e| is_loopback_host(cx.endpoints.get(marketplace, e.key)));
        if let Some(sched) = schedule.as_ref().filter(|_| !on_loopback) {
            let min = marketplace.min_check_interval();
            if sched.min_interval() < min {
                let (span, whose) = match &st.schedule {
                    Some(s) => (s.span(), "its schedule"),
                    None => (
                        cx.raw_defaults
                            .schedule
                            .as_ref()
                            .map_or(table_span.clone(), |s| s.span()),
                        "the default schedule",
                    ),
                };
                c.at(
                    span,
                    format!(
                        "store `{id}`: {whose} `{}` checks more often than {} allows (at most every {})",
                        sched.as_str(),
                        marketplace.display_name(),
                        crate::duration::format(min)
                    ),
                    format!(
                        "use a schedule such as \"*/{} * * * *\" or slower; tighter checks get the key throttled",
                        (min.as_secs() / 60).max(1)
                    ),
                );
            }
        }
        let timeout = duration_field(
            c,
            st.timeout.as_ref(),
            cx.defaults.timeout,
            "timeout",
            Duration::from_secs(1),
        );
        let store_channels = match &st.channels {
            Some(l) => channel_refs(c, l, cx.channel_names),
            None => cx.defaults.channels.clone(),
        };
        let proxy = st.proxy.as_ref().and_then(|p| match Url::parse(p.get_ref()) {
            Ok(u) if matches!(u.scheme(), "http" | "https" | "socks5" | "socks5h") => {
                if u.password().is_some() {
                    c.at(
                        p.span(),
                        "the proxy URL carries a password",
                        format!("remove it here and put proxy_password in the vault: storeguard vault edit store/{id}"),
                    );
                    None
                } else {
                    Some(u)
                }
            }
            Ok(u) => {
                c.at(p.span(), format!("proxy scheme `{}` is not supported", u.scheme()), "use http://, https:// or socks5://");
                None
            }
            Err(e) => {
                c.at(p.span(), format!("`{}` is not a proxy URL ({e})", p.get_ref()), "write it like \"socks5://10.0.0.2:1080\"");
                None
            }
        });
        let login_hours = st.login_hours.as_ref().and_then(|h| {
            match LoginHours::parse(h.get_ref(), cx.timezone) {
                Ok(v) => Some(v),
                Err(e) => {
                    c.at(
                        h.span(),
                        format!("login_hours: {e}"),
                        "write it like \"08:00-22:00 Asia/Shanghai\" (a range past midnight, like \"20:00-04:00\", is fine)",
                    );
                    None
                }
            }
        });
        let name = st.name.clone().unwrap_or_else(|| id.clone());
        schedule.map(|schedule| Store {
            id,
            marketplace,
            name,
            account,
            region,
            marketplaces: st.marketplaces.clone().unwrap_or_default(),
            schedule,
            timeout,
            channels: store_channels,
            proxy,
            login_hours,
            tags: st.tags.clone(),
            enabled: st.enabled,
        })
    }
}
