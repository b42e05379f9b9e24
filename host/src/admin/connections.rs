//! `/api/v2/connections`: list, create, get, PATCH (merging `options`),
//! delete, and `try`.

use http::Method;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::listing::{Fields, ListQuery, Paging, Query};
use super::{ApiError, ApiReply, ApiRequest, Caller, WRITE_EGRESS, json_body, method_not_allowed};
use crate::broker::Broker;
use crate::catalog::registry::parse_ref;
use crate::mapper::TokenSet;
use crate::model::{Connection, ConnectionRecord, ConnectionSpec, ProfileSource};
use crate::script::ScriptError;

/// Options that name where to read a secret on the server: accepted in the
/// configuration file, never through the API (a caller could otherwise send
/// any server-side file or variable to a token endpoint of its choosing).
const SERVER_SIDE_ONLY: [&str; 3] = [
    "client_secret_env",
    "client_secret_file",
    "mapper_settings_env",
];

impl Broker {
    pub(super) async fn connections_api(
        &self,
        req: &ApiRequest<'_>,
        seg: &[&str],
        caller: &Caller,
    ) -> Result<ApiReply, ApiError> {
        match (req.method, seg) {
            (&Method::GET, []) => self.list_connections(req.query).await,
            (&Method::POST, []) => self.create_connection(json_body(req)?, caller).await,
            (&Method::GET, [id]) => {
                let fields = Fields::parse(&Query::parse(req.query))?;
                Ok(ApiReply::json(
                    200,
                    fields.apply(public_json(&self.connection_record(id).await?)),
                ))
            }
            (&Method::GET, [id, "clients"]) => self.connection_clients(id, req.query).await,
            (&Method::PATCH, [id, "clients"]) => {
                self.patch_connection_clients(id, json_body(req)?, caller)
                    .await
            }
            (&Method::PATCH, [id]) => self.patch_connection(id, json_body(req)?, caller).await,
            (&Method::DELETE, [id]) => {
                let record = self.connection_record(id).await?;
                self.refuse_config_connection(&record)?;
                self.store.delete_connection(id).await?;
                self.catalog_changed().await;
                tracing::info!(caller = %caller.id, connection = %record.spec.name, "connection deleted");
                Ok(ApiReply::no_content())
            }
            (&Method::POST, [id, "try"]) => self.try_connection(id, json_body(req)?).await,
            // Auth0's path: new `private_key_jwt` keys sign from now on, the
            // previous ones stay published until the next rotation.
            (&Method::POST, [id, "keys", "rotate"]) => {
                let record = self.connection_record(id).await?;
                let jwks = self
                    .rotate_connection_keys(&record.id)
                    .await
                    .map_err(|e| match e {
                        crate::broker::ConnectionKeysError::Concurrent => {
                            ApiError::new(409, e.to_string())
                        }
                        e => {
                            tracing::error!(error = %e, "cannot rotate a connection's keys");
                            ApiError::new(500, "the keys could not be rotated")
                        }
                    })?;
                tracing::info!(caller = %caller.id, connection = %record.spec.name, "connection keys rotated");
                Ok(ApiReply::json(200, jwks))
            }
            _ => Err(method_not_allowed()),
        }
    }

    /// `GET /connections`: Auth0's paginations and fields, filtered by
    /// `strategy` (any of those given; every connection here is `oauth2`)
    /// and `name` (exact).
    async fn list_connections(&self, query: &str) -> Result<ApiReply, ApiError> {
        let query = Query::parse(query);
        let list = ListQuery::parse(&query)?;
        let strategies: Vec<&str> = query.all("strategy").collect();
        if !strategies.is_empty() && !strategies.contains(&STRATEGY) {
            return Ok(ApiReply::json(200, list.answer("connections", Vec::new())));
        }
        let name = query.get("name");
        let items = self
            .store
            .connections()
            .await?
            .into_iter()
            .filter(|stored| name.is_none_or(|n| stored.spec.name == n))
            .map(|stored| {
                read_stored(stored).map(|record| (record.id.clone(), public_json(&record)))
            })
            .collect::<Result<_, _>>()?;
        Ok(ApiReply::json(200, list.answer("connections", items)))
    }

