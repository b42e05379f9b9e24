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

use waypass::store::{PostgresStore, SqliteStore};
use waypass_tests::everything;
use waypass_tests::postgres::{TestDatabase, server};

/// The schema versions whose fixtures exist: 1 (the first), 2 (the
/// catalog version and leases, issue #10).
const FIXTURE_VERSIONS: [u32; 2] = [1, 2];

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
        let store = SqliteStore::open(&path).expect("a new fixture");
        everything::write(&store).await;
        // Closing checkpoints the WAL into the file.
        drop(store);
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let copy = dir.path().join("waypass.db");
    std::fs::copy(&path, &copy).unwrap_or_else(|e| panic!("{}: {e}", path.display()));

    let store = SqliteStore::open(&copy).expect("today's code opens it");
    assert_eq!(
        store.schema_version(),
        Ok(SqliteStore::SCHEMA_VERSION),
        "and migrates it to the current schema"
    );
    everything::check(&store).await;
    if version >= 2 {
        everything::check_schema_2(&store).await;
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
        everything::write(&source.open().await).await;
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
    everything::check(&store).await;
    if version >= 2 {
        everything::check_schema_2(&store).await;
    }
    everything::check_the_catalog_version_moves(&store).await;
}

/// SQL without psql's backslash commands (`\restrict`, `\connect`): the
/// server does not know them.
fn without_psql_commands(sql: &str) -> String {
    sql.lines()
        .filter(|line| !line.starts_with('\\'))
        .map(|line| format!("{line}\n"))
        .collect()
}
