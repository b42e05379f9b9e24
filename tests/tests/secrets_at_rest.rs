//! Secrets at rest (issue #14 §4, §6) and the provider's tokens (issue #12
//! §7, §8), end to end with SQLite: a broker started from a configuration
//! logs a user in; then the database file (every file of the data
//! directory but the key) holds no secret in the clear, the provider's
//! tokens reach a management caller holding `read:user_idp_tokens` and no
//! other, a wrong key is refused at start-up, and `rotate-key` leaves a
//! store the new key alone reads.

use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::Value;
use waypass::broker::Broker;
use waypass::broker::config::Config;
use waypass::store::crypt::Keyring;
use waypass::store::{StoredAction, StoredActionSecret, StoredMapperEgress};
use waypass_tests::login::{
    ADMIN_TOKEN, APP, APP_CALLBACK, APP_SECRET, Browser, admin_api, api_call, management_token,
    redeem,
};
use waypass_tests::secrets::{OTHER_SECRETS_KEY, SECRETS_KEY, found_in};
use waypass_tests::served::{Served, authorize_url, load_config, provider_for, seed_config};

/// The provider's client secret for Waypass: looked for in the file.
const PROVIDER_SECRET: &str = "provider-secret-in-the-clear-7f3a9c";
/// An Action's secret value: looked for in the file.
const ACTION_SECRET: &str = "action-secret-in-the-clear-51d2e8";
/// The field of a key document that holds a private key (PKCS#8): in the
/// file only if a key document is stored in the clear.
const PRIVATE_KEY_FIELD: &str = "pkcs8";

/// A configuration with a connection holding a client secret and one
/// authenticating with `private_key_jwt`, its keys from `secrets.key`.
fn config(dir: &Path, issuer: &str, origin: &str) -> Config {
    std::fs::write(dir.join("admin-token"), ADMIN_TOKEN).expect("token file");
    let mut text = seed_config(
        issuer,
        origin,
        PROVIDER_SECRET,
        "data_dir = \"data\"\nadmin_token_file = \"admin-token\"\nsecrets_key_file = \"secrets.key\"",
    );
    text.push_str(&format!(
        r#"[[connections]]
name = "jwtprov"
enabled_clients = ["{APP}"]
[connections.options]
authorizationURL = "{origin}/authorize"
tokenURL = "{origin}/token"
client_id = "waypass-jwt"
token_endpoint_auth_method = "private_key_jwt"
mapper = "seed"
mapper_egress = {{ allow_private_networks = true }}
"#
    ));
    load_config(dir, "waypass.toml", &text)
}

fn set_keys(dir: &Path, keys: &str) {
    std::fs::write(dir.join("secrets.key"), keys).expect("key file");
}

/// Every file of the data directory but the key, concatenated.
fn data_files(data: &Path) -> Vec<u8> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(data).expect("data dir") {
        let path = entry.expect("entry").path();
        if path.is_file() && path.file_name().is_some_and(|n| n != "secrets.key") {
            all.extend(std::fs::read(&path).expect("read"));
        }
    }
    all
}

/// Logs `ada` in at `issuer` through connection `devprov` and redeems the
/// code: the user's id.
async fn log_in(issuer: &str, origin: &str) -> String {
    let url = authorize_url(issuer, "openid");
    let mut browser = Browser::default();
    let callback = browser.to_callback(origin, &url).await;
    let (_, done, _) = browser.get(&callback).await;
    let tokens = redeem(
        issuer,
        APP,
        APP_SECRET,
        APP_CALLBACK,
        &done.expect("to the app"),
    )
    .await;
    assert!(tokens["id_token"].is_string(), "{tokens}");
    let (status, users) = admin_api(issuer, Method::GET, "users", None).await;
    assert_eq!(status, 200, "{users}");
    users[0]["user_id"].as_str().expect("a user").to_owned()
}

/// The user's `devprov` identity as `token` sees it.
async fn identity(issuer: &str, user_id: &str, token: &str) -> Value {
    let path = format!(
        "users/{}",
        url::form_urlencoded::byte_serialize(user_id.as_bytes()).collect::<String>()
    );
    let (status, user) = api_call(issuer, Method::GET, &path, Some(token), None).await;
    assert_eq!(status, 200, "{user}");
    user["identities"][0].clone()
}

/// Asserts that `later` is the identity `earlier` was, read `elapsed`
/// after it: the same fields, and `expires_in` (counted down by the
/// second, from the stored expiry) lower by no more than the seconds
/// that passed, so a read straddling a second's edge does not fail.
fn assert_same_identity(later: &Value, earlier: &Value, elapsed: Duration, what: &str) {
    let seconds = |identity: &Value| {
        identity["expires_in"]
            .as_u64()
            .unwrap_or_else(|| panic!("{what}: a countdown in {identity}"))
    };
    let (then, now) = (seconds(earlier), seconds(later));
    assert!(
        now <= then && then - now <= elapsed.as_secs() + 1,
        "{what}: expires_in {now} read {elapsed:?} after {then}"
    );
    let without_countdown = |identity: &Value| {
        let mut fields = identity.as_object().expect("an object").clone();
        fields.remove("expires_in");
        fields
    };
    assert_eq!(
        without_countdown(later),
        without_countdown(earlier),
        "{what}"
    );
}

