//! The conformance behaviours of [`waypass::store::SessionStore`] (issue
//! #11): browser sessions, refresh tokens and their families, the
//! revocation of what was issued under them, and registered APIs.

use waypass::store::{
    AccessGrant, RefreshGrant, RefreshLookup, Rotation, Session, SessionLogin, Store, StoreError,
    StoredResourceServer, StoredScope,
};

use super::{NOW, RACERS, access, grant, grant_fields, key, race};

/// A session of `user` created at [`NOW`], idle for 100 s, over at +1000 s.
pub(crate) fn session(id: &str, user: &str, clients: &[&str]) -> Session {
    Session {
        id: id.into(),
        user_id: user.into(),
        logins: vec![
            SessionLogin {
                connection: "acme".into(),
                auth_time: NOW - 50,
            },
            SessionLogin {
                connection: "other".into(),
                auth_time: NOW,
            },
        ],
        clients: clients.iter().map(|c| (*c).to_owned()).collect(),
        created_at: NOW - 50,
        last_active: NOW,
        idle_expires_at: NOW + 100,
        expires_at: NOW + 1000,
    }
}

/// The first token of family `family` of `user` for `client`: idle for
/// 100 s, over at +1000 s.
pub(crate) fn refresh(family: &str, user: &str, client: &str) -> RefreshGrant {
    RefreshGrant {
        family_id: family.into(),
        user_id: user.into(),
        client_id: client.into(),
        connection: "acme".into(),
        scope: "openid offline_access".into(),
        audience: Some("https://api.example/".into()),
        session_id: Some("ses_1".into()),
        auth_time: NOW - 5,
        created_at: NOW,
        issued_at: NOW,
        idle_expires_at: NOW + 100,
        expires_at: NOW + 1000,
    }
}

/// The successor of `grant`, issued at `now`.
fn successor(grant: &RefreshGrant, now: u64) -> RefreshGrant {
    RefreshGrant {
        issued_at: now,
        idle_expires_at: (now + 100).min(grant.expires_at),
        ..grant.clone()
    }
}

fn family_access(user: &str, family: &str) -> AccessGrant {
    AccessGrant {
        family_id: Some(family.into()),
        ..access(user, NOW + 600)
    }
}

async fn lookup(store: &dyn Store, tag: &str, now: u64) -> RefreshLookup {
    store
        .get_refresh_token(key(tag), now)
        .await
        .expect("get refresh token")
}

// ---- sessions ----

/// A session is found by its cookie's hash and by its id, whole, until its
/// idle or its absolute expiry, whichever comes first.
pub async fn sessions_are_found_by_cookie_and_id_until_they_expire(store: &dyn Store) {
    let written = session("ses_a", "oauth2|acme|1", &["app"]);
    store
        .put_session(key("cookie a"), &written)
        .await
        .expect("put");
    for now in [NOW, NOW + 99] {
        assert_eq!(
            store.get_session(key("cookie a"), now).await.expect("get"),
            Some(written.clone()),
            "live at {now}"
        );
        assert_eq!(
            store.session("ses_a", now).await.expect("by id"),
            Some(written.clone())
        );
    }
    assert_eq!(
        store
            .sessions_of_user("oauth2|acme|1", NOW)
            .await
            .expect("list"),
        vec![written.clone()]
    );
    assert_eq!(
        store
            .get_session(key("cookie a"), NOW + 100)
            .await
            .expect("get"),
        None,
        "idle expiry ends it"
    );
    assert_eq!(store.session("ses_a", NOW + 100).await.expect("id"), None);
    assert!(
        store
            .sessions_of_user("oauth2|acme|1", NOW + 100)
            .await
            .expect("list")
            .is_empty()
    );
    assert_eq!(
        store.get_session(key("unknown"), NOW).await.expect("get"),
        None
    );

    // The absolute expiry ends a session whose idle expiry is later.
    let capped = Session {
        id: "ses_b".into(),
        idle_expires_at: NOW + 2000,
        ..written
    };
    store
        .put_session(key("cookie b"), &capped)
        .await
        .expect("put");
    assert!(
        store
            .get_session(key("cookie b"), NOW + 999)
            .await
            .expect("get")
            .is_some()
    );
    assert_eq!(
        store
            .get_session(key("cookie b"), NOW + 1000)
            .await
            .expect("get"),
        None,
        "absolute expiry ends it"
    );
}

