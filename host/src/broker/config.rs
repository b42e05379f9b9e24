//! `waypass serve --config FILE`: TOML configuration, environment overrides,
//! secrets from the environment or files (never required inline).
//!
//! ```toml
//! issuer = "https://login.example.com"   # WAYPASS_ISSUER
//! listen = "127.0.0.1:8080"              # WAYPASS_LISTEN
//! data_dir = "/var/lib/waypass"          # WAYPASS_DATA_DIR
//! # PostgreSQL instead of SQLite in data_dir (several instances, one database):
//! # database_url = "postgres://waypass:…@db.internal/waypass?sslmode=require"  # WAYPASS_DATABASE_URL (or _FILE)
//! # admin_token_file = "/etc/waypass/admin-token"                               # WAYPASS_ADMIN_TOKEN_FILE
//! # The key sealing secrets at rest (base64 of 32 bytes, one a line, the first sealing);
//! # WAYPASS_SECRETS_KEY overrides. Without one: generated in data_dir (SQLite), refused (PostgreSQL).
//! # secrets_key_file = "/etc/waypass/secrets.key"                               # WAYPASS_SECRETS_KEY_FILE
//! # Serve https yourself (PEM files; both or neither), e.g. for Auth0's SDKs:
//! # tls_cert = "/etc/waypass/tls/fullchain.pem"
//! # tls_key = "/etc/waypass/tls/key.pem"
//!
//! [[mappers]]
//! name = "acme-userinfo"
//! path = "mappers/acme.wasm"             # relative to this file
//!
//! [[clients]]
//! client_id = "shop"
//! client_secret_env = "SHOP_SECRET"      # or client_secret_file, client_secret_sha256
//! callbacks = ["https://shop.example.com/callback"]
//! # require_pkce = false                 # PKCE is required of every app unless turned off
//! allowed_logout_urls = ["https://shop.example.com/"]   # where logout may return
//! oidc_logout = { backchannel_logout_urls = ["https://shop.example.com/backchannel"] }
//! # grant_types = ["authorization_code", "refresh_token"]   # the default adds client_credentials
//!
//! [[connections]]
//! name = "acme"
//! enabled_clients = ["shop"]
//! [connections.options]
//! authorizationURL = "https://id.acme.test/oauth2/authorize"
//! tokenURL = "https://id.acme.test/oauth2/token"
//! scope = "profile"
//! client_id = "waypass"
//! client_secret_env = "ACME_SECRET"
//! mapper = "acme-userinfo"
//! mapper_settings = { userinfo_url = "https://id.acme.test/userinfo" }
//! issuer = "https://id.acme.test"         # RFC 9207: its answers must carry this `iss`
//! per_connection_callback = true         # it sends users to /login/callback/acme
//! # pkce_enabled = false                 # PKCE towards the provider is on unless turned off
//! logout_url = "https://id.acme.test/logout"   # where /v2/logout?federated sends the browser
//!
//! [limits]                               # see `broker::limits` for every field
//! max_outstanding_logins = 50000
//! trusted_proxies = ["10.0.0.2"]         # whose X-Forwarded-For names the client
//! [limits.rate]
//! authorize_per_ip = { burst = 300, per_minute = 60 }
//! [limits.sessions]                      # sessions and refresh tokens, in seconds
//! idle_seconds = 259200
//! refresh_token_absolute_seconds = 2592000
//! ```

pub mod check;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use url::Url;

use super::limits::Limits;
use crate::keys::Alg;
use crate::model::client_secret::ClientSecretHash;
use crate::model::{
    AppType, Client, ClientAuthMethod, ClientType, Connection, ConnectionSpec, GrantType,
    SecretSource, app_type_rules, check_app_type, check_backchannel_uri, check_grant_types,
    check_logout_urls, check_require_pkce,
};
use crate::secret::SecretHash;
use crate::store::DatabaseUrl;

