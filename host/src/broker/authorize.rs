//! `/authorize`: check the app, then send the browser to the provider.

use std::net::IpAddr;
use std::sync::Arc;

use url::Url;

use super::limits::RetryAfter;
use super::oauth::{AppResponse, ErrorCode, OAuthError, Params, ResponseMode, with_query};
use super::session::{SessionRequest, SsoAttempt};
use super::{AUTHORIZATION_CODE_TTL, Broker, LOGIN_TRANSACTION_TTL};
use crate::model::{Client, Connection, GrantType};
use crate::secret::{SecretHash, pkce_challenge, pkce_value_is_valid};
use crate::store::{AuthorizationGrant, LoginTransaction, PutTransaction};

/// Longest `state`, `nonce` or `scope` accepted, and longest value passed
/// on to the provider through `authParamsMap`: apps send random values of
/// 16–64 bytes and a handful of scopes; 1 KiB leaves room for a state that
/// carries a short return path, and keeps a stored login to a few KiB
/// however many are started.
pub const MAX_PARAM_BYTES: usize = 1024;

/// The parameters kept in a login transaction, bounded by [`MAX_PARAM_BYTES`].
const STORED: [&str; 3] = ["state", "nonce", "scope"];

/// Prefix of the cookie binding a login to its browser.
const COOKIE_PREFIX: &str = "wp_tx_";

/// Our `/authorize` parameters; never forwarded through `authParamsMap`,
/// and never overridden by `authParams` towards the provider.
const RESERVED: [&str; 13] = [
    "response_type",
    "client_id",
    "redirect_uri",
    "state",
    "scope",
    "nonce",
    "code_challenge",
    "code_challenge_method",
    "connection",
    "response_mode",
    "code_verifier",
    "audience",
    "max_age",
];

/// What `/authorize` answers.
#[derive(Debug)]
pub enum AuthorizeOutcome {
    /// To the provider, binding the login to the browser with a cookie.
    ToProvider {
        location: String,
        cookie_name: String,
        cookie_value: String,
    },
    /// Back to the app with a code (single sign-on: the browser's session
    /// answered) or an error, in the app's response mode (the app and its
    /// redirect_uri checked out).
    ToApp(AppResponse),
    /// No `connection` given: choose one of these.
    ChooseConnection {
        client: Arc<Client>,
        connections: Vec<Arc<Connection>>,
        /// The request's query, to repeat with `connection` added.
        query: String,
    },
    /// The app or its redirect_uri did not check out: never redirect.
    ErrorPage(OAuthError),
    /// Too many requests from this address or for this app: `429`.
    TooManyRequests(RetryAfter),
}

/// The cookie binding a login to its browser: named per login so parallel
/// logins in two tabs do not clobber each other. With an https issuer it
/// carries the `__Host-` prefix (RFC 6265bis §4.1.3.2): the browser then
/// accepts it only with `Secure`, `Path=/` and no `Domain`, so neither a
/// sibling subdomain nor plain HTTP can plant or overwrite it.
pub fn cookie_name(provider_state: &str, secure: bool) -> String {
    // Our states are base64url; a forged one may hold anything, and is
    // cut on a character boundary.
    let tag: String = provider_state.chars().take(12).collect();
    let prefix = if secure { "__Host-" } else { "" };
    format!("{prefix}{COOKIE_PREFIX}{tag}")
}

impl Broker {
    /// Handles `/authorize` with its raw query string, from the client
    /// address `from` (for the rate limits), for a browser without a
    /// session.
    pub async fn authorize(&self, query: &str, from: IpAddr) -> AuthorizeOutcome {
        self.authorize_in(query, from, None).await
    }

