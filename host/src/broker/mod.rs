//! The login broker: `/authorize` → provider → `/login/callback` → app, and
//! the OpenID Connect provider side (`/oauth/token`, `/userinfo`, discovery).
//!
//! Domain functions here take parsed input and return outcomes; the HTTP
//! layer ([`server`]) only parses, calls one of them and maps the result.
//! Time ([`Clock`]), randomness ([`crate::secret::Random`]) and the upstream HTTP
//! client are passed in, so tests control them.

mod authorize;
pub mod backchannel;
mod callback;
mod connection_keys;
pub mod linking;
pub mod profile_sync;
mod sealed;
pub use connection_keys::ConnectionKeysError;
pub mod config;
mod events;
mod idp_tokens;
pub mod issue;
pub mod limits;
pub mod login_page;
pub mod logout;
pub mod oauth;
pub mod pages;
mod refresh;
pub mod revoke;
pub mod rotation;
pub mod secrets_key;
pub mod server;
pub mod session;
mod startup;
pub use startup::open_sealed_store;
pub mod tls;
mod token;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use url::Url;

pub use authorize::{AuthorizeOutcome, MAX_PARAM_BYTES};
pub use callback::CallbackOutcome;
pub use logout::LogoutOutcome;
pub use session::{SessionCookie, session_cookie_name};
pub use token::JsonReply;

use crate::catalog::{Catalog, Snapshot};
use crate::keys::KeySet;
use crate::mapper::{LoadedMapper, Runtime};
use crate::model::{Client, Connection, ProfileSource};
use crate::script::ScriptEngine;
use crate::secret::Random;
use crate::store::{Store, StoreError, Swept};
use crate::upstream::Upstream;
use limits::{Limits, RateLimiter};

/// Time for a person to log in at the provider.
pub const LOGIN_TRANSACTION_TTL: Duration = Duration::from_secs(600);
/// Authorization codes are redeemed at once by the app's backend; RFC 6749
/// §4.1.2 allows at most ten minutes, one is plenty.
pub const AUTHORIZATION_CODE_TTL: Duration = Duration::from_secs(60);
/// Lifetime of our access tokens and id_tokens.
pub const TOKEN_TTL: Duration = Duration::from_secs(3600);
/// `POST /api/v2/connections/{id}/try` calls running at once, all
/// connections together: a test tool, not the login path. Each holds a
/// pool slot for up to its mapper's deadline (a minute at most), so a
/// caller looping on `try` against a provider that never answers would
/// otherwise take the slots logins need.
pub const MAX_CONCURRENT_TRY_CALLS: usize = 8;
/// The store lease the sweep of expired state takes: one instance of a
/// deployment sweeps at a time (the others would delete nothing but
/// compete for the same rows).
pub const SWEEP_LEASE: &str = "sweep";
/// The mapper setting that carries a provider's verified id_token claims
/// (JSON) to mappers and scripts; `waypass:` names cannot be configured.
pub const ID_TOKEN_CLAIMS_SETTING: &str = "waypass:id_token_claims";
/// How many sweep intervals a sweep lease lasts. Its holder renews it at
/// every sweep, so a holder that misses a tick (a pause, a slow store)
/// keeps it; an instance that dies is replaced within this many intervals.
pub const SWEEP_LEASE_INTERVALS: u32 = 3;

/// Seconds since the Unix epoch, from a source tests can control.
pub trait Clock: Send + Sync {
    fn now(&self) -> u64;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }
}

/// The apps and connections the configuration file defines. The file is
/// their source of truth (it is applied again at every start), so the
/// management API reads them but refuses to change or delete them.
#[derive(Debug, Default, Clone)]
pub struct ConfigDefined {
    /// Client ids.
    pub clients: HashSet<String>,
    /// Connection names.
    pub connections: HashSet<String>,
    /// Mapper names the file's `[[mappers]]` define or its connections use:
    /// replacing their code through the API or the watched directory would
    /// change what a connection the file owns does (and which `user_id`s it
    /// issues) behind the file's back.
    pub mappers: HashSet<String>,
}

/// Everything the broker needs, built once at start-up.
pub struct BrokerParts {
    /// Public base URL, e.g. `https://login.example.com` (no trailing slash).
    pub issuer: Url,
    /// The catalog, following `store` (loaded or not: `/readyz` says).
    pub catalog: Arc<Catalog>,
    pub runtime: Arc<Runtime>,
    pub store: Arc<dyn Store>,
    pub keys: Arc<KeySet>,
    pub clock: Arc<dyn Clock>,
    pub random: Arc<dyn Random>,
    pub upstream: Upstream,
    /// SHA-256 of the bootstrap admin token for the management API.
    pub admin_token: Option<crate::secret::SecretHash>,
    /// Logins in flight, rate limits, the sweep timer.
    pub limits: Limits,
}

