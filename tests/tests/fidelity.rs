//! Auth0 fidelity (issue #16): what a tenant leaving Auth0 brings works as
//! it is — the seed's rule on `authorizationURL`.

use openidconnect::reqwest;
use serde_json::json;
use waypass::model::ConnectionRecord;
use waypass::store::Store as _;
use waypass_tests::login::{APP, APP_CALLBACK, Browser, TestBed, admin_api, connection_spec};

// ---- the authorization URL (the seed: only `query` works, never set it) ----

#[tokio::test(flavor = "multi_thread")]
async fn an_authorization_url_with_response_mode_is_refused_by_the_api_with_auth0s_error_body() {
    let tb = TestBed::start(|_, _| {}).await;
    let origin = tb.provider.origin().to_owned();
    let mut spec = connection_spec("moded", &origin);
    spec["options"]["authorizationURL"] =
        json!(format!("{origin}/authorize?response_mode=form_post"));
    let (status, body) =
        admin_api(&tb.issuer, reqwest::Method::POST, "connections", Some(spec)).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["statusCode"], 400, "{body}");
    assert_eq!(body["error"], "Bad Request", "{body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("authorizationURL must not carry `response_mode`")
            && message.contains("only the default response_mode (`query`)"),
        "{body}"
    );

    // A PATCH that adds one (here `state`) is refused the same way, and the
    // stored connection is unchanged.
    let (_, list) = admin_api(&tb.issuer, reqwest::Method::GET, "connections", None).await;
    let id = list
        .as_array()
        .and_then(|l| l.iter().find(|c| c["name"] == "devprov"))
        .and_then(|c| c["id"].as_str())
        .expect("the default connection")
        .to_owned();
    let (status, body) = admin_api(
        &tb.issuer,
        reqwest::Method::PATCH,
        &format!("connections/{id}"),
        Some(json!({"options": {"authorizationURL": format!("{origin}/authorize?state=fixed")}})),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("must not carry `state`")),
        "{body}"
    );
    let (_, got) = admin_api(
        &tb.issuer,
        reqwest::Method::GET,
        &format!("connections/{id}"),
        None,
    )
    .await;
    assert_eq!(got["options"]["authorizationURL"], format!("{origin}/authorize"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stored_connection_with_response_mode_loads_but_its_logins_are_refused_until_patched() {
    let tb = TestBed::start(|_, _| {}).await;
    let origin = tb.provider.origin().to_owned();
    // Written before the rule existed: straight into the store.
    let mut spec = connection_spec("legacy", &origin);
    spec["enabled_clients"] = json!([APP]);
    spec["options"]["authorizationURL"] =
        json!(format!("{origin}/authorize?response_mode=fragment"));
    let record = ConnectionRecord {
        id: "con_legacy".into(),
        spec: serde_json::from_value(spec).expect("spec"),
    };
    tb.store
        .put_connection(&record.to_stored())
        .await
        .expect("stored");
    // The strict load start-up runs does not fail over it.
    tb.broker
        .catalog()
        .load()
        .await
        .expect("one bad row does not stop the catalog loading");

    let url = tb.authorize_url(
        APP,
        APP_CALLBACK,
        &[("scope", "openid"), ("state", "s"), ("connection", "legacy")],
    );
    let (status, location, _) = Browser::default().get(&url).await;
    assert_eq!(status, 302);
    let location = url::Url::parse(&location.expect("back to the app")).expect("a URL");
    let param = |name: &str| {
        location
            .query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    assert_eq!(param("error").as_deref(), Some("server_error"), "{location}");
    let description = param("error_description").unwrap_or_default();
    assert!(
        description.contains("connection `legacy` is misconfigured")
            && description.contains("response_mode"),
        "{description}"
    );

    // Fixing the URL through the API makes it usable again.
    let (status, body) = admin_api(
        &tb.issuer,
        reqwest::Method::PATCH,
        "connections/con_legacy",
        Some(json!({"options": {"authorizationURL": format!("{origin}/authorize")}})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let landing = Browser::default()
        .login(
            &tb,
            &tb.authorize_url(
                APP,
                APP_CALLBACK,
                &[("scope", "openid"), ("connection", "legacy")],
            ),
            false,
        )
        .await;
    assert!(landing.param("code").is_some(), "{landing:?}");
}
