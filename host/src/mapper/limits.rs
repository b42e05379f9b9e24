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

/// Bytes of each pooled memory, table and stack kept resident between calls
/// and reset in place: covers a Rust mapper's stack and heap; bigger guests
/// pay page faults only beyond it.
pub const POOL_KEEP_RESIDENT_BYTES: usize = 2 << 20;

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
