//! The binary on its own: installed where no source tree is, it runs the
//! quickstart; it says its version and commit; `mapper build` says what to
//! install when a toolchain is missing; `check` validates a configuration.

#[allow(dead_code)]
mod common;

// The end-to-end tests' browser, shared as a file: this crate cannot
// depend on theirs (theirs depends on this one). Private here, its public
// API there: what this test does not use is dead code, and clippy judges
// its names as it does not judge a library's exported ones.
#[allow(dead_code, clippy::wrong_self_convention)]
#[path = "../../tests/src/browser.rs"]
mod browser;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use browser::Browser;
use common::{repo, text, waypass};

/// How long the quickstart may take to print its URLs: it compiles the
/// example mapper (Cranelift, a debug build of the host, a loaded machine).
/// Generous: it bounds a hang, it does not measure anything.
const QUICKSTART_START_TIMEOUT: Duration = Duration::from_secs(300);

/// A child process killed when the test ends, passed or not.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The first `href` in `html` containing `needle`, unescaped.
fn href(html: &str, needle: &str) -> String {
    html.split("href=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .find(|h| h.contains(needle))
        .unwrap_or_else(|| panic!("no link with {needle} in {html}"))
        .replace("&amp;", "&")
}

/// The value after `label` on the line of `lines` that has it, up to the
/// next space.
fn after(lines: &[String], label: &str) -> String {
    lines
        .iter()
        .find_map(|l| l.split_once(label))
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no `{label}` in {lines:?}"))
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_installed_binary_runs_the_quickstart_from_an_empty_directory_and_a_person_logs_in() {
    // The binary alone in a directory of its own; an empty working
    // directory, a fresh HOME, and a PATH with nothing on it: no cargo, no
    // rustup, no source tree.
    let root = tempfile::tempdir().expect("tempdir");
    let (bin, home, work, empty_path) = (
        root.path().join("bin"),
        root.path().join("home"),
        root.path().join("work"),
        root.path().join("no-tools"),
    );
    for dir in [&bin, &home, &work, &empty_path] {
        std::fs::create_dir(dir).expect("mkdir");
    }
    let installed = bin.join("waypass");
    std::fs::copy(env!("CARGO_BIN_EXE_waypass"), &installed).expect("install the binary");

    let child = Command::new(&installed)
        .args(["quickstart", "--port", "0"])
        .env_clear()
        .env("HOME", &home)
        .env("PATH", &empty_path)
        .current_dir(&work)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the installed binary");
    let mut running = Running(child);
    let stdout = running.0.stdout.take().expect("stdout");
    let stderr = running.0.stderr.take().expect("stderr");
    let (lines_tx, lines_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let done = line.starts_with("Open ");
            lines.push(line);
            if done {
                break;
            }
        }
        let _ = lines_tx.send(lines);
    });
    let (err_tx, err_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            all.push_str(&line);
            all.push('\n');
        }
        let _ = err_tx.send(all);
    });
    let lines = lines_rx
        .recv_timeout(QUICKSTART_START_TIMEOUT)
        .expect("the quickstart prints its URLs");
    if !lines.last().is_some_and(|l| l.starts_with("Open ")) {
        let _ = running.0.kill();
        let stderr = err_rx.recv().unwrap_or_default();
        panic!("the quickstart stopped before serving: {lines:?}\n{stderr}");
    }
    let issuer = after(&lines, "broker (issuer):");
    let provider = after(&lines, "development provider:");
    let app_url = after(&lines, "Open ");

    let mut browser = Browser::default();
    let (status, _, home_page) = browser.get(&format!("{app_url}/")).await;
    assert_eq!(status, 200, "{home_page}");
    let (status, _, chooser) = browser.get(&href(&home_page, "/authorize?")).await;
    assert_eq!(status, 200, "{chooser}");
    let choice = format!("{issuer}{}", href(&chooser, "connection=example-oauth2"));
    let landing = browser.login_at(&issuer, &provider, &choice, false).await;
    let back = landing.location.expect("back to the demo app");
    assert!(back.as_str().starts_with(&app_url), "{back}");
    let (status, _, page) = browser.get(back.as_str()).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Hello, <b>ada@example.com</b>"), "{page}");
    assert!(page.contains("oauth2|example-oauth2|"), "{page}");

    drop(running);
    let data = home.join(".local/share/waypass/quickstart");
    assert!(
        data.join("waypass.db").is_file(),
        "state in {}",
        data.display()
    );
    assert!(
        data.join("auth0-example.wasm").is_file(),
        "the shipped example mapper was written out"
    );
    let stderr = err_rx.recv().unwrap_or_default();
    assert!(!stderr.contains("building"), "{stderr}");
}

