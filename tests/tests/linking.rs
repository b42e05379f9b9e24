//! Account linking (issue #12 §6), end to end through the development
//! provider: two OpenID Connect connections to one provider, whose
//! id_tokens carry the email and `email_verified` each test chooses; the
//! app's `sub`, the management API's `identities`, Auth0's unlink, and
//! the `link` / `unlink` events in `/api/v2/logs`.

use serde_json::{Value, json};
use waypass::dev_provider::default_user;
use waypass_tests::login::{
    APP, APP_CALLBACK, Browser, Landing, PROVIDER_CLIENT, PROVIDER_SECRET, TestBed, admin_api,
    sub_after_login,
};

/// The connection every first login goes through: no linking.
const FIRST: &str = "first";
/// The second connection, whose `account_linking` each test chooses.
const SECOND: &str = "second";

fn provider_origin(connections: &[Value]) -> String {
    connections[0]["options"]["authorizationURL"]
        .as_str()
        .and_then(|u| u.strip_suffix("/authorize"))
        .expect("the default connection names the provider")
        .to_owned()
}

/// An OpenID Connect connection `name` to the development provider, its
/// profile from the id_token's claims.
fn oidc_connection(name: &str, provider: &str, account_linking: &str) -> Value {
    json!({
        "name": name,
        "enabled_clients": [APP],
        "options": {
            "issuer": provider,
            "scope": "openid email",
            "client_id": PROVIDER_CLIENT,
            "client_secret": PROVIDER_SECRET,
            "mapper_egress": {"allow_private_networks": true},
            "account_linking": account_linking
        }
    })
}

/// A test bed with [`FIRST`] (no linking) and [`SECOND`] (`linking`).
async fn bed(linking: &str) -> TestBed {
    TestBed::start(|connections, _| {
        let provider = provider_origin(connections);
        connections.push(oidc_connection(FIRST, &provider, "none"));
        connections.push(oidc_connection(SECOND, &provider, linking));
    })
    .await
}

async fn login_with(tb: &TestBed, connection: &str) -> Landing {
    let url = tb.authorize_url(
        APP,
        APP_CALLBACK,
        &[("state", "s"), ("connection", connection)],
    );
    Browser::default().login(tb, &url, false).await
}

