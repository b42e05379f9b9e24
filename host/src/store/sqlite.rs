//! Everything in one SQLite file: the store for a single instance that keeps
//! its state across restarts, or a few instances sharing one disk.
//!
//! # What is stored where
//!
//! | table | key | what |
//! | --- | --- | --- |
//! | `login_transactions` | SHA-256 of the `state` | a login between `/authorize` and the callback |
//! | `authorization_codes` | SHA-256 of the code | what the code stands for, until redeemed |
//! | `access_tokens` | SHA-256 of the token | what the token stands for, until it expires |
//! | `users` | `user_id` | profile (JSON), lower-cased email, login counters, `app_metadata` and `user_metadata` (JSON) |
//! | `connections` | `id` | the spec as JSON, secrets included; `name` unique |
//! | `clients` | `client_id` | the app as JSON (its secret only as a hash) |
//! | `mappers` | `name` | the active version |
//! | `mapper_versions` | `name`, `version` | metadata and the component's bytes |
//! | `actions` | `id` | the Action as JSON (secrets included), its active version, its draft component; `name` unique |
//! | `action_versions` | `action_id`, `version` | metadata and the component's bytes |
//! | `action_bindings` | `trigger_id`, `position` | the Actions bound to a trigger, in order |
//! | `signing_keys` | the single row `id = 1` | the key set document |
//! | `catalog_version` | the single row `id = 1` | bumped by every catalog write |
//! | `leases` | `name` | who holds a lease (the sweep) until when |
//! | `connection_keys` | `connection_id` | a connection's `private_key_jwt` key document |
//! | `branding` | the single row `id = 1` | the login page's branding settings (JSON) and page template |
//! | `user_identities` | `connection`, `provider_user_id` | a user's identity: its user, the provider's profile (JSON) |
//!
//! The three short-lived tables hold a 32-byte hash (BLOB), `expires_at` and
//! the payload as JSON: they are only ever looked up by key, so their fields
//! need no columns of their own, and adding a field needs no migration. A
//! take is one `DELETE … RETURNING`: SQLite runs it as one write
//! transaction, so of two takes of one key — from this process or another
//! one on the same file — exactly one gets the row. A login transaction is
//! taken only with its browser binding, compared inside that same
//! statement (`json_extract` of the payload), so a wrong cookie removes
//! nothing; and a new one is inserted only while fewer than the bound are
//! live, counted inside the inserting statement. Expired rows are deleted
//! by [`Store::sweep_expired`], which the server runs on a timer.
//!
//! Users keep their email lower-cased (Rust's Unicode lower-casing, as the
//! memory store compares) in a column of its own, so a search is a substring
//! match in SQL; `instr`, not `LIKE`, so `%` and `_` in a search are literal.
//!
//! The file holds connection secrets (client secrets, mapper settings) and
//! the PKCE verifiers of logins in flight, so a new file is created readable
//! by its owner only; SQLite gives its `-wal` and `-shm` files the same mode.
//!
//! # Schema versions
//!
//! The schema is [`MIGRATIONS`], applied in order at open inside one
//! transaction; `PRAGMA user_version` records how many have been applied. A
//! database written by a newer Waypass (a higher version than we know) is
//! refused rather than guessed at.
//!
//! # Concurrency
//!
//! One connection, owned by a thread of its own: every call is sent to it
//! as a job and awaited, so no SQLite call (a file read, an fsync, a wait
//! for another process's write lock) ever blocks an async worker. Jobs run
//! one at a time, as they did behind a mutex before. Between processes,
//! SQLite's own locking (WAL mode, a busy timeout) serialises writers.
//!
//! Group commit: a job of plain statements (one `INSERT`, one `DELETE …
//! RETURNING`, a read; no transaction of its own) found queued behind
//! another such job runs with it in one `BEGIN IMMEDIATE … COMMIT`, and
//! each caller is answered once that commit is done (with its error if it
//! fails). Every transaction costs the same fixed work — the WAL's
//! shared-memory locks (`fcntl`), its commit frame, a wake-up of this
//! thread — so under load many logins share it, and a lone job runs as
//! before, in autocommit. The statements run one after the other as they
//! would have alone: a take of a key two callers race for still lets one
//! win, and another process still sees all of a group or none of it.
//!
//! # The catalog version
//!
//! `catalog_version` holds one number, bumped by triggers on every insert,
//! update or delete of `connections`, `clients`, `mappers` and
//! `mapper_versions`, inside the writing transaction. Instances sharing the
//! file poll it ([`CATALOG_POLL_INTERVAL`]).

use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use serde::{Deserialize, Serialize};

use super::stored::{StoredTransaction, email_key, from_json, to_json};
use super::*;

mod branding;
mod idp_tokens;
mod sessions;

/// How often an instance checks the catalog version, the only way one
/// learns of a change another process made to the same file (SQLite has no
/// notifications across processes). With the rebuild that follows it, a
/// change is served within the second issue #10 §3 allows a SQLite
/// deployment; the check is one single-row read, on the store's thread.
pub const CATALOG_POLL_INTERVAL: Duration = Duration::from_millis(250);

