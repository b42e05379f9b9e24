//! Token revocation (RFC 7009, `POST /oauth/revoke`) and introspection
//! (RFC 7662, `POST /oauth/introspect`), for authenticated apps.
//!
//! - Revoking a refresh token revokes its whole family and the access
//!   tokens issued from it (RFC 7009 §2.1); revoking an opaque access token
//!   deletes it. A JWT access token cannot be revoked (an API checks it on
//!   its own, without asking us): it is answered `unsupported_token_type`
//!   (§2.2.1) and lives until its `exp`. A token nobody issued is answered
//!   200 (§2.2): the caller learns nothing from it.
//! - An app may revoke and introspect only the tokens issued to it (RFC
//!   7009 §2.1, RFC 7662 §4); another app's token is refused with
//!   `unauthorized_client` by revocation, and introspects as inactive.
//!   Introspection needs a confidential app: anyone can claim a public
//!   app's id.

use std::net::IpAddr;

use serde::Serialize;
use serde_json::json;

use super::Broker;
use super::issue::{Audience, looks_like_jwt};
use super::oauth::{ErrorCode, OAuthError, Params};
use super::token::{JsonReply, store_unavailable};
use crate::model::{Client, ClientType};
use crate::secret::SecretHash;
use crate::store::RefreshLookup;

/// An introspection answer (RFC 7662 §2.2): `active` alone when the token
/// is not active (or not the caller's).
#[derive(Debug, Default, Serialize)]
pub struct Introspection {
    pub active: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aud: Option<Audience>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
}

/// What a presented token turned out to be.
enum Found {
    /// A refresh token, and whether it is live (unused).
    Refresh(crate::store::RefreshGrant, bool),
    Access(SecretHash, crate::store::AccessGrant),
    Jwt(super::issue::AccessTokenClaims),
    Nothing,
}

impl Broker {
    /// Handles `POST /oauth/revoke` with its form body and Authorization
    /// header, from the client address `from`.
    pub async fn revoke(&self, body: &str, authorization: Option<&str>, from: IpAddr) -> JsonReply {
        let (params, client) = match self.authenticated(body, authorization, from).await {
            Ok(found) => found,
            Err(reply) => return reply,
        };
        match self.revoke_token(&params, &client).await {
            Ok(()) => JsonReply::ok(json!({})),
            Err(e) => JsonReply::error(&e, None),
        }
    }

    /// Handles `POST /oauth/introspect` with its form body and
    /// Authorization header, from the client address `from`.
    pub async fn introspect(
        &self,
        body: &str,
        authorization: Option<&str>,
        from: IpAddr,
    ) -> JsonReply {
        let (params, client) = match self.authenticated(body, authorization, from).await {
            Ok(found) => found,
            Err(reply) => return reply,
        };
        if client.client_type != ClientType::Confidential {
            let e = OAuthError::new(
                ErrorCode::UnauthorizedClient,
                "introspection needs a confidential client (a client secret)",
            );
            return JsonReply::error(&e, None);
        }
        let answer = async {
            let token = params.require("token")?;
            self.introspection(token, &client).await
        };
        match answer.await {
            Ok(answer) => match serde_json::to_value(&answer) {
                Ok(value) => JsonReply::ok(value),
                Err(_) => JsonReply::error(
                    &OAuthError::new(ErrorCode::ServerError, "the answer could not be built"),
                    None,
                ),
            },
            Err(e) => JsonReply::error(&e, None),
        }
    }

    /// Parses the form and authenticates the client as the token endpoint
    /// does, under the same rate limits on failed authentications.
    async fn authenticated(
        &self,
        body: &str,
        authorization: Option<&str>,
        from: IpAddr,
    ) -> Result<(Params, std::sync::Arc<Client>), JsonReply> {
        let params = Params::parse(body);
        let claimed = params
            .as_ref()
            .ok()
            .and_then(|p| self.claimed_client(p, authorization));
        if let Err(wait) = self.rate.token_failures_allow(from, claimed.as_deref()) {
            return Err(JsonReply::too_many(
                wait,
                "too many failed client authentications",
            ));
        }
        let params = params.map_err(|e| JsonReply::error(&e, None))?;
        match self.authenticate_client(&params, authorization).await {
            Ok(client) => Ok((params, client)),
            Err(e) => {
                if e.code == ErrorCode::InvalidClient {
                    self.rate.token_failure(from, claimed.as_deref());
                }
                // RFC 6749 §5.2: a 401 names the scheme (and the realm
                // when the client sent an Authorization header).
                let challenge = (e.code == ErrorCode::InvalidClient).then(|| {
                    if authorization.is_some() {
                        "Basic realm=\"waypass\"".to_owned()
                    } else {
                        "Basic".to_owned()
                    }
                });
                Err(JsonReply::error(&e, challenge))
            }
        }
    }

