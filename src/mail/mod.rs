//! Marketplace security mail, classified as data: who the sender claims to be, whether its
//! domain is that marketplace's or a look-alike, and which security event the mail reports
//! (a sign-in code, a new sign-in, a changed password, 2-step verification turned off …).
//!
//! This is the pure part of the mailbox watcher: raw RFC 5322 bytes in, a [`Classified`] out. It
//! follows no link and keeps no code: what it returns has every URL and every run of 4–8 digits
//! replaced, so it can be stored and alerted on. The sender verdict here is by domain only; the
//! watcher confirms a marketplace's domain with its own DKIM check before trusting it.

pub mod auth;
pub mod imap;
pub mod oauth;

use crate::outcome::FindingKind;
use serde::Deserialize;

/// The catalogue shipped in the binary.
const BUILTIN: &str = include_str!("catalogue.toml");

/// A security event a marketplace mails about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MailEvent {
    OtpRequested,
    NewSignIn,
    LoginApprovalRequested,
    PasswordResetRequested,
    PasswordChanged,
    TwoFactorChanged,
    ContactChanged,
    AccountLocked,
    AccountSuspended,
    AccountAtRisk,
    ApiKeyChanged,
    AuthorizationExpiring,
    /// Claims a marketplace from a domain that is not that marketplace's.
    PhishingSuspected,
}

impl MailEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            MailEvent::OtpRequested => "otp_requested",
            MailEvent::NewSignIn => "new_sign_in",
            MailEvent::LoginApprovalRequested => "login_approval_requested",
            MailEvent::PasswordResetRequested => "password_reset_requested",
            MailEvent::PasswordChanged => "password_changed",
            MailEvent::TwoFactorChanged => "two_factor_changed",
            MailEvent::ContactChanged => "contact_changed",
            MailEvent::AccountLocked => "account_locked",
            MailEvent::AccountSuspended => "account_suspended",
            MailEvent::AccountAtRisk => "account_at_risk",
            MailEvent::ApiKeyChanged => "api_key_changed",
            MailEvent::AuthorizationExpiring => "authorization_expiring",
            MailEvent::PhishingSuspected => "phishing_suspected",
        }
    }

    /// The finding an alert about this mail carries.
    pub fn finding(self) -> FindingKind {
        match self {
            MailEvent::OtpRequested => FindingKind::OtpRequested,
            MailEvent::NewSignIn => FindingKind::NewSignIn,
            MailEvent::LoginApprovalRequested => FindingKind::LoginApprovalRequested,
            MailEvent::PasswordResetRequested => FindingKind::PasswordResetRequested,
            MailEvent::PasswordChanged => FindingKind::PasswordChanged,
            MailEvent::TwoFactorChanged => FindingKind::TwoFactorChanged,
            MailEvent::ContactChanged => FindingKind::ContactChanged,
            MailEvent::AccountLocked => FindingKind::AccountLocked,
            MailEvent::AccountSuspended => FindingKind::AccountSuspended,
            MailEvent::AccountAtRisk => FindingKind::AccountAtRisk,
            MailEvent::ApiKeyChanged => FindingKind::ApiKeyChanged,
            MailEvent::AuthorizationExpiring => FindingKind::AuthorizationExpiring,
            MailEvent::PhishingSuspected => FindingKind::PhishingSuspected,
        }
    }

    /// Whether `login_hours` apply: a code, a new sign-in or an approval request outside them
    /// is someone else signing in.
    pub fn is_sign_in(self) -> bool {
        matches!(
            self,
            MailEvent::OtpRequested | MailEvent::NewSignIn | MailEvent::LoginApprovalRequested
        )
    }
}

/// Who sent it, judged by the From domain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sender {
    /// From one of the marketplace's own domains (to be confirmed by DKIM).
    Marketplace(String),
    /// Claims the marketplace (by domain, display name or subject) from another domain.
    LookAlike(String),
    /// Not exactly one From address: nothing in it can be trusted.
    Ambiguous,
}

