//! The browser's session at the broker: single sign-on across apps, and
//! what ends it (issue #11 §1, §3).
//!
//! A login through a connection leaves the browser a session cookie
//! (`__Host-wp_session` with an https issuer: HttpOnly, `SameSite=Lax`);
//! the store keeps the session under the cookie value's SHA-256, so every
//! instance sees it. A session belongs to one user and lists the
//! connections the browser authenticated through, each with its
//! `auth_time`, and the apps it gave codes to. An `/authorize` of any app
//! for a connection the session lists (or with no `connection`, for one it
//! lists that the app may use) answers with a code at once, unless the app
//! asks for a fresh login (`prompt=login`, or a `max_age` the login is
//! older than: OpenID Connect Core §3.1.2.1).
//!
//! Each login at the provider gives the session a new cookie value (the
//! old one stops working: a cookie planted before the login is worth
//! nothing after it) and a new absolute lifetime; its public id, the
//! `sid` apps know it by, stays. A login as another user ends the
//! browser's session and starts another.
//!
//! When a session ends — a logout, the management API, its user deleted,
//! another user's login in the same browser — every app it gave a code to
//! that registered a back-channel logout URI is told
//! ([`super::backchannel`]). Expiry deletes a session silently.

use std::net::IpAddr;
use std::sync::Arc;

use super::oauth::{ErrorCode, OAuthError, Params};
use super::{AUTHORIZATION_CODE_TTL, Broker};
use crate::actions::EventTransaction;
use crate::model::Client;
use crate::secret::SecretHash;
use crate::store::{
    AuthorizationGrant, GrantClaims, LoginTransaction, Session, SessionLogin, StoreError,
};

/// The session cookie's name (with `__Host-` when the issuer is https).
pub const SESSION_COOKIE: &str = "wp_session";

/// The session cookie's name for an issuer that is https (`secure`) or not.
pub fn session_cookie_name(secure: bool) -> String {
    if secure {
        format!("__Host-{SESSION_COOKIE}")
    } else {
        SESSION_COOKIE.to_owned()
    }
}

/// A session cookie for the response to set (or, with `max_age` 0, clear).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionCookie {
    pub value: String,
    /// Seconds the browser keeps it: the session's remaining absolute
    /// lifetime.
    pub max_age: u64,
}

impl SessionCookie {
    /// Clears the browser's session cookie.
    pub fn clear() -> Self {
        Self {
            value: String::new(),
            max_age: 0,
        }
    }
}

/// What `/authorize` asks about the browser's session (OpenID Connect
/// Core §3.1.2.1).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionRequest {
    /// `prompt=none`: answer without showing anything, or with an error.
    pub none: bool,
    /// `prompt=login`: the person authenticates at the provider again.
    pub login: bool,
    /// `prompt=select_account`: the person chooses (the connections page).
    pub select_account: bool,
    /// `max_age`: the login may be at most this many seconds old.
    pub max_age: Option<u64>,
}

impl SessionRequest {
    /// Reads `prompt` and `max_age`. `prompt=consent` asks for nothing
    /// here: every app is registered by the operator, so consent was given
    /// when it was, and `consent_required` never applies.
    pub fn parse(params: &Params) -> Result<Self, OAuthError> {
        let mut request = Self::default();
        let prompts: Vec<&str> = params
            .get("prompt")
            .map(|p| p.split(' ').filter(|v| !v.is_empty()).collect())
            .unwrap_or_default();
        for prompt in &prompts {
            match *prompt {
                "none" => request.none = true,
                "login" => request.login = true,
                "select_account" => request.select_account = true,
                "consent" => {}
                other => {
                    return Err(OAuthError::new(
                        ErrorCode::InvalidRequest,
                        format!(
                            "prompt `{other}` is not one of none, login, consent, select_account"
                        ),
                    ));
                }
            }
        }
        // Core §3.1.2.1: `none` with any other value is an error.
        if request.none && prompts.len() > 1 {
            return Err(OAuthError::new(
                ErrorCode::InvalidRequest,
                "prompt=none cannot be combined with other prompt values",
            ));
        }
        if let Some(max_age) = params.get("max_age") {
            request.max_age = Some(max_age.parse().map_err(|_| {
                OAuthError::new(
                    ErrorCode::InvalidRequest,
                    "max_age must be a number of seconds",
                )
            })?);
        }
        Ok(request)
    }

