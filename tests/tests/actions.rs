//! Post-login Actions end to end: deployed and bound through the
//! management API, run in real logins through the development provider,
//! their claims read by the app's OpenID Connect client.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use openidconnect::OAuth2TokenResponse as _;
use openidconnect::TokenResponse as _;
use openidconnect::core::CoreJwsSigningAlgorithm;
use openidconnect::reqwest::Method;
use serde_json::{Value, json};
use waypass::broker::Clock as _;
use waypass::secret::SecretHash;
use waypass::store::Store as _;
use waypass_tests::actions::{self, bind, id_token_claims, login, upload, user_domain, user_id};
use waypass_tests::guests;
use waypass_tests::login::{
    APP, APP_CALLBACK, APP_SECRET, Browser, CONNECTION, Landing, TestBed, admin_api, http_client,
    jwt_claims, redeem,
};
use waypass_tests::oidc::{code_flow, oidc_client};
use waypass_tests::stub::{Reply, Stub};

/// Creates an Action named `name` with `secrets` (and `extra` fields),
/// uploads `wasm` as its component and deploys it; returns its id.
async fn deploy(tb: &TestBed, name: &str, wasm: &str, secrets: Value, extra: Value) -> String {
    let mut fields = json!({"secrets": secrets});
    if let (Some(fields), Some(extra)) = (fields.as_object_mut(), extra.as_object()) {
        fields.extend(extra.clone());
    }
    let id = actions::create(tb, name, fields).await;
    upload(tb, &id, wasm).await;
    actions::deploy(tb, &id).await;
    id
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rust_action_adds_a_namespaced_claim_that_the_apps_oidc_client_verifies_in_the_id_token()
{
    let tb = TestBed::start(|_, _| {}).await;
    let id = deploy(
        &tb,
        "roles",
        guests::ACTION_PROBE,
        json!([{"name": "claim", "value": "https://waypass.test/roles=[\"admin\"]"}]),
        json!({}),
    )
    .await;
    bind(&tb, &[&id]).await;

    let client = oidc_client(&tb, APP, Some(APP_SECRET), APP_CALLBACK).await;
    let (tokens, claims) = code_flow(
        &tb,
        &client,
        &["email"],
        CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
    )
    .await;
    let id_token = tokens.id_token().expect("an id_token");
    assert_eq!(
        claims.subject().as_str(),
        user_id(),
        "`sub` is not the Action's"
    );

    // The verified token's own claims, custom ones included.
    let payload = jwt_claims(&id_token.to_string());
    assert_eq!(payload["https://waypass.test/roles"], json!(["admin"]));
    assert_eq!(payload["https://waypass.test/probe"], "action-probe");
    assert_eq!(payload["sub"], user_id(), "a restricted claim is left out");

    // The access token's grant carries the Action's access-token claim.
    let grant = tb
        .store
        .get_access_token(
            SecretHash::of(tokens.access_token().secret()),
            tb.clock.now(),
        )
        .await
        .expect("memory store")
        .expect("the access token is stored");
    assert_eq!(grant.claims["https://waypass.test/roles"], json!(["admin"]));
    assert!(
        !grant.claims.contains_key("https://waypass.test/probe"),
        "id_token only"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_action_denying_by_email_domain_sends_access_denied_with_its_reason_and_no_metadata_is_written()
 {
    let tb = TestBed::start(|_, _| {}).await;
    let first = deploy(
        &tb,
        "tagger",
        guests::ACTION_PROBE,
        json!([{"name": "metadata", "value": "plan=\"gold\""}]),
        json!({}),
    )
    .await;
    let denier = deploy(
        &tb,
        "domain-gate",
        guests::ACTION_PROBE,
        json!([{"name": "deny_domain", "value": user_domain()}]),
        json!({}),
    )
    .await;
    bind(&tb, &[&first, &denier]).await;

    let landing = login(&tb).await;
    assert!(
        landing
            .location
            .as_ref()
            .is_some_and(|l| l.as_str().starts_with(APP_CALLBACK)),
        "{landing:?}"
    );
    assert_eq!(landing.param("error").as_deref(), Some("access_denied"));
    assert_eq!(
        landing.param("error_description"),
        Some(format!("users of {} may not log in", user_domain()))
    );
    assert_eq!(landing.param("code"), None);
    let user = tb.broker_user(&user_id()).await.expect("the user is known");
    assert!(
        user.app_metadata.is_empty(),
        "the first Action's metadata is not written: {:?}",
        user.app_metadata
    );

    // Without the gate, the same login writes the first Action's metadata.
    bind(&tb, &[&first]).await;
    let landing = login(&tb).await;
    assert!(landing.param("code").is_some(), "{landing:?}");
    let user = tb.broker_user(&user_id()).await.expect("the user");
    assert_eq!(user.app_metadata["plan"], "gold");
}

/// An HTTP service on 127.0.0.1:0 answering every request with `body`.
async fn answering(body: &'static str) -> Stub {
    Stub::start(move |_| {
        Reply::Full(
            200,
            vec![("content-type", "text/plain".into())],
            body.into(),
        )
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn an_action_asks_an_allowed_http_api_and_its_answer_decides_the_login() {
    let tb = TestBed::start(|_, _| {}).await;
    let yes = answering("allow").await;
    let no = answering("refuse").await;
    let egress = |origin: &str| json!({"egress": {"allowed_hosts": [origin], "allow_private_networks": true}});
    let allowing = deploy(
        &tb,
        "check-yes",
        guests::ACTION_PROBE,
        json!([{"name": "check_url", "value": yes.url("/decide")}]),
        egress(&yes.url("")),
    )
    .await;
    let refusing = deploy(
        &tb,
        "check-no",
        guests::ACTION_PROBE,
        json!([{"name": "check_url", "value": no.url("/decide")}]),
        egress(&no.url("")),
    )
    .await;

    bind(&tb, &[&allowing]).await;
    let landing = login(&tb).await;
    assert!(landing.param("code").is_some(), "allowed: {landing:?}");

    bind(&tb, &[&refusing]).await;
    let landing = login(&tb).await;
    assert_eq!(landing.param("error").as_deref(), Some("access_denied"));
    assert_eq!(
        landing.param("error_description").as_deref(),
        Some("the check service said no")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_actions_fail_the_login_cleanly_and_the_next_login_is_served() {
    let tb = TestBed::start(|_, _| {}).await;
    let off_list = answering("allow").await;
    let cases = [
        (
            "spinner",
            json!([{"name": "mode", "value": "loop"}]),
            json!({"timeout_ms": 300}),
            "did not finish within its 300 ms deadline",
        ),
        (
            "hoarder",
            json!([{"name": "mode", "value": "memory"}]),
            json!({}),
            "memory limit",
        ),
        (
            "failing",
            json!([{"name": "mode", "value": "fail"}]),
            json!({}),
            "failing on purpose",
        ),
        // No allow-list: the egress policy refuses the host.
        (
            "snooper",
            json!([{"name": "check_url", "value": off_list.url("/x")}]),
            json!({}),
            "cannot be reached",
        ),
    ];
    let fine = deploy(&tb, "fine", guests::ACTION_PROBE, json!([]), json!({})).await;
    for (name, secrets, extra, expected) in cases {
        let id = deploy(&tb, name, guests::ACTION_PROBE, secrets, extra).await;
        bind(&tb, &[&id]).await;
        let landing = login(&tb).await;
        assert!(
            landing
                .location
                .as_ref()
                .is_some_and(|l| l.as_str().starts_with(APP_CALLBACK)),
            "{name}: {landing:?}"
        );
        assert_eq!(
            landing.param("error").as_deref(),
            Some("server_error"),
            "{name}"
        );
        let description = landing.param("error_description").unwrap_or_default();
        assert!(
            description.contains(&format!("post-login action `{name}` failed"))
                && description.contains(expected),
            "{name}: {description}"
        );
        assert_eq!(landing.param("code"), None, "{name}");

        bind(&tb, &[&fine]).await;
        let landing = login(&tb).await;
        assert!(landing.param("code").is_some(), "after {name}: {landing:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bound_actions_run_in_the_bound_order_and_a_new_order_serves_the_next_login() {
    let tb = TestBed::start(|_, _| {}).await;
    let first = deploy(
        &tb,
        "first",
        guests::ACTION_PROBE,
        json!([{"name": "order", "value": "first"}]),
        json!({}),
    )
    .await;
    let second = deploy(
        &tb,
        "second",
        guests::ACTION_PROBE,
        json!([{"name": "order", "value": "second"}]),
        json!({}),
    )
    .await;
    bind(&tb, &[&first, &second]).await;
    let claims = id_token_claims(&tb, &login(&tb).await).await;
    assert_eq!(
        claims["https://waypass.test/order"],
        json!(["first", "second"]),
        "the second saw the first's metadata"
    );
    bind(&tb, &[&second, &first]).await;
    let claims = id_token_claims(&tb, &login(&tb).await).await;
    assert_eq!(
        claims["https://waypass.test/order"],
        json!(["first", "second", "second", "first"])
    );
    let user = tb.broker_user(&user_id()).await.expect("the user");
    assert_eq!(
        user.app_metadata["order"],
        json!(["first", "second", "second", "first"])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn swapping_an_actions_version_serves_the_next_login_and_fails_no_login_under_load() {
    let tb = Arc::new(TestBed::start(|_, _| {}).await);
    let id = deploy(&tb, "swapped", guests::ACTION_PROBE, json!([]), json!({})).await;
    bind(&tb, &[&id]).await;
    let probe = |claims: &Value| claims["https://waypass.test/probe"].clone();
    assert_eq!(
        probe(&id_token_claims(&tb, &login(&tb).await).await),
        "action-probe"
    );
    upload(&tb, &id, guests::ACTION_PROBE_TWO).await;
    let (status, v2) = admin_api(
        &tb.issuer,
        Method::POST,
        &format!("actions/actions/{id}/deploy"),
        None,
    )
    .await;
    assert_eq!((status, v2["number"].as_u64()), (200, Some(2)), "{v2}");
    assert_eq!(
        probe(&id_token_claims(&tb, &login(&tb).await).await),
        "action-probe-two",
        "the deploy serves the next login"
    );

    // Logins in a loop while the versions swap back and forth.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut workers = Vec::new();
    for _ in 0..3 {
        let (tb, stop, ok, failed) = (tb.clone(), stop.clone(), ok.clone(), failed.clone());
        workers.push(tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let landing = login(&tb).await;
                if landing.param("code").is_some() {
                    ok.fetch_add(1, Ordering::SeqCst);
                } else {
                    failed.fetch_add(1, Ordering::SeqCst);
                    eprintln!("failed login: {landing:?}");
                }
            }
        }));
    }
    for round in 0..10 {
        let version = if round % 2 == 0 { 1 } else { 2 };
        let (status, body) = admin_api(
            &tb.issuer,
            Method::POST,
            &format!("actions/actions/{id}/versions/{version}/deploy"),
            None,
        )
        .await;
        assert_eq!(status, 200, "{body}");
        // Each swap waits for a login served after it.
        let before = ok.load(Ordering::SeqCst);
        while ok.load(Ordering::SeqCst) < before + 2 && failed.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
    }
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.await.expect("worker");
    }
    assert_eq!(failed.load(Ordering::SeqCst), 0, "no login failed");
    assert!(ok.load(Ordering::SeqCst) >= 20);
    // The last swap (version 2) serves the next login.
    assert_eq!(
        probe(&id_token_claims(&tb, &login(&tb).await).await),
        "action-probe-two"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_actions_api_lists_versions_rolls_back_tests_with_an_event_and_refuses_what_it_cannot_run()
 {
    let tb = TestBed::start(|_, _| {}).await;
    let (status, body) = admin_api(
        &tb.issuer,
        Method::POST,
        "actions/actions",
        Some(
            json!({"name": "js", "supported_triggers": [{"id": "post-login"}],
                    "code": "exports.onExecutePostLogin = async () => {}", "runtime": "python3"}),
        ),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("not available"),
        "{body}"
    );

    let (status, created) = admin_api(
        &tb.issuer,
        Method::POST,
        "actions/actions",
        Some(
            json!({"name": "probe", "supported_triggers": [{"id": "post-login"}],
                    "secrets": [{"name": "claim", "value": "https://x.test/c=1"}]}),
        ),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().expect("id").to_owned();
    assert!(
        created["secrets"][0].get("value").is_none(),
        "secret values are never shown"
    );

    // Nothing to deploy or bind yet.
    let (status, _) = admin_api(
        &tb.issuer,
        Method::POST,
        &format!("actions/actions/{id}/deploy"),
        None,
    )
    .await;
    assert_eq!(status, 409);
    let (status, body) = admin_api(
        &tb.issuer,
        Method::PATCH,
        "actions/triggers/post-login/bindings",
        Some(json!({"bindings": [{"ref": {"type": "action_name", "value": "probe"}}]})),
    )
    .await;
    assert_eq!(status, 400, "{body}");

    // A mapper is not an Action.
    let (status, text) =
        actions::put_component(&tb, &id, guests::bytes(guests::AUTH0_EXAMPLE)).await;
    assert_eq!(status, 422);
    assert!(text.contains("waypass:action/post-login"), "{text}");

    upload(&tb, &id, guests::ACTION_PROBE).await;
    for _ in 0..2 {
        let (status, _) = admin_api(
            &tb.issuer,
            Method::POST,
            &format!("actions/actions/{id}/deploy"),
            None,
        )
        .await;
        assert_eq!(status, 200);
    }
    let (status, versions) = admin_api(
        &tb.issuer,
        Method::GET,
        &format!("actions/actions/{id}/versions"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(versions["total"], 2);
    assert_eq!(versions["versions"][0]["number"], 2);
    assert_eq!(versions["versions"][0]["deployed"], true);
    let (status, rolled) = admin_api(
        &tb.issuer,
        Method::POST,
        &format!("actions/actions/{id}/versions/1/deploy"),
        None,
    )
    .await;
    assert_eq!((status, rolled["number"].as_u64()), (200, Some(1)));
    let (_, got) = admin_api(
        &tb.issuer,
        Method::GET,
        &format!("actions/actions/{id}"),
        None,
    )
    .await;
    assert_eq!(got["deployed_version"], 1);

    let (status, tested) = admin_api(
        &tb.issuer,
        Method::POST,
        &format!("actions/actions/{id}/test"),
        Some(json!({"payload": {
            "user": {"user_id": "oauth2|c|1", "email": "a@b.test"},
            "client": {"client_id": "app"},
            "connection": {"name": "c"}
        }})),
    )
    .await;
    assert_eq!(status, 200, "{tested}");
    assert_eq!(tested["result"]["outcome"], "proceed", "{tested}");
    assert_eq!(tested["result"]["id_token_claims"]["https://x.test/c"], 1);
    assert_eq!(tested["result"]["dropped_claims"], json!(["sub"]));

    bind(&tb, &[&id]).await;
    let (status, bindings) = admin_api(
        &tb.issuer,
        Method::GET,
        "actions/triggers/post-login/bindings",
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(bindings["bindings"][0]["action"]["name"], "probe");
    let (status, _) = admin_api(
        &tb.issuer,
        Method::DELETE,
        &format!("actions/actions/{id}"),
        None,
    )
    .await;
    assert_eq!(status, 409, "bound: refused without force");
    let (status, _) = admin_api(
        &tb.issuer,
        Method::DELETE,
        &format!("actions/actions/{id}?force=true"),
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (_, bindings) = admin_api(
        &tb.issuer,
        Method::GET,
        "actions/triggers/post-login/bindings",
        None,
    )
    .await;
    assert_eq!(bindings["total"], 0);
    let landing = login(&tb).await;
    assert!(
        landing.param("code").is_some(),
        "no binding left: {landing:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_users_metadata_is_patched_with_auth0s_merge() {
    let tb = TestBed::start(|_, _| {}).await;
    assert!(login(&tb).await.param("code").is_some());
    let path = format!("users/{}", user_id().replace('|', "%7C"));
    let (status, user) = admin_api(
        &tb.issuer,
        Method::PATCH,
        &path,
        Some(
            json!({"app_metadata": {"plan": "gold", "old": 1}, "user_metadata": {"theme": "dark"}}),
        ),
    )
    .await;
    assert_eq!(status, 200, "{user}");
    let (status, user) = admin_api(
        &tb.issuer,
        Method::PATCH,
        &path,
        Some(json!({"app_metadata": {"old": null, "roles": ["a"]}})),
    )
    .await;
    assert_eq!(status, 200, "{user}");
    assert_eq!(
        user["app_metadata"],
        json!({"plan": "gold", "roles": ["a"]})
    );
    assert_eq!(user["user_metadata"], json!({"theme": "dark"}));
    let (status, _) = admin_api(
        &tb.issuer,
        Method::PATCH,
        &path,
        Some(json!({"email": "x@y.test"})),
    )
    .await;
    assert_eq!(status, 400, "only metadata is writable");
    let (status, _) = admin_api(
        &tb.issuer,
        Method::PATCH,
        "users/nobody",
        Some(json!({"app_metadata": {}})),
    )
    .await;
    assert_eq!(status, 404);
}

/// `grant_type=refresh_token` for [`APP`] with its Basic credentials.
async fn refresh(tb: &TestBed, refresh_token: &str) -> (u16, Value) {
    let resp = http_client()
        .post(format!("{}/oauth/token", tb.issuer))
        .basic_auth(APP, Some(APP_SECRET))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ])
        .send()
        .await
        .expect("token request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// A claim of the id_token in a token response.
fn id_token_claim(tokens: &Value, name: &str) -> Value {
    let id_token = tokens["id_token"].as_str().expect("an id_token");
    jwt_claims(id_token)[name].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn bound_actions_run_on_single_sign_on_and_refresh_and_their_deny_reaches_the_app_there_too()
{
    const TIER: &str = "https://waypass.test/tier";
    let tb = TestBed::start(|_, _| {}).await;
    let gold = deploy(
        &tb,
        "gold",
        guests::ACTION_PROBE,
        json!([{"name": "claim", "value": format!("{TIER}=\"gold\"")}]),
        json!({}),
    )
    .await;
    bind(&tb, &[&gold]).await;

    // A login at the provider, with a refresh token; the browser keeps
    // its session.
    let mut browser = Browser::default();
    let url = tb.authorize_url(
        APP,
        APP_CALLBACK,
        &[
            ("scope", "openid email offline_access"),
            ("connection", CONNECTION),
        ],
    );
    let redeem_landing = |landing: Landing| {
        let issuer = tb.issuer.clone();
        async move {
            let to_app = landing.location.expect("a redirect to the app");
            redeem(&issuer, APP, APP_SECRET, APP_CALLBACK, to_app.as_str()).await
        }
    };
    let tokens = redeem_landing(browser.login(&tb, &url, false).await).await;
    assert_eq!(id_token_claim(&tokens, TIER), "gold");
    let refresh_token = tokens["refresh_token"]
        .as_str()
        .expect("a refresh token")
        .to_owned();

    // Another Action bound now: the next single sign-on runs it (the
    // provider sees no second login) and so does the next refresh.
    let platinum = deploy(
        &tb,
        "platinum",
        guests::ACTION_PROBE,
        json!([{"name": "claim", "value": format!("{TIER}=\"platinum\"")}]),
        json!({}),
    )
    .await;
    bind(&tb, &[&platinum]).await;
    let sso = redeem_landing(browser.login(&tb, &url, false).await).await;
    assert_eq!(
        tb.provider.requests_to("/token").len(),
        1,
        "single sign-on: one login at the provider"
    );
    assert_eq!(id_token_claim(&sso, TIER), "platinum", "{sso}");
    let (status, refreshed) = refresh(&tb, &refresh_token).await;
    assert_eq!(status, 200, "{refreshed}");
    assert_eq!(id_token_claim(&refreshed, TIER), "platinum", "{refreshed}");
    let refresh_token = refreshed["refresh_token"]
        .as_str()
        .expect("a rotated refresh token")
        .to_owned();

    // A denying Action: the single sign-on ends at the app with its
    // reason, and the refresh is refused without using up the token.
    let denier = deploy(
        &tb,
        "denier",
        guests::ACTION_PROBE,
        json!([{"name": "deny_domain", "value": user_domain()}]),
        json!({}),
    )
    .await;
    bind(&tb, &[&denier]).await;
    let reason = format!("users of {} may not log in", user_domain());
    let landing = browser.login(&tb, &url, false).await;
    assert_eq!(landing.param("error").as_deref(), Some("access_denied"));
    assert_eq!(landing.param("error_description"), Some(reason.clone()));
    assert_eq!(landing.param("code"), None);
    let (status, body) = refresh(&tb, &refresh_token).await;
    assert_eq!(
        (
            status,
            body["error"].as_str(),
            body["error_description"].as_str()
        ),
        (400, Some("access_denied"), Some(reason.as_str())),
        "{body}"
    );
    bind(&tb, &[]).await;
    let (status, body) = refresh(&tb, &refresh_token).await;
    assert_eq!(
        status, 200,
        "the denied refresh left the token unused: {body}"
    );
    assert_eq!(
        id_token_claim(&body, TIER),
        Value::Null,
        "no Action bound, no claim"
    );
}
