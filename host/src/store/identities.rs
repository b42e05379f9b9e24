//! A user's identities (issue #12 §6): what each connection's provider
//! says of one person, and how a login through a new identity finds the
//! user it belongs to (account linking). The decision is made here, once,
//! from what a backend read inside the transaction that then writes it:
//! every backend decides alike, and atomically.

use serde::{Deserialize, Serialize};

use super::User;
use crate::mapper::Profile;

/// One identity of a user: a connection's account of them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredIdentity {
    /// The user the identity belongs to.
    pub user_id: String,
    /// The connection's name.
    pub connection: String,
    /// The provider's id of the user (the profile's `user_id`).
    pub provider_user_id: String,
    /// What the provider said at the identity's last login (Auth0's
    /// `profileData`), without the connection's `non_persistent_attrs`.
    pub profile: Profile,
    pub is_social: bool,
    pub created_at: u64,
    pub updated_at: u64,
}

/// An identity as Auth0 names it (`provider`, `connection`, `user_id`):
/// in log events and the management API's paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct IdentityKey<'a> {
    /// Auth0's provider name for custom social connections.
    pub provider: &'static str,
    pub connection: &'a str,
    pub user_id: &'a str,
}

impl StoredIdentity {
    pub fn key(&self) -> IdentityKey<'_> {
        IdentityKey {
            provider: "oauth2",
            connection: &self.connection,
            user_id: &self.provider_user_id,
        }
    }
}

/// Whether a first login through a connection may join an existing user:
/// its `account_linking` option.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LinkPolicy {
    /// Every identity is its own user (the default, and the only mode
    /// before linking existed).
    #[default]
    None,
    /// The identity joins the one user whose email equals the provider's
    /// when both are verified; a new user otherwise.
    LinkByVerifiedEmail,
    /// A login whose email (verified or not) belongs to another user is
    /// refused.
    DenyDuplicateEmail,
}

/// A login through one identity, for [`super::Store::record_identity_login`].
#[derive(Debug, Clone)]
pub struct IdentityLogin {
    /// The id a new user of this identity gets (`oauth2|<connection>|<id>`):
    /// a user whose id it is has the identity as their primary one.
    pub user_id: String,
    pub connection: String,
    pub provider_user_id: String,
    /// The profile to keep (non-persistent attributes already dropped).
    pub profile: Profile,
    /// The provider's email as the mapper returned it (before any
    /// attribute was dropped): what linking compares.
    pub email: Option<String>,
    /// Whether the provider says `email` is verified (the mapper's
    /// `email_verified`; absent is not verified).
    pub email_verified: bool,
    pub policy: LinkPolicy,
}

impl IdentityLogin {
    /// The lower-cased email users are compared by, when the policy needs
    /// one compared (users keep theirs lower-cased the same way).
    pub fn email_key(&self) -> Option<String> {
        match self.policy {
            LinkPolicy::None => None,
            _ => self.email.as_deref().map(str::to_lowercase),
        }
    }
}

/// What [`super::Store::record_identity_login`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum IdentityOutcome {
    /// The identity's user (known, or created now) logged in.
    Recorded(User),
    /// The identity was new and joined an existing user, who logged in.
    Linked(User),
    /// The connection's policy refused the login; nothing was written.
    Refused(LinkRefusal),
}

/// Why a login was refused by its connection's linking policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkRefusal {
    /// `deny_duplicate_email`: another user has this email.
    DuplicateEmail,
    /// `link_by_verified_email`: several users have this verified email;
    /// linking to one of them would be a guess.
    AmbiguousEmail { candidates: usize },
}

/// What [`super::Store::unlink_identity`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum Unlinked {
    /// The identity left the user and is its own user now (returned).
    Unlinked(Box<User>),
    /// The user has no such identity.
    NoSuchIdentity,
    /// The identity is the user's primary one (the user's id is its own):
    /// it cannot leave its user.
    Primary,
}

/// The user an unlinked identity becomes at `now`, as Auth0 makes it: the
/// identity's profile, no metadata, no login of its own yet.
pub(super) fn unlinked_user(identity: &StoredIdentity, user_id: &str, now: u64) -> User {
    User {
        user_id: user_id.to_owned(),
        connection: identity.connection.clone(),
        profile: identity.profile.clone(),
        created_at: now,
        last_login: identity.updated_at,
        logins_count: 0,
        app_metadata: Default::default(),
        user_metadata: Default::default(),
    }
}

