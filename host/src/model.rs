//! Apps (clients) and connections, in Auth0's shapes where Auth0 has them:
//! the types the configuration file and the management API read, checked
//! and derived into what logins use ([`Connection`]). They convert to and
//! from the store's own types ([`crate::store::StoredConnection`],
//! [`crate::store::StoredClient`]) here, at the edge.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};
use url::Url;

pub mod client_secret;
pub mod resource_server;

use self::client_secret::ClientSecretHash;
use crate::egress::{EgressPolicy, HostRule};
use crate::keys::Alg;
use crate::mapper::{Limits, Sandbox, Settings};
use crate::secret::Secret;
use crate::store::{
    StoredClient, StoredConnection, StoredConnectionOptions, StoredConnectionSpec,
    StoredMapperEgress, StoredScripts,
};

/// A connection's name. Auth0's rule: starts and ends with an alphanumeric
/// character, only alphanumerics and dashes in between; at most 128 long.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct ConnectionName(String);

impl ConnectionName {
    pub fn parse(name: &str) -> Result<Self, String> {
        let ok = !name.is_empty()
            && name.len() <= 128
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !name.starts_with('-')
            && !name.ends_with('-');
        if ok {
            Ok(Self(name.to_owned()))
        } else {
            Err(format!(
                "`{name}` is not a valid connection name: use letters, digits and dashes, \
                 starting and ending with a letter or digit (at most 128)"
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ConnectionName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ConnectionName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Whether an app can keep a secret (RFC 6749 §2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ClientType {
    #[default]
    Confidential,
    /// Browser and native apps: no secret, PKCE required.
    Public,
}

/// An app that logs users in through Waypass.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Client {
    pub client_id: String,
    pub name: String,
    pub client_type: ClientType,
    /// The secret's hash (SHA-256 or argon2id: see `client_secret`);
    /// `None` for public clients.
    pub secret_hash: Option<ClientSecretHash>,
    /// Allowed `redirect_uri`s, compared exactly (RFC 9700 §2.1).
    pub callbacks: Vec<String>,
    /// How the app's id_tokens are signed.
    pub id_token_alg: Alg,
    /// Management API scopes granted through `client_credentials`
    /// (e.g. `read:connections`); empty for login-only apps.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Whether `/authorize` requires PKCE (RFC 7636) of this app. On by
    /// default for every app, confidential ones too (RFC 9700 §2.1.1: PKCE
    /// also stops code injection, which a client secret does not); a public
    /// app cannot turn it off. Clients stored before the field existed read
    /// as `true`.
    #[serde(default = "yes")]
    pub require_pkce: bool,
    /// The grants the app may use at the token endpoint (Auth0's
    /// `grant_types`). See [`GrantType::defaults`].
    pub grant_types: Vec<GrantType>,
    /// Where the app may send browsers after logout
    /// (`post_logout_redirect_uri`, Auth0's `returnTo`), compared exactly.
    pub allowed_logout_urls: Vec<String>,
    /// Where the app receives back-channel logout tokens (OpenID Connect
    /// Back-Channel Logout 1.0 §2.2); Auth0's
    /// `oidc_logout.backchannel_logout_urls`, of which it allows one.
    pub backchannel_logout_uri: Option<String>,
}

fn yes() -> bool {
    true
}

/// A grant an app may use at the token endpoint (RFC 6749 §4, §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GrantType {
    AuthorizationCode,
    RefreshToken,
    ClientCredentials,
}

impl GrantType {
    /// The name, as in the configuration, the API, the store and RFC 6749.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AuthorizationCode => "authorization_code",
            Self::RefreshToken => "refresh_token",
            Self::ClientCredentials => "client_credentials",
        }
    }

    pub fn parse(name: &str) -> Result<Self, String> {
        match name {
            "authorization_code" => Ok(Self::AuthorizationCode),
            "refresh_token" => Ok(Self::RefreshToken),
            "client_credentials" => Ok(Self::ClientCredentials),
            other => Err(format!(
                "grant type `{other}` is not authorization_code, refresh_token or client_credentials"
            )),
        }
    }

    /// What an app may use unless told otherwise: logins and their refresh
    /// tokens for every app (a refresh token is issued only to an app that
    /// asks for `offline_access`), and `client_credentials` for a
    /// confidential one (which also needs management scopes). Apps stored
    /// before the field existed get these too: nothing they did is taken
    /// away.
    pub fn defaults(client_type: ClientType) -> Vec<Self> {
        match client_type {
            ClientType::Confidential => vec![
                Self::AuthorizationCode,
                Self::RefreshToken,
                Self::ClientCredentials,
            ],
            ClientType::Public => vec![Self::AuthorizationCode, Self::RefreshToken],
        }
    }
}

/// A public app has no secret: it cannot use `client_credentials`.
pub fn check_grant_types(client_type: ClientType, grants: &[GrantType]) -> Result<(), String> {
    if client_type == ClientType::Public && grants.contains(&GrantType::ClientCredentials) {
        return Err("a public client cannot use client_credentials".into());
    }
    Ok(())
}

/// An app's logout URLs: absolute URLs without a fragment (the rule for
/// `post_logout_redirect_uri`, RP-Initiated Logout 1.0 §3); none at all
/// is fine.
pub fn check_logout_urls(urls: &[String]) -> Result<(), String> {
    for u in urls {
        let url = Url::parse(u).map_err(|e| format!("logout URL `{u}` is not a URL: {e}"))?;
        if url.fragment().is_some() {
            return Err(format!("logout URL `{u}` has a fragment"));
        }
    }
    Ok(())
}

/// An app's back-channel logout URI (Back-Channel Logout 1.0 §2.2: an
/// absolute URL, no fragment): https, or plain http to an IP literal or a
/// private name (an app on the broker's own network). The broker POSTs
/// logout tokens there, so through the API a private one needs
/// `write:egress`, as a connection's does ([`backchannel_is_private`]).
pub fn check_backchannel_uri(uri: &str) -> Result<Url, String> {
    let url =
        Url::parse(uri).map_err(|e| format!("backchannel logout URL `{uri}` is not a URL: {e}"))?;
    if url.fragment().is_some() || url.host_str().is_none() {
        return Err(format!(
            "backchannel logout URL `{uri}` needs a host and no fragment"
        ));
    }
    match url.scheme() {
        "https" => Ok(url),
        "http" if backchannel_is_private(&url) => Ok(url),
        _ => Err(format!(
            "backchannel logout URL `{uri}` must be https (plain http only to an IP address or a private name)"
        )),
    }
}

/// Whether a back-channel URL names an IP literal or a private name: the
/// broker then POSTs to private addresses for it (loopback and private
/// networks; never cloud metadata), and a public name may resolve to
/// public addresses only.
pub fn backchannel_is_private(url: &Url) -> bool {
    HostRule::for_url(url).is_some_and(|rule| rule.names_private_host())
}

impl ClientType {
    /// The name, as in the configuration, the API and the store.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Confidential => "confidential",
            Self::Public => "public",
        }
    }

