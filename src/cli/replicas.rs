//! `storeguard replicas`, `vault export DIR` and `vault import DIR`: the fleet's database as
//! seen from the command line.

use super::load_config;
use crate::config::{Config, StateLocation};
use crate::replica::{Db, Fleet, StoredEntry, Target};
use crate::vault::{EntryId, Identity, Schema, Vault};
use anyhow::{Context, anyhow, bail};
use chrono::{DateTime, Utc};
use clap::Args;
use secrecy::SecretString;
use std::path::Path;
use std::process::ExitCode;

#[derive(Args, Debug)]
pub struct ReplicasArgs {
    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,
}

/// The name of the systemd credential that may hold the database password.
const CREDENTIAL: &str = "postgres";

/// How to reach the fleet's database from this config: the URL of `[daemon] state` and the
/// password from the systemd credential `postgres` or the vault entry `daemon/postgres`
/// (neither is needed when the server trusts this host).
pub fn fleet_target(config: &Config, identity: Option<&Identity>) -> anyhow::Result<Target> {
    let StateLocation::Postgres { .. } = &config.daemon.state else {
        bail!(
            "{}: [daemon] state is SQLite in state_dir (one box)\n  help: for several replicas set [daemon] state = \"postgres://storeguard@HOST/storeguard\"",
            config.path.display()
        );
    };
    fleet_target_with(config, password(config, identity)?)
}

fn fleet_target_with(config: &Config, password: Option<SecretString>) -> anyhow::Result<Target> {
    let StateLocation::Postgres { url } = &config.daemon.state else {
        bail!(
            "{}: [daemon] state is SQLite in state_dir (one box)",
            config.path.display()
        );
    };
    Ok(Target {
        url: url.clone(),
        password,
        replica: config.daemon.replica.clone(),
        timeout: crate::replica::plan::tick(config.replicas.lease_ttl),
    })
}

/// The fleet database's password: the systemd credential `postgres`, else the vault entry
/// `daemon/postgres`, else none.
pub(super) fn password(
    config: &Config,
    identity: Option<&Identity>,
) -> anyhow::Result<Option<SecretString>> {
    if let Some(dir) = std::env::var_os("CREDENTIALS_DIRECTORY") {
        let path = Path::new(&dir).join(CREDENTIAL);
        if path.exists() {
            let text = zeroize::Zeroizing::new(
                std::fs::read_to_string(&path)
                    .with_context(|| format!("reading the credential {}", path.display()))?,
            );
            return Ok(Some(SecretString::from(
                text.trim_end_matches(['\n', '\r']),
            )));
        }
    }
    let Ok(vault) = Vault::open(&config.daemon.vault_dir) else {
        return Ok(None);
    };
    let id = EntryId::postgres();
    if !vault.exists(&id) {
        return Ok(None);
    }
    let owned;
    let identity = match identity {
        Some(i) => i,
        None => {
            owned = super::load_identity(config)?;
            &owned
        }
    };
    let doc = vault.load(&id, Schema::Postgres, identity)?;
    Ok(doc.get("password").cloned())
}

/// The state `status`, `history` and `silence` read: the SQLite file (read-only unless
/// `write`), or the fleet's database.
pub(crate) fn open_state(config: &Config, write: bool) -> anyhow::Result<crate::state::Backend> {
    use crate::state::{Backend, Fleet, PgState, State};
    Ok(match &config.daemon.state {
        StateLocation::Sqlite if write => Backend::Sqlite(State::open(&config.daemon.state_dir)?),
        StateLocation::Sqlite => Backend::Sqlite(State::open_read_only(&config.daemon.state_dir)?),
        StateLocation::Postgres { .. } => {
            let target = fleet_target(config, None)?;
            let pg = PgState::new(Db::new(&target)?, config.replicas.shards);
            Backend::Fleet(Fleet::new(
                pg,
                crate::replica::Leases::none(config.replicas.shards),
            )?)
        }
    })
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

pub fn run(config_path: &Path, args: ReplicasArgs) -> anyhow::Result<ExitCode> {
    let config = load_config(config_path)?;
    let target = fleet_target(&config, None)?;
    let fleet = runtime()?.block_on(async {
        let db = Db::new(&target)?;
        db.fleet().await
    })?;
    let ttl = chrono::Duration::from_std(config.replicas.lease_ttl)?;
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &fleet_json(&fleet, ttl))?;
        std::io::Write::write_all(&mut out, b"\n")?;
    } else {
        std::io::Write::write_all(&mut out, fleet_table(&fleet, ttl).as_bytes())?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Shards a replica holds now (lease unexpired by the database's clock).
fn holdings<'a>(
    fleet: &'a Fleet,
    name: &'a str,
) -> impl Iterator<Item = &'a crate::replica::LeaseRow> {
    fleet.leases.iter().filter(move |l| {
        l.holder.as_deref() == Some(name) && l.until.is_some_and(|u| u > fleet.now)
    })
}