/// How long a statement waits for another connection's write lock before
/// failing. Writes here are single rows, so waiting this long means the
/// other writer is stuck, not busy.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The schema: entry `i` takes the database from version `i` to `i + 1`.
/// Append only — a released migration never changes, or databases that
/// already ran it would differ from new ones. Plain `CREATE TABLE` (no
/// `IF NOT EXISTS`): running a migration twice fails instead of passing
/// silently.
const MIGRATIONS: &[&str] = &[
    // 1: everything the `Store` trait holds.
    "
    CREATE TABLE login_transactions (
        key_hash BLOB PRIMARY KEY NOT NULL,
        expires_at INTEGER NOT NULL,
        payload TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX login_transactions_by_expiry ON login_transactions (expires_at);

    CREATE TABLE authorization_codes (
        key_hash BLOB PRIMARY KEY NOT NULL,
        expires_at INTEGER NOT NULL,
        payload TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX authorization_codes_by_expiry ON authorization_codes (expires_at);

    CREATE TABLE access_tokens (
        key_hash BLOB PRIMARY KEY NOT NULL,
        expires_at INTEGER NOT NULL,
        payload TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX access_tokens_by_expiry ON access_tokens (expires_at);

    CREATE TABLE users (
        user_id TEXT PRIMARY KEY NOT NULL,
        connection TEXT NOT NULL,
        profile TEXT NOT NULL,
        email_lower TEXT,
        created_at INTEGER NOT NULL,
        last_login INTEGER NOT NULL,
        logins_count INTEGER NOT NULL
    ) WITHOUT ROWID;

    CREATE TABLE connections (
        id TEXT PRIMARY KEY NOT NULL,
        name TEXT NOT NULL UNIQUE,
        spec TEXT NOT NULL
    ) WITHOUT ROWID;

    CREATE TABLE clients (
        client_id TEXT PRIMARY KEY NOT NULL,
        client TEXT NOT NULL
    ) WITHOUT ROWID;

    CREATE TABLE mappers (
        name TEXT PRIMARY KEY NOT NULL,
        active_version INTEGER NOT NULL
    ) WITHOUT ROWID;

    -- The bytes last: listing versions then never reads the blob's pages.
    CREATE TABLE mapper_versions (
        name TEXT NOT NULL REFERENCES mappers (name) ON DELETE CASCADE,
        version INTEGER NOT NULL,
        sha256 TEXT NOT NULL,
        size INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        created_by TEXT NOT NULL,
        bytes BLOB NOT NULL,
        PRIMARY KEY (name, version)
    );

    CREATE TABLE signing_keys (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        document TEXT NOT NULL
    );
    ",
    // 2: the catalog version, bumped by a trigger on every change to a
    // catalog table, in the changing transaction (so no writer can forget
    // it); and leases, for jobs one instance at a time runs.
    "
    CREATE TABLE catalog_version (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        version INTEGER NOT NULL
    );
    INSERT INTO catalog_version (id, version) VALUES (1, 0);

    CREATE TRIGGER connections_inserted AFTER INSERT ON connections
        BEGIN UPDATE catalog_version SET version = version + 1; END;
    CREATE TRIGGER connections_updated AFTER UPDATE ON connections
        BEGIN UPDATE catalog_version SET version = version + 1; END;
    CREATE TRIGGER connections_deleted AFTER DELETE ON connections
        BEGIN UPDATE catalog_version SET version = version + 1; END;
    CREATE TRIGGER clients_inserted AFTER INSERT ON clients
        BEGIN UPDATE catalog_version SET version = version + 1; END;
    CREATE TRIGGER clients_updated AFTER UPDATE ON clients
        BEGIN UPDATE catalog_version SET version = version + 1; END;
    CREATE TRIGGER clients_deleted AFTER DELETE ON clients
        BEGIN UPDATE catalog_version SET version = version + 1; END;
    CREATE TRIGGER mappers_inserted AFTER INSERT ON mappers
        BEGIN UPDATE catalog_version SET version = version + 1; END;
    CREATE TRIGGER mappers_updated AFTER UPDATE ON mappers
        BEGIN UPDATE catalog_version SET version = version + 1; END;
    CREATE TRIGGER mappers_deleted AFTER DELETE ON mappers
        BEGIN UPDATE catalog_version SET version = version + 1; END;
    CREATE TRIGGER mapper_versions_inserted AFTER INSERT ON mapper_versions
        BEGIN UPDATE catalog_version SET version = version + 1; END;
    CREATE TRIGGER mapper_versions_updated AFTER UPDATE ON mapper_versions
        BEGIN UPDATE catalog_version SET version = version + 1; END;
    CREATE TRIGGER mapper_versions_deleted AFTER DELETE ON mapper_versions
        BEGIN UPDATE catalog_version SET version = version + 1; END;

    CREATE TABLE leases (
        name TEXT PRIMARY KEY NOT NULL,
        holder TEXT NOT NULL,
        expires_at INTEGER NOT NULL
    ) WITHOUT ROWID;
    ", // 3: connections' own keys, for `private_key_jwt`.
    "
    CREATE TABLE connection_keys (
        connection_id TEXT PRIMARY KEY NOT NULL,
        document TEXT NOT NULL
    ) WITHOUT ROWID;
    ",
    // 4: users' metadata; post-login Actions, their versions and the
    // trigger's ordered bindings (catalog tables: each change bumps the
    // catalog version).
    "
    ALTER TABLE users ADD COLUMN app_metadata TEXT NOT NULL DEFAULT '{}';
    ALTER TABLE users ADD COLUMN user_metadata TEXT NOT NULL DEFAULT '{}';

    -- The draft last: reading the catalog never reads the blob's pages.
    CREATE TABLE actions (
        id TEXT PRIMARY KEY NOT NULL,
        name TEXT NOT NULL UNIQUE,
        action TEXT NOT NULL,
        active_version INTEGER NOT NULL,
        draft BLOB
    );

    CREATE TABLE action_versions (
        action_id TEXT NOT NULL REFERENCES actions (id) ON DELETE CASCADE,
        version INTEGER NOT NULL,
        sha256 TEXT NOT NULL,
        size INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        created_by TEXT NOT NULL,
        bytes BLOB NOT NULL,
        PRIMARY KEY (action_id, version)
    );

    CREATE TABLE action_bindings (
        trigger_id TEXT NOT NULL,
        position INTEGER NOT NULL,
        action_id TEXT NOT NULL REFERENCES actions (id) ON DELETE CASCADE,
        PRIMARY KEY (trigger_id, position)
    ) WITHOUT ROWID;

    CREATE TRIGGER actions_inserted AFTER INSERT ON actions
        BEGIN UPDATE catalog_version SET version = version + 1; END;
    CREATE TRIGGER actions_updated AFTER UPDATE ON actions
        BEGIN UPDATE catalog_version SET version = version + 1; END;
    CREATE TRIGGER actions_deleted AFTER DELETE ON actions
        BEGIN UPDATE catalog_version SET version = version + 1; END;
    CREATE TRIGGER action_versions_inserted AFTER INSERT ON action_versions
        BEGIN UPDATE catalog_version SET version = version + 1; END;
    CREATE TRIGGER action_versions_deleted AFTER DELETE ON action_versions
        BEGIN UPDATE catalog_version SET version = version + 1; END;
    CREATE TRIGGER action_bindings_inserted AFTER INSERT ON action_bindings
        BEGIN UPDATE catalog_version SET version = version + 1; END;
    CREATE TRIGGER action_bindings_deleted AFTER DELETE ON action_bindings
        BEGIN UPDATE catalog_version SET version = version + 1; END;
    ",
    // 5: log events (#14): the whole event as JSON, searched by its
    // columns; listed by date (newest first) and swept by date.
    "
    CREATE TABLE log_events (
        log_id TEXT PRIMARY KEY NOT NULL,
        date INTEGER NOT NULL,
        type TEXT NOT NULL,
        user_id TEXT,
        connection TEXT,
        body TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX log_events_by_date ON log_events (date);
    CREATE INDEX log_events_by_user ON log_events (user_id, log_id);
    ",
    // 6: sessions, refresh tokens and their families, APIs (issue #11).
    sessions::MIGRATION,
    // 7: the login page's branding (issue #16 §4).
    branding::MIGRATION,
    // 8: the provider's tokens per identity (issue #12 §7), sealed.
    idp_tokens::MIGRATION,
    // 9: legacy Rules, a catalog table (each change bumps the catalog version).
    "
    CREATE TABLE rules (
        id TEXT PRIMARY KEY NOT NULL,
        name TEXT NOT NULL UNIQUE,
        rule TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE TRIGGER rules_inserted AFTER INSERT ON rules
        BEGIN UPDATE catalog_version SET version = version + 1; END;
    CREATE TRIGGER rules_updated AFTER UPDATE ON rules
        BEGIN UPDATE catalog_version SET version = version + 1; END;
    CREATE TRIGGER rules_deleted AFTER DELETE ON rules
        BEGIN UPDATE catalog_version SET version = version + 1; END;
    ",
    // 10: users' identities (issue #12 §6).
    identities::MIGRATION,
];

/// The trigger the bindings of [`Store::post_login_bindings`] are kept under.
const POST_LOGIN: &str = "post-login";

/// Statements for one short-lived table (they differ only in its name).
#[derive(Clone, Copy)]
struct Expiring {
    table: &'static str,
    put: &'static str,
    take: &'static str,
    get: &'static str,
    sweep: &'static str,
}

macro_rules! expiring {
    ($table:literal) => {
        Expiring {
            table: $table,
            put: concat!(
                "INSERT OR REPLACE INTO ",
                $table,
                " (key_hash, expires_at, payload) VALUES (?1, ?2, ?3)"
            ),
            take: concat!(
                "DELETE FROM ",
                $table,
                " WHERE key_hash = ?1 RETURNING expires_at, payload"
            ),
            get: concat!(
                "SELECT expires_at, payload FROM ",
                $table,
                " WHERE key_hash = ?1 AND expires_at > ?2"
            ),
            sweep: concat!("DELETE FROM ", $table, " WHERE expires_at <= ?1"),
        }
    };
}

const TRANSACTIONS: Expiring = expiring!("login_transactions");

/// Inserts a transaction while fewer than `?5` are live at `?4`: the count
/// and the insert are one statement, so concurrent logins cannot overshoot.
/// The count walks the expiry index over live rows only.
const PUT_TRANSACTION_BOUNDED: &str =
    "INSERT OR REPLACE INTO login_transactions (key_hash, expires_at, payload)
     SELECT ?1, ?2, ?3
     WHERE (SELECT COUNT(*) FROM login_transactions WHERE expires_at > ?4) < ?5";

/// Takes a live transaction only if its browser binding (the hex SHA-256
/// kept in the payload as `browser_binding`) is `?3`.
const TAKE_BOUND_TRANSACTION: &str = "DELETE FROM login_transactions
     WHERE key_hash = ?1 AND expires_at > ?2
       AND json_extract(payload, '$.browser_binding') = ?3
     RETURNING expires_at, payload";

/// Whether a live transaction is stored under `?1`.
const LIVE_TRANSACTION: &str =
    "SELECT 1 FROM login_transactions WHERE key_hash = ?1 AND expires_at > ?2";
const CODES: Expiring = expiring!("authorization_codes");
const TOKENS: Expiring = expiring!("access_tokens");

/// Everything in one SQLite file (or in memory, for tests): see the module
/// documentation for the schema.
pub struct SqliteStore {
    /// Jobs for the store's thread; `None` once dropping.
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// One call: runs on the store's thread with its connection.
enum Job {
    /// Runs alone (it may open its own transaction) and answers itself.
    Alone(Box<dyn FnOnce(&mut Connection) + Send>),
    /// Plain statements, no transaction of their own: may share one with
    /// the plain jobs queued beside it (module documentation, "Group
    /// commit").
    Plain(PlainJob),
}

/// A plain job: runs its statements and returns how to answer its caller
/// once its group's commit is known.
type PlainJob = Box<dyn FnOnce(&Connection) -> Answer + Send>;
/// Answers a plain job's caller: its own result, or the commit's error.
type Answer = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

/// Most plain jobs in one group commit: bounds how long the group holds
/// the write lock (other processes on the file wait for it) and how many
/// callers one failed commit fails. A login makes ~5 plain calls, so this
/// is a dozen logins' worth.
const GROUP_MAX: usize = 64;

impl SqliteStore {
    /// The schema version this code writes (the number of migrations it
    /// knows); a database at a higher one is refused.
    pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

    /// Opens the database at `path`, creating it (readable by its owner
    /// only) if it does not exist, and brings its schema up to date.
    /// Refuses a database whose schema is newer than this code's.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with_migrations(path, MIGRATIONS)
    }

    /// [`SqliteStore::open`] with other migrations: for tests of the
    /// migration path (a database left at an older schema).
    #[doc(hidden)]
    pub fn open_with_migrations(path: &Path, migrations: &[&str]) -> Result<Self, StoreError> {
        create_owner_only(path)?;
        let mut conn = Connection::open(path)
            .map_err(|e| StoreError::Backend(format!("opening {}: {e}", path.display())))?;
        configure(&conn, true)
            .and_then(|()| migrate(&mut conn, migrations))
            .map_err(|e| in_file(e, path))?;
        Self::start(conn)
    }

    /// A private database in memory, gone when the store is dropped: for
    /// tests.
    pub fn open_in_memory() -> Result<Self, StoreError> {
        let mut conn = Connection::open_in_memory().map_err(backend("opening in memory"))?;
        configure(&conn, false)?;
        migrate(&mut conn, MIGRATIONS)?;
        Self::start(conn)
    }

    /// The schema version of the open database (`PRAGMA user_version`).
    pub fn schema_version(&self) -> Result<u32, StoreError> {
        self.call_blocking(|conn| {
            conn.pragma_query_value(None, "user_version", |row| row.get(0))
                .map_err(backend("reading the schema version"))
        })
    }

    /// Moves `conn` to a thread of its own, which runs jobs until the store
    /// is dropped.
    fn start(mut conn: Connection) -> Result<Self, StoreError> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let thread = std::thread::Builder::new()
            .name("waypass-sqlite".into())
            .spawn(move || run_jobs(&mut conn, &queue))
            .map_err(|e| {
                StoreError::Backend(format!("sqlite: starting the store's thread: {e}"))
            })?;
        Ok(Self {
            jobs: Some(jobs),
            thread: Some(thread),
        })
    }

    fn send(&self, job: Job) -> Result<(), StoreError> {
        self.jobs
            .as_ref()
            .and_then(|jobs| jobs.send(job).ok())
            .ok_or_else(stopped)
    }

    /// Runs `f` on the store's thread and awaits its result: the async
    /// worker is free meanwhile.
    async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.send(Job::Alone(Box::new(move |conn| {
            let _ = reply.send(f(conn));
        })))?;
        answer.await.map_err(|_| stopped())?
    }

    /// [`SqliteStore::call`] for plain statements that open no
    /// transaction: `f` may run in a group commit, and its result is
    /// returned once that commit is done.
    async fn call_plain<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.send(Job::Plain(Box::new(move |conn| {
            let result = f(conn);
            Box::new(move |committed: Result<(), StoreError>| {
                let _ = reply.send(committed.and(result));
            })
        })))?;
        answer.await.map_err(|_| stopped())?
    }

    /// Runs `f` on the store's thread and blocks until it is done: for the
    /// synchronous methods (and tests), never on an async worker's path.
    fn call_blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (reply, answer) = mpsc::sync_channel(1);
        self.send(Job::Alone(Box::new(move |conn| {
            let _ = reply.send(f(conn));
        })))?;
        answer.recv().map_err(|_| stopped())?
    }

    /// Runs one statement (cached) on the store's thread and returns how
    /// many rows it changed.
    async fn execute<P>(
        &self,
        sql: &'static str,
        params: P,
        what: &'static str,
    ) -> Result<usize, StoreError>
    where
        P: rusqlite::Params + Send + 'static,
    {
        self.call_plain(move |conn| execute(conn, sql, params, what))
            .await
    }

    async fn put_expiring(
        &self,
        table: Expiring,
        key: SecretHash,
        expires_at: u64,
        payload: &impl Serialize,
    ) -> Result<(), StoreError> {
        let payload = to_json(payload, table.table)?;
        let key = *key.as_bytes();
        self.execute(table.put, (key, expires_at, payload), table.table)
            .await?;
        Ok(())
    }

    /// Runs `sql` (a take or a get) for `key` and reads `(expires_at,
    /// payload)`; `check_now` drops a row expired at `now`.
    async fn read_expiring<T: for<'de> Deserialize<'de>>(
        &self,
        table: Expiring,
        sql: &'static str,
        key: SecretHash,
        now: Option<u64>,
        check_now: u64,
    ) -> Result<Option<(u64, T)>, StoreError> {
        let key = *key.as_bytes();
        let row = self
            .call_plain(move |conn| expiring_row(conn, table, sql, &key, now))
            .await?;
        match row {
            Some((expires_at, payload)) if expires_at > check_now => {
                Ok(Some((expires_at, from_json(&payload, table.table)?)))
            }
            _ => Ok(None),
        }
    }
}

/// The `(expires_at, payload)` row `sql` (a take or a get of `table`)
/// returns for `key`, with `now` bound as `?2` when given.
fn expiring_row(
    conn: &Connection,
    table: Expiring,
    sql: &str,
    key: &[u8; 32],
    now: Option<u64>,
) -> Result<Option<(u64, String)>, StoreError> {
    let mut statement = conn.prepare_cached(sql).map_err(backend(table.table))?;
    let read =
        |r: &rusqlite::Row<'_>| -> rusqlite::Result<(u64, String)> { Ok((r.get(0)?, r.get(1)?)) };
    match now {
        Some(now) => statement.query_row(params![key, now], read),
        None => statement.query_row(params![key], read),
    }
    .optional()
    .map_err(backend(table.table))
}

impl Drop for SqliteStore {
    /// Waits for the thread to finish its jobs and close the connection
    /// (which checkpoints the WAL into the file), so a store dropped is a
    /// file closed.
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn stopped() -> StoreError {
    StoreError::Backend("sqlite: the store's thread has stopped".into())
}

/// Runs one statement (cached) and returns how many rows it changed.
fn execute(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    what: &'static str,
) -> Result<usize, StoreError> {
    conn.prepare_cached(sql)
        .and_then(|mut s| s.execute(params))
        .map_err(backend(what))
}

/// Reads `(connection id, spec JSON)` rows into stored connections.
fn read_connections(conn: &Connection) -> Result<Vec<StoredConnection>, StoreError> {
    let rows: Vec<(String, String)> = conn
        .prepare_cached("SELECT id, spec FROM connections ORDER BY id")
        .and_then(|mut s| s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
        .map_err(backend("listing connections"))?;
    rows.into_iter()
        .map(|(id, spec)| {
            Ok(StoredConnection {
                spec: from_json(&spec, "connections")?,
                id,
            })
        })
        .collect()
}

fn read_clients(conn: &Connection) -> Result<Vec<StoredClient>, StoreError> {
    let rows: Vec<String> = conn
        .prepare_cached("SELECT client FROM clients ORDER BY client_id")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .map_err(backend("listing clients"))?;
    rows.iter().map(|json| from_json(json, "clients")).collect()
}

fn read_mappers(conn: &Connection) -> Result<Vec<MapperEntry>, StoreError> {
    conn.prepare_cached("SELECT name, active_version FROM mappers ORDER BY name")
        .and_then(|mut s| {
            s.query_map([], |r| {
                Ok(MapperEntry {
                    name: r.get(0)?,
                    active_version: r.get(1)?,
                })
            })?
            .collect()
        })
        .map_err(backend("listing mappers"))
}

/// The columns [`read_version`] reads, in its order.
macro_rules! version_columns {
    () => {
        "name, version, sha256, size, created_at, created_by"
    };
}

fn read_version(r: &rusqlite::Row<'_>) -> rusqlite::Result<MapperVersion> {
    Ok(MapperVersion {
        name: r.get(0)?,
        version: r.get(1)?,
        sha256: r.get(2)?,
        size: r.get(3)?,
        created_at: r.get(4)?,
        created_by: r.get(5)?,
    })
}

fn read_actions(conn: &Connection) -> Result<Vec<ActionEntry>, StoreError> {
    let rows: Vec<(String, u32)> = conn
        .prepare_cached("SELECT action, active_version FROM actions ORDER BY id")
        .and_then(|mut s| s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
        .map_err(backend("listing actions"))?;
    rows.into_iter()
        .map(|(json, active_version)| {
            Ok(ActionEntry {
                action: from_json(&json, "actions")?,
                active_version,
            })
        })
        .collect()
}

/// The columns [`read_action_version`] reads, in its order.
macro_rules! action_version_columns {
    () => {
        "action_id, version, sha256, size, created_at, created_by"
    };
}

fn read_action_version(r: &rusqlite::Row<'_>) -> rusqlite::Result<ActionVersion> {
    Ok(ActionVersion {
        action_id: r.get(0)?,
        version: r.get(1)?,
        sha256: r.get(2)?,
        size: r.get(3)?,
        created_at: r.get(4)?,
        created_by: r.get(5)?,
    })
}

fn read_bindings(conn: &Connection) -> Result<Vec<String>, StoreError> {
    conn.prepare_cached(
        "SELECT action_id FROM action_bindings WHERE trigger_id = ?1 ORDER BY position",
    )
    .and_then(|mut s| s.query_map(params![POST_LOGIN], |r| r.get(0))?.collect())
    .map_err(backend("listing bindings"))
}

/// Replaces the post-login bindings with `ids`, in order (the caller
/// holds a transaction).
fn write_bindings(conn: &Connection, ids: &[String]) -> Result<(), StoreError> {
    const WHAT: &str = "writing bindings";
    conn.execute(
        "DELETE FROM action_bindings WHERE trigger_id = ?1",
        params![POST_LOGIN],
    )
    .map_err(backend(WHAT))?;
    for (position, id) in ids.iter().enumerate() {
        conn.execute(
            "INSERT INTO action_bindings (trigger_id, position, action_id) VALUES (?1, ?2, ?3)",
            params![POST_LOGIN, position as i64, id],
        )
        .map_err(backend(WHAT))?;
    }
    Ok(())
}

fn read_catalog_version(conn: &Connection) -> Result<u64, StoreError> {
    conn.prepare_cached("SELECT version FROM catalog_version WHERE id = 1")
        .and_then(|mut s| s.query_row([], |r| r.get(0)))
        .map_err(backend("reading the catalog version"))
}

/// Creates `path` with mode 0600 unless it exists; SQLite then opens it as
/// an empty database.
fn create_owner_only(path: &Path) -> Result<(), StoreError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(StoreError::Backend(format!(
            "creating {}: {e}",
            path.display()
        ))),
    }
}

/// The store's thread: runs jobs until the store is dropped, plain jobs
/// queued together in one group commit.
fn run_jobs(conn: &mut Connection, queue: &mpsc::Receiver<Job>) {
    let mut next = None;
    loop {
        let job = match next.take() {
            Some(job) => job,
            None => match queue.recv() {
                Ok(job) => job,
                Err(_) => return,
            },
        };
        match job {
            // A job that panics drops its reply (the caller gets an
            // error) and rolls back its open transaction; the thread goes
            // on with the next.
            Job::Alone(f) => {
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(conn)));
            }
            Job::Plain(first) => {
                let mut group = vec![first];
                while group.len() < GROUP_MAX {
                    match queue.try_recv() {
                        Ok(Job::Plain(f)) => group.push(f),
                        Ok(alone) => {
                            next = Some(alone);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                run_group(conn, group);
            }
        }
    }
}

/// Runs plain jobs: one alone in autocommit, several in one transaction,
/// each answered once it is committed.
fn run_group(conn: &Connection, group: Vec<PlainJob>) {
    let run =
        |job: PlainJob| std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(conn))).ok();
    let grouped = group.len() > 1 && conn.execute_batch("BEGIN IMMEDIATE").is_ok();
    if !grouped {
        // One job, or no write lock within the busy timeout: each in
        // autocommit, as without group commit.
        for answer in group.into_iter().filter_map(run) {
            answer(Ok(()));
        }
        return;
    }
    let answers: Vec<Answer> = group.into_iter().filter_map(run).collect();
    // SQLite rolls a transaction back by itself on some errors (a full
    // disk, an I/O error): then no job of the group can be said written.
    let committed = if conn.is_autocommit() {
        Err(StoreError::Backend(
            "sqlite: a group commit was rolled back".into(),
        ))
    } else {
        conn.execute_batch("COMMIT").map_err(|e| {
            let _ = conn.execute_batch("ROLLBACK");
            backend("committing a group")(e)
        })
    };
    for answer in answers {
        answer(committed.clone());
    }
}

/// Per-connection settings. WAL lets readers run beside the writer;
/// `synchronous = NORMAL` in WAL mode may lose the last commits on power
/// loss but never corrupts, which suits state that is mostly seconds-lived;
/// foreign keys tie mapper versions to their mapper.
fn configure(conn: &Connection, file: bool) -> Result<(), StoreError> {
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(backend("setting the busy timeout"))?;
    if file {
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .map_err(backend("switching to WAL"))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Backend(format!(
                "the journal mode stayed `{mode}`: WAL is needed"
            )));
        }
    }
    conn.pragma_update(None, "synchronous", "NORMAL")
        .and_then(|()| conn.pragma_update(None, "foreign_keys", "ON"))
        .map_err(backend("setting pragmas"))
}

