//! The console at `/admin` (issue #15): sign-in, sessions and form tokens,
//! pages backed by the management API, and — in a real browser (Chromium
//! driven by playwright-core, `tests/browser/console.cjs`) — the whole
//! tour: sign in, create a custom connection, enable it for an app, try it,
//! upload a mapper version and roll it back, log in through the new
//! connection, find the user by email and open them, read the logs.
//!
//! Screenshots of the main pages are written by the browser test when
//! `WAYPASS_SCREENSHOTS` names a directory:
//!
//!     WAYPASS_SCREENSHOTS=$PWD/docs/console cargo test -p waypass-tests --test console

use serde_json::json;
use waypass::admin::console::ConsoleConfig;
use waypass::broker::config::ClientConfig;
use waypass::quickstart::demo_app::DemoApp;
use waypass::secret::Secret;
use waypass_tests::chromium::{browser_dir, run_script};
use waypass_tests::guests;
use waypass_tests::login::{
    ADMIN_TOKEN, APP, APP_CALLBACK, APP_SECRET, Browser, CONNECTION, Landing, TestBed, admin_api,
};

/// The console's own app in these tests (public, PKCE).
const CONSOLE_APP: &str = "console";
/// The development provider's account as a user of the default connection.
fn ada() -> String {
    format!(
        "oauth2|{CONNECTION}|{}",
        waypass::dev_provider::default_user().uuid
    )
}

/// A test bed whose console signs in through [`CONSOLE_APP`]; `admins`
/// get the console role.
async fn console_bed(admins: Vec<String>) -> TestBed {
    TestBed::start(|connections, config| {
        let console: ClientConfig = serde_json::from_value(json!({
            "client_id": CONSOLE_APP,
            "type": "public",
            "callbacks": [format!("{}/admin/callback", config.issuer.as_str().trim_end_matches('/'))],
        }))
        .expect("console app");
        config.clients.push(console);
        if let Some(enabled) = connections[0]["enabled_clients"].as_array_mut() {
            enabled.push(json!(CONSOLE_APP));
        }
        config.console = ConsoleConfig {
            client_id: Some(CONSOLE_APP.into()),
            admins,
        };
    })
    .await
}

/// The value of the first `name="csrf"` field of a page.
fn form_token(html: &str) -> String {
    let start = html
        .find("name=\"csrf\" value=\"")
        .map(|i| i + "name=\"csrf\" value=\"".len())
        .unwrap_or_else(|| panic!("no form token in {html}"));
    html[start..]
        .split('"')
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// Signs in with the admin token; returns the first signed-in page.
async fn sign_in(b: &mut Browser, issuer: &str) -> String {
    let (status, _, login) = b.get(&format!("{issuer}/admin/login")).await;
    assert_eq!(status, 200, "{login}");
    let req = b.http.post(format!("{issuer}/admin/login")).form(&[
        ("csrf", form_token(&login).as_str()),
        ("token", ADMIN_TOKEN),
    ]);
    let (status, location, body) = b.send(req).await;
    assert_eq!(status, 303, "{body}");
    assert_eq!(location.as_deref(), Some("/admin/connections"));
    let (status, _, page) = b.get(&format!("{issuer}/admin/connections")).await;
    assert_eq!(status, 200, "{page}");
    page
}

#[tokio::test]
async fn a_page_asked_for_without_a_session_redirects_to_the_sign_in_page() {
    let tb = console_bed(Vec::new()).await;
    let mut b = Browser::default();
    for path in ["/admin", "/admin/connections", "/admin/apps/app"] {
        let (status, location, _) = b.get(&format!("{}{path}", tb.issuer)).await;
        assert_eq!(status, 303, "{path}");
        assert_eq!(location.as_deref(), Some("/admin/login"), "{path}");
    }
    // A form posted without a session does nothing.
    let req = b
        .http
        .post(format!("{}/admin/apps/new", tb.issuer))
        .form(&[("name", "sneaky"), ("app_type", "spa")]);
    let (status, _, _) = b.send(req).await;
    assert_eq!(status, 401);
    let (_, apps) = admin_api(&tb.issuer, reqwest::Method::GET, "clients", None).await;
    assert!(!apps.to_string().contains("sneaky"), "{apps}");
}

#[tokio::test]
async fn the_admin_token_signs_in_and_a_wrong_one_is_refused_and_counted() {
    let tb = console_bed(Vec::new()).await;
    let mut b = Browser::default();
    let (_, _, login) = b.get(&format!("{}/admin/login", tb.issuer)).await;
    let req = b.http.post(format!("{}/admin/login", tb.issuer)).form(&[
        ("csrf", form_token(&login).as_str()),
        ("token", "not-the-admin-token-but-long-enough-0000"),
    ]);
    let (status, _, body) = b.send(req).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("not the admin token"), "{body}");
    assert!(!b.cookies.contains_key("wp_console"), "no session");

    let page = sign_in(&mut b, &tb.issuer).await;
    assert!(page.contains("Development provider"), "{page}");
    assert!(page.contains("admin token"), "who is signed in: {page}");
    // The session cookie: HttpOnly, SameSite=Strict, kept to /admin on http.
    let resp = reqwest::Client::new()
        .get(format!("{}/admin/login", tb.issuer))
        .send()
        .await
        .expect("login page");
    let set = resp
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    let csp = resp
        .headers()
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        csp.contains("default-src 'self'") && csp.contains("script-src 'none'"),
        "{csp}"
    );
    assert_eq!(
        resp.headers().get("x-frame-options").map(|v| v.as_bytes()),
        Some(&b"DENY"[..])
    );
}

