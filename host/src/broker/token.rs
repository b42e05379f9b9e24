//! The OpenID Connect provider side: `/oauth/token`, `/userinfo`, discovery.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value, json};

use super::model::{Client, ClientType};
use super::oauth::{ErrorCode, OAuthError, Params};
use super::secret::{SecretHash, ct_eq, pkce_challenge, pkce_verifier_is_valid};
use super::store::{AccessGrant, User};
use super::{Broker, TOKEN_TTL};
use crate::mapper::Profile;

/// A JSON answer with its status and, for 401s, the challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonReply {
    pub status: u16,
    pub body: String,
    pub www_authenticate: Option<String>,
}

impl JsonReply {
    fn ok(body: Value) -> Self {
        Self {
            status: 200,
            body: body.to_string(),
            www_authenticate: None,
        }
    }

    fn error(e: &OAuthError, challenge: Option<String>) -> Self {
        Self {
            status: e.code.status(),
            body: e.to_json(),
            www_authenticate: challenge,
        }
    }
}

/// How the client authenticated at the token endpoint.
enum ClientAuth {
    Basic,
    Post,
    None,
}

impl Broker {
    /// Handles `POST /oauth/token` with its form body and Authorization header.
    pub async fn token(&self, body: &str, authorization: Option<&str>) -> JsonReply {
        let mut basic_used = false;
        let result = async {
            let params = Params::parse(body)?;
            let (client, how) = self.authenticate_client(&params, authorization)?;
            basic_used = matches!(how, ClientAuth::Basic);
            match params.require("grant_type")? {
                "authorization_code" => self.redeem_code(&params, &client).await,
                "client_credentials" => self.client_credentials(&params, &client).await,
                other => Err(OAuthError::new(
                    ErrorCode::UnsupportedGrantType,
                    format!("grant_type `{other}` is not supported; use authorization_code or client_credentials"),
                )),
            }
        }
        .await;
        match result {
            Ok(body) => JsonReply::ok(body),
            Err(e) => {
                // RFC 6749 §5.2: a 401 for a client that used Basic names the scheme.
                let challenge = (e.code == ErrorCode::InvalidClient)
                    .then(|| {
                        if basic_used || authorization.is_some() {
                            "Basic realm=\"waypass\""
                        } else {
                            "Basic"
                        }
                    })
                    .map(str::to_owned);
                JsonReply::error(&e, challenge)
            }
        }
    }

    fn authenticate_client(
        &self,
        params: &Params,
        authorization: Option<&str>,
    ) -> Result<(std::sync::Arc<Client>, ClientAuth), OAuthError> {
        let invalid = |d: &str| OAuthError::new(ErrorCode::InvalidClient, d);
        let (client_id, secret, how) = match authorization.and_then(|h| h.strip_prefix("Basic ")) {
            Some(encoded) => {
                if params.get("client_secret").is_some() {
                    return Err(OAuthError::new(
                        ErrorCode::InvalidRequest,
                        "use one client authentication method, not Basic and client_secret both",
                    ));
                }
                let (id, secret) =
                    decode_basic(encoded).ok_or_else(|| invalid("malformed Basic credentials"))?;
                if params.get("client_id").is_some_and(|form_id| form_id != id) {
                    return Err(invalid("client_id does not match the Basic credentials"));
                }
                (id, Some(secret), ClientAuth::Basic)
            }
            None => {
                let id = params.require("client_id")?.to_owned();
                match params.get("client_secret") {
                    Some(s) => (id, Some(s.to_owned()), ClientAuth::Post),
                    None => (id, None, ClientAuth::None),
                }
            }
        };
        let client = self
            .client(&client_id)
            .ok_or_else(|| invalid("unknown client or bad credentials"))?;
        match (client.client_type, &client.secret_hash, secret) {
            (ClientType::Confidential, Some(hash), Some(secret)) if hash.matches(&secret) => {
                Ok((client, how))
            }
            (ClientType::Public, None, None) => Ok((client, how)),
            _ => Err(invalid("unknown client or bad credentials")),
        }
    }

