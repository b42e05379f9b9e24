//! Auth0's own post-login code, unchanged, in the shipped script engine
//! (`crate::script`): Actions (`exports.onExecutePostLogin = async (event,
//! api) => { … }`, runtime `node18`/`node22`) and legacy Rules
//! (`function (user, context, callback) { … }`).
//!
//! The engine is a mapper component; the host chooses the entry point with
//! its reserved settings: `waypass:mode` (`post-login` or `rule`), the code
//! as `waypass:script`, the event as `waypass:event` (an [`ActionEvent`] as
//! JSON) and the secrets as `waypass:secrets` (a JSON object). The engine
//! answers a profile whose `extra` is the outcome ([`ScriptOutcome`]); the
//! host checks it exactly as a component's answer (restricted claims,
//! caps, scope tokens). Each call is a fresh engine instance under the
//! Action's own sandbox: its egress allow-list, deadline and memory cap
//! (`plugins/script-engine/postlogin.js` builds Auth0's objects).

use std::sync::Arc;

use serde::Deserialize;

use super::bindings;
use super::runtime::check_changes;
use super::{ActionError, ActionEvent, ActionOutcome, ActionReport, MAX_MESSAGE_BYTES};
use crate::egress::EgressPolicy;
use crate::mapper::{Limits, MapperError, MapperInput, Runtime, Sandbox, Settings, TokenSet};
use crate::script::{MODE_SETTING, SCRIPT_SETTING, ScriptEngine, ScriptError, check_length};
use crate::store::Metadata;

/// The setting that carries the event to the engine.
pub const EVENT_SETTING: &str = "waypass:event";
/// The setting that carries the Action's secrets to the engine.
pub const SECRETS_SETTING: &str = "waypass:secrets";
/// The user id of the engine's answer in the post-login modes.
const OUTCOME_USER_ID: &str = "waypass:post-login";
/// The engine's answer carries every claim and metadata change of one
/// call: room for both caps together (checked again, each on its own, in
/// [`check_changes`]) and for the JSON around them.
const MAX_OUTCOME_BYTES: usize =
    super::MAX_CUSTOM_CLAIMS_BYTES + super::MAX_METADATA_CHANGE_BYTES + (16 << 10);

/// The runtimes of Auth0 Actions (`runtime` in Auth0's Management API): the
/// code runs in the script engine, whichever Node.js version it was
/// written for.
pub const NODE_RUNTIMES: &[&str] = &["node12", "node16", "node18", "node18-actions", "node22"];

/// Whether `runtime` is one of Auth0's JavaScript runtimes.
pub fn is_script_runtime(runtime: &str) -> bool {
    NODE_RUNTIMES.contains(&runtime)
}

/// Which Auth0 form the code is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScriptKind {
    /// `exports.onExecutePostLogin = async (event, api) => { … }`.
    Action,
    /// `function (user, context, callback) { … }`.
    Rule,
}

impl ScriptKind {
    fn mode(self) -> &'static str {
        match self {
            Self::Action => "post-login",
            Self::Rule => "rule",
        }
    }

    /// The engine's compile-only mode for this form.
    fn check_mode(self) -> &'static str {
        match self {
            Self::Action => "check-post-login",
            // A Rule is a function expression, as a fetchUserProfile script.
            Self::Rule => "check",
        }
    }
}

/// Auth0 code to run for a login, with the engine that runs it.
#[derive(Clone)]
pub struct ScriptCode {
    pub kind: ScriptKind,
    pub source: Arc<str>,
    pub engine: Arc<ScriptEngine>,
    /// A Rule's `configuration` (Auth0's Rules settings); empty for Actions.
    pub configuration: Settings,
}

/// The engine's outcome (see `plugins/script-engine/mapper.js`).
#[derive(Debug, Deserialize)]
#[serde(tag = "outcome", rename_all = "kebab-case", deny_unknown_fields)]
pub enum ScriptOutcome {
    Deny {
        reason: String,
    },
    Proceed {
        #[serde(default)]
        id_token_claims: Metadata,
        #[serde(default)]
        access_token_claims: Metadata,
        #[serde(default)]
        app_metadata: Metadata,
        #[serde(default)]
        user_metadata: Metadata,
        #[serde(default)]
        add_scopes: Vec<String>,
        #[serde(default)]
        remove_scopes: Vec<String>,
    },
}

/// The engine's answer to a check.
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

fn properties(map: Metadata) -> Vec<bindings::Property> {
    map.into_iter()
        .map(|(name, value)| bindings::Property {
            name,
            value: value.to_string(),
        })
        .collect()
}

impl ScriptOutcome {
    /// The outcome, checked as a component's answer is.
    fn check(self) -> Result<ActionOutcome, ActionError> {
        match self {
            Self::Deny { reason } => Ok(ActionOutcome::Deny {
                reason: crate::mapper::truncate(reason, MAX_MESSAGE_BYTES),
            }),
            Self::Proceed {
                id_token_claims,
                access_token_claims,
                app_metadata,
                user_metadata,
                add_scopes,
                remove_scopes,
            } => check_changes(bindings::Changes {
                id_token_claims: properties(id_token_claims),
                access_token_claims: properties(access_token_claims),
                app_metadata: properties(app_metadata),
                user_metadata: properties(user_metadata),
                add_scopes,
                remove_scopes,
            })
            .map(ActionOutcome::Proceed),
        }
    }
}

