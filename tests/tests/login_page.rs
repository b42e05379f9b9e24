//! The login page and its branding (issue #16 §4): Auth0's branding API
//! and Universal Login template, the page they shape, its
//! Content-Security-Policy, and the page in a real browser (headless
//! Chromium, `tests/browser/login_page.cjs`) at a phone's and a desktop's
//! width.
//!
//! Screenshots of the page (phone and desktop) are written by
//!
//! ```sh
//! WAYPASS_SCREENSHOTS=docs/login-page cargo test -p waypass-tests --test login_page
//! ```
//!
//! (a path relative to the repository's root).

use openidconnect::reqwest;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use waypass::broker::login_page::LOGIN_PAGE_CSP;
use waypass::model::branding::TEMPLATE_TAGS_MESSAGE;
use waypass_tests::chromium::{browser_dir, repo_root, run_script};
use waypass_tests::login::{
    ADMIN_TOKEN, APP, APP_CALLBACK, TestBed, admin_api, api_call, client_credentials, http_client,
};

const TEMPLATE_PATH: &str = "branding/templates/universal-login";

/// A template as an operator writes one: their header and footer around
/// the widget, a script (which must never run: it would rename the
/// page), and a `<base>` (which must not move the widget's links).
const HOSTILE_TEMPLATE: &str = "<!DOCTYPE html><html lang=\"{{locale}}\"><head>\
    {%- auth0:head -%}<title>{{ prompt.screen.texts.pageTitle }}</title>\
    <base href=\"https://evil.test/\">\
    <style>.acme-header{text-align:center;color:#fff;padding:16px;font-weight:600}\
    .acme-footer{text-align:center;color:#fff;padding:16px;font-size:14px}</style></head>\
    <body class=\"_widget-auto-layout\" style=\"flex-direction:column\">\
    <header class=\"acme-header\">Acme Corp</header>\
    <script>document.title = 'script ran';</script>\
    <script src=\"https://evil.test/steal.js\"></script>\
    {%- auth0:widget -%}\
    <footer class=\"acme-footer\">Need help? support@acme.test</footer></body></html>";

async fn put_template(tb: &TestBed, template: &str) -> (u16, Value) {
    admin_api(
        &tb.issuer,
        reqwest::Method::PUT,
        TEMPLATE_PATH,
        Some(json!({ "template": template })),
    )
    .await
}

async fn patch_branding(tb: &TestBed, body: Value) -> (u16, Value) {
    admin_api(&tb.issuer, reqwest::Method::PATCH, "branding", Some(body)).await
}

/// The login page (no `connection`): status, its CSP header, body.
async fn login_page(tb: &TestBed) -> (u16, String, String) {
    let url = tb.authorize_url(APP, APP_CALLBACK, &[("state", "s1")]);
    let resp = http_client().get(url).send().await.expect("page");
    let status = resp.status().as_u16();
    let csp = resp
        .headers()
        .get_all("content-security-policy")
        .iter()
        .map(|v| v.to_str().unwrap_or_default().to_owned())
        .collect::<Vec<_>>()
        .join(" | ");
    (status, csp, resp.text().await.expect("body"))
}

// ---- the branding API ----

