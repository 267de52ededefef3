//! Fake Ozon Seller API: `POST /v1/roles` and `POST /v1/seller/info`, scenarios keyed by
//! Client-Id.

use super::{
    Accounts, Common, Options, Recorded, Scenario, Server, hostile, json, with_retry_after,
};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response;
use chrono::Utc;
use serde_json::json;
use std::sync::Arc;

struct Inner {
    common: Common,
    /// Client-Id → its valid Api-Key.
    accounts: Accounts<String>,
}

/// A running fake Ozon.
pub struct OzonFake {
    server: Server,
    inner: Arc<Inner>,
}

impl OzonFake {
    pub async fn start(options: Options) -> std::io::Result<OzonFake> {
        let inner = Arc::new(Inner {
            common: Common::new(options),
            accounts: Accounts::new(),
        });
        let router = Router::new().fallback(handle).with_state(inner.clone());
        let server = Server::start(inner.common.options.bind, router).await?;
        Ok(OzonFake { server, inner })
    }

    /// The base URL for `[marketplace.ozon] endpoint`.
    pub fn url(&self) -> url::Url {
        self.server.url()
    }

    /// Registers a seller account (Client-Id and its valid Api-Key).
    pub fn add_account(&self, client_id: &str, api_key: &str, scenario: Scenario) {
        self.inner
            .accounts
            .insert(client_id, api_key.to_string(), scenario);
    }

    /// Changes an account's scenario while running; false when the account is unknown.
    pub fn set_scenario(&self, client_id: &str, scenario: Scenario) -> bool {
        self.inner.accounts.set_scenario(client_id, scenario)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.inner.common.journal.all()
    }

    /// Requests that carried this Client-Id.
    pub fn requests_for(&self, client_id: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.header("client-id") == Some(client_id))
            .collect()
    }

    pub fn clear_requests(&self) {
        self.inner.common.journal.clear();
    }

    /// Bytes sent in endless bodies so far.
    pub fn endless_bytes_sent(&self) -> u64 {
        self.inner.common.endless_bytes_sent()
    }
}

fn error(status: u16, code: i64, message: &str) -> Response {
    json(
        status,
        json!({"code": code, "message": message, "details": []}),
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
    if method != Method::POST {
        rec.problem(format!("{method} instead of POST"));
    }
    if path != "/v1/roles" && path != "/v1/seller/info" {
        rec.problem(format!("unknown path {path}"));
    }
    rec.check_content_type("application/json");
    if serde_json::from_slice::<serde_json::Value>(&body).ok() != Some(json!({})) {
        rec.problem("body is not {}");
    }
    let client_id = rec.header("client-id").map(str::to_string);
    let api_key = rec.header("api-key").map(str::to_string);
    if client_id.is_none() || api_key.is_none() {
        rec.problem("Client-Id or Api-Key header missing");
    }
    let account = client_id.as_ref().and_then(|c| inner.accounts.get(c));
    inner.common.journal.push(rec);

    let (Some(client_id), Some(api_key)) = (client_id, api_key) else {
        return error(401, 16, "Client-Id and Api-Key headers are required");
    };
    if client_id.parse::<u64>().map_or(true, |n| n == 0) {
        return error(400, 3, "Client-Id header value should be positive integer");
    }
    let Some((valid_key, scenario)) = account else {
        return error(
            404,
            5,
            "Invalid Api-Key, please check the key and try again",
        );
    };
    if valid_key != api_key || scenario == Scenario::WrongKey {
        return error(
            404,
            5,
            "Invalid Api-Key, please check the key and try again",
        );
    }
    if path == "/v1/seller/info" {
        return json(
            200,
            json!({
                "company": {"name": "ООО Ромашка", "inn": "COMPANY-TAX-ID-7700000000", "ogrn": "COMPANY-OGRN-1027700000000"},
                "ratings": [{"name": "index", "value": 4.9, "status": "OK"}],
                "subscription": {"is_premium": true, "type": "PREMIUM_PLUS"}
            }),
        );
    }
    if let Some(r) = hostile(&scenario, &inner.common).await {
        return r;
    }
    let forbidden = |m: &str| error(403, 7, m);
    match scenario {
        Scenario::DeactivatedKey => {
            forbidden("Api-key is deactivated, use another one or generate a new one")
        }
        Scenario::MissingRole => forbidden("Api-Key is missing a required role for a method"),
        Scenario::IpRestricted => forbidden("Api-Key is restricted to specific IP addresses"),
        Scenario::CompanyBlocked => forbidden("Company is blocked, please contact support"),
        Scenario::OfferNotSigned => forbidden("Offer not signed"),
        Scenario::RateLimited => with_retry_after(error(
            429,
            8,
            "You have reached request rate limit per second",
        )),
        other => {
            let days = match other {
                Scenario::ExpiringInDays(d) => d,
                _ => 120,
            };
            let expires = Utc::now() + chrono::Duration::days(days);
            json(
                200,
                json!({
                    "expires_at": expires.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    "roles": [
                        {"name": "Admin", "methods": ["/v1/actions", "/v2/product/list"]},
                        {"name": "Statistics", "methods": ["/v1/analytics/data"]}
                    ]
                }),
            )
        }
    }
}
