//! Everything in one PostgreSQL database: the store for several instances
//! serving one deployment (`WAYPASS_DATABASE_URL=postgres://…`).
//!
//! # What is stored where
//!
//! The tables are SQLite's (see `sqlite.rs`), with PostgreSQL's types:
//!
//! | table | key | what |
//! | --- | --- | --- |
//! | `login_transactions`, `authorization_codes`, `access_tokens` | `key_hash` (`bytea`, the SHA-256 of the bearer value) | `expires_at`, the payload |
//! | `users` | `user_id` | profile, lower-cased email, login counters, metadata |
//! | `user_identities` | `connection`, `provider_user_id` | a user's identity: its user, the provider's profile |
//! | `connections` | `id` | the spec, secrets included; `name` unique |
//! | `clients` | `client_id` | the app (its secret only as a hash) |
//! | `mappers` | `name` | the active version |
//! | `mapper_versions` | `name`, `version` | metadata and the component's bytes (`bytea`) |
//! | `actions`, `action_versions`, `action_bindings` | as SQLite's | post-login Actions |
//! | `signing_keys` | the single row `id = 1` | the key set document |
//! | `connection_keys` | `connection_id` | a connection's `private_key_jwt` key document |
//! | `catalog_version` | the single row `id = 1` | bumped by every catalog write |
//! | `leases` | `name` | who holds a lease (the sweep) until when |
//! | `waypass_schema_versions` | `version` | one row per migration applied |
//!
//! JSON payloads (transactions, grants, profiles, specs, clients) are `text`,
//! not `jsonb`: they are only ever read back whole by key, never queried
//! inside, so `jsonb`'s parsing on every write buys nothing; `text` keeps
//! byte for byte what SQLite keeps (one stored form, `stored.rs`); and
//! `jsonb` refuses a string holding `\u0000`, which a provider's profile may
//! carry and SQLite accepts. Times are `bigint` seconds (a `u64` beyond
//! `i64::MAX` is refused, not wrapped). The lower-cased email, the search
//! key, is `bytea`: PostgreSQL's `text` cannot hold the NUL character a
//! profile's email may (SQLite's can), and a byte search of UTF-8 finds
//! exactly the character matches. Key columns sort with the `"C"`
//! collation: byte order, as the memory and SQLite stores list them, not
//! the database locale's.
//!
//! # Several instances on one database
//!
//! - A take is one `DELETE … WHERE key_hash = $1 AND expires_at > $2
//!   RETURNING …`: PostgreSQL deletes a row once, so of any number of takes
//!   of one key, from any number of instances, exactly one gets it.
//! - A login counts in one `INSERT … ON CONFLICT (user_id) DO UPDATE` (or
//!   `UPDATE … logins_count + 1`): concurrent logins of one user each
//!   count. A first login through an identity is serialised with others
//!   of the same email (see `identities`).
//! - A new mapper version is numbered inside a transaction that first locks
//!   the mapper's row (an upsert, so a new name is locked too); the next
//!   number is read after the lock is held, so two instances pushing one
//!   name get distinct numbers and one of them is active.
//! - Signing keys: `INSERT … ON CONFLICT DO NOTHING`, then read back what
//!   is stored, so instances starting together agree on one key set.
//! - Logins in flight are bounded by one `INSERT … SELECT … WHERE (SELECT
//!   COUNT(*) …) < $max`: under READ COMMITTED, inserts running at the same
//!   moment on different connections do not see each other, so the bound
//!   can be overshot by at most the number of such inserts (each instance's
//!   pool, [`MAX_CONNECTIONS`]); serialising every `/authorize` of the fleet
//!   on one lock to make it exact would cost more than the overshoot.
//! - A transaction is taken only with its browser binding, in the same
//!   `DELETE`; expired rows are deleted by [`Store::sweep_expired`], which
//!   the server runs on a timer.
//!
//! - Every catalog write (connections, clients, mappers, their versions)
//!   bumps `catalog_version` through a trigger and notifies
//!   `waypass_catalog` with the new version; instances `LISTEN` on one
//!   connection of their own, and check the version every
//!   [`CATALOG_CHECK_INTERVAL`] besides, for notifications missed while it
//!   was down.
//! - The sweep of expired rows is leased ([`Store::try_lease`], a row in
//!   `leases`) rather than guarded by an advisory lock: a session-level
//!   advisory lock would need a pooled connection held for the lease's
//!   life, and the row works the same on every backend.
//!
//! # Schema versions
//!
//! [`MIGRATIONS`] are applied at open in one transaction (PostgreSQL's DDL
//! is transactional: all or none), under a transaction-scoped advisory lock
//! ([`MIGRATION_LOCK`]), so of instances opening one new database at once
//! one migrates and the others then find it done. `waypass_schema_versions`
//! records each migration applied; a database at a higher version than this
//! code knows (written by a newer Waypass) is refused rather than guessed at.
//!
//! # Connections
//!
//! A pool of at most [`MAX_CONNECTIONS`], each preparing a statement once.
//! Each connection is opened and driven by a task on the runtime that
//! opened the store, so the store may be called from any runtime (tests
//! race it from threads with runtimes of their own). TLS follows `sslmode`
//! in the URL: absent or `disable` is plain (a local socket, a private
//! network), `require`, `verify-ca` and `verify-full` are TLS with the
//! server's certificate always verified — against `sslrootcert` (a PEM file)
//! when given, the public web roots otherwise — since this connection
//! carries every secret the broker holds. `prefer` and `allow`, which fall
//! back to plain text silently, are refused.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use deadpool::managed::{self, Metrics, Pool, PoolError, RecycleError, RecycleResult};
use serde::{Deserialize, Serialize};
use tokio_postgres::error::SqlState;
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::types::{FromSql, ToSql};
use tokio_postgres::{Client as PgClient, NoTls, Row, Socket, Statement};

use super::stored::{StoredTransaction, email_key, from_json, to_json};
use super::*;

mod branding;
mod idp_tokens;
mod sessions;

/// Connections per instance. A login holds one for a single statement at
/// a time, so a few per core serve it; and a fleet's instances share the
/// server's `max_connections` (100 by default): 20 instances × 8 fit a
/// server configured for them, 10 fit the default.
const MAX_CONNECTIONS: usize = 8;

/// How long opening one connection may take (TCP, TLS, authentication)
/// before the caller is told the database is unreachable, unless the URL
/// sets `connect_timeout`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a call waits for a free connection (all [`MAX_CONNECTIONS`]
/// busy) before failing: statements here are single rows, so waiting this
/// long means the database is stuck, and the login should fail rather than
/// hang.
const POOL_WAIT_TIMEOUT: Duration = Duration::from_secs(10);

/// The advisory lock key serialising schema migrations of one database
/// (`pg_advisory_xact_lock`): "waypass1" in ASCII, unlikely to be another
/// application's key on a shared server.
const MIGRATION_LOCK: i64 = 0x7761_7970_6173_7331;

/// The schema: entry `i` takes the database from version `i` to `i + 1`.
/// Append only — a released migration never changes, or databases that
/// already ran it would differ from new ones. Plain `CREATE TABLE` (no
/// `IF NOT EXISTS`): running a migration twice fails instead of passing
/// silently.
const MIGRATIONS: &[&str] = &[
    // 1: everything the `Store` trait holds.
    r#"
    CREATE TABLE login_transactions (
        key_hash bytea PRIMARY KEY CHECK (octet_length(key_hash) = 32),
        expires_at bigint NOT NULL,
        payload text NOT NULL
    );
    CREATE INDEX login_transactions_by_expiry ON login_transactions (expires_at);

    CREATE TABLE authorization_codes (
        key_hash bytea PRIMARY KEY CHECK (octet_length(key_hash) = 32),
        expires_at bigint NOT NULL,
        payload text NOT NULL
    );
    CREATE INDEX authorization_codes_by_expiry ON authorization_codes (expires_at);

    CREATE TABLE access_tokens (
        key_hash bytea PRIMARY KEY CHECK (octet_length(key_hash) = 32),
        expires_at bigint NOT NULL,
        payload text NOT NULL
    );
    CREATE INDEX access_tokens_by_expiry ON access_tokens (expires_at);

    CREATE TABLE users (
        user_id text COLLATE "C" PRIMARY KEY,
        connection text NOT NULL,
        profile text NOT NULL,
        email_lower bytea,
        created_at bigint NOT NULL,
        last_login bigint NOT NULL,
        logins_count bigint NOT NULL
    );

    CREATE TABLE connections (
        id text COLLATE "C" PRIMARY KEY,
        name text NOT NULL UNIQUE,
        spec text NOT NULL
    );

    CREATE TABLE clients (
        client_id text COLLATE "C" PRIMARY KEY,
        client text NOT NULL
    );

    CREATE TABLE mappers (
        name text COLLATE "C" PRIMARY KEY,
        active_version bigint NOT NULL
    );

    CREATE TABLE mapper_versions (
        name text COLLATE "C" NOT NULL REFERENCES mappers (name) ON DELETE CASCADE,
        version bigint NOT NULL,
        sha256 text NOT NULL,
        size bigint NOT NULL,
        created_at bigint NOT NULL,
        created_by text NOT NULL,
        bytes bytea NOT NULL,
        PRIMARY KEY (name, version)
    );

    CREATE TABLE signing_keys (
        id integer PRIMARY KEY CHECK (id = 1),
        document text NOT NULL
    );
    "#,
    // 2: the catalog version, bumped (and notified on CATALOG_CHANNEL) by
    // a trigger on every row a catalog table gains, changes or loses, in
    // the writing transaction: no writer can forget it, and a
    // notification is delivered exactly when its change commits. Leases,
    // for jobs one instance at a time runs.
    r#"
    CREATE TABLE catalog_version (
        id integer PRIMARY KEY CHECK (id = 1),
        version bigint NOT NULL
    );
    INSERT INTO catalog_version (id, version) VALUES (1, 0);

    CREATE FUNCTION waypass_catalog_changed() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        bumped bigint;
    BEGIN
        UPDATE catalog_version SET version = version + 1 WHERE id = 1
            RETURNING version INTO bumped;
        PERFORM pg_notify('waypass_catalog', bumped::text);
        RETURN NULL;
    END
    $$;
    CREATE TRIGGER connections_changed AFTER INSERT OR UPDATE OR DELETE ON connections
        FOR EACH ROW EXECUTE FUNCTION waypass_catalog_changed();
    CREATE TRIGGER clients_changed AFTER INSERT OR UPDATE OR DELETE ON clients
        FOR EACH ROW EXECUTE FUNCTION waypass_catalog_changed();
    CREATE TRIGGER mappers_changed AFTER INSERT OR UPDATE OR DELETE ON mappers
        FOR EACH ROW EXECUTE FUNCTION waypass_catalog_changed();
    CREATE TRIGGER mapper_versions_changed AFTER INSERT OR UPDATE OR DELETE ON mapper_versions
        FOR EACH ROW EXECUTE FUNCTION waypass_catalog_changed();

    CREATE TABLE leases (
        name text COLLATE "C" PRIMARY KEY,
        holder text NOT NULL,
        expires_at bigint NOT NULL
    );
    "#, // 3: connections' own keys, for `private_key_jwt`.
    r#"
    CREATE TABLE connection_keys (
        connection_id text COLLATE "C" PRIMARY KEY,
        document text NOT NULL
    );
    "#,
    // 4: users' metadata; post-login Actions, their versions and the
    // trigger's ordered bindings (catalog tables: each change bumps and
    // notifies the catalog version).
    r#"
    ALTER TABLE users ADD COLUMN app_metadata text NOT NULL DEFAULT '{}';
    ALTER TABLE users ADD COLUMN user_metadata text NOT NULL DEFAULT '{}';

    CREATE TABLE actions (
        id text COLLATE "C" PRIMARY KEY,
        name text NOT NULL UNIQUE,
        action text NOT NULL,
        active_version bigint NOT NULL,
        draft bytea
    );

    CREATE TABLE action_versions (
        action_id text COLLATE "C" NOT NULL REFERENCES actions (id) ON DELETE CASCADE,
        version bigint NOT NULL,
        sha256 text NOT NULL,
        size bigint NOT NULL,
        created_at bigint NOT NULL,
        created_by text NOT NULL,
        bytes bytea NOT NULL,
        PRIMARY KEY (action_id, version)
    );

    CREATE TABLE action_bindings (
        trigger_id text COLLATE "C" NOT NULL,
        position bigint NOT NULL,
        action_id text COLLATE "C" NOT NULL REFERENCES actions (id) ON DELETE CASCADE,
        PRIMARY KEY (trigger_id, position)
    );

    CREATE TRIGGER actions_changed AFTER INSERT OR UPDATE OR DELETE ON actions
        FOR EACH ROW EXECUTE FUNCTION waypass_catalog_changed();
    CREATE TRIGGER action_versions_changed AFTER INSERT OR UPDATE OR DELETE ON action_versions
        FOR EACH ROW EXECUTE FUNCTION waypass_catalog_changed();
    CREATE TRIGGER action_bindings_changed AFTER INSERT OR UPDATE OR DELETE ON action_bindings
        FOR EACH ROW EXECUTE FUNCTION waypass_catalog_changed();
    "#,
    // 5: log events (#14): the whole event as JSON, searched by its
    // columns; listed by id (date first) and swept by date. `C` collation:
    // ids compare bytewise, as in SQLite and the memory store.
    r#"
    CREATE TABLE log_events (
        log_id text COLLATE "C" PRIMARY KEY,
        date bigint NOT NULL,
        type text NOT NULL,
        user_id text,
        connection text,
        body text NOT NULL
    );
    CREATE INDEX log_events_by_date ON log_events (date);
    CREATE INDEX log_events_by_user ON log_events (user_id, log_id);
    "#,
    // 6: sessions, refresh tokens and their families, APIs (issue #11).
    sessions::MIGRATION,
    // 7: the login page's branding (issue #16 §4).
    branding::MIGRATION,
    // 8: the provider's tokens per identity (issue #12 §7), sealed.
    idp_tokens::MIGRATION,
    // 9: legacy Rules, a catalog table (each change bumps the catalog version and
    // notifies).
    r#"
    CREATE TABLE rules (
        id text COLLATE "C" PRIMARY KEY,
        name text COLLATE "C" NOT NULL UNIQUE,
        rule text NOT NULL
    );
    CREATE TRIGGER rules_changed AFTER INSERT OR UPDATE OR DELETE ON rules
        FOR EACH ROW EXECUTE FUNCTION waypass_catalog_changed();
    "#,
    // 10: users' identities (issue #12 §6).
    identities::MIGRATION,
];

