//! `/api/v2/rules`: legacy Auth0 Rules in Auth0's shapes (`name`,
//! `script`, `order`, `enabled`, `stage`), listed, created, read, patched
//! and deleted with Auth0's scopes (`read:rules`, `create:rules`,
//! `update:rules`, `delete:rules`), plus Waypass's `egress` and
//! `timeout_ms` (a Rule reaches only the hosts it lists, as an Action).
//!
//! The enabled Rules run for every login, in `order`, before the Actions
//! bound to the post-login trigger, as at Auth0 ("Rules execute before
//! Actions" when both are in use), in the script engine
//! (`crate::actions::script`). A script is compiled when saved; a syntax
//! error is refused with its line and column.

use http::Method;
use serde::{Deserialize, Serialize};

use super::{ApiError, ApiReply, ApiRequest, json_body, method_not_allowed};
use crate::actions::ScriptKind;
use crate::broker::Broker;
use crate::broker::oauth::Params;
use crate::egress::HostRule;
use crate::store::{StoredMapperEgress, StoredRule};

/// The one stage Waypass runs (Auth0's default and the only one it kept).
pub const LOGIN_SUCCESS: &str = "login_success";
/// Longest Rule name (Auth0's limit for names in the dashboard).
pub const MAX_RULE_NAME_CHARS: usize = 100;
/// Most Rules: each enabled one runs in every login.
pub const MAX_RULES: usize = 50;

/// The scope `method` on `/api/v2/rules` needs (Auth0's).
pub fn scope(method: &Method) -> &'static str {
    match *method {
        Method::GET | Method::HEAD => "read:rules",
        Method::POST => "create:rules",
        Method::DELETE => "delete:rules",
        _ => "update:rules",
    }
}

/// `POST /api/v2/rules` and `PATCH …/{id}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleBody {
    name: Option<String>,
    script: Option<String>,
    order: Option<i64>,
    enabled: Option<bool>,
    stage: Option<String>,
    egress: Option<EgressBody>,
    timeout_ms: Option<u64>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct EgressBody {
    #[serde(default)]
    allowed_hosts: Vec<String>,
    #[serde(default)]
    allow_private_networks: bool,
}

/// A Rule as the API shows it.
#[derive(Debug, Serialize)]
struct RuleView<'a> {
    id: &'a str,
    name: &'a str,
    script: &'a str,
    order: i64,
    enabled: bool,
    stage: &'a str,
    egress: EgressBody,
    #[serde(skip_serializing_if = "Option::is_none")]
    timeout_ms: Option<u64>,
}

/// `GET /api/v2/rules?include_totals=true`.
#[derive(Debug, Serialize)]
struct RulePage<'a> {
    rules: Vec<RuleView<'a>>,
    start: usize,
    limit: usize,
    total: usize,
}

fn view(rule: &StoredRule) -> RuleView<'_> {
    RuleView {
        id: &rule.id,
        name: &rule.name,
        script: &rule.script,
        order: rule.order,
        enabled: rule.enabled,
        stage: &rule.stage,
        egress: EgressBody {
            allowed_hosts: rule.egress.allowed_hosts.clone(),
            allow_private_networks: rule.egress.allow_private_networks,
        },
        timeout_ms: rule.timeout_ms,
    }
}

fn json_reply(status: u16, value: &impl Serialize) -> ApiReply {
    ApiReply::json(status, serde_json::to_value(value).unwrap_or_default())
}

impl Broker {
    pub(super) async fn rules_api(
        &self,
        req: &ApiRequest<'_>,
        seg: &[&str],
    ) -> Result<ApiReply, ApiError> {
        match (req.method, seg) {
            (&Method::GET, []) => {
                let params =
                    Params::parse(req.query).map_err(|e| ApiError::bad_request(e.description))?;
                let enabled = match params.get("enabled") {
                    None => None,
                    Some("true") => Some(true),
                    Some("false") => Some(false),
                    Some(other) => {
                        return Err(ApiError::bad_request(format!(
                            "`enabled` is `true` or `false`, not `{other}`"
                        )));
                    }
                };
                let rules: Vec<StoredRule> = self
                    .store
                    .rules()
                    .await?
                    .into_iter()
                    .filter(|r| enabled.is_none_or(|e| r.enabled == e))
                    .collect();
                let views: Vec<RuleView<'_>> = rules.iter().map(view).collect();
                if params.get("include_totals") == Some("true") {
                    let total = views.len();
                    Ok(json_reply(
                        200,
                        &RulePage {
                            rules: views,
                            start: 0,
                            limit: total,
                            total,
                        },
                    ))
                } else {
                    Ok(json_reply(200, &views))
                }
            }
            (&Method::POST, []) => self.create_rule(req).await,
            (&Method::GET, [id]) => {
                let rule = self.rule(id).await?;
                Ok(json_reply(200, &view(&rule)))
            }
            (&Method::PATCH, [id]) => self.update_rule(id, req).await,
            (&Method::DELETE, [id]) => {
                if !self.store.delete_rule(id).await? {
                    return Err(ApiError::not_found(format!("rule `{id}`")));
                }
                self.catalog_changed().await;
                Ok(ApiReply::no_content())
            }
            _ => Err(method_not_allowed()),
        }
    }

