//! The broker's HTTP face (hyper 1): parse, call one domain function, map
//! the outcome to a response. `serve` takes a bound listener, so tests bind
//! `127.0.0.1:0`, and a shutdown future, so in-flight logins finish; it
//! also sweeps expired state on a timer (one instance at a time) and
//! follows the store's catalog changes.

use std::convert::Infallible;
use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cookie::{Cookie, SameSite};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use super::authorize::AuthorizeOutcome;
use super::callback::CallbackOutcome;
use super::limits::RetryAfter;
use super::logout::LogoutOutcome;
use super::oauth::{AppResponse, ErrorCode, OAuthError, ResponseMode};
use super::session::{SessionCookie, session_cookie_name};
use super::{Broker, JsonReply, LOGIN_TRANSACTION_TTL, login_page, pages};
use crate::model::{Client, Connection};

/// The shared callback path (the seed's URL); `/login/callback/{name}` is
/// a connection's own.
const CALLBACK_PATH: &str = "/login/callback";

/// Largest request body accepted (token requests are a few hundred bytes).
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// How long in-flight requests get to finish after shutdown starts.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// Time for a client to send a request's headers. Browsers and HTTP
/// clients send them at once; a client trickling them in ("slowloris")
/// would otherwise hold a connection and its task forever.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(20);
/// Time for a client to send a form or JSON body (a few KiB at most): as
/// for headers, a body trickled in must not hold the connection.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Time to upload a mapper component (up to 64 MiB, authenticated before
/// it is read): minutes, for slow links.
pub const UPLOAD_READ_TIMEOUT: Duration = Duration::from_secs(300);
/// Pause after a failed `accept` (e.g. out of file descriptors): retrying
/// at once would spin a core while the condition lasts.
pub const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);
/// The response header naming the catalog version an instance serves (on
/// `/healthz` and `/readyz`): how a fleet's operator, or its tests, see
/// whether a change has reached every instance.
pub const CATALOG_VERSION_HEADER: &str = "waypass-catalog-version";
/// Seconds a client is told to wait (`Retry-After`) when it reaches an
/// instance whose catalog is still loading: loading takes about a second.
const LOADING_RETRY_AFTER: &str = "1";

type Body = Full<Bytes>;

/// Serves `broker` on `listener` until `shutdown` resolves, then lets
/// in-flight requests finish (up to [`SHUTDOWN_GRACE`]).
pub async fn serve(listener: TcpListener, broker: Arc<Broker>, shutdown: impl Future<Output = ()>) {
    serve_on(listener, None, broker, shutdown).await;
}

/// [`serve`] over TLS: each connection's handshake runs in its own task,
/// bounded by [`super::tls::HANDSHAKE_TIMEOUT`] (a failed or stalled one
/// closes that connection only).
pub async fn serve_tls(
    listener: TcpListener,
    tls: tokio_rustls::TlsAcceptor,
    broker: Arc<Broker>,
    shutdown: impl Future<Output = ()>,
) {
    serve_on(listener, Some(tls), broker, shutdown).await;
}

async fn serve_on(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    broker: Arc<Broker>,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    let sweeper = tokio::spawn(sweep_on_timer(broker.clone()));
    let follower = tokio::spawn(crate::catalog::follow(broker.catalog().clone()));
    let key_follower = tokio::spawn(super::rotation::follow_keys(broker.clone()));
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        tracing::warn!(error = %e, "accepting a connection failed; retrying shortly");
                        tokio::time::sleep(ACCEPT_ERROR_BACKOFF).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let broker = broker.clone();
                let service = hyper::service::service_fn(move |req| {
                    let broker = broker.clone();
                    async move { Ok::<_, Infallible>(handle_counted(&broker, req, peer.ip()).await) }
                });
                let mut http = hyper::server::conn::http1::Builder::new();
                http.timer(TokioTimer::new())
                    .header_read_timeout(HEADER_READ_TIMEOUT);
                match &tls {
                    None => {
                        let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
                        tokio::spawn(async move {
                            let _ = conn.await;
                        });
                    }
                    Some(tls) => {
                        let (tls, watcher) = (tls.clone(), graceful.watcher());
                        tokio::spawn(async move {
                            let handshake = tokio::time::timeout(super::tls::HANDSHAKE_TIMEOUT, tls.accept(stream));
                            match handshake.await {
                                Ok(Ok(stream)) => {
                                    let conn = http.serve_connection(TokioIo::new(stream), service);
                                    let _ = watcher.watch(conn).await;
                                }
                                Ok(Err(e)) => tracing::debug!(error = %e, %peer, "TLS handshake failed"),
                                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                            }
                        });
                    }
                }
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    sweeper.abort();
    follower.abort();
    key_follower.abort();
    tracing::info!("no longer accepting connections; finishing the requests in flight");
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("shutdown grace period over; dropping remaining connections");
    }
}

