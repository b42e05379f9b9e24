//! The store, sealed: a decorator around any [`Store`] that seals the
//! secrets it is given before the backend sees them and opens them as they
//! are read ([`super::crypt`]), so every backend (memory, SQLite,
//! PostgreSQL) keeps the same sealed values and none carries cryptography
//! of its own. Everything else passes through.
//!
//! Sealed here, each bound to its place (table, row id, field):
//! connections' `options.client_secret`, Actions' secret values, the
//! broker's signing-key document, each connection's `private_key_jwt` key
//! document, and the provider's tokens kept per identity (`access_token`,
//! `refresh_token`).
//!
//! A value read in the clear (written by an older schema, before secrets
//! were sealed) is returned as it is; [`SealedStore::rotate`] (`waypass
//! store rotate-key`) seals it, and reseals every value sealed under an
//! older key.

use std::sync::Arc;

use async_trait::async_trait;

use super::crypt::{CryptError, Keyring, Place};
use super::{IdentityLogin, IdentityOutcome, IdpTokenStore, IdpTokens, StoredIdentity, Unlinked};
use crate::mapper::Profile;
use crate::secret::SecretHash;
use crate::store::{
    AccessGrant, ActionEntry, ActionVersion, AuthorizationGrant, CatalogFeed, LogEvent, LogPage,
    LogQuery, LoginTransaction, MapperEntry, MapperVersion, Metadata, PutTransaction, Store,
    StoreError, StoredAction, StoredCatalog, StoredClient, StoredConnection, Swept,
    TakeTransaction, User,
};
use crate::store::{
    RefreshGrant, RefreshLookup, Rotation, Session, StoredBranding, StoredResourceServer,
    StoredRule, SweptSessions,
};

const CONNECTIONS: &str = "connections";
const CLIENT_SECRET: &str = "options.client_secret";
const ACTIONS: &str = "actions";
const SIGNING_KEYS: &str = "signing_keys";
/// The signing-key document is one row; its place names no id.
const SIGNING_KEYS_ID: &str = "broker";
const CONNECTION_KEYS: &str = "connection_keys";
const DOCUMENT: &str = "document";

impl From<CryptError> for StoreError {
    fn from(e: CryptError) -> Self {
        StoreError::Backend(format!("secrets at rest: {e}"))
    }
}

/// `inner`, with its secrets sealed under `keys`.
pub struct SealedStore {
    inner: Arc<dyn Store>,
    keys: Arc<Keyring>,
}

/// What [`SealedStore::rotate`] resealed (values already sealed under
/// the active key are skipped).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resealed {
    pub connections: u64,
    pub actions: u64,
    pub signing_keys: u64,
    pub connection_keys: u64,
    pub idp_tokens: u64,
}

impl SealedStore {
    pub fn new(inner: Arc<dyn Store>, keys: Arc<Keyring>) -> Self {
        Self { inner, keys }
    }

    /// The backend, unsealed values and all (tests read the raw rows).
    pub fn inner(&self) -> &Arc<dyn Store> {
        &self.inner
    }

    fn action_place<'a>(id: &'a str, name: &'a str) -> Place<'a> {
        Place {
            table: ACTIONS,
            id,
            field: name,
        }
    }

    fn seal_connection(&self, c: &StoredConnection) -> Result<StoredConnection, StoreError> {
        let mut sealed = c.clone();
        if let Some(secret) = &c.spec.options.client_secret {
            sealed.spec.options.client_secret =
                Some(self.keys.seal(connection_place(&c.id), secret)?);
        }
        Ok(sealed)
    }

    fn open_connection(&self, mut c: StoredConnection) -> Result<StoredConnection, StoreError> {
        if let Some(secret) = &c.spec.options.client_secret {
            let clear = self
                .keys
                .open(connection_place(&c.id), secret)?
                .into_clear();
            c.spec.options.client_secret = Some(clear);
        }
        Ok(c)
    }

    fn seal_action(&self, a: &StoredAction) -> Result<StoredAction, StoreError> {
        let mut sealed = a.clone();
        for s in &mut sealed.secrets {
            s.value = self
                .keys
                .seal(Self::action_place(&a.id, &s.name), &s.value)?;
        }
        Ok(sealed)
    }

