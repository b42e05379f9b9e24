//! The provider's OpenID Connect side: discovery, its JWKS (with
//! rotation), signed id_tokens carrying the login's nonce, a standard
//! userinfo endpoint, and the checks a real provider makes of a client's
//! `private_key_jwt` assertion (RFC 7523 §3).

use std::time::UNIX_EPOCH;

use hyper::StatusCode;
use hyper::header::CACHE_CONTROL;
use serde_json::{Map, Value, json};

use super::oauth::{TokenError, Tokens};
use super::record::RecordedRequest;
use super::server::{self, Reply, Shared};
use super::{IdTokenFault, lock};
use crate::keys::{Alg, KeySet};
use crate::upstream::jws::{JwkSet, Unverified};

/// How long the provider's id_tokens are valid.
pub(super) const ID_TOKEN_LIFETIME: u64 = 300;
/// The `Cache-Control: max-age` of discovery and JWKS answers.
const METADATA_MAX_AGE: u64 = 300;
/// Longest lifetime (exp − iat) accepted of a client assertion: RFC 7523
/// §3 item 4 lets a server refuse long-lived ones.
const MAX_ASSERTION_LIFETIME: u64 = 300;

/// `GET /.well-known/openid-configuration` (OpenID Connect Discovery §3).
pub(super) fn discovery(shared: &Shared) -> Reply {
    let o = &shared.origin;
    let doc = json!({
        "issuer": o,
        "authorization_endpoint": format!("{o}/authorize"),
        "token_endpoint": format!("{o}/token"),
        "userinfo_endpoint": format!("{o}/oidc/userinfo"),
        "jwks_uri": format!("{o}/jwks"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256", "ES256"],
        "token_endpoint_auth_methods_supported":
            ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"],
        "code_challenge_methods_supported": ["S256"],
        "authorization_response_iss_parameter_supported": shared.issuer_parameter,
    });
    cached(server::json(StatusCode::OK, &doc))
}

/// `GET /jwks`: the current keys only (a rotation drops the old ones, the
/// hard case for a relying party's cache).
pub(super) fn jwks(shared: &Shared) -> Reply {
    let jwks = shared
        .signing_keys()
        .map_or_else(|| json!({"keys": []}), |k| k.jwks().clone());
    cached(server::json(StatusCode::OK, &jwks))
}

fn cached(mut reply: Reply) -> Reply {
    if let Ok(v) = format!("public, max-age={METADATA_MAX_AGE}").parse() {
        reply.headers_mut().insert(CACHE_CONTROL, v);
    }
    reply
}

/// The claims the provider knows of a user: `sub`, `email`,
/// `email_verified` and whatever a test set with `set_claims`.
pub(super) fn user_claims(shared: &Shared, user: &super::DevUser) -> Map<String, Value> {
    let mut claims = Map::new();
    claims.insert("sub".into(), user.uuid.clone().into());
    claims.insert("email".into(), user.email.clone().into());
    claims.insert("email_verified".into(), true.into());
    if let Some(Value::Object(extra)) = lock(&shared.claims).get(&user.uuid) {
        for (k, v) in extra {
            claims.insert(k.clone(), v.clone());
        }
    }
    claims
}

fn unix(shared: &Shared) -> u64 {
    shared
        .now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The id_token for tokens issued with the `openid` scope, as the current
/// id_token fault shapes it; `None` without `openid` or when told to omit it.
pub(super) fn id_token(shared: &Shared, tokens: &Tokens) -> Option<String> {
    if !tokens.scope.split(' ').any(|s| s == "openid") {
        return None;
    }
    let fault = lock(&shared.id_token_fault).clone();
    if fault == IdTokenFault::ReplayPrevious
        && let Some(previous) = lock(&shared.last_id_token).clone()
    {
        return Some(previous);
    }
    if fault == IdTokenFault::Omit {
        return None;
    }
    let now = unix(shared);
    let mut claims = user_claims(shared, &tokens.user);
    claims.insert("iss".into(), shared.origin.clone().into());
    claims.insert("aud".into(), tokens.client_id.clone().into());
    claims.insert("iat".into(), now.into());
    claims.insert("exp".into(), (now + ID_TOKEN_LIFETIME).into());
    if let Some(nonce) = &tokens.nonce {
        claims.insert("nonce".into(), nonce.clone().into());
    }
    if let IdTokenFault::Audience(aud) = &fault {
        claims.insert("aud".into(), aud.clone().into());
    }
    let signer = match fault {
        // Keys nobody published: the signature cannot verify.
        IdTokenFault::ForeignKey => std::sync::Arc::new(KeySet::generate().ok()?),
        _ => shared.signing_keys()?,
    };
    let token = signer.sign(Alg::Rs256, &Value::Object(claims)).ok()?;
    if fault == IdTokenFault::ForeignKey {
        // Keep the published key's kid, so only the signature is wrong.
        let kid_header = shared.signing_keys()?.sign(Alg::Rs256, &json!({})).ok()?;
        let header = kid_header.split('.').next()?.to_owned();
        let rest = token.split_once('.')?.1;
        return Some(format!("{header}.{rest}"));
    }
    *lock(&shared.last_id_token) = Some(token.clone());
    Some(token)
}

/// `GET /oidc/userinfo` (OpenID Connect Core §5.3): the standard claims of
/// the user behind a bearer token.
pub(super) fn userinfo(shared: &Shared, req: &RecordedRequest) -> Reply {
    let token = req
        .header("authorization")
        .and_then(|h| h.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim().to_owned());
    let now = shared.now();
    let user = token.and_then(|t| lock(&shared.state).user(&t, now).cloned());
    match user {
        Some(user) => server::json(StatusCode::OK, &Value::Object(user_claims(shared, &user))),
        None => server::json_error(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "unknown or expired access token",
        ),
    }
}

/// RFC 7523 §3 as a provider checks a client assertion: a JWT signed by a
/// key of the client's JWKS (fetched from its `jwks_uri` by the server),
/// `iss` and `sub` the client, `aud` this token endpoint, unexpired, short
/// lived, and its `jti` never seen before.
pub(super) fn check_assertion(
    shared: &Shared,
    client_id: &str,
    assertion: &str,
    client_jwks: Option<&JwkSet>,
) -> Result<(), TokenError> {
    let keys = client_jwks.ok_or(TokenError::InvalidClient(
        "the client's jwks_uri could not be fetched",
    ))?;
    let payload = Unverified::parse(assertion)
        .and_then(|t| t.verify(keys))
        .map_err(|_| {
            TokenError::InvalidClient("the client assertion's signature does not verify")
        })?;
    let claims: Map<String, Value> = serde_json::from_slice(&payload)
        .map_err(|_| TokenError::InvalidClient("the client assertion's claims do not parse"))?;
    let text = |k: &str| claims.get(k).and_then(Value::as_str);
    let number = |k: &str| claims.get(k).and_then(Value::as_u64);
    if text("iss") != Some(client_id) || text("sub") != Some(client_id) {
        return Err(TokenError::InvalidClient(
            "the client assertion's iss and sub must be the client",
        ));
    }
    let audience = format!("{}/token", shared.origin);
    let aud_ok = match claims.get("aud") {
        Some(Value::String(a)) => *a == audience || *a == shared.origin,
        Some(Value::Array(a)) => a.iter().any(|v| v.as_str() == Some(&audience)),
        _ => false,
    };
    if !aud_ok {
        return Err(TokenError::InvalidClient(
            "the client assertion is not for this token endpoint",
        ));
    }
    let now = unix(shared);
    let (Some(exp), Some(jti)) = (number("exp"), text("jti")) else {
        return Err(TokenError::InvalidClient(
            "the client assertion needs exp and jti",
        ));
    };
    if exp <= now {
        return Err(TokenError::InvalidClient(
            "the client assertion has expired",
        ));
    }
    if exp.saturating_sub(number("iat").unwrap_or(now)) > MAX_ASSERTION_LIFETIME {
        return Err(TokenError::InvalidClient(
            "the client assertion lives too long",
        ));
    }
    let mut seen = lock(&shared.seen_jtis);
    // Bounded: the oldest assertions have long expired by then.
    if seen.len() >= super::oauth::MAX_ENTRIES {
        seen.clear();
    }
    if !seen.insert(jti.to_owned()) {
        return Err(TokenError::InvalidClient(
            "the client assertion was already used (jti)",
        ));
    }
    Ok(())
}
