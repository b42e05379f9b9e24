//! The store backends: the conformance suite against each, and what only a
//! file can show — surviving a restart, schema versions, file permissions,
//! two processes on one file.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use waypass::secret::{Secret, SecretHash};
use waypass::store::crypt::Keyring;
use waypass::store::{
    AccessGrant, AuthorizationGrant, LoginTransaction, MemoryStore, PutTransaction, SealedStore,
    SqliteStore, Store, StoreError, StoredClient, StoredConnection, TakeTransaction,
};
use waypass_tests::conformance::{self, NOW, race};
use waypass_tests::secrets::SECRETS_KEY;

/// Offset of the "user version" in a SQLite file's header, where the schema
/// version is kept (<https://www.sqlite.org/fileformat2.html#user_version_number>).
const USER_VERSION_OFFSET: usize = 60;

fn open(path: &Path) -> SqliteStore {
    SqliteStore::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()))
}

fn db_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("waypass.db")
}

#[tokio::test]
async fn the_memory_store_conforms() {
    conformance::run_all(|| async { Box::new(MemoryStore::default()) as Box<dyn Store> }).await;
}

#[tokio::test]
async fn the_sqlite_store_conforms() {
    let dir = tempfile::tempdir().expect("temp dir");
    let n = AtomicUsize::new(0);
    conformance::run_all(|| {
        let path = dir
            .path()
            .join(format!("{}.db", n.fetch_add(1, Ordering::Relaxed)));
        async move { Box::new(open(&path)) as Box<dyn Store> }
    })
    .await;
}

#[tokio::test]
async fn the_memory_store_seals_its_secrets_as_every_backend_does() {
    conformance::run_sealed(|| async { Box::new(MemoryStore::default()) as Box<dyn Store> }).await;
}

#[tokio::test]
async fn the_sqlite_store_seals_its_secrets() {
    let dir = tempfile::tempdir().expect("temp dir");
    let n = AtomicUsize::new(0);
    conformance::run_sealed(|| {
        let path = dir
            .path()
            .join(format!("sealed-{}.db", n.fetch_add(1, Ordering::Relaxed)));
        async move { Box::new(open(&path)) as Box<dyn Store> }
    })
    .await;
}

#[tokio::test]
async fn a_sealed_memory_store_conforms() {
    conformance::run_all(|| async {
        Box::new(SealedStore::new(
            Arc::new(MemoryStore::default()),
            Arc::new(Keyring::parse(SECRETS_KEY).expect("key")),
        )) as Box<dyn Store>
    })
    .await;
}

#[tokio::test]
async fn the_sqlite_store_in_memory_conforms() {
    conformance::run_all(|| async {
        Box::new(SqliteStore::open_in_memory().expect("open in memory")) as Box<dyn Store>
    })
    .await;
}

// ---- SQLite only ----

fn transaction() -> LoginTransaction {
    LoginTransaction {
        client_id: "app".into(),
        redirect_uri: "https://app.example/cb".into(),
        app_state: Some("xyz".into()),
        nonce: Some("n".into()),
        code_challenge: None,
        scope: "openid".into(),
        connection: "acme".into(),
        provider_verifier: Some(Secret::new("verifier")),
        browser_binding: SecretHash::of("cookie"),
        correlation_id: "corr".into(),
        expires_at: NOW + 600,
        form_post: false,
        audience: None,
        query: Vec::new(),
    }
}

fn grant(code_challenge: Option<&str>) -> AuthorizationGrant {
    AuthorizationGrant {
        correlation_id: None,
        claims: Default::default(),
        client_id: "app".into(),
        redirect_uri: "https://app.example/cb".into(),
        user_id: "oauth2|acme|1".into(),
        scope: "openid".into(),
        nonce: None,
        code_challenge: code_challenge.map(str::to_owned),
        auth_time: NOW,
        session_id: None,
        audience: None,
        expires_at: NOW + 60,
    }
}

fn connection() -> StoredConnection {
    waypass::model::ConnectionRecord {
        id: "con_1".into(),
        spec: serde_json::from_value(serde_json::json!({
            "name": "acme",
            "options": {"authorizationURL": "https://a.test/authorize", "tokenURL": "https://a.test/token",
                        "client_id": "c", "client_secret": "s3", "mapper": "m",
                        "mapper_settings": {"api_key": "k"}}
        }))
        .expect("spec"),
    }
    .to_stored()
}

