//! What goes into a mapper call and what comes out, as host-side types.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::egress::RequestRecord;

/// Longest message kept from a guest error or trap: enough to debug, short
/// enough to put in a log line or an `error_description`.
pub const MAX_ERROR_MESSAGE_BYTES: usize = 1024;
/// Longest user id accepted from a mapper.
pub const MAX_USER_ID_BYTES: usize = 512;

/// The provider's token response (RFC 6749 §5.1), as handed to the mapper.
#[derive(Clone, Default)]
pub struct TokenSet {
    pub access_token: String,
    pub token_type: Option<String>,
    pub id_token: Option<String>,
    pub refresh_token: Option<String>,
    pub expires_in: Option<u64>,
    pub scope: Option<String>,
    /// The JSON body exactly as the token endpoint sent it.
    pub raw: String,
}

impl TokenSet {
    /// Reads a token endpoint response body. Unknown fields are kept in `raw`
    /// only; a missing `access_token` is an error.
    pub fn from_json(raw: &str) -> Result<Self, String> {
        let value: serde_json::Value =
            serde_json::from_str(raw).map_err(|e| format!("token response is not JSON: {e}"))?;
        let obj = value
            .as_object()
            .ok_or_else(|| "token response is not a JSON object".to_string())?;
        let text = |k: &str| obj.get(k).and_then(|v| v.as_str()).map(str::to_owned);
        let access_token = text("access_token")
            .filter(|t| !t.is_empty())
            .ok_or_else(|| "token response has no access_token".to_string())?;
        // Some providers send expires_in as a string; accept both.
        let expires_in = obj.get("expires_in").and_then(|v| {
            v.as_u64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        });
        Ok(Self {
            access_token,
            token_type: text("token_type"),
            id_token: text("id_token"),
            refresh_token: text("refresh_token"),
            expires_in,
            scope: text("scope"),
            raw: raw.to_owned(),
        })
    }

    /// A token set holding only a bearer access token.
    pub fn bearer(access_token: impl Into<String>) -> Self {
        let access_token = access_token.into();
        let raw =
            serde_json::json!({"access_token": access_token, "token_type": "Bearer"}).to_string();
        Self {
            access_token,
            token_type: Some("Bearer".into()),
            raw,
            ..Self::default()
        }
    }
}

impl fmt::Debug for TokenSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redact = |o: &Option<String>| o.as_ref().map(|_| "[redacted]");
        f.debug_struct("TokenSet")
            .field("access_token", &"[redacted]")
            .field("token_type", &self.token_type)
            .field("id_token", &redact(&self.id_token))
            .field("refresh_token", &redact(&self.refresh_token))
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope)
            .field("raw", &"[redacted]")
            .finish()
    }
}

/// A connection's mapper settings. Values may be secrets (API keys), so
/// `Debug` shows the keys only.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Settings(BTreeMap<String, String>);

impl Settings {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.0.insert(key.into(), value.into());
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Settings {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Self(
            iter.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.keys().map(|k| (k, "[redacted]")))
            .finish()
    }
}

/// Everything one mapper call needs.
#[derive(Debug, Clone)]
pub struct MapperInput {
    pub connection: String,
    pub tokens: TokenSet,
    pub settings: Settings,
}

