//! Users' identities in PostgreSQL (schema 8, issue #12 §6).
//!
//! # Several instances
//!
//! A login through an identity this database does not know yet takes a
//! transaction-scoped advisory lock on its lower-cased email (or on the
//! identity, without an email) before it reads the users it could join:
//! two first logins with one email, on any instances, run one after the
//! other, and under READ COMMITTED the second's reads (statements after
//! the lock) see the user the first created, so linking never makes two
//! users. A known identity needs no lock: its user is settled, and the
//! counters are one `UPDATE` each.

use tokio_postgres::Transaction;

use super::*;
use crate::store::identities::{self, Decision};
use crate::store::{IdentityLogin, IdentityOutcome, StoredIdentity, Unlinked};

/// Schema 8: identities, one per existing user (the provider id is the
/// profile's `user_id`, as `oauth2|<connection>|<id>` was built from it),
/// and users found by their exact email for linking.
pub(super) const MIGRATION: &str = r#"
    CREATE TABLE user_identities (
        connection text COLLATE "C" NOT NULL,
        provider_user_id text COLLATE "C" NOT NULL,
        user_id text COLLATE "C" NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
        profile text NOT NULL,
        is_social boolean NOT NULL,
        created_at bigint NOT NULL,
        updated_at bigint NOT NULL,
        PRIMARY KEY (connection, provider_user_id)
    );
    CREATE INDEX user_identities_by_user ON user_identities (user_id);
    CREATE INDEX users_by_email ON users (email_lower);

    INSERT INTO user_identities (connection, provider_user_id, user_id, profile, is_social,
                                 created_at, updated_at)
        SELECT connection, profile::jsonb ->> 'user_id', user_id, profile, true,
               created_at, last_login
        FROM users;
"#;

const WHAT: &str = "recording a login's identity";

/// The columns [`read_identity`] reads, in its order.
macro_rules! identity_columns {
    () => {
        "connection, provider_user_id, user_id, profile, is_social, created_at, updated_at"
    };
}

fn read_identity(row: &Row) -> Result<StoredIdentity, StoreError> {
    const T: &str = "user_identities";
    Ok(StoredIdentity {
        connection: column(row, 0, T)?,
        provider_user_id: column(row, 1, T)?,
        user_id: column(row, 2, T)?,
        profile: from_json(&column::<String>(row, 3, T)?, T)?,
        is_social: column(row, 4, T)?,
        created_at: unsigned(row, 5, T)?,
        updated_at: unsigned(row, 6, T)?,
    })
}

/// Serialises first logins that could join one user (see the module's
/// doc): the key of their lower-cased email, or of the identity.
const LOCK: &str = "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))";
const FIND: &str =
    "SELECT user_id FROM user_identities WHERE connection = $1 AND provider_user_id = $2";
const TOUCH_IDENTITY: &str = "UPDATE user_identities SET profile = $3, updated_at = $4
    WHERE connection = $1 AND provider_user_id = $2";
/// Upserts the identity as `user_id`'s, unless it is another user's.
const PUT_IDENTITY: &str = "
    INSERT INTO user_identities (connection, provider_user_id, user_id, profile, is_social,
                                 created_at, updated_at)
    VALUES ($1, $2, $3, $4, true, $5, $5)
    ON CONFLICT (connection, provider_user_id) DO UPDATE SET
        profile = EXCLUDED.profile,
        updated_at = EXCLUDED.updated_at
    WHERE user_identities.user_id = EXCLUDED.user_id";
const UPSERT_USER: &str = "
    INSERT INTO users (user_id, connection, profile, created_at, last_login, logins_count,
                       email_lower)
    VALUES ($1, $2, $3, $4, $4, 1, $5)
    ON CONFLICT (user_id) DO UPDATE SET
        profile = EXCLUDED.profile,
        email_lower = EXCLUDED.email_lower,
        last_login = EXCLUDED.last_login,
        logins_count = users.logins_count + 1";
const TOUCH_USER: &str =
    "UPDATE users SET last_login = $2, logins_count = logins_count + 1 WHERE user_id = $1";
const GET_USER: &str = concat!("SELECT ", user_columns!(), " FROM users WHERE user_id = $1");
const SAME_EMAIL: &str = concat!(
    "SELECT ",
    user_columns!(),
    " FROM users WHERE user_id = $1 OR ($2::bytea IS NOT NULL AND email_lower = $2)"
);

/// Every statement a login through an identity may run, prepared once
/// per connection.
struct Prepared {
    lock: Statement,
    find: Statement,
    touch_identity: Statement,
    put_identity: Statement,
    upsert_user: Statement,
    touch_user: Statement,
    get_user: Statement,
    same_email: Statement,
}

