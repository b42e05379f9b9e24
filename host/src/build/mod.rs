//! `waypass mapper build` and `waypass action build`: a source directory
//! into a component of the [`World`] asked for (a profile mapper or a
//! post-login Action).
//!
//! The language is read off the directory: `Cargo.toml` (Rust, `rust`),
//! `app.py` (Python, `python`), `mapper.js` or `action.js` (JavaScript,
//! `javascript`). Each builder installs its pinned toolchain into a
//! project-owned cache on first use; nobody installs anything by hand.

mod javascript;
mod python;
mod scaffold;
mod snapshot;
mod stage;
mod toolchain;

pub use scaffold::{new_action, new_mapper};
pub use toolchain::MissingTool;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

/// The Rust target whose output is a WASI 0.2 component.
pub const RUST_TARGET: &str = "wasm32-wasip2";

/// The languages `mapper build` and `action build` know, detected from the
/// directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    Rust,
    Python,
    JavaScript,
}

/// The WIT worlds a component is built for: everything that differs
/// between building a mapper and building an Action is asked of this.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum World {
    /// `waypass:mapper/mapper` (`wit/mapper.wit`): a connection's profile mapper.
    Mapper,
    /// `waypass:action/post-login` (`wit/action/action.wit`): a post-login Action.
    Action,
}

impl World {
    /// What the component is, in messages.
    pub fn noun(self) -> &'static str {
        match self {
            World::Mapper => "mapper",
            World::Action => "post-login Action",
        }
    }

    /// The world's name inside its WIT package, as the guest toolchains take it.
    fn wit_name(self) -> &'static str {
        match self {
            World::Mapper => "mapper",
            World::Action => "post-login",
        }
    }

    /// The entry module of a JavaScript component of this world.
    fn js_entry(self) -> &'static str {
        match self {
            World::Mapper => "mapper.js",
            World::Action => "action.js",
        }
    }

    /// A WIT directory holding this world and what it imports, under
    /// `stage` if it has to be assembled. The action world imports the
    /// mapper package's `http` and `log`: componentize-js and componentize-py
    /// take one directory, so the mapper package goes into its `deps/` (the
    /// layout `wit-parser` resolves).
    fn wit_dir_in(self, stage: &Path) -> anyhow::Result<PathBuf> {
        let wit = wit_dir();
        match self {
            World::Mapper => wit
                .canonicalize()
                .with_context(|| format!("cannot read the WIT directory {}", wit.display())),
            World::Action => {
                let out = stage.join("wit");
                let deps = out.join("deps").join("mapper");
                std::fs::create_dir_all(&deps)
                    .with_context(|| format!("cannot create {}", deps.display()))?;
                copy_wit_files(&wit.join("action"), &out)?;
                copy_wit_files(&wit, &deps)?;
                Ok(out)
            }
        }
    }
}

/// Copies the `.wit` files directly in `from` (not its subdirectories) to `to`.
fn copy_wit_files(from: &Path, to: &Path) -> anyhow::Result<()> {
    for entry in
        std::fs::read_dir(from).with_context(|| format!("cannot read {}", from.display()))?
    {
        let path = entry
            .with_context(|| format!("cannot read {}", from.display()))?
            .path();
        if path.is_file() && path.extension().is_some_and(|e| e == "wit") {
            let target = to.join(path.file_name().unwrap_or_default());
            std::fs::copy(&path, &target)
                .with_context(|| format!("cannot copy {}", path.display()))?;
        }
    }
    Ok(())
}

/// Detects the language of the `world` component in `dir` from its files.
pub fn detect_language(dir: &Path, world: World) -> anyhow::Result<Language> {
    if dir.join("Cargo.toml").is_file() {
        return Ok(Language::Rust);
    }
    if dir.join("app.py").is_file() {
        return Ok(Language::Python);
    }
    if dir.join(world.js_entry()).is_file() {
        return Ok(Language::JavaScript);
    }
    bail!(
        "{} does not look like a {}: expected Cargo.toml (Rust), app.py (Python) or {} (JavaScript)",
        dir.display(),
        world.noun(),
        world.js_entry()
    )
}

/// Builds the `world` component in `dir` and returns the path of the
/// component (not yet checked against the world: the caller loads it).
pub fn build(dir: &Path, world: World) -> anyhow::Result<PathBuf> {
    match detect_language(dir, world)? {
        Language::Rust => build_rust(dir),
        Language::Python => python::build(dir, world),
        Language::JavaScript => javascript::build(dir, world),
    }
}

/// Builds the mapper in `dir` and returns the path of the component.
pub fn build_mapper(dir: &Path) -> anyhow::Result<PathBuf> {
    build(dir, World::Mapper)
}

/// The script engine's sources (`crate::script`), shipped with the sources.
pub fn script_engine_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/script-engine")
}

/// Where the built script engine and example mapper are kept, compiled
/// into the binary.
pub fn script_engine_assets() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("assets")
}