fn action_with_secret() -> StoredAction {
    StoredAction {
        id: "act_secret".into(),
        name: "with-a-secret".into(),
        supported_triggers: vec!["post-login".into()],
        runtime: "wasm".into(),
        secrets: vec![StoredActionSecret {
            name: "API_KEY".into(),
            value: ACTION_SECRET.into(),
        }],
        egress: StoredMapperEgress::default(),
        timeout_ms: None,
        draft_sha256: None,
        created_at: 1,
        updated_at: 1,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_is_in_the_database_file_and_idp_tokens_need_their_scope_and_survive_a_key_rotation()
 {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let issuer = format!("http://{addr}");
    let provider = provider_for(&issuer, PROVIDER_SECRET).await;
    let origin = provider.origin().to_owned();
    set_keys(dir.path(), SECRETS_KEY);
    let config = config(dir.path(), &issuer, &origin);

    let first = Served::start(&config, listener).await;
    first
        .broker
        .connection_jwks("jwtprov")
        .await
        .expect("the private_key_jwt keys are made")
        .expect("published");
    let user_id = log_in(&first.issuer, &origin).await;

    // The provider's tokens: for the admin (every scope) and a client
    // holding read:user_idp_tokens; not for one holding read:users alone.
    let with_scope = identity(&issuer, &user_id, ADMIN_TOKEN).await;
    let read_at = Instant::now();
    let access = with_scope["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("the provider's access token: {with_scope}"))
        .to_owned();
    let refresh = with_scope["refresh_token"]
        .as_str()
        .unwrap_or_else(|| panic!("the provider's refresh token: {with_scope}"))
        .to_owned();
    assert!(
        with_scope["expires_in"].as_u64().is_some_and(|s| s > 0),
        "{with_scope}"
    );
    let reader = management_token(&issuer, &["read:users", "read:user_idp_tokens"]).await;
    assert_same_identity(
        &identity(&issuer, &user_id, &reader).await,
        &with_scope,
        read_at.elapsed(),
        "the reader scope sees the provider's tokens",
    );
    let plain = management_token(&issuer, &["read:users"]).await;
    let without = identity(&issuer, &user_id, &plain).await;
    assert_eq!(without["connection"], "devprov", "{without}");
    for field in ["access_token", "refresh_token", "expires_in"] {
        assert!(
            without.get(field).is_none(),
            "{field} shown without the scope: {without}"
        );
    }
    let (_, listed) = api_call(&issuer, Method::GET, "users", Some(&plain), None).await;
    assert!(
        listed[0]["identities"][0].get("access_token").is_none(),
        "{listed}"
    );
    let (_, listed) = api_call(&issuer, Method::GET, "users", Some(&reader), None).await;
    assert_eq!(listed[0]["identities"][0]["access_token"], access.as_str());
    first.stop().await;

    // An Action with a secret, written as the API would.
    {
        use waypass::store::Store as _;
        let store = waypass::broker::open_sealed_store(&config)
            .await
            .expect("opens");
        store
            .put_action(&action_with_secret(), None)
            .await
            .expect("put");
    }

    let needles = [
        PROVIDER_SECRET,
        ACTION_SECRET,
        PRIVATE_KEY_FIELD,
        access.as_str(),
        refresh.as_str(),
    ];
    let bytes = data_files(&data);
    assert!(
        !found_in(&bytes, &[&user_id["oauth2|".len()..]]).is_empty(),
        "the search finds what is stored in the clear (the user)"
    );
    assert_eq!(
        found_in(&bytes, &needles),
        Vec::<&str>::new(),
        "in the clear"
    );

    // The wrong key: refused at start-up, naming the key the store needs.
    set_keys(dir.path(), OTHER_SECRETS_KEY);
    let err = Broker::from_config(&config)
        .await
        .err()
        .expect("the wrong key is refused");
    let message = format!("{err:#}");
    let needed = Keyring::parse(SECRETS_KEY).expect("key");
    assert!(
        message.contains(needed.active_key_id()) && message.contains("not configured"),
        "{message}"
    );

    // Rotation: the new key first, the old one after it; then the new
    // key alone serves everything.
    set_keys(dir.path(), &format!("{OTHER_SECRETS_KEY}\n{SECRETS_KEY}\n"));
    let done = waypass::broker::open_sealed_store(&config)
        .await
        .expect("opens with both keys")
        .rotate()
        .await
        .expect("rotates");
    assert_eq!(
        (
            done.connections,
            done.actions,
            done.signing_keys,
            done.connection_keys,
            done.idp_tokens
        ),
        (1, 1, 1, 1, 1),
        "{done:?}"
    );
    set_keys(dir.path(), OTHER_SECRETS_KEY);
    let listener = tokio::net::TcpListener::bind(addr).await.expect("rebind");
    let second = Served::start(&config, listener).await;
    assert_same_identity(
        &identity(&issuer, &user_id, ADMIN_TOKEN).await,
        &with_scope,
        read_at.elapsed(),
        "the provider's tokens read back under the new key",
    );
    let again = log_in(&second.issuer, &origin).await;
    assert_eq!(again, user_id, "and a login (the client secret) works");
    second.stop().await;
    assert_eq!(
        found_in(&data_files(&data), &needles[..3]),
        Vec::<&str>::new(),
        "still nothing in the clear"
    );
}
