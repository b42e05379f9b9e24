//! OAuth 2.0 errors and parameters: the RFC 6749 vocabulary in one place.

use std::collections::HashMap;
use std::fmt;

use url::Url;

/// Longest `error_description` sent to an app: enough to say what went
/// wrong, short enough for a URL; the whole detail goes to the log.
pub const MAX_ERROR_DESCRIPTION: usize = 200;

/// Error codes of RFC 6749 §4.1.2.1 and §5.2, RFC 6750 §3.1, OpenID
/// Connect Core §3.1.2.6 (`prompt=none`) and RFC 7009 §2.2.1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidRequest,
    UnauthorizedClient,
    AccessDenied,
    UnsupportedResponseType,
    InvalidScope,
    ServerError,
    TemporarilyUnavailable,
    InvalidClient,
    InvalidGrant,
    UnsupportedGrantType,
    InvalidToken,
    /// `prompt=none`, and the person would have to log in.
    LoginRequired,
    /// `prompt=none`, and the person would have to do something else.
    InteractionRequired,
    /// RFC 7009: a token whose kind cannot be revoked (a JWT access token).
    UnsupportedTokenType,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::UnauthorizedClient => "unauthorized_client",
            Self::AccessDenied => "access_denied",
            Self::UnsupportedResponseType => "unsupported_response_type",
            Self::InvalidScope => "invalid_scope",
            Self::ServerError => "server_error",
            Self::TemporarilyUnavailable => "temporarily_unavailable",
            Self::InvalidClient => "invalid_client",
            Self::InvalidGrant => "invalid_grant",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::InvalidToken => "invalid_token",
            Self::LoginRequired => "login_required",
            Self::InteractionRequired => "interaction_required",
            Self::UnsupportedTokenType => "unsupported_token_type",
        }
    }

    /// The HTTP status for this error at the token and userinfo endpoints
    /// (RFC 6749 §5.2, RFC 6750 §3.1).
    pub fn status(self) -> u16 {
        match self {
            Self::InvalidClient | Self::InvalidToken => 401,
            Self::ServerError => 500,
            Self::TemporarilyUnavailable => 503,
            _ => 400,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An OAuth error with a human description (bounded when built).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {description}")]
pub struct OAuthError {
    pub code: ErrorCode,
    pub description: String,
}

impl OAuthError {
    pub fn new(code: ErrorCode, description: impl Into<String>) -> Self {
        Self {
            code,
            description: bounded_description(&description.into()),
        }
    }

    /// The JSON body of RFC 6749 §5.2.
    pub fn to_json(&self) -> String {
        serde_json::json!({"error": self.code.as_str(), "error_description": self.description})
            .to_string()
    }
}

/// `description` cut to [`MAX_ERROR_DESCRIPTION`] characters, limited to the
/// characters RFC 6749 §5.2 allows (printable ASCII but `"` and `\`).
pub fn bounded_description(description: &str) -> String {
    let mut out: String = description
        .chars()
        .map(|c| match c {
            '"' | '\\' => '\'',
            c if (' '..='~').contains(&c) => c,
            _ => ' ',
        })
        .take(MAX_ERROR_DESCRIPTION + 1)
        .collect();
    if out.chars().count() > MAX_ERROR_DESCRIPTION {
        out = out
            .chars()
            .take(MAX_ERROR_DESCRIPTION - 3)
            .collect::<String>()
            + "...";
    }
    out
}

/// Request parameters, refusing the repeats RFC 6749 §3.1 forbids.
#[derive(Debug, Default, Clone)]
pub struct Params {
    map: HashMap<String, String>,
    order: Vec<String>,
}

impl Params {
    /// Parses `application/x-www-form-urlencoded` (a query or a form body).
    pub fn parse(encoded: &str) -> Result<Self, OAuthError> {
        let mut params = Self::default();
        for (k, v) in url::form_urlencoded::parse(encoded.as_bytes()) {
            if params.map.contains_key(k.as_ref()) {
                return Err(OAuthError::new(
                    ErrorCode::InvalidRequest,
                    format!("parameter `{k}` is repeated"),
                ));
            }
            params.order.push(k.to_string());
            params.map.insert(k.into_owned(), v.into_owned());
        }
        Ok(params)
    }

    /// The value, with an empty value treated as absent (RFC 6749 §3.1).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.map
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    pub fn require(&self, name: &str) -> Result<&str, OAuthError> {
        self.get(name).ok_or_else(|| {
            OAuthError::new(ErrorCode::InvalidRequest, format!("`{name}` is required"))
        })
    }

    /// Parameters in the order received.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.order
            .iter()
            .filter_map(|k| self.map.get(k).map(|v| (k.as_str(), v.as_str())))
    }
}

/// The error to send the app when the provider answered our login request
/// with `error` (RFC 6749 §4.1.2.1).
///
/// The provider's refusals about the person (`access_denied`) or its own
/// state (`server_error`, `temporarily_unavailable`) are the app's news too,
/// and pass through with the provider's description. The rest of RFC 6749's
/// codes (`invalid_request`, `unauthorized_client`, `invalid_scope`,
/// `unsupported_response_type`) are about Waypass's own client at the
/// provider, i.e. the connection's configuration: the app did nothing wrong
/// and cannot fix it, so it gets `server_error` naming the provider's code,
/// and the provider's description stays in our log. Codes outside RFC 6749
/// (OpenID Connect's `login_required`, …) say the login did not happen, as
/// before: `access_denied`.
pub fn provider_refusal(error: &str, description: Option<&str>) -> OAuthError {
    let passed_on = |code| {
        OAuthError::new(
            code,
            description.unwrap_or("the provider refused the login"),
        )
    };
    match error {
        "access_denied" => passed_on(ErrorCode::AccessDenied),
        "server_error" => passed_on(ErrorCode::ServerError),
        "temporarily_unavailable" => passed_on(ErrorCode::TemporarilyUnavailable),
        "invalid_request"
        | "unauthorized_client"
        | "invalid_scope"
        | "unsupported_response_type" => OAuthError::new(
            ErrorCode::ServerError,
            format!(
                "the provider refused the login request with `{error}`: the connection is misconfigured"
            ),
        ),
        _ => passed_on(ErrorCode::AccessDenied),
    }
}

/// The credentials of an Authorization header using `scheme`, which is
/// compared case-insensitively (RFC 9110 §11.1: `bearer x` is `Bearer x`);
/// `None` for another scheme or no credentials.
fn credentials<'a>(header: &'a str, scheme: &str) -> Option<&'a str> {
    let (name, rest) = header.trim().split_once(' ')?;
    let rest = rest.trim();
    (name.eq_ignore_ascii_case(scheme) && !rest.is_empty()).then_some(rest)
}