#[tokio::test]
async fn a_sign_in_form_posted_without_its_form_token_is_refused_even_with_the_right_token() {
    let tb = console_bed(Vec::new()).await;
    let mut b = Browser::default();
    let req = b
        .http
        .post(format!("{}/admin/login", tb.issuer))
        .form(&[("token", ADMIN_TOKEN)]);
    let (status, _, body) = b.send(req).await;
    assert_eq!(status, 403, "{body}");
    assert!(!b.cookies.contains_key("wp_console"), "no session");
}

#[tokio::test]
async fn a_form_posted_without_the_sessions_form_token_is_refused_and_changes_nothing() {
    let tb = console_bed(Vec::new()).await;
    let mut b = Browser::default();
    sign_in(&mut b, &tb.issuer).await;
    for csrf in [None, Some("0000"), Some("")] {
        let mut fields = vec![
            ("name", "forged"),
            ("app_type", "regular_web"),
            ("callbacks", "https://evil.test/cb"),
        ];
        if let Some(csrf) = csrf {
            fields.push(("csrf", csrf));
        }
        let req = b
            .http
            .post(format!("{}/admin/apps/new", tb.issuer))
            .form(&fields);
        let (status, _, body) = b.send(req).await;
        assert_eq!(status, 403, "{csrf:?}: {body}");
    }
    let (_, apps) = admin_api(&tb.issuer, reqwest::Method::GET, "clients", None).await;
    assert!(!apps.to_string().contains("forged"), "{apps}");

    // With the session's token the same form creates the app, and its
    // secret is shown once.
    let (_, _, page) = b.get(&format!("{}/admin/apps", tb.issuer)).await;
    let req = b.http.post(format!("{}/admin/apps/new", tb.issuer)).form(&[
        ("csrf", form_token(&page).as_str()),
        ("name", "made"),
        ("app_type", "regular_web"),
        ("callbacks", "https://made.test/cb"),
    ]);
    let (status, _, body) = b.send(req).await;
    assert_eq!(status, 201, "{body}");
    assert!(body.contains("shown this once"), "{body}");
    let (_, apps) = admin_api(&tb.issuer, reqwest::Method::GET, "clients", None).await;
    assert!(apps.to_string().contains("https://made.test/cb"), "{apps}");
}