impl Prepared {
    async fn new(conn: &mut Conn) -> Result<Self, StoreError> {
        let mut prepare = async |sql| conn.prepare(sql).await.map_err(backend(WHAT));
        Ok(Self {
            lock: prepare(LOCK).await?,
            find: prepare(FIND).await?,
            touch_identity: prepare(TOUCH_IDENTITY).await?,
            put_identity: prepare(PUT_IDENTITY).await?,
            upsert_user: prepare(UPSERT_USER).await?,
            touch_user: prepare(TOUCH_USER).await?,
            get_user: prepare(GET_USER).await?,
            same_email: prepare(SAME_EMAIL).await?,
        })
    }
}

/// A login of `user_id` (created with `connection` if new): counted, and
/// the profile replaced when one is given.
async fn login_user(
    tx: &Transaction<'_>,
    st: &Prepared,
    user_id: &str,
    connection: &str,
    profile: Option<&Profile>,
    now: i64,
) -> Result<User, StoreError> {
    match profile {
        Some(profile) => {
            let json = to_json(profile, "a profile")?;
            let email = email_key(profile);
            let email = email.as_deref().map(str::as_bytes);
            tx.execute(
                &st.upsert_user,
                &[&user_id, &connection, &json, &now, &email],
            )
            .await
            .map_err(backend(WHAT))?;
        }
        None => {
            tx.execute(&st.touch_user, &[&user_id, &now])
                .await
                .map_err(backend(WHAT))?;
        }
    }
    let row = tx
        .query_one(&st.get_user, &[&user_id])
        .await
        .map_err(backend(WHAT))?;
    read_user(&row)
}

impl PostgresStore {
    /// [`Store::record_login`]: the user and its identity, in one
    /// transaction.
    pub(super) async fn login_with_identity(
        &self,
        user_id: &str,
        connection: &str,
        profile: &Profile,
        now: u64,
    ) -> Result<User, StoreError> {
        let now = to_db(now, "now")?;
        let json = to_json(profile, "a profile")?;
        let mut conn = self.conn().await?;
        let st = Prepared::new(&mut conn).await?;
        let tx = conn.client.transaction().await.map_err(backend(WHAT))?;
        let user = login_user(&tx, &st, user_id, connection, Some(profile), now).await?;
        tx.execute(
            &st.put_identity,
            &[&connection, &profile.user_id, &user_id, &json, &now],
        )
        .await
        .map_err(backend(WHAT))?;
        tx.commit().await.map_err(backend(WHAT))?;
        Ok(user)
    }

    /// [`Store::record_identity_login`], and with `tokens`
    /// [`Store::record_identity_login_with_tokens`] (the tokens written in
    /// the same transaction, unless the login is refused).
    pub(super) async fn identity_login(
        &self,
        login: &IdentityLogin,
        tokens: Option<&IdpTokens>,
        now: u64,
    ) -> Result<IdentityOutcome, StoreError> {
        let now = to_db(now, "now")?;
        let json = to_json(&login.profile, "a profile")?;
        let key = [&login.connection, &login.provider_user_id];
        let mut conn = self.conn().await?;
        let st = Prepared::new(&mut conn).await?;
        let put_tokens = conn
            .prepare(super::idp_tokens::PUT_IDP_TOKENS)
            .await
            .map_err(backend(WHAT))?;
        let tx = conn.client.transaction().await.map_err(backend(WHAT))?;
        let find = &st.find;
        let mut owner = tx
            .query_opt(find, &[key[0], key[1]])
            .await
            .map_err(backend(WHAT))?;
        if owner.is_none() {
            // A first login: serialised with any other that could join
            // the same user, then looked up again (one of them may have
            // just created this very identity).
            let lock = match login.email.as_deref() {
                Some(email) => format!("waypass-email:{}", email.to_lowercase()),
                None => format!("waypass-identity:{}|{}", key[0], key[1]),
            };
            tx.execute(&st.lock, &[&lock])
                .await
                .map_err(backend(WHAT))?;
            owner = tx
                .query_opt(find, &[key[0], key[1]])
                .await
                .map_err(backend(WHAT))?;
        }
        let outcome = match owner {
            Some(row) => {
                let user_id: String = column(&row, 0, "user_identities")?;
                tx.execute(&st.touch_identity, &[key[0], key[1], &json, &now])
                    .await
                    .map_err(backend(WHAT))?;
                let profile = (user_id == login.user_id).then_some(&login.profile);
                let user = login_user(&tx, &st, &user_id, &login.connection, profile, now).await?;
                IdentityOutcome::Recorded(user)
            }
            None => {
                let email = login.email_key();
                let email = email.as_deref().map(str::as_bytes);
                let same_email = tx
                    .query(&st.same_email, &[&login.user_id, &email])
                    .await
                    .map_err(backend(WHAT))?
                    .iter()
                    .map(read_user)
                    .collect::<Result<Vec<_>, _>>()?;
                let (user_id, profile, linked) = match identities::decide(login, &same_email) {
                    Decision::Refuse(why) => return Ok(IdentityOutcome::Refused(why)),
                    Decision::Create => (login.user_id.clone(), Some(&login.profile), false),
                    Decision::Link(user_id) => (user_id, None, true),
                };
                let user = login_user(&tx, &st, &user_id, &login.connection, profile, now).await?;
                tx.execute(&st.put_identity, &[key[0], key[1], &user_id, &json, &now])
                    .await
                    .map_err(backend(WHAT))?;
                if linked {
                    IdentityOutcome::Linked(user)
                } else {
                    IdentityOutcome::Recorded(user)
                }
            }
        };
        if let Some(tokens) = tokens {
            super::idp_tokens::put_idp_tokens_in(&tx, &put_tokens, tokens).await?;
        }
        tx.commit().await.map_err(backend(WHAT))?;
        Ok(outcome)
    }

