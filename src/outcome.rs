//! What one check found: facts about the account, findings, and a status.
//!
//! Probes produce an [`Outcome`]; the health machine turns outcomes into incidents. Nothing in
//! here may hold a secret: details are short, sanitised sentences.

use crate::model::{Marketplace, Severity};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Monitoring-plugin status (also `storeguard check`'s exit code).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    Ok,
    Warning,
    Critical,
    Unknown,
}

impl Status {
    pub fn exit_code(self) -> u8 {
        match self {
            Status::Ok => 0,
            Status::Warning => 1,
            Status::Critical => 2,
            Status::Unknown => 3,
        }
    }

    /// Rank for "worst of": OK < WARNING < UNKNOWN < CRITICAL (a refused login is worse than
    /// a marketplace that could not be asked).
    pub fn rank(self) -> u8 {
        match self {
            Status::Ok => 0,
            Status::Warning => 1,
            Status::Unknown => 2,
            Status::Critical => 3,
        }
    }

    pub fn worst(self, other: Status) -> Status {
        if other.rank() > self.rank() {
            other
        } else {
            self
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::Warning => "WARNING",
            Status::Critical => "CRITICAL",
            Status::Unknown => "UNKNOWN",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        match s {
            "OK" => Some(Status::Ok),
            "WARNING" => Some(Status::Warning),
            "CRITICAL" => Some(Status::Critical),
            "UNKNOWN" => Some(Status::Unknown),
            _ => None,
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The kinds of abnormal login (see DESIGN.md, "Outcome of a check").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    AuthRejected,
    AccountBlocked,
    IdentityMismatch,
    IpRestricted,
    PermissionMissing,
    CredentialExpiring,
    AccountChanged,
    Posture,
    RateLimited,
    Unreachable,
    ProtocolError,
    /// The store's vault entry is missing, undecryptable or incomplete.
    VaultUnreadable,
    /// storeguard itself needs attention (a rejected config reload, a state file it cannot write).
    DaemonFault,
    // Security mail from the store's mailbox (one alert per mail, never a check's finding).
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
    /// Mail that claims a marketplace but is forged or from a look-alike domain.
    PhishingSuspected,
    /// A sign-in code, new sign-in or approval request outside the store's `login_hours`.
    SuspiciousLogin,
    /// The store's mailbox stopped accepting storeguard's login: its mail is not being read.
    MailboxRejected,
}

impl FindingKind {
    pub const ALL: [FindingKind; 28] = [
        FindingKind::AuthRejected,
        FindingKind::AccountBlocked,
        FindingKind::IdentityMismatch,
        FindingKind::IpRestricted,
        FindingKind::PermissionMissing,
        FindingKind::CredentialExpiring,
        FindingKind::AccountChanged,
        FindingKind::Posture,
        FindingKind::RateLimited,
        FindingKind::Unreachable,
        FindingKind::ProtocolError,
        FindingKind::VaultUnreadable,
        FindingKind::DaemonFault,
        FindingKind::OtpRequested,
        FindingKind::NewSignIn,
        FindingKind::LoginApprovalRequested,
        FindingKind::PasswordResetRequested,
        FindingKind::PasswordChanged,
        FindingKind::TwoFactorChanged,
        FindingKind::ContactChanged,
        FindingKind::AccountLocked,
        FindingKind::AccountSuspended,
        FindingKind::AccountAtRisk,
        FindingKind::ApiKeyChanged,
        FindingKind::AuthorizationExpiring,
        FindingKind::PhishingSuspected,
        FindingKind::SuspiciousLogin,
        FindingKind::MailboxRejected,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::AuthRejected => "auth_rejected",
            FindingKind::AccountBlocked => "account_blocked",
            FindingKind::IdentityMismatch => "identity_mismatch",
            FindingKind::IpRestricted => "ip_restricted",
            FindingKind::PermissionMissing => "permission_missing",
            FindingKind::CredentialExpiring => "credential_expiring",
            FindingKind::AccountChanged => "account_changed",
            FindingKind::Posture => "posture",
            FindingKind::RateLimited => "rate_limited",
            FindingKind::Unreachable => "unreachable",
            FindingKind::ProtocolError => "protocol_error",
            FindingKind::VaultUnreadable => "vault_unreadable",
            FindingKind::DaemonFault => "daemon_fault",
            FindingKind::OtpRequested => "otp_requested",
            FindingKind::NewSignIn => "new_sign_in",
            FindingKind::LoginApprovalRequested => "login_approval_requested",
            FindingKind::PasswordResetRequested => "password_reset_requested",
            FindingKind::PasswordChanged => "password_changed",
            FindingKind::TwoFactorChanged => "two_factor_changed",
            FindingKind::ContactChanged => "contact_changed",
            FindingKind::AccountLocked => "account_locked",
            FindingKind::AccountSuspended => "account_suspended",
            FindingKind::AccountAtRisk => "account_at_risk",
            FindingKind::ApiKeyChanged => "api_key_changed",
            FindingKind::AuthorizationExpiring => "authorization_expiring",
            FindingKind::PhishingSuspected => "phishing_suspected",
            FindingKind::SuspiciousLogin => "suspicious_login",
            FindingKind::MailboxRejected => "mailbox_rejected",
        }
    }

    pub fn parse(s: &str) -> Option<FindingKind> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The status a finding gives a check.
    pub fn status(self) -> Status {
        match self {
            FindingKind::AuthRejected
            | FindingKind::AccountBlocked
            | FindingKind::IdentityMismatch
            | FindingKind::IpRestricted
            | FindingKind::PasswordChanged
            | FindingKind::ContactChanged
            | FindingKind::AccountLocked
            | FindingKind::AccountSuspended
            | FindingKind::SuspiciousLogin => Status::Critical,
            FindingKind::PermissionMissing
            | FindingKind::CredentialExpiring
            | FindingKind::AccountChanged
            | FindingKind::Posture
            | FindingKind::DaemonFault
            | FindingKind::OtpRequested
            | FindingKind::NewSignIn
            | FindingKind::LoginApprovalRequested
            | FindingKind::PasswordResetRequested
            | FindingKind::TwoFactorChanged
            | FindingKind::AccountAtRisk
            | FindingKind::ApiKeyChanged
            | FindingKind::AuthorizationExpiring
            | FindingKind::PhishingSuspected
            | FindingKind::MailboxRejected => Status::Warning,
            FindingKind::RateLimited
            | FindingKind::Unreachable
            | FindingKind::ProtocolError
            | FindingKind::VaultUnreadable => Status::Unknown,
        }
    }

    pub fn severity(self) -> Severity {
        match self.status() {
            Status::Critical => Severity::Critical,
            Status::Warning => Severity::Warning,
            _ => Severity::Unknown,
        }
    }

    /// Whether the finding comes from the store's mailbox, not from a check.
    pub fn is_mail(self) -> bool {
        use FindingKind::*;
        matches!(
            self,
            OtpRequested
                | NewSignIn
                | LoginApprovalRequested
                | PasswordResetRequested
                | PasswordChanged
                | TwoFactorChanged
                | ContactChanged
                | AccountLocked
                | AccountSuspended
                | AccountAtRisk
                | ApiKeyChanged
                | AuthorizationExpiring
                | PhishingSuspected
                | SuspiciousLogin
                | MailboxRejected
        )
    }

    /// UNKNOWN findings that can pass by themselves (a network fault, a throttle, a garbled
    /// answer) wait for `failure_threshold` checks in a row before opening. A vault entry
    /// that cannot be read stays so until someone fixes it: it opens at once.
    pub fn needs_threshold(self) -> bool {
        self.status() == Status::Unknown && self != FindingKind::VaultUnreadable
    }
}

impl fmt::Display for FindingKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One finding of a check.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub kind: FindingKind,
    /// A short sanitised sentence (no secret, no URL with a token, no control characters).
    pub detail: String,
    /// For `rate_limited`: how long the marketplace asked us to wait.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_secs: Option<u64>,
}

impl Finding {
    pub fn new(kind: FindingKind, detail: impl Into<String>) -> Self {
        Finding {
            kind,
            detail: sanitize(&detail.into(), 300),
            retry_after_secs: None,
        }
    }
}

/// Account facts as the marketplace answered them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Facts {
    /// Account id the API answered for (Client-Id, seller id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// Key or token expiry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub marketplaces: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub premium: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    pub latency_ms: u64,
    /// Name of the egress used ("direct" or the proxy host), never its credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress: Option<String>,
    /// When the seller authorised the app (Amazon: due again after 365 days).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorized_at: Option<DateTime<Utc>>,
    /// `authorized_at` is not known, only inferred: the first day storeguard saw this
    /// authorisation work, so the real date is that day at the latest.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub authorized_inferred: bool,
    /// Which authorisation an inferred date belongs to (a short fingerprint of the refresh
    /// token, never the token): a new authorisation starts a new year.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization: Option<String>,
    /// This check rotated the store's tokens (or took a rotation another process made): a
    /// token expiry that moved is storeguard's own doing, not an account change.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tokens_renewed: bool,
}

