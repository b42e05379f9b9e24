//! Full logins against the development provider on loopback:
//! `cargo bench -p waypass --bench login [-- --logins N --concurrency C]
//! [--warmup N] [--store sqlite|postgres] [--workers N] [--callgrind]
//! [--propagation SWAPS]`.
//!
//! `--store postgres` runs the broker on a fresh PostgreSQL database (the
//! test server: `WAYPASS_TEST_DATABASE_URL`, else `scripts/ensure-postgres`)
//! and also reports the CPU of that database's server processes.
//! `--workers N` is passed to `waypass serve`. `--callgrind` runs the broker
//! under `valgrind --tool=callgrind` and reports instructions per login
//! (counters zeroed after the warm-up, dumped after the measured logins:
//! a figure that does not move with the machine's load). `--propagation
//! SWAPS` runs two brokers on one store and times mapper swaps made
//! through A until a login on B is served by the new version.
//!
//! The broker runs as its own process (`waypass serve`), so its CPU time can
//! be read from `/proc`; the development provider and the clients (a browser
//! walk plus the app's code exchange, over keep-alive connections) run here.
//! Each login is `/authorize` → provider login form → `/login/callback`
//! (token exchange at the provider, the seed-port mapper calling the
//! provider's userinfo) → `/oauth/token`. Reports logins per second and the
//! broker's CPU-seconds per 1000 logins, for an RS256 app and an ES256 app.

use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use waypass::dev_provider::{
    DEFAULT_PASSWORD, DEFAULT_USERNAME, DevProvider, default_user, login_request_id,
};

// The PostgreSQL helpers of the end-to-end tests (one source): which
// server, a fresh database per run, dropped at the end.
#[allow(dead_code, unused_imports)]
#[path = "../../tests/src/postgres.rs"]
mod postgres;

const SECRET: &str = "bench-app-secret";
const CALLBACK: &str = "http://app.bench/callback";
/// Every app uses PKCE (Waypass requires it by default): RFC 7636
/// Appendix B's verifier and challenge.
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

