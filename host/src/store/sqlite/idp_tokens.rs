//! The provider's tokens in SQLite (schema 7).

use super::*;
use crate::store::idp_tokens::{IdpTokenStore, IdpTokens};

/// Schema 7: one row per identity; the token columns hold what the
/// sealing layer gives (sealed values).
pub(super) const MIGRATION: &str = "
    CREATE TABLE idp_tokens (
        connection_id TEXT NOT NULL,
        provider_user_id TEXT NOT NULL,
        access_token TEXT NOT NULL,
        refresh_token TEXT,
        expires_at INTEGER,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (connection_id, provider_user_id)
    ) WITHOUT ROWID;
";

const COLUMNS: &str =
    "connection_id, provider_user_id, access_token, refresh_token, expires_at, updated_at";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<IdpTokens> {
    Ok(IdpTokens {
        connection_id: r.get(0)?,
        provider_user_id: r.get(1)?,
        access_token: r.get(2)?,
        refresh_token: r.get(3)?,
        expires_at: r.get::<_, Option<i64>>(4)?.map(|t| t.max(0) as u64),
        updated_at: r.get::<_, i64>(5)?.max(0) as u64,
    })
}

/// Seconds as SQLite's INTEGER (an i64; times this far out do not occur).
fn seconds(t: u64) -> i64 {
    i64::try_from(t).unwrap_or(i64::MAX)
}

/// Writes (inserts or replaces) an identity's tokens on `conn`: alone, or
/// in a login's transaction ([`Store::record_identity_login_with_tokens`]).
pub(super) fn put_idp_tokens(conn: &Connection, t: &IdpTokens) -> Result<(), StoreError> {
    execute(
        conn,
        "INSERT INTO idp_tokens (connection_id, provider_user_id, access_token, refresh_token, expires_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (connection_id, provider_user_id) DO UPDATE SET
             access_token = excluded.access_token, refresh_token = excluded.refresh_token,
             expires_at = excluded.expires_at, updated_at = excluded.updated_at",
        params![
            t.connection_id,
            t.provider_user_id,
            t.access_token,
            t.refresh_token,
            t.expires_at.map(seconds),
            seconds(t.updated_at),
        ],
        "storing the provider's tokens",
    )?;
    Ok(())
}

#[async_trait]
impl IdpTokenStore for SqliteStore {
    async fn put_idp_tokens(&self, tokens: &IdpTokens) -> Result<(), StoreError> {
        let t = tokens.clone();
        self.call(move |conn| put_idp_tokens(conn, &t)).await
    }

    async fn idp_tokens(
        &self,
        connection_id: &str,
        provider_user_id: &str,
    ) -> Result<Option<IdpTokens>, StoreError> {
        let (c, u) = (connection_id.to_owned(), provider_user_id.to_owned());
        self.call(move |conn| {
            conn.prepare_cached(
                "SELECT connection_id, provider_user_id, access_token, refresh_token, expires_at, updated_at
                 FROM idp_tokens WHERE connection_id = ?1 AND provider_user_id = ?2",
            )
            .and_then(|mut s| s.query_row(params![c, u], row).optional())
            .map_err(backend("reading the provider's tokens"))
        })
        .await
    }

    async fn all_idp_tokens(&self) -> Result<Vec<IdpTokens>, StoreError> {
        self.call(move |conn| {
            let what = backend("listing the provider's tokens");
            let mut s = conn
                .prepare(&format!(
                    "SELECT {COLUMNS} FROM idp_tokens ORDER BY connection_id, provider_user_id"
                ))
                .map_err(&what)?;
            let rows = s.query_map([], row).map_err(&what)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(&what)
        })
        .await
    }

    async fn replace_idp_tokens(
        &self,
        current: &IdpTokens,
        next: &IdpTokens,
    ) -> Result<bool, StoreError> {
        let (c, n) = (current.clone(), next.clone());
        let replaced = self
            .execute(
                "UPDATE idp_tokens SET access_token = ?3, refresh_token = ?4, expires_at = ?5, updated_at = ?6
                 WHERE connection_id = ?1 AND provider_user_id = ?2
                   AND access_token = ?7 AND refresh_token IS ?8 AND expires_at IS ?9 AND updated_at = ?10",
                (
                    c.connection_id,
                    c.provider_user_id,
                    n.access_token,
                    n.refresh_token,
                    n.expires_at.map(seconds),
                    seconds(n.updated_at),
                    c.access_token,
                    c.refresh_token,
                    c.expires_at.map(seconds),
                    seconds(c.updated_at),
                ),
                "resealing the provider's tokens",
            )
            .await?;
        Ok(replaced > 0)
    }

    async fn delete_idp_tokens(
        &self,
        connection_id: &str,
        provider_user_id: &str,
    ) -> Result<bool, StoreError> {
        let deleted = self
            .execute(
                "DELETE FROM idp_tokens WHERE connection_id = ?1 AND provider_user_id = ?2",
                (connection_id.to_owned(), provider_user_id.to_owned()),
                "deleting the provider's tokens",
            )
            .await?;
        Ok(deleted > 0)
    }
}
