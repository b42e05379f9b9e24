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
/// How long before a server's announced `Keep-Alive: timeout` an idle
/// connection is dropped: the server's close and our reuse must not cross
/// on the wire (a request takes a few milliseconds to arrive, more on a
/// loaded host). Node announces `timeout=5` and closes at 5 s.
pub const KEEP_ALIVE_MARGIN: Duration = Duration::from_secs(1);

/// How long a connection may stay idle in the pool, given its last
/// response's `Keep-Alive` header (the HTTP/1.0 extension RFC 2068
/// §19.7.1.1 describes, which Node and Apache still send with HTTP/1.1):
/// [`IDLE_TIMEOUT`], or less when the server announced it closes sooner,
/// [`KEEP_ALIVE_MARGIN`] before that. `None`: not worth keeping.
fn idle_lifetime(keep_alive: Option<&str>) -> Option<Duration> {
    let announced = keep_alive.and_then(|value| {
        value.split(',').find_map(|param| {
            let (name, seconds) = param.split_once('=')?;
            name.trim()
                .eq_ignore_ascii_case("timeout")
                .then(|| seconds.trim().parse::<u64>().ok())
                .flatten()
        })
    });
    let Some(seconds) = announced else {
        return Some(IDLE_TIMEOUT);
    };
    let lifetime = Duration::from_secs(seconds)
        .saturating_sub(KEEP_ALIVE_MARGIN)
        .min(IDLE_TIMEOUT);
    (!lifetime.is_zero()).then_some(lifetime)
}

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
    /// When it stops being reused: [`IDLE_TIMEOUT`] after it went idle, or
    /// sooner as the server's `Keep-Alive: timeout` says ([`idle_lifetime`]).
    until: Instant,
}

