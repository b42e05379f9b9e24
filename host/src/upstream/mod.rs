//! Talking to providers: discovery, the token exchange (RFC 6749 §4.1.3)
//! with the connection's client authentication, id_token verification and
//! userinfo.
//!
//! | module | what |
//! | --- | --- |
//! | `discovery` | OpenID Connect discovery and JWK sets, cached by their lifetime |
//! | `jws` | verifying a compact JWS against a JWK set |
//! | `id_token` | the claims checks of OpenID Connect Core §3.1.3.7 |
//! | `client_auth` | `private_key_jwt` assertions (RFC 7523) |
//! | `token_response` | token responses as providers send them |
//! | `claims` | the built-in claims mapper |

pub mod claims;
pub mod client_auth;
pub mod discovery;
pub mod id_token;
pub mod jws;
pub mod token_response;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method};

use self::discovery::{DiscoveryError, ProviderCache, ProviderMetadata};
use self::id_token::IdTokenError;
use self::jws::{JwkSet, Unverified};
use crate::egress::{HttpError, NetworkTransport, OutboundResponse, PreparedRequest, Transport};
use crate::keys::KeySet;
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
    /// The token endpoint is to be discovered, and discovery failed.
    #[error(transparent)]
    Discovery(#[from] DiscoveryError),
    /// `private_key_jwt` without a key, or signing failed.
    #[error("the client assertion could not be made: {0}")]
    Assertion(String),
}

/// The client for providers: discovery, token endpoints, key sets, userinfo.
#[derive(Clone)]
pub struct Upstream {
    transport: Arc<dyn Transport>,
    timeout: Duration,
    /// Discovery documents and JWK sets: derived caches, per process.
    providers: Arc<ProviderCache>,
}

/// A provider's endpoints for one connection: as configured, else discovered.
#[derive(Debug, Clone)]
pub struct Endpoints {
    pub authorization: url::Url,
    pub token: url::Url,
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
            providers: Arc::default(),
        }
    }

    /// The same client with another time limit: `waypass mappers push`
    /// waits while the broker compiles the component.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Exchanges `code` at the connection's token endpoint, with its client
    /// authentication, custom headers and PKCE verifier. `assertion_keys`
    /// are the connection's own keys, for `private_key_jwt`; `now` is Unix
    /// seconds.
    pub async fn exchange_code(
        &self,
        connection: &Connection,
        code: &str,
        redirect_uri: &str,
        verifier: Option<&Secret>,
        assertion_keys: Option<&KeySet>,
        now: u64,
    ) -> Result<TokenSet, ExchangeError> {
        let token_url = self.endpoints(connection, now).await?.token;
        let options = &connection.spec.options;
        let secret = options
            .client_secret
            .as_ref()
            .map(Secret::expose)
            .unwrap_or_default();
        let mut assertion_form = String::new();
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
            TokenAuthMethod::PrivateKeyJwt => {
                let keys = assertion_keys
                    .ok_or_else(|| ExchangeError::Assertion("the connection has no key".into()))?;
                let assertion =
                    client_auth::assertion(keys, &options.client_id, token_url.as_str(), now)
                        .map_err(|e| ExchangeError::Assertion(e.to_string()))?;
                // RFC 7523 §2.2; client_id too, as OpenID Connect Core §9
                // allows and several providers require.
                form.push(("client_id", &options.client_id));
                form.push(("client_assertion_type", client_auth::ASSERTION_TYPE));
                assertion_form = assertion;
            }
            TokenAuthMethod::None => {
                // A public client (RFC 6749 §2.1): its id only, PKCE binds
                // the code.
                form.push(("client_id", &options.client_id));
            }
        }
        if !assertion_form.is_empty() {
            form.push(("client_assertion", &assertion_form));
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
                &token_url,
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
        token_response::parse(response.status, header(&response, "content-type"), &body)
    }
}

