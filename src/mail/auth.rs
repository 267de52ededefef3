//! Authentication before trust: a mail is believed to come from a marketplace only when its own
//! DKIM signature, checked here against the key the domain publishes, passes and is aligned with
//! the From domain. The provider's topmost `Authentication-Results` header is second evidence:
//! it can make a mail "unverified" instead of "spoofed", never "authenticated".

use super::{Classified, Sender};
use mail_auth::common::verify::VerifySignature;
use mail_auth::hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts,
};
use mail_auth::{AuthenticatedMessage, DkimResult, MessageAuthenticator};
use std::net::SocketAddr;
use std::time::Duration;

/// How far a mail's sender is believed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// A DKIM signature of the From domain (or its parent) verified here.
    Authenticated,
    /// No verdict of our own (a DNS failure, or a signature the provider vouched for but that
    /// no longer verifies): shown, never trusted as the marketplace.
    Unverified,
    /// Claims a marketplace's own domain without a valid aligned signature, or has several
    /// From addresses.
    Spoofed,
    /// Claims a marketplace from another domain.
    LookAlike,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Authenticated => "authenticated",
            Verdict::Unverified => "unverified",
            Verdict::Spoofed => "spoofed",
            Verdict::LookAlike => "look-alike",
        }
    }

    pub fn parse(s: &str) -> Option<Verdict> {
        [
            Verdict::Authenticated,
            Verdict::Unverified,
            Verdict::Spoofed,
            Verdict::LookAlike,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }

    /// Whether the mail is a forgery that claims a marketplace.
    pub fn is_forged(self) -> bool {
        matches!(self, Verdict::Spoofed | Verdict::LookAlike)
    }
}

impl Classified {
    /// The record's event name once the sender is judged: a forgery is `phishing_suspected`
    /// whatever it claims; mail no rule knows is `unclassified`.
    pub fn event_name(&self, verdict: Verdict) -> &'static str {
        if verdict.is_forged() {
            super::MailEvent::PhishingSuspected.as_str()
        } else {
            self.event.map_or("unclassified", |e| e.as_str())
        }
    }
}

/// Checks DKIM signatures with a DNS resolver of its own.
pub struct Verifier {
    auth: MessageAuthenticator,
}

impl Verifier {
    /// `resolver`: the DNS server to ask (`[mail] resolver`); `None`: the system's.
    pub fn new(resolver: Option<SocketAddr>) -> Result<Verifier, String> {
        let mut opts = ResolverOpts::default();
        opts.timeout = Duration::from_secs(3);
        opts.attempts = 2;
        let auth = match resolver {
            None => MessageAuthenticator::new_system_conf(),
            Some(addr) => {
                let mut udp = ConnectionConfig::udp();
                udp.port = addr.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = addr.port();
                let mut server = NameServerConfig::udp_and_tcp(addr.ip());
                server.connections = vec![udp, tcp];
                MessageAuthenticator::new(
                    ResolverConfig::from_parts(None, vec![], vec![server]),
                    opts,
                )
            }
        }
        .map_err(|e| format!("the DNS resolver for DKIM could not be set up: {e}"))?;
        Ok(Verifier { auth })
    }

    /// The verdict on one raw message that `classified` came from.
    pub async fn verdict(&self, raw: &[u8], classified: &Classified) -> Verdict {
        match &classified.sender {
            Sender::LookAlike(_) => return Verdict::LookAlike,
            Sender::Ambiguous => return Verdict::Spoofed,
            Sender::Marketplace(_) => {}
        }
        let Some(msg) = AuthenticatedMessage::parse(raw) else {
            return Verdict::Spoofed;
        };
        let outputs = self.auth.verify_dkim(&msg).await;
        let mut dns_trouble = false;
        for o in &outputs {
            let Some(sig) = o.signature() else { continue };
            if !aligned(sig.domain(), &classified.domain) {
                continue;
            }
            match o.result() {
                DkimResult::Pass => return Verdict::Authenticated,
                DkimResult::TempError(_) => dns_trouble = true,
                _ => {}
            }
        }
        let provider = top_results(raw);
        if dns_trouble || provider.is_some_and(|r| r.vouches_for(&classified.domain)) {
            Verdict::Unverified
        } else {
            Verdict::Spoofed
        }
    }
}

/// Relaxed alignment (RFC 7489 §3.1.1) without the public-suffix list: the signing domain is
/// the From domain, or one is below the other and the shorter has at least two labels.
pub fn aligned(signer: &str, from: &str) -> bool {
    let (s, f) = (signer.to_ascii_lowercase(), from.to_ascii_lowercase());
    let (s, f) = (s.trim_end_matches('.'), f.trim_end_matches('.'));
    if s.is_empty() || f.is_empty() {
        return false;
    }
    let below = |long: &str, short: &str| {
        long.strip_suffix(short)
            .is_some_and(|head| head.ends_with('.'))
            && short.contains('.')
    };
    s == f || below(f, s) || below(s, f)
}

/// What the topmost `Authentication-Results` header says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProviderResults {
    /// `dkim=pass` results, by their `header.d` (or `header.i` domain).
    pub dkim_pass: Vec<String>,
    /// `dmarc=pass` for this `header.from`.
    pub dmarc_pass: Vec<String>,
    /// Whether any method said `fail`.
    pub any_fail: bool,
}

impl ProviderResults {
    fn vouches_for(&self, from: &str) -> bool {
        !self.any_fail
            && (self.dkim_pass.iter().any(|d| aligned(d, from))
                || self.dmarc_pass.iter().any(|d| aligned(d, from)))
    }
}

