//! The management API under `/api/v2`: connections, clients, mappers,
//! users and post-login Actions, in Auth0's shapes where Auth0 has them.
//!
//! Every call needs a Bearer token: the bootstrap admin token
//! (`WAYPASS_ADMIN_TOKEN`, all scopes) or an access token from the
//! `client_credentials` grant, limited to its scopes (`read:X` / `write:X`
//! for connections, clients, mappers, users, actions) that its client still holds:
//! a token dies with its client, with its client's secret (rotation revokes
//! it) and loses a scope the client loses. Setting a client's scopes needs
//! `write:client_grants` as well, and grants at most what the caller holds.
//! 401 means no valid token, 403 a valid token without the scope. Errors
//! are Auth0's `{statusCode, error, message, errorCode}`.

mod actions;
mod branding;
mod clients;
mod connections;
pub mod console;
mod keys;
pub mod listing;
mod logs;
mod mappers;
mod resource_servers;
mod rules;
mod sessions;
mod users;
pub mod watch;

use bytes::Bytes;
use http::Method;
use serde_json::Value;

use crate::broker::Broker;
use crate::secret::SecretHash;
use crate::store::AccessGrant;

/// Reads `/metrics` on the main listener.
pub const READ_METRICS: &str = "read:metrics";
/// Reads `/api/v2/logs` (Auth0's scope).
pub const READ_LOGS: &str = "read:logs";

/// Reads the provider's tokens in users' `identities` (Auth0's scope).
pub const READ_USER_IDP_TOKENS: &str = "read:user_idp_tokens";

/// Every management scope; the admin token has them all.
pub const SCOPES: [&str; 31] = [
    "read:connections",
    "write:connections",
    "read:clients",
    "write:clients",
    "read:mappers",
    "write:mappers",
    "read:users",
    "write:users",
    "read:actions",
    "write:actions",
    WRITE_EGRESS,
    clients::GRANT_SCOPE,
    READ_METRICS,
    READ_LOGS,
    keys::READ_SIGNING_KEYS,
    keys::CREATE_SIGNING_KEYS,
    keys::UPDATE_SIGNING_KEYS,
    "read:sessions",
    "write:sessions",
    "read:refresh_tokens",
    "write:refresh_tokens",
    "read:resource_servers",
    "write:resource_servers",
    branding::READ_BRANDING,
    branding::UPDATE_BRANDING,
    branding::DELETE_BRANDING,
    READ_USER_IDP_TOKENS,
    "read:rules",
    "create:rules",
    "update:rules",
    "delete:rules",
];

/// Lets a connection written through the API reach private networks
/// (`allow_private_networks`, IP-literal or private-name hosts): an admin's
/// grant on top of `write:connections`, since with it `try` reads what any
/// internal service answers. The configuration file needs no scope.
pub const WRITE_EGRESS: &str = "write:egress";

/// Largest JSON body accepted.
pub const MAX_JSON_BYTES: usize = 1 << 20;
/// Largest component accepted by `PUT /api/v2/mappers/{name}`: Python and
/// JavaScript components are 12–20 MiB.
pub const MAX_MAPPER_BYTES: usize = 64 << 20;

/// An API answer.
#[derive(Debug)]
pub struct ApiReply {
    pub status: u16,
    /// JSON, or empty for 204.
    pub body: String,
}

impl ApiReply {
    fn json(status: u16, value: Value) -> Self {
        Self {
            status,
            body: value.to_string(),
        }
    }

    fn no_content() -> Self {
        Self {
            status: 204,
            body: String::new(),
        }
    }
}

/// An API error: status and message (also what `register_mapper` fails with).
#[derive(Debug)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
    /// Auth0's machine-readable `errorCode`; `None` derives it from the
    /// status ([`ApiError::error_code`]).
    pub code: Option<&'static str>,
}

