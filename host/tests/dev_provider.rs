//! The development provider over real HTTP on 127.0.0.1: the code flow with
//! PKCE as a client without a browser drives it, its error paths, faults and
//! the request record.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::HeaderMap;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use url::Url;
use waypass::dev_provider::{
    DEFAULT_PASSWORD, DEFAULT_USERNAME, DevProvider, DevProviderHandle, DevUser, TokenFault,
    UserinfoFault, default_user, login_request_id,
};

const CLIENT_ID: &str = "app";
const CLIENT_SECRET: &str = "app-secret";
const REDIRECT_URI: &str = "http://127.0.0.1:9/callback";
const STATE: &str = "st-123";
const SCOPE: &str = "openid email";
/// RFC 7636 Appendix B's verifier and its S256 challenge.
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
const OTHER_VERIFIER: &str = "0000000000000000000000000000000000000000000";

// ---------------------------------------------------------------- helpers

fn provider() -> DevProvider {
    DevProvider::new().with_client(CLIENT_ID, CLIENT_SECRET, REDIRECT_URI)
}

async fn start(provider: DevProvider) -> DevProviderHandle {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    provider.start(listener)
}

/// A response, read whole.
struct Reply {
    status: u16,
    headers: HeaderMap,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }

    /// The `Location` of a 302, parsed.
    fn location(&self) -> Url {
        assert_eq!(self.status, 302, "{}", self.body);
        Url::parse(self.header("location").expect("location")).expect("absolute location")
    }
}

fn param(url: &Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.into_owned())
}

/// One request on a fresh HTTP/1.1 connection.
async fn send(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: String,
) -> Reply {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(connection);
    let mut request = hyper::Request::builder()
        .method(method)
        .uri(target)
        .header("host", addr.to_string());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(Full::new(Bytes::from(body))).expect("request");
    let response = sender.send_request(request).await.expect("response");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.expect("body");
    Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&body.to_bytes()).into_owned(),
    }
}

async fn get(addr: SocketAddr, target: &str) -> Reply {
    send(addr, "GET", target, &[], String::new()).await
}

async fn post_form(
    addr: SocketAddr,
    path: &str,
    pairs: &[(&str, &str)],
    headers: &[(&str, &str)],
) -> Reply {
    let mut all = vec![("content-type", "application/x-www-form-urlencoded")];
    all.extend_from_slice(headers);
    send(addr, "POST", path, &all, encode(pairs)).await
}

fn encode(pairs: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// `/authorize?…` for our client with state, scope and an S256 challenge,
/// `overrides` replacing or adding parameters (an empty value removes one).
fn authorize_target(overrides: &[(&str, &str)]) -> String {
    let mut pairs = vec![
        ("response_type", "code"),
        ("client_id", CLIENT_ID),
        ("redirect_uri", REDIRECT_URI),
        ("state", STATE),
        ("scope", SCOPE),
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
    ];
    for (name, value) in overrides {
        pairs.retain(|(n, _)| n != name);
        if !value.is_empty() {
            pairs.push((name, value));
        }
    }
    format!("/authorize?{}", encode(&pairs))
}

/// Opens the login form and returns the pending request's id.
async fn open_form(addr: SocketAddr, overrides: &[(&str, &str)]) -> String {
    let form = get(addr, &authorize_target(overrides)).await;
    assert_eq!(form.status, 200, "{}", form.body);
    login_request_id(&form.body).expect("request id").to_owned()
}

/// Logs in the way a test without a browser does: open the form, post it.
async fn log_in(
    addr: SocketAddr,
    overrides: &[(&str, &str)],
    username: &str,
    password: &str,
) -> Reply {
    let id = open_form(addr, overrides).await;
    let fields = [
        ("request", id.as_str()),
        ("username", username),
        ("password", password),
        ("action", "login"),
    ];
    post_form(addr, "/authorize", &fields, &[]).await
}

/// A code for the default account, requested with the S256 challenge.
async fn code(addr: SocketAddr) -> String {
    let reply = log_in(addr, &[], DEFAULT_USERNAME, DEFAULT_PASSWORD).await;
    param(&reply.location(), "code").expect("code")
}

fn basic(id: &str, secret: &str) -> String {
    let encode = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    format!(
        "Basic {}",
        STANDARD.encode(format!("{}:{}", encode(id), encode(secret)))
    )
}

/// Redeems `code` with `client_secret_basic`.
async fn redeem(addr: SocketAddr, code: &str, verifier: Option<&str>, secret: &str) -> Reply {
    let mut fields = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", REDIRECT_URI),
    ];
    if let Some(verifier) = verifier {
        fields.push(("code_verifier", verifier));
    }
    let auth = basic(CLIENT_ID, secret);
    post_form(addr, "/token", &fields, &[("authorization", &auth)]).await
}

