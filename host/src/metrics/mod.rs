//! What an instance does, as Prometheus metrics: logins by connection, app
//! and outcome; latency per login stage; mapper and script calls; egress
//! requests and denials; pool slots in use; store operation latency; HTTP
//! requests by route and status.
//!
//! Served as the Prometheus text format at `/metrics` on the main listener
//! (admin token or a `read:metrics` token) and, when `metrics_listen` is
//! set, on a listener of its own without authentication ([`serve`]).
//!
//! # Label cardinality
//!
//! Every label takes values from a closed set, or from a set bounded by
//! [`MAX_LABEL_VALUES`]: routes are patterns ([`route`]), never raw paths;
//! connections and apps come from the catalog (a login only reaches this
//! point once its app and connection were found there); mapper names,
//! egress hosts and store operations are bounded per label; past the bound
//! a new value is counted under [`OTHER`], so a flood of distinct hosts or
//! names cannot grow the registry without limit.

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

mod store;

pub use store::InstrumentedStore;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

use crate::egress::{HttpError, RequestRecord};
use crate::mapper::InvocationReport;

/// Distinct values one label of one metric family takes before new values
/// fold into [`OTHER`]: far more connections, apps, mappers and provider
/// hosts than a deployment has, and few enough that a scrape stays small
/// (a family's series are at most the product of its labels' bounds).
pub const MAX_LABEL_VALUES: usize = 200;

/// The label value every value past [`MAX_LABEL_VALUES`] is counted under.
pub const OTHER: &str = "other";

/// Latency buckets, in seconds: a cached Rust mapper runs in tens of
/// microseconds, a provider answers in tens to hundreds of milliseconds,
/// and a mapper's deadline is at most a minute.
const LATENCY_BUCKETS: [f64; 14] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
    10.0,
];

/// Peak-memory buckets, in bytes: 64 KiB (one Wasm page) to 1 GiB, by
/// powers of four (a Rust mapper takes about a MiB, Python tens).
const MEMORY_BUCKETS: [f64; 9] = [
    65_536.0,
    262_144.0,
    1_048_576.0,
    4_194_304.0,
    16_777_216.0,
    67_108_864.0,
    268_435_456.0,
    536_870_912.0,
    1_073_741_824.0,
];

/// A login stage whose latency is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// `/authorize`, up to the redirect to the provider.
    Authorize,
    /// The token request to the provider (`/login/callback`).
    ProviderToken,
    /// The connection's mapper or script.
    Mapper,
    /// `/oauth/token`: our tokens issued to the app.
    Token,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Authorize => "authorize",
            Self::ProviderToken => "provider_token",
            Self::Mapper => "mapper",
            Self::Token => "token",
        }
    }
}

/// The values one label has taken, up to [`MAX_LABEL_VALUES`].
#[derive(Debug, Default)]
struct Bounded(Mutex<HashSet<String>>);

impl Bounded {
    /// `value` if it is known or there is room for it, else [`OTHER`].
    fn fold<'a>(&self, value: &'a str) -> &'a str {
        let mut seen = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if seen.contains(value) {
            return value;
        }
        if seen.len() < MAX_LABEL_VALUES {
            seen.insert(value.to_owned());
            return value;
        }
        OTHER
    }
}

/// The registry and every metric family an instance reports.
pub struct Metrics {
    registry: Registry,
    /// Off: nothing is recorded (the benchmark's baseline).
    enabled: AtomicBool,
    logins: IntCounterVec,
    stage_seconds: HistogramVec,
    profile_calls: IntCounterVec,
    profile_seconds: HistogramVec,
    profile_peak_memory: HistogramVec,
    egress_requests: IntCounterVec,
    egress_denials: IntCounterVec,
    pool_in_use: IntGauge,
    store_seconds: HistogramVec,
    http_requests: IntCounterVec,
    http_seconds: HistogramVec,
    connections: Bounded,
    clients: Bounded,
    profile_names: Bounded,
    hosts: Bounded,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Registers a family; the names and labels are ours and fixed, so a
/// failure is a programming error caught by the first test that builds one.
fn register<T: prometheus::core::Collector + Clone + 'static>(registry: &Registry, c: T) -> T {
    if let Err(e) = registry.register(Box::new(c.clone())) {
        tracing::error!(error = %e, "a metric family could not be registered");
    }
    c
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let family = IntCounterVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|e| unreachable!("metric {name}: {e}"));
    register(registry, family)
}

