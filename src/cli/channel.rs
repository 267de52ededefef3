//! `storeguard channel add`: a guided way to a working alert channel. Asks for the kind, a name,
//! the settings the kind needs and its secrets (a chat robot's webhook URL exactly as copied, or
//! only its token); checks all of it before anything is written; stores the secrets in the vault
//! and appends the `[[channel]]` table (every other byte of the file kept); then sends a test.

use super::prompt::Prompter;
use super::{load_config, open_vault};
use crate::config::Config;
use crate::model::ChannelKind;
use crate::vault::{Document, EntryId, Schema};
use anyhow::{Context, anyhow, bail};
use clap::Args;
use secrecy::ExposeSecret;
use std::path::Path;
use std::process::ExitCode;
use zeroize::Zeroizing;

#[derive(Args, Debug, Default)]
pub struct AddArgs {
    /// webhook, slack, telegram, email, dingtalk, wecom, feishu, alertmanager or log
    #[arg(long)]
    pub kind: Option<String>,
    /// Channel name: lowercase letters, digits, - and _ (e.g. ops-dingtalk)
    #[arg(long)]
    pub name: Option<String>,
    /// Base URL of a private deployment of the chat service (written as `endpoint`)
    #[arg(long, value_name = "URL")]
    pub endpoint: Option<String>,
    /// Do not send a test message once the channel is added
    #[arg(long)]
    pub no_test: bool,
}

/// A TOML basic string (quotes and escapes), for values typed by the user.
fn quoted(s: &str) -> String {
    toml_edit::Value::from(s).to_string().trim().to_string()
}

pub fn add(config_path: &Path, args: AddArgs) -> anyhow::Result<ExitCode> {
    let config = load_config(config_path)?;
    let mut p = Prompter::new();
    let all = ChannelKind::ALL.map(|k| k.as_str()).join(", ");
    let kind = match args.kind {
        Some(k) => k,
        None => p.ask(&format!("Channel kind ({all})"), None)?,
    };
    let kind = ChannelKind::parse(kind.trim().to_ascii_lowercase().as_str()).ok_or_else(|| {
        anyhow!(
            "unknown channel kind `{}`; use one of {all}",
            crate::outcome::sanitize(&kind, 40)
        )
    })?;
    let spec = kind.spec();
    let name = match args.name {
        Some(n) => n,
        None => p.ask("Channel name", Some(kind.as_str()))?,
    };
    let entry = EntryId::parse(&format!("channel/{name}")).map_err(|e| anyhow!(e))?;
    if config.channel(&name).is_some() {
        bail!(
            "channel `{name}` is already in {}\n  help: pick another name, or change its secrets with `storeguard vault edit channel/{name}`",
            config.path.display()
        );
    }

    // The [[channel]] table, formatted by toml_edit, appended after the file's last byte.
    let mut table = toml_edit::Table::new();
    table.insert("name", toml_edit::value(name.clone()));
    table.insert("kind", toml_edit::value(kind.as_str()));
    if let Some(e) = &args.endpoint {
        table.insert("endpoint", toml_edit::value(e.trim()));
    }
    for f in spec.config_fields {
        let answer = p.ask(f.prompt, None)?;
        if f.list {
            let mut a = toml_edit::Array::new();
            for item in answer.split(',').map(str::trim).filter(|i| !i.is_empty()) {
                a.push(item);
            }
            table.insert(f.key, toml_edit::value(a));
        } else {
            table.insert(f.key, toml_edit::value(answer.trim()));
        }
    }
    let mut aot = toml_edit::ArrayOfTables::new();
    aot.push(table);
    let mut doc = toml_edit::DocumentMut::new();
    doc.insert("channel", toml_edit::Item::ArrayOfTables(aot));
    let updated = super::appended(&config, &doc)?;
    Config::from_toml(&config.path, &updated)
        .map_err(|e| anyhow!("the new channel would make the config invalid:\n{e}"))?;

    // Its secrets, checked before anything is written.
    let secrets = match spec.vault_fields {
        None => None,
        Some(fields) => Some(ask_secrets(&mut p, kind, &name, fields)?),
    };
    let vault = open_vault(&config)?;
    let identity = super::identity_if_present(&config)?;
    if let Some(mut secrets) = secrets {
        vault.write(&entry, &mut secrets, None, identity.as_ref())?;
    }
    crate::vault::write_atomic(&config.path, updated.as_bytes(), 0o640)
        .with_context(|| format!("writing {}", config.path.display()))?;
    eprintln!(
        "added {} channel `{name}` to {}{}",
        spec.display_name,
        config.path.display(),
        if spec.vault_fields.is_some() {
            " and its secrets to the vault"
        } else {
            ""
        }
    );
    eprintln!(
        "route alerts to it: add \"{name}\" to `channels` in [defaults] or in a store; then `systemctl reload storeguard`"
    );
    if args.no_test || identity.is_none() {
        if identity.is_none() {
            eprintln!(
                "no identity here to decrypt the vault: send a test where the daemon runs, with `storeguard alert test {name}`"
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!("sending a test message:");
    super::alert_cmd::run(
        config_path,
        super::alert_cmd::AlertCmd::Test(super::alert_cmd::TestArgs { channel: name }),
    )
}

/// Asks for a channel's secrets (hidden at a terminal; one line each from a pipe) and returns
/// them as a checked vault document. A robot's webhook URL may be pasted whole.
fn ask_secrets(
    p: &mut Prompter,
    kind: ChannelKind,
    name: &str,
    fields: &[crate::model::Field],
) -> anyhow::Result<Document> {
    let mut text = Zeroizing::new(String::new());
    let robot = kind.spec().robot.as_ref();
    if let Some(r) = robot {
        let pasted = p.ask_secret(&format!(
            "Webhook URL exactly as copied from the robot's settings ({}), or only its token",
            r.example
        ))?;
        let pasted = pasted.expose_secret().trim();
        if pasted.is_empty() {
            bail!("no webhook URL or token given");
        }
        if pasted.contains("://") {
            crate::alert::check_robot_url(
                kind,
                &secrecy::SecretString::from(pasted.to_string()),
                name,
            )?;
            text.push_str(&format!("url = {}\n", quoted(pasted)));
        } else {
            text.push_str(&format!("{} = {}\n", r.token_field, quoted(pasted)));
        }
    }
    for f in fields {
        if robot.is_some_and(|r| f.name == "url" || f.name == r.token_field) {
            continue;
        }
        let question = format!(
            "{} — {}{}",
            f.name,
            f.help,
            if f.required { "" } else { " (optional)" }
        );
        let value = if f.secret {
            Zeroizing::new(p.ask_secret(&question)?.expose_secret().to_string())
        } else {
            Zeroizing::new(p.ask(&question, None)?)
        };
        let value = value.trim();
        if value.is_empty() {
            if f.required {
                bail!(
                    "`{}` is required for a {} channel",
                    f.name,
                    kind.spec().display_name
                );
            }
            continue;
        }
        text.push_str(&format!("{} = {}\n", f.name, quoted(value)));
    }
    Document::parse(&text, Schema::Channel(kind)).map_err(|e| anyhow!("channel/{name}: {e}"))
}
