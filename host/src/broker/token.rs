//! The OpenID Connect provider side: `/oauth/token`, `/userinfo`, discovery.

use std::net::IpAddr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value, json};

use super::issue::{Grant, OFFLINE_ACCESS, TokenResponse, looks_like_jwt};
use super::limits::RetryAfter;
use super::oauth::{ErrorCode, OAuthError, Params, basic_credentials, bearer_token};
use super::{Broker, TOKEN_TTL};
use crate::keys::Alg;
use crate::mapper::Profile;
use crate::model::{Client, ClientAuthMethod, ClientType, GrantType};
use crate::secret::{SecretHash, ct_eq, pkce_challenge, pkce_value_is_valid};
use crate::store::{AccessGrant, User};

/// A JSON answer with its status and, for 401s, the challenge; for 429s,
/// the seconds to wait (`Retry-After`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonReply {
    pub status: u16,
    pub body: String,
    pub www_authenticate: Option<String>,
    pub retry_after: Option<u64>,
}

impl JsonReply {
    pub(super) fn ok(body: Value) -> Self {
        Self {
            status: 200,
            body: body.to_string(),
            www_authenticate: None,
            retry_after: None,
        }
    }

    /// An OAuth error as RFC 6749 §5.2 answers it.
    pub fn error(e: &OAuthError, challenge: Option<String>) -> Self {
        Self {
            status: e.code.status(),
            body: e.to_json(),
            www_authenticate: challenge,
            retry_after: None,
        }
    }

    /// `429 Too Many Requests` (RFC 6585 §4) with `Retry-After`. RFC 6749
    /// has no error code for it; `temporarily_unavailable` says "try later".
    pub(super) fn too_many(wait: RetryAfter, what: &str) -> Self {
        let e = OAuthError::new(
            ErrorCode::TemporarilyUnavailable,
            format!("{what}; try again in {} s", wait.seconds()),
        );
        Self {
            status: 429,
            body: e.to_json(),
            www_authenticate: None,
            retry_after: Some(wait.seconds()),
        }
    }

    /// A 401 for a request that carried no credentials: RFC 6750 §3.1 says
    /// it should hold no error code or other error information, only the
    /// challenge naming the scheme and realm.
    fn credentials_required(challenge: &str) -> Self {
        Self {
            status: 401,
            body: "{}".to_owned(),
            www_authenticate: Some(challenge.to_owned()),
            retry_after: None,
        }
    }
}

/// Management tokens (`client_credentials`) act for a client, not a person.
/// They share the store's [`AccessGrant`] with user tokens and are told apart
/// by an empty `user_id`; these keep that convention in one place.
impl AccessGrant {
    /// A grant for a management token of `client_id`.
    fn management(client_id: &str, scope: String, expires_at: u64) -> Self {
        Self {
            user_id: String::new(),
            client_id: client_id.to_owned(),
            scope,
            claims: Default::default(),
            family_id: None,
            expires_at,
        }
    }

    /// Whether the token is a management token, acting for its client alone.
    pub(crate) fn is_management(&self) -> bool {
        self.user_id.is_empty()
    }

    /// The user the token acts for; `None` for a management token.
    pub(crate) fn user(&self) -> Option<&str> {
        (!self.is_management()).then_some(self.user_id.as_str())
    }
}

/// What a token request's log event says of it: its grant (if known)
/// and the registered client it claimed to be.
#[derive(Debug)]
pub(super) struct TokenEvent {
    pub(super) grant: Option<GrantType>,
    pub(super) client_id: Option<String>,
}

impl Broker {
    /// Handles `POST /oauth/token` with its form body and Authorization
    /// header, from the client address `from`.
    ///
    /// Failed client authentications are counted per address and per
    /// (registered) client id; past their rate limits the request is
    /// answered `429` before the credentials are even checked, so neither
    /// one address nor many can keep guessing a client's secret.
    pub async fn token(&self, body: &str, authorization: Option<&str>, from: IpAddr) -> JsonReply {
        self.token_with_event(body, authorization, from).await.0
    }