/// The configuration file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Public base URL; the OIDC issuer.
    pub issuer: Url,
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// A PostgreSQL database holding the state instead of SQLite in
    /// `data_dir` (`WAYPASS_DATABASE_URL` overrides); shown with its
    /// password masked.
    #[serde(default)]
    pub database_url: Option<DatabaseUrl>,
    /// A directory watched for `NAME.wasm` files: each registers or swaps
    /// mapper `NAME` (optional).
    #[serde(default)]
    pub mappers_dir: Option<PathBuf>,
    /// A file holding the management API's bootstrap admin token
    /// (`WAYPASS_ADMIN_TOKEN` overrides).
    #[serde(default)]
    pub admin_token_file: Option<PathBuf>,
    /// A file holding the keys that seal secrets at rest
    /// (`WAYPASS_SECRETS_KEY` overrides; see `broker::secrets_key`).
    #[serde(default)]
    pub secrets_key_file: Option<PathBuf>,
    #[serde(default)]
    pub mappers: Vec<MapperConfig>,
    #[serde(default)]
    pub clients: Vec<ClientConfig>,
    #[serde(default)]
    pub connections: Vec<ConnectionSpec>,
    /// Logins in flight, rate limits, trusted proxies.
    #[serde(default)]
    pub limits: Limits,
    /// Serve https: a PEM certificate chain (leaf first)…
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    /// …and its PEM private key. Both or neither.
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// An address serving `/metrics` without authentication, for a
    /// scraper inside the network (e.g. `127.0.0.1:9100`); none by default
    /// (the main listener serves `/metrics` to a `read:metrics` token).
    #[serde(default)]
    pub metrics_listen: Option<SocketAddr>,
    /// Days log events are kept (the sweep deletes older ones).
    #[serde(default = "default_log_retention_days")]
    pub log_retention_days: u32,
    /// An OpenTelemetry collector's OTLP/HTTP base URL (e.g.
    /// `http://collector:4318`): one trace per login is sent there. None by
    /// default (`OTEL_EXPORTER_OTLP_ENDPOINT` is used when this is unset).
    #[serde(default)]
    pub otlp_endpoint: Option<url::Url>,
    /// The console at `/admin`: the app it signs in through and who may
    /// (the admin token always may).
    #[serde(default)]
    pub console: crate::admin::console::ConsoleConfig,
}

fn default_log_retention_days() -> u32 {
    crate::events::DEFAULT_LOG_RETENTION_DAYS
}

/// A mapper component registered by path.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MapperConfig {
    pub name: String,
    pub path: PathBuf,
}

/// An app. `Debug` leaves the inline secret out.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    pub client_id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(rename = "type", default)]
    pub client_type: ClientType,
    /// Auth0's `app_type`; when given it decides `type` (`spa`, `native`:
    /// public; `regular_web`, `non_interactive`: confidential).
    #[serde(default)]
    pub app_type: Option<AppType>,
    /// `none`, `client_secret_post` or `client_secret_basic`, enforced at
    /// the token endpoint; unset, a confidential app may use either.
    #[serde(default)]
    pub token_endpoint_auth_method: Option<ClientAuthMethod>,
    /// Required unless the app is `non_interactive`.
    #[serde(default)]
    pub callbacks: Vec<String>,
    #[serde(default)]
    pub id_token_signed_response_alg: Option<Alg>,
    /// Inline secret: allowed, but prefer the env, file or hash forms.
    #[serde(default)]
    pub client_secret: Option<String>,
    #[serde(default)]
    pub client_secret_env: Option<String>,
    #[serde(default)]
    pub client_secret_file: Option<PathBuf>,
    /// The secret's SHA-256 in hex: the config never holds the secret.
    #[serde(default)]
    pub client_secret_sha256: Option<String>,
    /// PKCE at `/authorize`: required unless `false` (confidential apps only).
    #[serde(default = "required")]
    pub require_pkce: bool,
    /// The grants the app may use; the default for its type if left out.
    #[serde(default)]
    pub grant_types: Option<Vec<GrantType>>,
    /// Where the app may send browsers after logout.
    #[serde(default)]
    pub allowed_logout_urls: Vec<String>,
    /// Auth0's `oidc_logout`: `{ backchannel_logout_urls = ["…"] }` (one URL).
    #[serde(default)]
    pub oidc_logout: Option<OidcLogoutConfig>,
}

/// Where an app receives back-channel logout tokens.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcLogoutConfig {
    #[serde(default)]
    pub backchannel_logout_urls: Vec<String>,
}