    pub fn parse(name: &str) -> Result<Self, String> {
        match name {
            "confidential" => Ok(Self::Confidential),
            "public" => Ok(Self::Public),
            other => Err(format!(
                "client type `{other}` is not confidential or public"
            )),
        }
    }
}

impl Client {
    /// The stored form (the secret only as its hash).
    pub fn to_stored(&self) -> StoredClient {
        StoredClient {
            client_id: self.client_id.clone(),
            name: self.name.clone(),
            client_type: self.client_type.as_str().to_owned(),
            secret_hash: self.secret_hash.as_ref().map(ClientSecretHash::as_stored),
            callbacks: self.callbacks.clone(),
            id_token_alg: self.id_token_alg.as_str().to_owned(),
            scopes: self.scopes.clone(),
            require_pkce: self.require_pkce,
            grant_types: Some(
                self.grant_types
                    .iter()
                    .map(|g| g.as_str().to_owned())
                    .collect(),
            ),
            allowed_logout_urls: self.allowed_logout_urls.clone(),
            backchannel_logout_uri: self.backchannel_logout_uri.clone(),
        }
    }

    /// Reads a stored client back; the error names the field it refuses.
    pub fn from_stored(stored: StoredClient) -> Result<Self, String> {
        let client_type = ClientType::parse(&stored.client_type)?;
        Ok(Self {
            grant_types: match &stored.grant_types {
                None => GrantType::defaults(client_type),
                Some(names) => names
                    .iter()
                    .map(|n| GrantType::parse(n))
                    .collect::<Result<_, _>>()
                    .map_err(|e| format!("grant_types: {e}"))?,
            },
            allowed_logout_urls: stored.allowed_logout_urls,
            backchannel_logout_uri: stored.backchannel_logout_uri,
            client_type,
            secret_hash: stored
                .secret_hash
                .as_deref()
                .map(ClientSecretHash::parse)
                .transpose()
                .map_err(|e| format!("secret_hash: {e}"))?,
            id_token_alg: stored
                .id_token_alg
                .parse()
                .map_err(|e| format!("id_token_alg: {e}"))?,
            client_id: stored.client_id,
            name: stored.name,
            callbacks: stored.callbacks,
            scopes: stored.scopes,
            require_pkce: stored.require_pkce,
        })
    }

    pub fn allows_redirect(&self, redirect_uri: &str) -> bool {
        self.callbacks.iter().any(|c| c == redirect_uri)
    }

    /// Whether `/authorize` must carry a `code_challenge` for this app.
    pub fn needs_pkce(&self) -> bool {
        self.require_pkce || self.client_type == ClientType::Public
    }

    /// Whether the app may use `grant`.
    pub fn allows_grant(&self, grant: GrantType) -> bool {
        self.grant_types.contains(&grant)
    }

