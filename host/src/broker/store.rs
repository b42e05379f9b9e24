//! The broker's state, behind a trait: short-lived login transactions,
//! authorization codes and access tokens, and users.
//!
//! Every key is the SHA-256 of a random bearer value (state, code, token), so
//! a copy of the store hands out nothing usable. `take_*` removes what it
//! returns: single use is the store's job, atomic in every backend.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::secret::{Secret, SecretHash};
use crate::mapper::Profile;

/// A login between `/authorize` and `/login/callback`.
#[derive(Debug, Clone)]
pub struct LoginTransaction {
    pub client_id: String,
    pub redirect_uri: String,
    /// The app's `state`, returned to it unchanged.
    pub app_state: Option<String>,
    pub nonce: Option<String>,
    /// The app's PKCE S256 challenge.
    pub code_challenge: Option<String>,
    pub scope: String,
    pub connection: String,
    /// Our PKCE verifier towards the provider.
    pub provider_verifier: Option<Secret>,
    /// Hash of the cookie that binds the login to the browser.
    pub browser_binding: SecretHash,
    pub correlation_id: String,
    pub expires_at: u64,
}

/// What an authorization code stands for, until redeemed.
#[derive(Debug, Clone)]
pub struct AuthorizationGrant {
    pub client_id: String,
    pub redirect_uri: String,
    pub user_id: String,
    pub scope: String,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub auth_time: u64,
    pub expires_at: u64,
}

/// What an access token stands for.
#[derive(Debug, Clone)]
pub struct AccessGrant {
    pub user_id: String,
    pub client_id: String,
    pub scope: String,
    pub expires_at: u64,
}

/// A user as Waypass knows them: `oauth2|<connection>|<provider id>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    pub user_id: String,
    pub connection: String,
    pub profile: Profile,
    pub created_at: u64,
    pub last_login: u64,
    pub logins_count: u64,
}

/// A store failure (the backend, not the caller, is at fault).
#[derive(Debug, thiserror::Error)]
#[error("store: {0}")]
pub struct StoreError(pub String);

/// Where the broker keeps its state. One conformance suite runs against
/// every implementation.
#[async_trait]
pub trait Store: Send + Sync {
    async fn put_transaction(
        &self,
        state: SecretHash,
        tx: LoginTransaction,
    ) -> Result<(), StoreError>;
    /// Removes and returns the transaction, unless absent or expired.
    async fn take_transaction(
        &self,
        state: SecretHash,
        now: u64,
    ) -> Result<Option<LoginTransaction>, StoreError>;
    async fn put_code(&self, code: SecretHash, grant: AuthorizationGrant)
    -> Result<(), StoreError>;
    /// Removes and returns the grant, unless absent or expired.
    async fn take_code(
        &self,
        code: SecretHash,
        now: u64,
    ) -> Result<Option<AuthorizationGrant>, StoreError>;
    async fn put_access_token(
        &self,
        token: SecretHash,
        grant: AccessGrant,
    ) -> Result<(), StoreError>;
    async fn get_access_token(
        &self,
        token: SecretHash,
        now: u64,
    ) -> Result<Option<AccessGrant>, StoreError>;
    /// Creates the user or records another login: profile replaced, count
    /// incremented, first login kept.
    async fn record_login(
        &self,
        user_id: &str,
        connection: &str,
        profile: Profile,
        now: u64,
    ) -> Result<User, StoreError>;
    async fn get_user(&self, user_id: &str) -> Result<Option<User>, StoreError>;
}

/// Take operations between sweeps of expired entries.
const SWEEP_EVERY: usize = 1024;

/// Everything in memory: for tests and a single process that may lose
/// in-flight logins on restart.
#[derive(Default)]
pub struct MemoryStore {
    transactions: Expiring<LoginTransaction>,
    codes: Expiring<AuthorizationGrant>,
    tokens: Expiring<AccessGrant>,
    users: Mutex<HashMap<String, User>>,
}

/// Entries by key hash, each with its expiry; and a count of operations
/// since the last sweep.
type Entries<T> = (HashMap<SecretHash, (u64, T)>, usize);

struct Expiring<T> {
    map: Mutex<Entries<T>>,
}

impl<T> Default for Expiring<T> {
    fn default() -> Self {
        Self {
            map: Mutex::new((HashMap::new(), 0)),
        }
    }
}

impl<T: Clone> Expiring<T> {
    fn lock(&self) -> std::sync::MutexGuard<'_, Entries<T>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn put(&self, key: SecretHash, expires_at: u64, value: T) {
        self.lock().0.insert(key, (expires_at, value));
    }

    /// Removes `key`; every [`SWEEP_EVERY`] calls also drops what expired,
    /// so abandoned logins do not accumulate.
    fn take(&self, key: &SecretHash, now: u64) -> Option<T> {
        let mut guard = self.lock();
        let (exp, value) = Self::sweep(&mut guard, now).remove(key)?;
        (exp > now).then_some(value)
    }

    fn get(&self, key: &SecretHash, now: u64) -> Option<T> {
        let mut guard = self.lock();
        let (exp, value) = Self::sweep(&mut guard, now).get(key)?;
        (*exp > now).then(|| value.clone())
    }

    fn sweep(guard: &mut Entries<T>, now: u64) -> &mut HashMap<SecretHash, (u64, T)> {
        let (map, ops) = guard;
        *ops += 1;
        if *ops % SWEEP_EVERY == 0 {
            map.retain(|_, (exp, _)| *exp > now);
        }
        map
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn put_transaction(
        &self,
        state: SecretHash,
        tx: LoginTransaction,
    ) -> Result<(), StoreError> {
        let exp = tx.expires_at;
        self.transactions.put(state, exp, tx);
        Ok(())
    }

    async fn take_transaction(
        &self,
        state: SecretHash,
        now: u64,
    ) -> Result<Option<LoginTransaction>, StoreError> {
        Ok(self.transactions.take(&state, now))
    }

    async fn put_code(
        &self,
        code: SecretHash,
        grant: AuthorizationGrant,
    ) -> Result<(), StoreError> {
        let exp = grant.expires_at;
        self.codes.put(code, exp, grant);
        Ok(())
    }

    async fn take_code(
        &self,
        code: SecretHash,
        now: u64,
    ) -> Result<Option<AuthorizationGrant>, StoreError> {
        Ok(self.codes.take(&code, now))
    }

    async fn put_access_token(
        &self,
        token: SecretHash,
        grant: AccessGrant,
    ) -> Result<(), StoreError> {
        let exp = grant.expires_at;
        self.tokens.put(token, exp, grant);
        Ok(())
    }

    async fn get_access_token(
        &self,
        token: SecretHash,
        now: u64,
    ) -> Result<Option<AccessGrant>, StoreError> {
        Ok(self.tokens.get(&token, now))
    }

    async fn record_login(
        &self,
        user_id: &str,
        connection: &str,
        profile: Profile,
        now: u64,
    ) -> Result<User, StoreError> {
        let mut users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        let user = users
            .entry(user_id.to_owned())
            .and_modify(|u| {
                u.profile = profile.clone();
                u.last_login = now;
                u.logins_count += 1;
            })
            .or_insert_with(|| User {
                user_id: user_id.to_owned(),
                connection: connection.to_owned(),
                profile,
                created_at: now,
                last_login: now,
                logins_count: 1,
            });
        Ok(user.clone())
    }

    async fn get_user(&self, user_id: &str) -> Result<Option<User>, StoreError> {
        Ok(self
            .users
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(user_id)
            .cloned())
    }
}
