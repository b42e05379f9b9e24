//! The conformance behaviours of users' identities and account linking
//! (issue #12 §6): where a login through an identity lands, atomically.

use serde_json::json;
use waypass::mapper::Profile;
use waypass::store::{
    IdentityLogin, IdentityOutcome, IdpTokens, LinkPolicy, LinkRefusal, Store, StoreError, Unlinked,
};

use super::{NOW, RACERS, race};

fn profile(id: &str, email: &str, verified: Option<bool>, name: &str) -> Profile {
    serde_json::from_value(json!({
        "user_id": id, "email": email, "email_verified": verified, "name": name,
    }))
    .expect("a valid profile")
}

/// A login through `connection`'s identity `id`, whose provider says
/// `email` (verified or not), under `policy`.
fn login(
    connection: &str,
    id: &str,
    email: &str,
    verified: bool,
    policy: LinkPolicy,
) -> IdentityLogin {
    IdentityLogin {
        user_id: format!("oauth2|{connection}|{id}"),
        connection: connection.into(),
        provider_user_id: id.into(),
        profile: profile(id, email, Some(verified), connection),
        email: Some(email.into()),
        email_verified: verified,
        policy,
    }
}

async fn record(store: &dyn Store, l: &IdentityLogin, now: u64) -> IdentityOutcome {
    store.record_identity_login(l, now).await.expect("recorded")
}

fn user_of(outcome: &IdentityOutcome) -> &waypass::store::User {
    match outcome {
        IdentityOutcome::Recorded(u) | IdentityOutcome::Linked(u) => u,
        IdentityOutcome::Refused(why) => panic!("refused: {why:?}"),
    }
}

async fn identity_keys(store: &dyn Store, user_id: &str) -> Vec<(String, String)> {
    store
        .identities(&[user_id.to_owned()])
        .await
        .expect("identities")
        .into_iter()
        .map(|i| {
            assert_eq!(i.user_id, user_id);
            (i.connection, i.provider_user_id)
        })
        .collect()
}

fn key(connection: &str, id: &str) -> (String, String) {
    (connection.to_owned(), id.to_owned())
}

/// A first login through an identity creates its user (the id the login
/// names) holding that one identity, with the provider's profile; the
/// next login through it counts and updates both.
pub async fn a_first_login_through_an_identity_creates_its_user_with_that_identity(
    store: &dyn Store,
) {
    let l = login("a", "1", "ada@x.test", true, LinkPolicy::None);
    let first = record(store, &l, NOW).await;
    let IdentityOutcome::Recorded(user) = &first else {
        panic!("{first:?}")
    };
    assert_eq!(
        (user.user_id.as_str(), user.logins_count),
        ("oauth2|a|1", 1)
    );
    assert_eq!(user.profile, l.profile);
    let identities = store
        .identities(std::slice::from_ref(&user.user_id))
        .await
        .expect("identities");
    assert_eq!(identities.len(), 1, "{identities:?}");
    let i = &identities[0];
    assert_eq!(
        (
            i.connection.as_str(),
            i.provider_user_id.as_str(),
            i.is_social
        ),
        ("a", "1", true)
    );
    assert_eq!(
        (i.created_at, i.updated_at, &i.profile),
        (NOW, NOW, &l.profile)
    );
    let mut again = l.clone();
    again.profile = profile("1", "ada@x.test", Some(true), "Ada L.");
    let second = record(store, &again, NOW + 5).await;
    assert_eq!(user_of(&second).logins_count, 2);
    assert_eq!(
        user_of(&second).profile,
        again.profile,
        "the primary identity sets the profile"
    );
    let i = &store
        .identities(std::slice::from_ref(&l.user_id))
        .await
        .expect("identities")[0];
    assert_eq!(
        (i.created_at, i.updated_at, &i.profile),
        (NOW, NOW + 5, &again.profile)
    );
}

