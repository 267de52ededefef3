//! Entry points for the fuzz harness (`examples/fuzz.rs`, replayed by `tests/it/fuzz.rs`): every
//! parser a probe runs on a marketplace's answer, fed arbitrary status, headers and body. Each
//! must return (a finding, facts, nothing) and never panic. Not an API.

use super::{Answer, Probed, amazon, generic, iop, ozon, shopee, tiktok, wildberries, yandex};
use chrono::{DateTime, Utc};
use reqwest::header::HeaderMap;
use std::time::{Duration, Instant};

fn answer(status: u16, headers: HeaderMap, body: &[u8]) -> Answer {
    Answer {
        status,
        headers,
        body: body.to_vec(),
    }
}

fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_780_000_000, 0).unwrap_or_default()
}

/// Ozon: error classification, `/v1/roles`, `/v1/seller/info`.
pub fn ozon(status: u16, headers: HeaderMap, body: &[u8]) {
    let a = answer(status, headers, body);
    let _ = generic(&a);
    let _ = ozon::classify_error(&a);
    let mut out = Probed::default();
    let _ = ozon::read_roles(&a, now(), Duration::from_secs(14 * 86_400), &mut out);
    let _ = ozon::read_premium(&a.body);
}

/// Amazon: the LWA token answer (and the cache lifetime it sets), SP-API errors,
/// `marketplaceParticipations`.
pub fn amazon(status: u16, headers: HeaderMap, body: &[u8]) {
    let a = answer(status, headers, body);
    let _ = amazon::classify_token_error(&a);
    if let Ok((_, lifetime)) = amazon::read_token(&a) {
        let _ = amazon::valid_until(Instant::now(), lifetime);
    }
    let _ = amazon::classify_api_error(&a);
    let mut out = Probed::default();
    amazon::read_participations(&a, &["ATVPDKIKX0DER".to_string()], &mut out);
}

/// Wildberries: error classification, the token's payload (from the body, as if it were a
/// token), seller-info.
pub fn wildberries(status: u16, headers: HeaderMap, body: &[u8]) {
    let a = answer(status, headers, body);
    let _ = wildberries::classify_error(&a);
    let _ = wildberries::claims(&String::from_utf8_lossy(body));
}

/// Shopee: error classification, shop info, the refresh answer.
pub fn shopee(status: u16, headers: HeaderMap, body: &[u8]) {
    let a = answer(status, headers, body);
    let mut out = Probed::default();
    let _ = shopee::interpret(&a, now(), Duration::from_secs(14 * 86_400), &mut out);
    let _ = shopee::read_tokens(&a, now(), secrecy::SecretString::from("spent".to_string()));
}

/// TikTok Shop: error classification, the authorised shops, the refresh answer.
pub fn tiktok_shop(status: u16, headers: HeaderMap, body: &[u8]) {
    let a = answer(status, headers, body);
    let _ = tiktok::interpret(&a, Some("7000714532876273420"), &mut Probed::default());
    let _ = tiktok::read_tokens(&a, secrecy::SecretString::from("spent".to_string()));
}

/// Yandex Market: error classification, campaigns, the key's scopes.
pub fn yandex_market(status: u16, headers: HeaderMap, body: &[u8]) {
    let a = answer(status, headers, body);
    let _ = yandex::classify_error(&a);
    let mut out = Probed::default();
    let _ = yandex::read_campaigns(&a, &mut out);
    let _ = yandex::read_scopes(&a.body);
}

/// Alibaba.com and AliExpress (IOP): both reply shapes, error codes, the profile call and
/// the token-refresh answer.
pub fn iop(status: u16, headers: HeaderMap, body: &[u8]) {
    let a = answer(status, headers, body);
    for flavor in [
        iop::Flavor::Alibaba,
        iop::Flavor::Aliexpress,
        iop::Flavor::Lazada,
    ] {
        let _ = iop::interpret(flavor, &a);
    }
    match iop::parse_reply(&a.body) {
        Some(iop::Reply::Ok(v)) => {
            let _ = iop::parse_tokens(&v, now());
        }
        Some(iop::Reply::Err { code, message }) => {
            let _ = iop::classify(&code, &message);
        }
        None => {}
    }
}
