//! Verifying a provider's compact JWS (RFC 7515) against its JWK set
//! (RFC 7517): id_tokens from OpenID Connect providers, and — in the
//! development provider — `private_key_jwt` client assertions.
//!
//! The signature primitives are aws-lc-rs, already in the tree for our own
//! signing keys, rather than a JOSE crate: verification is a few dozen lines
//! over them, and keeping the algorithm list here, explicit, is the point.
//! Accepted: RS256/384/512, PS256/384/512, ES256, ES384 and EdDSA
//! (Ed25519). Never `none`, and never HMAC: a provider's JWKS holds public
//! keys, and "HS256 with the public key as the secret" is the classic
//! confusion attack (RFC 8725 §2.1, §3.1). The algorithm is taken from the
//! header only to pick among these, and must match the key's own `alg`
//! and type when the key names them (RFC 8725 §3.1).

use aws_lc_rs::signature::{
    self, RsaPublicKeyComponents, UnparsedPublicKey, VerificationAlgorithm,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;

/// Longest compact JWS accepted: id_tokens and assertions are a few KiB;
/// this bounds the decoding work a provider can cause.
pub const MAX_JWS_BYTES: usize = 64 * 1024;
/// Most keys read from one JWK set: real sets hold 1–6; more is not a
/// provider's key set but a way to make every verification slow.
pub const MAX_JWKS_KEYS: usize = 32;

/// Why a JWS was not accepted. Shown to the app as the login's error, so
/// it says what is wrong without echoing the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwsError {
    #[error("it is not a compact JWS")]
    Malformed,
    #[error("its algorithm `{0}` is not accepted")]
    Algorithm(String),
    #[error("no key of the provider's key set matches it (kid {0:?})")]
    UnknownKey(Option<String>),
    #[error("its signature does not verify")]
    BadSignature,
    #[error("the provider's key set is not usable: {0}")]
    BadKeySet(String),
}

/// The algorithms accepted, as named in a JWS header (RFC 7518 §3.1, RFC 8037).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwsAlg {
    Rs256,
    Rs384,
    Rs512,
    Ps256,
    Ps384,
    Ps512,
    Es256,
    Es384,
    EdDsa,
}

impl JwsAlg {
    /// Exact names only: `none`, `HS256` and anything else are refused.
    pub fn parse(name: &str) -> Result<Self, JwsError> {
        Ok(match name {
            "RS256" => Self::Rs256,
            "RS384" => Self::Rs384,
            "RS512" => Self::Rs512,
            "PS256" => Self::Ps256,
            "PS384" => Self::Ps384,
            "PS512" => Self::Ps512,
            "ES256" => Self::Es256,
            "ES384" => Self::Es384,
            "EdDSA" => Self::EdDsa,
            other => return Err(JwsError::Algorithm(other.to_owned())),
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rs256 => "RS256",
            Self::Rs384 => "RS384",
            Self::Rs512 => "RS512",
            Self::Ps256 => "PS256",
            Self::Ps384 => "PS384",
            Self::Ps512 => "PS512",
            Self::Es256 => "ES256",
            Self::Es384 => "ES384",
            Self::EdDsa => "EdDSA",
        }
    }

    /// The key type (`kty`) and, for EC and OKP keys, curve this algorithm needs.
    fn key_type(self) -> (&'static str, Option<&'static str>) {
        match self {
            Self::Rs256 | Self::Rs384 | Self::Rs512 | Self::Ps256 | Self::Ps384 | Self::Ps512 => {
                ("RSA", None)
            }
            Self::Es256 => ("EC", Some("P-256")),
            Self::Es384 => ("EC", Some("P-384")),
            Self::EdDsa => ("OKP", Some("Ed25519")),
        }
    }
}

/// One public key of a JWK set, as a provider publishes it.
#[derive(Debug, Clone, Deserialize)]
pub struct Jwk {
    pub kty: String,
    #[serde(default)]
    pub kid: Option<String>,
    #[serde(default)]
    pub alg: Option<String>,
    #[serde(default, rename = "use")]
    pub use_: Option<String>,
    #[serde(default)]
    pub crv: Option<String>,
    #[serde(default)]
    n: Option<String>,
    #[serde(default)]
    e: Option<String>,
    #[serde(default)]
    x: Option<String>,
    #[serde(default)]
    y: Option<String>,
}

/// A JWK set (RFC 7517 §5).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct JwkSet {
    pub keys: Vec<Jwk>,
}

