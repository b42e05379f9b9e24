//! What `waypass mapper …` and `waypass action …` share: the languages a
//! component is started in, building one and checking it against its world,
//! the sandbox flags of `run`, and how a call's logs and requests are shown.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use super::admin::printable;
use crate::build::{Language, World};
use crate::egress::{EgressPolicy, HostRule, RequestRecord};
use crate::mapper::{Limits, LogLine, Runtime, RuntimeConfig, Sandbox};

/// Languages `mapper new` and `action new` start a component in.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(super) enum Lang {
    Rust,
    Python,
    Js,
}

impl From<Lang> for Language {
    fn from(lang: Lang) -> Self {
        match lang {
            Lang::Rust => Language::Rust,
            Lang::Python => Language::Python,
            Lang::Js => Language::JavaScript,
        }
    }
}

/// A `KEY=VALUE` flag (a mapper's setting, an Action's secret).
pub(super) fn parse_pair(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("`{s}` is not KEY=VALUE")),
    }
}

/// Builds the `world` component in `dir`, then loads it with `load` (which
/// validates it against the world): prints the component's path, or says
/// why it is not usable.
pub(super) fn build_and_check<T, E: std::fmt::Display>(
    dir: &Path,
    world: World,
    load: impl FnOnce(&Runtime, &[u8]) -> Result<T, E>,
) -> anyhow::Result<ExitCode> {
    let wasm = crate::build::build(dir, world)?;
    let runtime = Runtime::new(RuntimeConfig::default())?;
    let bytes = std::fs::read(&wasm).with_context(|| format!("cannot read {}", wasm.display()))?;
    if let Err(e) = load(&runtime, &bytes) {
        eprintln!(
            "built {}, but it is not a usable {}: {e}",
            wasm.display(),
            world.noun()
        );
        return Ok(ExitCode::FAILURE);
    }
    println!("{}", wasm.display());
    Ok(ExitCode::SUCCESS)
}

/// Scaffolds a `world` component in `dir` and says what to do next.
pub(super) fn new(dir: &Path, world: World, lang: Lang) -> anyhow::Result<ExitCode> {
    let dir: PathBuf = match world {
        World::Mapper => crate::build::new_mapper(dir, lang.into())?,
        World::Action => crate::build::new_action(dir, lang.into())?,
    };
    let command = match world {
        World::Mapper => "mapper",
        World::Action => "action",
    };
    eprintln!(
        "created {}; next: waypass {command} build {}",
        dir.display(),
        dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// The sandbox flags of `run`.
#[derive(Debug, Args)]
pub(super) struct SandboxArgs {
    /// A host the component may call: HOST, HOST:PORT, *.DOMAIN, or
    /// http://HOST[:PORT] to allow plain HTTP (repeatable). Nothing else is
    /// reachable.
    #[arg(long = "allow-host", value_name = "HOST")]
    allow_hosts: Vec<HostRule>,
    /// Allow loopback and private addresses (local test servers).
    #[arg(long)]
    allow_private_network: bool,
    /// Deadline for the whole call, in milliseconds.
    #[arg(long)]
    timeout_ms: Option<u64>,
    /// Memory limit, in MiB.
    #[arg(long)]
    memory_mib: Option<usize>,
}

impl SandboxArgs {
    /// The sandbox these flags ask for, on the default limits.
    pub(super) fn sandbox(&self) -> Sandbox {
        let defaults = Limits::default();
        Sandbox {
            egress: Arc::new(EgressPolicy {
                allowed_hosts: self.allow_hosts.clone(),
                allow_private_networks: self.allow_private_network,
                ..EgressPolicy::default()
            }),
            limits: Limits {
                deadline: self
                    .timeout_ms
                    .map_or(defaults.deadline, Duration::from_millis),
                memory_bytes: self.memory_mib.map_or(defaults.memory_bytes, |m| m << 20),
                ..defaults
            },
        }
    }
}

/// Prints a call's logs, time and memory, and requests to stderr. What the
/// component chose (its logs, its requests) has its control characters
/// escaped, so it cannot drive the terminal.
pub(super) fn print_trace(
    logs: &[LogLine],
    dropped_log_lines: usize,
    requests: &[RequestRecord],
    elapsed: Duration,
    peak_memory_bytes: usize,
) {
    for line in logs {
        eprintln!(
            "[{:?} {:?}] {}",
            line.source,
            line.level,
            printable(&line.message)
        );
    }
    eprintln!(
        "[{} ms, peak memory {:.1} MiB]",
        elapsed.as_millis(),
        peak_memory_bytes as f64 / (1024.0 * 1024.0)
    );
    if dropped_log_lines > 0 {
        eprintln!("[{dropped_log_lines} more log lines dropped]");
    }
    for r in requests {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_value_flags_split_at_the_first_equals_sign_and_need_a_key() {
        assert_eq!(
            parse_pair("API_KEY=a=b"),
            Ok(("API_KEY".into(), "a=b".into()))
        );
        assert!(parse_pair("=value").is_err());
        assert!(parse_pair("novalue").is_err());
    }
}
