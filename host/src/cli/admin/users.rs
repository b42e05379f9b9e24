//! `waypass users list | get | delete | sessions | refresh-tokens |
//! revoke-session | revoke-refresh-token | logout`.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use http::Method;
use serde_json::Value;

use super::{Api, ApiArgs, Body, cell, key_values, out, printable, segment, time, with_times};

#[derive(Debug, Args)]
pub(in crate::cli) struct UsersArgs {
    #[command(flatten)]
    api: ApiArgs,
    #[command(subcommand)]
    command: UsersCommand,
}

#[derive(Debug, Subcommand)]
enum UsersCommand {
    /// List users, a page at a time.
    List {
        /// Only the users whose email contains this (case-insensitive).
        #[arg(long)]
        email: Option<String>,
        /// The page, from 0.
        #[arg(long)]
        page: Option<u64>,
        /// Users per page (the broker allows at most 100).
        #[arg(long = "per-page")]
        per_page: Option<u64>,
    },
    /// Show one user, e.g. `oauth2|acme|12345`.
    Get { id: String },
    /// Delete a user (their sessions end and their tokens are revoked).
    Delete { id: String },
    /// List a user's live browser sessions.
    Sessions { id: String },
    /// List a user's refresh tokens (one per family: the id stays across
    /// rotations).
    RefreshTokens { id: String },
    /// End one session (`ses_…`); its apps are told (back-channel logout).
    RevokeSession { session_id: String },
    /// Revoke one refresh token (`rtf_…`) and the access tokens issued
    /// from it.
    RevokeRefreshToken { token_id: String },
    /// End every session of a user.
    Logout { id: String },
}

pub(in crate::cli) fn run(args: UsersArgs) -> anyhow::Result<ExitCode> {
    let api = Api::new(&args.api)?;
    let one = |id: &str| format!("users/{}", segment(id));
    let reply = match &args.command {
        UsersCommand::List {
            email,
            page,
            per_page,
        } => {
            let mut query = url::form_urlencoded::Serializer::new(String::new());
            query.append_pair("include_totals", "true");
            if let Some(email) = email {
                query.append_pair("email", email);
            }
            if let Some(page) = page {
                query.append_pair("page", &page.to_string());
            }
            if let Some(per_page) = per_page {
                query.append_pair("per_page", &per_page.to_string());
            }
            api.get(&format!("users?{}", query.finish()))?
        }
        UsersCommand::Get { id } => api.get(&one(id))?,
        UsersCommand::Delete { id } => api.call(Method::DELETE, &one(id), Body::Empty)?,
        UsersCommand::Sessions { id } => api.get(&format!("{}/sessions", one(id)))?,
        UsersCommand::RefreshTokens { id } => api.get(&format!("{}/refresh-tokens", one(id)))?,
        UsersCommand::RevokeSession { session_id } => api.call(
            Method::DELETE,
            &format!("sessions/{}", segment(session_id)),
            Body::Empty,
        )?,
        UsersCommand::RevokeRefreshToken { token_id } => api.call(
            Method::DELETE,
            &format!("refresh-tokens/{}", segment(token_id)),
            Body::Empty,
        )?,
        UsersCommand::Logout { id } => api.call(
            Method::DELETE,
            &format!("{}/sessions", one(id)),
            Body::Empty,
        )?,
    };
    if api.json() {
        reply.print_raw()?;
        return Ok(ExitCode::SUCCESS);
    }
    match &args.command {
        UsersCommand::List { .. } => {
            let value = reply.value()?;
            out(&list(&value))?;
            // Auth0's `{start, limit, length, total, users}`.
            let shown = value["users"].as_array().map_or(0, Vec::len) as u64;
            let start = value["start"].as_u64().unwrap_or(0);
            let limit = value["limit"].as_u64().unwrap_or(0);
            let total = value["total"].as_u64().unwrap_or(0);
            if limit > 0 && start + shown < total {
                let next = start / limit + 1;
                eprintln!("({} more: --page {next})", total - start - shown);
            }
        }
        UsersCommand::Get { .. } => out(&key_values(&with_times(
            reply.value()?,
            &["created_at", "last_login"],
        )))?,
        UsersCommand::Delete { id } => out(&format!("deleted user {}\n", printable(id)))?,
        UsersCommand::Sessions { .. } => out(&sessions(&reply.value()?))?,
        UsersCommand::RefreshTokens { .. } => out(&refresh_tokens(&reply.value()?))?,
        UsersCommand::RevokeSession { session_id } => {
            out(&format!("ended session {}\n", printable(session_id)))?;
        }
        UsersCommand::RevokeRefreshToken { token_id } => {
            out(&format!("revoked refresh token {}\n", printable(token_id)))?;
        }
        UsersCommand::Logout { id } => {
            out(&format!("ended every session of {}\n", printable(id)))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn list(value: &Value) -> String {
    let headers = [
        "USER ID",
        "CONNECTION",
        "EMAIL",
        "NAME",
        "LOGINS",
        "LAST LOGIN",
    ];
    let users = value["users"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let rows: Vec<Vec<String>> = users
        .iter()
        .map(|u| {
            vec![
                cell(&u["user_id"]),
                cell(&u["connection"]),
                cell(&u["email"]),
                cell(&u["name"]),
                cell(&u["logins_count"]),
                time(&u["last_login"]),
            ]
        })
        .collect();
    if rows.is_empty() {
        return "no users\n".into();
    }
    super::table(&headers, &rows)
}

/// The `client_id`s of a list of `{client_id}` objects, comma-separated.
fn client_ids(clients: &Value) -> String {
    clients
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|c| cell(&c["client_id"]))
        .collect::<Vec<_>>()
        .join(",")
}

fn sessions(value: &Value) -> String {
    let headers = ["SESSION ID", "APPS", "LOGGED IN", "LAST ACTIVE", "EXPIRES"];
    let rows: Vec<Vec<String>> = value["sessions"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|s| {
            vec![
                cell(&s["id"]),
                client_ids(&s["clients"]),
                time(&s["authenticated_at"]),
                time(&s["last_interacted_at"]),
                time(&s["expires_at"]),
            ]
        })
        .collect();
    if rows.is_empty() {
        return "no sessions\n".into();
    }
    super::table(&headers, &rows)
}

fn refresh_tokens(value: &Value) -> String {
    let headers = ["TOKEN ID", "APP", "AUDIENCE", "LAST USED", "EXPIRES"];
    let rows: Vec<Vec<String>> = value["tokens"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|t| {
            vec![
                cell(&t["id"]),
                cell(&t["client_id"]),
                cell(&t["resource_servers"][0]["audience"]),
                time(&t["last_exchanged_at"]),
                time(&t["expires_at"]),
            ]
        })
        .collect();
    if rows.is_empty() {
        return "no refresh tokens\n".into();
    }
    super::table(&headers, &rows)
}