impl Idle {
    /// Still worth keeping: not past its idle lifetime, not closed by the peer.
    fn is_live(&self) -> bool {
        Instant::now() < self.until && !self.conn.sender.is_closed()
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
            if Instant::now() < entry.until && entry.conn.sender.is_ready() {
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

    /// Pools `conn` for `lifetime` (see [`idle_lifetime`]).
    fn keep(&self, dest: Destination, conn: Connection, lifetime: Duration) {
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
                until: Instant::now() + lifetime,
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
        // back and we go on to a fresh connection. If it closed it as the
        // request arrived (before any byte of answer), the request is sent
        // again, once, on a fresh connection: a server that closes an idle
        // connection has not processed what arrived on it (RFC 9112 §9.3.1
        // lets a client retry on a new connection when the old one closed
        // before any response; Node closes idle connections after its
        // `keepAliveTimeout` and races exactly this way).
        'pooled: for addr in &addrs {
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
                    if let Ok(answer) = &result {
                        self.keep_per_answer(dest, conn, answer);
                    }
                    return result;
                }
                Err(mut e) => match e.take_message() {
                    Some(unsent) => request = unsent,
                    None if closed_before_answer(e.error()) => {
                        tracing::debug!(%addr, error = %e.error(),
                            "a pooled connection closed before answering; sending again on a fresh one");
                        request = build_request(&req)?;
                        break 'pooled;
                    }
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
        if let Ok(answer) = &result {
            self.keep_per_answer(Destination { https, host, addr }, conn, answer);
        }
        result
    }

    /// Pools `conn` as its last answer's `Keep-Alive` header allows.
    fn keep_per_answer(&self, dest: Destination, conn: Connection, answer: &OutboundResponse) {
        let keep_alive = answer
            .headers
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case("keep-alive"))
            .map(|(_, value)| value.as_str());
        if let Some(lifetime) = idle_lifetime(keep_alive) {
            self.keep(dest, conn, lifetime);
        }
    }
}

/// Whether a request sent on a reused connection failed because the
/// server closed the connection before any byte of answer: hyper's
/// "connection closed before message completed", a reset, or a broken
/// pipe. Not a parse error or anything after an answer began.
fn closed_before_answer(e: &hyper::Error) -> bool {
    if e.is_incomplete_message() || e.is_canceled() {
        return true;
    }
    let mut source = std::error::Error::source(e);
    while let Some(inner) = source {
        if let Some(io) = inner.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::UnexpectedEof
            );
        }
        source = inner.source();
    }
    false
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
        transport.keep(destination(1), conn, IDLE_TIMEOUT);
        assert_eq!(pooled_destinations(&transport), 1);
        assert!(transport.idle_connection(&destination(1)).is_some());
        assert_eq!(pooled_destinations(&transport), 0);
    }

    #[tokio::test]
    async fn keeping_a_connection_sweeps_other_destinations_expired_ones() {
        let transport = NetworkTransport::new();
        let (stale, _stale_server) = connection().await;
        let long_ago = Instant::now()
            .checked_sub(Duration::from_secs(1))
            .expect("the clock is past a second");
        transport.idle.lock().expect("pool").insert(
            destination(1),
            vec![Idle {
                conn: stale,
                until: long_ago,
            }],
        );
        let (fresh, _fresh_server) = connection().await;
        transport.keep(destination(2), fresh, IDLE_TIMEOUT);
        let idle = transport.idle.lock().expect("pool");
        assert!(
            !idle.contains_key(&destination(1)),
            "the expired one is gone"
        );
        assert_eq!(idle.get(&destination(2)).map(Vec::len), Some(1));
    }

    /// How a [`closing_server`] treats a connection once it has answered.
    #[derive(Clone, Copy)]
    enum Reuse {
        /// Reads the next request whole, then closes without a byte of
        /// answer: the idle timeout fired as the request arrived (Node's
        /// `keepAliveTimeout` race).
        CloseOnNextRequest,
        /// Answers every request.
        Answer,
    }

    /// A provider on 127.0.0.1:0 answering `200 ok` with `extra` headers,
    /// treating reused connections as `reuse` says; counts connections.
    async fn closing_server(
        extra: &'static str,
        reuse: Reuse,
    ) -> (SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut answered = 0;
                    let mut buf = vec![0u8; 4096];
                    let mut request = Vec::new();
                    loop {
                        let Ok(n) = stream.read(&mut buf).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        request.extend_from_slice(&buf[..n]);
                        // Bodiless GETs: a request ends at its blank line.
                        if !request.windows(4).any(|w| w == b"\r\n\r\n") {
                            continue;
                        }
                        request.clear();
                        if answered > 0 && matches!(reuse, Reuse::CloseOnNextRequest) {
                            return;
                        }
                        let answer =
                            format!("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n{extra}\r\nok");
                        if stream.write_all(answer.as_bytes()).await.is_err() {
                            return;
                        }
                        answered += 1;
                    }
                });
            }
        });
        (addr, accepted)
    }

    fn get(addr: SocketAddr) -> PreparedRequest {
        PreparedRequest {
            method: http::Method::GET,
            url: url::Url::parse(&format!("http://{addr}/token")).expect("url"),
            headers: http::HeaderMap::new(),
            body: Bytes::new(),
        }
    }

    #[tokio::test]
    async fn a_reused_connection_closed_before_any_answer_byte_is_retried_once_on_a_fresh_one() {
        let (addr, accepted) = closing_server("", Reuse::CloseOnNextRequest).await;
        let transport = NetworkTransport::new();
        for i in 0..5 {
            let answer = transport
                .send(get(addr), vec![addr], 1024)
                .await
                .unwrap_or_else(|e| panic!("request {i} failed: {e}"));
            assert_eq!(answer.status, 200);
        }
        // Each request after the first found the pooled connection closed
        // under it and went on a fresh one.
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 5);
    }

    #[tokio::test]
    async fn a_connection_whose_keep_alive_timeout_is_within_the_margin_is_not_reused() {
        // `timeout=1`: closing at 1 s, the connection is not worth keeping;
        // a reuse would race the provider's close.
        let (addr, accepted) =
            closing_server("keep-alive: timeout=1\r\n", Reuse::CloseOnNextRequest).await;
        let transport = NetworkTransport::new();
        for _ in 0..3 {
            transport
                .send(get(addr), vec![addr], 1024)
                .await
                .expect("answered");
        }
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 3);
        assert_eq!(pooled_destinations(&transport), 0, "nothing kept");
    }

    #[tokio::test]
    async fn a_connection_with_a_longer_keep_alive_timeout_is_reused() {
        let (addr, accepted) =
            closing_server("keep-alive: timeout=5, max=100\r\n", Reuse::Answer).await;
        let transport = NetworkTransport::new();
        for _ in 0..3 {
            transport
                .send(get(addr), vec![addr], 1024)
                .await
                .expect("answered");
        }
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[test]
    fn the_idle_lifetime_honours_keep_alive_timeout_less_the_margin() {
        assert_eq!(idle_lifetime(None), Some(IDLE_TIMEOUT));
        assert_eq!(
            idle_lifetime(Some("timeout=5")),
            Some(Duration::from_secs(5) - KEEP_ALIVE_MARGIN)
        );
        assert_eq!(
            idle_lifetime(Some("max=100, Timeout=5")),
            Some(Duration::from_secs(5) - KEEP_ALIVE_MARGIN),
            "any order, any case"
        );
        assert_eq!(idle_lifetime(Some("timeout=1")), None);
        assert_eq!(idle_lifetime(Some("timeout=0")), None);
        assert_eq!(idle_lifetime(Some("timeout=3600")), Some(IDLE_TIMEOUT));
        assert_eq!(
            idle_lifetime(Some("timeout=soon")),
            Some(IDLE_TIMEOUT),
            "nonsense is ignored"
        );
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
