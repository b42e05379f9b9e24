//! Python mappers and Actions: a directory with `app.py`, built with
//! componentize-py for the world asked for.
//!
//! componentize-py is pinned ([`COMPONENTIZE_PY_VERSION`], wheels checked
//! against [`WHEEL_SHA256`]) and installed from PyPI on first use into a venv
//! under [`super::toolchain_dir`], made with the machine's `python3`. A lock
//! file serialises installs, and a marker written last tells a finished venv
//! from a half-made one, so two builds racing install it once.
//!
//! The mapper's directory and the Python SDK (`waypass_mapper` and
//! `waypass_action`, both on the path) are copied into a staging
//! directory and built from there: componentize-py runs the app in its own
//! CPython at build time, which writes `__pycache__` next to every module it
//! imports, and the source tree stays clean. The component lands in a build
//! directory keyed by the mapper directory's path, under the same cache.

use super::World;
use super::stage::{build_staged, copy_sources, install_once};
use std::fs;
use std::io::{self};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

/// The componentize-py release mappers are built with.
const COMPONENTIZE_PY_VERSION: &str = "0.25.1";

/// SHA-256 of every componentize-py 0.25.1 wheel on PyPI (Linux x86_64 and
/// aarch64, macOS x86_64 and arm64, Windows x86_64). pip refuses anything
/// else, so a tampered or substituted download never runs.
const WHEEL_SHA256: &[&str] = &[
    "8623cd8cab8453cb0cd8bf03f3c7103420d06f2f3d360186a280a70a1ca5e89f",
    "7b6a87c520358166843af0daa86d2312d7af4cbcbbf1e598951085cf7f2991ca",
    "65fbc4a94df1de8acf7da50a1f5ed1711230188844e53e6332d99029be4e0afa",
    "a556991534cc496207a9d2ca733c4b0f17ed38ef56a8d6b5f1847fdf1225dd1b",
    "c7fd552fb0849858b0c1e8981543ed5dff4b0cc1597a8ea0bc26a495786dc0c6",
];

/// The Python module componentize-py loads: `app.py` in the mapper's directory.
const APP_MODULE: &str = "app";

/// Entries of a mapper directory left out of the staged copy: build output,
/// bytecode, virtual environments and version control (dot entries too).
const SKIPPED_NAMES: &[&str] = &["target", "build", "__pycache__", "venv", "node_modules"];

#[cfg(windows)]
const HOST_PYTHON: &str = "python";
#[cfg(not(windows))]
const HOST_PYTHON: &str = "python3";

#[cfg(windows)]
const VENV_BIN: &str = "Scripts";
#[cfg(not(windows))]
const VENV_BIN: &str = "bin";

pub(super) fn build(dir: &Path, world: World) -> anyhow::Result<PathBuf> {
    let dir = dir
        .canonicalize()
        .with_context(|| format!("cannot read {}", dir.display()))?;
    let toolchain = Toolchain::in_dir(&super::toolchain_dir());
    toolchain.ensure()?;

    build_staged(&dir, "python", "componentize-py", |stage, staged_wasm| {
        let wit = world.wit_dir_in(stage)?;
        let app = stage.join("app");
        let sdk = stage.join("sdk");
        copy_sources(&dir, &app, 0, &skipped)?;
        copy_sources(&sdk_dir(), &sdk, 0, &skipped)?;
        let status = Command::new(toolchain.exe())
            .arg("--quiet")
            .arg("--wit-path")
            .arg(&wit)
            .args(["--world", world.wit_name(), "componentize", APP_MODULE])
            .arg("--python-path")
            .arg(&app)
            .arg("--python-path")
            .arg(&sdk)
            .arg("--output")
            .arg(staged_wasm)
            .current_dir(&app)
            // Without it componentize-py adds the site-packages of whatever
            // Python is on PATH; with it, only the toolchain's own (nothing a
            // mapper imports).
            .env("VIRTUAL_ENV", &toolchain.venv)
            .env_remove("PYTHONPATH")
            // componentize-py reports a Python error with a Rust backtrace of
            // its own internals when RUST_BACKTRACE is set; the Python
            // traceback is the news.
            .env("RUST_LIB_BACKTRACE", "0")
            .stdout(io::stderr())
            .stderr(Stdio::inherit())
            .status()
            .context("cannot run componentize-py")?;
        if !status.success() {
            bail!(
                "componentize-py could not build {} ({status}); see its output above",
                dir.display()
            );
        }
        Ok(())
    })
}

