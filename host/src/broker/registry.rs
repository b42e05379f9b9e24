//! Mappers by name: the loaded versions of each, and which one is active.
//!
//! A connection names its mapper as `name` (follow the active version) or
//! `name@N` (pinned). Swapping is replacing one number under the catalog's
//! lock; a login resolves its mapper once and holds that version's `Arc`
//! to the end, so logins in flight finish on the version they started with.
//!
//! Only what can be resolved stays loaded: when a version becomes active,
//! versions neither active nor pinned are dropped (a compiled component is
//! tens of MB). The store keeps every version, so a rollback or a new pin
//! loads one again.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use crate::mapper::LoadedMapper;

#[derive(Default, Clone)]
pub struct MapperRegistry {
    slots: HashMap<String, Slot<LoadedMapper>>,
}

/// One mapper's loaded versions (generic so the bookkeeping is testable
/// without compiling components).
#[derive(Clone)]
struct Slot<M> {
    active: u32,
    versions: BTreeMap<u32, Arc<M>>,
}

impl<M> Slot<M> {
    /// Drops the versions that are neither active nor in `pinned`; returns
    /// the dropped version numbers.
    fn unload_unused(&mut self, pinned: &BTreeSet<u32>) -> Vec<u32> {
        let active = self.active;
        let unused: Vec<u32> = self
            .versions
            .keys()
            .copied()
            .filter(|v| *v != active && !pinned.contains(v))
            .collect();
        for v in &unused {
            self.versions.remove(v);
        }
        unused
    }
}

/// Splits `name` or `name@N`.
pub fn parse_ref(reference: &str) -> Result<(&str, Option<u32>), String> {
    match reference.split_once('@') {
        None => Ok((reference, None)),
        Some((name, v)) => v
            .parse::<u32>()
            .ok()
            .filter(|v| *v > 0)
            .map(|v| (name, Some(v)))
            .ok_or_else(|| format!("`{reference}`: expected NAME or NAME@VERSION")),
    }
}

impl MapperRegistry {
    /// Adds a loaded version; `activate` makes it the one `name` follows.
    pub fn insert(&mut self, name: &str, version: u32, mapper: Arc<LoadedMapper>, activate: bool) {
        let slot = self.slots.entry(name.to_owned()).or_insert_with(|| Slot {
            active: version,
            versions: BTreeMap::new(),
        });
        slot.versions.insert(version, mapper);
        if activate {
            slot.active = version;
        }
    }

    /// Makes a loaded version active; false if it is not loaded.
    pub fn activate(&mut self, name: &str, version: u32) -> bool {
        match self.slots.get_mut(name) {
            Some(slot) if slot.versions.contains_key(&version) => {
                slot.active = version;
                true
            }
            _ => false,
        }
    }

    /// Unloads the versions of `name` that are neither active nor in
    /// `pinned` (those connections name as `name@N`); returns the version
    /// numbers dropped. Logins in flight keep their own `Arc`.
    pub fn unload_unused(&mut self, name: &str, pinned: &BTreeSet<u32>) -> Vec<u32> {
        self.slots
            .get_mut(name)
            .map(|slot| slot.unload_unused(pinned))
            .unwrap_or_default()
    }

    pub fn remove(&mut self, name: &str) -> bool {
        self.slots.remove(name).is_some()
    }

    /// The mapper a connection's reference names, and its version.
    pub fn resolve(&self, reference: &str) -> Option<(Arc<LoadedMapper>, u32)> {
        let (name, pinned) = parse_ref(reference).ok()?;
        let slot = self.slots.get(name)?;
        let version = pinned.unwrap_or(slot.active);
        slot.versions.get(&version).map(|m| (m.clone(), version))
    }

    pub fn active_version(&self, name: &str) -> Option<u32> {
        self.slots.get(name).map(|s| s.active)
    }

    pub fn is_loaded(&self, name: &str, version: u32) -> bool {
        self.slots
            .get(name)
            .is_some_and(|s| s.versions.contains_key(&version))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_a_name_or_a_name_at_a_positive_version() {
        assert_eq!(parse_ref("m"), Ok(("m", None)));
        assert_eq!(parse_ref("m@3"), Ok(("m", Some(3))));
        for bad in ["m@0", "m@x"] {
            assert_eq!(
                parse_ref(bad),
                Err(format!("`{bad}`: expected NAME or NAME@VERSION"))
            );
        }
    }

    #[test]
    fn unloading_keeps_the_active_version_and_pinned_ones_only() {
        let mut slot = Slot {
            active: 3,
            versions: (1..=4).map(|v| (v, Arc::new(v))).collect(),
        };
        // A login resolved version 1 before; nothing holds version 4.
        let in_flight = slot.versions[&1].clone();
        let unheld = Arc::downgrade(&slot.versions[&4]);
        let dropped = slot.unload_unused(&BTreeSet::from([2]));
        assert_eq!(dropped, [1, 4]);
        assert_eq!(slot.versions.keys().copied().collect::<Vec<_>>(), [2, 3]);
        // The registry let go of both: version 4 is freed at once, version 1
        // lives exactly as long as the login that holds it.
        assert!(unheld.upgrade().is_none(), "version 4 is freed");
        assert_eq!(Arc::strong_count(&in_flight), 1, "only the login holds 1");
        let version_1 = Arc::downgrade(&in_flight);
        drop(in_flight);
        assert!(version_1.upgrade().is_none(), "freed when the login ends");
        assert_eq!(slot.unload_unused(&BTreeSet::new()), [2]);
        assert_eq!(slot.versions.keys().copied().collect::<Vec<_>>(), [3]);
    }

    #[test]
    fn unloading_an_unknown_mapper_drops_nothing() {
        let mut registry = MapperRegistry::default();
        assert!(registry.unload_unused("ghost", &BTreeSet::new()).is_empty());
    }
}
