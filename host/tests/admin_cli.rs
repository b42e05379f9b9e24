//! `waypass connections | clients | mappers | users`, run as an operator runs
//! them, against a real broker on a port of its own.

mod common;

use std::io::Write as _;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::{example_wasm, text};
use serde_json::{Value, json};
use waypass::broker::config::Config;
use waypass::dev_provider::{DevProvider, DevUser};

/// The broker's bootstrap admin token (at least 32 characters).
const ADMIN_TOKEN: &str = "admin-token-for-the-cli-tests-0123456789";

/// A broker serving on 127.0.0.1:0 from its own thread and runtime, with an
/// empty catalog and [`ADMIN_TOKEN`]; stopped when dropped.
struct TestBroker {
    url: String,
    runtime: tokio::runtime::Handle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    dir: tempfile::TempDir,
}

impl TestBroker {
    fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("admin-token"), ADMIN_TOKEN).expect("write token");
        let path = dir.path().join("waypass.toml");
        std::fs::write(
            &path,
            r#"
issuer = "http://login.test"
listen = "127.0.0.1:0"
data_dir = "data"
admin_token_file = "admin-token"
"#,
        )
        .expect("write config");
        let config = Config::load(&path).expect("configuration");
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            let handle = runtime.handle().clone();
            runtime.block_on(async move {
                let broker = waypass::broker::Broker::from_config(&config)
                    .await
                    .expect("broker");
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind");
                let addr = listener.local_addr().expect("address");
                started_tx.send((addr, handle)).expect("report the address");
                waypass::broker::server::serve(listener, Arc::new(broker), async {
                    let _ = stopped.await;
                })
                .await;
            });
        });
        let (addr, runtime) = started_rx
            .recv_timeout(Duration::from_secs(120))
            .expect("the broker started");
        TestBroker {
            url: format!("http://{addr}"),
            runtime,
            stop: Some(stop),
            thread: Some(thread),
            dir,
        }
    }

    /// `waypass ARGS` as the admin.
    fn admin(&self, args: &[&str]) -> Run {
        waypass(&self.url, Some(ADMIN_TOKEN), args, None)
    }

    /// `waypass ARGS` as the admin, with `input` on stdin.
    fn admin_with_stdin(&self, args: &[&str], input: &str) -> Run {
        waypass(&self.url, Some(ADMIN_TOKEN), args, Some(input))
    }

    /// A file in the broker's temporary directory.
    fn file(&self, name: &str, contents: &str) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, contents).expect("write file");
        path.display().to_string()
    }

    /// Registers the example mapper as `name`.
    fn push_example(&self, name: &str) -> Run {
        let wasm = example_wasm().display().to_string();
        self.admin(&["mappers", "push", name, &wasm])
    }

    /// Creates the app `shop` (a confidential client, `Shop`).
    fn create_shop_client(&self) {
        self.admin(&[
            "clients",
            "create",
            "--client-id",
            "shop",
            "--name",
            "Shop",
            "--callback",
            "https://shop.test/callback",
        ])
        .ok();
    }

    /// Creates [`connection_json`]`(name, provider)` with
    /// `connections create --file`; its id.
    fn create_connection(&self, name: &str, provider: &str) -> String {
        let file = self.file(&format!("{name}.json"), &connection_json(name, provider));
        let created = self
            .admin(&["connections", "create", "--file", &file, "--json"])
            .ok();
        let created: Value = serde_json::from_str(&created.stdout).expect("JSON");
        created["id"].as_str().expect("id").to_owned()
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// What one run of the CLI printed.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn ok(self) -> Self {
        assert_eq!(
            self.code,
            Some(0),
            "stdout: {}\nstderr: {}",
            self.stdout,
            self.stderr
        );
        self
    }

    /// The lines of stdout, each with its runs of spaces collapsed.
    fn words(&self) -> Vec<String> {
        self.stdout
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect()
    }
}

