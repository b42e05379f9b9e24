//! The catalog as stored: connections and clients, every field explicit.
//!
//! These types are what the store writes and reads, and nothing else: the
//! configuration file's and the management API's types convert to and from
//! them at their edge (`crate::model`), as Dex keeps `storage` types apart.
//! No field is skipped when serialised — write-only secrets included — so a
//! field added to the API's type cannot be lost at a restart by a
//! serialisation that leaves it out; and an unknown field in a stored row is
//! an error, not silently dropped at the next write.
//!
//! The JSON is the rows' on-disk form (SQLite and PostgreSQL alike): the
//! names are the ones the rows of schema 1 hold, and every field a row of
//! schema 1 may lack has a default, so those rows read back unchanged.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// A connection: its id (a column) and its spec (the row's JSON).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredConnection {
    /// `con_` and a suffix; never changes.
    pub id: String,
    pub spec: StoredConnectionSpec,
}

/// A connection's name, apps and options, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredConnectionSpec {
    pub name: String,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub enabled_clients: Vec<String>,
    pub options: StoredConnectionOptions,
}

/// A connection's options as stored: Auth0's names, secrets in the clear
/// (the store is the one place that keeps them).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredConnectionOptions {
    #[serde(rename = "authorizationURL")]
    pub authorization_url: String,
    #[serde(rename = "tokenURL")]
    pub token_url: String,
    #[serde(default)]
    pub scope: String,
    pub client_id: String,
    #[serde(default)]
    pub client_secret: Option<String>,
    #[serde(default)]
    pub client_secret_env: Option<String>,
    #[serde(default)]
    pub client_secret_file: Option<PathBuf>,
    #[serde(rename = "customHeaders", default)]
    pub custom_headers: BTreeMap<String, String>,
    #[serde(rename = "authParams", default)]
    pub auth_params: BTreeMap<String, String>,
    #[serde(rename = "authParamsMap", default)]
    pub auth_params_map: BTreeMap<String, String>,
    #[serde(default)]
    pub icon_url: Option<String>,
    /// Rows written before the field existed had PKCE on.
    #[serde(default = "yes")]
    pub pkce_enabled: bool,
    #[serde(default)]
    pub issuer: Option<String>,
    #[serde(default)]
    pub per_connection_callback: bool,
    /// `client_secret_post`, `client_secret_basic`, `private_key_jwt` or `none`.
    #[serde(default = "client_secret_post")]
    pub token_endpoint_auth_method: String,
    #[serde(default)]
    pub jwks_uri: Option<String>,
    #[serde(default)]
    pub userinfo_endpoint: Option<String>,
    /// `id_token`, `userinfo` or `both`.
    #[serde(default = "id_token")]
    pub claims_source: String,
    #[serde(default)]
    pub user_id_claim: Option<String>,
    #[serde(default)]
    pub claim_mapping: BTreeMap<String, String>,
    #[serde(default)]
    pub groups_claim: Option<String>,
    #[serde(default)]
    pub mapper: Option<String>,
    #[serde(default)]
    pub scripts: Option<StoredScripts>,
    #[serde(default)]
    pub mapper_settings: BTreeMap<String, String>,
    #[serde(default)]
    pub mapper_settings_env: BTreeMap<String, String>,
    #[serde(default)]
    pub mapper_egress: StoredMapperEgress,
    #[serde(default)]
    pub mapper_timeout_ms: Option<u64>,
    /// `on_each_login`, `on_first_login` or `never_on_login`.
    #[serde(default = "on_each_login")]
    pub set_user_root_attributes: String,
    #[serde(default)]
    pub non_persistent_attrs: Vec<String>,
    /// `none` (also when absent), `link_by_verified_email` or
    /// `deny_duplicate_email`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_linking: Option<String>,
    /// The provider's logout page, where Auth0's `federated` logout sends
    /// the browser.
    #[serde(default)]
    pub logout_url: Option<String>,
}

