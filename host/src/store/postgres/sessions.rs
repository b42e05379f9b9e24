//! Sessions, refresh tokens and APIs in PostgreSQL (schema 3).
//!
//! # Several instances
//!
//! - A refresh-token family is a row of `refresh_families`; every change
//!   to its tokens (a rotation, a reuse, a revocation) first locks that row
//!   (`SELECT … FOR UPDATE`) in its transaction, then reads the tokens
//!   with a statement of its own. Under READ COMMITTED each statement sees
//!   what committed before it started, so a step that waited for the lock
//!   sees everything the previous holder wrote: of two uses of one token,
//!   one rotates and the other finds it used and deletes the whole family,
//!   successor included. A revocation deletes the family's row, so a
//!   rotation that waited for it then finds no family and changes nothing.
//! - A session is used (`touch`) in one transaction whose `UPDATE` holds
//!   the session's row until its app is recorded, so a logout deleting
//!   the session runs before or after, never between.

use tokio_postgres::Transaction;

use super::*;
use crate::store::sessions::{
    RefreshGrant, RefreshLookup, Rotation, Session, SessionStore, SweptSessions,
};
use crate::store::stored::StoredSession;

/// Schema 3.
pub(super) const MIGRATION: &str = r#"
    CREATE TABLE sessions (
        key_hash bytea PRIMARY KEY CHECK (octet_length(key_hash) = 32),
        id text COLLATE "C" NOT NULL UNIQUE,
        user_id text COLLATE "C" NOT NULL,
        created_at bigint NOT NULL,
        last_active bigint NOT NULL,
        idle_expires_at bigint NOT NULL,
        expires_at bigint NOT NULL,
        payload text NOT NULL
    );
    CREATE INDEX sessions_by_user ON sessions (user_id);
    CREATE INDEX sessions_by_idle_expiry ON sessions (idle_expires_at);

    CREATE TABLE session_clients (
        session_id text COLLATE "C" NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
        client_id text COLLATE "C" NOT NULL,
        PRIMARY KEY (session_id, client_id)
    );

    CREATE TABLE refresh_families (
        id text COLLATE "C" PRIMARY KEY,
        user_id text COLLATE "C" NOT NULL,
        client_id text COLLATE "C" NOT NULL,
        expires_at bigint NOT NULL
    );
    CREATE INDEX refresh_families_by_user ON refresh_families (user_id);
    CREATE INDEX refresh_families_by_client ON refresh_families (client_id);
    CREATE INDEX refresh_families_by_expiry ON refresh_families (expires_at);

    CREATE TABLE refresh_tokens (
        key_hash bytea PRIMARY KEY CHECK (octet_length(key_hash) = 32),
        family_id text COLLATE "C" NOT NULL REFERENCES refresh_families (id) ON DELETE CASCADE,
        rotated_at bigint,
        idle_expires_at bigint NOT NULL,
        expires_at bigint NOT NULL,
        payload text NOT NULL
    );
    CREATE INDEX refresh_tokens_by_family ON refresh_tokens (family_id);
    CREATE INDEX refresh_tokens_by_idle_expiry ON refresh_tokens (idle_expires_at);

    CREATE TABLE resource_servers (
        id text COLLATE "C" PRIMARY KEY,
        identifier text NOT NULL UNIQUE,
        resource_server text NOT NULL
    );
    CREATE TRIGGER resource_servers_changed AFTER INSERT OR UPDATE OR DELETE ON resource_servers
        FOR EACH ROW EXECUTE FUNCTION waypass_catalog_changed();
"#;

pub(super) fn read_resource_server(row: &Row) -> Result<StoredResourceServer, StoreError> {
    from_json(
        &column::<String>(row, 0, "resource_servers")?,
        "resource_servers",
    )
}

/// The columns [`read_session`] reads, in its order, for a session row
/// `s`: its clients as an array, in byte order.
macro_rules! session_columns {
    () => {
        "s.id, s.user_id, s.created_at, s.last_active, s.idle_expires_at, s.expires_at, s.payload,
         ARRAY(SELECT c.client_id FROM session_clients c WHERE c.session_id = s.id
               ORDER BY c.client_id)"
    };
}