async fn userinfo(addr: SocketAddr, token: &str) -> Reply {
    let auth = format!("Bearer {token}");
    send(
        addr,
        "GET",
        "/userinfo",
        &[("authorization", &auth)],
        String::new(),
    )
    .await
}

fn error_of(reply: &Reply) -> String {
    reply.json()["error"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

// ---------------------------------------------------------------- the flow

#[tokio::test]
async fn the_code_flow_with_pkce_ends_in_the_users_profile() {
    let p = start(provider()).await;
    let form = get(p.addr(), &authorize_target(&[])).await;
    assert_eq!(form.status, 200);
    assert!(
        form.body
            .contains("<title>Waypass development provider</title>")
    );
    assert!(form.body.contains(DEFAULT_USERNAME), "usernames are hinted");
    let id = login_request_id(&form.body).expect("request id");

    let fields = [
        ("request", id),
        ("username", DEFAULT_USERNAME),
        ("password", DEFAULT_PASSWORD),
        ("action", "login"),
    ];
    let back = post_form(p.addr(), "/authorize", &fields, &[])
        .await
        .location();
    assert!(back.as_str().starts_with(REDIRECT_URI), "{back}");
    assert_eq!(param(&back, "state").as_deref(), Some(STATE));
    assert_eq!(param(&back, "iss").as_deref(), Some(p.origin()));
    let code = param(&back, "code").expect("code");

    let token = redeem(p.addr(), &code, Some(VERIFIER), CLIENT_SECRET).await;
    assert_eq!(token.status, 200, "{}", token.body);
    assert_eq!(token.header("cache-control"), Some("no-store"));
    let body = token.json();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    assert_eq!(body["scope"], SCOPE);
    assert!(
        body["refresh_token"]
            .as_str()
            .is_some_and(|t| t.len() >= 43)
    );
    let access = body["access_token"].as_str().expect("access_token");

    let profile = userinfo(p.addr(), access).await;
    assert_eq!(profile.status, 200, "{}", profile.body);
    let user = default_user();
    assert_eq!(
        profile.json(),
        serde_json::json!({"account": {"uuid": user.uuid, "email": user.email}})
    );
}

#[tokio::test]
async fn the_flow_without_pkce_or_state_works_and_omits_state() {
    let p = start(provider()).await;
    let overrides = [
        ("code_challenge", ""),
        ("code_challenge_method", ""),
        ("state", ""),
    ];
    let back = log_in(p.addr(), &overrides, DEFAULT_USERNAME, DEFAULT_PASSWORD)
        .await
        .location();
    assert_eq!(param(&back, "state"), None);
    let code = param(&back, "code").expect("code");
    let token = redeem(p.addr(), &code, None, CLIENT_SECRET).await;
    assert_eq!(token.status, 200, "{}", token.body);
}

#[tokio::test]
async fn denying_redirects_with_access_denied_and_the_state() {
    let p = start(provider()).await;
    let id = open_form(p.addr(), &[]).await;
    let fields = [("request", id.as_str()), ("action", "deny")];
    let back = post_form(p.addr(), "/authorize", &fields, &[])
        .await
        .location();
    assert!(back.as_str().starts_with(REDIRECT_URI));
    assert_eq!(param(&back, "error").as_deref(), Some("access_denied"));
    assert!(param(&back, "error_description").is_some());
    assert_eq!(param(&back, "state").as_deref(), Some(STATE));
    assert_eq!(param(&back, "iss").as_deref(), Some(p.origin()));
    assert_eq!(param(&back, "code"), None);
}

#[tokio::test]
async fn a_wrong_password_shows_the_form_again_for_the_same_request() {
    let p = start(provider()).await;
    let id = open_form(p.addr(), &[]).await;
    let wrong = [
        ("request", id.as_str()),
        ("username", DEFAULT_USERNAME),
        ("password", "babbage"),
        ("action", "login"),
    ];
    let again = post_form(p.addr(), "/authorize", &wrong, &[]).await;
    assert_eq!(again.status, 200);
    assert!(again.header("location").is_none());
    assert!(again.body.contains("wrong password"), "{}", again.body);
    assert_eq!(login_request_id(&again.body), Some(id.as_str()));

    let right = [
        ("request", id.as_str()),
        ("username", DEFAULT_USERNAME),
        ("password", DEFAULT_PASSWORD),
        ("action", "login"),
    ];
    let back = post_form(p.addr(), "/authorize", &right, &[])
        .await
        .location();
    assert!(param(&back, "code").is_some());
}

#[tokio::test]
async fn the_form_escapes_what_it_echoes() {
    let p = start(provider()).await;
    let reply = log_in(p.addr(), &[], "<script>alert(1)</script>", "x").await;
    assert_eq!(reply.status, 200);
    assert!(!reply.body.contains("<script>"), "{}", reply.body);
    assert!(reply.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
}

#[tokio::test]
async fn a_login_request_is_answered_only_once() {
    let p = start(provider()).await;
    let id = open_form(p.addr(), &[]).await;
    let fields = [
        ("request", id.as_str()),
        ("username", DEFAULT_USERNAME),
        ("password", DEFAULT_PASSWORD),
        ("action", "login"),
    ];
    assert_eq!(
        post_form(p.addr(), "/authorize", &fields, &[]).await.status,
        302
    );
    let again = post_form(p.addr(), "/authorize", &fields, &[]).await;
    assert_eq!(again.status, 400);
    assert!(again.header("location").is_none());
}

#[tokio::test]
async fn configured_accounts_replace_the_default_one() {
    let grace = DevUser {
        uuid: "u-grace".into(),
        email: "grace@example.com".into(),
    };
    let p = start(provider().with_account("grace", "hopper", grace.clone())).await;
    let ada = log_in(p.addr(), &[], DEFAULT_USERNAME, DEFAULT_PASSWORD).await;
    assert_eq!(ada.status, 200, "the default account is gone");

    let back = log_in(p.addr(), &[], "grace", "hopper").await.location();
    let code = param(&back, "code").expect("code");
    let token = redeem(p.addr(), &code, Some(VERIFIER), CLIENT_SECRET)
        .await
        .json();
    let access = token["access_token"].as_str().expect("access_token");
    let profile = userinfo(p.addr(), access).await.json();
    assert_eq!(profile["account"]["uuid"], "u-grace");
    assert_eq!(profile["account"]["email"], "grace@example.com");
}

// ------------------------------------------------- the authorization request

#[tokio::test]
async fn an_unregistered_redirect_uri_gets_a_400_page_and_no_redirect() {
    let p = start(provider()).await;
    for uri in [
        "http://evil.example/callback",
        "http://127.0.0.1:9/callback/",
        "http://127.0.0.1:9/callback?x=1",
        "",
    ] {
        let reply = get(p.addr(), &authorize_target(&[("redirect_uri", uri)])).await;
        assert_eq!(reply.status, 400, "{uri}");
        assert!(reply.header("location").is_none(), "{uri}");
        assert!(
            reply
                .header("content-type")
                .is_some_and(|c| c.starts_with("text/html"))
        );
        assert_eq!(login_request_id(&reply.body), None);
    }
}

#[tokio::test]
async fn an_unknown_client_gets_a_400_page_and_no_redirect() {
    let p = start(provider()).await;
    for client in ["other", ""] {
        let reply = get(p.addr(), &authorize_target(&[("client_id", client)])).await;
        assert_eq!(reply.status, 400);
        assert!(reply.header("location").is_none());
    }
}

#[tokio::test]
async fn an_unsupported_response_type_is_redirected_with_the_error() {
    let p = start(provider()).await;
    let reply = get(p.addr(), &authorize_target(&[("response_type", "token")])).await;
    let back = reply.location();
    assert_eq!(
        param(&back, "error").as_deref(),
        Some("unsupported_response_type")
    );
    assert_eq!(param(&back, "state").as_deref(), Some(STATE));
}

#[tokio::test]
async fn a_plain_or_malformed_pkce_challenge_is_invalid_request() {
    let p = start(provider()).await;
    for overrides in [
        vec![("code_challenge_method", "plain")],
        vec![("code_challenge_method", "")],
        vec![("code_challenge", "short")],
    ] {
        let back = get(p.addr(), &authorize_target(&overrides))
            .await
            .location();
        assert_eq!(param(&back, "error").as_deref(), Some("invalid_request"));
    }
}

#[tokio::test]
async fn a_registered_redirect_uri_keeps_its_own_query() {
    let uri = "http://127.0.0.1:9/cb?tenant=1";
    let p = start(DevProvider::new().with_client(CLIENT_ID, CLIENT_SECRET, uri)).await;
    let back = log_in(
        p.addr(),
        &[("redirect_uri", uri)],
        DEFAULT_USERNAME,
        DEFAULT_PASSWORD,
    )
    .await
    .location();
    assert_eq!(param(&back, "tenant").as_deref(), Some("1"));
    assert!(param(&back, "code").is_some());
}

#[tokio::test]
async fn the_iss_parameter_can_be_turned_off() {
    let p = start(provider().with_issuer_parameter(false)).await;
    let back = log_in(p.addr(), &[], DEFAULT_USERNAME, DEFAULT_PASSWORD)
        .await
        .location();
    assert!(param(&back, "code").is_some());
    assert_eq!(param(&back, "iss"), None);
}

// ----------------------------------------------------------- the token endpoint

#[tokio::test]
async fn a_replayed_code_is_invalid_grant_and_revokes_its_tokens() {
    let p = start(provider()).await;
    let code = code(p.addr()).await;
    let first = redeem(p.addr(), &code, Some(VERIFIER), CLIENT_SECRET).await;
    assert_eq!(first.status, 200);
    let access = first.json()["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned();
    assert_eq!(userinfo(p.addr(), &access).await.status, 200);

    let replay = redeem(p.addr(), &code, Some(VERIFIER), CLIENT_SECRET).await;
    assert_eq!(replay.status, 400);
    assert_eq!(error_of(&replay), "invalid_grant");
    assert_eq!(userinfo(p.addr(), &access).await.status, 401);
}

#[tokio::test]
async fn a_wrong_client_secret_is_invalid_client_401_and_leaves_the_code_usable() {
    let p = start(provider()).await;
    let code = code(p.addr()).await;
    let reply = redeem(p.addr(), &code, Some(VERIFIER), "guess").await;
    assert_eq!(reply.status, 401);
    assert_eq!(error_of(&reply), "invalid_client");
    assert!(
        reply
            .header("www-authenticate")
            .is_some_and(|c| c.starts_with("Basic"))
    );
    let fields = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT_URI),
    ];
    let none = post_form(p.addr(), "/token", &fields, &[]).await;
    assert_eq!(none.status, 401, "no client authentication at all");

    let right = redeem(p.addr(), &code, Some(VERIFIER), CLIENT_SECRET).await;
    assert_eq!(right.status, 200, "{}", right.body);
}

#[tokio::test]
async fn a_wrong_pkce_verifier_is_invalid_grant() {
    let p = start(provider()).await;
    let code = code(p.addr()).await;
    let reply = redeem(p.addr(), &code, Some(OTHER_VERIFIER), CLIENT_SECRET).await;
    assert_eq!(reply.status, 400);
    assert_eq!(error_of(&reply), "invalid_grant");
    let retry = redeem(p.addr(), &code, Some(VERIFIER), CLIENT_SECRET).await;
    assert_eq!(error_of(&retry), "invalid_grant", "the code was spent");
}

#[tokio::test]
async fn a_missing_pkce_verifier_is_invalid_grant() {
    let p = start(provider()).await;
    let code = code(p.addr()).await;
    let reply = redeem(p.addr(), &code, None, CLIENT_SECRET).await;
    assert_eq!(error_of(&reply), "invalid_grant");
}

#[tokio::test]
async fn a_verifier_for_a_code_without_a_challenge_is_invalid_grant() {
    let p = start(provider()).await;
    let overrides = [("code_challenge", ""), ("code_challenge_method", "")];
    let back = log_in(p.addr(), &overrides, DEFAULT_USERNAME, DEFAULT_PASSWORD)
        .await
        .location();
    let code = param(&back, "code").expect("code");
    let reply = redeem(p.addr(), &code, Some(VERIFIER), CLIENT_SECRET).await;
    assert_eq!(error_of(&reply), "invalid_grant");
}

#[tokio::test]
async fn a_redirect_uri_differing_at_the_token_endpoint_is_invalid_grant() {
    let p = start(provider()).await;
    let code = code(p.addr()).await;
    let fields = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", "http://127.0.0.1:9/other"),
        ("code_verifier", VERIFIER),
    ];
    let auth = basic(CLIENT_ID, CLIENT_SECRET);
    let reply = post_form(p.addr(), "/token", &fields, &[("authorization", &auth)]).await;
    assert_eq!(error_of(&reply), "invalid_grant");
}

#[tokio::test]
async fn client_secret_post_works_as_well_as_basic() {
    let p = start(provider()).await;
    let code = code(p.addr()).await;
    let fields = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT_URI),
        ("code_verifier", VERIFIER),
        ("client_id", CLIENT_ID),
        ("client_secret", CLIENT_SECRET),
    ];
    let reply = post_form(p.addr(), "/token", &fields, &[]).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(reply.json()["access_token"].is_string());
}

