//! The login page: "choose a connection", branded (issue #16 §4).
//!
//! The page is a Universal Login page template — the operator's
//! (`/api/v2/branding/templates/universal-login`) or Waypass's own
//! [`DEFAULT_TEMPLATE`] — with `auth0:head` replaced by Waypass's head
//! (`templates/login/head.html`: charset, viewport, favicon, the style
//! sheet with the branding colours and font) and `auth0:widget` by the
//! widget (`templates/login/widget.html`: logo, the app's name, one plain
//! link per connection). It works without script: every connection is a
//! link to `/authorize` with the request repeated and `connection` added.
//!
//! The operator's template is trusted as text but served under
//! [`LOGIN_PAGE_CSP`]: no script runs at all (no `script-src`, so
//! `default-src 'none'` applies), whatever the template holds, and no
//! `<base>` can redirect the widget's links.

use std::sync::{Arc, LazyLock};

use askama::Template;

use crate::html::escape;
use crate::model::branding::{Branding, Color, PageBackground, PageTemplate, Part, Variable};
use crate::model::{Client, Connection};

/// The login page's Content-Security-Policy. No `script-src`: scripts
/// fall back to `default-src 'none'`, so neither an inline script nor one
/// from any host runs (CSP Level 3 §6.1.1). Styles inline only (the head's
/// and the template's); images (logo, icons, favicon) and the font from
/// https (or http, for loopback in tests: the branding API refuses http
/// elsewhere); `base-uri 'none'` keeps the links where the widget points
/// them; `form-action 'none'`: the page has no form, so a template's form
/// cannot post what a person types anywhere.
pub const LOGIN_PAGE_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; \
     img-src https: http: data:; font-src https: http:; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

/// The page without an operator's template: Auth0's simplest template,
/// with a title.
pub const DEFAULT_TEMPLATE: &str = "<!DOCTYPE html><html lang=\"{{locale}}\"><head>\
     {%- auth0:head -%}<title>{{ prompt.screen.texts.pageTitle }}</title></head>\
     <body class=\"_widget-auto-layout\">{%- auth0:widget -%}</body></html>";

/// [`DEFAULT_TEMPLATE`], parsed once.
static DEFAULT: LazyLock<Option<PageTemplate>> =
    LazyLock::new(|| PageTemplate::parse(DEFAULT_TEMPLATE).ok());

/// The primary colour unless branded: Auth0's default.
const DEFAULT_PRIMARY: &str = "#635dff";
/// The page background unless branded.
const DEFAULT_PAGE_BACKGROUND: &str = "#f3f4f6";
/// The fonts used unless (and after) a branded one.
const SYSTEM_FONTS: &str = "system-ui,-apple-system,\"Segoe UI\",Roboto,sans-serif";

/// Why the page could not be rendered (a bug, never the input).
#[derive(Debug, thiserror::Error)]
pub enum LoginPageError {
    #[error("rendering the login page: {0}")]
    Render(#[from] askama::Error),
    #[error("the built-in login page template does not parse")]
    DefaultTemplate,
}

#[derive(Template)]
#[template(path = "login/head.html")]
struct Head<'a> {
    favicon: Option<&'a str>,
    /// Custom properties and `@font-face`, built by [`brand_css`] from
    /// checked values only.
    brand_css: String,
}

#[derive(Template)]
#[template(path = "login/widget.html")]
struct Widget<'a> {
    logo: Option<&'a str>,
    app_name: &'a str,
    connections: Vec<ConnectionLink<'a>>,
}

/// One connection's button.
struct ConnectionLink<'a> {
    /// Already escaped, by [`escape`] (written with `|safe`): the page's
    /// links read as every other page of the host writes them (`&amp;`),
    /// which tests and tools that follow them decode.
    href: String,
    icon: Option<&'a str>,
    /// Shown instead of an icon: the name's first letter.
    initial: String,
    name: &'a str,
}