/// Putting a session again under its key replaces it, but the apps it
/// recorded stay (a back-channel logout must still reach them); its id
/// under another key is a conflict.
pub async fn putting_a_session_again_keeps_its_apps_and_its_id_is_unique(store: &dyn Store) {
    let first = session("ses_a", "oauth2|acme|1", &["app"]);
    store.put_session(key("cookie"), &first).await.expect("put");
    let again = Session {
        clients: vec!["spa".into()],
        last_active: NOW + 5,
        ..first.clone()
    };
    store
        .put_session(key("cookie"), &again)
        .await
        .expect("put again");
    let read = store
        .get_session(key("cookie"), NOW)
        .await
        .expect("get")
        .expect("present");
    assert_eq!(read.clients, vec!["app".to_owned(), "spa".to_owned()]);
    assert_eq!(read.last_active, NOW + 5);
    let clash = store.put_session(key("another cookie"), &first).await;
    assert!(
        matches!(clash, Err(StoreError::Conflict(_))),
        "one id, one key: {clash:?}"
    );
}

/// Touching a live session records the app and moves its idle expiry
/// forward — never back, never past its absolute expiry; a dead session
/// is not touched.
pub async fn touching_a_session_records_the_app_and_only_extends_it(store: &dyn Store) {
    store
        .put_session(key("cookie"), &session("ses_a", "u", &["app"]))
        .await
        .expect("put");
    assert!(
        store
            .touch_session(key("cookie"), "spa", NOW + 50, NOW + 150)
            .await
            .expect("touch")
    );
    let read = store
        .session("ses_a", NOW + 50)
        .await
        .expect("get")
        .expect("live");
    assert_eq!(read.clients, vec!["app".to_owned(), "spa".to_owned()]);
    assert_eq!(read.idle_expires_at, NOW + 150);
    assert_eq!(read.last_active, NOW + 50);

    assert!(
        store
            .touch_session(key("cookie"), "app", NOW + 60, NOW + 120)
            .await
            .expect("touch")
    );
    let read = store
        .session("ses_a", NOW + 60)
        .await
        .expect("get")
        .expect("live");
    assert_eq!(read.idle_expires_at, NOW + 150, "never moved back");
    assert_eq!(read.clients, vec!["app".to_owned(), "spa".to_owned()]);

    assert!(
        store
            .touch_session(key("cookie"), "app", NOW + 100, NOW + 5000)
            .await
            .expect("touch")
    );
    let read = store
        .session("ses_a", NOW + 100)
        .await
        .expect("get")
        .expect("live");
    assert_eq!(
        read.idle_expires_at,
        NOW + 1000,
        "never past the absolute expiry"
    );

    assert!(
        !store
            .touch_session(key("cookie"), "app", NOW + 1000, NOW + 1100)
            .await
            .expect("touch"),
        "an expired session is not touched"
    );
    assert!(
        !store
            .touch_session(key("unknown"), "app", NOW, NOW + 100)
            .await
            .expect("touch")
    );
}

/// Deleting a session returns it as it was, and its cookie stops working;
/// deleting a user's sessions leaves other users' sessions.
pub async fn deleting_sessions_returns_them_and_ends_them(store: &dyn Store) {
    let ada = session("ses_a", "ada", &["app", "spa"]);
    let ada2 = session("ses_a2", "ada", &["app"]);
    let bob = session("ses_b", "bob", &["app"]);
    for (cookie, s) in [("a", &ada), ("a2", &ada2), ("b", &bob)] {
        store.put_session(key(cookie), s).await.expect("put");
    }
    assert_eq!(
        store.delete_session("ses_a").await.expect("delete"),
        Some(ada.clone())
    );
    assert_eq!(store.get_session(key("a"), NOW).await.expect("get"), None);
    assert_eq!(store.delete_session("ses_a").await.expect("again"), None);
    let mut ended = store.delete_sessions_of_user("ada").await.expect("user");
    ended.sort_by(|x, y| x.id.cmp(&y.id));
    assert_eq!(ended, vec![ada2]);
    assert_eq!(store.get_session(key("a2"), NOW).await.expect("get"), None);
    assert_eq!(
        store.get_session(key("b"), NOW).await.expect("get"),
        Some(bob),
        "another user's session stays"
    );
}

// ---- refresh tokens ----