    fn open_action(&self, mut a: StoredAction) -> Result<StoredAction, StoreError> {
        for s in &mut a.secrets {
            s.value = self
                .keys
                .open(Self::action_place(&a.id, &s.name), &s.value)?
                .into_clear();
        }
        Ok(a)
    }

    fn seal_document(&self, place: Place<'_>, document: &str) -> Result<String, StoreError> {
        Ok(self.keys.seal(place, document)?)
    }

    fn open_document(&self, place: Place<'_>, stored: &str) -> Result<String, StoreError> {
        Ok(self.keys.open(place, stored)?.into_clear())
    }

    /// Opens every sealed value once: a wrong key fails here, at
    /// start-up, with the key id it needs, rather than at the first login
    /// that reads a secret.
    pub async fn verify(&self) -> Result<(), StoreError> {
        for c in self.inner.connections().await? {
            self.open_connection(c)?;
        }
        for a in self.inner.actions().await? {
            self.open_action(a.action)?;
        }
        if let Some(doc) = self.inner.signing_keys().await? {
            self.open_document(signing_place(), &doc)?;
        }
        for c in self.inner.connections().await? {
            if let Some(doc) = self.inner.connection_keys(&c.id).await? {
                self.open_document(connection_keys_place(&c.id), &doc)?;
            }
        }
        Ok(())
    }

    /// Reseals every secret not sealed under the active key (sealed under
    /// an older key, or clear from an older schema): `waypass store
    /// rotate-key`. Each value is rewritten on its own (one backend write,
    /// atomic), so a rotation stopped half-way leaves every value readable
    /// with the keys given and a second run finishes it. Key documents are
    /// replaced by compare-and-swap, so a concurrent key rotation is not
    /// undone; connections and Actions are rewritten whole, so a
    /// management write racing the rotation on the same row may be lost:
    /// rotate when nobody edits them.
    pub async fn rotate(&self) -> Result<Resealed, StoreError> {
        let mut done = Resealed::default();
        for c in self.inner.connections().await? {
            if let Some(secret) = &c.spec.options.client_secret
                && !self.keys.is_current(secret)
            {
                let clear = self.open_connection(c)?;
                self.inner
                    .put_connection(&self.seal_connection(&clear)?)
                    .await?;
                done.connections += 1;
            }
        }
        for entry in self.inner.actions().await? {
            let a = entry.action;
            if a.secrets.iter().any(|s| !self.keys.is_current(&s.value)) {
                let clear = self.open_action(a)?;
                self.inner
                    .put_action(&self.seal_action(&clear)?, None)
                    .await?;
                done.actions += 1;
            }
        }
        if let Some(stored) = self.inner.signing_keys().await?
            && !self.keys.is_current(&stored)
        {
            let clear = self.open_document(signing_place(), &stored)?;
            let next = self.seal_document(signing_place(), &clear)?;
            if !self
                .inner
                .replace_signing_keys(Some(&stored), &next)
                .await?
            {
                return Err(StoreError::Backend(
                    "the signing keys changed during the rotation; run it again".into(),
                ));
            }
            done.signing_keys += 1;
        }
        for c in self.inner.connections().await? {
            let place = connection_keys_place(&c.id);
            if let Some(stored) = self.inner.connection_keys(&c.id).await?
                && !self.keys.is_current(&stored)
            {
                let clear = self.open_document(place, &stored)?;
                let next = self.seal_document(place, &clear)?;
                if !self
                    .inner
                    .replace_connection_keys(&c.id, &stored, &next)
                    .await?
                {
                    return Err(StoreError::Backend(format!(
                        "connection {}: its keys changed during the rotation; run it again",
                        c.id
                    )));
                }
                done.connection_keys += 1;
            }
        }
        done.idp_tokens = self.rotate_idp_tokens().await?;
        Ok(done)
    }
}

fn connection_place(id: &str) -> Place<'_> {
    Place {
        table: CONNECTIONS,
        id,
        field: CLIENT_SECRET,
    }
}

fn connection_keys_place(id: &str) -> Place<'_> {
    Place {
        table: CONNECTION_KEYS,
        id,
        field: DOCUMENT,
    }
}