/// The token of a `Bearer` Authorization header (RFC 6750 §2.1).
pub(crate) fn bearer_token(header: &str) -> Option<&str> {
    credentials(header, "Bearer")
}

/// The base64 credentials of a `Basic` Authorization header (RFC 7617).
pub(crate) fn basic_credentials(header: &str) -> Option<&str> {
    credentials(header, "Basic")
}

/// `base` with `pairs` appended to its query (existing parameters kept).
pub fn with_query(base: &Url, pairs: &[(&str, &str)]) -> String {
    let mut url = base.clone();
    {
        let mut query = url.query_pairs_mut();
        for (k, v) in pairs {
            query.append_pair(k, v);
        }
    }
    url.to_string()
}

/// The app's redirect carrying an error (RFC 6749 §4.1.2.1).
pub fn error_redirect(redirect_uri: &Url, error: &OAuthError, state: Option<&str>) -> String {
    AppResponse::error(redirect_uri, ResponseMode::Query, error, state).location()
}

/// How the authorization response reaches the app.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ResponseMode {
    /// In the redirect's query (RFC 6749 §4.1.2): the default for `code`.
    #[default]
    Query,
    /// In a form the browser posts to the redirect URI (OAuth 2.0 Form
    /// Post Response Mode §2): the code never sits in a URL, a history
    /// entry or a `Referer`.
    FormPost,
}

impl ResponseMode {
    /// The mode `response_mode` asks for (OAuth 2.0 Multiple Response Type
    /// Encoding Practices §2.1); `fragment` is for implicit flows, which
    /// Waypass does not serve.
    pub fn parse(value: Option<&str>) -> Result<Self, OAuthError> {
        match value {
            None | Some("query") => Ok(Self::Query),
            Some("form_post") => Ok(Self::FormPost),
            Some(other) => Err(OAuthError::new(
                ErrorCode::InvalidRequest,
                format!("response_mode `{other}` is not supported; use query or form_post"),
            )),
        }
    }

    /// The stored form: whether the answer is posted.
    pub fn from_form_post(form_post: bool) -> Self {
        if form_post {
            Self::FormPost
        } else {
            Self::Query
        }
    }
}

