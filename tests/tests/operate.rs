//! Operating Waypass (#14): metrics that move with logins, a log of what
//! happened, signing-key rotation.

use openidconnect::reqwest::Method;
use serde_json::{Value, json};
use waypass::dev_provider::{TokenFault, UserinfoFault, default_user};
use waypass_tests::login::{
    ADMIN_TOKEN, APP, APP_CALLBACK, APP_SECRET, Browser, CONNECTION, TestBed, admin_api, api_call,
    client_credentials, http_client, redeem,
};
use waypass_tests::stub::{Reply, Stub};

/// `GET /metrics` on the broker with `token` as the bearer.
async fn scrape(tb: &TestBed, token: Option<&str>) -> (u16, String) {
    let mut req = http_client().get(format!("{}/metrics", tb.issuer));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.expect("scrape");
    (resp.status().as_u16(), resp.text().await.expect("body"))
}

/// The value of the sample whose line starts with `series` (name and
/// labels as printed), or 0 when absent.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.trim().parse().ok())
        })
        .unwrap_or(0.0)
}

/// A full login as [`APP`] through [`CONNECTION`]: authorize, provider,
/// callback, token.
async fn log_in(tb: &TestBed, deny: bool) -> waypass_tests::login::Landing {
    let url = tb.authorize_url(
        APP,
        APP_CALLBACK,
        &[("connection", CONNECTION), ("state", "s1")],
    );
    let landing = Browser::default().login(tb, &url, deny).await;
    if landing.param("code").is_some() {
        let location = landing.location.as_ref().expect("a redirect to the app");
        let tokens = redeem(&tb.issuer, APP, APP_SECRET, APP_CALLBACK, location.as_str()).await;
        assert!(tokens["id_token"].is_string(), "{tokens}");
    }
    landing
}

#[tokio::test]
async fn metrics_need_a_token_with_read_metrics() {
    let tb = TestBed::start(|_, _| {}).await;
    assert_eq!(scrape(&tb, None).await.0, 401);
    assert_eq!(scrape(&tb, Some("not-a-token")).await.0, 401);
    let (status, text) = scrape(&tb, Some(ADMIN_TOKEN)).await;
    assert_eq!(status, 200);
    // The refused scrapes are counted, by route and status.
    assert_eq!(
        sample(
            &text,
            "waypass_http_requests_total{method=\"GET\",route=\"/metrics\",status=\"401\"}"
        ),
        2.0,
        "{text}"
    );
}

#[tokio::test]
async fn a_login_moves_the_login_counter_and_puts_a_sample_in_every_stage_histogram() {
    let tb = TestBed::start(|_, _| {}).await;
    let (_, before) = scrape(&tb, Some(ADMIN_TOKEN)).await;
    let ok = format!(
        "waypass_logins_total{{client_id=\"{APP}\",connection=\"{CONNECTION}\",outcome=\"success\"}}"
    );
    let denied = format!(
        "waypass_logins_total{{client_id=\"{APP}\",connection=\"{CONNECTION}\",outcome=\"access_denied\"}}"
    );
    assert_eq!(sample(&before, &ok), 0.0);

    log_in(&tb, false).await;
    log_in(&tb, true).await;

    let (_, after) = scrape(&tb, Some(ADMIN_TOKEN)).await;
    assert_eq!(sample(&after, &ok), 1.0, "{after}");
    assert_eq!(sample(&after, &denied), 1.0, "{after}");
    for stage in ["authorize", "provider_token", "mapper", "token"] {
        let count = format!("waypass_login_stage_duration_seconds_count{{stage=\"{stage}\"}}");
        assert!(
            sample(&after, &count) >= 1.0,
            "stage {stage} has no sample: {after}"
        );
    }
    assert_eq!(
        sample(
            &after,
            "waypass_profile_calls_total{kind=\"mapper\",name=\"auth0-example\",result=\"ok\",version=\"1\"}"
        ),
        1.0,
        "{after}"
    );
    assert!(
        sample(
            &after,
            "waypass_profile_call_peak_memory_bytes_count{kind=\"mapper\",name=\"auth0-example\"}"
        ) >= 1.0
    );
    assert!(
        sample(
            &after,
            "waypass_egress_requests_total{host=\"127.0.0.1\",result=\"2xx\"}"
        ) >= 1.0,
        "{after}"
    );
    assert!(
        sample(
            &after,
            "waypass_store_operation_duration_seconds_count{operation=\"record_identity_login_with_tokens\",result=\"ok\"}"
        ) >= 1.0
    );
    assert!(
        sample(
            &after,
            "waypass_http_requests_total{method=\"POST\",route=\"/oauth/token\",status=\"200\"}"
        ) >= 1.0,
        "{after}"
    );
    // Exported as a count. Not asserted 0 here: the test binary's beds
    // share one mapper runtime (as a process does), so another test's
    // login may hold a slot while this one scrapes; that a finished call
    // gives its slot back is `mapper_runtime.rs`'s
    // `a_call_holds_a_pool_slot_while_it_runs_and_gives_it_back_however_it_ends`.
    let in_use = after
        .lines()
        .find_map(|l| l.strip_prefix("waypass_mapper_pool_slots_in_use "))
        .and_then(|v| v.trim().parse::<u64>().ok());
    assert!(in_use.is_some(), "slots in use, a count: {after}");
}

