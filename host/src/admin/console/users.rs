//! Console pages for users: search by email, a user's page (their
//! identities in Auth0's shape, their recent log events) and delete with a
//! confirmation step — each a call of `/api/v2/users` (and `/api/v2/logs`)
//! made in-process.
//!
//! The console never shows a secret: what it reads of a user and their
//! identities is typed below, so the provider's tokens the API adds for a
//! caller holding `read:user_idp_tokens` are never even parsed.

use http::{Method, Response, StatusCode};
use serde::Deserialize;

use super::pages::{self, IdentityRow, UserRow};
use super::{Body, Ctx, PREFIX, Req, error_page, html, path_segment, redirect, status_of};

/// Users per page of search results.
const PER_PAGE: usize = 50;

/// A user's recent events shown on their page.
const RECENT_EVENTS: usize = 20;

/// Longest email search accepted: an address is at most 254 bytes (RFC
/// 5321 §4.5.3.1.3), and a search is part of one.
const MAX_SEARCH_BYTES: usize = 254;

/// A user as the API shows them — only what the console displays.
#[derive(Debug, Deserialize)]
struct ApiUser {
    user_id: String,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    picture: Option<String>,
    #[serde(default)]
    connection: String,
    #[serde(default)]
    created_at: u64,
    #[serde(default)]
    last_login: u64,
    #[serde(default)]
    logins_count: u64,
    #[serde(default)]
    identities: Vec<ApiIdentity>,
}

/// One identity: Auth0's fields without the provider's tokens.
#[derive(Debug, Deserialize)]
struct ApiIdentity {
    provider: String,
    connection: String,
    user_id: String,
    #[serde(rename = "isSocial", default)]
    is_social: bool,
}

/// `GET /api/v2/users?include_totals=true`.
#[derive(Debug, Deserialize)]
struct UserPage {
    total: u64,
    users: Vec<ApiUser>,
}

/// Routes `/admin/users/...`.
pub(super) async fn route(
    req: &Req<'_>,
    ctx: &Ctx,
    method: &Method,
    seg: &[&str],
) -> Response<Body> {
    match (method, seg) {
        (&Method::GET, []) => search(req, ctx).await,
        (&Method::GET, [id]) => show(req, ctx, id, None).await,
        (&Method::GET, [id, "delete"]) => confirm_delete(req, ctx, id).await,
        (&Method::POST, [id, "delete"]) => {
            let path = format!("users/{}", path_segment(id));
            match req
                .api::<serde_json::Value>(ctx, Method::DELETE, &path, None)
                .await
            {
                Ok(_) => redirect(&format!("{PREFIX}/users?deleted=1")),
                Err(f) => show(req, ctx, id, Some(f.message)).await,
            }
        }
        _ => error_page(StatusCode::NOT_FOUND, "Not found", "No such console page."),
    }
}

fn when(seconds: u64) -> String {
    if seconds == 0 {
        return String::new();
    }
    super::display_time(&crate::events::rfc3339(seconds))
}

fn user_row(u: ApiUser) -> UserRow {
    UserRow {
        href: path_segment(&u.user_id),
        email: u.email.unwrap_or_default(),
        name: u.name.unwrap_or_default(),
        connection: u.connection,
        last_login: when(u.last_login),
        logins_count: u.logins_count,
        user_id: u.user_id,
    }
}