/// The trigger the bindings of [`Store::post_login_bindings`] are kept under.
const POST_LOGIN: &str = "post-login";

/// The channel the catalog trigger notifies, its payload the new version.
const CATALOG_CHANNEL: &str = "waypass_catalog";

/// How often an instance checks the catalog version besides listening:
/// the fallback for a notification missed while the listening connection
/// was down. Notifications carry the change within the 100 ms issue #10
/// §3 asks; this bounds how late a missed one is noticed, for the cost of
/// one single-row read per instance per interval.
pub const CATALOG_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Pause before the listening connection is opened again after it failed:
/// a database that is down is not hammered; the check above covers the gap.
const LISTEN_RETRY: Duration = Duration::from_secs(1);

/// A PostgreSQL URL (`postgres://user:password@host:port/database?…`, or
/// `postgresql://`). `Display` and `Debug` show it with the password
/// masked, so it can be logged; [`DatabaseUrl::expose`] gives it whole.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl {
    url: String,
    masked: String,
}

/// Why a database URL is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DatabaseUrlError {
    #[error("not a URL: {0}")]
    NotAUrl(String),
    #[error("the scheme must be postgres:// or postgresql://, not `{0}://`")]
    Scheme(String),
    #[error(
        "sslmode={0} is not supported: it falls back to plain text silently; \
         use sslmode=disable (plain) or sslmode=require (TLS, certificate verified)"
    )]
    FallbackSslMode(String),
    #[error("sslmode={0} is not one of disable, require, verify-ca, verify-full")]
    UnknownSslMode(String),
    #[error("{0}")]
    Invalid(String),
}

/// How the connection is protected, from the URL's `sslmode`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum TlsMode {
    Plain,
    /// TLS, the server's certificate verified against these roots (a PEM
    /// file), or the public web roots.
    Verified {
        root_cert: Option<String>,
    },
}

impl DatabaseUrl {
    /// Checks that `url` is a PostgreSQL URL the store can use.
    pub fn parse(url: &str) -> Result<Self, DatabaseUrlError> {
        let parsed = url::Url::parse(url).map_err(|e| DatabaseUrlError::NotAUrl(e.to_string()))?;
        if !matches!(parsed.scheme(), "postgres" | "postgresql") {
            return Err(DatabaseUrlError::Scheme(parsed.scheme().to_owned()));
        }
        let this = Self {
            url: url.to_owned(),
            masked: mask(&parsed),
        };
        // Everything that can be refused is refused now, at configuration.
        this.options()?;
        Ok(this)
    }

    /// Whether the URL is one the store can use (see [`DatabaseUrl::parse`]).
    pub fn check(&self) -> Result<(), DatabaseUrlError> {
        Self::parse(&self.url).map(|_| ())
    }

    /// The URL whole, password included.
    pub fn expose(&self) -> &str {
        &self.url
    }

    /// The same server and credentials, another database (tests create one
    /// database per test).
    pub fn with_database(&self, database: &str) -> Result<Self, DatabaseUrlError> {
        let mut parsed =
            url::Url::parse(&self.url).map_err(|e| DatabaseUrlError::NotAUrl(e.to_string()))?;
        parsed.set_path(&format!("/{database}"));
        Self::parse(parsed.as_str())
    }

    /// The connection settings and TLS mode.
    fn options(&self) -> Result<(tokio_postgres::Config, TlsMode), DatabaseUrlError> {
        let (base, query) = match self.url.split_once('?') {
            Some((base, query)) => (base, query),
            None => (self.url.as_str(), ""),
        };
        let mut ssl_mode = None;
        let mut root_cert = None;
        // `sslmode` and `sslrootcert` are read here (`tokio-postgres` knows
        // neither `verify-full` nor `sslrootcert`); the other parameters are
        // passed on exactly as written, their percent-encoding untouched.
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = percent_decode(value);
            match key {
                "sslmode" => ssl_mode = Some(value),
                "sslrootcert" => root_cert = Some(value),
                _ => kept.push(pair),
            }
        }
        let tls = match ssl_mode.as_deref() {
            None | Some("disable") => TlsMode::Plain,
            Some("require" | "verify-ca" | "verify-full") => TlsMode::Verified { root_cert },
            Some(mode @ ("prefer" | "allow")) => {
                return Err(DatabaseUrlError::FallbackSslMode(mode.to_owned()));
            }
            Some(other) => return Err(DatabaseUrlError::UnknownSslMode(other.to_owned())),
        };
        let passed_on = if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        let mut config = tokio_postgres::Config::from_str(&passed_on)
            .map_err(|e| DatabaseUrlError::Invalid(describe(&e)))?;
        config.ssl_mode(match tls {
            TlsMode::Plain => tokio_postgres::config::SslMode::Disable,
            TlsMode::Verified { .. } => tokio_postgres::config::SslMode::Require,
        });
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("waypass");
        }
        Ok((config, tls))
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked)
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({})", self.masked)
    }
}

/// Never fails on a bad URL, because a deserializer's error may quote the
/// input (TOML's quotes the line), password included: whoever reads one
/// calls [`DatabaseUrl::check`] (`Config::parse` does).
impl<'de> Deserialize<'de> for DatabaseUrl {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let url = String::deserialize(d)?;
        let masked = url::Url::parse(&url)
            .map(|parsed| mask(&parsed))
            .unwrap_or_else(|_| "[a database URL that does not parse]".to_owned());
        Ok(Self { url, masked })
    }
}

/// What a password in the URL is shown as.
const MASK: &str = "***";

/// The URL with its password (in the authority or a `password=` parameter)
/// replaced by [`MASK`].
fn mask(url: &url::Url) -> String {
    let mut masked = url.clone();
    if masked.password().is_some() {
        // Fails only for URLs that cannot carry a password at all.
        let _ = masked.set_password(Some(MASK));
    }
    if let Some(query) = url.query() {
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, _)) if key == "password" => format!("{key}={MASK}"),
                _ => pair.to_owned(),
            })
            .collect();
        masked.set_query(Some(&pairs.join("&")));
    }
    masked.to_string()
}

/// A query parameter's value, `%XX` decoded as libpq does (a `+` stays).
fn percent_decode(value: &str) -> String {
    percent_encoding::percent_decode_str(value)
        .decode_utf8_lossy()
        .into_owned()
}

/// A `tokio-postgres` error with its cause (its `Display` alone says "db
/// error" without the server's message).
fn describe(e: &tokio_postgres::Error) -> String {
    match std::error::Error::source(e) {
        Some(cause) => format!("{e}: {cause}"),
        None => e.to_string(),
    }
}

/// Maps a database error to [`StoreError::Backend`], saying what we were
/// doing.
fn backend(context: &'static str) -> impl Fn(tokio_postgres::Error) -> StoreError {
    move |e| StoreError::Backend(format!("postgres: {context}: {}", describe(&e)))
}

fn is_unique_violation(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&SqlState::UNIQUE_VIOLATION)
}

