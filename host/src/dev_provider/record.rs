//! What the provider received, as tests read it; the handlers read requests
//! through the same type.

use bytes::Bytes;
use hyper::http::request::Parts;

/// How many requests are kept (the oldest are forgotten first), so a
/// long-running quickstart does not grow without bound.
pub const MAX_RECORDED: usize = 10_000;

/// One request, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    /// `GET`, `POST`, …
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The query's pairs, decoded, in order (repeats kept).
    pub query: Vec<(String, String)>,
    /// The headers, names in lower case, in order (repeats kept).
    pub headers: Vec<(String, String)>,
    /// The body's pairs if it is `application/x-www-form-urlencoded`, else
    /// empty.
    pub form: Vec<(String, String)>,
    /// The body as received (empty if it was over the size limit).
    pub body: Bytes,
}

impl RecordedRequest {
    pub(super) fn new(parts: &Parts, body: Bytes) -> Self {
        let query = parts
            .uri
            .query()
            .map(|q| pairs(q.as_bytes()))
            .unwrap_or_default();
        let headers = parts
            .headers
            .iter()
            .map(|(name, value)| {
                let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                (name.as_str().to_owned(), value)
            })
            .collect();
        let mut request = Self {
            method: parts.method.as_str().to_owned(),
            path: parts.uri.path().to_owned(),
            query,
            headers,
            form: Vec::new(),
            body,
        };
        if request.is_form() {
            request.form = pairs(&request.body);
        }
        request
    }

    /// The first value of query parameter `name`.
    pub fn query_param(&self, name: &str) -> Option<&str> {
        first(&self.query, name)
    }

    /// The first value of form field `name`.
    pub fn form_param(&self, name: &str) -> Option<&str> {
        first(&self.form, name)
    }

    /// The first value of header `name`, whatever its case.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether the body is declared `application/x-www-form-urlencoded`.
    pub fn is_form(&self) -> bool {
        self.header("content-type").is_some_and(|value| {
            let media_type = value.split(';').next().unwrap_or_default();
            media_type
                .trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
    }
}

fn pairs(encoded: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(encoded)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn first<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// RFC 6749 §3.1, §3.2: "Request and response parameters MUST NOT be
/// included more than once." Returns the first of `names` given twice.
pub(super) fn repeated<'a>(pairs: &[(String, String)], names: &[&'a str]) -> Option<&'a str> {
    names
        .iter()
        .copied()
        .find(|name| pairs.iter().filter(|(n, _)| n == name).count() > 1)
}
