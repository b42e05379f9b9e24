//! One of everything a store holds, written by [`write`] and read back by
//! [`check`]: what the schema fixtures (`tests/fixtures/`) contain, and what
//! a reopened database must still hold.

use waypass::model::ConnectionRecord;
use waypass::secret::{Secret, SecretHash};
use waypass::store::{
    AccessGrant, AuthorizationGrant, LoginTransaction, MapperEntry, PutTransaction, RefreshLookup,
    Store, StoredClient, StoredConnection, TakeTransaction,
};

use crate::conformance::sessions::{api, refresh, session};
use crate::conformance::{NOW, action, log_event, metadata};

/// The signing key set stored (any text: the store does not parse it).
pub const KEYS: &str = r#"{"keys":[{"kid":"fixture","alg":"RS256"}]}"#;

/// The two mapper versions' bytes.
pub const MAPPER_V1: &[u8] = b"\0asm version one";
pub const MAPPER_V2: &[u8] = b"\0asm version two, longer";

fn transaction() -> LoginTransaction {
    LoginTransaction {
        client_id: "shop".into(),
        redirect_uri: "https://shop.example/callback".into(),
        app_state: Some("app-state".into()),
        nonce: Some("n-0S6_WzA2Mj".into()),
        code_challenge: Some("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".into()),
        scope: "openid email".into(),
        connection: "acme".into(),
        provider_verifier: Some(Secret::new("provider-verifier")),
        browser_binding: SecretHash::of("browser cookie"),
        correlation_id: "corr-1".into(),
        expires_at: NOW + 600,
        form_post: false,
        audience: None,
        query: Vec::new(),
    }
}

fn grant() -> AuthorizationGrant {
    AuthorizationGrant {
        claims: Default::default(),
        client_id: "shop".into(),
        redirect_uri: "https://shop.example/callback".into(),
        user_id: "oauth2|acme|42".into(),
        scope: "openid email".into(),
        nonce: Some("n-0S6_WzA2Mj".into()),
        code_challenge: None,
        auth_time: NOW - 3,
        session_id: None,
        audience: None,
        correlation_id: None,
        expires_at: NOW + 60,
    }
}

fn access() -> AccessGrant {
    AccessGrant {
        claims: Default::default(),
        user_id: "oauth2|acme|42".into(),
        client_id: "shop".into(),
        scope: "openid email".into(),
        family_id: None,
        expires_at: NOW + 3600,
    }
}

fn connection() -> StoredConnection {
    ConnectionRecord {
        id: "con_fixture1".into(),
        spec: serde_json::from_value(serde_json::json!({
            "name": "acme",
            "display_name": "Acme SSO",
            "enabled_clients": ["shop"],
            "options": {
                "authorizationURL": "https://id.acme.test/authorize",
                "tokenURL": "https://id.acme.test/token",
                "scope": "openid email",
                "client_id": "waypass",
                "client_secret": "acme-client-secret",
                "mapper": "acme-mapper",
                "mapper_settings": {"api_key": "acme-api-key"},
                "pkce_enabled": true,
            }
        }))
        .expect("a valid connection spec"),
    }
    .to_stored()
}

fn client() -> StoredClient {
    serde_json::from_value(serde_json::json!({
        "client_id": "shop",
        "name": "Shop",
        "client_type": "confidential",
        "secret_hash": SecretHash::of("shop secret").to_hex(),
        "callbacks": ["https://shop.example/callback"],
        "id_token_alg": "RS256",
        "scopes": ["read:users"],
    }))
    .expect("a valid client")
}

/// Writes one of everything into `store`.
pub async fn write(store: &dyn Store) {
    assert_eq!(
        store
            .put_transaction(SecretHash::of("state"), transaction(), NOW, usize::MAX)
            .await,
        Ok(PutTransaction::Stored),
        "transaction"
    );
    store
        .put_code(SecretHash::of("code"), grant())
        .await
        .expect("code");
    store
        .put_access_token(SecretHash::of("token"), access())
        .await
        .expect("token");
    let profile = serde_json::from_value(serde_json::json!({
        "user_id": "42", "email": "Ada@Example.test", "name": "Ada",
        "extra": {"plan": "pro"},
    }))
    .expect("profile");
    store
        .record_login("oauth2|acme|42", "acme", profile, NOW - 3)
        .await
        .expect("login");
    store.put_client(&client()).await.expect("client");
    for (bytes, sha) in [(MAPPER_V1, "sha-v1"), (MAPPER_V2, "sha-v2")] {
        store
            .add_mapper_version("acme-mapper", bytes, sha, "admin", NOW - 100)
            .await
            .expect("mapper version");
    }
    assert_eq!(
        store.activate_mapper_version("acme-mapper", 1).await,
        Ok(true),
        "version 1 active again"
    );
    store
        .put_connection(&connection())
        .await
        .expect("connection");
    assert_eq!(store.init_signing_keys(KEYS).await.as_deref(), Ok(KEYS));
    assert_eq!(
        store.try_lease(LEASE.0, LEASE.1, 600, NOW).await,
        Ok(true),
        "a lease (schema 2 on)"
    );
    write_schema_6(store).await;
}

