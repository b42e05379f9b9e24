//! The mapper runtime, end to end: real components (built by `build.rs`)
//! against stub providers on 127.0.0.1.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use waypass::egress::{CannedTransport, EgressPolicy, HostRule, HttpError, OutboundResponse};
use waypass::mapper::limits::{
    MAX_CALLS_PER_CONNECTION, MAX_CONCURRENT_COMPILES, MAX_FIELDS_BYTES, MAX_LOG_LINES,
    MAX_RESOURCES_PER_CALL,
};
use waypass::mapper::{
    InvocationReport, Limits, LoadError, LoadedMapper, LogSource, MapperError, MapperInput,
    Runtime, RuntimeConfig, Sandbox, Settings, TokenSet,
};
use waypass_tests::gate::Gate;
use waypass_tests::guests;
use waypass_tests::stub::{RawStub, Reply, Stub};

/// One runtime for the whole binary, as in the broker: the pool is sized
/// for a process, not for a test.
static RUNTIME: LazyLock<Runtime> =
    LazyLock::new(|| Runtime::new(RuntimeConfig::default()).expect("runtime starts"));

fn load(path: &str) -> LoadedMapper {
    RUNTIME.load(&guests::bytes(path)).expect("guest loads")
}

static HOSTILE: LazyLock<LoadedMapper> = LazyLock::new(|| load(guests::HOSTILE));
static AUTH0: LazyLock<LoadedMapper> = LazyLock::new(|| load(guests::AUTH0_EXAMPLE));

fn input(settings: &[(&str, &str)]) -> MapperInput {
    MapperInput {
        connection: "test-conn".into(),
        tokens: TokenSet::bearer("at-123"),
        settings: settings.iter().map(|(k, v)| (*k, *v)).collect::<Settings>(),
    }
}

fn sandbox(policy: EgressPolicy) -> Sandbox {
    Sandbox {
        egress: Arc::new(policy),
        limits: Limits::default(),
    }
}

/// Loopback stubs need plain HTTP and private addresses allowed.
fn stub_policy(stub: &Stub) -> EgressPolicy {
    EgressPolicy {
        allow_private_networks: true,
        ..EgressPolicy::allowing([stub.rule()])
    }
}

async fn run(mapper: &LoadedMapper, input: &MapperInput, sandbox: &Sandbox) -> InvocationReport {
    RUNTIME.invoke(mapper, input, sandbox).await
}

async fn hostile(mode: &str, extra: &[(&str, &str)], sandbox: &Sandbox) -> InvocationReport {
    let mut settings = vec![("mode", mode)];
    settings.extend_from_slice(extra);
    run(&HOSTILE, &input(&settings), sandbox).await
}

/// Runs `mapper` with only `stub` reachable.
async fn run_on(stub: &Stub, mapper: &LoadedMapper, settings: &[(&str, &str)]) -> InvocationReport {
    run(mapper, &input(settings), &sandbox(stub_policy(stub))).await
}

async fn hostile_on(stub: &Stub, mode: &str, extra: &[(&str, &str)]) -> InvocationReport {
    hostile(mode, extra, &sandbox(stub_policy(stub))).await
}

fn other_message(report: &InvocationReport) -> String {
    match &report.result {
        Err(MapperError::Other { message }) => message.clone(),
        other => panic!("expected the guest's own error, got {other:?}"),
    }
}

/// After a hostile call the same runtime serves a normal call.
async fn assert_still_serving() {
    let report = hostile("echo", &[], &Sandbox::default()).await;
    let profile = report.result.expect("echo mapper still answers");
    assert_eq!(profile.user_id, "echo");
}

// ---- the mappers ----

#[tokio::test]
async fn the_auth0_example_maps_account_uuid_and_email_and_sends_the_bearer_token() {
    let stub = Stub::start(|_| {
        Reply::Body(
            200,
            r#"{"account":{"uuid":"u-42","email":"ada@example.com"}}"#.into(),
        )
    })
    .await;
    let userinfo = stub.url("/userinfo");
    let report = run_on(&stub, &AUTH0, &[("userinfo_url", &userinfo)]).await;
    let profile = report.result.expect("profile");
    assert_eq!(profile.user_id, "u-42");
    assert_eq!(profile.email.as_deref(), Some("ada@example.com"));
    let received = stub.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].path_and_query, "/userinfo");
    assert_eq!(received[0].header("authorization"), Some("Bearer at-123"));
}

#[tokio::test]
async fn the_auth0_example_turns_a_non_200_answer_into_a_provider_error_carrying_the_body() {
    let stub = Stub::start(|_| Reply::Body(401, "token revoked".into())).await;
    let userinfo = stub.url("/userinfo");
    let report = run_on(&stub, &AUTH0, &[("userinfo_url", &userinfo)]).await;
    assert_eq!(
        report.result,
        Err(MapperError::Provider {
            message: "token revoked".into()
        })
    );
}

#[tokio::test]
async fn the_auth0_example_turns_a_body_that_is_not_json_into_a_provider_error() {
    let stub = Stub::start(|_| Reply::Body(200, "<html>oops</html>".into())).await;
    let userinfo = stub.url("/userinfo");
    let report = run_on(&stub, &AUTH0, &[("userinfo_url", &userinfo)]).await;
    assert_eq!(
        report.result,
        Err(MapperError::Provider {
            message: "<html>oops</html>".into()
        })
    );
}

