//! Fake Amazon: the LWA token endpoint (`POST /auth/o2/token`) and the Selling Partner API
//! (`GET /sellers/v1/marketplaceParticipations`) on one server; scenarios keyed by refresh token.

use super::{
    Accounts, Common, Options, Recorded, Scenario, Server, hostile, json, with_retry_after,
};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response;
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// A seller authorisation the fake knows.
#[derive(Clone)]
pub struct AmazonAccount {
    pub refresh_token: String,
    pub client_id: String,
    pub client_secret: String,
    /// Marketplace ids the seller participates in.
    pub marketplaces: Vec<String>,
    pub store_name: Option<String>,
}

#[derive(Clone)]
struct Account {
    account: AmazonAccount,
    /// Access tokens issued so far.
    issued: u32,
}

struct Inner {
    common: Common,
    accounts: Accounts<Account>,
    /// access token → (refresh token, issue number for that account, 1-based)
    tokens: RwLock<HashMap<String, (String, u32)>>,
    counter: std::sync::atomic::AtomicU64,
}

/// A running fake Amazon.
pub struct AmazonFake {
    server: Server,
    inner: Arc<Inner>,
}

impl AmazonFake {
    pub async fn start(options: Options) -> std::io::Result<AmazonFake> {
        let inner = Arc::new(Inner {
            common: Common::new(options),
            accounts: Accounts::new(),
            tokens: RwLock::new(HashMap::new()),
            counter: std::sync::atomic::AtomicU64::new(0),
        });
        let router = Router::new().fallback(handle).with_state(inner.clone());
        let server = Server::start(inner.common.options.bind, router).await?;
        Ok(AmazonFake { server, inner })
    }

    /// Base URL of the SP-API (for `[marketplace.amazon] na/eu/fe`).
    pub fn url(&self) -> url::Url {
        self.server.url()
    }

    /// The LWA token URL (for `[marketplace.amazon] token_endpoint`).
    pub fn token_url(&self) -> url::Url {
        self.server
            .url()
            .join("/auth/o2/token")
            .expect("valid path")
    }

    pub fn add_account(&self, account: AmazonAccount, scenario: Scenario) {
        let key = account.refresh_token.clone();
        self.inner
            .accounts
            .insert(&key, Account { account, issued: 0 }, scenario);
    }

    pub fn set_scenario(&self, refresh_token: &str, scenario: Scenario) -> bool {
        self.inner.accounts.set_scenario(refresh_token, scenario)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.inner.common.journal.all()
    }

    /// Token exchanges made with this refresh token.
    pub fn token_requests_for(&self, refresh_token: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| {
                r.path == "/auth/o2/token"
                    && r.param("refresh_token").as_deref() == Some(refresh_token)
            })
            .collect()
    }

    /// API calls made with access tokens issued for this refresh token.
    pub fn api_requests_for(&self, refresh_token: &str) -> Vec<Recorded> {
        let tokens = self.inner.tokens.read().unwrap_or_else(|e| e.into_inner());
        self.requests()
            .into_iter()
            .filter(|r| {
                r.path != "/auth/o2/token"
                    && r.header("x-amz-access-token")
                        .and_then(|t| tokens.get(t))
                        .is_some_and(|(rt, _)| rt == refresh_token)
            })
            .collect()
    }

    pub fn endless_bytes_sent(&self) -> u64 {
        self.inner.common.endless_bytes_sent()
    }
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
    if rec.path == "/auth/o2/token" {
        token(&inner, rec, method)
    } else {
        api(&inner, rec, method).await
    }
}

fn lwa_error(status: u16, error: &str, description: &str) -> Response {
    json(
        status,
        json!({"error": error, "error_description": description}),
    )
}