impl ApiError {
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            code: None,
        }
    }

    /// The same error with Auth0's `errorCode` `code`.
    pub fn with_code(self, code: &'static str) -> Self {
        Self {
            code: Some(code),
            ..self
        }
    }

    /// The `errorCode` the body carries: the one set, else Auth0's for the
    /// status.
    pub fn error_code(&self) -> &'static str {
        self.code.unwrap_or(match self.status {
            400 => "invalid_body",
            401 => "invalid_token",
            403 => "insufficient_scope",
            404 => "inexistent_resource",
            405 => "method_not_allowed",
            409 => "conflict",
            413 => "payload_too_large",
            415 => "unsupported_media_type",
            429 => "too_many_requests",
            503 => "service_unavailable",
            _ => "internal_error",
        })
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, message)
    }

    fn not_found(what: impl Into<String>) -> Self {
        let what = what.into();
        // Auth0's codes name the resource: `inexistent_connection`, …
        let code = match what.split(' ').next() {
            Some("connection") => "inexistent_connection",
            Some("client") => "inexistent_client",
            Some("user") => "inexistent_user",
            _ => "inexistent_resource",
        };
        Self::new(404, format!("{what} not found")).with_code(code)
    }

    /// The error as the API answers it.
    pub fn into_reply(self) -> ApiReply {
        let error = match self.status {
            400 => "Bad Request",
            401 => "Unauthorized",
            403 => "Forbidden",
            404 => "Not Found",
            405 => "Method Not Allowed",
            408 => "Request Timeout",
            409 => "Conflict",
            413 => "Payload Too Large",
            415 => "Unsupported Media Type",
            429 => "Too Many Requests",
            503 => "Service Unavailable",
            _ => "Internal Server Error",
        };
        let body = ErrorBody {
            status_code: self.status,
            error,
            message: &self.message,
            error_code: self.error_code(),
        };
        ApiReply::json(self.status, serde_json::to_value(body).unwrap_or_default())
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        match e {
            crate::store::StoreError::Conflict(what) => {
                Self::new(409, format!("{what} already exists"))
            }
            crate::store::StoreError::Missing(what) => {
                Self::new(400, format!("{what} does not exist"))
            }
            crate::store::StoreError::Backend(m) => {
                tracing::error!(error = %m, "store failure in the management API");
                Self::new(503, "the store is unavailable; try again")
            }
        }
    }
}

/// Auth0's error body.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct ErrorBody<'a> {
    status_code: u16,
    error: &'a str,
    message: &'a str,
    error_code: &'a str,
}

/// Who is calling, for `created_by` and logs.
#[derive(Debug, Clone)]
pub struct Caller {
    pub id: String,
    scopes: Vec<String>,
    /// The bootstrap admin token: the only caller that may grant
    /// admin-only scopes.
    admin: bool,
}

/// One API request, parsed by the HTTP layer.
pub struct ApiRequest<'a> {
    pub method: &'a Method,
    /// The path after `/api/v2/`.
    pub path: &'a str,
    pub query: &'a str,
    /// Who is calling, from [`Broker::api_authenticate`].
    pub caller: Caller,
    pub content_type: Option<&'a str>,
    pub body: Bytes,
}

impl Broker {
    /// Handles one `/api/v2/...` request.
    pub async fn api(&self, req: ApiRequest<'_>) -> ApiReply {
        match self.route(&req).await {
            Ok(reply) => reply,
            Err(e) => e.into_reply(),
        }
    }

    async fn route(&self, req: &ApiRequest<'_>) -> Result<ApiReply, ApiError> {
        let segments: Vec<String> = req
            .path
            .trim_end_matches('/')
            .split('/')
            .map(|s| {
                percent_decode(s)
                    .ok_or_else(|| ApiError::bad_request(format!("`{s}` is not valid in a path")))
            })
            .collect::<Result<_, _>>()?;
        let seg: Vec<&str> = segments.iter().map(String::as_str).collect();
        let resource = *seg.first().unwrap_or(&"");
        let write = !matches!(*req.method, Method::GET | Method::HEAD);
        // What a path is about decides its scope: a user's sessions and
        // refresh tokens are their own resources (Auth0's split too).
        let about = match (resource, seg.get(2).copied()) {
            ("users", Some("sessions")) | ("sessions", _) => "sessions",
            ("users", Some("refresh-tokens")) | ("refresh-tokens", _) => "refresh_tokens",
            ("resource-servers", _) => "resource_servers",
            ("branding", _) => "branding",
            ("rules", _) => "rules",
            ("connections" | "clients" | "mappers" | "users" | "actions" | "logs" | "keys", _) => {
                resource
            }
            _ => return Err(ApiError::not_found(format!("/api/v2/{}", req.path))),
        };
        let scope = match about {
            // Read only: the log is written by what happens, not by callers.
            "logs" if !write => READ_LOGS.to_owned(),
            "logs" => return Err(method_not_allowed()),
            "keys" => keys::scope(req.method, &seg[1..]).to_owned(),
            "branding" => branding::scope(req.method).to_owned(),
            "rules" => rules::scope(req.method).to_owned(),
            _ => format!("{}:{about}", if write { "write" } else { "read" }),
        };
        if !req.caller.has(&scope) {
            return Err(ApiError::new(
                403,
                format!("the token lacks the scope `{scope}`"),
            ));
        }
        match about {
            "connections" => self.connections_api(req, &seg[1..], &req.caller).await,
            "clients" => self.clients_api(req, &seg[1..]).await,
            "mappers" => self.mappers_api(req, &seg[1..], &req.caller).await,
            "actions" => self.actions_api(req, &seg[1..], &req.caller).await,
            "rules" => self.rules_api(req, &seg[1..]).await,
            "logs" => self.logs_api(req, &seg[1..]).await,
            "keys" => self.keys_api(req, &seg[1..]).await,
            "sessions" | "refresh_tokens" => self.sessions_api(req, &seg).await,
            "resource_servers" => self.resource_servers_api(req, &seg[1..]).await,
            "branding" => self.branding_api(req, &seg[1..]).await,
            _ => self.users_api(req, &seg[1..]).await,
        }
    }