/// Deletes expired state every [`Broker::sweep_interval`] (the first
/// sweep at once: rows left from before a restart) until aborted.
async fn sweep_on_timer(broker: Arc<Broker>) {
    // A zero period would make `interval` panic; a millisecond is as often
    // as any test needs.
    let period = broker.sweep_interval().max(Duration::from_millis(1));
    let mut every = tokio::time::interval(period);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        match broker.sweep_tick().await {
            Ok(Some(swept)) => tracing::debug!(?swept, "expired state swept"),
            Ok(None) => tracing::debug!("another instance holds the sweep lease"),
            Err(e) => tracing::warn!(error = %e, "sweeping expired state failed"),
        }
    }
}

/// [`handle`], counted by route pattern and status in the metrics.
async fn handle_counted(broker: &Broker, req: Request<Incoming>, peer: IpAddr) -> Response<Body> {
    let route = crate::metrics::route(req.uri().path());
    let method = req.method().clone();
    let timer = crate::metrics::Timer::start();
    let user_agent = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    // Boxed: the wrappers below move their future, and a move of a large
    // future is a `memcpy` of its whole size (see [`handle`]).
    let resp = crate::events::with_request(
        user_agent.as_deref(),
        crate::telemetry::with_request(
            broker.telemetry.as_ref(),
            route,
            Box::pin(handle(broker, req, peer)),
        ),
    )
    .await;
    broker
        .metrics
        .http_request(route, &method, resp.status().as_u16(), timer.elapsed());
    resp
}

