//! Auth0 `fetchUserProfile` scripts, run unchanged.
//!
//! A connection may carry its profile logic as script text
//! (`options.scripts.fetchUserProfile`, as in Auth0's Management API) instead
//! of naming a registered mapper. The script runs in the script engine: a
//! JavaScript engine built as a mapper component from `plugins/script-engine/`
//! and shipped inside this binary ([`ENGINE_WASM`]), so nobody needs a
//! toolchain. Each login gets a fresh engine instance under the connection's
//! sandbox (egress policy, deadline, memory), like any mapper; the script text
//! reaches the engine as the reserved setting [`SCRIPT_SETTING`].
//!
//! Scripts are checked when saved ([`ScriptEngine::check`]): the engine
//! compiles the text without running it and reports a syntax error with its
//! line and column.

use std::sync::{Arc, OnceLock};

use serde::Deserialize;

use crate::egress::EgressPolicy;
use crate::mapper::{
    Limits, LoadError, LoadedMapper, MapperError, MapperInput, Runtime, Sandbox, TokenSet,
    sha256_hex,
};

/// The script engine component, built by `waypass mapper build-script-engine`
/// from `plugins/script-engine/` (see `host/assets/README.md`).
pub const ENGINE_WASM: &[u8] = include_bytes!("../assets/script-engine.wasm");
/// What the shipped engine was built from ([`crate::build::script_engine_inputs_digest`]).
pub const ENGINE_INPUTS: &str = include_str!("../assets/script-engine.inputs");

/// The setting that carries the script's text to the engine.
pub const SCRIPT_SETTING: &str = "waypass:script";
/// The setting that asks the engine to compile only (`check`).
pub const MODE_SETTING: &str = "waypass:mode";
/// The longest script accepted: Auth0's own limit for `fetchUserProfile`.
pub const MAX_SCRIPT_CHARS: usize = 51_200;

/// SHA-256 of [`ENGINE_WASM`], computed once (the artifact cache's key).
fn engine_digest() -> &'static str {
    static DIGEST: OnceLock<String> = OnceLock::new();
    DIGEST.get_or_init(|| sha256_hex(ENGINE_WASM))
}

/// Why a script was refused when it was saved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScriptError {
    #[error("line {line}, column {column}: {message}")]
    Syntax {
        message: String,
        line: u32,
        column: u32,
    },
    #[error("the script is empty")]
    Empty,
    #[error("the script is {chars} characters long; the limit is {MAX_SCRIPT_CHARS}")]
    TooLong { chars: usize },
    #[error("the script engine could not check the script: {0}")]
    Engine(String),
}

/// The engine's answer in check mode (see `plugins/script-engine/mapper.js`).
#[derive(Deserialize)]
#[serde(tag = "check", rename_all = "kebab-case")]
enum CheckAnswer {
    Ok,
    SyntaxError {
        message: String,
        line: u32,
        column: u32,
    },
}

/// The script engine, loaded into a [`Runtime`].
pub struct ScriptEngine {
    mapper: Arc<LoadedMapper>,
}

impl ScriptEngine {
    /// Loads the shipped engine: compiled on first use, then read from the
    /// runtime's artifact cache. Blocking (compilation takes seconds).
    pub fn load(runtime: &Runtime) -> Result<Self, LoadError> {
        let mapper = runtime.load_with_digest(ENGINE_WASM, engine_digest().to_owned())?;
        Ok(Self {
            mapper: Arc::new(mapper),
        })
    }

    /// The engine as a mapper (its version is the digest).
    pub fn mapper(&self) -> &Arc<LoadedMapper> {
        &self.mapper
    }

    /// `input` with the script added for the engine.
    pub fn input(mut input: MapperInput, script: &str) -> MapperInput {
        input.settings.insert(SCRIPT_SETTING, script);
        input
    }

    /// Compiles `script` without running it.
    pub async fn check(&self, runtime: &Runtime, script: &str) -> Result<(), ScriptError> {
        check_length(script)?;
        let mut input = Self::input(
            MapperInput {
                connection: "script-check".into(),
                tokens: TokenSet::bearer(""),
                settings: Default::default(),
            },
            script,
        );
        input.settings.insert(MODE_SETTING, "check");
        // Compiling runs nothing of the script: no network, default limits.
        let sandbox = Sandbox {
            egress: Arc::new(EgressPolicy::default()),
            limits: Limits::default(),
        };
        let report = runtime.invoke(&self.mapper, &input, &sandbox).await;
        match report.result {
            Err(MapperError::Other { message }) => match serde_json::from_str(&message) {
                Ok(CheckAnswer::Ok) => Ok(()),
                Ok(CheckAnswer::SyntaxError {
                    message,
                    line,
                    column,
                }) => Err(ScriptError::Syntax {
                    message,
                    line,
                    column,
                }),
                Err(_) => Err(ScriptError::Engine(message)),
            },
            Err(e) => Err(ScriptError::Engine(e.to_string())),
            Ok(_) => Err(ScriptError::Engine(
                "the engine ran the script instead of checking it".into(),
            )),
        }
    }
}

/// Refuses empty and over-long scripts before the engine sees them.
pub fn check_length(script: &str) -> Result<(), ScriptError> {
    if script.trim().is_empty() {
        return Err(ScriptError::Empty);
    }
    let chars = script.chars().count();
    if chars > MAX_SCRIPT_CHARS {
        return Err(ScriptError::TooLong { chars });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_engine_is_a_component() {
        // `\0asm`, version 0x0d, layer 1: a component, not a core module.
        assert_eq!(&ENGINE_WASM[..8], b"\0asm\x0d\0\x01\0");
        assert_eq!(engine_digest().len(), 64);
    }

    #[test]
    fn empty_and_over_long_scripts_are_refused_before_the_engine() {
        assert_eq!(check_length(" \n"), Err(ScriptError::Empty));
        let long = "x".repeat(MAX_SCRIPT_CHARS + 1);
        assert_eq!(
            check_length(&long),
            Err(ScriptError::TooLong {
                chars: MAX_SCRIPT_CHARS + 1
            })
        );
        assert!(check_length("function (a, c, cb) { cb(null, {user_id: 1}) }").is_ok());
    }
}
