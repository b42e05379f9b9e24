//! Everything in memory: for tests, and a single process that may lose its
//! state on restart.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;

use super::*;

mod idp_tokens;
mod sessions;

/// How often an instance on a memory store checks the catalog version.
/// Every writer shares this process and notifies at once; the check is
/// only the same safety net the other backends have.
pub const CATALOG_POLL_INTERVAL: Duration = Duration::from_secs(1);

/// Everything in memory: for tests and a single process that may lose
/// in-flight logins on restart. Brokers sharing one (an `Arc`) share its
/// catalog and are notified of each other's changes at once.
pub struct MemoryStore {
    transactions: Expiring<LoginTransaction>,
    codes: Expiring<AuthorizationGrant>,
    tokens: Expiring<AccessGrant>,
    users: Mutex<BTreeMap<String, User>>,
    /// Users' identities by (connection, provider id). Locked after
    /// `users`, never alone for a write: every change of both is atomic.
    identities: Mutex<BTreeMap<(String, String), StoredIdentity>>,
    durable: Mutex<Durable>,
    /// The catalog version, sent after every catalog write.
    changes: tokio::sync::watch::Sender<u64>,
    /// Sessions and refresh tokens (`sessions`).
    grants: Mutex<sessions::Grants>,
    /// The provider's tokens (`idp_tokens`).
    idp_tokens: Mutex<idp_tokens::IdpTokenMap>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self {
            transactions: Expiring::default(),
            codes: Expiring::default(),
            tokens: Expiring::default(),
            users: Mutex::default(),
            identities: Mutex::default(),
            durable: Mutex::default(),
            changes: tokio::sync::watch::Sender::new(0),
            grants: Mutex::default(),
            idp_tokens: Mutex::default(),
        }
    }
}

/// How many short-lived entries a [`MemoryStore`] holds, expired ones
/// included until swept: for tests and diagnostics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShortLivedCounts {
    pub transactions: usize,
    pub codes: usize,
    pub tokens: usize,
}

#[derive(Default)]
struct Durable {
    connections: BTreeMap<String, StoredConnection>,
    clients: BTreeMap<String, StoredClient>,
    resource_servers: BTreeMap<String, StoredResourceServer>,
    branding: StoredBranding,
    mappers: BTreeMap<String, Mapper>,
    actions: BTreeMap<String, Action>,
    post_login_bindings: Vec<String>,
    /// Rules by id.
    rules: BTreeMap<String, StoredRule>,
    signing_keys: Option<String>,
    /// connection id → its `private_key_jwt` key document.
    connection_keys: BTreeMap<String, String>,
    /// Bumped by every catalog write.
    catalog_version: u64,
    /// Lease name → holder and expiry.
    leases: HashMap<String, (String, u64)>,
    /// Log events by id.
    log_events: BTreeMap<String, LogEvent>,
}

struct Mapper {
    active: u32,
    versions: Vec<(MapperVersion, Vec<u8>)>,
}

struct Action {
    action: StoredAction,
    draft: Option<Vec<u8>>,
    active: u32,
    versions: Vec<(ActionVersion, Vec<u8>)>,
}

