//! Auth0's own post-login code, unchanged, end to end: Actions created with
//! `code` and a Node.js `runtime` and legacy Rules (`/api/v2/rules`), run
//! by the shipped script engine in real logins through the development
//! provider, their claims read by the app's OpenID Connect client.

use openidconnect::TokenResponse as _;
use openidconnect::core::CoreJwsSigningAlgorithm;
use openidconnect::reqwest::Method;
use serde_json::{Value, json};
use waypass::dev_provider::default_user;
use waypass_tests::actions::{self, bind, id_token_claims, login, login_with, user_id};
use waypass_tests::login::{
    APP, APP_CALLBACK, APP_SECRET, CONNECTION, TestBed, admin_api, jwt_claims,
};
use waypass_tests::oidc::{code_flow, oidc_client};

/// Auth0's "Add user roles to ID and Access tokens", as its documentation
/// gives it (<https://auth0.com/docs/customize/actions/explore-triggers/post-login>,
/// "Common use cases"), unchanged.
const AUTH0_ROLES_ACTION: &str = r#"/**
 * @param {Event} event - Details about the user and the context in which they are logging in.
 * @param {PostLoginAPI} api - Interface whose methods can be used to change the behavior of the login.
 */
exports.onExecutePostLogin = async (event, api) => {
  const namespace = 'https://my-app.example.com';
  if (event.authorization) {
    api.idToken.setCustomClaim(`${namespace}/roles`, event.authorization.roles);
    api.accessToken.setCustomClaim(`${namespace}/roles`, event.authorization.roles);
  }
}
"#;

