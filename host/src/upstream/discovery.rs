//! OpenID Connect discovery (OpenID Connect Discovery 1.0 §4, RFC 8414) and
//! the providers' JWK sets, cached.
//!
//! Both are derived caches, per instance, not state: losing them costs a
//! fetch. Each entry lives as long as the provider's `Cache-Control:
//! max-age` says, between [`MIN_CACHE_TTL`] and [`MAX_CACHE_TTL`]. A JWK set
//! is fetched again before its time when a token names a key it lacks (the
//! provider rotated its keys), but at most once per
//! [`JWKS_MISS_REFETCH_INTERVAL`] per set: a stream of tokens with made-up
//! `kid`s must not make the broker hammer the provider.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::Deserialize;

use super::jws::JwkSet;

/// Shortest time an answer is cached, whatever the provider says
/// (`no-store`, `max-age=0`): every login would otherwise fetch it again.
pub const MIN_CACHE_TTL: u64 = 60;
/// Longest time an answer is cached, whatever the provider says: a
/// provider that moves an endpoint is followed within a day.
pub const MAX_CACHE_TTL: u64 = 24 * 3600;
/// How long an answer without `max-age` is cached.
pub const DEFAULT_CACHE_TTL: u64 = 3600;
/// Least time between two fetches of one JWK set when a token names a key
/// it lacks: a rotation is picked up within this, and forged `kid`s cost
/// the provider at most one request per interval.
pub const JWKS_MISS_REFETCH_INTERVAL: u64 = 10;

/// The provider metadata we use (OpenID Connect Discovery 1.0 §3).
#[derive(Debug, Clone, Deserialize)]
pub struct ProviderMetadata {
    pub issuer: String,
    #[serde(default)]
    pub authorization_endpoint: Option<String>,
    #[serde(default)]
    pub token_endpoint: Option<String>,
    #[serde(default)]
    pub userinfo_endpoint: Option<String>,
    #[serde(default)]
    pub jwks_uri: Option<String>,
}

/// Why discovery or a key set fetch failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiscoveryError {
    #[error("the provider's {what} could not be fetched: {detail}")]
    Fetch { what: &'static str, detail: String },
    #[error("the provider's {what} is not usable: {detail}")]
    Invalid { what: &'static str, detail: String },
    /// OpenID Connect Discovery §4.3: the document's `issuer` must be the
    /// one asked about, or another provider could stand in for it.
    #[error("the provider's discovery document names issuer `{found}`, not `{expected}`")]
    IssuerMismatch { expected: String, found: String },
    #[error("the provider publishes no {0} and the connection names none")]
    Missing(&'static str),
}

#[derive(Clone)]
struct Cached<T> {
    value: Arc<T>,
    fetched_at: u64,
    expires_at: u64,
}

/// The caches of one process; shared by every clone of [`super::Upstream`].
#[derive(Default)]
pub(super) struct ProviderCache {
    metadata: Mutex<HashMap<String, Cached<ProviderMetadata>>>,
    jwks: Mutex<HashMap<String, Cached<JwkSet>>>,
}

/// Bounded number of cached entries per map: issuers and key set URLs come
/// from connections (configured), so this is far above any real count; it
/// only stops an unbounded growth if connections churn.
const MAX_CACHED: usize = 1024;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl ProviderCache {
    pub(super) fn metadata(&self, issuer: &str, now: u64) -> Option<Arc<ProviderMetadata>> {
        lock(&self.metadata)
            .get(issuer)
            .filter(|c| now < c.expires_at)
            .map(|c| c.value.clone())
    }

    pub(super) fn put_metadata(
        &self,
        issuer: &str,
        value: Arc<ProviderMetadata>,
        now: u64,
        ttl: u64,
    ) {
        insert(&mut lock(&self.metadata), issuer, value, now, ttl);
    }

    /// The cached set, when it was fetched and until when it is fresh.
    pub(super) fn jwks(&self, uri: &str) -> Option<(Arc<JwkSet>, u64, u64)> {
        lock(&self.jwks)
            .get(uri)
            .map(|c| (c.value.clone(), c.fetched_at, c.expires_at))
    }

    pub(super) fn put_jwks(&self, uri: &str, value: Arc<JwkSet>, now: u64, ttl: u64) {
        insert(&mut lock(&self.jwks), uri, value, now, ttl);
    }
}

fn insert<T>(map: &mut HashMap<String, Cached<T>>, key: &str, value: Arc<T>, now: u64, ttl: u64) {
    if map.len() >= MAX_CACHED && !map.contains_key(key) {
        map.retain(|_, c| now < c.expires_at);
        if map.len() >= MAX_CACHED {
            map.clear();
        }
    }
    map.insert(
        key.to_owned(),
        Cached {
            value,
            fetched_at: now,
            expires_at: now.saturating_add(ttl),
        },
    );
}

/// The cache lifetime an answer's `Cache-Control` asks for, clamped to
/// [`MIN_CACHE_TTL`]..=[`MAX_CACHE_TTL`] (RFC 9111 §5.2.2.1 `max-age`;
/// `no-store` and `no-cache` count as zero).
pub fn cache_ttl(cache_control: Option<&str>) -> u64 {
    let Some(value) = cache_control else {
        return DEFAULT_CACHE_TTL;
    };
    let mut ttl = None;
    for directive in value.split(',') {
        let directive = directive.trim().to_ascii_lowercase();
        if directive == "no-store" || directive == "no-cache" {
            ttl = Some(0);
            break;
        }
        if let Some(seconds) = directive.strip_prefix("max-age=") {
            ttl = seconds.trim_matches('"').parse::<u64>().ok().or(Some(0));
        }
    }
    ttl.unwrap_or(DEFAULT_CACHE_TTL)
        .clamp(MIN_CACHE_TTL, MAX_CACHE_TTL)
}

/// Where the discovery document of `issuer` is: the issuer without a
/// trailing `/`, then `/.well-known/openid-configuration` (Discovery §4).
pub fn discovery_url(issuer: &str) -> String {
    format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_age_is_honoured_between_the_floor_and_the_ceiling() {
        assert_eq!(cache_ttl(Some("public, max-age=600")), 600);
        assert_eq!(cache_ttl(Some("max-age=5")), MIN_CACHE_TTL);
        assert_eq!(cache_ttl(Some("max-age=99999999")), MAX_CACHE_TTL);
        assert_eq!(cache_ttl(Some("no-store")), MIN_CACHE_TTL);
        assert_eq!(cache_ttl(Some("max-age=soon")), MIN_CACHE_TTL);
        assert_eq!(cache_ttl(Some("public")), DEFAULT_CACHE_TTL);
        assert_eq!(cache_ttl(None), DEFAULT_CACHE_TTL);
    }

    #[test]
    fn the_discovery_url_drops_one_trailing_slash_of_the_issuer() {
        assert_eq!(
            discovery_url("https://id.test/realms/acme/"),
            "https://id.test/realms/acme/.well-known/openid-configuration"
        );
        assert_eq!(
            discovery_url("https://id.test"),
            "https://id.test/.well-known/openid-configuration"
        );
    }

    #[test]
    fn cached_entries_expire_at_their_lifetime() {
        let cache = ProviderCache::default();
        let meta = Arc::new(ProviderMetadata {
            issuer: "https://id.test".into(),
            authorization_endpoint: None,
            token_endpoint: None,
            userinfo_endpoint: None,
            jwks_uri: None,
        });
        cache.put_metadata("https://id.test", meta, 1000, 60);
        assert!(cache.metadata("https://id.test", 1059).is_some());
        assert!(cache.metadata("https://id.test", 1060).is_none());
    }
}
