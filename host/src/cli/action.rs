//! `waypass action check | run`: a post-login Action component, locally.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};

use super::admin::printable;
use crate::actions::{ActionEvent, ActionReport};
use crate::egress::{EgressPolicy, HostRule};
use crate::mapper::{Limits, Runtime, RuntimeConfig, Sandbox};

/// Largest event file `action run` reads: an event is a user, an app and
/// a connection, a few KiB.
const MAX_EVENT_BYTES: u64 = 1 << 20;

#[derive(Debug, Subcommand)]
pub(super) enum ActionCommand {
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
    #[arg(long = "secret", value_name = "NAME=VALUE", value_parser = parse_secret)]
    secrets: Vec<(String, String)>,
    /// A host the Action may call: HOST, HOST:PORT, *.DOMAIN, or
    /// http://HOST[:PORT] for plain HTTP (repeatable). Nothing else is
    /// reachable.
    #[arg(long = "allow-host", value_name = "HOST")]
    allow_hosts: Vec<HostRule>,
    /// Allow loopback and private addresses.
    #[arg(long)]
    allow_private_network: bool,
    /// Deadline for the call, in milliseconds.
    #[arg(long)]
    timeout_ms: Option<u64>,
}

fn parse_secret(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("`{s}` is not NAME=VALUE")),
    }
}

pub(super) fn run(cmd: ActionCommand) -> anyhow::Result<ExitCode> {
    match cmd {
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
    let defaults = Limits::default();
    let sandbox = Sandbox {
        egress: Arc::new(EgressPolicy {
            allowed_hosts: args.allow_hosts.clone(),
            allow_private_networks: args.allow_private_network,
            ..EgressPolicy::default()
        }),
        limits: Limits {
            deadline: args
                .timeout_ms
                .map_or(defaults.deadline, Duration::from_millis),
            ..defaults
        },
    };
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
    for line in &report.logs {
        eprintln!(
            "[{:?} {:?}] {}",
            line.source,
            line.level,
            printable(&line.message)
        );
    }
    for r in &report.requests {
        let outcome = match (&r.status, &r.error) {
            (Some(status), _) => status.to_string(),
            (None, Some(e)) => printable(&e.to_string()),
            (None, None) => "-".into(),
        };
        eprintln!(
            "[request] {} {} -> {outcome}",
            printable(&r.method),
            printable(&r.url)
        );
    }
    eprintln!("[{} ms]", report.elapsed.as_millis());
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