/// The broker.
pub struct Broker {
    issuer: String,
    issuer_url: Url,
    /// `<issuer>/login/callback`, sent to providers on every login (but
    /// for connections with a callback of their own).
    callback_url: String,
    /// Discovery depends only on the issuer: built once, served as it is.
    discovery_json: Bytes,
    /// What is served: a snapshot of the store, swapped atomically.
    pub(crate) catalog: Arc<Catalog>,
    pub(crate) runtime: Arc<Runtime>,
    pub(crate) store: Arc<dyn Store>,
    /// The signing keys, swapped when a rotation (here or on another
    /// instance) stores a new key set.
    pub(crate) keys: arc_swap::ArcSwap<KeySet>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) random: Arc<dyn Random>,
    upstream: Upstream,
    pub(crate) admin_token: Option<crate::secret::SecretHash>,
    limits: Limits,
    rate: RateLimiter,
    /// This instance among those sharing the store (it holds leases as it).
    instance_id: String,
    /// Counts completed sweep ticks, for whoever waits on one.
    sweeps: tokio::sync::watch::Sender<u64>,
    /// What the configuration file defines (read-only through the API).
    pub(crate) config_defined: ConfigDefined,
    /// Checks apps' client secrets at the token endpoint.
    client_secrets: crate::model::client_secret::Verifier,
    /// Places for `try` calls ([`MAX_CONCURRENT_TRY_CALLS`]).
    pub(crate) try_calls: tokio::sync::Semaphore,
    /// What `/metrics` reports (the store above is timed into it).
    pub(crate) metrics: Arc<crate::metrics::Metrics>,
    /// The log of what happened, queued for the store.
    pub(crate) events: crate::events::EventSink,
    /// Log events older than this are deleted by the sweep.
    log_retention: Duration,
    /// Sends back-channel logout tokens to apps.
    backchannel: backchannel::Backchannel,
    /// Where logins' traces go, when traces are on.
    pub(crate) telemetry: Option<Arc<crate::telemetry::Telemetry>>,
    /// Who may sign in to the console at `/admin`, and through which app.
    pub(crate) console: crate::admin::console::ConsoleConfig,
}

impl Broker {
    pub fn new(parts: BrokerParts) -> Self {
        let issuer = parts.issuer.as_str().trim_end_matches('/').to_owned();
        let instance_id = format!("inst_{}", parts.random.identifier(16));
        let metrics = Arc::new(crate::metrics::Metrics::new());
        let store = crate::metrics::InstrumentedStore::wrap(parts.store, metrics.clone());
        let events = crate::events::EventSink::new(store.clone(), &instance_id);
        Self {
            callback_url: format!("{issuer}/login/callback"),
            discovery_json: Bytes::from(token::discovery_document(&issuer).to_string()),
            issuer,
            issuer_url: parts.issuer,
            catalog: parts.catalog,
            runtime: parts.runtime,
            store,
            keys: arc_swap::ArcSwap::new(parts.keys),
            clock: parts.clock,
            random: parts.random,
            upstream: parts.upstream,
            admin_token: parts.admin_token,
            rate: RateLimiter::new(&parts.limits),
            limits: parts.limits,
            instance_id,
            sweeps: tokio::sync::watch::Sender::new(0),
            config_defined: ConfigDefined::default(),
            client_secrets: crate::model::client_secret::Verifier::new(),
            try_calls: tokio::sync::Semaphore::new(MAX_CONCURRENT_TRY_CALLS),
            metrics,
            events,
            log_retention: Duration::from_secs(
                u64::from(crate::events::DEFAULT_LOG_RETENTION_DAYS) * 86_400,
            ),
            backchannel: backchannel::Backchannel::new(),
            telemetry: None,
            console: crate::admin::console::ConsoleConfig::default(),
        }
    }

    /// Sends a trace of every login to `telemetry`'s collector.
    pub fn with_telemetry(mut self, telemetry: Arc<crate::telemetry::Telemetry>) -> Self {
        self.telemetry = Some(telemetry);
        self
    }

    /// Where logins' traces go, if anywhere.
    pub fn telemetry(&self) -> Option<&Arc<crate::telemetry::Telemetry>> {
        self.telemetry.as_ref()
    }

    /// Sets who may sign in to the console (`[console]` in the
    /// configuration file).
    pub fn with_console(mut self, console: crate::admin::console::ConsoleConfig) -> Self {
        self.console = console;
        self
    }

