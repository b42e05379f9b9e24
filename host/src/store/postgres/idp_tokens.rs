//! The provider's tokens in PostgreSQL (schema 7).

use super::*;
use crate::store::idp_tokens::{IdpTokenStore, IdpTokens};

/// Schema 7: one row per identity; the token columns hold what the
/// sealing layer gives (sealed values).
pub(super) const MIGRATION: &str = r#"
    CREATE TABLE idp_tokens (
        connection_id text COLLATE "C" NOT NULL,
        provider_user_id text COLLATE "C" NOT NULL,
        access_token text NOT NULL,
        refresh_token text,
        expires_at bigint,
        updated_at bigint NOT NULL,
        PRIMARY KEY (connection_id, provider_user_id)
    );
"#;

fn tokens(row: &Row) -> Result<IdpTokens, StoreError> {
    const WHAT: &str = "idp_tokens";
    Ok(IdpTokens {
        connection_id: column(row, 0, WHAT)?,
        provider_user_id: column(row, 1, WHAT)?,
        access_token: column(row, 2, WHAT)?,
        refresh_token: column(row, 3, WHAT)?,
        expires_at: column::<Option<i64>>(row, 4, WHAT)?.map(|t| t.max(0) as u64),
        updated_at: column::<i64>(row, 5, WHAT)?.max(0) as u64,
    })
}

/// Seconds as a `bigint` (times this far out do not occur).
fn seconds(t: u64) -> i64 {
    i64::try_from(t).unwrap_or(i64::MAX)
}

/// Inserts or replaces an identity's tokens: `$1`–`$6` as the columns.
pub(super) const PUT_IDP_TOKENS: &str = "INSERT INTO idp_tokens (connection_id, provider_user_id, access_token, refresh_token, expires_at, updated_at)
     VALUES ($1, $2, $3, $4, $5, $6)
     ON CONFLICT (connection_id, provider_user_id) DO UPDATE SET
         access_token = excluded.access_token, refresh_token = excluded.refresh_token,
         expires_at = excluded.expires_at, updated_at = excluded.updated_at";

/// Writes an identity's tokens in `tx` with `put` ([`PUT_IDP_TOKENS`]
/// prepared): a login's, beside its identity
/// ([`Store::record_identity_login_with_tokens`]).
pub(super) async fn put_idp_tokens_in(
    tx: &tokio_postgres::Transaction<'_>,
    put: &Statement,
    t: &IdpTokens,
) -> Result<(), StoreError> {
    let (expires_at, updated_at) = (t.expires_at.map(seconds), seconds(t.updated_at));
    tx.execute(
        put,
        &[
            &t.connection_id,
            &t.provider_user_id,
            &t.access_token,
            &t.refresh_token,
            &expires_at,
            &updated_at,
        ],
    )
    .await
    .map_err(backend("storing the provider's tokens"))?;
    Ok(())
}

#[async_trait]
impl IdpTokenStore for PostgresStore {
    async fn put_idp_tokens(&self, t: &IdpTokens) -> Result<(), StoreError> {
        let (expires_at, updated_at) = (t.expires_at.map(seconds), seconds(t.updated_at));
        self.execute(
            PUT_IDP_TOKENS,
            &[
                &t.connection_id,
                &t.provider_user_id,
                &t.access_token,
                &t.refresh_token,
                &expires_at,
                &updated_at,
            ],
            "storing the provider's tokens",
        )
        .await?;
        Ok(())
    }

    async fn idp_tokens(
        &self,
        connection_id: &str,
        provider_user_id: &str,
    ) -> Result<Option<IdpTokens>, StoreError> {
        self.query_opt(
            "SELECT connection_id, provider_user_id, access_token, refresh_token, expires_at, updated_at
             FROM idp_tokens WHERE connection_id = $1 AND provider_user_id = $2",
            &[&connection_id, &provider_user_id],
            "reading the provider's tokens",
        )
        .await?
        .map(|row| tokens(&row))
        .transpose()
    }

    async fn all_idp_tokens(&self) -> Result<Vec<IdpTokens>, StoreError> {
        self.query(
            "SELECT connection_id, provider_user_id, access_token, refresh_token, expires_at, updated_at
             FROM idp_tokens ORDER BY connection_id, provider_user_id",
            &[],
            "listing the provider's tokens",
        )
        .await?
        .iter()
        .map(tokens)
        .collect()
    }

    async fn replace_idp_tokens(&self, c: &IdpTokens, n: &IdpTokens) -> Result<bool, StoreError> {
        let (c_expires, c_updated) = (c.expires_at.map(seconds), seconds(c.updated_at));
        let (n_expires, n_updated) = (n.expires_at.map(seconds), seconds(n.updated_at));
        let replaced = self
            .execute(
                "UPDATE idp_tokens SET access_token = $3, refresh_token = $4, expires_at = $5, updated_at = $6
                 WHERE connection_id = $1 AND provider_user_id = $2
                   AND access_token = $7 AND refresh_token IS NOT DISTINCT FROM $8
                   AND expires_at IS NOT DISTINCT FROM $9 AND updated_at = $10",
                &[
                    &c.connection_id,
                    &c.provider_user_id,
                    &n.access_token,
                    &n.refresh_token,
                    &n_expires,
                    &n_updated,
                    &c.access_token,
                    &c.refresh_token,
                    &c_expires,
                    &c_updated,
                ],
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
                "DELETE FROM idp_tokens WHERE connection_id = $1 AND provider_user_id = $2",
                &[&connection_id, &provider_user_id],
                "deleting the provider's tokens",
            )
            .await?;
        Ok(deleted > 0)
    }
}
