//! Compiled components on disk, keyed by content hash and engine compatibility.
//!
//! Compiling a component takes from milliseconds (Rust) to seconds (Python,
//! JavaScript); loading the compiled artifact is an `mmap`. The key includes
//! the engine's compatibility hash (wasmtime version, target, settings), so an
//! upgraded or reconfigured host never loads an artifact it did not make.

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// A directory of `<sha256>-<engine>.cwasm` files.
#[derive(Debug, Clone)]
pub struct ArtifactCache {
    dir: PathBuf,
    engine_tag: String,
}

impl ArtifactCache {
    /// Opens (creating, owner-only) the cache directory for `engine`.
    pub fn open(dir: impl Into<PathBuf>, engine: &Engine) -> std::io::Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
        }
        Ok(Self {
            dir,
            engine_tag: engine_tag(engine),
        })
    }

    fn path(&self, digest: &str) -> PathBuf {
        self.dir.join(format!("{digest}-{}.cwasm", self.engine_tag))
    }

    /// The compiled component for `digest`, if cached and loadable. An
    /// artifact that fails to load is removed, so the caller recompiles.
    pub fn load(&self, engine: &Engine, digest: &str) -> Option<Component> {
        let path = self.path(digest);
        if !path.exists() {
            return None;
        }
        // SAFETY: `deserialize_file` trusts its input to be wasmtime's own
        // output. Only this process writes this owner-only directory, and
        // the engine tag in the name rules out another engine's artifacts.
        match unsafe { Component::deserialize_file(engine, &path) } {
            Ok(component) => Some(component),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "discarding unloadable compiled mapper");
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    /// Stores a compiled artifact atomically (write, then rename) and loads
    /// it back from the file (a file mapping the kernel can share and page
    /// out). `None` if it could not be written or read back: a full disk
    /// must not fail a registration, the caller runs from memory.
    ///
    /// Only artifacts of components that passed every check are stored, so
    /// a refused upload leaves nothing behind.
    pub fn store(&self, engine: &Engine, digest: &str, compiled: &[u8]) -> Option<Component> {
        if let Err(e) = write_atomically(&self.dir, &self.path(digest), compiled) {
            tracing::warn!(dir = %self.dir.display(), error = %e, "cannot write compiled mapper to the cache");
            return None;
        }
        self.load(engine, digest)
    }
}

/// The hex SHA-256 of `bytes`: the mapper version's identity.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn engine_tag(engine: &Engine) -> String {
    struct ShaHasher(Sha256);
    impl Hasher for ShaHasher {
        fn finish(&self) -> u64 {
            0 // unused: the digest is read from the inner state
        }
        fn write(&mut self, bytes: &[u8]) {
            self.0.update(bytes);
        }
    }
    let mut hasher = ShaHasher(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut hasher);
    hex::encode(&hasher.0.finalize()[..8])
}

/// Writes `bytes` to `path` through a temporary file in `dir` and a rename,
/// so a reader (or a mapping of the old file) never sees half a file. On any
/// failure the temporary file is removed: a full disk must not also fill the
/// cache directory with `.tmp-*` leftovers.
fn write_atomically(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let (tmp_path, mut file) = tempfile_in(dir)?;
    let written = file
        .write_all(bytes)
        .and_then(|()| file.sync_all())
        .and_then(|()| std::fs::rename(&tmp_path, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp_path);
    }
    written
}

/// A uniquely named file in `dir`, created exclusively.
fn tempfile_in(dir: &Path) -> std::io::Result<(PathBuf, std::fs::File)> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let path = dir.join(format!(".tmp-{}-{n}", std::process::id()));
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)?;
    Ok((path, file))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_write_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        // A rename onto a non-empty directory fails after the write succeeded.
        let target = dir.path().join("artifact.cwasm");
        std::fs::create_dir(&target).expect("mkdir");
        std::fs::write(target.join("occupied"), b"x").expect("write");
        assert!(write_atomically(dir.path(), &target, b"compiled").is_err());
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("read dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, ["artifact.cwasm"]);
    }
}
