//! The `waypass` binary: `mapper build | check | run` and `demo`, run as a
//! user runs them.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{example_wasm, text, waypass};
use waypass::dev_provider::{DevProvider, DevUser};

#[test]
fn mapper_build_prints_the_component_path_last() {
    let wasm = example_wasm();
    assert!(wasm.ends_with("auth0_example.wasm"), "{}", wasm.display());
    let bytes = std::fs::read(wasm).expect("the printed path exists");
    assert_eq!(&bytes[..8], b"\0asm\x0d\0\x01\0", "a component");
}

#[test]
fn mapper_build_refuses_a_directory_that_is_not_a_mapper() {
    let cache = tempfile::tempdir().expect("tempdir");
    let out = waypass(cache.path())
        .args(["mapper", "build", "wit"])
        .output()
        .expect("run waypass");
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("does not look like a mapper"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn mapper_check_lists_imports_and_exports_of_a_mapper() {
    let cache = tempfile::tempdir().expect("tempdir");
    let out = waypass(cache.path())
        .args(["mapper", "check"])
        .arg(example_wasm())
        .output()
        .expect("run waypass");
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(stdout.contains("waypass:mapper/http@0.1.0"), "{stdout}");
    assert!(
        stdout.contains("exports:\n  fetch-user-profile"),
        "{stdout}"
    );
    assert!(
        stdout.contains("ok: implements waypass:mapper/mapper@0.1.0"),
        "{stdout}"
    );
}

#[test]
fn mapper_check_exits_1_with_the_reason_for_a_file_that_is_not_a_component() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("mapper.wasm");
    std::fs::write(&file, b"#!/bin/sh\necho not wasm\n").expect("write");
    let out = waypass(dir.path())
        .args(["mapper", "check"])
        .arg(&file)
        .output()
        .expect("run waypass");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("not a WebAssembly component"),
        "{}",
        text(&out.stderr)
    );
}

