//! The token endpoint (RFC 6749 §3.2): client authentication, then the
//! `authorization_code` or `refresh_token` grant.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hyper::StatusCode;
use hyper::header::WWW_AUTHENTICATE;
use subtle::ConstantTimeEq;

use super::oauth::{TokenError, Tokens};
use super::record::{RecordedRequest, repeated};
use super::server::{self, Reply, Shared};
use super::{Client, DevClientAuth, TokenFault, TokenStyle, lock};
use crate::upstream::client_auth::ASSERTION_TYPE;
use crate::upstream::jws::JwkSet;

/// Parameters that must appear at most once (RFC 6749 §3.2).
const SINGLE: &[&str] = &[
    "grant_type",
    "code",
    "redirect_uri",
    "code_verifier",
    "refresh_token",
    "client_id",
    "client_secret",
    "client_assertion",
    "client_assertion_type",
];

/// `POST /token`; `client_jwks` is the JWKS of a `private_key_jwt` client,
/// fetched from its `jwks_uri`.
pub(super) fn handle(
    shared: &Shared,
    req: &RecordedRequest,
    client_jwks: Option<&JwkSet>,
) -> Reply {
    let fault = lock(&shared.token_fault).clone();
    match fault {
        TokenFault::Normal => {}
        TokenFault::Status(status, body) => return server::fault(status, &body),
        TokenFault::Garbage => {
            return server::reply(
                StatusCode::OK,
                "application/json",
                "<html><body>upstream proxy error</body></html>",
            );
        }
    }
    let style = *lock(&shared.token_style);
    match grant(shared, req, client_jwks) {
        Ok(tokens) if style == TokenStyle::GitHub => {
            // GitHub's shape: a form, `bearer`, `expires_in` as text.
            let body = url::form_urlencoded::Serializer::new(String::new())
                .append_pair("access_token", &tokens.access_token)
                .append_pair("token_type", "bearer")
                .append_pair("expires_in", &tokens.expires_in.to_string())
                .append_pair("refresh_token", &tokens.refresh_token)
                .append_pair("scope", &tokens.scope)
                .append_pair("x_github_extra", "kept")
                .finish();
            server::reply(StatusCode::OK, "application/x-www-form-urlencoded", body)
        }
        Err(error) if style == TokenStyle::GitHub => {
            // GitHub answers a bad code with a `200` carrying `error`.
            let body = url::form_urlencoded::Serializer::new(String::new())
                .append_pair("error", error.code())
                .append_pair("error_description", &error.to_string())
                .finish();
            server::reply(StatusCode::OK, "application/x-www-form-urlencoded", body)
        }
        Ok(tokens) => {
            let id_token = super::oidc::id_token(shared, &tokens);
            let mut body = serde_json::json!({
                "access_token": tokens.access_token,
                "token_type": "Bearer",
                "expires_in": tokens.expires_in,
                "refresh_token": tokens.refresh_token,
            });
            // RFC 6749 §5.1: optional when identical to the requested scope;
            // sent whenever there is one.
            if !tokens.scope.is_empty() {
                body["scope"] = tokens.scope.into();
            }
            if let Some(id_token) = id_token {
                body["id_token"] = id_token.into();
            }
            server::json(StatusCode::OK, &body)
        }
        Err(error) => error_reply(&error),
    }
}

fn grant(
    shared: &Shared,
    req: &RecordedRequest,
    client_jwks: Option<&JwkSet>,
) -> Result<Tokens, TokenError> {
    if !req.is_form() {
        return Err(TokenError::InvalidRequest(
            "the body must be application/x-www-form-urlencoded",
        ));
    }
    if repeated(&req.form, SINGLE).is_some() {
        return Err(TokenError::InvalidRequest(
            "a parameter is given more than once",
        ));
    }
    let Some(grant_type) = req.form_param("grant_type") else {
        return Err(TokenError::InvalidRequest("grant_type is missing"));
    };
    let client = authenticate(shared, req, client_jwks)?;
    let now = shared.now();
    match grant_type {
        "authorization_code" => {
            let code = req
                .form_param("code")
                .ok_or(TokenError::InvalidRequest("code is missing"))?;
            let redirect_uri = req
                .form_param("redirect_uri")
                .ok_or(TokenError::InvalidRequest("redirect_uri is missing"))?;
            let verifier = req.form_param("code_verifier");
            lock(&shared.state).exchange_code(
                &client.id,
                code,
                redirect_uri,
                verifier,
                now,
                &shared.rng,
            )
        }
        "refresh_token" => {
            let refresh_token = req
                .form_param("refresh_token")
                .ok_or(TokenError::InvalidRequest("refresh_token is missing"))?;
            lock(&shared.state).refresh(&client.id, refresh_token, now, &shared.rng)
        }
        _ => Err(TokenError::UnsupportedGrantType(
            "grant_type must be authorization_code or refresh_token",
        )),
    }
}

