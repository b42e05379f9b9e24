//! What the broker keeps about people who logged in, beyond one login:
//! browser sessions (single sign-on) and refresh tokens, with the families
//! that rotation builds from them (issue #11).
//!
//! Keys are SHA-256 hashes of bearer values (the session cookie, the
//! refresh token), as for codes and access tokens: a copy of the store
//! hands out nothing usable. Each session and each refresh-token family
//! also has a public id (`ses_…`, `rtf_…`), which the management API and
//! the tokens we sign (`sid`) name it by.
//!
//! # Refresh-token rotation (RFC 9700 §4.14.2)
//!
//! Every use of a refresh token replaces it: [`SessionStore::rotate_refresh_token`]
//! marks the token used and stores its successor in one atomic step. The
//! used token stays stored (rotated) until its family's absolute expiry,
//! so that presenting it again is recognised as reuse — a sign that it was
//! stolen — and the whole family (the thief's token and the app's alike)
//! is deleted in the same step. Every change to a family's tokens holds
//! that family's lock (a row in PostgreSQL and SQLite, the store's mutex
//! in memory), so a use racing a reuse cannot leave a token alive in a
//! family that was revoked.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::StoreError;
use crate::secret::SecretHash;

/// A browser's session at the broker: who logged in there, through which
/// connections, and which apps it has given codes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// Public id (`ses_…`): the `sid` claim of id_tokens and logout
    /// tokens, and the management API's id.
    pub id: String,
    pub user_id: String,
    /// The connections this browser authenticated through for this user,
    /// each with when (OpenID Connect Core §2 `auth_time`); newest last.
    pub logins: Vec<SessionLogin>,
    /// Apps the session gave a code to, by client id, sorted: where
    /// back-channel logout goes when it ends.
    pub clients: Vec<String>,
    pub created_at: u64,
    /// When it was last used (a login or a single sign-on).
    pub last_active: u64,
    /// Ends unless used before this; never after `expires_at`.
    pub idle_expires_at: u64,
    /// Ends then, however often used.
    pub expires_at: u64,
}

/// One connection a session authenticated through, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionLogin {
    pub connection: String,
    pub auth_time: u64,
}

impl Session {
    /// Whether the session may be used at `now`.
    pub fn is_live(&self, now: u64) -> bool {
        now < self.idle_expires_at && now < self.expires_at
    }

    /// The login through `connection`, if the browser made one.
    pub fn login_through(&self, connection: &str) -> Option<&SessionLogin> {
        self.logins.iter().find(|l| l.connection == connection)
    }
}

/// What a refresh token stands for.
///
/// Its JSON is how the SQL stores keep it (expiries and rotation are
/// columns): a renamed field changes stored rows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshGrant {
    /// Public id (`rtf_…`) of the family: the first token and every token
    /// rotated from it. The management API lists and revokes families.
    pub family_id: String,
    pub user_id: String,
    pub client_id: String,
    /// The connection the user logged in through.
    pub connection: String,
    /// The scope granted at the login; a refresh may narrow the access
    /// token's, never this (RFC 6749 §6).
    pub scope: String,
    /// The API (`audience`) its access tokens are for, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// The session of the login, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// When the user authenticated (kept in refreshed id_tokens, OpenID
    /// Connect Core §12.2).
    pub auth_time: u64,
    /// When the family started (the login).
    pub created_at: u64,
    /// When this token was issued.
    pub issued_at: u64,
    /// Not in the JSON: a column. Unused past this, the token is dead.
    #[serde(skip)]
    pub idle_expires_at: u64,
    /// Not in the JSON: a column. The family's absolute end.
    #[serde(skip)]
    pub expires_at: u64,
}

impl RefreshGrant {
    /// Whether the token may be used at `now` (if not rotated).
    pub fn is_live(&self, now: u64) -> bool {
        now < self.idle_expires_at && now < self.expires_at
    }
}

/// What [`SessionStore::get_refresh_token`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshLookup {
    /// Unused and live.
    Live(RefreshGrant),
    /// Already exchanged for another: presenting it again is reuse.
    Rotated(RefreshGrant),
    /// Unknown, expired, or its family was revoked.
    Absent,
}

/// What [`SessionStore::rotate_refresh_token`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Rotation {
    /// The token is now used and its successor stored.
    Rotated,
    /// The token had been used already: its whole family, this many
    /// tokens, is deleted.
    Reused { revoked: u64 },
    /// Unknown, expired, or its family was revoked: nothing changed.
    Absent,
}