#[tokio::test]
async fn the_auth0_example_without_account_uuid_is_an_invalid_profile() {
    let stub = Stub::start(|_| Reply::Body(200, r#"{"account":{"email":"a@b.c"}}"#.into())).await;
    let userinfo = stub.url("/userinfo");
    let report = run_on(&stub, &AUTH0, &[("userinfo_url", &userinfo)]).await;
    assert!(
        matches!(report.result, Err(MapperError::InvalidProfile { .. })),
        "{:?}",
        report.result
    );
}

#[tokio::test]
async fn the_declarative_mapper_reads_the_fields_its_settings_point_at() {
    let stub = Stub::start(|_| {
        Reply::Body(
            200,
            r#"{"data":{"id":12345,"mail":"grace@example.com","verified":"true","display":"Grace","team":"navy"}}"#.into(),
        )
    })
    .await;
    let declarative = load(guests::DECLARATIVE);
    let userinfo = stub.url("/me");
    let settings = [
        ("userinfo_url", userinfo.as_str()),
        ("user_id", "/data/id"),
        ("email", "/data/mail"),
        ("email_verified", "/data/verified"),
        ("name", "/data/display"),
        ("extra", "team=/data/team"),
    ];
    let report = run_on(&stub, &declarative, &settings).await;
    let profile = report.result.expect("profile");
    assert_eq!(profile.user_id, "12345");
    assert_eq!(profile.email.as_deref(), Some("grace@example.com"));
    assert_eq!(profile.email_verified, Some(true));
    assert_eq!(profile.name.as_deref(), Some("Grace"));
    assert_eq!(profile.extra.get("team"), Some(&serde_json::json!("navy")));
}

#[tokio::test]
async fn the_declarative_mapper_defaults_to_openid_connect_userinfo_claims() {
    let stub = Stub::start(|_| {
        Reply::Body(
            200,
            r#"{"sub":"abc","email":"x@example.com","email_verified":false,"given_name":"X"}"#
                .into(),
        )
    })
    .await;
    let declarative = load(guests::DECLARATIVE);
    let userinfo = stub.url("/userinfo");
    let report = run_on(&stub, &declarative, &[("userinfo_url", &userinfo)]).await;
    let profile = report.result.expect("profile");
    assert_eq!(profile.user_id, "abc");
    assert_eq!(profile.email_verified, Some(false));
    assert_eq!(profile.given_name.as_deref(), Some("X"));
}

#[tokio::test]
async fn the_github_mapper_makes_two_calls_and_picks_the_primary_verified_email() {
    let stub = Stub::start(|req| match req.path_and_query.as_str() {
        "/user" => Reply::Body(
            200,
            r#"{"id":583231,"login":"octocat","name":"The Octocat","avatar_url":"https://a/o.png","email":null,"html_url":"https://github.com/octocat"}"#.into(),
        ),
        "/user/emails" => Reply::Body(
            200,
            r#"[{"email":"old@example.com","primary":false,"verified":true},{"email":"octo@example.com","primary":true,"verified":true}]"#.into(),
        ),
        _ => Reply::Body(404, "{}".into()),
    })
    .await;
    let github = load(guests::GITHUB);
    let api = stub.url("");
    let report = run_on(&stub, &github, &[("api_base", &api)]).await;
    let profile = report.result.expect("profile");
    assert_eq!(profile.user_id, "583231");
    assert_eq!(profile.nickname.as_deref(), Some("octocat"));
    assert_eq!(profile.email.as_deref(), Some("octo@example.com"));
    assert_eq!(profile.email_verified, Some(true));
    assert_eq!(stub.received().len(), 2);
    assert!(
        stub.received()
            .iter()
            .all(|r| r.header("user-agent").is_some())
    );
}

#[tokio::test]
async fn the_github_mapper_falls_back_when_the_token_cannot_read_emails() {
    let stub = Stub::start(|req| match req.path_and_query.as_str() {
        "/user" => Reply::Body(
            200,
            r#"{"id":7,"login":"l","email":"public@example.com"}"#.into(),
        ),
        _ => Reply::Body(403, r#"{"message":"Resource not accessible"}"#.into()),
    })
    .await;
    let github = load(guests::GITHUB);
    let api = stub.url("/");
    let report = run_on(&stub, &github, &[("api_base", &api)]).await;
    let profile = report.result.expect("profile");
    assert_eq!(profile.email.as_deref(), Some("public@example.com"));
    assert_eq!(profile.email_verified, Some(false));
}

// ---- isolation and context ----

#[tokio::test]
async fn nothing_a_mapper_keeps_survives_to_the_next_call() {
    for _ in 0..3 {
        let report = hostile("counter", &[], &Sandbox::default()).await;
        assert_eq!(report.result.expect("counter answers").user_id, "1");
    }
}

#[tokio::test]
async fn the_mapper_sees_the_connection_tokens_and_settings() {
    let mut input = input(&[("mode", "echo"), ("api_key", "k-1")]);
    input.tokens = TokenSet::from_json(
        r#"{"access_token":"at-9","token_type":"Bearer","id_token":"h.p.s","expires_in":60,"scope":"openid","x_custom":1}"#,
    )
    .expect("token response");
    let report = run(&HOSTILE, &input, &Sandbox::default()).await;
    let extra = report.result.expect("echo").extra;
    assert_eq!(extra["access_token"], "at-9");
    assert_eq!(extra["connection"], "test-conn");
    assert_eq!(extra["settings"]["api_key"], "k-1");
    assert_eq!(extra["id_token"], "h.p.s");
    assert_eq!(extra["expires_in"], 60);
    let raw: serde_json::Value =
        serde_json::from_str(extra["raw"].as_str().expect("raw is text")).expect("raw is JSON");
    assert_eq!(raw["x_custom"], 1);
}

// ---- limits ----

#[tokio::test]
async fn an_infinite_loop_ends_at_the_deadline() {
    let sandbox = Sandbox {
        limits: Limits {
            deadline: Duration::from_millis(200),
            ..Limits::default()
        },
        ..Sandbox::default()
    };
    let report = hostile("loop", &[], &sandbox).await;
    assert_eq!(report.result, Err(MapperError::Timeout { limit_ms: 200 }));
    assert_still_serving().await;
}

/// The epoch ticker parks on an idle runtime; a guest that never yields
/// is interrupted only by epochs, so the call must wake it. A call that
/// did not would run forever: it runs on a thread of its own here, and
/// the test fails 30 s after the call starts instead of hanging.
#[test]
fn an_infinite_loop_started_on_an_idle_runtime_still_ends_at_the_deadline() {
    let (idle, runtime_idle) = std::sync::mpsc::channel();
    let (done, result) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // Its own runtime: the shared one's ticker is kept awake by the
        // other tests' calls.
        let runtime = Runtime::new(RuntimeConfig::default()).expect("runtime starts");
        let mapper = runtime
            .load(&guests::bytes(guests::HOSTILE))
            .expect("guest loads");
        let idle_since = std::time::Instant::now();
        while runtime.epoch_ticking() {
            if idle_since.elapsed() > Duration::from_secs(10) {
                return; // `idle` dropped: the test says why
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = idle.send(());
        let sandbox = Sandbox {
            limits: Limits {
                deadline: Duration::from_millis(200),
                ..Limits::default()
            },
            ..Sandbox::default()
        };
        let executor = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("executor");
        let report =
            executor.block_on(runtime.invoke(&mapper, &input(&[("mode", "loop")]), &sandbox));
        let _ = done.send(report.result);
    });
    // Compiling the guest takes a while in a debug build; then the ticker
    // parks within its linger.
    runtime_idle
        .recv_timeout(Duration::from_secs(300))
        .expect("the runtime loaded the guest and its ticker parked within 10 s");
    let result = result
        .recv_timeout(Duration::from_secs(30))
        .expect("the looping call ended: the parked ticker was woken");
    assert_eq!(result, Err(MapperError::Timeout { limit_ms: 200 }));
}

#[tokio::test]
async fn a_memory_bomb_stops_at_the_memory_limit() {
    let sandbox = Sandbox {
        limits: Limits {
            memory_bytes: 32 << 20,
            ..Limits::default()
        },
        ..Sandbox::default()
    };
    let report = hostile("memory-bomb", &[], &sandbox).await;
    assert_eq!(
        report.result,
        Err(MapperError::MemoryLimit {
            limit_bytes: 32 << 20
        })
    );
    assert_still_serving().await;
}

#[tokio::test]
async fn a_huge_profile_is_refused_as_too_large() {
    let report = hostile("huge-output", &[], &Sandbox::default()).await;
    match report.result {
        Err(MapperError::OutputTooLarge {
            size_bytes,
            limit_bytes,
        }) => {
            assert!(size_bytes >= 10 << 20);
            assert_eq!(limit_bytes, Limits::default().max_profile_bytes);
        }
        other => panic!("expected output-too-large, got {other:?}"),
    }
    assert_still_serving().await;
}

#[tokio::test]
async fn a_trap_becomes_a_typed_error_and_the_panic_message_reaches_the_log() {
    let report = hostile("trap", &[], &Sandbox::default()).await;
    assert_eq!(
        report.result,
        Err(MapperError::Trap {
            message: "wasm trap: wasm `unreachable` instruction executed".into()
        })
    );
    assert!(
        report.logs.iter().any(|l| l.source == LogSource::Stderr
            && l.message.contains("hostile guest panicked on purpose")),
        "{:?}",
        report.logs
    );
    assert_still_serving().await;
}

#[tokio::test]
async fn a_stack_overflow_reaches_the_caller_as_one_line_without_the_wasm_backtrace() {
    let report = hostile("stack-overflow", &[], &Sandbox::default()).await;
    assert_eq!(
        report.result,
        Err(MapperError::Trap {
            message: "wasm trap: call stack exhausted".into()
        })
    );
    let shown = report.result.expect_err("trapped").to_string();
    assert_eq!(shown, "mapper trapped: wasm trap: call stack exhausted");
    assert_still_serving().await;
}

#[tokio::test]
async fn http_fields_a_guest_piles_up_count_against_its_memory_limit_and_in_its_peak() {
    let limit = 8 << 20;
    let sandbox = Sandbox {
        limits: Limits {
            memory_bytes: limit,
            ..Limits::default()
        },
        ..Sandbox::default()
    };
    let report = hostile("fields-bomb", &[("count", "3000")], &sandbox).await;
    assert_eq!(
        report.result,
        Err(MapperError::MemoryLimit { limit_bytes: limit })
    );
    // The guest's own memory is about 1 MiB: the rest of the peak is what
    // the host held for it.
    assert!(
        report.peak_memory_bytes > limit,
        "peak {} bytes",
        report.peak_memory_bytes
    );
    assert_still_serving().await;
}

#[tokio::test]
async fn headers_over_the_fields_size_cap_end_the_call_with_the_cap_named() {
    // 1000 small headers: about 78 KiB as wasmtime counts them.
    let report = hostile(
        "fields-bomb",
        &[("headers", "1000"), ("count", "0")],
        &Sandbox::default(),
    )
    .await;
    assert_eq!(
        report.result,
        Err(MapperError::Trap {
            message: format!(
                "HTTP headers over the host's limit of {MAX_FIELDS_BYTES} bytes for one set of fields"
            )
        })
    );
}

#[tokio::test]
async fn a_guest_holding_more_host_resources_than_its_table_allows_fails_typed() {
    let report = hostile("fields-bomb", &[("count", "3000")], &Sandbox::default()).await;
    assert_eq!(
        report.result,
        Err(MapperError::TooManyResources {
            limit: MAX_RESOURCES_PER_CALL
        })
    );
    assert_still_serving().await;
}

#[tokio::test]
async fn response_bodies_a_guest_keeps_unread_count_against_its_memory_limit() {
    let stub = Stub::start(|_| Reply::Full(200, vec![], vec![b'x'; 1 << 20])).await;
    let url = stub.url("/big");
    let limit = 8 << 20;
    let sandbox = Sandbox {
        egress: Arc::new(EgressPolicy {
            max_response_bytes: 2 << 20,
            max_requests: 20,
            ..stub_policy(&stub)
        }),
        limits: Limits {
            memory_bytes: limit,
            ..Limits::default()
        },
    };
    let report = hostile("hold-bodies", &[("url", &url), ("count", "20")], &sandbox).await;
    assert_eq!(
        report.result,
        Err(MapperError::MemoryLimit { limit_bytes: limit })
    );
    let sent = stub.received().len();
    assert!(
        sent < 8,
        "at most 8 MiB of bodies fit in 8 MiB with the guest's own memory; {sent} were fetched"
    );
    assert_still_serving().await;
}

#[tokio::test]
async fn a_log_flood_is_bounded_and_the_call_still_succeeds() {
    let report = hostile("log-flood", &[], &Sandbox::default()).await;
    assert_eq!(report.result.expect("flood returns").user_id, "flooded");
    assert_eq!(report.logs.len(), MAX_LOG_LINES);
    assert!(report.dropped_log_lines > 0);
}

// ---- what the locked-down WASI refuses ----

#[tokio::test]
async fn raw_sockets_and_name_lookups_are_refused_before_anything_connects() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let addr = listener.local_addr().expect("addr").to_string();
    let report = hostile("sockets", &[("addr", &addr)], &Sandbox::default()).await;
    let extra = report.result.expect("the guest reports what it saw").extra;
    assert_eq!(
        serde_json::Value::Object(extra),
        serde_json::json!({
            "tcp": "create-tcp-socket: access-denied",
            "udp": "access-denied",
            "lookup": "permanent-resolver-failure",
        })
    );
    assert_eq!(
        listener.accept().map(|_| ()).map_err(|e| e.kind()),
        Err(std::io::ErrorKind::WouldBlock),
        "nothing connected to 127.0.0.1"
    );
}

#[tokio::test]
async fn a_mapper_sees_no_environment_no_arguments_and_no_working_directory() {
    let report = hostile("environment", &[], &Sandbox::default()).await;
    let extra = report.result.expect("the guest reports what it saw").extra;
    assert_eq!(
        serde_json::Value::Object(extra),
        serde_json::json!({"variables": [], "arguments": [], "cwd": null}),
        "the host's own environment has PATH at least; none of it reaches the guest"
    );
}

#[tokio::test]
async fn a_mapper_has_no_files_not_even_etc_passwd() {
    let report = hostile("files", &[], &Sandbox::default()).await;
    let extra = report.result.expect("the guest reports what it saw").extra;
    assert_eq!(
        serde_json::Value::Object(extra),
        serde_json::json!({"preopens": [], "passwd": "NotFound"})
    );
}

// ---- the pool ----

#[tokio::test(flavor = "multi_thread")]
async fn a_connection_past_its_share_of_the_pool_is_busy_while_others_are_served() {
    let mut gate = Gate::start().await;
    let url = format!("http://{}/", gate.addr);
    let rule: HostRule = format!("http://{}", gate.addr).parse().expect("rule");
    let policy = Arc::new(EgressPolicy {
        allow_private_networks: true,
        ..EgressPolicy::allowing([rule])
    });
    let held: Vec<_> = (0..MAX_CALLS_PER_CONNECTION)
        .map(|_| {
            let (url, policy) = (url.clone(), policy.clone());
            tokio::spawn(async move {
                let mut input = input(&[("mode", "fetch"), ("url", &url)]);
                input.connection = "greedy".into();
                let sandbox = Sandbox {
                    egress: policy,
                    limits: Limits::default(),
                };
                RUNTIME.invoke(&HOSTILE, &input, &sandbox).await
            })
        })
        .collect();
    // Every call of its share is in, waiting on the provider. (The bound
    // only turns a broken runtime into a failure instead of a hang.)
    tokio::time::timeout(
        Duration::from_secs(120),
        gate.wait_for(MAX_CALLS_PER_CONNECTION),
    )
    .await
    .expect("every call of the share reaches the provider");

    let mut one_more = input(&[("mode", "echo")]);
    one_more.connection = "greedy".into();
    let report = run(&HOSTILE, &one_more, &Sandbox::default()).await;
    assert_eq!(
        report.result,
        Err(MapperError::Busy {
            message: format!(
                "connection `greedy` already runs {MAX_CALLS_PER_CONNECTION} mapper calls, its share of the pool"
            )
        })
    );
    // Another connection is served meanwhile.
    assert_still_serving().await;

    drop(gate);
    for call in held {
        let report = call.await.expect("call task");
        assert!(
            other_message(&report).starts_with("transport: "),
            "{:?}",
            report.result
        );
    }
}

// ---- egress ----

#[tokio::test]
async fn a_request_to_a_host_off_the_allow_list_is_denied_without_connecting() {
    let stub = Stub::start(|_| Reply::Body(200, "{}".into())).await;
    let other: HostRule = "api.example.com".parse().expect("rule");
    let policy = EgressPolicy {
        allow_private_networks: true,
        ..EgressPolicy::allowing([other])
    };
    let url = stub.url("/");
    let report = hostile("fetch", &[("url", &url)], &sandbox(policy)).await;
    let message = other_message(&report);
    assert!(
        message.starts_with("denied: ") && message.contains("allow-list"),
        "{message}"
    );
    assert!(stub.received().is_empty());
    assert!(matches!(
        report.requests[0].error,
        Some(HttpError::Denied(_))
    ));
    assert_still_serving().await;
}

#[tokio::test]
async fn loopback_is_refused_unless_the_connection_allows_private_networks() {
    let stub = Stub::start(|_| Reply::Body(200, "{}".into())).await;
    let url = stub.url("/");
    let closed = EgressPolicy::allowing([stub.rule()]);
    let report = hostile("fetch", &[("url", &url)], &sandbox(closed)).await;
    let message = other_message(&report);
    assert!(message.contains("private address"), "{message}");
    assert!(stub.received().is_empty());

    let report = hostile_on(&stub, "fetch", &[("url", &url)]).await;
    assert_eq!(report.result.expect("allowed").user_id, "fetched");
    assert_eq!(stub.received().len(), 1);
}

#[tokio::test]
async fn a_name_that_resolves_to_a_private_address_is_refused() {
    let stub = Stub::start(|_| Reply::Body(200, "{}".into())).await;
    let url = format!("http://localhost:{}/", stub.addr.port());
    let rule: HostRule = format!("http://localhost:{}", stub.addr.port())
        .parse()
        .expect("rule");
    let report = hostile(
        "fetch",
        &[("url", &url)],
        &sandbox(EgressPolicy::allowing([rule])),
    )
    .await;
    let message = other_message(&report);
    assert!(message.contains("private address"), "{message}");
    assert!(stub.received().is_empty());
}

/// Requests that reached the tripwire runtime's transport.
static TRIPPED: AtomicUsize = AtomicUsize::new(0);

/// A runtime whose transport answers every request in-process and counts
/// it: a request the policy lets through is seen, and nothing leaves the
/// machine whatever the address.
static TRIPWIRE: LazyLock<(Runtime, LoadedMapper)> = LazyLock::new(|| {
    let transport = CannedTransport::new(|_| {
        TRIPPED.fetch_add(1, Ordering::SeqCst);
        OutboundResponse {
            status: 200,
            headers: Vec::new(),
            body: bytes::Bytes::from_static(b"{\"AccessKeyId\":\"leaked\"}"),
        }
    });
    let runtime = Runtime::new(RuntimeConfig {
        transport: Arc::new(transport),
        ..RuntimeConfig::default()
    })
    .expect("runtime starts");
    let hostile = runtime
        .load(&guests::bytes(guests::HOSTILE))
        .expect("guest loads");
    (runtime, hostile)
});

#[tokio::test]
async fn cloud_metadata_addresses_are_refused_even_when_allowed_by_name_with_private_networks() {
    // Each address is on the allow-list and private networks are allowed,
    // so only the metadata rule stands between the mapper and the address.
    for host in [
        "169.254.169.254",
        "169.254.1.1",
        "169.254.170.2",
        "168.63.129.16",
        "100.100.100.200",
        "192.0.0.192",
        "[fd00:ec2::254]",
        "[fd00:ec2::1]",
        "[::ffff:169.254.169.254]",
        "[::ffff:168.63.129.16]",
        "[64:ff9b::a9fe:a9fe]",
        "[2002:a9fe:a9fe::1]",
    ] {
        let rule: HostRule = format!("http://{host}").parse().expect("rule");
        let policy = EgressPolicy {
            allow_private_networks: true,
            ..EgressPolicy::allowing([rule])
        };
        let url = format!("http://{host}/latest/meta-data/iam/");
        let (runtime, hostile) = &*TRIPWIRE;
        let report = runtime
            .invoke(
                hostile,
                &input(&[("mode", "fetch"), ("url", &url)]),
                &sandbox(policy),
            )
            .await;
        let message = match &report.result {
            Err(MapperError::Other { message }) => message.clone(),
            other => panic!("{host}: expected a refusal, got {other:?}"),
        };
        assert!(
            message.starts_with("denied: ") && message.contains("metadata"),
            "{host}: {message}"
        );
        assert!(
            matches!(report.requests[0].error, Some(HttpError::Denied(_))),
            "{host}"
        );
    }
    assert_eq!(TRIPPED.load(Ordering::SeqCst), 0, "nothing was sent");
}

#[tokio::test]
async fn redirects_are_not_followed_and_one_to_a_forbidden_host_is_denied() {
    let stub = Stub::start(|req| match req.path_and_query.as_str() {
        "/start" => Reply::Full(
            302,
            vec![("location", "http://evil.example.net/steal".into())],
            Vec::new(),
        ),
        _ => Reply::Body(200, "{}".into()),
    })
    .await;
    let url = stub.url("/start");
    let report = hostile_on(
        &stub,
        "fetch",
        &[("url", &url), ("follow_redirects", "true")],
    )
    .await;
    let message = other_message(&report);
    assert!(
        message.starts_with("denied: ") && message.contains("evil.example.net"),
        "{message}"
    );
    assert_eq!(
        report.requests[0].status,
        Some(302),
        "the guest saw the 3xx itself"
    );
    assert_eq!(stub.received().len(), 1);
}

#[tokio::test]
async fn a_response_over_the_size_cap_is_too_large() {
    let stub = Stub::start(|_| Reply::Full(200, vec![], vec![b'x'; 2 << 20])).await;
    let url = stub.url("/big");
    let policy = EgressPolicy {
        max_response_bytes: 1 << 20,
        ..stub_policy(&stub)
    };
    let report = hostile("fetch", &[("url", &url)], &sandbox(policy)).await;
    assert_eq!(other_message(&report), "too-large");
    assert_still_serving().await;
}

#[tokio::test]
async fn a_chunked_response_over_the_size_cap_is_too_large_through_both_interfaces() {
    // No Content-Length: only the streaming cap can stop it.
    let stub = RawStub::start(RawStub::chunked(2 << 20)).await;
    let policy = EgressPolicy {
        max_response_bytes: 1 << 20,
        allow_private_networks: true,
        ..EgressPolicy::allowing([stub.rule()])
    };
    let url = stub.url("/chunked");
    let report = hostile("fetch", &[("url", &url)], &sandbox(policy.clone())).await;
    assert_eq!(other_message(&report), "too-large");
    assert!(matches!(
        report.requests[0].error,
        Some(HttpError::TooLarge)
    ));
    let report = hostile("wasi-http", &[("url", &url)], &sandbox(policy)).await;
    let message = other_message(&report);
    assert!(message.contains("HttpResponseBodySize"), "{message}");
    assert!(matches!(
        report.requests[0].error,
        Some(HttpError::TooLarge)
    ));
    assert_eq!(stub.requests(), 2);
    assert_still_serving().await;
}

#[tokio::test]
async fn a_response_whose_content_length_understates_its_body_is_read_to_the_declared_length() {
    // Ten bytes declared, then 2 MiB more than the cap allows: the client
    // frames by the declared length and never buffers the rest, and the
    // connection carrying the rest is not reused for the next request.
    let stub = RawStub::start(RawStub::understated(b"0123456789", 2 << 20)).await;
    let policy = EgressPolicy {
        max_response_bytes: 1 << 20,
        allow_private_networks: true,
        ..EgressPolicy::allowing([stub.rule()])
    };
    let url = stub.url("/lying");
    let report = hostile("fetch", &[("url", &url), ("count", "2")], &sandbox(policy)).await;
    let profile = report.result.expect("both requests answered");
    assert_eq!(profile.extra["statuses"], serde_json::json!([200, 200]));
    assert_eq!(profile.extra["last_body"], "0123456789");
    assert_eq!(stub.requests(), 2);
}

#[tokio::test]
async fn requests_beyond_the_budget_are_refused() {
    let stub = Stub::start(|_| Reply::Body(200, "{}".into())).await;
    let url = stub.url("/");
    let policy = EgressPolicy {
        max_requests: 3,
        ..stub_policy(&stub)
    };
    let report = hostile("fetch", &[("url", &url), ("count", "5")], &sandbox(policy)).await;
    assert_eq!(other_message(&report), "budget-exhausted");
    assert_eq!(stub.received().len(), 3);
}

#[tokio::test]
async fn a_provider_that_never_answers_times_out() {
    let stub = Stub::start(|_| Reply::Hang).await;
    let url = stub.url("/slow");
    let policy = EgressPolicy {
        request_timeout: Duration::from_millis(200),
        ..stub_policy(&stub)
    };
    let report = hostile("fetch", &[("url", &url)], &sandbox(policy)).await;
    // The guest's own error: the request ended at its 200 ms timeout, long
    // before the call's 10 s deadline.
    assert_eq!(other_message(&report), "timeout");
}

#[tokio::test]
async fn a_provider_that_outlasts_the_mapper_deadline_ends_the_call_at_the_deadline() {
    let stub = Stub::start(|_| Reply::Hang).await;
    let url = stub.url("/slow");
    let sandbox = Sandbox {
        egress: Arc::new(stub_policy(&stub)),
        limits: Limits {
            deadline: Duration::from_millis(300),
            ..Limits::default()
        },
    };
    let report = hostile("fetch", &[("url", &url)], &sandbox).await;
    // The request's timeout is cut to the time left: whatever the guest
    // answers after that comes after the deadline, and the call is a timeout.
    assert_eq!(report.result, Err(MapperError::Timeout { limit_ms: 300 }));
}

#[tokio::test]
async fn wasi_http_requests_meet_the_same_policy() {
    let stub = Stub::start(|_| Reply::Body(200, r#"{"ok":true}"#.into())).await;
    let url = stub.url("/wasi");
    let report = hostile_on(&stub, "wasi-http", &[("url", &url)]).await;
    let profile = report.result.expect("allowed wasi:http request succeeds");
    assert_eq!(profile.extra["statuses"], serde_json::json!([200]));
    assert_eq!(stub.received().len(), 1);

    let closed = EgressPolicy::allowing([stub.rule()]);
    let report = hostile("wasi-http", &[("url", &url)], &sandbox(closed)).await;
    let message = other_message(&report);
    assert!(message.contains("HttpRequestDenied"), "{message}");
    assert!(matches!(
        report.requests[0].error,
        Some(HttpError::Denied(_))
    ));
    assert_eq!(stub.received().len(), 1, "the denied request never arrived");

    let budget = EgressPolicy {
        max_requests: 1,
        ..stub_policy(&stub)
    };
    let report = hostile(
        "wasi-http",
        &[("url", &url), ("count", "2")],
        &sandbox(budget),
    )
    .await;
    assert!(matches!(
        report.requests[1].error,
        Some(HttpError::BudgetExhausted)
    ));
}

// ---- loading ----

#[test]
fn a_component_that_does_not_implement_the_world_is_refused_by_name() {
    let err = RUNTIME
        .load(&guests::bytes(guests::NOT_A_MAPPER))
        .err()
        .expect("refused");
    let LoadError::WorldMismatch(message) = &err else {
        panic!("expected a world mismatch, got {err:?}");
    };
    assert!(message.contains("fetch-user-profile"), "{message}");

    let err = RUNTIME
        .load(&guests::bytes(guests::WRONG_SIGNATURE))
        .err()
        .expect("refused");
    assert!(matches!(err, LoadError::WorldMismatch(_)), "{err:?}");
}

#[test]
fn a_component_importing_anything_else_is_refused_naming_the_import() {
    let err = RUNTIME
        .load(&guests::bytes(guests::FOREIGN_IMPORT))
        .err()
        .expect("refused");
    assert_eq!(
        err,
        LoadError::ForbiddenImports(vec!["evil:net/raw-socket@0.1.0".into()])
    );
    assert!(err.to_string().contains("`evil:net/raw-socket@0.1.0`"));
}

#[test]
fn bytes_that_are_not_a_component_are_refused_with_what_they_are() {
    assert!(matches!(
        RUNTIME.load(b"{\"not\":\"wasm\"}"),
        Err(LoadError::NotAComponent(_))
    ));
    let core_module = b"\0asm\x01\0\0\0";
    let err = RUNTIME.load(core_module).err().expect("refused");
    assert!(err.to_string().contains("core WebAssembly module"), "{err}");
    let mut truncated = guests::bytes(guests::AUTH0_EXAMPLE);
    truncated.truncate(truncated.len() / 2);
    assert!(matches!(
        RUNTIME.load(&truncated),
        Err(LoadError::Compile(_))
    ));
}

/// The files in `dir`.
fn files_in(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .expect("cache dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn components_that_cannot_be_mappers_are_refused_uncompiled_and_leave_no_artifact() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = Runtime::new(RuntimeConfig {
        cache_dir: Some(dir.path().to_path_buf()),
        ..RuntimeConfig::default()
    })
    .expect("runtime");
    // Refused on the parsed binary: nothing was compiled.
    for (guest, expected) in [
        (
            guests::FOREIGN_IMPORT,
            "the component imports `evil:net/raw-socket@0.1.0` which a mapper may not use",
        ),
        (
            guests::NOT_A_MAPPER,
            "the component does not implement waypass:mapper/mapper@0.1.0: it does not export `fetch-user-profile`",
        ),
    ] {
        let err = runtime.load(&guests::bytes(guest)).err().expect("refused");
        assert!(err.to_string().starts_with(expected), "{err}");
    }
    assert_eq!(runtime.peak_concurrent_compiles(), 0, "nothing compiled");
    // Refused after compiling (its export's type is wrong): not cached.
    let err = runtime
        .load(&guests::bytes(guests::WRONG_SIGNATURE))
        .err()
        .expect("refused");
    assert!(matches!(err, LoadError::WorldMismatch(_)), "{err:?}");
    assert_eq!(runtime.peak_concurrent_compiles(), 1);
    assert_eq!(files_in(dir.path()), Vec::<String>::new());
    // A mapper is cached.
    runtime
        .load(&guests::bytes(guests::HOSTILE))
        .expect("loads");
    assert_eq!(files_in(dir.path()).len(), 1);
}

#[test]
fn a_compilation_past_its_timeout_is_refused_and_its_result_discarded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = Runtime::new(RuntimeConfig {
        cache_dir: Some(dir.path().to_path_buf()),
        ..RuntimeConfig::default()
    })
    .expect("runtime")
    .with_compile_timeout(Duration::ZERO);
    let err = runtime
        .load(&guests::bytes(guests::HOSTILE))
        .err()
        .expect("refused");
    assert_eq!(err, LoadError::CompileTimeout { limit_secs: 0 });
    // The compiler ran on; once it is done, nothing of it is left.
    runtime.wait_for_compilations();
    assert_eq!(files_in(dir.path()), Vec::<String>::new());
}

#[test]
fn no_more_than_the_bound_of_components_compile_at_once() {
    let runtime = Runtime::new(RuntimeConfig::default()).expect("runtime");
    let uploads = [
        guests::HOSTILE,
        guests::AUTH0_EXAMPLE,
        guests::DECLARATIVE,
        guests::GITHUB,
        guests::HOSTILE,
    ];
    assert!(uploads.len() > 2 * MAX_CONCURRENT_COMPILES);
    std::thread::scope(|scope| {
        let loads: Vec<_> = uploads
            .iter()
            .map(|guest| {
                let runtime = &runtime;
                scope.spawn(move || runtime.load(&guests::bytes(guest)).map(|_| ()))
            })
            .collect();
        for load in loads {
            assert_eq!(load.join().expect("load thread"), Ok(()));
        }
    });
    assert_eq!(
        runtime.peak_concurrent_compiles(),
        MAX_CONCURRENT_COMPILES,
        "five uploads at once: compiled two at a time"
    );
}

#[tokio::test]
async fn compiled_artifacts_are_reused_across_runtimes_and_a_corrupt_one_is_rebuilt() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bytes = guests::bytes(guests::HOSTILE);
    let config = || RuntimeConfig {
        cache_dir: Some(dir.path().to_path_buf()),
        ..RuntimeConfig::default()
    };
    let first = Runtime::new(config()).expect("runtime");
    assert!(!first.load(&bytes).expect("loads").from_cache());
    drop(first);

    let second = Runtime::new(config()).expect("runtime");
    let mapper = second.load(&bytes).expect("loads");
    assert!(mapper.from_cache());
    let report = second
        .invoke(&mapper, &input(&[("mode", "echo")]), &Sandbox::default())
        .await;
    assert_eq!(report.result.expect("runs from the cache").user_id, "echo");
    drop((mapper, second));

    // Corrupt each artifact the way the cache itself writes: a new file
    // renamed over the old one (rewriting a mapped file in place is a SIGBUS
    // for whoever maps it, which is why the cache never does that).
    for entry in std::fs::read_dir(dir.path()).expect("cache dir") {
        let path = entry.expect("entry").path();
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, b"garbage").expect("write");
        std::fs::rename(&tmp, &path).expect("replace");
    }
    let third = Runtime::new(config()).expect("runtime");
    let mapper = third.load(&bytes).expect("recompiles");
    assert!(!mapper.from_cache());
}

