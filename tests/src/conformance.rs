//! One test suite for every [`Store`] backend, after Dex's
//! `storage/conformance`: what the broker relies on, stated once, so a
//! backend passes or fails the same checks as the memory store.
//!
//! [`run_all`] takes a factory (async: a PostgreSQL store is a new database
//! and a connection) and gives every behaviour a fresh store; each
//! behaviour is also a public function of its own, named as a sentence.
//! Times are fixed values (the trait takes `now`), never the clock.

pub(crate) mod branding;
pub(crate) mod identities;
pub(crate) mod sealed;
pub(crate) mod sessions;
pub use branding::*;
pub use identities::*;
pub use sealed::{run_sealed, the_providers_tokens_are_kept_per_identity};
pub use sessions::*;

use std::future::Future;
use std::sync::Barrier;

use std::collections::BTreeMap;

use serde_json::json;
use waypass::mapper::Profile;
use waypass::model::{ConnectionRecord, ConnectionSpec};
use waypass::secret::{Secret, SecretHash};
use waypass::store::{
    AccessGrant, AuthorizationGrant, LogEvent, LogQuery, LoginTransaction, MapperEntry, Metadata,
    PutTransaction, Store, StoreError, StoredAction, StoredActionSecret, StoredClient,
    StoredConnection, StoredConnectionOptions, StoredConnectionSpec, StoredMapperEgress,
    StoredRule, StoredScripts, Swept, TakeTransaction,
};

/// "Now" in every behaviour: a fixed time, so expiry is exact.
pub const NOW: u64 = 1_700_000_000;

/// How many threads race for one key in the concurrency checks.
const RACERS: usize = 8;

/// A bound on live transactions that the behaviours not about it never reach.
const UNBOUNDED: usize = usize::MAX;

