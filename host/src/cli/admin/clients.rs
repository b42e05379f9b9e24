//! `waypass clients list | get | create | update | rotate-secret | delete`.

use std::process::ExitCode;

use anyhow::bail;
use clap::{Args, Subcommand, ValueEnum};
use http::Method;
use serde_json::{Map, Value, json};

use super::{Api, ApiArgs, Body, cell, json_body, key_values, out, printable, segment};

#[derive(Debug, Args)]
pub(in crate::cli) struct ClientsArgs {
    #[command(flatten)]
    api: ApiArgs,
    #[command(subcommand)]
    command: ClientsCommand,
}

#[derive(Debug, Subcommand)]
enum ClientsCommand {
    /// List the apps.
    List,
    /// Show one app.
    Get { id: String },
    /// Register an app; a confidential app's secret is printed once.
    Create {
        /// The client_id (default: a random one).
        #[arg(long = "client-id", value_name = "ID")]
        client_id: Option<String>,
        /// The app's name, shown to users.
        #[arg(long)]
        name: String,
        /// A redirect URI the app may use, compared exactly (repeatable).
        #[arg(long = "callback", value_name = "URL", num_args = 1.., required = true)]
        callbacks: Vec<String>,
        /// A browser or native app: no secret, PKCE required.
        #[arg(long)]
        public: bool,
        /// The id_token signing algorithm.
        #[arg(long, value_enum)]
        alg: Option<Alg>,
        /// A management scope for the client_credentials grant, e.g.
        /// `read:users` (repeatable). Granting needs `write:client_grants`,
        /// and only scopes the caller's token holds.
        #[arg(long = "scope", value_name = "SCOPE", num_args = 1..)]
        scopes: Vec<String>,
    },
    /// Change an app: each given flag replaces that field.
    Update {
        id: String,
        /// The app's name, shown to users.
        #[arg(long)]
        name: Option<String>,
        /// The redirect URIs, replacing the current ones.
        #[arg(long = "callback", value_name = "URL", num_args = 1..)]
        callbacks: Vec<String>,
        #[arg(long, value_enum)]
        alg: Option<Alg>,
        /// The management scopes, replacing the current ones.
        #[arg(long = "scope", value_name = "SCOPE", num_args = 1..)]
        scopes: Vec<String>,
        /// Remove every management scope.
        #[arg(long, conflicts_with = "scopes")]
        clear_scopes: bool,
    },
    /// Issue a new secret (the old one and its tokens stop working); printed once.
    RotateSecret { id: String },
    /// Delete an app (refused while a connection enables it).
    Delete { id: String },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Alg {
    #[value(name = "RS256")]
    Rs256,
    #[value(name = "ES256")]
    Es256,
}

impl Alg {
    fn as_str(self) -> &'static str {
        match self {
            Alg::Rs256 => "RS256",
            Alg::Es256 => "ES256",
        }
    }
}

pub(in crate::cli) fn run(args: ClientsArgs) -> anyhow::Result<ExitCode> {
    let api = Api::new(&args.api)?;
    let one = |id: &str| format!("clients/{}", segment(id));
    let reply = match &args.command {
        ClientsCommand::List => api.get_all("clients")?,
        ClientsCommand::Get { id } => api.get(&one(id))?,
        ClientsCommand::Create {
            client_id,
            name,
            callbacks,
            public,
            alg,
            scopes,
        } => {
            let mut body = json!({
                "name": name,
                "callbacks": callbacks,
                "type": if *public { "public" } else { "confidential" },
            });
            if let Some(id) = client_id {
                body["client_id"] = json!(id);
            }
            if let Some(alg) = alg {
                body["id_token_signed_response_alg"] = json!(alg.as_str());
            }
            if !scopes.is_empty() {
                body["scopes"] = json!(scopes);
            }
            api.call(Method::POST, "clients", json_body(&body))?
        }
        ClientsCommand::Update {
            id,
            name,
            callbacks,
            alg,
            scopes,
            clear_scopes,
        } => {
            let mut body = Map::new();
            if let Some(name) = name {
                body.insert("name".into(), json!(name));
            }
            if !callbacks.is_empty() {
                body.insert("callbacks".into(), json!(callbacks));
            }
            if let Some(alg) = alg {
                body.insert("id_token_signed_response_alg".into(), json!(alg.as_str()));
            }
            if !scopes.is_empty() || *clear_scopes {
                body.insert("scopes".into(), json!(scopes));
            }
            if body.is_empty() {
                bail!(
                    "nothing to change: give --name, --callback, --alg, --scope or --clear-scopes"
                );
            }
            api.call(Method::PATCH, &one(id), json_body(&Value::Object(body)))?
        }
        ClientsCommand::RotateSecret { id } => api.call(
            Method::POST,
            &format!("{}/rotate-secret", one(id)),
            Body::Empty,
        )?,
        ClientsCommand::Delete { id } => api.call(Method::DELETE, &one(id), Body::Empty)?,
    };
    if api.json() {
        reply.print_raw()?;
        return Ok(ExitCode::SUCCESS);
    }
    let text = match &args.command {
        ClientsCommand::List => list(&reply.value()?),
        ClientsCommand::Delete { id } => format!("deleted client {}\n", printable(id)),
        _ => with_secret_once(reply.value()?),
    };
    out(&text)?;
    Ok(ExitCode::SUCCESS)
}

fn list(value: &Value) -> String {
    let items = value.as_array().map(Vec::as_slice).unwrap_or_default();
    if items.is_empty() {
        return "no clients\n".into();
    }
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|c| {
            vec![
                cell(&c["client_id"]),
                cell(&c["name"]),
                cell(&c["type"]),
                cell(&c["id_token_signed_response_alg"]),
                cell(&c["scopes"]),
                cell(&c["callbacks"]),
            ]
        })
        .collect();
    super::table(
        &["CLIENT ID", "NAME", "TYPE", "ALG", "SCOPES", "CALLBACKS"],
        &rows,
    )
}

/// The client, and its secret last, with the warning that goes with it.
fn with_secret_once(mut value: Value) -> String {
    let secret = value
        .as_object_mut()
        .and_then(|o| o.remove("client_secret"));
    let mut text = key_values(&value);
    if let Some(secret) = secret {
        text.push_str(&format!(
            "client_secret: {}\n\nSave the client secret now: it will not be shown again.\n",
            cell(&secret)
        ));
    }
    text
}