    /// Whether `url` is one of the app's logout URLs (exactly).
    pub fn allows_logout_url(&self, url: &str) -> bool {
        self.allowed_logout_urls.iter().any(|u| u == url)
    }
}

/// A public app has no secret: PKCE is what binds its code to it
/// (RFC 9700 §2.1.1), so it cannot be turned off.
pub fn check_require_pkce(client_type: ClientType, require_pkce: bool) -> Result<(), String> {
    if client_type == ClientType::Public && !require_pkce {
        return Err("a public client always requires PKCE (require_pkce cannot be false)".into());
    }
    Ok(())
}

/// An app's callback URLs, as the configuration file and the API both
/// require them: at least one, each an absolute URL without a fragment
/// (RFC 6749 §3.1.2).
pub fn check_callbacks(callbacks: &[String]) -> Result<(), String> {
    if callbacks.is_empty() {
        return Err("at least one callback URL is required".into());
    }
    for cb in callbacks {
        // `Url::parse` accepts absolute URLs only.
        let url = Url::parse(cb).map_err(|e| format!("callback `{cb}` is not a URL: {e}"))?;
        if url.fragment().is_some() {
            return Err(format!("callback `{cb}` has a fragment"));
        }
    }
    Ok(())
}

/// Where a secret is read from on the server: an environment variable (as
/// it is) or a file (a trailing newline ignored, as editors add one).
#[derive(Debug, Clone, Copy)]
pub enum SecretSource<'a> {
    Env(&'a str),
    File(&'a std::path::Path),
}

impl SecretSource<'_> {
    /// The value; the error names the variable or file, never a value.
    pub fn read(self) -> Result<String, String> {
        match self {
            Self::Env(var) => std::env::var(var).map_err(|e| match e {
                std::env::VarError::NotPresent => {
                    format!("environment variable `{var}` is not set")
                }
                std::env::VarError::NotUnicode(_) => {
                    format!("environment variable `{var}` is not valid UTF-8")
                }
            }),
            Self::File(path) => std::fs::read_to_string(path)
                .map(|s| s.trim_end_matches(['\r', '\n']).to_owned())
                .map_err(|e| format!("cannot read {}: {e}", path.display())),
        }
    }
}

/// How Waypass authenticates to a provider's token endpoint (RFC 6749 §2.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TokenAuthMethod {
    #[default]
    ClientSecretPost,
    ClientSecretBasic,
}

impl TokenAuthMethod {
    /// The name, as in the configuration, the API and the store.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClientSecretPost => "client_secret_post",
            Self::ClientSecretBasic => "client_secret_basic",
        }
    }

    pub fn parse(name: &str) -> Result<Self, String> {
        match name {
            "client_secret_post" => Ok(Self::ClientSecretPost),
            "client_secret_basic" => Ok(Self::ClientSecretBasic),
            other => Err(format!(
                "token_endpoint_auth_method `{other}` is not client_secret_post or client_secret_basic"
            )),
        }
    }
}

/// Where a connection's mapper may connect, beyond its provider's hosts.
/// Through the management API, private reach (private networks, IP-literal
/// or private-name hosts) needs the scope `write:egress`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MapperEgress {
    /// Extra hosts (`host`, `host:port`, `*.domain`, `http://host:port`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_hosts: Vec<String>,
    /// Allow loopback and private addresses (internal providers, tests), for
    /// the mapper and for the token exchange alike. Cloud metadata
    /// addresses stay refused.
    #[serde(default)]
    pub allow_private_networks: bool,
}

/// Auth0's `options.scripts` of an OAuth2 connection.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scripts {
    /// `function (accessToken, context, callback) { … }`.
    #[serde(rename = "fetchUserProfile")]
    pub fetch_user_profile: String,
}

/// Where a connection's profile comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProfileSource {
    /// A registered mapper: `name` (its active version) or `name@N`.
    Mapper(String),
    /// An Auth0 `fetchUserProfile` script.
    Script(Arc<str>),
}