fn histogram(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: &[f64],
) -> HistogramVec {
    let family = HistogramVec::new(
        HistogramOpts::new(name, help).buckets(buckets.to_vec()),
        labels,
    )
    .unwrap_or_else(|e| unreachable!("metric {name}: {e}"));
    register(registry, family)
}

impl Metrics {
    pub fn new() -> Self {
        let r = Registry::new();
        let pool_in_use = IntGauge::new(
            "waypass_mapper_pool_slots_in_use",
            "Mapper and script calls running now (each holds an instance pool slot)",
        )
        .unwrap_or_else(|e| unreachable!("metric pool slots: {e}"));
        Self {
            logins: counter(
                &r,
                "waypass_logins_total",
                "Logins finished at /login/callback, by connection, app and outcome (success or the OAuth error code)",
                &["connection", "client_id", "outcome"],
            ),
            stage_seconds: histogram(
                &r,
                "waypass_login_stage_duration_seconds",
                "Latency of each login stage",
                &["stage"],
                &LATENCY_BUCKETS,
            ),
            profile_calls: counter(
                &r,
                "waypass_profile_calls_total",
                "Mapper and script calls, by kind, name, version and result (ok or the mapper's error kind)",
                &["kind", "name", "version", "result"],
            ),
            profile_seconds: histogram(
                &r,
                "waypass_profile_call_duration_seconds",
                "Duration of mapper and script calls",
                &["kind", "name"],
                &LATENCY_BUCKETS,
            ),
            profile_peak_memory: histogram(
                &r,
                "waypass_profile_call_peak_memory_bytes",
                "Peak linear memory of mapper and script calls",
                &["kind", "name"],
                &MEMORY_BUCKETS,
            ),
            egress_requests: counter(
                &r,
                "waypass_egress_requests_total",
                "Requests mappers and scripts made, by destination host and result (the HTTP status class or the error kind)",
                &["host", "result"],
            ),
            egress_denials: counter(
                &r,
                "waypass_egress_denials_total",
                "Requests the egress policy refused, by reason",
                &["reason"],
            ),
            pool_in_use: register(&r, pool_in_use),
            store_seconds: histogram(
                &r,
                "waypass_store_operation_duration_seconds",
                "Latency of store operations, by operation and result",
                &["operation", "result"],
                &LATENCY_BUCKETS,
            ),
            http_requests: counter(
                &r,
                "waypass_http_requests_total",
                "HTTP requests, by route pattern, method and status",
                &["route", "method", "status"],
            ),
            http_seconds: histogram(
                &r,
                "waypass_http_request_duration_seconds",
                "HTTP request latency, by route pattern",
                &["route"],
                &LATENCY_BUCKETS,
            ),
            registry: r,
            enabled: AtomicBool::new(true),
            connections: Bounded::default(),
            clients: Bounded::default(),
            profile_names: Bounded::default(),
            hosts: Bounded::default(),
        }
    }

    /// Turns recording on or off (off: the benchmark's baseline).
    pub fn set_enabled(&self, on: bool) {
        self.enabled.store(on, Ordering::Relaxed);
    }

    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    /// A finished login: `outcome` is `success` or an OAuth error code.
    pub fn login(&self, connection: &str, client_id: &str, outcome: &str) {
        if !self.enabled() {
            return;
        }
        self.logins
            .with_label_values(&[
                self.connections.fold(connection),
                self.clients.fold(client_id),
                outcome,
            ])
            .inc();
    }

    /// A stage that took `elapsed`.
    pub fn stage(&self, stage: Stage, elapsed: Duration) {
        // The same measurement, as a span of the login's trace (when traces
        // are on and this request serves a login).
        crate::telemetry::stage(stage, elapsed);
        if !self.enabled() {
            return;
        }
        self.stage_seconds
            .with_label_values(&[stage.as_str()])
            .observe(elapsed.as_secs_f64());
    }