    /// `GET /connections/{id}/clients`: the apps the connection is enabled
    /// for, as Auth0 answers it (`{clients: [{client_id}], next}`, paged by
    /// `from` / `take`).
    async fn connection_clients(&self, id: &str, query: &str) -> Result<ApiReply, ApiError> {
        let record = self.connection_record(id).await?;
        let mut list = ListQuery::parse(&Query::parse(query))?;
        // Auth0 pages this list by checkpoint only.
        if let Paging::Offset { per_page, .. } = list.paging {
            list.paging = Paging::Checkpoint {
                from: None,
                take: per_page,
            };
        }
        let items = record
            .spec
            .enabled_clients
            .iter()
            .map(|client_id| {
                let item = serde_json::to_value(EnabledClient { client_id }).unwrap_or_default();
                (client_id.clone(), item)
            })
            .collect();
        Ok(ApiReply::json(200, list.answer("clients", items)))
    }

    /// `PATCH /connections/{id}/clients` with Auth0's body
    /// `[{client_id, status}]`: enables (`true`) or disables (`false`) the
    /// connection for each app; 204.
    async fn patch_connection_clients(
        &self,
        id: &str,
        body: Value,
        caller: &Caller,
    ) -> Result<ApiReply, ApiError> {
        let changes: Vec<EnabledClientChange> = serde_json::from_value(body).map_err(|e| {
            ApiError::bad_request(format!(
                "send an array of {{\"client_id\", \"status\"}}: {e}"
            ))
        })?;
        if changes.len() > MAX_ENABLED_CLIENT_CHANGES {
            return Err(ApiError::bad_request(format!(
                "at most {MAX_ENABLED_CLIENT_CHANGES} clients per request"
            )));
        }
        let mut record = self.connection_record(id).await?;
        self.refuse_config_connection(&record)?;
        let before = record.clone();
        let enabled = &mut record.spec.enabled_clients;
        for change in changes {
            enabled.retain(|c| *c != change.client_id);
            if change.status {
                enabled.push(change.client_id);
            }
        }
        self.save_connection(&record, caller, Some(&before)).await?;
        Ok(ApiReply::no_content())
    }

    async fn connection_record(&self, id: &str) -> Result<ConnectionRecord, ApiError> {
        let stored = self
            .store
            .connections()
            .await?
            .into_iter()
            .find(|c| c.id == id)
            .ok_or_else(|| ApiError::not_found(format!("connection `{id}`")))?;
        read_stored(stored)
    }

    /// 409 for a connection the configuration file defines: a change
    /// through the API would be undone at the next start.
    fn refuse_config_connection(&self, record: &ConnectionRecord) -> Result<(), ApiError> {
        let name = record.spec.name.as_str();
        if self.config_defined.connections.contains(name) {
            return Err(ApiError::new(
                409,
                format!(
                    "connection `{name}` is defined in the configuration file; change it there"
                ),
            ));
        }
        Ok(())
    }

    async fn create_connection(&self, body: Value, caller: &Caller) -> Result<ApiReply, ApiError> {
        let body = without_strategy(body)?;
        refuse_server_side_secrets(&body)?;
        let spec: ConnectionSpec = serde_json::from_value(body)
            .map_err(|e| ApiError::bad_request(format!("invalid connection: {e}")))?;
        let record = ConnectionRecord {
            id: format!("con_{}", &self.random.token()[..16]),
            spec,
        };
        self.save_connection(&record, caller, None).await?;
        Ok(ApiReply::json(201, public_json(&record)))
    }