/// The bytes of the Action version [`write`] deploys.
pub const ACTION_V1: &[u8] = b"\0asm an action";
/// The private_key_jwt key document of the connection [`write`] stores.
pub const CONNECTION_KEYS: &str = r#"{"keys":[{"kid":"conn-fixture","alg":"ES256"}]}"#;

/// One of each thing schemas 3 to 6 added: a connection's own keys (3),
/// a user's metadata, a deployed and bound Action (4), a log event (5), a
/// session, a refresh token and an API (6).
async fn write_schema_6(store: &dyn Store) {
    assert_eq!(
        store
            .init_connection_keys(&connection().id, CONNECTION_KEYS)
            .await
            .as_deref(),
        Ok(CONNECTION_KEYS)
    );
    store
        .merge_user_metadata(
            "oauth2|acme|42",
            &metadata(serde_json::json!({"plan": "pro"})),
            &metadata(serde_json::json!({"theme": "dark"})),
        )
        .await
        .expect("metadata")
        .expect("the user");
    let mut fixture_action = action("act_fixture", "fixture-action");
    fixture_action.draft_sha256 = Some("sha-action".into());
    store
        .put_action(&fixture_action, Some(ACTION_V1))
        .await
        .expect("action");
    store
        .deploy_action("act_fixture", "admin", NOW - 20)
        .await
        .expect("deploy")
        .expect("a version");
    store
        .set_post_login_bindings(&["act_fixture".into()])
        .await
        .expect("bindings");
    store
        .put_log_events(&[log_event(1)])
        .await
        .expect("log event");
    store
        .put_session(
            SecretHash::of("session-cookie"),
            &session("ses_fixture", "oauth2|acme|42", &["shop"]),
        )
        .await
        .expect("session");
    store
        .put_refresh_token(
            SecretHash::of("refresh"),
            &refresh("rtf_fixture", "oauth2|acme|42", "shop"),
        )
        .await
        .expect("refresh token");
    store
        .put_resource_server(&api("rs_fixture", "https://orders.example/"))
        .await
        .expect("API");
}

/// Reads back what [`write_schema_6`] wrote.
pub async fn check_schema_6(store: &dyn Store) {
    assert_eq!(
        store.connection_keys(&connection().id).await,
        Ok(Some(CONNECTION_KEYS.to_owned())),
        "the connection's keys"
    );
    let user = store
        .get_user("oauth2|acme|42")
        .await
        .expect("user")
        .expect("the user");
    assert_eq!(
        (user.app_metadata, user.user_metadata),
        (
            metadata(serde_json::json!({"plan": "pro"})),
            metadata(serde_json::json!({"theme": "dark"}))
        ),
        "the user's metadata"
    );
    let actions = store.actions().await.expect("actions");
    assert_eq!(
        actions
            .iter()
            .map(|a| (a.action.id.as_str(), a.active_version))
            .collect::<Vec<_>>(),
        [("act_fixture", 1)],
        "the Action and its active version"
    );
    assert_eq!(
        store.action_bytes("act_fixture", 1).await,
        Ok(Some(ACTION_V1.to_vec()))
    );
    assert_eq!(
        store.post_login_bindings().await,
        Ok(vec!["act_fixture".to_owned()])
    );
    assert_eq!(
        store.log_event(&log_event(1).log_id).await,
        Ok(Some(log_event(1))),
        "the log event"
    );
    assert_eq!(
        store
            .get_session(SecretHash::of("session-cookie"), NOW)
            .await,
        Ok(Some(session("ses_fixture", "oauth2|acme|42", &["shop"]))),
        "the session"
    );
    assert_eq!(
        store
            .get_refresh_token(SecretHash::of("refresh"), NOW)
            .await,
        Ok(RefreshLookup::Live(refresh(
            "rtf_fixture",
            "oauth2|acme|42",
            "shop"
        ))),
        "the refresh token"
    );
    assert_eq!(
        store.resource_servers().await,
        Ok(vec![api("rs_fixture", "https://orders.example/")]),
        "the API"
    );
}