/// How many expired sessions and refresh tokens
/// [`SessionStore::sweep_sessions`] deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SweptSessions {
    pub sessions: u64,
    pub refresh_tokens: u64,
}

/// Sessions, refresh tokens, and the revocation of what was issued under
/// them. Part of every [`super::Store`]; the conformance suite checks each
/// method on every backend.
#[async_trait]
pub trait SessionStore: Send + Sync {
    // ---- sessions ----

    /// Stores `session` under `key` (the hash of its cookie), replacing the
    /// session stored there; its `clients` are added to those recorded,
    /// never removed. Another key holding the same `id` is a Conflict.
    async fn put_session(&self, key: SecretHash, session: &Session) -> Result<(), StoreError>;
    /// The session under `key`, if live at `now`.
    async fn get_session(&self, key: SecretHash, now: u64) -> Result<Option<Session>, StoreError>;
    /// Records a use of the live session under `key` by `client_id` at
    /// `now` (the app joins its clients) and moves its idle expiry to
    /// `idle_expires_at` (never back, never past its absolute expiry), in
    /// one step. False, changing nothing, when no session is live there.
    async fn touch_session(
        &self,
        key: SecretHash,
        client_id: &str,
        now: u64,
        idle_expires_at: u64,
    ) -> Result<bool, StoreError>;
    /// The session with public id `id`, if live at `now`.
    async fn session(&self, id: &str, now: u64) -> Result<Option<Session>, StoreError>;
    /// A user's live sessions, oldest first.
    async fn sessions_of_user(&self, user_id: &str, now: u64) -> Result<Vec<Session>, StoreError>;
    /// Deletes the session with public id `id` and returns it as it was
    /// (live or not), so its apps can be told.
    async fn delete_session(&self, id: &str) -> Result<Option<Session>, StoreError>;
    /// Deletes every session of a user and returns them.
    async fn delete_sessions_of_user(&self, user_id: &str) -> Result<Vec<Session>, StoreError>;

    // ---- refresh tokens ----

    /// Stores the first token of a new family.
    async fn put_refresh_token(
        &self,
        key: SecretHash,
        grant: &RefreshGrant,
    ) -> Result<(), StoreError>;
    /// What the token under `key` is at `now`. A rotated token is reported
    /// until its family's absolute expiry.
    async fn get_refresh_token(
        &self,
        key: SecretHash,
        now: u64,
    ) -> Result<RefreshLookup, StoreError>;
    /// Uses the token under `used`: if it is live and unused, marks it
    /// used and stores `next` (its successor, with `grant`) in its family;
    /// if it was used already, deletes its whole family. One atomic step
    /// per family: of two uses of one token, exactly one rotates and the
    /// other finds reuse.
    async fn rotate_refresh_token(
        &self,
        used: SecretHash,
        next: SecretHash,
        grant: &RefreshGrant,
        now: u64,
    ) -> Result<Rotation, StoreError>;
    /// Deletes every token of a family, used ones too; how many.
    async fn revoke_refresh_family(&self, family_id: &str) -> Result<u64, StoreError>;
    /// The live token of family `family_id`, if any.
    async fn refresh_family(
        &self,
        family_id: &str,
        now: u64,
    ) -> Result<Option<RefreshGrant>, StoreError>;
    /// The live token of each of a user's families, oldest family first.
    async fn refresh_tokens_of_user(
        &self,
        user_id: &str,
        now: u64,
    ) -> Result<Vec<RefreshGrant>, StoreError>;
    /// Deletes every family of a user; how many tokens.
    async fn delete_refresh_tokens_of_user(&self, user_id: &str) -> Result<u64, StoreError>;
    /// Deletes every family of an app; how many tokens.
    async fn delete_refresh_tokens_of_client(&self, client_id: &str) -> Result<u64, StoreError>;

    // ---- access tokens ----

    /// Deletes one access token; whether it was there.
    async fn delete_access_token(&self, token: SecretHash) -> Result<bool, StoreError>;
    /// Deletes every access token of a user; how many.
    async fn delete_access_tokens_of_user(&self, user_id: &str) -> Result<u64, StoreError>;
    /// Deletes every access token issued from a refresh-token family (RFC
    /// 7009 §2.1: revoking a refresh token revokes its access tokens).
    async fn delete_access_tokens_of_family(&self, family_id: &str) -> Result<u64, StoreError>;

    /// Deletes the sessions and refresh tokens that have expired at `now`.
    /// A used refresh token is kept until its family's absolute expiry
    /// (reuse detection); an unused one goes at its idle expiry.
    async fn sweep_sessions(&self, now: u64) -> Result<SweptSessions, StoreError>;
}
