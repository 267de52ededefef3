//! Command-line interface: clap definitions and thin command bodies over the library.

pub mod alert_cmd;
mod channel;
mod check;
mod demo;
mod init;
mod mailbox;
pub mod prompt;
pub(crate) mod replicas;
pub mod run;
pub mod status;
mod store;
mod vault_cmd;

use crate::config::{self, Config};
use crate::vault::{self, Document, EntryId, EntryKind, Identity, Schema, Vault};
use anyhow::{Context, anyhow, bail};
use clap::{Args, Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "storeguard",
    version,
    about = "Keeps marketplace store credentials in an age vault and proves every store still logs in.",
    propagate_version = true
)]
pub struct Cli {
    /// Config file [default: $STOREGUARD_CONFIG, else /etc/storeguard/storeguard.toml]
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// See storeguard work in under a minute: fake marketplaces, seventeen stores, alerts
    Demo(demo::DemoArgs),
    /// Create a config, an identity, a vault and a state directory (never overwrites)
    Init,
    /// Validate storeguard.toml
    #[command(subcommand)]
    Config(ConfigCmd),
    /// Read and write the encrypted credential vault
    #[command(subcommand)]
    Vault(VaultCmd),
    /// Manage stores in storeguard.toml
    #[command(subcommand)]
    Store(StoreCmd),
    /// Manage alert channels in storeguard.toml
    #[command(subcommand)]
    Channel(ChannelCmd),
    /// Print the current 2FA code of a store's web login
    Otp(OtpArgs),
    /// Run the daemon: check every store on its schedule and deliver alerts
    Run(run::RunArgs),
    /// Show every store's status, open incidents, last and next check, expiry
    Status(status::StatusArgs),
    /// Show a store's login records
    History(status::HistoryArgs),
    /// Hold a store's notifications for a while (checks still run and are recorded)
    Silence(status::SilenceArgs),
    /// Check stores' logins now; exit code = worst status (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN)
    Check(check::CheckArgs),
    /// Alert channels: send a test message
    #[command(subcommand)]
    Alert(alert_cmd::AlertCmd),
    /// Mailboxes watched for marketplace security mail: test one
    #[command(subcommand)]
    Mailbox(mailbox::MailboxCmd),
    /// Several replicas on PostgreSQL: who holds which shards, since when, last renewal
    Replicas(replicas::ReplicasArgs),
}

#[derive(Subcommand, Debug)]
pub enum ConfigCmd {
    /// Check the config and the vault together; lists every problem
    Check,
}

#[derive(Subcommand, Debug)]
pub enum VaultCmd {
    /// Write an entry from stdin (a TOML document) or, at a terminal, field by field
    Put(EntryArg),
    /// Edit an entry in $EDITOR (decrypted only into a private 0600 file, removed afterwards)
    Edit(EntryArg),
    /// Show an entry's fields with values masked to their last 4 characters
    Show(ShowArgs),
    /// List entries, and config items without entries (or entries without config items)
    List,
    /// Delete an entry
    Rm(EntryArg),
    /// Re-encrypt every entry to the current recipients.txt (safe to interrupt and rerun)
    Rekey,
    /// Decrypt and validate every entry; report bad ones by name
    Verify,
    /// Replica mode: write the fleet database's entries to DIR as files the age CLI reads
    Export(DirArg),
    /// Replica mode: copy a vault directory's entries into the fleet database (newer only)
    Import(DirArg),
}

#[derive(Args, Debug)]
pub struct DirArg {
    /// A vault directory (export: a new or empty one)
    pub dir: PathBuf,
}

#[derive(Args, Debug)]
pub struct EntryArg {
    /// KIND/NAME: store/<id>, channel/<name>, mailbox/<name>, daemon/api or daemon/postgres
    pub entry: String,
}

#[derive(Args, Debug)]
pub struct ShowArgs {
    /// KIND/NAME: store/<id>, channel/<name>, mailbox/<name>, daemon/api or daemon/postgres
    pub entry: String,
    /// Print the values in full
    #[arg(long)]
    pub reveal: bool,
}