fn read_session(row: &Row) -> Result<Session, StoreError> {
    const WHAT: &str = "sessions";
    let payload: String = column(row, 6, WHAT)?;
    let payload: StoredSession = from_json(&payload, WHAT)?;
    Ok(Session {
        id: column(row, 0, WHAT)?,
        user_id: column(row, 1, WHAT)?,
        created_at: unsigned(row, 2, WHAT)?,
        last_active: unsigned(row, 3, WHAT)?,
        idle_expires_at: unsigned(row, 4, WHAT)?,
        expires_at: unsigned(row, 5, WHAT)?,
        logins: payload.logins,
        clients: column(row, 7, WHAT)?,
    })
}

/// A `refresh_tokens` row (payload, idle expiry, expiry, rotated at): its
/// grant, and whether it was rotated.
fn read_refresh(row: &Row) -> Result<(RefreshGrant, bool), StoreError> {
    const WHAT: &str = "refresh_tokens";
    let payload: String = column(row, 0, WHAT)?;
    let grant: RefreshGrant = from_json(&payload, WHAT)?;
    let rotated: Option<i64> = column(row, 3, WHAT)?;
    Ok((
        RefreshGrant {
            idle_expires_at: unsigned(row, 1, WHAT)?,
            expires_at: unsigned(row, 2, WHAT)?,
            ..grant
        },
        rotated.is_some(),
    ))
}

/// Live, unrotated tokens, oldest family first.
fn live_grants(rows: &[Row]) -> Result<Vec<RefreshGrant>, StoreError> {
    let mut grants = rows
        .iter()
        .map(|row| read_refresh(row).map(|(grant, _)| grant))
        .collect::<Result<Vec<_>, _>>()?;
    grants.sort_by(|a, b| (a.created_at, &a.family_id).cmp(&(b.created_at, &b.family_id)));
    Ok(grants)
}

/// Prepares `sqls` on `conn`, in order (before a transaction borrows it).
async fn prepare_all(
    conn: &mut Conn,
    sqls: &[&'static str],
    what: &'static str,
) -> Result<Vec<Statement>, StoreError> {
    let mut prepared = Vec::with_capacity(sqls.len());
    for sql in sqls {
        prepared.push(conn.prepare(sql).await.map_err(backend(what))?);
    }
    Ok(prepared)
}

/// Deletes the tokens and rows of `families` (locked by the caller's
/// transaction); how many tokens.
async fn delete_families(
    tx: &Transaction<'_>,
    delete_tokens: &Statement,
    delete_families: &Statement,
    families: &[String],
) -> Result<u64, StoreError> {
    const WHAT: &str = "revoking refresh tokens";
    let tokens = tx
        .execute(delete_tokens, &[&families])
        .await
        .map_err(backend(WHAT))?;
    tx.execute(delete_families, &[&families])
        .await
        .map_err(backend(WHAT))?;
    Ok(tokens)
}

const DELETE_TOKENS_OF: &str = "DELETE FROM refresh_tokens WHERE family_id = ANY($1)";
const DELETE_FAMILIES: &str = "DELETE FROM refresh_families WHERE id = ANY($1)";

impl PostgresStore {
    /// Locks the families `select` picks (one text parameter) and deletes
    /// them with their tokens, in one transaction; how many tokens.
    async fn delete_families_where(
        &self,
        select: &'static str,
        key: &str,
    ) -> Result<u64, StoreError> {
        const WHAT: &str = "revoking refresh tokens";
        let mut conn = self.conn().await?;
        let prepared = prepare_all(
            &mut conn,
            &[select, DELETE_TOKENS_OF, DELETE_FAMILIES],
            WHAT,
        )
        .await?;
        let tx = conn.client.transaction().await.map_err(backend(WHAT))?;
        let families: Vec<String> = tx
            .query(&prepared[0], &[&key])
            .await
            .map_err(backend(WHAT))?
            .iter()
            .map(|row| column(row, 0, "refresh_families"))
            .collect::<Result<_, _>>()?;
        let revoked = delete_families(&tx, &prepared[1], &prepared[2], &families).await?;
        tx.commit().await.map_err(backend(WHAT))?;
        Ok(revoked)
    }
}

impl PostgresStore {
    /// [`SessionStore::put_session`], and with `code` the app's code in the
    /// same transaction ([`Store::put_session_and_code`]).
    pub(super) async fn put_session_with(
        &self,
        key: SecretHash,
        session: &Session,
        code: Option<(SecretHash, &AuthorizationGrant)>,
    ) -> Result<(), StoreError> {
        const WHAT: &str = "writing a session";
        const REPLACE_OTHER: &str = "DELETE FROM sessions WHERE key_hash = $1 AND id <> $2";
        const UPSERT: &str = "INSERT INTO sessions (key_hash, id, user_id, created_at,
                 last_active, idle_expires_at, expires_at, payload)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (key_hash) DO UPDATE SET user_id = EXCLUDED.user_id,
                 created_at = EXCLUDED.created_at, last_active = EXCLUDED.last_active,
                 idle_expires_at = EXCLUDED.idle_expires_at, expires_at = EXCLUDED.expires_at,
                 payload = EXCLUDED.payload";
        const CLIENTS: &str = "INSERT INTO session_clients (session_id, client_id)
             SELECT $1, unnest($2::text[]) ON CONFLICT DO NOTHING";
        let payload = to_json(
            &StoredSession {
                logins: session.logins.clone(),
            },
            "a session",
        )?;
        let times = [
            to_db(session.created_at, "created_at")?,
            to_db(session.last_active, "last_active")?,
            to_db(session.idle_expires_at, "idle_expires_at")?,
            to_db(session.expires_at, "expires_at")?,
        ];
        let code = match code {
            Some((code, grant)) => Some((
                code,
                to_db(grant.expires_at, "expires_at")?,
                to_json(grant, CODES.table)?,
            )),
            None => None,
        };
        let key = &key.as_bytes()[..];
        let mut conn = self.conn().await?;
        let prepared = prepare_all(
            &mut conn,
            &[REPLACE_OTHER, UPSERT, CLIENTS, CODES.put],
            WHAT,
        )
        .await?;
        let tx = conn.client.transaction().await.map_err(backend(WHAT))?;
        tx.execute(&prepared[0], &[&key, &session.id])
            .await
            .map_err(backend(WHAT))?;
        let written = tx
            .execute(
                &prepared[1],
                &[
                    &key,
                    &session.id,
                    &session.user_id,
                    &times[0],
                    &times[1],
                    &times[2],
                    &times[3],
                    &payload,
                ],
            )
            .await;
        match written {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => {
                return Err(StoreError::Conflict(format!("session `{}`", session.id)));
            }
            Err(e) => return Err(backend(WHAT)(e)),
        }
        tx.execute(&prepared[2], &[&session.id, &session.clients])
            .await
            .map_err(backend(WHAT))?;
        if let Some((code, expires_at, payload)) = &code {
            tx.execute(&prepared[3], &[&&code.as_bytes()[..], expires_at, payload])
                .await
                .map_err(backend(CODES.table))?;
        }
        tx.commit().await.map_err(backend(WHAT))
    }
}

