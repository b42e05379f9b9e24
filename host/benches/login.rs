//! Logins against the development provider on loopback:
//! `cargo bench -p waypass --bench login [-- --logins N --concurrency C
//! --mode full|sso|refresh|all --profile rust|js|py|script|all
//! --app rs256|es256]`.
//!
//! The broker runs as its own process (`waypass serve`), so its CPU time can
//! be read from `/proc`; the development provider and the clients (a browser
//! walk plus the app's code exchange, over keep-alive connections) run here.
//! For each mode and each app (an RS256 app and an ES256 app, or the one
//! `--app` names) it reports operations per second and the broker's
//! CPU-seconds and minor page faults per 1000 operations, then the broker's
//! resident memory and its peak.
//!
//! `--mode` chooses what is measured (issue #11 §8): `full` (the default: a
//! whole login, `/authorize` → provider login form → `/login/callback`, with
//! the token exchange at the provider and the connection's profile code
//! calling the provider's userinfo, → `/oauth/token`), `sso` (`/authorize`
//! answered from the browser's session, then `/oauth/token`: the provider
//! is not involved), `refresh` (`grant_type=refresh_token`, each rotating
//! the token the last one returned), or `all` (the three in turn). For `sso`
//! and `refresh` each client first logs in once through the provider, before
//! the measurement starts.
//!
//! `--profile` picks the connection's profile code: the seed's port as a
//! Rust (default), JavaScript or Python mapper, or the seed's script run by
//! the script engine; `all` makes one connection of each and spreads the
//! clients over them (for the memory with every kind loaded and serving).
//! The broker is started once to compile what it runs, then restarted on
//! the same data directory, so the figures are those of a broker serving
//! from its artifact cache, as after any restart.

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

/// The seed's script (Auth0's documentation example), as the issue's
/// figures ran it; its URL is pointed at the development provider.
const SEED_SCRIPT: &str = include_str!("../../examples/scripts/auth0-doc-example.js");
const SEED_SCRIPT_URL: &str = "https://auth.example.com/userinfo";

/// What a connection gets profiles from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Profile {
    Rust,
    Js,
    Py,
    Script,
}

impl Profile {
    fn parse(s: &str) -> Option<Vec<Profile>> {
        Some(match s {
            "rust" => vec![Profile::Rust],
            "js" => vec![Profile::Js],
            "py" => vec![Profile::Py],
            "script" => vec![Profile::Script],
            "all" => vec![Profile::Rust, Profile::Js, Profile::Py, Profile::Script],
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Profile::Rust => "rust",
            Profile::Js => "js",
            Profile::Py => "py",
            Profile::Script => "script",
        }
    }

    /// The mapper's source directory under `plugins/mappers`.
    fn mapper_dir(self) -> Option<&'static str> {
        match self {
            Profile::Rust => Some("auth0-example"),
            Profile::Js => Some("auth0-example-js"),
            Profile::Py => Some("auth0-example-py"),
            Profile::Script => None,
        }
    }
}

/// What one measured operation is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// A whole login through the provider.
    Full,
    /// A login answered from the session: `/authorize` then `/oauth/token`.
    Sso,
    /// One refresh grant.
    Refresh,
}

impl Mode {
    fn parse(s: &str) -> Option<Vec<Mode>> {
        Some(match s {
            "full" => vec![Mode::Full],
            "sso" => vec![Mode::Sso],
            "refresh" => vec![Mode::Refresh],
            "all" => vec![Mode::Full, Mode::Sso, Mode::Refresh],
            _ => return None,
        })
    }

    fn noun(self) -> &'static str {
        match self {
            Mode::Full => "logins",
            Mode::Sso => "SSO logins",
            Mode::Refresh => "refresh grants",
        }
    }

    /// The scope of the login a task starts with: a refresh token needs
    /// `offline_access` (OIDC Core §11).
    fn scope(self) -> &'static str {
        match self {
            Mode::Refresh => "openid%20email%20offline_access",
            Mode::Full | Mode::Sso => "openid%20email",
        }
    }
}

struct Args {
    logins: usize,
    concurrency: usize,
    modes: Vec<Mode>,
    profiles: Vec<Profile>,
    apps: Vec<&'static str>,
}