/// A refresh token rotates once: afterwards it reads as rotated, its
/// successor is the family's live token, and the family keeps its grant.
pub async fn a_refresh_token_rotates_once_into_its_successor(store: &dyn Store) {
    let first = refresh("rtf_1", "ada", "app");
    store
        .put_refresh_token(key("rt1"), &first)
        .await
        .expect("put");
    assert_eq!(
        lookup(store, "rt1", NOW).await,
        RefreshLookup::Live(first.clone())
    );
    let next = successor(&first, NOW + 10);
    let rotated = store
        .rotate_refresh_token(key("rt1"), key("rt2"), &next, NOW + 10)
        .await
        .expect("rotate");
    assert_eq!(rotated, Rotation::Rotated);
    assert!(
        matches!(lookup(store, "rt1", NOW + 10).await, RefreshLookup::Rotated(g) if g.family_id == "rtf_1"),
        "the used token is remembered as used"
    );
    assert_eq!(
        lookup(store, "rt2", NOW + 10).await,
        RefreshLookup::Live(next.clone())
    );
    assert_eq!(
        store
            .refresh_family("rtf_1", NOW + 10)
            .await
            .expect("family"),
        Some(next)
    );
    assert_eq!(lookup(store, "unknown", NOW).await, RefreshLookup::Absent);
}

/// Presenting a rotated token again revokes its whole family — the
/// successor too — and leaves other families alone.
pub async fn reusing_a_rotated_refresh_token_revokes_its_family(store: &dyn Store) {
    let first = refresh("rtf_1", "ada", "app");
    let other = refresh("rtf_2", "ada", "app");
    store
        .put_refresh_token(key("rt1"), &first)
        .await
        .expect("put");
    store
        .put_refresh_token(key("other"), &other)
        .await
        .expect("put");
    let rotated = store
        .rotate_refresh_token(key("rt1"), key("rt2"), &successor(&first, NOW), NOW)
        .await
        .expect("rotate");
    assert_eq!(rotated, Rotation::Rotated);
    let reused = store
        .rotate_refresh_token(key("rt1"), key("rt3"), &successor(&first, NOW), NOW + 1)
        .await
        .expect("reuse");
    assert_eq!(reused, Rotation::Reused { revoked: 2 });
    for tag in ["rt1", "rt2", "rt3"] {
        assert_eq!(
            lookup(store, tag, NOW + 1).await,
            RefreshLookup::Absent,
            "{tag} is revoked with its family"
        );
    }
    assert_eq!(
        store.refresh_family("rtf_1", NOW + 1).await.expect("fam"),
        None
    );
    assert_eq!(
        lookup(store, "other", NOW + 1).await,
        RefreshLookup::Live(other),
        "another family is untouched"
    );
}

/// Of concurrent uses of one refresh token, exactly one rotates; the
/// others find reuse (or the family already revoked by it), and no token
/// of the family is left alive — the PostgreSQL race the family lock is for.
pub async fn concurrent_uses_of_one_refresh_token_let_exactly_one_rotate(store: &dyn Store) {
    for round in 0..5 {
        let family = format!("rtf_race_{round}");
        let first = refresh(&family, "ada", "app");
        let used = key(&format!("race {round}"));
        store.put_refresh_token(used, &first).await.expect("put");
        let next = successor(&first, NOW);
        let results = race(RACERS, |i| {
            let next = next.clone();
            async move {
                store
                    .rotate_refresh_token(used, key(&format!("race {round} next {i}")), &next, NOW)
                    .await
            }
        });
        let results: Vec<Rotation> = results
            .into_iter()
            .map(|r| r.expect("no rotation fails"))
            .collect();
        let winners = results.iter().filter(|r| **r == Rotation::Rotated).count();
        assert_eq!(winners, 1, "round {round}: {results:?}");
        assert!(
            results.iter().any(|r| matches!(r, Rotation::Reused { .. })),
            "round {round}: a loser sees the reuse: {results:?}"
        );
        assert_eq!(
            store.refresh_family(&family, NOW).await.expect("family"),
            None,
            "round {round}: the family is revoked whole"
        );
        for i in 0..RACERS {
            assert_eq!(
                lookup(store, &format!("race {round} next {i}"), NOW).await,
                RefreshLookup::Absent,
                "round {round}: no successor survives"
            );
        }
    }
}