#[async_trait]
impl SessionStore for PostgresStore {
    async fn put_session(&self, key: SecretHash, session: &Session) -> Result<(), StoreError> {
        self.put_session_with(key, session, None).await
    }

    async fn get_session(&self, key: SecretHash, now: u64) -> Result<Option<Session>, StoreError> {
        const GET: &str = concat!(
            "SELECT ",
            session_columns!(),
            " FROM sessions s WHERE s.key_hash = $1 AND s.idle_expires_at > $2 AND s.expires_at > $2"
        );
        let now = to_db(now, "now")?;
        self.query_opt(GET, &[&&key.as_bytes()[..], &now], "reading a session")
            .await?
            .as_ref()
            .map(read_session)
            .transpose()
    }

    async fn touch_session(
        &self,
        key: SecretHash,
        client_id: &str,
        now: u64,
        idle_expires_at: u64,
    ) -> Result<bool, StoreError> {
        const WHAT: &str = "using a session";
        const TOUCH: &str = "UPDATE sessions SET last_active = $2,
                 idle_expires_at = LEAST(expires_at, GREATEST(idle_expires_at, $3))
             WHERE key_hash = $1 AND idle_expires_at > $2 AND expires_at > $2
             RETURNING id";
        const CLIENT: &str = "INSERT INTO session_clients (session_id, client_id)
             VALUES ($1, $2) ON CONFLICT DO NOTHING";
        let (now, idle) = (
            to_db(now, "now")?,
            to_db(idle_expires_at, "idle_expires_at")?,
        );
        let key = &key.as_bytes()[..];
        let mut conn = self.conn().await?;
        let prepared = prepare_all(&mut conn, &[TOUCH, CLIENT], WHAT).await?;
        let tx = conn.client.transaction().await.map_err(backend(WHAT))?;
        let Some(row) = tx
            .query_opt(&prepared[0], &[&key, &now, &idle])
            .await
            .map_err(backend(WHAT))?
        else {
            return Ok(false);
        };
        let id: String = column(&row, 0, "sessions")?;
        tx.execute(&prepared[1], &[&id, &client_id])
            .await
            .map_err(backend(WHAT))?;
        tx.commit().await.map_err(backend(WHAT))?;
        Ok(true)
    }

