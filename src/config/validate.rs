//! From the raw schema to the validated types: every rule checked once, in one place.

use super::*;

/// The toml error's own sentence, without the quoted source line (which could hold a value).
pub(super) fn toml_message(e: &toml::de::Error) -> String {
    let mut m = e.message().trim().replace('\n', " ");
    // "invalid type: string \"…\", expected u32": drop the quoted value, say the type in words.
    if m.starts_with("invalid type") || m.starts_with("invalid value") {
        let mut out = String::with_capacity(m.len());
        let mut in_quotes = false;
        for c in m.chars() {
            if c == '"' {
                in_quotes = !in_quotes;
                continue;
            }
            if !in_quotes {
                out.push(c);
            }
        }
        m = out
            .replace("string ,", "a string,")
            .replace("integer ,", "a number,")
            .replace("expected u32", "expected a whole number")
            .replace("expected u16", "expected a port number")
            .replace("expected a boolean", "expected true or false");
    }
    if m.starts_with("unknown field") {
        m
    } else {
        // Keep messages short and on one line.
        m.chars().take(300).collect()
    }
}

pub(super) fn toml_help(e: &toml::de::Error) -> String {
    let m = e.message();
    if m.starts_with("unknown field") {
        "remove it or fix its spelling; config/storeguard.example.toml lists every option".into()
    } else if m.starts_with("unknown variant") {
        "use one of the values listed".into()
    } else if m.starts_with("invalid type") {
        "give the value the type shown (strings in quotes, numbers bare, lists in [ ])".into()
    } else if m.starts_with("missing field") {
        "add the field; config/storeguard.example.toml shows an example".into()
    } else if m.starts_with("duplicate key") {
        "a key may appear once per table; remove one of them".into()
    } else {
        "fix the TOML syntax at that position (strings need quotes, tables need [brackets])".into()
    }
}

pub(super) fn relative_to(config_path: &Path, p: &str) -> PathBuf {
    let p = PathBuf::from(p);
    if p.is_absolute() {
        p
    } else {
        config_path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .map_or_else(|| p.clone(), |d| d.join(&p))
    }
}

pub(super) fn is_loopback_host(url: &Url) -> bool {
    crate::http::is_loopback_url(url)
}

/// Parses an endpoint URL: https anywhere, plain http only to loopback.
pub fn check_endpoint(text: &str) -> Result<Url, (String, String)> {
    let url = Url::parse(text.trim()).map_err(|e| {
        (
            format!("`{text}` is not a URL ({e})"),
            "write a full URL such as \"https://api-seller.ozon.ru\"".to_string(),
        )
    })?;
    match url.scheme() {
        "https" => {}
        "http" if is_loopback_host(&url) => {}
        "http" => {
            return Err((
                format!("`{text}` uses plain http to a host that is not loopback"),
                "use https:// (plain http is allowed only to 127.0.0.1, ::1 or localhost, for tests)"
                    .into(),
            ));
        }
        other => {
            return Err((
                format!("`{text}` has scheme `{other}`"),
                "use an https:// URL".into(),
            ));
        }
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err((
            "an endpoint must not carry a user name or password".into(),
            "keep credentials in the vault, not in storeguard.toml".into(),
        ));
    }
    if url.host().is_none() {
        return Err((format!("`{text}` has no host"), "write a full URL".into()));
    }
    Ok(url)
}

pub(super) fn is_valid_id(id: &str) -> bool {
    let mut chars = id.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
        && id.len() <= 64
}

pub(super) fn duration_field(
    c: &mut Collector<'_>,
    v: Option<&Spanned<String>>,
    default: Duration,
    what: &str,
    min: Duration,
) -> Duration {
    let Some(v) = v else { return default };
    match crate::duration::parse(v.get_ref()) {
        Ok(d) if d < min => {
            c.at(
                v.span(),
                format!("{what} `{}` is too short", v.get_ref()),
                format!("use at least {}", crate::duration::format(min)),
            );
            default
        }
        Ok(d) => d,
        Err(e) => {
            c.at(v.span(), format!("{what}: {e}"), "");
            default
        }
    }
}

