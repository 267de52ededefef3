//! A real PostgreSQL for the replica tests: `initdb` into a temp dir and `postgres` on a
//! loopback port, as an unprivileged user (the server refuses to run as root: as root the
//! data belongs to `nobody` and the server runs as it). Trust authentication on loopback;
//! no fsync (the tests kill processes, never the machine).

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub const SUPERUSER: &str = "storeguard";

pub struct Postgres {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
    bin: PathBuf,
}

/// The newest installed server's `bin` directory.
fn server_bin() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path().join("bin"))
                .collect()
        })
        .unwrap_or_default();
    versions.retain(|p| p.join("postgres").is_file());
    versions.sort();
    versions.pop().unwrap_or_else(|| {
        panic!("PostgreSQL is not installed: run ./scripts/test, or apt-get install postgresql-15")
    })
}

fn as_server_user(c: &mut Command) -> &mut Command {
    if nix::unistd::geteuid().is_root() {
        c.uid(65534).gid(65534);
    }
    c
}

impl Postgres {
    pub fn start() -> Postgres {
        let bin = server_bin();
        let dir = tempfile::Builder::new()
            .prefix("sgpg")
            .tempdir_in("/tmp")
            .unwrap();
        let data = dir.path().join("data");
        // The data and the socket's lock file belong to the server's user.
        for d in ["data", "run"] {
            std::fs::create_dir(dir.path().join(d)).unwrap();
        }
        if nix::unistd::geteuid().is_root() {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
            for d in ["data", "run"] {
                nix::unistd::chown(
                    &dir.path().join(d),
                    Some(nix::unistd::Uid::from_raw(65534)),
                    Some(nix::unistd::Gid::from_raw(65534)),
                )
                .unwrap();
            }
        }
        let out = as_server_user(
            Command::new(bin.join("initdb"))
                .arg("-D")
                .arg(&data)
                .args(["-U", SUPERUSER, "--auth=trust", "-E", "UTF8", "--no-sync"])
                .current_dir(dir.path()),
        )
        .output()
        .unwrap();
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut pg = Postgres {
            child: None,
            port: free_port(),
            dir,
            bin,
        };
        pg.launch();
        pg
    }

    /// Starts the server and returns once it says it accepts connections (read from its
    /// log as it writes it: no polling of the port).
    fn launch(&mut self) {
        let mut child = as_server_user(
            Command::new(self.bin.join("postgres"))
                .arg("-D")
                .arg(self.dir.path().join("data"))
                .arg("-p")
                .arg(self.port.to_string())
                .arg("-k")
                .arg(self.dir.path().join("run"))
                .args([
                    "-c",
                    "listen_addresses=127.0.0.1",
                    "-c",
                    "fsync=off",
                    "-c",
                    "synchronous_commit=off",
                    "-c",
                    "full_page_writes=off",
                    "-c",
                    "max_connections=200",
                    "-c",
                    "logging_collector=off",
                ])
                .current_dir(self.dir.path())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped()),
        )
        .spawn()
        .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut ready = Some(tx);
            let mut log = Vec::new();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("ready to accept connections")
                    && let Some(tx) = ready.take()
                {
                    let _ = tx.send(Ok(()));
                }
                log.push(line);
                if log.len() > 200 {
                    log.remove(0);
                }
            }
            if let Some(tx) = ready {
                let _ = tx.send(Err(log.join("\n")));
            }
        });
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(Ok(())) => {}
            Ok(Err(log)) => panic!("postgres did not start:\n{log}"),
            Err(_) => panic!("postgres did not say it was ready within 60 s"),
        }
        self.child = Some(child);
    }

    /// A new, empty database; its URL.
    pub fn database(&self, name: &str) -> String {
        let out = Command::new(self.bin.join("createdb"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                SUPERUSER,
                name,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "createdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.url(name)
    }

    pub fn url(&self, db: &str) -> String {
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/{db}", self.port)
    }

    /// Runs one SQL statement with psql; its output, unaligned and without headers.
    pub fn sql(&self, db: &str, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                SUPERUSER,
            ])
            .args(["-d", db, "-At", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "psql: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    /// Stops the server (fast shutdown: open sessions are ended) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGINT,
            );
            let _ = child.wait();
        }
    }

    /// Stops and starts the server on the same port and data.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    /// The server's (postmaster's) process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