fn required() -> bool {
    true
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("client_id", &self.client_id)
            .field("name", &self.name)
            .field("client_type", &self.client_type)
            .field("callbacks", &self.callbacks)
            .field(
                "id_token_signed_response_alg",
                &self.id_token_signed_response_alg,
            )
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "[redacted]"),
            )
            .field("client_secret_env", &self.client_secret_env)
            .field("client_secret_file", &self.client_secret_file)
            .field("client_secret_sha256", &self.client_secret_sha256)
            .field("require_pkce", &self.require_pkce)
            .field("grant_types", &self.grant_types)
            .field("allowed_logout_urls", &self.allowed_logout_urls)
            .field("oidc_logout", &self.oidc_logout)
            .finish()
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("waypass-data")
}

impl Config {
    /// Reads `path`, applies `WAYPASS_*` overrides, resolves secrets and
    /// makes relative paths relative to the file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            anyhow::anyhow!("cannot read the configuration {}: {e}", path.display())
        })?;
        let mut config =
            Self::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        for m in &mut config.mappers {
            if m.path.is_relative() {
                m.path = base.join(&m.path);
            }
        }
        if config.data_dir.is_relative() {
            config.data_dir = base.join(&config.data_dir);
        }
        for path in [
            &mut config.admin_token_file,
            &mut config.secrets_key_file,
            &mut config.mappers_dir,
            &mut config.tls_cert,
            &mut config.tls_key,
        ]
        .into_iter()
        .flatten()
        {
            if path.is_relative() {
                *path = base.join(&*path);
            }
        }
        config.apply_env()?;
        Ok(config)
    }

    /// Parses TOML and resolves the secrets it points at.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let mut config: Config = toml::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))?;
        check_issuer(&config.issuer).map_err(|e| anyhow::anyhow!("issuer: {e}"))?;
        config.limits.check()?;
        if let Some(url) = &config.database_url {
            // Checked here, not while deserializing: TOML's errors quote
            // the line, and this one may hold a password.
            url.check()
                .map_err(|e| anyhow::anyhow!("database_url: {e}"))?;
        }
        for conn in &mut config.connections {
            conn.options
                .resolve_secrets()
                .map_err(|e| anyhow::anyhow!("connection `{}`: {e}", conn.name))?;
        }
        Ok(config)
    }

    fn apply_env(&mut self) -> anyhow::Result<()> {
        if let Ok(issuer) = std::env::var("WAYPASS_ISSUER") {
            self.issuer = issuer
                .parse()
                .map_err(|e| anyhow::anyhow!("WAYPASS_ISSUER `{issuer}`: {e}"))?;
            check_issuer(&self.issuer).map_err(|e| anyhow::anyhow!("WAYPASS_ISSUER: {e}"))?;
        }
        if let Ok(listen) = std::env::var("WAYPASS_LISTEN") {
            self.listen = listen
                .parse()
                .map_err(|e| anyhow::anyhow!("WAYPASS_LISTEN `{listen}`: {e}"))?;
        }
        if let Ok(dir) = std::env::var("WAYPASS_DATA_DIR") {
            self.data_dir = dir.into();
        }
        if let Some(path) = env_path("WAYPASS_ADMIN_TOKEN_FILE") {
            self.admin_token_file = Some(path);
        }
        if let Some(path) = env_path("WAYPASS_SECRETS_KEY_FILE") {
            self.secrets_key_file = Some(path);
        }
        // Empty counts as unset, as in most deployment tools' templates.
        if let Some(url) = std::env::var("WAYPASS_DATABASE_URL")
            .ok()
            .filter(|u| !u.is_empty())
        {
            // The error never repeats the URL: it may hold a password.
            self.database_url = Some(
                DatabaseUrl::parse(&url)
                    .map_err(|e| anyhow::anyhow!("WAYPASS_DATABASE_URL: {e}"))?,
            );
        } else if let Some(path) = env_path("WAYPASS_DATABASE_URL_FILE") {
            // A file, for secret stores that hand out files (systemd's
            // LoadCredential=, container secrets).
            let url = SecretSource::File(&path)
                .read()
                .map_err(|e| anyhow::anyhow!("WAYPASS_DATABASE_URL_FILE: {e}"))?;
            self.database_url = Some(
                DatabaseUrl::parse(url.trim())
                    .map_err(|e| anyhow::anyhow!("WAYPASS_DATABASE_URL_FILE: {e}"))?,
            );
        }
        Ok(())
    }

    /// The apps, checked.
    pub fn clients(&self) -> anyhow::Result<HashMap<String, Arc<Client>>> {
        let mut clients = HashMap::new();
        for c in &self.clients {
            let client = client(c).map_err(|e| anyhow::anyhow!("client `{}`: {e}", c.client_id))?;
            if clients
                .insert(c.client_id.clone(), Arc::new(client))
                .is_some()
            {
                anyhow::bail!("client `{}` is defined twice", c.client_id);
            }
        }
        Ok(clients)
    }

    /// The TLS acceptor `tls_cert` and `tls_key` make; `None` when neither
    /// is set (plain HTTP, e.g. behind a proxy that terminates TLS).
    pub fn tls_acceptor(&self) -> anyhow::Result<Option<tokio_rustls::TlsAcceptor>> {
        match (&self.tls_cert, &self.tls_key) {
            (None, None) => Ok(None),
            (Some(cert), Some(key)) => Ok(Some(super::tls::acceptor(cert, key)?)),
            _ => anyhow::bail!("tls_cert and tls_key go together: set both or neither"),
        }
    }

    /// The connections, checked.
    pub fn connections(&self) -> anyhow::Result<HashMap<String, Arc<Connection>>> {
        let mut connections = HashMap::new();
        for spec in &self.connections {
            let name = spec.name.to_string();
            let conn = Connection::new(Connection::config_id(&spec.name), spec.clone())
                .map_err(|e| anyhow::anyhow!("connection `{name}`: {e}"))?;
            if connections.insert(name.clone(), conn).is_some() {
                anyhow::bail!("connection `{name}` is defined twice");
            }
        }
        Ok(connections)
    }
}

