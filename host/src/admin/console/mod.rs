//! The console at `/admin`: connections, apps, mappers, users and logs
//! managed in a browser, rendered by the server (askama templates under
//! `host/templates/console/`, one stylesheet, no script).
//!
//! Every change the console makes is a management API call made
//! in-process: [`Broker::api`] with the signed-in person as its
//! [`Caller`], so the API's functions, validation and scope checks are the
//! console's, and its writes are logged as the API's are. Nothing here
//! re-implements a management rule.
//!
//! Sign-in ([`auth`]): the bootstrap admin token (compared in constant
//! time, failures counted against the address's API limit), or Waypass
//! itself as an OpenID Connect app with PKCE for users with the console
//! role (`[console] admins` in the configuration, or `"console_admin":
//! true` in their `app_metadata` through the API). The session is kept in
//! the store's session table (every instance sees it); its cookie is
//! `HttpOnly`, `SameSite=Strict`, `__Host-` on https. Every form carries a
//! synchronizer token derived from the session's secret and checked in
//! constant time before anything runs.

mod apps;
mod auth;
mod connections;
mod logs;
mod mappers;
mod pages;
mod users;

use std::net::IpAddr;
use std::sync::OnceLock;

use bytes::Bytes;
use http::{HeaderValue, Method, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::{ApiRequest, Caller};
use crate::broker::Broker;

pub use auth::{CONSOLE_LOGIN_COOKIE, CONSOLE_SESSION_COOKIE, CONSOLE_SESSION_TTL};

/// Where the console is served.
pub const PREFIX: &str = "/admin";

/// Largest form body accepted: a `fetchUserProfile` script may be as large
/// as the API's JSON body, and percent-encoding triples it at worst.
pub const MAX_FORM_BYTES: usize = 3 * super::MAX_JSON_BYTES;

/// Largest upload form (`multipart/form-data`, RFC 7578) accepted: a
/// component as large as the API takes ([`super::MAX_MAPPER_BYTES`]),
/// plus the form's few short fields and the parts' framing.
pub const MAX_UPLOAD_BYTES: usize = super::MAX_MAPPER_BYTES + UPLOAD_FRAMING_BYTES;

/// Room in an upload for everything but the file: the form token, the
/// mapper's name, and each part's boundary and headers (a few hundred
/// bytes in practice).
const UPLOAD_FRAMING_BYTES: usize = 64 << 10;

/// The console's one stylesheet, served under a name carrying its hash so
/// browsers may keep it for a year.
const CSS: &str = include_str!("../../../assets/console.css");

/// A year: how long a hashed asset may be cached (its name changes with it).
const ASSET_MAX_AGE: &str = "public, max-age=31536000, immutable";

/// The console pages' policy: nothing but this origin's stylesheet and
/// forms, provider icons from anywhere over https, no script at all, never
/// framed.
const CSP: &str = "default-src 'self'; script-src 'none'; img-src 'self' https: data:; \
                   style-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The `[console]` section of the configuration file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleConfig {
    /// The app the console signs people in through: a public app (PKCE)
    /// with `<issuer>/admin/callback` among its callbacks. Without it only
    /// the admin token signs in.
    #[serde(default)]
    pub client_id: Option<String>,
    /// User ids (`oauth2|connection|id`) given the console role.
    #[serde(default)]
    pub admins: Vec<String>,
}

type Body = Full<Bytes>;

/// The stylesheet's path, `/admin/assets/console.<hash>.css`.
pub fn css_path() -> &'static str {
    static PATH: OnceLock<String> = OnceLock::new();
    PATH.get_or_init(|| {
        let hash = crate::secret::SecretHash::of(CSS).to_hex();
        format!("{PREFIX}/assets/console.{}.css", &hash[..16])
    })
}

