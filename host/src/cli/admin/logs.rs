//! `waypass logs list | get`: what happened (`GET /api/v2/logs`).

use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::Value;

use super::{Api, ApiArgs, cell, key_values, out, segment};

#[derive(Debug, Args)]
pub(in crate::cli) struct LogsArgs {
    #[command(flatten)]
    api: ApiArgs,
    #[command(subcommand)]
    command: LogsCommand,
}

#[derive(Debug, Subcommand)]
enum LogsCommand {
    /// List events, newest first, a page at a time.
    List {
        /// Only events of this type: s, f, sapi, fapi, seacft, feacft, …
        #[arg(long = "type")]
        event_type: Option<String>,
        /// Only the events of this user, e.g. `oauth2|acme|12345`.
        #[arg(long)]
        user: Option<String>,
        /// Only the events of this connection (by name).
        #[arg(long)]
        connection: Option<String>,
        /// From this date on: YYYY-MM-DD, RFC 3339 UTC or epoch seconds.
        #[arg(long)]
        since: Option<String>,
        /// Up to this date (a bare day includes the whole day).
        #[arg(long)]
        until: Option<String>,
        /// The page, from 0.
        #[arg(long)]
        page: Option<u64>,
        /// Events per page (the broker allows at most 100).
        #[arg(long = "per-page")]
        per_page: Option<u64>,
    },
    /// Show one event, with its details.
    Get { id: String },
}

pub(in crate::cli) fn run(args: LogsArgs) -> anyhow::Result<ExitCode> {
    let api = Api::new(&args.api)?;
    let reply = match &args.command {
        LogsCommand::List {
            event_type,
            user,
            connection,
            since,
            until,
            page,
            per_page,
        } => {
            let mut filters = Vec::new();
            if let Some(t) = event_type {
                filters.push(format!("type:{t}"));
            }
            if let Some(u) = user {
                filters.push(format!("user_id:\"{u}\""));
            }
            if let Some(c) = connection {
                filters.push(format!("connection:\"{c}\""));
            }
            if since.is_some() || until.is_some() {
                filters.push(format!(
                    "date:[{} TO {}]",
                    since.as_deref().unwrap_or("*"),
                    until.as_deref().unwrap_or("*")
                ));
            }
            let mut query = url::form_urlencoded::Serializer::new(String::new());
            query.append_pair("include_totals", "true");
            if !filters.is_empty() {
                query.append_pair("q", &filters.join(" AND "));
            }
            if let Some(page) = page {
                query.append_pair("page", &page.to_string());
            }
            if let Some(per_page) = per_page {
                query.append_pair("per_page", &per_page.to_string());
            }
            api.get(&format!("logs?{}", query.finish()))?
        }
        LogsCommand::Get { id } => api.get(&format!("logs/{}", segment(id)))?,
    };
    if api.json() {
        reply.print_raw()?;
        return Ok(ExitCode::SUCCESS);
    }
    match &args.command {
        LogsCommand::List { .. } => {
            let value = reply.value()?;
            out(&list(&value))?;
            let start = value["start"].as_u64().unwrap_or(0);
            let length = value["length"].as_u64().unwrap_or(0);
            let total = value["total"].as_u64().unwrap_or(0);
            if start + length < total {
                eprintln!("({total} events in all; more on the next --page)");
            }
        }
        LogsCommand::Get { .. } => out(&key_values(&reply.value()?))?,
    }
    Ok(ExitCode::SUCCESS)
}

fn list(value: &Value) -> String {
    let headers = [
        "DATE",
        "TYPE",
        "CONNECTION",
        "CLIENT",
        "USER",
        "DESCRIPTION",
    ];
    let logs = value["logs"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let rows: Vec<Vec<String>> = logs
        .iter()
        .map(|e| {
            // A failed login says where it failed first.
            let description = match e["details"]["stage"].as_str() {
                Some(stage) => format!("[{stage}] {}", cell(&e["description"])),
                None => cell(&e["description"]),
            };
            vec![
                cell(&e["date"]),
                cell(&e["type"]),
                cell(&e["connection"]),
                cell(&e["client_id"]),
                cell(&e["user_id"]),
                description,
            ]
        })
        .collect();
    if rows.is_empty() {
        return "no events\n".into();
    }
    super::table(&headers, &rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_login_lists_with_its_stage_before_its_reason() {
        let page = serde_json::json!({"logs": [{
            "date": "2026-12-02T01:00:00.000Z", "type": "f", "connection": "acme",
            "client_id": "app", "description": "the provider refused",
            "details": {"stage": "provider_token"}
        }]});
        let table = list(&page);
        assert!(
            table.contains("[provider_token] the provider refused"),
            "{table}"
        );
        assert_eq!(list(&serde_json::json!({"logs": []})), "no events\n");
    }
}