#[derive(Subcommand, Debug)]
pub enum ChannelCmd {
    /// Add a channel: asks for its kind, name, settings and secrets (a chat robot's webhook URL
    /// exactly as copied), checks them, appends a [[channel]] and sends a test message
    Add(channel::AddArgs),
}

#[derive(Subcommand, Debug)]
pub enum StoreCmd {
    /// Add a store: asks for what is not given, appends a [[store]] keeping the file's comments,
    /// then takes its secrets like `vault put`
    Add(store::AddArgs),
}

#[derive(Args, Debug)]
pub struct OtpArgs {
    /// Store id
    pub store: String,
    /// Compute the code at this Unix time instead of now
    #[arg(long, hide = true)]
    pub time: Option<u64>,
}

/// Runs the CLI and maps errors to an exit code.
pub fn main() -> ExitCode {
    quiet_on_closed_pipe();
    let cli = Cli::parse();
    // The unwind runs every destructor (secrets are wiped) before the quiet exit.
    let result = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(cli))) {
        Ok(result) => result,
        Err(_) if PIPE_CLOSED.load(std::sync::atomic::Ordering::SeqCst) => {
            return ExitCode::SUCCESS;
        }
        Err(panic) => std::panic::resume_unwind(panic),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            // Errors quote arguments, file names and config text: nothing in them reaches the
            // terminal as a control sequence.
            eprintln!("error: {}", crate::outcome::printable(&report(&e)));
            ExitCode::FAILURE
        }
    }
}

static PIPE_CLOSED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// `storeguard vault list | head -1`: when the reader goes away, stop quietly (exit 0, as
/// ripgrep does) instead of a panic message. Every other panic is reported as usual (a
/// backtrace only when RUST_BACKTRACE asks for one).
fn quiet_on_closed_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let text = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if text.starts_with("failed printing to std") && text.contains("Broken pipe") {
            PIPE_CLOSED.store(true, std::sync::atomic::Ordering::SeqCst);
            return;
        }
        default(info);
    }));
}

/// An error and its causes, each said once. Messages often quote their source already
/// (`state database …: unable to open database file`), and `{:#}` would repeat it; a cause
/// the text holds (or holds all but a prefix of, like SQLite's "Error code 14: …") is left
/// out. Causes go before the `help:` line, so the advice stays last.
pub fn report(e: &anyhow::Error) -> String {
    let top = e.to_string();
    let (mut head, help) = match top.find("\n  help:") {
        Some(i) => (top[..i].to_string(), top[i..].to_string()),
        None => (top.clone(), String::new()),
    };
    let mut help = help;
    for cause in e.chain().skip(1) {
        let text = cause.to_string();
        let (text, more_help) = match text.find("\n  help:") {
            Some(i) => (text[..i].to_string(), text[i..].to_string()),
            None => (text, String::new()),
        };
        let tail = text.rsplit(": ").next().unwrap_or(&text);
        let said = |s: &str| head.contains(s) || help.contains(s);
        if !text.is_empty() && !said(&text) && !said(tail) {
            head.push_str(": ");
            head.push_str(&text);
        }
        if !more_help.is_empty() && !help.contains(more_help.trim()) {
            help.push_str(&more_help);
        }
    }
    head + &help
}