    /// Whether a login at `auth_time` is fresh enough at `now`.
    fn accepts(&self, auth_time: u64, now: u64) -> bool {
        self.max_age
            .is_none_or(|max_age| now.saturating_sub(auth_time) <= max_age)
    }
}

/// A login `/authorize` may answer from the browser's session.
pub(super) struct SsoAttempt<'a> {
    pub client: &'a Arc<Client>,
    /// The `connection` asked for, if any.
    pub connection: Option<&'a str>,
    pub request: SessionRequest,
    /// The code's grant, but for who and when: filled in from the session.
    pub grant: AuthorizationGrant,
    /// The `/authorize` request and where it came from: what post-login
    /// Actions see of it, built only when a session answers and an Action
    /// is bound.
    pub params: &'a Params,
    pub from: IpAddr,
}

impl Broker {
    /// The session the browser's cookie names, if live.
    pub(super) async fn browser_session(
        &self,
        cookie: Option<&str>,
    ) -> Result<Option<(SecretHash, Session)>, StoreError> {
        let Some(value) = cookie.filter(|v| !v.is_empty()) else {
            return Ok(None);
        };
        let key = SecretHash::of(value);
        Ok(self
            .store
            .get_session(key, self.clock.now())
            .await?
            .map(|session| (key, session)))
    }

    /// Whether `connection` exists and is enabled for `client_id` now.
    pub(crate) fn connection_serves(&self, connection: &str, client_id: &str) -> bool {
        self.connection(connection)
            .is_some_and(|c| c.is_enabled_for(client_id))
    }

    /// Answers `/authorize` from the browser's session, if it can: the
    /// code, or `None` (the person must log in at a provider). The session
    /// is recorded as used by the app before the code exists.
    pub(super) async fn single_sign_on(
        &self,
        attempt: SsoAttempt<'_>,
        cookie: Option<&str>,
    ) -> Result<Option<String>, OAuthError> {
        let request = attempt.request;
        if request.login || (request.select_account && attempt.connection.is_none()) {
            return Ok(None);
        }
        let Some((key, session)) = self
            .browser_session(cookie)
            .await
            .map_err(|e| unavailable(&e))?
        else {
            return Ok(None);
        };
        let now = self.clock.now();
        let client_id = attempt.client.client_id.as_str();
        let usable = |login: &&SessionLogin| self.connection_serves(&login.connection, client_id);
        let login = match attempt.connection {
            Some(name) => session.login_through(name).filter(usable),
            None => session.logins.iter().rev().find(usable),
        };
        let Some(login) = login.filter(|l| request.accepts(l.auth_time, now)) else {
            return Ok(None);
        };
        let idle_until = now.saturating_add(self.limits.sessions.idle_seconds);
        let touched = self
            .store
            .touch_session(key, client_id, now, idle_until)
            .await
            .map_err(|e| unavailable(&e))?;
        if !touched {
            // Ended between the read and now (a logout elsewhere).
            return Ok(None);
        }
        // Post-login Actions run for this login too, as at Auth0: the
        // session's user logging in to this app, now. A deny reaches the
        // app as `access_denied`; the session stays. With none bound, the
        // user record is not read.
        let (scope, claims) = if self.catalog.snapshot().post_login.is_empty() {
            (attempt.grant.scope.clone(), GrantClaims::default())
        } else {
            let Some(user) = self
                .store
                .get_user(&session.user_id)
                .await
                .map_err(|e| unavailable(&e))?
            else {
                // Deleted since (its sessions end with it): log in anew.
                return Ok(None);
            };
            let params = attempt.params;
            let request = self.event_request(
                attempt.from,
                crate::events::user_agent(),
                crate::actions::event_query(params.iter()),
            );
            let transaction = EventTransaction {
                requested_scopes: attempt
                    .grant
                    .scope
                    .split_whitespace()
                    .map(str::to_owned)
                    .collect(),
                redirect_uri: attempt.grant.redirect_uri.clone(),
                audience: attempt.grant.audience.clone(),
                prompt: params
                    .get("prompt")
                    .filter(|p| !p.is_empty())
                    .map(str::to_owned),
            };
            let granted = self
                .run_post_login(&user, client_id, request, &attempt.grant.scope, transaction)
                .await?;
            let claims = GrantClaims {
                id_token: granted.id_token_claims,
                access_token: granted.access_token_claims,
                ..GrantClaims::default()
            };
            (granted.scope, claims)
        };
        let grant = AuthorizationGrant {
            user_id: session.user_id.clone(),
            auth_time: login.auth_time,
            session_id: Some(session.id.clone()),
            scope,
            claims,
            ..attempt.grant
        };
        tracing::info!(user_id = %grant.user_id, client_id, connection = %login.connection,
            session = %session.id, "single sign-on: answered from the session");
        self.issue_code(grant).await.map(Some)
    }

