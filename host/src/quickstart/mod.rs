//! `waypass quickstart`: a whole login setup on one machine — the broker with
//! an embedded data directory, the development provider, the seed-port
//! mapper on a connection, and a demo app to click through.

pub mod demo_app;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use url::Url;

use crate::broker::Broker;
use crate::broker::config::{ClientConfig, Config, MapperConfig};
use crate::dev_provider::{DevProvider, DevProviderHandle};
use crate::model::{ClientType, ConnectionName, ConnectionOptions, ConnectionSpec, MapperEgress};
use crate::secret::{Random, Secret, SystemRandomTokens};

/// The demo app's client id.
pub const APP_CLIENT_ID: &str = "quickstart-app";
/// The connection's name.
pub const CONNECTION: &str = "example-oauth2";
/// The app the console at `/admin` signs in through (public, PKCE).
pub const CONSOLE_CLIENT_ID: &str = "quickstart-console";
/// Broker's client id at the development provider.
const PROVIDER_CLIENT_ID: &str = "waypass";

/// The example mapper (`plugins/mappers/auth0-example`, the seed port),
/// built by `waypass mapper build-example-mapper` (see
/// `host/assets/README.md`) and shipped inside the binary, as the script
/// engine is: the quickstart and the demo need neither a source tree nor a
/// toolchain, and start in a second rather than after a guest build.
pub const EXAMPLE_MAPPER_WASM: &[u8] = include_bytes!("../../assets/auth0-example.wasm");
/// What the shipped example was built from
/// ([`crate::build::example_mapper_inputs_digest`]).
pub const EXAMPLE_MAPPER_INPUTS: &str = include_str!("../../assets/auth0-example.inputs");
/// The example mapper's file in the quickstart's data directory.
const EXAMPLE_MAPPER_FILE: &str = "auth0-example.wasm";

/// Writes the shipped example mapper into `data_dir` (unless the same bytes
/// are there) and returns its path, for [`Options::mapper`]: the broker
/// registers mappers from files, like those a configuration names.
pub fn install_example_mapper(data_dir: &Path) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create the data directory {}", data_dir.display()))?;
    let path = data_dir.join(EXAMPLE_MAPPER_FILE);
    if std::fs::read(&path).ok().as_deref() != Some(EXAMPLE_MAPPER_WASM) {
        std::fs::write(&path, EXAMPLE_MAPPER_WASM)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(path)
}

/// Where and with what the quickstart runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Broker address (port 0: any free port).
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// The seed-port mapper component ([`install_example_mapper`] writes
    /// the one shipped in the binary).
    pub mapper: PathBuf,
}