/// Applies the migrations the database has not run, in one transaction
/// (all or none), and records the new version. An immediate transaction, so
/// two processes opening one new file do not both migrate it.
fn migrate(conn: &mut Connection, migrations: &[&str]) -> Result<(), StoreError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(backend("starting the schema migration"))?;
    let current: i64 = tx
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(backend("reading the schema version"))?;
    let known = migrations.len();
    let current = usize::try_from(current)
        .map_err(|_| StoreError::Backend(format!("schema version {current} is not ours")))?;
    if current > known {
        return Err(StoreError::Backend(format!(
            "the database's schema version is {current}, newer than this Waypass knows \
             ({known}): it was written by a newer Waypass; run that, or use another database"
        )));
    }
    for (done, sql) in migrations.iter().enumerate().skip(current) {
        let version = done + 1;
        tx.execute_batch(sql)
            .and_then(|()| tx.pragma_update(None, "user_version", version as i64))
            .map_err(|e| StoreError::Backend(format!("schema migration {version}: {e}")))?;
    }
    tx.commit()
        .map_err(backend("committing the schema migration"))
}

/// Names the file in an error from opening it.
fn in_file(e: StoreError, path: &Path) -> StoreError {
    match e {
        StoreError::Backend(m) => StoreError::Backend(format!("{}: {m}", path.display())),
        other => other,
    }
}

