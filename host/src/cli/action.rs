//! `waypass action new | build | check | run`: a post-login Action
//! component, locally; `waypass action push`: onto a running broker.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};

use super::admin::{Api, ApiArgs, Body, json_body, out, printable, segment};
use super::component::{Lang, SandboxArgs, parse_pair, print_trace};
use crate::actions::{ActionEvent, ActionReport};
use crate::build::World;
use crate::mapper::{Runtime, RuntimeConfig};

/// Largest event file `action run` reads: an event is a user, an app and
/// a connection, a few KiB.
const MAX_EVENT_BYTES: u64 = 1 << 20;

#[derive(Debug, Subcommand)]
pub(super) enum ActionCommand {
    /// Start a new Action in DIR from an example, in LANG.
    New {
        dir: PathBuf,
        #[arg(long, value_enum, default_value = "rust")]
        lang: Lang,
    },
    /// Build the Action in DIR into a component checked against the
    /// post-login world; prints the .wasm path last.
    Build {
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
    /// Check that FILE implements the post-login world.
    Check { file: PathBuf },
    /// Run FILE once on the event in --event (JSON, as the API's `test`
    /// takes it) and print its outcome as JSON.
    Run(RunArgs),
    /// Upload FILE to a running broker as the next version of the Action
    /// NAME (created for the post-login trigger if the broker has none of
    /// that name) and deploy it; with --bind, also bind it last to the
    /// post-login trigger unless it is bound already.
    Push(PushArgs),
}

#[derive(Debug, Args)]
pub(super) struct PushArgs {
    /// The Action's name.
    name: String,
    /// The component (`-` reads stdin).
    file: PathBuf,
    /// Bind it to the post-login trigger, after those bound already.
    #[arg(long)]
    bind: bool,
    #[command(flatten)]
    api: ApiArgs,
}

#[derive(Debug, Args)]
pub(super) struct RunArgs {
    /// The component to run.
    file: PathBuf,
    /// The event, as JSON: `user`, `client`, `connection`, optional
    /// `request` and `transaction`.
    #[arg(long, value_name = "FILE")]
    event: PathBuf,
    /// A secret the Action sees in `event.secrets`, NAME=VALUE (repeatable).
    #[arg(long = "secret", value_name = "NAME=VALUE", value_parser = parse_pair)]
    secrets: Vec<(String, String)>,
    #[command(flatten)]
    sandbox: SandboxArgs,
}

pub(super) fn run(cmd: ActionCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        ActionCommand::New { dir, lang } => super::component::new(&dir, World::Action, lang),
        ActionCommand::Build { dir } => {
            super::component::build_and_check(&dir, World::Action, |runtime, bytes| {
                runtime.load_action(bytes)
            })
        }
        ActionCommand::Check { file } => check(&file),
        ActionCommand::Run(args) => run_once(args),
        ActionCommand::Push(args) => push(&args),
    }
}

