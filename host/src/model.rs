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

pub mod branding;
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
    /// Auth0's application type; it decides the grants the app may use
    /// ([`app_type_rules`]).
    pub app_type: AppType,
    /// How the app must authenticate at the token endpoint; `None` (apps
    /// written before the field existed, or that never set it) accepts
    /// either secret method of a confidential app.
    pub token_endpoint_auth_method: Option<ClientAuthMethod>,
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

/// Auth0's application types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AppType {
    /// A single-page app: runs in the browser, keeps no secret.
    Spa,
    /// A server-side web app: keeps a secret.
    RegularWeb,
    /// A mobile or desktop app: keeps no secret.
    Native,
    /// A machine-to-machine app: no users, no browser.
    NonInteractive,
}

impl AppType {
    /// The name, as in the configuration, the API and the store.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Spa => "spa",
            Self::RegularWeb => "regular_web",
            Self::Native => "native",
            Self::NonInteractive => "non_interactive",
        }
    }

    pub fn parse(name: &str) -> Result<Self, String> {
        match name {
            "spa" => Ok(Self::Spa),
            "regular_web" => Ok(Self::RegularWeb),
            "native" => Ok(Self::Native),
            "non_interactive" => Ok(Self::NonInteractive),
            other => Err(format!(
                "app_type `{other}` is not spa, regular_web, native or non_interactive"
            )),
        }
    }

    /// The type of an app that names none (written before the field
    /// existed): a confidential app is a regular web app, a public one a
    /// single-page app — the grants they had stay theirs.
    pub fn default_for(client_type: ClientType) -> Self {
        match client_type {
            ClientType::Confidential => Self::RegularWeb,
            ClientType::Public => Self::Spa,
        }
    }
}

/// How an app authenticates at the token endpoint (RFC 6749 §2.3.1;
/// `none`: a public app, RFC 7591 §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuthMethod {
    None,
    ClientSecretPost,
    ClientSecretBasic,
}

impl ClientAuthMethod {
    /// The name, as in the configuration, the API and the store.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::ClientSecretPost => "client_secret_post",
            Self::ClientSecretBasic => "client_secret_basic",
        }
    }

    pub fn parse(name: &str) -> Result<Self, String> {
        match name {
            "none" => Ok(Self::None),
            "client_secret_post" => Ok(Self::ClientSecretPost),
            "client_secret_basic" => Ok(Self::ClientSecretBasic),
            other => Err(format!(
                "token_endpoint_auth_method `{other}` is not none, client_secret_post or client_secret_basic"
            )),
        }
    }
}

/// What an application type implies, as Auth0 has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppTypeRules {
    /// Public apps keep no secret (`token_endpoint_auth_method` `none`)
    /// and must use PKCE (RFC 9700 §2.1.1).
    pub client_type: ClientType,
    /// Whether the app logs users in, and so needs callback URLs.
    pub interactive: bool,
    /// The grants it may use at the token endpoint.
    pub grants: &'static [GrantType],
}

/// The rules of each application type: `spa` and `native` are public,
/// log users in and use codes (and their refresh tokens); `regular_web`
/// keeps a secret and may also get management tokens; `non_interactive`
/// (machine to machine) needs no callback and may only use
/// `client_credentials`.
pub fn app_type_rules(app_type: AppType) -> AppTypeRules {
    use GrantType::{AuthorizationCode, ClientCredentials, RefreshToken};
    match app_type {
        AppType::Spa | AppType::Native => AppTypeRules {
            client_type: ClientType::Public,
            interactive: true,
            grants: &[AuthorizationCode, RefreshToken],
        },
        AppType::RegularWeb => AppTypeRules {
            client_type: ClientType::Confidential,
            interactive: true,
            grants: &[AuthorizationCode, RefreshToken, ClientCredentials],
        },
        AppType::NonInteractive => AppTypeRules {
            client_type: ClientType::Confidential,
            interactive: false,
            grants: &[ClientCredentials],
        },
    }
}

