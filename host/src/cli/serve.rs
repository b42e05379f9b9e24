//! `waypass serve --config FILE [--workers N]`: the login service.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use crate::broker::Broker;
use crate::broker::config::Config;

pub(super) fn run(config: PathBuf, workers: Option<usize>) -> anyhow::Result<ExitCode> {
    let config = Config::load(&config)?;
    let workers = match workers {
        Some(0) => anyhow::bail!("--workers must be at least 1"),
        Some(n) => n,
        // Every core the process may use (its CPU affinity, a container's
        // quota as the OS reports it).
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let tls = config.tls_acceptor()?;
        let broker = Arc::new(Broker::from_config_unloaded(&config).await?);
        bench_without(&broker);
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
        let bound = listener.local_addr()?;
        eprintln!("waypass: listening on {bound}; loading the catalog");
        // Listening already: `/readyz` says "not ready" (and every other
        // path 503) until the catalog is loaded.
        let server = match tls {
            Some(tls) => tokio::spawn(crate::broker::server::serve_tls(
                listener,
                tls,
                broker.clone(),
                shutdown_signal(),
            )),
            None => tokio::spawn(crate::broker::server::serve(
                listener,
                broker.clone(),
                shutdown_signal(),
            )),
        };
        if let Err(e) = broker.load_catalog().await {
            server.abort();
            return Err(e);
        }
        tracing::info!(
            issuer = broker.issuer(),
            listen = %bound,
            workers,
            version = super::VERSION,
            instance = broker.instance_id(),
            catalog_version = broker.catalog().version(),
            "waypass is serving"
        );
        eprintln!("waypass: serving {} on {bound}", broker.issuer());
        let watcher = config.mappers_dir.clone().map(|dir| {
            eprintln!("waypass: watching {} for NAME.wasm", dir.display());
            tokio::spawn(crate::admin::watch::watch(broker.clone(), dir))
        });
        let metrics = match config.metrics_listen {
            None => None,
            Some(addr) => {
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|e| anyhow::anyhow!("cannot listen for metrics on {addr}: {e}"))?;
                eprintln!("waypass: metrics without authentication on http://{addr}/metrics");
                Some(tokio::spawn(crate::metrics::serve(
                    listener,
                    broker.clone(),
                )))
            }
        };
        let served = server.await;
        if let Some(m) = metrics {
            m.abort();
        }
        if let Some(w) = watcher {
            w.abort();
        }
        served.map_err(|e| anyhow::anyhow!("the server stopped: {e}"))?;
        if let Some(telemetry) = broker.telemetry().cloned() {
            // Sends the last spans (blocking: off the workers).
            let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
        }
        eprintln!("waypass: stopped");
        anyhow::Ok(ExitCode::SUCCESS)
    })
}

/// Names what the login bench's baseline leaves out (`metrics`, `events`,
/// comma-separated): the CPU those cost per login is measured by running
/// the same bench with and without them (issue #14 §6, BENCHMARKS.md). For
/// benchmarks only: an operator has no reason to run without either, and
/// `waypass serve` says so on its standard error when it is set.
pub const BENCH_WITHOUT_ENV: &str = "WAYPASS_BENCH_WITHOUT";

fn bench_without(broker: &Broker) {
    let Some(without) = std::env::var_os(BENCH_WITHOUT_ENV) else {
        return;
    };
    for part in without.to_string_lossy().split(',') {
        match part.trim() {
            "metrics" => broker.metrics().set_enabled(false),
            "events" => broker.events.set_enabled(false),
            "" => continue,
            other => {
                eprintln!("waypass: {BENCH_WITHOUT_ENV}: `{other}` is neither metrics nor events");
                continue;
            }
        }
        eprintln!(
            "waypass: {BENCH_WITHOUT_ENV}: {} off (a benchmark's baseline)",
            part.trim()
        );
    }
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
