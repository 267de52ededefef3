//! Shared helpers for the integration tests: a throwaway storeguard setup, running the real
//! binary, and the reference `age` CLI.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub use storeguard;

pub mod mailsrv;
pub mod pg;
pub mod proc;
pub mod receiver;

pub const BIN: &str = env!("CARGO_BIN_EXE_storeguard");

/// Output with convenient accessors.
pub struct Run {
    pub status: std::process::ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Run {
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    pub fn stderr_str(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        Run {
            status: o.status,
            stdout: o.stdout,
            stderr: o.stderr,
        }
    }
}

/// A config, identity and vault made by `storeguard init` in a temp dir.
pub struct Setup {
    pub dir: tempfile::TempDir,
}

impl Setup {
    pub fn init() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let s = Setup { dir };
        let out = s.run(&["init"], None);
        assert!(out.status.success(), "init failed: {}", out.stderr_str());
        s
    }

    pub fn config(&self) -> PathBuf {
        self.dir.path().join("storeguard.toml")
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.arg("--config").arg(self.config()).args(args);
        c.env_remove("STOREGUARD_CONFIG")
            .env_remove("CREDENTIALS_DIRECTORY");
        c
    }

    pub fn run(&self, args: &[&str], stdin: Option<&str>) -> Run {
        let mut c = self.command(args);
        c.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        let input = stdin.unwrap_or("").to_string();
        let mut pipe = child.stdin.take().unwrap();
        let writer = std::thread::spawn(move || {
            let _ = pipe.write_all(input.as_bytes());
        });
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap();
        out.into()
    }

    pub fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut c = self.command(args);
        for (k, v) in env {
            c.env(k, v);
        }
        c.stdin(Stdio::null());
        c.output().unwrap().into()
    }

    /// Adds an Ozon store through `store add`, secrets on stdin.
    pub fn add_ozon_store(&self, id: &str, account: &str, api_key: &str) {
        self.add_store_doc_with(
            id,
            account,
            &format!("client_id = \"{account}\"\napi_key = \"{api_key}\"\n"),
        );
    }

    pub fn add_store_doc(&self, id: &str, doc: &str) {
        self.add_store_doc_with(id, "5", doc);
    }

    fn add_store_doc_with(&self, id: &str, account: &str, doc: &str) {
        let out = self.run(
            &[
                "store",
                "add",
                "--marketplace",
                "ozon",
                "--id",
                id,
                "--name",
                id,
                "--account",
                account,
            ],
            Some(doc),
        );
        assert!(
            out.status.success(),
            "store add failed: {}",
            out.stderr_str()
        );
    }

    /// Points `[daemon] identity` at another file.
    pub fn set_identity(&self, path: &Path) {
        let text = std::fs::read_to_string(self.config()).unwrap();
        let text = text.replacen(
            "[daemon]\n",
            &format!("[daemon]\nidentity = \"{}\"\n", path.display()),
            1,
        );
        std::fs::write(self.config(), text).unwrap();
    }

    pub fn identity(&self) -> storeguard::vault::Identity {
        storeguard::vault::Identity::load(&self.dir.path().join("identity.txt"), || None).unwrap()
    }

    pub fn vault(&self) -> storeguard::vault::Vault {
        storeguard::vault::Vault::open(&self.dir.path().join("vault")).unwrap()
    }
}

/// The reference `age` CLI (Debian package `age`); fails with an install hint when missing.
pub fn age_cli() -> PathBuf {
    for p in ["/usr/bin/age", "/usr/local/bin/age"] {
        if Path::new(p).exists() {
            return PathBuf::from(p);
        }
    }
    panic!("the reference age CLI is needed for the interop test: apt-get install -y age");
}

/// Small deterministic RNG (xorshift64*) so failures can be replayed from the seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// SIGKILLs `vault put` and `vault rekey` at random points `rounds` times; after each kill the
/// entry must decrypt to the complete old or the complete new document, and the next command
/// must remove any stale temp file.
pub fn kill_storm(rounds: u32) {
    use storeguard::model::Marketplace;
    use storeguard::vault::{EntryId, Schema};
    let s = Setup::init();
    s.add_ozon_store("ozon-main", "1", "CANARY-kill-key-0");
    let identity = s.identity();
    let vault = s.vault();
    let id = EntryId::store("ozon-main");
    let schema = Schema::Store(Marketplace::Ozon);
    let key_of = || {
        let doc = vault
            .load(&id, schema, &identity)
            .expect("the entry must always decrypt and validate");
        secrecy::ExposeSecret::expose_secret(doc.get("api_key").unwrap()).to_string()
    };
    let mut current = key_of();
    let mut rng = Rng::new(0x5eed_0001);
    let mut killed_mid_way = 0;
    for round in 0..rounds {
        let rekey = rng.below(3) == 0;
        let new_key = format!("CANARY-kill-key-{}", round + 1);
        let mut c = s.command(if rekey {
            &["vault", "rekey"]
        } else {
            &["vault", "put", "store/ozon-main"]
        });
        c.stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let mut child = c.spawn().unwrap();
        if !rekey {
            let mut stdin = child.stdin.take().unwrap();
            let _ =
                stdin.write_all(format!("client_id = \"1\"\napi_key = \"{new_key}\"\n").as_bytes());
        }
        std::thread::sleep(std::time::Duration::from_micros(rng.below(12_000)));
        let _ = child.kill();
        let status = child.wait().unwrap();
        if !status.success() {
            killed_mid_way += 1;
        }
        let now = key_of();
        if rekey {
            assert_eq!(now, current, "round {round}: rekey changed the content");
        } else {
            assert!(
                now == current || now == new_key,
                "round {round}: torn entry"
            );
        }
        current = now;
    }
    assert!(
        killed_mid_way > rounds / 4,
        "only {killed_mid_way} of {rounds} kills landed mid-way; tune the delay"
    );
    // The next command cleans whatever temp files the kills left.
    let out = s.run(&["vault", "verify"], None);
    assert!(out.status.success(), "{}", out.stderr_str());
    let leftovers: Vec<_> = std::fs::read_dir(s.dir.path().join("vault/stores"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "stale temp files left: {leftovers:?}");
}
