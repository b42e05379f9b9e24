//! Per-login overhead of post-login Actions:
//! `cargo bench -p waypass-tests --bench actions`.
//!
//! What a login pays for its bound Actions: the trigger's run (event
//! built from the user record, each Action in a fresh instance, its answer
//! checked, the changes merged), with no Action bound (the baseline: one
//! branch) and with one Action bound, in Rust (the `action-probe` test
//! guest), JavaScript and Python (`tests/guests/action-claim-js` and
//! `action-claim-py`, built with `waypass action build`'s code and the SDKs),
//! each setting a namespaced claim on both tokens and one `app_metadata`
//! property, and with one Auth0 Action in the script engine (Auth0's "Add
//! user roles to tokens" sample, unchanged: a fresh JavaScript engine
//! instance per login, the event built, the code compiled and run, its
//! answer checked). The metadata write goes to a memory store, so the figure is
//! the Action's own cost; a database write adds its round trip. p50 and
//! p99 over 2000 calls after 100 warm-up calls.

use std::sync::Arc;
use std::time::{Duration, Instant};

use waypass::actions::{
    ActionCode, BoundAction, EventClient, EventRequest, EventTransaction, PostLoginChain,
    PostLoginTrigger, ScriptCode, ScriptKind,
};
use waypass::build::World;
use waypass::mapper::{Profile, Runtime, RuntimeConfig};
use waypass::script::ScriptEngine;
use waypass::store::{
    MemoryStore, Store as _, StoredAction, StoredActionSecret, StoredMapperEgress,
};
use waypass_tests::{guests, plugins};

/// Auth0's "Add user roles to ID and Access tokens" post-login Action
/// (<https://auth0.com/docs/customize/actions/explore-triggers/post-login>).
const AUTH0_ROLES_ACTION: &str = r#"exports.onExecutePostLogin = async (event, api) => {
  const namespace = 'https://my-app.example.com';
  if (event.authorization) {
    api.idToken.setCustomClaim(`${namespace}/roles`, event.authorization.roles);
    api.accessToken.setCustomClaim(`${namespace}/roles`, event.authorization.roles);
  }
}
"#;

const CALLS: usize = 2000;
const WARM_UP: usize = 100;

fn main() {
    // Two workers, as the broker runs (the engine's timers and host calls
    // are driven as in a login).
    let rt = waypass_tests::bench::broker_like_runtime();
    let runtime = Runtime::new(RuntimeConfig::default()).expect("runtime");
    let store = MemoryStore::default();
    let profile: Profile = serde_json::from_value(serde_json::json!({
        "user_id": "1", "email": "ada@example.com", "name": "Ada"
    }))
    .expect("profile");
    let user = rt
        .block_on(store.record_login("oauth2|bench|1", "bench", profile, 1))
        .expect("user");
    let stored = StoredAction {
        id: "act_bench".into(),
        name: "bench".into(),
        supported_triggers: vec!["post-login".into()],
        runtime: "wasm".into(),
        secrets: vec![
            StoredActionSecret {
                name: "claim".into(),
                value: "https://example.com/roles=[\"admin\"]".into(),
            },
            StoredActionSecret {
                name: "metadata".into(),
                value: "plan=\"gold\"".into(),
            },
        ],
        egress: StoredMapperEgress::default(),
        timeout_ms: None,
        draft_sha256: None,
        created_at: 0,
        updated_at: 0,
    };
    let guest = |name: &str| {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("guests")
            .join(name);
        let path = plugins::build_world(&dir, World::Action);
        std::fs::read(&path).expect("the built Action")
    };
    let one = |bytes: Vec<u8>| {
        let loaded = Arc::new(runtime.load_action(&bytes).expect("the Action loads"));
        PostLoginChain {
            actions: vec![Arc::new(
                BoundAction::from_stored(&stored, 1, ActionCode::Component(loaded)).expect("bound"),
            )],
            unservable: None,
        }
    };
    let engine = Arc::new(ScriptEngine::load(&runtime).expect("the script engine loads"));
    let script = StoredAction {
        runtime: "node22".into(),
        secrets: Vec::new(),
        ..stored.clone()
    };
    let one_auth0 = PostLoginChain {
        actions: vec![Arc::new(
            BoundAction::from_stored(
                &script,
                1,
                ActionCode::Script(ScriptCode {
                    kind: ScriptKind::Action,
                    source: AUTH0_ROLES_ACTION.into(),
                    engine,
                    configuration: Default::default(),
                }),
            )
            .expect("bound"),
        )],
        unservable: None,
    };
    // (label, chain, whether it sets the probe's claim)
    let chains = [
        ("none", PostLoginChain::default(), false),
        (
            "one Rust action",
            one(guests::bytes(guests::ACTION_PROBE)),
            true,
        ),
        ("one JavaScript action", one(guest("action-claim-js")), true),
        ("one Python action", one(guest("action-claim-py")), true),
        ("one Auth0 Action (script engine)", one_auth0, false),
    ];

    println!("| bound actions | per-login p50 | per-login p99 |");
    println!("| --- | --- | --- |");
    for (label, chain, sets_claim) in &chains {
        let trigger = PostLoginTrigger {
            runtime: &runtime,
            store: &store,
            chain,
        };
        let mut samples: Vec<Duration> = Vec::with_capacity(CALLS);
        for i in 0..CALLS + WARM_UP {
            let client = EventClient {
                client_id: "app".into(),
                name: "App".into(),
            };
            let request = EventRequest {
                ip: "127.0.0.1".into(),
                user_agent: Some("bench".into()),
                hostname: "login.example.com".into(),
                query: vec![("ui_locales".into(), "en".into())],
            };
            let transaction = EventTransaction {
                requested_scopes: vec!["openid".into(), "email".into()],
                redirect_uri: "https://app.test/cb".into(),
                audience: None,
                prompt: None,
            };
            let start = Instant::now();
            let granted = rt
                .block_on(trigger.run_for_login(
                    &user,
                    client,
                    request,
                    "openid email",
                    transaction,
                ))
                .expect("the login goes on");
            let elapsed = start.elapsed();
            assert_eq!(granted.scope, "openid email");
            // Each bound component Action really ran: the claim is in the grant.
            assert_eq!(
                granted
                    .id_token_claims
                    .contains_key("https://example.com/roles"),
                *sets_claim,
                "{label}"
            );
            if i >= WARM_UP {
                samples.push(elapsed);
            }
        }
        samples.sort();
        let at = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
        println!(
            "| {label} | {:.1} µs | {:.1} µs |",
            at(0.5).as_secs_f64() * 1e6,
            at(0.99).as_secs_f64() * 1e6,
        );
    }
}
