//! Shared pieces of the end-to-end tests: the guest components built by
//! `build.rs`, and a stub provider on 127.0.0.1.

pub mod actions;
pub mod bench;
pub mod browser;
pub mod chromium;
pub mod conformance;
pub mod everything;
pub mod gate;
pub mod login;
pub mod oidc;
pub mod postgres;
pub mod secrets;
pub mod served;
pub mod stub;

/// Paths of the guest components built for these tests.
pub mod guests {
    include!(concat!(env!("OUT_DIR"), "/guests.rs"));

    /// The bytes of a guest component.
    pub fn bytes(path: &str) -> Vec<u8> {
        std::fs::read(path).unwrap_or_else(|e| panic!("read guest {path}: {e}"))
    }
}

/// Mappers no build script builds (Python, JavaScript), built on first use
/// through `waypass mapper build`'s own code, pinned toolchain included.
pub mod plugins {
    use std::collections::HashMap;
    use std::path::{Path, PathBuf};
    use std::sync::Mutex;

    use waypass::build::World;

    /// The component of the mapper in `plugins/mappers/<name>`, built once
    /// per test binary (builds are serialised: toolchains install once).
    pub fn build(name: &str) -> PathBuf {
        build_dir(&dir(name))
    }

    /// The source directory of the mapper `plugins/mappers/<name>`.
    pub fn dir(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../plugins/mappers")
            .join(name)
    }

    /// The component of the mapper in `dir`, built once per test binary.
    pub fn build_dir(dir: &Path) -> PathBuf {
        build_world(dir, World::Mapper)
    }

    /// The component of the `world` project in `dir` (a mapper or an
    /// Action), built once per test binary.
    pub fn build_world(dir: &Path, world: World) -> PathBuf {
        static BUILT: Mutex<Option<HashMap<(PathBuf, World), PathBuf>>> = Mutex::new(None);
        let mut built = BUILT.lock().unwrap_or_else(|p| p.into_inner());
        let built = built.get_or_insert_with(HashMap::new);
        let key = (dir.to_owned(), world);
        if let Some(path) = built.get(&key) {
            return path.clone();
        }
        let path = waypass::build::build(dir, world)
            .unwrap_or_else(|e| panic!("building {}: {e:#}", dir.display()));
        built.insert(key, path.clone());
        path
    }

    /// The bytes of [`build`]'s component.
    pub fn bytes(name: &str) -> Vec<u8> {
        std::fs::read(build(name)).unwrap_or_else(|e| panic!("reading {name}'s component: {e}"))
    }
}
