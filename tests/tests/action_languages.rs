//! Post-login Actions in every language the SDKs cover: `waypass action new`
//! and `action build` for Rust, Python and JavaScript, and the Python and
//! JavaScript examples running in real logins through the development
//! provider.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use openidconnect::reqwest::Method;
use serde_json::{Value, json};
use waypass::build::{Language, World};
use waypass::dev_provider::default_user;
use waypass_tests::actions::{self, id_token_claims, login, user_domain, user_id};
use waypass_tests::login::{ADMIN_TOKEN, APP, APP_CALLBACK, RUNTIME, TestBed, admin_api};
use waypass_tests::stub::{Reply, Stub};

/// The Action `waypass action new` starts in `language`, built by `action
/// build`'s code and loaded as an Action, once per test binary. Scaffolded under the test target's
/// own temporary directory, whose path is stable between runs, so the
/// build directory keyed by it is reused rather than piling up.
fn scaffolded(language: Language) -> PathBuf {
    static BUILT: Mutex<Vec<(Language, PathBuf)>> = Mutex::new(Vec::new());
    // Building is slow the first time: keep it off the async workers.
    tokio::task::block_in_place(|| {
        let mut built = BUILT.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, wasm)) = built.iter().find(|(l, _)| *l == language) {
            return wasm.clone();
        }
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join("action-scaffolds")
            .join(format!("{language:?}-action").to_lowercase());
        if dir.exists() {
            std::fs::remove_dir_all(&dir).expect("remove the last run's scaffold");
        }
        waypass::build::new_action(&dir, language).expect("action new");
        let wasm = waypass::build::build(&dir, World::Action)
            .unwrap_or_else(|e| panic!("action build of {}: {e:#}", dir.display()));
        // Compiled once here, one component at a time: the tests' runtime
        // keeps the artifact, so the brokers' uploads of the same bytes do
        // not compile it again, concurrently, on a loaded machine.
        let bytes = std::fs::read(&wasm).expect("the built component");
        if let Err(e) = RUNTIME.load_action(&bytes) {
            panic!("{language:?}: the built Action does not load: {e}");
        }
        built.push((language, wasm.clone()));
        wasm
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn action_new_then_action_build_gives_a_post_login_component_in_every_language() {
    for language in [Language::JavaScript, Language::Python, Language::Rust] {
        let wasm = scaffolded(language);
        let bytes = std::fs::read(&wasm).expect("the component");
        let action = RUNTIME.load_action(&bytes);
        assert!(
            action.is_ok(),
            "{language:?}: {:?}",
            action.err().map(|e| e.to_string())
        );
        assert!(
            RUNTIME.load(&bytes).is_err(),
            "{language:?}: an Action is not a mapper"
        );
    }
}

#[test]
fn action_new_refuses_an_existing_directory_and_names_that_are_not_plain() {
    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path().join("gate");
    waypass::build::new_action(&dir, Language::JavaScript).expect("scaffold");
    let readme = std::fs::read_to_string(dir.join("README.md")).expect("a README");
    assert!(readme.contains("waypass action build ."), "{readme}");
    assert!(
        waypass::build::new_action(&dir, Language::JavaScript)
            .unwrap_err()
            .to_string()
            .contains("already exists")
    );
    let err = waypass::build::new_action(&root.path().join("a b"), Language::Python).unwrap_err();
    assert!(
        err.to_string()
            .contains("name the post-login Action with letters"),
        "{err}"
    );
}

/// Creates an Action `name` with `secrets` (and `extra` fields), uploads
/// `wasm`, deploys it and binds it alone to the post-login trigger.
async fn deploy_and_bind(tb: &TestBed, name: &str, wasm: &Path, secrets: Value, extra: Value) {
    let mut fields = json!({"secrets": secrets});
    if let (Some(fields), Some(extra)) = (fields.as_object_mut(), extra.as_object()) {
        fields.extend(extra.clone());
    }
    let id = actions::create(tb, name, fields).await;
    actions::upload(tb, &id, wasm).await;
    actions::deploy(tb, &id).await;
    actions::bind(tb, &[&id]).await;
}

/// A decision API on 127.0.0.1:0 answering every request with `answer`
/// (JSON); the stub keeps what it was sent.
async fn decision_api(answer: Value) -> Stub {
    let answer = answer.to_string();
    Stub::start(move |_| Reply::Body(200, answer.clone())).await
}

/// The JSON bodies the decision API was sent.
fn asked(api: &Stub) -> Vec<Value> {
    api.received()
        .iter()
        .map(|r| serde_json::from_slice(&r.body).expect("a JSON request"))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_python_action_asks_an_allowed_http_api_and_the_answer_decides_the_login() {
    let wasm = scaffolded(Language::Python);
    let egress = |origin: &str| json!({"egress": {"allowed_hosts": [origin], "allow_private_networks": true}});

    // The API allows, with roles: the login goes on and the roles are claimed.
    let tb = TestBed::start(|_, _| {}).await;
    let api = decision_api(json!({"allow": true, "roles": ["editor"]})).await;
    deploy_and_bind(
        &tb,
        "ask-api",
        &wasm,
        json!([{"name": "DECISION_URL", "value": api.url("/decide")}]),
        egress(&api.url("")),
    )
    .await;
    let landing = login(&tb).await;
    assert!(landing.param("code").is_some(), "allowed: {landing:?}");
    let claims = id_token_claims(&tb, &landing).await;
    assert_eq!(claims["https://example.com/roles"], json!(["editor"]));
    assert_eq!(
        asked(&api),
        [json!({"user_id": user_id(), "email": default_user().email, "client_id": APP})],
        "the Action sent the user to the API once"
    );

    // The API refuses: the app gets access_denied with the API's reason.
    let tb = TestBed::start(|_, _| {}).await;
    let api = decision_api(json!({"allow": false, "reason": "not on the guest list"})).await;
    deploy_and_bind(
        &tb,
        "ask-api",
        &wasm,
        json!([{"name": "DECISION_URL", "value": api.url("/decide")}]),
        egress(&api.url("")),
    )
    .await;
    let landing = login(&tb).await;
    assert_eq!(landing.param("error").as_deref(), Some("access_denied"));
    assert_eq!(
        landing.param("error_description").as_deref(),
        Some("not on the guest list")
    );
    assert_eq!(landing.param("code"), None);

    // An API off the Action's allow-list is never asked: the login fails
    // with server_error, not skipped.
    let tb = TestBed::start(|_, _| {}).await;
    let api = decision_api(json!({"allow": true})).await;
    deploy_and_bind(
        &tb,
        "ask-api",
        &wasm,
        json!([{"name": "DECISION_URL", "value": api.url("/decide")}]),
        json!({}),
    )
    .await;
    let landing = login(&tb).await;
    assert_eq!(landing.param("error").as_deref(), Some("server_error"));
    assert_eq!(landing.param("code"), None);
    assert!(asked(&api).is_empty(), "the API off the list was asked");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_javascript_action_denies_by_email_domain_with_its_reason_at_the_app_and_writes_no_metadata()
 {
    let wasm = scaffolded(Language::JavaScript);

    let tb = TestBed::start(|_, _| {}).await;
    deploy_and_bind(
        &tb,
        "deny-domains",
        &wasm,
        json!([{"name": "DENIED_DOMAINS", "value": format!("other.example, {}", user_domain())}]),
        json!({}),
    )
    .await;
    let landing = login(&tb).await;
    assert!(
        landing
            .location
            .as_ref()
            .is_some_and(|l| l.as_str().starts_with(APP_CALLBACK)),
        "{landing:?}"
    );
    assert_eq!(landing.param("error").as_deref(), Some("access_denied"));
    assert_eq!(
        landing.param("error_description"),
        Some(format!("logins from {} are not allowed", user_domain()))
    );
    assert_eq!(landing.param("code"), None);
    let user = tb.broker_user(&user_id()).await.expect("the user is known");
    assert!(
        user.app_metadata.is_empty(),
        "the metadata the Action set before denying is not written: {:?}",
        user.app_metadata
    );

    // A domain not on the list: the same Action lets the login go on and
    // its metadata and claim are applied.
    let tb = TestBed::start(|_, _| {}).await;
    deploy_and_bind(
        &tb,
        "deny-domains",
        &wasm,
        json!([{"name": "DENIED_DOMAINS", "value": "other.example"}]),
        json!({}),
    )
    .await;
    let landing = login(&tb).await;
    assert!(landing.param("code").is_some(), "{landing:?}");
    let claims = id_token_claims(&tb, &landing).await;
    assert_eq!(claims["https://example.com/roles"], json!([]));
    let user = tb.broker_user(&user_id()).await.expect("the user");
    assert_eq!(user.app_metadata["last_client"], APP);
}

#[tokio::test(flavor = "multi_thread")]
async fn action_push_creates_uploads_deploys_and_binds_an_action_that_the_next_login_runs() {
    use clap::Parser as _;

    let wasm = scaffolded(Language::JavaScript);
    let tb = TestBed::start(|_, _| {}).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let token = dir.path().join("token");
    std::fs::write(&token, ADMIN_TOKEN).expect("token file");
    let args: Vec<String> = [
        "waypass",
        "action",
        "push",
        "gate",
        &wasm.display().to_string(),
        "--bind",
        "--url",
        &tb.issuer,
        "--token-file",
        &token.display().to_string(),
    ]
    .map(str::to_owned)
    .to_vec();
    // The command runs its own runtime: off this one's threads.
    let code = std::thread::spawn(move || {
        let cli = waypass::cli::Cli::try_parse_from(args).expect("the command parses");
        waypass::cli::main(cli)
    })
    .join()
    .expect("the command returns");
    assert_eq!(
        format!("{code:?}"),
        format!("{:?}", std::process::ExitCode::SUCCESS)
    );

    let (_, bindings) = admin_api(
        &tb.issuer,
        Method::GET,
        "actions/triggers/post-login/bindings",
        None,
    )
    .await;
    assert_eq!(
        bindings["bindings"][0]["action"]["name"], "gate",
        "{bindings}"
    );
    let id = bindings["bindings"][0]["action"]["id"]
        .as_str()
        .expect("the bound id");
    let (_, versions) = admin_api(
        &tb.issuer,
        Method::GET,
        &format!("actions/actions/{id}/versions"),
        None,
    )
    .await;
    assert_eq!(versions["total"], 1, "{versions}");

    // Bound and deployed: the next login runs it (no domain is denied).
    let landing = login(&tb).await;
    assert!(landing.param("code").is_some(), "{landing:?}");
    let user = tb.broker_user(&user_id()).await.expect("the user");
    assert_eq!(user.app_metadata["last_client"], APP);
}