    /// Handles `/authorize` for a browser whose session cookie (if any) is
    /// `session`: a session that can answer returns a code at once.
    pub async fn authorize_in(
        &self,
        query: &str,
        from: IpAddr,
        session: Option<&str>,
    ) -> AuthorizeOutcome {
        if let Err(wait) = self.rate.authorize(from) {
            return AuthorizeOutcome::TooManyRequests(wait);
        }
        let params = match Params::parse(query) {
            Ok(p) => p,
            Err(e) => return AuthorizeOutcome::ErrorPage(e),
        };
        // RFC 6749 §4.1.2.1: until client and redirect_uri check out, errors
        // are shown, never redirected (no open redirector).
        let Some(client_id) = params.get("client_id") else {
            return error_page("`client_id` is required");
        };
        let Some(client) = self.client(client_id) else {
            return error_page(&format!("unknown client `{client_id}`"));
        };
        if let Err(wait) = self.rate.authorize_client(&client.client_id) {
            return AuthorizeOutcome::TooManyRequests(wait);
        }
        let Some(redirect_uri) = params.get("redirect_uri") else {
            return error_page("`redirect_uri` is required");
        };
        if !client.allows_redirect(redirect_uri) {
            return error_page(&format!(
                "`{redirect_uri}` is not one of this app's allowed callback URLs"
            ));
        }
        let Ok(redirect_url) = Url::parse(redirect_uri) else {
            return error_page(&format!("`{redirect_uri}` is not a URL"));
        };
        // An oversized state is not echoed back (it is what is refused).
        let app_state = params.get("state").filter(|s| s.len() <= MAX_PARAM_BYTES);
        // The mode errors go back in too; a mode we do not know is itself
        // answered in the default one.
        let (mode, result) = match ResponseMode::parse(params.get("response_mode")) {
            Ok(mode) => (
                mode,
                self.start_login(&params, &client, &redirect_url, mode, session, from)
                    .await,
            ),
            Err(e) => (ResponseMode::Query, Err(e)),
        };
        match result {
            Ok(outcome) => outcome,
            Err(e) => {
                self.log_authorize_failure(query, &e, from);
                AuthorizeOutcome::ToApp(AppResponse::error(&redirect_url, mode, &e, app_state))
            }
        }
    }