/// `plugins/sdk/python` of this source tree: the `waypass_mapper` and
/// `waypass_action` packages.
fn sdk_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/sdk/python")
}

/// The componentize-py venv under a toolchain directory.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Toolchain {
    venv: PathBuf,
    lock: PathBuf,
}

impl Toolchain {
    fn in_dir(toolchain_dir: &Path) -> Self {
        let name = format!("componentize-py-{COMPONENTIZE_PY_VERSION}");
        Self {
            venv: toolchain_dir.join(&name),
            lock: toolchain_dir.join(format!("{name}.lock")),
        }
    }

    /// The `componentize-py` launcher pip puts into the venv.
    fn exe(&self) -> PathBuf {
        self.venv
            .join(VENV_BIN)
            .join(format!("componentize-py{}", std::env::consts::EXE_SUFFIX))
    }

    /// The venv's Python, which runs pip.
    fn python(&self) -> PathBuf {
        self.venv
            .join(VENV_BIN)
            .join(format!("python{}", std::env::consts::EXE_SUFFIX))
    }

    /// Written once the install is verified; a venv without it is half-made.
    fn marker(&self) -> PathBuf {
        self.venv.join(".waypass-installed")
    }

    /// The pinned requirement with its wheel hashes, for `pip -r`.
    fn requirements(&self) -> PathBuf {
        self.venv.join("waypass-requirements.txt")
    }

    fn is_ready(&self) -> bool {
        self.marker().is_file()
            && Command::new(self.exe())
                .arg("--version")
                .stdin(Stdio::null())
                .stderr(Stdio::null())
                .output()
                .is_ok_and(|out| {
                    out.status.success()
                        && reported_version(&String::from_utf8_lossy(&out.stdout))
                            == Some(COMPONENTIZE_PY_VERSION)
                })
    }

    /// Installs componentize-py unless a finished install is there.
    fn ensure(&self) -> anyhow::Result<()> {
        install_once(
            &self.lock,
            &format!("componentize-py {COMPONENTIZE_PY_VERSION}"),
            || self.is_ready().then_some(()),
            || {
                eprintln!("installing componentize-py {COMPONENTIZE_PY_VERSION} (once)…");
                self.install()
            },
        )
    }

    fn install(&self) -> anyhow::Result<()> {
        if self.venv.exists() {
            fs::remove_dir_all(&self.venv)
                .with_context(|| format!("cannot remove the unfinished {}", self.venv.display()))?;
        }
        let venv = Command::new(HOST_PYTHON)
            .args(["-m", "venv"])
            .arg(&self.venv)
            .stdout(io::stderr())
            .status();
        match venv {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(super::MissingTool::Python(HOST_PYTHON.into()).into());
            }
            Err(e) => return Err(e).context(format!("cannot run `{HOST_PYTHON}`")),
            Ok(status) if !status.success() => bail!(
                "`{HOST_PYTHON} -m venv {}` failed ({status}); on Debian and Ubuntu the venv \
                 module is a package of its own: `apt install python3-venv`, then build again",
                self.venv.display()
            ),
            Ok(_) => {}
        }
        fs::write(self.requirements(), requirements_txt())
            .with_context(|| format!("cannot write {}", self.requirements().display()))?;
        let pip = Command::new(self.python())
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--no-input",
                "--only-binary=:all:",
                "--require-hashes",
                "-r",
            ])
            .arg(self.requirements())
            .env_remove("PIP_USER")
            .stdout(io::stderr())
            .status()
            .with_context(|| format!("cannot run {}", self.python().display()))?;
        if !pip.success() {
            bail!(
                "pip could not install componentize-py {COMPONENTIZE_PY_VERSION} ({pip}); see \
                 pip's output above. It needs PyPI (or a mirror in PIP_INDEX_URL) and a platform \
                 with a componentize-py wheel (Linux x86_64/aarch64 with glibc 2.28+, macOS, \
                 Windows x86_64); `No module named pip` means `apt install python3-pip \
                 python3-venv`. Fix that and build again (pip alone: `{} -m pip install -r {}`)",
                self.python().display(),
                self.requirements().display()
            );
        }
        if !self.exe().is_file() {
            bail!(
                "pip installed componentize-py {COMPONENTIZE_PY_VERSION} but {} is missing",
                self.exe().display()
            );
        }
        fs::write(self.marker(), COMPONENTIZE_PY_VERSION)
            .with_context(|| format!("cannot write {}", self.marker().display()))?;
        if !self.is_ready() {
            bail!(
                "installed componentize-py, but `{} --version` does not report {COMPONENTIZE_PY_VERSION}",
                self.exe().display()
            );
        }
        Ok(())
    }
}