/// A `u64` as PostgreSQL's `bigint`.
fn to_db(value: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(value)
        .map_err(|_| StoreError::Backend(format!("postgres: {what} {value} is beyond bigint")))
}

/// A column, typed, or a backend error naming the table.
fn column<'a, T: FromSql<'a>>(row: &'a Row, index: usize, what: &str) -> Result<T, StoreError> {
    row.try_get(index)
        .map_err(|e| StoreError::Backend(format!("postgres: {what}: {}", describe(&e))))
}

/// A `bigint` column holding a `u64` (or a `u32`).
fn unsigned<T: TryFrom<i64>>(row: &Row, index: usize, what: &str) -> Result<T, StoreError> {
    let value: i64 = column(row, index, what)?;
    T::try_from(value).map_err(|_| {
        StoreError::Backend(format!(
            "postgres: {what}: a stored value is out of range: {value}"
        ))
    })
}

/// Opens connections for the pool: each is opened and then driven by a task
/// on `runtime`, the runtime that opened the store.
struct Manager {
    config: tokio_postgres::Config,
    tls: Tls,
    runtime: tokio::runtime::Handle,
    /// The masked URL, for errors.
    target: String,
}

#[derive(Clone)]
enum Tls {
    Plain,
    Rustls(tokio_postgres_rustls::MakeRustlsConnect),
}

impl Tls {
    fn new(mode: TlsMode) -> Result<Self, StoreError> {
        let root_cert = match mode {
            TlsMode::Plain => return Ok(Self::Plain),
            TlsMode::Verified { root_cert } => root_cert,
        };
        let mut roots = rustls::RootCertStore::empty();
        match root_cert {
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
            Some(path) => {
                use rustls::pki_types::CertificateDer;
                use rustls::pki_types::pem::PemObject;
                let pem = std::fs::read(&path).map_err(|e| {
                    StoreError::Backend(format!("postgres: sslrootcert {path}: {e}"))
                })?;
                for cert in CertificateDer::pem_slice_iter(&pem) {
                    let cert = cert.map_err(|e| {
                        StoreError::Backend(format!("postgres: sslrootcert {path}: {e}"))
                    })?;
                    roots.add(cert).map_err(|e| {
                        StoreError::Backend(format!("postgres: sslrootcert {path}: {e}"))
                    })?;
                }
                if roots.is_empty() {
                    return Err(StoreError::Backend(format!(
                        "postgres: sslrootcert {path} holds no certificate"
                    )));
                }
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| StoreError::Backend(format!("postgres: TLS: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self::Rustls(tokio_postgres_rustls::MakeRustlsConnect::new(
            config,
        )))
    }
}

/// One pooled connection and the statements it has prepared.
struct Conn {
    client: PgClient,
    statements: HashMap<&'static str, Statement>,
}

impl Conn {
    /// `sql` prepared on this connection, once.
    async fn prepare(&mut self, sql: &'static str) -> Result<Statement, tokio_postgres::Error> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(sql).await?;
        self.statements.insert(sql, statement.clone());
        Ok(statement)
    }
}

impl managed::Manager for Manager {
    type Type = Conn;
    type Error = StoreError;

    async fn create(&self) -> Result<Conn, StoreError> {
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let config = self.config.clone();
        match self.tls.clone() {
            Tls::Plain => self.runtime.spawn(drive(config, NoTls, sender)),
            Tls::Rustls(tls) => self.runtime.spawn(drive(config, tls, sender)),
        };
        let client = receiver
            .await
            .map_err(|_| {
                StoreError::Backend(format!(
                    "postgres: connecting to {}: the runtime that opened the store has stopped",
                    self.target
                ))
            })?
            .map_err(|e| {
                StoreError::Backend(format!(
                    "postgres: connecting to {}: {}",
                    self.target,
                    describe(&e)
                ))
            })?;
        Ok(Conn {
            client,
            statements: HashMap::new(),
        })
    }

    async fn recycle(&self, conn: &mut Conn, _: &Metrics) -> RecycleResult<StoreError> {
        if conn.client.is_closed() {
            return Err(RecycleError::message("the connection was closed"));
        }
        Ok(())
    }
}

/// Connects, hands the client over, then drives the connection until the
/// client is dropped or the server goes away.
async fn drive<T>(
    config: tokio_postgres::Config,
    tls: T,
    sender: tokio::sync::oneshot::Sender<Result<PgClient, tokio_postgres::Error>>,
) where
    T: MakeTlsConnect<Socket> + Send,
    T::Stream: Send + 'static,
    T::TlsConnect: Send,
    <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
{
    match config.connect(tls).await {
        Ok((client, connection)) => {
            if sender.send(Ok(client)).is_err() {
                // The caller gave up waiting; dropping the connection closes it.
                return;
            }
            if let Err(e) = connection.await {
                tracing::warn!(error = %describe(&e), "a PostgreSQL connection failed");
            }
        }
        Err(e) => {
            let _ = sender.send(Err(e));
        }
    }
}

/// Statements for one short-lived table (they differ only in its name).
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
                "INSERT INTO ",
                $table,
                " (key_hash, expires_at, payload) VALUES ($1, $2, $3)
                 ON CONFLICT (key_hash) DO UPDATE
                 SET expires_at = EXCLUDED.expires_at, payload = EXCLUDED.payload"
            ),
            take: concat!(
                "DELETE FROM ",
                $table,
                " WHERE key_hash = $1 AND expires_at > $2 RETURNING expires_at, payload"
            ),
            get: concat!(
                "SELECT expires_at, payload FROM ",
                $table,
                " WHERE key_hash = $1 AND expires_at > $2"
            ),
            sweep: concat!("DELETE FROM ", $table, " WHERE expires_at <= $1"),
        }
    };
}

const TRANSACTIONS: Expiring = expiring!("login_transactions");

/// Stores a transaction unless `$5` live ones (at `$4`) are stored (see the
/// module documentation for how exact the bound is).
const PUT_TRANSACTION_BOUNDED: &str =
    "INSERT INTO login_transactions (key_hash, expires_at, payload)
     SELECT $1, $2, $3
     WHERE (SELECT COUNT(*) FROM login_transactions WHERE expires_at > $4) < $5
     ON CONFLICT (key_hash) DO UPDATE
     SET expires_at = EXCLUDED.expires_at, payload = EXCLUDED.payload";

/// Takes a live transaction only if its browser binding (the hex SHA-256
/// kept in the payload as `browser_binding`) is `$3`. `json`, not `jsonb`:
/// `json` parses without refusing a `\u0000` elsewhere in the payload.
const TAKE_BOUND_TRANSACTION: &str = "DELETE FROM login_transactions
     WHERE key_hash = $1 AND expires_at > $2
       AND payload::json->>'browser_binding' = $3
     RETURNING expires_at, payload";

/// Whether a live transaction is stored under `$1`.
const LIVE_TRANSACTION: &str =
    "SELECT 1 FROM login_transactions WHERE key_hash = $1 AND expires_at > $2";
const CODES: Expiring = expiring!("authorization_codes");
const TOKENS: Expiring = expiring!("access_tokens");

/// The columns [`read_user`] reads, in its order (a macro, so that
/// statements using it are constants).
macro_rules! user_columns {
    () => {
        "user_id, connection, profile, created_at, last_login, logins_count, app_metadata, user_metadata"
    };
}

/// Takes a live code (as `CODES.take`) and reads its user in one
/// statement: the user's columns (as [`read_user`] reads them, null when
/// the user is gone), then the code's `expires_at` and payload. `json`,
/// not `jsonb`, as for [`TAKE_BOUND_TRANSACTION`].
const TAKE_CODE_WITH_USER: &str = concat!(
    "WITH taken AS (
         DELETE FROM authorization_codes WHERE key_hash = $1 AND expires_at > $2
         RETURNING expires_at, payload),
     owner AS (
         SELECT ",
    user_columns!(),
    " FROM users WHERE user_id = (SELECT payload::json->>'user_id' FROM taken))
     SELECT owner.*, taken.expires_at, taken.payload FROM taken LEFT JOIN owner ON true"
);

// After `user_columns!`, which it uses.
mod identities;

fn read_user(row: &Row) -> Result<User, StoreError> {
    let profile: String = column(row, 2, "users")?;
    Ok(User {
        user_id: column(row, 0, "users")?,
        connection: column(row, 1, "users")?,
        profile: from_json(&profile, "users")?,
        created_at: unsigned(row, 3, "users")?,
        last_login: unsigned(row, 4, "users")?,
        logins_count: unsigned(row, 5, "users")?,
        app_metadata: from_json(&column::<String>(row, 6, "users")?, "users")?,
        user_metadata: from_json(&column::<String>(row, 7, "users")?, "users")?,
    })
}

/// An `actions` row: the Action's JSON, its active version.
fn read_action(row: &Row) -> Result<ActionEntry, StoreError> {
    Ok(ActionEntry {
        action: from_json(&column::<String>(row, 0, "actions")?, "actions")?,
        active_version: unsigned(row, 1, "actions")?,
    })
}

/// The columns [`read_action_version`] reads, in its order.
const ACTION_VERSION_COLUMNS: &str = "action_id, version, sha256, size, created_at, created_by";

fn read_action_version(row: &Row) -> Result<ActionVersion, StoreError> {
    const WHAT: &str = "action_versions";
    Ok(ActionVersion {
        action_id: column(row, 0, WHAT)?,
        version: unsigned(row, 1, WHAT)?,
        sha256: column(row, 2, WHAT)?,
        size: unsigned(row, 3, WHAT)?,
        created_at: unsigned(row, 4, WHAT)?,
        created_by: column(row, 5, WHAT)?,
    })
}

fn read_connection(row: &Row) -> Result<StoredConnection, StoreError> {
    let spec: String = column(row, 1, "connections")?;
    Ok(StoredConnection {
        id: column(row, 0, "connections")?,
        spec: from_json(&spec, "connections")?,
    })
}

fn read_client(row: &Row) -> Result<StoredClient, StoreError> {
    from_json(&column::<String>(row, 0, "clients")?, "clients")
}

fn read_mapper(row: &Row) -> Result<MapperEntry, StoreError> {
    Ok(MapperEntry {
        name: column(row, 0, "mappers")?,
        active_version: unsigned(row, 1, "mappers")?,
    })
}

/// A `mapper_versions` row: name, version, sha256, size, created_at,
/// created_by.
fn read_version(row: &Row) -> Result<MapperVersion, StoreError> {
    const WHAT: &str = "mapper_versions";
    Ok(MapperVersion {
        name: column(row, 0, WHAT)?,
        version: unsigned(row, 1, WHAT)?,
        sha256: column(row, 2, WHAT)?,
        size: unsigned(row, 3, WHAT)?,
        created_at: unsigned(row, 4, WHAT)?,
        created_by: column(row, 5, WHAT)?,
    })
}

