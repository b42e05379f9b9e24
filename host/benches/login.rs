//! Full logins against the development provider on loopback:
//! `cargo bench -p waypass --bench login [-- --logins N --concurrency C --mode M]`.
//!
//! The broker runs as its own process (`waypass serve`), so its CPU time can
//! be read from `/proc`; the development provider and the clients (a browser
//! walk plus the app's code exchange, over keep-alive connections) run here.
//! Each login is `/authorize` → provider login form → `/login/callback`
//! (token exchange at the provider, the seed-port mapper calling the
//! provider's userinfo) → `/oauth/token`. Reports logins per second and the
//! broker's CPU-seconds per 1000 logins, for an RS256 app and an ES256 app.
//!
//! `--mode` chooses what is measured (issue #11 §8): `full` (the above),
//! `sso` (`/authorize` answered from the browser's session, then
//! `/oauth/token`: the provider is not involved), `refresh`
//! (`grant_type=refresh_token`, each rotating the token the last one
//! returned), or `all` (the default: the three in turn).

use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use waypass::dev_provider::{DEFAULT_PASSWORD, DEFAULT_USERNAME, DevProvider, login_request_id};

const SECRET: &str = "bench-app-secret";
const CALLBACK: &str = "http://app.bench/callback";
/// Every app uses PKCE (Waypass requires it by default): RFC 7636
/// Appendix B's verifier and challenge.
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

struct Args {
    logins: usize,
    concurrency: usize,
    mode: String,
}

/// What one measured operation is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    /// A whole login through the provider.
    Full,
    /// A login answered from the session: `/authorize` then `/oauth/token`.
    Sso,
    /// One refresh grant.
    Refresh,
}

impl Mode {
    fn noun(self) -> &'static str {
        match self {
            Mode::Full => "logins",
            Mode::Sso => "SSO logins",
            Mode::Refresh => "refresh grants",
        }
    }
}

fn args() -> Args {
    let mut a = Args {
        logins: 2000,
        concurrency: 8,
        mode: "all".into(),
    };
    let argv: Vec<String> = std::env::args().collect();
    for pair in argv.windows(2) {
        match pair[0].as_str() {
            "--logins" => a.logins = pair[1].parse().unwrap_or(a.logins),
            "--concurrency" => a.concurrency = pair[1].parse().unwrap_or(a.concurrency),
            "--mode" => a.mode = pair[1].clone(),
            _ => {}
        }
    }
    a
}

fn main() {
    let args = args();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio");
    rt.block_on(run(args));
}

