//! The floor under a login's CPU (issue #10 §6): `cargo bench -p waypass
//! --bench floor [-- --logins N --concurrency C --warmup N --rounds R
//! --rate N --parts NAME --callgrind]`.
//!
//! What must any broker do for one login, whatever its code? Answer three
//! requests from the browser and the app (`/authorize`, the provider's
//! callback, the app's code exchange), make two to the provider (its token
//! endpoint and its userinfo), keep the login's single-use state in a
//! durable store (the login transaction put and taken, the user written,
//! the session and the code put, the code taken: five commits), and sign
//! one id_token. This bench runs exactly that and nothing else, with the
//! parts Waypass uses (hyper's HTTP/1 server and client connections over
//! keep-alive, tokio's multi-thread runtime, SQLite in WAL mode with
//! `synchronous = NORMAL` on a thread of its own taking whatever is queued
//! as one transaction (the broker runs some writes alone; this groups all),
//! aws-lc-rs through [`KeySet::sign`], mimalloc), as a server process of
//! its own whose CPU is read from `/proc` like the login bench reads the
//! broker's. No mapper, no templates, no cookies parsed, no JSON beyond the
//! provider's two answers, no logs, no metrics.
//!
//! It runs four servers in turn, each adding a part to the one before:
//! HTTP alone (`http`), then the store's five commits (`http+store`), then
//! the ES256 signature (`http+store+es256`), or the RS256 one instead
//! (`http+store+rs256`). The clients and the provider run here, as in the
//! login bench, at the same default concurrency (8). `--rounds R` repeats
//! the four, interleaved, for ranges on a noisy machine.
//!
//! `--parts NAME` runs only that server (`http`, `http+store`,
//! `http+store+es256` or `http+store+rs256`).
//!
//! `--rate N` paces the clients to N logins a second in all (login *i*
//! starts no earlier than *i*/N seconds in): a server that is not
//! saturated batches less (fewer requests per wake-up, smaller groups of
//! store jobs per commit), so to compare with the broker, pace the floor
//! at the broker's own logins/s.
//!
//! `--callgrind` runs each server under `valgrind --tool=callgrind` and
//! reports instructions per login instead (counters zeroed after the
//! warm-up, dumped after the measured logins), to set beside the login
//! bench's `--callgrind` figure: a count that does not move with the load.
//!
//! The figures are the floor the §6 targets are read against: what a login
//! costs this machine's kernel and these libraries before any of Waypass's
//! own work.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rusqlite::{Connection, params};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Mutex, oneshot};
use waypass::keys::{Alg, KeySet};

mod common;
use common::{callgrind_control, callgrind_dump, cpu_seconds_and_faults, load_average};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Set in the server process's environment: which parts it runs.
const ROLE: &str = "WAYPASS_FLOOR_SERVER";
/// The provider's address, for the server.
const PROVIDER: &str = "WAYPASS_FLOOR_PROVIDER";

/// The parts a server runs, each added to the one before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Parts {
    Http,
    Store,
    Es256,
    Rs256,
}

impl Parts {
    const ALL: [Parts; 4] = [Parts::Http, Parts::Store, Parts::Es256, Parts::Rs256];

    fn name(self) -> &'static str {
        match self {
            Parts::Http => "http",
            Parts::Store => "http+store",
            Parts::Es256 => "http+store+es256",
            Parts::Rs256 => "http+store+rs256",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }

    fn stores(self) -> bool {
        self != Parts::Http
    }

    fn alg(self) -> Option<Alg> {
        match self {
            Parts::Es256 => Some(Alg::Es256),
            Parts::Rs256 => Some(Alg::Rs256),
            Parts::Http | Parts::Store => None,
        }
    }
}

struct Args {
    logins: u64,
    warmup: u64,
    concurrency: u64,
    rounds: u32,
    callgrind: bool,
    /// Logins a second, all clients together; none: as fast as they go.
    rate: Option<f64>,
    parts: Vec<Parts>,
}

