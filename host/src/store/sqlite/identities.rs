//! Users' identities in SQLite (schema 8, issue #12 §6).
//!
//! An identity is a row of `user_identities` keyed by (connection,
//! provider id), naming its user; deleting the user deletes it. A login
//! through an identity, and an unlink, run in one immediate transaction
//! (the write lock from its first statement): two first logins with one
//! email, from this process or another on the file, decide one after the
//! other, the second seeing the first's user.

use rusqlite::Transaction;

use super::*;
use crate::store::identities::{self, Decision};
use crate::store::{IdentityLogin, IdentityOutcome, StoredIdentity, Unlinked};

/// Schema 8: identities, one per existing user (the provider id is the
/// profile's `user_id`, as `oauth2|<connection>|<id>` was built from it),
/// and users found by their exact email for linking.
pub(super) const MIGRATION: &str = "
    CREATE TABLE user_identities (
        connection TEXT NOT NULL,
        provider_user_id TEXT NOT NULL,
        user_id TEXT NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
        profile TEXT NOT NULL,
        is_social INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (connection, provider_user_id)
    ) WITHOUT ROWID;
    CREATE INDEX user_identities_by_user ON user_identities (user_id);
    CREATE INDEX users_by_email ON users (email_lower);

    INSERT INTO user_identities (connection, provider_user_id, user_id, profile, is_social,
                                 created_at, updated_at)
        SELECT connection, json_extract(profile, '$.user_id'), user_id, profile, 1,
               created_at, last_login
        FROM users;
";

const WHAT: &str = "recording a login's identity";

/// The columns [`read_identity`] reads, in its order.
macro_rules! identity_columns {
    () => {
        "connection, provider_user_id, user_id, profile, is_social, created_at, updated_at"
    };
}

/// A `user_identities` row before its profile is parsed.
struct IdentityRow {
    connection: String,
    provider_user_id: String,
    user_id: String,
    profile: String,
    is_social: bool,
    created_at: u64,
    updated_at: u64,
}

fn read_identity(r: &rusqlite::Row<'_>) -> rusqlite::Result<IdentityRow> {
    Ok(IdentityRow {
        connection: r.get(0)?,
        provider_user_id: r.get(1)?,
        user_id: r.get(2)?,
        profile: r.get(3)?,
        is_social: r.get(4)?,
        created_at: r.get(5)?,
        updated_at: r.get(6)?,
    })
}

fn into_identity(row: IdentityRow) -> Result<StoredIdentity, StoreError> {
    Ok(StoredIdentity {
        profile: from_json(&row.profile, "user_identities")?,
        connection: row.connection,
        provider_user_id: row.provider_user_id,
        user_id: row.user_id,
        is_social: row.is_social,
        created_at: row.created_at,
        updated_at: row.updated_at,
    })
}

/// Upserts the identity as `user_id`'s, unless it is another user's.
const PUT_IDENTITY: &str = "
    INSERT INTO user_identities (connection, provider_user_id, user_id, profile, is_social,
                                 created_at, updated_at)
    VALUES (?1, ?2, ?3, ?4, 1, ?5, ?5)
    ON CONFLICT (connection, provider_user_id) DO UPDATE SET
        profile = excluded.profile,
        updated_at = excluded.updated_at
    WHERE user_identities.user_id = excluded.user_id";

/// A login of `user_id` (created with `connection` if new): counted, and
/// the profile replaced when one is given.
fn login_user(
    tx: &Transaction<'_>,
    user_id: &str,
    connection: &str,
    profile: Option<&Profile>,
    now: u64,
) -> Result<User, StoreError> {
    match profile {
        Some(profile) => {
            let json = to_json(profile, "a profile")?;
            tx.prepare_cached(
                "INSERT INTO users (user_id, connection, profile, created_at, last_login,
                                    logins_count, email_lower)
                 VALUES (?1, ?2, ?3, ?4, ?4, 1, ?5)
                 ON CONFLICT (user_id) DO UPDATE SET
                     profile = excluded.profile,
                     email_lower = excluded.email_lower,
                     last_login = excluded.last_login,
                     logins_count = logins_count + 1",
            )
            .and_then(|mut s| {
                s.execute(params![user_id, connection, json, now, email_key(profile)])
            })
            .map_err(backend(WHAT))?;
        }
        None => {
            tx.prepare_cached(
                "UPDATE users SET last_login = ?2, logins_count = logins_count + 1
                 WHERE user_id = ?1",
            )
            .and_then(|mut s| s.execute(params![user_id, now]))
            .map_err(backend(WHAT))?;
        }
    }
    const GET_USER: &str = concat!("SELECT ", user_columns!(), " FROM users WHERE user_id = ?1");
    tx.prepare_cached(GET_USER)
        .and_then(|mut s| s.query_row(params![user_id], UserRow::read))
        .map_err(backend(WHAT))?
        .into_user()
}

/// [`Store::record_login`]: the user and its identity, in one transaction.
pub(super) fn record_login(
    conn: &mut Connection,
    user_id: &str,
    connection: &str,
    profile: &Profile,
    now: u64,
) -> Result<User, StoreError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(backend(WHAT))?;
    let user = login_user(&tx, user_id, connection, Some(profile), now)?;
    let json = to_json(profile, "a profile")?;
    tx.prepare_cached(PUT_IDENTITY)
        .and_then(|mut s| s.execute(params![connection, profile.user_id, user_id, json, now]))
        .map_err(backend(WHAT))?;
    tx.commit().map_err(backend(WHAT))?;
    Ok(user)
}

