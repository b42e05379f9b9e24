//! Waypass's state, behind a trait: short-lived login transactions,
//! authorization codes and access tokens, users, and the catalog (apps,
//! connections, mapper versions) that every instance serves.
//!
//! The store is the only truth. What an instance keeps in memory (the
//! [`crate::catalog`]) is derived from it; every catalog write bumps the
//! store's catalog version in the same transaction, and [`Store::catalog_feed`]
//! says how an instance learns of a new one (a notification, a poll).
//!
//! What is stored is typed here ([`StoredConnection`], [`StoredClient`]),
//! apart from the configuration's and the API's types, which convert to and
//! from these at their edge: every field is explicit and serialised, secrets
//! included, so no field can be dropped by another type's serialisation.
//! This module depends on no other part of Waypass but [`crate::secret`]
//! and the profile type ([`crate::mapper::Profile`]) users carry.
//!
//! The conformance suite every backend passes lives in the tests crate
//! (`tests/src/conformance.rs`), not here behind a feature: it is test code
//! (threads racing, fixed times, assertions) that no build of the library
//! or the binary should carry, and the tests crate is where every backend
//! (and the PostgreSQL server the tests find) is at hand.
//!
//! Sessions and refresh tokens are [`SessionStore`]'s, a part of every
//! [`Store`] in files of their own (`sessions.rs` and each backend's
//! `sessions` module).
//!
//! Every key is the SHA-256 of a random bearer value (state, code, token), so
//! a copy of the store hands out nothing usable. `take_*` removes what it
//! returns: single use is the store's job, atomic in every backend. Expired
//! entries are never returned, and [`Store::sweep_expired`] (run on a timer
//! by the server) deletes them.

pub mod crypt;
mod identities;
mod idp_tokens;
mod memory;
mod postgres;
mod records;
mod sealed;
mod sessions;
mod sqlite;
mod stored;

pub use identities::{
    IdentityKey, IdentityLogin, IdentityOutcome, LinkPolicy, LinkRefusal, StoredIdentity, Unlinked,
};
pub use idp_tokens::{IdpTokenStore, IdpTokens};
pub use memory::{MemoryStore, ShortLivedCounts};
pub use postgres::{DatabaseUrl, PostgresStore};
pub use records::{
    StoredAction, StoredActionSecret, StoredClient, StoredConnection, StoredConnectionOptions,
    StoredConnectionSpec, StoredMapperEgress, StoredResourceServer, StoredRule, StoredScope,
    StoredScripts,
};
pub use sealed::{Resealed, SealedStore};
pub use sessions::{
    RefreshGrant, RefreshLookup, Rotation, Session, SessionLogin, SessionStore, SweptSessions,
};
pub use sqlite::SqliteStore;
pub use stored::merge_metadata;

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::mapper::Profile;
use crate::secret::{Secret, SecretHash};

/// A login between `/authorize` and `/login/callback`.
#[derive(Debug, Clone)]
pub struct LoginTransaction {
    pub client_id: String,
    pub redirect_uri: String,
    /// The app's `state`, returned to it unchanged.
    pub app_state: Option<String>,
    pub nonce: Option<String>,
    /// The app's PKCE S256 challenge.
    pub code_challenge: Option<String>,
    pub scope: String,
    pub connection: String,
    /// Our PKCE verifier towards the provider.
    pub provider_verifier: Option<Secret>,
    /// Hash of the cookie that binds the login to the browser.
    pub browser_binding: SecretHash,
    pub correlation_id: String,
    pub expires_at: u64,
    /// The app asked for `response_mode=form_post`: the answer is posted.
    pub form_post: bool,
    /// The API (`audience`) the app asked an access token for.
    pub audience: Option<String>,
    /// `/authorize`'s parameters, for post-login Actions' `event.request.query`
    /// (bounded: `crate::actions::event_query`).
    pub query: Vec<(String, String)>,
}