/// Shards nobody holds now (free, or their lease expired).
fn unheld(fleet: &Fleet) -> Vec<u32> {
    fleet
        .leases
        .iter()
        .filter(|l| l.holder.is_none() || l.until.is_none_or(|u| u <= fleet.now))
        .map(|l| l.shard)
        .collect()
}

fn fleet_json(fleet: &Fleet, ttl: chrono::Duration) -> serde_json::Value {
    let replicas: Vec<serde_json::Value> = fleet
        .replicas
        .iter()
        .map(|r| {
            let held: Vec<_> = holdings(fleet, &r.name).collect();
            serde_json::json!({
                "name": r.name,
                "live": r.seen_at > fleet.now - ttl,
                "version": r.version,
                "started_at": r.started_at,
                "seen_at": r.seen_at,
                "shards": held.iter().map(|l| l.shard).collect::<Vec<_>>(),
                "holding_since": held.iter().filter_map(|l| l.acquired_at).min(),
                "last_renewal": held.iter().filter_map(|l| l.renewed_at).max(),
                "fenced_refusals": r.fenced_refusals,
                "takeovers": r.takeovers,
            })
        })
        .collect();
    let unheld = unheld(fleet);
    serde_json::json!({
        "now": fleet.now,
        "shards": fleet.leases.len(),
        "replicas": replicas,
        "unheld_shards": unheld,
    })
}

fn ago(now: DateTime<Utc>, t: Option<DateTime<Utc>>) -> String {
    match t {
        None => "-".into(),
        Some(t) => format!("{} ago", span((now - t).num_seconds().max(0) as u64)),
    }
}

/// `45s`, `12m 5s`, `2h 10m`, `3d 4h`: the two largest units.
fn span(s: u64) -> String {
    let units = [(86_400, "d"), (3_600, "h"), (60, "m"), (1, "s")];
    for (i, (size, name)) in units.iter().enumerate() {
        if s >= *size || *size == 1 {
            let (big, rest) = (s / size, s % size);
            return match units.get(i + 1) {
                Some((small, sname)) if rest / small > 0 => {
                    format!("{big}{name} {}{sname}", rest / small)
                }
                _ => format!("{big}{name}"),
            };
        }
    }
    String::new()
}

/// `0-3,8,10-12`.
fn ranges(shards: &[u32]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < shards.len() {
        let start = shards[i];
        let mut end = start;
        while i + 1 < shards.len() && shards[i + 1] == end + 1 {
            i += 1;
            end = shards[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}-{end}"));
        }
        i += 1;
    }
    if out.is_empty() { "-".into() } else { out }
}

fn fleet_table(fleet: &Fleet, ttl: chrono::Duration) -> String {
    let mut rows = vec![[
        "REPLICA".to_string(),
        "STATE".into(),
        "SHARDS".into(),
        "HELD".into(),
        "HOLDING SINCE".into(),
        "LAST RENEWAL".into(),
        "FENCED".into(),
        "TAKEOVERS".into(),
    ]];
    for r in &fleet.replicas {
        let held: Vec<_> = holdings(fleet, &r.name).collect();
        let shards: Vec<u32> = held.iter().map(|l| l.shard).collect();
        rows.push([
            r.name.clone(),
            if r.seen_at > fleet.now - ttl {
                "live".into()
            } else {
                format!("silent {}", ago(fleet.now, Some(r.seen_at)))
            },
            ranges(&shards),
            shards.len().to_string(),
            ago(fleet.now, held.iter().filter_map(|l| l.acquired_at).min()),
            ago(fleet.now, held.iter().filter_map(|l| l.renewed_at).max()),
            r.fenced_refusals.to_string(),
            r.takeovers.to_string(),
        ]);
    }
    let widths: Vec<usize> = (0..8)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in &rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    let unheld = unheld(fleet);
    out.push_str(&format!(
        "{} shards; unheld: {}\n",
        fleet.leases.len(),
        ranges(&unheld)
    ));
    out
}

