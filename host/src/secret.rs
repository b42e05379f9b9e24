//! Security-sensitive strings: secrets that never print, random tokens,
//! hashes compared in constant time.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::{SecureRandom, SystemRandom};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A secret value (client secret, token). `Debug` and `Display` print
/// `[redacted]`; the value is reached only through [`Secret::expose`].
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that must send or hash it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl<'de> serde::Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Self)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// SHA-256 of a secret, as stored: client secrets, codes and tokens are
/// high-entropy random values, so a plain hash is enough to make a stolen
/// database useless, and it is fast on the login path.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SecretHash([u8; 32]);

impl SecretHash {
    /// The hash's 32 bytes (store keys).
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn of(secret: &str) -> Self {
        Self(Sha256::digest(secret.as_bytes()).into())
    }

    /// Constant-time comparison with the hash of `candidate`.
    pub fn matches(&self, candidate: &str) -> bool {
        self.0.ct_eq(&Self::of(candidate).0).into()
    }

    pub fn to_hex(self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(s: &str) -> Option<Self> {
        let bytes = hex::decode(s).ok()?;
        Some(Self(bytes.try_into().ok()?))
    }
}

impl serde::Serialize for SecretHash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> serde::Deserialize<'de> for SecretHash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::from_hex(&s).ok_or_else(|| serde::de::Error::custom("not a hex SHA-256"))
    }
}

impl fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretHash({}…)", &self.to_hex()[..8])
    }
}

/// Constant-time equality of two strings (lengths may leak; contents do not).
pub fn ct_eq(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

/// Source of random tokens; a trait so tests can make them predictable.
pub trait Random: Send + Sync {
    /// A fresh token of 32 random bytes, base64url without padding.
    fn token(&self) -> String;

    /// A fresh identifier of `len` ASCII letters and digits, drawn from
    /// [`token`](Self::token). Identifiers people type on a command line must
    /// not start with `-` (a CLI would read it as an option) nor hold `_`.
    fn identifier(&self, len: usize) -> String {
        let mut id = String::with_capacity(len);
        while id.len() < len {
            id.extend(self.token().chars().filter(char::is_ascii_alphanumeric));
        }
        id.truncate(len);
        id
    }
}

/// The operating system's CSPRNG.
#[derive(Debug)]
pub struct SystemRandomTokens(SystemRandom);

impl Default for SystemRandomTokens {
    fn default() -> Self {
        Self(SystemRandom::new())
    }
}

impl Random for SystemRandomTokens {
    fn token(&self) -> String {
        let mut bytes = [0u8; 32];
        // The system RNG failing is not something a login can recover from
        // (ring's own docs treat it as fatal); do not hand out weak tokens.
        if self.0.fill(&mut bytes).is_err() {
            panic!("the operating system's random number generator failed");
        }
        URL_SAFE_NO_PAD.encode(bytes)
    }
}

/// S256 PKCE challenge of a verifier (RFC 7636 §4.2).
pub fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// Whether a PKCE verifier (RFC 7636 §4.1) or challenge (§4.2) is
/// well-formed: both are 43–128 unreserved characters.
pub fn pkce_value_is_valid(value: &str) -> bool {
    (43..=128).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?} {s}"), "[redacted] [redacted]");
    }

    #[test]
    fn secret_hashes_match_only_their_secret() {
        let h = SecretHash::of("s3cret");
        assert!(h.matches("s3cret"));
        assert!(!h.matches("s3cret "));
        assert_eq!(SecretHash::from_hex(&h.to_hex()), Some(h));
    }

    #[test]
    fn tokens_are_random_and_url_safe() {
        let r = SystemRandomTokens::default();
        let (a, b) = (r.token(), r.token());
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
    }

    #[test]
    fn identifiers_hold_only_letters_and_digits_even_when_tokens_start_with_a_dash() {
        // A token source whose tokens are mostly punctuation: the identifier
        // must skip it, not start with `-` (a command line would read
        // `waypass clients get -jX…` as an option).
        struct Dashes;
        impl Random for Dashes {
            fn token(&self) -> String {
                "-_-a_-b-".to_owned()
            }
        }
        assert_eq!(Dashes.identifier(5), "ababa");
        let id = SystemRandomTokens::default().identifier(32);
        assert_eq!(id.len(), 32);
        assert!(id.bytes().all(|c| c.is_ascii_alphanumeric()), "{id}");
    }

    #[test]
    fn pkce_s256_matches_the_rfc_7636_example() {
        // RFC 7636 Appendix B.
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        assert!(pkce_value_is_valid(
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
        ));
        assert!(!pkce_value_is_valid("short"));
    }
}
