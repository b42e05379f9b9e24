//! Talking to providers: the token exchange (RFC 6749 §4.1.3).

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method};

use crate::egress::{HttpError, NetworkTransport, OutboundResponse, PreparedRequest, Transport};
use crate::mapper::TokenSet;
use crate::model::{Connection, TokenAuthMethod};
use crate::secret::Secret;

/// Time allowed for a provider's token endpoint.
pub const TOKEN_EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest token response accepted (tokens are a few KiB).
pub const MAX_TOKEN_RESPONSE_BYTES: usize = 256 * 1024;

/// Why the code could not be exchanged. The text reaches the app as an
/// `error_description`, so it says what happened without quoting secrets,
/// and never where the broker tried to connect or what the OS said: that
/// would make every app a port scanner of the broker's network.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExchangeError {
    #[error("the provider refused the authorization code: {error}{}", description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Refused {
        error: String,
        description: Option<String>,
    },
    #[error("the provider's token endpoint answered HTTP {status}")]
    Status { status: u16 },
    #[error("the provider's token response is not usable: {0}")]
    BadResponse(String),
    /// No HTTP answer: the address policy refused the endpoint, or name
    /// resolution, the connection, TLS or HTTP failed, or time ran out. The
    /// app sees only that; `detail` (addresses, ports, OS errors) goes to
    /// the log.
    #[error("the provider could not be reached")]
    Unreachable { detail: String },
}

/// The client for providers' token endpoints.
#[derive(Clone)]
pub struct Upstream {
    transport: Arc<dyn Transport>,
    timeout: Duration,
}

impl Default for Upstream {
    fn default() -> Self {
        Self::new(Arc::new(NetworkTransport::new()))
    }
}

impl Upstream {
    pub fn new(transport: Arc<dyn Transport>) -> Self {
        Self {
            transport,
            timeout: TOKEN_EXCHANGE_TIMEOUT,
        }
    }

    /// The same client with another time limit: `waypass mappers push`
    /// waits while the broker compiles the component.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Exchanges `code` at the connection's token endpoint, with its client
    /// authentication, custom headers and PKCE verifier.
    pub async fn exchange_code(
        &self,
        connection: &Connection,
        code: &str,
        redirect_uri: &str,
        verifier: Option<&Secret>,
    ) -> Result<TokenSet, ExchangeError> {
        let options = &connection.spec.options;
        let secret = options
            .client_secret
            .as_ref()
            .map(Secret::expose)
            .unwrap_or_default();
        let mut form: Vec<(&str, &str)> = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
        ];
        if let Some(v) = verifier {
            form.push(("code_verifier", v.expose()));
        }
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::ACCEPT,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        match options.token_endpoint_auth_method {
            TokenAuthMethod::ClientSecretPost => {
                form.push(("client_id", &options.client_id));
                if !secret.is_empty() {
                    form.push(("client_secret", secret));
                }
            }
            TokenAuthMethod::ClientSecretBasic => {
                // RFC 6749 §2.3.1: each part form-urlencoded before Basic.
                let enc = |s: &str| {
                    url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>()
                };
                let creds = STANDARD.encode(format!("{}:{}", enc(&options.client_id), enc(secret)));
                let value = HeaderValue::from_str(&format!("Basic {creds}")).map_err(|_| {
                    ExchangeError::BadResponse("client credentials are not header-safe".into())
                })?;
                headers.insert(http::header::AUTHORIZATION, value);
            }
        }
        // customHeaders come last: the documented use is an Authorization
        // header the provider wants instead of ours. Checked and built when
        // the connection was saved.
        for (name, value) in &connection.custom_headers {
            headers.insert(name, value.clone());
        }
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        // The connection's address policy holds here as for its mapper: a
        // `tokenURL` on loopback or a private network needs
        // `allow_private_networks`, a metadata address is never reached.
        let response = self
            .send_vetted(
                connection.sandbox.egress.allow_private_networks,
                Method::POST,
                &connection.token_url,
                headers,
                Bytes::from(body),
            )
            .await
            .map_err(|e| match e {
                HttpError::TooLarge => ExchangeError::BadResponse(format!(
                    "the answer is over {MAX_TOKEN_RESPONSE_BYTES} bytes"
                )),
                other => {
                    let detail = describe(&other);
                    // Inside the login's span: the line carries its correlation id.
                    tracing::warn!(connection = connection.name(), %detail,
                        "token exchange: the provider could not be reached");
                    ExchangeError::Unreachable { detail }
                }
            })?;
        let body = String::from_utf8_lossy(&response.body);
        if !(200..300).contains(&response.status) {
            // RFC 6749 §5.2: an error object, when the provider follows it.
            let parsed: Option<serde_json::Value> = serde_json::from_str(&body).ok();
            if let Some(error) = parsed.as_ref().and_then(|v| v["error"].as_str()) {
                return Err(ExchangeError::Refused {
                    error: error.to_owned(),
                    description: parsed
                        .as_ref()
                        .and_then(|v| v["error_description"].as_str())
                        .map(str::to_owned),
                });
            }
            return Err(ExchangeError::Status {
                status: response.status,
            });
        }
        TokenSet::from_json(&body).map_err(ExchangeError::BadResponse)
    }
}