/// Auth0's error for a script that throws or calls back with an error:
/// the engine's message; the sandbox's verdicts as they are.
fn script_error(e: MapperError) -> ActionError {
    match e {
        MapperError::Other { message }
        | MapperError::Provider { message }
        | MapperError::Unauthorized { message } => ActionError::Failed {
            message: crate::mapper::truncate(message, MAX_MESSAGE_BYTES),
        },
        MapperError::InvalidProfile { message } => ActionError::InvalidOutput { message },
        other => ActionError::Call(other),
    }
}

impl Runtime {
    /// Runs Auth0 code `code` once on `event`, in a fresh engine instance,
    /// under `sandbox`; `share_key` names whose share of the pool it uses
    /// (the same share as a component Action's).
    pub async fn invoke_script_action(
        &self,
        code: &ScriptCode,
        event: &ActionEvent,
        secrets: &[(String, String)],
        sandbox: &Sandbox,
        share_key: &str,
    ) -> ActionReport {
        let secrets: serde_json::Map<String, serde_json::Value> = secrets
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect();
        let mut settings = code.configuration.clone();
        settings.insert(MODE_SETTING, code.kind.mode());
        settings.insert(SCRIPT_SETTING, &*code.source);
        settings.insert(
            EVENT_SETTING,
            serde_json::to_string(event).unwrap_or_default(),
        );
        settings.insert(
            SECRETS_SETTING,
            serde_json::Value::Object(secrets).to_string(),
        );
        let input = MapperInput {
            connection: format!("action:{share_key}"),
            tokens: TokenSet::bearer(""),
            settings,
        };
        let sandbox = Sandbox {
            egress: Arc::clone(&sandbox.egress),
            limits: Limits {
                max_profile_bytes: MAX_OUTCOME_BYTES,
                ..sandbox.limits
            },
        };
        let report = self.invoke(code.engine.mapper(), &input, &sandbox).await;
        let result = match report.result {
            Err(e) => Err(script_error(e)),
            Ok(profile) if profile.user_id != OUTCOME_USER_ID => Err(ActionError::InvalidOutput {
                message: "the script engine did not answer a post-login outcome".into(),
            }),
            Ok(profile) => {
                serde_json::from_value::<ScriptOutcome>(serde_json::Value::Object(profile.extra))
                    .map_err(|e| ActionError::InvalidOutput {
                        message: format!("the script engine's outcome does not parse: {e}"),
                    })
                    .and_then(ScriptOutcome::check)
            }
        };
        ActionReport {
            result,
            logs: report.logs,
            dropped_log_lines: report.dropped_log_lines,
            requests: report.requests,
            elapsed: report.elapsed,
            peak_memory_bytes: report.peak_memory_bytes,
        }
    }
}

/// Compiles Auth0 code of `kind` without running it: a syntax error with
/// its line and column, as for `fetchUserProfile` scripts.
pub async fn check_script(
    runtime: &Runtime,
    engine: &ScriptEngine,
    kind: ScriptKind,
    source: &str,
) -> Result<(), ScriptError> {
    check_length(source)?;
    let mut settings = Settings::new();
    settings.insert(MODE_SETTING, kind.check_mode());
    settings.insert(SCRIPT_SETTING, source);
    let input = MapperInput {
        connection: "script-check".into(),
        tokens: TokenSet::bearer(""),
        settings,
    };
    // Compiling runs nothing of the code: no network, default limits.
    let sandbox = Sandbox {
        egress: Arc::new(EgressPolicy::default()),
        limits: Limits::default(),
    };
    let report = runtime.invoke(engine.mapper(), &input, &sandbox).await;
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
            "the engine ran the code instead of checking it".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outcome_with_a_restricted_claim_keeps_the_rest_and_drops_it() {
        let outcome: ScriptOutcome = serde_json::from_value(serde_json::json!({
            "outcome": "proceed",
            "id_token_claims": {"sub": "x", "https://example.com/roles": ["admin"]},
            "app_metadata": {"plan": "gold"}
        }))
        .expect("parses");
        let Ok(ActionOutcome::Proceed(changes)) = outcome.check() else {
            panic!("proceeds");
        };
        assert_eq!(
            changes.id_token_claims["https://example.com/roles"],
            serde_json::json!(["admin"])
        );
        assert_eq!(changes.dropped_claims, ["sub"]);
        assert_eq!(changes.app_metadata["plan"], "gold");
    }

    #[test]
    fn an_outcome_of_unknown_shape_is_refused() {
        let parsed = serde_json::from_value::<ScriptOutcome>(serde_json::json!({
            "outcome": "maybe"
        }));
        assert!(parsed.is_err());
    }

    #[test]
    fn auth0_node_runtimes_run_in_the_script_engine_and_wasm_does_not() {
        assert!(is_script_runtime("node18"));
        assert!(is_script_runtime("node22"));
        assert!(!is_script_runtime("wasm"));
    }
}