/// Reads back everything [`write`] wrote, field by field.
pub async fn check(store: &dyn Store) {
    let taken = store
        .take_transaction(
            SecretHash::of("state"),
            Some(transaction().browser_binding),
            NOW,
        )
        .await
        .expect("take");
    let TakeTransaction::Taken(tx) = taken else {
        panic!("the login in flight is there: {taken:?}");
    };
    let want = transaction();
    assert_eq!(
        (
            &tx.client_id,
            &tx.redirect_uri,
            &tx.app_state,
            &tx.nonce,
            &tx.code_challenge,
            &tx.scope,
            &tx.connection,
            tx.provider_verifier.as_ref().map(Secret::expose),
            tx.browser_binding,
            &tx.correlation_id,
            tx.expires_at,
        ),
        (
            &want.client_id,
            &want.redirect_uri,
            &want.app_state,
            &want.nonce,
            &want.code_challenge,
            &want.scope,
            &want.connection,
            Some("provider-verifier"),
            want.browser_binding,
            &want.correlation_id,
            want.expires_at,
        ),
        "the transaction, whole"
    );
    let code = store
        .take_code(SecretHash::of("code"), NOW)
        .await
        .expect("take")
        .expect("the unredeemed code is there");
    assert_eq!(format!("{code:?}"), format!("{:?}", grant()), "the grant");
    let token = store
        .get_access_token(SecretHash::of("token"), NOW)
        .await
        .expect("get")
        .expect("the access token is there");
    assert_eq!(format!("{token:?}"), format!("{:?}", access()), "the token");

    let user = store
        .get_user("oauth2|acme|42")
        .await
        .expect("get")
        .expect("the user is there");
    assert_eq!(
        (
            user.connection.as_str(),
            user.profile.email.as_deref(),
            user.profile.name.as_deref(),
            user.profile.extra.get("plan").and_then(|v| v.as_str()),
            user.created_at,
            user.last_login,
            user.logins_count,
        ),
        (
            "acme",
            Some("Ada@Example.test"),
            Some("Ada"),
            Some("pro"),
            NOW - 3,
            NOW - 3,
            1
        ),
        "the user, whole"
    );
    let found = store
        .list_users(0, 10, Some("ada@example"))
        .await
        .expect("search");
    assert_eq!(found.len(), 1, "found by email, case-insensitively");

    assert_eq!(store.clients().await.expect("clients"), [client()]);
    let connections = store.connections().await.expect("connections");
    assert_eq!(connections.len(), 1, "the connection is there");
    assert_eq!(connections[0].id, "con_fixture1");
    assert_eq!(connections[0], connection(), "whole");
    assert_eq!(
        connections[0].spec.options.client_secret.as_deref(),
        Some("acme-client-secret"),
        "with its client secret"
    );
    assert_eq!(
        connections[0].spec.options.mapper_settings.get("api_key"),
        Some(&"acme-api-key".to_owned()),
        "and its mapper settings"
    );

    assert_eq!(
        store.mappers().await.expect("mappers"),
        [MapperEntry {
            name: "acme-mapper".into(),
            active_version: 1
        }],
        "the mapper, version 1 active"
    );
    let versions = store
        .mapper_versions("acme-mapper")
        .await
        .expect("versions");
    let described: Vec<_> = versions
        .iter()
        .map(|v| {
            (
                v.version,
                v.sha256.as_str(),
                v.size,
                v.created_at,
                v.created_by.as_str(),
            )
        })
        .collect();
    assert_eq!(
        described,
        [
            (1, "sha-v1", MAPPER_V1.len() as u64, NOW - 100, "admin"),
            (2, "sha-v2", MAPPER_V2.len() as u64, NOW - 100, "admin"),
        ],
        "both versions"
    );
    for (version, bytes) in [(1, MAPPER_V1), (2, MAPPER_V2)] {
        assert_eq!(
            store
                .mapper_bytes("acme-mapper", version)
                .await
                .expect("bytes")
                .as_deref(),
            Some(bytes),
            "version {version}'s bytes"
        );
    }
    assert_eq!(
        store.signing_keys().await.expect("keys").as_deref(),
        Some(KEYS),
        "the signing keys"
    );
}

/// The lease [`write`] takes (schema 2 on).
pub const LEASE: (&str, &str) = ("sweep", "instance-fixture");

/// What schema 2 added: the lease [`write`] took is still held by its
/// holder, and the catalog version is past the catalog writes.
pub async fn check_schema_2(store: &dyn Store) {
    assert_eq!(
        store.try_lease(LEASE.0, "another-instance", 60, NOW).await,
        Ok(false),
        "the lease is held"
    );
    assert_eq!(
        store.try_lease(LEASE.0, LEASE.1, 60, NOW).await,
        Ok(true),
        "by its holder"
    );
    assert!(
        store.catalog_version().await.expect("version") > 0,
        "the catalog writes counted"
    );
}

