//! A watched mappers directory: dropping `NAME.wasm` into it registers or
//! swaps mapper `NAME`, exactly as `PUT /api/v2/mappers/NAME` would.
//!
//! Polled (no platform file-notification API, so it works on any file
//! system, network mounts included): a file is read once its size and
//! modification time have held still for one poll, so a half-copied file
//! is never registered; it becomes a new version only when its SHA-256
//! differs from the active version's.
//!
//! The directory is scanned and files are read on a blocking thread, never
//! on an async worker (a network mount can take seconds to answer).
//!
//! Only regular files count, and only up to the upload limit
//! ([`MAX_MAPPER_BYTES`]): a symbolic link is ignored (it could lead
//! anywhere the broker can read, and what it names can change under it),
//! as is a larger file (it would be read whole into memory). Each is
//! logged once, saying why. Mappers the configuration file owns are
//! refused here as in the API.

use std::collections::HashMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::MAX_MAPPER_BYTES;
use crate::broker::Broker;
use crate::model::ConnectionName;

/// How often the directory is scanned.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// What a scan saw of one file.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Seen {
    len: u64,
    modified: Option<SystemTime>,
    symlink: bool,
}

/// What one poll did with a file that had held still.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Registered as this version of the mapper.
    Registered(u32),
    /// The same bytes as the active version: nothing to do.
    Unchanged,
    /// Not read: the reason.
    Ignored(String),
    /// Read and refused, as the API would have refused it.
    Refused { status: u16, message: String },
}

/// The directory's state between polls.
pub struct Watcher {
    dir: PathBuf,
    /// What the previous scan saw.
    last: HashMap<PathBuf, Seen>,
    /// What was acted on, so a file is handled (and logged) once per change.
    done: HashMap<PathBuf, Seen>,
}

impl Watcher {
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            last: HashMap::new(),
            done: HashMap::new(),
        }
    }

    /// Scans the directory once and acts on every `.wasm` file that held
    /// still since the previous scan and changed since it was last acted
    /// on; returns what happened to each (each is also logged).
    pub async fn poll(&mut self, broker: &Broker) -> Vec<(PathBuf, Outcome)> {
        let mut outcomes = Vec::new();
        let dir = self.dir.clone();
        let scanned = tokio::task::spawn_blocking(move || scan(&dir))
            .await
            .unwrap_or_default();
        for (path, seen) in scanned {
            let stable = self.last.get(&path) == Some(&seen);
            self.last.insert(path.clone(), seen);
            if stable && self.done.get(&path) != Some(&seen) {
                self.done.insert(path.clone(), seen);
                if let Some(outcome) = handle(broker, &path, seen).await {
                    log(&path, &outcome);
                    outcomes.push((path, outcome));
                }
            }
        }
        outcomes
    }
}

/// Watches `dir` until the task is dropped.
pub async fn watch(broker: Arc<Broker>, dir: PathBuf) {
    let mut watcher = Watcher::new(dir);
    loop {
        watcher.poll(&broker).await;
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// The `.wasm` entries of `dir` that are regular files or symbolic links
/// (the link itself, not followed: `symlink_metadata`).
fn scan(dir: &Path) -> Vec<(PathBuf, Seen)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "wasm"))
        .filter_map(|p| {
            let meta = std::fs::symlink_metadata(&p).ok()?;
            let symlink = meta.file_type().is_symlink();
            (symlink || meta.is_file()).then(|| {
                let seen = Seen {
                    len: meta.len(),
                    modified: meta.modified().ok(),
                    symlink,
                };
                (p, seen)
            })
        })
        .collect()
}

/// Registers the file at `path`, or says why not; `None` for a file whose
/// name is not a mapper's (logged here).
async fn handle(broker: &Broker, path: &Path, seen: Seen) -> Option<Outcome> {
    let name = path.file_stem().and_then(|s| s.to_str())?;
    if let Err(e) = ConnectionName::parse(name) {
        tracing::warn!(path = %path.display(), "ignoring mapper file: {e}");
        return None;
    }
    if seen.symlink {
        return Some(Outcome::Ignored(
            "it is a symbolic link; copy the component into the directory instead".into(),
        ));
    }
    let owned = path.to_owned();
    let read = tokio::task::spawn_blocking(move || read_regular_file(&owned))
        .await
        .unwrap_or_else(|e| Err(format!("reading it failed: {e}")));
    let bytes = match read {
        Ok(bytes) => bytes,
        Err(reason) => return Some(Outcome::Ignored(reason)),
    };
    let sha = crate::mapper::sha256_hex(&bytes);
    if broker.active_mapper_sha(name).await.as_deref() == Some(sha.as_str()) {
        return Some(Outcome::Unchanged);
    }
    Some(
        match broker
            .register_mapper(name, bytes.into(), "mappers-dir")
            .await
        {
            Ok(v) => Outcome::Registered(v.version),
            Err(e) => Outcome::Refused {
                status: e.status,
                message: e.message,
            },
        },
    )
}

