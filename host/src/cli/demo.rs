//! `waypass demo`: run the example mapper (shipped in the binary) against a
//! local provider, once with a good token and once with a bad one.

use std::process::ExitCode;
use std::sync::Arc;

use crate::dev_provider::{DevProvider, DevUser};
use crate::egress::{EgressPolicy, HostRule};
use crate::mapper::{MapperInput, Runtime, RuntimeConfig, Sandbox, Settings, TokenSet};

const GOOD_TOKEN: &str = "demo-access-token";

pub(super) fn run() -> anyhow::Result<ExitCode> {
    // The example mapper shipped in this binary: no source tree, no toolchain.
    let bytes = crate::quickstart::EXAMPLE_MAPPER_WASM;

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
        let mapper = runtime.load(bytes)?;
        println!(
            "mapper: the example shipped in waypass (sha256 {})",
            mapper.digest()
        );
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