#[tokio::test]
async fn a_connection_cannot_raise_the_request_budget_past_its_bound() {
    let stub = Stub::start(|_| Reply::Body(200, "{}".into())).await;
    let url = stub.url("/");
    let policy = EgressPolicy {
        max_requests: u32::MAX,
        ..stub_policy(&stub)
    };
    let count = (waypass::egress::MAX_REQUESTS + 1).to_string();
    let report = hostile(
        "fetch",
        &[("url", &url), ("count", &count)],
        &sandbox(policy),
    )
    .await;
    assert_eq!(other_message(&report), "budget-exhausted");
    assert_eq!(
        stub.received().len(),
        waypass::egress::MAX_REQUESTS as usize
    );
}

#[tokio::test]
async fn connections_to_a_provider_are_kept_alive_across_requests_and_calls() {
    let stub = Stub::start(|_| Reply::Body(200, "{}".into())).await;
    let url = stub.url("/");
    for _ in 0..2 {
        let report = hostile_on(&stub, "fetch", &[("url", &url), ("count", "3")]).await;
        assert_eq!(report.result.expect("fetched").user_id, "fetched");
    }
    assert_eq!(stub.received().len(), 6);
    assert_eq!(
        stub.connections(),
        1,
        "one kept-alive connection served all six"
    );
}