fn signing_place() -> Place<'static> {
    Place {
        table: SIGNING_KEYS,
        id: SIGNING_KEYS_ID,
        field: DOCUMENT,
    }
}

#[async_trait]
impl Store for SealedStore {
    // Branding and Rules hold no secrets: passed through.
    async fn branding(&self) -> Result<StoredBranding, StoreError> {
        self.inner.branding().await
    }
    async fn put_branding_settings(&self, settings: &str) -> Result<(), StoreError> {
        self.inner.put_branding_settings(settings).await
    }
    async fn put_universal_login_template(
        &self,
        template: Option<&str>,
    ) -> Result<bool, StoreError> {
        self.inner.put_universal_login_template(template).await
    }
    async fn put_rule(&self, rule: &StoredRule) -> Result<(), StoreError> {
        self.inner.put_rule(rule).await
    }
    async fn rules(&self) -> Result<Vec<StoredRule>, StoreError> {
        self.inner.rules().await
    }
    async fn delete_rule(&self, id: &str) -> Result<bool, StoreError> {
        self.inner.delete_rule(id).await
    }
    async fn put_transaction(
        &self,
        state: SecretHash,
        tx: LoginTransaction,
        now: u64,
        max_live: usize,
    ) -> Result<PutTransaction, StoreError> {
        self.inner.put_transaction(state, tx, now, max_live).await
    }
    async fn take_transaction(
        &self,
        state: SecretHash,
        binding: Option<SecretHash>,
        now: u64,
    ) -> Result<TakeTransaction, StoreError> {
        self.inner.take_transaction(state, binding, now).await
    }
    async fn put_code(
        &self,
        code: SecretHash,
        grant: AuthorizationGrant,
    ) -> Result<(), StoreError> {
        self.inner.put_code(code, grant).await
    }
    async fn take_code(
        &self,
        code: SecretHash,
        now: u64,
    ) -> Result<Option<AuthorizationGrant>, StoreError> {
        self.inner.take_code(code, now).await
    }
    async fn take_code_with_user(
        &self,
        code: SecretHash,
        now: u64,
    ) -> Result<Option<(AuthorizationGrant, Option<User>)>, StoreError> {
        self.inner.take_code_with_user(code, now).await
    }
    async fn put_access_token(
        &self,
        token: SecretHash,
        grant: AccessGrant,
    ) -> Result<(), StoreError> {
        self.inner.put_access_token(token, grant).await
    }
    async fn get_access_token(
        &self,
        token: SecretHash,
        now: u64,
    ) -> Result<Option<AccessGrant>, StoreError> {
        self.inner.get_access_token(token, now).await
    }
    async fn delete_access_tokens_of_client(&self, client_id: &str) -> Result<u64, StoreError> {
        self.inner.delete_access_tokens_of_client(client_id).await
    }
    async fn sweep_expired(&self, now: u64) -> Result<Swept, StoreError> {
        self.inner.sweep_expired(now).await
    }
    async fn record_login(
        &self,
        user_id: &str,
        connection: &str,
        profile: Profile,
        now: u64,
    ) -> Result<User, StoreError> {
        self.inner
            .record_login(user_id, connection, profile, now)
            .await
    }
    // Identities hold no secrets (the provider's tokens are kept apart,
    // sealed): passed through.
    async fn record_identity_login(
        &self,
        login: &IdentityLogin,
        now: u64,
    ) -> Result<IdentityOutcome, StoreError> {
        self.inner.record_identity_login(login, now).await
    }
    async fn record_identity_login_with_tokens(
        &self,
        login: &IdentityLogin,
        tokens: &IdpTokens,
        now: u64,
    ) -> Result<IdentityOutcome, StoreError> {
        self.inner
            .record_identity_login_with_tokens(login, &self.seal_idp_tokens(tokens)?, now)
            .await
    }
    async fn put_session_and_code(
        &self,
        session_key: SecretHash,
        session: &Session,
        code: SecretHash,
        grant: AuthorizationGrant,
    ) -> Result<(), StoreError> {
        self.inner
            .put_session_and_code(session_key, session, code, grant)
            .await
    }
    async fn identities(&self, user_ids: &[String]) -> Result<Vec<StoredIdentity>, StoreError> {
        self.inner.identities(user_ids).await
    }
    async fn unlink_identity(
        &self,
        user_id: &str,
        connection: &str,
        provider_user_id: &str,
        new_user_id: &str,
        now: u64,
    ) -> Result<Unlinked, StoreError> {
        self.inner
            .unlink_identity(user_id, connection, provider_user_id, new_user_id, now)
            .await
    }
    async fn get_user(&self, user_id: &str) -> Result<Option<User>, StoreError> {
        self.inner.get_user(user_id).await
    }
    async fn list_users(
        &self,
        offset: usize,
        limit: usize,
        email: Option<&str>,
    ) -> Result<Vec<User>, StoreError> {
        self.inner.list_users(offset, limit, email).await
    }
    async fn delete_user(&self, user_id: &str) -> Result<bool, StoreError> {
        self.inner.delete_user(user_id).await
    }
    async fn catalog_version(&self) -> Result<u64, StoreError> {
        self.inner.catalog_version().await
    }
    async fn catalog(&self) -> Result<StoredCatalog, StoreError> {
        let mut catalog = self.inner.catalog().await?;
        catalog.connections = std::mem::take(&mut catalog.connections)
            .into_iter()
            .map(|c| self.open_connection(c))
            .collect::<Result<_, _>>()?;
        for entry in &mut catalog.actions {
            entry.action = self.open_action(entry.action.clone())?;
        }
        Ok(catalog)
    }
    fn catalog_feed(&self) -> CatalogFeed {
        self.inner.catalog_feed()
    }
    async fn put_connection(&self, connection: &StoredConnection) -> Result<(), StoreError> {
        self.inner
            .put_connection(&self.seal_connection(connection)?)
            .await
    }
    async fn connections(&self) -> Result<Vec<StoredConnection>, StoreError> {
        self.inner
            .connections()
            .await?
            .into_iter()
            .map(|c| self.open_connection(c))
            .collect()
    }
    async fn delete_connection(&self, id: &str) -> Result<bool, StoreError> {
        self.inner.delete_connection(id).await
    }
    async fn put_client(&self, client: &StoredClient) -> Result<(), StoreError> {
        self.inner.put_client(client).await
    }
    async fn clients(&self) -> Result<Vec<StoredClient>, StoreError> {
        self.inner.clients().await
    }
    async fn delete_client(&self, client_id: &str) -> Result<bool, StoreError> {
        self.inner.delete_client(client_id).await
    }
    async fn add_mapper_version(
        &self,
        name: &str,
        bytes: &[u8],
        sha256: &str,
        created_by: &str,
        now: u64,
    ) -> Result<MapperVersion, StoreError> {
        self.inner
            .add_mapper_version(name, bytes, sha256, created_by, now)
            .await
    }
    async fn mapper_versions(&self, name: &str) -> Result<Vec<MapperVersion>, StoreError> {
        self.inner.mapper_versions(name).await
    }
    async fn mapper_bytes(&self, name: &str, version: u32) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.mapper_bytes(name, version).await
    }
    async fn activate_mapper_version(&self, name: &str, version: u32) -> Result<bool, StoreError> {
        self.inner.activate_mapper_version(name, version).await
    }
    async fn mappers(&self) -> Result<Vec<MapperEntry>, StoreError> {
        self.inner.mappers().await
    }
    async fn delete_mapper(&self, name: &str) -> Result<bool, StoreError> {
        self.inner.delete_mapper(name).await
    }
    async fn try_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: u64,
        now: u64,
    ) -> Result<bool, StoreError> {
        self.inner.try_lease(name, holder, ttl, now).await
    }
    async fn signing_keys(&self) -> Result<Option<String>, StoreError> {
        match self.inner.signing_keys().await? {
            Some(stored) => Ok(Some(self.open_document(signing_place(), &stored)?)),
            None => Ok(None),
        }
    }
    async fn init_signing_keys(&self, document: &str) -> Result<String, StoreError> {
        let sealed = self.seal_document(signing_place(), document)?;
        let stored = self.inner.init_signing_keys(&sealed).await?;
        self.open_document(signing_place(), &stored)
    }
    async fn replace_signing_keys(
        &self,
        expected: Option<&str>,
        document: &str,
    ) -> Result<bool, StoreError> {
        // The backend compares stored text, and sealing is randomised: the
        // clear `expected` is compared here with the stored value opened,
        // and the backend's compare-and-swap is on that stored value.
        let stored = self.inner.signing_keys().await?;
        let matches = match (&stored, expected) {
            (None, None) => true,
            (Some(s), Some(e)) => self.open_document(signing_place(), s)? == e,
            _ => false,
        };
        if !matches {
            return Ok(false);
        }
        let sealed = self.seal_document(signing_place(), document)?;
        self.inner
            .replace_signing_keys(stored.as_deref(), &sealed)
            .await
    }
    async fn put_log_events(&self, events: &[LogEvent]) -> Result<(), StoreError> {
        self.inner.put_log_events(events).await
    }
    async fn log_events(&self, query: &LogQuery) -> Result<LogPage, StoreError> {
        self.inner.log_events(query).await
    }
    async fn log_event(&self, log_id: &str) -> Result<Option<LogEvent>, StoreError> {
        self.inner.log_event(log_id).await
    }
    async fn delete_log_events_before(&self, date: u64) -> Result<u64, StoreError> {
        self.inner.delete_log_events_before(date).await
    }
    async fn merge_user_metadata(
        &self,
        user_id: &str,
        app: &Metadata,
        user: &Metadata,
    ) -> Result<Option<User>, StoreError> {
        self.inner.merge_user_metadata(user_id, app, user).await
    }
    async fn put_action(
        &self,
        action: &StoredAction,
        draft: Option<&[u8]>,
    ) -> Result<(), StoreError> {
        self.inner
            .put_action(&self.seal_action(action)?, draft)
            .await
    }
    async fn actions(&self) -> Result<Vec<ActionEntry>, StoreError> {
        self.inner
            .actions()
            .await?
            .into_iter()
            .map(|e| {
                Ok(ActionEntry {
                    action: self.open_action(e.action)?,
                    active_version: e.active_version,
                })
            })
            .collect()
    }
    async fn delete_action(&self, id: &str) -> Result<bool, StoreError> {
        self.inner.delete_action(id).await
    }
    async fn deploy_action(
        &self,
        id: &str,
        created_by: &str,
        now: u64,
    ) -> Result<Option<ActionVersion>, StoreError> {
        self.inner.deploy_action(id, created_by, now).await
    }
    async fn action_versions(&self, id: &str) -> Result<Vec<ActionVersion>, StoreError> {
        self.inner.action_versions(id).await
    }
    async fn action_bytes(&self, id: &str, version: u32) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.action_bytes(id, version).await
    }
    async fn activate_action_version(&self, id: &str, version: u32) -> Result<bool, StoreError> {
        self.inner.activate_action_version(id, version).await
    }
    async fn post_login_bindings(&self) -> Result<Vec<String>, StoreError> {
        self.inner.post_login_bindings().await
    }
    async fn set_post_login_bindings(&self, ids: &[String]) -> Result<(), StoreError> {
        self.inner.set_post_login_bindings(ids).await
    }
    async fn connection_keys(&self, connection_id: &str) -> Result<Option<String>, StoreError> {
        let place = connection_keys_place(connection_id);
        match self.inner.connection_keys(connection_id).await? {
            Some(stored) => Ok(Some(self.open_document(place, &stored)?)),
            None => Ok(None),
        }
    }
    async fn init_connection_keys(
        &self,
        connection_id: &str,
        document: &str,
    ) -> Result<String, StoreError> {
        let place = connection_keys_place(connection_id);
        let sealed = self.seal_document(place, document)?;
        let stored = self
            .inner
            .init_connection_keys(connection_id, &sealed)
            .await?;
        self.open_document(place, &stored)
    }
    async fn replace_connection_keys(
        &self,
        connection_id: &str,
        current: &str,
        next: &str,
    ) -> Result<bool, StoreError> {
        // As for the signing keys: compared in the clear here, swapped on
        // the stored value by the backend.
        let place = connection_keys_place(connection_id);
        let Some(stored) = self.inner.connection_keys(connection_id).await? else {
            return Ok(false);
        };
        if self.open_document(place, &stored)? != current {
            return Ok(false);
        }
        let sealed = self.seal_document(place, next)?;
        self.inner
            .replace_connection_keys(connection_id, &stored, &sealed)
            .await
    }
    async fn count_users(&self, email: Option<&str>) -> Result<usize, StoreError> {
        self.inner.count_users(email).await
    }
    async fn put_resource_server(&self, api: &StoredResourceServer) -> Result<(), StoreError> {
        self.inner.put_resource_server(api).await
    }
    async fn resource_servers(&self) -> Result<Vec<StoredResourceServer>, StoreError> {
        self.inner.resource_servers().await
    }
    async fn delete_resource_server(&self, id: &str) -> Result<bool, StoreError> {
        self.inner.delete_resource_server(id).await
    }
}

