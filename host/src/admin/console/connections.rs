//! Console pages for connections: the list, "Create custom" (the seed's
//! fields), edit, delete, the Applications tab and the Try panel — each a
//! call of `/api/v2/connections` made in-process.

use std::collections::BTreeMap;

use http::{Method, Response, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::pages::{self, ConnectionForm, FieldErrors, TryResult};
use super::{
    Body, Ctx, Failure, Form, PREFIX, Req, error_page, html, path_segment, redirect, status_of,
};

/// A connection as `GET /api/v2/connections` shows it (what the console
/// reads of it).
#[derive(Debug, Clone, Deserialize)]
pub(super) struct ApiConnection {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub strategy: String,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub enabled_clients: Vec<String>,
    #[serde(default)]
    pub options: ApiOptions,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub(super) struct ApiOptions {
    #[serde(rename = "authorizationURL", default)]
    pub authorization_url: String,
    #[serde(rename = "tokenURL", default)]
    pub token_url: String,
    #[serde(default)]
    pub scope: String,
    #[serde(default)]
    pub client_id: String,
    #[serde(default)]
    pub icon_url: Option<String>,
    #[serde(default)]
    pub mapper: Option<String>,
    #[serde(default)]
    pub scripts: Option<ApiScripts>,
    #[serde(default)]
    pub mapper_egress: ApiEgress,
}

/// A connection's egress allow-list for its mapper or script.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub(super) struct ApiEgress {
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    #[serde(default)]
    pub allow_private_networks: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub(super) struct ApiScripts {
    #[serde(rename = "fetchUserProfile")]
    pub fetch_user_profile: String,
}

#[derive(Deserialize)]
struct ConnectionList {
    connections: Vec<ApiConnection>,
}

#[derive(Deserialize)]
pub(super) struct ApiClient {
    pub client_id: String,
    #[serde(default)]
    pub name: String,
}

#[derive(Deserialize)]
struct ClientList {
    clients: Vec<ApiClient>,
}

#[derive(Deserialize)]
struct ApiMapper {
    name: String,
    active_version: u32,
}

/// `POST /api/v2/connections`: a custom connection as the seed's form
/// fills it.
#[derive(Serialize)]
struct NewConnection {
    strategy: &'static str,
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    display_name: Option<String>,
    options: OptionsBody,
}

/// The options the form sets (create), or changes (PATCH: a `None`
/// leaves the stored value, [`Clear::Null`] removes it).
#[derive(Serialize)]
struct OptionsBody {
    #[serde(rename = "authorizationURL")]
    authorization_url: String,
    #[serde(rename = "tokenURL")]
    token_url: String,
    scope: String,
    client_id: String,
    /// Write-only: sent when typed, else left as stored.
    #[serde(skip_serializing_if = "Option::is_none")]
    client_secret: Option<String>,
    #[serde(skip_serializing_if = "Clear::is_absent")]
    icon_url: Clear<String>,
    #[serde(skip_serializing_if = "Clear::is_absent")]
    mapper: Clear<String>,
    #[serde(skip_serializing_if = "Clear::is_absent")]
    scripts: Clear<ApiScripts>,
    /// Write-only (they may hold API keys): sent when typed, replacing
    /// the stored ones; else left as stored.
    #[serde(skip_serializing_if = "Option::is_none")]
    mapper_settings: Option<BTreeMap<String, String>>,
    mapper_egress: ApiEgress,
}

/// A field of a PATCH: left out, removed (`null`), or set.
enum Clear<T> {
    Absent,
    Null,
    Set(T),
}

impl<T> Clear<T> {
    fn is_absent(&self) -> bool {
        matches!(self, Self::Absent)
    }
}

impl<T: Serialize> Serialize for Clear<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Absent | Self::Null => s.serialize_none(),
            Self::Set(v) => v.serialize(s),
        }
    }
}

#[derive(Serialize)]
struct PatchConnection {
    display_name: Option<String>,
    options: OptionsBody,
}

#[derive(Serialize)]
struct EnabledClientChange<'a> {
    client_id: &'a str,
    status: bool,
}

#[derive(Serialize)]
struct TryBody<'a> {
    access_token: &'a str,
}

