//! Auth0 scripts in the shipped engine: `cargo bench -p waypass-tests --bench scripts`.
//!
//! The per-login overhead of a script connection: a fresh engine instance,
//! the script compiled and run, its requests answered in-process (so the
//! figure is the sandbox and the engine, not a network), as p50/p99 with the
//! instance's peak memory. Also the engine's size, its compile time (once per
//! data directory) and its load time from the artifact cache.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::json;
use waypass::egress::{CannedTransport, EgressPolicy, OutboundResponse};
use waypass::keys::{Alg, KeySet};
use waypass::mapper::{MapperInput, Runtime, RuntimeConfig, Sandbox, Settings, TokenSet};
use waypass::script::{ENGINE_WASM, ScriptEngine};

const DOC_EXAMPLE: &str = include_str!("../../examples/scripts/auth0-doc-example.js");
const CALLS: usize = 2000;
const WARMUP: usize = 100;

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

fn runtime(cache_dir: Option<std::path::PathBuf>, jwks: String) -> Runtime {
    let jwks = Bytes::from(jwks);
    let transport = CannedTransport::new(move |req| {
        let body = if req.url.path() == "/.well-known/jwks.json" {
            jwks.clone()
        } else {
            Bytes::from_static(br#"{"account":{"uuid":"2b3c","email":"ada@example.com"}}"#)
        };
        OutboundResponse {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body,
        }
    })
    .resolving("auth.example.com", "93.184.215.14".parse().expect("ip"));
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
    let keys = KeySet::generate().expect("keys");
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

    let started = Instant::now();
    let compiled = runtime(None, String::new())
        .engine()
        .precompile_component(ENGINE_WASM)
        .expect("compiles");
    let compile = started.elapsed();
    let dir = tempfile::tempdir().expect("tempdir");
    let cached = runtime(Some(dir.path().to_path_buf()), keys.jwks().to_string());
    ScriptEngine::load(&cached).expect("compiles into the cache");
    let started = Instant::now();
    let engine = ScriptEngine::load(&cached).expect("loads");
    let load = started.elapsed();
    assert!(engine.mapper().from_cache());
    println!(
        "engine: component {:.1} MB, compiled {:.1} MB, compile {:.2} s (once per data directory), load from cache {:.2} ms",
        ENGINE_WASM.len() as f64 / 1e6,
        compiled.len() as f64 / 1e6,
        compile.as_secs_f64(),
        load.as_secs_f64() * 1e3,
    );

    let sandbox = Sandbox {
        egress: Arc::new(EgressPolicy::allowing(["auth.example.com"
            .parse()
            .expect("rule")])),
        ..Sandbox::default()
    };
    println!();
    println!("| script | per-login p50 | p99 | peak memory |");
    println!("| --- | --- | --- | --- |");
    for (label, script) in [
        ("documentation example (one request)", DOC_EXAMPLE),
        ("decode the id_token (no request)", DECODE_ID_TOKEN),
        ("verify the id_token (RS256) against JWKS", VERIFY_WITH_JWKS),
    ] {
        let input = ScriptEngine::input(
            MapperInput {
                connection: "bench".into(),
                tokens: tokens.clone(),
                settings: Settings::new(),
            },
            script,
        );
        let mut peak = 0;
        let mut samples: Vec<Duration> = Vec::with_capacity(CALLS);
        for i in 0..CALLS + WARMUP {
            let start = Instant::now();
            let report = rt.block_on(cached.invoke(engine.mapper(), &input, &sandbox));
            let elapsed = start.elapsed();
            assert!(
                report.result.is_ok(),
                "{label}: {:?} {:?}",
                report.result,
                report.logs
            );
            peak = peak.max(report.peak_memory_bytes);
            if i >= WARMUP {
                samples.push(elapsed);
            }
        }
        samples.sort();
        let at = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
        println!(
            "| {label} | {:.3} ms | {:.3} ms | {:.1} MiB |",
            at(0.5).as_secs_f64() * 1e3,
            at(0.99).as_secs_f64() * 1e3,
            peak as f64 / (1024.0 * 1024.0),
        );
    }
}
