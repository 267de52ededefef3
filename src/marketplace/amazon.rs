//! Amazon Selling Partner API probe: an LWA refresh-token exchange (cached in memory until
//! `expires_in − 60 s`, one exchange in flight per store), then
//! `GET /sellers/v1/marketplaceParticipations` on the store's region. An access token reported
//! expired is refreshed once and the call retried; `invalid_grant` / `invalid_client` are never
//! retried. The client secret's age (vault `client_secret_rotated_at`) drives
//! `credential_expiring` ahead of day 180.

use super::{
    Answer, Probe, ProbeCtx, Probed, endpoint, expiring, generic, rate_limited, secret_header,
    send, unrecognised,
};
use crate::model::Marketplace;
use crate::outcome::{Finding, FindingKind};
use chrono::Utc;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use std::time::{Duration, Instant};

/// LWA client secrets must be rotated every 180 days.
pub const CLIENT_SECRET_LIFETIME_DAYS: i64 = 180;

/// The Amazon probe.
pub struct Amazon;

/// An LWA access token kept in memory (never written anywhere).
pub(crate) struct CachedToken {
    access: SecretString,
    valid_until: Instant,
    /// Vault generation the token was obtained with: a changed entry drops the cache.
    generation: u64,
}

impl CachedToken {
    /// The token's text, for redaction of details.
    pub(crate) fn text(&self) -> &str {
        self.access.expose_secret()
    }
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

#[derive(Deserialize)]
struct LwaError {
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_description: Option<String>,
}

#[derive(Deserialize)]
struct Participations {
    payload: Vec<Participation>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Participation {
    marketplace: MarketplaceInfo,
    #[serde(default)]
    store_name: Option<String>,
}

#[derive(Deserialize)]
struct MarketplaceInfo {
    id: String,
}

#[derive(Deserialize)]
struct SpErrors {
    errors: Vec<SpError>,
}

#[derive(Deserialize)]
struct SpError {
    code: String,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    details: Option<String>,
}

/// How an SP-API error answer is handled.
pub(crate) enum ApiError {
    /// The access token expired: refresh once and retry.
    Expired,
    Finding(Finding),
}

impl Probe for Amazon {
    fn marketplace(&self) -> Marketplace {
        Marketplace::Amazon
    }

