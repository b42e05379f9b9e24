//! Mapper runtime benchmarks: `cargo bench -p waypass-tests --bench mapper`.
//!
//! - `invoke/auth0-example`: one login's mapper call — fresh store, instance,
//!   `fetch-user-profile`, the HTTP import answered in-process — so it
//!   measures the sandbox, not the network.
//! - `load/from-cache`: loading a registered mapper from the artifact cache
//!   (mmap, type-check, pre-instantiate), as a restart does: the store keeps
//!   each version's digest, so a restart does not hash the bytes.
//!
//! After criterion's estimates, prints p50/p90/p99 of single invocations.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::Criterion;
use waypass::egress::{CannedTransport, EgressPolicy, OutboundResponse};
use waypass::mapper::{
    LoadedMapper, MapperInput, Runtime, RuntimeConfig, Sandbox, Settings, TokenSet, sha256_hex,
};
use waypass_tests::guests;

const USERINFO: &str =
    r#"{"account":{"uuid":"0b7e2a52-5e0b-4c0f-9d0e-1f2a3b4c5d6e","email":"ada@example.com"}}"#;

fn canned_runtime(cache_dir: Option<std::path::PathBuf>) -> Runtime {
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

fn setup() -> (Runtime, LoadedMapper, MapperInput, Sandbox) {
    let runtime = canned_runtime(None);
    let mapper = runtime
        .load(&guests::bytes(guests::AUTH0_EXAMPLE))
        .expect("loads");
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
    (runtime, mapper, input, sandbox)
}

fn bench_invoke(c: &mut Criterion, rt: &tokio::runtime::Runtime) {
    let (runtime, mapper, input, sandbox) = setup();
    let check = rt.block_on(runtime.invoke(&mapper, &input, &sandbox));
    assert!(check.result.is_ok(), "{:?}", check.result);
    c.bench_function("invoke/auth0-example", |b| {
        b.iter(|| rt.block_on(runtime.invoke(&mapper, &input, &sandbox)))
    });
}

fn bench_load(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = canned_runtime(Some(dir.path().to_path_buf()));
    let bytes = guests::bytes(guests::AUTH0_EXAMPLE);
    let digest = sha256_hex(&bytes);
    runtime.load(&bytes).expect("compiles into the cache");
    c.bench_function("load/from-cache", |b| {
        b.iter(|| {
            let mapper = runtime
                .load_with_digest(&bytes, digest.clone())
                .expect("loads");
            assert!(mapper.from_cache());
            mapper
        })
    });
}

fn percentiles(rt: &tokio::runtime::Runtime) {
    let (runtime, mapper, input, sandbox) = setup();
    for _ in 0..1_000 {
        rt.block_on(runtime.invoke(&mapper, &input, &sandbox));
    }
    let mut samples: Vec<Duration> = (0..20_000)
        .map(|_| {
            let start = Instant::now();
            let report = rt.block_on(runtime.invoke(&mapper, &input, &sandbox));
            let elapsed = start.elapsed();
            assert!(report.result.is_ok());
            elapsed
        })
        .collect();
    samples.sort();
    let at = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
    println!(
        "invoke/auth0-example single calls (n={}): p50 {:.1} µs  p90 {:.1} µs  p99 {:.1} µs",
        samples.len(),
        at(0.50).as_secs_f64() * 1e6,
        at(0.90).as_secs_f64() * 1e6,
        at(0.99).as_secs_f64() * 1e6,
    );
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio");
    let mut c = Criterion::default().configure_from_args();
    bench_invoke(&mut c, &rt);
    bench_load(&mut c);
    c.final_summary();
    percentiles(&rt);
}
