//! Actions on the mapper runtime: loading a component as the post-login
//! world (validated by name against it, pre-instantiated once per
//! version) and calling it in a fresh instance under its sandbox.

use wasmtime::Store;
use wasmtime::component::Component;

use super::bindings::{self, PostLoginPre};
use super::{
    ActionError, ActionEvent, ActionOutcome, ActionReport, Changes, EXPORT,
    MAX_CUSTOM_CLAIMS_BYTES, MAX_MESSAGE_BYTES, MAX_METADATA_CHANGE_BYTES, MAX_SCOPE_CHANGES,
    RESTRICTED_CLAIMS, WORLD, is_scope_token,
};
use crate::mapper::{
    ComponentInfo, GuestCall, GuestFuture, HostState, LoadError, Runtime, Sandbox, sha256_hex,
    truncate,
};
use crate::store::Metadata;

/// Why a component could not be loaded as an Action.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActionLoadError {
    #[error("the component does not implement {WORLD}: {0}")]
    WorldMismatch(String),
    #[error(
        "the component imports {} which an Action may not use (allowed: waypass:mapper/http, waypass:mapper/log, WASI 0.2 and wasi:http/outgoing-handler)",
        .0.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
    )]
    ForbiddenImports(Vec<String>),
    #[error("{0}")]
    Other(LoadError),
}

impl From<LoadError> for ActionLoadError {
    fn from(e: LoadError) -> Self {
        match e {
            LoadError::WorldMismatch(detail) => Self::WorldMismatch(detail),
            LoadError::ForbiddenImports(names) => Self::ForbiddenImports(names),
            other => Self::Other(other),
        }
    }
}

/// A validated, compiled, pre-instantiated Action version.
#[derive(Clone)]
pub struct LoadedAction {
    pre: PostLoginPre<HostState>,
    digest: String,
    from_cache: bool,
}

impl LoadedAction {
    /// SHA-256 of the component's bytes.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// Whether the compiled artifact came from the cache.
    pub fn from_cache(&self) -> bool {
        self.from_cache
    }
}

impl Runtime {
    /// Validates, compiles (or loads from the cache) and pre-instantiates
    /// a post-login Action.
    pub fn load_action(&self, bytes: &[u8]) -> Result<LoadedAction, ActionLoadError> {
        self.load_action_with_digest(bytes, sha256_hex(bytes))
    }

    /// [`Runtime::load_action`] for bytes whose SHA-256 is known.
    pub fn load_action_with_digest(
        &self,
        bytes: &[u8],
        digest: String,
    ) -> Result<LoadedAction, ActionLoadError> {
        self.load_as(bytes, digest, EXPORT, |component, digest, from_cache| {
            self.prepare_action(component, digest, from_cache)
        })
        .map_err(ActionLoadError::from)
    }

    fn prepare_action(
        &self,
        component: Component,
        digest: String,
        from_cache: bool,
    ) -> Result<LoadedAction, LoadError> {
        let info = ComponentInfo::of(self.engine(), &component);
        let forbidden = info.forbidden_imports();
        if !forbidden.is_empty() {
            return Err(LoadError::ForbiddenImports(forbidden));
        }
        let pre = self
            .linker()
            .instantiate_pre(&component)
            .map_err(|e| LoadError::WorldMismatch(format!("{e:#}")))?;
        let pre = PostLoginPre::new(pre).map_err(|e| LoadError::WorldMismatch(format!("{e:#}")))?;
        Ok(LoadedAction {
            pre,
            digest,
            from_cache,
        })
    }

