//! Sessions and refresh tokens in memory: one mutex over both, so every
//! method is one atomic step.

use std::collections::{BTreeSet, HashMap};

use super::*;
use crate::store::sessions::{
    RefreshGrant, RefreshLookup, Rotation, Session, SessionStore, SweptSessions,
};

/// Sessions and refresh tokens.
#[derive(Default)]
pub(super) struct Grants {
    sessions: HashMap<SecretHash, Session>,
    /// Each token with the time it was rotated, if it was.
    refresh: HashMap<SecretHash, (RefreshGrant, Option<u64>)>,
}

impl Grants {
    /// Deletes every token `doomed` picks; how many.
    fn remove_refresh(&mut self, doomed: impl Fn(&RefreshGrant) -> bool) -> u64 {
        let before = self.refresh.len();
        self.refresh.retain(|_, (grant, _)| !doomed(grant));
        (before - self.refresh.len()) as u64
    }

    /// The live, unrotated token of each family `pick` picks, oldest
    /// family first.
    fn live_families(&self, now: u64, pick: impl Fn(&RefreshGrant) -> bool) -> Vec<RefreshGrant> {
        let mut live: Vec<RefreshGrant> = self
            .refresh
            .values()
            .filter(|(grant, rotated)| rotated.is_none() && grant.is_live(now) && pick(grant))
            .map(|(grant, _)| grant.clone())
            .collect();
        live.sort_by(|a, b| (a.created_at, &a.family_id).cmp(&(b.created_at, &b.family_id)));
        live
    }
}