/// Runs `waypass mapper run` on the example against a development provider.
async fn run_example(token: &str, allow: bool) -> Output {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let provider = DevProvider::new().with_token(
        "good-token",
        DevUser {
            uuid: "u-cli".into(),
            email: "cli@example.com".into(),
        },
    );
    let server = tokio::spawn(provider.serve(listener));
    let cache = tempfile::tempdir().expect("tempdir");
    let mut cmd = waypass(cache.path());
    cmd.args(["mapper", "run"])
        .arg(example_wasm())
        .args(["--access-token", token])
        .arg(format!("--setting=userinfo_url=http://{addr}/userinfo"));
    if allow {
        cmd.arg(format!("--allow-host=http://{addr}"))
            .arg("--allow-private-network");
    }
    let out = tokio::task::spawn_blocking(move || cmd.output().expect("run waypass"))
        .await
        .expect("join");
    server.abort();
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn mapper_run_prints_the_profile_as_json() {
    let out = run_example("good-token", true).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let profile: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
    assert_eq!(
        profile,
        serde_json::json!({"user_id": "u-cli", "email": "cli@example.com"})
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn mapper_run_prints_the_typed_error_and_exits_1_when_the_provider_refuses() {
    let out = run_example("revoked", true).await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("mapper error (provider)") && stderr.contains("invalid_token"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}

/// A Rust mapper that recurses until its call stack runs out.
const DEEP_MAPPER: &str = r#"
use waypass_mapper::{Context, Error, Mapper, Profile, ProfileBuilder, export_mapper};

struct Deep;

impl Mapper for Deep {
    fn fetch_user_profile(_access_token: String, ctx: Context) -> Result<Profile, Error> {
        // Out of reach: the setting is absent.
        let limit = ctx.setting("depth").and_then(|d| d.parse().ok()).unwrap_or(u64::MAX);
        Ok(ProfileBuilder::new(recurse(0, limit).to_string()).build())
    }
}

#[inline(never)]
fn recurse(depth: u64, limit: u64) -> u64 {
    if depth >= limit {
        return depth;
    }
    if depth % 2 == 0 {
        recurse(depth + 1, limit).wrapping_sub(depth)
    } else {
        depth.wrapping_sub(recurse(depth + 1, limit))
    }
}

export_mapper!(Deep);
"#;

#[test]
fn mapper_run_prints_a_trap_on_one_line() {
    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path().join("deep");
    let out = waypass(root.path())
        .args(["mapper", "new"])
        .arg(&dir)
        .args(["--lang", "rust"])
        .output()
        .expect("run waypass");
    assert!(out.status.success(), "{}", text(&out.stderr));
    std::fs::write(dir.join("src/lib.rs"), DEEP_MAPPER).expect("write the mapper");
    let out = waypass(root.path())
        .args(["mapper", "build"])
        .arg(&dir)
        .output()
        .expect("run waypass");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let wasm = text(&out.stdout).lines().last().expect("a path").to_owned();
    let out = waypass(root.path())
        .args(["mapper", "run", &wasm, "--access-token", "at"])
        .output()
        .expect("run waypass");
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert_eq!(
        stderr.lines().last(),
        Some("mapper error (trap): mapper trapped: wasm trap: call stack exhausted"),
        "{stderr}"
    );
    assert!(!stderr.contains("wasm backtrace"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn mapper_run_reaches_nothing_that_was_not_allowed() {
    let out = run_example("good-token", false).await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("denied") && stderr.contains("allow-list"),
        "{stderr}"
    );
}

#[test]
fn the_demo_runs_the_shipped_example_and_shows_a_profile_and_a_typed_error() {
    let cache = tempfile::tempdir().expect("tempdir");
    let out = waypass(cache.path())
        .arg("demo")
        .output()
        .expect("run waypass");
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains(r#""user_id": "8d1f3c4e-demo""#), "{stdout}");
    assert!(stderr.contains("mapper error (provider)"), "{stderr}");
}

/// A configuration for `waypass serve`: one app, one connection whose
/// secret comes from the environment, the example mapper.
fn write_config(dir: &Path) -> PathBuf {
    write_config_with_userinfo(dir, "https://id.acme.test")
}

/// [`write_config`] with the connection's userinfo endpoint at
/// `<origin>/userinfo`, which its mapper may reach (loopback included).
fn write_config_with_userinfo(dir: &Path, origin: &str) -> PathBuf {
    let config = format!(
        r#"
issuer = "http://login.test"
listen = "127.0.0.1:0"
data_dir = "data"

[[mappers]]
name = "auth0-example"
path = {mapper:?}

[[clients]]
client_id = "shop"
client_secret_env = "SHOP_SECRET"
callbacks = ["https://shop.test/callback"]

[[connections]]
name = "acme"
enabled_clients = ["shop"]
[connections.options]
authorizationURL = "https://id.acme.test/authorize"
tokenURL = "https://id.acme.test/token"
client_id = "waypass"
client_secret_env = "ACME_SECRET"
mapper = "auth0-example"
mapper_settings = {{ userinfo_url = "{origin}/userinfo" }}
mapper_egress = {{ allowed_hosts = ["{origin}"], allow_private_networks = true }}
"#,
        mapper = example_wasm().display().to_string()
    );
    let path = dir.join("waypass.toml");
    std::fs::write(&path, config).expect("write config");
    path
}

/// The bootstrap admin token of the `serve` tests.
const ADMIN_TOKEN: &str = "admin-token-for-the-cli-tests-0123456789";

#[tokio::test(flavor = "multi_thread")]
async fn serve_runs_from_a_configuration_file_and_stops_gracefully_on_sigterm() {
    use std::io::BufRead;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // The provider's userinfo endpoint: it answers only when told to.
    let provider = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let origin = format!("http://{}", provider.local_addr().expect("addr"));
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config_with_userinfo(dir.path(), &origin);
    let mut child = waypass(dir.path())
        .args(["serve", "--config"])
        .arg(&config)
        .env("SHOP_SECRET", "shop-secret")
        .env("ACME_SECRET", "acme-secret")
        .env("WAYPASS_ADMIN_TOKEN", ADMIN_TOKEN)
        // `mapper ran` (debug) marks the end of the call in flight.
        .env("WAYPASS_LOG", "info,waypass::broker=debug")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn waypass serve");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let next_line_with = |needle: &str| loop {
        let line = rx
            .recv_timeout(std::time::Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("waiting for `{needle}` from waypass serve: {e}"));
        if line.contains(needle) {
            break line;
        }
    };
    let serving = next_line_with("waypass: serving http://login.test on ");
    let addr = serving
        .strip_prefix("waypass: serving http://login.test on ")
        .expect("the address")
        .to_owned();
    let http = waypass::upstream::Upstream::default();
    let get = |path: &str, token: Option<&str>| {
        let url = url::Url::parse(&format!("http://{addr}{path}")).expect("url");
        let mut headers = http::HeaderMap::new();
        if let Some(token) = token {
            headers.insert(
                http::header::AUTHORIZATION,
                format!("Bearer {token}").parse().expect("header"),
            );
        }
        let http = &http;
        async move {
            http.send(http::Method::GET, &url, headers, bytes::Bytes::new())
                .await
                .expect("request")
        }
    };
    for (path, expect) in [
        ("/healthz", "ok"),
        ("/readyz", "ready"),
        (
            "/.well-known/openid-configuration",
            "\"issuer\":\"http://login.test\"",
        ),
    ] {
        let resp = get(path, None).await;
        assert_eq!(resp.status, 200, "{path}");
        assert!(
            text(&resp.body).contains(expect),
            "{path}: {}",
            text(&resp.body)
        );
    }
    assert!(dir.path().join("data/waypass.db").is_file());

    // A request in flight: `try` runs the mapper, which waits on the provider.
    let connections = get("/api/v2/connections", Some(ADMIN_TOKEN)).await;
    let connections: serde_json::Value =
        serde_json::from_slice(&connections.body).expect("the connections as JSON");
    let id = connections[0]["id"].as_str().expect("an id").to_owned();
    let try_url =
        url::Url::parse(&format!("http://{addr}/api/v2/connections/{id}/try")).expect("url");
    let in_flight = tokio::spawn(async move {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            http::header::AUTHORIZATION,
            format!("Bearer {ADMIN_TOKEN}").parse().expect("header"),
        );
        headers.insert(
            http::header::CONTENT_TYPE,
            "application/json".parse().expect("header"),
        );
        waypass::upstream::Upstream::default()
            .send(
                http::Method::POST,
                &try_url,
                headers,
                bytes::Bytes::from_static(br#"{"access_token": "at-late"}"#),
            )
            .await
    });
    let (mut userinfo, _) = provider.accept().await.expect("the mapper's request");
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        userinfo
            .read_exact(&mut byte)
            .await
            .expect("the request head");
        head.push(byte[0]);
    }
    assert!(text(&head).starts_with("GET /userinfo "), "{}", text(&head));

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    next_line_with("no longer accepting connections");
    assert_eq!(
        tokio::net::TcpStream::connect(&addr)
            .await
            .map(|_| ())
            .map_err(|e| e.kind()),
        Err(std::io::ErrorKind::ConnectionRefused),
        "a new connection is refused while the request in flight finishes"
    );

    let body = r#"{"account":{"uuid":"u-late","email":"late@example.com"}}"#;
    userinfo
        .write_all(
            format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        )
        .await
        .expect("answer the mapper");
    let answer = in_flight
        .await
        .expect("the try task")
        .expect("the request in flight is answered");
    assert_eq!(answer.status, 200, "{}", text(&answer.body));
    let answer: serde_json::Value = serde_json::from_slice(&answer.body).expect("JSON");
    assert_eq!(answer["profile"]["user_id"], "u-late", "{answer}");

    // In the server's own log, in order: the call in flight ended, then
    // the server stopped (a server that stopped at once would log these
    // the other way round, if at all).
    let mut until_stopped = Vec::new();
    let mut mapper_ran = false;
    loop {
        let line = rx
            .recv_timeout(std::time::Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("no `waypass: stopped` ({e}) after {until_stopped:#?}"));
        if line == "waypass: stopped" {
            break;
        }
        mapper_ran |= line.contains("mapper ran");
        until_stopped.push(line);
    }
    assert!(mapper_ran, "{until_stopped:#?}");
    let exit = child.wait().expect("wait");
    assert!(exit.success(), "{exit}");
}

/// A `waypass serve` process, and the lines of its log.
struct Serving {
    child: std::process::Child,
    addr: String,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Serving {
    /// Starts `waypass serve --config config` and waits until it serves.
    fn start(dir: &Path, config: &Path) -> Self {
        use std::io::BufRead;
        let mut child = waypass(dir)
            .args(["serve", "--config"])
            .arg(config)
            .stderr(std::process::Stdio::piped())
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
        let mut serving = Self {
            child,
            addr: String::new(),
            lines,
        };
        let line = serving.next_line_with("waypass: serving http://login.test on ");
        serving.addr = line.rsplit(' ').next().expect("the address").to_owned();
        serving
    }

    fn next_line_with(&self, needle: &str) -> String {
        loop {
            let line = self
                .lines
                .recv_timeout(std::time::Duration::from_secs(120))
                .unwrap_or_else(|e| panic!("waiting for `{needle}` from waypass serve: {e}"));
            if line.contains(needle) {
                break line;
            }
        }
    }

    fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A browser's request with its cookies, keeping the ones set; returns the
/// status and the `Location`.
async fn browse(
    cookies: &mut Vec<String>,
    req: reqwest::RequestBuilder,
) -> (u16, Option<String>, String) {
    let req = if cookies.is_empty() {
        req
    } else {
        req.header("cookie", cookies.join("; "))
    };
    let resp = req.send().await.expect("request");
    for set in resp.headers().get_all("set-cookie") {
        let pair = set
            .to_str()
            .expect("a cookie")
            .split(';')
            .next()
            .unwrap_or_default();
        cookies.push(pair.to_owned());
    }
    let status = resp.status().as_u16();
    let location = resp
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (status, location, resp.text().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_login_started_on_an_instance_stopped_by_sigterm_finishes_on_another() {
    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
    let provider = DevProvider::new()
        .with_client(
            "waypass",
            "provider-secret",
            "http://login.test/login/callback",
        )
        .start(
            tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind"),
        );
    let origin = provider.origin().to_owned();
    let dir = tempfile::tempdir().expect("tempdir");
    // Two instances, one data directory: one SQLite file, as processes on
    // one host share it behind a load balancer.
    let config = dir.path().join("waypass.toml");
    std::fs::write(
        &config,
        format!(
            r#"
issuer = "http://login.test"
listen = "127.0.0.1:0"
data_dir = "data"

[[mappers]]
name = "auth0-example"
path = {mapper:?}

[[clients]]
client_id = "shop"
client_secret = "shop-secret"
callbacks = ["https://shop.test/callback"]

[[connections]]
name = "acme"
enabled_clients = ["shop"]
[connections.options]
authorizationURL = "{origin}/authorize"
tokenURL = "{origin}/token"
client_id = "waypass"
client_secret = "provider-secret"
mapper = "auth0-example"
mapper_settings = {{ userinfo_url = "{origin}/userinfo" }}
mapper_egress = {{ allow_private_networks = true }}
"#,
            mapper = example_wasm().display().to_string()
        ),
    )
    .expect("write config");
    let a = Serving::start(dir.path(), &config);
    let b = Serving::start(dir.path(), &config);
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let mut cookies = Vec::new();

    // The login starts on A…
    let authorize = format!(
        "{}/authorize?response_type=code&client_id=shop&redirect_uri=https%3A%2F%2Fshop.test%2Fcallback\
         &scope=openid&connection=acme&state=app-state&code_challenge={CHALLENGE}&code_challenge_method=S256",
        a.origin()
    );
    let (status, to_provider, body) = browse(&mut cookies, http.get(&authorize)).await;
    assert_eq!(status, 302, "{body}");
    assert!(!cookies.is_empty(), "the login is bound to the browser");

    // …A is stopped (a rolling restart)…
    a.terminate();
    a.next_line_with("waypass: stopped");

    // …the user logs in at the provider, and comes back to B.
    let (_, _, form) = browse(
        &mut cookies,
        http.get(to_provider.expect("to the provider")),
    )
    .await;
    let request = waypass::dev_provider::login_request_id(&form)
        .expect("the login form")
        .to_owned();
    let (_, back, _) = browse(
        &mut cookies,
        http.post(format!("{origin}/authorize")).form(&[
            ("request", request.as_str()),
            ("username", waypass::dev_provider::DEFAULT_USERNAME),
            ("password", waypass::dev_provider::DEFAULT_PASSWORD),
            ("action", "login"),
        ]),
    )
    .await;
    let callback = back
        .expect("back to the broker")
        .replace("http://login.test", &b.origin());
    let (status, to_app, body) = browse(&mut cookies, http.get(&callback)).await;
    assert_eq!(status, 302, "B finishes the login A started: {body}");
    let to_app = url::Url::parse(&to_app.expect("to the app")).expect("a URL");
    assert_eq!(to_app.host_str(), Some("shop.test"));
    let code = to_app
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .expect("a code");
    let tokens: serde_json::Value = http
        .post(format!("{}/oauth/token", b.origin()))
        .basic_auth("shop", Some("shop-secret"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", "https://shop.test/callback"),
            ("code_verifier", VERIFIER),
        ])
        .send()
        .await
        .expect("token request")
        .json()
        .await
        .expect("JSON");
    assert!(tokens["id_token"].is_string(), "{tokens}");
}

#[test]
fn serve_refuses_zero_workers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path());
    let out = waypass(dir.path())
        .args(["serve", "--workers", "0", "--config"])
        .arg(&config)
        .env("SHOP_SECRET", "shop-secret")
        .env("ACME_SECRET", "acme-secret")
        .output()
        .expect("run waypass");
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("--workers must be at least 1"), "{stderr}");
}

#[test]
fn serve_refuses_a_configuration_naming_a_missing_secret() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path());
    let out = waypass(dir.path())
        .args(["serve", "--config"])
        .arg(&config)
        .env_remove("ACME_SECRET")
        .output()
        .expect("run waypass");
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("ACME_SECRET") && stderr.contains("connection `acme`"),
        "{stderr}"
    );
}

#[test]
fn mapper_new_scaffolds_a_mapper_in_each_language_that_builds_and_fits_the_world() {
    let root = tempfile::tempdir().expect("tempdir");
    for (lang, name) in [
        ("rust", "acme-rs"),
        ("python", "acme-py"),
        ("js", "acme-js"),
    ] {
        let dir = root.path().join(name);
        let out = waypass(root.path())
            .args(["mapper", "new"])
            .arg(&dir)
            .args(["--lang", lang])
            .output()
            .expect("run waypass");
        assert!(out.status.success(), "{lang}: {}", text(&out.stderr));
        assert!(dir.join("README.md").is_file());
        let out = waypass(root.path())
            .args(["mapper", "build"])
            .arg(&dir)
            .output()
            .expect("run waypass");
        assert!(out.status.success(), "{lang} build: {}", text(&out.stderr));
        let wasm = text(&out.stdout).lines().last().expect("a path").to_owned();
        let out = waypass(root.path())
            .args(["mapper", "check", &wasm])
            .output()
            .expect("run waypass");
        assert!(
            text(&out.stdout).contains("ok: implements"),
            "{lang}: {}",
            text(&out.stderr)
        );
    }
    let existing = root.path().join("acme-rs");
    let before = files_with_contents(&existing);
    let out = waypass(root.path())
        .args(["mapper", "new"])
        .arg(&existing)
        .args(["--lang", "python"])
        .output()
        .expect("run waypass");
    assert_eq!(
        out.status.code(),
        Some(1),
        "an existing directory is refused"
    );
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!("{} already exists", existing.display())),
        "says why: {stderr}"
    );
    assert_eq!(
        files_with_contents(&existing),
        before,
        "and is left as it was"
    );
}

/// Every file under `dir`, relative to it and sorted, with its bytes.
fn files_with_contents(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(here) = stack.pop() {
        for entry in std::fs::read_dir(&here).expect("read_dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let bytes = std::fs::read(&path).expect("read");
                files.push((path.strip_prefix(dir).expect("prefix").to_path_buf(), bytes));
            }
        }
    }
    files.sort();
    assert!(!files.is_empty(), "{} holds files", dir.display());
    files
}

