//! `waypass connections list | get | create | update | delete | try`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use http::Method;
use serde_json::{Value, json};

use super::{Api, ApiArgs, Body, cell, json_body, key_values, out, printable, read_json, segment};

#[derive(Debug, Args)]
pub(in crate::cli) struct ConnectionsArgs {
    #[command(flatten)]
    api: ApiArgs,
    #[command(subcommand)]
    command: ConnectionsCommand,
}

#[derive(Debug, Subcommand)]
enum ConnectionsCommand {
    /// List the connections.
    List,
    /// Show one connection (its secrets are never shown).
    Get { id: String },
    /// Create a connection from a JSON body in Auth0's shape.
    Create {
        /// The body (`-` reads stdin).
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
    },
    /// Change a connection with a PATCH body: top-level fields replace,
    /// `options` merge field by field, `null` removes a field.
    Update {
        id: String,
        /// The PATCH body (`-` reads stdin).
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
    },
    /// Delete a connection.
    Delete { id: String },
    /// Run the connection's mapper once with a provider access token and
    /// show the profile or the error, its logs and its requests; exits 1
    /// when the mapper fails.
    Try {
        id: String,
        /// The provider access token to hand the mapper (`-` reads stdin).
        /// On the command line it shows in `ps`: prefer `-` or the
        /// WAYPASS_ACCESS_TOKEN variable.
        #[arg(
            long,
            value_name = "TOKEN",
            env = "WAYPASS_ACCESS_TOKEN",
            hide_env_values = true
        )]
        access_token: String,
    },
}

pub(in crate::cli) fn run(args: ConnectionsArgs) -> anyhow::Result<ExitCode> {
    let api = Api::new(&args.api)?;
    let one = |id: &str| format!("connections/{}", segment(id));
    let reply = match &args.command {
        ConnectionsCommand::List => api.get_all("connections")?,
        ConnectionsCommand::Get { id } => api.get(&one(id))?,
        ConnectionsCommand::Create { file } => {
            api.call(Method::POST, "connections", read_json(file)?)?
        }
        ConnectionsCommand::Update { id, file } => {
            api.call(Method::PATCH, &one(id), read_json(file)?)?
        }
        ConnectionsCommand::Delete { id } => api.call(Method::DELETE, &one(id), Body::Empty)?,
        ConnectionsCommand::Try { id, access_token } => {
            let token = if access_token == "-" {
                String::from_utf8(super::read_input(std::path::Path::new("-"))?)?
                    .trim()
                    .to_owned()
            } else {
                access_token.clone()
            };
            let body = json_body(&json!({ "access_token": token }));
            let reply = api.call(Method::POST, &format!("{}/try", one(id)), body)?;
            let value = reply.value()?;
            if api.json() {
                reply.print_raw()?;
            } else {
                out(&try_report(&value))?;
            }
            return Ok(if value.get("error").is_some() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            });
        }
    };
    if api.json() {
        reply.print_raw()?;
        return Ok(ExitCode::SUCCESS);
    }
    let text = match &args.command {
        ConnectionsCommand::List => list(&reply.value()?),
        ConnectionsCommand::Delete { id } => format!("deleted connection {}\n", printable(id)),
        _ => key_values(&reply.value()?),
    };
    out(&text)?;
    Ok(ExitCode::SUCCESS)
}

fn list(value: &Value) -> String {
    let items = value.as_array().map(Vec::as_slice).unwrap_or_default();
    if items.is_empty() {
        return "no connections\n".into();
    }
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|c| {
            vec![
                cell(&c["id"]),
                cell(&c["name"]),
                cell(&c["display_name"]),
                profile_source(c),
                cell(&c["enabled_clients"]),
            ]
        })
        .collect();
    super::table(&["ID", "NAME", "DISPLAY NAME", "MAPPER", "CLIENTS"], &rows)
}

/// The connection's mapper, or `(script)` for an Auth0 fetchUserProfile script.
fn profile_source(c: &Value) -> String {
    if c["options"]["scripts"]["fetchUserProfile"].is_string() {
        "(script)".into()
    } else {
        cell(&c["options"]["mapper"])
    }
}

/// What `try` did: the outcome first, then the mapper's logs and requests.
fn try_report(value: &Value) -> String {
    let elapsed = value["elapsed_ms"].as_f64().unwrap_or_default();
    let mut text = if value["script"].is_string() {
        format!("fetchUserProfile script ({elapsed:.1} ms)\n")
    } else {
        format!(
            "mapper: {} version {} ({elapsed:.1} ms)\n",
            cell(&value["mapper"]["name"]),
            cell(&value["mapper"]["version"]),
        )
    };
    if value.get("error").is_some() {
        text.push_str(&format!(
            "mapper error ({}): {}\n",
            cell(&value["error"]["kind"]),
            cell(&value["message"])
        ));
    } else {
        text.push_str(&key_values(&json!({
            "user_id": value["user_id"],
            "profile": value["profile"],
        })));
    }
    for line in value["logs"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        text.push_str(&format!(
            "[{} {}] {}\n",
            cell(&line["source"]),
            cell(&line["level"]),
            cell(&line["message"])
        ));
    }
    if let Some(dropped) = value["dropped_log_lines"].as_u64().filter(|n| *n > 0) {
        text.push_str(&format!("[{dropped} more log lines dropped]\n"));
    }
    for r in value["requests"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let outcome = match (r.get("status"), r.get("error")) {
            (Some(status), _) => cell(status),
            (None, Some(e)) => format!("{}: {}", cell(&e["kind"]), cell(&e["detail"])),
            (None, None) => "-".into(),
        };
        text.push_str(&format!(
            "[request] {} {} -> {outcome} ({} ms)\n",
            cell(&r["method"]),
            cell(&r["url"]),
            cell(&r["elapsed_ms"])
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_connections_list_as_a_script_and_try_says_it_ran_the_script() {
        let listed = list(&json!([
            {"id": "con_1", "name": "acme", "options": {"mapper": "acme-userinfo"}, "enabled_clients": ["shop"]},
            {"id": "con_2", "name": "legacy", "options": {"scripts": {"fetchUserProfile": "function () {}"}}, "enabled_clients": []}
        ]));
        let rows: Vec<Vec<&str>> = listed
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(rows[1], ["con_1", "acme", "-", "acme-userinfo", "shop"]);
        assert_eq!(rows[2], ["con_2", "legacy", "-", "(script)", "-"]);
        let report = try_report(&json!({
            "script": "fetchUserProfile", "elapsed_ms": 1.25,
            "error": {"kind": "other"}, "message": "Your account is suspended",
            "logs": [], "requests": []
        }));
        assert!(
            report.starts_with("fetchUserProfile script (1.2 ms)\nmapper error (other): Your account is suspended\n"),
            "{report}"
        );
    }
}
