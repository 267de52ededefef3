//! One read-only IMAP session with a store's mailbox: log in (app password or XOAUTH2), say
//! who we are when the server asks for it (163 refuses SELECT without `ID`), find the folders
//! worth reading (INBOX, the spam folder by `\Junk` first and by name second, the extra ones),
//! and read new mail by UID without changing anything: `EXAMINE`, `BODY.PEEK[]`, never a flag.

use crate::config::{MailTls, Mailbox};
use async_imap::types::NameAttribute;
use futures_util::StreamExt;
use secrecy::{ExposeSecret, SecretString};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// How long one IMAP exchange (connect, a command, a fetch) may take.
pub const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(60);

/// Most messages fetched in one `UID FETCH`.
pub const FETCH_BATCH: usize = 50;

/// Largest message read; a bigger one is skipped (security mail is a few kilobytes).
pub const MAX_MESSAGE: usize = 2 << 20;

/// The secret a mailbox logs in with.
pub enum Secret {
    Password(SecretString),
    /// An OAuth 2 grant: each login asks it for a current access token.
    Grant(Arc<super::oauth::Grant>),
}

impl Secret {
    /// The secret of `mailbox` from its vault entry `mailbox/NAME`.
    pub fn load(
        mailbox: &Mailbox,
        vault: &crate::vault::Vault,
        identity: &Arc<crate::vault::Identity>,
    ) -> Result<Secret, String> {
        use crate::vault::{EntryId, Schema};
        if mailbox.auth == crate::config::MailAuth::Xoauth2 {
            return super::oauth::Grant::load(mailbox, vault, identity)
                .map(|g| Secret::Grant(Arc::new(g)));
        }
        let doc = vault
            .load(
                &EntryId::mailbox(&mailbox.name),
                Schema::Mailbox { xoauth2: false },
                identity,
            )
            .map_err(|e| e.to_string())?;
        doc.get("password")
            .cloned()
            .map(Secret::Password)
            .ok_or_else(|| format!("the vault entry mailbox/{} has no password", mailbox.name))
    }
}

/// Why a session failed.
#[derive(Debug, thiserror::Error)]
pub enum ImapError {
    #[error("cannot connect to {0}: {1}")]
    Connect(String, String),
    #[error("TLS with {0} failed: {1}")]
    Tls(String, String),
    /// The server refused the login (a wrong or reset app password, a revoked grant).
    #[error("the mail server refused the login: {0}")]
    Rejected(String),
    #[error("the mail server did not answer within {0:?}")]
    Timeout(Duration),
    #[error("IMAP: {0}")]
    Protocol(String),
}

impl From<async_imap::error::Error> for ImapError {
    fn from(e: async_imap::error::Error) -> ImapError {
        ImapError::Protocol(crate::outcome::sanitize(&e.to_string(), 200))
    }
}

/// A plain or TLS connection.
#[derive(Debug)]
pub enum Conn {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// What a folder is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Inbox,
    Spam,
    /// 163's ad and subscription folders, and the user's `folders`.
    Extra,
}

/// A folder to read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Folder {
    /// The name as the server spells it (modified UTF-7), for commands and state.
    pub name: String,
    /// The name for people (decoded).
    pub display: String,
    pub role: Role,
}

/// A folder's identity and size after `EXAMINE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Opened {
    pub uid_validity: u32,
    pub uid_next: u32,
}

/// One message read.
pub struct Fetched {
    pub uid: u32,
    pub raw: Vec<u8>,
    /// When the server received it (INTERNALDATE).
    pub received: Option<chrono::DateTime<chrono::Utc>>,
}

/// A logged-in, read-only session.
pub struct Session {
    inner: async_imap::Session<Conn>,
    pub idle: bool,
    host: String,
}

async fn timed<T>(
    f: impl std::future::Future<Output = Result<T, ImapError>>,
) -> Result<T, ImapError> {
    tokio::time::timeout(EXCHANGE_TIMEOUT, f)
        .await
        .unwrap_or(Err(ImapError::Timeout(EXCHANGE_TIMEOUT)))
}

fn tls_config() -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls_platform_verifier::BuilderVerifierExt;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_platform_verifier()
        .map_err(|e| e.to_string())?
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

async fn wrap_tls(host: &str, tcp: TcpStream) -> Result<Conn, ImapError> {
    let tls_err = |e: String| ImapError::Tls(host.to_string(), e);
    let name = rustls::pki_types::ServerName::try_from(host.to_string())
        .map_err(|e| tls_err(e.to_string()))?;
    let connector = tokio_rustls::TlsConnector::from(tls_config().map_err(tls_err)?);
    let tls = connector
        .connect(name, tcp)
        .await
        .map_err(|e| tls_err(e.to_string()))?;
    Ok(Conn::Tls(Box::new(tls)))
}

