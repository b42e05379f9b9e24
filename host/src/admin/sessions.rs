//! A user's sessions and refresh tokens, in Auth0's shapes: list and
//! revoke (`/api/v2/users/{id}/sessions`, `/api/v2/sessions/{id}`,
//! `/api/v2/users/{id}/refresh-tokens`, `/api/v2/refresh-tokens/{id}`).
//! Times are seconds since the epoch, as elsewhere in this API.
//!
//! Ending a session tells its apps (back-channel logout); revoking a
//! refresh token revokes its family and the access tokens issued from it.
//! A refresh token's id is its family's: it stays the same across
//! rotations, so it names the grant an operator sees and revokes.

use http::Method;
use serde::Serialize;

use super::{ApiError, ApiReply, ApiRequest, method_not_allowed};
use crate::broker::Broker;
use crate::store::{RefreshGrant, Session};

/// A session as the API shows it.
#[derive(Debug, Serialize)]
struct SessionJson<'a> {
    id: &'a str,
    user_id: &'a str,
    created_at: u64,
    updated_at: u64,
    /// The newest authentication at a provider.
    authenticated_at: u64,
    last_interacted_at: u64,
    idle_expires_at: u64,
    expires_at: u64,
    clients: Vec<ClientRef<'a>>,
    authentication: Authentication<'a>,
}

#[derive(Debug, Serialize)]
struct ClientRef<'a> {
    client_id: &'a str,
}

#[derive(Debug, Serialize)]
struct Authentication<'a> {
    methods: Vec<AuthMethod<'a>>,
}

/// One authentication: Auth0 calls a login at a provider `federated`;
/// Waypass adds the connection.
#[derive(Debug, Serialize)]
struct AuthMethod<'a> {
    name: &'static str,
    connection: &'a str,
    timestamp: u64,
}

impl<'a> SessionJson<'a> {
    fn of(s: &'a Session) -> Self {
        Self {
            id: &s.id,
            user_id: &s.user_id,
            created_at: s.created_at,
            updated_at: s.last_active,
            authenticated_at: s.logins.iter().map(|l| l.auth_time).max().unwrap_or(0),
            last_interacted_at: s.last_active,
            idle_expires_at: s.idle_expires_at,
            expires_at: s.expires_at,
            clients: s
                .clients
                .iter()
                .map(|c| ClientRef { client_id: c })
                .collect(),
            authentication: Authentication {
                methods: s
                    .logins
                    .iter()
                    .map(|l| AuthMethod {
                        name: "federated",
                        connection: &l.connection,
                        timestamp: l.auth_time,
                    })
                    .collect(),
            },
        }
    }
}

/// A refresh token (its family) as the API shows it.
#[derive(Debug, Serialize)]
struct RefreshTokenJson<'a> {
    id: &'a str,
    user_id: &'a str,
    client_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    session_id: Option<&'a str>,
    created_at: u64,
    last_exchanged_at: u64,
    idle_expires_at: u64,
    expires_at: u64,
    /// Every refresh token Waypass issues rotates.
    rotating: bool,
    resource_servers: Vec<Granted<'a>>,
}

/// What a refresh token grants access to: an API, or (without one)
/// `/userinfo`.
#[derive(Debug, Serialize)]
struct Granted<'a> {
    audience: String,
    scopes: Vec<&'a str>,
}