    /// [`Store::identities`].
    pub(super) async fn identities_of(
        &self,
        user_ids: &[String],
    ) -> Result<Vec<StoredIdentity>, StoreError> {
        const OF_USERS: &str = concat!(
            "SELECT ",
            identity_columns!(),
            " FROM user_identities WHERE user_id = ANY($1)
              ORDER BY user_id, created_at, connection, provider_user_id"
        );
        self.query(OF_USERS, &[&user_ids], "reading identities")
            .await?
            .iter()
            .map(read_identity)
            .collect()
    }

    /// [`Store::unlink_identity`].
    pub(super) async fn unlink(
        &self,
        user_id: &str,
        key: (&str, &str),
        new_user_id: &str,
        now: u64,
    ) -> Result<Unlinked, StoreError> {
        const WHAT: &str = "unlinking an identity";
        const GET: &str = concat!(
            "SELECT ",
            identity_columns!(),
            " FROM user_identities WHERE connection = $1 AND provider_user_id = $2 FOR UPDATE"
        );
        const INSERT_USER: &str = "
            INSERT INTO users (user_id, connection, profile, created_at, last_login,
                               logins_count, email_lower)
            VALUES ($1, $2, $3, $4, $5, 0, $6)";
        const MOVE: &str = "UPDATE user_identities SET user_id = $3
            WHERE connection = $1 AND provider_user_id = $2";
        let mut conn = self.conn().await?;
        let get = conn.prepare(GET).await.map_err(backend(WHAT))?;
        let insert = conn.prepare(INSERT_USER).await.map_err(backend(WHAT))?;
        let moved = conn.prepare(MOVE).await.map_err(backend(WHAT))?;
        let tx = conn.client.transaction().await.map_err(backend(WHAT))?;
        let Some(identity) = tx
            .query_opt(&get, &[&key.0, &key.1])
            .await
            .map_err(backend(WHAT))?
            .as_ref()
            .map(read_identity)
            .transpose()?
            .filter(|i| i.user_id == user_id)
        else {
            return Ok(Unlinked::NoSuchIdentity);
        };
        if new_user_id == user_id {
            return Ok(Unlinked::Primary);
        }
        let user = identities::unlinked_user(&identity, new_user_id, now);
        let email = email_key(&user.profile);
        let email = email.as_deref().map(str::as_bytes);
        let inserted = tx
            .execute(
                &insert,
                &[
                    &user.user_id,
                    &user.connection,
                    &to_json(&user.profile, "a profile")?,
                    &to_db(user.created_at, "now")?,
                    &to_db(user.last_login, "last_login")?,
                    &email,
                ],
            )
            .await;
        match inserted {
            Err(e) if is_unique_violation(&e) => {
                return Err(StoreError::Conflict(format!("user `{new_user_id}`")));
            }
            other => other.map_err(backend(WHAT))?,
        };
        tx.execute(&moved, &[&key.0, &key.1, &new_user_id])
            .await
            .map_err(backend(WHAT))?;
        tx.commit().await.map_err(backend(WHAT))?;
        Ok(Unlinked::Unlinked(Box::new(user)))
    }
}
