//! The login broker end to end: a real OpenID Connect client library as the
//! app, the development provider as the provider, real mappers in between.

use openidconnect::core::{CoreJwsSigningAlgorithm, CoreUserInfoClaims};
use openidconnect::{
    AccessToken, AuthorizationCode, OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier,
};
use serde_json::{Value, json};
use waypass::broker::Clock as _;
use waypass::broker::{AUTHORIZATION_CODE_TTL, LOGIN_TRANSACTION_TTL, TOKEN_TTL};
use waypass::dev_provider::{TokenFault, UserinfoFault, default_user};
use waypass_tests::login::{
    APP, APP_CALLBACK, APP_SECRET, Browser, CONNECTION, ES_APP, Landing, PKCE_VERIFIER, SPA,
    SPA_CALLBACK, TestBed, http_client,
};
use waypass_tests::oidc::{code_flow, oidc_client};

/// The whole code flow as an app does it: discovery, PKCE, login, code
/// exchange, id_token signature and nonce validation, userinfo.
async fn full_login(
    tb: &TestBed,
    client_id: &str,
    secret: Option<&str>,
    callback: &str,
    alg: CoreJwsSigningAlgorithm,
) {
    let client = oidc_client(tb, client_id, secret, callback).await;
    let (tokens, claims) = code_flow(tb, &client, &["email", "profile"], alg).await;
    let http = http_client();
    let user = default_user();
    let sub = format!("oauth2|{CONNECTION}|{}", user.uuid);
    assert_eq!(claims.subject().as_str(), sub);
    assert_eq!(
        claims.email().map(|e| e.as_str()),
        Some(user.email.as_str())
    );
    assert_eq!(claims.issuer().as_str(), tb.issuer);
    assert!(claims.auth_time().is_some());

    let userinfo: CoreUserInfoClaims = client
        .user_info(tokens.access_token().clone(), None)
        .expect("userinfo endpoint known")
        .request_async(&http)
        .await
        .expect("userinfo");
    assert_eq!(userinfo.subject().as_str(), sub);
    assert_eq!(
        userinfo.email().map(|e| e.as_str()),
        Some(user.email.as_str())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_app_logs_a_user_in_with_rs256_id_tokens() {
    let tb = TestBed::start(|_, _| {}).await;
    full_login(
        &tb,
        APP,
        Some(APP_SECRET),
        APP_CALLBACK,
        CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
    )
    .await;
    let user = tb
        .broker_user(&format!("oauth2|{CONNECTION}|{}", default_user().uuid))
        .await
        .expect("the user is recorded");
    assert_eq!(user.logins_count, 1);
    assert_eq!(
        user.profile.email.as_deref(),
        Some(default_user().email.as_str())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_app_that_chose_es256_gets_es256_id_tokens() {
    let tb = TestBed::start(|_, _| {}).await;
    full_login(
        &tb,
        ES_APP,
        Some(APP_SECRET),
        APP_CALLBACK,
        CoreJwsSigningAlgorithm::EcdsaP256Sha256,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_public_client_logs_in_with_pkce_and_no_secret() {
    let tb = TestBed::start(|_, _| {}).await;
    full_login(
        &tb,
        SPA,
        None,
        SPA_CALLBACK,
        CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_login_updates_the_user_and_counts_it() {
    let tb = TestBed::start(|_, _| {}).await;
    let user_id = format!("oauth2|{CONNECTION}|{}", default_user().uuid);
    let landing = login_app(&tb, &[]).await;
    assert!(landing.param("code").is_some(), "{landing:?}");
    let first = tb.broker_user(&user_id).await.expect("recorded");
    assert_eq!(first.logins_count, 1);
    assert_eq!(
        first.profile.email.as_deref(),
        Some(default_user().email.as_str())
    );

    // The provider now says the same account has a new email address.
    let new_email = "ada.lovelace@example.org";
    assert_ne!(new_email, default_user().email);
    tb.provider.set_userinfo_fault(UserinfoFault::Status(
        200,
        json!({"account": {"uuid": default_user().uuid, "email": new_email}}).to_string(),
    ));
    let landing = login_app(&tb, &[]).await;
    assert!(landing.param("code").is_some(), "{landing:?}");
    let second = tb.broker_user(&user_id).await.expect("still recorded");
    assert_eq!(second.logins_count, 2);
    assert_eq!(
        second.profile.email.as_deref(),
        Some(new_email),
        "the profile is the one from the latest login"
    );
    assert_eq!(second.created_at, first.created_at, "still the same user");
    assert!(second.last_login >= first.last_login);
}

// ---- helpers for the error paths ----

/// A browser login for the confidential app with `extra` parameters.
async fn login_app(tb: &TestBed, extra: &[(&str, &str)]) -> Landing {
    let mut params = vec![
        ("scope", "openid email"),
        ("state", "app-state"),
        ("connection", CONNECTION),
    ];
    params.extend_from_slice(extra);
    let url = tb.authorize_url(APP, APP_CALLBACK, &params);
    Browser::default().login(tb, &url, false).await
}

/// Posts to the token endpoint as the confidential app.
async fn token_request(tb: &TestBed, form: &[(&str, &str)], secret: &str) -> (u16, Value) {
    let resp = http_client()
        .post(format!("{}/oauth/token", tb.issuer))
        .basic_auth(APP, Some(secret))
        .form(form)
        .send()
        .await
        .expect("token request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Redeems `code` as the confidential app, with the helpers' PKCE verifier
/// unless `extra` names one (an empty one sends none).
async fn redeem(tb: &TestBed, code: &str, extra: &[(&str, &str)]) -> (u16, Value) {
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", APP_CALLBACK),
    ];
    if !extra.iter().any(|(k, _)| *k == "code_verifier") {
        form.push(("code_verifier", PKCE_VERIFIER));
    }
    form.extend(extra.iter().filter(|(_, v)| !v.is_empty()));
    token_request(tb, &form, APP_SECRET).await
}

fn assert_app_error(landing: &Landing, error: &str) {
    assert_eq!(landing.status, 302, "{landing:?}");
    let location = landing.location.as_ref().expect("redirected to the app");
    assert!(location.as_str().starts_with(APP_CALLBACK), "{location}");
    assert_eq!(
        landing.param("error").as_deref(),
        Some(error),
        "{landing:?}"
    );
    assert_eq!(landing.param("state").as_deref(), Some("app-state"));
    assert!(landing.param("code").is_none());
}

fn assert_error_page(status: u16, location: &Option<String>, body: &str, needle: &str) {
    assert_eq!(status, 400, "{body}");
    assert!(location.is_none(), "an error page never redirects");
    assert!(body.contains("error=invalid_request"), "{body}");
    assert!(body.contains(needle), "{body}");
}

// ---- /authorize ----

#[tokio::test(flavor = "multi_thread")]
async fn a_redirect_uri_that_is_not_registered_gets_an_error_page_not_a_redirect() {
    let tb = TestBed::start(|_, _| {}).await;
    for bad in [
        "http://evil.test/callback",
        "http://app.test/callback/",
        "http://app.test/callback?x=1",
    ] {
        let url = tb.authorize_url(APP, bad, &[("connection", CONNECTION)]);
        let (status, location, body) = Browser::default().get(&url).await;
        assert_error_page(status, &location, &body, "not one of this app");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_client_gets_an_error_page() {
    let tb = TestBed::start(|_, _| {}).await;
    let url = tb.authorize_url("nobody", APP_CALLBACK, &[]);
    let (status, location, body) = Browser::default().get(&url).await;
    assert_error_page(status, &location, &body, "unknown client");
}

#[tokio::test(flavor = "multi_thread")]
async fn unsupported_response_types_and_modes_go_back_to_the_app_as_errors() {
    let tb = TestBed::start(|_, _| {}).await;
    let url = tb
        .authorize_url(APP, APP_CALLBACK, &[("state", "app-state")])
        .replace("response_type=code", "response_type=token");
    let (status, location, _) = Browser::default().get(&url).await;
    assert_eq!(status, 302);
    assert!(
        location
            .as_deref()
            .is_some_and(|l| l.contains("error=unsupported_response_type")),
        "{location:?}"
    );

    // `form_post` is served (tests/sessions.rs); `fragment` is for the
    // implicit flow, which is not.
    let landing = login_app(&tb, &[("response_mode", "fragment")]).await;
    assert_app_error(&landing, "invalid_request");
    assert!(
        landing
            .param("error_description")
            .is_some_and(|d| d.contains("response_mode"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_or_disabled_connection_goes_back_to_the_app_as_invalid_request() {
    let tb = TestBed::start(|connections, _| {
        let mut other = waypass_tests::login::connection_spec("not-for-app", "http://127.0.0.1:9");
        other["enabled_clients"] = json!([]);
        connections.push(other);
    })
    .await;
    for name in ["nope", "not-for-app"] {
        let url = tb.authorize_url(
            APP,
            APP_CALLBACK,
            &[("state", "app-state"), ("connection", name)],
        );
        let (status, location, _) = Browser::default().get(&url).await;
        assert_eq!(status, 302);
        let location = location.expect("redirect");
        assert!(
            location.starts_with(APP_CALLBACK) && location.contains("error=invalid_request"),
            "{location}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_app_without_pkce_is_refused_by_default_confidential_ones_too() {
    let tb = TestBed::start(|_, _| {}).await;
    for (client, callback) in [(SPA, SPA_CALLBACK), (APP, APP_CALLBACK)] {
        let url = tb.authorize_url_without_pkce(client, callback, &[("connection", CONNECTION)]);
        let (status, location, _) = Browser::default().get(&url).await;
        assert_eq!(status, 302);
        let location = location.expect("back to the app");
        assert!(
            location.starts_with(callback)
                && location.contains("error=invalid_request")
                && location.contains("PKCE"),
            "{client}: {location}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_confidential_app_configured_without_pkce_logs_in_without_it_and_cannot_send_a_verifier()
{
    let tb = TestBed::start(|_, config| {
        let app = config
            .clients
            .iter_mut()
            .find(|c| c.client_id == APP)
            .expect("the app");
        app.require_pkce = false;
    })
    .await;
    let url = tb.authorize_url_without_pkce(
        APP,
        APP_CALLBACK,
        &[("state", "app-state"), ("connection", CONNECTION)],
    );
    let code = Browser::default()
        .login(&tb, &url, false)
        .await
        .param("code")
        .expect("a code");
    // RFC 9700 §2.1.1: a verifier for a code issued without a challenge is
    // refused (a downgrade the other way round).
    let (status, body) = redeem(&tb, &code, &[]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    let code = Browser::default()
        .login(&tb, &url, false)
        .await
        .param("code")
        .expect("a code");
    let (status, body) = redeem(&tb, &code, &[("code_verifier", "")]).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn pkce_towards_the_provider_is_on_unless_the_connection_turns_it_off() {
    let tb = TestBed::start(|connections, _| {
        let mut off = waypass_tests::login::connection_spec("no-pkce", "http://127.0.0.1:9");
        off["options"]["pkce_enabled"] = json!(false);
        connections.push(off);
    })
    .await;
    for (connection, expected) in [(CONNECTION, Some("S256")), ("no-pkce", None)] {
        let url = tb.authorize_url(APP, APP_CALLBACK, &[("connection", connection)]);
        let (_, location, _) = Browser::default().get(&url).await;
        let location = url::Url::parse(&location.expect("to the provider")).expect("url");
        let method = location
            .query_pairs()
            .find(|(k, _)| k == "code_challenge_method")
            .map(|(_, v)| v.into_owned());
        assert_eq!(method.as_deref(), expected, "{connection}: {location}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_connection_the_login_page_lists_the_apps_connections_with_icon_and_name() {
    let tb = TestBed::start(|connections, _| {
        let mut second = waypass_tests::login::connection_spec("second-idp", "http://127.0.0.1:9");
        second
            .as_object_mut()
            .expect("object")
            .remove("display_name");
        second["options"]
            .as_object_mut()
            .expect("options")
            .remove("icon_url");
        connections.push(second);
    })
    .await;
    let url = tb.authorize_url(APP, APP_CALLBACK, &[("state", "s")]);
    let (status, _, body) = Browser::default().get(&url).await;
    assert_eq!(status, 200);
    assert!(
        body.contains("Continue with Development provider"),
        "{body}"
    );
    assert!(body.contains("https://cdn.example.com/devprov.png"));
    assert!(
        body.contains("Continue with second-idp"),
        "falls back to the name: {body}"
    );
    assert!(body.contains("connection=devprov") && body.contains("state=s"));
}

// ---- what reaches the provider ----

#[tokio::test(flavor = "multi_thread")]
async fn auth_params_auth_params_map_custom_headers_and_pkce_arrive_at_the_provider() {
    let tb = TestBed::start(|connections, _| {
        let options = &mut connections[0]["options"];
        options["authParams"] =
            json!({"custom_param": "custom.param.value", "state": "must-not-override"});
        options["authParamsMap"] = json!({"mapped_param": "access_type"});
        options["customHeaders"] = json!({"X-Tenant": "acme", "X-Other": "1"});
        options["token_endpoint_auth_method"] = json!("client_secret_basic");
    })
    .await;
    let landing = login_app(&tb, &[("access_type", "offline")]).await;
    assert!(landing.param("code").is_some(), "{landing:?}");

    let authorize = &tb.provider.requests_to("/authorize")[0];
    assert_eq!(
        authorize.query_param("custom_param"),
        Some("custom.param.value")
    );
    assert_eq!(authorize.query_param("mapped_param"), Some("offline"));
    assert_ne!(authorize.query_param("state"), Some("must-not-override"));
    assert_eq!(authorize.query_param("code_challenge_method"), Some("S256"));
    assert_eq!(
        authorize.query_param("access_type"),
        None,
        "only mapped, not copied"
    );
    let token = &tb.provider.requests_to("/token")[0];
    assert_eq!(token.header("x-tenant"), Some("acme"));
    assert!(token.form_param("code_verifier").is_some());
    assert!(
        token
            .header("authorization")
            .is_some_and(|a| a.starts_with("Basic "))
    );
    assert_eq!(token.form_param("client_secret"), None);
}

// ---- /login/callback ----

#[tokio::test(flavor = "multi_thread")]
async fn a_callback_with_an_unknown_state_gets_an_error_page() {
    let tb = TestBed::start(|_, _| {}).await;
    let (status, location, body) = Browser::default()
        .get(&format!("{}/login/callback?code=x&state=forged", tb.issuer))
        .await;
    assert_error_page(status, &location, &body, "unknown");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replayed_callback_is_refused() {
    let tb = TestBed::start(|_, _| {}).await;
    let mut browser = Browser::default();
    let url = tb.authorize_url(
        APP,
        APP_CALLBACK,
        &[("state", "app-state"), ("connection", CONNECTION)],
    );
    let callback = browser.to_callback(tb.provider.origin(), &url).await;
    let cookies = browser.cookies.clone();
    let (status, first, _) = browser.get(&callback).await;
    assert_eq!(status, 302);
    assert!(first.is_some_and(|l| l.contains("code=")));
    browser.cookies = cookies;
    let (status, location, body) = browser.get(&callback).await;
    assert_error_page(status, &location, &body, "already finished");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_callback_in_another_browser_gets_a_page_and_leaves_the_login_to_its_own_browser() {
    let tb = TestBed::start(|_, _| {}).await;
    let mut browser = Browser::default();
    let url = tb.authorize_url(
        APP,
        APP_CALLBACK,
        &[("state", "app-state"), ("connection", CONNECTION)],
    );
    let callback = browser.to_callback(tb.provider.origin(), &url).await;
    let cookies = std::mem::take(&mut browser.cookies); // another browser
    let (status, location, body) = browser.get(&callback).await;
    assert_eq!(status, 400, "{body}");
    assert!(location.is_none(), "never a redirect to the app");
    assert!(
        body.contains("not started in this browser") && body.contains("error=access_denied"),
        "{body}"
    );
    browser.cookies = cookies; // the browser that started it
    let (status, location, _) = browser.get(&callback).await;
    assert_eq!(status, 302);
    assert!(location.is_some_and(|l| l.contains("code=")));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_provider_refusal_reaches_the_app_with_its_error() {
    let tb = TestBed::start(|_, _| {}).await;
    let url = tb.authorize_url(
        APP,
        APP_CALLBACK,
        &[("state", "app-state"), ("connection", CONNECTION)],
    );
    let landing = Browser::default().login(&tb, &url, true).await;
    assert_app_error(&landing, "access_denied");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_endpoint_failure_or_garbage_is_a_server_error() {
    let tb = TestBed::start(|_, _| {}).await;
    tb.provider
        .set_token_fault(TokenFault::Status(500, "boom".into()));
    let landing = login_app(&tb, &[]).await;
    assert_app_error(&landing, "server_error");
    assert!(
        landing
            .param("error_description")
            .is_some_and(|d| d.contains("HTTP 500")),
        "{landing:?}"
    );

    tb.provider.set_token_fault(TokenFault::Garbage);
    let landing = login_app(&tb, &[]).await;
    assert_app_error(&landing, "server_error");
    assert!(
        landing
            .param("error_description")
            .is_some_and(|d| d.contains("not usable")),
        "{landing:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_provider_that_is_down_is_a_server_error() {
    let tb = TestBed::start(|connections, _| {
        connections[0]["options"]["tokenURL"] = json!("http://127.0.0.1:9/token");
    })
    .await;
    let landing = login_app(&tb, &[]).await;
    assert_app_error(&landing, "server_error");
    assert!(
        landing
            .param("error_description")
            .is_some_and(|d| d.contains("could not be reached"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mapper_error_is_a_server_error_with_a_bounded_description() {
    let tb = TestBed::start(|_, _| {}).await;
    tb.provider
        .set_userinfo_fault(UserinfoFault::Status(500, "x".repeat(5000)));
    let landing = login_app(&tb, &[]).await;
    assert_app_error(&landing, "server_error");
    let description = landing.param("error_description").expect("description");
    assert!(
        description.len() <= 200 && description.contains("unexpected answer"),
        "{description}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_provider_rejecting_the_token_in_the_mapper_is_access_denied() {
    let tb = TestBed::start(|connections, _| {
        // The declarative mapper reports 401 from the provider as `unauthorized`.
        let options = &mut connections[0]["options"];
        options["mapper"] = json!("declarative");
        options["mapper_settings"]["user_id"] = json!("/account/uuid");
    })
    .await;
    tb.provider.set_userinfo_fault(UserinfoFault::Status(
        401,
        r#"{"error":"invalid_token"}"#.into(),
    ));
    let landing = login_app(&tb, &[]).await;
    assert_app_error(&landing, "access_denied");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mapper_that_overflows_its_stack_reaches_the_app_as_one_line() {
    let tb = TestBed::start(|connections, _| {
        let options = &mut connections[0]["options"];
        options["mapper"] = json!("hostile");
        options["mapper_settings"] = json!({"mode": "stack-overflow"});
    })
    .await;
    let landing = login_app(&tb, &[]).await;
    assert_app_error(&landing, "server_error");
    assert_eq!(
        landing.param("error_description").as_deref(),
        Some("mapper trapped: wasm trap: call stack exhausted"),
        "{landing:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mapper_past_its_deadline_is_a_server_error() {
    let tb = TestBed::start(|connections, _| {
        let options = &mut connections[0]["options"];
        options["mapper"] = json!("hostile");
        options["mapper_settings"] = json!({"mode": "loop"});
        options["mapper_timeout_ms"] = json!(200);
    })
    .await;
    let landing = login_app(&tb, &[]).await;
    assert_app_error(&landing, "server_error");
    assert!(
        landing
            .param("error_description")
            .is_some_and(|d| d.contains("deadline")),
        "{landing:?}"
    );
}

// ---- /oauth/token ----

#[tokio::test(flavor = "multi_thread")]
async fn a_code_works_once_and_a_replay_is_invalid_grant() {
    let tb = TestBed::start(|_, _| {}).await;
    let code = login_app(&tb, &[]).await.param("code").expect("code");
    let (status, body) = redeem(&tb, &code, &[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    let (status, body) = redeem(&tb, &code, &[]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_code_whose_user_was_deleted_is_invalid_grant_and_spent() {
    use waypass::store::Store as _;
    let tb = TestBed::start(|_, _| {}).await;
    let code = login_app(&tb, &[]).await.param("code").expect("code");
    let user_id = format!("oauth2|{CONNECTION}|{}", default_user().uuid);
    assert!(tb.store.delete_user(&user_id).await.expect("delete"));
    let (status, body) = redeem(&tb, &code, &[]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    assert_eq!(body["error_description"], "the user no longer exists");
    // Taken with the attempt: logging in again is the way back.
    let (status, body) = redeem(&tb, &code, &[]).await;
    assert_eq!(
        (status, body["error_description"].as_str()),
        (
            400,
            Some("the authorization code is invalid, expired or already used")
        ),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_client_secret_is_invalid_client_and_keeps_the_code_usable() {
    let tb = TestBed::start(|_, _| {}).await;
    let code = login_app(&tb, &[]).await.param("code").expect("code");
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", APP_CALLBACK),
    ];
    let resp = http_client()
        .post(format!("{}/oauth/token", tb.issuer))
        .basic_auth(APP, Some("wrong"))
        .form(&form)
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status().as_u16(), 401);
    assert!(resp.headers().get("www-authenticate").is_some());
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["error"], "invalid_client");
    let (status, _) = redeem(&tb, &code, &[]).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn client_secret_post_works_too() {
    let tb = TestBed::start(|_, _| {}).await;
    let code = login_app(&tb, &[]).await.param("code").expect("code");
    let resp = http_client()
        .post(format!("{}/oauth/token", tb.issuer))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", APP_CALLBACK),
            ("client_id", APP),
            ("client_secret", APP_SECRET),
            ("code_verifier", PKCE_VERIFIER),
        ])
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(
        resp.headers()
            .get("cache-control")
            .and_then(|v| v.to_str().ok()),
        Some("no-store")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_pkce_verifier_is_invalid_grant() {
    let tb = TestBed::start(|_, _| {}).await;
    let (challenge, _) = PkceCodeChallenge::new_random_sha256();
    let landing = login_app(
        &tb,
        &[
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
        ],
    )
    .await;
    let code = landing.param("code").expect("code");
    let other = PkceCodeVerifier::new("a".repeat(43));
    let (status, body) = redeem(&tb, &code, &[("code_verifier", other.secret())]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_redirect_uri_that_differs_at_the_token_endpoint_is_invalid_grant() {
    let tb = TestBed::start(|_, _| {}).await;
    let code = login_app(&tb, &[]).await.param("code").expect("code");
    let (status, body) = token_request(
        &tb,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", "http://app.test/other"),
        ],
        APP_SECRET,
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_code_redeemed_by_another_client_is_invalid_grant_and_spent() {
    let tb = TestBed::start(|_, _| {}).await;
    let code = login_app(&tb, &[]).await.param("code").expect("code");
    // ES_APP shares APP's secret and callback in the test bed: only the
    // client the code was issued to tells them apart (RFC 6749 §4.1.3).
    let other = oidc_client(&tb, ES_APP, Some(APP_SECRET), APP_CALLBACK).await;
    let err = other
        .exchange_code(AuthorizationCode::new(code.clone()))
        .expect("token endpoint known")
        .set_pkce_verifier(PkceCodeVerifier::new(PKCE_VERIFIER.into()))
        .request_async(&http_client())
        .await
        .expect_err("another client's code");
    assert!(
        format!("{err:?}").contains("invalid_grant")
            && format!("{err:?}").contains("another client"),
        "{err:?}"
    );
    // The attempt spent it: a stolen code is burnt, not kept for the thief.
    let (status, body) = redeem(&tb, &code, &[]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pkce_downgrade_without_the_verifier_is_invalid_grant() {
    let tb = TestBed::start(|_, _| {}).await;
    // The challenge went to /authorize; whoever holds the code but not the
    // verifier leaves it out (RFC 9700 §2.1.1, RFC 7636 §4.6).
    let code = login_app(&tb, &[]).await.param("code").expect("code");
    let client = oidc_client(&tb, APP, Some(APP_SECRET), APP_CALLBACK).await;
    let err = client
        .exchange_code(AuthorizationCode::new(code))
        .expect("token endpoint known")
        .request_async(&http_client())
        .await
        .expect_err("no verifier");
    let shown = format!("{err:?}");
    assert!(
        shown.contains("invalid_grant") && shown.contains("code_verifier"),
        "{shown}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_redemptions_of_one_code_over_http_let_exactly_one_succeed() {
    const REDEMPTIONS: usize = 8;
    let tb = std::sync::Arc::new(TestBed::start(|_, _| {}).await);
    let code = login_app(&tb, &[]).await.param("code").expect("code");
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(REDEMPTIONS));
    let racers: Vec<_> = (0..REDEMPTIONS)
        .map(|_| {
            let (tb, code, start) = (tb.clone(), code.clone(), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                redeem(&tb, &code, &[]).await
            })
        })
        .collect();
    let mut answers = Vec::new();
    for r in racers {
        answers.push(r.await.expect("racer"));
    }
    let won: Vec<_> = answers
        .iter()
        .filter(|(status, _)| *status == 200)
        .collect();
    assert_eq!(won.len(), 1, "{answers:?}");
    assert!(won[0].1["access_token"].is_string());
    for (status, body) in answers.iter().filter(|(status, _)| *status != 200) {
        assert_eq!(
            (*status, body["error"].as_str()),
            (400, Some("invalid_grant"))
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_code_issued_for_one_registered_callback_is_refused_with_the_other() {
    const SECOND_CALLBACK: &str = "http://app.test/second-callback";
    let tb = TestBed::start(|_, config| {
        let app = config
            .clients
            .iter_mut()
            .find(|c| c.client_id == APP)
            .expect("the app");
        app.callbacks.push(SECOND_CALLBACK.into());
    })
    .await;
    let tb = &tb;
    let login = async |callback: &str| {
        let url = tb.authorize_url(
            APP,
            callback,
            &[("state", "app-state"), ("connection", CONNECTION)],
        );
        Browser::default().login(tb, &url, false).await
    };
    let exchange = async |code: String, callback: &str| {
        token_request(
            tb,
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", callback),
                ("code_verifier", PKCE_VERIFIER),
            ],
            APP_SECRET,
        )
        .await
    };
    let landing = login(SECOND_CALLBACK).await;
    assert!(
        landing
            .location
            .as_ref()
            .is_some_and(|l| l.as_str().starts_with(SECOND_CALLBACK)),
        "{landing:?}"
    );
    let code = landing.param("code").expect("code");
    // RFC 6749 §4.1.3: the redirect_uri must be the one the code was issued for,
    // though the other is registered too.
    let (status, body) = exchange(code, APP_CALLBACK).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    let code = login(SECOND_CALLBACK).await.param("code").expect("code");
    let (status, body) = exchange(code, SECOND_CALLBACK).await;
    assert_eq!(status, 200, "{body}");
}

// ---- expiry boundaries, with the broker's clock ----

#[tokio::test(flavor = "multi_thread")]
async fn a_code_is_redeemable_until_the_second_before_it_expires() {
    let tb = TestBed::start(|_, _| {}).await;
    let t0 = tb.clock.now();
    let ttl = AUTHORIZATION_CODE_TTL.as_secs();
    let code = login_app(&tb, &[]).await.param("code").expect("code");
    tb.clock.set(t0 + ttl - 1);
    let (status, body) = redeem(&tb, &code, &[]).await;
    assert_eq!(status, 200, "valid at expiry - 1: {body}");

    tb.clock.set(t0);
    let code = login_app(&tb, &[]).await.param("code").expect("code");
    tb.clock.set(t0 + ttl);
    let (status, body) = redeem(&tb, &code, &[]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "refused at expiry: {body}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_login_can_finish_until_the_second_before_its_transaction_expires() {
    let tb = TestBed::start(|_, _| {}).await;
    let t0 = tb.clock.now();
    let ttl = LOGIN_TRANSACTION_TTL.as_secs();
    let url = tb.authorize_url(
        APP,
        APP_CALLBACK,
        &[("state", "app-state"), ("connection", CONNECTION)],
    );
    let mut browser = Browser::default();
    let callback = browser.to_callback(tb.provider.origin(), &url).await;
    tb.clock.set(t0 + ttl - 1);
    let (status, location, body) = browser.get(&callback).await;
    assert_eq!(status, 302, "valid at expiry - 1: {body}");
    assert!(location.is_some_and(|l| l.contains("code=")));

    tb.clock.set(t0);
    let mut browser = Browser::default();
    let callback = browser.to_callback(tb.provider.origin(), &url).await;
    tb.clock.set(t0 + ttl);
    let (status, location, body) = browser.get(&callback).await;
    assert_error_page(status, &location, &body, "expired");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_access_token_works_until_the_second_before_it_expires() {
    let tb = TestBed::start(|_, _| {}).await;
    let t0 = tb.clock.now();
    let ttl = TOKEN_TTL.as_secs();
    let code = login_app(&tb, &[]).await.param("code").expect("code");
    let (status, body) = redeem(&tb, &code, &[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["expires_in"], ttl);
    let token = body["access_token"].as_str().expect("token").to_owned();
    let userinfo = || async {
        http_client()
            .get(format!("{}/userinfo", tb.issuer))
            .bearer_auth(&token)
            .send()
            .await
            .expect("userinfo")
            .status()
            .as_u16()
    };
    tb.clock.set(t0 + ttl - 1);
    assert_eq!(userinfo().await, 200, "valid at expiry - 1");
    tb.clock.set(t0 + ttl);
    assert_eq!(userinfo().await, 401, "refused at expiry");
}

#[tokio::test(flavor = "multi_thread")]
async fn other_grant_types_are_unsupported() {
    let tb = TestBed::start(|_, _| {}).await;
    let (status, body) = token_request(&tb, &[("grant_type", "password")], APP_SECRET).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("unsupported_grant_type"))
    );
}

// ---- /userinfo and discovery ----

#[tokio::test(flavor = "multi_thread")]
async fn userinfo_refuses_a_bad_token_with_a_bearer_challenge() {
    let tb = TestBed::start(|_, _| {}).await;
    let resp = http_client()
        .get(format!("{}/userinfo", tb.issuer))
        .bearer_auth("not-a-token")
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status().as_u16(), 401);
    let challenge = resp
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    assert!(
        challenge.starts_with("Bearer") && challenge.contains("invalid_token"),
        "{challenge}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn userinfo_answers_post_as_well_as_get() {
    let tb = TestBed::start(|_, _| {}).await;
    let code = login_app(&tb, &[]).await.param("code").expect("code");
    let (_, body) = redeem(&tb, &code, &[]).await;
    let token = AccessToken::new(body["access_token"].as_str().expect("token").into());
    let resp = http_client()
        .post(format!("{}/userinfo", tb.issuer))
        .bearer_auth(token.secret())
        .send()
        .await
        .expect("request");
    let claims: Value = resp.json().await.expect("json");
    assert_eq!(claims["email"], default_user().email.as_str());
}

#[tokio::test(flavor = "multi_thread")]
async fn discovery_and_jwks_describe_the_broker() {
    let tb = TestBed::start(|_, _| {}).await;
    let http = http_client();
    let doc: Value = http
        .get(format!("{}/.well-known/openid-configuration", tb.issuer))
        .send()
        .await
        .expect("discovery")
        .json()
        .await
        .expect("json");
    assert_eq!(doc["issuer"], tb.issuer.as_str());
    assert_eq!(doc["code_challenge_methods_supported"], json!(["S256"]));
    let jwks: Value = http
        .get(doc["jwks_uri"].as_str().expect("jwks_uri"))
        .send()
        .await
        .expect("jwks")
        .json()
        .await
        .expect("json");
    let algs: Vec<&str> = jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .filter_map(|k| k["alg"].as_str())
        .collect();
    assert!(algs.contains(&"RS256") && algs.contains(&"ES256"), "{jwks}");
    assert!(
        jwks["keys"]
            .as_array()
            .expect("keys")
            .iter()
            .all(|k| k.get("d").is_none())
    );
}