/// Dispatches one command.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let config_path = config::resolve_path(cli.config.as_deref());
    // A `vault edit` killed before it could wipe its decrypted copy: wipe it now (quietly:
    // scripts compare this command's output, and the copy is not theirs).
    vault_cmd::clean_stale_edit_dirs();
    match cli.command {
        Command::Demo(args) => demo::demo(args),
        Command::Init => init::run(&config_path),
        Command::Config(ConfigCmd::Check) => config_check(&config_path),
        Command::Vault(cmd) => vault_cmd::run(&config_path, cmd),
        Command::Store(StoreCmd::Add(args)) => store::add(&config_path, args),
        Command::Channel(ChannelCmd::Add(args)) => channel::add(&config_path, args),
        Command::Otp(args) => otp(&config_path, args),
        Command::Run(args) => run::run(&config_path, args),
        Command::Status(args) => status::status(&config_path, args),
        Command::History(args) => status::history(&config_path, args),
        Command::Silence(args) => status::silence(&config_path, args),
        Command::Check(args) => check::run(&config_path, args),
        Command::Alert(cmd) => alert_cmd::run(&config_path, cmd),
        Command::Mailbox(cmd) => mailbox::run(&config_path, cmd),
        Command::Replicas(args) => replicas::run(&config_path, args),
    }
}

/// Loads the config or fails with every problem listed.
pub fn load_config(path: &Path) -> anyhow::Result<Config> {
    Config::load(path).map_err(|e| anyhow!("{e}"))
}

/// Loads the identity named by the config, asking for a passphrase at a terminal if needed.
pub fn load_identity(config: &Config) -> anyhow::Result<Identity> {
    let path = &config.daemon.identity;
    Ok(Identity::load(path, || {
        prompt::passphrase_from_terminal(&path.display().to_string())
    })?)
}

/// The schema an entry must follow, from the config.
pub fn schema_for(config: &Config, id: &EntryId) -> anyhow::Result<Schema> {
    match id.kind {
        EntryKind::Store => config
            .store(&id.name)
            .map(|s| Schema::Store(s.marketplace))
            .ok_or_else(|| {
                anyhow!(
                    "store `{}` is not in {}\n  help: add it first with `storeguard store add`, or check the id",
                    id.name,
                    config.path.display()
                )
            }),
        EntryKind::Channel => config
            .channel(&id.name)
            .map(|c| Schema::Channel(c.kind))
            .ok_or_else(|| {
                anyhow!(
                    "channel `{}` is not in {}\n  help: add a [[channel]] table with name = \"{}\" first",
                    id.name,
                    config.path.display(),
                    id.name
                )
            }),
        EntryKind::Mailbox => config
            .mailboxes
            .iter()
            .find(|m| m.name == id.name)
            .map(|m| Schema::Mailbox {
                xoauth2: m.auth == crate::config::MailAuth::Xoauth2,
            })
            .ok_or_else(|| {
                anyhow!(
                    "mailbox `{}` is not in {}\n  help: add a [[mailbox]] table with name = \"{}\" first",
                    id.name,
                    config.path.display(),
                    id.name
                )
            }),
        EntryKind::Daemon => {
            match id.name.as_str() {
                "api" => Ok(Schema::Daemon),
                "postgres" => Ok(Schema::Postgres),
                _ => bail!("the daemon entries are daemon/api and daemon/postgres"),
            }
        }
    }
}

/// The config file's text with `doc` (a new table) appended after its last byte, so nothing
/// the user wrote moves.
fn appended(config: &Config, doc: &toml_edit::DocumentMut) -> anyhow::Result<String> {
    let mut updated = std::fs::read_to_string(&config.path)
        .with_context(|| format!("reading {}", config.path.display()))?;
    if !updated.is_empty() && !updated.ends_with('\n') {
        updated.push('\n');
    }
    updated.push('\n');
    updated.push_str(&doc.to_string());
    Ok(updated)
}