    async fn rule(&self, id: &str) -> Result<StoredRule, ApiError> {
        self.store
            .rules()
            .await?
            .into_iter()
            .find(|r| r.id == id)
            .ok_or_else(|| ApiError::not_found(format!("rule `{id}`")))
    }

    async fn create_rule(&self, req: &ApiRequest<'_>) -> Result<ApiReply, ApiError> {
        let body: RuleBody = parse_body(req)?;
        let existing = self.store.rules().await?;
        if existing.len() >= MAX_RULES {
            return Err(ApiError::bad_request(format!(
                "at most {MAX_RULES} rules; delete one first"
            )));
        }
        let now = self.clock.now();
        let mut rule = StoredRule {
            id: format!("rul_{}", self.random.identifier(16)),
            name: body
                .name
                .clone()
                .ok_or_else(|| ApiError::bad_request("`name` is required"))?,
            script: body
                .script
                .clone()
                .ok_or_else(|| ApiError::bad_request("`script` is required"))?,
            // Auth0 puts a Rule without an order after the others.
            order: existing.iter().map(|r| r.order).max().map_or(1, |o| o + 1),
            enabled: true,
            stage: LOGIN_SUCCESS.into(),
            egress: StoredMapperEgress::default(),
            timeout_ms: None,
            created_at: now,
            updated_at: now,
        };
        self.apply_rule(&mut rule, body).await?;
        self.store.put_rule(&rule).await?;
        self.catalog_changed().await;
        Ok(json_reply(201, &view(&rule)))
    }

    async fn update_rule(&self, id: &str, req: &ApiRequest<'_>) -> Result<ApiReply, ApiError> {
        let body: RuleBody = parse_body(req)?;
        let mut rule = self.rule(id).await?;
        if let Some(name) = &body.name {
            rule.name = name.clone();
        }
        if let Some(script) = &body.script {
            rule.script = script.clone();
        }
        self.apply_rule(&mut rule, body).await?;
        rule.updated_at = self.clock.now();
        self.store.put_rule(&rule).await?;
        self.catalog_changed().await;
        Ok(json_reply(200, &view(&rule)))
    }

    /// Checks `rule` with `body`'s other fields applied; its script is
    /// compiled by the script engine (not run).
    async fn apply_rule(&self, rule: &mut StoredRule, body: RuleBody) -> Result<(), ApiError> {
        if rule.name.trim().is_empty()
            || rule.name.chars().count() > MAX_RULE_NAME_CHARS
            || rule.name.chars().any(char::is_control)
        {
            return Err(ApiError::bad_request(format!(
                "`name` must be 1 to {MAX_RULE_NAME_CHARS} characters without control characters"
            )));
        }
        if let Some(stage) = body.stage
            && stage != LOGIN_SUCCESS
        {
            return Err(ApiError::bad_request(format!(
                "stage `{stage}` is not run: Waypass runs Rules at `{LOGIN_SUCCESS}`"
            )));
        }
        if let Some(order) = body.order {
            rule.order = order;
        }
        if let Some(enabled) = body.enabled {
            rule.enabled = enabled;
        }
        if let Some(egress) = body.egress {
            for host in &egress.allowed_hosts {
                host.parse::<HostRule>()
                    .map_err(|e| ApiError::bad_request(format!("egress.allowed_hosts: {e}")))?;
            }
            rule.egress = StoredMapperEgress {
                allowed_hosts: egress.allowed_hosts,
                allow_private_networks: egress.allow_private_networks,
            };
        }
        if let Some(ms) = body.timeout_ms {
            rule.timeout_ms = Some(ms);
        }
        let engine = self
            .script_engine()
            .await
            .map_err(|e| ApiError::new(500, e))?;
        crate::actions::script::check_script(&self.runtime, &engine, ScriptKind::Rule, &rule.script)
            .await
            .map_err(|e| ApiError::bad_request(format!("script: {e}")))
    }
}

fn parse_body<T: for<'de> Deserialize<'de>>(req: &ApiRequest<'_>) -> Result<T, ApiError> {
    serde_json::from_value(json_body(req)?).map_err(|e| ApiError::bad_request(e.to_string()))
}
