//! Post-login Actions: code that runs for every login, whatever the
//! connection, after the user is recorded and before the app's code is
//! issued (`wit/action/action.wit`, world `waypass:action/post-login`).
//!
//! - An Action is a WebAssembly component of the post-login world, loaded by
//!   the same [`Runtime`] as mappers: one engine, one pool, one linker (the
//!   `http` and `log` interfaces are the mapper world's), the same limits
//!   and egress policy, each Action with its own allow-list and secrets
//!   ([`runtime`]). Every call gets a fresh instance.
//! - The catalog holds the Actions bound to the trigger, in order, each at
//!   its active version ([`PostLoginChain`]); a login resolves the chain
//!   once and keeps it to its end.
//! - [`PostLoginTrigger::run`] is the login path's one call: it runs the
//!   chain, stops at the first deny or failure, and only when every Action
//!   let the login go on writes the metadata changes, once, and hands back
//!   the claims and scopes for the code's grant. A failing Action fails the
//!   login; none is ever skipped.

mod bindings;
pub mod runtime;
pub mod script;

use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use runtime::{ActionLoadError, LoadedAction};
pub use script::{ScriptCode, ScriptKind, is_script_runtime};

use crate::egress::{EgressPolicy, HostRule, RequestRecord};
use crate::mapper::{Limits, LogLine, MapperError, Runtime, Sandbox};
use crate::store::{Metadata, Store, StoreError, StoredAction, User, merge_metadata};

/// The world every Action implements.
pub const WORLD: &str = "waypass:action/post-login@0.1.0";
/// The function every Action exports.
pub const EXPORT: &str = "on-execute-post-login";
/// The one trigger Actions bind to.
pub const POST_LOGIN_TRIGGER: &str = "post-login";

/// Claims an Action can never set: the ones the token's meaning rests on
/// (RFC 7519 §4.1, OpenID Connect Core §2 and §3.1.3.6, RFC 9068 §2.2,
/// RFC 7800, RFC 8693 §4), the ones Auth0 restricts
/// (<https://auth0.com/docs/secure/tokens/json-web-tokens/create-custom-claims>),
/// and the profile claims Waypass fills in from the user's profile. As at
/// Auth0, a restricted claim an Action sets is left out of the token (and
/// logged); the login goes on.
pub const RESTRICTED_CLAIMS: &[&str] = &[
    "iss",
    "sub",
    "aud",
    "exp",
    "iat",
    "nbf",
    "nonce",
    "auth_time",
    "azp",
    "at_hash",
    "c_hash",
    "s_hash",
    "jti",
    "acr",
    "amr",
    "sid",
    "cnf",
    "scope",
    "client_id",
    "kid",
    "typ",
    "cty",
    "gty",
    "act",
    "may_act",
    "permissions",
    "roles",
    "groups",
    "entitlements",
    "org_id",
    "org_name",
    "email",
    "email_verified",
    "name",
    "given_name",
    "family_name",
    "nickname",
    "picture",
    "updated_at",
];

/// All custom claims of one login together, as JSON: Auth0's limit (100
/// KB), which keeps an id_token inside what browsers and proxies accept in
/// a header or URL.
pub const MAX_CUSTOM_CLAIMS_BYTES: usize = 100 << 10;
/// All metadata changes of one login together, as JSON: metadata is for
/// flags and small preferences, and it is read back into every later
/// login's event.
pub const MAX_METADATA_CHANGE_BYTES: usize = 64 << 10;
/// Longest deny reason or error message kept from an Action (it becomes
/// the app's `error_description`).
pub const MAX_MESSAGE_BYTES: usize = 1024;
/// Most scopes an Action may add or remove in one answer.
pub const MAX_SCOPE_CHANGES: usize = 64;

/// Everything an Action knows about the login (the WIT `event`, host side).
/// Its JSON is what `POST /api/v2/actions/actions/{id}/test` and
/// `waypass action run --event FILE` take. Secrets are not part of it:
/// they are the Action's own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionEvent {
    pub user: EventUser,
    pub client: EventClient,
    pub connection: EventConnection,
    #[serde(default)]
    pub request: EventRequest,
    #[serde(default)]
    pub transaction: EventTransaction,
}