/// Checks an app's type against the rest of it: a public type is a public
/// client authenticating with `none`, a confidential one a confidential
/// client with a secret method; an interactive app needs callbacks (a
/// machine-to-machine app may have none, but those it has must be valid).
pub fn check_app_type(
    app_type: AppType,
    client_type: ClientType,
    auth_method: Option<ClientAuthMethod>,
    callbacks: &[String],
) -> Result<(), String> {
    let rules = app_type_rules(app_type);
    let name = app_type.as_str();
    if rules.client_type != client_type {
        return Err(format!(
            "app_type {name} is a {} client, not a {} one",
            rules.client_type.as_str(),
            client_type.as_str()
        ));
    }
    match (client_type, auth_method) {
        (ClientType::Public, Some(ClientAuthMethod::None) | None) => {}
        (ClientType::Public, Some(other)) => {
            return Err(format!(
                "app_type {name} keeps no secret: its token_endpoint_auth_method is none, not {}",
                other.as_str()
            ));
        }
        (ClientType::Confidential, Some(ClientAuthMethod::None)) => {
            return Err(format!(
                "app_type {name} authenticates with its secret: token_endpoint_auth_method none is for spa and native apps"
            ));
        }
        (ClientType::Confidential, _) => {}
    }
    if rules.interactive || !callbacks.is_empty() {
        check_callbacks(callbacks)?;
    }
    Ok(())
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
            app_type: Some(self.app_type.as_str().to_owned()),
            token_endpoint_auth_method: self
                .token_endpoint_auth_method
                .map(|m| m.as_str().to_owned()),
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
            app_type: match &stored.app_type {
                Some(name) => AppType::parse(name)?,
                None => AppType::default_for(client_type),
            },
            token_endpoint_auth_method: stored
                .token_endpoint_auth_method
                .as_deref()
                .map(ClientAuthMethod::parse)
                .transpose()?,
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

    /// Whether the app may use `grant`: one of its `grant_types` that its
    /// type allows ([`app_type_rules`]).
    pub fn allows_grant(&self, grant: GrantType) -> bool {
        self.grant_types.contains(&grant) && app_type_rules(self.app_type).grants.contains(&grant)
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
    /// RFC 7523 §2.2: a JWT signed by the connection's own key, whose
    /// public half is served at `<issuer>/connections/<name>/jwks.json`.
    PrivateKeyJwt,
    /// A public client (RFC 6749 §2.1): `client_id` only; PKCE binds the code.
    None,
}

impl TokenAuthMethod {
    /// The name, as in the configuration, the API and the store.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClientSecretPost => "client_secret_post",
            Self::ClientSecretBasic => "client_secret_basic",
            Self::PrivateKeyJwt => "private_key_jwt",
            Self::None => "none",
        }
    }

    pub fn parse(name: &str) -> Result<Self, String> {
        match name {
            "client_secret_post" => Ok(Self::ClientSecretPost),
            "client_secret_basic" => Ok(Self::ClientSecretBasic),
            "private_key_jwt" => Ok(Self::PrivateKeyJwt),
            "none" => Ok(Self::None),
            other => Err(format!(
                "token_endpoint_auth_method `{other}` is not client_secret_post, client_secret_basic, private_key_jwt or none"
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
    /// The built-in claims mapper (`crate::upstream::claims`): the
    /// default of a connection with an `issuer`.
    Claims,
}

/// Where the built-in claims mapper reads claims from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ClaimsSource {
    /// The verified id_token's claims.
    #[default]
    IdToken,
    /// The provider's userinfo endpoint (OpenID Connect Core §5.3).
    Userinfo,
    /// Both: userinfo's claims over the id_token's.
    Both,
}

impl ClaimsSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::IdToken => "id_token",
            Self::Userinfo => "userinfo",
            Self::Both => "both",
        }
    }

    pub fn parse(name: &str) -> Result<Self, String> {
        match name {
            "id_token" => Ok(Self::IdToken),
            "userinfo" => Ok(Self::Userinfo),
            "both" => Ok(Self::Both),
            other => Err(format!(
                "claims_source `{other}` is not id_token, userinfo or both"
            )),
        }
    }
}

/// Most `non_persistent_attrs` names: a profile has a few dozen
/// attributes; more is a mistake, and each name is checked at every login.
pub const MAX_NON_PERSISTENT_ATTRS: usize = 64;

/// When a login copies the provider's root attributes (email, name, …)
/// onto the user: Auth0's `set_user_root_attributes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum RootAttributesSync {
    /// At every login: the user is what the provider says now.
    #[default]
    OnEachLogin,
    /// At the first login only: later changes at the provider are ignored
    /// (an app or an admin owns them from then on).
    OnFirstLogin,
    /// Never: the user's root attributes are only ever set through the
    /// management API.
    NeverOnLogin,
}