#[test]
fn mapper_run_script_runs_an_auth0_script_and_says_where_a_syntax_error_is() {
    // The engine compiles once into this cache, for every run of this test.
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("script-engine-cache");
    let dir = tempfile::tempdir().expect("tempdir");
    let ok = dir.path().join("fetch-user-profile.js");
    std::fs::write(
        &ok,
        "function (accessToken, ctx, cb) {\n  const claims = require('jsonwebtoken').decode(ctx.id_token);\n  cb(null, { user_id: claims.sub, email: claims.email });\n}\n",
    )
    .expect("write");
    // An unsigned id_token: {"sub":"u-7","email":"ada@example.com"}.
    let id_token = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ1LTciLCJlbWFpbCI6ImFkYUBleGFtcGxlLmNvbSJ9.";
    let out = waypass(&cache)
        .args(["mapper", "run", "--script"])
        .arg(&ok)
        .args(["--access-token", "at", "--token-response"])
        .arg(format!(
            r#"{{"access_token":"at","id_token":"{id_token}"}}"#
        ))
        .output()
        .expect("run waypass");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let profile: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(
        profile,
        serde_json::json!({"user_id": "u-7", "email": "ada@example.com"})
    );

    let bad = dir.path().join("broken.js");
    std::fs::write(&bad, "function (accessToken, ctx, cb) {\n  let x = ;\n}\n").expect("write");
    let out = waypass(&cache)
        .args(["mapper", "run", "--script"])
        .arg(&bad)
        .args(["--access-token", "at"])
        .output()
        .expect("run waypass");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr).trim(),
        format!(
            "{}: line 2, column 11: expected expression, got ';'",
            bad.display()
        )
    );
}