    /// After a login at the provider: starts the browser's session, or
    /// renews the one it has for this user, records the app, and issues
    /// the code. Returns the code and the session cookie to set.
    pub(super) async fn login_finished(
        &self,
        tx: &LoginTransaction,
        user_id: &str,
        cookie: Option<&str>,
        scope: String,
        claims: GrantClaims,
    ) -> Result<(String, SessionCookie), OAuthError> {
        let now = self.clock.now();
        let lifetimes = self.limits.sessions;
        let expires_at = now.saturating_add(lifetimes.absolute_seconds);
        let idle_expires_at = now.saturating_add(lifetimes.idle_seconds).min(expires_at);
        let current = self
            .browser_session(cookie)
            .await
            .map_err(|e| unavailable(&e))?;
        let mut session = match current {
            Some((_, same)) if same.user_id == user_id => {
                // Renewed under a new cookie value: deleted under the old
                // key first (its id stays, its apps are kept).
                self.store
                    .delete_session(&same.id)
                    .await
                    .map_err(|e| unavailable(&e))?
                    .unwrap_or(same)
            }
            other => {
                if let Some((_, previous)) = other {
                    self.end_session(&previous.id, "another user logged in in this browser")
                        .await
                        .map_err(|e| unavailable(&e))?;
                }
                Session {
                    id: format!("ses_{}", self.random.identifier(24)),
                    user_id: user_id.to_owned(),
                    logins: Vec::new(),
                    clients: Vec::new(),
                    created_at: now,
                    last_active: now,
                    idle_expires_at,
                    expires_at,
                }
            }
        };
        session.logins.retain(|l| l.connection != tx.connection);
        session.logins.push(SessionLogin {
            connection: tx.connection.clone(),
            auth_time: now,
        });
        if !session.clients.contains(&tx.client_id) {
            session.clients.push(tx.client_id.clone());
            session.clients.sort();
        }
        session.last_active = now;
        session.idle_expires_at = idle_expires_at;
        session.expires_at = expires_at;
        let value = self.random.token();
        let mut grant = AuthorizationGrant {
            client_id: tx.client_id.clone(),
            redirect_uri: tx.redirect_uri.clone(),
            user_id: user_id.to_owned(),
            scope,
            nonce: tx.nonce.clone(),
            code_challenge: tx.code_challenge.clone(),
            auth_time: now,
            claims,
            session_id: Some(session.id.clone()),
            audience: tx.audience.clone(),
            correlation_id: Some(tx.correlation_id.clone()),
            expires_at: now + AUTHORIZATION_CODE_TTL.as_secs(),
        };
        let code = self.new_code(&mut grant);
        // One write for both: the code is never stored without its session.
        self.store
            .put_session_and_code(
                SecretHash::of(&value),
                &session,
                SecretHash::of(&code),
                grant,
            )
            .await
            .map_err(|e| unavailable(&e))?;
        Ok((
            code,
            SessionCookie {
                value,
                max_age: lifetimes.absolute_seconds,
            },
        ))
    }

