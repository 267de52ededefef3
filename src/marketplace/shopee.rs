//! Shopee Open Platform v2 probe: `GET /api/v2/shop/get_shop_info`, signed as a Shop API
//! (lower-case hex HMAC-SHA256 with the partner key over partner_id + path + timestamp +
//! access_token + shop_id). The answer carries the authorisation's expiry (`expire_time`, at
//! most 365 days) and the shop's status (NORMAL, BANNED, FROZEN).
//!
//! The access token lives 4 hours; it is refreshed (`POST /api/v2/auth/access_token/get`, a
//! Public API signature) only when it is near expiry or refused, never to test. Shopee refresh
//! tokens are single-use: the new pair is durable in the vault before it is used.

use super::{
    Answer, Probe, ProbeCtx, Probed, endpoint, expiring, generic, json_text, rotate, send,
    unrecognised,
};
use crate::model::Marketplace;
use crate::outcome::{Finding, FindingKind, sanitize};
use crate::vault::Rotation;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use sha2::Sha256;

/// Refresh ahead of the access token's expiry by this much.
const REFRESH_AHEAD: chrono::Duration = chrono::Duration::minutes(30);
const SHOP_INFO: &str = "/api/v2/shop/get_shop_info";
const TOKEN_GET: &str = "/api/v2/auth/access_token/get";

/// The Shopee probe.
pub struct Shopee;

/// Shopee's signature: lower-case hex HMAC-SHA256 keyed by the partner key over `parts`
/// concatenated (partner_id, path, timestamp, then for Shop APIs access_token and shop_id).
pub fn sign(partner_key: &[u8], parts: &[&str]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(partner_key).expect("HMAC takes any key length");
    for p in parts {
        mac.update(p.as_bytes());
    }
    hex::encode(mac.finalize().into_bytes())
}

/// How an error answer is handled.
pub(crate) enum ShopeeError {
    /// The access token is refused: refresh, then try once more.
    AccessToken,
    Finding(Finding),
}

/// The `error` and `message` of an answer; `None` when it is not a JSON object.
fn error_of(body: &[u8]) -> Option<(String, String, Value)> {
    let v: Value = serde_json::from_slice(body).ok()?;
    v.as_object()?;
    let text = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    Some((text("error"), text("message"), v))
}

/// Classifies an error code and message (MARKETPLACES-NEXT.md §4, error table).
pub(crate) fn classify(error: &str, message: &str) -> ShopeeError {
    let m = message.to_ascii_lowercase();
    let said = sanitize(message, 120);
    let found = |kind, what: &str| {
        ShopeeError::Finding(Finding::new(
            kind,
            format!("Shopee {}: {what} ({said})", sanitize(error, 40)),
        ))
    };
    match error {
        "invalid_acceess_token" | "invalid_access_token" => ShopeeError::AccessToken,
        "error_auth"
            if m.contains("invalid access_token") || m.contains("invalid access token") =>
        {
            ShopeeError::AccessToken
        }
        "error_auth" if m.contains("no permission") => found(
            FindingKind::PermissionMissing,
            "the app may not call this API",
        ),
        "error_auth" if m.contains("refresh_token") || m.contains("refresh token") => found(
            FindingKind::AuthRejected,
            "refresh token refused: the seller must authorise the app again",
        ),
        "error_auth" => found(FindingKind::AuthRejected, "partner or shop refused"),
        "error_sign" | "error_param" if error == "error_sign" || m.contains("timestamp") => found(
            FindingKind::AuthRejected,
            "signature or timestamp refused: check the partner key and this server's clock",
        ),
        "refresh_token_expired" | "error_shop_refresh_token" => found(
            FindingKind::AuthRejected,
            "refresh token expired or refused: the seller must authorise the app again",
        ),
        "shop_access_expired" | "merchant_access_expired" => found(
            FindingKind::AuthRejected,
            "the seller's authorisation of the app expired",
        ),
        "shop_no_linked" | "merchant_no_linked" => found(
            FindingKind::AuthRejected,
            "the shop is not linked to this partner (authorisation cancelled)",
        ),
        "shop_banned" => found(FindingKind::AccountBlocked, "the shop is banned"),
        "error_permission" => found(FindingKind::PermissionMissing, "permission missing"),
        "error_shop" => found(
            FindingKind::IdentityMismatch,
            "the shop id is not this authorisation's",
        ),
        "error_server" if m.contains("too many requests") => {
            found(FindingKind::RateLimited, "too many requests")
        }
        _ => ShopeeError::Finding(Finding::new(
            FindingKind::ProtocolError,
            format!("unrecognised Shopee error {}: {said}", sanitize(error, 40)),
        )),
    }
}

