//! The rotation journal: tokens a marketplace has just rotated, made durable before anything else.
//!
//! A refresh answer spends the old refresh token (Shopee's are single-use; Lazada, TikTok and the
//! Alibaba gateway hand out a new pair each time), so from the moment the answer arrives until
//! the new pair is on disk, a kill loses the store's authorization. Folding into the entry takes
//! the vault lock, a decryption of the current file and two fsyncs, behind every other writer;
//! the journal takes none of that. Each rotation is its own small age file under `journal/`,
//! written to a dot-named temp file, fsynced and renamed into place (so a reader never sees half a
//! journal), then folded into the entry under the lock and removed.
//!
//! Folding never needs a generation: a rotation records the refresh token it spent, and applies
//! only while the entry still holds that token. An entry that already holds the new token was
//! folded before (a kill between the fold and the removal); an entry that holds some third token
//! was replaced by a person since (`vault put` after re-authorising), and the person wins.

use super::{EntryId, Identity, Vault, VaultError, decrypt, encrypt, io_err, sync_dir};
use crate::vault::Document;
use age::secrecy::{ExposeSecret, SecretString};
use chrono::{DateTime, Utc};
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// The journal's directory inside the vault.
const DIR: &str = "journal";
/// Temp files of writers killed before their rename are removed after this long.
const STALE_TEMP_SECS: u64 = 60;

/// Token fields a marketplace rotated in one refresh.
pub struct Rotation {
    /// The refresh token this refresh spent.
    pub spent: SecretString,
    /// New text fields (`access_token`, `refresh_token`, …).
    pub fields: Vec<(String, SecretString)>,
    /// New time fields (`access_token_expires_at`, …).
    pub times: Vec<(String, DateTime<Utc>)>,
}

/// What a rotation means for the entry as it is now.
#[derive(Debug, PartialEq, Eq)]
enum Fit {
    /// The entry still holds the spent token: apply.
    Applies,
    /// The entry already holds the new refresh token.
    AlreadyIn,
    /// The entry holds some other token (replaced by a person): drop the rotation.
    Superseded,
}

impl Rotation {
    /// Sets the rotated fields on `doc` (generation unchanged).
    pub fn apply(&self, doc: &mut Document) {
        for (k, v) in &self.fields {
            doc.set(k, v.clone());
        }
        for (k, t) in &self.times {
            doc.set_time(k, *t);
        }
    }

    fn new_refresh(&self) -> Option<&SecretString> {
        self.fields
            .iter()
            .find(|(k, _)| k == "refresh_token")
            .map(|(_, v)| v)
    }

    fn fit(&self, doc: &Document) -> Fit {
        let current = doc.get("refresh_token").map(|s| s.expose_secret());
        if current == Some(self.spent.expose_secret()) {
            Fit::Applies
        } else if current.is_some() && current == self.new_refresh().map(|s| s.expose_secret()) {
            Fit::AlreadyIn
        } else {
            Fit::Superseded
        }
    }

    fn to_toml(&self, entry: &EntryId) -> Zeroizing<String> {
        let mut out = Zeroizing::new(String::new());
        let quote = |out: &mut Zeroizing<String>, s: &str| {
            out.push_str(&toml::Value::String(s.to_string()).to_string());
        };
        out.push_str("entry = ");
        quote(&mut out, &entry.to_string());
        out.push_str("\nspent = ");
        quote(&mut out, self.spent.expose_secret());
        out.push_str("\n\n[fields]\n");
        for (k, v) in &self.fields {
            out.push_str(k);
            out.push_str(" = ");
            quote(&mut out, v.expose_secret());
            out.push('\n');
        }
        out.push_str("\n[times]\n");
        for (k, t) in &self.times {
            out.push_str(&format!(
                "{k} = \"{}\"\n",
                t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ));
        }
        out
    }