/// `git` in the repository; `None` outside a checkout or without git.
fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(repo())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| text(&out.stdout).trim().to_owned())
}

#[test]
fn version_says_the_package_version_and_the_commit_it_was_built_from() {
    let cache = tempfile::tempdir().expect("tempdir");
    for flag in ["--version", "-V"] {
        let out = waypass(cache.path()).arg(flag).output().expect("run");
        assert!(out.status.success(), "{}", text(&out.stderr));
        let shown = text(&out.stdout);
        let prefix = format!("waypass {} (commit ", env!("CARGO_PKG_VERSION"));
        let commit = shown
            .trim()
            .strip_prefix(&prefix)
            .and_then(|rest| rest.strip_suffix(')'))
            .unwrap_or_else(|| panic!("`{shown}` is not `{prefix}COMMIT)`"));
        match git(&["rev-parse", "HEAD"]) {
            Some(head) => {
                let short = commit.strip_suffix("-dirty").unwrap_or(commit);
                assert_eq!(short.len(), 12, "{commit}");
                assert!(
                    head.starts_with(short),
                    "built from {commit}, HEAD is {head}"
                );
            }
            None => assert_eq!(commit, "unknown"),
        }
    }
}

/// `mapper build DIR` with `path` as the whole PATH, the toolchain cache
/// fresh, and cargo's own variables gone.
fn build_with_path(dir: &str, path: &Path) -> Output {
    let cache = tempfile::tempdir().expect("tempdir");
    waypass(cache.path())
        .args(["mapper", "build", dir])
        .env("PATH", path)
        .env_remove("CARGO")
        .env_remove("RUSTC")
        .output()
        .expect("run waypass")
}

/// Asserts a failed build that named `tool` as missing and said how to
/// install it, without a raw spawn error.
fn assert_says_install(out: &Output, tool: &str, install: &str) {
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("`{tool}` is not on PATH")),
        "{stderr}"
    );
    assert!(stderr.contains(install), "{stderr}");
    assert!(!stderr.contains("os error"), "{stderr}");
}

/// A directory holding executable shell scripts (`name`, script body).
fn fake_tools(tools: &[(&str, &str)]) -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, body) in tools {
        let path = dir.path().join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write tool");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    dir
}

