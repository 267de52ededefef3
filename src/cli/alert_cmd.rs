//! `storeguard alert test CHANNEL`: sends a clearly marked test message through one channel and
//! prints the service's verdict. Exit status 0 only when the service said delivered; 75
//! (EX_TEMPFAIL) when it asked to retry later; 1 when it refused.

use super::{load_config, load_identity};
use crate::alert::{ChannelSet, Delivery, test_event};
use crate::i18n;
use crate::vault::Vault;
use anyhow::{Context, anyhow};
use clap::{Args, Subcommand};
use std::path::Path;
use std::process::ExitCode;

#[derive(Subcommand, Debug)]
pub enum AlertCmd {
    /// Send a clearly marked test message through CHANNEL and print the service's verdict
    Test(TestArgs),
}

#[derive(Args, Debug)]
pub struct TestArgs {
    /// Channel name, as in a [[channel]] table of storeguard.toml
    pub channel: String,
}

pub fn run(config_path: &Path, cmd: AlertCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        AlertCmd::Test(args) => test(config_path, &args.channel),
    }
}

/// Exit status when the service asked to try again later (sysexits EX_TEMPFAIL).
const EXIT_RETRY: u8 = 75;

fn test(config_path: &Path, name: &str) -> anyhow::Result<ExitCode> {
    let config = load_config(config_path)?;
    let vault = Vault::open(&config.daemon.vault_dir)?;
    let identity = load_identity(&config)?;
    let set = ChannelSet::only(&config, &vault, &identity, name)?;
    let kind = set
        .kind(name)
        .ok_or_else(|| anyhow!("channel `{name}` was not built"))?;
    let lang = set.language(name).unwrap_or(config.daemon.language);
    let now = chrono::Utc::now();
    let event = test_event(&config, name, lang, now);
    if let Some(msg) = set.render_for(name, &event) {
        println!("{name} ({kind}): sending \"{}\"", msg.title);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let attempt = rt.block_on(set.attempt(name, &event, now));
    let out = config.daemon.language;
    match attempt.delivery {
        Delivery::Delivered => {
            println!("{name}: {}", i18n::text(out, "alert.verdict.delivered"));
            Ok(ExitCode::SUCCESS)
        }
        Delivery::Retry(after) => {
            let verdict = match after {
                Some(d) => i18n::format(
                    out,
                    "alert.verdict.retry_after",
                    &[("seconds", &d.as_secs().max(1).to_string())],
                ),
                None => i18n::text(out, "alert.verdict.retry").to_string(),
            };
            match attempt.reason {
                Some(r) => println!("{name}: {verdict} ({r})"),
                None => println!("{name}: {verdict}"),
            }
            Ok(ExitCode::from(EXIT_RETRY))
        }
        Delivery::Permanent(reason) => {
            println!(
                "{name}: {}",
                i18n::format(out, "alert.verdict.refused", &[("reason", &reason)])
            );
            Ok(ExitCode::FAILURE)
        }
    }
}
