//! `storeguard vault …`: put, edit, show, list, rm, rekey, verify.

use super::prompt::Prompter;
use super::{MAX_ENTRY_BYTES, VaultCmd, load_config, load_identity, open_vault, schema_for};
use crate::config::Config;
use crate::vault::entry::{FieldType, mask};
use crate::vault::{Document, EntryId, EntryKind, IdentityError, Schema, Vault, VaultError};
use anyhow::{Context, anyhow, bail};
use secrecy::ExposeSecret;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use zeroize::Zeroizing;

pub fn run(config_path: &Path, cmd: VaultCmd) -> anyhow::Result<ExitCode> {
    // Check the entry name before touching any file.
    if let VaultCmd::Put(a) | VaultCmd::Edit(a) | VaultCmd::Rm(a) = &cmd {
        EntryId::parse(&a.entry).map_err(|e| anyhow!(e))?;
    }
    if let VaultCmd::Show(a) = &cmd {
        EntryId::parse(&a.entry).map_err(|e| anyhow!(e))?;
    }
    match &cmd {
        VaultCmd::Export(d) => return super::replicas::export(config_path, &d.dir),
        VaultCmd::Import(d) => return super::replicas::import(config_path, &d.dir),
        _ => {}
    }
    let config = load_config(config_path)?;
    let vault = open_vault(&config)?;
    // Temp files of a writer killed mid-write are never a valid entry: remove them first.
    let stale = vault.clean_stale_temp_files()?;
    if stale > 0 {
        eprintln!("removed {stale} stale temporary file(s) left by an interrupted write");
    }
    match cmd {
        VaultCmd::Put(a) => put(
            &config,
            &vault,
            &EntryId::parse(&a.entry).map_err(|e| anyhow!(e))?,
        ),
        VaultCmd::Edit(a) => edit(
            &config,
            &vault,
            &EntryId::parse(&a.entry).map_err(|e| anyhow!(e))?,
        ),
        VaultCmd::Show(a) => show(
            &config,
            &vault,
            &EntryId::parse(&a.entry).map_err(|e| anyhow!(e))?,
            a.reveal,
        ),
        VaultCmd::List => list(&config, &vault),
        VaultCmd::Rm(a) => {
            let id = EntryId::parse(&a.entry).map_err(|e| anyhow!(e))?;
            vault.remove(&id)?;
            eprintln!("removed {id}");
            Ok(ExitCode::SUCCESS)
        }
        VaultCmd::Rekey => rekey(&config, &vault),
        VaultCmd::Verify => verify(&config, &vault),
        // Taken above, before the local vault is opened.
        VaultCmd::Export(d) => super::replicas::export(config_path, &d.dir),
        VaultCmd::Import(d) => super::replicas::import(config_path, &d.dir),
    }
}

/// The identity if one is there; a missing identity is fine for commands that only encrypt.
fn optional_identity(config: &Config) -> anyhow::Result<Option<crate::vault::Identity>> {
    match load_identity(config) {
        Ok(i) => Ok(Some(i)),
        Err(e) => match e.downcast_ref::<IdentityError>() {
            Some(IdentityError::NotFound { .. }) => Ok(None),
            _ => Err(e),
        },
    }
}

/// Reads a secret document for `schema`: the whole of stdin when piped, field by field at a
/// terminal.
pub fn read_document(
    prompter: &mut Prompter,
    schema: Schema,
    id: &EntryId,
) -> anyhow::Result<Document> {
    if !prompter.interactive() {
        let text = prompter
            .read_rest(MAX_ENTRY_BYTES)
            .context("reading the entry from stdin")?;
        if text.trim().is_empty() {
            bail!(
                "nothing on stdin\n  help: pipe a TOML document, e.g. `storeguard vault put {id} < entry.toml`, or run at a terminal to be asked field by field"
            );
        }
        return Document::parse(&text, schema).map_err(|e| anyhow!("{id}: {e}"));
    }
    eprintln!(
        "Enter the {} secrets for {id} (input is hidden; leave optional fields empty).",
        schema.describe()
    );
    let mut text = Zeroizing::new(String::new());
    ask_fields(prompter, schema.fields(), &mut text)?;
    if let Some(web) = schema.web_fields() {
        let add = prompter.ask(
            "Also keep the seller-centre web login here? (y/N)",
            Some("n"),
        )?;
        if add.eq_ignore_ascii_case("y") || add.eq_ignore_ascii_case("yes") {
            text.push_str("[web]\n");
            ask_fields(prompter, web, &mut text)?;
        }
    }
    Document::parse(&text, schema).map_err(|e| anyhow!("{id}: {e}"))
}