#[test]
fn building_a_rust_mapper_without_cargo_says_to_install_rust_with_rustup() {
    let nothing = tempfile::tempdir().expect("tempdir");
    let out = build_with_path("plugins/mappers/auth0-example", nothing.path());
    assert_says_install(&out, "cargo", "https://sh.rustup.rs");
    assert!(
        text(&out.stderr).contains("rustup target add wasm32-wasip2"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn building_a_rust_mapper_without_the_wasm_target_or_rustup_says_to_add_the_target() {
    // A Rust without the wasm32-wasip2 standard library, and no rustup.
    let tools = fake_tools(&[
        ("cargo", "echo 'cargo 1.95.0'"),
        ("rustc", "echo /nonexistent/lib/rustlib/wasm32-wasip2/lib"),
    ]);
    let out = build_with_path("plugins/mappers/auth0-example", tools.path());
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("needs the wasm32-wasip2 target")
            && stderr.contains("rustup target add wasm32-wasip2")
            && stderr.contains("https://rustup.rs"),
        "{stderr}"
    );
    assert!(!stderr.contains("os error"), "{stderr}");
}

#[test]
fn building_a_python_mapper_without_python_says_how_to_install_it() {
    let nothing = tempfile::tempdir().expect("tempdir");
    let out = build_with_path("plugins/mappers/auth0-example-py", nothing.path());
    assert_says_install(&out, "python3", "apt install python3 python3-venv");
}

#[test]
fn building_a_javascript_mapper_without_node_says_how_to_install_it() {
    let nothing = tempfile::tempdir().expect("tempdir");
    let out = build_with_path("plugins/mappers/auth0-example-js", nothing.path());
    assert_says_install(&out, "node", "apt install nodejs npm");
}

#[test]
fn building_a_javascript_mapper_without_npm_says_how_to_install_it() {
    // Node.js is there (a recent one), npm is not.
    let tools = fake_tools(&[("node", "echo v22.0.0")]);
    let out = build_with_path("plugins/mappers/auth0-example-js", tools.path());
    assert_says_install(&out, "npm", "apt install npm");
}

/// Where `check` keeps the compiled script engine across runs of this test
/// binary (it compiles in seconds, once).
fn check_cache() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("check-cache")
}

/// `waypass check --config FILE` with `env` added.
fn check(config: &Path, env: &[(&str, &str)]) -> Output {
    let mut cmd = waypass(&check_cache());
    cmd.arg("check").arg("--config").arg(config);
    for var in [
        "WAYPASS_ISSUER",
        "WAYPASS_LISTEN",
        "WAYPASS_DATA_DIR",
        "WAYPASS_DATABASE_URL",
        "WAYPASS_DATABASE_URL_FILE",
        "WAYPASS_ADMIN_TOKEN",
        "WAYPASS_ADMIN_TOKEN_FILE",
    ] {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().copied());
    cmd.output().expect("run waypass check")
}

/// A directory with the shipped example mapper as `mapper.wasm`.
fn dir_with_mapper() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("mapper.wasm"),
        waypass::quickstart::EXAMPLE_MAPPER_WASM,
    )
    .expect("write mapper");
    dir
}

const VALID: &str = r#"issuer = "https://login.example.com"
data_dir = "data"

[[mappers]]
name = "acme-userinfo"
path = "mapper.wasm"

[[clients]]
client_id = "shop"
client_secret_env = "CHECK_TEST_SHOP_SECRET"
callbacks = ["https://shop.example.com/callback"]

[[connections]]
name = "acme"
enabled_clients = ["shop"]
[connections.options]
authorizationURL = "https://id.acme.example/authorize"
tokenURL = "https://id.acme.example/token"
client_id = "waypass"
client_secret_env = "CHECK_TEST_ACME_SECRET"
mapper = "acme-userinfo"
"#;