    /// Runs `action` once on `event`, in a fresh instance, under
    /// `sandbox`; `share_key` names whose share of the pool it uses.
    pub async fn invoke_action(
        &self,
        action: &LoadedAction,
        event: &ActionEvent,
        secrets: &[(String, String)],
        sandbox: &Sandbox,
        share_key: &str,
    ) -> ActionReport {
        let call = ActionCall {
            pre: &action.pre,
            event: wit_event(event, secrets),
        };
        let run = self
            .run_sandboxed(
                &format!("action:{share_key}"),
                || {
                    format!(
                        "action `{share_key}` already runs {} calls, its share of the pool",
                        crate::mapper::limits::MAX_CALLS_PER_CONNECTION
                    )
                },
                sandbox,
                call,
            )
            .await;
        ActionReport {
            result: match run.result {
                Err(e) => Err(ActionError::Call(e)),
                Ok(Err(bindings::Error::Other(message))) => Err(ActionError::Failed {
                    message: truncate(message, MAX_MESSAGE_BYTES),
                }),
                Ok(Ok(bindings::Outcome::Deny(reason))) => Ok(ActionOutcome::Deny {
                    reason: truncate(reason, MAX_MESSAGE_BYTES),
                }),
                Ok(Ok(bindings::Outcome::Proceed(changes))) => {
                    check_changes(changes).map(ActionOutcome::Proceed)
                }
            },
            logs: run.logs,
            dropped_log_lines: run.dropped_log_lines,
            requests: run.requests,
            elapsed: run.elapsed,
            peak_memory_bytes: run.peak_memory_bytes,
        }
    }
}

/// The Action's `on-execute-post-login` call.
struct ActionCall<'a> {
    pre: &'a PostLoginPre<HostState>,
    event: bindings::Event,
}

impl GuestCall for ActionCall<'_> {
    type Output = Result<bindings::Outcome, bindings::Error>;

    fn run<'s>(self, store: &'s mut Store<HostState>) -> GuestFuture<'s, Self::Output>
    where
        Self: 's,
    {
        Box::pin(async move {
            let instance = self
                .pre
                .instantiate_async(&mut *store)
                .await
                .map_err(|e| (true, e))?;
            instance
                .call_on_execute_post_login(&mut *store, &self.event)
                .await
                .map_err(|e| (false, e))
        })
    }
}

fn json_text(map: &Metadata) -> String {
    serde_json::Value::Object(map.clone()).to_string()
}

fn wit_event(event: &ActionEvent, secrets: &[(String, String)]) -> bindings::Event {
    let u = &event.user;
    bindings::Event {
        user: bindings::User {
            user_id: u.user_id.clone(),
            email: u.email.clone(),
            email_verified: u.email_verified,
            name: u.name.clone(),
            given_name: u.given_name.clone(),
            family_name: u.family_name.clone(),
            nickname: u.nickname.clone(),
            picture: u.picture.clone(),
            profile: json_text(&u.profile),
            app_metadata: json_text(&u.app_metadata),
            user_metadata: json_text(&u.user_metadata),
            identities: u
                .identities
                .iter()
                .map(|i| bindings::Identity {
                    connection: i.connection.clone(),
                    provider: i.provider.clone(),
                    user_id: i.user_id.clone(),
                })
                .collect(),
            created_at: u.created_at,
            logins_count: u.logins_count,
        },
        client: bindings::Client {
            client_id: event.client.client_id.clone(),
            name: event.client.name.clone(),
        },
        connection: bindings::Connection {
            name: event.connection.name.clone(),
            strategy: event.connection.strategy.clone(),
        },
        request: bindings::Request {
            ip: event.request.ip.clone(),
            user_agent: event.request.user_agent.clone(),
            hostname: event.request.hostname.clone(),
            query: event.request.query.clone(),
        },
        transaction: bindings::Transaction {
            requested_scopes: event.transaction.requested_scopes.clone(),
            redirect_uri: event.transaction.redirect_uri.clone(),
            audience: event.transaction.audience.clone(),
            prompt: event.transaction.prompt.clone(),
        },
        secrets: secrets.to_vec(),
    }
}

