//! Console pages for apps: the list, create (the secret shown once),
//! callbacks, rotate the secret, delete — each a call of `/api/v2/clients`
//! made in-process.

use http::{Method, Response, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::pages::{self, AppForm, FieldErrors};
use super::{
    Body, Ctx, Failure, PREFIX, Req, error_page, html, lines, path_segment, redirect, status_of,
};

/// The app types the form offers (Auth0's `app_type`), with their labels.
pub(super) const APP_TYPES: [(&str, &str); 4] = [
    ("regular_web", "Regular web app (keeps a secret)"),
    ("spa", "Single-page app (no secret, PKCE)"),
    ("native", "Native app (no secret, PKCE)"),
    ("non_interactive", "Machine to machine"),
];

/// A client as `GET /api/v2/clients` shows it (what the console reads).
#[derive(Debug, Deserialize)]
struct ApiClient {
    client_id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    app_type: String,
    #[serde(rename = "type", default)]
    client_type: String,
    #[serde(default)]
    callbacks: Vec<String>,
    #[serde(default)]
    client_secret: Option<String>,
}

#[derive(Deserialize)]
struct ClientList {
    clients: Vec<ApiClient>,
}

#[derive(Serialize)]
struct NewClient {
    name: String,
    app_type: String,
    callbacks: Vec<String>,
}

#[derive(Serialize)]
struct PatchClient {
    name: String,
    callbacks: Vec<String>,
}

/// Routes `/admin/apps/...`.
pub(super) async fn route(
    req: &Req<'_>,
    ctx: &Ctx,
    method: &Method,
    seg: &[&str],
) -> Response<Body> {
    match (method, seg) {
        (&Method::GET, []) => list(req, ctx, AppForm::default(), FieldErrors::default()).await,
        (&Method::POST, ["new"]) => create(req, ctx).await,
        (&Method::GET, [id]) => show(req, ctx, id, None, FieldErrors::default(), None).await,
        (&Method::POST, [id]) => update(req, ctx, id).await,
        (&Method::POST, [id, "rotate"]) => {
            let path = format!("clients/{}/rotate-secret", path_segment(id));
            match req.api::<ApiClient>(ctx, Method::POST, &path, None).await {
                Ok(client) => {
                    show(
                        req,
                        ctx,
                        id,
                        client.client_secret,
                        FieldErrors::default(),
                        None,
                    )
                    .await
                }
                Err(f) => show(req, ctx, id, None, FieldErrors::general(f), None).await,
            }
        }
        (&Method::POST, [id, "delete"]) => {
            let path = format!("clients/{}", path_segment(id));
            match req.api::<Value>(ctx, Method::DELETE, &path, None).await {
                Ok(_) => redirect(&format!("{PREFIX}/apps")),
                Err(f) => show(req, ctx, id, None, FieldErrors::general(f), None).await,
            }
        }
        _ => error_page(StatusCode::NOT_FOUND, "Not found", "No such console page."),
    }
}

async fn list(req: &Req<'_>, ctx: &Ctx, form: AppForm, errors: FieldErrors) -> Response<Body> {
    let status = if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    let (clients, errors) = match req
        .api::<ClientList>(
            ctx,
            Method::GET,
            "clients?per_page=100&include_totals=true",
            None,
        )
        .await
    {
        Ok(list) => (list.clients, errors),
        Err(f) => (Vec::new(), FieldErrors::general(f)),
    };
    let rows = clients
        .into_iter()
        .map(|c| pages::AppRow {
            name: if c.name.is_empty() {
                c.client_id.clone()
            } else {
                c.name
            },
            app_type: c.app_type,
            callbacks: c.callbacks.len(),
            client_id: c.client_id,
        })
        .collect();
    let page = pages::Apps {
        l: ctx.layout("apps"),
        rows,
        form,
        app_types: APP_TYPES.to_vec(),
        errors,
    };
    html(status, askama::Template::render(&page))
}

fn app_form(req: &Req<'_>) -> AppForm {
    AppForm {
        name: req.form.text("name"),
        app_type: req.form.text("app_type"),
        callbacks: req.form.get("callbacks").unwrap_or("").to_owned(),
    }
}

async fn create(req: &Req<'_>, ctx: &Ctx) -> Response<Body> {
    let form = app_form(req);
    if form.name.is_empty() {
        let mut errors = FieldErrors::default();
        errors.fields.insert("name", "Give the app a name.".into());
        return list(req, ctx, form, errors).await;
    }
    let body = NewClient {
        name: form.name.clone(),
        app_type: form.app_type.clone(),
        callbacks: lines(&form.callbacks),
    };
    let body = serde_json::to_value(&body).unwrap_or_default();
    match req
        .api::<ApiClient>(ctx, Method::POST, "clients", Some(body))
        .await
    {
        // Rendered here, not redirected to: the secret is shown this once.
        Ok(client) => {
            let id = client.client_id.clone();
            show(
                req,
                ctx,
                &id,
                client.client_secret,
                FieldErrors::default(),
                Some(StatusCode::CREATED),
            )
            .await
        }
        Err(f) => {
            let errors = app_errors(&f);
            list(req, ctx, form, errors).await
        }
    }
}

/// An app's refusal next to its field: callbacks, type or name.
fn app_errors(f: &Failure) -> FieldErrors {
    let mut errors = FieldErrors::default();
    let field = if f.message.contains("callback") || f.message.contains("redirect") {
        Some("callbacks")
    } else if f.message.contains("app_type") {
        Some("app_type")
    } else if f.message.contains("name") {
        Some("name")
    } else {
        None
    };
    match field {
        Some(field) if f.status == 400 || f.status == 409 => {
            errors.fields.insert(field, f.message.clone());
        }
        _ => errors.general = Some(f.message.clone()),
    }
    errors
}

async fn update(req: &Req<'_>, ctx: &Ctx, id: &str) -> Response<Body> {
    let form = app_form(req);
    let body = PatchClient {
        name: form.name.clone(),
        callbacks: lines(&form.callbacks),
    };
    let body = serde_json::to_value(&body).unwrap_or_default();
    let path = format!("clients/{}", path_segment(id));
    match req
        .api::<ApiClient>(ctx, Method::PATCH, &path, Some(body))
        .await
    {
        Ok(_) => redirect(&format!("{PREFIX}/apps/{}", path_segment(id))),
        Err(f) => show(req, ctx, id, None, app_errors(&f), None).await,
    }
}

async fn show(
    req: &Req<'_>,
    ctx: &Ctx,
    id: &str,
    secret: Option<String>,
    errors: FieldErrors,
    status: Option<StatusCode>,
) -> Response<Body> {
    let path = format!("clients/{}", path_segment(id));
    let client = match req.api::<ApiClient>(ctx, Method::GET, &path, None).await {
        Ok(client) => client,
        Err(f) => return error_page(status_of(&f), "App", &f.message),
    };
    let status = status.unwrap_or(if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    });
    let page = pages::AppPage {
        l: ctx.layout("apps"),
        confidential: client.client_type == "confidential",
        form: AppForm {
            name: client.name,
            app_type: client.app_type,
            callbacks: client.callbacks.join("\n"),
        },
        client_id: client.client_id,
        secret,
        errors,
    };
    html(status, askama::Template::render(&page))
}