/// Replaces the post-login bindings with `ids`, in order, inside `tx`.
async fn write_bindings(
    tx: &tokio_postgres::Transaction<'_>,
    ids: &[String],
) -> Result<(), StoreError> {
    const WHAT: &str = "writing bindings";
    tx.execute(
        "DELETE FROM action_bindings WHERE trigger_id = $1",
        &[&POST_LOGIN],
    )
    .await
    .map_err(backend(WHAT))?;
    for (position, id) in ids.iter().enumerate() {
        let position = position as i64;
        tx.execute(
            "INSERT INTO action_bindings (trigger_id, position, action_id) VALUES ($1, $2, $3)",
            &[&POST_LOGIN, &position, id],
        )
        .await
        .map_err(backend(WHAT))?;
    }
    Ok(())
}

/// Listens on [`CATALOG_CHANNEL`] on a connection of its own, passing each
/// notified version to `changes`, until the store is dropped. After every
/// (re)connection it announces a change, so that whatever committed while
/// it was not listening is checked for.
async fn listen_for_changes(
    listen: ListenConfig,
    changes: std::sync::Weak<tokio::sync::watch::Sender<u64>>,
    target: String,
) {
    while changes.strong_count() > 0 {
        let listened = match listen.tls.clone() {
            Tls::Plain => listen_once(&listen.config, NoTls, &changes).await,
            Tls::Rustls(tls) => listen_once(&listen.config, tls, &changes).await,
        };
        if let Err(e) = listened {
            if changes.strong_count() == 0 {
                return;
            }
            tracing::warn!(database = %target, error = %describe(&e),
                "listening for catalog changes failed; checking the version meanwhile");
        }
        tokio::time::sleep(LISTEN_RETRY).await;
    }
}

/// One listening connection's life: `Ok` when the store was dropped.
async fn listen_once<T>(
    config: &tokio_postgres::Config,
    tls: T,
    changes: &std::sync::Weak<tokio::sync::watch::Sender<u64>>,
) -> Result<(), tokio_postgres::Error>
where
    T: MakeTlsConnect<Socket> + Send,
    T::Stream: Send + 'static,
    T::TlsConnect: Send,
    <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
{
    let (client, mut connection) = config.connect(tls).await?;
    let (notified, mut versions) = tokio::sync::mpsc::unbounded_channel();
    // The connection is driven here: its messages carry the notifications.
    let driver = tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(tokio_postgres::AsyncMessage::Notification(n))) => {
                    let _ = notified.send(n.payload().parse::<u64>().ok());
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e),
                None => return Ok(()),
            }
        }
    });
    client
        .batch_execute(&format!("LISTEN {CATALOG_CHANNEL}"))
        .await?;
    match changes.upgrade() {
        Some(changes) => changes.send_modify(|_| {}),
        None => return Ok(()),
    }
    loop {
        tokio::select! {
            version = versions.recv() => match (version, changes.upgrade()) {
                (Some(version), Some(changes)) => changes.send_modify(|seen| {
                    *seen = version.map_or(*seen, |v| v.max(*seen));
                }),
                (_, None) => return Ok(()),
                // The connection ended: say why, or that it closed.
                (None, Some(_)) => {
                    return match driver.await {
                        Ok(Err(e)) => Err(e),
                        _ => client.batch_execute("SELECT 1").await,
                    };
                }
            },
            () = tokio::time::sleep(CATALOG_CHECK_INTERVAL) => {
                if changes.strong_count() == 0 {
                    return Ok(());
                }
            }
        }
    }
}

/// Everything in one PostgreSQL database: see the module documentation.
pub struct PostgresStore {
    pool: Pool<Manager>,
    /// The masked URL, for errors.
    target: String,
    /// What the listening connection needs to connect.
    listen: ListenConfig,
    /// The newest catalog version notified, once a feed was asked for (the
    /// listening task holds it weakly: it stops when the store is dropped).
    changes: std::sync::Mutex<Option<Arc<tokio::sync::watch::Sender<u64>>>>,
}

/// How to open the listening connection: the pool's settings.
#[derive(Clone)]
struct ListenConfig {
    config: tokio_postgres::Config,
    tls: Tls,
    runtime: tokio::runtime::Handle,
}

type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

impl PostgresStore {
    /// The schema version this code writes (the number of migrations it
    /// knows); a database at a higher one is refused.
    pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

    /// Connects to the database at `url` and brings its schema up to date.
    /// Refuses a database whose schema is newer than this code's. Must be
    /// called on a Tokio runtime: the connections live on it.
    pub async fn connect(url: &DatabaseUrl) -> Result<Self, StoreError> {
        Self::connect_with_migrations(url, MIGRATIONS).await
    }

    /// [`PostgresStore::connect`] with other migrations: for tests of the
    /// migration machinery, on a database of their own.
    #[doc(hidden)]
    pub async fn connect_with_migrations(
        url: &DatabaseUrl,
        migrations: &[&str],
    ) -> Result<Self, StoreError> {
        let target = url.to_string();
        let (config, mode) = url
            .options()
            .map_err(|e| StoreError::Backend(format!("postgres: {target}: {e}")))?;
        let manager = Manager {
            config,
            tls: Tls::new(mode)?,
            runtime: tokio::runtime::Handle::try_current().map_err(|_| {
                StoreError::Backend("postgres: the store must be opened on a Tokio runtime".into())
            })?,
            target: target.clone(),
        };
        let listen = ListenConfig {
            config: manager.config.clone(),
            tls: manager.tls.clone(),
            runtime: manager.runtime.clone(),
        };
        let pool = Pool::builder(manager)
            .max_size(MAX_CONNECTIONS)
            .wait_timeout(Some(POOL_WAIT_TIMEOUT))
            .runtime(deadpool::Runtime::Tokio1)
            .build()
            .map_err(|e| StoreError::Backend(format!("postgres: building the pool: {e}")))?;
        let store = Self {
            pool,
            target,
            listen,
            changes: std::sync::Mutex::new(None),
        };
        store
            .migrate(migrations)
            .await
            .map_err(|e| store.in_database(e))?;
        Ok(store)
    }

    /// The schema version of the database (the newest migration applied).
    pub async fn schema_version(&self) -> Result<u32, StoreError> {
        let row = self
            .query_one(
                "SELECT COALESCE(MAX(version), 0) FROM waypass_schema_versions",
                &[],
                "reading the schema version",
            )
            .await?;
        unsigned(&row, 0, "waypass_schema_versions")
    }

    /// Applies the migrations the database has not run, in one transaction
    /// (all or none) under the migration lock, recording each.
    async fn migrate(&self, migrations: &[&str]) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        let tx = conn
            .client
            .transaction()
            .await
            .map_err(backend("starting the schema migration"))?;
        // Released at commit or rollback: openers of one database take
        // turns, and the later ones find the schema current.
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(backend("taking the migration lock"))?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS waypass_schema_versions (
                 version bigint PRIMARY KEY,
                 applied_at bigint NOT NULL
             )",
        )
        .await
        .map_err(backend("creating the schema version table"))?;
        let current: i64 = tx
            .query_one(
                "SELECT COALESCE(MAX(version), 0) FROM waypass_schema_versions",
                &[],
            )
            .await
            .and_then(|row| row.try_get(0))
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
            let version = done as i64 + 1;
            let applied = async {
                tx.batch_execute(sql).await?;
                tx.execute(
                    "INSERT INTO waypass_schema_versions (version, applied_at)
                     VALUES ($1, EXTRACT(EPOCH FROM now())::bigint)",
                    &[&version],
                )
                .await
            };
            applied.await.map_err(|e| {
                StoreError::Backend(format!("schema migration {version}: {}", describe(&e)))
            })?;
        }
        tx.commit()
            .await
            .map_err(backend("committing the schema migration"))
    }

    /// Names the database in an error from opening it.
    fn in_database(&self, e: StoreError) -> StoreError {
        match e {
            StoreError::Backend(m) => StoreError::Backend(format!("{}: {m}", self.target)),
            other => other,
        }
    }

    /// A connection from the pool.
    async fn conn(&self) -> Result<managed::Object<Manager>, StoreError> {
        self.pool.get().await.map_err(|e| match e {
            PoolError::Backend(e) => e,
            PoolError::Timeout(_) => StoreError::Backend(format!(
                "postgres: no free connection to {} within {POOL_WAIT_TIMEOUT:?}",
                self.target
            )),
            other => StoreError::Backend(format!("postgres: {}: {other}", self.target)),
        })
    }

    async fn query(
        &self,
        sql: &'static str,
        params: Params<'_>,
        what: &'static str,
    ) -> Result<Vec<Row>, StoreError> {
        let mut conn = self.conn().await?;
        let statement = conn.prepare(sql).await.map_err(backend(what))?;
        conn.client
            .query(&statement, params)
            .await
            .map_err(backend(what))
    }

    async fn query_opt(
        &self,
        sql: &'static str,
        params: Params<'_>,
        what: &'static str,
    ) -> Result<Option<Row>, StoreError> {
        let mut conn = self.conn().await?;
        let statement = conn.prepare(sql).await.map_err(backend(what))?;
        conn.client
            .query_opt(&statement, params)
            .await
            .map_err(backend(what))
    }

    async fn query_one(
        &self,
        sql: &'static str,
        params: Params<'_>,
        what: &'static str,
    ) -> Result<Row, StoreError> {
        let mut conn = self.conn().await?;
        let statement = conn.prepare(sql).await.map_err(backend(what))?;
        conn.client
            .query_one(&statement, params)
            .await
            .map_err(backend(what))
    }

    /// Runs one statement and returns how many rows it changed.
    async fn execute(
        &self,
        sql: &'static str,
        params: Params<'_>,
        what: &'static str,
    ) -> Result<u64, StoreError> {
        let mut conn = self.conn().await?;
        let statement = conn.prepare(sql).await.map_err(backend(what))?;
        conn.client
            .execute(&statement, params)
            .await
            .map_err(backend(what))
    }

    async fn put_expiring(
        &self,
        table: &Expiring,
        key: SecretHash,
        expires_at: u64,
        payload: &impl Serialize,
    ) -> Result<(), StoreError> {
        let payload = to_json(payload, table.table)?;
        let expires_at = to_db(expires_at, "expires_at")?;
        self.execute(
            table.put,
            &[&&key.as_bytes()[..], &expires_at, &payload],
            table.table,
        )
        .await?;
        Ok(())
    }

    /// Runs `table.take` or `table.get` for a key still valid at `now`.
    async fn read_expiring<T: for<'de> Deserialize<'de>>(
        &self,
        table: &Expiring,
        sql: &'static str,
        key: SecretHash,
        now: u64,
    ) -> Result<Option<(u64, T)>, StoreError> {
        let now = to_db(now, "now")?;
        let row = self
            .query_opt(sql, &[&&key.as_bytes()[..], &now], table.table)
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let expires_at = unsigned(&row, 0, table.table)?;
        let payload: String = column(&row, 1, table.table)?;
        Ok(Some((expires_at, from_json(&payload, table.table)?)))
    }
}