fn ask_fields(
    prompter: &mut Prompter,
    fields: &[crate::vault::entry::Field],
    out: &mut Zeroizing<String>,
) -> anyhow::Result<()> {
    for f in fields {
        let label = format!(
            "{} — {}{}",
            f.name,
            f.help,
            if f.required { "" } else { " (optional)" }
        );
        let value = if f.secret {
            prompter.ask_secret(&label)?
        } else {
            secrecy::SecretString::from(prompter.ask(&label, None)?)
        };
        let v = value.expose_secret();
        if v.is_empty() {
            continue;
        }
        match f.ty {
            FieldType::Time => out.push_str(&format!("{} = \"{}\"\n", f.name, v.replace('"', ""))),
            FieldType::Text => {
                out.push_str(f.name);
                out.push_str(" = \"");
                for c in v.chars() {
                    match c {
                        '"' => out.push_str("\\\""),
                        '\\' => out.push_str("\\\\"),
                        c if c.is_control() => {}
                        c => out.push(c),
                    }
                }
                out.push_str("\"\n");
            }
        }
    }
    Ok(())
}

fn put(config: &Config, vault: &Vault, id: &EntryId) -> anyhow::Result<ExitCode> {
    let schema = schema_for(config, id)?;
    let mut prompter = Prompter::new();
    let mut doc = read_document(&mut prompter, schema, id)?;
    let identity = optional_identity(config)?;
    vault.write(id, &mut doc, None, identity.as_ref())?;
    eprintln!("wrote {id} (generation {})", doc.generation);
    Ok(ExitCode::SUCCESS)
}

/// Prefix of `vault edit`'s private directories; the creator's pid follows it.
const EDIT_PREFIX: &str = "storeguard-edit-";

/// Where `vault edit` puts the decrypted entry: /dev/shm (never reaches a disk) if present.
fn edit_roots() -> Vec<std::path::PathBuf> {
    let mut roots = Vec::new();
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        roots.push(shm.to_path_buf());
    }
    roots.push(std::env::temp_dir());
    roots
}

fn private_edit_dir() -> anyhow::Result<tempfile::TempDir> {
    use std::os::unix::fs::PermissionsExt;
    let prefix = format!("{EDIT_PREFIX}{}-", std::process::id());
    let create = |root: &Path| {
        tempfile::Builder::new()
            .prefix(&prefix)
            // 0700 whatever the umask (the default would be 0777 & ~umask).
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir_in(root)
    };
    let roots = edit_roots();
    let dir = create(&roots[0]).or_else(|e| roots.get(1).map_or(Err(e), |r| create(r)));
    let dir = dir.context("creating a private directory for the decrypted entry")?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))
        .context("making the edit directory private")?;
    Ok(dir)
}

