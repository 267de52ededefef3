//! TikTok Shop Partner API (202309) probe: `GET /authorization/202309/shops` with the
//! `x-tts-access-token` header, signed (lower-case hex HMAC-SHA256 keyed by the app secret over
//! secret + path + sorted parameters + body + secret). The configured shop must be among the
//! shops the authorisation lists.
//!
//! The access token (7 days by default) is refreshed on the auth host only within 30 minutes of
//! its expiry or when the API reports it expired; every refresh returns a new pair, which is
//! durable in the vault before it is used.

use super::{
    Answer, Probe, ProbeCtx, Probed, endpoint, expiring, generic, json_text, rate_limited, rotate,
    send, unrecognised,
};
use crate::model::Marketplace;
use crate::outcome::{Finding, FindingKind, sanitize};
use crate::vault::Rotation;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use sha2::Sha256;

const REFRESH_AHEAD: chrono::Duration = chrono::Duration::minutes(30);
const SHOPS: &str = "/authorization/202309/shops";
const REFRESH: &str = "/api/v2/token/refresh";

/// The TikTok Shop probe.
pub struct TiktokShop;

/// TikTok Shop's signature over `path`, the query `params` (all but `sign` and
/// `access_token`, sorted by key, as key then value) and `body`, wrapped in the secret.
pub fn sign(secret: &[u8], path: &str, params: &[(&str, &str)], body: &[u8]) -> String {
    let mut sorted: Vec<&(&str, &str)> = params
        .iter()
        .filter(|(k, _)| *k != "sign" && *k != "access_token")
        .collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(secret);
    mac.update(path.as_bytes());
    for (k, v) in sorted {
        mac.update(k.as_bytes());
        mac.update(v.as_bytes());
    }
    mac.update(body);
    mac.update(secret);
    hex::encode(mac.finalize().into_bytes())
}

/// How an error answer is handled.
pub(crate) enum TiktokError {
    /// The access token expired: refresh, then try once more.
    Expired,
    Finding(Finding),
}

/// `code` and `message` of a JSON answer.
fn code_of(body: &[u8]) -> Option<(i64, String, Value)> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let code = v.get("code").and_then(json_text)?.parse::<i64>().ok()?;
    let message = v
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    Some((code, message, v))
}

/// Classifies an error code (MARKETPLACES-NEXT.md §5, "Common errors").
pub(crate) fn classify(answer: &Answer, code: i64, message: &str) -> TiktokError {
    let said = sanitize(message, 120);
    let found = |kind, what: &str| {
        TiktokError::Finding(Finding::new(
            kind,
            format!("TikTok Shop {code}: {what} ({said})"),
        ))
    };
    match code {
        105002 => TiktokError::Expired,
        36009004 | 106001 | 101000 => found(
            FindingKind::AuthRejected,
            "credentials, signature or timestamp refused",
        ),
        36004005 | 36004001 | 36004004 => found(
            FindingKind::AuthRejected,
            "refresh refused: the seller must authorise the app again",
        ),
        105005 => found(
            FindingKind::PermissionMissing,
            "the app or token lacks a required scope",
        ),
        36009033 => found(
            FindingKind::IpRestricted,
            "this server's IP address is not in the app's allow list",
        ),
        36009002 => TiktokError::Finding(rate_limited(
            answer,
            &format!("TikTok Shop {code}: too many requests ({said})"),
        )),
        106013 => found(
            FindingKind::IdentityMismatch,
            "the shop is not this authorisation's",
        ),
        _ => TiktokError::Finding(match generic(answer) {
            Some(f) => f,
            None => Finding::new(
                FindingKind::ProtocolError,
                format!("unrecognised TikTok Shop error {code}: {said}"),
            ),
        }),
    }
}

