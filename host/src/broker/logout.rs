//! Logout: OpenID Connect RP-Initiated Logout 1.0 (`/oidc/logout`, the
//! discovery document's `end_session_endpoint`) and Auth0's
//! `/v2/logout?client_id&returnTo&federated`.
//!
//! Both end the browser's session (its cookie is cleared, its apps told
//! through back-channel logout) and then send the browser back to the app
//! — only to a URL in the app's `allowed_logout_urls`, compared exactly
//! (RP-Initiated §3, Auth0's rule): anything else is shown as an error
//! page, never redirected to (no open redirector) — or show a page saying
//! the person is logged out. No confirmation is asked: as at Auth0, a
//! logout link logs out (the worst a forged one does is that).
//!
//! Refresh tokens the apps hold survive the logout: they were asked for as
//! `offline_access`, which is access without the person present
//! (Back-Channel Logout 1.0 §2.7).

use super::Broker;
use super::oauth::{ErrorCode, OAuthError, Params, with_query};
use super::session::SessionCookie;
use crate::keys::TokenType;
use crate::model::Client;
use crate::store::Session;

/// What a logout answers. Every outcome clears the session cookie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogoutOutcome {
    /// To the app's logout URL, or to the provider's logout page.
    Redirect { location: String },
    /// The "you are logged out" page.
    LoggedOut,
    /// A request that cannot be followed: shown, never redirected.
    ErrorPage(OAuthError),
}

impl LogoutOutcome {
    /// The session cookie a logout's answer sets: cleared.
    pub fn cookie(&self) -> SessionCookie {
        SessionCookie::clear()
    }
}

/// The parts of an id_token `id_token_hint` is read for.
#[derive(Debug, serde::Deserialize)]
struct HintClaims {
    iss: String,
    aud: super::issue::Audience,
    #[serde(default)]
    sid: Option<String>,
}

fn invalid(description: impl Into<String>) -> LogoutOutcome {
    LogoutOutcome::ErrorPage(OAuthError::new(ErrorCode::InvalidRequest, description))
}

impl Broker {
    /// Handles `/oidc/logout` (GET query or POST form, RP-Initiated Logout
    /// 1.0 §2) with the browser's session cookie.
    pub async fn end_session_endpoint(&self, params: &str, cookie: Option<&str>) -> LogoutOutcome {
        let params = match Params::parse(params) {
            Ok(p) => p,
            Err(e) => return LogoutOutcome::ErrorPage(e),
        };
        // §2: the OP MUST validate that it issued the id_token_hint; an
        // expired one is fine (it is a hint, not a credential).
        let hint = match params.get("id_token_hint") {
            None => None,
            Some(token) => {
                let claims = self
                    .keys
                    .load()
                    .verify(token, TokenType::IdToken)
                    .ok()
                    .and_then(|c| serde_json::from_value::<HintClaims>(c).ok())
                    .filter(|c| c.iss == self.issuer());
                match claims {
                    Some(claims) => Some(claims),
                    None => return invalid("id_token_hint is not an id_token this issuer signed"),
                }
            }
        };
        let client_id = match (params.get("client_id"), &hint) {
            (Some(id), Some(hint)) if !hint.aud.contains(id) => {
                return invalid("client_id is not the audience of id_token_hint");
            }
            (Some(id), _) => Some(id.to_owned()),
            (None, Some(hint)) => hint.aud.first().map(str::to_owned),
            (None, None) => None,
        };
        let redirect = match params.get("post_logout_redirect_uri") {
            None => None,
            Some(uri) => match self.logout_target(client_id.as_deref(), uri) {
                Ok(()) => Some(uri.to_owned()),
                Err(outcome) => return outcome,
            },
        };
        let hinted_sid = hint.and_then(|h| h.sid);
        if let Err(e) = self
            .end_browser_session(cookie, hinted_sid.as_deref())
            .await
        {
            return LogoutOutcome::ErrorPage(e);
        }
        match redirect {
            Some(uri) => {
                let Ok(url) = url::Url::parse(&uri) else {
                    return invalid("post_logout_redirect_uri is not a URL");
                };
                // §3: `state` goes back to the app as it came.
                let pairs: Vec<(&str, &str)> = params
                    .get("state")
                    .map(|s| vec![("state", s)])
                    .unwrap_or_default();
                LogoutOutcome::Redirect {
                    location: with_query(&url, &pairs),
                }
            }
            None => LogoutOutcome::LoggedOut,
        }
    }