    /// PATCH: top-level fields replace; `options` merge field by field,
    /// `null` removes a field; the name cannot change.
    async fn patch_connection(
        &self,
        id: &str,
        body: Value,
        caller: &Caller,
    ) -> Result<ApiReply, ApiError> {
        let mut record = self.connection_record(id).await?;
        self.refuse_config_connection(&record)?;
        let before = record.clone();
        let patch = without_strategy(body)?;
        refuse_server_side_secrets(&patch)?;
        let Value::Object(patch) = patch else {
            return Err(ApiError::bad_request("the body must be a JSON object"));
        };
        // The stored form has every field, the write-only ones included:
        // what the patch leaves out is kept.
        let mut merged = serde_json::to_value(record.spec.to_stored())
            .map_err(|e| ApiError::new(500, format!("the stored connection: {e}")))?;
        for (key, value) in patch {
            match key.as_str() {
                "name" if value.as_str() == Some(record.spec.name.as_str()) => {}
                "name" => {
                    return Err(ApiError::bad_request(
                        "a connection's name cannot be changed",
                    ));
                }
                "options" => {
                    let Value::Object(mut options) = value else {
                        return Err(ApiError::bad_request("`options` must be an object"));
                    };
                    require_secrets_for_new_token_url(&record.spec, &options)?;
                    let headers = options.remove("customHeaders");
                    let target = merged["options"]
                        .as_object_mut()
                        .ok_or_else(|| ApiError::new(500, "stored options"))?;
                    merge_fields(target, options);
                    if let Some(headers) = headers {
                        merge_custom_headers(target, headers)?;
                    }
                }
                "display_name" | "enabled_clients" => {
                    if value.is_null() {
                        merged.as_object_mut().map(|m| m.remove(&key));
                    } else {
                        merged[&key] = value;
                    }
                }
                other => return Err(ApiError::bad_request(format!("unknown field `{other}`"))),
            }
        }
        record.spec = serde_json::from_value(merged)
            .map_err(|e| ApiError::bad_request(format!("invalid connection: {e}")))?;
        self.save_connection(&record, caller, Some(&before)).await?;
        Ok(ApiReply::json(200, public_json(&record)))
    }

    /// Checks a connection (URLs, mapper, apps — against the store, the
    /// truth, not this instance's snapshot) and the caller's grant
    /// (`before` is the connection as stored, `None` for a new one), stores
    /// it, and rebuilds the catalog from the store.
    async fn save_connection(
        &self,
        record: &ConnectionRecord,
        caller: &Caller,
        before: Option<&ConnectionRecord>,
    ) -> Result<(), ApiError> {
        let conn = Connection::new(record.id.clone(), record.spec.clone())
            .map_err(ApiError::bad_request)?;
        // A stored connection that no longer checks gives no reach to
        // compare with: all of the new one's counts as added.
        let before = before.and_then(|b| Connection::new(b.id.clone(), b.spec.clone()).ok());
        authorize_private_reach(caller, before.as_deref(), &conn)?;
        match &conn.profile {
            ProfileSource::Mapper(reference) => self.check_mapper_exists(reference).await?,
            // A script is compiled before any login can see it.
            ProfileSource::Script(script) => {
                let engine = self
                    .script_engine()
                    .await
                    .map_err(|e| ApiError::new(500, e))?;
                engine
                    .check(&self.runtime, script)
                    .await
                    .map_err(|e| script_error(&e))?;
            }
            // The built-in claims mapper has nothing to check beforehand.
            ProfileSource::Claims => {}
        }
        let clients = self.store.clients().await?;
        if let Some(unknown) = record
            .spec
            .enabled_clients
            .iter()
            .find(|c| !clients.iter().any(|stored| stored.client_id == **c))
        {
            return Err(ApiError::bad_request(format!(
                "enabled_clients: no client `{unknown}`"
            )));
        }
        self.store.put_connection(&record.to_stored()).await?;
        self.catalog_changed().await;
        Ok(())
    }

    /// 400 unless the store holds the mapper `reference` names: an active
    /// version of `name`, or version N of `name@N`.
    async fn check_mapper_exists(&self, reference: &str) -> Result<(), ApiError> {
        let missing = || {
            ApiError::bad_request(format!(
                "mapper `{reference}` is not registered (PUT /api/v2/mappers/NAME first)"
            ))
        };
        let (name, pinned) = parse_ref(reference).map_err(|_| missing())?;
        let exists = match pinned {
            Some(version) => self
                .store
                .mapper_versions(name)
                .await?
                .iter()
                .any(|v| v.version == version),
            None => self
                .store
                .mappers()
                .await?
                .iter()
                .any(|m| m.name == name && m.active_version > 0),
        };
        if exists { Ok(()) } else { Err(missing()) }
    }