/// Overwrites every file in `dir` with zeros, then removes the directory.
fn wipe_dir(dir: &Path) {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for ent in rd.flatten() {
            if let Ok(meta) = ent.metadata()
                && meta.is_file()
            {
                let _ = std::fs::write(ent.path(), vec![0u8; meta.len() as usize]);
            }
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// Wipes the edit directories this user's `vault edit` left behind when it was killed
/// (SIGKILL, a lost SSH session before the handlers ran). Run at the start of every command.
pub fn clean_stale_edit_dirs() -> usize {
    use std::os::unix::fs::MetadataExt;
    let me = nix::unistd::geteuid().as_raw();
    let mut removed = 0;
    for root in edit_roots() {
        let Ok(rd) = std::fs::read_dir(&root) else {
            continue;
        };
        for ent in rd.flatten() {
            let name = ent.file_name();
            let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(EDIT_PREFIX)) else {
                continue;
            };
            let Ok(meta) = std::fs::symlink_metadata(ent.path()) else {
                continue;
            };
            if !meta.is_dir() || meta.uid() != me {
                continue;
            }
            // Old-style names (no pid) and pids that no longer run are stale.
            let alive = rest
                .split('-')
                .next()
                .and_then(|p| p.parse::<i32>().ok())
                .is_some_and(|pid| {
                    pid as u32 == std::process::id()
                        || nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
                });
            if !alive {
                wipe_dir(&ent.path());
                removed += 1;
            }
        }
    }
    removed
}

/// While the editor runs, SIGTERM and SIGHUP (a dropped SSH session) wipe the decrypted copy,
/// stop the editor and make `vault edit` fail; nothing is saved. SIGINT is left to the editor.
struct EditGuard {
    caught: std::sync::Arc<std::sync::atomic::AtomicBool>,
    editor: std::sync::Arc<std::sync::atomic::AtomicI32>,
    _thread: std::thread::JoinHandle<()>,
}

impl EditGuard {
    fn install(dir: std::path::PathBuf) -> anyhow::Result<EditGuard> {
        use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
        let caught = std::sync::Arc::new(AtomicBool::new(false));
        let editor = std::sync::Arc::new(AtomicI32::new(0));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()?;
        let signals = {
            let _g = rt.enter();
            use tokio::signal::unix::{SignalKind, signal};
            (
                signal(SignalKind::interrupt())?,
                signal(SignalKind::terminate())?,
                signal(SignalKind::hangup())?,
            )
        };
        let thread = {
            let (caught, editor) = (caught.clone(), editor.clone());
            std::thread::spawn(move || {
                let (mut int, mut term, mut hup) = signals;
                rt.block_on(async {
                    loop {
                        tokio::select! {
                            // Ctrl-C reaches the editor too, which decides; storeguard only
                            // must not die of it with the plaintext on disk.
                            _ = int.recv() => continue,
                            _ = term.recv() => break,
                            _ = hup.recv() => break,
                        }
                    }
                });
                caught.store(true, Ordering::SeqCst);
                wipe_dir(&dir);
                let pid = editor.load(Ordering::SeqCst);
                if pid > 0 {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGTERM,
                    );
                }
            })
        };
        Ok(EditGuard {
            caught,
            editor,
            _thread: thread,
        })
    }

    fn caught(&self) -> bool {
        self.caught.load(std::sync::atomic::Ordering::SeqCst)
    }
}