impl MemoryStore {
    fn durable(&self) -> std::sync::MutexGuard<'_, Durable> {
        self.durable.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Bumps the catalog version (the caller holds `d`, the lock every
    /// catalog write holds) and notifies.
    fn bump(&self, d: &mut Durable) {
        d.catalog_version += 1;
        self.changes.send_replace(d.catalog_version);
    }

    fn users(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, User>> {
        self.users.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn identities_map(
        &self,
    ) -> std::sync::MutexGuard<'_, BTreeMap<(String, String), StoredIdentity>> {
        self.identities.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The short-lived entries held right now, expired ones included.
    pub fn short_lived_counts(&self) -> ShortLivedCounts {
        ShortLivedCounts {
            transactions: self.transactions.lock().len(),
            codes: self.codes.lock().len(),
            tokens: self.tokens.lock().len(),
        }
    }
}

/// Entries by key hash, each with its expiry.
type Entries<T> = HashMap<SecretHash, (u64, T)>;

struct Expiring<T> {
    map: Mutex<Entries<T>>,
}

impl<T> Default for Expiring<T> {
    fn default() -> Self {
        Self {
            map: Mutex::new(HashMap::new()),
        }
    }
}

impl<T: Clone> Expiring<T> {
    fn lock(&self) -> std::sync::MutexGuard<'_, Entries<T>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn put(&self, key: SecretHash, expires_at: u64, value: T) {
        self.lock().insert(key, (expires_at, value));
    }

    /// Removes `key`, returning its value unless it has expired.
    fn take(&self, key: &SecretHash, now: u64) -> Option<T> {
        let (exp, value) = self.lock().remove(key)?;
        (exp > now).then_some(value)
    }

    fn get(&self, key: &SecretHash, now: u64) -> Option<T> {
        let guard = self.lock();
        let (exp, value) = guard.get(key)?;
        (*exp > now).then(|| value.clone())
    }

    /// Removes every entry `doomed` picks; how many.
    fn remove_where(&self, doomed: impl Fn(&T) -> bool) -> u64 {
        let mut map = self.lock();
        let before = map.len();
        map.retain(|_, (_, value)| !doomed(value));
        (before - map.len()) as u64
    }

    /// Drops what has expired at `now`; returns how many.
    fn sweep(&self, now: u64) -> u64 {
        let mut map = self.lock();
        let before = map.len();
        map.retain(|_, (exp, _)| *exp > now);
        (before - map.len()) as u64
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn put_transaction(
        &self,
        state: SecretHash,
        tx: LoginTransaction,
        now: u64,
        max_live: usize,
    ) -> Result<PutTransaction, StoreError> {
        let mut map = self.transactions.lock();
        // Counting live entries is a walk: only needed near the bound.
        if map.len() >= max_live && map.values().filter(|(exp, _)| *exp > now).count() >= max_live {
            return Ok(PutTransaction::Full);
        }
        map.insert(state, (tx.expires_at, tx));
        Ok(PutTransaction::Stored)
    }

    async fn take_transaction(
        &self,
        state: SecretHash,
        binding: Option<SecretHash>,
        now: u64,
    ) -> Result<TakeTransaction, StoreError> {
        let mut map = self.transactions.lock();
        let Some((exp, tx)) = map.get(&state) else {
            return Ok(TakeTransaction::Absent);
        };
        if *exp <= now {
            return Ok(TakeTransaction::Absent);
        }
        if binding != Some(tx.browser_binding) {
            return Ok(TakeTransaction::WrongBrowser);
        }
        Ok(map
            .remove(&state)
            .map_or(TakeTransaction::Absent, |(_, tx)| {
                TakeTransaction::Taken(Box::new(tx))
            }))
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

    async fn delete_access_tokens_of_client(&self, client_id: &str) -> Result<u64, StoreError> {
        Ok(self
            .tokens
            .remove_where(|grant| grant.client_id == client_id))
    }

    async fn sweep_expired(&self, now: u64) -> Result<Swept, StoreError> {
        Ok(Swept {
            transactions: self.transactions.sweep(now),
            codes: self.codes.sweep(now),
            tokens: self.tokens.sweep(now),
        })
    }

    async fn record_login(
        &self,
        user_id: &str,
        connection: &str,
        profile: Profile,
        now: u64,
    ) -> Result<User, StoreError> {
        let mut users = self.users();
        let mut identities = self.identities_map();
        let key = (connection.to_owned(), profile.user_id.clone());
        let identity = identities
            .entry(key.clone())
            .or_insert_with(|| new_identity(user_id, &key, &profile, now));
        if identity.user_id == user_id {
            identity.profile = profile.clone();
            identity.updated_at = now;
        }
        Ok(login_user(
            &mut users,
            user_id,
            connection,
            Some(profile),
            now,
        ))
    }

    async fn record_identity_login(
        &self,
        login: &IdentityLogin,
        now: u64,
    ) -> Result<IdentityOutcome, StoreError> {
        let mut users = self.users();
        let mut identities = self.identities_map();
        let key = (login.connection.clone(), login.provider_user_id.clone());
        if let Some(identity) = identities.get_mut(&key) {
            identity.profile = login.profile.clone();
            identity.updated_at = now;
            let primary = identity.user_id == login.user_id;
            let profile = primary.then(|| login.profile.clone());
            let user_id = identity.user_id.clone();
            return Ok(IdentityOutcome::Recorded(login_user(
                &mut users,
                &user_id,
                &login.connection,
                profile,
                now,
            )));
        }
        let same_email: Vec<User> = users
            .values()
            .filter(|u| {
                u.user_id == login.user_id
                    || login.email_key().is_some_and(|e| {
                        super::stored::email_key(&u.profile).as_deref() == Some(&e)
                    })
            })
            .cloned()
            .collect();
        match identities::decide(login, &same_email) {
            identities::Decision::Refuse(why) => Ok(IdentityOutcome::Refused(why)),
            identities::Decision::Create => {
                identities.insert(
                    key.clone(),
                    new_identity(&login.user_id, &key, &login.profile, now),
                );
                Ok(IdentityOutcome::Recorded(login_user(
                    &mut users,
                    &login.user_id,
                    &login.connection,
                    Some(login.profile.clone()),
                    now,
                )))
            }
            identities::Decision::Link(user_id) => {
                identities.insert(
                    key.clone(),
                    new_identity(&user_id, &key, &login.profile, now),
                );
                Ok(IdentityOutcome::Linked(login_user(
                    &mut users,
                    &user_id,
                    &login.connection,
                    None,
                    now,
                )))
            }
        }
    }

    async fn identities(&self, user_ids: &[String]) -> Result<Vec<StoredIdentity>, StoreError> {
        let mut found: Vec<StoredIdentity> = self
            .identities_map()
            .values()
            .filter(|i| user_ids.contains(&i.user_id))
            .cloned()
            .collect();
        found.sort_by(|a, b| {
            (&a.user_id, a.created_at, &a.connection, &a.provider_user_id).cmp(&(
                &b.user_id,
                b.created_at,
                &b.connection,
                &b.provider_user_id,
            ))
        });
        Ok(found)
    }

    async fn unlink_identity(
        &self,
        user_id: &str,
        connection: &str,
        provider_user_id: &str,
        new_user_id: &str,
        now: u64,
    ) -> Result<Unlinked, StoreError> {
        let mut users = self.users();
        let mut identities = self.identities_map();
        let key = (connection.to_owned(), provider_user_id.to_owned());
        let Some(identity) = identities.get_mut(&key).filter(|i| i.user_id == user_id) else {
            return Ok(Unlinked::NoSuchIdentity);
        };
        if new_user_id == user_id {
            return Ok(Unlinked::Primary);
        }
        if users.contains_key(new_user_id) {
            return Err(StoreError::Conflict(format!("user `{new_user_id}`")));
        }
        identity.user_id = new_user_id.to_owned();
        let user = identities::unlinked_user(identity, new_user_id, now);
        users.insert(new_user_id.to_owned(), user.clone());
        Ok(Unlinked::Unlinked(Box::new(user)))
    }

    async fn get_user(&self, user_id: &str) -> Result<Option<User>, StoreError> {
        Ok(self.users().get(user_id).cloned())
    }

    async fn list_users(
        &self,
        offset: usize,
        limit: usize,
        email: Option<&str>,
    ) -> Result<Vec<User>, StoreError> {
        let needle = email.map(str::to_lowercase);
        Ok(self
            .users()
            .values()
            .filter(|u| match (&needle, &u.profile.email) {
                (None, _) => true,
                (Some(n), Some(e)) => e.to_lowercase().contains(n.as_str()),
                (Some(_), None) => false,
            })
            .skip(offset)
            .take(limit)
            .cloned()
            .collect())
    }

    async fn count_users(&self, email: Option<&str>) -> Result<usize, StoreError> {
        Ok(self.list_users(0, usize::MAX, email).await?.len())
    }

    async fn delete_user(&self, user_id: &str) -> Result<bool, StoreError> {
        let mut users = self.users();
        self.identities_map().retain(|_, i| i.user_id != user_id);
        Ok(users.remove(user_id).is_some())
    }

    async fn merge_user_metadata(
        &self,
        user_id: &str,
        app: &Metadata,
        user: &Metadata,
    ) -> Result<Option<User>, StoreError> {
        let mut users = self.users();
        Ok(users.get_mut(user_id).map(|stored| {
            merge_metadata(&mut stored.app_metadata, app);
            merge_metadata(&mut stored.user_metadata, user);
            stored.clone()
        }))
    }

    async fn catalog_version(&self) -> Result<u64, StoreError> {
        Ok(self.durable().catalog_version)
    }

    async fn catalog(&self) -> Result<StoredCatalog, StoreError> {
        let d = self.durable();
        Ok(StoredCatalog {
            version: d.catalog_version,
            clients: d.clients.values().cloned().collect(),
            connections: d.connections.values().cloned().collect(),
            mappers: d
                .mappers
                .iter()
                .map(|(name, m)| MapperEntry {
                    name: name.clone(),
                    active_version: m.active,
                })
                .collect(),
            versions: d
                .mappers
                .values()
                .flat_map(|m| m.versions.iter().map(|(v, _)| v.clone()))
                .collect(),
            actions: d
                .actions
                .values()
                .map(|a| ActionEntry {
                    action: a.action.clone(),
                    active_version: a.active,
                })
                .collect(),
            action_versions: d
                .actions
                .values()
                .flat_map(|a| a.versions.iter().map(|(v, _)| v.clone()))
                .collect(),
            post_login_bindings: d.post_login_bindings.clone(),
            resource_servers: d.resource_servers.values().cloned().collect(),
            branding: d.branding.clone(),
        })
    }

    fn catalog_feed(&self) -> CatalogFeed {
        CatalogFeed {
            notified: Some(self.changes.subscribe()),
            poll_every: CATALOG_POLL_INTERVAL,
        }
    }

    async fn put_connection(&self, connection: &StoredConnection) -> Result<(), StoreError> {
        let mut d = self.durable();
        let taken = d
            .connections
            .values()
            .any(|c| c.id != connection.id && c.spec.name == connection.spec.name);
        if taken {
            return Err(StoreError::Conflict(format!(
                "connection `{}`",
                connection.spec.name
            )));
        }
        d.connections
            .insert(connection.id.clone(), connection.clone());
        self.bump(&mut d);
        Ok(())
    }

    async fn connections(&self) -> Result<Vec<StoredConnection>, StoreError> {
        Ok(self.durable().connections.values().cloned().collect())
    }

    async fn delete_connection(&self, id: &str) -> Result<bool, StoreError> {
        let mut d = self.durable();
        let deleted = d.connections.remove(id).is_some();
        if deleted {
            self.bump(&mut d);
        }
        Ok(deleted)
    }

    async fn put_client(&self, client: &StoredClient) -> Result<(), StoreError> {
        let mut d = self.durable();
        d.clients.insert(client.client_id.clone(), client.clone());
        self.bump(&mut d);
        Ok(())
    }

    async fn clients(&self) -> Result<Vec<StoredClient>, StoreError> {
        Ok(self.durable().clients.values().cloned().collect())
    }

    async fn delete_client(&self, client_id: &str) -> Result<bool, StoreError> {
        let mut d = self.durable();
        let deleted = d.clients.remove(client_id).is_some();
        if deleted {
            self.bump(&mut d);
        }
        Ok(deleted)
    }

    async fn put_resource_server(&self, api: &StoredResourceServer) -> Result<(), StoreError> {
        let mut d = self.durable();
        let taken = d
            .resource_servers
            .values()
            .any(|r| r.id != api.id && r.identifier == api.identifier);
        if taken {
            return Err(StoreError::Conflict(format!(
                "resource server `{}`",
                api.identifier
            )));
        }
        d.resource_servers.insert(api.id.clone(), api.clone());
        self.bump(&mut d);
        Ok(())
    }

    async fn resource_servers(&self) -> Result<Vec<StoredResourceServer>, StoreError> {
        Ok(self.durable().resource_servers.values().cloned().collect())
    }

    async fn branding(&self) -> Result<StoredBranding, StoreError> {
        Ok(self.durable().branding.clone())
    }

    async fn put_branding_settings(&self, settings: &str) -> Result<(), StoreError> {
        let mut d = self.durable();
        d.branding.settings = Some(settings.to_owned());
        self.bump(&mut d);
        Ok(())
    }

    async fn put_universal_login_template(
        &self,
        template: Option<&str>,
    ) -> Result<bool, StoreError> {
        let mut d = self.durable();
        let had = d.branding.universal_login_template.is_some();
        d.branding.universal_login_template = template.map(str::to_owned);
        if had || template.is_some() {
            self.bump(&mut d);
        }
        Ok(had)
    }

    async fn delete_resource_server(&self, id: &str) -> Result<bool, StoreError> {
        let mut d = self.durable();
        let deleted = d.resource_servers.remove(id).is_some();
        if deleted {
            self.bump(&mut d);
        }
        Ok(deleted)
    }

    async fn add_mapper_version(
        &self,
        name: &str,
        bytes: &[u8],
        sha256: &str,
        created_by: &str,
        now: u64,
    ) -> Result<MapperVersion, StoreError> {
        let mut d = self.durable();
        let mapper = d.mappers.entry(name.to_owned()).or_insert(Mapper {
            active: 0,
            versions: Vec::new(),
        });
        let version = MapperVersion {
            name: name.to_owned(),
            version: mapper.versions.last().map_or(1, |(v, _)| v.version + 1),
            sha256: sha256.to_owned(),
            size: bytes.len() as u64,
            created_at: now,
            created_by: created_by.to_owned(),
        };
        mapper.active = version.version;
        mapper.versions.push((version.clone(), bytes.to_vec()));
        self.bump(&mut d);
        Ok(version)
    }

    async fn mapper_versions(&self, name: &str) -> Result<Vec<MapperVersion>, StoreError> {
        Ok(self
            .durable()
            .mappers
            .get(name)
            .map(|m| m.versions.iter().map(|(v, _)| v.clone()).collect())
            .unwrap_or_default())
    }

    async fn mapper_bytes(&self, name: &str, version: u32) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.durable().mappers.get(name).and_then(|m| {
            m.versions
                .iter()
                .find(|(v, _)| v.version == version)
                .map(|(_, b)| b.clone())
        }))
    }

    async fn activate_mapper_version(&self, name: &str, version: u32) -> Result<bool, StoreError> {
        let mut d = self.durable();
        let Some(m) = d.mappers.get_mut(name) else {
            return Ok(false);
        };
        if !m.versions.iter().any(|(v, _)| v.version == version) {
            return Ok(false);
        }
        m.active = version;
        self.bump(&mut d);
        Ok(true)
    }

    async fn mappers(&self) -> Result<Vec<MapperEntry>, StoreError> {
        Ok(self
            .durable()
            .mappers
            .iter()
            .map(|(name, m)| MapperEntry {
                name: name.clone(),
                active_version: m.active,
            })
            .collect())
    }

    async fn delete_mapper(&self, name: &str) -> Result<bool, StoreError> {
        let mut d = self.durable();
        let deleted = d.mappers.remove(name).is_some();
        if deleted {
            self.bump(&mut d);
        }
        Ok(deleted)
    }

    async fn put_action(
        &self,
        action: &StoredAction,
        draft: Option<&[u8]>,
    ) -> Result<(), StoreError> {
        let mut d = self.durable();
        if d.actions
            .values()
            .any(|a| a.action.name == action.name && a.action.id != action.id)
        {
            return Err(StoreError::Conflict(format!("action `{}`", action.name)));
        }
        match d.actions.entry(action.id.clone()) {
            Entry::Occupied(known) => {
                let known = known.into_mut();
                known.action = action.clone();
                if let Some(draft) = draft {
                    known.draft = Some(draft.to_vec());
                }
            }
            Entry::Vacant(new) => {
                new.insert(Action {
                    action: action.clone(),
                    draft: draft.map(<[u8]>::to_vec),
                    active: 0,
                    versions: Vec::new(),
                });
            }
        }
        self.bump(&mut d);
        Ok(())
    }

    async fn put_rule(&self, rule: &StoredRule) -> Result<(), StoreError> {
        let mut d = self.durable();
        if d.rules
            .values()
            .any(|r| r.name == rule.name && r.id != rule.id)
        {
            return Err(StoreError::Conflict(format!("rule `{}`", rule.name)));
        }
        d.rules.insert(rule.id.clone(), rule.clone());
        self.bump(&mut d);
        Ok(())
    }

    async fn rules(&self) -> Result<Vec<StoredRule>, StoreError> {
        let mut rules: Vec<StoredRule> = self.durable().rules.values().cloned().collect();
        sort_rules(&mut rules);
        Ok(rules)
    }

    async fn delete_rule(&self, id: &str) -> Result<bool, StoreError> {
        let mut d = self.durable();
        let deleted = d.rules.remove(id).is_some();
        if deleted {
            self.bump(&mut d);
        }
        Ok(deleted)
    }

    async fn actions(&self) -> Result<Vec<ActionEntry>, StoreError> {
        Ok(self
            .durable()
            .actions
            .values()
            .map(|a| ActionEntry {
                action: a.action.clone(),
                active_version: a.active,
            })
            .collect())
    }

    async fn delete_action(&self, id: &str) -> Result<bool, StoreError> {
        let mut d = self.durable();
        let deleted = d.actions.remove(id).is_some();
        if deleted {
            d.post_login_bindings.retain(|bound| bound != id);
            self.bump(&mut d);
        }
        Ok(deleted)
    }

    async fn deploy_action(
        &self,
        id: &str,
        created_by: &str,
        now: u64,
    ) -> Result<Option<ActionVersion>, StoreError> {
        let mut d = self.durable();
        let Some(action) = d.actions.get_mut(id) else {
            return Ok(None);
        };
        let (Some(draft), Some(sha256)) = (&action.draft, &action.action.draft_sha256) else {
            return Ok(None);
        };
        let version = ActionVersion {
            action_id: id.to_owned(),
            version: action.versions.last().map_or(1, |(v, _)| v.version + 1),
            sha256: sha256.clone(),
            size: draft.len() as u64,
            created_at: now,
            created_by: created_by.to_owned(),
        };
        let bytes = draft.clone();
        action.active = version.version;
        action.versions.push((version.clone(), bytes));
        self.bump(&mut d);
        Ok(Some(version))
    }

    async fn action_versions(&self, id: &str) -> Result<Vec<ActionVersion>, StoreError> {
        Ok(self
            .durable()
            .actions
            .get(id)
            .map(|a| a.versions.iter().map(|(v, _)| v.clone()).collect())
            .unwrap_or_default())
    }

    async fn action_bytes(&self, id: &str, version: u32) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.durable().actions.get(id).and_then(|a| {
            a.versions
                .iter()
                .find(|(v, _)| v.version == version)
                .map(|(_, bytes)| bytes.clone())
        }))
    }

