//! Mappers in Python and JavaScript (through our `http` import and through
//! plain `fetch()`) under the same contract and the same tests as Rust.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};

use serde_json::json;
use waypass::egress::{EgressPolicy, HostRule, HttpError};
use waypass::mapper::{
    InvocationReport, LoadedMapper, MapperError, MapperInput, Sandbox, Settings, TokenSet,
};
use waypass_tests::login::{
    APP, APP_CALLBACK, Browser, CONNECTION, RUNTIME, TestBed, admin_api, put_mapper,
    sub_after_login,
};
use waypass_tests::stub::{Reply, Stub};
use waypass_tests::{guests, plugins};

/// The seed port in every language: (label, component).
static PORTS: LazyLock<Vec<(&'static str, LoadedMapper)>> = LazyLock::new(|| {
    let load = |bytes: Vec<u8>| RUNTIME.load(&bytes).expect("the port loads");
    vec![
        ("rust", load(guests::bytes(guests::AUTH0_EXAMPLE))),
        ("python", load(plugins::bytes("auth0-example-py"))),
        ("javascript", load(plugins::bytes("auth0-example-js"))),
        (
            "javascript-fetch",
            load(plugins::bytes("auth0-example-js-fetch")),
        ),
    ]
});

fn ports() -> &'static [(&'static str, LoadedMapper)] {
    // Building and compiling the ports is slow the first time: do it off
    // the async workers.
    tokio::task::block_in_place(|| PORTS.as_slice())
}

async fn run(mapper: &LoadedMapper, stub: &Stub, policy: EgressPolicy) -> InvocationReport {
    let input = MapperInput {
        connection: "lang".into(),
        tokens: TokenSet::bearer("at-123"),
        settings: [("userinfo_url", stub.url("/userinfo"))]
            .into_iter()
            .collect::<Settings>(),
    };
    let sandbox = Sandbox {
        egress: Arc::new(policy),
        ..Sandbox::default()
    };
    RUNTIME.invoke(mapper, &input, &sandbox).await
}

fn open_to(stub: &Stub) -> EgressPolicy {
    EgressPolicy {
        allow_private_networks: true,
        ..EgressPolicy::allowing([stub.rule()])
    }
}

/// Mappers that count their calls in module-level state (`hostile`'s
/// `counter` mode, `tests/guests/counter-js`, `tests/guests/counter-py`):
/// (label, component, settings).
static COUNTERS: LazyLock<Vec<(&'static str, LoadedMapper, Settings)>> = LazyLock::new(|| {
    let guest = |name: &str| {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("guests")
            .join(name);
        let bytes = std::fs::read(plugins::build_dir(&dir)).expect("the counter guest builds");
        RUNTIME.load(&bytes).expect("the counter guest loads")
    };
    let rust = RUNTIME
        .load(&guests::bytes(guests::HOSTILE))
        .expect("hostile loads");
    vec![
        ("rust", rust, [("mode", "counter")].into_iter().collect()),
        ("javascript", guest("counter-js"), Settings::new()),
        ("python", guest("counter-py"), Settings::new()),
    ]
});

/// Runs `mapper` once with `settings`, no network; the user id it answers.
async fn count_once(label: &str, mapper: &LoadedMapper, settings: &Settings) -> String {
    let input = MapperInput {
        connection: "counter".into(),
        tokens: TokenSet::bearer("at-1"),
        settings: settings.clone(),
    };
    let report = RUNTIME.invoke(mapper, &input, &Sandbox::default()).await;
    let profile = report
        .result
        .unwrap_or_else(|e| panic!("{label}: {e} ({:?})", report.logs));
    if label != "rust" {
        // The module-level variable, a global and a cache all start afresh.
        assert_eq!(
            serde_json::from_value::<serde_json::Value>(serde_json::Value::Object(profile.extra))
                .expect("extra"),
            json!({"global": 1, "cached": 1}),
            "{label}"
        );
    }
    profile.user_id
}

#[tokio::test(flavor = "multi_thread")]
async fn a_global_set_by_one_login_is_absent_in_the_next_in_every_language() {
    let counters = tokio::task::block_in_place(|| COUNTERS.as_slice());
    for (label, mapper, settings) in counters {
        // One after another: the same pool slot, reused.
        for _ in 0..5 {
            assert_eq!(count_once(label, mapper, settings).await, "1", "{label}");
        }
        // Several at once, then again: other slots, each reused.
        for _ in 0..2 {
            let mut calls = tokio::task::JoinSet::new();
            for _ in 0..6 {
                let (mapper, settings) = (mapper.clone(), settings.clone());
                calls.spawn(async move { count_once(label, &mapper, &settings).await });
            }
            for user_id in calls.join_all().await {
                assert_eq!(user_id, "1", "{label}");
            }
        }
    }
}