/// The first `Authentication-Results` header of the raw message, parsed. Only the topmost is
/// read: the receiving provider adds it above anything the sender may have written.
pub fn top_results(raw: &[u8]) -> Option<ProviderResults> {
    let head_end = find(raw, b"\r\n\r\n").or_else(|| find(raw, b"\n\n"))?;
    let head = String::from_utf8_lossy(&raw[..head_end]);
    let mut value: Option<String> = None;
    for line in head.lines() {
        if let Some(v) = value.as_mut() {
            if line.starts_with([' ', '\t']) {
                v.push(' ');
                v.push_str(line.trim());
                continue;
            }
            break;
        }
        if let Some((name, rest)) = line.split_once(':')
            && name.trim().eq_ignore_ascii_case("authentication-results")
        {
            value = Some(rest.trim().to_string());
        }
    }
    value.map(|v| parse_results(&v))
}

/// Parses an `Authentication-Results` value (RFC 8601): `authserv-id; method=result prop=v …`.
pub fn parse_results(value: &str) -> ProviderResults {
    let mut out = ProviderResults::default();
    let value = strip_comments(value);
    for (i, part) in value.split(';').enumerate() {
        if i == 0 {
            continue; // the authserv-id
        }
        let mut words = part.split_whitespace();
        let Some((method, result)) = words.next().and_then(|w| w.split_once('=')) else {
            continue;
        };
        let (method, result) = (method.to_ascii_lowercase(), result.to_ascii_lowercase());
        let props: Vec<(String, String)> = words
            .filter_map(|w| w.split_once('='))
            .map(|(k, v)| {
                (
                    k.to_ascii_lowercase(),
                    v.trim_matches('"').to_ascii_lowercase(),
                )
            })
            .collect();
        let prop = |k: &str| props.iter().find(|(p, _)| p == k).map(|(_, v)| v.clone());
        if result == "fail" {
            out.any_fail = true;
        }
        if result != "pass" {
            continue;
        }
        match method.as_str() {
            "dkim" => {
                let d = prop("header.d").or_else(|| {
                    prop("header.i").and_then(|i| i.rsplit_once('@').map(|(_, d)| d.to_string()))
                });
                out.dkim_pass.extend(d);
            }
            "dmarc" => out.dmarc_pass.extend(prop("header.from")),
            _ => {}
        }
    }
    out
}

/// The text without `( … )` comments (nested ones too).
fn strip_comments(s: &str) -> String {
    let mut depth = 0usize;
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            c if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_signature_is_believed_only_when_its_key_is_found() {
        use crate::fake::dns::{DkimKey, Dns, mail};
        let dns = Dns::start().await.unwrap();
        let key = DkimKey::new("amazon.com", "s1", Some(&dns));
        let raw = key.sign(&mail(
            "me@qq.com",
            "Amazon <account-update@amazon.com>",
            "Amazon Sign-in attempt",
            "v1@amazon.com",
            "Someone who knows your password is attempting to sign-in.",
        ));
        let catalogue = super::super::Catalogue::builtin();
        let c = catalogue.classify(&raw).unwrap();
        let verifier = Verifier::new(Some(dns.addr)).unwrap();
        assert_eq!(verifier.verdict(&raw, &c).await, Verdict::Authenticated);
        // The body changed after signing: the signature fails.
        let text = String::from_utf8(raw.clone()).unwrap();
        let tampered = text.replace("attempting", "trying").into_bytes();
        let t = catalogue.classify(&tampered).unwrap();
        assert_eq!(verifier.verdict(&tampered, &t).await, Verdict::Spoofed);
        // No DNS answer at all: no verdict of our own.
        let silent = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let blind = Verifier::new(Some(silent.local_addr().unwrap())).unwrap();
        assert_eq!(blind.verdict(&raw, &c).await, Verdict::Unverified);
    }

    #[test]
    fn alignment_is_relaxed_but_not_loose() {
        assert!(aligned("amazon.com", "amazon.com"));
        assert!(aligned("amazon.com", "sellercentral.amazon.com"));
        assert!(aligned("mail.amazon.com", "amazon.com"));
        assert!(!aligned("com", "amazon.com"));
        assert!(!aligned("evilamazon.com", "amazon.com"));
        assert!(!aligned("amazon.com.evil.example", "amazon.com"));
        assert!(!aligned("", "amazon.com"));
    }

    #[test]
    fn only_the_topmost_results_header_counts() {
        let raw = b"Authentication-Results: mx.qq.com; dkim=fail header.d=amazon.com;\r\n \
                    dmarc=fail (p=reject) header.from=amazon.com\r\n\
                    Authentication-Results: forged.example; dkim=pass header.d=amazon.com\r\n\
                    From: x@amazon.com\r\n\r\nbody";
        let r = top_results(raw).unwrap();
        assert!(r.any_fail);
        assert!(r.dkim_pass.is_empty());
        assert!(!r.vouches_for("amazon.com"));
        let good = parse_results(
            "mx.google.com; dkim=pass (2048-bit key) header.i=@amazon.com header.s=x; \
             spf=pass smtp.mailfrom=amazon.com; dmarc=pass (p=QUARANTINE) header.from=amazon.com",
        );
        assert_eq!(good.dkim_pass, ["amazon.com"]);
        assert_eq!(good.dmarc_pass, ["amazon.com"]);
        assert!(good.vouches_for("amazon.com"));
        assert!(!good.vouches_for("amaz0n.com"));
        assert_eq!(top_results(b"From: a@b.c\r\n\r\n"), None);
    }
}