    /// A new code for `grant`: the claims never stored in the clear are
    /// sealed with it, into `grant`.
    fn new_code(&self, grant: &mut AuthorizationGrant) -> String {
        let code = self.random.token();
        let transient = std::mem::take(&mut grant.claims.transient);
        if !transient.is_empty() {
            grant.claims.sealed = super::sealed::seal(&code, &transient);
        }
        code
    }

    /// Stores `grant` under a new code and returns the code.
    pub(super) async fn issue_code(
        &self,
        mut grant: AuthorizationGrant,
    ) -> Result<String, OAuthError> {
        let code = self.new_code(&mut grant);
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
        Ok(code)
    }

    /// Ends the session with public id `id` and tells its apps; whether
    /// there was one.
    pub(crate) async fn end_session(&self, id: &str, why: &str) -> Result<bool, StoreError> {
        let Some(session) = self.store.delete_session(id).await? else {
            return Ok(false);
        };
        tracing::info!(session = %session.id, user_id = %session.user_id, "session ended: {why}");
        self.backchannel_logout(&session);
        Ok(true)
    }

    /// Ends every session of a user and tells their apps; how many.
    pub(crate) async fn end_sessions_of_user(
        &self,
        user_id: &str,
        why: &str,
    ) -> Result<usize, StoreError> {
        let sessions = self.store.delete_sessions_of_user(user_id).await?;
        for session in &sessions {
            tracing::info!(session = %session.id, user_id, "session ended: {why}");
            self.backchannel_logout(session);
        }
        Ok(sessions.len())
    }

    /// Revokes everything issued to a user: their sessions (their apps are
    /// told), refresh tokens and access tokens. For a user deleted.
    pub(crate) async fn revoke_user(&self, user_id: &str) -> Result<(), StoreError> {
        let sessions = self
            .end_sessions_of_user(user_id, "the user was deleted")
            .await?;
        let refresh = self.store.delete_refresh_tokens_of_user(user_id).await?;
        let access = self.store.delete_access_tokens_of_user(user_id).await?;
        tracing::info!(
            user_id,
            sessions,
            refresh,
            access,
            "revoked what was issued to a deleted user"
        );
        Ok(())
    }
}

fn unavailable(e: &StoreError) -> OAuthError {
    tracing::error!(error = %e, "the session store is unavailable");
    OAuthError::new(
        ErrorCode::TemporarilyUnavailable,
        "the login could not be completed; try again",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(query: &str) -> Result<SessionRequest, OAuthError> {
        SessionRequest::parse(&Params::parse(query).expect("parses"))
    }

    #[test]
    fn prompt_values_are_read_and_none_stands_alone() {
        assert_eq!(request(""), Ok(SessionRequest::default()));
        let login = request("prompt=login%20consent&max_age=30").expect("valid");
        assert!(login.login && !login.none && !login.select_account);
        assert_eq!(login.max_age, Some(30));
        assert!(request("prompt=none").expect("valid").none);
        for bad in [
            "prompt=none%20login",
            "prompt=sometimes",
            "max_age=-1",
            "max_age=soon",
        ] {
            assert_eq!(
                request(bad).map_err(|e| e.code),
                Err(ErrorCode::InvalidRequest),
                "{bad}"
            );
        }
    }

    #[test]
    fn max_age_bounds_how_old_a_login_may_be() {
        let fresh = SessionRequest {
            max_age: Some(60),
            ..SessionRequest::default()
        };
        assert!(fresh.accepts(1_000, 1_060));
        assert!(!fresh.accepts(1_000, 1_061));
        assert!(SessionRequest::default().accepts(0, u64::MAX));
        let zero = SessionRequest {
            max_age: Some(0),
            ..SessionRequest::default()
        };
        assert!(!zero.accepts(1_000, 1_001), "max_age=0: always a new login");
    }
}
