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
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "rfc3339::option"
    )]
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
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "rfc3339::option"
    )]
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
    #[serde(serialize_with = "rfc3339::serialize")]
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

/// Timestamps written to JSON exactly as chrono writes them (RFC 3339, `Z`, the fraction in 0, 3, 6
/// or 9 digits as needed), without its formatting machinery: three of them are written per check,
/// about 2,060 instructions each through chrono and 620 here, the JSON string's writing included
/// (callgrind, the daemon's steady state). Years outside 0–9999 and leap seconds go through
/// chrono itself.
pub(crate) mod rfc3339 {
    use chrono::{DateTime, Utc};
    use serde::{Serialize, Serializer};

    /// 0000-01-01T00:00:00Z and 10000-01-01T00:00:00Z as Unix seconds.
    const FIRST: i64 = -62_167_219_200;
    const END: i64 = 253_402_300_800;

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        let secs = t.timestamp();
        let nano = t.timestamp_subsec_nanos();
        if !(FIRST..END).contains(&secs) || nano >= 1_000_000_000 {
            return t.serialize(s);
        }
        let (year, month, day) = civil(secs.div_euclid(86_400));
        let of_day = secs.rem_euclid(86_400) as u32;
        let mut b = [0u8; 30];
        let two = |b: &mut [u8], at: usize, v: u32| {
            b[at] = b'0' + (v / 10) as u8;
            b[at + 1] = b'0' + (v % 10) as u8;
        };
        two(&mut b, 0, year / 100);
        two(&mut b, 2, year % 100);
        b[4] = b'-';
        two(&mut b, 5, month);
        b[7] = b'-';
        two(&mut b, 8, day);
        b[10] = b'T';
        two(&mut b, 11, of_day / 3600);
        b[13] = b':';
        two(&mut b, 14, of_day / 60 % 60);
        b[16] = b':';
        two(&mut b, 17, of_day % 60);
        let mut n = 19;
        let (digits, mut v) = if nano == 0 {
            (0, 0)
        } else if nano.is_multiple_of(1_000_000) {
            (3, nano / 1_000_000)
        } else if nano.is_multiple_of(1_000) {
            (6, nano / 1_000)
        } else {
            (9, nano)
        };
        if digits > 0 {
            b[n] = b'.';
            for i in (0..digits).rev() {
                b[n + 1 + i] = b'0' + (v % 10) as u8;
                v /= 10;
            }
            n += 1 + digits;
        }
        b[n] = b'Z';
        n += 1;
        s.serialize_str(std::str::from_utf8(&b[..n]).map_err(serde::ser::Error::custom)?)
    }

    /// Year, month and day of a count of days since 1970-01-01, for years 0 to 9999: the
    /// proleptic Gregorian calendar counted in 400-year eras of 146,097 days, each year taken
    /// from March so that the leap day falls at its end.
    fn civil(days: i64) -> (u32, u32, u32) {
        // Days since 0000-03-01, plus one era so that year 0's January and February (which
        // come before that day) count from zero too; the era taken back out below.
        let z = days + 719_468 + 146_097;
        let era = z / 146_097;
        let day_of_era = z % 146_097;
        let year_of_era =
            (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
        let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
        let month_from_march = (5 * day_of_year + 2) / 153;
        let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
        let month = if month_from_march < 10 {
            month_from_march + 3
        } else {
            month_from_march - 9
        };
        let year = year_of_era + (era - 1) * 400 + i64::from(month <= 2);
        (year as u32, month as u32, day as u32)
    }

    /// For `Option<DateTime<Utc>>` fields.
    pub fn option<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_some(&Wrap(t)),
            None => s.serialize_none(),
        }
    }

    struct Wrap<'a>(&'a DateTime<Utc>);

    impl Serialize for Wrap<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            serialize(self.0, s)
        }
    }
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

    /// Writes through `rfc3339` and through chrono's own `Serialize`, for comparison.
    fn both(t: Option<DateTime<Utc>>) -> (String, String) {
        #[derive(Serialize)]
        struct Ours(#[serde(serialize_with = "rfc3339::option")] Option<DateTime<Utc>>);
        (
            serde_json::to_string(&Ours(t)).unwrap(),
            serde_json::to_string(&t).unwrap(),
        )
    }

    #[test]
    fn timestamps_are_written_as_chrono_writes_them_at_the_edges() {
        use chrono::{NaiveDate, TimeZone};
        let at = |y, nano| {
            NaiveDate::from_ymd_opt(y, 12, 31)
                .unwrap()
                .and_hms_nano_opt(23, 59, 59, nano)
                .unwrap()
                .and_utc()
        };
        let mut cases = vec![None, Some(DateTime::<Utc>::UNIX_EPOCH)];
        for y in [-1, 0, 1, 999, 1970, 2026, 9999, 10_000, -262_000, 262_000] {
            for nano in [
                0,
                1,
                999,
                1_000,
                120_000,
                5_000_000,
                999_999_999,
                1_000_000_000,
            ] {
                cases.push(Some(at(y, nano)));
            }
        }
        cases.push(Some(
            Utc.with_ymd_and_hms(2016, 12, 31, 23, 59, 59).unwrap(),
        ));
        for t in cases {
            let (ours, chrono) = both(t);
            assert_eq!(ours, chrono, "{t:?}");
        }
        let (ours, _) = both(Some(at(2026, 5_000_000)));
        assert_eq!(ours, "\"2026-12-31T23:59:59.005Z\"");
    }

    proptest::proptest! {
        #[test]
        fn timestamps_are_written_as_chrono_writes_them(
            secs in -62_167_219_200i64..253_402_300_800,
            nano in 0u32..1_000_000_000,
            round in 0u32..4,
        ) {
            let nano = [nano, nano / 1_000 * 1_000, nano / 1_000_000 * 1_000_000, 0][round as usize];
            let t = DateTime::<Utc>::from_timestamp(secs, nano).unwrap();
            let (ours, chrono) = both(Some(t));
            proptest::prop_assert_eq!(ours, chrono);
        }
    }
}