#[tokio::test(flavor = "multi_thread")]
async fn branding_settings_round_trip_in_auth0s_shape_and_a_patch_merges_into_them() {
    let tb = TestBed::start(|_, _| {}).await;
    let (status, empty) = admin_api(&tb.issuer, reqwest::Method::GET, "branding", None).await;
    assert_eq!((status, &empty), (200, &json!({})));

    let settings = json!({
        "colors": {"primary": "#0059d6", "page_background": "#000000"},
        "logo_url": "https://cdn.acme.test/logo.png",
        "favicon_url": "https://cdn.acme.test/favicon.ico",
        "font": {"url": "https://cdn.acme.test/font.woff2"}
    });
    let (status, patched) = patch_branding(&tb, settings.clone()).await;
    assert_eq!((status, &patched), (200, &settings));
    let (_, read) = admin_api(&tb.issuer, reqwest::Method::GET, "branding", None).await;
    assert_eq!(read, settings);

    // A gradient background; `null` removes the logo; the rest stays.
    let gradient =
        json!({"type": "linear-gradient", "start": "#ffffff", "end": "#0059d6", "angle_deg": 35});
    let (status, patched) = patch_branding(
        &tb,
        json!({"colors": {"page_background": gradient}, "logo_url": null}),
    )
    .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["colors"]["page_background"], gradient);
    assert_eq!(patched["colors"]["primary"], "#0059d6");
    assert_eq!(patched.get("logo_url"), None);
    assert_eq!(patched["favicon_url"], "https://cdn.acme.test/favicon.ico");
}

#[tokio::test(flavor = "multi_thread")]
async fn colours_that_are_not_hex_and_urls_that_are_not_https_are_refused_and_nothing_changes() {
    let tb = TestBed::start(|_, _| {}).await;
    let (status, _) = patch_branding(&tb, json!({"colors": {"primary": "#123456"}})).await;
    assert_eq!(status, 200);
    for bad in [
        json!({"colors": {"primary": "red"}}),
        json!({"colors": {"primary": "#fff;}body{display:none"}}),
        json!({"colors": {"page_background": "url(https://x.test/a.png)"}}),
        json!({"colors": {"page_background": {"type": "linear-gradient", "start": "#fff", "end": "#000", "angle_deg": 720}}}),
        json!({"logo_url": "http://cdn.acme.test/logo.png"}),
        json!({"logo_url": "javascript:alert(1)"}),
        json!({"favicon_url": "data:image/png;base64,AAAA"}),
        json!({"font": {"url": "ftp://cdn.acme.test/font.woff2"}}),
        json!({"unknown_setting": true}),
        json!(["not", "an", "object"]),
    ] {
        let (status, body) = patch_branding(&tb, bad.clone()).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["statusCode"], 400, "{body}");
        assert_eq!(body["error"], "Bad Request", "{body}");
        assert_eq!(body["errorCode"], "invalid_body", "{body}");
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let (_, read) = admin_api(&tb.issuer, reqwest::Method::GET, "branding", None).await;
    assert_eq!(read, json!({"colors": {"primary": "#123456"}}));
}

