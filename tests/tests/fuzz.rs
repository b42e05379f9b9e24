//! Property tests of what a browser, an app or a management caller can send:
//! `/authorize`, `/login/callback` and `/oauth/token` parameters, and
//! connection JSON through the management API. Whatever arrives, the broker
//! answers with an OAuth (or API) error or a success — never a panic — and
//! secrets never appear in what it answers.
//!
//! Each property runs [`DEFAULT_CASES`] cases under `cargo test`;
//! `PROPTEST_CASES=100000 cargo test -p waypass-tests --test fuzz` runs a
//! long session. A failure prints the smallest input found.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{Map, Value, json};
use url::Url;
use waypass::broker::limits::Quota;
use waypass::broker::{AuthorizeOutcome, CallbackOutcome, Clock as _, MAX_PARAM_BYTES};
use waypass::broker::{LOGIN_TRANSACTION_TTL, login_page, pages};
use waypass::model::{Connection, ConnectionSpec};
use waypass::secret::SecretHash;
use waypass::store::{AuthorizationGrant, Store as _};
use waypass_tests::login::{
    ADMIN_TOKEN, APP, APP_CALLBACK, APP_SECRET, CONNECTION, PKCE_CHALLENGE, PKCE_VERIFIER, SPA,
    SPA_CALLBACK, TestBed,
};

/// Cases per property under `cargo test` (unless `PROPTEST_CASES` says
/// otherwise): enough to meet every branch of the parsers on each run, a
/// few seconds in a debug build.
const DEFAULT_CASES: u32 = 4000;

/// Every secret the properties put in a connection starts with this; no
/// answer may contain it.
const SECRET_MARK: &str = "sekret-marker-";

/// Error codes of RFC 6749 §4.1.2.1 and §5.2 (and RFC 6750 §3.1).
const OAUTH_ERRORS: [&str; 11] = [
    "invalid_request",
    "unauthorized_client",
    "access_denied",
    "unsupported_response_type",
    "invalid_scope",
    "server_error",
    "temporarily_unavailable",
    "invalid_client",
    "invalid_grant",
    "unsupported_grant_type",
    "invalid_token",
];

fn config() -> Config {
    let mut config = Config::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = DEFAULT_CASES;
    }
    // A failure prints its smallest input; there is no source file to
    // persist it next to in an integration test.
    config.failure_persistence = None;
    config
}

/// Runs `property` over `strategy` with [`config`]; panics with the
/// smallest failing input.
fn check<S: Strategy>(strategy: S, property: impl Fn(S::Value) -> Result<(), TestCaseError>) {
    let mut runner = TestRunner::new(config());
    if let Err(e) = runner.run(&strategy, property) {
        panic!("{e}");
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

// ---- what the generators draw from ----

/// Values a request might plausibly carry, valid and not.
const PLAUSIBLE: &[&str] = &[
    "",
    "code",
    "token",
    "code id_token",
    APP,
    SPA,
    "nobody",
    APP_CALLBACK,
    SPA_CALLBACK,
    "http://evil.test/callback",
    "http://app.test/callback/",
    CONNECTION,
    "nope",
    PKCE_CHALLENGE,
    PKCE_VERIFIER,
    "S256",
    "plain",
    "query",
    "form_post",
    "openid",
    "openid email profile",
    "authorization_code",
    "client_credentials",
    "password",
    APP_SECRET,
    "%",
    "%zz",
    "+",
    "\u{0}",
    "é",
    "🦀",
    "known-code-1",
    "known-code-2",
    "known-code-3",
];

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(PLAUSIBLE).prop_map(str::to_owned),
        2 => any::<String>(),
        1 => "[a-zA-Z0-9%&=+_.~ -]{0,80}",
        // Around the bounds: MAX_PARAM_BYTES and RFC 7636's 43–128.
        1 => (0usize..=MAX_PARAM_BYTES + 2).prop_map(|n| "x".repeat(n)),
        1 => (40usize..=130).prop_map(|n| "A".repeat(n)),
    ]
}

