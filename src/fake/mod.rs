//! Loopback fake marketplaces, shared by the tests and `storeguard demo`.
//!
//! One axum server per marketplace on `127.0.0.1:0` (bound before it is spawned, so no test ever
//! waits for a port). Each follows the contracts in MARKETPLACES.md: it checks the exact
//! headers, form fields and IOP signatures it receives, answers with the marketplace's own error
//! bodies, and records every request together with any problem it saw in it, so a test can
//! assert that requests were well formed. Scenarios are chosen per store by its credentials
//! (Ozon Client-Id, Amazon refresh token, IOP app key) and can be changed while the server runs,
//! so a demo can break and fix stores. An optional latency is added to every answer.
//!
//! Accounts live in hash maps and the request journal is capped, so 10,000 stores are cheap.
//! These servers hold fixture secrets only; they are never pointed at a real marketplace.

pub mod amazon;
pub mod dns;
pub mod imap;
pub mod iop;
pub mod ozon;
pub mod shopee;
pub mod tiktok;
pub mod wildberries;
pub mod yandex;

pub use amazon::{AmazonAccount, AmazonFake};
pub use iop::{IopAccount, IopFake, IopKind};
pub use ozon::OzonFake;
pub use shopee::{ShopeeAccount, ShopeeFake};
pub use tiktok::{TiktokAccount, TiktokFake};
pub use wildberries::WildberriesFake;
pub use yandex::YandexFake;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockWriteGuard};
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use url::Url;

/// How a fake answers one store. Scenarios a marketplace has no equivalent for answer as
/// [`Scenario::Healthy`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Scenario {
    Healthy,
    /// Ozon: the key is refused (404 code 5).
    WrongKey,
    /// Ozon: "Api-key is deactivated".
    DeactivatedKey,
    /// Ozon: missing role; Amazon: 403 without details; IOP: `InvalidApiPath`.
    MissingRole,
    /// Ozon: key restricted to other IPs; IOP: `AppWhiteIpLimit`.
    IpRestricted,
    /// Ozon: "Company is blocked"; IOP: business error 000003.
    CompanyBlocked,
    /// Ozon: "Offer not signed".
    OfferNotSigned,
    /// Ozon: key `expires_at` in N days; IOP: refresh answers' `refresh_expires_in`.
    ExpiringInDays(i64),
    /// Ozon 429 code 8, Amazon 429 `QuotaExceeded`, IOP `ApiCallLimit`; with `Retry-After: 7`.
    RateLimited,
    /// HTTP 500 on the probe call.
    ServerError,
    /// The probe call's body trickles one byte a second.
    Slow,
    /// The probe call is never answered.
    Hangs,
    /// The probe call's body never ends.
    EndlessBody,
    /// HTTP 200 with truncated JSON.
    InvalidJson,
    /// HTTP 200 with an HTML login page.
    Html200,
    /// A 302 to this URL (another host) on the probe call.
    Redirect(String),
    /// Amazon: the token endpoint answers `invalid_grant`.
    InvalidGrant,
    /// Amazon: the token endpoint answers `invalid_client`.
    InvalidClient,
    /// Amazon: the first access token issued is reported expired by the API.
    ExpiredAccessToken,
    /// IOP: the vault's access token is refused (`IllegalAccessToken`); a refresh succeeds.
    IllegalAccessTokenThenRefresh,
    /// IOP: the access token is refused and so is the refresh token.
    IllegalRefreshToken,
    /// IOP: every signature is refused (as with a wrong app secret).
    IncompleteSignature,
    /// IOP, Wildberries, Yandex Market: the API answers for this other seller (business) id.
    SellerMismatch(String),
    /// Yandex Market: one of the cabinet's stores has its API disabled for inactivity.
    DisabledByInactivity,
}

/// Settings shared by every fake.
#[derive(Clone, Debug)]
pub struct Options {
    /// Added before every answer (a benchmark uses 20 ms).
    pub latency: Duration,
    /// How many requests the journal keeps (oldest dropped first).
    pub record_limit: usize,
    /// Address to bind (port 0 = any free port).
    pub bind: SocketAddr,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            latency: Duration::ZERO,
            record_limit: 10_000,
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
        }
    }
}

