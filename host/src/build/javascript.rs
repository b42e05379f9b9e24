//! JavaScript mappers and Actions: a directory with `mapper.js` (or
//! `action.js`), built with componentize-js.
//!
//! componentize-js is pinned ([`COMPONENTIZE_JS_VERSION`]) and installed from
//! npm on first use under [`super::toolchain_dir`], with the machine's `node`
//! and `npm` (Node.js 20 or newer). npm installs into a staging directory that
//! is renamed into place once complete, so a directory under its final name is
//! always a finished install; a lock file makes two builds racing install it
//! once. Its own CLI does the build (jco's `componentize` cannot read a WIT
//! directory).
//!
//! The mapper's directory and the SDK (`plugins/sdk/js/waypass-mapper.js`,
//! and for an Action `waypass-action.js` beside it, compiled into this
//! binary) are copied into a staging directory, so `mapper.js` imports the
//! SDK as `./waypass-mapper.js` (`action.js` as `./waypass-action.js`,
//! which re-exports the HTTP helpers of the former); componentize-js
//! snapshots every module the entry imports by relative path. The component
//! lands in a build directory keyed by the mapper directory's path, under the
//! same cache; the source tree stays clean.
//!
//! The engine is built without stdio, clocks and randomness (a mapper logs
//! through the world's `log`, and neither needs the time nor entropy; the
//! host bounds time itself), and without `fetch-event` (a mapper serves no
//! requests). `http` stays: it is what `fetch()` runs on
//! (`wasi:http/outgoing-handler`, under the same egress policy).

use super::World;
use super::stage::{build_staged, copy_sources, install_once, unique_suffix};
use std::fs::{self, File};
use std::io::{self};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

/// The componentize-js release mappers are built with.
const COMPONENTIZE_JS_VERSION: &str = "0.23.0";
/// Its npm package.
const COMPONENTIZE_JS_PACKAGE: &str = "@bytecodealliance/componentize-js";
/// The oldest Node.js componentize-js 0.23's dependencies run on (`commander`,
/// `oxc-parser` and jco's filesystem bindings declare `node >= 20`).
const MIN_NODE_MAJOR: u32 = 20;

/// The mapper SDK's file name next to the entry, and its text.
const SDK_FILE: &str = "waypass-mapper.js";
const SDK_SOURCE: &str = include_str!("../../../plugins/sdk/js/waypass-mapper.js");
/// The Action SDK's file name next to the entry, and its text (it imports
/// the mapper SDK's HTTP helpers from `./waypass-mapper.js`).
const ACTION_SDK_FILE: &str = "waypass-action.js";
const ACTION_SDK_SOURCE: &str = include_str!("../../../plugins/sdk/js/waypass-action.js");

/// The driver that runs componentize-js's CLI with its generated bindings
/// patched (why, in the file), staged beside the sources.
const DRIVER_FILE: &str = "componentize.mjs";
pub(super) const DRIVER_SOURCE: &str = include_str!("componentize.mjs");

/// The SDK files (name, text) staged next to the entry of a `world` component.
fn sdk_files(world: World) -> &'static [(&'static str, &'static str)] {
    match world {
        World::Mapper => &[(SDK_FILE, SDK_SOURCE)],
        World::Action => &[(SDK_FILE, SDK_SOURCE), (ACTION_SDK_FILE, ACTION_SDK_SOURCE)],
    }
}

/// componentize-js features left out of the engine (its defaults are
/// `stdio random clocks http fetch-event`). Each one dropped is WASI imports
/// the component does not have: without these, it imports only the world,
/// `wasi:io` and `wasi:http` (for `fetch()`).
const DISABLED_FEATURES: &[&str] = &["stdio", "random", "clocks", "fetch-event"];

/// Features left out of the script engine (`crate::script`). It keeps the
/// clocks (scripts check `exp` against `Date.now()` and use timers) and
/// randomness (`Math.random`, `crypto.getRandomValues`); it writes its
/// `console` into the world's `log`, so it has no stdio either.
pub(super) const SCRIPT_ENGINE_DISABLED_FEATURES: &[&str] = &["stdio", "fetch-event"];

