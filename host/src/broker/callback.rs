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
use crate::actions::{EventClient, EventRequest, EventTransaction, PostLoginTrigger, TriggerError};
use crate::mapper::MapperError;
use crate::model::{Connection, ProfileSource, TokenAuthMethod};
use crate::secret::SecretHash;
use crate::store::{GrantClaims, LoginTransaction, TakeTransaction};

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
        self.callback_from(query, arrived_on, from, None, cookie)
            .await
    }

    /// [`Broker::callback`] with the browser's `User-Agent`, which
    /// post-login Actions see.
    pub async fn callback_from(
        &self,
        query: &str,
        arrived_on: Option<&str>,
        from: IpAddr,
        user_agent: Option<&str>,
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
        let cookie_value = cookie(&clear_cookie);
        let binding = cookie_value.as_deref().map(SecretHash::of);
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
        crate::telemetry::note_login(&tx.correlation_id);
        crate::events::at_stage(crate::events::LoginStage::Callback);
        let session = cookie(&session_cookie_name(self.secure_cookies()));
        let result = async {
            let connection = self.connection(&tx.connection).ok_or_else(|| {
                OAuthError::new(
                    ErrorCode::ServerError,
                    format!("connection `{}` no longer exists", tx.connection),
                )
            })?;
            check_provenance(&params, &connection, arrived_on)?;
            // Taken with the binding: the browser sent its cookie.
            let nonce = provider_nonce(cookie_value.as_deref().unwrap_or_default());
            let request = self.event_request(from, user_agent.map(str::to_owned), tx.query.clone());
            self.finish_login(
                &params,
                &tx,
                &connection,
                &nonce,
                request,
                session.as_deref(),
            )
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
        let outcome = result
            .as_ref()
            .map_or_else(|e| e.code.as_str(), |_| "success");
        self.metrics.login(&tx.connection, &tx.client_id, outcome);
        self.log_login(&tx, result.as_ref().err(), from);
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
        nonce: &str,
        request: EventRequest,
        session: Option<&str>,
    ) -> Result<(String, SessionCookie), OAuthError> {
        if let Some(error) = params.get("error") {
            crate::events::at_stage(crate::events::LoginStage::Provider);
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
        let now = self.clock.now();
        let assertion_keys = match connection.spec.options.token_endpoint_auth_method {
            TokenAuthMethod::PrivateKeyJwt => {
                Some(self.connection_keys(connection).await.map_err(|e| {
                    tracing::error!(error = %e, "cannot read the connection's keys");
                    OAuthError::new(
                        ErrorCode::TemporarilyUnavailable,
                        "the login could not be completed; try again",
                    )
                })?)
            }
            _ => None,
        };
        crate::events::at_stage(crate::events::LoginStage::ProviderToken);
        let timer = crate::metrics::Timer::start();
        let tokens = self
            .upstream
            .exchange_code(
                connection,
                code,
                &self.callback_url_for(connection),
                tx.provider_verifier.as_ref(),
                assertion_keys.as_deref(),
                now,
            )
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "token exchange failed");
                OAuthError::new(ErrorCode::ServerError, e.to_string())
            });
        self.metrics
            .stage(crate::metrics::Stage::ProviderToken, timer.elapsed());
        let tokens = tokens?;
        // OpenID Connect Core §3.1.3.7: an id_token from a provider with an
        // issuer is verified before anything reads it. Without an issuer
        // there is no key set to verify against: the mapper gets the token
        // as before (`context.id_token`), unverified.
        let id_claims = match (&tokens.id_token, connection.issuer.is_some()) {
            (Some(id_token), true) => Some(
                self.upstream
                    .verify_id_token(connection, id_token, nonce, now)
                    .await
                    .map_err(|e| {
                        tracing::warn!(error = %e, "the provider's id_token is refused");
                        OAuthError::new(ErrorCode::AccessDenied, e.to_string())
                    })?,
            ),
            _ => None,
        };
        let provider_tokens = super::idp_tokens::ProviderTokens::of(&tokens, now);
        crate::events::at_stage(crate::events::LoginStage::Mapper);
        let timer = crate::metrics::Timer::start();
        let profile = match connection.profile {
            ProfileSource::Claims => {
                self.claims_profile(connection, &tokens, id_claims.as_ref(), now)
                    .await
            }
            _ => {
                self.run_mapper(connection, tokens, id_claims.as_ref())
                    .await
            }
        };
        self.metrics
            .stage(crate::metrics::Stage::Mapper, timer.elapsed());
        let profile = profile?;
        let user_id = super::linking::identity_user_id(connection.name(), &profile.user_id);
        crate::events::at_stage(crate::events::LoginStage::User);
        crate::events::note_user(
            &user_id,
            profile.email.as_deref().or(profile.name.as_deref()),
        );
        // What the app gets of this login but the store never keeps.
        let transient =
            super::profile_sync::non_persistent_part(&connection.spec.options, &profile);
        // The identity's user: found, created, or linked by the policy.
        // The provider's tokens belong to this login's identity (which a
        // linked user may hold beside its primary one): written with it.
        let provider_tokens = provider_tokens.for_identity(&connection.id, &profile.user_id, now);
        let user = self
            .record_user(connection, profile, &provider_tokens, &request.ip, now)
            .await?;
        let user_id = user.user_id.clone();
        // Post-login Actions: after the user is known, before the code.
        let granted = self
            .run_post_login(
                &user,
                &tx.client_id,
                request,
                &tx.scope,
                event_transaction(tx),
            )
            .await?;
        let mut transient_claims = serde_json::Map::new();
        if let Some(p) = &transient {
            super::token::profile_claims_of(p, &granted.scope, &mut transient_claims);
        }
        let claims = GrantClaims {
            id_token: granted.id_token_claims,
            access_token: granted.access_token_claims,
            sealed: None,
            transient: transient_claims,
        };
        let finished = self
            .login_finished(tx, &user_id, session, granted.scope, claims)
            .await?;
        tracing::info!(user_id, "login succeeded");
        Ok(finished)
    }
}