/// Runs the binary with `WAYPASS_URL` and, when given, `WAYPASS_TOKEN`.
fn waypass(url: &str, token: Option<&str>, args: &[&str], stdin: Option<&str>) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_waypass"));
    cmd.args(args)
        .env("WAYPASS_URL", url)
        .env_remove("WAYPASS_TOKEN")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(token) = token {
        cmd.env("WAYPASS_TOKEN", token);
    }
    let mut child = cmd.spawn().expect("run waypass");
    let mut pipe = child.stdin.take().expect("stdin");
    pipe.write_all(stdin.unwrap_or_default().as_bytes())
        .expect("write stdin");
    drop(pipe);
    let Output {
        status,
        stdout,
        stderr,
    } = child.wait_with_output().expect("wait for waypass");
    Run {
        code: status.code(),
        stdout: text(&stdout),
        stderr: text(&stderr),
    }
}

/// A connection in Auth0's shape using mapper `example` against `provider`.
fn connection_json(name: &str, provider: &str) -> String {
    json!({
        "name": name,
        "strategy": "oauth2",
        "enabled_clients": ["shop"],
        "options": {
            "authorizationURL": format!("{provider}/authorize"),
            "tokenURL": format!("{provider}/token"),
            "client_id": "waypass",
            "client_secret": "provider-secret-never-shown",
            "mapper": "example",
            "mapper_settings": {"userinfo_url": format!("{provider}/userinfo")},
            "mapper_egress": {"allow_private_networks": true}
        }
    })
    .to_string()
}

// ---- mappers ----

#[test]
fn mappers_push_registers_version_1_and_versions_shows_it_active() {
    let broker = TestBroker::start();
    let pushed = broker.push_example("example").ok();
    assert!(
        pushed.words().iter().any(|l| l == "version: 1"),
        "{}",
        pushed.stdout
    );

    let versions = broker.admin(&["mappers", "versions", "example"]).ok();
    let sha = waypass::mapper::sha256_hex(&std::fs::read(example_wasm()).expect("read"));
    let lines = versions.words();
    assert_eq!(
        lines[0], "VERSION ACTIVE SHA256 SIZE CREATED CREATED BY",
        "{}",
        versions.stdout
    );
    assert_eq!(lines.len(), 2, "{}", versions.stdout);
    assert!(
        lines[1].starts_with(&format!("1 yes {} ", &sha[..12])) && lines[1].ends_with(" admin"),
        "{}",
        versions.stdout
    );

    let list = broker.admin(&["mappers", "list"]).ok();
    assert_eq!(list.words(), ["NAME ACTIVE VERSION", "example 1"]);
}

#[test]
fn mappers_activate_rolls_back_to_an_earlier_version() {
    let broker = TestBroker::start();
    broker.push_example("example").ok();
    broker.push_example("example").ok();
    let activated = broker.admin(&["mappers", "activate", "example", "1"]).ok();
    assert_eq!(activated.stdout, "mapper example: version 1 is active\n");
    let versions = broker
        .admin(&["mappers", "versions", "example", "--json"])
        .ok();
    let value: Value = serde_json::from_str(&versions.stdout).expect("JSON");
    let active: Vec<bool> = value["versions"]
        .as_array()
        .expect("versions")
        .iter()
        .map(|v| v["active"].as_bool().expect("active"))
        .collect();
    assert_eq!(active, [true, false]);
}

// ---- clients ----

#[test]
fn clients_create_prints_the_secret_once_and_the_json_list_holds_no_secret() {
    let broker = TestBroker::start();
    let created = broker
        .admin(&[
            "clients",
            "create",
            "--name",
            "Shop",
            "--callback",
            "https://shop.test/callback",
            "--scope",
            "read:users",
        ])
        .ok();
    let secret = created
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("client_secret: "))
        .expect("the secret is printed")
        .to_owned();
    assert!(
        created.stdout.contains("it will not be shown again"),
        "{}",
        created.stdout
    );

    let list = broker.admin(&["clients", "list", "--json"]).ok();
    let clients: Vec<Value> = serde_json::from_str(&list.stdout).expect("the list is JSON");
    assert_eq!(clients.len(), 1);
    assert_eq!(clients[0]["name"], "Shop");
    assert_eq!(clients[0]["scopes"], json!(["read:users"]));
    assert!(clients[0].get("client_secret").is_none());
    assert!(!list.stdout.contains(&secret));

    let id = clients[0]["client_id"].as_str().expect("client_id");
    let shown = broker.admin(&["clients", "get", id]).ok();
    assert!(!shown.stdout.contains(&secret), "{}", shown.stdout);
    let table = broker.admin(&["clients", "list"]).ok();
    assert_eq!(table.words()[0], "CLIENT ID NAME TYPE ALG SCOPES CALLBACKS");
}

