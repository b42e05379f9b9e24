//! Mapper swaps and start-up: `cargo bench -p waypass-tests --bench registry`.
//!
//! - swap: a login is brought to the broker's callback (the browser holds the
//!   provider's redirect), a mapper version is activated through the API, and
//!   the callback is sent the moment the API answers. Timed: from the API's
//!   answer to the broker's redirect back to the app, i.e. until a login has
//!   been served by the new version (checked afterwards through /userinfo).
//! - start-up: `Broker::from_config` on a data directory holding 50
//!   registered mappers (distinct components) whose compiled artifacts are
//!   cached, as a restart finds them.

use std::time::{Duration, Instant};

use serde_json::json;
use waypass::broker::Broker;
use waypass::broker::config::Config;
use waypass_tests::guests;
use waypass_tests::login::{
    APP, APP_CALLBACK, Browser, CONNECTION, TestBed, admin_api, put_mapper, sub_after_login,
};

const SWAPS: usize = 200;
const STARTUP_MAPPERS: usize = 50;

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio");
    rt.block_on(async {
        swaps().await;
        startup().await;
    });
}

async fn swaps() {
    let tb = TestBed::start(|connections, _| {
        connections[0]["options"]["mapper"] = json!("swap-me");
        connections[0]["options"]["mapper_settings"]["mode"] = json!("echo");
    })
    .await;
    let (status, body) = put_mapper(&tb.issuer, "swap-me", guests::bytes(guests::HOSTILE)).await;
    assert_eq!(status, 201, "{body}");
    let mut samples = Vec::with_capacity(SWAPS);
    for i in 0..SWAPS {
        let version = if i % 2 == 0 { 1 } else { 2 };
        let mut browser = Browser::default();
        let callback = to_callback(&tb, &mut browser).await;
        let (status, body) = admin_api(
            &tb.issuer,
            reqwest::Method::POST,
            &format!("mappers/swap-me/versions/{version}/activate"),
            None,
        )
        .await;
        let answered = Instant::now();
        assert_eq!(status, 200, "{body}");
        let (status, location, _) = browser.get(&callback).await;
        samples.push(answered.elapsed());
        assert_eq!(status, 302);
        let served = sub_after_login(&tb.issuer, &location.expect("to the app"))
            .await
            .expect("the user id the login was issued for");
        let expected = if version == 1 {
            "oauth2|devprov|0c2f"
        } else {
            "oauth2|devprov|echo"
        };
        assert!(
            served.starts_with(expected),
            "login {i} served by {served}, expected version {version}"
        );
    }
    samples.sort();
    let at = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
    println!(
        "swap: API answer → login served by the new version (n={SWAPS}): p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
        ms(at(0.5)),
        ms(at(0.99)),
        ms(*samples.last().expect("samples"))
    );
}

/// Walks a login up to the provider's redirect back to the broker.
async fn to_callback(tb: &TestBed, browser: &mut Browser) -> String {
    let url = tb.authorize_url(
        APP,
        APP_CALLBACK,
        &[("scope", "openid"), ("connection", CONNECTION)],
    );
    browser.to_callback(tb.provider.origin(), &url).await
}

async fn startup() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = |dir: &std::path::Path| -> Config {
        Config::parse(&format!(
            "issuer = \"http://127.0.0.1:1\"\ndata_dir = {:?}\n",
            dir.display().to_string()
        ))
        .expect("config")
    };
    // Register 50 distinct components (the hostile guest with a custom
    // section naming its number) through the API, compiling each once.
    {
        let broker = Broker::from_config(&config(dir.path()))
            .await
            .expect("first start");
        for i in 0..STARTUP_MAPPERS {
            let bytes = with_custom_section(guests::bytes(guests::HOSTILE), &format!("copy-{i}"));
            broker
                .register_mapper(&format!("mapper-{i}"), bytes.into(), "bench")
                .await
                .expect("register");
        }
    }
    let mut times = Vec::new();
    for _ in 0..5 {
        let start = Instant::now();
        let broker = Broker::from_config(&config(dir.path()))
            .await
            .expect("restart");
        times.push(start.elapsed());
        assert!(broker.ready().is_ok());
        drop(broker);
    }
    times.sort();
    println!(
        "start-up with {STARTUP_MAPPERS} registered mappers from cached artifacts: median {:.0} ms, max {:.0} ms",
        ms(times[times.len() / 2]),
        ms(*times.last().expect("times"))
    );
}

/// Appends a custom section (id 0) so the bytes, and the hash, differ.
fn with_custom_section(mut bytes: Vec<u8>, name: &str) -> Vec<u8> {
    let mut payload = Vec::new();
    leb(&mut payload, name.len() as u64);
    payload.extend_from_slice(name.as_bytes());
    bytes.push(0);
    leb(&mut bytes, payload.len() as u64);
    bytes.extend(payload);
    bytes
}

fn leb(out: &mut Vec<u8>, mut n: u64) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            break;
        }
        out.push(byte | 0x80);
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
