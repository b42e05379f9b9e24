//! The few pages the broker shows a person: an error, a form post, a logout
//! (choosing a connection is `login_page`).

use std::sync::LazyLock;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest as _, Sha256};
use url::Url;

use super::oauth::{AppResponse, OAuthError};

/// The one script the form-post page runs: it submits the form. Allowed by
/// its hash in the page's Content-Security-Policy (CSP Level 3 §8.4), so
/// no other script can run; without script the page's button does the
/// same.
pub const FORM_POST_SCRIPT: &str = "document.forms[0].submit();";

/// `'sha256-…'` of [`FORM_POST_SCRIPT`], computed once.
static FORM_POST_SCRIPT_HASH: LazyLock<String> = LazyLock::new(|| {
    format!(
        "'sha256-{}'",
        STANDARD.encode(Sha256::digest(FORM_POST_SCRIPT.as_bytes()))
    )
});

pub use crate::html::escape;

const STYLE: &str = "body{font-family:system-ui,sans-serif;background:#f4f5f7;margin:0}\
main{max-width:24rem;margin:4rem auto;background:#fff;border-radius:8px;padding:2rem;box-shadow:0 1px 4px #0002}\
h1{font-size:1.25rem;margin-top:0}a.btn{display:flex;align-items:center;gap:.75rem;padding:.75rem 1rem;\
margin:.5rem 0;border:1px solid #ccd;border-radius:6px;color:#123;text-decoration:none}\
a.btn:hover{background:#eef}a.btn img{width:24px;height:24px}.err{color:#a00}code{word-break:break-all}";

fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{}</title><style>{STYLE}</style></head><body><main>{body}</main></body></html>",
        escape(title)
    )
}

/// An error shown instead of redirecting (the app could not be trusted).
pub fn error(e: &OAuthError) -> String {
    page(
        "Login error",
        &format!(
            "<h1>This login cannot continue</h1><p class=\"err\">{}</p><p><code>error={}</code></p>",
            escape(&e.description),
            escape(e.code.as_str())
        ),
    )
}

/// The page that posts an authorization response to the app (OAuth 2.0
/// Form Post Response Mode §2): a form of hidden fields, submitted by
/// [`FORM_POST_SCRIPT`], or by its button where script does not run.
pub fn form_post(answer: &AppResponse) -> String {
    let fields: String = answer
        .params
        .iter()
        .map(|(name, value)| {
            format!(
                "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
                escape(name),
                escape(value)
            )
        })
        .collect();
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>Continue</title><style>{STYLE}</style></head><body><main>\
         <form method=\"post\" action=\"{}\">{fields}\
         <p>Returning to the app…</p><button type=\"submit\">Continue</button></form>\
         </main><script>{FORM_POST_SCRIPT}</script></body></html>",
        escape(answer.redirect_uri.as_str())
    )
}

/// The form-post page's Content-Security-Policy: nothing but its own
/// script (by hash) and style, and the form may post only to the app's
/// redirect URI's origin.
pub fn form_post_csp(redirect_uri: &Url) -> String {
    let origin = redirect_uri.origin();
    let target = if origin.is_tuple() {
        origin.ascii_serialization()
    } else {
        // A custom scheme (a native app): its scheme is all CSP can name.
        format!("{}:", redirect_uri.scheme())
    };
    format!(
        "default-src 'none'; script-src {}; style-src 'unsafe-inline'; form-action {target}; \
         frame-ancestors 'none'",
        *FORM_POST_SCRIPT_HASH
    )
}

/// After a logout with nowhere to return to.
pub fn logged_out() -> String {
    page(
        "Logged out",
        "<h1>You are logged out</h1><p>You can close this window.</p>",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::oauth::ResponseMode;

    #[test]
    fn the_form_post_page_escapes_what_it_posts_and_its_policy_allows_only_its_script() {
        let redirect = Url::parse("https://app.test/cb?x=1").expect("url");
        let answer = AppResponse::code(
            &redirect,
            ResponseMode::FormPost,
            "c0de",
            Some("\"><script>alert(1)</script>"),
        );
        let page = form_post(&answer);
        assert!(
            page.contains(r#"action="https://app.test/cb?x=1""#),
            "{page}"
        );
        assert!(page.contains(r#"name="code" value="c0de""#), "{page}");
        assert!(
            !page.contains("<script>alert"),
            "the state is escaped: {page}"
        );
        assert_eq!(page.matches("<script>").count(), 1, "one script: {page}");
        let csp = form_post_csp(&redirect);
        let hash = STANDARD.encode(Sha256::digest(FORM_POST_SCRIPT.as_bytes()));
        assert!(
            csp.contains(&format!("script-src 'sha256-{hash}'")),
            "{csp}"
        );
        assert!(csp.contains("form-action https://app.test;"), "{csp}");
        assert!(csp.starts_with("default-src 'none'"), "{csp}");
    }
}
