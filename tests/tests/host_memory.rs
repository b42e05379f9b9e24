//! A mapper cannot make the host allocate beyond its call's limits: host
//! memory measured on this process (the broker runs in it), which runs
//! nothing but these tests, one at a time.
//!
//! The bound: a call may hold at most its resource table
//! (`MAX_RESOURCES_PER_CALL` entries), each `fields` at most
//! `MAX_FIELDS_BYTES` as wasmtime counts it (about as much in the heap),
//! all within its memory cap. For the guest below that is about 15 MiB of
//! host heap; [`RSS_GROWTH_BOUND`] leaves room for the allocator, the
//! instance's own memory and the rest of the process, and is far below what
//! the same guest reached before the caps (2.3 GB within a 10 s deadline
//! when left to run).

use serde_json::json;
use waypass::mapper::limits::MAX_RESOURCES_PER_CALL;
use waypass_tests::login::{APP, APP_CALLBACK, Browser, CONNECTION, TestBed};

/// How much the process's peak resident memory may grow while a hostile
/// call runs.
const RSS_GROWTH_BOUND: u64 = 64 << 20;

/// Clones of a `fields` of 150 small headers the guest asks for: twenty
/// times the table's room, and about 300 MB of host heap without the caps.
const CLONES: &str = "20000";

/// The process's peak resident memory (VmHWM), in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse().ok())
        .expect("VmHWM in /proc/self/status");
    kib << 10
}

/// Resets the peak to the current resident memory (Linux ≥ 4.0).
fn reset_peak_rss() {
    std::fs::write("/proc/self/clear_refs", "5").expect("reset VmHWM through clear_refs");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_login_whose_mapper_piles_up_http_fields_fails_typed_and_the_broker_stays_small() {
    let tb = TestBed::start(|connections, _| {
        let options = &mut connections[0]["options"];
        options["mapper"] = json!("hostile");
        options["mapper_settings"] = json!({"mode": "echo"});
        let mut bomb = connections[0].clone();
        bomb["name"] = json!("bomb");
        bomb["options"]["mapper_settings"] = json!({"mode": "fields-bomb", "count": CLONES});
        connections.push(bomb);
    })
    .await;
    let login = |connection: &'static str| {
        let url = tb.authorize_url(
            APP,
            APP_CALLBACK,
            &[
                ("scope", "openid"),
                ("state", "s"),
                ("connection", connection),
            ],
        );
        let tb = &tb;
        async move { Browser::default().login(tb, &url, false).await }
    };
    // Warm: the guest compiled and instantiated once, a pool slot touched.
    let warm = login(CONNECTION).await;
    assert!(
        warm.param("code").is_some(),
        "the echo login works: {warm:?}"
    );

    reset_peak_rss();
    let before = peak_rss();
    let landing = login("bomb").await;
    let growth = peak_rss().saturating_sub(before);
    eprintln!("peak RSS grew by {} KiB during the login", growth >> 10);

    assert_eq!(
        landing.param("error").as_deref(),
        Some("server_error"),
        "{landing:?}"
    );
    assert_eq!(
        landing.param("error_description"),
        Some(format!(
            "mapper held more than {MAX_RESOURCES_PER_CALL} host resources (HTTP fields, requests, bodies, streams) at once"
        )),
        "{landing:?}"
    );
    assert!(
        growth < RSS_GROWTH_BOUND,
        "the broker's peak RSS grew by {} MiB during the login",
        growth >> 20
    );
}