/// The user logging in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventUser {
    pub user_id: String,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub email_verified: Option<bool>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub given_name: Option<String>,
    #[serde(default)]
    pub family_name: Option<String>,
    #[serde(default)]
    pub nickname: Option<String>,
    #[serde(default)]
    pub picture: Option<String>,
    /// The whole profile the mapper returned.
    #[serde(default)]
    pub profile: Metadata,
    #[serde(default)]
    pub app_metadata: Metadata,
    #[serde(default)]
    pub user_metadata: Metadata,
    #[serde(default)]
    pub identities: Vec<EventIdentity>,
    #[serde(default)]
    pub created_at: u64,
    #[serde(default)]
    pub logins_count: u64,
}

/// One identity of the user at a provider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventIdentity {
    pub connection: String,
    pub provider: String,
    pub user_id: String,
}

/// The app.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventClient {
    pub client_id: String,
    #[serde(default)]
    pub name: String,
}

/// The connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventConnection {
    pub name: String,
    #[serde(default = "oauth2")]
    pub strategy: String,
}

fn oauth2() -> String {
    "oauth2".into()
}

/// The browser's requests of the login: the address and agent of the one
/// that finished it (the callback), the parameters of the one that
/// started it (`/authorize`, as Auth0's `event.request.query`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventRequest {
    #[serde(default)]
    pub ip: String,
    #[serde(default)]
    pub user_agent: Option<String>,
    /// The host name the login was served on (the issuer's).
    #[serde(default)]
    pub hostname: String,
    /// `/authorize`'s query parameters, in the order received, within
    /// [`MAX_EVENT_QUERY_BYTES`]. Read as `[name, value]` pairs or, as
    /// Auth0's test payloads have it, an object of strings.
    #[serde(default, deserialize_with = "pairs_or_object")]
    pub query: Vec<(String, String)>,
}

/// `[[name, value], …]` or `{name: value, …}`.
fn pairs_or_object<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<(String, String)>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Query {
        Pairs(Vec<(String, String)>),
        Object(std::collections::BTreeMap<String, String>),
    }
    Ok(match Query::deserialize(deserializer)? {
        Query::Pairs(pairs) => pairs,
        Query::Object(map) => map.into_iter().collect(),
    })
}

/// What the app asked for.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventTransaction {
    #[serde(default)]
    pub requested_scopes: Vec<String>,
    #[serde(default)]
    pub redirect_uri: String,
    /// The API (`audience`) the app asked an access token for.
    #[serde(default)]
    pub audience: Option<String>,
    /// `/authorize`'s `prompt` (OpenID Connect Core §3.1.2.1), as sent.
    #[serde(default)]
    pub prompt: Option<String>,
}

/// All of `/authorize`'s parameters kept for the event, names and values
/// together: a login transaction is stored until the callback, and apps
/// send a handful of short parameters. Parameters past this are left out
/// of `event.request.query` (the ones the login itself needs are kept
/// apart, within their own limits).
pub const MAX_EVENT_QUERY_BYTES: usize = 4 << 10;

/// `params` (in order) as the event's query: each parameter whole, the
/// first ones that fit within [`MAX_EVENT_QUERY_BYTES`].
pub fn event_query<'a>(params: impl Iterator<Item = (&'a str, &'a str)>) -> Vec<(String, String)> {
    let mut budget = MAX_EVENT_QUERY_BYTES;
    let mut kept = Vec::new();
    for (name, value) in params {
        let size = name.len() + value.len();
        if size > budget {
            continue;
        }
        budget -= size;
        kept.push((name.to_owned(), value.to_owned()));
    }
    kept
}

