//! The `waypass` command line: one file per command.

mod action;
mod admin;
mod check;
mod component;
mod demo;
mod mapper;
mod quickstart;
mod serve;
mod store;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// What `waypass --version` says after the name: the package version and
/// the commit the binary was built from (`host/build.rs`: 12 hex digits,
/// `-dirty` for a tree with changes, `unknown` outside a git checkout).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("WAYPASS_COMMIT"),
    ")"
);

/// Waypass: a self-hosted login broker with WebAssembly profile mappers.
#[derive(Debug, Parser)]
#[command(name = "waypass", version = VERSION, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build, check and run profile mappers.
    #[command(subcommand)]
    Mapper(mapper::MapperCommand),
    /// Start, build, check and run post-login Actions locally.
    #[command(subcommand)]
    Action(action::ActionCommand),
    /// Run the example mapper against a local provider.
    Demo,
    /// Run the login service.
    Serve {
        /// The TOML configuration file.
        #[arg(long, env = "WAYPASS_CONFIG")]
        config: std::path::PathBuf,
        /// Async worker threads (default: one per core).
        #[arg(long, env = "WAYPASS_WORKERS")]
        workers: Option<usize>,
    },
    /// Check a configuration file without serving: every problem, with its
    /// line and column; exit code 1 when there is one.
    Check {
        /// The TOML configuration file.
        #[arg(long, env = "WAYPASS_CONFIG")]
        config: std::path::PathBuf,
    },
    /// Run a complete local setup: broker, development provider, demo app.
    Quickstart(quickstart::QuickstartArgs),
    /// Manage a running broker's connections.
    Connections(admin::connections::ConnectionsArgs),
    /// Manage a running broker's apps.
    Clients(admin::clients::ClientsArgs),
    /// Manage a running broker's mappers: push, versions, activate.
    Mappers(admin::mappers::MappersArgs),
    /// List, show and delete a running broker's users.
    Users(admin::users::UsersArgs),
    /// What happened: logins, token exchanges, management writes.
    Logs(admin::logs::LogsArgs),
    /// The signing keys: list, rotate, revoke.
    Keys(admin::keys::KeysArgs),
    /// The store itself: reseal its secrets under a new key.
    #[command(subcommand)]
    Store(store::StoreCommand),
}

/// Runs the parsed command; errors are printed, not panicked.
pub fn main(cli: Cli) -> ExitCode {
    // WAYPASS_LOG: a tracing filter (default `info`); WAYPASS_LOG_FORMAT=json
    // for one JSON object per line.
    let filter = tracing_subscriber::EnvFilter::try_from_env("WAYPASS_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("WAYPASS_LOG_FORMAT").is_ok_and(|f| f == "json") {
        builder.json().init();
    } else {
        builder.init();
    }
    let result = match cli.command {
        Command::Mapper(cmd) => mapper::run(cmd),
        Command::Action(cmd) => action::run(cmd),
        Command::Demo => demo::run(),
        Command::Serve { config, workers } => serve::run(config, workers),
        Command::Check { config } => check::run(config),
        Command::Quickstart(args) => quickstart::run(args),
        Command::Connections(args) => admin::connections::run(args),
        Command::Clients(args) => admin::clients::run(args),
        Command::Mappers(args) => admin::mappers::run(args),
        Command::Users(args) => admin::users::run(args),
        Command::Logs(args) => admin::logs::run(args),
        Command::Keys(args) => admin::keys::run(args),
        Command::Store(cmd) => store::run(cmd),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A small tokio runtime for one command.
fn tokio_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

/// Where compiled mappers are cached between runs of the CLI.
fn default_cache_dir() -> std::path::PathBuf {
    crate::build::cache_home().join("artifacts")
}