/// Maps a SQLite error to [`StoreError::Backend`], saying what we were doing.
fn backend(context: &'static str) -> impl Fn(rusqlite::Error) -> StoreError {
    move |e| StoreError::Backend(format!("sqlite: {context}: {e}"))
}

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    e.sqlite_error()
        .is_some_and(|e| e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE)
}

/// A `users` row before its profile is parsed.
struct UserRow {
    user_id: String,
    connection: String,
    profile: String,
    created_at: u64,
    last_login: u64,
    logins_count: u64,
    app_metadata: String,
    user_metadata: String,
}

/// The columns [`UserRow::read`] reads, in its order (a macro, so that
/// statements using it are constants).
macro_rules! user_columns {
    () => {
        "user_id, connection, profile, created_at, last_login, logins_count, app_metadata, user_metadata"
    };
}

/// The row of the user `user_id`, if there is one.
fn read_user(conn: &Connection, user_id: &str) -> Result<Option<UserRow>, StoreError> {
    const GET_USER: &str = concat!("SELECT ", user_columns!(), " FROM users WHERE user_id = ?1");
    conn.prepare_cached(GET_USER)
        .and_then(|mut s| s.query_row(params![user_id], UserRow::read).optional())
        .map_err(backend("reading a user"))
}

// After `user_columns!`, which it uses.
mod identities;

