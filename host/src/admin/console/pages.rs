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

/// A connection using a mapper.
pub(crate) struct MapperUse {
    pub id: String,
    pub display: String,
    /// The version it is pinned to (`name@N`), or `None`: the active one.
    pub pinned: Option<u32>,
}

/// One row of the mappers list.
pub(crate) struct MapperRow {
    pub name: String,
    /// The name as a path segment.
    pub href: String,
    pub active_version: u32,
    pub used_by: Vec<MapperUse>,
}

#[derive(Template)]
#[template(path = "console/mappers.html")]
pub(crate) struct Mappers {
    pub l: Layout,
    pub rows: Vec<MapperRow>,
    /// The upload form's name, as typed.
    pub mapper_name: String,
    pub errors: FieldErrors,
}

/// One stored version of a mapper.
pub(crate) struct VersionRow {
    pub version: u32,
    pub sha256: String,
    /// In KiB or MiB.
    pub size: String,
    pub bytes: u64,
    /// `YYYY-MM-DD HH:MM:SS`, UTC.
    pub created_at: String,
    /// Who uploaded it: the admin token, a management client, a console user.
    pub created_by: String,
    pub active: bool,
}

#[derive(Template)]
#[template(path = "console/mapper.html")]
pub(crate) struct MapperPage {
    pub l: Layout,
    pub name: String,
    pub href: String,
    pub active_version: Option<u32>,
    /// Newest first.
    pub versions: Vec<VersionRow>,
    pub used_by: Vec<MapperUse>,
    pub errors: FieldErrors,
}

/// One row of the users list.
pub(crate) struct UserRow {
    pub user_id: String,
    /// The id as a path segment.
    pub href: String,
    pub email: String,
    pub name: String,
    pub connection: String,
    pub last_login: String,
    pub logins_count: u64,
}

#[derive(Template)]
#[template(path = "console/users.html")]
pub(crate) struct Users {
    pub l: Layout,
    /// The search, as typed.
    pub email: String,
    /// The search, encoded for the paging links.
    pub email_query: String,
    /// Whether a user was just deleted.
    pub deleted: bool,
    pub rows: Vec<UserRow>,
    pub total: u64,
    pub newer: Option<usize>,
    pub older: Option<usize>,
    pub error: Option<String>,
}

/// One of a user's identities (never its provider tokens).
pub(crate) struct IdentityRow {
    pub provider: String,
    pub connection: String,
    pub user_id: String,
    pub is_social: bool,
}

/// One log event, as a table row (never its `details`).
pub(crate) struct LogRow {
    pub log_id: String,
    /// `YYYY-MM-DD HH:MM:SS`, UTC.
    pub date: String,
    pub event_type: String,
    pub type_label: String,
    /// Not a failure (`f…`) type.
    pub success: bool,
    pub description: Option<String>,
    pub connection: Option<String>,
    /// The app's name, or its client id.
    pub client: Option<String>,
    pub user_id: Option<String>,
    pub user_href: Option<String>,
    pub ip: Option<String>,
}

#[derive(Template)]
#[template(path = "console/user.html")]
pub(crate) struct UserPage {
    pub l: Layout,
    pub user_id: String,
    pub href: String,
    pub title: String,
    /// Shown only from https (the pages' policy allows no other).
    pub picture: Option<String>,
    pub email: String,
    pub connection: String,
    pub created_at: String,
    pub last_login: String,
    pub logins_count: u64,
    pub identities: Vec<IdentityRow>,
    pub events: Vec<LogRow>,
    pub events_error: Option<String>,
    /// A delete the API refused.
    pub error: Option<String>,
}

#[derive(Template)]
#[template(path = "console/user_delete.html")]
pub(crate) struct UserDelete {
    pub l: Layout,
    pub user_id: String,
    pub href: String,
    pub title: String,
    pub identities: usize,
}

#[derive(Template)]
#[template(path = "console/logs.html")]
pub(crate) struct Logs {
    pub l: Layout,
    /// Code and label of each type the filter offers.
    pub types: Vec<(&'static str, &'static str)>,
    /// The type filtered by, or empty.
    pub chosen: String,
    /// The type, encoded for the paging links.
    pub type_query: String,
    pub rows: Vec<LogRow>,
    pub total: u64,
    /// The first and last event shown, counted from 1 (0 when none).
    pub first: usize,
    pub last: usize,
    pub newer: Option<usize>,
    pub older: Option<usize>,
    pub error: Option<String>,
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