    async fn start_login(
        &self,
        params: &Params,
        client: &Arc<Client>,
        redirect_url: &Url,
        mode: ResponseMode,
        session: Option<&str>,
        from: IpAddr,
    ) -> Result<AuthorizeOutcome, OAuthError> {
        // Exactly as registered (and as the app must send it again at the
        // token endpoint), not as the URL parser normalises it.
        let redirect_uri = params.get("redirect_uri").unwrap_or_default();
        match params.get("response_type") {
            Some("code") => {}
            Some(other) => {
                return Err(OAuthError::new(
                    ErrorCode::UnsupportedResponseType,
                    format!("response_type `{other}` is not supported; use `code`"),
                ));
            }
            None => {
                return Err(OAuthError::new(
                    ErrorCode::InvalidRequest,
                    "`response_type` is required",
                ));
            }
        }
        if !client.allows_grant(GrantType::AuthorizationCode) {
            return Err(OAuthError::new(
                ErrorCode::UnauthorizedClient,
                format!(
                    "this {} app may not use the authorization_code grant (its app_type and grant_types)",
                    client.app_type.as_str()
                ),
            ));
        }
        for name in STORED {
            check_length(params, name)?;
        }
        let code_challenge = match (
            params.get("code_challenge"),
            params.get("code_challenge_method"),
        ) {
            // RFC 7636 §4.2: 43–128 unreserved characters.
            (Some(c), Some("S256")) if pkce_value_is_valid(c) => Some(c.to_owned()),
            (Some(_), Some("S256")) => {
                return Err(OAuthError::new(
                    ErrorCode::InvalidRequest,
                    "code_challenge must be 43 to 128 characters of A-Z a-z 0-9 - . _ ~ (RFC 7636)",
                ));
            }
            (Some(_), Some(m)) => {
                return Err(OAuthError::new(
                    ErrorCode::InvalidRequest,
                    format!("code_challenge_method `{m}` is not supported; use S256"),
                ));
            }
            (Some(_), None) => {
                return Err(OAuthError::new(
                    ErrorCode::InvalidRequest,
                    "code_challenge_method is required; use S256 (plain is not accepted)",
                ));
            }
            (None, _) => None,
        };
        if client.needs_pkce() && code_challenge.is_none() {
            return Err(OAuthError::new(
                ErrorCode::InvalidRequest,
                "this app must use PKCE (code_challenge with code_challenge_method=S256)",
            ));
        }
        let request = SessionRequest::parse(params)?;
        let api = match params.get("audience") {
            None => None,
            Some(audience) => Some(self.resource_server(audience).ok_or_else(|| {
                OAuthError::new(
                    ErrorCode::InvalidRequest,
                    format!("audience `{audience}` is not a registered API"),
                )
            })?),
        };
        let scope = Broker::granted_scope(params.get("scope").unwrap_or("openid"), api.as_deref());
        let audience = api.as_ref().map(|a| a.identifier.clone());

        // Names the login in logs and traces, wherever its parts are served.
        let correlation_id = self.random.token()[..16].to_owned();
        crate::telemetry::note_login(&correlation_id);
        // Single sign-on: the browser's session answers, if it can.
        let attempt = SsoAttempt {
            client,
            connection: params.get("connection"),
            request,
            grant: AuthorizationGrant {
                client_id: client.client_id.clone(),
                redirect_uri: redirect_uri.to_owned(),
                user_id: String::new(),
                scope: scope.clone(),
                nonce: params.get("nonce").map(str::to_owned),
                code_challenge: code_challenge.clone(),
                auth_time: 0,
                // Set by the post-login Actions, which run for an SSO login too.
                claims: Default::default(),
                session_id: None,
                audience: audience.clone(),
                correlation_id: Some(correlation_id.clone()),
                expires_at: self.expires_in(AUTHORIZATION_CODE_TTL),
            },
            params,
            from,
        };
        if let Some(code) = self.single_sign_on(attempt, session).await? {
            return Ok(AuthorizeOutcome::ToApp(AppResponse::code(
                redirect_url,
                mode,
                &code,
                params.get("state"),
            )));
        }
        // OpenID Connect Core §3.1.2.6: nothing may be shown.
        if request.none {
            return Err(OAuthError::new(
                ErrorCode::LoginRequired,
                "prompt=none, and this browser has no session that can answer: the person must log in",
            ));
        }
        let Some(connection_name) = params.get("connection") else {
            // The page's links repeat this request with `connection` added.
            let mut repeat = url::form_urlencoded::Serializer::new(String::new());
            repeat.extend_pairs(params.iter().filter(|(k, _)| *k != "connection"));
            return Ok(AuthorizeOutcome::ChooseConnection {
                client: client.clone(),
                connections: self.connections_for(&client.client_id),
                query: repeat.finish(),
            });
        };
        let connection = self
            .connection(connection_name)
            .filter(|c| c.is_enabled_for(&client.client_id))
            .ok_or_else(|| {
                OAuthError::new(
                    ErrorCode::InvalidRequest,
                    format!("connection `{connection_name}` is not enabled for this app"),
                )
            })?;
        // A stored connection that breaks a rule added since it was
        // written: refused here, with the rule, rather than sent on.
        if let Some(why) = &connection.refused {
            tracing::error!(connection = %connection.name(), "login refused: {why}");
            return Err(OAuthError::new(
                ErrorCode::ServerError,
                format!(
                    "connection `{connection_name}` is misconfigured and cannot be used: {why}"
                ),
            ));
        }

        let provider_state = self.random.token();
        let binding = self.random.token();
        let provider_verifier = connection
            .spec
            .options
            .pkce_enabled
            .then(|| crate::secret::Secret::new(self.random.token()));
        // A connection left to discovery learns its endpoint here (cached).
        let endpoints = self
            .upstream
            .endpoints(&connection, self.clock.now())
            .await
            .map_err(|e| {
                tracing::warn!(connection = connection.name(), error = %e, "provider discovery failed");
                OAuthError::new(ErrorCode::TemporarilyUnavailable, e.to_string())
            })?;
        let provider_nonce = connection
            .sends_nonce()
            .then(|| super::callback::provider_nonce(&binding));
        let location = provider_url(
            &connection,
            &endpoints.authorization,
            params,
            &self.callback_url_for(&connection),
            &provider_state,
            provider_verifier
                .as_ref()
                .map(|v| pkce_challenge(v.expose()))
                .as_deref(),
            provider_nonce.as_deref(),
        )?;
        tracing::debug!(correlation_id, client_id = %client.client_id, connection = %connection.name(), "login started");
        let tx = LoginTransaction {
            client_id: client.client_id.clone(),
            redirect_uri: redirect_uri.to_owned(),
            app_state: params.get("state").map(str::to_owned),
            nonce: params.get("nonce").map(str::to_owned),
            code_challenge,
            scope,
            connection: connection.name().to_owned(),
            provider_verifier,
            browser_binding: SecretHash::of(&binding),
            correlation_id,
            expires_at: self.expires_in(LOGIN_TRANSACTION_TTL),
            form_post: mode == ResponseMode::FormPost,
            audience,
            query: crate::actions::event_query(params.iter()),
        };
        let now = self.clock.now();
        let max_live = self.limits.max_outstanding_logins;
        let stored = self
            .store
            .put_transaction(SecretHash::of(&provider_state), tx, now, max_live)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "cannot store a login transaction");
                OAuthError::new(
                    ErrorCode::TemporarilyUnavailable,
                    "the login could not be started; try again",
                )
            })?;
        if stored == PutTransaction::Full {
            tracing::warn!(
                max_live,
                "the bound on logins in flight is reached; refusing new ones"
            );
            return Err(OAuthError::new(
                ErrorCode::TemporarilyUnavailable,
                "too many logins are in progress; try again in a few minutes",
            ));
        }
        Ok(AuthorizeOutcome::ToProvider {
            location,
            cookie_name: cookie_name(&provider_state, self.secure_cookies()),
            cookie_value: binding,
        })
    }
}