#[tokio::test(flavor = "multi_thread")]
async fn branding_needs_auth0s_branding_scopes() {
    let tb = TestBed::start(|_, _| {}).await;
    let (status, created) = admin_api(
        &tb.issuer,
        reqwest::Method::POST,
        "clients",
        Some(
            json!({"name": "designer", "app_type": "non_interactive", "scopes": ["read:branding"]}),
        ),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let token = &client_credentials(
        &tb.issuer,
        created["client_id"].as_str().expect("id"),
        created["client_secret"].as_str().expect("secret"),
        &[("audience", &format!("{}/api/v2/", tb.issuer))],
    )
    .await;
    let (status, _) = api_call(
        &tb.issuer,
        reqwest::Method::GET,
        "branding",
        Some(token),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (status, body) = api_call(
        &tb.issuer,
        reqwest::Method::PATCH,
        "branding",
        Some(token),
        Some(json!({"colors": {"primary": "#000"}})),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("update:branding"))
    );
    let (status, _) = api_call(
        &tb.issuer,
        reqwest::Method::DELETE,
        TEMPLATE_PATH,
        Some(token),
        None,
    )
    .await;
    assert_eq!(status, 403, "deleting needs delete:branding");
}

// ---- the Universal Login template ----

#[tokio::test(flavor = "multi_thread")]
async fn a_template_without_auth0s_head_and_widget_tags_is_refused_with_auth0s_message() {
    let tb = TestBed::start(|_, _| {}).await;
    for bad in [
        "<html><body>{%- auth0:widget -%}</body></html>",
        "<html><head>{%- auth0:head -%}</head><body>no widget</body></html>",
        "<html><head>{%- auth0:head -%}{%- auth0:head -%}</head><body>{%- auth0:widget -%}</body></html>",
    ] {
        let (status, body) = put_template(&tb, bad).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["message"], TEMPLATE_TAGS_MESSAGE, "{body}");
    }
    let (status, body) = put_template(
        &tb,
        "{%- auth0:head -%}{% if application.name %}x{% endif %}{%- auth0:widget -%}",
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("{% if application.name %}")),
        "the message names what is not supported: {body}"
    );
    let (status, body) = admin_api(&tb.issuer, reqwest::Method::GET, TEMPLATE_PATH, None).await;
    assert_eq!(status, 404, "nothing was stored: {body}");
    assert_eq!(body["message"], "Template does not exist.");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_template_is_put_as_json_or_html_read_back_as_auth0s_body_and_deleted() {
    let tb = TestBed::start(|_, _| {}).await;
    let first = "<html><head>{%- auth0:head -%}</head><body>{%- auth0:widget -%}</body></html>";
    let (status, _) = put_template(&tb, first).await;
    assert_eq!(status, 201, "created");
    let (status, read) = admin_api(&tb.issuer, reqwest::Method::GET, TEMPLATE_PATH, None).await;
    assert_eq!((status, read), (200, json!({ "body": first })));

    // As the page itself (text/html), and as a bare JSON string (what
    // Auth0's SDKs send for a string).
    let second =
        "<html><head>{% auth0:head %}</head><body><p>Acme</p>{% auth0:widget %}</body></html>";
    let resp = http_client()
        .put(format!("{}/api/v2/{TEMPLATE_PATH}", tb.issuer))
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", "text/html")
        .body(second)
        .send()
        .await
        .expect("put");
    assert_eq!(resp.status().as_u16(), 200, "replaced");
    let (_, read) = admin_api(&tb.issuer, reqwest::Method::GET, TEMPLATE_PATH, None).await;
    assert_eq!(read["body"], second);
    let (_, _, page) = login_page(&tb).await;
    assert!(
        page.contains("<p>Acme</p><main class=\"wp-widget\""),
        "{page}"
    );

    let (status, _) = admin_api(
        &tb.issuer,
        reqwest::Method::PUT,
        TEMPLATE_PATH,
        Some(json!(first)),
    )
    .await;
    assert_eq!(status, 200);
    let (_, read) = admin_api(&tb.issuer, reqwest::Method::GET, TEMPLATE_PATH, None).await;
    assert_eq!(read["body"], first);

    let (status, _) = admin_api(&tb.issuer, reqwest::Method::DELETE, TEMPLATE_PATH, None).await;
    assert_eq!(status, 204);
    let (status, _) = admin_api(&tb.issuer, reqwest::Method::GET, TEMPLATE_PATH, None).await;
    assert_eq!(status, 404);
    let (_, _, page) = login_page(&tb).await;
    assert!(
        page.starts_with("<!DOCTYPE html><html lang=\"en\">") && !page.contains("<p>Acme</p>"),
        "the built-in page is back: {page}"
    );
}

// ---- the page ----

