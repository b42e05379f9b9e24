//! The per-call store state and the host side of the world's imports.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use http_body_util::{BodyExt, Full, Limited};
use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiBody, WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

use super::bindings::{http, log, types};
use super::limits::{MAX_LOG_LINE_BYTES, MAX_LOG_LINES, MAX_TABLE_ELEMENTS, STDIO_CAPTURE_BYTES};
use super::types::{LogLevel, LogLine, LogSource, truncate};
use crate::egress::{EgressSession, HttpError, OutboundRequest};

/// Everything one call's `Store` holds. Built fresh per call, dropped after.
pub(crate) struct HostState {
    table: ResourceTable,
    wasi: WasiCtx,
    http_ctx: WasiHttpCtx,
    /// Also the `http` import's way out: one session for both.
    hooks: EgressHooks,
    pub(crate) logs: LogSink,
    pub(crate) memory: MemoryLimiter,
    pub(crate) stdout: CapturedOutput,
    pub(crate) stderr: CapturedOutput,
    /// Set by the epoch callback when it interrupts the guest.
    pub(crate) deadline_hit: bool,
}

impl HostState {
    pub(crate) fn new(egress: Arc<EgressSession>, memory_bytes: usize) -> Self {
        let stdout = CapturedOutput::new(STDIO_CAPTURE_BYTES);
        let stderr = CapturedOutput::new(STDIO_CAPTURE_BYTES);
        // The builder's defaults are the lock-down: no preopened directories,
        // no environment, no arguments, stdin empty, TCP/UDP and name lookup
        // disabled, and no socket address passes the (absent) check.
        let wasi = WasiCtx::builder()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .build();
        Self {
            table: ResourceTable::new(),
            wasi,
            http_ctx: WasiHttpCtx::new(),
            hooks: EgressHooks { egress },
            logs: LogSink::default(),
            memory: MemoryLimiter::new(memory_bytes),
            stdout,
            stderr,
            deadline_hit: false,
        }
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
        match self.hooks.egress.send(request).await {
            Ok(resp) => Ok(http::Response {
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
        self.logs.push(level, LogSource::Log, message);
    }
}

/// Routes `wasi:http/outgoing-handler` through the same [`EgressSession`] as
/// the `http` import, so `fetch()` in JavaScript meets the same policy.
struct EgressHooks {
    egress: Arc<EgressSession>,
}

type HttpFuture<T> = Box<dyn Future<Output = wasmtime_wasi_http::Result<T>> + Send>;

impl WasiHttpHooks for EgressHooks {
    fn send_request(
        &mut self,
        request: ::http::Request<WasiBody>,
        _options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: HttpFuture<()>,
    ) -> HttpFuture<(::http::Response<WasiBody>, HttpFuture<()>)> {
        let egress = self.egress.clone();
        Box::new(async move {
            use wasmtime_wasi_http::Error as E;
            let (parts, body) = request.into_parts();
            // The policy's request cap applies here too; reading stops there.
            let body = Limited::new(body, egress.max_request_bytes())
                .collect()
                .await
                .map_err(|_| E::HttpRequestBodySize(None))?
                .to_bytes();
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
            let resp = egress.send(outbound).await.map_err(|e| match e {
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
            let response = builder
                .body(
                    Full::new(resp.body)
                        .map_err(|never| match never {})
                        .boxed_unsync(),
                )
                .map_err(|e| E::InternalError(Some(e.to_string())))?;
            let done: HttpFuture<()> = Box::new(async { Ok(()) });
            Ok((response, done))
        })
    }
}

/// Log lines of one call, bounded in count and length.
#[derive(Debug, Default)]
pub(crate) struct LogSink {
    pub(crate) lines: Vec<LogLine>,
    pub(crate) dropped: usize,
}

impl LogSink {
    pub(crate) fn push(&mut self, level: LogLevel, source: LogSource, message: String) {
        if self.lines.len() >= MAX_LOG_LINES {
            self.dropped += 1;
            return;
        }
        let message = truncate(message, MAX_LOG_LINE_BYTES);
        tracing::event!(target: "waypass::mapper::guest", tracing::Level::DEBUG,
            level = ?level, source = ?source, "{message}");
        self.lines.push(LogLine {
            level,
            source,
            message,
        });
    }

    /// Adds captured stdout/stderr text, one log line per text line.
    pub(crate) fn push_output(&mut self, source: LogSource, level: LogLevel, output: &[u8]) {
        for line in String::from_utf8_lossy(output).lines() {
            if !line.trim().is_empty() {
                self.push(level, source, line.to_owned());
            }
        }
    }
}

/// Caps the memory of all of a call's linear memories together. A refused
/// growth makes `memory.grow` fail (the guest may cope); the flag lets the
/// host name the cause if the guest then traps.
pub(crate) struct MemoryLimiter {
    limit: usize,
    in_use: usize,
    /// The most linear memory the call held at once.
    pub(crate) peak: usize,
    pub(crate) exceeded: bool,
}

impl MemoryLimiter {
    fn new(limit: usize) -> Self {
        Self {
            limit,
            in_use: 0,
            peak: 0,
            exceeded: false,
        }
    }

    pub(crate) fn limit(&self) -> usize {
        self.limit
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let next = self.in_use.saturating_sub(current).saturating_add(desired);
        if next > self.limit {
            self.exceeded = true;
            return Ok(false);
        }
        self.in_use = next;
        self.peak = self.peak.max(next);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

/// A guest's stdout or stderr, kept in memory up to a cap. Writes past the cap
/// are accepted and discarded: a guest that prints too much loses output, it
/// does not fail (Rust's `println!` would panic on a write error).
#[derive(Clone)]
pub(crate) struct CapturedOutput {
    buf: Arc<Mutex<Vec<u8>>>,
    cap: usize,
}

impl CapturedOutput {
    fn new(cap: usize) -> Self {
        Self {
            buf: Arc::new(Mutex::new(Vec::new())),
            cap,
        }
    }

    pub(crate) fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *self.buf.lock().unwrap_or_else(|p| p.into_inner()))
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
        buf.extend_from_slice(&data[..data.len().min(room)]);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