impl RootAttributesSync {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OnEachLogin => "on_each_login",
            Self::OnFirstLogin => "on_first_login",
            Self::NeverOnLogin => "never_on_login",
        }
    }

    pub fn parse(name: &str) -> Result<Self, String> {
        match name {
            "on_each_login" => Ok(Self::OnEachLogin),
            "on_first_login" => Ok(Self::OnFirstLogin),
            "never_on_login" => Ok(Self::NeverOnLogin),
            other => Err(format!(
                "set_user_root_attributes `{other}` is not on_each_login, on_first_login or never_on_login"
            )),
        }
    }
}

/// Whether a first login through a connection may join an existing user
/// (issue #12 §6): the connection's `account_linking` option. Auth0 has
/// no connection option for this (it links in Actions or its Account Link
/// extension); the name and values are Waypass's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case", try_from = "String")]
pub enum AccountLinking {
    /// Every identity is its own user.
    #[default]
    None,
    /// A new identity joins the one user whose email is the provider's,
    /// when both are verified (the provider's `email_verified` as the
    /// mapper returns it); several such users refuse the login.
    LinkByVerifiedEmail,
    /// A new identity whose email (verified or not) another user has is
    /// refused (`access_denied`).
    DenyDuplicateEmail,
}

impl AccountLinking {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::LinkByVerifiedEmail => "link_by_verified_email",
            Self::DenyDuplicateEmail => "deny_duplicate_email",
        }
    }

    pub fn parse(name: &str) -> Result<Self, String> {
        match name {
            "none" => Ok(Self::None),
            "link_by_verified_email" => Ok(Self::LinkByVerifiedEmail),
            "deny_duplicate_email" => Ok(Self::DenyDuplicateEmail),
            other => Err(format!(
                "account_linking `{other}` is not none, link_by_verified_email or deny_duplicate_email"
            )),
        }
    }

    fn is_none(&self) -> bool {
        *self == Self::None
    }
}

/// Read through [`AccountLinking::parse`], so a wrong value's error names
/// the option.
impl TryFrom<String> for AccountLinking {
    type Error = String;

    fn try_from(name: String) -> Result<Self, String> {
        Self::parse(&name)
    }
}

/// How the built-in claims mapper reads a profile, derived from the
/// connection's options.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClaimsOptions {
    pub source: ClaimsSource,
    /// The claim (name or JSON pointer) holding the user id; `sub` if unset.
    pub user_id_claim: Option<String>,
    /// Profile field → claim name or JSON pointer.
    pub claim_mapping: BTreeMap<String, String>,
    /// The claim holding the user's groups; `groups` if unset.
    pub groups_claim: Option<String>,
}