/// What a backend does with a login through an identity it does not know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Decision {
    /// A new user (or the identity's own user row, if one is left).
    Create,
    /// Join the user with this id.
    Link(String),
    Refuse(LinkRefusal),
}

/// Decides where a new identity goes, from the users that have its email
/// (lower-cased, equal) or its own user id, read in the transaction that
/// writes the outcome.
pub(super) fn decide(login: &IdentityLogin, same_email: &[User]) -> Decision {
    // The identity's own user row (left without an identity) is its user.
    if same_email.iter().any(|u| u.user_id == login.user_id) {
        return Decision::Create;
    }
    match login.policy {
        LinkPolicy::None => Decision::Create,
        LinkPolicy::DenyDuplicateEmail if same_email.is_empty() => Decision::Create,
        LinkPolicy::DenyDuplicateEmail => Decision::Refuse(LinkRefusal::DuplicateEmail),
        LinkPolicy::LinkByVerifiedEmail if !login.email_verified => Decision::Create,
        LinkPolicy::LinkByVerifiedEmail => {
            let verified: Vec<&User> = same_email
                .iter()
                .filter(|u| u.profile.email_verified == Some(true))
                .collect();
            match verified.as_slice() {
                [] => Decision::Create,
                [one] => Decision::Link(one.user_id.clone()),
                several => Decision::Refuse(LinkRefusal::AmbiguousEmail {
                    candidates: several.len(),
                }),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: &str, email: &str, verified: Option<bool>) -> User {
        User {
            user_id: id.into(),
            connection: "c".into(),
            profile: serde_json::from_value(serde_json::json!({
                "user_id": "p", "email": email, "email_verified": verified
            }))
            .expect("profile"),
            created_at: 1,
            last_login: 1,
            logins_count: 1,
            app_metadata: Default::default(),
            user_metadata: Default::default(),
        }
    }

    fn login(policy: LinkPolicy, verified: bool) -> IdentityLogin {
        IdentityLogin {
            user_id: "oauth2|b|1".into(),
            connection: "b".into(),
            provider_user_id: "1".into(),
            profile: serde_json::from_value(serde_json::json!({"user_id": "1"})).expect("profile"),
            email: Some("A@x.test".into()),
            email_verified: verified,
            policy,
        }
    }

    #[test]
    fn linking_needs_both_emails_verified_and_one_candidate() {
        let l = login(LinkPolicy::LinkByVerifiedEmail, true);
        let ada = user("oauth2|a|1", "a@x.test", Some(true));
        assert_eq!(
            decide(&l, std::slice::from_ref(&ada)),
            Decision::Link(ada.user_id.clone())
        );
        let unverified = user("oauth2|a|2", "a@x.test", None);
        assert_eq!(
            decide(&l, std::slice::from_ref(&unverified)),
            Decision::Create
        );
        let l_unverified = login(LinkPolicy::LinkByVerifiedEmail, false);
        assert_eq!(
            decide(&l_unverified, std::slice::from_ref(&ada)),
            Decision::Create
        );
        let other = user("oauth2|c|1", "a@x.test", Some(true));
        assert_eq!(
            decide(&l, &[ada, other, unverified]),
            Decision::Refuse(LinkRefusal::AmbiguousEmail { candidates: 2 })
        );
    }

    #[test]
    fn deny_duplicate_email_refuses_any_other_user_with_the_email() {
        let l = login(LinkPolicy::DenyDuplicateEmail, false);
        assert_eq!(decide(&l, &[]), Decision::Create);
        assert_eq!(
            decide(&l, &[user("oauth2|a|1", "a@x.test", None)]),
            Decision::Refuse(LinkRefusal::DuplicateEmail)
        );
    }

    #[test]
    fn the_identitys_own_user_row_is_its_user_whatever_the_policy() {
        let l = login(LinkPolicy::DenyDuplicateEmail, true);
        let own = user("oauth2|b|1", "a@x.test", Some(true));
        let other = user("oauth2|a|1", "a@x.test", Some(true));
        assert_eq!(decide(&l, &[other, own]), Decision::Create);
    }

    #[test]
    fn without_a_policy_every_identity_is_its_own_user() {
        let l = login(LinkPolicy::None, true);
        assert_eq!(l.email_key(), None);
        let ada = user("oauth2|a|1", "a@x.test", Some(true));
        assert_eq!(decide(&l, &[ada]), Decision::Create);
        assert_eq!(
            login(LinkPolicy::LinkByVerifiedEmail, true)
                .email_key()
                .as_deref(),
            Some("a@x.test")
        );
    }
}
