//! The per-call store state and the host side of the world's imports.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use wasmtime::component::ResourceTable;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiBody, WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

use super::bindings::{http, log, types};
use super::limits::{
    MAX_FIELDS_BYTES, MAX_LOG_LINE_BYTES, MAX_LOG_LINES, MAX_RANDOM_BYTES, MAX_RESOURCES_PER_CALL,
    OUTGOING_BODY_BUFFER_CHUNKS, OUTGOING_BODY_CHUNK_BYTES, STDIO_CAPTURE_BYTES,
};
use super::memory::{MemoryBudget, MemoryLimiter, resource_bytes};
use super::types::{LogLevel, LogLine, LogSource, truncate};
use crate::egress::{EgressSession, HttpError, OutboundRequest, OutboundResponse};

/// Everything one call's `Store` holds. Built fresh per call, dropped after.
pub(crate) struct HostState {
    table: ResourceTable,
    wasi: WasiCtx,
    http_ctx: WasiHttpCtx,
    /// Also the `http` import's way out: one session for both.
    hooks: EgressHooks,
    pub(crate) logs: LogSink,
    /// The call's memory cap, host side included.
    budget: Arc<MemoryBudget>,
    pub(crate) memory: MemoryLimiter,
    pub(crate) stdout: CapturedOutput,
    pub(crate) stderr: CapturedOutput,
    /// Set by the epoch callback when it interrupts the guest.
    pub(crate) deadline_hit: bool,
}

impl HostState {
    pub(crate) fn new(egress: Arc<EgressSession>, budget: Arc<MemoryBudget>) -> Self {
        let stdout = CapturedOutput::new(STDIO_CAPTURE_BYTES, budget.clone());
        let stderr = CapturedOutput::new(STDIO_CAPTURE_BYTES, budget.clone());
        // The builder's defaults are most of the lock-down: no preopened
        // directories, no environment, no arguments, stdin empty, and no
        // socket address passes the (absent) check. Sockets and name lookup
        // are switched off by name as well, so that a change of default
        // cannot open them.
        let wasi = WasiCtx::builder()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .max_random_size(MAX_RANDOM_BYTES)
            .build();
        let mut table = ResourceTable::new();
        table.set_max_capacity(MAX_RESOURCES_PER_CALL);
        let mut http_ctx = WasiHttpCtx::new();
        http_ctx.set_field_size_limit(MAX_FIELDS_BYTES);
        Self {
            table,
            wasi,
            http_ctx,
            hooks: EgressHooks {
                egress,
                budget: budget.clone(),
            },
            logs: LogSink::default(),
            memory: MemoryLimiter {
                budget: budget.clone(),
            },
            budget,
            stdout,
            stderr,
            deadline_hit: false,
        }
    }

