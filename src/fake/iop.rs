//! Fake Alibaba gateway (IOP) for Alibaba.com or AliExpress: `POST /rest/auth/token/refresh`,
//! `POST /rest/alibaba/icbu/product/group/get` (Alibaba.com) and
//! `POST /sync?method=aliexpress.merchant.profile.get` (AliExpress). Every request's signature
//! and timestamp are checked; scenarios are keyed by app key.
//!
//! Tokens the fake issues on refresh are remembered in order ([`IopFake::issued`]); when one of
//! them is used, an optional observer is asked whether it was already durable (a test decrypts
//! the vault there), and a "no" is recorded as a violation.

use super::{Accounts, Common, Options, Recorded, Scenario, Server, hostile, json};
use crate::marketplace::iop::sign;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response;
use serde_json::json;
use std::sync::{Arc, Mutex, RwLock};

/// Which marketplace the gateway plays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IopKind {
    Alibaba,
    Aliexpress,
    /// Lazada (LazOP): `GET /rest/seller/get`, the same signing and refresh.
    Lazada,
}

/// An app authorisation the fake knows.
#[derive(Clone)]
pub struct IopAccount {
    pub app_key: String,
    pub app_secret: String,
    /// The access and refresh tokens the vault starts with.
    pub access_token: String,
    pub refresh_token: String,
    pub seller_id: String,
    pub store_name: Option<String>,
}

/// Called with (app key, access token) when a token the fake issued is used.
pub type TokenObserver = Arc<dyn Fn(&str, &str) -> bool + Send + Sync>;

#[derive(Clone)]
struct App {
    account: IopAccount,
    /// (access, refresh) pairs issued by refreshes, oldest first.
    issued: Vec<(String, String)>,
}

struct Inner {
    kind: IopKind,
    common: Common,
    apps: Accounts<App>,
    observer: RwLock<Option<TokenObserver>>,
    violations: Mutex<Vec<String>>,
    /// Refreshes refused because their token was already spent.
    spent: std::sync::atomic::AtomicU64,
}

/// A running fake IOP gateway.
pub struct IopFake {
    server: Server,
    inner: Arc<Inner>,
}

impl IopFake {
    pub async fn start(kind: IopKind, options: Options) -> std::io::Result<IopFake> {
        let inner = Arc::new(Inner {
            kind,
            common: Common::new(options),
            apps: Accounts::new(),
            observer: RwLock::new(None),
            violations: Mutex::new(Vec::new()),
            spent: std::sync::atomic::AtomicU64::new(0),
        });
        let router = Router::new().fallback(handle).with_state(inner.clone());
        let server = Server::start(inner.common.options.bind, router).await?;
        Ok(IopFake { server, inner })
    }

    /// The base URL for `[marketplace.alibaba|aliexpress] endpoint`.
    pub fn url(&self) -> url::Url {
        self.server.url()
    }

    pub fn add_account(&self, account: IopAccount, scenario: Scenario) {
        let key = account.app_key.clone();
        let app = App {
            account,
            issued: Vec::new(),
        };
        self.inner.apps.insert(&key, app, scenario);
    }

    pub fn set_scenario(&self, app_key: &str, scenario: Scenario) -> bool {
        self.inner.apps.set_scenario(app_key, scenario)
    }

    /// A person re-authorised the app: the account's initial tokens are valid again and every
    /// issued pair is forgotten.
    pub fn reauthorise(&self, app_key: &str) -> bool {
        self.inner
            .apps
            .update(app_key, |a| a.issued.clear())
            .is_some()
    }

    /// The newest refresh token this app accepts (the initial one until a refresh).
    pub fn live_refresh_token(&self, app_key: &str) -> Option<String> {
        self.inner.apps.get(app_key).map(|(a, _)| {
            a.issued
                .last()
                .map_or(a.account.refresh_token.clone(), |(_, r)| r.clone())
        })
    }