impl Broker {
    fn refresh_json<'a>(&self, g: &'a RefreshGrant) -> RefreshTokenJson<'a> {
        RefreshTokenJson {
            id: &g.family_id,
            user_id: &g.user_id,
            client_id: &g.client_id,
            session_id: g.session_id.as_deref(),
            created_at: g.created_at,
            last_exchanged_at: g.issued_at,
            idle_expires_at: g.idle_expires_at,
            expires_at: g.expires_at,
            rotating: true,
            resource_servers: vec![Granted {
                audience: g
                    .audience
                    .clone()
                    .unwrap_or_else(|| format!("{}/userinfo", self.issuer())),
                scopes: g.scope.split(' ').filter(|s| !s.is_empty()).collect(),
            }],
        }
    }

    /// `seg` is the whole path: `users/{id}/sessions`, `sessions/{id}`,
    /// `users/{id}/refresh-tokens` or `refresh-tokens/{id}`.
    pub(super) async fn sessions_api(
        &self,
        req: &ApiRequest<'_>,
        seg: &[&str],
    ) -> Result<ApiReply, ApiError> {
        let now = self.clock.now();
        match (req.method, seg) {
            (&Method::GET, ["users", id, "sessions"]) => {
                self.known_user(id).await?;
                let sessions = self.store.sessions_of_user(id, now).await?;
                let list: Vec<SessionJson<'_>> = sessions.iter().map(SessionJson::of).collect();
                json(200, &serde_json::json!({ "sessions": list }))
            }
            (&Method::DELETE, ["users", id, "sessions"]) => {
                self.known_user(id).await?;
                let ended = self
                    .end_sessions_of_user(id, "revoked through the management API")
                    .await?;
                tracing::info!(user_id = %id, ended, by = %req.caller.id, "sessions revoked");
                Ok(ApiReply::no_content())
            }
            (&Method::GET, ["sessions", id]) => {
                let session = self
                    .store
                    .session(id, now)
                    .await?
                    .ok_or_else(|| ApiError::not_found(format!("session `{id}`")))?;
                json(200, &SessionJson::of(&session))
            }
            (&Method::DELETE, ["sessions", id]) => {
                if !self
                    .end_session(id, "revoked through the management API")
                    .await?
                {
                    return Err(ApiError::not_found(format!("session `{id}`")));
                }
                Ok(ApiReply::no_content())
            }
            (&Method::GET, ["users", id, "refresh-tokens"]) => {
                self.known_user(id).await?;
                let tokens = self.store.refresh_tokens_of_user(id, now).await?;
                let list: Vec<RefreshTokenJson<'_>> =
                    tokens.iter().map(|g| self.refresh_json(g)).collect();
                json(200, &serde_json::json!({ "tokens": list }))
            }
            (&Method::DELETE, ["users", id, "refresh-tokens"]) => {
                self.known_user(id).await?;
                let tokens = self.store.refresh_tokens_of_user(id, now).await?;
                for family in &tokens {
                    self.store
                        .delete_access_tokens_of_family(&family.family_id)
                        .await?;
                }
                let revoked = self.store.delete_refresh_tokens_of_user(id).await?;
                tracing::info!(user_id = %id, revoked, by = %req.caller.id, "refresh tokens revoked");
                Ok(ApiReply::no_content())
            }
            (&Method::GET, ["refresh-tokens", id]) => {
                let token = self
                    .store
                    .refresh_family(id, now)
                    .await?
                    .ok_or_else(|| ApiError::not_found(format!("refresh token `{id}`")))?;
                json(200, &self.refresh_json(&token))
            }
            (&Method::DELETE, ["refresh-tokens", id]) => {
                let revoked = self.store.revoke_refresh_family(id).await?;
                if revoked == 0 {
                    return Err(ApiError::not_found(format!("refresh token `{id}`")));
                }
                self.store.delete_access_tokens_of_family(id).await?;
                tracing::info!(family = %id, by = %req.caller.id, "refresh token revoked");
                Ok(ApiReply::no_content())
            }
            (_, [_, _, "sessions" | "refresh-tokens"] | ["sessions" | "refresh-tokens", _]) => {
                Err(method_not_allowed())
            }
            _ => Err(ApiError::not_found(format!("/api/v2/{}", req.path))),
        }
    }

    /// 404 for a user nobody knows.
    async fn known_user(&self, id: &str) -> Result<(), ApiError> {
        match self.store.get_user(id).await? {
            Some(_) => Ok(()),
            None => Err(ApiError::not_found(format!("user `{id}`"))),
        }
    }
}

fn json(status: u16, value: &impl Serialize) -> Result<ApiReply, ApiError> {
    let body = serde_json::to_string(value)
        .map_err(|e| ApiError::new(500, format!("the answer could not be encoded: {e}")))?;
    Ok(ApiReply { status, body })
}