/// The requirements file pinning componentize-py to its known wheels.
fn requirements_txt() -> String {
    let mut text = format!("componentize-py=={COMPONENTIZE_PY_VERSION}");
    for hash in WHEEL_SHA256 {
        text.push_str(&format!(" \\\n    --hash=sha256:{hash}"));
    }
    text.push('\n');
    text
}

/// The version in `componentize-py --version`'s output (`componentize-py 0.25.1`).
fn reported_version(stdout: &str) -> Option<&str> {
    stdout.trim().strip_prefix("componentize-py ")
}

/// Whether a directory entry is left out of the staged sources.
fn skipped(name: &str) -> bool {
    name.starts_with('.')
        || SKIPPED_NAMES.contains(&name)
        || name.ends_with(".pyc")
        || name.ends_with(".wasm")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_toolchain_is_a_versioned_venv_under_the_toolchain_dir() {
        let t = Toolchain::in_dir(Path::new("/cache/waypass/toolchains"));
        assert_eq!(
            t.venv,
            Path::new("/cache/waypass/toolchains/componentize-py-0.25.1")
        );
        assert_eq!(
            t.lock,
            Path::new("/cache/waypass/toolchains/componentize-py-0.25.1.lock")
        );
        assert!(t.exe().starts_with(&t.venv));
        assert!(t.marker().starts_with(&t.venv));
        #[cfg(not(windows))]
        assert_eq!(
            t.exe(),
            Path::new("/cache/waypass/toolchains/componentize-py-0.25.1/bin/componentize-py")
        );
    }

    #[test]
    fn a_missing_or_half_made_venv_is_not_ready() {
        let dir = tempfile::tempdir().expect("tempdir");
        let t = Toolchain::in_dir(dir.path());
        assert!(!t.is_ready());
        fs::create_dir_all(t.venv.join(VENV_BIN)).expect("mkdir");
        assert!(!t.is_ready(), "no marker, no launcher");
        fs::write(t.marker(), COMPONENTIZE_PY_VERSION).expect("marker");
        assert!(!t.is_ready(), "a marker without a working launcher");
    }

    #[test]
    fn the_version_is_read_off_componentize_py_version() {
        assert_eq!(reported_version("componentize-py 0.25.1\n"), Some("0.25.1"));
        assert_eq!(reported_version("something else"), None);
    }

    #[test]
    fn the_requirement_pins_the_version_and_every_wheel_hash() {
        let text = requirements_txt();
        assert!(text.starts_with("componentize-py==0.25.1 \\\n"), "{text}");
        assert_eq!(text.matches("--hash=sha256:").count(), WHEEL_SHA256.len());
        assert!(
            WHEEL_SHA256
                .iter()
                .all(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        );
    }

    #[test]
    fn staging_copies_sources_but_not_build_output_bytecode_or_dot_entries() {
        let src = tempfile::tempdir().expect("tempdir");
        let dst = tempfile::tempdir().expect("tempdir");
        let write = |rel: &str| {
            let p = src.path().join(rel);
            fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            fs::write(p, "x").expect("write");
        };
        for rel in [
            "app.py",
            "helpers/util.py",
            "data/names.json",
            "target/old.wasm",
            "build/x.py",
            "__pycache__/app.cpython-314.pyc",
            ".git/HEAD",
            ".venv/lib/x.py",
            "mapper.wasm",
        ] {
            write(rel);
        }
        copy_sources(src.path(), dst.path(), 0, &skipped).expect("copy");
        let copied = super::super::stage::files_under(dst.path());
        assert_eq!(
            copied,
            ["app.py", "data/names.json", "helpers/util.py"]
                .map(PathBuf::from)
                .to_vec()
        );
    }

    #[test]
    fn the_sdk_ships_with_the_sources() {
        assert!(
            sdk_dir()
                .join("waypass_mapper")
                .join("__init__.py")
                .is_file()
        );
    }
}
