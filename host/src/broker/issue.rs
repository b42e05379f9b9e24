//! The tokens a grant issues, for the code and refresh grants alike: the
//! access token (an RFC 9068 JWT for an API, opaque for `/userinfo`
//! otherwise), the id_token, and the token response that carries them.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::oauth::{ErrorCode, OAuthError};
use super::{Broker, TOKEN_TTL};
use crate::keys::TokenType;
use crate::model::Client;
use crate::model::resource_server::ResourceServer;
use crate::secret::SecretHash;
use crate::store::{AccessGrant, GrantClaims, User};

/// The scopes OpenID Connect itself defines (Core §5.4, §11): kept in an
/// API's access token beside the API's own, and whatever else an app asks
/// for with an `audience` is dropped, as Auth0 does.
pub const OIDC_SCOPES: [&str; 4] = ["openid", "profile", "email", "offline_access"];

/// The scope that asks for a refresh token (OpenID Connect Core §11).
pub const OFFLINE_ACCESS: &str = "offline_access";

/// A successful token response (RFC 6749 §5.1, OpenID Connect Core
/// §3.1.3.3).
#[derive(Debug, Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    pub scope: String,
}

/// An `aud` claim: one audience, or several (RFC 7519 §4.1.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    pub fn contains(&self, audience: &str) -> bool {
        match self {
            Self::One(one) => one == audience,
            Self::Many(many) => many.iter().any(|a| a == audience),
        }
    }

    /// The first audience: the API the token is for.
    pub fn first(&self) -> Option<&str> {
        match self {
            Self::One(one) => Some(one),
            Self::Many(many) => many.first().map(String::as_str),
        }
    }
}

/// The claims of a JWT access token (RFC 9068 §2.2).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessTokenClaims {
    pub iss: String,
    pub sub: String,
    pub aud: Audience,
    pub client_id: String,
    pub iat: u64,
    pub exp: u64,
    pub jti: String,
    pub scope: String,
    /// When the user authenticated (RFC 9068 §2.2.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<u64>,
    /// Post-login Actions' access-token claims; never in place of one
    /// above (the Actions' restricted list keeps them apart).
    #[serde(flatten)]
    pub custom: Map<String, Value>,
}

/// What the tokens of one grant say.
pub(super) struct Grant<'a> {
    pub client: &'a Client,
    pub user: &'a User,
    /// The scope the tokens carry.
    pub scope: &'a str,
    pub nonce: Option<&'a str>,
    pub auth_time: u64,
    pub session_id: Option<&'a str>,
    /// The API the access token is for, if any.
    pub api: Option<&'a ResourceServer>,
    /// The refresh-token family the grant comes from, if any.
    pub family_id: Option<&'a str>,
    /// Whether to issue an id_token.
    pub id_token: bool,
    /// What post-login Actions added to the tokens (a login's code carries
    /// them; SSO and refresh grants run no Actions and carry none).
    pub claims: Option<&'a GrantClaims>,
}

impl Broker {
    /// `<issuer>/userinfo`: the audience a JWT access token needs to be
    /// accepted at `/userinfo`.
    pub(super) fn userinfo_audience(&self) -> String {
        format!("{}/userinfo", self.issuer())
    }