fn client() -> StoredClient {
    serde_json::from_value(serde_json::json!({
        "client_id": "app", "name": "App", "client_type": "public", "secret_hash": null,
        "callbacks": ["https://app.example/cb"], "id_token_alg": "RS256"
    }))
    .expect("client")
}

/// One of everything the trait stores.
async fn write_one_of_everything(store: &dyn Store) {
    let stored = store
        .put_transaction(SecretHash::of("state"), transaction(), NOW, 10)
        .await
        .expect("transaction");
    assert_eq!(stored, PutTransaction::Stored);
    store
        .put_code(SecretHash::of("code"), grant(None))
        .await
        .expect("code");
    store
        .put_code(SecretHash::of("taken code"), grant(Some("ch")))
        .await
        .expect("code");
    store
        .take_code(SecretHash::of("taken code"), NOW)
        .await
        .expect("take")
        .expect("present");
    store
        .put_access_token(
            SecretHash::of("token"),
            AccessGrant {
                claims: Default::default(),
                user_id: "oauth2|acme|1".into(),
                client_id: "app".into(),
                scope: "openid".into(),
                family_id: None,
                expires_at: NOW + 3600,
            },
        )
        .await
        .expect("token");
    let profile = serde_json::from_value(serde_json::json!({"user_id": "1", "email": "a@x.test"}))
        .expect("profile");
    store
        .record_login("oauth2|acme|1", "acme", profile, NOW)
        .await
        .expect("login");
    store
        .put_connection(&connection())
        .await
        .expect("connection");
    store.put_client(&client()).await.expect("client");
    for bytes in [b"one", b"two"] {
        store
            .add_mapper_version("m", bytes, "sha", "admin", NOW)
            .await
            .expect("mapper");
    }
    assert_eq!(store.activate_mapper_version("m", 1).await, Ok(true));
    store
        .init_signing_keys("{\"keys\":[]}")
        .await
        .expect("keys");
}

#[tokio::test]
async fn everything_written_survives_closing_and_reopening_the_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = db_path(&dir);
    write_one_of_everything(&open(&path)).await;

    let store = open(&path);
    let taken = store
        .take_transaction(SecretHash::of("state"), Some(SecretHash::of("cookie")), NOW)
        .await
        .expect("take");
    let TakeTransaction::Taken(tx) = taken else {
        panic!("the login in flight survives: {taken:?}");
    };
    assert_eq!(
        tx.provider_verifier.as_ref().map(Secret::expose),
        Some("verifier"),
        "with its PKCE verifier"
    );
    assert_eq!(tx.browser_binding, SecretHash::of("cookie"));
    assert_eq!(tx.app_state.as_deref(), Some("xyz"));
    let code = store
        .take_code(SecretHash::of("code"), NOW)
        .await
        .expect("take")
        .expect("the unredeemed code survives");
    assert_eq!(code.user_id, "oauth2|acme|1");
    assert_eq!(code.expires_at, NOW + 60);
    assert_eq!(
        store
            .take_code(SecretHash::of("taken code"), NOW)
            .await
            .expect("take")
            .map(|g| g.user_id),
        None,
        "a redeemed code stays redeemed"
    );
    let token = store
        .get_access_token(SecretHash::of("token"), NOW)
        .await
        .expect("get")
        .expect("the access token survives");
    assert_eq!(token.expires_at, NOW + 3600);
    let user = store
        .get_user("oauth2|acme|1")
        .await
        .expect("get")
        .expect("the user survives");
    assert_eq!(user.profile.email.as_deref(), Some("a@x.test"));
    assert_eq!(
        store
            .list_users(0, 10, Some("A@X"))
            .await
            .expect("search")
            .len(),
        1,
        "and is found by email"
    );
    let connections = store.connections().await.expect("connections");
    assert_eq!(connections.len(), 1, "the connection survives");
    assert_eq!(connections[0], connection(), "whole, secrets included");
    assert_eq!(store.clients().await.expect("clients"), [client()]);
    assert_eq!(
        store.mapper_versions("m").await.expect("versions").len(),
        2,
        "both mapper versions survive"
    );
    assert_eq!(
        store.mapper_bytes("m", 2).await.expect("bytes").as_deref(),
        Some(&b"two"[..])
    );
    assert_eq!(
        store.mappers().await.expect("mappers")[0].active_version,
        1,
        "the activation survives"
    );
    assert_eq!(
        store.signing_keys().await.expect("keys").as_deref(),
        Some("{\"keys\":[]}"),
        "the signing keys survive"
    );
    drop(store);

    let store = open(&path);
    assert_eq!(
        store
            .take_code(SecretHash::of("code"), NOW)
            .await
            .expect("take")
            .map(|g| g.user_id),
        None,
        "a take before a restart is not undone by it"
    );
}