/// Routes one request from the TCP peer `peer`.
///
/// The routes' futures are boxed where they are awaited. An `async fn`'s
/// future is as large as its largest state, and every move of it copies
/// all of it: unboxed, this one future held every route's (16 000 bytes,
/// the management API's and the console's the largest), copied whole
/// several times a request — a login's largest single cost in
/// instructions after the signature (`cargo bench -p waypass --bench login
/// -- --callgrind`, BENCHMARKS.md). Boxed, a request allocates its one
/// route's future once and moves pointers.
pub async fn handle(broker: &Broker, req: Request<Incoming>, peer: IpAddr) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let query = parts.uri.query().unwrap_or("").to_owned();
    let header = |name: header::HeaderName| parts.headers.get(name).and_then(|v| v.to_str().ok());
    let from = broker.rate_limits().client_address(
        peer,
        parts
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok()),
    );
    if !matches!(parts.uri.path(), "/healthz" | "/readyz") && broker.catalog().version().is_none() {
        // Started, but the catalog is still loading: nothing here could be
        // answered right (an app would be told it does not exist).
        let mut resp = text(
            StatusCode::SERVICE_UNAVAILABLE,
            "starting: the catalog is loading",
        );
        set_header(&mut resp, header::RETRY_AFTER, LOADING_RETRY_AFTER);
        return resp;
    }
    if let Some(api_path) = parts.uri.path().strip_prefix("/api/v2/") {
        return Box::pin(api(broker, &parts, api_path, &query, body, from)).await;
    }
    let path = parts.uri.path();
    if path == crate::admin::console::PREFIX
        || path.starts_with(&format!("{}/", crate::admin::console::PREFIX))
    {
        return Box::pin(crate::admin::console::handle(broker, &parts, body, from)).await;
    }
    if let Some(connection) = parts
        .uri
        .path()
        .strip_prefix(CALLBACK_PATH)
        .and_then(|rest| rest.strip_prefix('/'))
    {
        return match parts.method {
            Method::GET => {
                Box::pin(login_callback(
                    broker,
                    &parts.headers,
                    &query,
                    Some(connection),
                    from,
                ))
                .await
            }
            _ => text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
        };
    }
    // A connection's public keys for `private_key_jwt`, fetched by its provider.
    if let Some(name) = parts
        .uri
        .path()
        .strip_prefix("/connections/")
        .and_then(|rest| rest.strip_suffix("/jwks.json"))
        && parts.method == Method::GET
    {
        return match broker.connection_jwks(name).await {
            Ok(Some(jwks)) => json(StatusCode::OK, &jwks),
            Ok(None) => json(
                StatusCode::NOT_FOUND,
                &serde_json::json!({"error": "not_found"}),
            ),
            Err(e) => {
                tracing::error!(error = %e, "cannot read a connection's keys");
                text(StatusCode::SERVICE_UNAVAILABLE, "try again")
            }
        };
    }
    let session = cookie_value(
        &parts.headers,
        &session_cookie_name(broker.secure_cookies()),
    );
    match (&parts.method, parts.uri.path()) {
        (&Method::GET, "/authorize") => {
            let timer = crate::metrics::Timer::start();
            let resp = Box::pin(authorize(broker, &query, from, session.as_deref())).await;
            broker
                .metrics
                .stage(crate::metrics::Stage::Authorize, timer.elapsed());
            resp
        }
        (&Method::GET, "/metrics") => metrics(broker, header(header::AUTHORIZATION), from).await,
        (&Method::GET, "/oidc/logout") => logout(
            broker
                .end_session_endpoint(&query, session.as_deref())
                .await,
            broker,
        ),
        (&Method::POST, "/oidc/logout") => match read_form(body).await {
            Ok(form) => logout(
                broker.end_session_endpoint(&form, session.as_deref()).await,
                broker,
            ),
            Err(resp) => resp,
        },
        (&Method::GET, "/v2/logout") => logout(
            broker.auth0_logout(&query, session.as_deref()).await,
            broker,
        ),
        (&Method::POST, "/oauth/revoke") => {
            let authorization = header(header::AUTHORIZATION).map(str::to_owned);
            match read_form(body).await {
                Ok(form) => json_reply(broker.revoke(&form, authorization.as_deref(), from).await),
                Err(resp) => resp,
            }
        }
        (&Method::POST, "/oauth/introspect") => {
            let authorization = header(header::AUTHORIZATION).map(str::to_owned);
            match read_form(body).await {
                Ok(form) => json_reply(
                    broker
                        .introspect(&form, authorization.as_deref(), from)
                        .await,
                ),
                Err(resp) => resp,
            }
        }
        (&Method::GET, CALLBACK_PATH) => {
            Box::pin(login_callback(broker, &parts.headers, &query, None, from)).await
        }
        (&Method::POST, "/oauth/token") => {
            let authorization = header(header::AUTHORIZATION).map(str::to_owned);
            match read_form(body).await {
                Ok(form) => {
                    let timer = crate::metrics::Timer::start();
                    let (reply, event) =
                        Box::pin(broker.token_with_event(&form, authorization.as_deref(), from))
                            .await;
                    broker
                        .metrics
                        .stage(crate::metrics::Stage::Token, timer.elapsed());
                    broker.log_token(event, reply.status, &reply.body, from);
                    json_reply(reply)
                }
                Err(resp) => resp,
            }
        }
        (&Method::GET | &Method::POST, "/userinfo") => {
            json_reply(Box::pin(broker.userinfo(header(header::AUTHORIZATION))).await)
        }
        (&Method::GET, "/.well-known/openid-configuration") => {
            response(StatusCode::OK, "application/json", broker.discovery_json())
        }
        (&Method::GET, "/.well-known/jwks.json") => {
            response(StatusCode::OK, "application/json", broker.jwks_json())
        }
        (&Method::GET, "/healthz") => with_catalog_version(broker, text(StatusCode::OK, "ok")),
        (&Method::GET, "/readyz") => with_catalog_version(
            broker,
            match broker.ready() {
                Ok(()) => text(StatusCode::OK, "ready"),
                Err(why) => text(StatusCode::SERVICE_UNAVAILABLE, &why),
            },
        ),
        (
            _,
            "/authorize" | "/login/callback" | "/oauth/token" | "/userinfo" | "/oidc/logout"
            | "/v2/logout" | "/oauth/revoke" | "/oauth/introspect",
        ) => text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
        _ => json(
            StatusCode::NOT_FOUND,
            &serde_json::json!({"error": "not_found"}),
        ),
    }
}