    /// How many refreshes were refused because their token had already been spent.
    pub fn spent_refresh_attempts(&self) -> u64 {
        self.inner.spent.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The (access, refresh) token pairs issued to this app, oldest first.
    pub fn issued(&self, app_key: &str) -> Vec<(String, String)> {
        self.inner
            .apps
            .get(app_key)
            .map(|(a, _)| a.issued)
            .unwrap_or_default()
    }

    /// Installs the durability observer (see the module docs).
    pub fn set_token_observer(&self, observer: TokenObserver) {
        *self
            .inner
            .observer
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Some(observer);
    }

    /// Issued tokens used before the observer saw them durable.
    pub fn violations(&self) -> Vec<String> {
        self.inner
            .violations
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.inner.common.journal.all()
    }

    /// Requests signed with this app key.
    pub fn requests_for(&self, app_key: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.param("app_key").as_deref() == Some(app_key))
            .collect()
    }

    /// Waits until a request matching `pred` has been received.
    pub async fn wait_for_request(&self, pred: impl Fn(&Recorded) -> bool) {
        self.inner.common.journal.wait_until(pred).await
    }

    pub fn clear_requests(&self) {
        self.inner.common.journal.clear();
    }

    pub fn endless_bytes_sent(&self) -> u64 {
        self.inner.common.endless_bytes_sent()
    }
}

/// Path of the refresh call and the two cheap reads.
const REFRESH: &str = "/rest/auth/token/refresh";
const GROUP_GET: &str = "/rest/alibaba/icbu/product/group/get";
const PROFILE: &str = "aliexpress.merchant.profile.get";
const SELLER_GET: &str = "/rest/seller/get";

async fn handle(
    State(inner): State<Arc<Inner>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    inner.common.delay().await;
    let mut rec = Recorded::new(&method, &uri, &headers, &body);
    rec.check_common();
    // Lazada's GetSeller is a GET with its parameters in the query; the rest are form POSTs.
    if inner.kind == IopKind::Lazada && rec.path == SELLER_GET {
        if method != Method::GET {
            rec.problem(format!("{method} instead of GET"));
        }
        if !body.is_empty() {
            rec.problem("a GET with a body");
        }
    } else {
        if method != Method::POST {
            rec.problem(format!("{method} instead of POST"));
        }
        rec.check_content_type("application/x-www-form-urlencoded");
    }
    let sync = rec.path == "/sync";
    let method_name = rec.param("method");
    let api = match (rec.path.as_str(), inner.kind) {
        (REFRESH, _) => Api::Refresh,
        (GROUP_GET, IopKind::Alibaba) => Api::Read,
        (SELLER_GET, IopKind::Lazada) => Api::Read,
        ("/sync", IopKind::Aliexpress) if method_name.as_deref() == Some(PROFILE) => Api::Read,
        _ => {
            let p = format!("unknown API {} {:?}", rec.path, method_name);
            rec.problem(p);
            Api::Unknown
        }
    };
    // Every parameter, from the query and the form.
    let mut params: Vec<(String, String)> = url::form_urlencoded::parse(rec.query.as_bytes())
        .into_owned()
        .collect();
    params.extend(rec.form());
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    for required in ["app_key", "timestamp", "sign_method", "sign"] {
        if get(required).is_none() {
            rec.problem(format!("{required} missing"));
        }
    }
    if get("sign_method").as_deref() != Some("sha256") {
        rec.problem("sign_method is not sha256");
    }
    let now_ms = chrono::Utc::now().timestamp_millis();
    if get("timestamp")
        .and_then(|t| t.parse::<i64>().ok())
        .is_none_or(|t| (now_ms - t).abs() > 7_200_000)
    {
        rec.problem("timestamp missing or more than 7,200 s off");
    }
    let app_key = get("app_key").unwrap_or_default();
    let app = inner
        .apps
        .get(&app_key)
        .map(|(a, scenario)| (a.account, scenario, a.issued));
    let mut signature_ok = false;
    if let Some((account, _, _)) = &app {
        let pairs: Vec<(&str, &str)> = params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let path = (!sync).then(|| rec.path.trim_start_matches("/rest"));
        let want = sign(account.app_secret.as_bytes(), path, &pairs);
        signature_ok = get("sign").as_deref() == Some(want.as_str());
    }
    match api {
        Api::Refresh => {
            if get("refresh_token").is_none() {
                rec.problem("refresh_token missing");
            }
        }
        Api::Read if inner.kind == IopKind::Lazada => {
            if get("access_token").is_none() {
                rec.problem("access_token missing");
            }
        }
        Api::Read if inner.kind == IopKind::Alibaba => {
            if get("access_token").is_none() || get("group_id").as_deref() != Some("-1") {
                rec.problem("access_token or group_id=-1 missing");
            }
        }
        Api::Read => {
            if get("session").is_none()
                || get("v").as_deref() != Some("2.0")
                || get("format").as_deref() != Some("json")
            {
                rec.problem("session, v=2.0 or format=json missing");
            }
        }
        Api::Unknown => {}
    }
    inner.common.journal.push(rec);

    let err = |code: &str, message: &str| error(sync, code, message);
    let Some((account, scenario, issued)) = app else {
        return err("InvalidAppKey", "the app key is not known");
    };
    if scenario == Scenario::IncompleteSignature || !signature_ok {
        return err(
            "IncompleteSignature",
            "The request signature does not conform to platform standards",
        );
    }
    match api {
        Api::Unknown => err("InvalidApiPath", "The specified API path is invalid"),
        Api::Refresh => refresh(&inner, &account, &scenario, &issued, get("refresh_token")),
        Api::Read => {
            let token = if inner.kind != IopKind::Aliexpress {
                get("access_token")
            } else {
                get("session")
            }
            .unwrap_or_default();
            read(&inner, &account, &scenario, &issued, &token, sync).await
        }
    }
}