#[async_trait]
impl Store for PostgresStore {
    async fn put_transaction(
        &self,
        state: SecretHash,
        tx: LoginTransaction,
        now: u64,
        max_live: usize,
    ) -> Result<PutTransaction, StoreError> {
        let payload = to_json(&StoredTransaction::new(&tx), TRANSACTIONS.table)?;
        let expires_at = to_db(tx.expires_at, "expires_at")?;
        let now = to_db(now, "now")?;
        let max_live = i64::try_from(max_live).unwrap_or(i64::MAX);
        let inserted = self
            .execute(
                PUT_TRANSACTION_BOUNDED,
                &[
                    &&state.as_bytes()[..],
                    &expires_at,
                    &payload,
                    &now,
                    &max_live,
                ],
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
        let key = &state.as_bytes()[..];
        let at = to_db(now, "now")?;
        if let Some(binding) = binding {
            let taken = self
                .query_opt(
                    TAKE_BOUND_TRANSACTION,
                    &[&key, &at, &binding.to_hex()],
                    TRANSACTIONS.table,
                )
                .await?;
            if let Some(row) = taken {
                let expires_at = unsigned(&row, 0, TRANSACTIONS.table)?;
                let payload: String = column(&row, 1, TRANSACTIONS.table)?;
                let tx: StoredTransaction = from_json(&payload, TRANSACTIONS.table)?;
                return Ok(TakeTransaction::Taken(Box::new(
                    tx.into_transaction(expires_at),
                )));
            }
        }
        // Nothing taken: say whether a live login is there for another browser.
        let live = self
            .query_opt(LIVE_TRANSACTION, &[&key, &at], TRANSACTIONS.table)
            .await?
            .is_some();
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
            .await
    }

    async fn take_code(
        &self,
        code: SecretHash,
        now: u64,
    ) -> Result<Option<AuthorizationGrant>, StoreError> {
        Ok(self
            .read_expiring::<AuthorizationGrant>(&CODES, CODES.take, code, now)
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
        let now = to_db(now, "now")?;
        let Some(row) = self
            .query_opt(
                TAKE_CODE_WITH_USER,
                &[&&code.as_bytes()[..], &now],
                CODES.table,
            )
            .await?
        else {
            return Ok(None);
        };
        // The code's two columns come last, after however many the user has.
        let code_at = row.len() - 2;
        let expires_at = unsigned(&row, code_at, CODES.table)?;
        let grant: AuthorizationGrant = from_json(
            &column::<String>(&row, code_at + 1, CODES.table)?,
            CODES.table,
        )?;
        // The user's columns are null when the join found nobody.
        let user = match column::<Option<String>>(&row, 0, "users")? {
            Some(_) => Some(read_user(&row)?),
            None => None,
        };
        Ok(Some((
            AuthorizationGrant {
                expires_at,
                ..grant
            },
            user,
        )))
    }

    async fn put_access_token(
        &self,
        token: SecretHash,
        grant: AccessGrant,
    ) -> Result<(), StoreError> {
        self.put_expiring(&TOKENS, token, grant.expires_at, &grant)
            .await
    }

    async fn get_access_token(
        &self,
        token: SecretHash,
        now: u64,
    ) -> Result<Option<AccessGrant>, StoreError> {
        Ok(self
            .read_expiring::<AccessGrant>(&TOKENS, TOKENS.get, token, now)
            .await?
            .map(|(expires_at, grant)| AccessGrant {
                expires_at,
                ..grant
            }))
    }

    async fn delete_access_tokens_of_client(&self, client_id: &str) -> Result<u64, StoreError> {
        // The client id lives in the JSON payload (the table has no column
        // for it): a scan, fine for an API call that rotates or deletes.
        // `json`, not `jsonb`, for the reason TAKE_BOUND_TRANSACTION gives.
        self.execute(
            "DELETE FROM access_tokens WHERE payload::json->>'client_id' = $1",
            &[&client_id],
            "revoking a client's access tokens",
        )
        .await
    }

    async fn sweep_expired(&self, now: u64) -> Result<Swept, StoreError> {
        let now = to_db(now, "now")?;
        let mut swept = [0u64; 3];
        for (count, table) in swept.iter_mut().zip([&TRANSACTIONS, &CODES, &TOKENS]) {
            *count = self.execute(table.sweep, &[&now], table.table).await?;
        }
        let [transactions, codes, tokens] = swept;
        Ok(Swept {
            transactions,
            codes,
            tokens,
        })
    }

    async fn record_login(
        &self,
        user_id: &str,
        connection: &str,
        profile: Profile,
        now: u64,
    ) -> Result<User, StoreError> {
        self.login_with_identity(user_id, connection, &profile, now)
            .await
    }

    async fn record_identity_login(
        &self,
        login: &IdentityLogin,
        now: u64,
    ) -> Result<IdentityOutcome, StoreError> {
        self.identity_login(login, None, now).await
    }

    async fn record_identity_login_with_tokens(
        &self,
        login: &IdentityLogin,
        tokens: &IdpTokens,
        now: u64,
    ) -> Result<IdentityOutcome, StoreError> {
        self.identity_login(login, Some(tokens), now).await
    }

    async fn put_session_and_code(
        &self,
        session_key: SecretHash,
        session: &Session,
        code: SecretHash,
        grant: AuthorizationGrant,
    ) -> Result<(), StoreError> {
        self.put_session_with(session_key, session, Some((code, &grant)))
            .await
    }

    async fn identities(&self, user_ids: &[String]) -> Result<Vec<StoredIdentity>, StoreError> {
        self.identities_of(user_ids).await
    }

    async fn unlink_identity(
        &self,
        user_id: &str,
        connection: &str,
        provider_user_id: &str,
        new_user_id: &str,
        now: u64,
    ) -> Result<Unlinked, StoreError> {
        self.unlink(user_id, (connection, provider_user_id), new_user_id, now)
            .await
    }

    async fn get_user(&self, user_id: &str) -> Result<Option<User>, StoreError> {
        const GET_USER: &str =
            concat!("SELECT ", user_columns!(), " FROM users WHERE user_id = $1");
        self.query_opt(GET_USER, &[&user_id], "reading a user")
            .await?
            .as_ref()
            .map(read_user)
            .transpose()
    }

    async fn list_users(
        &self,
        offset: usize,
        limit: usize,
        email: Option<&str>,
    ) -> Result<Vec<User>, StoreError> {
        let needle = email.map(str::to_lowercase);
        let needle = needle.as_deref().map(str::as_bytes);
        // PostgreSQL's LIMIT and OFFSET are bigint; beyond that is "all".
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let offset = i64::try_from(offset).unwrap_or(i64::MAX);
        // A byte search, not `LIKE`: `%` and `_` in a search are literal;
        // and in UTF-8 a byte match is a match of whole characters.
        const LIST_USERS: &str = concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE $1::bytea IS NULL OR position($1 IN email_lower) > 0
              ORDER BY user_id LIMIT $2 OFFSET $3"
        );
        self.query(LIST_USERS, &[&needle, &limit, &offset], "listing users")
            .await?
            .iter()
            .map(read_user)
            .collect()
    }

    async fn count_users(&self, email: Option<&str>) -> Result<usize, StoreError> {
        let needle = email.map(str::to_lowercase);
        let needle = needle.as_deref().map(str::as_bytes);
        let rows = self
            .query(
                "SELECT COUNT(*) FROM users WHERE $1::bytea IS NULL OR position($1 IN email_lower) > 0",
                &[&needle],
                "counting users",
            )
            .await?;
        let count: i64 = rows.first().map_or(0, |row| row.get(0));
        Ok(usize::try_from(count).unwrap_or(0))
    }

    async fn delete_user(&self, user_id: &str) -> Result<bool, StoreError> {
        let deleted = self
            .execute(
                "DELETE FROM users WHERE user_id = $1",
                &[&user_id],
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
        // FOR UPDATE: a merge on another instance waits for this one's
        // commit, then reads what it wrote; no merge is lost.
        const LOCK_USER: &str = concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE user_id = $1 FOR UPDATE"
        );
        const UPDATE: &str =
            "UPDATE users SET app_metadata = $2, user_metadata = $3 WHERE user_id = $1";
        let mut conn = self.conn().await?;
        let lock = conn.prepare(LOCK_USER).await.map_err(backend(WHAT))?;
        let update = conn.prepare(UPDATE).await.map_err(backend(WHAT))?;
        let tx = conn.client.transaction().await.map_err(backend(WHAT))?;
        let Some(row) = tx
            .query_opt(&lock, &[&user_id])
            .await
            .map_err(backend(WHAT))?
        else {
            return Ok(None);
        };
        let mut stored = read_user(&row)?;
        merge_metadata(&mut stored.app_metadata, app);
        merge_metadata(&mut stored.user_metadata, user);
        let app_json = to_json(&stored.app_metadata, "app_metadata")?;
        let user_json = to_json(&stored.user_metadata, "user_metadata")?;
        tx.execute(&update, &[&user_id, &app_json, &user_json])
            .await
            .map_err(backend(WHAT))?;
        tx.commit().await.map_err(backend(WHAT))?;
        Ok(Some(stored))
    }

    async fn catalog_version(&self) -> Result<u64, StoreError> {
        let row = self
            .query_one(
                "SELECT version FROM catalog_version WHERE id = 1",
                &[],
                "reading the catalog version",
            )
            .await?;
        unsigned(&row, 0, "catalog_version")
    }

    async fn catalog(&self) -> Result<StoredCatalog, StoreError> {
        const WHAT: &str = "reading the catalog";
        const VERSION: &str = "SELECT version FROM catalog_version WHERE id = 1";
        const CLIENTS: &str = "SELECT client FROM clients ORDER BY client_id";
        const CONNECTIONS: &str = "SELECT id, spec FROM connections ORDER BY id";
        const MAPPERS: &str = "SELECT name, active_version FROM mappers ORDER BY name";
        const VERSIONS: &str = "SELECT name, version, sha256, size, created_at, created_by
             FROM mapper_versions ORDER BY name, version";
        const ACTIONS: &str = "SELECT action, active_version FROM actions ORDER BY id";
        const ACTION_VERSIONS: &str =
            "SELECT action_id, version, sha256, size, created_at, created_by
             FROM action_versions ORDER BY action_id, version";
        const BINDINGS: &str = "SELECT action_id FROM action_bindings
             WHERE trigger_id = 'post-login' ORDER BY position";
        const APIS: &str = "SELECT resource_server FROM resource_servers ORDER BY id";
        let mut conn = self.conn().await?;
        let mut prepared = Vec::with_capacity(10);
        for sql in [
            VERSION,
            CLIENTS,
            CONNECTIONS,
            MAPPERS,
            VERSIONS,
            ACTIONS,
            ACTION_VERSIONS,
            BINDINGS,
            APIS,
            branding::READ,
        ] {
            prepared.push(conn.prepare(sql).await.map_err(backend(WHAT))?);
        }
        // One snapshot of every table: REPEATABLE READ reads all of them as
        // of the transaction's first statement.
        let tx = conn
            .client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await
            .map_err(backend(WHAT))?;
        let mut rows = Vec::with_capacity(10);
        for statement in &prepared {
            rows.push(tx.query(statement, &[]).await.map_err(backend(WHAT))?);
        }
        tx.commit().await.map_err(backend(WHAT))?;
        let [
            version,
            clients,
            connections,
            mappers,
            versions,
            actions,
            action_versions,
            bindings,
            apis,
            brand,
        ] = <[Vec<Row>; 10]>::try_from(rows).map_err(|_| StoreError::Backend(WHAT.into()))?;
        Ok(StoredCatalog {
            version: version
                .first()
                .map(|row| unsigned(row, 0, "catalog_version"))
                .transpose()?
                .unwrap_or(0),
            clients: clients.iter().map(read_client).collect::<Result<_, _>>()?,
            connections: connections
                .iter()
                .map(read_connection)
                .collect::<Result<_, _>>()?,
            mappers: mappers.iter().map(read_mapper).collect::<Result<_, _>>()?,
            versions: versions
                .iter()
                .map(read_version)
                .collect::<Result<_, _>>()?,
            actions: actions.iter().map(read_action).collect::<Result<_, _>>()?,
            action_versions: action_versions
                .iter()
                .map(read_action_version)
                .collect::<Result<_, _>>()?,
            post_login_bindings: bindings
                .iter()
                .map(|row| column(row, 0, "action_bindings"))
                .collect::<Result<_, _>>()?,
            resource_servers: apis
                .iter()
                .map(sessions::read_resource_server)
                .collect::<Result<_, _>>()?,
            branding: branding::read_branding(&brand)?,
        })
    }

    fn catalog_feed(&self) -> CatalogFeed {
        let mut changes = self.changes.lock().unwrap_or_else(|p| p.into_inner());
        let sender = match &*changes {
            Some(sender) => Arc::clone(sender),
            None => {
                let sender = Arc::new(tokio::sync::watch::Sender::new(0));
                let listen = self.listen.clone();
                let weak = Arc::downgrade(&sender);
                listen
                    .runtime
                    .clone()
                    .spawn(listen_for_changes(listen, weak, self.target.clone()));
                *changes = Some(Arc::clone(&sender));
                sender
            }
        };
        CatalogFeed {
            notified: Some(sender.subscribe()),
            poll_every: CATALOG_CHECK_INTERVAL,
        }
    }

    async fn put_connection(&self, connection: &StoredConnection) -> Result<(), StoreError> {
        let spec = to_json(&connection.spec, "a connection")?;
        let mut conn = self.conn().await?;
        let statement = conn
            .prepare(
                "INSERT INTO connections (id, name, spec) VALUES ($1, $2, $3)
                 ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, spec = EXCLUDED.spec",
            )
            .await
            .map_err(backend("writing a connection"))?;
        let written = conn
            .client
            .execute(&statement, &[&connection.id, &connection.spec.name, &spec])
            .await;
        match written {
            Ok(_) => Ok(()),
            Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict(format!(
                "connection `{}`",
                connection.spec.name
            ))),
            Err(e) => Err(backend("writing a connection")(e)),
        }
    }