#[test]
fn action_new_build_and_run_work_for_a_javascript_and_a_python_action() {
    let root = tempfile::tempdir().expect("tempdir");
    let event = root.path().join("event.json");
    std::fs::write(
        &event,
        r#"{"user": {"user_id": "oauth2|acme|1", "email": "ann@blocked.example",
                     "app_metadata": {"roles": ["admin"]}},
            "client": {"client_id": "app1"}, "connection": {"name": "acme"}}"#,
    )
    .expect("write the event");
    let mut built = Vec::new();
    for (lang, name) in [("js", "gate-js"), ("python", "gate-py")] {
        let dir = root.path().join(name);
        let out = waypass(root.path())
            .args(["action", "new"])
            .arg(&dir)
            .args(["--lang", lang])
            .output()
            .expect("run waypass");
        assert!(out.status.success(), "{lang}: {}", text(&out.stderr));
        let out = waypass(root.path())
            .args(["action", "build"])
            .arg(&dir)
            .output()
            .expect("run waypass");
        assert!(out.status.success(), "{lang} build: {}", text(&out.stderr));
        let wasm = text(&out.stdout).lines().last().expect("a path").to_owned();
        let out = waypass(root.path())
            .args(["action", "check", &wasm])
            .output()
            .expect("run waypass");
        assert!(
            text(&out.stdout).contains("ok: implements waypass:action/post-login@0.1.0"),
            "{lang}: {}",
            text(&out.stderr)
        );
        built.push(wasm);
    }

    // The JavaScript example denies the domain its secret names.
    let out = waypass(root.path())
        .args(["action", "run", &built[0], "--event"])
        .arg(&event)
        .args(["--secret", "DENIED_DOMAINS=blocked.example"])
        .output()
        .expect("run waypass");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let outcome: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON outcome");
    assert_eq!(
        outcome,
        serde_json::json!({"outcome": "deny", "reason": "logins from blocked.example are not allowed"})
    );

    // The Python example without its API's URL fails with its own error.
    let out = waypass(root.path())
        .args(["action", "run", &built[1], "--event"])
        .arg(&event)
        .output()
        .expect("run waypass");
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("the secret DECISION_URL is not set"),
        "{stderr}"
    );
}
