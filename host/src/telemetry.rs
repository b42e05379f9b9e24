//! OpenTelemetry traces of logins, optional: on when an OTLP/HTTP collector
//! is configured (`otlp_endpoint`, or the standard
//! `OTEL_EXPORTER_OTLP_ENDPOINT`), off (and free) otherwise.
//!
//! One trace per login. A login crosses several HTTP requests, possibly on
//! several instances (`/authorize` on A, the provider's callback on B, the
//! code redeemed on C), so its trace id is derived from the login's
//! correlation id (kept in the login transaction and in the code's grant)
//! rather than carried in memory: every instance names the same trace.
//! Each request of the login is a span (`GET /authorize`,
//! `GET /login/callback`, `POST /oauth/token`), and the stages measured in
//! `/metrics` (`provider_token`, `mapper`) are child spans of the request
//! they ran in. Spans are recorded when they end, with the start and end
//! times the metrics already measure, so the login path pays nothing extra
//! when tracing is off and one span build per stage when it is on; the
//! batch exporter sends them from its own thread.
//!
//! The exporter talks to the collector directly (an operator's endpoint,
//! like the database), not through the mappers' egress policy.

use std::cell::Cell;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use opentelemetry::trace::{
    Span as _, SpanBuilder, SpanContext, SpanId, SpanKind, TraceContextExt as _, TraceFlags,
    TraceId, TraceState, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{IdGenerator as _, RandomIdGenerator, SdkTracer, SdkTracerProvider};
use sha2::{Digest as _, Sha256};
use url::Url;

use crate::metrics::Stage;

/// The standard variable naming the collector (OpenTelemetry's exporter
/// specification), used when the configuration names none.
pub const ENDPOINT_VAR: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";

/// How long one export to the collector may take: a collector that hangs
/// delays only the exporter's thread, never a login, but a bound keeps
/// the batch queue moving.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("the OTLP endpoint `{0}` is not an http(s) URL")]
    Endpoint(String),
    #[error("the OTLP exporter for `{endpoint}` cannot be built: {source}")]
    Exporter {
        endpoint: String,
        source: opentelemetry_otlp::ExporterBuildError,
    },
    #[error("the traces could not be flushed to the collector: {0}")]
    Flush(String),
}

/// Where spans go, and the tracer that makes them.
pub struct Telemetry {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry").finish_non_exhaustive()
    }
}

impl Telemetry {
    /// The configured endpoint, else `OTEL_EXPORTER_OTLP_ENDPOINT`, else
    /// none (tracing off).
    pub fn from_config(configured: Option<&Url>) -> Result<Option<Self>, TelemetryError> {
        let endpoint = match configured {
            Some(url) => url.clone(),
            None => match std::env::var(ENDPOINT_VAR) {
                Ok(value) if !value.trim().is_empty() => {
                    Url::parse(value.trim()).map_err(|_| TelemetryError::Endpoint(value.clone()))?
                }
                _ => return Ok(None),
            },
        };
        Self::otlp(&endpoint).map(Some)
    }

    /// Spans sent as OTLP/HTTP protobuf to `endpoint` (the collector's base
    /// URL, e.g. `http://collector:4318`; spans go to `/v1/traces` under
    /// it, as the specification's `OTEL_EXPORTER_OTLP_ENDPOINT` says).
    pub fn otlp(endpoint: &Url) -> Result<Self, TelemetryError> {
        if !matches!(endpoint.scheme(), "http" | "https") {
            return Err(TelemetryError::Endpoint(endpoint.to_string()));
        }
        let traces = format!("{}/v1/traces", endpoint.as_str().trim_end_matches('/'));
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(traces.clone())
            .with_timeout(EXPORT_TIMEOUT)
            .build()
            .map_err(|source| TelemetryError::Exporter {
                endpoint: traces,
                source,
            })?;
        let resource = Resource::builder()
            .with_service_name("waypass")
            .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
            .build();
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource)
            .build();
        let tracer = provider.tracer("waypass");
        Ok(Self { provider, tracer })
    }

    /// Sends every finished span now. Blocking: call it off the async
    /// workers (`spawn_blocking`).
    pub fn flush(&self) -> Result<(), TelemetryError> {
        self.provider
            .force_flush()
            .map_err(|e| TelemetryError::Flush(e.to_string()))
    }

    /// Flushes and stops the exporter (at the end of `serve`). Blocking.
    pub fn shutdown(&self) {
        if let Err(e) = self.provider.shutdown() {
            tracing::warn!(error = %e, "the trace exporter did not shut down cleanly");
        }
    }

    /// Records a finished span.
    fn record(&self, finished: Finished) {
        let mut builder = SpanBuilder::from_name(finished.name)
            .with_kind(finished.kind)
            .with_start_time(finished.start)
            .with_attributes(finished.attributes);
        builder.trace_id = Some(finished.trace);
        builder.span_id = Some(finished.span);
        let parent = match finished.parent {
            Some(parent) => Context::new().with_remote_span_context(SpanContext::new(
                finished.trace,
                parent,
                TraceFlags::SAMPLED,
                true,
                TraceState::default(),
            )),
            None => Context::new(),
        };
        let mut span = self.tracer.build_with_context(builder, &parent);
        span.end_with_timestamp(finished.end);
    }
}

