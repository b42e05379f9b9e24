//! `waypass mappers list | push | versions | activate | delete`: the
//! broker's registered components (`waypass mapper …` builds and checks
//! them locally).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use http::Method;
use serde_json::Value;

use super::{Api, ApiArgs, Body, cell, key_values, out, printable, segment, size, time};

#[derive(Debug, Args)]
pub(in crate::cli) struct MappersArgs {
    #[command(flatten)]
    api: ApiArgs,
    #[command(subcommand)]
    command: MappersCommand,
}

#[derive(Debug, Subcommand)]
enum MappersCommand {
    /// List the mappers and their active versions.
    List,
    /// Upload FILE as the next version of NAME and make it active (the
    /// broker validates and compiles it first).
    Push {
        name: String,
        /// The component (`-` reads stdin).
        file: PathBuf,
    },
    /// List NAME's versions.
    Versions { name: String },
    /// Make VERSION of NAME the active one (also a rollback).
    Activate { name: String, version: u32 },
    /// Delete NAME and all its versions (refused while a connection uses it).
    Delete { name: String },
}

pub(in crate::cli) fn run(args: MappersArgs) -> anyhow::Result<ExitCode> {
    let api = Api::new(&args.api)?;
    let one = |name: &str| format!("mappers/{}", segment(name));
    let reply = match &args.command {
        MappersCommand::List => api.get("mappers")?,
        MappersCommand::Push { name, file } => {
            let bytes = super::read_input(file)?;
            api.call_compiling(Method::PUT, &one(name), Body::Wasm(bytes.into()))?
        }
        MappersCommand::Versions { name } => api.get(&format!("{}/versions", one(name)))?,
        MappersCommand::Activate { name, version } => api.call_compiling(
            Method::POST,
            &format!("{}/versions/{version}/activate", one(name)),
            Body::Empty,
        )?,
        MappersCommand::Delete { name } => api.call(Method::DELETE, &one(name), Body::Empty)?,
    };
    if api.json() {
        reply.print_raw()?;
        return Ok(ExitCode::SUCCESS);
    }
    let text = match &args.command {
        MappersCommand::List => list(&reply.value()?),
        MappersCommand::Push { .. } => {
            let mut v = reply.value()?;
            v["size"] = Value::String(size(&v["size"]));
            v["created_at"] = Value::String(time(&v["created_at"]));
            key_values(&v)
        }
        MappersCommand::Versions { .. } => versions(&reply.value()?),
        MappersCommand::Activate { name, version } => {
            format!("mapper {}: version {version} is active\n", printable(name))
        }
        MappersCommand::Delete { name } => format!("deleted mapper {}\n", printable(name)),
    };
    out(&text)?;
    Ok(ExitCode::SUCCESS)
}

fn list(value: &Value) -> String {
    let items = value.as_array().map(Vec::as_slice).unwrap_or_default();
    if items.is_empty() {
        return "no mappers\n".into();
    }
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|m| vec![cell(&m["name"]), cell(&m["active_version"])])
        .collect();
    super::table(&["NAME", "ACTIVE VERSION"], &rows)
}

fn versions(value: &Value) -> String {
    let items = value["versions"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|v| {
            let sha: String = v["sha256"]
                .as_str()
                .unwrap_or_default()
                .chars()
                .take(12)
                .collect();
            vec![
                cell(&v["version"]),
                cell(&v["active"]),
                cell(&Value::String(sha)),
                size(&v["size"]),
                time(&v["created_at"]),
                cell(&v["created_by"]),
            ]
        })
        .collect();
    super::table(
        &[
            "VERSION",
            "ACTIVE",
            "SHA256",
            "SIZE",
            "CREATED",
            "CREATED BY",
        ],
        &rows,
    )
}