/// Routes `/admin/connections/...`.
pub(super) async fn route(
    req: &Req<'_>,
    ctx: &Ctx,
    method: &Method,
    seg: &[&str],
) -> Response<Body> {
    match (method, seg) {
        (&Method::GET, []) => list(req, ctx).await,
        (&Method::GET, ["new"]) => {
            let mappers = mapper_names(req, ctx).await;
            let form = ConnectionForm {
                scope: "openid profile email".into(),
                profile: "script".into(),
                script: EXAMPLE_SCRIPT.into(),
                ..ConnectionForm::default()
            };
            show_form(ctx, form, mappers, FieldErrors::default(), StatusCode::OK)
        }
        (&Method::POST, ["new"]) => create(req, ctx).await,
        (&Method::GET, [id]) => show(req, ctx, id, None, None).await,
        (&Method::POST, [id]) => update(req, ctx, id).await,
        (&Method::POST, [id, "delete"]) => {
            let path = format!("connections/{}", path_segment(id));
            match req.api::<Value>(ctx, Method::DELETE, &path, None).await {
                Ok(_) => redirect(&format!("{PREFIX}/connections")),
                Err(f) => show(req, ctx, id, Some(f.message), None).await,
            }
        }
        (&Method::POST, [id, "clients"]) => set_clients(req, ctx, id).await,
        (&Method::POST, [id, "try"]) => try_connection(req, ctx, id).await,
        _ => error_page(StatusCode::NOT_FOUND, "Not found", "No such console page."),
    }
}

/// A starting point for "Create custom": Auth0's example script shape.
const EXAMPLE_SCRIPT: &str = "function fetchUserProfile(accessToken, context, callback) {\n  request.get(\n    {\n      url: 'https://provider.example/userinfo',\n      headers: { Authorization: 'Bearer ' + accessToken },\n    },\n    (err, resp, body) => {\n      if (err) return callback(err);\n      if (resp.statusCode !== 200) return callback(new Error(body));\n      const p = JSON.parse(body);\n      callback(null, { user_id: p.sub, email: p.email, name: p.name });\n    }\n  );\n}\n";

async fn list(req: &Req<'_>, ctx: &Ctx) -> Response<Body> {
    let list = req
        .api::<ConnectionList>(
            ctx,
            Method::GET,
            "connections?per_page=100&include_totals=true",
            None,
        )
        .await;
    let (connections, error) = match list {
        Ok(l) => (l.connections, None),
        Err(f) => (Vec::new(), Some(f.message)),
    };
    let rows = connections
        .into_iter()
        .map(|c| pages::ConnectionRow {
            display: c.display_name.clone().unwrap_or_else(|| c.name.clone()),
            icon: c.options.icon_url.clone(),
            strategy: c.strategy.clone(),
            profile: profile_label(&c.options),
            apps: c.enabled_clients.len(),
            id: c.id,
            name: c.name,
        })
        .collect();
    let page = pages::Connections {
        l: ctx.layout("connections"),
        rows,
        error,
    };
    html(StatusCode::OK, askama::Template::render(&page))
}

fn profile_label(o: &ApiOptions) -> String {
    match (&o.mapper, &o.scripts) {
        (Some(m), _) => format!("mapper {m}"),
        (None, Some(_)) => "script".into(),
        (None, None) => "id_token claims".into(),
    }
}

async fn mapper_names(req: &Req<'_>, ctx: &Ctx) -> Vec<String> {
    req.api::<Vec<ApiMapper>>(ctx, Method::GET, "mappers", None)
        .await
        .map(|list| {
            list.into_iter()
                .filter(|m| m.active_version > 0)
                .map(|m| m.name)
                .collect()
        })
        .unwrap_or_default()
}

fn show_form(
    ctx: &Ctx,
    form: ConnectionForm,
    mappers: Vec<String>,
    errors: FieldErrors,
    status: StatusCode,
) -> Response<Body> {
    let page = pages::NewConnection {
        l: ctx.layout("connections"),
        form,
        mappers,
        errors,
    };
    html(status, askama::Template::render(&page))
}

/// The form's fields as typed, to show them again with the errors.
fn read_form(form: &Form) -> ConnectionForm {
    ConnectionForm {
        name: form.text("name"),
        display_name: form.text("display_name"),
        icon_url: form.text("icon_url"),
        authorization_url: form.text("authorizationURL"),
        token_url: form.text("tokenURL"),
        scope: form.text("scope"),
        client_id: form.text("client_id"),
        profile: form.text("profile"),
        mapper: form.text("mapper"),
        // Scripts keep their whitespace, only line endings normalised.
        script: form.get("script").unwrap_or("").replace("\r\n", "\n"),
        allowed_hosts: form.get("allowed_hosts").unwrap_or("").to_owned(),
        allow_private_networks: form.get("allow_private_networks") == Some("on"),
    }
}