impl ActionEvent {
    /// The event of a login: `user` as just recorded, through
    /// `connection`, for the app `client`.
    pub fn of_login(
        user: &User,
        client: EventClient,
        request: EventRequest,
        transaction: EventTransaction,
    ) -> Self {
        let p = &user.profile;
        let profile = match serde_json::to_value(p) {
            Ok(serde_json::Value::Object(map)) => map,
            _ => Metadata::new(),
        };
        Self {
            user: EventUser {
                user_id: user.user_id.clone(),
                email: p.email.clone(),
                email_verified: p.email_verified,
                name: p.name.clone(),
                given_name: p.given_name.clone(),
                family_name: p.family_name.clone(),
                nickname: p.nickname.clone(),
                picture: p.picture.clone(),
                profile,
                app_metadata: user.app_metadata.clone(),
                user_metadata: user.user_metadata.clone(),
                identities: vec![EventIdentity {
                    connection: user.connection.clone(),
                    provider: "oauth2".into(),
                    user_id: p.user_id.clone(),
                }],
                created_at: user.created_at,
                logins_count: user.logins_count,
            },
            client,
            connection: EventConnection {
                name: user.connection.clone(),
                strategy: oauth2(),
            },
            request,
            transaction,
        }
    }
}

/// What an Action that lets the login go on asks to change, checked.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Changes {
    pub id_token_claims: Metadata,
    pub access_token_claims: Metadata,
    /// Top-level properties to merge (`null` removes one).
    pub app_metadata: Metadata,
    pub user_metadata: Metadata,
    pub add_scopes: Vec<String>,
    pub remove_scopes: Vec<String>,
    /// Restricted claims the Action set, left out.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dropped_claims: Vec<String>,
}

impl Changes {
    /// Adds `later`'s changes on top of these: a later claim or metadata
    /// property replaces an earlier one (merging two top-level patches in
    /// order is merging their overlay).
    fn absorb(&mut self, later: Changes) {
        self.id_token_claims.extend(later.id_token_claims);
        self.access_token_claims.extend(later.access_token_claims);
        self.app_metadata.extend(later.app_metadata);
        self.user_metadata.extend(later.user_metadata);
        self.add_scopes.extend(later.add_scopes);
        self.remove_scopes.extend(later.remove_scopes);
        self.dropped_claims.extend(later.dropped_claims);
    }
}

/// An Action's answer, checked.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum ActionOutcome {
    Proceed(Changes),
    Deny { reason: String },
}

/// Why an Action gave no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum ActionError {
    /// The sandbox stopped it: deadline, memory, trap, pool.
    #[error("{0}")]
    Call(MapperError),
    /// It answered with its `error` variant.
    #[error("the action failed: {message}")]
    Failed { message: String },
    /// Its answer does not hold (a value that is not JSON, too large…).
    #[error("the action's answer is invalid: {message}")]
    InvalidOutput { message: String },
}

impl ActionError {
    /// Short machine name, for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Call(e) => e.kind(),
            Self::Failed { .. } => "failed",
            Self::InvalidOutput { .. } => "invalid-output",
        }
    }
}

/// One Action call: its answer and what it logged and requested.
#[derive(Debug)]
pub struct ActionReport {
    pub result: Result<ActionOutcome, ActionError>,
    pub logs: Vec<LogLine>,
    pub dropped_log_lines: usize,
    pub requests: Vec<RequestRecord>,
    pub elapsed: std::time::Duration,
    pub peak_memory_bytes: usize,
}

/// What runs an Action: its WebAssembly component, or Auth0 code in the
/// shipped script engine ([`script`]).
#[derive(Clone)]
pub enum ActionCode {
    Component(Arc<LoadedAction>),
    Script(ScriptCode),
}

/// An Action (or a Rule) in the post-login chain, as a login runs it.
pub struct BoundAction {
    pub id: String,
    pub name: String,
    pub version: u32,
    pub code: ActionCode,
    pub sandbox: Sandbox,
    /// `event.secrets`: name/value pairs (never logged).
    pub secrets: Vec<(String, String)>,
}

