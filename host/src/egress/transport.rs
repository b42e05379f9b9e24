//! Carrying a vetted request: the real network, or an in-process answer.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures::future::BoxFuture;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
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

    /// The addresses of `name` when this transport knows them itself (an
    /// in-process transport answering for test hosts); `None` asks the
    /// system resolver. The policy vets these like any other.
    fn known_addresses(&self, _name: &str) -> Option<Vec<IpAddr>> {
        None
    }
}

/// Idle connections kept per destination: enough for a burst of logins to
/// one provider, few enough that a provider is never flooded.
pub const MAX_IDLE_PER_DESTINATION: usize = 8;
/// How long an idle connection is kept. Providers close idle connections
/// after 5–60 s; reusing one they already closed costs a failed attempt.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(20);

/// HTTP/1.1 over TCP, TLS (rustls, Mozilla's roots) for `https`. No proxy
/// from the environment, no redirects. Connections are kept alive and reused
/// per destination — scheme, host name and the *vetted address* — so a
/// connection is only ever reused for an address that this request's policy
/// check allowed. Reuse saves a TCP (and TLS) handshake per request: on
/// loopback a third of a login's CPU, against a real provider far more.
#[derive(Clone, Default)]
pub struct NetworkTransport {
    idle: Arc<Mutex<HashMap<Destination, Vec<Idle>>>>,
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct Destination {
    https: bool,
    host: String,
    addr: SocketAddr,
}

/// A kept-alive connection: its request handle and the task driving it,
/// aborted when the connection is dropped.
struct Connection {
    sender: SendRequest<Full<Bytes>>,
    _driver: AbortOnDrop,
}

struct Idle {
    conn: Connection,
    since: Instant,
}

impl NetworkTransport {
    pub fn new() -> Self {
        Self::default()
    }

    fn idle_connection(&self, dest: &Destination) -> Option<Connection> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = idle.get_mut(dest)?;
        while let Some(entry) = list.pop() {
            if entry.since.elapsed() < IDLE_TIMEOUT && entry.conn.sender.is_ready() {
                return Some(entry.conn);
            }
        }
        None
    }

    fn keep(&self, dest: Destination, conn: Connection) {
        if conn.sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = idle.entry(dest).or_default();
        list.retain(|e| e.since.elapsed() < IDLE_TIMEOUT);
        if list.len() < MAX_IDLE_PER_DESTINATION {
            list.push(Idle {
                conn,
                since: Instant::now(),
            });
        }
    }
}

impl Transport for NetworkTransport {
    fn send(
        &self,
        req: PreparedRequest,
        addrs: Vec<SocketAddr>,
        max_response_bytes: usize,
    ) -> BoxFuture<'static, Result<OutboundResponse, HttpError>> {
        let this = self.clone();
        Box::pin(async move { this.send_pooled(req, addrs, max_response_bytes).await })
    }
}

impl NetworkTransport {
    async fn send_pooled(
        &self,
        req: PreparedRequest,
        addrs: Vec<SocketAddr>,
        max_response_bytes: usize,
    ) -> Result<OutboundResponse, HttpError> {
        let https = req.url.scheme() == "https";
        let host = req.url.host_str().unwrap_or_default().to_owned();
        let mut request = build_request(&req)?;
        // A kept-alive connection to one of the vetted addresses, if any.
        // If the provider closed it meanwhile, hyper hands the unsent request
        // back and we go on to a fresh connection.
        for addr in &addrs {
            let dest = Destination {
                https,
                host: host.clone(),
                addr: *addr,
            };
            let Some(mut conn) = self.idle_connection(&dest) else {
                continue;
            };
            match conn.sender.try_send_request(request).await {
                Ok(response) => {
                    let result = read_response(response, max_response_bytes).await;
                    if result.is_ok() {
                        self.keep(dest, conn);
                    }
                    return result;
                }
                Err(mut e) => match e.take_message() {
                    Some(unsent) => request = unsent,
                    None => {
                        return Err(HttpError::Transport(format!(
                            "HTTP request failed: {}",
                            e.error()
                        )));
                    }
                },
            }
        }
        let (stream, addr) = connect_any(&addrs).await?;
        let mut conn = if https {
            let name = rustls::pki_types::ServerName::try_from(host.clone()).map_err(|e| {
                HttpError::InvalidRequest(format!("`{host}` is not a TLS server name: {e}"))
            })?;
            let tls = tokio_rustls::TlsConnector::from(tls_config())
                .connect(name, stream)
                .await
                .map_err(|e| HttpError::Transport(format!("TLS with `{host}` failed: {e}")))?;
            handshake(tls).await?
        } else {
            handshake(stream).await?
        };
        let response = conn
            .sender
            .send_request(request)
            .await
            .map_err(|e| HttpError::Transport(format!("HTTP request failed: {e}")))?;
        let result = read_response(response, max_response_bytes).await;
        if result.is_ok() {
            self.keep(Destination { https, host, addr }, conn);
        }
        result
    }
}

async fn connect_any(addrs: &[SocketAddr]) -> Result<(TcpStream, SocketAddr), HttpError> {
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                return Ok((stream, *addr));
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

async fn handshake<IO>(io: IO) -> Result<Connection, HttpError>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| HttpError::Transport(format!("HTTP handshake failed: {e}")))?;
    // The driver lives exactly as long as the connection: dropping it (a
    // timeout, an eviction from the pool) closes the socket.
    let driver = AbortOnDrop(tokio::spawn(async move {
        let _ = connection.await;
    }));
    Ok(Connection {
        sender,
        _driver: driver,
    })
}

async fn read_response(
    response: http::Response<hyper::body::Incoming>,
    max_response_bytes: usize,
) -> Result<OutboundResponse, HttpError> {
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
    hosts: Arc<HashMap<String, IpAddr>>,
}

impl CannedTransport {
    pub fn new(
        respond: impl Fn(&PreparedRequest) -> OutboundResponse + Send + Sync + 'static,
    ) -> Self {
        Self {
            respond: Arc::new(respond),
            hosts: Arc::default(),
        }
    }

    /// Answers name lookups for `name` with `ip`, so URLs with hosts that
    /// exist nowhere (`auth.example.com`) reach this transport.
    pub fn resolving(mut self, name: &str, ip: IpAddr) -> Self {
        Arc::make_mut(&mut self.hosts).insert(name.to_ascii_lowercase(), ip);
        self
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

    fn known_addresses(&self, name: &str) -> Option<Vec<IpAddr>> {
        self.hosts
            .get(&name.to_ascii_lowercase())
            .map(|ip| vec![*ip])
    }
}