fn parse_args() -> Args {
    let argv: Vec<String> = std::env::args().collect();
    let value = |flag: &str, default: u64| {
        argv.windows(2)
            .find(|p| p[0] == flag)
            .map(|p| {
                p[1].parse()
                    .unwrap_or_else(|_| panic!("{flag} takes a number"))
            })
            .unwrap_or(default)
    };
    Args {
        logins: value("--logins", 3000),
        warmup: value("--warmup", 200),
        concurrency: value("--concurrency", 8).max(1),
        rounds: u32::try_from(value("--rounds", 1))
            .expect("--rounds")
            .max(1),
        callgrind: argv.iter().any(|a| a == "--callgrind"),
        rate: argv
            .windows(2)
            .find(|p| p[0] == "--rate")
            .map(|p| p[1].parse().expect("--rate takes logins a second"))
            .filter(|r: &f64| *r > 0.0),
        parts: match argv.windows(2).find(|p| p[0] == "--parts") {
            Some(p) => vec![Parts::from_name(&p[1]).unwrap_or_else(|| {
                panic!("--parts takes one of http, http+store, http+store+es256, http+store+rs256")
            })],
            None => Parts::ALL.to_vec(),
        },
    }
}

fn main() {
    if let Ok(parts) = std::env::var(ROLE) {
        let parts = Parts::from_name(&parts).expect("server parts");
        let provider: SocketAddr = std::env::var(PROVIDER)
            .expect("provider address")
            .parse()
            .expect("provider address");
        runtime().block_on(server::run(parts, provider));
        return;
    }
    let args = parse_args();
    println!(
        "waypass floor benchmark: {} logins per server, concurrency {}, {} round(s), {} cores, load average {}",
        args.logins,
        args.concurrency,
        args.rounds,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_average()
    );
    let rt = runtime();
    let provider = rt.block_on(provider::start());
    for round in 1..=args.rounds {
        for &parts in &args.parts {
            let data = tempfile::tempdir().expect("tempdir");
            let callgrind = args.callgrind.then(|| data.path().join("callgrind"));
            let (server, addr) = start_server(parts, provider, data.path(), callgrind.as_deref());
            let pid = server.0.id();
            rt.block_on(clients::run(addr, args.warmup, args.concurrency, args.rate));
            if let Some(dir) = &callgrind {
                callgrind_control("--zero", pid);
                rt.block_on(clients::run(addr, args.logins, args.concurrency, args.rate));
                let instructions = callgrind_dump(dir, pid);
                println!(
                    "round {round} {:<17} server {:.0} instructions per login (callgrind)",
                    parts.name(),
                    instructions as f64 / args.logins as f64,
                );
            } else {
                let (cpu0, sys0, _) = cpu_seconds_and_faults(pid);
                let started = Instant::now();
                rt.block_on(clients::run(addr, args.logins, args.concurrency, args.rate));
                let elapsed = started.elapsed().as_secs_f64();
                let (cpu1, sys1, _) = cpu_seconds_and_faults(pid);
                let per_1000 = |s: f64| s * 1000.0 / args.logins as f64;
                println!(
                    "round {round} {:<17} {:>6.0} logins/s, server {:.3} CPU-s ({:.3} system) per 1000 logins",
                    parts.name(),
                    args.logins as f64 / elapsed,
                    per_1000(cpu1 - cpu0),
                    per_1000(sys1 - sys0),
                );
            }
            drop(server);
        }
    }
    println!("load average after: {}", load_average());
}

