//! Helpers shared by the tests that run the `waypass` binary.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The repository's root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ has a parent")
        .to_path_buf()
}

/// The command, run from the repository's root, with its caches (under
/// `cache`) kept apart from the user's, and guests built into the directory
/// the end-to-end tests' build script uses.
pub fn waypass(cache: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_waypass"));
    let target = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target dir")
        .join("wasm-guests");
    cmd.env("CARGO_TARGET_DIR", target)
        .env("XDG_CACHE_HOME", cache)
        .current_dir(repo());
    cmd
}

/// Output bytes as text.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Builds the example mapper once per test binary, through `mapper build`;
/// the path of its component (the last line `mapper build` prints).
pub fn example_wasm() -> &'static PathBuf {
    static WASM: OnceLock<PathBuf> = OnceLock::new();
    WASM.get_or_init(|| {
        let cache = tempfile::tempdir().expect("tempdir");
        let out = waypass(cache.path())
            .args(["mapper", "build", "plugins/mappers/auth0-example"])
            .output()
            .expect("run waypass");
        assert!(
            out.status.success(),
            "mapper build failed: {}",
            text(&out.stderr)
        );
        let stdout = text(&out.stdout);
        PathBuf::from(stdout.lines().last().expect("a path on the last line"))
    })
}
