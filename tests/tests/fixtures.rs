//! Released schemas stay readable: a database of each schema version, with
//! one of everything in it (`waypass_tests::everything`), is checked in
//! under `tests/fixtures/` and opened here by today's code — which migrates
//! it to the current schema — and everything is read back. A new migration
//! is tested from every fixture; a fixture is never regenerated once
//! released (that would test nothing): a new schema version adds its own.
//!
//! To write the fixtures of the current schema version (new files, for a
//! new version):
//!
//! ```sh
//! WAYPASS_WRITE_FIXTURES=1 cargo test -p waypass-tests --test fixtures
//! ```
//!
//! which writes `sqlite-schema-N.db` with `SqliteStore` and
//! `postgres-schema-N.sql` with `PostgresStore` into a fresh database and
//! `pg_dump --inserts --no-owner --no-privileges` (psql's `\restrict`
//! lines, which only psql understands, are left out), then reads them back
//! as usual.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use waypass::store::{PostgresStore, SqliteStore, Store};
use waypass_tests::everything;
use waypass_tests::postgres::{TestDatabase, server};

/// The schema versions whose fixtures exist: 1 (the first), 2 (the
/// catalog version and leases, issue #10), 6 (connection keys, Actions and
/// users' metadata, log events, sessions/refresh tokens/APIs: 3 to 5 were
/// never released apart), 10 (branding, secrets sealed, the provider's
/// tokens, Rules, identities: 7 to 9 were never released apart).
const FIXTURE_VERSIONS: [u32; 4] = [1, 2, 6, 10];

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

/// Whether this run writes the current version's fixtures first.
fn writing() -> bool {
    std::env::var_os("WAYPASS_WRITE_FIXTURES").is_some_and(|v| !v.is_empty())
}

#[tokio::test]
async fn a_sqlite_database_of_schema_1_opens_with_everything_in_it() {
    sqlite_fixture_opens(FIXTURE_VERSIONS[0]).await;
}

#[tokio::test]
async fn a_sqlite_database_of_schema_2_opens_with_everything_in_it() {
    sqlite_fixture_opens(FIXTURE_VERSIONS[1]).await;
}

#[tokio::test]
async fn a_sqlite_database_of_schema_6_opens_with_everything_in_it() {
    sqlite_fixture_opens(FIXTURE_VERSIONS[2]).await;
}