#[tokio::test]
async fn a_connection_the_api_refuses_is_shown_again_with_the_error_next_to_its_field() {
    let tb = console_bed(Vec::new()).await;
    let mut b = Browser::default();
    sign_in(&mut b, &tb.issuer).await;
    let (_, _, form) = b.get(&format!("{}/admin/connections/new", tb.issuer)).await;
    let csrf = form_token(&form);
    let fields = |token_url: &'static str, script: &'static str| {
        vec![
            ("csrf", csrf.clone()),
            ("name", "acme".to_owned()),
            (
                "authorizationURL",
                "https://acme.example/authorize".to_owned(),
            ),
            ("tokenURL", token_url.to_owned()),
            ("scope", "openid".to_owned()),
            ("client_id", "cid".to_owned()),
            ("client_secret", "csecret".to_owned()),
            ("profile", "script".to_owned()),
            ("script", script.to_owned()),
        ]
    };
    let good_script =
        "function (accessToken, context, callback) {\n  callback(null, { user_id: '1' });\n}";
    let req = b
        .http
        .post(format!("{}/admin/connections/new", tb.issuer))
        .form(&fields("not a url", good_script));
    let (status, _, body) = b.send(req).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("id=\"tokenURL-error\""), "{body}");
    assert!(
        body.contains("value=\"https://acme.example/authorize\""),
        "kept: {body}"
    );

    let req = b
        .http
        .post(format!("{}/admin/connections/new", tb.issuer))
        .form(&fields(
            "https://acme.example/token",
            "function (accessToken, context, callback) {\n  callback(null, {;\n}",
        ));
    let (status, _, body) = b.send(req).await;
    assert_eq!(status, 400, "{body}");
    let error = body
        .split("id=\"script-error\">")
        .nth(1)
        .unwrap_or_else(|| panic!("no script error: {body}"));
    assert!(error.contains("line 2"), "line and column: {error}");

    let req = b
        .http
        .post(format!("{}/admin/connections/new", tb.issuer))
        .form(&fields("https://acme.example/token", good_script));
    let (status, location, body) = b.send(req).await;
    assert_eq!(status, 303, "{body}");
    let (_, list) = admin_api(
        &tb.issuer,
        reqwest::Method::GET,
        "connections?name=acme",
        None,
    )
    .await;
    let id = list[0]["id"].as_str().expect("created");
    assert_eq!(location, Some(format!("/admin/connections/{id}")));
}

#[tokio::test]
async fn a_user_with_the_console_role_signs_in_through_waypass_with_pkce() {
    let tb = console_bed(vec![ada()]).await;
    let mut b = Browser::default();
    let landing = b
        .login(
            &tb,
            &format!("{}/admin/login/oidc?connection={CONNECTION}", tb.issuer),
            false,
        )
        .await;
    assert_signed_in_as(&mut b, &tb, landing, &ada()).await;
}

/// The end of a sign-in through Waypass: the console's own redirect to its
/// first page (relative, so the walk stops there), which shows `who`.
async fn assert_signed_in_as(b: &mut Browser, tb: &TestBed, landing: Landing, who: &str) {
    assert_eq!(landing.status, 303, "{}", landing.body);
    let (status, _, page) = b.get(&format!("{}/admin/connections", tb.issuer)).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains(who), "who: {page}");
    assert!(page.contains("Development provider"), "{page}");
}

/// `ada`, who lacks the console role, signs in through Waypass: refused
/// with the reason, and no console session. The browser, for what follows.
async fn refused_sign_in(tb: &TestBed) -> Browser {
    let mut b = Browser::default();
    let landing = b
        .login(
            tb,
            &format!("{}/admin/login/oidc?connection={CONNECTION}", tb.issuer),
            false,
        )
        .await;
    assert_eq!(landing.status, 403, "{}", landing.body);
    assert!(
        landing.body.contains("does not have the console role"),
        "{}",
        landing.body
    );
    assert!(!b.cookies.contains_key("wp_console"), "no session");
    b
}

