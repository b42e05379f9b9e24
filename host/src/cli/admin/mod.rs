//! `waypass connections | clients | mappers | users`: the management API
//! (`/api/v2`, see `admin`) from the command line. Thin: parse, call,
//! print; the broker decides everything.
//!
//! Layout: this file holds what every group shares — the flags naming the
//! broker and the token, the HTTP call and its errors, and the printers
//! (aligned tables for lists, `key: value` lines for one object, the API's
//! JSON as it is with `--json`); one file per command group.

pub(super) mod clients;
pub(super) mod connections;
pub(super) mod keys;
pub(super) mod logs;
pub(super) mod mappers;
pub(super) mod users;

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use clap::Args;
use http::{HeaderMap, HeaderValue, Method, header};
use serde_json::Value;
use url::Url;

use crate::upstream::{SendError, TOKEN_EXCHANGE_TIMEOUT, Upstream};

/// Where the token comes from when `--token-file` is not given. There is no
/// `--token` flag: a token on the command line shows in `ps`.
const TOKEN_ENV: &str = "WAYPASS_TOKEN";

/// How long `mappers push` and `mappers activate` wait: the broker validates
/// and compiles the component before it answers, which takes seconds for a
/// 20 MiB Python or JavaScript component on a small machine.
const COMPILE_TIMEOUT: Duration = Duration::from_secs(300);

/// The flags every management command takes, before or after its verb.
#[derive(Debug, Args)]
pub(super) struct ApiArgs {
    /// The broker's base URL.
    #[arg(
        long,
        global = true,
        env = "WAYPASS_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    url: Url,
    /// Read the token from FILE instead of the WAYPASS_TOKEN variable (the
    /// admin token or a client_credentials access token).
    #[arg(long, global = true, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// Print the API's JSON as it is, for scripts.
    #[arg(long, global = true)]
    json: bool,
}

/// A request body.
pub(super) enum Body {
    Empty,
    /// Bytes already known to be JSON.
    Json(Bytes),
    /// A component, for `PUT /api/v2/mappers/{name}`.
    Wasm(Bytes),
}

/// The management API at one broker, with one token.
pub(super) struct Api {
    base: Url,
    token: HeaderValue,
    json: bool,
    runtime: tokio::runtime::Runtime,
}

impl Api {
    /// Reads the token and prepares the client; nothing is sent yet.
    pub(super) fn new(args: &ApiArgs) -> anyhow::Result<Self> {
        let token = match &args.token_file {
            Some(file) => std::fs::read_to_string(file)
                .with_context(|| format!("cannot read the token file {}", file.display()))?
                .trim()
                .to_owned(),
            None => std::env::var(TOKEN_ENV)
                .map(|t| t.trim().to_owned())
                .unwrap_or_default(),
        };
        if token.is_empty() {
            bail!(
                "no token: set {TOKEN_ENV} (the admin token or a client_credentials token), \
                 or pass --token-file FILE"
            );
        }
        let mut token = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| anyhow!("the token holds characters an HTTP header cannot carry"))?;
        token.set_sensitive(true);
        Ok(Self {
            base: args.url.clone(),
            token,
            json: args.json,
            runtime: super::tokio_runtime()?,
        })
    }

    /// Whether to print the API's JSON instead of tables.
    pub(super) fn json(&self) -> bool {
        self.json
    }

    /// `GET`.
    pub(super) fn get(&self, path: &str) -> anyhow::Result<Reply> {
        self.call(Method::GET, path, Body::Empty)
    }

    /// Every item of the list `resource` (`connections`, `clients`),
    /// walking the API's checkpoint pages (`take`, `from` … `next`) so
    /// none is cut off at a page's end: one reply, all of them as an array.
    pub(super) fn get_all(&self, resource: &str) -> anyhow::Result<Reply> {
        let mut items = Vec::new();
        let mut from: Option<String> = None;
        loop {
            let mut query = url::form_urlencoded::Serializer::new(String::new());
            query.append_pair("take", &LIST_PAGE.to_string());
            if let Some(from) = &from {
                query.append_pair("from", from);
            }
            let page = self
                .get(&format!("{resource}?{}", query.finish()))?
                .value()?;
            if let Some(list) = page[resource].as_array() {
                items.extend(list.iter().cloned());
            }
            match page["next"].as_str() {
                // A cursor that does not move would loop forever.
                Some(next) if from.as_deref() != Some(next) => from = Some(next.to_owned()),
                _ => break,
            }
        }
        Ok(Reply {
            body: Bytes::from(serde_json::to_vec(&Value::Array(items))?),
        })
    }

    /// One call; a non-2xx answer is an error saying what to do.
    pub(super) fn call(&self, method: Method, path: &str, body: Body) -> anyhow::Result<Reply> {
        self.call_within(method, path, body, TOKEN_EXCHANGE_TIMEOUT)
    }

    /// [`Api::call`] with a longer wait, for calls that make the broker
    /// compile a component.
    pub(super) fn call_compiling(
        &self,
        method: Method,
        path: &str,
        body: Body,
    ) -> anyhow::Result<Reply> {
        self.call_within(method, path, body, COMPILE_TIMEOUT)
    }

    fn call_within(
        &self,
        method: Method,
        path: &str,
        body: Body,
        timeout: Duration,
    ) -> anyhow::Result<Reply> {
        let base = self.base.as_str().trim_end_matches('/');
        let url = Url::parse(&format!("{base}/api/v2/{path}"))
            .with_context(|| format!("`{base}/api/v2/{path}` is not a URL"))?;
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, self.token.clone());
        headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        let body = match body {
            Body::Empty => Bytes::new(),
            Body::Json(bytes) => {
                headers.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                bytes
            }
            Body::Wasm(bytes) => {
                headers.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/wasm"),
                );
                bytes
            }
        };
        let http = Upstream::default().with_timeout(timeout);
        let response = self
            .runtime
            .block_on(http.send(method, &url, headers, body))
            .map_err(|e| match e {
                SendError::TimedOut => {
                    anyhow!("{base} did not answer within {} s", timeout.as_secs())
                }
                SendError::Failed(e) => {
                    anyhow!("cannot reach {base}: {e}; is `waypass serve` running at {base}?")
                }
            })?;
        if (200..300).contains(&response.status) {
            Ok(Reply {
                body: response.body,
            })
        } else {
            Err(api_error(base, response.status, &response.body))
        }
    }
}

