//! `private_key_jwt` (RFC 7523 §2.2, OpenID Connect Core §9): the broker
//! authenticates to a provider's token endpoint with a JWT signed by a key
//! of the connection's own, whose public half the provider fetches from
//! `<issuer>/connections/<name>/jwks.json`.

use aws_lc_rs::rand::{SecureRandom as _, SystemRandom};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;

use crate::keys::{Alg, KeyError, KeySet};

/// RFC 7523 §2.2's `client_assertion_type`.
pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// How long an assertion is valid: it is used at once, and RFC 7523 §3
/// item 4 lets the provider refuse long-lived ones; one minute absorbs
/// clock differences without leaving a replayable token lying around.
pub const ASSERTION_LIFETIME: u64 = 60;
/// The algorithm assertions are signed with: RS256 is the one every
/// provider that supports `private_key_jwt` accepts.
pub const ASSERTION_ALG: Alg = Alg::Rs256;

/// An assertion's claims (RFC 7523 §3).
#[derive(Debug, Serialize)]
struct Claims<'a> {
    /// Item 1: the client itself.
    iss: &'a str,
    /// Item 2: the client (as the subject of the authentication).
    sub: &'a str,
    /// Item 3: the authorization server, named by its token endpoint
    /// (OpenID Connect Core §9).
    aud: &'a str,
    /// Item 4.
    exp: u64,
    /// Item 6.
    iat: u64,
    /// Item 7: unique, so the provider can refuse a replay.
    jti: String,
}

/// A signed assertion for `client_id` towards `token_endpoint`, by the
/// newest RS256 key of `keys` (its `kid` in the header).
pub fn assertion(
    keys: &KeySet,
    client_id: &str,
    token_endpoint: &str,
    now: u64,
) -> Result<String, KeyError> {
    let mut jti = [0u8; 16];
    SystemRandom::new()
        .fill(&mut jti)
        .map_err(|_| KeyError::Sign)?;
    let claims = Claims {
        iss: client_id,
        sub: client_id,
        aud: token_endpoint,
        exp: now + ASSERTION_LIFETIME,
        iat: now,
        jti: URL_SAFE_NO_PAD.encode(jti),
    };
    let claims = serde_json::to_value(&claims).map_err(|_| KeyError::Sign)?;
    keys.sign(ASSERTION_ALG, &claims)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::jws::{JwkSet, Unverified};

    #[test]
    fn an_assertion_carries_rfc_7523_claims_and_verifies_against_the_published_keys() {
        let keys = KeySet::generate().expect("keys");
        let a = assertion(&keys, "waypass", "https://id.test/token", 1000).expect("signed");
        let b = assertion(&keys, "waypass", "https://id.test/token", 1000).expect("signed");
        let jwks = JwkSet::parse(keys.jwks().to_string().as_bytes()).expect("jwks");
        let token = Unverified::parse(&a).expect("parses");
        assert!(token.header.kid.is_some(), "the kid names the key");
        let claims: serde_json::Value =
            serde_json::from_slice(&token.verify(&jwks).expect("verifies")).expect("json");
        assert_eq!(claims["iss"], "waypass");
        assert_eq!(claims["sub"], "waypass");
        assert_eq!(claims["aud"], "https://id.test/token");
        assert_eq!(claims["exp"], 1000 + ASSERTION_LIFETIME);
        let other: serde_json::Value = serde_json::from_slice(
            &Unverified::parse(&b)
                .expect("parses")
                .verify(&jwks)
                .expect("verifies"),
        )
        .expect("json");
        assert_ne!(
            claims["jti"], other["jti"],
            "every assertion has its own jti"
        );
    }
}
