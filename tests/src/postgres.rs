//! The PostgreSQL server the store tests run against, and a fresh database
//! for each test.
//!
//! `WAYPASS_TEST_DATABASE_URL` names a role that may create databases
//! (`.ci/run` sets it from `scripts/ensure-postgres`). Unset, the first
//! PostgreSQL test of a test binary runs that script itself, once (it
//! installs and starts a local server when it can: as root on Debian), so
//! `cargo test --workspace` on a fresh machine runs these tests too. When
//! no server can be had they print a notice and pass without running —
//! except when `CI` is set, where they fail: CI must run them.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use waypass::secret::SecretHash;
use waypass::store::{DatabaseUrl, PostgresStore};

/// The variable naming the test server.
pub const URL_VAR: &str = "WAYPASS_TEST_DATABASE_URL";

/// Where this test binary's PostgreSQL tests run, decided once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Server {
    /// A role on a server that may create databases.
    Url(String),
    /// None could be had, and that is allowed (not CI): why.
    Skip(String),
}

/// The decision, apart from the environment: the configured URL if there
/// is one; else whatever `ensure` (the script) gives; else skip — or, in
/// CI, an error saying why the tests cannot run.
pub fn decide(
    configured: Option<&str>,
    ci: bool,
    ensure: impl FnOnce() -> Result<String, String>,
) -> Result<Server, String> {
    if let Some(url) = configured.filter(|u| !u.is_empty()) {
        return Ok(Server::Url(url.to_owned()));
    }
    match ensure() {
        Ok(url) => Ok(Server::Url(url)),
        Err(why) if ci => Err(format!(
            "CI is set, so the PostgreSQL tests must run, but no server could be had: {why} \
             (set {URL_VAR}, or let scripts/ensure-postgres run as root)"
        )),
        Err(why) => Ok(Server::Skip(why)),
    }
}

/// Whether `CI` (its value) asks for every test to run: set, and not
/// empty, `0` or `false`.
pub fn is_ci(value: Option<&str>) -> bool {
    value.is_some_and(|v| !v.is_empty() && v != "0" && !v.eq_ignore_ascii_case("false"))
}

/// Runs `scripts/ensure-postgres` and returns the URL it prints last.
fn ensure_postgres() -> Result<String, String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/ensure-postgres");
    let output = Command::new("bash")
        .arg(&script)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    if !output.status.success() {
        return Err(format!("{} failed ({})", script.display(), output.status));
    }
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .last()
        .filter(|line| line.starts_with("postgres"))
        .map(str::to_owned)
        .ok_or_else(|| format!("{} printed no URL", script.display()))
}

/// The server for this test binary, or `None` to skip (a notice is printed
/// once, past the test harness's capture). Panics in CI when there is none.
pub fn server() -> Option<DatabaseUrl> {
    static SERVER: OnceLock<Result<Server, String>> = OnceLock::new();
    let decided = SERVER.get_or_init(|| {
        let decided = decide(
            std::env::var(URL_VAR).ok().as_deref(),
            is_ci(std::env::var("CI").ok().as_deref()),
            ensure_postgres,
        );
        if let Ok(Server::Skip(why)) = &decided {
            // Straight to stderr: `eprintln!` would be captured and lost.
            let _ = writeln!(
                std::io::stderr(),
                "NOTICE: the PostgreSQL tests are skipped: {why}. Set {URL_VAR} to a role \
                 that may create databases to run them."
            );
        }
        decided
    });
    match decided {
        Ok(Server::Url(url)) => {
            Some(DatabaseUrl::parse(url).unwrap_or_else(|e| panic!("{URL_VAR}: {e}")))
        }
        Ok(Server::Skip(_)) => None,
        Err(e) => panic!("{e}"),
    }
}

/// A database of its own for one test: `waypass_test_<random>`, created on
/// the server and dropped (with whatever connections are left) when this
/// is dropped, even when the test fails.
pub struct TestDatabase {
    pub url: DatabaseUrl,
    name: String,
    server: DatabaseUrl,
    /// Set once a drop has been started (by [`TestDatabase::drop_together`]).
    dropping: bool,
}

/// A connection from a test, not the store's (to look at or change the
/// database behind its back); driven by a task on the current runtime.
pub async fn connect(url: &DatabaseUrl) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url.expose(), tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connecting to {url}: {e}"));
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

impl TestDatabase {
    pub async fn create(server: &DatabaseUrl) -> Self {
        Self::create_with(server, "").await
    }

