//! `storeguard status` and `storeguard history`: from the running daemon, else from the state file.

use super::load_config;
use crate::config::Config;
use crate::web::view::StoreView;
use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::Args;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Print JSON (one object per store) instead of a table
    #[arg(long)]
    pub json: bool,
    /// Open the daemon's HTML status page in a browser (or print its URL when there is none)
    #[arg(long, conflicts_with = "json")]
    pub open: bool,
}

#[derive(Args, Debug)]
pub struct SilenceArgs {
    /// Store id
    pub store: String,
    /// How long to hold its notifications (checks still run and are recorded), e.g. 2h
    #[arg(long = "for", value_name = "DURATION")]
    pub duration: String,
}

#[derive(Args, Debug)]
pub struct HistoryArgs {
    /// Store id
    pub store: String,
    /// How far back, e.g. 24h, 7d
    #[arg(long, default_value = "24h")]
    pub since: String,
    /// At most this many records
    #[arg(long, default_value_t = 200)]
    pub limit: usize,
    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,
}

/// The status listener's address as a client reaches it (a wildcard bind is reached on loopback).
pub fn api_base(config: &Config) -> String {
    let mut addr = config.daemon.listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    format!("http://{addr}")
}

/// The API token from the vault, when this user can read it.
pub fn api_token(config: &Config) -> Option<secrecy::SecretString> {
    let identity = crate::vault::Identity::load(&config.daemon.identity, || None).ok()?;
    let vault = crate::vault::Vault::open(&config.daemon.vault_dir).ok()?;
    let doc = vault
        .load(
            &crate::vault::EntryId::daemon(),
            crate::vault::Schema::Daemon,
            &identity,
        )
        .ok()?;
    doc.get("api_token").cloned()
}

async fn from_daemon(config: &Config) -> Option<Vec<StoreView>> {
    let client = crate::http::client_builder(Duration::from_secs(3))
        .build()
        .ok()?;
    let mut req = client.get(format!("{}/api/v1/stores", api_base(config)));
    if !config.daemon.listen.ip().is_loopback()
        && let Some(t) = api_token(config)
    {
        req = req.bearer_auth(secrecy::ExposeSecret::expose_secret(&t));
    }
    let resp = req.send().await.ok()?;
    if !resp.status().is_success() {
        return None;
    }
    let body = crate::http::read_capped(resp, 64 * 1024 * 1024)
        .await
        .ok()?;
    serde_json::from_slice(&body).ok()
}

fn from_state(config: &Config) -> anyhow::Result<Vec<StoreView>> {
    let state = super::replicas::open_state(config, false)?;
    let rows = state.load_stores()?;
    Ok(crate::web::view::from_state(config, &rows, Utc::now()))
}

/// The end of a silence in the configured timezone, to the second, with its offset.
fn until_text(t: DateTime<Utc>, tz: crate::zone::Zone) -> String {
    t.with_timezone(&tz)
        .format("%Y-%m-%d %H:%M:%S %:z")
        .to_string()
}

fn when(t: Option<DateTime<Utc>>, tz: crate::zone::Zone) -> String {
    t.map_or("-".into(), |t| {
        t.with_timezone(&tz).format("%Y-%m-%d %H:%M").to_string()
    })
}

/// Pads to a display width, counting CJK characters as two columns.
pub fn pad(s: &str, width: usize) -> String {
    let w: usize = s
        .chars()
        .map(|c| {
            if (c as u32) >= 0x1100 && !c.is_ascii() {
                2
            } else {
                1
            }
        })
        .sum();
    format!("{s}{}", " ".repeat(width.saturating_sub(w)))
}