fn key(known: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(known).prop_map(str::to_owned),
        1 => "[a-z_]{1,12}",
        1 => any::<String>(),
    ]
}

fn encode(pairs: &[(String, String)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// A query or form: mostly-valid requests with some pairs changed or added
/// (repeats included), arbitrary pairs, or arbitrary text.
fn request(
    known: &'static [&'static str],
    valid: Vec<(&'static str, &'static str)>,
) -> impl Strategy<Value = String> {
    let len = valid.len();
    let pair = move || (key(known), value());
    let whole = valid.clone();
    prop_oneof![
        // The valid request with a few values changed, and maybe more pairs.
        4 => (
            prop::collection::vec((0..len, value()), 0..3),
            prop::collection::vec(pair(), 0..2),
        )
            .prop_map(move |(changes, extra)| {
                let mut pairs: Vec<(String, String)> = whole
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect();
                for (i, v) in changes {
                    pairs[i].1 = v;
                }
                pairs.extend(extra);
                encode(&pairs)
            }),
        3 => (
            prop::sample::subsequence(valid, 0..=len),
            prop::collection::vec(pair(), 0..4),
        )
            .prop_map(|(base, extra)| {
                let mut pairs: Vec<(String, String)> = base
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect();
                pairs.extend(extra);
                encode(&pairs)
            }),
        2 => prop::collection::vec(pair(), 0..12).prop_map(|pairs| encode(&pairs)),
        1 => any::<String>(),
        1 => "[a-z_=&%0-9A-F+;]{0,200}",
    ]
}

fn client_address() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        // One address again and again: its buckets run dry.
        Just(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        any::<[u8; 4]>().prop_map(|b| IpAddr::V4(Ipv4Addr::from(b))),
        any::<[u8; 16]>().prop_map(|b| IpAddr::V6(Ipv6Addr::from(b))),
    ]
}

/// `error`/`error_description` as RFC 6749 §4.1.2.1 and §5.2 allow them.
fn check_error(code: &str, description: &str) -> Result<(), TestCaseError> {
    prop_assert!(OAUTH_ERRORS.contains(&code), "error code {code:?}");
    prop_assert!(description.chars().count() <= 200, "{description}");
    prop_assert!(
        description
            .chars()
            .all(|c| (' '..='~').contains(&c) && c != '"' && c != '\\'),
        "{description:?}"
    );
    Ok(())
}