/// The runtime the broker's `serve` uses on this machine: tokio's
/// multi-thread scheduler, a worker per core.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// A server process, killed when dropped (a failed assertion in the bench
/// leaves none behind).
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts this executable as a server running `parts`, its SQLite file in
/// `data` (under callgrind, its dumps in `callgrind`); returns it with the
/// address it printed.
fn start_server(
    parts: Parts,
    provider: SocketAddr,
    data: &std::path::Path,
    callgrind: Option<&std::path::Path>,
) -> (Server, SocketAddr) {
    let own = std::env::current_exe().expect("own path");
    let mut command = match callgrind {
        Some(dir) => {
            std::fs::create_dir_all(dir).expect("callgrind dir");
            let mut c = Command::new("valgrind");
            c.arg("--tool=callgrind")
                .arg(format!(
                    "--callgrind-out-file={}/callgrind.out.%p",
                    dir.display()
                ))
                .arg(own);
            c
        }
        None => Command::new(own),
    };
    let mut server = command
        .env(ROLE, parts.name())
        .env(PROVIDER, provider.to_string())
        .current_dir(data)
        .stdout(Stdio::piped())
        .spawn()
        .map(Server)
        .expect("start the floor server");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(server.0.stdout.take().expect("stdout")),
        &mut line,
    )
    .expect("the server's address");
    let addr = line.trim().parse().expect("the server prints its address");
    (server, addr)
}

type Body = Full<Bytes>;

fn respond(status: StatusCode, headers: &[(&str, &str)], body: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::builder().status(status);
    for (name, value) in headers {
        response = response.header(*name, *value);
    }
    response.body(Full::new(body.into())).expect("response")
}

/// Serves `service` on every connection `listener` accepts, HTTP/1 with
/// keep-alive, as the broker's server does.
async fn serve<S, F>(listener: TcpListener, service: S)
where
    S: Fn(Request<Incoming>) -> F + Clone + Send + 'static,
    F: std::future::Future<Output = Response<Body>> + Send + 'static,
{
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = service.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let answer = service(req);
                async move { Ok::<_, Infallible>(answer.await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// One keep-alive HTTP/1 client connection, as the broker's pooled
/// connections to a provider and the bench's clients use.
struct Client {
    send: hyper::client::conn::http1::SendRequest<Body>,
}

impl Client {
    async fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).await.expect("connect");
        let _ = stream.set_nodelay(true);
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .expect("handshake");
        tokio::spawn(conn);
        Client { send }
    }

    async fn request(&mut self, req: Request<Body>) -> (StatusCode, http::HeaderMap, Bytes) {
        self.send.ready().await.expect("connection ready");
        let response = self.send.send_request(req).await.expect("answer");
        let (parts, body) = response.into_parts();
        let body = body.collect().await.expect("body").to_bytes();
        (parts.status, parts.headers, body)
    }
}

fn request(method: Method, uri: &str, body: impl Into<Bytes>) -> Request<Body> {
    let form = method == Method::POST;
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .header("host", "127.0.0.1");
    if form {
        req = req.header("content-type", "application/x-www-form-urlencoded");
    }
    req.body(Full::new(body.into())).expect("request")
}

/// The provider: a token endpoint and a userinfo endpoint answering at
/// once, with answers of the development provider's size.
mod provider {
    use super::*;

    pub async fn start() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(serve(listener, |req: Request<Incoming>| async move {
            let path = req.uri().path().to_owned();
            let _ = req.into_body().collect().await;
            match path.as_str() {
                "/token" => respond(
                    StatusCode::OK,
                    &[("content-type", "application/json")],
                    json!({
                        "access_token": "at-0123456789abcdef0123456789abcdef",
                        "token_type": "Bearer",
                        "expires_in": 3600,
                        "scope": "openid profile email",
                    })
                    .to_string(),
                ),
                "/userinfo" => respond(
                    StatusCode::OK,
                    &[("content-type", "application/json")],
                    json!({
                        "sub": "248289761001",
                        "name": "Jane Doe",
                        "given_name": "Jane",
                        "family_name": "Doe",
                        "email": "janedoe@example.com",
                        "email_verified": true,
                        "picture": "http://example.com/janedoe/me.jpg",
                    })
                    .to_string(),
                ),
                _ => respond(StatusCode::NOT_FOUND, &[], ""),
            }
        }));
        addr
    }
}

/// The server under measurement.
mod server {
    use super::*;