/// Adds [`CATALOG_VERSION_HEADER`] once a catalog is loaded.
fn with_catalog_version(broker: &Broker, mut resp: Response<Body>) -> Response<Body> {
    if let Some(version) = broker.catalog().version() {
        set_header(
            &mut resp,
            header::HeaderName::from_static(CATALOG_VERSION_HEADER),
            &version.to_string(),
        );
    }
    resp
}

async fn api(
    broker: &Broker,
    parts: &http::request::Parts,
    path: &str,
    query: &str,
    body: Incoming,
    from: IpAddr,
) -> Response<Body> {
    let header = |name: header::HeaderName| parts.headers.get(name).and_then(|v| v.to_str().ok());
    // Failed authentications are counted per address; past the limit the
    // token is not even checked, so guessing one gets nowhere.
    if let Err(wait) = broker.rate_limits().api_failures_allow(from) {
        let reply = crate::admin::ApiError::new(
            429,
            format!(
                "too many failed authentications from this address; try again in {} s",
                wait.seconds()
            ),
        )
        .into_reply();
        let mut resp = response(
            StatusCode::TOO_MANY_REQUESTS,
            "application/json",
            reply.body,
        );
        set_header(&mut resp, header::CACHE_CONTROL, "no-store");
        set_retry_after(&mut resp, wait);
        return resp;
    }
    let write = !matches!(parts.method, Method::GET | Method::HEAD);
    let mut caller_id = None;
    let reply = match broker.api_authenticate(header(header::AUTHORIZATION)).await {
        Err(e) => {
            if e.status == 401 {
                broker.rate_limits().api_failure(from);
            }
            e.into_reply()
        }
        Ok(caller) => {
            caller_id = Some(caller.id.clone());
            // Only component uploads may be large (and slow).
            let upload = path.starts_with("mappers/")
                || (path.starts_with("actions/actions/") && path.ends_with("/component"));
            let (limit, deadline) = if parts.method == Method::PUT && upload {
                (crate::admin::MAX_MAPPER_BYTES, UPLOAD_READ_TIMEOUT)
            } else {
                (crate::admin::MAX_JSON_BYTES, BODY_READ_TIMEOUT)
            };
            match read_body(body, limit, deadline).await {
                Err(e) => {
                    crate::admin::ApiError::new(e.status().as_u16(), e.to_string()).into_reply()
                }
                Ok(collected) => {
                    broker
                        .api(crate::admin::ApiRequest {
                            method: &parts.method,
                            path,
                            query,
                            caller,
                            content_type: header(header::CONTENT_TYPE),
                            body: collected,
                        })
                        .await
                }
            }
        }
    };
    if write {
        broker.log_api_write(
            &parts.method,
            path,
            caller_id.as_deref(),
            reply.status,
            from,
        );
    }
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = response(status, "application/json", reply.body);
    set_header(&mut resp, header::CACHE_CONTROL, "no-store");
    if status == StatusCode::UNAUTHORIZED {
        set_header(
            &mut resp,
            header::WWW_AUTHENTICATE,
            "Bearer realm=\"waypass\"",
        );
    }
    resp
}

/// `GET /metrics`: the admin token or a token with `read:metrics`;
/// failed authentications count towards the address's API limit.
async fn metrics(broker: &Broker, authorization: Option<&str>, from: IpAddr) -> Response<Body> {
    let refused = |e: crate::admin::ApiError| {
        let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::UNAUTHORIZED);
        let mut resp = response(status, "application/json", e.into_reply().body);
        if status == StatusCode::UNAUTHORIZED {
            set_header(
                &mut resp,
                header::WWW_AUTHENTICATE,
                "Bearer realm=\"waypass\"",
            );
        }
        resp
    };
    if let Err(wait) = broker.rate_limits().api_failures_allow(from) {
        let mut resp = refused(crate::admin::ApiError::new(
            429,
            "too many failed authentications from this address",
        ));
        set_retry_after(&mut resp, wait);
        return resp;
    }
    match broker.api_authenticate(authorization).await {
        Err(e) => {
            if e.status == 401 {
                broker.rate_limits().api_failure(from);
            }
            refused(e)
        }
        Ok(caller) if !caller.has(crate::admin::READ_METRICS) => {
            refused(crate::admin::ApiError::new(
                403,
                format!("the token lacks the scope `{}`", crate::admin::READ_METRICS),
            ))
        }
        Ok(_) => {
            let mut resp = response(
                StatusCode::OK,
                crate::metrics::CONTENT_TYPE,
                broker.metrics_text(),
            );
            set_header(&mut resp, header::CACHE_CONTROL, "no-store");
            resp
        }
    }
}

