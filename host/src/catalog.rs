//! The catalog: what an instance serves — apps, connections, loaded mapper
//! versions — as an immutable [`Snapshot`] of the store.
//!
//! The store is the only truth. Every change (the management API, the
//! watched mappers directory, the configuration file at start-up) is
//! written to the store first; then [`Catalog::refresh`] reads the store's
//! catalog, as of one moment and with its catalog version, builds a new
//! snapshot from it and swaps it in with one atomic pointer store. The
//! login path only loads the current pointer ([`Catalog::snapshot`]): no
//! lock, and a login holds the snapshot (and the mapper version) it
//! started with to its end.
//!
//! Changes other instances make arrive through the store's
//! [`crate::store::CatalogFeed`]: [`follow`] wakes on a notification or a
//! poll, and rebuilds when the store's version is newer than the
//! snapshot's.
//!
//! A rebuild never compiles or reads again a component it already has:
//! loaded mapper versions are reused by (name, version, SHA-256) from the
//! previous snapshot, or taken from [`Catalog::stage`] (a writer that has
//! just compiled the component it stored). Only the versions some
//! connection can reach — each mapper's active version, and those pinned
//! as `name@N` — are kept; the store keeps every version, so a rollback or
//! a new pin loads one again.
//!
//! Rebuilds are serialised and each reads the store after the previous one
//! swapped, so the served version only moves forward, and whichever write
//! commits last is what every instance ends up serving: two concurrent
//! pushes of one mapper cannot leave the catalog and the store disagreeing.

pub mod registry;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use crate::actions::{
    ActionCode, BoundAction, LoadedAction, PostLoginChain, ScriptCode, ScriptKind,
    is_script_runtime,
};
use crate::mapper::{LoadedMapper, Runtime};
use crate::model::branding::Branding;
use crate::model::resource_server::ResourceServer;
use crate::model::{Client, Connection, ConnectionRecord, ProfileSource};
use crate::script::ScriptEngine;
use crate::store::{Store, StoreError, StoredCatalog};
use registry::{ActionRegistry, MapperRegistry, parse_ref};

/// Why the catalog could not be read or built.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CatalogError {
    #[error("reading the catalog from the store: {0}")]
    Store(#[from] StoreError),
    /// What in the store this instance cannot serve (at start-up, each is
    /// fatal; later, each is logged and left out).
    #[error("{}", .0.join("; "))]
    Problems(Vec<String>),
    #[error("the script engine cannot be loaded: {0}")]
    ScriptEngine(String),
}

/// Apps, connections and mappers, as of one catalog version of the store.
#[derive(Default)]
pub struct Snapshot {
    /// The store's catalog version this snapshot was built from.
    pub version: u64,
    /// False only for the empty snapshot an instance starts with.
    pub loaded: bool,
    pub clients: HashMap<String, Arc<Client>>,
    pub connections: HashMap<String, Arc<Connection>>,
    pub mappers: MapperRegistry,
    /// Post-login Actions by id: each one's active version, loaded.
    pub actions: ActionRegistry,
    /// The Actions bound to the post-login trigger, in order.
    pub post_login: Arc<PostLoginChain>,
    /// APIs by `identifier` (the `audience` apps ask for).
    pub resource_servers: HashMap<String, Arc<ResourceServer>>,
    /// The login page's branding.
    pub branding: Arc<Branding>,
}

impl Snapshot {
    /// Connections enabled for `client_id`, by name.
    pub fn connections_for(&self, client_id: &str) -> Vec<Arc<Connection>> {
        let mut list: Vec<_> = self
            .connections
            .values()
            .filter(|c| c.is_enabled_for(client_id))
            .cloned()
            .collect();
        list.sort_by(|a, b| a.name().cmp(b.name()));
        list
    }
}

/// The store's Actions, versions and bindings, as a rebuild reads them.
struct StoredActions {
    actions: Vec<crate::store::ActionEntry>,
    versions: Vec<crate::store::ActionVersion>,
    bindings: Vec<String>,
}

/// A loaded component's identity: the same name, version and bytes.
type ComponentKey = (String, u32, String);