/// SHA-256 of everything the script engine is built from: its modules (not
/// its tests), the WIT files, the pinned componentize-js and the driver that
/// patches its bindings, the features left out, and the snapshot step (its
/// tool and its warm-up script). `host/assets/script-engine.inputs` records it for the shipped
/// engine, and a test compares the two, so a change to the engine's sources
/// cannot ship with a stale engine.
pub fn script_engine_inputs_digest() -> anyhow::Result<String> {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    let mut feed = |label: &str, bytes: &[u8]| {
        hasher.update((label.len() as u64).to_le_bytes());
        hasher.update(label.as_bytes());
        hasher.update((bytes.len() as u64).to_le_bytes());
        hasher.update(bytes);
    };
    feed(
        "componentize-js",
        javascript::componentize_js_version().as_bytes(),
    );
    feed("componentize-driver", javascript::DRIVER_SOURCE.as_bytes());
    feed("snapshot", snapshot::TRANSFORM.as_bytes());
    feed("warm-up", snapshot::WARM_UP_SCRIPT.as_bytes());
    feed(
        "disabled",
        javascript::SCRIPT_ENGINE_DISABLED_FEATURES
            .join(" ")
            .as_bytes(),
    );
    for (root, label, ext) in [
        (script_engine_dir(), "engine", "js"),
        (wit_dir(), "wit", "wit"),
    ] {
        let mut files: Vec<_> = std::fs::read_dir(&root)
            .with_context(|| format!("cannot read {}", root.display()))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == ext))
            .collect();
        files.sort();
        for file in files {
            let text =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let name = file.file_name().unwrap_or_default().to_string_lossy();
            feed(&format!("{label}/{name}"), &text);
        }
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Builds the script engine from [`script_engine_dir`] into
/// [`script_engine_assets`] (`script-engine.wasm` and the digest of its
/// inputs): componentize-js, then the host's own snapshot after one warm-up
/// call ([`snapshot`]). Run it after changing the engine: `waypass mapper build-script-engine`.
pub fn build_script_engine() -> anyhow::Result<PathBuf> {
    let digest = script_engine_inputs_digest()?;
    let built = javascript::build_with(
        &script_engine_dir(),
        World::Mapper,
        javascript::SCRIPT_ENGINE_DISABLED_FEATURES,
    )?;
    let built =
        std::fs::read(&built).with_context(|| format!("cannot read {}", built.display()))?;
    let snapshot = snapshot::after_one_check(&built)?;
    let assets = script_engine_assets();
    let wasm = assets.join("script-engine.wasm");
    std::fs::write(&wasm, snapshot).with_context(|| format!("cannot write {}", wasm.display()))?;
    std::fs::write(assets.join("script-engine.inputs"), format!("{digest}\n"))
        .context("cannot write script-engine.inputs")?;
    Ok(wasm)
}

/// The example mapper's sources: the seed port of Auth0's example script, in
/// Rust, which `quickstart` and `demo` run.
pub fn example_mapper_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/mappers/auth0-example")
}

/// The files the example mapper is built from, relative to the repository:
/// its crate, the Rust SDK, the guest workspace's manifest and lock file
/// (which pin wit-bindgen) and the WIT files. Build output and dot entries
/// are not sources.
fn example_mapper_inputs() -> anyhow::Result<Vec<(String, PathBuf)>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut inputs = Vec::new();
    for dir in ["plugins/mappers/auth0-example", "plugins/sdk/rust"] {
        let mut stack = vec![root.join(dir)];
        while let Some(dir) = stack.pop() {
            for entry in
                std::fs::read_dir(&dir).with_context(|| format!("cannot read {}", dir.display()))?
            {
                let path = entry
                    .with_context(|| format!("cannot read {}", dir.display()))?
                    .path();
                let name = path.file_name().unwrap_or_default().to_string_lossy();
                if name == "target" || name.starts_with('.') {
                    continue;
                }
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|e| e == "rs" || e == "toml") {
                    let rel = path.strip_prefix(&root).unwrap_or(&path);
                    inputs.push((slashed(rel), path.clone()));
                }
            }
        }
    }
    for file in ["plugins/Cargo.toml", "plugins/Cargo.lock"] {
        inputs.push((file.to_owned(), root.join(file)));
    }
    let wit = wit_dir();
    for entry in
        std::fs::read_dir(&wit).with_context(|| format!("cannot read {}", wit.display()))?
    {
        let path = entry
            .with_context(|| format!("cannot read {}", wit.display()))?
            .path();
        if path.is_file() && path.extension().is_some_and(|e| e == "wit") {
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            inputs.push((format!("wit/{name}"), path.clone()));
        }
    }
    inputs.sort();
    Ok(inputs)
}

