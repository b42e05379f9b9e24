//! The mapper runtime: loads profile-mapper components and runs them, one
//! fresh instance per call, inside the sandbox. Knows nothing of OAuth.
//!
//! - One [`wasmtime::Engine`] per [`Runtime`], with the pooling allocator,
//!   copy-on-write memory images and epoch interruption; one `Linker`.
//! - [`Runtime::load`] checks a component's imports and exports against the
//!   world on the parsed binary, compiles it (bounded in concurrency and
//!   time; see [`compile`]) or loads the cached artifact, and
//!   pre-instantiates it: a [`LoadedMapper`].
//! - [`Runtime::invoke`] builds a fresh `Store` and instance, calls
//!   `fetch-user-profile` under the [`Sandbox`], and turns every outcome into
//!   a typed [`InvocationReport`]: the host never panics or hangs on a guest.
//!   What the host holds for the call counts against its memory cap
//!   ([`memory`]), and each connection runs at most its share of the pool
//!   ([`shares`]).

pub(crate) mod bindings;
pub mod cache;
mod compile;
pub mod limits;
mod memory;
mod shares;
mod state;
mod ticker;
mod types;
mod validate;

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::{Component, HasSelf, Linker, ResourceTableError};
use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store,
    UpdateDeadline,
};

pub use cache::{ArtifactCache, sha256_hex};
pub use limits::Limits;
pub use types::{
    InvocationReport, LogLevel, LogLine, LogSource, MapperError, MapperInput, Profile, Settings,
    TokenSet,
};
pub use validate::ComponentInfo;

use crate::egress::{EgressPolicy, EgressSession, NetworkTransport, Transport};
use bindings::{Mapper, MapperPre};
use compile::CompileSlots;
use memory::MemoryBudget;
use shares::CallShares;
pub(crate) use state::HostState;
use ticker::EpochTicker;
use types::MAX_ERROR_MESSAGE_BYTES;
pub use types::MAX_USER_ID_BYTES;
pub(crate) use types::truncate;

/// The name of the world every mapper implements.
pub const WORLD: &str = "waypass:mapper/mapper@0.1.0";

/// How one connection's mapper runs: where it may connect, and its limits.
#[derive(Debug, Clone, Default)]
pub struct Sandbox {
    pub egress: Arc<EgressPolicy>,
    pub limits: Limits,
}

/// Why a component could not be loaded as a mapper.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    #[error("not a WebAssembly component: {0}")]
    NotAComponent(String),
    #[error("the component could not be compiled: {0}")]
    Compile(String),
    #[error(
        "the component imports {} which a mapper may not use (allowed: {WORLD}'s imports, WASI 0.2 and wasi:http/outgoing-handler)",
        .0.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
    )]
    ForbiddenImports(Vec<String>),
    #[error("the component does not implement {WORLD}: {0}")]
    WorldMismatch(String),
    #[error("the component is {size_bytes} bytes, over the {limit_bytes}-byte limit")]
    TooLarge {
        size_bytes: usize,
        limit_bytes: usize,
    },
    #[error("the component did not compile within {limit_secs} s")]
    CompileTimeout { limit_secs: u64 },
}

/// Configuration of a [`Runtime`].
pub struct RuntimeConfig {
    /// Where compiled artifacts are kept; `None` compiles in memory only.
    pub cache_dir: Option<std::path::PathBuf>,
    /// What carries the mappers' vetted requests.
    pub transport: Arc<dyn Transport>,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            cache_dir: None,
            transport: Arc::new(NetworkTransport::new()),
        }
    }
}

/// The process's mapper engine.
pub struct Runtime {
    engine: Engine,
    linker: Linker<HostState>,
    cache: Option<ArtifactCache>,
    transport: Arc<dyn Transport>,
    ticker: EpochTicker,
    compile_slots: Arc<CompileSlots>,
    compile_timeout: Duration,
    shares: Arc<CallShares>,
}

/// A validated, compiled, pre-instantiated mapper version.
#[derive(Clone)]
pub struct LoadedMapper {
    pre: MapperPre<HostState>,
    digest: String,
    info: ComponentInfo,
    from_cache: bool,
}

impl LoadedMapper {
    /// SHA-256 of the component's bytes.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// The component's imports and exports.
    pub fn info(&self) -> &ComponentInfo {
        &self.info
    }

    /// Whether the compiled artifact came from the cache.
    pub fn from_cache(&self) -> bool {
        self.from_cache
    }
}

