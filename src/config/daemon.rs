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
        DaemonConfig {
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