    async fn session(&self, id: &str, now: u64) -> Result<Option<Session>, StoreError> {
        const GET: &str = concat!(
            "SELECT ",
            session_columns!(),
            " FROM sessions s WHERE s.id = $1 AND s.idle_expires_at > $2 AND s.expires_at > $2"
        );
        let now = to_db(now, "now")?;
        self.query_opt(GET, &[&id, &now], "reading a session")
            .await?
            .as_ref()
            .map(read_session)
            .transpose()
    }

    async fn sessions_of_user(&self, user_id: &str, now: u64) -> Result<Vec<Session>, StoreError> {
        const LIST: &str = concat!(
            "SELECT ",
            session_columns!(),
            " FROM sessions s WHERE s.user_id = $1 AND s.idle_expires_at > $2 AND s.expires_at > $2
              ORDER BY s.created_at, s.id"
        );
        let now = to_db(now, "now")?;
        self.query(LIST, &[&user_id, &now], "listing sessions")
            .await?
            .iter()
            .map(read_session)
            .collect()
    }

    async fn delete_session(&self, id: &str) -> Result<Option<Session>, StoreError> {
        const WHAT: &str = "deleting a session";
        const GET: &str = concat!(
            "SELECT ",
            session_columns!(),
            " FROM sessions s WHERE s.id = $1 FOR UPDATE"
        );
        const DELETE: &str = "DELETE FROM sessions WHERE id = $1";
        let mut conn = self.conn().await?;
        let prepared = prepare_all(&mut conn, &[GET, DELETE], WHAT).await?;
        let tx = conn.client.transaction().await.map_err(backend(WHAT))?;
        let found = tx
            .query_opt(&prepared[0], &[&id])
            .await
            .map_err(backend(WHAT))?
            .as_ref()
            .map(read_session)
            .transpose()?;
        tx.execute(&prepared[1], &[&id])
            .await
            .map_err(backend(WHAT))?;
        tx.commit().await.map_err(backend(WHAT))?;
        Ok(found)
    }

    async fn delete_sessions_of_user(&self, user_id: &str) -> Result<Vec<Session>, StoreError> {
        const WHAT: &str = "deleting sessions";
        const LIST: &str = concat!(
            "SELECT ",
            session_columns!(),
            " FROM sessions s WHERE s.user_id = $1 ORDER BY s.created_at, s.id FOR UPDATE"
        );
        const DELETE: &str = "DELETE FROM sessions WHERE id = ANY($1)";
        let mut conn = self.conn().await?;
        let prepared = prepare_all(&mut conn, &[LIST, DELETE], WHAT).await?;
        let tx = conn.client.transaction().await.map_err(backend(WHAT))?;
        let found = tx
            .query(&prepared[0], &[&user_id])
            .await
            .map_err(backend(WHAT))?
            .iter()
            .map(read_session)
            .collect::<Result<Vec<_>, _>>()?;
        let ids: Vec<&str> = found.iter().map(|s| s.id.as_str()).collect();
        tx.execute(&prepared[1], &[&ids])
            .await
            .map_err(backend(WHAT))?;
        tx.commit().await.map_err(backend(WHAT))?;
        Ok(found)
    }