/// [`Store::record_identity_login`], and with `tokens`
/// [`Store::record_identity_login_with_tokens`] (the tokens are written in
/// the same transaction, unless the login is refused).
pub(super) fn record_identity_login(
    conn: &mut Connection,
    login: &IdentityLogin,
    tokens: Option<&IdpTokens>,
    now: u64,
) -> Result<IdentityOutcome, StoreError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(backend(WHAT))?;
    let json = to_json(&login.profile, "a profile")?;
    let owner: Option<String> = tx
        .prepare_cached(
            "SELECT user_id FROM user_identities WHERE connection = ?1 AND provider_user_id = ?2",
        )
        .and_then(|mut s| {
            s.query_row(params![login.connection, login.provider_user_id], |r| {
                r.get(0)
            })
            .optional()
        })
        .map_err(backend(WHAT))?;
    let outcome = match owner {
        Some(user_id) => {
            tx.prepare_cached(
                "UPDATE user_identities SET profile = ?3, updated_at = ?4
                 WHERE connection = ?1 AND provider_user_id = ?2",
            )
            .and_then(|mut s| {
                s.execute(params![login.connection, login.provider_user_id, json, now])
            })
            .map_err(backend(WHAT))?;
            let primary = user_id == login.user_id;
            let profile = primary.then_some(&login.profile);
            IdentityOutcome::Recorded(login_user(&tx, &user_id, &login.connection, profile, now)?)
        }
        None => {
            const SAME_EMAIL: &str = concat!(
                "SELECT ",
                user_columns!(),
                " FROM users WHERE user_id = ?1 OR (?2 IS NOT NULL AND email_lower = ?2)"
            );
            let same_email = tx
                .prepare_cached(SAME_EMAIL)
                .and_then(|mut s| {
                    s.query_map(params![login.user_id, login.email_key()], UserRow::read)?
                        .collect::<Result<Vec<_>, _>>()
                })
                .map_err(backend(WHAT))?
                .into_iter()
                .map(UserRow::into_user)
                .collect::<Result<Vec<_>, _>>()?;
            let (user_id, profile, linked) = match identities::decide(login, &same_email) {
                Decision::Refuse(why) => return Ok(IdentityOutcome::Refused(why)),
                Decision::Create => (login.user_id.clone(), Some(&login.profile), false),
                Decision::Link(user_id) => (user_id, None, true),
            };
            let user = login_user(&tx, &user_id, &login.connection, profile, now)?;
            tx.prepare_cached(PUT_IDENTITY)
                .and_then(|mut s| {
                    s.execute(params![
                        login.connection,
                        login.provider_user_id,
                        user_id,
                        json,
                        now
                    ])
                })
                .map_err(backend(WHAT))?;
            if linked {
                IdentityOutcome::Linked(user)
            } else {
                IdentityOutcome::Recorded(user)
            }
        }
    };
    if let Some(tokens) = tokens {
        super::idp_tokens::put_idp_tokens(&tx, tokens)?;
    }
    tx.commit().map_err(backend(WHAT))?;
    Ok(outcome)
}

/// [`Store::identities`].
pub(super) fn identities_of(
    conn: &mut Connection,
    user_ids: &[String],
) -> Result<Vec<StoredIdentity>, StoreError> {
    const OF_USERS: &str = concat!(
        "SELECT ",
        identity_columns!(),
        " FROM user_identities WHERE user_id IN (SELECT value FROM json_each(?1))
          ORDER BY user_id, created_at, connection, provider_user_id"
    );
    let ids = to_json(&user_ids, "user ids")?;
    conn.prepare_cached(OF_USERS)
        .and_then(|mut s| {
            s.query_map(params![ids], read_identity)?
                .collect::<Result<Vec<_>, _>>()
        })
        .map_err(backend("reading identities"))?
        .into_iter()
        .map(into_identity)
        .collect()
}

/// [`Store::unlink_identity`].
pub(super) fn unlink_identity(
    conn: &mut Connection,
    user_id: &str,
    key: (&str, &str),
    new_user_id: &str,
    now: u64,
) -> Result<Unlinked, StoreError> {
    const WHAT: &str = "unlinking an identity";
    const GET: &str = concat!(
        "SELECT ",
        identity_columns!(),
        " FROM user_identities WHERE connection = ?1 AND provider_user_id = ?2"
    );
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(backend(WHAT))?;
    let Some(identity) = tx
        .prepare_cached(GET)
        .and_then(|mut s| s.query_row(params![key.0, key.1], read_identity).optional())
        .map_err(backend(WHAT))?
        .map(into_identity)
        .transpose()?
        .filter(|i| i.user_id == user_id)
    else {
        return Ok(Unlinked::NoSuchIdentity);
    };
    if new_user_id == user_id {
        return Ok(Unlinked::Primary);
    }
    let user = identities::unlinked_user(&identity, new_user_id, now);
    let inserted = tx.execute(
        "INSERT INTO users (user_id, connection, profile, created_at, last_login, logins_count,
                            email_lower)
         VALUES (?1, ?2, ?3, ?4, ?5, 0, ?6)",
        params![
            user.user_id,
            user.connection,
            to_json(&user.profile, "a profile")?,
            user.created_at,
            user.last_login,
            email_key(&user.profile)
        ],
    );
    match inserted {
        Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::ConstraintViolation) => {
            return Err(StoreError::Conflict(format!("user `{new_user_id}`")));
        }
        other => other.map_err(backend(WHAT))?,
    };
    tx.execute(
        "UPDATE user_identities SET user_id = ?3 WHERE connection = ?1 AND provider_user_id = ?2",
        params![key.0, key.1, new_user_id],
    )
    .and_then(|_| tx.commit())
    .map_err(backend(WHAT))?;
    Ok(Unlinked::Unlinked(Box::new(user)))
}