    /// The login's state, as the broker's SQLite store keeps it: the same
    /// tables' shapes (a login transaction and a code with an expiry index,
    /// a user, a session with its four b-trees).
    const SCHEMA: &str = "
        CREATE TABLE login_transactions (state TEXT PRIMARY KEY NOT NULL,
            expires_at INTEGER NOT NULL, payload TEXT NOT NULL) WITHOUT ROWID;
        CREATE INDEX login_transactions_by_expiry ON login_transactions (expires_at);
        CREATE TABLE authorization_codes (code_hash TEXT PRIMARY KEY NOT NULL,
            expires_at INTEGER NOT NULL, payload TEXT NOT NULL) WITHOUT ROWID;
        CREATE INDEX authorization_codes_by_expiry ON authorization_codes (expires_at);
        CREATE TABLE users (id TEXT PRIMARY KEY NOT NULL, payload TEXT NOT NULL) WITHOUT ROWID;
        CREATE TABLE sessions (key_hash BLOB PRIMARY KEY NOT NULL, id TEXT NOT NULL UNIQUE,
            user_id TEXT NOT NULL, idle_expires_at INTEGER NOT NULL, payload TEXT NOT NULL)
            WITHOUT ROWID;
        CREATE INDEX sessions_by_user ON sessions (user_id);
        CREATE INDEX sessions_by_idle_expiry ON sessions (idle_expires_at);
    ";

    type Job = Box<dyn FnOnce(&Connection) -> rusqlite::Result<()> + Send>;

    /// SQLite on a thread of its own, taking what is queued as one
    /// transaction (the broker's store does the same).
    #[derive(Clone)]
    pub struct Store {
        jobs: std::sync::mpsc::Sender<(Job, oneshot::Sender<()>)>,
    }

    impl Store {
        fn open() -> Self {
            let conn = Connection::open("floor.sqlite").expect("open");
            let mode: String = conn
                .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
                .expect("WAL");
            assert_eq!(mode, "wal");
            conn.pragma_update(None, "synchronous", "NORMAL")
                .expect("synchronous");
            conn.execute_batch(SCHEMA).expect("schema");
            let (jobs, queue) = std::sync::mpsc::channel::<(Job, oneshot::Sender<()>)>();
            std::thread::spawn(move || {
                while let Ok(first) = queue.recv() {
                    let group: Vec<_> = std::iter::once(first).chain(queue.try_iter()).collect();
                    conn.execute_batch("BEGIN IMMEDIATE").expect("begin");
                    let mut answers = Vec::with_capacity(group.len());
                    for (job, answer) in group {
                        job(&conn).expect("job");
                        answers.push(answer);
                    }
                    conn.execute_batch("COMMIT").expect("commit");
                    for answer in answers {
                        let _ = answer.send(());
                    }
                }
            });
            Store { jobs }
        }

        async fn run(
            &self,
            job: impl FnOnce(&Connection) -> rusqlite::Result<()> + Send + 'static,
        ) {
            let (answer, answered) = oneshot::channel();
            self.jobs
                .send((Box::new(job), answer))
                .expect("store thread");
            answered.await.expect("store answer");
        }
    }

    struct State {
        parts: Parts,
        store: Option<Store>,
        keys: KeySet,
        provider: SocketAddr,
        /// Idle connections to the provider, as the broker pools them.
        pool: Mutex<Vec<Client>>,
        serial: AtomicU64,
    }