/// The login page for `client`, listing `connections`; `query` is the
/// `/authorize` request to repeat with `connection` added.
pub fn render(
    branding: &Branding,
    client: &Client,
    connections: &[Arc<Connection>],
    query: &str,
) -> Result<String, LoginPageError> {
    let settings = &branding.settings;
    let head = Head {
        favicon: settings.favicon_url.as_ref().map(|u| u.as_str()),
        brand_css: brand_css(branding),
    }
    .render()?;
    let widget = Widget {
        logo: settings.logo_url.as_ref().map(|u| u.as_str()),
        app_name: &client.name,
        connections: connections
            .iter()
            .map(|conn| ConnectionLink {
                href: escape(&format!(
                    "/authorize?{query}&connection={}",
                    url::form_urlencoded::byte_serialize(conn.name().as_bytes())
                        .collect::<String>()
                )),
                icon: conn.spec.options.icon_url.as_deref(),
                initial: conn
                    .display_name()
                    .chars()
                    .next()
                    .map(|c| c.to_uppercase().collect())
                    .unwrap_or_default(),
                name: conn.display_name(),
            })
            .collect(),
    }
    .render()?;
    let template = match &branding.template {
        Some(t) => t,
        None => DEFAULT.as_ref().ok_or(LoginPageError::DefaultTemplate)?,
    };
    let mut page = String::with_capacity(template.source().len() + head.len() + widget.len());
    for part in template.parts() {
        match part {
            Part::Text(text) => page.push_str(text),
            Part::Head => page.push_str(&head),
            Part::Widget => page.push_str(&widget),
            Part::Variable(v) => page.push_str(&escape(&variable(*v, branding, client))),
        }
    }
    Ok(page)
}

/// A Liquid variable's value (unescaped).
fn variable(v: Variable, branding: &Branding, client: &Client) -> String {
    match v {
        Variable::ApplicationName => client.name.clone(),
        Variable::ApplicationId => client.client_id.clone(),
        Variable::LogoUrl => branding
            .settings
            .logo_url
            .as_ref()
            .map(|u| u.as_str().to_owned())
            .unwrap_or_default(),
        Variable::PrimaryColor => branding
            .settings
            .primary()
            .map(|c| c.as_str().to_owned())
            .unwrap_or_default(),
        Variable::Locale => "en".into(),
        Variable::PageTitle => format!("Log in to {}", client.name),
    }
}

/// The branding as CSS custom properties (and the font's `@font-face`).
/// Colours are [`Color`]s (`#` and hex digits only) and the font's URL is
/// written as a CSS string with everything but URL-safe characters
/// escaped, so nothing stored can end a declaration or the style sheet.
fn brand_css(branding: &Branding) -> String {
    let settings = &branding.settings;
    let primary = settings.primary();
    let on_primary = if primary.is_some_and(Color::is_light) {
        "#1e212a"
    } else {
        "#fff"
    };
    let background = match settings.page_background() {
        Some(PageBackground::Color(c)) => c.as_str().to_owned(),
        Some(PageBackground::Gradient(g)) => {
            format!("linear-gradient({}deg,{},{})", g.angle_deg, g.start, g.end)
        }
        None => DEFAULT_PAGE_BACKGROUND.to_owned(),
    };
    let (font_face, font) = match &settings.font {
        Some(f) => (
            format!(
                "@font-face{{font-family:wp-brand;src:url({});font-display:swap}}",
                css_string(f.url.as_str())
            ),
            format!("wp-brand,{SYSTEM_FONTS}"),
        ),
        None => (String::new(), SYSTEM_FONTS.to_owned()),
    };
    format!(
        "{font_face}:root{{--wp-primary:{};--wp-on-primary:{on_primary};\
         --wp-page-bg:{background};--wp-font:{font}}}",
        primary.map_or(DEFAULT_PRIMARY, Color::as_str)
    )
}

/// `text` as a double-quoted CSS string (CSS Syntax Level 3 §4.3.5):
/// every character but letters, digits and `:/.-_~?=&%#+,;@` becomes an
/// escape (`\HEX `), so quotes, backslashes, `<` and newlines cannot
/// leave the string or the `<style>` element.
fn css_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        if c.is_ascii_alphanumeric() || ":/.-_~?=&%#+,;@".contains(c) {
            out.push(c);
        } else {
            out.push_str(&format!("\\{:x} ", u32::from(c)));
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_template_parses() {
        assert!(DEFAULT.is_some());
    }

    #[test]
    fn a_css_string_cannot_be_left_by_its_content() {
        assert_eq!(
            css_string("https://a.test/f.woff2?x=1"),
            "\"https://a.test/f.woff2?x=1\""
        );
        assert_eq!(
            css_string("a\"b\\c</style>\n"),
            "\"a\\22 b\\5c c\\3c /style\\3e \\a \""
        );
    }

    #[test]
    fn the_text_on_the_primary_colour_is_dark_on_light_colours() {
        let css = |primary: &str| {
            let b = Branding {
                settings: serde_json::from_value(
                    serde_json::json!({"colors": {"primary": primary}}),
                )
                .expect("settings"),
                ..Branding::default()
            };
            brand_css(&b)
        };
        assert!(css("#ffeb3b").contains("--wp-on-primary:#1e212a"));
        assert!(css("#0059d6").contains("--wp-on-primary:#fff"));
        assert!(css("#0059d6").contains("--wp-primary:#0059d6"));
    }
}
