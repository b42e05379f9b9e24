//! Mappers by name: the loaded versions of each, and which one is active,
//! as one catalog snapshot holds them.
//!
//! A connection names its mapper as `name` (follow the active version) or
//! `name@N` (pinned). A registry is never changed once its snapshot is
//! served: a swap is a new snapshot. A login resolves its mapper once and
//! holds that version's `Arc` to the end, so logins in flight finish on the
//! version they started with, and a version no snapshot holds any more is
//! freed when the last of them ends.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::mapper::LoadedMapper;

#[derive(Default, Clone)]
pub struct MapperRegistry {
    slots: HashMap<String, Slot<LoadedMapper>>,
}

/// One mapper's active version and loaded versions (generic so the
/// bookkeeping is testable without compiling components).
#[derive(Clone)]
struct Slot<M> {
    active: u32,
    versions: BTreeMap<u32, Arc<M>>,
}

impl<M> Default for Slot<M> {
    fn default() -> Self {
        Self {
            active: 0,
            versions: BTreeMap::new(),
        }
    }
}

impl<M> Slot<M> {
    /// The version `pinned` names, or the active one.
    fn resolve(&self, pinned: Option<u32>) -> Option<(Arc<M>, u32)> {
        let version = pinned.unwrap_or(self.active);
        self.versions
            .get(&version)
            .map(|m| (Arc::clone(m), version))
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
    /// Records which version `name` follows (loaded or not: a version that
    /// failed to load resolves to nothing rather than to an older one).
    pub fn set_active(&mut self, name: &str, version: u32) {
        self.slots.entry(name.to_owned()).or_default().active = version;
    }

    /// Adds a loaded version.
    pub fn insert(&mut self, name: &str, version: u32, mapper: Arc<LoadedMapper>) {
        self.slots
            .entry(name.to_owned())
            .or_default()
            .versions
            .insert(version, mapper);
    }

    /// A loaded version.
    pub fn get(&self, name: &str, version: u32) -> Option<Arc<LoadedMapper>> {
        self.slots.get(name)?.versions.get(&version).cloned()
    }

    /// The mapper a connection's reference names, and its version.
    pub fn resolve(&self, reference: &str) -> Option<(Arc<LoadedMapper>, u32)> {
        let (name, pinned) = parse_ref(reference).ok()?;
        self.slots.get(name)?.resolve(pinned)
    }

    pub fn active_version(&self, name: &str) -> Option<u32> {
        self.slots.get(name).map(|s| s.active)
    }

    pub fn is_loaded(&self, name: &str, version: u32) -> bool {
        self.slots
            .get(name)
            .is_some_and(|s| s.versions.contains_key(&version))
    }

    /// Every loaded `(name, version)`, in order.
    pub fn loaded(&self) -> Vec<(String, u32)> {
        let mut loaded: Vec<(String, u32)> = self
            .slots
            .iter()
            .flat_map(|(name, slot)| slot.versions.keys().map(|v| (name.clone(), *v)))
            .collect();
        loaded.sort();
        loaded
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
    fn a_name_resolves_to_its_active_version_and_a_pin_to_its_own_and_nothing_else() {
        let slot = Slot {
            active: 3,
            versions: [(2, Arc::new(2)), (3, Arc::new(3))].into_iter().collect(),
        };
        assert_eq!(slot.resolve(None).map(|(m, v)| (*m, v)), Some((3, 3)));
        assert_eq!(slot.resolve(Some(2)).map(|(m, v)| (*m, v)), Some((2, 2)));
        assert!(slot.resolve(Some(1)).is_none(), "not loaded: nothing");
        let unloaded_active = Slot {
            active: 4,
            ..slot.clone()
        };
        assert!(
            unloaded_active.resolve(None).is_none(),
            "an active version that did not load is not replaced by another"
        );
    }

    #[test]
    fn a_version_held_by_a_login_outlives_the_registry_that_served_it() {
        let slot = Slot {
            active: 1,
            versions: [(1, Arc::new(1))].into_iter().collect(),
        };
        let (in_flight, _) = slot.resolve(None).expect("resolves");
        let held = Arc::downgrade(&in_flight);
        drop(slot);
        assert!(held.upgrade().is_some(), "the login still holds it");
        drop(in_flight);
        assert!(held.upgrade().is_none(), "freed when the login ends");
    }
}
