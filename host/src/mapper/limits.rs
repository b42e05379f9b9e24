//! Per-invocation limits and the process-wide instance pool.

use std::time::Duration;

/// Wall-clock time for one call, guest CPU and host calls together. A login
/// waits on it: ten seconds covers two or three slow provider calls.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(10);
/// Longest deadline a connection may set.
pub const MAX_DEADLINE: Duration = Duration::from_secs(60);
/// Shortest deadline a connection may set.
pub const MIN_DEADLINE: Duration = Duration::from_millis(10);

/// Linear memory for one call, all of the component's memories together.
/// A Rust mapper needs a couple of MiB; JavaScript and Python engines start
/// with 12–20 MiB snapshots and grow while parsing JSON.
pub const DEFAULT_MEMORY_BYTES: usize = 128 << 20;
/// Largest memory a connection may allow; also the pool's slot size.
pub const MAX_MEMORY_BYTES: usize = 512 << 20;

/// Largest profile (all strings and `extra` together) a mapper may return.
/// Real profiles are well under 4 KiB; the id_token carries much of it.
pub const DEFAULT_MAX_PROFILE_BYTES: usize = 64 << 10;
/// Upper bound for a connection's profile cap.
pub const MAX_PROFILE_BYTES: usize = 1 << 20;

/// Log lines kept per call, and the length of each; the rest are counted
/// and dropped, so a chatty mapper cannot flood the log.
pub const MAX_LOG_LINES: usize = 200;
pub const MAX_LOG_LINE_BYTES: usize = 2048;
/// Bytes of stdout and of stderr captured per call.
pub const STDIO_CAPTURE_BYTES: usize = 64 << 10;

/// Host resources — wasi:http fields, requests, responses, bodies, streams,
/// pollables — one call may hold at once (the call's resource table). A
/// language runtime holds a few dozen during a request; each entry costs
/// the host its bookkeeping plus what it owns, so an unbounded table (the
/// default is a million) lets a guest pile up host memory its own memory
/// cap never sees.
pub const MAX_RESOURCES_PER_CALL: usize = 1024;
/// What the host charges to a call's memory for each resource it holds,
/// beyond the bytes counted for it: the table entry, its box and the
/// resource's own struct (a few hundred bytes).
pub const RESOURCE_ENTRY_BYTES: usize = 256;
/// Size of one wasi:http `fields` as wasmtime counts it: the bytes of every
/// name and value plus the map's per-entry overhead (about 70 bytes). Web
/// servers refuse request headers over 8 KiB (nginx, Apache); 16 KiB of
/// accounting fits them, down from wasmtime's 128 KiB default, which let a
/// guest make the host copy 128 KiB per `fields.clone` and write.
pub const MAX_FIELDS_BYTES: usize = 16 << 10;
/// Bytes one write to a wasi:http outgoing body may carry, and the chunks
/// the host buffers before the guest must wait: each live outgoing body
/// holds at most `(chunks + 1) × chunk` bytes of the host's memory (charged
/// to the call). Request bodies are capped at 4 MiB anyway, and mappers send
/// form posts of a few hundred bytes.
pub const OUTGOING_BODY_CHUNK_BYTES: usize = 64 << 10;
pub const OUTGOING_BODY_BUFFER_CHUNKS: usize = 1;
/// Largest `wasi:random` buffer one call of `get-random-bytes` may ask for
/// (the host builds it before copying it into the guest). Language runtimes
/// seed their hash maps with tens of bytes; wasmtime's default is 64 MiB.
pub const MAX_RANDOM_BYTES: u64 = 1 << 20;

