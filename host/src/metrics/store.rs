//! The store, timed: a decorator around any [`Store`] that records each
//! operation's latency and result ([`Metrics::store_operation`]), so no
//! backend carries instrumentation of its own.

use std::sync::Arc;

use async_trait::async_trait;

use super::{Metrics, Timer};
use crate::mapper::Profile;
use crate::secret::SecretHash;
use crate::store::{
    AccessGrant, ActionEntry, ActionVersion, AuthorizationGrant, CatalogFeed, LogEvent, LogPage,
    LogQuery, LoginTransaction, MapperEntry, MapperVersion, Metadata, PutTransaction, Store,
    StoreError, StoredAction, StoredCatalog, StoredClient, StoredConnection, Swept,
    TakeTransaction, User,
};
use crate::store::{IdentityLogin, IdentityOutcome, StoredIdentity, Unlinked};
use crate::store::{
    RefreshGrant, RefreshLookup, Rotation, Session, StoredResourceServer, StoredRule, SweptSessions,
};

/// `inner`, with every operation timed into `metrics`.
pub struct InstrumentedStore {
    inner: Arc<dyn Store>,
    metrics: Arc<Metrics>,
}

impl InstrumentedStore {
    pub fn wrap(inner: Arc<dyn Store>, metrics: Arc<Metrics>) -> Arc<dyn Store> {
        Arc::new(Self { inner, metrics })
    }

    async fn timed<T>(
        &self,
        operation: &'static str,
        f: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        if !self.metrics.enabled() {
            return f.await;
        }
        let timer = Timer::start();
        let result = f.await;
        self.metrics
            .store_operation(operation, result.is_ok(), timer.elapsed());
        result
    }
}