fn first(url: &Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

// ---- /authorize ----

const AUTHORIZE_KEYS: &[&str] = &[
    "response_type",
    "client_id",
    "redirect_uri",
    "state",
    "nonce",
    "scope",
    "code_challenge",
    "code_challenge_method",
    "connection",
    "response_mode",
    "access_type",
    "prompt",
];

fn valid_authorize() -> Vec<(&'static str, &'static str)> {
    vec![
        ("response_type", "code"),
        ("client_id", APP),
        ("redirect_uri", APP_CALLBACK),
        ("connection", CONNECTION),
        ("code_challenge", PKCE_CHALLENGE),
        ("code_challenge_method", "S256"),
        ("state", "app-state"),
        ("scope", "openid email"),
    ]
}

#[test]
fn any_authorize_query_gets_an_oauth_answer_and_only_bounded_logins_are_stored() {
    let rt = runtime();
    let tb = rt.block_on(TestBed::start(|connections, _| {
        connections[0]["options"]["authParamsMap"] = json!({"access_type": "access_type"});
    }));
    let provider = tb.provider.origin().to_owned();
    let started = std::cell::Cell::new(0u32);
    check(
        (request(AUTHORIZE_KEYS, valid_authorize()), client_address()),
        |(query, from)| {
            let outcome = rt.block_on(tb.broker.authorize(&query, from));
            match outcome {
                AuthorizeOutcome::ToProvider {
                    location,
                    cookie_name,
                    cookie_value,
                } => {
                    prop_assert!(location.starts_with(&provider), "{location}");
                    prop_assert!(cookie_name.starts_with("wp_tx_"), "{cookie_name}");
                    prop_assert_eq!(cookie_value.len(), 43);
                    // What was stored came from a query whose kept values
                    // are within their bounds.
                    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
                        if ["state", "nonce", "scope"].contains(&k.as_ref()) {
                            prop_assert!(v.len() <= MAX_PARAM_BYTES, "{k} of {}", v.len());
                        }
                    }
                    started.set(started.get() + 1);
                    // Let every login so far expire, so the bound on logins
                    // in flight never stops the exploration.
                    tb.clock.advance(LOGIN_TRANSACTION_TTL.as_secs());
                }
                AuthorizeOutcome::ToApp(answer) => {
                    let location = answer.location();
                    prop_assert!(
                        location.starts_with(APP_CALLBACK) || location.starts_with(SPA_CALLBACK),
                        "only to a registered callback: {location}"
                    );
                    let url =
                        Url::parse(&location).map_err(|e| TestCaseError::fail(e.to_string()))?;
                    let error = first(&url, "error").unwrap_or_default();
                    let description = first(&url, "error_description").unwrap_or_default();
                    check_error(&error, &description)?;
                    prop_assert!(first(&url, "code").is_none());
                }
                AuthorizeOutcome::ChooseConnection {
                    client,
                    connections,
                    query,
                } => {
                    let page =
                        login_page::render(&Default::default(), &client, &connections, &query)
                            .map_err(|e| TestCaseError::fail(e.to_string()))?;
                    prop_assert!(page.contains("Log in to"));
                }
                AuthorizeOutcome::ErrorPage(e) => {
                    check_error(e.code.as_str(), &e.description)?;
                    prop_assert!(pages::error(&e).contains(e.code.as_str()));
                }
                AuthorizeOutcome::TooManyRequests(wait) => {
                    prop_assert!(false, "rate limits are off in the test bed: {wait:?}");
                }
            }
            Ok(())
        },
    );
    eprintln!("fuzz: {} authorize cases started a login", started.get());
}

// ---- /login/callback ----

const CALLBACK_KEYS: &[&str] = &["state", "code", "error", "error_description", "iss"];

#[test]
fn any_callback_query_and_cookie_gets_an_oauth_answer_and_never_a_code() {
    let rt = runtime();
    let tb = rt.block_on(TestBed::start(|_, _| {}));
    check(
        (
            request(
                CALLBACK_KEYS,
                vec![
                    ("state", "AAAAAAAAAAAA"),
                    ("code", "x"),
                    ("iss", "http://127.0.0.1:1"),
                ],
            ),
            prop::option::of(prop_oneof![Just(CONNECTION.to_owned()), "[a-z-]{0,12}"]),
            prop::option::of(value()),
            client_address(),
        ),
        |(query, arrived_on, cookie, from)| {
            let outcome =
                rt.block_on(
                    tb.broker
                        .callback(&query, arrived_on.as_deref(), from, |_| cookie.clone()),
                );
            match outcome {
                CallbackOutcome::ErrorPage(e) => check_error(e.code.as_str(), &e.description)?,
                other => prop_assert!(false, "no login was started: {other:?}"),
            }
            Ok(())
        },
    );
}

// ---- /oauth/token ----

const TOKEN_KEYS: &[&str] = &[
    "grant_type",
    "code",
    "redirect_uri",
    "client_id",
    "client_secret",
    "code_verifier",
    "scope",
];

/// Codes stored for [`APP`] before the token property runs, so some cases
/// redeem for real.
const KNOWN_CODES: [&str; 4] = [
    "known-code-0",
    "known-code-1",
    "known-code-2",
    "known-code-3",
];

