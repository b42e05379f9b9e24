//! `/authorize`: check the app, then send the browser to the provider.

use std::sync::Arc;

use url::Url;

use super::model::{Client, ClientType, Connection};
use super::oauth::{ErrorCode, OAuthError, Params, error_redirect, with_query};
use super::secret::{SecretHash, pkce_challenge};
use super::store::LoginTransaction;
use super::{Broker, LOGIN_TRANSACTION_TTL};

/// Our `/authorize` parameters; never forwarded through `authParamsMap`,
/// and never overridden by `authParams` towards the provider.
const RESERVED: [&str; 11] = [
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
    /// Back to the app with an error (the app and its redirect_uri checked out).
    ToApp { location: String },
    /// No `connection` given: choose one of these.
    ChooseConnection {
        client: Arc<Client>,
        connections: Vec<Arc<Connection>>,
        /// The request's query, to repeat with `connection` added.
        query: String,
    },
    /// The app or its redirect_uri did not check out: never redirect.
    ErrorPage(OAuthError),
}

/// The cookie binding a login to its browser: named per login so parallel
/// logins in two tabs do not clobber each other.
pub fn cookie_name(provider_state: &str) -> String {
    format!("wp_tx_{}", &provider_state[..12.min(provider_state.len())])
}

impl Broker {
    /// Handles `/authorize` with its raw query string.
    pub async fn authorize(&self, query: &str) -> AuthorizeOutcome {
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
        let app_state = params.get("state");
        match self.start_login(&params, &client, redirect_uri).await {
            Ok(outcome) => outcome,
            Err(e) => AuthorizeOutcome::ToApp {
                location: error_redirect(&redirect_url, &e, app_state),
            },
        }
    }

    async fn start_login(
        &self,
        params: &Params,
        client: &Arc<Client>,
        redirect_uri: &str,
    ) -> Result<AuthorizeOutcome, OAuthError> {
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
        if let Some(mode) = params.get("response_mode").filter(|m| *m != "query") {
            return Err(OAuthError::new(
                ErrorCode::InvalidRequest,
                format!("response_mode `{mode}` is not supported; only `query` is"),
            ));
        }
        let code_challenge = match (
            params.get("code_challenge"),
            params.get("code_challenge_method"),
        ) {
            (Some(c), Some("S256")) => Some(c.to_owned()),
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
        if client.client_type == ClientType::Public && code_challenge.is_none() {
            return Err(OAuthError::new(
                ErrorCode::InvalidRequest,
                "public clients must use PKCE (code_challenge with S256)",
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

        let provider_state = self.random.token();
        let binding = self.random.token();
        let provider_verifier = connection
            .spec
            .options
            .pkce_enabled
            .then(|| super::secret::Secret::new(self.random.token()));
        let location = provider_url(
            &connection,
            params,
            self.callback_url(),
            &provider_state,
            provider_verifier
                .as_ref()
                .map(|v| pkce_challenge(v.expose()))
                .as_deref(),
        );
        let correlation_id = self.random.token()[..16].to_owned();
        tracing::debug!(correlation_id, client_id = %client.client_id, connection = %connection.name(), "login started");
        let tx = LoginTransaction {
            client_id: client.client_id.clone(),
            redirect_uri: redirect_uri.to_owned(),
            app_state: params.get("state").map(str::to_owned),
            nonce: params.get("nonce").map(str::to_owned),
            code_challenge,
            scope: params.get("scope").unwrap_or("openid").to_owned(),
            connection: connection.name().to_owned(),
            provider_verifier,
            browser_binding: SecretHash::of(&binding),
            correlation_id,
            expires_at: self.expires_in(LOGIN_TRANSACTION_TTL),
        };
        self.store
            .put_transaction(SecretHash::of(&provider_state), tx)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "cannot store a login transaction");
                OAuthError::new(
                    ErrorCode::TemporarilyUnavailable,
                    "the login could not be started; try again",
                )
            })?;
        Ok(AuthorizeOutcome::ToProvider {
            location,
            cookie_name: cookie_name(&provider_state),
            cookie_value: binding,
        })
    }
}

fn error_page(description: &str) -> AuthorizeOutcome {
    AuthorizeOutcome::ErrorPage(OAuthError::new(ErrorCode::InvalidRequest, description))
}

/// The provider's authorize URL: the standard parameters, then `authParams`,
/// then `authParamsMap` applied to this request's parameters.
fn provider_url(
    connection: &Connection,
    params: &Params,
    callback: &str,
    state: &str,
    code_challenge: Option<&str>,
) -> String {
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
            pairs.retain(|(k, _)| k != provider_param);
            pairs.push((provider_param, value));
        }
    }
    with_query(&connection.authorization_url, &pairs)
}