    /// [`Broker::token`], and what its log event ([`Broker::log_token`])
    /// says of the request, from the same parse of the form and the Basic
    /// header (parsing them again for the event cost a login ~25 000
    /// instructions).
    pub(super) async fn token_with_event(
        &self,
        body: &str,
        authorization: Option<&str>,
        from: IpAddr,
    ) -> (JsonReply, TokenEvent) {
        let params = Params::parse(body);
        let claimed = params
            .as_ref()
            .ok()
            .and_then(|p| self.claimed_client(p, authorization));
        let event = TokenEvent {
            grant: params
                .as_ref()
                .ok()
                .and_then(|p| GrantType::parse(p.get("grant_type")?).ok()),
            client_id: claimed.clone(),
        };
        let reply = self
            .answer_token(params, claimed, authorization, from)
            .await;
        (reply, event)
    }

    async fn answer_token(
        &self,
        params: Result<Params, OAuthError>,
        claimed: Option<String>,
        authorization: Option<&str>,
        from: IpAddr,
    ) -> JsonReply {
        if let Err(wait) = self.rate.token_failures_allow(from, claimed.as_deref()) {
            return JsonReply::too_many(wait, "too many failed client authentications");
        }
        let result = async {
            let params = params?;
            let client = self
                .authenticate_client(&params, authorization)
                .await
                .inspect_err(|e| {
                    if e.code == ErrorCode::InvalidClient {
                        self.rate.token_failure(from, claimed.as_deref());
                    }
                })?;
            let grant = params.require("grant_type")?;
            let known = GrantType::parse(grant).map_err(|_| {
                OAuthError::new(
                    ErrorCode::UnsupportedGrantType,
                    format!("grant_type `{grant}` is not supported; use authorization_code, refresh_token or client_credentials"),
                )
            })?;
            // RFC 6749 §5.2: a grant the app is not allowed is unauthorized_client.
            if !client.allows_grant(known) {
                return Err(OAuthError::new(
                    ErrorCode::UnauthorizedClient,
                    format!(
                        "this {} app may not use the {grant} grant (its app_type and grant_types)",
                        client.app_type.as_str()
                    ),
                ));
            }
            match known {
                GrantType::AuthorizationCode => self.redeem_code(&params, &client).await,
                GrantType::RefreshToken => self.refresh(&params, &client, from).await,
                GrantType::ClientCredentials => self.client_credentials(&params, &client).await,
            }
        }
        .await;
        match result {
            Ok(body) => JsonReply::ok(body),
            Err(e) => {
                // RFC 6749 §5.2: a 401 for a client that sent an
                // Authorization header names the scheme and realm.
                let challenge = (e.code == ErrorCode::InvalidClient)
                    .then(|| {
                        if authorization.is_some() {
                            "Basic realm=\"waypass\""
                        } else {
                            "Basic"
                        }
                    })
                    .map(str::to_owned);
                JsonReply::error(&e, challenge)
            }
        }
    }

    /// The registered client a token request claims to be (Basic or form
    /// `client_id`), for the rate limits: ids nobody registered are not
    /// tracked, so they cannot grow the limiter's tables.
    pub(super) fn claimed_client(
        &self,
        params: &Params,
        authorization: Option<&str>,
    ) -> Option<String> {
        let id = match authorization.and_then(basic_credentials) {
            Some(encoded) => decode_basic(encoded)?.0,
            None => params.get("client_id")?.to_owned(),
        };
        self.client(&id).map(|c| c.client_id.clone())
    }

