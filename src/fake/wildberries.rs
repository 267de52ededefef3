//! Fake Wildberries API (common-api host): `GET /api/v1/seller-info` with a bearer JWT,
//! scenarios keyed by the token. `/ping` is answered as Wildberries does for automated use:
//! blocked, and recorded as a problem.

use super::{Accounts, Common, Options, Recorded, Scenario, Server, hostile, json};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response;
use base64::Engine as _;
use serde_json::json;
use std::sync::Arc;

struct Inner {
    common: Common,
    /// Seller sid → its valid token.
    accounts: Accounts<String>,
}

/// A running fake Wildberries.
pub struct WildberriesFake {
    server: Server,
    inner: Arc<Inner>,
}

/// A token shaped as Wildberries issues them: a JWT whose payload names the seller (`sid`),
/// its expiry (`exp`, unix seconds) and its categories (`s`); `signature` is opaque.
pub fn token(sid: &str, exp: i64, signature: &str) -> String {
    let enc = |v: serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string().as_bytes())
    };
    format!(
        "{}.{}.{signature}",
        enc(json!({"alg": "ES256", "kid": "20250101v1", "typ": "JWT"})),
        // Content, marketplace and statistics (bits 1, 4, 5).
        enc(
            json!({"ent": 1, "exp": exp, "id": "0190f1c2", "iid": 1, "oid": 4200001, "s": 50, "sid": sid, "t": false, "uid": 1})
        )
    )
}

impl WildberriesFake {
    pub async fn start(options: Options) -> std::io::Result<WildberriesFake> {
        let inner = Arc::new(Inner {
            common: Common::new(options),
            accounts: Accounts::new(),
        });
        let router = Router::new().fallback(handle).with_state(inner.clone());
        let server = Server::start(inner.common.options.bind, router).await?;
        Ok(WildberriesFake { server, inner })
    }

    /// The base URL for `[marketplace.wildberries] endpoint`.
    pub fn url(&self) -> url::Url {
        self.server.url()
    }

    /// Registers a seller and its valid token.
    pub fn add_account(&self, sid: &str, token: &str, scenario: Scenario) {
        self.inner.accounts.insert(sid, token.to_string(), scenario);
    }

    /// Changes a seller's scenario while running; false when the seller is unknown.
    pub fn set_scenario(&self, sid: &str, scenario: Scenario) -> bool {
        self.inner.accounts.set_scenario(sid, scenario)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.inner.common.journal.all()
    }

    pub fn clear_requests(&self) {
        self.inner.common.journal.clear();
    }
}

fn problem(status: u16, title: &str, detail: &str) -> Response {
    let mut r = json(
        status,
        json!({"title": title, "detail": detail, "code": "", "requestId": "a1b2c3", "origin": "s2s-api-auth-catalog", "status": status, "statusText": title}),
    );
    r.headers_mut().insert(
        "content-type",
        axum::http::HeaderValue::from_static("application/problem+json"),
    );
    r
}

fn sid_of(token: &str) -> Option<String> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    v["sid"].as_str().map(str::to_string)
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
    if path == "/ping" {
        rec.problem("/ping was called: Wildberries blocks it when automated");
        inner.common.journal.push(rec);
        return problem(429, "too many requests", "ping is not for automated use");
    }
    if method != Method::GET {
        rec.problem(format!("{method} instead of GET"));
    }
    if path != "/api/v1/seller-info" {
        rec.problem(format!("unknown path {path}"));
    }
    if !body.is_empty() {
        rec.problem("a GET with a body");
    }
    let auth = rec.header("authorization").map(str::to_string);
    let token = match auth.as_deref().and_then(|a| a.strip_prefix("Bearer ")) {
        Some(t) => Some(t.to_string()),
        None => {
            rec.problem("Authorization is not `Bearer <token>`");
            auth.clone()
        }
    };
    // The token names its seller in its public payload, as Wildberries' do.
    let sid = token.as_deref().and_then(sid_of);
    let account = sid.as_ref().and_then(|s| inner.accounts.get(s));
    inner.common.journal.push(rec);

    let Some(token) = token else {
        return problem(401, "unauthorized", "empty Authorization header");
    };
    if token.split('.').count() != 3 {
        return problem(
            401,
            "unauthorized",
            "token problem; token is malformed: token contains an invalid number of segments",
        );
    }
    let (Some(sid), Some((valid, scenario))) = (sid, account) else {
        return problem(401, "unauthorized", "token is invalid");
    };
    if valid != token {
        return problem(
            401,
            "unauthorized",
            "token problem; token is malformed: could not verify signature",
        );
    }
    if let Some(r) = hostile(&scenario, &inner.common).await {
        return r;
    }
    match scenario {
        Scenario::WrongKey => problem(401, "unauthorized", "token is invalid"),
        Scenario::DeactivatedKey => problem(401, "unauthorized", "token expired"),
        Scenario::MissingRole => problem(401, "unauthorized", "token scope not allowed"),
        Scenario::RateLimited => {
            let mut r = problem(429, "too many requests", "limited by 3f2d1c0b");
            r.headers_mut().insert(
                "x-ratelimit-retry",
                axum::http::HeaderValue::from_static("7"),
            );
            r.headers_mut().insert(
                "x-ratelimit-remaining",
                axum::http::HeaderValue::from_static("0"),
            );
            r
        }
        Scenario::SellerMismatch(other) => json(
            200,
            json!({"name": "ИП Другой", "sid": other, "tradeMark": "Other Store"}),
        ),
        _ => json(
            200,
            json!({"name": "ИП Кружинин В. Р.", "sid": sid, "tradeMark": "Flax Store", "tin": "COMPANY-TAX-ID-7700000001"}),
        ),
    }
}
