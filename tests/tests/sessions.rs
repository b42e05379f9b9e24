//! Sessions and tokens for apps end to end (issue #11): single sign-on,
//! `prompt`, `max_age` and `auth_time`, refresh-token rotation and reuse
//! detection, revocation and introspection, JWT access tokens for an API,
//! RP-initiated and back-channel logout, `form_post`. The development
//! provider records what reaches it, so "the provider saw one login" is
//! counted, not assumed.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use openidconnect::core::{
    CoreClient, CoreJsonWebKeySet, CoreJwsSigningAlgorithm, CoreProviderMetadata,
};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, IssuerUrl, JsonWebKey as _, Nonce,
    OAuth2TokenResponse as _, PkceCodeVerifier, RedirectUrl, RefreshToken, TokenResponse as _,
};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use waypass::broker::Clock as _;
use waypass::broker::config::OidcLogoutConfig;
use waypass_tests::login::{
    APP, APP_CALLBACK, APP_SECRET, Browser, CONNECTION, Landing, PKCE_VERIFIER, SPA, SPA_CALLBACK,
    TestBed, admin_api, http_client, jwt_claims, redeem, userinfo,
};
use waypass_tests::stub::{Reply, Stub};

/// Where the app sends browsers after logout (registered for [`APP`]).
const BYE: &str = "http://app.test/bye";
/// The API of the JWT access-token tests.
const ORDERS: &str = "https://orders.test/";
/// A bound on waiting for the back-channel notification: it arrives in
/// milliseconds; this only keeps a broken build from hanging.
const NOTIFICATION_WAIT: Duration = Duration::from_secs(30);

/// Code exchanges the provider answered: one per login at the provider.
fn provider_logins(tb: &TestBed) -> usize {
    tb.provider.requests_to("/token").len()
}

/// Whether `browser` holds a session at the broker: a `prompt=none`
/// request (OpenID Connect Core §3.1.2.1) answers with a code, or with
/// `login_required` when there is none.
async fn has_session(tb: &TestBed, browser: &mut Browser) -> bool {
    let url = tb.authorize_url(
        APP,
        APP_CALLBACK,
        &[("connection", CONNECTION), ("prompt", "none")],
    );
    let (_, location, _) = browser.get(&url).await;
    let location = location.expect("a redirect to the app");
    if location.contains("error=login_required") {
        return false;
    }
    assert!(
        location.contains("code="),
        "neither a code nor login_required: {location}"
    );
    true
}

/// The status `/userinfo` answers a request bearing `access_token` with.
async fn userinfo_status(tb: &TestBed, access_token: &str) -> u16 {
    http_client()
        .get(format!("{}/userinfo", tb.issuer))
        .bearer_auth(access_token)
        .send()
        .await
        .expect("userinfo")
        .status()
        .as_u16()
}

/// Verifies `jwt` as an app or API does: the key named by `kid` in the
/// broker's published JWKS, the algorithm the header names. Returns the
/// header and the claims.
async fn verified(tb: &TestBed, jwt: &str) -> (Value, Value) {
    let discovery: Value = http_client()
        .get(format!("{}/.well-known/openid-configuration", tb.issuer))
        .send()
        .await
        .expect("discovery")
        .json()
        .await
        .expect("discovery json");
    let jwks: CoreJsonWebKeySet = http_client()
        .get(discovery["jwks_uri"].as_str().expect("jwks_uri"))
        .send()
        .await
        .expect("jwks")
        .json()
        .await
        .expect("jwks json");
    let mut parts = jwt.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        panic!("not a JWS: {jwt}");
    };
    let header_json: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).expect("b64")).expect("header");
    let alg: CoreJwsSigningAlgorithm =
        serde_json::from_value(header_json["alg"].clone()).expect("a known alg");
    let kid = header_json["kid"].as_str().expect("a kid");
    let key = jwks
        .keys()
        .iter()
        .find(|k| k.key_id().map(|id| id.as_str()) == Some(kid))
        .unwrap_or_else(|| panic!("kid {kid} is in the JWKS"));
    key.verify_signature(
        &alg,
        format!("{header}.{payload}").as_bytes(),
        &URL_SAFE_NO_PAD.decode(signature).expect("b64 signature"),
    )
    .expect("the signature verifies against the JWKS");
    (header_json, jwt_claims(jwt))
}

/// A login of [`APP`] through the provider in `browser`, with `extra`
/// parameters (the connection is added).
async fn login_app(tb: &TestBed, browser: &mut Browser, extra: &[(&str, &str)]) -> Landing {
    let mut params = vec![("connection", CONNECTION), ("state", "st-1")];
    params.extend_from_slice(extra);
    let url = tb.authorize_url(APP, APP_CALLBACK, &params);
    browser.login(tb, &url, false).await
}