/// Why [`Upstream::send`] got no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// No answer within the client's time limit (name resolution included).
    #[error("timed out")]
    TimedOut,
    /// The name did not resolve, the connection failed, or the answer was
    /// not HTTP or too large.
    #[error("{0}")]
    Failed(String),
}

/// For callers whose errors are text.
impl From<SendError> for String {
    fn from(e: SendError) -> Self {
        e.to_string()
    }
}

impl Upstream {
    /// Sends one request to a URL the operator chose for the process itself
    /// (the CLI's broker, the quickstart's own endpoints): loopback and
    /// private addresses allowed, metadata addresses refused. Requests for
    /// a connection go through its address policy instead (the token
    /// exchange).
    pub async fn send(
        &self,
        method: Method,
        url: &url::Url,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<OutboundResponse, SendError> {
        self.send_vetted(true, method, url, headers, body)
            .await
            .map_err(|e| match e {
                HttpError::Timeout => SendError::TimedOut,
                other => SendError::Failed(describe(&other)),
            })
    }

    /// Sends one request to the addresses of `url` that
    /// [`crate::egress::vetted_addresses`] allows — the same resolution,
    /// classification and vetted-address connect as a mapper's requests —
    /// with the timeout (covering name resolution too, so a slow DNS server
    /// cannot hold a login) and a size cap.
    async fn send_vetted(
        &self,
        allow_private_networks: bool,
        method: Method,
        url: &url::Url,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<OutboundResponse, HttpError> {
        let request = PreparedRequest {
            method,
            url: url.clone(),
            headers,
            body,
        };
        let exchange = async {
            let addrs =
                crate::egress::vetted_addresses(url, allow_private_networks, &*self.transport)
                    .await?;
            self.transport
                .send(request, addrs, MAX_TOKEN_RESPONSE_BYTES)
                .await
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| HttpError::Timeout)?
    }
}

fn describe(e: &HttpError) -> String {
    match e {
        HttpError::Transport(m) | HttpError::Denied(m) | HttpError::InvalidRequest(m) => m.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use futures::future::BoxFuture;

    use super::*;

    /// A provider that accepts the request and never answers.
    struct Silent;

    impl Transport for Silent {
        fn send(
            &self,
            _: PreparedRequest,
            _: Vec<SocketAddr>,
            _: usize,
        ) -> BoxFuture<'static, Result<OutboundResponse, HttpError>> {
            Box::pin(std::future::pending())
        }
    }

    #[tokio::test]
    async fn no_answer_within_the_limit_is_a_timeout_not_a_failure() {
        let upstream = Upstream::new(Arc::new(Silent)).with_timeout(Duration::from_millis(50));
        let url = url::Url::parse("http://127.0.0.1:9/token").expect("url");
        let err = upstream
            .send(Method::POST, &url, HeaderMap::new(), Bytes::new())
            .await
            .unwrap_err();
        assert_eq!(err, SendError::TimedOut);
        assert_eq!(String::from(err), "timed out");
    }
}