    async fn put_refresh_token(
        &self,
        key: SecretHash,
        grant: &RefreshGrant,
    ) -> Result<(), StoreError> {
        const WHAT: &str = "storing a refresh token";
        const FAMILY: &str = "INSERT INTO refresh_families (id, user_id, client_id, expires_at)
             VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO NOTHING";
        const TOKEN: &str = "INSERT INTO refresh_tokens
                 (key_hash, family_id, rotated_at, idle_expires_at, expires_at, payload)
             VALUES ($1, $2, NULL, $3, $4, $5)
             ON CONFLICT (key_hash) DO UPDATE SET family_id = EXCLUDED.family_id,
                 rotated_at = NULL, idle_expires_at = EXCLUDED.idle_expires_at,
                 expires_at = EXCLUDED.expires_at, payload = EXCLUDED.payload";
        let payload = to_json(grant, "refresh_tokens")?;
        let idle = to_db(grant.idle_expires_at, "idle_expires_at")?;
        let expires = to_db(grant.expires_at, "expires_at")?;
        let key = &key.as_bytes()[..];
        let mut conn = self.conn().await?;
        let prepared = prepare_all(&mut conn, &[FAMILY, TOKEN], WHAT).await?;
        let tx = conn.client.transaction().await.map_err(backend(WHAT))?;
        tx.execute(
            &prepared[0],
            &[&grant.family_id, &grant.user_id, &grant.client_id, &expires],
        )
        .await
        .map_err(backend(WHAT))?;
        tx.execute(
            &prepared[1],
            &[&key, &grant.family_id, &idle, &expires, &payload],
        )
        .await
        .map_err(backend(WHAT))?;
        tx.commit().await.map_err(backend(WHAT))
    }

    async fn get_refresh_token(
        &self,
        key: SecretHash,
        now: u64,
    ) -> Result<RefreshLookup, StoreError> {
        const GET: &str = "SELECT payload, idle_expires_at, expires_at, rotated_at
             FROM refresh_tokens WHERE key_hash = $1 AND expires_at > $2";
        let at = to_db(now, "now")?;
        let Some(row) = self
            .query_opt(GET, &[&&key.as_bytes()[..], &at], "reading a refresh token")
            .await?
        else {
            return Ok(RefreshLookup::Absent);
        };
        let (grant, rotated) = read_refresh(&row)?;
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
        const WHAT: &str = "rotating a refresh token";
        const FAMILY_OF: &str = "SELECT family_id FROM refresh_tokens WHERE key_hash = $1";
        const LOCK: &str = "SELECT 1 FROM refresh_families WHERE id = $1 FOR UPDATE";
        // A statement of its own, after the lock: it sees what the
        // previous holder of the family committed.
        const STATE: &str = "SELECT rotated_at, idle_expires_at, expires_at
             FROM refresh_tokens WHERE key_hash = $1";
        const MARK: &str = "UPDATE refresh_tokens SET rotated_at = $2 WHERE key_hash = $1";
        const INSERT: &str = "INSERT INTO refresh_tokens
                 (key_hash, family_id, rotated_at, idle_expires_at, expires_at, payload)
             VALUES ($1, $2, NULL, $3, $4, $5)";
        let payload = to_json(grant, "refresh_tokens")?;
        let at = to_db(now, "now")?;
        let idle = to_db(grant.idle_expires_at, "idle_expires_at")?;
        let expires = to_db(grant.expires_at, "expires_at")?;
        let (used, next) = (&used.as_bytes()[..], &next.as_bytes()[..]);
        let mut conn = self.conn().await?;
        let prepared = prepare_all(
            &mut conn,
            &[
                FAMILY_OF,
                LOCK,
                STATE,
                MARK,
                INSERT,
                DELETE_TOKENS_OF,
                DELETE_FAMILIES,
            ],
            WHAT,
        )
        .await?;
        let tx = conn.client.transaction().await.map_err(backend(WHAT))?;
        let Some(row) = tx
            .query_opt(&prepared[0], &[&used])
            .await
            .map_err(backend(WHAT))?
        else {
            return Ok(Rotation::Absent);
        };
        let family: String = column(&row, 0, "refresh_tokens")?;
        if tx
            .query_opt(&prepared[1], &[&family])
            .await
            .map_err(backend(WHAT))?
            .is_none()
        {
            return Ok(Rotation::Absent);
        }
        let Some(state) = tx
            .query_opt(&prepared[2], &[&used])
            .await
            .map_err(backend(WHAT))?
        else {
            return Ok(Rotation::Absent);
        };
        let rotated: Option<i64> = column(&state, 0, "refresh_tokens")?;
        let idle_until: i64 = column(&state, 1, "refresh_tokens")?;
        let until: i64 = column(&state, 2, "refresh_tokens")?;
        let rotation = match rotated {
            None if at < idle_until && at < until => {
                tx.execute(&prepared[3], &[&used, &at])
                    .await
                    .map_err(backend(WHAT))?;
                tx.execute(
                    &prepared[4],
                    &[&next, &grant.family_id, &idle, &expires, &payload],
                )
                .await
                .map_err(backend(WHAT))?;
                Rotation::Rotated
            }
            Some(_) if at < until => {
                let revoked = delete_families(&tx, &prepared[5], &prepared[6], &[family]).await?;
                Rotation::Reused { revoked }
            }
            _ => Rotation::Absent,
        };
        tx.commit().await.map_err(backend(WHAT))?;
        Ok(rotation)
    }

