//! `waypass quickstart [--port N] [--data-dir DIR]`.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::quickstart::{Options, Quickstart};

#[derive(Debug, Args)]
pub(super) struct QuickstartArgs {
    /// The broker's port on 127.0.0.1 (0: any free port).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Where keys and compiled mappers are kept.
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

pub(super) fn run(args: QuickstartArgs) -> anyhow::Result<ExitCode> {
    let data_dir = args
        .data_dir
        .unwrap_or_else(crate::quickstart::default_data_dir);
    // The example mapper shipped in this binary: no source tree, no toolchain.
    let mapper = crate::quickstart::install_example_mapper(&data_dir)?;
    let options = Options {
        listen: SocketAddr::from((Ipv4Addr::LOCALHOST, args.port)),
        data_dir: data_dir.clone(),
        mapper,
    };
    let rt = super::tokio_runtime()?;
    rt.block_on(async {
        let qs = Quickstart::start(options).await?;
        println!("Waypass quickstart is running.");
        println!("  broker (issuer):       {}", qs.issuer);
        println!(
            "  development provider:  {} (account: ada / lovelace)",
            qs.provider.origin()
        );
        println!("  data directory:        {}", data_dir.display());
        println!(
            "  console:               {} (sign in as ada)",
            qs.console_url
        );
        println!();
        println!("Open {} and log in. Ctrl-C stops.", qs.app_url);
        super::serve::shutdown_signal().await;
        drop(qs);
        anyhow::Ok(ExitCode::SUCCESS)
    })
}