/// Reads the shop-info answer into `out`: name, region, the authorisation's expiry, and
/// `account_blocked` for a banned or frozen shop.
pub(crate) fn interpret(
    answer: &Answer,
    now: DateTime<Utc>,
    window: std::time::Duration,
    out: &mut Probed,
) -> Result<(), ShopeeError> {
    let Some((error, message, v)) = error_of(&answer.body) else {
        return Err(ShopeeError::Finding(
            generic(answer).unwrap_or_else(|| unrecognised(answer)),
        ));
    };
    if !error.is_empty() {
        return Err(classify(&error, &message));
    }
    if answer.status != 200 || v.get("shop_name").is_none() {
        return Err(ShopeeError::Finding(
            generic(answer).unwrap_or_else(|| unrecognised(answer)),
        ));
    }
    out.facts.store_name = v
        .get("shop_name")
        .and_then(Value::as_str)
        .map(|n| sanitize(n, 80));
    if let Some(r) = v.get("region").and_then(Value::as_str) {
        out.facts.marketplaces = vec![sanitize(r, 8)];
    }
    if let Some(exp) = v
        .get("expire_time")
        .and_then(json_text)
        .and_then(|s| s.parse::<i64>().ok())
        .and_then(|s| DateTime::<Utc>::from_timestamp(s, 0))
    {
        out.facts.expires_at = Some(exp);
        out.findings
            .extend(expiring("Shopee shop authorisation", exp, now, window));
    }
    let status = v.get("status").and_then(Value::as_str).unwrap_or("NORMAL");
    if status != "NORMAL" {
        out.findings.push(Finding::new(
            FindingKind::AccountBlocked,
            format!("Shopee reports the shop {}", sanitize(status, 20)),
        ));
    }
    Ok(())
}

struct Partner {
    id: String,
    key: SecretString,
}

impl Probe for Shopee {
    fn marketplace(&self) -> Marketplace {
        Marketplace::Shopee
    }

    async fn probe(&self, ctx: &ProbeCtx<'_>) -> Probed {
        let mut out = Probed::default();
        if let Err(f) = probe_inner(ctx, &mut out).await {
            out.findings.push(f);
        }
        out.facts.account = ctx.store.account.clone().filter(|_| {
            !out.findings
                .iter()
                .any(|f| f.kind == FindingKind::IdentityMismatch)
        });
        out
    }
}

async fn probe_inner(ctx: &ProbeCtx<'_>, out: &mut Probed) -> Result<(), Finding> {
    let partner = Partner {
        id: ctx.secret("partner_id")?.expose_secret().trim().to_string(),
        key: ctx.secret("partner_key")?,
    };
    let Some(shop_id) = ctx.store.account.as_deref().map(str::trim) else {
        return Err(Finding::new(
            FindingKind::IdentityMismatch,
            "the store has no `account` (its shop_id)",
        ));
    };
    let mut refreshed = false;
    if ctx
        .creds
        .time("access_token_expires_at")
        .is_some_and(|t| t - ctx.now < REFRESH_AHEAD)
    {
        refresh(ctx, &partner, shop_id).await?;
        out.facts.tokens_renewed = true;
        refreshed = true;
    }
    loop {
        let access = ctx.secret("access_token")?;
        let token = access.expose_secret().trim();
        let ts = Utc::now().timestamp().to_string();
        let signature = sign(
            partner.key.expose_secret().as_bytes(),
            &[&partner.id, SHOP_INFO, &ts, token, shop_id],
        );
        let base = ctx.config.base_url(ctx.store);
        let req = ctx.client.get(endpoint(base, SHOP_INFO)).query(&[
            ("partner_id", partner.id.as_str()),
            ("timestamp", ts.as_str()),
            ("access_token", token),
            ("shop_id", shop_id),
            ("sign", signature.as_str()),
        ]);
        let answer = send(ctx.client, req, ctx.timeout()).await?;
        out.facts.http_status = Some(answer.status);
        match interpret(&answer, ctx.now, ctx.warning_window(), out) {
            Ok(()) => return Ok(()),
            Err(ShopeeError::AccessToken) if !refreshed => {
                refreshed = true;
                refresh(ctx, &partner, shop_id).await?;
                out.facts.tokens_renewed = true;
            }
            Err(ShopeeError::AccessToken) => {
                return Err(Finding::new(
                    FindingKind::AuthRejected,
                    "Shopee refused the access token even after a refresh",
                ));
            }
            Err(ShopeeError::Finding(f)) => return Err(f),
        }
    }
}

