//! The age-encrypted credential vault.
//!
//! A directory: `recipients.txt`, `stores/<id>.age`, `channels/<name>.age`, `daemon/api.age`.
//! Every file is ASCII-armored age whose plaintext is a small TOML document (see [`entry`]).
//! The reference `age` CLI can decrypt each file, so there is no lock-in.
//!
//! Writes are atomic (temp file in the same directory, fsync, rename, fsync of the directory)
//! under an exclusive lock on `.lock`; every document carries a `generation` so that two writers
//! cannot silently lose an update. Reads cap the file size, decrypt into a zeroized buffer and
//! drop the whole buffer on any error: a truncated file never yields partial plaintext.

pub mod entry;
pub mod journal;
mod stanza;

pub use entry::{Document, EntryError, EntryId, EntryKind, Schema};
pub use journal::Rotation;

use age::secrecy::{ExposeSecret, SecretString};
use std::fmt;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use zeroize::Zeroizing;

/// Largest vault file we read (real entries are a few hundred bytes).
pub const MAX_ENTRY_BYTES: u64 = 1024 * 1024;
/// scrypt work factor cap for passphrase-protected identities (2^18 ≈ a second here).
const MAX_SCRYPT_LOG_N: u8 = 20;

/// Vault errors. None of them carries a secret value.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error(
        "{path}: vault directory not found\n  help: run `storeguard init`, or set [daemon] vault_dir in storeguard.toml"
    )]
    NoVault { path: PathBuf },
    #[error(
        "{entry}: no such vault entry ({path})\n  help: add it with `storeguard vault put {entry}`"
    )]
    Missing { entry: EntryId, path: PathBuf },
    #[error(
        "{entry}: vault file is larger than 1 MiB, refusing to read it\n  help: this is not a storeguard entry; restore it from backup or write it again with `storeguard vault put {entry}`"
    )]
    TooLarge { entry: EntryId },
    #[error("{entry}: cannot decrypt ({reason})\n  help: {help}")]
    Decrypt {
        entry: EntryId,
        reason: String,
        help: &'static str,
    },
    #[error("{entry}: {source}\n  help: fix it with `storeguard vault edit {entry}`")]
    Invalid {
        entry: EntryId,
        #[source]
        source: EntryError,
    },
    #[error(
        "{entry} changed while it was being edited (generation {expected} → {found})\n  help: run the command again so it starts from the current version"
    )]
    Conflict {
        entry: EntryId,
        expected: u64,
        found: u64,
    },
    #[error("{path}: {message}\n  help: {help}")]
    Recipients {
        path: PathBuf,
        message: String,
        help: String,
    },
    #[error("{0}")]
    Identity(#[from] IdentityError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> VaultError + '_ {
    move |source| VaultError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Identity (private key) problems, worded like OpenSSH's.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error(
        "{path}: identity file not found\n  help: create one with `storeguard init`, or set [daemon] identity (under systemd: LoadCredential=identity:/etc/storeguard/identity.txt)"
    )]
    NotFound { path: PathBuf },
    #[error(
        "WARNING: UNPROTECTED IDENTITY FILE!\nPermissions {mode:04o} for '{path}' are too open.\nIt is required that your identity file is NOT accessible by others.\nThis identity will be ignored.\n  help: chmod 600 {path}"
    )]
    TooOpen { path: PathBuf, mode: u32 },
    #[error(
        "Bad owner on identity file '{path}': owned by uid {owner}, but storeguard runs as uid {me}.\n  help: chown {me} {path} (or run storeguard as the owner)"
    )]
    BadOwner { path: PathBuf, owner: u32, me: u32 },
    #[error(
        "{path}: no age identity found in the file\n  help: the file must hold a line starting with AGE-SECRET-KEY-1 (as written by `storeguard init` or age-keygen)"
    )]
    Malformed { path: PathBuf },
    #[error(
        "{path}: identity is passphrase-protected and no terminal is available to ask for it\n  help: run at a terminal, or give the daemon an unprotected identity via systemd LoadCredentialEncrypted="
    )]
    NeedsPassphrase { path: PathBuf },
    #[error(
        "{path}: wrong passphrase, or the identity file is damaged\n  help: try again; restore the identity from backup if it keeps failing"
    )]
    BadPassphrase { path: PathBuf },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The X25519 private key that opens the vault.