fn token(inner: &Inner, mut rec: Recorded, method: Method) -> Response {
    if method != Method::POST {
        rec.problem(format!("{method} instead of POST"));
    }
    rec.check_content_type("application/x-www-form-urlencoded");
    let form = rec.form();
    let mut names: Vec<&str> = form.iter().map(|(k, _)| k.as_str()).collect();
    names.sort_unstable();
    if names != ["client_id", "client_secret", "grant_type", "refresh_token"] {
        rec.problem(format!("form fields are {names:?}"));
    }
    if rec.param("grant_type").as_deref() != Some("refresh_token") {
        rec.problem("grant_type is not refresh_token");
    }
    if !rec.query.is_empty() {
        rec.problem("credentials or parameters in the query string");
    }
    let refresh = rec.param("refresh_token").unwrap_or_default();
    let client_id = rec.param("client_id").unwrap_or_default();
    let client_secret = rec.param("client_secret").unwrap_or_default();
    inner.common.journal.push(rec);

    let Some((acct, scenario)) = inner.accounts.get(&refresh) else {
        return lwa_error(
            400,
            "invalid_grant",
            "The request has an invalid grant parameter : refresh_token",
        );
    };
    match scenario {
        Scenario::InvalidGrant => {
            return lwa_error(
                400,
                "invalid_grant",
                "The request has an invalid grant parameter : refresh_token",
            );
        }
        Scenario::InvalidClient => {
            return lwa_error(401, "invalid_client", "Client authentication failed");
        }
        _ => {}
    }
    if acct.account.client_id != client_id || acct.account.client_secret != client_secret {
        return lwa_error(401, "invalid_client", "Client authentication failed");
    }
    let issued = inner
        .accounts
        .update(&refresh, |a| {
            a.issued += 1;
            a.issued
        })
        .unwrap_or(1);
    let n = inner
        .counter
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let access = format!("Atza|CANARY-amz-access-{n}");
    inner
        .tokens
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .insert(access.clone(), (refresh.clone(), issued));
    json(
        200,
        json!({"access_token": access, "token_type": "bearer", "expires_in": 3600, "refresh_token": refresh}),
    )
}

fn sp_error(status: u16, code: &str, message: &str, details: &str) -> Response {
    json(
        status,
        json!({"errors": [{"code": code, "message": message, "details": details}]}),
    )
}

async fn api(inner: &Inner, mut rec: Recorded, method: Method) -> Response {
    if method != Method::GET {
        rec.problem(format!("{method} instead of GET"));
    }
    if rec.path != "/sellers/v1/marketplaceParticipations" {
        let p = format!("unknown path {}", rec.path);
        rec.problem(p);
    }
    if !rec
        .header("user-agent")
        .is_some_and(|u| u.starts_with("storeguard/") && u.ends_with("(Language=Rust)"))
    {
        rec.problem("user-agent is not storeguard/<version> (Language=Rust)");
    }
    let date_ok = rec.header("x-amz-date").is_some_and(|d| {
        d.len() == 16
            && d.as_bytes()[8] == b'T'
            && d.ends_with('Z')
            && d[..8].bytes().all(|b| b.is_ascii_digit())
            && d[9..15].bytes().all(|b| b.is_ascii_digit())
    });
    if !date_ok {
        rec.problem("x-amz-date missing or not YYYYMMDDTHHMMSSZ");
    }
    if rec.header("authorization").is_some() {
        rec.problem("an Authorization header was sent (SigV4 is not used)");
    }
    let token = rec.header("x-amz-access-token").map(str::to_string);
    if token.is_none() {
        rec.problem("x-amz-access-token missing");
    }
    inner.common.journal.push(rec);

    let issued = token.and_then(|t| {
        inner
            .tokens
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&t)
            .cloned()
    });
    let Some((refresh, n)) = issued else {
        return sp_error(
            403,
            "Unauthorized",
            "Access to requested resource is denied.",
            "The access token you provided is revoked, malformed or invalid.",
        );
    };
    let Some((Account { account, .. }, scenario)) = inner.accounts.get(&refresh) else {
        return sp_error(
            403,
            "Unauthorized",
            "Access to requested resource is denied.",
            "",
        );
    };
    if let Some(r) = hostile(&scenario, &inner.common).await {
        return r;
    }
    match scenario {
        Scenario::ExpiredAccessToken if n == 1 => sp_error(
            403,
            "Unauthorized",
            "Access to requested resource is denied.",
            "The access token you provided has expired.",
        ),
        Scenario::MissingRole => sp_error(
            403,
            "Unauthorized",
            "Access to requested resource is denied.",
            "",
        ),
        Scenario::RateLimited => with_retry_after(sp_error(
            429,
            "QuotaExceeded",
            "You exceeded your quota for the requested resource.",
            "",
        )),
        _ => {
            let payload: Vec<serde_json::Value> = account
                .marketplaces
                .iter()
                .map(|id| {
                    json!({
                        "marketplace": {"id": id, "name": "Amazon.com", "countryCode": "US",
                            "defaultCurrencyCode": "USD", "defaultLanguageCode": "en_US",
                            "domainName": "www.amazon.com"},
                        "participation": {"isParticipating": true, "hasSuspendedListings": false},
                        "storeName": account.store_name,
                    })
                })
                .collect();
            json(200, json!({ "payload": payload }))
        }
    }
}