/// A connection's `options`, named as in Auth0's Management API.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionOptions {
    #[serde(rename = "authorizationURL")]
    pub authorization_url: String,
    #[serde(rename = "tokenURL")]
    pub token_url: String,
    /// Space-separated scopes asked of the provider.
    #[serde(default)]
    pub scope: String,
    pub client_id: String,
    /// Write-only: never serialised. Or name where to read it:
    #[serde(default, skip_serializing)]
    pub client_secret: Option<Secret>,
    /// …an environment variable holding the secret…
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret_env: Option<String>,
    /// …or a file holding it (trailing newline ignored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret_file: Option<std::path::PathBuf>,
    /// Headers sent to the token endpoint. Write-only, as `client_secret`:
    /// their documented use is a credential (`Authorization: Basic …`).
    #[serde(rename = "customHeaders", default, skip_serializing)]
    pub custom_headers: BTreeMap<String, String>,
    /// Static extra parameters for the provider's authorize endpoint.
    #[serde(
        rename = "authParams",
        default,
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub auth_params: BTreeMap<String, String>,
    /// provider parameter → the `/authorize` parameter whose value it takes.
    #[serde(
        rename = "authParamsMap",
        default,
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub auth_params_map: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub icon_url: Option<String>,
    /// PKCE (S256) towards the provider; on unless `false` is given
    /// (RFC 9700 §2.1.1: it stops injected codes).
    #[serde(default = "yes")]
    pub pkce_enabled: bool,
    /// The provider's issuer identifier (RFC 8414 §2). When set, its
    /// answers at the callback must carry `iss` equal to it (RFC 9207
    /// §2.4), which stops mix-up attacks (RFC 9700 §4.4): an answer without
    /// `iss`, or from another issuer, is refused. Set it only for providers
    /// that send `iss`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// Whether the provider sends users back to
    /// `<issuer>/login/callback/<connection>` instead of the shared
    /// `<issuer>/login/callback` (register that URL at the provider). A
    /// login's answer arriving at any other callback path is refused
    /// (RFC 9700 §4.4.2: distinct redirect URIs per provider).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub per_connection_callback: bool,
    #[serde(default)]
    pub token_endpoint_auth_method: TokenAuthMethod,
    /// The registered mapper this connection runs (`name` or `name@N`)…
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mapper: Option<String>,
    /// …or Auth0's scripts: `fetchUserProfile`, run by the script engine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scripts: Option<Scripts>,
    /// Settings handed to the mapper (may hold API keys: never logged).
    #[serde(default, skip_serializing)]
    pub mapper_settings: BTreeMap<String, String>,
    /// Settings whose values come from environment variables (setting → variable).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub mapper_settings_env: BTreeMap<String, String>,
    #[serde(default)]
    pub mapper_egress: MapperEgress,
    /// The mapper's deadline in milliseconds (bounded by the runtime).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mapper_timeout_ms: Option<u64>,
    /// The provider's logout page: Auth0's `/v2/logout?federated` sends
    /// the browser there after ending its Waypass session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logout_url: Option<String>,
}

/// Options as the configuration and the API default them (PKCE on).
impl Default for ConnectionOptions {
    fn default() -> Self {
        Self {
            authorization_url: String::new(),
            token_url: String::new(),
            scope: String::new(),
            client_id: String::new(),
            client_secret: None,
            client_secret_env: None,
            client_secret_file: None,
            custom_headers: BTreeMap::new(),
            auth_params: BTreeMap::new(),
            auth_params_map: BTreeMap::new(),
            icon_url: None,
            pkce_enabled: true,
            issuer: None,
            per_connection_callback: false,
            token_endpoint_auth_method: TokenAuthMethod::default(),
            mapper: None,
            scripts: None,
            mapper_settings: BTreeMap::new(),
            mapper_settings_env: BTreeMap::new(),
            mapper_egress: MapperEgress::default(),
            mapper_timeout_ms: None,
            logout_url: None,
        }
    }
}

impl ConnectionOptions {
    /// Reads `client_secret_env` / `client_secret_file` and
    /// `mapper_settings_env` into the values they name.
    pub fn resolve_secrets(&mut self) -> Result<(), String> {
        if let Some(var) = &self.client_secret_env {
            let value = SecretSource::Env(var)
                .read()
                .map_err(|e| format!("client_secret_env: {e}"))?;
            self.client_secret = Some(Secret::new(value));
        }
        if let Some(path) = &self.client_secret_file {
            let value = SecretSource::File(path)
                .read()
                .map_err(|e| format!("client_secret_file: {e}"))?;
            self.client_secret = Some(Secret::new(value));
        }
        for (setting, var) in &self.mapper_settings_env {
            let value = SecretSource::Env(var)
                .read()
                .map_err(|e| format!("mapper_settings_env.{setting}: {e}"))?;
            self.mapper_settings.insert(setting.clone(), value);
        }
        Ok(())
    }
}

impl fmt::Debug for ConnectionOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionOptions")
            .field("authorizationURL", &self.authorization_url)
            .field("tokenURL", &self.token_url)
            .field("scope", &self.scope)
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret)
            .field(
                "customHeaders",
                &self.custom_headers.keys().collect::<Vec<_>>(),
            )
            .field("authParams", &self.auth_params)
            .field("authParamsMap", &self.auth_params_map)
            .field("pkce_enabled", &self.pkce_enabled)
            .field("issuer", &self.issuer)
            .field("per_connection_callback", &self.per_connection_callback)
            .field("mapper", &self.mapper)
            .field("scripts", &self.scripts.as_ref().map(|_| "[script]"))
            .field(
                "mapper_settings",
                &self.mapper_settings.keys().collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// A connection to one OAuth2 provider.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionSpec {
    pub name: ConnectionName,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default)]
    pub enabled_clients: Vec<String>,
    pub options: ConnectionOptions,
}