impl Broker {
    /// A request as post-login Actions see it: from `from`, with
    /// `user_agent`, served on the issuer's host, `/authorize`'s `query`.
    pub(super) fn event_request(
        &self,
        from: IpAddr,
        user_agent: Option<String>,
        query: Vec<(String, String)>,
    ) -> EventRequest {
        EventRequest {
            ip: from.to_string(),
            user_agent,
            hostname: self.issuer_url.host_str().unwrap_or_default().to_owned(),
            query,
        }
    }

    /// Runs the post-login Actions bound now for `user` logging in to
    /// `client_id` with `scope`: after a provider login, a single sign-on
    /// from the session, and a refresh grant, as Auth0 runs them. What
    /// they grant, or the OAuth error the app gets (a deny is
    /// `access_denied` with the Action's reason).
    pub(super) async fn run_post_login(
        &self,
        user: &crate::store::User,
        client_id: &str,
        request: EventRequest,
        scope: &str,
        transaction: EventTransaction,
    ) -> Result<crate::actions::Granted, OAuthError> {
        let client = EventClient {
            client_id: client_id.to_owned(),
            name: self
                .client(client_id)
                .map(|c| c.name.clone())
                .unwrap_or_default(),
        };
        let snapshot = self.catalog.snapshot();
        PostLoginTrigger {
            runtime: &self.runtime,
            store: &*self.store,
            chain: &snapshot.post_login,
        }
        .run_for_login(user, client, request, scope, transaction)
        .await
        .map_err(post_login_error)
    }
}

/// What the app asked for at `/authorize`, as post-login Actions see it.
fn event_transaction(tx: &LoginTransaction) -> EventTransaction {
    EventTransaction {
        requested_scopes: tx.scope.split_whitespace().map(str::to_owned).collect(),
        redirect_uri: tx.redirect_uri.clone(),
        audience: tx.audience.clone(),
        prompt: tx
            .query
            .iter()
            .find(|(name, value)| name == "prompt" && !value.is_empty())
            .map(|(_, value)| value.clone()),
    }
}

/// What the app is told when the post-login trigger ends a login: a deny
/// is `access_denied` with the Action's reason (as Auth0's
/// `api.access.deny`); a failure is `server_error` naming the Action.
fn post_login_error(e: TriggerError) -> OAuthError {
    match e {
        TriggerError::Denied { action, reason } => {
            tracing::info!(action, reason, "a post-login action denied the login");
            OAuthError::new(ErrorCode::AccessDenied, reason)
        }
        TriggerError::Store(e) => {
            tracing::error!(error = %e, "cannot store the actions' metadata changes");
            OAuthError::new(
                ErrorCode::TemporarilyUnavailable,
                "the login could not be completed; try again",
            )
        }
        e @ (TriggerError::Failed { .. } | TriggerError::Unservable(_)) => {
            OAuthError::new(ErrorCode::ServerError, e.to_string())
        }
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
        id_claims: Option<&serde_json::Map<String, serde_json::Value>>,
    ) -> Result<crate::mapper::Profile, OAuthError> {
        let (report, _) = self
            .run_profile(connection, tokens, id_claims)
            .await
            .map_err(|e| {
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
            crate::events::note_mapper_error(e.kind());
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

/// The nonce sent to an OpenID Connect provider for a login: a hash of the
/// browser's binding cookie (OpenID Connect Core §15.5.2), so it needs no
/// storage, only this login's browser can present the matching value, and
/// an id_token replayed from another login carries another nonce.
pub(super) fn provider_nonce(binding_cookie: &str) -> String {
    use base64::Engine as _;
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(format!("waypass-provider-nonce:{binding_cookie}"));
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest)
}

impl Broker {
    /// The built-in claims mapper's profile: from the verified id_token,
    /// the userinfo endpoint, or both, as the connection says.
    async fn claims_profile(
        &self,
        connection: &Connection,
        tokens: &crate::mapper::TokenSet,
        id_claims: Option<&serde_json::Map<String, serde_json::Value>>,
        now: u64,
    ) -> Result<crate::mapper::Profile, OAuthError> {
        use crate::model::ClaimsSource;
        use crate::upstream::claims;
        let refused = |e: &dyn std::fmt::Display| {
            tracing::warn!(error = %e, "the provider's claims give no profile");
            OAuthError::new(ErrorCode::ServerError, e.to_string())
        };
        let no_id_token = || {
            OAuthError::new(
                ErrorCode::ServerError,
                "the provider sent no id_token, which this connection's claims come from (ask for the `openid` scope)",
            )
        };
        let userinfo = || async {
            self.upstream
                .userinfo(connection, &tokens.access_token, now)
                .await
                .map_err(|e| refused(&e))
        };
        let merged = match connection.claims.source {
            ClaimsSource::IdToken => id_claims.ok_or_else(no_id_token)?.clone(),
            ClaimsSource::Userinfo => userinfo().await?,
            ClaimsSource::Both => {
                let id = id_claims.ok_or_else(no_id_token)?;
                let info = userinfo().await?;
                // OpenID Connect Core §5.3.2: the same subject, or the
                // userinfo answer is not this user's.
                if info.get("sub") != id.get("sub") {
                    return Err(refused(
                        &crate::upstream::ProfileFetchError::UserinfoSubject,
                    ));
                }
                claims::merge(id, &info)
            }
        };
        claims::profile(&merged, &connection.claims).map_err(|e| refused(&e))
    }
}
