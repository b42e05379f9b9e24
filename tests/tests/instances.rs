//! Several instances on one store: the store is the truth, and what one
//! instance writes, the others serve without a restart — on one SQLite
//! file (processes on one host) and on one PostgreSQL database (a fleet).
//! The sweep of expired state is leased: one instance sweeps at a time.
//! And within one instance, concurrent writes leave the catalog agreeing
//! with the store.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use waypass::broker::Broker;
use waypass::broker::config::Config;
use waypass::dev_provider::DevProviderHandle;
use waypass::store::Store as _;
use waypass_tests::guests;
use waypass_tests::login::{
    ADMIN_TOKEN, APP, APP_CALLBACK, Browser, PKCE_CHALLENGE, TestBed, admin_api, http_client,
    put_mapper,
};
use waypass_tests::postgres::{TestDatabase, server};
use waypass_tests::secrets::SECRETS_KEY;
use waypass_tests::served::{load_config, provider_for, seed_config};

/// How long a test waits for a change to reach another instance before it
/// fails: far beyond the bounds (1 s on SQLite, 100 ms on PostgreSQL), so
/// a loaded machine does not make it flaky; the wait ends at the change.
const PROPAGATION_TIMEOUT: Duration = Duration::from_secs(30);

/// The deployment's issuer: every instance serves it (as behind a load
/// balancer); the tests reach each instance at its own address.
const ISSUER: &str = "http://login.test";