/// A connection as the API addresses it: its id and its spec.
#[derive(Debug, Clone)]
pub struct ConnectionRecord {
    /// `con_` and a random suffix; never changes.
    pub id: String,
    pub spec: ConnectionSpec,
}

impl ConnectionRecord {
    /// The stored form: every field, secrets included.
    pub fn to_stored(&self) -> StoredConnection {
        StoredConnection {
            id: self.id.clone(),
            spec: self.spec.to_stored(),
        }
    }

    /// Reads a stored connection back; the error says which field a row
    /// holds that this code does not accept.
    pub fn from_stored(stored: StoredConnection) -> Result<Self, String> {
        Ok(Self {
            spec: ConnectionSpec::from_stored(stored.spec)?,
            id: stored.id,
        })
    }
}

impl ConnectionSpec {
    /// The stored form: every field, write-only secrets included.
    pub fn to_stored(&self) -> StoredConnectionSpec {
        let o = &self.options;
        StoredConnectionSpec {
            name: self.name.as_str().to_owned(),
            display_name: self.display_name.clone(),
            enabled_clients: self.enabled_clients.clone(),
            options: StoredConnectionOptions {
                authorization_url: o.authorization_url.clone(),
                token_url: o.token_url.clone(),
                scope: o.scope.clone(),
                client_id: o.client_id.clone(),
                client_secret: o.client_secret.as_ref().map(|s| s.expose().to_owned()),
                client_secret_env: o.client_secret_env.clone(),
                client_secret_file: o.client_secret_file.clone(),
                custom_headers: o.custom_headers.clone(),
                auth_params: o.auth_params.clone(),
                auth_params_map: o.auth_params_map.clone(),
                icon_url: o.icon_url.clone(),
                pkce_enabled: o.pkce_enabled,
                issuer: o.issuer.clone(),
                per_connection_callback: o.per_connection_callback,
                token_endpoint_auth_method: o.token_endpoint_auth_method.as_str().to_owned(),
                mapper: o.mapper.clone(),
                scripts: o.scripts.as_ref().map(|s| StoredScripts {
                    fetch_user_profile: s.fetch_user_profile.clone(),
                }),
                mapper_settings: o.mapper_settings.clone(),
                mapper_settings_env: o.mapper_settings_env.clone(),
                mapper_egress: StoredMapperEgress {
                    allowed_hosts: o.mapper_egress.allowed_hosts.clone(),
                    allow_private_networks: o.mapper_egress.allow_private_networks,
                },
                mapper_timeout_ms: o.mapper_timeout_ms,
                logout_url: o.logout_url.clone(),
            },
        }
    }

    /// Reads a stored spec back (the name and the token endpoint's
    /// authentication method are checked; the rest is taken as stored and
    /// checked by [`Connection::new`]).
    pub fn from_stored(stored: StoredConnectionSpec) -> Result<Self, String> {
        let o = stored.options;
        Ok(Self {
            name: ConnectionName::parse(&stored.name)?,
            display_name: stored.display_name,
            enabled_clients: stored.enabled_clients,
            options: ConnectionOptions {
                authorization_url: o.authorization_url,
                token_url: o.token_url,
                scope: o.scope,
                client_id: o.client_id,
                client_secret: o.client_secret.map(Secret::new),
                client_secret_env: o.client_secret_env,
                client_secret_file: o.client_secret_file,
                custom_headers: o.custom_headers,
                auth_params: o.auth_params,
                auth_params_map: o.auth_params_map,
                icon_url: o.icon_url,
                pkce_enabled: o.pkce_enabled,
                issuer: o.issuer,
                per_connection_callback: o.per_connection_callback,
                token_endpoint_auth_method: TokenAuthMethod::parse(&o.token_endpoint_auth_method)?,
                mapper: o.mapper,
                scripts: o.scripts.map(|s| Scripts {
                    fetch_user_profile: s.fetch_user_profile,
                }),
                mapper_settings: o.mapper_settings,
                mapper_settings_env: o.mapper_settings_env,
                mapper_egress: MapperEgress {
                    allowed_hosts: o.mapper_egress.allowed_hosts,
                    allow_private_networks: o.mapper_egress.allow_private_networks,
                },
                mapper_timeout_ms: o.mapper_timeout_ms,
                logout_url: o.logout_url,
            },
        })
    }
}

/// A connection checked and ready for logins: URLs parsed, sandbox built.
#[derive(Debug, Clone)]
pub struct Connection {
    /// The management API's id (`con_…`); see [`Connection::config_id`].
    pub id: String,
    pub spec: ConnectionSpec,
    pub authorization_url: Url,
    pub token_url: Url,
    /// `customHeaders`, checked and built once; values marked sensitive so
    /// `Debug` does not show them (they often carry credentials).
    pub custom_headers: HeaderMap,
    pub sandbox: Sandbox,
    pub settings: Settings,
    pub profile: ProfileSource,
}

