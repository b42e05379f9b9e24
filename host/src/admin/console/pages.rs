//! The console's pages: askama templates (`host/templates/console/`,
//! checked at compile time, HTML-escaped) and the data each one shows.

use std::collections::BTreeMap;

use askama::Template;

use super::Failure;

/// What every signed-in page's frame shows.
pub(crate) struct Layout {
    /// Who is signed in.
    pub who: String,
    /// The session's form token, in every form.
    pub csrf: String,
    /// The navigation entry to mark as current.
    pub nav: &'static str,
    /// The stylesheet's hashed path.
    pub css: &'static str,
}

/// Errors by form field, and one for the whole form.
#[derive(Debug, Default)]
pub(crate) struct FieldErrors {
    pub fields: BTreeMap<&'static str, String>,
    pub general: Option<String>,
}

impl FieldErrors {
    pub(super) fn general(f: Failure) -> Self {
        Self {
            fields: BTreeMap::new(),
            general: Some(f.message),
        }
    }

    /// The error of `field`, if any.
    pub fn get(&self, field: &str) -> Option<&str> {
        self.fields.get(field).map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty() && self.general.is_none()
    }
}

#[derive(Template)]
#[template(path = "console/login.html")]
pub(crate) struct Login {
    pub css: &'static str,
    pub csrf: String,
    /// Whether "Sign in with Waypass" is offered.
    pub oidc: bool,
    pub error: Option<String>,
}

#[derive(Template)]
#[template(path = "console/error.html")]
pub(crate) struct ErrorPage<'a> {
    pub css: &'static str,
    pub title: &'a str,
    pub message: &'a str,
}

pub(crate) fn render_error(title: &str, message: &str) -> Result<String, askama::Error> {
    ErrorPage {
        css: super::css_path(),
        title,
        message,
    }
    .render()
}

/// One row of the connections list.
pub(crate) struct ConnectionRow {
    pub id: String,
    pub name: String,
    pub display: String,
    pub icon: Option<String>,
    pub strategy: String,
    pub profile: String,
    pub apps: usize,
}

#[derive(Template)]
#[template(path = "console/connections.html")]
pub(crate) struct Connections {
    pub l: Layout,
    pub rows: Vec<ConnectionRow>,
    pub error: Option<String>,
}

/// The connection form's fields, as typed or as stored (never the secret).
#[derive(Debug, Default, Clone)]
pub(crate) struct ConnectionForm {
    pub name: String,
    pub display_name: String,
    pub icon_url: String,
    pub authorization_url: String,
    pub token_url: String,
    pub scope: String,
    pub client_id: String,
    /// `script` or `mapper`.
    pub profile: String,
    pub mapper: String,
    pub script: String,
    /// The egress allow-list, one host per line.
    pub allowed_hosts: String,
    pub allow_private_networks: bool,
}

#[derive(Template)]
#[template(path = "console/connection_new.html")]
pub(crate) struct NewConnection {
    pub l: Layout,
    pub form: ConnectionForm,
    pub mappers: Vec<String>,
    pub errors: FieldErrors,
}

/// One app on a connection's Applications tab.
pub(crate) struct AppToggle {
    pub client_id: String,
    pub name: String,
    pub enabled: bool,
}

/// One request a tried mapper made.
#[derive(Debug, Default)]
pub(crate) struct TriedRequest {
    pub line: String,
    pub outcome: String,
    pub elapsed_ms: u64,
}

/// What the Try panel shows.
#[derive(Debug, Default)]
pub(crate) struct TryResult {
    pub user_id: Option<String>,
    /// The profile, as indented JSON.
    pub profile: Option<String>,
    pub error: Option<String>,
    /// Level and message.
    pub logs: Vec<(String, String)>,
    pub requests: Vec<TriedRequest>,
    pub elapsed_ms: String,
}

#[derive(Template)]
#[template(path = "console/connection.html")]
pub(crate) struct ConnectionPage {
    pub l: Layout,
    pub id: String,
    pub title: String,
    pub strategy: String,
    /// Profiles from the provider's id_token (no script, no mapper).
    pub claims: bool,
    pub form: ConnectionForm,
    pub mappers: Vec<String>,
    pub errors: FieldErrors,
    pub apps: Vec<AppToggle>,
    pub tried: Option<TryResult>,
}

/// One row of the apps list.
pub(crate) struct AppRow {
    pub client_id: String,
    pub name: String,
    pub app_type: String,
    pub callbacks: usize,
}

/// The app form's fields.
#[derive(Debug, Default, Clone)]
pub(crate) struct AppForm {
    pub name: String,
    pub app_type: String,
    /// One per line.
    pub callbacks: String,
}

#[derive(Template)]
#[template(path = "console/apps.html")]
pub(crate) struct Apps {
    pub l: Layout,
    pub rows: Vec<AppRow>,
    pub form: AppForm,
    pub app_types: Vec<(&'static str, &'static str)>,
    pub errors: FieldErrors,
}

#[derive(Template)]
#[template(path = "console/app.html")]
pub(crate) struct AppPage {
    pub l: Layout,
    pub client_id: String,
    pub confidential: bool,
    pub form: AppForm,
    /// The secret, right after it was made: shown this once.
    pub secret: Option<String>,
    pub errors: FieldErrors,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> Layout {
        Layout {
            who: "admin token".into(),
            csrf: "tok".into(),
            nav: "connections",
            css: "/admin/assets/console.x.css",
        }
    }

    #[test]
    fn names_are_html_escaped_in_the_list() {
        let page = Connections {
            l: layout(),
            rows: vec![ConnectionRow {
                id: "con_1".into(),
                name: "acme".into(),
                display: "<script>alert(1)</script>".into(),
                icon: None,
                strategy: "oauth2".into(),
                profile: "script".into(),
                apps: 0,
            }],
            error: None,
        };
        let html = page.render().expect("renders");
        assert!(!html.contains("<script>alert"), "{html}");
        assert!(html.contains("&#60;script&#62;") || html.contains("&lt;script&gt;"));
    }

    #[test]
    fn a_field_error_is_shown_next_to_its_field_and_described_by_it() {
        let mut errors = FieldErrors::default();
        errors
            .fields
            .insert("tokenURL", "tokenURL must be https".into());
        let page = NewConnection {
            l: layout(),
            form: ConnectionForm::default(),
            mappers: Vec::new(),
            errors,
        };
        let html = page.render().expect("renders");
        assert!(html.contains("id=\"tokenURL-error\""), "{html}");
        assert!(
            html.contains("aria-describedby=\"tokenURL-error\""),
            "{html}"
        );
        assert!(html.contains("name=\"csrf\" value=\"tok\""), "{html}");
    }
}
