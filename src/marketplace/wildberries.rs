//! Wildberries probe: `GET /api/v1/seller-info` on the common-api host with the token as a
//! bearer (never `/ping`: Wildberries blocks it when automated). The token is a JWT whose
//! public payload holds the seller `sid`, the expiry `exp` (180 days after creation, no
//! refresh) and the data categories `s`; it is read locally, its signature is not ours to check.

use super::{
    Answer, Probe, ProbeCtx, Probed, endpoint, expiring, generic, identity, rate_limited,
    secret_header, send, unrecognised,
};
use crate::model::Marketplace;
use crate::outcome::{Finding, FindingKind, sanitize};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use secrecy::ExposeSecret;
use serde::Deserialize;

/// The Wildberries probe.
pub struct Wildberries;

/// What the token says about itself (its public payload).
#[derive(Debug, Default, PartialEq, Deserialize)]
pub(crate) struct Claims {
    #[serde(default)]
    exp: Option<i64>,
    #[serde(default)]
    sid: Option<String>,
    /// Data categories, one bit each; bit 30: read-only.
    #[serde(default)]
    s: Option<u64>,
    /// A test-sandbox token.
    #[serde(default)]
    t: Option<bool>,
}

#[derive(Deserialize)]
struct SellerInfo {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    sid: Option<String>,
    #[serde(default, rename = "tradeMark")]
    trade_mark: Option<String>,
}

#[derive(Deserialize)]
struct Problem {
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    detail: Option<String>,
    #[serde(default)]
    code: Option<String>,
}

/// The categories of the `s` bitmask, by bit.
const CATEGORIES: [(u32, &str); 12] = [
    (1, "content"),
    (2, "analytics"),
    (3, "prices"),
    (4, "marketplace"),
    (5, "statistics"),
    (6, "promotion"),
    (7, "feedbacks"),
    (8, "recommendations"),
    (9, "buyer-chat"),
    (10, "supplies"),
    (11, "returns"),
    (12, "documents"),
];
const READ_ONLY_BIT: u32 = 30;

impl Probe for Wildberries {
    fn marketplace(&self) -> Marketplace {
        Marketplace::Wildberries
    }

    async fn probe(&self, ctx: &ProbeCtx<'_>) -> Probed {
        let token = match ctx.secret("token") {
            Ok(t) => t,
            Err(f) => return Probed::finding(f),
        };
        let claims = claims(token.expose_secret().trim());
        let mut out = Probed::default();
        if let Some(c) = &claims {
            out.facts.roles = categories(c);
            if let Some(exp) = c.exp.and_then(|e| DateTime::<Utc>::from_timestamp(e, 0)) {
                out.facts.expires_at = Some(exp);
                out.findings.extend(expiring(
                    "Wildberries API token",
                    exp,
                    ctx.now,
                    ctx.warning_window(),
                ));
            }
            if c.t == Some(true) {
                // [S]: a sandbox token is refused by the production hosts.
                out.findings.push(Finding::new(
                    FindingKind::PermissionMissing,
                    "the token is a test-sandbox token; seller-info needs a production token",
                ));
                return out;
            }
        }
        let value = match secret_header(
            &secrecy::SecretString::from(format!("Bearer {}", token.expose_secret().trim())),
            "token",
        ) {
            Ok(v) => v,
            Err(f) => return Probed::finding(f),
        };
        let url = endpoint(
            ctx.config
                .endpoints
                .get(Marketplace::Wildberries, "endpoint"),
            "/api/v1/seller-info",
        );
        let req = ctx
            .client
            .get(url)
            .header(reqwest::header::AUTHORIZATION, value);
        let answer = match send(ctx.client, req, ctx.timeout()).await {
            Ok(a) => a,
            Err(f) => {
                out.findings.push(f);
                return out;
            }
        };
        out.facts.http_status = Some(answer.status);
        if answer.status != 200 {
            out.findings.push(classify_error(&answer));
            return out;
        }
        let Some(info) = read_seller_info(&answer) else {
            out.findings.push(unrecognised(&answer));
            return out;
        };
        let sid = info
            .sid
            .as_deref()
            .map(|s| sanitize(s, 64))
            .or_else(|| claims.as_ref().and_then(|c| c.sid.clone()));
        out.facts.account = sid.clone();
        out.facts.store_name = info
            .trade_mark
            .filter(|t| !t.trim().is_empty())
            .or(info.name)
            .map(|n| sanitize(&n, 120));
        out.findings
            .extend(identity(ctx.store, sid.as_deref(), "Wildberries sid"));
        out
    }
}

