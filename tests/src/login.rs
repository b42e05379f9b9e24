//! A whole login setup for end-to-end tests and benchmarks: the broker on
//! 127.0.0.1:0, the development provider, and a "browser" that keeps cookies
//! and follows the login's redirects without following them into the app.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use openidconnect::reqwest;
use serde_json::json;
use url::Url;
use waypass::broker::config::{ClientConfig, Config};
use waypass::broker::limits::{Limits, RateLimits};
use waypass::broker::{Broker, BrokerParts, Clock, SystemClock};
use waypass::catalog::Catalog;
use waypass::dev_provider::{DevProvider, DevProviderHandle};
use waypass::keys::KeySet;
use waypass::mapper::LoadedMapper;
use waypass::mapper::{Runtime, RuntimeConfig};
use waypass::model::{ConnectionRecord, ConnectionSpec};
use waypass::secret::{SecretHash, SystemRandomTokens};
use waypass::store::{MemoryStore, Store as _};
use waypass::upstream::Upstream;

use crate::guests;

/// The confidential app: id, secret, callback.
pub const APP: &str = "app";
pub const APP_SECRET: &str = "app-secret-0123456789";
pub const APP_CALLBACK: &str = "http://app.test/callback";
/// A public app (PKCE, no secret).
pub const SPA: &str = "spa";
pub const SPA_CALLBACK: &str = "http://spa.test/callback";
/// A confidential app whose id_tokens are ES256.
pub const ES_APP: &str = "es-app";
/// The broker's client at the development provider.
pub const PROVIDER_CLIENT: &str = "waypass-at-devprov";
pub const PROVIDER_SECRET: &str = "provider-secret";
/// The management API's admin token in tests.
pub const ADMIN_TOKEN: &str = "admin-token-for-tests-0123456789abcdef";
/// The main connection: the seed-port mapper against the development provider.
pub const CONNECTION: &str = "devprov";
/// The PKCE verifier of every login the helpers start (RFC 7636 Appendix
/// B's), and its S256 challenge: every app must use PKCE by default.
pub const PKCE_VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
pub const PKCE_CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
/// How often a test bed sweeps expired state: often, so a test waiting for
/// a sweep waits little.
pub const TEST_SWEEP_INTERVAL: Duration = Duration::from_millis(50);

/// The broker's clock in a test bed: the system time when the bed starts,
/// moved only by the test, so expiry boundaries are exact.
#[derive(Debug)]
pub struct TestClock(AtomicU64);

impl TestClock {
    fn starting_now() -> Self {
        Self(AtomicU64::new(SystemClock.now()))
    }

    pub fn set(&self, now: u64) {
        self.0.store(now, Ordering::SeqCst);
    }

    pub fn advance(&self, seconds: u64) {
        self.0.fetch_add(seconds, Ordering::SeqCst);
    }
}

impl Clock for TestClock {
    fn now(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// One mapper runtime and one key set per test binary, as in a process.
/// Compiled artifacts are cached under the target directory, so the large
/// Python and JavaScript components compile once, not in every run.
pub static RUNTIME: LazyLock<Arc<Runtime>> = LazyLock::new(|| {
    let cache_dir = std::path::Path::new(guests::TARGET_DIR).join("artifact-cache");
    Arc::new(
        Runtime::new(RuntimeConfig {
            cache_dir: Some(cache_dir),
            ..RuntimeConfig::default()
        })
        .expect("runtime"),
    )
});
pub static KEYS: LazyLock<Arc<KeySet>> =
    LazyLock::new(|| Arc::new(KeySet::generate().expect("keys")));
/// The mappers every test bed registers, as version 1. `swap-me` is the
/// seed port too, for tests that register more versions of it.
pub const MAPPERS_V1: [(&str, &str); 4] = [
    ("auth0-example", guests::AUTH0_EXAMPLE),
    ("declarative", guests::DECLARATIVE),
    ("hostile", guests::HOSTILE),
    ("swap-me", guests::AUTH0_EXAMPLE),
];

/// [`MAPPERS_V1`], loaded once per test binary (each test bed's catalog
/// takes them as its writer would, instead of loading them again).
static MAPPERS: LazyLock<HashMap<&'static str, Arc<LoadedMapper>>> = LazyLock::new(|| {
    MAPPERS_V1
        .into_iter()
        .map(|(name, path)| {
            let mapper = RUNTIME.load(&guests::bytes(path)).expect("mapper loads");
            (name, Arc::new(mapper))
        })
        .collect()
});

