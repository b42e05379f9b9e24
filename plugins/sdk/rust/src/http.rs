//! Outbound HTTP through the host, under the connection's egress policy.
//!
//! [`get_json`] covers the common case (a userinfo endpoint); [`Request`] and
//! [`send`] give full control. Redirects are never followed by the host.

use crate::Error;
use serde_json::Value;

/// Why the host did not answer a request.
pub use crate::bindings::waypass::mapper::http::Error as HttpError;
/// Header fields as name/value pairs, in order; names may repeat.
pub use crate::bindings::waypass::mapper::http::Headers;
/// Request methods a mapper may use.
pub use crate::bindings::waypass::mapper::http::Method;
/// One outbound request; build one with [`Request::get`] or [`Request::new`].
pub use crate::bindings::waypass::mapper::http::Request;
/// The provider's whole answer.
pub use crate::bindings::waypass::mapper::http::Response;

/// How many bytes of a response body error messages quote.
pub const SNIPPET_LIMIT: usize = 512;

/// Sends `req` through the host and waits for the whole response.
pub fn send(req: &Request) -> Result<Response, HttpError> {
    crate::bindings::waypass::mapper::http::send(req)
}

/// Sends `req` and returns its body as JSON; see [`Response::json`] for how
/// statuses and bodies map to errors, and [`HttpError`]'s conversion for the
/// host's errors.
pub fn send_json(req: &Request) -> Result<Value, Error> {
    send(req)?.json()
}

/// GETs `url` with `Authorization: Bearer <bearer_token>` and
/// `Accept: application/json` and returns the body as JSON.
///
/// 401 and 403 give [`Error::Unauthorized`] with the body, any other non-2xx
/// status `Error::Provider("<status>: <body>")`, a body that is not JSON
/// [`Error::Provider`], and a host error [`Error::Other`] (`"http timeout"`,
/// `"http denied: <reason>"`, ...). Quoted bodies are cut to
/// [`SNIPPET_LIMIT`] bytes.
pub fn get_json(url: &str, bearer_token: &str) -> Result<Value, Error> {
    send_json(
        &Request::get(url)
            .bearer(bearer_token)
            .header("Accept", "application/json"),
    )
}

/// `bytes` as text (invalid UTF-8 replaced), cut to at most
/// [`SNIPPET_LIMIT`] bytes on a character boundary, with `…` appended when cut.
pub fn snippet(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    if text.len() <= SNIPPET_LIMIT {
        return text.into_owned();
    }
    let mut end = SNIPPET_LIMIT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

impl Request {
    /// A request with `method` for `url`, no headers and no body.
    pub fn new(method: Method, url: impl Into<String>) -> Self {
        Self {
            method,
            url: url.into(),
            headers: Vec::new(),
            body: None,
        }
    }

    /// A GET request for `url`.
    pub fn get(url: impl Into<String>) -> Self {
        Self::new(Method::Get, url)
    }

    /// Adds the header `name: value`.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Adds `Authorization: Bearer <token>`.
    pub fn bearer(self, token: &str) -> Self {
        self.header("Authorization", format!("Bearer {token}"))
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = Some(body.into());
        self
    }

    /// Sends the request; same as [`send`].
    pub fn send(&self) -> Result<Response, HttpError> {
        send(self)
    }
}

impl Response {
    /// The first value of the header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body as text, invalid UTF-8 replaced.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as text cut for an error message; see [`snippet`].
    pub fn snippet(&self) -> String {
        snippet(&self.body)
    }

    /// The body as JSON, if the status is 2xx: 401 and 403 give
    /// [`Error::Unauthorized`] with the body, other statuses
    /// `Error::Provider("<status>: <body>")`, a body that is not JSON
    /// [`Error::Provider`].
    pub fn json(&self) -> Result<Value, Error> {
        match self.status {
            401 | 403 => return Err(Error::Unauthorized(self.snippet())),
            _ if !self.is_success() => {
                return Err(Error::Provider(format!(
                    "{}: {}",
                    self.status,
                    self.snippet()
                )));
            }
            _ => {}
        }
        serde_json::from_slice(&self.body)
            .map_err(|e| Error::Provider(format!("response is not JSON ({e}): {}", self.snippet())))
    }
}

impl HttpError {
    /// The error's kind in kebab case, as in the WIT (`denied`, `timeout`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Denied(_) => "denied",
            Self::Timeout => "timeout",
            Self::TooLarge => "too-large",
            Self::InvalidRequest(_) => "invalid-request",
            Self::Transport(_) => "transport",
            Self::BudgetExhausted => "budget-exhausted",
        }
    }

    /// The kind followed by `: <detail>` when the error carries one, e.g.
    /// `denied: host not allowed` or `timeout`.
    pub fn describe(&self) -> String {
        match self {
            Self::Denied(d) | Self::InvalidRequest(d) | Self::Transport(d) => {
                format!("{}: {d}", self.kind())
            }
            Self::Timeout | Self::TooLarge | Self::BudgetExhausted => self.kind().to_owned(),
        }
    }
}

/// A host error becomes `Error::Other("http <kind>[: <detail>]")`, e.g.
/// `http denied: <reason>` or `http timeout`.
impl From<HttpError> for Error {
    fn from(e: HttpError) -> Self {
        Error::Other(format!("http {}", e.describe()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16, body: &str) -> Response {
        Response {
            status,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: body.into(),
        }
    }

    #[test]
    fn snippet_cuts_on_a_char_boundary() {
        let text = "é".repeat(400); // 800 bytes
        let cut = snippet(text.as_bytes());
        assert_eq!(cut, format!("{}…", "é".repeat(256)));
        assert_eq!(snippet(b"short"), "short");
    }

    #[test]
    fn json_maps_statuses() {
        assert_eq!(
            response(200, r#"{"a":1}"#).json(),
            Ok(serde_json::json!({"a": 1}))
        );
        assert_eq!(
            response(401, "bad token").json(),
            Err(Error::Unauthorized("bad token".into()))
        );
        assert_eq!(
            response(403, "nope").json(),
            Err(Error::Unauthorized("nope".into()))
        );
        assert_eq!(
            response(500, "boom").json(),
            Err(Error::Provider("500: boom".into()))
        );
        assert!(
            matches!(response(200, "<html>").json(), Err(Error::Provider(m)) if m.ends_with(": <html>"))
        );
        assert_eq!(
            response(200, "").header("content-type"),
            Some("application/json")
        );
    }

    #[test]
    fn host_errors_name_their_kind() {
        assert_eq!(
            Error::from(HttpError::Denied("host not allowed".into())),
            Error::Other("http denied: host not allowed".into())
        );
        assert_eq!(
            Error::from(HttpError::Timeout),
            Error::Other("http timeout".into())
        );
        assert_eq!(HttpError::BudgetExhausted.describe(), "budget-exhausted");
        assert_eq!(
            HttpError::Transport("reset".into()).describe(),
            "transport: reset"
        );
    }

    #[test]
    fn request_builder() {
        let req = Request::get("https://x.test/u").bearer("t");
        assert_eq!(req.method, Method::Get);
        assert_eq!(
            req.headers,
            vec![("Authorization".into(), "Bearer t".into())]
        );
        assert_eq!(req.body, None);
    }
}
