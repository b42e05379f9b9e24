//! `waypass mapper build | check | run`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};

use super::admin::printable;
use crate::egress::{EgressPolicy, HostRule};
use crate::mapper::{
    InvocationReport, Limits, LoadError, MapperInput, Runtime, RuntimeConfig, Sandbox, Settings,
    TokenSet,
};
use crate::script::ScriptEngine;

#[derive(Debug, Subcommand)]
pub(super) enum MapperCommand {
    /// Build the mapper in DIR into a component; prints the .wasm path last.
    Build { dir: PathBuf },
    /// Start a new mapper in DIR from the seed example, in LANG.
    New {
        dir: PathBuf,
        #[arg(long, value_enum, default_value = "rust")]
        lang: Lang,
    },
    /// Check that FILE implements the mapper world; print its imports and exports.
    Check { file: PathBuf },
    /// Run FILE (or an Auth0 fetchUserProfile script) once, for real, and
    /// print the profile as JSON.
    Run(RunArgs),
    /// Rebuild the script engine shipped in this binary from
    /// plugins/script-engine into host/assets (for Waypass's developers).
    #[command(hide = true)]
    BuildScriptEngine,
    /// Rebuild the example mapper shipped in this binary from
    /// plugins/mappers/auth0-example into host/assets (for Waypass's
    /// developers).
    #[command(hide = true)]
    BuildExampleMapper,
}

/// Languages `mapper new` can start a mapper in.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(super) enum Lang {
    Rust,
    Python,
    Js,
}

#[derive(Debug, Args)]
pub(super) struct RunArgs {
    /// The component to run.
    #[arg(required_unless_present = "script", conflicts_with = "script")]
    file: Option<PathBuf>,
    /// Run this Auth0 fetchUserProfile script (a .js file) with the script
    /// engine built into waypass instead of a component.
    #[arg(long, value_name = "FILE")]
    script: Option<PathBuf>,
    /// The provider access token to hand the mapper.
    #[arg(long, env = "WAYPASS_ACCESS_TOKEN", hide_env_values = true)]
    access_token: String,
    /// The provider's whole token response (JSON), instead of just the token.
    #[arg(long)]
    token_response: Option<String>,
    /// A mapper setting, KEY=VALUE (repeatable).
    #[arg(long = "setting", value_name = "KEY=VALUE", value_parser = parse_setting)]
    settings: Vec<(String, String)>,
    /// A host the mapper may call: HOST, HOST:PORT, *.DOMAIN, or http://HOST[:PORT]
    /// to allow plain HTTP (repeatable). Nothing else is reachable.
    #[arg(long = "allow-host", value_name = "HOST")]
    allow_hosts: Vec<HostRule>,
    /// Allow loopback and private addresses (local test providers).
    #[arg(long)]
    allow_private_network: bool,
    /// The connection name the mapper sees.
    #[arg(long, default_value = "cli")]
    connection: String,
    /// Deadline for the whole call, in milliseconds.
    #[arg(long)]
    timeout_ms: Option<u64>,
    /// Memory limit, in MiB.
    #[arg(long)]
    memory_mib: Option<usize>,
}

fn parse_setting(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("`{s}` is not KEY=VALUE")),
    }
}