    async fn activate_action_version(&self, id: &str, version: u32) -> Result<bool, StoreError> {
        let mut d = self.durable();
        let Some(action) = d.actions.get_mut(id) else {
            return Ok(false);
        };
        if !action.versions.iter().any(|(v, _)| v.version == version) {
            return Ok(false);
        }
        action.active = version;
        self.bump(&mut d);
        Ok(true)
    }

    async fn post_login_bindings(&self) -> Result<Vec<String>, StoreError> {
        Ok(self.durable().post_login_bindings.clone())
    }

    async fn set_post_login_bindings(&self, ids: &[String]) -> Result<(), StoreError> {
        let mut d = self.durable();
        if let Some(unknown) = ids.iter().find(|id| !d.actions.contains_key(*id)) {
            return Err(StoreError::Missing(format!("action `{unknown}`")));
        }
        d.post_login_bindings = ids.to_vec();
        self.bump(&mut d);
        Ok(())
    }

    async fn try_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: u64,
        now: u64,
    ) -> Result<bool, StoreError> {
        let mut d = self.durable();
        let free = d
            .leases
            .get(name)
            .is_none_or(|(held_by, expires_at)| held_by == holder || *expires_at <= now);
        if free {
            d.leases.insert(
                name.to_owned(),
                (holder.to_owned(), now.saturating_add(ttl)),
            );
        }
        Ok(free)
    }

    async fn signing_keys(&self) -> Result<Option<String>, StoreError> {
        Ok(self.durable().signing_keys.clone())
    }

    async fn init_signing_keys(&self, document: &str) -> Result<String, StoreError> {
        Ok(self
            .durable()
            .signing_keys
            .get_or_insert_with(|| document.to_owned())
            .clone())
    }

    async fn connection_keys(&self, connection_id: &str) -> Result<Option<String>, StoreError> {
        Ok(self.durable().connection_keys.get(connection_id).cloned())
    }

    async fn init_connection_keys(
        &self,
        connection_id: &str,
        document: &str,
    ) -> Result<String, StoreError> {
        Ok(self
            .durable()
            .connection_keys
            .entry(connection_id.to_owned())
            .or_insert_with(|| document.to_owned())
            .clone())
    }

    async fn replace_connection_keys(
        &self,
        connection_id: &str,
        current: &str,
        next: &str,
    ) -> Result<bool, StoreError> {
        let mut d = self.durable();
        match d.connection_keys.get_mut(connection_id) {
            Some(doc) if doc == current => {
                *doc = next.to_owned();
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn replace_signing_keys(
        &self,
        expected: Option<&str>,
        document: &str,
    ) -> Result<bool, StoreError> {
        let mut d = self.durable();
        if d.signing_keys.as_deref() != expected {
            return Ok(false);
        }
        d.signing_keys = Some(document.to_owned());
        self.bump(&mut d);
        Ok(true)
    }

    async fn put_log_events(&self, events: &[LogEvent]) -> Result<(), StoreError> {
        let mut d = self.durable();
        for e in events {
            d.log_events
                .entry(e.log_id.clone())
                .or_insert_with(|| e.clone());
        }
        Ok(())
    }

    async fn log_events(&self, query: &LogQuery) -> Result<LogPage, StoreError> {
        let d = self.durable();
        let matching = d.log_events.values().filter(|e| query.matches(e));
        let total = matching.clone().count() as u64;
        let events = match &query.after {
            Some(after) => matching
                .filter(|e| e.log_id > *after)
                .skip(query.offset)
                .take(query.limit)
                .cloned()
                .collect(),
            None => matching
                .rev()
                .skip(query.offset)
                .take(query.limit)
                .cloned()
                .collect(),
        };
        Ok(LogPage { events, total })
    }

    async fn log_event(&self, log_id: &str) -> Result<Option<LogEvent>, StoreError> {
        Ok(self.durable().log_events.get(log_id).cloned())
    }

    async fn delete_log_events_before(&self, date: u64) -> Result<u64, StoreError> {
        let mut d = self.durable();
        let before = d.log_events.len();
        d.log_events.retain(|_, e| e.date >= date);
        Ok((before - d.log_events.len()) as u64)
    }
}

/// An identity first seen at `now`, of the user `user_id`.
fn new_identity(
    user_id: &str,
    (connection, provider_user_id): &(String, String),
    profile: &Profile,
    now: u64,
) -> StoredIdentity {
    StoredIdentity {
        user_id: user_id.to_owned(),
        connection: connection.clone(),
        provider_user_id: provider_user_id.clone(),
        profile: profile.clone(),
        is_social: true,
        created_at: now,
        updated_at: now,
    }
}

/// Records a login of `user_id` (created if new, with `connection`):
/// counted; the profile replaced when one is given (a login through the
/// primary identity, or the first).
fn login_user(
    users: &mut BTreeMap<String, User>,
    user_id: &str,
    connection: &str,
    profile: Option<Profile>,
    now: u64,
) -> User {
    let user = match users.entry(user_id.to_owned()) {
        Entry::Occupied(known) => {
            let user = known.into_mut();
            if let Some(profile) = profile {
                user.profile = profile;
            }
            user.last_login = now;
            user.logins_count += 1;
            user
        }
        Entry::Vacant(new) => new.insert(User {
            user_id: user_id.to_owned(),
            connection: connection.to_owned(),
            profile: profile.unwrap_or_else(|| empty_profile(user_id)),
            created_at: now,
            last_login: now,
            logins_count: 1,
            app_metadata: Metadata::new(),
            user_metadata: Metadata::new(),
        }),
    };
    user.clone()
}

/// A profile with nothing but an id: what a user created without one has
/// (never on the login path, which always brings one).
fn empty_profile(user_id: &str) -> Profile {
    Profile {
        user_id: user_id.to_owned(),
        email: None,
        email_verified: None,
        name: None,
        given_name: None,
        family_name: None,
        nickname: None,
        picture: None,
        extra: Metadata::new(),
    }
}