/// What a [`GuestCall`] runs: the call, instantiation included; its error
/// says whether instantiation (`true`) or the call failed.
pub(crate) type GuestFuture<'a, T> =
    std::pin::Pin<Box<dyn Future<Output = Result<T, (bool, wasmtime::Error)>> + Send + 'a>>;

/// One guest call [`Runtime::run_sandboxed`] makes: instantiate a
/// pre-instantiated component in the call's store and call its export.
/// The error says whether instantiation (`true`) or the call failed.
pub(crate) trait GuestCall: Send {
    type Output: Send;
    fn run<'a>(self, store: &'a mut Store<HostState>) -> GuestFuture<'a, Self::Output>
    where
        Self: 'a;
}

/// What [`Runtime::run_sandboxed`] saw: the guest's answer or the host's
/// verdict, and what the guest logged and requested.
pub(crate) struct SandboxedRun<T> {
    pub(crate) result: Result<T, MapperError>,
    pub(crate) logs: Vec<LogLine>,
    pub(crate) dropped_log_lines: usize,
    pub(crate) requests: Vec<crate::egress::RequestRecord>,
    pub(crate) elapsed: Duration,
    pub(crate) peak_memory_bytes: usize,
}

/// A mapper's `fetch-user-profile` call.
struct MapperCall<'m> {
    pre: &'m MapperPre<HostState>,
    access_token: &'m str,
    ctx: bindings::types::Context,
}

impl GuestCall for MapperCall<'_> {
    type Output = Result<bindings::types::Profile, bindings::types::Error>;

    fn run<'a>(self, store: &'a mut Store<HostState>) -> GuestFuture<'a, Self::Output>
    where
        Self: 'a,
    {
        Box::pin(async move {
            let instance = self
                .pre
                .instantiate_async(&mut *store)
                .await
                .map_err(|e| (true, e))?;
            instance
                .call_fetch_user_profile(&mut *store, self.access_token, &self.ctx)
                .await
                .map_err(|e| (false, e))
        })
    }
}