impl UserRow {
    fn read(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            user_id: row.get(0)?,
            connection: row.get(1)?,
            profile: row.get(2)?,
            created_at: row.get(3)?,
            last_login: row.get(4)?,
            logins_count: row.get(5)?,
            app_metadata: row.get(6)?,
            user_metadata: row.get(7)?,
        })
    }

    fn into_user(self) -> Result<User, StoreError> {
        Ok(User {
            profile: from_json(&self.profile, "users")?,
            app_metadata: from_json(&self.app_metadata, "users")?,
            user_metadata: from_json(&self.user_metadata, "users")?,
            user_id: self.user_id,
            connection: self.connection,
            created_at: self.created_at,
            last_login: self.last_login,
            logins_count: self.logins_count,
        })
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn put_transaction(
        &self,
        state: SecretHash,
        tx: LoginTransaction,
        now: u64,
        max_live: usize,
    ) -> Result<PutTransaction, StoreError> {
        let payload = to_json(&StoredTransaction::new(&tx), TRANSACTIONS.table)?;
        let max_live = i64::try_from(max_live).unwrap_or(i64::MAX);
        let key = *state.as_bytes();
        let inserted = self
            .execute(
                PUT_TRANSACTION_BOUNDED,
                (key, tx.expires_at, payload, now, max_live),
                TRANSACTIONS.table,
            )
            .await?;
        Ok(if inserted == 0 {
            PutTransaction::Full
        } else {
            PutTransaction::Stored
        })
    }

    async fn take_transaction(
        &self,
        state: SecretHash,
        binding: Option<SecretHash>,
        now: u64,
    ) -> Result<TakeTransaction, StoreError> {
        let key = *state.as_bytes();
        let binding = binding.map(SecretHash::to_hex);
        // `Ok(payload)` when taken, `Err(live)` when not.
        let found: Result<(u64, String), bool> = self
            .call_plain(move |conn| {
                let taken: Option<(u64, String)> = match binding {
                    Some(binding) => conn
                        .prepare_cached(TAKE_BOUND_TRANSACTION)
                        .and_then(|mut s| {
                            s.query_row(params![key, now, binding], |r| Ok((r.get(0)?, r.get(1)?)))
                                .optional()
                        })
                        .map_err(backend(TRANSACTIONS.table))?,
                    None => None,
                };
                if let Some(taken) = taken {
                    return Ok(Ok(taken));
                }
                // Nothing taken: say whether a live login is there for
                // another browser.
                let live = conn
                    .prepare_cached(LIVE_TRANSACTION)
                    .and_then(|mut s| s.exists(params![key, now]))
                    .map_err(backend(TRANSACTIONS.table))?;
                Ok(Err(live))
            })
            .await?;
        Ok(match found {
            Ok((expires_at, payload)) => {
                let tx: StoredTransaction = from_json(&payload, TRANSACTIONS.table)?;
                TakeTransaction::Taken(Box::new(tx.into_transaction(expires_at)))
            }
            Err(true) => TakeTransaction::WrongBrowser,
            Err(false) => TakeTransaction::Absent,
        })
    }

    async fn put_code(
        &self,
        code: SecretHash,
        grant: AuthorizationGrant,
    ) -> Result<(), StoreError> {
        self.put_expiring(CODES, code, grant.expires_at, &grant)
            .await
    }

    async fn take_code(
        &self,
        code: SecretHash,
        now: u64,
    ) -> Result<Option<AuthorizationGrant>, StoreError> {
        Ok(self
            .read_expiring::<AuthorizationGrant>(CODES, CODES.take, code, None, now)
            .await?
            .map(|(expires_at, grant)| AuthorizationGrant {
                expires_at,
                ..grant
            }))
    }

    async fn take_code_with_user(
        &self,
        code: SecretHash,
        now: u64,
    ) -> Result<Option<(AuthorizationGrant, Option<User>)>, StoreError> {
        let key = *code.as_bytes();
        let taken = self
            .call_plain(move |conn| {
                // Taken whether live or not, as `take_code` does.
                let row = expiring_row(conn, CODES, CODES.take, &key, None)?;
                let Some((expires_at, payload)) = row.filter(|(e, _)| *e > now) else {
                    return Ok(None);
                };
                let grant: AuthorizationGrant = from_json(&payload, CODES.table)?;
                let user = read_user(conn, &grant.user_id)?;
                Ok(Some((
                    AuthorizationGrant {
                        expires_at,
                        ..grant
                    },
                    user,
                )))
            })
            .await?;
        let Some((grant, user)) = taken else {
            return Ok(None);
        };
        Ok(Some((grant, user.map(UserRow::into_user).transpose()?)))
    }

    async fn put_access_token(
        &self,
        token: SecretHash,
        grant: AccessGrant,
    ) -> Result<(), StoreError> {
        self.put_expiring(TOKENS, token, grant.expires_at, &grant)
            .await
    }

    async fn sweep_expired(&self, now: u64) -> Result<Swept, StoreError> {
        self.call(move |conn| {
            let sweep = |table: Expiring| -> Result<u64, StoreError> {
                Ok(execute(conn, table.sweep, params![now], table.table)? as u64)
            };
            Ok(Swept {
                transactions: sweep(TRANSACTIONS)?,
                codes: sweep(CODES)?,
                tokens: sweep(TOKENS)?,
            })
        })
        .await
    }

    async fn get_access_token(
        &self,
        token: SecretHash,
        now: u64,
    ) -> Result<Option<AccessGrant>, StoreError> {
        Ok(self
            .read_expiring::<AccessGrant>(TOKENS, TOKENS.get, token, Some(now), now)
            .await?
            .map(|(expires_at, grant)| AccessGrant {
                expires_at,
                ..grant
            }))
    }

    async fn delete_access_tokens_of_client(&self, client_id: &str) -> Result<u64, StoreError> {
        // The client id lives in the JSON payload (the table has no column
        // for it): a scan, fine for an API call that rotates or deletes.
        let deleted = self
            .execute(
                "DELETE FROM access_tokens WHERE json_extract(payload, '$.client_id') = ?1",
                (client_id.to_owned(),),
                "revoking a client's access tokens",
            )
            .await?;
        Ok(deleted as u64)
    }

    async fn record_login(
        &self,
        user_id: &str,
        connection: &str,
        profile: Profile,
        now: u64,
    ) -> Result<User, StoreError> {
        let (id, conn_name) = (user_id.to_owned(), connection.to_owned());
        self.call(move |conn| identities::record_login(conn, &id, &conn_name, &profile, now))
            .await
    }

    async fn record_identity_login(
        &self,
        login: &IdentityLogin,
        now: u64,
    ) -> Result<IdentityOutcome, StoreError> {
        let login = login.clone();
        self.call(move |conn| identities::record_identity_login(conn, &login, None, now))
            .await
    }

    async fn record_identity_login_with_tokens(
        &self,
        login: &IdentityLogin,
        tokens: &IdpTokens,
        now: u64,
    ) -> Result<IdentityOutcome, StoreError> {
        let (login, tokens) = (login.clone(), tokens.clone());
        self.call(move |conn| identities::record_identity_login(conn, &login, Some(&tokens), now))
            .await
    }

    async fn put_session_and_code(
        &self,
        session_key: SecretHash,
        session: &Session,
        code: SecretHash,
        grant: AuthorizationGrant,
    ) -> Result<(), StoreError> {
        let payload = to_json(&grant, CODES.table)?;
        let (key, expires_at) = (*code.as_bytes(), grant.expires_at);
        self.put_session_with(session_key, session, move |tx| {
            execute(
                tx,
                CODES.put,
                params![key, expires_at, payload],
                CODES.table,
            )
            .map(drop)
        })
        .await
    }

    async fn identities(&self, user_ids: &[String]) -> Result<Vec<StoredIdentity>, StoreError> {
        let ids = user_ids.to_vec();
        self.call(move |conn| identities::identities_of(conn, &ids))
            .await
    }

    async fn unlink_identity(
        &self,
        user_id: &str,
        connection: &str,
        provider_user_id: &str,
        new_user_id: &str,
        now: u64,
    ) -> Result<Unlinked, StoreError> {
        let owned = [user_id, connection, provider_user_id, new_user_id].map(str::to_owned);
        self.call(move |conn| {
            let [user_id, connection, provider_user_id, new_user_id] = &owned;
            identities::unlink_identity(
                conn,
                user_id,
                (connection, provider_user_id),
                new_user_id,
                now,
            )
        })
        .await
    }

    async fn get_user(&self, user_id: &str) -> Result<Option<User>, StoreError> {
        let user_id = user_id.to_owned();
        self.call_plain(move |conn| read_user(conn, &user_id))
            .await?
            .map(UserRow::into_user)
            .transpose()
    }

    async fn list_users(
        &self,
        offset: usize,
        limit: usize,
        email: Option<&str>,
    ) -> Result<Vec<User>, StoreError> {
        let needle = email.map(str::to_lowercase);
        // SQLite's LIMIT and OFFSET are signed 64-bit; beyond that is "all".
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let offset = i64::try_from(offset).unwrap_or(i64::MAX);
        const LIST_USERS: &str = concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE ?1 IS NULL OR instr(email_lower, ?1) > 0
              ORDER BY user_id LIMIT ?2 OFFSET ?3"
        );
        let rows = self
            .call(move |conn| {
                conn.prepare_cached(LIST_USERS)
                    .and_then(|mut s| {
                        s.query_map(params![needle, limit, offset], UserRow::read)?
                            .collect::<Result<Vec<_>, _>>()
                    })
                    .map_err(backend("listing users"))
            })
            .await?;
        rows.into_iter().map(UserRow::into_user).collect()
    }

    async fn count_users(&self, email: Option<&str>) -> Result<usize, StoreError> {
        let needle = email.map(str::to_lowercase);
        let count: i64 = self
            .call(move |conn| {
                conn.prepare_cached(
                    "SELECT COUNT(*) FROM users WHERE ?1 IS NULL OR instr(email_lower, ?1) > 0",
                )
                .and_then(|mut s| s.query_row(params![needle], |row| row.get(0)))
                .map_err(backend("counting users"))
            })
            .await?;
        Ok(usize::try_from(count).unwrap_or(0))
    }

    async fn delete_user(&self, user_id: &str) -> Result<bool, StoreError> {
        let deleted = self
            .execute(
                "DELETE FROM users WHERE user_id = ?1",
                (user_id.to_owned(),),
                "deleting a user",
            )
            .await?;
        Ok(deleted > 0)
    }

    async fn merge_user_metadata(
        &self,
        user_id: &str,
        app: &Metadata,
        user: &Metadata,
    ) -> Result<Option<User>, StoreError> {
        const WHAT: &str = "merging a user's metadata";
        const GET_USER: &str =
            concat!("SELECT ", user_columns!(), " FROM users WHERE user_id = ?1");
        let (user_id, app, user) = (user_id.to_owned(), app.clone(), user.clone());
        self.call(move |conn| {
            // Immediate: the write lock before the read, so a merge from
            // another process cannot slip between them and be lost.
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend(WHAT))?;
            let Some(row) = tx
                .prepare_cached(GET_USER)
                .and_then(|mut s| s.query_row(params![user_id], UserRow::read).optional())
                .map_err(backend(WHAT))?
            else {
                return Ok(None);
            };
            let mut stored = row.into_user()?;
            merge_metadata(&mut stored.app_metadata, &app);
            merge_metadata(&mut stored.user_metadata, &user);
            let app_json = to_json(&stored.app_metadata, "app_metadata")?;
            let user_json = to_json(&stored.user_metadata, "user_metadata")?;
            tx.execute(
                "UPDATE users SET app_metadata = ?2, user_metadata = ?3 WHERE user_id = ?1",
                params![user_id, app_json, user_json],
            )
            .and_then(|_| tx.commit())
            .map_err(backend(WHAT))?;
            Ok(Some(stored))
        })
        .await
    }

    async fn catalog_version(&self) -> Result<u64, StoreError> {
        self.call(|conn| read_catalog_version(conn)).await
    }

    async fn catalog(&self) -> Result<StoredCatalog, StoreError> {
        self.call(|conn| {
            // One read transaction: every table as of one moment.
            let tx = conn.transaction().map_err(backend("reading the catalog"))?;
            let catalog = StoredCatalog {
                version: read_catalog_version(&tx)?,
                clients: read_clients(&tx)?,
                connections: read_connections(&tx)?,
                mappers: read_mappers(&tx)?,
                versions: tx
                    .prepare_cached(concat!(
                        "SELECT ",
                        version_columns!(),
                        " FROM mapper_versions ORDER BY name, version"
                    ))
                    .and_then(|mut s| s.query_map([], read_version)?.collect())
                    .map_err(backend("listing mapper versions"))?,
                actions: read_actions(&tx)?,
                action_versions: tx
                    .prepare_cached(concat!(
                        "SELECT ",
                        action_version_columns!(),
                        " FROM action_versions ORDER BY action_id, version"
                    ))
                    .and_then(|mut s| s.query_map([], read_action_version)?.collect())
                    .map_err(backend("listing action versions"))?,
                post_login_bindings: read_bindings(&tx)?,
                resource_servers: sessions::read_resource_servers(&tx)?,
                branding: branding::read_branding(&tx)?,
            };
            tx.commit().map_err(backend("reading the catalog"))?;
            Ok(catalog)
        })
        .await
    }

    fn catalog_feed(&self) -> CatalogFeed {
        CatalogFeed {
            notified: None,
            poll_every: CATALOG_POLL_INTERVAL,
        }
    }

    async fn put_connection(&self, connection: &StoredConnection) -> Result<(), StoreError> {
        let spec = to_json(&connection.spec, "a connection")?;
        let (id, name) = (connection.id.clone(), connection.spec.name.clone());
        // An upsert on the id, not `INSERT OR REPLACE`: that would also
        // delete another connection holding the name, where we must refuse.
        self.call(move |conn| {
            let written = conn
                .prepare_cached(
                    "INSERT INTO connections (id, name, spec) VALUES (?1, ?2, ?3)
                     ON CONFLICT (id) DO UPDATE SET name = excluded.name, spec = excluded.spec",
                )
                .and_then(|mut s| s.execute(params![id, name, spec]));
            match written {
                Ok(_) => Ok(()),
                Err(e) if is_unique_violation(&e) => {
                    Err(StoreError::Conflict(format!("connection `{name}`")))
                }
                Err(e) => Err(backend("writing a connection")(e)),
            }
        })
        .await
    }

    async fn connections(&self) -> Result<Vec<StoredConnection>, StoreError> {
        self.call(|conn| read_connections(conn)).await
    }

    async fn delete_connection(&self, id: &str) -> Result<bool, StoreError> {
        let deleted = self
            .execute(
                "DELETE FROM connections WHERE id = ?1",
                (id.to_owned(),),
                "deleting a connection",
            )
            .await?;
        Ok(deleted > 0)
    }

    async fn put_client(&self, client: &StoredClient) -> Result<(), StoreError> {
        let json = to_json(client, "a client")?;
        self.execute(
            "INSERT INTO clients (client_id, client) VALUES (?1, ?2)
                 ON CONFLICT (client_id) DO UPDATE SET client = excluded.client",
            (client.client_id.clone(), json),
            "writing a client",
        )
        .await?;
        Ok(())
    }

    async fn clients(&self) -> Result<Vec<StoredClient>, StoreError> {
        self.call(|conn| read_clients(conn)).await
    }

    async fn delete_client(&self, client_id: &str) -> Result<bool, StoreError> {
        let deleted = self
            .execute(
                "DELETE FROM clients WHERE client_id = ?1",
                (client_id.to_owned(),),
                "deleting a client",
            )
            .await?;
        Ok(deleted > 0)
    }

    async fn put_resource_server(&self, api: &StoredResourceServer) -> Result<(), StoreError> {
        let json = to_json(api, "a resource server")?;
        let (id, identifier) = (api.id.clone(), api.identifier.clone());
        self.call(move |conn| {
            let written = conn
                .prepare_cached(
                    "INSERT INTO resource_servers (id, identifier, resource_server) VALUES (?1, ?2, ?3)
                     ON CONFLICT (id) DO UPDATE SET identifier = excluded.identifier,
                         resource_server = excluded.resource_server",
                )
                .and_then(|mut s| s.execute(params![id, identifier, json]));
            match written {
                Ok(_) => Ok(()),
                Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict(format!(
                    "resource server `{identifier}`"
                ))),
                Err(e) => Err(backend("writing a resource server")(e)),
            }
        })
        .await
    }

    async fn resource_servers(&self) -> Result<Vec<StoredResourceServer>, StoreError> {
        self.call(|conn| sessions::read_resource_servers(conn))
            .await
    }

    async fn branding(&self) -> Result<StoredBranding, StoreError> {
        self.call(|conn| branding::read_branding(conn)).await
    }

    async fn put_branding_settings(&self, settings: &str) -> Result<(), StoreError> {
        let settings = settings.to_owned();
        self.call(move |conn| branding::put_settings(conn, &settings))
            .await
    }

    async fn put_universal_login_template(
        &self,
        template: Option<&str>,
    ) -> Result<bool, StoreError> {
        let template = template.map(str::to_owned);
        self.call(move |conn| branding::put_template(conn, template.as_deref()))
            .await
    }

    async fn delete_resource_server(&self, id: &str) -> Result<bool, StoreError> {
        let deleted = self
            .execute(
                "DELETE FROM resource_servers WHERE id = ?1",
                (id.to_owned(),),
                "deleting a resource server",
            )
            .await?;
        Ok(deleted > 0)
    }

    async fn add_mapper_version(
        &self,
        name: &str,
        bytes: &[u8],
        sha256: &str,
        created_by: &str,
        now: u64,
    ) -> Result<MapperVersion, StoreError> {
        let (name, bytes) = (name.to_owned(), bytes.to_vec());
        let (sha256, created_by) = (sha256.to_owned(), created_by.to_owned());
        self.call(move |conn| {
            // Immediate: the write lock from the start, so two processes
            // cannot both pick the same next version.
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend("adding a mapper version"))?;
            let last: i64 = tx
                .execute(
                    "INSERT INTO mappers (name, active_version) VALUES (?1, 0)
                     ON CONFLICT (name) DO NOTHING",
                    params![name],
                )
                .and_then(|_| {
                    tx.query_row(
                        "SELECT COALESCE(MAX(version), 0) FROM mapper_versions WHERE name = ?1",
                        params![name],
                        |r| r.get(0),
                    )
                })
                .map_err(backend("adding a mapper version"))?;
            let version = u32::try_from(last + 1).map_err(|_| {
                StoreError::Backend(format!("mapper `{name}` has run out of version numbers"))
            })?;
            tx.execute(
                "INSERT INTO mapper_versions (name, version, sha256, size, created_at, created_by, bytes)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![name, version, sha256, bytes.len() as u64, now, created_by, bytes],
            )
            .and_then(|_| {
                tx.execute(
                    "UPDATE mappers SET active_version = ?2 WHERE name = ?1",
                    params![name, version],
                )
            })
            .and_then(|_| tx.commit())
            .map_err(backend("adding a mapper version"))?;
            Ok(MapperVersion {
                size: bytes.len() as u64,
                name,
                version,
                sha256,
                created_at: now,
                created_by,
            })
        })
        .await
    }

    async fn mapper_versions(&self, name: &str) -> Result<Vec<MapperVersion>, StoreError> {
        let name = name.to_owned();
        self.call(move |conn| {
            conn.prepare_cached(concat!(
                "SELECT ",
                version_columns!(),
                " FROM mapper_versions WHERE name = ?1 ORDER BY version"
            ))
            .and_then(|mut s| s.query_map(params![name], read_version)?.collect())
            .map_err(backend("listing mapper versions"))
        })
        .await
    }

    async fn mapper_bytes(&self, name: &str, version: u32) -> Result<Option<Vec<u8>>, StoreError> {
        let name = name.to_owned();
        self.call(move |conn| {
            conn.prepare_cached(
                "SELECT bytes FROM mapper_versions WHERE name = ?1 AND version = ?2",
            )
            .and_then(|mut s| s.query_row(params![name, version], |r| r.get(0)).optional())
            .map_err(backend("reading a mapper"))
        })
        .await
    }

    async fn activate_mapper_version(&self, name: &str, version: u32) -> Result<bool, StoreError> {
        let updated = self
            .execute(
                "UPDATE mappers SET active_version = ?2 WHERE name = ?1 AND EXISTS
                     (SELECT 1 FROM mapper_versions WHERE name = ?1 AND version = ?2)",
                (name.to_owned(), version),
                "activating a mapper version",
            )
            .await?;
        Ok(updated > 0)
    }

    async fn mappers(&self) -> Result<Vec<MapperEntry>, StoreError> {
        self.call(|conn| read_mappers(conn)).await
    }

    async fn delete_mapper(&self, name: &str) -> Result<bool, StoreError> {
        let name = name.to_owned();
        self.call(move |conn| {
            // The versions explicitly too: the cascade is a second line,
            // not the only one.
            let tx = conn.transaction().map_err(backend("deleting a mapper"))?;
            let deleted = tx
                .execute("DELETE FROM mapper_versions WHERE name = ?1", params![name])
                .and_then(|_| tx.execute("DELETE FROM mappers WHERE name = ?1", params![name]))
                .map_err(backend("deleting a mapper"))?;
            tx.commit().map_err(backend("deleting a mapper"))?;
            Ok(deleted > 0)
        })
        .await
    }

    async fn put_action(
        &self,
        action: &StoredAction,
        draft: Option<&[u8]>,
    ) -> Result<(), StoreError> {
        let json = to_json(action, "an action")?;
        let (id, name) = (action.id.clone(), action.name.clone());
        let draft = draft.map(<[u8]>::to_vec);
        self.call(move |conn| {
            // An upsert on the id (not `INSERT OR REPLACE`, which would
            // delete another Action holding the name); the draft only when
            // one is given.
            let written = conn
                .prepare_cached(
                    "INSERT INTO actions (id, name, action, active_version, draft)
                     VALUES (?1, ?2, ?3, 0, ?4)
                     ON CONFLICT (id) DO UPDATE SET name = excluded.name,
                         action = excluded.action,
                         draft = COALESCE(excluded.draft, actions.draft)",
                )
                .and_then(|mut s| s.execute(params![id, name, json, draft]));
            match written {
                Ok(_) => Ok(()),
                Err(e) if is_unique_violation(&e) => {
                    Err(StoreError::Conflict(format!("action `{name}`")))
                }
                Err(e) => Err(backend("writing an action")(e)),
            }
        })
        .await
    }

    async fn put_rule(&self, rule: &StoredRule) -> Result<(), StoreError> {
        let json = to_json(rule, "a rule")?;
        let (id, name) = (rule.id.clone(), rule.name.clone());
        self.call(move |conn| {
            // An upsert on the id (not `INSERT OR REPLACE`, which would
            // delete another Rule holding the name).
            let written = conn
                .prepare_cached(
                    "INSERT INTO rules (id, name, rule) VALUES (?1, ?2, ?3)
                     ON CONFLICT (id) DO UPDATE SET name = excluded.name, rule = excluded.rule",
                )
                .and_then(|mut s| s.execute(params![id, name, json]));
            match written {
                Ok(_) => Ok(()),
                Err(e) if is_unique_violation(&e) => {
                    Err(StoreError::Conflict(format!("rule `{name}`")))
                }
                Err(e) => Err(backend("writing a rule")(e)),
            }
        })
        .await
    }

    async fn rules(&self) -> Result<Vec<StoredRule>, StoreError> {
        self.call(|conn| {
            let mut statement = conn
                .prepare_cached("SELECT rule FROM rules")
                .map_err(backend("listing rules"))?;
            let texts = statement
                .query_map([], |row| row.get::<_, String>(0))
                .and_then(Iterator::collect::<Result<Vec<_>, _>>)
                .map_err(backend("listing rules"))?;
            let mut rules = texts
                .iter()
                .map(|t| from_json(t, "rules"))
                .collect::<Result<Vec<StoredRule>, _>>()?;
            sort_rules(&mut rules);
            Ok(rules)
        })
        .await
    }

    async fn delete_rule(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_owned();
        self.call(move |conn| {
            conn.execute("DELETE FROM rules WHERE id = ?1", params![id])
                .map(|n| n > 0)
                .map_err(backend("deleting a rule"))
        })
        .await
    }

    async fn actions(&self) -> Result<Vec<ActionEntry>, StoreError> {
        self.call(|conn| read_actions(conn)).await
    }

    async fn delete_action(&self, id: &str) -> Result<bool, StoreError> {
        const WHAT: &str = "deleting an action";
        let id = id.to_owned();
        self.call(move |conn| {
            let tx = conn.transaction().map_err(backend(WHAT))?;
            let deleted = tx
                .execute(
                    "DELETE FROM action_bindings WHERE action_id = ?1",
                    params![id],
                )
                .and_then(|_| {
                    tx.execute(
                        "DELETE FROM action_versions WHERE action_id = ?1",
                        params![id],
                    )
                })
                .and_then(|_| tx.execute("DELETE FROM actions WHERE id = ?1", params![id]))
                .map_err(backend(WHAT))?;
            // Positions stay dense: renumber what is left in order.
            let left: Vec<String> = read_bindings(&tx)?;
            write_bindings(&tx, &left)?;
            tx.commit().map_err(backend(WHAT))?;
            Ok(deleted > 0)
        })
        .await
    }

    async fn deploy_action(
        &self,
        id: &str,
        created_by: &str,
        now: u64,
    ) -> Result<Option<ActionVersion>, StoreError> {
        const WHAT: &str = "deploying an action";
        let (id, created_by) = (id.to_owned(), created_by.to_owned());
        self.call(move |conn| {
            // Immediate: the write lock from the start, so two processes
            // cannot both pick the same next version.
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend(WHAT))?;
            let found: Option<(String, Option<Vec<u8>>)> = tx
                .query_row(
                    "SELECT action, draft FROM actions WHERE id = ?1",
                    params![id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(backend(WHAT))?;
            let Some((json, Some(draft))) = found else {
                return Ok(None);
            };
            let action: StoredAction = from_json(&json, "actions")?;
            let Some(sha256) = action.draft_sha256 else {
                return Ok(None);
            };
            let last: i64 = tx
                .query_row(
                    "SELECT COALESCE(MAX(version), 0) FROM action_versions WHERE action_id = ?1",
                    params![id],
                    |r| r.get(0),
                )
                .map_err(backend(WHAT))?;
            let version = u32::try_from(last + 1).map_err(|_| {
                StoreError::Backend(format!("action `{id}` has run out of version numbers"))
            })?;
            let size = draft.len() as u64;
            tx.execute(
                "INSERT INTO action_versions (action_id, version, sha256, size, created_at, created_by, bytes)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![id, version, sha256, size, now, created_by, draft],
            )
            .and_then(|_| {
                tx.execute(
                    "UPDATE actions SET active_version = ?2 WHERE id = ?1",
                    params![id, version],
                )
            })
            .and_then(|_| tx.commit())
            .map_err(backend(WHAT))?;
            Ok(Some(ActionVersion {
                action_id: id,
                version,
                sha256,
                size,
                created_at: now,
                created_by,
            }))
        })
        .await
    }

    async fn action_versions(&self, id: &str) -> Result<Vec<ActionVersion>, StoreError> {
        let id = id.to_owned();
        self.call(move |conn| {
            conn.prepare_cached(concat!(
                "SELECT ",
                action_version_columns!(),
                " FROM action_versions WHERE action_id = ?1 ORDER BY version"
            ))
            .and_then(|mut s| s.query_map(params![id], read_action_version)?.collect())
            .map_err(backend("listing action versions"))
        })
        .await
    }

    async fn action_bytes(&self, id: &str, version: u32) -> Result<Option<Vec<u8>>, StoreError> {
        let id = id.to_owned();
        self.call(move |conn| {
            conn.prepare_cached(
                "SELECT bytes FROM action_versions WHERE action_id = ?1 AND version = ?2",
            )
            .and_then(|mut s| s.query_row(params![id, version], |r| r.get(0)).optional())
            .map_err(backend("reading an action"))
        })
        .await
    }

    async fn activate_action_version(&self, id: &str, version: u32) -> Result<bool, StoreError> {
        let updated = self
            .execute(
                "UPDATE actions SET active_version = ?2 WHERE id = ?1 AND EXISTS
                     (SELECT 1 FROM action_versions WHERE action_id = ?1 AND version = ?2)",
                (id.to_owned(), version),
                "activating an action version",
            )
            .await?;
        Ok(updated > 0)
    }

    async fn post_login_bindings(&self) -> Result<Vec<String>, StoreError> {
        self.call(|conn| read_bindings(conn)).await
    }

    async fn set_post_login_bindings(&self, ids: &[String]) -> Result<(), StoreError> {
        const WHAT: &str = "writing bindings";
        let ids = ids.to_vec();
        self.call(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend(WHAT))?;
            for id in &ids {
                let known: Option<i64> = tx
                    .query_row("SELECT 1 FROM actions WHERE id = ?1", params![id], |r| {
                        r.get(0)
                    })
                    .optional()
                    .map_err(backend(WHAT))?;
                if known.is_none() {
                    return Err(StoreError::Missing(format!("action `{id}`")));
                }
            }
            write_bindings(&tx, &ids)?;
            tx.commit().map_err(backend(WHAT))
        })
        .await
    }

    async fn try_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: u64,
        now: u64,
    ) -> Result<bool, StoreError> {
        // One statement: a new lease is inserted; an existing one is taken
        // over only when this holder has it or it has expired.
        const TAKE_LEASE: &str = "INSERT INTO leases (name, holder, expires_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
             WHERE leases.holder = excluded.holder OR leases.expires_at <= ?4";
        let expires_at = now.saturating_add(ttl).min(i64::MAX as u64);
        let taken = self
            .execute(
                TAKE_LEASE,
                (name.to_owned(), holder.to_owned(), expires_at, now),
                "taking a lease",
            )
            .await?;
        Ok(taken > 0)
    }

    async fn signing_keys(&self) -> Result<Option<String>, StoreError> {
        self.call(|conn| {
            conn.prepare_cached("SELECT document FROM signing_keys WHERE id = 1")
                .and_then(|mut s| s.query_row([], |r| r.get(0)).optional())
                .map_err(backend("reading the signing keys"))
        })
        .await
    }

    async fn init_signing_keys(&self, document: &str) -> Result<String, StoreError> {
        let document = document.to_owned();
        self.call(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend("storing the signing keys"))?;
            let stored: String = tx
                .execute(
                    "INSERT INTO signing_keys (id, document) VALUES (1, ?1)
                     ON CONFLICT (id) DO NOTHING",
                    params![document],
                )
                .and_then(|_| {
                    tx.query_row("SELECT document FROM signing_keys WHERE id = 1", [], |r| {
                        r.get(0)
                    })
                })
                .map_err(backend("storing the signing keys"))?;
            tx.commit().map_err(backend("storing the signing keys"))?;
            Ok(stored)
        })
        .await
    }

    async fn connection_keys(&self, connection_id: &str) -> Result<Option<String>, StoreError> {
        let id = connection_id.to_owned();
        self.call(move |conn| {
            conn.prepare_cached("SELECT document FROM connection_keys WHERE connection_id = ?1")
                .and_then(|mut s| s.query_row(params![id], |r| r.get(0)).optional())
                .map_err(backend("reading a connection's keys"))
        })
        .await
    }

    async fn init_connection_keys(
        &self,
        connection_id: &str,
        document: &str,
    ) -> Result<String, StoreError> {
        let (id, document) = (connection_id.to_owned(), document.to_owned());
        self.call(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend("storing a connection's keys"))?;
            let stored: String = tx
                .execute(
                    "INSERT INTO connection_keys (connection_id, document) VALUES (?1, ?2)
                     ON CONFLICT (connection_id) DO NOTHING",
                    params![id, document],
                )
                .and_then(|_| {
                    tx.query_row(
                        "SELECT document FROM connection_keys WHERE connection_id = ?1",
                        params![id],
                        |r| r.get(0),
                    )
                })
                .map_err(backend("storing a connection's keys"))?;
            tx.commit()
                .map_err(backend("storing a connection's keys"))?;
            Ok(stored)
        })
        .await
    }

    async fn replace_signing_keys(
        &self,
        expected: Option<&str>,
        document: &str,
    ) -> Result<bool, StoreError> {
        let (expected, document) = (expected.map(str::to_owned), document.to_owned());
        self.call(move |conn| {
            let what = backend("replacing the signing keys");
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(&what)?;
            let written = match &expected {
                Some(old) => tx.execute(
                    "UPDATE signing_keys SET document = ?1 WHERE id = 1 AND document = ?2",
                    params![document, old],
                ),
                None => tx.execute(
                    "INSERT INTO signing_keys (id, document) VALUES (1, ?1)
                     ON CONFLICT (id) DO NOTHING",
                    params![document],
                ),
            }
            .map_err(&what)?;
            if written == 1 {
                // Keys are served by every instance: they reload when the
                // catalog version moves.
                tx.execute("UPDATE catalog_version SET version = version + 1", [])
                    .map_err(&what)?;
            }
            tx.commit().map_err(&what)?;
            Ok(written == 1)
        })
        .await
    }

    async fn replace_connection_keys(
        &self,
        connection_id: &str,
        current: &str,
        next: &str,
    ) -> Result<bool, StoreError> {
        let replaced = self
            .execute(
                "UPDATE connection_keys SET document = ?3 WHERE connection_id = ?1 AND document = ?2",
                (connection_id.to_owned(), current.to_owned(), next.to_owned()),
                "rotating a connection's keys",
            )
            .await?;
        Ok(replaced > 0)
    }

    async fn put_log_events(&self, events: &[LogEvent]) -> Result<(), StoreError> {
        const INSERT: &str =
            "INSERT INTO log_events (log_id, date, type, user_id, connection, body)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (log_id) DO NOTHING";
        let rows = events
            .iter()
            .map(|e| Ok((e.clone(), to_json(e, "a log event")?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        self.call(move |conn| {
            let tx = conn.transaction().map_err(backend("storing log events"))?;
            {
                let mut insert = tx
                    .prepare_cached(INSERT)
                    .map_err(backend("storing log events"))?;
                for (e, body) in &rows {
                    insert
                        .execute(params![
                            e.log_id,
                            e.date,
                            e.event_type,
                            e.user_id,
                            e.connection,
                            body
                        ])
                        .map_err(backend("storing log events"))?;
                }
            }
            tx.commit().map_err(backend("storing log events"))
        })
        .await
    }

    async fn log_events(&self, query: &LogQuery) -> Result<LogPage, StoreError> {
        // One filter, the same in both orders; `?6` is the checkpoint.
        const FILTER: &str = "(?1 IS NULL OR type = ?1) AND (?2 IS NULL OR user_id = ?2)
             AND (?3 IS NULL OR connection = ?3) AND (?4 IS NULL OR date >= ?4)
             AND (?5 IS NULL OR date <= ?5)";
        let newest_first = format!(
            "SELECT body FROM log_events WHERE {FILTER} AND ?6 IS NULL
             ORDER BY log_id DESC LIMIT ?7 OFFSET ?8"
        );
        let after = format!(
            "SELECT body FROM log_events WHERE {FILTER} AND log_id > ?6
             ORDER BY log_id ASC LIMIT ?7 OFFSET ?8"
        );
        let count = format!("SELECT count(*) FROM log_events WHERE {FILTER}");
        let q = query.clone();
        let limit = i64::try_from(q.limit).unwrap_or(i64::MAX);
        let offset = i64::try_from(q.offset).unwrap_or(i64::MAX);
        let (bodies, total) = self
            .call(move |conn| {
                let what = backend("listing log events");
                let filters = (
                    q.event_type.clone(),
                    q.user_id.clone(),
                    q.connection.clone(),
                    q.date_from,
                    q.date_to,
                );
                let sql = if q.after.is_some() {
                    &after
                } else {
                    &newest_first
                };
                let bodies = conn
                    .prepare_cached(sql)
                    .and_then(|mut s| {
                        s.query_map(
                            params![
                                filters.0, filters.1, filters.2, filters.3, filters.4, q.after,
                                limit, offset
                            ],
                            |r| r.get::<_, String>(0),
                        )?
                        .collect::<Result<Vec<_>, _>>()
                    })
                    .map_err(&what)?;
                let total: u64 = conn
                    .prepare_cached(&count)
                    .and_then(|mut s| {
                        s.query_row(
                            params![filters.0, filters.1, filters.2, filters.3, filters.4],
                            |r| r.get(0),
                        )
                    })
                    .map_err(&what)?;
                Ok((bodies, total))
            })
            .await?;
        let events = bodies
            .iter()
            .map(|b| from_json(b, "a log event"))
            .collect::<Result<_, _>>()?;
        Ok(LogPage { events, total })
    }

    async fn log_event(&self, log_id: &str) -> Result<Option<LogEvent>, StoreError> {
        let log_id = log_id.to_owned();
        let body: Option<String> = self
            .call(move |conn| {
                conn.prepare_cached("SELECT body FROM log_events WHERE log_id = ?1")
                    .and_then(|mut s| s.query_row([log_id], |r| r.get(0)).optional())
                    .map_err(backend("reading a log event"))
            })
            .await?;
        body.map(|b| from_json(&b, "a log event")).transpose()
    }

    async fn delete_log_events_before(&self, date: u64) -> Result<u64, StoreError> {
        let deleted = self
            .execute(
                "DELETE FROM log_events WHERE date < ?1",
                (date,),
                "deleting old log events",
            )
            .await?;
        Ok(deleted as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Holds the store's thread until the returned sender is dropped or
    /// sent to: calls made meanwhile queue up behind it.
    fn hold(store: &SqliteStore) -> mpsc::Sender<()> {
        let (release, held) = mpsc::channel::<()>();
        store
            .send(Job::Alone(Box::new(move |_| {
                let _ = held.recv();
            })))
            .expect("queued");
        release
    }

    #[tokio::test]
    async fn plain_calls_queued_together_share_one_transaction_and_a_lone_one_autocommits() {
        let store = SqliteStore::open_in_memory().expect("open");
        let in_transaction = || store.call_plain(|conn| Ok(!conn.is_autocommit()));
        assert!(
            !in_transaction().await.expect("alone"),
            "a lone call is grouped"
        );
        let release = hold(&store);
        // `join!` polls each call once (queueing it) before the release.
        let (a, b, c, ()) = tokio::join!(
            in_transaction(),
            in_transaction(),
            in_transaction(),
            async {
                release.send(()).expect("release");
            }
        );
        assert_eq!(
            [a, b, c].map(|r| r.expect("grouped")),
            [true; 3],
            "calls queued together ran apart"
        );
    }

    #[tokio::test]
    async fn in_a_group_each_call_gets_its_own_answer_and_a_failing_one_fails_alone() {
        let store = SqliteStore::open_in_memory().expect("open");
        store
            .put_code(SecretHash::of("taken"), code(10_000))
            .await
            .expect("put");
        let release = hold(&store);
        let (put, take, missing, bad, ()) = tokio::join!(
            store.put_code(SecretHash::of("new"), code(10_000)),
            store.take_code(SecretHash::of("taken"), 100),
            store.take_code(SecretHash::of("never"), 100),
            store.execute(
                "INSERT INTO no_such_table VALUES (1)",
                (),
                "a bad statement"
            ),
            async {
                release.send(()).expect("release");
            }
        );
        put.expect("put in the group");
        assert!(take.expect("take").is_some(), "the take in the group");
        assert!(missing.expect("take").is_none());
        assert!(bad.is_err(), "a failing statement reports its error");
        // What the group wrote was committed, the failure notwithstanding.
        assert!(
            store
                .take_code(SecretHash::of("new"), 100)
                .await
                .expect("take")
                .is_some()
        );
        assert!(
            store
                .take_code(SecretHash::of("taken"), 100)
                .await
                .expect("take")
                .is_none(),
            "taken once, in the group"
        );
    }

    fn code(expires_at: u64) -> AuthorizationGrant {
        AuthorizationGrant {
            claims: Default::default(),
            client_id: "app".into(),
            redirect_uri: "https://app.test/cb".into(),
            user_id: "oauth2|c|1".into(),
            scope: "openid".into(),
            nonce: None,
            code_challenge: None,
            auth_time: 1,
            session_id: None,
            audience: None,
            correlation_id: None,
            expires_at,
        }
    }

    fn rows(store: &SqliteStore, table: &str) -> i64 {
        let sql = format!("SELECT COUNT(*) FROM {table}");
        store
            .call_blocking(move |conn| {
                conn.query_row(&sql, [], |r| r.get(0))
                    .map_err(backend("counting"))
            })
            .expect("count")
    }

    #[tokio::test]
    async fn a_sweep_deletes_the_expired_rows_of_every_short_lived_table_and_keeps_the_live_ones() {
        let store = SqliteStore::open_in_memory().expect("open");
        for i in 0..10 {
            store
                .put_code(SecretHash::of(&format!("old {i}")), code(100))
                .await
                .expect("put");
        }
        store
            .put_code(SecretHash::of("fresh"), code(10_000))
            .await
            .expect("put");
        let token = |expires_at| AccessGrant {
            claims: Default::default(),
            user_id: "oauth2|c|1".into(),
            client_id: "app".into(),
            scope: "openid".into(),
            family_id: None,
            expires_at,
        };
        store
            .put_access_token(SecretHash::of("old token"), token(1_000))
            .await
            .expect("put");
        store
            .put_access_token(SecretHash::of("live token"), token(1_001))
            .await
            .expect("put");
        let swept = store.sweep_expired(1_000).await.expect("sweep");
        assert_eq!(
            swept,
            Swept {
                transactions: 0,
                codes: 10,
                tokens: 1
            }
        );
        assert_eq!(
            rows(&store, "authorization_codes"),
            1,
            "the live code stays"
        );
        assert_eq!(rows(&store, "access_tokens"), 1, "the live token stays");
    }

    fn payload(store: &SqliteStore, table: &str, key: SecretHash) -> String {
        let sql = format!("SELECT payload FROM {table} WHERE key_hash = ?1");
        let key = *key.as_bytes();
        store
            .call_blocking(move |conn| {
                conn.query_row(&sql, params![key], |r| r.get(0))
                    .map_err(backend("reading a payload"))
            })
            .expect("payload")
    }

    /// The stored JSON is the on-disk format: rows written by an older
    /// Waypass are read by a newer one, so a change here needs a migration.
    #[tokio::test]
    async fn short_lived_rows_keep_their_stored_json() {
        let store = SqliteStore::open_in_memory().expect("open");
        let key = SecretHash::of("k");
        let stored = store
            .put_transaction(
                key,
                LoginTransaction {
                    client_id: "app".into(),
                    redirect_uri: "https://app.test/cb".into(),
                    app_state: Some("s".into()),
                    nonce: None,
                    code_challenge: Some("ch".into()),
                    scope: "openid".into(),
                    connection: "acme".into(),
                    provider_verifier: Some(Secret::new("v")),
                    browser_binding: SecretHash::of("cookie"),
                    correlation_id: "corr".into(),
                    expires_at: 9,
                    form_post: false,
                    audience: None,
                    query: Vec::new(),
                },
                0,
                1,
            )
            .await
            .expect("put");
        assert_eq!(stored, PutTransaction::Stored);
        store
            .put_code(
                key,
                AuthorizationGrant {
                    claims: Default::default(),
                    nonce: Some("n".into()),
                    ..code(9)
                },
            )
            .await
            .expect("put");
        store
            .put_access_token(
                key,
                AccessGrant {
                    claims: Default::default(),
                    user_id: "oauth2|c|1".into(),
                    client_id: "app".into(),
                    scope: "openid".into(),
                    family_id: None,
                    expires_at: 9,
                },
            )
            .await
            .expect("put");
        assert_eq!(
            payload(&store, "login_transactions", key),
            format!(
                r#"{{"client_id":"app","redirect_uri":"https://app.test/cb","app_state":"s","nonce":null,"code_challenge":"ch","scope":"openid","connection":"acme","provider_verifier":"v","browser_binding":"{}","correlation_id":"corr"}}"#,
                SecretHash::of("cookie").to_hex()
            )
        );
        assert_eq!(
            payload(&store, "authorization_codes", key),
            r#"{"client_id":"app","redirect_uri":"https://app.test/cb","user_id":"oauth2|c|1","scope":"openid","nonce":"n","code_challenge":null,"auth_time":1}"#
        );
        assert_eq!(
            payload(&store, "access_tokens", key),
            r#"{"user_id":"oauth2|c|1","client_id":"app","scope":"openid"}"#
        );
    }

    #[test]
    fn migrations_run_once_each_in_order() {
        let mut conn = Connection::open_in_memory().expect("open");
        let v1 = ["CREATE TABLE a (x)"];
        migrate(&mut conn, &v1).expect("first");
        migrate(&mut conn, &v1).expect("again: nothing to do");
        let v2 = ["CREATE TABLE a (x)", "CREATE TABLE b (y)"];
        migrate(&mut conn, &v2).expect("only the second runs");
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .expect("version");
        assert_eq!(version, 2);
    }

    #[test]
    fn a_failing_migration_changes_nothing() {
        let mut conn = Connection::open_in_memory().expect("open");
        let broken = ["CREATE TABLE a (x)", "CREATE TABLE b (y); NOT SQL"];
        let err = migrate(&mut conn, &broken).expect_err("the second fails");
        assert!(
            err.to_string().contains("schema migration 2"),
            "names the migration: {err}"
        );
        let tables: i64 = conn
            .query_row("SELECT COUNT(*) FROM sqlite_schema", [], |r| r.get(0))
            .expect("count");
        assert_eq!(tables, 0, "the first migration is rolled back too");
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let mut conn = Connection::open_in_memory().expect("open");
        migrate(&mut conn, &["CREATE TABLE a (x)", "CREATE TABLE b (y)"]).expect("v2");
        let err = migrate(&mut conn, &["CREATE TABLE a (x)"]).expect_err("v1 code, v2 data");
        assert!(err.to_string().contains("newer"), "{err}");
    }
}