    async fn connections(&self) -> Result<Vec<StoredConnection>, StoreError> {
        self.query(
            "SELECT id, spec FROM connections ORDER BY id",
            &[],
            "listing connections",
        )
        .await?
        .iter()
        .map(read_connection)
        .collect()
    }

    async fn delete_connection(&self, id: &str) -> Result<bool, StoreError> {
        let deleted = self
            .execute(
                "DELETE FROM connections WHERE id = $1",
                &[&id],
                "deleting a connection",
            )
            .await?;
        Ok(deleted > 0)
    }

    async fn put_client(&self, client: &StoredClient) -> Result<(), StoreError> {
        let json = to_json(client, "a client")?;
        self.execute(
            "INSERT INTO clients (client_id, client) VALUES ($1, $2)
             ON CONFLICT (client_id) DO UPDATE SET client = EXCLUDED.client",
            &[&client.client_id, &json],
            "writing a client",
        )
        .await?;
        Ok(())
    }

    async fn clients(&self) -> Result<Vec<StoredClient>, StoreError> {
        self.query(
            "SELECT client FROM clients ORDER BY client_id",
            &[],
            "listing clients",
        )
        .await?
        .iter()
        .map(read_client)
        .collect()
    }

    async fn delete_client(&self, client_id: &str) -> Result<bool, StoreError> {
        let deleted = self
            .execute(
                "DELETE FROM clients WHERE client_id = $1",
                &[&client_id],
                "deleting a client",
            )
            .await?;
        Ok(deleted > 0)
    }