struct Args {
    logins: usize,
    concurrency: usize,
    /// Logins before the measured ones (connections, caches, pool slots).
    warmup: usize,
    store: StoreKind,
    workers: Option<usize>,
    callgrind: bool,
    /// `Some(swaps)`: the propagation mode.
    propagation: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StoreKind {
    Sqlite,
    Postgres,
}

fn args() -> Args {
    let mut a = Args {
        logins: 2000,
        concurrency: 8,
        warmup: 200,
        store: StoreKind::Sqlite,
        workers: None,
        callgrind: false,
        propagation: None,
    };
    let argv: Vec<String> = std::env::args().collect();
    for pair in argv.windows(2) {
        match pair[0].as_str() {
            "--logins" => a.logins = pair[1].parse().unwrap_or(a.logins),
            "--concurrency" => a.concurrency = pair[1].parse().unwrap_or(a.concurrency),
            "--store" => {
                a.store = match pair[1].as_str() {
                    "sqlite" => StoreKind::Sqlite,
                    "postgres" => StoreKind::Postgres,
                    other => panic!("--store {other}: sqlite or postgres"),
                }
            }
            "--workers" => a.workers = pair[1].parse().ok(),
            "--warmup" => a.warmup = pair[1].parse().unwrap_or(a.warmup),
            "--propagation" => a.propagation = pair[1].parse().ok(),
            _ => {}
        }
    }
    a.callgrind = argv.iter().any(|a| a == "--callgrind");
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
    if let Some(swaps) = args.propagation {
        return propagation(&args, swaps).await;
    }
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
    let database = database(args.store).await;
    let callgrind_dir = args
        .callgrind
        .then(|| tempfile::tempdir().expect("tempdir"));
    let mut broker = Running(spawn_broker(
        &dir.path().join("waypass.toml"),
        &Launch {
            database: database.as_ref().map(|d| d.url.expose().to_owned()),
            workers: args.workers,
            callgrind: callgrind_dir.as_ref().map(|d| d.path().to_owned()),
            ..Launch::default()
        },
    ));
    let broker = &mut broker.0;

    println!(
        "waypass login benchmark: {} logins per app, concurrency {}, {} cores, store {:?}, \
         workers {}, load average {}",
        args.logins,
        args.concurrency,
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        args.store,
        args.workers
            .map_or_else(|| "default".to_owned(), |w| w.to_string()),
        load_average(),
    );
    let issuer = Arc::new(issuer);
    let origin = Arc::new(origin);
    // Warm-up: connections, caches, the mapper's pool slot — and each
    // app's client secret, whose first check is an argon2id verification
    // (~50 ms, then remembered) that must not land in a measured phase.
    for client in ["app-rs256", "app-es256"] {
        logins(&issuer, &origin, client, args.warmup, args.concurrency).await;
    }
    if let Some(out) = &callgrind_dir {
        for client in ["app-rs256", "app-es256"] {
            callgrind_control("--zero", broker.id());
            let done = logins(&issuer, &origin, client, args.logins, args.concurrency).await;
            let instructions = callgrind_dump(out.path(), broker.id());
            println!(
                "{client}: {done} logins, broker {:.0} instructions per login (callgrind)",
                instructions as f64 / done as f64
            );
        }
        if let Ok(keep) = std::env::var("WAYPASS_BENCH_CALLGRIND_KEEP") {
            for entry in std::fs::read_dir(out.path())
                .expect("callgrind dir")
                .flatten()
            {
                let _ = std::fs::copy(entry.path(), Path::new(&keep).join(entry.file_name()));
            }
            println!("callgrind dumps copied to {keep}");
        }
    } else {
        let backends = match &database {
            Some(db) => database_backends(db).await,
            None => Vec::new(),
        };
        for client in ["app-rs256", "app-es256"] {
            let cpu0 = cpu_seconds(broker.id());
            let db0: f64 = backends.iter().map(|p| cpu_seconds(*p)).sum();
            let start = Instant::now();
            let done = logins(&issuer, &origin, client, args.logins, args.concurrency).await;
            let wall = start.elapsed();
            let cpu = cpu_seconds(broker.id()) - cpu0;
            let db = backends.iter().map(|p| cpu_seconds(*p)).sum::<f64>() - db0;
            println!(
                "{client}: {done} logins, {:.0} logins/s, broker {:.3} CPU-s per 1000 logins{}",
                done as f64 / wall.as_secs_f64(),
                cpu / done as f64 * 1000.0,
                if database.is_some() {
                    format!(
                        ", PostgreSQL backends ({}) {:.3} CPU-s per 1000 logins",
                        backends.len(),
                        db / done as f64 * 1000.0
                    )
                } else {
                    String::new()
                }
            );
        }
        println!("load average after: {}", load_average());
    }
    stop_broker(broker);
}

/// A fresh PostgreSQL database for `--store postgres`.
async fn database(store: StoreKind) -> Option<postgres::TestDatabase> {
    match store {
        StoreKind::Sqlite => None,
        StoreKind::Postgres => {
            let server = postgres::server().expect("--store postgres: no PostgreSQL server");
            Some(postgres::TestDatabase::create(&server).await)
        }
    }
}

/// The server processes holding connections to `db` (the broker's pool),
/// whose CPU time counts as the database's share of a login.
async fn database_backends(db: &postgres::TestDatabase) -> Vec<u32> {
    let client = db.client().await;
    let me = client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .expect("own pid")
        .get::<_, i32>(0);
    client
        .query(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> $1",
            &[&me],
        )
        .await
        .expect("pg_stat_activity")
        .iter()
        .filter_map(|row| u32::try_from(row.get::<_, i32>(0)).ok())
        .collect()
}

/// The 1-, 5- and 15-minute load averages: other engineers build on the
/// same two cores, and every figure is read beside them.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// `callgrind_control COMMAND PID` (it reaches a process blocked in a
/// system call too, through vgdb).
fn callgrind_control(command: &str, pid: u32) {
    let out = Command::new("callgrind_control")
        .arg(command)
        .arg(pid.to_string())
        .output()
        .expect("run callgrind_control");
    assert!(
        out.status.success(),
        "callgrind_control {command}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Dumps the counters since the last zeroing: the instructions executed by
/// every thread of the broker.
fn callgrind_dump(dir: &Path, pid: u32) -> u64 {
    let before: Vec<_> = std::fs::read_dir(dir)
        .expect("callgrind dir")
        .flatten()
        .map(|e| e.path())
        .collect();
    callgrind_control("--dump", pid);
    let dump = std::fs::read_dir(dir)
        .expect("callgrind dir")
        .flatten()
        .map(|e| e.path())
        .find(|p| !before.contains(p))
        .expect("a new dump");
    let text = std::fs::read_to_string(&dump).expect("read the dump");
    text.lines()
        .find_map(|l| {
            l.strip_prefix("summary: ")
                .or_else(|| l.strip_prefix("totals: "))
        })
        .and_then(|n| n.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no instruction total in {}", dump.display()))
}

/// How to start one broker process.
#[derive(Default)]
struct Launch {
    /// `WAYPASS_DATABASE_URL`.
    database: Option<String>,
    workers: Option<usize>,
    /// Run it under callgrind, writing its dumps here.
    callgrind: Option<std::path::PathBuf>,
    /// Other environment (`WAYPASS_LISTEN`, `WAYPASS_DATA_DIR`, the admin token).
    env: Vec<(&'static str, String)>,
}

fn spawn_broker(config: &Path, launch: &Launch) -> Child {
    let mut command = match &launch.callgrind {
        Some(dir) => {
            let mut c = Command::new("valgrind");
            c.arg("--tool=callgrind")
                .arg(format!(
                    "--callgrind-out-file={}/callgrind.out.%p",
                    dir.display()
                ))
                // Wasmtime writes the machine code it then runs.
                .arg("--smc-check=all-non-file")
                .arg(env!("CARGO_BIN_EXE_waypass"))
                .env(waypass::mapper::VALGRIND_ENV, "1");
            c
        }
        None => Command::new(env!("CARGO_BIN_EXE_waypass")),
    };
    command.args(["serve", "--config"]).arg(config);
    if let Some(workers) = launch.workers {
        command.args(["--workers", &workers.to_string()]);
    }
    if let Some(url) = &launch.database {
        command.env("WAYPASS_DATABASE_URL", url);
    }
    command.envs(launch.env.iter().map(|(k, v)| (k, v)));
    let mut child = command
        .stdout(Stdio::null())
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

/// A broker process, killed if the bench panics before it stops it.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// SIGTERM, so that a broker under callgrind writes its last dump, then
/// waits for it.
fn stop_broker(broker: &mut Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &broker.id().to_string()])
        .status();
    let _ = broker.wait();
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

/// Runs `total` logins rounded down to a multiple of `concurrency` (each task
/// does the same number); returns how many ran.
async fn logins(
    issuer: &Arc<String>,
    origin: &Arc<String>,
    client: &str,
    total: usize,
    concurrency: usize,
) -> usize {
    let per_task = total / concurrency;
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (issuer, origin, client) = (issuer.clone(), origin.clone(), client.to_owned());
            tokio::spawn(async move {
                let http = reqwest::ClientBuilder::new()
                    .redirect(reqwest::redirect::Policy::none())
                    .pool_idle_timeout(Duration::from_secs(60))
                    .build()
                    .expect("client");
                for _ in 0..per_task {
                    one_login(&http, &issuer, &origin, &client).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("login task");
    }
    per_task * concurrency
}

async fn one_login(http: &reqwest::Client, issuer: &str, origin: &str, client: &str) {
    let authorize = format!(
        "{issuer}/authorize?response_type=code&client_id={client}&redirect_uri={}&scope=openid%20email&state=s&nonce=n&connection=devprov\
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

// ---- --propagation: a change made through A, served by B ----

/// The management API's token in the propagation mode.
const ADMIN_TOKEN: &str = "bench-admin-token-0123456789abcdef";
/// The mapper the propagation mode swaps, and its connection.
const FLIP: &str = "flip";
/// Logins brought to the callback before each swap, sent to B after it.
const HELD: usize = 4;
/// How long a swap may take to reach B before the bench gives up.
const SWAP_PATIENCE: Duration = Duration::from_secs(30);

/// Two brokers, A and B, on one store (one PostgreSQL database, or one
/// SQLite file in a data directory both use). Mapper `flip` has two
/// versions that name the user differently (1: the seed port, by
/// `account.uuid`; 2: `declarative`, by `/account/email`). Each swap
/// activates the other version through A's API; from A's answer, logins
/// held at the provider's redirect are sent to B's callback one after the
/// other (more are brought there when they run out) until one is served by
/// the new version, which `/userinfo` on B tells afterwards. The time is
/// from A's answer to B's redirect to the app for that login.
async fn propagation(args: &Args, swaps: usize) {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let seed = waypass::build::build_mapper(&repo.join("plugins/mappers/auth0-example"))
        .expect("mapper builds");
    let declarative = waypass::build::build_mapper(&repo.join("plugins/mappers/declarative"))
        .expect("mapper builds");
    let dir = tempfile::tempdir().expect("tempdir");
    let free_port = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port()
    };
    let (port_a, port_b) = (free_port(), free_port());
    let issuer = format!("http://127.0.0.1:{port_a}");
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
    let config = dir.path().join("waypass.toml");
    std::fs::write(
        &config,
        format!(
            r#"
issuer = "{issuer}"
listen = "127.0.0.1:{port_a}"
data_dir = "data"
[[clients]]
client_id = "app-es256"
client_secret = "{SECRET}"
callbacks = ["{CALLBACK}"]
id_token_signed_response_alg = "ES256"
[limits.rate]
enabled = false
"#
        ),
    )
    .expect("config");
    let database = database(args.store).await;
    let launch = |name: &str, port: u16| Launch {
        database: database.as_ref().map(|d| d.url.expose().to_owned()),
        workers: args.workers,
        callgrind: None,
        env: vec![
            ("WAYPASS_LISTEN", format!("127.0.0.1:{port}")),
            ("WAYPASS_ADMIN_TOKEN", ADMIN_TOKEN.to_owned()),
            // SQLite: one file, both instances in one data directory;
            // PostgreSQL: a data directory (compiled mappers) each.
            (
                "WAYPASS_DATA_DIR",
                match args.store {
                    StoreKind::Sqlite => dir.path().join("data"),
                    StoreKind::Postgres => dir.path().join(name),
                }
                .display()
                .to_string(),
            ),
        ],
    };
    let mut a = Running(spawn_broker(&config, &launch("a", port_a)));
    let mut b = Running(spawn_broker(&config, &launch("b", port_b)));
    let (a_origin, b_origin) = (issuer.clone(), format!("http://127.0.0.1:{port_b}"));
    let http = reqwest::ClientBuilder::new()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");

    let put = |bytes: Vec<u8>| {
        http.put(format!("{a_origin}/api/v2/mappers/{FLIP}"))
            .bearer_auth(ADMIN_TOKEN)
            .header("content-type", "application/wasm")
            .body(bytes)
            .send()
    };
    for (path, version) in [(&seed, 1), (&declarative, 2)] {
        let resp = put(std::fs::read(path).expect("mapper"))
            .await
            .expect("push");
        assert_eq!(resp.status(), 201, "push version {version}");
    }
    let resp = http
        .post(format!("{a_origin}/api/v2/connections"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&serde_json::json!({
            "name": "devprov",
            "enabled_clients": ["app-es256"],
            "options": {
                "authorizationURL": format!("{origin}/authorize"),
                "tokenURL": format!("{origin}/token"),
                "client_id": "waypass",
                "client_secret": "provider-secret",
                "mapper": FLIP,
                "mapper_settings": {
                    "userinfo_url": format!("{origin}/userinfo"),
                    "user_id": "/account/email",
                },
                "mapper_egress": {"allow_private_networks": true},
            }
        }))
        .send()
        .await
        .expect("create the connection");
    assert_eq!(resp.status(), 201, "create the connection");

    // B serves the connection (it may take B a compile and a poll).
    let version = |origin: String| {
        let http = http.clone();
        async move {
            http.get(format!("{origin}/healthz"))
                .send()
                .await
                .ok()?
                .headers()
                .get("waypass-catalog-version")?
                .to_str()
                .ok()?
                .parse::<u64>()
                .ok()
        }
    };
    let created = version(a_origin.clone())
        .await
        .expect("A's catalog version");
    let waiting = Instant::now();
    while version(b_origin.clone()).await < Some(created) {
        assert!(
            waiting.elapsed() < SWAP_PATIENCE,
            "B never loads the connection"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Version 2 (by email) is active.
    let mut active_by_email = true;
    let mut held = Vec::new();
    let mut times = Vec::with_capacity(swaps);
    let mut stale = 0usize;
    // Warm-up, and B serves version 2 before the first swap.
    loop {
        let (callback, cookie) = hold(&http, &issuer, &b_origin, &origin).await;
        let code = deliver(&http, &callback, &cookie).await;
        if served_by_email(&http, &b_origin, &code).await == Some(true) {
            break;
        }
    }
    println!(
        "waypass propagation benchmark: {swaps} swaps through A, logins on B, store {:?}, \
         load average {}",
        args.store,
        load_average()
    );
    for _ in 0..swaps {
        while held.len() < HELD {
            held.push(hold(&http, &issuer, &b_origin, &origin).await);
        }
        let version = if active_by_email { 1 } else { 2 };
        let resp = http
            .post(format!(
                "{a_origin}/api/v2/mappers/{FLIP}/versions/{version}/activate"
            ))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("activate");
        let answered = Instant::now();
        assert_eq!(resp.status(), 200, "activate {version}");
        active_by_email = !active_by_email;
        loop {
            let (callback, cookie) = match held.pop() {
                Some(h) => h,
                None => hold(&http, &issuer, &b_origin, &origin).await,
            };
            let code = deliver(&http, &callback, &cookie).await;
            let served = answered.elapsed();
            let by = served_by_email(&http, &b_origin, &code)
                .await
                .expect("B serves the login");
            if by == active_by_email {
                times.push(served);
                break;
            }
            stale += 1;
            assert!(
                answered.elapsed() < SWAP_PATIENCE,
                "B still serves the old version {SWAP_PATIENCE:?} after the swap"
            );
        }
    }
    times.sort();
    let pct = |p: usize| times[(times.len() * p / 100).min(times.len() - 1)];
    println!(
        "swap on A -> first login on B served by the new version: p50 {:?}, p99 {:?}, max {:?}; \
         {stale} logins on B were served by the old version first; load average {}",
        pct(50),
        pct(99),
        times.last().expect("swaps"),
        load_average()
    );
    stop_broker(&mut a.0);
    stop_broker(&mut b.0);
}

/// A login brought to the point where the browser holds the provider's
/// redirect to the issuer's callback, rewritten to B: (URL, cookie).
/// `/authorize` runs on B.
async fn hold(http: &reqwest::Client, issuer: &str, b: &str, provider: &str) -> (String, String) {
    let authorize = format!(
        "{b}/authorize?response_type=code&client_id=app-es256&redirect_uri={}&scope=openid\
         &state=s&nonce=n&connection=devprov&code_challenge={CHALLENGE}\
         &code_challenge_method=S256",
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
    let form = http
        .get(location(&resp))
        .send()
        .await
        .expect("provider form")
        .text()
        .await
        .expect("form");
    let request = login_request_id(&form).expect("request id").to_owned();
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
        .expect("provider login");
    (location(&resp).replacen(issuer, b, 1), cookie)
}

/// Sends a held login's callback: the app's code.
async fn deliver(http: &reqwest::Client, callback: &str, cookie: &str) -> String {
    let resp = http
        .get(callback)
        .header("cookie", cookie)
        .send()
        .await
        .expect("callback");
    let back = location(&resp);
    url::Url::parse(&back)
        .expect("app url")
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| panic!("no code: {back}"))
}

/// Redeems `code` on B and asks B's `/userinfo` who logged in: whether
/// the `declarative` version (by email) served the login; `None` when the
/// user is neither.
async fn served_by_email(http: &reqwest::Client, b: &str, code: &str) -> Option<bool> {
    let resp = http
        .post(format!("{b}/oauth/token"))
        .basic_auth("app-es256", Some(SECRET))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", CALLBACK),
            ("code_verifier", VERIFIER),
        ])
        .send()
        .await
        .expect("token");
    assert_eq!(resp.status(), 200, "token");
    let tokens: serde_json::Value = resp.json().await.expect("tokens");
    let access = tokens["access_token"].as_str().expect("access token");
    let info: serde_json::Value = http
        .get(format!("{b}/userinfo"))
        .bearer_auth(access)
        .send()
        .await
        .expect("userinfo")
        .json()
        .await
        .expect("userinfo JSON");
    let sub = info["sub"].as_str()?;
    let user = default_user();
    if sub.ends_with(&format!("|{}", user.email)) {
        Some(true)
    } else if sub.ends_with(&format!("|{}", user.uuid)) {
        Some(false)
    } else {
        None
    }
}
