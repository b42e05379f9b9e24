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
//! | `users` | `user_id` | profile (JSON), lower-cased email, login counters |
//! | `connections` | `id` | the spec as JSON, secrets included; `name` unique |
//! | `clients` | `client_id` | the app as JSON (its secret only as a hash) |
//! | `mappers` | `name` | the active version |
//! | `mapper_versions` | `name`, `version` | metadata and the component's bytes |
//! | `signing_keys` | the single row `id = 1` | the key set document |
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
//! One connection behind a mutex: every call is a statement or two on a
//! local file, shorter than handing it to a thread pool, and the lock is
//! never held across an `.await`. Between processes, SQLite's own locking
//! (WAL mode, a busy timeout) serialises writers.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use serde::{Deserialize, Serialize};

use super::stored::{StoredTransaction, email_key, from_json, to_json};
use super::*;

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
];

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
    inner: Mutex<Inner>,
}

struct Inner {
    conn: Connection,
}

impl SqliteStore {
    /// The schema version this code writes (the number of migrations it
    /// knows); a database at a higher one is refused.
    pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

    /// Opens the database at `path`, creating it (readable by its owner
    /// only) if it does not exist, and brings its schema up to date.
    /// Refuses a database whose schema is newer than this code's.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        create_owner_only(path)?;
        let mut conn = Connection::open(path)
            .map_err(|e| StoreError::Backend(format!("opening {}: {e}", path.display())))?;
        configure(&conn, true)
            .and_then(|()| migrate(&mut conn, MIGRATIONS))
            .map_err(|e| in_file(e, path))?;
        Ok(Self::new(conn))
    }

    /// A private database in memory, gone when the store is dropped: for
    /// tests.
    pub fn open_in_memory() -> Result<Self, StoreError> {
        let mut conn = Connection::open_in_memory().map_err(backend("opening in memory"))?;
        configure(&conn, false)?;
        migrate(&mut conn, MIGRATIONS)?;
        Ok(Self::new(conn))
    }

    /// The schema version of the open database (`PRAGMA user_version`).
    pub fn schema_version(&self) -> Result<u32, StoreError> {
        self.lock()
            .conn
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .map_err(backend("reading the schema version"))
    }

    fn new(conn: Connection) -> Self {
        Self {
            inner: Mutex::new(Inner { conn }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic mid-call leaves nothing half-done: an open transaction
        // rolls back when dropped.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs one statement (cached) and returns how many rows it changed.
    fn execute(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
        what: &'static str,
    ) -> Result<usize, StoreError> {
        self.lock()
            .conn
            .prepare_cached(sql)
            .and_then(|mut s| s.execute(params))
            .map_err(backend(what))
    }

    fn put_expiring(
        &self,
        table: &Expiring,
        key: SecretHash,
        expires_at: u64,
        payload: &impl Serialize,
    ) -> Result<(), StoreError> {
        let payload = to_json(payload, table.table)?;
        self.execute(
            table.put,
            params![key.as_bytes(), expires_at, payload],
            table.table,
        )?;
        Ok(())
    }

    fn take_expiring<T: for<'de> Deserialize<'de>>(
        &self,
        table: &Expiring,
        key: SecretHash,
        now: u64,
    ) -> Result<Option<(u64, T)>, StoreError> {
        let key = *key.as_bytes();
        let inner = self.lock();
        let row: Option<(u64, String)> = inner
            .conn
            .prepare_cached(table.take)
            .and_then(|mut s| {
                s.query_row(params![key], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()
            })
            .map_err(backend(table.table))?;
        drop(inner);
        match row {
            Some((expires_at, payload)) if expires_at > now => {
                Ok(Some((expires_at, from_json(&payload, table.table)?)))
            }
            _ => Ok(None),
        }
    }

    fn get_expiring<T: for<'de> Deserialize<'de>>(
        &self,
        table: &Expiring,
        key: SecretHash,
        now: u64,
    ) -> Result<Option<(u64, T)>, StoreError> {
        let key = *key.as_bytes();
        let inner = self.lock();
        let row: Option<(u64, String)> = inner
            .conn
            .prepare_cached(table.get)
            .and_then(|mut s| {
                s.query_row(params![key, now], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()
            })
            .map_err(backend(table.table))?;
        drop(inner);
        row.map(|(expires_at, payload)| Ok((expires_at, from_json(&payload, table.table)?)))
            .transpose()
    }
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
}

/// The columns [`UserRow::read`] reads, in its order (a macro, so that
/// statements using it are constants).
macro_rules! user_columns {
    () => {
        "user_id, connection, profile, created_at, last_login, logins_count"
    };
}

impl UserRow {
    fn read(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            user_id: row.get(0)?,
            connection: row.get(1)?,
            profile: row.get(2)?,
            created_at: row.get(3)?,
            last_login: row.get(4)?,
            logins_count: row.get(5)?,
        })
    }

    fn into_user(self) -> Result<User, StoreError> {
        Ok(User {
            profile: from_json(&self.profile, "users")?,
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
        let inserted = self.execute(
            PUT_TRANSACTION_BOUNDED,
            params![state.as_bytes(), tx.expires_at, payload, now, max_live],
            TRANSACTIONS.table,
        )?;
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
        let inner = self.lock();
        let taken: Option<(u64, String)> = match binding {
            Some(binding) => inner
                .conn
                .prepare_cached(TAKE_BOUND_TRANSACTION)
                .and_then(|mut s| {
                    s.query_row(params![key, now, binding.to_hex()], |r| {
                        Ok((r.get(0)?, r.get(1)?))
                    })
                    .optional()
                })
                .map_err(backend(TRANSACTIONS.table))?,
            None => None,
        };
        if let Some((expires_at, payload)) = taken {
            drop(inner);
            let tx: StoredTransaction = from_json(&payload, TRANSACTIONS.table)?;
            return Ok(TakeTransaction::Taken(Box::new(
                tx.into_transaction(expires_at),
            )));
        }
        // Nothing taken: say whether a live login is there for another browser.
        let live = inner
            .conn
            .prepare_cached(LIVE_TRANSACTION)
            .and_then(|mut s| s.exists(params![key, now]))
            .map_err(backend(TRANSACTIONS.table))?;
        Ok(if live {
            TakeTransaction::WrongBrowser
        } else {
            TakeTransaction::Absent
        })
    }

    async fn put_code(
        &self,
        code: SecretHash,
        grant: AuthorizationGrant,
    ) -> Result<(), StoreError> {
        self.put_expiring(&CODES, code, grant.expires_at, &grant)
    }

    async fn take_code(
        &self,
        code: SecretHash,
        now: u64,
    ) -> Result<Option<AuthorizationGrant>, StoreError> {
        Ok(self
            .take_expiring::<AuthorizationGrant>(&CODES, code, now)?
            .map(|(expires_at, grant)| AuthorizationGrant {
                expires_at,
                ..grant
            }))
    }

    async fn put_access_token(
        &self,
        token: SecretHash,
        grant: AccessGrant,
    ) -> Result<(), StoreError> {
        self.put_expiring(&TOKENS, token, grant.expires_at, &grant)
    }

    async fn sweep_expired(&self, now: u64) -> Result<Swept, StoreError> {
        let sweep = |table: Expiring| -> Result<u64, StoreError> {
            let deleted = self.execute(table.sweep, params![now], table.table)?;
            Ok(deleted as u64)
        };
        Ok(Swept {
            transactions: sweep(TRANSACTIONS)?,
            codes: sweep(CODES)?,
            tokens: sweep(TOKENS)?,
        })
    }

    async fn get_access_token(
        &self,
        token: SecretHash,
        now: u64,
    ) -> Result<Option<AccessGrant>, StoreError> {
        Ok(self
            .get_expiring::<AccessGrant>(&TOKENS, token, now)?
            .map(|(expires_at, grant)| AccessGrant {
                expires_at,
                ..grant
            }))
    }

    async fn delete_access_tokens_of_client(&self, client_id: &str) -> Result<u64, StoreError> {
        // The client id lives in the JSON payload (the table has no column
        // for it): a scan, fine for an API call that rotates or deletes.
        let deleted = self.execute(
            "DELETE FROM access_tokens WHERE json_extract(payload, '$.client_id') = ?1",
            params![client_id],
            "revoking a client's access tokens",
        )?;
        Ok(deleted as u64)
    }

    async fn record_login(
        &self,
        user_id: &str,
        connection: &str,
        profile: Profile,
        now: u64,
    ) -> Result<User, StoreError> {
        let json = to_json(&profile, "a profile")?;
        let email = email_key(&profile);
        // One statement: two logins at once both count. It returns only
        // what the stored row may know better than the arguments.
        const RECORD_LOGIN: &str = "
            INSERT INTO users (user_id, connection, profile, created_at, last_login, logins_count,
                               email_lower)
            VALUES (?1, ?2, ?3, ?4, ?4, 1, ?5)
            ON CONFLICT (user_id) DO UPDATE SET
                profile = excluded.profile,
                email_lower = excluded.email_lower,
                last_login = excluded.last_login,
                logins_count = logins_count + 1
            RETURNING connection, created_at, logins_count";
        let (connection, created_at, logins_count) = self
            .lock()
            .conn
            .prepare_cached(RECORD_LOGIN)
            .and_then(|mut s| {
                s.query_row(params![user_id, connection, json, now, email], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
            })
            .map_err(backend("recording a login"))?;
        Ok(User {
            user_id: user_id.to_owned(),
            connection,
            profile,
            created_at,
            last_login: now,
            logins_count,
        })
    }

    async fn get_user(&self, user_id: &str) -> Result<Option<User>, StoreError> {
        const GET_USER: &str =
            concat!("SELECT ", user_columns!(), " FROM users WHERE user_id = ?1");
        self.lock()
            .conn
            .prepare_cached(GET_USER)
            .and_then(|mut s| s.query_row(params![user_id], UserRow::read).optional())
            .map_err(backend("reading a user"))?
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
            .lock()
            .conn
            .prepare_cached(LIST_USERS)
            .and_then(|mut s| {
                s.query_map(params![needle, limit, offset], UserRow::read)?
                    .collect::<Result<Vec<_>, _>>()
            })
            .map_err(backend("listing users"))?;
        rows.into_iter().map(UserRow::into_user).collect()
    }

    async fn delete_user(&self, user_id: &str) -> Result<bool, StoreError> {
        let deleted = self.execute(
            "DELETE FROM users WHERE user_id = ?1",
            params![user_id],
            "deleting a user",
        )?;
        Ok(deleted > 0)
    }

    async fn put_connection(&self, record: &ConnectionRecord) -> Result<(), StoreError> {
        let spec = record.spec.to_stored_json().to_string();
        // An upsert on the id, not `INSERT OR REPLACE`: that would also
        // delete another connection holding the name, where we must refuse.
        let written = self
            .lock()
            .conn
            .prepare_cached(
                "INSERT INTO connections (id, name, spec) VALUES (?1, ?2, ?3)
                 ON CONFLICT (id) DO UPDATE SET name = excluded.name, spec = excluded.spec",
            )
            .and_then(|mut s| s.execute(params![record.id, record.spec.name.as_str(), spec]));
        match written {
            Ok(_) => Ok(()),
            Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict(format!(
                "connection `{}`",
                record.spec.name
            ))),
            Err(e) => Err(backend("writing a connection")(e)),
        }
    }

    async fn connections(&self) -> Result<Vec<ConnectionRecord>, StoreError> {
        let rows: Vec<(String, String)> = self
            .lock()
            .conn
            .prepare_cached("SELECT id, spec FROM connections ORDER BY id")
            .and_then(|mut s| s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
            .map_err(backend("listing connections"))?;
        rows.into_iter()
            .map(|(id, spec)| {
                Ok(ConnectionRecord {
                    spec: from_json(&spec, "connections")?,
                    id,
                })
            })
            .collect()
    }

    async fn delete_connection(&self, id: &str) -> Result<bool, StoreError> {
        let deleted = self.execute(
            "DELETE FROM connections WHERE id = ?1",
            params![id],
            "deleting a connection",
        )?;
        Ok(deleted > 0)
    }

    async fn put_client(&self, client: &Client) -> Result<(), StoreError> {
        let json = to_json(client, "a client")?;
        self.execute(
            "INSERT INTO clients (client_id, client) VALUES (?1, ?2)
                 ON CONFLICT (client_id) DO UPDATE SET client = excluded.client",
            params![client.client_id, json],
            "writing a client",
        )?;
        Ok(())
    }

    async fn clients(&self) -> Result<Vec<Client>, StoreError> {
        let rows: Vec<String> = self
            .lock()
            .conn
            .prepare_cached("SELECT client FROM clients ORDER BY client_id")
            .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
            .map_err(backend("listing clients"))?;
        rows.iter().map(|json| from_json(json, "clients")).collect()
    }

    async fn delete_client(&self, client_id: &str) -> Result<bool, StoreError> {
        let deleted = self.execute(
            "DELETE FROM clients WHERE client_id = ?1",
            params![client_id],
            "deleting a client",
        )?;
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
        let mut inner = self.lock();
        // Immediate: the write lock from the start, so two processes cannot
        // both pick the same next version.
        let tx = inner
            .conn
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
        let stored = MapperVersion {
            name: name.to_owned(),
            version,
            sha256: sha256.to_owned(),
            size: bytes.len() as u64,
            created_at: now,
            created_by: created_by.to_owned(),
        };
        tx.execute(
            "INSERT INTO mapper_versions (name, version, sha256, size, created_at, created_by, bytes)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                name,
                version,
                stored.sha256,
                stored.size,
                now,
                created_by,
                bytes
            ],
        )
        .and_then(|_| {
            tx.execute(
                "UPDATE mappers SET active_version = ?2 WHERE name = ?1",
                params![name, version],
            )
        })
        .and_then(|_| tx.commit())
        .map_err(backend("adding a mapper version"))?;
        Ok(stored)
    }

    async fn mapper_versions(&self, name: &str) -> Result<Vec<MapperVersion>, StoreError> {
        self.lock()
            .conn
            .prepare_cached(
                "SELECT name, version, sha256, size, created_at, created_by
                 FROM mapper_versions WHERE name = ?1 ORDER BY version",
            )
            .and_then(|mut s| {
                s.query_map(params![name], |r| {
                    Ok(MapperVersion {
                        name: r.get(0)?,
                        version: r.get(1)?,
                        sha256: r.get(2)?,
                        size: r.get(3)?,
                        created_at: r.get(4)?,
                        created_by: r.get(5)?,
                    })
                })?
                .collect()
            })
            .map_err(backend("listing mapper versions"))
    }

    async fn mapper_bytes(&self, name: &str, version: u32) -> Result<Option<Vec<u8>>, StoreError> {
        self.lock()
            .conn
            .prepare_cached("SELECT bytes FROM mapper_versions WHERE name = ?1 AND version = ?2")
            .and_then(|mut s| s.query_row(params![name, version], |r| r.get(0)).optional())
            .map_err(backend("reading a mapper"))
    }

    async fn activate_mapper_version(&self, name: &str, version: u32) -> Result<bool, StoreError> {
        let updated = self.execute(
            "UPDATE mappers SET active_version = ?2 WHERE name = ?1 AND EXISTS
                 (SELECT 1 FROM mapper_versions WHERE name = ?1 AND version = ?2)",
            params![name, version],
            "activating a mapper version",
        )?;
        Ok(updated > 0)
    }

    async fn mappers(&self) -> Result<Vec<MapperEntry>, StoreError> {
        self.lock()
            .conn
            .prepare_cached("SELECT name, active_version FROM mappers ORDER BY name")
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

    async fn delete_mapper(&self, name: &str) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        // The versions explicitly too: the cascade is a second line, not the
        // only one.
        let tx = inner
            .conn
            .transaction()
            .map_err(backend("deleting a mapper"))?;
        let deleted = tx
            .execute("DELETE FROM mapper_versions WHERE name = ?1", params![name])
            .and_then(|_| tx.execute("DELETE FROM mappers WHERE name = ?1", params![name]))
            .map_err(backend("deleting a mapper"))?;
        tx.commit().map_err(backend("deleting a mapper"))?;
        Ok(deleted > 0)
    }

    async fn signing_keys(&self) -> Result<Option<String>, StoreError> {
        self.lock()
            .conn
            .prepare_cached("SELECT document FROM signing_keys WHERE id = 1")
            .and_then(|mut s| s.query_row([], |r| r.get(0)).optional())
            .map_err(backend("reading the signing keys"))
    }

    async fn init_signing_keys(&self, document: &str) -> Result<String, StoreError> {
        let mut inner = self.lock();
        let tx = inner
            .conn
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(expires_at: u64) -> AuthorizationGrant {
        AuthorizationGrant {
            client_id: "app".into(),
            redirect_uri: "https://app.test/cb".into(),
            user_id: "oauth2|c|1".into(),
            scope: "openid".into(),
            nonce: None,
            code_challenge: None,
            auth_time: 1,
            expires_at,
        }
    }

    fn rows(store: &SqliteStore, table: &str) -> i64 {
        store
            .lock()
            .conn
            .query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
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
            user_id: "oauth2|c|1".into(),
            client_id: "app".into(),
            scope: "openid".into(),
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
        store
            .lock()
            .conn
            .query_row(
                &format!("SELECT payload FROM {table} WHERE key_hash = ?1"),
                params![key.as_bytes()],
                |r| r.get(0),
            )
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
                    user_id: "oauth2|c|1".into(),
                    client_id: "app".into(),
                    scope: "openid".into(),
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
