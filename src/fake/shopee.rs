//! Fake Shopee Open Platform v2: `GET /api/v2/shop/get_shop_info` (Shop API signature) and
//! `POST /api/v2/auth/access_token/get` (Public API signature). Signatures and timestamps are
//! checked; refresh tokens are single-use (a spent one is refused); scenarios are keyed by
//! shop id.

use super::{Accounts, Common, Options, Recorded, Scenario, Server, hostile, json};
use crate::marketplace::shopee::sign;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response;
use serde_json::json;
use std::sync::Arc;

/// A shop authorisation the fake knows.
#[derive(Clone)]
pub struct ShopeeAccount {
    pub partner_id: String,
    pub partner_key: String,
    pub shop_id: String,
    /// The tokens the vault starts with.
    pub access_token: String,
    pub refresh_token: String,
    pub shop_name: String,
}

#[derive(Clone)]
struct Shop {
    account: ShopeeAccount,
    /// (access, refresh) pairs issued by refreshes, oldest first.
    issued: Vec<(String, String)>,
    /// Access tokens issued before this position are refused (as expired).
    valid_from: usize,
}

struct Inner {
    common: Common,
    shops: Accounts<Shop>,
    /// `expire_in` of the access tokens a refresh issues (Shopee's: 4 hours).
    access_lifetime: std::sync::atomic::AtomicI64,
}

/// A running fake Shopee.
pub struct ShopeeFake {
    server: Server,
    inner: Arc<Inner>,
}

const SHOP_INFO: &str = "/api/v2/shop/get_shop_info";
const TOKEN_GET: &str = "/api/v2/auth/access_token/get";

impl ShopeeFake {
    pub async fn start(options: Options) -> std::io::Result<ShopeeFake> {
        let inner = Arc::new(Inner {
            common: Common::new(options),
            shops: Accounts::new(),
            access_lifetime: std::sync::atomic::AtomicI64::new(14_400),
        });
        let router = Router::new().fallback(handle).with_state(inner.clone());
        let server = Server::start(inner.common.options.bind, router).await?;
        Ok(ShopeeFake { server, inner })
    }

    /// The base URL for `[marketplace.shopee] endpoint`.
    pub fn url(&self) -> url::Url {
        self.server.url()
    }

    pub fn add_account(&self, account: ShopeeAccount, scenario: Scenario) {
        let key = account.shop_id.clone();
        self.inner.shops.insert(
            &key,
            Shop {
                account,
                issued: Vec::new(),
                valid_from: 0,
            },
            scenario,
        );
    }

    pub fn set_scenario(&self, shop_id: &str, scenario: Scenario) -> bool {
        self.inner.shops.set_scenario(shop_id, scenario)
    }

    /// Refuses every access token issued to the shop so far (they expired early): the next
    /// check must refresh.
    pub fn expire_access_tokens(&self, shop_id: &str) {
        self.inner.shops.update(shop_id, |s| {
            s.valid_from = s.issued.len();
            Some(())
        });
    }

    /// Issues access tokens that live `seconds` from now on (a short life makes every check
    /// refresh, spending each single-use refresh token in turn).
    pub fn set_access_lifetime(&self, seconds: i64) {
        self.inner
            .access_lifetime
            .store(seconds, std::sync::atomic::Ordering::Relaxed);
    }

