//! Checking a provider's id_token claims (OpenID Connect Core 1.0
//! §3.1.3.7) once its signature verified ([`super::jws`]).

use serde::Deserialize;
use serde_json::{Map, Value};

use super::jws::JwsError;

/// How far the provider's clock may be from ours, either way, when `exp`
/// and `iat` are compared (Core §3.1.3.7 items 9–10 leave it to the client).
/// Two minutes covers NTP-synchronised hosts with margin and keeps a
/// stolen, expired token useless soon after.
pub const CLOCK_SKEW: u64 = 120;

/// Why an id_token was refused. The text reaches the app as the login's
/// `error_description`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdTokenError {
    #[error("the provider's id_token is refused: {0}")]
    Signature(#[from] JwsError),
    #[error("the provider's id_token is refused: its claims do not parse ({0})")]
    Unreadable(String),
    #[error("the provider's id_token is refused: it was issued by `{found}`, not `{expected}`")]
    Issuer { expected: String, found: String },
    #[error("the provider's id_token is refused: it is not meant for this client (aud)")]
    Audience,
    #[error(
        "the provider's id_token is refused: it has several audiences and azp is not this client"
    )]
    AuthorizedParty,
    #[error("the provider's id_token is refused: it has expired")]
    Expired,
    #[error("the provider's id_token is refused: it is issued in the future (iat)")]
    IssuedInFuture,
    #[error("the provider's id_token is refused: its nonce is not this login's (a replayed token)")]
    Nonce,
    #[error("the provider's id_token is refused: it has no subject (sub)")]
    NoSubject,
}

/// `aud`: one string or an array of them (Core §2).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

/// The claims Core §3.1.3.7 says to check; the others are kept as they are.
#[derive(Debug, Deserialize)]
struct Checked {
    iss: String,
    sub: String,
    aud: Audience,
    exp: u64,
    iat: u64,
    #[serde(default)]
    nonce: Option<String>,
    #[serde(default)]
    azp: Option<String>,
}

/// What the claims must match.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    pub issuer: &'a str,
    pub client_id: &'a str,
    /// The nonce this login sent (always, for connections with an issuer).
    pub nonce: &'a str,
    /// Unix seconds.
    pub now: u64,
}

/// Checks the verified payload's claims and returns them all.
pub fn check(payload: &[u8], expected: Expected<'_>) -> Result<Map<String, Value>, IdTokenError> {
    let claims: Map<String, Value> =
        serde_json::from_slice(payload).map_err(|e| IdTokenError::Unreadable(e.to_string()))?;
    let checked: Checked = serde_json::from_value(Value::Object(claims.clone()))
        .map_err(|e| IdTokenError::Unreadable(e.to_string()))?;
    // Item 2: exact match with the issuer the connection names.
    if checked.iss != expected.issuer {
        return Err(IdTokenError::Issuer {
            expected: expected.issuer.to_owned(),
            found: checked.iss,
        });
    }
    // Items 3–5: our client_id among the audiences; with several, azp must
    // be present and name us.
    let audiences = match checked.aud {
        Audience::One(a) => vec![a],
        Audience::Many(a) => a,
    };
    if !audiences.iter().any(|a| a == expected.client_id) {
        return Err(IdTokenError::Audience);
    }
    match checked.azp.as_deref() {
        Some(azp) if azp != expected.client_id => return Err(IdTokenError::AuthorizedParty),
        None if audiences.len() > 1 => return Err(IdTokenError::AuthorizedParty),
        _ => {}
    }
    // Items 9–10.
    if expected.now >= checked.exp.saturating_add(CLOCK_SKEW) {
        return Err(IdTokenError::Expired);
    }
    if checked.iat > expected.now.saturating_add(CLOCK_SKEW) {
        return Err(IdTokenError::IssuedInFuture);
    }
    // Item 11: the nonce we sent, compared exactly.
    if checked.nonce.as_deref() != Some(expected.nonce) {
        return Err(IdTokenError::Nonce);
    }
    if checked.sub.is_empty() {
        return Err(IdTokenError::NoSubject);
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn expected() -> Expected<'static> {
        Expected {
            issuer: "https://id.test",
            client_id: "waypass",
            nonce: "n-1",
            now: NOW,
        }
    }

    fn claims(change: impl FnOnce(&mut Map<String, Value>)) -> Vec<u8> {
        let mut c = serde_json::json!({
            "iss": "https://id.test", "sub": "u1", "aud": "waypass",
            "exp": NOW + 300, "iat": NOW, "nonce": "n-1", "email": "a@b.test"
        });
        if let Value::Object(map) = &mut c {
            change(map);
        }
        c.to_string().into_bytes()
    }

    #[test]
    fn good_claims_pass_and_keep_every_claim() {
        let checked = check(&claims(|_| {}), expected()).expect("good");
        assert_eq!(checked["email"], "a@b.test");
    }

    #[test]
    fn another_issuer_audience_or_nonce_is_refused() {
        type Change = fn(&mut Map<String, Value>);
        let cases: [(Change, &str); 5] = [
            (
                |c| {
                    c.insert("iss".into(), "https://evil.test".into());
                },
                "issued by",
            ),
            (
                |c| {
                    c.insert("aud".into(), "other".into());
                },
                "(aud)",
            ),
            (
                |c| {
                    c.insert("aud".into(), serde_json::json!(["waypass", "other"]));
                },
                "azp",
            ),
            (
                |c| {
                    c.insert("nonce".into(), "n-0".into());
                },
                "replayed",
            ),
            (
                |c| {
                    c.remove("nonce");
                },
                "replayed",
            ),
        ];
        for (change, needle) in cases {
            let err = check(&claims(change), expected()).unwrap_err().to_string();
            assert!(err.contains(needle), "{err}");
        }
    }

    #[test]
    fn several_audiences_pass_with_azp_naming_us() {
        let ok = claims(|c| {
            c.insert("aud".into(), serde_json::json!(["other", "waypass"]));
            c.insert("azp".into(), "waypass".into());
        });
        assert!(check(&ok, expected()).is_ok());
    }

    #[test]
    fn expiry_and_issue_time_allow_the_skew_and_no_more() {
        let at = |exp: u64, iat: u64| {
            check(
                &claims(|c| {
                    c.insert("exp".into(), exp.into());
                    c.insert("iat".into(), iat.into());
                }),
                expected(),
            )
        };
        assert!(at(NOW - CLOCK_SKEW + 1, NOW - 600).is_ok());
        assert_eq!(at(NOW - CLOCK_SKEW, NOW - 600), Err(IdTokenError::Expired));
        assert!(at(NOW + 600, NOW + CLOCK_SKEW).is_ok());
        assert_eq!(
            at(NOW + 600, NOW + CLOCK_SKEW + 1),
            Err(IdTokenError::IssuedInFuture)
        );
    }

    #[test]
    fn missing_or_mistyped_claims_are_unreadable_not_a_panic() {
        for payload in [
            b"[]".to_vec(),
            claims(|c| {
                c.remove("exp");
            }),
            claims(|c| {
                c.insert("exp".into(), "x".into());
            }),
        ] {
            assert!(matches!(
                check(&payload, expected()),
                Err(IdTokenError::Unreadable(_))
            ));
        }
        assert_eq!(
            check(
                &claims(|c| {
                    c.insert("sub".into(), "".into());
                }),
                expected()
            ),
            Err(IdTokenError::NoSubject)
        );
    }
}
