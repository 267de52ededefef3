//! Fake TikTok Shop Partner API: `GET /authorization/202309/shops` (signed, with
//! `x-tts-access-token`) and the auth host's `GET /api/v2/token/refresh`. Signatures and the
//! timestamp window (5 minutes before, 30 seconds after) are checked; refresh tokens are taken
//! as single-use (the contract does not say; storeguard must cope either way). Scenarios are
//! keyed by app key.

use super::{Accounts, Common, Options, Recorded, Scenario, Server, hostile, json};
use crate::marketplace::tiktok::sign;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response;
use serde_json::json;
use std::sync::Arc;

/// An app authorisation the fake knows.
#[derive(Clone)]
pub struct TiktokAccount {
    pub app_key: String,
    pub app_secret: String,
    pub shop_id: String,
    pub access_token: String,
    pub refresh_token: String,
    pub shop_name: String,
}

#[derive(Clone)]
struct App {
    account: TiktokAccount,
    issued: Vec<(String, String)>,
}

struct Inner {
    common: Common,
    apps: Accounts<App>,
}

/// A running fake TikTok Shop (API and auth host on one server).
pub struct TiktokFake {
    server: Server,
    inner: Arc<Inner>,
}

const SHOPS: &str = "/authorization/202309/shops";
const REFRESH: &str = "/api/v2/token/refresh";

impl TiktokFake {
    pub async fn start(options: Options) -> std::io::Result<TiktokFake> {
        let inner = Arc::new(Inner {
            common: Common::new(options),
            apps: Accounts::new(),
        });
        let router = Router::new().fallback(handle).with_state(inner.clone());
        let server = Server::start(inner.common.options.bind, router).await?;
        Ok(TiktokFake { server, inner })
    }

    /// The base URL for `[marketplace.tiktok_shop] endpoint` and `auth_endpoint`.
    pub fn url(&self) -> url::Url {
        self.server.url()
    }

    pub fn add_account(&self, account: TiktokAccount, scenario: Scenario) {
        let key = account.app_key.clone();
        self.inner.apps.insert(
            &key,
            App {
                account,
                issued: Vec::new(),
            },
            scenario,
        );
    }

    pub fn set_scenario(&self, app_key: &str, scenario: Scenario) -> bool {
        self.inner.apps.set_scenario(app_key, scenario)
    }

    /// The (access, refresh) pairs issued to an app so far, oldest first.
    pub fn issued(&self, app_key: &str) -> Vec<(String, String)> {
        self.inner
            .apps
            .get(app_key)
            .map(|(a, _)| a.issued)
            .unwrap_or_default()
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.inner.common.journal.all()
    }

    pub fn clear_requests(&self) {
        self.inner.common.journal.clear();
    }

    /// Waits until a request matching `pred` has arrived.
    pub async fn wait_for_request(&self, pred: impl Fn(&Recorded) -> bool) {
        self.inner.common.journal.wait_until(pred).await
    }

    /// The seller authorised the app again: the initial tokens are valid again and every
    /// issued pair is forgotten.
    pub fn reauthorise(&self, app_key: &str) -> bool {
        self.inner
            .apps
            .update(app_key, |a| a.issued.clear())
            .is_some()
    }
}