/// Reads `path` if it is a regular file no larger than
/// [`MAX_MAPPER_BYTES`], checking the file it opened is the one it looked
/// at (a symbolic link swapped in between is not followed), and reading at
/// most one byte past the limit (a file growing meanwhile is not read whole).
fn read_regular_file(path: &Path) -> Result<Vec<u8>, String> {
    let too_large = || format!("it is larger than the upload limit of {MAX_MAPPER_BYTES} bytes");
    let looked = std::fs::symlink_metadata(path).map_err(|e| format!("cannot read it: {e}"))?;
    if looked.file_type().is_symlink() {
        return Err("it is a symbolic link; copy the component into the directory instead".into());
    }
    if looked.len() > MAX_MAPPER_BYTES as u64 {
        return Err(too_large());
    }
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read it: {e}"))?;
    let opened = file
        .metadata()
        .map_err(|e| format!("cannot read it: {e}"))?;
    if !opened.is_file() || !same_file(&looked, &opened) {
        return Err("it changed while being opened (not a regular file any more)".into());
    }
    let mut bytes = Vec::new();
    file.take(MAX_MAPPER_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read it: {e}"))?;
    if bytes.len() > MAX_MAPPER_BYTES {
        return Err(too_large());
    }
    Ok(bytes)
}

#[cfg(unix)]
fn same_file(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    (a.dev(), a.ino()) == (b.dev(), b.ino())
}

#[cfg(not(unix))]
fn same_file(_: &std::fs::Metadata, _: &std::fs::Metadata) -> bool {
    true
}

fn log(path: &Path, outcome: &Outcome) {
    let path = path.display();
    match outcome {
        Outcome::Registered(version) => {
            tracing::info!(path = %path, version, "registered mapper from the watched directory")
        }
        Outcome::Unchanged => {}
        Outcome::Ignored(reason) => {
            tracing::warn!(path = %path, "ignoring mapper file: {reason}")
        }
        Outcome::Refused { status, message } => {
            tracing::warn!(path = %path, status, "mapper file refused: {message}")
        }
    }
}

impl Broker {
    /// SHA-256 of the active version of mapper `name` in the store, if
    /// registered.
    async fn active_mapper_sha(&self, name: &str) -> Option<String> {
        let active = self
            .store
            .mappers()
            .await
            .ok()?
            .into_iter()
            .find(|m| m.name == name)?
            .active_version;
        let versions = self.store.mapper_versions(name).await.ok()?;
        versions
            .into_iter()
            .find(|v| v.version == active)
            .map(|v| v.sha256)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_regular_file_within_the_limit_is_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("m.wasm");
        std::fs::write(&path, b"\0asm").expect("write");
        assert_eq!(read_regular_file(&path), Ok(b"\0asm".to_vec()));
    }

    #[cfg(unix)]
    #[test]
    fn a_symbolic_link_is_not_followed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("elsewhere.bin");
        std::fs::write(&target, b"\0asm").expect("write");
        let link = dir.path().join("m.wasm");
        std::os::unix::fs::symlink(&target, &link).expect("symlink");
        let err = read_regular_file(&link).expect_err("refused");
        assert!(err.contains("symbolic link"), "{err}");
        let seen = scan(dir.path());
        assert!(
            seen.iter().all(|(p, s)| p != &link || s.symlink),
            "the scan sees the link as a link"
        );
    }

    #[test]
    fn a_file_over_the_upload_limit_is_not_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("big.wasm");
        // Sparse: the limit is 64 MiB, no need to write them.
        std::fs::File::create(&path)
            .and_then(|f| f.set_len(MAX_MAPPER_BYTES as u64 + 1))
            .expect("sparse file");
        let err = read_regular_file(&path).expect_err("refused");
        assert!(err.contains("larger than the upload limit"), "{err}");
    }
}