async fn authorize(
    broker: &Broker,
    query: &str,
    from: IpAddr,
    session: Option<&str>,
) -> Response<Body> {
    match broker.authorize_in(query, from, session).await {
        AuthorizeOutcome::ToProvider {
            location,
            cookie_name,
            cookie_value,
        } => {
            let mut resp = redirect(&location);
            let cookie = binding_cookie(
                broker,
                cookie_name,
                cookie_value,
                LOGIN_TRANSACTION_TTL.as_secs(),
            );
            set_header(&mut resp, header::SET_COOKIE, &cookie);
            resp
        }
        AuthorizeOutcome::ToApp(answer) => to_app(&answer),
        AuthorizeOutcome::ChooseConnection {
            client,
            connections,
            query,
        } => login_page(broker, &client, &connections, &query),
        AuthorizeOutcome::ErrorPage(e) => {
            broker.log_authorize_failure(query, &e, from);
            error_page(&e)
        }
        AuthorizeOutcome::TooManyRequests(wait) => too_many_page(wait),
    }
}

async fn login_callback(
    broker: &Broker,
    headers: &HeaderMap,
    query: &str,
    arrived_on: Option<&str>,
    from: IpAddr,
) -> Response<Body> {
    let user_agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok());
    let outcome = broker
        .callback_from(query, arrived_on, from, user_agent, |name| {
            cookie_value(headers, name)
        })
        .await;
    match outcome {
        CallbackOutcome::ToApp {
            response,
            clear_cookie,
            session,
        } => {
            let mut resp = to_app(&response);
            let cookie = binding_cookie(broker, clear_cookie, String::new(), 0);
            set_header(&mut resp, header::SET_COOKIE, &cookie);
            if let Some(session) = session {
                set_header(
                    &mut resp,
                    header::SET_COOKIE,
                    &session_cookie(broker, session),
                );
            }
            resp
        }
        CallbackOutcome::ErrorPage(e) => {
            broker.log_callback_refused(&e, from);
            error_page(&e)
        }
        CallbackOutcome::TooManyRequests(wait) => too_many_page(wait),
    }
}

/// The `Set-Cookie` value binding a login to its browser (`max_age` 0
/// clears it). With an https issuer the name carries `__Host-`, which needs
/// `Secure`, `Path=/` and no `Domain` (RFC 6265bis §4.1.3.2); otherwise the
/// cookie is kept to the callback paths. `HttpOnly`: no script reads it;
/// `SameSite=Lax`: the provider's top-level redirect back still carries it.
fn binding_cookie(broker: &Broker, name: String, value: String, max_age: u64) -> String {
    let secure = broker.secure_cookies();
    Cookie::build((name, value))
        .path(if secure { "/" } else { CALLBACK_PATH })
        .secure(secure)
        .http_only(true)
        .same_site(SameSite::Lax)
        .max_age(cookie::time::Duration::seconds(
            i64::try_from(max_age).unwrap_or(i64::MAX),
        ))
        .build()
        .to_string()
}

/// The `Set-Cookie` value of the browser's session (`max_age` 0 clears
/// it). Sent to every path (`/authorize`, the callbacks, the logouts), so
/// `Path=/`; with an https issuer `__Host-` and `Secure` (RFC 6265bis
/// §4.1.3.2); `HttpOnly`; `SameSite=Lax`: an app's top-level redirect to
/// `/authorize` carries it, a cross-site POST does not.
fn session_cookie(broker: &Broker, session: SessionCookie) -> String {
    let secure = broker.secure_cookies();
    Cookie::build((session_cookie_name(secure), session.value))
        .path("/")
        .secure(secure)
        .http_only(true)
        .same_site(SameSite::Lax)
        .max_age(cookie::time::Duration::seconds(
            i64::try_from(session.max_age).unwrap_or(i64::MAX),
        ))
        .build()
        .to_string()
}