/// Why a login's id_token or userinfo could not be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProfileFetchError {
    #[error(transparent)]
    IdToken(#[from] IdTokenError),
    #[error(transparent)]
    Discovery(#[from] DiscoveryError),
    #[error("the provider's userinfo endpoint answered HTTP {0}")]
    UserinfoStatus(u16),
    #[error("the provider's userinfo answer is not usable: {0}")]
    UserinfoBad(String),
    /// OpenID Connect Core §5.3.2: userinfo's `sub` must be the id_token's.
    #[error("the provider's userinfo names another subject than its id_token")]
    UserinfoSubject,
    #[error("the provider could not be reached")]
    Unreachable { detail: String },
}

impl Upstream {
    /// The connection's authorization and token endpoints: as configured,
    /// or from its issuer's discovery document for those it leaves out.
    pub async fn endpoints(
        &self,
        connection: &Connection,
        now: u64,
    ) -> Result<Endpoints, DiscoveryError> {
        if let (Some(authorization), Some(token)) =
            (&connection.authorization_url, &connection.token_url)
        {
            return Ok(Endpoints {
                authorization: authorization.clone(),
                token: token.clone(),
            });
        }
        let metadata = self.metadata(connection, now).await?;
        let pick = |given: &Option<url::Url>,
                    found: &Option<String>,
                    what: &'static str|
         -> Result<url::Url, DiscoveryError> {
            if let Some(url) = given {
                return Ok(url.clone());
            }
            let found = found.as_deref().ok_or(DiscoveryError::Missing(what))?;
            crate::model::provider_url(found).map_err(|detail| DiscoveryError::Invalid {
                what: "discovery document",
                detail: format!("{what}: {detail}"),
            })
        };
        Ok(Endpoints {
            authorization: pick(
                &connection.authorization_url,
                &metadata.authorization_endpoint,
                "authorization_endpoint",
            )?,
            token: pick(
                &connection.token_url,
                &metadata.token_endpoint,
                "token_endpoint",
            )?,
        })
    }

    /// The discovery document of the connection's issuer, cached.
    async fn metadata(
        &self,
        connection: &Connection,
        now: u64,
    ) -> Result<Arc<ProviderMetadata>, DiscoveryError> {
        let issuer = connection
            .issuer
            .as_ref()
            .ok_or(DiscoveryError::Missing("issuer"))?;
        let issuer = issuer.as_str();
        // `Url` adds a `/` to a bare origin; the issuer is compared as the
        // connection spells it.
        let configured = connection.spec.options.issuer.as_deref().unwrap_or(issuer);
        if let Some(cached) = self.providers.metadata(configured, now) {
            return Ok(cached);
        }
        let url = discovery::discovery_url(configured);
        let (body, ttl) = self
            .fetch_json(connection, &url, "discovery document")
            .await?;
        let metadata: ProviderMetadata =
            serde_json::from_slice(&body).map_err(|e| DiscoveryError::Invalid {
                what: "discovery document",
                detail: e.to_string(),
            })?;
        if metadata.issuer != configured {
            return Err(DiscoveryError::IssuerMismatch {
                expected: configured.to_owned(),
                found: metadata.issuer,
            });
        }
        let metadata = Arc::new(metadata);
        self.providers
            .put_metadata(configured, metadata.clone(), now, ttl);
        Ok(metadata)
    }

    /// GETs a JSON document from the provider through the connection's
    /// address policy; the body and its cache lifetime.
    async fn fetch_json(
        &self,
        connection: &Connection,
        url: &str,
        what: &'static str,
    ) -> Result<(Bytes, u64), DiscoveryError> {
        let parsed = url::Url::parse(url).map_err(|e| DiscoveryError::Invalid {
            what,
            detail: format!("`{url}` is not a URL: {e}"),
        })?;
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::ACCEPT,
            HeaderValue::from_static("application/json"),
        );
        let response = self
            .send_vetted(
                connection.sandbox.egress.allow_private_networks,
                Method::GET,
                &parsed,
                headers,
                Bytes::new(),
            )
            .await
            .map_err(|e| {
                let detail = describe(&e);
                tracing::warn!(connection = connection.name(), %detail, what, "provider fetch failed");
                DiscoveryError::Fetch {
                    what,
                    detail: match e {
                        HttpError::TooLarge => "the answer is too large".into(),
                        HttpError::Timeout => "timed out".into(),
                        _ => "unreachable".into(),
                    },
                }
            })?;
        if response.status != 200 {
            return Err(DiscoveryError::Fetch {
                what,
                detail: format!("HTTP {}", response.status),
            });
        }
        let ttl = discovery::cache_ttl(header(&response, "cache-control"));
        Ok((response.body, ttl))
    }

    /// The connection's JWK set URL: as configured, else discovered.
    async fn jwks_uri(&self, connection: &Connection, now: u64) -> Result<String, DiscoveryError> {
        if let Some(uri) = &connection.spec.options.jwks_uri {
            return Ok(uri.clone());
        }
        self.metadata(connection, now)
            .await?
            .jwks_uri
            .clone()
            .ok_or(DiscoveryError::Missing("jwks_uri"))
    }

    async fn fetch_jwks(
        &self,
        connection: &Connection,
        uri: &str,
        now: u64,
    ) -> Result<Arc<JwkSet>, DiscoveryError> {
        let (body, ttl) = self.fetch_json(connection, uri, "key set").await?;
        let set = JwkSet::parse(&body).map_err(|e| DiscoveryError::Invalid {
            what: "key set",
            detail: e.to_string(),
        })?;
        let set = Arc::new(set);
        self.providers.put_jwks(uri, set.clone(), now, ttl);
        Ok(set)
    }

    /// Verifies a provider's id_token for a login that sent `nonce`: the
    /// signature against the provider's JWK set (fetched again, at most
    /// once per [`discovery::JWKS_MISS_REFETCH_INTERVAL`], when the token
    /// names a key the cached set lacks), then the claims. Returns every
    /// claim.
    pub async fn verify_id_token(
        &self,
        connection: &Connection,
        id_token: &str,
        nonce: &str,
        now: u64,
    ) -> Result<serde_json::Map<String, serde_json::Value>, ProfileFetchError> {
        let issuer = connection
            .spec
            .options
            .issuer
            .as_deref()
            .ok_or(DiscoveryError::Missing("issuer"))?;
        let token = Unverified::parse(id_token).map_err(IdTokenError::from)?;
        let uri = self.jwks_uri(connection, now).await?;
        let (mut set, fetched_at) = match self.providers.jwks(&uri) {
            Some((set, fetched_at, fresh_until)) if now < fresh_until => (set, fetched_at),
            _ => (self.fetch_jwks(connection, &uri, now).await?, now),
        };
        let missing = match &token.header.kid {
            Some(kid) => !set.has_kid(kid),
            None => false,
        };
        if missing && now >= fetched_at.saturating_add(discovery::JWKS_MISS_REFETCH_INTERVAL) {
            tracing::info!(connection = connection.name(), kid = ?token.header.kid,
                "an id_token names a key the cached set lacks; fetching the set again");
            set = self.fetch_jwks(connection, &uri, now).await?;
        }
        let payload = token.verify(&set).map_err(IdTokenError::from)?;
        Ok(id_token::check(
            &payload,
            id_token::Expected {
                issuer,
                client_id: &connection.spec.options.client_id,
                nonce,
                now,
            },
        )?)
    }

    /// The userinfo endpoint's claims for `access_token` (OpenID Connect
    /// Core §5.3): the configured `userinfo_endpoint`, else the discovered
    /// one.
    pub async fn userinfo(
        &self,
        connection: &Connection,
        access_token: &str,
        now: u64,
    ) -> Result<serde_json::Map<String, serde_json::Value>, ProfileFetchError> {
        let url = match &connection.spec.options.userinfo_endpoint {
            Some(url) => url.clone(),
            None => self
                .metadata(connection, now)
                .await?
                .userinfo_endpoint
                .clone()
                .ok_or(DiscoveryError::Missing("userinfo_endpoint"))?,
        };
        let parsed = url::Url::parse(&url)
            .map_err(|e| ProfileFetchError::UserinfoBad(format!("`{url}` is not a URL: {e}")))?;
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::ACCEPT,
            HeaderValue::from_static("application/json"),
        );
        let mut bearer =
            HeaderValue::from_str(&format!("Bearer {access_token}")).map_err(|_| {
                ProfileFetchError::UserinfoBad("the access token is not header-safe".into())
            })?;
        bearer.set_sensitive(true);
        headers.insert(http::header::AUTHORIZATION, bearer);
        let response = self
            .send_vetted(
                connection.sandbox.egress.allow_private_networks,
                Method::GET,
                &parsed,
                headers,
                Bytes::new(),
            )
            .await
            .map_err(|e| ProfileFetchError::Unreachable {
                detail: describe(&e),
            })?;
        if response.status != 200 {
            return Err(ProfileFetchError::UserinfoStatus(response.status));
        }
        serde_json::from_slice(&response.body)
            .map_err(|e| ProfileFetchError::UserinfoBad(format!("not a JSON object: {e}")))
    }
}

/// A response header's value (names compared case-insensitively).
fn header<'a>(response: &'a OutboundResponse, name: &str) -> Option<&'a str> {
    response
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
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
