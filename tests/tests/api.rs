//! The management API over HTTP: auth, connections, clients, mappers
//! (versions, swap, rollback), users, and `try`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use openidconnect::reqwest;
use serde_json::{Value, json};
use waypass::dev_provider::default_user;
use waypass_tests::gate::Gate;
use waypass_tests::guests;
use waypass_tests::login::{
    ADMIN_TOKEN, APP, APP_CALLBACK, Browser, CONNECTION, TestBed, admin_api, api_call,
    client_credentials, http_client, put_mapper, sub_after_login,
};

/// Logs in through `connection` as the app and returns the user id the
/// broker issued, or the error the app received.
async fn login_user(tb: &TestBed, connection: &str) -> Result<String, String> {
    let url = tb.authorize_url(
        APP,
        APP_CALLBACK,
        &[("scope", "openid"), ("connection", connection)],
    );
    let landing = Browser::default().login(tb, &url, false).await;
    let back = landing
        .location
        .as_ref()
        .filter(|_| landing.param("code").is_some())
        .ok_or_else(|| format!("{landing:?}"))?;
    sub_after_login(&tb.issuer, back.as_str()).await
}

async fn connection_id(tb: &TestBed, name: &str) -> String {
    let (_, list) = admin_api(&tb.issuer, reqwest::Method::GET, "connections", None).await;
    list.as_array()
        .and_then(|l| l.iter().find(|c| c["name"] == name))
        .and_then(|c| c["id"].as_str())
        .expect("connection listed")
        .to_owned()
}

// ---- auth ----

#[tokio::test(flavor = "multi_thread")]
async fn the_api_needs_a_token_and_scopes_are_enforced() {
    let tb = TestBed::start(|_, _| {}).await;
    let (status, body) =
        api_call(&tb.issuer, reqwest::Method::GET, "connections", None, None).await;
    assert_eq!(status, 401);
    assert_eq!(body["statusCode"], 401);
    let (status, _) = api_call(
        &tb.issuer,
        reqwest::Method::GET,
        "connections",
        Some("wrong"),
        None,
    )
    .await;
    assert_eq!(status, 401);

    // A management client limited to reading connections.
    let (status, created) = admin_api(&tb.issuer,
        reqwest::Method::POST,
        "clients",
        Some(json!({"name": "reader", "callbacks": ["https://x.test/cb"], "scopes": ["read:connections"]})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let (id, secret) = (
        created["client_id"].as_str().expect("id"),
        created["client_secret"].as_str().expect("secret"),
    );
    let token = &client_credentials(&tb.issuer, id, secret, &[]).await;
    let (status, _) = api_call(
        &tb.issuer,
        reqwest::Method::GET,
        "connections",
        Some(token),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (status, body) = api_call(
        &tb.issuer,
        reqwest::Method::DELETE,
        "connections/whatever",
        Some(token),
        None,
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("write:connections"))
    );
    let (status, _) = api_call(&tb.issuer, reqwest::Method::GET, "users", Some(token), None).await;
    assert_eq!(status, 403);
}

#[tokio::test(flavor = "multi_thread")]
async fn client_credentials_refuses_scopes_the_client_does_not_hold() {
    let tb = TestBed::start(|_, _| {}).await;
    let (_, created) = admin_api(
        &tb.issuer,
        reqwest::Method::POST,
        "clients",
        Some(json!({"name": "m", "callbacks": ["https://x.test/cb"], "scopes": ["read:users"]})),
    )
    .await;
    let resp = http_client()
        .post(format!("{}/oauth/token", tb.issuer))
        .basic_auth(
            created["client_id"].as_str().expect("id"),
            created["client_secret"].as_str(),
        )
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", "write:users"),
        ])
        .send()
        .await
        .expect("token");
    assert_eq!(resp.status().as_u16(), 400);
    let body: Value = resp.json().await.expect("json");
    assert_eq!(body["error"], "invalid_scope");
}

// ---- connections ----