/// An authorization response to the app: a redirect carrying it in the
/// query, or a page posting it (OAuth 2.0 Form Post Response Mode §2).
fn to_app(answer: &AppResponse) -> Response<Body> {
    match answer.mode {
        ResponseMode::Query => redirect(&answer.location()),
        ResponseMode::FormPost => {
            let mut resp = response(
                StatusCode::OK,
                "text/html; charset=utf-8",
                pages::form_post(answer),
            );
            set_header(
                &mut resp,
                header::CONTENT_SECURITY_POLICY,
                &pages::form_post_csp(&answer.redirect_uri),
            );
            set_header(&mut resp, header::X_FRAME_OPTIONS, "DENY");
            set_header(&mut resp, header::CACHE_CONTROL, "no-store");
            set_header(&mut resp, header::REFERRER_POLICY, "no-referrer");
            resp
        }
    }
}

/// A logout's answer; it clears the session cookie unless the request was
/// refused (then nothing was ended, and the browser keeps its session).
fn logout(outcome: LogoutOutcome, broker: &Broker) -> Response<Body> {
    let clear = session_cookie(broker, outcome.cookie());
    let mut resp = match outcome {
        LogoutOutcome::Redirect { location } => redirect(&location),
        LogoutOutcome::LoggedOut => html(StatusCode::OK, pages::logged_out()),
        LogoutOutcome::ErrorPage(e) => return error_page(&e),
    };
    set_header(&mut resp, header::SET_COOKIE, &clear);
    resp
}

/// The value of cookie `name` in the request's `Cookie` headers (RFC 6265
/// §5.4); pairs that do not parse are skipped.
fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .map(|c| c.value_trimmed().to_owned())
}

/// `429 Too Many Requests` as a page, for browsers (RFC 6585 §4).
fn too_many_page(wait: RetryAfter) -> Response<Body> {
    let e = OAuthError::new(
        ErrorCode::TemporarilyUnavailable,
        format!(
            "too many requests from this address; try again in {} s",
            wait.seconds()
        ),
    );
    let mut resp = html(StatusCode::TOO_MANY_REQUESTS, pages::error(&e));
    set_retry_after(&mut resp, wait);
    resp
}

/// `Retry-After` in seconds (RFC 9110 §10.2.3).
fn set_retry_after(resp: &mut Response<Body>, wait: RetryAfter) {
    set_header(resp, header::RETRY_AFTER, &wait.seconds().to_string());
}

/// Why a request body was not read.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum BodyError {
    #[error("the request body is over {0} bytes")]
    TooLarge(usize),
    #[error("the request body did not arrive within {} s", .0.as_secs())]
    TooSlow(Duration),
    #[error("the request body could not be read")]
    Broken,
}

impl BodyError {
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::TooSlow(_) => StatusCode::REQUEST_TIMEOUT,
            Self::Broken => StatusCode::BAD_REQUEST,
        }
    }
}

/// Reads a whole body of at most `limit` bytes within `deadline`.
pub(crate) async fn read_body<B>(
    body: B,
    limit: usize,
    deadline: Duration,
) -> Result<Bytes, BodyError>
where
    B: hyper::body::Body,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    match tokio::time::timeout(deadline, Limited::new(body, limit).collect()).await {
        Err(_) => Err(BodyError::TooSlow(deadline)),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(BodyError::TooLarge(limit)),
        Ok(Err(_)) => Err(BodyError::Broken),
    }
}

async fn read_form(body: Incoming) -> Result<String, Response<Body>> {
    match read_body(body, MAX_BODY_BYTES, BODY_READ_TIMEOUT).await {
        Ok(collected) => String::from_utf8(collected.to_vec()).map_err(|_| {
            let e = OAuthError::new(ErrorCode::InvalidRequest, "the request body is not UTF-8");
            json_reply(JsonReply::error(&e, None))
        }),
        Err(e) => Err(text(e.status(), &e.to_string())),
    }
}