/// What an authorization code stands for, until redeemed.
///
/// Its JSON is how the SQLite store keeps it (a test there pins it): a
/// renamed or reordered field changes stored rows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuthorizationGrant {
    pub client_id: String,
    pub redirect_uri: String,
    pub user_id: String,
    pub scope: String,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub auth_time: u64,
    /// What post-login Actions added to the tokens; left out of the JSON
    /// when empty, so rows without Actions keep their form.
    #[serde(default, skip_serializing_if = "GrantClaims::is_empty")]
    pub claims: GrantClaims,
    /// The browser session the login belongs to (the id_token's `sid`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// The API (`audience`) the access token is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// The login's correlation id: the code's redemption joins the login's
    /// trace (`telemetry`) on whichever instance redeems it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// Not in the JSON: stores keep it beside it, to expire by.
    #[serde(skip)]
    pub expires_at: u64,
}

/// Custom claims post-login Actions set for a login's tokens.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GrantClaims {
    #[serde(default, skip_serializing_if = "Metadata::is_empty")]
    pub id_token: Metadata,
    #[serde(default, skip_serializing_if = "Metadata::is_empty")]
    pub access_token: Metadata,
    /// The connection's `non_persistent_attrs` as id_token claims, sealed
    /// with the code (`broker::sealed`): stored only so, never in the
    /// clear.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed: Option<String>,
    /// The same claims in the clear: in memory only, never serialised.
    #[serde(skip)]
    pub transient: Metadata,
}

impl GrantClaims {
    pub fn is_empty(&self) -> bool {
        self.id_token.is_empty() && self.access_token.is_empty() && self.sealed.is_none()
    }
}

/// What an access token stands for.
///
/// Its JSON is how the SQLite store keeps it (a test there pins it): a
/// renamed or reordered field changes stored rows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessGrant {
    pub user_id: String,
    pub client_id: String,
    pub scope: String,
    /// The access token's custom claims (post-login Actions); left out of
    /// the JSON when empty.
    #[serde(default, skip_serializing_if = "Metadata::is_empty")]
    pub claims: Metadata,
    /// The refresh-token family it was issued from, if any: revoking the
    /// family revokes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family_id: Option<String>,
    /// Not in the JSON: stores keep it beside it, to expire by.
    #[serde(skip)]
    pub expires_at: u64,
}

/// A user as Waypass knows them: `oauth2|<connection>|<provider id>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    pub user_id: String,
    pub connection: String,
    pub profile: Profile,
    pub created_at: u64,
    pub last_login: u64,
    pub logins_count: u64,
    /// Auth0's `app_metadata`: what apps and Actions keep about the user.
    #[serde(default)]
    pub app_metadata: Metadata,
    /// Auth0's `user_metadata`: the user's own preferences.
    #[serde(default)]
    pub user_metadata: Metadata,
}

/// A user's `app_metadata` or `user_metadata`: one JSON object.
pub type Metadata = serde_json::Map<String, serde_json::Value>;

/// A store failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// A unique name is taken (a connection's name, a client id).
    #[error("{0} already exists")]
    Conflict(String),
    /// A write names something that does not exist (a binding to an
    /// Action that is not stored): nothing was written.
    #[error("{0} does not exist")]
    Missing(String),
    /// The backend failed; the caller is not at fault.
    #[error("store: {0}")]
    Backend(String),
}

/// One registered version of a mapper (the bytes are fetched separately).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapperVersion {
    pub name: String,
    /// 1, 2, 3… per name.
    pub version: u32,
    /// Hex SHA-256 of the component's bytes.
    pub sha256: String,
    pub size: u64,
    pub created_at: u64,
    /// Who registered it (the admin token, a management client's id).
    pub created_by: String,
}

/// A mapper name and its active version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapperEntry {
    pub name: String,
    pub active_version: u32,
}

/// A post-login Action and the version that runs (0: never deployed).
#[derive(Debug, Clone, PartialEq)]
pub struct ActionEntry {
    pub action: StoredAction,
    pub active_version: u32,
}

/// Rules in the order they run: `order`, then name (unique).
pub fn sort_rules(rules: &mut [StoredRule]) {
    rules.sort_by(|a, b| a.order.cmp(&b.order).then_with(|| a.name.cmp(&b.name)));
}

