//! What the Python and JavaScript builders share: installing a toolchain
//! once however many builds race for it, where builds go, and a throwaway
//! staging directory holding one build's sources and output, so nothing is
//! ever written into the mapper's source tree.

use std::fs::{self, File, TryLockError};
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use sha2::{Digest as _, Sha256};

/// Directories nested deeper than this are refused (a symlink loop).
const MAX_COPY_DEPTH: usize = 32;

/// Builds the mapper at `dir` (canonical) with `tool` into the build
/// directory of its `language`: `build(stage, staged_wasm)` fills the stage
/// and writes the component to `staged_wasm`, which is checked and renamed
/// into place. Returns the component's path.
pub(super) fn build_staged(
    dir: &Path,
    language: &str,
    tool: &str,
    build: impl FnOnce(&Path, &Path) -> anyhow::Result<()>,
) -> anyhow::Result<PathBuf> {
    let out_dir = build_dir(&builds_root(&super::toolchain_dir(), language), dir);
    fs::create_dir_all(&out_dir).with_context(|| format!("cannot create {}", out_dir.display()))?;
    let stage = Stage::create(&out_dir)?;
    let staged_wasm = stage.path.join("mapper.wasm");
    build(&stage.path, &staged_wasm)?;
    check_component(&staged_wasm, tool)?;
    let wasm = out_dir.join(format!("{}.wasm", mapper_name(dir)));
    // A rename, so a concurrent build or reader never sees half a file.
    fs::rename(&staged_wasm, &wasm)
        .with_context(|| format!("cannot move the component to {}", wasm.display()))?;
    Ok(wasm)
}

/// Returns what `ready` finds, or else installs `what` with the file `lock`
/// held, so that builds racing to install it install it once: whoever waits
/// for the lock checks `ready` again before installing.
pub(super) fn install_once<T>(
    lock: &Path,
    what: &str,
    ready: impl Fn() -> Option<T>,
    install: impl FnOnce() -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    if let Some(found) = ready() {
        return Ok(found);
    }
    if let Some(parent) = lock.parent() {
        fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let file = File::create(lock).with_context(|| format!("cannot create {}", lock.display()))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            eprintln!("waiting for another build installing {what}…");
            file.lock()
                .with_context(|| format!("cannot lock {}", lock.display()))?;
        }
        Err(TryLockError::Error(e)) => {
            return Err(e).with_context(|| format!("cannot lock {}", lock.display()));
        }
    }
    // Whoever held the lock may have finished the job.
    if let Some(found) = ready() {
        return Ok(found);
    }
    install()
    // The lock is released when `file` is dropped.
}

/// Where a language's builds go: `builds/<language>` next to the toolchains.
fn builds_root(toolchain_dir: &Path, language: &str) -> PathBuf {
    toolchain_dir
        .parent()
        .unwrap_or(toolchain_dir)
        .join("builds")
        .join(language)
}

/// The build directory of the mapper at `dir` (canonical): its name for
/// humans, a digest of its path so two mappers of the same name never share.
fn build_dir(root: &Path, dir: &Path) -> PathBuf {
    let digest = Sha256::digest(dir.as_os_str().as_encoded_bytes());
    root.join(format!(
        "{}-{}",
        mapper_name(dir),
        &hex::encode(digest)[..16]
    ))
}

/// The directory's name, reduced to characters safe in a file name.
fn mapper_name(dir: &Path) -> String {
    let name: String = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if name.is_empty() {
        "mapper".into()
    } else {
        name
    }
}

/// A suffix no other staging or install directory of this process uses.
pub(super) fn unique_suffix() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{nanos}-{}", COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// A uniquely named directory for one build's sources and output, removed
/// when the build ends, however it ends.
struct Stage {
    path: PathBuf,
}

impl Stage {
    fn create(out_dir: &Path) -> anyhow::Result<Self> {
        let path = out_dir.join(format!("stage-{}-{}", std::process::id(), unique_suffix()));
        fs::create_dir(&path).with_context(|| format!("cannot create {}", path.display()))?;
        Ok(Self { path })
    }
}

