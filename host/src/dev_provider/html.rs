//! The provider's two pages, the login form and the error page. Every value
//! put into them goes through [`escape`].

use std::fmt::Write as _;

/// How the pending request's id appears in the form: [`super::login_request_id`]
/// looks for exactly this.
pub(super) const REQUEST_FIELD_PREFIX: &str = r#"<input type="hidden" name="request" value=""#;

const TITLE: &str = "Waypass development provider";

const STYLE: &str = "\
body{font-family:system-ui,sans-serif;background:#f4f5f7;color:#1d2129;margin:0}\
main{max-width:22rem;margin:4rem auto;background:#fff;padding:2rem;border-radius:.5rem;\
box-shadow:0 1px 4px rgba(0,0,0,.12)}\
h1{font-size:1.15rem;margin:0 0 1rem}\
p{line-height:1.4}\
label{display:block;margin:.75rem 0 .25rem;font-size:.9rem}\
input[type=text],input[type=password]{width:100%;box-sizing:border-box;padding:.5rem;\
border:1px solid #c4c8cf;border-radius:.25rem;font-size:1rem}\
.buttons{display:flex;gap:.5rem;margin-top:1.25rem}\
button{flex:1;padding:.55rem;border:0;border-radius:.25rem;font-size:1rem;cursor:pointer}\
button[value=login]{background:#2f6fde;color:#fff}\
button[value=deny]{background:#e4e6ea;color:#1d2129}\
.error{background:#fdecea;color:#a11c12;padding:.5rem .75rem;border-radius:.25rem}\
.hint{color:#5f6672;font-size:.85rem}\
code{font-family:ui-monospace,monospace}";

use crate::html::escape;

/// What the login form shows.
pub(super) struct LoginForm<'a> {
    pub client_id: &'a str,
    pub scope: &'a str,
    /// The pending request's id, sent back as `request`.
    pub request_id: &'a str,
    pub usernames: Vec<&'a str>,
    /// The username to fill in again after a failed attempt.
    pub username: &'a str,
    pub error: Option<&'a str>,
}

pub(super) fn login_page(form: &LoginForm<'_>) -> String {
    let mut body = String::new();
    // `write!` into a `String` cannot fail.
    let _ = write!(
        body,
        "<p><code>{}</code> asks you to log in",
        escape(form.client_id)
    );
    if !form.scope.is_empty() {
        let _ = write!(body, " (scope <code>{}</code>)", escape(form.scope));
    }
    body.push_str(".</p>");
    if let Some(error) = form.error {
        let _ = write!(
            body,
            r#"<p class="error" role="alert">{}</p>"#,
            escape(error)
        );
    }
    let _ = write!(
        body,
        r#"<form method="post" action="/authorize">{prefix}{request}">
<label for="username">Username</label>
<input type="text" id="username" name="username" value="{username}" autocomplete="username" autofocus>
<label for="password">Password</label>
<input type="password" id="password" name="password" autocomplete="current-password">
<div class="buttons"><button type="submit" name="action" value="login">Log in</button>
<button type="submit" name="action" value="deny">Deny</button></div>
</form>"#,
        prefix = REQUEST_FIELD_PREFIX,
        request = escape(form.request_id),
        username = escape(form.username),
    );
    let usernames: Vec<String> = form
        .usernames
        .iter()
        .map(|u| format!("<code>{}</code>", escape(u)))
        .collect();
    let _ = write!(
        body,
        r#"<p class="hint">Accounts: {}.</p>"#,
        usernames.join(", ")
    );
    page(&body)
}

/// A page saying what went wrong, with no way onwards.
pub(super) fn error_page(message: &str) -> String {
    page(&format!(
        r#"<p class="error" role="alert">{}</p><p class="hint">Start again from the application.</p>"#,
        escape(message)
    ))
}

fn page(body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
<title>{TITLE}</title><style>{STYLE}</style></head>\
<body><main><h1>{TITLE}</h1>\n{body}\n</main></body></html>\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_login_form_carries_the_request_id_where_login_request_id_finds_it() {
        let html = login_page(&LoginForm {
            client_id: "app",
            scope: "openid",
            request_id: "abc-_123",
            usernames: vec!["ada"],
            username: "",
            error: None,
        });
        assert_eq!(super::super::login_request_id(&html), Some("abc-_123"));
        assert!(html.contains("<title>Waypass development provider</title>"));
    }
}
