//! The `waypass` command. Parsing and dispatch only; the work is in the library.

use clap::Parser;

fn main() -> std::process::ExitCode {
    waypass::cli::main(waypass::cli::Cli::parse())
}