/// `link_by_verified_email`: a new identity whose verified email is the
/// verified email of one user (letter case aside) joins that user: one
/// user, two identities, the user's profile left as their primary
/// identity set it; later logins through it stay with that user.
pub async fn a_new_identity_with_a_users_verified_email_joins_that_user(store: &dyn Store) {
    let ada = login("a", "1", "ada@x.test", true, LinkPolicy::None);
    record(store, &ada, NOW).await;
    let b = login(
        "b",
        "77",
        "Ada@X.test",
        true,
        LinkPolicy::LinkByVerifiedEmail,
    );
    let linked = record(store, &b, NOW + 1).await;
    let IdentityOutcome::Linked(user) = &linked else {
        panic!("{linked:?}")
    };
    assert_eq!(user.user_id, "oauth2|a|1");
    assert_eq!(user.logins_count, 2);
    assert_eq!(
        user.profile, ada.profile,
        "a linked identity does not set the root profile"
    );
    assert_eq!(
        identity_keys(store, "oauth2|a|1").await,
        vec![key("a", "1"), key("b", "77")]
    );
    assert_eq!(store.get_user("oauth2|b|77").await.expect("get"), None);
    let again = record(store, &b, NOW + 2).await;
    assert_eq!(
        again,
        IdentityOutcome::Recorded(
            store
                .get_user("oauth2|a|1")
                .await
                .expect("get")
                .expect("user")
        )
    );
    assert_eq!(user_of(&again).logins_count, 3);
    assert_eq!(store.count_users(None).await.expect("count"), 1);
}

/// An unverified email on either side never links: the identity is a new
/// user.
pub async fn an_unverified_email_on_either_side_never_links(store: &dyn Store) {
    let mut unverified_user = login("a", "1", "ada@x.test", false, LinkPolicy::None);
    unverified_user.profile = profile("1", "ada@x.test", None, "a");
    record(store, &unverified_user, NOW).await;
    let b = login(
        "b",
        "1",
        "ada@x.test",
        true,
        LinkPolicy::LinkByVerifiedEmail,
    );
    assert_eq!(user_of(&record(store, &b, NOW).await).user_id, "oauth2|b|1");

    let verified_user = login("c", "1", "bea@x.test", true, LinkPolicy::None);
    record(store, &verified_user, NOW).await;
    let d = login(
        "d",
        "1",
        "bea@x.test",
        false,
        LinkPolicy::LinkByVerifiedEmail,
    );
    assert_eq!(user_of(&record(store, &d, NOW).await).user_id, "oauth2|d|1");
    assert_eq!(store.count_users(None).await.expect("count"), 4);
}

/// Several users with the verified email: linking would be a guess, so
/// the login is refused and nothing is written.
pub async fn several_users_with_the_verified_email_refuse_the_link(store: &dyn Store) {
    for c in ["a", "b"] {
        record(
            store,
            &login(c, "1", "ada@x.test", true, LinkPolicy::None),
            NOW,
        )
        .await;
    }
    let l = login(
        "c",
        "1",
        "ada@x.test",
        true,
        LinkPolicy::LinkByVerifiedEmail,
    );
    assert_eq!(
        record(store, &l, NOW).await,
        IdentityOutcome::Refused(LinkRefusal::AmbiguousEmail { candidates: 2 })
    );
    assert_eq!(store.get_user("oauth2|c|1").await.expect("get"), None);
    assert_eq!(store.count_users(None).await.expect("count"), 2);
}

/// `deny_duplicate_email`: a new identity whose email (verified or not)
/// another user has is refused, nothing written; without such a user it
/// is a new user, and known identities log in as before.
pub async fn a_duplicate_email_is_refused_where_the_connection_denies_it(store: &dyn Store) {
    let mut ada = login("a", "1", "ada@x.test", false, LinkPolicy::None);
    ada.profile = profile("1", "ada@x.test", None, "a");
    record(store, &ada, NOW).await;
    let dup = login("b", "1", "ADA@x.test", true, LinkPolicy::DenyDuplicateEmail);
    assert_eq!(
        record(store, &dup, NOW).await,
        IdentityOutcome::Refused(LinkRefusal::DuplicateEmail)
    );
    assert_eq!(store.get_user("oauth2|b|1").await.expect("get"), None);
    assert!(identity_keys(store, "oauth2|b|1").await.is_empty());
    let fresh = login("b", "2", "bea@x.test", true, LinkPolicy::DenyDuplicateEmail);
    assert_eq!(
        user_of(&record(store, &fresh, NOW).await).user_id,
        "oauth2|b|2"
    );
    assert_eq!(
        user_of(&record(store, &fresh, NOW + 1).await).logins_count,
        2,
        "its own email is no duplicate"
    );
}