    /// Runs the connection's mapper for real with a token, and shows what it
    /// did: the profile or the typed error, its log lines, its requests.
    async fn try_connection(&self, id: &str, body: Value) -> Result<ApiReply, ApiError> {
        // `try` has its own few pool slots: a caller looping on it cannot
        // take the ones logins need.
        let Ok(_running) = self.try_calls.try_acquire() else {
            return Err(ApiError::new(
                503,
                format!(
                    "{} try calls are running; try again when one has finished",
                    crate::broker::MAX_CONCURRENT_TRY_CALLS
                ),
            ));
        };
        let record = self.connection_record(id).await?;
        let conn = self
            .connection(record.spec.name.as_str())
            .ok_or_else(|| ApiError::not_found(format!("connection `{id}`")))?;
        let tokens = match (
            body.get("token_response"),
            body.get("access_token").and_then(Value::as_str),
        ) {
            (Some(response), access) => {
                let raw = if let Some(text) = response.as_str() {
                    text.to_owned()
                } else {
                    response.to_string()
                };
                let mut tokens = TokenSet::from_json(&raw).map_err(ApiError::bad_request)?;
                if let Some(access) = access {
                    tokens.access_token = access.to_owned();
                }
                tokens
            }
            (None, Some(access)) => TokenSet::bearer(access),
            (None, None) => {
                return Err(ApiError::bad_request(
                    "send `access_token` (and optionally `token_response`)",
                ));
            }
        };
        let (report, source) = self
            .run_profile(&conn, tokens, None)
            .await
            .map_err(ApiError::bad_request)?;
        let outcome = match &report.result {
            Ok(profile) => json!({
                "profile": profile,
                "user_id": format!("oauth2|{}|{}", conn.name(), profile.user_id),
            }),
            Err(e) => json!({"error": e, "message": e.to_string()}),
        };
        let mut out = json!({
            "logs": report.logs,
            "dropped_log_lines": report.dropped_log_lines,
            "requests": report.requests,
            "elapsed_ms": report.elapsed.as_secs_f64() * 1000.0,
            "peak_memory_bytes": report.peak_memory_bytes,
        });
        if let (Some(out), Value::Object(outcome), Value::Object(source)) =
            (out.as_object_mut(), outcome, source)
        {
            out.extend(outcome);
            out.extend(source);
        }
        Ok(ApiReply::json(200, out))
    }
}

/// Private-network access through the API needs [`WRITE_EGRESS`] (issue #9
/// §1): without it a `write:connections` caller could point a script at an
/// internal service and read its answer back through `try`, or use the
/// token exchange to probe the broker's network. The one rule for create
/// and PATCH; what counts as private reach is
/// [`EgressPolicy::private_reach_added`](crate::egress::EgressPolicy::private_reach_added),
/// judged on the policy the connection will run with (its provider's hosts
/// included). Connections in the configuration file are not checked: the
/// file is the operator.
fn authorize_private_reach(
    caller: &Caller,
    before: Option<&Connection>,
    after: &Connection,
) -> Result<(), ApiError> {
    if caller.has(WRITE_EGRESS) {
        return Ok(());
    }
    let before = before.map(|b| &*b.sandbox.egress);
    match after.sandbox.egress.private_reach_added(before) {
        Some(reach) => Err(ApiError::new(
            403,
            format!("{reach}: private-network access needs the scope `{WRITE_EGRESS}`"),
        )),
        None => Ok(()),
    }
}

/// A script refused on save: 400, with where the syntax error is.
fn script_error(e: &ScriptError) -> ApiError {
    match e {
        ScriptError::Engine(_) => ApiError::new(500, format!("scripts.fetchUserProfile: {e}")),
        _ => ApiError::bad_request(format!("scripts.fetchUserProfile: {e}")),
    }
}

/// The only strategy Waypass serves: Auth0's generic OAuth2 connection.
const STRATEGY: &str = "oauth2";

/// Most apps one `PATCH /connections/{id}/clients` may change: Auth0's
/// own limit, keeping one request's work bounded.
const MAX_ENABLED_CLIENT_CHANGES: usize = 50;

/// One entry of `GET /connections/{id}/clients`.
#[derive(Serialize)]
struct EnabledClient<'a> {
    client_id: &'a str,
}

/// One entry of `PATCH /connections/{id}/clients`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EnabledClientChange {
    client_id: String,
    /// Whether the connection is enabled for the app.
    status: bool,
}

/// A connection as the API shows it: Auth0's shape, the spec's own
/// serialisation, which leaves the write-only secrets out.
#[derive(Serialize)]
struct PublicConnection<'a> {
    id: &'a str,
    strategy: &'static str,
    #[serde(flatten)]
    spec: &'a ConnectionSpec,
}

fn public_json(record: &ConnectionRecord) -> Value {
    serde_json::to_value(PublicConnection {
        id: &record.id,
        strategy: STRATEGY,
        spec: &record.spec,
    })
    .unwrap_or_default()
}