async fn run(args: Args) {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let wasm = waypass::build::build_mapper(&repo.join("plugins/mappers/auth0-example"))
        .expect("mapper builds");
    let dir = tempfile::tempdir().expect("tempdir");

    // The broker's port must be known before it starts: the provider needs
    // the callback URL. Take a free one.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let issuer = format!("http://127.0.0.1:{port}");
    let provider = DevProvider::new()
        .with_client(
            "waypass",
            "provider-secret",
            format!("{issuer}/login/callback"),
        )
        .start(
            tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind"),
        );
    let origin = provider.origin().to_owned();
    let config = format!(
        r#"
issuer = "{issuer}"
listen = "127.0.0.1:{port}"
data_dir = "data"
[[mappers]]
name = "auth0-example"
path = {wasm:?}
[[clients]]
client_id = "app-rs256"
client_secret = "{SECRET}"
callbacks = ["{CALLBACK}"]
[[clients]]
client_id = "app-es256"
client_secret = "{SECRET}"
callbacks = ["{CALLBACK}"]
id_token_signed_response_alg = "ES256"
[[connections]]
name = "devprov"
enabled_clients = ["app-rs256", "app-es256"]
[connections.options]
authorizationURL = "{origin}/authorize"
tokenURL = "{origin}/token"
scope = "profile"
client_id = "waypass"
client_secret = "provider-secret"
pkce_enabled = true
mapper = "auth0-example"
mapper_settings = {{ userinfo_url = "{origin}/userinfo" }}
mapper_egress = {{ allow_private_networks = true }}
# Thousands of logins a second from one address: not an attack here.
[limits.rate]
enabled = false
"#,
        wasm = wasm.display().to_string()
    );
    std::fs::write(dir.path().join("waypass.toml"), config).expect("config");
    let mut broker = spawn_broker(&dir.path().join("waypass.toml"));
    let broker_pid = broker.id();

    println!(
        "waypass login benchmark: {} logins per app, concurrency {}, {} cores",
        args.logins,
        args.concurrency,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let issuer = Arc::new(issuer);
    let origin = Arc::new(origin);
    let modes: Vec<Mode> = match args.mode.as_str() {
        "full" => vec![Mode::Full],
        "sso" => vec![Mode::Sso],
        "refresh" => vec![Mode::Refresh],
        _ => vec![Mode::Full, Mode::Sso, Mode::Refresh],
    };
    // Warm-up: connections, caches, the mapper's pool slot.
    logins(
        &issuer,
        &origin,
        "app-rs256",
        200,
        args.concurrency,
        Mode::Full,
        None,
    )
    .await;
    for mode in modes {
        for client in ["app-rs256", "app-es256"] {
            let cpu: Arc<dyn Fn() -> f64 + Send + Sync> = Arc::new(move || cpu_seconds(broker_pid));
            let (done, wall, cpu) = logins(
                &issuer,
                &origin,
                client,
                args.logins,
                args.concurrency,
                mode,
                Some(cpu),
            )
            .await;
            let noun = mode.noun();
            println!(
                "{client}: {done} {noun}, {:.0}/s, broker {:.3} CPU-s per 1000 {noun}",
                done as f64 / wall.as_secs_f64(),
                cpu / done as f64 * 1000.0,
            );
        }
    }
    let _ = broker.kill();
    let _ = broker.wait();
}

fn spawn_broker(config: &Path) -> Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_waypass"))
        .args(["serve", "--config"])
        .arg(config)
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn waypass serve");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = std::io::BufReader::new(stderr).lines();
    loop {
        match lines.next() {
            Some(Ok(line)) if line.starts_with("waypass: serving") => break,
            Some(Ok(_)) => continue,
            _ => panic!("waypass serve did not start"),
        }
    }
    // Keep draining stderr so the broker never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    child
}

/// The process's user + system CPU time, from /proc (clock ticks of 10 ms).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc stat");
    // Fields after the command name (which is in parentheses).
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 =
        fields[11].parse::<f64>().unwrap_or(0.0) + fields[12].parse::<f64>().unwrap_or(0.0);
    ticks / 100.0
}

/// Runs `total` operations of `mode` rounded down to a multiple of
/// `concurrency` (each task does the same number); returns how many ran,
/// the wall time and the broker CPU-seconds (when `cpu` reads them) of the
/// measured part. Each task's setup (the login that gives it a session or
/// a refresh token) happens before the measurement starts.
async fn logins(
    issuer: &Arc<String>,
    origin: &Arc<String>,
    client: &str,
    total: usize,
    concurrency: usize,
    mode: Mode,
    cpu: Option<Arc<dyn Fn() -> f64 + Send + Sync>>,
) -> (usize, Duration, f64) {
    let per_task = total / concurrency;
    let ready = Arc::new(tokio::sync::Barrier::new(concurrency + 1));
    let go = Arc::new(tokio::sync::Barrier::new(concurrency + 1));
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (issuer, origin, client) = (issuer.clone(), origin.clone(), client.to_owned());
            let (ready, go) = (ready.clone(), go.clone());
            tokio::spawn(async move {
                let http = reqwest::ClientBuilder::new()
                    .redirect(reqwest::redirect::Policy::none())
                    .pool_idle_timeout(Duration::from_secs(60))
                    .build()
                    .expect("client");
                let scope = if mode == Mode::Refresh {
                    "openid%20email%20offline_access"
                } else {
                    "openid%20email"
                };
                let mut state = match mode {
                    Mode::Full => None,
                    Mode::Sso | Mode::Refresh => {
                        Some(one_login(&http, &issuer, &origin, &client, scope).await)
                    }
                };
                ready.wait().await;
                go.wait().await;
                for _ in 0..per_task {
                    match (mode, &mut state) {
                        (Mode::Sso, Some(login)) => {
                            sso_login(&http, &issuer, &client, &login.session).await;
                        }
                        (Mode::Refresh, Some(login)) => {
                            login.refresh_token =
                                refresh(&http, &issuer, &client, &login.refresh_token).await;
                        }
                        _ => {
                            one_login(&http, &issuer, &origin, &client, scope).await;
                        }
                    }
                }
            })
        })
        .collect();
    ready.wait().await;
    let cpu0 = cpu.as_ref().map_or(0.0, |read| read());
    let start = Instant::now();
    go.wait().await;
    for t in tasks {
        t.await.expect("login task");
    }
    let wall = start.elapsed();
    let cpu = cpu.as_ref().map_or(0.0, |read| read()) - cpu0;
    (per_task * concurrency, wall, cpu)
}