    async fn put_resource_server(&self, api: &StoredResourceServer) -> Result<(), StoreError> {
        let json = to_json(api, "a resource server")?;
        let mut conn = self.conn().await?;
        let statement = conn
            .prepare(
                "INSERT INTO resource_servers (id, identifier, resource_server) VALUES ($1, $2, $3)
                 ON CONFLICT (id) DO UPDATE SET identifier = EXCLUDED.identifier,
                     resource_server = EXCLUDED.resource_server",
            )
            .await
            .map_err(backend("writing a resource server"))?;
        match conn
            .client
            .execute(&statement, &[&api.id, &api.identifier, &json])
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_unique_violation(&e) => Err(StoreError::Conflict(format!(
                "resource server `{}`",
                api.identifier
            ))),
            Err(e) => Err(backend("writing a resource server")(e)),
        }
    }

    async fn resource_servers(&self) -> Result<Vec<StoredResourceServer>, StoreError> {
        self.query(
            "SELECT resource_server FROM resource_servers ORDER BY id",
            &[],
            "listing resource servers",
        )
        .await?
        .iter()
        .map(sessions::read_resource_server)
        .collect()
    }

    async fn branding(&self) -> Result<StoredBranding, StoreError> {
        let rows = self
            .query(branding::READ, &[], "reading the branding")
            .await?;
        branding::read_branding(&rows)
    }

    async fn put_branding_settings(&self, settings: &str) -> Result<(), StoreError> {
        self.execute(
            branding::PUT_SETTINGS,
            &[&settings],
            "writing the branding settings",
        )
        .await
        .map(drop)
    }

    async fn put_universal_login_template(
        &self,
        template: Option<&str>,
    ) -> Result<bool, StoreError> {
        const WHAT: &str = "writing the page template";
        let mut conn = self.conn().await?;
        let tx = conn.client.transaction().await.map_err(backend(WHAT))?;
        let had = tx
            .query_opt(branding::LOCK_TEMPLATE, &[])
            .await
            .map_err(backend(WHAT))?
            .map(|row| column(&row, 0, "branding"))
            .transpose()?
            .unwrap_or(false);
        tx.execute(branding::PUT_TEMPLATE, &[&template])
            .await
            .map_err(backend(WHAT))?;
        tx.commit().await.map_err(backend(WHAT))?;
        Ok(had)
    }

    async fn delete_resource_server(&self, id: &str) -> Result<bool, StoreError> {
        let deleted = self
            .execute(
                "DELETE FROM resource_servers WHERE id = $1",
                &[&id],
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
        const WHAT: &str = "adding a mapper version";
        // Creates the mapper's row or, if it exists, locks it (a no-op
        // update): either way this transaction holds it until commit, and
        // another instance adding to the same name waits here.
        const LOCK: &str = "INSERT INTO mappers (name, active_version) VALUES ($1, 0)
             ON CONFLICT (name) DO UPDATE SET name = EXCLUDED.name";
        // A statement of its own, after the lock: in READ COMMITTED each
        // statement sees what committed before it started, so this sees
        // the version the previous lock holder added.
        const LAST: &str = "SELECT COALESCE(MAX(version), 0) FROM mapper_versions WHERE name = $1";
        const INSERT: &str = "INSERT INTO mapper_versions
             (name, version, sha256, size, created_at, created_by, bytes)
             VALUES ($1, $2, $3, $4, $5, $6, $7)";
        const ACTIVATE: &str = "UPDATE mappers SET active_version = $2 WHERE name = $1";

        let size = bytes.len() as u64;
        let (db_size, db_now) = (to_db(size, "size")?, to_db(now, "now")?);
        let mut conn = self.conn().await?;
        let mut prepared = Vec::with_capacity(4);
        for sql in [LOCK, LAST, INSERT, ACTIVATE] {
            prepared.push(conn.prepare(sql).await.map_err(backend(WHAT))?);
        }
        let tx = conn.client.transaction().await.map_err(backend(WHAT))?;
        tx.execute(&prepared[0], &[&name])
            .await
            .map_err(backend(WHAT))?;
        let last: i64 = tx
            .query_one(&prepared[1], &[&name])
            .await
            .and_then(|row| row.try_get(0))
            .map_err(backend(WHAT))?;
        let version = u32::try_from(last + 1).map_err(|_| {
            StoreError::Backend(format!("mapper `{name}` has run out of version numbers"))
        })?;
        let db_version = i64::from(version);
        tx.execute(
            &prepared[2],
            &[
                &name,
                &db_version,
                &sha256,
                &db_size,
                &db_now,
                &created_by,
                &bytes,
            ],
        )
        .await
        .map_err(backend(WHAT))?;
        tx.execute(&prepared[3], &[&name, &db_version])
            .await
            .map_err(backend(WHAT))?;
        tx.commit().await.map_err(backend(WHAT))?;
        Ok(MapperVersion {
            name: name.to_owned(),
            version,
            sha256: sha256.to_owned(),
            size,
            created_at: now,
            created_by: created_by.to_owned(),
        })
    }

    async fn mapper_versions(&self, name: &str) -> Result<Vec<MapperVersion>, StoreError> {
        self.query(
            "SELECT name, version, sha256, size, created_at, created_by
             FROM mapper_versions WHERE name = $1 ORDER BY version",
            &[&name],
            "listing mapper versions",
        )
        .await?
        .iter()
        .map(read_version)
        .collect()
    }

    async fn mapper_bytes(&self, name: &str, version: u32) -> Result<Option<Vec<u8>>, StoreError> {
        let version = i64::from(version);
        self.query_opt(
            "SELECT bytes FROM mapper_versions WHERE name = $1 AND version = $2",
            &[&name, &version],
            "reading a mapper",
        )
        .await?
        .map(|row| column(&row, 0, "mapper_versions"))
        .transpose()
    }

    async fn activate_mapper_version(&self, name: &str, version: u32) -> Result<bool, StoreError> {
        let version = i64::from(version);
        let updated = self
            .execute(
                "UPDATE mappers SET active_version = $2 WHERE name = $1 AND EXISTS
                     (SELECT 1 FROM mapper_versions WHERE name = $1 AND version = $2)",
                &[&name, &version],
                "activating a mapper version",
            )
            .await?;
        Ok(updated > 0)
    }

    async fn mappers(&self) -> Result<Vec<MapperEntry>, StoreError> {
        self.query(
            "SELECT name, active_version FROM mappers ORDER BY name",
            &[],
            "listing mappers",
        )
        .await?
        .iter()
        .map(read_mapper)
        .collect()
    }

    async fn delete_mapper(&self, name: &str) -> Result<bool, StoreError> {
        // One statement: the versions go with it (ON DELETE CASCADE, which
        // PostgreSQL always enforces).
        let deleted = self
            .execute(
                "DELETE FROM mappers WHERE name = $1",
                &[&name],
                "deleting a mapper",
            )
            .await?;
        Ok(deleted > 0)
    }

    async fn put_action(
        &self,
        action: &StoredAction,
        draft: Option<&[u8]>,
    ) -> Result<(), StoreError> {
        const WHAT: &str = "writing an action";
        let json = to_json(action, "an action")?;
        let mut conn = self.conn().await?;
        // An upsert on the id; the draft only when one is given.
        let statement = conn
            .prepare(
                "INSERT INTO actions (id, name, action, active_version, draft)
                 VALUES ($1, $2, $3, 0, $4)
                 ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name,
                     action = EXCLUDED.action,
                     draft = COALESCE(EXCLUDED.draft, actions.draft)",
            )
            .await
            .map_err(backend(WHAT))?;
        let written = conn
            .client
            .execute(&statement, &[&action.id, &action.name, &json, &draft])
            .await;
        match written {
            Ok(_) => Ok(()),
            Err(e) if is_unique_violation(&e) => {
                Err(StoreError::Conflict(format!("action `{}`", action.name)))
            }
            Err(e) => Err(backend(WHAT)(e)),
        }
    }

    async fn put_rule(&self, rule: &StoredRule) -> Result<(), StoreError> {
        const WHAT: &str = "writing a rule";
        let json = to_json(rule, "a rule")?;
        let mut conn = self.conn().await?;
        // An upsert on the id: another Rule's name is a unique violation.
        let statement = conn
            .prepare(
                "INSERT INTO rules (id, name, rule) VALUES ($1, $2, $3)
                 ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, rule = EXCLUDED.rule",
            )
            .await
            .map_err(backend(WHAT))?;
        let written = conn
            .client
            .execute(&statement, &[&rule.id, &rule.name, &json])
            .await;
        match written {
            Ok(_) => Ok(()),
            Err(e) if is_unique_violation(&e) => {
                Err(StoreError::Conflict(format!("rule `{}`", rule.name)))
            }
            Err(e) => Err(backend(WHAT)(e)),
        }
    }

    async fn rules(&self) -> Result<Vec<StoredRule>, StoreError> {
        let mut rules = self
            .query("SELECT rule FROM rules", &[], "listing rules")
            .await?
            .iter()
            .map(|row| from_json(&column::<String>(row, 0, "rules")?, "rules"))
            .collect::<Result<Vec<StoredRule>, _>>()?;
        sort_rules(&mut rules);
        Ok(rules)
    }

    async fn delete_rule(&self, id: &str) -> Result<bool, StoreError> {
        Ok(self
            .execute("DELETE FROM rules WHERE id = $1", &[&id], "deleting a rule")
            .await?
            > 0)
    }

    async fn actions(&self) -> Result<Vec<ActionEntry>, StoreError> {
        self.query(
            "SELECT action, active_version FROM actions ORDER BY id",
            &[],
            "listing actions",
        )
        .await?
        .iter()
        .map(read_action)
        .collect()
    }

    async fn delete_action(&self, id: &str) -> Result<bool, StoreError> {
        const WHAT: &str = "deleting an action";
        let mut conn = self.conn().await?;
        let tx = conn.client.transaction().await.map_err(backend(WHAT))?;
        // Bindings and versions go with it (ON DELETE CASCADE); the
        // bindings left are renumbered so positions stay dense.
        let deleted = tx
            .execute("DELETE FROM actions WHERE id = $1", &[&id])
            .await
            .map_err(backend(WHAT))?;
        let left: Vec<String> = tx
            .query(
                "SELECT action_id FROM action_bindings WHERE trigger_id = $1 ORDER BY position",
                &[&POST_LOGIN],
            )
            .await
            .map_err(backend(WHAT))?
            .iter()
            .map(|row| column(row, 0, "action_bindings"))
            .collect::<Result<_, _>>()?;
        write_bindings(&tx, &left).await?;
        tx.commit().await.map_err(backend(WHAT))?;
        Ok(deleted > 0)
    }

    async fn deploy_action(
        &self,
        id: &str,
        created_by: &str,
        now: u64,
    ) -> Result<Option<ActionVersion>, StoreError> {
        const WHAT: &str = "deploying an action";
        let db_now = to_db(now, "now")?;
        let mut conn = self.conn().await?;
        let tx = conn.client.transaction().await.map_err(backend(WHAT))?;
        // FOR UPDATE: another instance deploying the same Action waits
        // here, then numbers its version after this one.
        let Some(row) = tx
            .query_opt(
                "SELECT action, draft FROM actions WHERE id = $1 FOR UPDATE",
                &[&id],
            )
            .await
            .map_err(backend(WHAT))?
        else {
            return Ok(None);
        };
        let action: StoredAction = from_json(&column::<String>(&row, 0, "actions")?, "actions")?;
        let draft: Option<Vec<u8>> = column(&row, 1, "actions")?;
        let (Some(draft), Some(sha256)) = (draft, action.draft_sha256) else {
            return Ok(None);
        };
        let last: i64 = tx
            .query_one(
                "SELECT COALESCE(MAX(version), 0) FROM action_versions WHERE action_id = $1",
                &[&id],
            )
            .await
            .and_then(|row| row.try_get(0))
            .map_err(backend(WHAT))?;
        let version = u32::try_from(last + 1).map_err(|_| {
            StoreError::Backend(format!("action `{id}` has run out of version numbers"))
        })?;
        let db_version = i64::from(version);
        let size = draft.len() as u64;
        let db_size = to_db(size, "size")?;
        tx.execute(
            "INSERT INTO action_versions (action_id, version, sha256, size, created_at, created_by, bytes)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[&id, &db_version, &sha256, &db_size, &db_now, &created_by, &draft],
        )
        .await
        .map_err(backend(WHAT))?;
        tx.execute(
            "UPDATE actions SET active_version = $2 WHERE id = $1",
            &[&id, &db_version],
        )
        .await
        .map_err(backend(WHAT))?;
        tx.commit().await.map_err(backend(WHAT))?;
        Ok(Some(ActionVersion {
            action_id: id.to_owned(),
            version,
            sha256,
            size,
            created_at: now,
            created_by: created_by.to_owned(),
        }))
    }

    async fn action_versions(&self, id: &str) -> Result<Vec<ActionVersion>, StoreError> {
        let conn = self.conn().await?;
        conn.client
            .query(
                &format!(
                    "SELECT {ACTION_VERSION_COLUMNS} FROM action_versions
                     WHERE action_id = $1 ORDER BY version"
                ),
                &[&id],
            )
            .await
            .map_err(backend("listing action versions"))?
            .iter()
            .map(read_action_version)
            .collect()
    }

    async fn action_bytes(&self, id: &str, version: u32) -> Result<Option<Vec<u8>>, StoreError> {
        let version = i64::from(version);
        self.query_opt(
            "SELECT bytes FROM action_versions WHERE action_id = $1 AND version = $2",
            &[&id, &version],
            "reading an action",
        )
        .await?
        .map(|row| column(&row, 0, "action_versions"))
        .transpose()
    }

    async fn activate_action_version(&self, id: &str, version: u32) -> Result<bool, StoreError> {
        let version = i64::from(version);
        let updated = self
            .execute(
                "UPDATE actions SET active_version = $2 WHERE id = $1 AND EXISTS
                     (SELECT 1 FROM action_versions WHERE action_id = $1 AND version = $2)",
                &[&id, &version],
                "activating an action version",
            )
            .await?;
        Ok(updated > 0)
    }

    async fn post_login_bindings(&self) -> Result<Vec<String>, StoreError> {
        self.query(
            "SELECT action_id FROM action_bindings WHERE trigger_id = 'post-login' ORDER BY position",
            &[],
            "listing bindings",
        )
        .await?
        .iter()
        .map(|row| column(row, 0, "action_bindings"))
        .collect()
    }

    async fn set_post_login_bindings(&self, ids: &[String]) -> Result<(), StoreError> {
        const WHAT: &str = "writing bindings";
        let mut conn = self.conn().await?;
        let tx = conn.client.transaction().await.map_err(backend(WHAT))?;
        for id in ids {
            // FOR SHARE: the Action cannot be deleted before this commits.
            let known = tx
                .query_opt("SELECT 1 FROM actions WHERE id = $1 FOR SHARE", &[id])
                .await
                .map_err(backend(WHAT))?;
            if known.is_none() {
                return Err(StoreError::Missing(format!("action `{id}`")));
            }
        }
        write_bindings(&tx, ids).await?;
        tx.commit().await.map_err(backend(WHAT))
    }

    async fn try_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: u64,
        now: u64,
    ) -> Result<bool, StoreError> {
        // One statement: a new lease is inserted; an existing one is taken
        // over only when this holder has it or it has expired. Of inserts
        // racing for a new name, the later ones wait for the first and then
        // find it held.
        const TAKE_LEASE: &str = "INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at
             WHERE leases.holder = EXCLUDED.holder OR leases.expires_at <= $4";
        let expires_at = to_db(now.saturating_add(ttl).min(i64::MAX as u64), "expires_at")?;
        let now = to_db(now, "now")?;
        let taken = self
            .execute(
                TAKE_LEASE,
                &[&name, &holder, &expires_at, &now],
                "taking a lease",
            )
            .await?;
        Ok(taken > 0)
    }

    async fn signing_keys(&self) -> Result<Option<String>, StoreError> {
        self.query_opt(
            "SELECT document FROM signing_keys WHERE id = 1",
            &[],
            "reading the signing keys",
        )
        .await?
        .map(|row| column(&row, 0, "signing_keys"))
        .transpose()
    }

    async fn init_signing_keys(&self, document: &str) -> Result<String, StoreError> {
        // Two statements, not one: an insert that waited for another
        // instance's insert of the row finds it committed, and only a
        // statement started after that sees it.
        self.execute(
            "INSERT INTO signing_keys (id, document) VALUES (1, $1) ON CONFLICT (id) DO NOTHING",
            &[&document],
            "storing the signing keys",
        )
        .await?;
        let row = self
            .query_one(
                "SELECT document FROM signing_keys WHERE id = 1",
                &[],
                "storing the signing keys",
            )
            .await?;
        column(&row, 0, "signing_keys")
    }

    async fn connection_keys(&self, connection_id: &str) -> Result<Option<String>, StoreError> {
        self.query_opt(
            "SELECT document FROM connection_keys WHERE connection_id = $1",
            &[&connection_id],
            "reading a connection's keys",
        )
        .await?
        .map(|row| column(&row, 0, "connection_keys"))
        .transpose()
    }

    async fn init_connection_keys(
        &self,
        connection_id: &str,
        document: &str,
    ) -> Result<String, StoreError> {
        // Two statements, as for the signing keys: a statement started after
        // a concurrent insert committed sees its row.
        self.execute(
            "INSERT INTO connection_keys (connection_id, document) VALUES ($1, $2)
             ON CONFLICT (connection_id) DO NOTHING",
            &[&connection_id, &document],
            "storing a connection's keys",
        )
        .await?;
        let row = self
            .query_one(
                "SELECT document FROM connection_keys WHERE connection_id = $1",
                &[&connection_id],
                "storing a connection's keys",
            )
            .await?;
        column(&row, 0, "connection_keys")
    }

    async fn replace_connection_keys(
        &self,
        connection_id: &str,
        current: &str,
        next: &str,
    ) -> Result<bool, StoreError> {
        let replaced = self
            .execute(
                "UPDATE connection_keys SET document = $3 WHERE connection_id = $1 AND document = $2",
                &[&connection_id, &current, &next],
                "rotating a connection's keys",
            )
            .await?;
        Ok(replaced > 0)
    }

    async fn replace_signing_keys(
        &self,
        expected: Option<&str>,
        document: &str,
    ) -> Result<bool, StoreError> {
        const WHAT: &str = "replacing the signing keys";
        const UPDATE: &str = "UPDATE signing_keys SET document = $1 WHERE id = 1 AND document = $2";
        const INSERT: &str = "INSERT INTO signing_keys (id, document) VALUES (1, $1)
             ON CONFLICT (id) DO NOTHING";
        let mut conn = self.conn().await?;
        let update = conn.prepare(UPDATE).await.map_err(backend(WHAT))?;
        let insert = conn.prepare(INSERT).await.map_err(backend(WHAT))?;
        let tx = conn.client.transaction().await.map_err(backend(WHAT))?;
        let written = match expected {
            Some(old) => tx.execute(&update, &[&document, &old]).await,
            None => tx.execute(&insert, &[&document]).await,
        }
        .map_err(backend(WHAT))?;
        if written == 1 {
            // Keys are served by every instance: they reload when the
            // catalog version moves, announced as the catalog trigger
            // announces it.
            tx.batch_execute(
                "WITH bumped AS (UPDATE catalog_version SET version = version + 1 WHERE id = 1 RETURNING version)
                 SELECT pg_notify('waypass_catalog', version::text) FROM bumped",
            )
            .await
            .map_err(backend(WHAT))?;
        }
        tx.commit().await.map_err(backend(WHAT))?;
        Ok(written == 1)
    }

    async fn put_log_events(&self, events: &[LogEvent]) -> Result<(), StoreError> {
        const WHAT: &str = "storing log events";
        const INSERT: &str =
            "INSERT INTO log_events (log_id, date, type, user_id, connection, body)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (log_id) DO NOTHING";
        let mut rows = Vec::with_capacity(events.len());
        for e in events {
            rows.push((to_db(e.date, "date")?, to_json(e, "a log event")?));
        }
        let mut conn = self.conn().await?;
        let insert = conn.prepare(INSERT).await.map_err(backend(WHAT))?;
        let tx = conn.client.transaction().await.map_err(backend(WHAT))?;
        for (e, (date, body)) in events.iter().zip(&rows) {
            tx.execute(
                &insert,
                &[
                    &e.log_id,
                    date,
                    &e.event_type,
                    &e.user_id,
                    &e.connection,
                    body,
                ],
            )
            .await
            .map_err(backend(WHAT))?;
        }
        tx.commit().await.map_err(backend(WHAT))
    }

    async fn log_events(&self, query: &LogQuery) -> Result<LogPage, StoreError> {
        macro_rules! filter {
            () => {
                "($1::text IS NULL OR type = $1) AND ($2::text IS NULL OR user_id = $2)
                 AND ($3::text IS NULL OR connection = $3) AND ($4::bigint IS NULL OR date >= $4)
                 AND ($5::bigint IS NULL OR date <= $5)"
            };
        }
        const NEWEST_FIRST: &str = concat!(
            "SELECT body FROM log_events WHERE ",
            filter!(),
            " AND $6::text IS NULL ORDER BY log_id DESC LIMIT $7 OFFSET $8"
        );
        const AFTER: &str = concat!(
            "SELECT body FROM log_events WHERE ",
            filter!(),
            " AND log_id > $6::text ORDER BY log_id ASC LIMIT $7 OFFSET $8"
        );
        const COUNT: &str = concat!("SELECT count(*) FROM log_events WHERE ", filter!());
        let from = query.date_from.map(|d| to_db(d, "date")).transpose()?;
        let to = query.date_to.map(|d| to_db(d, "date")).transpose()?;
        let limit = i64::try_from(query.limit).unwrap_or(i64::MAX);
        let offset = i64::try_from(query.offset).unwrap_or(i64::MAX);
        let sql = if query.after.is_some() {
            AFTER
        } else {
            NEWEST_FIRST
        };
        let rows = self
            .query(
                sql,
                &[
                    &query.event_type,
                    &query.user_id,
                    &query.connection,
                    &from,
                    &to,
                    &query.after,
                    &limit,
                    &offset,
                ],
                "listing log events",
            )
            .await?;
        let events = rows
            .iter()
            .map(|r| {
                let body: String = column(r, 0, "log_events")?;
                from_json(&body, "a log event")
            })
            .collect::<Result<_, _>>()?;
        let total = self
            .query_one(
                COUNT,
                &[
                    &query.event_type,
                    &query.user_id,
                    &query.connection,
                    &from,
                    &to,
                ],
                "counting log events",
            )
            .await?;
        Ok(LogPage {
            events,
            total: unsigned(&total, 0, "log_events")?,
        })
    }

    async fn log_event(&self, log_id: &str) -> Result<Option<LogEvent>, StoreError> {
        let row = self
            .query_opt(
                "SELECT body FROM log_events WHERE log_id = $1",
                &[&log_id],
                "reading a log event",
            )
            .await?;
        row.map(|r| {
            let body: String = column(&r, 0, "log_events")?;
            from_json(&body, "a log event")
        })
        .transpose()
    }

    async fn delete_log_events_before(&self, date: u64) -> Result<u64, StoreError> {
        let date = to_db(date, "date")?;
        self.execute(
            "DELETE FROM log_events WHERE date < $1",
            &[&date],
            "deleting old log events",
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> DatabaseUrl {
        DatabaseUrl::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"))
    }

    #[test]
    fn a_url_shows_its_password_masked() {
        let url = parse("postgres://waypass:s3cr%40t@db.internal:5432/waypass?sslmode=require");
        for shown in [url.to_string(), format!("{url:?}")] {
            assert!(!shown.contains("s3cr"), "no password: {shown}");
            assert!(
                shown.contains("postgres://waypass:***@db.internal:5432/waypass"),
                "the rest is shown: {shown}"
            );
        }
        assert!(url.expose().contains("s3cr%40t"), "expose gives it whole");
    }

    #[test]
    fn a_password_parameter_is_masked_too() {
        let url = parse("postgresql://waypass@localhost/db?password=hunter2&connect_timeout=3");
        let shown = url.to_string();
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("password=***"), "{shown}");
        assert!(shown.contains("connect_timeout=3"), "{shown}");
    }

    #[test]
    fn only_postgres_urls_are_accepted() {
        for (url, expected) in [
            ("mysql://u@h/db", "scheme"),
            ("waypass.db", "not a URL"),
            (
                "postgres://u@h/db?sslmode=prefer",
                "falls back to plain text",
            ),
            (
                "postgres://u@h/db?sslmode=allow",
                "falls back to plain text",
            ),
            ("postgres://u@h/db?sslmode=sometimes", "not one of"),
            (
                "postgres://u@h/db?no_such_option=1",
                "invalid connection string",
            ),
        ] {
            let err = DatabaseUrl::parse(url).expect_err(url).to_string();
            assert!(err.contains(expected), "{url}: {err}");
        }
    }

    #[test]
    fn sslmode_chooses_plain_or_verified_tls() {
        let mode = |url: &str| parse(url).options().expect("options").1;
        assert_eq!(
            mode("postgres://u@h/db"),
            TlsMode::Plain,
            "plain by default"
        );
        assert_eq!(mode("postgres://u@h/db?sslmode=disable"), TlsMode::Plain);
        for ssl in ["require", "verify-ca", "verify-full"] {
            assert_eq!(
                mode(&format!("postgres://u@h/db?sslmode={ssl}")),
                TlsMode::Verified { root_cert: None },
                "{ssl}: TLS, the certificate verified"
            );
        }
        assert_eq!(
            mode(
                "postgres://u@h/db?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&application_name=x"
            ),
            TlsMode::Verified {
                root_cert: Some("/etc/ca.pem".into())
            },
            "sslrootcert names the roots"
        );
    }

    #[test]
    fn other_parameters_reach_the_driver_unchanged() {
        let (config, _) =
            parse("postgres://u@h/db?sslmode=require&application_name=my%20app&connect_timeout=3")
                .options()
                .expect("options");
        assert_eq!(config.get_application_name(), Some("my app"));
        assert_eq!(config.get_connect_timeout(), Some(&Duration::from_secs(3)));
        assert_eq!(
            config.get_ssl_mode(),
            tokio_postgres::config::SslMode::Require
        );
        let (config, _) = parse("postgres://u@h/db").options().expect("options");
        assert_eq!(
            config.get_connect_timeout(),
            Some(&CONNECT_TIMEOUT),
            "a connect timeout unless the URL sets one"
        );
    }

    #[test]
    fn another_database_keeps_the_server_and_credentials() {
        let url = parse("postgres://u:pw@h:5433/postgres?sslmode=disable");
        let other = url.with_database("waypass_test_1").expect("with database");
        assert_eq!(
            other.expose(),
            "postgres://u:pw@h:5433/waypass_test_1?sslmode=disable"
        );
    }
}
