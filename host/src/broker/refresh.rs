//! Refresh tokens (RFC 6749 §6, OpenID Connect Core §12) with rotation
//! and reuse detection (RFC 9700 §4.14.2).
//!
//! An app allowed the `refresh_token` grant that asked for `offline_access`
//! gets one with its first tokens: the first of a family. Each use
//! returns new tokens and a new refresh token, and the used one is dead;
//! presenting a dead one again means two parties hold the family (the app
//! and a thief, and nobody can tell which is which), so the whole family
//! is revoked, its access tokens with it. There is no grace period: an app
//! that retries a refresh whose answer it lost gets `invalid_grant` and
//! sends its user to log in again.
//!
//! A family lives [`SessionLimits::refresh_token_absolute_seconds`] from
//! its login, and dies unused for [`SessionLimits::refresh_token_idle_seconds`].
//! It outlives the browser session (that is what `offline_access` asks
//! for: Back-Channel Logout 1.0 §2.7 keeps such tokens at logout); it dies
//! with its user, its app, or its connection's permission for the app.
//!
//! [`SessionLimits::refresh_token_absolute_seconds`]: super::limits::SessionLimits
//! [`SessionLimits::refresh_token_idle_seconds`]: super::limits::SessionLimits

use std::net::IpAddr;

use serde_json::Value;

use super::Broker;
use super::issue::Grant;
use super::oauth::{ErrorCode, OAuthError, Params};
use super::token::{has_scope, store_unavailable, token_response};
use crate::actions::EventTransaction;
use crate::model::Client;
use crate::secret::SecretHash;
use crate::store::{GrantClaims, RefreshGrant, RefreshLookup, Rotation};

impl Broker {
    /// Stores the first refresh token of family `family_id` for `g` and
    /// returns it.
    pub(super) async fn start_refresh_family(
        &self,
        g: &Grant<'_>,
        family_id: String,
        now: u64,
    ) -> Result<String, OAuthError> {
        let lifetimes = self.limits.sessions;
        let expires_at = now.saturating_add(lifetimes.refresh_token_absolute_seconds);
        let grant = RefreshGrant {
            family_id,
            user_id: g.user.user_id.clone(),
            client_id: g.client.client_id.clone(),
            connection: g.user.connection.clone(),
            scope: g.scope.to_owned(),
            audience: g.api.map(|a| a.identifier.clone()),
            session_id: g.session_id.map(str::to_owned),
            auth_time: g.auth_time,
            created_at: now,
            issued_at: now,
            idle_expires_at: now
                .saturating_add(lifetimes.refresh_token_idle_seconds)
                .min(expires_at),
            expires_at,
        };
        let token = self.random.token();
        self.store
            .put_refresh_token(SecretHash::of(&token), &grant)
            .await
            .map_err(|e| store_unavailable(&e))?;
        tracing::info!(family = %grant.family_id, client_id = %grant.client_id,
            user_id = %grant.user_id, "refresh token issued");
        Ok(token)
    }