/// A connection's `options`, named as in Auth0's Management API.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionOptions {
    /// May be left out (empty) for a connection with an `issuer`: its
    /// discovery document names it.
    #[serde(rename = "authorizationURL", default)]
    pub authorization_url: String,
    /// As `authorizationURL`.
    #[serde(rename = "tokenURL", default)]
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
    /// The provider's JWK set, for its id_tokens; discovered from `issuer`
    /// when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    /// The provider's userinfo endpoint, for the claims mapper's
    /// `userinfo` source; discovered from `issuer` when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub userinfo_endpoint: Option<String>,
    /// The claims mapper's source: `id_token` (default), `userinfo`, `both`.
    #[serde(default)]
    pub claims_source: ClaimsSource,
    /// The claim (name or `/json/pointer`) holding the user id; `sub`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id_claim: Option<String>,
    /// Profile field → claim name or `/json/pointer`, for the claims mapper.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub claim_mapping: BTreeMap<String, String>,
    /// The claim (name or `/json/pointer`) holding groups; `groups`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups_claim: Option<String>,
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
    /// When logins copy the provider's root attributes onto the user.
    #[serde(default)]
    pub set_user_root_attributes: RootAttributesSync,
    /// Profile attributes never written to the store (Auth0's
    /// `non_persistent_attrs`): dropped from the profile before it is kept.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub non_persistent_attrs: Vec<String>,
    /// Whether a first login may join an existing user by email.
    #[serde(default, skip_serializing_if = "AccountLinking::is_none")]
    pub account_linking: AccountLinking,
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
            jwks_uri: None,
            userinfo_endpoint: None,
            claims_source: ClaimsSource::default(),
            user_id_claim: None,
            claim_mapping: BTreeMap::new(),
            groups_claim: None,
            mapper: None,
            scripts: None,
            mapper_settings: BTreeMap::new(),
            mapper_settings_env: BTreeMap::new(),
            mapper_egress: MapperEgress::default(),
            mapper_timeout_ms: None,
            set_user_root_attributes: RootAttributesSync::default(),
            non_persistent_attrs: Vec::new(),
            account_linking: AccountLinking::None,
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
                jwks_uri: o.jwks_uri.clone(),
                userinfo_endpoint: o.userinfo_endpoint.clone(),
                claims_source: o.claims_source.as_str().to_owned(),
                user_id_claim: o.user_id_claim.clone(),
                claim_mapping: o.claim_mapping.clone(),
                groups_claim: o.groups_claim.clone(),
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
                set_user_root_attributes: o.set_user_root_attributes.as_str().to_owned(),
                non_persistent_attrs: o.non_persistent_attrs.clone(),
                account_linking: (!o.account_linking.is_none())
                    .then(|| o.account_linking.as_str().to_owned()),
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
                jwks_uri: o.jwks_uri,
                userinfo_endpoint: o.userinfo_endpoint,
                claims_source: ClaimsSource::parse(&o.claims_source)?,
                user_id_claim: o.user_id_claim,
                claim_mapping: o.claim_mapping,
                groups_claim: o.groups_claim,
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
                set_user_root_attributes: RootAttributesSync::parse(&o.set_user_root_attributes)?,
                non_persistent_attrs: o.non_persistent_attrs,
                account_linking: o
                    .account_linking
                    .as_deref()
                    .map_or(Ok(AccountLinking::None), AccountLinking::parse)?,
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
    /// `None`: named by the issuer's discovery document.
    pub authorization_url: Option<Url>,
    /// `None`: named by the issuer's discovery document.
    pub token_url: Option<Url>,
    /// The provider's issuer, for discovery and its id_tokens.
    pub issuer: Option<Url>,
    /// How the built-in claims mapper reads a profile.
    pub claims: ClaimsOptions,
    /// `customHeaders`, checked and built once; values marked sensitive so
    /// `Debug` does not show them (they often carry credentials).
    pub custom_headers: HeaderMap,
    pub sandbox: Sandbox,
    pub settings: Settings,
    pub profile: ProfileSource,
    /// Why logins through this connection are refused, for a connection
    /// the store holds from before a rule it breaks (see
    /// [`Connection::from_store`]); `None` for every connection that checks.
    pub refused: Option<String>,
}

/// Parameters Waypass itself sets on the provider's authorization request,
/// refused inside `authorizationURL`: a value there would be sent twice, and
/// a provider that reads the URL's copy would get a fixed value instead of
/// the login's own.
/// - `response_mode`: Auth0's seed forbids it ("this connection only
///   supports the default `response_mode` (`query`)"); another mode would
///   post or fragment the answer where `/login/callback` cannot read it
///   (OAuth 2.0 Multiple Response Type Encoding Practices §2.1).
/// - `response_type`, `client_id`, `redirect_uri`, `state`: set by every
///   request (RFC 6749 §4.1.1); a fixed `state` would defeat its CSRF check
///   (RFC 6749 §10.12).
/// - `code_challenge`, `code_challenge_method`: fresh per login (RFC 7636
///   §4.2, §4.3); a fixed challenge would be PKCE without a secret.
/// - `nonce`: the app's own, per login (OpenID Connect Core §3.1.2.1);
///   Waypass does not forward one, and a fixed one protects nothing.
/// - `scope`: sent from the connection's `scope` option (as Auth0 does);
///   put the scopes there.
pub const AUTHORIZATION_URL_RESERVED: [&str; 9] = [
    "response_mode",
    "response_type",
    "client_id",
    "redirect_uri",
    "state",
    "code_challenge",
    "code_challenge_method",
    "nonce",
    "scope",
];

