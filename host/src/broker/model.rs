//! Apps (clients) and connections, in Auth0's shapes where Auth0 has them.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use url::Url;

use super::keys::Alg;
use super::secret::{Secret, SecretHash};
use crate::egress::{EgressPolicy, HostRule};
use crate::mapper::{Limits, Sandbox, Settings};

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
    /// SHA-256 of the secret; `None` for public clients.
    pub secret_hash: Option<SecretHash>,
    /// Allowed `redirect_uri`s, compared exactly (RFC 9700 §2.1).
    pub callbacks: Vec<String>,
    /// How the app's id_tokens are signed.
    pub id_token_alg: Alg,
    /// Management API scopes granted through `client_credentials`
    /// (e.g. `read:connections`); empty for login-only apps.
    #[serde(default)]
    pub scopes: Vec<String>,
}

impl Client {
    pub fn allows_redirect(&self, redirect_uri: &str) -> bool {
        self.callbacks.iter().any(|c| c == redirect_uri)
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

/// Where a connection's mapper may connect, beyond its provider's hosts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MapperEgress {
    /// Extra hosts (`host`, `host:port`, `*.domain`, `http://host:port`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_hosts: Vec<String>,
    /// Allow loopback and private addresses (internal providers, tests).
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
#[derive(Clone, Default, Serialize, Deserialize)]
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
    /// Headers sent to the token endpoint.
    #[serde(
        rename = "customHeaders",
        default,
        skip_serializing_if = "BTreeMap::is_empty"
    )]
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
    /// PKCE (S256) towards the provider.
    #[serde(default)]
    pub pkce_enabled: bool,
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
}

impl ConnectionOptions {
    /// Reads `client_secret_env` / `client_secret_file` and
    /// `mapper_settings_env` into the values they name.
    pub fn resolve_secrets(&mut self) -> Result<(), String> {
        if let Some(var) = &self.client_secret_env {
            let value = std::env::var(var).map_err(|_| {
                format!("client_secret_env: environment variable `{var}` is not set")
            })?;
            self.client_secret = Some(Secret::new(value));
        }
        if let Some(path) = &self.client_secret_file {
            let value = std::fs::read_to_string(path)
                .map_err(|e| format!("client_secret_file: cannot read {}: {e}", path.display()))?;
            self.client_secret = Some(Secret::new(value.trim_end_matches(['\r', '\n'])));
        }
        for (setting, var) in &self.mapper_settings_env {
            let value = std::env::var(var).map_err(|_| {
                format!("mapper_settings_env.{setting}: environment variable `{var}` is not set")
            })?;
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

impl ConnectionSpec {
    /// The whole spec as JSON, write-only secrets included: for the store
    /// only (the API's serialisation leaves them out). Reads back with serde.
    pub fn to_stored_json(&self) -> serde_json::Value {
        let mut value = serde_json::to_value(self).unwrap_or_default();
        let options = &mut value["options"];
        if let Some(secret) = &self.options.client_secret {
            options["client_secret"] = secret.expose().into();
        }
        options["mapper_settings"] =
            serde_json::to_value(&self.options.mapper_settings).unwrap_or_default();
        value
    }
}

/// A connection checked and ready for logins: URLs parsed, sandbox built.
#[derive(Debug, Clone)]
pub struct Connection {
    /// The management API's id (`con_…`); `con_<name>` for connections
    /// defined in the configuration file.
    pub id: String,
    pub spec: ConnectionSpec,
    pub authorization_url: Url,
    pub token_url: Url,
    pub sandbox: Sandbox,
    pub settings: Settings,
    pub profile: ProfileSource,
}

impl Connection {
    /// Checks `spec` and derives what logins need from it.
    pub fn new(spec: ConnectionSpec) -> Result<Arc<Self>, String> {
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
            id: format!("con_{}", spec.name),
            authorization_url,
            token_url,
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

    #[test]
    fn the_stored_form_keeps_secrets_and_reads_back() {
        let spec: ConnectionSpec = serde_json::from_value(serde_json::json!({
            "name": "acme",
            "options": {"authorizationURL": "https://a.test/authorize", "tokenURL": "https://a.test/token",
                        "client_id": "c", "client_secret": "s3", "mapper": "m",
                        "mapper_settings": {"api_key": "k"}}
        }))
        .expect("spec");
        let back: ConnectionSpec =
            serde_json::from_value(spec.to_stored_json()).expect("reads back");
        assert_eq!(
            back.options.client_secret.as_ref().map(Secret::expose),
            Some("s3")
        );
        assert_eq!(back.options.mapper_settings["api_key"], "k");
    }

    #[test]
    fn a_connections_mapper_may_reach_its_providers_hosts_and_no_others_by_default() {
        let spec: ConnectionSpec = serde_json::from_value(serde_json::json!({
            "name": "acme",
            "options": {"authorizationURL": "https://login.acme.test/authorize",
                        "tokenURL": "https://api.acme.test/token", "client_id": "c", "mapper": "m"}
        }))
        .expect("spec");
        let conn = Connection::new(spec).expect("valid");
        let hosts: Vec<String> = conn
            .sandbox
            .egress
            .allowed_hosts
            .iter()
            .map(|h| h.to_string())
            .collect();
        assert_eq!(hosts, ["login.acme.test", "api.acme.test"]);
        assert!(!conn.sandbox.egress.allow_private_networks);
    }
}