/// The catalog an instance serves, and how it follows the store.
pub struct Catalog {
    current: ArcSwap<Snapshot>,
    store: Arc<dyn Store>,
    runtime: Arc<Runtime>,
    /// Serialises rebuilds, so each reads the store after the previous
    /// one swapped and versions only go forward.
    rebuild: tokio::sync::Mutex<()>,
    /// Components a writer compiled for a version it has just stored.
    staged: Mutex<HashMap<ComponentKey, Arc<LoadedMapper>>>,
    /// The script engine, loaded when the first script connection needs it.
    script_engine: tokio::sync::OnceCell<Arc<ScriptEngine>>,
    /// The version served, for whoever waits for one.
    served: tokio::sync::watch::Sender<u64>,
}

/// Keeps a staged component available to rebuilds until dropped.
#[must_use = "the component is unstaged when this is dropped"]
pub struct Staged<'a> {
    catalog: &'a Catalog,
    key: ComponentKey,
}

impl Drop for Staged<'_> {
    fn drop(&mut self) {
        self.catalog.staged_lock().remove(&self.key);
    }
}

impl Catalog {
    /// A catalog serving nothing yet: [`Catalog::refresh`] loads it.
    pub fn new(store: Arc<dyn Store>, runtime: Arc<Runtime>) -> Self {
        Self {
            current: ArcSwap::from_pointee(Snapshot::default()),
            store,
            runtime,
            rebuild: tokio::sync::Mutex::new(()),
            staged: Mutex::new(HashMap::new()),
            script_engine: tokio::sync::OnceCell::new(),
            served: tokio::sync::watch::Sender::new(0),
        }
    }

    /// The snapshot served now: one atomic load, no lock.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// The catalog version served, once loaded.
    pub fn version(&self) -> Option<u64> {
        let current = self.current.load();
        current.loaded.then_some(current.version)
    }

    /// The version served; `changed()` wakes at each swap.
    pub fn served(&self) -> tokio::sync::watch::Receiver<u64> {
        self.served.subscribe()
    }