    pub(super) async fn authenticate_client(
        &self,
        params: &Params,
        authorization: Option<&str>,
    ) -> Result<std::sync::Arc<Client>, OAuthError> {
        let invalid = |d: &str| OAuthError::new(ErrorCode::InvalidClient, d);
        let used = if authorization.and_then(basic_credentials).is_some() {
            ClientAuthMethod::ClientSecretBasic
        } else if params.get("client_secret").is_some() {
            ClientAuthMethod::ClientSecretPost
        } else {
            ClientAuthMethod::None
        };
        let (client_id, secret) = match authorization.and_then(basic_credentials) {
            Some(encoded) => {
                if params.get("client_secret").is_some() {
                    return Err(OAuthError::new(
                        ErrorCode::InvalidRequest,
                        "use one client authentication method, not Basic and client_secret both",
                    ));
                }
                let (id, secret) =
                    decode_basic(encoded).ok_or_else(|| invalid("malformed Basic credentials"))?;
                if params.get("client_id").is_some_and(|form_id| form_id != id) {
                    return Err(invalid("client_id does not match the Basic credentials"));
                }
                (id, Some(secret))
            }
            None => (
                params.require("client_id")?.to_owned(),
                params.get("client_secret").map(str::to_owned),
            ),
        };
        let client = self
            .client(&client_id)
            .ok_or_else(|| invalid("unknown client or bad credentials"))?;
        let authenticated = match (client.client_type, &client.secret_hash, secret) {
            (ClientType::Confidential, Some(hash), Some(secret)) => {
                self.client_secrets
                    .verify(&client.client_id, hash, &secret)
                    .await
            }
            (ClientType::Public, None, None) => true,
            _ => false,
        };
        if !authenticated {
            return Err(invalid("unknown client or bad credentials"));
        }
        // The app's `token_endpoint_auth_method`, when set, is the only
        // one it may use (RFC 7591 §2; RFC 6749 §5.2: invalid_client).
        // Checked once the secret is, so it tells nothing to a guesser.
        if let Some(required) = client.token_endpoint_auth_method
            && client.client_type == ClientType::Confidential
            && required != used
        {
            return Err(invalid(&format!(
                "this app authenticates with {}, not {}",
                required.as_str(),
                used.as_str()
            )));
        }
        Ok(client)
    }

    async fn redeem_code(&self, params: &Params, client: &Client) -> Result<Value, OAuthError> {
        let code = params.require("code")?;
        let invalid_grant = |d: &str| OAuthError::new(ErrorCode::InvalidGrant, d);
        let now = self.clock.now();
        // Taken, so a second redemption of the same code fails (RFC 6749
        // §4.1.2); its user read with it (one store call, not two), and
        // refused below only after the code's own checks.
        let (mut grant, user) = self
            .store
            .take_code_with_user(SecretHash::of(code), now)
            .await
            .map_err(|e| store_unavailable(&e))?
            .ok_or_else(|| {
                invalid_grant("the authorization code is invalid, expired or already used")
            })?;
        if let Some(correlation_id) = &grant.correlation_id {
            crate::telemetry::note_login(correlation_id);
        }
        if grant.client_id != client.client_id {
            return Err(invalid_grant(
                "the authorization code was issued to another client",
            ));
        }
        if let Some(sealed) = grant.claims.sealed.take() {
            // Sealed with this very code at the callback; a grant that
            // does not open was not (the store is not trusted with them).
            grant.claims.transient = super::sealed::unseal(code, &sealed).ok_or_else(|| {
                tracing::error!("a code's sealed claims do not open with the code");
                OAuthError::new(ErrorCode::ServerError, "the login's claims are unreadable")
            })?;
        }
        if params.get("redirect_uri") != Some(grant.redirect_uri.as_str()) {
            return Err(invalid_grant(
                "redirect_uri does not match the one used at /authorize",
            ));
        }
        match (&grant.code_challenge, params.get("code_verifier")) {
            (Some(challenge), Some(verifier))
                if pkce_value_is_valid(verifier) && ct_eq(&pkce_challenge(verifier), challenge) => {
            }
            (Some(_), _) => {
                return Err(invalid_grant(
                    "the PKCE code_verifier does not match the code_challenge",
                ));
            }
            (None, Some(_)) => {
                return Err(invalid_grant(
                    "a code_verifier was sent but no code_challenge was used",
                ));
            }
            (None, None) => {}
        }
        let user = user.ok_or_else(|| invalid_grant("the user no longer exists"))?;
        let api = match &grant.audience {
            Some(audience) => Some(self.resource_server(audience).ok_or_else(|| {
                invalid_grant("the API the code was issued for no longer exists")
            })?),
            None => None,
        };
        // A refresh token for an app that asked for offline_access, may use
        // the grant, and (with an API) whose API allows it; otherwise
        // offline_access is not granted, and the scope says so (RFC 6749
        // §3.3).
        let offline = has_scope(&grant.scope, OFFLINE_ACCESS)
            && client.allows_grant(GrantType::RefreshToken)
            && api.as_ref().is_none_or(|a| a.allow_offline_access);
        let scope = if offline {
            grant.scope.clone()
        } else {
            without_scope(&grant.scope, OFFLINE_ACCESS)
        };
        let family_id = offline.then(|| format!("rtf_{}", self.random.identifier(24)));
        let facts = Grant {
            claims: Some(&grant.claims),
            client,
            user: &user,
            scope: &scope,
            nonce: grant.nonce.as_deref(),
            auth_time: grant.auth_time,
            session_id: grant.session_id.as_deref(),
            api: api.as_deref(),
            family_id: family_id.as_deref(),
            id_token: true,
        };
        let mut response = self.issue_tokens(&facts, now).await?;
        if let Some(family_id) = &family_id {
            response.refresh_token = Some(
                self.start_refresh_family(&facts, family_id.clone(), now)
                    .await?,
            );
        }
        token_response(&response)
    }