impl Runtime {
    /// Builds the engine and linker and starts the epoch ticker.
    pub fn new(config: RuntimeConfig) -> anyhow::Result<Self> {
        let engine = Engine::new(&engine_config())
            .map_err(|e| anyhow::anyhow!("cannot create the wasm engine: {e:#}"))?;
        let mut linker = Linker::<HostState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .and_then(|()| wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker))
            .and_then(|()| Mapper::add_to_linker::<_, HasSelf<HostState>>(&mut linker, |s| s))
            .map_err(|e| anyhow::anyhow!("cannot link the mapper world: {e:#}"))?;
        let cache = match config.cache_dir {
            Some(dir) => Some(ArtifactCache::open(&dir, &engine).map_err(|e| {
                anyhow::anyhow!("cannot open the artifact cache {}: {e}", dir.display())
            })?),
            None => None,
        };
        let ticker = EpochTicker::start(engine.clone(), limits::EPOCH_TICK)?;
        Ok(Self {
            engine,
            linker,
            cache,
            transport: config.transport,
            ticker,
            compile_slots: CompileSlots::new(),
            compile_timeout: limits::COMPILE_TIMEOUT,
            shares: Arc::new(CallShares::default()),
        })
    }

    /// The same runtime with callers of [`Runtime::load`] waiting at most
    /// `timeout` for a compilation (default [`limits::COMPILE_TIMEOUT`]).
    pub fn with_compile_timeout(mut self, timeout: Duration) -> Self {
        self.compile_timeout = timeout;
        self
    }

    /// Whether the epoch ticker is advancing: a guest call is in flight,
    /// or one ended within the ticker's linger. An idle runtime's ticker
    /// is parked and wakes no thread.
    pub fn epoch_ticking(&self) -> bool {
        self.ticker.is_ticking()
    }

    /// The most compilations that ran at once so far (at most
    /// [`limits::MAX_CONCURRENT_COMPILES`]).
    pub fn peak_concurrent_compiles(&self) -> usize {
        self.compile_slots.peak()
    }

    /// Blocks until no compilation runs, including those whose callers
    /// stopped waiting.
    pub fn wait_for_compilations(&self) {
        self.compile_slots.wait_idle();
    }

    /// Validates, compiles (or loads from the cache) and pre-instantiates a
    /// mapper component.
    pub fn load(&self, bytes: &[u8]) -> Result<LoadedMapper, LoadError> {
        self.load_with_digest(bytes, sha256_hex(bytes))
    }

    /// [`Runtime::load`] for bytes whose SHA-256 is already known (the store
    /// keeps each version's): hashing a 12–18 MB Python or JavaScript
    /// component is most of the cost of loading its cached artifact.
    pub fn load_with_digest(
        &self,
        bytes: &[u8],
        digest: String,
    ) -> Result<LoadedMapper, LoadError> {
        self.load_as(
            bytes,
            digest,
            validate::EXPORT,
            |component, digest, from_cache| self.prepare(component, digest, from_cache),
        )
    }

    /// Loads a component of any world this runtime links: checks it
    /// exports `export` before compiling, compiles it (or loads the cached
    /// artifact), and hands it to `prepare`, which checks it against its
    /// world and pre-instantiates it. Only what `prepare` accepts reaches
    /// the cache.
    pub(crate) fn load_as<T>(
        &self,
        bytes: &[u8],
        digest: String,
        export: &str,
        prepare: impl Fn(Component, String, bool) -> Result<T, LoadError>,
    ) -> Result<T, LoadError> {
        if let Some(component) = self
            .cache
            .as_ref()
            .and_then(|c| c.load(&self.engine, &digest))
        {
            return prepare(component, digest, true);
        }
        // Nothing is compiled for a component that could never run.
        compile::precheck_export(bytes, export)?;
        let compiled = compile::compile(
            &self.engine,
            &self.compile_slots,
            bytes,
            self.compile_timeout,
        )?;
        // SAFETY: `compiled` came from `precompile_component` on this engine.
        let component = unsafe { Component::deserialize(&self.engine, &compiled) }
            .map_err(|e| LoadError::Compile(format!("{e:#}")))?;
        let loaded = prepare(component, digest.clone(), false)?;
        // Only a component that passed every check reaches the cache.
        let stored = self
            .cache
            .as_ref()
            .and_then(|c| c.store(&self.engine, &digest, &compiled));
        match stored {
            Some(component) => prepare(component, digest, false),
            None => Ok(loaded),
        }
    }

    /// The linker every world is linked in (WASI, `wasi:http`, and the
    /// `http` and `log` interfaces both worlds import).
    pub(crate) fn linker(&self) -> &Linker<HostState> {
        &self.linker
    }

    /// Checks a compiled component's imports and its export's exact type
    /// against the world, and pre-instantiates it.
    fn prepare(
        &self,
        component: Component,
        digest: String,
        from_cache: bool,
    ) -> Result<LoadedMapper, LoadError> {
        let info = ComponentInfo::of(&self.engine, &component);
        let forbidden = info.forbidden_imports();
        if !forbidden.is_empty() {
            return Err(LoadError::ForbiddenImports(forbidden));
        }
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| LoadError::WorldMismatch(format!("{e:#}")))?;
        let pre = MapperPre::new(pre).map_err(|e| LoadError::WorldMismatch(format!("{e:#}")))?;
        Ok(LoadedMapper {
            pre,
            digest,
            info,
            from_cache,
        })
    }

    /// What [`Runtime::load`] checks before it compiles (a component within
    /// the size limit, importing only what a mapper may, exporting
    /// `fetch-user-profile`), without compiling: `waypass check`. The exact
    /// types are checked by `load` only.
    pub fn precheck(bytes: &[u8]) -> Result<(), LoadError> {
        compile::precheck(bytes)
    }

    /// Imports and exports of a component, whether or not it is a mapper,
    /// read off the binary (nothing is compiled).
    pub fn inspect(&self, bytes: &[u8]) -> Result<ComponentInfo, LoadError> {
        if let Some(problem) = validate::preamble_problem(bytes) {
            return Err(LoadError::NotAComponent(problem.into()));
        }
        let (imports, exports) =
            compile::top_level_names(bytes).map_err(|e| LoadError::Compile(format!("{e}")))?;
        Ok(ComponentInfo { imports, exports })
    }

    /// Mapper and script calls running now, each in a pool slot.
    pub fn calls_running(&self) -> usize {
        self.shares.running()
    }

    /// Runs `mapper` once, in a fresh instance, under `sandbox`.
    pub async fn invoke(
        &self,
        mapper: &LoadedMapper,
        input: &MapperInput,
        sandbox: &Sandbox,
    ) -> InvocationReport {
        let call = MapperCall {
            pre: &mapper.pre,
            access_token: &input.tokens.access_token,
            ctx: wit_context(input),
        };
        let busy = || {
            format!(
                "connection `{}` already runs {} mapper calls, its share of the pool",
                input.connection,
                limits::MAX_CALLS_PER_CONNECTION
            )
        };
        let run = self
            .run_sandboxed(&input.connection, busy, sandbox, call)
            .await;
        let max_profile_bytes = sandbox.limits.clamped().max_profile_bytes;
        InvocationReport {
            result: run.result.and_then(|answer| match answer {
                Err(guest_error) => Err(from_guest_error(guest_error)),
                Ok(profile) => check_profile(profile, max_profile_bytes),
            }),
            logs: run.logs,
            dropped_log_lines: run.dropped_log_lines,
            requests: run.requests,
            elapsed: run.elapsed,
            peak_memory_bytes: run.peak_memory_bytes,
        }
    }

    /// Runs one guest call in a fresh `Store` under `sandbox`: the share
    /// of the pool `share_key` (a connection, an Action) may use, the
    /// deadline (guest CPU by epochs, host calls by timeout), the memory
    /// cap, the egress session (`busy` says why a call past the share is
    /// refused); and turns every host-side failure into a
    /// [`MapperError`]. Mappers and post-login Actions run through here, so
    /// both worlds get one sandbox.
    pub(crate) async fn run_sandboxed<C: GuestCall>(
        &self,
        share_key: &str,
        busy: impl FnOnce() -> String,
        sandbox: &Sandbox,
        call: C,
    ) -> SandboxedRun<C::Output> {
        let started = Instant::now();
        let limits = sandbox.limits.clamped();
        // One connection (or Action) runs at most its share of the pool.
        let Some(_share) = self.shares.enter(share_key) else {
            return SandboxedRun {
                result: Err(MapperError::Busy { message: busy() }),
                logs: Vec::new(),
                dropped_log_lines: 0,
                requests: Vec::new(),
                elapsed: started.elapsed(),
                peak_memory_bytes: 0,
            };
        };
        let deadline = started + limits.deadline;
        let egress = Arc::new(EgressSession::new(
            sandbox.egress.clone(),
            self.transport.clone(),
            deadline,
        ));
        let budget = Arc::new(MemoryBudget::new(limits.memory_bytes));
        // Epochs advance while the call is in flight (a parked ticker is
        // woken here, before the deadline below is counted from the epoch).
        let _ticking = self.ticker.ticking();
        let mut store = Store::new(&self.engine, HostState::new(egress.clone(), budget.clone()));
        store.limiter(|state| &mut state.memory);
        // Guest CPU: every epoch tick, check the deadline and what the host
        // holds for the call; before the next tick, yield to the executor so
        // a busy guest cannot hog a worker thread.
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |mut ctx| {
            let state = ctx.data_mut();
            if Instant::now() >= deadline {
                state.deadline_hit = true;
                return Ok(UpdateDeadline::Interrupt);
            }
            if !state.measure_resources() {
                return Err(wasmtime::Error::msg(
                    "the host's memory for this call is over its limit",
                ));
            }
            Ok(UpdateDeadline::Yield(1))
        });
        // Host calls (an HTTP request, a guest sleeping in `poll`) are bounded
        // by the same deadline from outside.
        let outcome = tokio::time::timeout(limits.deadline, call.run(&mut store)).await;
        let finished = Instant::now();

        let state = store.data_mut();
        state.measure_resources();
        let result = match outcome {
            Err(_elapsed) => Err(MapperError::timeout(limits.deadline)),
            // What the host held for the call went over its cap: the call
            // fails, whatever the guest made of a refused request.
            Ok(_) if budget.host_exceeded() => Err(MapperError::MemoryLimit {
                limit_bytes: budget.limit(),
            }),
            Ok(Err((instantiating, error))) => Err(classify_failure(
                state,
                &budget,
                instantiating,
                &error,
                limits,
            )),
            // An answer that came after the deadline (a guest told that its
            // request ran out of time, at the deadline) did not come in time.
            Ok(Ok(_)) if finished >= deadline => Err(MapperError::timeout(limits.deadline)),
            Ok(Ok(answer)) => Ok(answer),
        };
        let stdout = state.stdout.take();
        let stderr = state.stderr.take();
        state
            .logs
            .push_output(LogSource::Stdout, LogLevel::Info, &stdout, &budget);
        state
            .logs
            .push_output(LogSource::Stderr, LogLevel::Warn, &stderr, &budget);
        let logs = std::mem::take(&mut state.logs);
        SandboxedRun {
            result,
            logs: logs.lines,
            dropped_log_lines: logs.dropped,
            requests: egress.take_records(),
            elapsed: started.elapsed(),
            peak_memory_bytes: budget.peak(),
        }
    }

    /// The engine, for tools that need to inspect components.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }
}