    /// The store this catalog follows.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Offers a component just compiled for `name` version `version` to
    /// rebuilds, until the guard is dropped (after the writer's refresh).
    pub fn stage(&self, name: &str, version: u32, mapper: Arc<LoadedMapper>) -> Staged<'_> {
        let key = (name.to_owned(), version, mapper.digest().to_owned());
        self.staged_lock().insert(key.clone(), mapper);
        Staged { catalog: self, key }
    }

    fn staged_lock(&self) -> std::sync::MutexGuard<'_, HashMap<ComponentKey, Arc<LoadedMapper>>> {
        self.staged.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The script engine, loaded on first use (compiled once, then read
    /// from the runtime's artifact cache), off the async workers.
    pub async fn script_engine(&self) -> Result<Arc<ScriptEngine>, String> {
        self.script_engine
            .get_or_try_init(|| async {
                let runtime = Arc::clone(&self.runtime);
                let engine = tokio::task::spawn_blocking(move || ScriptEngine::load(&runtime))
                    .await
                    .map_err(|e| format!("loading the script engine panicked: {e}"))?
                    .map_err(|e| format!("the script engine cannot be loaded: {e}"))?;
                Ok(Arc::new(engine))
            })
            .await
            .cloned()
    }

    /// Whether the script engine is loaded.
    pub fn script_engine_loaded(&self) -> bool {
        self.script_engine.initialized()
    }

    /// Rebuilds from the store if its catalog is newer than the snapshot
    /// (or none is loaded yet), and returns the snapshot served. What the
    /// store holds that cannot be served (a connection that no longer
    /// checks, a component that does not load) is logged and left out.
    pub async fn refresh(&self) -> Result<Arc<Snapshot>, CatalogError> {
        let (snapshot, problems) = self.rebuild(false).await?;
        for problem in &problems {
            tracing::error!(version = snapshot.version, "catalog: {problem}");
        }
        Ok(snapshot)
    }

    /// [`Catalog::refresh`] that refuses to serve a catalog with problems
    /// (the snapshot served stays as it was): for start-up, where the
    /// configuration or the store must be fixed.
    pub async fn load(&self) -> Result<Arc<Snapshot>, CatalogError> {
        self.rebuild(true).await.map(|(snapshot, _)| snapshot)
    }

    /// Rebuilds when the store's catalog version is newer than the one
    /// served: the cheap check a poll or a notification runs.
    pub async fn check(&self) -> Result<(), CatalogError> {
        if let Some(served) = self.version()
            && self.store.catalog_version().await? <= served
        {
            return Ok(());
        }
        self.refresh().await.map(|_| ())
    }

    /// Builds a snapshot of the store and swaps it in, unless the store is
    /// no newer than the one served — or, when `strict`, unless something
    /// in it cannot be served.
    async fn rebuild(&self, strict: bool) -> Result<(Arc<Snapshot>, Vec<String>), CatalogError> {
        let _turn = self.rebuild.lock().await;
        let stored = self.store.catalog().await?;
        let previous = self.current.load_full();
        if previous.loaded && stored.version <= previous.version {
            return Ok((previous, Vec::new()));
        }
        let (snapshot, problems) = self.build(stored, &previous).await;
        if strict && !problems.is_empty() {
            return Err(CatalogError::Problems(problems));
        }
        let snapshot = Arc::new(snapshot);
        self.current.store(Arc::clone(&snapshot));
        self.served.send_replace(snapshot.version);
        tracing::debug!(version = snapshot.version, "catalog swapped");
        Ok((snapshot, problems))
    }

    /// A snapshot of `stored`, reusing `previous`'s components.
    async fn build(&self, stored: StoredCatalog, previous: &Snapshot) -> (Snapshot, Vec<String>) {
        let mut problems = Vec::new();
        let stored_actions = StoredActions {
            actions: stored.actions,
            versions: stored.action_versions,
            bindings: stored.post_login_bindings,
        };
        let mut snapshot = Snapshot {
            version: stored.version,
            loaded: true,
            ..Snapshot::default()
        };
        for client in stored.clients {
            let id = client.client_id.clone();
            match Client::from_stored(client) {
                Ok(client) => {
                    snapshot.clients.insert(id, Arc::new(client));
                }
                Err(e) => problems.push(format!("client `{id}`: {e}")),
            }
        }
        for api in stored.resource_servers {
            let identifier = api.identifier.clone();
            match ResourceServer::from_stored(api) {
                Ok(api) => {
                    snapshot.resource_servers.insert(identifier, Arc::new(api));
                }
                Err(e) => problems.push(format!("resource server `{identifier}`: {e}")),
            }
        }
        match Branding::from_stored(&stored.branding) {
            Ok(branding) => snapshot.branding = Arc::new(branding),
            Err(e) => problems.push(format!("branding: {e}")),
        }
        let mut connections = Vec::new();
        for stored in stored.connections {
            let name = stored.spec.name.clone();
            // `from_store`: a row stored before a rule it breaks loads,
            // refused at use, instead of failing the whole catalog.
            match ConnectionRecord::from_stored(stored)
                .and_then(|record| Connection::from_store(record.id, record.spec))
            {
                Ok(conn) => {
                    if let Some(why) = &conn.refused {
                        tracing::warn!(connection = %name, "logins through this connection are refused until it is fixed: {why}");
                    }
                    connections.push(conn);
                }
                Err(e) => problems.push(format!("connection `{name}`: {e}")),
            }
        }

        // The versions some connection can reach: each active one, and
        // those pinned as `name@N`.
        let digests: HashMap<(&str, u32), &str> = stored
            .versions
            .iter()
            .map(|v| ((v.name.as_str(), v.version), v.sha256.as_str()))
            .collect();
        let mut wanted: BTreeSet<(String, u32)> = stored
            .mappers
            .iter()
            .filter(|m| m.active_version > 0)
            .map(|m| (m.name.clone(), m.active_version))
            .collect();
        for conn in &connections {
            if let ProfileSource::Mapper(reference) = &conn.profile
                && let Ok((name, Some(version))) = parse_ref(reference)
            {
                wanted.insert((name.to_owned(), version));
            }
        }
        for entry in &stored.mappers {
            snapshot
                .mappers
                .set_active(&entry.name, entry.active_version);
        }
        for (name, version) in wanted {
            let Some(digest) = digests.get(&(name.as_str(), version)) else {
                // A pin of a version the store does not hold: the
                // connection's check below says so.
                continue;
            };
            match self.component(&name, version, digest, previous).await {
                Ok(mapper) => snapshot.mappers.insert(&name, version, mapper),
                Err(e) => problems.push(format!("mapper `{name}` version {version}: {e}")),
            }
        }

        let mut scripts = false;
        for conn in connections {
            match &conn.profile {
                ProfileSource::Mapper(mapper) => {
                    if snapshot.mappers.resolve(mapper).is_none() {
                        problems.push(format!(
                            "connection `{}` uses mapper `{mapper}`, which is not registered",
                            conn.name()
                        ));
                    }
                }
                ProfileSource::Script(_) => scripts = true,
                ProfileSource::Claims => {}
            }
            if let Some(client) = conn
                .spec
                .enabled_clients
                .iter()
                .find(|c| !snapshot.clients.contains_key(*c))
            {
                problems.push(format!(
                    "connection `{}` enables client `{client}`, which does not exist",
                    conn.name()
                ));
            }
            snapshot.connections.insert(conn.name().to_owned(), conn);
        }
        self.build_actions(&stored_actions, previous, &mut snapshot, &mut problems)
            .await;
        // A script connection written by another instance: the engine is
        // loaded before the snapshot is served, so its first login does
        // not wait for it.
        if scripts && let Err(e) = self.script_engine().await {
            problems.push(e);
        }
        (snapshot, problems)
    }

    /// Loads each Action's active version (reusing the previous
    /// snapshot's) and builds the post-login chain in bound order. A bound
    /// Action that cannot run makes the chain unservable: its logins fail
    /// rather than skip it.
    async fn build_actions(
        &self,
        stored: &StoredActions,
        previous: &Snapshot,
        snapshot: &mut Snapshot,
        problems: &mut Vec<String>,
    ) {
        let digests: HashMap<(&str, u32), &str> = stored
            .versions
            .iter()
            .map(|v| ((v.action_id.as_str(), v.version), v.sha256.as_str()))
            .collect();
        for entry in &stored.actions {
            let id = entry.action.id.as_str();
            snapshot.actions.set_active(id, entry.active_version);
            if entry.active_version == 0 || is_script_runtime(&entry.action.runtime) {
                continue;
            }
            let Some(digest) = digests.get(&(id, entry.active_version)) else {
                continue;
            };
            match self
                .action_component(id, entry.active_version, digest, previous)
                .await
            {
                Ok(loaded) => snapshot.actions.insert(id, entry.active_version, loaded),
                Err(e) => problems.push(format!(
                    "action `{}` version {}: {e}",
                    entry.action.name, entry.active_version
                )),
            }
        }
        let mut chain = PostLoginChain::default();
        // Enabled Rules first, in order: Auth0 runs Rules before Actions
        // when a tenant has both.
        match self.store.rules().await {
            Ok(rules) => {
                for rule in rules.iter().filter(|r| r.enabled) {
                    match self.bound_rule(rule).await {
                        Ok(bound) => chain.actions.push(Arc::new(bound)),
                        Err(e) => {
                            let problem = format!("rule `{}` cannot run: {e}", rule.name);
                            problems.push(problem.clone());
                            chain.unservable = Some(problem);
                            break;
                        }
                    }
                }
            }
            Err(e) => {
                let problem = format!("the rules cannot be read: {e}");
                problems.push(problem.clone());
                chain.unservable = Some(problem);
            }
        }
        for id in &stored.bindings {
            if chain.unservable.is_some() {
                break;
            }
            let Some(entry) = stored.actions.iter().find(|a| &a.action.id == id) else {
                chain.unservable = Some(format!("bound action `{id}` does not exist"));
                break;
            };
            let bound = if is_script_runtime(&entry.action.runtime) {
                self.script_action(entry).await.and_then(|code| {
                    BoundAction::from_stored(&entry.action, entry.active_version, code)
                })
            } else {
                snapshot
                    .actions
                    .resolve(id)
                    .ok_or_else(|| {
                        if entry.active_version == 0 {
                            "it was never deployed".to_owned()
                        } else {
                            format!("its version {} did not load", entry.active_version)
                        }
                    })
                    .and_then(|(loaded, version)| {
                        BoundAction::from_stored(
                            &entry.action,
                            version,
                            ActionCode::Component(loaded),
                        )
                    })
            };
            match bound {
                Ok(bound) => chain.actions.push(Arc::new(bound)),
                Err(e) => {
                    let problem = format!("bound action `{}` cannot run: {e}", entry.action.name);
                    problems.push(problem.clone());
                    chain.unservable = Some(problem);
                    break;
                }
            }
        }
        snapshot.post_login = Arc::new(chain);
    }

    /// A legacy Rule as the chain runs it: its script in the script engine,
    /// under its own sandbox (allow-list, deadline).
    async fn bound_rule(&self, rule: &crate::store::StoredRule) -> Result<BoundAction, String> {
        Ok(BoundAction {
            id: rule.id.clone(),
            name: format!("rule {}", rule.name),
            version: 0,
            code: ActionCode::Script(ScriptCode {
                kind: ScriptKind::Rule,
                source: rule.script.as_str().into(),
                engine: self.script_engine().await?,
                configuration: Default::default(),
            }),
            sandbox: crate::actions::sandbox_of(&rule.egress, rule.timeout_ms)?,
            secrets: Vec::new(),
        })
    }

    /// An Auth0 Action's code at its active version, with the script
    /// engine that runs it (loaded once, as for script connections).
    async fn script_action(&self, entry: &crate::store::ActionEntry) -> Result<ActionCode, String> {
        if entry.active_version == 0 {
            return Err("it was never deployed".to_owned());
        }
        let bytes = self
            .store
            .action_bytes(&entry.action.id, entry.active_version)
            .await
            .map_err(|e| e.to_string())?
            .ok_or("the store holds no code for it")?;
        let source = String::from_utf8(bytes).map_err(|_| "its code is not UTF-8".to_owned())?;
        Ok(ActionCode::Script(ScriptCode {
            kind: ScriptKind::Action,
            source: source.into(),
            engine: self.script_engine().await?,
            configuration: Default::default(),
        }))
    }

    /// An Action's loaded component, as [`Catalog::component`] for mappers.
    async fn action_component(
        &self,
        id: &str,
        version: u32,
        digest: &str,
        previous: &Snapshot,
    ) -> Result<Arc<LoadedAction>, String> {
        if let Some(loaded) = previous
            .actions
            .get(id, version)
            .filter(|a| a.digest() == digest)
        {
            return Ok(loaded);
        }
        let bytes = self
            .store
            .action_bytes(id, version)
            .await
            .map_err(|e| e.to_string())?
            .ok_or("the store holds no bytes for it")?;
        let runtime = Arc::clone(&self.runtime);
        let digest = digest.to_owned();
        let loaded =
            tokio::task::spawn_blocking(move || runtime.load_action_with_digest(&bytes, digest))
                .await
                .map_err(|e| format!("loading panicked: {e}"))?
                .map_err(|e| e.to_string())?;
        tracing::info!(action = %id, version, "loaded action version");
        Ok(Arc::new(loaded))
    }

    /// The loaded component for `name` version `version` with bytes
    /// `digest`: from the previous snapshot or the staged ones if there,
    /// else read from the store and loaded (compiled, or read from the
    /// runtime's artifact cache) on a blocking thread.
    async fn component(
        &self,
        name: &str,
        version: u32,
        digest: &str,
        previous: &Snapshot,
    ) -> Result<Arc<LoadedMapper>, String> {
        if let Some(mapper) = previous
            .mappers
            .get(name, version)
            .filter(|m| m.digest() == digest)
        {
            return Ok(mapper);
        }
        let key = (name.to_owned(), version, digest.to_owned());
        if let Some(mapper) = self.staged_lock().get(&key) {
            return Ok(Arc::clone(mapper));
        }
        let bytes = self
            .store
            .mapper_bytes(name, version)
            .await
            .map_err(|e| e.to_string())?
            .ok_or("the store holds no bytes for it")?;
        let runtime = Arc::clone(&self.runtime);
        let digest = digest.to_owned();
        let loaded = tokio::task::spawn_blocking(move || runtime.load_with_digest(&bytes, digest))
            .await
            .map_err(|e| format!("loading panicked: {e}"))?
            .map_err(|e| e.to_string())?;
        tracing::info!(mapper = %name, version, "loaded mapper version");
        Ok(Arc::new(loaded))
    }
}

