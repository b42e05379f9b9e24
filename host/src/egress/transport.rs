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
use rustls::pki_types::ServerName;
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
    /// in-process transport answering for test hosts, or a test choosing
    /// what a name resolves to); `None` asks the system resolver. The
    /// policy vets these like any other, for mappers and the token exchange
    /// alike ([`super::vetted_addresses`]).
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

impl Idle {
    /// Still worth keeping: not past the idle timeout, not closed by the peer.
    fn is_live(&self) -> bool {
        self.since.elapsed() < IDLE_TIMEOUT && !self.conn.sender.is_closed()
    }
}

impl NetworkTransport {
    pub fn new() -> Self {
        Self::default()
    }

    fn idle_connection(&self, dest: &Destination) -> Option<Connection> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = idle.get_mut(dest)?;
        let mut found = None;
        while let Some(entry) = list.pop() {
            if entry.since.elapsed() < IDLE_TIMEOUT && entry.conn.sender.is_ready() {
                found = Some(entry.conn);
                break;
            }
        }
        // No empty lists: the map holds only destinations with connections.
        if list.is_empty() {
            idle.remove(dest);
        }
        found
    }

    fn keep(&self, dest: Destination, conn: Connection) {
        if conn.sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        // Sweep every destination, not only this one: a destination never
        // used again would otherwise keep its dead connections (each with a
        // socket and a driver task) and its key for the life of the process.
        // The pool is small (at most MAX_IDLE_PER_DESTINATION per destination).
        idle.retain(|_, list| {
            list.retain(Idle::is_live);
            !list.is_empty()
        });
        let list = idle.entry(dest).or_default();
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
            let name = tls_server_name(&req.url)?;
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

/// The name TLS verifies the certificate against. From the parsed host, not
/// `host_str`: that keeps an IPv6 literal's brackets (`[::1]`), which is
/// neither a DNS name nor an address to rustls.
fn tls_server_name(url: &url::Url) -> Result<ServerName<'static>, HttpError> {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => Ok(ServerName::IpAddress(IpAddr::V4(ip).into())),
        Some(url::Host::Ipv6(ip)) => Ok(ServerName::IpAddress(IpAddr::V6(ip).into())),
        Some(url::Host::Domain(name)) => ServerName::try_from(name.to_owned()).map_err(|e| {
            HttpError::InvalidRequest(format!("`{name}` is not a TLS server name: {e}"))
        }),
        None => Err(HttpError::InvalidRequest("the URL has no host".into())),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A kept-alive-able connection over an in-memory pipe: an HTTP/1
    /// client handshake sends nothing, so no server is needed.
    async fn connection() -> (Connection, tokio::io::DuplexStream) {
        let (client, server) = tokio::io::duplex(64);
        let mut conn = handshake(client).await.expect("handshake");
        // Ready once the driver task has run: what a pooled connection is.
        conn.sender.ready().await.expect("ready");
        (conn, server)
    }

    fn destination(port: u16) -> Destination {
        Destination {
            https: false,
            host: "api.example.com".into(),
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        }
    }

    fn pooled_destinations(transport: &NetworkTransport) -> usize {
        transport.idle.lock().expect("pool").len()
    }

    #[tokio::test]
    async fn taking_a_destinations_last_connection_removes_its_key() {
        let transport = NetworkTransport::new();
        let (conn, _server) = connection().await;
        transport.keep(destination(1), conn);
        assert_eq!(pooled_destinations(&transport), 1);
        assert!(transport.idle_connection(&destination(1)).is_some());
        assert_eq!(pooled_destinations(&transport), 0);
    }

    #[tokio::test]
    async fn keeping_a_connection_sweeps_other_destinations_expired_ones() {
        let transport = NetworkTransport::new();
        let (stale, _stale_server) = connection().await;
        let long_ago = Instant::now()
            .checked_sub(IDLE_TIMEOUT + Duration::from_secs(1))
            .expect("the clock is past the idle timeout");
        transport.idle.lock().expect("pool").insert(
            destination(1),
            vec![Idle {
                conn: stale,
                since: long_ago,
            }],
        );
        let (fresh, _fresh_server) = connection().await;
        transport.keep(destination(2), fresh);
        let idle = transport.idle.lock().expect("pool");
        assert!(
            !idle.contains_key(&destination(1)),
            "the expired one is gone"
        );
        assert_eq!(idle.get(&destination(2)).map(Vec::len), Some(1));
    }

    #[test]
    fn tls_names_of_ip_literals_are_addresses_without_brackets() {
        let name = |url: &str| tls_server_name(&url::Url::parse(url).expect("url"));
        assert!(matches!(
            name("https://[::1]:8443/"),
            Ok(ServerName::IpAddress(_))
        ));
        assert!(matches!(
            name("https://127.0.0.1/"),
            Ok(ServerName::IpAddress(_))
        ));
        assert!(matches!(
            name("https://api.example.com/"),
            Ok(ServerName::DnsName(_))
        ));
    }
}
