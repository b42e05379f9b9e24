//! A process restart keeps every piece of state: what the API created, the
//! mappers' versions and which is active, users, signing keys, and even a
//! login caught between the provider and the broker's callback.

use serde_json::{Value, json};
use waypass::broker::Broker;
use waypass::broker::config::Config;

/// The scope the app asks for.
const SCOPE: &str = "openid email";
use waypass_tests::guests;
use waypass_tests::login::{
    ADMIN_TOKEN, APP, APP_CALLBACK, APP_SECRET, Browser, admin_api, http_client, put_mapper,
    redeem, sub_after_login,
};
use waypass_tests::served::{
    Served, authorize_url, devprov_config, load_config, provider_for, seed_config,
};

/// A listener for the broker, its address and issuer, and a development
/// provider that knows the broker.
async fn broker_address_and_provider() -> (
    tokio::net::TcpListener,
    std::net::SocketAddr,
    String,
    waypass::dev_provider::DevProviderHandle,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let issuer = format!("http://{addr}");
    let provider = provider_for(&issuer, "provider-secret").await;
    (listener, addr, issuer, provider)
}

/// [`admin_api`], which must succeed; the answer's JSON.
async fn api(issuer: &str, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
    let (status, answer) = admin_api(issuer, method, path, body).await;
    assert!((200..300).contains(&status), "{path}: {status} {answer}");
    answer
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_keeps_every_piece_of_state_and_a_login_in_flight_completes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (listener, addr, issuer, provider) = broker_address_and_provider().await;
    let origin = provider.origin().to_owned();
    std::fs::write(dir.path().join("admin-token"), ADMIN_TOKEN).expect("token file");
    let config = load_config(
        dir.path(),
        "waypass.toml",
        &seed_config(
            &issuer,
            &origin,
            "provider-secret",
            "data_dir = \"data\"\nadmin_token_file = \"admin-token\"",
        ),
    );

    // First run: state through the API, one login, one login left halfway.
    let first = Served::start(&config, listener).await;
    let client = api(&first.issuer, reqwest::Method::POST, "clients",
        Some(json!({"name": "api-made", "callbacks": ["https://x.test/cb"], "scopes": ["read:users"]}))).await;
    let mut spec = waypass_tests::login::connection_spec("api-conn", &origin);
    spec["enabled_clients"] = json!([APP]);
    spec["options"]["mapper"] = json!("seed");
    let conn = api(
        &first.issuer,
        reqwest::Method::POST,
        "connections",
        Some(spec),
    )
    .await;
    // Versions and a rollback of a mapper the API owns (the file's `seed`
    // takes no new versions through the API).
    for wasm in [guests::AUTH0_EXAMPLE, guests::HOSTILE] {
        let (status, v) = put_mapper(&first.issuer, "api-mapper", guests::bytes(wasm)).await;
        assert_eq!(status, 201, "{v}");
    }
    api(
        &first.issuer,
        reqwest::Method::POST,
        "mappers/api-mapper/versions/1/activate",
        None,
    )
    .await;
    let mut browser = Browser::default();
    let callback = browser
        .to_callback(&origin, &authorize_url(&first.issuer, SCOPE))
        .await;
    let (_, done, _) = browser.get(&callback).await;
    assert!(
        redeem(
            &first.issuer,
            APP,
            APP_SECRET,
            APP_CALLBACK,
            &done.expect("to the app")
        )
        .await["id_token"]
            .is_string()
    );
    let jwks_before: Value = http_client()
        .get(format!("{issuer}/.well-known/jwks.json"))
        .send()
        .await
        .expect("jwks")
        .json()
        .await
        .expect("json");
    let mut halfway = Browser::default();
    let pending_callback = halfway
        .to_callback(&origin, &authorize_url(&first.issuer, SCOPE))
        .await;
    first.stop().await;

    // Second run on the same data directory and address.
    let listener = tokio::net::TcpListener::bind(addr).await.expect("rebind");
    let second = Served::start(&config, listener).await;
    // The browser reconnects (its kept-alive connection belonged to the
    // first process) but keeps its cookies.
    let mut halfway = Browser {
        http: http_client(),
        cookies: halfway.cookies.clone(),
    };
    let (status, done, _) = halfway.get(&pending_callback).await;
    assert_eq!(status, 302);
    let tokens = redeem(
        &second.issuer,
        APP,
        APP_SECRET,
        APP_CALLBACK,
        &done.expect("the login finished after the restart"),
    )
    .await;
    assert!(tokens["id_token"].is_string(), "{tokens}");

    let jwks_after: Value = http_client()
        .get(format!("{issuer}/.well-known/jwks.json"))
        .send()
        .await
        .expect("jwks")
        .json()
        .await
        .expect("json");
    assert_eq!(jwks_before, jwks_after, "same signing keys");
    let connections = api(&second.issuer, reqwest::Method::GET, "connections", None).await;
    assert!(
        connections
            .as_array()
            .expect("list")
            .iter()
            .any(|c| c["id"] == conn["id"]),
        "{connections}"
    );
    let clients = api(&second.issuer, reqwest::Method::GET, "clients", None).await;
    assert!(
        clients
            .as_array()
            .expect("list")
            .iter()
            .any(|c| c["client_id"] == client["client_id"])
    );
    let versions = api(
        &second.issuer,
        reqwest::Method::GET,
        "mappers/api-mapper/versions",
        None,
    )
    .await;
    assert_eq!(versions["versions"].as_array().expect("versions").len(), 2);
    assert_eq!(
        versions["versions"][0]["active"], true,
        "the rollback survived: {versions}"
    );
    let users = api(&second.issuer, reqwest::Method::GET, "users", None).await;
    assert_eq!(users[0]["logins_count"], 2, "{users}");
    second.stop().await;
}

