//! Yandex Market probe: `GET /v2/campaigns` with the `Api-Key` header (no `Bearer`) on every
//! check: the business the key belongs to, its stores and whether the API is still available to
//! them; and `POST /v2/auth/token` at most once a day for the key's scopes. Api-Keys never
//! expire. Errors come as `{"status":"ERROR","errors":[{"code","message"}]}`, rate limits as 420.

use super::{
    Answer, Probe, ProbeCtx, Probed, endpoint, generic, identity, json_text, rate_limited,
    secret_header, send, unrecognised,
};
use crate::model::Marketplace;
use crate::outcome::{Finding, FindingKind, sanitize};
use chrono::{DateTime, Utc};
use serde::Deserialize;

/// The Yandex Market probe.
pub struct YandexMarket;

/// The key's scopes from `/v2/auth/token`, and when they were read.
#[derive(Clone)]
pub(crate) struct Scopes {
    fetched_at: DateTime<Utc>,
    scopes: Vec<String>,
}

#[derive(Deserialize)]
struct Campaigns {
    campaigns: Vec<Campaign>,
}

#[derive(Deserialize)]
struct Campaign {
    #[serde(default)]
    id: Option<serde_json::Value>,
    #[serde(default)]
    business: Option<Business>,
    #[serde(default, rename = "placementType")]
    placement: Option<String>,
    #[serde(default, rename = "apiAvailability")]
    availability: Option<String>,
}

#[derive(Deserialize)]
struct Business {
    #[serde(default)]
    id: Option<serde_json::Value>,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    errors: Vec<ApiError>,
}

#[derive(Deserialize)]
struct ApiError {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

#[derive(Deserialize)]
struct TokenInfo {
    result: TokenResult,
}

#[derive(Deserialize)]
struct TokenResult {
    #[serde(rename = "apiKey")]
    api_key: ApiKeyInfo,
}

#[derive(Deserialize)]
struct ApiKeyInfo {
    #[serde(default, rename = "authScopes")]
    scopes: Vec<String>,
}

impl Probe for YandexMarket {
    fn marketplace(&self) -> Marketplace {
        Marketplace::YandexMarket
    }