struct XOAuth2<'a> {
    user: &'a str,
    token: &'a str,
}

impl async_imap::Authenticator for XOAuth2<'_> {
    type Response = String;
    fn process(&mut self, _challenge: &[u8]) -> String {
        format!("user={}\x01auth=Bearer {}\x01\x01", self.user, self.token)
    }
}

impl Session {
    /// Connects and logs in. `ImapError::Rejected` means the credentials were refused.
    pub async fn open(mailbox: &Mailbox, secret: &Secret) -> Result<Session, ImapError> {
        timed(Self::open_inner(mailbox, secret)).await
    }

    async fn open_inner(mailbox: &Mailbox, secret: &Secret) -> Result<Session, ImapError> {
        let host = mailbox.host.as_str();
        let addr = format!("{host}:{}", mailbox.port);
        let tcp = TcpStream::connect(&addr)
            .await
            .map_err(|e| ImapError::Connect(addr.clone(), e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        let conn = match mailbox.tls {
            MailTls::Tls => wrap_tls(host, tcp).await?,
            MailTls::None => Conn::Plain(tcp),
            MailTls::Starttls => {
                let mut client = async_imap::Client::new(Conn::Plain(tcp));
                greeting(&mut client).await?;
                client
                    .run_command_and_check_ok("STARTTLS", None)
                    .await
                    .map_err(|e| {
                        ImapError::Tls(host.into(), format!("the server refused STARTTLS: {e}"))
                    })?;
                match client.into_inner() {
                    Conn::Plain(tcp) => {
                        let conn = wrap_tls(host, tcp).await?;
                        return Self::login(async_imap::Client::new(conn), mailbox, secret).await;
                    }
                    Conn::Tls(_) => unreachable!("STARTTLS starts from a plain connection"),
                }
            }
        };
        let mut client = async_imap::Client::new(conn);
        greeting(&mut client).await?;
        Self::login(client, mailbox, secret).await
    }

    async fn login(
        client: async_imap::Client<Conn>,
        mailbox: &Mailbox,
        secret: &Secret,
    ) -> Result<Session, ImapError> {
        let refused = |e: async_imap::error::Error| match e {
            async_imap::error::Error::No(m) | async_imap::error::Error::Bad(m) => {
                ImapError::Rejected(crate::outcome::sanitize(&m, 200))
            }
            other => ImapError::from(other),
        };
        let mut inner = match secret {
            Secret::Password(p) => client
                .login(&mailbox.username, p.expose_secret())
                .await
                .map_err(|(e, _)| refused(e))?,
            Secret::Grant(g) => {
                use super::oauth::GrantError;
                let token = g
                    .access_token(chrono::Utc::now())
                    .await
                    .map_err(|e| match e {
                        GrantError::Refused(why) => ImapError::Rejected(why),
                        other => ImapError::Protocol(other.to_string()),
                    })?;
                client
                    .authenticate(
                        "XOAUTH2",
                        XOAuth2 {
                            user: &mailbox.username,
                            token: token.expose_secret(),
                        },
                    )
                    .await
                    .map_err(|(e, _)| refused(e))?
            }
        };
        let caps = inner.capabilities().await?;
        let idle = caps.has_str("IDLE");
        if caps.has_str("ID") {
            // Only what the server asked to know: a name and a version, nothing of the host.
            inner
                .id([
                    ("name", Some("storeguard")),
                    ("version", Some(env!("CARGO_PKG_VERSION"))),
                ])
                .await?;
        }
        Ok(Session {
            inner,
            idle,
            host: mailbox.host.clone(),
        })
    }

    /// The folders to read: INBOX, the spam folder (by `\Junk`, else by a known name), 163's
    /// ad and subscription folders, and `extra` (by display or server name).
    pub async fn folders(&mut self, extra: &[String]) -> Result<Vec<Folder>, ImapError> {
        let names: Vec<(String, bool)> = timed(async {
            let mut out = Vec::new();
            let mut list = self.inner.list(Some(""), Some("*")).await?;
            while let Some(n) = list.next().await {
                let n = n?;
                let attrs = n.attributes();
                if attrs.contains(&NameAttribute::NoSelect) {
                    continue;
                }
                out.push((n.name().to_string(), attrs.contains(&NameAttribute::Junk)));
            }
            Ok(out)
        })
        .await?;
        Ok(pick_folders(&names, extra))
    }

    /// Opens a folder read-only.
    pub async fn examine(&mut self, folder: &str) -> Result<Opened, ImapError> {
        timed(async {
            let mb = self.inner.examine(folder).await?;
            Ok(Opened {
                uid_validity: mb.uid_validity.unwrap_or(0),
                uid_next: mb.uid_next.unwrap_or(0),
            })
        })
        .await
    }

    /// UIDs of the open folder's messages received on or after `day`.
    pub async fn uids_since(&mut self, day: chrono::NaiveDate) -> Result<Vec<u32>, ImapError> {
        let query = format!("SINCE {}", day.format("%d-%b-%Y"));
        let mut uids: Vec<u32> =
            timed(async { Ok(self.inner.uid_search(&query).await?.into_iter().collect()) }).await?;
        uids.sort_unstable();
        Ok(uids)
    }

    /// UIDs above `after` in the open folder.
    pub async fn uids_after(&mut self, after: u32) -> Result<Vec<u32>, ImapError> {
        let query = format!("UID {}:*", after.saturating_add(1));
        let mut uids: Vec<u32> = timed(async {
            Ok(self
                .inner
                .uid_search(&query)
                .await?
                .into_iter()
                .filter(|u| *u > after)
                .collect())
        })
        .await?;
        uids.sort_unstable();
        Ok(uids)
    }

    /// The messages with these UIDs, without marking them seen.
    pub async fn fetch(&mut self, uids: &[u32]) -> Result<Vec<Fetched>, ImapError> {
        if uids.is_empty() {
            return Ok(Vec::new());
        }
        let set = uids
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let mut out = timed(async {
            let mut out = Vec::new();
            let mut stream = self
                .inner
                .uid_fetch(&set, "(UID RFC822.SIZE INTERNALDATE BODY.PEEK[])")
                .await?;
            while let Some(f) = stream.next().await {
                let f = f?;
                let Some(uid) = f.uid else { continue };
                let raw = f.body().unwrap_or_default();
                out.push(Fetched {
                    uid,
                    raw: if raw.len() > MAX_MESSAGE {
                        Vec::new()
                    } else {
                        raw.to_vec()
                    },
                    received: f.internal_date().map(|d| d.with_timezone(&chrono::Utc)),
                });
            }
            Ok(out)
        })
        .await?;
        out.sort_by_key(|f| f.uid);
        Ok(out)
    }

    /// Waits in IDLE on the open folder for at most `wait` (kept below the 29 minutes servers
    /// allow), or until `stop`. True when the server reported something new.
    pub async fn idle(
        self,
        wait: Duration,
        stop: &tokio_util::sync::CancellationToken,
    ) -> Result<(Session, bool), ImapError> {
        let Session { inner, idle, host } = self;
        let mut handle = inner.idle();
        timed(async { Ok(handle.init().await?) }).await?;
        let news = {
            let (fut, interrupt) = handle.wait_with_timeout(wait.min(Duration::from_secs(25 * 60)));
            tokio::select! {
                r = fut => matches!(r?, async_imap::extensions::idle::IdleResponse::NewData(_)),
                _ = stop.cancelled() => {
                    drop(interrupt);
                    false
                }
            }
        };
        let inner = timed(async { Ok(handle.done().await?) }).await?;
        Ok((Session { inner, idle, host }, news))
    }

    /// Logs out, politely and briefly.
    pub async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(5), self.inner.logout()).await;
    }

