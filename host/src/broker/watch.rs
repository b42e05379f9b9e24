//! A watched mappers directory: dropping `NAME.wasm` into it registers or
//! swaps mapper `NAME`, exactly as `PUT /api/v2/mappers/NAME` would.
//!
//! Polled (no platform file-notification API, so it works on any file
//! system, network mounts included): a file is read once its size and
//! modification time have held still for one poll, so a half-copied file
//! is never registered; it becomes a new version only when its SHA-256
//! differs from the active version's.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::Broker;
use super::model::ConnectionName;

/// How often the directory is scanned.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// What a scan saw of one file.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Seen {
    len: u64,
    modified: Option<SystemTime>,
}

/// Watches `dir` until the task is dropped.
pub async fn watch(broker: Arc<Broker>, dir: PathBuf) {
    let mut last: HashMap<PathBuf, Seen> = HashMap::new();
    let mut done: HashMap<PathBuf, Seen> = HashMap::new();
    loop {
        for (path, seen) in scan(&dir) {
            let stable = last.get(&path) == Some(&seen);
            last.insert(path.clone(), seen);
            if stable && done.get(&path) != Some(&seen) {
                done.insert(path.clone(), seen);
                register(&broker, &path).await;
            }
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

fn scan(dir: &Path) -> Vec<(PathBuf, Seen)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "wasm"))
        .filter_map(|p| {
            let meta = std::fs::metadata(&p).ok()?;
            meta.is_file().then(|| {
                let seen = Seen {
                    len: meta.len(),
                    modified: meta.modified().ok(),
                };
                (p, seen)
            })
        })
        .collect()
}

async fn register(broker: &Broker, path: &Path) {
    let Some(name) = path.file_stem().and_then(|s| s.to_str()) else {
        return;
    };
    if let Err(e) = ConnectionName::parse(name) {
        tracing::warn!(path = %path.display(), "ignoring mapper file: {e}");
        return;
    }
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read mapper file");
            return;
        }
    };
    let sha = crate::mapper::sha256_hex(&bytes);
    if broker.active_mapper_sha(name).await.as_deref() == Some(sha.as_str()) {
        return;
    }
    match broker
        .register_mapper(name, bytes.into(), "mappers-dir")
        .await
    {
        Ok(v) => {
            tracing::info!(path = %path.display(), version = v.version, "registered mapper from the watched directory")
        }
        Err(e) => {
            tracing::warn!(path = %path.display(), status = e.status, "mapper file refused: {}", e.message)
        }
    }
}

impl Broker {
    /// SHA-256 of the active version of mapper `name`, if registered.
    async fn active_mapper_sha(&self, name: &str) -> Option<String> {
        let active = self.catalog_read().mappers.active_version(name)?;
        let versions = self.store.mapper_versions(name).await.ok()?;
        versions
            .into_iter()
            .find(|v| v.version == active)
            .map(|v| v.sha256)
    }
}