#[tokio::test]
async fn a_call_holds_a_pool_slot_while_it_runs_and_gives_it_back_however_it_ends() {
    // A runtime of its own: the binary's shared one serves other tests'
    // calls at the same time.
    let runtime = Runtime::new(RuntimeConfig::default()).expect("runtime starts");
    let mapper = runtime
        .load(&guests::bytes(guests::HOSTILE))
        .expect("guest loads");
    assert_eq!(runtime.calls_running(), 0);

    // Running (held on a provider that never answers): one slot in use.
    let arrived = Arc::new(tokio::sync::Notify::new());
    let stub = Stub::start({
        let arrived = arrived.clone();
        move |_| {
            arrived.notify_one();
            Reply::Hang
        }
    })
    .await;
    let url = stub.url("/slow");
    let held = Sandbox {
        egress: Arc::new(stub_policy(&stub)),
        limits: Limits {
            deadline: Duration::from_millis(500),
            ..Limits::default()
        },
    };
    let fetch = input(&[("mode", "fetch"), ("url", &url)]);
    let call = runtime.invoke(&mapper, &fetch, &held);
    tokio::pin!(call);
    tokio::select! {
        report = &mut call => panic!("the call ended before reaching the provider: {:?}", report.result),
        () = arrived.notified() => {}
    }
    assert_eq!(runtime.calls_running(), 1, "the running call holds a slot");
    let report = call.await;
    assert_eq!(report.result, Err(MapperError::Timeout { limit_ms: 500 }));
    assert!(!stub.received().is_empty(), "the call reached the provider");
    assert_eq!(runtime.calls_running(), 0, "a timed-out call gives it back");

    // An answer and a trap give it back too.
    let echo = runtime
        .invoke(&mapper, &input(&[("mode", "echo")]), &Sandbox::default())
        .await;
    assert!(echo.result.is_ok(), "{:?}", echo.result);
    assert_eq!(runtime.calls_running(), 0, "an answered call gives it back");
    let trap = runtime
        .invoke(&mapper, &input(&[("mode", "trap")]), &Sandbox::default())
        .await;
    assert!(trap.result.is_err());
    assert_eq!(runtime.calls_running(), 0, "a trapped call gives it back");
}