    pub fn host(&self) -> &str {
        &self.host
    }
}

async fn greeting(client: &mut async_imap::Client<Conn>) -> Result<(), ImapError> {
    match client.read_response().await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(ImapError::Protocol(
            "the server closed before its greeting".into(),
        )),
        Err(e) => Err(ImapError::Protocol(e.to_string())),
    }
}

/// Spam-folder names providers use, decoded, lower-case (QQ, 163, Yandex, Mail.ru, Gmail,
/// Outlook).
const SPAM_NAMES: [&str; 9] = [
    "junk",
    "spam",
    "junk e-mail",
    "junk email",
    "bulk mail",
    "垃圾邮件",
    "垃圾箱",
    "спам",
    "нежелательная почта",
];

/// 163/126's folders where foreign mail often lands.
const EXTRA_NAMES: [&str; 2] = ["广告邮件", "订阅邮件"];

/// Picks the folders to read from a `LIST` (server name, `\Junk` attribute).
pub fn pick_folders(names: &[(String, bool)], extra: &[String]) -> Vec<Folder> {
    let leaf = |display: &str| -> String {
        display
            .rsplit(['/', '.'])
            .next()
            .unwrap_or(display)
            .to_lowercase()
    };
    let mut out: Vec<Folder> = Vec::new();
    let push = |name: &str, role: Role, out: &mut Vec<Folder>| {
        if !out.iter().any(|f| f.name == name) {
            out.push(Folder {
                name: name.to_string(),
                display: decode_utf7(name),
                role,
            });
        }
    };
    if let Some((n, _)) = names.iter().find(|(n, _)| n.eq_ignore_ascii_case("INBOX")) {
        push(n, Role::Inbox, &mut out);
    } else {
        push("INBOX", Role::Inbox, &mut out);
    }
    let spam = names.iter().find(|(_, junk)| *junk).or_else(|| {
        names
            .iter()
            .find(|(n, _)| SPAM_NAMES.contains(&leaf(&decode_utf7(n)).as_str()))
    });
    if let Some((n, _)) = spam {
        push(n, Role::Spam, &mut out);
    }
    for (n, _) in names {
        let display = decode_utf7(n);
        let wanted = EXTRA_NAMES.contains(&leaf(&display).as_str())
            || extra.iter().any(|e| e == n || *e == display);
        if wanted {
            push(n, Role::Extra, &mut out);
        }
    }
    out
}