/// A refresh token unused past its idle expiry, or past its family's
/// absolute expiry, is absent and does not rotate.
pub async fn an_expired_refresh_token_is_absent_and_does_not_rotate(store: &dyn Store) {
    let first = refresh("rtf_1", "ada", "app");
    store
        .put_refresh_token(key("rt1"), &first)
        .await
        .expect("put");
    assert!(matches!(
        lookup(store, "rt1", NOW + 99).await,
        RefreshLookup::Live(_)
    ));
    assert_eq!(lookup(store, "rt1", NOW + 100).await, RefreshLookup::Absent);
    let rotated = store
        .rotate_refresh_token(
            key("rt1"),
            key("rt2"),
            &successor(&first, NOW + 100),
            NOW + 100,
        )
        .await
        .expect("rotate");
    assert_eq!(rotated, Rotation::Absent);
    assert_eq!(lookup(store, "rt2", NOW + 100).await, RefreshLookup::Absent);
}

/// A user's live families are listed, one token each, and deleted by user
/// or by app without touching the others'.
pub async fn refresh_tokens_are_listed_and_deleted_by_user_and_by_app(store: &dyn Store) {
    let a1 = refresh("rtf_a1", "ada", "app");
    let a2 = refresh("rtf_a2", "ada", "spa");
    let b1 = refresh("rtf_b1", "bob", "app");
    for (tag, g) in [("a1", &a1), ("a2", &a2), ("b1", &b1)] {
        store.put_refresh_token(key(tag), g).await.expect("put");
    }
    // A rotated family shows its live token only.
    let a1_next = successor(&a1, NOW + 1);
    let rotated = store
        .rotate_refresh_token(key("a1"), key("a1 next"), &a1_next, NOW + 1)
        .await
        .expect("rotate");
    assert_eq!(rotated, Rotation::Rotated);
    let mut listed = store
        .refresh_tokens_of_user("ada", NOW + 1)
        .await
        .expect("list");
    listed.sort_by(|x, y| x.family_id.cmp(&y.family_id));
    assert_eq!(listed, vec![a1_next, a2.clone()]);

    assert_eq!(
        store
            .delete_refresh_tokens_of_client("spa")
            .await
            .expect("by app"),
        1
    );
    assert_eq!(lookup(store, "a2", NOW + 1).await, RefreshLookup::Absent);
    assert_eq!(
        store
            .delete_refresh_tokens_of_user("ada")
            .await
            .expect("by user"),
        2,
        "the used token and its successor"
    );
    assert_eq!(
        lookup(store, "a1 next", NOW + 1).await,
        RefreshLookup::Absent
    );
    assert_eq!(
        lookup(store, "b1", NOW + 1).await,
        RefreshLookup::Live(b1),
        "another user's token stays"
    );
    assert_eq!(
        store.revoke_refresh_family("rtf_b1").await.expect("revoke"),
        1
    );
    assert_eq!(lookup(store, "b1", NOW + 1).await, RefreshLookup::Absent);
    assert_eq!(
        store.revoke_refresh_family("rtf_b1").await.expect("again"),
        0
    );
}

/// Access tokens are deleted one by one, by user, or by the refresh-token
/// family they were issued from, each leaving the rest.
pub async fn access_tokens_are_deleted_by_token_user_and_family(store: &dyn Store) {
    let put = |tag: &'static str, grant: AccessGrant| async move {
        store
            .put_access_token(key(tag), grant)
            .await
            .expect("put token");
    };
    put("single", access("ada", NOW + 600)).await;
    put("ada family", family_access("ada", "rtf_1")).await;
    put("ada family 2", family_access("ada", "rtf_1")).await;
    put("ada other", access("ada", NOW + 600)).await;
    put("bob", family_access("bob", "rtf_2")).await;
    let present = |tag: &'static str| async move {
        store
            .get_access_token(key(tag), NOW)
            .await
            .expect("get")
            .is_some()
    };
    assert!(store.delete_access_token(key("single")).await.expect("del"));
    assert!(!store.delete_access_token(key("single")).await.expect("del"));
    assert!(!present("single").await);
    assert_eq!(
        store
            .delete_access_tokens_of_family("rtf_1")
            .await
            .expect("family"),
        2
    );
    assert!(!present("ada family").await && !present("ada family 2").await);
    assert!(present("ada other").await);
    assert_eq!(
        store
            .delete_access_tokens_of_user("ada")
            .await
            .expect("user"),
        1
    );
    assert!(!present("ada other").await);
    assert!(present("bob").await, "another user's token stays");
}