/// Refuses an `authorizationURL` whose query carries one of
/// [`AUTHORIZATION_URL_RESERVED`], saying which and why.
pub fn check_authorization_url_query(url: &Url) -> Result<(), String> {
    let Some((name, _)) = url
        .query_pairs()
        .find(|(name, _)| AUTHORIZATION_URL_RESERVED.contains(&name.as_ref()))
    else {
        return Ok(());
    };
    let why = match name.as_ref() {
        "response_mode" => {
            "only the default response_mode (`query`) is supported, and it must not be set there"
                .to_owned()
        }
        "scope" => {
            "the scope is sent from the connection's `scope` option; put it there".to_owned()
        }
        other => format!("Waypass sets `{other}` itself on every login"),
    };
    Err(format!(
        "authorizationURL must not carry `{name}`: {why} (remove it from the URL; \
         static extra parameters go in `authParams`)"
    ))
}

impl Connection {
    /// The id a connection defined in the configuration file gets when it
    /// is first stored: `con_<name>`.
    pub fn config_id(name: &ConnectionName) -> String {
        format!("con_{name}")
    }

    /// Checks `spec` and derives what logins need from it; `id` is the
    /// management API's id for it. What the API and the configuration file
    /// write goes through this check.
    pub fn new(id: String, spec: ConnectionSpec) -> Result<Arc<Self>, String> {
        let conn = Self::from_store(id, spec)?;
        match &conn.refused {
            Some(why) => Err(why.clone()),
            None => Ok(conn),
        }
    }