pub struct Identity {
    inner: age::x25519::Identity,
    /// The same key, for opening entries faster (`None`: aws-lc refused it; `inner` opens them).
    opener: Option<stanza::Opener>,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Identity({})", self.inner.to_public())
    }
}

impl Identity {
    pub fn generate() -> Self {
        Self::from_age(age::x25519::Identity::generate())
    }

    fn from_age(inner: age::x25519::Identity) -> Self {
        let opener = stanza::Opener::new(&inner);
        Identity { inner, opener }
    }

    /// What opens vault entries.
    fn opener(&self) -> &dyn age::Identity {
        match &self.opener {
            Some(o) => o,
            None => &self.inner,
        }
    }

    pub fn recipient(&self) -> age::x25519::Recipient {
        self.inner.to_public()
    }

    /// Loads an identity file, checking its permissions first. `passphrase` is asked only when
    /// the file is passphrase-protected.
    pub fn load(
        path: &Path,
        passphrase: impl FnOnce() -> Option<SecretString>,
    ) -> Result<Self, IdentityError> {
        check_private_file(path)?;
        let mut buf = Zeroizing::new(Vec::new());
        fs::File::open(path)
            .and_then(|f| f.take(MAX_ENTRY_BYTES).read_to_end(&mut buf))
            .map_err(|source| IdentityError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        let text = Zeroizing::new(String::from_utf8_lossy(&buf).into_owned());
        let trimmed = text.trim_start();
        if trimmed.starts_with("-----BEGIN AGE ENCRYPTED FILE-----")
            || trimmed.starts_with("age-encryption.org/")
        {
            let pass = passphrase().ok_or_else(|| IdentityError::NeedsPassphrase {
                path: path.to_path_buf(),
            })?;
            let mut scrypt = age::scrypt::Identity::new(pass);
            scrypt.set_max_work_factor(MAX_SCRYPT_LOG_N);
            let bad = || IdentityError::BadPassphrase {
                path: path.to_path_buf(),
            };
            let decryptor =
                age::Decryptor::new(age::armor::ArmoredReader::new(&buf[..])).map_err(|_| bad())?;
            let mut reader = decryptor
                .decrypt(std::iter::once(&scrypt as &dyn age::Identity))
                .map_err(|_| bad())?;
            let mut plain = Zeroizing::new(Vec::new());
            reader.read_to_end(&mut plain).map_err(|_| bad())?;
            let plain = Zeroizing::new(String::from_utf8_lossy(&plain).into_owned());
            return Self::parse(&plain).ok_or_else(|| IdentityError::Malformed {
                path: path.to_path_buf(),
            });
        }
        Self::parse(&text).ok_or_else(|| IdentityError::Malformed {
            path: path.to_path_buf(),
        })
    }

    fn parse(text: &str) -> Option<Self> {
        text.lines()
            .map(str::trim)
            .find(|l| l.starts_with("AGE-SECRET-KEY-1"))
            .and_then(|l| age::x25519::Identity::from_str(l).ok())
            .map(Self::from_age)
    }

    /// Writes a new identity file with mode 0600, refusing to replace anything.
    pub fn write_new(&self, path: &Path) -> io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)?;
        let secret = self.inner.to_string();
        let body = Zeroizing::new(format!(
            "# created: {}\n# public key: {}\n{}\n",
            chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            self.recipient(),
            secret.expose_secret()
        ));
        f.write_all(body.as_bytes())?;
        f.sync_all()
    }
}

/// Refuses private files readable or writable by group/others or owned by someone else, as
/// OpenSSH does for private keys.
pub fn check_private_file(path: &Path) -> Result<(), IdentityError> {
    let meta = fs::metadata(path).map_err(|source| {
        if source.kind() == io::ErrorKind::NotFound {
            IdentityError::NotFound {
                path: path.to_path_buf(),
            }
        } else {
            IdentityError::Io {
                path: path.to_path_buf(),
                source,
            }
        }
    })?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(IdentityError::TooOpen {
            path: path.to_path_buf(),
            mode,
        });
    }
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != me {
        return Err(IdentityError::BadOwner {
            path: path.to_path_buf(),
            owner: meta.uid(),
            me,
        });
    }
    Ok(())
}