/// First logins with one verified email through several linking
/// connections at once make one user holding every identity, on any
/// backend: never two users where one would link.
pub async fn concurrent_first_logins_with_one_email_make_one_user_when_linking(store: &dyn Store) {
    let logins: Vec<IdentityLogin> = (0..RACERS)
        .map(|i| {
            login(
                &format!("c{i}"),
                "1",
                "ada@x.test",
                true,
                LinkPolicy::LinkByVerifiedEmail,
            )
        })
        .collect();
    let outcomes = race(RACERS, |i| store.record_identity_login(&logins[i], NOW));
    let outcomes: Vec<IdentityOutcome> =
        outcomes.into_iter().map(|o| o.expect("recorded")).collect();
    let created = outcomes
        .iter()
        .filter(|o| matches!(o, IdentityOutcome::Recorded(_)))
        .count();
    assert_eq!(created, 1, "one login creates the user: {outcomes:?}");
    let user_id = user_of(&outcomes[0]).user_id.clone();
    assert!(
        outcomes.iter().all(|o| user_of(o).user_id == user_id),
        "{outcomes:?}"
    );
    assert_eq!(store.count_users(None).await.expect("count"), 1);
    assert_eq!(identity_keys(store, &user_id).await.len(), RACERS);
    let user = store.get_user(&user_id).await.expect("get").expect("user");
    assert_eq!(user.logins_count, RACERS as u64, "every login counted");
}

/// Unlinking makes a linked identity its own user again (Auth0's unlink:
/// its profile, no metadata); a primary identity cannot leave its user,
/// and an identity that is not the user's is not found.
pub async fn unlinking_makes_a_linked_identity_its_own_user(store: &dyn Store) {
    record(
        store,
        &login("a", "1", "ada@x.test", true, LinkPolicy::None),
        NOW,
    )
    .await;
    let b = login(
        "b",
        "77",
        "ada@x.test",
        true,
        LinkPolicy::LinkByVerifiedEmail,
    );
    record(store, &b, NOW + 1).await;
    assert_eq!(
        store
            .unlink_identity("oauth2|a|1", "a", "1", "oauth2|a|1", NOW + 2)
            .await,
        Ok(Unlinked::Primary)
    );
    assert_eq!(
        store
            .unlink_identity("oauth2|a|1", "b", "78", "oauth2|b|78", NOW + 2)
            .await,
        Ok(Unlinked::NoSuchIdentity)
    );
    let unlinked = store
        .unlink_identity("oauth2|a|1", "b", "77", "oauth2|b|77", NOW + 2)
        .await
        .expect("unlink");
    let Unlinked::Unlinked(user) = &unlinked else {
        panic!("{unlinked:?}")
    };
    assert_eq!(user.user_id, "oauth2|b|77");
    assert_eq!(user.profile, b.profile);
    assert_eq!((user.created_at, user.logins_count), (NOW + 2, 0));
    assert!(user.app_metadata.is_empty() && user.user_metadata.is_empty());
    assert_eq!(
        store.get_user("oauth2|b|77").await.expect("get").as_ref(),
        Some(&**user)
    );
    assert_eq!(
        identity_keys(store, "oauth2|a|1").await,
        vec![key("a", "1")]
    );
    assert_eq!(
        identity_keys(store, "oauth2|b|77").await,
        vec![key("b", "77")]
    );
    assert_eq!(
        store
            .unlink_identity("oauth2|a|1", "b", "77", "oauth2|b|77", NOW + 3)
            .await,
        Ok(Unlinked::NoSuchIdentity),
        "it is not the user's any more"
    );
    let next = record(store, &b, NOW + 4).await;
    assert_eq!(
        user_of(&next).user_id,
        "oauth2|b|77",
        "it logs in as its own user"
    );
}