/// Serves one request under `/admin` from the TCP peer `from`.
pub async fn handle(
    broker: &Broker,
    parts: &http::request::Parts,
    body: Incoming,
    from: IpAddr,
) -> Response<Body> {
    let path = parts.uri.path();
    let rest = path.strip_prefix(PREFIX).unwrap_or(path);
    if parts.method == Method::GET && path == css_path() {
        let mut resp = response(StatusCode::OK, "text/css; charset=utf-8", CSS);
        set_header(&mut resp, header::CACHE_CONTROL, ASSET_MAX_AGE);
        return resp;
    }
    let query = parts.uri.query().unwrap_or("");
    // An upload (a mapper's component, up to the API's limit) is read only
    // once the session is known: no one signed out makes the server hold
    // tens of MiB. Other forms are small and read at once.
    let upload_boundary = (parts.method == Method::POST)
        .then(|| multipart_boundary(&parts.headers))
        .flatten();
    let mut body = Some(body);
    let form = match (&parts.method, &upload_boundary, body.take()) {
        (&Method::POST, None, Some(body)) => match read_form(body).await {
            Ok(form) => Some(form),
            Err(resp) => return resp,
        },
        (_, _, unread) => {
            body = unread;
            None
        }
    };
    let mut req = Req {
        broker,
        headers: &parts.headers,
        query,
        form: form.unwrap_or_default(),
        files: Vec::new(),
        from,
    };
    match (&parts.method, rest) {
        (&Method::GET, "/login") => return auth::login_page(&req, None).await,
        (&Method::POST, "/login") => return auth::token_sign_in(&req).await,
        (&Method::GET, "/login/oidc") => return auth::oidc_start(&req),
        (&Method::GET, "/callback") => return auth::oidc_callback(&req).await,
        _ => {}
    }
    let Some(ctx) = auth::signed_in(&req).await else {
        return match parts.method {
            // A page asked for without a session: sign in first.
            Method::GET => redirect(&format!("{PREFIX}/login")),
            _ => error_page(
                StatusCode::UNAUTHORIZED,
                "Not signed in",
                "Your console session has ended. Sign in again.",
            ),
        };
    };
    if let (Some(boundary), Some(body)) = (upload_boundary, body.take()) {
        match read_upload(body, boundary).await {
            Ok((form, files)) => {
                req.form = form;
                req.files = files;
            }
            Err(resp) => return resp,
        }
    }
    if parts.method == Method::POST && !ctx.form_token_matches(&req.form) {
        // Checked before any action runs (a cross-site form cannot know it).
        return error_page(
            StatusCode::FORBIDDEN,
            "Refused",
            "The form's security token is missing or wrong. Reload the page and try again.",
        );
    }
    let segments: Vec<String> = rest
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect();
    let seg: Vec<&str> = segments.iter().map(String::as_str).collect();
    match (&parts.method, seg.as_slice()) {
        (&Method::GET, []) => redirect(&format!("{PREFIX}/connections")),
        (&Method::POST, ["logout"]) => auth::sign_out(&req, &ctx).await,
        (_, ["connections", ..]) => connections::route(&req, &ctx, &parts.method, &seg[1..]).await,
        (_, ["apps", ..]) => apps::route(&req, &ctx, &parts.method, &seg[1..]).await,
        (_, ["mappers", ..]) => mappers::route(&req, &ctx, &parts.method, &seg[1..]).await,
        (_, ["users", ..]) => users::route(&req, &ctx, &parts.method, &seg[1..]).await,
        (&Method::GET, ["logs"]) => logs::page(&req, &ctx).await,
        _ => error_page(
            StatusCode::NOT_FOUND,
            "Not found",
            "There is no console page here.",
        ),
    }
}

/// One console request, parsed.
pub(crate) struct Req<'a> {
    broker: &'a Broker,
    headers: &'a http::HeaderMap,
    query: &'a str,
    /// The form's fields (empty for a GET).
    form: Form,
    /// The files of an upload form.
    files: Vec<UploadedFile>,
    from: IpAddr,
}

/// A file sent in a `multipart/form-data` form.
pub(crate) struct UploadedFile {
    /// The form field it came in.
    field: String,
    bytes: Bytes,
}

