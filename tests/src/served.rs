//! A broker started from a configuration file, as `waypass serve` starts
//! it, served on the test's own listener so that it can be stopped and
//! started again on the same address; and the configuration those tests
//! share: the seed mapper, the confidential app and a `devprov` connection
//! to the development provider.

use std::path::Path;
use std::sync::Arc;

use waypass::broker::Broker;
use waypass::broker::config::Config;
use waypass::dev_provider::{DevProvider, DevProviderHandle};

use crate::guests;
use crate::login::{APP, APP_CALLBACK, APP_SECRET, PKCE_CHALLENGE};

/// The broker's client id at the development provider, in these
/// configurations.
pub const PROVIDER_CLIENT: &str = "waypass";

/// A broker serving on a listener; stopped by [`Served::stop`].
pub struct Served {
    pub broker: Arc<Broker>,
    pub issuer: String,
    task: tokio::task::JoinHandle<()>,
}

impl Served {
    /// Starts a broker from `config` and serves it on `listener`.
    pub async fn start(config: &Config, listener: tokio::net::TcpListener) -> Served {
        let broker = Arc::new(
            Broker::from_config(config)
                .await
                .expect("the broker starts"),
        );
        let issuer = broker.issuer().to_owned();
        let task = tokio::spawn(waypass::broker::server::serve(
            listener,
            broker.clone(),
            std::future::pending(),
        ));
        Served {
            broker,
            issuer,
            task,
        }
    }

    /// Stops serving and drops the broker (its store closed), as a process
    /// that ends.
    pub async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
        drop(self.broker);
    }
}

/// A development provider on 127.0.0.1:0 that knows the broker at
/// `issuer` as [`PROVIDER_CLIENT`] with `secret`.
pub async fn provider_for(issuer: &str, secret: &str) -> DevProviderHandle {
    DevProvider::new()
        .with_client(PROVIDER_CLIENT, secret, format!("{issuer}/login/callback"))
        .start(
            tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind"),
        )
}

/// A configuration file's text: the issuer, then `top` (top-level keys:
/// `data_dir`, `database_url`, `admin_token_file`, `secrets_key_file`, …),
/// the confidential app and the `devprov` connection to the development
/// provider at `origin`, where the broker is [`PROVIDER_CLIENT`] with
/// `provider_secret`; `profile` ends the connection's options (its mapper,
/// or its `[connections.options.scripts]`). Tables may be appended.
pub fn devprov_config(
    issuer: &str,
    origin: &str,
    provider_secret: &str,
    top: &str,
    profile: &str,
) -> String {
    format!(
        r#"
issuer = "{issuer}"
{top}
[[clients]]
client_id = "{APP}"
client_secret = "{APP_SECRET}"
callbacks = ["{APP_CALLBACK}"]
[[connections]]
name = "devprov"
enabled_clients = ["{APP}"]
[connections.options]
authorizationURL = "{origin}/authorize"
tokenURL = "{origin}/token"
client_id = "{PROVIDER_CLIENT}"
client_secret = "{provider_secret}"
mapper_egress = {{ allow_private_networks = true }}
{profile}
"#
    )
}

/// [`devprov_config`] with the seed mapper (the Auth0 example's port) as
/// `devprov`'s profile code.
pub fn seed_config(issuer: &str, origin: &str, provider_secret: &str, top: &str) -> String {
    let profile =
        format!("mapper = \"seed\"\nmapper_settings = {{ userinfo_url = \"{origin}/userinfo\" }}");
    let mut text = devprov_config(issuer, origin, provider_secret, top, &profile);
    text.push_str(&format!(
        "[[mappers]]\nname = \"seed\"\npath = {:?}\n",
        guests::AUTH0_EXAMPLE
    ));
    text
}

/// Writes `text` to `dir/name` and loads it as `waypass serve --config`
/// does.
pub fn load_config(dir: &Path, name: &str, text: &str) -> Config {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write the configuration");
    Config::load(&path).expect("the configuration loads")
}

/// The app's `/authorize` URL at `issuer` through `devprov`, with PKCE
/// ([`PKCE_CHALLENGE`]) and `scope`.
pub fn authorize_url(issuer: &str, scope: &str) -> String {
    let scope = scope.replace(' ', "%20");
    let callback =
        url::form_urlencoded::byte_serialize(APP_CALLBACK.as_bytes()).collect::<String>();
    format!(
        "{issuer}/authorize?response_type=code&client_id={APP}&redirect_uri={callback}\
         &scope={scope}&connection=devprov&code_challenge={PKCE_CHALLENGE}&code_challenge_method=S256"
    )
}
