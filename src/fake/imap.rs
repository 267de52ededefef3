//! A scripted IMAP server on loopback, for what a real Dovecot cannot show and for the demo's
//! mailbox: 163's refusal to open a folder before the client said `ID`, a server without IDLE
//! (Mail.ru, 163), a spam folder known only by its name (垃圾邮件, no `\Junk`), and a journal of
//! every command, so a test can count logins and prove that nothing but reads was sent.
//!
//! It speaks the part of IMAP4rev1 the watcher uses: CAPABILITY, LOGIN, ID, LIST, EXAMINE,
//! SELECT, UID SEARCH (`UID n:*`, `SINCE d`, `ALL`), UID FETCH, NOOP, IDLE/DONE, LOGOUT. Any
//! other command (STORE, COPY, EXPUNGE …) is answered BAD and counted as a write attempt.

use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

/// How the server behaves.
#[derive(Clone, Debug)]
pub struct ImapOptions {
    pub user: String,
    pub password: String,
    /// Advertise and serve IDLE.
    pub idle: bool,
    /// 163: refuse SELECT/EXAMINE until the client sent ID.
    pub require_id: bool,
}

/// One folder: its server name, whether it carries `\Junk`, and its messages.
struct Folder {
    name: String,
    junk: bool,
    /// (uid, raw, INTERNALDATE)
    messages: Vec<(u32, Vec<u8>, chrono::DateTime<chrono::Utc>)>,
    next_uid: u32,
}

#[derive(Default)]
struct Journal {
    commands: Vec<String>,
    logins: u64,
    refused_without_id: u64,
    writes: u64,
}

/// The OAuth 2 side of a Gmail- or Outlook-like provider.
#[derive(Default)]
struct OAuth {
    client_id: String,
    client_secret: String,
    /// The one refresh token honoured now.
    refresh: String,
    /// Whether each refresh answers with a new refresh token (and kills the old one).
    rotate: bool,
    issued: u64,
    access: std::collections::HashSet<String>,
}

struct Inner {
    uid_validity: std::sync::atomic::AtomicU32,
    oauth: Mutex<OAuth>,
    options: Mutex<ImapOptions>,
    folders: Mutex<Vec<Folder>>,
    journal: Mutex<Journal>,
    arrived: Notify,
}

impl Inner {
    fn journal(&self) -> std::sync::MutexGuard<'_, Journal> {
        self.journal.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The running server.
pub struct ImapFake {
    pub addr: std::net::SocketAddr,
    inner: Arc<Inner>,
    cancel: tokio_util::sync::CancellationToken,
}

/// UIDVALIDITY of every folder until [`ImapFake::rebuild`].
const UID_VALIDITY: u32 = 1_700_000_001;

impl ImapFake {
    /// Binds 127.0.0.1:0 and serves until dropped. Folders: INBOX and `垃圾邮件` (no `\Junk`).
    pub async fn start(options: ImapOptions) -> std::io::Result<ImapFake> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let folder = |name: &str| Folder {
            name: name.into(),
            junk: false,
            messages: Vec::new(),
            next_uid: 1,
        };
        let inner = Arc::new(Inner {
            uid_validity: std::sync::atomic::AtomicU32::new(UID_VALIDITY),
            oauth: Mutex::default(),
            options: Mutex::new(options),
            folders: Mutex::new(vec![folder("INBOX"), folder("&V4NXPpCuTvY-")]),
            journal: Mutex::default(),
            arrived: Notify::new(),
        });
        let cancel = tokio_util::sync::CancellationToken::new();
        let (i, c) = (inner.clone(), cancel.clone());
        tokio::spawn(async move {
            loop {
                let conn = tokio::select! {
                    r = listener.accept() => r,
                    _ = c.cancelled() => return,
                };
                let Ok((stream, _)) = conn else { continue };
                let (i, c) = (i.clone(), c.clone());
                tokio::spawn(async move {
                    tokio::select! {
                        _ = serve(stream, i) => {}
                        _ = c.cancelled() => {}
                    }
                });
            }
        });
        Ok(ImapFake {
            addr,
            inner,
            cancel,
        })
    }

    /// Delivers a message into `folder` (`INBOX` or `spam`), received at `at`.
    pub fn deliver(&self, folder: &str, raw: &[u8], at: chrono::DateTime<chrono::Utc>) {
        let mut folders = self.inner.folders.lock().unwrap_or_else(|e| e.into_inner());
        let index = usize::from(folder != "INBOX");
        let f = &mut folders[index];
        let uid = f.next_uid;
        f.next_uid += 1;
        f.messages.push((uid, raw.to_vec(), at));
        drop(folders);
        self.inner.arrived.notify_waiters();
    }