impl std::fmt::Debug for BoundAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoundAction")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl BoundAction {
    /// The stored Action at `version`, loaded as `loaded`, with its
    /// sandbox: its allow-list (no host is implied: an Action has no
    /// provider), its deadline, the default limits otherwise.
    pub fn from_stored(
        action: &StoredAction,
        version: u32,
        code: ActionCode,
    ) -> Result<Self, String> {
        Ok(Self {
            id: action.id.clone(),
            name: action.name.clone(),
            version,
            code,
            sandbox: sandbox_of(&action.egress, action.timeout_ms)?,
            secrets: action
                .secrets
                .iter()
                .map(|s| (s.name.clone(), s.value.clone()))
                .collect(),
        })
    }

    /// Runs this Action once on `event`.
    pub async fn invoke(&self, runtime: &Runtime, event: &ActionEvent) -> ActionReport {
        match &self.code {
            ActionCode::Component(loaded) => {
                runtime
                    .invoke_action(loaded, event, &self.secrets, &self.sandbox, &self.id)
                    .await
            }
            ActionCode::Script(code) => {
                runtime
                    .invoke_script_action(code, event, &self.secrets, &self.sandbox, &self.id)
                    .await
            }
        }
    }
}

/// The sandbox of an Action or a Rule: its allow-list (no host is implied:
/// it has no provider), its deadline, the default limits otherwise.
pub fn sandbox_of(
    egress: &crate::store::StoredMapperEgress,
    timeout_ms: Option<u64>,
) -> Result<Sandbox, String> {
    let mut hosts = Vec::new();
    for h in &egress.allowed_hosts {
        hosts.push(
            h.parse::<HostRule>()
                .map_err(|e| format!("egress.allowed_hosts: {e}"))?,
        );
    }
    let policy = EgressPolicy {
        allow_private_networks: egress.allow_private_networks,
        ..EgressPolicy::allowing(hosts)
    };
    let mut limits = Limits::default();
    if let Some(ms) = timeout_ms {
        limits.deadline = std::time::Duration::from_millis(ms);
    }
    Ok(Sandbox {
        egress: Arc::new(policy),
        limits: limits.clamped(),
    })
}

/// The Actions bound to the post-login trigger, in order, as one catalog
/// snapshot serves them.
#[derive(Debug, Default, Clone)]
pub struct PostLoginChain {
    pub actions: Vec<Arc<BoundAction>>,
    /// A bound Action this instance cannot run (never deployed, or its
    /// component does not load): every login fails with this, rather than
    /// skipping it.
    pub unservable: Option<String>,
}

impl PostLoginChain {
    /// Nothing bound: a login runs no Action and pays nothing for them.
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty() && self.unservable.is_none()
    }
}

/// How the chain ended.
#[derive(Debug)]
pub enum ChainOutcome {
    /// Every Action let the login go on: their changes together, and the
    /// scopes the app will be granted.
    Proceed {
        changes: Changes,
        scopes: Vec<String>,
    },
    /// An Action denied the login.
    Denied { action: String, reason: String },
    /// An Action failed, or could not run.
    Failed { action: String, error: String },
}