/// A stored connection as the API's type; one the store holds but this
/// code cannot read is the server's fault (500), named.
fn read_stored(stored: crate::store::StoredConnection) -> Result<ConnectionRecord, ApiError> {
    let id = stored.id.clone();
    ConnectionRecord::from_stored(stored).map_err(|e| {
        tracing::error!(connection = %id, error = %e, "a stored connection cannot be read");
        ApiError::new(500, format!("stored connection `{id}` cannot be read: {e}"))
    })
}

/// Accepts and drops Auth0's `strategy` when it is `oauth2`.
fn without_strategy(mut body: Value) -> Result<Value, ApiError> {
    if let Some(obj) = body.as_object_mut()
        && let Some(strategy) = obj.remove("strategy")
        && strategy != STRATEGY
    {
        return Err(ApiError::bad_request(format!(
            "strategy {strategy} is not supported; use \"oauth2\""
        )));
    }
    Ok(body)
}

fn refuse_server_side_secrets(body: &Value) -> Result<(), ApiError> {
    let options = body.get("options").and_then(Value::as_object);
    match options.and_then(|o| SERVER_SIDE_ONLY.iter().find(|k| o.contains_key(**k))) {
        Some(key) => Err(ApiError::bad_request(format!(
            "`{key}` is accepted in the configuration file only; send the value itself"
        ))),
        None => Ok(()),
    }
}

/// A PATCH that moves `tokenURL` must send the stored write-only values
/// that go there — `client_secret` and every `customHeaders` entry —
/// again (or remove them with `null`). Otherwise a caller who may change a
/// connection, but can never read its secret, could send that secret to a
/// server of its own at the next login. Refused rather than accepted with
/// a warning: a warning would arrive after the secret had left.
fn require_secrets_for_new_token_url(
    stored: &ConnectionSpec,
    patch: &Map<String, Value>,
) -> Result<(), ApiError> {
    let Some(new_url) = patch.get("tokenURL") else {
        return Ok(());
    };
    if new_url.as_str() == Some(stored.options.token_url.as_str()) {
        return Ok(());
    }
    let mut missing = Vec::new();
    if stored.options.client_secret.is_some() && !patch.contains_key("client_secret") {
        missing.push("client_secret".to_owned());
    }
    let headers = patch.get("customHeaders");
    if !headers.is_some_and(Value::is_null) {
        let sent = headers.and_then(Value::as_object);
        for name in stored.options.custom_headers.keys() {
            let resent = sent.is_some_and(|sent| sent.keys().any(|k| k.eq_ignore_ascii_case(name)));
            if !resent {
                missing.push(format!("customHeaders.{name}"));
            }
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    Err(ApiError::bad_request(format!(
        "changing tokenURL sends the stored {} to the new URL: send {} again in the same PATCH \
         (or `null` to remove)",
        missing.join(", "),
        if missing.len() == 1 { "it" } else { "them" },
    )))
}

/// `customHeaders` merge header by header (names compared without case,
/// RFC 9110 §5.1): a header sent replaces the stored one, `null` removes
/// it, a header not sent keeps its stored value (values are write-only, so
/// a caller cannot send back what it cannot read); `"customHeaders": null`
/// removes them all.
fn merge_custom_headers(options: &mut Map<String, Value>, patch: Value) -> Result<(), ApiError> {
    let patch = match patch {
        Value::Null => {
            options.remove("customHeaders");
            return Ok(());
        }
        Value::Object(patch) => patch,
        _ => {
            return Err(ApiError::bad_request(
                "`customHeaders` must be an object (or null)",
            ));
        }
    };
    let mut headers = match options.remove("customHeaders") {
        Some(Value::Object(stored)) => stored,
        _ => Map::new(),
    };
    for (name, value) in patch {
        headers.retain(|stored, _| !stored.eq_ignore_ascii_case(&name));
        if !value.is_null() {
            headers.insert(name, value);
        }
    }
    if !headers.is_empty() {
        options.insert("customHeaders".into(), Value::Object(headers));
    }
    Ok(())
}

/// Field-level merge: a value replaces, `null` removes.
fn merge_fields(target: &mut Map<String, Value>, patch: Map<String, Value>) {
    for (key, value) in patch {
        if value.is_null() {
            target.remove(&key);
        } else {
            target.insert(key, value);
        }
    }
}