#[tokio::test]
async fn reopening_an_up_to_date_database_applies_no_migration() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = db_path(&dir);
    let store = open(&path);
    assert_eq!(
        store.schema_version(),
        Ok(SqliteStore::SCHEMA_VERSION),
        "a new file is brought to the current schema"
    );
    write_one_of_everything(&store).await;
    drop(store);
    // Migrations are plain CREATE TABLEs: running one again would fail the
    // open, so opening at all shows none ran twice.
    for _ in 0..2 {
        let store = open(&path);
        assert_eq!(
            store.schema_version(),
            Ok(SqliteStore::SCHEMA_VERSION),
            "the version is unchanged"
        );
        assert_eq!(
            store.clients().await.expect("clients").len(),
            1,
            "and the data is untouched"
        );
    }
}

#[tokio::test]
async fn a_database_from_a_newer_waypass_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = db_path(&dir);
    write_one_of_everything(&open(&path)).await;
    assert!(
        !dir.path().join("waypass.db-wal").exists(),
        "closing the last connection checkpoints the WAL into the file"
    );
    let newer = SqliteStore::SCHEMA_VERSION + 1;
    let mut bytes = std::fs::read(&path).expect("read");
    bytes[USER_VERSION_OFFSET..USER_VERSION_OFFSET + 4].copy_from_slice(&newer.to_be_bytes());
    std::fs::write(&path, &bytes).expect("write");

    let err = match SqliteStore::open(&path) {
        Ok(_) => panic!("a database at schema version {newer} was opened"),
        Err(e) => e.to_string(),
    };
    for part in ["newer", &newer.to_string(), &path.display().to_string()] {
        assert!(err.contains(part), "the error says `{part}`: {err}");
    }
    assert_eq!(
        std::fs::read(&path).expect("read"),
        bytes,
        "the refused file is left as it was"
    );
}

#[tokio::test]
async fn a_file_that_is_not_a_database_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = db_path(&dir);
    let junk = b"this is not a SQLite database, it is a text file".repeat(100);
    std::fs::write(&path, &junk).expect("write");
    let err = SqliteStore::open(&path).err().expect("refused");
    let StoreError::Backend(message) = &err else {
        panic!("expected a backend error, got {err:?}");
    };
    assert!(
        message.starts_with(&format!("{}: ", path.display()))
            && message.contains("file is not a database"),
        "the error names the file and what is wrong with it: {message}"
    );
    assert_eq!(std::fs::read(&path).expect("read"), junk, "and left alone");
}

#[cfg(unix)]
#[tokio::test]
async fn a_new_database_is_readable_by_its_owner_only() {
    use std::os::unix::fs::PermissionsExt;

    let dir = tempfile::tempdir().expect("temp dir");
    let path = db_path(&dir);
    let store = open(&path);
    write_one_of_everything(&store).await;
    for file in ["waypass.db", "waypass.db-wal", "waypass.db-shm"] {
        let mode = std::fs::metadata(dir.path().join(file))
            .unwrap_or_else(|e| panic!("{file}: {e}"))
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o777,
            0o600,
            "{file} holds secrets: owner only, got {mode:o}"
        );
    }
}

#[tokio::test]
async fn two_stores_on_one_file_let_exactly_one_take_win() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = db_path(&dir);
    let stores = [open(&path), open(&path)];
    for round in 0..20 {
        let code = SecretHash::of(&format!("code {round}"));
        stores[round % 2]
            .put_code(code, grant(None))
            .await
            .expect("put");
        let results = race(8, |i| stores[i % 2].take_code(code, NOW));
        assert!(
            results.iter().all(Result::is_ok),
            "no take fails: {results:?}"
        );
        let winners = results.iter().filter(|r| matches!(r, Ok(Some(_)))).count();
        assert_eq!(
            winners, 1,
            "round {round}: one redemption across both stores"
        );
    }
}