#[tokio::test(flavor = "multi_thread")]
async fn connections_are_created_read_patched_with_auth0s_bodies_and_deleted() {
    let tb = TestBed::start(|_, _| {}).await;
    let origin = tb.provider.origin().to_owned();
    let mut spec = waypass_tests::login::connection_spec("second", &origin);
    spec["strategy"] = json!("oauth2");
    spec["enabled_clients"] = json!([APP]);
    let (status, created) = admin_api(
        &tb.issuer,
        reqwest::Method::POST,
        "connections",
        Some(spec.clone()),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().expect("id").to_owned();
    assert!(
        created["options"].get("client_secret").is_none(),
        "client_secret is write-only"
    );
    assert!(
        created["options"].get("mapper_settings").is_none(),
        "settings may hold secrets"
    );
    assert_eq!(created["strategy"], "oauth2");

    let (status, _) = admin_api(&tb.issuer, reqwest::Method::POST, "connections", Some(spec)).await;
    assert_eq!(status, 409, "names are unique");

    // The three PATCH bodies of Auth0's generic OAuth2 documentation.
    for patch in [
        json!({"options": {"icon_url": "https://cdn.example.com/assets/icon.png"}, "display_name": "Connection Name"}),
        json!({"options": {"authParams": {"custom_param": "custom.param.value"}}}),
        json!({"options": {"authParamsMap": {"custom_param": "access_type"}}}),
    ] {
        let (status, body) = admin_api(
            &tb.issuer,
            reqwest::Method::PATCH,
            &format!("connections/{id}"),
            Some(patch),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
    let (_, got) = admin_api(
        &tb.issuer,
        reqwest::Method::GET,
        &format!("connections/{id}"),
        None,
    )
    .await;
    assert_eq!(got["display_name"], "Connection Name");
    assert_eq!(
        got["options"]["icon_url"],
        "https://cdn.example.com/assets/icon.png"
    );
    assert_eq!(
        got["options"]["authParams"]["custom_param"],
        "custom.param.value"
    );
    assert_eq!(
        got["options"]["authParamsMap"]["custom_param"],
        "access_type"
    );
    assert_eq!(
        got["options"]["scope"], "profile email",
        "fields left out are kept"
    );

    // Leaving client_secret out kept it: a login through the connection works.
    let user = login_user(&tb, "second")
        .await
        .expect("login after the patches");
    assert_eq!(user, format!("oauth2|second|{}", default_user().uuid));

    let (status, _) = admin_api(
        &tb.issuer,
        reqwest::Method::PATCH,
        &format!("connections/{id}"),
        Some(json!({"options": {"icon_url": null}})),
    )
    .await;
    assert_eq!(status, 200);
    let (_, got) = admin_api(
        &tb.issuer,
        reqwest::Method::GET,
        &format!("connections/{id}"),
        None,
    )
    .await;
    assert!(
        got["options"].get("icon_url").is_none(),
        "null removes: {got}"
    );

    let (status, body) = admin_api(
        &tb.issuer,
        reqwest::Method::PATCH,
        &format!("connections/{id}"),
        Some(json!({"name": "renamed"})),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("cannot be changed"))
    );

    let (status, _) = admin_api(
        &tb.issuer,
        reqwest::Method::DELETE,
        &format!("connections/{id}"),
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (status, _) = admin_api(
        &tb.issuer,
        reqwest::Method::GET,
        &format!("connections/{id}"),
        None,
    )
    .await;
    assert_eq!(status, 404);
    // A deleted connection serves no login: the app hears why.
    let url = tb.authorize_url(
        APP,
        APP_CALLBACK,
        &[
            ("scope", "openid"),
            ("state", "s"),
            ("connection", "second"),
        ],
    );
    let (status, location, _) = Browser::default().get(&url).await;
    assert_eq!(status, 302);
    let location = url::Url::parse(&location.expect("back to the app")).expect("a URL");
    let param = |name: &str| {
        location
            .query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    assert_eq!(
        param("error").as_deref(),
        Some("invalid_request"),
        "{location}"
    );
    assert_eq!(
        param("error_description").as_deref(),
        Some("connection `second` is not enabled for this app"),
        "{location}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_connections_are_refused_with_the_reason() {
    let tb = TestBed::start(|_, _| {}).await;
    let origin = tb.provider.origin().to_owned();
    let cases = [
        (json!({"name": "bad name!"}), "name"),
        (json!({"options": {"tokenURL": "not a url"}}), "tokenURL"),
        (json!({"options": {"colour": "blue"}}), "colour"),
        (
            json!({"options": {"client_secret_env": "HOME"}}),
            "configuration file only",
        ),
        (
            json!({"options": {"mapper": "no-such-mapper"}}),
            "not registered",
        ),
        (json!({"enabled_clients": ["ghost"]}), "ghost"),
    ];
    for (i, (change, needle)) in cases.into_iter().enumerate() {
        let mut spec = waypass_tests::login::connection_spec(&format!("c{i}"), &origin);
        for (k, v) in change.as_object().expect("object") {
            if k == "options" {
                for (ok, ov) in v.as_object().expect("options") {
                    spec["options"][ok] = ov.clone();
                }
            } else {
                spec[k] = v.clone();
            }
        }
        let (status, body) =
            admin_api(&tb.issuer, reqwest::Method::POST, "connections", Some(spec)).await;
        assert_eq!(status, 400, "{needle}: {body}");
        assert!(
            body["message"].as_str().is_some_and(|m| m.contains(needle)),
            "{needle}: {body}"
        );
    }
    let resp = http_client()
        .post(format!("{}/api/v2/connections", tb.issuer))
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status().as_u16(), 400);
}

#[tokio::test(flavor = "multi_thread")]
async fn try_runs_the_mapper_and_shows_its_requests_with_secrets_masked() {
    let tb = TestBed::start(|connections, _| {
        let settings = &mut connections[0]["options"]["mapper_settings"];
        settings["userinfo_url"] = json!(format!(
            "{}?api_key=sk-live-1",
            settings["userinfo_url"].as_str().expect("url")
        ));
    })
    .await;
    let id = connection_id(&tb, CONNECTION).await;
    let (status, body) = admin_api(
        &tb.issuer,
        reqwest::Method::POST,
        &format!("connections/{id}/try"),
        Some(json!({"access_token": "nope"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["error"]["kind"], "provider", "{body}");
    let url = body["requests"][0]["url"].as_str().expect("a request");
    assert!(
        url.contains("api_key=****") && !url.contains("sk-live"),
        "{url}"
    );
    assert_eq!(body["requests"][0]["status"], 401);
    assert_eq!(body["mapper"]["name"], "auth0-example");
}

// ---- clients ----

#[tokio::test(flavor = "multi_thread")]
async fn a_client_secret_is_shown_once_and_rotation_replaces_it() {
    let tb = TestBed::start(|_, _| {}).await;
    let (status, created) = admin_api(
        &tb.issuer,
        reqwest::Method::POST,
        "clients",
        Some(
            json!({"name": "svc", "callbacks": ["https://svc.test/cb"], "scopes": ["read:users"]}),
        ),
    )
    .await;
    assert_eq!(status, 201);
    let id = created["client_id"].as_str().expect("id").to_owned();
    let first = created["client_secret"]
        .as_str()
        .expect("secret shown")
        .to_owned();
    let (_, got) = admin_api(
        &tb.issuer,
        reqwest::Method::GET,
        &format!("clients/{id}"),
        None,
    )
    .await;
    assert!(got.get("client_secret").is_none() && !got.to_string().contains(&first));

    let (_, rotated) = admin_api(
        &tb.issuer,
        reqwest::Method::POST,
        &format!("clients/{id}/rotate-secret"),
        None,
    )
    .await;
    let second = rotated["client_secret"]
        .as_str()
        .expect("new secret")
        .to_owned();
    assert_ne!(first, second);
    let grant = |secret: String| {
        let (issuer, id) = (tb.issuer.clone(), id.clone());
        async move {
            http_client()
                .post(format!("{issuer}/oauth/token"))
                .basic_auth(id, Some(secret))
                .form(&[("grant_type", "client_credentials")])
                .send()
                .await
                .expect("token")
                .status()
                .as_u16()
        }
    };
    assert_eq!(grant(first).await, 401, "the old secret no longer works");
    assert_eq!(grant(second).await, 200);
}

// ---- mappers ----

#[tokio::test(flavor = "multi_thread")]
async fn uploads_that_are_not_mappers_are_refused_with_the_reason() {
    let tb = TestBed::start(|_, _| {}).await;
    let (status, body) = put_mapper(&tb.issuer, "m", b"not wasm".to_vec()).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("not a WebAssembly component"))
    );
    let (status, body) = put_mapper(&tb.issuer, "m", guests::bytes(guests::NOT_A_MAPPER)).await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("fetch-user-profile"))
    );
    let (status, _) =
        put_mapper(&tb.issuer, "bad name", guests::bytes(guests::AUTH0_EXAMPLE)).await;
    assert_eq!(status, 400);
    let resp = http_client()
        .put(format!("{}/api/v2/mappers/m", tb.issuer))
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", "text/plain")
        .body(guests::bytes(guests::AUTH0_EXAMPLE))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status().as_u16(), 415);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_version_serves_the_next_login_and_rollback_is_as_quick() {
    let tb = TestBed::start(|connections, _| {
        // auth0-example answers with the provider's uuid; hostile in echo
        // mode with "echo": the user id says which version served.
        connections[0]["options"]["mapper"] = json!("swap-me");
        connections[0]["options"]["mapper_settings"]["mode"] = json!("echo");
    })
    .await;
    let uuid_user = format!("oauth2|{CONNECTION}|{}", default_user().uuid);
    let echo_user = format!("oauth2|{CONNECTION}|echo");
    assert_eq!(
        login_user(&tb, CONNECTION).await,
        Ok(uuid_user.clone()),
        "v1 from the test bed"
    );

    let (status, v) = put_mapper(&tb.issuer, "swap-me", guests::bytes(guests::HOSTILE)).await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["version"], 2);
    assert_eq!(
        login_user(&tb, CONNECTION).await,
        Ok(echo_user.clone()),
        "v2 serves the next login"
    );

    let (status, _) = admin_api(
        &tb.issuer,
        reqwest::Method::POST,
        "mappers/swap-me/versions/1/activate",
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        login_user(&tb, CONNECTION).await,
        Ok(uuid_user),
        "rolled back"
    );

    let (_, versions) = admin_api(
        &tb.issuer,
        reqwest::Method::GET,
        "mappers/swap-me/versions",
        None,
    )
    .await;
    let list = versions["versions"].as_array().expect("versions");
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["active"], true);
    assert_eq!(list[1]["created_by"], "admin");

    let (status, body) =
        admin_api(&tb.issuer, reqwest::Method::DELETE, "mappers/swap-me", None).await;
    assert_eq!(status, 409, "in use: {body}");
    let (status, _) = admin_api(
        &tb.issuer,
        reqwest::Method::POST,
        "mappers/swap-me/versions/9/activate",
        None,
    )
    .await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hundred_swaps_under_load_fail_no_login() {
    let tb = Arc::new(
        TestBed::start(|connections, _| {
            connections[0]["options"]["mapper"] = json!("swap-me");
            connections[0]["options"]["mapper_settings"]["mode"] = json!("echo");
        })
        .await,
    );
    let (status, _) = put_mapper(&tb.issuer, "swap-me", guests::bytes(guests::HOSTILE)).await;
    assert_eq!(status, 201);
    let uuid_user = format!("oauth2|{CONNECTION}|{}", default_user().uuid);
    let echo_user = format!("oauth2|{CONNECTION}|echo");
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (tb, stop, seen, uuid_user, echo_user) = (
                tb.clone(),
                stop.clone(),
                seen.clone(),
                uuid_user.clone(),
                echo_user.clone(),
            );
            tokio::spawn(async move {
                let mut failures = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    match login_user(&tb, CONNECTION).await {
                        Ok(u) if u == uuid_user => seen[0].fetch_add(1, Ordering::Relaxed),
                        Ok(u) if u == echo_user => seen[1].fetch_add(1, Ordering::Relaxed),
                        other => {
                            failures.push(format!("{other:?}"));
                            0
                        }
                    };
                }
                failures
            })
        })
        .collect();
    for i in 0..100 {
        let version = if i % 2 == 0 { 1 } else { 2 };
        let (status, body) = admin_api(
            &tb.issuer,
            reqwest::Method::POST,
            &format!("mappers/swap-me/versions/{version}/activate"),
            None,
        )
        .await;
        assert_eq!(status, 200, "{body}");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut failures = Vec::new();
    for w in workers {
        failures.extend(w.await.expect("worker"));
    }
    assert!(failures.is_empty(), "failed logins: {failures:?}");
    let (v1, v2) = (
        seen[0].load(Ordering::Relaxed),
        seen[1].load(Ordering::Relaxed),
    );
    assert!(
        v1 > 0 && v2 > 0,
        "both versions served logins: {v1} and {v2}"
    );
}

