//! Providers as they really are (issue #12), end to end: OpenID Connect
//! providers found by discovery, whose id_tokens are verified before any
//! profile is made; the client authentication methods as the provider sees
//! them; token responses as GitHub sends them.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use serde_json::{Value, json};
use waypass::dev_provider::{DevClientAuth, IdTokenFault, TokenStyle, default_user};
use waypass::upstream::discovery::JWKS_MISS_REFETCH_INTERVAL;
use waypass_tests::login::{
    APP, APP_CALLBACK, APP_SECRET, Browser, CONNECTION, Landing, PROVIDER_CLIENT, PROVIDER_SECRET,
    TestBed, admin_api, http_client, redeem, userinfo,
};

/// The OpenID Connect connection of these tests.
const OIDC: &str = "oidc";

/// The provider's origin, read from the default connection.
fn provider_origin(connections: &[Value]) -> String {
    connections[0]["options"]["authorizationURL"]
        .as_str()
        .and_then(|u| u.strip_suffix("/authorize"))
        .expect("the default connection names the provider")
        .to_owned()
}

/// A connection that names only the provider's issuer: endpoints from
/// discovery, the profile from the built-in claims mapper.
fn oidc_connection(provider: &str) -> Value {
    json!({
        "name": OIDC,
        "enabled_clients": [APP],
        "options": {
            "issuer": provider,
            "scope": "openid email",
            "client_id": PROVIDER_CLIENT,
            "client_secret": PROVIDER_SECRET,
            "mapper_egress": {"allow_private_networks": true}
        }
    })
}

/// A test bed with the [`OIDC`] connection, its options changed by `options`.
async fn oidc_bed(options: impl FnOnce(&mut Value)) -> TestBed {
    TestBed::start(|connections, _| {
        let mut conn = oidc_connection(&provider_origin(connections));
        options(&mut conn["options"]);
        connections.push(conn);
    })
    .await
}

async fn login_with(tb: &TestBed, connection: &str) -> Landing {
    let url = tb.authorize_url(
        APP,
        APP_CALLBACK,
        &[("state", "app-state"), ("connection", connection)],
    );
    Browser::default().login(tb, &url, false).await
}

fn oidc_user() -> String {
    format!("oauth2|{OIDC}|{}", default_user().uuid)
}

/// The login reached the app with a code.
fn assert_logged_in(landing: &Landing) {
    assert!(landing.param("code").is_some(), "{landing:?}");
}

/// The login reached the app refused, its description saying `needle`.
fn assert_refused(landing: &Landing, needle: &str) {
    assert_eq!(
        landing.param("error").as_deref(),
        Some("access_denied"),
        "{landing:?}"
    );
    let description = landing.param("error_description").unwrap_or_default();
    assert!(description.contains(needle), "{description}");
    assert!(landing.param("code").is_none());
}

/// The claims of a compact JWS, unverified (what the provider received).
fn jws_part(token: &str, index: usize) -> Value {
    let part = token.split('.').nth(index).expect("a compact JWS");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("base64url")).expect("JSON")
}

// ---- OpenID Connect: discovery, id_token, claims mapper ----