/// Before a replica starts: its vault files brought up to the fleet database's (created from
/// the database's `recipients.txt` when this host has none yet), so it starts from the newest
/// tokens whatever another replica rotated.
pub(super) fn pull_at_start(
    config: &Config,
    identity: &Identity,
    password: Option<SecretString>,
) -> anyhow::Result<()> {
    let target = fleet_target_with(config, password)?;
    runtime()?.block_on(async {
        let db = Db::new(&target)?;
        db.migrate(config.replicas.shards).await?;
        let dir = &config.daemon.vault_dir;
        let vault = match Vault::open(dir) {
            Ok(v) => v,
            Err(crate::vault::VaultError::NoVault { .. }) => {
                let Some(recipients) = db.vault_recipients().await? else {
                    bail!(
                        "{}: no vault here and none in the fleet database\n  help: on one replica, run `storeguard vault import DIR` with the vault directory",
                        dir.display()
                    );
                };
                Vault::create_with_recipients(dir, &recipients)?
            }
            Err(e) => return Err(e.into()),
        };
        let pulled = crate::replica::vault_sync::pull(&db, &vault, identity, None).await?;
        if pulled.written > 0 {
            tracing::info!(entries = pulled.written, "vault entries read from the fleet database");
        }
        // Newer here: tokens this replica rotated and could not hand to the database before
        // it stopped (a kill between the marketplace's answer and the commit), or an edit made
        // here. Newer generations win, as with `vault import`.
        if !pulled.local_newer.is_empty() {
            let mut newer = Vec::new();
            for name in &pulled.local_newer {
                let id = EntryId::parse(name).map_err(|e| anyhow!(e))?;
                newer.push(StoredEntry {
                    entry: name.clone(),
                    armored: vault.read_sealed(&id)?,
                    generation: vault.generation(&id, identity)? as i64,
                });
            }
            let recipients = vault.recipients_text()?;
            let written = db.vault_import(&recipients, &newer).await?;
            tracing::info!(entries = written.len(), "newer vault entries of this replica written to the fleet database");
        }
        Ok(())
    })
}

/// `vault export DIR`: the database's entries as a vault directory the `age` CLI reads.
pub fn export(config_path: &Path, dir: &Path) -> anyhow::Result<ExitCode> {
    let config = load_config(config_path)?;
    let target = fleet_target(&config, None)?;
    if dir.exists() && std::fs::read_dir(dir)?.next().is_some() {
        bail!(
            "{} is not empty\n  help: export into a new directory (nothing there is overwritten)",
            dir.display()
        );
    }
    let (recipients, entries) = runtime()?.block_on(async {
        let db = Db::new(&target)?;
        Ok::<_, crate::replica::DbError>((db.vault_recipients().await?, db.vault_all().await?))
    })?;
    let recipients = recipients.ok_or_else(|| {
        anyhow!("the fleet's database holds no vault yet\n  help: run `storeguard vault import DIR` first")
    })?;
    let vault = Vault::create_with_recipients(dir, &recipients)?;
    for e in &entries {
        let id = EntryId::parse(&e.entry)
            .map_err(|m| anyhow!("the database holds an entry named `{}`: {m}", e.entry))?;
        vault.write_sealed(&id, &e.armored)?;
    }
    eprintln!(
        "exported {} entries to {} (decrypt one with `age -d -i IDENTITY {}`)",
        entries.len(),
        dir.display(),
        dir.join("stores/ID.age").display()
    );
    Ok(ExitCode::SUCCESS)
}

/// `vault import DIR`: a vault directory's entries into the database. Each is decrypted with
/// this config's identity first (a wrong key or a damaged file stops the import before
/// anything is written) and written only when newer than the stored one.
pub fn import(config_path: &Path, dir: &Path) -> anyhow::Result<ExitCode> {
    let config = load_config(config_path)?;
    let identity = super::load_identity(&config)?;
    let target = fleet_target(&config, Some(&identity))?;
    let vault = Vault::open(dir)?;
    let recipients = vault.recipients_text()?;
    vault.recipients()?;
    let mut entries = Vec::new();
    for id in vault.list()? {
        if id == EntryId::postgres() {
            // The database's own password stays with the replicas, not in the database.
            continue;
        }
        let generation = vault.generation(&id, &identity)?;
        entries.push(StoredEntry {
            entry: id.to_string(),
            armored: vault.read_sealed(&id)?,
            generation: generation as i64,
        });
    }
    let written = runtime()?.block_on(async {
        let db = Db::new(&target)?;
        db.migrate(config.replicas.shards).await?;
        db.vault_import(&recipients, &entries).await
    })?;
    eprintln!(
        "imported {} of {} entries ({} already as new or newer in the database)",
        written.len(),
        entries.len(),
        entries.len() - written.len()
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::{ranges, span};

    #[test]
    fn ages_read_in_two_units() {
        assert_eq!(span(0), "0s");
        assert_eq!(span(45), "45s");
        assert_eq!(span(725), "12m 5s");
        assert_eq!(span(7_800), "2h 10m");
        assert_eq!(span(3 * 86_400 + 4 * 3_600 + 59), "3d 4h");
        assert_eq!(span(3_600), "1h");
    }

    #[test]
    fn shard_lists_read_as_ranges() {
        assert_eq!(ranges(&[]), "-");
        assert_eq!(ranges(&[0, 1, 2, 3, 8, 10, 11, 12]), "0-3,8,10-12");
        assert_eq!(ranges(&[5]), "5");
    }
}