fn args() -> Args {
    let mut a = Args {
        logins: 2000,
        concurrency: 8,
        modes: vec![Mode::Full],
        profiles: vec![Profile::Rust],
        apps: vec!["app-rs256", "app-es256"],
    };
    let argv: Vec<String> = std::env::args().collect();
    for pair in argv.windows(2) {
        match pair[0].as_str() {
            "--logins" => a.logins = pair[1].parse().unwrap_or(a.logins),
            "--concurrency" => a.concurrency = pair[1].parse().unwrap_or(a.concurrency),
            "--mode" => {
                a.modes = Mode::parse(&pair[1])
                    .unwrap_or_else(|| panic!("--mode full|sso|refresh|all, not {}", pair[1]))
            }
            "--profile" => {
                a.profiles = Profile::parse(&pair[1])
                    .unwrap_or_else(|| panic!("--profile rust|js|py|script|all, not {}", pair[1]))
            }
            "--app" => {
                a.apps = match pair[1].as_str() {
                    "rs256" => vec!["app-rs256"],
                    "es256" => vec!["app-es256"],
                    other => panic!("--app rs256|es256, not {other}"),
                }
            }
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
    let mut mappers = String::new();
    let mut connections = String::new();
    for profile in &args.profiles {
        let name = profile.name();
        let source = match profile.mapper_dir() {
            Some(dir) => {
                let wasm = waypass::build::build_mapper(&repo.join("plugins/mappers").join(dir))
                    .expect("mapper builds");
                mappers.push_str(&format!(
                    "[[mappers]]\nname = \"{dir}\"\npath = {:?}\n",
                    wasm.display().to_string()
                ));
                format!(
                    "mapper = \"{dir}\"\nmapper_settings = {{ userinfo_url = \"{origin}/userinfo\" }}\n"
                )
            }
            None => format!(
                "[connections.options.scripts]\nfetchUserProfile = '''\n{}'''\n",
                SEED_SCRIPT.replace(SEED_SCRIPT_URL, &format!("{origin}/userinfo"))
            ),
        };
        connections.push_str(&format!(
            r#"
[[connections]]
name = "{name}"
enabled_clients = ["app-rs256", "app-es256"]
[connections.options]
authorizationURL = "{origin}/authorize"
tokenURL = "{origin}/token"
scope = "profile"
client_id = "waypass"
client_secret = "provider-secret"
pkce_enabled = true
mapper_egress = {{ allow_private_networks = true }}
{source}"#
        ));
    }
    let config = format!(
        r#"
issuer = "{issuer}"
listen = "127.0.0.1:{port}"
data_dir = "data"
{mappers}
[[clients]]
client_id = "app-rs256"
client_secret = "{SECRET}"
callbacks = ["{CALLBACK}"]
[[clients]]
client_id = "app-es256"
client_secret = "{SECRET}"
callbacks = ["{CALLBACK}"]
id_token_signed_response_alg = "ES256"
{connections}
# Thousands of logins a second from one address: not an attack here.
[limits.rate]
enabled = false
"#
    );
    let config_path = dir.path().join("waypass.toml");
    std::fs::write(&config_path, config).expect("config");
    // The first start compiles into the artifact cache; measure the second.
    let mut broker = spawn_broker(&config_path);
    let _ = broker.kill();
    let _ = broker.wait();
    let mut broker = spawn_broker(&config_path);

    let names: Vec<&str> = args.profiles.iter().map(|p| p.name()).collect();
    let modes: Vec<&str> = args.modes.iter().map(|m| m.noun()).collect();
    println!(
        "waypass login benchmark: {} per app and mode ({}), concurrency {}, connection {}, {} cores",
        args.logins,
        modes.join(", "),
        args.concurrency,
        names.join(" + "),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let target = Arc::new(Target {
        issuer,
        origin,
        connections: names.iter().map(|n| n.to_string()).collect(),
    });
    // Warm-up: connections, caches, the mappers' pool slots.
    logins(
        &target,
        "app-rs256",
        200,
        args.concurrency,
        Mode::Full,
        None,
    )
    .await;
    let broker_pid = broker.id();
    let usage = move || cpu_seconds_and_faults(broker_pid);
    for &mode in &args.modes {
        for client in &args.apps {
            let measured = logins(
                &target,
                client,
                args.logins,
                args.concurrency,
                mode,
                Some(&usage),
            )
            .await;
            let (done, noun) = (measured.done as f64, mode.noun());
            println!(
                "{client}: {} {noun}, {:.0} {noun}/s, broker {:.3} CPU-s and {:.0} minor page faults per 1000 {noun}",
                measured.done,
                done / measured.wall.as_secs_f64(),
                measured.cpu_seconds / done * 1000.0,
                measured.minor_faults as f64 / done * 1000.0,
            );
        }
    }
    let (rss, peak) = rss_mib(broker_pid);
    println!("broker memory: {rss:.0} MiB resident, {peak:.0} MiB at peak");
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

/// The process's user + system CPU time (clock ticks of 10 ms) and minor
/// page faults, from /proc.
fn cpu_seconds_and_faults(pid: u32) -> (f64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc stat");
    // Fields after the command name (which is in parentheses): minflt [7],
    // utime [11], stime [12].
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 =
        fields[11].parse::<f64>().unwrap_or(0.0) + fields[12].parse::<f64>().unwrap_or(0.0);
    (ticks / 100.0, fields[7].parse().unwrap_or(0))
}

/// The process's resident memory and its peak, in MiB (`VmRSS`, `VmHWM`).
fn rss_mib(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let mib = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .map_or(0.0, |kib| kib / 1024.0)
    };
    (mib("VmRSS:"), mib("VmHWM:"))
}

/// What one run of [`logins`] did: how many operations, in how long, and
/// the broker's CPU-seconds and minor page faults over them (zero when not
/// read).
struct Measured {
    done: usize,
    wall: Duration,
    cpu_seconds: f64,
    minor_faults: u64,
}

/// What the clients talk to: the broker, the development provider, and the
/// broker's connections (one per `--profile`).
struct Target {
    issuer: String,
    origin: String,
    connections: Vec<String>,
}

/// Runs `total` operations of `mode` rounded down to a multiple of
/// `concurrency` (each task does the same number). Task `t` logs in through
/// `target.connections[t % len]` (a full login's next ones take the next connection
/// in turn). Each task's setup (the login that gives it a session or a
/// refresh token) happens before the measurement starts: every task waits
/// at a barrier after it, `usage` (the broker's CPU-seconds and minor page
/// faults) is read, and a second barrier lets them all go.
async fn logins(
    target: &Arc<Target>,
    client: &str,
    total: usize,
    concurrency: usize,
    mode: Mode,
    usage: Option<&(dyn Fn() -> (f64, u64) + Sync)>,
) -> Measured {
    let per_task = total / concurrency;
    let ready = Arc::new(tokio::sync::Barrier::new(concurrency + 1));
    let go = Arc::new(tokio::sync::Barrier::new(concurrency + 1));
    let tasks: Vec<_> = (0..concurrency)
        .map(|task| {
            let (target, client) = (target.clone(), client.to_owned());
            let (ready, go) = (ready.clone(), go.clone());
            tokio::spawn(async move {
                let http = reqwest::ClientBuilder::new()
                    .redirect(reqwest::redirect::Policy::none())
                    .pool_idle_timeout(Duration::from_secs(60))
                    .build()
                    .expect("client");
                let Target {
                    issuer,
                    origin,
                    connections,
                } = &*target;
                let connection = |i: usize| connections[(task + i) % connections.len()].as_str();
                let mut state = match mode {
                    Mode::Full => None,
                    Mode::Sso | Mode::Refresh => Some(
                        one_login(&http, issuer, origin, &client, connection(0), mode.scope())
                            .await,
                    ),
                };
                ready.wait().await;
                go.wait().await;
                for i in 0..per_task {
                    match (mode, &mut state) {
                        (Mode::Sso, Some(login)) => {
                            sso_login(&http, issuer, &client, connection(0), &login.session).await;
                        }
                        (Mode::Refresh, Some(login)) => {
                            login.refresh_token =
                                refresh(&http, issuer, &client, &login.refresh_token).await;
                        }
                        _ => {
                            one_login(&http, issuer, origin, &client, connection(i), mode.scope())
                                .await;
                        }
                    }
                }
            })
        })
        .collect();
    ready.wait().await;
    let (cpu0, faults0) = usage.map_or((0.0, 0), |read| read());
    let start = Instant::now();
    go.wait().await;
    for t in tasks {
        t.await.expect("login task");
    }
    let wall = start.elapsed();
    let (cpu1, faults1) = usage.map_or((0.0, 0), |read| read());
    Measured {
        done: per_task * concurrency,
        wall,
        cpu_seconds: cpu1 - cpu0,
        minor_faults: faults1.saturating_sub(faults0),
    }
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

/// The `/authorize` URL of a login of `client` through `connection` asking
/// for `scope`.
fn authorize_url(issuer: &str, client: &str, connection: &str, scope: &str) -> String {
    format!(
        "{issuer}/authorize?response_type=code&client_id={client}&redirect_uri={}&scope={scope}&state=s&nonce=n&connection={connection}\
         &code_challenge={CHALLENGE}&code_challenge_method=S256",
        url::form_urlencoded::byte_serialize(CALLBACK.as_bytes()).collect::<String>()
    )
}

async fn one_login(
    http: &reqwest::Client,
    issuer: &str,
    origin: &str,
    client: &str,
    connection: &str,
    scope: &str,
) -> LoggedIn {
    let authorize = authorize_url(issuer, client, connection, scope);
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
async fn sso_login(
    http: &reqwest::Client,
    issuer: &str,
    client: &str,
    connection: &str,
    session: &str,
) {
    let resp = http
        .get(authorize_url(issuer, client, connection, Mode::Sso.scope()))
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