#[test]
fn clients_rotate_secret_prints_a_new_secret_once() {
    let broker = TestBroker::start();
    broker.create_shop_client();
    let rotated = broker.admin(&["clients", "rotate-secret", "shop"]).ok();
    assert!(
        rotated.stdout.contains("client_secret: ")
            && rotated.stdout.contains("it will not be shown again"),
        "{}",
        rotated.stdout
    );
    let updated = broker
        .admin(&["clients", "update", "shop", "--alg", "ES256"])
        .ok();
    assert!(
        updated
            .words()
            .iter()
            .any(|l| l == "id_token_signed_response_alg: ES256"),
        "{}",
        updated.stdout
    );
    assert!(!updated.stdout.contains("client_secret"));
}

// ---- connections ----

#[test]
fn connections_are_created_from_a_file_listed_patched_from_a_file_and_deleted() {
    let broker = TestBroker::start();
    broker.push_example("example").ok();
    broker.create_shop_client();
    let id = broker.create_connection("acme", "https://id.acme.test");

    let list = broker.admin(&["connections", "list"]).ok();
    let lines: Vec<&str> = list.stdout.lines().collect();
    assert_eq!(
        list.words()[0],
        "ID NAME DISPLAY NAME MAPPER CLIENTS",
        "{}",
        list.stdout
    );
    assert_eq!(
        list.words()[1],
        format!("{id} acme - example shop"),
        "{}",
        list.stdout
    );
    // Columns line up: each value starts under its header.
    for (header, value) in [("NAME", "acme"), ("MAPPER", "example"), ("CLIENTS", "shop")] {
        assert_eq!(
            lines[0].find(header),
            lines[1].find(value),
            "{}",
            list.stdout
        );
    }

    let patch = broker.file(
        "patch.json",
        r#"{"display_name": "Acme Corp", "options": {"scope": "openid profile"}}"#,
    );
    let updated = broker
        .admin(&["connections", "update", &id, "--file", &patch])
        .ok();
    let words = updated.words();
    assert!(
        words.iter().any(|l| l == "display_name: Acme Corp")
            && words.iter().any(|l| l == "options.scope: openid profile"),
        "{}",
        updated.stdout
    );
    // `--file -` reads the body from stdin.
    let updated = broker
        .admin_with_stdin(
            &["connections", "update", &id, "--file", "-"],
            r#"{"options": {"scope": "email"}}"#,
        )
        .ok();
    assert!(
        updated.words().iter().any(|l| l == "options.scope: email"),
        "{}",
        updated.stdout
    );

    let shown = broker.admin(&["connections", "get", &id]).ok();
    assert!(
        shown.words().iter().any(|l| l == "options.mapper: example"),
        "{}",
        shown.stdout
    );
    assert!(!shown.stdout.contains("provider-secret-never-shown"));

    let deleted = broker.admin(&["connections", "delete", &id]).ok();
    assert_eq!(deleted.stdout, format!("deleted connection {id}\n"));
    let list = broker.admin(&["connections", "list"]).ok();
    assert_eq!(list.stdout, "no connections\n");
}

