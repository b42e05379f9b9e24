//! One call's memory: the guest's linear memories *and* what the host holds
//! on the guest's behalf — wasi:http fields and bodies, every other resource
//! in the call's table, log lines, captured output — counted against the
//! same cap. A guest that cannot grow its own memory must not be able to
//! grow the host's instead.
//!
//! Two kinds of host charges:
//! - *charged* bytes, added and given back where the host knows the size
//!   (a response body while the host holds it, a log line kept);
//! - *resource* bytes, measured by walking the call's resource table
//!   ([`resource_bytes`]) at every epoch tick and when the call ends: the
//!   wasi:http implementation allocates those itself, out of our sight.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi_http::FieldMap;
use wasmtime_wasi_http::p2::body::HostOutgoingBody;

use super::limits::{
    MAX_TABLE_ELEMENTS, OUTGOING_BODY_BUFFER_CHUNKS, OUTGOING_BODY_CHUNK_BYTES,
    RESOURCE_ENTRY_BYTES,
};

/// The memory cap of one call and what counts against it. Shared (behind
/// an `Arc`) by the store's limiter, the host imports and the egress path.
#[derive(Debug)]
pub(crate) struct MemoryBudget {
    limit: usize,
    /// Bytes of the guest's linear memories.
    linear: AtomicUsize,
    /// Host bytes charged and released by size.
    charged: AtomicUsize,
    /// Host bytes held by the call's resources, as last measured.
    resources: AtomicUsize,
    /// The most of all three the call held at once.
    peak: AtomicUsize,
    /// A `memory.grow` was refused (the guest may cope with that).
    linear_refused: AtomicBool,
    /// The host's side went over the cap: the call fails.
    host_exceeded: AtomicBool,
}

impl MemoryBudget {
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            limit,
            linear: AtomicUsize::new(0),
            charged: AtomicUsize::new(0),
            resources: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            linear_refused: AtomicBool::new(false),
            host_exceeded: AtomicBool::new(false),
        }
    }

    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    /// Everything the call holds now.
    pub(crate) fn in_use(&self) -> usize {
        self.linear
            .load(Ordering::Relaxed)
            .saturating_add(self.charged.load(Ordering::Relaxed))
            .saturating_add(self.resources.load(Ordering::Relaxed))
    }

    /// The most the call held at once, host side included.
    pub(crate) fn peak(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }

    /// Bytes the call may still take.
    pub(crate) fn room(&self) -> usize {
        self.limit.saturating_sub(self.in_use())
    }

    /// Whether anything was refused for lack of memory.
    pub(crate) fn exceeded(&self) -> bool {
        self.linear_refused.load(Ordering::Relaxed) || self.host_exceeded()
    }

    /// Whether the host's side went over the cap (the call then fails,
    /// whatever the guest answers).
    pub(crate) fn host_exceeded(&self) -> bool {
        self.host_exceeded.load(Ordering::Relaxed)
    }

    /// Marks the call as out of memory on the host's side.
    pub(crate) fn mark_host_exceeded(&self) {
        self.host_exceeded.store(true, Ordering::Relaxed);
    }

    fn note_peak(&self) {
        self.peak.fetch_max(self.in_use(), Ordering::Relaxed);
    }

    /// Charges `bytes` if they fit; `false` (charging nothing) if not.
    pub(crate) fn try_charge(&self, bytes: usize) -> bool {
        self.charged.fetch_add(bytes, Ordering::Relaxed);
        if self.in_use() > self.limit {
            self.charged.fetch_sub(bytes, Ordering::Relaxed);
            return false;
        }
        self.note_peak();
        true
    }

    /// Charges as much of `wanted` as fits and returns it (a reservation
    /// for a body whose size is known only once it has arrived).
    pub(crate) fn reserve_up_to(&self, wanted: usize) -> usize {
        let granted = wanted.min(self.room());
        if self.try_charge(granted) { granted } else { 0 }
    }

    /// Gives back bytes charged before.
    pub(crate) fn release(&self, bytes: usize) {
        // Never below zero, whatever the caller got wrong.
        let _ = self
            .charged
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| {
                Some(c.saturating_sub(bytes))
            });
    }

    /// Records what the call's resources hold now; `false` if that takes
    /// the call over its cap (which is then marked exceeded).
    pub(crate) fn set_resource_bytes(&self, bytes: usize) -> bool {
        self.resources.store(bytes, Ordering::Relaxed);
        self.note_peak();
        if self.in_use() > self.limit {
            self.mark_host_exceeded();
            return false;
        }
        true
    }
}

