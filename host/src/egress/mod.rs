//! Outbound HTTP for mappers, under the connection's egress policy.
//!
//! Both ways a guest reaches the network — our `waypass:mapper/http.send`
//! import and `wasi:http/outgoing-handler` — end in [`EgressSession::send`], so
//! one set of rules holds for every language:
//!
//! 1. the per-invocation request budget;
//! 2. the URL: `http`/`https` only, no credentials in it, host on the allow-list,
//!    plain HTTP only where the rule says so;
//! 3. the request body cap;
//! 4. resolution, then every resolved address classified ([`addr`]); we connect
//!    only to the addresses that passed, so DNS rebinding between check and
//!    connect is impossible;
//! 5. a timeout bounded by the invocation's deadline, a response body cap, and
//!    no redirects followed (the guest sees the 3xx).
//!
//! The [`Transport`] that carries a vetted request is a trait so benchmarks
//! and tests can answer in-process; [`NetworkTransport`] is the real one.

pub mod addr;
mod policy;
mod transport;

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use serde::Serialize;
use url::Url;

pub use addr::AddressClass;
use policy::EffectiveLimits;
pub use policy::{
    DEFAULT_MAX_REQUEST_BYTES, DEFAULT_MAX_REQUESTS, DEFAULT_MAX_RESPONSE_BYTES,
    DEFAULT_REQUEST_TIMEOUT, EgressPolicy, HostRule, MAX_REQUEST_BYTES, MAX_REQUEST_TIMEOUT,
    MAX_REQUESTS, MAX_RESPONSE_BYTES, MIN_REQUEST_TIMEOUT, MIN_RESPONSE_BYTES, PrivateReach,
};
pub use transport::{CannedTransport, NetworkTransport, Transport};

/// Headers the host sets itself or that describe the connection, not the
/// request; a guest's values for them are dropped (RFC 9110 §7.6.1).
const HOST_CONTROLLED_HEADERS: [&str; 9] = [
    "host",
    "content-length",
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
];

/// Query parameters whose values are masked in request records.
const SECRET_PARAM_HINTS: [&str; 7] = ["token", "secret", "key", "password", "code", "sig", "auth"];

/// A request as a mapper asked for it.
#[derive(Debug, Clone)]
pub struct OutboundRequest {
    pub method: Method,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
}

/// A request that passed the policy, ready for a [`Transport`].
#[derive(Debug)]
pub struct PreparedRequest {
    pub method: Method,
    pub url: Url,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// A whole response, body included (already within the size cap).
#[derive(Debug, Clone)]
pub struct OutboundResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

/// Why a request was not answered; mirrors the WIT `http.error` variant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize)]
#[serde(tag = "kind", content = "detail", rename_all = "kebab-case")]
pub enum HttpError {
    #[error("denied: {0}")]
    Denied(String),
    #[error("timeout")]
    Timeout,
    #[error("too-large")]
    TooLarge,
    #[error("invalid-request: {0}")]
    InvalidRequest(String),
    #[error("transport: {0}")]
    Transport(String),
    #[error("budget-exhausted")]
    BudgetExhausted,
}

/// What the host saw of one outbound request, for logs and the `try` API.
/// Secrets in the query string are masked; headers and bodies are not kept.
#[derive(Debug, Clone, Serialize)]
pub struct RequestRecord {
    pub method: String,
    pub url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<HttpError>,
    pub elapsed_ms: u64,
}

/// One invocation's view of the network: the policy, the budget used so far,
/// the deadline, and the record of every request. Shared (behind an `Arc`)
/// by the `http` import and the `wasi:http` hook.
pub struct EgressSession {
    policy: Arc<EgressPolicy>,
    /// The policy's limits, clamped once here for every request.
    limits: EffectiveLimits,
    transport: Arc<dyn Transport>,
    deadline: Instant,
    used: AtomicU32,
    records: Mutex<Vec<RequestRecord>>,
}

impl EgressSession {
    pub fn new(
        policy: Arc<EgressPolicy>,
        transport: Arc<dyn Transport>,
        deadline: Instant,
    ) -> Self {
        Self {
            limits: policy.clamped_limits(),
            policy,
            transport,
            deadline,
            used: AtomicU32::new(0),
            records: Mutex::new(Vec::new()),
        }
    }