/// The pinned componentize-js version, for digests of what a build used.
pub(super) fn componentize_js_version() -> &'static str {
    COMPONENTIZE_JS_VERSION
}

/// Entries of a mapper directory left out of the staged copy: build output,
/// dependencies (componentize-js resolves relative imports only) and version
/// control (dot entries too).
const SKIPPED_NAMES: &[&str] = &["target", "build", "dist", "node_modules"];

/// How much of npm's output an install error quotes.
const NPM_OUTPUT_TAIL_LINES: usize = 25;

#[cfg(windows)]
const NPM: &str = "npm.cmd";
#[cfg(not(windows))]
const NPM: &str = "npm";
const NODE: &str = "node";

pub(super) fn build(dir: &Path, world: World) -> anyhow::Result<PathBuf> {
    build_with(dir, world, DISABLED_FEATURES)
}

/// Builds the JavaScript `world` component in `dir` without the
/// componentize-js features `disabled`.
pub(super) fn build_with(dir: &Path, world: World, disabled: &[&str]) -> anyhow::Result<PathBuf> {
    let dir = dir
        .canonicalize()
        .with_context(|| format!("cannot read {}", dir.display()))?;
    let toolchain = Toolchain::in_dir(&super::toolchain_dir());
    let cli = toolchain.ensure()?;

    build_staged(
        &dir,
        "javascript",
        "componentize-js",
        |stage, staged_wasm| {
            let wit = world.wit_dir_in(stage)?;
            let src = stage.join("src");
            copy_sources(&dir, &src, 0, &skipped)?;
            for (file, source) in sdk_files(world) {
                let sdk = src.join(file);
                if fs::read_to_string(&sdk).is_ok_and(|own| own != *source) {
                    eprintln!(
                        "note: {} has its own {file}; building with the SDK shipped with waypass instead",
                        dir.display()
                    );
                }
                fs::write(&sdk, source)
                    .with_context(|| format!("cannot write {}", sdk.display()))?;
            }
            check_syntax(&src, &dir, world)?;

            // componentize-js works in a directory under the system's temporary
            // directory and leaves it behind when the build fails: point it into
            // the stage, which goes when the build ends.
            let tmp = stage.join("tmp");
            fs::create_dir(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
            let entry = src.join(world.js_entry());
            let driver = stage.join(DRIVER_FILE);
            fs::write(&driver, DRIVER_SOURCE)
                .with_context(|| format!("cannot write {}", driver.display()))?;
            let status =
                componentize_command(&driver, &cli, &entry, &wit, world, staged_wasm, disabled)
                    .current_dir(&src)
                    .env("TMPDIR", &tmp)
                    .env("TMP", &tmp)
                    .env("TEMP", &tmp)
                    .stdin(Stdio::null())
                    // Whatever the module prints while it is snapshotted goes to
                    // stderr: stdout carries only the component's path.
                    .stdout(io::stderr())
                    .stderr(Stdio::inherit())
                    .status();
            match status {
                Err(e) if e.kind() == io::ErrorKind::NotFound => Err(node_missing().into()),
                Err(e) => Err(e).context(format!("cannot run `{NODE}`")),
                Ok(status) if !status.success() => bail!(
                    "componentize-js could not build {} ({status}); see its output above",
                    dir.display()
                ),
                Ok(_) => Ok(()),
            }
        },
    )
}

/// Checks every module of the mapper with `node --check`, which says where a
/// syntax error is (componentize-js only counts them). `dir` names the files
/// in the message.
fn check_syntax(src: &Path, dir: &Path, world: World) -> anyhow::Result<()> {
    let mut modules = Vec::new();
    js_modules(src, Path::new(""), &mut modules)?;
    modules.sort();
    let sdk = sdk_files(world);
    for rel in modules
        .iter()
        .filter(|rel| !sdk.iter().any(|(file, _)| rel.as_path() == Path::new(file)))
    {
        let path = src.join(rel);
        let source =
            File::open(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let output = Command::new(NODE)
            .args(["--input-type=module", "--check"])
            .stdin(source)
            .output();
        match output {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(node_missing().into()),
            Err(e) => return Err(e).context(format!("cannot run `{NODE}`")),
            Ok(out) if !out.status.success() => bail!(
                "{}",
                syntax_error_report(&String::from_utf8_lossy(&out.stderr), &dir.join(rel))
            ),
            Ok(_) => {}
        }
    }
    Ok(())
}

/// The `.js` and `.mjs` files under `root/rel`, relative to `root`.
fn js_modules(root: &Path, rel: &Path, found: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let here = root.join(rel);
    for entry in fs::read_dir(&here).with_context(|| format!("cannot read {}", here.display()))? {
        let entry = entry.with_context(|| format!("cannot read {}", here.display()))?;
        let rel = rel.join(entry.file_name());
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            js_modules(root, &rel, found)?;
        } else if rel.extension().is_some_and(|e| e == "js" || e == "mjs") {
            found.push(rel);
        }
    }
    Ok(())
}

/// `node --check`'s complaint about stdin, up to the `SyntaxError` line and
/// without blank lines, naming `path` instead of `[stdin]`.
fn syntax_error_report(stderr: &str, path: &Path) -> String {
    let mut lines = Vec::new();
    for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
        lines.push(line.replace("[stdin]", &path.display().to_string()));
        if line.starts_with("SyntaxError") {
            break;
        }
    }
    let report = lines.join("\n");
    format!(
        "{} is not a valid JavaScript module:\n{}",
        path.display(),
        report.trim()
    )
}

