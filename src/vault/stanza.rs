//! Opening age's X25519 recipient stanza (c2sp.org/age, "X25519 recipient stanza") with
//! aws-lc's X25519, the one already linked for TLS: 19 µs a stanza where the age crate's own
//! curve arithmetic takes 38 µs, and a 10,000-store check opens one stanza per store. The rest
//! of the file (header MAC, payload) is still read by the age crate.
//!
//! The stanza: tag `X25519`, one argument (the 32-byte ephemeral share, canonical unpadded
//! base64), a 32-byte body (the 16-byte file key under ChaCha20-Poly1305 and its tag). The wrap
//! key is HKDF-SHA256 of the shared secret, salt = ephemeral share ‖ our public key, info
//! `age-encryption.org/v1/X25519`. Malformed stanzas and an all-zero shared secret are header
//! errors; a stanza for another key is not ours (`None`), as age decides.

use age::DecryptError;
use age_core::format::{FileKey, Stanza};
use aws_lc_rs::agreement::{self, PrivateKey, UnparsedPublicKey, X25519};
use base64::Engine as _;
use chacha20poly1305::aead::{Aead as _, KeyInit as _};
use secrecy::ExposeSecret as _;
use zeroize::Zeroizing;

const TAG: &str = "X25519";
const LABEL: &[u8] = b"age-encryption.org/v1/X25519";

/// The vault identity as aws-lc holds it, with its public key worked out once.
pub(super) struct Opener {
    key: PrivateKey,
    public: [u8; 32],
}

impl Opener {
    /// `None` if aws-lc does not take the key (then the age crate's own identity is used).
    pub(super) fn new(identity: &age::x25519::Identity) -> Option<Opener> {
        let text = identity.to_string();
        let (hrp, bytes) = bech32::decode(text.expose_secret()).ok()?;
        let bytes = Zeroizing::new(bytes);
        if !hrp.as_str().eq_ignore_ascii_case("age-secret-key-") || bytes.len() != 32 {
            return None;
        }
        let key = PrivateKey::from_private_key(&X25519, &bytes).ok()?;
        let public: [u8; 32] = key.compute_public_key().ok()?.as_ref().try_into().ok()?;
        // The same public key as age's: a mismatch would open nothing.
        let theirs = identity.to_public().to_string();
        let (_, ours) = bech32::decode(&theirs).ok()?;
        (ours == public).then_some(Opener { key, public })
    }
}

impl age::Identity for Opener {
    fn unwrap_stanza(&self, stanza: &Stanza) -> Option<Result<FileKey, DecryptError>> {
        if stanza.tag != TAG {
            return None;
        }
        let bad = || Some(Err(DecryptError::InvalidHeader));
        let [arg] = &stanza.args[..] else {
            return bad();
        };
        // Canonical: 43 characters, no padding, no stray low bits (the engine refuses those).
        let share = match base64::engine::general_purpose::STANDARD_NO_PAD.decode(arg) {
            Ok(b) if arg.len() == 43 && b.len() == 32 => b,
            _ => return bad(),
        };
        if stanza.body.len() != 32 {
            return bad();
        }
        let Ok(shared) = agreement::agree(
            &self.key,
            UnparsedPublicKey::new(&X25519, &share),
            (),
            |s: &[u8]| Ok(Zeroizing::new(s.to_vec())),
        ) else {
            // aws-lc refuses an all-zero shared secret (a low-order share).
            return bad();
        };
        if shared.iter().all(|&b| b == 0) {
            return bad();
        }
        let mut salt = [0u8; 64];
        salt[..32].copy_from_slice(&share);
        salt[32..].copy_from_slice(&self.public);
        let mut wrap = Zeroizing::new([0u8; 32]);
        hkdf::Hkdf::<sha2::Sha256>::new(Some(&salt), &shared)
            .expand(LABEL, &mut wrap[..])
            .expect("32 bytes is a valid HKDF-SHA256 length");
        let aead = chacha20poly1305::ChaCha20Poly1305::new((&*wrap).into());
        // Not our key: the tag does not match. Another identity may open it.
        let plain = Zeroizing::new(aead.decrypt(&Default::default(), &stanza.body[..]).ok()?);
        Some(Ok(FileKey::init_with_mut(|k| k.copy_from_slice(&plain))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use age::Recipient as _;

    fn stanza_for(recipient: &age::x25519::Recipient, key: [u8; 16]) -> Stanza {
        let file_key = FileKey::new(Box::new(key));
        let (mut stanzas, _) = recipient.wrap_file_key(&file_key).unwrap();
        stanzas.remove(0)
    }

    fn copy(s: &Stanza) -> Stanza {
        Stanza {
            tag: s.tag.clone(),
            args: s.args.clone(),
            body: s.body.clone(),
        }
    }

    /// What `id` makes of `s`: the file key, a header error, or not ours.
    fn verdict(id: &dyn age::Identity, s: &Stanza) -> Option<Result<[u8; 16], String>> {
        id.unwrap_stanza(s)
            .map(|r| r.map(|k| *k.expose_secret()).map_err(|e| e.to_string()))
    }

    #[test]
    fn opens_what_age_opens_and_refuses_what_it_refuses() {
        let age_id = age::x25519::Identity::generate();
        let ours = Opener::new(&age_id).unwrap();
        let other = age::x25519::Identity::generate().to_public();
        let good = stanza_for(&age_id.to_public(), [7; 16]);
        assert_eq!(verdict(&ours, &good), Some(Ok([7; 16])));

        let mut cases = vec![copy(&good), stanza_for(&other, [8; 16])];
        let with = |f: &dyn Fn(&mut Stanza)| {
            let mut s = copy(&good);
            f(&mut s);
            s
        };
        cases.push(with(&|s| s.tag = "x25519".into()));
        cases.push(with(&|s| s.tag = "scrypt".into()));
        cases.push(with(&|s| s.args.push("extra".into())));
        cases.push(with(&|s| s.args.clear()));
        cases.push(with(&|s| s.args[0].push('='))); // padded
        cases.push(with(&|s| {
            s.args[0].pop(); // short
        }));
        // Stray low bits in the last character: not canonical.
        cases.push(with(&|s| {
            let last = s.args[0].pop().unwrap();
            let b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
            let i = b64.find(last).unwrap();
            s.args[0].push(b64.as_bytes()[(i ^ 1) % 64] as char);
        }));
        cases.push(with(&|s| s.body.truncate(31)));
        cases.push(with(&|s| s.body.push(0)));
        cases.push(with(&|s| s.body[3] ^= 1));
        // A low-order share: the shared secret is all zeros.
        cases.push(with(&|s| {
            s.args[0] = base64::engine::general_purpose::STANDARD_NO_PAD.encode([0u8; 32])
        }));
        for (i, s) in cases.iter().enumerate() {
            let theirs = verdict(&age_id, s).map(|r| r.map_err(|_| "header"));
            let mine = verdict(&ours, s).map(|r| r.map_err(|_| "header"));
            assert_eq!(mine, theirs, "case {i}: {} {:?}", s.tag, s.args);
            assert_eq!(mine.is_some_and(|r| r.is_ok()), i == 0, "case {i} opens");
        }
    }
}