/// One deployed version of an Action (the bytes are fetched separately).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionVersion {
    pub action_id: String,
    /// 1, 2, 3… per Action.
    pub version: u32,
    /// Hex SHA-256 of the component's bytes.
    pub sha256: String,
    pub size: u64,
    pub created_at: u64,
    /// Who deployed it (the admin token, a management client's id).
    pub created_by: String,
}

/// What [`Store::put_transaction`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum PutTransaction {
    Stored,
    /// `max_live` logins are already in flight: nothing was stored.
    Full,
}

/// What [`Store::take_transaction`] found under a `state`.
#[derive(Debug)]
pub enum TakeTransaction {
    /// The browser's binding matched: the transaction is removed and returned.
    Taken(Box<LoginTransaction>),
    /// A live transaction, but not this browser's (no cookie, or another
    /// one): left in place, so whoever learned a `state` cannot cancel the
    /// login of the browser that holds the cookie.
    WrongBrowser,
    /// No live transaction under this state (unknown, expired or finished).
    Absent,
}

/// How many expired entries [`Store::sweep_expired`] deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    pub transactions: u64,
    pub codes: u64,
    pub tokens: u64,
}

/// Everything the catalog is built from, read at one moment: the catalog
/// version and what it stands for (mapper bytes are fetched separately,
/// only for versions an instance has not loaded yet).
#[derive(Debug, Clone, Default)]
pub struct StoredCatalog {
    /// Bumped by every catalog write; 0 for a store never written.
    pub version: u64,
    pub clients: Vec<StoredClient>,
    pub connections: Vec<StoredConnection>,
    /// Each mapper's active version.
    pub mappers: Vec<MapperEntry>,
    /// Every version of every mapper (metadata only), by name then number.
    pub versions: Vec<MapperVersion>,
    /// Every Action, by id, with its active version.
    pub actions: Vec<ActionEntry>,
    /// Every version of every Action (metadata only), by id then number.
    pub action_versions: Vec<ActionVersion>,
    /// The ids of the Actions bound to the post-login trigger, in order.
    pub post_login_bindings: Vec<String>,
    /// The APIs access tokens may be issued for, by id.
    pub resource_servers: Vec<StoredResourceServer>,
    /// The login page's branding.
    pub branding: StoredBranding,
}

/// The login page's branding as stored: the settings of
/// `/api/v2/branding` as one JSON document, and the Universal Login page
/// template's source, each `None` until first set. The store keeps them
/// as text; `model::branding` parses and checks them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredBranding {
    pub settings: Option<String>,
    pub universal_login_template: Option<String>,
}

/// How an instance learns that the catalog changed: notifications, when
/// the backend has them, and a poll of [`Store::catalog_version`] every
/// `poll_every` (the only way for a backend without notifications, the
/// fallback for missed ones otherwise).
#[derive(Debug, Clone)]
pub struct CatalogFeed {
    /// The newest catalog version notified (any change wakes `changed()`).
    pub notified: Option<tokio::sync::watch::Receiver<u64>>,
    pub poll_every: Duration,
}

/// One thing that happened — a login's outcome, a management write — in
/// Auth0's log event shape. Stored whole as JSON, with the fields it is
/// searched by (`log_id`, `date`, `type`, `user_id`, `connection`) as
/// columns beside it. Never holds a secret: whoever builds one redacts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogEvent {
    /// Orders events: `date`, then the writing instance's sequence.
    pub log_id: String,
    /// Seconds since the Unix epoch (the API shows it as RFC 3339).
    pub date: u64,
    /// Auth0's event type code: `s`, `f`, `sapi`, `fapi`, `seacft`, …
    #[serde(rename = "type")]
    pub event_type: String,
    pub description: Option<String>,
    pub connection: Option<String>,
    pub connection_id: Option<String>,
    pub client_id: Option<String>,
    pub client_name: Option<String>,
    pub user_id: Option<String>,
    pub user_name: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// What else there is to say (a failed login's stage and reason, a
    /// management write's method, path and caller).
    pub details: serde_json::Value,
}

