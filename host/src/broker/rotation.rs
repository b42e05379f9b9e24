//! Signing-key rotation through the store: a rotation or a revocation
//! writes the key set document (compare-and-swap), which moves the catalog
//! version; every instance then reloads its keys ([`follow_keys`]), so all
//! agree on what signs and what the JWKS lists.

use std::sync::Arc;

use super::{Broker, TOKEN_TTL};
use crate::keys::{KeyInfo, KeySet, RotationError};
use crate::store::StoreError;

/// Attempts at a rotation or revocation racing other writers before the
/// caller is told to retry: two admins rotating at the same instant is
/// rare, a loop of them would be a bug.
const MAX_KEY_WRITE_ATTEMPTS: usize = 3;

/// Why a key operation failed.
#[derive(Debug, thiserror::Error)]
pub enum KeyOpError {
    #[error(transparent)]
    Rotation(#[from] RotationError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the key set changed under this operation {MAX_KEY_WRITE_ATTEMPTS} times; try again")]
    Contended,
}

impl Broker {
    /// How long a previous key stays published: the longest lifetime of a
    /// token it signed (id_tokens and access tokens share [`TOKEN_TTL`]).
    pub fn key_overlap(&self) -> u64 {
        TOKEN_TTL.as_secs()
    }

    /// The keys and their states now.
    pub fn signing_keys(&self) -> Vec<KeyInfo> {
        self.keys.load().list(self.clock.now())
    }

    /// Rotates the signing keys (see `keys::rotation`); returns the keys
    /// after it.
    pub async fn rotate_signing_keys(&self) -> Result<Vec<KeyInfo>, KeyOpError> {
        let now = self.clock.now();
        let overlap = self.key_overlap();
        self.write_keys(|set| set.rotated(now, overlap)).await
    }

    /// Revokes `kid`: it leaves the JWKS at once.
    pub async fn revoke_signing_key(&self, kid: &str) -> Result<Vec<KeyInfo>, KeyOpError> {
        let now = self.clock.now();
        self.write_keys(|set| set.revoked(kid, now)).await
    }

    /// Reads the stored key set, applies `change`, and stores the result
    /// if nobody wrote in between; then serves it here at once.
    async fn write_keys(
        &self,
        change: impl Fn(&KeySet) -> Result<String, RotationError>,
    ) -> Result<Vec<KeyInfo>, KeyOpError> {
        for _ in 0..MAX_KEY_WRITE_ATTEMPTS {
            let stored = self.store.signing_keys().await?;
            let base = match &stored {
                Some(doc) => Arc::new(KeySet::from_document(doc).map_err(RotationError::from)?),
                // A broker given keys without a stored document (tests, an
                // embedder): its keys become the stored ones.
                None => self.keys.load_full(),
            };
            let document = change(&base)?;
            let next = KeySet::from_document(&document).map_err(RotationError::from)?;
            if self
                .store
                .replace_signing_keys(stored.as_deref(), &document)
                .await?
            {
                self.keys.store(Arc::new(next));
                return Ok(self.signing_keys());
            }
        }
        Err(KeyOpError::Contended)
    }

    /// Loads the stored key set if it differs from the one served.
    pub async fn reload_keys(&self) -> Result<(), KeyOpError> {
        let Some(document) = self.store.signing_keys().await? else {
            return Ok(());
        };
        let served = self.keys.load();
        if served.document().ok().as_deref() == Some(document.as_str()) {
            return Ok(());
        }
        let keys = KeySet::from_document(&document).map_err(RotationError::from)?;
        self.keys.store(Arc::new(keys));
        Ok(())
    }
}

/// Reloads `broker`'s keys whenever the catalog it serves moves (a
/// rotation on any instance moves it), until aborted.
pub async fn follow_keys(broker: Arc<Broker>) {
    let mut served = broker.catalog().served();
    while served.changed().await.is_ok() {
        if let Err(e) = broker.reload_keys().await {
            tracing::error!(error = %e, "the stored signing keys could not be loaded; serving the previous ones");
        }
    }
}