/// The configuration file with one connection running `script`.
fn scripted_config(dir: &std::path::Path, issuer: &str, origin: &str, script: &str) -> Config {
    let scripts = format!("[connections.options.scripts]\nfetchUserProfile = '''\n{script}'''");
    load_config(
        dir,
        "waypass.toml",
        &devprov_config(
            issuer,
            origin,
            "provider-secret",
            "data_dir = \"data\"",
            &scripts,
        ),
    )
}

/// One whole login through `devprov`; the user id the app got.
async fn scripted_login(issuer: &str, origin: &str) -> String {
    let mut browser = Browser::default();
    let callback = browser
        .to_callback(origin, &authorize_url(issuer, SCOPE))
        .await;
    let (_, done, _) = browser.get(&callback).await;
    sub_after_login(issuer, &done.expect("to the app"))
        .await
        .expect("sub")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_script_in_the_configuration_file_is_checked_at_start_and_serves_across_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (listener, addr, issuer, provider) = broker_address_and_provider().await;
    let origin = provider.origin().to_owned();

    let broken = "function (accessToken, ctx, cb) {\n  let x = ;\n}\n";
    let err =
        match Broker::from_config(&scripted_config(dir.path(), &issuer, &origin, broken)).await {
            Ok(_) => panic!("a broker started with a script that does not compile"),
            Err(e) => e.to_string(),
        };
    assert_eq!(
        err,
        "connection `devprov`: scripts.fetchUserProfile: line 2, column 11: expected expression, got ';'"
    );

    let script = include_str!("../../examples/scripts/auth0-doc-example.js").replace(
        "https://auth.example.com/userinfo",
        &format!("{origin}/userinfo"),
    );
    let config = scripted_config(dir.path(), &issuer, &origin, &script);
    let first = Served::start(&config, listener).await;
    let expected = format!(
        "oauth2|devprov|{}",
        waypass::dev_provider::default_user().uuid
    );
    assert_eq!(scripted_login(&first.issuer, &origin).await, expected);
    first.stop().await;

    let listener = tokio::net::TcpListener::bind(addr).await.expect("rebind");
    let second = Served::start(&config, listener).await;
    assert_eq!(scripted_login(&second.issuer, &origin).await, expected);
    second.stop().await;
}