/// One request as a fake received it, with the problems the fake found in it. Its headers and
/// body hold credentials, so `Debug` shows only names.
#[derive(Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: String,
    /// Lowercased names.
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// Ways the request broke the marketplace's contract (empty = well formed).
    pub problems: Vec<String>,
}

impl std::fmt::Debug for Recorded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorded")
            .field("method", &self.method)
            .field("path", &self.path)
            .field(
                "headers",
                &self
                    .headers
                    .iter()
                    .map(|(k, _)| k.as_str())
                    .collect::<Vec<_>>(),
            )
            .field("body_bytes", &self.body.len())
            .field("problems", &self.problems)
            .finish()
    }
}

impl Recorded {
    fn new(method: &Method, uri: &Uri, headers: &HeaderMap, body: &Bytes) -> Self {
        Recorded {
            method: method.to_string(),
            path: uri.path().to_string(),
            query: uri.query().unwrap_or("").to_string(),
            headers: headers
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            body: String::from_utf8_lossy(body).into_owned(),
            problems: Vec::new(),
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Form-encoded body fields.
    pub fn form(&self) -> Vec<(String, String)> {
        url::form_urlencoded::parse(self.body.as_bytes())
            .into_owned()
            .collect()
    }

    /// A field of the query string or the form body.
    pub fn param(&self, name: &str) -> Option<String> {
        url::form_urlencoded::parse(self.query.as_bytes())
            .into_owned()
            .chain(self.form())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }

    fn problem(&mut self, p: impl Into<String>) {
        self.problems.push(p.into());
    }

    /// Problems every storeguard request must avoid.
    fn check_common(&mut self) {
        match self.header("user-agent") {
            Some(ua) if ua.starts_with("storeguard/") => {}
            other => {
                let p = format!("user-agent is {other:?}, expected storeguard/<version>");
                self.problem(p);
            }
        }
        if self.header("referer").is_some() {
            self.problem("a Referer header was sent");
        }
    }

    fn check_content_type(&mut self, want: &str) {
        if !self
            .header("content-type")
            .is_some_and(|c| c.starts_with(want))
        {
            let p = format!("content-type is not {want}");
            self.problem(p);
        }
    }
}

/// The capped request log of one fake.
struct Journal {
    log: Mutex<VecDeque<Recorded>>,
    limit: usize,
    notify: Notify,
}

impl Journal {
    fn new(limit: usize) -> Self {
        Journal {
            log: Mutex::new(VecDeque::new()),
            limit,
            notify: Notify::new(),
        }
    }

    fn push(&self, r: Recorded) {
        {
            let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
            if self.limit > 0 {
                while log.len() >= self.limit {
                    log.pop_front();
                }
                log.push_back(r);
            }
        }
        self.notify.notify_waiters();
    }

    fn all(&self) -> Vec<Recorded> {
        self.log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    fn clear(&self) {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    async fn wait_until(&self, pred: impl Fn(&Recorded) -> bool) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self
                .log
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .any(&pred)
            {
                return;
            }
            notified.await;
        }
    }
}

/// The accounts a fake knows, each with its scenario, keyed by the credential that selects it
/// (Ozon Client-Id, Amazon refresh token, IOP app key).
struct Accounts<A> {
    map: RwLock<HashMap<String, (A, Scenario)>>,
}

impl<A: Clone> Accounts<A> {
    fn new() -> Self {
        Accounts {
            map: RwLock::new(HashMap::new()),
        }
    }

    fn write(&self) -> RwLockWriteGuard<'_, HashMap<String, (A, Scenario)>> {
        self.map.write().unwrap_or_else(|e| e.into_inner())
    }

    fn insert(&self, key: &str, data: A, scenario: Scenario) {
        self.write().insert(key.to_string(), (data, scenario));
    }

    /// Changes a scenario while the server runs; false when the key is unknown.
    fn set_scenario(&self, key: &str, scenario: Scenario) -> bool {
        self.write().get_mut(key).map(|a| a.1 = scenario).is_some()
    }

    fn get(&self, key: &str) -> Option<(A, Scenario)> {
        self.map
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .cloned()
    }

    fn update<R>(&self, key: &str, f: impl FnOnce(&mut A) -> R) -> Option<R> {
        self.write().get_mut(key).map(|(a, _)| f(a))
    }
}

/// What every fake shares: its journal, options and hostile-body accounting.
struct Common {
    journal: Journal,
    options: Options,
    /// Bytes of endless bodies sent so far (proves the client stopped reading).
    endless_sent: Arc<AtomicU64>,
}

impl Common {
    fn new(options: Options) -> Self {
        Common {
            journal: Journal::new(options.record_limit),
            endless_sent: Arc::new(AtomicU64::new(0)),
            options,
        }
    }

