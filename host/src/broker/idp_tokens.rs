//! The provider's tokens (issue #12 §7): kept at each login, per identity,
//! sealed at rest by the store ([`crate::store::SealedStore`]), and read
//! back for the management API (`admin/users.rs`, only for a caller
//! holding `read:user_idp_tokens`).

use super::Broker;
use crate::mapper::TokenSet;
use crate::store::{IdpTokens, StoreError};

/// What a login keeps of the token exchange's answer.
pub(super) struct ProviderTokens {
    access_token: String,
    refresh_token: Option<String>,
    expires_at: Option<u64>,
}

impl ProviderTokens {
    /// Read before the mapper takes the token set; `expires_in` (RFC 6749
    /// §5.1) counted from `now`, the exchange's time.
    pub(super) fn of(tokens: &TokenSet, now: u64) -> Self {
        Self {
            access_token: tokens.access_token.clone(),
            refresh_token: tokens.refresh_token.clone(),
            expires_at: tokens.expires_in.map(|s| now.saturating_add(s)),
        }
    }
}

impl ProviderTokens {
    /// What is stored of this login for the identity (connection id, the
    /// provider's user id), replacing the previous login's: written with
    /// the login's user (`Broker::record_user`).
    pub(super) fn for_identity(
        self,
        connection_id: &str,
        provider_user_id: &str,
        now: u64,
    ) -> IdpTokens {
        IdpTokens {
            connection_id: connection_id.to_owned(),
            provider_user_id: provider_user_id.to_owned(),
            access_token: self.access_token,
            refresh_token: self.refresh_token,
            expires_at: self.expires_at,
            updated_at: now,
        }
    }
}

impl Broker {
    /// Deletes the provider's tokens of a deleted user's identities.
    pub(crate) async fn forget_idp_tokens(
        &self,
        identities: &[crate::store::StoredIdentity],
    ) -> Result<(), StoreError> {
        for identity in identities {
            if let Some(connection) = self.connection(&identity.connection) {
                self.store
                    .delete_idp_tokens(&connection.id, &identity.provider_user_id)
                    .await?;
            }
        }
        Ok(())
    }
}