    fn parse(text: &str, entry: &EntryId) -> Option<Rotation> {
        let table: toml::Table = toml::from_str(text).ok()?;
        if table.get("entry")?.as_str()? != entry.to_string() {
            return None;
        }
        let spent = SecretString::from(table.get("spent")?.as_str()?.to_string());
        let mut fields = Vec::new();
        for (k, v) in table.get("fields")?.as_table()? {
            fields.push((k.clone(), SecretString::from(v.as_str()?.to_string())));
        }
        let mut times = Vec::new();
        for (k, v) in table.get("times")?.as_table()? {
            let t = DateTime::parse_from_rfc3339(v.as_str()?).ok()?;
            times.push((k.clone(), t.with_timezone(&Utc)));
        }
        Some(Rotation {
            spent,
            fields,
            times,
        })
    }
}

impl Vault {
    fn journal_dir(&self) -> PathBuf {
        self.dir.join(DIR)
    }

    /// `store.ozon-main.` — the prefix of an entry's journal files (names hold no dots).
    fn journal_prefix(id: &EntryId) -> String {
        format!("{}.{}.", id.kind.as_str(), id.name)
    }

    /// Makes `rotation` durable for `id` without waiting for the vault lock: encrypts it to the
    /// recipients, writes a temp file, fsyncs it, renames it into `journal/` and fsyncs the
    /// directory. Returns once a kill can no longer lose it.
    pub fn journal(&self, id: &EntryId, rotation: &Rotation) -> Result<(), VaultError> {
        let dir = self.journal_dir();
        if !dir.is_dir() {
            use std::os::unix::fs::DirBuilderExt;
            match fs::DirBuilder::new().mode(0o700).create(&dir) {
                Ok(()) => sync_dir(&self.dir).map_err(io_err(&self.dir))?,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io_err(&dir)(e)),
            }
        }
        let recipients = self.recipients()?;
        let plain = rotation.to_toml(id);
        let sealed = encrypt(plain.as_bytes(), &recipients).map_err(io_err(&dir))?;
        let stamp = Utc::now().timestamp_nanos_opt().unwrap_or_default().max(0);
        let name = format!(
            "{}{stamp:020}-{:08x}.age",
            Self::journal_prefix(id),
            rand::random::<u32>()
        );
        let temp = dir.join(format!(".{name}.tmp"));
        let path = dir.join(&name);
        let write = || -> io::Result<()> {
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&temp)?;
            f.write_all(&sealed)?;
            f.sync_all()?;
            fs::rename(&temp, &path)?;
            sync_dir(&dir)
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&temp);
            io_err(&path)(e)
        })
    }

    /// The entry's journal files, oldest first.
    fn journal_files(&self, id: &EntryId) -> Result<Vec<PathBuf>, VaultError> {
        let dir = self.journal_dir();
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(&dir)(e)),
        };
        let prefix = Self::journal_prefix(id);
        let mut out: Vec<PathBuf> = rd
            .flatten()
            .filter(|e| {
                e.file_name()
                    .to_str()
                    .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".age"))
            })
            .map(|e| e.path())
            .collect();
        out.sort();
        Ok(out)
    }

    /// Entries that have rotations waiting to be folded.
    pub fn pending_rotations(&self) -> Result<Vec<EntryId>, VaultError> {
        let dir = self.journal_dir();
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(&dir)(e)),
        };
        let mut out = Vec::new();
        for ent in rd.flatten() {
            let name = ent.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with('.') || !name.ends_with(".age") {
                continue;
            }
            let mut parts = name.splitn(3, '.');
            if let (Some(kind), Some(entry)) = (parts.next(), parts.next())
                && let Ok(id) = EntryId::parse(&format!("{kind}/{entry}"))
                && !out.contains(&id)
            {
                out.push(id);
            }
        }
        out.sort();
        Ok(out)
    }

    /// Folds the entry's pending rotations into it (under the vault lock) and removes them.
    /// Returns the entry as it now is, or `None` when nothing was pending.
    pub fn fold_rotations(
        &self,
        id: &EntryId,
        schema: super::Schema,
        identity: &Identity,
    ) -> Result<Option<Document>, VaultError> {
        if self.journal_files(id)?.is_empty() {
            return Ok(None);
        }
        let _lock = self.lock()?;
        // Listed again under the lock: another process may have folded them meanwhile.
        let files = self.journal_files(id)?;
        if files.is_empty() {
            return Ok(None);
        }
        let mut doc = self.load(id, schema, identity)?;
        let mut changed = false;
        let mut damaged = Vec::new();
        for path in &files {
            match read_rotation(path, id, identity) {
                Some(rotation) if rotation.fit(&doc) == Fit::Applies => {
                    rotation.apply(&mut doc);
                    changed = true;
                }
                Some(_) => {}
                None => {
                    tracing::warn!(
                        entry = %id,
                        file = %path.display(),
                        "a rotation journal file cannot be read; it is set aside as .damaged"
                    );
                    damaged.push(path);
                }
            }
        }
        if changed {
            doc.generation += 1;
            self.write_sealed_locked(id, doc.to_toml().as_bytes())?;
        }
        for path in &files {
            // Unreadable ones are kept (renamed) for a person to look at, never folded.
            if damaged.contains(&path) {
                fs::rename(path, path.with_extension("damaged")).map_err(io_err(path))?;
            } else {
                fs::remove_file(path).map_err(io_err(path))?;
            }
        }
        let dir = self.journal_dir();
        sync_dir(&dir).map_err(io_err(&dir))?;
        Ok(Some(doc))
    }

    /// Removes journal temp files whose writer died before its rename (older than a minute).
    pub(super) fn clean_stale_journal_temps(&self) -> usize {
        let Ok(rd) = fs::read_dir(self.journal_dir()) else {
            return 0;
        };
        let mut removed = 0;
        for ent in rd.flatten() {
            let is_temp = ent
                .file_name()
                .to_str()
                .is_some_and(|n| n.starts_with('.') && n.ends_with(".tmp"));
            let old = ent
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|m| m.elapsed().ok())
                .is_some_and(|age| age.as_secs() > STALE_TEMP_SECS);
            if is_temp && old && fs::remove_file(ent.path()).is_ok() {
                removed += 1;
            }
        }
        removed
    }
}