#[tokio::test]
async fn raw_paths_never_become_route_labels() {
    let tb = TestBed::start(|_, _| {}).await;
    for i in 0..3 {
        let _ = http_client()
            .get(format!("{}/no-such-page-{i}", tb.issuer))
            .send()
            .await;
    }
    let (_, text) = scrape(&tb, Some(ADMIN_TOKEN)).await;
    assert!(!text.contains("no-such-page"), "{text}");
    assert!(
        sample(
            &text,
            "waypass_http_requests_total{method=\"GET\",route=\"unmatched\",status=\"404\"}"
        ) >= 3.0,
        "{text}"
    );
}

#[tokio::test]
async fn every_metric_the_grafana_dashboard_queries_is_served_after_a_login() {
    let tb = TestBed::start(|_, _| {}).await;
    log_in(&tb, false).await;
    let (_, text) = scrape(&tb, Some(ADMIN_TOKEN)).await;
    let dashboard = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/grafana-dashboard.json"
    ))
    .expect("the dashboard");
    let names: std::collections::BTreeSet<&str> = dashboard
        .match_indices("waypass_")
        .map(|(at, _)| {
            let rest = &dashboard[at..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            &rest[..end]
        })
        .collect();
    assert!(names.len() >= 10, "{names:?}");
    // Egress denials need a denied request; the rest are all there.
    for name in names
        .iter()
        .filter(|n| **n != "waypass_egress_denials_total")
    {
        assert!(
            text.lines().any(|l| l.starts_with(name)),
            "the dashboard queries {name}, which is not served: {text}"
        );
    }
}

// ---- the log of what happened ----

/// `GET /api/v2/logs?{query}` as the admin; the JSON answer.
async fn logs(tb: &TestBed, query: &str) -> Value {
    let (status, body) = admin_api(&tb.issuer, Method::GET, &format!("logs?{query}"), None).await;
    assert_eq!(status, 200, "{body}");
    body
}

fn q(filter: &str) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .append_pair("q", filter)
        .finish()
}

