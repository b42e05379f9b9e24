//! What the benches share: a provider answering on loopback from its own
//! thread (so its CPU time is kept apart from the caller's), and the
//! process's CPU time and page faults read from `/proc`.
//!
//! A mapper call in a real login reaches its provider over a socket, on a
//! multi-threaded runtime, many calls after the first: the benches measure
//! that, not a call answered in-process.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

/// A keep-alive HTTP/1.1 server on `127.0.0.1:0`, answering from its own
/// thread with a function of the request path. Stops when dropped.
pub struct LoopbackProvider {
    pub addr: SocketAddr,
    /// The serving thread's id, for its CPU time in `/proc/self/task`.
    tid: u32,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl LoopbackProvider {
    /// Starts a provider answering `200` with the JSON `answer(path)`.
    pub fn start(answer: impl Fn(&str) -> Bytes + Send + Sync + 'static) -> LoopbackProvider {
        let answer: Arc<dyn Fn(&str) -> Bytes + Send + Sync> = Arc::new(answer);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("loopback-provider".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("provider runtime");
                rt.block_on(async move {
                    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                        .await
                        .expect("bind 127.0.0.1:0");
                    let addr = listener.local_addr().expect("local addr");
                    ready_tx
                        .send((addr, thread_id()))
                        .expect("the caller waits");
                    let serve = async move {
                        loop {
                            let Ok((stream, _)) = listener.accept().await else {
                                continue;
                            };
                            let answer = answer.clone();
                            tokio::spawn(async move {
                                let service = hyper::service::service_fn(
                                    move |req: Request<hyper::body::Incoming>| {
                                        let body = answer(req.uri().path());
                                        async move {
                                            let mut resp = Response::new(Full::new(body));
                                            resp.headers_mut().insert(
                                                "content-type",
                                                hyper::header::HeaderValue::from_static(
                                                    "application/json",
                                                ),
                                            );
                                            Ok::<_, Infallible>(resp)
                                        }
                                    },
                                );
                                let _ = hyper::server::conn::http1::Builder::new()
                                    .serve_connection(TokioIo::new(stream), service)
                                    .await;
                            });
                        }
                    };
                    tokio::select! {
                        () = serve => {}
                        _ = stop_rx => {}
                    }
                });
            })
            .expect("spawn the provider thread");
        let (addr, tid) = ready_rx.recv().expect("the provider starts");
        LoopbackProvider {
            addr,
            tid,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// CPU seconds the provider's thread has used.
    pub fn cpu_seconds(&self) -> f64 {
        task_cpu_seconds(&format!("/proc/self/task/{}/stat", self.tid))
    }
}

impl Drop for LoopbackProvider {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// This thread's id (`/proc/thread-self` links to `<pid>/task/<tid>`).
fn thread_id() -> u32 {
    std::fs::read_link("/proc/thread-self")
        .ok()
        .and_then(|p| p.file_name()?.to_str()?.parse().ok())
        .unwrap_or(0)
}

/// User + system CPU seconds and minor page faults of a process (or, with a
/// `task` path, a thread), from its `stat` file. The clock tick is 10 ms:
/// measure over seconds.
pub fn cpu_and_faults(stat_path: &str) -> (f64, u64) {
    let stat = std::fs::read_to_string(stat_path).unwrap_or_default();
    // Fields after the command name, which is in parentheses: state is [0],
    // minflt [7], utime [11], stime [12] (proc(5), counting from 1 at pid).
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let ticks = field(11) + field(12);
    (ticks as f64 / 100.0, field(7))
}

fn task_cpu_seconds(stat_path: &str) -> f64 {
    cpu_and_faults(stat_path).0
}

/// This process's CPU seconds and minor page faults so far.
pub fn process_cpu_and_faults() -> (f64, u64) {
    cpu_and_faults("/proc/self/stat")
}

/// A process's resident and peak resident memory in MiB (`VmRSS`, `VmHWM`).
pub fn rss_mib(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (kib("VmRSS:") / 1024.0, kib("VmHWM:") / 1024.0)
}

/// Calls and concurrency of a bench run, from `-- --calls N --concurrency C
/// --only LABEL --calls-only` (anything else, like cargo's own `--bench`, is
/// ignored).
#[derive(Debug, Clone)]
pub struct Args {
    pub calls: usize,
    pub concurrency: usize,
    pub only: Option<String>,
    /// `--calls-only`: skip the compile-time measure (tens of seconds).
    pub calls_only: bool,
}

impl Args {
    pub fn from_env(default_calls: usize) -> Args {
        let mut a = Args {
            calls: default_calls,
            concurrency: 8,
            only: None,
            calls_only: false,
        };
        let argv: Vec<String> = std::env::args().collect();
        a.calls_only = argv.iter().any(|a| a == "--calls-only");
        for pair in argv.windows(2) {
            match pair[0].as_str() {
                "--calls" => a.calls = pair[1].parse().unwrap_or(a.calls),
                "--concurrency" => a.concurrency = pair[1].parse().unwrap_or(a.concurrency),
                "--only" => a.only = Some(pair[1].clone()),
                _ => {}
            }
        }
        a
    }

    /// Whether the row `label` runs (`--only` matches a part of it).
    pub fn wants(&self, label: &str) -> bool {
        self.only.as_deref().is_none_or(|o| label.contains(o))
    }
}

/// One component's calls at steady state.
#[derive(Debug, Clone, Copy)]
pub struct CallFigures {
    /// Single calls one after another, wall clock.
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// The caller's CPU (the provider's thread left out) per call, one
    /// after another and `concurrency` at once.
    pub cpu_ms_sequential: f64,
    pub cpu_ms_concurrent: f64,
    /// Minor page faults per call, one after another and at once.
    pub faults_sequential: f64,
    pub faults_concurrent: f64,
    /// The instance's peak memory (linear memory and host side).
    pub peak_mib: f64,
}

/// Warms up, then runs `args.calls` calls one after another (each timed)
/// and `args.calls` more, `args.concurrency` at a time, on `rt` (build it
/// like the broker's: two workers). `call` runs one call and returns its
/// peak memory in bytes; it panics on a failed call.
pub fn measure_calls<F, Fut>(
    rt: &tokio::runtime::Runtime,
    provider: &LoopbackProvider,
    args: &Args,
    call: F,
) -> CallFigures
where
    F: Fn() -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = usize> + Send + 'static,
{
    use std::time::{Duration, Instant};
    const WARMUP: usize = 200;
    let concurrent = |total: usize| {
        let call = call.clone();
        let concurrency = args.concurrency.max(1);
        rt.block_on(async move {
            let per_task = total.div_ceil(concurrency);
            let tasks: Vec<_> = (0..concurrency)
                .map(|_| {
                    let call = call.clone();
                    tokio::spawn(async move {
                        let mut peak = 0;
                        for _ in 0..per_task {
                            peak = call().await.max(peak);
                        }
                        peak
                    })
                })
                .collect();
            let mut peak = 0;
            for t in tasks {
                peak = t.await.expect("call task").max(peak);
            }
            (per_task * concurrency, peak)
        })
    };
    let sequential = |total: usize, samples: &mut Vec<Duration>| {
        let call = call.clone();
        rt.block_on(async move {
            let mut peak = 0;
            for _ in 0..total {
                let start = Instant::now();
                peak = call().await.max(peak);
                samples.push(start.elapsed());
            }
            peak
        })
    };
    // Steady state: connections open, pool slots used, code paged in.
    concurrent(WARMUP);
    sequential(WARMUP, &mut Vec::new());

    let mut samples = Vec::with_capacity(args.calls);
    let (cpu0, faults0) = process_cpu_and_faults();
    let provider0 = provider.cpu_seconds();
    let peak_seq = sequential(args.calls, &mut samples);
    let (cpu1, faults1) = process_cpu_and_faults();
    let provider1 = provider.cpu_seconds();
    let (ran, peak_conc) = concurrent(args.calls);
    let (cpu2, faults2) = process_cpu_and_faults();
    let provider2 = provider.cpu_seconds();

    samples.sort();
    let at = |p: f64| {
        samples[((samples.len() as f64 * p) as usize).min(samples.len().saturating_sub(1))]
            .as_secs_f64()
            * 1e3
    };
    let n = args.calls as f64;
    CallFigures {
        p50_ms: at(0.5),
        p99_ms: at(0.99),
        cpu_ms_sequential: ((cpu1 - cpu0) - (provider1 - provider0)) / n * 1e3,
        cpu_ms_concurrent: ((cpu2 - cpu1) - (provider2 - provider1)) / ran as f64 * 1e3,
        faults_sequential: (faults1 - faults0) as f64 / n,
        faults_concurrent: (faults2 - faults1) as f64 / ran as f64,
        peak_mib: peak_seq.max(peak_conc) as f64 / (1024.0 * 1024.0),
    }
}

/// The runtime the benches run calls on: the broker's (two workers).
pub fn broker_like_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio")
}

/// `WAYPASS_BENCH_CACHE_DIR=DIR`: the call benches keep their artifact
/// cache (and what else they must load again) in `DIR`, so that a run with
/// `WAYPASS_UNDER_VALGRIND=1` compiles into it natively and a run under
/// `valgrind --tool=callgrind` loads from it instead of compiling 12–18 MB
/// under the instrumentation (BENCHMARKS.md #17).
pub const CACHE_DIR_ENV: &str = "WAYPASS_BENCH_CACHE_DIR";

/// The directory [`CACHE_DIR_ENV`] names, if set.
pub fn kept_cache_dir() -> Option<std::path::PathBuf> {
    std::env::var_os(CACHE_DIR_ENV).map(std::path::PathBuf::from)
}

/// A mapper runtime with the default limits whose artifact cache is
/// `cache_dir` (none: no cache).
pub fn mapper_runtime(cache_dir: Option<std::path::PathBuf>) -> waypass::mapper::Runtime {
    waypass::mapper::Runtime::new(waypass::mapper::RuntimeConfig {
        cache_dir,
        ..Default::default()
    })
    .expect("runtime")
}

/// A mapper runtime caching in `kept` ([`kept_cache_dir`]) if given, else
/// in `temporary`. With `kept` the compile timeout is lifted: under
/// valgrind a compile takes far longer than the runtime's limit allows.
pub fn cached_mapper_runtime(
    kept: Option<&std::path::Path>,
    temporary: &std::path::Path,
) -> waypass::mapper::Runtime {
    match kept {
        Some(dir) => mapper_runtime(Some(dir.to_path_buf()))
            .with_compile_timeout(std::time::Duration::from_secs(3600)),
        None => mapper_runtime(Some(temporary.to_path_buf())),
    }
}