fn read_rotation(path: &Path, id: &EntryId, identity: &Identity) -> Option<Rotation> {
    let sealed = fs::read(path).ok()?;
    let plain = decrypt(&sealed, identity).ok()?;
    Rotation::parse(plain.as_str(), id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Marketplace;
    use crate::vault::Schema;

    fn secret(s: &str) -> SecretString {
        SecretString::from(s.to_string())
    }

    fn setup() -> (tempfile::TempDir, Vault, Identity, EntryId, Schema) {
        let dir = tempfile::tempdir().unwrap();
        let identity = Identity::generate();
        let vault = Vault::create(&dir.path().join("vault"), &identity.recipient()).unwrap();
        let id = EntryId::store("ali-1");
        let schema = Schema::Store(Marketplace::Aliexpress);
        let mut doc = Document::parse(
            "app_key = \"1\"\napp_secret = \"s\"\naccess_token = \"a0\"\nrefresh_token = \"r0\"\n",
            schema,
        )
        .unwrap();
        vault.write(&id, &mut doc, None, Some(&identity)).unwrap();
        (dir, vault, identity, id, schema)
    }

    fn rotation(spent: &str, n: u32) -> Rotation {
        Rotation {
            spent: secret(spent),
            fields: vec![
                ("access_token".into(), secret(&format!("a{n}"))),
                ("refresh_token".into(), secret(&format!("r{n}"))),
            ],
            times: vec![(
                "refresh_token_expires_at".into(),
                DateTime::from_timestamp(1_900_000_000, 0).unwrap(),
            )],
        }
    }

    fn refresh_of(doc: &Document) -> String {
        doc.get("refresh_token")
            .unwrap()
            .expose_secret()
            .to_string()
    }

    #[test]
    fn a_journaled_rotation_is_folded_once_and_removed() {
        let (_d, vault, identity, id, schema) = setup();
        vault.journal(&id, &rotation("r0", 1)).unwrap();
        vault.journal(&id, &rotation("r1", 2)).unwrap();
        assert_eq!(vault.pending_rotations().unwrap(), vec![id.clone()]);
        // The entry itself is untouched until the fold.
        assert_eq!(
            refresh_of(&vault.load(&id, schema, &identity).unwrap()),
            "r0"
        );
        let doc = vault
            .fold_rotations(&id, schema, &identity)
            .unwrap()
            .unwrap();
        assert_eq!(refresh_of(&doc), "r2");
        assert_eq!(
            doc.time("refresh_token_expires_at").unwrap().timestamp(),
            1_900_000_000
        );
        let stored = vault.load(&id, schema, &identity).unwrap();
        assert_eq!(refresh_of(&stored), "r2");
        assert_eq!(stored.generation, 2);
        assert!(vault.pending_rotations().unwrap().is_empty());
        assert!(
            vault
                .fold_rotations(&id, schema, &identity)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn a_folded_or_replaced_entry_is_not_overwritten() {
        let (_d, vault, identity, id, schema) = setup();
        // Folded before (killed between the fold and the removal): nothing changes.
        let mut doc = vault.load(&id, schema, &identity).unwrap();
        rotation("r0", 1).apply(&mut doc);
        vault.write(&id, &mut doc, None, Some(&identity)).unwrap();
        vault.journal(&id, &rotation("r0", 1)).unwrap();
        let g = vault.load(&id, schema, &identity).unwrap().generation;
        vault.fold_rotations(&id, schema, &identity).unwrap();
        assert_eq!(vault.load(&id, schema, &identity).unwrap().generation, g);
        // A person re-authorised and put a new pair: the stale rotation does not undo it.
        let mut doc = vault.load(&id, schema, &identity).unwrap();
        doc.set("refresh_token", secret("by-hand"));
        vault.write(&id, &mut doc, None, Some(&identity)).unwrap();
        vault.journal(&id, &rotation("r1", 2)).unwrap();
        let doc = vault
            .fold_rotations(&id, schema, &identity)
            .unwrap()
            .unwrap();
        assert_eq!(refresh_of(&doc), "by-hand");
    }

    #[test]
    fn a_damaged_journal_is_set_aside_and_never_folded() {
        let (_d, vault, identity, id, schema) = setup();
        vault.journal(&id, &rotation("r0", 1)).unwrap();
        let file = vault.journal_files(&id).unwrap().remove(0);
        let bytes = fs::read(&file).unwrap();
        fs::write(&file, &bytes[..bytes.len() / 2]).unwrap();
        let doc = vault
            .fold_rotations(&id, schema, &identity)
            .unwrap()
            .unwrap();
        assert_eq!(refresh_of(&doc), "r0");
        assert!(vault.pending_rotations().unwrap().is_empty());
        assert!(file.with_extension("damaged").exists());
    }

    #[test]
    fn journal_files_are_private_and_hold_no_plaintext() {
        let (_d, vault, _identity, id, _schema) = setup();
        let canary = Rotation {
            spent: secret("CANARY-spent-refresh"),
            fields: vec![("access_token".into(), secret("CANARY-new-access"))],
            times: Vec::new(),
        };
        vault.journal(&id, &canary).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let dir = vault.journal_dir();
        assert_eq!(
            fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        for ent in fs::read_dir(&dir).unwrap().flatten() {
            assert_eq!(ent.metadata().unwrap().permissions().mode() & 0o777, 0o600);
            let text = fs::read_to_string(ent.path()).unwrap();
            assert!(text.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"));
            assert!(!text.contains("CANARY"));
        }
    }
}