/// A non-empty environment variable, as a path.
fn env_path(var: &str) -> Option<PathBuf> {
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// The broker serves its routes (`/authorize`, `/login/callback`, …) and
/// scopes its cookies at the root of its origin, so the issuer must be an
/// origin: an issuer with a path would advertise endpoints that do not exist.
fn check_issuer(issuer: &Url) -> Result<(), String> {
    if !matches!(issuer.scheme(), "https" | "http") || issuer.host_str().is_none() {
        return Err(format!("`{issuer}` must be an http(s) URL with a host"));
    }
    if issuer.path() != "/" || issuer.query().is_some() || issuer.fragment().is_some() {
        return Err(format!(
            "`{issuer}` has a path, query or fragment; Waypass is served at the root of its \
             origin, so give the origin alone (e.g. `{}`)",
            issuer.origin().ascii_serialization()
        ));
    }
    Ok(())
}

fn client(c: &ClientConfig) -> Result<Client, String> {
    let client_type = c
        .app_type
        .map_or(c.client_type, |t| app_type_rules(t).client_type);
    let app_type = c.app_type.unwrap_or(AppType::default_for(client_type));
    check_app_type(
        app_type,
        client_type,
        c.token_endpoint_auth_method,
        &c.callbacks,
    )?;
    // A secret from the file could have been chosen by a person: stored
    // with argon2id. A hash given in the file stays the SHA-256 it is.
    let slow = |secret: &str| ClientSecretHash::slow(secret).map_err(|e| e.to_string());
    let secret_hash = match (
        &c.client_secret,
        &c.client_secret_env,
        &c.client_secret_file,
        &c.client_secret_sha256,
    ) {
        (Some(s), None, None, None) => Some(slow(s)?),
        (None, Some(var), None, None) => Some(slow(
            &SecretSource::Env(var)
                .read()
                .map_err(|e| format!("client_secret_env: {e}"))?,
        )?),
        (None, None, Some(path), None) => Some(slow(
            &SecretSource::File(path)
                .read()
                .map_err(|e| format!("client_secret_file: {e}"))?,
        )?),
        (None, None, None, Some(hex)) => Some(ClientSecretHash::Sha256(
            SecretHash::from_hex(hex)
                .ok_or_else(|| "client_secret_sha256 is not 64 hex digits".to_string())?,
        )),
        (None, None, None, None) => None,
        _ => return Err("give the secret one way only".into()),
    };
    match (client_type, &secret_hash) {
        (ClientType::Confidential, None) => {
            return Err("a confidential client needs a secret".into());
        }
        (ClientType::Public, Some(_)) => return Err("a public client has no secret".into()),
        _ => {}
    }
    check_require_pkce(client_type, c.require_pkce)?;
    let grant_types = c
        .grant_types
        .clone()
        .unwrap_or_else(|| app_type_rules(app_type).grants.to_vec());
    check_grant_types(client_type, &grant_types)?;
    check_logout_urls(&c.allowed_logout_urls)?;
    let backchannel_logout_uri = match c
        .oidc_logout
        .as_ref()
        .map(|o| o.backchannel_logout_urls.as_slice())
    {
        None | Some([]) => None,
        Some([one]) => {
            check_backchannel_uri(one)?;
            Some(one.clone())
        }
        Some(_) => return Err("oidc_logout.backchannel_logout_urls takes one URL".into()),
    };
    Ok(Client {
        client_id: c.client_id.clone(),
        name: c.name.clone().unwrap_or_else(|| c.client_id.clone()),
        client_type,
        app_type,
        token_endpoint_auth_method: c.token_endpoint_auth_method,
        secret_hash,
        callbacks: c.callbacks.clone(),
        id_token_alg: c.id_token_signed_response_alg.unwrap_or(Alg::Rs256),
        scopes: Vec::new(),
        require_pkce: c.require_pkce,
        grant_types,
        allowed_logout_urls: c.allowed_logout_urls.clone(),
        backchannel_logout_uri,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ProfileSource;

    const EXAMPLE: &str = r#"
        issuer = "https://login.example.com"
        [[clients]]
        client_id = "shop"
        client_secret_sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
        callbacks = ["https://shop.example.com/cb"]
        id_token_signed_response_alg = "ES256"
        [[connections]]
        name = "acme"
        enabled_clients = ["shop"]
        [connections.options]
        authorizationURL = "https://id.acme.test/authorize"
        tokenURL = "https://id.acme.test/token"
        client_id = "w"
        client_secret = "inline-ok"
        mapper = "m"
        authParams = { prompt = "login" }
    "#;

    #[test]
    fn a_configuration_with_clients_and_connections_loads() {
        let config = Config::parse(EXAMPLE).expect("parses");
        let clients = config.clients().expect("clients");
        assert!(
            clients["shop"]
                .secret_hash
                .as_ref()
                .is_some_and(|h| h.matches("test"))
        );
        assert_eq!(clients["shop"].id_token_alg, Alg::Es256);
        let connections = config.connections().expect("connections");
        assert_eq!(
            connections["acme"].spec.options.auth_params["prompt"],
            "login"
        );
        assert_eq!(config.listen, default_listen());
    }

    #[test]
    fn the_example_configuration_is_valid() {
        let text = include_str!("../../../examples/waypass.toml");
        let config: Config = toml::from_str(text).expect("examples/waypass.toml parses");
        assert_eq!(config.clients().expect("clients").len(), 2);
        assert_eq!(config.connections.len(), 2);
        let connections = config.connections().expect("connections");
        let acme = &connections["acme"];
        assert_eq!(
            acme.spec.options.client_secret_env.as_deref(),
            Some("ACME_CLIENT_SECRET")
        );
        assert!(
            acme.sandbox
                .egress
                .allowed_hosts
                .iter()
                .any(|h| h.to_string() == "api.acme.example")
        );
        assert_eq!(
            acme.spec.options.issuer.as_deref(),
            Some("https://id.acme.example")
        );
        assert!(acme.spec.options.per_connection_callback);
        assert_eq!(config.limits.trusted_proxies, ["127.0.0.1"]);
        let legacy = &connections["legacy"];
        assert!(
            matches!(&legacy.profile, ProfileSource::Script(s) if s.contains("request.get(")),
            "{:?}",
            legacy.profile
        );
    }

    #[test]
    fn a_configured_authorization_url_with_response_mode_is_refused_saying_why() {
        let text = EXAMPLE.replace(
            "https://id.acme.test/authorize",
            "https://id.acme.test/authorize?response_mode=form_post",
        );
        let err = Config::parse(&text)
            .and_then(|c| c.connections())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("connection `acme`")
                && err.contains("authorizationURL must not carry `response_mode`"),
            "{err}"
        );
    }

    #[test]
    fn app_types_decide_the_client_type_and_a_machine_app_needs_no_callback() {
        let text = r#"
            issuer = "https://login.example.com"
            [[clients]]
            client_id = "cron"
            app_type = "non_interactive"
            client_secret = "inline-ok"
            [[clients]]
            client_id = "spa"
            app_type = "spa"
            callbacks = ["https://spa.example.com/cb"]
            [[clients]]
            client_id = "web"
            app_type = "regular_web"
            client_secret = "inline-ok"
            callbacks = ["https://web.example.com/cb"]
        "#;
        let clients = Config::parse(text)
            .expect("parses")
            .clients()
            .expect("clients");
        assert_eq!(clients["cron"].app_type, AppType::NonInteractive);
        assert!(clients["cron"].callbacks.is_empty());
        assert_eq!(clients["spa"].client_type, ClientType::Public);
        let err = Config::parse(&text.replace(
            r#"callbacks = ["https://web.example.com/cb"]"#,
            "callbacks = []",
        ))
        .expect("parses")
        .clients()
        .map(|_| ())
        .unwrap_err()
        .to_string();
        assert!(err.contains("callback"), "{err}");
    }

    #[test]
    fn a_tls_certificate_without_its_key_is_refused() {
        let config = Config::parse(&format!("tls_cert = \"cert.pem\"\n{EXAMPLE}")).expect("parses");
        let err = config.tls_acceptor().map(|_| ()).unwrap_err().to_string();
        assert!(err.contains("set both or neither"), "{err}");
        let plain = Config::parse(EXAMPLE).expect("parses");
        assert!(plain.tls_acceptor().expect("no TLS").is_none());
    }

    #[test]
    fn unknown_fields_are_refused_with_their_name() {
        let err = Config::parse("issuer = \"https://x\"\nlisten_port = 3").unwrap_err();
        assert!(err.to_string().contains("listen_port"), "{err}");
    }

    #[test]
    fn a_secret_from_a_missing_environment_variable_is_an_error_naming_it() {
        let text = EXAMPLE.replace(
            "client_secret = \"inline-ok\"",
            "client_secret_env = \"WAYPASS_TEST_UNSET_VAR\"",
        );
        let err = Config::parse(&text).unwrap_err();
        assert!(err.to_string().contains("WAYPASS_TEST_UNSET_VAR"), "{err}");
    }

    #[test]
    fn a_confidential_client_without_a_secret_is_refused() {
        let text = r#"
            issuer = "https://login.example.com"
            [[clients]]
            client_id = "x"
            callbacks = ["https://x.example.com/cb"]
        "#;
        let err = Config::parse(text).expect("parses").clients().unwrap_err();
        assert!(err.to_string().contains("needs a secret"), "{err}");
    }

    #[test]
    fn an_issuer_with_a_path_is_refused_naming_the_origin() {
        for bad in [
            "https://x.example/auth",
            "https://x.example/auth/",
            "https://x.example/?tenant=a",
        ] {
            let err = Config::parse(&format!("issuer = \"{bad}\"")).unwrap_err();
            assert!(
                err.to_string().contains("https://x.example`"),
                "{bad}: {err}"
            );
        }
        for ok in [
            "https://x.example",
            "https://x.example/",
            "http://127.0.0.1:8080",
        ] {
            Config::parse(&format!("issuer = \"{ok}\"")).expect(ok);
        }
    }

    #[test]
    fn every_app_requires_pkce_unless_a_confidential_one_turns_it_off() {
        let config = Config::parse(EXAMPLE).expect("parses");
        assert!(config.clients().expect("clients")["shop"].require_pkce);
        let off = EXAMPLE.replace(
            "id_token_signed_response_alg = \"ES256\"",
            "id_token_signed_response_alg = \"ES256\"\nrequire_pkce = false",
        );
        let config = Config::parse(&off).expect("parses");
        assert!(!config.clients().expect("clients")["shop"].require_pkce);
        let public = r#"
            issuer = "https://login.example.com"
            [[clients]]
            client_id = "spa"
            type = "public"
            callbacks = ["https://spa.example.com/cb"]
            require_pkce = false
        "#;
        let err = Config::parse(public)
            .expect("parses")
            .clients()
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("public client always requires PKCE"),
            "{err}"
        );
    }

    #[test]
    fn pkce_towards_the_provider_is_on_unless_the_connection_turns_it_off() {
        let connections = Config::parse(EXAMPLE)
            .expect("parses")
            .connections()
            .expect("connections");
        assert!(connections["acme"].spec.options.pkce_enabled);
        let off = EXAMPLE.replace("mapper = \"m\"", "mapper = \"m\"\npkce_enabled = false");
        let connections = Config::parse(&off)
            .expect("parses")
            .connections()
            .expect("connections");
        assert!(!connections["acme"].spec.options.pkce_enabled);
    }

    #[test]
    fn the_limits_table_is_read_defaulted_and_checked() {
        let config = Config::parse(EXAMPLE).expect("parses");
        assert_eq!(config.limits, Limits::default());
        let text = format!(
            "{EXAMPLE}\n[limits]\nmax_outstanding_logins = 10\ntrusted_proxies = [\"10.0.0.0/8\"]\n\
             [limits.rate]\nenabled = false\nauthorize_per_ip = {{ burst = 5, per_minute = 2 }}\n"
        );
        let config = Config::parse(&text).expect("parses");
        assert_eq!(config.limits.max_outstanding_logins, 10);
        assert_eq!(config.limits.trusted_proxies, ["10.0.0.0/8"]);
        assert!(!config.limits.rate.enabled);
        assert_eq!(config.limits.rate.authorize_per_ip.burst, 5);
        assert_eq!(
            config.limits.rate.callback_per_ip,
            crate::broker::limits::CALLBACK_PER_IP,
            "the others keep their defaults"
        );
        for (bad, needle) in [
            (
                "[limits.rate]\ncallback_per_ip = { burst = 0, per_minute = 1 }",
                "callback_per_ip",
            ),
            (
                "[limits]\ntrusted_proxies = [\"proxy.internal\"]",
                "proxy.internal",
            ),
            (
                "[limits]\nmax_outstanding_logins = 0",
                "max_outstanding_logins",
            ),
            ("[limits]\nmax_logins = 3", "max_logins"),
        ] {
            let err = Config::parse(&format!("{EXAMPLE}\n{bad}\n")).unwrap_err();
            assert!(err.to_string().contains(needle), "{bad}: {err}");
        }
    }

    #[test]
    fn debug_never_shows_an_inline_client_secret() {
        let text = r#"
            issuer = "https://login.example.com"
            [[clients]]
            client_id = "x"
            client_secret = "inline-s3cret"
            callbacks = ["https://x.example.com/cb"]
        "#;
        let config = Config::parse(text).expect("parses");
        let shown = format!("{config:?}");
        assert!(
            !shown.contains("inline-s3cret") && shown.contains("[redacted]"),
            "{shown}"
        );
    }

    #[test]
    fn a_database_url_selects_postgres_and_debug_masks_its_password() {
        let config = Config::parse(
            r#"
            issuer = "https://login.example.com"
            database_url = "postgres://waypass:db-s3cret@db.internal/waypass"
        "#,
        )
        .expect("parses");
        assert_eq!(
            config.database_url.as_ref().map(DatabaseUrl::expose),
            Some("postgres://waypass:db-s3cret@db.internal/waypass")
        );
        let shown = format!("{config:?}");
        assert!(!shown.contains("db-s3cret"), "{shown}");
        assert!(
            Config::parse(EXAMPLE)
                .expect("parses")
                .database_url
                .is_none(),
            "SQLite by default"
        );
    }

    #[test]
    fn a_database_url_that_is_not_postgres_is_refused_without_repeating_it() {
        let err = Config::parse(
            r#"
            issuer = "https://login.example.com"
            database_url = "mysql://waypass:db-s3cret@db.internal/waypass"
        "#,
        )
        .expect_err("refused")
        .to_string();
        assert!(err.contains("postgres://"), "{err}");
        assert!(!err.contains("db-s3cret"), "{err}");
    }
}
