//! Builds the guest components the tests run — the mappers in `plugins/` and
//! the hostile ones in `tests/guests/` — and writes their paths as constants.
//!
//! Guests go to `<target>/wasm-guests`, shared with the CLI tests' own
//! `waypass mapper build`, so each is compiled once.

use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-wasip2";

/// (constant, workspace, artifact file name)
const GUESTS: &[(&str, &str, &str)] = &[
    ("AUTH0_EXAMPLE", "plugins", "auth0_example.wasm"),
    ("DECLARATIVE", "plugins", "declarative.wasm"),
    ("GITHUB", "plugins", "github.wasm"),
    ("HOSTILE", "tests/guests", "hostile.wasm"),
    ("NOT_A_MAPPER", "tests/guests", "not-a-mapper.wasm"),
    ("WRONG_SIGNATURE", "tests/guests", "wrong_signature.wasm"),
    ("FOREIGN_IMPORT", "tests/guests", "foreign_import.wasm"),
    ("ACTION_PROBE", "tests/guests", "action_probe.wasm"),
    ("ACTION_PROBE_TWO", "tests/guests", "action_probe_two.wasm"),
];

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let root = manifest_dir
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf();
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("set by cargo"));
    // OUT_DIR is <target>/<profile>/build/<pkg>-<hash>/out.
    let target_dir = out_dir
        .ancestors()
        .nth(4)
        .expect("OUT_DIR is inside the target directory")
        .join("wasm-guests");

    for dir in ["wit", "plugins", "tests/guests"] {
        rerun_if_changed(&root.join(dir));
    }
    ensure_target();
    for workspace in ["plugins", "tests/guests"] {
        build_workspace(&root.join(workspace).join("Cargo.toml"), &target_dir);
    }

    let release = target_dir.join(TARGET).join("release");
    let mut constants = String::new();
    for (name, _, file) in GUESTS {
        let path = release.join(file);
        assert!(
            path.is_file(),
            "guest build did not produce {}",
            path.display()
        );
        constants.push_str(&format!(
            "pub const {name}: &str = {:?};\n",
            path.display().to_string()
        ));
    }
    constants.push_str(&format!(
        "pub const TARGET_DIR: &str = {:?};\n",
        target_dir.display().to_string()
    ));
    std::fs::write(out_dir.join("guests.rs"), constants).expect("write guests.rs");
}

fn ensure_target() {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .expect("rustup is needed to install the wasm32-wasip2 target");
    if !String::from_utf8_lossy(&installed.stdout)
        .lines()
        .any(|l| l.trim() == TARGET)
    {
        let status = Command::new("rustup")
            .args(["target", "add", TARGET])
            .status()
            .expect("run rustup");
        assert!(status.success(), "rustup target add {TARGET} failed");
    }
}

fn build_workspace(manifest: &Path, target_dir: &Path) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--release", "--workspace", "--target", TARGET])
        .arg("--manifest-path")
        .arg(manifest)
        .env("CARGO_TARGET_DIR", target_dir)
        // What cargo hands this build script is for the host build, not the guests'.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTC_WRAPPER")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("CARGO_BUILD_TARGET")
        .status()
        .expect("run cargo for the guests");
    assert!(
        status.success(),
        "building the guests in {} failed",
        manifest.display()
    );
}

fn rerun_if_changed(dir: &Path) {
    println!("cargo::rerun-if-changed={}", dir.display());
}