/// A running broker and development provider.
pub struct TestBed {
    pub broker: Arc<Broker>,
    pub issuer: String,
    pub provider: DevProviderHandle,
    pub store: Arc<MemoryStore>,
    /// The broker's clock.
    pub clock: Arc<TestClock>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for TestBed {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// The default connection's spec against `provider` (an origin).
pub fn connection_spec(name: &str, provider: &str) -> serde_json::Value {
    json!({
        "name": name,
        "display_name": "Development provider",
        "enabled_clients": [APP, SPA, ES_APP],
        "options": {
            "authorizationURL": format!("{provider}/authorize"),
            "tokenURL": format!("{provider}/token"),
            "scope": "profile email",
            "client_id": PROVIDER_CLIENT,
            "client_secret": PROVIDER_SECRET,
            "icon_url": "https://cdn.example.com/devprov.png",
            "mapper": "auth0-example",
            "mapper_settings": {"userinfo_url": format!("{provider}/userinfo")},
            "mapper_egress": {"allow_private_networks": true}
        }
    })
}

impl TestBed {
    /// Starts with the default apps and connection; `customize` may change
    /// the configuration (connections as JSON in Auth0's shape) first.
    /// Every request comes from 127.0.0.1, so rate limits are off unless
    /// `customize` turns them on (`config.limits.rate.enabled`).
    pub async fn start(
        customize: impl FnOnce(&mut Vec<serde_json::Value>, &mut Config),
    ) -> TestBed {
        Self::start_with_tls(customize, None).await
    }

    /// [`TestBed::start`], serving https with `tls` when given (the
    /// issuer is then `https://127.0.0.1:PORT`).
    pub async fn start_with_tls(
        customize: impl FnOnce(&mut Vec<serde_json::Value>, &mut Config),
        tls: Option<waypass::broker::tls::TlsAcceptor>,
    ) -> TestBed {
        let broker_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let scheme = if tls.is_some() { "https" } else { "http" };
        let issuer = format!("{scheme}://{}", broker_listener.local_addr().expect("addr"));
        let provider = DevProvider::new()
            .with_client(
                PROVIDER_CLIENT,
                PROVIDER_SECRET,
                format!("{issuer}/login/callback"),
            )
            .start(
                tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind"),
            );
        let mut connections = vec![connection_spec(CONNECTION, provider.origin())];
        let mut config = Config {
            issuer: issuer.parse().expect("issuer"),
            listen: broker_listener.local_addr().expect("addr"),
            data_dir: std::env::temp_dir(),
            database_url: None,
            admin_token_file: None,
            secrets_key_file: None,
            tls_cert: None,
            tls_key: None,
            mappers_dir: None,
            mappers: Vec::new(),
            clients: vec![
                client(APP, Some(APP_SECRET), APP_CALLBACK, None),
                client(SPA, None, SPA_CALLBACK, None),
                client(ES_APP, Some(APP_SECRET), APP_CALLBACK, Some("ES256")),
            ],
            connections: Vec::new(),
            limits: Limits {
                rate: RateLimits {
                    enabled: false,
                    ..RateLimits::default()
                },
                sweep_interval: TEST_SWEEP_INTERVAL,
                ..Limits::default()
            },
            metrics_listen: None,
            log_retention_days: waypass::events::DEFAULT_LOG_RETENTION_DAYS,
            otlp_endpoint: None,
            console: Default::default(),
        };
        customize(&mut connections, &mut config);
        config.connections = connections
            .into_iter()
            .map(|c| serde_json::from_value::<ConnectionSpec>(c).expect("connection spec"))
            .collect();
        let store = Arc::new(MemoryStore::default());
        // The store holds the configuration, as after a start-up, and the
        // catalog is built from it.
        for client in config.clients().expect("clients").values() {
            store
                .put_client(&client.to_stored())
                .await
                .expect("store client");
        }
        for conn in config.connections().expect("connections").values() {
            let record = ConnectionRecord {
                id: conn.id.clone(),
                spec: conn.spec.clone(),
            };
            store
                .put_connection(&record.to_stored())
                .await
                .expect("store connection");
        }
        let catalog = Arc::new(Catalog::new(store.clone(), RUNTIME.clone()));
        let mut staged = Vec::new();
        for (name, path) in MAPPERS_V1 {
            let bytes = guests::bytes(path);
            let sha = waypass::mapper::sha256_hex(&bytes);
            let version = store
                .add_mapper_version(name, &bytes, &sha, "test", 0)
                .await
                .expect("store mapper");
            staged.push(catalog.stage(name, version.version, MAPPERS[name].clone()));
        }
        catalog.refresh().await.expect("the catalog loads");
        drop(staged);
        let clock = Arc::new(TestClock::starting_now());
        let broker = Arc::new(
            Broker::new(BrokerParts {
                issuer: config.issuer.clone(),
                catalog,
                runtime: RUNTIME.clone(),
                store: store.clone(),
                keys: KEYS.clone(),
                clock: clock.clone(),
                random: Arc::new(SystemRandomTokens::default()),
                upstream: Upstream::default(),
                admin_token: Some(SecretHash::of(ADMIN_TOKEN)),
                limits: config.limits.clone(),
            })
            .with_console(config.console.clone()),
        );
        // Traces only when the test asks (never from the environment).
        let broker = match &config.otlp_endpoint {
            Some(endpoint) => {
                let telemetry = waypass::telemetry::Telemetry::otlp(endpoint).expect("telemetry");
                let broker = Arc::into_inner(broker).expect("the only reference");
                Arc::new(broker.with_telemetry(Arc::new(telemetry)))
            }
            None => broker,
        };
        let server = match tls {
            Some(tls) => tokio::spawn(waypass::broker::server::serve_tls(
                broker_listener,
                tls,
                broker.clone(),
                std::future::pending(),
            )),
            None => tokio::spawn(waypass::broker::server::serve(
                broker_listener,
                broker.clone(),
                std::future::pending(),
            )),
        };
        TestBed {
            broker,
            issuer,
            provider,
            store,
            clock,
            server,
        }
    }

    /// The user as the broker recorded them.
    pub async fn broker_user(&self, user_id: &str) -> Option<waypass::store::User> {
        use waypass::store::Store as _;
        self.store.get_user(user_id).await.expect("memory store")
    }

    /// An `/authorize` URL for `client` with these extra parameters, and
    /// [`PKCE_CHALLENGE`] unless `extra` has a `code_challenge` of its own.
    pub fn authorize_url(
        &self,
        client_id: &str,
        redirect_uri: &str,
        extra: &[(&str, &str)],
    ) -> String {
        let mut params = extra.to_vec();
        if !extra.iter().any(|(k, _)| *k == "code_challenge") {
            params.extend([
                ("code_challenge", PKCE_CHALLENGE),
                ("code_challenge_method", "S256"),
            ]);
        }
        self.authorize_url_without_pkce(client_id, redirect_uri, &params)
    }

    /// An `/authorize` URL with exactly these parameters (no PKCE added).
    pub fn authorize_url_without_pkce(
        &self,
        client_id: &str,
        redirect_uri: &str,
        extra: &[(&str, &str)],
    ) -> String {
        let mut url = Url::parse(&format!("{}/authorize", self.issuer)).expect("url");
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", client_id)
            .append_pair("redirect_uri", redirect_uri)
            .extend_pairs(extra);
        url.to_string()
    }
}

fn client(id: &str, secret: Option<&str>, callback: &str, alg: Option<&str>) -> ClientConfig {
    serde_json::from_value(json!({
        "client_id": id,
        "type": if secret.is_some() { "confidential" } else { "public" },
        "client_secret": secret,
        "callbacks": [callback],
        "id_token_signed_response_alg": alg,
    }))
    .expect("client config")
}

pub use crate::browser::{Browser, Landing, http_client};

impl Browser {
    /// Walks a login from an `/authorize` URL: to the provider, through its
    /// form as `ada` (or denying), back through the broker, and stops at the
    /// first redirect to a URL outside `tb` (the app) or at a page.
    pub async fn login(&mut self, tb: &TestBed, authorize_url: &str, deny: bool) -> Landing {
        self.login_at(&tb.issuer, tb.provider.origin(), authorize_url, deny)
            .await
    }
}

/// Redeems the code in `app_redirect` (the broker's redirect to the app) at
/// `issuer`'s token endpoint, as `client_id` with Basic authentication and
/// [`PKCE_VERIFIER`].
pub async fn redeem(
    issuer: &str,
    client_id: &str,
    secret: &str,
    redirect_uri: &str,
    app_redirect: &str,
) -> serde_json::Value {
    let code = Url::parse(app_redirect)
        .expect("the app's redirect is a URL")
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| panic!("no code in {app_redirect}"));
    http_client()
        .post(format!("{issuer}/oauth/token"))
        .basic_auth(client_id, Some(secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", redirect_uri),
            ("code_verifier", PKCE_VERIFIER),
        ])
        .send()
        .await
        .expect("token request")
        .json()
        .await
        .unwrap_or(serde_json::Value::Null)
}

/// `GET /userinfo` with `access_token`.
pub async fn userinfo(issuer: &str, access_token: &str) -> serde_json::Value {
    http_client()
        .get(format!("{issuer}/userinfo"))
        .bearer_auth(access_token)
        .send()
        .await
        .expect("userinfo request")
        .json()
        .await
        .unwrap_or(serde_json::Value::Null)
}

/// Calls the management API at `issuer` (`/api/v2/{path}`) with `token` as
/// the bearer, if any, and a JSON `body`, if any; returns the status and the
/// answer's JSON (Null when it is empty or not JSON).
pub async fn api_call(
    issuer: &str,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let mut req = http_client().request(method, format!("{issuer}/api/v2/{path}"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("api request");
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::Null),
    )
}

/// [`api_call`] as the admin ([`ADMIN_TOKEN`]).
pub async fn admin_api(
    issuer: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    api_call(issuer, method, path, Some(ADMIN_TOKEN), body).await
}

/// Uploads `wasm` as a new version of mapper `name` at `issuer`, as the
/// admin; returns the status and the answer's JSON (Null when none).
pub async fn put_mapper(issuer: &str, name: &str, wasm: Vec<u8>) -> (u16, serde_json::Value) {
    let resp = http_client()
        .put(format!("{issuer}/api/v2/mappers/{name}"))
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", "application/wasm")
        .body(wasm)
        .send()
        .await
        .expect("put mapper");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(serde_json::Value::Null))
}