/// A span that has ended: what [`Telemetry::record`] exports.
struct Finished {
    name: &'static str,
    kind: SpanKind,
    trace: TraceId,
    /// The span it is a child of, if any.
    parent: Option<SpanId>,
    span: SpanId,
    start: SystemTime,
    end: SystemTime,
    attributes: Vec<KeyValue>,
}

/// The trace a login belongs to: derived from its correlation id, so that
/// every instance serving a part of the login names the same trace.
pub fn trace_id(correlation_id: &str) -> TraceId {
    let digest = Sha256::digest(correlation_id.as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    TraceId::from_bytes(bytes)
}

fn random_span_id() -> SpanId {
    RandomIdGenerator::default().new_span_id()
}

/// What one request knows of its login's trace.
struct RequestTrace {
    telemetry: Arc<Telemetry>,
    /// The login's trace and this request's span id, once the request
    /// knows which login it serves.
    login: Cell<Option<(TraceId, SpanId)>>,
    correlation_id: std::cell::RefCell<Option<String>>,
}

tokio::task_local! {
    static REQUEST: RequestTrace;
}

/// Runs one request (`f`), then records its span named `name` if it turned
/// out to serve a login. Without telemetry, runs `f` as is.
pub async fn with_request<F: Future>(
    telemetry: Option<&Arc<Telemetry>>,
    name: &'static str,
    f: F,
) -> F::Output {
    let Some(telemetry) = telemetry else {
        return f.await;
    };
    let start = SystemTime::now();
    let trace = RequestTrace {
        telemetry: Arc::clone(telemetry),
        login: Cell::new(None),
        correlation_id: std::cell::RefCell::new(None),
    };
    REQUEST
        .scope(trace, async {
            let output = f.await;
            let _ = REQUEST.try_with(|r| {
                if let Some((trace, span)) = r.login.get() {
                    let attributes = r
                        .correlation_id
                        .borrow()
                        .iter()
                        .map(|c| KeyValue::new("waypass.correlation_id", c.clone()))
                        .collect();
                    r.telemetry.record(Finished {
                        name,
                        kind: SpanKind::Server,
                        trace,
                        parent: None,
                        span,
                        start,
                        end: SystemTime::now(),
                        attributes,
                    });
                }
            });
            output
        })
        .await
}

/// Notes that this request serves the login `correlation_id`: its span
/// and its stages' spans join that login's trace.
pub fn note_login(correlation_id: &str) {
    let _ = REQUEST.try_with(|r| {
        r.login
            .set(Some((trace_id(correlation_id), random_span_id())));
        *r.correlation_id.borrow_mut() = Some(correlation_id.to_owned());
    });
}

/// A stage of this request's login ended after `elapsed` (called where the
/// stage's latency is recorded for `/metrics`): a child span of the
/// request's. The request-level stages (authorize, token) are the
/// request's own span.
pub fn stage(stage: Stage, elapsed: Duration) {
    if matches!(stage, Stage::Authorize | Stage::Token) {
        return;
    }
    let _ = REQUEST.try_with(|r| {
        if let Some((trace, request_span)) = r.login.get() {
            let end = SystemTime::now();
            r.telemetry.record(Finished {
                name: stage.as_str(),
                kind: SpanKind::Internal,
                trace,
                parent: Some(request_span),
                span: random_span_id(),
                start: end.checked_sub(elapsed).unwrap_or(end),
                end,
                attributes: Vec::new(),
            });
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_login_has_one_trace_id_wherever_it_is_served() {
        assert_eq!(trace_id("abc"), trace_id("abc"));
        assert_ne!(trace_id("abc"), trace_id("abd"));
        assert_ne!(trace_id("abc"), TraceId::INVALID);
    }

    #[test]
    fn an_endpoint_that_is_not_http_is_refused() {
        let url = Url::parse("ftp://collector:4318").unwrap();
        assert!(matches!(
            Telemetry::otlp(&url),
            Err(TelemetryError::Endpoint(_))
        ));
    }
}
