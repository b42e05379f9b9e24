//! Post-login Actions in every language the SDKs cover: `waypass action new`
//! and `action build` for Rust, Python and JavaScript, and the Python and
//! JavaScript examples running in real logins through the development
//! provider.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use openidconnect::reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use waypass::build::{Language, World};
use waypass::dev_provider::default_user;
use waypass_tests::login::{
    ADMIN_TOKEN, APP, APP_CALLBACK, APP_SECRET, Browser, CONNECTION, Landing, RUNTIME, TestBed,
    admin_api, http_client, redeem,
};

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

/// The default user's id at the broker.
fn user_id() -> String {
    format!("oauth2|{CONNECTION}|{}", default_user().uuid)
}

/// The default user's email domain.
fn user_domain() -> String {
    default_user()
        .email
        .split_once('@')
        .map(|(_, d)| d.to_owned())
        .expect("an email with a domain")
}

/// Creates an Action `name` with `secrets` (and `extra` fields), uploads
/// `wasm`, deploys it and binds it alone to the post-login trigger.
async fn deploy_and_bind(tb: &TestBed, name: &str, wasm: &Path, secrets: Value, extra: Value) {
    let mut body = json!({
        "name": name,
        "supported_triggers": [{"id": "post-login", "version": "v3"}],
        "secrets": secrets,
    });
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    let (status, created) =
        admin_api(&tb.issuer, Method::POST, "actions/actions", Some(body)).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().expect("an id").to_owned();
    let resp = http_client()
        .put(format!(
            "{}/api/v2/actions/actions/{id}/component",
            tb.issuer
        ))
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", "application/wasm")
        .body(std::fs::read(wasm).expect("the component"))
        .send()
        .await
        .expect("upload");
    assert_eq!(resp.status().as_u16(), 200, "{:?}", resp.text().await);
    let (status, version) = admin_api(
        &tb.issuer,
        Method::POST,
        &format!("actions/actions/{id}/deploy"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{version}");
    let (status, bound) = admin_api(
        &tb.issuer,
        Method::PATCH,
        "actions/triggers/post-login/bindings",
        Some(json!({"bindings": [{"ref": {"type": "action_id", "value": id}}]})),
    )
    .await;
    assert_eq!(status, 200, "{bound}");
}

/// A login of the default user at the confidential app, to the app.
async fn login(tb: &TestBed) -> Landing {
    let url = tb.authorize_url(
        APP,
        APP_CALLBACK,
        &[("scope", "openid email"), ("connection", CONNECTION)],
    );
    Browser::default().login(tb, &url, false).await
}

/// The claims of the id_token the login's code redeems for.
async fn id_token_claims(tb: &TestBed, landing: &Landing) -> Value {
    let to_app = landing.location.as_ref().expect("a redirect to the app");
    let tokens = redeem(&tb.issuer, APP, APP_SECRET, APP_CALLBACK, to_app.as_str()).await;
    let id_token = tokens["id_token"].as_str().expect("an id_token");
    let payload = id_token.split('.').nth(1).expect("a JWT");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("JSON claims")
}

/// Largest request the decision service reads: a small JSON body.
const MAX_DECISION_REQUEST_BYTES: usize = 64 << 10;

/// A decision API on 127.0.0.1:0: answers every request with `answer`
/// (JSON) and keeps the bodies it was sent.
async fn decision_api(answer: Value) -> (String, Arc<Mutex<Vec<Value>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let kept = seen.clone();
    let answer = answer.to_string();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let (kept, answer) = (kept.clone(), answer.clone());
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                // Read the head, then as much body as it announces.
                let body = loop {
                    let Ok(n) = socket.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 || request.len() > MAX_DECISION_REQUEST_BYTES {
                        return;
                    }
                    request.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&request).into_owned();
                    let Some((head, body)) = text.split_once("\r\n\r\n") else {
                        continue;
                    };
                    let length = head
                        .lines()
                        .filter_map(|l| l.split_once(':'))
                        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    if body.len() >= length {
                        break body.to_owned();
                    }
                };
                if let Ok(json) = serde_json::from_str(&body) {
                    kept.lock().unwrap_or_else(|p| p.into_inner()).push(json);
                }
                let reply = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                    answer.len()
                );
                let _ = socket.write_all(reply.as_bytes()).await;
            });
        }
    });
    (format!("http://{addr}"), seen)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_python_action_asks_an_allowed_http_api_and_the_answer_decides_the_login() {
    let wasm = scaffolded(Language::Python);
    let egress = |origin: &str| json!({"egress": {"allowed_hosts": [origin], "allow_private_networks": true}});

    // The API allows, with roles: the login goes on and the roles are claimed.
    let tb = TestBed::start(|_, _| {}).await;
    let (api, seen) = decision_api(json!({"allow": true, "roles": ["editor"]})).await;
    deploy_and_bind(
        &tb,
        "ask-api",
        &wasm,
        json!([{"name": "DECISION_URL", "value": format!("{api}/decide")}]),
        egress(&api),
    )
    .await;
    let landing = login(&tb).await;
    assert!(landing.param("code").is_some(), "allowed: {landing:?}");
    let claims = id_token_claims(&tb, &landing).await;
    assert_eq!(claims["https://example.com/roles"], json!(["editor"]));
    let asked = seen.lock().unwrap_or_else(|p| p.into_inner()).clone();
    assert_eq!(
        asked,
        [json!({"user_id": user_id(), "email": default_user().email, "client_id": APP})],
        "the Action sent the user to the API once"
    );

    // The API refuses: the app gets access_denied with the API's reason.
    let tb = TestBed::start(|_, _| {}).await;
    let (api, _) = decision_api(json!({"allow": false, "reason": "not on the guest list"})).await;
    deploy_and_bind(
        &tb,
        "ask-api",
        &wasm,
        json!([{"name": "DECISION_URL", "value": format!("{api}/decide")}]),
        egress(&api),
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
    let (api, seen) = decision_api(json!({"allow": true})).await;
    deploy_and_bind(
        &tb,
        "ask-api",
        &wasm,
        json!([{"name": "DECISION_URL", "value": format!("{api}/decide")}]),
        json!({}),
    )
    .await;
    let landing = login(&tb).await;
    assert_eq!(landing.param("error").as_deref(), Some("server_error"));
    assert_eq!(landing.param("code"), None);
    assert!(seen.lock().unwrap_or_else(|p| p.into_inner()).is_empty());
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