/// Find or create, upload, deploy, and maybe bind: the management API's
/// steps of a deploy, in one command.
fn push(args: &PushArgs) -> anyhow::Result<ExitCode> {
    let api = Api::new(&args.api)?;
    let bytes = super::admin::read_input(&args.file)?;
    let listed = api.get("actions/actions")?.value()?;
    let existing = listed["actions"]
        .as_array()
        .and_then(|list| list.iter().find(|a| a["name"] == args.name.as_str()))
        .and_then(|a| a["id"].as_str())
        .map(str::to_owned);
    let id = match existing {
        Some(id) => id,
        None => {
            let created = api
                .call(
                    http::Method::POST,
                    "actions/actions",
                    json_body(&serde_json::json!({
                        "name": args.name,
                        "supported_triggers": [{"id": crate::actions::POST_LOGIN_TRIGGER}],
                    })),
                )?
                .value()?;
            created["id"]
                .as_str()
                .context("the broker created the Action but did not say its id")?
                .to_owned()
        }
    };
    let one = format!("actions/actions/{}", segment(&id));
    api.call_compiling(
        http::Method::PUT,
        &format!("{one}/component"),
        Body::Wasm(bytes.into()),
    )?;
    let deployed = api.call_compiling(http::Method::POST, &format!("{one}/deploy"), Body::Empty)?;
    let version = deployed.value()?;
    let mut text = format!(
        "action {} ({}): version {} deployed\n",
        printable(&args.name),
        printable(&id),
        version["number"]
    );
    if args.bind {
        let path = format!(
            "actions/triggers/{}/bindings",
            crate::actions::POST_LOGIN_TRIGGER
        );
        let bound = api.get(&path)?.value()?;
        let mut refs: Vec<serde_json::Value> = bound["bindings"]
            .as_array()
            .map(|list| {
                list.iter()
                    .filter_map(|b| b["action"]["id"].as_str())
                    .map(|bid| serde_json::json!({"ref": {"type": "action_id", "value": bid}}))
                    .collect()
            })
            .unwrap_or_default();
        let already = refs.iter().any(|r| r["ref"]["value"] == id.as_str());
        if already {
            text.push_str("already bound to post-login\n");
        } else {
            refs.push(serde_json::json!({"ref": {"type": "action_id", "value": id}}));
            api.call(
                http::Method::PATCH,
                &path,
                json_body(&serde_json::json!({ "bindings": refs })),
            )?;
            text.push_str(&format!("bound to post-login, position {}\n", refs.len()));
        }
    }
    if api.json() {
        deployed.print_raw()?;
    } else {
        out(&text)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn check(file: &Path) -> anyhow::Result<ExitCode> {
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let runtime = Runtime::new(RuntimeConfig::default())?;
    match runtime.load_action(&bytes) {
        Ok(action) => {
            println!(
                "ok: implements {} (sha256 {})",
                crate::actions::WORLD,
                action.digest()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("{}: {e}", file.display());
            Ok(ExitCode::FAILURE)
        }
    }
}

fn run_once(args: RunArgs) -> anyhow::Result<ExitCode> {
    let size = std::fs::metadata(&args.event)
        .with_context(|| format!("cannot read {}", args.event.display()))?
        .len();
    anyhow::ensure!(
        size <= MAX_EVENT_BYTES,
        "{} is over {MAX_EVENT_BYTES} bytes",
        args.event.display()
    );
    let text = std::fs::read_to_string(&args.event)
        .with_context(|| format!("cannot read {}", args.event.display()))?;
    let event: ActionEvent = serde_json::from_str(&text)
        .with_context(|| format!("{} is not an event", args.event.display()))?;
    let bytes = std::fs::read(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let sandbox = args.sandbox.sandbox();
    let rt = super::tokio_runtime()?;
    let report = rt.block_on(async {
        let runtime = Runtime::new(RuntimeConfig {
            cache_dir: Some(super::default_cache_dir()),
            ..RuntimeConfig::default()
        })?;
        let action = runtime
            .load_action(&bytes)
            .map_err(|e| anyhow::anyhow!("{}: {e}", args.file.display()))?;
        anyhow::Ok(
            runtime
                .invoke_action(&action, &event, &args.secrets, &sandbox, "cli")
                .await,
        )
    })?;
    Ok(print_report(&report))
}

/// Logs and requests to stderr, the outcome (JSON) to stdout or the error
/// to stderr; control characters the Action chose are escaped.
fn print_report(report: &ActionReport) -> ExitCode {
    print_trace(
        &report.logs,
        report.dropped_log_lines,
        &report.requests,
        report.elapsed,
        report.peak_memory_bytes,
    );
    match &report.result {
        Ok(outcome) => {
            match serde_json::to_string_pretty(outcome) {
                Ok(json) => println!("{json}"),
                Err(e) => eprintln!("cannot print the outcome: {e}"),
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("action error ({}): {}", e.kind(), printable(&e.to_string()));
            ExitCode::FAILURE
        }
    }
}
