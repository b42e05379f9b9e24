//! The provider's tokens, per identity (issue #12 §7): the access and
//! refresh tokens (and the access token's expiry) the token exchange of
//! the identity's latest login returned, kept so an operator's service can
//! call the provider's API for the user later. Auth0 hands them out in the
//! user's `identities[]` only to callers holding `read:user_idp_tokens`;
//! so does the management API (`admin/users.rs`).
//!
//! Kept in a table of their own, keyed by (connection id, the provider's
//! user id), apart from users and identities. Every backend stores the
//! token values as it is given them; [`super::SealedStore`] seals them
//! before (table `idp_tokens`, the identity, the field).

use std::fmt;

use async_trait::async_trait;

use super::StoreError;

/// One identity's provider tokens.
#[derive(Clone, PartialEq, Eq)]
pub struct IdpTokens {
    /// The connection's id (`con_…`), which survives a rename.
    pub connection_id: String,
    /// The provider's id of the user (the profile's `user_id`).
    pub provider_user_id: String,
    pub access_token: String,
    pub refresh_token: Option<String>,
    /// When the access token expires (seconds since the epoch), if the
    /// provider said (`expires_in`, RFC 6749 §5.1).
    pub expires_at: Option<u64>,
    /// When they were stored (the login's time).
    pub updated_at: u64,
}

/// The tokens are left out: a value may be logged.
impl fmt::Debug for IdpTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdpTokens")
            .field("connection_id", &self.connection_id)
            .field("provider_user_id", &self.provider_user_id)
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "[redacted]"),
            )
            .field("expires_at", &self.expires_at)
            .field("updated_at", &self.updated_at)
            .finish_non_exhaustive()
    }
}

/// Where the provider's tokens are kept: a part of every [`super::Store`].
#[async_trait]
pub trait IdpTokenStore: Send + Sync {
    /// Inserts or replaces the identity's tokens.
    async fn put_idp_tokens(&self, tokens: &IdpTokens) -> Result<(), StoreError>;
    async fn idp_tokens(
        &self,
        connection_id: &str,
        provider_user_id: &str,
    ) -> Result<Option<IdpTokens>, StoreError>;
    /// Every identity's tokens, by connection id then provider user id:
    /// for `rotate-key` (rare; may scan).
    async fn all_idp_tokens(&self) -> Result<Vec<IdpTokens>, StoreError>;
    /// Replaces `current` (matched on every field) with `next`, for the
    /// same identity; false if it changed meanwhile (a login stored newer
    /// tokens) or is gone. `rotate-key`'s compare-and-swap.
    async fn replace_idp_tokens(
        &self,
        current: &IdpTokens,
        next: &IdpTokens,
    ) -> Result<bool, StoreError>;
    /// Deletes the identity's tokens (the user is deleted); true if there
    /// were some.
    async fn delete_idp_tokens(
        &self,
        connection_id: &str,
        provider_user_id: &str,
    ) -> Result<bool, StoreError>;
}