/// Auth0's `options.scripts`, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredScripts {
    #[serde(rename = "fetchUserProfile")]
    pub fetch_user_profile: String,
}

/// Where a connection's mapper may connect, as stored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredMapperEgress {
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    #[serde(default)]
    pub allow_private_networks: bool,
}

fn yes() -> bool {
    true
}

fn client_secret_post() -> String {
    "client_secret_post".into()
}

fn on_each_login() -> String {
    "on_each_login".into()
}

fn id_token() -> String {
    "id_token".into()
}

/// Secrets and settings are left out: a stored connection may be logged.
impl fmt::Debug for StoredConnectionOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredConnectionOptions")
            .field("authorizationURL", &self.authorization_url)
            .field("tokenURL", &self.token_url)
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "[redacted]"),
            )
            .field(
                "customHeaders",
                &self.custom_headers.keys().collect::<Vec<_>>(),
            )
            .field("mapper", &self.mapper)
            .field("scripts", &self.scripts.as_ref().map(|_| "[script]"))
            .field(
                "mapper_settings",
                &self.mapper_settings.keys().collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// An app, as stored: its secret only as a hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredClient {
    pub client_id: String,
    pub name: String,
    /// `confidential` or `public`.
    pub client_type: String,
    /// 64 hex digits (SHA-256) or an argon2id PHC string; `None` for a
    /// public client.
    #[serde(default)]
    pub secret_hash: Option<String>,
    #[serde(default)]
    pub callbacks: Vec<String>,
    /// `RS256` or `ES256`.
    pub id_token_alg: String,
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Rows written before the field existed read as `true`.
    #[serde(default = "yes")]
    pub require_pkce: bool,
    /// `spa`, `regular_web`, `native` or `non_interactive`; `None` for rows
    /// written before the field existed (derived from `client_type`).
    #[serde(default)]
    pub app_type: Option<String>,
    /// `none`, `client_secret_post` or `client_secret_basic`; `None`: any
    /// secret method.
    #[serde(default)]
    pub token_endpoint_auth_method: Option<String>,
    /// The grants the app may use (`authorization_code`, `refresh_token`,
    /// `client_credentials`); `None` for rows written before the field
    /// existed, which get the default for their type.
    #[serde(default)]
    pub grant_types: Option<Vec<String>>,
    /// Where the app may send browsers after logout, compared exactly.
    #[serde(default)]
    pub allowed_logout_urls: Vec<String>,
    /// Where the app receives back-channel logout tokens.
    #[serde(default)]
    pub backchannel_logout_uri: Option<String>,
}

/// An API access tokens are issued for (Auth0's resource server), as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredResourceServer {
    /// `rs_` and a suffix; never changes.
    pub id: String,
    pub name: String,
    /// The `audience` apps ask for; unique, never changes.
    pub identifier: String,
    #[serde(default)]
    pub scopes: Vec<StoredScope>,
    /// `RS256` or `ES256`.
    pub signing_alg: String,
    /// Seconds an access token for it lives.
    pub token_lifetime: u64,
    /// Whether refresh tokens may be issued for it.
    #[serde(default)]
    pub allow_offline_access: bool,
}

/// One scope an API accepts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredScope {
    pub value: String,
    #[serde(default)]
    pub description: String,
}

/// A post-login Action's settings, as stored (its components are the
/// draft and the versions, stored beside it). Auth0's names where Auth0
/// has the field.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredAction {
    /// `act_` and a suffix; never changes.
    pub id: String,
    /// Unique among Actions.
    pub name: String,
    /// The triggers it supports (`post-login`).
    pub supported_triggers: Vec<String>,
    /// What runs it: `wasm` (a WebAssembly component of the post-login
    /// world).
    pub runtime: String,
    /// Its secrets, handed to it as `event.secrets` (never shown back).
    #[serde(default)]
    pub secrets: Vec<StoredActionSecret>,
    /// Where it may connect (hosts; no provider is implied).
    #[serde(default)]
    pub egress: StoredMapperEgress,
    /// Its deadline, if not the default.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// SHA-256 of the draft component, if one is stored.
    #[serde(default)]
    pub draft_sha256: Option<String>,
    pub created_at: u64,
    pub updated_at: u64,
}