/// Creates a JavaScript Action (Auth0's body: `code`, `runtime`) and
/// deploys it; `extra` adds fields (Waypass's `egress`, `timeout_ms`).
/// Returns its id.
async fn deploy_code(tb: &TestBed, name: &str, code: &str, extra: Value) -> String {
    let mut fields = json!({"code": code, "runtime": "node18"});
    if let (Some(fields), Some(extra)) = (fields.as_object_mut(), extra.as_object()) {
        fields.extend(extra.clone());
    }
    let id = actions::create(tb, name, fields).await;
    let (status, created) = admin_api(
        &tb.issuer,
        Method::GET,
        &format!("actions/actions/{id}"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{created}");
    assert_eq!(created["runtime"], "node18");
    actions::deploy(tb, &id).await;
    id
}

/// Sets the default user's metadata through the management API (the user
/// exists once they have logged in).
async fn patch_user(tb: &TestBed, body: Value) {
    let path = format!("users/{}", user_id().replace('|', "%7C"));
    let (status, user) = admin_api(&tb.issuer, Method::PATCH, &path, Some(body)).await;
    assert_eq!(status, 200, "{user}");
}

#[tokio::test(flavor = "multi_thread")]
async fn auth0s_add_roles_action_runs_unchanged_and_the_apps_oidc_client_verifies_its_claim() {
    let tb = TestBed::start(|_, _| {}).await;
    assert!(login(&tb).await.param("code").is_some(), "a first login");
    patch_user(&tb, json!({"app_metadata": {"roles": ["admin", "editor"]}})).await;
    let id = deploy_code(&tb, "Add roles", AUTH0_ROLES_ACTION, json!({})).await;
    bind(&tb, &[&id]).await;

    let client = oidc_client(&tb, APP, Some(APP_SECRET), APP_CALLBACK).await;
    let (tokens, _verified) = code_flow(
        &tb,
        &client,
        &["email"],
        CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
    )
    .await;
    let id_token = tokens.id_token().expect("an id_token");
    let claims = jwt_claims(&id_token.to_string());
    assert_eq!(
        claims["https://my-app.example.com/roles"],
        json!(["admin", "editor"])
    );
    assert_eq!(claims["sub"], user_id());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_js_action_sees_the_query_audience_prompt_and_scopes_of_the_login_and_its_secrets() {
    let tb = TestBed::start(|_, _| {}).await;
    let api = "https://orders.waypass.test";
    let (status, body) = admin_api(
        &tb.issuer,
        Method::POST,
        "resource-servers",
        Some(json!({"name": "Orders", "identifier": api})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let id = deploy_code(
        &tb,
        "echo",
        r#"exports.onExecutePostLogin = async (event, api) => {
  const ns = 'https://waypass.test/';
  api.idToken.setCustomClaim(ns + 'ui_locales', event.request.query.ui_locales);
  api.idToken.setCustomClaim(ns + 'prompt', event.transaction.prompt);
  api.idToken.setCustomClaim(ns + 'audience', event.resource_server.identifier);
  api.idToken.setCustomClaim(ns + 'scopes', event.transaction.requested_scopes);
  api.idToken.setCustomClaim(ns + 'client', event.client.client_id);
  api.idToken.setCustomClaim(ns + 'connection', event.connection.name);
  api.idToken.setCustomClaim(ns + 'email', event.user.email);
  api.idToken.setCustomClaim(ns + 'hostname', event.request.hostname);
  api.idToken.setCustomClaim(ns + 'secret', event.secrets.GREETING);
};"#,
        json!({"secrets": [{"name": "GREETING", "value": "hello"}]}),
    )
    .await;
    bind(&tb, &[&id]).await;

    let landing = login_with(
        &tb,
        &[
            ("ui_locales", "fr-CA"),
            ("prompt", "login"),
            ("audience", api),
        ],
    )
    .await;
    assert!(landing.param("code").is_some(), "{landing:?}");
    let claims = id_token_claims(&tb, &landing).await;
    let ns = |name: &str| claims[format!("https://waypass.test/{name}")].clone();
    assert_eq!(ns("ui_locales"), "fr-CA");
    assert_eq!(ns("prompt"), json!(["login"]));
    assert_eq!(ns("audience"), api);
    assert_eq!(ns("scopes"), json!(["openid", "email"]));
    assert_eq!(ns("client"), APP);
    assert_eq!(ns("connection"), CONNECTION);
    assert_eq!(ns("email"), default_user().email);
    assert_eq!(ns("hostname"), "127.0.0.1");
    assert_eq!(ns("secret"), "hello");

    // The test endpoint runs the deployed code on a payload in Auth0's form
    // (`request.query` an object), writing nothing.
    let (status, tested) = admin_api(
        &tb.issuer,
        Method::POST,
        &format!("actions/actions/{id}/test"),
        Some(json!({"payload": {
            "user": {"user_id": "oauth2|x|1", "email": "grace@example.org"},
            "client": {"client_id": "other-app"},
            "connection": {"name": "x"},
            "request": {"query": {"ui_locales": "de"}},
            "transaction": {"audience": api, "prompt": "none"}
        }})),
    )
    .await;
    assert_eq!(status, 200, "{tested}");
    let claims = &tested["result"]["id_token_claims"];
    assert_eq!(tested["result"]["outcome"], "proceed", "{tested}");
    assert_eq!(claims["https://waypass.test/ui_locales"], "de", "{tested}");
    assert_eq!(claims["https://waypass.test/prompt"], json!(["none"]));
    assert_eq!(claims["https://waypass.test/email"], "grace@example.org");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_js_action_denying_by_email_domain_sends_access_denied_and_no_metadata_is_written() {
    let tb = TestBed::start(|_, _| {}).await;
    // Auth0's access-control sample (same page), with this app's name.
    let tagger = deploy_code(
        &tb,
        "tagger",
        r#"exports.onExecutePostLogin = async (event, api) => {
  api.user.setAppMetadata('plan', 'gold');
  api.user.setUserMetadata('theme', 'dark');
};"#,
        json!({}),
    )
    .await;
    let gate = deploy_code(
        &tb,
        "gate",
        r#"exports.onExecutePostLogin = async (event, api) => {
  if (event.user.email && event.user.email.endsWith("@example.com")) {
    api.access.deny(`Access to ${event.client.client_id} is not allowed.`);
  }
};"#,
        json!({}),
    )
    .await;
    bind(&tb, &[&tagger, &gate]).await;
    let landing = login(&tb).await;
    assert_eq!(landing.param("error").as_deref(), Some("access_denied"));
    assert_eq!(
        landing.param("error_description"),
        Some(format!("Access to {APP} is not allowed."))
    );
    let user = tb.broker_user(&user_id()).await.expect("the user is known");
    assert!(user.app_metadata.is_empty(), "{:?}", user.app_metadata);
    assert!(user.user_metadata.is_empty(), "{:?}", user.user_metadata);

    bind(&tb, &[&tagger]).await;
    assert!(login(&tb).await.param("code").is_some());
    let user = tb.broker_user(&user_id()).await.expect("the user");
    assert_eq!(user.app_metadata["plan"], "gold");
    assert_eq!(user.user_metadata["theme"], "dark");
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_js_actions_fail_the_login_cleanly_and_the_next_login_is_served() {
    let tb = TestBed::start(|_, _| {}).await;
    let cases = [
        (
            "spinner",
            "exports.onExecutePostLogin = async () => { for (;;) {} };",
            json!({"timeout_ms": 300}),
            "did not finish within its 300 ms deadline",
        ),
        (
            "hog",
            "exports.onExecutePostLogin = async () => { const a = []; for (;;) a.push(new Uint8Array(8 << 20)); };",
            json!({}),
            "out of memory",
        ),
        (
            "thrower",
            "exports.onExecutePostLogin = async () => { throw new Error('no luck today'); };",
            json!({}),
            "no luck today",
        ),
        (
            "off-list",
            "exports.onExecutePostLogin = async () => { await fetch('https://example.com/'); };",
            json!({}),
            "failed",
        ),
        (
            "no-handler",
            "exports.somethingElse = 1;",
            json!({}),
            "must export onExecutePostLogin",
        ),
    ];
    for (name, code, limits, expected) in cases {
        let id = deploy_code(&tb, name, code, limits).await;
        bind(&tb, &[&id]).await;
        let landing = login(&tb).await;
        assert_eq!(
            landing.param("error").as_deref(),
            Some("server_error"),
            "{name}: {landing:?}"
        );
        let description = landing.param("error_description").unwrap_or_default();
        assert!(
            description.contains(&format!("post-login action `{name}` failed"))
                && description.contains(expected),
            "{name}: {description}"
        );
    }
    bind(&tb, &[]).await;
    assert!(login(&tb).await.param("code").is_some(), "served after");
}

#[tokio::test(flavor = "multi_thread")]
async fn js_action_code_with_a_syntax_error_is_refused_with_its_line_and_nothing_is_stored() {
    let tb = TestBed::start(|_, _| {}).await;
    let (status, body) = admin_api(
        &tb.issuer,
        Method::POST,
        "actions/actions",
        Some(json!({
            "name": "broken",
            "supported_triggers": [{"id": "post-login"}],
            "code": "exports.onExecutePostLogin = async (event, api) => {\n  const = 1;\n};",
            "runtime": "node22",
        })),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("line 2"),
        "{body}"
    );
    let (_, list) = admin_api(&tb.issuer, Method::GET, "actions/actions", None).await;
    assert_eq!(list["total"], 0, "{list}");
    let (status, body) = admin_api(
        &tb.issuer,
        Method::POST,
        "actions/actions",
        Some(json!({
            "name": "unknown-runtime",
            "supported_triggers": [{"id": "post-login"}],
            "code": "exports.onExecutePostLogin = async () => {};",
            "runtime": "python3",
        })),
    )
    .await;
    assert_eq!(status, 400, "{body}");
}

// ---- legacy Rules ----

/// Auth0's namespaced-claims Rule, as its documentation gave it for Rules
/// (<https://auth0.com/docs/secure/tokens/json-web-tokens/create-custom-claims>,
/// "Create namespaced custom claims", the Rules example), unchanged.
const AUTH0_CLAIMS_RULE: &str = r#"function (user, context, callback) {
  const namespace = 'https://myapp.example.com/';
  context.idToken[namespace + 'favorite_color'] = user.user_metadata.favorite_color;
  context.idToken[namespace + 'preferred_contact'] = user.user_metadata.preferred_contact;
  callback(null, user, context);
}"#;

/// Creates a Rule through `/api/v2/rules` (Auth0's body); returns its id.
async fn create_rule(tb: &TestBed, body: Value) -> String {
    let (status, created) = admin_api(&tb.issuer, Method::POST, "rules", Some(body)).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["stage"], "login_success");
    created["id"].as_str().expect("an id").to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn auth0s_namespaced_claims_rule_runs_unchanged_and_its_claims_reach_the_id_token() {
    let tb = TestBed::start(|_, _| {}).await;
    assert!(login(&tb).await.param("code").is_some(), "a first login");
    patch_user(
        &tb,
        json!({"user_metadata": {"favorite_color": "teal", "preferred_contact": "email"}}),
    )
    .await;
    let id = create_rule(
        &tb,
        json!({"name": "namespaced-claims", "script": AUTH0_CLAIMS_RULE, "enabled": true}),
    )
    .await;

    let landing = login(&tb).await;
    assert!(landing.param("code").is_some(), "{landing:?}");
    let claims = id_token_claims(&tb, &landing).await;
    assert_eq!(claims["https://myapp.example.com/favorite_color"], "teal");
    assert_eq!(
        claims["https://myapp.example.com/preferred_contact"],
        "email"
    );

    // Auth0's API shapes: listed, read, disabled by PATCH.
    let (status, list) = admin_api(&tb.issuer, Method::GET, "rules", None).await;
    assert_eq!(status, 200);
    assert_eq!(list[0]["id"], id.as_str());
    assert_eq!(list[0]["order"], 1);
    assert_eq!(list[0]["script"], AUTH0_CLAIMS_RULE);
    let (status, patched) = admin_api(
        &tb.issuer,
        Method::PATCH,
        &format!("rules/{id}"),
        Some(json!({"enabled": false})),
    )
    .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["enabled"], false);
    let landing = login(&tb).await;
    let claims = id_token_claims(&tb, &landing).await;
    assert!(
        claims
            .get("https://myapp.example.com/favorite_color")
            .is_none(),
        "a disabled rule does not run: {claims}"
    );
    let (status, _) = admin_api(&tb.issuer, Method::DELETE, &format!("rules/{id}"), None).await;
    assert_eq!(status, 204);
    let (status, _) = admin_api(&tb.issuer, Method::GET, &format!("rules/{id}"), None).await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rules_unauthorized_error_denies_the_login_with_its_reason_and_no_metadata_is_written() {
    let tb = TestBed::start(|_, _| {}).await;
    create_rule(
        &tb,
        json!({"name": "tag-plan", "order": 1, "script": r#"function (user, context, callback) {
  user.app_metadata = user.app_metadata || {};
  user.app_metadata.plan = 'gold';
  auth0.users.updateAppMetadata(user.user_id, user.app_metadata)
    .then(function () { callback(null, user, context); })
    .catch(function (err) { callback(err); });
}"#}),
    )
    .await;
    let gate = create_rule(
        &tb,
        json!({"name": "members-only", "order": 2, "script": r#"function (user, context, callback) {
  if (user.email && user.email.endsWith('@example.com')) {
    return callback(new UnauthorizedError('members only, ' + context.clientID));
  }
  callback(null, user, context);
}"#}),
    )
    .await;

    let landing = login(&tb).await;
    assert_eq!(landing.param("error").as_deref(), Some("access_denied"));
    assert_eq!(
        landing.param("error_description"),
        Some(format!("members only, {APP}"))
    );
    assert_eq!(landing.param("code"), None);
    let user = tb.broker_user(&user_id()).await.expect("the user is known");
    assert!(user.app_metadata.is_empty(), "{:?}", user.app_metadata);

    let (status, _) = admin_api(
        &tb.issuer,
        Method::PATCH,
        &format!("rules/{gate}"),
        Some(json!({"enabled": false})),
    )
    .await;
    assert_eq!(status, 200);
    assert!(login(&tb).await.param("code").is_some());
    let user = tb.broker_user(&user_id()).await.expect("the user");
    assert_eq!(user.app_metadata["plan"], "gold");
}

#[tokio::test(flavor = "multi_thread")]
async fn rules_run_before_the_bound_actions_which_see_their_metadata() {
    let tb = TestBed::start(|_, _| {}).await;
    create_rule(
        &tb,
        json!({"name": "first", "script": r#"function (user, context, callback) {
  context.idToken['https://waypass.test/order'] = 'rule';
  auth0.users.updateAppMetadata(user.user_id, { ruled: true }).then(function () {
    callback(null, user, context);
  });
}"#}),
    )
    .await;
    let id = deploy_code(
        &tb,
        "second",
        r#"exports.onExecutePostLogin = async (event, api) => {
  api.idToken.setCustomClaim('https://waypass.test/order', 'action');
  api.idToken.setCustomClaim('https://waypass.test/saw_rule', event.user.app_metadata.ruled === true);
};"#,
        json!({}),
    )
    .await;
    bind(&tb, &[&id]).await;
    let landing = login(&tb).await;
    let claims = id_token_claims(&tb, &landing).await;
    assert_eq!(
        claims["https://waypass.test/order"], "action",
        "the action ran last"
    );
    assert_eq!(claims["https://waypass.test/saw_rule"], true);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rule_is_checked_when_saved_and_failing_rules_fail_the_login_cleanly() {
    let tb = TestBed::start(|_, _| {}).await;
    let (status, body) = admin_api(
        &tb.issuer,
        Method::POST,
        "rules",
        Some(json!({"name": "broken", "script": "function (user, context, callback) {\n  callback(null, user,, context);\n}"})),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("line 2"),
        "{body}"
    );
    let (status, body) = admin_api(
        &tb.issuer,
        Method::POST,
        "rules",
        Some(json!({"name": "other-stage", "script": "function (u, c, cb) { cb(null, u, c); }", "stage": "pre_authorize"})),
    )
    .await;
    assert_eq!(status, 400, "{body}");

    let failing = create_rule(
        &tb,
        json!({"name": "fails", "script": "function (user, context, callback) { callback(new Error('backend down')); }"}),
    )
    .await;
    let landing = login(&tb).await;
    assert_eq!(landing.param("error").as_deref(), Some("server_error"));
    let description = landing.param("error_description").unwrap_or_default();
    assert!(
        description.contains("rule fails") && description.contains("backend down"),
        "{description}"
    );
    let (status, _) = admin_api(
        &tb.issuer,
        Method::PATCH,
        &format!("rules/{failing}"),
        Some(json!({"script": "function (user, context, callback) { for (;;) {} }", "timeout_ms": 300})),
    )
    .await;
    assert_eq!(status, 200);
    let landing = login(&tb).await;
    let description = landing.param("error_description").unwrap_or_default();
    assert!(description.contains("300 ms deadline"), "{description}");
    let (status, _) = admin_api(
        &tb.issuer,
        Method::DELETE,
        &format!("rules/{failing}"),
        None,
    )
    .await;
    assert_eq!(status, 204);
    assert!(login(&tb).await.param("code").is_some(), "served after");
}
