//! A stub provider: an HTTP/1.1 server on 127.0.0.1, port 0, answering with a
//! function of the request path, and recording what it received.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use waypass::egress::HostRule;

/// What the stub answers.
pub enum Reply {
    /// A status and a JSON (or any) body.
    Body(u16, String),
    /// A status with headers and a body.
    Full(u16, Vec<(&'static str, String)>, Vec<u8>),
    /// Never answers (until the client gives up).
    Hang,
}

/// One request the stub received.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path_and_query: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

type Handler = dyn Fn(&Received) -> Reply + Send + Sync;

/// A running stub; stops when dropped.
pub struct Stub {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    accepted: Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Stub {
    /// Starts a stub answering every request with `handler`.
    pub async fn start(handler: impl Fn(&Received) -> Reply + Send + Sync + 'static) -> Stub {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let received = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        let log = received.clone();
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let accepts = accepted.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                accepts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let (handler, log) = (handler.clone(), log.clone());
                tokio::spawn(async move {
                    let service =
                        hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                            let (handler, log) = (handler.clone(), log.clone());
                            async move { Ok::<_, Infallible>(answer(req, &*handler, &log).await) }
                        });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Stub {
            addr,
            received,
            accepted,
            task,
        }
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The rule allowing plain HTTP to this stub.
    pub fn rule(&self) -> HostRule {
        format!("http://{}", self.addr)
            .parse()
            .expect("stub rule parses")
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Requests received so far.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().expect("stub log").clone()
    }
}

impl Drop for Stub {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer(
    req: Request<hyper::body::Incoming>,
    handler: &Handler,
    log: &Mutex<Vec<Received>>,
) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
        .unwrap_or_default();
    let received = Received {
        method: parts.method.to_string(),
        path_and_query: parts
            .uri
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        headers: parts
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body,
    };
    log.lock().expect("stub log").push(received.clone());
    let (status, headers, body) = match handler(&received) {
        Reply::Body(status, body) => (
            status,
            vec![("content-type", "application/json".to_string())],
            body.into_bytes(),
        ),
        Reply::Full(status, headers, body) => (status, headers, body),
        Reply::Hang => std::future::pending().await,
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = hyper::StatusCode::from_u16(status).expect("valid status");
    for (name, value) in headers {
        response
            .headers_mut()
            .insert(name, value.parse().expect("valid header value"));
    }
    response
}

/// A server that answers every request with the same raw bytes, framing
/// included: for answers hyper would not send (a body longer than its
/// `Content-Length`, a chunked body of any size). Keeps each connection
/// open for the next request, as a provider does; stops when dropped.
pub struct RawStub {
    pub addr: SocketAddr,
    requests: Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

/// The head of a request is read up to this size; test clients send less.
const RAW_MAX_HEAD: usize = 64 * 1024;

impl RawStub {
    /// Starts a server writing `answer` after each request it reads.
    pub async fn start(answer: Vec<u8>) -> RawStub {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let answer: Arc<[u8]> = answer.into();
        let requests = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = requests.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (answer, counter) = (answer.clone(), counter.clone());
                tokio::spawn(async move {
                    let _ = raw_serve(stream, &answer, &counter).await;
                });
            }
        });
        RawStub {
            addr,
            requests,
            task,
        }
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The rule allowing plain HTTP to this server.
    pub fn rule(&self) -> HostRule {
        format!("http://{}", self.addr)
            .parse()
            .expect("stub rule parses")
    }

    /// Requests read so far.
    pub fn requests(&self) -> usize {
        self.requests.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// `200 OK` with a chunked body of `len` bytes of `x`, in 16 KiB chunks.
    pub fn chunked(len: usize) -> Vec<u8> {
        let mut out = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
        let mut left = len;
        while left > 0 {
            let n = left.min(16 * 1024);
            out.extend_from_slice(format!("{n:x}\r\n").as_bytes());
            out.extend(std::iter::repeat_n(b'x', n));
            out.extend_from_slice(b"\r\n");
            left -= n;
        }
        out.extend_from_slice(b"0\r\n\r\n");
        out
    }

    /// `200 OK` whose `Content-Length` counts `declared` only, followed by
    /// `extra` bytes of `x` the length does not count.
    pub fn understated(declared: &[u8], extra: usize) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            declared.len()
        )
        .into_bytes();
        out.extend_from_slice(declared);
        out.extend(std::iter::repeat_n(b'x', extra));
        out
    }
}

impl Drop for RawStub {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads requests (head, and a body as long as its `Content-Length`) and
/// answers each with `answer`, until the client closes the connection.
async fn raw_serve(
    mut stream: tokio::net::TcpStream,
    answer: &[u8],
    counter: &std::sync::atomic::AtomicUsize,
) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = Vec::new();
    loop {
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if buf.len() > RAW_MAX_HEAD {
                return Ok(());
            }
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
        let body_len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        while buf.len() < head_end + body_len {
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        buf.drain(..head_end + body_len);
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        stream.write_all(answer).await?;
    }
}
