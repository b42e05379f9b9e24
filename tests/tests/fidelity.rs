//! Auth0 fidelity (issue #16): what a tenant leaving Auth0 brings works as
//! it is — the seed's rule on `authorizationURL`; Auth0's own SDKs (npm
//! `auth0`, PyPI `auth0-python`, installed from the registries into
//! `~/.cache/waypass/sdks`) driving the management API over https.

use std::path::{Path, PathBuf};
use std::time::Duration;

use openidconnect::reqwest;
use serde_json::json;
use waypass::model::ConnectionRecord;
use waypass::store::Store as _;
use waypass_tests::login::{
    ADMIN_TOKEN, APP, APP_CALLBACK, Browser, CONNECTION, TestBed, admin_api, connection_spec,
};

// ---- the authorization URL (the seed: only `query` works, never set it) ----

#[tokio::test(flavor = "multi_thread")]
async fn an_authorization_url_with_response_mode_is_refused_by_the_api_with_auth0s_error_body() {
    let tb = TestBed::start(|_, _| {}).await;
    let origin = tb.provider.origin().to_owned();
    let mut spec = connection_spec("moded", &origin);
    spec["options"]["authorizationURL"] =
        json!(format!("{origin}/authorize?response_mode=form_post"));
    let (status, body) =
        admin_api(&tb.issuer, reqwest::Method::POST, "connections", Some(spec)).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["statusCode"], 400, "{body}");
    assert_eq!(body["error"], "Bad Request", "{body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("authorizationURL must not carry `response_mode`")
            && message.contains("only the default response_mode (`query`)"),
        "{body}"
    );

    // A PATCH that adds one (here `state`) is refused the same way, and the
    // stored connection is unchanged.
    let (_, list) = admin_api(&tb.issuer, reqwest::Method::GET, "connections", None).await;
    let id = list
        .as_array()
        .and_then(|l| l.iter().find(|c| c["name"] == "devprov"))
        .and_then(|c| c["id"].as_str())
        .expect("the default connection")
        .to_owned();
    let (status, body) = admin_api(
        &tb.issuer,
        reqwest::Method::PATCH,
        &format!("connections/{id}"),
        Some(json!({"options": {"authorizationURL": format!("{origin}/authorize?state=fixed")}})),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("must not carry `state`")),
        "{body}"
    );
    let (_, got) = admin_api(
        &tb.issuer,
        reqwest::Method::GET,
        &format!("connections/{id}"),
        None,
    )
    .await;
    assert_eq!(
        got["options"]["authorizationURL"],
        format!("{origin}/authorize")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stored_connection_with_response_mode_loads_but_its_logins_are_refused_until_patched() {
    let tb = TestBed::start(|_, _| {}).await;
    let origin = tb.provider.origin().to_owned();
    // Written before the rule existed: straight into the store.
    let mut spec = connection_spec("legacy", &origin);
    spec["enabled_clients"] = json!([APP]);
    spec["options"]["authorizationURL"] =
        json!(format!("{origin}/authorize?response_mode=fragment"));
    let record = ConnectionRecord {
        id: "con_legacy".into(),
        spec: serde_json::from_value(spec).expect("spec"),
    };
    tb.store
        .put_connection(&record.to_stored())
        .await
        .expect("stored");
    // The strict load start-up runs does not fail over it.
    tb.broker
        .catalog()
        .load()
        .await
        .expect("one bad row does not stop the catalog loading");

    let url = tb.authorize_url(
        APP,
        APP_CALLBACK,
        &[
            ("scope", "openid"),
            ("state", "s"),
            ("connection", "legacy"),
        ],
    );
    let (status, location, _) = Browser::default().get(&url).await;
    assert_eq!(status, 302);
    let location = url::Url::parse(&location.expect("back to the app")).expect("a URL");
    let param = |name: &str| {
        location
            .query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    assert_eq!(
        param("error").as_deref(),
        Some("server_error"),
        "{location}"
    );
    let description = param("error_description").unwrap_or_default();
    assert!(
        description.contains("connection `legacy` is misconfigured")
            && description.contains("response_mode"),
        "{description}"
    );

    // Fixing the URL through the API makes it usable again.
    let (status, body) = admin_api(
        &tb.issuer,
        reqwest::Method::PATCH,
        "connections/con_legacy",
        Some(json!({"options": {"authorizationURL": format!("{origin}/authorize")}})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let landing = Browser::default()
        .login(
            &tb,
            &tb.authorize_url(
                APP,
                APP_CALLBACK,
                &[("scope", "openid"), ("connection", "legacy")],
            ),
            false,
        )
        .await;
    assert!(landing.param("code").is_some(), "{landing:?}");
}

// ---- Auth0's SDKs drive the management API, unpatched ----

/// The SDK versions the tests install from the registries (pinned: a new
/// release is a change to review, not a surprise in CI).
const NODE_SDK: &str = "auth0@7.1.0";
const PYTHON_SDK: &str = "auth0-python==6.8.0";

/// Longest an SDK script may run: a few dozen requests, plus the
/// interpreter's start, on a loaded debug build.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(120);

/// The management scopes the SDK's client is given.
const SDK_SCOPES: [&str; 9] = [
    "read:connections",
    "write:connections",
    "read:clients",
    "write:clients",
    "read:users",
    "write:users",
    "read:branding",
    "update:branding",
    "delete:branding",
];

/// Not a provider the tests reach: no login runs through the SDKs'
/// connections, and a public name needs no `write:egress`.
const SDK_PROVIDER: &str = "https://provider.example";

/// A test CA and a certificate it signs for 127.0.0.1 and localhost, as
/// PEM files in `dir`: `(ca, cert, key)`.
fn test_pki(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, SanType};
    let mut ca_params = CertificateParams::new(Vec::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Waypass test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("CA key"))
        .expect("CA certificate");
    let mut params = CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
    params
        .subject_alt_names
        .push(SanType::IpAddress([127, 0, 0, 1].into()));
    let key = KeyPair::generate().expect("key");
    let cert = params.signed_by(&key, &ca).expect("certificate");
    let paths = (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    );
    std::fs::write(&paths.0, ca.pem()).expect("write CA");
    std::fs::write(&paths.1, cert.pem()).expect("write cert");
    std::fs::write(&paths.2, key.serialize_pem()).expect("write key");
    paths
}

/// Installs an SDK once into Waypass's cache (`~/.cache/waypass/sdks/NAME`):
/// `install` fills a fresh directory, which is moved into place only once
/// it is complete, so an interrupted install is redone, never half used.
fn installed(name: &str, install: impl FnOnce(&Path) -> std::process::Output) -> PathBuf {
    let home = waypass::build::cache_home().join("sdks");
    let dir = home.join(name);
    if dir.join(".installed").exists() {
        return dir;
    }
    std::fs::create_dir_all(&home).expect("cache dir");
    let fresh = home.join(format!("{name}.partial-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&fresh);
    std::fs::create_dir_all(&fresh).expect("install dir");
    let out = install(&fresh);
    assert!(
        out.status.success(),
        "installing {name} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(fresh.join(".installed"), name).expect("marker");
    let _ = std::fs::remove_dir_all(&dir);
    if std::fs::rename(&fresh, &dir).is_err() {
        // Another process installed it meanwhile: use theirs.
        let _ = std::fs::remove_dir_all(&fresh);
    }
    dir
}

fn node_sdk() -> PathBuf {
    installed("node-auth0-7.1.0", |dir| {
        std::fs::write(dir.join("package.json"), r#"{"private": true}"#).expect("package.json");
        std::process::Command::new("npm")
            .args([
                "install",
                "--no-audit",
                "--no-fund",
                "--ignore-scripts",
                NODE_SDK,
            ])
            .current_dir(dir)
            .output()
            .expect("npm runs (install Node.js and npm)")
    })
}

fn python_sdk() -> PathBuf {
    installed("python-auth0-6.8.0", |dir| {
        let venv = std::process::Command::new("python3")
            .args(["-m", "venv"])
            .arg(dir)
            .output()
            .expect("python3 runs (install Python 3 with venv)");
        if !venv.status.success() {
            return venv;
        }
        std::process::Command::new(dir.join("bin/python"))
            .args(["-m", "pip", "install", "--quiet", PYTHON_SDK])
            .output()
            .expect("pip runs")
    })
}

/// A broker serving https with a test CA's certificate, a management
/// client holding [`SDK_SCOPES`] and one user: what an SDK script needs.
struct SdkBed {
    tb: TestBed,
    _dir: tempfile::TempDir,
    ca: PathBuf,
    client_id: String,
    client_secret: String,
    user_id: String,
}

impl SdkBed {
    async fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let (ca, cert, key) = test_pki(dir.path());
        let tls = waypass::broker::tls::acceptor(&cert, &key).expect("acceptor");
        let tb = TestBed::start_with_tls(|_, _| {}, Some(tls)).await;
        // This side of the test trusts the CA too.
        let https = reqwest::Client::builder()
            .add_root_certificate(
                reqwest::Certificate::from_pem(&std::fs::read(&ca).expect("CA")).expect("CA pem"),
            )
            .build()
            .expect("https client");
        let created: serde_json::Value = https
            .post(format!("{}/api/v2/clients", tb.issuer))
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({"name": "sdk", "callbacks": ["https://sdk.example/cb"], "scopes": SDK_SCOPES}))
            .send()
            .await
            .expect("create the SDK's client over https")
            .json()
            .await
            .expect("json");
        let profile: waypass::mapper::Profile =
            serde_json::from_value(json!({"user_id": "u1", "email": "u1@example.com"}))
                .expect("profile");
        let user_id = format!("oauth2|{CONNECTION}|u1");
        tb.store
            .record_login(&user_id, CONNECTION, profile, 1)
            .await
            .expect("a user");
        Self {
            client_id: created["client_id"].as_str().expect("client_id").to_owned(),
            client_secret: created["client_secret"]
                .as_str()
                .expect("client_secret")
                .to_owned(),
            tb,
            _dir: dir,
            ca,
            user_id,
        }
    }

    /// The script's arguments: DOMAIN CLIENT_ID CLIENT_SECRET PROVIDER APP USER.
    fn args(&self) -> Vec<String> {
        vec![
            self.tb.issuer.trim_start_matches("https://").to_owned(),
            self.client_id.clone(),
            self.client_secret.clone(),
            SDK_PROVIDER.to_owned(),
            APP.to_owned(),
            self.user_id.clone(),
        ]
    }

    /// Runs `command` to its end (bounded by [`SCRIPT_TIMEOUT`]) and
    /// returns the JSON it printed.
    async fn run(&self, mut command: tokio::process::Command) -> serde_json::Value {
        command.args(self.args()).kill_on_drop(true);
        let out = tokio::time::timeout(SCRIPT_TIMEOUT, command.output())
            .await
            .expect("the SDK script finishes")
            .expect("the SDK script runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "the SDK script failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
    }

    /// What both SDKs must have seen.
    fn assert_round_trips(&self, out: &serde_json::Value, conn: &str, app: &str) {
        assert_eq!(out["created"]["name"], conn, "{out}");
        assert_eq!(out["created"]["strategy"], "oauth2", "{out}");
        let patched = &out["patched"];
        assert_eq!(patched["display_name"], "Connection Name", "{out}");
        assert_eq!(
            patched["icon_url"], "https://cdn.example.com/assets/icon.png",
            "{out}"
        );
        assert_eq!(
            patched["authParams"],
            json!({"custom_param": "custom.param.value"}),
            "{out}"
        );
        assert_eq!(
            patched["authParamsMap"],
            json!({"custom_param": "access_type"}),
            "{out}"
        );
        assert_eq!(
            patched["scope"], "auth",
            "fields a PATCH leaves out are kept: {out}"
        );
        assert_eq!(
            patched["has_secret"], false,
            "client_secret is write-only: {out}"
        );
        assert_eq!(out["fields"], json!(["id", "name"]), "{out}");
        let both = json!([CONNECTION, conn]);
        assert_eq!(out["listed"], both, "checkpoint pages, followed: {out}");
        assert_eq!(out["by_strategy"], both, "{out}");
        assert_eq!(out["by_name"], json!([conn]), "{out}");
        assert_eq!(out["enabled_before"], json!([APP]), "{out}");
        assert_eq!(out["enabled_after_disable"], json!([]), "{out}");
        assert_eq!(out["enabled_clients"], json!([APP]), "{out}");
        assert_eq!(out["deleted"]["status"], 404, "{out}");
        assert_eq!(
            out["deleted"]["body"]["errorCode"], "inexistent_connection",
            "{out}"
        );
        assert_eq!(out["deleted"]["body"]["statusCode"], 404, "{out}");

        assert_eq!(out["client_created"]["name"], app, "{out}");
        assert_eq!(out["client_created"]["has_secret"], true, "{out}");
        assert_eq!(out["client_renamed"], format!("{app}-renamed"), "{out}");
        let created = out["client_id"].as_str().expect("client id");
        let listed: Vec<&str> = out["clients_listed"]
            .as_array()
            .expect("clients")
            .iter()
            .filter_map(|c| c.as_str())
            .collect();
        for id in [APP, self.client_id.as_str(), created] {
            assert!(listed.contains(&id), "offset pages, walked: {id} in {out}");
        }
        assert!(
            !out["clients_after_delete"]
                .as_array()
                .expect("clients")
                .contains(&json!(created)),
            "{out}"
        );

        assert_eq!(out["users_listed"], json!([self.user_id]), "{out}");
        assert_eq!(out["user"], self.user_id, "{out}");
        assert_eq!(out["users_after_delete"], json!([]), "{out}");

        assert_eq!(
            out["branding"],
            json!({"primary": "#0059d6", "page_background": "#101820",
                   "logo_url": "https://cdn.example.com/logo.png"}),
            "{out}"
        );
        assert_eq!(
            out["template"],
            "<!DOCTYPE html><html><head>{%- auth0:head -%}</head><body>{%- auth0:widget -%}</body></html>",
            "{out}"
        );
        assert_eq!(out["template_deleted"], 404, "{out}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn auth0s_node_sdk_manages_connections_clients_and_users_over_https() {
    let sdk = tokio::task::spawn_blocking(node_sdk)
        .await
        .expect("install");
    let bed = SdkBed::start().await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/sdk/management.js");
    let mut command = tokio::process::Command::new("node");
    command
        .arg(script)
        .env("NODE_PATH", sdk.join("node_modules"))
        .env("NODE_EXTRA_CA_CERTS", &bed.ca);
    let out = bed.run(command).await;
    bed.assert_round_trips(&out, "node-conn", "node-app");
}

#[tokio::test(flavor = "multi_thread")]
async fn auth0s_python_sdk_manages_connections_clients_and_users_over_https() {
    let sdk = tokio::task::spawn_blocking(python_sdk)
        .await
        .expect("install");
    let bed = SdkBed::start().await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/sdk/management.py");
    let mut command = tokio::process::Command::new(sdk.join("bin/python"));
    command.arg(script).env("SSL_CERT_FILE", &bed.ca);
    let out = bed.run(command).await;
    bed.assert_round_trips(&out, "py-conn", "py-app");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_management_token_for_another_audience_is_refused() {
    let tb = TestBed::start(|_, _| {}).await;
    let (_, created) = admin_api(
        &tb.issuer,
        reqwest::Method::POST,
        "clients",
        Some(json!({"name": "m", "callbacks": ["https://x.test/cb"], "scopes": ["read:users"]})),
    )
    .await;
    let (id, secret) = (
        created["client_id"].as_str().expect("id"),
        created["client_secret"].as_str().expect("secret"),
    );
    let token = |audience: String| {
        let issuer = tb.issuer.clone();
        async move {
            let resp = waypass_tests::login::http_client()
                .post(format!("{issuer}/oauth/token"))
                .form(&[
                    ("grant_type", "client_credentials"),
                    ("client_id", id),
                    ("client_secret", secret),
                    ("audience", &audience),
                ])
                .send()
                .await
                .expect("token request");
            let status = resp.status().as_u16();
            (
                status,
                resp.json::<serde_json::Value>().await.expect("json"),
            )
        }
    };
    let (status, body) = token(format!("{}/api/v2/", tb.issuer)).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["access_token"].is_string(), "{body}");
    // RFC 6749 §5.2: token endpoint errors other than invalid_client are 400.
    let (status, body) = token("https://other.example/api".into()).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "access_denied", "{body}");
}

// ---- application types ----

/// Creates a client through the API; returns the answer.
async fn create_app(tb: &TestBed, body: serde_json::Value) -> (u16, serde_json::Value) {
    admin_api(&tb.issuer, reqwest::Method::POST, "clients", Some(body)).await
}

/// What the token endpoint answers `grant_type` for `client_id`
/// (authenticated with Basic when it has a secret, `client_id` alone
/// otherwise): the status and the `error`, if any.
async fn try_grant(
    tb: &TestBed,
    client_id: &str,
    secret: Option<&str>,
    grant_type: &str,
) -> (u16, Option<String>) {
    let mut form = vec![("grant_type", grant_type)];
    if grant_type == "authorization_code" {
        form.extend([
            ("code", "not-a-code"),
            ("redirect_uri", "https://x.test/cb"),
            ("code_verifier", waypass_tests::login::PKCE_VERIFIER),
        ]);
    }
    let mut req = waypass_tests::login::http_client().post(format!("{}/oauth/token", tb.issuer));
    match secret {
        Some(secret) => req = req.basic_auth(client_id, Some(secret)),
        None => form.push(("client_id", client_id)),
    }
    let resp = req.form(&form).send().await.expect("token request");
    let status = resp.status().as_u16();
    let body: serde_json::Value = resp.json().await.expect("json");
    (status, body["error"].as_str().map(str::to_owned))
}

#[tokio::test(flavor = "multi_thread")]
async fn each_app_type_may_use_its_grants_and_no_others() {
    let tb = TestBed::start(|_, _| {}).await;
    // (app_type, may use authorization_code, may use client_credentials)
    let table = [
        ("spa", true, false),
        ("native", true, false),
        ("regular_web", true, true),
        ("non_interactive", false, true),
    ];
    for (app_type, codes, credentials) in table {
        let mut body =
            json!({"name": app_type, "app_type": app_type, "callbacks": ["https://x.test/cb"]});
        if credentials {
            body["scopes"] = json!(["read:users"]);
        }
        let (status, app) = create_app(&tb, body).await;
        assert_eq!(status, 201, "{app_type}: {app}");
        assert_eq!(app["app_type"], app_type, "{app}");
        let public = matches!(app_type, "spa" | "native");
        assert_eq!(
            app["type"],
            if public { "public" } else { "confidential" },
            "{app}"
        );
        assert_eq!(app["client_secret"].is_string(), !public, "{app}");
        if public {
            assert_eq!(app["token_endpoint_auth_method"], "none", "{app}");
        }
        let id = app["client_id"].as_str().expect("id");
        let secret = app["client_secret"].as_str();

        let (status, error) = try_grant(&tb, id, secret, "authorization_code").await;
        if codes {
            // Allowed: the (made-up) code itself is what is refused.
            assert_eq!(
                error.as_deref(),
                Some("invalid_grant"),
                "{app_type}: {status}"
            );
        } else {
            assert_eq!(error.as_deref(), Some("unauthorized_client"), "{app_type}");
        }
        let (status, error) = try_grant(&tb, id, secret, "client_credentials").await;
        if credentials {
            assert_eq!((status, error), (200, None), "{app_type}");
        } else {
            assert_eq!(error.as_deref(), Some("unauthorized_client"), "{app_type}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_machine_to_machine_app_needs_no_callback_and_cannot_start_a_login() {
    let tb = TestBed::start(|_, _| {}).await;
    let (status, body) = create_app(&tb, json!({"name": "cron", "app_type": "regular_web"})).await;
    assert_eq!(status, 400, "an interactive app needs callbacks: {body}");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("callback")),
        "{body}"
    );
    let (status, m2m) = create_app(
        &tb,
        json!({"name": "cron", "app_type": "non_interactive", "scopes": ["read:users"]}),
    )
    .await;
    assert_eq!(status, 201, "{m2m}");
    assert_eq!(m2m["callbacks"], json!([]), "{m2m}");
    assert_eq!(m2m["grant_types"], json!(["client_credentials"]), "{m2m}");

    // Even given a callback, it cannot start a login.
    let (status, m2m) = create_app(
        &tb,
        json!({"name": "cron2", "app_type": "non_interactive", "callbacks": [APP_CALLBACK]}),
    )
    .await;
    assert_eq!(status, 201, "{m2m}");
    let id = m2m["client_id"].as_str().expect("id");
    let url = tb.authorize_url(
        id,
        APP_CALLBACK,
        &[("state", "s"), ("connection", CONNECTION)],
    );
    let (status, location, _) = Browser::default().get(&url).await;
    assert_eq!(status, 302);
    let location = location.expect("back to the app");
    assert!(location.contains("error=unauthorized_client"), "{location}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_apps_token_endpoint_auth_method_is_the_only_one_it_may_use() {
    let tb = TestBed::start(|_, _| {}).await;
    let (status, body) = create_app(
        &tb,
        json!({"name": "s", "app_type": "spa", "callbacks": ["https://x.test/cb"],
               "token_endpoint_auth_method": "client_secret_post"}),
    )
    .await;
    assert_eq!(status, 400, "a spa keeps no secret: {body}");
    let (status, app) = create_app(
        &tb,
        json!({"name": "b", "app_type": "non_interactive", "scopes": ["read:users"],
               "token_endpoint_auth_method": "client_secret_basic"}),
    )
    .await;
    assert_eq!(status, 201, "{app}");
    let (id, secret) = (
        app["client_id"].as_str().expect("id"),
        app["client_secret"].as_str().expect("secret"),
    );
    // Basic: its method.
    let (status, error) = try_grant(&tb, id, Some(secret), "client_credentials").await;
    assert_eq!((status, error), (200, None));
    // The secret in the body: refused, though the secret is right.
    let resp = waypass_tests::login::http_client()
        .post(format!("{}/oauth/token", tb.issuer))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", id),
            ("client_secret", secret),
        ])
        .send()
        .await
        .expect("token request");
    assert_eq!(resp.status().as_u16(), 401);
    let body: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(body["error"], "invalid_client", "{body}");
    assert!(
        body["error_description"]
            .as_str()
            .is_some_and(|d| d.contains("client_secret_basic")),
        "{body}"
    );
}
