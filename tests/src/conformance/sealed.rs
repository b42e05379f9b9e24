//! Secrets at rest ([`SealedStore`] over each backend): what the backend
//! holds is sealed, a sealed value moved to another row does not open, a
//! wrong key is named, and `rotate-key` reseals everything under the new
//! key — older schemas' clear values included.

use std::future::Future;
use std::sync::Arc;

use waypass::store::crypt::{Keyring, is_sealed};
use waypass::store::{IdpTokenStore as _, IdpTokens, Resealed, SealedStore, Store};

use super::{NOW, action, connection};
use crate::secrets::{OTHER_SECRETS_KEY, SECRETS_KEY};

/// A key document standing in for the broker's (what it holds is opaque
/// to the store): its private part is the marker looked for.
const SIGNING_DOCUMENT: &str = r#"{"version":1,"keys":[{"pkcs8":"PRIVATE-SIGNING-KEY"}]}"#;
const CONNECTION_DOCUMENT: &str = r#"{"version":1,"keys":[{"pkcs8":"PRIVATE-CONNECTION-KEY"}]}"#;

fn keys(text: &str) -> Arc<Keyring> {
    Arc::new(Keyring::parse(text).expect("a valid key"))
}

/// Runs every behaviour below against a fresh backend from `new_store`.
pub async fn run_sealed<F, Fut>(new_store: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Box<dyn Store>>,
{
    macro_rules! run {
        ($($behaviour:ident),* $(,)?) => {
            $(
                eprintln!("conformance (sealed): {}", stringify!($behaviour));
                $behaviour(Arc::from(new_store().await)).await;
            )*
        };
    }
    run!(
        the_backend_holds_every_secret_sealed_and_the_store_hands_them_back_clear,
        a_sealed_secret_moved_to_another_row_does_not_open,
        a_store_sealed_under_a_key_not_given_is_refused_naming_that_key,
        rotating_reseals_everything_so_the_new_key_alone_reads_it,
        the_providers_tokens_are_sealed_bound_to_their_identity_and_resealed,
    );
}

/// One of each secret, written through `sealed`.
async fn write_secrets(sealed: &SealedStore) {
    sealed
        .put_connection(&connection("con_a", "alpha"))
        .await
        .expect("put a connection");
    sealed
        .put_connection(&connection("con_b", "beta"))
        .await
        .expect("put a connection");
    sealed
        .put_action(&action("act_a", "enrich"), None)
        .await
        .expect("put an Action");
    sealed
        .init_signing_keys(SIGNING_DOCUMENT)
        .await
        .expect("init signing keys");
    sealed
        .init_connection_keys("con_a", CONNECTION_DOCUMENT)
        .await
        .expect("init connection keys");
}

/// Every stored secret value, as the backend holds it.
async fn raw_secrets(raw: &dyn Store) -> Vec<String> {
    let mut values = Vec::new();
    for c in raw.connections().await.expect("connections") {
        values.extend(c.spec.options.client_secret);
        values.extend(raw.connection_keys(&c.id).await.expect("connection keys"));
    }
    for a in raw.actions().await.expect("actions") {
        values.extend(a.action.secrets.into_iter().map(|s| s.value));
    }
    values.extend(raw.signing_keys().await.expect("signing keys"));
    values
}

pub async fn the_backend_holds_every_secret_sealed_and_the_store_hands_them_back_clear(
    raw: Arc<dyn Store>,
) {
    let sealed = SealedStore::new(raw.clone(), keys(SECRETS_KEY));
    write_secrets(&sealed).await;

    let stored = raw_secrets(&*raw).await;
    assert_eq!(stored.len(), 5, "every secret is stored: {stored:?}");
    for value in &stored {
        assert!(is_sealed(value), "sealed: {value}");
        for clear in ["s3cret", "PRIVATE-SIGNING-KEY", "PRIVATE-CONNECTION-KEY"] {
            assert!(!value.contains(clear), "no {clear} in {value}");
        }
    }

    let connections = sealed.connections().await.expect("connections");
    assert!(
        connections
            .iter()
            .all(|c| c.spec.options.client_secret.as_deref() == Some("s3cret")),
        "connections read back clear"
    );
    let catalog = sealed.catalog().await.expect("catalog");
    assert_eq!(
        catalog.connections[0].spec.options.client_secret.as_deref(),
        Some("s3cret"),
        "and so does the catalog"
    );
    assert_eq!(catalog.actions[0].action.secrets[0].value, "s3cret");
    assert_eq!(
        sealed.actions().await.expect("actions")[0].action.secrets[0].value,
        "s3cret"
    );
    assert_eq!(
        sealed.signing_keys().await.expect("keys").as_deref(),
        Some(SIGNING_DOCUMENT)
    );
    assert_eq!(
        sealed
            .connection_keys("con_a")
            .await
            .expect("keys")
            .as_deref(),
        Some(CONNECTION_DOCUMENT)
    );
    // The key documents' compare-and-swap compares the clear documents.
    assert!(
        sealed
            .replace_signing_keys(Some(SIGNING_DOCUMENT), "next")
            .await
            .expect("replace"),
        "replaced over the document read"
    );
    assert!(
        !sealed
            .replace_signing_keys(Some(SIGNING_DOCUMENT), "stale")
            .await
            .expect("replace"),
        "not over one replaced meanwhile"
    );
    assert!(
        sealed
            .replace_connection_keys("con_a", CONNECTION_DOCUMENT, "next")
            .await
            .expect("replace")
    );
    assert!(
        !sealed
            .replace_connection_keys("con_a", CONNECTION_DOCUMENT, "stale")
            .await
            .expect("replace")
    );
    assert_eq!(
        sealed
            .connection_keys("con_a")
            .await
            .expect("keys")
            .as_deref(),
        Some("next")
    );
}

pub async fn a_sealed_secret_moved_to_another_row_does_not_open(raw: Arc<dyn Store>) {
    let sealed = SealedStore::new(raw.clone(), keys(SECRETS_KEY));
    write_secrets(&sealed).await;

    // Someone with write access to the database copies alpha's sealed
    // secret over beta's.
    let rows = raw.connections().await.expect("connections");
    let alpha = rows.iter().find(|c| c.id == "con_a").expect("alpha");
    let mut beta = rows.iter().find(|c| c.id == "con_b").expect("beta").clone();
    beta.spec.options.client_secret = alpha.spec.options.client_secret.clone();
    raw.put_connection(&beta).await.expect("raw write");

    let err = sealed
        .connections()
        .await
        .expect_err("the moved secret must not open");
    assert!(
        err.to_string().contains("con_b") && err.to_string().contains("does not open"),
        "{err}"
    );
    assert!(sealed.verify().await.is_err(), "start-up refuses it too");

    // A key document copied onto another connection does not open either.
    let document = raw
        .connection_keys("con_a")
        .await
        .expect("read")
        .expect("stored");
    raw.init_connection_keys("con_b", &document)
        .await
        .expect("raw write");
    assert!(sealed.connection_keys("con_b").await.is_err());
}

pub async fn a_store_sealed_under_a_key_not_given_is_refused_naming_that_key(raw: Arc<dyn Store>) {
    let right = keys(SECRETS_KEY);
    write_secrets(&SealedStore::new(raw.clone(), right.clone())).await;

    let wrong = SealedStore::new(raw, keys(OTHER_SECRETS_KEY));
    let err = wrong.verify().await.expect_err("the wrong key is refused");
    let message = err.to_string();
    assert!(
        message.contains(right.active_key_id()) && message.contains("not configured"),
        "names the key it needs: {message}"
    );
    assert!(wrong.signing_keys().await.is_err(), "no garbage handed out");
}

pub async fn rotating_reseals_everything_so_the_new_key_alone_reads_it(raw: Arc<dyn Store>) {
    write_secrets(&SealedStore::new(raw.clone(), keys(SECRETS_KEY))).await;
    // A row of an older schema: its secret in the clear.
    let mut legacy = connection("con_old", "legacy");
    legacy.spec.options.client_secret = Some("clear-from-schema-6".into());
    raw.put_connection(&legacy).await.expect("raw write");
    let mut legacy_action = action("act_old", "legacy-action");
    legacy_action.updated_at = NOW + 1;
    raw.put_action(&legacy_action, None)
        .await
        .expect("raw write");

    let both = SealedStore::new(
        raw.clone(),
        keys(&format!("{OTHER_SECRETS_KEY},{SECRETS_KEY}")),
    );
    assert_eq!(
        both.rotate().await.expect("rotate"),
        Resealed {
            connections: 3,
            actions: 2,
            signing_keys: 1,
            connection_keys: 1,
            idp_tokens: 0,
        }
    );
    assert_eq!(
        both.rotate().await.expect("rotate again"),
        Resealed::default(),
        "a second run finds nothing left to do"
    );

    let new_only = keys(OTHER_SECRETS_KEY);
    for value in raw_secrets(&*raw).await {
        assert!(new_only.is_current(&value), "under the new key: {value}");
    }
    let sealed = SealedStore::new(raw, new_only);
    sealed
        .verify()
        .await
        .expect("the new key alone opens everything");
    let secrets: Vec<_> = sealed
        .connections()
        .await
        .expect("connections")
        .into_iter()
        .map(|c| c.spec.options.client_secret.expect("a secret"))
        .collect();
    assert!(secrets.contains(&"clear-from-schema-6".to_owned()));
    assert_eq!(
        sealed.signing_keys().await.expect("keys").as_deref(),
        Some(SIGNING_DOCUMENT)
    );
}

fn idp_tokens(connection_id: &str, user: &str, access: &str) -> IdpTokens {
    IdpTokens {
        connection_id: connection_id.into(),
        provider_user_id: user.into(),
        access_token: access.into(),
        refresh_token: Some(format!("refresh-of-{access}")),
        expires_at: Some(NOW + 3600),
        updated_at: NOW,
    }
}

/// Every backend, unsealed: the provider's tokens are kept per identity,
/// replaced by a later login, swapped only over what was read, deleted.
pub async fn the_providers_tokens_are_kept_per_identity(store: &dyn Store) {
    assert_eq!(store.idp_tokens("con_a", "u1").await.expect("read"), None);
    let first = idp_tokens("con_a", "u1", "at-1");
    store.put_idp_tokens(&first).await.expect("put");
    let mut other = idp_tokens("con_b", "u1", "at-other");
    other.refresh_token = None;
    other.expires_at = None;
    store.put_idp_tokens(&other).await.expect("put");
    assert_eq!(
        store.idp_tokens("con_a", "u1").await.expect("read"),
        Some(first.clone())
    );
    assert_eq!(
        store.idp_tokens("con_b", "u1").await.expect("read"),
        Some(other.clone()),
        "the same provider id on another connection is another identity"
    );

    let second = IdpTokens {
        updated_at: NOW + 10,
        ..idp_tokens("con_a", "u1", "at-2")
    };
    store.put_idp_tokens(&second).await.expect("a later login");
    assert_eq!(
        store.idp_tokens("con_a", "u1").await.expect("read"),
        Some(second.clone())
    );
    assert!(
        !store
            .replace_idp_tokens(&first, &idp_tokens("con_a", "u1", "at-stale"))
            .await
            .expect("swap"),
        "not over tokens replaced meanwhile"
    );
    let third = idp_tokens("con_a", "u1", "at-3");
    assert!(
        store
            .replace_idp_tokens(&second, &third)
            .await
            .expect("swap")
    );
    let mut no_refresh = third.clone();
    no_refresh.refresh_token = None;
    assert!(
        store
            .replace_idp_tokens(&third, &no_refresh)
            .await
            .expect("swap")
            && store
                .replace_idp_tokens(&no_refresh, &third)
                .await
                .expect("swap"),
        "an absent refresh token compares as absent"
    );
    assert_eq!(
        store.all_idp_tokens().await.expect("list"),
        vec![third, other],
        "listed by connection then user"
    );
    assert!(
        store
            .delete_idp_tokens("con_a", "u1")
            .await
            .expect("delete")
    );
    assert!(
        !store
            .delete_idp_tokens("con_a", "u1")
            .await
            .expect("delete")
    );
    assert_eq!(store.idp_tokens("con_a", "u1").await.expect("read"), None);
}

pub async fn the_providers_tokens_are_sealed_bound_to_their_identity_and_resealed(
    raw: Arc<dyn Store>,
) {
    let sealed = SealedStore::new(raw.clone(), keys(SECRETS_KEY));
    sealed
        .put_idp_tokens(&idp_tokens("con_a", "u1", "provider-access-1"))
        .await
        .expect("put");
    sealed
        .put_idp_tokens(&idp_tokens("con_a", "u2", "provider-access-2"))
        .await
        .expect("put");
    let stored = raw.all_idp_tokens().await.expect("raw list");
    for t in &stored {
        assert!(is_sealed(&t.access_token), "{t:?}");
        assert!(!t.access_token.contains("provider-access"));
        let refresh = t.refresh_token.as_deref().expect("a refresh token");
        assert!(is_sealed(refresh) && !refresh.contains("provider-access"));
    }
    assert_eq!(
        sealed
            .idp_tokens("con_a", "u1")
            .await
            .expect("read")
            .map(|t| t.access_token),
        Some("provider-access-1".into())
    );

    // u1's sealed access token copied into u2's row does not open.
    let mut moved = stored[1].clone();
    moved.access_token = stored[0].access_token.clone();
    raw.put_idp_tokens(&moved).await.expect("raw write");
    assert!(sealed.idp_tokens("con_a", "u2").await.is_err());
    // Nor an access token moved into the refresh token's field.
    let mut swapped = stored[0].clone();
    swapped.refresh_token = Some(stored[0].access_token.clone());
    raw.put_idp_tokens(&swapped).await.expect("raw write");
    assert!(sealed.idp_tokens("con_a", "u1").await.is_err());

    sealed
        .put_idp_tokens(&idp_tokens("con_a", "u1", "provider-access-1"))
        .await
        .expect("put");
    sealed
        .put_idp_tokens(&idp_tokens("con_a", "u2", "provider-access-2"))
        .await
        .expect("put");
    let rotated = SealedStore::new(
        raw.clone(),
        keys(&format!("{OTHER_SECRETS_KEY},{SECRETS_KEY}")),
    )
    .rotate()
    .await
    .expect("rotate");
    assert_eq!(rotated.idp_tokens, 2);
    let new_only = SealedStore::new(raw, keys(OTHER_SECRETS_KEY));
    assert_eq!(
        new_only
            .idp_tokens("con_a", "u2")
            .await
            .expect("the new key alone reads it")
            .map(|t| t.access_token),
        Some("provider-access-2".into())
    );
}
