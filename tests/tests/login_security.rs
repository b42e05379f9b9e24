//! Attacks on the login itself (RFC 9700): what a browser, an attacker who
//! learned a `state`, or a provider can try, and what stops each.

use std::net::IpAddr;
use std::time::Duration;

use serde_json::{Value, json};
use url::Url;
use waypass::broker::MAX_PARAM_BYTES;
use waypass::broker::limits::{API_FAILURES_PER_IP, Quota, TOKEN_FAILURES_PER_IP};
use waypass::dev_provider::{
    DEFAULT_PASSWORD, DEFAULT_USERNAME, DevProvider, DevProviderHandle, login_request_id,
};
use waypass::store::ShortLivedCounts;
use waypass_tests::login::{
    ADMIN_TOKEN, APP, APP_CALLBACK, APP_SECRET, Browser, CONNECTION, ES_APP, PROVIDER_CLIENT,
    PROVIDER_SECRET, TestBed, connection_spec, http_client, redeem,
};

/// The value of `name` in `url`'s query.
fn query_param(url: &str, name: &str) -> Option<String> {
    Url::parse(url)
        .ok()?
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// A listener for a provider that must be known (its origin in a
/// connection) before the broker it sends users back to is running.
async fn provider_listener() -> (tokio::net::TcpListener, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let origin = format!("http://{}", listener.local_addr().expect("addr"));
    (listener, origin)
}

// ---- the browser binding ----

#[tokio::test(flavor = "multi_thread")]
async fn a_callback_without_the_victims_cookie_does_not_cancel_the_victims_login() {
    let tb = TestBed::start(|_, _| {}).await;
    let mut victim = Browser::default();
    let url = tb.authorize_url(
        APP,
        APP_CALLBACK,
        &[("state", "app-state"), ("connection", CONNECTION)],
    );
    let callback = victim.to_callback(tb.provider.origin(), &url).await;
    let state = query_param(&callback, "state").expect("the provider returns our state");

    // Someone who learned the state (a log, a shoulder, a proxy) but does not
    // hold the victim's cookie answers first, with an error and with a code.
    let mut attacker = Browser::default();
    let forged = [
        format!(
            "{}/login/callback?state={state}&error=access_denied",
            tb.issuer
        ),
        format!("{}/login/callback?state={state}&code=forged", tb.issuer),
    ];
    let mut answers = Vec::new();
    for url in &forged {
        answers.push(attacker.get(url).await);
    }

    // The victim's own callback still completes.
    let (status, location, body) = victim.get(&callback).await;
    assert_eq!(status, 302, "{body}");
    let location = location.expect("to the app");
    assert!(location.starts_with(APP_CALLBACK), "{location}");
    assert!(query_param(&location, "code").is_some(), "{location}");
    assert_eq!(
        query_param(&location, "state").as_deref(),
        Some("app-state")
    );

    // The attacker got a page, not a redirect carrying the app's state.
    for (status, location, body) in answers {
        assert_eq!(status, 400, "{body}");
        assert!(location.is_none(), "no redirect to the app: {location:?}");
        assert!(body.contains("browser"), "{body}");
        assert!(!body.contains("app-state"), "{body}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_https_issuer_binds_the_login_with_a_host_prefixed_secure_cookie() {
    const ISSUER: &str = "https://login.example.test";
    let (listener, origin) = provider_listener().await;
    let tb = TestBed::start(|connections, config| {
        config.issuer = ISSUER.parse().expect("issuer");
        connections.push(connection_spec("secure-idp", &origin));
    })
    .await;
    let _provider = DevProvider::new()
        .with_client(
            PROVIDER_CLIENT,
            PROVIDER_SECRET,
            format!("{ISSUER}/login/callback"),
        )
        .start(listener);
    let url = tb.authorize_url(
        APP,
        APP_CALLBACK,
        &[("state", "app-state"), ("connection", "secure-idp")],
    );

    // What /authorize sets (RFC 6265bis §4.1.3.2: `__Host-` means Secure,
    // Path=/ and no Domain, so no other host or path can plant or read it).
    let resp = http_client().get(&url).send().await.expect("authorize");
    assert_eq!(resp.status().as_u16(), 302);
    let set = resp
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .expect("a binding cookie")
        .to_owned();
    let mut parts = set.split(';').map(str::trim);
    let (name, value) = parts
        .next()
        .and_then(|p| p.split_once('='))
        .expect("name=value");
    let attributes: Vec<String> = parts.map(str::to_ascii_lowercase).collect();
    assert!(name.starts_with("__Host-wp_tx_"), "{set}");
    assert_eq!(value.len(), 43, "a 256-bit random value: {set}");
    for expected in ["secure", "httponly", "path=/", "samesite=lax"] {
        assert!(
            attributes.iter().any(|a| a == expected),
            "{expected}: {set}"
        );
    }
    assert!(!attributes.iter().any(|a| a.starts_with("domain")), "{set}");

    // The whole login with that cookie (the test's browser talks plain HTTP
    // to the broker, which believes it is https://login.example.test).
    let mut browser = Browser::default();
    let callback = browser.to_callback(&origin, &url).await;
    let callback = callback.replacen(ISSUER, &tb.issuer, 1);
    let (status, location, body) = browser.get(&callback).await;
    assert_eq!(status, 302, "{body}");
    let location = location.expect("to the app");
    assert!(query_param(&location, "code").is_some(), "{location}");
    assert!(
        browser
            .cookies
            .keys()
            .all(|k| !k.starts_with("__Host-wp_tx_")),
        "the callback clears the cookie: {:?}",
        browser.cookies
    );
}

// ---- mix-up (RFC 9700 §4.4) ----

/// A second provider for the test bed: bound before the bed starts (its
/// origin goes in a connection), served after (it needs the broker's
/// callback URL).
struct LateProvider {
    listener: tokio::net::TcpListener,
    origin: String,
}

impl LateProvider {
    async fn bind() -> Self {
        let (listener, origin) = provider_listener().await;
        Self { listener, origin }
    }

    fn start(
        self,
        callback: String,
        configure: impl FnOnce(DevProvider) -> DevProvider,
    ) -> DevProviderHandle {
        configure(DevProvider::new().with_client(PROVIDER_CLIENT, PROVIDER_SECRET, callback))
            .start(self.listener)
    }
}

/// The test bed's own provider's origin, read from its connection.
fn origin_of(connection: &Value) -> String {
    connection["options"]["authorizationURL"]
        .as_str()
        .and_then(|u| u.strip_suffix("/authorize"))
        .expect("the provider's authorize URL")
        .to_owned()
}

/// Logs in as ada at a provider's authorization URL and returns where the
/// provider sends the browser back (not followed).
async fn answer_at_provider(browser: &mut Browser, provider: &str, authorize_url: &str) -> String {
    let (status, _, form) = browser.get(authorize_url).await;
    assert_eq!(status, 200, "the provider's login form: {form}");
    let request = login_request_id(&form).expect("a login form").to_owned();
    let req = browser.http.post(format!("{provider}/authorize")).form(&[
        ("request", request.as_str()),
        ("username", DEFAULT_USERNAME),
        ("password", DEFAULT_PASSWORD),
        ("action", "login"),
    ]);
    let (status, location, body) = browser.send(req).await;
    assert_eq!(status, 302, "{body}");
    location.expect("a redirect back")
}

/// The mix-up: the victim picks the attacker's connection; the attacker
/// (who runs provider B, a connection of the same app) sends the browser to
/// the honest provider A instead, with the broker's client id at A, a
/// redirect URI A accepts, and the state of the victim's login with B. A
/// sends its code back with that state; a broker that believes the state
/// alone sends A's code to B's token endpoint. Returns where the victim
/// landed.
async fn mix_up(
    tb: &TestBed,
    victim: &mut Browser,
    honest_origin: &str,
    honest_callback: &str,
    attacker_connection: &str,
) -> (u16, Option<String>, String) {
    let url = tb.authorize_url(
        APP,
        APP_CALLBACK,
        &[("state", "app-state"), ("connection", attacker_connection)],
    );
    let (status, to_attacker, _) = victim.get(&url).await;
    assert_eq!(status, 302);
    let state = query_param(&to_attacker.expect("to the attacker's provider"), "state")
        .expect("the broker's state");
    let mut at_honest = Url::parse(&format!("{honest_origin}/authorize")).expect("url");
    at_honest
        .query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", PROVIDER_CLIENT)
        .append_pair("redirect_uri", honest_callback)
        .append_pair("state", &state);
    let back = answer_at_provider(victim, honest_origin, at_honest.as_str()).await;
    victim.get(&back).await
}

fn assert_refused_to_app(landing: (u16, Option<String>, String), needle: &str) {
    let (status, location, body) = landing;
    assert_eq!(status, 302, "{body}");
    let location = location.expect("back to the app");
    assert!(location.starts_with(APP_CALLBACK), "{location}");
    assert_eq!(
        query_param(&location, "error").as_deref(),
        Some("access_denied"),
        "{location}"
    );
    assert!(query_param(&location, "code").is_none(), "{location}");
    let description = query_param(&location, "error_description").unwrap_or_default();
    assert!(description.contains(needle), "{description}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_code_from_another_provider_is_refused_when_the_connection_names_its_issuer() {
    let attacker = LateProvider::bind().await;
    let attacker_origin = attacker.origin.clone();
    let mut honest_origin = String::new();
    let tb = TestBed::start(|connections, _| {
        honest_origin = origin_of(&connections[0]);
        connections[0]["options"]["issuer"] = json!(honest_origin);
        let mut b = connection_spec("attacker", &attacker_origin);
        b["options"]["issuer"] = json!(attacker_origin);
        connections.push(b);
    })
    .await;
    let attacker = attacker.start(format!("{}/login/callback", tb.issuer), |p| p);
    let mut victim = Browser::default();
    let landing = mix_up(
        &tb,
        &mut victim,
        &honest_origin,
        &format!("{}/login/callback", tb.issuer),
        "attacker",
    )
    .await;
    assert!(
        attacker.requests_to("/token").is_empty(),
        "the honest provider's code never reaches the attacker's token endpoint"
    );
    assert!(tb.provider.requests_to("/token").is_empty());
    assert_refused_to_app(landing, "issuer");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connection_naming_its_issuer_logs_in_when_iss_matches_and_refuses_an_answer_without_iss()
{
    let silent = LateProvider::bind().await;
    let silent_origin = silent.origin.clone();
    let tb = TestBed::start(|connections, _| {
        let honest = origin_of(&connections[0]);
        connections[0]["options"]["issuer"] = json!(honest);
        let mut quiet = connection_spec("no-iss", &silent_origin);
        quiet["options"]["issuer"] = json!(silent_origin);
        connections.push(quiet);
    })
    .await;
    // RFC 9207: a provider that does not send `iss`.
    let silent = silent.start(format!("{}/login/callback", tb.issuer), |p| {
        p.with_issuer_parameter(false)
    });

    let url = tb.authorize_url(APP, APP_CALLBACK, &[("connection", CONNECTION)]);
    let landing = Browser::default().login(&tb, &url, false).await;
    assert!(landing.param("code").is_some(), "iss matches: {landing:?}");

    let url = tb.authorize_url(
        APP,
        APP_CALLBACK,
        &[("state", "app-state"), ("connection", "no-iss")],
    );
    let mut browser = Browser::default();
    let callback = browser.to_callback(&silent_origin, &url).await;
    assert!(query_param(&callback, "iss").is_none(), "{callback}");
    let landing = browser.get(&callback).await;
    assert!(silent.requests_to("/token").is_empty());
    assert_refused_to_app(landing, "no `iss`");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_code_delivered_on_another_connections_callback_path_is_refused() {
    let honest = LateProvider::bind().await;
    let honest_origin = honest.origin.clone();
    let tb = TestBed::start(|connections, _| {
        let mut h = connection_spec("honest", &honest_origin);
        h["options"]["per_connection_callback"] = json!(true);
        connections.push(h);
    })
    .await;
    let honest_callback = format!("{}/login/callback/honest", tb.issuer);
    let _honest = honest.start(honest_callback.clone(), |p| p);
    // The attacker's connection is the test bed's own (shared path, no
    // issuer configured): the honest provider's own path alone stops it.
    let mut victim = Browser::default();
    let landing = mix_up(
        &tb,
        &mut victim,
        &honest_origin,
        &honest_callback,
        CONNECTION,
    )
    .await;
    assert!(
        tb.provider.requests_to("/token").is_empty(),
        "the honest provider's code never reaches the other token endpoint"
    );
    assert_refused_to_app(landing, "another connection's callback");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_per_connection_callback_logs_in_on_its_own_path_and_refuses_the_shared_one() {
    let own = LateProvider::bind().await;
    let own_origin = own.origin.clone();
    let tb = TestBed::start(|connections, _| {
        let mut c = connection_spec("own-path", &own_origin);
        c["options"]["per_connection_callback"] = json!(true);
        connections.push(c);
    })
    .await;
    let own = own.start(format!("{}/login/callback/own-path", tb.issuer), |p| p);
    let url = tb.authorize_url(
        APP,
        APP_CALLBACK,
        &[("state", "app-state"), ("connection", "own-path")],
    );
    let landing = Browser::default()
        .login_at(&tb.issuer, &own_origin, &url, false)
        .await;
    assert!(landing.param("code").is_some(), "{landing:?}");
    let sent = own.requests_to("/authorize")[0]
        .query_param("redirect_uri")
        .map(str::to_owned);
    assert_eq!(
        sent.as_deref(),
        Some(format!("{}/login/callback/own-path", tb.issuer).as_str())
    );
    assert_eq!(own.requests_to("/token").len(), 1);

    // The same provider's answer, moved to the shared path, is refused.
    let mut browser = Browser::default();
    let callback = browser.to_callback(&own_origin, &url).await;
    let moved = callback.replacen("/login/callback/own-path?", "/login/callback?", 1);
    assert_ne!(moved, callback);
    let landing = browser.get(&moved).await;
    assert_refused_to_app(landing, "another connection's callback");
    assert_eq!(own.requests_to("/token").len(), 1, "no second exchange");
}

// ---- what an unauthenticated caller can make the broker hold ----

#[tokio::test(flavor = "multi_thread")]
async fn oversized_authorize_parameters_are_refused_and_nothing_is_stored() {
    let tb = TestBed::start(|_, _| {}).await;
    let big = "x".repeat(MAX_PARAM_BYTES + 1);
    let scope = format!("openid {big}");
    let long_challenge = "A".repeat(129);
    let short_challenge = "A".repeat(42);
    let odd_challenge = "!".repeat(43);
    let cases: [(&str, &str); 6] = [
        ("state", &big),
        ("nonce", &big),
        ("scope", &scope),
        ("code_challenge", &long_challenge),
        ("code_challenge", &short_challenge),
        ("code_challenge", &odd_challenge),
    ];
    let http = http_client();
    for (name, value) in cases {
        let mut params = vec![("connection", CONNECTION), (name, value)];
        if name != "state" {
            params.push(("state", "app-state"));
        }
        if name == "code_challenge" {
            params.push(("code_challenge_method", "S256"));
        }
        let url = tb.authorize_url(APP, APP_CALLBACK, &params);
        // A flood: each is refused the same way.
        for _ in 0..20 {
            let resp = http.get(&url).send().await.expect("authorize");
            assert_eq!(resp.status().as_u16(), 302, "{name}");
            assert!(resp.headers().get("set-cookie").is_none(), "{name}");
            let location = resp
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .expect("location")
                .to_owned();
            assert!(location.starts_with(APP_CALLBACK), "{name}: {location}");
            assert_eq!(
                query_param(&location, "error").as_deref(),
                Some("invalid_request"),
                "{name}: {location}"
            );
            let expected_state = (name != "state").then_some("app-state");
            assert_eq!(
                query_param(&location, "state").as_deref(),
                expected_state,
                "an oversized state is not echoed back"
            );
        }
    }
    assert_eq!(
        tb.store.short_lived_counts(),
        ShortLivedCounts::default(),
        "nothing was stored"
    );

    // At the bound itself, the login starts.
    let at_bound = "x".repeat(MAX_PARAM_BYTES);
    let url = tb.authorize_url(
        APP,
        APP_CALLBACK,
        &[("connection", CONNECTION), ("state", &at_bound)],
    );
    let (status, location, _) = Browser::default().get(&url).await;
    assert_eq!(status, 302);
    assert!(
        location.is_some_and(|l| l.starts_with(tb.provider.origin())),
        "to the provider"
    );
    assert_eq!(tb.store.short_lived_counts().transactions, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn logins_in_flight_stop_at_the_bound_with_temporarily_unavailable() {
    const BOUND: usize = 5;
    let tb = TestBed::start(|_, config| config.limits.max_outstanding_logins = BOUND).await;
    let url = tb.authorize_url(
        APP,
        APP_CALLBACK,
        &[("connection", CONNECTION), ("state", "app-state")],
    );
    let http = http_client();
    let mut started = 0;
    let mut refused = Vec::new();
    for _ in 0..(BOUND + 20) {
        let resp = http.get(&url).send().await.expect("authorize");
        let location = resp
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        if location.starts_with(tb.provider.origin()) {
            started += 1;
        } else {
            refused.push(location);
        }
    }
    assert_eq!(started, BOUND);
    assert_eq!(refused.len(), 20);
    for location in &refused {
        assert!(location.starts_with(APP_CALLBACK), "{location}");
        assert_eq!(
            query_param(location, "error").as_deref(),
            Some("temporarily_unavailable"),
            "{location}"
        );
        assert_eq!(query_param(location, "state").as_deref(), Some("app-state"));
    }
    assert_eq!(tb.store.short_lived_counts().transactions, BOUND);

    // When they expire, there is room again.
    tb.clock
        .advance(waypass::broker::LOGIN_TRANSACTION_TTL.as_secs());
    let (_, location, _) = Browser::default().get(&url).await;
    assert!(location.is_some_and(|l| l.starts_with(tb.provider.origin())));
}

/// Waits until the broker has completed `n` more sweeps than when called.
async fn sweeps_after(tb: &TestBed, n: u64) {
    let mut sweeps = tb.broker.sweeps();
    let start = *sweeps.borrow_and_update();
    tokio::time::timeout(Duration::from_secs(30), async {
        while *sweeps.borrow_and_update() < start + n {
            sweeps.changed().await.expect("the broker is running");
        }
    })
    .await
    .expect("the sweep timer runs");
}

#[tokio::test(flavor = "multi_thread")]
async fn expired_logins_codes_and_tokens_disappear_on_the_sweep_timer() {
    let tb = TestBed::start(|_, _| {}).await;
    // A login abandoned at the provider, a code never redeemed, a token.
    let url = tb.authorize_url(APP, APP_CALLBACK, &[("connection", CONNECTION)]);
    let (status, _, _) = Browser::default().get(&url).await;
    assert_eq!(status, 302);
    let unredeemed = Browser::default().login(&tb, &url, false).await;
    assert!(unredeemed.param("code").is_some());
    let redeemed = Browser::default().login(&tb, &url, false).await;
    let back = redeemed.location.expect("to the app");
    let tokens = redeem(&tb.issuer, APP, APP_SECRET, APP_CALLBACK, back.as_str()).await;
    assert!(tokens["access_token"].is_string(), "{tokens}");
    sweeps_after(&tb, 2).await;
    assert_eq!(
        tb.store.short_lived_counts(),
        ShortLivedCounts {
            transactions: 1,
            codes: 1,
            tokens: 1
        },
        "the sweep keeps what is still valid"
    );

    // Past every lifetime (the access token's is the longest).
    tb.clock.advance(waypass::broker::TOKEN_TTL.as_secs());
    // Two sweeps: the first may have read the clock before it moved.
    sweeps_after(&tb, 2).await;
    assert_eq!(tb.store.short_lived_counts(), ShortLivedCounts::default());
}

// ---- rate limits ----

/// An HTTP client whose requests come from `local` (any 127.0.0.0/8
/// address is this host's loopback).
fn client_from(local: &str) -> reqwest::Client {
    reqwest::ClientBuilder::new()
        .redirect(reqwest::redirect::Policy::none())
        .local_address(local.parse::<IpAddr>().expect("ip"))
        .build()
        .expect("http client")
}

async fn token_attempt(
    http: &reqwest::Client,
    tb: &TestBed,
    client_id: &str,
    secret: &str,
    forwarded_for: Option<&str>,
) -> (u16, Option<u64>, Value) {
    let mut req = http
        .post(format!("{}/oauth/token", tb.issuer))
        .basic_auth(client_id, Some(secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", "guessed"),
            ("redirect_uri", APP_CALLBACK),
        ]);
    if let Some(xff) = forwarded_for {
        req = req.header("x-forwarded-for", xff);
    }
    let resp = req.send().await.expect("token request");
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    (
        status,
        retry_after,
        resp.json().await.unwrap_or(Value::Null),
    )
}

/// Requests regained during a test of a few seconds, at most: rate limits
/// refill per minute, so a generous margin keeps the count exact enough on
/// a loaded machine.
const REFILL_MARGIN: usize = 20;

/// Sends failing attempts until one is answered 429; returns how many were
/// answered 401 first, and the 429's Retry-After.
async fn fail_until_429(
    mut attempt: impl AsyncFnMut(usize) -> (u16, Option<u64>, Value),
    burst: usize,
) -> (usize, u64) {
    let mut failures = 0;
    for i in 0..(burst + REFILL_MARGIN) {
        let (status, retry_after, body) = attempt(i).await;
        match status {
            401 => failures += 1,
            429 => {
                let retry_after = retry_after.expect("a 429 says when to retry");
                assert!(retry_after >= 1, "{retry_after}");
                return (failures, retry_after);
            }
            other => panic!("attempt {i}: {other} {body}"),
        }
    }
    panic!("no 429 after {} failures", burst + REFILL_MARGIN);
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_client_authentications_from_one_address_get_429_and_another_address_does_not() {
    let tb = TestBed::start(|_, config| config.limits.rate.enabled = true).await;
    let burst = TOKEN_FAILURES_PER_IP.burst as usize;
    let attacker = client_from("127.0.0.1");
    // An id nobody registered: only the address's bucket counts it.
    let (failures, _) = fail_until_429(
        async |_| token_attempt(&attacker, &tb, "guessed-client", "guess", None).await,
        burst,
    )
    .await;
    assert!(
        (burst..burst + REFILL_MARGIN).contains(&failures),
        "{failures} failures answered before the first 429"
    );
    // From that address even the right secret is not checked any more…
    let (status, retry_after, body) = token_attempt(&attacker, &tb, APP, APP_SECRET, None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (429, Some("temporarily_unavailable"))
    );
    assert!(retry_after.is_some_and(|s| s >= 1));
    // …while another address is served: wrong secrets are 401, the app's
    // own secret authenticates (and the guessed code is invalid_grant).
    let other = client_from("127.0.0.2");
    let (status, _, _) = token_attempt(&other, &tb, ES_APP, "wrong", None).await;
    assert_eq!(status, 401);
    let (status, _, body) = token_attempt(&other, &tb, APP, APP_SECRET, None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_forged_x_forwarded_for_does_not_escape_the_limit_of_the_address() {
    let tb = TestBed::start(|_, config| config.limits.rate.enabled = true).await;
    let burst = TOKEN_FAILURES_PER_IP.burst as usize;
    let http = http_client();
    let (failures, _) = fail_until_429(
        async |i| {
            let forged = format!("203.0.113.{}", i % 250);
            token_attempt(&http, &tb, "guessed-client", "guess", Some(&forged)).await
        },
        burst,
    )
    .await;
    assert!(
        (burst..burst + REFILL_MARGIN).contains(&failures),
        "{failures}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_authentications_of_one_client_from_many_addresses_get_429_behind_a_trusted_proxy() {
    let tb = TestBed::start(|_, config| {
        config.limits.rate.enabled = true;
        config.limits.trusted_proxies = vec!["127.0.0.1".into()];
    })
    .await;
    let burst = waypass::broker::limits::TOKEN_FAILURES_PER_CLIENT.burst as usize;
    let proxy = http_client();
    // Each attempt from another address, as the trusted proxy says.
    let (failures, _) = fail_until_429(
        async |i| {
            let client = format!("198.51.100.{}, 203.0.113.{}", i % 250, i % 250);
            token_attempt(&proxy, &tb, APP, "guess", Some(&client)).await
        },
        burst,
    )
    .await;
    assert!(
        (burst..burst + REFILL_MARGIN).contains(&failures),
        "{failures}"
    );
    // Another app, through the same proxy from yet another address, is served.
    let (status, _, _) = token_attempt(&proxy, &tb, ES_APP, "wrong", Some("192.0.2.1")).await;
    assert_eq!(status, 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn failed_management_api_authentications_get_429_and_the_admin_elsewhere_is_served() {
    let tb = TestBed::start(|_, config| config.limits.rate.enabled = true).await;
    let burst = API_FAILURES_PER_IP.burst as usize;
    let attacker = client_from("127.0.0.1");
    let (failures, _) = fail_until_429(
        async |i| {
            let resp = attacker
                .get(format!("{}/api/v2/connections", tb.issuer))
                .bearer_auth(format!("guessed-token-{i}"))
                .send()
                .await
                .expect("api request");
            let status = resp.status().as_u16();
            let retry_after = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok());
            (
                status,
                retry_after,
                resp.json().await.unwrap_or(Value::Null),
            )
        },
        burst,
    )
    .await;
    assert!(
        (burst..burst + REFILL_MARGIN).contains(&failures),
        "{failures}"
    );
    let resp = client_from("127.0.0.2")
        .get(format!("{}/api/v2/connections", tb.issuer))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("api request");
    assert_eq!(resp.status().as_u16(), 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_authorize_flood_from_one_address_gets_429_with_retry_after() {
    const QUOTA: Quota = Quota {
        burst: 5,
        per_minute: 1,
    };
    let tb = TestBed::start(|_, config| {
        config.limits.rate.enabled = true;
        config.limits.rate.authorize_per_ip = QUOTA;
    })
    .await;
    let url = tb.authorize_url(APP, APP_CALLBACK, &[("connection", CONNECTION)]);
    let flooder = client_from("127.0.0.1");
    for i in 0..QUOTA.burst {
        let resp = flooder.get(&url).send().await.expect("authorize");
        assert_eq!(resp.status().as_u16(), 302, "request {i}");
    }
    let resp = flooder.get(&url).send().await.expect("authorize");
    assert_eq!(resp.status().as_u16(), 429);
    let retry_after: u64 = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After");
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    assert!(
        resp.text()
            .await
            .expect("page")
            .contains("temporarily_unavailable")
    );
    assert_eq!(
        tb.store.short_lived_counts().transactions,
        QUOTA.burst as usize,
        "the refused request stored nothing"
    );
    let resp = client_from("127.0.0.2")
        .get(&url)
        .send()
        .await
        .expect("authorize");
    assert_eq!(resp.status().as_u16(), 302, "another address is served");
}