    /// The scope an access token for `api` carries: the OpenID Connect
    /// scopes and the API's own that were asked for; without an API, what
    /// was asked for.
    pub(super) fn granted_scope(requested: &str, api: Option<&ResourceServer>) -> String {
        let Some(api) = api else {
            return requested.to_owned();
        };
        requested
            .split(' ')
            .filter(|s| !s.is_empty() && (OIDC_SCOPES.contains(s) || api.accepts(s)))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The API `audience` names, from the catalog.
    pub(super) fn resource_server(&self, audience: &str) -> Option<std::sync::Arc<ResourceServer>> {
        self.catalog_read().resource_servers.get(audience).cloned()
    }

    /// The access token and, if asked, the id_token of a grant (no refresh
    /// token: the grant adds its own).
    pub(super) async fn issue_tokens(
        &self,
        g: &Grant<'_>,
        now: u64,
    ) -> Result<TokenResponse, OAuthError> {
        let (access_token, expires_in) = match g.api {
            Some(api) => (self.jwt_access_token(g, api, now)?, api.token_lifetime),
            None => {
                let token = self.random.token();
                let expires_in = TOKEN_TTL.as_secs();
                let grant = AccessGrant {
                    user_id: g.user.user_id.clone(),
                    client_id: g.client.client_id.clone(),
                    scope: g.scope.to_owned(),
                    family_id: g.family_id.map(str::to_owned),
                    claims: g.claims.map(|c| c.access_token.clone()).unwrap_or_default(),
                    expires_at: now + expires_in,
                };
                self.store
                    .put_access_token(SecretHash::of(&token), grant)
                    .await
                    .map_err(|e| super::token::store_unavailable(&e))?;
                (token, expires_in)
            }
        };
        let id_token = if g.id_token {
            Some(self.id_token(g, now)?)
        } else {
            None
        };
        Ok(TokenResponse {
            access_token,
            token_type: "Bearer",
            expires_in,
            id_token,
            refresh_token: None,
            scope: g.scope.to_owned(),
        })
    }

    /// An RFC 9068 access token for `api`, signed with its algorithm. Its
    /// audience is the API, and `/userinfo` too when `openid` was granted
    /// (as Auth0 does), so the same token reads the profile.
    fn jwt_access_token(
        &self,
        g: &Grant<'_>,
        api: &ResourceServer,
        now: u64,
    ) -> Result<String, OAuthError> {
        let aud = if g.scope.split(' ').any(|s| s == "openid") {
            Audience::Many(vec![api.identifier.clone(), self.userinfo_audience()])
        } else {
            Audience::One(api.identifier.clone())
        };
        let claims = AccessTokenClaims {
            iss: self.issuer().to_owned(),
            sub: g.user.user_id.clone(),
            aud,
            client_id: g.client.client_id.clone(),
            iat: now,
            exp: now + api.token_lifetime,
            jti: self.random.identifier(32),
            scope: g.scope.to_owned(),
            auth_time: Some(g.auth_time),
            custom: g.claims.map(|c| c.access_token.clone()).unwrap_or_default(),
        };
        self.keys
            .load()
            .sign_as(api.signing_alg, TokenType::AccessToken, &claims)
            .map_err(|e| {
                tracing::error!(error = %e, "cannot sign an access token");
                OAuthError::new(
                    ErrorCode::ServerError,
                    "the access token could not be signed",
                )
            })
    }

    /// The id_token (OpenID Connect Core §2): `auth_time` always, `nonce`
    /// when the login had one, `sid` when it belongs to a session
    /// (Back-Channel Logout 1.0 §2.1), and the profile claims `scope`
    /// grants.
    fn id_token(&self, g: &Grant<'_>, now: u64) -> Result<String, OAuthError> {
        let mut claims = Map::new();
        claims.insert("iss".into(), json!(self.issuer()));
        claims.insert("sub".into(), json!(g.user.user_id));
        claims.insert("aud".into(), json!(g.client.client_id));
        claims.insert("iat".into(), json!(now));
        claims.insert("exp".into(), json!(now + TOKEN_TTL.as_secs()));
        claims.insert("auth_time".into(), json!(g.auth_time));
        if let Some(nonce) = g.nonce {
            claims.insert("nonce".into(), json!(nonce));
        }
        if let Some(sid) = g.session_id {
            claims.insert("sid".into(), json!(sid));
        }
        super::token::profile_claims(g.user, g.scope, &mut claims);
        // Post-login Actions' claims, and this login's attributes that are
        // never stored (`non_persistent_attrs`), never in place of one set
        // above.
        if let Some(custom) = g.claims {
            for (name, value) in custom.transient.iter().chain(&custom.id_token) {
                claims.entry(name.clone()).or_insert_with(|| value.clone());
            }
        }
        self.keys
            .load()
            .sign(g.client.id_token_alg, &Value::Object(claims))
            .map_err(|e| {
                tracing::error!(error = %e, "cannot sign an id_token");
                OAuthError::new(ErrorCode::ServerError, "the id_token could not be signed")
            })
    }

    /// A JWT access token we signed, checked as `/userinfo` and
    /// introspection take it: signature and type, our issuer, unexpired.
    /// Its audience is the caller's to check.
    pub(super) fn verified_access_token(&self, token: &str) -> Option<AccessTokenClaims> {
        let claims = self
            .keys
            .load()
            .verify(token, TokenType::AccessToken)
            .ok()?;
        let claims: AccessTokenClaims = serde_json::from_value(claims).ok()?;
        (claims.iss == self.issuer() && claims.exp > self.clock.now()).then_some(claims)
    }
}

/// Whether `token` has the shape of a JWS (three dot-separated parts):
/// opaque tokens are base64url, without dots.
pub(super) fn looks_like_jwt(token: &str) -> bool {
    token.bytes().filter(|b| *b == b'.').count() == 2
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::Alg;
    use crate::model::resource_server::ApiScope;

    #[test]
    fn an_apis_token_keeps_the_oidc_scopes_and_the_apis_own_and_drops_the_rest() {
        let api = ResourceServer {
            id: "rs_1".into(),
            name: "Orders".into(),
            identifier: "https://orders.test".into(),
            scopes: vec![ApiScope {
                value: "read:orders".into(),
                description: String::new(),
            }],
            signing_alg: Alg::Rs256,
            token_lifetime: 60,
            allow_offline_access: false,
        };
        assert_eq!(
            Broker::granted_scope(
                "openid email read:orders write:orders  offline_access",
                Some(&api)
            ),
            "openid email read:orders offline_access"
        );
        assert_eq!(
            Broker::granted_scope("openid anything", None),
            "openid anything"
        );
    }

    #[test]
    fn audiences_read_as_one_or_many() {
        let one: Audience = serde_json::from_str(r#""https://api.test""#).expect("one");
        assert!(one.contains("https://api.test") && !one.contains("x"));
        let many: Audience =
            serde_json::from_str(r#"["https://api.test","https://login.test/userinfo"]"#)
                .expect("many");
        assert!(many.contains("https://login.test/userinfo"));
        assert_eq!(many.first(), Some("https://api.test"));
    }
}
