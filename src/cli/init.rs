//! `storeguard init`: a config, an identity, a vault and a state directory, never overwriting.

use crate::config::DEFAULT_CONFIG_PATH;
use crate::vault::{Document, EntryId, Identity, Schema, Vault};
use anyhow::{Context, bail};
use rand::RngCore;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;
use std::process::ExitCode;

/// The starter config `init` writes (the full reference is config/storeguard.example.toml).
const STARTER: &str = include_str!("../../config/storeguard.toml");

pub fn run(config_path: &Path) -> anyhow::Result<ExitCode> {
    let dir = config_path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let identity_path = dir.join("identity.txt");
    let vault_dir = dir.join("vault");
    let at_default = config_path == Path::new(DEFAULT_CONFIG_PATH);
    let state_dir = if at_default {
        Path::new("/var/lib/storeguard").to_path_buf()
    } else {
        dir.join("state")
    };
    for existing in [config_path, identity_path.as_path(), vault_dir.as_path()] {
        if existing.exists() {
            bail!(
                "{} already exists; init never overwrites anything\n  help: use the existing setup, or run init with --config pointing at a new directory",
                existing.display()
            );
        }
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o750)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))?;

    let identity = Identity::generate();
    identity
        .write_new(&identity_path)
        .with_context(|| format!("writing {}", identity_path.display()))?;
    let vault = Vault::create(&vault_dir, &identity.recipient())?;

    // The status API's bearer token.
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let token = zeroize::Zeroizing::new(format!("api_token = \"{}\"\n", hex::encode(bytes)));
    let mut doc = Document::parse(&token, Schema::Daemon).expect("generated entry is valid");
    vault.write(&EntryId::daemon(), &mut doc, None, Some(&identity))?;

    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&state_dir)
        .with_context(|| format!("creating {}", state_dir.display()))?;

    let text = if at_default {
        STARTER.to_string()
    } else {
        STARTER.replace(
            "state_dir = \"/var/lib/storeguard\"",
            "state_dir = \"state\"",
        )
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o640)
        .open(config_path)
        .with_context(|| format!("creating {}", config_path.display()))?;
    f.write_all(text.as_bytes())
        .and_then(|_| f.sync_all())
        .with_context(|| format!("writing {}", config_path.display()))?;

    println!("created {}", config_path.display());
    println!(
        "created {} (keep it secret; back it up offline)",
        identity_path.display()
    );
    println!(
        "created {} (public key {})",
        vault_dir.display(),
        identity.recipient()
    );
    println!("created {}", state_dir.display());
    println!();
    println!(
        "next: storeguard --config {} store add",
        config_path.display()
    );
    Ok(ExitCode::SUCCESS)
}
