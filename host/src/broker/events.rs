//! The broker's events ([`crate::events`]): a login's outcome, a token
//! exchange, a management write, each recorded with one call from where it
//! is decided.

use std::net::IpAddr;

use super::Broker;
use super::oauth::{OAuthError, Params};
use crate::events::{ApiDetails, EventType, FailureDetails, LoginStage};
use crate::store::LoginTransaction;

/// Longest API path kept in an event: ids are tens of characters.
const MAX_LOGGED_PATH: usize = 512;

impl Broker {
    /// The events this broker records (turn them off for a baseline).
    pub fn events(&self) -> &crate::events::EventSink {
        &self.events
    }

    /// A login finished at `/login/callback`: `s` (no error), or `f`
    /// with the stage it reached and the reason.
    pub(super) fn log_login(
        &self,
        tx: &LoginTransaction,
        error: Option<&OAuthError>,
        from: IpAddr,
    ) {
        let (kind, description) = match error {
            None => (EventType::Success, "Successful login".to_owned()),
            Some(e) => (EventType::Failure, e.description.clone()),
        };
        let mut event = self.events.event(kind, self.clock.now(), description);
        event.ip = Some(from.to_string());
        event.client_id = Some(tx.client_id.clone());
        event.client_name = self.client(&tx.client_id).map(|c| c.name.clone());
        event.connection_id = self.connection(&tx.connection).map(|c| c.id.clone());
        event.connection = Some(tx.connection.clone());
        if let Some((user_id, name)) = crate::events::noted_user() {
            event.user_id = Some(user_id);
            event.user_name = name;
        }
        if let Some(e) = error {
            let details = FailureDetails {
                stage: crate::events::stage().unwrap_or(LoginStage::Callback),
                error: e.code.as_str(),
                reason: &e.description,
                mapper_error: crate::events::noted_mapper_error(),
            };
            event.details = serde_json::to_value(details).unwrap_or_default();
        }
        self.events.record(event);
    }

    /// `/authorize` refused a login (`f`, stage `authorize`). The client
    /// id is kept only if the catalog knows it: the query is anyone's.
    pub(super) fn log_authorize_failure(&self, query: &str, error: &OAuthError, from: IpAddr) {
        let client = Params::parse(query)
            .ok()
            .and_then(|p| p.get("client_id").and_then(|id| self.client(id)));
        self.log_refusal(LoginStage::Authorize, error, from, client.as_deref());
    }

    /// `/login/callback` was refused before its login was known (no
    /// `state`, an unknown or expired one, another browser's): `f`, stage
    /// `callback`, with no app or connection (the query is anyone's).
    pub(super) fn log_callback_refused(&self, error: &OAuthError, from: IpAddr) {
        self.log_refusal(LoginStage::Callback, error, from, None);
    }

    /// A login refused at `stage` before it reached a connection: `f`.
    fn log_refusal(
        &self,
        stage: LoginStage,
        error: &OAuthError,
        from: IpAddr,
        client: Option<&crate::model::Client>,
    ) {
        let mut event = self.events.event(
            EventType::Failure,
            self.clock.now(),
            error.description.clone(),
        );
        event.ip = Some(from.to_string());
        if let Some(client) = client {
            event.client_id = Some(client.client_id.clone());
            event.client_name = Some(client.name.clone());
        }
        let details = FailureDetails {
            stage,
            error: error.code.as_str(),
            reason: &error.description,
            mapper_error: None,
        };
        event.details = serde_json::to_value(details).unwrap_or_default();
        self.events.record(event);
    }

    /// `/oauth/token` answered `status` (and, when it failed, `body`'s
    /// `error_description`): `seacft`/`feacft` for codes,
    /// `seccft`/`feccft` for client credentials. Other grants are not
    /// logged. The client id is kept only if the catalog knows it.
    pub(super) fn log_token(
        &self,
        request: super::token::TokenEvent,
        status: u16,
        body: &str,
        from: IpAddr,
    ) {
        use crate::model::GrantType;
        let ok = status == 200;
        let kind = match (request.grant, ok) {
            (Some(GrantType::AuthorizationCode), true) => EventType::CodeExchange,
            (Some(GrantType::AuthorizationCode), false) => EventType::CodeExchangeFailure,
            (Some(GrantType::ClientCredentials), true) => EventType::ClientCredentials,
            (Some(GrantType::ClientCredentials), false) => EventType::ClientCredentialsFailure,
            (Some(GrantType::RefreshToken) | None, _) => return,
        };
        let description = if ok {
            "Token issued".to_owned()
        } else {
            #[derive(serde::Deserialize)]
            struct ErrorBody {
                error: Option<String>,
                error_description: Option<String>,
            }
            let e: Option<ErrorBody> = serde_json::from_str(body).ok();
            e.and_then(|e| e.error_description.or(e.error))
                .unwrap_or_else(|| format!("status {status}"))
        };
        let mut event = self.events.event(kind, self.clock.now(), description);
        event.ip = Some(from.to_string());
        if let Some(client) = request.client_id.and_then(|id| self.client(&id)) {
            event.client_id = Some(client.client_id.clone());
            event.client_name = Some(client.name.clone());
        }
        self.events.record(event);
    }

    /// A management write (`sapi`, or `fapi` when it failed): who, which
    /// method and path, the status; never the body.
    pub(crate) fn log_api_write(
        &self,
        method: &http::Method,
        path: &str,
        caller: Option<&str>,
        status: u16,
        from: IpAddr,
    ) {
        let kind = if (200..300).contains(&status) {
            EventType::ApiSuccess
        } else {
            EventType::ApiFailure
        };
        let path = path.split('?').next().unwrap_or_default();
        // The path is the caller's, authenticated or not: cut, so a long
        // one cannot fill the log.
        let mut end = path.len().min(MAX_LOGGED_PATH);
        while !path.is_char_boundary(end) {
            end -= 1;
        }
        let path = &path[..end];
        let description = format!("{method} /api/v2/{path}");
        let mut event = self.events.event(kind, self.clock.now(), description);
        event.ip = Some(from.to_string());
        if let Some(caller) = caller.filter(|c| *c != "admin") {
            event.client_id = Some(caller.to_owned());
            event.client_name = self.client(caller).map(|c| c.name.clone());
        }
        let details = ApiDetails {
            method: method.as_str(),
            path: format!("/api/v2/{path}"),
            target: path.split('/').nth(1).filter(|s| !s.is_empty()),
            caller,
            status,
        };
        event.details = serde_json::to_value(details).unwrap_or_default();
        self.events.record(event);
    }
}
