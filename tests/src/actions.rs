//! The post-login Actions tests' common steps, through the management API
//! as an operator takes them: create an Action, upload its component,
//! deploy, bind; then a login of the development provider's default user
//! and the claims its code redeems for.

use std::path::Path;

use openidconnect::reqwest::Method;
use serde_json::{Value, json};
use waypass::dev_provider::default_user;

use crate::login::{
    ADMIN_TOKEN, APP, APP_CALLBACK, APP_SECRET, Browser, CONNECTION, Landing, TestBed, admin_api,
    http_client, jwt_claims, redeem,
};

/// The default user's id at the broker.
pub fn user_id() -> String {
    format!("oauth2|{CONNECTION}|{}", default_user().uuid)
}

/// The default user's email domain.
pub fn user_domain() -> String {
    default_user()
        .email
        .split_once('@')
        .map(|(_, d)| d.to_owned())
        .expect("an email with a domain")
}

/// Creates a post-login Action named `name` (Auth0's create body, with
/// `fields` added: `code` and `runtime`, `secrets`, Waypass's `egress` and
/// `timeout_ms`); returns its id.
pub async fn create(tb: &TestBed, name: &str, fields: Value) -> String {
    let mut body = json!({
        "name": name,
        "supported_triggers": [{"id": "post-login", "version": "v3"}],
    });
    if let (Some(body), Some(fields)) = (body.as_object_mut(), fields.as_object()) {
        body.extend(fields.clone());
    }
    let (status, created) =
        admin_api(&tb.issuer, Method::POST, "actions/actions", Some(body)).await;
    assert_eq!(status, 201, "{created}");
    created["id"].as_str().expect("an id").to_owned()
}

/// Puts `bytes` as the Action's draft component; the answer's status and
/// body.
pub async fn put_component(tb: &TestBed, id: &str, bytes: Vec<u8>) -> (u16, String) {
    let resp = http_client()
        .put(format!(
            "{}/api/v2/actions/actions/{id}/component",
            tb.issuer
        ))
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", "application/wasm")
        .body(bytes)
        .send()
        .await
        .expect("upload");
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap_or_default())
}

/// Uploads the component at `wasm` as the Action's draft.
pub async fn upload(tb: &TestBed, id: &str, wasm: impl AsRef<Path>) {
    let wasm = wasm.as_ref();
    let bytes = std::fs::read(wasm)
        .unwrap_or_else(|e| panic!("read the component {}: {e}", wasm.display()));
    let (status, body) = put_component(tb, id, bytes).await;
    assert_eq!(status, 200, "{body}");
}

/// Deploys the Action's draft as its new version.
pub async fn deploy(tb: &TestBed, id: &str) {
    let (status, version) = admin_api(
        &tb.issuer,
        Method::POST,
        &format!("actions/actions/{id}/deploy"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{version}");
}

/// Binds `ids` to the post-login trigger, in this order.
pub async fn bind(tb: &TestBed, ids: &[&str]) {
    let bindings: Vec<Value> = ids
        .iter()
        .map(|id| json!({"ref": {"type": "action_id", "value": id}}))
        .collect();
    let (status, body) = admin_api(
        &tb.issuer,
        Method::PATCH,
        "actions/triggers/post-login/bindings",
        Some(json!({"bindings": bindings})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

/// A login of the default user at the confidential app, with `extra`
/// parameters at `/authorize`, to the app.
pub async fn login_with(tb: &TestBed, extra: &[(&str, &str)]) -> Landing {
    let mut params = vec![("scope", "openid email"), ("connection", CONNECTION)];
    params.extend_from_slice(extra);
    let url = tb.authorize_url(APP, APP_CALLBACK, &params);
    Browser::default().login(tb, &url, false).await
}

/// A login of the default user at the confidential app, to the app.
pub async fn login(tb: &TestBed) -> Landing {
    login_with(tb, &[]).await
}

/// The claims of the id_token a login's code redeems for (read, not
/// verified: the tests with an OpenID Connect client verify).
pub async fn id_token_claims(tb: &TestBed, landing: &Landing) -> Value {
    let to_app = landing.location.as_ref().expect("a redirect to the app");
    let tokens = redeem(&tb.issuer, APP, APP_SECRET, APP_CALLBACK, to_app.as_str()).await;
    let id_token = tokens["id_token"].as_str().expect("an id_token");
    jwt_claims(id_token)
}
