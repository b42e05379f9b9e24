//! `/login/callback`: the provider sends the browser back; exchange the code,
//! run the mapper, record the user, and send the browser to the app.

use std::net::IpAddr;
use std::sync::Arc;

use tracing::Instrument;
use url::Url;

use super::Broker;
use super::authorize::cookie_name;
use super::limits::RetryAfter;
use super::oauth::{AppResponse, ErrorCode, OAuthError, Params, ResponseMode, provider_refusal};
use super::session::{SessionCookie, session_cookie_name};
use crate::mapper::MapperError;
use crate::model::Connection;
use crate::model::ProfileSource;
use crate::secret::SecretHash;
use crate::store::{LoginTransaction, TakeTransaction};

/// What `/login/callback` answers.
#[derive(Debug)]
pub enum CallbackOutcome {
    /// Back to the app, with `code` or `error`, in the app's response
    /// mode; the login's cookie is cleared, and after a login the
    /// browser's session cookie is set.
    ToApp {
        response: AppResponse,
        clear_cookie: String,
        session: Option<SessionCookie>,
    },
    /// No login to return to (unknown or expired state), or not this
    /// browser's: shown, not redirected.
    ErrorPage(OAuthError),
    /// Too many callbacks from this address: `429`.
    TooManyRequests(RetryAfter),
}

impl Broker {
    /// Handles `/login/callback` (`arrived_on` `None`) or
    /// `/login/callback/{connection}` (`Some(connection)`) with its raw
    /// query and the request's cookies, from the client address `from`.
    pub async fn callback(
        &self,
        query: &str,
        arrived_on: Option<&str>,
        from: IpAddr,
        cookie: impl Fn(&str) -> Option<String>,
    ) -> CallbackOutcome {
        if let Err(wait) = self.rate.callback(from) {
            return CallbackOutcome::TooManyRequests(wait);
        }
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
        // callback (or of its state) fail from here on. It is taken only
        // with the cookie of the browser that started it: whoever learned a
        // `state` without that cookie cannot consume (cancel) the login.
        let now = self.clock.now();
        let clear_cookie = cookie_name(state, self.secure_cookies());
        let binding = cookie(&clear_cookie).map(|v| SecretHash::of(&v));
        let tx = match self
            .store
            .take_transaction(SecretHash::of(state), binding, now)
            .await
        {
            Ok(TakeTransaction::Taken(tx)) => *tx,
            Ok(TakeTransaction::WrongBrowser) => {
                return CallbackOutcome::ErrorPage(OAuthError::new(
                    ErrorCode::AccessDenied,
                    "this login was not started in this browser (its cookie is missing); \
                     finish it where it started, or start again from the app",
                ));
            }
            Ok(TakeTransaction::Absent) => {
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
        let span = tracing::info_span!("login", correlation_id = %tx.correlation_id, connection = %tx.connection);
        let session = cookie(&session_cookie_name(self.secure_cookies()));
        let result = async {
            let connection = self.connection(&tx.connection).ok_or_else(|| {
                OAuthError::new(
                    ErrorCode::ServerError,
                    format!("connection `{}` no longer exists", tx.connection),
                )
            })?;
            check_provenance(&params, &connection, arrived_on)?;
            self.finish_login(&params, &tx, &connection, session.as_deref())
                .await
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
        let mode = ResponseMode::from_form_post(tx.form_post);
        let state = tx.app_state.as_deref();
        let (response, session) = match result {
            Ok((code, session)) => (
                AppResponse::code(&redirect, mode, &code, state),
                Some(session),
            ),
            Err(e) => {
                span.in_scope(|| tracing::warn!(error = %e.code, description = %e.description, "login failed"));
                (AppResponse::error(&redirect, mode, &e, state), None)
            }
        };
        CallbackOutcome::ToApp {
            response,
            clear_cookie,
            session,
        }
    }

    /// Exchanges the code, runs the mapper, records the user, then starts
    /// or renews the browser's session (its cookie is `session`) and
    /// issues the app's code: the code and the session cookie to set.
    async fn finish_login(
        &self,
        params: &Params,
        tx: &LoginTransaction,
        connection: &Arc<Connection>,
        session: Option<&str>,
    ) -> Result<(String, SessionCookie), OAuthError> {
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
        let tokens = self
            .upstream
            .exchange_code(
                connection,
                code,
                &self.callback_url_for(connection),
                tx.provider_verifier.as_ref(),
            )
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "token exchange failed");
                OAuthError::new(ErrorCode::ServerError, e.to_string())
            })?;
        let profile = self.run_mapper(connection, tokens).await?;
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
        let finished = self.login_finished(tx, &user_id, session).await?;
        tracing::info!(user_id, "login succeeded");
        Ok(finished)
    }
}

/// Whether the answer comes from the provider this login went to, before
/// anything in it (a code, an error) is believed: a mix-up attack (RFC 9700
/// §4.4) has another provider's answer delivered for this login, so its
/// code would be sent to this login's token endpoint.
///
/// - A connection with its own callback path must be answered there, and
///   only there (RFC 9700 §4.4.2); one on the shared path must not be
///   answered on a per-connection path.
/// - A connection with an `issuer` needs `iss` equal to it, by simple
///   string comparison (RFC 9207 §2.4), on success and error answers alike;
///   a missing `iss` is refused too.
fn check_provenance(
    params: &Params,
    connection: &Connection,
    arrived_on: Option<&str>,
) -> Result<(), OAuthError> {
    let expected = connection
        .spec
        .options
        .per_connection_callback
        .then(|| connection.name());
    if arrived_on != expected {
        tracing::warn!(
            arrived_on,
            expected,
            "a login's answer arrived at another callback"
        );
        return Err(OAuthError::new(
            ErrorCode::AccessDenied,
            "the provider's answer arrived at another connection's callback; the login is refused",
        ));
    }
    let Some(issuer) = connection.spec.options.issuer.as_deref() else {
        return Ok(());
    };
    match params.get("iss") {
        Some(iss) if iss == issuer => Ok(()),
        Some(iss) => {
            tracing::warn!(iss, issuer, "a login's answer names another issuer");
            Err(OAuthError::new(
                ErrorCode::AccessDenied,
                "the answer comes from another issuer than this login's provider (RFC 9207); the login is refused",
            ))
        }
        None => Err(OAuthError::new(
            ErrorCode::AccessDenied,
            format!(
                "the provider's answer has no `iss`, which connection `{}` requires (RFC 9207)",
                connection.name()
            ),
        )),
    }
}

impl Broker {
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