    /// Measures what the call's resources hold and records it in the
    /// budget; `false` when that takes the call over its memory cap.
    pub(crate) fn measure_resources(&mut self) -> bool {
        let bytes = resource_bytes(&mut self.table);
        self.budget.set_resource_bytes(bytes)
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http_ctx,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

impl types::Host for HostState {}

impl http::Host for HostState {
    async fn send(&mut self, req: http::Request) -> Result<http::Response, http::Error> {
        let request = OutboundRequest {
            method: match req.method {
                http::Method::Get => ::http::Method::GET,
                http::Method::Head => ::http::Method::HEAD,
                http::Method::Post => ::http::Method::POST,
                http::Method::Put => ::http::Method::PUT,
                http::Method::Patch => ::http::Method::PATCH,
                http::Method::Delete => ::http::Method::DELETE,
                http::Method::Options => ::http::Method::OPTIONS,
            },
            url: req.url,
            headers: req.headers,
            body: req.body,
        };
        // The request body stays in the host's memory until the answer, the
        // answer's until it is copied into the guest: both charged meanwhile.
        let request_bytes = request.body.as_ref().map_or(0, Vec::len);
        let Some(sent) = Charge::new(&self.budget, request_bytes) else {
            return Err(http::Error::TooLarge);
        };
        let answer = self.hooks.send_charged(request).await;
        drop(sent);
        match answer {
            Ok((resp, _held)) => Ok(http::Response {
                status: resp.status,
                headers: resp.headers,
                body: resp.body.to_vec(),
            }),
            Err(e) => Err(match e {
                HttpError::Denied(why) => http::Error::Denied(why),
                HttpError::Timeout => http::Error::Timeout,
                HttpError::TooLarge => http::Error::TooLarge,
                HttpError::InvalidRequest(why) => http::Error::InvalidRequest(why),
                HttpError::Transport(why) => http::Error::Transport(why),
                HttpError::BudgetExhausted => http::Error::BudgetExhausted,
            }),
        }
    }
}

impl log::Host for HostState {
    async fn log(&mut self, level: log::Level, message: String) {
        let level = match level {
            log::Level::Trace => LogLevel::Trace,
            log::Level::Debug => LogLevel::Debug,
            log::Level::Info => LogLevel::Info,
            log::Level::Warn => LogLevel::Warn,
            log::Level::Error => LogLevel::Error,
        };
        self.logs.push(level, LogSource::Log, message, &self.budget);
    }
}

/// Routes `wasi:http/outgoing-handler` through the same [`EgressSession`] as
/// the `http` import, so `fetch()` in JavaScript meets the same policy, and
/// charges the bodies the host holds to the call's memory.
struct EgressHooks {
    egress: Arc<EgressSession>,
    budget: Arc<MemoryBudget>,
}

/// Bytes charged to a call's memory, given back when dropped.
struct Charge {
    budget: Arc<MemoryBudget>,
    bytes: usize,
}

impl Charge {
    /// Charges `bytes`, or marks the call out of memory and returns `None`.
    fn new(budget: &Arc<MemoryBudget>, bytes: usize) -> Option<Self> {
        if budget.try_charge(bytes) {
            Some(Self {
                budget: budget.clone(),
                bytes,
            })
        } else {
            budget.mark_host_exceeded();
            None
        }
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.budget.release(self.bytes);
    }
}

impl EgressHooks {
    fn send_charged(
        &self,
        request: OutboundRequest,
    ) -> impl Future<Output = Result<(OutboundResponse, Charge), HttpError>> + Send + 'static {
        send_charged(self.egress.clone(), self.budget.clone(), request)
    }
}

/// Sends `request` with the response body capped at what the call's memory
/// still has room for (reserved while the request runs, so that concurrent
/// requests cannot promise the same bytes twice). An answer over that room,
/// where the policy would have allowed it, means the call is out of memory.
/// The answer comes with its body's charge.
async fn send_charged(
    egress: Arc<EgressSession>,
    budget: Arc<MemoryBudget>,
    request: OutboundRequest,
) -> Result<(OutboundResponse, Charge), HttpError> {
    let policy_cap = egress.max_response_bytes();
    let room = budget.reserve_up_to(policy_cap);
    let reserved = Charge {
        budget: budget.clone(),
        bytes: room,
    };
    let answer = egress.send_within(request, room).await;
    drop(reserved);
    match answer {
        Ok(resp) => match Charge::new(&budget, resp.body.len()) {
            Some(held) => Ok((resp, held)),
            None => Err(HttpError::TooLarge),
        },
        Err(HttpError::TooLarge) if room < policy_cap => {
            budget.mark_host_exceeded();
            Err(HttpError::TooLarge)
        }
        Err(e) => Err(e),
    }
}

/// A response body that gives its charge back when the guest is done with
/// it (read to the end, or dropped).
struct ChargedBody {
    inner: Full<Bytes>,
    _charge: Charge,
}

impl http_body::Body for ChargedBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

type HttpFuture<T> = Box<dyn Future<Output = wasmtime_wasi_http::Result<T>> + Send>;

impl WasiHttpHooks for EgressHooks {
    fn p2_outgoing_body_buffer_chunks(&mut self) -> usize {
        OUTGOING_BODY_BUFFER_CHUNKS
    }

    fn p2_outgoing_body_chunk_size(&mut self) -> usize {
        OUTGOING_BODY_CHUNK_BYTES
    }

