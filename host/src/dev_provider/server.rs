//! The HTTP server: accepts connections, reads bounded bodies, records every
//! request and routes it to a handler; the responses' shapes live here.

use std::collections::{HashMap, HashSet, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use ring::rand::SystemRandom;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use super::oauth::State;
use super::record::{MAX_RECORDED, RecordedRequest};
use super::{
    Account, Client, Clock, DevClientAuth, DevProvider, IdTokenFault, TokenFault, TokenStyle,
    UserinfoFault, lock,
};
use crate::keys::KeySet;
use crate::upstream::jws::JwkSet;

/// Request bodies are forms of a few fields; anything bigger is refused.
const MAX_BODY: usize = 64 * 1024;

/// The response type of every handler.
pub(super) type Reply = Response<Full<Bytes>>;

/// What the connections share: configuration, state, faults, the record.
pub(super) struct Shared {
    pub accounts: Vec<Account>,
    pub clients: Vec<Client>,
    pub issuer_parameter: bool,
    pub origin: String,
    clock: Clock,
    pub rng: SystemRandom,
    pub state: Mutex<State>,
    pub token_fault: Mutex<TokenFault>,
    pub userinfo_fault: Mutex<UserinfoFault>,
    pub token_style: Mutex<TokenStyle>,
    pub id_token_fault: Mutex<IdTokenFault>,
    pub client_auth: Mutex<HashMap<String, DevClientAuth>>,
    /// The keys id_tokens are signed with, made on first use (RSA key
    /// generation is slow, and most tests never ask); replaced by a rotation.
    pub keys: Mutex<Option<Arc<KeySet>>>,
    /// Extra claims per user (`uuid`).
    pub claims: Mutex<HashMap<String, serde_json::Value>>,
    pub last_id_token: Mutex<Option<String>>,
    /// `jti`s of client assertions already accepted (RFC 7523 §3 item 7).
    pub seen_jtis: Mutex<HashSet<String>>,
    record: Mutex<VecDeque<RecordedRequest>>,
}

impl Shared {
    pub(super) fn new(provider: DevProvider, origin: String, state: State) -> Self {
        Self {
            accounts: provider.accounts,
            clients: provider.clients,
            issuer_parameter: provider.issuer_parameter,
            origin,
            clock: provider.clock,
            rng: SystemRandom::new(),
            state: Mutex::new(state),
            token_fault: Mutex::new(TokenFault::Normal),
            userinfo_fault: Mutex::new(UserinfoFault::Normal),
            token_style: Mutex::new(TokenStyle::Standard),
            id_token_fault: Mutex::new(IdTokenFault::Normal),
            client_auth: Mutex::new(HashMap::new()),
            keys: Mutex::new(None),
            claims: Mutex::new(HashMap::new()),
            last_id_token: Mutex::new(None),
            seen_jtis: Mutex::new(HashSet::new()),
            record: Mutex::new(VecDeque::new()),
        }
    }

    /// The signing keys, made now if there are none yet.
    pub(super) fn signing_keys(&self) -> Option<Arc<KeySet>> {
        let mut keys = lock(&self.keys);
        if keys.is_none() {
            match KeySet::generate() {
                Ok(k) => *keys = Some(Arc::new(k)),
                Err(error) => {
                    tracing::warn!(%error, "development provider: cannot make signing keys");
                }
            }
        }
        keys.clone()
    }

    pub(super) fn now(&self) -> SystemTime {
        (self.clock)()
    }

    pub(super) fn client(&self, id: &str) -> Option<&Client> {
        self.clients.iter().find(|c| c.id == id)
    }

    pub(super) fn recorded(&self, keep: impl Fn(&RecordedRequest) -> bool) -> Vec<RecordedRequest> {
        lock(&self.record)
            .iter()
            .filter(|r| keep(r))
            .cloned()
            .collect()
    }

    fn record(&self, request: RecordedRequest) {
        let mut record = lock(&self.record);
        if record.len() >= MAX_RECORDED {
            record.pop_front();
        }
        record.push_back(request);
    }
}

/// Accepts connections until the task is aborted; aborting it drops the
/// listener and every connection.
pub(super) async fn run(listener: TcpListener, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        let accepted = listener.accept().await;
        while connections.try_join_next().is_some() {}
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Out of file descriptors and the like: back off, not spin.
                tracing::warn!(%error, "development provider: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let shared = shared.clone();
        connections.spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(handle(&shared, req).await) }
            });
            // A client hanging up mid-request is its business.
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn handle(shared: &Shared, req: Request<Incoming>) -> Reply {
    let (parts, body) = req.into_parts();
    let (body, too_large) = match Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => (collected.to_bytes(), false),
        Err(error) if error.downcast_ref::<LengthLimitError>().is_some() => (Bytes::new(), true),
        Err(_) => {
            return json_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "unreadable body",
            );
        }
    };
    let request = RecordedRequest::new(&parts, body);
    shared.record(request.clone());
    if too_large {
        return json_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request",
            "request body over 64 KiB",
        );
    }
    match (&parts.method, request.path.as_str()) {
        (&Method::GET, "/authorize") => super::authorize::show(shared, &request),
        (&Method::POST, "/authorize") => super::authorize::submit(shared, &request),
        (&Method::POST, "/token") => {
            let client_jwks = client_jwks(shared, &request).await;
            super::token::handle(shared, &request, client_jwks.as_ref())
        }
        (&Method::GET, "/.well-known/openid-configuration") => super::oidc::discovery(shared),
        (&Method::GET, "/jwks") => super::oidc::jwks(shared),
        (&Method::GET, "/oidc/userinfo") => super::oidc::userinfo(shared, &request),
        (&Method::GET, "/userinfo") => super::userinfo::handle(shared, &request),
        _ => json_error(StatusCode::NOT_FOUND, "not_found", "no such endpoint"),
    }
}

