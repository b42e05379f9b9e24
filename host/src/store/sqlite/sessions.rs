//! Sessions, refresh tokens and APIs in SQLite (schema 3).
//!
//! A family of refresh tokens is a row of `refresh_families`; each token is
//! a row of `refresh_tokens` naming it. Every change to a family's tokens
//! runs in one immediate transaction (the write lock from its first
//! statement), so a rotation and a reuse of the same family, from this
//! process or another on the file, run one after the other.

use rusqlite::Transaction;

use super::*;
use crate::store::sessions::{
    RefreshGrant, RefreshLookup, Rotation, Session, SessionStore, SweptSessions,
};
use crate::store::stored::StoredSession;

/// Schema 3.
pub(super) const MIGRATION: &str = "
    CREATE TABLE sessions (
        key_hash BLOB PRIMARY KEY NOT NULL,
        id TEXT NOT NULL UNIQUE,
        user_id TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        last_active INTEGER NOT NULL,
        idle_expires_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        payload TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX sessions_by_user ON sessions (user_id);
    CREATE INDEX sessions_by_idle_expiry ON sessions (idle_expires_at);

    CREATE TABLE session_clients (
        session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
        client_id TEXT NOT NULL,
        PRIMARY KEY (session_id, client_id)
    ) WITHOUT ROWID;

    CREATE TABLE refresh_families (
        id TEXT PRIMARY KEY NOT NULL,
        user_id TEXT NOT NULL,
        client_id TEXT NOT NULL,
        expires_at INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX refresh_families_by_user ON refresh_families (user_id);
    CREATE INDEX refresh_families_by_client ON refresh_families (client_id);
    CREATE INDEX refresh_families_by_expiry ON refresh_families (expires_at);

    CREATE TABLE refresh_tokens (
        key_hash BLOB PRIMARY KEY NOT NULL,
        family_id TEXT NOT NULL REFERENCES refresh_families (id) ON DELETE CASCADE,
        rotated_at INTEGER,
        idle_expires_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        payload TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX refresh_tokens_by_family ON refresh_tokens (family_id);
    CREATE INDEX refresh_tokens_by_idle_expiry ON refresh_tokens (idle_expires_at);

    CREATE TABLE resource_servers (
        id TEXT PRIMARY KEY NOT NULL,
        identifier TEXT NOT NULL UNIQUE,
        resource_server TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE TRIGGER resource_servers_inserted AFTER INSERT ON resource_servers
        BEGIN UPDATE catalog_version SET version = version + 1; END;
    CREATE TRIGGER resource_servers_updated AFTER UPDATE ON resource_servers
        BEGIN UPDATE catalog_version SET version = version + 1; END;
    CREATE TRIGGER resource_servers_deleted AFTER DELETE ON resource_servers
        BEGIN UPDATE catalog_version SET version = version + 1; END;
";

pub(super) fn read_resource_servers(
    conn: &Connection,
) -> Result<Vec<StoredResourceServer>, StoreError> {
    let rows: Vec<String> = conn
        .prepare_cached("SELECT resource_server FROM resource_servers ORDER BY id")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .map_err(backend("listing resource servers"))?;
    rows.iter()
        .map(|json| from_json(json, "resource_servers"))
        .collect()
}

/// The columns [`SessionRow::read`] reads, in its order, for a session
/// row `s`: its clients as a JSON array, sorted.
macro_rules! session_columns {
    () => {
        "s.id, s.user_id, s.created_at, s.last_active, s.idle_expires_at, s.expires_at, s.payload,
         (SELECT json_group_array(client_id) FROM
             (SELECT client_id FROM session_clients WHERE session_id = s.id ORDER BY client_id))"
    };
}

/// A `sessions` row before its JSON is parsed.
struct SessionRow {
    id: String,
    user_id: String,
    created_at: u64,
    last_active: u64,
    idle_expires_at: u64,
    expires_at: u64,
    payload: String,
    clients: String,
}

impl SessionRow {
    fn read(r: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            id: r.get(0)?,
            user_id: r.get(1)?,
            created_at: r.get(2)?,
            last_active: r.get(3)?,
            idle_expires_at: r.get(4)?,
            expires_at: r.get(5)?,
            payload: r.get(6)?,
            clients: r.get(7)?,
        })
    }

    fn into_session(self) -> Result<Session, StoreError> {
        let payload: StoredSession = from_json(&self.payload, "sessions")?;
        Ok(Session {
            id: self.id,
            user_id: self.user_id,
            logins: payload.logins,
            clients: from_json(&self.clients, "session_clients")?,
            created_at: self.created_at,
            last_active: self.last_active,
            idle_expires_at: self.idle_expires_at,
            expires_at: self.expires_at,
        })
    }
}

/// Runs a query of sessions (`session_columns!` first) and reads them.
fn query_sessions(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<Session>, StoreError> {
    let rows: Vec<SessionRow> = conn
        .prepare_cached(sql)
        .and_then(|mut s| s.query_map(params, SessionRow::read)?.collect())
        .map_err(backend("reading sessions"))?;
    rows.into_iter().map(SessionRow::into_session).collect()
}

/// A `refresh_tokens` row: its grant and when it was rotated.
fn read_refresh(r: &rusqlite::Row<'_>) -> rusqlite::Result<(String, u64, u64, Option<u64>)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
}

fn into_grant(
    (payload, idle_expires_at, expires_at, _): (String, u64, u64, Option<u64>),
) -> Result<RefreshGrant, StoreError> {
    let grant: RefreshGrant = from_json(&payload, "refresh_tokens")?;
    Ok(RefreshGrant {
        idle_expires_at,
        expires_at,
        ..grant
    })
}

/// Live, unrotated tokens picked by `filter` (a condition on the family
/// row `f`), oldest family first.
fn live_refresh_tokens(
    conn: &Connection,
    sql: &str,
    key: &str,
    now: u64,
) -> Result<Vec<RefreshGrant>, StoreError> {
    let rows: Vec<(String, u64, u64, Option<u64>)> = conn
        .prepare_cached(sql)
        .and_then(|mut s| s.query_map(params![key, now], read_refresh)?.collect())
        .map_err(backend("listing refresh tokens"))?;
    let mut grants = rows
        .into_iter()
        .map(into_grant)
        .collect::<Result<Vec<_>, _>>()?;
    grants.sort_by(|a, b| (a.created_at, &a.family_id).cmp(&(b.created_at, &b.family_id)));
    Ok(grants)
}

/// Deletes the tokens and rows of the families `select` (a query of
/// family ids with one parameter) picks; how many tokens.
fn delete_families(tx: &Transaction<'_>, select: &str, key: &str) -> Result<u64, StoreError> {
    let tokens = execute(
        tx,
        &format!("DELETE FROM refresh_tokens WHERE family_id IN ({select})"),
        params![key],
        "revoking refresh tokens",
    )?;
    execute(
        tx,
        &format!("DELETE FROM refresh_families WHERE id IN ({select})"),
        params![key],
        "revoking refresh tokens",
    )?;
    Ok(tokens as u64)
}

const LIVE_OF_USER: &str = "SELECT t.payload, t.idle_expires_at, t.expires_at, t.rotated_at
     FROM refresh_tokens t JOIN refresh_families f ON f.id = t.family_id
     WHERE f.user_id = ?1 AND t.rotated_at IS NULL AND t.idle_expires_at > ?2 AND t.expires_at > ?2";
const LIVE_OF_FAMILY: &str = "SELECT payload, idle_expires_at, expires_at, rotated_at
     FROM refresh_tokens
     WHERE family_id = ?1 AND rotated_at IS NULL AND idle_expires_at > ?2 AND expires_at > ?2";

impl SqliteStore {
    /// [`SessionStore::put_session`], then `and_then` in the same immediate
    /// transaction (a login's code: [`Store::put_session_and_code`]).
    pub(super) async fn put_session_with(
        &self,
        key: SecretHash,
        session: &Session,
        and_then: impl FnOnce(&Transaction<'_>) -> Result<(), StoreError> + Send + 'static,
    ) -> Result<(), StoreError> {
        let payload = to_json(
            &StoredSession {
                logins: session.logins.clone(),
            },
            "a session",
        )?;
        let key = *key.as_bytes();
        let s = session.clone();
        self.call(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend("writing a session"))?;
            // Another session under this key is replaced whole.
            execute(
                &tx,
                "DELETE FROM sessions WHERE key_hash = ?1 AND id <> ?2",
                params![key, s.id],
                "writing a session",
            )?;
            let written = tx
                .prepare_cached(
                    "INSERT INTO sessions (key_hash, id, user_id, created_at, last_active,
                         idle_expires_at, expires_at, payload)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                     ON CONFLICT (key_hash) DO UPDATE SET user_id = excluded.user_id,
                         created_at = excluded.created_at, last_active = excluded.last_active,
                         idle_expires_at = excluded.idle_expires_at,
                         expires_at = excluded.expires_at, payload = excluded.payload",
                )
                .and_then(|mut st| {
                    st.execute(params![
                        key,
                        s.id,
                        s.user_id,
                        s.created_at,
                        s.last_active,
                        s.idle_expires_at,
                        s.expires_at,
                        payload
                    ])
                });
            match written {
                Ok(_) => {}
                Err(e) if is_unique_violation(&e) => {
                    return Err(StoreError::Conflict(format!("session `{}`", s.id)));
                }
                Err(e) => return Err(backend("writing a session")(e)),
            }
            for client in &s.clients {
                execute(
                    &tx,
                    "INSERT INTO session_clients (session_id, client_id) VALUES (?1, ?2)
                     ON CONFLICT DO NOTHING",
                    params![s.id, client],
                    "writing a session",
                )?;
            }
            and_then(&tx)?;
            tx.commit().map_err(backend("writing a session"))
        })
        .await
    }
}

#[async_trait]
impl SessionStore for SqliteStore {
    async fn put_session(&self, key: SecretHash, session: &Session) -> Result<(), StoreError> {
        self.put_session_with(key, session, |_| Ok(())).await
    }

    async fn get_session(&self, key: SecretHash, now: u64) -> Result<Option<Session>, StoreError> {
        let key = *key.as_bytes();
        const GET: &str = concat!(
            "SELECT ",
            session_columns!(),
            " FROM sessions s WHERE s.key_hash = ?1 AND s.idle_expires_at > ?2 AND s.expires_at > ?2"
        );
        self.call(move |conn| query_sessions(conn, GET, params![key, now]))
            .await
            .map(|mut found| found.pop())
    }

    async fn touch_session(
        &self,
        key: SecretHash,
        client_id: &str,
        now: u64,
        idle_expires_at: u64,
    ) -> Result<bool, StoreError> {
        let key = *key.as_bytes();
        let client_id = client_id.to_owned();
        self.call(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend("using a session"))?;
            let id: Option<String> = tx
                .prepare_cached(
                    "UPDATE sessions SET last_active = ?2,
                         idle_expires_at = MIN(expires_at, MAX(idle_expires_at, ?3))
                     WHERE key_hash = ?1 AND idle_expires_at > ?2 AND expires_at > ?2
                     RETURNING id",
                )
                .and_then(|mut s| {
                    s.query_row(params![key, now, idle_expires_at], |r| r.get(0))
                        .optional()
                })
                .map_err(backend("using a session"))?;
            let Some(id) = id else {
                return Ok(false);
            };
            execute(
                &tx,
                "INSERT INTO session_clients (session_id, client_id) VALUES (?1, ?2)
                 ON CONFLICT DO NOTHING",
                params![id, client_id],
                "using a session",
            )?;
            tx.commit().map_err(backend("using a session"))?;
            Ok(true)
        })
        .await
    }

    async fn session(&self, id: &str, now: u64) -> Result<Option<Session>, StoreError> {
        const GET: &str = concat!(
            "SELECT ",
            session_columns!(),
            " FROM sessions s WHERE s.id = ?1 AND s.idle_expires_at > ?2 AND s.expires_at > ?2"
        );
        let id = id.to_owned();
        self.call(move |conn| query_sessions(conn, GET, params![id, now]))
            .await
            .map(|mut found| found.pop())
    }

    async fn sessions_of_user(&self, user_id: &str, now: u64) -> Result<Vec<Session>, StoreError> {
        const LIST: &str = concat!(
            "SELECT ",
            session_columns!(),
            " FROM sessions s WHERE s.user_id = ?1 AND s.idle_expires_at > ?2 AND s.expires_at > ?2
              ORDER BY s.created_at, s.id"
        );
        let user_id = user_id.to_owned();
        self.call(move |conn| query_sessions(conn, LIST, params![user_id, now]))
            .await
    }

    async fn delete_session(&self, id: &str) -> Result<Option<Session>, StoreError> {
        const GET: &str = concat!(
            "SELECT ",
            session_columns!(),
            " FROM sessions s WHERE s.id = ?1"
        );
        let id = id.to_owned();
        self.call(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend("deleting a session"))?;
            let found = query_sessions(&tx, GET, params![id])?.pop();
            execute(
                &tx,
                "DELETE FROM session_clients WHERE session_id = ?1",
                params![id],
                "deleting a session",
            )?;
            execute(
                &tx,
                "DELETE FROM sessions WHERE id = ?1",
                params![id],
                "deleting a session",
            )?;
            tx.commit().map_err(backend("deleting a session"))?;
            Ok(found)
        })
        .await
    }

    async fn delete_sessions_of_user(&self, user_id: &str) -> Result<Vec<Session>, StoreError> {
        const LIST: &str = concat!(
            "SELECT ",
            session_columns!(),
            " FROM sessions s WHERE s.user_id = ?1 ORDER BY s.created_at, s.id"
        );
        let user_id = user_id.to_owned();
        self.call(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend("deleting sessions"))?;
            let found = query_sessions(&tx, LIST, params![user_id])?;
            execute(
                &tx,
                "DELETE FROM session_clients WHERE session_id IN
                     (SELECT id FROM sessions WHERE user_id = ?1)",
                params![user_id],
                "deleting sessions",
            )?;
            execute(
                &tx,
                "DELETE FROM sessions WHERE user_id = ?1",
                params![user_id],
                "deleting sessions",
            )?;
            tx.commit().map_err(backend("deleting sessions"))?;
            Ok(found)
        })
        .await
    }

    async fn put_refresh_token(
        &self,
        key: SecretHash,
        grant: &RefreshGrant,
    ) -> Result<(), StoreError> {
        let payload = to_json(grant, "refresh_tokens")?;
        let key = *key.as_bytes();
        let g = grant.clone();
        self.call(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend("storing a refresh token"))?;
            execute(
                &tx,
                "INSERT INTO refresh_families (id, user_id, client_id, expires_at)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (id) DO NOTHING",
                params![g.family_id, g.user_id, g.client_id, g.expires_at],
                "storing a refresh token",
            )?;
            execute(
                &tx,
                "INSERT OR REPLACE INTO refresh_tokens
                     (key_hash, family_id, rotated_at, idle_expires_at, expires_at, payload)
                 VALUES (?1, ?2, NULL, ?3, ?4, ?5)",
                params![key, g.family_id, g.idle_expires_at, g.expires_at, payload],
                "storing a refresh token",
            )?;
            tx.commit().map_err(backend("storing a refresh token"))
        })
        .await
    }

    async fn get_refresh_token(
        &self,
        key: SecretHash,
        now: u64,
    ) -> Result<RefreshLookup, StoreError> {
        let key = *key.as_bytes();
        let row = self
            .call(move |conn| {
                conn.prepare_cached(
                    "SELECT payload, idle_expires_at, expires_at, rotated_at
                     FROM refresh_tokens WHERE key_hash = ?1 AND expires_at > ?2",
                )
                .and_then(|mut s| s.query_row(params![key, now], read_refresh).optional())
                .map_err(backend("reading a refresh token"))
            })
            .await?;
        let Some(row) = row else {
            return Ok(RefreshLookup::Absent);
        };
        let rotated = row.3.is_some();
        let grant = into_grant(row)?;
        Ok(if rotated {
            RefreshLookup::Rotated(grant)
        } else if grant.is_live(now) {
            RefreshLookup::Live(grant)
        } else {
            RefreshLookup::Absent
        })
    }

    async fn rotate_refresh_token(
        &self,
        used: SecretHash,
        next: SecretHash,
        grant: &RefreshGrant,
        now: u64,
    ) -> Result<Rotation, StoreError> {
        let payload = to_json(grant, "refresh_tokens")?;
        let (used, next) = (*used.as_bytes(), *next.as_bytes());
        let g = grant.clone();
        self.call(move |conn| {
            const WHAT: &str = "rotating a refresh token";
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend(WHAT))?;
            let found: Option<(String, Option<u64>, u64, u64)> = tx
                .prepare_cached(
                    "SELECT family_id, rotated_at, idle_expires_at, expires_at
                     FROM refresh_tokens WHERE key_hash = ?1",
                )
                .and_then(|mut s| {
                    s.query_row(params![used], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                    })
                    .optional()
                })
                .map_err(backend(WHAT))?;
            let rotation = match found {
                Some((_, None, idle, exp)) if now < idle && now < exp => {
                    execute(
                        &tx,
                        "UPDATE refresh_tokens SET rotated_at = ?2 WHERE key_hash = ?1",
                        params![used, now],
                        WHAT,
                    )?;
                    execute(
                        &tx,
                        "INSERT OR REPLACE INTO refresh_tokens
                             (key_hash, family_id, rotated_at, idle_expires_at, expires_at, payload)
                         VALUES (?1, ?2, NULL, ?3, ?4, ?5)",
                        params![next, g.family_id, g.idle_expires_at, g.expires_at, payload],
                        WHAT,
                    )?;
                    Rotation::Rotated
                }
                Some((family, Some(_), _, exp)) if now < exp => {
                    let revoked = delete_families(&tx, "SELECT ?1", &family)?;
                    Rotation::Reused { revoked }
                }
                _ => Rotation::Absent,
            };
            tx.commit().map_err(backend(WHAT))?;
            Ok(rotation)
        })
        .await
    }

    async fn revoke_refresh_family(&self, family_id: &str) -> Result<u64, StoreError> {
        let family_id = family_id.to_owned();
        self.call(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend("revoking refresh tokens"))?;
            let revoked = delete_families(&tx, "SELECT ?1", &family_id)?;
            tx.commit().map_err(backend("revoking refresh tokens"))?;
            Ok(revoked)
        })
        .await
    }

    async fn refresh_family(
        &self,
        family_id: &str,
        now: u64,
    ) -> Result<Option<RefreshGrant>, StoreError> {
        let family_id = family_id.to_owned();
        self.call(move |conn| live_refresh_tokens(conn, LIVE_OF_FAMILY, &family_id, now))
            .await
            .map(|mut found| found.pop())
    }

    async fn refresh_tokens_of_user(
        &self,
        user_id: &str,
        now: u64,
    ) -> Result<Vec<RefreshGrant>, StoreError> {
        let user_id = user_id.to_owned();
        self.call(move |conn| live_refresh_tokens(conn, LIVE_OF_USER, &user_id, now))
            .await
    }

    async fn delete_refresh_tokens_of_user(&self, user_id: &str) -> Result<u64, StoreError> {
        let user_id = user_id.to_owned();
        self.call(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend("revoking refresh tokens"))?;
            let revoked = delete_families(
                &tx,
                "SELECT id FROM refresh_families WHERE user_id = ?1",
                &user_id,
            )?;
            tx.commit().map_err(backend("revoking refresh tokens"))?;
            Ok(revoked)
        })
        .await
    }

    async fn delete_refresh_tokens_of_client(&self, client_id: &str) -> Result<u64, StoreError> {
        let client_id = client_id.to_owned();
        self.call(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend("revoking refresh tokens"))?;
            let revoked = delete_families(
                &tx,
                "SELECT id FROM refresh_families WHERE client_id = ?1",
                &client_id,
            )?;
            tx.commit().map_err(backend("revoking refresh tokens"))?;
            Ok(revoked)
        })
        .await
    }

    async fn delete_access_token(&self, token: SecretHash) -> Result<bool, StoreError> {
        let key = *token.as_bytes();
        let deleted = self
            .execute(
                "DELETE FROM access_tokens WHERE key_hash = ?1",
                (key,),
                "revoking an access token",
            )
            .await?;
        Ok(deleted > 0)
    }

    async fn delete_access_tokens_of_user(&self, user_id: &str) -> Result<u64, StoreError> {
        // The user lives in the JSON payload, as the client does: a scan,
        // for an API call (a user deleted).
        let deleted = self
            .execute(
                "DELETE FROM access_tokens WHERE json_extract(payload, '$.user_id') = ?1",
                (user_id.to_owned(),),
                "revoking a user's access tokens",
            )
            .await?;
        Ok(deleted as u64)
    }

    async fn delete_access_tokens_of_family(&self, family_id: &str) -> Result<u64, StoreError> {
        let deleted = self
            .execute(
                "DELETE FROM access_tokens WHERE json_extract(payload, '$.family_id') = ?1",
                (family_id.to_owned(),),
                "revoking a refresh token's access tokens",
            )
            .await?;
        Ok(deleted as u64)
    }

    async fn sweep_sessions(&self, now: u64) -> Result<SweptSessions, StoreError> {
        self.call(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(backend("sweeping sessions"))?;
            execute(
                &tx,
                "DELETE FROM session_clients WHERE session_id IN
                     (SELECT id FROM sessions WHERE idle_expires_at <= ?1 OR expires_at <= ?1)",
                params![now],
                "sweeping sessions",
            )?;
            let sessions = execute(
                &tx,
                "DELETE FROM sessions WHERE idle_expires_at <= ?1 OR expires_at <= ?1",
                params![now],
                "sweeping sessions",
            )?;
            let refresh_tokens = execute(
                &tx,
                "DELETE FROM refresh_tokens
                 WHERE expires_at <= ?1 OR (rotated_at IS NULL AND idle_expires_at <= ?1)",
                params![now],
                "sweeping refresh tokens",
            )?;
            execute(
                &tx,
                "DELETE FROM refresh_families WHERE expires_at <= ?1",
                params![now],
                "sweeping refresh tokens",
            )?;
            tx.commit().map_err(backend("sweeping sessions"))?;
            Ok(SweptSessions {
                sessions: sessions as u64,
                refresh_tokens: refresh_tokens as u64,
            })
        })
        .await
    }
}
