//! The `waypass` command. Parsing and dispatch only; the work is in the library.

use clap::Parser;

/// mimalloc rather than glibc's malloc: a login's Rust code makes ~540
/// allocations and ~80 reallocations (headers, forms, JSON, store rows),
/// on which glibc's malloc spent ~143,000 instructions per login, 11 % of
/// an ES256 login under callgrind (BENCHMARKS.md, "Where a login's
/// CPU goes"). The library is allocator-agnostic; only the binary
/// chooses. SQLite and aws-lc keep the C library's malloc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    waypass::cli::main(waypass::cli::Cli::parse())
}
