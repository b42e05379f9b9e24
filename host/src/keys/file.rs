//! The key document's format: what the store holds, and what `keys.json`
//! held before the keys moved into the store.
//!
//! ```json
//! {
//!   "version": 1,
//!   "keys": [
//!     {"kid": "…", "alg": "RS256", "created_at": 1767225600, "pkcs8": "MIIEv…"},
//!     {"kid": "…", "alg": "ES256", "created_at": 1767225600, "pkcs8": "MIGH…"}
//!   ]
//! }
//! ```
//!
//! `pkcs8` is the private key as PKCS#8 DER in standard base64 (padded, as
//! `openssl` prints it); `kid` is the key's RFC 7638 thumbprint, checked
//! against the key on load.

use serde::{Deserialize, Serialize};

use super::Alg;

/// The only format version so far; a document with another is refused rather
/// than guessed at.
pub(super) const VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
pub(super) struct KeyFile {
    pub version: u32,
    pub keys: Vec<StoredKey>,
}

#[derive(Serialize, Deserialize)]
pub(super) struct StoredKey {
    pub kid: String,
    pub alg: Alg,
    /// Unix seconds. The newest key per algorithm signs.
    pub created_at: u64,
    pub pkcs8: String,
}
