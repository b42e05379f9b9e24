//! Logins against the development provider on loopback:
//! `cargo bench -p waypass --bench login [-- --logins N --concurrency C
//! --warmup N --mode full|sso|refresh|all --profile rust|js|py|script|all
//! --app rs256|es256 --store sqlite|postgres --workers N --callgrind
//! --without metrics|events|metrics,events --syscalls --propagation SWAPS]`. Every flag combines with the others, except that
//! `--propagation` is a measurement of its own (below).
//!
//! The broker runs as its own process (`waypass serve`), so its CPU time can
//! be read from `/proc`; the development provider and the clients (a browser
//! walk plus the app's code exchange, over keep-alive connections) run here.
//! For each mode and each app (an RS256 app and an ES256 app, or the one
//! `--app` names) it reports operations per second and the broker's
//! CPU-seconds (and the system part of them: the kernel's work for its
//! sockets, files and threads) and minor page faults per 1000 operations,
//! then the broker's
//! resident memory and its peak. The machine's load average is printed with
//! the figures: other work on the same cores moves them.
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
//! the same data directory (and database), so the figures are those of a
//! broker serving from its artifact cache, as after any restart.
//!
//! `--warmup N` (default 200) full logins of EACH measured app precede the
//! measurements: connections, caches, the mappers' pool slots, and each
//! app's client secret, whose first check is an argon2id verification
//! (~50 ms, then remembered) that must not land in a measured phase.
//!
//! `--store postgres` runs the broker on a fresh PostgreSQL database (the
//! test server: `WAYPASS_TEST_DATABASE_URL`, else `scripts/ensure-postgres`;
//! dropped at the end) and also reports the CPU of that database's server
//! processes per 1000 operations; `sqlite` (the default) is the data
//! directory's file. `--workers N` is passed to `waypass serve`.
//!
//! `--callgrind` runs the measured broker under `valgrind --tool=callgrind`
//! (with `WAYPASS_UNDER_VALGRIND=1`) and reports, for each mode and app,
//! instructions per operation instead of times: counters zeroed once the
//! warm-up and the mode's setup logins are done, dumped after the measured
//! operations (a figure that does not move with the machine's load). With
//! `WAYPASS_BENCH_CALLGRIND_KEEP=DIR` the dumps are copied to `DIR`.
//!
//! `--syscalls` also counts the broker's system calls (every thread's) over
//! each measured phase with `perf stat -e raw_syscalls:sys_enter,…`
//! (attached to the broker, its counters enabled and disabled through a
//! control FIFO at the phase's start and end), and reports them per
//! operation: the total, the calls that dominate by name, and context
//! switches. Counts move a little with scheduling (futex wake-ups, epoll
//! waits), far less than CPU-seconds do.
//!
//! `--without metrics,events` starts the measured broker with metrics, log
//! events or both off (`WAYPASS_BENCH_WITHOUT`, a benchmark's baseline): run
//! with and without to measure what they cost per login (issue #14 §6).
//!
//! `--propagation SWAPS` runs two brokers, A and B, on one store (`--store`,
//! `--workers` apply; `--mode`, `--profile`, `--app` and `--callgrind` do
//! not) and times mapper swaps made through A's management API until a
//! login on B is served by the new version: p50, p99 and the maximum.

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

mod common;
use common::{callgrind_control, callgrind_dump, cpu_seconds_and_faults, load_average};

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

    /// One operation, for per-operation figures.
    fn one(self) -> &'static str {
        match self {
            Mode::Full => "login",
            Mode::Sso => "SSO login",
            Mode::Refresh => "refresh grant",
        }
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

/// Where the broker keeps its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StoreKind {
    Sqlite,
    Postgres,
}

struct Args {
    logins: usize,
    concurrency: usize,
    /// Full logins of each app before the measured ones.
    warmup: usize,
    modes: Vec<Mode>,
    profiles: Vec<Profile>,
    apps: Vec<&'static str>,
    store: StoreKind,
    workers: Option<usize>,
    callgrind: bool,
    /// Count the broker's system calls over each phase (`perf stat`).
    syscalls: bool,
    /// `WAYPASS_BENCH_WITHOUT` for the measured broker (`metrics`, `events`).
    without: Option<String>,
    /// `Some(swaps)`: the propagation measurement.
    propagation: Option<usize>,
}