#[tokio::test]
async fn a_sqlite_database_of_schema_10_opens_with_everything_in_it() {
    sqlite_fixture_opens(FIXTURE_VERSIONS[3]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_database_of_schema_10_opens_with_everything_in_it() {
    postgres_fixture_opens(FIXTURE_VERSIONS[3]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_database_of_schema_6_opens_with_everything_in_it() {
    postgres_fixture_opens(FIXTURE_VERSIONS[2]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_database_of_schema_1_opens_with_everything_in_it() {
    postgres_fixture_opens(FIXTURE_VERSIONS[0]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_database_of_schema_2_opens_with_everything_in_it() {
    postgres_fixture_opens(FIXTURE_VERSIONS[1]).await;
}

async fn sqlite_fixture_opens(version: u32) {
    let path = fixture(&format!("sqlite-schema-{version}.db"));
    if writing() && SqliteStore::SCHEMA_VERSION == version {
        let _ = std::fs::remove_file(&path);
        let store = Arc::new(SqliteStore::open(&path).expect("a new fixture"));
        everything::write(&*store).await;
        everything::write_schema_10(store.clone()).await;
        // Closing checkpoints the WAL into the file.
        drop(store);
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let copy = dir.path().join("waypass.db");
    std::fs::copy(&path, &copy).unwrap_or_else(|e| panic!("{}: {e}", path.display()));

    let raw = Arc::new(SqliteStore::open(&copy).expect("today's code opens it"));
    assert_eq!(
        raw.schema_version(),
        Ok(SqliteStore::SCHEMA_VERSION),
        "and migrates it to the current schema"
    );
    check_everything(raw, version).await;
}

/// Reads everything back through the sealing layer, as a broker does:
/// the secrets of a fixture of schema 10 are sealed, an older one's clear
/// until `rotate-key` seals them.
async fn check_everything(raw: Arc<dyn Store>, version: u32) {
    let store = everything::sealed(raw.clone());
    everything::check(&store).await;
    if version >= 2 {
        everything::check_schema_2(&store).await;
    }
    if version >= 6 {
        everything::check_schema_6(&store).await;
    }
    if version >= 10 {
        everything::check_schema_10(raw).await;
    } else {
        everything::check_clear_secrets_are_read_then_sealed_by_rotation(raw).await;
    }
    everything::check_the_catalog_version_moves(&store).await;
}

async fn postgres_fixture_opens(version: u32) {
    let Some(server) = server() else {
        return;
    };
    let path = fixture(&format!("postgres-schema-{version}.sql"));
    if writing() && PostgresStore::SCHEMA_VERSION == version {
        let source = TestDatabase::create(&server).await;
        let store: Arc<dyn Store> = Arc::new(source.open().await);
        everything::write(&*store).await;
        everything::write_schema_10(store).await;
        let dump = std::process::Command::new("pg_dump")
            .args(["--inserts", "--no-owner", "--no-privileges", "--dbname"])
            .arg(source.url.expose())
            .output()
            .expect("pg_dump runs");
        assert!(dump.status.success(), "pg_dump: {dump:?}");
        let sql = String::from_utf8(dump.stdout).expect("UTF-8");
        let header = format!(
            "-- A Waypass PostgreSQL database at schema version {version}, with one of\n\
             -- everything in it: written by tests/tests/fixtures.rs (see there), never edited.\n"
        );
        std::fs::write(&path, header + &without_psql_commands(&sql)).expect("write the fixture");
    }
    let sql = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let database = TestDatabase::create(&server).await;
    database
        .client()
        .await
        .batch_execute(&without_psql_commands(&sql))
        .await
        .unwrap_or_else(|e| panic!("loading {}: {e:?}", path.display()));

    let store = database.open().await;
    assert_eq!(
        store.schema_version().await,
        Ok(PostgresStore::SCHEMA_VERSION),
        "today's code opens it and migrates it to the current schema"
    );
    check_everything(Arc::new(store), version).await;
}

/// SQL without psql's backslash commands (`\restrict`, `\connect`): the
/// server does not know them.
fn without_psql_commands(sql: &str) -> String {
    sql.lines()
        .filter(|line| !line.starts_with('\\'))
        .map(|line| format!("{line}\n"))
        .collect()
}

// ---- the signing keys of a release that kept them in `keys.json` ----

/// `keys.json` as releases before the store held the keys left it in the
/// data directory (key document format 1; written once by an independent
/// generator, Python's `cryptography`, so the import reads PKCS#8 from
/// more than our own writer). Its kids, in order.
const LEGACY_KEYS: &str = "keys-json-v1.json";
const LEGACY_KIDS: [&str; 2] = [
    "BY03u9XinwPY4gVUOhNQsHNKSxoeQzVyON6-hEuTnNY",
    "TxTBmyhII174JBFudIJUzwbogrFAo370LhL_uSNerVU",
];

/// A configuration whose data directory is `data` (SQLite), nothing else.
fn data_dir_config(dir: &Path) -> waypass::broker::config::Config {
    let path = dir.join("waypass.toml");
    std::fs::write(
        &path,
        "issuer = \"http://login.test\"\ndata_dir = \"data\"\n",
    )
    .expect("write the configuration");
    waypass::broker::config::Config::load(&path).expect("the configuration loads")
}

/// The kids of a broker's JWKS, in order.
fn jwks_kids(broker: &waypass::broker::Broker) -> Vec<String> {
    let jwks: serde_json::Value = serde_json::from_slice(&broker.jwks_json()).expect("JSON");
    jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| k["kid"].as_str().expect("a kid").to_owned())
        .collect()
}

/// What the store in `data` holds as the signing keys, opened with the
/// secrets key the broker generated in `data`.
async fn stored_keys(data: &Path) -> Option<String> {
    use waypass::store::Store as _;
    let raw =
        std::sync::Arc::new(SqliteStore::open(&data.join("waypass.db")).expect("the store opens"));
    let key = std::fs::read_to_string(data.join("secrets.key")).expect("the generated key");
    let keys = waypass::store::crypt::Keyring::parse(&key).expect("a valid key");
    waypass::store::SealedStore::new(raw, std::sync::Arc::new(keys))
        .signing_keys()
        .await
        .expect("the store answers")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_legacy_keys_json_is_imported_into_the_store_and_signs_from_there_after() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    std::fs::create_dir(&data).expect("data dir");
    let legacy = std::fs::read_to_string(fixture(LEGACY_KEYS)).expect("the fixture");
    std::fs::write(data.join("keys.json"), &legacy).expect("keys.json");
    let config = data_dir_config(dir.path());

    let broker = waypass::broker::Broker::from_config(&config)
        .await
        .expect("starts with the legacy keys");
    assert_eq!(
        jwks_kids(&broker),
        LEGACY_KIDS,
        "the file's keys are the ones served"
    );
    drop(broker);
    assert_eq!(
        stored_keys(&data).await.as_deref(),
        Some(legacy.as_str()),
        "imported as they were"
    );

    // The store holds them now: the file is no longer needed.
    std::fs::remove_file(data.join("keys.json")).expect("remove keys.json");
    let broker = waypass::broker::Broker::from_config(&config)
        .await
        .expect("starts without the file");
    assert_eq!(
        jwks_kids(&broker),
        LEGACY_KIDS,
        "the same keys, from the store"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_keys_json_is_refused_at_start_and_nothing_is_stored_in_its_place() {
    let legacy = std::fs::read_to_string(fixture(LEGACY_KEYS)).expect("the fixture");
    let cases = [
        ("truncated", legacy[..legacy.len() / 2].to_owned()),
        ("not JSON", "\u{0}\u{1}garbage".to_owned()),
        (
            "a format this version does not read",
            legacy.replacen("\"version\": 1", "\"version\": 2", 1),
        ),
        (
            "a kid that is not its key's",
            legacy.replacen(LEGACY_KIDS[0], LEGACY_KIDS[1], 1),
        ),
        (
            "a private key damaged",
            legacy.replacen("\"pkcs8\": \"MII", "\"pkcs8\": \"AII", 1),
        ),
    ];
    for (what, document) in cases {
        assert_ne!(document, legacy, "{what}: the case changes the file");
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("data");
        std::fs::create_dir(&data).expect("data dir");
        std::fs::write(data.join("keys.json"), &document).expect("keys.json");
        let err = waypass::broker::Broker::from_config(&data_dir_config(dir.path()))
            .await
            .err()
            .unwrap_or_else(|| panic!("{what}: a corrupt keys.json must be refused"));
        let message = format!("{err:#}");
        assert!(
            message.contains("the signing keys are unusable") && message.contains("Restore"),
            "{what}: says what is wrong and what to do: {message}"
        );
        assert_eq!(
            stored_keys(&data).await,
            None,
            "{what}: no keys stored (new ones would hide the problem for good)"
        );
        assert_eq!(
            std::fs::read_to_string(data.join("keys.json")).expect("still there"),
            document,
            "{what}: the file is left for the operator to restore"
        );
    }
}
