//! `waypass mapper build | check | run`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};

use super::admin::printable;
use super::component::{Lang, SandboxArgs, parse_pair, print_trace};
use crate::build::World;
use crate::mapper::{
    InvocationReport, LoadError, MapperInput, Runtime, RuntimeConfig, Settings, TokenSet,
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
    #[arg(long = "setting", value_name = "KEY=VALUE", value_parser = parse_pair)]
    settings: Vec<(String, String)>,
    /// The connection name the mapper sees.
    #[arg(long, default_value = "cli")]
    connection: String,
    #[command(flatten)]
    sandbox: SandboxArgs,
}

pub(super) fn run(cmd: MapperCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        MapperCommand::Build { dir } => {
            super::component::build_and_check(&dir, World::Mapper, |runtime, bytes| {
                runtime.load(bytes)
            })
        }
        MapperCommand::New { dir, lang } => super::component::new(&dir, World::Mapper, lang),
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
    let sandbox = args.sandbox.sandbox();
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
    print_trace(
        &report.logs,
        report.dropped_log_lines,
        &report.requests,
        report.elapsed,
        report.peak_memory_bytes,
    );
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