#[tokio::test]
async fn basic_credentials_are_form_urlencoded_before_base64() {
    let (id, secret) = ("my app", "s3:cr&t+%");
    let p = start(DevProvider::new().with_client(id, secret, REDIRECT_URI)).await;
    let back = log_in(
        p.addr(),
        &[("client_id", id)],
        DEFAULT_USERNAME,
        DEFAULT_PASSWORD,
    )
    .await
    .location();
    let code = param(&back, "code").expect("code");
    let fields = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT_URI),
        ("code_verifier", VERIFIER),
    ];
    let auth = basic(id, secret);
    let reply = post_form(p.addr(), "/token", &fields, &[("authorization", &auth)]).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
}

#[tokio::test]
async fn two_client_authentication_methods_at_once_are_invalid_request() {
    let p = start(provider()).await;
    let code = code(p.addr()).await;
    let fields = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT_URI),
        ("code_verifier", VERIFIER),
        ("client_secret", CLIENT_SECRET),
    ];
    let auth = basic(CLIENT_ID, CLIENT_SECRET);
    let reply = post_form(p.addr(), "/token", &fields, &[("authorization", &auth)]).await;
    assert_eq!(reply.status, 400);
    assert_eq!(error_of(&reply), "invalid_request");
}

#[tokio::test]
async fn an_unknown_grant_type_is_unsupported_grant_type() {
    let p = start(provider()).await;
    let auth = basic(CLIENT_ID, CLIENT_SECRET);
    let fields = [("grant_type", "password")];
    let reply = post_form(p.addr(), "/token", &fields, &[("authorization", &auth)]).await;
    assert_eq!(reply.status, 400);
    assert_eq!(error_of(&reply), "unsupported_grant_type");
}

