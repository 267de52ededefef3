//! Ozon Seller API probe: `POST /v1/roles` on every check (key expiry and roles) and
//! `POST /v1/seller/info` at most once a day per store (premium tier). The seller-info answer's
//! `company` block holds tax ids: it is never even deserialised.

use super::{
    Answer, Probe, ProbeCtx, Probed, endpoint, expiring, generic, identity, rate_limited, send,
    unrecognised,
};
use crate::model::Marketplace;
use crate::outcome::{Finding, FindingKind};
use chrono::{DateTime, Utc};
use reqwest::header::HeaderName;
use secrecy::ExposeSecret;
use serde::Deserialize;

/// The Ozon probe.
pub struct Ozon;

/// What `/v1/seller/info` told us last, and when.
#[derive(Clone)]
pub(crate) struct SellerInfo {
    fetched_at: DateTime<Utc>,
    premium: Option<String>,
}

#[derive(Deserialize)]
struct Roles {
    #[serde(default)]
    expires_at: Option<String>,
    roles: Vec<Role>,
}

#[derive(Deserialize)]
struct Role {
    name: String,
}

#[derive(Deserialize)]
struct Info {
    #[serde(default)]
    subscription: Option<Subscription>,
}

#[derive(Deserialize)]
struct Subscription {
    #[serde(default)]
    is_premium: bool,
    #[serde(default, rename = "type")]
    kind: Option<String>,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    code: Option<i64>,
    #[serde(default)]
    message: Option<String>,
}

impl Probe for Ozon {
    fn marketplace(&self) -> Marketplace {
        Marketplace::Ozon
    }

    async fn probe(&self, ctx: &ProbeCtx<'_>) -> Probed {
        let mut out = Probed::default();
        let headers = match headers(ctx) {
            Ok(h) => h,
            Err(f) => return Probed::finding(f),
        };
        let client_id = ctx
            .creds
            .doc()
            .get("client_id")
            .map(|c| c.expose_secret().trim().to_string());
        let url = endpoint(
            ctx.config.endpoints.get(Marketplace::Ozon, "endpoint"),
            "/v1/roles",
        );
        let req = ctx.client.post(url).headers(headers).body(EMPTY);
        let answer = match send(ctx.client, req, ctx.timeout()).await {
            Ok(a) => a,
            Err(f) => return Probed::finding(f),
        };
        out.facts.http_status = Some(answer.status);
        if answer.status != 200 {
            out.findings.push(classify_error(&answer));
            return out;
        }
        if !read_roles(&answer, ctx.now, ctx.warning_window(), &mut out) {
            return out;
        }
        out.facts.account = client_id.clone();
        out.findings
            .extend(identity(ctx.store, client_id.as_deref(), "Ozon Client-Id"));
        out.facts.premium = seller_info(ctx).await;
        out
    }
}

/// The body of both calls: an empty JSON object (sent as is, not serialised per check).
const EMPTY: &str = "{}";

fn headers(ctx: &ProbeCtx<'_>) -> Result<reqwest::header::HeaderMap, Finding> {
    let mut h = reqwest::header::HeaderMap::with_capacity(3);
    h.insert(
        reqwest::header::CONTENT_TYPE,
        reqwest::header::HeaderValue::from_static("application/json"),
    );
    // Names as constants: a `&str` name is parsed and checked again on every insert.
    const CLIENT_ID: HeaderName = HeaderName::from_static("client-id");
    const API_KEY: HeaderName = HeaderName::from_static("api-key");
    h.insert(CLIENT_ID, ctx.secret_header("client_id")?);
    h.insert(API_KEY, ctx.secret_header("api_key")?);
    Ok(h)
}

/// The premium tier, from `/v1/seller/info` at most once a day; the last answer in between.
/// Its headers are built again only then (the first call took its own).
async fn seller_info(ctx: &ProbeCtx<'_>) -> Option<String> {
    let last = ctx
        .memory
        .ozon_info
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    if let Some(last) = &last
        && ctx.now.signed_duration_since(last.fetched_at) < chrono::Duration::days(1)
        && last.fetched_at <= ctx.now
    {
        return last.premium.clone();
    }
    let url = endpoint(
        ctx.config.endpoints.get(Marketplace::Ozon, "endpoint"),
        "/v1/seller/info",
    );
    let Ok(headers) = headers(ctx) else {
        return last.and_then(|l| l.premium);
    };
    let req = ctx.client.post(url).headers(headers).body(EMPTY);
    let fresh = match send(ctx.client, req, ctx.timeout()).await {
        Ok(a) if a.status == 200 => read_premium(&a.body),
        _ => None,
    };
    // Failures of this optional call keep the last answer; it is retried next check.
    let Some(premium) = fresh else {
        return last.and_then(|l| l.premium);
    };
    *ctx.memory
        .ozon_info
        .lock()
        .unwrap_or_else(|e| e.into_inner()) = Some(SellerInfo {
        fetched_at: ctx.now,
        premium: premium.clone(),
    });
    premium
}

