//! `waypass mapper new NAME --lang rust|python|js`: a working mapper to start
//! from — the seed example (Auth0's fetchUserProfile script) ported, with a
//! README — ready for `waypass mapper build`; `waypass action new` likewise
//! for a post-login Action, from the examples in `plugins/actions`.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use super::{Language, World};

/// The seed ports, compiled into the binary so a scaffold needs no checkout.
const RUST_LIB: &str = include_str!("../../../plugins/mappers/auth0-example/src/lib.rs");
const PYTHON_APP: &str = include_str!("../../../plugins/mappers/auth0-example-py/app.py");
const JS_MAPPER: &str = include_str!("../../../plugins/mappers/auth0-example-js/mapper.js");

/// The example Actions, compiled in likewise.
const PYTHON_ACTION: &str = include_str!("../../../plugins/actions/ask-api-py/app.py");
const JS_ACTION: &str = include_str!("../../../plugins/actions/deny-domains-js/action.js");

/// A Rust Action on the world's bindings (`wit/`, which the scaffold copies
/// into the crate, so it builds on its own): the roles of `app_metadata`
/// in a namespaced id_token claim, and a denial for unverified emails.
const RUST_ACTION: &str = r#"//! A post-login Action in Rust: deny users whose email is not verified, and
//! put the user's roles (`app_metadata.roles`) into the id_token under a
//! namespaced claim.

wit_bindgen::generate!({
    // `wit/` holds the world, `wit/deps/mapper` the `http` and `log` it imports.
    path: "wit",
    world: "post-login",
    generate_all,
});

const ROLES_CLAIM: &str = "https://example.com/roles";

struct RolesAction;

impl Guest for RolesAction {
    fn on_execute_post_login(event: Event) -> Result<Outcome, Error> {
        if event.user.email_verified != Some(true) {
            // The app gets `access_denied` with this as `error_description`.
            return Ok(Outcome::Deny("verify your email address first".into()));
        }
        let app_metadata: serde_json::Value = serde_json::from_str(&event.user.app_metadata)
            .map_err(|e| Error::Other(format!("app_metadata is not JSON: {e}")))?;
        let roles = app_metadata
            .get("roles")
            .cloned()
            .unwrap_or_else(|| serde_json::json!([]));
        Ok(Outcome::Proceed(Changes {
            // Values are JSON text.
            id_token_claims: vec![Property {
                name: ROLES_CLAIM.into(),
                value: roles.to_string(),
            }],
            access_token_claims: vec![],
            app_metadata: vec![],
            user_metadata: vec![],
            add_scopes: vec![],
            remove_scopes: vec![],
        }))
    }
}

export!(RolesAction);
"#;

/// Creates `dir` (which must not exist) holding a mapper named after it.
pub fn new_mapper(dir: &Path, language: Language) -> anyhow::Result<PathBuf> {
    new_component(dir, World::Mapper, language)
}

/// Creates `dir` (which must not exist) holding a post-login Action named
/// after it.
pub fn new_action(dir: &Path, language: Language) -> anyhow::Result<PathBuf> {
    new_component(dir, World::Action, language)
}

/// The `[profile.release]` of a scaffolded Rust crate: guests ship small.
const RUST_RELEASE_PROFILE: &str = "[profile.release]\nopt-level = \"s\"\nlto = true\ncodegen-units = 1\nstrip = true\npanic = \"abort\"\n";

