//! `/api/v2/actions`: post-login Actions in Auth0's shapes
//! (`/actions/actions`, `deploy`, versions and their roll back,
//! `/actions/triggers/post-login/bindings`, `test`), with one addition for
//! code that is not JavaScript: the component is uploaded as the Action's
//! draft with `PUT /api/v2/actions/actions/{id}/component`
//! (`application/wasm`), then deployed as Auth0 deploys code.

use std::sync::Arc;

use http::Method;
use serde::{Deserialize, Serialize};

use super::{
    ApiError, ApiReply, ApiRequest, Caller, MAX_MAPPER_BYTES, json_body, method_not_allowed,
};
use crate::actions::{
    ActionCode, ActionEvent, ActionLoadError, LoadedAction, POST_LOGIN_TRIGGER, ScriptCode,
    ScriptKind, is_script_runtime,
};
use crate::broker::Broker;
use crate::broker::oauth::Params;
use crate::egress::HostRule;
use crate::mapper::{LoadError, sha256_hex};
use crate::store::{
    ActionEntry, ActionVersion, StoredAction, StoredActionSecret, StoredMapperEgress,
};

/// The runtime of component Actions. Auth0's `node18`/`node22` (and its
/// older ones) mean JavaScript `code`, run by the shipped script engine
/// (`crate::actions::script`).
pub const WASM_RUNTIME: &str = "wasm";
/// The runtime an Action created with `code` and no `runtime` gets
/// (Auth0's current one).
pub const DEFAULT_SCRIPT_RUNTIME: &str = "node22";
/// Longest Action name (Auth0 allows this many characters).
pub const MAX_ACTION_NAME_CHARS: usize = 100;
/// Most secrets one Action may have; each is handed to every call.
pub const MAX_ACTION_SECRETS: usize = 50;
/// Most Actions bound to the trigger: each one runs in every login.
pub const MAX_BINDINGS: usize = 20;

