//! `waypass mapper new NAME --lang rust|python|js`: a working mapper to start
//! from — the seed example (Auth0's fetchUserProfile script) ported, with a
//! README — ready for `waypass mapper build`.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use super::Language;

/// The seed ports, compiled into the binary so a scaffold needs no checkout.
const RUST_LIB: &str = include_str!("../../../plugins/mappers/auth0-example/src/lib.rs");
const PYTHON_APP: &str = include_str!("../../../plugins/mappers/auth0-example-py/app.py");
const JS_MAPPER: &str = include_str!("../../../plugins/mappers/auth0-example-js/mapper.js");

/// Creates `dir` (which must not exist) holding a mapper named after it.
pub fn new_mapper(dir: &Path, language: Language) -> anyhow::Result<PathBuf> {
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|n| {
            !n.is_empty()
                && n.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        .with_context(|| {
            format!(
                "`{}`: name the mapper with letters, digits, `-` or `_`",
                dir.display()
            )
        })?;
    if dir.exists() {
        bail!("{} already exists; choose a new directory", dir.display());
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let write = |file: &str, text: &str| {
        let path = dir.join(file);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))
    };
    let (lang, files) = match language {
        Language::Rust => {
            let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/sdk/rust");
            let sdk = sdk.canonicalize().unwrap_or(sdk);
            write(
                "Cargo.toml",
                &format!(
                    "[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2024\"\npublish = false\n\n\
                     [lib]\ncrate-type = [\"cdylib\"]\n\n\
                     [dependencies]\nwaypass-mapper = {{ path = {sdk:?} }}\n\n\
                     # Its own workspace: built for wasm32-wasip2 on its own.\n[workspace]\n\n\
                     [profile.release]\nopt-level = \"s\"\nlto = true\ncodegen-units = 1\nstrip = true\npanic = \"abort\"\n",
                    sdk = sdk.display().to_string()
                ),
            )?;
            write("src/lib.rs", RUST_LIB)?;
            ("Rust", "`Cargo.toml`, `src/lib.rs`")
        }
        Language::Python => {
            write("app.py", PYTHON_APP)?;
            ("Python", "`app.py`")
        }
        Language::JavaScript => {
            write("mapper.js", JS_MAPPER)?;
            ("JavaScript", "`mapper.js`")
        }
    };
    write("README.md", &readme(name, lang, files))?;
    Ok(dir.to_path_buf())
}

fn readme(name: &str, lang: &str, files: &str) -> String {
    format!(
        "# {name}\n\n\
         A Waypass profile mapper in {lang} ({files}), started from the port of \
         Auth0's example fetchUserProfile script: it GETs the setting `userinfo_url` \
         with the access token and maps `account.uuid` and `account.email`.\n\n\
         Build it (prints the component's path last):\n\n    waypass mapper build .\n\n\
         Run it once against a provider:\n\n    waypass mapper run PATH.wasm --access-token TOKEN \\\n        \
         --setting userinfo_url=https://auth.example.com/userinfo --allow-host auth.example.com\n\n\
         Register it, and swap versions without a restart:\n\n    waypass mappers push {name} PATH.wasm\n    \
         waypass mappers versions {name}\n    waypass mappers activate {name} VERSION\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scaffold_holds_the_seed_port_and_a_readme_and_never_overwrites() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("acme-py");
        new_mapper(&dir, Language::Python).expect("scaffold");
        assert!(
            std::fs::read_to_string(dir.join("app.py"))
                .expect("app.py")
                .contains("userinfo_url")
        );
        assert!(
            std::fs::read_to_string(dir.join("README.md"))
                .expect("readme")
                .contains("mappers push acme-py")
        );
        assert!(
            new_mapper(&dir, Language::Python).is_err(),
            "an existing directory is refused"
        );
        let rust = root.path().join("acme");
        new_mapper(&rust, Language::Rust).expect("scaffold");
        let manifest = std::fs::read_to_string(rust.join("Cargo.toml")).expect("manifest");
        assert!(
            manifest.contains("name = \"acme\"") && manifest.contains("waypass-mapper = { path =")
        );
        assert_eq!(
            super::super::detect_language(&rust).expect("detects"),
            Language::Rust
        );
    }
}