fn authorization() -> impl Strategy<Value = Option<String>> {
    let b64 = |s: String| base64::engine::general_purpose::STANDARD.encode(s);
    prop_oneof![
        2 => Just(None),
        2 => (prop::sample::select(&[APP, SPA, "nobody", "app%3A"][..]), value())
            .prop_map(move |(id, secret)| Some(format!("Basic {}", b64(format!("{id}:{secret}"))))),
        1 => Just(Some(format!("Basic {}", b64(format!("{APP}:{APP_SECRET}"))))),
        1 => value().prop_map(|v| Some(format!("Basic {v}"))),
        1 => value().prop_map(|v| Some(format!("Bearer {v}"))),
        1 => any::<String>().prop_map(Some),
    ]
}

#[test]
fn any_token_request_gets_an_rfc_6749_answer() {
    let rt = runtime();
    let tb = rt.block_on(TestBed::start(|_, config| {
        // On, and small: arbitrary client addresses meet the bounded
        // limiter tables, and the repeated ones run dry.
        let small = Quota {
            burst: 10,
            per_minute: 1,
        };
        config.limits.rate.enabled = true;
        config.limits.rate.token_failures_per_ip = small;
        config.limits.rate.token_failures_per_client = Quota {
            burst: 500,
            ..small
        };
    }));
    let now = tb.clock.now();
    rt.block_on(async {
        let profile = serde_json::from_value(json!({"user_id": "ada"})).expect("profile");
        tb.store
            .record_login("oauth2|devprov|ada", CONNECTION, profile, now)
            .await
            .expect("user");
        for code in KNOWN_CODES {
            let grant = AuthorizationGrant {
                correlation_id: None,
                claims: Default::default(),
                client_id: APP.into(),
                redirect_uri: APP_CALLBACK.into(),
                user_id: "oauth2|devprov|ada".into(),
                scope: "openid email".into(),
                nonce: Some("n".into()),
                code_challenge: Some(PKCE_CHALLENGE.into()),
                auth_time: now,
                session_id: None,
                audience: None,
                expires_at: now + 600,
            };
            tb.store
                .put_code(SecretHash::of(code), grant)
                .await
                .expect("code");
        }
    });
    let valid = vec![
        ("grant_type", "authorization_code"),
        ("code", "known-code-0"),
        ("redirect_uri", APP_CALLBACK),
        ("code_verifier", PKCE_VERIFIER),
        ("client_id", APP),
        ("client_secret", APP_SECRET),
    ];
    let statuses = std::cell::RefCell::new(std::collections::BTreeMap::new());
    check(
        (
            request(TOKEN_KEYS, valid),
            authorization(),
            client_address(),
        ),
        |(form, authorization, from)| {
            let reply = rt.block_on(tb.broker.token(&form, authorization.as_deref(), from));
            *statuses.borrow_mut().entry(reply.status).or_insert(0u32) += 1;
            let body: Value = serde_json::from_str(&reply.body)
                .map_err(|e| TestCaseError::fail(format!("{e}: {}", reply.body)))?;
            match reply.status {
                200 => {
                    prop_assert!(body["access_token"].is_string(), "{body}");
                    prop_assert_eq!(&body["token_type"], "Bearer");
                }
                400 | 401 | 429 | 500 | 503 => {
                    let error = body["error"].as_str().unwrap_or_default();
                    let description = body["error_description"].as_str().unwrap_or_default();
                    check_error(error, description)?;
                    prop_assert_eq!(
                        reply.status == 401,
                        error == "invalid_client",
                        "401 is invalid_client: {}",
                        body
                    );
                    prop_assert_eq!(reply.status == 401, reply.www_authenticate.is_some());
                    prop_assert_eq!(reply.status == 429, reply.retry_after.is_some());
                }
                other => prop_assert!(false, "status {other}: {body}"),
            }
            Ok(())
        },
    );
    eprintln!("fuzz: token answers by status {:?}", statuses.borrow());
}

// ---- connection JSON ----