/// Runs `chain` on `event`, in order, each Action seeing the metadata and
/// scopes the earlier ones set. Stops at the first deny or failure.
pub async fn run_chain(
    runtime: &Runtime,
    chain: &PostLoginChain,
    mut event: ActionEvent,
) -> ChainOutcome {
    if let Some(problem) = &chain.unservable {
        return ChainOutcome::Failed {
            action: String::new(),
            error: problem.clone(),
        };
    }
    let mut all = Changes::default();
    for action in &chain.actions {
        let report = action.invoke(runtime, &event).await;
        for line in &report.logs {
            tracing::debug!(action = %action.name, source = ?line.source, level = ?line.level, "action: {}", line.message);
        }
        for r in &report.requests {
            tracing::debug!(action = %action.name, method = %r.method, url = %r.url, status = ?r.status, error = ?r.error, "action request");
        }
        match report.result {
            Ok(ActionOutcome::Deny { reason }) => {
                tracing::info!(action = %action.name, version = action.version, reason, "an action denied the login");
                return ChainOutcome::Denied {
                    action: action.name.clone(),
                    reason,
                };
            }
            Err(e) => {
                tracing::warn!(action = %action.name, version = action.version, kind = e.kind(), error = %e, "an action failed");
                return ChainOutcome::Failed {
                    action: action.name.clone(),
                    error: e.to_string(),
                };
            }
            Ok(ActionOutcome::Proceed(changes)) => {
                for claim in &changes.dropped_claims {
                    tracing::warn!(action = %action.name, claim, "a restricted claim is left out");
                }
                merge_metadata(&mut event.user.app_metadata, &changes.app_metadata);
                merge_metadata(&mut event.user.user_metadata, &changes.user_metadata);
                apply_scopes(
                    &mut event.transaction.requested_scopes,
                    &changes.add_scopes,
                    &changes.remove_scopes,
                );
                all.absorb(changes);
            }
        }
    }
    ChainOutcome::Proceed {
        changes: all,
        scopes: event.transaction.requested_scopes,
    }
}

/// Removes then adds scopes, keeping order and each scope once; `openid`
/// stays (without it there is no id_token, and the login is an OpenID
/// Connect one: OpenID Connect Core §3.1.2.1).
fn apply_scopes(scopes: &mut Vec<String>, add: &[String], remove: &[String]) {
    scopes.retain(|s| s == "openid" || !remove.contains(s));
    for s in add {
        if !scopes.contains(s) {
            scopes.push(s.clone());
        }
    }
}

/// What the login path hands the trigger.
pub struct PostLoginTrigger<'a> {
    pub runtime: &'a Runtime,
    pub store: &'a dyn Store,
    pub chain: &'a PostLoginChain,
}

/// What the code's grant carries when the trigger let the login go on.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Granted {
    pub scope: String,
    pub id_token_claims: Metadata,
    pub access_token_claims: Metadata,
}

/// Why the trigger ended the login.
#[derive(Debug, thiserror::Error)]
pub enum TriggerError {
    #[error("{reason}")]
    Denied { action: String, reason: String },
    #[error("post-login action `{action}` failed: {error}")]
    Failed { action: String, error: String },
    #[error("the post-login actions cannot run: {0}")]
    Unservable(String),
    #[error("the actions' metadata changes could not be stored: {0}")]
    Store(#[from] StoreError),
}

impl PostLoginTrigger<'_> {
    /// The login path's one call: runs the chain for `event` and, if it
    /// lets the login go on, writes the metadata changes (once, all of
    /// them) and returns what the code's grant carries. A login the chain
    /// ends writes nothing.
    pub async fn run_for_login(
        &self,
        user: &User,
        client: EventClient,
        request: EventRequest,
        scope: &str,
        transaction: EventTransaction,
    ) -> Result<Granted, TriggerError> {
        if self.chain.is_empty() {
            return Ok(Granted {
                scope: scope.to_owned(),
                ..Granted::default()
            });
        }
        let event = ActionEvent::of_login(user, client, request, transaction);
        self.run(event, scope).await
    }

    /// Runs the chain for `event` (see [`PostLoginTrigger::run_for_login`]).
    pub async fn run(&self, event: ActionEvent, scope: &str) -> Result<Granted, TriggerError> {
        if self.chain.is_empty() {
            return Ok(Granted {
                scope: scope.to_owned(),
                ..Granted::default()
            });
        }
        let user_id = event.user.user_id.clone();
        match run_chain(self.runtime, self.chain, event).await {
            ChainOutcome::Denied { action, reason } => Err(TriggerError::Denied { action, reason }),
            ChainOutcome::Failed { action, error } if action.is_empty() => {
                Err(TriggerError::Unservable(error))
            }
            ChainOutcome::Failed { action, error } => Err(TriggerError::Failed { action, error }),
            ChainOutcome::Proceed { changes, scopes } => {
                if !changes.app_metadata.is_empty() || !changes.user_metadata.is_empty() {
                    self.store
                        .merge_user_metadata(
                            &user_id,
                            &changes.app_metadata,
                            &changes.user_metadata,
                        )
                        .await?;
                }
                Ok(Granted {
                    scope: scopes.join(" "),
                    id_token_claims: changes.id_token_claims,
                    access_token_claims: changes.access_token_claims,
                })
            }
        }
    }
}

