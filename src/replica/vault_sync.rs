//! Each replica's vault files kept in step with the fleet database, which holds the truth:
//! pulled before the daemon starts and whenever it takes a shard over (so it spends the
//! newest refresh token, never one another replica already spent), and a rotated token
//! pushed back under its shard's fence as soon as it is in the local file.

use super::db::{Db, DbError};
use crate::vault::{EntryId, Identity, Vault, VaultError};

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("{0}")]
    Db(#[from] DbError),
    #[error("{0}")]
    Vault(#[from] VaultError),
    #[error("the fleet database holds an entry named `{name}`: {why}")]
    BadName { name: String, why: String },
}

/// What one pull did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pulled {
    /// Entries written into the local files (new, or newer in the database).
    pub written: usize,
    /// Entries whose local file is newer than the database's (edited here and not imported).
    pub local_newer: Vec<String>,
}

/// Copies the database's entries (`only` these names, or all) into `vault` where the local
/// file is missing, older, or the same generation sealed differently (a rekey elsewhere).
/// A local file that does not decrypt with `identity` is replaced: the database's copy is the
/// one that counts.
pub async fn pull(
    db: &Db,
    vault: &Vault,
    identity: &Identity,
    only: Option<&[String]>,
) -> Result<Pulled, SyncError> {
    let entries = match only {
        Some(names) => db.vault_get_many(names).await?,
        None => db.vault_all().await?,
    };
    let mut out = Pulled::default();
    for e in entries {
        let id = EntryId::parse(&e.entry).map_err(|why| SyncError::BadName {
            name: e.entry.clone(),
            why,
        })?;
        let local = match vault.read_sealed(&id) {
            Ok(text) => Some(text),
            Err(VaultError::Missing { .. }) => None,
            Err(other) => return Err(other.into()),
        };
        if local.as_deref() == Some(e.armored.as_str()) {
            continue;
        }
        let local_generation = match local {
            None => None,
            Some(_) => vault.generation(&id, identity).ok().map(|g| g as i64),
        };
        match local_generation {
            Some(g) if g > e.generation => out.local_newer.push(e.entry),
            _ => {
                vault.write_sealed(&id, &e.armored)?;
                out.written += 1;
            }
        }
    }
    Ok(out)
}
