//! `waypass keys list | rotate | revoke`: the signing keys
//! (`/api/v2/keys/signing`).

use std::process::ExitCode;

use clap::{Args, Subcommand};
use http::Method;
use serde_json::Value;

use super::{Api, ApiArgs, Body, cell, out, segment};

#[derive(Debug, Args)]
pub(in crate::cli) struct KeysArgs {
    #[command(flatten)]
    api: ApiArgs,
    #[command(subcommand)]
    command: KeysCommand,
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// List the signing keys and their states.
    List,
    /// Rotate: the next key signs from now on, the current one stays
    /// published until the tokens it signed have expired.
    Rotate,
    /// Revoke a key (not the current one): it leaves the JWKS at once.
    Revoke { kid: String },
}

pub(in crate::cli) fn run(args: KeysArgs) -> anyhow::Result<ExitCode> {
    let api = Api::new(&args.api)?;
    let reply = match &args.command {
        KeysCommand::List => api.get("keys/signing")?,
        KeysCommand::Rotate => api.call(Method::POST, "keys/signing/rotate", Body::Empty)?,
        KeysCommand::Revoke { kid } => api.call(
            Method::PUT,
            &format!("keys/signing/{}/revoke", segment(kid)),
            Body::Empty,
        )?,
    };
    if api.json() {
        reply.print_raw()?;
        return Ok(ExitCode::SUCCESS);
    }
    let value = reply.value()?;
    match &args.command {
        KeysCommand::List => out(&list(&value))?,
        KeysCommand::Rotate => out(&format!("rotated; {} signs now\n", cell(&value["kid"])))?,
        KeysCommand::Revoke { kid } => out(&format!("revoked {kid}\n"))?,
    }
    Ok(ExitCode::SUCCESS)
}

fn list(value: &Value) -> String {
    let headers = ["KID", "ALG", "STATE", "PUBLISHED", "CURRENT SINCE", "UNTIL"];
    let keys = value.as_array().map(Vec::as_slice).unwrap_or_default();
    let rows: Vec<Vec<String>> = keys
        .iter()
        .map(|k| {
            let state = ["current", "next", "previous", "revoked"]
                .into_iter()
                .find(|s| k[*s] == true)
                .unwrap_or("-");
            vec![
                cell(&k["kid"]),
                cell(&k["alg"]),
                state.to_owned(),
                cell(&k["published"]),
                cell(&k["current_since"]),
                cell(&k["current_until"]),
            ]
        })
        .collect();
    if rows.is_empty() {
        return "no keys\n".into();
    }
    super::table(&headers, &rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_key_lists_with_its_state() {
        let keys = serde_json::json!([
            {"kid": "a", "alg": "RS256", "current": true, "next": false, "previous": false, "revoked": false, "published": true},
            {"kid": "b", "alg": "RS256", "current": false, "next": false, "previous": false, "revoked": true, "published": false}
        ]);
        let table = list(&keys);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[1].contains("current"), "{table}");
        assert!(lines[2].contains("revoked"), "{table}");
    }
}