/// What the app learns at the end of a login: redeems the code in
/// `app_redirect` (the broker's redirect to [`APP_CALLBACK`]) at `issuer` as
/// [`APP`], and returns the `sub` `/userinfo` gives for the access token.
/// `Err` holds the token or userinfo answer that had no access token or
/// no `sub`.
pub async fn sub_after_login(issuer: &str, app_redirect: &str) -> Result<String, String> {
    let tokens = redeem(issuer, APP, APP_SECRET, APP_CALLBACK, app_redirect).await;
    let access_token = tokens["access_token"]
        .as_str()
        .ok_or_else(|| format!("no access token: {tokens}"))?;
    let info = userinfo(issuer, access_token).await;
    info["sub"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("no sub: {info}"))
}

/// The claims of a compact JWT, unverified.
pub fn jwt_claims(jwt: &str) -> serde_json::Value {
    let payload = jwt.split('.').nth(1).expect("a JWT has a payload");
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("JSON claims")
}

/// An access token for the client `id` from the client credentials grant
/// (RFC 6749 §4.4), the client authenticated with HTTP Basic (§2.3.1);
/// `extra` form fields beside the grant type (`audience`, `scope`).
pub async fn client_credentials(
    issuer: &str,
    id: &str,
    secret: &str,
    extra: &[(&str, &str)],
) -> String {
    let mut form = vec![("grant_type", "client_credentials")];
    form.extend_from_slice(extra);
    let resp: serde_json::Value = http_client()
        .post(format!("{issuer}/oauth/token"))
        .basic_auth(id, Some(secret))
        .form(&form)
        .send()
        .await
        .expect("token request")
        .json()
        .await
        .expect("token json");
    resp["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no access token: {resp}"))
        .to_owned()
}

/// A management API token of a new machine client holding `scopes`,
/// created by the admin.
pub async fn management_token(issuer: &str, scopes: &[&str]) -> String {
    let (status, created) = admin_api(
        issuer,
        reqwest::Method::POST,
        "clients",
        Some(json!({"name": "ops", "callbacks": ["https://ops.test/cb"], "scopes": scopes})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    client_credentials(
        issuer,
        created["client_id"].as_str().expect("client_id"),
        created["client_secret"].as_str().expect("client_secret"),
        &[],
    )
    .await
}