    /// The `client_credentials` grant (RFC 6749 §4.4): a management token
    /// carrying the requested subset of the client's scopes.
    async fn client_credentials(
        &self,
        params: &Params,
        client: &Client,
    ) -> Result<Value, OAuthError> {
        if client.client_type != ClientType::Confidential || client.scopes.is_empty() {
            return Err(OAuthError::new(
                ErrorCode::UnauthorizedClient,
                "this client may not use client_credentials (it has no management scopes)",
            ));
        }
        // Auth0's SDKs name the API the token is for: the management API's
        // identifier, `<issuer>/api/v2/`, the only API Waypass issues
        // tokens for. Another audience is refused as Auth0 refuses one it
        // does not know.
        if let Some(audience) = params.get("audience")
            && audience != self.management_audience()
        {
            return Err(OAuthError::new(
                ErrorCode::AccessDenied,
                format!(
                    "Service not found: {audience} (the management API is {})",
                    self.management_audience()
                ),
            ));
        }
        let scope = match params.get("scope") {
            None => client.scopes.join(" "),
            Some(requested) => {
                if let Some(extra) = requested
                    .split(' ')
                    .find(|s| !client.scopes.iter().any(|c| c == s))
                {
                    return Err(OAuthError::new(
                        ErrorCode::InvalidScope,
                        format!("scope `{extra}` is not granted to this client"),
                    ));
                }
                requested.to_owned()
            }
        };
        let now = self.clock.now();
        let expires_in = TOKEN_TTL.as_secs();
        let token = self.random.token();
        let grant = AccessGrant::management(&client.client_id, scope.clone(), now + expires_in);
        self.store
            .put_access_token(SecretHash::of(&token), grant)
            .await
            .map_err(|e| store_unavailable(&e))?;
        // The secret may have been rotated, or the client deleted, since
        // this request authenticated; that change revokes the client's
        // stored tokens *after* putting itself in service, so a token stored
        // after the revocation is seen here and never handed out.
        if self
            .client(&client.client_id)
            .is_none_or(|current| current.secret_hash != client.secret_hash)
        {
            return Err(OAuthError::new(
                ErrorCode::InvalidClient,
                "unknown client or bad credentials",
            ));
        }
        Ok(
            json!({"access_token": token, "token_type": "Bearer", "expires_in": expires_in, "scope": scope}),
        )
    }

    /// The management API's identifier, the `audience` of its tokens:
    /// `<issuer>/api/v2/`, as Auth0 names it.
    pub fn management_audience(&self) -> String {
        format!("{}/api/v2/", self.issuer)
    }