/// Checks an Action's changes: every value JSON, claims and metadata
/// within their caps, scopes scope-tokens; restricted claims left out.
pub(super) fn check_changes(c: bindings::Changes) -> Result<Changes, ActionError> {
    let invalid = |message: String| ActionError::InvalidOutput { message };
    // Sizes first, before anything is parsed or copied.
    let size = |props: &[bindings::Property]| -> usize {
        props.iter().map(|p| p.name.len() + p.value.len()).sum()
    };
    let claims_size = size(&c.id_token_claims) + size(&c.access_token_claims);
    if claims_size > MAX_CUSTOM_CLAIMS_BYTES {
        return Err(invalid(format!(
            "{claims_size} bytes of custom claims, over the {MAX_CUSTOM_CLAIMS_BYTES}-byte limit"
        )));
    }
    let metadata_size = size(&c.app_metadata) + size(&c.user_metadata);
    if metadata_size > MAX_METADATA_CHANGE_BYTES {
        return Err(invalid(format!(
            "{metadata_size} bytes of metadata changes, over the {MAX_METADATA_CHANGE_BYTES}-byte limit"
        )));
    }
    if c.add_scopes.len() + c.remove_scopes.len() > MAX_SCOPE_CHANGES {
        return Err(invalid(format!(
            "more than {MAX_SCOPE_CHANGES} scope changes"
        )));
    }
    if let Some(bad) = c
        .add_scopes
        .iter()
        .chain(&c.remove_scopes)
        .find(|s| !is_scope_token(s))
    {
        return Err(invalid(format!(
            "`{}` is not a scope (RFC 6749 §3.3)",
            truncate(bad.clone(), 64)
        )));
    }
    let mut dropped = Vec::new();
    let mut parse = |what: &str, props: Vec<bindings::Property>, claims: bool| {
        let mut map = Metadata::new();
        for p in props {
            if p.name.is_empty() {
                return Err(invalid(format!("a {what} has an empty name")));
            }
            let value: serde_json::Value = serde_json::from_str(&p.value).map_err(|e| {
                invalid(format!(
                    "{what} `{}` is not JSON: {e}",
                    truncate(p.name.clone(), 64)
                ))
            })?;
            if claims && (RESTRICTED_CLAIMS.contains(&p.name.as_str()) || value.is_null()) {
                dropped.push(p.name);
                continue;
            }
            map.insert(p.name, value);
        }
        Ok(map)
    };
    let id_token_claims = parse("id_token claim", c.id_token_claims, true)?;
    let access_token_claims = parse("access token claim", c.access_token_claims, true)?;
    let app_metadata = parse("app_metadata property", c.app_metadata, false)?;
    let user_metadata = parse("user_metadata property", c.user_metadata, false)?;
    Ok(Changes {
        id_token_claims,
        access_token_claims,
        app_metadata,
        user_metadata,
        add_scopes: c.add_scopes,
        remove_scopes: c.remove_scopes,
        dropped_claims: dropped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prop(name: &str, value: &str) -> bindings::Property {
        bindings::Property {
            name: name.into(),
            value: value.into(),
        }
    }

    fn changes() -> bindings::Changes {
        bindings::Changes {
            id_token_claims: vec![],
            access_token_claims: vec![],
            app_metadata: vec![],
            user_metadata: vec![],
            add_scopes: vec![],
            remove_scopes: vec![],
        }
    }

    #[test]
    fn restricted_claims_are_left_out_and_the_rest_kept() {
        let mut c = changes();
        c.id_token_claims = vec![
            prop("sub", "\"someone-else\""),
            prop("https://example.com/roles", "[\"admin\"]"),
            prop("plain", "1"),
        ];
        c.access_token_claims = vec![prop("scope", "\"admin\""), prop("aud", "\"x\"")];
        let checked = check_changes(c).expect("valid");
        assert_eq!(
            checked.id_token_claims.keys().collect::<Vec<_>>(),
            ["https://example.com/roles", "plain"]
        );
        assert!(checked.access_token_claims.is_empty());
        assert_eq!(checked.dropped_claims, ["sub", "scope", "aud"]);
    }

    #[test]
    fn a_value_that_is_not_json_is_an_invalid_answer() {
        let mut c = changes();
        c.app_metadata = vec![prop("plan", "gold")];
        let err = check_changes(c).expect_err("invalid");
        assert!(
            err.to_string()
                .contains("app_metadata property `plan` is not JSON"),
            "{err}"
        );
    }

    #[test]
    fn claims_over_the_limit_are_an_invalid_answer() {
        let mut c = changes();
        let big = format!("\"{}\"", "x".repeat(MAX_CUSTOM_CLAIMS_BYTES));
        c.id_token_claims = vec![prop("https://x/big", &big)];
        let err = check_changes(c).expect_err("too large");
        assert!(err.to_string().contains("custom claims"), "{err}");
    }

    #[test]
    fn a_scope_with_a_space_is_refused() {
        let mut c = changes();
        c.add_scopes = vec!["read write".into()];
        assert!(check_changes(c).is_err());
    }
}
