//! From the raw schema to the validated types. Each section checks its own rules in its
//! `from_raw` (`daemon.rs`, `defaults.rs`, `endpoints.rs`, `channel.rs`, `store.rs`,
//! `maintenance.rs`); here are the field checks they share and the order they run in.

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
    let daemon = DaemonConfig::from_raw(&raw.daemon, c);
    // [[channel]] first, so names can be resolved.
    let mut channels = Vec::new();
    let mut channel_names = HashSet::new();
    for ch in raw.channels {
        let span = ch.span();
        if let Some(ch) = Channel::from_raw(c, ch.into_inner(), span, &mut channel_names) {
            channels.push(ch);
        }
    }
    let defaults = Defaults::from_raw(&raw.defaults, c, &channel_names);
    let endpoints = Endpoints::from_raw(&raw.marketplace, c);
    let mut cx = StoreCx {
        defaults: &defaults,
        raw_defaults: &raw.defaults,
        endpoints: &endpoints,
        channel_names: &channel_names,
        timezone: daemon.timezone,
        seen: HashMap::new(),
        schedules: HashMap::new(),
    };
    // Sized up front: a store is a few hundred bytes, and doubling 10,000 of them wastes MBs.
    let mut stores: Vec<Store> = Vec::with_capacity(raw.stores.len());
    stores.extend(
        raw.stores
            .into_iter()
            .filter_map(|st| Store::from_raw(st, &mut cx, c)),
    );
    let mail = MailSettings::from_raw(&raw.mail, c);
    let replicas = ReplicaSettings::from_raw(&raw.replicas, c);
    let mut mailbox_names = HashSet::new();
    let mailboxes = raw
        .mailboxes
        .into_iter()
        .filter_map(|m| Mailbox::from_raw(m, &stores, &mut mailbox_names, c))
        .collect();
    let maintenance = raw
        .maintenance
        .into_iter()
        .enumerate()
        .filter_map(|(i, m)| Maintenance::from_raw(m, i, c))
        .collect();

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
        mail,
        mailboxes,
        replicas,
        store_index,
    }
}