/// Option names of a connection (but `scripts`: compiling a script per case
/// is the script engine's own suite's business).
const OPTION_KEYS: &[&str] = &[
    "authorizationURL",
    "tokenURL",
    "scope",
    "client_id",
    "client_secret",
    "customHeaders",
    "authParams",
    "authParamsMap",
    "icon_url",
    "pkce_enabled",
    "issuer",
    "per_connection_callback",
    "token_endpoint_auth_method",
    "mapper",
    "mapper_settings",
    "mapper_egress",
    "mapper_timeout_ms",
    "client_secret_env",
];

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON numbers are finite", |f| f.is_finite())
            .prop_map(Value::from),
        value().prop_map(Value::from),
        prop::sample::select(
            &[
                "https://id.example.test/authorize",
                "http://127.0.0.1:9/token",
                "not a url",
                "ftp://x.test/",
                "auth0-example",
                "client_secret_basic",
                "client_secret_post",
            ][..]
        )
        .prop_map(Value::from),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(3, 24, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map("[a-zA-Z_]{0,10}", inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A secret as the properties write them: marked, so any leak is found.
fn secret() -> impl Strategy<Value = Value> {
    "[a-z0-9]{0,8}".prop_map(|s| Value::from(format!("{SECRET_MARK}{s}")))
}

fn options() -> impl Strategy<Value = Value> {
    let option = (
        prop::sample::select(OPTION_KEYS),
        prop_oneof![3 => json_value(), 1 => secret()],
    );
    (
        prop::collection::vec(option, 0..8),
        secret(),
        prop::collection::btree_map("[a-z_]{1,8}", secret(), 0..3),
    )
        .prop_map(|(pairs, client_secret, settings)| {
            let mut map = Map::new();
            for (k, v) in pairs {
                // A secret may only be written where secrets go; elsewhere a
                // marked string would be shown as any value is.
                let v = if v.as_str().is_some_and(|s| s.starts_with(SECRET_MARK)) {
                    Value::from("plain")
                } else {
                    v
                };
                map.insert(k.to_owned(), v);
            }
            if map.contains_key("client_secret") {
                map.insert("client_secret".into(), client_secret);
            }
            if map.contains_key("mapper_settings") {
                map.insert(
                    "mapper_settings".into(),
                    Value::Object(settings.into_iter().collect()),
                );
            }
            Value::Object(map)
        })
}

/// Options each of the type its field takes, valid or not in content.
fn typed_options() -> impl Strategy<Value = Value> {
    let url = prop::sample::select(
        &[
            "https://id.example.test/authorize",
            "http://127.0.0.1:9/token",
            "https://id.example.test",
            "not a url",
            "ftp://x.test/",
        ][..],
    );
    let strings = prop::collection::btree_map("[a-z_]{1,8}", value(), 0..3);
    (
        prop::option::of(value()),
        prop::option::of(any::<bool>()),
        prop::option::of(url.clone()),
        prop::option::of(any::<bool>()),
        prop::option::of(strings),
        prop::option::of(secret()),
        prop::option::of(prop::collection::btree_map("[a-z_]{1,8}", secret(), 0..3)),
        prop::option::of(url),
    )
        .prop_map(
            |(
                scope,
                pkce,
                issuer,
                own_callback,
                auth_params,
                client_secret,
                settings,
                token_url,
            )| {
                let mut map = Map::new();
                let mut put = |k: &str, v: Option<Value>| {
                    if let Some(v) = v {
                        map.insert(k.to_owned(), v);
                    }
                };
                put("scope", scope.map(Value::from));
                put("pkce_enabled", pkce.map(Value::from));
                put("issuer", issuer.map(Value::from));
                put("per_connection_callback", own_callback.map(Value::from));
                put("authParams", auth_params.map(|m| json!(m)));
                put("client_secret", client_secret);
                put("mapper_settings", settings.map(|m| json!(m)));
                put("tokenURL", token_url.map(Value::from));
                Value::Object(map)
            },
        )
}

fn connection_body() -> impl Strategy<Value = Value> {
    (
        prop::option::of(prop::sample::select(
            &["fuzzed", "fuzzed-2", CONNECTION, "bad name"][..],
        )),
        prop::option::of(prop_oneof![options(), typed_options()]),
        prop::option::of(prop::collection::vec(
            prop::sample::select(&[APP, SPA, "nobody"][..]),
            0..3,
        )),
        prop::option::of(json_value()),
        prop::option::of(prop::sample::select(&["oauth2", "saml"][..])),
    )
        .prop_map(|(name, options, clients, display, strategy)| {
            let mut body = Map::new();
            if let Some(n) = name {
                body.insert("name".into(), n.into());
            }
            if let Some(o) = options {
                body.insert("options".into(), o);
            }
            if let Some(c) = clients {
                body.insert("enabled_clients".into(), json!(c));
            }
            if let Some(d) = display {
                body.insert("display_name".into(), d);
            }
            if let Some(s) = strategy {
                body.insert("strategy".into(), s.into());
            }
            Value::Object(body)
        })
}

/// A connection's spec with every option valid and every secret marked.
fn base_connection(provider: &str) -> Value {
    json!({
        "name": "fuzzed",
        "enabled_clients": [APP],
        "options": {
            "authorizationURL": format!("{provider}/authorize"),
            "tokenURL": format!("{provider}/token"),
            "client_id": "waypass",
            "client_secret": format!("{SECRET_MARK}base"),
            "mapper": "auth0-example",
            "mapper_settings": {"api_key": format!("{SECRET_MARK}setting")},
        }
    })
}

#[test]
fn any_connection_json_is_parsed_or_refused_and_no_answer_shows_a_secret() {
    let rt = runtime();
    let tb = Arc::new(rt.block_on(TestBed::start(|_, _| {})));
    let caller = rt
        .block_on(
            tb.broker
                .api_authenticate(Some(&format!("Bearer {ADMIN_TOKEN}"))),
        )
        .expect("the admin");
    let api = |method: &reqwest::Method, path: &str, body: &Value| {
        rt.block_on(tb.broker.api(waypass::admin::ApiRequest {
            method,
            path,
            query: "",
            caller: caller.clone(),
            content_type: Some("application/json"),
            body: Bytes::from(body.to_string()),
        }))
    };
    let created = api(
        &reqwest::Method::POST,
        "connections",
        &base_connection(tb.provider.origin()),
    );
    assert_eq!(created.status, 201, "{}", created.body);
    let id = serde_json::from_str::<Value>(&created.body).expect("json")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let patch_path = format!("connections/{id}");
    let statuses = std::cell::RefCell::new(std::collections::BTreeMap::new());
    check((connection_body(), any::<bool>()), |(body, create)| {
        // The parsers alone: refusing is fine, panicking is not.
        if let Ok(spec) = serde_json::from_value::<ConnectionSpec>(body.clone()) {
            let shown = serde_json::to_string(&spec).expect("serialises");
            prop_assert!(!shown.contains(SECRET_MARK), "{shown}");
            let debug = format!("{:?}", spec);
            prop_assert!(!debug.contains(SECRET_MARK), "{}", debug);
            let _ = ConnectionSpec::from_stored(spec.to_stored());
            let _ = Connection::new("con_fuzzed".into(), spec);
        }
        // Through the API: create, or PATCH-merge into the stored one.
        let reply = if create {
            api(&reqwest::Method::POST, "connections", &body)
        } else {
            api(&reqwest::Method::PATCH, &patch_path, &body)
        };
        *statuses.borrow_mut().entry(reply.status).or_insert(0u32) += 1;
        prop_assert!(
            [200, 201, 400, 403, 404, 409].contains(&reply.status),
            "{}: {}",
            reply.status,
            reply.body
        );
        prop_assert!(
            !reply.body.contains(SECRET_MARK),
            "a secret in the answer: {}",
            reply.body
        );
        let listed = api(&reqwest::Method::GET, "connections", &Value::Null);
        prop_assert_eq!(listed.status, 200);
        prop_assert!(!listed.body.contains(SECRET_MARK), "{}", listed.body);
        Ok(())
    });
    eprintln!(
        "fuzz: connection API answers by status {:?}",
        statuses.borrow()
    );
}