/// `node <driver> <cli.js> <entry> --wit <wit> --world-name <world> --disable … --out <out>`:
/// componentize-js's CLI run by the driver ([`DRIVER_SOURCE`]).
fn componentize_command(
    driver: &Path,
    cli: &Path,
    entry: &Path,
    wit: &Path,
    world: World,
    out: &Path,
    disabled: &[&str],
) -> Command {
    let mut cmd = Command::new(NODE);
    cmd.arg(driver)
        .arg(cli)
        .arg(entry)
        .arg("--wit")
        .arg(wit)
        .args(["--world-name", world.wit_name(), "--disable"])
        .args(disabled)
        .arg("--out")
        .arg(out);
    cmd
}

fn node_missing() -> super::MissingTool {
    super::MissingTool::Node {
        tool: NODE.into(),
        min_major: MIN_NODE_MAJOR,
    }
}

/// The componentize-js install under a toolchain directory: an npm prefix
/// holding `node_modules/@bytecodealliance/componentize-js`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Toolchain {
    /// The toolchain directory itself, where staging directories are made.
    parent: PathBuf,
    /// `componentize-js-<version>`: exists only once an install is complete.
    prefix: PathBuf,
    lock: PathBuf,
}

impl Toolchain {
    fn in_dir(toolchain_dir: &Path) -> Self {
        let name = format!("componentize-js-{COMPONENTIZE_JS_VERSION}");
        Self {
            parent: toolchain_dir.to_path_buf(),
            prefix: toolchain_dir.join(&name),
            lock: toolchain_dir.join(format!("{name}.lock")),
        }
    }

    /// Staging directories of unfinished installs are named `.<name>.partial-…`.
    fn staging_prefix(&self) -> String {
        format!(".componentize-js-{COMPONENTIZE_JS_VERSION}.partial-")
    }

    /// The CLI script of the install under `prefix`, if it is the pinned
    /// version: the package's `bin.componentize-js`.
    fn cli_in(prefix: &Path) -> Option<PathBuf> {
        let package = prefix.join("node_modules").join(COMPONENTIZE_JS_PACKAGE);
        let manifest: serde_json::Value =
            serde_json::from_slice(&fs::read(package.join("package.json")).ok()?).ok()?;
        if manifest["version"] != COMPONENTIZE_JS_VERSION {
            return None;
        }
        let bin = manifest["bin"]["componentize-js"].as_str()?;
        let cli = package.join(bin);
        cli.is_file().then_some(cli)
    }

