//! Assembling a broker from its configuration.

use std::sync::Arc;

use anyhow::Context;

use super::config::Config;
use super::keys::KeySet;
use super::secret::SystemRandomTokens;
use super::store::MemoryStore;
use super::upstream::Upstream;
use super::{Broker, BrokerParts, Catalog, SystemClock};
use crate::mapper::{Runtime, RuntimeConfig};

impl Broker {
    /// Creates the data directory, loads or generates the signing keys,
    /// compiles (or loads cached) mappers, and checks that every connection's
    /// mapper and apps exist.
    pub fn from_config(config: &Config) -> anyhow::Result<Self> {
        let data = &config.data_dir;
        std::fs::create_dir_all(data)
            .with_context(|| format!("cannot create the data directory {}", data.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(data, std::fs::Permissions::from_mode(0o700))
                .with_context(|| format!("cannot restrict {}", data.display()))?;
        }
        let keys = Arc::new(KeySet::load_or_generate(&data.join("keys.json"))?);
        let runtime = Runtime::new(RuntimeConfig {
            cache_dir: Some(data.join("artifacts")),
            ..RuntimeConfig::default()
        })?;
        let mut catalog = Catalog {
            clients: config.clients()?,
            connections: config.connections()?,
            mappers: Default::default(),
        };
        for m in &config.mappers {
            let bytes = std::fs::read(&m.path).with_context(|| {
                format!("mapper `{}`: cannot read {}", m.name, m.path.display())
            })?;
            let loaded = runtime
                .load(&bytes)
                .map_err(|e| anyhow::anyhow!("mapper `{}` ({}): {e}", m.name, m.path.display()))?;
            catalog.mappers.insert(m.name.clone(), Arc::new(loaded));
        }
        for conn in catalog.connections.values() {
            let mapper = &conn.spec.options.mapper;
            anyhow::ensure!(
                catalog.mappers.contains_key(mapper),
                "connection `{}` uses mapper `{mapper}`, which is not among [[mappers]]",
                conn.name()
            );
            for client in &conn.spec.enabled_clients {
                anyhow::ensure!(
                    catalog.clients.contains_key(client),
                    "connection `{}` enables client `{client}`, which is not among [[clients]]",
                    conn.name()
                );
            }
        }
        Ok(Broker::new(BrokerParts {
            issuer: config.issuer.clone(),
            catalog,
            runtime: Arc::new(runtime),
            store: Arc::new(MemoryStore::default()),
            keys,
            clock: Arc::new(SystemClock),
            random: Arc::new(SystemRandomTokens::default()),
            upstream: Upstream::default(),
        }))
    }
}