/// `Some` sets a field; `None` clears it on an edit and leaves it out of
/// a creation.
fn clear<T>(value: Option<T>, editing: bool) -> Clear<T> {
    match value {
        Some(v) => Clear::Set(v),
        None if editing => Clear::Null,
        None => Clear::Absent,
    }
}

/// The options a submitted form sets; `editing` sends `null` for what it
/// clears.
fn options_body(
    f: &ConnectionForm,
    secret: &str,
    settings: Option<BTreeMap<String, String>>,
    editing: bool,
) -> OptionsBody {
    let mapper_chosen = f.profile == "mapper";
    OptionsBody {
        authorization_url: f.authorization_url.clone(),
        token_url: f.token_url.clone(),
        scope: f.scope.clone(),
        client_id: f.client_id.clone(),
        client_secret: (!secret.is_empty()).then(|| secret.to_owned()),
        icon_url: clear(
            (!f.icon_url.is_empty()).then(|| f.icon_url.clone()),
            editing,
        ),
        mapper: clear(mapper_chosen.then(|| f.mapper.clone()), editing),
        scripts: clear(
            (!mapper_chosen).then(|| ApiScripts {
                fetch_user_profile: f.script.clone(),
            }),
            editing,
        ),
        mapper_settings: settings,
        mapper_egress: ApiEgress {
            allowed_hosts: super::lines(&f.allowed_hosts),
            allow_private_networks: f.allow_private_networks,
        },
    }
}

/// The settings textarea: `name=value` per line; empty is `None` (left as
/// stored). A line without `=` is refused by the field.
fn parse_settings(text: &str) -> Result<Option<BTreeMap<String, String>>, FieldErrors> {
    let mut settings = BTreeMap::new();
    for line in super::lines(text) {
        let Some((name, value)) = line.split_once('=') else {
            let mut errors = FieldErrors::default();
            errors.fields.insert(
                "mapper_settings",
                format!("`{line}`: write each setting as name=value"),
            );
            return Err(errors);
        };
        settings.insert(name.trim().to_owned(), value.trim().to_owned());
    }
    Ok((!settings.is_empty()).then_some(settings))
}

async fn create(req: &Req<'_>, ctx: &Ctx) -> Response<Body> {
    let form = read_form(&req.form);
    let settings = match parse_settings(&req.form.text("mapper_settings")) {
        Ok(settings) => settings,
        Err(errors) => {
            let mappers = mapper_names(req, ctx).await;
            return show_form(ctx, form, mappers, errors, StatusCode::BAD_REQUEST);
        }
    };
    let body = NewConnection {
        strategy: "oauth2",
        name: form.name.clone(),
        display_name: (!form.display_name.is_empty()).then(|| form.display_name.clone()),
        options: options_body(&form, &req.form.text("client_secret"), settings, false),
    };
    let body = serde_json::to_value(&body).unwrap_or_default();
    match req
        .api::<ApiConnection>(ctx, Method::POST, "connections", Some(body))
        .await
    {
        Ok(created) => redirect(&format!(
            "{PREFIX}/connections/{}",
            path_segment(&created.id)
        )),
        Err(failure) => {
            let mappers = mapper_names(req, ctx).await;
            let status = status_of(&failure);
            show_form(
                ctx,
                form,
                mappers,
                FieldErrors::from_failure(&failure),
                status,
            )
        }
    }
}

async fn update(req: &Req<'_>, ctx: &Ctx, id: &str) -> Response<Body> {
    let form = read_form(&req.form);
    let settings = parse_settings(&req.form.text("mapper_settings"));
    let failure = match settings {
        Err(errors) => Err((StatusCode::BAD_REQUEST, errors)),
        Ok(settings) => {
            let body = PatchConnection {
                display_name: (!form.display_name.is_empty()).then(|| form.display_name.clone()),
                options: options_body(&form, &req.form.text("client_secret"), settings, true),
            };
            let body = serde_json::to_value(&body).unwrap_or_default();
            let path = format!("connections/{}", path_segment(id));
            req.api::<ApiConnection>(ctx, Method::PATCH, &path, Some(body))
                .await
                .map_err(|f| (status_of(&f), FieldErrors::from_failure(&f)))
        }
    };
    match failure {
        Ok(_) => redirect(&format!("{PREFIX}/connections/{}", path_segment(id))),
        Err((status, errors)) => {
            let mut page = match connection_page(req, ctx, id).await {
                Ok(page) => page,
                Err(f) => return error_page(status_of(&f), "Connection", &f.message),
            };
            page.form = form;
            page.errors = errors;
            html(status, askama::Template::render(&page))
        }
    }
}