/// Compilations of uploaded components running at once in one process.
/// Cranelift already spreads one compilation over every core; two at once
/// keep a second upload from waiting behind a slow one, and a flood of
/// uploads from taking every core and gigabytes of compiler memory.
pub const MAX_CONCURRENT_COMPILES: usize = 2;
/// Longest a caller waits for a component to compile (the wait for a free
/// compiler included). Cranelift cannot be interrupted: past this the
/// caller gets an error, the compilation runs to its end on its own thread
/// (still holding its slot, so the bound above holds) and its result is
/// thrown away. A 40 MB Python component compiles in well under a minute
/// on a loaded two-core machine.
pub const COMPILE_TIMEOUT: Duration = Duration::from_secs(120);
/// Largest component the runtime compiles: compilation time and memory
/// grow with the code. CPython and StarlingMonkey components are 12–40 MB.
pub const MAX_COMPONENT_BYTES: usize = 64 << 20;

/// Calls one connection may run at once (each holds one of the
/// [`POOL_CONCURRENT_CALLS`] pool slots): a quarter of the pool, so that one
/// connection's burst of logins, or of `try` calls against a provider that
/// hangs, leaves the rest of the pool to every other connection.
pub const MAX_CALLS_PER_CONNECTION: usize = POOL_CONCURRENT_CALLS as usize / 4;

/// Epoch tick: how often a running guest is interrupted to check its
/// deadline and yield to other tasks. The check costs nanoseconds.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);

/// Calls running at once in one process (each holds one pool slot).
pub const POOL_CONCURRENT_CALLS: u32 = 128;
/// Core instances, memories and tables one component may hold; sized for
/// componentize-py and componentize-js output, which link several modules.
pub const POOL_CORE_INSTANCES_PER_COMPONENT: u32 = 32;
pub const POOL_MEMORIES_PER_COMPONENT: u32 = 4;
pub const POOL_TABLES_PER_COMPONENT: u32 = 32;
/// Table elements per table: CPython's function table is large.
pub const POOL_TABLE_ELEMENTS: usize = 64 << 10;
/// Elements any one table may grow to in a call.
pub const MAX_TABLE_ELEMENTS: usize = POOL_TABLE_ELEMENTS;

/// Bytes of each pooled table and stack kept resident between calls
/// and reset in place: covers a Rust mapper's stack and heap; bigger guests
/// pay page faults only beyond it.
pub const POOL_KEEP_RESIDENT_BYTES: usize = 2 << 20;
/// Bytes of each pooled linear memory kept resident between calls and
/// reset in place: an interpreter's heap (CPython 13 MiB at its peak,
/// SpiderMonkey 10 MiB) is dirtied anew by every call, and rewriting its
/// dirty pages from the image costs less than decommitting them and taking
/// the page faults again on the next call. Only pages a call wrote are kept,
/// so a Rust mapper's slot stays as small as before. Needs the vendored
/// wasmtime's resumed page scan (vendor/wasmtime/WAYPASS-PATCH.md): without
/// it the scan stops at 32 runs of pages, long before this.
pub const POOL_MEMORY_KEEP_RESIDENT_BYTES: usize = 16 << 20;

/// One connection's limits for its mapper's calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub deadline: Duration,
    pub memory_bytes: usize,
    pub max_profile_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            deadline: DEFAULT_DEADLINE,
            memory_bytes: DEFAULT_MEMORY_BYTES,
            max_profile_bytes: DEFAULT_MAX_PROFILE_BYTES,
        }
    }
}

impl Limits {
    /// The same limits pulled into their bounds.
    pub fn clamped(self) -> Self {
        Self {
            deadline: self.deadline.clamp(MIN_DEADLINE, MAX_DEADLINE),
            memory_bytes: self.memory_bytes.clamp(1 << 20, MAX_MEMORY_BYTES),
            max_profile_bytes: self.max_profile_bytes.clamp(1 << 10, MAX_PROFILE_BYTES),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_are_clamped_into_bounds() {
        let wild = Limits {
            deadline: Duration::from_secs(3600),
            memory_bytes: usize::MAX,
            max_profile_bytes: 0,
        }
        .clamped();
        assert_eq!(wild.deadline, MAX_DEADLINE);
        assert_eq!(wild.memory_bytes, MAX_MEMORY_BYTES);
        assert_eq!(wild.max_profile_bytes, 1 << 10);
    }
}