    /// Serves a token endpoint on 127.0.0.1 for XOAUTH2 logins: `grant_type=refresh_token`
    /// with these client credentials and `refresh` gives an access token this server accepts,
    /// and, when `rotate`, a new refresh token (the old one is then refused). Returns its URL.
    pub async fn start_token_endpoint(
        &self,
        client_id: &str,
        client_secret: &str,
        refresh: &str,
        rotate: bool,
    ) -> std::io::Result<String> {
        *self.inner.oauth.lock().unwrap_or_else(|e| e.into_inner()) = OAuth {
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            refresh: refresh.into(),
            rotate,
            ..OAuth::default()
        };
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let router = axum::Router::new()
            .route("/token", axum::routing::post(token))
            .with_state(self.inner.clone());
        let cancel = self.cancel.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async move { cancel.cancelled().await })
                .await;
        });
        Ok(format!("http://{addr}/token"))
    }

    /// The refresh token the provider honours now.
    pub fn refresh_token(&self) -> String {
        self.inner
            .oauth
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .refresh
            .clone()
    }

    /// Rebuilds every folder as a server does after a restore: a new UIDVALIDITY, and the
    /// messages numbered again from 1.
    pub fn rebuild(&self) {
        let mut folders = self.inner.folders.lock().unwrap_or_else(|e| e.into_inner());
        self.inner
            .uid_validity
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        for f in folders.iter_mut() {
            for (i, m) in f.messages.iter_mut().enumerate() {
                m.0 = i as u32 + 1;
            }
            f.next_uid = f.messages.len() as u32 + 1;
        }
    }

    /// Logins accepted so far.
    pub fn logins(&self) -> u64 {
        self.journal().logins
    }

    /// Folder opens refused because no ID came first.
    pub fn refused_without_id(&self) -> u64 {
        self.journal().refused_without_id
    }

    /// Commands that would change the mailbox (all refused).
    pub fn writes(&self) -> u64 {
        self.journal().writes
    }

    /// Every command verb received, in order (arguments dropped: they may hold a password).
    pub fn commands(&self) -> Vec<String> {
        self.journal().commands.clone()
    }

    fn journal(&self) -> std::sync::MutexGuard<'_, Journal> {
        self.inner.journal()
    }
}

