//! `database_url` selects PostgreSQL: a broker started from a configuration
//! naming a database keeps its state there, not in its data directory, so a
//! second instance with a data directory of its own serves the same
//! deployment — here, finishing a login the first one started.

use serde_json::Value;
use waypass::broker::config::Config;
use waypass_tests::login::{APP, APP_CALLBACK, APP_SECRET, Browser, http_client, redeem};
use waypass_tests::postgres::{TestDatabase, server};
use waypass_tests::secrets::SECRETS_KEY;
use waypass_tests::served::{Served, authorize_url, load_config, provider_for, seed_config};

/// A configuration naming `database` and its own data directory under `dir`.
fn config(dir: &std::path::Path, data: &str, issuer: &str, origin: &str, database: &str) -> Config {
    // Instances sharing a database share the key sealing its secrets.
    std::fs::write(dir.join("secrets.key"), SECRETS_KEY).expect("key file");
    let top = format!(
        "data_dir = \"{data}\"\ndatabase_url = \"{database}\"\nsecrets_key_file = \"secrets.key\""
    );
    load_config(
        dir,
        &format!("{data}.toml"),
        &seed_config(issuer, origin, "provider-secret", &top),
    )
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
    let provider = provider_for(&issuer, "provider-secret").await;
    let origin = provider.origin().to_owned();
    let url = database.url.expose();

    let first_config = config(dir.path(), "a", &issuer, &origin, url);
    assert_eq!(
        first_config.database_url.as_ref().map(|u| u.expose()),
        Some(url),
        "the configuration names the database"
    );
    let first = Served::start(&first_config, listener).await;
    let authorize = authorize_url(&issuer, "openid email");
    let keys_on_a = jwks(&issuer).await;
    let mut browser = Browser::default();
    let callback = browser.to_callback(&origin, &authorize).await;
    first.stop().await;

    // Instance B: the same address (as behind a load balancer), another
    // data directory, the same database.
    let listener = tokio::net::TcpListener::bind(addr).await.expect("rebind");
    let second = Served::start(&config(dir.path(), "b", &issuer, &origin, url), listener).await;
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
    second.stop().await;
}