/// `GET /admin/users?email=...&page=N`: the API's email search
/// (case-insensitive, part of the address), or every user.
async fn search(req: &Req<'_>, ctx: &Ctx) -> Response<Body> {
    let params = req.params();
    let email = params.text("email");
    if email.len() > MAX_SEARCH_BYTES {
        return error_page(
            StatusCode::BAD_REQUEST,
            "Users",
            &format!("Search for at most {MAX_SEARCH_BYTES} characters of an address."),
        );
    }
    let page = match params.get("page").map(str::parse::<usize>) {
        None => 0,
        Some(Ok(page)) => page,
        Some(Err(_)) => {
            return error_page(
                StatusCode::BAD_REQUEST,
                "Users",
                "The page is not a number.",
            );
        }
    };
    // The serializer is not `Send`: finished before the call awaits.
    let path = {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        query
            .append_pair("page", &page.to_string())
            .append_pair("per_page", &PER_PAGE.to_string())
            .append_pair("include_totals", "true");
        if !email.is_empty() {
            query.append_pair("email", &email);
        }
        query.finish()
    };
    let path = format!("users?{path}");
    let (rows, total, error) = match req.api::<UserPage>(ctx, Method::GET, &path, None).await {
        Ok(list) => (
            list.users.into_iter().map(user_row).collect::<Vec<_>>(),
            list.total,
            None,
        ),
        Err(f) => (Vec::new(), 0, Some(f.message)),
    };
    let shown_to = page.saturating_mul(PER_PAGE).saturating_add(rows.len());
    let view = pages::Users {
        l: ctx.layout("users"),
        email_query: url::form_urlencoded::byte_serialize(email.as_bytes()).collect(),
        email,
        // Only a flag: a link cannot make the page say what it likes.
        deleted: params.get("deleted") == Some("1"),
        newer: page.checked_sub(1),
        older: (u64::try_from(shown_to).unwrap_or(u64::MAX) < total)
            .then_some(page.saturating_add(1)),
        rows,
        total,
        error,
    };
    html(StatusCode::OK, askama::Template::render(&view))
}

async fn get_user(req: &Req<'_>, ctx: &Ctx, id: &str) -> Result<ApiUser, Response<Body>> {
    let path = format!("users/{}", path_segment(id));
    req.api::<ApiUser>(ctx, Method::GET, &path, None)
        .await
        .map_err(|f| error_page(status_of(&f), "User", &f.message))
}

/// A user's page; `error` from a delete the API refused.
async fn show(req: &Req<'_>, ctx: &Ctx, id: &str, error: Option<String>) -> Response<Body> {
    let user = match get_user(req, ctx, id).await {
        Ok(user) => user,
        Err(resp) => return resp,
    };
    // The API's `q` quotes the id; one holding a quote cannot be asked for.
    let (events, events_error) = if user.user_id.contains('"') {
        (
            Vec::new(),
            Some("This user's id cannot be searched in the logs.".to_owned()),
        )
    } else {
        let q = format!("user_id:\"{}\"", user.user_id);
        match super::logs::events(req, ctx, Some(&q), 0, RECENT_EVENTS).await {
            Ok((rows, _)) => (rows, None),
            Err(f) => (Vec::new(), Some(f.message)),
        }
    };
    let identities = user
        .identities
        .into_iter()
        .map(|i| IdentityRow {
            provider: i.provider,
            connection: i.connection,
            user_id: i.user_id,
            is_social: i.is_social,
        })
        .collect();
    let status = if error.is_some() {
        StatusCode::CONFLICT
    } else {
        StatusCode::OK
    };
    let view = pages::UserPage {
        l: ctx.layout("users"),
        href: path_segment(&user.user_id),
        title: user
            .name
            .clone()
            .or_else(|| user.email.clone())
            .unwrap_or_else(|| user.user_id.clone()),
        picture: user.picture.filter(|p| p.starts_with("https://")),
        email: user.email.unwrap_or_default(),
        connection: user.connection,
        created_at: when(user.created_at),
        last_login: when(user.last_login),
        logins_count: user.logins_count,
        user_id: user.user_id,
        identities,
        events,
        events_error,
        error,
    };
    html(status, askama::Template::render(&view))
}

/// The confirmation step: what deleting takes with it, and the form that
/// does it (with the session's form token).
async fn confirm_delete(req: &Req<'_>, ctx: &Ctx, id: &str) -> Response<Body> {
    let user = match get_user(req, ctx, id).await {
        Ok(user) => user,
        Err(resp) => return resp,
    };
    let view = pages::UserDelete {
        l: ctx.layout("users"),
        href: path_segment(&user.user_id),
        title: user
            .email
            .clone()
            .or(user.name)
            .unwrap_or_else(|| user.user_id.clone()),
        identities: user.identities.len(),
        user_id: user.user_id,
    };
    html(StatusCode::OK, askama::Template::render(&view))
}