#[test]
fn connections_try_shows_the_profile_the_mapper_returned() {
    let broker = TestBroker::start();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let provider = format!("http://{}", listener.local_addr().expect("address"));
    listener.set_nonblocking(true).expect("nonblocking");
    let dev = DevProvider::new().with_token(
        "good-token",
        DevUser {
            uuid: "u-try".into(),
            email: "try@example.com".into(),
        },
    );
    broker.runtime.spawn(async move {
        let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
        dev.serve(listener).await;
    });
    broker.push_example("example").ok();
    broker.create_shop_client();
    let id = broker.create_connection("dev", &provider);

    let tried = broker
        .admin(&["connections", "try", &id, "--access-token", "good-token"])
        .ok();
    let words = tried.words();
    assert!(
        words.iter().any(|l| l == "user_id: oauth2|dev|u-try")
            && words.iter().any(|l| l == "profile.email: try@example.com"),
        "{}",
        tried.stdout
    );
    assert!(tried.stdout.contains("[request] GET"), "{}", tried.stdout);

    let refused = broker.admin(&["connections", "try", &id, "--access-token", "revoked"]);
    assert_eq!(refused.code, Some(1), "{}", refused.stdout);
    assert!(
        refused.stdout.contains("mapper error"),
        "{}",
        refused.stdout
    );
}

// ---- users ----

#[test]
fn users_list_says_no_users_when_nobody_has_logged_in() {
    let broker = TestBroker::start();
    let list = broker.admin(&["users", "list"]).ok();
    assert_eq!(list.stdout, "no users\n");
    let json = broker
        .admin(&["users", "list", "--per-page", "5", "--json"])
        .ok();
    let value: Value = serde_json::from_str(&json.stdout).expect("JSON");
    // Auth0's offset page: {start, limit, length, total, users}.
    assert_eq!(value["limit"], 5, "{value}");
    assert_eq!(value["total"], 0, "{value}");
    assert_eq!(value["users"], json!([]));
}

#[test]
fn session_commands_reach_the_sessions_api() {
    let broker = TestBroker::start();
    for (args, message) in [
        (
            vec!["users", "sessions", "oauth2|acme|a/b c"],
            "user `oauth2|acme|a/b c` not found (HTTP 404)",
        ),
        (
            vec!["users", "refresh-tokens", "oauth2|acme|1"],
            "user `oauth2|acme|1` not found (HTTP 404)",
        ),
        (
            vec!["users", "logout", "oauth2|acme|1"],
            "user `oauth2|acme|1` not found (HTTP 404)",
        ),
        (
            vec!["users", "revoke-session", "ses_gone"],
            "session `ses_gone` not found (HTTP 404)",
        ),
        (
            vec!["users", "revoke-refresh-token", "rtf_gone"],
            "refresh token `rtf_gone` not found (HTTP 404)",
        ),
    ] {
        let run = broker.admin(&args);
        assert_eq!(run.code, Some(1), "{args:?}");
        assert!(run.stderr.contains(message), "{args:?}: {}", run.stderr);
    }
}

#[test]
fn user_ids_reach_the_broker_percent_encoded() {
    let broker = TestBroker::start();
    let run = broker.admin(&["users", "get", "oauth2|acme|a/b c"]);
    assert_eq!(run.code, Some(1));
    assert!(
        run.stderr
            .contains("user `oauth2|acme|a/b c` not found (HTTP 404)"),
        "{}",
        run.stderr
    );
}

#[test]
fn the_token_can_come_from_a_file() {
    let broker = TestBroker::start();
    let file = broker.file("token", &format!("{ADMIN_TOKEN}\n"));
    let run = waypass(
        &broker.url,
        None,
        &["users", "list", "--token-file", &file],
        None,
    )
    .ok();
    assert_eq!(run.stdout, "no users\n");
}

// ---- errors ----

#[test]
fn a_missing_token_says_to_set_waypass_token_and_exits_1() {
    let run = waypass("http://127.0.0.1:9", None, &["connections", "list"], None);
    assert_eq!(run.code, Some(1));
    assert!(run.stderr.contains("set WAYPASS_TOKEN"), "{}", run.stderr);
    assert!(run.stdout.is_empty());
}

#[test]
fn a_port_nobody_listens_on_asks_whether_waypass_serve_is_running() {
    // A port that was free a moment ago.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let run = waypass(&url, Some(ADMIN_TOKEN), &["users", "list"], None);
    assert_eq!(run.code, Some(1));
    assert!(
        run.stderr
            .contains(&format!("is `waypass serve` running at {url}?")),
        "{}",
        run.stderr
    );
}