impl JwkSet {
    /// Parses a JWK set document; keys of types we do not use are kept
    /// (and never match), more than [`MAX_JWKS_KEYS`] is refused.
    pub fn parse(document: &[u8]) -> Result<Self, JwsError> {
        let set: JwkSet = serde_json::from_slice(document)
            .map_err(|e| JwsError::BadKeySet(format!("not a JWK set: {e}")))?;
        if set.keys.len() > MAX_JWKS_KEYS {
            return Err(JwsError::BadKeySet(format!(
                "it holds {} keys, over {MAX_JWKS_KEYS}",
                set.keys.len()
            )));
        }
        Ok(set)
    }

    /// Whether a key with this `kid` is in the set.
    pub fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }
}

/// The JWS protected header fields we read.
#[derive(Debug, Deserialize)]
pub struct Header {
    pub alg: String,
    #[serde(default)]
    pub kid: Option<String>,
    #[serde(default)]
    pub typ: Option<String>,
}

/// A compact JWS split and decoded, not yet verified.
#[derive(Debug)]
pub struct Unverified<'a> {
    pub header: Header,
    signing_input: &'a str,
    payload: Vec<u8>,
    signature: Vec<u8>,
}

impl<'a> Unverified<'a> {
    pub fn parse(token: &'a str) -> Result<Self, JwsError> {
        if token.len() > MAX_JWS_BYTES {
            return Err(JwsError::Malformed);
        }
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwsError::Malformed);
        };
        let decode = |part: &str| {
            URL_SAFE_NO_PAD
                .decode(part)
                .map_err(|_| JwsError::Malformed)
        };
        let header: Header =
            serde_json::from_slice(&decode(h)?).map_err(|_| JwsError::Malformed)?;
        Ok(Self {
            header,
            signing_input: &token[..h.len() + 1 + p.len()],
            payload: decode(p)?,
            signature: decode(s)?,
        })
    }

    /// Verifies the signature against `keys` and returns the payload. The
    /// key is the one named by `kid`; without a `kid`, every key of the
    /// algorithm's type is tried (providers with one key often omit it).
    pub fn verify(self, keys: &JwkSet) -> Result<Vec<u8>, JwsError> {
        let alg = JwsAlg::parse(&self.header.alg)?;
        let (kty, crv) = alg.key_type();
        let candidates: Vec<&Jwk> = keys
            .keys
            .iter()
            .filter(|k| match &self.header.kid {
                Some(kid) => k.kid.as_deref() == Some(kid.as_str()),
                None => true,
            })
            .filter(|k| k.kty == kty && (crv.is_none() || k.crv.as_deref() == crv))
            .filter(|k| k.alg.as_deref().is_none_or(|a| a == alg.as_str()))
            .filter(|k| k.use_.as_deref().is_none_or(|u| u == "sig"))
            .collect();
        if candidates.is_empty() {
            return Err(JwsError::UnknownKey(self.header.kid.clone()));
        }
        for key in candidates {
            if verify_with(alg, key, self.signing_input.as_bytes(), &self.signature)? {
                return Ok(self.payload);
            }
        }
        Err(JwsError::BadSignature)
    }
}