/// A signed-in person: who, and the caller their actions are made as.
pub(crate) struct Ctx {
    caller: Caller,
    /// Shown in the header.
    who: String,
    /// The form token of this session.
    csrf: String,
    /// The session's public id (sign-out deletes it).
    session_id: String,
}

impl Ctx {
    fn form_token_matches(&self, form: &Form) -> bool {
        form.get(auth::CSRF_FIELD)
            .is_some_and(|t| crate::secret::ct_eq(t, &self.csrf))
    }

    fn layout(&self, nav: &'static str) -> pages::Layout {
        pages::Layout {
            who: self.who.clone(),
            csrf: self.csrf.clone(),
            nav,
            css: css_path(),
        }
    }
}

/// An API call's failure as the console shows it.
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    pub status: u16,
    pub message: String,
}

#[derive(Deserialize)]
struct ErrorMessage {
    message: String,
}

impl Req<'_> {
    /// The page's query string's parameters.
    fn params(&self) -> Form {
        Form::parse(self.query.as_bytes())
    }

    /// The file sent in the upload form's field `field`.
    fn file(&self, field: &str) -> Option<&Bytes> {
        self.files
            .iter()
            .find(|f| f.field == field)
            .map(|f| &f.bytes)
    }

    /// Calls the management API in-process as `ctx`'s caller — the same
    /// functions and scope checks as `/api/v2` — and reads the answer as
    /// `T`. Writes are logged as the API logs them.
    async fn api<T: DeserializeOwned>(
        &self,
        ctx: &Ctx,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<T, Failure> {
        let body = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
        self.api_raw(ctx, method, path, "application/json", body)
            .await
    }

    /// [`Req::api`] with a body of any media type (a component is sent
    /// as `application/wasm`, as to `PUT /api/v2/mappers/{name}`).
    async fn api_raw<T: DeserializeOwned>(
        &self,
        ctx: &Ctx,
        method: Method,
        path: &str,
        content_type: &str,
        body: Bytes,
    ) -> Result<T, Failure> {
        let (path, query) = path.split_once('?').unwrap_or((path, ""));
        let reply = self
            .broker
            .api(ApiRequest {
                method: &method,
                path,
                query,
                caller: ctx.caller.clone(),
                content_type: Some(content_type),
                body,
            })
            .await;
        if !matches!(method, Method::GET | Method::HEAD) {
            self.broker
                .log_api_write(&method, path, Some(&ctx.caller.id), reply.status, self.from);
        }
        if !(200..300).contains(&reply.status) {
            let message = serde_json::from_str::<ErrorMessage>(&reply.body)
                .map(|e| e.message)
                .unwrap_or_else(|_| format!("the management API answered {}", reply.status));
            return Err(Failure {
                status: reply.status,
                message,
            });
        }
        // 204 carries no body: read it as JSON null.
        let text = if reply.body.is_empty() {
            "null"
        } else {
            &reply.body
        };
        serde_json::from_str(text).map_err(|e| {
            tracing::error!(error = %e, path, "the console cannot read an API answer");
            Failure {
                status: 500,
                message: format!("the console cannot read the API's answer: {e}"),
            }
        })
    }
}

/// A url-encoded form's fields, in order.
#[derive(Debug, Default)]
pub(crate) struct Form(Vec<(String, String)>);

impl Form {
    fn parse(body: &[u8]) -> Self {
        Self(url::form_urlencoded::parse(body).into_owned().collect())
    }

    /// The first value of `name`.
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The value of `name`, trimmed; empty when absent.
    fn text(&self, name: &str) -> String {
        self.get(name).unwrap_or("").trim().to_owned()
    }