#[test]
fn an_unknown_connection_exits_1_with_the_apis_message() {
    let broker = TestBroker::start();
    let run = broker.admin(&["connections", "get", "nope"]);
    assert_eq!(run.code, Some(1));
    assert!(
        run.stderr
            .contains("connection `nope` not found (HTTP 404)"),
        "{}",
        run.stderr
    );
    assert!(run.stdout.is_empty());
}

#[test]
fn a_wrong_token_says_which_token_to_check() {
    let broker = TestBroker::start();
    let run = waypass(
        &broker.url,
        Some("not-the-admin-token"),
        &["mappers", "list"],
        None,
    );
    assert_eq!(run.code, Some(1));
    assert!(
        run.stderr.contains("HTTP 401") && run.stderr.contains("WAYPASS_TOKEN"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_token_without_the_scope_says_which_scope_is_missing() {
    let broker = TestBroker::start();
    let created = broker
        .admin(&[
            "clients",
            "create",
            "--name",
            "reader",
            "--callback",
            "https://reader.test/callback",
            "--scope",
            "read:users",
            "--json",
        ])
        .ok();
    let created: Value = serde_json::from_str(&created.stdout).expect("JSON");
    let (id, secret) = (
        created["client_id"].as_str().expect("client_id"),
        created["client_secret"].as_str().expect("client_secret"),
    );
    let token: Value = broker.runtime.block_on(async {
        reqwest::Client::new()
            .post(format!("{}/oauth/token", broker.url))
            .basic_auth(id, Some(secret))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .expect("token request")
            .json()
            .await
            .expect("token JSON")
    });
    let token = token["access_token"].as_str().expect("access_token");
    waypass(&broker.url, Some(token), &["users", "list"], None).ok();
    let run = waypass(&broker.url, Some(token), &["connections", "list"], None);
    assert_eq!(run.code, Some(1));
    assert!(
        run.stderr.contains("read:connections") && run.stderr.contains("HTTP 403"),
        "{}",
        run.stderr
    );
}

#[test]
fn keys_rotate_makes_the_published_next_key_current_and_list_shows_every_state() {
    let broker = TestBroker::start();
    let before: Vec<Value> =
        serde_json::from_str(&broker.admin(&["keys", "list", "--json"]).ok().stdout).expect("JSON");
    assert_eq!(before.len(), 2, "one current key per algorithm");
    let first = broker.admin(&["keys", "rotate"]).ok();
    assert!(first.stdout.starts_with("rotated; "), "{}", first.stdout);
    let listed: Vec<Value> =
        serde_json::from_str(&broker.admin(&["keys", "list", "--json"]).ok().stdout).expect("JSON");
    let next: Vec<&str> = listed
        .iter()
        .filter(|k| k["next"] == true)
        .map(|k| k["kid"].as_str().expect("kid"))
        .collect();
    assert_eq!(next.len(), 2, "{listed:?}");
    // The second rotation signs with a key the JWKS already listed.
    let second = broker.admin(&["keys", "rotate", "--json"]).ok();
    let rotated: Value = serde_json::from_str(&second.stdout).expect("JSON");
    assert!(
        next.contains(&rotated["kid"].as_str().expect("kid")),
        "{rotated}"
    );
    let table = broker.admin(&["keys", "list"]).ok();
    let words = table.words();
    assert!(words[0].starts_with("KID ALG STATE"), "{}", table.stdout);
    assert_eq!(
        words.iter().filter(|l| l.contains(" previous ")).count(),
        4,
        "{}",
        table.stdout
    );
}

#[test]
fn logs_list_shows_management_writes_and_filters_by_type() {
    let broker = TestBroker::start();
    broker
        .admin(&[
            "clients",
            "create",
            "--name",
            "Shop",
            "--callback",
            "https://shop.test/callback",
        ])
        .ok();
    let table = broker.admin(&["logs", "list", "--type", "sapi"]).ok();
    let words = table.words();
    assert!(words[0].starts_with("DATE TYPE"), "{}", table.stdout);
    assert!(
        words
            .iter()
            .any(|l| l.contains(" sapi ") && l.contains("POST /api/v2/clients")),
        "{}",
        table.stdout
    );
    let none = broker.admin(&["logs", "list", "--type", "f"]).ok();
    assert_eq!(none.stdout, "no events\n");
}