/// The store's [`ResourceLimiter`]: linear memory growth is refused when
/// it, with what the host holds for the call, would pass the cap.
pub(crate) struct MemoryLimiter {
    pub(crate) budget: std::sync::Arc<MemoryBudget>,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let b = &self.budget;
        let linear = b.linear.load(Ordering::Relaxed);
        let next = linear.saturating_sub(current).saturating_add(desired);
        let host = b.charged.load(Ordering::Relaxed) + b.resources.load(Ordering::Relaxed);
        if next.saturating_add(host) > b.limit {
            b.linear_refused.store(true, Ordering::Relaxed);
            return Ok(false);
        }
        b.linear.store(next, Ordering::Relaxed);
        b.note_peak();
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

/// Bytes the host holds for the resources in `table`: every entry's
/// bookkeeping, the contents of every `fields` (a map shared by clones that
/// were never written to is counted once), and the buffer every outgoing
/// body may fill. Cost: one pass over the table and the headers in it,
/// both bounded by the table's and the fields' caps.
pub(crate) fn resource_bytes(table: &mut ResourceTable) -> usize {
    let mut entries = 0usize;
    let mut bytes = 0usize;
    let mut maps_seen = HashSet::new();
    for entry in table.iter_mut() {
        entries += 1;
        if let Some(fields) = entry.downcast_ref::<FieldMap>() {
            let map: &http::HeaderMap = fields;
            if maps_seen.insert(std::ptr::from_ref(map) as usize) {
                bytes = bytes.saturating_add(header_map_bytes(map));
            }
        } else if entry.is::<HostOutgoingBody>() {
            bytes =
                bytes.saturating_add((OUTGOING_BODY_BUFFER_CHUNKS + 1) * OUTGOING_BODY_CHUNK_BYTES);
        }
    }
    bytes.saturating_add(entries.saturating_mul(RESOURCE_ENTRY_BYTES))
}

/// A header map's size as wasmtime's `fields` limit counts it: each name
/// and value with its struct.
fn header_map_bytes(map: &http::HeaderMap) -> usize {
    map.iter()
        .map(|(name, value)| {
            name.as_str().len()
                + value.len()
                + size_of::<http::HeaderName>()
                + size_of::<http::HeaderValue>()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_charges_and_linear_memory_share_one_cap() {
        let budget = std::sync::Arc::new(MemoryBudget::new(1000));
        let mut limiter = MemoryLimiter {
            budget: budget.clone(),
        };
        assert_eq!(limiter.memory_growing(0, 600, None).ok(), Some(true));
        assert!(budget.try_charge(300));
        assert!(!budget.try_charge(200), "600 + 300 + 200 is over 1000");
        assert_eq!(budget.in_use(), 900);
        assert_eq!(
            limiter.memory_growing(600, 800, None).ok(),
            Some(false),
            "the host's 300 leave no room for 200 more linear bytes"
        );
        budget.release(300);
        assert_eq!(limiter.memory_growing(600, 800, None).ok(), Some(true));
        assert_eq!(budget.peak(), 900, "the peak counts host bytes too");
        assert!(!budget.host_exceeded());
    }

    #[test]
    fn a_reservation_is_cut_to_the_room_left_and_measured_resources_can_exceed() {
        let budget = MemoryBudget::new(1000);
        assert!(budget.try_charge(700));
        assert_eq!(budget.reserve_up_to(500), 300);
        assert_eq!(budget.reserve_up_to(500), 0);
        budget.release(1000);
        assert!(budget.set_resource_bytes(999));
        assert!(!budget.set_resource_bytes(1001));
        assert!(budget.host_exceeded() && budget.exceeded());
    }

    #[test]
    fn fields_shared_by_clones_count_once_and_written_copies_count_again() {
        let mut table = ResourceTable::new();
        let header = |i: usize| http::HeaderName::try_from(format!("x-h{i}")).expect("name");
        let mut base = FieldMap::new_mutable(MAX_FIELDS);
        for i in 0..10 {
            base.append_raw(header(i), http::HeaderValue::from_static("v"))
                .expect("fits");
        }
        let one = header_map_bytes(&base);
        table.push(base.clone()).expect("room");
        table.push(base.clone()).expect("room");
        assert_eq!(
            resource_bytes(&mut table),
            one + 2 * RESOURCE_ENTRY_BYTES,
            "two handles, one shared map"
        );
        let mut written = base.clone();
        written
            .append_raw(header(10), http::HeaderValue::from_static("w"))
            .expect("fits");
        let copy = header_map_bytes(&written);
        table.push(written).expect("room");
        assert_eq!(
            resource_bytes(&mut table),
            one + copy + 3 * RESOURCE_ENTRY_BYTES,
            "the written clone is a copy of its own"
        );
    }

    const MAX_FIELDS: usize = super::super::limits::MAX_FIELDS_BYTES;
}