pub fn status(config_path: &Path, args: StatusArgs) -> anyhow::Result<ExitCode> {
    let config = load_config(config_path)?;
    if args.open {
        return open_page(&config);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (statuses, source) = match rt.block_on(from_daemon(&config)) {
        Some(s) => (s, "from the daemon"),
        None => (
            from_state(&config)?,
            "from the state file: the daemon is not reachable",
        ),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&statuses)?);
        return Ok(ExitCode::SUCCESS);
    }
    let lang = config.daemon.language;
    let tz = config.daemon.timezone;
    let rows: Vec<[String; 7]> = statuses
        .iter()
        .map(|s| {
            let status = s.status_words(lang);
            let incidents = if s.open_incidents.is_empty() {
                "-".to_string()
            } else {
                s.open_incidents
                    .iter()
                    .map(|i| crate::i18n::text(lang, &format!("finding.{}", i.finding.as_str())))
                    .collect::<Vec<_>>()
                    .join("; ")
            };
            [
                s.id.clone(),
                s.marketplace.display_name().to_string(),
                if s.enabled { status } else { "disabled".into() },
                incidents,
                when(s.last_check, tz),
                when(s.next_check, tz),
                s.expires_at.map_or("-".into(), |e| {
                    e.with_timezone(&tz).format("%Y-%m-%d").to_string()
                }),
            ]
        })
        .collect();
    let headers = [
        "STORE",
        "MARKETPLACE",
        "STATUS",
        "OPEN INCIDENTS",
        "LAST CHECK",
        "NEXT CHECK",
        "EXPIRES",
    ];
    print_table(&headers, &rows);
    eprintln!(
        "({}, {source})",
        crate::i18n::counted(statuses.len(), "store", "stores")
    );
    Ok(ExitCode::SUCCESS)
}

pub fn print_table<const N: usize>(headers: &[&str; N], rows: &[[String; N]]) {
    let width = |s: &str| -> usize {
        s.chars()
            .map(|c| {
                if (c as u32) >= 0x1100 && !c.is_ascii() {
                    2
                } else {
                    1
                }
            })
            .sum()
    };
    let mut widths = headers.map(width);
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(width(c));
        }
    }
    let line = |cells: Vec<String>| {
        let mut out = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == N {
                out.push_str(c);
            } else {
                out.push_str(&pad(c, widths[i] + 2));
            }
        }
        println!("{}", out.trim_end());
    };
    line(headers.iter().map(|s| s.to_string()).collect());
    for r in rows {
        line(r.to_vec());
    }
}

