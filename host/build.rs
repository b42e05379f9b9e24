//! Records which commit the binary is built from, for `waypass --version`:
//! `WAYPASS_COMMIT` is `git rev-parse --short=12 HEAD`, with `-dirty` when
//! tracked files have changes, or `unknown` outside a git checkout (a crates
//! tarball, a source archive) or without git. `WAYPASS_BUILD_COMMIT`, when
//! set, is taken instead (`examples/Dockerfile` passes it in).
//!
//! It runs again when the commit changes (HEAD, the branch's ref) or when
//! anything compiled into the binary changes (this package, the WIT files,
//! the workspace's manifest and lock file) — not on every edit elsewhere in
//! the tree, which would rebuild the whole crate for nothing. So `-dirty`
//! says that the tree had changes when the binary's own sources last did.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Hex digits of the commit shown: enough to be unique in any repository
/// this size, and the same length on every machine (plain `--short` grows
/// with the repository).
const COMMIT_DIGITS: usize = 12;

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
    let root = manifest_dir.join("..");
    for path in [
        manifest_dir.clone(),
        root.join("wit"),
        root.join("Cargo.toml"),
        root.join("Cargo.lock"),
    ] {
        println!("cargo::rerun-if-changed={}", path.display());
    }
    // A build without the repository (a container build from a copy of the
    // tree) is told the commit instead.
    println!("cargo::rerun-if-env-changed=WAYPASS_BUILD_COMMIT");
    if let Some(commit) = std::env::var("WAYPASS_BUILD_COMMIT")
        .ok()
        .filter(|c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
    {
        println!("cargo::rustc-env=WAYPASS_COMMIT={commit}");
        return;
    }
    let commit = match git(
        &manifest_dir,
        &["rev-parse", &format!("--short={COMMIT_DIGITS}"), "HEAD"],
    ) {
        Some(commit) if !commit.is_empty() => {
            watch_git_refs(&manifest_dir);
            // `--no-optional-locks`: a build never rewrites the index.
            let dirty = git(
                &manifest_dir,
                &[
                    "--no-optional-locks",
                    "status",
                    "--porcelain",
                    "--untracked-files=no",
                ],
            )
            .is_some_and(|changes| !changes.is_empty());
            if dirty {
                format!("{commit}-dirty")
            } else {
                commit
            }
        }
        _ => "unknown".to_owned(),
    };
    println!("cargo::rustc-env=WAYPASS_COMMIT={commit}");
}

/// Reruns this script when HEAD moves: HEAD itself (another branch), the
/// branch's ref (a commit) and packed-refs (where `git gc` moves refs).
fn watch_git_refs(dir: &Path) {
    let mut paths = vec!["HEAD".to_owned(), "packed-refs".to_owned()];
    if let Some(branch) = git(dir, &["symbolic-ref", "-q", "HEAD"]) {
        paths.push(branch);
    }
    for path in paths {
        if let Some(file) = git(dir, &["rev-parse", "--git-path", &path]) {
            let file = dir.join(file);
            if file.exists() {
                println!("cargo::rerun-if-changed={}", file.display());
            }
        }
    }
}

/// Runs git in `dir`; its trimmed stdout when it succeeds.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}
