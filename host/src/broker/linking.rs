//! The user a login belongs to (issue #12 §6): the login's identity
//! (connection, provider id) finds its user, or — the first time — the
//! connection's `account_linking` policy decides whether it joins an
//! existing user by email, becomes a new user, or is refused. The store
//! decides atomically ([`crate::store::Store::record_identity_login`]);
//! this module turns the outcome into the login's answer and the audit
//! log's `link` event. Unlinking (the management API) logs `unlink` here
//! too.

use super::Broker;
use super::oauth::{ErrorCode, OAuthError};
use crate::events::{EventType, LinkDetails};
use crate::mapper::Profile;
use crate::model::{AccountLinking, Connection, RootAttributesSync};
use crate::store::{
    IdentityLogin, IdentityOutcome, IdpTokens, LinkPolicy, LinkRefusal, StoreError, StoredIdentity,
    User,
};

/// The user id a new user of this identity gets, and that names the
/// identity as primary: `oauth2|<connection>|<provider id>`.
pub fn identity_user_id(connection: &str, provider_user_id: &str) -> String {
    format!("oauth2|{connection}|{provider_user_id}")
}

fn policy(linking: AccountLinking) -> LinkPolicy {
    match linking {
        AccountLinking::None => LinkPolicy::None,
        AccountLinking::LinkByVerifiedEmail => LinkPolicy::LinkByVerifiedEmail,
        AccountLinking::DenyDuplicateEmail => LinkPolicy::DenyDuplicateEmail,
    }
}

/// What the app is told when the policy refuses a login: `access_denied`
/// (RFC 6749 §4.1.2.1) with a reason that names no other user.
fn refusal(why: &LinkRefusal) -> OAuthError {
    let description = match why {
        LinkRefusal::DuplicateEmail => {
            "another account already uses this email address; sign in with that account"
        }
        LinkRefusal::AmbiguousEmail { .. } => {
            "several accounts use this verified email address; this login cannot be linked to one of them"
        }
    };
    OAuthError::new(ErrorCode::AccessDenied, description)
}

fn unrecorded(e: &StoreError) -> OAuthError {
    tracing::error!(error = %e, "cannot record the user");
    OAuthError::new(
        ErrorCode::TemporarilyUnavailable,
        "the login could not be recorded; try again",
    )
}

impl Broker {
    /// Records a login through `connection` whose provider said `fresh`:
    /// the profile to keep (root attributes as the connection syncs them,
    /// never its non-persistent attributes) goes to the identity's user,
    /// found, created or linked as its policy says, and with it (unless
    /// refused) the provider's `tokens` of this login. A link is logged.
    pub(super) async fn record_user(
        &self,
        connection: &Connection,
        fresh: Profile,
        tokens: &IdpTokens,
        ip: &str,
        now: u64,
    ) -> Result<User, OAuthError> {
        let options = &connection.spec.options;
        let user_id = identity_user_id(connection.name(), &fresh.user_id);
        // Only a mode that keeps stored root attributes needs them read;
        // they are the primary identity's user's (a linked identity never
        // sets them).
        let stored = match options.set_user_root_attributes {
            RootAttributesSync::OnEachLogin => None,
            _ => self
                .store
                .get_user(&user_id)
                .await
                .map_err(|e| unrecorded(&e))?,
        };
        // Linking compares what the provider said, before any attribute
        // is dropped from what is kept.
        let email = fresh.email.clone();
        let email_verified = fresh.email_verified == Some(true);
        let provider_user_id = fresh.user_id.clone();
        let profile = super::profile_sync::profile_to_store(
            options,
            stored.as_ref().map(|u| &u.profile),
            fresh,
        );
        let login = IdentityLogin {
            user_id,
            connection: connection.name().to_owned(),
            provider_user_id,
            profile,
            email,
            email_verified,
            policy: policy(options.account_linking),
        };
        match self
            .store
            .record_identity_login_with_tokens(&login, tokens, now)
            .await
        {
            Ok(IdentityOutcome::Recorded(user)) => Ok(user),
            Ok(IdentityOutcome::Linked(user)) => {
                tracing::info!(
                    user_id = user.user_id,
                    connection = login.connection,
                    "a new identity joined a user by its verified email"
                );
                crate::events::note_user(&user.user_id, user.profile.email.as_deref());
                let identity = crate::store::IdentityKey {
                    provider: "oauth2",
                    connection: &login.connection,
                    user_id: &login.provider_user_id,
                };
                let details = LinkDetails {
                    identity,
                    by: "login",
                    reason: AccountLinking::LinkByVerifiedEmail.as_str(),
                    new_user_id: None,
                };
                self.log_link(EventType::IdentityLinked, &user.user_id, &details, Some(ip));
                Ok(user)
            }
            Ok(IdentityOutcome::Refused(why)) => {
                tracing::info!(connection = login.connection, reason = ?why, "the connection's account linking refused a login");
                Err(refusal(&why))
            }
            Err(e) => Err(unrecorded(&e)),
        }
    }

    /// Whether the app `client_id` may be served `user`: through their
    /// primary connection, or (read only then) a linked identity's.
    pub(super) async fn serves_user(
        &self,
        user: &User,
        client_id: &str,
    ) -> Result<bool, StoreError> {
        if self.connection_serves(&user.connection, client_id) {
            return Ok(true);
        }
        let identities = self
            .store
            .identities(std::slice::from_ref(&user.user_id))
            .await?;
        Ok(identities
            .iter()
            .any(|i| self.connection_serves(&i.connection, client_id)))
    }

    /// A `link` or `unlink` event about `user_id`'s identity.
    pub(crate) fn log_link(
        &self,
        kind: EventType,
        user_id: &str,
        details: &LinkDetails<'_>,
        ip: Option<&str>,
    ) {
        let description = match kind {
            EventType::IdentityUnlinked => "An identity was unlinked from the user",
            _ => "An identity was linked to the user",
        };
        let mut event = self.events.event(kind, self.clock.now(), description);
        event.user_id = Some(user_id.to_owned());
        event.connection = Some(details.identity.connection.to_owned());
        event.connection_id = self
            .connection(details.identity.connection)
            .map(|c| c.id.clone());
        event.ip = ip.map(str::to_owned);
        event.details = serde_json::to_value(details).unwrap_or_default();
        self.events.record(event);
    }
}

/// Finds the identity a management path names among a user's: by the
/// provider's id alone, or as `<connection>|<provider id>` (Auth0's form
/// when several connections share a provider name). `Err` when the bare
/// id is ambiguous.
pub(crate) fn find_identity<'a>(
    identities: &'a [StoredIdentity],
    provider: &str,
    user_id: &str,
) -> Result<Option<&'a StoredIdentity>, usize> {
    if provider != "oauth2" {
        return Ok(None);
    }
    let matches: Vec<&StoredIdentity> = identities
        .iter()
        .filter(|i| {
            i.provider_user_id == user_id
                || user_id
                    .strip_prefix(i.connection.as_str())
                    .and_then(|rest| rest.strip_prefix('|'))
                    == Some(i.provider_user_id.as_str())
        })
        .collect();
    match matches.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(one)),
        several => Err(several.len()),
    }
}