fn args() -> Args {
    let mut a = Args {
        logins: 2000,
        concurrency: 8,
        warmup: 200,
        modes: vec![Mode::Full],
        profiles: vec![Profile::Rust],
        apps: vec!["app-rs256", "app-es256"],
        store: StoreKind::Sqlite,
        workers: None,
        callgrind: false,
        syscalls: false,
        without: None,
        propagation: None,
    };
    let argv: Vec<String> = std::env::args().collect();
    for pair in argv.windows(2) {
        match pair[0].as_str() {
            "--logins" => a.logins = pair[1].parse().unwrap_or(a.logins),
            "--concurrency" => a.concurrency = pair[1].parse().unwrap_or(a.concurrency),
            "--warmup" => a.warmup = pair[1].parse().unwrap_or(a.warmup),
            "--store" => {
                a.store = match pair[1].as_str() {
                    "sqlite" => StoreKind::Sqlite,
                    "postgres" => StoreKind::Postgres,
                    other => panic!("--store sqlite|postgres, not {other}"),
                }
            }
            "--workers" => a.workers = pair[1].parse().ok(),
            "--propagation" => a.propagation = pair[1].parse().ok(),
            "--without" => a.without = Some(pair[1].clone()),
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
    a.callgrind = argv.iter().any(|a| a == "--callgrind");
    a.syscalls = argv.iter().any(|a| a == "--syscalls");
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
    let database = database(args.store).await;
    let callgrind_dir = args
        .callgrind
        .then(|| tempfile::tempdir().expect("tempdir"));
    let launch = Launch {
        database: database.as_ref().map(|d| d.url.expose().to_owned()),
        workers: args.workers,
        env: args
            .without
            .iter()
            .map(|w| ("WAYPASS_BENCH_WITHOUT", w.clone()))
            .collect(),
        ..Launch::default()
    };
    // The first start compiles into the artifact cache; measure the second.
    // Under callgrind the engine is configured for valgrind, which changes
    // the artifacts: the first start (at native speed) uses that engine too,
    // or the measured broker would compile every component under valgrind.
    let mut first_env = launch.env.clone();
    if args.callgrind {
        first_env.push((waypass::mapper::VALGRIND_ENV, "1".to_owned()));
    }
    let first = Launch {
        database: launch.database.clone(),
        workers: launch.workers,
        callgrind: None,
        env: first_env,
    };
    stop_broker(&mut Running(spawn_broker(&config_path, &first)).0);
    let mut broker = Running(spawn_broker(
        &config_path,
        &Launch {
            callgrind: callgrind_dir.as_ref().map(|d| d.path().to_owned()),
            ..launch
        },
    ));
    let broker = &mut broker.0;

    let names: Vec<&str> = args.profiles.iter().map(|p| p.name()).collect();
    let modes: Vec<&str> = args.modes.iter().map(|m| m.noun()).collect();
    println!(
        "waypass login benchmark: {} per app and mode ({}), concurrency {}, connection {}, \
         {} cores, store {:?}, workers {}{}{}, load average {}",
        args.logins,
        modes.join(", "),
        args.concurrency,
        names.join(" + "),
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        args.store,
        args.workers
            .map_or_else(|| "default".to_owned(), |w| w.to_string()),
        if args.callgrind {
            ", under callgrind"
        } else {
            ""
        },
        args.without
            .as_ref()
            .map_or_else(String::new, |w| format!(", without {w}")),
        load_average(),
    );
    let target = Arc::new(Target {
        issuer,
        origin,
        connections: names.iter().map(|n| n.to_string()).collect(),
    });
    // Warm-up: connections, caches, the mappers' pool slots — and each
    // app's client secret, whose first check is an argon2id verification
    // (~50 ms, then remembered) that must not land in a measured phase.
    for client in &args.apps {
        logins(
            &target,
            client,
            args.warmup,
            args.concurrency,
            Mode::Full,
            None,
            None,
        )
        .await;
    }
    // The database's server processes: the broker's pool, open by now.
    let backends = match &database {
        Some(db) => database_backends(db).await,
        None => Vec::new(),
    };
    let probe = match &callgrind_dir {
        Some(out) => Probe::Callgrind {
            broker: broker.id(),
            dir: out.path(),
        },
        None => Probe::Proc {
            broker: broker.id(),
            backends: &backends,
        },
    };
    let syscall_dir = args.syscalls.then(|| tempfile::tempdir().expect("tempdir"));
    for &mode in &args.modes {
        for client in &args.apps {
            let counter = syscall_dir
                .as_ref()
                .map(|dir| SyscallCounter::attach(broker.id(), dir.path()));
            let measured = logins(
                &target,
                client,
                args.logins,
                args.concurrency,
                mode,
                Some(&probe),
                counter.as_ref(),
            )
            .await;
            let (done, noun) = (measured.done as f64, mode.noun());
            if let Some(counter) = counter {
                let counts = counter.finish();
                let per = |n: u64| n as f64 / done;
                let by_name: Vec<String> = counts
                    .iter()
                    .filter(|(name, _)| name != "all" && name != "context-switches")
                    .map(|(name, n)| format!("{name} {:.1}", per(*n)))
                    .collect();
                let count = |key: &str| counts.iter().find(|(n, _)| n == key).map_or(0, |c| c.1);
                println!(
                    "{client}: broker system calls per {}: {:.1} ({}), context switches {:.1} (perf stat)",
                    mode.one(),
                    per(count("all")),
                    by_name.join(", "),
                    per(count("context-switches")),
                );
            }
            let used = &measured.used;
            if args.callgrind {
                println!(
                    "{client}: {} {noun}, broker {:.0} instructions per {} (callgrind)",
                    measured.done,
                    used.instructions as f64 / done,
                    mode.one(),
                );
                continue;
            }
            let database_cpu = if database.is_some() {
                format!(
                    ", PostgreSQL backends ({}) {:.3} CPU-s per 1000 {noun}",
                    backends.len(),
                    used.database_cpu_seconds / done * 1000.0
                )
            } else {
                String::new()
            };
            println!(
                "{client}: {} {noun}, {:.0} {noun}/s, broker {:.3} CPU-s ({:.3} system) and {:.0} minor page faults per 1000 {noun}{database_cpu}",
                measured.done,
                done / measured.wall.as_secs_f64(),
                used.cpu_seconds / done * 1000.0,
                used.system_seconds / done * 1000.0,
                used.minor_faults as f64 / done * 1000.0,
            );
        }
    }
    if let Some(out) = &callgrind_dir {
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
        let (rss, peak) = rss_mib(broker.id());
        println!("broker memory: {rss:.0} MiB resident, {peak:.0} MiB at peak");
    }
    println!("load average after: {}", load_average());
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
/// whose CPU time counts as the database's share of an operation.
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

/// The secrets key of brokers on PostgreSQL: 32 bytes, base64.
const BENCH_SECRETS_KEY: &str = "YmVuY2gtc2VjcmV0cy1rZXktMDEyMzQ1Njc4OWFiY2Q=";

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
        // Instances on one PostgreSQL must be given the key they seal
        // secrets with (they refuse to generate one each).
        command
            .env("WAYPASS_DATABASE_URL", url)
            .env("WAYPASS_SECRETS_KEY", BENCH_SECRETS_KEY);
    }
    command.envs(launch.env.iter().map(|(k, v)| (k, v)));
    let mut child = command
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn waypass serve");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = std::io::BufReader::new(stderr).lines();
    // What it printed before it stopped is why it did not start.
    let mut said = Vec::new();
    loop {
        match lines.next() {
            Some(Ok(line)) if line.starts_with("waypass: serving") => break,
            Some(Ok(line)) => said.push(line),
            _ => panic!("waypass serve did not start:\n{}", said.join("\n")),
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

/// SIGTERM, so that a broker under callgrind writes its last dump (and any
/// broker closes its store), then waits for it.
fn stop_broker(broker: &mut Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &broker.id().to_string()])
        .status();
    let _ = broker.wait();
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

/// What is read of the broker around a measured phase.
enum Probe<'a> {
    /// Its CPU time and minor page faults, and the CPU time of the
    /// database's server processes, from `/proc`.
    Proc { broker: u32, backends: &'a [u32] },
    /// Its callgrind counters: zeroed at the start, dumped (into `dir`) at
    /// the end.
    Callgrind { broker: u32, dir: &'a Path },
}

/// The system calls counted by `--syscalls`, each by name; the rest are in
/// the total only.
const SYSCALLS_BY_NAME: &[&str] = &[
    "futex",
    "epoll_wait",
    "read",
    "write",
    "writev",
    "recvfrom",
    "sendto",
    "pread64",
    "pwrite64",
    "fdatasync",
    "fsync",
    "fcntl",
    "lseek",
    "madvise",
    "mmap",
    "munmap",
    "mprotect",
    "sched_yield",
];

/// `perf stat` attached to the broker, its counters off until
/// [`SyscallCounter::control`] turns them on: through a control FIFO that
/// perf acknowledges, so the counted span is exactly the measured phase.
struct SyscallCounter {
    perf: std::sync::Mutex<(Child, std::fs::File, std::io::BufReader<std::fs::File>)>,
    out: std::path::PathBuf,
}

impl SyscallCounter {
    fn attach(pid: u32, dir: &Path) -> Self {
        let (ctl, ack, out) = (dir.join("ctl"), dir.join("ack"), dir.join("perf.csv"));
        for fifo in [&ctl, &ack] {
            let _ = std::fs::remove_file(fifo);
            let made = Command::new("mkfifo").arg(fifo).status().expect("mkfifo");
            assert!(made.success(), "mkfifo {}", fifo.display());
        }
        let mut events = vec![
            "raw_syscalls:sys_enter".to_owned(),
            "context-switches".to_owned(),
        ];
        events.extend(
            SYSCALLS_BY_NAME
                .iter()
                .map(|n| format!("syscalls:sys_enter_{n}")),
        );
        let child = Command::new("perf")
            .args(["stat", "-x", ",", "-D", "-1", "-o"])
            .arg(&out)
            .arg("--control")
            .arg(format!("fifo:{},{}", ctl.display(), ack.display()))
            .args(["-e", &events.join(","), "-p", &pid.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run perf stat (--syscalls needs perf)");
        // perf opens the control FIFO, then the acknowledgement one.
        let ctl = std::fs::OpenOptions::new()
            .write(true)
            .open(&ctl)
            .expect("perf's control fifo");
        let ack = std::io::BufReader::new(std::fs::File::open(&ack).expect("perf's ack fifo"));
        Self {
            perf: std::sync::Mutex::new((child, ctl, ack)),
            out,
        }
    }

    /// Sends `enable` or `disable` and waits for perf's acknowledgement.
    fn control(&self, command: &str) {
        use std::io::Write;
        let mut perf = self.perf.lock().expect("perf");
        let (_, ctl, ack) = &mut *perf;
        writeln!(ctl, "{command}").expect("perf control");
        let mut line = String::new();
        ack.read_line(&mut line).expect("perf ack");
        assert_eq!(
            line.trim_matches(|c: char| c == '\n' || c == '\0'),
            "ack",
            "perf answered {line:?}"
        );
    }

    /// Stops perf and reads its counts: `("all", total)`,
    /// `("context-switches", n)` and each of [`SYSCALLS_BY_NAME`].
    fn finish(self) -> Vec<(String, u64)> {
        let (mut child, ctl, ack) = self.perf.into_inner().expect("perf");
        drop((ctl, ack));
        let _ = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status();
        let _ = child.wait();
        let text = std::fs::read_to_string(&self.out).expect("perf stat output");
        text.lines()
            .filter_map(|line| {
                let fields: Vec<&str> = line.split(',').collect();
                let event = *fields.get(2)?;
                let name = match event {
                    "raw_syscalls:sys_enter" => "all",
                    "context-switches" => "context-switches",
                    other => other.strip_prefix("syscalls:sys_enter_")?,
                };
                // `<not counted>` (no call at all) is zero.
                Some((name.to_owned(), fields[0].parse().unwrap_or(0)))
            })
            .collect()
    }
}

/// What a [`Probe`] read (what it does not read stays zero).
#[derive(Debug, Default, Clone, Copy)]
struct Usage {
    cpu_seconds: f64,
    /// The system (kernel) part of `cpu_seconds`.
    system_seconds: f64,
    minor_faults: u64,
    database_cpu_seconds: f64,
    instructions: u64,
}

impl Probe<'_> {
    fn start(&self) -> Usage {
        match *self {
            Probe::Proc { broker, backends } => proc_usage(broker, backends),
            Probe::Callgrind { broker, .. } => {
                callgrind_control("--zero", broker);
                Usage::default()
            }
        }
    }

    /// What was used since `start` returned `before`.
    fn since(&self, before: Usage) -> Usage {
        match *self {
            Probe::Proc { broker, backends } => {
                let after = proc_usage(broker, backends);
                Usage {
                    cpu_seconds: after.cpu_seconds - before.cpu_seconds,
                    system_seconds: after.system_seconds - before.system_seconds,
                    minor_faults: after.minor_faults.saturating_sub(before.minor_faults),
                    database_cpu_seconds: after.database_cpu_seconds - before.database_cpu_seconds,
                    instructions: 0,
                }
            }
            Probe::Callgrind { broker, dir } => Usage {
                instructions: callgrind_dump(dir, broker),
                ..Usage::default()
            },
        }
    }
}

fn proc_usage(broker: u32, backends: &[u32]) -> Usage {
    let (cpu_seconds, system_seconds, minor_faults) = cpu_seconds_and_faults(broker);
    Usage {
        cpu_seconds,
        system_seconds,
        minor_faults,
        database_cpu_seconds: backends.iter().map(|p| cpu_seconds_and_faults(*p).0).sum(),
        instructions: 0,
    }
}

/// What one run of [`logins`] did: how many operations, in how long, and
/// what the probe read over them (zero without one).
struct Measured {
    done: usize,
    wall: Duration,
    used: Usage,
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
/// at a barrier after it, `probe` starts (reads the broker's usage, or zeroes
/// its callgrind counters), and a second barrier lets them all go.
async fn logins(
    target: &Arc<Target>,
    client: &str,
    total: usize,
    concurrency: usize,
    mode: Mode,
    probe: Option<&Probe<'_>>,
    syscalls: Option<&SyscallCounter>,
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
    let before = probe.map(Probe::start);
    if let Some(counter) = syscalls {
        counter.control("enable");
    }
    let start = Instant::now();
    go.wait().await;
    for t in tasks {
        t.await.expect("login task");
    }
    let wall = start.elapsed();
    if let Some(counter) = syscalls {
        counter.control("disable");
    }
    Measured {
        done: per_task * concurrency,
        wall,
        used: probe
            .zip(before)
            .map_or_else(Usage::default, |(probe, before)| probe.since(before)),
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
    access_token: String,
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
    let (callback, cookie) = to_callback(http, &authorize, origin).await;
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

/// A login brought from `authorize` (a broker's `/authorize` URL) through
/// the provider at `origin` to the point where the browser holds the
/// provider's redirect to the broker's callback: (that URL, the broker's
/// login cookie).
async fn to_callback(http: &reqwest::Client, authorize: &str, origin: &str) -> (String, String) {
    let resp = http.get(authorize).send().await.expect("authorize");
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
    (location(&resp), cookie)
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
        .unwrap_or_else(|| panic!("no location from {}: {}", resp.url(), resp.status()))
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
        let back = deliver(&http, &callback, &cookie).await;
        if served_by_email(&http, &b_origin, &back).await == Some(true) {
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
            let back = deliver(&http, &callback, &cookie).await;
            let served = answered.elapsed();
            let by = served_by_email(&http, &b_origin, &back)
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

/// A login on B brought to the point where the browser holds the
/// provider's redirect to the issuer's callback, rewritten to B: (URL,
/// cookie). `/authorize` runs on B.
async fn hold(http: &reqwest::Client, issuer: &str, b: &str, provider: &str) -> (String, String) {
    let authorize = authorize_url(b, "app-es256", "devprov", "openid");
    let (callback, cookie) = to_callback(http, &authorize, provider).await;
    (callback.replacen(issuer, b, 1), cookie)
}

/// Sends a held login's callback: the redirect back to the app.
async fn deliver(http: &reqwest::Client, callback: &str, cookie: &str) -> String {
    let resp = http
        .get(callback)
        .header("cookie", cookie)
        .send()
        .await
        .expect("callback");
    location(&resp)
}

/// Redeems the code in `back` on B and asks B's `/userinfo` who logged in:
/// whether the `declarative` version (by email) served the login; `None`
/// when the user is neither.
async fn served_by_email(http: &reqwest::Client, b: &str, back: &str) -> Option<bool> {
    let tokens = redeem(http, b, "app-es256", back).await;
    let info: serde_json::Value = http
        .get(format!("{b}/userinfo"))
        .bearer_auth(tokens.access_token)
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
