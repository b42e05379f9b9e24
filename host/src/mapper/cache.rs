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

    pub fn dir(&self) -> &Path {
        &self.dir
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

    /// Compiles `bytes` and stores the artifact atomically (write, then rename).
    pub fn compile_and_store(
        &self,
        engine: &Engine,
        digest: &str,
        bytes: &[u8],
    ) -> Result<Component, CompileError> {
        let compiled = engine
            .precompile_component(bytes)
            .map_err(|e| CompileError::Compile(format!("{e:#}")))?;
        let path = self.path(digest);
        let write = || -> std::io::Result<()> {
            let mut tmp = tempfile_in(&self.dir)?;
            tmp.1.write_all(&compiled)?;
            tmp.1.sync_all()?;
            std::fs::rename(&tmp.0, &path)
        };
        if let Err(e) = write() {
            // A full disk must not fail a registration: run from memory.
            tracing::warn!(dir = %self.dir.display(), error = %e, "cannot write compiled mapper to the cache");
            // SAFETY: `compiled` came from `precompile_component` on this engine just now.
            return unsafe { Component::deserialize(engine, &compiled) }
                .map_err(|e| CompileError::Compile(format!("{e:#}")));
        }
        self.load(engine, digest).ok_or_else(|| {
            CompileError::Compile("the freshly compiled artifact did not load".into())
        })
    }
}

/// Compilation failed: the bytes are not valid WebAssembly for this engine.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    #[error("{0}")]
    Compile(String),
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