    /// A mapper (`kind` "mapper", its name and version) or script (`kind`
    /// "script", the connection's name, version 0) call and the requests
    /// it made.
    pub fn profile_call(&self, kind: &str, name: &str, version: u32, report: &InvocationReport) {
        if !self.enabled() {
            return;
        }
        let name = self.profile_names.fold(name);
        let result = match &report.result {
            Ok(_) => "ok",
            Err(e) => e.kind(),
        };
        self.profile_calls
            .with_label_values(&[kind, name, &version.to_string(), result])
            .inc();
        self.profile_seconds
            .with_label_values(&[kind, name])
            .observe(report.elapsed.as_secs_f64());
        self.profile_peak_memory
            .with_label_values(&[kind, name])
            .observe(report.peak_memory_bytes as f64);
        for request in &report.requests {
            self.egress(request);
        }
    }

    fn egress(&self, request: &RequestRecord) {
        let host = url::Url::parse(&request.url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .unwrap_or_else(|| "invalid".to_owned());
        let host = self.hosts.fold(&host);
        let result = match (&request.error, request.status) {
            (Some(e), _) => egress_error_kind(e),
            (None, Some(status)) => status_class(status),
            (None, None) => "unknown",
        };
        self.egress_requests
            .with_label_values(&[host, result])
            .inc();
        if let Some(HttpError::Denied(why)) = &request.error {
            self.egress_denials
                .with_label_values(&[denial_reason(why)])
                .inc();
        }
    }

    /// A store operation that took `elapsed`.
    pub fn store_operation(&self, operation: &'static str, ok: bool, elapsed: Duration) {
        if !self.enabled() {
            return;
        }
        self.store_seconds
            .with_label_values(&[operation, if ok { "ok" } else { "error" }])
            .observe(elapsed.as_secs_f64());
    }

    /// An HTTP request answered with `status` after `elapsed`.
    pub fn http_request(
        &self,
        route: &'static str,
        method: &http::Method,
        status: u16,
        elapsed: Duration,
    ) {
        if !self.enabled() {
            return;
        }
        self.http_requests
            .with_label_values(&[route, method_label(method), &status.to_string()])
            .inc();
        self.http_seconds
            .with_label_values(&[route])
            .observe(elapsed.as_secs_f64());
    }

    /// The Prometheus text exposition of every family, with the pool gauge
    /// set to `pool_in_use` first (read at scrape time, not on every call).
    pub fn render(&self, pool_in_use: usize) -> String {
        self.pool_in_use
            .set(i64::try_from(pool_in_use).unwrap_or(i64::MAX));
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!(error = %e, "encoding the metrics failed");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

/// The content type of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Times a future, for a stage or a store operation.
pub struct Timer(Instant);

impl Timer {
    pub fn start() -> Self {
        Self(Instant::now())
    }

    pub fn elapsed(&self) -> Duration {
        self.0.elapsed()
    }
}

fn method_label(method: &http::Method) -> &'static str {
    match *method {
        http::Method::GET => "GET",
        http::Method::POST => "POST",
        http::Method::PUT => "PUT",
        http::Method::PATCH => "PATCH",
        http::Method::DELETE => "DELETE",
        http::Method::HEAD => "HEAD",
        http::Method::OPTIONS => "OPTIONS",
        _ => OTHER,
    }
}

fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

fn egress_error_kind(e: &HttpError) -> &'static str {
    match e {
        HttpError::Denied(_) => "denied",
        HttpError::Timeout => "timeout",
        HttpError::TooLarge => "too-large",
        HttpError::InvalidRequest(_) => "invalid-request",
        HttpError::Transport(_) => "transport",
        HttpError::BudgetExhausted => "budget-exhausted",
    }
}

/// A denial's reason as a closed set: the policy's messages carry hosts
/// and addresses, which must not become label values.
fn denial_reason(message: &str) -> &'static str {
    if message.contains("allow-list") {
        "host-not-allowed"
    } else if message.contains("plain http") {
        "plain-http"
    } else if message.contains("metadata address") {
        "metadata-address"
    } else if message.contains("private address") {
        "private-address"
    } else {
        OTHER
    }
}