/// A bed whose [`APP`] registers [`BYE`] as a logout URL and, when given,
/// a back-channel logout URI.
async fn bed(backchannel: Option<String>) -> TestBed {
    TestBed::start(move |_, config| {
        let app = config
            .clients
            .iter_mut()
            .find(|c| c.client_id == APP)
            .expect("the app");
        app.allowed_logout_urls = vec![BYE.into()];
        app.oidc_logout = backchannel.map(|url| OidcLogoutConfig {
            backchannel_logout_urls: vec![url],
        });
    })
    .await
}

/// `/oauth/token` with [`APP`]'s Basic credentials and `form`.
async fn token_call(tb: &TestBed, form: &[(&str, &str)]) -> (u16, Value) {
    let resp = http_client()
        .post(format!("{}/oauth/token", tb.issuer))
        .basic_auth(APP, Some(APP_SECRET))
        .form(form)
        .send()
        .await
        .expect("token request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn refresh(tb: &TestBed, refresh_token: &str) -> (u16, Value) {
    token_call(
        tb,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ],
    )
    .await
}

/// `POST {path}` with [`APP`]'s Basic credentials and `form`.
async fn app_post(tb: &TestBed, path: &str, form: &[(&str, &str)]) -> (u16, Value) {
    let resp = http_client()
        .post(format!("{}{path}", tb.issuer))
        .basic_auth(APP, Some(APP_SECRET))
        .form(form)
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn str_of<'a>(v: &'a Value, name: &str) -> &'a str {
    v[name]
        .as_str()
        .unwrap_or_else(|| panic!("no {name} in {v}"))
}

// ---- single sign-on ----

