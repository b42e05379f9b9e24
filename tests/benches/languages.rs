//! The seed port in each language: `cargo bench -p waypass-tests --bench
//! languages [-- --calls N --concurrency C --only LABEL]`.
//!
//! Per language: component size, compiled artifact size, compile time at
//! registration (no cache), load time from the artifact cache, and one
//! login's mapper call as a login pays it: a fresh instance +
//! `fetch-user-profile` on a two-worker runtime like the broker's, its
//! userinfo request (the HTTP import or `fetch()`) going through the egress
//! policy and `NetworkTransport` over a kept-alive loopback connection to a
//! provider on its own thread. After warm-up: single calls one after another
//! (p50/p99, CPU and minor page faults per call), then the same number
//! `--concurrency` at a time (CPU and faults per call; the provider's CPU
//! left out), with the instance's peak memory.
//!
//! Instructions per call: with `WAYPASS_BENCH_CACHE_DIR=DIR` the artifact
//! cache is `DIR` instead of a fresh temporary directory, each row's
//! component is kept there too (componentize-py's output differs from
//! build to build) and the compile timeout is lifted, so one run under
//! `valgrind --tool=none` compiles into it and the runs under `valgrind
//! --tool=callgrind` load from it (all with `WAYPASS_UNDER_VALGRIND=1`)
//! instead of compiling 18 MB under the instrumentation each time; two
//! callgrind runs with different `--calls` give the instructions of the
//! calls between them (BENCHMARKS.md #17).

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use waypass::egress::EgressPolicy;
use waypass::mapper::{MapperInput, Sandbox, Settings, TokenSet};
use waypass_tests::bench::{self, Args, LoopbackProvider};
use waypass_tests::{guests, plugins};

const USERINFO: &str =
    r#"{"account":{"uuid":"0b7e2a52-5e0b-4c0f-9d0e-1f2a3b4c5d6e","email":"ada@example.com"}}"#;

/// Builds (or reads the build of) a component when its row runs.
type ComponentBytes = Box<dyn Fn() -> Vec<u8>>;

/// The component of the test guest `tests/guests/<name>` (Python or
/// JavaScript), built as `waypass mapper build` builds it.
fn guest(name: &str) -> Vec<u8> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("guests")
        .join(name);
    std::fs::read(plugins::build_dir(&dir)).unwrap_or_else(|e| panic!("reading {name}: {e}"))
}

/// The row's component as kept in the cache directory `dir`, built and kept
/// there by the first run: componentize-py's output differs from build to
/// build, and a run under valgrind must load the very bytes a run before it
/// compiled.
fn kept_component(dir: &std::path::Path, label: &str, build: &ComponentBytes) -> Vec<u8> {
    let name: String = label
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let file = dir.join(format!("{name}.wasm"));
    if let Ok(bytes) = std::fs::read(&file) {
        return bytes;
    }
    let bytes = build();
    std::fs::create_dir_all(dir).expect("create the cache directory");
    std::fs::write(&file, &bytes).unwrap_or_else(|e| panic!("writing {}: {e}", file.display()));
    bytes
}