/// The connection's page: settings, applications, try.
async fn connection_page(
    req: &Req<'_>,
    ctx: &Ctx,
    id: &str,
) -> Result<pages::ConnectionPage, Failure> {
    let path = format!("connections/{}", path_segment(id));
    let conn = req
        .api::<ApiConnection>(ctx, Method::GET, &path, None)
        .await?;
    let clients = req
        .api::<ClientList>(
            ctx,
            Method::GET,
            "clients?per_page=100&include_totals=true",
            None,
        )
        .await?
        .clients;
    let apps = clients
        .into_iter()
        .map(|c| pages::AppToggle {
            enabled: conn.enabled_clients.contains(&c.client_id),
            name: if c.name.is_empty() {
                c.client_id.clone()
            } else {
                c.name
            },
            client_id: c.client_id,
        })
        .collect();
    let o = &conn.options;
    let form = ConnectionForm {
        name: conn.name.clone(),
        display_name: conn.display_name.clone().unwrap_or_default(),
        icon_url: o.icon_url.clone().unwrap_or_default(),
        authorization_url: o.authorization_url.clone(),
        token_url: o.token_url.clone(),
        scope: o.scope.clone(),
        client_id: o.client_id.clone(),
        profile: if o.mapper.is_some() {
            "mapper"
        } else {
            "script"
        }
        .into(),
        mapper: o.mapper.clone().unwrap_or_default(),
        script: o
            .scripts
            .as_ref()
            .map(|s| s.fetch_user_profile.clone())
            .unwrap_or_default(),
        allowed_hosts: o.mapper_egress.allowed_hosts.join("\n"),
        allow_private_networks: o.mapper_egress.allow_private_networks,
    };
    Ok(pages::ConnectionPage {
        l: ctx.layout("connections"),
        id: conn.id.clone(),
        title: conn
            .display_name
            .clone()
            .unwrap_or_else(|| conn.name.clone()),
        strategy: conn.strategy.clone(),
        claims: o.mapper.is_none() && o.scripts.is_none(),
        form,
        mappers: mapper_names(req, ctx).await,
        errors: FieldErrors::default(),
        apps,
        tried: None,
    })
}

async fn show(
    req: &Req<'_>,
    ctx: &Ctx,
    id: &str,
    error: Option<String>,
    tried: Option<TryResult>,
) -> Response<Body> {
    match connection_page(req, ctx, id).await {
        Ok(mut page) => {
            let status = if error.is_some() {
                StatusCode::CONFLICT
            } else {
                StatusCode::OK
            };
            page.errors.general = error;
            page.tried = tried;
            html(status, askama::Template::render(&page))
        }
        Err(f) => error_page(status_of(&f), "Connection", &f.message),
    }
}

/// The Applications tab: one checkbox per app; the whole list is sent, and
/// each app's state becomes what was ticked.
async fn set_clients(req: &Req<'_>, ctx: &Ctx, id: &str) -> Response<Body> {
    let ticked: Vec<&str> = req.form.all("enabled").collect();
    let listed: Vec<&str> = req.form.all("listed").collect();
    let changes: Vec<EnabledClientChange<'_>> = listed
        .iter()
        .map(|client_id| EnabledClientChange {
            client_id,
            status: ticked.contains(client_id),
        })
        .collect();
    let body = serde_json::to_value(&changes).unwrap_or_default();
    let path = format!("connections/{}/clients", path_segment(id));
    match req
        .api::<Value>(ctx, Method::PATCH, &path, Some(body))
        .await
    {
        Ok(_) => redirect(&format!(
            "{PREFIX}/connections/{}#applications",
            path_segment(id)
        )),
        Err(f) => show(req, ctx, id, Some(f.message), None).await,
    }
}

/// The Try panel: runs the connection's mapper or script with a pasted
/// access token (`POST /api/v2/connections/{id}/try`).
async fn try_connection(req: &Req<'_>, ctx: &Ctx, id: &str) -> Response<Body> {
    let token = req.form.text("access_token");
    let body = serde_json::to_value(TryBody {
        access_token: &token,
    })
    .unwrap_or_default();
    let path = format!("connections/{}/try", path_segment(id));
    let tried = match req
        .api::<TryAnswer>(ctx, Method::POST, &path, Some(body))
        .await
    {
        Ok(answer) => answer.into_result(),
        Err(f) => TryResult {
            error: Some(f.message),
            ..TryResult::default()
        },
    };
    show(req, ctx, id, None, Some(tried)).await
}

