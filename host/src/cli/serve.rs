//! `waypass serve --config FILE`: the login service.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use crate::broker::Broker;
use crate::broker::config::Config;

pub(super) fn run(config: PathBuf) -> anyhow::Result<ExitCode> {
    let config = Config::load(&config)?;
    let rt = super::tokio_runtime()?;
    rt.block_on(async {
        let broker = Arc::new(Broker::from_config(&config).await?);
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
        let bound = listener.local_addr()?;
        tracing::info!(issuer = broker.issuer(), listen = %bound, version = super::VERSION, "waypass is serving");
        eprintln!("waypass: serving {} on {bound}", broker.issuer());
        let watcher = config.mappers_dir.clone().map(|dir| {
            eprintln!("waypass: watching {} for NAME.wasm", dir.display());
            tokio::spawn(crate::broker::watch::watch(broker.clone(), dir))
        });
        crate::broker::server::serve(listener, broker, shutdown_signal()).await;
        if let Some(w) = watcher {
            w.abort();
        }
        eprintln!("waypass: stopped");
        anyhow::Ok(ExitCode::SUCCESS)
    })
}

/// Resolves on Ctrl-C or SIGTERM.
pub(super) async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