/// Follows the store: rebuilds the catalog whenever the store's feed
/// notifies a change or its poll finds a newer version. Runs until the
/// task is dropped; a failed check is logged and retried at the next one.
pub async fn follow(catalog: Arc<Catalog>) {
    let feed = catalog.store.catalog_feed();
    let mut notified = feed.notified;
    let mut poll = tokio::time::interval(feed.poll_every);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let feed_ended = match notified.as_mut() {
            Some(changes) => tokio::select! {
                changed = changes.changed() => changed.is_err(),
                _ = poll.tick() => false,
            },
            None => {
                poll.tick().await;
                false
            }
        };
        if feed_ended {
            // The feed ended (its store is going away): keep polling.
            notified = None;
        }
        if let Err(e) = catalog.check().await {
            tracing::warn!(error = %e, "checking the store for catalog changes failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    #[tokio::test]
    async fn a_catalog_serves_nothing_until_loaded_then_the_stores_version() {
        let store = Arc::new(MemoryStore::default());
        let runtime = Arc::new(Runtime::new(Default::default()).expect("runtime"));
        let catalog = Catalog::new(store.clone(), runtime);
        assert_eq!(catalog.version(), None, "not loaded");
        assert!(!catalog.snapshot().loaded);
        catalog.load().await.expect("loads");
        assert_eq!(catalog.version(), Some(0));
        let client = crate::store::StoredClient {
            client_id: "shop".into(),
            name: "Shop".into(),
            client_type: "public".into(),
            secret_hash: None,
            callbacks: vec!["https://shop.test/cb".into()],
            id_token_alg: "RS256".into(),
            scopes: vec![],
            require_pkce: true,
            app_type: None,
            token_endpoint_auth_method: None,
            grant_types: None,
            allowed_logout_urls: vec![],
            backchannel_logout_uri: None,
        };
        store.put_client(&client).await.expect("put");
        assert_eq!(catalog.version(), Some(0), "nothing changes by itself");
        catalog.check().await.expect("check");
        assert_eq!(catalog.version(), Some(1));
        assert!(catalog.snapshot().clients.contains_key("shop"));
    }

    #[tokio::test]
    async fn a_start_refuses_what_cannot_be_served_and_a_refresh_serves_the_rest() {
        let store = Arc::new(MemoryStore::default());
        let runtime = Arc::new(Runtime::new(Default::default()).expect("runtime"));
        let spec: crate::model::ConnectionSpec = serde_json::from_value(serde_json::json!({
            "name": "acme",
            "options": {"authorizationURL": "https://a.test/authorize",
                        "tokenURL": "https://a.test/token", "client_id": "c",
                        "mapper": "never-registered"}
        }))
        .expect("spec");
        let record = ConnectionRecord {
            id: "con_acme".into(),
            spec,
        };
        store
            .put_connection(&record.to_stored())
            .await
            .expect("put");
        let catalog = Catalog::new(store, runtime);
        let err = catalog.load().await.err().expect("refused");
        assert!(
            err.to_string().contains("mapper `never-registered`"),
            "{err}"
        );
        assert_eq!(catalog.version(), None, "nothing served");
        catalog.refresh().await.expect("served, the problem logged");
        let served = catalog.snapshot();
        assert!(served.loaded);
        let conn = served.connections.get("acme").expect("the connection");
        assert!(
            matches!(&conn.profile, ProfileSource::Mapper(m) if served.mappers.resolve(m).is_none()),
            "its mapper resolves to nothing: its logins fail, /readyz says so"
        );
    }
}
