//! Rotating tokens made durable: a refresh's new pair goes to the vault (journal first, then
//! folded into the entry under the lock) before it is used, on a blocking task a cancelled check
//! does not stop; and a refresh another check or process already made is adopted instead of
//! spending the (single-use) refresh token again. Shared by every probe whose marketplace
//! rotates refresh tokens (Alibaba.com, AliExpress, Lazada, Shopee).

use super::{Creds, ProbeCtx};
use crate::outcome::{Finding, FindingKind};
use crate::vault::Rotation;
use chrono::{DateTime, Utc};
use secrecy::SecretString;
use std::sync::Arc;

/// Takes the store's refresh lock. `None` when, by the time it is held, another check or
/// process has already rotated the tokens (now adopted): there is nothing left to refresh.
pub(super) async fn claim(ctx: &ProbeCtx<'_>) -> Option<tokio::sync::OwnedMutexGuard<()>> {
    let seen = ctx.creds.generation();
    let guard = ctx.creds.refresh.clone().lock_owned().await;
    if ctx.creds.generation() != seen || adopt_newer(ctx).await {
        return None;
    }
    Some(guard)
}

/// The journal record of a refresh that spent `spent` and returned a new pair.
pub(super) fn token_pair(
    spent: SecretString,
    access: SecretString,
    refresh: SecretString,
    access_expires: Option<DateTime<Utc>>,
    refresh_expires: Option<DateTime<Utc>>,
) -> Rotation {
    let times = [
        ("access_token_expires_at", access_expires),
        ("refresh_token_expires_at", refresh_expires),
    ]
    .into_iter()
    .filter_map(|(k, t)| t.map(|t| (k.to_string(), t)))
    .collect();
    Rotation {
        spent,
        fields: vec![
            ("access_token".to_string(), access),
            ("refresh_token".to_string(), refresh),
        ],
        times,
    }
}

/// Adopts the vault's entry when another process wrote a newer generation (or left rotations
/// in the journal). Returns whether it did.
pub(super) async fn adopt_newer(ctx: &ProbeCtx<'_>) -> bool {
    let creds = ctx.creds.clone();
    let vault = ctx.vault.clone();
    let identity = ctx.identity.clone();
    tokio::task::spawn_blocking(move || {
        let current = creds.generation();
        let doc = match vault.fold_rotations(&creds.entry, creds.schema, &identity) {
            Ok(Some(doc)) => Ok(doc),
            _ => vault.load(&creds.entry, creds.schema, &identity),
        };
        match doc {
            Ok(doc) if doc.generation > current => {
                *creds.doc() = doc;
                true
            }
            _ => false,
        }
    })
    .await
    .unwrap_or(false)
}

/// Makes the new tokens durable, then uses them. The journal write comes first and waits for
/// nothing (no vault lock, no other writer): from then on a kill cannot lose them. Folding into
/// the entry follows under the lock. Runs to completion even when the check is cancelled (the
/// blocking task is tracked by the prober, which `check` and the daemon drain before exiting),
/// holding the store's refresh lock throughout.
pub(super) async fn persist(
    ctx: &ProbeCtx<'_>,
    guard: tokio::sync::OwnedMutexGuard<()>,
    rotation: Rotation,
) -> Result<(), Finding> {
    let creds: Arc<Creds> = ctx.creds.clone();
    let vault = ctx.vault.clone();
    let identity = ctx.identity.clone();
    let mirror = ctx.mirror.cloned();
    let result = ctx
        .writes
        .spawn_blocking(move || {
            let _guard = guard;
            let journaled = vault.journal(&creds.entry, &rotation);
            // The old refresh token is spent either way: keep the new pair in memory, so this
            // process can go on (and the next refresh can still save it).
            rotation.apply(&mut creds.doc());
            if let Err(e) = journaled {
                return Err(e.to_string());
            }
            match vault.fold_rotations(&creds.entry, creds.schema, &identity) {
                Ok(Some(doc)) => {
                    let generation = doc.generation;
                    *creds.doc() = doc;
                    if let Some(m) = &mirror
                        && let Err(e) = m.rotated(&creds.entry, generation)
                    {
                        tracing::error!(
                            entry = %creds.entry,
                            "refreshed tokens are in this replica's vault file but not in the fleet database: {}",
                            crate::outcome::sanitize(&e, 300)
                        );
                    }
                }
                Ok(None) => {}
                // Durable in the journal; the fold is retried at the next refresh or start.
                Err(e) => tracing::warn!(
                    entry = %creds.entry,
                    "refreshed tokens are saved in the vault journal but not yet in the entry: {}",
                    crate::outcome::sanitize(&e.to_string(), 200)
                ),
            }
            Ok(())
        })
        .await
        .unwrap_or_else(|_| Err("the vault writer stopped unexpectedly".to_string()));
    result.map_err(|e| {
        Finding::new(
            FindingKind::VaultUnreadable,
            format!(
                "refreshed tokens could not be saved (they are kept in memory only; a restart \
                 loses them and the store must then be re-authorised): {e}"
            ),
        )
    })
}