/// Decodes an IMAP modified-UTF-7 folder name (RFC 3501 §5.1.3): `&` … `-` is UTF-16BE in
/// base64 with `,` for `/`; `&-` is `&`. Anything malformed is kept as written.
pub fn decode_utf7(name: &str) -> String {
    use base64::Engine;
    let engine = base64::engine::general_purpose::STANDARD_NO_PAD;
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let Some(end) = after.find('-') else {
            out.push_str(&rest[i..]);
            return out;
        };
        let chunk = &after[..end];
        if chunk.is_empty() {
            out.push('&');
        } else {
            let decoded = engine
                .decode(chunk.replace(',', "/"))
                .ok()
                .filter(|b| b.len() % 2 == 0)
                .and_then(|b| {
                    let units: Vec<u16> = b
                        .chunks(2)
                        .map(|p| u16::from_be_bytes([p[0], p[1]]))
                        .collect();
                    String::from_utf16(&units).ok()
                });
            match decoded {
                Some(s) => out.push_str(&s),
                None => out.push_str(&rest[i..i + 2 + end]),
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folder_names_in_modified_utf7_are_decoded() {
        assert_eq!(decode_utf7("&V4NXPpCuTvY-"), "垃圾邮件");
        assert_eq!(decode_utf7("&BCEEPwQwBDw-"), "Спам");
        assert_eq!(decode_utf7("[Gmail]/Spam"), "[Gmail]/Spam");
        assert_eq!(decode_utf7("Tom &- Jerry"), "Tom & Jerry");
        assert_eq!(decode_utf7("&bad"), "&bad");
        assert_eq!(decode_utf7("&!!!-x"), "&!!!-x");
    }

    #[test]
    fn the_spam_folder_is_found_by_attribute_first_then_by_name() {
        let by_attr = pick_folders(
            &[
                ("INBOX".into(), false),
                ("Spam".into(), false),
                ("Quarantine".into(), true),
            ],
            &[],
        );
        assert_eq!(by_attr[1].name, "Quarantine");
        assert_eq!(by_attr[1].role, Role::Spam);
        let qq = pick_folders(
            &[("INBOX".into(), false), ("&V4NXPpCuTvY-".into(), false)],
            &[],
        );
        assert_eq!(qq[1].display, "垃圾邮件");
        let gmail = pick_folders(
            &[("INBOX".into(), false), ("[Gmail]/Spam".into(), false)],
            &[],
        );
        assert_eq!(gmail[1].role, Role::Spam);
        let ad = pick_folders(
            &[
                ("INBOX".into(), false),
                ("&Xn9USpCuTvY-".into(), false),
                ("Work".into(), false),
                ("Other".into(), false),
            ],
            &["Work".into()],
        );
        assert_eq!(ad.len(), 3, "{ad:?}");
        assert_eq!(ad[1].display, "广告邮件");
        assert_eq!(ad[1].role, Role::Extra);
        assert_eq!(ad[2].name, "Work");
        let a = pick_folders(&[("Inbox".into(), false)], &[]);
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].name, "Inbox");
    }
}