#[tokio::test(flavor = "multi_thread")]
async fn an_issuer_alone_logs_in_through_discovery_with_a_nonce_and_the_id_tokens_claims() {
    let tb = oidc_bed(|_| {}).await;
    tb.provider.set_claims(
        &default_user().uuid,
        json!({"name": "Ada Lovelace", "preferred_username": "ada"}),
    );
    assert_logged_in(&login_with(&tb, OIDC).await);

    let user = tb.broker_user(&oidc_user()).await.expect("recorded");
    assert_eq!(
        user.profile.email.as_deref(),
        Some(default_user().email.as_str())
    );
    assert_eq!(user.profile.email_verified, Some(true));
    assert_eq!(user.profile.name.as_deref(), Some("Ada Lovelace"));
    assert_eq!(user.profile.extra["username"], "ada");
    let authorize = &tb.provider.requests_to("/authorize")[0];
    let nonce = authorize.query_param("nonce").expect("a nonce is sent");
    assert!(nonce.len() >= 32, "a nonce with entropy: {nonce}");
    assert_eq!(
        tb.provider.requests_to("/userinfo").len()
            + tb.provider.requests_to("/oidc/userinfo").len(),
        0,
        "the id_token source needs no userinfo call"
    );

    // A second login uses the cached discovery document and key set.
    assert_logged_in(&login_with(&tb, OIDC).await);
    assert_eq!(
        tb.provider
            .requests_to("/.well-known/openid-configuration")
            .len(),
        1
    );
    assert_eq!(tb.provider.requests_to("/jwks").len(), 1);
    let second = tb.provider.requests_to("/authorize");
    assert_ne!(
        second[1].query_param("nonce"),
        Some(nonce),
        "each login its own nonce"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_id_token_signed_by_another_key_under_a_published_kid_fails_the_login() {
    let tb = oidc_bed(|_| {}).await;
    tb.provider.set_id_token_fault(IdTokenFault::ForeignKey);
    assert_refused(&login_with(&tb, OIDC).await, "signature does not verify");
    assert!(tb.broker_user(&oidc_user()).await.is_none(), "no user made");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_id_token_for_another_audience_fails_the_login() {
    let tb = oidc_bed(|_| {}).await;
    tb.provider
        .set_id_token_fault(IdTokenFault::Audience("another-client".into()));
    assert_refused(&login_with(&tb, OIDC).await, "not meant for this client");
    assert!(tb.broker_user(&oidc_user()).await.is_none(), "no user made");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_id_token_replayed_from_an_earlier_login_fails_on_its_nonce() {
    let tb = oidc_bed(|_| {}).await;
    assert_logged_in(&login_with(&tb, OIDC).await);
    tb.provider.set_id_token_fault(IdTokenFault::ReplayPrevious);
    assert_refused(&login_with(&tb, OIDC).await, "nonce");
    let user = tb.broker_user(&oidc_user()).await.expect("the first login");
    assert_eq!(user.logins_count, 1, "the replay logged nobody in");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_openid_scope_without_an_id_token_fails_a_login_that_reads_the_id_token() {
    let tb = oidc_bed(|_| {}).await;
    tb.provider.set_id_token_fault(IdTokenFault::Omit);
    let landing = login_with(&tb, OIDC).await;
    assert_eq!(
        landing.param("error").as_deref(),
        Some("server_error"),
        "{landing:?}"
    );
    assert!(
        landing
            .param("error_description")
            .is_some_and(|d| d.contains("no id_token")),
        "{landing:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rotated_provider_keys_are_fetched_on_a_key_miss_at_most_once_per_interval() {
    let tb = oidc_bed(|_| {}).await;
    assert_logged_in(&login_with(&tb, OIDC).await);
    assert_eq!(tb.provider.requests_to("/jwks").len(), 1);

    // The provider rotates; the cached set lacks the new kid.
    tb.provider.rotate_keys().expect("rotate");
    tb.clock.advance(JWKS_MISS_REFETCH_INTERVAL);
    assert_logged_in(&login_with(&tb, OIDC).await);
    assert_eq!(
        tb.provider.requests_to("/jwks").len(),
        2,
        "fetched again once"
    );

    // Another rotation within the interval: the miss does not refetch, so
    // a stream of tokens with unknown kids cannot hammer the provider.
    tb.provider.rotate_keys().expect("rotate");
    assert_refused(&login_with(&tb, OIDC).await, "no key");
    assert_refused(&login_with(&tb, OIDC).await, "no key");
    assert_eq!(
        tb.provider.requests_to("/jwks").len(),
        2,
        "not fetched again"
    );
    tb.clock.advance(JWKS_MISS_REFETCH_INTERVAL);
    assert_logged_in(&login_with(&tb, OIDC).await);
    assert_eq!(tb.provider.requests_to("/jwks").len(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_claims_mapper_reads_nested_claims_a_chosen_user_id_and_groups() {
    let tb = oidc_bed(|o| {
        o["user_id_claim"] = json!("/ext/employee_id");
        o["groups_claim"] = json!("/realm_access/roles");
        o["claim_mapping"] = json!({"name": "/ext/display", "tenant": "https://acme.test/tenant"});
    })
    .await;
    tb.provider.set_claims(
        &default_user().uuid,
        json!({
            "ext": {"employee_id": "E-42", "display": "Ada L."},
            "realm_access": {"roles": ["admin", "user"]},
            "https://acme.test/tenant": "acme"
        }),
    );
    assert_logged_in(&login_with(&tb, OIDC).await);
    let user = tb
        .broker_user(&format!("oauth2|{OIDC}|E-42"))
        .await
        .expect("recorded under the chosen claim");
    assert_eq!(user.profile.name.as_deref(), Some("Ada L."));
    assert_eq!(user.profile.extra["groups"], json!(["admin", "user"]));
    assert_eq!(user.profile.extra["tenant"], "acme");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_claims_mapper_reads_userinfo_alone_or_over_the_id_token() {
    for source in ["userinfo", "both"] {
        let tb = oidc_bed(|o| o["claims_source"] = json!(source)).await;
        tb.provider
            .set_claims(&default_user().uuid, json!({"nickname": "countess"}));
        assert_logged_in(&login_with(&tb, OIDC).await);
        let user = tb.broker_user(&oidc_user()).await.expect("recorded");
        assert_eq!(
            user.profile.nickname.as_deref(),
            Some("countess"),
            "{source}"
        );
        let calls = tb.provider.requests_to("/oidc/userinfo");
        assert_eq!(calls.len(), 1, "{source}: the discovered userinfo endpoint");
        assert!(
            calls[0]
                .header("authorization")
                .is_some_and(|a| a.starts_with("Bearer ")),
            "{source}"
        );
    }
}

// ---- client authentication towards the provider ----

#[tokio::test(flavor = "multi_thread")]
async fn client_secret_post_is_the_default_and_sends_the_secret_in_the_form() {
    let tb = oidc_bed(|_| {}).await;
    assert_logged_in(&login_with(&tb, OIDC).await);
    let token = &tb.provider.requests_to("/token")[0];
    assert_eq!(token.form_param("client_id"), Some(PROVIDER_CLIENT));
    assert_eq!(token.form_param("client_secret"), Some(PROVIDER_SECRET));
    assert_eq!(token.header("authorization"), None);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_public_client_sends_its_id_and_pkce_verifier_and_no_secret() {
    let tb = oidc_bed(|o| {
        o["token_endpoint_auth_method"] = json!("none");
        o.as_object_mut().expect("options").remove("client_secret");
    })
    .await;
    tb.provider
        .set_client_auth(PROVIDER_CLIENT, DevClientAuth::None);
    assert_logged_in(&login_with(&tb, OIDC).await);
    let token = &tb.provider.requests_to("/token")[0];
    assert_eq!(token.form_param("client_id"), Some(PROVIDER_CLIENT));
    assert!(token.form_param("code_verifier").is_some());
    assert_eq!(token.form_param("client_secret"), None);
    assert_eq!(token.header("authorization"), None);
}

/// The connection's id, as the management API names it.
async fn connection_id(tb: &TestBed, name: &str) -> String {
    let (status, list) = admin_api(&tb.issuer, reqwest::Method::GET, "connections", None).await;
    assert_eq!(status, 200, "{list}");
    list.as_array()
        .and_then(|l| l.iter().find(|c| c["name"] == name))
        .and_then(|c| c["id"].as_str())
        .expect("the connection is listed")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn private_key_jwt_assertions_verify_at_the_provider_against_the_published_keys_across_a_rotation()
 {
    let tb = oidc_bed(|o| {
        o["token_endpoint_auth_method"] = json!("private_key_jwt");
        o.as_object_mut().expect("options").remove("client_secret");
    })
    .await;
    let jwks_url = format!("{}/connections/{OIDC}/jwks.json", tb.issuer);
    tb.provider.set_client_auth(
        PROVIDER_CLIENT,
        DevClientAuth::PrivateKeyJwt {
            jwks_uri: jwks_url.clone(),
        },
    );
    assert_logged_in(&login_with(&tb, OIDC).await);
    let token = &tb.provider.requests_to("/token")[0];
    assert_eq!(token.form_param("client_secret"), None);
    assert_eq!(token.header("authorization"), None);
    assert_eq!(
        token.form_param("client_assertion_type"),
        Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
    );
    let assertion = token.form_param("client_assertion").expect("an assertion");
    let claims = jws_part(assertion, 1);
    assert_eq!(claims["iss"], PROVIDER_CLIENT);
    assert_eq!(claims["sub"], PROVIDER_CLIENT);
    assert_eq!(claims["aud"], tb.provider.token_url());
    let lifetime = claims["exp"].as_u64().expect("exp") - claims["iat"].as_u64().expect("iat");
    assert!(lifetime <= 60, "a short-lived assertion: {lifetime}s");
    assert!(claims["jti"].as_str().is_some_and(|j| j.len() >= 16));
    let first_kid = jws_part(assertion, 0)["kid"].clone();
    assert!(first_kid.is_string());

    // Rotation: the new key signs, both stay published.
    let id = connection_id(&tb, OIDC).await;
    let (status, rotated) = admin_api(
        &tb.issuer,
        reqwest::Method::POST,
        &format!("connections/{id}/keys/rotate"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{rotated}");
    assert_logged_in(&login_with(&tb, OIDC).await);
    let token = &tb.provider.requests_to("/token")[1];
    let second_kid =
        jws_part(token.form_param("client_assertion").expect("assertion"), 0)["kid"].clone();
    assert_ne!(first_kid, second_kid, "the new key signs");

    // The provider refuses a replayed assertion, as RFC 7523 §3 item 7 lets it.
    let replay = http_client()
        .post(tb.provider.token_url())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(token.body.to_vec())
        .send()
        .await
        .expect("token request");
    assert_eq!(replay.status(), 401);
    let refusal: Value = replay.json().await.expect("JSON");
    assert_eq!(refusal["error"], "invalid_client", "{refusal}");
    assert!(
        refusal["error_description"]
            .as_str()
            .is_some_and(|d| d.contains("already used")),
        "{refusal}"
    );
    let published: Value = http_client()
        .get(&jwks_url)
        .send()
        .await
        .expect("jwks")
        .json()
        .await
        .expect("JSON");
    let kids: Vec<&Value> = published["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| &k["kid"])
        .collect();
    assert!(
        kids.contains(&&first_kid) && kids.contains(&&second_kid),
        "{published}"
    );
    assert!(
        published["keys"]
            .as_array()
            .expect("keys")
            .iter()
            .all(|k| k.get("d").is_none() && k.get("p").is_none()),
        "public halves only: {published}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connection_without_private_key_jwt_publishes_no_keys() {
    let tb = oidc_bed(|_| {}).await;
    let response = http_client()
        .get(format!("{}/connections/{OIDC}/jwks.json", tb.issuer))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 404);
    let response = http_client()
        .get(format!("{}/connections/no-such/jwks.json", tb.issuer))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 404);
}

// ---- token responses as providers send them ----

#[tokio::test(flavor = "multi_thread")]
async fn a_github_style_form_encoded_token_answer_logs_in() {
    let tb = TestBed::start(|_, _| {}).await;
    tb.provider.set_token_style(TokenStyle::GitHub);
    assert_logged_in(&login_with(&tb, CONNECTION).await);
    let user_id = format!("oauth2|{CONNECTION}|{}", default_user().uuid);
    let user = tb.broker_user(&user_id).await.expect("recorded");
    assert_eq!(
        user.profile.email.as_deref(),
        Some(default_user().email.as_str())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_error_inside_a_200_token_answer_fails_the_login_with_the_providers_error() {
    let tb = TestBed::start(|_, _| {}).await;
    tb.provider.set_token_style(TokenStyle::GitHub);
    // The provider now takes the broker for a public client: it refuses
    // the secret, as GitHub does, with a `200` carrying `error`.
    tb.provider
        .set_client_auth(PROVIDER_CLIENT, DevClientAuth::None);
    let landing = login_with(&tb, CONNECTION).await;
    assert_eq!(
        landing.param("error").as_deref(),
        Some("server_error"),
        "{landing:?}"
    );
    assert!(
        landing
            .param("error_description")
            .is_some_and(|d| d.contains("invalid_client")),
        "{landing:?}"
    );
    let user_id = format!("oauth2|{CONNECTION}|{}", default_user().uuid);
    assert!(tb.broker_user(&user_id).await.is_none());
}

// ---- providers that close idle connections ----

/// A proxy on 127.0.0.1:0 in front of `upstream` that closes each client
/// connection when a second request arrives on it, before forwarding a
/// byte of it: a provider whose idle timeout fires exactly as the broker
/// reuses the connection (Node's `keepAliveTimeout` race). Counts the
/// connections it closed that way.
fn closing_proxy(
    listener: std::net::TcpListener,
    upstream: std::net::SocketAddr,
) -> Arc<AtomicUsize> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    listener.set_nonblocking(true).expect("non-blocking");
    let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
    let closed = Arc::new(AtomicUsize::new(0));
    let counter = closed.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let Ok(server) = tokio::net::TcpStream::connect(upstream).await else {
                    return;
                };
                let (mut client_read, mut client_write) = client.into_split();
                let (mut server_read, mut server_write) = server.into_split();
                let answered = Arc::new(AtomicBool::new(false));
                let seen = answered.clone();
                let requests = async move {
                    let mut buf = vec![0u8; 16 * 1024];
                    loop {
                        let n = client_read.read(&mut buf).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        if seen.load(Ordering::SeqCst) {
                            // The idle timeout fired: closed, unanswered.
                            counter.fetch_add(1, Ordering::SeqCst);
                            return;
                        }
                        if server_write.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                };
                let answers = async move {
                    let mut buf = vec![0u8; 16 * 1024];
                    loop {
                        let n = server_read.read(&mut buf).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        answered.store(true, Ordering::SeqCst);
                        if client_write.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                };
                // Either side ending drops both sockets.
                tokio::select! {
                    () = requests => {}
                    () = answers => {}
                }
            });
        }
    });
    closed
}

#[tokio::test(flavor = "multi_thread")]
async fn no_login_fails_when_the_provider_closes_each_reused_connection_as_it_arrives() {
    /// Enough logins that every reuse of the pooled connection meets the
    /// close many times over.
    const LOGINS: usize = 20;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let proxy = listener.local_addr().expect("addr");
    let tb = TestBed::start(|connections, _| {
        connections[0]["options"]["tokenURL"] = json!(format!("http://{proxy}/token"));
    })
    .await;
    let closed = closing_proxy(listener, tb.provider.addr());
    for i in 0..LOGINS {
        let landing = login_with(&tb, CONNECTION).await;
        assert!(landing.param("code").is_some(), "login {i}: {landing:?}");
    }
    assert_eq!(
        closed.load(Ordering::SeqCst),
        LOGINS - 1,
        "every login after the first met a closed connection"
    );
    let user_id = format!("oauth2|{CONNECTION}|{}", default_user().uuid);
    let user = tb.broker_user(&user_id).await.expect("recorded");
    assert_eq!(user.logins_count, LOGINS as u64);
}

// ---- profile sync ----

#[tokio::test(flavor = "multi_thread")]
async fn each_root_attribute_sync_mode_across_two_logins() {
    // (mode, name stored after the first login, after the second)
    let cases = [
        ("on_each_login", Some("Ada"), Some("Bea")),
        ("on_first_login", Some("Ada"), Some("Ada")),
        ("never_on_login", None, None),
    ];
    for (mode, first, second) in cases {
        let tb = oidc_bed(|o| o["set_user_root_attributes"] = json!(mode)).await;
        let uuid = default_user().uuid;
        tb.provider
            .set_claims(&uuid, json!({"name": "Ada", "groups": ["g1"]}));
        assert_logged_in(&login_with(&tb, OIDC).await);
        let user = tb.broker_user(&oidc_user()).await.expect("recorded");
        assert_eq!(user.profile.name.as_deref(), first, "{mode}: first login");

        tb.provider
            .set_claims(&uuid, json!({"name": "Bea", "groups": ["g2"]}));
        assert_logged_in(&login_with(&tb, OIDC).await);
        let user = tb.broker_user(&oidc_user()).await.expect("recorded");
        assert_eq!(user.profile.name.as_deref(), second, "{mode}: second login");
        assert_eq!(user.logins_count, 2, "{mode}");
        assert_eq!(
            user.profile.extra["groups"],
            json!(["g2"]),
            "{mode}: groups are not a root attribute and follow the provider"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn non_persistent_attributes_never_reach_the_store() {
    let tb = oidc_bed(|o| o["non_persistent_attrs"] = json!(["nickname", "gender"])).await;
    tb.provider.set_claims(
        &default_user().uuid,
        json!({"nickname": "countess", "name": "Ada"}),
    );
    assert_logged_in(&login_with(&tb, OIDC).await);
    let user = tb.broker_user(&oidc_user()).await.expect("recorded");
    assert_eq!(user.profile.nickname, None);
    assert_eq!(
        user.profile.name.as_deref(),
        Some("Ada"),
        "the others are kept"
    );
    let stored = serde_json::to_string(&user.profile).expect("JSON");
    assert!(!stored.contains("countess"), "{stored}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_lists_its_identity_in_auth0s_shape() {
    let tb = oidc_bed(|_| {}).await;
    assert_logged_in(&login_with(&tb, OIDC).await);
    let (status, page) = admin_api(&tb.issuer, reqwest::Method::GET, "users", None).await;
    assert_eq!(status, 200, "{page}");
    // Without paging parameters, Auth0 answers a bare array.
    let user = &page[0];
    assert_eq!(user["user_id"], oidc_user());
    // The admin token holds `read:user_idp_tokens`: the provider's tokens
    // are in the identity too (without it, they are not: see
    // `secrets_at_rest.rs`).
    let mut identities = user["identities"].clone();
    if let Some(identity) = identities[0].as_object_mut() {
        assert!(
            identity
                .remove("access_token")
                .is_some_and(|t| t.is_string()),
            "{user}"
        );
        identity.remove("refresh_token");
        identity.remove("expires_in");
    }
    assert_eq!(
        identities,
        json!([{
            "provider": "oauth2",
            "connection": OIDC,
            "user_id": default_user().uuid,
            "isSocial": true
        }])
    );
}

// ---- root attributes reach the app by scope ----

/// Logs in to [`OIDC`] as [`APP`] asking `scope`; the app's id_token
/// claims and its `/userinfo` answer.
async fn app_claims(tb: &TestBed, scope: &str) -> (Value, Value) {
    let url = tb.authorize_url(
        APP,
        APP_CALLBACK,
        &[("state", "s"), ("connection", OIDC), ("scope", scope)],
    );
    let landing = Browser::default().login(tb, &url, false).await;
    let redirect = landing.location.expect("redirected to the app").to_string();
    let tokens = redeem(&tb.issuer, APP, APP_SECRET, APP_CALLBACK, &redirect).await;
    let id_token = tokens["id_token"].as_str().expect("an id_token");
    let access = tokens["access_token"].as_str().expect("an access token");
    (jws_part(id_token, 1), userinfo(&tb.issuer, access).await)
}

#[tokio::test(flavor = "multi_thread")]
async fn root_attributes_and_groups_reach_the_apps_tokens_by_scope() {
    let tb = oidc_bed(|_| {}).await;
    tb.provider.set_claims(
        &default_user().uuid,
        json!({"name": "Ada", "preferred_username": "ada", "phone_number": "+44 20 7946 0000",
               "phone_number_verified": true, "groups": ["admins"]}),
    );
    let (id, info) = app_claims(&tb, "openid profile email phone groups").await;
    for claims in [&id, &info] {
        assert_eq!(claims["name"], "Ada", "{claims}");
        assert_eq!(claims["preferred_username"], "ada", "{claims}");
        assert_eq!(claims["email"], default_user().email.as_str(), "{claims}");
        assert_eq!(claims["phone_number"], "+44 20 7946 0000", "{claims}");
        assert_eq!(claims["phone_number_verified"], true, "{claims}");
        assert_eq!(claims["groups"], json!(["admins"]), "{claims}");
    }

    let (id, info) = app_claims(&tb, "openid email").await;
    for claims in [&id, &info] {
        assert_eq!(claims["email"], default_user().email.as_str(), "{claims}");
        for absent in ["name", "preferred_username", "phone_number", "groups"] {
            assert!(
                claims.get(absent).is_none(),
                "{absent} without its scope: {claims}"
            );
        }
    }
}

// ---- non-persistent attributes reach the app, never the database ----

#[tokio::test(flavor = "multi_thread")]
async fn non_persistent_attributes_reach_the_logins_id_token_and_never_the_database_file() {
    use waypass_tests::login::{ADMIN_TOKEN, PKCE_CHALLENGE, redeem};
    const SECRET_NICKNAME: &str = "countess-of-lovelace-never-stored";
    let dir = tempfile::tempdir().expect("tempdir");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let issuer = format!("http://{}", listener.local_addr().expect("addr"));
    let provider = waypass::dev_provider::DevProvider::new()
        .with_client(
            PROVIDER_CLIENT,
            PROVIDER_SECRET,
            format!("{issuer}/login/callback"),
        )
        .start(
            tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind"),
        );
    provider.set_claims(
        &default_user().uuid,
        json!({"nickname": SECRET_NICKNAME, "name": "Ada"}),
    );
    let origin = provider.origin().to_owned();
    std::fs::write(dir.path().join("admin-token"), ADMIN_TOKEN).expect("token file");
    let path = dir.path().join("waypass.toml");
    std::fs::write(
        &path,
        format!(
            r#"
issuer = "{issuer}"
data_dir = "data"
admin_token_file = "admin-token"
[[clients]]
client_id = "{APP}"
client_secret = "{APP_SECRET}"
callbacks = ["{APP_CALLBACK}"]
[[connections]]
name = "{OIDC}"
enabled_clients = ["{APP}"]
[connections.options]
issuer = "{origin}"
scope = "openid profile email"
client_id = "{PROVIDER_CLIENT}"
client_secret = "{PROVIDER_SECRET}"
non_persistent_attrs = ["nickname"]
mapper_egress = {{ allow_private_networks = true }}
"#
        ),
    )
    .expect("config");
    let config = waypass::broker::config::Config::load(&path).expect("config loads");
    let broker = Arc::new(
        waypass::broker::Broker::from_config(&config)
            .await
            .expect("broker starts"),
    );
    let server = tokio::spawn(waypass::broker::server::serve(
        listener,
        broker.clone(),
        std::future::pending(),
    ));
    let authorize = format!(
        "{issuer}/authorize?response_type=code&client_id={APP}&redirect_uri={}&scope=openid%20profile&connection={OIDC}\
         &state=s&code_challenge={PKCE_CHALLENGE}&code_challenge_method=S256",
        url::form_urlencoded::byte_serialize(APP_CALLBACK.as_bytes()).collect::<String>()
    );
    let landing = Browser::default()
        .login_at(&issuer, &origin, &authorize, false)
        .await;
    let redirect = landing.location.expect("to the app").to_string();
    let tokens = redeem(&issuer, APP, APP_SECRET, APP_CALLBACK, &redirect).await;
    let id_token = jws_part(tokens["id_token"].as_str().expect("an id_token"), 1);
    assert_eq!(id_token["nickname"], SECRET_NICKNAME, "{id_token}");
    assert_eq!(id_token["name"], "Ada", "the stored attributes as ever");

    let (status, user) = admin_api(
        &issuer,
        reqwest::Method::GET,
        &format!("users/{}", oidc_user().replace('|', "%7C")),
        None,
    )
    .await;
    assert_eq!(status, 200, "{user}");
    assert!(user.get("nickname").is_none(), "{user}");
    broker.events().flush().await;
    server.abort();
    let _ = server.await;
    drop(broker);
    // Every file of the database (the WAL included) as bytes: no trace.
    let files: Vec<std::path::PathBuf> = std::fs::read_dir(dir.path().join("data"))
        .expect("data dir")
        .map(|entry| entry.expect("entry").path())
        .filter(|p| p.is_file())
        .collect();
    assert!(files.iter().any(|f| f.ends_with("waypass.db")), "{files:?}");
    for file in files {
        let bytes = std::fs::read(&file).expect("read");
        assert!(
            !bytes
                .windows(SECRET_NICKNAME.len())
                .any(|w| w == SECRET_NICKNAME.as_bytes()),
            "{} holds the non-persistent attribute",
            file.display()
        );
    }
}