/// Set (to anything) only to run the broker under valgrind, whose address
/// space (128 GiB in 3.19) cannot hold the pool's reservation: 128 calls ×
/// 4 memories × (4 GiB + guard), ~2 TiB, reserved so that Cranelift can
/// leave out bounds checks. With it the pool has [`VALGRIND_POOL_CALLS`]
/// calls' slots, each memory reserving only its maximum; the code then
/// carries explicit bounds checks. For instruction counts compared with
/// each other (BENCHMARKS.md), never for serving.
pub const VALGRIND_ENV: &str = "WAYPASS_UNDER_VALGRIND";
/// The pool's calls under [`VALGRIND_ENV`]: 8 × 4 × 512 MiB = 16 GiB.
const VALGRIND_POOL_CALLS: u32 = 8;

fn engine_config() -> Config {
    let mut pool = PoolingAllocationConfig::default();
    let under_valgrind = std::env::var_os(VALGRIND_ENV).is_some();
    let calls = if under_valgrind {
        VALGRIND_POOL_CALLS
    } else {
        limits::POOL_CONCURRENT_CALLS
    };
    pool.total_component_instances(calls)
        .total_stacks(calls)
        .max_core_instances_per_component(limits::POOL_CORE_INSTANCES_PER_COMPONENT)
        .total_core_instances(calls * limits::POOL_CORE_INSTANCES_PER_COMPONENT)
        .max_memories_per_component(limits::POOL_MEMORIES_PER_COMPONENT)
        .total_memories(calls * limits::POOL_MEMORIES_PER_COMPONENT)
        .max_tables_per_component(limits::POOL_TABLES_PER_COMPONENT)
        .total_tables(calls * limits::POOL_TABLES_PER_COMPONENT)
        .table_elements(limits::POOL_TABLE_ELEMENTS)
        .max_memory_size(limits::MAX_MEMORY_BYTES)
        // Reset a freed slot by rewriting only the pages the call dirtied
        // (PAGEMAP_SCAN, Linux 6.7+; plain memset of the low bytes before
        // that) instead of madvise: the next call finds its pages resident
        // and takes no page faults. This halves a Rust mapper's call.
        .pagemap_scan(Enabled::Auto)
        .linear_memory_keep_resident(limits::POOL_MEMORY_KEEP_RESIDENT_BYTES)
        .table_keep_resident(limits::POOL_KEEP_RESIDENT_BYTES)
        .async_stack_keep_resident(limits::POOL_KEEP_RESIDENT_BYTES);
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        .memory_init_cow(true)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    if under_valgrind {
        config.memory_reservation(limits::MAX_MEMORY_BYTES as u64);
        // Valgrind's CPU has no AVX-512 (nor AVX-VNNI): code compiled for the
        // real CPU would not load there, and compiling a 12–18 MB
        // interpreter under valgrind takes longer than any timeout. With
        // these off, a broker started natively with this variable compiles
        // artifacts that the one under valgrind loads from the cache.
        for flag in VALGRIND_ISA_FLAGS_OFF {
            // SAFETY: turning an instruction-set extension off only keeps
            // the compiler from using it; the code runs on any x86-64 that
            // has the rest, as checked when an artifact is loaded.
            unsafe {
                config.cranelift_flag_set(flag, "false");
            }
        }
    }
    config
}