#[async_trait]
impl crate::store::SessionStore for SealedStore {
    async fn put_session(&self, key: SecretHash, session: &Session) -> Result<(), StoreError> {
        self.inner.put_session(key, session).await
    }
    async fn get_session(&self, key: SecretHash, now: u64) -> Result<Option<Session>, StoreError> {
        self.inner.get_session(key, now).await
    }
    async fn touch_session(
        &self,
        key: SecretHash,
        client_id: &str,
        now: u64,
        idle_expires_at: u64,
    ) -> Result<bool, StoreError> {
        self.inner
            .touch_session(key, client_id, now, idle_expires_at)
            .await
    }
    async fn session(&self, id: &str, now: u64) -> Result<Option<Session>, StoreError> {
        self.inner.session(id, now).await
    }
    async fn sessions_of_user(&self, user_id: &str, now: u64) -> Result<Vec<Session>, StoreError> {
        self.inner.sessions_of_user(user_id, now).await
    }
    async fn delete_session(&self, id: &str) -> Result<Option<Session>, StoreError> {
        self.inner.delete_session(id).await
    }
    async fn delete_sessions_of_user(&self, user_id: &str) -> Result<Vec<Session>, StoreError> {
        self.inner.delete_sessions_of_user(user_id).await
    }
    async fn put_refresh_token(
        &self,
        key: SecretHash,
        grant: &RefreshGrant,
    ) -> Result<(), StoreError> {
        self.inner.put_refresh_token(key, grant).await
    }
    async fn get_refresh_token(
        &self,
        key: SecretHash,
        now: u64,
    ) -> Result<RefreshLookup, StoreError> {
        self.inner.get_refresh_token(key, now).await
    }
    async fn rotate_refresh_token(
        &self,
        used: SecretHash,
        next: SecretHash,
        grant: &RefreshGrant,
        now: u64,
    ) -> Result<Rotation, StoreError> {
        self.inner
            .rotate_refresh_token(used, next, grant, now)
            .await
    }
    async fn revoke_refresh_family(&self, family_id: &str) -> Result<u64, StoreError> {
        self.inner.revoke_refresh_family(family_id).await
    }
    async fn refresh_family(
        &self,
        family_id: &str,
        now: u64,
    ) -> Result<Option<RefreshGrant>, StoreError> {
        self.inner.refresh_family(family_id, now).await
    }
    async fn refresh_tokens_of_user(
        &self,
        user_id: &str,
        now: u64,
    ) -> Result<Vec<RefreshGrant>, StoreError> {
        self.inner.refresh_tokens_of_user(user_id, now).await
    }
    async fn delete_refresh_tokens_of_user(&self, user_id: &str) -> Result<u64, StoreError> {
        self.inner.delete_refresh_tokens_of_user(user_id).await
    }
    async fn delete_refresh_tokens_of_client(&self, client_id: &str) -> Result<u64, StoreError> {
        self.inner.delete_refresh_tokens_of_client(client_id).await
    }
    async fn delete_access_token(&self, token: SecretHash) -> Result<bool, StoreError> {
        self.inner.delete_access_token(token).await
    }
    async fn delete_access_tokens_of_user(&self, user_id: &str) -> Result<u64, StoreError> {
        self.inner.delete_access_tokens_of_user(user_id).await
    }
    async fn delete_access_tokens_of_family(&self, family_id: &str) -> Result<u64, StoreError> {
        self.inner.delete_access_tokens_of_family(family_id).await
    }
    async fn sweep_sessions(&self, now: u64) -> Result<SweptSessions, StoreError> {
        self.inner.sweep_sessions(now).await
    }
}