#[tokio::test(flavor = "multi_thread")]
async fn the_login_page_applies_the_branding_colours_logo_favicon_and_font() {
    let tb = TestBed::start(|_, _| {}).await;
    let (status, body) = patch_branding(
        &tb,
        json!({
            "colors": {"primary": "#0059D6", "page_background": {"type": "linear-gradient", "start": "#ffffff", "end": "#dde7f7", "angle_deg": 160}},
            "logo_url": "https://cdn.acme.test/logo.png?size=2&v=\"1\"",
            "favicon_url": "https://cdn.acme.test/favicon.ico",
            "font": {"url": "https://cdn.acme.test/inter.woff2"}
        }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, csp, page) = login_page(&tb).await;
    assert_eq!(status, 200);
    assert_eq!(csp, LOGIN_PAGE_CSP, "one policy, the login page's");
    assert!(page.contains("--wp-primary:#0059d6;"), "{page}");
    assert!(
        page.contains("--wp-page-bg:linear-gradient(160deg,#ffffff,#dde7f7)"),
        "{page}"
    );
    // The URL as the API normalised it (quotes percent-encoded), escaped
    // for its attribute.
    assert!(
        page.contains(
            "<img class=\"wp-logo\" src=\"https://cdn.acme.test/logo.png?size=2&#38;v=%221%22\" alt=\"\">"
        ),
        "{page}"
    );
    assert!(
        page.contains("<link rel=\"icon\" href=\"https://cdn.acme.test/favicon.ico\">"),
        "{page}"
    );
    assert!(
        page.contains(
            "@font-face{font-family:wp-brand;src:url(\"https://cdn.acme.test/inter.woff2\")"
        ),
        "{page}"
    );
    // Without JavaScript: plain links carrying the request, a phone's
    // viewport, and no script at all.
    assert!(
        page.contains("<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">")
    );
    assert!(
        page.contains(
            "<a class=\"wp-button\" href=\"/authorize?response_type=code&amp;client_id=app"
        ),
        "{page}"
    );
    assert!(page.contains("state=s1") && page.contains("connection=devprov"));
    assert!(page.contains("<span>Continue with Development provider</span>"));
    assert!(page.contains("src=\"https://cdn.example.com/devprov.png\""));
    assert!(!page.contains("<script"), "{page}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_template_with_scripts_is_served_under_a_policy_that_runs_no_script() {
    let tb = TestBed::start(|_, _| {}).await;
    let (status, body) = put_template(&tb, HOSTILE_TEMPLATE).await;
    assert_eq!(status, 201, "{body}");
    let (status, csp, page) = login_page(&tb).await;
    assert_eq!(status, 200);
    // The operator's page is served as written, around the widget…
    assert!(page.contains("<script>document.title = 'script ran';</script>"));
    assert!(page.contains("<header class=\"acme-header\">Acme Corp</header>"));
    assert!(page.contains("Continue with Development provider"));
    assert!(page.contains("<title>Log in to app</title>"), "{page}");
    // …under the login page's policy: no script source at all (so
    // default-src 'none' governs scripts), no <base>, no form target.
    assert_eq!(csp, LOGIN_PAGE_CSP);
    let directives: Vec<&str> = csp.split(';').map(str::trim).collect();
    assert!(directives.contains(&"default-src 'none'"), "{csp}");
    assert!(directives.contains(&"base-uri 'none'"), "{csp}");
    assert!(directives.contains(&"form-action 'none'"), "{csp}");
    assert!(
        !directives.iter().any(|d| d.starts_with("script-src")),
        "{csp}"
    );
    assert!(
        !csp.contains("unsafe-eval") && !csp.contains("evil.test"),
        "{csp}"
    );
    // The other pages keep theirs.
    let resp = http_client()
        .get(format!("{}/authorize?client_id=nobody", tb.issuer))
        .send()
        .await
        .expect("error page");
    let error_csp = resp
        .headers()
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(error_csp.starts_with("default-src 'none'"), "{error_csp}");
}

// ---- in a browser ----

/// A loopback server of the images the branding names (the API allows
/// http only to loopback hosts, for this): a logo for any path ending in
/// `logo.svg`, an icon otherwise. Answers until the test ends.
async fn image_server() -> String {
    const LOGO: &str = "<svg xmlns='http://www.w3.org/2000/svg' width='132' height='48' viewBox='0 0 132 48'>\
        <rect x='0' y='4' width='40' height='40' rx='10' fill='#0059d6'/>\
        <path d='M10 34 L20 14 L30 34 Z' fill='#fff'/>\
        <text x='52' y='33' font-family='sans-serif' font-size='26' font-weight='700' fill='#14213d'>Acme</text></svg>";
    const ICON: &str = "<svg xmlns='http://www.w3.org/2000/svg' width='24' height='24' viewBox='0 0 24 24'>\
        <circle cx='12' cy='12' r='11' fill='#24292f'/><circle cx='12' cy='12' r='5' fill='#fff'/></svg>";
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let origin = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let line = String::from_utf8_lossy(&request);
                let path = line.split(' ').nth(1).unwrap_or_default();
                let svg = if path.ends_with("logo.svg") {
                    LOGO
                } else {
                    ICON
                };
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: image/svg+xml\r\ncontent-length: {}\r\n\
                     connection: close\r\n\r\n{svg}",
                    svg.len()
                );
                let _ = socket.write_all(answer.as_bytes()).await;
            });
        }
    });
    origin
}