impl Drop for Stage {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// Copies the sources under `from` to `to`, following symlinks and leaving
/// out the entries `skipped` names.
pub(super) fn copy_sources(
    from: &Path,
    to: &Path,
    depth: usize,
    skipped: &dyn Fn(&str) -> bool,
) -> anyhow::Result<()> {
    if depth > MAX_COPY_DEPTH {
        bail!(
            "{} is nested more than {MAX_COPY_DEPTH} directories deep (a symlink loop?)",
            from.display()
        );
    }
    fs::create_dir_all(to).with_context(|| format!("cannot create {}", to.display()))?;
    for entry in fs::read_dir(from).with_context(|| format!("cannot read {}", from.display()))? {
        let entry = entry.with_context(|| format!("cannot read {}", from.display()))?;
        let name = entry.file_name();
        if skipped(&name.to_string_lossy()) {
            continue;
        }
        let source = entry.path();
        let target = to.join(&name);
        let meta =
            fs::metadata(&source).with_context(|| format!("cannot read {}", source.display()))?;
        if meta.is_dir() {
            copy_sources(&source, &target, depth + 1, skipped)?;
        } else if meta.is_file() {
            fs::copy(&source, &target)
                .with_context(|| format!("cannot copy {}", source.display()))?;
        }
    }
    Ok(())
}

/// Fails unless the file `tool` wrote at `path` starts like a component.
fn check_component(path: &Path, tool: &str) -> anyhow::Result<()> {
    let mut preamble = [0u8; 8];
    File::open(path)
        .and_then(|mut f| f.read_exact(&mut preamble))
        .with_context(|| format!("{tool} wrote no usable {}", path.display()))?;
    if !is_component_preamble(&preamble) {
        bail!(
            "{tool} wrote {}, but it is not a WebAssembly component",
            path.display()
        );
    }
    Ok(())
}

/// `\0asm`, then version and layer: layer 1 is a component, 0 a core module.
fn is_component_preamble(preamble: &[u8; 8]) -> bool {
    preamble[..4] == *b"\0asm" && preamble[6..8] == [1, 0]
}

/// Every file under `root`, relative to it, sorted (for tests of staging).
#[cfg(test)]
pub(super) fn files_under(root: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(dir).expect("read_dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.push(path.strip_prefix(root).expect("prefix").to_path_buf());
            }
        }
    }
    files.sort();
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_go_next_to_the_toolchains_keyed_by_the_mapper_path() {
        let root = builds_root(Path::new("/cache/waypass/toolchains"), "python");
        assert_eq!(root, Path::new("/cache/waypass/builds/python"));
        let a = build_dir(&root, Path::new("/src/one/acme"));
        let b = build_dir(&root, Path::new("/src/two/acme"));
        assert_ne!(a, b, "same name, different mappers");
        assert_eq!(a, build_dir(&root, Path::new("/src/one/acme")));
        assert!(a.starts_with(&root));
        assert!(
            a.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("acme-")),
            "{}",
            a.display()
        );
    }

    #[test]
    fn mapper_names_are_safe_file_names() {
        assert_eq!(
            mapper_name(Path::new("/x/auth0-example-py")),
            "auth0-example-py"
        );
        assert_eq!(mapper_name(Path::new("/x/my mapper!")), "my_mapper_");
        assert_eq!(mapper_name(Path::new("/")), "mapper");
    }

    #[test]
    fn a_stage_is_removed_when_the_build_ends() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = Stage::create(dir.path()).expect("stage");
        let second = Stage::create(dir.path()).expect("stage");
        assert_ne!(first.path, second.path);
        let path = first.path.clone();
        assert!(path.is_dir());
        drop(first);
        assert!(!path.exists());
    }

    #[test]
    fn only_component_preambles_pass() {
        assert!(is_component_preamble(b"\0asm\x0d\0\x01\0"));
        assert!(!is_component_preamble(b"\0asm\x01\0\0\0"), "core module");
        assert!(!is_component_preamble(b"PK\x03\x04\0\0\0\0"));
        let dir = tempfile::tempdir().expect("tempdir");
        let core = dir.path().join("core.wasm");
        fs::write(&core, b"\0asm\x01\0\0\0").expect("write");
        assert!(check_component(&core, "tool").is_err());
        assert!(check_component(&dir.path().join("missing.wasm"), "tool").is_err());
    }
}