/// A legacy Auth0 Rule (`/api/v2/rules`): JavaScript run by the script
/// engine for every login, before the bound Actions, in `order`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredRule {
    /// `rul_` and a suffix; never changes.
    pub id: String,
    /// Unique among Rules.
    pub name: String,
    /// `function (user, context, callback) { … }`.
    pub script: String,
    /// Rules run in ascending order (ties by name).
    pub order: i64,
    pub enabled: bool,
    /// Auth0's stage: `login_success`, the only one Waypass runs.
    pub stage: String,
    /// Where it may connect (hosts), as an Action's.
    #[serde(default)]
    pub egress: StoredMapperEgress,
    /// Its deadline, if not the default.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    pub created_at: u64,
    pub updated_at: u64,
}

/// One secret of an Action.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredActionSecret {
    pub name: String,
    pub value: String,
}

/// Secret values are left out: a stored Action may be logged.
impl fmt::Debug for StoredAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredAction")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("runtime", &self.runtime)
            .field(
                "secrets",
                &self.secrets.iter().map(|s| &s.name).collect::<Vec<_>>(),
            )
            .field("egress", &self.egress)
            .field("draft_sha256", &self.draft_sha256)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection row as schema 1 wrote it (`ConnectionSpec::to_stored_json`
    /// of that time): optional fields left out, write-only ones added.
    const SCHEMA_1_CONNECTION: &str = r#"{"name":"acme","display_name":"Acme","enabled_clients":["shop"],
        "options":{"authorizationURL":"https://id.acme.test/authorize","tokenURL":"https://id.acme.test/token",
        "scope":"openid","client_id":"waypass","pkce_enabled":true,"token_endpoint_auth_method":"client_secret_post",
        "mapper":"acme-mapper","mapper_egress":{"allow_private_networks":false},
        "client_secret":"s3cret","customHeaders":{"Authorization":"Basic eA=="},"mapper_settings":{"api_key":"k"}}}"#;

    #[test]
    fn a_connection_row_of_schema_1_reads_back_with_its_secrets() {
        let spec: StoredConnectionSpec = serde_json::from_str(SCHEMA_1_CONNECTION).expect("reads");
        assert_eq!(spec.options.client_secret.as_deref(), Some("s3cret"));
        assert_eq!(spec.options.custom_headers["Authorization"], "Basic eA==");
        assert_eq!(spec.options.mapper_settings["api_key"], "k");
        assert!(spec.options.pkce_enabled);
        assert!(!spec.options.per_connection_callback);
        assert_eq!(spec.options.mapper_egress, StoredMapperEgress::default());
    }

    #[test]
    fn a_client_row_of_schema_1_reads_back_and_one_without_require_pkce_requires_it() {
        let client: StoredClient = serde_json::from_str(
            r#"{"client_id":"shop","name":"Shop","client_type":"confidential","secret_hash":null,
                "callbacks":["https://shop.test/cb"],"id_token_alg":"RS256","scopes":[]}"#,
        )
        .expect("reads");
        assert!(client.require_pkce);
        assert_eq!(client.id_token_alg, "RS256");
    }

    #[test]
    fn an_unknown_field_in_a_stored_row_is_an_error_not_dropped() {
        let with_extra =
            SCHEMA_1_CONNECTION.replace(r#""scope":"openid""#, r#""scope":"openid","surprise":1"#);
        assert!(serde_json::from_str::<StoredConnectionSpec>(&with_extra).is_err());
    }

    #[test]
    fn debug_never_shows_a_stored_secret() {
        let spec: StoredConnectionSpec = serde_json::from_str(SCHEMA_1_CONNECTION).expect("reads");
        let shown = format!("{spec:?}");
        for secret in ["s3cret", "Basic eA==", "\"k\""] {
            assert!(!shown.contains(secret), "{shown}");
        }
    }
}