/// Whether `scope` is a scope-token (RFC 6749 §3.3: `%x21 / %x23-5B /
/// %x5D-7E`, at least one).
fn is_scope_token(scope: &str) -> bool {
    !scope.is_empty()
        && scope
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removing_scopes_keeps_openid_and_adding_keeps_each_once_in_order() {
        let mut scopes: Vec<String> = ["openid", "email", "profile"].map(String::from).to_vec();
        apply_scopes(
            &mut scopes,
            &["read:x".into(), "email".into()],
            &["openid".into(), "profile".into()],
        );
        assert_eq!(scopes, ["openid", "email", "read:x"]);
    }

    #[test]
    fn later_changes_replace_earlier_ones_property_by_property() {
        let mut first = Changes::default();
        first.id_token_claims.insert("https://x/a".into(), 1.into());
        first.app_metadata.insert("plan".into(), "gold".into());
        first
            .app_metadata
            .insert("gone".into(), serde_json::Value::Null);
        let mut later = Changes::default();
        later.id_token_claims.insert("https://x/a".into(), 2.into());
        later.app_metadata.insert("gone".into(), "back".into());
        first.absorb(later);
        assert_eq!(first.id_token_claims["https://x/a"], 2);
        assert_eq!(first.app_metadata["plan"], "gold");
        assert_eq!(first.app_metadata["gone"], "back");
    }

    #[test]
    fn scope_tokens_are_rfc_6749_ones() {
        for good in ["openid", "read:users", "https://api/x"] {
            assert!(is_scope_token(good), "{good}");
        }
        for bad in ["", "two words", "quote\"", "back\\slash", "é"] {
            assert!(!is_scope_token(bad), "{bad}");
        }
    }

    #[test]
    fn an_event_reads_from_json_with_only_the_user_client_and_connection() {
        let event: ActionEvent = serde_json::from_value(serde_json::json!({
            "user": {"user_id": "oauth2|c|1", "email": "a@b.test"},
            "client": {"client_id": "app"},
            "connection": {"name": "c"}
        }))
        .expect("reads");
        assert_eq!(event.connection.strategy, "oauth2");
        assert!(event.transaction.requested_scopes.is_empty());
        let unknown = serde_json::from_value::<ActionEvent>(serde_json::json!({
            "user": {"user_id": "u"}, "client": {"client_id": "a"},
            "connection": {"name": "c"}, "surprise": 1
        }));
        assert!(unknown.is_err(), "an unknown field is refused, not ignored");
    }

    #[test]
    fn an_events_query_reads_as_pairs_or_as_auth0s_object() {
        let event = |query: serde_json::Value| {
            serde_json::from_value::<ActionEvent>(serde_json::json!({
                "user": {"user_id": "u"}, "client": {"client_id": "a"},
                "connection": {"name": "c"}, "request": {"query": query}
            }))
            .expect("reads")
            .request
            .query
        };
        let expected = vec![("prompt".to_owned(), "login".to_owned())];
        assert_eq!(event(serde_json::json!([["prompt", "login"]])), expected);
        assert_eq!(event(serde_json::json!({"prompt": "login"})), expected);
    }

    #[test]
    fn the_events_query_keeps_whole_parameters_within_its_budget() {
        let big = "x".repeat(MAX_EVENT_QUERY_BYTES);
        let kept = event_query(
            [
                ("state", "abc"),
                ("huge", big.as_str()),
                ("prompt", "login"),
            ]
            .into_iter(),
        );
        assert_eq!(
            kept,
            [
                ("state".to_owned(), "abc".to_owned()),
                ("prompt".to_owned(), "login".to_owned())
            ]
        );
    }
}