    /// Handles Auth0's `/v2/logout?client_id&returnTo&federated` with the
    /// browser's session cookie. `federated` sends the browser on to the
    /// logout page of the provider it last logged in through (the
    /// connection's `logout_url`), if it has one: from there the provider
    /// decides where the browser goes, so `returnTo` is not followed.
    pub async fn auth0_logout(&self, query: &str, cookie: Option<&str>) -> LogoutOutcome {
        let params = match Params::parse(query) {
            Ok(p) => p,
            Err(e) => return LogoutOutcome::ErrorPage(e),
        };
        // Auth0 reads `federated` as present-or-not.
        let federated = query
            .split('&')
            .any(|pair| pair == "federated" || pair.starts_with("federated="));
        let redirect = match params.get("returnTo") {
            None => None,
            Some(uri) => match self.logout_target(params.get("client_id"), uri) {
                Ok(()) => Some(uri.to_owned()),
                Err(outcome) => return outcome,
            },
        };
        let ended = match self.end_browser_session(cookie, None).await {
            Ok(ended) => ended,
            Err(e) => return LogoutOutcome::ErrorPage(e),
        };
        if federated {
            let provider_logout = ended
                .as_ref()
                .and_then(|s| s.logins.last())
                .and_then(|login| self.connection(&login.connection))
                .and_then(|c| c.spec.options.logout_url.clone());
            if let Some(location) = provider_logout {
                return LogoutOutcome::Redirect { location };
            }
        }
        match redirect {
            Some(location) => LogoutOutcome::Redirect { location },
            None => LogoutOutcome::LoggedOut,
        }
    }

    /// Whether the browser may be sent to `uri` after logout: it must be
    /// one of the app's `allowed_logout_urls`, so the app must be known.
    fn logout_target(&self, client_id: Option<&str>, uri: &str) -> Result<(), LogoutOutcome> {
        let Some(client_id) = client_id else {
            return Err(invalid(
                "a logout redirect needs the app: send client_id (or id_token_hint)",
            ));
        };
        let client: std::sync::Arc<Client> = self
            .client(client_id)
            .ok_or_else(|| invalid(format!("unknown client `{client_id}`")))?;
        if !client.allows_logout_url(uri) {
            return Err(invalid(format!(
                "`{uri}` is not one of this app's allowed logout URLs"
            )));
        }
        Ok(())
    }

    /// Ends the session the cookie names, or else the one the
    /// id_token_hint names (a browser whose cookie is gone still ends the
    /// session it logged in with); returns it.
    async fn end_browser_session(
        &self,
        cookie: Option<&str>,
        hinted_sid: Option<&str>,
    ) -> Result<Option<Session>, OAuthError> {
        let unavailable = |e: crate::store::StoreError| {
            tracing::error!(error = %e, "cannot end a session");
            OAuthError::new(
                ErrorCode::TemporarilyUnavailable,
                "the logout could not be completed; try again",
            )
        };
        let from_cookie = self.browser_session(cookie).await.map_err(unavailable)?;
        let id = match (&from_cookie, hinted_sid) {
            (Some((_, session)), _) => Some(session.id.clone()),
            (None, Some(sid)) => Some(sid.to_owned()),
            (None, None) => None,
        };
        let Some(id) = id else {
            return Ok(None);
        };
        let session = self.store.delete_session(&id).await.map_err(unavailable)?;
        if let Some(session) = &session {
            tracing::info!(session = %session.id, user_id = %session.user_id, "logged out");
            self.backchannel_logout(session);
        }
        Ok(session)
    }
}