#[tokio::test]
async fn a_successful_login_is_an_s_event_with_the_user_the_app_and_the_browser() {
    let tb = TestBed::start(|_, _| {}).await;
    log_in(&tb, false).await;
    let user_id = format!("oauth2|{CONNECTION}|{}", default_user().uuid);
    let found = logs(&tb, &q(&format!("type:s AND user_id:\"{user_id}\""))).await;
    let events = found.as_array().expect("a list");
    assert_eq!(events.len(), 1, "{found}");
    let e = &events[0];
    assert_eq!(e["type"], "s");
    assert_eq!(e["user_id"], user_id.as_str());
    assert_eq!(e["user_name"], default_user().email.as_str());
    assert_eq!(e["client_id"], APP);
    assert_eq!(e["connection"], CONNECTION);
    assert!(
        e["connection_id"]
            .as_str()
            .is_some_and(|id| id.starts_with("con_")),
        "{e}"
    );
    assert_eq!(e["ip"], "127.0.0.1");
    assert!(e["date"].as_str().is_some_and(|d| d.ends_with('Z')), "{e}");
    // The code exchange that followed is an `seacft` event of the app.
    let exchanged = logs(&tb, &q("type:seacft")).await;
    assert_eq!(exchanged[0]["client_id"], APP, "{exchanged}");
    // One by id.
    let id = e["log_id"].as_str().expect("an id");
    let (status, one) = admin_api(&tb.issuer, Method::GET, &format!("logs/{id}"), None).await;
    assert_eq!(status, 200);
    assert_eq!(&one, e);
    let (status, _) = admin_api(&tb.issuer, Method::GET, "logs/nope", None).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn a_failed_login_is_found_through_the_api_with_its_stage_and_reason() {
    let tb = TestBed::start(|_, _| {}).await;
    // The provider refuses the code exchange.
    tb.provider.set_token_fault(TokenFault::Status(
        400,
        json!({"error": "invalid_grant", "error_description": "code was already used"}).to_string(),
    ));
    let landing = log_in(&tb, false).await;
    assert_eq!(
        landing.param("error").as_deref(),
        Some("server_error"),
        "{landing:?}"
    );
    // The provider's userinfo answers 401: the mapper says "unauthorized".
    tb.provider.set_token_fault(TokenFault::Normal);
    tb.provider
        .set_userinfo_fault(UserinfoFault::Status(401, "{}".into()));
    log_in(&tb, false).await;
    // The user denies at the provider.
    tb.provider.set_userinfo_fault(UserinfoFault::Normal);
    log_in(&tb, true).await;

    let failed = logs(
        &tb,
        &format!(
            "{}&include_totals=true",
            q(&format!("type:f connection:\"{CONNECTION}\""))
        ),
    )
    .await;
    assert_eq!(failed["total"], 3, "{failed}");
    let events = failed["logs"].as_array().expect("logs");
    // Newest first: denied, mapper, provider token.
    let details: Vec<&Value> = events.iter().map(|e| &e["details"]).collect();
    assert_eq!(details[0]["stage"], "provider", "{failed}");
    assert_eq!(details[0]["error"], "access_denied");
    assert_eq!(details[1]["stage"], "mapper", "{failed}");
    // The seed mapper reports the userinfo's 401 as a provider error.
    assert_eq!(details[1]["mapper_error"], "provider", "{failed}");
    assert!(
        details[1]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("unexpected answer from the provider")),
        "{failed}"
    );
    assert_eq!(details[2]["stage"], "provider_token", "{failed}");
    assert!(
        details[2]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("invalid_grant")),
        "the provider's error is the reason: {failed}"
    );
    for e in events {
        assert_eq!(e["client_id"], APP);
        assert_eq!(e["type"], "f");
    }
}

#[tokio::test]
async fn an_authorize_refusal_is_a_failed_login_at_the_authorize_stage() {
    let tb = TestBed::start(|_, _| {}).await;
    let url = tb.authorize_url(
        APP,
        "https://evil.example/cb",
        &[("connection", CONNECTION)],
    );
    let (status, _, _) = Browser::default().get(&url).await;
    assert_eq!(status, 400);
    let failed = logs(&tb, &q("type:f")).await;
    assert_eq!(failed[0]["details"]["stage"], "authorize", "{failed}");
    assert_eq!(failed[0]["client_id"], APP);
}

#[tokio::test]
async fn a_callback_for_an_unknown_login_is_a_failed_login_at_the_callback_stage() {
    let tb = TestBed::start(|_, _| {}).await;
    let url = format!("{}/login/callback?code=c&state=never-issued", tb.issuer);
    let (status, _, _) = Browser::default().get(&url).await;
    assert_eq!(status, 400);
    let failed = logs(&tb, &q("type:f")).await;
    assert_eq!(failed.as_array().map(Vec::len), Some(1), "{failed}");
    assert_eq!(failed[0]["details"]["stage"], "callback", "{failed}");
    assert_eq!(failed[0]["details"]["error"], "invalid_request", "{failed}");
    assert!(
        failed[0]["client_id"].is_null(),
        "the query names no app: {failed}"
    );
}