    async fn probe(&self, ctx: &ProbeCtx<'_>) -> Probed {
        let mut out = Probed::default();
        if let Some(rotated) = ctx.creds.time("client_secret_rotated_at") {
            let exp = rotated + chrono::Duration::days(CLIENT_SECRET_LIFETIME_DAYS);
            out.facts.expires_at = Some(exp);
            out.findings.extend(expiring(
                "LWA client secret (rotated every 180 days)",
                exp,
                ctx.now,
                ctx.warning_window(),
            ));
        }
        let url = endpoint(
            ctx.config.base_url(ctx.store),
            "/sellers/v1/marketplaceParticipations",
        );
        let mut token = match access_token(ctx, None).await {
            Ok(t) => t,
            Err(f) => {
                out.findings.push(f);
                return out;
            }
        };
        authorization(ctx, &mut out);
        let mut retried = false;
        loop {
            let header = match secret_header(&token, "access token") {
                Ok(h) => h,
                Err(f) => {
                    out.findings.push(f);
                    return out;
                }
            };
            let req = ctx
                .client
                .get(url.clone())
                .header("x-amz-access-token", header)
                .header(
                    "x-amz-date",
                    Utc::now().format("%Y%m%dT%H%M%SZ").to_string(),
                )
                .header(
                    reqwest::header::USER_AGENT,
                    format!("{} (Language=Rust)", crate::http::user_agent()),
                );
            let answer = match send(ctx.client, req, ctx.timeout()).await {
                Ok(a) => a,
                Err(f) => {
                    out.findings.push(f);
                    return out;
                }
            };
            out.facts.http_status = Some(answer.status);
            if answer.status == 200 {
                read_participations(&answer, &ctx.store.marketplaces, &mut out);
                return out;
            }
            match classify_api_error(&answer) {
                ApiError::Expired if !retried => {
                    retried = true;
                    token = match access_token(ctx, Some(&token)).await {
                        Ok(t) => t,
                        Err(f) => {
                            out.findings.push(f);
                            return out;
                        }
                    };
                }
                ApiError::Expired => {
                    out.findings.push(Finding::new(
                        FindingKind::AuthRejected,
                        "SP-API reports a freshly exchanged access token as expired",
                    ));
                    return out;
                }
                ApiError::Finding(f) => {
                    out.findings.push(f);
                    return out;
                }
            }
        }
    }
}

/// A short fingerprint of the refresh token: tells one authorisation from the next without
/// keeping anything that could be used.
pub(crate) fn fingerprint(refresh_token: &str) -> String {
    use sha2::Digest as _;
    let d = sha2::Sha256::digest(format!("storeguard authorisation {}", refresh_token.trim()));
    hex::encode(&d[..6])
}

/// The yearly re-authorisation, once the refresh token has just worked: from the vault's
/// `authorized_at`, else inferred from the first day this authorisation was seen working.
fn authorization(ctx: &ProbeCtx<'_>, out: &mut Probed) {
    let (at, inferred) = match ctx.creds.time("authorized_at") {
        Some(t) => (t, false),
        None => {
            let Some(refresh) = ctx.creds.get("refresh_token") else {
                return;
            };
            let fp = fingerprint(refresh.expose_secret());
            let mut seen = ctx
                .memory
                .authorized_seen
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let first = match seen.as_ref() {
                Some((f, t)) if *f == fp && *t <= ctx.now => *t,
                _ => {
                    *seen = Some((fp.clone(), ctx.now));
                    ctx.now
                }
            };
            out.facts.authorization = Some(fp);
            (first, true)
        }
    };
    out.facts.authorized_at = Some(at);
    out.facts.authorized_inferred = inferred;
    let Some(lifetime) = Marketplace::Amazon
        .spec()
        .reauthorize_after
        .and_then(|d| chrono::Duration::from_std(d).ok())
    else {
        return;
    };
    let due = at + lifetime;
    out.facts.expires_at = Some(out.facts.expires_at.map_or(due, |e| e.min(due)));
    let what = if inferred {
        "Amazon app authorisation (re-authorise every 365 days; date inferred from its first working check, so at the latest)"
    } else {
        "Amazon app authorisation (re-authorise every 365 days)"
    };
    out.findings
        .extend(expiring(what, due, ctx.now, ctx.warning_window()));
}

/// Reads a 200 answer of `marketplaceParticipations` into `out`: the account's marketplaces,
/// its store name, and an `identity_mismatch` for each `expected` marketplace it lacks.
pub(crate) fn read_participations(answer: &Answer, expected: &[String], out: &mut Probed) {
    match serde_json::from_slice::<Participations>(&answer.body) {
        Ok(p) => participations(expected, p, out),
        Err(_) => out.findings.push(unrecognised(answer)),
    }
}

fn participations(expected: &[String], p: Participations, out: &mut Probed) {
    let mut ids: Vec<String> = p
        .payload
        .iter()
        .map(|x| crate::outcome::sanitize(&x.marketplace.id, 40))
        .collect();
    ids.sort();
    ids.dedup();
    out.facts.store_name = p
        .payload
        .iter()
        .filter_map(|x| x.store_name.as_deref())
        .find(|n| !n.trim().is_empty())
        .map(|n| crate::outcome::sanitize(n, 80));
    for want in expected {
        if !ids.iter().any(|id| id == want) {
            out.findings.push(Finding::new(
                FindingKind::IdentityMismatch,
                format!("marketplace {want} is not among the account's marketplaces"),
            ));
        }
    }
    out.facts.marketplaces = ids;
}

/// The cached access token, or a new one. `stale` is a token the API called expired: it is
/// replaced unless another check already replaced it. The cache lock keeps one exchange in
/// flight per store.
async fn access_token(
    ctx: &ProbeCtx<'_>,
    stale: Option<&SecretString>,
) -> Result<SecretString, Finding> {
    let mut cache = ctx.memory.lwa.lock().await;
    let generation = ctx.creds.generation();
    if let Some(c) = cache.as_ref() {
        let usable = c.valid_until > Instant::now() && c.generation == generation;
        let is_stale = stale.is_some_and(|s| s.expose_secret() == c.access.expose_secret());
        if usable && !is_stale {
            return Ok(c.access.clone());
        }
    }
    *cache = None;
    let (access, lifetime) = exchange(ctx).await?;
    *cache = Some(CachedToken {
        access: access.clone(),
        valid_until: valid_until(Instant::now(), lifetime),
        generation,
    });
    Ok(access)
}

/// Until when an access token with this lifetime is used: a minute of margin, and never more
/// than a day (LWA tokens live an hour; found by fuzzing: `expires_in` near `u64::MAX`
/// overflowed `Instant` and panicked the check).
pub(crate) fn valid_until(now: Instant, lifetime: Duration) -> Instant {
    let keep = lifetime
        .min(Duration::from_secs(86_400))
        .saturating_sub(Duration::from_secs(60));
    now.checked_add(keep).unwrap_or(now)
}

/// `POST /auth/o2/token` with the refresh token.
async fn exchange(ctx: &ProbeCtx<'_>) -> Result<(SecretString, Duration), Finding> {
    let refresh = ctx.secret("refresh_token")?;
    let id = ctx.secret("lwa_client_id")?;
    let secret = ctx.secret("lwa_client_secret")?;
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh.expose_secret().trim()),
        ("client_id", id.expose_secret().trim()),
        ("client_secret", secret.expose_secret().trim()),
    ];
    let req = ctx
        .client
        .post(
            ctx.config
                .endpoints
                .get(Marketplace::Amazon, "token_endpoint")
                .clone(),
        )
        .form(&form);
    let answer = send(ctx.client, req, ctx.timeout()).await?;
    read_token(&answer)
}