#[tokio::test]
async fn a_user_without_the_console_role_is_refused_after_signing_in() {
    let tb = console_bed(vec!["oauth2|devprov|someone-else".into()]).await;
    let mut b = refused_sign_in(&tb).await;
    let (status, location, _) = b.get(&format!("{}/admin/connections", tb.issuer)).await;
    assert_eq!((status, location.as_deref()), (303, Some("/admin/login")));

    // Given the role through the API (`app_metadata`), the same user is let in.
    let path = format!("users/{}", urlencode(&ada()));
    let (status, body) = admin_api(
        &tb.issuer,
        reqwest::Method::PATCH,
        &path,
        Some(json!({"app_metadata": {"console_admin": true}})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let landing = b
        .login(
            &tb,
            &format!("{}/admin/login/oidc?connection={CONNECTION}", tb.issuer),
            false,
        )
        .await;
    assert_signed_in_as(&mut b, &tb, landing, &ada()).await;
}

#[tokio::test]
async fn a_callback_whose_state_is_not_this_browsers_is_refused() {
    let tb = console_bed(vec![ada()]).await;
    let mut victim = Browser::default();
    // The attacker starts a sign-in and stops at the broker's redirect
    // back with a code; the victim's browser is sent there.
    let mut attacker = Browser::default();
    let (_, to_authorize, _) = attacker
        .get(&format!(
            "{}/admin/login/oidc?connection={CONNECTION}",
            tb.issuer
        ))
        .await;
    let authorize = to_authorize.expect("to /authorize");
    let callback = attacker.to_callback(tb.provider.origin(), &authorize).await;
    let (_, to_console, _) = attacker.get(&callback).await;
    let to_console = to_console.expect("to the console's callback");
    assert!(to_console.contains("/admin/callback"), "{to_console}");
    let (status, _, body) = victim.get(&to_console).await;
    assert_eq!(status, 400, "{body}");
    assert!(!victim.cookies.contains_key("wp_console"));
}

#[tokio::test]
async fn signing_out_ends_the_session_in_the_store() {
    let tb = console_bed(Vec::new()).await;
    let mut b = Browser::default();
    let page = sign_in(&mut b, &tb.issuer).await;
    let session_cookie = b.cookies.get("wp_console").cloned().expect("session");
    let req = b
        .http
        .post(format!("{}/admin/logout", tb.issuer))
        .form(&[("csrf", form_token(&page).as_str())]);
    let (status, location, _) = b.send(req).await;
    assert_eq!((status, location.as_deref()), (303, Some("/admin/login")));
    // The old cookie, replayed, no longer opens anything.
    let mut replay = Browser::default();
    replay.cookies.insert("wp_console".into(), session_cookie);
    let (status, location, _) = replay
        .get(&format!("{}/admin/connections", tb.issuer))
        .await;
    assert_eq!((status, location.as_deref()), (303, Some("/admin/login")));
}

/// The boundary of the upload forms these tests build.
const BOUNDARY: &str = "waypass-test-boundary-7f3a";

/// A `multipart/form-data` body (RFC 7578) with these text fields and one
/// file in the field `component`, as a browser sends the upload form.
fn upload_form(fields: &[(&str, &str)], component: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend_from_slice(
            format!(
                "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    body.extend_from_slice(
        format!(
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"component\"; \
             filename=\"mapper.wasm\"\r\nContent-Type: application/wasm\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(component);
    body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    body
}

/// Posts an upload form to `path` under the console.
async fn post_upload(
    b: &mut Browser,
    issuer: &str,
    path: &str,
    fields: &[(&str, &str)],
    component: &[u8],
) -> (u16, Option<String>, String) {
    let req = b
        .http
        .post(format!("{issuer}/admin/{path}"))
        .header(
            "content-type",
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body(upload_form(fields, component));
    b.send(req).await
}

/// The versions of `mapper` through the API: (version, active).
async fn mapper_versions(issuer: &str, mapper: &str) -> Vec<(u64, bool)> {
    let (status, body) = admin_api(
        issuer,
        reqwest::Method::GET,
        &format!("mappers/{mapper}/versions"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["versions"]
        .as_array()
        .expect("versions")
        .iter()
        .map(|v| (v["version"].as_u64().expect("version"), v["active"] == true))
        .collect()
}

#[tokio::test]
async fn a_mapper_upload_without_the_sessions_form_token_is_refused_and_stores_nothing() {
    let tb = console_bed(Vec::new()).await;
    let mut b = Browser::default();
    sign_in(&mut b, &tb.issuer).await;
    let component = guests::bytes(guests::AUTH0_EXAMPLE);
    for csrf in [None, Some("0000"), Some("")] {
        let fields: Vec<(&str, &str)> = csrf.map(|c| ("csrf", c)).into_iter().collect();
        let (status, _, body) = post_upload(
            &mut b,
            &tb.issuer,
            "mappers/swap-me/versions",
            &fields,
            &component,
        )
        .await;
        assert_eq!(status, 403, "{csrf:?}: {body}");
    }
    assert_eq!(mapper_versions(&tb.issuer, "swap-me").await, [(1, true)]);

    // With the session's token the same upload is version 2, made active.
    let (_, _, page) = b.get(&format!("{}/admin/mappers/swap-me", tb.issuer)).await;
    let (status, location, body) = post_upload(
        &mut b,
        &tb.issuer,
        "mappers/swap-me/versions",
        &[("csrf", &form_token(&page))],
        &component,
    )
    .await;
    assert_eq!(status, 303, "{body}");
    assert_eq!(location.as_deref(), Some("/admin/mappers/swap-me"));
    assert_eq!(
        mapper_versions(&tb.issuer, "swap-me").await,
        [(1, false), (2, true)]
    );
    let (_, _, page) = b.get(&format!("{}/admin/mappers/swap-me", tb.issuer)).await;
    assert!(page.contains("active: v2"), "{page}");
    assert!(page.contains(">admin<"), "who uploaded it: {page}");
}

#[tokio::test]
async fn an_upload_that_is_not_a_component_gets_the_apis_error_next_to_the_file_field() {
    let tb = console_bed(Vec::new()).await;
    let mut b = Browser::default();
    sign_in(&mut b, &tb.issuer).await;
    let (_, _, page) = b.get(&format!("{}/admin/mappers", tb.issuer)).await;
    let csrf = form_token(&page);
    let (status, _, body) = post_upload(
        &mut b,
        &tb.issuer,
        "mappers/new",
        &[("csrf", &csrf), ("name", "fresh")],
        b"#!/bin/sh\necho not wasm\n",
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let error = body
        .split("id=\"component-error\">")
        .nth(1)
        .unwrap_or_else(|| panic!("no error by the file field: {body}"));
    assert!(
        error.contains("not a WebAssembly component"),
        "the API's message: {error}"
    );
    assert!(
        body.contains("aria-describedby=\"component-error\""),
        "{body}"
    );
    assert!(body.contains("value=\"fresh\""), "the name is kept: {body}");
    // A bad name is refused by the name's field.
    let (status, _, body) = post_upload(
        &mut b,
        &tb.issuer,
        "mappers/new",
        &[("csrf", &csrf), ("name", "bad name")],
        &guests::bytes(guests::AUTH0_EXAMPLE),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("id=\"name-error\""), "{body}");
    let (status, _) = admin_api(&tb.issuer, reqwest::Method::GET, "mappers/fresh", None).await;
    assert_eq!(status, 404, "nothing stored");
}

#[tokio::test]
async fn someone_without_the_console_role_cannot_reach_the_mappers_users_or_logs_pages() {
    let tb = console_bed(vec!["oauth2|devprov|someone-else".into()]).await;
    let mut b = refused_sign_in(&tb).await;
    let user = urlencode(&ada());
    for path in [
        "/admin/mappers".to_owned(),
        "/admin/mappers/swap-me".to_owned(),
        "/admin/users".to_owned(),
        format!("/admin/users/{user}"),
        format!("/admin/users/{user}/delete"),
        "/admin/logs".to_owned(),
    ] {
        let (status, location, body) = b.get(&format!("{}{path}", tb.issuer)).await;
        assert_eq!(
            (status, location.as_deref()),
            (303, Some("/admin/login")),
            "{path}: {body}"
        );
    }
    // Nor post to them: an upload and a delete do nothing.
    let (status, _, _) = post_upload(
        &mut b,
        &tb.issuer,
        "mappers/swap-me/versions",
        &[],
        &guests::bytes(guests::AUTH0_EXAMPLE),
    )
    .await;
    assert_eq!(status, 401);
    let req = b
        .http
        .post(format!("{}/admin/users/{user}/delete", tb.issuer))
        .form(&[("csrf", "x")]);
    let (status, _, _) = b.send(req).await;
    assert_eq!(status, 401);
    assert_eq!(mapper_versions(&tb.issuer, "swap-me").await, [(1, true)]);
    assert!(tb.broker_user(&ada()).await.is_some(), "not deleted");
}

#[tokio::test]
async fn a_user_is_found_by_email_shown_without_provider_tokens_and_deleted_only_with_the_form_token()
 {
    let tb = console_bed(Vec::new()).await;
    // Ada logs in (the console refuses her, but the login made her user).
    refused_sign_in(&tb).await;
    let user = ada();
    assert!(tb.broker_user(&user).await.is_some());
    let path = format!("users/{}", urlencode(&user));
    let (_, api_user) = admin_api(&tb.issuer, reqwest::Method::GET, &path, None).await;
    let provider_token = api_user["identities"][0]["access_token"]
        .as_str()
        .expect("the admin token reads the provider's token")
        .to_owned();

    let mut b = Browser::default();
    sign_in(&mut b, &tb.issuer).await;
    let (status, _, list) = b
        .get(&format!("{}/admin/users?email=ADA%40example", tb.issuer))
        .await;
    assert_eq!(status, 200, "{list}");
    assert!(list.contains("ada@example.com"), "{list}");
    let (_, _, none) = b
        .get(&format!("{}/admin/users?email=nobody", tb.issuer))
        .await;
    assert!(!none.contains("ada@example.com"), "{none}");

    let (status, _, page) = b.get(&format!("{}/admin/{path}", tb.issuer)).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains(&user), "{page}");
    assert!(
        page.contains(&waypass::dev_provider::default_user().uuid),
        "the identity's provider id: {page}"
    );
    assert!(page.contains("Successful login"), "her login: {page}");
    assert!(!page.contains(&provider_token), "no provider token: {page}");

    // The confirmation step, then the delete: refused without the token.
    let (status, _, confirm) = b.get(&format!("{}/admin/{path}/delete", tb.issuer)).await;
    assert_eq!(status, 200, "{confirm}");
    for csrf in [None, Some("0000")] {
        let fields: Vec<(&str, &str)> = csrf.map(|c| ("csrf", c)).into_iter().collect();
        let req = b
            .http
            .post(format!("{}/admin/{path}/delete", tb.issuer))
            .form(&fields);
        let (status, _, body) = b.send(req).await;
        assert_eq!(status, 403, "{csrf:?}: {body}");
    }
    assert!(tb.broker_user(&user).await.is_some(), "still there");
    let req = b
        .http
        .post(format!("{}/admin/{path}/delete", tb.issuer))
        .form(&[("csrf", form_token(&confirm).as_str())]);
    let (status, location, body) = b.send(req).await;
    assert_eq!(status, 303, "{body}");
    assert_eq!(
        location.as_deref(),
        Some("/admin/users?deleted=1"),
        "back to the list"
    );
    assert!(tb.broker_user(&user).await.is_none(), "deleted");
    let (status, _) = admin_api(&tb.issuer, reqwest::Method::GET, &path, None).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn the_logs_page_shows_login_and_management_events_newest_first_filtered_by_type() {
    let tb = console_bed(Vec::new()).await;
    // A login (Ada's, refused by the console) for the log.
    refused_sign_in(&tb).await;
    let mut b = Browser::default();
    sign_in(&mut b, &tb.issuer).await;
    // A management write, after the login.
    let (_, _, apps) = b.get(&format!("{}/admin/apps", tb.issuer)).await;
    let req = b.http.post(format!("{}/admin/apps/new", tb.issuer)).form(&[
        ("csrf", form_token(&apps).as_str()),
        ("name", "logged"),
        ("app_type", "spa"),
        ("callbacks", "https://logged.test/cb"),
    ]);
    let (status, _, body) = b.send(req).await;
    assert_eq!(status, 201, "{body}");

    let (status, _, all) = b.get(&format!("{}/admin/logs", tb.issuer)).await;
    assert_eq!(status, 200, "{all}");
    // The table's rows (the filter above names every type too).
    let rows = all
        .split("<tbody>")
        .nth(1)
        .unwrap_or_else(|| panic!("{all}"));
    let login = rows.find("title=\"s\"").expect("the login");
    let change = rows.find("title=\"sapi\"").expect("the write");
    assert!(change < login, "newest first: {rows}");

    let (status, _, logins) = b.get(&format!("{}/admin/logs?type=s", tb.issuer)).await;
    assert_eq!(status, 200, "{logins}");
    assert!(logins.contains(&ada()), "{logins}");
    assert!(!logins.contains("title=\"sapi\""), "only logins: {logins}");
    // Any page number is answered (the last one possible too), and a
    // page that is not a number is a clear 400.
    for path in ["logs", "users"] {
        let (status, _, body) = b
            .get(&format!("{}/admin/{path}?page={}", tb.issuer, usize::MAX))
            .await;
        assert!(status == 200 || status == 400, "{path}: {status} {body}");
        let (status, _, body) = b.get(&format!("{}/admin/{path}?page=two", tb.issuer)).await;
        assert_eq!(status, 400, "{path}: {body}");
    }
    // Only the API's own codes reach its filter.
    let (status, _, _) = b
        .get(&format!(
            "{}/admin/logs?type=s%20user_id%3A%22x%22",
            tb.issuer
        ))
        .await;
    assert_eq!(status, 400);
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test]
async fn the_console_tour_works_in_a_real_browser() {
    let Some(dir) = browser_dir() else {
        return;
    };
    // The same account through the connection the browser creates.
    let new_user = format!(
        "oauth2|browser-made|{}",
        waypass::dev_provider::default_user().uuid
    );
    let tb = console_bed(vec![ada(), new_user.clone()]).await;
    // The quickstart's demo app, as the app a user logs into through the
    // connection the browser creates: registered as the test bed's app.
    let demo_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let demo = format!("http://{}", demo_listener.local_addr().expect("addr"));
    let (status, body) = admin_api(
        &tb.issuer,
        reqwest::Method::PATCH,
        &format!("clients/{APP}"),
        Some(json!({"callbacks": [APP_CALLBACK, format!("{demo}/callback")]})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let demo_app = DemoApp::new(&tb.issuer, &demo, APP, Secret::new(APP_SECRET)).expect("demo app");
    let demo_task = tokio::spawn(demo_app.serve(demo_listener));
    let mut env = vec![
        ("WAYPASS_DEMO_APP", demo.clone()),
        ("WAYPASS_ISSUER", tb.issuer.clone()),
        ("WAYPASS_ADMIN_TOKEN", ADMIN_TOKEN.to_owned()),
        ("WAYPASS_PROVIDER", tb.provider.origin().to_owned()),
        ("WAYPASS_CONNECTION", CONNECTION.to_owned()),
        ("WAYPASS_NEW_USER_ID", new_user.clone()),
        ("WAYPASS_MAPPER_FILE", guests::AUTH0_EXAMPLE.to_owned()),
        (
            "WAYPASS_USER_EMAIL",
            waypass::dev_provider::default_user().email,
        ),
    ];
    if let Ok(shots) = std::env::var("WAYPASS_SCREENSHOTS") {
        env.push(("WAYPASS_SCREENSHOTS", shots));
    }
    let run = run_script(&dir, "console.cjs", &env).await;
    demo_task.abort();
    assert!(
        run.success,
        "console.cjs failed\nstdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
    // What the browser did is in the store.
    let (_, list) = admin_api(
        &tb.issuer,
        reqwest::Method::GET,
        "connections?name=browser-made",
        None,
    )
    .await;
    let made = &list[0];
    assert_eq!(made["display_name"], "Made in a browser", "{list}");
    assert!(
        made["enabled_clients"]
            .as_array()
            .is_some_and(|apps| apps.iter().any(|a| a == "app")),
        "{made}"
    );
    assert!(
        tb.broker_user(&new_user).await.is_some(),
        "the login made the user"
    );
    // The upload and the rollback: two versions, the first active again.
    assert_eq!(
        mapper_versions(&tb.issuer, "auth0-example").await,
        [(1, true), (2, false)]
    );
}