/// Unlinking into an id that is a user already is a conflict, nothing
/// changed.
pub async fn unlinking_into_an_existing_user_id_is_a_conflict(store: &dyn Store) {
    record(
        store,
        &login("a", "1", "ada@x.test", true, LinkPolicy::None),
        NOW,
    )
    .await;
    record(
        store,
        &login(
            "b",
            "1",
            "ada@x.test",
            true,
            LinkPolicy::LinkByVerifiedEmail,
        ),
        NOW,
    )
    .await;
    store
        .record_login("oauth2|x|9", "x", profile("9", "z@x.test", None, "z"), NOW)
        .await
        .expect("another user");
    assert!(matches!(
        store
            .unlink_identity("oauth2|a|1", "b", "1", "oauth2|x|9", NOW)
            .await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(identity_keys(store, "oauth2|a|1").await.len(), 2);
}

/// Deleting a user deletes their identities: the next login through one
/// starts a new user.
pub async fn deleting_a_user_deletes_their_identities(store: &dyn Store) {
    record(
        store,
        &login("a", "1", "ada@x.test", true, LinkPolicy::None),
        NOW,
    )
    .await;
    record(
        store,
        &login(
            "b",
            "1",
            "ada@x.test",
            true,
            LinkPolicy::LinkByVerifiedEmail,
        ),
        NOW,
    )
    .await;
    assert_eq!(store.delete_user("oauth2|a|1").await, Ok(true));
    assert!(identity_keys(store, "oauth2|a|1").await.is_empty());
    let b = login(
        "b",
        "1",
        "ada@x.test",
        true,
        LinkPolicy::LinkByVerifiedEmail,
    );
    let again = record(store, &b, NOW + 1).await;
    assert_eq!(
        again,
        IdentityOutcome::Recorded(
            store
                .get_user("oauth2|b|1")
                .await
                .expect("get")
                .expect("user")
        )
    );
}

/// `record_login` (the path without linking) keeps the identity it names
/// as the user's, so every user has at least one.
pub async fn a_plain_login_records_its_identity(store: &dyn Store) {
    store
        .record_login("oauth2|a|5", "a", profile("5", "e@x.test", None, "e"), NOW)
        .await
        .expect("record");
    assert_eq!(
        identity_keys(store, "oauth2|a|5").await,
        vec![key("a", "5")]
    );
    let both = store
        .identities(&["oauth2|a|5".into(), "oauth2|none".into()])
        .await
        .expect("identities");
    assert_eq!(both.len(), 1);
}

/// A login recorded with the provider's tokens of it (the callback's one
/// write) keeps them for its identity, replacing the last login's; a
/// refused login keeps neither its user nor its tokens.
pub async fn a_login_recorded_with_its_tokens_keeps_them_and_a_refused_one_keeps_neither(
    store: &dyn Store,
) {
    let tokens = |connection: &str, id: &str, access: &str, now: u64| IdpTokens {
        connection_id: format!("con_{connection}"),
        provider_user_id: id.into(),
        access_token: access.into(),
        refresh_token: Some(format!("rt-{access}")),
        expires_at: Some(now + 3600),
        updated_at: now,
    };
    let mut ada = login("a", "1", "ada@x.test", false, LinkPolicy::None);
    ada.profile = profile("1", "ada@x.test", None, "a");
    let first = tokens("a", "1", "at-1", NOW);
    let outcome = store
        .record_identity_login_with_tokens(&ada, &first, NOW)
        .await
        .expect("recorded");
    assert_eq!(user_of(&outcome).user_id, "oauth2|a|1");
    assert_eq!(
        store.idp_tokens("con_a", "1").await.expect("read"),
        Some(first)
    );
    let second = tokens("a", "1", "at-2", NOW + 1);
    let outcome = store
        .record_identity_login_with_tokens(&ada, &second, NOW + 1)
        .await
        .expect("recorded");
    assert_eq!(user_of(&outcome).logins_count, 2);
    assert_eq!(
        store.idp_tokens("con_a", "1").await.expect("read"),
        Some(second),
        "the next login's tokens replace the last one's"
    );

    let dup = login("b", "1", "ADA@x.test", true, LinkPolicy::DenyDuplicateEmail);
    assert_eq!(
        store
            .record_identity_login_with_tokens(&dup, &tokens("b", "1", "at-b", NOW), NOW)
            .await
            .expect("answered"),
        IdentityOutcome::Refused(LinkRefusal::DuplicateEmail)
    );
    assert_eq!(store.get_user("oauth2|b|1").await.expect("get"), None);
    assert_eq!(
        store.idp_tokens("con_b", "1").await.expect("read"),
        None,
        "a refused login's tokens are not kept"
    );
}