#[async_trait]
impl Store for InstrumentedStore {
    async fn put_transaction(
        &self,
        state: SecretHash,
        tx: LoginTransaction,
        now: u64,
        max_live: usize,
    ) -> Result<PutTransaction, StoreError> {
        self.timed(
            "put_transaction",
            self.inner.put_transaction(state, tx, now, max_live),
        )
        .await
    }
    async fn take_transaction(
        &self,
        state: SecretHash,
        binding: Option<SecretHash>,
        now: u64,
    ) -> Result<TakeTransaction, StoreError> {
        self.timed(
            "take_transaction",
            self.inner.take_transaction(state, binding, now),
        )
        .await
    }
    async fn put_code(
        &self,
        code: SecretHash,
        grant: AuthorizationGrant,
    ) -> Result<(), StoreError> {
        self.timed("put_code", self.inner.put_code(code, grant))
            .await
    }
    async fn take_code(
        &self,
        code: SecretHash,
        now: u64,
    ) -> Result<Option<AuthorizationGrant>, StoreError> {
        self.timed("take_code", self.inner.take_code(code, now))
            .await
    }
    async fn take_code_with_user(
        &self,
        code: SecretHash,
        now: u64,
    ) -> Result<Option<(AuthorizationGrant, Option<User>)>, StoreError> {
        self.timed(
            "take_code_with_user",
            self.inner.take_code_with_user(code, now),
        )
        .await
    }
    async fn put_access_token(
        &self,
        token: SecretHash,
        grant: AccessGrant,
    ) -> Result<(), StoreError> {
        self.timed(
            "put_access_token",
            self.inner.put_access_token(token, grant),
        )
        .await
    }
    async fn get_access_token(
        &self,
        token: SecretHash,
        now: u64,
    ) -> Result<Option<AccessGrant>, StoreError> {
        self.timed("get_access_token", self.inner.get_access_token(token, now))
            .await
    }
    async fn delete_access_tokens_of_client(&self, client_id: &str) -> Result<u64, StoreError> {
        self.timed(
            "delete_access_tokens_of_client",
            self.inner.delete_access_tokens_of_client(client_id),
        )
        .await
    }
    async fn sweep_expired(&self, now: u64) -> Result<Swept, StoreError> {
        self.timed("sweep_expired", self.inner.sweep_expired(now))
            .await
    }
    async fn record_login(
        &self,
        user_id: &str,
        connection: &str,
        profile: Profile,
        now: u64,
    ) -> Result<User, StoreError> {
        self.timed(
            "record_login",
            self.inner.record_login(user_id, connection, profile, now),
        )
        .await
    }
    async fn record_identity_login(
        &self,
        login: &IdentityLogin,
        now: u64,
    ) -> Result<IdentityOutcome, StoreError> {
        self.timed(
            "record_identity_login",
            self.inner.record_identity_login(login, now),
        )
        .await
    }
    async fn record_identity_login_with_tokens(
        &self,
        login: &IdentityLogin,
        tokens: &crate::store::IdpTokens,
        now: u64,
    ) -> Result<IdentityOutcome, StoreError> {
        self.timed(
            "record_identity_login_with_tokens",
            self.inner
                .record_identity_login_with_tokens(login, tokens, now),
        )
        .await
    }
    async fn put_session_and_code(
        &self,
        session_key: SecretHash,
        session: &Session,
        code: SecretHash,
        grant: AuthorizationGrant,
    ) -> Result<(), StoreError> {
        self.timed(
            "put_session_and_code",
            self.inner
                .put_session_and_code(session_key, session, code, grant),
        )
        .await
    }
    async fn identities(&self, user_ids: &[String]) -> Result<Vec<StoredIdentity>, StoreError> {
        self.timed("identities", self.inner.identities(user_ids))
            .await
    }
    async fn unlink_identity(
        &self,
        user_id: &str,
        connection: &str,
        provider_user_id: &str,
        new_user_id: &str,
        now: u64,
    ) -> Result<Unlinked, StoreError> {
        self.timed(
            "unlink_identity",
            self.inner
                .unlink_identity(user_id, connection, provider_user_id, new_user_id, now),
        )
        .await
    }
    async fn get_user(&self, user_id: &str) -> Result<Option<User>, StoreError> {
        self.timed("get_user", self.inner.get_user(user_id)).await
    }
    async fn list_users(
        &self,
        offset: usize,
        limit: usize,
        email: Option<&str>,
    ) -> Result<Vec<User>, StoreError> {
        self.timed("list_users", self.inner.list_users(offset, limit, email))
            .await
    }
    async fn delete_user(&self, user_id: &str) -> Result<bool, StoreError> {
        self.timed("delete_user", self.inner.delete_user(user_id))
            .await
    }
    async fn catalog_version(&self) -> Result<u64, StoreError> {
        self.timed("catalog_version", self.inner.catalog_version())
            .await
    }
    async fn catalog(&self) -> Result<StoredCatalog, StoreError> {
        self.timed("catalog", self.inner.catalog()).await
    }
    fn catalog_feed(&self) -> CatalogFeed {
        self.inner.catalog_feed()
    }
    async fn put_connection(&self, connection: &StoredConnection) -> Result<(), StoreError> {
        self.timed("put_connection", self.inner.put_connection(connection))
            .await
    }
    async fn connections(&self) -> Result<Vec<StoredConnection>, StoreError> {
        self.timed("connections", self.inner.connections()).await
    }
    async fn delete_connection(&self, id: &str) -> Result<bool, StoreError> {
        self.timed("delete_connection", self.inner.delete_connection(id))
            .await
    }
    async fn put_client(&self, client: &StoredClient) -> Result<(), StoreError> {
        self.timed("put_client", self.inner.put_client(client))
            .await
    }
    async fn clients(&self) -> Result<Vec<StoredClient>, StoreError> {
        self.timed("clients", self.inner.clients()).await
    }
    async fn delete_client(&self, client_id: &str) -> Result<bool, StoreError> {
        self.timed("delete_client", self.inner.delete_client(client_id))
            .await
    }
    async fn add_mapper_version(
        &self,
        name: &str,
        bytes: &[u8],
        sha256: &str,
        created_by: &str,
        now: u64,
    ) -> Result<MapperVersion, StoreError> {
        self.timed(
            "add_mapper_version",
            self.inner
                .add_mapper_version(name, bytes, sha256, created_by, now),
        )
        .await
    }
    async fn mapper_versions(&self, name: &str) -> Result<Vec<MapperVersion>, StoreError> {
        self.timed("mapper_versions", self.inner.mapper_versions(name))
            .await
    }
    async fn mapper_bytes(&self, name: &str, version: u32) -> Result<Option<Vec<u8>>, StoreError> {
        self.timed("mapper_bytes", self.inner.mapper_bytes(name, version))
            .await
    }
    async fn activate_mapper_version(&self, name: &str, version: u32) -> Result<bool, StoreError> {
        self.timed(
            "activate_mapper_version",
            self.inner.activate_mapper_version(name, version),
        )
        .await
    }
    async fn mappers(&self) -> Result<Vec<MapperEntry>, StoreError> {
        self.timed("mappers", self.inner.mappers()).await
    }
    async fn delete_mapper(&self, name: &str) -> Result<bool, StoreError> {
        self.timed("delete_mapper", self.inner.delete_mapper(name))
            .await
    }
    async fn try_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: u64,
        now: u64,
    ) -> Result<bool, StoreError> {
        self.timed("try_lease", self.inner.try_lease(name, holder, ttl, now))
            .await
    }
    async fn signing_keys(&self) -> Result<Option<String>, StoreError> {
        self.timed("signing_keys", self.inner.signing_keys()).await
    }
    async fn init_signing_keys(&self, document: &str) -> Result<String, StoreError> {
        self.timed("init_signing_keys", self.inner.init_signing_keys(document))
            .await
    }
    async fn replace_signing_keys(
        &self,
        expected: Option<&str>,
        document: &str,
    ) -> Result<bool, StoreError> {
        self.timed(
            "replace_signing_keys",
            self.inner.replace_signing_keys(expected, document),
        )
        .await
    }
    async fn put_log_events(&self, events: &[LogEvent]) -> Result<(), StoreError> {
        self.timed("put_log_events", self.inner.put_log_events(events))
            .await
    }
    async fn log_events(&self, query: &LogQuery) -> Result<LogPage, StoreError> {
        self.timed("log_events", self.inner.log_events(query)).await
    }
    async fn log_event(&self, log_id: &str) -> Result<Option<LogEvent>, StoreError> {
        self.timed("log_event", self.inner.log_event(log_id)).await
    }
    async fn delete_log_events_before(&self, date: u64) -> Result<u64, StoreError> {
        self.timed(
            "delete_log_events_before",
            self.inner.delete_log_events_before(date),
        )
        .await
    }
    async fn merge_user_metadata(
        &self,
        user_id: &str,
        app: &Metadata,
        user: &Metadata,
    ) -> Result<Option<User>, StoreError> {
        self.timed(
            "merge_user_metadata",
            self.inner.merge_user_metadata(user_id, app, user),
        )
        .await
    }
    async fn put_action(
        &self,
        action: &StoredAction,
        draft: Option<&[u8]>,
    ) -> Result<(), StoreError> {
        self.timed("put_action", self.inner.put_action(action, draft))
            .await
    }
    async fn put_rule(&self, rule: &StoredRule) -> Result<(), StoreError> {
        self.timed("put_rule", self.inner.put_rule(rule)).await
    }
    async fn rules(&self) -> Result<Vec<StoredRule>, StoreError> {
        self.timed("rules", self.inner.rules()).await
    }
    async fn delete_rule(&self, id: &str) -> Result<bool, StoreError> {
        self.timed("delete_rule", self.inner.delete_rule(id)).await
    }
    async fn actions(&self) -> Result<Vec<ActionEntry>, StoreError> {
        self.timed("actions", self.inner.actions()).await
    }
    async fn delete_action(&self, id: &str) -> Result<bool, StoreError> {
        self.timed("delete_action", self.inner.delete_action(id))
            .await
    }
    async fn deploy_action(
        &self,
        id: &str,
        created_by: &str,
        now: u64,
    ) -> Result<Option<ActionVersion>, StoreError> {
        self.timed(
            "deploy_action",
            self.inner.deploy_action(id, created_by, now),
        )
        .await
    }
    async fn action_versions(&self, id: &str) -> Result<Vec<ActionVersion>, StoreError> {
        self.timed("action_versions", self.inner.action_versions(id))
            .await
    }
    async fn action_bytes(&self, id: &str, version: u32) -> Result<Option<Vec<u8>>, StoreError> {
        self.timed("action_bytes", self.inner.action_bytes(id, version))
            .await
    }
    async fn activate_action_version(&self, id: &str, version: u32) -> Result<bool, StoreError> {
        self.timed(
            "activate_action_version",
            self.inner.activate_action_version(id, version),
        )
        .await
    }
    async fn post_login_bindings(&self) -> Result<Vec<String>, StoreError> {
        self.timed("post_login_bindings", self.inner.post_login_bindings())
            .await
    }
    async fn set_post_login_bindings(&self, ids: &[String]) -> Result<(), StoreError> {
        self.timed(
            "set_post_login_bindings",
            self.inner.set_post_login_bindings(ids),
        )
        .await
    }
    async fn connection_keys(&self, connection_id: &str) -> Result<Option<String>, StoreError> {
        self.timed("connection_keys", self.inner.connection_keys(connection_id))
            .await
    }
    async fn init_connection_keys(
        &self,
        connection_id: &str,
        document: &str,
    ) -> Result<String, StoreError> {
        self.timed(
            "init_connection_keys",
            self.inner.init_connection_keys(connection_id, document),
        )
        .await
    }
    async fn replace_connection_keys(
        &self,
        connection_id: &str,
        current: &str,
        next: &str,
    ) -> Result<bool, StoreError> {
        self.timed(
            "replace_connection_keys",
            self.inner
                .replace_connection_keys(connection_id, current, next),
        )
        .await
    }
    async fn count_users(&self, email: Option<&str>) -> Result<usize, StoreError> {
        self.timed("count_users", self.inner.count_users(email))
            .await
    }
    async fn put_resource_server(&self, api: &StoredResourceServer) -> Result<(), StoreError> {
        self.timed("put_resource_server", self.inner.put_resource_server(api))
            .await
    }
    async fn resource_servers(&self) -> Result<Vec<StoredResourceServer>, StoreError> {
        self.timed("resource_servers", self.inner.resource_servers())
            .await
    }
    async fn delete_resource_server(&self, id: &str) -> Result<bool, StoreError> {
        self.timed(
            "delete_resource_server",
            self.inner.delete_resource_server(id),
        )
        .await
    }
    async fn branding(&self) -> Result<crate::store::StoredBranding, StoreError> {
        self.timed("branding", self.inner.branding()).await
    }
    async fn put_branding_settings(&self, settings: &str) -> Result<(), StoreError> {
        self.timed(
            "put_branding_settings",
            self.inner.put_branding_settings(settings),
        )
        .await
    }
    async fn put_universal_login_template(
        &self,
        template: Option<&str>,
    ) -> Result<bool, StoreError> {
        self.timed(
            "put_universal_login_template",
            self.inner.put_universal_login_template(template),
        )
        .await
    }
}