    /// Handles `/userinfo` (GET or POST) with the request's Authorization header.
    pub async fn userinfo(&self, authorization: Option<&str>) -> JsonReply {
        let challenge = |e: &OAuthError| {
            format!(
                "Bearer realm=\"waypass\", error=\"{}\", error_description=\"{}\"",
                e.code, e.description
            )
        };
        let Some(token) = authorization.and_then(bearer_token) else {
            return JsonReply::credentials_required("Bearer realm=\"waypass\"");
        };
        if looks_like_jwt(token) {
            return self.userinfo_from_jwt(token, challenge).await;
        }
        let now = self.clock.now();
        let found = match self
            .store
            .get_access_token(SecretHash::of(token), now)
            .await
        {
            Ok(found) => found,
            Err(e) => return JsonReply::error(&store_unavailable(&e), None),
        };
        // A management token stands for no user: it has no userinfo.
        let user = match found.as_ref().and_then(|g| g.user().map(|u| (u, g))) {
            Some((user_id, grant)) => self
                .store
                .get_user(user_id)
                .await
                .map(|u| u.map(|u| (u, grant))),
            None => Ok(None),
        };
        // A user the app's connections no longer serve is as if absent.
        let user = match user {
            Ok(Some((user, grant))) => match self.serves_user(&user, &grant.client_id).await {
                Ok(true) => Ok(Some((user, grant))),
                Ok(false) => Ok(None),
                Err(e) => Err(e),
            },
            other => other,
        };
        match user {
            // Nor does a token of an app its user's connection no longer
            // serves (disabled for the app, or deleted): what was issued
            // under it is revoked.
            Ok(Some((user, grant))) => {
                let mut claims = Map::new();
                claims.insert("sub".into(), json!(user.user_id));
                profile_claims(&user, &grant.scope, &mut claims);
                JsonReply::ok(Value::Object(claims))
            }
            Ok(_) => {
                let e = OAuthError::new(
                    ErrorCode::InvalidToken,
                    "the access token is invalid or expired",
                );
                let c = challenge(&e);
                JsonReply::error(&e, Some(c))
            }
            Err(e) => JsonReply::error(&store_unavailable(&e), None),
        }
    }

    /// `/userinfo` with a JWT access token (RFC 9068): ours, unexpired,
    /// and for `<issuer>/userinfo` among its audiences; an API's token
    /// without `openid` is for that API alone.
    async fn userinfo_from_jwt(
        &self,
        token: &str,
        challenge: impl Fn(&OAuthError) -> String,
    ) -> JsonReply {
        let refused = |why: &str| {
            let e = OAuthError::new(ErrorCode::InvalidToken, why);
            let c = challenge(&e);
            JsonReply::error(&e, Some(c))
        };
        let Some(claims) = self.verified_access_token(token) else {
            return refused("the access token is invalid or expired");
        };
        if !claims.aud.contains(&self.userinfo_audience()) {
            return refused("the access token is not for /userinfo (its audience is an API)");
        }
        let user = match self.store.get_user(&claims.sub).await {
            Ok(Some(user)) => match self.serves_user(&user, &claims.client_id).await {
                Ok(true) => Ok(Some(user)),
                Ok(false) => Ok(None),
                Err(e) => Err(e),
            },
            other => other,
        };
        match user {
            Ok(Some(user)) => {
                let mut out = Map::new();
                out.insert("sub".into(), json!(user.user_id));
                profile_claims(&user, &claims.scope, &mut out);
                JsonReply::ok(Value::Object(out))
            }
            Ok(_) => refused("the access token is invalid or expired"),
            Err(e) => JsonReply::error(&store_unavailable(&e), None),
        }
    }
}

/// The OpenID Provider metadata (OpenID Connect Discovery 1.0 §3, RFC 8414
/// §2, RP-Initiated Logout 1.0 §2.1, Back-Channel Logout 1.0 §2.1) of the
/// broker at `issuer`; built once, in [`Broker::new`].
pub(super) fn discovery_document(issuer: &str) -> Value {
    let i = issuer;
    json!({
        "issuer": i,
        "authorization_endpoint": format!("{i}/authorize"),
        "token_endpoint": format!("{i}/oauth/token"),
        "userinfo_endpoint": format!("{i}/userinfo"),
        "jwks_uri": format!("{i}/.well-known/jwks.json"),
        "end_session_endpoint": format!("{i}/oidc/logout"),
        "revocation_endpoint": format!("{i}/oauth/revoke"),
        "introspection_endpoint": format!("{i}/oauth/introspect"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query", "form_post"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": Alg::ALL,
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "code_challenge_methods_supported": ["S256"],
        "prompt_values_supported": ["none", "login", "consent", "select_account"],
        "scopes_supported": ["openid", "profile", "email", "phone", "groups", "offline_access"],
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "sid", "email",
            "email_verified", "name", "given_name", "family_name", "nickname", "picture",
            "preferred_username", "phone_number", "phone_number_verified", "groups"],
        "backchannel_logout_supported": true,
        "backchannel_logout_session_supported": true,
    })
}

/// Whether space-separated `scope` holds `wanted`.
pub(super) fn has_scope(scope: &str, wanted: &str) -> bool {
    scope.split(' ').any(|s| s == wanted)
}