/// Runs every behaviour, each against a fresh store from `new_store`. The
/// name of each is printed before it runs, so a failure says which.
pub async fn run_all<F, Fut>(new_store: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Box<dyn Store>>,
{
    macro_rules! run {
        ($($behaviour:ident),* $(,)?) => {
            $(
                eprintln!("conformance: {}", stringify!($behaviour));
                $behaviour(&*new_store().await).await;
            )*
        };
    }
    run!(
        transactions_are_single_use,
        transactions_keep_every_field,
        expired_transactions_are_not_returned,
        concurrent_takes_of_one_transaction_let_exactly_one_win,
        a_transaction_is_taken_only_with_its_browser_binding,
        concurrent_takes_without_the_binding_never_take_the_transaction,
        no_transaction_is_stored_past_the_bound_on_live_ones,
        sweeping_deletes_what_has_expired_and_keeps_what_has_not,
        codes_are_single_use,
        codes_keep_every_field,
        expired_codes_are_not_returned,
        concurrent_takes_of_one_code_let_exactly_one_win,
        a_code_is_taken_once_with_its_user_as_stored,
        a_code_whose_user_is_gone_is_taken_without_one,
        access_tokens_can_be_read_until_they_expire,
        deleting_a_clients_access_tokens_leaves_other_clients_tokens,
        unknown_keys_are_absent,
        each_kind_has_its_own_keys,
        putting_a_key_again_replaces_its_value,
        a_first_login_creates_the_user,
        a_second_login_updates_the_profile_and_counts,
        concurrent_logins_of_one_user_all_count,
        users_are_paged_and_searched_by_email,
        deleting_a_user_says_whether_there_was_one,
        connections_are_put_listed_and_deleted_by_id,
        connection_names_are_unique,
        connections_keep_their_secrets,
        every_field_of_a_connection_survives_the_store,
        clients_are_put_listed_and_deleted_by_id,
        mapper_versions_count_up_and_the_newest_is_active,
        mapper_bytes_are_kept_per_version,
        activating_an_unknown_version_is_refused,
        an_older_mapper_version_can_be_activated_again,
        deleting_a_mapper_removes_every_version,
        mappers_are_listed_by_name,
        concurrent_registrations_of_one_mapper_get_distinct_versions,
        signing_keys_are_initialised_once,
        instances_starting_together_agree_on_one_key_set,
        connection_keys_are_initialised_once_per_connection,
        instances_needing_a_connections_keys_at_once_agree_on_one,
        a_key_rotation_replaces_only_the_document_it_read,
        every_catalog_write_bumps_the_catalog_version,
        the_catalog_is_read_whole_with_its_version,
        a_lease_is_held_by_one_holder_until_it_expires,
        concurrent_lease_takers_let_exactly_one_win,
        metadata_merges_top_level_properties_and_null_removes_one,
        a_login_keeps_the_users_metadata,
        merging_metadata_of_an_unknown_user_finds_nobody,
        concurrent_metadata_merges_all_land,
        actions_are_put_listed_and_their_names_are_unique,
        deploying_an_action_stores_its_draft_as_the_next_active_version,
        an_action_without_a_draft_has_nothing_to_deploy,
        an_older_action_version_can_be_activated_again,
        bindings_keep_their_order_and_refuse_unknown_actions,
        deleting_an_action_removes_its_versions_and_bindings,
        action_writes_bump_the_catalog_and_the_catalog_holds_them,
        log_events_are_listed_newest_first_and_paged_with_a_total,
        log_events_are_filtered_by_type_user_connection_and_date,
        a_log_checkpoint_returns_the_later_events_oldest_first,
        log_events_are_read_by_id_and_stored_once,
        retention_deletes_only_the_events_before_its_date,
        signing_keys_are_replaced_only_over_the_expected_document,
        sessions_are_found_by_cookie_and_id_until_they_expire,
        putting_a_session_again_keeps_its_apps_and_its_id_is_unique,
        touching_a_session_records_the_app_and_only_extends_it,
        deleting_sessions_returns_them_and_ends_them,
        a_refresh_token_rotates_once_into_its_successor,
        reusing_a_rotated_refresh_token_revokes_its_family,
        concurrent_uses_of_one_refresh_token_let_exactly_one_rotate,
        an_expired_refresh_token_is_absent_and_does_not_rotate,
        refresh_tokens_are_listed_and_deleted_by_user_and_by_app,
        access_tokens_are_deleted_by_token_user_and_family,
        sweeping_sessions_keeps_used_refresh_tokens_until_their_family_ends,
        resource_servers_are_put_listed_and_deleted_with_unique_identifiers,
        branding_settings_and_template_are_kept_apart_and_each_write_bumps_the_catalog,
        the_providers_tokens_are_kept_per_identity,
        rules_are_listed_in_order_replaced_by_id_and_deleted,
        a_rules_name_is_unique,
        rule_writes_bump_the_catalog_version,
        a_first_login_through_an_identity_creates_its_user_with_that_identity,
        a_new_identity_with_a_users_verified_email_joins_that_user,
        an_unverified_email_on_either_side_never_links,
        several_users_with_the_verified_email_refuse_the_link,
        a_duplicate_email_is_refused_where_the_connection_denies_it,
        concurrent_first_logins_with_one_email_make_one_user_when_linking,
        unlinking_makes_a_linked_identity_its_own_user,
        unlinking_into_an_existing_user_id_is_a_conflict,
        deleting_a_user_deletes_their_identities,
        a_plain_login_records_its_identity,
        a_login_recorded_with_its_tokens_keeps_them_and_a_refused_one_keeps_neither,
        a_session_and_code_written_together_are_each_found_as_if_written_apart,
    );
}

// ---- test data ----

fn key(tag: &str) -> SecretHash {
    SecretHash::of(tag)
}

/// The browser binding of [`transaction`]`(tag, _)`.
fn binding(tag: &str) -> SecretHash {
    key(&format!("cookie-{tag}"))
}

/// Stores `tx` under `state` with no bound in reach.
async fn put_tx(store: &dyn Store, state: SecretHash, tx: LoginTransaction) {
    let put = store
        .put_transaction(state, tx, NOW, UNBOUNDED)
        .await
        .expect("put");
    assert_eq!(put, PutTransaction::Stored);
}

/// Takes the transaction of `tag` stored under `state` with its binding.
async fn take_tx(store: &dyn Store, state: SecretHash, tag: &str, now: u64) -> TakeTransaction {
    store
        .take_transaction(state, Some(binding(tag)), now)
        .await
        .expect("take")
}

/// A transaction with every optional field set.
fn transaction(tag: &str, expires_at: u64) -> LoginTransaction {
    LoginTransaction {
        client_id: format!("app-{tag}"),
        redirect_uri: "https://app.example/callback?x=1".into(),
        app_state: Some(format!("state-{tag}")),
        nonce: Some("n-0S6_WzA2Mj".into()),
        code_challenge: Some("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".into()),
        scope: "openid profile email".into(),
        connection: "acme".into(),
        provider_verifier: Some(Secret::new(format!("verifier-{tag}"))),
        browser_binding: binding(tag),
        correlation_id: format!("corr-{tag}"),
        expires_at,
        form_post: true,
        audience: Some("https://api.example/".into()),
        query: vec![("prompt".into(), "login".into())],
    }
}

/// A transaction with every optional field empty.
fn bare_transaction(tag: &str, expires_at: u64) -> LoginTransaction {
    LoginTransaction {
        app_state: None,
        nonce: None,
        code_challenge: None,
        provider_verifier: None,
        form_post: false,
        audience: None,
        query: Vec::new(),
        ..transaction(tag, expires_at)
    }
}

fn grant(user: &str, expires_at: u64) -> AuthorizationGrant {
    AuthorizationGrant {
        claims: Default::default(),
        client_id: "app".into(),
        redirect_uri: "https://app.example/callback".into(),
        user_id: user.into(),
        scope: "openid email".into(),
        nonce: Some("nonce-1".into()),
        code_challenge: Some("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".into()),
        auth_time: NOW - 5,
        session_id: Some("ses_1".into()),
        audience: Some("https://api.example/".into()),
        correlation_id: Some("corr-1".into()),
        expires_at,
    }
}

fn access(user: &str, expires_at: u64) -> AccessGrant {
    AccessGrant {
        claims: Default::default(),
        user_id: user.into(),
        client_id: "app".into(),
        scope: "openid profile".into(),
        family_id: None,
        expires_at,
    }
}

fn profile(user_id: &str, email: Option<&str>, name: &str) -> Profile {
    let mut p = json!({
        "user_id": user_id,
        "name": name,
        "email_verified": true,
        "extra": {"plan": "pro", "groups": ["admins", "ops"]},
    });
    if let Some(email) = email {
        p["email"] = email.into();
    }
    serde_json::from_value(p).expect("a valid profile")
}

fn connection(id: &str, name: &str) -> StoredConnection {
    let spec: ConnectionSpec = serde_json::from_value(json!({
        "name": name,
        "display_name": format!("{name} SSO"),
        "enabled_clients": ["app", "spa"],
        "options": {
            "authorizationURL": "https://login.acme.test/authorize",
            "tokenURL": "https://login.acme.test/token",
            "scope": "openid email",
            "client_id": "waypass",
            "client_secret": "s3cret",
            "mapper": "acme-mapper",
            "mapper_settings": {"api_key": "k-123"},
            "customHeaders": {"X-Tenant": "t1"},
            "authParams": {"prompt": "login"},
            "pkce_enabled": true,
            "token_endpoint_auth_method": "client_secret_basic",
            "mapper_egress": {"allowed_hosts": ["api.acme.test"]},
            "mapper_timeout_ms": 1500,
        }
    }))
    .expect("a valid connection spec");
    ConnectionRecord {
        id: id.into(),
        spec,
    }
    .to_stored()
}

fn client(client_id: &str, callback: &str) -> StoredClient {
    serde_json::from_value(json!({
        "client_id": client_id,
        "name": format!("App {client_id}"),
        "client_type": "confidential",
        "secret_hash": key("app secret").to_hex(),
        "callbacks": [callback],
        "id_token_alg": "ES256",
        "scopes": ["read:users"],
        "require_pkce": false,
    }))
    .expect("a valid client")
}

/// Every field of a transaction, secrets exposed, for comparison
/// (`LoginTransaction` is not `PartialEq`, and `Debug` hides the verifier).
fn fields(tx: &LoginTransaction) -> Vec<String> {
    vec![
        tx.client_id.clone(),
        tx.redirect_uri.clone(),
        format!("{:?}", tx.app_state),
        format!("{:?}", tx.nonce),
        format!("{:?}", tx.code_challenge),
        tx.scope.clone(),
        tx.connection.clone(),
        format!("{:?}", tx.provider_verifier.as_ref().map(Secret::expose)),
        tx.browser_binding.to_hex(),
        tx.correlation_id.clone(),
        tx.expires_at.to_string(),
        tx.form_post.to_string(),
        format!("{:?}", tx.audience),
        format!("{:?}", tx.query),
    ]
}

fn grant_fields(g: &AuthorizationGrant) -> String {
    format!("{g:?}")
}

fn access_fields(a: &AccessGrant) -> String {
    format!("{a:?}")
}

fn connection_json(record: &StoredConnection) -> (String, serde_json::Value) {
    (
        record.id.clone(),
        serde_json::to_value(&record.spec).expect("a stored spec serialises"),
    )
}

fn ids(users: &[waypass::store::User]) -> Vec<&str> {
    users.iter().map(|u| u.user_id.as_str()).collect()
}

/// Runs `racer(i)` for `i` in `0..n` on `n` threads released at once (each
/// with its own runtime, timers and I/O on: a pooled store may wait with a
/// timeout), and returns what each returned, in order of `i`. Blocks the
/// calling thread: a store whose connections live on the caller's runtime
/// needs that runtime to have another worker (`flavor = "multi_thread"`).
pub fn race<T, F, Fut>(n: usize, racer: F) -> Vec<T>
where
    T: Send,
    F: Fn(usize) -> Fut + Sync,
    Fut: Future<Output = T>,
{
    let start = Barrier::new(n);
    std::thread::scope(|s| {
        let threads: Vec<_> = (0..n)
            .map(|i| {
                let (racer, start) = (&racer, &start);
                s.spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("a runtime per racer");
                    start.wait();
                    rt.block_on(racer(i))
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().expect("a racer panicked"))
            .collect()
    })
}

// ---- short-lived, single-use state ----

/// A login transaction is handed out once.
pub async fn transactions_are_single_use(store: &dyn Store) {
    put_tx(store, key("state a"), transaction("a", NOW + 600)).await;
    let first = take_tx(store, key("state a"), "a", NOW).await;
    assert!(
        matches!(first, TakeTransaction::Taken(_)),
        "the first take returns it: {first:?}"
    );
    let second = take_tx(store, key("state a"), "a", NOW).await;
    assert!(
        matches!(second, TakeTransaction::Absent),
        "the second take finds nothing: {second:?}"
    );
}

/// What comes out is what went in, optional fields set or not.
pub async fn transactions_keep_every_field(store: &dyn Store) {
    for (tag, tx) in [
        ("full", transaction("full", NOW + 1)),
        ("bare", bare_transaction("bare", NOW + 1)),
    ] {
        let expected = fields(&tx);
        let state = key(&tx.correlation_id);
        put_tx(store, state, tx).await;
        let TakeTransaction::Taken(back) = take_tx(store, state, tag, NOW).await else {
            panic!("the {tag} transaction is taken");
        };
        assert_eq!(fields(&back), expected, "the transaction reads back whole");
    }
}

/// `expires_at` is the first second a transaction is no longer valid.
pub async fn expired_transactions_are_not_returned(store: &dyn Store) {
    put_tx(store, key("expired"), transaction("expired", NOW)).await;
    put_tx(store, key("last second"), transaction("last", NOW + 1)).await;
    let expired = take_tx(store, key("expired"), "expired", NOW).await;
    assert!(
        matches!(expired, TakeTransaction::Absent),
        "a transaction expiring now is gone: {expired:?}"
    );
    let last = take_tx(store, key("last second"), "last", NOW).await;
    assert!(
        matches!(last, TakeTransaction::Taken(_)),
        "a transaction expiring in a second is still valid: {last:?}"
    );
}

/// Two callbacks with one `state` at once: one login proceeds.
pub async fn concurrent_takes_of_one_transaction_let_exactly_one_win(store: &dyn Store) {
    for round in 0..10 {
        let state = key(&format!("raced state {round}"));
        put_tx(store, state, transaction("raced", NOW + 600)).await;
        let won = race(RACERS, |_| {
            store.take_transaction(state, Some(binding("raced")), NOW)
        });
        let winners = won
            .iter()
            .filter(|r| matches!(r, Ok(TakeTransaction::Taken(_))))
            .count();
        assert_eq!(
            winners, 1,
            "round {round}: exactly one of {RACERS} concurrent takes wins"
        );
        assert!(won.iter().all(Result::is_ok), "no take fails: {won:?}");
    }
}

/// Whoever learned a `state` but lacks the browser's cookie cannot take
/// (and so cancel) the login: nothing is removed, and the reason says so.
pub async fn a_transaction_is_taken_only_with_its_browser_binding(store: &dyn Store) {
    put_tx(store, key("bound"), transaction("bound", NOW + 600)).await;
    for wrong in [None, Some(binding("another browser"))] {
        let taken = store
            .take_transaction(key("bound"), wrong, NOW)
            .await
            .expect("take");
        assert!(
            matches!(taken, TakeTransaction::WrongBrowser),
            "{wrong:?}: {taken:?}"
        );
    }
    let taken = take_tx(store, key("bound"), "bound", NOW).await;
    assert!(
        matches!(&taken, TakeTransaction::Taken(tx) if tx.correlation_id == "corr-bound"),
        "the browser holding the cookie still finishes its login: {taken:?}"
    );
    let absent = store
        .take_transaction(key("bound"), None, NOW)
        .await
        .expect("take");
    assert!(
        matches!(absent, TakeTransaction::Absent),
        "once finished it is gone, cookie or not: {absent:?}"
    );
    put_tx(store, key("stale"), transaction("stale", NOW)).await;
    let stale = store
        .take_transaction(key("stale"), Some(binding("other")), NOW)
        .await
        .expect("take");
    assert!(
        matches!(stale, TakeTransaction::Absent),
        "an expired login is absent for every browser: {stale:?}"
    );
}

/// Many takes with wrong bindings racing one with the right binding: the
/// right one wins, the others take nothing.
pub async fn concurrent_takes_without_the_binding_never_take_the_transaction(store: &dyn Store) {
    for round in 0..10 {
        let state = key(&format!("contested state {round}"));
        put_tx(store, state, transaction("contested", NOW + 600)).await;
        let results = race(RACERS, |i| {
            let candidate = if i == 0 {
                binding("contested")
            } else {
                binding(&format!("attacker {i}"))
            };
            store.take_transaction(state, Some(candidate), NOW)
        });
        assert!(
            matches!(results[0], Ok(TakeTransaction::Taken(_))),
            "round {round}: the right browser wins: {:?}",
            results[0]
        );
        for (i, r) in results.iter().enumerate().skip(1) {
            assert!(
                matches!(
                    r,
                    Ok(TakeTransaction::WrongBrowser | TakeTransaction::Absent)
                ),
                "round {round}: racer {i} takes nothing: {r:?}"
            );
        }
    }
}

/// Logins in flight are bounded: past `max_live` live ones, a new one is
/// refused; expired ones do not count.
pub async fn no_transaction_is_stored_past_the_bound_on_live_ones(store: &dyn Store) {
    const MAX: usize = 3;
    let put = |state: &str, expires_at: u64, now: u64| {
        store.put_transaction(key(state), transaction(state, expires_at), now, MAX)
    };
    assert_eq!(
        put("expired", NOW, NOW).await.expect("put"),
        PutTransaction::Stored
    );
    for i in 0..MAX {
        let stored = put(&format!("live {i}"), NOW + 600, NOW)
            .await
            .expect("put");
        assert_eq!(
            stored,
            PutTransaction::Stored,
            "live {i}: the expired one does not count"
        );
    }
    let full = put("one too many", NOW + 600, NOW).await.expect("put");
    assert_eq!(full, PutTransaction::Full);
    let refused = take_tx(store, key("one too many"), "one too many", NOW).await;
    assert!(
        matches!(refused, TakeTransaction::Absent),
        "a refused transaction is not stored: {refused:?}"
    );
    // Once one finishes, there is room again.
    let taken = take_tx(store, key("live 0"), "live 0", NOW).await;
    assert!(matches!(taken, TakeTransaction::Taken(_)), "{taken:?}");
    assert_eq!(
        put("room again", NOW + 600, NOW).await.expect("put"),
        PutTransaction::Stored
    );
    // And once the live ones expire, too.
    assert_eq!(
        put("later", NOW + 1200, NOW + 600).await.expect("put"),
        PutTransaction::Stored
    );
}

/// The sweep deletes expired transactions, codes and tokens, says how many,
/// and leaves what is still valid usable.
pub async fn sweeping_deletes_what_has_expired_and_keeps_what_has_not(store: &dyn Store) {
    put_tx(store, key("old tx"), transaction("old tx", NOW)).await;
    put_tx(store, key("live tx"), transaction("live tx", NOW + 1)).await;
    for (code, expires_at) in [
        ("old code 1", NOW - 10),
        ("old code 2", NOW),
        ("live code", NOW + 1),
    ] {
        store
            .put_code(key(code), grant("u", expires_at))
            .await
            .expect("put");
    }
    store
        .put_access_token(key("old token"), access("u", NOW))
        .await
        .expect("put");
    store
        .put_access_token(key("live token"), access("u", NOW + 1))
        .await
        .expect("put");
    let swept = store.sweep_expired(NOW).await.expect("sweep");
    assert_eq!(
        swept,
        Swept {
            transactions: 1,
            codes: 2,
            tokens: 1
        }
    );
    let again = store.sweep_expired(NOW).await.expect("sweep");
    assert_eq!(again, Swept::default(), "nothing left to sweep");
    assert!(matches!(
        take_tx(store, key("live tx"), "live tx", NOW).await,
        TakeTransaction::Taken(_)
    ));
    assert!(matches!(
        store.take_code(key("live code"), NOW).await,
        Ok(Some(_))
    ));
    assert!(matches!(
        store.get_access_token(key("live token"), NOW).await,
        Ok(Some(_))
    ));
}

/// An authorization code is redeemed once (RFC 6749 §4.1.2).
pub async fn codes_are_single_use(store: &dyn Store) {
    store
        .put_code(key("code"), grant("oauth2|acme|1", NOW + 60))
        .await
        .expect("put");
    let first = store.take_code(key("code"), NOW).await;
    assert!(
        matches!(first, Ok(Some(_))),
        "the first redemption gets the grant: {first:?}"
    );
    let second = store.take_code(key("code"), NOW).await;
    assert!(
        matches!(second, Ok(None)),
        "the second redemption gets nothing: {second:?}"
    );
}

/// What comes out is what went in, optional fields set or not.
pub async fn codes_keep_every_field(store: &dyn Store) {
    let bare = AuthorizationGrant {
        nonce: None,
        code_challenge: None,
        ..grant("oauth2|acme|2", NOW + 60)
    };
    for (i, g) in [grant("oauth2|acme|1", NOW + 60), bare]
        .into_iter()
        .enumerate()
    {
        let expected = grant_fields(&g);
        let code = key(&format!("code {i}"));
        store.put_code(code, g).await.expect("put");
        let back = store
            .take_code(code, NOW)
            .await
            .expect("take")
            .expect("present");
        assert_eq!(grant_fields(&back), expected, "the grant reads back whole");
    }
}

/// `expires_at` is the first second a code is no longer valid.
/// With `take_code`, and with `take_code_with_user` (its user there).
pub async fn expired_codes_are_not_returned(store: &dyn Store) {
    login(store, "u").await;
    for with_user in [false, true] {
        let (old, fresh) = (
            key(&format!("old {with_user}")),
            key(&format!("fresh {with_user}")),
        );
        store.put_code(old, grant("u", NOW)).await.expect("put");
        store
            .put_code(fresh, grant("u", NOW + 1))
            .await
            .expect("put");
        let old = take_code(store, old, with_user).await;
        assert!(
            matches!(old, Ok(None)),
            "a code expiring now is refused: {old:?}"
        );
        let fresh = take_code(store, fresh, with_user).await;
        assert!(
            matches!(fresh, Ok(Some(_))),
            "a code expiring in a second is still valid: {fresh:?}"
        );
    }
}

/// What `take_code` takes, or `take_code_with_user` when `with_user`
/// (with the id of the user it read).
async fn take_code(
    store: &dyn Store,
    code: SecretHash,
    with_user: bool,
) -> Result<Option<(AuthorizationGrant, Option<String>)>, StoreError> {
    if with_user {
        let taken = store.take_code_with_user(code, NOW).await?;
        Ok(taken.map(|(grant, user)| (grant, user.map(|u| u.user_id))))
    } else {
        Ok(store.take_code(code, NOW).await?.map(|grant| (grant, None)))
    }
}

/// A code replayed in parallel is redeemed once (RFC 6749 §4.1.2), by
/// `take_code` and by `take_code_with_user` (the winner with its user).
pub async fn concurrent_takes_of_one_code_let_exactly_one_win(store: &dyn Store) {
    login(store, "oauth2|acme|1").await;
    for with_user in [false, true] {
        for round in 0..10 {
            let code = key(&format!("raced code {round} {with_user}"));
            store
                .put_code(code, grant("oauth2|acme|1", NOW + 60))
                .await
                .expect("put");
            let won = race(RACERS, |_| take_code(store, code, with_user));
            let winners: Vec<_> = won
                .iter()
                .filter_map(|r| r.as_ref().ok()?.as_ref())
                .collect();
            assert_eq!(
                winners.len(),
                1,
                "round {round}: exactly one of {RACERS} concurrent redemptions wins"
            );
            if with_user {
                assert_eq!(
                    winners[0].1.as_deref(),
                    Some("oauth2|acme|1"),
                    "the winner gets the user"
                );
            }
            assert!(won.iter().all(Result::is_ok), "no take fails: {won:?}");
        }
    }
}

/// A token exchange takes its code and reads the code's user in one call:
/// the grant whole, the user as `get_user` reads it, and the code gone.
pub async fn a_code_is_taken_once_with_its_user_as_stored(store: &dyn Store) {
    login(store, "u1").await;
    login(store, "u2").await;
    let g = grant("u1", NOW + 60);
    let expected = grant_fields(&g);
    store.put_code(key("code"), g).await.expect("put");
    let (back, user) = store
        .take_code_with_user(key("code"), NOW)
        .await
        .expect("take")
        .expect("present");
    assert_eq!(grant_fields(&back), expected, "the grant reads back whole");
    let stored = store.get_user("u1").await.expect("get").expect("u1");
    assert_eq!(user, Some(stored), "the code's user, not another");
    assert!(
        matches!(store.take_code_with_user(key("code"), NOW).await, Ok(None)),
        "a second redemption gets nothing"
    );
    assert!(
        matches!(store.take_code(key("code"), NOW).await, Ok(None)),
        "the code is gone for take_code too"
    );
}

/// A user deleted between the login and the token exchange: the code is
/// taken (it cannot be redeemed again) and no user comes with it.
pub async fn a_code_whose_user_is_gone_is_taken_without_one(store: &dyn Store) {
    login(store, "u1").await;
    store
        .put_code(key("code"), grant("u1", NOW + 60))
        .await
        .expect("put");
    assert!(store.delete_user("u1").await.expect("delete"));
    let taken = store
        .take_code_with_user(key("code"), NOW)
        .await
        .expect("take");
    let (back, user) = taken.expect("the code is still there");
    assert_eq!(back.user_id, "u1");
    assert_eq!(user, None, "no user comes with it");
    assert!(matches!(store.take_code(key("code"), NOW).await, Ok(None)));
}

/// Access tokens are read, not taken, and stop at `expires_at`.
pub async fn access_tokens_can_be_read_until_they_expire(store: &dyn Store) {
    let grant = access("oauth2|acme|1", NOW + 10);
    let expected = access_fields(&grant);
    store
        .put_access_token(key("token"), grant)
        .await
        .expect("put");
    for now in [NOW, NOW, NOW + 9] {
        let read = store
            .get_access_token(key("token"), now)
            .await
            .expect("get")
            .map(|g| access_fields(&g));
        assert_eq!(
            read.as_ref(),
            Some(&expected),
            "the token is valid, and reading it again is fine, at {now}"
        );
    }
    let expired = store.get_access_token(key("token"), NOW + 10).await;
    assert!(
        matches!(expired, Ok(None)),
        "the token is refused at its expiry: {expired:?}"
    );
}

/// Revoking a client's tokens deletes its user and management tokens, and
/// only its own.
pub async fn deleting_a_clients_access_tokens_leaves_other_clients_tokens(store: &dyn Store) {
    let other = AccessGrant {
        claims: Default::default(),
        client_id: "other-app".into(),
        ..access("oauth2|acme|2", NOW + 60)
    };
    let management = AccessGrant {
        claims: Default::default(),
        user_id: String::new(),
        scope: "read:users".into(),
        ..access("", NOW + 60)
    };
    for (tag, grant) in [
        ("user token", access("oauth2|acme|1", NOW + 60)),
        ("management token", management),
        ("other client's token", other),
    ] {
        store.put_access_token(key(tag), grant).await.expect("put");
    }
    assert_eq!(
        store.delete_access_tokens_of_client("app").await,
        Ok(2),
        "both of app's tokens"
    );
    for tag in ["user token", "management token"] {
        assert!(
            matches!(store.get_access_token(key(tag), NOW).await, Ok(None)),
            "{tag} is revoked"
        );
    }
    assert!(
        matches!(
            store.get_access_token(key("other client's token"), NOW).await,
            Ok(Some(g)) if g.client_id == "other-app"
        ),
        "another client's token stays"
    );
    assert_eq!(
        store.delete_access_tokens_of_client("app").await,
        Ok(0),
        "nothing left to revoke"
    );
}

/// Keys never stored find nothing.
pub async fn unknown_keys_are_absent(store: &dyn Store) {
    let unknown = key("never stored");
    assert!(
        matches!(
            store.take_transaction(unknown, Some(key("any")), NOW).await,
            Ok(TakeTransaction::Absent)
        ),
        "no such transaction"
    );
    for with_user in [false, true] {
        assert!(
            matches!(take_code(store, unknown, with_user).await, Ok(None)),
            "no such code"
        );
    }
    assert!(
        matches!(store.get_access_token(unknown, NOW).await, Ok(None)),
        "no such token"
    );
}

/// A code's hash is not a transaction's or a token's.
pub async fn each_kind_has_its_own_keys(store: &dyn Store) {
    let shared = key("one value");
    store
        .put_code(shared, grant("u", NOW + 60))
        .await
        .expect("put");
    assert!(
        matches!(
            store.take_transaction(shared, Some(key("any")), NOW).await,
            Ok(TakeTransaction::Absent)
        ),
        "a code is not a transaction"
    );
    assert!(
        matches!(store.get_access_token(shared, NOW).await, Ok(None)),
        "a code is not an access token"
    );
    assert!(
        matches!(store.take_code(shared, NOW).await, Ok(Some(_))),
        "and the code is still there"
    );
}

/// Putting a key again replaces what it stood for.
pub async fn putting_a_key_again_replaces_its_value(store: &dyn Store) {
    store
        .put_code(key("code"), grant("first", NOW + 60))
        .await
        .expect("put");
    store
        .put_code(key("code"), grant("second", NOW + 60))
        .await
        .expect("put again");
    let back = store.take_code(key("code"), NOW).await.expect("take");
    assert_eq!(
        back.map(|g| g.user_id).as_deref(),
        Some("second"),
        "the later put wins"
    );
}

// ---- users ----

/// A user's first login creates them, counted once.
pub async fn a_first_login_creates_the_user(store: &dyn Store) {
    let p = profile("42", Some("ada@example.com"), "Ada");
    let user = store
        .record_login("oauth2|acme|42", "acme", p.clone(), NOW)
        .await
        .expect("record");
    assert_eq!(user.user_id, "oauth2|acme|42");
    assert_eq!(user.connection, "acme");
    assert_eq!(
        user.profile, p,
        "the profile is kept whole, extras included"
    );
    assert_eq!(
        (user.created_at, user.last_login, user.logins_count),
        (NOW, NOW, 1),
        "created and last seen now, one login"
    );
    let stored = store.get_user("oauth2|acme|42").await.expect("get");
    assert_eq!(
        stored.as_ref(),
        Some(&user),
        "what was returned is what is stored"
    );
    assert_eq!(
        store.get_user("oauth2|acme|43").await.expect("get"),
        None,
        "other users do not exist"
    );
}

/// A second login replaces the profile and counts; the first login's time
/// stays.
pub async fn a_second_login_updates_the_profile_and_counts(store: &dyn Store) {
    let id = "oauth2|acme|42";
    store
        .record_login(
            id,
            "acme",
            profile("42", Some("ada@example.com"), "Ada"),
            NOW,
        )
        .await
        .expect("first login");
    let newer = profile("42", None, "Ada Lovelace");
    let user = store
        .record_login(id, "acme", newer.clone(), NOW + 60)
        .await
        .expect("second login");
    assert_eq!(user.profile, newer, "the profile is replaced, not merged");
    assert_eq!(user.created_at, NOW, "the first login's time is kept");
    assert_eq!(user.last_login, NOW + 60, "the last login is now");
    assert_eq!(user.logins_count, 2, "two logins");
    assert_eq!(
        store.get_user(id).await.expect("get").as_ref(),
        Some(&user),
        "the update is stored"
    );
}

/// Logins of one user at once are all counted.
pub async fn concurrent_logins_of_one_user_all_count(store: &dyn Store) {
    let results = race(RACERS, |i| {
        store.record_login(
            "oauth2|acme|7",
            "acme",
            profile("7", None, "Seven"),
            NOW + i as u64,
        )
    });
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let user = store
        .get_user("oauth2|acme|7")
        .await
        .expect("get")
        .expect("present");
    assert_eq!(user.logins_count, RACERS as u64, "every login counted once");
}

/// `list_users` pages by user id, and filters on a case-insensitive
/// substring of the email — literal, not a pattern.
pub async fn users_are_paged_and_searched_by_email(store: &dyn Store) {
    let users = [
        ("oauth2|beta|1", Some("linus@Example.COM")),
        ("oauth2|acme|3", None),
        ("oauth2|acme|1", Some("Ada@Example.com")),
        ("oauth2|acme|5", Some("100%_sure@example.com")),
        ("oauth2|acme|2", Some("grace@example.org")),
        ("oauth2|acme|4", Some("ÅSA@EXAMPLE.COM")),
    ];
    for (id, email) in users {
        store
            .record_login(id, "acme", profile(id, email, "x"), NOW)
            .await
            .expect("record");
    }
    let all = [
        "oauth2|acme|1",
        "oauth2|acme|2",
        "oauth2|acme|3",
        "oauth2|acme|4",
        "oauth2|acme|5",
        "oauth2|beta|1",
    ];
    let list = |offset, limit, email| store.list_users(offset, limit, email);
    assert_eq!(
        ids(&list(0, 100, None).await.expect("list")),
        all,
        "everyone, by user id"
    );
    assert_eq!(
        ids(&list(0, 2, None).await.expect("list")),
        all[..2],
        "first page"
    );
    assert_eq!(
        ids(&list(2, 2, None).await.expect("list")),
        all[2..4],
        "second page"
    );
    assert_eq!(
        ids(&list(4, 2, None).await.expect("list")),
        all[4..],
        "last page"
    );
    assert!(
        list(6, 2, None).await.expect("list").is_empty(),
        "past the end: nothing"
    );
    assert!(
        list(0, 0, None).await.expect("list").is_empty(),
        "a zero limit: nothing"
    );
    assert_eq!(
        ids(&list(1, usize::MAX, None).await.expect("list")),
        all[1..],
        "the largest limit means all"
    );
    assert!(
        list(usize::MAX, 10, None).await.expect("list").is_empty(),
        "the largest offset: nothing"
    );

    let dot_com = [
        "oauth2|acme|1",
        "oauth2|acme|4",
        "oauth2|acme|5",
        "oauth2|beta|1",
    ];
    for needle in ["example.com", "EXAMPLE.COM", "Example.Com"] {
        assert_eq!(
            ids(&list(0, 100, Some(needle)).await.expect("search")),
            dot_com,
            "`{needle}` matches whatever the case"
        );
    }
    assert_eq!(
        ids(&list(1, 2, Some("example.com")).await.expect("search")),
        dot_com[1..3],
        "a search pages like a listing"
    );
    assert_eq!(
        ids(&list(0, 100, Some("åsa@")).await.expect("search")),
        ["oauth2|acme|4"],
        "case folding covers non-ASCII letters"
    );
    for pattern in ["%", "_", "%_"] {
        assert_eq!(
            ids(&list(0, 100, Some(pattern)).await.expect("search")),
            ["oauth2|acme|5"],
            "`{pattern}` is matched literally"
        );
    }
    // `count_users` counts what every page of the same search lists.
    for (email, expected) in [
        (None, all.len()),
        (Some("example.com"), dot_com.len()),
        (Some("%"), 1),
        (Some("nobody"), 0),
    ] {
        assert_eq!(
            store.count_users(email).await.expect("count"),
            expected,
            "count of {email:?}"
        );
    }
    assert_eq!(
        list(0, 100, Some("")).await.expect("search").len(),
        5,
        "an empty search matches everyone with an email"
    );
    assert!(
        list(0, 100, Some("nobody"))
            .await
            .expect("search")
            .is_empty(),
        "no match, no users"
    );
}

/// Deleting says whether the user existed; a deleted user starts afresh.
pub async fn deleting_a_user_says_whether_there_was_one(store: &dyn Store) {
    let id = "oauth2|acme|9";
    for _ in 0..2 {
        store
            .record_login(id, "acme", profile("9", None, "Nine"), NOW)
            .await
            .expect("record");
    }
    assert_eq!(store.delete_user(id).await, Ok(true), "the user existed");
    assert_eq!(store.get_user(id).await.expect("get"), None, "and is gone");
    assert_eq!(
        store.delete_user(id).await,
        Ok(false),
        "nothing left to delete"
    );
    let again = store
        .record_login(id, "acme", profile("9", None, "Nine"), NOW + 1)
        .await
        .expect("record");
    assert_eq!(
        (again.created_at, again.logins_count),
        (NOW + 1, 1),
        "a returning user starts afresh"
    );
}

// ---- connections and clients ----

/// Connections are keyed by id and listed in id order.
pub async fn connections_are_put_listed_and_deleted_by_id(store: &dyn Store) {
    let beta = connection("con_b", "beta");
    let acme = connection("con_a", "acme");
    for c in [&beta, &acme] {
        store.put_connection(c).await.expect("put");
    }
    let listed: Vec<_> = store
        .connections()
        .await
        .expect("list")
        .iter()
        .map(connection_json)
        .collect();
    assert_eq!(
        listed,
        [connection_json(&acme), connection_json(&beta)],
        "both, in id order, whole"
    );

    let mut changed = connection("con_a", "acme");
    changed.spec.display_name = Some("Acme, renamed".into());
    changed.spec.options.scope = "openid".into();
    store.put_connection(&changed).await.expect("replace");
    let listed: Vec<_> = store
        .connections()
        .await
        .expect("list")
        .iter()
        .map(connection_json)
        .collect();
    assert_eq!(
        listed,
        [connection_json(&changed), connection_json(&beta)],
        "putting an id again replaces it"
    );

    assert_eq!(store.delete_connection("con_a").await, Ok(true), "deleted");
    assert_eq!(
        store.delete_connection("con_a").await,
        Ok(false),
        "already gone"
    );
    let left: Vec<_> = store
        .connections()
        .await
        .expect("list")
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(left, ["con_b"], "the other one stays");
}

/// A name belongs to one connection; its own id may keep or change it.
pub async fn connection_names_are_unique(store: &dyn Store) {
    store
        .put_connection(&connection("con_1", "acme"))
        .await
        .expect("put");
    let taken = store.put_connection(&connection("con_2", "acme")).await;
    assert!(
        matches!(&taken, Err(StoreError::Conflict(_))),
        "another id with the same name is a conflict: {taken:?}"
    );
    store
        .put_connection(&connection("con_1", "acme"))
        .await
        .expect("the owner may put its name again");
    store
        .put_connection(&connection("con_2", "beta"))
        .await
        .expect("another name is fine");
    let renamed = store.put_connection(&connection("con_2", "acme")).await;
    assert!(
        matches!(&renamed, Err(StoreError::Conflict(_))),
        "renaming onto a taken name is a conflict: {renamed:?}"
    );
    let names = |list: Vec<StoredConnection>| -> Vec<(String, String)> {
        list.into_iter()
            .map(|c| (c.id, c.spec.name.to_string()))
            .collect()
    };
    let expected = [
        ("con_1".to_owned(), "acme".to_owned()),
        ("con_2".to_owned(), "beta".to_owned()),
    ];
    assert_eq!(
        names(store.connections().await.expect("list")),
        expected,
        "refused puts change nothing"
    );
    store
        .put_connection(&connection("con_1", "acme-old"))
        .await
        .expect("a rename");
    store
        .put_connection(&connection("con_2", "acme"))
        .await
        .expect("a name given up is free");
}

/// The stored form keeps the write-only secrets the API never shows.
pub async fn connections_keep_their_secrets(store: &dyn Store) {
    let record = connection("con_s", "secretive");
    store.put_connection(&record).await.expect("put");
    let back = store
        .connections()
        .await
        .expect("list")
        .into_iter()
        .next()
        .expect("one connection");
    assert_eq!(
        back.spec.options.client_secret.as_deref(),
        Some("s3cret"),
        "the client secret survives"
    );
    assert_eq!(
        back.spec
            .options
            .mapper_settings
            .get("api_key")
            .map(String::as_str),
        Some("k-123"),
        "the mapper settings survive"
    );
    assert_eq!(
        connection_json(&back),
        connection_json(&record),
        "and so does everything else"
    );
}

/// Clients are keyed by client id and listed in that order.
pub async fn clients_are_put_listed_and_deleted_by_id(store: &dyn Store) {
    let b = client("app-b", "https://b.example/cb");
    let a = client("app-a", "https://a.example/cb");
    for c in [&b, &a] {
        store.put_client(c).await.expect("put");
    }
    assert_eq!(
        store.clients().await.expect("list"),
        [a.clone(), b.clone()],
        "both, in id order, whole"
    );
    let a2 = StoredClient {
        callbacks: vec!["https://a.example/other".into()],
        scopes: vec![],
        ..a
    };
    store.put_client(&a2).await.expect("replace");
    assert_eq!(
        store.clients().await.expect("list"),
        [a2, b],
        "putting an id again replaces it"
    );
    assert_eq!(store.delete_client("app-a").await, Ok(true), "deleted");
    assert_eq!(
        store.delete_client("app-a").await,
        Ok(false),
        "already gone"
    );
    assert_eq!(
        store.clients().await.expect("list").len(),
        1,
        "the other one stays"
    );
}

// ---- mappers ----

/// Each name counts its own versions from 1; the newest is active.
pub async fn mapper_versions_count_up_and_the_newest_is_active(store: &dyn Store) {
    let mut added = Vec::new();
    for (i, bytes) in [&b"v1"[..], b"v22", b"v333"].into_iter().enumerate() {
        let v = store
            .add_mapper_version(
                "github",
                bytes,
                &format!("sha-{i}"),
                "admin",
                NOW + i as u64,
            )
            .await
            .expect("add");
        assert_eq!(v.version, i as u32 + 1, "versions count up from 1");
        assert_eq!(
            (v.name.as_str(), v.size, v.created_at, v.created_by.as_str()),
            ("github", bytes.len() as u64, NOW + i as u64, "admin"),
            "the version describes what was added"
        );
        assert_eq!(v.sha256, format!("sha-{i}"));
        added.push(v);
        assert_eq!(
            store.mappers().await.expect("mappers"),
            [MapperEntry {
                name: "github".into(),
                active_version: i as u32 + 1
            }],
            "the version just added is active"
        );
    }
    assert_eq!(
        store.mapper_versions("github").await.expect("versions"),
        added,
        "every version, oldest first"
    );
    let other = store
        .add_mapper_version("acme", b"x", "sha-x", "ci", NOW)
        .await
        .expect("add");
    assert_eq!(other.version, 1, "another name counts on its own");
}

/// Each version's bytes are kept, large ones included.
pub async fn mapper_bytes_are_kept_per_version(store: &dyn Store) {
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let small = b"\0asm small".to_vec();
    for bytes in [&big, &small] {
        store
            .add_mapper_version("m", bytes, "sha", "admin", NOW)
            .await
            .expect("add");
    }
    assert_eq!(
        store.mapper_bytes("m", 1).await.expect("bytes"),
        Some(big),
        "version 1's bytes"
    );
    assert_eq!(
        store.mapper_bytes("m", 2).await.expect("bytes"),
        Some(small),
        "version 2's bytes"
    );
    assert_eq!(
        store.mapper_bytes("m", 3).await.expect("bytes"),
        None,
        "no version 3"
    );
    assert_eq!(
        store.mapper_bytes("other", 1).await.expect("bytes"),
        None,
        "no such mapper"
    );
}

/// Only a registered version can be made active.
pub async fn activating_an_unknown_version_is_refused(store: &dyn Store) {
    for bytes in [b"one", b"two"] {
        store
            .add_mapper_version("m", bytes, "sha", "admin", NOW)
            .await
            .expect("add");
    }
    for (name, version) in [("m", 3), ("m", 0), ("nope", 1)] {
        assert_eq!(
            store.activate_mapper_version(name, version).await,
            Ok(false),
            "{name} version {version} does not exist"
        );
    }
    assert_eq!(
        store.mappers().await.expect("mappers"),
        [MapperEntry {
            name: "m".into(),
            active_version: 2
        }],
        "a refused activation changes nothing"
    );
}

/// Rolling back: an older version becomes active again, and the next one
/// added still counts on from the newest.
pub async fn an_older_mapper_version_can_be_activated_again(store: &dyn Store) {
    for bytes in [b"one", b"two"] {
        store
            .add_mapper_version("m", bytes, "sha", "admin", NOW)
            .await
            .expect("add");
    }
    assert_eq!(
        store.activate_mapper_version("m", 1).await,
        Ok(true),
        "version 1 exists"
    );
    assert_eq!(
        store.mappers().await.expect("mappers")[0].active_version,
        1,
        "version 1 is active"
    );
    assert_eq!(
        store.activate_mapper_version("m", 1).await,
        Ok(true),
        "activating the active version is fine"
    );
    let next = store
        .add_mapper_version("m", b"three", "sha", "admin", NOW)
        .await
        .expect("add");
    assert_eq!(next.version, 3, "numbers count on from the newest");
    assert_eq!(
        store.mappers().await.expect("mappers")[0].active_version,
        3,
        "and the new one is active"
    );
}

/// Deleting a mapper deletes all its versions; the name can start again.
pub async fn deleting_a_mapper_removes_every_version(store: &dyn Store) {
    for name in ["m", "keep"] {
        for bytes in [b"one", b"two"] {
            store
                .add_mapper_version(name, bytes, "sha", "admin", NOW)
                .await
                .expect("add");
        }
    }
    assert_eq!(store.delete_mapper("m").await, Ok(true), "deleted");
    assert!(
        store
            .mapper_versions("m")
            .await
            .expect("versions")
            .is_empty(),
        "no versions left"
    );
    assert_eq!(
        store.mapper_bytes("m", 1).await.expect("bytes"),
        None,
        "no bytes left"
    );
    assert_eq!(store.delete_mapper("m").await, Ok(false), "already gone");
    assert_eq!(
        store.mappers().await.expect("mappers"),
        [MapperEntry {
            name: "keep".into(),
            active_version: 2
        }],
        "the other mapper stays"
    );
    assert_eq!(
        store.mapper_versions("keep").await.expect("versions").len(),
        2,
        "with its versions"
    );
    let fresh = store
        .add_mapper_version("m", b"new", "sha", "admin", NOW)
        .await
        .expect("add");
    assert_eq!(fresh.version, 1, "a deleted name starts again at 1");
}

/// `mappers` lists names in order, each with its active version.
pub async fn mappers_are_listed_by_name(store: &dyn Store) {
    assert!(
        store.mappers().await.expect("mappers").is_empty(),
        "none at first"
    );
    for name in ["zeta", "alpha", "mid"] {
        store
            .add_mapper_version(name, b"x", "sha", "admin", NOW)
            .await
            .expect("add");
    }
    let names: Vec<_> = store
        .mappers()
        .await
        .expect("mappers")
        .into_iter()
        .map(|m| (m.name, m.active_version))
        .collect();
    assert_eq!(
        names,
        [
            ("alpha".to_owned(), 1),
            ("mid".to_owned(), 1),
            ("zeta".to_owned(), 1)
        ],
        "by name"
    );
    assert!(
        store
            .mapper_versions("unknown")
            .await
            .expect("versions")
            .is_empty(),
        "an unknown name has no versions"
    );
}

/// Uploads of one mapper at once each get their own number.
pub async fn concurrent_registrations_of_one_mapper_get_distinct_versions(store: &dyn Store) {
    let results = race(RACERS, |i| {
        let bytes = format!("component {i}").into_bytes();
        async move {
            store
                .add_mapper_version("raced", &bytes, "sha", "admin", NOW)
                .await
        }
    });
    let mut versions: Vec<u32> = results
        .into_iter()
        .map(|r| r.expect("add").version)
        .collect();
    versions.sort_unstable();
    let expected: Vec<u32> = (1..=RACERS as u32).collect();
    assert_eq!(versions, expected, "no number given twice, none skipped");
    assert_eq!(
        store.mappers().await.expect("mappers")[0].active_version,
        RACERS as u32,
        "the newest is active"
    );
}

// ---- signing keys ----

/// The first key set stored stays; later ones are answered with it.
pub async fn signing_keys_are_initialised_once(store: &dyn Store) {
    assert_eq!(store.signing_keys().await, Ok(None), "none at first");
    assert_eq!(
        store.init_signing_keys("doc-1").await,
        Ok("doc-1".to_owned()),
        "the first document is stored"
    );
    assert_eq!(
        store.init_signing_keys("doc-2").await,
        Ok("doc-1".to_owned()),
        "a second one gets the first back"
    );
    assert_eq!(
        store.signing_keys().await,
        Ok(Some("doc-1".to_owned())),
        "the first one is what is stored"
    );
}

/// Instances starting together agree on one key set.
pub async fn instances_starting_together_agree_on_one_key_set(store: &dyn Store) {
    let results = race(RACERS, |i| async move {
        store.init_signing_keys(&format!("doc-{i}")).await
    });
    let stored = store
        .signing_keys()
        .await
        .expect("read")
        .expect("a key set");
    assert!(
        results.iter().all(|r| r.as_deref() == Ok(stored.as_str())),
        "every instance got the stored document {stored}: {results:?}"
    );
}

// ---- connections' own keys (`private_key_jwt`) ----

/// Each connection's first key document stays; later ones get it back,
/// and another connection's keys are its own.
pub async fn connection_keys_are_initialised_once_per_connection(store: &dyn Store) {
    assert_eq!(
        store.connection_keys("con_a").await,
        Ok(None),
        "none at first"
    );
    assert_eq!(
        store.init_connection_keys("con_a", "a-1").await,
        Ok("a-1".to_owned())
    );
    assert_eq!(
        store.init_connection_keys("con_a", "a-2").await,
        Ok("a-1".to_owned()),
        "a second one gets the first back"
    );
    assert_eq!(
        store.init_connection_keys("con_b", "b-1").await,
        Ok("b-1".to_owned()),
        "another connection has its own"
    );
    assert_eq!(
        store.connection_keys("con_a").await,
        Ok(Some("a-1".to_owned()))
    );
    assert_eq!(
        store.connection_keys("con_b").await,
        Ok(Some("b-1".to_owned()))
    );
    assert_eq!(
        store.signing_keys().await,
        Ok(None),
        "the broker's own keys are another thing"
    );
}

/// Instances making a connection's first keys at once agree on one set.
pub async fn instances_needing_a_connections_keys_at_once_agree_on_one(store: &dyn Store) {
    let results = race(RACERS, |i| async move {
        store
            .init_connection_keys("con_race", &format!("doc-{i}"))
            .await
    });
    let stored = store
        .connection_keys("con_race")
        .await
        .expect("read")
        .expect("a key set");
    assert!(
        results.iter().all(|r| r.as_deref() == Ok(stored.as_str())),
        "every instance got the stored document {stored}: {results:?}"
    );
}

/// A rotation replaces the document only if it is still the one the
/// rotation started from: of two rotations from one document, one wins.
pub async fn a_key_rotation_replaces_only_the_document_it_read(store: &dyn Store) {
    assert_eq!(
        store.replace_connection_keys("con_r", "v1", "v2").await,
        Ok(false),
        "nothing to replace"
    );
    store
        .init_connection_keys("con_r", "v1")
        .await
        .expect("init");
    let results = race(RACERS, |i| async move {
        store
            .replace_connection_keys("con_r", "v1", &format!("v2-{i}"))
            .await
    });
    assert_eq!(
        results.iter().filter(|r| **r == Ok(true)).count(),
        1,
        "exactly one rotation wins: {results:?}"
    );
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let stored = store
        .connection_keys("con_r")
        .await
        .expect("read")
        .expect("doc");
    assert!(stored.starts_with("v2-"), "the winner's document: {stored}");
    assert_eq!(
        store.replace_connection_keys("con_r", "v1", "v3").await,
        Ok(false),
        "a rotation from a stale document is refused"
    );
    assert_eq!(store.connection_keys("con_r").await, Ok(Some(stored)));
}

/// A connection with every field set, none to its default: what a store
/// must give back whole (a field a backend dropped would show here).
fn every_field(id: &str, name: &str) -> StoredConnection {
    let map = |k: &str, v: &str| BTreeMap::from([(k.to_owned(), v.to_owned())]);
    StoredConnection {
        id: id.into(),
        spec: StoredConnectionSpec {
            name: name.into(),
            display_name: Some("Every Field".into()),
            enabled_clients: vec!["app".into(), "spa".into()],
            options: StoredConnectionOptions {
                authorization_url: "https://id.every.test/authorize".into(),
                token_url: "https://id.every.test/token".into(),
                scope: "openid email".into(),
                client_id: "waypass".into(),
                client_secret: Some("client-secret-\u{e9}".into()),
                client_secret_env: Some("EVERY_SECRET".into()),
                client_secret_file: Some("/run/secrets/every".into()),
                custom_headers: map("Authorization", "Basic c2VjcmV0"),
                auth_params: map("prompt", "login"),
                auth_params_map: map("login_hint", "login_hint"),
                icon_url: Some("https://cdn.every.test/icon.png".into()),
                pkce_enabled: false,
                issuer: Some("https://id.every.test".into()),
                per_connection_callback: true,
                token_endpoint_auth_method: "client_secret_basic".into(),
                jwks_uri: Some("https://id.every.test/jwks".into()),
                userinfo_endpoint: Some("https://id.every.test/me".into()),
                claims_source: "both".into(),
                user_id_claim: Some("/oid".into()),
                claim_mapping: map("email", "/mail"),
                groups_claim: Some("/realm_access/roles".into()),
                mapper: Some("every-mapper@2".into()),
                scripts: Some(StoredScripts {
                    fetch_user_profile: "function (t, c, cb) { cb(null, {}); }".into(),
                }),
                mapper_settings: map("api_key", "settings-secret"),
                mapper_settings_env: map("other_key", "EVERY_OTHER"),
                mapper_egress: StoredMapperEgress {
                    allowed_hosts: vec!["api.every.test".into()],
                    allow_private_networks: true,
                },
                mapper_timeout_ms: Some(1234),
                set_user_root_attributes: "never_on_login".into(),
                non_persistent_attrs: vec!["gender".into()],
                account_linking: Some("link_by_verified_email".into()),
                logout_url: Some("https://id.every.test/logout".into()),
            },
        },
    }
}

/// Every field of a connection, secrets included, reads back as written
/// (listed and in the catalog): nothing is lost at a restart because a
/// serialisation skipped it.
pub async fn every_field_of_a_connection_survives_the_store(store: &dyn Store) {
    let written = every_field("con_every", "every");
    let json = serde_json::to_value(&written.spec).expect("serialises");
    fn none_default(path: &str, v: &serde_json::Value) {
        match v {
            serde_json::Value::Null => panic!("{path} is null: set every field"),
            serde_json::Value::String(s) => assert!(!s.is_empty(), "{path} is empty"),
            serde_json::Value::Array(a) => assert!(!a.is_empty(), "{path} is empty"),
            serde_json::Value::Object(o) => {
                for (k, v) in o {
                    none_default(&format!("{path}.{k}"), v);
                }
            }
            _ => {}
        }
    }
    none_default("spec", &json);
    store.put_connection(&written).await.expect("put");
    assert_eq!(
        store.connections().await.expect("list"),
        std::slice::from_ref(&written),
        "listed whole"
    );
    assert_eq!(
        store.catalog().await.expect("catalog").connections,
        [written],
        "in the catalog whole"
    );
}

// ---- the catalog version ----

/// Each write of a connection, a client or a mapper moves the catalog
/// version forward, in the write itself; other writes leave it.
pub async fn every_catalog_write_bumps_the_catalog_version(store: &dyn Store) {
    let mut seen = store.catalog_version().await.expect("version");
    let mut bumped = |what: &str, now: u64| {
        assert!(
            now > seen,
            "{what} bumps the catalog version ({seen} -> {now})"
        );
        seen = now;
    };
    store
        .put_client(&client("app", "https://app.example/cb"))
        .await
        .expect("client");
    bumped(
        "a new client",
        store.catalog_version().await.expect("version"),
    );
    store
        .put_client(&client("app", "https://app.example/other"))
        .await
        .expect("client");
    bumped(
        "a changed client",
        store.catalog_version().await.expect("version"),
    );
    store
        .put_connection(&connection("con_1", "acme"))
        .await
        .expect("connection");
    bumped(
        "a new connection",
        store.catalog_version().await.expect("version"),
    );
    store
        .put_connection(&every_field("con_1", "acme"))
        .await
        .expect("connection");
    bumped(
        "a changed connection",
        store.catalog_version().await.expect("version"),
    );
    store
        .add_mapper_version("m", b"one", "sha-1", "admin", NOW)
        .await
        .expect("mapper");
    bumped(
        "a first mapper version",
        store.catalog_version().await.expect("version"),
    );
    store
        .add_mapper_version("m", b"two", "sha-2", "admin", NOW)
        .await
        .expect("mapper");
    bumped(
        "a second mapper version",
        store.catalog_version().await.expect("version"),
    );
    assert_eq!(store.activate_mapper_version("m", 1).await, Ok(true));
    bumped(
        "a rollback",
        store.catalog_version().await.expect("version"),
    );

    // Writes outside the catalog leave it.
    let before = store.catalog_version().await.expect("version");
    store
        .put_code(key("code"), grant("oauth2|acme|1", NOW + 60))
        .await
        .expect("code");
    put_tx(store, key("state"), transaction("v", NOW + 600)).await;
    store
        .record_login("oauth2|acme|1", "acme", profile("1", None, "Ada"), NOW)
        .await
        .expect("login");
    store.init_signing_keys("doc").await.expect("keys");
    assert!(store.try_lease("sweep", "a", 60, NOW).await.expect("lease"));
    assert_eq!(
        store.catalog_version().await,
        Ok(before),
        "short-lived state, users, keys and leases are not the catalog"
    );
    // Nothing deleted, nothing changed.
    assert_eq!(store.activate_mapper_version("m", 9).await, Ok(false));
    assert_eq!(store.delete_connection("con_none").await, Ok(false));
    assert_eq!(
        store.catalog_version().await,
        Ok(before),
        "a refused write changes nothing"
    );

    assert_eq!(store.delete_connection("con_1").await, Ok(true));
    bumped(
        "a deleted connection",
        store.catalog_version().await.expect("version"),
    );
    assert_eq!(store.delete_client("app").await, Ok(true));
    bumped(
        "a deleted client",
        store.catalog_version().await.expect("version"),
    );
    assert_eq!(store.delete_mapper("m").await, Ok(true));
    bumped(
        "a deleted mapper",
        store.catalog_version().await.expect("version"),
    );
}

/// The catalog is read as of one moment, with the version it stands for.
pub async fn the_catalog_is_read_whole_with_its_version(store: &dyn Store) {
    let empty = store.catalog().await.expect("catalog");
    assert!(empty.clients.is_empty() && empty.connections.is_empty() && empty.mappers.is_empty());
    store
        .put_client(&client("app", "https://app.example/cb"))
        .await
        .expect("client");
    store
        .put_connection(&connection("con_1", "acme"))
        .await
        .expect("connection");
    store
        .add_mapper_version("acme-mapper", b"one", "sha-1", "admin", NOW)
        .await
        .expect("mapper");
    store
        .add_mapper_version("acme-mapper", b"two", "sha-2", "admin", NOW + 1)
        .await
        .expect("mapper");
    let catalog = store.catalog().await.expect("catalog");
    assert_eq!(
        catalog.version,
        store.catalog_version().await.expect("version")
    );
    assert!(catalog.version > empty.version);
    assert_eq!(catalog.clients, [client("app", "https://app.example/cb")]);
    assert_eq!(catalog.connections, [connection("con_1", "acme")]);
    assert_eq!(
        catalog.mappers,
        [MapperEntry {
            name: "acme-mapper".into(),
            active_version: 2
        }]
    );
    let versions: Vec<(u32, &str)> = catalog
        .versions
        .iter()
        .map(|v| (v.version, v.sha256.as_str()))
        .collect();
    assert_eq!(
        versions,
        [(1, "sha-1"), (2, "sha-2")],
        "every version, in order"
    );
}

// ---- leases ----

/// A lease is its holder's until it expires; the holder renews it.
pub async fn a_lease_is_held_by_one_holder_until_it_expires(store: &dyn Store) {
    assert_eq!(
        store.try_lease("sweep", "a", 60, NOW).await,
        Ok(true),
        "free: taken"
    );
    assert_eq!(
        store.try_lease("sweep", "b", 60, NOW + 1).await,
        Ok(false),
        "held by a"
    );
    assert_eq!(
        store.try_lease("other", "b", 60, NOW + 1).await,
        Ok(true),
        "another lease is free"
    );
    assert_eq!(
        store.try_lease("sweep", "a", 60, NOW + 59).await,
        Ok(true),
        "a renews it"
    );
    assert_eq!(
        store.try_lease("sweep", "b", 60, NOW + 100).await,
        Ok(false),
        "renewed until NOW + 119"
    );
    assert_eq!(
        store.try_lease("sweep", "b", 60, NOW + 119).await,
        Ok(true),
        "expired: b takes it"
    );
    assert_eq!(
        store.try_lease("sweep", "a", 60, NOW + 120).await,
        Ok(false),
        "now b's"
    );
}

/// Of instances asking for one lease at once, exactly one gets it.
pub async fn concurrent_lease_takers_let_exactly_one_win(store: &dyn Store) {
    let results = race(RACERS, |i| async move {
        store
            .try_lease("sweep", &format!("instance-{i}"), 60, NOW)
            .await
            .expect("try")
    });
    assert_eq!(
        results.iter().filter(|won| **won).count(),
        1,
        "one sweeper: {results:?}"
    );
}

// ---- users' metadata and post-login Actions ----

pub(crate) fn metadata(value: serde_json::Value) -> Metadata {
    match value {
        serde_json::Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

async fn login(store: &dyn Store, user_id: &str) {
    store
        .record_login(user_id, "c", profile(user_id, None, "U"), NOW)
        .await
        .expect("login");
}

pub async fn metadata_merges_top_level_properties_and_null_removes_one(store: &dyn Store) {
    login(store, "u1").await;
    let first = store
        .merge_user_metadata(
            "u1",
            &metadata(json!({"plan": "gold", "roles": ["a"], "gone": 1})),
            &metadata(json!({"theme": {"dark": true, "size": 2}})),
        )
        .await
        .expect("merge")
        .expect("the user");
    assert_eq!(first.app_metadata["plan"], "gold");
    let second = store
        .merge_user_metadata(
            "u1",
            &metadata(json!({"roles": ["b"], "gone": null})),
            &metadata(json!({"theme": {"dark": false}})),
        )
        .await
        .expect("merge")
        .expect("the user");
    let stored = store.get_user("u1").await.expect("get").expect("the user");
    assert_eq!(stored, second, "what the merge returns is what is stored");
    assert_eq!(
        serde_json::Value::Object(stored.app_metadata),
        json!({"plan": "gold", "roles": ["b"]}),
        "top-level properties replaced, null removes one, the rest kept"
    );
    assert_eq!(
        serde_json::Value::Object(stored.user_metadata),
        json!({"theme": {"dark": false}}),
        "an object is replaced whole, not merged deeper"
    );
}

pub async fn a_login_keeps_the_users_metadata(store: &dyn Store) {
    login(store, "u1").await;
    store
        .merge_user_metadata("u1", &metadata(json!({"plan": "gold"})), &Metadata::new())
        .await
        .expect("merge");
    let again = store
        .record_login("u1", "c", profile("u1", None, "U"), NOW + 1)
        .await
        .expect("login");
    assert_eq!(again.app_metadata["plan"], "gold", "returned by the login");
    let stored = store.get_user("u1").await.expect("get").expect("the user");
    assert_eq!(stored.app_metadata["plan"], "gold");
    assert_eq!(stored.logins_count, 2);
}

pub async fn merging_metadata_of_an_unknown_user_finds_nobody(store: &dyn Store) {
    let merged = store
        .merge_user_metadata("nobody", &metadata(json!({"a": 1})), &Metadata::new())
        .await
        .expect("merge");
    assert_eq!(merged, None);
    assert_eq!(store.get_user("nobody").await.expect("get"), None);
}

pub async fn concurrent_metadata_merges_all_land(store: &dyn Store) {
    login(store, "u1").await;
    let results = race(RACERS, |i| async move {
        let patch = metadata(json!({ format!("k{i}"): i }));
        store
            .merge_user_metadata("u1", &patch, &Metadata::new())
            .await
    });
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let stored = store.get_user("u1").await.expect("get").expect("the user");
    assert_eq!(
        stored.app_metadata.len(),
        RACERS,
        "no merge lost: {:?}",
        stored.app_metadata
    );
}

pub(crate) fn action(id: &str, name: &str) -> StoredAction {
    StoredAction {
        id: id.into(),
        name: name.into(),
        supported_triggers: vec!["post-login".into()],
        runtime: "wasm".into(),
        secrets: vec![StoredActionSecret {
            name: "API_KEY".into(),
            value: "s3cret".into(),
        }],
        egress: StoredMapperEgress {
            allowed_hosts: vec!["api.example.com".into()],
            allow_private_networks: false,
        },
        timeout_ms: Some(500),
        draft_sha256: None,
        created_at: NOW,
        updated_at: NOW,
    }
}

fn with_draft(mut action: StoredAction, sha: &str) -> StoredAction {
    action.draft_sha256 = Some(sha.into());
    action
}

pub async fn actions_are_put_listed_and_their_names_are_unique(store: &dyn Store) {
    store
        .put_action(&action("act_b", "second"), None)
        .await
        .expect("put");
    store
        .put_action(&action("act_a", "first"), None)
        .await
        .expect("put");
    let listed = store.actions().await.expect("list");
    assert_eq!(
        listed
            .iter()
            .map(|a| (a.action.id.as_str(), a.active_version))
            .collect::<Vec<_>>(),
        [("act_a", 0), ("act_b", 0)],
        "by id, never deployed"
    );
    assert_eq!(
        listed[0].action,
        action("act_a", "first"),
        "every field kept"
    );
    let taken = store.put_action(&action("act_c", "first"), None).await;
    assert!(matches!(&taken, Err(StoreError::Conflict(_))), "{taken:?}");
    let mut renamed = action("act_a", "renamed");
    renamed.updated_at = NOW + 5;
    store.put_action(&renamed, None).await.expect("rename");
    assert_eq!(store.actions().await.expect("list")[0].action, renamed);
}

pub async fn deploying_an_action_stores_its_draft_as_the_next_active_version(store: &dyn Store) {
    store
        .put_action(&with_draft(action("act_a", "a"), "sha-1"), Some(b"one"))
        .await
        .expect("put");
    let v1 = store
        .deploy_action("act_a", "admin", NOW)
        .await
        .expect("deploy")
        .expect("deployed");
    assert_eq!((v1.version, v1.sha256.as_str(), v1.size), (1, "sha-1", 3));
    // A settings change keeps the draft; a new draft replaces it.
    store
        .put_action(&with_draft(action("act_a", "a"), "sha-1"), None)
        .await
        .expect("put");
    let again = store
        .deploy_action("act_a", "admin", NOW + 1)
        .await
        .expect("deploy")
        .expect("deployed");
    assert_eq!(again.version, 2);
    assert_eq!(
        store.action_bytes("act_a", 2).await.expect("bytes"),
        Some(b"one".to_vec()),
        "the kept draft"
    );
    store
        .put_action(&with_draft(action("act_a", "a"), "sha-3"), Some(b"three"))
        .await
        .expect("put");
    let v3 = store
        .deploy_action("act_a", "ci", NOW + 2)
        .await
        .expect("deploy")
        .expect("deployed");
    assert_eq!((v3.version, v3.created_by.as_str()), (3, "ci"));
    assert_eq!(
        store.action_bytes("act_a", 3).await.expect("bytes"),
        Some(b"three".to_vec())
    );
    assert_eq!(
        store.action_bytes("act_a", 1).await.expect("bytes"),
        Some(b"one".to_vec()),
        "older versions are kept"
    );
    assert_eq!(store.action_bytes("act_a", 4).await.expect("bytes"), None);
    let versions = store.action_versions("act_a").await.expect("versions");
    assert_eq!(
        versions.iter().map(|v| v.version).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert_eq!(store.actions().await.expect("list")[0].active_version, 3);
}

fn rule(id: &str, name: &str, order: i64) -> StoredRule {
    StoredRule {
        id: id.into(),
        name: name.into(),
        script: "function (user, context, callback) { callback(null, user, context); }".into(),
        order,
        enabled: true,
        stage: "login_success".into(),
        egress: StoredMapperEgress {
            allowed_hosts: vec!["api.example.com".into()],
            allow_private_networks: false,
        },
        timeout_ms: Some(500),
        created_at: NOW,
        updated_at: NOW,
    }
}

pub async fn rules_are_listed_in_order_replaced_by_id_and_deleted(store: &dyn Store) {
    for r in [
        rule("rul_c", "c", 2),
        rule("rul_a", "a", 1),
        rule("rul_b", "b", 2),
    ] {
        store.put_rule(&r).await.expect("put");
    }
    let names = |rules: Vec<StoredRule>| rules.into_iter().map(|r| r.name).collect::<Vec<_>>();
    assert_eq!(
        names(store.rules().await.expect("list")),
        ["a", "b", "c"],
        "by order, then name"
    );
    let moved = StoredRule {
        order: 0,
        enabled: false,
        ..rule("rul_c", "c-renamed", 0)
    };
    store.put_rule(&moved).await.expect("replace");
    let rules = store.rules().await.expect("list");
    assert_eq!(rules[0], moved, "every field survives the store");
    assert_eq!(names(rules), ["c-renamed", "a", "b"]);
    assert!(store.delete_rule("rul_a").await.expect("delete"));
    assert!(!store.delete_rule("rul_a").await.expect("delete again"));
    assert_eq!(
        names(store.rules().await.expect("list")),
        ["c-renamed", "b"]
    );
}

pub async fn a_rules_name_is_unique(store: &dyn Store) {
    store.put_rule(&rule("rul_a", "a", 1)).await.expect("put");
    let clash = store.put_rule(&rule("rul_b", "a", 2)).await;
    assert!(matches!(clash, Err(StoreError::Conflict(_))), "{clash:?}");
    assert_eq!(
        store.rules().await.expect("list").len(),
        1,
        "nothing written"
    );
}

pub async fn rule_writes_bump_the_catalog_version(store: &dyn Store) {
    let mut last = store.catalog_version().await.expect("version");
    let mut bumped = |now: u64, what: &str| {
        assert!(now > last, "{what} bumps the catalog version");
        last = now;
    };
    store.put_rule(&rule("rul_a", "a", 1)).await.expect("put");
    bumped(
        store.catalog_version().await.expect("version"),
        "a new rule",
    );
    store.put_rule(&rule("rul_a", "a", 2)).await.expect("put");
    bumped(
        store.catalog_version().await.expect("version"),
        "a changed rule",
    );
    store.delete_rule("rul_a").await.expect("delete");
    bumped(
        store.catalog_version().await.expect("version"),
        "a deleted rule",
    );
}

pub async fn an_action_without_a_draft_has_nothing_to_deploy(store: &dyn Store) {
    store
        .put_action(&action("act_a", "a"), None)
        .await
        .expect("put");
    assert_eq!(
        store
            .deploy_action("act_a", "admin", NOW)
            .await
            .expect("deploy"),
        None
    );
    assert_eq!(
        store
            .deploy_action("act_nope", "admin", NOW)
            .await
            .expect("deploy"),
        None
    );
    assert!(
        store
            .action_versions("act_a")
            .await
            .expect("versions")
            .is_empty()
    );
}

pub async fn an_older_action_version_can_be_activated_again(store: &dyn Store) {
    store
        .put_action(&with_draft(action("act_a", "a"), "sha-1"), Some(b"one"))
        .await
        .expect("put");
    store
        .deploy_action("act_a", "admin", NOW)
        .await
        .expect("deploy");
    store
        .deploy_action("act_a", "admin", NOW)
        .await
        .expect("deploy");
    assert!(
        store
            .activate_action_version("act_a", 1)
            .await
            .expect("activate")
    );
    assert_eq!(store.actions().await.expect("list")[0].active_version, 1);
    assert!(
        !store
            .activate_action_version("act_a", 9)
            .await
            .expect("activate")
    );
    assert!(
        !store
            .activate_action_version("act_nope", 1)
            .await
            .expect("activate")
    );
    assert_eq!(store.actions().await.expect("list")[0].active_version, 1);
}

pub async fn bindings_keep_their_order_and_refuse_unknown_actions(store: &dyn Store) {
    assert!(
        store
            .post_login_bindings()
            .await
            .expect("bindings")
            .is_empty()
    );
    for (id, name) in [("act_a", "a"), ("act_b", "b"), ("act_c", "c")] {
        store
            .put_action(&action(id, name), None)
            .await
            .expect("put");
    }
    let order = ["act_c".to_owned(), "act_a".to_owned(), "act_b".to_owned()];
    store.set_post_login_bindings(&order).await.expect("bind");
    assert_eq!(store.post_login_bindings().await.expect("bindings"), order);
    let refused = store
        .set_post_login_bindings(&["act_a".to_owned(), "act_nope".to_owned()])
        .await;
    assert!(
        matches!(&refused, Err(StoreError::Missing(_))),
        "{refused:?}"
    );
    assert_eq!(
        store.post_login_bindings().await.expect("bindings"),
        order,
        "a refused write changes nothing"
    );
    store
        .set_post_login_bindings(&["act_b".to_owned()])
        .await
        .expect("bind");
    assert_eq!(
        store.post_login_bindings().await.expect("bindings"),
        ["act_b"]
    );
}

pub async fn deleting_an_action_removes_its_versions_and_bindings(store: &dyn Store) {
    for (id, name) in [("act_a", "a"), ("act_b", "b"), ("act_c", "c")] {
        store
            .put_action(&with_draft(action(id, name), "sha"), Some(b"x"))
            .await
            .expect("put");
        store.deploy_action(id, "admin", NOW).await.expect("deploy");
    }
    let order = ["act_a".to_owned(), "act_b".to_owned(), "act_c".to_owned()];
    store.set_post_login_bindings(&order).await.expect("bind");
    assert!(store.delete_action("act_b").await.expect("delete"));
    assert!(!store.delete_action("act_b").await.expect("delete"), "once");
    assert_eq!(
        store.post_login_bindings().await.expect("bindings"),
        ["act_a", "act_c"],
        "the others keep their order"
    );
    assert!(
        store
            .action_versions("act_b")
            .await
            .expect("versions")
            .is_empty()
    );
    assert_eq!(store.action_bytes("act_b", 1).await.expect("bytes"), None);
    // A new Action under the old id starts from nothing.
    store
        .put_action(&action("act_b", "b"), None)
        .await
        .expect("put");
    assert_eq!(
        store
            .deploy_action("act_b", "admin", NOW)
            .await
            .expect("deploy"),
        None,
        "no draft survived the delete"
    );
}

pub async fn action_writes_bump_the_catalog_and_the_catalog_holds_them(store: &dyn Store) {
    let mut version = store.catalog_version().await.expect("version");
    macro_rules! bumped {
        ($what:literal, $now:expr) => {{
            let now = $now;
            assert!(now > version, "{} bumps the catalog version", $what);
            version = now;
        }};
    }
    store
        .put_action(&with_draft(action("act_a", "a"), "sha-1"), Some(b"one"))
        .await
        .expect("put");
    bumped!(
        "put_action",
        store.catalog_version().await.expect("version")
    );
    store
        .deploy_action("act_a", "admin", NOW)
        .await
        .expect("deploy");
    bumped!(
        "deploy_action",
        store.catalog_version().await.expect("version")
    );
    store
        .deploy_action("act_a", "admin", NOW)
        .await
        .expect("deploy");
    store
        .activate_action_version("act_a", 1)
        .await
        .expect("activate");
    bumped!(
        "activate_action_version",
        store.catalog_version().await.expect("version")
    );
    store
        .set_post_login_bindings(&["act_a".to_owned()])
        .await
        .expect("bind");
    bumped!(
        "set_post_login_bindings",
        store.catalog_version().await.expect("version")
    );

    let catalog = store.catalog().await.expect("catalog");
    assert_eq!(catalog.version, version);
    assert_eq!(catalog.actions.len(), 1);
    assert_eq!(catalog.actions[0].active_version, 1);
    assert_eq!(catalog.actions[0].action.secrets[0].value, "s3cret");
    assert_eq!(
        catalog
            .action_versions
            .iter()
            .map(|v| (v.action_id.as_str(), v.version))
            .collect::<Vec<_>>(),
        [("act_a", 1), ("act_a", 2)]
    );
    assert_eq!(catalog.post_login_bindings, ["act_a"]);

    store.delete_action("act_a").await.expect("delete");
    bumped!(
        "delete_action",
        store.catalog_version().await.expect("version")
    );
    let catalog = store.catalog().await.expect("catalog");
    assert_eq!(catalog.version, version);
    assert!(catalog.actions.is_empty() && catalog.post_login_bindings.is_empty());
}

// ---- log events ----

/// Event `n` (ids order as `n` does): type `s` for even `n`, `f` for odd;
/// user `u{n % 3}`; connection `c{n % 2}`; dated `NOW + n`.
pub(crate) fn log_event(n: u64) -> LogEvent {
    LogEvent {
        log_id: format!("{:011}{n:09}", NOW + n),
        date: NOW + n,
        event_type: if n.is_multiple_of(2) { "s" } else { "f" }.into(),
        description: Some(format!("event {n}")),
        connection: Some(format!("c{}", n % 2)),
        connection_id: None,
        client_id: Some("app".into()),
        client_name: None,
        user_id: Some(format!("u{}", n % 3)),
        user_name: None,
        ip: Some("192.0.2.1".into()),
        user_agent: None,
        details: json!({"stage": "mapper", "n": n}),
    }
}

async fn put_events(store: &dyn Store, range: std::ops::Range<u64>) {
    let events: Vec<LogEvent> = range.map(log_event).collect();
    store.put_log_events(&events).await.expect("put log events");
}

fn log_ids(page: &waypass::store::LogPage) -> Vec<String> {
    page.events.iter().map(|e| e.log_id.clone()).collect()
}

fn all(limit: usize) -> LogQuery {
    LogQuery {
        limit,
        ..LogQuery::default()
    }
}

pub async fn log_events_are_listed_newest_first_and_paged_with_a_total(store: &dyn Store) {
    put_events(store, 0..10).await;
    let first = store.log_events(&all(4)).await.expect("list");
    assert_eq!(first.total, 10);
    assert_eq!(log_ids(&first), [9, 8, 7, 6].map(|n| log_event(n).log_id));
    let last = store
        .log_events(&LogQuery {
            offset: 8,
            ..all(4)
        })
        .await
        .expect("list");
    assert_eq!(log_ids(&last), [1, 0].map(|n| log_event(n).log_id));
    assert_eq!(first.events[0], log_event(9), "every field survives");
}

pub async fn log_events_are_filtered_by_type_user_connection_and_date(store: &dyn Store) {
    put_events(store, 0..12).await;
    let failed = store
        .log_events(&LogQuery {
            event_type: Some("f".into()),
            ..all(100)
        })
        .await
        .expect("list");
    assert_eq!(failed.total, 6);
    assert!(failed.events.iter().all(|e| e.event_type == "f"));
    let user = store
        .log_events(&LogQuery {
            user_id: Some("u1".into()),
            connection: Some("c1".into()),
            ..all(100)
        })
        .await
        .expect("list");
    // n % 3 == 1 and n odd: 1, 7.
    assert_eq!(log_ids(&user), [7, 1].map(|n| log_event(n).log_id));
    assert_eq!(user.total, 2);
    let dated = store
        .log_events(&LogQuery {
            date_from: Some(NOW + 3),
            date_to: Some(NOW + 5),
            ..all(100)
        })
        .await
        .expect("list");
    assert_eq!(log_ids(&dated), [5, 4, 3].map(|n| log_event(n).log_id));
}

pub async fn a_log_checkpoint_returns_the_later_events_oldest_first(store: &dyn Store) {
    put_events(store, 0..6).await;
    let page = store
        .log_events(&LogQuery {
            after: Some(log_event(2).log_id),
            ..all(2)
        })
        .await
        .expect("list");
    assert_eq!(log_ids(&page), [3, 4].map(|n| log_event(n).log_id));
    let rest = store
        .log_events(&LogQuery {
            after: Some(log_event(4).log_id),
            ..all(10)
        })
        .await
        .expect("list");
    assert_eq!(log_ids(&rest), [log_event(5).log_id]);
}

pub async fn log_events_are_read_by_id_and_stored_once(store: &dyn Store) {
    put_events(store, 0..2).await;
    put_events(store, 1..3).await;
    assert_eq!(
        store.log_event(&log_event(1).log_id).await.expect("get"),
        Some(log_event(1))
    );
    assert_eq!(store.log_event("nope").await.expect("get"), None);
    assert_eq!(store.log_events(&all(10)).await.expect("list").total, 3);
}

pub async fn retention_deletes_only_the_events_before_its_date(store: &dyn Store) {
    put_events(store, 0..5).await;
    assert_eq!(
        store
            .delete_log_events_before(NOW + 2)
            .await
            .expect("delete"),
        2
    );
    let left = store.log_events(&all(10)).await.expect("list");
    assert_eq!(log_ids(&left), [4, 3, 2].map(|n| log_event(n).log_id));
}

// ---- signing-key rotation ----

pub async fn signing_keys_are_replaced_only_over_the_expected_document(store: &dyn Store) {
    let v0 = store.catalog_version().await.expect("version");
    assert!(
        !store
            .replace_signing_keys(Some("{}"), "a")
            .await
            .expect("replace"),
        "nothing is stored, so nothing is `{{}}`"
    );
    assert!(
        store
            .replace_signing_keys(None, "a")
            .await
            .expect("replace")
    );
    assert!(
        !store
            .replace_signing_keys(None, "b")
            .await
            .expect("replace")
    );
    assert!(
        !store
            .replace_signing_keys(Some("x"), "b")
            .await
            .expect("replace")
    );
    assert!(
        store
            .replace_signing_keys(Some("a"), "b")
            .await
            .expect("replace")
    );
    assert_eq!(
        store.signing_keys().await.expect("read").as_deref(),
        Some("b")
    );
    let v1 = store.catalog_version().await.expect("version");
    assert_eq!(
        v1,
        v0 + 2,
        "each replacement moves the catalog version, refusals do not"
    );
}
