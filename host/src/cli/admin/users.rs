//! `waypass users list | get | delete`.

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
    /// Delete a user.
    Delete { id: String },
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
