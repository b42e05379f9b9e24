//! The stored forms both database backends share: a short-lived row's
//! payload is the same JSON in SQLite and PostgreSQL (SQLite's tests pin
//! it), so a change here needs a migration in each.

use serde::{Deserialize, Serialize};

use super::{LoginTransaction, SessionLogin, StoreError};
use crate::mapper::Profile;
use crate::secret::{Secret, SecretHash};

pub(super) fn to_json(value: &impl Serialize, what: &str) -> Result<String, StoreError> {
    serde_json::to_string(value)
        .map_err(|e| StoreError::Backend(format!("encoding {what} as JSON: {e}")))
}

pub(super) fn from_json<T: for<'de> Deserialize<'de>>(
    json: &str,
    what: &str,
) -> Result<T, StoreError> {
    serde_json::from_str(json)
        .map_err(|e| StoreError::Backend(format!("{what}: a stored row does not parse: {e}")))
}

/// A [`LoginTransaction`] as stored (its `expires_at` is a column).
#[derive(Serialize, Deserialize)]
pub(super) struct StoredTransaction {
    client_id: String,
    redirect_uri: String,
    app_state: Option<String>,
    nonce: Option<String>,
    code_challenge: Option<String>,
    scope: String,
    connection: String,
    #[serde(serialize_with = "serialize_secret")]
    provider_verifier: Option<Secret>,
    browser_binding: SecretHash,
    correlation_id: String,
    /// Left out when false and `None`: rows written before the fields
    /// existed read back unchanged, and so do new rows without them.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    form_post: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    audience: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    query: Vec<(String, String)>,
}

impl StoredTransaction {
    pub(super) fn new(tx: &LoginTransaction) -> Self {
        Self {
            client_id: tx.client_id.clone(),
            redirect_uri: tx.redirect_uri.clone(),
            app_state: tx.app_state.clone(),
            nonce: tx.nonce.clone(),
            code_challenge: tx.code_challenge.clone(),
            scope: tx.scope.clone(),
            connection: tx.connection.clone(),
            provider_verifier: tx.provider_verifier.clone(),
            browser_binding: tx.browser_binding,
            correlation_id: tx.correlation_id.clone(),
            form_post: tx.form_post,
            audience: tx.audience.clone(),
            query: tx.query.clone(),
        }
    }

    pub(super) fn into_transaction(self, expires_at: u64) -> LoginTransaction {
        LoginTransaction {
            client_id: self.client_id,
            redirect_uri: self.redirect_uri,
            app_state: self.app_state,
            nonce: self.nonce,
            code_challenge: self.code_challenge,
            scope: self.scope,
            connection: self.connection,
            provider_verifier: self.provider_verifier,
            browser_binding: self.browser_binding,
            correlation_id: self.correlation_id,
            expires_at,
            form_post: self.form_post,
            audience: self.audience,
            query: self.query,
        }
    }
}

/// `Secret` does not implement `Serialize` (so it cannot leak through an
/// API's serialisation); the store is the one place that writes it out.
fn serialize_secret<S: serde::Serializer>(
    secret: &Option<Secret>,
    s: S,
) -> Result<S::Ok, S::Error> {
    secret.as_ref().map(Secret::expose).serialize(s)
}

/// The search key of a user's email: Rust's Unicode lower-casing, the
/// memory store's comparison (SQL's `lower()` differs: SQLite's folds ASCII
/// only, PostgreSQL's follows the database's locale).
pub(super) fn email_key(profile: &Profile) -> Option<String> {
    profile.email.as_deref().map(str::to_lowercase)
}

/// Merges `patch` into `target` as Auth0 merges `app_metadata` and
/// `user_metadata`: each top-level property of `patch` replaces the one in
/// `target` (objects are not merged deeper), and a property set to `null`
/// is removed.
pub fn merge_metadata(target: &mut super::Metadata, patch: &super::Metadata) {
    for (key, value) in patch {
        if value.is_null() {
            target.remove(key);
        } else {
            target.insert(key.clone(), value.clone());
        }
    }
}

/// A session's payload: what is not a column of its own.
#[derive(Serialize, Deserialize)]
pub(super) struct StoredSession {
    pub(super) logins: Vec<SessionLogin>,
}
