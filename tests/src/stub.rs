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
