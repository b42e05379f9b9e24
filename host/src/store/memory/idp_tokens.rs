//! The provider's tokens in memory.

use super::*;
use crate::store::idp_tokens::{IdpTokenStore, IdpTokens};

/// (connection id, provider user id) → tokens.
pub(super) type IdpTokenMap = BTreeMap<(String, String), IdpTokens>;

impl MemoryStore {
    fn idp(&self) -> std::sync::MutexGuard<'_, IdpTokenMap> {
        self.idp_tokens.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn key(connection_id: &str, provider_user_id: &str) -> (String, String) {
    (connection_id.to_owned(), provider_user_id.to_owned())
}

#[async_trait]
impl IdpTokenStore for MemoryStore {
    async fn put_idp_tokens(&self, tokens: &IdpTokens) -> Result<(), StoreError> {
        self.idp().insert(
            key(&tokens.connection_id, &tokens.provider_user_id),
            tokens.clone(),
        );
        Ok(())
    }

    async fn idp_tokens(
        &self,
        connection_id: &str,
        provider_user_id: &str,
    ) -> Result<Option<IdpTokens>, StoreError> {
        Ok(self
            .idp()
            .get(&key(connection_id, provider_user_id))
            .cloned())
    }

    async fn all_idp_tokens(&self) -> Result<Vec<IdpTokens>, StoreError> {
        Ok(self.idp().values().cloned().collect())
    }

    async fn replace_idp_tokens(
        &self,
        current: &IdpTokens,
        next: &IdpTokens,
    ) -> Result<bool, StoreError> {
        let mut map = self.idp();
        match map.get_mut(&key(&current.connection_id, &current.provider_user_id)) {
            Some(stored) if stored == current => {
                *stored = next.clone();
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn delete_idp_tokens(
        &self,
        connection_id: &str,
        provider_user_id: &str,
    ) -> Result<bool, StoreError> {
        Ok(self
            .idp()
            .remove(&key(connection_id, provider_user_id))
            .is_some())
    }
}