/// A successful answer.
/// Items per page when the CLI lists everything: the API's most.
const LIST_PAGE: usize = crate::admin::listing::MAX_PER_PAGE;

pub(super) struct Reply {
    body: Bytes,
}

impl Reply {
    /// The body parsed (`Null` for an empty 204).
    pub(super) fn value(&self) -> anyhow::Result<Value> {
        if self.body.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&self.body).context("the broker's answer is not JSON")
    }

    /// `--json`: the body as it came, with a final newline.
    pub(super) fn print_raw(&self) -> anyhow::Result<()> {
        let mut text = String::from_utf8_lossy(&self.body).into_owned();
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        out(&text)
    }
}

/// Turns an API error (`{statusCode, error, message}`) into what to do.
fn api_error(base: &str, status: u16, body: &[u8]) -> anyhow::Error {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let Some(message) = parsed.as_ref().and_then(|v| v["message"].as_str()) else {
        let text = String::from_utf8_lossy(body);
        let snippet: String = text.chars().take(200).collect();
        return anyhow!(
            "HTTP {status} from {base} without an API error ({}); is --url a Waypass broker?",
            printable(snippet.trim())
        );
    };
    let message = printable(message);
    match status {
        401 => anyhow!(
            "{message} (HTTP 401): check the token in {TOKEN_ENV} or --token-file; it must be \
             the broker's admin token or an unexpired client_credentials access token"
        ),
        403 => anyhow!(
            "{message} (HTTP 403): use the admin token, or a token from a client holding that \
             scope (`waypass clients update ID --scope …`)"
        ),
        _ => anyhow!("{message} (HTTP {status})"),
    }
}

/// Percent-encodes one path segment: user ids hold `|`, ids may hold `/`.
/// Everything but RFC 3986 §2.3 unreserved characters is encoded.
pub(super) fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Reads FILE, or stdin for `-`.
pub(super) fn read_input(file: &Path) -> anyhow::Result<Vec<u8>> {
    if file == Path::new("-") {
        let mut bytes = Vec::new();
        std::io::stdin()
            .read_to_end(&mut bytes)
            .context("cannot read stdin")?;
        Ok(bytes)
    } else {
        std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))
    }
}

/// Reads a JSON body from FILE (or stdin), checked here so that a typo is
/// reported with its line rather than as the broker's 400.
pub(super) fn read_json(file: &Path) -> anyhow::Result<Body> {
    let bytes = read_input(file)?;
    serde_json::from_slice::<Value>(&bytes)
        .with_context(|| format!("{} is not JSON", file.display()))?;
    Ok(Body::Json(bytes.into()))
}

/// Serialises a body built here.
pub(super) fn json_body(value: &Value) -> Body {
    Body::Json(Bytes::from(value.to_string()))
}