fn error_page(description: &str) -> AuthorizeOutcome {
    AuthorizeOutcome::ErrorPage(OAuthError::new(ErrorCode::InvalidRequest, description))
}

/// `invalid_request` for a parameter over [`MAX_PARAM_BYTES`].
fn check_length(params: &Params, name: &str) -> Result<(), OAuthError> {
    match params.get(name) {
        Some(v) if v.len() > MAX_PARAM_BYTES => Err(OAuthError::new(
            ErrorCode::InvalidRequest,
            format!("`{name}` is over {MAX_PARAM_BYTES} bytes"),
        )),
        _ => Ok(()),
    }
}

/// The provider's authorize URL: the standard parameters, then `authParams`,
/// then `authParamsMap` applied to this request's parameters.
fn provider_url(
    connection: &Connection,
    endpoint: &url::Url,
    params: &Params,
    callback: &str,
    state: &str,
    code_challenge: Option<&str>,
    nonce: Option<&str>,
) -> Result<String, OAuthError> {
    let options = &connection.spec.options;
    let mut pairs: Vec<(&str, &str)> = vec![
        ("response_type", "code"),
        ("client_id", &options.client_id),
        ("redirect_uri", callback),
        ("state", state),
    ];
    if !options.scope.is_empty() {
        pairs.push(("scope", &options.scope));
    }
    if let Some(challenge) = code_challenge {
        pairs.push(("code_challenge", challenge));
        pairs.push(("code_challenge_method", "S256"));
    }
    if let Some(nonce) = nonce {
        pairs.push(("nonce", nonce));
    }
    let reserved = |name: &str| RESERVED.contains(&name);
    for (name, value) in &options.auth_params {
        if !reserved(name) {
            pairs.push((name, value));
        }
    }
    for (provider_param, our_param) in &options.auth_params_map {
        if reserved(provider_param) || reserved(our_param) {
            continue;
        }
        if let Some(value) = params.get(our_param) {
            check_length(params, our_param)?;
            pairs.retain(|(k, _)| k != provider_param);
            pairs.push((provider_param, value));
        }
    }
    Ok(with_query(endpoint, &pairs))
}
