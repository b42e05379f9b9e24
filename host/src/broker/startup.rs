//! Assembling a broker from its configuration.

use std::sync::Arc;

use anyhow::Context;

use super::config::Config;
use super::{Broker, BrokerParts, Clock as _, ConfigDefined, SystemClock};
use crate::catalog::Catalog;
use crate::catalog::registry::parse_ref;
use crate::keys::KeySet;
use crate::mapper::{Runtime, RuntimeConfig, sha256_hex};
use crate::model::{Connection, ConnectionRecord, ProfileSource, SecretSource};
use crate::secret::SystemRandomTokens;
use crate::store::{PostgresStore, SealedStore, SqliteStore, Store};
use crate::upstream::Upstream;

impl Broker {
    /// Creates the data directory, opens the store, loads or generates the
    /// signing keys, applies the configuration file to the store
    /// (configuration as code: its apps, connections and mappers are
    /// re-applied at every start, so the management API may read but not
    /// change those apps and connections), and builds the catalog from the
    /// store.
    pub async fn from_config(config: &Config) -> anyhow::Result<Self> {
        let broker = Self::from_config_unloaded(config).await?;
        broker.load_catalog().await?;
        Ok(broker)
    }

    /// Loads the catalog from the store for the first time, refusing one
    /// this instance cannot serve whole (a connection that does not check,
    /// a mapper that does not load), and checks every script compiles.
    pub async fn load_catalog(&self) -> anyhow::Result<()> {
        self.catalog.load().await?;
        self.check_scripts().await
    }

    /// [`Broker::from_config`] but for the catalog's first load
    /// ([`Broker::load_catalog`]): `serve` answers `/readyz` (not ready)
    /// while it loads.
    pub async fn from_config_unloaded(config: &Config) -> anyhow::Result<Self> {
        let data = &config.data_dir;
        std::fs::create_dir_all(data)
            .with_context(|| format!("cannot create the data directory {}", data.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(data, std::fs::Permissions::from_mode(0o700))
                .with_context(|| format!("cannot restrict {}", data.display()))?;
        }
        let runtime = Arc::new(Runtime::new(RuntimeConfig {
            cache_dir: Some(data.join("artifacts")),
            ..RuntimeConfig::default()
        })?);
        let store: Arc<dyn Store> = open_sealed_store(config).await?;
        let keys = Arc::new(signing_keys(&*store, &data.join("keys.json")).await?);
        let clock = SystemClock;
        let defined = seed(config, &*store, clock.now()).await?;
        let catalog = Arc::new(Catalog::new(Arc::clone(&store), Arc::clone(&runtime)));
        let broker = Broker::new(BrokerParts {
            issuer: config.issuer.clone(),
            catalog,
            runtime,
            store,
            keys,
            clock: Arc::new(clock),
            random: Arc::new(SystemRandomTokens::default()),
            upstream: Upstream::default(),
            admin_token: admin_token(config)?,
            limits: config.limits.clone(),
        })
        .with_config_defined(defined)
        .with_log_retention_days(config.log_retention_days)
        .with_console(config.console.clone());
        let broker = match crate::telemetry::Telemetry::from_config(config.otlp_endpoint.as_ref())?
        {
            Some(telemetry) => broker.with_telemetry(Arc::new(telemetry)),
            None => broker,
        };
        Ok(broker)
    }

    /// When a connection runs a script: loads the script engine before the
    /// first login needs it, and refuses to start on a script that does not
    /// compile (the API refuses those when they are saved; the configuration
    /// file and an older store are checked here).
    pub async fn check_scripts(&self) -> anyhow::Result<()> {
        let scripts: Vec<_> = self
            .catalog_read()
            .connections
            .values()
            .filter_map(|c| match &c.profile {
                ProfileSource::Script(script) => Some((c.name().to_owned(), Arc::clone(script))),
                ProfileSource::Mapper(_) | ProfileSource::Claims => None,
            })
            .collect();
        if scripts.is_empty() {
            return Ok(());
        }
        let engine = self.script_engine().await.map_err(anyhow::Error::msg)?;
        for (name, script) in scripts {
            engine.check(&self.runtime, &script).await.map_err(|e| {
                anyhow::anyhow!("connection `{name}`: scripts.fetchUserProfile: {e}")
            })?;
        }
        Ok(())
    }
}

/// The store with its secrets sealed ([`crate::store::SealedStore`]),
/// every sealed value opened once: a wrong key is refused here, naming the
/// key id the store needs.
pub async fn open_sealed_store(config: &Config) -> anyhow::Result<Arc<SealedStore>> {
    let keys = super::secrets_key::keyring(config)?;
    let store = Arc::new(SealedStore::new(open_store(config).await?, keys));
    store
        .verify()
        .await
        .map_err(|e| anyhow::anyhow!("cannot open the store's secrets: {e}"))?;
    Ok(store)
}

/// PostgreSQL when the configuration names a database URL (several
/// instances on one database); otherwise the embedded store, `waypass.db`
/// (SQLite, WAL) in the data directory.
async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    if let Some(url) = &config.database_url {
        // `url` shows itself with the password masked.
        tracing::info!(database = %url, "store: PostgreSQL");
        let store = PostgresStore::connect(url)
            .await
            .map_err(|e| anyhow::anyhow!("cannot open the store: {e}"))?;
        return Ok(Arc::new(store));
    }
    let path = config.data_dir.join("waypass.db");
    let store = SqliteStore::open(&path)
        .map_err(|e| anyhow::anyhow!("cannot open the store {}: {e}", path.display()))?;
    Ok(Arc::new(store))
}

