//! Carrying a vetted request: the real network, or an in-process answer.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use bytes::{Bytes, BytesMut};
use futures::future::BoxFuture;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use url::Position;

use super::{HttpError, OutboundResponse, PreparedRequest};

/// Sends a request that already passed the egress policy.
pub trait Transport: Send + Sync + 'static {
    /// Sends `req` to one of `addrs` (already vetted: connect to nothing
    /// else) and reads at most `max_response_bytes` of body. The caller
    /// applies the timeout.
    fn send(
        &self,
        req: PreparedRequest,
        addrs: Vec<SocketAddr>,
        max_response_bytes: usize,
    ) -> BoxFuture<'static, Result<OutboundResponse, HttpError>>;
}

/// HTTP/1.1 over TCP, TLS (rustls, Mozilla's roots) for `https`. One
/// connection per request, no proxy from the environment, no redirects.
#[derive(Debug, Default, Clone, Copy)]
pub struct NetworkTransport;

impl Transport for NetworkTransport {
    fn send(
        &self,
        req: PreparedRequest,
        addrs: Vec<SocketAddr>,
        max_response_bytes: usize,
    ) -> BoxFuture<'static, Result<OutboundResponse, HttpError>> {
        Box::pin(send_over_network(req, addrs, max_response_bytes))
    }
}

async fn send_over_network(
    req: PreparedRequest,
    addrs: Vec<SocketAddr>,
    max_response_bytes: usize,
) -> Result<OutboundResponse, HttpError> {
    let stream = connect_any(&addrs).await?;
    let host = req.url.host_str().unwrap_or_default().to_owned();
    let request = build_request(&req)?;
    if req.url.scheme() == "https" {
        let name = rustls::pki_types::ServerName::try_from(host.clone()).map_err(|e| {
            HttpError::InvalidRequest(format!("`{host}` is not a TLS server name: {e}"))
        })?;
        let tls = tokio_rustls::TlsConnector::from(tls_config())
            .connect(name, stream)
            .await
            .map_err(|e| HttpError::Transport(format!("TLS with `{host}` failed: {e}")))?;
        exchange(tls, request, max_response_bytes).await
    } else {
        exchange(stream, request, max_response_bytes).await
    }
}

async fn connect_any(addrs: &[SocketAddr]) -> Result<TcpStream, HttpError> {
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Err(e) => last = Some(format!("cannot connect to {addr}: {e}")),
        }
    }
    Err(HttpError::Transport(
        last.unwrap_or_else(|| "no address to connect to".into()),
    ))
}

fn build_request(req: &PreparedRequest) -> Result<http::Request<Full<Bytes>>, HttpError> {
    // Origin-form target (RFC 9112 §3.2.1) and the Host header from the URL.
    let target = &req.url[Position::BeforePath..Position::AfterQuery];
    let authority = &req.url[Position::BeforeHost..Position::AfterPort];
    let mut builder = http::Request::builder()
        .method(req.method.clone())
        .uri(target)
        .header(http::header::HOST, authority);
    if let Some(headers) = builder.headers_mut() {
        headers.extend(req.headers.clone());
    }
    builder
        .body(Full::new(req.body.clone()))
        .map_err(|e| HttpError::InvalidRequest(e.to_string()))
}

async fn exchange<IO>(
    io: IO,
    request: http::Request<Full<Bytes>>,
    max_response_bytes: usize,
) -> Result<OutboundResponse, HttpError>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| HttpError::Transport(format!("HTTP handshake failed: {e}")))?;
    // The connection task lives exactly as long as this exchange: dropping
    // the exchange (a timeout) closes the socket.
    let _connection = AbortOnDrop(tokio::spawn(async move {
        let _ = connection.await;
    }));
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| HttpError::Transport(format!("HTTP request failed: {e}")))?;
    let (parts, mut body) = response.into_parts();
    let declared = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max_response_bytes as u64) {
        return Err(HttpError::TooLarge);
    }
    let mut buf = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|e| HttpError::Transport(format!("reading the response failed: {e}")))?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > max_response_bytes {
                return Err(HttpError::TooLarge);
            }
            buf.extend_from_slice(&data);
        }
    }
    let headers = parts
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    Ok(OutboundResponse {
        status: parts.status.as_u16(),
        headers,
        body: buf.freeze(),
    })
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn tls_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let roots = rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let mut config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                // ring supports every default protocol version.
                .unwrap_or_else(|_| unreachable!("ring supports TLS 1.2 and 1.3"))
                .with_root_certificates(roots)
                .with_no_client_auth();
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            Arc::new(config)
        })
        .clone()
}

/// Answers every request in-process with a function of the request: for
/// benchmarks (measure the sandbox, not the network) and tests.
#[derive(Clone)]
pub struct CannedTransport {
    respond: Arc<dyn Fn(&PreparedRequest) -> OutboundResponse + Send + Sync>,
}

impl CannedTransport {
    pub fn new(
        respond: impl Fn(&PreparedRequest) -> OutboundResponse + Send + Sync + 'static,
    ) -> Self {
        Self {
            respond: Arc::new(respond),
        }
    }
}

impl Transport for CannedTransport {
    fn send(
        &self,
        req: PreparedRequest,
        _addrs: Vec<SocketAddr>,
        max_response_bytes: usize,
    ) -> BoxFuture<'static, Result<OutboundResponse, HttpError>> {
        let response = (self.respond)(&req);
        Box::pin(async move {
            if response.body.len() > max_response_bytes {
                return Err(HttpError::TooLarge);
            }
            Ok(response)
        })
    }
}
