//! Store operations as a login makes them, on SQLite (a WAL file):
//! `cargo bench -p waypass-tests --bench store`.
//!
//! - `sqlite/code`: one authorization code stored and taken (`put_code`,
//!   `take_code`), awaited from a task on a multi-thread runtime, one
//!   after another: the latency a login sees.
//! - `sqlite/code-8-tasks`: the same from 8 tasks at once, per operation
//!   pair: how the store serves logins in parallel.
//!
//! With `WAYPASS_BENCH_ROUND_TRIPS=N` it runs exactly N round trips one
//! after another, then N from 8 tasks, prints the wall time of each and
//! exits (no criterion): a fixed amount of work, for `perf stat` to count
//! its instructions and CPU time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::Criterion;
use waypass::secret::SecretHash;
use waypass::store::{AuthorizationGrant, SqliteStore, Store};

/// Tasks racing in `sqlite/code-8-tasks`.
const TASKS: u64 = 8;

fn grant() -> AuthorizationGrant {
    AuthorizationGrant {
        correlation_id: None,
        claims: Default::default(),
        client_id: "app".into(),
        redirect_uri: "https://app.example/callback".into(),
        user_id: "oauth2|acme|42".into(),
        scope: "openid email".into(),
        nonce: Some("n-0S6_WzA2Mj".into()),
        code_challenge: Some("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".into()),
        auth_time: 1,
        session_id: None,
        audience: None,
        expires_at: u64::MAX >> 2,
    }
}

async fn round_trip(store: &dyn Store, n: u64) {
    let key = SecretHash::of(&format!("code {n}"));
    store.put_code(key, grant()).await.expect("put");
    let taken = store.take_code(key, 2).await.expect("take");
    assert!(taken.is_some());
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio");
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&dir.path().join("waypass.db")).expect("open"));
    if let Some(n) = std::env::var("WAYPASS_BENCH_ROUND_TRIPS")
        .ok()
        .and_then(|n| n.parse::<u64>().ok())
    {
        let store = Arc::clone(&store);
        rt.block_on(async move {
            let start = Instant::now();
            let one = Arc::clone(&store);
            tokio::spawn(async move {
                for i in 0..n {
                    round_trip(&*one, i).await;
                }
            })
            .await
            .expect("task");
            println!("{n} round trips one after another: {:?}", start.elapsed());
            let start = Instant::now();
            let tasks: Vec<_> = (0..TASKS)
                .map(|t| {
                    let store = Arc::clone(&store);
                    tokio::spawn(async move {
                        for i in 0..n / TASKS {
                            round_trip(&*store, (t << 48) | i).await;
                        }
                    })
                })
                .collect();
            for task in tasks {
                task.await.expect("task");
            }
            println!("{n} round trips from {TASKS} tasks: {:?}", start.elapsed());
        });
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    let mut n = 0u64;
    c.bench_function("sqlite/code", |b| {
        b.iter(|| {
            n += 1;
            let store = Arc::clone(&store);
            let i = n;
            rt.block_on(async move {
                tokio::spawn(async move { round_trip(&*store, i).await })
                    .await
                    .expect("task")
            })
        })
    });
    c.bench_function("sqlite/code-8-tasks", |b| {
        b.iter_custom(|iters| {
            let store = Arc::clone(&store);
            rt.block_on(async move {
                let start = Instant::now();
                let tasks: Vec<_> = (0..TASKS)
                    .map(|t| {
                        let store = Arc::clone(&store);
                        tokio::spawn(async move {
                            for i in 0..iters.div_ceil(TASKS) {
                                round_trip(&*store, (t << 48) | i).await;
                            }
                        })
                    })
                    .collect();
                for task in tasks {
                    task.await.expect("task");
                }
                start.elapsed().max(Duration::from_nanos(1))
            })
        })
    });
    c.final_summary();
}