    async fn revoke_refresh_family(&self, family_id: &str) -> Result<u64, StoreError> {
        self.delete_families_where(
            "SELECT id FROM refresh_families WHERE id = $1 FOR UPDATE",
            family_id,
        )
        .await
    }

    async fn refresh_family(
        &self,
        family_id: &str,
        now: u64,
    ) -> Result<Option<RefreshGrant>, StoreError> {
        const LIVE: &str = "SELECT payload, idle_expires_at, expires_at, rotated_at
             FROM refresh_tokens
             WHERE family_id = $1 AND rotated_at IS NULL AND idle_expires_at > $2 AND expires_at > $2";
        let now = to_db(now, "now")?;
        let rows = self
            .query(LIVE, &[&family_id, &now], "reading a refresh token")
            .await?;
        Ok(live_grants(&rows)?.pop())
    }

    async fn refresh_tokens_of_user(
        &self,
        user_id: &str,
        now: u64,
    ) -> Result<Vec<RefreshGrant>, StoreError> {
        const LIVE: &str = "SELECT t.payload, t.idle_expires_at, t.expires_at, t.rotated_at
             FROM refresh_tokens t JOIN refresh_families f ON f.id = t.family_id
             WHERE f.user_id = $1 AND t.rotated_at IS NULL
               AND t.idle_expires_at > $2 AND t.expires_at > $2";
        let now = to_db(now, "now")?;
        let rows = self
            .query(LIVE, &[&user_id, &now], "listing refresh tokens")
            .await?;
        live_grants(&rows)
    }

    async fn delete_refresh_tokens_of_user(&self, user_id: &str) -> Result<u64, StoreError> {
        self.delete_families_where(
            "SELECT id FROM refresh_families WHERE user_id = $1 FOR UPDATE",
            user_id,
        )
        .await
    }

    async fn delete_refresh_tokens_of_client(&self, client_id: &str) -> Result<u64, StoreError> {
        self.delete_families_where(
            "SELECT id FROM refresh_families WHERE client_id = $1 FOR UPDATE",
            client_id,
        )
        .await
    }

    async fn delete_access_token(&self, token: SecretHash) -> Result<bool, StoreError> {
        let deleted = self
            .execute(
                "DELETE FROM access_tokens WHERE key_hash = $1",
                &[&&token.as_bytes()[..]],
                "revoking an access token",
            )
            .await?;
        Ok(deleted > 0)
    }

    async fn delete_access_tokens_of_user(&self, user_id: &str) -> Result<u64, StoreError> {
        // The user lives in the JSON payload, as the client does: a scan,
        // for an API call (a user deleted). `json`, not `jsonb`, for the
        // reason TAKE_BOUND_TRANSACTION gives.
        self.execute(
            "DELETE FROM access_tokens WHERE payload::json->>'user_id' = $1",
            &[&user_id],
            "revoking a user's access tokens",
        )
        .await
    }

    async fn delete_access_tokens_of_family(&self, family_id: &str) -> Result<u64, StoreError> {
        self.execute(
            "DELETE FROM access_tokens WHERE payload::json->>'family_id' = $1",
            &[&family_id],
            "revoking a refresh token's access tokens",
        )
        .await
    }

    async fn sweep_sessions(&self, now: u64) -> Result<SweptSessions, StoreError> {
        let now = to_db(now, "now")?;
        // Clients go with their sessions (ON DELETE CASCADE).
        let sessions = self
            .execute(
                "DELETE FROM sessions WHERE idle_expires_at <= $1 OR expires_at <= $1",
                &[&now],
                "sweeping sessions",
            )
            .await?;
        let refresh_tokens = self
            .execute(
                "DELETE FROM refresh_tokens
                 WHERE expires_at <= $1 OR (rotated_at IS NULL AND idle_expires_at <= $1)",
                &[&now],
                "sweeping refresh tokens",
            )
            .await?;
        self.execute(
            "DELETE FROM refresh_families WHERE expires_at <= $1",
            &[&now],
            "sweeping refresh tokens",
        )
        .await?;
        Ok(SweptSessions {
            sessions,
            refresh_tokens,
        })
    }
}
