//! `/login/callback`: the provider sends the browser back; exchange the code,
//! run the mapper, record the user, and send the browser to the app.

use std::sync::Arc;

use tracing::Instrument;
use url::Url;

use super::authorize::cookie_name;
use super::model::Connection;
use super::model::ProfileSource;
use super::oauth::{ErrorCode, OAuthError, Params, error_redirect, provider_refusal, with_query};
use super::secret::SecretHash;
use super::store::{AuthorizationGrant, LoginTransaction};
use super::{AUTHORIZATION_CODE_TTL, Broker};
use crate::mapper::MapperError;

/// What `/login/callback` answers.
#[derive(Debug)]
pub enum CallbackOutcome {
    /// Back to the app, with `code` or `error`; the login's cookie is cleared.
    ToApp {
        location: String,
        clear_cookie: String,
    },
    /// No login to return to (unknown or expired state): shown, not redirected.
    ErrorPage(OAuthError),
}

impl Broker {
    /// Handles `/login/callback` with its raw query and the request's cookies.
    pub async fn callback(
        &self,
        query: &str,
        cookie: impl Fn(&str) -> Option<String>,
    ) -> CallbackOutcome {
        let params = match Params::parse(query) {
            Ok(p) => p,
            Err(e) => return CallbackOutcome::ErrorPage(e),
        };
        let Some(state) = params.get("state") else {
            return CallbackOutcome::ErrorPage(OAuthError::new(
                ErrorCode::InvalidRequest,
                "the provider's answer has no `state`",
            ));
        };
        // Single use: taking the transaction makes any replay of this
        // callback (or of its state) fail from here on.
        let now = self.clock.now();
        let tx = match self
            .store
            .take_transaction(SecretHash::of(state), now)
            .await
        {
            Ok(Some(tx)) => tx,
            Ok(None) => {
                return CallbackOutcome::ErrorPage(OAuthError::new(
                    ErrorCode::InvalidRequest,
                    "this login is unknown, expired or already finished; start again from the app",
                ));
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot read a login transaction");
                return CallbackOutcome::ErrorPage(OAuthError::new(
                    ErrorCode::TemporarilyUnavailable,
                    "the login could not be completed; try again",
                ));
            }
        };
        let clear_cookie = cookie_name(state);
        let span = tracing::info_span!("login", correlation_id = %tx.correlation_id, connection = %tx.connection);
        let result = async {
            let binding_ok = cookie(&clear_cookie).is_some_and(|v| tx.browser_binding.matches(&v));
            if !binding_ok {
                return Err(OAuthError::new(
                    ErrorCode::AccessDenied,
                    "this login was not started in this browser (its cookie is missing); start again",
                ));
            }
            self.finish_login(&params, &tx).await
        }
        .instrument(span.clone())
        .await;
        // The transaction's redirect_uri was checked at /authorize.
        let Ok(redirect) = Url::parse(&tx.redirect_uri) else {
            return CallbackOutcome::ErrorPage(OAuthError::new(
                ErrorCode::ServerError,
                "bad redirect_uri",
            ));
        };
        let location = match result {
            Ok(code) => {
                let mut pairs = vec![("code", code.as_str())];
                if let Some(s) = &tx.app_state {
                    pairs.push(("state", s));
                }
                with_query(&redirect, &pairs)
            }
            Err(e) => {
                span.in_scope(|| tracing::warn!(error = %e.code, description = %e.description, "login failed"));
                error_redirect(&redirect, &e, tx.app_state.as_deref())
            }
        };
        CallbackOutcome::ToApp {
            location,
            clear_cookie,
        }
    }

    async fn finish_login(
        &self,
        params: &Params,
        tx: &LoginTransaction,
    ) -> Result<String, OAuthError> {
        if let Some(error) = params.get("error") {
            let description = params.get("error_description");
            tracing::info!(
                provider_error = error,
                description,
                "the provider refused the login"
            );
            return Err(provider_refusal(error, description));
        }
        let code = params.get("code").ok_or_else(|| {
            OAuthError::new(
                ErrorCode::ServerError,
                "the provider's answer has neither `code` nor `error`",
            )
        })?;
        let connection = self.connection(&tx.connection).ok_or_else(|| {
            OAuthError::new(
                ErrorCode::ServerError,
                format!("connection `{}` no longer exists", tx.connection),
            )
        })?;
        let tokens = self
            .upstream
            .exchange_code(
                &connection,
                code,
                self.callback_url(),
                tx.provider_verifier.as_ref(),
            )
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "token exchange failed");
                OAuthError::new(ErrorCode::ServerError, e.to_string())
            })?;
        let profile = self.run_mapper(&connection, tokens).await?;
        let user_id = format!("oauth2|{}|{}", connection.name(), profile.user_id);
        let now = self.clock.now();
        self.store
            .record_login(&user_id, connection.name(), profile, now)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "cannot record the user");
                OAuthError::new(
                    ErrorCode::TemporarilyUnavailable,
                    "the login could not be recorded; try again",
                )
            })?;
        let code = self.random.token();
        let grant = AuthorizationGrant {
            client_id: tx.client_id.clone(),
            redirect_uri: tx.redirect_uri.clone(),
            user_id: user_id.clone(),
            scope: tx.scope.clone(),
            nonce: tx.nonce.clone(),
            code_challenge: tx.code_challenge.clone(),
            auth_time: now,
            expires_at: self.expires_in(AUTHORIZATION_CODE_TTL),
        };
        self.store
            .put_code(SecretHash::of(&code), grant)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "cannot store an authorization code");
                OAuthError::new(
                    ErrorCode::TemporarilyUnavailable,
                    "the login could not be completed; try again",
                )
            })?;
        tracing::info!(user_id, "login succeeded");
        Ok(code)
    }

    async fn run_mapper(
        &self,
        connection: &Arc<Connection>,
        tokens: crate::mapper::TokenSet,
    ) -> Result<crate::mapper::Profile, OAuthError> {
        let (report, _) = self.run_profile(connection, tokens).await.map_err(|e| {
            tracing::error!(error = %e, "the connection's profile logic cannot run");
            OAuthError::new(ErrorCode::ServerError, e)
        })?;
        for line in &report.logs {
            tracing::debug!(source = ?line.source, level = ?line.level, "mapper: {}", line.message);
        }
        for r in &report.requests {
            tracing::debug!(method = %r.method, url = %r.url, status = ?r.status, error = ?r.error, "mapper request");
        }
        report.result.map_err(|e| {
            tracing::warn!(kind = e.kind(), error = %e, elapsed_us = report.elapsed.as_micros() as u64, "mapper failed");
            match (&e, &connection.profile) {
                (MapperError::Unauthorized { .. }, _) => {
                    OAuthError::new(ErrorCode::AccessDenied, e.to_string())
                }
                // `callback(new Error(message))` or an exception in a script:
                // the app gets that message, as from Auth0.
                (MapperError::Other { message }, ProfileSource::Script(_)) => {
                    OAuthError::new(ErrorCode::InvalidRequest, message.as_str())
                }
                _ => OAuthError::new(ErrorCode::ServerError, e.to_string()),
            }
        })
    }
}
