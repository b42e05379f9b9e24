//! The PostgreSQL store: the conformance suite, and what only a shared
//! database shows — several instances (separate pools) racing on one
//! database, opening it together, and schema versions.
//!
//! Each test gets a database of its own (`waypass_tests::postgres::TestDatabase`);
//! the server comes from `WAYPASS_TEST_DATABASE_URL` or
//! `scripts/ensure-postgres` (see `waypass_tests::postgres`). The runtimes
//! are multi-threaded: `race` blocks one worker while the store's
//! connections are driven by another.

use std::sync::Mutex;
use std::time::Duration;

use waypass::secret::SecretHash;
use waypass::store::{
    AuthorizationGrant, DatabaseUrl, LoginTransaction, PostgresStore, PutTransaction, Store,
    StoreError, TakeTransaction,
};
use waypass_tests::conformance::{self, NOW, race};
use waypass_tests::postgres::{TestDatabase, server};

/// Rounds of the cross-instance races: each a fresh key and a new race.
const ROUNDS: usize = 40;

/// Takers per round, spread over the instances.
const TAKERS: usize = 8;

/// Instances (separate stores, separate pools) on one database.
const INSTANCES: usize = 3;

/// The server, or return from the test (skipped, with a notice printed).
macro_rules! server_or_skip {
    () => {
        match server() {
            Some(server) => server,
            None => return,
        }
    };
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_postgres_store_conforms() {
    let server = server_or_skip!();
    // Every behaviour's database lives until the end of the test.
    let databases = Mutex::new(Vec::new());
    let databases_ref = &databases;
    let server = &server;
    conformance::run_all(move || async move {
        let database = TestDatabase::create(server).await;
        let store = database.open().await;
        databases_ref
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(database);
        Box::new(store) as Box<dyn Store>
    })
    .await;
    TestDatabase::drop_together(databases.into_inner().unwrap_or_else(|p| p.into_inner()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_postgres_store_seals_its_secrets() {
    let server = server_or_skip!();
    let databases = Mutex::new(Vec::new());
    let databases_ref = &databases;
    let server = &server;
    conformance::run_sealed(move || async move {
        let database = TestDatabase::create(server).await;
        let store = database.open().await;
        databases_ref
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(database);
        Box::new(store) as Box<dyn Store>
    })
    .await;
    TestDatabase::drop_together(databases.into_inner().unwrap_or_else(|p| p.into_inner()));
}

fn transaction(round: usize) -> LoginTransaction {
    LoginTransaction {
        client_id: "app".into(),
        redirect_uri: "https://app.example/cb".into(),
        app_state: Some(format!("round {round}")),
        nonce: None,
        code_challenge: None,
        scope: "openid".into(),
        connection: "acme".into(),
        provider_verifier: None,
        browser_binding: SecretHash::of("cookie"),
        correlation_id: format!("corr {round}"),
        expires_at: NOW + 600,
        form_post: false,
        audience: None,
        query: Vec::new(),
    }
}

fn grant(round: usize) -> AuthorizationGrant {
    AuthorizationGrant {
        claims: Default::default(),
        client_id: "app".into(),
        redirect_uri: "https://app.example/cb".into(),
        user_id: format!("oauth2|acme|{round}"),
        scope: "openid".into(),
        nonce: None,
        code_challenge: None,
        auth_time: NOW,
        session_id: None,
        audience: None,
        correlation_id: None,
        expires_at: NOW + 60,
    }
}

async fn instances(database: &TestDatabase, n: usize) -> Vec<PostgresStore> {
    let mut stores = Vec::with_capacity(n);
    for _ in 0..n {
        stores.push(database.open().await);
    }
    stores
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codes_and_transactions_stay_single_use_across_instances() {
    let server = server_or_skip!();
    let database = TestDatabase::create(&server).await;
    let stores = instances(&database, INSTANCES).await;
    for round in 0..ROUNDS {
        let code = SecretHash::of(&format!("code {round}"));
        stores[round % INSTANCES]
            .put_code(code, grant(round))
            .await
            .expect("put");
        let taken = race(TAKERS, |i| stores[i % INSTANCES].take_code(code, NOW));
        assert!(taken.iter().all(Result::is_ok), "no take fails: {taken:?}");
        let winners: Vec<_> = taken.iter().flatten().flatten().collect();
        assert_eq!(
            winners.len(),
            1,
            "round {round}: one redemption of the code across {INSTANCES} instances"
        );
        assert_eq!(winners[0].user_id, format!("oauth2|acme|{round}"));

        let state = SecretHash::of(&format!("state {round}"));
        let stored = stores[(round + 1) % INSTANCES]
            .put_transaction(state, transaction(round), NOW, usize::MAX)
            .await
            .expect("put");
        assert_eq!(stored, PutTransaction::Stored);
        let binding = Some(SecretHash::of("cookie"));
        let taken = race(TAKERS, |i| {
            stores[i % INSTANCES].take_transaction(state, binding, NOW)
        });
        assert!(taken.iter().all(Result::is_ok), "no take fails");
        let winners: Vec<_> = taken
            .iter()
            .flatten()
            .filter_map(|t| match t {
                TakeTransaction::Taken(tx) => Some(tx),
                TakeTransaction::WrongBrowser | TakeTransaction::Absent => None,
            })
            .collect();
        assert_eq!(
            winners.len(),
            1,
            "round {round}: one callback proceeds across {INSTANCES} instances"
        );
        assert_eq!(winners[0].app_state, Some(format!("round {round}")));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_pushes_of_one_mapper_from_two_instances_get_distinct_versions() {
    let server = server_or_skip!();
    let database = TestDatabase::create(&server).await;
    let stores = instances(&database, 2).await;
    let mut expected = 0;
    for round in 0..5 {
        let pushed = race(TAKERS, |i| {
            let bytes = format!("component {round}.{i}").into_bytes();
            let store = &stores[i % 2];
            async move {
                store
                    .add_mapper_version("raced", &bytes, &format!("sha {round}.{i}"), "ci", NOW)
                    .await
            }
        });
        let mut numbers: Vec<u32> = pushed
            .iter()
            .map(|r| r.as_ref().expect("every push succeeds").version)
            .collect();
        numbers.sort_unstable();
        let wanted: Vec<u32> = (expected + 1..=expected + TAKERS as u32).collect();
        assert_eq!(
            numbers, wanted,
            "round {round}: no number twice, none skipped"
        );
        expected += TAKERS as u32;

        let a = read_back(&stores[0]).await;
        let b = read_back(&stores[1]).await;
        assert_eq!(a, b, "both instances read back the same");
        assert_eq!(
            a.0[0].active_version, expected,
            "one active version: the newest"
        );
        assert_eq!(a.1.len(), expected as usize, "every version is kept");
        for pushed in pushed.into_iter().flatten() {
            let bytes = stores[1]
                .mapper_bytes("raced", pushed.version)
                .await
                .expect("bytes");
            let listed = a.1.iter().find(|v| v.version == pushed.version);
            assert_eq!(
                listed.map(|v| &v.sha256),
                Some(&pushed.sha256),
                "version {} is the push that got it",
                pushed.version
            );
            assert_eq!(bytes.map(|b| b.len() as u64), Some(pushed.size));
        }
    }
}

/// What an instance knows of the raced mapper.
async fn read_back(
    store: &PostgresStore,
) -> (
    Vec<waypass::store::MapperEntry>,
    Vec<waypass::store::MapperVersion>,
) {
    (
        store.mappers().await.expect("mappers"),
        store.mapper_versions("raced").await.expect("versions"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_catalog_write_on_one_instance_is_notified_to_another_with_its_version() {
    let server = server_or_skip!();
    let database = TestDatabase::create(&server).await;
    let stores = instances(&database, 2).await;
    let mut feed = stores[1]
        .catalog_feed()
        .notified
        .expect("PostgreSQL notifies");
    // The first signal says the listening connection is up (and asks for a
    // check, for whatever it may have missed before).
    tokio::time::timeout(Duration::from_secs(30), feed.changed())
        .await
        .expect("listening")
        .expect("the feed lives");
    stores[0]
        .add_mapper_version("notified", b"bytes", "sha", "admin", NOW)
        .await
        .expect("write");
    let version = stores[0].catalog_version().await.expect("version");
    // Only a notification moves the feed's value: no poll is involved.
    tokio::time::timeout(Duration::from_secs(30), async {
        while *feed.borrow_and_update() < version {
            feed.changed().await.expect("the feed lives");
        }
    })
    .await
    .expect("the other instance is notified of the version");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_opening_one_new_database_together_all_start_and_migrate_it_once() {
    let server = server_or_skip!();
    for round in 0..3 {
        let database = TestDatabase::create(&server).await;
        let opened = join_tasks(
            (0..INSTANCES + 1)
                .map(|_| {
                    let url = database.url.clone();
                    tokio::spawn(async move { PostgresStore::connect(&url).await })
                })
                .collect(),
        )
        .await;
        for store in &opened {
            match store {
                Ok(store) => assert_eq!(
                    store.schema_version().await,
                    Ok(PostgresStore::SCHEMA_VERSION),
                    "round {round}"
                ),
                Err(e) => panic!("round {round}: an instance failed to open: {e}"),
            }
        }
        let applied: Vec<i64> = database
            .client()
            .await
            .query(
                "SELECT version FROM waypass_schema_versions ORDER BY version",
                &[],
            )
            .await
            .expect("versions")
            .iter()
            .map(|r| r.get(0))
            .collect();
        let wanted: Vec<i64> = (1..=i64::from(PostgresStore::SCHEMA_VERSION)).collect();
        assert_eq!(
            applied, wanted,
            "round {round}: each migration applied once"
        );
    }
}

/// Awaits every task; a task that panicked fails the test.
async fn join_tasks<T>(tasks: Vec<tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut results = Vec::with_capacity(tasks.len());
    for task in tasks {
        results.push(task.await.expect("an opener panicked"));
    }
    results
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_with_a_newer_schema_is_refused_and_left_alone() {
    let server = server_or_skip!();
    let database = TestDatabase::create(&server).await;
    let store = database.open().await;
    waypass_tests::everything::write(&store).await;
    drop(store);
    let newer = i64::from(PostgresStore::SCHEMA_VERSION) + 1;
    let client = database.client().await;
    client
        .execute(
            "INSERT INTO waypass_schema_versions (version, applied_at) VALUES ($1, 0)",
            &[&newer],
        )
        .await
        .expect("a newer version");

    let err = match PostgresStore::connect(&database.url).await {
        Ok(_) => panic!("a database at schema version {newer} was opened"),
        Err(e) => e.to_string(),
    };
    let name = database.url.expose().rsplit('/').next().unwrap_or_default();
    for part in ["newer", &newer.to_string(), name] {
        assert!(err.contains(part), "the error says `{part}`: {err}");
    }
    let max: i64 = client
        .query_one("SELECT MAX(version) FROM waypass_schema_versions", &[])
        .await
        .expect("version")
        .get(0);
    assert_eq!(max, newer, "the refused database is left as it was");
    let users: i64 = client
        .query_one("SELECT COUNT(*) FROM users", &[])
        .await
        .expect("users")
        .get(0);
    assert_eq!(users, 1, "its data untouched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_run_once_each_in_order_and_a_failing_one_changes_nothing() {
    let server = server_or_skip!();
    let database = TestDatabase::create(&server).await;
    let broken = ["CREATE TABLE a (x int)", "CREATE TABLE b (y int); NOT SQL"];
    let err = match PostgresStore::connect_with_migrations(&database.url, &broken).await {
        Ok(_) => panic!("a broken migration was applied"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("schema migration 2"),
        "names the migration: {err}"
    );
    let client = database.client().await;
    let left: i64 = client
        .query_one(
            "SELECT COUNT(*) FROM pg_tables WHERE schemaname = 'public'",
            &[],
        )
        .await
        .expect("tables")
        .get(0);
    assert_eq!(left, 0, "the first migration is rolled back too");

    let v1 = ["CREATE TABLE a (x int)"];
    for _ in 0..2 {
        let store = PostgresStore::connect_with_migrations(&database.url, &v1)
            .await
            .expect("v1, then nothing to do");
        assert_eq!(store.schema_version().await, Ok(1));
    }
    let v2 = ["CREATE TABLE a (x int)", "CREATE TABLE b (y int)"];
    let store = PostgresStore::connect_with_migrations(&database.url, &v2)
        .await
        .expect("only the second runs");
    assert_eq!(store.schema_version().await, Ok(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_written_is_read_back_by_another_instance_and_after_reopening() {
    let server = server_or_skip!();
    let database = TestDatabase::create(&server).await;
    let writer = database.open().await;
    waypass_tests::everything::write(&writer).await;
    let other = database.open().await;
    waypass_tests::everything::check(&other).await;
    drop((writer, other));
    let reopened = database.open().await;
    assert_eq!(
        reopened
            .take_code(SecretHash::of("code"), NOW)
            .await
            .map(|g| g.map(|g| g.user_id)),
        Ok(None),
        "a code taken before is not back after reopening"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings_are_in_byte_order_whatever_the_database_collation() {
    let server = server_or_skip!();
    // ICU's English sorts `_z a b B`; bytes (the memory and SQLite stores'
    // order, and what paging by offset relies on) sort `B _z a b`.
    let database = TestDatabase::create_with(
        &server,
        "TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US'",
    )
    .await;
    let store = database.open().await;
    let names = ["b", "B", "a", "_z"];
    let bytewise = ["B", "_z", "a", "b"];
    for name in names {
        let profile =
            serde_json::from_value(serde_json::json!({"user_id": name})).expect("profile");
        store
            .record_login(&format!("oauth2|c|{name}"), "c", profile, NOW)
            .await
            .expect("login");
        store
            .add_mapper_version(&format!("m{name}"), b"x", "sha", "ci", NOW)
            .await
            .expect("mapper");
    }
    let users: Vec<String> = store
        .list_users(0, 10, None)
        .await
        .expect("users")
        .into_iter()
        .map(|u| u.user_id)
        .collect();
    let wanted: Vec<String> = bytewise.iter().map(|n| format!("oauth2|c|{n}")).collect();
    assert_eq!(users, wanted, "users in byte order");
    let page: Vec<String> = store
        .list_users(1, 2, None)
        .await
        .expect("users")
        .into_iter()
        .map(|u| u.user_id)
        .collect();
    assert_eq!(page, wanted[1..3], "a page is a slice of that order");
    let mappers: Vec<String> = store
        .mappers()
        .await
        .expect("mappers")
        .into_iter()
        .map(|m| m.name)
        .collect();
    let wanted: Vec<String> = bytewise.iter().map(|n| format!("m{n}")).collect();
    assert_eq!(mappers, wanted, "mappers in byte order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_profile_whose_email_holds_a_nul_is_recorded_and_found() {
    // PostgreSQL's text refuses NUL; a mapper's profile may carry one, and
    // the login must not fail on it (SQLite and memory take it).
    let server = server_or_skip!();
    let database = TestDatabase::create(&server).await;
    let store = database.open().await;
    let profile: waypass::mapper::Profile = serde_json::from_value(serde_json::json!({
        "user_id": "1", "email": "Nul\0Byte@Example.test", "name": "a\0b",
    }))
    .expect("profile");
    store
        .record_login("oauth2|c|1", "c", profile.clone(), NOW)
        .await
        .expect("the login is recorded");
    let user = store.get_user("oauth2|c|1").await.expect("get");
    assert_eq!(user.map(|u| u.profile), Some(profile.clone()), "whole");
    for needle in ["nul\0byte@", "\0", "example.test"] {
        let found = store.list_users(0, 10, Some(needle)).await.expect("search");
        assert_eq!(found.len(), 1, "found by {needle:?}");
    }
    let found = store
        .list_users(0, 10, Some("nulbyte"))
        .await
        .expect("search");
    assert!(found.is_empty(), "the NUL is part of the email: {found:?}");
}

/// The test database's URL with `localhost` for the host and `query`
/// added (TLS parameters).
fn tls_url(database: &TestDatabase, query: &str) -> DatabaseUrl {
    let mut url = url::Url::parse(database.url.expose()).expect("url");
    url.set_host(Some("localhost")).expect("a host");
    url.set_query(Some(query));
    DatabaseUrl::parse(url.as_str()).expect("a TLS URL")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_connections_verify_the_server_certificate() {
    let server = server_or_skip!();
    let database = TestDatabase::create(&server).await;
    let client = database.client().await;
    let setting = |name: &'static str| {
        let client = &client;
        async move {
            client
                .query_one(&format!("SHOW {name}"), &[])
                .await
                .map(|row| row.get::<_, String>(0))
                .unwrap_or_else(|e| panic!("SHOW {name}: {e}"))
        }
    };
    // Debian's clusters (scripts/ensure-postgres) serve TLS with a
    // self-signed certificate for `localhost`.
    assert_eq!(
        setting("ssl").await,
        "on",
        "the test server must serve TLS (`ssl = on`)"
    );
    let certificate = setting("ssl_cert_file").await;

    let untrusted = tls_url(&database, "sslmode=require");
    let err = match PostgresStore::connect(&untrusted).await {
        Ok(_) => panic!("a self-signed certificate was accepted without sslrootcert"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("invalid peer certificate"),
        "refused for its certificate: {err}"
    );

    let query = format!(
        "sslmode=verify-full&sslrootcert={}",
        url::form_urlencoded::byte_serialize(certificate.as_bytes()).collect::<String>()
    );
    let trusted = tls_url(&database, &query);
    let store = PostgresStore::connect(&trusted)
        .await
        .unwrap_or_else(|e| panic!("{trusted} with the server's own certificate: {e}"));
    waypass_tests::everything::write(&store).await;
    let name = database.url.expose().rsplit('/').next().unwrap_or_default();
    let encrypted: i64 = client
        .query_one(
            "SELECT COUNT(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid)
             WHERE datname = $1 AND application_name = 'waypass' AND ssl",
            &[&name],
        )
        .await
        .expect("pg_stat_ssl")
        .get(0);
    assert!(encrypted >= 1, "the store's connections are encrypted");
    let plain: i64 = client
        .query_one(
            "SELECT COUNT(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid)
             WHERE datname = $1 AND application_name = 'waypass' AND NOT ssl",
            &[&name],
        )
        .await
        .expect("pg_stat_ssl")
        .get(0);
    assert_eq!(plain, 0, "and none is plain");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_database_is_a_clear_error_without_the_password() {
    // Port 1 on loopback: nothing listens there, the connection is refused
    // at once.
    let url =
        DatabaseUrl::parse("postgres://waypass:hunter2@127.0.0.1:1/waypass?connect_timeout=5")
            .expect("url");
    let err = match PostgresStore::connect(&url).await {
        Ok(_) => panic!("connected to nothing"),
        Err(e) => e,
    };
    let StoreError::Backend(message) = &err else {
        panic!("a backend error: {err:?}");
    };
    assert!(
        message.contains("127.0.0.1:1"),
        "names the server: {message}"
    );
    assert!(
        !message.contains("hunter2"),
        "never the password: {message}"
    );
}
