//! Mappers by name: the loaded versions of each, and which one is active.
//!
//! A connection names its mapper as `name` (follow the active version) or
//! `name@N` (pinned). Swapping is replacing one number under the catalog's
//! lock; a login resolves its mapper once and holds that version's `Arc`
//! to the end, so logins in flight finish on the version they started with.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::mapper::LoadedMapper;

#[derive(Default, Clone)]
pub struct MapperRegistry {
    slots: HashMap<String, Slot>,
}

#[derive(Clone)]
struct Slot {
    active: u32,
    versions: BTreeMap<u32, Arc<LoadedMapper>>,
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
        assert!(parse_ref("m@0").is_err());
        assert!(parse_ref("m@x").is_err());
    }
}
