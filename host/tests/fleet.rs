//! A fleet: three `waypass serve` processes on one PostgreSQL database, as
//! behind a load balancer that keeps nothing sticky (issue #10 §5). Each
//! test gets a database of its own; the processes are the real binary,
//! talking to the development provider on 127.0.0.1.
//!
//! A mapper swap is made observable in the logins it serves: the mapper
//! `flip` alternates between the seed port (`auth0-example`, which names
//! the user by `account.uuid`) and the `declarative` mapper set to name
//! the user by `/account/email`; the connection's settings suit both. So
//! every login's `sub` says which of the two served it.

mod common;
// The PostgreSQL helpers of the end-to-end tests (one source): which
// server, a fresh database per test, dropped at the end.
#[allow(dead_code)]
#[path = "../../tests/src/postgres.rs"]
mod postgres;

use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{example_wasm, text, waypass};
use postgres::{TestDatabase, server};
use serde_json::{Value, json};
use waypass::dev_provider::{
    DEFAULT_PASSWORD, DEFAULT_USERNAME, DevProvider, DevProviderHandle, default_user,
    login_request_id,
};

/// The issuer every instance shares: the load balancer's address.
const ISSUER: &str = "http://login.test";
const APP: &str = "shop";
const APP_SECRET: &str = "shop-secret-0123456789";
const APP_CALLBACK: &str = "https://shop.test/callback";
const ADMIN_TOKEN: &str = "admin-token-for-the-fleet-tests-0123456789";
/// The secrets key every instance is given (base64 of 32 bytes): a
/// PostgreSQL deployment refuses to start without one.
const FLEET_SECRETS_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
/// RFC 7636 Appendix B's verifier and its S256 challenge.
const PKCE_VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const PKCE_CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
/// The connection the API creates, running mapper [`FLIP`].
const CONNECTION: &str = "fleet";
const FLIP: &str = "flip";

/// How long one request may take before the test calls it hung: far
/// beyond a login on a loaded debug build.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// How long an instance may take to start (a debug build compiling its
/// mappers while other tests run).
const START_TIMEOUT: Duration = Duration::from_secs(120);
/// The bound within which every instance must serve a change made on
/// another, asserted for every change: PostgreSQL's notification brings it
/// in milliseconds (BENCHMARKS.md measures it against the 100 ms target),
/// and when one is missed the 1 s version check does — plus a rebuild, on
/// a debug build sharing two cores with other tests. A test asserting the
/// 100 ms target itself would fail on a loaded machine, not on a bug.
const PROPAGATION_BOUND: Duration = Duration::from_secs(3);
/// The bound for a change that brings a new mapper component: every
/// instance compiles it before it swaps the catalog (Cranelift, on two
/// cores shared with the rest of the suite; 0.1–1.5 s seen at load 19).
const COMPILE_BOUND: Duration = Duration::from_secs(30);
/// How long the tests wait for something that should come (a phase's
/// logins, a restarted instance) before they fail instead of hanging.
const PATIENCE: Duration = Duration::from_secs(120);

// ---- the fleet ----

/// The database, the provider, and where each instance keeps its data.
struct Fleet {
    database: TestDatabase,
    provider: DevProviderHandle,
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl Fleet {
    /// A fresh database and provider; `None` (after a notice) when no
    /// PostgreSQL server can be had outside CI.
    async fn new() -> Option<Fleet> {
        let server = server()?;
        let database = TestDatabase::create(&server).await;
        let provider = DevProvider::new()
            .with_client(
                "waypass",
                "provider-secret",
                format!("{ISSUER}/login/callback"),
            )
            .start(
                tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind"),
            );
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("waypass.toml");
        std::fs::write(
            &config,
            format!(
                r#"
issuer = "{ISSUER}"
listen = "127.0.0.1:0"
data_dir = "data"

[[clients]]
client_id = "{APP}"
client_secret = "{APP_SECRET}"
callbacks = ["{APP_CALLBACK}"]

# Every request comes from 127.0.0.1 here: not an attack.
[limits.rate]
enabled = false
"#
            ),
        )
        .expect("write the configuration");
        Some(Fleet {
            database,
            provider,
            dir,
            config,
        })
    }

    /// Starts instance `name` (its data directory is its own: instances
    /// share only the database) and waits until it serves.
    fn start(&self, name: &'static str) -> Instance {
        use std::io::BufRead;
        let mut child = waypass(self.dir.path())
            .args(["serve", "--config"])
            .arg(&self.config)
            .env("WAYPASS_DATA_DIR", self.dir.path().join(name))
            .env("WAYPASS_DATABASE_URL", self.database.url.expose())
            // Instances on one database share its secrets key.
            .env("WAYPASS_SECRETS_KEY", FLEET_SECRETS_KEY)
            .env("WAYPASS_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("WAYPASS_LOG", "warn")
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn waypass serve");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                let _ = tx.send(line);
            }
        });
        let prefix = format!("waypass: serving {ISSUER} on ");
        let addr = loop {
            let line = lines
                .recv_timeout(START_TIMEOUT)
                .unwrap_or_else(|e| panic!("instance {name}: waiting for `{prefix}`: {e}"));
            if let Some(addr) = line.strip_prefix(&prefix) {
                break addr.to_owned();
            }
        };
        Instance {
            name,
            origin: format!("http://{addr}"),
            child,
            _lines: lines,
        }
    }
}