#[tokio::test(flavor = "multi_thread")]
async fn in_chromium_the_branded_page_fits_a_phone_and_a_desktop_runs_no_template_script_and_reaches_the_provider()
 {
    let Some(dir) = browser_dir() else {
        return;
    };
    let images = image_server().await;
    let tb = TestBed::start(|connections, _| {
        connections[0]["options"]["icon_url"] = json!(format!("{images}/devprov-icon.svg"));
        let provider = connections[0]["options"]["authorizationURL"]
            .as_str()
            .and_then(|u| u.strip_suffix("/authorize"))
            .expect("provider origin")
            .to_owned();
        let mut second = waypass_tests::login::connection_spec("acme-sso", &provider);
        second["display_name"] = json!("Acme Workforce SSO with a rather long display name");
        second["options"]
            .as_object_mut()
            .expect("options")
            .remove("icon_url");
        connections.push(second);
    })
    .await;
    let (status, body) = patch_branding(
        &tb,
        json!({
            "colors": {"primary": "#0059d6", "page_background": {"type": "linear-gradient", "start": "#0b1f44", "end": "#0059d6", "angle_deg": 160}},
            "logo_url": format!("{images}/logo.svg"),
            "favicon_url": format!("{images}/favicon.svg"),
        }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = put_template(&tb, HOSTILE_TEMPLATE).await;
    assert_eq!(status, 201, "{body}");

    let mut env = vec![
        (
            "WAYPASS_LOGIN_URL",
            tb.authorize_url(APP, APP_CALLBACK, &[("state", "browser")]),
        ),
        ("WAYPASS_PROVIDER_ORIGIN", tb.provider.origin().to_owned()),
        ("WAYPASS_EXPECTED_TITLE", "Log in to app".to_owned()),
        // #0059d6 as the computed style writes it.
        ("WAYPASS_PRIMARY_RGB", "rgb(0, 89, 214)".to_owned()),
    ];
    if let Some(shots) = std::env::var_os("WAYPASS_SCREENSHOTS").filter(|v| !v.is_empty()) {
        let shots = repo_root().join(shots);
        std::fs::create_dir_all(&shots).expect("screenshot directory");
        env.push(("WAYPASS_SCREENSHOTS", shots.display().to_string()));
    }
    let run = run_script(&dir, "login_page.cjs", &env).await;
    assert!(
        run.success,
        "the browser script failed:\nstdout: {}\nstderr: {}",
        run.stdout, run.stderr
    );
    let report: Value = serde_json::from_str(run.stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("the script's report is not JSON ({e}): {}", run.stdout));
    for width in ["phone", "desktop"] {
        let seen = &report[width];
        assert_eq!(
            seen["title"], "Log in to app",
            "{width}: the template's script did not run: {seen}"
        );
        assert_eq!(seen["buttons"], 2, "{width}: {seen}");
        assert_eq!(seen["horizontalScroll"], false, "{width}: {seen}");
        assert_eq!(seen["logoLoaded"], true, "{width}: {seen}");
        assert_eq!(seen["reachedProvider"], true, "{width}: {seen}");
    }
}