fn main() {
    let args = Args::from_env(2000);
    let rt = bench::broker_like_runtime();
    let provider = LoopbackProvider::start(|_| Bytes::from_static(USERINFO.as_bytes()));
    let ports: Vec<(&str, ComponentBytes)> = vec![
        ("rust", Box::new(|| guests::bytes(guests::AUTH0_EXAMPLE))),
        (
            "javascript (http import)",
            Box::new(|| plugins::bytes("auth0-example-js")),
        ),
        (
            "javascript (fetch)",
            Box::new(|| plugins::bytes("auth0-example-js-fetch")),
        ),
        ("python", Box::new(|| plugins::bytes("auth0-example-py"))),
        // Where a call's time goes (`--only cost-`): the same call with less in it
        // (`tests/guests/cost-*`, answering a constant profile).
        ("cost-js: bindings only", Box::new(|| guest("cost-js-bare"))),
        (
            "cost-js: bindings only, async",
            Box::new(|| guest("cost-js-bare-async")),
        ),
        (
            "cost-js: sdk, no request",
            Box::new(|| guest("cost-js-constant")),
        ),
        (
            "cost-js: sdk + request",
            Box::new(|| guest("cost-js-request")),
        ),
        ("cost-py: bindings only", Box::new(|| guest("cost-py-bare"))),
        (
            "cost-py: sdk, no request",
            Box::new(|| guest("cost-py-constant")),
        ),
        (
            "cost-py: sdk + request",
            Box::new(|| guest("cost-py-request")),
        ),
    ];
    let input = Arc::new(MapperInput {
        connection: "bench".into(),
        tokens: TokenSet::bearer("at-bench"),
        settings: [("userinfo_url", provider.url("/userinfo").as_str())]
            .into_iter()
            .collect::<Settings>(),
    });
    let sandbox = Arc::new(Sandbox {
        egress: Arc::new(EgressPolicy {
            allow_private_networks: true,
            ..EgressPolicy::allowing([provider.url("").parse().expect("rule")])
        }),
        ..Sandbox::default()
    });
    println!(
        "{} calls each, one after another and {} at once; {} cores",
        args.calls,
        args.concurrency,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!(
        "| mapper | component | compiled | compile at registration | load from cache | call p50 | call p99 | CPU per call (1 / {c} at once) | page faults per call (1 / {c}) | peak memory |",
        c = args.concurrency
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    let kept_dir = bench::kept_cache_dir();
    for (label, bytes) in ports {
        if !args.wants(label) {
            continue;
        }
        let bytes = match &kept_dir {
            Some(dir) => kept_component(dir, label, &bytes),
            None => bytes(),
        };
        let (compiled, compile) = if args.calls_only {
            (None, None)
        } else {
            let started = Instant::now();
            let compiled = bench::mapper_runtime(None)
                .engine()
                .precompile_component(&bytes)
                .expect("compiles");
            (Some(compiled.len()), Some(started.elapsed()))
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let cached = Arc::new(bench::cached_mapper_runtime(
            kept_dir.as_deref(),
            dir.path(),
        ));
        cached.load(&bytes).expect("compiles into the cache");
        // As a restart does: the store knows the version's SHA-256.
        let digest = waypass::mapper::sha256_hex(&bytes);
        let started = Instant::now();
        let mapper = Arc::new(cached.load_with_digest(&bytes, digest).expect("loads"));
        let load = started.elapsed();
        assert!(mapper.from_cache());
        let (input, sandbox) = (input.clone(), sandbox.clone());
        let figures = bench::measure_calls(&rt, &provider, &args, move || {
            let (runtime, mapper, input, sandbox) = (
                cached.clone(),
                mapper.clone(),
                input.clone(),
                sandbox.clone(),
            );
            async move {
                let report = runtime.invoke(&mapper, &input, &sandbox).await;
                assert!(
                    report.result.is_ok(),
                    "{label}: {:?} {:?}",
                    report.result,
                    report.logs
                );
                report.peak_memory_bytes
            }
        });
        println!(
            "| {label} | {:.1} MB | {} | {} | {:.2} ms | {:.3} ms | {:.3} ms | {:.3} / {:.3} ms | {:.0} / {:.0} | {:.1} MiB |",
            bytes.len() as f64 / 1e6,
            compiled.map_or("-".into(), |c| format!("{:.1} MB", c as f64 / 1e6)),
            compile.map_or("-".into(), |c| format!("{:.2} s", c.as_secs_f64())),
            load.as_secs_f64() * 1e3,
            figures.p50_ms,
            figures.p99_ms,
            figures.cpu_ms_sequential,
            figures.cpu_ms_concurrent,
            figures.faults_sequential,
            figures.faults_concurrent,
            figures.peak_mib,
        );
    }
}
