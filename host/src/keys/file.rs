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

#[derive(Clone, Serialize, Deserialize)]
pub(super) struct StoredKey {
    pub kid: String,
    pub alg: Alg,
    /// Unix seconds. The newest current key per algorithm signs.
    pub created_at: u64,
    pub pkcs8: String,
    /// Where the key is in its life; documents written before rotation
    /// existed hold only current keys (the default).
    #[serde(default, skip_serializing_if = "KeyState::is_current")]
    pub state: KeyState,
    /// For a previous key: when it leaves the JWKS (every token it signed
    /// has expired by then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retire_at: Option<u64>,
    /// When the key became current (absent: since `created_at`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_since: Option<u64>,
    /// When the key was revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<u64>,
}

/// A signing key's life: next (published, signs nothing) → current (signs)
/// → previous (published until its tokens expire); revoked at any point
/// but current (unpublished at once).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyState {
    Next,
    #[default]
    Current,
    Previous,
    Revoked,
}

impl KeyState {
    fn is_current(&self) -> bool {
        *self == Self::Current
    }
}
