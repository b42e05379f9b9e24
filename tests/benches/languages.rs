//! The seed port in each language: `cargo bench -p waypass-tests --bench languages`.
//!
//! Per language: component size, compiled artifact size, compile time at
//! registration (no cache), load time from the artifact cache, and one
//! login's mapper call (fresh instance + `fetch-user-profile`, the HTTP
//! import or `fetch()` answered in-process) as p50/p99, with the instance's
//! peak linear memory.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use waypass::egress::{CannedTransport, EgressPolicy, OutboundResponse};
use waypass::mapper::{MapperInput, Runtime, RuntimeConfig, Sandbox, Settings, TokenSet};
use waypass_tests::{guests, plugins};

const USERINFO: &str =
    r#"{"account":{"uuid":"0b7e2a52-5e0b-4c0f-9d0e-1f2a3b4c5d6e","email":"ada@example.com"}}"#;
const CALLS: usize = 2000;

fn runtime(cache_dir: Option<std::path::PathBuf>) -> Runtime {
    let transport = CannedTransport::new(|_| OutboundResponse {
        status: 200,
        headers: vec![("content-type".into(), "application/json".into())],
        body: Bytes::from_static(USERINFO.as_bytes()),
    });
    Runtime::new(RuntimeConfig {
        cache_dir,
        transport: Arc::new(transport),
    })
    .expect("runtime")
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio");
    let ports: Vec<(&str, Vec<u8>)> = vec![
        ("rust", guests::bytes(guests::AUTH0_EXAMPLE)),
        (
            "javascript (http import)",
            plugins::bytes("auth0-example-js"),
        ),
        (
            "javascript (fetch)",
            plugins::bytes("auth0-example-js-fetch"),
        ),
        ("python", plugins::bytes("auth0-example-py")),
    ];
    let input = MapperInput {
        connection: "bench".into(),
        tokens: TokenSet::bearer("at-bench"),
        settings: [("userinfo_url", "http://127.0.0.1:9/userinfo")]
            .into_iter()
            .collect::<Settings>(),
    };
    let sandbox = Sandbox {
        egress: Arc::new(EgressPolicy {
            allow_private_networks: true,
            ..EgressPolicy::allowing(["http://127.0.0.1:9".parse().expect("rule")])
        }),
        ..Sandbox::default()
    };
    println!(
        "| mapper | component | compiled | compile at registration | load from cache | call p50 | call p99 | peak memory |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    for (label, bytes) in ports {
        let started = Instant::now();
        let compiled = runtime(None)
            .engine()
            .precompile_component(&bytes)
            .expect("compiles");
        let compile = started.elapsed();
        let dir = tempfile::tempdir().expect("tempdir");
        let cached = runtime(Some(dir.path().to_path_buf()));
        cached.load(&bytes).expect("compiles into the cache");
        // As a restart does: the store knows the version's SHA-256.
        let digest = waypass::mapper::sha256_hex(&bytes);
        let started = Instant::now();
        let mapper = cached.load_with_digest(&bytes, digest).expect("loads");
        let load = started.elapsed();
        assert!(mapper.from_cache());
        let mut peak = 0;
        let mut samples: Vec<Duration> = Vec::with_capacity(CALLS);
        for i in 0..CALLS + 100 {
            let start = Instant::now();
            let report = rt.block_on(cached.invoke(&mapper, &input, &sandbox));
            let elapsed = start.elapsed();
            assert!(
                report.result.is_ok(),
                "{label}: {:?} {:?}",
                report.result,
                report.logs
            );
            peak = peak.max(report.peak_memory_bytes);
            if i >= 100 {
                samples.push(elapsed);
            }
        }
        samples.sort();
        let at = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
        println!(
            "| {label} | {:.1} MB | {:.1} MB | {:.2} s | {:.2} ms | {:.3} ms | {:.3} ms | {:.1} MiB |",
            bytes.len() as f64 / 1e6,
            compiled.len() as f64 / 1e6,
            compile.as_secs_f64(),
            load.as_secs_f64() * 1e3,
            at(0.5).as_secs_f64() * 1e3,
            at(0.99).as_secs_f64() * 1e3,
            peak as f64 / (1024.0 * 1024.0),
        );
    }
}