/// `storeguard silence STORE --for 2h`: through the running daemon, else in the state file
/// (the daemon reads it at start).
pub fn silence(config_path: &Path, args: SilenceArgs) -> anyhow::Result<ExitCode> {
    let config = load_config(config_path)?;
    if config.store(&args.store).is_none() {
        anyhow::bail!("store `{}` is not in {}", args.store, config.path.display());
    }
    let duration =
        crate::duration::parse(&args.duration).map_err(|e| anyhow::anyhow!("--for: {e}"))?;
    // The same cap the daemon's API applies.
    if duration > Duration::from_secs(90 * 86_400) {
        anyhow::bail!("--for: at most 90d (a longer silence is better written as enabled = false)");
    }
    let token = api_token(&config);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let via_daemon = rt.block_on(async {
        let client = crate::http::client_builder(Duration::from_secs(3))
            .build()
            .ok()?;
        let mut req = client
            .post(format!(
                "{}/api/v1/stores/{}/silence",
                api_base(&config),
                args.store
            ))
            .query(&[("for", args.duration.as_str())]);
        if let Some(t) = &token {
            req = req.bearer_auth(secrecy::ExposeSecret::expose_secret(t));
        }
        let resp = req.send().await.ok()?;
        Some((
            resp.status().as_u16(),
            resp.text().await.unwrap_or_default(),
        ))
    });
    match via_daemon {
        Some((200, until)) => {
            let until = DateTime::parse_from_rfc3339(until.trim())
                .map(|t| until_text(t.with_timezone(&Utc), config.daemon.timezone))
                .unwrap_or_else(|_| crate::outcome::sanitize(until.trim(), 60));
            println!("{} silenced until {until}", args.store);
            Ok(ExitCode::SUCCESS)
        }
        Some((401, _)) => anyhow::bail!(
            "the daemon refused the request: this user cannot read the API token in the vault\n  help: run as the user that owns the identity, or as root"
        ),
        Some((status, body)) => anyhow::bail!("the daemon answered {status}: {}", body.trim()),
        None => {
            let until = Utc::now() + chrono::Duration::from_std(duration)?;
            super::replicas::open_state(&config, true)?.set_silence(&args.store, until)?;
            println!(
                "{} silenced until {} (daemon not running; it applies at start)",
                args.store,
                until_text(until, config.daemon.timezone)
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub fn history(config_path: &Path, args: HistoryArgs) -> anyhow::Result<ExitCode> {
    let config = load_config(config_path)?;
    if config.store(&args.store).is_none() {
        anyhow::bail!(
            "store `{}` is not in {}\n  help: `storeguard status` lists the stores",
            args.store,
            config.path.display()
        );
    }
    let since = crate::duration::parse(&args.since).map_err(|e| anyhow::anyhow!("--since: {e}"))?;
    let state = super::replicas::open_state(&config, false)?;
    let from = crate::duration::before(Utc::now(), since).context("--since is too large")?;
    let mut rows = state.timeline(&args.store, from, args.limit)?;
    let mail = state.mail_records_since(Some(&args.store), from, args.limit)?;
    if args.json {
        rows.extend(mail.into_iter().map(crate::state::HistoryEntry::Mail));
        rows.sort_by_key(|e| std::cmp::Reverse(e.at()));
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    let lang = config.daemon.language;
    let tz = config.daemon.timezone;
    let words = |findings: &[String]| {
        if findings.is_empty() {
            "-".to_string()
        } else {
            findings
                .iter()
                .map(|f| crate::i18n::text(lang, &format!("finding.{f}")))
                .collect::<Vec<_>>()
                .join("; ")
        }
    };
    let fmt = |t: DateTime<Utc>| t.with_timezone(&tz).format("%Y-%m-%d %H:%M:%S").to_string();
    let status = |s: crate::outcome::Status| {
        crate::i18n::text(lang, &format!("status.{}", s.as_str())).to_string()
    };
    let table: Vec<[String; 6]> = rows
        .iter()
        .filter_map(|e| {
            Some(match e {
                crate::state::HistoryEntry::Check(r) => [
                    fmt(r.at),
                    status(r.status),
                    words(&r.findings),
                    format!("{} ms", r.latency_ms),
                    r.egress.clone().unwrap_or_else(|| "-".into()),
                    r.account.clone().unwrap_or_else(|| "-".into()),
                ],
                // Older records folded into a run: its span, check count and latency range.
                crate::state::HistoryEntry::Run(r) => [
                    format!("{} … {} ({} checks)", fmt(r.from), fmt(r.to), r.checks),
                    status(r.status),
                    words(&r.findings),
                    format!("{}-{} ms", r.latency_min_ms, r.latency_max_ms),
                    r.egress.clone().unwrap_or_else(|| "-".into()),
                    r.account.clone().unwrap_or_else(|| "-".into()),
                ],
                crate::state::HistoryEntry::Mail(_) => return None,
            })
        })
        .collect();
    if !table.is_empty() {
        print_table(
            &["TIME", "STATUS", "FINDINGS", "LATENCY", "EGRESS", "ACCOUNT"],
            &table,
        );
    }
    eprintln!(
        "({} for {} since {})",
        crate::i18n::counted(rows.len(), "login record", "login records"),
        args.store,
        crate::duration::format(since)
    );
    if !mail.is_empty() {
        // Security mail from the store's mailbox: what it said, how far it is believed.
        let table: Vec<[String; 5]> = mail
            .iter()
            .map(|m| {
                let event = crate::i18n::text(lang, &format!("finding.{}", m.event));
                [
                    fmt(m.at),
                    match &m.finding {
                        Some(f) if f != &m.event => {
                            format!(
                                "{event} → {}",
                                crate::i18n::text(lang, &format!("finding.{f}"))
                            )
                        }
                        _ => event.to_string(),
                    },
                    format!("{} ({})", m.domain, m.verdict),
                    if m.facts.is_empty() {
                        "-".into()
                    } else {
                        m.facts
                            .iter()
                            .map(|(k, v)| format!("{k}: {v}"))
                            .collect::<Vec<_>>()
                            .join(" · ")
                    },
                    if m.alerted { "alerted" } else { "recorded" }.to_string(),
                ]
            })
            .collect();
        println!();
        print_table(&["TIME", "SECURITY MAIL", "FROM", "FACTS", "ALERT"], &table);
        eprintln!(
            "({} for {})",
            crate::i18n::counted(mail.len(), "security mail", "security mails"),
            args.store
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The HTML status page's URL (never with a token in it).
pub fn page_url(config: &Config) -> String {
    format!("{}/", api_base(config))
}

/// `storeguard status --open`: the page in the user's browser when there is one, else its URL
/// and how to reach it from another machine.
fn open_page(config: &Config) -> anyhow::Result<ExitCode> {
    let lang = config.daemon.language;
    let url = page_url(config);
    let port = config.daemon.listen.port().to_string();
    let words = |key: &str| crate::i18n::format(lang, key, &[("url", &url), ("port", &port)]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let up = rt.block_on(async {
        let client = crate::http::client_builder(Duration::from_secs(3))
            .build()
            .ok()?;
        client
            .get(format!("{}/healthz", api_base(config)))
            .send()
            .await
            .ok()
    });
    println!("{url}");
    if up.is_none() {
        eprintln!("{}", words("cli.open.not_running"));
        return Ok(ExitCode::FAILURE);
    }
    if !config.daemon.listen.ip().is_loopback() {
        eprintln!("{}", words("cli.open.token_needed"));
    }
    match launch_browser(&url) {
        Some(browser) => eprintln!(
            "{}",
            crate::i18n::format(lang, "cli.open.opened", &[("browser", &browser)])
        ),
        None => eprintln!("{}", words("cli.open.no_browser")),
    }
    Ok(ExitCode::SUCCESS)
}

/// Opens `url` with `$BROWSER` (a `:`-separated list of commands, `%s` for the URL, as
/// xdg-utils reads it), else with `xdg-open` / `open` in a graphical session. Returns the
/// command that worked, or `None` when there is no browser here (a server over SSH).
fn launch_browser(url: &str) -> Option<String> {
    use std::process::{Command, Stdio};
    if let Ok(list) = std::env::var("BROWSER") {
        for cmd in list.split(':').map(str::trim).filter(|c| !c.is_empty()) {
            let mut words = cmd.split_whitespace();
            let Some(prog) = words.next() else { continue };
            let mut args: Vec<String> = words.map(|a| a.replace("%s", url)).collect();
            if !cmd.contains("%s") {
                args.push(url.to_string());
            }
            // Inherit the terminal: $BROWSER may be a text browser.
            if Command::new(prog)
                .args(&args)
                .status()
                .is_ok_and(|s| s.success())
            {
                return Some(prog.to_string());
            }
        }
    }
    let set = |v: &str| std::env::var_os(v).is_some_and(|x| !x.is_empty());
    let (graphical, opener) = if cfg!(target_os = "macos") {
        (true, "open")
    } else {
        (set("DISPLAY") || set("WAYLAND_DISPLAY"), "xdg-open")
    };
    if !graphical {
        return None;
    }
    Command::new(opener)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
        .then(|| opener.to_string())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_silence_ends_in_the_configured_timezone() {
        use chrono::TimeZone;
        let t = chrono::Utc
            .with_ymd_and_hms(2026, 12, 4, 23, 6, 14)
            .unwrap();
        let utc = "UTC".parse::<crate::zone::Zone>().unwrap();
        let shanghai = "Asia/Shanghai".parse::<crate::zone::Zone>().unwrap();
        assert_eq!(super::until_text(t, utc), "2026-12-04 23:06:14 +00:00");
        assert_eq!(super::until_text(t, shanghai), "2026-12-05 07:06:14 +08:00");
    }
}
