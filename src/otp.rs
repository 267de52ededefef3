//! RFC 6238 one-time codes for a store's web login (`storeguard otp STORE`).

use secrecy::{ExposeSecret, SecretString};
use totp_rs::{Algorithm, Secret, TOTP};

/// A code and how many seconds it stays valid.
#[derive(Debug, PartialEq, Eq)]
pub struct Code {
    pub code: String,
    pub valid_for: u64,
}

/// Computes the 6-digit, 30-second SHA-1 code (what authenticator apps use) at `unix_time`.
///
/// `secret` is base32 as sellers get it from the marketplace's 2FA setup page (spaces and
/// lowercase allowed), or an `otpauth://` URL.
pub fn code_at(secret: &SecretString, unix_time: u64) -> Result<Code, String> {
    let raw = secret.expose_secret().trim();
    let totp = if raw.starts_with("otpauth://") {
        TOTP::from_url_unchecked(raw).map_err(|_| {
            "the totp_secret otpauth:// URL is not valid; paste the base32 secret instead"
                .to_string()
        })?
    } else {
        let cleaned = zeroize::Zeroizing::new(
            raw.chars()
                .filter(|c| !c.is_whitespace() && *c != '-')
                .collect::<String>()
                .to_ascii_uppercase(),
        );
        let bytes = zeroize::Zeroizing::new(
            Secret::Encoded(cleaned.trim_end_matches('=').to_string())
                .to_bytes()
                .map_err(|_| {
                    "the totp_secret is not base32 (letters A-Z and digits 2-7); copy it again from the 2FA setup page"
                        .to_string()
                })?,
        );
        TOTP::new_unchecked(
            Algorithm::SHA1,
            6,
            1,
            30,
            bytes.to_vec(),
            None,
            String::new(),
        )
    };
    let step = totp.step.max(1);
    Ok(Code {
        code: totp.generate(unix_time),
        valid_for: step - unix_time % step,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6238_vector() {
        // RFC 6238 appendix B, SHA-1 key "12345678901234567890", T = 59 → 94287082 (8 digits);
        // its last six digits are the 6-digit code.
        let s = SecretString::from("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
        assert_eq!(
            code_at(&s, 59).unwrap(),
            Code {
                code: "287082".into(),
                valid_for: 1
            }
        );
        assert_eq!(code_at(&s, 1_111_111_109).unwrap().code, "081804");
        let spaced = SecretString::from("gezd gnbv gy3t qojq gezd gnbv gy3t qojq");
        assert_eq!(code_at(&spaced, 59).unwrap().code, "287082");
    }

    #[test]
    fn bad_secret_does_not_echo() {
        let e = code_at(&SecretString::from("CANARY-otp-1!"), 0).unwrap_err();
        assert!(!e.contains("CANARY"));
    }
}