    /// Keeps log events `days` days (the sweep deletes older ones).
    pub fn with_log_retention_days(mut self, days: u32) -> Self {
        self.log_retention = Duration::from_secs(u64::from(days) * 86_400);
        self
    }

    /// The metrics this broker records (turn them off for a baseline).
    pub fn metrics(&self) -> &crate::metrics::Metrics {
        &self.metrics
    }

    /// `/metrics` as served: the Prometheus text exposition.
    pub fn metrics_text(&self) -> String {
        self.metrics.render(self.runtime.calls_running())
    }

    /// Marks what the configuration file defines: the management API will
    /// refuse to change or delete those apps and connections.
    pub fn with_config_defined(mut self, defined: ConfigDefined) -> Self {
        self.config_defined = defined;
        self
    }

    /// The script engine, loaded on first use (compiled once, then read from
    /// the runtime's artifact cache).
    pub async fn script_engine(&self) -> Result<Arc<ScriptEngine>, String> {
        self.catalog.script_engine().await
    }

    /// The catalog this broker serves.
    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    /// This instance's id among those sharing the store.
    pub fn instance_id(&self) -> &str {
        &self.instance_id
    }

    /// The issuer identifier (RFC 8414 §2), without a trailing slash.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Where providers send users back: `<issuer>/login/callback`.
    pub fn callback_url(&self) -> &str {
        &self.callback_url
    }

    /// Where `conn`'s provider sends users back: the shared callback, or
    /// `<issuer>/login/callback/<name>` for a connection with its own.
    pub fn callback_url_for(&self, conn: &Connection) -> String {
        if conn.spec.options.per_connection_callback {
            format!("{}/{}", self.callback_url, conn.name())
        } else {
            self.callback_url.clone()
        }
    }

    /// Cookies get `Secure` (and the `__Host-` prefix) when the issuer is https.
    pub(crate) fn secure_cookies(&self) -> bool {
        self.issuer_url.scheme() == "https"
    }

    /// The rate limits, for the HTTP layer.
    pub fn rate_limits(&self) -> &RateLimiter {
        &self.rate
    }

    /// How often [`Broker::sweep_expired`] runs when served.
    pub fn sweep_interval(&self) -> Duration {
        self.limits.sweep_interval
    }

    /// Deletes expired transactions, codes, tokens, sessions and refresh
    /// tokens and forgets full rate buckets, whatever other instances do.
    pub async fn sweep_expired(&self) -> Result<Swept, StoreError> {
        let now = self.clock.now();
        let swept = self.store.sweep_expired(now).await;
        self.store.sweep_sessions(now).await?;
        self.rate.prune();
        swept
    }

    /// What `serve` runs every [`Broker::sweep_interval`]: forgets full
    /// rate buckets (this instance's own), and — if this instance holds
    /// the [`SWEEP_LEASE`], taking or renewing it — deletes the store's
    /// expired transactions, codes and tokens. `None`: another instance
    /// holds the lease and sweeps.
    pub async fn sweep_tick(&self) -> Result<Option<Swept>, StoreError> {
        self.rate.prune();
        let now = self.clock.now();
        let ttl = (self.limits.sweep_interval * SWEEP_LEASE_INTERVALS)
            .as_secs()
            .max(1);
        let swept = if self
            .store
            .try_lease(SWEEP_LEASE, &self.instance_id, ttl, now)
            .await?
        {
            let swept = self.store.sweep_expired(now).await?;
            let cutoff = now.saturating_sub(self.log_retention.as_secs());
            self.store.delete_log_events_before(cutoff).await?;
            let sessions = self.store.sweep_sessions(now).await?;
            tracing::debug!(?sessions, "expired sessions and refresh tokens swept");
            Some(swept)
        } else {
            None
        };
        self.sweeps.send_modify(|n| *n += 1);
        Ok(swept)
    }

    /// How many argon2 verifications the token endpoint has run: one per
    /// slow-hash app after a start, and one per wrong secret presented for
    /// such an app.
    pub fn slow_secret_verifications(&self) -> u64 {
        self.client_secrets.slow_verifications()
    }

    /// Completed sweep ticks so far; `changed()` wakes at the next one.
    pub fn sweeps(&self) -> tokio::sync::watch::Receiver<u64> {
        self.sweeps.subscribe()
    }

    pub(crate) fn client(&self, client_id: &str) -> Option<Arc<Client>> {
        self.catalog_read().clients.get(client_id).cloned()
    }

    pub(crate) fn connection(&self, name: &str) -> Option<Arc<Connection>> {
        self.catalog_read().connections.get(name).cloned()
    }

    /// The mapper a connection names (`name` or `name@N`) and its version.
    fn mapper(&self, reference: &str) -> Option<(Arc<LoadedMapper>, u32)> {
        self.catalog_read().mappers.resolve(reference)
    }