    /// A database created with `options` (`CREATE DATABASE name options`:
    /// a template, a locale).
    pub async fn create_with(server: &DatabaseUrl, options: &str) -> Self {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let seed = format!(
            "{} {nanos} {}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let name = format!("waypass_test_{}", &SecretHash::of(&seed).to_hex()[..16]);
        connect(server)
            .await
            .batch_execute(&format!("CREATE DATABASE {name} {options}"))
            .await
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name} on {server}: {e:?}"));
        Self {
            url: server.with_database(&name).expect("a database URL"),
            name,
            server: server.clone(),
            dropping: false,
        }
    }

    /// A store on this database (migrated to the current schema).
    pub async fn open(&self) -> PostgresStore {
        PostgresStore::connect(&self.url)
            .await
            .unwrap_or_else(|e| panic!("opening {}: {e}", self.url))
    }

    /// A plain connection to this database.
    pub async fn client(&self) -> tokio_postgres::Client {
        connect(&self.url).await
    }

    /// Drops `databases` at once: each `DROP DATABASE` waits for a
    /// checkpoint (a second or more on a loaded machine), and concurrent
    /// ones share it.
    pub fn drop_together(databases: Vec<TestDatabase>) {
        let dropping: Vec<_> = databases
            .into_iter()
            .map(|mut db| {
                db.dropping = true;
                (db.name.clone(), db.start_drop())
            })
            .collect();
        for (name, thread) in dropping {
            report_drop(&name, thread.join());
        }
    }

    /// Starts dropping the database on a thread of its own (with a runtime
    /// of its own: `Drop` cannot wait on the caller's); `WITH (FORCE)` ends
    /// connections still open to it.
    fn start_drop(&self) -> std::thread::JoinHandle<Result<(), String>> {
        let (server, name) = (self.server.clone(), self.name.clone());
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async {
                let (client, connection) =
                    tokio_postgres::connect(server.expose(), tokio_postgres::NoTls)
                        .await
                        .map_err(|e| e.to_string())?;
                tokio::spawn(async move {
                    let _ = connection.await;
                });
                client
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await
                    .map_err(|e| format!("{e:?}"))
            })
        })
    }
}

/// Says when a test database could not be dropped; never panics (this may
/// run while a failed test unwinds).
fn report_drop(name: &str, dropped: std::thread::Result<Result<(), String>>) {
    if !matches!(dropped, Ok(Ok(()))) {
        let _ = writeln!(
            std::io::stderr(),
            "warning: could not drop test database {name}: {dropped:?}"
        );
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if !self.dropping {
            report_drop(&self.name, self.start_drop().join());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_script() -> Result<String, String> {
        Err("no server here".into())
    }

    #[test]
    fn a_configured_url_is_used_without_running_the_script() {
        let decided = decide(Some("postgres://u@h/db"), true, || {
            panic!("the script must not run")
        });
        assert_eq!(decided, Ok(Server::Url("postgres://u@h/db".into())));
    }

    #[test]
    fn without_a_url_the_script_provides_the_server() {
        let decided = decide(None, false, || Ok("postgres://t@127.0.0.1/postgres".into()));
        assert_eq!(
            decided,
            Ok(Server::Url("postgres://t@127.0.0.1/postgres".into()))
        );
        let decided = decide(Some(""), false, || Ok("postgres://from-script".into()));
        assert_eq!(
            decided,
            Ok(Server::Url("postgres://from-script".into())),
            "an empty variable counts as unset"
        );
    }

    #[test]
    fn with_no_server_the_tests_skip_outside_ci_saying_why() {
        assert_eq!(
            decide(None, false, no_script),
            Ok(Server::Skip("no server here".into()))
        );
    }

    #[test]
    fn with_no_server_in_ci_the_tests_fail_saying_why() {
        let err = decide(None, true, no_script).expect_err("CI must not skip");
        assert!(err.contains("CI is set"), "{err}");
        assert!(err.contains("no server here"), "{err}");
        assert!(err.contains(URL_VAR), "says how to fix it: {err}");
    }

    #[test]
    fn ci_is_on_for_any_value_but_empty_zero_or_false() {
        for on in ["1", "true", "yes", "TRUE"] {
            assert!(is_ci(Some(on)), "{on}");
        }
        for off in [None, Some(""), Some("0"), Some("false"), Some("False")] {
            assert!(!is_ci(off), "{off:?}");
        }
    }
}