/// Reads the LWA token endpoint's answer: the access token and its lifetime, or a finding.
pub(crate) fn read_token(answer: &Answer) -> Result<(SecretString, Duration), Finding> {
    if answer.status != 200 {
        return Err(classify_token_error(answer));
    }
    let t: TokenAnswer = serde_json::from_slice(&answer.body).map_err(|_| unrecognised(answer))?;
    if t.access_token.is_empty() {
        return Err(unrecognised(answer));
    }
    Ok((
        SecretString::from(t.access_token),
        Duration::from_secs(t.expires_in.unwrap_or(3600)),
    ))
}

/// Classifies an LWA token-endpoint error (decided on `error`, never on the status alone).
pub(crate) fn classify_token_error(answer: &Answer) -> Finding {
    let e: Option<LwaError> = serde_json::from_slice(&answer.body).ok();
    let code = e.as_ref().and_then(|e| e.error.as_deref()).unwrap_or("");
    let said = e
        .as_ref()
        .and_then(|e| e.error_description.as_deref())
        .map(|d| crate::outcome::sanitize(d, 120))
        .unwrap_or_default();
    let found = |kind, what: &str| {
        Finding::new(kind, format!("LWA HTTP {}: {what} ({said})", answer.status))
    };
    match code {
        "invalid_grant" => found(
            FindingKind::AuthRejected,
            "refresh token refused (invalid_grant): re-authorise the app in Seller Central",
        ),
        "invalid_client" => found(
            FindingKind::AuthRejected,
            "client secret refused (invalid_client): wrong or expired LWA client secret, rotate it",
        ),
        "unauthorized_client" => found(
            FindingKind::AuthRejected,
            "the app may not use this grant (unauthorized_client)",
        ),
        "invalid_scope" => found(
            FindingKind::PermissionMissing,
            "the app lacks the requested scope (invalid_scope)",
        ),
        _ => generic(answer).unwrap_or_else(|| unrecognised(answer)),
    }
}

