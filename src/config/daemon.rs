//! `[daemon]`: where things live, the listener, the timezone and language of messages.

use super::*;

impl DaemonConfig {
    pub(super) fn from_raw(d: &RawDaemon, c: &mut Collector<'_>) -> DaemonConfig {
        let path = c.src.path.to_path_buf();

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
            None => crate::zone::Zone::UTC,
            Some(t) => match t.get_ref().parse::<crate::zone::Zone>() {
                Ok(tz) => tz,
                Err(_) => {
                    c.at(
                        t.span(),
                        format!("unknown timezone `{}`", t.get_ref()),
                        "use an IANA name such as \"Asia/Shanghai\", \"Europe/Moscow\" or \"UTC\"",
                    );
                    crate::zone::Zone::UTC
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
        let state = match &d.state {
            None => StateLocation::Sqlite,
            Some(v) => state_location(c, v),
        };
        let replica = match &d.replica {
            Some(v) if valid_replica_name(v.get_ref()) => v.get_ref().clone(),
            Some(v) => {
                c.at(
                    v.span(),
                    format!("replica name `{}` is not valid", v.get_ref()),
                    "use 1 to 63 letters, digits, '.', '-' or '_' (each replica of a fleet needs its own)",
                );
                String::new()
            }
            None => host_name(),
        };
        DaemonConfig {
            state,
            replica,
            state_dir,
            vault_dir,
            identity,
            listen,
            timezone,
            language: d.language.unwrap_or_default(),
            history_retention,
        }
    }
}

/// `[daemon] state`: `postgres://user@host[:port]/database`, password never inline.
fn state_location(c: &mut Collector<'_>, v: &Spanned<String>) -> StateLocation {
    let text = v.get_ref().trim();
    let help = "write it like \"postgres://storeguard@db.internal:5432/storeguard\", or leave state out for SQLite in state_dir";
    let Ok(url) = url::Url::parse(text) else {
        c.at(v.span(), "state is not a postgres:// URL".to_string(), help);
        return StateLocation::Sqlite;
    };
    if !matches!(url.scheme(), "postgres" | "postgresql") {
        c.at(
            v.span(),
            format!(
                "state: `{}:` is not a database this storeguard knows",
                url.scheme()
            ),
            help,
        );
        return StateLocation::Sqlite;
    }
    if url.password().is_some() {
        // Never echo the value: the span points at it.
        c.at(
            v.span(),
            "state holds a password; storeguard.toml is not the place for secrets".to_string(),
            "remove it from the URL and put it in the vault (`storeguard vault put daemon/postgres`) or in the systemd credential `postgres`",
        );
        return StateLocation::Sqlite;
    }
    if url.host_str().is_none_or(str::is_empty) || url.username().is_empty() {
        c.at(
            v.span(),
            "state must name the database's user and host".to_string(),
            help,
        );
        return StateLocation::Sqlite;
    }
    if url.path().trim_start_matches('/').is_empty() {
        c.at(
            v.span(),
            "state must name the database (the path after the host)".to_string(),
            help,
        );
        return StateLocation::Sqlite;
    }
    StateLocation::Postgres {
        url: text.to_string(),
    }
}

fn valid_replica_name(s: &str) -> bool {
    (1..=63).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

/// The host name, as a replica name (anything outside the allowed letters becomes '-').
fn host_name() -> String {
    let raw = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_default();
    let mut name: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '-'
            }
        })
        .take(63)
        .collect();
    if name.is_empty() {
        name.push_str("storeguard");
    }
    name
}

impl ReplicaSettings {
    pub(super) fn from_raw(r: &RawReplicas, c: &mut Collector<'_>) -> ReplicaSettings {
        use crate::replica::plan;
        let shards = match &r.shards {
            None => plan::DEFAULT_SHARDS,
            Some(v) if (1..=i64::from(plan::MAX_SHARDS)).contains(v.get_ref()) => {
                *v.get_ref() as u32
            }
            Some(v) => {
                c.at(
                    v.span(),
                    format!("shards = {} is out of range", v.get_ref()),
                    format!(
                        "use 1 to {} (more shards than replicas; 64 suits most fleets)",
                        plan::MAX_SHARDS
                    ),
                );
                plan::DEFAULT_SHARDS
            }
        };
        let mut lease_ttl = duration_field(
            c,
            r.lease_ttl.as_ref(),
            plan::DEFAULT_LEASE_TTL,
            "lease_ttl",
            plan::MIN_LEASE_TTL,
        );
        if lease_ttl > plan::MAX_LEASE_TTL {
            if let Some(v) = &r.lease_ttl {
                c.at(
                    v.span(),
                    format!("lease_ttl `{}` is too long", v.get_ref()),
                    "use at most 10m: a dead replica's stores wait this long before another replica checks them",
                );
            }
            lease_ttl = plan::DEFAULT_LEASE_TTL;
        }
        ReplicaSettings { shards, lease_ttl }
    }
}