    /// The login page's branding, as served now.
    pub(crate) fn branding(&self) -> Arc<crate::model::branding::Branding> {
        Arc::clone(&self.catalog_read().branding)
    }

    /// Connections enabled for `client_id`, by name.
    fn connections_for(&self, client_id: &str) -> Vec<Arc<Connection>> {
        self.catalog_read().connections_for(client_id)
    }

    /// The JWKS document as served now: current, next and previous keys
    /// not yet retired (see `keys::rotation`).
    pub fn jwks_json(&self) -> Bytes {
        Bytes::from(self.keys.load().jwks_at(self.clock.now()).to_string())
    }

    /// The OpenID Provider metadata (OpenID Connect Discovery 1.0 §3) as
    /// served: the same bytes every time.
    pub fn discovery_json(&self) -> Bytes {
        self.discovery_json.clone()
    }

    /// Runs what `conn` gets profiles from — its mapper or its script —
    /// with the connection's tokens and settings; the report and, as JSON,
    /// what ran (`{"mapper": {name, version}}` or `{"script": "fetchUserProfile"}`).
    /// `Err` says why nothing could run.
    pub(crate) async fn run_profile(
        &self,
        conn: &Connection,
        tokens: crate::mapper::TokenSet,
        id_claims: Option<&serde_json::Map<String, serde_json::Value>>,
    ) -> Result<(crate::mapper::InvocationReport, serde_json::Value), String> {
        let mut settings = conn.settings.clone();
        // The provider's verified id_token claims, under a reserved name
        // (`waypass:` settings cannot be configured).
        if let Some(claims) = id_claims {
            settings.insert(
                ID_TOKEN_CLAIMS_SETTING,
                serde_json::Value::Object(claims.clone()).to_string(),
            );
        }
        let input = crate::mapper::MapperInput {
            connection: conn.name().to_owned(),
            tokens,
            settings,
        };
        match &conn.profile {
            ProfileSource::Mapper(reference) => {
                let (mapper, version) = self
                    .mapper(reference)
                    .ok_or_else(|| format!("mapper `{reference}` is not loaded"))?;
                let report = self.runtime.invoke(&mapper, &input, &conn.sandbox).await;
                let name = crate::catalog::registry::parse_ref(reference)
                    .map_or(reference.as_str(), |r| r.0);
                self.metrics.profile_call("mapper", name, version, &report);
                tracing::debug!(mapper = %name, version, elapsed_us = report.elapsed.as_micros() as u64, "mapper ran");
                Ok((
                    report,
                    serde_json::json!({"mapper": {"name": name, "version": version}}),
                ))
            }
            ProfileSource::Claims => Err(
                "this connection uses the built-in claims mapper: it reads the provider's id_token at a login"
                    .into(),
            ),
            ProfileSource::Script(script) => {
                let engine = self.script_engine().await?;
                let input = ScriptEngine::input(input, script);
                let report = self
                    .runtime
                    .invoke(engine.mapper(), &input, &conn.sandbox)
                    .await;
                // A script has no name or version of its own: its connection's.
                self.metrics.profile_call("script", conn.name(), 0, &report);
                tracing::debug!(
                    elapsed_us = report.elapsed.as_micros() as u64,
                    "fetchUserProfile script ran"
                );
                Ok((report, serde_json::json!({"script": "fetchUserProfile"})))
            }
        }
    }

    /// Whether the broker can serve logins: the catalog loaded, every
    /// connection's mapper (or the script engine) loaded.
    pub fn ready(&self) -> Result<(), String> {
        let catalog = self.catalog_read();
        if !catalog.loaded {
            return Err("the catalog is not loaded yet".into());
        }
        for conn in catalog.connections.values() {
            match &conn.profile {
                ProfileSource::Mapper(reference) => {
                    if catalog.mappers.resolve(reference).is_none() {
                        return Err(format!(
                            "connection `{}` uses mapper `{reference}`, which is not loaded",
                            conn.name(),
                        ));
                    }
                }
                ProfileSource::Script(_) => {
                    if !self.catalog.script_engine_loaded() {
                        return Err(format!(
                            "connection `{}` runs a script; the script engine is not loaded yet",
                            conn.name()
                        ));
                    }
                }
                ProfileSource::Claims => {}
            }
        }
        Ok(())
    }

    /// The snapshot served now (one atomic load: no lock).
    pub(crate) fn catalog_read(&self) -> Arc<Snapshot> {
        self.catalog.snapshot()
    }

    fn expires_in(&self, ttl: Duration) -> u64 {
        self.clock.now() + ttl.as_secs()
    }
}