/// An authorization response (a code or an error) on its way to the app:
/// its redirect URI, the parameters, and how they travel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppResponse {
    pub redirect_uri: Url,
    pub params: Vec<(String, String)>,
    pub mode: ResponseMode,
}

impl AppResponse {
    /// A code, with the app's `state` (RFC 6749 §4.1.2).
    pub fn code(redirect_uri: &Url, mode: ResponseMode, code: &str, state: Option<&str>) -> Self {
        let mut params = vec![("code".to_owned(), code.to_owned())];
        if let Some(state) = state {
            params.push(("state".to_owned(), state.to_owned()));
        }
        Self {
            redirect_uri: redirect_uri.clone(),
            params,
            mode,
        }
    }

    /// An error, with the app's `state` (RFC 6749 §4.1.2.1).
    pub fn error(
        redirect_uri: &Url,
        mode: ResponseMode,
        error: &OAuthError,
        state: Option<&str>,
    ) -> Self {
        let mut params = vec![
            ("error".to_owned(), error.code.as_str().to_owned()),
            ("error_description".to_owned(), error.description.clone()),
        ];
        if let Some(state) = state {
            params.push(("state".to_owned(), state.to_owned()));
        }
        Self {
            redirect_uri: redirect_uri.clone(),
            params,
            mode,
        }
    }

    /// The redirect URI with the parameters in its query.
    pub fn location(&self) -> String {
        let pairs: Vec<(&str, &str)> = self
            .params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        with_query(&self.redirect_uri, &pairs)
    }

    /// The value of parameter `name`.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_parameters_are_an_invalid_request() {
        let err = Params::parse("a=1&b=2&a=3").unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidRequest);
    }

    #[test]
    fn empty_parameters_count_as_absent() {
        let p = Params::parse("state=&scope=openid").expect("parses");
        assert_eq!(p.get("state"), None);
        assert_eq!(p.get("scope"), Some("openid"));
    }

    #[test]
    fn descriptions_are_bounded_and_stripped_to_allowed_characters() {
        let d = bounded_description(&format!("bad \"thing\"\n{}", "x".repeat(500)));
        assert!(d.chars().count() <= MAX_ERROR_DESCRIPTION);
        assert!(!d.contains('"') && !d.contains('\n'));
        assert!(d.ends_with("..."));
    }

    #[test]
    fn auth_schemes_are_case_insensitive_and_need_credentials() {
        for header in ["Bearer abc", "bearer abc", "BEARER  abc ", " Bearer abc"] {
            assert_eq!(bearer_token(header), Some("abc"), "{header:?}");
        }
        for header in ["Bearer", "Bearer ", "Basic abc", "Bearerabc", ""] {
            assert_eq!(bearer_token(header), None, "{header:?}");
        }
        assert_eq!(basic_credentials("basic YTpi"), Some("YTpi"));
        assert_eq!(basic_credentials("Bearer YTpi"), None);
    }

    #[test]
    fn provider_errors_about_our_own_client_are_server_errors_for_the_app() {
        for code in [
            "invalid_request",
            "unauthorized_client",
            "invalid_scope",
            "unsupported_response_type",
        ] {
            let e = provider_refusal(code, Some("redirect_uri mismatch for client 123"));
            assert_eq!(e.code, ErrorCode::ServerError, "{code}");
            assert!(e.description.contains(code), "{}", e.description);
            assert!(!e.description.contains("client 123"), "{}", e.description);
        }
        for (code, expected) in [
            ("access_denied", ErrorCode::AccessDenied),
            ("server_error", ErrorCode::ServerError),
            ("temporarily_unavailable", ErrorCode::TemporarilyUnavailable),
            ("login_required", ErrorCode::AccessDenied),
        ] {
            let e = provider_refusal(code, Some("the user said no"));
            assert_eq!(
                (e.code, e.description.as_str()),
                (expected, "the user said no")
            );
        }
        let e = provider_refusal("access_denied", None);
        assert_eq!(e.description, "the provider refused the login");
    }

    #[test]
    fn error_redirects_keep_the_apps_query_and_add_state() {
        let base = Url::parse("https://app.example.com/cb?x=1").expect("url");
        let e = OAuthError::new(ErrorCode::AccessDenied, "no");
        assert_eq!(
            error_redirect(&base, &e, Some("s 1")),
            "https://app.example.com/cb?x=1&error=access_denied&error_description=no&state=s+1"
        );
    }
}