/// `POST /api/v2/actions/actions` and `PATCH …/{id}`: Auth0's fields, and
/// Waypass's `egress` and `timeout_ms`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ActionBody {
    name: Option<String>,
    supported_triggers: Option<Vec<TriggerRef>>,
    runtime: Option<String>,
    code: Option<String>,
    #[serde(default)]
    dependencies: Option<Vec<serde_json::Value>>,
    secrets: Option<Vec<SecretBody>>,
    egress: Option<EgressBody>,
    timeout_ms: Option<u64>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct TriggerRef {
    id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    version: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretBody {
    name: String,
    value: String,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct EgressBody {
    #[serde(default)]
    allowed_hosts: Vec<String>,
    #[serde(default)]
    allow_private_networks: bool,
}

/// An Action as the API shows it (secret values never).
#[derive(Debug, Serialize)]
struct ActionView {
    id: String,
    name: String,
    supported_triggers: Vec<TriggerRef>,
    runtime: String,
    secrets: Vec<SecretView>,
    egress: EgressBody,
    #[serde(skip_serializing_if = "Option::is_none")]
    timeout_ms: Option<u64>,
    /// SHA-256 of the uploaded component the next deploy deploys.
    #[serde(skip_serializing_if = "Option::is_none")]
    draft_sha256: Option<String>,
    /// The version that runs (absent: never deployed).
    #[serde(skip_serializing_if = "Option::is_none")]
    deployed_version: Option<u32>,
    created_at: u64,
    updated_at: u64,
}

#[derive(Debug, Serialize)]
struct SecretView {
    name: String,
}

/// One version, as the API shows it.
#[derive(Debug, Serialize)]
struct VersionView {
    id: String,
    action_id: String,
    number: u32,
    deployed: bool,
    sha256: String,
    size: u64,
    created_at: u64,
    created_by: String,
}

/// `PATCH /api/v2/actions/triggers/post-login/bindings`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BindingsBody {
    bindings: Vec<BindingBody>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BindingBody {
    #[serde(rename = "ref")]
    reference: BindingRef,
    /// Accepted as Auth0 sends it; a binding is shown with its Action's
    /// name.
    #[serde(default, rename = "display_name")]
    _display_name: Option<serde::de::IgnoredAny>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BindingRef {
    /// `action_id` or `action_name`.
    #[serde(rename = "type")]
    kind: String,
    value: String,
}

#[derive(Debug, Serialize)]
struct BindingView {
    id: String,
    trigger_id: &'static str,
    display_name: String,
    action: BindingAction,
}

#[derive(Debug, Serialize)]
struct BindingAction {
    id: String,
    name: String,
}

/// `POST /api/v2/actions/actions/{id}/test`: Auth0's `payload` is the event.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestBody {
    payload: ActionEvent,
}

impl Broker {
    pub(super) async fn actions_api(
        &self,
        req: &ApiRequest<'_>,
        seg: &[&str],
        caller: &Caller,
    ) -> Result<ApiReply, ApiError> {
        match (req.method, seg) {
            (&Method::GET, ["actions"]) => {
                let list: Vec<ActionView> = self.store.actions().await?.iter().map(view).collect();
                let total = list.len();
                Ok(json_reply(
                    200,
                    &serde_json::json!({"actions": list, "total": total}),
                ))
            }
            (&Method::POST, ["actions"]) => self.create_action(req).await,
            (&Method::GET, ["actions", id]) => {
                Ok(json_reply(200, &view(&self.action_entry(id).await?)))
            }
            (&Method::PATCH, ["actions", id]) => self.update_action(id, req).await,
            (&Method::DELETE, ["actions", id]) => {
                let params =
                    Params::parse(req.query).map_err(|e| ApiError::bad_request(e.description))?;
                let bound = self.store.post_login_bindings().await?;
                if bound.iter().any(|b| b == id) && params.get("force") != Some("true") {
                    return Err(ApiError::new(
                        409,
                        format!(
                            "action `{id}` is bound to the post-login trigger; unbind it or send ?force=true"
                        ),
                    ));
                }
                if !self.store.delete_action(id).await? {
                    return Err(ApiError::not_found(format!("action `{id}`")));
                }
                self.catalog_changed().await;
                Ok(super::ApiReply::no_content())
            }
            (&Method::PUT, ["actions", id, "component"]) => self.upload_component(id, req).await,
            (&Method::POST, ["actions", id, "deploy"]) => {
                let version = self
                    .store
                    .deploy_action(id, &caller.id, self.clock.now())
                    .await?
                    .ok_or_else(|| {
                        ApiError::new(
                            409,
                            format!("action `{id}` does not exist or has nothing new to deploy: upload a component with PUT /api/v2/actions/actions/{id}/component, or PATCH its `code`"),
                        )
                    })?;
                self.catalog_changed().await;
                tracing::info!(caller = %caller.id, action = %id, version = version.version, "action deployed");
                Ok(json_reply(200, &version_view(&version, true)))
            }
            (&Method::GET, ["actions", id, "versions"]) => {
                let entry = self.action_entry(id).await?;
                let versions: Vec<VersionView> = self
                    .store
                    .action_versions(id)
                    .await?
                    .iter()
                    .rev()
                    .map(|v| version_view(v, v.version == entry.active_version))
                    .collect();
                let total = versions.len();
                Ok(json_reply(
                    200,
                    &serde_json::json!({"versions": versions, "total": total}),
                ))
            }
            (&Method::GET, ["actions", id, "versions", number]) => {
                let number = parse_version(number)?;
                let entry = self.action_entry(id).await?;
                let version = self
                    .store
                    .action_versions(id)
                    .await?
                    .into_iter()
                    .find(|v| v.version == number)
                    .ok_or_else(|| {
                        ApiError::not_found(format!("action `{id}` version {number}"))
                    })?;
                Ok(json_reply(
                    200,
                    &version_view(&version, number == entry.active_version),
                ))
            }
            // Auth0's roll back: deploy an earlier version again.
            (&Method::POST, ["actions", id, "versions", number, "deploy"]) => {
                let number = parse_version(number)?;
                let bytes = self.store.action_bytes(id, number).await?.ok_or_else(|| {
                    ApiError::not_found(format!("action `{id}` version {number}"))
                })?;
                // Loaded first: a version that no longer loads is refused
                // before anything changes.
                let entry = self.action_entry(id).await?;
                self.action_code(&entry.action, bytes).await?;
                if !self.store.activate_action_version(id, number).await? {
                    return Err(ApiError::not_found(format!(
                        "action `{id}` version {number}"
                    )));
                }
                self.catalog_changed().await;
                tracing::info!(caller = %caller.id, action = %id, version = number, "action version deployed again");
                let version = self
                    .store
                    .action_versions(id)
                    .await?
                    .into_iter()
                    .find(|v| v.version == number)
                    .ok_or_else(|| {
                        ApiError::not_found(format!("action `{id}` version {number}"))
                    })?;
                Ok(json_reply(200, &version_view(&version, true)))
            }
            (&Method::POST, ["actions", id, "test"]) => self.test_action(id, req).await,
            (&Method::GET, ["triggers", POST_LOGIN_TRIGGER, "bindings"]) => {
                let bindings = self.binding_views().await?;
                let total = bindings.len();
                Ok(json_reply(
                    200,
                    &serde_json::json!({"bindings": bindings, "total": total}),
                ))
            }
            (&Method::PATCH, ["triggers", POST_LOGIN_TRIGGER, "bindings"]) => {
                self.set_bindings(req, caller).await
            }
            (_, ["triggers", other, ..]) if *other != POST_LOGIN_TRIGGER => {
                Err(ApiError::not_found(format!(
                    "trigger `{other}` (Waypass has `{POST_LOGIN_TRIGGER}`)"
                )))
            }
            _ => Err(method_not_allowed()),
        }
    }

    async fn action_entry(&self, id: &str) -> Result<ActionEntry, ApiError> {
        self.store
            .actions()
            .await?
            .into_iter()
            .find(|a| a.action.id == id)
            .ok_or_else(|| ApiError::not_found(format!("action `{id}`")))
    }

    async fn create_action(&self, req: &ApiRequest<'_>) -> Result<ApiReply, ApiError> {
        let mut body: ActionBody = parse_body(req)?;
        let code = body.code.take();
        let now = self.clock.now();
        let name = body
            .name
            .clone()
            .ok_or_else(|| ApiError::bad_request("`name` is required"))?;
        let triggers = body
            .supported_triggers
            .as_deref()
            .ok_or_else(|| ApiError::bad_request("`supported_triggers` is required"))?;
        let mut action = StoredAction {
            id: format!("act_{}", self.random.identifier(16)),
            name,
            supported_triggers: check_triggers(triggers)?,
            runtime: match (body.runtime.as_deref(), &code) {
                (Some(runtime), _) => check_runtime(runtime)?.to_owned(),
                (None, Some(_)) => DEFAULT_SCRIPT_RUNTIME.into(),
                (None, None) => WASM_RUNTIME.into(),
            },
            secrets: Vec::new(),
            egress: StoredMapperEgress::default(),
            timeout_ms: None,
            draft_sha256: None,
            created_at: now,
            updated_at: now,
        };
        apply(&mut action, body)?;
        let draft = self.script_draft(&mut action, code).await?;
        if is_script_runtime(&action.runtime) && draft.is_none() {
            return Err(ApiError::bad_request(format!(
                "`code` is required for runtime `{}`",
                action.runtime
            )));
        }
        self.store
            .put_action(&action, draft.as_deref().map(str::as_bytes))
            .await?;
        self.catalog_changed().await;
        Ok(json_reply(
            201,
            &view(&ActionEntry {
                action,
                active_version: 0,
            }),
        ))
    }

    async fn update_action(&self, id: &str, req: &ApiRequest<'_>) -> Result<ApiReply, ApiError> {
        let mut body: ActionBody = parse_body(req)?;
        let code = body.code.take();
        let mut entry = self.action_entry(id).await?;
        if let Some(runtime) = body.runtime.as_deref() {
            let runtime = check_runtime(runtime)?;
            if is_script_runtime(runtime) != is_script_runtime(&entry.action.runtime) {
                return Err(ApiError::new(
                    409,
                    format!(
                        "action `{id}` runs on `{}`; its versions cannot move to `{runtime}` (create another action)",
                        entry.action.runtime
                    ),
                ));
            }
            entry.action.runtime = runtime.to_owned();
        }
        if let Some(triggers) = &body.supported_triggers {
            entry.action.supported_triggers = check_triggers(triggers)?;
        }
        if let Some(name) = &body.name {
            entry.action.name = name.clone();
        }
        apply(&mut entry.action, body)?;
        let draft = self.script_draft(&mut entry.action, code).await?;
        entry.action.updated_at = self.clock.now();
        self.store
            .put_action(&entry.action, draft.as_deref().map(str::as_bytes))
            .await?;
        self.catalog_changed().await;
        Ok(json_reply(200, &view(&entry)))
    }

    /// Validates the component as an Action (compiled off the async
    /// workers) and stores it as the draft.
    async fn upload_component(&self, id: &str, req: &ApiRequest<'_>) -> Result<ApiReply, ApiError> {
        if !req
            .content_type
            .is_some_and(|c| c.starts_with("application/wasm"))
        {
            return Err(ApiError::new(415, "send the component as application/wasm"));
        }
        if req.body.len() > MAX_MAPPER_BYTES {
            return Err(ApiError::new(
                413,
                format!("the component is over {MAX_MAPPER_BYTES} bytes"),
            ));
        }
        let mut entry = self.action_entry(id).await?;
        if is_script_runtime(&entry.action.runtime) {
            return Err(ApiError::new(
                409,
                format!(
                    "action `{id}` is JavaScript (`{}`): send its `code` with PATCH /api/v2/actions/actions/{id}",
                    entry.action.runtime
                ),
            ));
        }
        let loaded = self.compile_action(req.body.clone()).await?;
        entry.action.draft_sha256 = Some(loaded.digest().to_owned());
        entry.action.updated_at = self.clock.now();
        self.store
            .put_action(&entry.action, Some(&req.body))
            .await?;
        self.catalog_changed().await;
        Ok(json_reply(200, &view(&entry)))
    }

    /// A JavaScript Action's new `code`, checked by the script engine
    /// (compiled, not run) and recorded as the draft the next deploy
    /// deploys. `None` when the body has no code.
    async fn script_draft(
        &self,
        action: &mut StoredAction,
        code: Option<String>,
    ) -> Result<Option<String>, ApiError> {
        let Some(code) = code else {
            return Ok(None);
        };
        if !is_script_runtime(&action.runtime) {
            return Err(ApiError::bad_request(format!(
                "`code` (JavaScript) runs on Auth0's runtimes ({}); a `{WASM_RUNTIME}` action is uploaded with PUT /api/v2/actions/actions/{{id}}/component",
                crate::actions::script::NODE_RUNTIMES.join(", ")
            )));
        }
        let engine = self
            .script_engine()
            .await
            .map_err(|e| ApiError::new(500, e))?;
        crate::actions::script::check_script(&self.runtime, &engine, ScriptKind::Action, &code)
            .await
            .map_err(|e| ApiError::bad_request(format!("code: {e}")))?;
        action.draft_sha256 = Some(sha256_hex(code.as_bytes()));
        Ok(Some(code))
    }

    /// What runs a stored version's `bytes` of `action`: its component,
    /// loaded, or its JavaScript code with the script engine.
    async fn action_code(
        &self,
        action: &StoredAction,
        bytes: Vec<u8>,
    ) -> Result<ActionCode, ApiError> {
        if !is_script_runtime(&action.runtime) {
            return Ok(ActionCode::Component(Arc::new(
                self.compile_action(bytes.into()).await?,
            )));
        }
        let source = String::from_utf8(bytes)
            .map_err(|_| ApiError::new(422, "the version's code is not UTF-8"))?;
        let engine = self
            .script_engine()
            .await
            .map_err(|e| ApiError::new(500, e))?;
        Ok(ActionCode::Script(ScriptCode {
            kind: ScriptKind::Action,
            source: source.into(),
            engine,
            configuration: Default::default(),
        }))
    }

    /// Loads `bytes` as an Action on a blocking thread.
    async fn compile_action(&self, bytes: bytes::Bytes) -> Result<LoadedAction, ApiError> {
        let runtime = self.runtime.clone();
        let digest = sha256_hex(&bytes);
        tokio::task::spawn_blocking(move || runtime.load_action_with_digest(&bytes, digest))
            .await
            .map_err(|e| ApiError::new(500, format!("compiling the action failed: {e}")))?
            .map_err(|e| match &e {
                ActionLoadError::Other(LoadError::NotAComponent(_) | LoadError::Compile(_)) => {
                    ApiError::bad_request(e.to_string())
                }
                ActionLoadError::Other(LoadError::TooLarge { .. }) => {
                    ApiError::new(413, e.to_string())
                }
                _ => ApiError::new(422, e.to_string()),
            })
    }

    /// Runs the deployed version with the given event: its answer, log
    /// lines and requests, as `try` does for connections. Nothing is
    /// written.
    async fn test_action(&self, id: &str, req: &ApiRequest<'_>) -> Result<ApiReply, ApiError> {
        let body: TestBody = parse_body(req)?;
        let Ok(_running) = self.try_calls.try_acquire() else {
            return Err(ApiError::new(
                503,
                format!(
                    "{} test calls are running; try again when one has finished",
                    crate::broker::MAX_CONCURRENT_TRY_CALLS
                ),
            ));
        };
        let entry = self.action_entry(id).await?;
        if entry.active_version == 0 {
            return Err(ApiError::new(
                409,
                format!("action `{id}` has never been deployed; deploy it, then test it"),
            ));
        }
        let loaded = self.catalog_read().actions.get(id, entry.active_version);
        let code = match loaded {
            Some(loaded) => ActionCode::Component(loaded),
            None => {
                let bytes = self
                    .store
                    .action_bytes(id, entry.active_version)
                    .await?
                    .ok_or_else(|| ApiError::not_found(format!("action `{id}`")))?;
                self.action_code(&entry.action, bytes).await?
            }
        };
        let bound =
            crate::actions::BoundAction::from_stored(&entry.action, entry.active_version, code)
                .map_err(ApiError::bad_request)?;
        let report = bound.invoke(&self.runtime, &body.payload).await;
        let result = match &report.result {
            Ok(outcome) => serde_json::to_value(outcome).unwrap_or_default(),
            Err(e) => serde_json::json!({"outcome": "error", "error": e, "message": e.to_string()}),
        };
        Ok(json_reply(
            200,
            &serde_json::json!({
                "version": entry.active_version,
                "result": result,
                "logs": report.logs,
                "dropped_log_lines": report.dropped_log_lines,
                "requests": report.requests,
                "elapsed_us": report.elapsed.as_micros() as u64,
                "peak_memory_bytes": report.peak_memory_bytes,
            }),
        ))
    }

    async fn binding_views(&self) -> Result<Vec<BindingView>, ApiError> {
        let actions = self.store.actions().await?;
        Ok(self
            .store
            .post_login_bindings()
            .await?
            .into_iter()
            .enumerate()
            .map(|(position, id)| {
                let name = actions
                    .iter()
                    .find(|a| a.action.id == id)
                    .map(|a| a.action.name.clone())
                    .unwrap_or_default();
                BindingView {
                    id: format!("{POST_LOGIN_TRIGGER}:{position}"),
                    trigger_id: POST_LOGIN_TRIGGER,
                    display_name: name.clone(),
                    action: BindingAction { id, name },
                }
            })
            .collect())
    }

    /// Replaces the ordered list: the next login runs the new order.
    async fn set_bindings(
        &self,
        req: &ApiRequest<'_>,
        caller: &Caller,
    ) -> Result<ApiReply, ApiError> {
        let body: BindingsBody = parse_body(req)?;
        if body.bindings.len() > MAX_BINDINGS {
            return Err(ApiError::bad_request(format!(
                "at most {MAX_BINDINGS} actions may be bound to a trigger"
            )));
        }
        let actions = self.store.actions().await?;
        let mut ids = Vec::with_capacity(body.bindings.len());
        for binding in &body.bindings {
            let found = match binding.reference.kind.as_str() {
                "action_id" => actions
                    .iter()
                    .find(|a| a.action.id == binding.reference.value),
                "action_name" => actions
                    .iter()
                    .find(|a| a.action.name == binding.reference.value),
                other => {
                    return Err(ApiError::bad_request(format!(
                        "ref.type `{other}`: expected `action_id` or `action_name`"
                    )));
                }
            };
            let entry = found.ok_or_else(|| {
                ApiError::bad_request(format!(
                    "no action with {} `{}`",
                    binding.reference.kind, binding.reference.value
                ))
            })?;
            if !entry
                .action
                .supported_triggers
                .iter()
                .any(|t| t == POST_LOGIN_TRIGGER)
            {
                return Err(ApiError::bad_request(format!(
                    "action `{}` does not support the `{POST_LOGIN_TRIGGER}` trigger",
                    entry.action.name
                )));
            }
            if entry.active_version == 0 {
                return Err(ApiError::bad_request(format!(
                    "action `{}` has never been deployed; deploy it before binding it",
                    entry.action.name
                )));
            }
            if ids.contains(&entry.action.id) {
                return Err(ApiError::bad_request(format!(
                    "action `{}` is bound twice",
                    entry.action.name
                )));
            }
            ids.push(entry.action.id.clone());
        }
        self.store.set_post_login_bindings(&ids).await?;
        self.catalog_changed().await;
        tracing::info!(caller = %caller.id, bindings = ?ids, "post-login bindings set");
        let bindings = self.binding_views().await?;
        Ok(json_reply(200, &serde_json::json!({"bindings": bindings})))
    }
}

fn json_reply(status: u16, value: &impl Serialize) -> ApiReply {
    ApiReply::json(status, serde_json::to_value(value).unwrap_or_default())
}

fn parse_body<T: for<'de> Deserialize<'de>>(req: &ApiRequest<'_>) -> Result<T, ApiError> {
    serde_json::from_value(json_body(req)?).map_err(|e| ApiError::bad_request(e.to_string()))
}

fn parse_version(number: &str) -> Result<u32, ApiError> {
    number
        .parse::<u32>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| ApiError::bad_request(format!("`{number}` is not a version number")))
}

/// `runtime` if Waypass runs it: `wasm`, or one of Auth0's Node.js ones.
fn check_runtime(runtime: &str) -> Result<&str, ApiError> {
    if runtime == WASM_RUNTIME || is_script_runtime(runtime) {
        Ok(runtime)
    } else {
        Err(ApiError::bad_request(format!(
            "runtime `{runtime}` is not available: `{WASM_RUNTIME}` (a component) or one of {} (JavaScript `code`)",
            crate::actions::script::NODE_RUNTIMES.join(", ")
        )))
    }
}

fn check_triggers(triggers: &[TriggerRef]) -> Result<Vec<String>, ApiError> {
    if triggers.is_empty() {
        return Err(ApiError::bad_request("`supported_triggers` is empty"));
    }
    triggers
        .iter()
        .map(|t| {
            if t.id == POST_LOGIN_TRIGGER {
                Ok(t.id.clone())
            } else {
                Err(ApiError::bad_request(format!(
                    "trigger `{}` is not supported (Waypass has `{POST_LOGIN_TRIGGER}`)",
                    t.id
                )))
            }
        })
        .collect()
}

/// Applies the optional fields of a create or update body.
fn apply(action: &mut StoredAction, body: ActionBody) -> Result<(), ApiError> {
    if action.name.trim().is_empty()
        || action.name.chars().count() > MAX_ACTION_NAME_CHARS
        || action.name.chars().any(char::is_control)
    {
        return Err(ApiError::bad_request(format!(
            "`name` must be 1 to {MAX_ACTION_NAME_CHARS} characters without control characters"
        )));
    }
    if body.dependencies.as_ref().is_some_and(|d| !d.is_empty()) {
        return Err(ApiError::bad_request(
            "`dependencies` (npm packages) are not installed: JavaScript Actions `require` what the script engine ships (see docs/auth0-scripts.md), and a component carries its own",
        ));
    }
    if let Some(secrets) = body.secrets {
        if secrets.len() > MAX_ACTION_SECRETS {
            return Err(ApiError::bad_request(format!(
                "at most {MAX_ACTION_SECRETS} secrets"
            )));
        }
        if let Some(s) = secrets.iter().find(|s| s.name.trim().is_empty()) {
            return Err(ApiError::bad_request(format!(
                "a secret's name is empty (value of length {})",
                s.value.len()
            )));
        }
        action.secrets = secrets
            .into_iter()
            .map(|s| StoredActionSecret {
                name: s.name,
                value: s.value,
            })
            .collect();
    }
    if let Some(egress) = body.egress {
        for host in &egress.allowed_hosts {
            host.parse::<HostRule>()
                .map_err(|e| ApiError::bad_request(format!("egress.allowed_hosts: {e}")))?;
        }
        action.egress = StoredMapperEgress {
            allowed_hosts: egress.allowed_hosts,
            allow_private_networks: egress.allow_private_networks,
        };
    }
    if let Some(ms) = body.timeout_ms {
        action.timeout_ms = Some(ms);
    }
    Ok(())
}

fn view(entry: &ActionEntry) -> ActionView {
    let a = &entry.action;
    ActionView {
        id: a.id.clone(),
        name: a.name.clone(),
        supported_triggers: a
            .supported_triggers
            .iter()
            .map(|id| TriggerRef {
                id: id.clone(),
                version: None,
            })
            .collect(),
        runtime: a.runtime.clone(),
        secrets: a
            .secrets
            .iter()
            .map(|s| SecretView {
                name: s.name.clone(),
            })
            .collect(),
        egress: EgressBody {
            allowed_hosts: a.egress.allowed_hosts.clone(),
            allow_private_networks: a.egress.allow_private_networks,
        },
        timeout_ms: a.timeout_ms,
        draft_sha256: a.draft_sha256.clone(),
        deployed_version: (entry.active_version > 0).then_some(entry.active_version),
        created_at: a.created_at,
        updated_at: a.updated_at,
    }
}

fn version_view(v: &ActionVersion, deployed: bool) -> VersionView {
    VersionView {
        id: format!("{}:{}", v.action_id, v.version),
        action_id: v.action_id.clone(),
        number: v.version,
        deployed,
        sha256: v.sha256.clone(),
        size: v.size,
        created_at: v.created_at,
        created_by: v.created_by.clone(),
    }
}