impl MemoryStore {
    fn grants(&self) -> std::sync::MutexGuard<'_, Grants> {
        self.grants.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl SessionStore for MemoryStore {
    async fn put_session(&self, key: SecretHash, session: &Session) -> Result<(), StoreError> {
        let mut g = self.grants();
        if g.sessions
            .iter()
            .any(|(k, s)| *k != key && s.id == session.id)
        {
            return Err(StoreError::Conflict(format!("session `{}`", session.id)));
        }
        let mut stored = session.clone();
        if let Some(before) = g.sessions.get(&key).filter(|s| s.id == session.id) {
            let clients: BTreeSet<String> = before
                .clients
                .iter()
                .chain(&session.clients)
                .cloned()
                .collect();
            stored.clients = clients.into_iter().collect();
        } else {
            stored.clients.sort();
            stored.clients.dedup();
        }
        g.sessions.insert(key, stored);
        Ok(())
    }

    async fn get_session(&self, key: SecretHash, now: u64) -> Result<Option<Session>, StoreError> {
        Ok(self
            .grants()
            .sessions
            .get(&key)
            .filter(|s| s.is_live(now))
            .cloned())
    }

    async fn touch_session(
        &self,
        key: SecretHash,
        client_id: &str,
        now: u64,
        idle_expires_at: u64,
    ) -> Result<bool, StoreError> {
        let mut g = self.grants();
        let Some(session) = g.sessions.get_mut(&key).filter(|s| s.is_live(now)) else {
            return Ok(false);
        };
        session.last_active = now;
        session.idle_expires_at = session
            .idle_expires_at
            .max(idle_expires_at)
            .min(session.expires_at);
        if let Err(at) = session
            .clients
            .binary_search_by(|c| c.as_str().cmp(client_id))
        {
            session.clients.insert(at, client_id.to_owned());
        }
        Ok(true)
    }

    async fn session(&self, id: &str, now: u64) -> Result<Option<Session>, StoreError> {
        Ok(self
            .grants()
            .sessions
            .values()
            .find(|s| s.id == id && s.is_live(now))
            .cloned())
    }

    async fn sessions_of_user(&self, user_id: &str, now: u64) -> Result<Vec<Session>, StoreError> {
        let mut list: Vec<Session> = self
            .grants()
            .sessions
            .values()
            .filter(|s| s.user_id == user_id && s.is_live(now))
            .cloned()
            .collect();
        list.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(list)
    }

    async fn delete_session(&self, id: &str) -> Result<Option<Session>, StoreError> {
        let mut g = self.grants();
        let key = g.sessions.iter().find(|(_, s)| s.id == id).map(|(k, _)| *k);
        Ok(key.and_then(|k| g.sessions.remove(&k)))
    }

    async fn delete_sessions_of_user(&self, user_id: &str) -> Result<Vec<Session>, StoreError> {
        let mut g = self.grants();
        let keys: Vec<SecretHash> = g
            .sessions
            .iter()
            .filter(|(_, s)| s.user_id == user_id)
            .map(|(k, _)| *k)
            .collect();
        let mut deleted: Vec<Session> = keys.iter().filter_map(|k| g.sessions.remove(k)).collect();
        deleted.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(deleted)
    }

    async fn put_refresh_token(
        &self,
        key: SecretHash,
        grant: &RefreshGrant,
    ) -> Result<(), StoreError> {
        self.grants().refresh.insert(key, (grant.clone(), None));
        Ok(())
    }

    async fn get_refresh_token(
        &self,
        key: SecretHash,
        now: u64,
    ) -> Result<RefreshLookup, StoreError> {
        Ok(match self.grants().refresh.get(&key) {
            Some((grant, None)) if grant.is_live(now) => RefreshLookup::Live(grant.clone()),
            Some((grant, Some(_))) if now < grant.expires_at => {
                RefreshLookup::Rotated(grant.clone())
            }
            _ => RefreshLookup::Absent,
        })
    }

    async fn rotate_refresh_token(
        &self,
        used: SecretHash,
        next: SecretHash,
        grant: &RefreshGrant,
        now: u64,
    ) -> Result<Rotation, StoreError> {
        let mut g = self.grants();
        let family = match g.refresh.get_mut(&used) {
            Some((old, rotated @ None)) if old.is_live(now) => {
                *rotated = Some(now);
                None
            }
            Some((old, Some(_))) if now < old.expires_at => Some(old.family_id.clone()),
            _ => return Ok(Rotation::Absent),
        };
        match family {
            None => {
                g.refresh.insert(next, (grant.clone(), None));
                Ok(Rotation::Rotated)
            }
            Some(family) => {
                let revoked = g.remove_refresh(|t| t.family_id == family);
                Ok(Rotation::Reused { revoked })
            }
        }
    }

    async fn revoke_refresh_family(&self, family_id: &str) -> Result<u64, StoreError> {
        Ok(self.grants().remove_refresh(|t| t.family_id == family_id))
    }

    async fn refresh_family(
        &self,
        family_id: &str,
        now: u64,
    ) -> Result<Option<RefreshGrant>, StoreError> {
        Ok(self
            .grants()
            .live_families(now, |t| t.family_id == family_id)
            .pop())
    }

    async fn refresh_tokens_of_user(
        &self,
        user_id: &str,
        now: u64,
    ) -> Result<Vec<RefreshGrant>, StoreError> {
        Ok(self.grants().live_families(now, |t| t.user_id == user_id))
    }

    async fn delete_refresh_tokens_of_user(&self, user_id: &str) -> Result<u64, StoreError> {
        Ok(self.grants().remove_refresh(|t| t.user_id == user_id))
    }

    async fn delete_refresh_tokens_of_client(&self, client_id: &str) -> Result<u64, StoreError> {
        Ok(self.grants().remove_refresh(|t| t.client_id == client_id))
    }

    async fn delete_access_token(&self, token: SecretHash) -> Result<bool, StoreError> {
        Ok(self.tokens.lock().remove(&token).is_some())
    }

    async fn delete_access_tokens_of_user(&self, user_id: &str) -> Result<u64, StoreError> {
        Ok(self.tokens.remove_where(|grant| grant.user_id == user_id))
    }

    async fn delete_access_tokens_of_family(&self, family_id: &str) -> Result<u64, StoreError> {
        Ok(self
            .tokens
            .remove_where(|grant| grant.family_id.as_deref() == Some(family_id)))
    }

    async fn sweep_sessions(&self, now: u64) -> Result<SweptSessions, StoreError> {
        let mut g = self.grants();
        let before = g.sessions.len();
        g.sessions.retain(|_, s| s.is_live(now));
        let sessions = (before - g.sessions.len()) as u64;
        let before = g.refresh.len();
        g.refresh.retain(|_, (grant, rotated)| match rotated {
            None => grant.is_live(now),
            Some(_) => now < grant.expires_at,
        });
        Ok(SweptSessions {
            sessions,
            refresh_tokens: (before - g.refresh.len()) as u64,
        })
    }
}