    pub async fn run(parts: Parts, provider: SocketAddr) {
        let state = Arc::new(State {
            parts,
            store: parts.stores().then(Store::open),
            keys: KeySet::generate().expect("keys"),
            provider,
            pool: Mutex::new(Vec::new()),
            serial: AtomicU64::new(0),
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        println!("{}", listener.local_addr().expect("addr"));
        serve(listener, move |req| {
            let state = state.clone();
            async move { state.handle(req).await }
        })
        .await;
    }

    fn query(req: &Request<Incoming>, name: &str) -> Option<String> {
        url::form_urlencoded::parse(req.uri().query()?.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }

    fn now() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64)
    }

    impl State {
        async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
            match req.uri().path() {
                "/authorize" => self.authorize(req).await,
                "/callback" => self.callback(req).await,
                "/token" => self.token(req).await,
                _ => respond(StatusCode::NOT_FOUND, &[], ""),
            }
        }

        async fn write(
            &self,
            job: impl FnOnce(&Connection) -> rusqlite::Result<()> + Send + 'static,
        ) {
            if let Some(store) = &self.store {
                store.run(job).await;
            }
        }

        /// Takes a single-use row (`delete`: a `DELETE … RETURNING
        /// payload` of the row whose key is `key`), which must be there.
        async fn take(&self, delete: &'static str, key: String) {
            self.write(move |db| {
                let payload = db
                    .prepare_cached(delete)?
                    .query_row(params![key], |row| row.get::<_, String>(0))?;
                assert!(!payload.is_empty());
                Ok(())
            })
            .await;
        }

        async fn authorize(&self, req: Request<Incoming>) -> Response<Body> {
            let state = query(&req, "state").expect("state");
            let location = format!("http://provider/authorize?state={state}");
            self.write(move |db| {
                db.prepare_cached("INSERT INTO login_transactions VALUES (?1, ?2, ?3)")?
                    .execute(params![state, now() + 600, "{\"client_id\":\"app\",\"redirect_uri\":\"http://app.bench/callback\",\"nonce\":\"n-0S6_WzA2Mj\",\"code_challenge\":\"E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM\"}"])
                    .map(drop)
            })
            .await;
            respond(StatusCode::FOUND, &[("location", &location)], "")
        }

        async fn provider(&self, req: Request<Body>) -> Bytes {
            let pooled = self.pool.lock().await.pop();
            let mut client = match pooled {
                Some(client) => client,
                None => Client::connect(self.provider).await,
            };
            let (status, _, body) = client.request(req).await;
            assert_eq!(status, StatusCode::OK);
            self.pool.lock().await.push(client);
            body
        }

        async fn callback(&self, req: Request<Incoming>) -> Response<Body> {
            let state = query(&req, "state").expect("state");
            self.take(
                "DELETE FROM login_transactions WHERE state = ?1 RETURNING payload",
                state,
            )
            .await;
            let token = self
                .provider(request(
                    Method::POST,
                    "/token",
                    "grant_type=authorization_code&code=provider-code&redirect_uri=http%3A%2F%2F127.0.0.1%2Fcallback&client_id=bench&client_secret=secret",
                ))
                .await;
            let token: Value = serde_json::from_slice(&token).expect("token JSON");
            let access = token["access_token"].as_str().expect("access_token");
            let mut userinfo = request(Method::GET, "/userinfo", Bytes::new());
            userinfo.headers_mut().insert(
                "authorization",
                format!("Bearer {access}").parse().expect("header"),
            );
            let profile: Value =
                serde_json::from_slice(&self.provider(userinfo).await).expect("userinfo JSON");
            let user = format!("bench|{}", profile["sub"].as_str().expect("sub"));
            let serial = self.serial.fetch_add(1, Ordering::Relaxed);
            let (session, code) = (
                format!("session-{serial:016x}"),
                format!("code-{serial:016x}"),
            );
            let stored = profile.to_string();
            let user_row = user.clone();
            self.write(move |db| {
                db.prepare_cached("INSERT OR REPLACE INTO users VALUES (?1, ?2)")?
                    .execute(params![user_row, stored])
                    .map(drop)
            })
            .await;
            let code_row = code.clone();
            self.write(move |db| {
                let key = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, session.as_bytes());
                db.prepare_cached("INSERT INTO sessions VALUES (?1, ?2, ?3, ?4, ?5)")?
                    .execute(params![
                        key.as_ref(),
                        session,
                        user,
                        now() + 86400,
                        "{\"clients\":[\"app\"]}"
                    ])?;
                db.prepare_cached("INSERT INTO authorization_codes VALUES (?1, ?2, ?3)")?
                    .execute(params![
                        code_row,
                        now() + 60,
                        "{\"client_id\":\"app\",\"scope\":\"openid\"}"
                    ])
                    .map(drop)
            })
            .await;
            let location = format!("http://app.bench/callback?code={code}&state=s");
            respond(
                StatusCode::FOUND,
                &[
                    ("location", &location),
                    (
                        "set-cookie",
                        "waypass_session=abc; HttpOnly; Secure; Path=/",
                    ),
                ],
                "",
            )
        }

