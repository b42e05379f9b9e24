//! Signing-key rotation: the life of each key (next → current → previous,
//! or revoked) and the documents a rotation or a revocation writes.
//!
//! - A rotation makes each algorithm's next key current (it has been in
//!   the JWKS since the previous rotation, so apps that fetched the JWKS
//!   since then already trust it), the current one previous, and
//!   generates new next keys. A key set with no next key yet (one written
//!   before rotation existed) gets a fresh current key instead.
//! - A previous key stays published until `retire_at` = rotation time +
//!   the longest token lifetime: every token it signed has expired by then.
//! - A revoked key leaves the JWKS at once. The current key cannot be
//!   revoked (rotate first): something must sign.

use serde::Serialize;

use super::{Alg, KeyError, KeySet, KeyState, StoredKey, file, generate_stored};

/// Why a rotation or a revocation was refused.
#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    #[error("no signing key has kid `{0}`")]
    Unknown(String),
    #[error("key `{0}` signs now and cannot be revoked; rotate first")]
    Current(String),
    #[error(transparent)]
    Key(#[from] KeyError),
}

/// A key as `GET /api/v2/keys/signing` shows it (Auth0's fields where they
/// apply; no certificates: Waypass publishes bare JWKs).
#[derive(Debug, Clone, Serialize)]
pub struct KeyInfo {
    pub kid: String,
    pub alg: Alg,
    pub current: bool,
    pub next: bool,
    pub previous: bool,
    pub revoked: bool,
    /// Whether the JWKS lists it now.
    pub published: bool,
    /// RFC 3339.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_since: Option<String>,
    /// For a previous key: when it leaves the JWKS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_until: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
    /// The kid is the RFC 7638 thumbprint.
    pub thumbprint: String,
}

/// Whether `key` is in the JWKS at `now`.
fn published(key: &StoredKey, now: u64) -> bool {
    match key.state {
        KeyState::Next | KeyState::Current => true,
        KeyState::Previous => key.retire_at.is_none_or(|t| t > now),
        KeyState::Revoked => false,
    }
}

impl KeySet {
    /// The JWKS at `now`: [`KeySet::jwks`] without previous keys that
    /// have retired.
    pub fn jwks_at(&self, now: u64) -> serde_json::Value {
        serde_json::json!({
            "keys": self
                .keys
                .iter()
                .zip(&self.stored)
                .filter(|(_, s)| published(s, now))
                .map(|(k, _)| k.jwk())
                .collect::<Vec<_>>(),
        })
    }

    /// The key document of this set, as a store holds it.
    pub fn document(&self) -> Result<String, KeyError> {
        to_document(self.stored.clone())
    }

    /// Every key with its state at `now`, in document order.
    pub fn list(&self, now: u64) -> Vec<KeyInfo> {
        let date = |t: Option<u64>| t.map(crate::events::rfc3339);
        self.stored
            .iter()
            .map(|k| KeyInfo {
                kid: k.kid.clone(),
                alg: k.alg,
                current: k.state == KeyState::Current,
                next: k.state == KeyState::Next,
                previous: k.state == KeyState::Previous,
                revoked: k.state == KeyState::Revoked,
                published: published(k, now),
                current_since: date(match k.state {
                    KeyState::Current | KeyState::Previous => {
                        Some(k.current_since.unwrap_or(k.created_at))
                    }
                    _ => None,
                }),
                current_until: date(k.retire_at),
                revoked_at: date(k.revoked_at),
                thumbprint: k.kid.clone(),
            })
            .collect()
    }

    /// The document after a rotation at `now`; previous keys stay
    /// published for `overlap` seconds, and those retired by `now` are
    /// dropped.
    pub fn rotated(&self, now: u64, overlap: u64) -> Result<String, RotationError> {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let mut keys: Vec<StoredKey> = self
            .stored
            .iter()
            .filter(|k| k.state != KeyState::Previous || published(k, now))
            .cloned()
            .collect();
        let mut fresh: Option<Vec<StoredKey>> = None;
        for alg in Alg::ALL {
            for k in keys
                .iter_mut()
                .filter(|k| k.alg == alg && k.state == KeyState::Current)
            {
                k.state = KeyState::Previous;
                k.retire_at = Some(now.saturating_add(overlap));
            }
            let next = keys
                .iter_mut()
                .filter(|k| k.alg == alg && k.state == KeyState::Next)
                .max_by_key(|k| k.created_at);
            match next {
                Some(k) => {
                    k.state = KeyState::Current;
                    k.current_since = Some(now);
                }
                None => {
                    // No next key was published: a fresh one signs at once.
                    let generated = match &mut fresh {
                        Some(g) => g,
                        None => fresh.insert(generate_stored(&rng, now)?),
                    };
                    if let Some(pos) = generated.iter().position(|k| k.alg == alg) {
                        let mut k = generated.remove(pos);
                        k.current_since = Some(now);
                        keys.push(k);
                    }
                }
            }
        }
        for mut k in generate_stored(&rng, now)? {
            k.state = KeyState::Next;
            keys.push(k);
        }
        Ok(to_document(keys)?)
    }

    /// The document with `kid` revoked at `now`.
    pub fn revoked(&self, kid: &str, now: u64) -> Result<String, RotationError> {
        let mut keys = self.stored.clone();
        let key = keys
            .iter_mut()
            .find(|k| k.kid == kid)
            .ok_or_else(|| RotationError::Unknown(kid.to_owned()))?;
        match key.state {
            KeyState::Current => return Err(RotationError::Current(kid.to_owned())),
            KeyState::Revoked => {}
            KeyState::Next | KeyState::Previous => {
                key.state = KeyState::Revoked;
                key.revoked_at = Some(now);
            }
        }
        Ok(to_document(keys)?)
    }
}

fn to_document(keys: Vec<StoredKey>) -> Result<String, KeyError> {
    serde_json::to_string(&file::KeyFile {
        version: file::VERSION,
        keys,
    })
    .map_err(|e| KeyError::Generate(e.to_string()))
}