    /// Installs componentize-js unless it is there; returns its CLI script.
    fn ensure(&self) -> anyhow::Result<PathBuf> {
        install_once(
            &self.lock,
            &format!("componentize-js {COMPONENTIZE_JS_VERSION}"),
            || Self::cli_in(&self.prefix),
            || {
                check_node()?;
                eprintln!(
                    "installing componentize-js {COMPONENTIZE_JS_VERSION} from npm into {} (once)…",
                    self.prefix.display()
                );
                self.install()
            },
        )
    }

    /// Runs npm into a fresh staging directory and renames it into place.
    /// Called with the lock held.
    fn install(&self) -> anyhow::Result<PathBuf> {
        self.remove_stale_staging();
        let stage = self.parent.join(format!(
            "{}{}-{}",
            self.staging_prefix(),
            std::process::id(),
            unique_suffix()
        ));
        let result = self.install_into(&stage);
        if result.is_err() {
            let _ = fs::remove_dir_all(&stage);
        }
        result
    }

    fn install_into(&self, stage: &Path) -> anyhow::Result<PathBuf> {
        fs::create_dir_all(stage).with_context(|| format!("cannot create {}", stage.display()))?;
        let spec = format!("{COMPONENTIZE_JS_PACKAGE}@{COMPONENTIZE_JS_VERSION}");
        let output = Command::new(NPM)
            .arg("install")
            .arg("--prefix")
            .arg(stage)
            // No dependency needs an install script; none runs.
            .args([
                "--no-audit",
                "--no-fund",
                "--ignore-scripts",
                "--loglevel=error",
            ])
            .arg(&spec)
            .stdin(Stdio::null())
            .output();
        let output = match output {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(super::MissingTool::Npm {
                    tool: NPM.into(),
                    min_major: MIN_NODE_MAJOR,
                }
                .into());
            }
            Err(e) => return Err(e).context(format!("cannot run `{NPM}`")),
            Ok(output) => output,
        };
        if !output.status.success() {
            bail!(
                "npm could not install {spec} ({}). It needs the npm registry (or a mirror in \
                 npm_config_registry). npm said:\n{}",
                output.status,
                tail(&output.stderr, &output.stdout)
            );
        }
        if Self::cli_in(stage).is_none() {
            bail!(
                "npm installed {spec} into {}, but its package.json or CLI is missing",
                stage.display()
            );
        }
        // A directory under the final name is a finished install; one left
        // by an older, interrupted layout is replaced.
        if self.prefix.exists() {
            fs::remove_dir_all(&self.prefix)
                .with_context(|| format!("cannot remove the unusable {}", self.prefix.display()))?;
        }
        fs::rename(stage, &self.prefix).with_context(|| {
            format!(
                "cannot move {} to {}",
                stage.display(),
                self.prefix.display()
            )
        })?;
        Self::cli_in(&self.prefix).with_context(|| {
            format!(
                "installed componentize-js, but {} is unusable",
                self.prefix.display()
            )
        })
    }

    /// Removes staging directories an interrupted install left behind (with
    /// the lock held, none is in use).
    fn remove_stale_staging(&self) {
        let Ok(entries) = fs::read_dir(&self.parent) else {
            return;
        };
        for entry in entries.flatten() {
            if entry
                .file_name()
                .to_string_lossy()
                .starts_with(&self.staging_prefix())
            {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
    }
}

/// Fails unless `node --version` reports a Node.js componentize-js runs on.
fn check_node() -> anyhow::Result<()> {
    let output = match Command::new(NODE)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
    {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(node_missing().into()),
        Err(e) => return Err(e).context(format!("cannot run `{NODE}`")),
        Ok(output) => output,
    };
    let reported = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    match node_major(&reported) {
        Some(major) if major >= MIN_NODE_MAJOR => Ok(()),
        _ => bail!(
            "building a JavaScript mapper needs Node.js {MIN_NODE_MAJOR} or newer, but \
             `{NODE} --version` says `{reported}`"
        ),
    }
}

/// The major version in `node --version`'s output (`v20.11.1`).
fn node_major(reported: &str) -> Option<u32> {
    reported.strip_prefix('v')?.split('.').next()?.parse().ok()
}

/// The last lines of npm's stderr (or stdout, if stderr is empty).
fn tail(stderr: &[u8], stdout: &[u8]) -> String {
    let text = if stderr.iter().all(u8::is_ascii_whitespace) {
        String::from_utf8_lossy(stdout)
    } else {
        String::from_utf8_lossy(stderr)
    };
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(NPM_OUTPUT_TAIL_LINES)..].join("\n")
}