/// A running quickstart.
pub struct Quickstart {
    pub issuer: String,
    pub app_url: String,
    /// The console: the development provider's account (ada) has the
    /// console role.
    pub console_url: String,
    pub provider: DevProviderHandle,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Quickstart {
    /// Starts everything; serves until dropped.
    pub async fn start(options: Options) -> anyhow::Result<Self> {
        let random = SystemRandomTokens::default();
        let broker_listener = TcpListener::bind(options.listen)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", options.listen))?;
        let broker_addr = broker_listener.local_addr()?;
        let issuer = format!("http://{broker_addr}");
        let app_listener = TcpListener::bind((broker_addr.ip(), 0)).await?;
        let app_url = format!("http://{}", app_listener.local_addr()?);
        let provider_listener = TcpListener::bind((broker_addr.ip(), 0)).await?;

        let provider_secret = random.token();
        let provider = DevProvider::new()
            .with_client(
                PROVIDER_CLIENT_ID,
                &provider_secret,
                format!("{issuer}/login/callback"),
            )
            .start(provider_listener);
        let origin = provider.origin();

        let app_secret = Secret::new(random.token());
        let config = config(
            &options,
            &issuer,
            origin,
            &app_url,
            &app_secret,
            &provider_secret,
        )?;
        let broker = Arc::new(Broker::from_config(&config).await?);
        let mut tasks = Vec::new();
        tasks.push(tokio::spawn(crate::broker::server::serve(
            broker_listener,
            broker,
            std::future::pending(),
        )));
        let app = demo_app::DemoApp::new(&issuer, &app_url, APP_CLIENT_ID, app_secret)?;
        tasks.push(tokio::spawn(app.serve(app_listener)));
        Ok(Self {
            console_url: format!("{issuer}{}", crate::admin::console::PREFIX),
            issuer,
            app_url,
            provider,
            tasks,
        })
    }
}

/// Dropping the quickstart stops its servers.
impl Drop for Quickstart {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn config(
    options: &Options,
    issuer: &str,
    provider: &str,
    app_url: &str,
    app_secret: &Secret,
    provider_secret: &str,
) -> anyhow::Result<Config> {
    let mapper_name = "auth0-example";
    let options_json = ConnectionOptions {
        authorization_url: format!("{provider}/authorize"),
        token_url: format!("{provider}/token"),
        scope: "profile".into(),
        client_id: PROVIDER_CLIENT_ID.into(),
        client_secret: Some(Secret::new(provider_secret)),
        pkce_enabled: true,
        mapper: Some(mapper_name.into()),
        mapper_settings: BTreeMap::from([("userinfo_url".into(), format!("{provider}/userinfo"))]),
        // The development provider listens on loopback.
        mapper_egress: MapperEgress {
            allowed_hosts: Vec::new(),
            allow_private_networks: true,
        },
        ..ConnectionOptions::default()
    };
    Ok(Config {
        issuer: Url::parse(issuer)?,
        listen: options.listen,
        data_dir: options.data_dir.clone(),
        database_url: None,
        admin_token_file: None,
        secrets_key_file: None,
        tls_cert: None,
        tls_key: None,
        mappers_dir: None,
        mappers: vec![MapperConfig {
            name: mapper_name.into(),
            path: options.mapper.clone(),
        }],
        clients: vec![
            ClientConfig {
                client_id: APP_CLIENT_ID.into(),
                name: Some("Quickstart demo app".into()),
                client_type: ClientType::Confidential,
                app_type: None,
                token_endpoint_auth_method: None,
                callbacks: vec![format!("{app_url}/callback")],
                id_token_signed_response_alg: None,
                client_secret: Some(app_secret.expose().to_owned()),
                client_secret_env: None,
                client_secret_file: None,
                client_secret_sha256: None,
                require_pkce: true,
                grant_types: None,
                allowed_logout_urls: Vec::new(),
                oidc_logout: None,
            },
            ClientConfig {
                client_id: CONSOLE_CLIENT_ID.into(),
                name: Some("Waypass console".into()),
                client_type: ClientType::Public,
                app_type: None,
                token_endpoint_auth_method: None,
                callbacks: vec![format!(
                    "{issuer}{}/callback",
                    crate::admin::console::PREFIX
                )],
                id_token_signed_response_alg: None,
                client_secret: None,
                client_secret_env: None,
                client_secret_file: None,
                client_secret_sha256: None,
                require_pkce: true,
                grant_types: None,
                allowed_logout_urls: Vec::new(),
                oidc_logout: None,
            },
        ],
        connections: vec![ConnectionSpec {
            name: ConnectionName::parse(CONNECTION).map_err(anyhow::Error::msg)?,
            display_name: Some("Example OAuth2 (development provider)".into()),
            enabled_clients: vec![APP_CLIENT_ID.into(), CONSOLE_CLIENT_ID.into()],
            options: options_json,
        }],
        limits: crate::broker::limits::Limits::default(),
        metrics_listen: None,
        log_retention_days: crate::events::DEFAULT_LOG_RETENTION_DAYS,
        otlp_endpoint: None,
        // The development provider's account signs in to the console.
        console: crate::admin::console::ConsoleConfig {
            client_id: Some(CONSOLE_CLIENT_ID.into()),
            admins: vec![format!(
                "oauth2|{CONNECTION}|{}",
                crate::dev_provider::default_user().uuid
            )],
        },
    })
}

/// The default data directory: `$XDG_DATA_HOME/waypass/quickstart`.
pub fn default_data_dir() -> PathBuf {
    let base = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".local/share")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("waypass").join("quickstart")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_example_mapper_is_built_from_the_current_sources() {
        let digest = crate::build::example_mapper_inputs_digest().expect("digest");
        assert_eq!(
            EXAMPLE_MAPPER_INPUTS.trim(),
            digest,
            "host/assets/auth0-example.wasm is stale: run `cargo run -p waypass -- mapper \
             build-example-mapper` and commit host/assets"
        );
    }

    #[test]
    fn the_shipped_example_mapper_is_a_component_written_once_into_the_data_directory() {
        // `\0asm`, version 0x0d, layer 1: a component, not a core module.
        assert_eq!(&EXAMPLE_MAPPER_WASM[..8], b"\0asm\x0d\0\x01\0");
        let data = tempfile::tempdir().expect("tempdir");
        let dir = data.path().join("new");
        let path = install_example_mapper(&dir).expect("installed");
        assert_eq!(std::fs::read(&path).expect("read"), EXAMPLE_MAPPER_WASM);
        std::fs::write(&path, b"stale").expect("write");
        let again = install_example_mapper(&dir).expect("installed again");
        assert_eq!(again, path);
        assert_eq!(
            std::fs::read(&path).expect("read"),
            EXAMPLE_MAPPER_WASM,
            "a stale copy is replaced"
        );
    }
}
