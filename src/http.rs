//! The one way storeguard makes HTTP requests (SECURITY.md, "HTTP client defaults").
//!
//! rustls, no redirects followed (a cross-host redirect would carry credentials along), no
//! Referer, connect/read/total timeouts, `user-agent: storeguard/<version>`, plain http only to
//! loopback, bodies read in chunks up to a cap, and errors printed without their URL (URLs can
//! carry tokens).

use futures_util::StreamExt;
use std::time::Duration;
use url::Url;

/// Bodies larger than this are cut off and treated as a protocol error.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// User agent sent on every request.
pub fn user_agent() -> String {
    format!("storeguard/{}", crate::VERSION)
}

/// A client builder with storeguard's hygiene applied; callers add a proxy if they need one.
#[allow(clippy::disallowed_methods)]
pub fn client_builder(timeout: Duration) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .referer(false)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .read_timeout(timeout)
        .timeout(timeout)
        .user_agent(user_agent())
        .https_only(false) // plain http is allowed only to loopback: enforced by `check_url`
        .pool_idle_timeout(Duration::from_secs(90))
}

/// Whether `host` (a name, an IPv4 address, or an IPv6 one with or without brackets) is
/// `localhost` or a loopback address. The one rule for "plain text is allowed here": http
/// endpoints, plain SMTP.
pub fn is_loopback_host(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Whether `url`'s host is loopback ([`is_loopback_host`]).
pub fn is_loopback_url(url: &Url) -> bool {
    url.host_str().is_some_and(is_loopback_host)
}

/// Refuses plain http to anything but loopback.
pub fn check_url(url: &Url) -> Result<(), HttpError> {
    match url.scheme() {
        "https" => Ok(()),
        "http" => {
            if is_loopback_url(url) {
                Ok(())
            } else {
                Err(HttpError::InsecureUrl)
            }
        }
        _ => Err(HttpError::InsecureUrl),
    }
}

/// Transport-level failures, without URLs.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("timed out")]
    Timeout,
    #[error("connection failed: {0}")]
    Connect(String),
    #[error("response body larger than {} KiB", MAX_BODY_BYTES / 1024)]
    TooLarge,
    #[error("refusing plain http to a host that is not loopback")]
    InsecureUrl,
    #[error("request failed: {0}")]
    Other(String),
}

impl HttpError {
    /// Classifies a reqwest error with its URL removed.
    pub fn from_reqwest(e: reqwest::Error) -> Self {
        let e = e.without_url();
        if e.is_timeout() {
            HttpError::Timeout
        } else if e.is_connect() {
            HttpError::Connect(connect_cause(&e))
        } else {
            HttpError::Other(error_chain(&e))
        }
    }
}

/// An error and its sources on one sanitised line, at most `max` characters.
pub fn error_chain_capped(e: &dyn std::error::Error, max: usize) -> String {
    chain_without(e, &[], max)
}

/// The chain of `e` joined with `: `, leaving out layers whose text is in `skip` or already
/// said by an outer layer; all of it when every layer would be left out.
fn chain_without(e: &dyn std::error::Error, skip: &[&str], max: usize) -> String {
    let mut s = String::new();
    let mut next = Some(e);
    while let Some(layer) = next {
        let t = layer.to_string();
        if !skip.contains(&t.as_str()) && !s.contains(&t) {
            if !s.is_empty() {
                s.push_str(": ");
            }
            s.push_str(&t);
        }
        next = layer.source();
    }
    if s.is_empty() && !skip.is_empty() {
        return chain_without(e, &[], max);
    }
    crate::outcome::sanitize(&s, max)
}

fn error_chain(e: &dyn std::error::Error) -> String {
    error_chain_capped(e, 200)
}

/// Layers of a failed connection that only say a request or a connection failed, which
/// `HttpError::Connect` already says: left out so the cause (DNS, refused, TLS) leads.
const CONNECT_WRAPPERS: [&str; 3] = [
    "error sending request",
    "client error (Connect)",
    "error resolving DNS",
];

/// Why a connection failed, without the layers of [`CONNECT_WRAPPERS`].
fn connect_cause(e: &dyn std::error::Error) -> String {
    chain_without(e, &CONNECT_WRAPPERS, 200)
}

/// Reads a response body in chunks, failing once it passes `cap` bytes.
pub async fn read_capped(resp: reqwest::Response, cap: usize) -> Result<Vec<u8>, HttpError> {
    let mut body = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(HttpError::from_reqwest)?;
        if body.len() + chunk.len() > cap {
            return Err(HttpError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A short printable excerpt of an unrecognised body, for `protocol_error` details.
pub fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(400)]);
    crate::outcome::sanitize(&text, 120)
}

/// Parses `Retry-After` (seconds form), capped so a hostile server cannot park us for years.
pub fn retry_after(headers: &reqwest::header::HeaderMap, cap: Duration) -> Option<Duration> {
    let v = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    let secs: u64 = v.trim().parse().ok()?;
    Some(Duration::from_secs(secs).min(cap))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_loopback_rule_for_names_and_urls() {
        for h in [
            "localhost",
            "LOCALHOST",
            "127.0.0.1",
            "127.8.9.10",
            "::1",
            "[::1]",
        ] {
            assert!(is_loopback_host(h), "{h}");
        }
        for h in [
            "example.com",
            "10.0.0.1",
            "[::2]",
            "localhost.example.com",
            "",
        ] {
            assert!(!is_loopback_host(h), "{h}");
        }
        assert!(is_loopback_url(&Url::parse("http://[::1]:8080/").unwrap()));
        assert!(is_loopback_url(&Url::parse("http://127.1/").unwrap()));
        assert!(!is_loopback_url(
            &Url::parse("http://127.0.0.1.example.com/").unwrap()
        ));
    }

    #[test]
    fn plain_http_only_to_loopback() {
        assert!(check_url(&Url::parse("http://127.0.0.1:1/x").unwrap()).is_ok());
        assert!(check_url(&Url::parse("http://localhost/x").unwrap()).is_ok());
        assert!(check_url(&Url::parse("http://[::1]/x").unwrap()).is_ok());
        assert!(check_url(&Url::parse("https://example.com/x").unwrap()).is_ok());
        assert!(check_url(&Url::parse("http://example.com/x").unwrap()).is_err());
        assert!(check_url(&Url::parse("ftp://127.0.0.1/x").unwrap()).is_err());
    }

    #[tokio::test]
    async fn a_refused_connection_names_its_cause_first() {
        // A port nobody listens on: bind one, then close it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let client = client_builder(Duration::from_secs(5)).build().unwrap();
        let e = client
            .get(format!("http://127.0.0.1:{port}/v1/roles"))
            .send()
            .await
            .unwrap_err();
        let text = HttpError::from_reqwest(e).to_string();
        assert!(
            text.starts_with("connection failed: tcp connect error: Connection refused"),
            "{text}"
        );
        for wrapper in CONNECT_WRAPPERS {
            assert!(!text.contains(wrapper), "{text}");
        }
        assert!(
            !text.contains(&port.to_string()),
            "the URL stays out: {text}"
        );
    }

    #[test]
    fn retry_after_is_capped() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert(reqwest::header::RETRY_AFTER, "999999999".parse().unwrap());
        assert_eq!(
            retry_after(&h, Duration::from_secs(3600)),
            Some(Duration::from_secs(3600))
        );
        h.insert(reqwest::header::RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(
            retry_after(&h, Duration::from_secs(3600)),
            Some(Duration::from_secs(7))
        );
    }
}