/// `scope` without `dropped`.
fn without_scope(scope: &str, dropped: &str) -> String {
    scope
        .split(' ')
        .filter(|s| !s.is_empty() && *s != dropped)
        .collect::<Vec<_>>()
        .join(" ")
}

/// A token response as the endpoint answers it.
pub(super) fn token_response(response: &TokenResponse) -> Result<Value, OAuthError> {
    serde_json::to_value(response).map_err(|e| {
        tracing::error!(error = %e, "cannot encode a token response");
        OAuthError::new(
            ErrorCode::ServerError,
            "the token response could not be built",
        )
    })
}

/// Adds the profile's standard claims that `scope` grants (OIDC Core §5.4).
pub(super) fn profile_claims(user: &User, scope: &str, claims: &mut Map<String, Value>) {
    profile_claims_of(&user.profile, scope, claims);
}

/// [`profile_claims`] of a profile.
pub(super) fn profile_claims_of(p: &Profile, scope: &str, claims: &mut Map<String, Value>) {
    let scopes: Vec<&str> = scope.split(' ').collect();
    let mut put = |name: &str, value: Option<Value>| {
        if let Some(v) = value {
            claims.insert(name.to_owned(), v);
        }
    };
    if scopes.contains(&"email") {
        put("email", p.email.clone().map(Value::from));
        put("email_verified", p.email_verified.map(Value::from));
    }
    if scopes.contains(&"profile") {
        put("name", p.name.clone().map(Value::from));
        put("given_name", p.given_name.clone().map(Value::from));
        put("family_name", p.family_name.clone().map(Value::from));
        put("nickname", p.nickname.clone().map(Value::from));
        put("picture", p.picture.clone().map(Value::from));
        // Auth0's `username` root attribute, under its OIDC Core §5.1 name.
        put("preferred_username", p.extra.get("username").cloned());
    }
    // OIDC Core §5.4: the `phone` scope.
    if scopes.contains(&"phone") {
        put("phone_number", p.extra.get("phone_number").cloned());
        put(
            "phone_number_verified",
            p.extra.get("phone_verified").cloned(),
        );
    }
    // The provider's groups, to an app that asks for them (issue #12 §5).
    if scopes.contains(&"groups") {
        put("groups", p.extra.get("groups").cloned());
    }
}

fn decode_basic(encoded: &str) -> Option<(String, String)> {
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    let unescape = |s: &str| {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
    };
    Some((unescape(id)?, unescape(secret)?))
}