#[async_trait]
impl crate::store::SessionStore for InstrumentedStore {
    async fn put_session(&self, key: SecretHash, session: &Session) -> Result<(), StoreError> {
        self.timed("put_session", self.inner.put_session(key, session))
            .await
    }
    async fn get_session(&self, key: SecretHash, now: u64) -> Result<Option<Session>, StoreError> {
        self.timed("get_session", self.inner.get_session(key, now))
            .await
    }
    async fn touch_session(
        &self,
        key: SecretHash,
        client_id: &str,
        now: u64,
        idle_expires_at: u64,
    ) -> Result<bool, StoreError> {
        self.timed(
            "touch_session",
            self.inner
                .touch_session(key, client_id, now, idle_expires_at),
        )
        .await
    }
    async fn session(&self, id: &str, now: u64) -> Result<Option<Session>, StoreError> {
        self.timed("session", self.inner.session(id, now)).await
    }
    async fn sessions_of_user(&self, user_id: &str, now: u64) -> Result<Vec<Session>, StoreError> {
        self.timed(
            "sessions_of_user",
            self.inner.sessions_of_user(user_id, now),
        )
        .await
    }
    async fn delete_session(&self, id: &str) -> Result<Option<Session>, StoreError> {
        self.timed("delete_session", self.inner.delete_session(id))
            .await
    }
    async fn delete_sessions_of_user(&self, user_id: &str) -> Result<Vec<Session>, StoreError> {
        self.timed(
            "delete_sessions_of_user",
            self.inner.delete_sessions_of_user(user_id),
        )
        .await
    }
    async fn put_refresh_token(
        &self,
        key: SecretHash,
        grant: &RefreshGrant,
    ) -> Result<(), StoreError> {
        self.timed(
            "put_refresh_token",
            self.inner.put_refresh_token(key, grant),
        )
        .await
    }
    async fn get_refresh_token(
        &self,
        key: SecretHash,
        now: u64,
    ) -> Result<RefreshLookup, StoreError> {
        self.timed("get_refresh_token", self.inner.get_refresh_token(key, now))
            .await
    }
    async fn rotate_refresh_token(
        &self,
        used: SecretHash,
        next: SecretHash,
        grant: &RefreshGrant,
        now: u64,
    ) -> Result<Rotation, StoreError> {
        self.timed(
            "rotate_refresh_token",
            self.inner.rotate_refresh_token(used, next, grant, now),
        )
        .await
    }
    async fn revoke_refresh_family(&self, family_id: &str) -> Result<u64, StoreError> {
        self.timed(
            "revoke_refresh_family",
            self.inner.revoke_refresh_family(family_id),
        )
        .await
    }
    async fn refresh_family(
        &self,
        family_id: &str,
        now: u64,
    ) -> Result<Option<RefreshGrant>, StoreError> {
        self.timed("refresh_family", self.inner.refresh_family(family_id, now))
            .await
    }
    async fn refresh_tokens_of_user(
        &self,
        user_id: &str,
        now: u64,
    ) -> Result<Vec<RefreshGrant>, StoreError> {
        self.timed(
            "refresh_tokens_of_user",
            self.inner.refresh_tokens_of_user(user_id, now),
        )
        .await
    }
    async fn delete_refresh_tokens_of_user(&self, user_id: &str) -> Result<u64, StoreError> {
        self.timed(
            "delete_refresh_tokens_of_user",
            self.inner.delete_refresh_tokens_of_user(user_id),
        )
        .await
    }
    async fn delete_refresh_tokens_of_client(&self, client_id: &str) -> Result<u64, StoreError> {
        self.timed(
            "delete_refresh_tokens_of_client",
            self.inner.delete_refresh_tokens_of_client(client_id),
        )
        .await
    }
    async fn delete_access_token(&self, token: SecretHash) -> Result<bool, StoreError> {
        self.timed("delete_access_token", self.inner.delete_access_token(token))
            .await
    }
    async fn delete_access_tokens_of_user(&self, user_id: &str) -> Result<u64, StoreError> {
        self.timed(
            "delete_access_tokens_of_user",
            self.inner.delete_access_tokens_of_user(user_id),
        )
        .await
    }
    async fn delete_access_tokens_of_family(&self, family_id: &str) -> Result<u64, StoreError> {
        self.timed(
            "delete_access_tokens_of_family",
            self.inner.delete_access_tokens_of_family(family_id),
        )
        .await
    }
    async fn sweep_sessions(&self, now: u64) -> Result<SweptSessions, StoreError> {
        self.timed("sweep_sessions", self.inner.sweep_sessions(now))
            .await
    }
}