/// Which events [`Store::log_events`] returns. Every filter given must
/// match (`None`: any).
#[derive(Debug, Clone, Default)]
pub struct LogQuery {
    pub event_type: Option<String>,
    pub user_id: Option<String>,
    pub connection: Option<String>,
    /// Inclusive bounds on `date`.
    pub date_from: Option<u64>,
    pub date_to: Option<u64>,
    /// A checkpoint: only events after this `log_id`, oldest first.
    /// Without it, newest first.
    pub after: Option<String>,
    pub offset: usize,
    pub limit: usize,
}

/// A page of events and how many match the filters in all.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogPage {
    pub events: Vec<LogEvent>,
    pub total: u64,
}

impl LogQuery {
    /// Whether `e` passes the filters (not the checkpoint): the memory
    /// store's search, and the definition the SQL ones follow.
    pub fn matches(&self, e: &LogEvent) -> bool {
        self.event_type.as_ref().is_none_or(|t| *t == e.event_type)
            && self
                .user_id
                .as_ref()
                .is_none_or(|u| e.user_id.as_ref() == Some(u))
            && self
                .connection
                .as_ref()
                .is_none_or(|c| e.connection.as_ref() == Some(c))
            && self.date_from.is_none_or(|from| e.date >= from)
            && self.date_to.is_none_or(|to| e.date <= to)
    }
}

/// Where Waypass keeps its state. One conformance suite
/// (`waypass-tests`' `conformance` module) runs against every implementation; nothing here may
/// depend on one backend's tricks.
#[async_trait]
pub trait Store: SessionStore + IdpTokenStore + Send + Sync {
    // ---- short-lived, single-use state ----

    /// Stores a login transaction, unless `max_live` unexpired ones (at
    /// `now`) are already stored: then [`PutTransaction::Full`], atomically,
    /// so concurrent logins cannot overshoot the bound.
    async fn put_transaction(
        &self,
        state: SecretHash,
        tx: LoginTransaction,
        now: u64,
        max_live: usize,
    ) -> Result<PutTransaction, StoreError>;
    /// Removes and returns the transaction if it is live and its
    /// `browser_binding` is `binding`, in one atomic step; otherwise
    /// removes nothing and says why. `binding` is `None` when the browser
    /// sent no binding cookie.
    async fn take_transaction(
        &self,
        state: SecretHash,
        binding: Option<SecretHash>,
        now: u64,
    ) -> Result<TakeTransaction, StoreError>;
    async fn put_code(&self, code: SecretHash, grant: AuthorizationGrant)
    -> Result<(), StoreError>;
    /// Removes and returns the grant, unless absent or expired.
    async fn take_code(
        &self,
        code: SecretHash,
        now: u64,
    ) -> Result<Option<AuthorizationGrant>, StoreError>;
    /// [`Store::take_code`], then [`Store::get_user`] of the grant's user:
    /// a token exchange's two calls as one where the backend can (SQLite:
    /// one hand-off to its thread; PostgreSQL: one statement), as
    /// [`Store::put_session_and_code`] joins a callback's. `None` when the
    /// code is absent or expired; the user is `None` when it no longer
    /// exists (the code is taken all the same).
    async fn take_code_with_user(
        &self,
        code: SecretHash,
        now: u64,
    ) -> Result<Option<(AuthorizationGrant, Option<User>)>, StoreError> {
        let Some(grant) = self.take_code(code, now).await? else {
            return Ok(None);
        };
        let user = self.get_user(&grant.user_id).await?;
        Ok(Some((grant, user)))
    }
    async fn put_access_token(
        &self,
        token: SecretHash,
        grant: AccessGrant,
    ) -> Result<(), StoreError>;
    async fn get_access_token(
        &self,
        token: SecretHash,
        now: u64,
    ) -> Result<Option<AccessGrant>, StoreError>;
    /// Deletes every access token issued to `client_id` (management and
    /// user tokens alike) and says how many: a rotated secret or a deleted
    /// client takes its tokens with it. Rare (an API call), so a backend
    /// may scan.
    async fn delete_access_tokens_of_client(&self, client_id: &str) -> Result<u64, StoreError>;
    /// Deletes every transaction, code and access token that has expired at
    /// `now` (one call: several instances may run it at once harmlessly).
    async fn sweep_expired(&self, now: u64) -> Result<Swept, StoreError>;
    /// Creates the user or records another login: profile replaced, count
    /// incremented, first login kept. The identity (`connection`, the
    /// profile's `user_id`) is kept as the user's, unless it belongs to
    /// another user already. Logins through the broker go through
    /// [`Store::record_identity_login`], which links.
    async fn record_login(
        &self,
        user_id: &str,
        connection: &str,
        profile: Profile,
        now: u64,
    ) -> Result<User, StoreError>;
    async fn get_user(&self, user_id: &str) -> Result<Option<User>, StoreError>;
    /// Users ordered by id, `offset`/`limit` paged, optionally only those
    /// whose email contains `email` (case-insensitive).
    async fn list_users(
        &self,
        offset: usize,
        limit: usize,
        email: Option<&str>,
    ) -> Result<Vec<User>, StoreError>;
    /// How many users [`Store::list_users`] would list over every page.
    async fn count_users(&self, email: Option<&str>) -> Result<usize, StoreError>;
    async fn delete_user(&self, user_id: &str) -> Result<bool, StoreError>;
    /// Merges `app` into the user's `app_metadata` and `user` into their
    /// `user_metadata` ([`merge_metadata`]: top-level properties replaced,
    /// `null` removes one), both in one atomic step, and returns the user
    /// as stored after it; `None` if there is no such user. A login's
    /// record ([`Store::record_login`]) never changes either.
    async fn merge_user_metadata(
        &self,
        user_id: &str,
        app: &Metadata,
        user: &Metadata,
    ) -> Result<Option<User>, StoreError>;

