//! What each language's build needs from the machine, and what to say when
//! it is missing: the tool, why it is needed, and the command that installs
//! it — never a bare "No such file or directory".

use std::io;
use std::process::{Command, Output, Stdio};

/// A tool `mapper build` needs that is not on the machine (or cannot run).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MissingTool {
    #[error(
        "building a Rust mapper needs cargo, but `{0}` is not on PATH: install Rust with rustup \
         (https://rustup.rs: `curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh`), \
         then `rustup target add wasm32-wasip2`, and build again"
    )]
    Cargo(String),
    #[error(
        "building a Rust mapper needs the wasm32-wasip2 target, which this Rust does not have, \
         and rustup, which adds it, is not on PATH: install Rust with rustup (https://rustup.rs), \
         run `rustup target add wasm32-wasip2`, and build again"
    )]
    RustTarget,
    #[error(
        "building a Python mapper installs componentize-py with Python 3.9 or newer, but `{0}` \
         is not on PATH: install Python 3 with its venv module (Debian and Ubuntu: \
         `apt install python3 python3-venv`; macOS: `brew install python`) and build again"
    )]
    Python(String),
    #[error(
        "building a JavaScript mapper needs Node.js {min_major} or newer, but `{tool}` is not on \
         PATH: install Node.js with npm (Debian 13 and Ubuntu 24.04: `apt install nodejs npm`; \
         elsewhere from https://nodejs.org) and build again"
    )]
    Node { tool: String, min_major: u32 },
    #[error(
        "building a JavaScript mapper installs componentize-js with npm, but `{tool}` is not on \
         PATH: install npm with Node.js {min_major} or newer (Debian and Ubuntu: \
         `apt install npm`; elsewhere from https://nodejs.org) and build again"
    )]
    Npm { tool: String, min_major: u32 },
}

/// Runs `cmd` for its output; a program that is not there becomes `missing`,
/// any other failure to start it an error naming it.
pub(super) fn output_or_missing(
    cmd: &mut Command,
    missing: impl FnOnce() -> MissingTool,
) -> anyhow::Result<Output> {
    match cmd.stdin(Stdio::null()).output() {
        Ok(output) => Ok(output),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(missing().into()),
        Err(e) => Err(anyhow::anyhow!(
            "cannot run `{}`: {e}",
            cmd.get_program().to_string_lossy()
        )),
    }
}

/// The cargo `mapper build` runs: `$CARGO` (set when run by cargo), else
/// `cargo` from PATH.
pub(super) fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// The rustc beside it: `$RUSTC`, else `rustc` from PATH (rustup's proxy
/// picks the same toolchain cargo does in this directory).
pub(super) fn rustc() -> String {
    std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into())
}

/// Fails with [`MissingTool::Cargo`] unless cargo runs.
pub(super) fn check_cargo() -> anyhow::Result<()> {
    let cargo = cargo();
    let out = output_or_missing(Command::new(&cargo).arg("--version"), || {
        MissingTool::Cargo(cargo.clone())
    })?;
    if !out.status.success() {
        anyhow::bail!(
            "`{cargo} --version` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Whether the standard library for `target` is installed: rustc names the
/// directory it would link it from, which exists only when it is. Works for
/// any Rust, installed by rustup or not.
pub(super) fn rust_target_installed(target: &str) -> anyhow::Result<bool> {
    let rustc = rustc();
    let out = output_or_missing(
        Command::new(&rustc).args(["--print", "target-libdir", "--target", target]),
        || MissingTool::Cargo(rustc.clone()),
    )?;
    // A rustc too old to know the target says so on stderr: not installed.
    if !out.status.success() {
        return Ok(false);
    }
    let dir = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    Ok(!dir.is_empty() && std::path::Path::new(&dir).is_dir())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_program_that_is_not_there_becomes_the_missing_tool_with_its_install_command() {
        let err = output_or_missing(&mut Command::new("waypass-no-such-tool-here"), || {
            MissingTool::Python("waypass-no-such-tool-here".into())
        })
        .unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains("`waypass-no-such-tool-here` is not on PATH")
                && message.contains("apt install python3 python3-venv"),
            "{message}"
        );
        assert_eq!(
            err.downcast_ref::<MissingTool>(),
            Some(&MissingTool::Python("waypass-no-such-tool-here".into()))
        );
    }
}