/// Reads the authorised-shops answer into `out`; the configured shop must be listed.
pub(crate) fn interpret(
    answer: &Answer,
    want: Option<&str>,
    out: &mut Probed,
) -> Result<(), TiktokError> {
    let Some((code, message, v)) = code_of(&answer.body) else {
        return Err(TiktokError::Finding(
            generic(answer).unwrap_or_else(|| unrecognised(answer)),
        ));
    };
    if code != 0 {
        return Err(classify(answer, code, &message));
    }
    let Some(shops) = v
        .get("data")
        .and_then(|d| d.get("shops"))
        .and_then(Value::as_array)
    else {
        return Err(TiktokError::Finding(unrecognised(answer)));
    };
    let listed: Vec<(String, &Value)> = shops
        .iter()
        .filter_map(|s| {
            s.get("id")
                .and_then(json_text)
                .map(|id| (sanitize(&id, 40), s))
        })
        .collect();
    if listed.is_empty() {
        return Err(TiktokError::Finding(Finding::new(
            FindingKind::AuthRejected,
            "the authorisation lists no shop: the seller deauthorised the app",
        )));
    }
    let ours = match want {
        Some(w) => listed.iter().find(|(id, _)| id == w.trim()),
        None => listed.first(),
    };
    let Some((id, shop)) = ours else {
        return Err(TiktokError::Finding(Finding::new(
            FindingKind::IdentityMismatch,
            format!(
                "the authorisation is for shop(s) {}, not the configured one",
                listed
                    .iter()
                    .map(|(id, _)| id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )));
    };
    out.facts.account = Some(id.clone());
    out.facts.store_name = shop
        .get("name")
        .and_then(Value::as_str)
        .map(|n| sanitize(n, 80));
    if let Some(r) = shop.get("region").and_then(Value::as_str) {
        out.facts.marketplaces = vec![sanitize(r, 8)];
    }
    Ok(())
}

struct App {
    key: String,
    secret: SecretString,
}

impl Probe for TiktokShop {
    fn marketplace(&self) -> Marketplace {
        Marketplace::TiktokShop
    }

    async fn probe(&self, ctx: &ProbeCtx<'_>) -> Probed {
        let mut out = Probed::default();
        if let Err(f) = probe_inner(ctx, &mut out).await {
            out.findings.push(f);
        }
        if let Some(exp) = ctx.creds.time("refresh_token_expires_at") {
            out.facts.expires_at = Some(exp);
            out.findings.extend(expiring(
                "TikTok Shop refresh token",
                exp,
                ctx.now,
                ctx.warning_window(),
            ));
        }
        out
    }
}

async fn probe_inner(ctx: &ProbeCtx<'_>, out: &mut Probed) -> Result<(), Finding> {
    let app = App {
        key: ctx.secret("app_key")?.expose_secret().trim().to_string(),
        secret: ctx.secret("app_secret")?,
    };
    let mut refreshed = false;
    if ctx
        .creds
        .time("access_token_expires_at")
        .is_some_and(|t| t - ctx.now < REFRESH_AHEAD)
    {
        refresh(ctx, &app).await?;
        out.facts.tokens_renewed = true;
        refreshed = true;
    }
    loop {
        let token = ctx.secret_header("access_token")?;
        let ts = Utc::now().timestamp().to_string();
        let params = [("app_key", app.key.as_str()), ("timestamp", ts.as_str())];
        let signature = sign(app.secret.expose_secret().as_bytes(), SHOPS, &params, b"");
        let base = ctx.config.base_url(ctx.store);
        let req = ctx
            .client
            .get(endpoint(base, SHOPS))
            .query(&params)
            .query(&[("sign", signature.as_str())])
            .header("x-tts-access-token", token)
            .header(reqwest::header::CONTENT_TYPE, "application/json");
        let answer = send(ctx.client, req, ctx.timeout()).await?;
        out.facts.http_status = Some(answer.status);
        match interpret(&answer, ctx.store.account.as_deref(), out) {
            Ok(()) => return Ok(()),
            Err(TiktokError::Expired) if !refreshed => {
                refreshed = true;
                refresh(ctx, &app).await?;
                out.facts.tokens_renewed = true;
            }
            Err(TiktokError::Expired) => {
                return Err(Finding::new(
                    FindingKind::AuthRejected,
                    "TikTok Shop reports a freshly refreshed access token as expired",
                ));
            }
            Err(TiktokError::Finding(f)) => return Err(f),
        }
    }
}

/// Refreshes the tokens and makes them durable before returning (one refresh in flight per
/// store; one another check or process made is adopted instead).
async fn refresh(ctx: &ProbeCtx<'_>, app: &App) -> Result<(), Finding> {
    let Some(guard) = rotate::claim(ctx).await else {
        return Ok(());
    };
    let refresh_token = ctx.secret("refresh_token")?;
    let auth = ctx
        .config
        .endpoints
        .get(Marketplace::TiktokShop, "auth_endpoint");
    let req = ctx.client.get(endpoint(auth, REFRESH)).query(&[
        ("app_key", app.key.as_str()),
        ("app_secret", app.secret.expose_secret()),
        ("refresh_token", refresh_token.expose_secret().trim()),
        ("grant_type", "refresh_token"),
    ]);
    let answer = send(ctx.client, req, ctx.timeout()).await?;
    let rotation = read_tokens(&answer, refresh_token)?;
    rotate::persist(ctx, guard, rotation).await
}

/// The new pair from a refresh answer (expiries are absolute unix times), as a vault
/// rotation that spends `spent`.
pub(crate) fn read_tokens(answer: &Answer, spent: SecretString) -> Result<Rotation, Finding> {
    let Some((code, message, v)) = code_of(&answer.body) else {
        return Err(generic(answer).unwrap_or_else(|| unrecognised(answer)));
    };
    if code != 0 {
        return Err(match classify(answer, code, &message) {
            TiktokError::Expired => Finding::new(
                FindingKind::AuthRejected,
                format!("token refresh refused: {}", sanitize(&message, 120)),
            ),
            TiktokError::Finding(f) => f,
        });
    }
    let data = v.get("data");
    let text = |k: &str| {
        data.and_then(|d| d.get(k))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(|s| SecretString::from(s.to_string()))
    };
    let (Some(access), Some(refresh)) = (text("access_token"), text("refresh_token")) else {
        return Err(unrecognised(answer));
    };
    let at = |k: &str| -> Option<DateTime<Utc>> {
        data.and_then(|d| d.get(k))
            .and_then(json_text)
            .and_then(|s| s.parse::<i64>().ok())
            .filter(|s| *s > 0)
            .and_then(|s| DateTime::<Utc>::from_timestamp(s, 0))
    };
    Ok(rotate::token_pair(
        spent,
        access,
        refresh,
        at("access_token_expire_in"),
        at("refresh_token_expire_in"),
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

    fn kind(status: u16, code: i64) -> Option<FindingKind> {
        let a = answer(
            status,
            &format!(r#"{{"code":{code},"message":"m","request_id":"r"}}"#),
        );
        match interpret(&a, Some("1"), &mut Probed::default()) {
            Err(TiktokError::Expired) => None,
            Err(TiktokError::Finding(f)) => Some(f.kind),
            Ok(()) => panic!("{code} read as success"),
        }
    }

    #[test]
    fn error_table() {
        use FindingKind::*;
        assert_eq!(kind(401, 105002), None);
        for (status, code, want) in [
            (401, 36009004, AuthRejected),
            (401, 106001, AuthRejected),
            (401, 101000, AuthRejected),
            (401, 36004005, AuthRejected),
            (401, 36004001, AuthRejected),
            (403, 105005, PermissionMissing),
            (403, 36009033, IpRestricted),
            (429, 36009002, RateLimited),
            (400, 106013, IdentityMismatch),
            (404, 36009009, ProtocolError),
            (405, 36009010, ProtocolError),
            (500, 36009003, Unreachable),
        ] {
            assert_eq!(kind(status, code), Some(want), "{code}");
        }
    }

    #[test]
    fn the_configured_shop_must_be_authorised() {
        let a = answer(
            200,
            r#"{"code":0,"message":"Success","request_id":"r","data":{"shops":[{"id":"7000714532876273420","name":"Maomao beauty shop","region":"GB","seller_type":"CROSS_BORDER","cipher":"GCP_x","code":"CNGBCBA4LLU8"}]}}"#,
        );
        let mut out = Probed::default();
        assert!(interpret(&a, Some("7000714532876273420"), &mut out).is_ok());
        assert_eq!(out.facts.store_name.as_deref(), Some("Maomao beauty shop"));
        assert_eq!(out.facts.marketplaces, vec!["GB"]);
        assert!(matches!(
            interpret(&a, Some("1"), &mut Probed::default()),
            Err(TiktokError::Finding(f)) if f.kind == FindingKind::IdentityMismatch
        ));
        let none = answer(200, r#"{"code":0,"message":"Success","data":{"shops":[]}}"#);
        assert!(matches!(
            interpret(&none, Some("1"), &mut Probed::default()),
            Err(TiktokError::Finding(f)) if f.kind == FindingKind::AuthRejected
        ));
    }

    #[test]
    fn signature_wraps_path_params_and_body_in_the_secret() {
        let s = sign(
            b"sec",
            SHOPS,
            &[
                ("timestamp", "1700000000"),
                ("app_key", "k"),
                ("access_token", "x"),
                ("sign", "y"),
            ],
            b"",
        );
        let mut mac = Hmac::<Sha256>::new_from_slice(b"sec").unwrap();
        mac.update(b"sec/authorization/202309/shopsapp_keyktimestamp1700000000sec");
        assert_eq!(s, hex::encode(mac.finalize().into_bytes()));
    }
}