// ---- users ----

#[tokio::test(flavor = "multi_thread")]
async fn users_are_listed_searched_by_email_read_and_deleted() {
    let tb = TestBed::start(|_, _| {}).await;
    let user = login_user(&tb, CONNECTION).await.expect("login");
    let (status, page) = admin_api(
        &tb.issuer,
        reqwest::Method::GET,
        "users?email=ADA@example&include_totals=true",
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(page["users"][0]["user_id"], user.as_str());
    assert_eq!(page["users"][0]["logins_count"], 1);
    assert_eq!(page["total"], 1, "{page}");
    let (_, none) = admin_api(&tb.issuer, reqwest::Method::GET, "users?email=nobody", None).await;
    assert_eq!(
        none,
        json!([]),
        "without include_totals: Auth0's bare array"
    );
    let path = format!("users/{}", user.replace('|', "%7C"));
    let (status, got) = admin_api(&tb.issuer, reqwest::Method::GET, &path, None).await;
    assert_eq!(status, 200);
    assert_eq!(got["email"], default_user().email.as_str());
    let (status, _) = admin_api(&tb.issuer, reqwest::Method::DELETE, &path, None).await;
    assert_eq!(status, 204);
    let (status, _) = admin_api(&tb.issuer, reqwest::Method::GET, &path, None).await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_component_dropped_into_the_watched_directory_becomes_the_active_version() {
    let tb = TestBed::start(|connections, _| {
        connections[0]["options"]["mapper"] = json!("swap-me");
        connections[0]["options"]["mapper_settings"]["mode"] = json!("echo");
    })
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let watcher = tokio::spawn(waypass::admin::watch::watch(
        tb.broker.clone(),
        dir.path().to_path_buf(),
    ));
    std::fs::write(dir.path().join("broken.wasm"), b"not a component").expect("write");
    std::fs::write(
        dir.path().join("swap-me.wasm"),
        guests::bytes(guests::HOSTILE),
    )
    .expect("write");

    // The watcher polls once a second and waits for a file to hold still.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let versions = loop {
        let (_, versions) = admin_api(
            &tb.issuer,
            reqwest::Method::GET,
            "mappers/swap-me/versions",
            None,
        )
        .await;
        if versions["versions"]
            .as_array()
            .is_some_and(|v| v.len() == 2)
        {
            break versions;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the watcher did not register swap-me.wasm"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(versions["versions"][1]["created_by"], "mappers-dir");
    assert_eq!(versions["versions"][1]["active"], true);
    assert_eq!(
        login_user(&tb, CONNECTION).await,
        Ok(format!("oauth2|{CONNECTION}|echo"))
    );
    let (status, _) = admin_api(
        &tb.issuer,
        reqwest::Method::GET,
        "mappers/broken/versions",
        None,
    )
    .await;
    assert_eq!(
        status, 404,
        "a file that is not a component registers nothing"
    );
    watcher.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connection_pinned_to_a_version_keeps_it_when_another_becomes_active() {
    // Every mapper in play names the user differently: `auth0-example`
    // (swap-me version 1) by uuid, `hostile` in echo mode (version 2) as
    // `echo`, `declarative` (version 3, and the connection's mapper before
    // the pin) by email.
    let tb = TestBed::start(|connections, _| {
        let options = &mut connections[0]["options"];
        options["mapper"] = json!("declarative");
        options["mapper_settings"]["mode"] = json!("echo");
        options["mapper_settings"]["user_id"] = json!("/account/email");
    })
    .await;
    let user = |id: &str| Ok(format!("oauth2|{CONNECTION}|{id}"));
    let (by_uuid, by_email) = (default_user().uuid, default_user().email);
    assert_eq!(login_user(&tb, CONNECTION).await, user(&by_email));

    let (status, _) = put_mapper(&tb.issuer, "swap-me", guests::bytes(guests::HOSTILE)).await;
    assert_eq!(status, 201);
    let id = connection_id(&tb, CONNECTION).await;
    let set_mapper = |mapper: &'static str| {
        let (tb, id) = (&tb, &id);
        async move {
            admin_api(
                &tb.issuer,
                reqwest::Method::PATCH,
                &format!("connections/{id}"),
                Some(json!({"options": {"mapper": mapper}})),
            )
            .await
        }
    };
    let (status, body) = set_mapper("swap-me@1").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        login_user(&tb, CONNECTION).await,
        user(&by_uuid),
        "version 1 while version 2 is active"
    );

    let (status, _) = put_mapper(&tb.issuer, "swap-me", guests::bytes(guests::DECLARATIVE)).await;
    assert_eq!(status, 201, "version 3, active");
    assert_eq!(
        login_user(&tb, CONNECTION).await,
        user(&by_uuid),
        "still version 1 once version 3 is active"
    );
    let (status, body) = admin_api(
        &tb.issuer,
        reqwest::Method::POST,
        "mappers/swap-me/versions/2/activate",
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        login_user(&tb, CONNECTION).await,
        user(&by_uuid),
        "still version 1 after a rollback to version 2"
    );

    // Unpinned, the connection follows the active version.
    let (status, body) = set_mapper("swap-me").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(login_user(&tb, CONNECTION).await, user("echo"));

    let (status, body) = set_mapper("swap-me@7").await;
    assert_eq!(status, 400, "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn bodies_are_read_only_for_valid_tokens_and_only_uploads_may_be_large() {
    let tb = TestBed::start(|_, _| {}).await;
    // Small bodies: an early answer to a large one races the client still
    // writing it (the server never reads what it refuses).
    let resp = http_client()
        .put(format!("{}/api/v2/mappers/m", tb.issuer))
        .header("content-type", "application/wasm")
        .body(vec![0u8; 64])
        .send()
        .await
        .expect("request");
    assert_eq!(
        resp.status().as_u16(),
        401,
        "no token: refused before the body"
    );
    // One byte over the JSON cap: the byte that crosses it is the last one,
    // so the server has read everything when it answers.
    let over = vec![b' '; waypass::admin::MAX_JSON_BYTES + 1];
    let resp = http_client()
        .post(format!("{}/api/v2/connections", tb.issuer))
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", "application/json")
        .body(over)
        .send()
        .await
        .expect("request");
    assert_eq!(
        resp.status().as_u16(),
        413,
        "JSON bodies are capped at 1 MiB"
    );
}

// ---- Auth0 fetchUserProfile scripts ----

/// The documentation's script, pointed at the development provider.
fn doc_script(tb: &TestBed) -> String {
    include_str!("../../examples/scripts/auth0-doc-example.js").replace(
        "https://auth.example.com/userinfo",
        &format!("{}/userinfo", tb.provider.origin()),
    )
}

/// A connection in the shape of Auth0's Management API, with a script.
fn scripted_connection(tb: &TestBed, name: &str, script: &str) -> Value {
    let origin = tb.provider.origin();
    json!({
        "name": name,
        "strategy": "oauth2",
        "display_name": "Scripted",
        "enabled_clients": [APP],
        "options": {
            "client_id": waypass_tests::login::PROVIDER_CLIENT,
            "client_secret": waypass_tests::login::PROVIDER_SECRET,
            "authorizationURL": format!("{origin}/authorize"),
            "tokenURL": format!("{origin}/token"),
            "scope": "profile email",
            "scripts": { "fetchUserProfile": script },
            "mapper_egress": {"allow_private_networks": true}
        }
    })
}

/// PATCHes connection `id` to run `script`.
async fn patch_script(tb: &TestBed, id: &str, script: &str) -> (u16, Value) {
    admin_api(
        &tb.issuer,
        reqwest::Method::PATCH,
        &format!("connections/{id}"),
        Some(json!({"options": {"scripts": {"fetchUserProfile": script}}})),
    )
    .await
}

/// Creates connection `name` running `script`; its id.
async fn create_scripted(tb: &TestBed, name: &str, script: &str) -> String {
    let (status, created) = admin_api(
        &tb.issuer,
        reqwest::Method::POST,
        "connections",
        Some(scripted_connection(tb, name, script)),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    created["id"].as_str().expect("id").to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connection_with_a_fetch_user_profile_script_logs_users_in() {
    let tb = TestBed::start(|_, _| {}).await;
    let script = doc_script(&tb);
    let (status, created) = admin_api(
        &tb.issuer,
        reqwest::Method::POST,
        "connections",
        Some(scripted_connection(&tb, "scripted", &script)),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["options"]["scripts"]["fetchUserProfile"], script);
    assert!(created["options"].get("client_secret").is_none());
    let user = login_user(&tb, "scripted").await.expect("login");
    assert_eq!(user, format!("oauth2|scripted|{}", default_user().uuid));

    // `try` runs the script for real and shows what it did.
    let id = connection_id(&tb, "scripted").await;
    let (status, tried) = admin_api(
        &tb.issuer,
        reqwest::Method::POST,
        &format!("connections/{id}/try"),
        Some(json!({"access_token": "not-a-token"})),
    )
    .await;
    assert_eq!(status, 200, "{tried}");
    assert_eq!(tried["script"], "fetchUserProfile");
    assert_eq!(tried["error"]["kind"], "other");
    assert_eq!(tried["requests"][0]["status"], 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_script_error_reaches_the_app_with_its_message_and_a_patch_swaps_the_script() {
    let tb = TestBed::start(|_, _| {}).await;
    let id = create_scripted(&tb, "scripted", &doc_script(&tb)).await;
    login_user(&tb, "scripted").await.expect("first script");

    let refusing =
        "function (accessToken, ctx, cb) {\n  cb(new Error('Your account is suspended'));\n}";
    let (status, body) = patch_script(&tb, &id, refusing).await;
    assert_eq!(status, 200, "{body}");
    // The next login runs the new script; the other options were kept.
    let url = tb.authorize_url(
        APP,
        APP_CALLBACK,
        &[
            ("scope", "openid"),
            ("connection", "scripted"),
            ("state", "s-1"),
        ],
    );
    let landing = Browser::default().login(&tb, &url, false).await;
    assert_eq!(landing.param("error").as_deref(), Some("invalid_request"));
    assert_eq!(
        landing.param("error_description").as_deref(),
        Some("Your account is suspended")
    );
    assert_eq!(landing.param("state").as_deref(), Some("s-1"));

    // And back: no restart anywhere.
    let (status, body) = patch_script(&tb, &id, &doc_script(&tb)).await;
    assert_eq!(status, 200, "{body}");
    login_user(&tb, "scripted")
        .await
        .expect("the script swapped back");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_script_that_does_not_compile_is_refused_on_save_and_the_old_one_keeps_serving() {
    let tb = TestBed::start(|_, _| {}).await;
    let broken = "function (accessToken, ctx, cb) {\n  let x = ;\n}";
    let (status, body) = admin_api(
        &tb.issuer,
        reqwest::Method::POST,
        "connections",
        Some(scripted_connection(&tb, "broken", broken)),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body["message"],
        "scripts.fetchUserProfile: line 2, column 11: expected expression, got ';'"
    );
    let (_, list) = admin_api(&tb.issuer, reqwest::Method::GET, "connections", None).await;
    assert!(
        list.as_array()
            .is_some_and(|l| l.iter().all(|c| c["name"] != "broken"))
    );

    let id = create_scripted(&tb, "scripted", &doc_script(&tb)).await;
    let (status, body) = patch_script(&tb, &id, broken).await;
    assert_eq!(status, 400, "{body}");
    let (_, stored) = admin_api(
        &tb.issuer,
        reqwest::Method::GET,
        &format!("connections/{id}"),
        None,
    )
    .await;
    assert_eq!(
        stored["options"]["scripts"]["fetchUserProfile"],
        doc_script(&tb)
    );
    login_user(&tb, "scripted")
        .await
        .expect("the saved script still serves");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connection_names_a_mapper_or_a_script_not_both_nor_neither() {
    let tb = TestBed::start(|_, _| {}).await;
    let mut both = scripted_connection(&tb, "both", &doc_script(&tb));
    both["options"]["mapper"] = json!("auth0-example");
    let (status, body) =
        admin_api(&tb.issuer, reqwest::Method::POST, "connections", Some(both)).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("both a mapper and scripts.fetchUserProfile")),
        "{body}"
    );
    let mut neither = scripted_connection(&tb, "neither", "x");
    neither["options"]
        .as_object_mut()
        .map(|o| o.remove("scripts"));
    let (status, body) = admin_api(
        &tb.issuer,
        reqwest::Method::POST,
        "connections",
        Some(neither),
    )
    .await;
    assert_eq!(status, 400, "{body}");

    // Moving a mapper connection to a script: remove the mapper in the same PATCH.
    let id = connection_id(&tb, CONNECTION).await;
    let (status, body) = admin_api(&tb.issuer,
        reqwest::Method::PATCH,
        &format!("connections/{id}"),
        Some(json!({"options": {"mapper": null, "mapper_settings": null, "scripts": {"fetchUserProfile": doc_script(&tb)}}})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        login_user(&tb, CONNECTION).await.expect("login"),
        format!("oauth2|{CONNECTION}|{}", default_user().uuid)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn try_calls_hanging_on_a_provider_cannot_starve_another_connections_logins() {
    use waypass::broker::MAX_CONCURRENT_TRY_CALLS;
    use waypass::mapper::limits::POOL_CONCURRENT_CALLS;
    let mut gate = Gate::start().await;
    let origin = gate.origin();
    let tb = Arc::new(
        TestBed::start(|connections, _| {
            let mut greedy = connections[0].clone();
            greedy["name"] = json!("greedy");
            let options = &mut greedy["options"];
            options["mapper"] = json!("hostile");
            options["mapper_settings"] = json!({"mode": "fetch", "url": format!("{origin}/")});
            options["mapper_egress"] =
                json!({"allowed_hosts": [origin], "allow_private_networks": true});
            connections.push(greedy);
        })
        .await,
    );
    let id = connection_id(&tb, "greedy").await;
    // More `try` calls at once than the pool has slots, each held until
    // its mapper's request to the gate fails.
    let calls = POOL_CONCURRENT_CALLS as usize + 8;
    let (answered_tx, mut answered_rx) = tokio::sync::mpsc::unbounded_channel();
    let tries: Vec<_> = (0..calls)
        .map(|_| {
            let (tb, id, answered) = (tb.clone(), id.clone(), answered_tx.clone());
            tokio::spawn(async move {
                let answer = admin_api(
                    &tb.issuer,
                    reqwest::Method::POST,
                    &format!("connections/{id}/try"),
                    Some(json!({"access_token": "at"})),
                )
                .await;
                let _ = answered.send(());
                answer
            })
        })
        .collect();
    // Settled: every call either answered or waiting at the gate. (The
    // bound only turns a broken broker into a failure instead of a hang.)
    let mut answered = 0;
    tokio::time::timeout(std::time::Duration::from_secs(120), async {
        while answered + gate.accepted() < calls {
            tokio::select! {
                Some(()) = answered_rx.recv() => answered += 1,
                () = gate.changed() => {}
            }
        }
    })
    .await
    .expect("every try call is answered or waits on the provider");
    assert_eq!(
        gate.accepted(),
        MAX_CONCURRENT_TRY_CALLS,
        "try calls in flight at once"
    );

    // Meanwhile another connection's logins are served.
    assert_eq!(
        login_user(&tb, CONNECTION).await,
        Ok(format!("oauth2|{CONNECTION}|{}", default_user().uuid))
    );

    drop(gate);
    let mut refused = 0;
    for call in tries {
        let (status, body) = call.await.expect("try task");
        match status {
            503 => {
                assert_eq!(
                    body["message"],
                    format!(
                        "{MAX_CONCURRENT_TRY_CALLS} try calls are running; try again when one has finished"
                    )
                );
                refused += 1;
            }
            200 => assert_eq!(body["error"]["kind"], "other", "{body}"),
            _ => panic!("{status}: {body}"),
        }
    }
    assert_eq!(refused, calls - MAX_CONCURRENT_TRY_CALLS);
}

// ---- the watched directory, poll by poll (issue #10 §5: upgrades) ----

/// The versions of mapper `name` in the store: (number, SHA-256).
async fn stored_versions(tb: &TestBed, name: &str) -> Vec<(u32, String)> {
    use waypass::store::Store as _;
    tb.store
        .mapper_versions(name)
        .await
        .expect("the store answers")
        .into_iter()
        .map(|v| (v.version, v.sha256))
        .collect()
}

/// Sets `path`'s modification time `seconds` past the epoch: a rewrite
/// the watcher must notice, whatever the file system's time resolution.
fn set_modified(path: &std::path::Path, seconds: u64) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .and_then(|f| {
            f.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(seconds))
        })
        .expect("set the modification time");
}

#[tokio::test]
async fn a_file_still_growing_in_the_watched_directory_is_registered_only_once_it_holds_still() {
    use std::io::Write as _;
    use waypass::admin::watch::{Outcome, Watcher};
    let tb = TestBed::start(|_, _| {}).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("growing.wasm");
    let bytes = guests::bytes(guests::AUTH0_EXAMPLE);
    let mut watcher = Watcher::new(dir.path().to_path_buf());
    // A copy in progress: a third more of the file at every poll.
    let mut file = std::fs::File::create(&path).expect("create");
    for part in bytes.chunks(bytes.len().div_ceil(3)) {
        file.write_all(part).expect("write");
        file.flush().expect("flush");
        let outcomes = watcher.poll(&tb.broker).await;
        assert!(
            outcomes.is_empty(),
            "registered while growing: {outcomes:?}"
        );
        assert_eq!(stored_versions(&tb, "growing").await, vec![]);
    }
    drop(file);
    let outcomes = watcher.poll(&tb.broker).await;
    assert!(
        matches!(outcomes.as_slice(), [(_, Outcome::Registered(1))]),
        "registered once it held still for a poll: {outcomes:?}"
    );
    assert_eq!(
        stored_versions(&tb, "growing").await,
        vec![(1, waypass::mapper::sha256_hex(&bytes))],
        "the whole file"
    );
}

#[tokio::test]
async fn the_same_bytes_written_again_make_no_new_version_and_a_replaced_file_does() {
    use waypass::admin::watch::{Outcome, Watcher};
    let tb = TestBed::start(|_, _| {}).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("rewritten.wasm");
    let seed = guests::bytes(guests::AUTH0_EXAMPLE);
    let mut watcher = Watcher::new(dir.path().to_path_buf());
    // Two polls per state: one to see the file, one to see it held still.
    let settle = async |watcher: &mut Watcher| {
        let first = watcher.poll(&tb.broker).await;
        assert!(
            first.is_empty(),
            "acted on a file not yet seen still: {first:?}"
        );
        watcher.poll(&tb.broker).await
    };

    std::fs::write(&path, &seed).expect("write");
    set_modified(&path, 1_000);
    let outcomes = settle(&mut watcher).await;
    assert!(
        matches!(outcomes.as_slice(), [(_, Outcome::Registered(1))]),
        "{outcomes:?}"
    );

    // The same bytes again (a deploy script copying every file again).
    std::fs::write(&path, &seed).expect("write");
    set_modified(&path, 2_000);
    let outcomes = settle(&mut watcher).await;
    assert!(
        matches!(outcomes.as_slice(), [(_, Outcome::Unchanged)]),
        "{outcomes:?}"
    );
    assert_eq!(
        stored_versions(&tb, "rewritten").await.len(),
        1,
        "no new version"
    );

    // Other bytes: a new version, active.
    let declarative = guests::bytes(guests::DECLARATIVE);
    std::fs::write(&path, &declarative).expect("write");
    set_modified(&path, 3_000);
    let outcomes = settle(&mut watcher).await;
    assert!(
        matches!(outcomes.as_slice(), [(_, Outcome::Registered(2))]),
        "{outcomes:?}"
    );
    assert_eq!(
        stored_versions(&tb, "rewritten").await,
        vec![
            (1, waypass::mapper::sha256_hex(&seed)),
            (2, waypass::mapper::sha256_hex(&declarative)),
        ]
    );
    let (_, mapper) = admin_api(&tb.issuer, reqwest::Method::GET, "mappers/rewritten", None).await;
    let active: Vec<_> = mapper["versions"]
        .as_array()
        .expect("versions")
        .iter()
        .filter(|v| v["active"] == true)
        .map(|v| v["version"].clone())
        .collect();
    assert_eq!(
        active,
        [2],
        "the replaced file's version is active: {mapper}"
    );
}

/// A log writer for one test's thread: what the code under test logs.
#[derive(Clone, Default)]
struct CapturedLog(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for CapturedLog {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

// One thread (`current_thread`): the watcher logs on the test's thread,
// where the capturing logger is the default.
#[tokio::test]
async fn files_in_the_watched_directory_whose_names_are_not_mapper_names_are_ignored_and_logged() {
    use tracing_subscriber::util::SubscriberInitExt as _;
    use waypass::admin::watch::Watcher;
    let log = CapturedLog::default();
    let writer = log.clone();
    let _logging = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .set_default();
    let tb = TestBed::start(|_, _| {}).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let component = guests::bytes(guests::AUTH0_EXAMPLE);
    let invalid = [
        "Has Space.wasm",
        "-dash-first.wasm",
        "under_score.wasm",
        "dot.ted.wasm",
    ];
    for name in invalid {
        std::fs::write(dir.path().join(name), &component).expect("write");
    }
    std::fs::write(dir.path().join("fine.wasm"), &component).expect("write");
    let mut watcher = Watcher::new(dir.path().to_path_buf());
    assert!(watcher.poll(&tb.broker).await.is_empty());
    let outcomes = watcher.poll(&tb.broker).await;
    let acted: Vec<_> = outcomes
        .iter()
        .filter_map(|(p, _)| p.file_name()?.to_str())
        .collect();
    assert_eq!(acted, ["fine.wasm"], "only the valid name is registered");
    let (_, listed) = admin_api(&tb.issuer, reqwest::Method::GET, "mappers", None).await;
    let registered = listed.to_string();
    for name in invalid {
        let stem = name.trim_end_matches(".wasm");
        assert!(
            !registered.contains(stem),
            "{stem} was registered: {listed}"
        );
        let log =
            String::from_utf8_lossy(&log.0.lock().unwrap_or_else(|p| p.into_inner())).into_owned();
        assert!(
            log.lines().any(|l| l.contains("ignoring mapper file")
                && l.contains(name)
                && l.contains("not a valid connection name")),
            "{name} is logged as ignored: {log}"
        );
    }
    assert!(
        watcher.poll(&tb.broker).await.is_empty(),
        "nothing more to do at the next poll"
    );
}
