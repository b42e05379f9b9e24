//! `database_url` selects PostgreSQL: a broker started from a configuration
//! naming a database keeps its state there, not in its data directory, so a
//! second instance with a data directory of its own serves the same
//! deployment — here, finishing a login the first one started.

use serde_json::Value;
use waypass::broker::Broker;
use waypass::broker::config::Config;
use waypass::dev_provider::DevProvider;
use waypass_tests::guests;
use waypass_tests::login::{
    APP, APP_CALLBACK, APP_SECRET, Browser, PKCE_CHALLENGE, http_client, redeem,
};
use waypass_tests::postgres::{TestDatabase, server};
use waypass_tests::secrets::SECRETS_KEY;

/// A configuration naming `database` and its own data directory under `dir`.
fn config(dir: &std::path::Path, data: &str, issuer: &str, origin: &str, database: &str) -> Config {
    let path = dir.join(format!("{data}.toml"));
    // Instances sharing a database share the key sealing its secrets.
    std::fs::write(dir.join("secrets.key"), SECRETS_KEY).expect("key file");
    std::fs::write(
        &path,
        format!(
            r#"
issuer = "{issuer}"
data_dir = "{data}"
database_url = "{database}"
secrets_key_file = "secrets.key"
[[mappers]]
name = "seed"
path = {mapper:?}
[[clients]]
client_id = "{APP}"
client_secret = "{APP_SECRET}"
callbacks = ["{APP_CALLBACK}"]
[[connections]]
name = "devprov"
enabled_clients = ["{APP}"]
[connections.options]
authorizationURL = "{origin}/authorize"
tokenURL = "{origin}/token"
client_id = "waypass"
client_secret = "provider-secret"
mapper = "seed"
mapper_settings = {{ userinfo_url = "{origin}/userinfo" }}
mapper_egress = {{ allow_private_networks = true }}
"#,
            mapper = guests::AUTH0_EXAMPLE
        ),
    )
    .expect("config");
    Config::load(&path).expect("config loads")
}

async fn jwks(issuer: &str) -> Value {
    http_client()
        .get(format!("{issuer}/.well-known/jwks.json"))
        .send()
        .await
        .expect("jwks")
        .json()
        .await
        .expect("json")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_login_started_on_one_instance_finishes_on_another_sharing_the_database() {
    let Some(server) = server() else {
        return;
    };
    let database = TestDatabase::create(&server).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let issuer = format!("http://{addr}");
    let provider = DevProvider::new()
        .with_client(
            "waypass",
            "provider-secret",
            format!("{issuer}/login/callback"),
        )
        .start(
            tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind"),
        );
    let origin = provider.origin().to_owned();
    let url = database.url.expose();

    let first_config = config(dir.path(), "a", &issuer, &origin, url);
    assert_eq!(
        first_config.database_url.as_ref().map(|u| u.expose()),
        Some(url),
        "the configuration names the database"
    );
    let first = std::sync::Arc::new(Broker::from_config(&first_config).await.expect("A starts"));
    let task = tokio::spawn(waypass::broker::server::serve(
        listener,
        first,
        std::future::pending(),
    ));
    let authorize = format!(
        "{issuer}/authorize?response_type=code&client_id={APP}&redirect_uri={}&scope=openid%20email&connection=devprov\
         &code_challenge={PKCE_CHALLENGE}&code_challenge_method=S256",
        url::form_urlencoded::byte_serialize(APP_CALLBACK.as_bytes()).collect::<String>()
    );
    let keys_on_a = jwks(&issuer).await;
    let mut browser = Browser::default();
    let callback = browser.to_callback(&origin, &authorize).await;
    task.abort();
    let _ = task.await;

    // Instance B: the same address (as behind a load balancer), another
    // data directory, the same database.
    let listener = tokio::net::TcpListener::bind(addr).await.expect("rebind");
    let second = std::sync::Arc::new(
        Broker::from_config(&config(dir.path(), "b", &issuer, &origin, url))
            .await
            .expect("B starts"),
    );
    let task = tokio::spawn(waypass::broker::server::serve(
        listener,
        second,
        std::future::pending(),
    ));
    let mut browser = Browser {
        http: http_client(),
        cookies: browser.cookies.clone(),
    };
    let (status, done, _) = browser.get(&callback).await;
    assert_eq!(status, 302, "B takes the callback of a login A started");
    let tokens = redeem(
        &issuer,
        APP,
        APP_SECRET,
        APP_CALLBACK,
        &done.expect("to the app"),
    )
    .await;
    assert!(tokens["id_token"].is_string(), "{tokens}");
    assert_eq!(jwks(&issuer).await, keys_on_a, "one key set for both");
    for data in ["a", "b"] {
        assert!(
            !dir.path().join(data).join("waypass.db").exists(),
            "{data}: no SQLite file beside a database URL"
        );
    }
    let users: i64 = database
        .client()
        .await
        .query_one("SELECT COUNT(*) FROM users", &[])
        .await
        .expect("users")
        .get(0);
    assert_eq!(users, 1, "the user is in PostgreSQL");
    task.abort();
}
