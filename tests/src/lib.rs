//! Shared pieces of the end-to-end tests: the guest components built by
//! `build.rs`, and a stub provider on 127.0.0.1.

pub mod conformance;
pub mod login;
pub mod stub;

/// Paths of the guest components built for these tests.
pub mod guests {
    include!(concat!(env!("OUT_DIR"), "/guests.rs"));

    /// The bytes of a guest component.
    pub fn bytes(path: &str) -> Vec<u8> {
        std::fs::read(path).unwrap_or_else(|e| panic!("read guest {path}: {e}"))
    }
}