    /// Sends `req` if the policy allows it, and records the outcome.
    pub async fn send(&self, req: OutboundRequest) -> Result<OutboundResponse, HttpError> {
        self.send_within(req, self.limits.max_response_bytes).await
    }

    /// [`EgressSession::send`] with the response body also capped at
    /// `max_response_bytes` (what the caller has room for; the policy's cap
    /// still applies): a longer body is [`HttpError::TooLarge`].
    pub async fn send_within(
        &self,
        req: OutboundRequest,
        max_response_bytes: usize,
    ) -> Result<OutboundResponse, HttpError> {
        let started = Instant::now();
        let method = req.method.to_string();
        let parsed = Url::parse(&req.url);
        let url = parsed
            .as_ref()
            .map_or_else(|_| "<invalid url>".to_owned(), mask_url);
        let result = self.send_checked(req, parsed, max_response_bytes).await;
        let record = RequestRecord {
            method,
            url,
            status: result.as_ref().ok().map(|r| r.status),
            error: result.as_ref().err().cloned(),
            elapsed_ms: started.elapsed().as_millis().try_into().unwrap_or(u64::MAX),
        };
        tracing::debug!(target: "waypass::egress", method = %record.method, url = %record.url,
            status = ?record.status, error = ?record.error, "mapper request");
        self.records
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(record);
        result
    }

    /// The largest request body this session sends.
    pub fn max_request_bytes(&self) -> usize {
        self.limits.max_request_bytes
    }

    /// The largest response body this session accepts.
    pub fn max_response_bytes(&self) -> usize {
        self.limits.max_response_bytes
    }

    /// Every request made so far, in order; moved out, leaving none behind.
    /// Called once, when the invocation ends.
    pub fn take_records(&self) -> Vec<RequestRecord> {
        std::mem::take(
            &mut *self
                .records
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        )
    }

    async fn send_checked(
        &self,
        req: OutboundRequest,
        url: Result<Url, url::ParseError>,
        max_response_bytes: usize,
    ) -> Result<OutboundResponse, HttpError> {
        // Every attempt counts, refused ones too: a guest looping on a denied
        // URL must run out as surely as one looping on an allowed one.
        let limits = self.limits;
        if self.used.fetch_add(1, Ordering::Relaxed) >= limits.max_requests {
            return Err(HttpError::BudgetExhausted);
        }
        let url =
            url.map_err(|e| HttpError::InvalidRequest(format!("`{}` is not a URL: {e}", req.url)))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(HttpError::InvalidRequest(format!(
                "scheme `{}` is not supported; use https",
                url.scheme()
            )));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(HttpError::InvalidRequest(
                "credentials in the URL are not supported; send an Authorization header".into(),
            ));
        }
        self.policy.check_url(&url).map_err(HttpError::Denied)?;
        let body = req.body.unwrap_or_default();
        if body.len() > limits.max_request_bytes {
            return Err(HttpError::TooLarge);
        }
        let headers = header_map(&req.headers)?;
        let remaining = self.deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(HttpError::Timeout);
        }
        let timeout = limits.request_timeout.min(remaining);
        let prepared = PreparedRequest {
            method: req.method,
            url,
            headers,
            body: Bytes::from(body),
        };
        let allow_private = self.policy.allow_private_networks;
        let max_response = limits.max_response_bytes.min(max_response_bytes);
        tokio::time::timeout(timeout, async {
            let addrs = vetted_addresses(&prepared.url, allow_private, &*self.transport).await?;
            self.transport.send(prepared, addrs, max_response).await
        })
        .await
        .map_err(|_| HttpError::Timeout)?
    }
}

fn header_map(headers: &[(String, String)]) -> Result<HeaderMap, HttpError> {
    let mut map = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
            HttpError::InvalidRequest(format!("`{name}` is not a valid header name"))
        })?;
        if HOST_CONTROLLED_HEADERS.contains(&name.as_str()) {
            continue;
        }
        let value = HeaderValue::from_str(value).map_err(|_| {
            HttpError::InvalidRequest(format!("the value of header `{name}` is not valid"))
        })?;
        map.append(name, value);
    }
    Ok(map)
}