/// A sweep deletes expired sessions and refresh tokens; a used refresh
/// token stays until its family's absolute expiry, so reuse is still seen.
pub async fn sweeping_sessions_keeps_used_refresh_tokens_until_their_family_ends(
    store: &dyn Store,
) {
    store
        .put_session(key("s"), &session("ses_a", "ada", &["app"]))
        .await
        .expect("put");
    let first = refresh("rtf_1", "ada", "app");
    store
        .put_refresh_token(key("rt1"), &first)
        .await
        .expect("put");
    let rotated = store
        .rotate_refresh_token(key("rt1"), key("rt2"), &successor(&first, NOW), NOW)
        .await
        .expect("rotate");
    assert_eq!(rotated, Rotation::Rotated);
    let swept = store.sweep_sessions(NOW + 99).await.expect("sweep");
    assert_eq!((swept.sessions, swept.refresh_tokens), (0, 0));
    let swept = store.sweep_sessions(NOW + 100).await.expect("sweep");
    assert_eq!(
        (swept.sessions, swept.refresh_tokens),
        (1, 1),
        "the idle session and the unused successor go"
    );
    assert!(
        matches!(
            lookup(store, "rt1", NOW + 100).await,
            RefreshLookup::Rotated(_)
        ),
        "the used token stays: its reuse must still be recognised"
    );
    let swept = store.sweep_sessions(NOW + 1000).await.expect("sweep");
    assert_eq!(swept.refresh_tokens, 1, "gone at the family's end");
}

// ---- APIs ----

pub(crate) fn api(id: &str, identifier: &str) -> StoredResourceServer {
    StoredResourceServer {
        id: id.into(),
        name: format!("API {id}"),
        identifier: identifier.into(),
        scopes: vec![StoredScope {
            value: "read:orders".into(),
            description: "Read orders".into(),
        }],
        signing_alg: "ES256".into(),
        token_lifetime: 600,
        allow_offline_access: true,
    }
}

/// APIs are put, listed whole, replaced by id and deleted; identifiers are
/// unique; each write is in the catalog.
pub async fn resource_servers_are_put_listed_and_deleted_with_unique_identifiers(
    store: &dyn Store,
) {
    let orders = api("rs_1", "https://orders.example/");
    store.put_resource_server(&orders).await.expect("put");
    let before = store.catalog().await.expect("catalog").version;
    let renamed = StoredResourceServer {
        name: "Orders".into(),
        ..orders.clone()
    };
    store.put_resource_server(&renamed).await.expect("replace");
    assert_eq!(
        store.resource_servers().await.expect("list"),
        vec![renamed.clone()]
    );
    let catalog = store.catalog().await.expect("catalog");
    assert_eq!(catalog.resource_servers, vec![renamed]);
    assert!(
        catalog.version > before,
        "a write bumps the catalog version"
    );
    let clash = store
        .put_resource_server(&api("rs_2", "https://orders.example/"))
        .await;
    assert!(
        matches!(clash, Err(StoreError::Conflict(_))),
        "identifiers are unique: {clash:?}"
    );
    assert!(store.delete_resource_server("rs_1").await.expect("delete"));
    assert!(!store.delete_resource_server("rs_1").await.expect("again"));
    assert!(store.resource_servers().await.expect("list").is_empty());
}

/// A login's session and the app's code written in one call (the
/// callback's last write) are found as `put_session` and `put_code` would
/// leave them: the session by its cookie and id, the code once.
pub async fn a_session_and_code_written_together_are_each_found_as_if_written_apart(
    store: &dyn Store,
) {
    let s = session("ses_1", "u1", &["app"]);
    let code = grant("u1", NOW + 60);
    store
        .put_session_and_code(key("cookie"), &s, key("code"), code.clone())
        .await
        .expect("written");
    assert_eq!(
        store.get_session(key("cookie"), NOW).await.expect("read"),
        Some(s.clone())
    );
    assert_eq!(
        store.session("ses_1", NOW).await.expect("read"),
        Some(s.clone())
    );
    let taken = store.take_code(key("code"), NOW).await.expect("take");
    assert_eq!(taken.as_ref().map(grant_fields), Some(grant_fields(&code)));
    assert!(
        store
            .take_code(key("code"), NOW)
            .await
            .expect("take")
            .is_none(),
        "the code is single use"
    );
}