    async fn probe(&self, ctx: &ProbeCtx<'_>) -> Probed {
        let key = match ctx
            .secret("api_key")
            .and_then(|k| secret_header(&k, "api_key"))
        {
            Ok(k) => k,
            Err(f) => return Probed::finding(f),
        };
        let base = ctx
            .config
            .endpoints
            .get(Marketplace::YandexMarket, "endpoint");
        let req = ctx
            .client
            .get(endpoint(base, "/v2/campaigns"))
            .header("Api-Key", key.clone());
        let answer = match send(ctx.client, req, ctx.timeout()).await {
            Ok(a) => a,
            Err(f) => return Probed::finding(f),
        };
        let mut out = Probed::default();
        out.facts.http_status = Some(answer.status);
        if let Some(f) = error_in(&answer) {
            out.findings.push(f);
            return out;
        }
        if !read_campaigns(&answer, &mut out) {
            return out;
        }
        out.findings.extend(identity(
            ctx.store,
            out.facts.account.clone().as_deref(),
            "Yandex Market business id",
        ));
        out.facts.roles = scopes(ctx, key).await;
        out
    }
}

/// The error an answer carries, on its body first (an error body may come with HTTP 200).
fn error_in(answer: &Answer) -> Option<Finding> {
    let body: Option<ErrorBody> = serde_json::from_slice(&answer.body).ok();
    let is_error = body
        .as_ref()
        .is_some_and(|b| b.status.as_deref() == Some("ERROR") || !b.errors.is_empty());
    (answer.status != 200 || is_error).then(|| classify_error(answer))
}

/// Reads a `/v2/campaigns` answer into `out`: the business as the account, the stores as
/// facts, and `account_blocked` for a store the API was disabled for. False, with a
/// `protocol_error`, when it is not a campaigns answer.
pub(crate) fn read_campaigns(answer: &Answer, out: &mut Probed) -> bool {
    let Ok(c) = serde_json::from_slice::<Campaigns>(&answer.body) else {
        out.findings.push(unrecognised(answer));
        return false;
    };
    let business = c.campaigns.iter().find_map(|x| x.business.as_ref());
    out.facts.account = business
        .and_then(|b| b.id.as_ref())
        .and_then(json_text)
        .map(|s| sanitize(&s, 40));
    out.facts.store_name = business
        .and_then(|b| b.name.as_deref())
        .map(|n| sanitize(n, 120));
    let mut stores = Vec::new();
    for x in &c.campaigns {
        let id =
            x.id.as_ref()
                .and_then(json_text)
                .map_or_else(|| "?".to_string(), |s| sanitize(&s, 24));
        let placement = x.placement.as_deref().map(|p| sanitize(p, 12));
        stores.push(match placement {
            Some(p) => format!("{id} {p}"),
            None => id.clone(),
        });
        if let Some(a) = x.availability.as_deref()
            && a != "AVAILABLE"
        {
            out.findings.push(Finding::new(
                FindingKind::AccountBlocked,
                if a == "DISABLED_BY_INACTIVITY" {
                    format!(
                        "Yandex Market disabled the API for campaign {id}: no goods on display for over 90 days"
                    )
                } else {
                    format!(
                        "Yandex Market: API availability of campaign {id} is {}",
                        sanitize(a, 40)
                    )
                },
            ));
        }
    }
    stores.sort();
    out.facts.marketplaces = stores;
    true
}

/// The key's scopes, from `/v2/auth/token` at most once a day (the last answer in between; a
/// failure of this optional call keeps it and is retried at the next check).
async fn scopes(ctx: &ProbeCtx<'_>, key: reqwest::header::HeaderValue) -> Vec<String> {
    let last = ctx
        .memory
        .yandex_scopes
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    if let Some(last) = &last
        && ctx.now.signed_duration_since(last.fetched_at) < chrono::Duration::days(1)
        && last.fetched_at <= ctx.now
    {
        return last.scopes.clone();
    }
    let base = ctx
        .config
        .endpoints
        .get(Marketplace::YandexMarket, "endpoint");
    let req = ctx
        .client
        .post(endpoint(base, "/v2/auth/token"))
        .header("Api-Key", key);
    let fresh = match send(ctx.client, req, ctx.timeout()).await {
        Ok(a) if a.status == 200 => read_scopes(&a.body),
        _ => None,
    };
    let Some(scopes) = fresh else {
        return last.map(|l| l.scopes).unwrap_or_default();
    };
    *ctx.memory
        .yandex_scopes
        .lock()
        .unwrap_or_else(|e| e.into_inner()) = Some(Scopes {
        fetched_at: ctx.now,
        scopes: scopes.clone(),
    });
    scopes
}

pub(crate) fn read_scopes(body: &[u8]) -> Option<Vec<String>> {
    let info: TokenInfo = serde_json::from_slice(body).ok()?;
    let mut s: Vec<String> = info
        .result
        .api_key
        .scopes
        .iter()
        .map(|x| sanitize(x, 60))
        .collect();
    s.sort();
    s.dedup();
    Some(s)
}

/// Classifies a Yandex Market error answer (MARKETPLACES-NEXT.md §2, error table).
pub(crate) fn classify_error(answer: &Answer) -> Finding {
    let body: Option<ErrorBody> = serde_json::from_slice(&answer.body).ok();
    let first = body.as_ref().and_then(|b| b.errors.first());
    let message = first.and_then(|e| e.message.clone()).unwrap_or_default();
    let code = first.and_then(|e| e.code.clone()).unwrap_or_default();
    let m = message.to_ascii_lowercase();
    let said = || sanitize(if message.is_empty() { &code } else { &message }, 120);
    let found = |kind, what: &str| {
        Finding::new(
            kind,
            format!("Yandex Market HTTP {}: {what} ({})", answer.status, said()),
        )
    };
    if answer.status == 420 || m.contains("hit rate limit") {
        let mut f = rate_limited(answer, &format!("Yandex Market: {}", said()));
        if f.retry_after_secs.is_none() {
            f.retry_after_secs = answer
                .headers
                .get("x-ratelimit-resource-until")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| DateTime::parse_from_rfc2822(v.trim()).ok())
                .map(|t| {
                    (t.with_timezone(&Utc) - Utc::now())
                        .num_seconds()
                        .clamp(1, 3600) as u64
                });
        }
        return f;
    }
    if m.contains("does not have any of the scopes") {
        return found(FindingKind::PermissionMissing, "the key lacks a scope");
    }
    if m.contains("not active")
        || m.contains("access to api denied")
        || m.contains("account is disabled")
    {
        return found(
            FindingKind::AccountBlocked,
            "the cabinet or store is blocked",
        );
    }
    if m.contains("revoked") {
        return found(FindingKind::AuthRejected, "the Api-Key was deleted");
    }
    if m.contains("api-key token") || m.contains("credentials are not specified") {
        return found(FindingKind::AuthRejected, "the Api-Key is refused");
    }
    if m.contains("oauth token is invalid") || m.contains("scope is invalid") {
        return found(FindingKind::AuthRejected, "the OAuth token is refused");
    }
    if answer.status == 401 || code == "UNAUTHORIZED" {
        return found(FindingKind::AuthRejected, "the Api-Key is refused");
    }
    if answer.status == 423 || m.contains("migration") {
        return found(
            FindingKind::Unreachable,
            "the business is being migrated (temporary)",
        );
    }
    generic(answer).unwrap_or_else(|| unrecognised(answer))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderMap;