    /// A login through an identity, in one atomic step (issue #12 §6):
    /// - a known identity: its user logs in (count, last login); the
    ///   identity keeps the profile, and so does the user if the identity
    ///   is their primary one (the user's id is `login.user_id`);
    /// - a new identity: `login.policy` decides, from the users who have
    ///   its email, whether it joins one of them ([`IdentityOutcome::Linked`]),
    ///   becomes a new user, or is refused (nothing written). Two first
    ///   logins with one email at once, on any instances, decide one after
    ///   the other: they never make two users where one would link.
    async fn record_identity_login(
        &self,
        login: &IdentityLogin,
        now: u64,
    ) -> Result<IdentityOutcome, StoreError>;
    /// [`Store::record_identity_login`], then, unless the login is
    /// refused, [`IdpTokenStore::put_idp_tokens`] of the provider's
    /// `tokens` of this login: a callback's two writes as one where the
    /// backend can (SQLite: one transaction and one hand-off to its thread,
    /// where two cost twice the locks, commits and wake-ups). Either both
    /// are written or, on an error, possibly neither.
    async fn record_identity_login_with_tokens(
        &self,
        login: &IdentityLogin,
        tokens: &IdpTokens,
        now: u64,
    ) -> Result<IdentityOutcome, StoreError> {
        let outcome = self.record_identity_login(login, now).await?;
        if !matches!(outcome, IdentityOutcome::Refused(_)) {
            self.put_idp_tokens(tokens).await?;
        }
        Ok(outcome)
    }
    /// [`SessionStore::put_session`] and [`Store::put_code`]: a login's
    /// last writes (its browser session and the app's code) as one where
    /// the backend can. The code is stored only with its session.
    async fn put_session_and_code(
        &self,
        session_key: SecretHash,
        session: &Session,
        code: SecretHash,
        grant: AuthorizationGrant,
    ) -> Result<(), StoreError> {
        self.put_session(session_key, session).await?;
        self.put_code(code, grant).await
    }
    /// The identities of the users `user_ids`, ordered by user id, then
    /// by creation, connection and provider id.
    async fn identities(&self, user_ids: &[String]) -> Result<Vec<StoredIdentity>, StoreError>;
    /// Takes the identity (`connection`, `provider_user_id`) away from
    /// `user_id` and makes it its own user, `new_user_id` (Auth0's unlink:
    /// no metadata, no logins yet), in one atomic step. A user with that
    /// id already is a Conflict.
    async fn unlink_identity(
        &self,
        user_id: &str,
        connection: &str,
        provider_user_id: &str,
        new_user_id: &str,
        now: u64,
    ) -> Result<Unlinked, StoreError>;