pub(super) fn store_unavailable(e: &crate::store::StoreError) -> OAuthError {
    tracing::error!(error = %e, "store unavailable");
    OAuthError::new(
        ErrorCode::TemporarilyUnavailable,
        "the login service is temporarily unavailable",
    )
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, OnceLock};

    use super::*;
    use crate::broker::{BrokerParts, Clock as _, SystemClock};
    use crate::catalog::Catalog;
    use crate::keys::KeySet;
    use crate::mapper::{Runtime, RuntimeConfig};
    use crate::secret::SystemRandomTokens;
    use crate::store::{MemoryStore, Store};
    use crate::upstream::Upstream;

    const USER_ID: &str = "oauth2|conn|ada";

    /// A broker with no apps or connections, and a store the test fills.
    fn broker() -> (Broker, Arc<MemoryStore>) {
        // RSA generation is slow in a debug build: one key set for all tests.
        static KEYS: OnceLock<Arc<KeySet>> = OnceLock::new();
        let keys = KEYS.get_or_init(|| Arc::new(KeySet::generate().expect("keys")));
        let store = Arc::new(MemoryStore::default());
        let runtime = Arc::new(Runtime::new(RuntimeConfig::default()).expect("runtime"));
        let broker = Broker::new(BrokerParts {
            issuer: "https://login.example.com".parse().expect("issuer"),
            catalog: Arc::new(Catalog::new(store.clone(), runtime.clone())),
            runtime,
            store: store.clone(),
            keys: keys.clone(),
            clock: Arc::new(SystemClock),
            random: Arc::new(SystemRandomTokens::default()),
            upstream: Upstream::default(),
            admin_token: None,
            limits: crate::broker::limits::Limits::default(),
        });
        (broker, store)
    }

    /// Stores an access token for `grant`, as the token endpoint would.
    async fn put_token(store: &MemoryStore, token: &str, grant: AccessGrant) {
        store
            .put_access_token(SecretHash::of(token), grant)
            .await
            .expect("store token");
    }

    fn expires() -> u64 {
        SystemClock.now() + 600
    }

    #[tokio::test]
    async fn userinfo_without_credentials_is_a_bare_challenge_with_no_error_code() {
        let (broker, _) = broker();
        for authorization in [None, Some("Basic YTpi"), Some("Bearer ")] {
            let reply = broker.userinfo(authorization).await;
            assert_eq!(reply.status, 401, "{authorization:?}");
            assert_eq!(
                reply.www_authenticate.as_deref(),
                Some("Bearer realm=\"waypass\""),
                "{authorization:?}"
            );
            assert!(!reply.body.contains("error"), "{}", reply.body);
        }
    }

    /// Serves connection `conn` for `app`: `/userinfo` answers only for a
    /// user whose connection still serves the token's app.
    async fn serve_conn_for_app(broker: &Broker, store: &MemoryStore) {
        let spec: crate::model::ConnectionSpec = serde_json::from_value(json!({
            "name": "conn",
            "enabled_clients": ["app"],
            "options": {"authorizationURL": "https://a.test/authorize",
                        "tokenURL": "https://a.test/token", "client_id": "c",
                        "mapper": "m"}
        }))
        .expect("spec");
        let record = crate::model::ConnectionRecord {
            id: "con_conn".into(),
            spec,
        };
        store
            .put_connection(&record.to_stored())
            .await
            .expect("put connection");
        broker.catalog().refresh().await.expect("catalog");
    }

    #[tokio::test]
    async fn userinfo_takes_the_bearer_scheme_in_any_case() {
        let (broker, store) = broker();
        serve_conn_for_app(&broker, &store).await;
        let profile: Profile = serde_json::from_value(json!({"user_id": "ada"})).expect("profile");
        store
            .record_login(USER_ID, "conn", profile, 0)
            .await
            .expect("record user");
        let grant = AccessGrant {
            claims: Default::default(),
            user_id: USER_ID.into(),
            client_id: "app".into(),
            scope: "openid".into(),
            family_id: None,
            expires_at: expires(),
        };
        put_token(&store, "user-token", grant).await;
        for authorization in [
            "Bearer user-token",
            "bearer user-token",
            "BEARER  user-token",
        ] {
            let reply = broker.userinfo(Some(authorization)).await;
            assert_eq!(reply.status, 200, "{authorization}: {}", reply.body);
            let claims: Value = serde_json::from_str(&reply.body).expect("json");
            assert_eq!(claims["sub"], USER_ID);
        }
    }

    #[tokio::test]
    async fn a_management_token_has_no_userinfo() {
        let (broker, store) = broker();
        let grant = AccessGrant::management("app", "read:users".into(), expires());
        assert!(grant.is_management() && grant.user().is_none());
        put_token(&store, "mgmt-token", grant).await;
        let reply = broker.userinfo(Some("Bearer mgmt-token")).await;
        assert_eq!(reply.status, 401);
        assert!(reply.body.contains("invalid_token"), "{}", reply.body);
        let challenge = reply.www_authenticate.expect("challenge");
        assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    }

    #[test]
    fn discovery_lists_every_algorithm_we_sign_with() {
        let (broker, _) = broker();
        let served: Value = serde_json::from_slice(&broker.discovery_json()).expect("json");
        assert_eq!(served, discovery_document(broker.issuer()));
        assert_eq!(
            served["id_token_signing_alg_values_supported"],
            json!(["RS256", "ES256"])
        );
        assert_eq!(
            served["jwks_uri"],
            "https://login.example.com/.well-known/jwks.json"
        );
        let jwks: Value = serde_json::from_slice(&broker.jwks_json()).expect("json");
        assert_eq!(&jwks, broker.keys.load().jwks());
        assert_eq!(
            broker.callback_url(),
            "https://login.example.com/login/callback"
        );
    }

    #[test]
    fn basic_credentials_are_form_decoded_per_rfc_6749() {
        let encoded = STANDARD.encode("my%3Aapp:s%2Bcret");
        assert_eq!(
            decode_basic(&encoded),
            Some(("my:app".into(), "s+cret".into()))
        );
        assert_eq!(decode_basic("not base64!"), None);
    }
}
