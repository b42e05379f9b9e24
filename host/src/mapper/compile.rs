//! Compiling an uploaded component, bounded: what it imports and exports is
//! checked on the parsed binary first (nothing is compiled for a component
//! that could never run as a mapper), at most
//! [`MAX_CONCURRENT_COMPILES`] compilations run at once, and a caller waits
//! at most its timeout.
//!
//! Cranelift cannot be interrupted. A compilation past its caller's timeout
//! runs to its end on its own thread, still holding its slot (so the bound
//! on concurrent compilations holds for abandoned ones too), and its result
//! is dropped: nothing reaches the artifact cache but components that
//! passed every check.

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use wasmparser::{ComponentTypeRef, Parser, Payload};
use wasmtime::Engine;

use super::LoadError;
use super::limits::{MAX_COMPONENT_BYTES, MAX_CONCURRENT_COMPILES};
use super::validate::{EXPORT, import_allowed, preamble_problem};

/// Checks, without compiling, that `bytes` are a component no bigger than
/// [`MAX_COMPONENT_BYTES`] whose top-level imports are all allowed and which
/// exports [`EXPORT`]. Its exact types are checked after compilation.
pub(crate) fn precheck(bytes: &[u8]) -> Result<(), LoadError> {
    precheck_export(bytes, EXPORT)
}

