//! `storeguard mailbox test NAME`: logs in to one mailbox as the daemon would, lists the folders
//! it would watch and the last marketplace mails it would classify, with their verdicts. It
//! changes nothing: the mailbox is only EXAMINEd, and the state file is not touched.

use super::{load_config, load_identity, open_vault};
use crate::mail::auth::Verifier;
use crate::mail::imap::{ImapError, Role, Secret, Session};
use anyhow::{Context, anyhow};
use clap::{Args, Subcommand};
use std::path::Path;
use std::process::ExitCode;

#[derive(Subcommand, Debug)]
pub enum MailboxCmd {
    /// Log in, list the folders that would be watched and classify the last few marketplace
    /// mails; changes nothing
    Test(TestArgs),
}

#[derive(Args, Debug)]
pub struct TestArgs {
    /// Mailbox name, as in a [[mailbox]] table of storeguard.toml
    pub mailbox: String,
    /// How many of the newest messages of each folder to read
    #[arg(long, default_value_t = 20)]
    pub last: u32,
}

pub fn run(config_path: &Path, cmd: MailboxCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        MailboxCmd::Test(args) => test(config_path, &args),
    }
}

fn test(config_path: &Path, args: &TestArgs) -> anyhow::Result<ExitCode> {
    let config = load_config(config_path)?;
    let mailbox = config
        .mailboxes
        .iter()
        .find(|m| m.name == args.mailbox)
        .ok_or_else(|| {
            anyhow!(
                "mailbox `{}` is not in {}\n  help: add a [[mailbox]] table with name = \"{}\" first",
                args.mailbox,
                config.path.display(),
                args.mailbox
            )
        })?;
    let vault = open_vault(&config)?;
    let identity = std::sync::Arc::new(load_identity(&config)?);
    let secret = Secret::load(mailbox, &vault, &identity).map_err(|e| {
        anyhow!(
            "{e}\n  help: write it with `storeguard vault put mailbox/{}`",
            mailbox.name
        )
    })?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async {
        let verifier = Verifier::new(config.mail.resolver).map_err(anyhow::Error::msg)?;
        let catalogue = config.mail.catalogue();
        let mut session = match Session::open(mailbox, &secret).await {
            Ok(s) => s,
            Err(ImapError::Rejected(why)) => {
                println!(
                    "{}: the server refused the login ({why}).\n  Check the username and the app password (QQ/163: the 授权码, not the web password). Yandex resets all app passwords when the account password changes.",
                    mailbox.name
                );
                return Ok(ExitCode::FAILURE);
            }
            Err(e) => return Err(anyhow!("{}: {e}", mailbox.name)),
        };
        println!(
            "{}: logged in to {}:{} as {} ({})",
            mailbox.name,
            mailbox.host,
            mailbox.port,
            mailbox.username,
            if session.idle {
                "IDLE: new mail is seen at once"
            } else {
                "no IDLE: folders are read every poll interval"
            }
        );
        let folders = session.folders(&mailbox.folders).await?;
        if !folders.iter().any(|f| f.role == Role::Spam) {
            println!("  no spam folder found (no \\Junk folder and no known name)");
        }
        for f in &folders {
            let opened = session.examine(&f.name).await?;
            let role = match f.role {
                Role::Inbox => "inbox",
                Role::Spam => "spam",
                Role::Extra => "extra",
            };
            let from = opened.uid_next.saturating_sub(args.last.max(1) + 1);
            let uids = session.uids_after(from).await?;
            println!("  {} ({role}): reading the last {}", f.display, uids.len());
            let mut shown = 0;
            for m in session.fetch(&uids).await?.iter().rev() {
                let Some(c) = catalogue.classify(&m.raw) else {
                    continue;
                };
                let verdict = verifier.verdict(&m.raw, &c).await;
                let event = c.event_name(verdict);
                let when = m
                    .received
                    .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
                    .unwrap_or_else(|| "-".into());
                println!(
                    "    {when}  {:<24} {:<14} {event}",
                    c.domain,
                    verdict.as_str()
                );
                shown += 1;
            }
            if shown == 0 {
                println!("    no marketplace mail among them");
            }
        }
        session.close().await;
        println!("nothing was changed: the folders were only examined.");
        Ok(ExitCode::SUCCESS)
    })
}