/// The x86-64 extensions the code compiled under [`VALGRIND_ENV`] may not
/// use: those the host may have and valgrind 3.19 does not emulate.
#[cfg(target_arch = "x86_64")]
const VALGRIND_ISA_FLAGS_OFF: &[&str] = &[
    "has_avx512bitalg",
    "has_avx512dq",
    "has_avx512f",
    "has_avx512vl",
    "has_avx512vbmi",
    "has_avx512vnni",
    "has_avx_vnni",
];
#[cfg(not(target_arch = "x86_64"))]
const VALGRIND_ISA_FLAGS_OFF: &[&str] = &[];

fn wit_context(input: &MapperInput) -> bindings::types::Context {
    let t = &input.tokens;
    bindings::types::Context {
        connection: input.connection.clone(),
        tokens: bindings::types::Tokens {
            access_token: t.access_token.clone(),
            token_type: t.token_type.clone(),
            id_token: t.id_token.clone(),
            refresh_token: t.refresh_token.clone(),
            expires_in: t.expires_in,
            scope: t.scope.clone(),
            raw: t.raw.clone(),
        },
        settings: input
            .settings
            .iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
    }
}

/// Names the cause of a trap or failed instantiation. Apps and `mapper run`
/// get one line; the whole error, wasm backtrace included, goes to the log.
fn classify_failure(
    state: &HostState,
    budget: &MemoryBudget,
    instantiating: bool,
    error: &wasmtime::Error,
    limits: Limits,
) -> MapperError {
    tracing::debug!(target: "waypass::mapper", error = ?error, "mapper call failed");
    if state.deadline_hit {
        return MapperError::timeout(limits.deadline);
    }
    if budget.exceeded() {
        return MapperError::MemoryLimit {
            limit_bytes: budget.limit(),
        };
    }
    if error.chain().any(|e| {
        matches!(
            e.downcast_ref::<ResourceTableError>(),
            Some(ResourceTableError::Full)
        )
    }) {
        return MapperError::TooManyResources {
            limit: limits::MAX_RESOURCES_PER_CALL,
        };
    }
    if error.chain().any(|e| {
        matches!(
            e.downcast_ref::<wasmtime_wasi_http::FieldMapError>(),
            Some(
                wasmtime_wasi_http::FieldMapError::TotalSizeTooBig
                    | wasmtime_wasi_http::FieldMapError::TooManyFields
            )
        )
    }) {
        return MapperError::Trap {
            message: format!(
                "HTTP headers over the host's limit of {} bytes for one set of fields",
                limits::MAX_FIELDS_BYTES
            ),
        };
    }
    let message = truncate(one_line_cause(error), MAX_ERROR_MESSAGE_BYTES);
    if instantiating
        && error
            .downcast_ref::<wasmtime::PoolConcurrencyLimitError>()
            .is_some()
    {
        return MapperError::Busy { message };
    }
    MapperError::Trap { message }
}

