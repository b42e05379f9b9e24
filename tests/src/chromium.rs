//! A real browser for the console and login-page tests: Debian's Chromium
//! driven by `playwright-core` (npm) from a CommonJS script under
//! `tests/browser/`.
//!
//! `WAYPASS_BROWSER_DIR` names the directory holding
//! `node_modules/playwright-core` (`.ci/run` sets it from
//! `scripts/ensure-browser`). Unset, the first browser test of a test binary
//! runs that script itself, once (it installs Chromium with apt-get as root,
//! and playwright-core from npm). When no browser can be had the tests print
//! a notice and pass without running — except when `CI` is set, where they
//! fail: CI must run them (the same rule as the PostgreSQL tests).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use crate::postgres::{Server, decide, is_ci};

/// The variable naming the playwright-core install.
pub const DIR_VAR: &str = "WAYPASS_BROWSER_DIR";

/// The Chromium the scripts launch (`executablePath`): never a downloaded one.
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// Runs `scripts/ensure-browser` and returns the directory it prints last.
fn ensure_browser() -> Result<String, String> {
    let script = repo_root().join("scripts/ensure-browser");
    let output = Command::new("bash")
        .arg(&script)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    if !output.status.success() {
        return Err(format!("{} failed ({})", script.display(), output.status));
    }
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .last()
        .filter(|line| {
            Path::new(line)
                .join("node_modules/playwright-core")
                .is_dir()
        })
        .map(str::to_owned)
        .ok_or_else(|| format!("{} printed no playwright-core directory", script.display()))
}

/// The repository's root (tests/..).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The playwright-core directory for this test binary, or `None` to skip
/// (a notice is printed once). Panics in CI when there is none.
pub fn browser_dir() -> Option<PathBuf> {
    static DIR: OnceLock<Result<Server, String>> = OnceLock::new();
    let decided = DIR.get_or_init(|| {
        let decided = decide(
            std::env::var(DIR_VAR).ok().as_deref(),
            is_ci(std::env::var("CI").ok().as_deref()),
            ensure_browser,
        );
        if let Ok(Server::Skip(why)) = &decided {
            // Straight to stderr: `eprintln!` would be captured and lost.
            let _ = writeln!(
                std::io::stderr(),
                "NOTICE: the browser tests are skipped: {why}. Set {DIR_VAR} to a directory \
                 with node_modules/playwright-core (scripts/ensure-browser) to run them."
            );
        }
        decided
    });
    match decided {
        Ok(Server::Url(dir)) => Some(PathBuf::from(dir)),
        Ok(Server::Skip(_)) => None,
        Err(e) => panic!("{e}"),
    }
}

/// What a browser script printed, once it has exited.
#[derive(Debug)]
pub struct ScriptRun {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `tests/browser/<script>` (CommonJS) with node, playwright-core on
/// `NODE_PATH`, `WAYPASS_CHROMIUM` set to [`CHROMIUM`] and `env` added.
/// Async so that the servers the script talks to keep running on the
/// test's runtime while it waits.
pub async fn run_script(dir: &Path, script: &str, env: &[(&str, String)]) -> ScriptRun {
    let path = repo_root().join("tests/browser").join(script);
    let mut command = tokio::process::Command::new("node");
    command
        .arg(&path)
        .env("NODE_PATH", dir.join("node_modules"))
        .env("WAYPASS_CHROMIUM", CHROMIUM)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    for (name, value) in env {
        command.env(name, value);
    }
    let output = command
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run node {}: {e}", path.display()));
    ScriptRun {
        success: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}