/// Whether a directory entry is left out of the staged sources.
fn skipped(name: &str) -> bool {
    name.starts_with('.') || SKIPPED_NAMES.contains(&name) || name.ends_with(".wasm")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_package(prefix: &Path, version: &str, bin: &str, with_cli: bool) {
        let package = prefix.join("node_modules").join(COMPONENTIZE_JS_PACKAGE);
        fs::create_dir_all(package.join("src")).expect("mkdir");
        fs::write(
            package.join("package.json"),
            serde_json::json!({"version": version, "bin": {"componentize-js": bin}}).to_string(),
        )
        .expect("package.json");
        if with_cli {
            fs::write(package.join(bin), "").expect("cli");
        }
    }

    #[test]
    fn the_toolchain_is_a_versioned_npm_prefix_under_the_toolchain_dir() {
        let t = Toolchain::in_dir(Path::new("/cache/waypass/toolchains"));
        assert_eq!(
            t.prefix,
            Path::new("/cache/waypass/toolchains/componentize-js-0.23.0")
        );
        assert_eq!(
            t.lock,
            Path::new("/cache/waypass/toolchains/componentize-js-0.23.0.lock")
        );
        assert!(t.staging_prefix().starts_with('.'), "staging is hidden");
    }

    #[test]
    fn only_the_pinned_version_with_its_cli_counts_as_installed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let prefix = |name: &str| dir.path().join(name);
        assert_eq!(
            Toolchain::cli_in(&prefix("empty")),
            None,
            "nothing installed"
        );
        write_package(&prefix("old"), "0.22.0", "src/cli.js", true);
        assert_eq!(Toolchain::cli_in(&prefix("old")), None, "another version");
        write_package(
            &prefix("half"),
            COMPONENTIZE_JS_VERSION,
            "src/cli.js",
            false,
        );
        assert_eq!(Toolchain::cli_in(&prefix("half")), None, "no CLI script");
        write_package(&prefix("ok"), COMPONENTIZE_JS_VERSION, "src/cli.js", true);
        assert_eq!(
            Toolchain::cli_in(&prefix("ok")),
            Some(prefix("ok").join("node_modules/@bytecodealliance/componentize-js/src/cli.js"))
        );
    }

    #[test]
    fn a_finished_install_is_used_without_running_npm() {
        let dir = tempfile::tempdir().expect("tempdir");
        let t = Toolchain::in_dir(dir.path());
        write_package(&t.prefix, COMPONENTIZE_JS_VERSION, "src/cli.js", true);
        let cli = t.ensure().expect("ready");
        assert!(cli.starts_with(&t.prefix));
        assert!(!t.lock.exists(), "no lock taken when ready");
    }

    #[test]
    fn stale_staging_directories_are_removed_and_others_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let t = Toolchain::in_dir(dir.path());
        let stale = dir.path().join(format!("{}1-2-3", t.staging_prefix()));
        let other = dir.path().join("componentize-py-0.25.1");
        fs::create_dir_all(&stale).expect("mkdir");
        fs::create_dir_all(&other).expect("mkdir");
        t.remove_stale_staging();
        assert!(!stale.exists());
        assert!(other.exists());
    }

    #[test]
    fn the_command_runs_the_cli_through_the_driver_with_the_world_and_without_unneeded_wasi() {
        let cmd = componentize_command(
            Path::new("/stage/componentize.mjs"),
            Path::new("/tc/cli.js"),
            Path::new("/stage/src/mapper.js"),
            Path::new("/repo/wit"),
            World::Mapper,
            Path::new("/stage/mapper.wasm"),
            DISABLED_FEATURES,
        );
        assert_eq!(cmd.get_program(), NODE);
        let args: Vec<_> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args,
            [
                "/stage/componentize.mjs",
                "/tc/cli.js",
                "/stage/src/mapper.js",
                "--wit",
                "/repo/wit",
                "--world-name",
                "mapper",
                "--disable",
                "stdio",
                "random",
                "clocks",
                "fetch-event",
                "--out",
                "/stage/mapper.wasm",
            ]
        );
        assert!(!DISABLED_FEATURES.contains(&"http"), "fetch() needs it");
    }

    #[test]
    fn syntax_errors_name_the_mappers_file_and_line() {
        let stderr = "[stdin]:2\nexport function f() { await 1; }\n                     ^^^^^\n\n\
                      SyntaxError: Unexpected reserved word\n    at checkSyntax (node:internal)\n\n\
                      Node.js v20.20.2\n";
        let report = syntax_error_report(stderr, Path::new("/src/acme/mapper.js"));
        assert!(
            report.starts_with(
                "/src/acme/mapper.js is not a valid JavaScript module:\n/src/acme/mapper.js:2\n"
            ),
            "{report}"
        );
        assert!(
            report.ends_with("SyntaxError: Unexpected reserved word"),
            "{report}"
        );
    }

    #[test]
    fn every_module_of_the_mapper_is_found() {
        let dir = tempfile::tempdir().expect("tempdir");
        for rel in ["mapper.js", "lib/a.mjs", "lib/data.json", "README.md"] {
            let p = dir.path().join(rel);
            fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            fs::write(p, "x").expect("write");
        }
        let mut found = Vec::new();
        js_modules(dir.path(), Path::new(""), &mut found).expect("walk");
        found.sort();
        assert_eq!(
            found,
            ["lib/a.mjs", "mapper.js"].map(PathBuf::from).to_vec()
        );
    }

    #[test]
    fn node_versions_are_read_off_node_version() {
        assert_eq!(node_major("v20.20.2"), Some(20));
        assert_eq!(node_major("v18.0.0"), Some(18));
        assert_eq!(node_major("20.1.0"), None);
        assert_eq!(node_major(""), None);
    }

    #[test]
    fn install_errors_quote_the_end_of_npm_output() {
        let long: String = (0..100).map(|i| format!("line {i}\n")).collect();
        let quoted = tail(long.as_bytes(), b"");
        assert!(quoted.starts_with("line 75"), "{quoted}");
        assert!(quoted.ends_with("line 99"), "{quoted}");
        assert_eq!(tail(b"  \n", b"from stdout"), "from stdout");
    }

    #[test]
    fn staging_copies_sources_but_not_dependencies_output_or_dot_entries() {
        let src = tempfile::tempdir().expect("tempdir");
        let dst = tempfile::tempdir().expect("tempdir");
        for rel in [
            "mapper.js",
            "lib/claims.js",
            "node_modules/lodash/index.js",
            "dist/bundle.js",
            ".git/HEAD",
            "old.wasm",
        ] {
            let p = src.path().join(rel);
            fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            fs::write(p, "x").expect("write");
        }
        copy_sources(src.path(), dst.path(), 0, &skipped).expect("copy");
        let copied = super::super::stage::files_under(dst.path());
        assert_eq!(
            copied,
            ["lib/claims.js", "mapper.js"].map(PathBuf::from).to_vec()
        );
    }

    #[test]
    fn the_sdk_is_compiled_in_and_imports_the_world() {
        assert!(SDK_SOURCE.contains("from 'waypass:mapper/http@0.1.0'"));
        assert!(SDK_SOURCE.contains("export function exportMapper"));
    }
}
