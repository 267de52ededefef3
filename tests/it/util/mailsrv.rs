//! Real parts for the mailbox watcher: a Dovecot started on a loopback port in a temp dir, a
//! loopback DNS server that publishes DKIM keys, and DKIM-signed test mail.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const USER: &str = "seller@example.test";

/// A Dovecot 2.3 IMAP server on 127.0.0.1 with one account, INBOX and a `\Junk` folder.
pub struct Dovecot {
    child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Dovecot {
    /// Starts Dovecot with `password` for [`USER`]. As root (CI), Dovecot's own users run its
    /// services and the mail belongs to `nobody`; otherwise everything runs as this user.
    pub fn start(password: &str) -> Dovecot {
        let bin = which("dovecot").unwrap_or_else(|| {
            panic!("dovecot is not installed: run ./scripts/test, or apt-get install dovecot-imapd")
        });
        // Short: Dovecot's unix sockets live under it.
        let dir = tempfile::Builder::new()
            .prefix("sgdv")
            .tempdir_in("/tmp")
            .unwrap();
        let root = dir.path();
        for d in ["run", "lib", "home/seller"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        let root_user = nix::unistd::geteuid().is_root();
        let (internal, login, uid, gid) = if root_user {
            (
                "dovecot".to_string(),
                "dovenull".to_string(),
                65534u32,
                65534u32,
            )
        } else {
            let me = nix::unistd::User::from_uid(nix::unistd::geteuid())
                .unwrap()
                .unwrap();
            (
                me.name.clone(),
                me.name,
                nix::unistd::getuid().as_raw(),
                nix::unistd::getgid().as_raw(),
            )
        };
        if root_user {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).unwrap();
            let home = root.join("home");
            std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o755)).unwrap();
            nix::unistd::chown(
                &root.join("home/seller"),
                Some(nix::unistd::Uid::from_raw(uid)),
                Some(nix::unistd::Gid::from_raw(gid)),
            )
            .unwrap();
        }
        let port = free_port();
        let r = root.display();
        let conf = format!(
            "protocols = imap\nlisten = 127.0.0.1\nbase_dir = {r}/run/\nstate_dir = {r}/lib/\n\
             log_path = {r}/dovecot.log\nssl = no\ndisable_plaintext_auth = no\n\
             auth_mechanisms = plain login\nauth_failure_delay = 0\nfirst_valid_uid = 1\n\
             default_internal_user = {internal}\ndefault_internal_group = {ig}\n\
             default_login_user = {login}\n\
             service imap-login {{\n  chroot =\n  inet_listener imap {{\n    address = 127.0.0.1\n    port = {port}\n  }}\n  inet_listener imaps {{\n    port = 0\n  }}\n}}\n\
             service anvil {{\n  chroot =\n}}\n\
             service stats {{\n  unix_listener stats-writer {{\n    mode = 0666\n  }}\n}}\n\
             passdb {{\n  driver = passwd-file\n  args = scheme=PLAIN username_format=%u {r}/passwd\n}}\n\
             userdb {{\n  driver = passwd-file\n  args = username_format=%u {r}/passwd\n}}\n\
             mail_location = maildir:~/Maildir\n\
             namespace inbox {{\n  inbox = yes\n  separator = /\n  mailbox Junk {{\n    special_use = \\Junk\n    auto = subscribe\n  }}\n}}\n",
            ig = if root_user {
                "dovecot".to_string()
            } else {
                nix::unistd::Group::from_gid(nix::unistd::getgid())
                    .unwrap()
                    .unwrap()
                    .name
            },
        );
        std::fs::write(root.join("dovecot.conf"), conf).unwrap();
        std::fs::write(
            root.join("passwd"),
            format!(
                "{USER}:{{PLAIN}}{password}:{uid}:{gid}::{}/home/seller\n",
                root.display()
            ),
        )
        .unwrap();
        let child = Command::new(bin)
            .arg("-F")
            .arg("-c")
            .arg(root.join("dovecot.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let d = Dovecot { child, port, dir };
        d.wait_listening();
        d
    }

    fn wait_listening(&self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "dovecot did not listen: {}",
                std::fs::read_to_string(self.dir.path().join("dovecot.log")).unwrap_or_default()
            );
            std::thread::yield_now();
        }
    }

    /// A connection past the server's greeting.
    async fn client(&self) -> async_imap::Client<tokio::net::TcpStream> {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .unwrap();
        let mut client = async_imap::Client::new(tcp);
        client.read_response().await.unwrap();
        client
    }

    /// A logged-in session of the test account.
    async fn session(&self, password: &str) -> async_imap::Session<tokio::net::TcpStream> {
        self.client()
            .await
            .login(USER, password)
            .await
            .map_err(|e| e.0)
            .unwrap()
    }

    /// Changes the account's password (as a provider resetting app passwords does), and
    /// returns once Dovecot refuses `old` (it looks at the file at most once a second).
    pub async fn reset_password(&self, old: &str, password: &str) {
        self.set_password(password);
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            match self.client().await.login(USER, old).await {
                Err(_) => return,
                Ok(mut s) => {
                    let _ = s.logout().await;
                }
            }
            assert!(Instant::now() < deadline, "dovecot kept the old password");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn set_password(&self, password: &str) {
        let p = self.dir.path().join("passwd");
        let old = std::fs::read_to_string(&p).unwrap();
        let rest = old.split_once(':').unwrap().1.split_once(':').unwrap().1;
        std::fs::write(&p, format!("{USER}:{{PLAIN}}{password}:{rest}")).unwrap();
    }

    /// Appends one message to `folder` with the given INTERNALDATE (`01-Dec-2026 19:12:00 +0000`).
    pub async fn append(&self, password: &str, folder: &str, date: Option<&str>, raw: &[u8]) {
        let mut s = self.session(password).await;
        let date = date.map(|d| format!("\"{d}\""));
        s.append(folder, None, date.as_deref(), raw).await.unwrap();
        s.logout().await.unwrap();
    }

    /// The flags every message in `folder` has (none may be set by a read-only watcher).
    pub async fn flags(&self, password: &str, folder: &str) -> Vec<String> {
        use futures_util::StreamExt;
        let mut s = self.session(password).await;
        s.examine(folder).await.unwrap();
        let mut out = Vec::new();
        {
            let mut f = s.fetch("1:*", "FLAGS").await.unwrap();
            while let Some(m) = f.next().await {
                for fl in m.unwrap().flags() {
                    out.push(format!("{fl:?}"));
                }
            }
        }
        s.logout().await.unwrap();
        out
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dovecot.log")).unwrap_or_default()
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.child.wait();
    }
}

fn which(name: &str) -> Option<PathBuf> {
    ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/sbin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

pub use storeguard::fake::dns::{DkimKey, Dns};

/// A security mail to the test account.
pub fn mail(from: &str, subject: &str, message_id: &str, body: &str) -> String {
    storeguard::fake::dns::mail(USER, from, subject, message_id, body)
}