/// Classifies a Selling Partner API error answer.
pub(crate) fn classify_api_error(answer: &Answer) -> ApiError {
    let errors: Option<SpErrors> = serde_json::from_slice(&answer.body).ok();
    let Some(first) = errors.and_then(|e| e.errors.into_iter().next()) else {
        return ApiError::Finding(generic(answer).unwrap_or_else(|| unrecognised(answer)));
    };
    let details = first.details.unwrap_or_default();
    let d = details.to_ascii_lowercase();
    let said = crate::outcome::sanitize(
        if details.trim().is_empty() {
            first.message.as_deref().unwrap_or("")
        } else {
            &details
        },
        120,
    );
    let found = |kind, what: &str| {
        ApiError::Finding(Finding::new(
            kind,
            format!("SP-API HTTP {}: {what} ({said})", answer.status),
        ))
    };
    match first.code.as_str() {
        "Unauthorized" if d.contains("access token you provided has expired") => ApiError::Expired,
        "Unauthorized" if d.contains("revoked, malformed or invalid") => found(
            FindingKind::AuthRejected,
            "access token refused (revoked, malformed or invalid)",
        ),
        "Unauthorized"
            if d.contains("lwa secret") || (d.contains("secret") && d.contains("expired")) =>
        {
            found(
                FindingKind::AuthRejected,
                "LWA client secret expired: rotate it in Developer Central",
            )
        }
        "Unauthorized" if d.trim().is_empty() => found(
            FindingKind::PermissionMissing,
            "access denied without details: wrong region or a missing role",
        ),
        "QuotaExceeded" => ApiError::Finding(rate_limited(answer, "SP-API QuotaExceeded")),
        _ => ApiError::Finding(generic(answer).unwrap_or_else(|| unrecognised(answer))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderMap;

    fn answer(status: u16, body: serde_json::Value) -> Answer {
        Answer {
            status,
            headers: HeaderMap::new(),
            body: body.to_string().into_bytes(),
        }
    }

    #[test]
    fn token_lifetimes_are_capped() {
        // fuzz/regressions/amazon/: an `expires_in` near u64::MAX panicked the check.
        let now = Instant::now();
        for secs in [u64::MAX, u64::MAX / 2, 10 * 365 * 86_400] {
            let a = answer(
                200,
                serde_json::json!({"access_token": "Atza|x", "expires_in": secs}),
            );
            let (_, lifetime) = read_token(&a).unwrap();
            assert_eq!(
                valid_until(now, lifetime),
                now + Duration::from_secs(86_400 - 60)
            );
        }
        assert_eq!(
            valid_until(now, Duration::from_secs(3600)),
            now + Duration::from_secs(3540)
        );
        assert_eq!(valid_until(now, Duration::from_secs(5)), now);
    }

    #[test]
    fn lwa_error_table() {
        use FindingKind::*;
        for (status, error, want) in [
            (400, "invalid_grant", AuthRejected),
            (401, "invalid_client", AuthRejected),
            (400, "unauthorized_client", AuthRejected),
            (400, "invalid_scope", PermissionMissing),
            (400, "something_new", ProtocolError),
        ] {
            let a = answer(
                status,
                serde_json::json!({"error": error, "error_description": "x"}),
            );
            assert_eq!(classify_token_error(&a).kind, want, "{error}");
        }
        let f = classify_token_error(&answer(
            401,
            serde_json::json!({"error": "invalid_client", "error_description": "Client authentication failed"}),
        ));
        assert!(f.detail.contains("client secret"), "{}", f.detail);
    }

    fn sp(status: u16, code: &str, details: &str) -> ApiError {
        classify_api_error(&answer(
            status,
            serde_json::json!({"errors": [{"code": code, "message": "Access to requested resource is denied.", "details": details}]}),
        ))
    }

    fn kind(e: ApiError) -> Option<FindingKind> {
        match e {
            ApiError::Expired => None,
            ApiError::Finding(f) => Some(f.kind),
        }
    }

    #[test]
    fn sp_api_error_table() {
        use FindingKind::*;
        assert!(matches!(
            sp(
                403,
                "Unauthorized",
                "The access token you provided has expired."
            ),
            ApiError::Expired
        ));
        assert_eq!(
            kind(sp(
                403,
                "Unauthorized",
                "The access token you provided is revoked, malformed or invalid."
            )),
            Some(AuthRejected)
        );
        assert_eq!(
            kind(sp(
                403,
                "Unauthorized",
                "The LWA secret token you provided has expired."
            )),
            Some(AuthRejected)
        );
        assert_eq!(kind(sp(403, "Unauthorized", "")), Some(PermissionMissing));
        assert_eq!(kind(sp(429, "QuotaExceeded", "")), Some(RateLimited));
        assert_eq!(kind(sp(400, "InvalidInput", "")), Some(ProtocolError));
        assert_eq!(
            kind(sp(403, "Unauthorized", "Something else entirely")),
            Some(ProtocolError)
        );
        assert_eq!(
            kind(classify_api_error(&Answer {
                status: 403,
                headers: HeaderMap::new(),
                body: b"<html>denied</html>".to_vec()
            })),
            Some(ProtocolError)
        );
    }
}
