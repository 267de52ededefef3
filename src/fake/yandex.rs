//! Fake Yandex Market Partner API: `GET /v2/campaigns` and `POST /v2/auth/token` with the
//! `Api-Key` header, scenarios keyed by the key.

use super::{
    Accounts, Common, Options, Recorded, Scenario, Server, hostile, json, with_retry_after,
};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response;
use serde_json::json;
use std::sync::Arc;

struct Inner {
    common: Common,
    /// Api-Key → (business id, business name).
    accounts: Accounts<(String, String)>,
}

/// A running fake Yandex Market.
pub struct YandexFake {
    server: Server,
    inner: Arc<Inner>,
}

impl YandexFake {
    pub async fn start(options: Options) -> std::io::Result<YandexFake> {
        let inner = Arc::new(Inner {
            common: Common::new(options),
            accounts: Accounts::new(),
        });
        let router = Router::new().fallback(handle).with_state(inner.clone());
        let server = Server::start(inner.common.options.bind, router).await?;
        Ok(YandexFake { server, inner })
    }

    /// The base URL for `[marketplace.yandex_market] endpoint`.
    pub fn url(&self) -> url::Url {
        self.server.url()
    }

    /// Registers an Api-Key and the business (cabinet) it belongs to.
    pub fn add_account(&self, api_key: &str, business_id: &str, name: &str, scenario: Scenario) {
        self.inner.accounts.insert(
            api_key,
            (business_id.to_string(), name.to_string()),
            scenario,
        );
    }

    /// Changes a key's scenario while running; false when the key is unknown.
    pub fn set_scenario(&self, api_key: &str, scenario: Scenario) -> bool {
        self.inner.accounts.set_scenario(api_key, scenario)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.inner.common.journal.all()
    }

    pub fn clear_requests(&self) {
        self.inner.common.journal.clear();
    }
}

fn error(status: u16, code: &str, message: &str) -> Response {
    json(
        status,
        json!({"status": "ERROR", "errors": [{"code": code, "message": message}]}),
    )
}

fn campaign(
    id: u64,
    business: &str,
    name: &str,
    placement: &str,
    availability: &str,
) -> serde_json::Value {
    json!({
        "domain": format!("{id}.example"),
        "id": id,
        "clientId": 0,
        "business": {"id": business.parse::<u64>().unwrap_or(0), "name": name},
        "placementType": placement,
        "apiAvailability": availability
    })
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
    let token_info = path == "/v2/auth/token";
    match (&method, path.as_str()) {
        (&Method::GET, "/v2/campaigns") | (&Method::POST, "/v2/auth/token") => {}
        _ => rec.problem(format!("unknown call {method} {path}")),
    }
    if rec.header("authorization").is_some() {
        rec.problem("an Authorization header besides Api-Key");
    }
    let key = rec.header("api-key").map(str::to_string);
    if key.as_deref().is_some_and(|k| k.starts_with("Bearer ")) {
        rec.problem("Api-Key sent with a Bearer prefix");
    }
    let account = key.as_ref().and_then(|k| inner.accounts.get(k));
    inner.common.journal.push(rec);

    let Some(key) = key else {
        return error(401, "UNAUTHORIZED", "Credentials are not specified");
    };
    if key.starts_with("Bearer ") {
        return error(401, "UNAUTHORIZED", "Api-Key token prefix invalid");
    }
    let Some(((business, name), scenario)) = account else {
        return error(401, "UNAUTHORIZED", "Api-Key token is invalid");
    };
    if token_info {
        return json(
            200,
            json!({"status": "OK", "result": {"apiKey": {"name": "storeguard", "authScopes": ["ALL_METHODS_READ_ONLY"]}}}),
        );
    }
    if let Some(r) = hostile(&scenario, &inner.common).await {
        return r;
    }
    match scenario {
        Scenario::WrongKey => error(401, "UNAUTHORIZED", "Api-Key token is invalid"),
        Scenario::DeactivatedKey => error(401, "UNAUTHORIZED", "Api-Key token is revoked"),
        Scenario::MissingRole => error(
            403,
            "FORBIDDEN",
            "Token does not have any of the scopes to access the API method",
        ),
        Scenario::CompanyBlocked => error(
            403,
            "FORBIDDEN",
            &format!("Restrict access for business '{business}' because it is not active"),
        ),
        Scenario::RateLimited => with_retry_after(error(
            420,
            "HIT_RATE_LIMIT",
            "Hit rate limit of 4 parallel requests for campaignId 21000001",
        )),
        Scenario::SellerMismatch(other) => json(
            200,
            json!({"campaigns": [campaign(21_900_001, &other, "Other Business", "FBS", "AVAILABLE")], "pager": {"total": 1}}),
        ),
        Scenario::DisabledByInactivity => json(
            200,
            json!({"campaigns": [
                campaign(21_000_001, &business, &name, "FBS", "AVAILABLE"),
                campaign(21_000_002, &business, &name, "DBS", "DISABLED_BY_INACTIVITY")
            ], "pager": {"total": 2}}),
        ),
        _ => json(
            200,
            json!({"campaigns": [
                campaign(21_000_001, &business, &name, "FBS", "AVAILABLE"),
                campaign(21_000_002, &business, &name, "DBS", "AVAILABLE")
            ], "pager": {"total": 2}}),
        ),
    }
}