/// Refreshes the shop's tokens and makes them durable before returning (one refresh in flight
/// per store; one another check or process made is adopted instead).
async fn refresh(ctx: &ProbeCtx<'_>, partner: &Partner, shop_id: &str) -> Result<(), Finding> {
    let Some(guard) = rotate::claim(ctx).await else {
        return Ok(());
    };
    let refresh_token = ctx.secret("refresh_token")?;
    let ts = Utc::now().timestamp().to_string();
    let signature = sign(
        partner.key.expose_secret().as_bytes(),
        &[&partner.id, TOKEN_GET, &ts],
    );
    let base = ctx.config.base_url(ctx.store);
    let partner_num: i64 = partner.id.parse().map_err(|_| {
        Finding::new(
            FindingKind::VaultUnreadable,
            "vault `partner_id` is not a number",
        )
    })?;
    let shop_num: i64 = shop_id.parse().map_err(|_| {
        Finding::new(
            FindingKind::IdentityMismatch,
            "the store's `account` (its shop_id) is not a number",
        )
    })?;
    let req = ctx
        .client
        .post(endpoint(base, TOKEN_GET))
        .query(&[
            ("partner_id", partner.id.as_str()),
            ("timestamp", ts.as_str()),
            ("sign", signature.as_str()),
        ])
        .json(&serde_json::json!({
            "refresh_token": refresh_token.expose_secret().trim(),
            "partner_id": partner_num,
            "shop_id": shop_num,
        }));
    let answer = send(ctx.client, req, ctx.timeout()).await?;
    let rotation = read_tokens(&answer, ctx.now, refresh_token)?;
    rotate::persist(ctx, guard, rotation).await
}