    /// The `refresh_token` grant (RFC 6749 §6), for an authenticated
    /// `client` allowed it.
    pub(super) async fn refresh(
        &self,
        params: &Params,
        client: &Client,
        from: IpAddr,
    ) -> Result<Value, OAuthError> {
        let invalid_grant = |d: &str| OAuthError::new(ErrorCode::InvalidGrant, d);
        let token = params.require("refresh_token")?;
        let key = SecretHash::of(token);
        let now = self.clock.now();
        let grant = match self
            .store
            .get_refresh_token(key, now)
            .await
            .map_err(|e| store_unavailable(&e))?
        {
            RefreshLookup::Live(grant) => grant,
            RefreshLookup::Rotated(grant) => {
                // Whoever presents it — its app or any other — holds a
                // token that should be dead: the family is compromised.
                tracing::warn!(family = %grant.family_id, presented_by = %client.client_id,
                    "a used refresh token was presented again");
                self.revoke_family(&grant.family_id, "a used refresh token was presented again")
                    .await?;
                return Err(invalid_grant(
                    "the refresh token was already used: every token of its family is revoked",
                ));
            }
            RefreshLookup::Absent => {
                return Err(invalid_grant(
                    "the refresh token is invalid, expired or revoked",
                ));
            }
        };
        // RFC 6749 §6: the token must have been issued to this client.
        if grant.client_id != client.client_id {
            return Err(invalid_grant(
                "the refresh token was issued to another client",
            ));
        }
        // RFC 6749 §6: a refresh may narrow the scope, never widen it.
        let scope = match params.get("scope") {
            None => grant.scope.clone(),
            Some(requested) => {
                if let Some(extra) = requested
                    .split(' ')
                    .find(|s| !s.is_empty() && !has_scope(&grant.scope, s))
                {
                    return Err(OAuthError::new(
                        ErrorCode::InvalidScope,
                        format!("scope `{extra}` was not granted to this refresh token"),
                    ));
                }
                requested.to_owned()
            }
        };
        // What the family was issued under must still hold.
        let user = self
            .store
            .get_user(&grant.user_id)
            .await
            .map_err(|e| store_unavailable(&e))?;
        let Some(user) = user else {
            self.revoke_family(&grant.family_id, "its user no longer exists")
                .await?;
            return Err(invalid_grant("the user no longer exists"));
        };
        if !self.connection_serves(&grant.connection, &client.client_id) {
            self.revoke_family(
                &grant.family_id,
                "its connection is no longer enabled for the app",
            )
            .await?;
            return Err(invalid_grant(
                "the connection the user logged in through is no longer enabled for this app",
            ));
        }
        let api = match &grant.audience {
            Some(audience) => Some(self.resource_server(audience).ok_or_else(|| {
                invalid_grant("the API the refresh token was issued for no longer exists")
            })?),
            None => None,
        };
        // Post-login Actions run on a refresh too, as Auth0 runs them on
        // its refresh-token exchanges: the claims they set now are the new
        // tokens' claims; a deny (`access_denied`) leaves the refresh token
        // unused.
        let request = self.event_request(from, crate::events::user_agent(), Vec::new());
        let transaction = EventTransaction {
            requested_scopes: scope.split_whitespace().map(str::to_owned).collect(),
            redirect_uri: String::new(),
            audience: grant.audience.clone(),
            prompt: None,
        };
        let granted = self
            .run_post_login(&user, &client.client_id, request, &scope, transaction)
            .await?;
        // RFC 6749 §6: a refresh never widens the scope, whatever an Action
        // adds.
        let scope = granted
            .scope
            .split_whitespace()
            .filter(|s| has_scope(&grant.scope, s))
            .collect::<Vec<_>>()
            .join(" ");
        let claims = GrantClaims {
            id_token: granted.id_token_claims,
            access_token: granted.access_token_claims,
            ..GrantClaims::default()
        };

        let next = self.random.token();
        let lifetimes = self.limits.sessions;
        let successor = RefreshGrant {
            issued_at: now,
            idle_expires_at: now
                .saturating_add(lifetimes.refresh_token_idle_seconds)
                .min(grant.expires_at),
            ..grant.clone()
        };
        match self
            .store
            .rotate_refresh_token(key, SecretHash::of(&next), &successor, now)
            .await
            .map_err(|e| store_unavailable(&e))?
        {
            Rotation::Rotated => {}
            Rotation::Reused { revoked } => {
                // Another use of the same token won the race: this is the
                // reuse, and the store revoked the family.
                tracing::warn!(family = %grant.family_id, "a refresh token was used twice at once");
                self.family_revoked(&grant.family_id, revoked, "a refresh token was used twice")
                    .await?;
                return Err(invalid_grant(
                    "the refresh token was already used: every token of its family is revoked",
                ));
            }
            Rotation::Absent => {
                return Err(invalid_grant(
                    "the refresh token is invalid, expired or revoked",
                ));
            }
        }
        let facts = Grant {
            claims: Some(&claims),
            client,
            user: &user,
            scope: &scope,
            nonce: None,
            auth_time: grant.auth_time,
            session_id: grant.session_id.as_deref(),
            api: api.as_deref(),
            family_id: Some(&grant.family_id),
            id_token: has_scope(&scope, "openid"),
        };
        let mut response = self.issue_tokens(&facts, now).await?;
        response.refresh_token = Some(next);
        token_response(&response)
    }

    /// Revokes a family: its refresh tokens and the access tokens issued
    /// from it (RFC 7009 §2.1).
    pub(super) async fn revoke_family(&self, family_id: &str, why: &str) -> Result<(), OAuthError> {
        let revoked = self
            .store
            .revoke_refresh_family(family_id)
            .await
            .map_err(|e| store_unavailable(&e))?;
        self.family_revoked(family_id, revoked, why).await
    }

    /// After a family's refresh tokens are deleted: its access tokens too.
    async fn family_revoked(
        &self,
        family_id: &str,
        refresh_tokens: u64,
        why: &str,
    ) -> Result<(), OAuthError> {
        let access_tokens = self
            .store
            .delete_access_tokens_of_family(family_id)
            .await
            .map_err(|e| store_unavailable(&e))?;
        tracing::info!(
            family = family_id,
            refresh_tokens,
            access_tokens,
            "refresh-token family revoked: {why}"
        );
        Ok(())
    }
}