/// What a login leaves a task: the browser's session cookie and, when
/// `offline_access` was asked, the refresh token.
struct LoggedIn {
    session: String,
    refresh_token: String,
}

/// The token response of an exchange.
#[derive(serde::Deserialize)]
struct Tokens {
    #[serde(default)]
    refresh_token: Option<String>,
}

/// The `/authorize` URL of a login of `client` asking for `scope`.
fn authorize_url(issuer: &str, client: &str, scope: &str) -> String {
    format!(
        "{issuer}/authorize?response_type=code&client_id={client}&redirect_uri={}&scope={scope}&state=s&nonce=n&connection=devprov\
         &code_challenge={CHALLENGE}&code_challenge_method=S256",
        url::form_urlencoded::byte_serialize(CALLBACK.as_bytes()).collect::<String>()
    )
}

async fn one_login(
    http: &reqwest::Client,
    issuer: &str,
    origin: &str,
    client: &str,
    scope: &str,
) -> LoggedIn {
    let authorize = authorize_url(issuer, client, scope);
    let resp = http.get(&authorize).send().await.expect("authorize");
    assert_eq!(resp.status(), 302, "authorize");
    let cookie = resp
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|c| c.split(';').next())
        .expect("cookie")
        .to_owned();
    let to_provider = location(&resp);
    let form = http
        .get(&to_provider)
        .send()
        .await
        .expect("provider form")
        .text()
        .await
        .expect("form");
    let request = login_request_id(&form).expect("request id").to_owned();
    let resp = http
        .post(format!("{origin}/authorize"))
        .form(&[
            ("request", request.as_str()),
            ("username", DEFAULT_USERNAME),
            ("password", DEFAULT_PASSWORD),
            ("action", "login"),
        ])
        .send()
        .await
        .expect("provider login");
    let callback = location(&resp);
    let resp = http
        .get(&callback)
        .header("cookie", cookie)
        .send()
        .await
        .expect("callback");
    let session = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|c| c.split(';').next())
        .find(|c| c.starts_with("wp_session="))
        .expect("a session cookie")
        .to_owned();
    let tokens = redeem(http, issuer, client, &location(&resp)).await;
    LoggedIn {
        session,
        refresh_token: tokens.refresh_token.unwrap_or_default(),
    }
}

/// A login the browser's session answers: `/authorize` (no provider),
/// then the code exchange.
async fn sso_login(http: &reqwest::Client, issuer: &str, client: &str, session: &str) {
    let resp = http
        .get(authorize_url(issuer, client, "openid%20email"))
        .header("cookie", session)
        .send()
        .await
        .expect("authorize");
    assert_eq!(resp.status(), 302, "authorize");
    let back = location(&resp);
    assert!(
        back.starts_with(CALLBACK),
        "answered from the session: {back}"
    );
    redeem(http, issuer, client, &back).await;
}

/// One refresh grant; returns the rotated refresh token.
async fn refresh(http: &reqwest::Client, issuer: &str, client: &str, token: &str) -> String {
    let resp = http
        .post(format!("{issuer}/oauth/token"))
        .basic_auth(client, Some(SECRET))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", token)])
        .send()
        .await
        .expect("refresh");
    assert_eq!(resp.status(), 200, "refresh");
    let tokens: Tokens = resp.json().await.expect("token response");
    tokens.refresh_token.expect("a rotated refresh token")
}

/// Exchanges the code in `back` (the redirect to the app).
async fn redeem(http: &reqwest::Client, issuer: &str, client: &str, back: &str) -> Tokens {
    let code = url::Url::parse(back)
        .expect("app url")
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| panic!("no code: {back}"));
    let resp = http
        .post(format!("{issuer}/oauth/token"))
        .basic_auth(client, Some(SECRET))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", CALLBACK),
            ("code_verifier", VERIFIER),
        ])
        .send()
        .await
        .expect("token");
    assert_eq!(resp.status(), 200, "token");
    resp.json().await.expect("token response")
}

fn location(resp: &reqwest::Response) -> String {
    resp.headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("no location from {}", resp.url()))
        .to_owned()
}