/// What `try` answers.
#[derive(Deserialize)]
struct TryAnswer {
    #[serde(default)]
    profile: Option<Value>,
    #[serde(default)]
    user_id: Option<String>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    logs: Vec<TryLog>,
    #[serde(default)]
    requests: Vec<TryRequest>,
    #[serde(default)]
    elapsed_ms: f64,
}

#[derive(Deserialize)]
struct TryLog {
    #[serde(default)]
    level: Value,
    #[serde(default)]
    message: String,
}

#[derive(Deserialize)]
struct TryRequest {
    method: String,
    url: String,
    #[serde(default)]
    status: Option<u16>,
    #[serde(default)]
    error: Option<Value>,
    #[serde(default)]
    elapsed_ms: u64,
}

impl TryAnswer {
    fn into_result(self) -> TryResult {
        TryResult {
            user_id: self.user_id,
            profile: self
                .profile
                .map(|p| serde_json::to_string_pretty(&p).unwrap_or_default()),
            error: self.message,
            logs: self
                .logs
                .into_iter()
                .map(|l| {
                    let level = match l.level {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    (level, l.message)
                })
                .collect(),
            requests: self
                .requests
                .into_iter()
                .map(|r| pages::TriedRequest {
                    line: format!("{} {}", r.method, r.url),
                    outcome: match (r.status, r.error) {
                        (Some(status), _) => status.to_string(),
                        (None, Some(e)) => e.to_string(),
                        (None, None) => "—".into(),
                    },
                    elapsed_ms: r.elapsed_ms,
                })
                .collect(),
            elapsed_ms: format!("{:.1}", self.elapsed_ms),
        }
    }
}

/// Which form field an API message is about, by the names it cites (the
/// API's messages name the option at fault: `tokenURL …`,
/// `scripts.fetchUserProfile: … line 3, column 7`, …).
pub(super) fn field_of(message: &str) -> Option<&'static str> {
    const FIELDS: [(&str, &str); 14] = [
        ("scripts.fetchUserProfile", "script"),
        ("not a valid connection name", "name"),
        ("already exists", "name"),
        ("client_secret", "client_secret"),
        ("authorizationURL", "authorizationURL"),
        ("tokenURL", "tokenURL"),
        ("icon_url", "icon_url"),
        ("client_id", "client_id"),
        ("mapper_settings", "mapper_settings"),
        ("mapper_egress", "allowed_hosts"),
        ("allowed_hosts", "allowed_hosts"),
        ("mapper", "mapper"),
        ("scope", "scope"),
        ("name", "name"),
    ];
    FIELDS
        .iter()
        .find(|(cue, _)| message.contains(cue))
        .map(|(_, field)| *field)
}

impl FieldErrors {
    /// The API's refusal next to the field it names, or above the form.
    pub(super) fn from_failure(failure: &Failure) -> Self {
        let mut errors = Self::default();
        match field_of(&failure.message) {
            Some(field) if failure.status == 400 || failure.status == 409 => {
                errors.fields.insert(field, failure.message.clone());
            }
            _ => errors.general = Some(failure.message.clone()),
        }
        errors
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_messages_land_next_to_the_field_they_name() {
        assert_eq!(
            field_of("scripts.fetchUserProfile: SyntaxError at line 2, column 5"),
            Some("script")
        );
        assert_eq!(
            field_of("tokenURL must use https (http only for loopback)"),
            Some("tokenURL")
        );
        assert_eq!(
            field_of("invalid connection: `a b` is not a valid connection name: use letters"),
            Some("name")
        );
        assert_eq!(field_of("connection `acme` already exists"), Some("name"));
        assert_eq!(field_of("the store is unavailable"), None);
    }

    #[test]
    fn an_edit_that_switches_to_a_mapper_removes_the_script() {
        let form = ConnectionForm {
            profile: "mapper".into(),
            mapper: "github".into(),
            ..ConnectionForm::default()
        };
        let body = serde_json::to_value(options_body(&form, "", None, true)).expect("json");
        assert_eq!(body["mapper"], "github");
        assert!(body["scripts"].is_null() && body.get("scripts").is_some());
        assert!(
            body.get("client_secret").is_none(),
            "an empty secret is kept"
        );
        let created =
            serde_json::to_value(options_body(&form, "s3cret", None, false)).expect("json");
        assert!(
            created.get("scripts").is_none(),
            "nothing to clear on create"
        );
        assert_eq!(created["client_secret"], "s3cret");
    }
}