impl Connection {
    /// The id a connection defined in the configuration file gets when it
    /// is first stored: `con_<name>`.
    pub fn config_id(name: &ConnectionName) -> String {
        format!("con_{name}")
    }

    /// Checks `spec` and derives what logins need from it; `id` is the
    /// management API's id for it.
    pub fn new(id: String, spec: ConnectionSpec) -> Result<Arc<Self>, String> {
        let o = &spec.options;
        let parse = |what: &str, s: &str| -> Result<Url, String> {
            let url = Url::parse(s).map_err(|e| format!("{what} `{s}` is not a URL: {e}"))?;
            if !matches!(url.scheme(), "https" | "http") || url.host_str().is_none() {
                return Err(format!("{what} `{s}` must be an http(s) URL with a host"));
            }
            Ok(url)
        };
        let authorization_url = parse("authorizationURL", &o.authorization_url)?;
        let token_url = parse("tokenURL", &o.token_url)?;
        if o.client_id.is_empty() {
            return Err(format!("connection `{}` has no client_id", spec.name));
        }
        if let Some(icon) = &o.icon_url {
            parse("icon_url", icon)?;
        }
        if let Some(issuer) = &o.issuer {
            parse("issuer", issuer)?;
        }
        if let Some(logout) = &o.logout_url {
            parse("logout_url", logout)?;
        }
        let profile = match (&o.mapper, &o.scripts) {
            (Some(mapper), None) => ProfileSource::Mapper(mapper.clone()),
            (None, Some(scripts)) => {
                crate::script::check_length(&scripts.fetch_user_profile)
                    .map_err(|e| format!("scripts.fetchUserProfile: {e}"))?;
                ProfileSource::Script(scripts.fetch_user_profile.as_str().into())
            }
            (Some(_), Some(_)) => {
                return Err(format!(
                    "connection `{}` names both a mapper and scripts.fetchUserProfile; keep one (send `\"mapper\": null` or `\"scripts\": null` to remove the other)",
                    spec.name
                ));
            }
            (None, None) => {
                return Err(format!(
                    "connection `{}` needs `mapper` (a registered mapper) or `scripts.fetchUserProfile` (an Auth0 script)",
                    spec.name
                ));
            }
        };
        let custom_headers = custom_headers(&o.custom_headers)?;
        if o.mapper_settings.keys().any(|k| k.starts_with("waypass:")) {
            return Err("mapper_settings: names starting with `waypass:` are reserved".into());
        }
        // The mapper may reach the provider's own hosts, and what it names.
        let mut hosts: Vec<HostRule> = [&authorization_url, &token_url]
            .into_iter()
            .filter_map(HostRule::for_url)
            .collect();
        for h in &o.mapper_egress.allowed_hosts {
            hosts.push(
                h.parse()
                    .map_err(|e| format!("mapper_egress.allowed_hosts: {e}"))?,
            );
        }
        let egress = EgressPolicy {
            allow_private_networks: o.mapper_egress.allow_private_networks,
            ..EgressPolicy::allowing(hosts)
        };
        let mut limits = Limits::default();
        if let Some(ms) = o.mapper_timeout_ms {
            limits.deadline = std::time::Duration::from_millis(ms);
        }
        let settings = o.mapper_settings.iter().collect::<Settings>();
        Ok(Arc::new(Self {
            id,
            authorization_url,
            token_url,
            custom_headers,
            sandbox: Sandbox {
                egress: Arc::new(egress),
                limits: limits.clamped(),
            },
            settings,
            profile,
            spec,
        }))
    }

    pub fn name(&self) -> &str {
        self.spec.name.as_str()
    }

    pub fn display_name(&self) -> &str {
        self.spec
            .display_name
            .as_deref()
            .unwrap_or(self.spec.name.as_str())
    }

    pub fn is_enabled_for(&self, client_id: &str) -> bool {
        self.spec.enabled_clients.iter().any(|c| c == client_id)
    }
}