#[async_trait]
impl crate::store::IdpTokenStore for InstrumentedStore {
    async fn put_idp_tokens(&self, tokens: &crate::store::IdpTokens) -> Result<(), StoreError> {
        self.timed("put_idp_tokens", self.inner.put_idp_tokens(tokens))
            .await
    }
    async fn idp_tokens(
        &self,
        connection_id: &str,
        provider_user_id: &str,
    ) -> Result<Option<crate::store::IdpTokens>, StoreError> {
        self.timed(
            "idp_tokens",
            self.inner.idp_tokens(connection_id, provider_user_id),
        )
        .await
    }
    async fn all_idp_tokens(&self) -> Result<Vec<crate::store::IdpTokens>, StoreError> {
        self.timed("all_idp_tokens", self.inner.all_idp_tokens())
            .await
    }
    async fn replace_idp_tokens(
        &self,
        current: &crate::store::IdpTokens,
        next: &crate::store::IdpTokens,
    ) -> Result<bool, StoreError> {
        self.timed(
            "replace_idp_tokens",
            self.inner.replace_idp_tokens(current, next),
        )
        .await
    }
    async fn delete_idp_tokens(
        &self,
        connection_id: &str,
        provider_user_id: &str,
    ) -> Result<bool, StoreError> {
        self.timed(
            "delete_idp_tokens",
            self.inner
                .delete_idp_tokens(connection_id, provider_user_id),
        )
        .await
    }
}