    fn endless_bytes_sent(&self) -> u64 {
        self.endless_sent.load(Ordering::Relaxed)
    }

    async fn delay(&self) {
        if !self.options.latency.is_zero() {
            tokio::time::sleep(self.options.latency).await;
        }
    }
}

/// A running fake server; stopped when dropped.
pub struct Server {
    addr: SocketAddr,
    stop: CancellationToken,
}

impl Server {
    /// Binds first, then spawns, so the address is ready when this returns.
    async fn start(bind: SocketAddr, router: Router) -> std::io::Result<Server> {
        let listener = tokio::net::TcpListener::bind(bind).await?;
        let addr = listener.local_addr()?;
        let stop = CancellationToken::new();
        let s = stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async move { s.cancelled().await })
                .await;
        });
        Ok(Server { addr, stop })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`
    pub fn url(&self) -> Url {
        Url::parse(&format!("http://{}", self.addr)).expect("socket address makes a URL")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// A JSON answer.
fn json(status: u16, body: serde_json::Value) -> Response {
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn with_retry_after(mut r: Response) -> Response {
    r.headers_mut()
        .insert("retry-after", axum::http::HeaderValue::from_static("7"));
    r
}

/// The hostile answers every fake gives on its probe call. `None` for the other scenarios.
async fn hostile(s: &Scenario, common: &Common) -> Option<Response> {
    Some(match s {
        Scenario::ServerError => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [("content-type", "text/plain")],
            "Internal Server Error",
        )
            .into_response(),
        Scenario::Hangs => std::future::pending().await,
        Scenario::Slow => {
            let stream = futures_util::stream::unfold(0u64, |n| async move {
                if n > 0 {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                (n < 3600).then(|| (Ok::<_, std::io::Error>(Bytes::from_static(b" ")), n + 1))
            });
            (
                [("content-type", "application/json")],
                Body::from_stream(stream),
            )
                .into_response()
        }
        Scenario::EndlessBody => {
            let sent = common.endless_sent.clone();
            let chunk = Bytes::from(vec![b'['; 64 * 1024]);
            let stream = futures_util::stream::repeat_with(move || {
                sent.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                Ok::<_, std::io::Error>(chunk.clone())
            });
            (
                [("content-type", "application/json")],
                Body::from_stream(stream),
            )
                .into_response()
        }
        Scenario::InvalidJson => (
            [("content-type", "application/json")],
            r#"{"roles": [{"name": "Admin", "methods": ["/v1/act"#,
        )
            .into_response(),
        Scenario::Html200 => (
            [("content-type", "text/html; charset=utf-8")],
            "<!DOCTYPE html><html><head><title>Sign in</title></head><body><form>Log in</form></body></html>",
        )
            .into_response(),
        Scenario::Redirect(to) => (
            StatusCode::FOUND,
            [("location", to.as_str())],
            "",
        )
            .into_response(),
        _ => return None,
    })
}

/// A server that records whatever reaches it and answers `200 {}`: the target of the
/// cross-host redirect scenario, which must receive nothing.
pub struct Recorder {
    server: Server,
    common: Arc<Common>,
}

impl Recorder {
    /// Binds `ip:0` (e.g. 127.0.0.2, a different host from the fakes' 127.0.0.1).
    pub async fn start(ip: IpAddr) -> std::io::Result<Recorder> {
        let common = Arc::new(Common::new(Options {
            bind: SocketAddr::new(ip, 0),
            ..Options::default()
        }));
        let c = common.clone();
        let router = Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let c = c.clone();
                async move {
                    c.journal
                        .push(Recorded::new(&method, &uri, &headers, &body));
                    json(200, serde_json::json!({}))
                }
            },
        );
        let server = Server::start(common.options.bind, router).await?;
        Ok(Recorder { server, common })
    }

    pub fn url(&self) -> Url {
        self.server.url()
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.common.journal.all()
    }
}