impl Drop for ImapFake {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

async fn token(
    axum::extract::State(inner): axum::extract::State<Arc<Inner>>,
    axum::Form(form): axum::Form<std::collections::HashMap<String, String>>,
) -> (axum::http::StatusCode, axum::Json<serde_json::Value>) {
    let mut o = inner.oauth.lock().unwrap_or_else(|e| e.into_inner());
    let get = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
    if get("grant_type") != "refresh_token"
        || get("client_id") != o.client_id
        || get("client_secret") != o.client_secret
    {
        return (
            axum::http::StatusCode::UNAUTHORIZED,
            axum::Json(serde_json::json!({"error": "invalid_client"})),
        );
    }
    if get("refresh_token") != o.refresh {
        return (
            axum::http::StatusCode::BAD_REQUEST,
            axum::Json(
                serde_json::json!({"error": "invalid_grant", "error_description": "Token has been expired or revoked."}),
            ),
        );
    }
    o.issued += 1;
    let access = format!("ya29.fake-access-{}", o.issued);
    o.access.insert(access.clone());
    let mut answer =
        serde_json::json!({"access_token": access, "expires_in": 3599, "token_type": "Bearer"});
    if o.rotate {
        o.refresh = format!(
            "{}-r{}",
            get("refresh_token").split("-r").next().unwrap_or("rt"),
            o.issued
        );
        answer["refresh_token"] = serde_json::Value::String(o.refresh.clone());
    }
    (axum::http::StatusCode::OK, axum::Json(answer))
}

/// Splits a command line into its words, keeping quoted strings (quotes removed) together.
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            ' ' if !quoted => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Parses a UID set (`3`, `1,4,7`, `5:*`) into a test.
fn in_set(set: &str, uid: u32) -> bool {
    set.split(',').any(|part| match part.split_once(':') {
        Some((a, b)) => {
            let lo = a.parse().unwrap_or(u32::MAX);
            let hi = if b == "*" {
                u32::MAX
            } else {
                b.parse().unwrap_or(0)
            };
            (lo.min(hi)..=lo.max(hi)).contains(&uid)
        }
        None => part.parse() == Ok(uid),
    })
}

async fn serve(stream: TcpStream, inner: Arc<Inner>) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    let caps = |o: &ImapOptions| {
        format!(
            "IMAP4rev1 ID{} UIDPLUS AUTH=PLAIN AUTH=XOAUTH2",
            if o.idle { " IDLE" } else { "" }
        )
    };
    let greeting = {
        let o = inner.options.lock().unwrap_or_else(|e| e.into_inner());
        format!(
            "* OK [CAPABILITY {}] storeguard test IMAP ready\r\n",
            caps(&o)
        )
    };
    write.write_all(greeting.as_bytes()).await?;
    let mut logged_in = false;
    let mut id_sent = false;
    let mut selected: Option<usize> = None;
    while let Some(line) = lines.next_line().await? {
        let w = words(&line);
        let (Some(tag), Some(verb)) = (w.first(), w.get(1)) else {
            continue;
        };
        let verb = verb.to_ascii_uppercase();
        let sub = w.get(2).map(|s| s.to_ascii_uppercase()).unwrap_or_default();
        {
            let mut j = inner.journal();
            j.commands.push(if verb == "UID" {
                format!("UID {sub}")
            } else {
                verb.clone()
            });
        }
        let options = inner
            .options
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut out = String::new();
        match verb.as_str() {
            "CAPABILITY" => {
                out.push_str(&format!(
                    "* CAPABILITY {}\r\n{tag} OK done\r\n",
                    caps(&options)
                ));
            }
            "LOGIN" => {
                let ok = w.get(2) == Some(&options.user) && w.get(3) == Some(&options.password);
                if ok {
                    logged_in = true;
                    inner.journal().logins += 1;
                    out.push_str(&format!("{tag} OK Logged in\r\n"));
                } else {
                    out.push_str(&format!(
                        "{tag} NO [AUTHENTICATIONFAILED] Invalid credentials\r\n"
                    ));
                }
            }
            "AUTHENTICATE" if sub == "XOAUTH2" => {
                write.write_all(b"+ \r\n").await?;
                let Some(answer) = lines.next_line().await? else {
                    return Ok(());
                };
                use base64::Engine;
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(answer.trim())
                    .unwrap_or_default();
                let text = String::from_utf8_lossy(&decoded).to_string();
                let user = text
                    .split('\x01')
                    .find_map(|p| p.strip_prefix("user="))
                    .unwrap_or("");
                let bearer = text
                    .split('\x01')
                    .find_map(|p| p.strip_prefix("auth=Bearer "))
                    .unwrap_or("");
                let known = inner
                    .oauth
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .access
                    .contains(bearer);
                if known && user == options.user {
                    logged_in = true;
                    inner.journal().logins += 1;
                    out.push_str(&format!("{tag} OK Success\r\n"));
                } else {
                    out.push_str(&format!(
                        "{tag} NO [AUTHENTICATIONFAILED] Invalid credentials (Failure)\r\n"
                    ));
                }
            }
            "ID" => {
                id_sent = true;
                out.push_str(&format!(
                    "* ID (\"name\" \"storeguard-test-imap\")\r\n{tag} OK ID completed\r\n"
                ));
            }
            "NOOP" => out.push_str(&format!("{tag} OK NOOP\r\n")),
            "LOGOUT" => {
                write
                    .write_all(format!("* BYE bye\r\n{tag} OK LOGOUT\r\n").as_bytes())
                    .await?;
                return Ok(());
            }
            _ if !logged_in => out.push_str(&format!("{tag} NO log in first\r\n")),
            "LIST" => {
                let folders = inner.folders.lock().unwrap_or_else(|e| e.into_inner());
                for f in folders.iter() {
                    out.push_str(&format!(
                        "* LIST (\\HasNoChildren{}) \"/\" \"{}\"\r\n",
                        if f.junk { " \\Junk" } else { "" },
                        f.name
                    ));
                }
                out.push_str(&format!("{tag} OK LIST done\r\n"));
            }
            "EXAMINE" | "SELECT" => {
                let name = w.get(2).cloned().unwrap_or_default();
                if options.require_id && !id_sent {
                    inner.journal().refused_without_id += 1;
                    out.push_str(&format!(
                        "{tag} NO SELECT Unsafe Login. Please contact kefu@188.com for help\r\n"
                    ));
                } else {
                    let folders = inner.folders.lock().unwrap_or_else(|e| e.into_inner());
                    match folders.iter().position(|f| f.name == name) {
                        Some(i) => {
                            selected = Some(i);
                            let f = &folders[i];
                            out.push_str(&format!(
                                "* {} EXISTS\r\n* 0 RECENT\r\n* OK [UIDVALIDITY {}] UIDs valid\r\n\
                                 * OK [UIDNEXT {}] Predicted next UID\r\n* FLAGS (\\Seen)\r\n\
                                 {tag} OK [READ-ONLY] done\r\n",
                                f.messages.len(),
                                inner.uid_validity.load(std::sync::atomic::Ordering::SeqCst),
                                f.next_uid
                            ));
                        }
                        None => out.push_str(&format!("{tag} NO no such folder\r\n")),
                    }
                }
            }
            "UID" if sub == "SEARCH" => {
                let key = w.get(3).map(|s| s.to_ascii_uppercase()).unwrap_or_default();
                let hits: Option<Vec<String>> = {
                    let folders = inner.folders.lock().unwrap_or_else(|e| e.into_inner());
                    selected.map(|i| {
                        folders[i]
                            .messages
                            .iter()
                            .filter(|(uid, _, at)| match key.as_str() {
                                "UID" => in_set(w.get(4).map_or("", String::as_str), *uid),
                                "SINCE" => w
                                    .get(4)
                                    .and_then(|d| {
                                        chrono::NaiveDate::parse_from_str(d, "%d-%b-%Y").ok()
                                    })
                                    .is_some_and(|d| at.date_naive() >= d),
                                _ => true,
                            })
                            .map(|(uid, _, _)| uid.to_string())
                            .collect()
                    })
                };
                match hits {
                    None => out.push_str(&format!("{tag} BAD no folder\r\n")),
                    Some(hits) => out.push_str(&format!(
                        "* SEARCH{}{}\r\n{tag} OK SEARCH done\r\n",
                        if hits.is_empty() { "" } else { " " },
                        hits.join(" ")
                    )),
                }
            }
            "UID" if sub == "FETCH" => {
                let set = w.get(3).cloned().unwrap_or_default();
                let mut bytes = Vec::new();
                {
                    let folders = inner.folders.lock().unwrap_or_else(|e| e.into_inner());
                    if let Some(f) = selected.map(|i| &folders[i]) {
                        for (n, (uid, raw, at)) in f.messages.iter().enumerate() {
                            if !in_set(&set, *uid) {
                                continue;
                            }
                            bytes.extend_from_slice(
                                format!(
                                    "* {} FETCH (UID {uid} RFC822.SIZE {} INTERNALDATE \"{}\" BODY[] {{{}}}\r\n",
                                    n + 1,
                                    raw.len(),
                                    at.format("%d-%b-%Y %H:%M:%S +0000"),
                                    raw.len()
                                )
                                .as_bytes(),
                            );
                            bytes.extend_from_slice(raw);
                            bytes.extend_from_slice(b")\r\n");
                        }
                    }
                }
                bytes.extend_from_slice(format!("{tag} OK FETCH done\r\n").as_bytes());
                write.write_all(&bytes).await?;
                continue;
            }
            "IDLE" if options.idle => {
                let known = selected.map_or(0, |i| {
                    inner.folders.lock().unwrap_or_else(|e| e.into_inner())[i]
                        .messages
                        .len()
                });
                write.write_all(b"+ idling\r\n").await?;
                loop {
                    tokio::select! {
                        l = lines.next_line() => {
                            match l? {
                                Some(l) if l.trim().eq_ignore_ascii_case("DONE") => break,
                                Some(_) => continue,
                                None => return Ok(()),
                            }
                        }
                        _ = inner.arrived.notified() => {
                            let now = selected.map_or(0, |i| {
                                inner.folders.lock().unwrap_or_else(|e| e.into_inner())[i].messages.len()
                            });
                            if now > known {
                                write.write_all(format!("* {now} EXISTS\r\n").as_bytes()).await?;
                            }
                        }
                    }
                }
                out.push_str(&format!("{tag} OK IDLE done\r\n"));
            }
            _ => {
                inner.journal().writes += 1;
                out.push_str(&format!("{tag} BAD not served here\r\n"));
            }
        }
        write.write_all(out.as_bytes()).await?;
    }
    Ok(())
}