pub(super) fn schedule_field(c: &mut Collector<'_>, v: &Spanned<String>) -> Option<CronSchedule> {
    match CronSchedule::parse(v.get_ref()) {
        Ok(s) => Some(s),
        Err(e) => {
            c.at(
                v.span(),
                e,
                "write a crontab schedule such as \"*/10 * * * *\" (every 10 minutes)",
            );
            None
        }
    }
}

pub(super) fn endpoint_field(
    c: &mut Collector<'_>,
    v: Option<&Spanned<String>>,
    default: &Url,
) -> Url {
    match v {
        None => default.clone(),
        Some(v) => match check_endpoint(v.get_ref()) {
            Ok(u) => u,
            Err((m, h)) => {
                c.at(v.span(), m, h);
                default.clone()
            }
        },
    }
}

pub(super) fn scalar_string(v: &toml::Value) -> Option<String> {
    match v {
        toml::Value::String(s) => Some(s.trim().to_string()),
        toml::Value::Integer(i) => Some(i.to_string()),
        _ => None,
    }
}

pub(super) fn validate(raw: RawConfig, c: &mut Collector<'_>) -> Config {
    let path = c.src.path.to_path_buf();
    let d = &raw.daemon;

    let state_dir = d.state_dir.as_ref().map_or_else(
        || PathBuf::from("/var/lib/storeguard"),
        |s| relative_to(&path, s.get_ref()),
    );
    let vault_dir = d.vault_dir.as_ref().map_or_else(
        || relative_to(&path, "vault"),
        |s| relative_to(&path, s.get_ref()),
    );
    let identity = match &d.identity {
        Some(p) => relative_to(&path, p.get_ref()),
        None => match std::env::var_os("CREDENTIALS_DIRECTORY") {
            Some(dir) if Path::new(&dir).join("identity").exists() => {
                Path::new(&dir).join("identity")
            }
            _ => relative_to(&path, "identity.txt"),
        },
    };
    let listen = match &d.listen {
        None => SocketAddr::from(([127, 0, 0, 1], 9464)),
        Some(l) => match l.get_ref().parse::<SocketAddr>() {
            Ok(a) => a,
            Err(_) => {
                c.at(
                    l.span(),
                    format!("listen address `{}` is not an IP:port", l.get_ref()),
                    "write it like \"127.0.0.1:9464\" (keep it on loopback unless you set up the API token)",
                );
                SocketAddr::from(([127, 0, 0, 1], 9464))
            }
        },
    };
    let timezone = match &d.timezone {
        None => chrono_tz::UTC,
        Some(t) => match t.get_ref().parse::<chrono_tz::Tz>() {
            Ok(tz) => tz,
            Err(_) => {
                c.at(
                    t.span(),
                    format!("unknown timezone `{}`", t.get_ref()),
                    "use an IANA name such as \"Asia/Shanghai\", \"Europe/Moscow\" or \"UTC\"",
                );
                chrono_tz::UTC
            }
        },
    };
    let history_retention = duration_field(
        c,
        d.history_retention.as_ref(),
        Duration::from_secs(90 * 86_400),
        "history_retention",
        Duration::from_secs(86_400),
    );
    let daemon = DaemonConfig {
        state_dir,
        vault_dir,
        identity,
        listen,
        timezone,
        language: d.language.unwrap_or_default(),
        history_retention,
    };

    // [defaults]
    let rd = &raw.defaults;
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

    // [[channel]] first, so names can be resolved.
    let mut channels = Vec::new();
    let mut channel_names = HashSet::new();
    for ch in raw.channels {
        let span = ch.span();
        let ch = ch.into_inner();
        if let Some(ch) = validate_channel(c, ch, span, &mut channel_names) {
            channels.push(ch);
        }
    }
    let check_channel_refs =
        |c: &mut Collector<'_>, list: &[Spanned<String>], names: &HashSet<String>| -> Vec<String> {
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
        };
    let default_channels = rd
        .channels
        .as_ref()
        .map(|l| check_channel_refs(c, l, &channel_names))
        .unwrap_or_default();

    let defaults = Defaults {
        schedule,
        timeout,
        failure_threshold,
        success_threshold,
        remind_every,
        expiry_warning,
        password_max_age,
        channels: default_channels,
    };

    // [marketplace.*]
    let mut endpoints = Endpoints::default();
    for (id, table) in &raw.marketplace {
        let Some(m) = Marketplace::parse(id) else {
            c.at(
                table.span(),
                format!("unknown marketplace `{id}` in [marketplace.{id}]"),
                format!(
                    "use one of: {}",
                    Marketplace::ALL.map(|m| m.as_str()).join(", ")
                ),
            );
            continue;
        };
        let keys = m.spec().endpoints;
        for (key, value) in table.get_ref() {
            let Some(e) = keys.iter().find(|e| e.key == key) else {
                c.at(
                    value.span(),
                    format!("unknown key `{key}` in [marketplace.{id}]"),
                    format!(
                        "{} takes: {}",
                        m.display_name(),
                        keys.iter().map(|e| e.key).collect::<Vec<_>>().join(", ")
                    ),
                );
                continue;
            };
            let url = endpoint_field(c, Some(value), endpoints.get(m, e.key));
            endpoints.set(m, e.key, url);
        }
    }

    // [[store]]
    let mut stores = Vec::new();
    // Offsets, located only for a duplicate: locating walks the text from its start.
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut schedules: HashMap<String, CronSchedule> = HashMap::new();
    for st in raw.stores {
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
        if let Some(&first) = seen.get(&id) {
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
            seen.insert(id.clone(), st.id.span().start);
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
        if marketplace == Marketplace::Amazon && st.region.is_none() {
            c.at(
                table_span.clone(),
                format!("Amazon store `{id}` has no `region`"),
                "add region = \"na\", \"eu\" or \"fe\" (the Selling Partner API region of its marketplaces)",
            );
        }
        if marketplace != Marketplace::Amazon && st.region.is_some() {
            c.at(
                table_span.clone(),
                format!("store `{id}`: `region` applies only to Amazon stores"),
                "remove it",
            );
        }
        if marketplace != Marketplace::Amazon && st.marketplaces.is_some() {
            c.at(
                table_span.clone(),
                format!("store `{id}`: `marketplaces` applies only to Amazon stores"),
                "remove it",
            );
        }
        let schedule = match &st.schedule {
            // Stores that spell out the same schedule share one parse.
            Some(s) => match schedules.get(s.get_ref()) {
                Some(parsed) => Some(parsed.clone()),
                None => {
                    let parsed = schedule_field(c, s);
                    if let Some(p) = &parsed {
                        schedules.insert(s.get_ref().clone(), p.clone());
                    }
                    parsed
                }
            },
            None => Some(defaults.schedule.clone()),
        };
        // The minimum intervals protect real marketplaces; fakes on loopback may be polled fast.
        let on_loopback = match marketplace {
            // Only the store's own region counts (and the token endpoint).
            Marketplace::Amazon => {
                is_loopback_host(endpoints.get(marketplace, "token_endpoint"))
                    && is_loopback_host(
                        endpoints.amazon_region(st.region.unwrap_or(AmazonRegion::Na)),
                    )
            }
            _ => marketplace
                .spec()
                .endpoints
                .iter()
                .all(|e| is_loopback_host(endpoints.get(marketplace, e.key))),
        };
        if let Some(sched) = schedule.as_ref().filter(|_| !on_loopback) {
            let min = marketplace.min_check_interval();
            if sched.min_interval() < min {
                let (span, whose) = match &st.schedule {
                    Some(s) => (s.span(), "its schedule"),
                    None => (
                        rd.schedule
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
            defaults.timeout,
            "timeout",
            Duration::from_secs(1),
        );
        let store_channels = match &st.channels {
            Some(l) => check_channel_refs(c, l, &channel_names),
            None => defaults.channels.clone(),
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
        let name = st.name.clone().unwrap_or_else(|| id.clone());
        if let Some(schedule) = schedule {
            stores.push(Store {
                id,
                marketplace,
                name,
                account,
                region: st.region,
                marketplaces: st.marketplaces.clone().unwrap_or_default(),
                schedule,
                timeout,
                channels: store_channels,
                proxy,
                tags: st.tags.clone(),
                enabled: st.enabled,
            });
        }
    }

    let mut maintenance = Vec::new();
    for (i, m) in raw.maintenance.into_iter().enumerate() {
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
        if let Some(window) = window {
            maintenance.push(Maintenance {
                name,
                window,
                selector,
            });
        }
    }

    let mut store_index = HashMap::with_capacity(stores.len());
    for (i, s) in stores.iter().enumerate() {
        store_index.entry(s.id.clone()).or_insert(i);
    }
    Config {
        path,
        daemon,
        defaults,
        endpoints,
        stores,
        channels,
        maintenance,
        store_index,
    }
}

pub(super) fn validate_channel(
    c: &mut Collector<'_>,
    ch: RawChannel,
    span: std::ops::Range<usize>,
    names: &mut HashSet<String>,
) -> Option<Channel> {
    let name = ch.name.get_ref().clone();
    let kind = *ch.kind.get_ref();
    let mut ok = true;
    if !is_valid_id(&name) {
        c.at(
            ch.name.span(),
            format!("channel name `{name}` is not allowed"),
            "use lowercase letters, digits, '-' and '_' (e.g. \"ops-dingtalk\")",
        );
        ok = false;
    }
    if !names.insert(name.clone()) {
        c.at(
            ch.name.span(),
            format!("duplicate channel name `{name}`"),
            "give every [[channel]] its own name",
        );
        ok = false;
    }
    // Settings that belong to one kind only.
    let mut only =
        |present: bool, field: &str, for_kinds: &[ChannelKind], at: std::ops::Range<usize>| {
            if present && !for_kinds.contains(&kind) {
                let kinds: Vec<&str> = for_kinds.iter().map(|k| k.as_str()).collect();
                c.at(
                    at,
                    format!(
                        "channel `{name}`: `{field}` applies only to {} channels",
                        kinds.join("/")
                    ),
                    "remove it",
                );
                ok = false;
            }
        };
    use ChannelKind as K;
    let sp = |o: Option<std::ops::Range<usize>>| o.unwrap_or(span.clone());
    only(
        ch.from.is_some(),
        "from",
        &[K::Email],
        sp(ch.from.as_ref().map(|v| v.span())),
    );
    only(
        ch.to.is_some(),
        "to",
        &[K::Email],
        sp(ch.to.as_ref().map(|v| v.span())),
    );
    only(
        ch.smtp_host.is_some(),
        "smtp_host",
        &[K::Email],
        sp(ch.smtp_host.as_ref().map(|v| v.span())),
    );
    only(
        ch.smtp_port.is_some(),
        "smtp_port",
        &[K::Email],
        sp(ch.smtp_port.as_ref().map(|v| v.span())),
    );
    only(
        ch.smtp_tls.is_some(),
        "smtp_tls",
        &[K::Email],
        sp(ch.smtp_tls.as_ref().map(|v| v.span())),
    );
    only(
        ch.chat_id.is_some(),
        "chat_id",
        &[K::Telegram],
        sp(ch.chat_id.as_ref().map(|v| v.span())),
    );
    only(
        ch.urls.is_some(),
        "urls",
        &[K::Alertmanager],
        sp(ch.urls.as_ref().map(|v| v.span())),
    );
    only(
        ch.endpoint.is_some(),
        "endpoint",
        &[
            K::Dingtalk,
            K::Wecom,
            K::Feishu,
            K::Telegram,
            K::Slack,
            K::Webhook,
        ],
        sp(ch.endpoint.as_ref().map(|v| v.span())),
    );
    let endpoint = ch
        .endpoint
        .as_ref()
        .and_then(|e| match check_endpoint(e.get_ref()) {
            Ok(u) => Some(u),
            Err((m, h)) => {
                c.at(e.span(), m, h);
                None
            }
        });
    let missing = |c: &mut Collector<'_>, field: &str, example: &str| {
        c.at(
            span.clone(),
            format!("{kind} channel `{name}` has no `{field}`"),
            format!("add {field} = {example}"),
        );
    };
    let settings = match kind {
        K::Email => {
            let from = ch.from.as_ref().map(|v| v.get_ref().clone());
            let to = ch
                .to
                .as_ref()
                .map(|v| v.get_ref().clone())
                .unwrap_or_default();
            let host = ch.smtp_host.as_ref().map(|v| v.get_ref().clone());
            if from.is_none() {
                missing(c, "from", "\"storeguard@example.com\"");
            }
            if to.is_empty() {
                missing(c, "to", "[\"ops@example.com\"]");
            }
            if host.is_none() {
                missing(c, "smtp_host", "\"smtp.example.com\"");
            }
            let tls = ch
                .smtp_tls
                .as_ref()
                .map_or(SmtpTls::Starttls, |t| *t.get_ref());
            if let (Some(h), Some(t)) = (&host, &ch.smtp_tls) {
                let loopback = crate::http::is_loopback_host(h);
                if *t.get_ref() == SmtpTls::None && !loopback {
                    c.at(
                        t.span(),
                        format!(
                            "channel `{name}`: smtp_tls = \"none\" to a host that is not loopback"
                        ),
                        "use \"starttls\" or \"tls\"; plain SMTP is allowed only to a local relay",
                    );
                }
            }
            let port = ch.smtp_port.as_ref().map_or(
                match tls {
                    SmtpTls::Tls => 465,
                    SmtpTls::Starttls => 587,
                    SmtpTls::None => 25,
                },
                |p| *p.get_ref(),
            );
            match (from, host) {
                (Some(from), Some(smtp_host)) if !to.is_empty() => ChannelSettings::Email {
                    from,
                    to,
                    smtp_host,
                    smtp_port: port,
                    tls,
                },
                _ => {
                    ok = false;
                    ChannelSettings::None
                }
            }
        }
        K::Telegram => match ch.chat_id.as_ref().and_then(|v| scalar_string(v.get_ref())) {
            Some(chat_id) => ChannelSettings::Telegram { chat_id, endpoint },
            None => {
                missing(c, "chat_id", "\"-1001234567890\"");
                ok = false;
                ChannelSettings::None
            }
        },
        K::Alertmanager => {
            let mut urls = Vec::new();
            for u in ch
                .urls
                .as_ref()
                .map(|u| u.get_ref().as_slice())
                .unwrap_or_default()
            {
                match check_endpoint(u.get_ref()) {
                    Ok(url) => urls.push(url),
                    Err((m, h)) => c.at(u.span(), m, h),
                }
            }
            if ch.urls.as_ref().is_none_or(|u| u.get_ref().is_empty()) {
                missing(
                    c,
                    "urls",
                    "[\"http://127.0.0.1:9093\"] (every Alertmanager peer)",
                );
                ok = false;
            }
            ChannelSettings::Alertmanager { urls }
        }
        K::Log => ChannelSettings::None,
        _ => ChannelSettings::Endpoint(endpoint),
    };
    let mut events = Vec::new();
    for e in ch.events.iter().flatten() {
        if let Some(kind) = crate::event::EventKind::parse(e.get_ref()) {
            events.push(kind);
        } else {
            c.at(
                e.span(),
                format!(
                    "channel `{name}`: unknown event `{}`",
                    crate::outcome::sanitize(e.get_ref(), 40)
                ),
                "use \"opened\", \"reminder\" or \"resolved\"",
            );
            ok = false;
        }
    }
    ok.then_some(Channel {
        name,
        kind,
        min_severity: ch.min_severity.unwrap_or(Severity::Unknown),
        language: ch.language,
        settings,
        filter: Selector {
            stores: ch.stores.clone().unwrap_or_default(),
            tags: ch.tags.clone().unwrap_or_default(),
            marketplaces: ch.marketplaces.clone().unwrap_or_default(),
        },
        events,
    })
}