/// A vault directory.
#[derive(Debug, Clone)]
pub struct Vault {
    dir: PathBuf,
}

/// Decrypted plaintext of one entry, wiped on drop.
pub struct Plaintext(Zeroizing<String>);

impl Plaintext {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Plaintext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Plaintext({} bytes)", self.0.len())
    }
}

/// An exclusive hold on the vault's lock file; released on drop.
pub struct VaultLock {
    _file: fs::File,
}

impl Vault {
    /// Opens an existing vault directory.
    pub fn open(dir: &Path) -> Result<Self, VaultError> {
        if !dir.is_dir() {
            return Err(VaultError::NoVault {
                path: dir.to_path_buf(),
            });
        }
        Ok(Vault {
            dir: dir.to_path_buf(),
        })
    }

    /// Creates the vault layout (0700 directories) and an initial `recipients.txt`.
    pub fn create(dir: &Path, recipient: &age::x25519::Recipient) -> Result<Self, VaultError> {
        Vault::create_with_recipients(
            dir,
            &format!(
                "# age recipients: every vault entry is encrypted to each line below.\n\
                 # Add a colleague's or a backup key (age1…), then run `storeguard vault rekey`.\n{recipient}\n"
            ),
        )
    }

    /// Creates the vault layout with `recipients` as the text of `recipients.txt` (which
    /// must not exist yet).
    pub fn create_with_recipients(dir: &Path, recipients: &str) -> Result<Self, VaultError> {
        use std::os::unix::fs::DirBuilderExt;
        let mut b = fs::DirBuilder::new();
        b.recursive(true).mode(0o700);
        for sub in ["", "stores", "channels", "daemon"] {
            let d = dir.join(sub);
            b.create(&d).map_err(io_err(&d))?;
        }
        let rpath = dir.join("recipients.txt");
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&rpath)
            .map_err(io_err(&rpath))?;
        f.write_all(recipients.as_bytes())
            .and_then(|_| f.sync_all())
            .map_err(io_err(&rpath))?;
        sync_dir(dir).map_err(io_err(dir))?;
        Ok(Vault {
            dir: dir.to_path_buf(),
        })
    }

    /// The text of `recipients.txt`, as written.
    pub fn recipients_text(&self) -> Result<String, VaultError> {
        let path = self.dir.join("recipients.txt");
        fs::read_to_string(&path).map_err(io_err(&path))
    }

    /// An entry's file as stored: the armored age text, never decrypted here (moving entries
    /// to and from the fleet's database). Capped like every read.
    pub fn read_sealed(&self, id: &EntryId) -> Result<String, VaultError> {
        String::from_utf8(self.read_capped(id)?).map_err(|_| VaultError::Io {
            path: self.path_of(id),
            source: io::Error::new(io::ErrorKind::InvalidData, "not ASCII-armored age text"),
        })
    }

    /// An entry file's bytes, at most [`MAX_ENTRY_BYTES`] (a larger file is refused whole).
    fn read_capped(&self, id: &EntryId) -> Result<Vec<u8>, VaultError> {
        let path = self.path_of(id);
        let file = fs::File::open(&path).map_err(|e| entry_io_err(id, &path, e))?;
        let mut sealed = Vec::new();
        file.take(MAX_ENTRY_BYTES + 1)
            .read_to_end(&mut sealed)
            .map_err(io_err(&path))?;
        if sealed.len() as u64 > MAX_ENTRY_BYTES {
            return Err(VaultError::TooLarge { entry: id.clone() });
        }
        Ok(sealed)
    }

    /// Replaces an entry's file with armored age text written elsewhere (atomic, 0600, under
    /// the lock).
    pub fn write_sealed(&self, id: &EntryId, armored: &str) -> Result<(), VaultError> {
        let _lock = self.lock()?;
        self.replace_locked(id, armored.as_bytes())
    }

    /// The generation an entry carries (decrypting it with `identity`).
    pub fn generation(&self, id: &EntryId, identity: &Identity) -> Result<u64, VaultError> {
        self.read(id, identity)?;
        Ok(self.current_generation(id, Some(identity)).unwrap_or(0))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `<dir>/<kind>/<name>.age`, built in one allocation: a check `stat`s its store's entry
    /// through this every time.
    pub fn path_of(&self, id: &EntryId) -> PathBuf {
        let dir = self.dir.as_os_str();
        let kind = id.kind.dir();
        let mut p = std::ffi::OsString::with_capacity(dir.len() + kind.len() + id.name.len() + 6);
        p.push(dir);
        if !dir.is_empty() && !dir.as_encoded_bytes().ends_with(b"/") {
            p.push("/");
        }
        p.push(kind);
        p.push("/");
        p.push(&id.name);
        p.push(".age");
        PathBuf::from(p)
    }

    /// What the entry's file is now (inode, size, modification time), from one `stat`: a
    /// write by anyone (`vault put`, `vault edit`, another process's refresh) replaces the file
    /// and so changes it. `None` when there is no file.
    pub fn stamp(&self, id: &EntryId) -> Option<Stamp> {
        use std::os::unix::fs::MetadataExt;
        let m = fs::metadata(self.path_of(id)).ok()?;
        Some(Stamp {
            ino: m.ino(),
            len: m.len(),
            mtime_ns: m
                .mtime()
                .saturating_mul(1_000_000_000)
                .saturating_add(m.mtime_nsec()),
        })
    }

    pub fn exists(&self, id: &EntryId) -> bool {
        self.path_of(id).is_file()
    }

    /// Reads `recipients.txt` (X25519 recipients only; comments and blank lines allowed).
    pub fn recipients(&self) -> Result<Vec<age::x25519::Recipient>, VaultError> {
        let path = self.dir.join("recipients.txt");
        let text = fs::read_to_string(&path).map_err(io_err(&path))?;
        let mut out = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            match age::x25519::Recipient::from_str(line) {
                Ok(r) => out.push(r),
                Err(_) => {
                    return Err(VaultError::Recipients {
                        path: path.clone(),
                        message: format!("line {}: not an X25519 age recipient", i + 1),
                        help: "each line must be an age1… public key (post-quantum and plugin recipients are not readable by every age CLI)".into(),
                    });
                }
            }
        }
        if out.is_empty() {
            return Err(VaultError::Recipients {
                path,
                message: "no recipients".into(),
                help: "add the public key printed by `storeguard init` (age1…)".into(),
            });
        }
        Ok(out)
    }

    /// Takes the vault's write lock (blocks while another writer holds it).
    pub fn lock(&self) -> Result<VaultLock, VaultError> {
        use std::os::unix::fs::OpenOptionsExt;
        let path = self.dir.join(".lock");
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(io_err(&path))?;
        file.lock().map_err(io_err(&path))?;
        Ok(VaultLock { _file: file })
    }

    /// Decrypts one entry. The whole buffer is dropped (and wiped) on any error.
    pub fn read(&self, id: &EntryId, identity: &Identity) -> Result<Plaintext, VaultError> {
        let sealed = self.read_capped(id)?;
        decrypt(&sealed, identity).map_err(|(reason, help)| VaultError::Decrypt {
            entry: id.clone(),
            reason,
            help,
        })
    }

    /// Decrypts and validates one entry.
    pub fn load(
        &self,
        id: &EntryId,
        schema: Schema,
        identity: &Identity,
    ) -> Result<Document, VaultError> {
        let plain = self.read(id, identity)?;
        Document::parse(plain.as_str(), schema).map_err(|source| VaultError::Invalid {
            entry: id.clone(),
            source,
        })
    }

    /// Decrypts and validates many entries, spread over the machine's cores (start-up and
    /// reload read every store's entry; 10,000 X25519 decryptions take seconds on one core).
    /// Results come back in the order of `entries`.
    pub fn load_all(
        &self,
        entries: &[(EntryId, Schema)],
        identity: &Identity,
    ) -> Vec<Result<Document, VaultError>> {
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(8);
        if threads <= 1 || entries.len() < 64 {
            return entries
                .iter()
                .map(|(id, schema)| self.load(id, *schema, identity))
                .collect();
        }
        let chunk = entries.len().div_ceil(threads);
        std::thread::scope(|scope| {
            let handles: Vec<_> = entries
                .chunks(chunk)
                .map(|part| {
                    scope.spawn(move || {
                        part.iter()
                            .map(|(id, schema)| self.load(id, *schema, identity))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .zip(entries.chunks(chunk))
                .flat_map(|(h, part)| {
                    // A panicking decryptor is a bug; report the chunk as unreadable rather
                    // than taking the daemon down.
                    h.join().unwrap_or_else(|_| {
                        part.iter()
                            .map(|(id, _)| {
                                Err(VaultError::Decrypt {
                                    entry: id.clone(),
                                    reason: "the decryption thread failed".into(),
                                    help: "report this as a bug",
                                })
                            })
                            .collect()
                    })
                })
                .collect()
        })
    }

    /// The generation currently stored (0 when absent or unreadable).
    fn current_generation(&self, id: &EntryId, identity: Option<&Identity>) -> Option<u64> {
        let identity = identity?;
        let plain = self.read(id, identity).ok()?;
        let table: toml::Table = toml::from_str(plain.as_str()).ok()?;
        table
            .get("generation")
            .and_then(toml::Value::as_integer)
            .map(|g| g.max(0) as u64)
    }

    /// Validates `doc`, bumps its generation and writes it atomically under the lock.
    ///
    /// `expected` is the generation the caller started from (`None` = overwrite whatever is
    /// there). `identity` is used to read the current generation; without it the new document
    /// starts at generation 1 or continues from `expected`.
    pub fn write(
        &self,
        id: &EntryId,
        doc: &mut Document,
        expected: Option<u64>,
        identity: Option<&Identity>,
    ) -> Result<(), VaultError> {
        let _lock = self.lock()?;
        let current = if self.exists(id) {
            self.current_generation(id, identity)
        } else {
            None
        };
        if let (Some(exp), Some(cur)) = (expected, current)
            && exp != cur
        {
            return Err(VaultError::Conflict {
                entry: id.clone(),
                expected: exp,
                found: cur,
            });
        }
        doc.generation = current.or(expected).unwrap_or(0) + 1;
        let plain = doc.to_toml();
        self.write_sealed_locked(id, plain.as_bytes())
    }

    /// Encrypts `plain` to the current recipients and replaces the file (lock must be held).
    fn write_sealed_locked(&self, id: &EntryId, plain: &[u8]) -> Result<(), VaultError> {
        let recipients = self.recipients()?;
        let sealed = encrypt(plain, &recipients).map_err(io_err(&self.dir))?;
        self.replace_locked(id, &sealed)
    }

    /// Replaces an entry's file with `sealed` (0600, its directory 0700; lock must be held).
    fn replace_locked(&self, id: &EntryId, sealed: &[u8]) -> Result<(), VaultError> {
        let path = self.path_of(id);
        if let Some(parent) = path.parent() {
            use std::os::unix::fs::DirBuilderExt;
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)
                .map_err(io_err(parent))?;
        }
        write_private(&path, sealed).map_err(io_err(&path))
    }

    /// Entries and vault directories whose integrity a local user other than the owner could
    /// break: writable by group or others, owned by another (non-root) user, or a symlink.
    /// `recipients.txt` is public, so anyone who can write an entry can swap in credentials or
    /// a webhook URL of their own; file modes are what keeps entries genuine.
    pub fn permission_problems(&self) -> Vec<String> {
        let me = nix::unistd::geteuid().as_raw();
        let mut out = Vec::new();
        let mut check = |path: &Path, what: &str| {
            let Ok(meta) = fs::symlink_metadata(path) else {
                return;
            };
            let shown = path.display();
            if meta.file_type().is_symlink() {
                out.push(format!(
                    "{shown}: the {what} is a symbolic link\n  help: replace it with the file itself (storeguard writes entries in place, 0600)"
                ));
                return;
            }
            let mode = meta.mode() & 0o777;
            if mode & 0o022 != 0 {
                out.push(format!(
                    "{shown}: the {what} is writable by {} (mode {mode:04o})\n  help: chmod {} {shown}",
                    if mode & 0o002 != 0 { "everyone" } else { "its group" },
                    if meta.is_dir() { "700" } else { "600" }
                ));
            }
            // Root may read a service user's vault (`config check` as root) without a word.
            if me != 0 && meta.uid() != me && meta.uid() != 0 {
                out.push(format!(
                    "{shown}: the {what} is owned by uid {}, but storeguard runs as uid {me}\n  help: chown {me} {shown}",
                    meta.uid()
                ));
            }
        };
        check(&self.dir, "vault directory");
        for sub in ["stores", "channels", "daemon", "mailboxes", "journal"] {
            check(&self.dir.join(sub), "vault directory");
        }
        if let Ok(entries) = self.list() {
            for id in entries {
                check(&self.path_of(&id), "vault entry");
            }
        }
        out
    }

    /// Removes an entry.
    pub fn remove(&self, id: &EntryId) -> Result<(), VaultError> {
        let _lock = self.lock()?;
        let path = self.path_of(id);
        fs::remove_file(&path).map_err(|e| entry_io_err(id, &path, e))?;
        if let Some(parent) = path.parent() {
            sync_dir(parent).map_err(io_err(parent))?;
        }
        Ok(())
    }

    /// Every entry file present, sorted.
    pub fn list(&self) -> Result<Vec<EntryId>, VaultError> {
        let mut out = Vec::new();
        for kind in [
            EntryKind::Store,
            EntryKind::Channel,
            EntryKind::Daemon,
            EntryKind::Mailbox,
        ] {
            let dir = self.dir.join(kind.dir());
            let rd = match fs::read_dir(&dir) {
                Ok(rd) => rd,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => {
                    return Err(VaultError::Io {
                        path: dir,
                        source: e,
                    });
                }
            };
            for ent in rd {
                let ent = ent.map_err(io_err(&dir))?;
                let name = ent.file_name();
                let Some(name) = name.to_str() else { continue };
                if name.starts_with('.') {
                    continue;
                }
                if let Some(stem) = name.strip_suffix(".age")
                    && let Ok(id) = EntryId::parse(&format!("{}/{stem}", kind.as_str()))
                {
                    out.push(id);
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// Re-encrypts one entry to the current recipients, keeping its plaintext byte for byte.
    pub fn rekey_one(&self, id: &EntryId, identity: &Identity) -> Result<(), VaultError> {
        let _lock = self.lock()?;
        let plain = self.read(id, identity)?;
        self.write_sealed_locked(id, plain.as_str().as_bytes())
    }

    /// Removes temp files left by writers that were killed mid-write. Returns how many.
    pub fn clean_stale_temp_files(&self) -> Result<usize, VaultError> {
        let _lock = self.lock()?;
        let mut removed = 0;
        for sub in ["", "stores", "channels", "daemon", "mailboxes"] {
            let dir = self.dir.join(sub);
            let Ok(rd) = fs::read_dir(&dir) else { continue };
            for ent in rd.flatten() {
                let name = ent.file_name();
                let Some(name) = name.to_str() else { continue };
                // atomic-write-file names its temp files `.<target>.<random>`.
                if name.starts_with('.') && name.contains(".age.") && ent.path().is_file() {
                    fs::remove_file(ent.path()).map_err(io_err(&ent.path()))?;
                    removed += 1;
                }
            }
            if removed > 0 {
                sync_dir(&dir).map_err(io_err(&dir))?;
            }
        }
        Ok(removed + self.clean_stale_journal_temps())
    }
}

/// age-decrypts an armored (or binary) file into a zeroized string.
fn decrypt(sealed: &[u8], identity: &Identity) -> Result<Plaintext, (String, &'static str)> {
    let decryptor = age::Decryptor::new_buffered(age::armor::ArmoredReader::new(sealed)).map_err(|e| {
        (
            format!("not a complete age file: {}", one_line(&e.to_string())),
            "the file is damaged or truncated; restore it from backup or write it again with `storeguard vault put`",
        )
    })?;
    if decryptor.is_scrypt() {
        return Err((
            "the entry is passphrase-encrypted".into(),
            "vault entries must be encrypted to recipients.txt (age -a -R recipients.txt), not with -p",
        ));
    }
    let mut reader = decryptor
        .decrypt(std::iter::once(identity.opener()))
        .map_err(|e| match e {
            age::DecryptError::NoMatchingKeys => (
                "no matching key: the entry was not encrypted to this identity".to_string(),
                "use the identity whose public key is in recipients.txt, or re-encrypt with `storeguard vault rekey` from a machine that can read it",
            ),
            other => (
                format!("damaged header: {}", one_line(&other.to_string())),
                "the file is damaged; restore it from backup or write it again with `storeguard vault put`",
            ),
        })?;
    let mut buf = Zeroizing::new(Vec::new());
    if let Err(e) = reader.read_to_end(&mut buf) {
        drop(buf);
        return Err((
            format!("damaged or truncated payload: {}", one_line(&e.to_string())),
            "the file is damaged or truncated; restore it from backup or write it again with `storeguard vault put`",
        ));
    }
    match std::str::from_utf8(&buf) {
        Ok(s) => Ok(Plaintext(Zeroizing::new(s.to_string()))),
        Err(_) => Err((
            "the plaintext is not UTF-8 text".into(),
            "write the entry again with `storeguard vault put`",
        )),
    }
}

fn one_line(s: &str) -> String {
    s.lines().next().unwrap_or("").chars().take(160).collect()
}

/// age-encrypts and armors `plain` to every recipient.
pub fn encrypt(plain: &[u8], recipients: &[age::x25519::Recipient]) -> io::Result<Vec<u8>> {
    let encryptor =
        age::Encryptor::with_recipients(recipients.iter().map(|r| r as &dyn age::Recipient))
            .map_err(|e| io::Error::other(e.to_string()))?;
    let mut out = Vec::with_capacity(plain.len() + 512);
    let armored = age::armor::ArmoredWriter::wrap_output(&mut out, age::armor::Format::AsciiArmor)?;
    let mut w = encryptor.wrap_output(armored)?;
    w.write_all(plain)?;
    w.finish()?.finish()?;
    Ok(out)
}

/// An entry file's identity at one moment (see [`Vault::stamp`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    ino: u64,
    len: u64,
    mtime_ns: i64,
}

/// An I/O error on an entry's file: `Missing` when it is not there.
fn entry_io_err(id: &EntryId, path: &Path, e: io::Error) -> VaultError {
    if e.kind() == io::ErrorKind::NotFound {
        VaultError::Missing {
            entry: id.clone(),
            path: path.to_path_buf(),
        }
    } else {
        VaultError::Io {
            path: path.to_path_buf(),
            source: e,
        }
    }
}

/// Atomically replaces `path` with `bytes`: temp file, fsync, rename, fsync of the directory.
/// A replaced file keeps its mode and owner; a new file gets `new_mode`.
pub fn write_atomic(path: &Path, bytes: &[u8], new_mode: u32) -> io::Result<()> {
    let existed = path.exists();
    let mut f = atomic_write_file::AtomicWriteFile::options().open(path)?;
    if !existed {
        new_file_like_its_directory(path, f.as_file(), new_mode)?;
    }
    f.write_all(bytes)?;
    f.commit()
}

/// Atomically replaces `path` with a 0600 file, whatever was there before (a loosened mode is
/// not kept, and a symbolic link is replaced, not followed).
fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut f = atomic_write_file::AtomicWriteFile::options().open(path)?;
    new_file_like_its_directory(path, f.as_file(), 0o600)?;
    f.write_all(bytes)?;
    f.commit()
}

/// Gives the temp file that becomes `path` its `mode`, and, when root writes into a directory
/// owned by the service user (the vault under systemd), that user as owner, so the daemon can
/// still read it.
fn new_file_like_its_directory(path: &Path, file: &fs::File, mode: u32) -> io::Result<()> {
    file.set_permissions(fs::Permissions::from_mode(mode))?;
    if nix::unistd::geteuid().is_root()
        && let Some(dir) = path.parent().and_then(|d| fs::metadata(d).ok())
        && dir.uid() != 0
    {
        std::os::unix::fs::fchown(file, Some(dir.uid()), Some(dir.gid()))?;
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests;