/// What a mail is, once read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Classified {
    /// The marketplace the mail is from or claims to be from (catalogue id).
    pub marketplace: String,
    pub sender: Sender,
    /// The From domain, lower-case.
    pub domain: String,
    /// The event; `None` for mail from a marketplace that no rule knows ("unclassified").
    pub event: Option<MailEvent>,
    /// Whether the rule marks this event critical (2-step verification turned off).
    pub critical: bool,
    /// The subject with links and codes removed.
    pub subject: String,
    /// Labelled facts the mail gives (Amazon `When`/`Device`/`Near`, Yandex `Место`/`Программа`),
    /// with links and codes removed.
    pub facts: Vec<(String, String)>,
    /// The Message-ID, as the mail gives it (kept only as a hash: it names the recipient's
    /// provider and is the key that keeps one alert per mail).
    pub message_id: Option<String>,
    /// The mail's `Date`, when it has a readable one.
    pub sent_at: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCatalogue {
    #[serde(default)]
    marketplace: Vec<RawMarketplace>,
    #[serde(default)]
    rule: Vec<RawRule>,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct RawMarketplace {
    id: String,
    #[serde(default)]
    names: Vec<String>,
    domains: Vec<String>,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct RawRule {
    marketplace: String,
    event: MailEvent,
    #[serde(default)]
    subject: Vec<String>,
    #[serde(default)]
    body: Vec<String>,
    #[serde(default)]
    severity: Option<String>,
}

/// The senders and rules mail is classified by.
pub struct Catalogue {
    marketplaces: Vec<RawMarketplace>,
    rules: Vec<RawRule>,
}

impl Catalogue {
    /// The catalogue shipped in the binary.
    pub fn builtin() -> Catalogue {
        Catalogue::parse(BUILTIN).expect("the built-in mail catalogue parses")
    }

    /// The built-in catalogue with a user's additions: their marketplaces' domains and names
    /// are added, their rules tried first.
    pub fn with_user(text: &str) -> Result<Catalogue, String> {
        let user = Catalogue::parse(text)?;
        let mut out = Catalogue::builtin();
        for m in user.marketplaces {
            match out.marketplaces.iter_mut().find(|x| x.id == m.id) {
                Some(x) => {
                    x.domains.extend(m.domains);
                    x.names.extend(m.names);
                }
                None => out.marketplaces.push(m),
            }
        }
        let mut rules = user.rules;
        rules.extend(out.rules);
        out.rules = rules;
        Ok(out)
    }

    fn parse(text: &str) -> Result<Catalogue, String> {
        let raw: RawCatalogue = toml::from_str(text).map_err(|e| e.message().to_string())?;
        for r in &raw.rule {
            if !raw.marketplace.iter().any(|m| m.id == r.marketplace)
                && !BUILTIN.contains(&format!("id = \"{}\"", r.marketplace))
            {
                return Err(format!(
                    "rule for unknown marketplace `{}`",
                    crate::outcome::sanitize(&r.marketplace, 40)
                ));
            }
            if r.subject.is_empty() && r.body.is_empty() {
                return Err(format!(
                    "a `{}` rule with neither `subject` nor `body` would match every mail",
                    r.event.as_str()
                ));
            }
        }
        let lower = |v: Vec<String>| v.into_iter().map(|s| s.to_lowercase()).collect();
        Ok(Catalogue {
            marketplaces: raw
                .marketplace
                .into_iter()
                .map(|m| RawMarketplace {
                    id: m.id,
                    names: lower(m.names),
                    domains: lower(m.domains),
                })
                .collect(),
            rules: raw
                .rule
                .into_iter()
                .map(|r| RawRule {
                    subject: lower(r.subject),
                    body: lower(r.body),
                    ..r
                })
                .collect(),
        })
    }

    /// The marketplace whose domain `domain` is, or is below.
    fn owner(&self, domain: &str) -> Option<&RawMarketplace> {
        self.marketplaces.iter().find(|m| {
            m.domains
                .iter()
                .any(|d| domain == d || domain.ends_with(&format!(".{d}")))
        })
    }

    /// The marketplace a text claims to be, by name (digits read as the letters they imitate).
    fn claimed(&self, texts: &[&str]) -> Option<&RawMarketplace> {
        let folded: Vec<String> = texts.iter().map(|t| fold(t)).collect();
        self.marketplaces.iter().find(|m| {
            m.names
                .iter()
                .any(|n| folded.iter().any(|t| t.contains(n.as_str())))
        })
    }

    /// Classifies one raw message. `None` when it neither comes from nor claims a marketplace.
    pub fn classify(&self, raw: &[u8]) -> Option<Classified> {
        let msg = mail_parser::MessageParser::default().parse(raw)?;
        let from: Vec<(String, String)> = msg
            .from()
            .map(|a| {
                a.iter()
                    .map(|x| {
                        (
                            x.name().unwrap_or("").to_string(),
                            x.address().unwrap_or("").to_lowercase(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let subject = msg.subject().unwrap_or("").to_string();
        let body = msg
            .body_text(0)
            .map(|b| b.into_owned())
            .or_else(|| msg.body_html(0).map(|h| strip_tags(&h)))
            .unwrap_or_default();
        let (display, address) = from.first().cloned().unwrap_or_default();
        let domain = address
            .rsplit_once('@')
            .map(|(_, d)| d.trim_end_matches('>').to_string())
            .unwrap_or_default();
        let (marketplace, sender) = if from.len() != 1 {
            let claim = self.claimed(&[&display, &subject, &domain])?;
            (claim.id.clone(), Sender::Ambiguous)
        } else if let Some(owner) = self.owner(&domain) {
            (owner.id.clone(), Sender::Marketplace(owner.id.clone()))
        } else {
            let claim = self.claimed(&[&domain, &display, &subject])?;
            (claim.id.clone(), Sender::LookAlike(claim.id.clone()))
        };
        let (event, critical) = match &sender {
            Sender::Marketplace(m) => match self.rule_for(m, &subject, &body) {
                Some(r) => (Some(r.event), r.severity.as_deref() == Some("critical")),
                None => (None, false),
            },
            Sender::LookAlike(_) | Sender::Ambiguous => (Some(MailEvent::PhishingSuspected), false),
        };
        Some(Classified {
            marketplace,
            sender,
            domain: crate::outcome::sanitize(&domain, 80),
            event,
            critical,
            subject: redact(&crate::outcome::sanitize(&subject, 200)),
            facts: labelled_facts(&body),
            message_id: msg.message_id().map(str::to_string),
            sent_at: msg
                .date()
                .and_then(|d| chrono::DateTime::from_timestamp(d.to_timestamp(), 0)),
        })
    }

    fn rule_for(&self, marketplace: &str, subject: &str, body: &str) -> Option<&RawRule> {
        let (s, b) = (subject.to_lowercase(), body.to_lowercase());
        self.rules.iter().find(|r| {
            r.marketplace == marketplace
                && (r.subject.is_empty() || r.subject.iter().any(|p| s.contains(p.as_str())))
                && (r.body.is_empty() || r.body.iter().any(|p| b.contains(p.as_str())))
        })
    }
}

/// Lower-case, with the digits look-alikes use read as letters and separators dropped
/// (`amaz0n-security` → `amazonsecurity`).
fn fold(s: &str) -> String {
    s.to_lowercase()
        .chars()
        .filter_map(|c| match c {
            '0' => Some('o'),
            '1' => Some('l'),
            '3' => Some('e'),
            '5' => Some('s'),
            '-' | '_' | '.' | ' ' => None,
            c => Some(c),
        })
        .collect()
}

/// Text of an HTML body, tags dropped, each block on its own line.
fn strip_tags(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => {
                in_tag = true;
                out.push('\n');
            }
            '>' => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out
}

/// Removes what must never be stored or sent: links (a Shopee approve-login link signs the
/// attacker in) and codes (runs of 4 to 8 digits).
pub fn redact(s: &str) -> String {
    redact_runs(s, 4)
}

/// Like [`redact`], for labelled values (dates keep their 4-digit year; no code is 4 digits
/// on those lines).
fn redact_runs(s: &str, shortest: usize) -> String {
    let mut out = String::with_capacity(s.len());
    for (i, word) in s.split(' ').enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let w = word.to_ascii_lowercase();
        if w.contains("http://") || w.contains("https://") || w.starts_with("www.") {
            out.push_str("[link]");
            continue;
        }
        let mut digits = 0;
        let mut buf = String::new();
        let flush = |buf: &mut String, digits: &mut usize, out: &mut String| {
            if (shortest..=8).contains(digits) {
                out.push_str("[code]");
            } else {
                out.push_str(buf);
            }
            buf.clear();
            *digits = 0;
        };
        for c in word.chars() {
            if c.is_ascii_digit() {
                digits += 1;
                buf.push(c);
            } else {
                if digits > 0 {
                    flush(&mut buf, &mut digits, &mut out);
                }
                out.push(c);
            }
        }
        if digits > 0 {
            flush(&mut buf, &mut digits, &mut out);
        }
    }
    out
}

/// The labels whose value a security mail gives on the same line.
const LABELS: [&str; 8] = [
    "When",
    "Device",
    "Near",
    "Cuándo",
    "Dispositivo",
    "Cerca de",
    "Место",
    "Программа",
];

fn labelled_facts(body: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for line in body.lines().map(str::trim) {
        for label in LABELS {
            if let Some(value) = line
                .strip_prefix(label)
                .and_then(|r| r.trim_start().strip_prefix(':'))
                .map(str::trim)
                .filter(|v| !v.is_empty())
                && !out.iter().any(|(l, _): &(String, String)| l == label)
            {
                out.push((
                    label.to_string(),
                    redact_runs(&crate::outcome::sanitize(value, 120), 5),
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