#[tokio::test]
async fn a_token_request_that_is_not_a_form_is_invalid_request() {
    let p = start(provider()).await;
    let auth = basic(CLIENT_ID, CLIENT_SECRET);
    let headers = [
        ("authorization", auth.as_str()),
        ("content-type", "application/json"),
    ];
    let body = r#"{"grant_type":"authorization_code"}"#.to_owned();
    let reply = send(p.addr(), "POST", "/token", &headers, body).await;
    assert_eq!(reply.status, 400);
    assert_eq!(error_of(&reply), "invalid_request");
}

#[tokio::test]
async fn a_refresh_token_gives_new_tokens_once() {
    let p = start(provider()).await;
    let code = code(p.addr()).await;
    let first = redeem(p.addr(), &code, Some(VERIFIER), CLIENT_SECRET)
        .await
        .json();
    let refresh = first["refresh_token"].as_str().expect("refresh_token");
    let auth = basic(CLIENT_ID, CLIENT_SECRET);
    let fields = [("grant_type", "refresh_token"), ("refresh_token", refresh)];

    let renewed = post_form(p.addr(), "/token", &fields, &[("authorization", &auth)]).await;
    assert_eq!(renewed.status, 200, "{}", renewed.body);
    let renewed = renewed.json();
    assert_eq!(renewed["scope"], SCOPE);
    assert_ne!(renewed["refresh_token"], first["refresh_token"]);
    let access = renewed["access_token"].as_str().expect("access_token");
    assert_eq!(userinfo(p.addr(), access).await.status, 200);

    let reused = post_form(p.addr(), "/token", &fields, &[("authorization", &auth)]).await;
    assert_eq!(error_of(&reused), "invalid_grant", "refresh tokens rotate");
}

