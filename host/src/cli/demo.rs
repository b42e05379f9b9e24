//! `waypass demo`: build the example mapper and run it against a local
//! provider, once with a good token and once with a bad one.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;

use crate::dev_provider::{DevProvider, DevUser};
use crate::egress::{EgressPolicy, HostRule};
use crate::mapper::{MapperInput, Runtime, RuntimeConfig, Sandbox, Settings, TokenSet};

const GOOD_TOKEN: &str = "demo-access-token";

pub(super) fn run() -> anyhow::Result<ExitCode> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/mappers/auth0-example");
    eprintln!("building {} …", dir.display());
    let wasm = crate::build::build_mapper(&dir)?;
    let bytes = std::fs::read(&wasm).with_context(|| format!("cannot read {}", wasm.display()))?;

    let rt = super::tokio_runtime()?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let provider = DevProvider::new().with_token(
            GOOD_TOKEN,
            DevUser {
                uuid: "8d1f3c4e-demo".into(),
                email: "ada@example.com".into(),
            },
        );
        let server = tokio::spawn(provider.serve(listener));
        let origin = format!("http://{addr}");
        println!("development provider: {origin}/userinfo");

        let runtime = Runtime::new(RuntimeConfig {
            cache_dir: Some(super::default_cache_dir()),
            ..RuntimeConfig::default()
        })?;
        let mapper = runtime.load(&bytes)?;
        println!("mapper: {} (sha256 {})", wasm.display(), mapper.digest());
        let rule: HostRule = origin.parse().map_err(anyhow::Error::msg)?;
        let sandbox = Sandbox {
            egress: Arc::new(EgressPolicy {
                allow_private_networks: true,
                ..EgressPolicy::allowing([rule])
            }),
            ..Sandbox::default()
        };
        let settings: Settings = [("userinfo_url", format!("{origin}/userinfo"))]
            .into_iter()
            .collect();
        let mut code = ExitCode::SUCCESS;
        for (label, token) in [
            ("a valid token", GOOD_TOKEN),
            ("a revoked token", "revoked"),
        ] {
            println!("\n== fetch-user-profile with {label}");
            let input = MapperInput {
                connection: "demo".into(),
                tokens: TokenSet::bearer(token),
                settings: settings.clone(),
            };
            let report = runtime.invoke(&mapper, &input, &sandbox).await;
            println!("({} µs)", report.elapsed.as_micros());
            let outcome = super::mapper::print_report(&report);
            if token == GOOD_TOKEN && report.result.is_err() {
                code = outcome;
            }
        }
        server.abort();
        anyhow::Ok(code)
    })
}