/// Reads a 200 answer of `/v1/roles` into `out` (roles, key expiry and its warning). False,
/// with a `protocol_error` pushed, when the answer is not what Ozon documents.
pub(crate) fn read_roles(
    answer: &Answer,
    now: DateTime<Utc>,
    window: std::time::Duration,
    out: &mut Probed,
) -> bool {
    let roles: Roles = match serde_json::from_slice(&answer.body) {
        Ok(r) => r,
        Err(_) => {
            out.findings.push(unrecognised(answer));
            return false;
        }
    };
    out.facts.roles = roles.roles.into_iter().map(|r| r.name).collect();
    if let Some(exp) = roles.expires_at.as_deref() {
        match DateTime::parse_from_rfc3339(exp.trim()) {
            Ok(t) => {
                let t = t.with_timezone(&Utc);
                out.facts.expires_at = Some(t);
                out.findings
                    .extend(expiring("Ozon API key", t, now, window));
            }
            Err(_) => out.findings.push(unrecognised(answer)),
        }
    }
    true
}

/// The premium tier from a 200 answer of `/v1/seller/info` (`None`: not a seller-info answer).
pub(crate) fn read_premium(body: &[u8]) -> Option<Option<String>> {
    let info = serde_json::from_slice::<Info>(body).ok()?;
    Some(info.subscription.map(|s| match (s.is_premium, s.kind) {
        (_, Some(k)) if !k.trim().is_empty() => crate::outcome::sanitize(&k, 40),
        (true, _) => "premium".to_string(),
        (false, _) => "none".to_string(),
    }))
}

/// Classifies an Ozon error answer (MARKETPLACES.md, Ozon error table).
pub(crate) fn classify_error(answer: &Answer) -> Finding {
    let body: Option<ErrorBody> = serde_json::from_slice(&answer.body).ok();
    let message = body
        .as_ref()
        .and_then(|b| b.message.clone())
        .unwrap_or_default();
    let code = body.as_ref().and_then(|b| b.code);
    let m = message.to_ascii_lowercase();
    let said = || crate::outcome::sanitize(&message, 120);
    let kind = if m.contains("client-id and api-key headers are required") {
        Some((FindingKind::AuthRejected, "Client-Id or Api-Key missing"))
    } else if m.contains("client-id header value should be positive integer") {
        Some((
            FindingKind::AuthRejected,
            "the vault's client_id is not a positive integer",
        ))
    } else if m.contains("api-key is deactivated") {
        Some((FindingKind::AuthRejected, "Api-Key deactivated"))
    } else if m.contains("invalid api-key") {
        Some((FindingKind::AuthRejected, "Api-Key refused"))
    } else if m.contains("missing a required role") {
        Some((FindingKind::PermissionMissing, "Api-Key lacks a role"))
    } else if m.contains("restricted to specific ip") {
        Some((
            FindingKind::IpRestricted,
            "Api-Key restricted to other IP addresses",
        ))
    } else if m.contains("company is blocked") {
        Some((FindingKind::AccountBlocked, "company blocked"))
    } else if m.contains("offer not signed") {
        Some((
            FindingKind::AccountBlocked,
            "offer not signed: accept it in Seller Center",
        ))
    } else if m.contains("rate limit") || (code == Some(8) && answer.status == 429) {
        return rate_limited(answer, &format!("Ozon: {}", said()));
    } else {
        None
    };
    match kind {
        Some((kind, what)) => Finding::new(
            kind,
            format!("Ozon HTTP {}: {what} ({})", answer.status, said()),
        ),
        None => generic(answer).unwrap_or_else(|| unrecognised(answer)),
    }
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

    fn kind(status: u16, code: i64, message: &str) -> FindingKind {
        let body = serde_json::json!({"code": code, "message": message, "details": []});
        classify_error(&answer(status, &body.to_string())).kind
    }

    #[test]
    fn error_table() {
        use FindingKind::*;
        let table = [
            (
                401,
                16,
                "Client-Id and Api-Key headers are required",
                AuthRejected,
            ),
            (
                400,
                3,
                "Client-Id header value should be positive integer",
                AuthRejected,
            ),
            (
                404,
                5,
                "Invalid Api-Key, please check the key and try again",
                AuthRejected,
            ),
            (
                403,
                7,
                "Invalid Api-Key, please contact support",
                AuthRejected,
            ),
            (
                403,
                7,
                "Api-key is deactivated, use another one or generate a new one",
                AuthRejected,
            ),
            (
                403,
                7,
                "Api-Key is missing a required role for a method",
                PermissionMissing,
            ),
            (
                403,
                7,
                "Api-Key is restricted to specific IP addresses",
                IpRestricted,
            ),
            (
                403,
                7,
                "Company is blocked, please contact support",
                AccountBlocked,
            ),
            (403, 7, "Offer not signed", AccountBlocked),
            (
                429,
                8,
                "You have reached request rate limit per second",
                RateLimited,
            ),
        ];
        for (status, code, message, want) in table {
            assert_eq!(kind(status, code, message), want, "{message}");
        }
    }

    #[test]
    fn unknown_answers_are_protocol_errors_not_guesses() {
        assert_eq!(kind(403, 7, "Something new"), FindingKind::ProtocolError);
        assert_eq!(
            classify_error(&answer(200, "<html>hi</html>")).kind,
            FindingKind::ProtocolError
        );
        // The HTTP status alone does not make a 403 an auth failure.
        assert_eq!(
            classify_error(&answer(403, "forbidden")).kind,
            FindingKind::ProtocolError
        );
        assert_eq!(
            classify_error(&answer(502, "bad gateway")).kind,
            FindingKind::Unreachable
        );
        let f = classify_error(&answer(418, "tea\x1b[31m\nCANARY"));
        assert!(f.detail.contains("HTTP 418"));
        assert!(!f.detail.contains('\x1b'));
    }
}