/// The route pattern of a request path: what the `route` label says, so
/// raw paths (ids, names, garbage) never become label values.
pub fn route(path: &str) -> &'static str {
    match path {
        "/authorize" => "/authorize",
        "/login/callback" => "/login/callback",
        "/oauth/token" => "/oauth/token",
        "/userinfo" => "/userinfo",
        "/.well-known/openid-configuration" => "/.well-known/openid-configuration",
        "/.well-known/jwks.json" => "/.well-known/jwks.json",
        "/healthz" => "/healthz",
        "/readyz" => "/readyz",
        "/metrics" => "/metrics",
        _ if path.starts_with("/login/callback/") => "/login/callback/{connection}",
        _ => match path.strip_prefix("/api/v2/") {
            Some(rest) => api_route(rest),
            None => "unmatched",
        },
    }
}

/// `/api/v2/{resource}` or `/api/v2/{resource}/{id}...`, for the
/// resources the API has.
fn api_route(rest: &str) -> &'static str {
    let mut segments = rest.trim_end_matches('/').split('/');
    let resource = segments.next().unwrap_or("");
    let deeper = segments.next().is_some();
    macro_rules! resources {
        ($($name:literal),*) => {
            match (resource, deeper) {
                $(($name, false) => concat!("/api/v2/", $name),
                  ($name, true) => concat!("/api/v2/", $name, "/{id}"),)*
                _ => "/api/v2/unmatched",
            }
        };
    }
    resources!("connections", "clients", "mappers", "users", "logs", "keys")
}

/// Serves `GET /metrics` (only) without authentication on `listener`:
/// the `metrics_listen` address, for a scraper inside the network.
pub async fn serve(
    listener: tokio::net::TcpListener,
    broker: std::sync::Arc<crate::broker::Broker>,
) {
    use hyper_util::rt::TokioIo;
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(crate::broker::server::ACCEPT_ERROR_BACKOFF).await;
            continue;
        };
        let broker = broker.clone();
        let service =
            hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let broker = broker.clone();
                async move {
                    let mut resp =
                        if req.method() == http::Method::GET && req.uri().path() == "/metrics" {
                            let mut r = http::Response::new(http_body_util::Full::new(
                                bytes::Bytes::from(broker.metrics_text()),
                            ));
                            r.headers_mut().insert(
                                http::header::CONTENT_TYPE,
                                http::HeaderValue::from_static(CONTENT_TYPE),
                            );
                            r
                        } else {
                            http::Response::new(http_body_util::Full::new(
                                bytes::Bytes::from_static(b"not found"),
                            ))
                        };
                    if req.uri().path() != "/metrics" {
                        *resp.status_mut() = http::StatusCode::NOT_FOUND;
                    }
                    Ok::<_, std::convert::Infallible>(resp)
                }
            });
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(crate::broker::server::HEADER_READ_TIMEOUT)
            .serve_connection(TokioIo::new(stream), service);
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_patterns_never_raw_paths() {
        assert_eq!(
            route("/login/callback/acme"),
            "/login/callback/{connection}"
        );
        assert_eq!(route("/api/v2/users/oauth2%7Cx%7C1"), "/api/v2/users/{id}");
        assert_eq!(route("/api/v2/users"), "/api/v2/users");
        assert_eq!(route("/api/v2/whatever/x"), "/api/v2/unmatched");
        assert_eq!(route("/wp-admin.php"), "unmatched");
    }

    #[test]
    fn label_values_past_the_bound_fold_into_other() {
        let bounded = Bounded::default();
        for i in 0..MAX_LABEL_VALUES {
            assert_eq!(bounded.fold(&format!("host{i}")), format!("host{i}"));
        }
        assert_eq!(bounded.fold("one-too-many"), OTHER);
        assert_eq!(bounded.fold("host0"), "host0");
    }

    #[test]
    fn a_disabled_registry_records_nothing() {
        let m = Metrics::new();
        m.set_enabled(false);
        m.login("c", "app", "success");
        assert!(!m.render(0).contains("waypass_logins_total{"));
        m.set_enabled(true);
        m.login("c", "app", "success");
        assert!(m.render(0).contains(
            "waypass_logins_total{client_id=\"app\",connection=\"c\",outcome=\"success\"} 1"
        ));
    }
}