#[tokio::test]
async fn codes_and_access_tokens_expire_by_the_injected_clock() {
    let offset = Arc::new(AtomicU64::new(0));
    let clock = {
        let offset = offset.clone();
        move || SystemTime::now() + Duration::from_secs(offset.load(Ordering::SeqCst))
    };
    let p = start(provider().with_clock(clock)).await;

    let stale = code(p.addr()).await;
    offset.store(601, Ordering::SeqCst);
    let reply = redeem(p.addr(), &stale, Some(VERIFIER), CLIENT_SECRET).await;
    assert_eq!(error_of(&reply), "invalid_grant", "codes live 10 minutes");

    let fresh = code(p.addr()).await;
    let token = redeem(p.addr(), &fresh, Some(VERIFIER), CLIENT_SECRET)
        .await
        .json();
    let access = token["access_token"].as_str().expect("access_token");
    assert_eq!(userinfo(p.addr(), access).await.status, 200);
    offset.store(601 + 3601, Ordering::SeqCst);
    assert_eq!(userinfo(p.addr(), access).await.status, 401);
}

// ------------------------------------------------------------------ userinfo

#[tokio::test]
async fn an_unknown_bearer_token_is_401_invalid_token() {
    let p = start(provider()).await;
    let reply = userinfo(p.addr(), "nope").await;
    assert_eq!(reply.status, 401);
    assert_eq!(error_of(&reply), "invalid_token");
    assert!(
        reply
            .header("www-authenticate")
            .is_some_and(|c| c.starts_with("Bearer") && c.contains(r#"error="invalid_token""#))
    );
    let anonymous = get(p.addr(), "/userinfo").await;
    assert_eq!(anonymous.status, 401);
}

#[tokio::test]
async fn pre_issued_tokens_answer_at_userinfo() {
    let user = DevUser {
        uuid: "u-1".into(),
        email: "one@example.com".into(),
    };
    let p = start(DevProvider::new().with_token("t-1", user)).await;
    let reply = userinfo(p.addr(), "t-1").await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.json(),
        serde_json::json!({"account": {"uuid": "u-1", "email": "one@example.com"}})
    );
}

// -------------------------------------------------------- faults and the rest

#[tokio::test]
async fn token_faults_are_served_until_set_back_to_normal() {
    let p = start(provider()).await;
    let auth = basic(CLIENT_ID, CLIENT_SECRET);
    let fields = [("grant_type", "refresh_token"), ("refresh_token", "x")];

    p.set_token_fault(TokenFault::Status(502, "bad gateway".into()));
    let reply = post_form(p.addr(), "/token", &fields, &[("authorization", &auth)]).await;
    assert_eq!((reply.status, reply.body.as_str()), (502, "bad gateway"));

    p.set_token_fault(TokenFault::Status(400, r#"{"error":"slow_down"}"#.into()));
    let reply = post_form(p.addr(), "/token", &fields, &[("authorization", &auth)]).await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_eq!(error_of(&reply), "slow_down");

    p.set_token_fault(TokenFault::Garbage);
    let reply = post_form(p.addr(), "/token", &fields, &[("authorization", &auth)]).await;
    assert_eq!(reply.status, 200);
    assert!(serde_json::from_str::<Value>(&reply.body).is_err());

    p.set_token_fault(TokenFault::Normal);
    let reply = post_form(p.addr(), "/token", &fields, &[("authorization", &auth)]).await;
    assert_eq!(error_of(&reply), "invalid_grant");
}

#[tokio::test]
async fn userinfo_faults_are_served() {
    let user = default_user();
    let p = start(DevProvider::new().with_token("t", user)).await;
    p.set_userinfo_fault(UserinfoFault::Status(503, "down".into()));
    let reply = userinfo(p.addr(), "t").await;
    assert_eq!((reply.status, reply.body.as_str()), (503, "down"));
    p.set_userinfo_fault(UserinfoFault::Normal);
    assert_eq!(userinfo(p.addr(), "t").await.status, 200);
}

#[tokio::test]
async fn every_request_is_recorded_with_its_query_headers_and_form() {
    let p = start(provider()).await;
    let extra = [("audience", "https://api.example"), ("prompt", "login")];
    let back = log_in(p.addr(), &extra, DEFAULT_USERNAME, DEFAULT_PASSWORD)
        .await
        .location();
    let code = param(&back, "code").expect("code");
    let fields = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT_URI),
        ("code_verifier", VERIFIER),
    ];
    let auth = basic(CLIENT_ID, CLIENT_SECRET);
    let headers = [("authorization", auth.as_str()), ("X-Tenant", "acme")];
    assert_eq!(
        post_form(p.addr(), "/token", &fields, &headers)
            .await
            .status,
        200
    );
    assert_eq!(get(p.addr(), "/nowhere?x=1").await.status, 404);

    let authorize = p.requests_to("/authorize");
    assert_eq!(authorize.len(), 2);
    assert_eq!(authorize[0].method, "GET");
    assert_eq!(
        authorize[0].query_param("audience"),
        Some("https://api.example")
    );
    assert_eq!(authorize[0].query_param("code_challenge"), Some(CHALLENGE));
    assert_eq!(authorize[1].method, "POST");
    assert_eq!(authorize[1].form_param("username"), Some(DEFAULT_USERNAME));

    let token = p.requests_to("/token");
    assert_eq!(token.len(), 1);
    assert_eq!(token[0].header("x-tenant"), Some("acme"));
    assert_eq!(token[0].header("Authorization"), Some(auth.as_str()));
    assert_eq!(token[0].form_param("code_verifier"), Some(VERIFIER));

    let all = p.requests();
    assert_eq!(all.len(), 4);
    assert_eq!(all[3].path, "/nowhere");
    assert_eq!(all[3].query, vec![("x".to_owned(), "1".to_owned())]);
}

#[tokio::test]
async fn unknown_paths_and_methods_are_404() {
    let p = start(provider()).await;
    assert_eq!(get(p.addr(), "/").await.status, 404);
    assert_eq!(get(p.addr(), "/token").await.status, 404);
    let put = send(p.addr(), "PUT", "/authorize", &[], String::new()).await;
    assert_eq!(put.status, 404);
}

#[tokio::test]
async fn bodies_over_64_kib_are_refused_with_413() {
    let p = start(provider()).await;
    let big = "a".repeat(65 * 1024);
    let headers = [("content-type", "application/x-www-form-urlencoded")];
    let reply = send(p.addr(), "POST", "/token", &headers, big).await;
    assert_eq!(reply.status, 413);
}

#[tokio::test]
async fn stop_closes_the_listener() {
    let p = start(provider()).await;
    let addr = p.addr();
    assert_eq!(get(addr, "/").await.status, 404);
    p.stop().await;
    assert!(TcpStream::connect(addr).await.is_err());
}