/// Where a request to `url` may connect: the host resolved (by `transport`
/// when it knows the name, else by the system resolver), every address
/// classified ([`addr::classify`]), and only the allowed ones kept. Mappers'
/// requests and the broker's own requests for a connection (the token
/// exchange) both come through here, and connect only to what it returns,
/// so DNS rebinding between the check and the connect is impossible.
///
/// Metadata addresses are refused always; loopback, private and the rest
/// only unless `allow_private`. A name resolving to both kinds keeps its
/// allowed addresses only: the refused ones are never tried.
///
/// The refusal names the host and the kind of address, not the address: a
/// caller who may not reach private networks learns nothing of the internal
/// DNS. The address goes to the debug log.
pub async fn vetted_addresses(
    url: &Url,
    allow_private: bool,
    transport: &dyn Transport,
) -> Result<Vec<SocketAddr>, HttpError> {
    let port = url.port_or_known_default().unwrap_or(443);
    let ips: Vec<IpAddr> = match url.host() {
        Some(url::Host::Ipv4(ip)) => vec![ip.into()],
        Some(url::Host::Ipv6(ip)) => vec![ip.into()],
        Some(url::Host::Domain(name)) => match transport.known_addresses(name) {
            Some(ips) => ips,
            None => tokio::net::lookup_host((name, port))
                .await
                .map_err(|e| HttpError::Transport(format!("cannot resolve `{name}`: {e}")))?
                .map(|sa| sa.ip())
                .collect(),
        },
        None => return Err(HttpError::InvalidRequest("the URL has no host".into())),
    };
    let mut refused = None;
    let vetted: Vec<SocketAddr> = ips
        .into_iter()
        .filter(|ip| match addr::classify(*ip) {
            AddressClass::Public => true,
            AddressClass::Private if allow_private => true,
            class => {
                tracing::debug!(target: "waypass::egress", host = url.host_str(), address = %ip, ?class, "address refused");
                // A metadata address is the reason to give, when there is one.
                if refused != Some(AddressClass::Metadata) {
                    refused = Some(class);
                }
                false
            }
        })
        .map(|ip| SocketAddr::new(ip, port))
        .collect();
    let host = url.host_str().unwrap_or_default();
    let verb = if matches!(url.host(), Some(url::Host::Domain(_))) {
        "resolves to"
    } else {
        "is"
    };
    match (vetted.is_empty(), refused) {
        (false, _) => Ok(vetted),
        (true, Some(AddressClass::Metadata)) => Err(HttpError::Denied(format!(
            "`{host}` {verb} a cloud metadata address, which is never reachable"
        ))),
        (true, Some(_)) => Err(HttpError::Denied(format!(
            "`{host}` {verb} a private address, and this connection does not allow private networks"
        ))),
        (true, None) => Err(HttpError::Transport(format!(
            "`{host}` resolved to no address"
        ))),
    }
}

/// The URL with credentials dropped and secret-looking query values masked.
fn mask_url(url: &Url) -> String {
    let mut url = url.clone();
    let _ = url.set_username("");
    let _ = url.set_password(None);
    if url.query().is_some() {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| {
                let lower = k.to_ascii_lowercase();
                let secret = SECRET_PARAM_HINTS.iter().any(|hint| lower.contains(hint));
                (
                    k.into_owned(),
                    if secret {
                        "****".into()
                    } else {
                        v.into_owned()
                    },
                )
            })
            .collect();
        url.query_pairs_mut().clear().extend_pairs(pairs);
    }
    url.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masked_urls_hide_credentials_and_secret_parameters() {
        let url = Url::parse("https://u:p@api.example.com/me?access_token=abc&fields=id&api_key=k")
            .expect("url parses");
        let masked = mask_url(&url);
        assert_eq!(
            masked,
            "https://api.example.com/me?access_token=****&fields=id&api_key=****"
        );
    }

    #[test]
    fn host_controlled_headers_are_dropped_and_invalid_ones_refused() {
        let map = header_map(&[
            ("Host".into(), "evil".into()),
            ("Accept".into(), "application/json".into()),
        ])
        .expect("valid headers");
        assert!(map.get("host").is_none());
        assert_eq!(
            map.get("accept").map(|v| v.as_bytes()),
            Some(&b"application/json"[..])
        );
        assert!(matches!(
            header_map(&[("bad header".into(), "x".into())]),
            Err(HttpError::InvalidRequest(_))
        ));
    }
}
