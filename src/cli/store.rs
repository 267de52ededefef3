//! `storeguard store add`: append a `[[store]]` to the config, keeping every other byte of the
//! file as it was, then store the secrets in the vault.

use super::prompt::Prompter;
use super::vault_cmd::read_document;
use super::{load_config, open_vault};
use crate::config::Config;
use crate::model::Marketplace;
use crate::vault::{EntryId, Schema};
use anyhow::{Context, anyhow, bail};
use clap::Args;
use std::path::Path;
use std::process::ExitCode;

#[derive(Args, Debug, Default)]
pub struct AddArgs {
    /// ozon, amazon, alibaba, aliexpress, wildberries, yandex_market, lazada, shopee or tiktok_shop
    #[arg(long)]
    pub marketplace: Option<String>,
    /// Store id: lowercase letters, digits, - and _ (e.g. ozon-main)
    #[arg(long)]
    pub id: Option<String>,
    /// Display name, any language
    #[arg(long)]
    pub name: Option<String>,
    /// Expected account number (Ozon Client-Id, seller id, shop id, business id, sid)
    #[arg(long)]
    pub account: Option<String>,
    /// Region, for marketplaces that have them (Amazon: na, eu, fe; Lazada: sg, my, vn, th, ph, id)
    #[arg(long)]
    pub region: Option<String>,
}

pub fn add(config_path: &Path, args: AddArgs) -> anyhow::Result<ExitCode> {
    let config = load_config(config_path)?;
    let mut p = Prompter::new();
    let all = Marketplace::ALL.map(|m| m.as_str()).join(", ");
    let marketplace = match args.marketplace {
        Some(m) => m,
        None => p.ask(&format!("Marketplace ({all})"), None)?,
    };
    let marketplace = Marketplace::parse(marketplace.trim().to_ascii_lowercase().as_str())
        .ok_or_else(|| {
            anyhow!(
                "unknown marketplace `{}`; use one of {all}",
                crate::outcome::sanitize(&marketplace, 40)
            )
        })?;
    let id = match args.id {
        Some(i) => i,
        None => p.ask("Store id (e.g. ozon-main)", None)?,
    };
    let entry = EntryId::parse(&format!("store/{id}")).map_err(|e| anyhow!(e))?;
    if config.store(&id).is_some() {
        bail!(
            "store `{id}` is already in {}\n  help: pick another id, or change its secrets with `storeguard vault edit store/{id}`",
            config.path.display()
        );
    }
    let name = match args.name {
        Some(n) => n,
        None => p.ask("Display name", Some(&id))?,
    };
    let account_q = marketplace.spec().account_prompt;
    let account = match args.account {
        Some(a) => a,
        // An optional account may be left empty.
        None => p.ask(
            account_q,
            (!marketplace.spec().account_required).then_some(""),
        )?,
    };
    let regions = marketplace.spec().regions;
    let region = if regions.is_empty() {
        None
    } else {
        let r = match args.region {
            Some(r) => r,
            None => p.ask(
                &format!("Region ({})", regions.join(", ")),
                Some(regions[0]),
            )?,
        };
        let r = r.trim().to_ascii_lowercase();
        match regions.iter().find(|x| **x == r) {
            Some(x) => Some(*x),
            None => bail!(
                "unknown {} region `{}`; use one of {}",
                marketplace.display_name(),
                crate::outcome::sanitize(&r, 20),
                regions.join(", ")
            ),
        }
    };

    // The new table, formatted by toml_edit (quoting and escaping done right), appended after
    // the file's last byte so that nothing the user wrote moves.
    let mut table = toml_edit::Table::new();
    table.insert("id", toml_edit::value(id.clone()));
    table.insert("marketplace", toml_edit::value(marketplace.as_str()));
    table.insert("name", toml_edit::value(name));
    if !account.trim().is_empty() {
        table.insert("account", toml_edit::value(account.trim()));
    }
    if let Some(r) = region {
        table.insert("region", toml_edit::value(r));
    }
    let mut aot = toml_edit::ArrayOfTables::new();
    aot.push(table);
    let mut doc = toml_edit::DocumentMut::new();
    doc.insert("store", toml_edit::Item::ArrayOfTables(aot));
    let updated = super::appended(&config, &doc)?;
    let new_config = Config::from_toml(&config.path, &updated)
        .map_err(|e| anyhow!("the new store would make the config invalid:\n{e}"))?;
    let store = new_config.store(&id).expect("just added");

    // Secrets first: nothing is written unless they are complete.
    let schema = Schema::Store(store.marketplace);
    let mut secrets = read_document(&mut p, schema, &entry)?;
    let vault = open_vault(&config)?;
    let identity = super::identity_if_present(&config)?;

    // The entry before the store: a vault that cannot be written (no recipients, a full disk)
    // leaves the config as it was, instead of naming a store the daemon has no secrets for.
    vault.write(&entry, &mut secrets, None, identity.as_ref())?;
    crate::vault::write_atomic(&config.path, updated.as_bytes(), 0o640)
        .with_context(|| format!("writing {}", config.path.display()))?;
    eprintln!(
        "added store `{id}` to {} and its secrets to the vault",
        config.path.display()
    );
    eprintln!(
        "check its login now with: storeguard --config {} check {id}",
        config.path.display()
    );
    Ok(ExitCode::SUCCESS)
}
