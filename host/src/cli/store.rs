//! `waypass store rotate-key --config FILE`: reseals every secret at rest
//! under the active key (the first of `WAYPASS_SECRETS_KEY` or
//! `secrets_key_file`), reading older ones with the keys after it.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

use crate::broker::config::Config;

#[derive(Debug, Subcommand)]
pub(super) enum StoreCommand {
    /// Reseal every secret (connections' client secrets, private keys,
    /// Actions' secrets, the provider's tokens) under the active secrets
    /// key: the first key given; the others only read. Values written in
    /// the clear by an older schema are sealed too. Safe to run again
    /// (values already under the active key are skipped) and beside
    /// running instances that were given the same keys.
    RotateKey {
        /// The TOML configuration file (its store and secrets key).
        #[arg(long, env = "WAYPASS_CONFIG")]
        config: PathBuf,
    },
}

pub(super) fn run(cmd: StoreCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        StoreCommand::RotateKey { config } => {
            let config = Config::load(&config)?;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let done = rt.block_on(async {
                let store = crate::broker::open_sealed_store(&config).await?;
                let done = store.rotate().await?;
                anyhow::Ok(done)
            })?;
            println!(
                "resealed: {} connection secrets, {} Actions, {} signing-key documents, {} connection key documents, {} provider token sets",
                done.connections,
                done.actions,
                done.signing_keys,
                done.connection_keys,
                done.idp_tokens
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