fn edit(config: &Config, vault: &Vault, id: &EntryId) -> anyhow::Result<ExitCode> {
    let schema = schema_for(config, id)?;
    let identity = load_identity(config)?;
    let (start_generation, body) = match vault.load(id, schema, &identity) {
        Ok(doc) => (Some(doc.generation), doc.to_toml_body()),
        Err(VaultError::Missing { .. }) => (None, template(schema)),
        Err(e) => return Err(e.into()),
    };
    let dir = private_edit_dir()?;
    let file_path = dir
        .path()
        .join(format!("{}-{}.toml", id.kind.as_str(), id.name));
    let header = format!(
        "# storeguard vault entry {id} ({}). Saved encrypted when the editor closes.\n# Lines starting with # are ignored.\n",
        schema.describe()
    );
    let original = Zeroizing::new(format!("{header}{}", body.as_str()));
    write_private(&file_path, original.as_bytes())?;
    let editor = std::env::var("VISUAL")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .or_else(|| {
            std::env::var("EDITOR")
                .ok()
                .filter(|s| !s.trim().is_empty())
        })
        .unwrap_or_else(|| "vi".to_string());
    let interactive = std::io::IsTerminal::is_terminal(&std::io::stdin());
    let guard = EditGuard::install(dir.path().to_path_buf())?;
    let result = loop {
        let status = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("{editor} \"$1\""))
            .arg("storeguard-editor")
            .arg(&file_path)
            .spawn()
            .and_then(|mut child| {
                guard
                    .editor
                    .store(child.id() as i32, std::sync::atomic::Ordering::SeqCst);
                child.wait()
            })
            .with_context(|| format!("starting the editor `{editor}`"));
        if guard.caught() {
            break Err(anyhow!(
                "interrupted: {id} was not changed, and the decrypted copy was wiped"
            ));
        }
        let status = match status {
            Ok(s) => s,
            Err(e) => break Err(e),
        };
        if !status.success() {
            break Err(anyhow!(
                "the editor exited with {status}; {id} was not changed"
            ));
        }
        let edited = Zeroizing::new(
            std::fs::read_to_string(&file_path).context("reading the edited entry back")?,
        );
        if edited.as_str() == original.as_str() {
            eprintln!("no changes; {id} left as it was");
            break Ok(None);
        }
        match Document::parse(&edited, schema) {
            Ok(doc) => break Ok(Some(doc)),
            Err(e) if interactive => {
                eprintln!("{id}: {e}");
                let mut p = Prompter::new();
                let again = p.ask("Edit again? (Y/n)", Some("y"))?;
                if again.eq_ignore_ascii_case("n") {
                    break Err(anyhow!("{id} was not changed"));
                }
            }
            Err(e) => {
                break Err(anyhow!(
                    "{id}: {e}\n  help: {id} was not changed; run `storeguard vault edit {id}` again"
                ));
            }
        }
    };
    // Overwrite the plaintext before the directory is removed.
    if let Ok(meta) = std::fs::metadata(&file_path) {
        let _ = std::fs::write(&file_path, vec![0u8; meta.len() as usize]);
    }
    drop(dir);
    match result? {
        None => Ok(ExitCode::SUCCESS),
        Some(mut doc) => {
            vault.write(id, &mut doc, start_generation, Some(&identity))?;
            eprintln!("saved {id} (generation {})", doc.generation);
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(bytes)?;
    Ok(())
}

fn template(schema: Schema) -> Zeroizing<String> {
    let mut s = Zeroizing::new(String::new());
    for f in schema.fields() {
        let opt = if f.required { "" } else { "# " };
        s.push_str(&format!("# {}\n{opt}{} = \"\"\n", f.help, f.name));
    }
    if let Some(web) = schema.web_fields() {
        s.push_str("\n# Optional seller-centre web login:\n# [web]\n");
        for f in web {
            s.push_str(&format!("# {} = \"\"\n", f.name));
        }
    }
    s
}

fn show(config: &Config, vault: &Vault, id: &EntryId, reveal: bool) -> anyhow::Result<ExitCode> {
    let identity = load_identity(config)?;
    let plain = vault.read(id, &identity)?;
    let table: toml::Table = toml::from_str(plain.as_str()).map_err(|e| {
        let line = e
            .span()
            .map(|s| plain.as_str()[..s.start].matches('\n').count() + 1);
        anyhow!(
            "{id}: {}not valid TOML\n  help: fix it with `storeguard vault edit {id}`",
            line.map_or(String::new(), |l| format!("line {l}: "))
        )
    })?;
    let generation = table
        .get("generation")
        .and_then(toml::Value::as_integer)
        .unwrap_or(0);
    let mut out = String::new();
    out.push_str(&format!("{id} (generation {generation})\n"));
    let render = |v: &toml::Value| -> String {
        let s = match v {
            toml::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        if reveal { s } else { mask(&s) }
    };
    let mut tables = Vec::new();
    for (k, v) in &table {
        if k == "generation" {
            continue;
        }
        match v {
            toml::Value::Table(t) => tables.push((k, t)),
            v => out.push_str(&format!("  {k:<26} {}\n", render(v))),
        }
    }
    for (name, t) in tables {
        out.push_str(&format!("  [{name}]\n"));
        for (k, v) in t {
            out.push_str(&format!("    {k:<24} {}\n", render(v)));
        }
    }
    print!("{out}");
    if schema_for(config, id).is_err() {
        eprintln!(
            "note: {id} has no matching item in {}",
            config.path.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn list(config: &Config, vault: &Vault) -> anyhow::Result<ExitCode> {
    let present = vault.list()?;
    let mut rows: Vec<(String, String)> = Vec::new();
    for id in &present {
        let note = match schema_for(config, id) {
            Ok(_) => "ok".to_string(),
            Err(_) => match id.kind {
                EntryKind::Store => "no [[store]] with this id in the config".into(),
                EntryKind::Channel => "no [[channel]] with this name in the config".into(),
                EntryKind::Daemon => "unknown daemon entry".into(),
                EntryKind::Mailbox => "no [[mailbox]] with this name in the config".into(),
            },
        };
        rows.push((id.to_string(), note));
    }
    let mut missing = 0;
    let expected = config
        .stores
        .iter()
        .map(|s| (EntryId::store(&s.id), s.enabled))
        .chain(
            config
                .channels
                .iter()
                .filter(|c| c.kind.has_vault_entry())
                .map(|c| (EntryId::channel(&c.name), true)),
        )
        .chain(
            config
                .mailboxes
                .iter()
                .map(|m| (EntryId::mailbox(&m.name), true)),
        )
        .chain(std::iter::once((EntryId::daemon(), true)));
    for (id, enabled) in expected {
        if !present.contains(&id) {
            if enabled {
                missing += 1;
            }
            rows.push((
                id.to_string(),
                format!(
                    "MISSING{}: add it with `storeguard vault put {id}`",
                    if enabled { "" } else { " (store disabled)" }
                ),
            ));
        }
    }
    rows.sort();
    let width = rows.iter().map(|(a, _)| a.len()).max().unwrap_or(0);
    for (a, b) in &rows {
        println!("{a:<width$}  {b}");
    }
    Ok(if missing > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn rekey(config: &Config, vault: &Vault) -> anyhow::Result<ExitCode> {
    let identity = load_identity(config)?;
    let recipients = vault.recipients()?;
    let mut failed = 0;
    let entries = vault.list()?;
    for id in &entries {
        if let Err(e) = vault.rekey_one(id, &identity) {
            failed += 1;
            eprintln!("{e}");
        }
    }
    eprintln!(
        "re-encrypted {} of {} entries to {} recipient{}",
        entries.len() - failed,
        entries.len(),
        recipients.len(),
        if recipients.len() == 1 { "" } else { "s" }
    );
    Ok(if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn verify(config: &Config, vault: &Vault) -> anyhow::Result<ExitCode> {
    let identity = load_identity(config)?;
    let mut bad = 0;
    let loose = vault.permission_problems();
    for p in &loose {
        println!("bad  {}", p.replace('\n', "\n     "));
    }
    let entries = vault.list()?;
    for id in &entries {
        let result = match schema_for(config, id) {
            Ok(schema) => vault.load(id, schema, &identity).map(|_| ()),
            Err(_) => vault.read(id, &identity).map(|_| ()),
        };
        if let Err(e) = result {
            bad += 1;
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("");
            // Vault errors name their entry already.
            let prefix = format!("{id}: ");
            let first = first.strip_prefix(&prefix).unwrap_or(first);
            println!("bad  {id}: {}", crate::outcome::printable(first));
        }
    }
    println!(
        "{}, {} bad",
        crate::i18n::counted(entries.len(), "entry", "entries"),
        bad
    );
    if !loose.is_empty() {
        println!("{} permission problem(s)", loose.len());
    }
    Ok(if bad > 0 || !loose.is_empty() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Marketplace;

    #[test]
    fn template_parses_once_filled() {
        let t = template(Schema::Store(Marketplace::Ozon));
        assert!(t.contains("api_key = \"\""));
        let filled = t
            .replace("client_id = \"\"", "client_id = \"1\"")
            .replace("api_key = \"\"", "api_key = \"k\"");
        assert!(Document::parse(&filled, Schema::Store(Marketplace::Ozon)).is_ok());
    }

    #[test]
    fn mask_is_used_for_show() {
        assert_eq!(mask("0123456789abcdef"), "********cdef");
    }
}