    async fn redeem_code(&self, params: &Params, client: &Client) -> Result<Value, OAuthError> {
        let code = params.require("code")?;
        let invalid_grant = |d: &str| OAuthError::new(ErrorCode::InvalidGrant, d);
        let now = self.clock.now();
        // Taken, so a second redemption of the same code fails (RFC 6749 §4.1.2).
        let grant = self
            .store
            .take_code(SecretHash::of(code), now)
            .await
            .map_err(|e| store_unavailable(&e))?
            .ok_or_else(|| {
                invalid_grant("the authorization code is invalid, expired or already used")
            })?;
        if grant.client_id != client.client_id {
            return Err(invalid_grant(
                "the authorization code was issued to another client",
            ));
        }
        if params.get("redirect_uri") != Some(grant.redirect_uri.as_str()) {
            return Err(invalid_grant(
                "redirect_uri does not match the one used at /authorize",
            ));
        }
        match (&grant.code_challenge, params.get("code_verifier")) {
            (Some(challenge), Some(verifier))
                if pkce_verifier_is_valid(verifier)
                    && ct_eq(&pkce_challenge(verifier), challenge) => {}
            (Some(_), _) => {
                return Err(invalid_grant(
                    "the PKCE code_verifier does not match the code_challenge",
                ));
            }
            (None, Some(_)) => {
                return Err(invalid_grant(
                    "a code_verifier was sent but no code_challenge was used",
                ));
            }
            (None, None) => {}
        }
        let user = self
            .store
            .get_user(&grant.user_id)
            .await
            .map_err(|e| store_unavailable(&e))?
            .ok_or_else(|| invalid_grant("the user no longer exists"))?;

        let expires_in = TOKEN_TTL.as_secs();
        let mut claims = Map::new();
        claims.insert("iss".into(), json!(self.issuer));
        claims.insert("sub".into(), json!(user.user_id));
        claims.insert("aud".into(), json!(client.client_id));
        claims.insert("iat".into(), json!(now));
        claims.insert("exp".into(), json!(now + expires_in));
        claims.insert("auth_time".into(), json!(grant.auth_time));
        if let Some(nonce) = &grant.nonce {
            claims.insert("nonce".into(), json!(nonce));
        }
        profile_claims(&user, &grant.scope, &mut claims);
        let id_token = self
            .keys
            .sign(client.id_token_alg, &Value::Object(claims))
            .map_err(|e| {
                tracing::error!(error = %e, "cannot sign an id_token");
                OAuthError::new(ErrorCode::ServerError, "the id_token could not be signed")
            })?;
        let access_token = self.random.token();
        let access = AccessGrant {
            user_id: user.user_id.clone(),
            client_id: client.client_id.clone(),
            scope: grant.scope.clone(),
            expires_at: now + expires_in,
        };
        self.store
            .put_access_token(SecretHash::of(&access_token), access)
            .await
            .map_err(|e| store_unavailable(&e))?;
        Ok(json!({
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": expires_in,
            "id_token": id_token,
            "scope": grant.scope,
        }))
    }

    /// The `client_credentials` grant (RFC 6749 §4.4): a management token
    /// carrying the requested subset of the client's scopes.
    async fn client_credentials(
        &self,
        params: &Params,
        client: &Client,
    ) -> Result<Value, OAuthError> {
        if client.client_type != ClientType::Confidential || client.scopes.is_empty() {
            return Err(OAuthError::new(
                ErrorCode::UnauthorizedClient,
                "this client may not use client_credentials (it has no management scopes)",
            ));
        }
        let scope = match params.get("scope") {
            None => client.scopes.join(" "),
            Some(requested) => {
                if let Some(extra) = requested
                    .split(' ')
                    .find(|s| !client.scopes.iter().any(|c| c == s))
                {
                    return Err(OAuthError::new(
                        ErrorCode::InvalidScope,
                        format!("scope `{extra}` is not granted to this client"),
                    ));
                }
                requested.to_owned()
            }
        };
        let now = self.clock.now();
        let expires_in = TOKEN_TTL.as_secs();
        let token = self.random.token();
        let grant = AccessGrant {
            // No user: a management token.
            user_id: String::new(),
            client_id: client.client_id.clone(),
            scope: scope.clone(),
            expires_at: now + expires_in,
        };
        self.store
            .put_access_token(SecretHash::of(&token), grant)
            .await
            .map_err(|e| store_unavailable(&e))?;
        Ok(
            json!({"access_token": token, "token_type": "Bearer", "expires_in": expires_in, "scope": scope}),
        )
    }