/// The JWKS of a `private_key_jwt` client, fetched from its `jwks_uri` as a
/// provider does when the client authenticates (a failure reads as none).
async fn client_jwks(shared: &Shared, req: &RecordedRequest) -> Option<JwkSet> {
    let client_id = req.form_param("client_id")?;
    let jwks_uri = match lock(&shared.client_auth).get(client_id) {
        Some(DevClientAuth::PrivateKeyJwt { jwks_uri }) => jwks_uri.clone(),
        _ => return None,
    };
    let url = url::Url::parse(&jwks_uri).ok()?;
    let response = crate::upstream::Upstream::default()
        .send(Method::GET, &url, hyper::HeaderMap::new(), Bytes::new())
        .await
        .ok()?;
    JwkSet::parse(&response.body).ok()
}

/// A response with `body` and `content_type`.
pub(super) fn reply(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Reply {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// A JSON response; never cached (RFC 6749 §5.1 requires it of tokens).
pub(super) fn json(status: StatusCode, value: &serde_json::Value) -> Reply {
    let mut response = reply(status, "application/json", value.to_string());
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

/// `{"error": code, "error_description": description}`.
pub(super) fn json_error(status: StatusCode, code: &str, description: &str) -> Reply {
    json(
        status,
        &serde_json::json!({"error": code, "error_description": description}),
    )
}

/// An HTML page that may not be framed, cached or run scripts.
pub(super) fn html(status: StatusCode, page: String) -> Reply {
    let mut response = reply(status, "text/html; charset=utf-8", page);
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// A `302 Found` to `location`.
pub(super) fn redirect(location: &str) -> Reply {
    let Ok(value) = HeaderValue::from_str(location) else {
        return json_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "redirect URI is not a valid header value",
        );
    };
    let mut response = reply(StatusCode::FOUND, "text/plain; charset=utf-8", "");
    response.headers_mut().insert(header::LOCATION, value);
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// A fault's answer: `status` (500 if invalid) and `body`, labelled JSON if
/// it parses as JSON.
pub(super) fn fault(status: u16, body: &str) -> Reply {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let content_type = if serde_json::from_str::<serde::de::IgnoredAny>(body).is_ok() {
        "application/json"
    } else {
        "text/plain; charset=utf-8"
    };
    reply(status, content_type, body.to_owned())
}

/// Adds a header whose value the provider built; skipped if invalid.
pub(super) fn with_header(mut response: Reply, name: HeaderName, value: &str) -> Reply {
    if let Ok(value) = HeaderValue::from_str(value) {
        response.headers_mut().insert(name, value);
    }
    response
}
