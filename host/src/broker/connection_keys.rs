//! A connection's own keys, for `private_key_jwt` (RFC 7523): kept in the
//! store (one key document per connection, the format of the broker's
//! signing keys), made on first need, published at
//! `<issuer>/connections/<name>/jwks.json` for the provider to fetch, and
//! rotated through the management API.

use std::sync::Arc;

use super::Broker;
use crate::keys::{KeyError, KeySet};
use crate::model::Connection;
use crate::store::StoreError;

/// Why a connection's keys could not be had.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionKeysError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Keys(#[from] KeyError),
    /// Another rotation replaced the document first.
    #[error("the keys were rotated meanwhile; try again")]
    Concurrent,
}

impl Broker {
    /// The connection's key set, made and stored on first need (instances
    /// asking at once agree on the one stored first).
    pub(crate) async fn connection_keys(
        &self,
        connection: &Connection,
    ) -> Result<Arc<KeySet>, ConnectionKeysError> {
        let document = match self.store.connection_keys(&connection.id).await? {
            Some(document) => document,
            None => {
                let fresh = KeySet::generate_document()?;
                self.store
                    .init_connection_keys(&connection.id, &fresh)
                    .await?
            }
        };
        Ok(Arc::new(KeySet::from_document(&document)?))
    }

    /// The public JWKS of connection `name` (RFC 7517), when it
    /// authenticates with `private_key_jwt`; `None` for an unknown
    /// connection or one that does not.
    pub async fn connection_jwks(
        &self,
        name: &str,
    ) -> Result<Option<serde_json::Value>, ConnectionKeysError> {
        let Some(connection) = self.connection(name) else {
            return Ok(None);
        };
        if connection.spec.options.token_endpoint_auth_method
            != crate::model::TokenAuthMethod::PrivateKeyJwt
        {
            return Ok(None);
        }
        Ok(Some(
            self.connection_keys(&connection).await?.jwks().clone(),
        ))
    }

    /// Rotates the keys of the connection with id `connection_id`: new
    /// keys sign from now on, the previous ones stay published. Returns the
    /// new JWKS.
    pub(crate) async fn rotate_connection_keys(
        &self,
        connection_id: &str,
    ) -> Result<serde_json::Value, ConnectionKeysError> {
        let current = match self.store.connection_keys(connection_id).await? {
            Some(document) => document,
            None => {
                let fresh = KeySet::generate_document()?;
                self.store
                    .init_connection_keys(connection_id, &fresh)
                    .await?
            }
        };
        let next = KeySet::rotate_document(&current)?;
        if !self
            .store
            .replace_connection_keys(connection_id, &current, &next)
            .await?
        {
            return Err(ConnectionKeysError::Concurrent);
        }
        tracing::info!(
            connection_id,
            "a connection's private_key_jwt keys were rotated"
        );
        Ok(KeySet::from_document(&next)?.jwks().clone())
    }
}
