//! The few pages the broker shows a person: choose a connection, or an error.

use std::sync::Arc;

use super::oauth::OAuthError;
use crate::model::{Client, Connection};

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

/// The login page: one button per connection enabled for the app.
pub fn choose_connection(client: &Client, connections: &[Arc<Connection>], query: &str) -> String {
    let mut body = format!("<h1>Log in to {}</h1>", escape(&client.name));
    if connections.is_empty() {
        body.push_str("<p class=\"err\">No login method is enabled for this app.</p>");
    }
    for conn in connections {
        let href = format!(
            "/authorize?{query}&connection={}",
            url::form_urlencoded::byte_serialize(conn.name().as_bytes()).collect::<String>()
        );
        let icon = conn
            .spec
            .options
            .icon_url
            .as_deref()
            .map(|u| format!("<img src=\"{}\" alt=\"\">", escape(u)))
            .unwrap_or_default();
        body.push_str(&format!(
            "<a class=\"btn\" href=\"{}\">{icon}<span>Continue with {}</span></a>",
            escape(&href),
            escape(conn.display_name())
        ));
    }
    page("Log in", &body)
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