    /// Every value of `name`.
    fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> {
        self.0
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One line per entry, blank lines dropped (callbacks, hosts).
fn lines(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

async fn read_form(body: Incoming) -> Result<Form, Response<Body>> {
    match crate::broker::server::read_body(
        body,
        MAX_FORM_BYTES,
        crate::broker::server::BODY_READ_TIMEOUT,
    )
    .await
    {
        Ok(bytes) => Ok(Form::parse(&bytes)),
        Err(e) => Err(error_page(e.status(), "Not accepted", &e.to_string())),
    }
}

/// The boundary of a `multipart/form-data` body (RFC 7578 §4.1), if the
/// request is one.
fn multipart_boundary(headers: &http::HeaderMap) -> Option<String> {
    let content_type = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    content_type
        .to_ascii_lowercase()
        .starts_with("multipart/form-data")
        .then(|| multer::parse_boundary(content_type).ok())
        .flatten()
}

/// Reads an upload form: its text fields as a [`Form`], its files apart.
/// The whole body is held to [`MAX_UPLOAD_BYTES`] and given
/// [`crate::broker::server::UPLOAD_READ_TIMEOUT`] to arrive.
async fn read_upload(
    body: Incoming,
    boundary: String,
) -> Result<(Form, Vec<UploadedFile>), Response<Body>> {
    let bytes = crate::broker::server::read_body(
        body,
        MAX_UPLOAD_BYTES,
        crate::broker::server::UPLOAD_READ_TIMEOUT,
    )
    .await
    .map_err(|e| match e {
        crate::broker::server::BodyError::TooLarge(_) => error_page(
            e.status(),
            "Not accepted",
            &format!(
                "The upload is over {} MiB, the largest component accepted.",
                super::MAX_MAPPER_BYTES >> 20
            ),
        ),
        e => error_page(e.status(), "Not accepted", &e.to_string()),
    })?;
    parse_upload(bytes, boundary).await.map_err(|e| {
        error_page(
            StatusCode::BAD_REQUEST,
            "Not accepted",
            &format!("The upload form could not be read: {e}"),
        )
    })
}

/// Splits a `multipart/form-data` body into text fields and files (a part
/// with a `filename`, RFC 7578 §4.2).
async fn parse_upload(
    bytes: Bytes,
    boundary: String,
) -> Result<(Form, Vec<UploadedFile>), multer::Error> {
    let stream = futures::stream::once(async move { Ok::<_, std::convert::Infallible>(bytes) });
    let mut multipart = multer::Multipart::new(stream, boundary);
    let mut fields = Vec::new();
    let mut files = Vec::new();
    while let Some(part) = multipart.next_field().await? {
        let name = part.name().unwrap_or_default().to_owned();
        if part.file_name().is_some() {
            let bytes = part.bytes().await?;
            files.push(UploadedFile { field: name, bytes });
        } else {
            fields.push((name, part.text().await?));
        }
    }
    Ok((Form(fields), files))
}

/// A rendered page with the console's headers.
fn html(status: StatusCode, page: Result<String, askama::Error>) -> Response<Body> {
    match page {
        Ok(body) => {
            let mut resp = response(status, "text/html; charset=utf-8", body);
            secure_headers(&mut resp);
            resp
        }
        Err(e) => {
            tracing::error!(error = %e, "a console page did not render");
            let mut resp = response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "text/plain; charset=utf-8",
                "the page could not be rendered",
            );
            secure_headers(&mut resp);
            resp
        }
    }
}

fn error_page(status: StatusCode, title: &str, message: &str) -> Response<Body> {
    html(status, pages::render_error(title, message))
}

fn secure_headers(resp: &mut Response<Body>) {
    set_header(resp, header::CONTENT_SECURITY_POLICY, CSP);
    set_header(resp, header::X_FRAME_OPTIONS, "DENY");
    set_header(resp, header::CACHE_CONTROL, "no-store");
    set_header(resp, header::REFERRER_POLICY, "same-origin");
    set_header(resp, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
}

/// A 303 (RFC 9110 §15.4.4): after a form, the browser GETs the page.
fn redirect(location: &str) -> Response<Body> {
    let mut resp = response(StatusCode::SEE_OTHER, "text/plain; charset=utf-8", "");
    set_header(&mut resp, header::LOCATION, location);
    secure_headers(&mut resp);
    resp
}

fn response(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

fn set_header(resp: &mut Response<Body>, name: header::HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        resp.headers_mut().append(name, v);
    }
}

/// An RFC 3339 UTC time as the console shows it: `YYYY-MM-DD HH:MM:SS`
/// (the tables say UTC in their heads; fractions of a second say nothing
/// to a person).
fn display_time(rfc3339: &str) -> String {
    rfc3339.get(..19).unwrap_or(rfc3339).replacen('T', " ", 1)
}

/// What a path segment must encode (RFC 3986 §3.3: `pchar`): everything
/// but unreserved characters and the few sub-delimiters ids use.
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'@');

/// `segment` percent-encoded for a console or management API path.
fn path_segment(segment: &str) -> String {
    percent_encoding::utf8_percent_encode(segment, SEGMENT).to_string()
}

fn status_of(failure: &Failure) -> StatusCode {
    StatusCode::from_u16(failure.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_fields_are_decoded_and_repeated_ones_kept_in_order() {
        let form = Form::parse(b"a=1+2&b=%3Cx%3E&a=3");
        assert_eq!(form.get("a"), Some("1 2"));
        assert_eq!(form.get("b"), Some("<x>"));
        assert_eq!(form.all("a").collect::<Vec<_>>(), ["1 2", "3"]);
        assert_eq!(form.get("c"), None);
    }

    #[test]
    fn the_stylesheet_path_carries_its_hash() {
        let path = css_path();
        assert!(path.starts_with("/admin/assets/console."), "{path}");
        assert!(path.ends_with(".css"), "{path}");
        assert_eq!(path.len(), "/admin/assets/console..css".len() + 16);
    }

    #[test]
    fn path_segments_keep_ids_readable_and_encode_separators() {
        assert_eq!(path_segment("con_Ab-1.x~y@2"), "con_Ab-1.x~y@2");
        assert_eq!(
            path_segment("oauth2|a b/c?d#e"),
            "oauth2%7Ca%20b%2Fc%3Fd%23e"
        );
    }

    #[tokio::test]
    async fn an_upload_forms_text_fields_and_files_are_read_apart() {
        let body = "--b\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\ntok\r\n\
                    --b\r\nContent-Disposition: form-data; name=\"component\"; filename=\"m.wasm\"\r\n\
                    Content-Type: application/wasm\r\n\r\n\0asm\x01\r\n--b--\r\n";
        let (form, files) = parse_upload(Bytes::from(body), "b".into())
            .await
            .expect("parses");
        assert_eq!(form.get("csrf"), Some("tok"));
        assert_eq!(form.get("component"), None, "a file is not a text field");
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].field, "component");
        assert_eq!(&files[0].bytes[..], b"\0asm\x01");
        // A body cut short is an error, not a half-read form.
        let cut = "--b\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\nto";
        assert!(parse_upload(Bytes::from(cut), "b".into()).await.is_err());
    }

    #[test]
    fn multipart_requests_are_told_apart_by_their_media_type() {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("multipart/form-data; boundary=xyz"),
        );
        assert_eq!(multipart_boundary(&headers).as_deref(), Some("xyz"));
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        assert_eq!(multipart_boundary(&headers), None);
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("multipart/form-data"),
        );
        assert_eq!(multipart_boundary(&headers), None, "no boundary");
    }

    #[test]
    fn times_are_shown_to_the_second_without_the_t() {
        assert_eq!(
            display_time("2026-12-02T06:47:55.000Z"),
            "2026-12-02 06:47:55"
        );
        assert_eq!(display_time("2026-12-02T06:47:55Z"), "2026-12-02 06:47:55");
        assert_eq!(display_time("odd"), "odd");
    }

    #[test]
    fn lines_drop_blanks_and_trim() {
        assert_eq!(lines(" a \n\n b\r\n"), ["a", "b"]);
    }
}