/// The result of one check of one store.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    pub store_id: String,
    pub marketplace: Marketplace,
    pub checked_at: DateTime<Utc>,
    pub status: Status,
    pub findings: Vec<Finding>,
    pub facts: Facts,
}

impl Outcome {
    /// Builds an outcome whose status is the worst of its findings' (OK when none).
    pub fn new(
        store_id: &str,
        marketplace: Marketplace,
        checked_at: DateTime<Utc>,
        findings: Vec<Finding>,
        facts: Facts,
    ) -> Self {
        let status = findings
            .iter()
            .fold(Status::Ok, |s, f| s.worst(f.kind.status()));
        Outcome {
            store_id: store_id.to_string(),
            marketplace,
            checked_at,
            status,
            findings,
            facts,
        }
    }

    pub fn has(&self, kind: FindingKind) -> bool {
        self.findings.iter().any(|f| f.kind == kind)
    }
}

/// Makes untrusted text safe to print: no control characters or ANSI escapes, one line, capped.
/// `s` safe to print on a terminal: every control character but the line feed written as its
/// escape (`\u{1b}`), so text from a config, an argument or a file cannot rewrite the screen.
pub fn printable(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(|c| c.is_control() && c != '\n') {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c.is_control() && c != '\n' {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Secrets a server echoed back, taken out of `text`: every run of 8 or more characters that
/// also occurs in a secret (all of a secret shorter than that) becomes `[REDACTED]`. A server
/// that quotes only the first characters of a key ("invalid key AbCdEf12…") gives nothing
/// away either.
pub fn redact<S: AsRef<str>>(text: &str, secrets: &[S]) -> String {
    const RUN: usize = 8;
    let t: Vec<char> = text.chars().collect();
    let mut hide = vec![false; t.len()];
    for secret in secrets {
        let s: Vec<char> = secret.as_ref().chars().collect();
        if s.is_empty() || s.len() > 4096 {
            continue;
        }
        let run = RUN.min(s.len());
        // common[k]: length of the common run ending at the current text char and s[k].
        let mut common = vec![0usize; s.len() + 1];
        for (j, c) in t.iter().enumerate() {
            for k in (0..s.len()).rev() {
                common[k + 1] = if s[k] == *c { common[k] + 1 } else { 0 };
                if common[k + 1] >= run {
                    hide[j + 1 - common[k + 1]..=j].fill(true);
                }
            }
        }
    }
    if !hide.contains(&true) {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut hidden = false;
    for (c, h) in t.iter().zip(&hide) {
        if *h {
            if !hidden {
                out.push_str("[REDACTED]");
            }
        } else {
            out.push(*c);
        }
        hidden = *h;
    }
    out
}

pub fn sanitize(s: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max_chars));
    for (n, c) in s.chars().enumerate() {
        if n >= max_chars {
            out.push('…');
            break;
        }
        out.push(if c.is_control() { ' ' } else { c });
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_escapes_every_control_character_but_newlines() {
        assert_eq!(printable("plain\nlines"), "plain\nlines");
        assert_eq!(
            printable("a\u{1b}[2Jb\rc\u{7}"),
            "a\\u{1b}[2Jb\\u{d}c\\u{7}"
        );
        assert!(!printable("\u{9b}31m").chars().any(|c| c.is_control()));
    }

    #[test]
    fn echoed_secrets_and_their_parts_are_redacted() {
        let key = "CANARY-8f3kQ2xZp9Lm4Rt7";
        assert_eq!(
            redact(&format!("bad key {key}!"), &[key]),
            "bad key [REDACTED]!"
        );
        // The first 14 characters, the last 9, a middle run: none of them survives.
        let shown = redact(
            &format!(
                "key {}… ends …{} has {}",
                &key[..14],
                &key[15..],
                &key[5..15]
            ),
            &[key],
        );
        assert_eq!(shown, "key [REDACTED]… ends …[REDACTED] has [REDACTED]");
        // Ordinary text, and runs shorter than 8 characters, stay.
        assert_eq!(redact("CANARY-8 is fine", &[key]), "[REDACTED] is fine");
        assert_eq!(redact("CANARY- is fine", &[key]), "CANARY- is fine");
        // A short secret goes only as a whole.
        assert_eq!(
            redact("tok abc123 and abc12", &["abc123"]),
            "tok [REDACTED] and abc12"
        );
        assert_eq!(redact("no secret here", &[""]), "no secret here");
    }

    #[test]
    fn status_is_the_worst_finding() {
        let now = Utc::now();
        let o = Outcome::new(
            "s",
            Marketplace::Ozon,
            now,
            vec![
                Finding::new(FindingKind::Posture, "no 2FA"),
                Finding::new(FindingKind::AuthRejected, "key deactivated"),
            ],
            Facts::default(),
        );
        assert_eq!(o.status, Status::Critical);
        let ok = Outcome::new("s", Marketplace::Ozon, now, vec![], Facts::default());
        assert_eq!(ok.status, Status::Ok);
    }

    #[test]
    fn sanitize_strips_escapes_and_newlines() {
        assert_eq!(sanitize("bad\x1b[31m\nkey\r\n", 100), "bad [31m key");
        assert_eq!(sanitize("abcdef", 3), "abc…");
    }

    #[test]
    fn finding_names_round_trip() {
        for k in FindingKind::ALL {
            assert_eq!(FindingKind::parse(k.as_str()), Some(k));
            assert_eq!(
                serde_json::to_string(&k).unwrap(),
                format!("\"{}\"", k.as_str())
            );
        }
    }
}