fn error(status: u16, code: i64, message: &str) -> Response {
    json(
        status,
        json!({"code": code, "message": message, "request_id": "202312011200000102"}),
    )
}

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
    let path = rec.path.clone();
    let params: Vec<(String, String)> = url::form_urlencoded::parse(rec.query.as_bytes())
        .into_owned()
        .collect();
    let q = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    if method != Method::GET {
        rec.problem(format!("{method} instead of GET"));
    }
    let app_key = q("app_key").unwrap_or_default();
    let app = inner.apps.get(&app_key);
    if path == REFRESH {
        if q("grant_type").as_deref() != Some("refresh_token") {
            rec.problem("grant_type is not refresh_token");
        }
        inner.common.journal.push(rec);
        let Some((app, scenario)) = app else {
            return error(200, 36009004, "Invalid credentials. Invalid app_key.");
        };
        if q("app_secret").as_deref() != Some(app.account.app_secret.as_str()) {
            return error(200, 36009004, "Invalid credentials. Invalid app_secret.");
        }
        return refresh(&inner, &app, &scenario, q("refresh_token"));
    }
    if path != SHOPS {
        rec.problem(format!("unknown path {path}"));
    }
    if rec.header("content-type") != Some("application/json") {
        rec.problem("content-type is not application/json");
    }
    if q("access_token").is_some() {
        rec.problem("the access token was sent in the query");
    }
    let now = chrono::Utc::now().timestamp();
    if q("timestamp")
        .and_then(|t| t.parse::<i64>().ok())
        .is_none_or(|t| t > now + 30 || t < now - 300)
    {
        rec.problem("timestamp outside 5 minutes before / 30 seconds after");
    }
    let token = rec.header("x-tts-access-token").map(str::to_string);
    let signature_ok = app.as_ref().is_some_and(|(a, _)| {
        let pairs: Vec<(&str, &str)> = params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let want = sign(a.account.app_secret.as_bytes(), &path, &pairs, &body);
        q("sign").as_deref() == Some(want.as_str())
    });
    inner.common.journal.push(rec);

    let Some((app, scenario)) = app else {
        return error(401, 36009004, "Invalid credentials. Invalid app_key.");
    };
    if !signature_ok {
        return error(
            401,
            106001,
            "Invalid credentials. The sign query parameter is invalid.",
        );
    }
    let token = token.unwrap_or_default();
    let from_refresh = app.issued.iter().any(|(a, _)| *a == token);
    let initial_ok = token == app.account.access_token
        && !matches!(
            scenario,
            Scenario::IllegalAccessTokenThenRefresh | Scenario::IllegalRefreshToken
        );
    if !(from_refresh || initial_ok) {
        return error(
            401,
            105002,
            "Expired credentials. The access_token or x-tts-access-token header has expired.",
        );
    }
    if let Some(r) = hostile(&scenario, &inner.common).await {
        return r;
    }
    let shop = |id: &str| json!({"id": id, "name": app.account.shop_name, "region": "GB", "seller_type": "CROSS_BORDER", "cipher": "GCP_XF90igAAAABh00qsWgtvOiGFNqyubMt3", "code": "CNGBCBA4LLU8"});
    match scenario {
        Scenario::MissingRole => error(
            403,
            105005,
            "Access denied. the access scopes granted for the app or the access token do not contain the required access scope",
        ),
        Scenario::IpRestricted => error(
            403,
            36009033,
            "Access denied. Your IP address is not in the IP allow list configured for this app.",
        ),
        Scenario::RateLimited => {
            let mut r = error(429, 36009002, "Too many requests. Please try again later.");
            r.headers_mut()
                .insert("retry-after", axum::http::HeaderValue::from_static("7"));
            r
        }
        Scenario::CompanyBlocked => json(
            200,
            json!({"code": 0, "message": "Success", "request_id": "r", "data": {"shops": []}}),
        ),
        Scenario::SellerMismatch(other) => json(
            200,
            json!({"code": 0, "message": "Success", "request_id": "r", "data": {"shops": [shop(&other)]}}),
        ),
        _ => json(
            200,
            json!({"code": 0, "message": "Success", "request_id": "r", "data": {"shops": [shop(&app.account.shop_id)]}}),
        ),
    }
}

fn refresh(inner: &Inner, app: &App, scenario: &Scenario, token: Option<String>) -> Response {
    let issue = |a: &mut App| {
        let current = a
            .issued
            .last()
            .map_or(a.account.refresh_token.as_str(), |(_, r)| r.as_str());
        if *scenario == Scenario::IllegalRefreshToken || token.as_deref() != Some(current) {
            return None;
        }
        let n = a.issued.len() + 1;
        let pair = (
            format!("CANARY-tts-access-{}-{n}", a.account.app_key),
            format!("CANARY-tts-refresh-{}-{n}", a.account.app_key),
        );
        a.issued.push(pair.clone());
        Some(pair)
    };
    let days = match scenario {
        Scenario::ExpiringInDays(d) => *d,
        _ => 180,
    };
    let now = chrono::Utc::now();
    match inner.apps.update(&app.account.app_key, issue).flatten() {
        Some((access, refresh)) => json(
            200,
            json!({"code": 0, "message": "success", "request_id": "r", "data": {
                "access_token": access,
                "access_token_expire_in": (now + chrono::Duration::days(7)).timestamp(),
                "refresh_token": refresh,
                "refresh_token_expire_in": (now + chrono::Duration::days(days)).timestamp(),
                "open_id": "7010736057180325637",
                "seller_name": app.account.shop_name,
                "seller_base_region": "GB",
                "user_type": 0,
                "granted_scopes": ["seller.authorization.info"]
            }}),
        ),
        None => error(200, 36004005, "can not find related auth record"),
    }
}