    // ---- the catalog: connections, apps, mappers ----
    //
    // Every write below that changes something bumps the catalog version
    // in the same transaction.

    /// The catalog version: bumped by every catalog write. Cheap: polled.
    async fn catalog_version(&self) -> Result<u64, StoreError>;
    /// The whole catalog and its version, as of one moment.
    async fn catalog(&self) -> Result<StoredCatalog, StoreError>;
    /// How this backend announces catalog changes.
    fn catalog_feed(&self) -> CatalogFeed;

    /// Inserts or replaces (by id); another connection's name is a Conflict.
    async fn put_connection(&self, connection: &StoredConnection) -> Result<(), StoreError>;
    async fn connections(&self) -> Result<Vec<StoredConnection>, StoreError>;
    async fn delete_connection(&self, id: &str) -> Result<bool, StoreError>;
    /// Inserts or replaces by client id.
    async fn put_client(&self, client: &StoredClient) -> Result<(), StoreError>;
    async fn clients(&self) -> Result<Vec<StoredClient>, StoreError>;
    async fn delete_client(&self, client_id: &str) -> Result<bool, StoreError>;
    /// Inserts or replaces by id; another API's `identifier` is a Conflict.
    async fn put_resource_server(&self, api: &StoredResourceServer) -> Result<(), StoreError>;
    async fn resource_servers(&self) -> Result<Vec<StoredResourceServer>, StoreError>;
    async fn delete_resource_server(&self, id: &str) -> Result<bool, StoreError>;
    /// The login page's branding (empty until first set).
    async fn branding(&self) -> Result<StoredBranding, StoreError>;
    /// Replaces the branding settings document (a catalog write).
    async fn put_branding_settings(&self, settings: &str) -> Result<(), StoreError>;
    /// Replaces the page template, or removes it with `None` (a catalog
    /// write); says whether a template was stored before.
    async fn put_universal_login_template(
        &self,
        template: Option<&str>,
    ) -> Result<bool, StoreError>;

    // ---- mappers ----
    /// Stores `bytes` as the next version of `name` and makes it active, in
    /// one step: readers see the old version or the new one, never neither.
    async fn add_mapper_version(
        &self,
        name: &str,
        bytes: &[u8],
        sha256: &str,
        created_by: &str,
        now: u64,
    ) -> Result<MapperVersion, StoreError>;
    async fn mapper_versions(&self, name: &str) -> Result<Vec<MapperVersion>, StoreError>;
    async fn mapper_bytes(&self, name: &str, version: u32) -> Result<Option<Vec<u8>>, StoreError>;
    /// Makes an existing version active; false if there is no such version.
    async fn activate_mapper_version(&self, name: &str, version: u32) -> Result<bool, StoreError>;
    async fn mappers(&self) -> Result<Vec<MapperEntry>, StoreError>;
    /// Deletes every version of `name`.
    async fn delete_mapper(&self, name: &str) -> Result<bool, StoreError>;