/// The token's public payload, when it is a JWT.
pub(crate) fn claims(token: &str) -> Option<Claims> {
    let mut parts = token.split('.');
    let (_, payload, _) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The data categories a token may reach, and `read-only` when it may not write.
fn categories(c: &Claims) -> Vec<String> {
    let Some(bits) = c.s else {
        return Vec::new();
    };
    let mut out: Vec<String> = CATEGORIES
        .iter()
        .filter(|(bit, _)| bits & (1 << bit) != 0)
        .map(|(_, name)| name.to_string())
        .collect();
    if bits & (1 << READ_ONLY_BIT) != 0 {
        out.push("read-only".into());
    }
    out
}

fn read_seller_info(answer: &Answer) -> Option<SellerInfo> {
    let info: SellerInfo = serde_json::from_slice(&answer.body).ok()?;
    // An answer without any of its fields is not seller-info.
    (info.sid.is_some() || info.name.is_some()).then_some(info)
}

/// Classifies a Wildberries error answer (MARKETPLACES-NEXT.md §1, error table).
pub(crate) fn classify_error(answer: &Answer) -> Finding {
    let body: Option<Problem> = serde_json::from_slice(&answer.body).ok();
    let detail = body
        .as_ref()
        .and_then(|b| b.detail.clone())
        .unwrap_or_default();
    let title = body
        .as_ref()
        .and_then(|b| b.title.clone().or_else(|| b.code.clone()))
        .unwrap_or_default();
    let d = detail.to_ascii_lowercase();
    let said = || sanitize(if detail.is_empty() { &title } else { &detail }, 120);
    let found = |kind, what: &str| {
        Finding::new(
            kind,
            format!("Wildberries HTTP {}: {what} ({})", answer.status, said()),
        )
    };
    match answer.status {
        401 if d.contains("read-only") => found(
            FindingKind::PermissionMissing,
            "the token is read-only for this route",
        ),
        401 if d.contains("scope not allowed") => found(
            FindingKind::PermissionMissing,
            "the token lacks the category of this route (or is a test token)",
        ),
        401 if d.contains("expired") => found(FindingKind::AuthRejected, "the token expired"),
        401 if d.contains("malformed") || d.contains("invalid") || d.contains("signature") => {
            found(FindingKind::AuthRejected, "the token is refused")
        }
        401 => found(FindingKind::AuthRejected, "the token is refused"),
        403 => found(FindingKind::PermissionMissing, "access denied"),
        429 => {
            let mut f = rate_limited(answer, &format!("Wildberries: {}", said()));
            if f.retry_after_secs.is_none() {
                f.retry_after_secs = answer
                    .headers
                    .get("x-ratelimit-retry")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(|s| s.min(3600));
            }
            f
        }
        _ => generic(answer).unwrap_or_else(|| unrecognised(answer)),
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

    fn problem(status: u16, detail: &str) -> Answer {
        answer(
            status,
            &serde_json::json!({"title": "unauthorized", "detail": detail, "origin": "s2s-api-auth-catalog", "status": status}).to_string(),
        )
    }

    #[test]
    fn error_table() {
        use FindingKind::*;
        let table = [
            (
                401,
                "token problem; token is malformed: could not base64 decode",
                AuthRejected,
            ),
            (401, "token expired", AuthRejected),
            (401, "token is invalid", AuthRejected),
            (401, "token scope not allowed", PermissionMissing),
            (
                401,
                "read-only token scope not allowed for this route",
                PermissionMissing,
            ),
            (403, "abac: access denied", PermissionMissing),
        ];
        for (status, detail, want) in table {
            assert_eq!(
                classify_error(&problem(status, detail)).kind,
                want,
                "{detail}"
            );
        }
        let limited = classify_error(&answer(
            429,
            r#"{"title":"too many requests","detail":"limited by c4d4b2f0"}"#,
        ));
        assert_eq!(limited.kind, RateLimited);
        // A 402 concerns paid catalogue services only: not a login finding we know.
        assert_eq!(
            classify_error(&answer(402, r#"{"title":"payment required"}"#)).kind,
            ProtocolError
        );
        assert_eq!(classify_error(&answer(500, "")).kind, Unreachable);
    }

    #[test]
    fn rate_limit_waits_as_the_header_says() {
        let mut a = answer(429, r#"{"title":"too many requests"}"#);
        a.headers.insert("x-ratelimit-retry", "17".parse().unwrap());
        assert_eq!(classify_error(&a).retry_after_secs, Some(17));
    }

    #[test]
    fn the_token_payload_is_read_locally() {
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(
            br#"{"exp":1790000000,"sid":"e8923014-e233-47a8-898e-3cc86d67ea61","s":1073741838,"t":false}"#,
        );
        let c = claims(&format!("eyJhbGciOiJFUzI1NiJ9.{payload}.c2ln")).unwrap();
        assert_eq!(c.exp, Some(1_790_000_000));
        assert_eq!(
            c.sid.as_deref(),
            Some("e8923014-e233-47a8-898e-3cc86d67ea61")
        );
        // 1073741838 = bits 1, 2, 3 and 30.
        assert_eq!(
            categories(&c),
            vec!["content", "analytics", "prices", "read-only"]
        );
        assert_eq!(claims("not-a-jwt"), None);
        assert_eq!(claims("a.b.c.d"), None);
        assert_eq!(claims("a.!!!.c"), None);
    }
}
