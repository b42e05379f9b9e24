//! Auth0 scripts in the shipped engine: `cargo bench -p waypass-tests --bench
//! scripts [-- --calls N --concurrency C --only LABEL --calls-only --engine PATH]`.
//!
//! The per-login cost of a script connection as a login pays it: the engine
//! runs the script on a two-worker runtime like the broker's, its requests
//! going through the egress policy and `NetworkTransport` over a kept-alive
//! loopback connection to a provider on its own thread. After warm-up:
//! single logins one after another (p50/p99, CPU and minor page faults per
//! login), then the same number `--concurrency` at a time (CPU and faults
//! per login; the provider's CPU left out), with the instance's peak
//! memory. Also the engine's size, its compile time (once per data
//! directory) and its load time from the artifact cache.
//!
//! `--engine PATH` runs an engine component built elsewhere instead of the
//! shipped one (an experiment's build, compared against the shipped engine
//! without rebuilding the host).
//!
//! Instructions per login: with `WAYPASS_BENCH_CACHE_DIR=DIR` the artifact
//! cache is `DIR` instead of a fresh temporary directory and the compile
//! timeout is lifted, so that a run with `WAYPASS_UNDER_VALGRIND=1`
//! compiles the engine into it natively and a run under `valgrind
//! --tool=callgrind` (with the same variable) loads it instead of
//! compiling 12–15 MB under the instrumentation (as the `languages` bench).

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use serde_json::json;
use waypass::egress::EgressPolicy;
use waypass::keys::{Alg, KeySet};
use waypass::mapper::{MapperInput, Runtime, Sandbox, Settings, TokenSet};
use waypass::script::{ENGINE_WASM, ScriptEngine};
use waypass_tests::bench::{self, Args, LoopbackProvider};

const DOC_EXAMPLE: &str = include_str!("../../examples/scripts/auth0-doc-example.js");
/// Where the documentation's script sends its request; the bench points it
/// at the loopback provider.
const DOC_EXAMPLE_HOST: &str = "https://auth.example.com";

/// A script that calls back a constant profile: no request, no module, so
/// what a login costs beyond the engine's own per-call work is almost nothing.
const CONSTANT_PROFILE: &str = r#"function (accessToken, ctx, callback) {
  callback(null, { user_id: "constant", email: "ada@example.com" });
}"#;

const DECODE_ID_TOKEN: &str = r#"function (accessToken, ctx, callback) {
  var jwt = require("jsonwebtoken");
  const idToken = jwt.decode(ctx.id_token);
  callback(null, { user_id: idToken.sub, email: idToken.email });
}"#;

const VERIFY_WITH_JWKS: &str = r#"function (accessToken, context, callback) {
  const jwt = require('jsonwebtoken');
  const client = require('jwks-rsa')({ jwksUri: 'https://auth.example.com/.well-known/jwks.json' });
  const getKey = (header, cb) => client.getSigningKey(header.kid, (err, key) => cb(err, key && key.getPublicKey()));
  jwt.verify(context.id_token, getKey, {}, (err, claims) => {
    if (err) return callback(err);
    callback(null, { user_id: claims.sub, email: claims.email });
  });
}"#;

/// Bytes of code the long variant of the documentation's script carries
/// and never runs: how much of a login the script's parse costs (the engine
/// compiles the script on every login, in the login's fresh instance), by
/// the difference from the 694-byte original.
const UNUSED_CODE_BYTES: usize = 64 << 10;

/// The documentation's script with [`UNUSED_CODE_BYTES`] of branches it
/// never takes at the top of its body: parsed and compiled, never run.
fn with_unused_code(script: &str) -> String {
    let mut unused = String::new();
    let mut i = 0;
    while unused.len() < UNUSED_CODE_BYTES {
        unused.push_str(&format!(
            "  if (accessToken === null) {{ const unused{i} = {{ id: {i}, name: 'unused ' + accessToken, list: [1, 2, 3] }}; return callback(null, unused{i}); }}\n"
        ));
        i += 1;
    }
    script.replacen("{\n", &format!("{{\n{unused}"), 1)
}

/// `--engine PATH` from the command line, if given.
fn engine_override() -> Option<std::path::PathBuf> {
    let argv: Vec<String> = std::env::args().collect();
    argv.windows(2)
        .find(|pair| pair[0] == "--engine")
        .map(|pair| pair[1].clone().into())
}