/// Writes to stdout; a closed pipe (`| head`) is not an error.
pub(super) fn out(text: &str) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

/// Aligned columns, two spaces apart; the last column is not padded.
pub(super) fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i == last {
                s.push_str(cell);
            } else {
                s.push_str(&format!("{cell:<w$}  "));
            }
        }
        s.truncate(s.trim_end().len());
        s.push('\n');
        s
    };
    let mut text = line(headers.to_vec());
    for row in rows {
        text.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    text
}

/// `key: value` lines for one object, nested objects as `a.b`, values
/// aligned.
pub(super) fn key_values(value: &Value) -> String {
    let mut pairs = Vec::new();
    flatten("", value, &mut pairs);
    let width = pairs
        .iter()
        .map(|(k, _)| k.chars().count() + 1)
        .max()
        .unwrap_or(0);
    pairs
        .iter()
        .map(|(k, v)| format!("{:<width$} {v}\n", format!("{k}:")))
        .collect()
}

fn flatten(prefix: &str, value: &Value, pairs: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, v) in map {
                let key = if prefix.is_empty() {
                    printable(key)
                } else {
                    format!("{prefix}.{}", printable(key))
                };
                flatten(&key, v, pairs);
            }
        }
        other => pairs.push((prefix.to_owned(), cell(other))),
    }
}

/// One value as table text: `-` for nothing, lists comma-separated.
pub(super) fn cell(value: &Value) -> String {
    match value {
        Value::Null => "-".into(),
        Value::String(s) if s.is_empty() => "-".into(),
        Value::String(s) => printable(s),
        Value::Array(items) if items.is_empty() => "-".into(),
        Value::Array(items) => items.iter().map(cell).collect::<Vec<_>>().join(","),
        Value::Bool(true) => "yes".into(),
        Value::Bool(false) => "no".into(),
        other => printable(&other.to_string()),
    }
}

/// Control characters escaped: names and profiles come from providers and
/// mappers, and must not drive the administrator's terminal.
pub(super) fn printable(s: &str) -> String {
    if s.chars().any(char::is_control) {
        s.chars()
            .map(|c| {
                if c.is_control() {
                    c.escape_default().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect()
    } else {
        s.to_owned()
    }
}

/// Seconds since the Unix epoch as RFC 3339 UTC, `-` for 0.
pub(super) fn time(value: &Value) -> String {
    let Some(secs) = value.as_u64() else {
        return cell(value);
    };
    if secs == 0 {
        return "-".into();
    }
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's
/// `civil_from_days`, for non-negative days).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

/// Replaces the named fields' Unix times with readable ones.
pub(super) fn with_times(mut value: Value, keys: &[&str]) -> Value {
    for key in keys {
        if let Some(v) = value.get_mut(*key) {
            *v = Value::String(time(v));
        }
    }
    value
}

/// Bytes as `812 B`, `64.0 KiB`, `2.1 MiB`.
pub(super) fn size(value: &Value) -> String {
    let Some(bytes) = value.as_u64() else {
        return cell(value);
    };
    // Display only: precision loss past 2^53 bytes does not matter.
    #[allow(clippy::cast_precision_loss)]
    let b = bytes as f64;
    match bytes {
        0..1024 => format!("{bytes} B"),
        1024..1_048_576 => format!("{:.1} KiB", b / 1024.0),
        _ => format!("{:.1} MiB", b / 1_048_576.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_percent_encoded_except_unreserved_characters() {
        assert_eq!(segment("oauth2|acme|a b/c"), "oauth2%7Cacme%7Ca%20b%2Fc");
        assert_eq!(segment("con_AZ-9.~"), "con_AZ-9.~");
    }

    #[test]
    fn tables_align_columns_and_leave_the_last_unpadded() {
        let text = table(
            &["ID", "NAME"],
            &[
                vec!["con_1".into(), "acme".into()],
                vec!["c".into(), "-".into()],
            ],
        );
        assert_eq!(text, "ID     NAME\ncon_1  acme\nc      -\n");
    }

    #[test]
    fn unix_times_print_as_utc_dates() {
        assert_eq!(time(&Value::from(0u64)), "-");
        assert_eq!(time(&Value::from(951_782_400u64)), "2000-02-29T00:00:00Z");
        assert_eq!(time(&Value::from(1_735_689_599u64)), "2024-12-31T23:59:59Z");
    }

    #[test]
    fn control_characters_are_escaped_before_printing() {
        assert_eq!(printable("a\u{1b}[2Jb\n"), "a\\u{1b}[2Jb\\n");
    }
}