pub(super) fn run(cmd: MapperCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        MapperCommand::Build { dir } => {
            let wasm = crate::build::build_mapper(&dir)?;
            let runtime = Runtime::new(RuntimeConfig::default())?;
            let bytes =
                std::fs::read(&wasm).with_context(|| format!("cannot read {}", wasm.display()))?;
            if let Err(e) = runtime.load(&bytes) {
                eprintln!(
                    "built {}, but it is not a usable mapper: {e}",
                    wasm.display()
                );
                return Ok(ExitCode::FAILURE);
            }
            println!("{}", wasm.display());
            Ok(ExitCode::SUCCESS)
        }
        MapperCommand::New { dir, lang } => {
            let language = match lang {
                Lang::Rust => crate::build::Language::Rust,
                Lang::Python => crate::build::Language::Python,
                Lang::Js => crate::build::Language::JavaScript,
            };
            let dir = crate::build::new_mapper(&dir, language)?;
            eprintln!(
                "created {}; next: waypass mapper build {}",
                dir.display(),
                dir.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        MapperCommand::Check { file } => check(&file),
        MapperCommand::Run(args) => run_once(args),
        MapperCommand::BuildScriptEngine => {
            let wasm = crate::build::build_script_engine()?;
            println!("{}", wasm.display());
            Ok(ExitCode::SUCCESS)
        }
        MapperCommand::BuildExampleMapper => {
            let wasm = crate::build::build_example_mapper()?;
            println!("{}", wasm.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn check(file: &std::path::Path) -> anyhow::Result<ExitCode> {
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let runtime = Runtime::new(RuntimeConfig::default())?;
    let print = |info: &crate::mapper::ComponentInfo| {
        println!("imports:");
        info.imports.iter().for_each(|i| println!("  {i}"));
        println!("exports:");
        info.exports.iter().for_each(|e| println!("  {e}"));
    };
    match runtime.load(&bytes) {
        Ok(mapper) => {
            print(mapper.info());
            println!(
                "ok: implements {} (sha256 {})",
                crate::mapper::WORLD,
                mapper.digest()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            // Show what the component is, when it is one, next to why it does not fit.
            if matches!(
                e,
                LoadError::ForbiddenImports(_) | LoadError::WorldMismatch(_)
            ) && let Ok(info) = runtime.inspect(&bytes)
            {
                print(&info);
            }
            eprintln!("{}: {e}", file.display());
            Ok(ExitCode::FAILURE)
        }
    }
}

fn run_once(args: RunArgs) -> anyhow::Result<ExitCode> {
    let (path, script) = match (&args.file, &args.script) {
        (_, Some(path)) => (
            path,
            Some(
                std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read {}", path.display()))?,
            ),
        ),
        (Some(path), None) => (path, None),
        (None, None) => anyhow::bail!("give a component FILE or --script FILE"),
    };
    let bytes = match &script {
        Some(_) => Vec::new(),
        None => std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?,
    };
    let tokens = match &args.token_response {
        Some(json) => {
            let tokens =
                TokenSet::from_json(json).map_err(|e| anyhow::anyhow!("--token-response: {e}"))?;
            TokenSet {
                access_token: args.access_token.clone(),
                ..tokens
            }
        }
        None => TokenSet::bearer(&args.access_token),
    };
    let input = MapperInput {
        connection: args.connection.clone(),
        tokens,
        settings: args.settings.iter().cloned().collect::<Settings>(),
    };
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
            memory_bytes: args.memory_mib.map_or(defaults.memory_bytes, |m| m << 20),
            ..defaults
        },
    };
    let rt = super::tokio_runtime()?;
    let report = rt.block_on(async {
        let runtime = Runtime::new(RuntimeConfig {
            cache_dir: Some(super::default_cache_dir()),
            ..RuntimeConfig::default()
        })?;
        let Some(script) = &script else {
            let mapper = runtime
                .load(&bytes)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            return anyhow::Ok(Some(runtime.invoke(&mapper, &input, &sandbox).await));
        };
        let engine = ScriptEngine::load(&runtime)
            .map_err(|e| anyhow::anyhow!("the built-in script engine: {e}"))?;
        if let Err(e) = engine.check(&runtime, script).await {
            eprintln!("{}: {e}", path.display());
            return Ok(None);
        }
        let input = ScriptEngine::input(input, script);
        anyhow::Ok(Some(
            runtime.invoke(engine.mapper(), &input, &sandbox).await,
        ))
    })?;
    Ok(report.as_ref().map_or(ExitCode::FAILURE, print_report))
}

/// Prints logs and requests to stderr, the profile (JSON) to stdout or the
/// typed error to stderr; the exit code says which. What the mapper chose
/// (its logs, its requests, its error's message) has its control characters
/// escaped, so it cannot drive the terminal.
pub(super) fn print_report(report: &InvocationReport) -> ExitCode {
    for line in &report.logs {
        eprintln!(
            "[{:?} {:?}] {}",
            line.source,
            line.level,
            printable(&line.message)
        );
    }
    eprintln!(
        "[{} ms, peak memory {:.1} MiB]",
        report.elapsed.as_millis(),
        report.peak_memory_bytes as f64 / (1024.0 * 1024.0)
    );
    if report.dropped_log_lines > 0 {
        eprintln!("[{} more log lines dropped]", report.dropped_log_lines);
    }
    for r in &report.requests {
        let outcome = match (&r.status, &r.error) {
            (Some(status), _) => status.to_string(),
            (None, Some(e)) => printable(&e.to_string()),
            (None, None) => "-".into(),
        };
        eprintln!(
            "[request] {} {} -> {} ({} ms)",
            printable(&r.method),
            printable(&r.url),
            outcome,
            r.elapsed_ms
        );
    }
    match &report.result {
        Ok(profile) => {
            match serde_json::to_string_pretty(profile) {
                Ok(json) => println!("{json}"),
                Err(e) => eprintln!("cannot print the profile: {e}"),
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("mapper error ({}): {}", e.kind(), printable(&e.to_string()));
            ExitCode::FAILURE
        }
    }
}
