//! The management plane against its own callers (issue 9, section 2): a
//! scope cannot be escalated, code the configuration file owns cannot be
//! replaced, a token dies with its grant, write-only values stay unread
//! and unmoved, and secrets a person chose are stored with a slow hash.

use std::path::Path;
use std::sync::Arc;

use openidconnect::reqwest::Method;
use serde_json::{Value, json};
use waypass::admin::watch::{Outcome, Watcher};
use waypass::broker::Broker;
use waypass::broker::config::Config;
use waypass::store::{SqliteStore, Store as _};
use waypass_tests::guests;
use waypass_tests::login::{
    ADMIN_TOKEN, APP, APP_CALLBACK, APP_SECRET, Browser, TestBed, admin_api, api_call,
    client_credentials, connection_spec, http_client, redeem, userinfo,
};

/// Creates a confidential client holding `scopes`, as the admin: its id
/// and secret.
async fn client_with(tb: &TestBed, scopes: &[&str]) -> (String, String) {
    let (status, created) = admin_api(
        &tb.issuer,
        Method::POST,
        "clients",
        Some(json!({"callbacks": ["https://svc.test/cb"], "scopes": scopes})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    (
        created["client_id"].as_str().expect("client_id").to_owned(),
        created["client_secret"]
            .as_str()
            .expect("secret")
            .to_owned(),
    )
}

async fn scopes_of(tb: &TestBed, id: &str) -> Value {
    let (_, client) = admin_api(&tb.issuer, Method::GET, &format!("clients/{id}"), None).await;
    client["scopes"].clone()
}

fn assert_forbidden((status, body): (u16, Value), says: &str) {
    assert_eq!(status, 403, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| m.contains(says)),
        "the refusal says `{says}`: {body}"
    );
}

// ---- scopes cannot be escalated ----

#[tokio::test(flavor = "multi_thread")]
async fn a_write_clients_caller_cannot_grant_scopes_to_itself_or_to_another_client() {
    let tb = TestBed::start(|_, _| {}).await;
    let (writer, secret) = client_with(&tb, &["read:clients", "write:clients"]).await;
    let (other, _) = client_with(&tb, &[]).await;
    let t = client_credentials(&tb.issuer, &writer, &secret, &[]).await;
    let call = |method: Method, path: String, body: Value| {
        let (issuer, t) = (tb.issuer.clone(), t.clone());
        async move { api_call(&issuer, method, &path, Some(&t), Some(body)).await }
    };

    assert_forbidden(
        call(
            Method::PATCH,
            format!("clients/{writer}"),
            json!({"scopes": ["read:clients", "write:clients", "write:mappers"]}),
        )
        .await,
        "write:client_grants",
    );
    assert_forbidden(
        call(
            Method::PATCH,
            format!("clients/{other}"),
            json!({"scopes": ["write:mappers"]}),
        )
        .await,
        "write:client_grants",
    );
    assert_forbidden(
        call(
            Method::POST,
            "clients".into(),
            json!({"callbacks": ["https://x.test/cb"], "scopes": ["write:mappers"]}),
        )
        .await,
        "write:client_grants",
    );
    assert_eq!(
        scopes_of(&tb, &writer).await,
        json!(["read:clients", "write:clients"])
    );
    assert_eq!(scopes_of(&tb, &other).await, json!([]));
    // What `write:clients` is for still works: a client without scopes.
    let (status, body) = call(
        Method::POST,
        "clients".into(),
        json!({"callbacks": ["https://x.test/cb"]}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_admin_grants_any_scope_and_a_grant_holder_grants_only_what_it_holds() {
    let tb = TestBed::start(|_, _| {}).await;
    let (granter, secret) = client_with(
        &tb,
        &[
            "read:clients",
            "write:clients",
            "write:client_grants",
            "read:users",
        ],
    )
    .await;
    let t = client_credentials(&tb.issuer, &granter, &secret, &[]).await;
    let call = |method: Method, path: String, body: Value| {
        let (issuer, t) = (tb.issuer.clone(), t.clone());
        async move { api_call(&issuer, method, &path, Some(&t), Some(body)).await }
    };

    let (status, made) = call(
        Method::POST,
        "clients".into(),
        json!({"callbacks": ["https://x.test/cb"], "scopes": ["read:users"]}),
    )
    .await;
    assert_eq!(status, 201, "a scope it holds: {made}");
    let made = made["client_id"].as_str().expect("id").to_owned();
    assert_forbidden(
        call(
            Method::POST,
            "clients".into(),
            json!({"callbacks": ["https://x.test/cb"], "scopes": ["write:mappers"]}),
        )
        .await,
        "`write:mappers`",
    );
    assert_forbidden(
        call(
            Method::PATCH,
            format!("clients/{made}"),
            json!({"scopes": ["read:users", "write:users"]}),
        )
        .await,
        "`write:users`",
    );
    assert_forbidden(
        call(
            Method::PATCH,
            format!("clients/{granter}"),
            json!({"scopes": ["read:clients", "write:clients", "write:client_grants", "read:users", "write:users"]}),
        )
        .await,
        "`write:users`",
    );
    // Taking a scope away is never an escalation.
    let (status, body) = call(
        Method::PATCH,
        format!("clients/{made}"),
        json!({"scopes": []}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(scopes_of(&tb, &made).await, json!([]));
    // The admin grants what it likes.
    let (status, body) = admin_api(
        &tb.issuer,
        Method::PATCH,
        &format!("clients/{made}"),
        Some(json!({"scopes": ["write:mappers", "write:users"]})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        scopes_of(&tb, &made).await,
        json!(["write:mappers", "write:users"])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rotating_the_secret_of_a_client_with_scopes_the_caller_lacks_is_refused() {
    let tb = TestBed::start(|_, _| {}).await;
    let (writer, secret) = client_with(&tb, &["write:clients"]).await;
    let (mighty, mighty_secret) = client_with(&tb, &["write:mappers"]).await;
    let t = client_credentials(&tb.issuer, &writer, &secret, &[]).await;
    assert_forbidden(
        api_call(
            &tb.issuer,
            Method::POST,
            &format!("clients/{mighty}/rotate-secret"),
            Some(&t),
            None,
        )
        .await,
        "write:mappers",
    );
    // Its secret still works: nothing was rotated.
    client_credentials(&tb.issuer, &mighty, &mighty_secret, &[]).await;
    // A client may rotate its own secret: it learns nothing it lacks.
    let (status, body) = api_call(
        &tb.issuer,
        Method::POST,
        &format!("clients/{writer}/rotate-secret"),
        Some(&t),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

// ---- tokens die with their grant ----

#[tokio::test(flavor = "multi_thread")]
async fn a_management_token_stops_working_when_its_clients_secret_is_rotated() {
    let tb = TestBed::start(|_, _| {}).await;
    let (id, secret) = client_with(&tb, &["read:users"]).await;
    let t = client_credentials(&tb.issuer, &id, &secret, &[]).await;
    let read = || api_call(&tb.issuer, Method::GET, "users", Some(&t), None);
    assert_eq!(read().await.0, 200);
    let (status, rotated) = admin_api(
        &tb.issuer,
        Method::POST,
        &format!("clients/{id}/rotate-secret"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{rotated}");
    let (status, body) = read().await;
    assert_eq!(status, 401, "the old token is revoked: {body}");
    let fresh = client_credentials(
        &tb.issuer,
        &id,
        rotated["client_secret"].as_str().expect("new secret"),
        &[],
    )
    .await;
    let (status, _) = api_call(&tb.issuer, Method::GET, "users", Some(&fresh), None).await;
    assert_eq!(status, 200, "a token from the new secret works");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_management_token_stops_working_when_its_client_is_deleted() {
    let tb = TestBed::start(|_, _| {}).await;
    let (id, secret) = client_with(&tb, &["read:users"]).await;
    let t = client_credentials(&tb.issuer, &id, &secret, &[]).await;
    assert_eq!(
        api_call(&tb.issuer, Method::GET, "users", Some(&t), None)
            .await
            .0,
        200
    );
    let (status, _) = admin_api(&tb.issuer, Method::DELETE, &format!("clients/{id}"), None).await;
    assert_eq!(status, 204);
    let (status, body) = api_call(&tb.issuer, Method::GET, "users", Some(&t), None).await;
    assert_eq!(status, 401, "{body}");
    // Nor does a new client under the same id inherit the old tokens.
    let (status, body) = admin_api(
        &tb.issuer,
        Method::POST,
        "clients",
        Some(
            json!({"client_id": id, "callbacks": ["https://x.test/cb"], "scopes": ["read:users"]}),
        ),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = api_call(&tb.issuer, Method::GET, "users", Some(&t), None).await;
    assert_eq!(status, 401, "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_management_token_loses_a_scope_its_client_loses() {
    let tb = TestBed::start(|_, _| {}).await;
    let (id, secret) = client_with(&tb, &["read:users", "read:connections"]).await;
    let t = client_credentials(&tb.issuer, &id, &secret, &[]).await;
    assert_eq!(
        api_call(&tb.issuer, Method::GET, "users", Some(&t), None)
            .await
            .0,
        200
    );
    let (status, body) = admin_api(
        &tb.issuer,
        Method::PATCH,
        &format!("clients/{id}"),
        Some(json!({"scopes": ["read:connections"]})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_forbidden(
        api_call(&tb.issuer, Method::GET, "users", Some(&t), None).await,
        "read:users",
    );
    let (status, body) = api_call(&tb.issuer, Method::GET, "connections", Some(&t), None).await;
    assert_eq!(status, 200, "the scope it kept still works: {body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_management_api_refuses_a_users_access_token_whatever_scope_it_asked_for() {
    let tb = TestBed::start(|_, _| {}).await;
    let url = tb.authorize_url(
        APP,
        APP_CALLBACK,
        &[
            ("scope", "openid write:connections read:users"),
            ("connection", waypass_tests::login::CONNECTION),
        ],
    );
    let landing = Browser::default().login(&tb, &url, false).await;
    let back = landing.location.as_ref().expect("back at the app");
    let tokens = redeem(&tb.issuer, APP, APP_SECRET, APP_CALLBACK, back.as_str()).await;
    assert_eq!(
        tokens["scope"], "openid write:connections read:users",
        "the scope was granted as asked: {tokens}"
    );
    let user_token = tokens["access_token"].as_str().expect("access token");
    assert!(
        userinfo(&tb.issuer, user_token).await["sub"].is_string(),
        "a valid user token"
    );
    for path in ["connections", "users"] {
        let (status, body) = api_call(&tb.issuer, Method::GET, path, Some(user_token), None).await;
        assert_eq!(status, 401, "{path}: {body}");
    }
}

// ---- customHeaders are write-only; a new tokenURL needs the secrets again ----

/// Creates a connection with a secret and two custom headers; its id and
/// the API's answer.
async fn connection_with_headers(tb: &TestBed, name: &str) -> (String, Value) {
    let mut spec = connection_spec(name, tb.provider.origin());
    spec["options"]["customHeaders"] =
        json!({"Authorization": "Basic c2VjcmV0LWhlYWRlcg==", "X-Tenant": "acme"});
    let (status, created) = admin_api(&tb.issuer, Method::POST, "connections", Some(spec)).await;
    assert_eq!(status, 201, "{created}");
    (created["id"].as_str().expect("id").to_owned(), created)
}

fn assert_never_shows_headers(shown: &Value) {
    let text = shown.to_string();
    assert!(
        !text.contains("c2VjcmV0LWhlYWRlcg") && !text.contains("customHeaders"),
        "customHeaders are write-only: {text}"
    );
}

/// The connection's headers as stored.
async fn stored_headers(tb: &TestBed, id: &str) -> Vec<(String, String)> {
    let records = tb.store.connections().await.expect("store");
    let record = records.iter().find(|r| r.id == id).expect("stored");
    record
        .spec
        .options
        .custom_headers
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn custom_headers_are_never_shown_and_a_patch_keeps_the_headers_it_does_not_send() {
    let tb = TestBed::start(|_, _| {}).await;
    let (id, created) = connection_with_headers(&tb, "headed").await;
    assert_never_shows_headers(&created);
    let path = format!("connections/{id}");
    assert_never_shows_headers(&admin_api(&tb.issuer, Method::GET, &path, None).await.1);
    assert_never_shows_headers(
        &admin_api(&tb.issuer, Method::GET, "connections", None)
            .await
            .1,
    );

    let (status, patched) = admin_api(
        &tb.issuer,
        Method::PATCH,
        &path,
        Some(json!({"options": {"customHeaders": {"x-tenant": "beta"}}})),
    )
    .await;
    assert_eq!(status, 200, "{patched}");
    assert_never_shows_headers(&patched);
    assert_eq!(
        stored_headers(&tb, &id).await,
        pairs(&[
            ("Authorization", "Basic c2VjcmV0LWhlYWRlcg=="),
            ("x-tenant", "beta")
        ]),
        "the header sent again replaces its namesake; the other is kept"
    );

    let (status, body) = admin_api(
        &tb.issuer,
        Method::PATCH,
        &path,
        Some(json!({"options": {"customHeaders": {"Authorization": null}, "scope": "profile"}})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        stored_headers(&tb, &id).await,
        pairs(&[("x-tenant", "beta")]),
        "null removes one header"
    );
    let (status, body) = admin_api(
        &tb.issuer,
        Method::PATCH,
        &path,
        Some(json!({"options": {"customHeaders": null}})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        stored_headers(&tb, &id).await.is_empty(),
        "null removes them all"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn moving_token_url_without_sending_the_secrets_again_is_refused() {
    let tb = TestBed::start(|_, _| {}).await;
    let (id, _) = connection_with_headers(&tb, "moving").await;
    let path = format!("connections/{id}");
    let elsewhere = "https://attacker.example/token";
    let patch = |options: Value| {
        admin_api(
            &tb.issuer,
            Method::PATCH,
            &path,
            Some(json!({"options": options})),
        )
    };

    let (status, body) = patch(json!({"tokenURL": elsewhere})).await;
    assert_eq!(status, 400, "{body}");
    let message = body["message"].as_str().expect("message");
    for named in [
        "client_secret",
        "customHeaders.Authorization",
        "customHeaders.X-Tenant",
    ] {
        assert!(message.contains(named), "names {named}: {message}");
    }
    let (status, body) = patch(json!({"tokenURL": elsewhere, "client_secret": "mine"})).await;
    assert_eq!(status, 400, "the headers too: {body}");
    let (_, got) = admin_api(&tb.issuer, Method::GET, &path, None).await;
    assert_ne!(got["options"]["tokenURL"], elsewhere, "nothing moved");
    let stored = tb.store.connections().await.expect("store");
    let stored = stored.iter().find(|r| r.id == id).expect("stored");
    assert_eq!(
        stored.spec.options.client_secret.as_deref(),
        Some(waypass_tests::login::PROVIDER_SECRET),
        "the stored secret is untouched"
    );

    // With every write-only value sent again, the move is the caller's own.
    let (status, body) = patch(json!({
        "tokenURL": elsewhere,
        "client_secret": "mine",
        "customHeaders": {"Authorization": "Basic bWluZQ==", "X-Tenant": null},
    }))
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["options"]["tokenURL"], elsewhere);
    assert_eq!(
        stored_headers(&tb, &id).await,
        pairs(&[("Authorization", "Basic bWluZQ==")])
    );
    // A PATCH that leaves tokenURL where it is needs nothing again.
    let (status, body) = patch(json!({"tokenURL": elsewhere, "scope": "email"})).await;
    assert_eq!(status, 200, "{body}");
}

// ---- the configuration file's mappers and secrets ----

/// A broker from a configuration file in `dir`: an app with an inline
/// secret, one whose secret is in a file, one given as SHA-256, and a
/// connection running mapper `seed`; `[[mappers]]` defines `seed` and
/// `spare`. Returns the broker and its issuer.
async fn configured_broker(dir: &Path) -> (Arc<Broker>, String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let issuer = format!("http://{}", listener.local_addr().expect("addr"));
    std::fs::write(dir.join("admin-token"), ADMIN_TOKEN).expect("token file");
    let secret_file = dir.join("filed-secret");
    std::fs::write(&secret_file, "filed-secret-0123\n").expect("secret file");
    let path = dir.join("waypass.toml");
    std::fs::write(
        &path,
        format!(
            r#"
issuer = "{issuer}"
data_dir = "data"
admin_token_file = "admin-token"
[[mappers]]
name = "seed"
path = {mapper:?}
[[mappers]]
name = "spare"
path = {mapper:?}
[[clients]]
client_id = "inline"
client_secret = "person-chosen-secret"
callbacks = ["http://app.test/callback"]
[[clients]]
client_id = "filed"
client_secret_file = {secret_file:?}
callbacks = ["http://app.test/callback"]
[[clients]]
client_id = "hashed"
# SHA-256 of "test"
client_secret_sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
callbacks = ["http://app.test/callback"]
[[connections]]
name = "filed"
enabled_clients = ["inline"]
[connections.options]
authorizationURL = "https://id.provider.test/authorize"
tokenURL = "https://id.provider.test/token"
client_id = "waypass"
client_secret = "provider-secret"
mapper = "seed@1"
"#,
            mapper = guests::AUTH0_EXAMPLE,
        ),
    )
    .expect("config");
    let config = Config::load(&path).expect("config loads");
    let broker = Arc::new(Broker::from_config(&config).await.expect("broker starts"));
    let server = tokio::spawn(waypass::broker::server::serve(
        listener,
        broker.clone(),
        std::future::pending(),
    ));
    (broker, issuer, server)
}

async fn put_component(issuer: &str, name: &str, bytes: Vec<u8>) -> (u16, Value) {
    let resp = http_client()
        .put(format!("{issuer}/api/v2/mappers/{name}"))
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", "application/wasm")
        .body(bytes)
        .send()
        .await
        .expect("put");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn assert_config_owned((status, body): (u16, Value), name: &str) {
    assert_eq!(status, 409, "{body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&format!("mapper `{name}`")) && message.contains("configuration file"),
        "says to change the configuration file: {body}"
    );
}

async fn version_count(issuer: &str, name: &str) -> (usize, Value) {
    let (_, versions) = admin_api(issuer, Method::GET, &format!("mappers/{name}"), None).await;
    let list = versions["versions"].as_array().cloned().unwrap_or_default();
    let active = list
        .iter()
        .find(|v| v["active"] == true)
        .map(|v| v["version"].clone())
        .unwrap_or(Value::Null);
    (list.len(), active)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mapper_the_configuration_file_owns_cannot_be_replaced_through_the_api_or_the_directory()
{
    let dir = tempfile::tempdir().expect("tempdir");
    let (broker, issuer, server) = configured_broker(dir.path()).await;
    let hostile = guests::bytes(guests::HOSTILE);

    // `seed` runs the file's connection (pinned, even); `spare` is only in
    // `[[mappers]]`. Neither takes new code, a rollback or a deletion.
    for name in ["seed", "spare"] {
        assert_config_owned(put_component(&issuer, name, hostile.clone()).await, name);
        assert_config_owned(
            admin_api(
                &issuer,
                Method::POST,
                &format!("mappers/{name}/versions/1/activate"),
                None,
            )
            .await,
            name,
        );
        assert_config_owned(
            admin_api(&issuer, Method::DELETE, &format!("mappers/{name}"), None).await,
            name,
        );
        assert_eq!(
            version_count(&issuer, name).await,
            (1, json!(1)),
            "{name} still serves the file's version"
        );
    }

    // The watched directory is refused alike, and says so.
    let watched = dir.path().join("watched");
    std::fs::create_dir(&watched).expect("dir");
    std::fs::write(watched.join("seed.wasm"), &hostile).expect("write");
    let mut watcher = Watcher::new(watched);
    let first = watcher.poll(&broker).await;
    assert!(
        first.is_empty(),
        "waits for the file to hold still: {first:?}"
    );
    let outcomes = watcher.poll(&broker).await;
    assert!(
        matches!(
            outcomes.as_slice(),
            [(_, Outcome::Refused { status: 409, message })] if message.contains("configuration file")
        ),
        "{outcomes:?}"
    );
    assert_eq!(version_count(&issuer, "seed").await, (1, json!(1)));

    // A mapper the file does not own is the API's.
    let (status, body) = put_component(&issuer, "free", hostile).await;
    assert_eq!(status, 201, "{body}");
    server.abort();
}

/// Redeems a made-up code as `client_id`: `invalid_grant` (400) means the
/// client authenticated, `invalid_client` (401) that it did not.
async fn token_endpoint_says(issuer: &str, client_id: &str, secret: &str) -> (u16, Value) {
    let resp = http_client()
        .post(format!("{issuer}/oauth/token"))
        .basic_auth(client_id, Some(secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", "made-up"),
            ("redirect_uri", "http://app.test/callback"),
        ])
        .send()
        .await
        .expect("token request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_a_person_chose_in_the_configuration_are_stored_as_argon2id_and_still_authenticate()
{
    let dir = tempfile::tempdir().expect("tempdir");
    let (broker, issuer, server) = configured_broker(dir.path()).await;
    let stored = SqliteStore::open(&dir.path().join("data/waypass.db")).expect("open the store");
    let clients = stored.clients().await.expect("clients");
    let stored_form = |id: &str| {
        let client = clients
            .iter()
            .find(|c| c.client_id == id)
            .expect("stored client");
        serde_json::to_value(client).expect("json")["secret_hash"]
            .as_str()
            .expect("a secret hash")
            .to_owned()
    };
    for id in ["inline", "filed"] {
        let form = stored_form(id);
        assert!(
            form.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{id}: {form}"
        );
    }
    assert_eq!(
        stored_form("hashed"),
        "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        "a hash given in the file stays as given"
    );

    for (id, secret) in [
        ("inline", "person-chosen-secret"),
        ("filed", "filed-secret-0123"),
        ("hashed", "test"),
    ] {
        let (status, body) = token_endpoint_says(&issuer, id, secret).await;
        assert_eq!(
            (status, &body["error"]),
            (400, &json!("invalid_grant")),
            "{id} authenticates: {body}"
        );
        let (status, body) = token_endpoint_says(&issuer, id, &format!("{secret}x")).await;
        assert_eq!(
            (status, &body["error"]),
            (401, &json!("invalid_client")),
            "{id} refuses a wrong secret: {body}"
        );
    }
    // A legitimate app does not pay argon2 on every request.
    let before = broker.slow_secret_verifications();
    for _ in 0..3 {
        let (status, _) = token_endpoint_says(&issuer, "inline", "person-chosen-secret").await;
        assert_eq!(status, 400);
    }
    assert_eq!(broker.slow_secret_verifications(), before);
    server.abort();
}

// ---- the watched directory reads regular files within the upload limit ----

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread")]
async fn a_symlinked_or_oversize_component_in_the_watched_directory_is_not_registered() {
    let tb = TestBed::start(|_, _| {}).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let watched = dir.path().join("watched");
    std::fs::create_dir(&watched).expect("dir");
    // A valid component reached through a link, one too large to read, and
    // a plain copy that shows the watcher at work.
    std::os::unix::fs::symlink(guests::AUTH0_EXAMPLE, watched.join("linked.wasm")).expect("link");
    std::fs::File::create(watched.join("huge.wasm"))
        .and_then(|f| f.set_len(waypass::admin::MAX_MAPPER_BYTES as u64 + 1))
        .expect("sparse file");
    std::fs::write(
        watched.join("copied.wasm"),
        guests::bytes(guests::AUTH0_EXAMPLE),
    )
    .expect("copy");

    let mut watcher = Watcher::new(watched.clone());
    let first = watcher.poll(&tb.broker).await;
    assert!(first.is_empty(), "waits for files to hold still: {first:?}");
    let mut outcomes = watcher.poll(&tb.broker).await;
    outcomes.sort_by(|a, b| a.0.cmp(&b.0));
    let names: Vec<_> = outcomes
        .iter()
        .map(|(p, o)| (p.file_name().and_then(|n| n.to_str()).unwrap_or(""), o))
        .collect();
    assert!(
        matches!(
            names.as_slice(),
            [
                ("copied.wasm", Outcome::Registered(1)),
                ("huge.wasm", Outcome::Ignored(huge)),
                ("linked.wasm", Outcome::Ignored(linked)),
            ] if huge.contains("larger than the upload limit") && linked.contains("symbolic link")
        ),
        "{names:?}"
    );
    for name in ["linked", "huge"] {
        let (status, _) =
            admin_api(&tb.issuer, Method::GET, &format!("mappers/{name}"), None).await;
        assert_eq!(status, 404, "{name} is not registered");
    }
    let again = watcher.poll(&tb.broker).await;
    assert!(
        again.is_empty(),
        "each is handled and logged once, not at every poll: {again:?}"
    );
}