/// Minor page faults the calling thread has taken so far: field 10 of
/// `/proc/thread-self/stat` (proc(5)), after the parenthesised command name.
fn thread_minor_faults() -> u64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").expect("the thread's stat");
    let (_, fields) = stat.rsplit_once(')').expect("a stat line");
    // Fields from the state (3rd) on; minflt is the 10th.
    fields
        .split_whitespace()
        .nth(7)
        .expect("minflt")
        .parse()
        .expect("a count")
}

/// Page faults a Python call may take on the thread that runs it once its
/// pool slot is warm. An unpatched wasmtime 48 decommitted every dirty page
/// past the 32nd run of pages at each slot reset, so each call re-faulted
/// ~200 pages of the interpreter's heap; the slot's reset now rewrites them
/// in place (vendor/wasmtime/WAYPASS-PATCH.md) and a call takes a handful.
const WARM_PYTHON_CALL_MAX_FAULTS: u64 = 40;

// On the test's own thread (current-thread runtime), so that the faults
// counted are the call's and its slot reset's, and no other test's.
#[tokio::test(flavor = "current_thread")]
async fn a_python_login_reuses_its_slots_resident_pages_yet_starts_from_fresh_state() {
    let (label, mapper, settings) = COUNTERS
        .iter()
        .find(|(label, ..)| *label == "python")
        .expect("the python counter");
    // Other tests share the pool and may take this slot between two calls:
    // the fewest faults over several calls is this call's own steady state.
    let mut fewest = u64::MAX;
    for _ in 0..12 {
        let before = thread_minor_faults();
        // Fresh state: the counter's globals start afresh every time.
        assert_eq!(count_once(label, mapper, settings).await, "1");
        fewest = fewest.min(thread_minor_faults() - before);
    }
    eprintln!("fewest page faults of a warm Python call: {fewest}");
    assert!(
        fewest <= WARM_PYTHON_CALL_MAX_FAULTS,
        "a warm Python call took at least {fewest} page faults"
    );
}

/// A profile's (user id, email), or the error.
type Expected = Result<(&'static str, Option<&'static str>), MapperError>;