/// Logs in through `connection` and returns the `sub` the app learns.
async fn sub_of_login(tb: &TestBed, connection: &str) -> String {
    let landing = login_with(tb, connection).await;
    let redirect = landing
        .location
        .unwrap_or_else(|| panic!("no redirect: {:?}", landing.body))
        .to_string();
    sub_after_login(&tb.issuer, &redirect)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The provider says the default user's email is `verified` (or not).
fn provider_says_verified(tb: &TestBed, verified: bool) {
    tb.provider.set_claims(
        &default_user().uuid,
        json!({"email_verified": verified, "name": "Ada"}),
    );
}

fn user_id(connection: &str) -> String {
    format!("oauth2|{connection}|{}", default_user().uuid)
}

async fn api_user(tb: &TestBed, id: &str) -> (u16, Value) {
    let path = format!("users/{}", urlencoding(id));
    admin_api(&tb.issuer, reqwest::Method::GET, &path, None).await
}

/// A path segment: `|` percent-encoded (the broker decodes segments).
fn urlencoding(s: &str) -> String {
    s.replace('|', "%7C")
}

/// The events of `kind` in `/api/v2/logs`.
async fn events_of(tb: &TestBed, kind: &str) -> Vec<Value> {
    let (status, page) = admin_api(
        &tb.issuer,
        reqwest::Method::GET,
        &format!("logs?q=type:{kind}"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{page}");
    page.as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_connection_with_the_same_verified_email_links_to_one_user_with_the_same_sub() {
    let tb = bed("link_by_verified_email").await;
    provider_says_verified(&tb, true);
    let first = sub_of_login(&tb, FIRST).await;
    assert_eq!(first, user_id(FIRST));
    let second = sub_of_login(&tb, SECOND).await;
    assert_eq!(second, first, "the app sees one user");
    assert!(tb.broker_user(&user_id(SECOND)).await.is_none());

    let (status, user) = api_user(&tb, &first).await;
    assert_eq!(status, 200, "{user}");
    assert_eq!(user["logins_count"], 2);
    let identities = user["identities"].as_array().expect("identities");
    assert_eq!(identities.len(), 2, "{user}");
    // The admin holds read:user_idp_tokens: each identity shows its own
    // provider tokens (both identities logged in once).
    let mut primary = identities[0].clone();
    let fields = primary.as_object_mut().expect("an identity object");
    assert!(
        fields.remove("access_token").is_some_and(|t| t.is_string()),
        "{user}"
    );
    fields.remove("refresh_token");
    fields.remove("expires_in");
    assert!(identities[1]["access_token"].is_string(), "{user}");
    assert_eq!(
        primary,
        json!({"provider": "oauth2", "connection": FIRST, "user_id": default_user().uuid, "isSocial": true}),
        "the primary identity first, its profile the user's own"
    );
    assert_eq!(identities[1]["connection"], SECOND);
    assert_eq!(identities[1]["user_id"], default_user().uuid);
    assert_eq!(
        identities[1]["profileData"]["email"],
        default_user().email,
        "{user}"
    );

    let links = events_of(&tb, "link").await;
    assert_eq!(links.len(), 1, "{links:?}");
    assert_eq!(links[0]["user_id"], first);
    assert_eq!(links[0]["connection"], SECOND);
    assert_eq!(links[0]["details"]["by"], "login");
    assert_eq!(links[0]["details"]["reason"], "link_by_verified_email");
    assert_eq!(links[0]["details"]["identity"]["connection"], SECOND);

    // Later logins through the linked identity stay with the user.
    assert_eq!(sub_of_login(&tb, SECOND).await, first);
    assert_eq!(events_of(&tb, "link").await.len(), 1, "linked once");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unverified_email_at_the_provider_keeps_the_users_apart() {
    let tb = bed("link_by_verified_email").await;
    provider_says_verified(&tb, false);
    assert_eq!(sub_of_login(&tb, FIRST).await, user_id(FIRST));
    assert_eq!(
        sub_of_login(&tb, SECOND).await,
        user_id(SECOND),
        "neither side verified: a user of its own"
    );
    assert!(events_of(&tb, "link").await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unverified_existing_user_is_not_linked_even_when_the_new_email_is_verified() {
    let tb = bed("link_by_verified_email").await;
    provider_says_verified(&tb, false);
    assert_eq!(sub_of_login(&tb, FIRST).await, user_id(FIRST));
    provider_says_verified(&tb, true);
    assert_eq!(sub_of_login(&tb, SECOND).await, user_id(SECOND));
    let (_, user) = api_user(&tb, &user_id(FIRST)).await;
    assert_eq!(user["identities"].as_array().map(Vec::len), Some(1));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_duplicate_email_is_refused_at_the_app_where_the_connection_denies_it() {
    let tb = bed("deny_duplicate_email").await;
    provider_says_verified(&tb, false);
    assert_eq!(sub_of_login(&tb, FIRST).await, user_id(FIRST));
    let landing = login_with(&tb, SECOND).await;
    assert_eq!(
        landing.param("error").as_deref(),
        Some("access_denied"),
        "{landing:?}"
    );
    let description = landing.param("error_description").unwrap_or_default();
    assert!(description.contains("email"), "{description}");
    assert!(landing.param("code").is_none());
    assert!(tb.broker_user(&user_id(SECOND)).await.is_none());
    let failures = events_of(&tb, "f").await;
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0]["connection"], SECOND);
}

#[tokio::test(flavor = "multi_thread")]
async fn unlinking_makes_the_identity_its_own_user_and_is_logged_with_its_caller() {
    let tb = bed("link_by_verified_email").await;
    provider_says_verified(&tb, true);
    let primary = sub_of_login(&tb, FIRST).await;
    assert_eq!(sub_of_login(&tb, SECOND).await, primary);
    let uuid = default_user().uuid;
    let unlink = |identity: String| {
        let path = format!(
            "users/{}/identities/oauth2/{}",
            urlencoding(&primary),
            urlencoding(&identity)
        );
        let issuer = tb.issuer.clone();
        async move { admin_api(&issuer, reqwest::Method::DELETE, &path, None).await }
    };

    // Both identities have the provider's id: the bare id is ambiguous.
    let (status, answer) = unlink(uuid.clone()).await;
    assert_eq!(status, 400, "{answer}");
    let (status, answer) = unlink(format!("{FIRST}|{uuid}")).await;
    assert_eq!(status, 400, "the primary identity stays: {answer}");
    let (status, answer) = unlink(format!("{SECOND}|nobody")).await;
    assert_eq!(status, 404, "{answer}");

    let (status, kept) = unlink(format!("{SECOND}|{uuid}")).await;
    assert_eq!(status, 200, "{kept}");
    assert_eq!(
        kept,
        json!([{"provider": "oauth2", "connection": FIRST, "user_id": uuid, "isSocial": true}]),
        "Auth0's answer: the identities the user keeps"
    );
    let (status, unlinked) = api_user(&tb, &user_id(SECOND)).await;
    assert_eq!(status, 200, "{unlinked}");
    assert_eq!(unlinked["identities"][0]["connection"], SECOND);
    assert_eq!(unlinked["app_metadata"], json!({}));

    let events = events_of(&tb, "unlink").await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["user_id"], primary);
    assert_eq!(events[0]["details"]["by"], "admin");
    assert_eq!(events[0]["details"]["new_user_id"], user_id(SECOND));

    // The unlinked identity now logs in as its own user.
    assert_eq!(sub_of_login(&tb, SECOND).await, user_id(SECOND));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_account_linking_option_is_checked_and_shown_by_the_api() {
    let tb = bed("link_by_verified_email").await;
    let (status, connections) =
        admin_api(&tb.issuer, reqwest::Method::GET, "connections", None).await;
    assert_eq!(status, 200, "{connections}");
    let second = connections
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == SECOND))
        .expect("the second connection")
        .clone();
    assert_eq!(
        second["options"]["account_linking"],
        "link_by_verified_email"
    );
    let mut bad = oidc_connection("third", tb.provider.origin(), "merge_everyone");
    bad["strategy"] = json!("oauth2");
    let (status, answer) =
        admin_api(&tb.issuer, reqwest::Method::POST, "connections", Some(bad)).await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer.to_string().contains("account_linking"),
        "the error names the option: {answer}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_app_served_only_by_the_linked_connection_gets_the_users_userinfo() {
    use waypass_tests::login::ES_APP;
    let tb = TestBed::start(|connections, _| {
        let provider = provider_origin(connections);
        let mut first = oidc_connection(FIRST, &provider, "none");
        first["enabled_clients"] = json!([ES_APP]);
        connections.push(first);
        connections.push(oidc_connection(SECOND, &provider, "link_by_verified_email"));
    })
    .await;
    provider_says_verified(&tb, true);
    let url = tb.authorize_url(
        ES_APP,
        APP_CALLBACK,
        &[("state", "s"), ("connection", FIRST)],
    );
    let landing = Browser::default().login(&tb, &url, false).await;
    assert!(landing.param("code").is_some(), "{landing:?}");
    assert_eq!(
        sub_of_login(&tb, SECOND).await,
        user_id(FIRST),
        "linked, and /userinfo answers the app through the linked connection"
    );
}