/// The signing keys, held by the store so every instance on one database
/// signs with the same keys. The first start generates them (or imports
/// `keys.json` from an earlier version); instances starting together agree
/// through `init_signing_keys`.
async fn signing_keys(store: &dyn Store, legacy_file: &std::path::Path) -> anyhow::Result<KeySet> {
    let document = match store.signing_keys().await? {
        Some(doc) => doc,
        None => {
            let candidate = match std::fs::read_to_string(legacy_file) {
                Ok(doc) => doc,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => KeySet::generate_document()?,
                Err(e) => anyhow::bail!("cannot read {}: {e}", legacy_file.display()),
            };
            // A corrupt legacy file must not be stored for every later start.
            KeySet::from_document(&candidate)?;
            store.init_signing_keys(&candidate).await?
        }
    };
    Ok(KeySet::from_document(&document)?)
}

/// Writes the configuration file's apps, connections and mappers into the
/// store. A connection keeps its id across restarts (matched by name); a
/// mapper file whose hash differs from the active version becomes a new
/// version. Returns the apps, connections and mappers the file defines (a
/// mapper counts when `[[mappers]]` names it or one of the file's
/// connections runs it).
async fn seed(config: &Config, store: &dyn Store, now: u64) -> anyhow::Result<ConfigDefined> {
    let mut defined = ConfigDefined::default();
    for client in config.clients()?.into_values() {
        store.put_client(&client.to_stored()).await?;
        defined.clients.insert(client.client_id.clone());
    }
    let existing = store.connections().await?;
    for spec in &config.connections {
        anyhow::ensure!(
            defined.connections.insert(spec.name.to_string()),
            "connection `{}` is defined twice",
            spec.name
        );
        let id = existing
            .iter()
            .find(|c| c.spec.name == spec.name.as_str())
            .map_or_else(|| Connection::config_id(&spec.name), |c| c.id.clone());
        Connection::new(id.clone(), spec.clone())
            .map_err(|e| anyhow::anyhow!("connection `{}`: {e}", spec.name))?;
        if let Some(reference) = &spec.options.mapper
            && let Ok((name, _)) = parse_ref(reference)
        {
            defined.mappers.insert(name.to_owned());
        }
        store
            .put_connection(
                &ConnectionRecord {
                    id,
                    spec: spec.clone(),
                }
                .to_stored(),
            )
            .await?;
    }
    for m in &config.mappers {
        defined.mappers.insert(m.name.clone());
        let bytes = std::fs::read(&m.path)
            .with_context(|| format!("mapper `{}`: cannot read {}", m.name, m.path.display()))?;
        let sha = sha256_hex(&bytes);
        let versions = store.mapper_versions(&m.name).await?;
        let active = store
            .mappers()
            .await?
            .into_iter()
            .find(|e| e.name == m.name);
        let current = active.and_then(|a| versions.iter().find(|v| v.version == a.active_version));
        if current.is_none_or(|v| v.sha256 != sha) {
            store
                .add_mapper_version(&m.name, &bytes, &sha, "config", now)
                .await?;
        }
    }
    Ok(defined)
}

/// The bootstrap admin token: `WAYPASS_ADMIN_TOKEN`, or the file the
/// configuration's `admin_token_file` names. Only its hash is kept.
fn admin_token(config: &Config) -> anyhow::Result<Option<crate::secret::SecretHash>> {
    let token = match (
        std::env::var("WAYPASS_ADMIN_TOKEN").ok(),
        &config.admin_token_file,
    ) {
        (Some(t), _) => Some(t),
        (None, Some(path)) => Some(
            SecretSource::File(path)
                .read()
                .map_err(|e| anyhow::anyhow!("admin_token_file: {e}"))?,
        ),
        (None, None) => None,
    };
    match token {
        Some(t) if t.len() < 32 => anyhow::bail!("the admin token must be at least 32 characters"),
        Some(t) => Ok(Some(crate::secret::SecretHash::of(&t))),
        None => Ok(None),
    }
}