    /// Handles `/userinfo` (GET or POST) with the request's Authorization header.
    pub async fn userinfo(&self, authorization: Option<&str>) -> JsonReply {
        let challenge = |e: &OAuthError| {
            format!(
                "Bearer realm=\"waypass\", error=\"{}\", error_description=\"{}\"",
                e.code, e.description
            )
        };
        let Some(token) = authorization
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
        else {
            // RFC 6750 §3.1: no credentials, no error code.
            return JsonReply {
                status: 401,
                body: OAuthError::new(ErrorCode::InvalidToken, "a Bearer access token is required")
                    .to_json(),
                www_authenticate: Some("Bearer realm=\"waypass\"".into()),
            };
        };
        let now = self.clock.now();
        let found = match self
            .store
            .get_access_token(SecretHash::of(token), now)
            .await
        {
            Ok(found) => found,
            Err(e) => return JsonReply::error(&store_unavailable(&e), None),
        };
        let user = match found.filter(|g| !g.user_id.is_empty()) {
            Some(grant) => self
                .store
                .get_user(&grant.user_id)
                .await
                .map(|u| u.map(|u| (u, grant))),
            None => Ok(None),
        };
        match user {
            Ok(Some((user, grant))) => {
                let mut claims = Map::new();
                claims.insert("sub".into(), json!(user.user_id));
                profile_claims(&user, &grant.scope, &mut claims);
                JsonReply::ok(Value::Object(claims))
            }
            Ok(None) => {
                let e = OAuthError::new(
                    ErrorCode::InvalidToken,
                    "the access token is invalid or expired",
                );
                let c = challenge(&e);
                JsonReply::error(&e, Some(c))
            }
            Err(e) => JsonReply::error(&store_unavailable(&e), None),
        }
    }

    /// The OpenID Provider metadata (OpenID Connect Discovery 1.0 §3).
    pub fn discovery(&self) -> Value {
        let i = &self.issuer;
        json!({
            "issuer": i,
            "authorization_endpoint": format!("{i}/authorize"),
            "token_endpoint": format!("{i}/oauth/token"),
            "userinfo_endpoint": format!("{i}/userinfo"),
            "jwks_uri": format!("{i}/.well-known/jwks.json"),
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code", "client_credentials"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256", "ES256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
            "code_challenge_methods_supported": ["S256"],
            "scopes_supported": ["openid", "profile", "email"],
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "email",
                "email_verified", "name", "given_name", "family_name", "nickname", "picture"],
        })
    }
}

/// Adds the profile's standard claims that `scope` grants (OIDC Core §5.4).
fn profile_claims(user: &User, scope: &str, claims: &mut Map<String, Value>) {
    let p: &Profile = &user.profile;
    let scopes: Vec<&str> = scope.split(' ').collect();
    let mut put = |name: &str, value: Option<Value>| {
        if let Some(v) = value {
            claims.insert(name.to_owned(), v);
        }
    };
    if scopes.contains(&"email") {
        put("email", p.email.clone().map(Value::from));
        put("email_verified", p.email_verified.map(Value::from));
    }
    if scopes.contains(&"profile") {
        put("name", p.name.clone().map(Value::from));
        put("given_name", p.given_name.clone().map(Value::from));
        put("family_name", p.family_name.clone().map(Value::from));
        put("nickname", p.nickname.clone().map(Value::from));
        put("picture", p.picture.clone().map(Value::from));
    }
}

fn decode_basic(encoded: &str) -> Option<(String, String)> {
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    let unescape = |s: &str| {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
    };
    Some((unescape(id)?, unescape(secret)?))
}

fn store_unavailable(e: &super::store::StoreError) -> OAuthError {
    tracing::error!(error = %e, "store unavailable");
    OAuthError::new(
        ErrorCode::TemporarilyUnavailable,
        "the login service is temporarily unavailable",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_form_decoded_per_rfc_6749() {
        let encoded = STANDARD.encode("my%3Aapp:s%2Bcret");
        assert_eq!(
            decode_basic(&encoded),
            Some(("my:app".into(), "s+cret".into()))
        );
        assert_eq!(decode_basic("not base64!"), None);
    }
}
