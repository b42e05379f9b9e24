//! `waypass check --config FILE`: every problem of a configuration, one a
//! line as `FILE:LINE:COLUMN: error: PATH: MESSAGE`, then a summary.

use std::path::PathBuf;
use std::process::ExitCode;

use super::admin::printable;
use crate::broker::config::check::{CheckOptions, MAX_PROBLEMS, Severity, check_file, summary};

pub(super) fn run(config: PathBuf) -> anyhow::Result<ExitCode> {
    let options = CheckOptions {
        // The script engine compiles once, into the CLI's cache.
        artifact_cache: Some(super::default_cache_dir()),
    };
    let rt = super::tokio_runtime()?;
    let report = rt.block_on(check_file(&config, &options))?;
    let file = config.display();
    for p in &report.problems {
        let place = p
            .place
            .map_or(String::new(), |at| format!(":{}:{}", at.line, at.column));
        let severity = match p.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let path = if p.path.is_empty() {
            String::new()
        } else {
            format!("{}: ", printable(&p.path))
        };
        // What the file says is shown escaped: it cannot drive the terminal.
        println!("{file}{place}: {severity}: {path}{}", printable(&p.message));
    }
    if report.truncated {
        println!("{file}: stopped after {MAX_PROBLEMS} problems");
    }
    let warnings = match report.warnings() {
        0 => String::new(),
        1 => ", 1 warning".into(),
        n => format!(", {n} warnings"),
    };
    match report.errors() {
        0 => {
            println!("{file}: valid ({}{warnings})", summary(&report));
            Ok(ExitCode::SUCCESS)
        }
        n => {
            let errors = if n == 1 {
                "1 error".into()
            } else {
                format!("{n} errors")
            };
            println!("{file}: {errors}{warnings}");
            Ok(ExitCode::FAILURE)
        }
    }
}