/// The branded "choose a connection" page, under its own policy
/// ([`login_page::LOGIN_PAGE_CSP`]).
fn login_page(
    broker: &Broker,
    client: &Client,
    connections: &[Arc<Connection>],
    query: &str,
) -> Response<Body> {
    match login_page::render(&broker.branding(), client, connections, query) {
        Ok(page) => {
            let mut resp = html(StatusCode::OK, page);
            // Replaces the pages' policy (a second header would be
            // enforced as well, CSP Level 3 §8.1).
            resp.headers_mut().insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(login_page::LOGIN_PAGE_CSP),
            );
            set_header(&mut resp, header::REFERRER_POLICY, "no-referrer");
            resp
        }
        Err(e) => {
            tracing::error!(error = %e, "the login page could not be rendered");
            error_page(&OAuthError::new(
                ErrorCode::ServerError,
                "the login page could not be shown",
            ))
        }
    }
}

fn error_page(e: &OAuthError) -> Response<Body> {
    let status = if e.code == ErrorCode::TemporarilyUnavailable {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::BAD_REQUEST
    };
    html(status, pages::error(e))
}

fn json_reply(reply: JsonReply) -> Response<Body> {
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = response(status, "application/json", reply.body);
    // RFC 6749 §5.1: token responses must not be cached.
    set_header(&mut resp, header::CACHE_CONTROL, "no-store");
    set_header(&mut resp, header::PRAGMA, "no-cache");
    if let Some(challenge) = reply.www_authenticate {
        set_header(&mut resp, header::WWW_AUTHENTICATE, &challenge);
    }
    if let Some(seconds) = reply.retry_after {
        set_header(&mut resp, header::RETRY_AFTER, &seconds.to_string());
    }
    resp
}

fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    response(status, "application/json", value.to_string())
}

fn text(status: StatusCode, body: &str) -> Response<Body> {
    response(status, "text/plain; charset=utf-8", body.to_owned())
}

fn html(status: StatusCode, body: String) -> Response<Body> {
    let mut resp = response(status, "text/html; charset=utf-8", body);
    set_header(
        &mut resp,
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; style-src 'unsafe-inline'; img-src https: http: data:; frame-ancestors 'none'",
    );
    set_header(&mut resp, header::X_FRAME_OPTIONS, "DENY");
    set_header(&mut resp, header::CACHE_CONTROL, "no-store");
    resp
}

fn redirect(location: &str) -> Response<Body> {
    let mut resp = response(
        StatusCode::FOUND,
        "text/plain; charset=utf-8",
        String::new(),
    );
    set_header(&mut resp, header::LOCATION, location);
    set_header(&mut resp, header::CACHE_CONTROL, "no-store");
    set_header(&mut resp, header::REFERRER_POLICY, "no-referrer");
    resp
}

fn response(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// Sets a header whose value we built; a value that is not header-safe
/// (cannot happen for ours) is dropped rather than panicking.
fn set_header(resp: &mut Response<Body>, name: header::HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        resp.headers_mut().append(name, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_by_exact_name_in_every_cookie_header() {
        let mut headers = HeaderMap::new();
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; wp_tx_abc=xyz; wp_tx_ab=no"),
        );
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("broken; __Host-wp_tx_q=\"v\""),
        );
        assert_eq!(cookie_value(&headers, "wp_tx_abc").as_deref(), Some("xyz"));
        assert_eq!(cookie_value(&headers, "wp_tx_a"), None);
        assert_eq!(
            cookie_value(&headers, "__Host-wp_tx_q").as_deref(),
            Some("v")
        );
    }

    /// A body whose sender never sends.
    struct Trickle;

    impl hyper::body::Body for Trickle {
        type Data = Bytes;
        type Error = std::io::Error;

        fn poll_frame(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
            std::task::Poll::Pending
        }
    }

    #[tokio::test]
    async fn a_body_that_does_not_arrive_in_time_is_a_408() {
        let err = read_body(Trickle, 10, Duration::from_millis(20))
            .await
            .unwrap_err();
        assert_eq!(err.status(), StatusCode::REQUEST_TIMEOUT);
        assert!(err.to_string().contains("did not arrive"), "{err}");
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_a_413_and_one_within_it_is_read() {
        let big = Full::new(Bytes::from_static(b"0123456789ab"));
        let err = read_body(big, 10, BODY_READ_TIMEOUT).await.unwrap_err();
        assert_eq!(err.status(), StatusCode::PAYLOAD_TOO_LARGE);
        let small = Full::new(Bytes::from_static(b"0123"));
        assert_eq!(
            read_body(small, 10, BODY_READ_TIMEOUT).await,
            Ok(Bytes::from_static(b"0123"))
        );
    }
}