const IDP_TOKENS: &str = "idp_tokens";
const ACCESS_TOKEN: &str = "access_token";
const REFRESH_TOKEN: &str = "refresh_token";

/// The row id in a provider token's place: the connection id, which never
/// holds a `|` (`con_` and a name or a random suffix), then the provider's
/// user id.
fn identity_id(t: &IdpTokens) -> String {
    format!("{}|{}", t.connection_id, t.provider_user_id)
}

impl SealedStore {
    fn map_idp_tokens(
        &self,
        t: &IdpTokens,
        f: impl Fn(Place<'_>, &str) -> Result<String, CryptError>,
    ) -> Result<IdpTokens, StoreError> {
        let id = identity_id(t);
        let place = |field| Place {
            table: IDP_TOKENS,
            id: &id,
            field,
        };
        Ok(IdpTokens {
            access_token: f(place(ACCESS_TOKEN), &t.access_token)?,
            refresh_token: t
                .refresh_token
                .as_deref()
                .map(|r| f(place(REFRESH_TOKEN), r))
                .transpose()?,
            ..t.clone()
        })
    }

    fn seal_idp_tokens(&self, t: &IdpTokens) -> Result<IdpTokens, StoreError> {
        self.map_idp_tokens(t, |place, clear| self.keys.seal(place, clear))
    }

    fn open_idp_tokens(&self, t: &IdpTokens) -> Result<IdpTokens, StoreError> {
        self.map_idp_tokens(t, |place, stored| {
            self.keys.open(place, stored).map(|o| o.into_clear())
        })
    }

    /// Reseals every identity's tokens not under the active key, each by
    /// compare-and-swap (a login storing newer tokens meanwhile wins);
    /// how many.
    async fn rotate_idp_tokens(&self) -> Result<u64, StoreError> {
        let mut resealed = 0;
        for stored in self.inner.all_idp_tokens().await? {
            let current = self.keys.is_current(&stored.access_token)
                && stored
                    .refresh_token
                    .as_deref()
                    .is_none_or(|r| self.keys.is_current(r));
            if current {
                continue;
            }
            let next = self.seal_idp_tokens(&self.open_idp_tokens(&stored)?)?;
            if self.inner.replace_idp_tokens(&stored, &next).await? {
                resealed += 1;
            }
        }
        Ok(resealed)
    }
}

#[async_trait]
impl IdpTokenStore for SealedStore {
    async fn put_idp_tokens(&self, tokens: &IdpTokens) -> Result<(), StoreError> {
        self.inner
            .put_idp_tokens(&self.seal_idp_tokens(tokens)?)
            .await
    }
    async fn idp_tokens(
        &self,
        connection_id: &str,
        provider_user_id: &str,
    ) -> Result<Option<IdpTokens>, StoreError> {
        match self
            .inner
            .idp_tokens(connection_id, provider_user_id)
            .await?
        {
            Some(t) => Ok(Some(self.open_idp_tokens(&t)?)),
            None => Ok(None),
        }
    }
    async fn all_idp_tokens(&self) -> Result<Vec<IdpTokens>, StoreError> {
        self.inner
            .all_idp_tokens()
            .await?
            .iter()
            .map(|t| self.open_idp_tokens(t))
            .collect()
    }
    async fn replace_idp_tokens(
        &self,
        current: &IdpTokens,
        next: &IdpTokens,
    ) -> Result<bool, StoreError> {
        // Compared in the clear here, swapped on the stored row below.
        let Some(stored) = self
            .inner
            .idp_tokens(&current.connection_id, &current.provider_user_id)
            .await?
        else {
            return Ok(false);
        };
        if self.open_idp_tokens(&stored)? != *current {
            return Ok(false);
        }
        self.inner
            .replace_idp_tokens(&stored, &self.seal_idp_tokens(next)?)
            .await
    }
    async fn delete_idp_tokens(
        &self,
        connection_id: &str,
        provider_user_id: &str,
    ) -> Result<bool, StoreError> {
        self.inner
            .delete_idp_tokens(connection_id, provider_user_id)
            .await
    }
}
