//! Full logins against the development provider on loopback:
//! `cargo bench -p waypass --bench login [-- --logins N --concurrency C
//! --profile rust|js|py|script|all --app rs256|es256]`.
//!
//! The broker runs as its own process (`waypass serve`), so its CPU time can
//! be read from `/proc`; the development provider and the clients (a browser
//! walk plus the app's code exchange, over keep-alive connections) run here.
//! Each login is `/authorize` → provider login form → `/login/callback`
//! (token exchange at the provider, the connection's profile code calling the
//! provider's userinfo) → `/oauth/token`. Reports logins per second and the
//! broker's CPU-seconds and minor page faults per 1000 logins, for an RS256
//! app and an ES256 app, then the broker's resident memory and its peak.
//!
//! `--profile` picks the connection's profile code: the seed's port as a
//! Rust (default), JavaScript or Python mapper, or the seed's script run by
//! the script engine; `all` makes one connection of each and spreads the
//! logins over them (for the memory with every kind loaded and serving).
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

struct Args {
    logins: usize,
    concurrency: usize,
    profiles: Vec<Profile>,
    apps: Vec<&'static str>,
}

fn args() -> Args {
    let mut a = Args {
        logins: 2000,
        concurrency: 8,
        profiles: vec![Profile::Rust],
        apps: vec!["app-rs256", "app-es256"],
    };
    let argv: Vec<String> = std::env::args().collect();
    for pair in argv.windows(2) {
        match pair[0].as_str() {
            "--logins" => a.logins = pair[1].parse().unwrap_or(a.logins),
            "--concurrency" => a.concurrency = pair[1].parse().unwrap_or(a.concurrency),
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
    println!(
        "waypass login benchmark: {} logins per app, concurrency {}, connection {}, {} cores",
        args.logins,
        args.concurrency,
        names.join(" + "),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let issuer = Arc::new(issuer);
    let origin = Arc::new(origin);
    let connections: Arc<Vec<String>> = Arc::new(names.iter().map(|n| n.to_string()).collect());
    // Warm-up: connections, caches, the mappers' pool slots.
    logins(
        &issuer,
        &origin,
        &connections,
        "app-rs256",
        200,
        args.concurrency,
    )
    .await;
    for client in &args.apps {
        let (cpu0, faults0) = cpu_seconds_and_faults(broker.id());
        let start = Instant::now();
        let done = logins(
            &issuer,
            &origin,
            &connections,
            client,
            args.logins,
            args.concurrency,
        )
        .await;
        let wall = start.elapsed();
        let (cpu1, faults1) = cpu_seconds_and_faults(broker.id());
        println!(
            "{client}: {done} logins, {:.0} logins/s, broker {:.3} CPU-s and {:.0} minor page faults per 1000 logins",
            done as f64 / wall.as_secs_f64(),
            (cpu1 - cpu0) / done as f64 * 1000.0,
            (faults1 - faults0) as f64 / done as f64 * 1000.0,
        );
    }
    let (rss, peak) = rss_mib(broker.id());
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

/// Runs `total` logins rounded down to a multiple of `concurrency` (each task
/// does the same number); returns how many ran.
/// Each login goes to the next of `connections` in turn.
async fn logins(
    issuer: &Arc<String>,
    origin: &Arc<String>,
    connections: &Arc<Vec<String>>,
    client: &str,
    total: usize,
    concurrency: usize,
) -> usize {
    let per_task = total / concurrency;
    let tasks: Vec<_> = (0..concurrency)
        .map(|task| {
            let (issuer, origin, client) = (issuer.clone(), origin.clone(), client.to_owned());
            let connections = connections.clone();
            tokio::spawn(async move {
                let http = reqwest::ClientBuilder::new()
                    .redirect(reqwest::redirect::Policy::none())
                    .pool_idle_timeout(Duration::from_secs(60))
                    .build()
                    .expect("client");
                for i in 0..per_task {
                    let connection = &connections[(task + i) % connections.len()];
                    one_login(&http, &issuer, &origin, &client, connection).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("login task");
    }
    per_task * concurrency
}

async fn one_login(
    http: &reqwest::Client,
    issuer: &str,
    origin: &str,
    client: &str,
    connection: &str,
) {
    let authorize = format!(
        "{issuer}/authorize?response_type=code&client_id={client}&redirect_uri={}&scope=openid%20email&state=s&nonce=n&connection={connection}\
         &code_challenge={CHALLENGE}&code_challenge_method=S256",
        url::form_urlencoded::byte_serialize(CALLBACK.as_bytes()).collect::<String>()
    );
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
    let back = location(&resp);
    let code = url::Url::parse(&back)
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
    let _ = resp.bytes().await;
}

fn location(resp: &reqwest::Response) -> String {
    resp.headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("no location from {}", resp.url()))
        .to_owned()
}
