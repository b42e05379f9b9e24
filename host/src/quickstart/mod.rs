//! `waypass quickstart`: a whole login setup on one machine — the broker with
//! an embedded data directory, the development provider, the seed-port
//! mapper on a connection, and a demo app to click through.

mod demo_app;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

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
/// Broker's client id at the development provider.
const PROVIDER_CLIENT_ID: &str = "waypass";

/// Where and with what the quickstart runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Broker address (port 0: any free port).
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// The seed-port mapper component.
    pub mapper: PathBuf,
}

/// A running quickstart.
pub struct Quickstart {
    pub issuer: String,
    pub app_url: String,
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
        mappers_dir: None,
        mappers: vec![MapperConfig {
            name: mapper_name.into(),
            path: options.mapper.clone(),
        }],
        clients: vec![ClientConfig {
            client_id: APP_CLIENT_ID.into(),
            name: Some("Quickstart demo app".into()),
            client_type: ClientType::Confidential,
            callbacks: vec![format!("{app_url}/callback")],
            id_token_signed_response_alg: None,
            client_secret: Some(app_secret.expose().to_owned()),
            client_secret_env: None,
            client_secret_file: None,
            client_secret_sha256: None,
            require_pkce: true,
        }],
        connections: vec![ConnectionSpec {
            name: ConnectionName::parse(CONNECTION).map_err(anyhow::Error::msg)?,
            display_name: Some("Example OAuth2 (development provider)".into()),
            enabled_clients: vec![APP_CLIENT_ID.into()],
            options: options_json,
        }],
        limits: crate::broker::limits::Limits::default(),
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