/// Whether `signature` over `message` verifies with `key`; an error when
/// the key itself is malformed.
fn verify_with(alg: JwsAlg, key: &Jwk, message: &[u8], sig: &[u8]) -> Result<bool, JwsError> {
    let field = |v: &Option<String>, name: &str| -> Result<Vec<u8>, JwsError> {
        let v = v
            .as_deref()
            .ok_or_else(|| JwsError::BadKeySet(format!("a {} key has no `{name}`", key.kty)))?;
        URL_SAFE_NO_PAD
            .decode(v)
            .map_err(|_| JwsError::BadKeySet(format!("`{name}` of a key is not base64url")))
    };
    match alg {
        JwsAlg::Rs256
        | JwsAlg::Rs384
        | JwsAlg::Rs512
        | JwsAlg::Ps256
        | JwsAlg::Ps384
        | JwsAlg::Ps512 => {
            let params: &'static signature::RsaParameters = match alg {
                JwsAlg::Rs256 => &signature::RSA_PKCS1_2048_8192_SHA256,
                JwsAlg::Rs384 => &signature::RSA_PKCS1_2048_8192_SHA384,
                JwsAlg::Rs512 => &signature::RSA_PKCS1_2048_8192_SHA512,
                JwsAlg::Ps256 => &signature::RSA_PSS_2048_8192_SHA256,
                JwsAlg::Ps384 => &signature::RSA_PSS_2048_8192_SHA384,
                _ => &signature::RSA_PSS_2048_8192_SHA512,
            };
            let (n, e) = (field(&key.n, "n")?, field(&key.e, "e")?);
            Ok(RsaPublicKeyComponents { n: &n, e: &e }
                .verify(params, message, sig)
                .is_ok())
        }
        JwsAlg::Es256 | JwsAlg::Es384 => {
            let verifier: &'static dyn VerificationAlgorithm = if alg == JwsAlg::Es256 {
                &signature::ECDSA_P256_SHA256_FIXED
            } else {
                &signature::ECDSA_P384_SHA384_FIXED
            };
            // SEC 1 uncompressed point: 0x04 ‖ x ‖ y.
            let mut point = vec![0x04];
            point.extend(field(&key.x, "x")?);
            point.extend(field(&key.y, "y")?);
            Ok(UnparsedPublicKey::new(verifier, &point)
                .verify(message, sig)
                .is_ok())
        }
        JwsAlg::EdDsa => {
            let x = field(&key.x, "x")?;
            Ok(UnparsedPublicKey::new(&signature::ED25519, &x)
                .verify(message, sig)
                .is_ok())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{Alg, KeySet};

    fn keys() -> (KeySet, JwkSet) {
        let set = KeySet::generate().expect("keys");
        let jwks = JwkSet::parse(set.jwks().to_string().as_bytes()).expect("jwks");
        (set, jwks)
    }

    #[test]
    fn rs256_and_es256_tokens_of_our_own_signer_verify() {
        let (set, jwks) = keys();
        for alg in [Alg::Rs256, Alg::Es256] {
            let token = set
                .sign(alg, &serde_json::json!({"sub": "x"}))
                .expect("sign");
            let payload = Unverified::parse(&token)
                .and_then(|t| t.verify(&jwks))
                .expect("verifies");
            assert_eq!(payload, br#"{"sub":"x"}"#);
        }
    }

    #[test]
    fn a_token_signed_by_another_key_with_the_same_kid_fails_its_signature() {
        let (set, jwks) = keys();
        let (other, _) = keys();
        let token = other
            .sign(Alg::Rs256, &serde_json::json!({"sub": "x"}))
            .expect("sign");
        // Graft the other key's signature under our key's kid.
        let ours = set
            .sign(Alg::Rs256, &serde_json::json!({"sub": "x"}))
            .expect("sign");
        let mut forged: Vec<&str> = ours.split('.').collect();
        forged[2] = token.split('.').nth(2).expect("sig");
        let forged = forged.join(".");
        assert_eq!(
            Unverified::parse(&forged).and_then(|t| t.verify(&jwks)),
            Err(JwsError::BadSignature)
        );
    }

    #[test]
    fn none_and_hmac_are_refused_whatever_the_keys() {
        let (_, jwks) = keys();
        for alg in ["none", "HS256", "hs256", "RS1"] {
            let header = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"{alg}"}}"#));
            let token = format!("{header}.e30.");
            assert_eq!(
                Unverified::parse(&token).and_then(|t| t.verify(&jwks)),
                Err(JwsError::Algorithm(alg.into())),
                "{alg}"
            );
        }
    }

    #[test]
    fn a_kid_not_in_the_set_is_an_unknown_key_and_garbage_is_malformed() {
        let (_, jwks) = keys();
        let (other, _) = keys();
        let token = other
            .sign(Alg::Es256, &serde_json::json!({}))
            .expect("sign");
        assert!(matches!(
            Unverified::parse(&token).and_then(|t| t.verify(&jwks)),
            Err(JwsError::UnknownKey(Some(_)))
        ));
        for bad in [
            "",
            "a.b",
            "a.b.c.d",
            "!!.e30.",
            &"a".repeat(MAX_JWS_BYTES + 1),
        ] {
            assert_eq!(
                Unverified::parse(bad).err(),
                Some(JwsError::Malformed),
                "{bad:.20}"
            );
        }
    }

    #[test]
    fn a_key_set_over_the_bound_is_refused() {
        let keys: Vec<_> = (0..=MAX_JWKS_KEYS)
            .map(
                |i| serde_json::json!({"kty": "RSA", "kid": i.to_string(), "n": "AQ", "e": "AQAB"}),
            )
            .collect();
        let doc = serde_json::json!({ "keys": keys }).to_string();
        assert!(matches!(
            JwkSet::parse(doc.as_bytes()),
            Err(JwsError::BadKeySet(_))
        ));
    }
}