    // ---- post-login Actions ----
    /// Inserts or replaces (by id) an Action's settings; another Action's
    /// name is a Conflict. `draft` replaces the component the next
    /// [`Store::deploy_action`] deploys; `None` keeps the one stored.
    async fn put_action(
        &self,
        action: &StoredAction,
        draft: Option<&[u8]>,
    ) -> Result<(), StoreError>;
    /// Every Action, by id.
    async fn actions(&self) -> Result<Vec<ActionEntry>, StoreError>;
    /// Deletes an Action, its versions, its draft and its bindings, in one
    /// step.
    async fn delete_action(&self, id: &str) -> Result<bool, StoreError>;
    /// Stores the Action's draft as its next version and makes it active,
    /// in one step; `None` if there is no such Action or it has no draft.
    async fn deploy_action(
        &self,
        id: &str,
        created_by: &str,
        now: u64,
    ) -> Result<Option<ActionVersion>, StoreError>;
    async fn action_versions(&self, id: &str) -> Result<Vec<ActionVersion>, StoreError>;
    async fn action_bytes(&self, id: &str, version: u32) -> Result<Option<Vec<u8>>, StoreError>;
    /// Makes an existing version active (a rollback); false if there is no
    /// such version.
    async fn activate_action_version(&self, id: &str, version: u32) -> Result<bool, StoreError>;
    /// The ids bound to the post-login trigger, in order.
    async fn post_login_bindings(&self) -> Result<Vec<String>, StoreError>;
    /// Replaces the post-login bindings. An id that names no Action is a
    /// Conflict (nothing is written): a binding never dangles.
    async fn set_post_login_bindings(&self, ids: &[String]) -> Result<(), StoreError>;

    // ---- legacy Rules ----
    /// Inserts or replaces (by id) a Rule; another Rule's name is a
    /// Conflict. A catalog write: instances run the change on their next
    /// login.
    async fn put_rule(&self, rule: &StoredRule) -> Result<(), StoreError>;
    /// Every Rule, in the order they run (`order`, then name).
    async fn rules(&self) -> Result<Vec<StoredRule>, StoreError>;
    /// Deletes a Rule; false if there is none.
    async fn delete_rule(&self, id: &str) -> Result<bool, StoreError>;

    // ---- leases ----
    /// Takes or renews the lease `name` for `holder` until `now + ttl`
    /// (seconds): true if `holder` holds it now. A lease held by another
    /// holder and not expired at `now` is refused. Atomic: of any number of
    /// holders asking at once, at most one gets it. Jobs one instance at a
    /// time should run (the sweep) take one first.
    async fn try_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: u64,
        now: u64,
    ) -> Result<bool, StoreError>;

    // ---- signing keys ----
    /// The key set document (see `keys`), if one was stored.
    async fn signing_keys(&self) -> Result<Option<String>, StoreError>;
    /// Stores `document` unless one exists, and returns the one that is
    /// stored: instances starting together agree on one key set.
    async fn init_signing_keys(&self, document: &str) -> Result<String, StoreError>;

    // ---- connections' own keys (`private_key_jwt`) ----
    /// The key document (the format of [`Store::signing_keys`]) of the
    /// connection with id `connection_id`, if one was stored.
    async fn connection_keys(&self, connection_id: &str) -> Result<Option<String>, StoreError>;
    /// Stores `document` for the connection unless one exists, and returns
    /// the one that is stored: instances needing a key at once agree on one.
    async fn init_connection_keys(
        &self,
        connection_id: &str,
        document: &str,
    ) -> Result<String, StoreError>;
    /// Replaces the connection's document with `next` if it is still
    /// `current` (a compare-and-swap: of two rotations from one document,
    /// one wins); true if replaced.
    async fn replace_connection_keys(
        &self,
        connection_id: &str,
        current: &str,
        next: &str,
    ) -> Result<bool, StoreError>;
    /// Replaces the key set document with `document` if the stored one is
    /// `expected` (`None`: none stored), atomically, and bumps the catalog
    /// version so every instance reloads its keys; false (nothing written)
    /// if another writer got there first.
    async fn replace_signing_keys(
        &self,
        expected: Option<&str>,
        document: &str,
    ) -> Result<bool, StoreError>;

    // ---- log events ----
    /// Stores events (a batch, in one transaction where the backend has
    /// them); an event whose `log_id` is stored already is skipped.
    async fn put_log_events(&self, events: &[LogEvent]) -> Result<(), StoreError>;
    /// The events matching `query`, paged, and how many match in all.
    async fn log_events(&self, query: &LogQuery) -> Result<LogPage, StoreError>;
    async fn log_event(&self, log_id: &str) -> Result<Option<LogEvent>, StoreError>;
    /// Deletes the events dated before `date` (retention) and says how many.
    async fn delete_log_events_before(&self, date: u64) -> Result<u64, StoreError>;
}