/// After a migration the catalog version still moves: a catalog write
/// bumps it (the triggers exist), and the whole catalog reads back.
pub async fn check_the_catalog_version_moves(store: &dyn Store) {
    let before = store.catalog().await.expect("the catalog");
    assert_eq!(before.clients, [client()]);
    let mut other = client();
    other.client_id = "after-migration".into();
    store.put_client(&other).await.expect("client");
    assert!(
        store.catalog_version().await.expect("version") > before.version,
        "a catalog write bumps the version"
    );
}

// ---- schema 10: secrets sealed, the provider's tokens ----

/// The provider's tokens of the fixture user's identity (schema 10).
pub fn idp_tokens() -> waypass::store::IdpTokens {
    waypass::store::IdpTokens {
        connection_id: connection().id,
        provider_user_id: "42".into(),
        access_token: "provider-access-fixture".into(),
        refresh_token: Some("provider-refresh-fixture".into()),
        expires_at: Some(NOW + 3600),
        updated_at: NOW - 3,
    }
}

/// The store as schema 10 code reads it: its secrets sealed under
/// [`crate::secrets::SECRETS_KEY`].
pub fn sealed(raw: std::sync::Arc<dyn Store>) -> waypass::store::SealedStore {
    let keys = waypass::store::crypt::Keyring::parse(crate::secrets::SECRETS_KEY).expect("a key");
    waypass::store::SealedStore::new(raw, std::sync::Arc::new(keys))
}

/// Schema 10 on top of [`write`]: the identity's provider tokens, and every
/// secret [`write`] stored sealed (as schema 10 code stores them).
pub async fn write_schema_10(raw: std::sync::Arc<dyn Store>) {
    use waypass::store::IdpTokenStore as _;
    let store = sealed(raw);
    store
        .put_idp_tokens(&idp_tokens())
        .await
        .expect("the provider's tokens");
    let resealed = store.rotate().await.expect("seal");
    assert_eq!(
        (
            resealed.connections,
            resealed.actions,
            resealed.signing_keys,
            resealed.connection_keys
        ),
        (1, 1, 1, 1),
        "every secret sealed: {resealed:?}"
    );
}

/// Every secret value `raw` holds (connections', Actions', key documents,
/// the provider's tokens), as stored.
pub async fn stored_secrets(raw: &dyn Store) -> Vec<String> {
    let mut values = Vec::new();
    for c in raw.connections().await.expect("connections") {
        values.extend(c.spec.options.client_secret);
        values.extend(raw.connection_keys(&c.id).await.expect("connection keys"));
    }
    for a in raw.actions().await.expect("actions") {
        values.extend(a.action.secrets.into_iter().map(|s| s.value));
    }
    values.extend(raw.signing_keys().await.expect("signing keys"));
    for t in raw.all_idp_tokens().await.expect("tokens") {
        values.push(t.access_token);
        values.extend(t.refresh_token);
    }
    values
}

/// Reads back what [`write_schema_10`] wrote, through [`sealed`]: every
/// stored secret is sealed, and opens.
pub async fn check_schema_10(raw: std::sync::Arc<dyn Store>) {
    use waypass::store::IdpTokenStore as _;
    let secrets = stored_secrets(&*raw).await;
    assert_eq!(secrets.len(), 6, "{secrets:?}");
    assert!(
        secrets.iter().all(|s| waypass::store::crypt::is_sealed(s)),
        "every secret sealed"
    );
    let store = sealed(raw);
    store.verify().await.expect("opens with the fixture's key");
    assert_eq!(
        store.idp_tokens("con_fixture1", "42").await,
        Ok(Some(idp_tokens())),
        "the provider's tokens"
    );
}

/// A store of schema 6 or older keeps its secrets in the clear: read as
/// they are through [`sealed`], then sealed by `rotate-key`, after which
/// they open to what they were.
pub async fn check_clear_secrets_are_read_then_sealed_by_rotation(raw: std::sync::Arc<dyn Store>) {
    let before = stored_secrets(&*raw).await;
    assert!(
        !before.is_empty() && before.iter().all(|s| !waypass::store::crypt::is_sealed(s)),
        "an older schema's secrets are clear: {before:?}"
    );
    let store = sealed(raw.clone());
    store
        .verify()
        .await
        .expect("clear secrets read as they are");
    let resealed = store.rotate().await.expect("rotate-key");
    assert!(
        resealed.connections >= 1 && resealed.signing_keys == 1,
        "{resealed:?}"
    );
    let after = stored_secrets(&*raw).await;
    assert_eq!(after.len(), before.len());
    assert!(
        after.iter().all(|s| waypass::store::crypt::is_sealed(s)),
        "{after:?}"
    );
    assert_eq!(
        stored_secrets(&store).await,
        before,
        "and open to what they were"
    );
}