/// The user's profile as a mapper returned it, checked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    pub user_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email_verified: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub given_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub family_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nickname: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub picture: Option<String>,
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// Why a mapper call produced no profile. The first four are the mapper's
/// own answer (the WIT `error` variant); the rest are the host's verdicts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum MapperError {
    #[error("the provider rejected the access token: {message}")]
    Unauthorized { message: String },
    #[error("unexpected answer from the provider: {message}")]
    Provider { message: String },
    #[error("invalid profile: {message}")]
    InvalidProfile { message: String },
    #[error("mapper failed: {message}")]
    Other { message: String },
    #[error("mapper did not finish within its {limit_ms} ms deadline")]
    Timeout { limit_ms: u64 },
    #[error("mapper exceeded its memory limit of {limit_bytes} bytes")]
    MemoryLimit { limit_bytes: usize },
    #[error("mapper returned {size_bytes} bytes of profile, over the {limit_bytes}-byte cap")]
    OutputTooLarge {
        size_bytes: usize,
        limit_bytes: usize,
    },
    #[error("mapper trapped: {message}")]
    Trap { message: String },
    #[error(
        "mapper held more than {limit} host resources (HTTP fields, requests, bodies, streams) at once"
    )]
    TooManyResources { limit: usize },
    #[error("no capacity to run the mapper now: {message}")]
    Busy { message: String },
}

impl MapperError {
    pub(crate) fn timeout(limit: Duration) -> Self {
        Self::Timeout {
            limit_ms: limit.as_millis().try_into().unwrap_or(u64::MAX),
        }
    }

    /// Short machine name of the variant, for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Unauthorized { .. } => "unauthorized",
            Self::Provider { .. } => "provider",
            Self::InvalidProfile { .. } => "invalid-profile",
            Self::Other { .. } => "other",
            Self::Timeout { .. } => "timeout",
            Self::MemoryLimit { .. } => "memory-limit",
            Self::OutputTooLarge { .. } => "output-too-large",
            Self::Trap { .. } => "trap",
            Self::TooManyResources { .. } => "too-many-resources",
            Self::Busy { .. } => "busy",
        }
    }
}

/// Where a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogSource {
    /// The `waypass:mapper/log` import.
    Log,
    Stdout,
    Stderr,
}

/// Severity, as in the WIT `log.level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

/// One line a mapper logged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogLine {
    pub level: LogLevel,
    pub source: LogSource,
    pub message: String,
}

/// The outcome of one call, with what the mapper logged and requested.
#[derive(Debug)]
pub struct InvocationReport {
    pub result: Result<Profile, MapperError>,
    pub logs: Vec<LogLine>,
    /// Lines the mapper logged beyond the per-call bound, dropped.
    pub dropped_log_lines: usize,
    pub requests: Vec<RequestRecord>,
    pub elapsed: Duration,
    /// The most linear memory the instance held (its memory snapshot included).
    pub peak_memory_bytes: usize,
}

/// Cuts `s` to at most `max` bytes on a character boundary, marking the cut.
pub(crate) fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_sets_never_show_tokens_in_debug() {
        let tokens = TokenSet::from_json(
            r#"{"access_token":"at-secret","id_token":"idt-secret","refresh_token":"rt-secret","expires_in":"3600"}"#,
        )
        .expect("parses");
        let shown = format!("{tokens:?}");
        assert!(!shown.contains("secret"), "{shown}");
        assert_eq!(tokens.expires_in, Some(3600));
    }

    #[test]
    fn token_responses_without_an_access_token_are_refused() {
        assert_eq!(
            TokenSet::from_json(r#"{"token_type":"Bearer"}"#).err(),
            Some("token response has no access_token".to_owned())
        );
        assert_eq!(
            TokenSet::from_json(r#"["access_token"]"#).err(),
            Some("token response is not a JSON object".to_owned())
        );
        assert!(
            TokenSet::from_json("not json")
                .err()
                .is_some_and(|e| e.starts_with("token response is not JSON: ")),
        );
    }

    #[test]
    fn settings_show_keys_but_not_values_in_debug() {
        let settings: Settings = [("api_key", "sk-live-123")].into_iter().collect();
        let shown = format!("{settings:?}");
        assert!(
            shown.contains("api_key") && !shown.contains("sk-live"),
            "{shown}"
        );
    }

    #[test]
    fn truncation_respects_character_boundaries() {
        assert_eq!(truncate("héllo".into(), 2), "h…");
        assert_eq!(truncate("short".into(), 10), "short");
    }
}