/// The client's authentication as it was told to use: its secret, a
/// `private_key_jwt` assertion, or none (a public client, whose code must
/// then carry PKCE: checked at the exchange).
fn authenticate<'a>(
    shared: &'a Shared,
    req: &RecordedRequest,
    client_jwks: Option<&JwkSet>,
) -> Result<&'a Client, TokenError> {
    let mode = req
        .form_param("client_id")
        .and_then(|id| lock(&shared.client_auth).get(id).cloned())
        .unwrap_or_default();
    let client_id = req.form_param("client_id").unwrap_or_default();
    match mode {
        DevClientAuth::Secret => authenticate_secret(shared, req),
        DevClientAuth::PrivateKeyJwt { .. } => {
            if req.form_param("client_secret").is_some() || req.header("authorization").is_some() {
                return Err(TokenError::InvalidRequest(
                    "more than one client authentication method",
                ));
            }
            if req.form_param("client_assertion_type") != Some(ASSERTION_TYPE) {
                return Err(TokenError::InvalidClient(
                    "this client must authenticate with private_key_jwt",
                ));
            }
            let assertion = req
                .form_param("client_assertion")
                .ok_or(TokenError::InvalidClient("client_assertion is missing"))?;
            super::oidc::check_assertion(shared, client_id, assertion, client_jwks)?;
            shared
                .client(client_id)
                .ok_or(TokenError::InvalidClient("unknown client"))
        }
        DevClientAuth::None => {
            if req.form_param("client_secret").is_some() || req.header("authorization").is_some() {
                return Err(TokenError::InvalidClient("a public client has no secret"));
            }
            if req.form_param("code_verifier").is_none() {
                return Err(TokenError::InvalidRequest("a public client must use PKCE"));
            }
            shared
                .client(client_id)
                .ok_or(TokenError::InvalidClient("unknown client"))
        }
    }
}

/// RFC 6749 §2.3.1: `client_secret_basic` or `client_secret_post`, not both
/// (§2.3: "MUST NOT use more than one authentication method").
fn authenticate_secret<'a>(
    shared: &'a Shared,
    req: &RecordedRequest,
) -> Result<&'a Client, TokenError> {
    let basic = req
        .header("authorization")
        .map(basic_credentials)
        .transpose()?;
    let form_id = req.form_param("client_id");
    let form_secret = req.form_param("client_secret");
    let (id, secret) = match (basic, form_id, form_secret) {
        (Some(_), _, Some(_)) => {
            return Err(TokenError::InvalidRequest(
                "more than one client authentication method",
            ));
        }
        (Some((id, _)), Some(form_id), None) if form_id != id => {
            return Err(TokenError::InvalidRequest(
                "client_id differs from the Authorization header's",
            ));
        }
        (Some(credentials), _, None) => credentials,
        (None, Some(id), Some(secret)) => (id.to_owned(), secret.to_owned()),
        (None, _, _) => {
            return Err(TokenError::InvalidClient(
                "client authentication required (client_secret_basic or client_secret_post)",
            ));
        }
    };
    let client = shared
        .client(&id)
        .ok_or(TokenError::InvalidClient("unknown client"))?;
    if bool::from(client.secret.as_bytes().ct_eq(secret.as_bytes())) {
        Ok(client)
    } else {
        Err(TokenError::InvalidClient("wrong client secret"))
    }
}

/// `Basic base64(urlencode(id) ":" urlencode(secret))` (RFC 6749 §2.3.1,
/// RFC 7617).
fn basic_credentials(header: &str) -> Result<(String, String), TokenError> {
    let malformed = TokenError::InvalidClient("malformed Basic credentials");
    let (scheme, encoded) = header.trim().split_once(' ').ok_or(malformed)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(TokenError::InvalidClient(
            "the Authorization header must use the Basic scheme",
        ));
    }
    let decoded = STANDARD
        .decode(encoded.trim())
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or(TokenError::InvalidClient("malformed Basic credentials"))?;
    let (id, secret) = decoded
        .split_once(':')
        .ok_or(TokenError::InvalidClient("malformed Basic credentials"))?;
    match (form_decode(id), form_decode(secret)) {
        (Some(id), Some(secret)) => Ok((id, secret)),
        _ => Err(TokenError::InvalidClient(
            "Basic credentials are not form-urlencoded (RFC 6749 §2.3.1)",
        )),
    }
}

/// Decodes one `application/x-www-form-urlencoded` value; `None` if a `%`
/// escape is malformed or the result is not UTF-8.
fn form_decode(value: &str) -> Option<String> {
    let mut out = Vec::with_capacity(value.len());
    let mut bytes = value.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = [bytes.next()?, bytes.next()?];
                let hex = std::str::from_utf8(&hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
            }
            b => out.push(b),
        }
    }
    String::from_utf8(out).ok()
}

/// RFC 6749 §5.2; `invalid_client` is a 401 with a challenge in the scheme
/// the client may use.
fn error_reply(error: &TokenError) -> Reply {
    let status = match error {
        TokenError::InvalidClient(_) => StatusCode::UNAUTHORIZED,
        TokenError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::BAD_REQUEST,
    };
    let reply = server::json_error(status, error.code(), &error.to_string());
    if status == StatusCode::UNAUTHORIZED {
        server::with_header(
            reply,
            WWW_AUTHENTICATE,
            r#"Basic realm="waypass-dev-provider""#,
        )
    } else {
        reply
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_decode_undoes_plus_and_percent_escapes() {
        assert_eq!(form_decode("a+b%3Ac%25").as_deref(), Some("a b:c%"));
        assert_eq!(form_decode("bad%4"), None);
        assert_eq!(form_decode("bad%zz"), None);
    }

    #[test]
    fn basic_credentials_are_decoded_and_form_urldecoded() {
        let header = format!("basic {}", STANDARD.encode("my%20app:s%3Acret+x"));
        let (id, secret) = basic_credentials(&header).ok().unwrap_or_default();
        assert_eq!((id.as_str(), secret.as_str()), ("my app", "s:cret x"));
        assert!(basic_credentials("Bearer abc").is_err());
        assert!(basic_credentials("Basic !!!").is_err());
    }
}