/// A relative path with `/` between its parts on every platform, so the
/// digest is the same everywhere.
fn slashed(rel: &Path) -> String {
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

/// SHA-256 of everything the example mapper is built from
/// ([`example_mapper_inputs`]): `host/assets/auth0-example.inputs` records
/// it for the component shipped in the binary, and a test compares the two,
/// so a change to the example, the SDK or the world cannot ship with a stale
/// component. The Rust compiler is not an input: it is not pinned, and a
/// newer one builds the same sources into an equivalent component.
pub fn example_mapper_inputs_digest() -> anyhow::Result<String> {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    for (label, path) in example_mapper_inputs()? {
        let bytes =
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        hasher.update((label.len() as u64).to_le_bytes());
        hasher.update(label.as_bytes());
        hasher.update((bytes.len() as u64).to_le_bytes());
        hasher.update(&bytes);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Builds the example mapper from [`example_mapper_dir`] into
/// [`script_engine_assets`] (`auth0-example.wasm` and the digest of its
/// inputs), where the binary takes it from. Run it after changing the
/// example, the Rust SDK or the world: `waypass mapper build-example-mapper`.
pub fn build_example_mapper() -> anyhow::Result<PathBuf> {
    let digest = example_mapper_inputs_digest()?;
    let built = build_rust(&example_mapper_dir())?;
    let assets = script_engine_assets();
    let wasm = assets.join("auth0-example.wasm");
    std::fs::copy(&built, &wasm).with_context(|| format!("cannot write {}", wasm.display()))?;
    std::fs::write(assets.join("auth0-example.inputs"), format!("{digest}\n"))
        .context("cannot write auth0-example.inputs")?;
    Ok(wasm)
}

/// The WIT directory of the `waypass:mapper` world, shipped with the sources.
pub fn wit_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../wit")
}

/// Waypass's cache: `$XDG_CACHE_HOME/waypass`, else `~/.cache/waypass`,
/// else under the temporary directory.
pub fn cache_home() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("waypass")
}

/// Where pinned guest toolchains are installed: `toolchains` in
/// [`cache_home`].
pub fn toolchain_dir() -> PathBuf {
    cache_home().join("toolchains")
}

/// Installs the `wasm32-wasip2` standard library with rustup if it is
/// missing; says what to install when there is no Rust or no rustup.
pub fn ensure_rust_target() -> anyhow::Result<()> {
    if toolchain::rust_target_installed(RUST_TARGET)? {
        return Ok(());
    }
    eprintln!("installing the Rust target {RUST_TARGET} (once)…");
    let status = match Command::new("rustup")
        .args(["target", "add", RUST_TARGET])
        .status()
    {
        Ok(status) => status,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(MissingTool::RustTarget.into());
        }
        Err(e) => return Err(e).context("cannot run rustup"),
    };
    if !status.success() {
        bail!("`rustup target add {RUST_TARGET}` failed ({status})");
    }
    Ok(())
}

fn build_rust(dir: &Path) -> anyhow::Result<PathBuf> {
    toolchain::check_cargo()?;
    ensure_rust_target()?;
    let manifest = dir
        .join("Cargo.toml")
        .canonicalize()
        .with_context(|| format!("cannot read {}/Cargo.toml", dir.display()))?;
    let output = Command::new(toolchain::cargo())
        .args(["build", "--release", "--target", RUST_TARGET])
        .arg("--manifest-path")
        .arg(&manifest)
        .arg("--message-format=json-render-diagnostics")
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run cargo")?;
    if !output.status.success() {
        bail!(
            "cargo build failed for {} ({})",
            dir.display(),
            output.status
        );
    }
    wasm_artifact(&String::from_utf8_lossy(&output.stdout), &manifest).with_context(|| {
        format!(
            "cargo built {} but produced no .wasm: is it a `cdylib` crate?",
            dir.display()
        )
    })
}

/// The `.wasm` that cargo's JSON messages report for the package at `manifest`.
fn wasm_artifact(messages: &str, manifest: &Path) -> Option<PathBuf> {
    messages
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact")
        .filter(|m| m["manifest_path"].as_str().map(Path::new) == Some(manifest))
        .flat_map(|m| {
            m["filenames"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter_map(|f| f.as_str().map(PathBuf::from))
        })
        .rfind(|f| f.extension().is_some_and(|e| e == "wasm"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wasm_artifact_of_the_built_package_is_found_among_cargo_messages() {
        let messages = r#"{"reason":"compiler-artifact","manifest_path":"/dep/Cargo.toml","filenames":["/t/libdep.rlib"]}
{"reason":"compiler-artifact","manifest_path":"/m/Cargo.toml","filenames":["/t/wasm32-wasip2/release/m.wasm"]}
{"reason":"build-finished","success":true}"#;
        assert_eq!(
            wasm_artifact(messages, Path::new("/m/Cargo.toml")),
            Some(PathBuf::from("/t/wasm32-wasip2/release/m.wasm"))
        );
        assert_eq!(
            wasm_artifact(messages, Path::new("/other/Cargo.toml")),
            None
        );
    }

    #[test]
    fn directories_without_a_known_project_file_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = detect_language(dir.path(), World::Mapper).unwrap_err();
        assert!(
            err.to_string().contains("does not look like a mapper"),
            "{err}"
        );
        let err = detect_language(dir.path(), World::Action).unwrap_err();
        assert!(
            err.to_string()
                .contains("does not look like a post-login Action: expected Cargo.toml (Rust), app.py (Python) or action.js"),
            "{err}"
        );
    }
}