#[test]
fn check_says_a_valid_configuration_is_valid_in_one_line_and_exits_0() {
    let dir = dir_with_mapper();
    let config = dir.path().join("waypass.toml");
    std::fs::write(&config, VALID).expect("write config");
    let out = check(
        &config,
        &[
            ("CHECK_TEST_SHOP_SECRET", "shop-secret"),
            ("CHECK_TEST_ACME_SECRET", "acme-secret"),
        ],
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert_eq!(
        stdout,
        format!(
            "{}: valid (1 app, 1 connection, 1 mapper)\n",
            config.display()
        )
    );
    assert!(
        !dir.path().join("data").exists(),
        "check creates nothing: {:?}",
        std::fs::read_dir(dir.path()).map(|d| d.count())
    );
}

/// A configuration with one problem of each kind, and the line and column
/// where each one is.
const BROKEN: &str = r#"issuer = "https://login.example.com/tenant"
listen_port = 8080
admin_token_file = "missing-token"

[[mappers]]
name = "not-a-mapper"
path = "waypass.toml"

[[clients]]
client_id = "shop"
client_secret_env = "CHECK_TEST_UNSET_VARIABLE"
callbacks = ["https://shop.example.com/callback#top"]
require_pkce = "always"

[[connections]]
name = "acme"
enabled_clients = ["shop", "kiosk"]
[connections.options]
authorizationURL = "https://id.acme.example/authorize"
tokenURL = "ftp://id.acme.example/token"
client_id = "waypass"
client_secret_file = "no-such-secret-file"
mapper = "nowhere"
mapper_egress = { allowed_hosts = ["https://"] }

[[connections]]
name = "legacy"
enabled_clients = ["shop"]
[connections.options]
authorizationURL = "https://legacy.example/authorize"
tokenURL = "https://legacy.example/token"
client_id = "waypass"
scripts = { fetchUserProfile = "function (a, c, cb) { cb(null, {" }
"#;

#[test]
fn check_reports_every_problem_with_its_line_column_and_path_and_exits_1() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("waypass.toml");
    std::fs::write(&config, BROKEN).expect("write config");
    let out = check(&config, &[]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{}", text(&out.stderr));
    let file = config.display().to_string();
    let lines: Vec<&str> = stdout.lines().collect();
    let expected = [
        // The file's shape (serde), all at once.
        ("2:1", "error", "listen_port", "unknown field `listen_port`"),
        ("13:1", "error", "clients[0].require_pkce", "invalid type"),
        // What `serve` checks beyond the shape.
        ("1:1", "error", "issuer", "has a path"),
        ("3:1", "error", "admin_token_file", "cannot read"),
        ("7:1", "error", "mappers[0].path", "is not a usable mapper"),
        (
            "11:1",
            "error",
            "clients[0].client_secret_env",
            "`CHECK_TEST_UNSET_VARIABLE` is not set",
        ),
        (
            "12:14",
            "error",
            "clients[0].callbacks[0]",
            "has a fragment",
        ),
        (
            "17:28",
            "warning",
            "connections[0].enabled_clients[1]",
            "app `kiosk`",
        ),
        (
            "20:1",
            "error",
            "connections[0].options.tokenURL",
            "must be an http(s) URL",
        ),
        (
            "22:1",
            "error",
            "connections[0].options.client_secret_file",
            "cannot read",
        ),
        (
            "23:1",
            "warning",
            "connections[0].options.mapper",
            "mapper `nowhere`",
        ),
        (
            "24:36",
            "error",
            "connections[0].options.mapper_egress.allowed_hosts[0]",
            "",
        ),
        (
            "33:13",
            "error",
            "connections[1].options.scripts.fetchUserProfile",
            "(in the script)",
        ),
    ];
    for (place, severity, path, needle) in expected {
        let prefix = format!("{file}:{place}: {severity}: {path}: ");
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(&prefix) && l.contains(needle)),
            "no `{prefix}…{needle}…` in:\n{stdout}"
        );
    }
    let errors = expected.iter().filter(|e| e.1 == "error").count();
    assert_eq!(
        lines.last().copied(),
        Some(format!("{file}: {errors} errors, 2 warnings").as_str()),
        "{stdout}"
    );
    assert_eq!(lines.len(), expected.len() + 1, "{stdout}");
}

#[test]
fn check_reports_what_the_environment_gives_under_its_variable() {
    let dir = dir_with_mapper();
    let config = dir.path().join("waypass.toml");
    std::fs::write(&config, VALID).expect("write config");
    let url_file = dir.path().join("database-url");
    std::fs::write(&url_file, "mysql://waypass:s3cret@db.internal/waypass\n").expect("write");
    let token_file = dir.path().join("admin-token");
    std::fs::write(&token_file, "short\n").expect("write");
    let out = check(
        &config,
        &[
            ("CHECK_TEST_SHOP_SECRET", "shop-secret"),
            ("CHECK_TEST_ACME_SECRET", "acme-secret"),
            (
                "WAYPASS_DATABASE_URL_FILE",
                url_file.to_str().expect("utf-8"),
            ),
            (
                "WAYPASS_ADMIN_TOKEN_FILE",
                token_file.to_str().expect("utf-8"),
            ),
        ],
    );
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let file = config.display();
    assert!(
        stdout.contains(&format!(
            "{file}: error: environment: WAYPASS_DATABASE_URL_FILE: "
        )) && stdout.contains("postgres://"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "{file}: error: WAYPASS_ADMIN_TOKEN_FILE: the admin token must be at least 32 characters"
        )),
        "{stdout}"
    );
    assert!(!stdout.contains("s3cret"), "{stdout}");
}