/// One running instance.
struct Instance {
    broker: Arc<Broker>,
    origin: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A configuration for an instance whose state is in `data` (SQLite) or
/// `database` (PostgreSQL), with the development provider at `provider`.
fn config(dir: &std::path::Path, data: &str, provider: &str, database: Option<&str>) -> Config {
    std::fs::write(dir.join("admin-token"), ADMIN_TOKEN).expect("token file");
    // Instances sharing a database share the key sealing its secrets.
    std::fs::write(dir.join("secrets.key"), SECRETS_KEY).expect("key file");
    let database = database
        .map(|url| format!("database_url = \"{url}\"\n"))
        .unwrap_or_default();
    let top = format!(
        "data_dir = \"{data}\"\nadmin_token_file = \"admin-token\"\nsecrets_key_file = \"secrets.key\"\n{database}"
    );
    load_config(
        dir,
        &format!("{data}.toml"),
        &seed_config(ISSUER, provider, "provider-secret", &top),
    )
}

async fn start(config: &Config) -> Instance {
    let broker = Arc::new(Broker::from_config(config).await.expect("starts"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let origin = format!("http://{}", listener.local_addr().expect("addr"));
    let task = tokio::spawn(waypass::broker::server::serve(
        listener,
        broker.clone(),
        std::future::pending(),
    ));
    Instance {
        broker,
        origin,
        task,
    }
}

async fn provider() -> DevProviderHandle {
    provider_for(ISSUER, "provider-secret").await
}

/// Waits until `instance` serves catalog version `version` or newer.
async fn serves(instance: &Instance, version: u64) {
    let mut served = instance.broker.catalog().served();
    tokio::time::timeout(PROPAGATION_TIMEOUT, async {
        while instance.broker.catalog().version() < Some(version) {
            served.changed().await.expect("the catalog lives");
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "{} still serves catalog {:?}, not {version}",
            instance.origin,
            instance.broker.catalog().version()
        )
    });
}

/// The version an instance's `/healthz` says it serves.
async fn healthz_version(origin: &str) -> u64 {
    let resp = http_client()
        .get(format!("{origin}/healthz"))
        .send()
        .await
        .expect("healthz");
    resp.headers()
        .get(waypass::broker::server::CATALOG_VERSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("a catalog version header")
}

/// Where `/authorize` on `origin` sends a browser for app `client_id`
/// (the provider when the app and connection are served; an error page
/// otherwise).
async fn authorize_status(origin: &str, client_id: &str, callback: &str) -> u16 {
    let url = format!(
        "{origin}/authorize?response_type=code&client_id={client_id}&redirect_uri={}&connection=devprov\
         &code_challenge={PKCE_CHALLENGE}&code_challenge_method=S256",
        url::form_urlencoded::byte_serialize(callback.as_bytes()).collect::<String>()
    );
    Browser::default().get(&url).await.0
}

/// A client and an enabled connection created through A's API are served
/// by B, and a deletion on A is refused by B, without B restarting.
async fn changes_through_a_reach_b(a: &Instance, b: &Instance) {
    let before = b.broker.catalog().version().expect("B is loaded");
    assert_eq!(
        authorize_status(&b.origin, "late-app", "https://late.test/cb").await,
        400,
        "no such app yet"
    );
    let (status, created) = admin_api(
        &a.origin,
        reqwest::Method::POST,
        "clients",
        Some(json!({"client_id": "late-app", "callbacks": ["https://late.test/cb"]})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    // The configuration's connection cannot be changed through the API:
    // a connection of the API's own, enabled for the new app.
    let spec = json!({
        "name": "late-conn",
        "enabled_clients": ["late-app"],
        "options": {
            "authorizationURL": "https://id.late.test/authorize",
            "tokenURL": "https://id.late.test/token",
            "client_id": "waypass",
            "client_secret": "late-secret",
            "mapper": "seed",
        }
    });
    let (status, conn) =
        admin_api(&a.origin, reqwest::Method::POST, "connections", Some(spec)).await;
    assert_eq!(status, 201, "{conn}");
    let on_a = a.broker.catalog().version().expect("A is loaded");
    assert!(on_a > before, "A serves its own change before it answers");
    serves(b, on_a).await;
    assert!(healthz_version(&b.origin).await >= on_a, "B says so");
    let b_catalog = b.broker.catalog().snapshot();
    assert!(b_catalog.clients.contains_key("late-app"), "B has the app");
    let late = b_catalog
        .connections
        .get("late-conn")
        .expect("B has the connection");
    assert_eq!(
        late.spec.options.client_secret.as_ref().map(|s| s.expose()),
        Some("late-secret"),
        "with its secret"
    );
    let url = format!(
        "{}/authorize?response_type=code&client_id=late-app&redirect_uri={}&connection=late-conn\
         &code_challenge={PKCE_CHALLENGE}&code_challenge_method=S256",
        b.origin,
        url::form_urlencoded::byte_serialize(b"https://late.test/cb").collect::<String>()
    );
    let (status, location, _) = Browser::default().get(&url).await;
    assert_eq!(status, 302, "B starts a login for the new app");
    assert!(
        location.is_some_and(|l| l.starts_with("https://id.late.test/authorize")),
        "at the new connection's provider"
    );

    // Deleted on A: refused on B.
    let id = conn["id"].as_str().expect("an id");
    let (status, _) = admin_api(
        &a.origin,
        reqwest::Method::DELETE,
        &format!("connections/{id}"),
        None,
    )
    .await;
    assert_eq!(status, 204);
    serves(b, a.broker.catalog().version().expect("loaded")).await;
    let (status, location, _) = Browser::default().get(&url).await;
    assert_eq!(status, 302);
    let location = location.expect("back to the app");
    assert!(
        location.starts_with("https://late.test/cb?error=invalid_request"),
        "B refuses the deleted connection: {location}"
    );
}

/// Changes made through A, one after another: how long after A's answer B
/// serves each (printed: `--nocapture` shows the figures; the bound each
/// must meet is only [`PROPAGATION_TIMEOUT`], for a loaded machine).
async fn propagation(a: &Instance, b: &Instance, changes: usize) {
    let mut delays = Vec::with_capacity(changes);
    for i in 0..changes {
        let (status, body) = admin_api(
            &a.origin,
            reqwest::Method::POST,
            "clients",
            Some(json!({"client_id": format!("timed-{i}"), "callbacks": ["https://t.test/cb"]})),
        )
        .await;
        let answered = std::time::Instant::now();
        assert_eq!(status, 201, "{body}");
        serves(b, a.broker.catalog().version().expect("loaded")).await;
        delays.push(answered.elapsed());
    }
    delays.sort();
    eprintln!(
        "propagation over {changes} changes: p50 {:?}, max {:?}",
        delays[changes / 2],
        delays[changes - 1]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_change_made_on_one_instance_is_served_by_another_on_the_same_sqlite_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let provider = provider().await;
    // One data directory: one `waypass.db`, as processes on one host share.
    let a = start(&config(dir.path(), "data", provider.origin(), None)).await;
    let b = start(&config(dir.path(), "data", provider.origin(), None)).await;
    changes_through_a_reach_b(&a, &b).await;
    propagation(&a, &b, 20).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_change_made_on_one_instance_is_served_by_another_on_the_same_postgres_database() {
    let Some(server) = server() else {
        return;
    };
    let database = TestDatabase::create(&server).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let provider = provider().await;
    let url = database.url.expose();
    let a = start(&config(dir.path(), "a", provider.origin(), Some(url))).await;
    let b = start(&config(dir.path(), "b", provider.origin(), Some(url))).await;
    changes_through_a_reach_b(&a, &b).await;
    propagation(&a, &b, 20).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mapper_pushed_to_one_instance_is_loaded_by_another_from_the_bytes_stored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let provider = provider().await;
    let a = start(&config(dir.path(), "data", provider.origin(), None)).await;
    let b = start(&config(dir.path(), "data", provider.origin(), None)).await;
    // The configuration's mapper cannot take API versions: a mapper of the
    // API's own.
    let (status, body) =
        put_mapper(&a.origin, "api-mapper", guests::bytes(guests::DECLARATIVE)).await;
    assert_eq!(status, 201, "{body}");
    serves(&b, a.broker.catalog().version().expect("loaded")).await;
    let on_b = b.broker.catalog().snapshot();
    let (loaded, version) = on_b.mappers.resolve("api-mapper").expect("B loaded it");
    assert_eq!(version, 1);
    assert_eq!(
        loaded.digest(),
        waypass::mapper::sha256_hex(&guests::bytes(guests::DECLARATIVE)),
        "the bytes A stored"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn of_two_instances_sweeping_at_once_one_sweeps() {
    let dir = tempfile::tempdir().expect("tempdir");
    let provider = provider().await;
    let a = start(&config(dir.path(), "data", provider.origin(), None)).await;
    let b = start(&config(dir.path(), "data", provider.origin(), None)).await;
    // Their own timers may have taken the lease already: whoever holds it
    // keeps it (renewing), the other never sweeps while it lives.
    let ticks = |n| {
        let (a, b) = (a.broker.clone(), b.broker.clone());
        async move {
            let mut sweepers = Vec::new();
            for _ in 0..n {
                let (on_a, on_b) = tokio::join!(a.sweep_tick(), b.sweep_tick());
                let (on_a, on_b) = (on_a.expect("a ticks"), on_b.expect("b ticks"));
                assert!(
                    on_a.is_some() != on_b.is_some(),
                    "exactly one sweeps: {on_a:?} {on_b:?}"
                );
                sweepers.push(if on_a.is_some() { "a" } else { "b" });
            }
            sweepers
        }
    };
    let sweepers = ticks(5).await;
    assert!(
        sweepers.windows(2).all(|w| w[0] == w[1]),
        "the holder keeps the lease: {sweepers:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_pushes_of_one_mapper_leave_the_catalog_serving_the_stores_active_version() {
    let tb = TestBed::start(|_, _| {}).await;
    let components = [
        guests::bytes(guests::AUTH0_EXAMPLE),
        guests::bytes(guests::DECLARATIVE),
    ];
    for round in 0..4 {
        let pushes = (0..4).map(|i| {
            let bytes = components[(round + i) % 2].clone();
            let issuer = tb.issuer.clone();
            tokio::spawn(async move { put_mapper(&issuer, "raced", bytes).await })
        });
        for push in futures_join(pushes).await {
            assert_eq!(push.0, 201, "{}", push.1);
        }
        let stored = tb
            .store
            .mappers()
            .await
            .expect("mappers")
            .into_iter()
            .find(|m| m.name == "raced")
            .expect("stored");
        let sha = tb
            .store
            .mapper_versions("raced")
            .await
            .expect("versions")
            .into_iter()
            .find(|v| v.version == stored.active_version)
            .expect("the active version")
            .sha256;
        let served = tb.broker.catalog().snapshot();
        let (loaded, version) = served.mappers.resolve("raced").expect("served");
        assert_eq!(
            version, stored.active_version,
            "round {round}: the catalog serves the store's active version"
        );
        assert_eq!(loaded.digest(), sha, "round {round}: with its bytes");
        assert_eq!(
            served.version,
            tb.store.catalog_version().await.expect("version"),
            "round {round}: the snapshot is of the store as it is"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_instance_is_not_ready_and_serves_nothing_until_its_catalog_is_loaded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let provider = provider().await;
    let broker = Arc::new(
        Broker::from_config_unloaded(&config(dir.path(), "data", provider.origin(), None))
            .await
            .expect("starts"),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let origin = format!("http://{}", listener.local_addr().expect("addr"));
    let instance = Instance {
        broker: broker.clone(),
        task: tokio::spawn(waypass::broker::server::serve(
            listener,
            broker.clone(),
            std::future::pending(),
        )),
        origin: origin.clone(),
    };
    let get = |path: &str| http_client().get(format!("{origin}{path}")).send();
    let readyz = get("/readyz").await.expect("readyz");
    assert_eq!(readyz.status(), 503);
    assert!(
        readyz
            .headers()
            .get(waypass::broker::server::CATALOG_VERSION_HEADER)
            .is_none(),
        "no catalog served yet"
    );
    assert_eq!(
        readyz.text().await.expect("body"),
        "the catalog is not loaded yet"
    );
    assert_eq!(
        get("/healthz").await.expect("healthz").status(),
        200,
        "alive"
    );
    let authorize = get(&format!("/authorize?client_id={APP}"))
        .await
        .expect("authorize");
    assert_eq!(
        authorize.status(),
        503,
        "not an answer from an empty catalog"
    );
    assert_eq!(
        authorize.headers().get("retry-after").map(|v| v.as_bytes()),
        Some(&b"1"[..])
    );

    broker.load_catalog().await.expect("loads");
    let version = broker.catalog().version().expect("loaded");
    let readyz = get("/readyz").await.expect("readyz");
    assert_eq!(readyz.status(), 200);
    assert_eq!(
        readyz
            .headers()
            .get(waypass::broker::server::CATALOG_VERSION_HEADER)
            .and_then(|v| v.to_str().ok()),
        Some(version.to_string().as_str())
    );
    assert_eq!(healthz_version(&instance.origin).await, version);
    assert_eq!(
        authorize_status(&instance.origin, APP, APP_CALLBACK).await,
        302,
        "and now it serves"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rebuild_keeps_the_components_it_has_and_drops_the_ones_nothing_reaches() {
    let tb = TestBed::start(|_, _| {}).await;
    let before = tb.broker.catalog().snapshot();
    let (seed, _) = before.mappers.resolve("auth0-example").expect("loaded");
    // A change that touches no mapper: the next snapshot holds the very
    // same component (not compiled, not read again).
    let (status, body) = admin_api(
        &tb.issuer,
        reqwest::Method::POST,
        "clients",
        Some(json!({"callbacks": ["https://other.test/cb"]})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let after = tb.broker.catalog().snapshot();
    assert!(after.version > before.version, "rebuilt");
    let (same, _) = after.mappers.resolve("auth0-example").expect("loaded");
    assert!(Arc::ptr_eq(&seed, &same), "the component is reused");

    // A second version of `swap-me` replaces the first in the catalog (no
    // connection pins it); the store keeps both, and a rollback loads the
    // first again.
    let (status, body) =
        put_mapper(&tb.issuer, "swap-me", guests::bytes(guests::DECLARATIVE)).await;
    assert_eq!(status, 201, "{body}");
    let swapped = tb.broker.catalog().snapshot();
    assert_eq!(
        swapped
            .mappers
            .loaded()
            .iter()
            .filter(|(n, _)| n == "swap-me")
            .count(),
        1
    );
    assert_eq!(swapped.mappers.resolve("swap-me").map(|(_, v)| v), Some(2));
    let (status, body) = admin_api(
        &tb.issuer,
        reqwest::Method::POST,
        "mappers/swap-me/versions/1/activate",
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        tb.broker
            .catalog()
            .snapshot()
            .mappers
            .resolve("swap-me")
            .map(|(_, v)| v),
        Some(1),
        "rolled back"
    );
}

/// Awaits spawned tasks, in order.
async fn futures_join<T: Send + 'static>(
    tasks: impl Iterator<Item = tokio::task::JoinHandle<T>>,
) -> Vec<T> {
    let mut out = Vec::new();
    for task in tasks {
        out.push(task.await.expect("the task"));
    }
    out
}