#[tokio::test]
async fn management_writes_say_who_did_what_and_never_the_secrets() {
    let tb = TestBed::start(|_, _| {}).await;
    let (status, created) = admin_api(
        &tb.issuer,
        Method::POST,
        "clients",
        Some(json!({"name": "Robot", "callbacks": ["https://x.test/cb"], "scopes": ["read:logs", "write:users"]})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let (id, secret) = (
        created["client_id"].as_str().expect("id"),
        created["client_secret"].as_str().expect("secret"),
    );
    let access_token = &client_credentials(&tb.issuer, id, secret, &[]).await;
    let (status, _) = api_call(
        &tb.issuer,
        Method::DELETE,
        "users/nobody",
        Some(access_token),
        None,
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = api_call(
        &tb.issuer,
        Method::DELETE,
        "users/someone",
        Some("bad-token"),
        None,
    )
    .await;
    assert_eq!(status, 401);

    let written = logs(&tb, "").await;
    let text = written.to_string();
    assert!(!text.contains(secret), "{text}");
    assert!(!text.contains(access_token), "{text}");
    let by_robot = written
        .as_array()
        .expect("a list")
        .iter()
        .find(|e| e["details"]["target"] == "nobody")
        .expect("the robot's delete");
    assert_eq!(by_robot["type"], "fapi", "a 404 is a failed write");
    assert_eq!(by_robot["client_id"], id);
    assert_eq!(by_robot["client_name"], "Robot");
    assert_eq!(by_robot["details"]["caller"], id);
    let credentials = logs(&tb, &q("type:seccft")).await;
    assert_eq!(credentials[0]["client_id"], id, "{credentials}");
    let events = written.as_array().expect("a list");
    let sapi = events
        .iter()
        .find(|e| e["type"] == "sapi")
        .expect("an sapi event");
    assert_eq!(sapi["details"]["caller"], "admin");
    assert_eq!(sapi["details"]["method"], "POST");
    assert_eq!(sapi["details"]["path"], "/api/v2/clients");
    assert_eq!(sapi["details"]["status"], 201);
    let fapi = events
        .iter()
        .find(|e| e["details"]["target"] == "someone")
        .expect("an fapi event");
    assert_eq!(fapi["type"], "fapi");
    assert_eq!(fapi["details"]["status"], 401);
    assert!(fapi["details"].get("caller").is_none(), "{fapi}");

    // Whoever calls chooses the path: a long one is cut in the log.
    let long = "x".repeat(4000);
    api_call(
        &tb.issuer,
        Method::DELETE,
        &format!("users/{long}"),
        Some("bad-token"),
        None,
    )
    .await;
    let cut = logs(&tb, "per_page=1").await;
    let path = cut[0]["details"]["path"].as_str().expect("a path");
    assert!(
        path.starts_with("/api/v2/users/xxx") && path.len() <= 600,
        "{path}"
    );
}

#[tokio::test]
async fn logs_need_read_logs_and_are_read_only() {
    let tb = TestBed::start(|_, _| {}).await;
    let (status, _) = api_call(&tb.issuer, Method::GET, "logs", None, None).await;
    assert_eq!(status, 401);
    let (status, _) = admin_api(&tb.issuer, Method::DELETE, "logs/x", None).await;
    assert_eq!(status, 405);
}

#[tokio::test]
async fn logs_are_paged_by_page_and_by_checkpoint() {
    let tb = TestBed::start(|_, _| {}).await;
    for _ in 0..5 {
        log_in(&tb, true).await;
    }
    let page = logs(&tb, "per_page=2&page=1&include_totals=true").await;
    assert_eq!(page["total"], 5, "{page}");
    assert_eq!(page["start"], 2);
    assert_eq!(page["length"], 2);
    let newest_first: Vec<String> = logs(&tb, "per_page=5")
        .await
        .as_array()
        .expect("a list")
        .iter()
        .map(|e| e["log_id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(
        page["logs"][0]["log_id"],
        newest_first[2].as_str(),
        "{page}"
    );
    // From the third-oldest event on, oldest first.
    let after = logs(&tb, &format!("from={}&take=10", newest_first[2])).await;
    let ids: Vec<&str> = after
        .as_array()
        .expect("a list")
        .iter()
        .map(|e| e["log_id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids, [newest_first[1].as_str(), newest_first[0].as_str()]);
    let (status, _) = admin_api(&tb.issuer, Method::GET, "logs?q=description:x", None).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn the_sweep_deletes_log_events_past_their_retention() {
    let tb = TestBed::start(|_, _| {}).await;
    log_in(&tb, true).await;
    assert_eq!(logs(&tb, "").await.as_array().map(Vec::len), Some(1));
    tb.clock
        .advance(u64::from(waypass::events::DEFAULT_LOG_RETENTION_DAYS) * 86_400 + 1);
    let mut sweeps = tb.broker.sweeps();
    let seen = *sweeps.borrow_and_update();
    while *sweeps.borrow_and_update() < seen + 2 {
        sweeps.changed().await.expect("the sweeper runs");
    }
    assert_eq!(logs(&tb, "").await, json!([]));
}

// ---- signing-key rotation ----

/// The JWKS the broker serves now.
async fn jwks(tb: &TestBed) -> Value {
    http_client()
        .get(format!("{}/.well-known/jwks.json", tb.issuer))
        .send()
        .await
        .expect("jwks")
        .json()
        .await
        .expect("json")
}

fn kids(jwks: &Value) -> Vec<String> {
    jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| k["kid"].as_str().expect("kid").to_owned())
        .collect()
}

/// Whether an app holding `jwks` accepts `id_token` (signature, issuer,
/// audience, expiry: a real OpenID Connect client library's checks).
fn app_accepts(tb: &TestBed, jwks: &Value, id_token: &str) -> bool {
    use openidconnect::core::{CoreIdToken, CoreIdTokenVerifier, CoreJsonWebKeySet};
    use openidconnect::{ClientId, ClientSecret, IssuerUrl, Nonce};
    let keys: CoreJsonWebKeySet = serde_json::from_value(jwks.clone()).expect("a JWKS");
    let verifier = CoreIdTokenVerifier::new_confidential_client(
        ClientId::new(APP.into()),
        ClientSecret::new(APP_SECRET.into()),
        IssuerUrl::new(tb.issuer.clone()).expect("issuer"),
        keys,
    );
    let token: CoreIdToken = id_token.parse().expect("a JWT");
    token.claims(&verifier, |_: Option<&Nonce>| Ok(())).is_ok()
}

/// A whole login's id_token.
async fn id_token(tb: &TestBed) -> String {
    let url = tb.authorize_url(APP, APP_CALLBACK, &[("connection", CONNECTION)]);
    let landing = Browser::default().login(tb, &url, false).await;
    let location = landing.location.as_ref().expect("a redirect to the app");
    let tokens = redeem(&tb.issuer, APP, APP_SECRET, APP_CALLBACK, location.as_str()).await;
    tokens["id_token"].as_str().expect("an id_token").to_owned()
}

fn signing_kid(id_token: &str) -> String {
    use base64::Engine as _;
    let header = id_token.split('.').next().expect("a header");
    let header: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(header)
            .expect("base64"),
    )
    .expect("json");
    header["kid"].as_str().expect("kid").to_owned()
}

async fn rotate(tb: &TestBed) -> Value {
    let (status, body) = admin_api(&tb.issuer, Method::POST, "keys/signing/rotate", None).await;
    assert_eq!(status, 201, "{body}");
    body
}

#[tokio::test]
async fn after_a_rotation_old_tokens_validate_until_the_overlap_ends_and_the_next_key_was_published_first()
 {
    let tb = TestBed::start(|_, _| {}).await;
    let before = jwks(&tb).await;
    let old_token = id_token(&tb).await;
    assert!(app_accepts(&tb, &before, &old_token));

    // First rotation: a fresh current key, and next keys published.
    let rotated = rotate(&tb).await;
    let first = jwks(&tb).await;
    let new_token = id_token(&tb).await;
    assert_ne!(signing_kid(&new_token), signing_kid(&old_token));
    assert_eq!(
        rotated["kid"],
        signing_kid(&new_token).as_str(),
        "{rotated}"
    );
    assert!(
        app_accepts(&tb, &first, &old_token),
        "the new JWKS validates old tokens"
    );
    assert!(app_accepts(&tb, &first, &new_token), "and new ones");

    // Second rotation: the next key, published since the first, signs. An
    // app that fetched the JWKS before this rotation already trusts it.
    rotate(&tb).await;
    let next_token = id_token(&tb).await;
    assert!(kids(&first).contains(&signing_kid(&next_token)));
    assert!(app_accepts(&tb, &first, &next_token));

    // The previous keys stay published for the token lifetime, then go.
    let overlap = waypass::broker::TOKEN_TTL.as_secs();
    tb.clock.advance(overlap - 1);
    let during = jwks(&tb).await;
    assert!(kids(&during).contains(&signing_kid(&new_token)));
    assert!(app_accepts(&tb, &during, &new_token));
    tb.clock.advance(1);
    let after = jwks(&tb).await;
    assert!(!kids(&after).contains(&signing_kid(&new_token)), "{after}");
    assert!(!kids(&after).contains(&signing_kid(&old_token)), "{after}");
    assert!(!app_accepts(&tb, &after, &new_token));
    assert!(app_accepts(&tb, &after, &next_token));
}

#[tokio::test]
async fn a_revoked_key_leaves_the_jwks_at_once_and_the_current_key_cannot_be_revoked() {
    let tb = TestBed::start(|_, _| {}).await;
    let old_kid = signing_kid(&id_token(&tb).await);
    rotate(&tb).await;
    assert!(kids(&jwks(&tb).await).contains(&old_kid));
    let (status, body) = admin_api(
        &tb.issuer,
        Method::PUT,
        &format!("keys/signing/{old_kid}/revoke"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["revoked"], true, "{body}");
    assert!(!kids(&jwks(&tb).await).contains(&old_kid));

    let current_kid = signing_kid(&id_token(&tb).await);
    let (status, body) = admin_api(
        &tb.issuer,
        Method::PUT,
        &format!("keys/signing/{current_kid}/revoke"),
        None,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = admin_api(&tb.issuer, Method::PUT, "keys/signing/nope/revoke", None).await;
    assert_eq!(status, 404);

    let (status, listed) = admin_api(&tb.issuer, Method::GET, "keys/signing", None).await;
    assert_eq!(status, 200);
    let states: Vec<(String, bool, bool, bool)> = listed
        .as_array()
        .expect("a list")
        .iter()
        .map(|k| {
            (
                k["kid"].as_str().expect("kid").to_owned(),
                k["current"] == true,
                k["next"] == true,
                k["revoked"] == true,
            )
        })
        .collect();
    assert!(
        states.contains(&(current_kid.clone(), true, false, false)),
        "{listed}"
    );
    assert!(
        states.contains(&(old_kid.clone(), false, false, true)),
        "{listed}"
    );
    assert_eq!(
        states.iter().filter(|s| s.2).count(),
        2,
        "one next key per algorithm"
    );
    let (status, one) = admin_api(
        &tb.issuer,
        Method::GET,
        &format!("keys/signing/{current_kid}"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(one["current"], true);
}

#[tokio::test]
async fn another_instance_on_the_store_serves_the_rotated_keys_once_it_reloads_them() {
    // Two brokers on one store: the second learns of the first's rotation
    // through the store's catalog version, as instances on PostgreSQL do.
    let tb = TestBed::start(|_, _| {}).await;
    rotate(&tb).await;
    let signer = tb.broker.signing_keys();
    let other = waypass::broker::Broker::new(waypass::broker::BrokerParts {
        issuer: tb.issuer.parse().expect("issuer"),
        catalog: tb.broker.catalog().clone(),
        runtime: waypass_tests::login::RUNTIME.clone(),
        store: tb.store.clone(),
        keys: waypass_tests::login::KEYS.clone(),
        clock: tb.clock.clone(),
        random: std::sync::Arc::new(waypass::secret::SystemRandomTokens::default()),
        upstream: waypass::upstream::Upstream::default(),
        admin_token: None,
        limits: waypass::broker::limits::Limits::default(),
    });
    assert_ne!(
        kids_of(&other.signing_keys()),
        kids_of(&signer),
        "before it reloads, the other instance serves the keys it was given"
    );
    other.reload_keys().await.expect("reload");
    assert_eq!(kids_of(&other.signing_keys()), kids_of(&signer));
}

fn kids_of(keys: &[waypass::keys::KeyInfo]) -> Vec<String> {
    keys.iter().map(|k| k.kid.clone()).collect()
}

/// One exported span: trace id, span id, parent span id (empty for a
/// root), name.
type ExportedSpan = (Vec<u8>, Vec<u8>, Vec<u8>, String);

/// The spans an OTLP/HTTP collector received, and every resource's
/// `service.name`.
fn exported_spans(collector: &Stub) -> (Vec<ExportedSpan>, Vec<String>) {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
    use prost::Message as _;
    let mut spans = Vec::new();
    let mut services = Vec::new();
    for request in collector.received() {
        assert_eq!(request.path_and_query, "/v1/traces");
        assert_eq!(
            request.header("content-type"),
            Some("application/x-protobuf")
        );
        let export =
            ExportTraceServiceRequest::decode(request.body.as_slice()).expect("OTLP protobuf");
        for resource_spans in export.resource_spans {
            for attribute in resource_spans.resource.iter().flat_map(|r| &r.attributes) {
                if attribute.key == "service.name"
                    && let Some(AnyValue::StringValue(name)) =
                        attribute.value.as_ref().and_then(|v| v.value.clone())
                {
                    services.push(name);
                }
            }
            for scope_spans in resource_spans.scope_spans {
                for span in scope_spans.spans {
                    spans.push((span.trace_id, span.span_id, span.parent_span_id, span.name));
                }
            }
        }
    }
    (spans, services)
}

/// Sends the broker's finished spans to its collector now.
async fn flush_traces(tb: &TestBed) {
    let telemetry = tb.broker.telemetry().cloned().expect("traces are on");
    tokio::task::spawn_blocking(move || telemetry.flush())
        .await
        .expect("flush task")
        .expect("the spans reach the collector");
}

#[tokio::test]
async fn each_login_is_one_trace_at_the_collector_with_a_span_per_request_and_stage() {
    let collector = Stub::start(|_| Reply::Body(200, String::new())).await;
    let tb = TestBed::start(|_, config| {
        config.otlp_endpoint = Some(collector.url("").parse().expect("url"));
    })
    .await;
    assert!(log_in(&tb, false).await.param("code").is_some());
    assert!(log_in(&tb, false).await.param("code").is_some());
    flush_traces(&tb).await;

    let (spans, services) = exported_spans(&collector);
    assert!(
        !services.is_empty() && services.iter().all(|s| s == "waypass"),
        "{services:?}"
    );
    let mut traces: std::collections::BTreeMap<Vec<u8>, Vec<_>> = Default::default();
    for span in &spans {
        traces.entry(span.0.clone()).or_default().push(span.clone());
    }
    assert_eq!(traces.len(), 2, "two logins, two traces: {spans:?}");
    for trace in traces.values() {
        let mut names: Vec<&str> = trace.iter().map(|s| s.3.as_str()).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            [
                "/authorize",
                "/login/callback",
                "/oauth/token",
                "mapper",
                "provider_token"
            ],
            "{trace:?}"
        );
        let callback = trace
            .iter()
            .find(|s| s.3 == "/login/callback")
            .expect("callback");
        for stage in trace
            .iter()
            .filter(|s| s.3 == "mapper" || s.3 == "provider_token")
        {
            assert_eq!(
                stage.2, callback.1,
                "a stage is a child of its request's span"
            );
        }
        for request in trace.iter().filter(|s| s.3.starts_with('/')) {
            assert!(
                request.2.is_empty(),
                "a request's span is a root of the login's trace"
            );
        }
    }
}

#[tokio::test]
async fn a_collector_that_is_down_fails_no_login() {
    // A port that was bound and released: nothing listens there.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr")
    };
    let tb = TestBed::start(|_, config| {
        config.otlp_endpoint = Some(format!("http://{closed}").parse().expect("url"));
    })
    .await;
    for _ in 0..3 {
        assert!(log_in(&tb, false).await.param("code").is_some());
    }
    let telemetry = tb.broker.telemetry().cloned().expect("traces are on");
    let flushed = tokio::task::spawn_blocking(move || telemetry.flush())
        .await
        .expect("flush task");
    assert!(
        flushed.is_err(),
        "the exporter reports the collector it cannot reach"
    );
}