    fn send_request(
        &mut self,
        request: ::http::Request<WasiBody>,
        _options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: HttpFuture<()>,
    ) -> HttpFuture<(::http::Response<WasiBody>, HttpFuture<()>)> {
        let egress = self.egress.clone();
        let budget = self.budget.clone();
        Box::new(async move {
            use wasmtime_wasi_http::Error as E;
            let (parts, body) = request.into_parts();
            // The policy's request cap applies here too, and the call's
            // memory: reading stops at the smaller. What was read stays
            // charged until the answer.
            let room = budget.reserve_up_to(egress.max_request_bytes());
            let reserved = Charge {
                budget: budget.clone(),
                bytes: room,
            };
            let body = Limited::new(body, room)
                .collect()
                .await
                .map_err(|_| {
                    if room < egress.max_request_bytes() {
                        budget.mark_host_exceeded();
                    }
                    E::HttpRequestBodySize(None)
                })?
                .to_bytes();
            drop(reserved);
            let sent = Charge::new(&budget, body.len()).ok_or(E::HttpRequestBodySize(None))?;
            let headers = parts
                .headers
                .iter()
                .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
                .collect();
            let outbound = OutboundRequest {
                method: parts.method,
                url: parts.uri.to_string(),
                headers,
                body: (!body.is_empty()).then(|| body.to_vec()),
            };
            drop(body);
            let answer = send_charged(egress.clone(), budget.clone(), outbound).await;
            drop(sent);
            let (resp, charge) = answer.map_err(|e| match e {
                HttpError::Denied(_) => E::HttpRequestDenied,
                HttpError::Timeout => E::HttpResponseTimeout,
                HttpError::TooLarge => E::HttpResponseBodySize(None),
                HttpError::InvalidRequest(_) => E::HttpRequestUriInvalid,
                HttpError::Transport(why) => E::InternalError(Some(why)),
                HttpError::BudgetExhausted => E::ConnectionLimitReached,
            })?;
            let mut builder = ::http::Response::builder().status(resp.status);
            for (name, value) in &resp.headers {
                builder = builder.header(name, value);
            }
            let body = ChargedBody {
                inner: Full::new(resp.body),
                _charge: charge,
            };
            let response = builder
                .body(body.map_err(|never| match never {}).boxed_unsync())
                .map_err(|e| E::InternalError(Some(e.to_string())))?;
            let done: HttpFuture<()> = Box::new(async { Ok(()) });
            Ok((response, done))
        })
    }
}

/// Log lines of one call, bounded in count and length, and charged to the
/// call's memory while kept: a line that does not fit is dropped (counted),
/// so a mapper near its cap loses log lines rather than failing for them.
#[derive(Debug, Default)]
pub(crate) struct LogSink {
    pub(crate) lines: Vec<LogLine>,
    pub(crate) dropped: usize,
}

impl LogSink {
    pub(crate) fn push(
        &mut self,
        level: LogLevel,
        source: LogSource,
        message: String,
        budget: &MemoryBudget,
    ) {
        if self.lines.len() >= MAX_LOG_LINES {
            self.dropped += 1;
            return;
        }
        let message = truncate(message, MAX_LOG_LINE_BYTES);
        if !budget.try_charge(message.len()) {
            self.dropped += 1;
            return;
        }
        tracing::event!(target: "waypass::mapper::guest", tracing::Level::DEBUG,
            level = ?level, source = ?source, "{message}");
        self.lines.push(LogLine {
            level,
            source,
            message,
        });
    }

    /// Adds captured stdout/stderr text, one log line per text line.
    pub(crate) fn push_output(
        &mut self,
        source: LogSource,
        level: LogLevel,
        output: &[u8],
        budget: &MemoryBudget,
    ) {
        for line in String::from_utf8_lossy(output).lines() {
            if !line.trim().is_empty() {
                self.push(level, source, line.to_owned(), budget);
            }
        }
    }
}

/// A guest's stdout or stderr, kept in memory up to a cap. Writes past the cap
/// are accepted and discarded: a guest that prints too much loses output, it
/// does not fail (Rust's `println!` would panic on a write error).
/// What is kept is charged to the call's memory (and given back when taken,
/// to be charged again as log lines).
#[derive(Clone)]
pub(crate) struct CapturedOutput {
    buf: Arc<Mutex<Vec<u8>>>,
    cap: usize,
    budget: Arc<MemoryBudget>,
}

impl CapturedOutput {
    fn new(cap: usize, budget: Arc<MemoryBudget>) -> Self {
        Self {
            buf: Arc::new(Mutex::new(Vec::new())),
            cap,
            budget,
        }
    }

    pub(crate) fn take(&self) -> Vec<u8> {
        let taken = std::mem::take(&mut *self.buf.lock().unwrap_or_else(|p| p.into_inner()));
        self.budget.release(taken.len());
        taken
    }
}

impl IsTerminal for CapturedOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CapturedOutput {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

impl tokio::io::AsyncWrite for CapturedOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let mut buf = self.buf.lock().unwrap_or_else(|p| p.into_inner());
        let room = self.cap.saturating_sub(buf.len());
        let kept = data.len().min(room);
        if self.budget.try_charge(kept) {
            buf.extend_from_slice(&data[..kept]);
        }
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