#[tokio::test(flavor = "multi_thread")]
async fn every_port_maps_the_providers_answer_exactly_as_the_rust_one_does() {
    let cases: Vec<(u16, &str, Expected)> = vec![
        (
            200,
            r#"{"account":{"uuid":"u-42","email":"ada@example.com"}}"#,
            Ok(("u-42", Some("ada@example.com"))),
        ),
        (200, r#"{"account":{"uuid":"u-7"}}"#, Ok(("u-7", None))),
        // Two-, three- and four-byte UTF-8 through each port's lowering of
        // the profile's strings (JavaScript's is patched at build time).
        (
            200,
            r#"{"account":{"uuid":"ü-中-😀","email":"zoë@exämple.com"}}"#,
            Ok(("ü-中-😀", Some("zoë@exämple.com"))),
        ),
        (
            401,
            "token revoked",
            Err(MapperError::Provider {
                message: "token revoked".into(),
            }),
        ),
        (
            200,
            "<html>oops</html>",
            Err(MapperError::Provider {
                message: "<html>oops</html>".into(),
            }),
        ),
    ];
    for (status, body, expected) in cases {
        let stub = Stub::start(move |_| Reply::Body(status, body.into())).await;
        for (label, mapper) in ports() {
            let report = run(mapper, &stub, open_to(&stub)).await;
            match (&report.result, &expected) {
                (Ok(p), Ok((id, email))) => {
                    assert_eq!(
                        (p.user_id.as_str(), p.email.as_deref()),
                        (*id, *email),
                        "{label}"
                    );
                }
                (Err(e), Err(want)) => assert_eq!(e, want, "{label}"),
                (got, want) => panic!(
                    "{label}: got {got:?}, want {want:?} (logs {:?})",
                    report.logs
                ),
            }
        }
        let received = stub.received();
        assert_eq!(received.len(), ports().len());
        assert!(
            received
                .iter()
                .all(|r| r.header("authorization") == Some("Bearer at-123"))
        );
    }
    let stub = Stub::start(|_| Reply::Body(200, r#"{"account":{"email":"x@y"}}"#.into())).await;
    for (label, mapper) in ports() {
        let report = run(mapper, &stub, open_to(&stub)).await;
        assert!(
            matches!(report.result, Err(MapperError::InvalidProfile { .. })),
            "{label}: {:?}",
            report.result
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_port_is_denied_a_host_off_the_allow_list_by_the_same_policy() {
    let stub = Stub::start(|_| Reply::Body(200, "{}".into())).await;
    let elsewhere: HostRule = "api.example.com".parse().expect("rule");
    for (label, mapper) in ports() {
        let policy = EgressPolicy {
            allow_private_networks: true,
            ..EgressPolicy::allowing([elsewhere.clone()])
        };
        let report = run(mapper, &stub, policy).await;
        assert!(
            matches!(
                report.requests.first().and_then(|r| r.error.as_ref()),
                Some(HttpError::Denied(_))
            ),
            "{label}: {:?}",
            report.requests
        );
        // The SDK ports pass the host's refusal on; `fetch()` reports a
        // network error, as in a browser.
        let expected = match *label {
            "javascript-fetch" => "NetworkError when attempting to fetch resource".to_owned(),
            _ => "http denied: host `127.0.0.1` is not on this connection's allow-list".to_owned(),
        };
        assert_eq!(
            report.result,
            Err(MapperError::Other { message: expected }),
            "{label}"
        );
    }
    assert!(stub.received().is_empty(), "no port reached the provider");
}

/// Activates version `version` of mapper `swap-me` through the API.
async fn activate_swap_me(tb: &TestBed, version: usize) {
    let (status, body) = admin_api(
        &tb.issuer,
        reqwest::Method::POST,
        &format!("mappers/swap-me/versions/{version}/activate"),
        None,
    )
    .await;
    assert_eq!(status, 200, "activating version {version}: {body}");
}

/// The port of the seed in `plugins/mappers/<name>`, built from a copy in
/// which `from` (in `file`) reads `to`: a port whose user ids carry its
/// language, so that a login shows which language served it.
fn marked_port(name: &str, file: &str, from: &str, to: &str) -> Vec<u8> {
    let source = plugins::dir(name);
    let dir = std::path::Path::new(guests::TARGET_DIR)
        .join("marked-ports")
        .join(name);
    std::fs::create_dir_all(&dir).expect("marked port directory");
    let text = std::fs::read_to_string(source.join(file)).expect("the port's source");
    assert!(
        text.contains(from),
        "{name}/{file} no longer contains {from:?}"
    );
    let marked = text.replace(from, to);
    // Rewritten only when it changed: the build is cached by content.
    if std::fs::read_to_string(dir.join(file)).ok().as_deref() != Some(marked.as_str()) {
        std::fs::write(dir.join(file), marked).expect("write the marked port");
    }
    std::fs::read(plugins::build_dir(&dir)).expect("the marked port's component")
}

#[tokio::test(flavor = "multi_thread")]
async fn one_connection_swaps_from_rust_to_javascript_to_python_under_traffic_without_a_failed_login()
 {
    /// Logins that must complete between the first activation under
    /// traffic and the last one.
    const LOGINS_DURING_SWAPS: usize = 10;
    let (js, py) = tokio::task::block_in_place(|| {
        (
            marked_port(
                "auth0-example-js",
                "mapper.js",
                "return profile({ userId, ",
                "return profile({ userId: `${userId}-js`, ",
            ),
            marked_port(
                "auth0-example-py",
                "app.py",
                "return profile(user_id, ",
                "return profile(user_id + \"-py\", ",
            ),
        )
    });
    let tb = Arc::new(
        TestBed::start(|connections, _| {
            connections[0]["options"]["mapper"] = json!("swap-me");
        })
        .await,
    );
    for bytes in [js, py] {
        let (status, body) = put_mapper(&tb.issuer, "swap-me", bytes).await;
        assert_eq!(status, 201, "{body}");
    }
    // Version 1 is the Rust port, 2 JavaScript, 3 Python: the user each
    // version makes of the development provider's user.
    let uuid = waypass::dev_provider::default_user().uuid;
    let served_by: [String; 3] = [
        format!("oauth2|{CONNECTION}|{uuid}"),
        format!("oauth2|{CONNECTION}|{uuid}-js"),
        format!("oauth2|{CONNECTION}|{uuid}-py"),
    ];
    // Each language's version serves a whole login on its own first.
    for version in [2, 3, 1] {
        activate_swap_me(&tb, version).await;
        let url = tb.authorize_url(
            APP,
            APP_CALLBACK,
            &[("scope", "openid"), ("connection", CONNECTION)],
        );
        let landing = Browser::default().login(&tb, &url, false).await;
        let back = landing.location.clone().expect("back to the app");
        assert_eq!(
            sub_after_login(&tb.issuer, back.as_str()).await,
            Ok(served_by[version - 1].clone()),
            "version {version}"
        );
    }
    let stop = Arc::new(AtomicBool::new(false));
    // Logins completed so far by all workers, by the version that served them.
    let completed: Arc<[AtomicUsize; 3]> = Arc::new(Default::default());
    let workers: Vec<_> = (0..3)
        .map(|_| {
            let (tb, stop, completed) = (tb.clone(), stop.clone(), completed.clone());
            let served_by = served_by.clone();
            tokio::spawn(async move {
                let mut failed = Vec::new();
                while !stop.load(Ordering::SeqCst) {
                    let url = tb.authorize_url(
                        APP,
                        APP_CALLBACK,
                        &[("scope", "openid"), ("connection", CONNECTION)],
                    );
                    let landing = Browser::default().login(&tb, &url, false).await;
                    let Some(back) = landing
                        .location
                        .as_ref()
                        .filter(|_| landing.param("code").is_some())
                    else {
                        failed.push(format!("{landing:?}"));
                        continue;
                    };
                    match sub_after_login(&tb.issuer, back.as_str()).await {
                        Ok(sub) => match served_by.iter().position(|s| *s == sub) {
                            Some(version) => {
                                completed[version].fetch_add(1, Ordering::SeqCst);
                            }
                            None => failed.push(format!("served by no version: {sub}")),
                        },
                        Err(e) => failed.push(e),
                    }
                }
                failed
            })
        })
        .collect();
    let counts = || -> [usize; 3] { std::array::from_fn(|v| completed[v].load(Ordering::SeqCst)) };
    // Rust (1) → JavaScript (2) → Python (3): thirty rounds at least, and on
    // until enough logins completed between the first activation and the
    // latest one — some served by each language — so that the traffic
    // overlapped the swaps.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let mut at_first_activation = None;
    let mut round = 0;
    let during_swaps = loop {
        activate_swap_me(&tb, round % 3 + 1).await;
        round += 1;
        let now = counts();
        let first = *at_first_activation.get_or_insert(now);
        let during: [usize; 3] = std::array::from_fn(|v| now[v] - first[v]);
        let enough = round >= 30
            && during.iter().sum::<usize>() >= LOGINS_DURING_SWAPS
            && during.iter().all(|n| *n > 0);
        // A worker that ended early panicked: awaiting it below says why.
        let worker_died = workers.iter().any(|w| w.is_finished());
        if enough || worker_died || std::time::Instant::now() > deadline {
            break during;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        let failed = w.await.expect("worker");
        assert!(failed.is_empty(), "failed logins: {failed:?}");
    }
    assert!(
        during_swaps.iter().sum::<usize>() >= LOGINS_DURING_SWAPS
            && during_swaps.iter().all(|n| *n > 0),
        "logins completed between the first and the last activation, by Rust, JavaScript and Python: {during_swaps:?}"
    );
}

/// Runs a guest SDK's own unit tests with its language's test runner.
fn run_sdk_tests(dir: &str, program: &str, args: &[&str]) {
    run_tests_in(&format!("plugins/sdk/{dir}"), program, args);
}

/// Runs `program args` in the repository's directory `dir`, which must pass.
fn run_tests_in(dir: &str, program: &str, args: &[&str]) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(dir);
    let out = std::process::Command::new(program)
        .args(args)
        .current_dir(&dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} in {}: {e}", dir.display()));
    assert!(
        out.status.success(),
        "{program} {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_python_sdks_own_unit_tests_pass() {
    run_sdk_tests(
        "python",
        "python3",
        &["-m", "unittest", "discover", "-s", "tests"],
    );
}

#[test]
fn the_patch_of_componentize_js_bindings_keeps_what_they_lower() {
    run_tests_in(
        "host/src/build",
        "node",
        &["--test", "componentize.test.mjs"],
    );
}

#[test]
fn the_javascript_sdks_own_unit_tests_pass() {
    run_sdk_tests(
        "js",
        "node",
        &["--test", "test/sdk.test.mjs", "test/action.test.mjs"],
    );
}