    fn answer(status: u16, body: &str) -> Answer {
        Answer {
            status,
            headers: HeaderMap::new(),
            body: body.as_bytes().to_vec(),
        }
    }

    fn error(status: u16, code: &str, message: &str) -> Answer {
        answer(
            status,
            &serde_json::json!({"status": "ERROR", "errors": [{"code": code, "message": message}]})
                .to_string(),
        )
    }

    #[test]
    fn error_table() {
        use FindingKind::*;
        let table = [
            (
                401,
                "UNAUTHORIZED",
                "Api-Key token is invalid",
                AuthRejected,
            ),
            (
                401,
                "UNAUTHORIZED",
                "Api-Key token is revoked",
                AuthRejected,
            ),
            (
                401,
                "UNAUTHORIZED",
                "Api-Key token format invalid",
                AuthRejected,
            ),
            (
                401,
                "UNAUTHORIZED",
                "Api-Key token length invalid",
                AuthRejected,
            ),
            (
                401,
                "UNAUTHORIZED",
                "Api-Key token prefix invalid",
                AuthRejected,
            ),
            (
                401,
                "UNAUTHORIZED",
                "Credentials are not specified",
                AuthRejected,
            ),
            (403, "FORBIDDEN", "OAuth token is invalid", AuthRejected),
            (
                403,
                "FORBIDDEN",
                "OAuth token is invalid (account has been globally logged out)",
                AuthRejected,
            ),
            (403, "FORBIDDEN", "Scope is invalid", AuthRejected),
            (
                403,
                "FORBIDDEN",
                "Access denied for campaign '21000000' because it is not active",
                AccountBlocked,
            ),
            (
                403,
                "FORBIDDEN",
                "Restrict access for business '12345' because it is not active",
                AccountBlocked,
            ),
            (
                403,
                "FORBIDDEN",
                "Access to API denied for the client / campaign",
                AccountBlocked,
            ),
            (403, "FORBIDDEN", "User account is disabled", AccountBlocked),
            (
                403,
                "FORBIDDEN",
                "Token does not have any of the scopes to access the API method",
                PermissionMissing,
            ),
            (
                420,
                "HIT_RATE_LIMIT",
                "Hit rate limit of 4 parallel requests for campaignId 21000000",
                RateLimited,
            ),
            (423, "LOCKED", "Business is in migration", Unreachable),
            (503, "SERVICE_UNAVAILABLE", "overloaded", Unreachable),
        ];
        for (status, code, message, want) in table {
            assert_eq!(
                classify_error(&error(status, code, message)).kind,
                want,
                "{message}"
            );
        }
        // The body is read first: an error on HTTP 200 is still an error.
        let on_200 = error(200, "UNAUTHORIZED", "Api-Key token is invalid");
        assert_eq!(error_in(&on_200).unwrap().kind, AuthRejected);
        assert!(error_in(&answer(200, r#"{"campaigns":[]}"#)).is_none());
        assert_eq!(classify_error(&answer(418, "<html>")).kind, ProtocolError);
    }

    #[test]
    fn campaigns_give_the_business_and_flag_disabled_stores() {
        let a = answer(
            200,
            r#"{"campaigns":[
                {"domain":"shop.example","id":21000001,"clientId":0,"business":{"id":12345,"name":"My Business"},"placementType":"FBS","apiAvailability":"AVAILABLE"},
                {"domain":"b.example","id":21000002,"business":{"id":12345,"name":"My Business"},"placementType":"DBS","apiAvailability":"DISABLED_BY_INACTIVITY"}
            ],"pager":{"total":2}}"#,
        );
        let mut out = Probed::default();
        assert!(read_campaigns(&a, &mut out));
        assert_eq!(out.facts.account.as_deref(), Some("12345"));
        assert_eq!(out.facts.store_name.as_deref(), Some("My Business"));
        assert_eq!(out.facts.marketplaces, vec!["21000001 FBS", "21000002 DBS"]);
        assert_eq!(out.findings.len(), 1);
        assert_eq!(out.findings[0].kind, FindingKind::AccountBlocked);
        assert!(out.findings[0].detail.contains("21000002"));
        let mut out = Probed::default();
        assert!(!read_campaigns(&answer(200, "<html>"), &mut out));
        assert_eq!(out.findings[0].kind, FindingKind::ProtocolError);
    }

    #[test]
    fn scopes_are_read_from_the_token_answer() {
        let body = br#"{"status":"OK","result":{"apiKey":{"name":"storeguard","authScopes":["INVENTORY_AND_ORDER_PROCESSING","ALL_METHODS_READ_ONLY"]}}}"#;
        assert_eq!(
            read_scopes(body).unwrap(),
            vec!["ALL_METHODS_READ_ONLY", "INVENTORY_AND_ORDER_PROCESSING"]
        );
        assert_eq!(read_scopes(b"{}"), None);
    }
}