    /// Checks the Bearer token: the admin token or a management token from
    /// `client_credentials`. Called before a request body is read, so nobody
    /// unauthenticated can make the server buffer an upload; the scope is
    /// checked once the path is known.
    pub async fn api_authenticate(&self, authorization: Option<&str>) -> Result<Caller, ApiError> {
        let token = authorization
            .and_then(crate::broker::oauth::bearer_token)
            .ok_or_else(|| ApiError::new(401, "a Bearer token is required"))?;
        if self.admin_token.is_some_and(|h| h.matches(token)) {
            return Ok(Caller {
                id: "admin".into(),
                scopes: SCOPES.iter().map(|s| s.to_string()).collect(),
                admin: true,
            });
        }
        let invalid = || ApiError::new(401, "the token is invalid or expired");
        let grant = self
            .store
            .get_access_token(SecretHash::of(token), self.clock.now())
            .await?
            .filter(AccessGrant::is_management)
            .ok_or_else(invalid)?;
        // The token acts for its client as the client is now: a deleted
        // client's tokens are dead, and a scope taken from the client is
        // taken from its tokens. (Rotation and deletion also delete the
        // client's tokens from the store, so a client re-created under the
        // same id inherits none.)
        let client = self.client(&grant.client_id).ok_or_else(invalid)?;
        Ok(Caller {
            id: grant.client_id,
            scopes: grant
                .scope
                .split(' ')
                .filter(|s| client.scopes.iter().any(|held| held == s))
                .map(str::to_owned)
                .collect(),
            admin: false,
        })
    }
}

impl Broker {
    /// After a catalog write: rebuilds this instance's catalog from the
    /// store, so the change is served here before the API answers (other
    /// instances follow the store's feed). The write is the truth: if the
    /// rebuild fails it is logged, not reported as the write failing (a
    /// retry would write twice), and the next check of the store retries.
    pub(crate) async fn catalog_changed(&self) {
        if let Err(e) = self.catalog.refresh().await {
            tracing::error!(error = %e, "the change is stored, but the catalog could not be rebuilt; retrying at the next check");
        }
    }
}

impl Caller {
    /// Whether the caller holds `scope`.
    pub fn has(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }

    /// Whether the caller is the bootstrap admin token.
    pub fn is_admin(&self) -> bool {
        self.admin
    }

    /// The console's caller for a session signed in with the bootstrap
    /// admin token: the admin, as the token is on the API.
    pub(crate) fn console_admin_token() -> Self {
        Self {
            id: "admin".into(),
            scopes: SCOPES.iter().map(|s| s.to_string()).collect(),
            admin: true,
        }
    }

    /// The console's caller for a user given the console role: every
    /// scope, but not the admin token's own power to grant admin-only
    /// scopes (those stay with whoever holds the token).
    pub(crate) fn console_user(user_id: &str) -> Self {
        Self {
            id: format!("console:{user_id}"),
            scopes: SCOPES.iter().map(|s| s.to_string()).collect(),
            admin: false,
        }
    }
}

/// Parses a JSON body, refusing other media types and oversize bodies.
fn json_body(req: &ApiRequest<'_>) -> Result<Value, ApiError> {
    if req.body.len() > MAX_JSON_BYTES {
        return Err(ApiError::new(
            413,
            format!("the body is over {MAX_JSON_BYTES} bytes"),
        ));
    }
    if !req
        .content_type
        .is_some_and(|c| c.starts_with("application/json"))
    {
        return Err(ApiError::new(415, "send the body as application/json"));
    }
    serde_json::from_slice(&req.body)
        .map_err(|e| ApiError::bad_request(format!("the body is not valid JSON: {e}")))
}

fn method_not_allowed() -> ApiError {
    ApiError::new(405, "method not allowed on this path")
}

/// Decodes `%XX` in a path segment (`form_urlencoded` would also turn `+`
/// into a space; paths keep `+`).
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_percent_decoded_keeping_plus() {
        assert_eq!(
            percent_decode("oauth2%7Cacme%7C1+2").as_deref(),
            Some("oauth2|acme|1+2")
        );
        assert_eq!(percent_decode("bad%zz"), None);
    }
}