#[tokio::test(flavor = "multi_thread")]
async fn a_second_app_gets_a_code_from_the_session_and_the_provider_sees_one_login() {
    let tb = bed(None).await;
    let mut browser = Browser::default();
    let landing = login_app(&tb, &mut browser, &[("scope", "openid")]).await;
    assert!(landing.param("code").is_some(), "{landing:?}");
    let app_tokens = redeem(
        &tb.issuer,
        APP,
        APP_SECRET,
        APP_CALLBACK,
        landing.location.as_ref().expect("redirect").as_str(),
    )
    .await;
    assert_eq!(provider_logins(&tb), 1);

    // The second app, a public one, with and without `connection`: the
    // real `openidconnect` client redeems its code and checks the id_token.
    for connection in [Some(CONNECTION), None] {
        let mut params = vec![("state", "spa-state"), ("nonce", "spa-nonce")];
        params.extend(connection.map(|c| ("connection", c)));
        let url = tb.authorize_url(SPA, SPA_CALLBACK, &params);
        let (status, location, body) = browser.get(&url).await;
        assert_eq!(status, 302, "{body}");
        let location = url::Url::parse(&location.expect("a redirect")).expect("url");
        assert!(
            location.as_str().starts_with(SPA_CALLBACK),
            "straight back to the app: {location}"
        );
        let param = |n: &str| {
            location
                .query_pairs()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.into_owned())
        };
        assert_eq!(param("state").as_deref(), Some("spa-state"));
        let metadata = CoreProviderMetadata::discover_async(
            IssuerUrl::new(tb.issuer.clone()).expect("issuer"),
            &http_client(),
        )
        .await
        .expect("discovery");
        let client = CoreClient::from_provider_metadata(metadata, ClientId::new(SPA.into()), None)
            .set_redirect_uri(RedirectUrl::new(SPA_CALLBACK.into()).expect("redirect"));
        let tokens = client
            .exchange_code(AuthorizationCode::new(param("code").expect("a code")))
            .expect("token endpoint")
            .set_pkce_verifier(PkceCodeVerifier::new(PKCE_VERIFIER.into()))
            .request_async(&http_client())
            .await
            .expect("code exchange");
        let id_token = tokens.id_token().expect("an id_token");
        let spa_claims = id_token
            .claims(&client.id_token_verifier(), &Nonce::new("spa-nonce".into()))
            .expect("the id_token verifies");
        let app_claims = jwt_claims(str_of(&app_tokens, "id_token"));
        assert_eq!(spa_claims.subject().as_str(), app_claims["sub"]);
        let spa_raw = jwt_claims(&id_token.to_string());
        assert_eq!(spa_raw["sid"], app_claims["sid"], "one session");
        assert_eq!(
            spa_raw["auth_time"], app_claims["auth_time"],
            "the login's time, not the SSO's"
        );
    }
    assert_eq!(provider_logins(&tb), 1, "the provider saw one login");

    // A new browser has no session: to the provider.
    let url = tb.authorize_url(SPA, SPA_CALLBACK, &[("connection", CONNECTION)]);
    let (status, location, _) = Browser::default().get(&url).await;
    assert_eq!(status, 302);
    assert!(
        location
            .expect("redirect")
            .starts_with(tb.provider.origin()),
        "no cookie, no session"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn prompt_none_answers_login_required_without_a_session_and_a_code_with_one() {
    let tb = bed(None).await;
    let mut browser = Browser::default();
    let url = tb.authorize_url(
        APP,
        APP_CALLBACK,
        &[
            ("connection", CONNECTION),
            ("prompt", "none"),
            ("state", "quiet"),
        ],
    );
    let (status, location, _) = browser.get(&url).await;
    assert_eq!(status, 302);
    let location = url::Url::parse(&location.expect("redirect")).expect("url");
    assert!(location.as_str().starts_with(APP_CALLBACK), "{location}");
    let pairs: Vec<(String, String)> = location.query_pairs().into_owned().collect();
    assert!(
        pairs.contains(&("error".into(), "login_required".into())),
        "{pairs:?}"
    );
    assert!(pairs.contains(&("state".into(), "quiet".into())));
    assert_eq!(provider_logins(&tb), 0, "nothing was shown");

    login_app(&tb, &mut browser, &[]).await;
    let (status, location, _) = browser.get(&url).await;
    assert_eq!(status, 302);
    let location = url::Url::parse(&location.expect("redirect")).expect("url");
    assert!(
        location.query_pairs().any(|(k, _)| k == "code"),
        "the session answers prompt=none: {location}"
    );
    assert_eq!(provider_logins(&tb), 1);

    // prompt=none with another value is refused (Core §3.1.2.1).
    let both = tb.authorize_url(
        APP,
        APP_CALLBACK,
        &[("connection", CONNECTION), ("prompt", "none login")],
    );
    let (_, location, _) = browser.get(&both).await;
    assert!(
        location
            .expect("redirect")
            .contains("error=invalid_request"),
        "none stands alone"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn max_age_and_prompt_login_force_the_provider_and_auth_time_says_when_it_was() {
    let tb = bed(None).await;
    let mut browser = Browser::default();
    let first_login = tb.clock.now();
    let landing = login_app(&tb, &mut browser, &[("scope", "openid")]).await;
    let tokens = redeem(
        &tb.issuer,
        APP,
        APP_SECRET,
        APP_CALLBACK,
        landing.location.as_ref().expect("redirect").as_str(),
    )
    .await;
    assert_eq!(
        jwt_claims(str_of(&tokens, "id_token"))["auth_time"],
        json!(first_login)
    );
    tb.clock.advance(100);

    // A max_age the login is within: answered from the session, with the
    // first login's auth_time.
    let within = tb.authorize_url(
        APP,
        APP_CALLBACK,
        &[
            ("connection", CONNECTION),
            ("max_age", "500"),
            ("scope", "openid"),
        ],
    );
    let (status, location, _) = browser.get(&within).await;
    assert_eq!(status, 302);
    let tokens = redeem(
        &tb.issuer,
        APP,
        APP_SECRET,
        APP_CALLBACK,
        &location.expect("redirect"),
    )
    .await;
    assert_eq!(
        jwt_claims(str_of(&tokens, "id_token"))["auth_time"],
        json!(first_login)
    );
    assert_eq!(provider_logins(&tb), 1);

    // A max_age the login is older than: to the provider, and the new
    // login's auth_time.
    let landing = login_app(&tb, &mut browser, &[("max_age", "50"), ("scope", "openid")]).await;
    assert_eq!(provider_logins(&tb), 2, "max_age sent the browser back");
    let tokens = redeem(
        &tb.issuer,
        APP,
        APP_SECRET,
        APP_CALLBACK,
        landing.location.as_ref().expect("redirect").as_str(),
    )
    .await;
    assert_eq!(
        jwt_claims(str_of(&tokens, "id_token"))["auth_time"],
        json!(first_login + 100)
    );

    // prompt=login: to the provider whatever the session.
    let url = tb.authorize_url(
        APP,
        APP_CALLBACK,
        &[("connection", CONNECTION), ("prompt", "login")],
    );
    let (_, location, _) = browser.get(&url).await;
    assert!(
        location
            .expect("redirect")
            .starts_with(tb.provider.origin())
    );
    // max_age=0 and prompt=none cannot be met without a page.
    let url = tb.authorize_url(
        APP,
        APP_CALLBACK,
        &[
            ("connection", CONNECTION),
            ("prompt", "none"),
            ("max_age", "0"),
        ],
    );
    tb.clock.advance(1);
    let (_, location, _) = browser.get(&url).await;
    assert!(location.expect("redirect").contains("error=login_required"));
}

// ---- refresh tokens, revocation, introspection ----

/// Logs [`APP`] in asking for `offline_access`; returns the token response.
async fn offline_login(tb: &TestBed) -> Value {
    let mut browser = Browser::default();
    let landing = login_app(tb, &mut browser, &[("scope", "openid offline_access")]).await;
    redeem(
        &tb.issuer,
        APP,
        APP_SECRET,
        APP_CALLBACK,
        landing.location.as_ref().expect("redirect").as_str(),
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn refresh_tokens_rotate_and_a_reused_one_revokes_the_whole_family() {
    let tb = bed(None).await;
    let tokens = offline_login(&tb).await;
    let first = str_of(&tokens, "refresh_token").to_owned();
    let user = jwt_claims(str_of(&tokens, "id_token"))["sub"].clone();

    // The real client refreshes: a new refresh token, a working access token.
    let metadata = CoreProviderMetadata::discover_async(
        IssuerUrl::new(tb.issuer.clone()).expect("issuer"),
        &http_client(),
    )
    .await
    .expect("discovery");
    let client = CoreClient::from_provider_metadata(
        metadata,
        ClientId::new(APP.into()),
        Some(ClientSecret::new(APP_SECRET.into())),
    );
    let refreshed = client
        .exchange_refresh_token(&RefreshToken::new(first.clone()))
        .expect("token endpoint")
        .request_async(&http_client())
        .await
        .expect("refresh");
    let second = refreshed
        .refresh_token()
        .expect("rotation: a new refresh token")
        .secret()
        .clone();
    assert_ne!(second, first);
    let info = userinfo(&tb.issuer, refreshed.access_token().secret()).await;
    assert_eq!(info["sub"], user);

    // Narrowing the scope is allowed; widening it is not (RFC 6749 §6).
    let (status, wider) = token_call(
        &tb,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &second),
            ("scope", "openid offline_access email"),
        ],
    )
    .await;
    assert_eq!((status, str_of(&wider, "error")), (400, "invalid_scope"));
    let (status, narrower) = token_call(
        &tb,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &second),
            ("scope", "openid"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{narrower}");
    assert_eq!(str_of(&narrower, "scope"), "openid");
    let third = str_of(&narrower, "refresh_token").to_owned();
    let third_access = str_of(&narrower, "access_token").to_owned();

    // The first token again: reuse. The family dies, the live token too.
    let (status, reuse) = refresh(&tb, &first).await;
    assert_eq!((status, str_of(&reuse, "error")), (400, "invalid_grant"));
    let (status, dead) = refresh(&tb, &third).await;
    assert_eq!(
        (status, str_of(&dead, "error")),
        (400, "invalid_grant"),
        "the family's newest token died with it"
    );
    assert_eq!(
        userinfo_status(&tb, &third_access).await,
        401,
        "the family's access tokens are revoked"
    );

    // Another app cannot use the app's refresh token.
    let tokens = offline_login(&tb).await;
    let resp = http_client()
        .post(format!("{}/oauth/token", tb.issuer))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", str_of(&tokens, "refresh_token")),
            ("client_id", SPA),
        ])
        .send()
        .await
        .expect("token request");
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(str_of(&body, "error"), "invalid_grant");
}

#[tokio::test(flavor = "multi_thread")]
async fn without_offline_access_no_refresh_token_is_issued() {
    let tb = bed(None).await;
    let mut browser = Browser::default();
    let landing = login_app(&tb, &mut browser, &[("scope", "openid")]).await;
    let tokens = redeem(
        &tb.issuer,
        APP,
        APP_SECRET,
        APP_CALLBACK,
        landing.location.as_ref().expect("redirect").as_str(),
    )
    .await;
    assert!(tokens.get("access_token").is_some(), "{tokens}");
    assert!(tokens.get("refresh_token").is_none(), "{tokens}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_revoked_refresh_token_fails_at_refresh_and_its_access_token_at_userinfo() {
    let tb = bed(None).await;
    let tokens = offline_login(&tb).await;
    let refresh_token = str_of(&tokens, "refresh_token").to_owned();
    let access_token = str_of(&tokens, "access_token").to_owned();
    let (status, active) = app_post(&tb, "/oauth/introspect", &[("token", &refresh_token)]).await;
    assert_eq!((status, &active["active"]), (200, &json!(true)), "{active}");
    assert_eq!(
        userinfo(&tb.issuer, &access_token).await["sub"],
        jwt_claims(str_of(&tokens, "id_token"))["sub"]
    );

    // Without the app's secret (RFC 7009 §2.1: the client authenticates),
    // or without naming a client: refused, nothing revoked.
    for (form, status, error) in [
        (
            vec![("token", refresh_token.as_str()), ("client_id", APP)],
            401,
            "invalid_client",
        ),
        (
            vec![("token", refresh_token.as_str())],
            400,
            "invalid_request",
        ),
    ] {
        let resp = http_client()
            .post(format!("{}/oauth/revoke", tb.issuer))
            .form(&form)
            .send()
            .await
            .expect("revoke");
        assert_eq!(resp.status(), status);
        let body: Value = resp.json().await.expect("json");
        assert_eq!(str_of(&body, "error"), error);
    }
    let (_, still) = app_post(&tb, "/oauth/introspect", &[("token", &refresh_token)]).await;
    assert_eq!(still["active"], json!(true), "nothing was revoked");

    let (status, _) = app_post(
        &tb,
        "/oauth/revoke",
        &[
            ("token", &refresh_token),
            ("token_type_hint", "refresh_token"),
        ],
    )
    .await;
    assert_eq!(status, 200);
    let (status, body) = refresh(&tb, &refresh_token).await;
    assert_eq!((status, str_of(&body, "error")), (400, "invalid_grant"));
    assert_eq!(
        userinfo_status(&tb, &access_token).await,
        401,
        "revoking a refresh token revokes its access tokens (RFC 7009 §2.1)"
    );
    let (_, inactive) = app_post(&tb, "/oauth/introspect", &[("token", &refresh_token)]).await;
    assert_eq!(inactive, json!({"active": false}));

    // An access token revoked on its own; an unknown token is answered 200
    // (RFC 7009 §2.2).
    let tokens = offline_login(&tb).await;
    let access_token = str_of(&tokens, "access_token").to_owned();
    let (status, _) = app_post(&tb, "/oauth/revoke", &[("token", &access_token)]).await;
    assert_eq!(status, 200);
    assert_eq!(userinfo_status(&tb, &access_token).await, 401);
    let (status, _) = app_post(&tb, "/oauth/revoke", &[("token", "never-issued")]).await;
    assert_eq!(status, 200);
    let (status, body) = app_post(&tb, "/oauth/revoke", &[]).await;
    assert_eq!((status, str_of(&body, "error")), (400, "invalid_request"));
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_a_user_ends_their_sessions_and_revokes_their_tokens() {
    let tb = bed(None).await;
    let mut browser = Browser::default();
    let landing = login_app(&tb, &mut browser, &[("scope", "openid offline_access")]).await;
    let tokens = redeem(
        &tb.issuer,
        APP,
        APP_SECRET,
        APP_CALLBACK,
        landing.location.as_ref().expect("redirect").as_str(),
    )
    .await;
    let user = jwt_claims(str_of(&tokens, "id_token"))["sub"]
        .as_str()
        .expect("sub")
        .to_owned();
    let (status, _) = admin_api(
        &tb.issuer,
        reqwest::Method::DELETE,
        &format!("users/{user}"),
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (status, body) = refresh(&tb, str_of(&tokens, "refresh_token")).await;
    assert_eq!((status, str_of(&body, "error")), (400, "invalid_grant"));
    assert_eq!(
        userinfo_status(&tb, str_of(&tokens, "access_token")).await,
        401
    );
    assert!(
        !has_session(&tb, &mut browser).await,
        "the session ended with its user"
    );
}

// ---- JWT access tokens for an API ----

#[tokio::test(flavor = "multi_thread")]
async fn an_access_token_for_an_api_is_a_jwt_that_verifies_against_the_jwks() {
    let tb = bed(None).await;
    let (status, api) = admin_api(
        &tb.issuer,
        reqwest::Method::POST,
        "resource-servers",
        Some(json!({
            "name": "Orders",
            "identifier": ORDERS,
            "scopes": [{"value": "read:orders", "description": "Read orders"}],
            "signing_alg": "RS256",
            "token_lifetime": 600,
        })),
    )
    .await;
    assert_eq!(status, 201, "{api}");

    let mut browser = Browser::default();
    let landing = login_app(
        &tb,
        &mut browser,
        &[
            ("audience", ORDERS),
            ("scope", "openid read:orders write:orders"),
        ],
    )
    .await;
    let tokens = redeem(
        &tb.issuer,
        APP,
        APP_SECRET,
        APP_CALLBACK,
        landing.location.as_ref().expect("redirect").as_str(),
    )
    .await;
    let access_token = str_of(&tokens, "access_token");
    let now = tb.clock.now();
    let (header, at) = verified(&tb, access_token).await;
    assert_eq!(header["typ"], "at+jwt", "RFC 9068 §2.1");
    assert_eq!(header["alg"], "RS256");
    assert_eq!(at["iss"], tb.issuer);
    let aud: Vec<&str> = match &at["aud"] {
        Value::String(one) => vec![one.as_str()],
        Value::Array(many) => many.iter().filter_map(Value::as_str).collect(),
        other => panic!("aud: {other}"),
    };
    assert!(aud.contains(&ORDERS), "{aud:?}");
    assert_eq!(at["client_id"], APP);
    assert_eq!(at["sub"], jwt_claims(str_of(&tokens, "id_token"))["sub"]);
    assert_eq!(
        at["scope"], "openid read:orders",
        "the API's scope it accepts, not the one it does not"
    );
    assert_eq!(at["iat"], json!(now));
    assert_eq!(at["exp"], json!(now + 600));
    assert!(at["jti"].as_str().is_some_and(|j| !j.is_empty()));
    assert_eq!(tokens["expires_in"], json!(600));
    // With `openid`, the same token reads the profile.
    assert_eq!(userinfo(&tb.issuer, access_token).await["sub"], at["sub"]);

    // An audience nobody registered is refused to the app.
    let url = tb.authorize_url(
        APP,
        APP_CALLBACK,
        &[
            ("connection", CONNECTION),
            ("audience", "https://nobody.test/"),
        ],
    );
    let (_, location, _) = Browser::default().get(&url).await;
    assert!(
        location
            .expect("redirect")
            .contains("error=invalid_request")
    );
}

// ---- logout ----

#[tokio::test(flavor = "multi_thread")]
async fn rp_initiated_logout_ends_the_session_and_returns_to_the_registered_url_with_state() {
    let tb = bed(None).await;
    let mut browser = Browser::default();
    let landing = login_app(&tb, &mut browser, &[("scope", "openid")]).await;
    let tokens = redeem(
        &tb.issuer,
        APP,
        APP_SECRET,
        APP_CALLBACK,
        landing.location.as_ref().expect("redirect").as_str(),
    )
    .await;
    let id_token = str_of(&tokens, "id_token");

    // A URL the app did not register: a page, no redirect, still logged in.
    let mut bad = url::Url::parse(&format!("{}/oidc/logout", tb.issuer)).expect("url");
    bad.query_pairs_mut()
        .append_pair("id_token_hint", id_token)
        .append_pair("post_logout_redirect_uri", "https://evil.test/");
    let (status, location, _) = browser.get(bad.as_str()).await;
    assert_eq!((status, location), (400, None));
    assert!(
        browser.cookies.contains_key("wp_session"),
        "a refused logout keeps the session"
    );

    let mut logout = url::Url::parse(&format!("{}/oidc/logout", tb.issuer)).expect("url");
    logout
        .query_pairs_mut()
        .append_pair("id_token_hint", id_token)
        .append_pair("post_logout_redirect_uri", BYE)
        .append_pair("state", "see you");
    let (status, location, _) = browser.get(logout.as_str()).await;
    assert_eq!(status, 302);
    assert_eq!(
        location.as_deref(),
        Some("http://app.test/bye?state=see+you")
    );
    assert!(
        !browser.cookies.contains_key("wp_session"),
        "the cookie is cleared"
    );

    // The session is gone at the broker: even its old cookie value is
    // worth nothing, and the next /authorize goes to the provider.
    let url = tb.authorize_url(APP, APP_CALLBACK, &[("connection", CONNECTION)]);
    let (_, location, _) = browser.get(&url).await;
    assert!(
        location
            .expect("redirect")
            .starts_with(tb.provider.origin())
    );
    let user = jwt_claims(id_token)["sub"]
        .as_str()
        .expect("sub")
        .to_owned();
    let (status, sessions) = admin_api(
        &tb.issuer,
        reqwest::Method::GET,
        &format!("users/{user}/sessions"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(sessions["sessions"], json!([]), "{sessions}");
}

#[tokio::test(flavor = "multi_thread")]
async fn auth0_logout_checks_return_to_against_the_apps_logout_urls() {
    let tb = bed(None).await;
    let mut browser = Browser::default();
    login_app(&tb, &mut browser, &[]).await;
    let (status, location, _) = browser
        .get(&format!(
            "{}/v2/logout?client_id={APP}&returnTo=https%3A%2F%2Fevil.test%2F",
            tb.issuer
        ))
        .await;
    assert_eq!((status, location), (400, None), "no open redirect");
    let (status, location, _) = browser
        .get(&format!(
            "{}/v2/logout?client_id={APP}&returnTo=http%3A%2F%2Fapp.test%2Fbye",
            tb.issuer
        ))
        .await;
    assert_eq!((status, location.as_deref()), (302, Some(BYE)));
    assert!(!has_session(&tb, &mut browser).await, "logged out");
}

/// The provider's logout page the federated test's connection names.
const PROVIDER_LOGOUT: &str = "https://id.provider.test/logout";

#[tokio::test(flavor = "multi_thread")]
async fn federated_logout_ends_the_session_and_sends_the_browser_to_the_providers_logout_page() {
    let tb = TestBed::start(|connections, config| {
        let app = config
            .clients
            .iter_mut()
            .find(|c| c.client_id == APP)
            .expect("the app");
        app.allowed_logout_urls = vec![BYE.into()];
        let connection = connections
            .iter_mut()
            .find(|c| c["name"] == CONNECTION)
            .expect("the connection");
        connection["options"]["logout_url"] = json!(PROVIDER_LOGOUT);
    })
    .await;
    let mut browser = Browser::default();
    login_app(&tb, &mut browser, &[]).await;
    let (status, location, _) = browser
        .get(&format!(
            "{}/v2/logout?client_id={APP}&returnTo=http%3A%2F%2Fapp.test%2Fbye&federated",
            tb.issuer
        ))
        .await;
    assert_eq!(
        (status, location.as_deref()),
        (302, Some(PROVIDER_LOGOUT)),
        "federated goes to the provider's logout page, not returnTo"
    );
    assert!(
        !has_session(&tb, &mut browser).await,
        "the Waypass session ended too"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn federated_logout_without_a_provider_logout_page_follows_return_to() {
    let tb = bed(None).await;
    let mut browser = Browser::default();
    login_app(&tb, &mut browser, &[]).await;
    let (status, location, _) = browser
        .get(&format!(
            "{}/v2/logout?client_id={APP}&returnTo=http%3A%2F%2Fapp.test%2Fbye&federated",
            tb.issuer
        ))
        .await;
    assert_eq!((status, location.as_deref()), (302, Some(BYE)));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_management_call_lists_and_ends_a_users_sessions() {
    let tb = bed(None).await;
    let mut browser = Browser::default();
    let landing = login_app(&tb, &mut browser, &[("scope", "openid")]).await;
    let tokens = redeem(
        &tb.issuer,
        APP,
        APP_SECRET,
        APP_CALLBACK,
        landing.location.as_ref().expect("redirect").as_str(),
    )
    .await;
    let id_claims = jwt_claims(str_of(&tokens, "id_token"));
    let user = id_claims["sub"].as_str().expect("sub");
    let (status, listed) = admin_api(
        &tb.issuer,
        reqwest::Method::GET,
        &format!("users/{user}/sessions"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let sessions = listed["sessions"].as_array().expect("a list");
    assert_eq!(sessions.len(), 1, "{listed}");
    assert_eq!(sessions[0]["id"], id_claims["sid"]);
    let sid = id_claims["sid"].as_str().expect("sid");
    let (status, _) = admin_api(
        &tb.issuer,
        reqwest::Method::DELETE,
        &format!("sessions/{sid}"),
        None,
    )
    .await;
    assert_eq!(status, 204);
    assert!(!has_session(&tb, &mut browser).await, "the session ended");
}

#[tokio::test(flavor = "multi_thread")]
async fn back_channel_logout_posts_a_logout_token_that_validates_as_an_app_would() {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let app_server = Stub::start(move |received| {
        let _ = tx.send(received.clone());
        Reply::Body(200, String::new())
    })
    .await;
    let tb = bed(Some(app_server.url("/backchannel"))).await;
    let mut browser = Browser::default();
    let landing = login_app(&tb, &mut browser, &[("scope", "openid")]).await;
    let tokens = redeem(
        &tb.issuer,
        APP,
        APP_SECRET,
        APP_CALLBACK,
        landing.location.as_ref().expect("redirect").as_str(),
    )
    .await;
    let id_claims = jwt_claims(str_of(&tokens, "id_token"));

    let (status, _, _) = browser.get(&format!("{}/oidc/logout", tb.issuer)).await;
    assert_eq!(status, 200, "the logged-out page");
    let received = tokio::time::timeout(NOTIFICATION_WAIT, rx.recv())
        .await
        .expect("the app is notified")
        .expect("a request");
    assert_eq!(received.method, "POST");
    assert_eq!(received.path_and_query, "/backchannel");
    assert_eq!(
        received.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    let logout_token = url::form_urlencoded::parse(&received.body)
        .find(|(k, _)| k == "logout_token")
        .map(|(_, v)| v.into_owned())
        .expect("a logout_token parameter");

    // Back-Channel Logout 1.0 §2.6, as the app validates it.
    let (header, lt) = verified(&tb, &logout_token).await;
    assert_eq!(header["typ"], "logout+jwt");
    assert_eq!(lt["iss"], tb.issuer);
    assert_eq!(lt["aud"], APP);
    let now = tb.clock.now();
    let iat = lt["iat"].as_u64().expect("iat");
    assert!(iat <= now && now - iat < 60, "iat {iat} at {now}");
    assert!(lt["exp"].as_u64().expect("exp") > now);
    assert!(lt["jti"].as_str().is_some_and(|j| !j.is_empty()));
    assert_eq!(
        lt["events"],
        json!({"http://schemas.openid.net/event/backchannel-logout": {}})
    );
    assert_eq!(lt["sid"], id_claims["sid"], "the session the app knows");
    assert_eq!(lt["sub"], id_claims["sub"]);
    assert!(lt.get("nonce").is_none(), "§2.4: no nonce");
}

// ---- response modes ----

#[tokio::test(flavor = "multi_thread")]
async fn form_post_answers_with_a_page_that_posts_the_code_and_state_to_the_app() {
    let tb = bed(None).await;
    let mut browser = Browser::default();
    let landing = login_app(&tb, &mut browser, &[("response_mode", "form_post")]).await;
    assert_eq!(landing.status, 200, "a page, not a redirect: {landing:?}");
    assert!(landing.location.is_none());
    let body = &landing.body;
    assert!(
        body.contains(&format!("<form method=\"post\" action=\"{APP_CALLBACK}\">")),
        "{body}"
    );
    assert!(body.contains("<input type=\"hidden\" name=\"state\" value=\"st-1\">"));
    let code_field = "<input type=\"hidden\" name=\"code\" value=\"";
    let start = body.find(code_field).expect("a code field") + code_field.len();
    let code = &body[start..start + body[start..].find('"').expect("value ends")];
    let tokens = redeem(
        &tb.issuer,
        APP,
        APP_SECRET,
        APP_CALLBACK,
        &format!("{APP_CALLBACK}?code={code}"),
    )
    .await;
    assert!(tokens.get("access_token").is_some(), "{tokens}");

    // The CSP allows the form to post only to the app, and no other script.
    let url = tb.authorize_url(
        APP,
        APP_CALLBACK,
        &[("connection", CONNECTION), ("response_mode", "form_post")],
    );
    let cookie = browser
        .cookies
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("; ");
    let resp = http_client()
        .get(&url)
        .header("cookie", cookie)
        .send()
        .await
        .expect("authorize");
    assert_eq!(
        resp.status(),
        200,
        "single sign-on answers with the form too"
    );
    let csp = resp
        .headers()
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .expect("a CSP")
        .to_owned();
    assert!(csp.contains("form-action http://app.test"), "{csp}");
    assert!(csp.contains("script-src 'sha256-"), "{csp}");

    // Any other mode is refused, in the default mode.
    let url = tb.authorize_url(
        APP,
        APP_CALLBACK,
        &[("connection", CONNECTION), ("response_mode", "fragment")],
    );
    let (status, location, _) = Browser::default().get(&url).await;
    assert_eq!(status, 302);
    assert!(
        location
            .expect("redirect")
            .starts_with(&format!("{APP_CALLBACK}?error=invalid_request"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn discovery_names_the_session_endpoints_and_modes() {
    let tb = bed(None).await;
    let d: Value = http_client()
        .get(format!("{}/.well-known/openid-configuration", tb.issuer))
        .send()
        .await
        .expect("discovery")
        .json()
        .await
        .expect("json");
    let i = &tb.issuer;
    assert_eq!(d["end_session_endpoint"], format!("{i}/oidc/logout"));
    assert_eq!(d["revocation_endpoint"], format!("{i}/oauth/revoke"));
    assert_eq!(d["introspection_endpoint"], format!("{i}/oauth/introspect"));
    assert_eq!(d["backchannel_logout_supported"], true);
    assert_eq!(d["response_modes_supported"], json!(["query", "form_post"]));
    assert!(
        d["grant_types_supported"]
            .as_array()
            .expect("grants")
            .contains(&json!("refresh_token"))
    );
}
