//! Secrets at rest, for tests: fixed keys and a check that bytes hold no
//! secret in the clear.

/// A secrets key (base64 of 32 bytes) for brokers that share a store.
pub const SECRETS_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
/// Another key: the next one in a rotation, or the wrong one.
pub const OTHER_SECRETS_KEY: &str = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";

/// The `needles` found in `haystack` as raw bytes (a database file, a
/// dump): none for a store whose secrets are sealed.
pub fn found_in<'a>(haystack: &[u8], needles: &[&'a str]) -> Vec<&'a str> {
    needles
        .iter()
        .copied()
        .filter(|n| haystack.windows(n.len()).any(|w| w == n.as_bytes()))
        .collect()
}