fn new_component(dir: &Path, world: World, language: Language) -> anyhow::Result<PathBuf> {
    let noun = world.noun();
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
                "`{}`: name the {noun} with letters, digits, `-` or `_`",
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
    let (lang, files) = match (world, language) {
        (World::Mapper, Language::Rust) => {
            let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/sdk/rust");
            let sdk = sdk.canonicalize().unwrap_or(sdk);
            write(
                "Cargo.toml",
                &format!(
                    "[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2024\"\npublish = false\n\n\
                     [lib]\ncrate-type = [\"cdylib\"]\n\n\
                     [dependencies]\nwaypass-mapper = {{ path = {sdk:?} }}\n\n\
                     # Its own workspace: built for wasm32-wasip2 on its own.\n[workspace]\n\n\
                     {RUST_RELEASE_PROFILE}",
                    sdk = sdk.display().to_string()
                ),
            )?;
            write("src/lib.rs", RUST_LIB)?;
            ("Rust", "`Cargo.toml`, `src/lib.rs`")
        }
        (World::Mapper, Language::Python) => {
            write("app.py", PYTHON_APP)?;
            ("Python", "`app.py`")
        }
        (World::Mapper, Language::JavaScript) => {
            write("mapper.js", JS_MAPPER)?;
            ("JavaScript", "`mapper.js`")
        }
        (World::Action, Language::Rust) => {
            write(
                "Cargo.toml",
                &format!(
                    "[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2024\"\npublish = false\n\n\
                     [lib]\ncrate-type = [\"cdylib\"]\n\n\
                     [dependencies]\n\
                     wit-bindgen = {{ version = \"0.61\", default-features = false, features = [\"macros\", \"realloc\", \"std\"] }}\n\
                     serde_json = \"1\"\n\n\
                     # Its own workspace: built for wasm32-wasip2 on its own.\n[workspace]\n\n\
                     {RUST_RELEASE_PROFILE}"
                ),
            )?;
            write("src/lib.rs", RUST_ACTION)?;
            // The world and what it imports, as the bindings read them.
            world.wit_dir_in(dir)?;
            ("Rust", "`Cargo.toml`, `src/lib.rs`, the world in `wit/`")
        }
        (World::Action, Language::Python) => {
            write("app.py", PYTHON_ACTION)?;
            ("Python", "`app.py`")
        }
        (World::Action, Language::JavaScript) => {
            write("action.js", JS_ACTION)?;
            ("JavaScript", "`action.js`")
        }
    };
    let readme = match world {
        World::Mapper => mapper_readme(name, lang, files),
        World::Action => action_readme(name, lang, files),
    };
    write("README.md", &readme)?;
    Ok(dir.to_path_buf())
}

fn action_readme(name: &str, lang: &str, files: &str) -> String {
    let what = match lang {
        "Rust" => {
            "denies users whose email is not verified and puts `app_metadata.roles` into the id_token"
        }
        "Python" => "asks the API at the secret `DECISION_URL` whether the user may log in",
        _ => {
            "denies logins from the email domains in the secret `DENIED_DOMAINS` and puts `app_metadata.roles` into the id_token"
        }
    };
    format!(
        "# {name}\n\n\
         A Waypass post-login Action in {lang} ({files}): it {what}.\n\n\
         Build it (prints the component's path last):\n\n    waypass action build .\n\n\
         Run it once on an event of your own (JSON: `user`, `client`, `connection`, …):\n\n    \
         waypass action run PATH.wasm --event event.json --secret NAME=VALUE --allow-host api.example.com\n\n\
         Upload it to a running broker as the next version of the Action `{name}`, \
         deploy it and bind it to the post-login trigger (`WAYPASS_URL`, `WAYPASS_TOKEN`):\n\n    \
         waypass action push {name} PATH.wasm --bind\n\n\
         Secrets and the egress allow-list are set with the management API: \
         docs/actions-{guide}.md in Waypass's sources shows each step.\n",
        guide = match lang {
            "Rust" => "rust",
            "Python" => "python",
            _ => "javascript",
        }
    )
}

fn mapper_readme(name: &str, lang: &str, files: &str) -> String {
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
            super::super::detect_language(&rust, World::Mapper).expect("detects"),
            Language::Rust
        );
    }

    #[test]
    fn an_action_scaffold_holds_its_example_and_a_rust_one_the_world_it_builds_against() {
        let root = tempfile::tempdir().expect("tempdir");
        let js = root.path().join("gate");
        new_action(&js, Language::JavaScript).expect("scaffold");
        assert!(
            std::fs::read_to_string(js.join("action.js"))
                .expect("action.js")
                .contains("exportAction")
        );
        assert_eq!(
            super::super::detect_language(&js, World::Action).expect("detects"),
            Language::JavaScript
        );
        assert!(
            super::super::detect_language(&js, World::Mapper).is_err(),
            "action.js is not a mapper's entry"
        );
        let rust = root.path().join("roles");
        new_action(&rust, Language::Rust).expect("scaffold");
        assert!(rust.join("wit/action.wit").is_file());
        assert!(rust.join("wit/deps/mapper/mapper.wit").is_file());
        let manifest = std::fs::read_to_string(rust.join("Cargo.toml")).expect("manifest");
        assert!(manifest.contains("name = \"roles\"") && manifest.contains("wit-bindgen"));
        let readme = std::fs::read_to_string(rust.join("README.md")).expect("readme");
        assert!(readme.contains("waypass action push roles"), "{readme}");
    }
}