/// The new pair from a refresh answer, as a vault rotation that spends `spent`.
pub(crate) fn read_tokens(
    answer: &Answer,
    now: DateTime<Utc>,
    spent: SecretString,
) -> Result<Rotation, Finding> {
    let Some((error, message, v)) = error_of(&answer.body) else {
        return Err(generic(answer).unwrap_or_else(|| unrecognised(answer)));
    };
    if !error.is_empty() {
        return Err(match classify(&error, &message) {
            ShopeeError::AccessToken => Finding::new(
                FindingKind::AuthRejected,
                format!("token refresh refused: {}", sanitize(&message, 120)),
            ),
            ShopeeError::Finding(f) => f,
        });
    }
    let text = |k: &str| {
        v.get(k)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(|s| SecretString::from(s.to_string()))
    };
    let (Some(access), Some(refresh)) = (text("access_token"), text("refresh_token")) else {
        return Err(unrecognised(answer));
    };
    let access_expires = v
        .get("expire_in")
        .and_then(json_text)
        .and_then(|s| s.parse::<i64>().ok())
        .and_then(|s| chrono::Duration::try_seconds(s.max(0)))
        .and_then(|d| now.checked_add_signed(d));
    // The refresh token lives 30 days from this refresh.
    let refresh_expires = now.checked_add_signed(chrono::Duration::days(30));
    Ok(rotate::token_pair(
        spent,
        access,
        refresh,
        access_expires,
        refresh_expires,
    ))
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

    fn kind(error: &str, message: &str) -> Option<FindingKind> {
        match classify(error, message) {
            ShopeeError::AccessToken => None,
            ShopeeError::Finding(f) => Some(f.kind),
        }
    }

    #[test]
    fn error_table() {
        use FindingKind::*;
        assert_eq!(kind("error_auth", "Invalid access_token."), None);
        assert_eq!(kind("invalid_acceess_token", "Invalid access_token."), None);
        let table = [
            ("error_auth", "Invalid partner_id or shopid.", AuthRejected),
            ("error_sign", "Wrong sign.", AuthRejected),
            ("error_param", "Invalid timestamp", AuthRejected),
            (
                "refresh_token_expired",
                "refresh token expired",
                AuthRejected,
            ),
            (
                "error_shop_refresh_token",
                "Your refresh token is error",
                AuthRejected,
            ),
            ("error_auth", "Invalid refresh_token.", AuthRejected),
            (
                "shop_access_expired",
                "Your access to shop has expired.",
                AuthRejected,
            ),
            (
                "shop_no_linked",
                "Partner and shop has no linked.",
                AuthRejected,
            ),
            ("merchant_access_expired", "expired", AuthRejected),
            ("merchant_no_linked", "no linked", AuthRejected),
            (
                "shop_banned",
                "The shop account has been banned.",
                AccountBlocked,
            ),
            (
                "error_auth",
                "No permission to current api.",
                PermissionMissing,
            ),
            (
                "error_permission",
                "Sorry you don't have the permission, detail: x.",
                PermissionMissing,
            ),
            ("error_shop", "shopid is invalid", IdentityMismatch),
            (
                "error_server",
                "Too many requests, please try again later",
                RateLimited,
            ),
            ("error_unknown", "something else", ProtocolError),
        ];
        for (error, message, want) in table {
            assert_eq!(kind(error, message), Some(want), "{error} {message}");
        }
    }

    #[test]
    fn shop_info_gives_name_region_expiry_and_status() {
        let now = DateTime::<Utc>::from_timestamp(1_773_000_000, 0).unwrap();
        let a = answer(
            200,
            r#"{"error":"","message":"","request_id":"r","auth_time":1741944925,"expire_time":1773503999,"shop_name":"mysipuat","region":"MY","status":"BANNED","is_cb":false}"#,
        );
        let mut out = Probed::default();
        assert!(
            interpret(
                &a,
                now,
                std::time::Duration::from_secs(14 * 86_400),
                &mut out
            )
            .is_ok()
        );
        assert_eq!(out.facts.store_name.as_deref(), Some("mysipuat"));
        assert_eq!(out.facts.marketplaces, vec!["MY"]);
        assert_eq!(out.facts.expires_at.unwrap().timestamp(), 1_773_503_999);
        let kinds: Vec<_> = out.findings.iter().map(|f| f.kind).collect();
        assert!(
            kinds.contains(&FindingKind::CredentialExpiring),
            "{kinds:?}"
        );
        assert!(kinds.contains(&FindingKind::AccountBlocked), "{kinds:?}");
        // An error body on HTTP 200 is an error; HTML is not an answer.
        let mut out = Probed::default();
        assert!(matches!(
            interpret(&answer(200, r#"{"error":"shop_banned","message":"banned"}"#), now, std::time::Duration::ZERO, &mut out),
            Err(ShopeeError::Finding(f)) if f.kind == FindingKind::AccountBlocked
        ));
        assert!(matches!(
            interpret(&answer(200, "<html>"), now, std::time::Duration::ZERO, &mut out),
            Err(ShopeeError::Finding(f)) if f.kind == FindingKind::ProtocolError
        ));
    }

    #[test]
    fn signature_covers_the_documented_base_string() {
        // partner_id + path + timestamp + access_token + shop_id, lower-case hex.
        let s = sign(b"key", &["2001887", SHOP_INFO, "1655714431", "tok", "123"]);
        let mut mac = Hmac::<Sha256>::new_from_slice(b"key").unwrap();
        mac.update(b"2001887/api/v2/shop/get_shop_info1655714431tok123");
        assert_eq!(s, hex::encode(mac.finalize().into_bytes()));
        assert_eq!(s, s.to_lowercase());
    }
}