/// Builds `customHeaders` into a header map, refusing a name or value HTTP
/// does not allow (the value is not quoted: it may be a credential).
fn custom_headers(headers: &BTreeMap<String, String>) -> Result<HeaderMap, String> {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        let header = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("customHeaders: `{name}` is not a valid header name"))?;
        let mut value = HeaderValue::from_str(value).map_err(|_| {
            format!(
                "customHeaders.{name}: the value is not a valid header value \
                 (visible ASCII and spaces only, no line breaks)"
            )
        })?;
        value.set_sensitive(true);
        map.insert(header, value);
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_names_follow_auth0s_rule() {
        for ok in ["a", "acme-sso", "A1-b2", "x9"] {
            assert!(ConnectionName::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", "a-", "a_b", "a b", "ä", &"a".repeat(129)] {
            assert!(ConnectionName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn connection_options_read_auth0s_patch_bodies_and_never_print_secrets() {
        let body = r#"{ "client_id": "cid", "client_secret": "shh", "icon_url": "https://cdn.example.com/assets/icon.png",
            "authParams": { "custom_param": "custom.param.value" }, "authParamsMap": { "custom_param": "access_type" },
            "authorizationURL": "https://public-auth.example.com/oauth2/authorize",
            "tokenURL": "https://auth.example.com/oauth2/token", "scope": "auth", "mapper": "m",
            "customHeaders": { "Authorization": "Basic c2VjcmV0" } }"#;
        let options: ConnectionOptions = serde_json::from_str(body).expect("parses");
        assert_eq!(options.auth_params_map["custom_param"], "access_type");
        let shown = format!("{options:?}");
        assert!(
            !shown.contains("shh") && !shown.contains("c2VjcmV0"),
            "{shown}"
        );
        let json = serde_json::to_string(&options).expect("serialises");
        assert!(!json.contains("shh"), "client_secret is write-only: {json}");
    }

    /// A spec with every field set to something other than its default.
    fn every_field() -> ConnectionSpec {
        serde_json::from_value(serde_json::json!({
            "name": "acme",
            "display_name": "Acme",
            "enabled_clients": ["shop"],
            "options": {"authorizationURL": "https://a.test/authorize", "tokenURL": "https://a.test/token",
                        "scope": "openid", "client_id": "c", "client_secret": "s3",
                        "client_secret_env": "ACME_SECRET", "client_secret_file": "/run/acme",
                        "customHeaders": {"Authorization": "Basic eA=="},
                        "authParams": {"prompt": "login"}, "authParamsMap": {"login_hint": "login_hint"},
                        "icon_url": "https://a.test/i.png", "pkce_enabled": false,
                        "issuer": "https://a.test", "per_connection_callback": true,
                        "token_endpoint_auth_method": "client_secret_basic", "mapper": "m",
                        "scripts": {"fetchUserProfile": "function (t, c, cb) {}"},
                        "mapper_settings": {"api_key": "k"}, "mapper_settings_env": {"key2": "ENV2"},
                        "mapper_egress": {"allowed_hosts": ["api.a.test"], "allow_private_networks": true},
                        "mapper_timeout_ms": 1500, "logout_url": "https://a.test/logout"}
        }))
        .expect("spec")
    }

    #[test]
    fn the_stored_form_keeps_every_field_secrets_included_and_reads_back() {
        let spec = every_field();
        let stored = spec.to_stored();
        let json = serde_json::to_value(&stored).expect("serialises");
        // Every field is written, none at its default: a field added to
        // the spec but not to the stored form would show here as missing.
        fn set_everywhere(path: &str, v: &serde_json::Value) {
            match v {
                serde_json::Value::Null => panic!("{path} is null"),
                serde_json::Value::String(s) => assert!(!s.is_empty(), "{path} is empty"),
                serde_json::Value::Array(a) => assert!(!a.is_empty(), "{path} is empty"),
                serde_json::Value::Object(o) => {
                    assert!(!o.is_empty(), "{path} is empty");
                    for (k, v) in o {
                        set_everywhere(&format!("{path}.{k}"), v);
                    }
                }
                _ => {}
            }
        }
        set_everywhere("spec", &json);
        assert_eq!(json["options"]["client_secret"], "s3");
        assert_eq!(
            json["options"]["customHeaders"]["Authorization"],
            "Basic eA=="
        );
        assert_eq!(json["options"]["mapper_settings"]["api_key"], "k");
        let back = ConnectionSpec::from_stored(stored.clone()).expect("reads back");
        assert_eq!(back.to_stored(), stored, "nothing lost either way");
        assert_eq!(
            back.options.client_secret.as_ref().map(Secret::expose),
            Some("s3")
        );
    }

    #[test]
    fn a_client_round_trips_through_its_stored_form() {
        let client = Client {
            client_id: "shop".into(),
            name: "Shop".into(),
            client_type: ClientType::Confidential,
            secret_hash: Some(ClientSecretHash::fast("secret")),
            callbacks: vec!["https://shop.test/cb".into()],
            id_token_alg: Alg::Es256,
            scopes: vec!["read:users".into()],
            require_pkce: false,
            grant_types: vec![GrantType::AuthorizationCode],
            allowed_logout_urls: vec!["https://shop.test/bye".into()],
            backchannel_logout_uri: Some("https://shop.test/backchannel".into()),
        };
        assert_eq!(Client::from_stored(client.to_stored()), Ok(client));
        let bad = StoredClient {
            id_token_alg: "none".into(),
            ..Client::from_stored(StoredClient {
                client_id: "x".into(),
                name: "x".into(),
                client_type: "public".into(),
                secret_hash: None,
                callbacks: vec![],
                id_token_alg: "RS256".into(),
                scopes: vec![],
                require_pkce: true,
                grant_types: None,
                allowed_logout_urls: vec![],
                backchannel_logout_uri: None,
            })
            .expect("a public client")
            .to_stored()
        };
        assert!(
            Client::from_stored(bad)
                .unwrap_err()
                .contains("id_token_alg")
        );
    }

    #[test]
    fn a_connections_mapper_may_reach_its_providers_hosts_and_no_others_by_default() {
        let spec: ConnectionSpec = serde_json::from_value(serde_json::json!({
            "name": "acme",
            "options": {"authorizationURL": "https://login.acme.test/authorize",
                        "tokenURL": "https://api.acme.test/token", "client_id": "c", "mapper": "m"}
        }))
        .expect("spec");
        let conn = Connection::new("con_acme".into(), spec).expect("valid");
        let hosts: Vec<String> = conn
            .sandbox
            .egress
            .allowed_hosts
            .iter()
            .map(|h| h.to_string())
            .collect();
        // Exactly the port each URL connects to: not the hosts' other ports.
        assert_eq!(hosts, ["login.acme.test:443", "api.acme.test:443"]);
        assert!(!conn.sandbox.egress.allow_private_networks);
    }

    fn spec_with_headers(headers: serde_json::Value) -> ConnectionSpec {
        serde_json::from_value(serde_json::json!({
            "name": "acme",
            "options": {"authorizationURL": "https://a.test/authorize", "tokenURL": "https://a.test/token",
                        "client_id": "c", "mapper": "m", "customHeaders": headers}
        }))
        .expect("spec")
    }

    #[test]
    fn custom_headers_are_built_once_and_a_bad_one_is_refused_without_its_value() {
        let conn = Connection::new(
            "con_acme".into(),
            spec_with_headers(
                serde_json::json!({"X-Tenant": "acme", "Authorization": "Basic c2VjcmV0"}),
            ),
        )
        .expect("valid headers");
        assert_eq!(conn.custom_headers["x-tenant"], "acme");
        assert!(!format!("{conn:?}").contains("c2VjcmV0"));

        let err = Connection::new(
            "con_acme".into(),
            spec_with_headers(serde_json::json!({"X Bad": "1"})),
        )
        .unwrap_err();
        assert!(err.contains("`X Bad` is not a valid header name"), "{err}");
        let err = Connection::new(
            "con_acme".into(),
            spec_with_headers(serde_json::json!({"X-Token": "s3cret\r\nInjected: 1"})),
        )
        .unwrap_err();
        assert!(err.contains("customHeaders.X-Token"), "{err}");
        assert!(!err.contains("s3cret"), "{err}");
    }

    #[test]
    fn an_issuer_must_be_an_http_url_and_per_connection_callbacks_are_off_by_default() {
        let spec = |issuer: &str| -> ConnectionSpec {
            serde_json::from_value(serde_json::json!({
                "name": "acme",
                "options": {"authorizationURL": "https://a.test/authorize", "tokenURL": "https://a.test/token",
                            "client_id": "c", "mapper": "m", "issuer": issuer}
            }))
            .expect("spec")
        };
        let conn = Connection::new("con_acme".into(), spec("https://a.test")).expect("valid");
        assert_eq!(conn.spec.options.issuer.as_deref(), Some("https://a.test"));
        assert!(!conn.spec.options.per_connection_callback);
        assert!(conn.spec.options.pkce_enabled, "PKCE is on by default");
        for bad in ["a.test", "urn:x", ""] {
            let err = Connection::new("con_acme".into(), spec(bad)).unwrap_err();
            assert!(err.contains("issuer"), "{bad}: {err}");
        }
    }

    #[test]
    fn callbacks_need_one_absolute_url_without_a_fragment() {
        let ok = |v: &[&str]| check_callbacks(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert!(ok(&["https://x.test/cb", "http://127.0.0.1:3000/cb"]).is_ok());
        assert!(ok(&[]).unwrap_err().contains("at least one"));
        assert!(ok(&["/cb"]).unwrap_err().contains("is not a URL"));
        assert!(
            ok(&["https://x.test/cb#f"])
                .unwrap_err()
                .contains("fragment")
        );
    }

    #[test]
    fn secrets_from_files_lose_their_trailing_newline_and_errors_name_the_source() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("secret");
        std::fs::write(&file, "s3 cret\r\n").expect("write");
        assert_eq!(SecretSource::File(&file).read().as_deref(), Ok("s3 cret"));
        let missing = dir.path().join("missing");
        assert!(
            SecretSource::File(&missing)
                .read()
                .unwrap_err()
                .contains("missing")
        );
        let err = SecretSource::Env("WAYPASS_TEST_SURELY_UNSET")
            .read()
            .unwrap_err();
        assert!(
            err.contains("WAYPASS_TEST_SURELY_UNSET") && err.contains("not set"),
            "{err}"
        );
    }
}
