//! `waypass action new | build | check | run`: a post-login Action
//! component, locally.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};

use super::admin::printable;
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
    }
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