        async fn token(&self, req: Request<Incoming>) -> Response<Body> {
            let body = req.into_body().collect().await.expect("body").to_bytes();
            let code = url::form_urlencoded::parse(&body)
                .find(|(k, _)| k == "code")
                .map(|(_, v)| v.into_owned())
                .expect("code");
            self.take(
                "DELETE FROM authorization_codes WHERE code_hash = ?1 RETURNING payload",
                code,
            )
            .await;
            let id_token = match self.parts.alg() {
                Some(alg) => self
                    .keys
                    .sign(
                        alg,
                        &json!({
                            "iss": "http://127.0.0.1:8080/",
                            "sub": "bench|248289761001",
                            "aud": "app",
                            "iat": now(),
                            "exp": now() + 36000,
                            "nonce": "n-0S6_WzA2Mj",
                            "name": "Jane Doe",
                            "email": "janedoe@example.com",
                            "email_verified": true,
                            "picture": "http://example.com/janedoe/me.jpg",
                        }),
                    )
                    .expect("sign"),
                None => String::new(),
            };
            let body = json!({
                "access_token": "wp-at-0123456789abcdef",
                "token_type": "Bearer",
                "expires_in": 86400,
                "id_token": id_token,
            });
            respond(
                StatusCode::OK,
                &[
                    ("content-type", "application/json"),
                    ("cache-control", "no-store"),
                ],
                body.to_string(),
            )
        }
    }
}

/// The browser and the app: each client walks `/authorize`, the callback
/// and the code exchange over its own keep-alive connection.
mod clients {
    use super::*;

    pub async fn run(server: SocketAddr, logins: u64, concurrency: u64, rate: Option<f64>) {
        let next = Arc::new(AtomicU64::new(0));
        let start = tokio::time::Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..concurrency {
            let next = next.clone();
            tasks.push(tokio::spawn(async move {
                let mut client = Client::connect(server).await;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= logins {
                        break;
                    }
                    if let Some(rate) = rate {
                        let due = start + std::time::Duration::from_secs_f64(i as f64 / rate);
                        tokio::time::sleep_until(due).await;
                    }
                    login(&mut client).await;
                }
            }));
        }
        for task in tasks {
            task.await.expect("client");
        }
    }

    fn location(headers: &http::HeaderMap) -> &str {
        headers
            .get("location")
            .and_then(|v| v.to_str().ok())
            .expect("a redirect")
    }

    /// GETs `uri`, which must answer with a redirect; its headers.
    async fn redirected(client: &mut Client, uri: &str) -> http::HeaderMap {
        let (status, headers, _) = client
            .request(request(Method::GET, uri, Bytes::new()))
            .await;
        assert_eq!(status, StatusCode::FOUND, "{uri}");
        headers
    }

    async fn login(client: &mut Client) {
        static STATES: AtomicU64 = AtomicU64::new(0);
        let state = format!("st{:016x}", STATES.fetch_add(1, Ordering::Relaxed));
        redirected(
            client,
            &format!("/authorize?response_type=code&client_id=app&redirect_uri=http%3A%2F%2Fapp.bench%2Fcallback&scope=openid&state={state}&nonce=n-0S6_WzA2Mj&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256"),
        )
        .await;
        let headers = redirected(
            client,
            &format!("/callback?code=provider-code&state={state}"),
        )
        .await;
        let back = url::Url::parse(location(&headers)).expect("location");
        let code = back
            .query_pairs()
            .find(|(k, _)| k == "code")
            .map(|(_, v)| v.into_owned())
            .expect("code");
        let (status, _, body) = client
            .request(request(
                Method::POST,
                "/token",
                format!("grant_type=authorization_code&code={code}&redirect_uri=http%3A%2F%2Fapp.bench%2Fcallback&client_id=app&client_secret=bench-app-secret&code_verifier=dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            ))
            .await;
        assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    }
}