/// [`precheck`] for a component of a world whose function is `export`.
pub(crate) fn precheck_export(bytes: &[u8], export: &str) -> Result<(), LoadError> {
    if bytes.len() > MAX_COMPONENT_BYTES {
        return Err(LoadError::TooLarge {
            size_bytes: bytes.len(),
            limit_bytes: MAX_COMPONENT_BYTES,
        });
    }
    if let Some(problem) = preamble_problem(bytes) {
        return Err(LoadError::NotAComponent(problem.into()));
    }
    let (imports, exports) =
        top_level_names(bytes).map_err(|e| LoadError::Compile(format!("{e}")))?;
    let forbidden: Vec<String> = imports
        .into_iter()
        .filter(|name| !import_allowed(name))
        .collect();
    if !forbidden.is_empty() {
        return Err(LoadError::ForbiddenImports(forbidden));
    }
    if !exports.iter().any(|name| name == export) {
        return Err(LoadError::WorldMismatch(format!(
            "it does not export `{export}` (it exports {})",
            if exports.is_empty() {
                "nothing".to_owned()
            } else {
                exports
                    .iter()
                    .map(|e| format!("`{e}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        )));
    }
    Ok(())
}

/// The names a component imports and exports at its top level (not those
/// of the modules and components nested in it). The caller has checked the
/// preamble: these are a component's bytes.
pub(crate) fn top_level_names(bytes: &[u8]) -> wasmparser::Result<(Vec<String>, Vec<String>)> {
    let (mut imports, mut exports) = (Vec::new(), Vec::new());
    // Nesting depth: nested modules and components end with their own `End`.
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(bytes) {
        match payload? {
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) => {
                if depth == 0 {
                    break;
                }
                depth -= 1;
            }
            Payload::ComponentImportSection(reader) if depth == 0 => {
                for import in reader {
                    let import = import?;
                    // A type import names a type the exports use (`context`,
                    // `profile`): no capability, and wasmtime does not list
                    // it among the component's imports either.
                    if !matches!(import.ty, ComponentTypeRef::Type(_)) {
                        imports.push(import.name.name.to_owned());
                    }
                }
            }
            Payload::ComponentExportSection(reader) if depth == 0 => {
                for export in reader {
                    exports.push(export?.name.name.to_owned());
                }
            }
            _ => {}
        }
    }
    Ok((imports, exports))
}

/// A counting semaphore for blocking callers, which records the most slots
/// ever held at once.
#[derive(Debug)]
pub(crate) struct CompileSlots {
    state: Mutex<SlotState>,
    freed: Condvar,
}

#[derive(Debug, Default)]
struct SlotState {
    held: usize,
    peak: usize,
}

/// One slot, given back when dropped (by whichever thread holds it last).
pub(crate) struct Slot(Arc<CompileSlots>);

impl Drop for Slot {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.held -= 1;
        drop(state);
        self.0.freed.notify_one();
    }
}

impl CompileSlots {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(SlotState::default()),
            freed: Condvar::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SlotState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A slot, waiting until `deadline` at most.
    fn acquire(self: &Arc<Self>, deadline: Instant) -> Option<Slot> {
        let mut state = self.lock();
        while state.held >= MAX_CONCURRENT_COMPILES {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            state = self
                .freed
                .wait_timeout(state, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        state.held += 1;
        state.peak = state.peak.max(state.held);
        Some(Slot(self.clone()))
    }

    /// The most compilations that ever ran at once.
    pub(crate) fn peak(&self) -> usize {
        self.lock().peak
    }

    /// Blocks until no compilation runs (abandoned ones included).
    pub(crate) fn wait_idle(&self) {
        let mut state = self.lock();
        while state.held > 0 {
            state = self.freed.wait(state).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// Compiles `bytes` (already prechecked) into a serialized artifact on a
/// thread of its own, in one of `slots`, within `timeout` (the wait for a
/// slot included).
pub(crate) fn compile(
    engine: &Engine,
    slots: &Arc<CompileSlots>,
    bytes: &[u8],
    timeout: Duration,
) -> Result<Vec<u8>, LoadError> {
    let deadline = Instant::now() + timeout;
    let timed_out = || LoadError::CompileTimeout {
        limit_secs: timeout.as_secs(),
    };
    let slot = slots.acquire(deadline).ok_or_else(timed_out)?;
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    let (engine, bytes) = (engine.clone(), bytes.to_vec());
    std::thread::Builder::new()
        .name("waypass-compile".into())
        .spawn(move || {
            let compiled = engine
                .precompile_component(&bytes)
                .map_err(|e| LoadError::Compile(format!("{e:#}")));
            // The slot is given back only now that the compiler is done,
            // whether or not anyone still waits for the result.
            drop(slot);
            // A caller that gave up has dropped the receiver: the result
            // goes nowhere.
            let _ = tx.send(compiled);
        })
        .map_err(|e| LoadError::Compile(format!("cannot start a compiler thread: {e}")))?;
    let left = deadline.saturating_duration_since(Instant::now());
    match rx.recv_timeout(left) {
        Ok(compiled) => compiled,
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            tracing::warn!(
                limit_secs = timeout.as_secs(),
                "a component is taking too long to compile; its result will be discarded"
            );
            Err(timed_out())
        }
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Err(LoadError::Compile(
            "the compiler stopped without an answer (it panicked; see the log)".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_wait_for_one_another_and_remember_the_most_held_at_once() {
        let slots = CompileSlots::new();
        let far = Instant::now() + Duration::from_secs(3600);
        let held: Vec<Slot> = (0..MAX_CONCURRENT_COMPILES)
            .map(|_| slots.acquire(far).expect("a free slot"))
            .collect();
        assert!(
            slots.acquire(Instant::now()).is_none(),
            "no slot beyond the bound"
        );
        drop(held);
        assert!(slots.acquire(Instant::now()).is_some());
        assert_eq!(slots.peak(), MAX_CONCURRENT_COMPILES);
        slots.wait_idle();
    }

    #[test]
    fn a_component_over_the_size_cap_is_refused_before_it_is_parsed() {
        let mut bytes = b"\0asm\x0d\0\x01\0".to_vec();
        bytes.resize(MAX_COMPONENT_BYTES + 1, 0);
        assert_eq!(
            precheck(&bytes),
            Err(LoadError::TooLarge {
                size_bytes: MAX_COMPONENT_BYTES + 1,
                limit_bytes: MAX_COMPONENT_BYTES
            })
        );
    }
}