/// What went wrong, on one line: the trap (`wasm trap: call stack
/// exhausted`) or the innermost error, without the wasm backtrace that
/// wasmtime attaches as context.
fn one_line_cause(error: &wasmtime::Error) -> String {
    let cause = match error.downcast_ref::<wasmtime::Trap>() {
        Some(trap) => trap.to_string(),
        None => error.root_cause().to_string(),
    };
    cause
        .split(char::is_control)
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

fn from_guest_error(error: bindings::types::Error) -> MapperError {
    use bindings::types::Error as E;
    let bound = |m: String| truncate(m, MAX_ERROR_MESSAGE_BYTES);
    match error {
        E::Unauthorized(m) => MapperError::Unauthorized { message: bound(m) },
        E::Provider(m) => MapperError::Provider { message: bound(m) },
        E::InvalidProfile(m) => MapperError::InvalidProfile { message: bound(m) },
        E::Other(m) => MapperError::Other { message: bound(m) },
    }
}

/// Checks the guest's profile: size first (before any copying), then shape.
fn check_profile(p: bindings::types::Profile, cap: usize) -> Result<Profile, MapperError> {
    let optional = [
        &p.email,
        &p.name,
        &p.given_name,
        &p.family_name,
        &p.nickname,
        &p.picture,
        &p.extra,
    ];
    let size = p.user_id.len()
        + optional
            .iter()
            .map(|o| o.as_ref().map_or(0, String::len))
            .sum::<usize>();
    if size > cap {
        return Err(MapperError::OutputTooLarge {
            size_bytes: size,
            limit_bytes: cap,
        });
    }
    let invalid = |message: String| MapperError::InvalidProfile { message };
    if p.user_id.trim().is_empty() {
        return Err(invalid("user-id is empty".into()));
    }
    if p.user_id.len() > MAX_USER_ID_BYTES || p.user_id.chars().any(char::is_control) {
        return Err(invalid(format!(
            "user-id must be at most {MAX_USER_ID_BYTES} bytes without control characters"
        )));
    }
    let extra = match p
        .extra
        .as_deref()
        .map(serde_json::from_str::<serde_json::Value>)
    {
        None => serde_json::Map::new(),
        Some(Ok(serde_json::Value::Object(map))) => map,
        Some(Ok(_)) => return Err(invalid("extra must be a JSON object".into())),
        Some(Err(e)) => return Err(invalid(format!("extra is not JSON: {e}"))),
    };
    Ok(Profile {
        user_id: p.user_id,
        email: p.email,
        email_verified: p.email_verified,
        name: p.name,
        given_name: p.given_name,
        family_name: p.family_name,
        nickname: p.nickname,
        picture: p.picture,
        extra,
    })
}