fn main() {
    let args = Args::from_env(2000);
    let rt = bench::broker_like_runtime();
    let keys = KeySet::generate().expect("keys");
    let jwks = Bytes::from(keys.jwks().to_string());
    let provider = LoopbackProvider::start(move |path| {
        if path == "/.well-known/jwks.json" {
            jwks.clone()
        } else {
            Bytes::from_static(br#"{"account":{"uuid":"2b3c","email":"ada@example.com"}}"#)
        }
    });
    let id_token = keys
        .sign(
            Alg::Rs256,
            &json!({"sub": "oidc-5", "email": "ada@example.com"}),
        )
        .expect("sign");
    let tokens = TokenSet::from_json(
        &json!({"access_token": "at-bench", "token_type": "Bearer", "id_token": id_token})
            .to_string(),
    )
    .expect("tokens");

    if !args.calls_only {
        let started = Instant::now();
        let compiled = bench::mapper_runtime(None)
            .engine()
            .precompile_component(ENGINE_WASM)
            .expect("compiles");
        println!(
            "engine: component {:.1} MB, compiled {:.1} MB, compile {:.2} s (once per data directory)",
            ENGINE_WASM.len() as f64 / 1e6,
            compiled.len() as f64 / 1e6,
            started.elapsed().as_secs_f64(),
        );
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let cached = Arc::new(bench::cached_mapper_runtime(
        bench::kept_cache_dir().as_deref(),
        dir.path(),
    ));
    let load = |runtime: &Runtime| match engine_override() {
        Some(path) => {
            let wasm = std::fs::read(&path).expect("reads the --engine component");
            runtime.load(&wasm).expect("loads the --engine component")
        }
        None => {
            let engine = ScriptEngine::load(runtime).expect("loads");
            (**engine.mapper()).clone()
        }
    };
    load(&cached);
    let started = Instant::now();
    let engine = Arc::new(load(&cached));
    println!(
        "engine: {}, load from cache {:.2} ms",
        engine_override().map_or("shipped".into(), |p| p.display().to_string()),
        started.elapsed().as_secs_f64() * 1e3
    );
    assert!(engine.from_cache());

    let sandbox = Arc::new(Sandbox {
        egress: Arc::new(EgressPolicy {
            allow_private_networks: true,
            ..EgressPolicy::allowing([provider.url("").parse().expect("rule")])
        }),
        ..Sandbox::default()
    });
    println!(
        "{} logins each, one after another and {} at once; {} cores",
        args.calls,
        args.concurrency,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!(
        "| script | per-login p50 | p99 | CPU per login (1 / {c} at once) | page faults per login (1 / {c}) | peak memory |",
        c = args.concurrency
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    let long_doc_example = with_unused_code(DOC_EXAMPLE);
    for (label, script) in [
        ("documentation example (one request)", DOC_EXAMPLE),
        (
            "documentation example with 64 KiB of code it never runs",
            long_doc_example.as_str(),
        ),
        ("constant profile (no request)", CONSTANT_PROFILE),
        ("decode the id_token (no request)", DECODE_ID_TOKEN),
        ("verify the id_token (RS256) against JWKS", VERIFY_WITH_JWKS),
    ] {
        if !args.wants(label) {
            continue;
        }
        let script = script.replace(DOC_EXAMPLE_HOST, &provider.url(""));
        let input = Arc::new(ScriptEngine::input(
            MapperInput {
                connection: "bench".into(),
                tokens: tokens.clone(),
                settings: Settings::new(),
            },
            &script,
        ));
        let (runtime, engine, sandbox) = (cached.clone(), engine.clone(), sandbox.clone());
        let figures = bench::measure_calls(&rt, &provider, &args, move || {
            let (runtime, engine, input, sandbox) = (
                runtime.clone(),
                engine.clone(),
                input.clone(),
                sandbox.clone(),
            );
            async move {
                let report = runtime.invoke(&engine, &input, &sandbox).await;
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
            "| {label} | {:.3} ms | {:.3} ms | {:.3} / {:.3} ms | {:.0} / {:.0} | {:.1} MiB |",
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
