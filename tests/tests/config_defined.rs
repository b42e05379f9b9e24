//! Apps and connections the configuration file defines are applied again at
//! every start, so the management API shows them but refuses to change or
//! delete them (a change would be undone at the next restart: a rotated,
//! possibly leaked secret would work again). What the API created stays
//! the API's to change.

use serde_json::{Value, json};
use waypass::broker::Broker;
use waypass::broker::config::Config;
use waypass_tests::guests;
use waypass_tests::login::{ADMIN_TOKEN, connection_spec, http_client};

const PROVIDER: &str = "https://id.provider.test";

async fn call(
    issuer: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = http_client()
        .request(method, format!("{issuer}/api/v2/{path}"))
        .bearer_auth(ADMIN_TOKEN);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("api");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn assert_refused(what: &str, (status, body): (u16, Value)) {
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["statusCode"], 409, "{body}");
    assert_eq!(
        body["message"],
        format!("{what} is defined in the configuration file; change it there"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_reads_but_refuses_to_change_what_the_configuration_file_defines() {
    let dir = tempfile::tempdir().expect("tempdir");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let issuer = format!("http://{}", listener.local_addr().expect("addr"));
    std::fs::write(dir.path().join("admin-token"), ADMIN_TOKEN).expect("token file");
    let path = dir.path().join("waypass.toml");
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
[[clients]]
client_id = "app"
name = "From the file"
client_secret = "app-secret-0123456789"
callbacks = ["http://app.test/callback"]
[[clients]]
client_id = "lonely"
client_secret = "lonely-secret-0123456789"
callbacks = ["http://lonely.test/callback"]
[[connections]]
name = "filed"
enabled_clients = ["app"]
[connections.options]
authorizationURL = "{PROVIDER}/authorize"
tokenURL = "{PROVIDER}/token"
client_id = "waypass"
client_secret = "provider-secret"
mapper = "seed"
"#,
            mapper = guests::AUTH0_EXAMPLE
        ),
    )
    .expect("config");
    let config = Config::load(&path).expect("config loads");
    let broker = std::sync::Arc::new(Broker::from_config(&config).await.expect("broker starts"));
    let server = tokio::spawn(waypass::broker::server::serve(
        listener,
        broker,
        std::future::pending(),
    ));
    use reqwest::Method;

    // Apps from the file: readable, not changeable.
    let (status, app) = call(&issuer, Method::GET, "clients/app", None).await;
    assert_eq!((status, &app["name"]), (200, &json!("From the file")));
    assert_refused(
        "client `app`",
        call(&issuer, Method::POST, "clients/app/rotate-secret", None).await,
    );
    assert_refused(
        "client `app`",
        call(
            &issuer,
            Method::PATCH,
            "clients/app",
            Some(json!({"name": "x"})),
        )
        .await,
    );
    assert_refused(
        "client `app`",
        call(&issuer, Method::DELETE, "clients/app", None).await,
    );
    // Not enabled on any connection: refused for being in the file alone.
    assert_refused(
        "client `lonely`",
        call(&issuer, Method::DELETE, "clients/lonely", None).await,
    );
    let (_, app) = call(&issuer, Method::GET, "clients/app", None).await;
    assert_eq!(app["name"], "From the file", "nothing changed: {app}");

    // The connection from the file: readable, not changeable.
    let (_, list) = call(&issuer, Method::GET, "connections", None).await;
    let filed = list
        .as_array()
        .expect("list")
        .iter()
        .find(|c| c["name"] == "filed")
        .expect("the file's connection is listed")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let (status, _) = call(&issuer, Method::GET, &format!("connections/{filed}"), None).await;
    assert_eq!(status, 200);
    assert_refused(
        "connection `filed`",
        call(
            &issuer,
            Method::PATCH,
            &format!("connections/{filed}"),
            Some(json!({"display_name": "x"})),
        )
        .await,
    );
    assert_refused(
        "connection `filed`",
        call(
            &issuer,
            Method::DELETE,
            &format!("connections/{filed}"),
            None,
        )
        .await,
    );

    // What the API creates, the API changes and deletes.
    let (status, made) = call(
        &issuer,
        Method::POST,
        "clients",
        Some(json!({"name": "api-made", "callbacks": ["https://x.test/cb"]})),
    )
    .await;
    assert_eq!(status, 201, "{made}");
    let id = made["client_id"].as_str().expect("client_id").to_owned();
    let (status, body) = call(
        &issuer,
        Method::PATCH,
        &format!("clients/{id}"),
        Some(json!({"name": "renamed"})),
    )
    .await;
    assert_eq!((status, &body["name"]), (200, &json!("renamed")), "{body}");
    let (status, body) = call(
        &issuer,
        Method::POST,
        &format!("clients/{id}/rotate-secret"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["client_secret"].is_string(), "{body}");

    let mut spec = connection_spec("api-conn", PROVIDER);
    spec["enabled_clients"] = json!([id]);
    spec["options"]["mapper"] = json!("seed");
    let (status, conn) = call(&issuer, Method::POST, "connections", Some(spec)).await;
    assert_eq!(status, 201, "{conn}");
    let conn_id = conn["id"].as_str().expect("id").to_owned();
    let (status, body) = call(
        &issuer,
        Method::PATCH,
        &format!("connections/{conn_id}"),
        Some(json!({"display_name": "Patched"})),
    )
    .await;
    assert_eq!(
        (status, &body["display_name"]),
        (200, &json!("Patched")),
        "{body}"
    );
    let (status, body) = call(
        &issuer,
        Method::DELETE,
        &format!("connections/{conn_id}"),
        None,
    )
    .await;
    assert_eq!(status, 204, "{body}");
    let (status, body) = call(&issuer, Method::DELETE, &format!("clients/{id}"), None).await;
    assert_eq!(status, 204, "{body}");
    server.abort();
}