/// One `waypass serve` process; killed when dropped.
struct Instance {
    name: &'static str,
    origin: String,
    child: Child,
    /// Its log, kept so the process never writes to a closed pipe.
    _lines: Receiver<String>,
}

impl Instance {
    /// `kill -9`: no chance to finish anything.
    fn kill(&mut self) {
        self.child.kill().expect("kill -9");
        self.child.wait().expect("wait");
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(REQUEST_TIMEOUT)
        .build()
        .expect("client")
}

/// A management API call on `origin` with the admin token: the status and
/// the body as JSON (`null` when empty).
async fn api(
    origin: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = http_client()
        .request(method, format!("{origin}/api/v2/{path}"))
        .bearer_auth(ADMIN_TOKEN);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await.expect("management API request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// `PUT /api/v2/mappers/{name}` on `origin`: the new version's number.
async fn push_mapper(origin: &str, name: &str, bytes: Vec<u8>) -> u32 {
    let resp = http_client()
        .put(format!("{origin}/api/v2/mappers/{name}"))
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", "application/wasm")
        .body(bytes)
        .send()
        .await
        .expect("push a mapper");
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    assert_eq!(status, 201, "pushing {name}: {body}");
    body["version"]
        .as_u64()
        .and_then(|v| u32::try_from(v).ok())
        .unwrap_or_else(|| panic!("a version number: {body}"))
}

/// The catalog version `origin` says it serves (`Waypass-Catalog-Version`
/// on `/healthz`), or `None` when it does not answer.
async fn catalog_version(origin: &str) -> Option<u64> {
    let resp = http_client()
        .get(format!("{origin}/healthz"))
        .send()
        .await
        .ok()?;
    resp.headers()
        .get(waypass::broker::server::CATALOG_VERSION_HEADER)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// Waits until `origin` serves catalog version `version` or a later one;
/// how long that took. Fails past `bound` ([`PROPAGATION_BOUND`], or
/// [`COMPILE_BOUND`] for a change bringing a new component).
async fn reaches(origin: &str, version: u64, bound: Duration) -> Duration {
    let start = Instant::now();
    loop {
        if catalog_version(origin).await >= Some(version) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < bound,
            "{origin} still serves {:?}, not {version}, {bound:?} after the change",
            catalog_version(origin).await
        );
        // A poll of the header: the wait ends at the change.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

// ---- the mappers ----

/// Builds `plugins/mappers/<name>` once per test binary through
/// `waypass mapper build`; its bytes.
fn mapper_bytes(name: &'static str) -> Vec<u8> {
    static BUILT: Mutex<Vec<(&str, PathBuf)>> = Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(|p| p.into_inner());
    let path = match built.iter().find(|(n, _)| *n == name) {
        Some((_, path)) => path.clone(),
        None => {
            let path = if name == "auth0-example" {
                example_wasm().clone()
            } else {
                let cache = tempfile::tempdir().expect("tempdir");
                let out = waypass(cache.path())
                    .args(["mapper", "build"])
                    .arg(format!("plugins/mappers/{name}"))
                    .output()
                    .expect("run waypass");
                assert!(out.status.success(), "{}", text(&out.stderr));
                PathBuf::from(text(&out.stdout).lines().last().expect("a path"))
            };
            built.push((name, path.clone()));
            path
        }
    };
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Which of the two mappers named the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// The seed port: `account.uuid`.
    Uuid,
    /// `declarative`, pointed at `/account/email`.
    Email,
}

impl Kind {
    fn other(self) -> Kind {
        match self {
            Kind::Uuid => Kind::Email,
            Kind::Email => Kind::Uuid,
        }
    }

    fn mapper(self) -> &'static str {
        match self {
            Kind::Uuid => "auth0-example",
            Kind::Email => "declarative",
        }
    }

    /// The `sub` a login served by this kind gives the default user.
    fn sub(self) -> String {
        let user = default_user();
        let id = match self {
            Kind::Uuid => user.uuid,
            Kind::Email => user.email,
        };
        format!("oauth2|{CONNECTION}|{id}")
    }

    fn of(sub: &str) -> Option<Kind> {
        [Kind::Uuid, Kind::Email]
            .into_iter()
            .find(|k| k.sub() == sub)
    }
}

/// `component` with a custom section appended (the component model allows
/// them anywhere): the same mapper to the runtime, other bytes — so a new
/// version with its own SHA-256.
fn with_custom_section(mut component: Vec<u8>, name: &str, payload: &[u8]) -> Vec<u8> {
    fn leb128(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    let mut content = Vec::new();
    leb128(name.len(), &mut content);
    content.extend_from_slice(name.as_bytes());
    content.extend_from_slice(payload);
    component.push(0); // custom section id
    leb128(content.len(), &mut component);
    component.extend_from_slice(&content);
    component
}

/// Through `origin`'s API: mapper [`FLIP`] (version 1, the seed port) and
/// connection [`CONNECTION`] running it against the fleet's provider, for
/// app [`APP`]. Returns the connection's id.
async fn create_flip_connection(origin: &str, provider: &str) -> String {
    assert_eq!(
        push_mapper(origin, FLIP, mapper_bytes(Kind::Uuid.mapper())).await,
        1
    );
    let (status, created) = api(
        origin,
        reqwest::Method::POST,
        "connections",
        Some(json!({
            "name": CONNECTION,
            "enabled_clients": [APP],
            "options": {
                "authorizationURL": format!("{provider}/authorize"),
                "tokenURL": format!("{provider}/token"),
                "client_id": "waypass",
                "client_secret": "provider-secret",
                "mapper": FLIP,
                // The seed port reads `userinfo_url` only; `declarative`
                // also `user_id`.
                "mapper_settings": {
                    "userinfo_url": format!("{provider}/userinfo"),
                    "user_id": "/account/email",
                },
                "mapper_egress": {"allow_private_networks": true},
            }
        })),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    created["id"].as_str().expect("an id").to_owned()
}

// ---- one login, step by step, each step on the instance the test says ----

/// A login step that failed: where, and why.
#[derive(Debug, Clone)]
struct StepFailed {
    step: &'static str,
    origin: String,
    error: String,
}

type Step<T> = Result<T, StepFailed>;

fn failed(step: &'static str, origin: &str, error: impl std::fmt::Display) -> StepFailed {
    StepFailed {
        step,
        origin: origin.to_owned(),
        error: error.to_string(),
    }
}

/// `GET /authorize` on `origin`, then the user logs in at the provider:
/// the callback URL (on the issuer) and the browser's cookie.
async fn start_login(
    http: &reqwest::Client,
    origin: &str,
    provider: &str,
) -> Step<(String, String)> {
    let authorize = format!(
        "{origin}/authorize?response_type=code&client_id={APP}&redirect_uri={}&scope=openid%20email\
         &state=app-state&nonce=n&connection={CONNECTION}&code_challenge={PKCE_CHALLENGE}\
         &code_challenge_method=S256",
        url::form_urlencoded::byte_serialize(APP_CALLBACK.as_bytes()).collect::<String>()
    );
    let resp = http
        .get(&authorize)
        .send()
        .await
        .map_err(|e| failed("authorize", origin, e))?;
    let (status, to_provider) = (resp.status().as_u16(), location(&resp));
    let cookie = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok()?.split(';').next().map(str::to_owned))
        .collect::<Vec<_>>()
        .join("; ");
    let body = resp.text().await.unwrap_or_default();
    let to_provider = to_provider
        .filter(|l| status == 302 && l.starts_with(provider))
        .ok_or_else(|| failed("authorize", origin, format!("{status}: {body}")))?;
    let at_provider = |e| failed("provider", provider, e);
    let form = http
        .get(&to_provider)
        .send()
        .await
        .map_err(at_provider)?
        .text()
        .await
        .map_err(at_provider)?;
    let request = login_request_id(&form)
        .ok_or_else(|| failed("provider", provider, format!("no login form: {form}")))?
        .to_owned();
    let resp = http
        .post(format!("{provider}/authorize"))
        .form(&[
            ("request", request.as_str()),
            ("username", DEFAULT_USERNAME),
            ("password", DEFAULT_PASSWORD),
            ("action", "login"),
        ])
        .send()
        .await
        .map_err(at_provider)?;
    let callback = location(&resp)
        .filter(|l| l.starts_with(ISSUER))
        .ok_or_else(|| {
            failed(
                "provider",
                provider,
                format!("{} without a callback", resp.status()),
            )
        })?;
    Ok((callback, cookie))
}

/// The provider's redirect to the issuer's callback, delivered to
/// `origin` with the browser's cookie: the app's code.
async fn callback(
    http: &reqwest::Client,
    origin: &str,
    to_issuer: &str,
    cookie: &str,
) -> Step<String> {
    let url = to_issuer.replacen(ISSUER, origin, 1);
    let resp = http
        .get(&url)
        .header("cookie", cookie)
        .send()
        .await
        .map_err(|e| failed("callback", origin, e))?;
    let (status, location) = (resp.status().as_u16(), location(&resp));
    let body = resp.text().await.unwrap_or_default();
    location
        .filter(|l| status == 302 && l.starts_with(APP_CALLBACK))
        .and_then(|l| {
            url::Url::parse(&l)
                .ok()?
                .query_pairs()
                .find(|(k, _)| k == "code")
                .map(|(_, v)| v.into_owned())
        })
        .ok_or_else(|| failed("callback", origin, format!("{status}: {body}")))
}

/// The app redeems `code` at `origin`: the access token.
async fn redeem(http: &reqwest::Client, origin: &str, code: &str) -> Step<String> {
    let resp = http
        .post(format!("{origin}/oauth/token"))
        .basic_auth(APP, Some(APP_SECRET))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", APP_CALLBACK),
            ("code_verifier", PKCE_VERIFIER),
        ])
        .send()
        .await
        .map_err(|e| failed("token", origin, e))?;
    let status = resp.status().as_u16();
    let tokens: Value = resp.json().await.map_err(|e| failed("token", origin, e))?;
    tokens["access_token"]
        .as_str()
        .filter(|_| status == 200 && tokens["id_token"].is_string())
        .map(str::to_owned)
        .ok_or_else(|| failed("token", origin, format!("{status}: {tokens}")))
}

/// `/userinfo` on `origin` with the access token: the user's `sub`.
async fn userinfo(http: &reqwest::Client, origin: &str, access_token: &str) -> Step<String> {
    let resp = http
        .get(format!("{origin}/userinfo"))
        .bearer_auth(access_token)
        .send()
        .await
        .map_err(|e| failed("userinfo", origin, e))?;
    let status = resp.status().as_u16();
    let info: Value = resp
        .json()
        .await
        .map_err(|e| failed("userinfo", origin, e))?;
    info["sub"]
        .as_str()
        .filter(|_| status == 200)
        .map(str::to_owned)
        .ok_or_else(|| failed("userinfo", origin, format!("{status}: {info}")))
}

fn location(resp: &reqwest::Response) -> Option<String> {
    resp.headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

// ---- the tests ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_started_on_a_comes_back_to_b_is_redeemed_on_c_and_answered_by_a() {
    let Some(fleet) = Fleet::new().await else {
        return;
    };
    let a = fleet.start("a");
    let b = fleet.start("b");
    let c = fleet.start("c");
    create_flip_connection(&a.origin, fleet.provider.origin()).await;
    let version = catalog_version(&a.origin).await.expect("A serves");
    for other in [&b, &c] {
        reaches(&other.origin, version, COMPILE_BOUND).await;
    }

    let http = http_client();
    let (to_issuer, cookie) = start_login(&http, &a.origin, fleet.provider.origin())
        .await
        .expect("the login starts on A");
    let code = callback(&http, &b.origin, &to_issuer, &cookie)
        .await
        .expect("B takes the provider's answer to A's login");
    let access_token = redeem(&http, &c.origin, &code)
        .await
        .expect("C redeems the code B issued");
    let sub = userinfo(&http, &a.origin, &access_token)
        .await
        .expect("A answers /userinfo for C's token");
    assert_eq!(sub, Kind::Uuid.sub());

    // The code was single-use across the fleet.
    for other in [&a, &b, &c] {
        let again = redeem(&http, &other.origin, &code).await;
        assert!(
            again
                .as_ref()
                .is_err_and(|e| e.error.contains("invalid_grant")),
            "{}: {again:?}",
            other.name
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_created_patched_and_deleted_on_b_is_seen_and_then_refused_on_a_and_c() {
    let Some(fleet) = Fleet::new().await else {
        return;
    };
    let a = fleet.start("a");
    let b = fleet.start("b");
    let c = fleet.start("c");
    // Where `/authorize` for connection `late` sends the browser.
    let goes_to = |origin: String| async move {
        let url = format!(
            "{origin}/authorize?response_type=code&client_id={APP}&redirect_uri={}\
             &connection=late&code_challenge={PKCE_CHALLENGE}&code_challenge_method=S256",
            url::form_urlencoded::byte_serialize(APP_CALLBACK.as_bytes()).collect::<String>()
        );
        let resp = http_client().get(url).send().await.expect("authorize");
        (resp.status().as_u16(), location(&resp).unwrap_or_default())
    };
    for other in [&a, &c] {
        let (status, to) = goes_to(other.origin.clone()).await;
        assert_eq!(status, 302, "{}", other.name);
        assert!(
            to.starts_with(APP_CALLBACK) && to.contains("error=invalid_request"),
            "{}: no connection `late` yet: {to}",
            other.name
        );
    }

    assert_eq!(
        push_mapper(&b.origin, FLIP, mapper_bytes(Kind::Uuid.mapper())).await,
        1
    );
    let (status, created) = api(
        &b.origin,
        reqwest::Method::POST,
        "connections",
        Some(json!({
            "name": "late",
            "enabled_clients": [APP],
            "options": {
                "authorizationURL": "https://id.late.test/authorize",
                "tokenURL": "https://id.late.test/token",
                "client_id": "waypass",
                "client_secret": "late-secret",
                "mapper": FLIP,
            }
        })),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().expect("an id").to_owned();
    // The first change brings the mapper's component (compiled on A and
    // C); the others change the connection only.
    let expect_everywhere = |authorization: &'static str, bound: Duration| {
        let (a, b, c) = (a.origin.clone(), b.origin.clone(), c.origin.clone());
        async move {
            let version = catalog_version(&b).await.expect("B serves");
            for (name, origin) in [("A", a), ("C", c)] {
                reaches(&origin, version, bound).await;
                let (status, to) = goes_to(origin).await;
                assert_eq!(status, 302, "{name}");
                assert!(
                    to.starts_with(authorization),
                    "{name} sends the browser to {to}"
                );
            }
        }
    };
    expect_everywhere("https://id.late.test/authorize?", COMPILE_BOUND).await;

    let (status, patched) = api(
        &b.origin,
        reqwest::Method::PATCH,
        &format!("connections/{id}"),
        Some(json!({"options": {
            "authorizationURL": "https://id.later.test/authorize",
            "tokenURL": "https://id.later.test/token",
            "client_secret": "later-secret",
        }})),
    )
    .await;
    assert_eq!(status, 200, "{patched}");
    expect_everywhere("https://id.later.test/authorize?", PROPAGATION_BOUND).await;

    let (status, body) = api(
        &b.origin,
        reqwest::Method::DELETE,
        &format!("connections/{id}"),
        None,
    )
    .await;
    assert_eq!(status, 204, "{body}");
    expect_everywhere(APP_CALLBACK, PROPAGATION_BOUND).await;
    for other in [&a, &c] {
        let (_, to) = goes_to(other.origin.clone()).await;
        assert!(
            to.contains("error=invalid_request") && to.contains("late"),
            "{} refuses the deleted connection: {to}",
            other.name
        );
        let (status, _) = api(
            &other.origin,
            reqwest::Method::GET,
            &format!("connections/{id}"),
            None,
        )
        .await;
        assert_eq!(status, 404, "{}", other.name);
    }
}

// ---- load: logins looping across the fleet ----

/// What the login loops share with the test that drives them. Every step
/// of a login goes to the next live instance in turn (a load balancer
/// that keeps nothing sticky), so a login's steps land on different
/// instances.
///
/// Phases say what a login may be served by: in an even phase every live
/// instance has said (`Waypass-Catalog-Version`) that it serves the
/// phase's change, so a callback sent and answered within it must be
/// served by the phase's mapper; an odd phase is a change in flight,
/// where either may serve.
struct Load {
    provider: String,
    live: Mutex<Vec<String>>,
    turn: AtomicUsize,
    phase: AtomicU64,
    /// The mapper of each even phase (index: phase / 2).
    expected: Mutex<Vec<Kind>>,
    stop: AtomicBool,
    served: Mutex<Vec<Served>>,
    /// Bumped at every login, for the driver waiting on them.
    logins: tokio::sync::watch::Sender<usize>,
}

/// One login of the loops.
#[derive(Debug)]
struct Served {
    /// The phase when the callback was sent, and when it was answered.
    phases: (u64, u64),
    callback_on: Option<String>,
    result: Step<Kind>,
}

impl Load {
    fn new(provider: &str, live: Vec<String>, first: Kind) -> Arc<Load> {
        Arc::new(Load {
            provider: provider.to_owned(),
            live: Mutex::new(live),
            turn: AtomicUsize::new(0),
            phase: AtomicU64::new(0),
            expected: Mutex::new(vec![first]),
            stop: AtomicBool::new(false),
            served: Mutex::new(Vec::new()),
            logins: tokio::sync::watch::channel(0).0,
        })
    }

    fn next_origin(&self) -> String {
        let live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        live[self.turn.fetch_add(1, Ordering::SeqCst) % live.len()].clone()
    }

    fn set_live(&self, live: Vec<String>) {
        *self.live.lock().unwrap_or_else(|p| p.into_inner()) = live;
    }

    /// A change is about to be made (an odd phase begins).
    fn changing(&self) {
        let was = self.phase.fetch_add(1, Ordering::SeqCst);
        assert_eq!(was % 2, 0, "one change at a time");
    }

    /// Every live instance serves the change: from now on logins must be
    /// served by `kind` (an even phase begins).
    fn settled(&self, kind: Kind) {
        self.expected
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(kind);
        let was = self.phase.fetch_add(1, Ordering::SeqCst);
        assert_eq!(was % 2, 1, "settled after a change");
    }

    /// Waits until, in the current (even) phase, a login's callback was
    /// served within the phase on each live instance — every instance is
    /// seen serving the phase's mapper, by a login.
    async fn covered(&self) {
        let mut logins = self.logins.subscribe();
        let phase = self.phase.load(Ordering::SeqCst);
        assert_eq!(phase % 2, 0);
        let live = self.live.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let deadline = Instant::now() + PATIENCE;
        loop {
            let missing: Vec<&String> = {
                let served = self.served.lock().unwrap_or_else(|p| p.into_inner());
                live.iter()
                    .filter(|origin| {
                        !served.iter().any(|s| {
                            s.phases == (phase, phase)
                                && s.callback_on.as_ref() == Some(origin)
                                && s.result.is_ok()
                        })
                    })
                    .collect()
            };
            if missing.is_empty() {
                return;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, logins.changed()).await {
                Ok(Ok(())) => {}
                _ => panic!("phase {phase}: no login served on {missing:?} within {PATIENCE:?}"),
            }
        }
    }

    /// Starts `n` loops; each runs logins until [`Load::stop`] is set.
    fn run(self: &Arc<Self>, n: usize) -> Vec<tokio::task::JoinHandle<()>> {
        (0..n)
            .map(|_| {
                let load = self.clone();
                tokio::spawn(async move {
                    let http = http_client();
                    while !load.stop.load(Ordering::SeqCst) {
                        let served = load.one_login(&http).await;
                        load.served
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push(served);
                        load.logins.send_modify(|n| *n += 1);
                    }
                })
            })
            .collect()
    }

    async fn one_login(&self, http: &reqwest::Client) -> Served {
        let mut served = Served {
            phases: (0, 0),
            callback_on: None,
            result: Err(failed("none", "", "not run")),
        };
        let result = async {
            let (to_issuer, cookie) =
                start_login(http, &self.next_origin(), &self.provider).await?;
            let origin = self.next_origin();
            served.callback_on = Some(origin.clone());
            let before = self.phase.load(Ordering::SeqCst);
            let code = callback(http, &origin, &to_issuer, &cookie).await;
            served.phases = (before, self.phase.load(Ordering::SeqCst));
            let access_token = redeem(http, &self.next_origin(), &code?).await?;
            let sub = userinfo(http, &self.next_origin(), &access_token).await?;
            Kind::of(&sub).ok_or_else(|| failed("userinfo", "", format!("unexpected user {sub}")))
        }
        .await;
        served.result = result;
        served
    }

    /// Stops the loops and returns every login they ran, after checking
    /// each login served within an even phase against that phase's mapper.
    async fn finish(&self, loops: Vec<tokio::task::JoinHandle<()>>) -> Vec<Served> {
        self.stop.store(true, Ordering::SeqCst);
        for l in loops {
            l.await.expect("a login loop");
        }
        let served = std::mem::take(&mut *self.served.lock().unwrap_or_else(|p| p.into_inner()));
        let expected = self
            .expected
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for s in &served {
            if let (Ok(kind), (before, after)) = (&s.result, s.phases)
                && before == after
                && before % 2 == 0
            {
                let phase = usize::try_from(before / 2).expect("a phase");
                assert_eq!(
                    *kind, expected[phase],
                    "phase {before}: the callback on {:?} ran a mapper every instance had \
                     already replaced",
                    s.callback_on
                );
            }
        }
        served
    }
}

/// Percentile `p` (0–100) of `sorted`.
fn percentile(sorted: &[Duration], p: usize) -> Duration {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

/// The versions of [`FLIP`] a test has pushed, with the mapper each is.
struct Versions(Vec<(u32, Kind)>);

impl Versions {
    /// Makes `kind` active through `origin`'s API: a new version while
    /// fewer than `pushes` exist (its bytes made unique by a custom
    /// section), else the activation of an existing one (a rollback), in
    /// turn. Whether it pushed a new component.
    async fn swap_to(&mut self, origin: &str, kind: Kind, pushes: usize, turn: usize) -> bool {
        if self.0.len() < pushes {
            let bytes = with_custom_section(
                mapper_bytes(kind.mapper()),
                "waypass-fleet-test",
                format!("version {}", self.0.len() + 1).as_bytes(),
            );
            let version = push_mapper(origin, FLIP, bytes).await;
            self.0.push((version, kind));
            return true;
        }
        let of_kind: Vec<u32> = self
            .0
            .iter()
            .filter(|(_, k)| *k == kind)
            .map(|(v, _)| *v)
            .collect();
        let version = of_kind[turn % of_kind.len()];
        let (status, body) = api(
            origin,
            reqwest::Method::POST,
            &format!("mappers/{FLIP}/versions/{version}/activate"),
            None,
        )
        .await;
        assert_eq!(status, 200, "activating {version}: {body}");
        false
    }
}

/// How many mapper swaps the swap test makes, and how many of them push a
/// new version (the rest activate an earlier one: each push compiles the
/// component on every instance).
const SWAPS: usize = 100;
const PUSHES: usize = 8;
/// Login loops running at once: a few, on two shared cores.
const LOOPS: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_mapper_swaps_through_a_fail_no_login_on_a_b_or_c_and_each_instance_serves_each_version()
 {
    let Some(fleet) = Fleet::new().await else {
        return;
    };
    let a = fleet.start("a");
    let b = fleet.start("b");
    let c = fleet.start("c");
    create_flip_connection(&a.origin, fleet.provider.origin()).await;
    let first = catalog_version(&a.origin).await.expect("A serves");
    for other in [&b, &c] {
        reaches(&other.origin, first, COMPILE_BOUND).await;
    }
    let origins = vec![a.origin.clone(), b.origin.clone(), c.origin.clone()];
    let load = Load::new(fleet.provider.origin(), origins, Kind::Uuid);
    let loops = load.run(LOOPS);
    load.covered().await;

    let mut versions = Versions(vec![(1, Kind::Uuid)]);
    let mut kind = Kind::Uuid;
    // How long B and C took to serve each activation (no compile).
    let mut propagation = Vec::new();
    for swap in 0..SWAPS {
        kind = kind.other();
        load.changing();
        let pushed = versions.swap_to(&a.origin, kind, PUSHES, swap).await;
        // A serves its change before its API answers.
        let version = catalog_version(&a.origin).await.expect("A serves");
        for other in [&b, &c] {
            if pushed {
                reaches(&other.origin, version, COMPILE_BOUND).await;
            } else {
                propagation.push(reaches(&other.origin, version, PROPAGATION_BOUND).await);
            }
        }
        load.settled(kind);
        load.covered().await;
    }
    let served = load.finish(loops).await;

    let failures: Vec<_> = served.iter().filter(|s| s.result.is_err()).collect();
    assert!(failures.is_empty(), "failed logins: {failures:#?}");
    let checked = served
        .iter()
        .filter(|s| s.phases.0 == s.phases.1 && s.phases.0 % 2 == 0)
        .count();
    assert!(
        checked >= 3 * (SWAPS + 1),
        "each phase saw a checked login on each instance"
    );
    propagation.sort();
    eprintln!(
        "{SWAPS} swaps, {} logins ({checked} checked against their phase's mapper), none failed; \
         an activation seen on B and C after p50 {:?}, p99 {:?}, max {:?} (polling /healthz)",
        served.len(),
        percentile(&propagation, 50),
        percentile(&propagation, 99),
        propagation.last().expect("changes")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_on_one_instance_under_load_fails_only_its_logins_in_flight_and_once_restarted_it_serves_the_current_catalog()
 {
    let Some(fleet) = Fleet::new().await else {
        return;
    };
    let a = fleet.start("a");
    let mut b = fleet.start("b");
    let c = fleet.start("c");
    create_flip_connection(&a.origin, fleet.provider.origin()).await;
    let first = catalog_version(&a.origin).await.expect("A serves");
    for other in [&b, &c] {
        reaches(&other.origin, first, COMPILE_BOUND).await;
    }
    let load = Load::new(
        fleet.provider.origin(),
        vec![a.origin.clone(), b.origin.clone(), c.origin.clone()],
        Kind::Uuid,
    );
    let loops = load.run(LOOPS);
    load.covered().await;

    // B dies mid-load. The load balancer sends it nothing new from that
    // moment (as its health check would, a little later): what fails is
    // what was in flight on B when it died.
    let killed = b.origin.clone();
    load.set_live(vec![a.origin.clone(), c.origin.clone()]);
    b.kill();
    let after_kill = load.served.lock().unwrap_or_else(|p| p.into_inner()).len();
    // A and C keep serving, and take a change while B is down.
    load.changing();
    let mut versions = Versions(vec![(1, Kind::Uuid)]);
    versions.swap_to(&a.origin, Kind::Email, 2, 0).await;
    let version = catalog_version(&a.origin).await.expect("A serves");
    reaches(&c.origin, version, COMPILE_BOUND).await;
    load.settled(Kind::Email);
    load.covered().await;

    // B restarts on its data directory and serves the catalog as it is now.
    let b = fleet.start("b");
    assert_eq!(
        catalog_version(&b.origin).await,
        catalog_version(&a.origin).await,
        "B serves the current catalog as soon as it says it serves"
    );
    load.changing();
    load.set_live(vec![a.origin.clone(), b.origin.clone(), c.origin.clone()]);
    load.settled(Kind::Email);
    load.covered().await;
    let served = load.finish(loops).await;

    let failures: Vec<_> = served
        .iter()
        .filter_map(|s| s.result.as_ref().err())
        .collect();
    for failure in &failures {
        assert_eq!(
            failure.origin, killed,
            "only requests to the killed instance fail: {failure:?}"
        );
    }
    // Each loop has one request in flight at a time.
    assert!(
        failures.len() <= LOOPS,
        "only the logins in flight on B when it died fail: {failures:#?}"
    );
    let on_others_after = served[after_kill..]
        .iter()
        .filter(|s| s.result.is_ok())
        .count();
    assert!(on_others_after > 0, "A and C served logins after the kill");
    eprintln!(
        "kill -9: {} logins, {} failed (each on a request to the killed instance: {:?})",
        served.len(),
        failures.len(),
        failures.iter().map(|f| f.step).collect::<Vec<_>>()
    );
}