    /// The (access, refresh) pairs issued to a shop so far, oldest first.
    pub fn issued(&self, shop_id: &str) -> Vec<(String, String)> {
        self.inner
            .shops
            .get(shop_id)
            .map(|(s, _)| s.issued)
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
    pub fn reauthorise(&self, shop_id: &str) -> bool {
        self.inner
            .shops
            .update(shop_id, |a| a.issued.clear())
            .is_some()
    }
}

fn error(error: &str, message: &str) -> Response {
    json(
        200,
        json!({"error": error, "message": message, "request_id": "e3e3e7f33a0d4a4ea8fdf1c7b0b7c2a1"}),
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
    let q = |k: &str| {
        url::form_urlencoded::parse(rec.query.as_bytes())
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.into_owned())
    };
    let (partner_id, ts, sign_given) = (q("partner_id"), q("timestamp"), q("sign"));
    let access = q("access_token");
    let body_json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let shop_id = match path.as_str() {
        SHOP_INFO => q("shop_id"),
        TOKEN_GET => body_json["shop_id"].as_i64().map(|n| n.to_string()),
        _ => None,
    };
    match (&method, path.as_str()) {
        (&Method::GET, SHOP_INFO) => {
            if !body.is_empty() {
                rec.problem("a GET with a body");
            }
        }
        (&Method::POST, TOKEN_GET) => {
            rec.check_content_type("application/json");
            if body_json["refresh_token"].as_str().is_none()
                || body_json["partner_id"].as_i64().is_none()
            {
                rec.problem("refresh_token, partner_id (a number) or shop_id missing in the body");
            }
        }
        _ => rec.problem(format!("unknown call {method} {path}")),
    }
    let now = chrono::Utc::now().timestamp();
    if ts
        .as_deref()
        .and_then(|t| t.parse::<i64>().ok())
        .is_none_or(|t| (now - t).abs() > 300)
    {
        rec.problem("timestamp missing or more than 5 minutes off");
    }
    let shop = shop_id.as_deref().and_then(|s| inner.shops.get(s));
    let mut signature_ok = false;
    if let (Some((s, _)), Some(pid), Some(ts)) = (&shop, &partner_id, &ts) {
        let want = if path == SHOP_INFO {
            sign(
                s.account.partner_key.as_bytes(),
                &[
                    pid,
                    &path,
                    ts,
                    access.as_deref().unwrap_or(""),
                    shop_id.as_deref().unwrap_or(""),
                ],
            )
        } else {
            sign(s.account.partner_key.as_bytes(), &[pid, &path, ts])
        };
        signature_ok = sign_given.as_deref() == Some(want.as_str()) && *pid == s.account.partner_id;
    }
    inner.common.journal.push(rec);

    let Some((shop, scenario)) = shop else {
        return error("error_shop", "shopid is invalid");
    };
    if !signature_ok {
        return error("error_sign", "Wrong sign.");
    }
    if path == TOKEN_GET {
        return refresh(
            &inner,
            &shop,
            &scenario,
            body_json["refresh_token"].as_str(),
        );
    }
    let token = access.unwrap_or_default();
    let from_refresh = shop
        .issued
        .iter()
        .skip(shop.valid_from)
        .any(|(a, _)| *a == token);
    let initial_ok = token == shop.account.access_token
        && !matches!(
            scenario,
            Scenario::IllegalAccessTokenThenRefresh | Scenario::IllegalRefreshToken
        );
    if !(from_refresh || initial_ok) {
        return error("invalid_acceess_token", "Invalid access_token.");
    }
    if let Some(r) = hostile(&scenario, &inner.common).await {
        return r;
    }
    let days = |d: i64| (chrono::Utc::now() + chrono::Duration::days(d)).timestamp();
    let info = |status: &str, expire: i64| {
        json(
            200,
            json!({
                "error": "", "message": "", "request_id": "b1b2b3",
                "auth_time": days(-30), "expire_time": expire,
                "shop_name": shop.account.shop_name, "region": "MY", "status": status,
                "is_cb": true, "merchant_id": null, "is_sip": false
            }),
        )
    };
    match scenario {
        Scenario::DeactivatedKey => {
            error("shop_access_expired", "Your access to shop has expired.")
        }
        Scenario::MissingRole => error("error_auth", "No permission to current api."),
        Scenario::CompanyBlocked => error(
            "shop_banned",
            "The shop account has been banned. Permissions for shop authorization and API calls have been suspended.",
        ),
        Scenario::DisabledByInactivity => info("FROZEN", days(300)),
        Scenario::RateLimited => error("error_server", "Too many requests, please try again later"),
        Scenario::ExpiringInDays(d) => info("NORMAL", days(d)),
        _ => info("NORMAL", days(300)),
    }
}

fn refresh(
    inner: &Inner,
    shop: &Shop,
    scenario: &Scenario,
    refresh_token: Option<&str>,
) -> Response {
    // Single use: only the newest refresh token is valid.
    let issue = |s: &mut Shop| {
        let current = s
            .issued
            .last()
            .map_or(s.account.refresh_token.as_str(), |(_, r)| r.as_str());
        if *scenario == Scenario::IllegalRefreshToken || refresh_token != Some(current) {
            return None;
        }
        let n = s.issued.len() + 1;
        let pair = (
            format!("CANARY-shopee-access-{}-{n}", s.account.shop_id),
            format!("CANARY-shopee-refresh-{}-{n}", s.account.shop_id),
        );
        s.issued.push(pair.clone());
        Some(pair)
    };
    match inner.shops.update(&shop.account.shop_id, issue).flatten() {
        Some((access, refresh)) => json(
            200,
            json!({
                "error": "", "message": "", "request_id": "c1c2c3",
                "access_token": access, "refresh_token": refresh,
                "expire_in": inner.access_lifetime.load(std::sync::atomic::Ordering::Relaxed),
                "partner_id": shop.account.partner_id.parse::<i64>().unwrap_or(0),
                "shop_id": shop.account.shop_id.parse::<i64>().unwrap_or(0)
            }),
        ),
        None => error("error_auth", "Invalid refresh_token."),
    }
}