/// The identity, or `None` when there is none here (entries can still be encrypted to the
/// vault's recipients); any other problem with it is an error.
fn identity_if_present(config: &Config) -> anyhow::Result<Option<crate::vault::Identity>> {
    match load_identity(config) {
        Ok(i) => Ok(Some(i)),
        Err(e)
            if matches!(
                e.downcast_ref::<crate::vault::IdentityError>(),
                Some(crate::vault::IdentityError::NotFound { .. })
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

fn open_vault(config: &Config) -> anyhow::Result<Vault> {
    Ok(Vault::open(&config.daemon.vault_dir)?)
}

fn config_check(path: &Path) -> anyhow::Result<ExitCode> {
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            eprintln!(
                "error: {} problem{} in {}",
                e.problems.len(),
                if e.problems.len() == 1 { "" } else { "s" },
                path.display()
            );
            return Ok(ExitCode::FAILURE);
        }
    };
    let mut problems: Vec<String> = Vec::new();
    let vault = match Vault::open(&config.daemon.vault_dir) {
        Ok(v) => Some(v),
        Err(e) => {
            problems.push(e.to_string());
            None
        }
    };
    let identity = match load_identity(&config) {
        Ok(i) => Some(i),
        Err(e) => {
            problems.push(format!("{e:#}"));
            None
        }
    };
    if let Some(v) = &vault {
        problems.extend(v.permission_problems());
        if let Err(e) = v.recipients() {
            problems.push(e.to_string());
        }
    }
    if let (Some(vault), Some(identity)) = (&vault, &identity) {
        let mut wanted: Vec<(EntryId, Schema)> = config
            .stores
            .iter()
            .filter(|s| s.enabled)
            .map(|s| (EntryId::store(&s.id), Schema::Store(s.marketplace)))
            .collect();
        wanted.extend(
            config
                .channels
                .iter()
                .filter(|c| c.kind.has_vault_entry())
                .map(|c| (EntryId::channel(&c.name), Schema::Channel(c.kind))),
        );
        wanted.extend(config.mailboxes.iter().map(|m| {
            (
                EntryId::mailbox(&m.name),
                Schema::Mailbox {
                    xoauth2: m.auth == crate::config::MailAuth::Xoauth2,
                },
            )
        }));
        wanted.push((EntryId::daemon(), Schema::Daemon));
        for (id, schema) in wanted {
            if let Err(e) = vault.load(&id, schema, identity) {
                problems.push(e.to_string());
            }
        }
    }
    if problems.is_empty() {
        let enabled = config.stores.iter().filter(|s| s.enabled).count();
        println!(
            "{}: OK — {} store{} ({} enabled), {} channel{}; every vault entry decrypts and is complete",
            config.path.display(),
            config.stores.len(),
            if config.stores.len() == 1 { "" } else { "s" },
            enabled,
            config.channels.len(),
            if config.channels.len() == 1 { "" } else { "s" },
        );
        Ok(ExitCode::SUCCESS)
    } else {
        for p in &problems {
            eprintln!("{p}");
        }
        eprintln!(
            "error: {} problem{} found",
            problems.len(),
            if problems.len() == 1 { "" } else { "s" }
        );
        Ok(ExitCode::FAILURE)
    }
}

fn otp(path: &Path, args: OtpArgs) -> anyhow::Result<ExitCode> {
    let config = load_config(path)?;
    let store = config.store(&args.store).ok_or_else(|| {
        anyhow!(
            "store `{}` is not in {}\n  help: `storeguard vault list` shows the stores",
            args.store,
            config.path.display()
        )
    })?;
    let vault = open_vault(&config)?;
    let identity = load_identity(&config)?;
    let id = EntryId::store(&store.id);
    let doc: Document = vault.load(&id, Schema::Store(store.marketplace), &identity)?;
    let secret = doc
        .web()
        .and_then(|w| w.get("totp_secret"))
        .ok_or_else(|| {
            anyhow!(
                "store `{}` has no web-login 2FA secret\n  help: add totp_secret under [web] with `storeguard vault edit {id}`",
                store.id
            )
        })?;
    let now = match args.time {
        Some(t) => t,
        None => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .context("system clock is before 1970")?
            .as_secs(),
    };
    let code =
        crate::otp::code_at(secret, now).map_err(|e| anyhow!("store `{}`: {e}", store.id))?;
    println!("{}  (valid for {} s)", code.code, code.valid_for);
    Ok(ExitCode::SUCCESS)
}

/// Re-exported for commands that write entries.
pub(crate) use vault::MAX_ENTRY_BYTES;