    /// [`Connection::new`] for a connection read from the store: one stored
    /// before the `authorizationURL` rule ([`check_authorization_url_query`])
    /// existed still loads — one such row must not stop a deployment from
    /// starting — but every login through it is refused with the rule's
    /// message ([`Connection::refused`]) until a PATCH fixes the URL.
    pub fn from_store(id: String, spec: ConnectionSpec) -> Result<Arc<Self>, String> {
        let o = &spec.options;
        let parse = |what: &str, s: &str| -> Result<Url, String> {
            provider_url(s).map_err(|e| format!("{what} {e}"))
        };
        let issuer = o
            .issuer
            .as_deref()
            .map(|i| parse("issuer", i))
            .transpose()?;
        // Left out, an endpoint is discovered from the issuer.
        let endpoint = |what: &str, s: &str| -> Result<Option<Url>, String> {
            if s.is_empty() && issuer.is_some() {
                return Ok(None);
            }
            parse(what, s).map(Some)
        };
        let authorization_url = endpoint("authorizationURL", &o.authorization_url)?;
        let refused = authorization_url
            .as_ref()
            .and_then(|u| check_authorization_url_query(u).err());
        let token_url = endpoint("tokenURL", &o.token_url)?;
        for (what, url) in [
            ("jwks_uri", &o.jwks_uri),
            ("userinfo_endpoint", &o.userinfo_endpoint),
        ] {
            if let Some(url) = url {
                parse(what, url)?;
            }
        }
        if o.client_id.is_empty() {
            return Err(format!("connection `{}` has no client_id", spec.name));
        }
        if let Some(icon) = &o.icon_url {
            parse("icon_url", icon)?;
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
            // The built-in claims mapper reads the id_token's claims.
            (None, None) if issuer.is_some() => ProfileSource::Claims,
            (None, None) => {
                return Err(format!(
                    "connection `{}` needs `mapper` (a registered mapper), `scripts.fetchUserProfile` (an Auth0 script), or an `issuer` (the built-in claims mapper)",
                    spec.name
                ));
            }
        };
        let custom_headers = custom_headers(&o.custom_headers)?;
        if o.mapper_settings.keys().any(|k| k.starts_with("waypass:")) {
            return Err("mapper_settings: names starting with `waypass:` are reserved".into());
        }
        if o.non_persistent_attrs.len() > MAX_NON_PERSISTENT_ATTRS {
            return Err(format!(
                "non_persistent_attrs: at most {MAX_NON_PERSISTENT_ATTRS} names"
            ));
        }
        if o.non_persistent_attrs.iter().any(|a| a == "user_id") {
            return Err("non_persistent_attrs: `user_id` names the user and is always kept".into());
        }
        // The mapper may reach the provider's own hosts, and what it names.
        let mut hosts: Vec<HostRule> = [&authorization_url, &token_url, &issuer]
            .into_iter()
            .flatten()
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
        let claims = ClaimsOptions {
            source: o.claims_source,
            user_id_claim: o.user_id_claim.clone(),
            claim_mapping: o.claim_mapping.clone(),
            groups_claim: o.groups_claim.clone(),
        };
        Ok(Arc::new(Self {
            id,
            authorization_url,
            token_url,
            issuer,
            claims,
            custom_headers,
            sandbox: Sandbox {
                egress: Arc::new(egress),
                limits: limits.clamped(),
            },
            settings,
            profile,
            spec,
            refused,
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

    /// Whether logins send the provider a nonce: to providers with an
    /// issuer, whose id_tokens are verified (and must carry it back).
    pub fn sends_nonce(&self) -> bool {
        self.issuer.is_some()
    }

    pub fn is_enabled_for(&self, client_id: &str) -> bool {
        self.spec.enabled_clients.iter().any(|c| c == client_id)
    }
}

/// Parses a provider's URL: absolute, http(s), with a host. The error
/// quotes the URL (never a secret).
pub fn provider_url(s: &str) -> Result<Url, String> {
    let url = Url::parse(s).map_err(|e| format!("`{s}` is not a URL: {e}"))?;
    if !matches!(url.scheme(), "https" | "http") || url.host_str().is_none() {
        return Err(format!("`{s}` must be an http(s) URL with a host"));
    }
    Ok(url)
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
                        "jwks_uri": "https://a.test/jwks", "userinfo_endpoint": "https://a.test/me",
                        "claims_source": "both", "user_id_claim": "/oid", "claim_mapping": {"email": "/mail"},
                        "groups_claim": "/realm_access/roles",
                        "scripts": {"fetchUserProfile": "function (t, c, cb) {}"},
                        "mapper_settings": {"api_key": "k"}, "mapper_settings_env": {"key2": "ENV2"},
                        "mapper_egress": {"allowed_hosts": ["api.a.test"], "allow_private_networks": true},
                        "mapper_timeout_ms": 1500, "set_user_root_attributes": "on_first_login",
                        "non_persistent_attrs": ["gender"], "logout_url": "https://a.test/logout"}
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
            app_type: AppType::NonInteractive,
            token_endpoint_auth_method: Some(ClientAuthMethod::ClientSecretBasic),
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
                app_type: None,
                token_endpoint_auth_method: None,
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

    fn spec_with_authorization_url(url: &str) -> ConnectionSpec {
        serde_json::from_value(serde_json::json!({
            "name": "acme",
            "options": {"authorizationURL": url, "tokenURL": "https://a.test/token",
                        "client_id": "c", "mapper": "m"}
        }))
        .expect("spec")
    }

    #[test]
    fn an_authorization_url_carrying_a_parameter_waypass_sets_is_refused_saying_why() {
        for name in AUTHORIZATION_URL_RESERVED {
            let url = format!("https://a.test/authorize?audience=api&{name}=x");
            let err =
                Connection::new("con_acme".into(), spec_with_authorization_url(&url)).unwrap_err();
            assert!(
                err.contains(&format!("authorizationURL must not carry `{name}`")),
                "{name}: {err}"
            );
        }
        let err = Connection::new(
            "con_acme".into(),
            spec_with_authorization_url("https://a.test/authorize?response_mode=form_post"),
        )
        .unwrap_err();
        assert!(
            err.contains("only the default response_mode (`query`)"),
            "{err}"
        );
        let err = Connection::new(
            "con_acme".into(),
            spec_with_authorization_url("https://a.test/authorize?scope=openid"),
        )
        .unwrap_err();
        assert!(err.contains("`scope` option"), "{err}");
        // Other parameters (a provider's own) stay allowed.
        let conn = Connection::new(
            "con_acme".into(),
            spec_with_authorization_url("https://a.test/authorize?audience=api&prompt=login"),
        )
        .expect("a provider's own parameters are fine");
        assert_eq!(conn.refused, None);
    }

    #[test]
    fn a_stored_connection_breaking_the_authorization_url_rule_loads_refused_at_use() {
        let spec = spec_with_authorization_url("https://a.test/authorize?response_mode=fragment");
        let conn = Connection::from_store("con_acme".into(), spec).expect("loads from the store");
        let why = conn.refused.as_deref().expect("refused at use");
        assert!(why.contains("response_mode"), "{why}");
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