enum Api {
    Refresh,
    Read,
    Unknown,
}

fn error(sync: bool, code: &str, message: &str) -> Response {
    let request_id = "0ba2887315178178017221014";
    if sync {
        json(
            200,
            json!({"error_response": {"type": "ISV", "code": code, "msg": message, "request_id": request_id}}),
        )
    } else {
        json(
            200,
            json!({"type": "ISV", "code": code, "message": message, "request_id": request_id}),
        )
    }
}

/// Scenarios in which the vault's first access token is refused.
fn refuses_initial(kind: IopKind, s: &Scenario) -> bool {
    matches!(
        s,
        Scenario::IllegalAccessTokenThenRefresh | Scenario::IllegalRefreshToken
    ) || (kind == IopKind::Alibaba && matches!(s, Scenario::SellerMismatch(_)))
}

fn refresh(
    inner: &Inner,
    account: &IopAccount,
    scenario: &Scenario,
    issued: &[(String, String)],
    refresh_token: Option<String>,
) -> Response {
    // Single use, as the gateway's newer apps (and Shopee, Lazada, TikTok) behave: only the
    // newest refresh token is valid; a spent one is refused. Checked and rotated atomically.
    let issue = |app: &mut App| {
        let current = app
            .issued
            .last()
            .map_or(app.account.refresh_token.as_str(), |(_, r)| r.as_str());
        if *scenario == Scenario::IllegalRefreshToken || refresh_token.as_deref() != Some(current) {
            return None;
        }
        let n = app.issued.len() + 1;
        let pair = (
            format!("CANARY-iop-access-{}-{n}", account.app_key),
            format!("CANARY-iop-refresh-{}-{n}", account.app_key),
        );
        app.issued.push(pair.clone());
        Some(pair)
    };
    let Some(rotated) = inner.apps.update(&account.app_key, issue) else {
        return error(false, "InvalidAppKey", "the app key is not known");
    };
    let Some((access, refresh)) = rotated else {
        if refresh_token
            .is_some_and(|t| issued.iter().any(|(_, r)| *r == t) || t == account.refresh_token)
        {
            inner
                .spent
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        return error(
            false,
            "IllegalRefreshToken",
            "The specified refresh token is invalid or expired",
        );
    };
    let seller = match scenario {
        Scenario::SellerMismatch(other) => other.clone(),
        _ => account.seller_id.clone(),
    };
    let refresh_secs: i64 = match scenario {
        Scenario::ExpiringInDays(d) => d * 86_400,
        _ => 180 * 86_400,
    };
    let now_ms = chrono::Utc::now().timestamp_millis();
    let mut body = json!({
        "code": "0",
        "access_token": access,
        "refresh_token": refresh,
        "expires_in": 86_400,
        "refresh_expires_in": refresh_secs,
        "account": "seller@example.com",
        "account_platform": "seller_center",
        "request_id": "0ba2887315178178017221015",
    });
    match inner.kind {
        IopKind::Alibaba => {
            body["user_info"] =
                json!({"seller_id": seller, "user_id": "7000001", "loginId": "seller01"});
        }
        IopKind::Lazada => {
            body["country"] = json!("sg");
            body["country_user_info"] = json!([{"country": "sg", "seller_id": seller, "user_id": "7000001", "short_code": "SG1015W"}]);
        }
        IopKind::Aliexpress => {
            body["expire_time"] = json!(now_ms + 86_400_000);
            body["refresh_token_valid_time"] = json!(now_ms + refresh_secs * 1000);
            body["seller_id"] = json!(seller);
            body["user_id"] = json!("7000001");
        }
    }
    json(200, body)
}

async fn read(
    inner: &Inner,
    account: &IopAccount,
    scenario: &Scenario,
    issued: &[(String, String)],
    token: &str,
    sync: bool,
) -> Response {
    let from_refresh = issued.iter().any(|(a, _)| a == token);
    let initial_ok = token == account.access_token && !refuses_initial(inner.kind, scenario);
    if !(from_refresh || initial_ok) {
        return error(
            sync,
            "IllegalAccessToken",
            "The specified access token is invalid or expired",
        );
    }
    if from_refresh {
        let observer = inner
            .observer
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(observe) = observer
            && !observe(&account.app_key, token)
        {
            inner
                .violations
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(format!(
                    "app {}: a refreshed access token was used before it was durable in the vault",
                    account.app_key
                ));
        }
    }
    if let Some(r) = hostile(scenario, &inner.common).await {
        return r;
    }
    match scenario {
        Scenario::IpRestricted => error(
            sync,
            "AppWhiteIpLimit",
            "The request IP is not in the app's whitelist",
        ),
        Scenario::MissingRole if inner.kind == IopKind::Lazada => {
            error(sync, "Mp3SellerApiLimit", "Mp3 Seller not support the api")
        }
        Scenario::MissingRole => error(sync, "InvalidApiPath", "The specified API path is invalid"),
        Scenario::RateLimited => error(
            sync,
            "ApiCallLimit",
            "The request has exceeded the API call limit",
        ),
        Scenario::CompanyBlocked if inner.kind == IopKind::Lazada => json(
            200,
            json!({"code": "0", "data": {"seller_id": account.seller_id.parse::<u64>().unwrap_or(0), "name": account.store_name, "short_code": "SG1015W", "status": "INACTIVE", "cb": true, "verified": true}, "request_id": "0ba2887315178178017221019"}),
        ),
        Scenario::CompanyBlocked => {
            let wrapper = if inner.kind == IopKind::Alibaba {
                "alibaba_icbu_product_group_get_response"
            } else {
                "aliexpress_merchant_profile_get_response"
            };
            json(
                200,
                json!({ wrapper: {"result_code": "000003", "msg": "operation rights have been suspended", "request_id": "0ba2887315178178017221016"} }),
            )
        }
        _ => match inner.kind {
            IopKind::Lazada => {
                let seller = match scenario {
                    Scenario::SellerMismatch(other) => other.clone(),
                    _ => account.seller_id.clone(),
                };
                json(
                    200,
                    json!({"code": "0", "data": {"seller_id": seller.parse::<u64>().unwrap_or(0), "name": account.store_name, "name_company": "COMPANY-TAX-ID-holding", "short_code": "SG1015W", "email": "seller@example.com", "cb": true, "location": "Shenzhen", "status": "ACTIVE", "verified": true}, "request_id": "0ba2887315178178017221020"}),
                )
            }
            IopKind::Alibaba => json(
                200,
                json!({"code": "0", "result": {"group_id": -1, "children": []}, "request_id": "0ba2887315178178017221017"}),
            ),
            IopKind::Aliexpress => {
                let seller = match scenario {
                    Scenario::SellerMismatch(other) => other.clone(),
                    _ => account.seller_id.clone(),
                };
                json(
                    200,
                    json!({"aliexpress_merchant_profile_get_response": {
                        "profile": {"seller_id": seller, "store_name": account.store_name, "country": "CN"},
                        "request_id": "0ba2887315178178017221018"
                    }}),
                )
            }
        },
    }
}
