//! What a mapper component may import, checked when it is loaded.

use serde::Serialize;
use wasmtime::Engine;
use wasmtime::component::Component;

/// The function every mapper exports.
pub(crate) const EXPORT: &str = "fetch-user-profile";

/// The world's own interfaces, at `0.1.x`.
const WORLD_PACKAGE: (&str, &str) = ("waypass:mapper", "0.1.");
const WORLD_INTERFACES: &[&str] = &["types", "http", "log"];

/// WASI 0.2 interfaces a mapper may import. Each is linked, but locked down
/// (see `HostState::new`): no files, environment, arguments or sockets; the
/// network only through `wasi:http/outgoing-handler` under the egress policy.
/// Language runtimes (CPython, StarlingMonkey) import these whether they use
/// them or not, so refusing the import would refuse the language.
const WASI_VERSION: &str = "0.2.";
const WASI_INTERFACES: &[(&str, &[&str])] = &[
    ("wasi:io", &["error", "poll", "streams"]),
    ("wasi:clocks", &["wall-clock", "monotonic-clock"]),
    ("wasi:random", &["random", "insecure", "insecure-seed"]),
    (
        "wasi:cli",
        &[
            "environment",
            "exit",
            "stdin",
            "stdout",
            "stderr",
            "terminal-input",
            "terminal-output",
            "terminal-stdin",
            "terminal-stdout",
            "terminal-stderr",
        ],
    ),
    ("wasi:filesystem", &["types", "preopens"]),
    (
        "wasi:sockets",
        &[
            "network",
            "instance-network",
            "tcp",
            "tcp-create-socket",
            "udp",
            "udp-create-socket",
            "ip-name-lookup",
        ],
    ),
    ("wasi:http", &["types", "outgoing-handler"]),
];

/// A component's imports and exports, by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ComponentInfo {
    pub imports: Vec<String>,
    pub exports: Vec<String>,
}

impl ComponentInfo {
    pub(crate) fn of(engine: &Engine, component: &Component) -> Self {
        let ty = component.component_type();
        Self {
            imports: ty
                .imports(engine)
                .map(|(name, _)| name.to_owned())
                .collect(),
            exports: ty
                .exports(engine)
                .map(|(name, _)| name.to_owned())
                .collect(),
        }
    }

    /// Imports a mapper may not have.
    pub(crate) fn forbidden_imports(&self) -> Vec<String> {
        self.imports
            .iter()
            .filter(|name| !import_allowed(name))
            .cloned()
            .collect()
    }
}

/// Whether a mapper may import `name` (an interface, `package/name@version`).
pub(crate) fn import_allowed(name: &str) -> bool {
    let Some((path, version)) = name.split_once('@') else {
        return false;
    };
    let Some((package, interface)) = path.split_once('/') else {
        return false;
    };
    if package == WORLD_PACKAGE.0 {
        return version.starts_with(WORLD_PACKAGE.1) && WORLD_INTERFACES.contains(&interface);
    }
    version.starts_with(WASI_VERSION)
        && WASI_INTERFACES
            .iter()
            .any(|(pkg, ifaces)| *pkg == package && ifaces.contains(&interface))
}

/// Why bytes are not a component at all, judged from the preamble, so the
/// message can say what they are instead.
pub(crate) fn preamble_problem(bytes: &[u8]) -> Option<&'static str> {
    const MAGIC: &[u8] = b"\0asm";
    if bytes.len() < 8 || &bytes[..4] != MAGIC {
        return Some("the bytes are not WebAssembly (no `\\0asm` preamble)");
    }
    // Layer 0 is a core module, layer 1 a component (component model binary format).
    match bytes[6..8] {
        [0, 0] => Some(
            "this is a core WebAssembly module, not a component; build for wasm32-wasip2 \
             (or wrap it with `wasm-tools component new`)",
        ),
        [1, 0] => None,
        _ => Some("unknown WebAssembly layer in the preamble"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_worlds_own_interfaces_and_locked_down_wasi_are_allowed() {
        for name in [
            "waypass:mapper/http@0.1.0",
            "waypass:mapper/types@0.1.3",
            "wasi:io/streams@0.2.0",
            "wasi:cli/stderr@0.2.6",
            "wasi:http/outgoing-handler@0.2.3",
            "wasi:sockets/tcp@0.2.0",
        ] {
            assert!(import_allowed(name), "{name}");
        }
    }

    #[test]
    fn other_packages_versions_and_interfaces_are_refused() {
        for name in [
            "evil:net/raw-socket@0.1.0",
            "waypass:mapper/http@0.2.0",
            "waypass:mapper/admin@0.1.0",
            "wasi:http/incoming-handler@0.2.0",
            "wasi:io/streams@0.3.0",
            "wasi:keyvalue/store@0.2.0",
            "unversioned",
            "plain-function",
        ] {
            assert!(!import_allowed(name), "{name}");
        }
    }

    #[test]
    fn core_modules_and_garbage_are_named_as_such() {
        assert!(preamble_problem(b"hello world").is_some_and(|m| m.contains("not WebAssembly")));
        assert!(
            preamble_problem(b"\0asm\x01\0\0\0")
                .is_some_and(|m| m.contains("core WebAssembly module"))
        );
        assert_eq!(preamble_problem(b"\0asm\x0d\0\x01\0"), None);
    }
}
