//! `waypass quickstart`, in-process: a person's clicks through the demo app.

use std::net::SocketAddr;

use waypass::quickstart::{Options, Quickstart};
use waypass_tests::guests;
use waypass_tests::login::Browser;

/// The first `href` in `html` containing `needle`, unescaped.
fn href(html: &str, needle: &str) -> String {
    html.split("href=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .find(|h| h.contains(needle))
        .unwrap_or_else(|| panic!("no link with {needle} in {html}"))
        .replace("&amp;", "&")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_person_logs_in_to_the_demo_app_and_sees_the_profile_and_id_token_claims() {
    let data = tempfile::tempdir().expect("tempdir");
    let qs = Quickstart::start(Options {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        data_dir: data.path().to_path_buf(),
        mapper: guests::AUTH0_EXAMPLE.into(),
    })
    .await
    .expect("quickstart starts");
    let mut browser = Browser::default();

    let (status, _, home) = browser.get(&format!("{}/", qs.app_url)).await;
    assert_eq!(status, 200);
    let login = href(&home, "/authorize?");
    // No connection chosen: the broker's login page lists the connection.
    let (status, _, chooser) = browser.get(&login).await;
    assert_eq!(status, 200, "{chooser}");
    let choice = format!(
        "{}{}",
        qs.issuer,
        href(&chooser, "connection=example-oauth2")
    );
    let landing = browser
        .login_at(&qs.issuer, qs.provider.origin(), &choice, false)
        .await;
    let back = landing.location.expect("back to the demo app");
    assert!(back.as_str().starts_with(&qs.app_url), "{back}");

    let (status, _, page) = browser.get(back.as_str()).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Hello, <b>ada@example.com</b>"), "{page}");
    assert!(
        page.contains("id_token claims") && page.contains("oauth2|example-oauth2|"),
        "{page}"
    );
    assert!(
        data.path().join("waypass.db").is_file(),
        "state persisted in the data directory"
    );
}