    /// Looks `token` up in the order `token_type_hint` suggests (an
    /// unknown hint is ignored, RFC 7009 §2.1), refresh tokens first
    /// otherwise.
    async fn find_token(&self, token: &str, hint: Option<&str>) -> Result<Found, OAuthError> {
        if looks_like_jwt(token) {
            return Ok(self
                .verified_access_token(token)
                .map_or(Found::Nothing, Found::Jwt));
        }
        let key = SecretHash::of(token);
        let now = self.clock.now();
        let access_first = hint == Some("access_token");
        for access in [access_first, !access_first] {
            if access {
                if let Some(grant) = self
                    .store
                    .get_access_token(key, now)
                    .await
                    .map_err(|e| store_unavailable(&e))?
                {
                    return Ok(Found::Access(key, grant));
                }
            } else {
                match self
                    .store
                    .get_refresh_token(key, now)
                    .await
                    .map_err(|e| store_unavailable(&e))?
                {
                    RefreshLookup::Live(grant) => return Ok(Found::Refresh(grant, true)),
                    RefreshLookup::Rotated(grant) => return Ok(Found::Refresh(grant, false)),
                    RefreshLookup::Absent => {}
                }
            }
        }
        Ok(Found::Nothing)
    }

    async fn revoke_token(&self, params: &Params, client: &Client) -> Result<(), OAuthError> {
        let token = params.require("token")?;
        let not_yours = || {
            OAuthError::new(
                ErrorCode::UnauthorizedClient,
                "the token was not issued to this client",
            )
        };
        match self
            .find_token(token, params.get("token_type_hint"))
            .await?
        {
            Found::Refresh(grant, _) => {
                if grant.client_id != client.client_id {
                    return Err(not_yours());
                }
                self.revoke_family(&grant.family_id, "revoked by its app (RFC 7009)")
                    .await
            }
            Found::Access(key, grant) => {
                if grant.client_id != client.client_id {
                    return Err(not_yours());
                }
                self.store
                    .delete_access_token(key)
                    .await
                    .map_err(|e| store_unavailable(&e))?;
                tracing::info!(client_id = %client.client_id, "access token revoked by its app");
                Ok(())
            }
            Found::Jwt(_) => Err(OAuthError::new(
                ErrorCode::UnsupportedTokenType,
                "a JWT access token cannot be revoked; it expires at its exp",
            )),
            Found::Nothing => Ok(()),
        }
    }

    async fn introspection(
        &self,
        token: &str,
        client: &Client,
    ) -> Result<Introspection, OAuthError> {
        let inactive = Introspection::default();
        let answer = match self.find_token(token, None).await? {
            Found::Refresh(grant, true)
                if grant.client_id == client.client_id
                    && self
                        .introspected_live(&grant.user_id, &grant.connection, client)
                        .await? =>
            {
                Introspection {
                    active: true,
                    scope: Some(grant.scope),
                    client_id: Some(grant.client_id),
                    exp: Some(grant.idle_expires_at.min(grant.expires_at)),
                    iat: Some(grant.issued_at),
                    sub: Some(grant.user_id),
                    aud: grant.audience.map(Audience::One),
                    iss: Some(self.issuer().to_owned()),
                    token_type: None,
                }
            }
            Found::Access(_, grant)
                if grant.client_id == client.client_id && !grant.is_management() =>
            {
                let user = self
                    .store
                    .get_user(&grant.user_id)
                    .await
                    .map_err(|e| store_unavailable(&e))?;
                match user {
                    Some(user) if self.connection_serves(&user.connection, &client.client_id) => {
                        Introspection {
                            active: true,
                            scope: Some(grant.scope),
                            client_id: Some(grant.client_id),
                            token_type: Some("Bearer"),
                            exp: Some(grant.expires_at),
                            sub: Some(grant.user_id),
                            iss: Some(self.issuer().to_owned()),
                            ..Introspection::default()
                        }
                    }
                    _ => inactive,
                }
            }
            Found::Jwt(claims) if claims.client_id == client.client_id => Introspection {
                active: true,
                scope: Some(claims.scope),
                client_id: Some(claims.client_id),
                token_type: Some("Bearer"),
                exp: Some(claims.exp),
                iat: Some(claims.iat),
                sub: Some(claims.sub),
                aud: Some(claims.aud),
                iss: Some(claims.iss),
            },
            _ => inactive,
        };
        Ok(answer)
    }

    /// Whether what a token was issued under still holds: its user exists
    /// and its connection still serves the app.
    async fn introspected_live(
        &self,
        user_id: &str,
        connection: &str,
        client: &Client,
    ) -> Result<bool, OAuthError> {
        let user = self
            .store
            .get_user(user_id)
            .await
            .map_err(|e| store_unavailable(&e))?;
        Ok(user.is_some() && self.connection_serves(connection, &client.client_id))
    }
}
