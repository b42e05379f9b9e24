//! Bounds on what unauthenticated callers can make the broker hold or do:
//! logins in flight, and rate limits (token buckets per client address and
//! per client id) with `429` and `Retry-After` (RFC 6585 §4, RFC 9110
//! §10.2.3) past them. The `[limits]` table of the configuration file.
//!
//! ```toml
//! [limits]
//! max_outstanding_logins = 50000
//! trusted_proxies = ["10.0.0.2", "fd00:1::/64"]   # whose X-Forwarded-For is believed
//!
//! [limits.rate]
//! enabled = true
//! authorize_per_ip = { burst = 300, per_minute = 60 }
//! ```
//!
//! # Why a small token bucket of our own
//!
//! The `governor` crate's keyed limiter keeps one entry per key in a map
//! that only shrinks when asked, so a flood from many addresses grows it
//! until the next clean-up; the bound has to be built around it anyway. The
//! algorithm itself (GCRA: one instant per key) is a few lines, so
//! [`Buckets`] holds at most [`MAX_TRACKED_KEYS`] keys, forgets a key as
//! soon as its bucket is full again (such a key carries no information),
//! and past the bound puts new keys in one shared bucket instead of growing.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Deserialize;

/// Logins between `/authorize` and the callback, over every app and
/// connection. Each holds a stored row for up to
/// [`LOGIN_TRANSACTION_TTL`](super::LOGIN_TRANSACTION_TTL) (ten minutes):
/// 50 000 is 83 logins a second started and never finished for ten minutes,
/// far above the peak of the deployments one broker is sized for, and at
/// the parameter bounds of `/authorize` (a few KiB a row) at most a couple
/// of hundred MiB.
pub const MAX_OUTSTANDING_LOGINS: usize = 50_000;

/// How often expired transactions, codes and tokens are deleted. Expired
/// rows are already refused by every read; sweeping once a minute keeps the
/// tables within a minute of expired rows of their live size, for one
/// indexed `DELETE` per table.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// Keys (addresses, client ids) each bucket table tracks at most. A key
/// costs under 100 bytes, so a table stays under ~5 MiB however many
/// addresses a flood comes from; past the bound, new keys share one bucket.
pub const MAX_TRACKED_KEYS: usize = 50_000;

/// IPv6 addresses are counted by their /64: the smallest prefix a network
/// hands a subscriber (RFC 6177 §3 recommends more), so one host cannot
/// mint 2^64 keys from its own prefix.
pub const IPV6_KEY_PREFIX: u8 = 64;

/// `/authorize` from one address. A person starts a login in one to three
/// requests, and an office or carrier NAT puts hundreds of people behind
/// one address: a burst of 300, then one a second, which also keeps one
/// address from holding more than ~900 of the outstanding logins.
pub const AUTHORIZE_PER_IP: Quota = Quota {
    burst: 300,
    per_minute: 60,
};

/// `/authorize` for one app, from everywhere: 50 logins a second
/// sustained, so one app (or anyone using its public client id) can hold at
/// most 30 000 of [`MAX_OUTSTANDING_LOGINS`] over a transaction's lifetime
/// and other apps keep room.
pub const AUTHORIZE_PER_CLIENT: Quota = Quota {
    burst: 3000,
    per_minute: 3000,
};

/// `/login/callback` from one address: one per login, as for `/authorize`.
pub const CALLBACK_PER_IP: Quota = Quota {
    burst: 300,
    per_minute: 60,
};

/// Failed client authentications at `/oauth/token` from one address. An
/// app authenticates right or is misconfigured; 100 failures, then one
/// every three seconds, makes guessing a secret hopeless and still lets a
/// fixed app recover within minutes.
pub const TOKEN_FAILURES_PER_IP: Quota = Quota {
    burst: 100,
    per_minute: 20,
};

/// Failed client authentications for one client id, from every address:
/// guessing one app's secret from many addresses meets the same bound.
pub const TOKEN_FAILURES_PER_CLIENT: Quota = Quota {
    burst: 100,
    per_minute: 20,
};

/// Failed management-API authentications from one address: operators and
/// scripts use a token they were given; 20 failures, then one every six
/// seconds.
pub const API_FAILURES_PER_IP: Quota = Quota {
    burst: 20,
    per_minute: 10,
};

/// A browser session at the broker ends after three days unused (Auth0's
/// default inactivity timeout): long enough that a person who uses their
/// apps every working day logs in once a week, short enough that a
/// forgotten browser does not stay signed in for a month.
pub const SESSION_IDLE: Duration = Duration::from_secs(3 * 24 * 3600);

/// A session ends 30 days after its login however much it is used
/// (Auth0's default "require log in after"): the person authenticates at
/// the provider again at least monthly.
pub const SESSION_ABSOLUTE: Duration = Duration::from_secs(30 * 24 * 3600);

/// A refresh token unused for 15 days dies (Auth0's default inactivity
/// lifetime): an app that stopped running stops holding access.
pub const REFRESH_TOKEN_IDLE: Duration = Duration::from_secs(15 * 24 * 3600);

/// A refresh-token family lives at most 30 days from its login (Auth0's
/// default absolute lifetime), then the app sends the user to log in.
pub const REFRESH_TOKEN_ABSOLUTE: Duration = Duration::from_secs(30 * 24 * 3600);

/// A token bucket's size and refill.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quota {
    /// Requests allowed at once: the bucket's size.
    pub burst: u32,
    /// Requests the bucket regains per minute: the sustained rate.
    pub per_minute: u32,
}

impl Quota {
    /// Time to regain one request.
    fn interval(self) -> Duration {
        Duration::from_secs(60) / self.per_minute.max(1)
    }

    /// How far ahead of now a bucket's "full again" instant may be.
    fn tolerance(self) -> Duration {
        self.interval() * self.burst
    }
}

/// Why a `[limits]` table is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitsError {
    #[error("limits.rate.{0}: burst and per_minute must be at least 1")]
    EmptyQuota(&'static str),
    #[error("limits.max_outstanding_logins must be at least 1")]
    NoLogins,
    #[error("limits.trusted_proxies: `{0}` is not an address or address/prefix")]
    BadProxy(String),
    #[error(
        "limits.sessions.{0}: lifetimes must be at least one second, and an idle one no longer than its absolute one"
    )]
    BadLifetime(&'static str),
}

/// The `[limits]` table.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Logins in flight at once; past it, `/authorize` answers
    /// `temporarily_unavailable`.
    pub max_outstanding_logins: usize,
    /// Proxies whose `X-Forwarded-For` names the client (addresses or
    /// `address/prefix` ranges). Empty by default: the client is the TCP
    /// peer, and a header any client can send is ignored.
    pub trusted_proxies: Vec<String>,
    pub rate: RateLimits,
    /// How long sessions and refresh tokens live.
    pub sessions: SessionLimits,
    /// Not configurable: tests shorten it.
    #[serde(skip)]
    pub sweep_interval: Duration,
}

/// The `[limits.sessions]` table: lifetimes in seconds.
///
/// ```toml
/// [limits.sessions]
/// idle_seconds = 259200                    # 3 days unused
/// absolute_seconds = 2592000               # 30 days after the login
/// refresh_token_idle_seconds = 1296000     # 15 days unused
/// refresh_token_absolute_seconds = 2592000 # 30 days after the login
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionLimits {
    pub idle_seconds: u64,
    pub absolute_seconds: u64,
    pub refresh_token_idle_seconds: u64,
    pub refresh_token_absolute_seconds: u64,
}

impl Default for SessionLimits {
    fn default() -> Self {
        Self {
            idle_seconds: SESSION_IDLE.as_secs(),
            absolute_seconds: SESSION_ABSOLUTE.as_secs(),
            refresh_token_idle_seconds: REFRESH_TOKEN_IDLE.as_secs(),
            refresh_token_absolute_seconds: REFRESH_TOKEN_ABSOLUTE.as_secs(),
        }
    }
}

impl SessionLimits {
    fn check(&self) -> Result<(), LimitsError> {
        for (name, idle, absolute) in [
            ("idle_seconds", self.idle_seconds, self.absolute_seconds),
            (
                "refresh_token_idle_seconds",
                self.refresh_token_idle_seconds,
                self.refresh_token_absolute_seconds,
            ),
        ] {
            if idle == 0 || absolute == 0 || idle > absolute {
                return Err(LimitsError::BadLifetime(name));
            }
        }
        Ok(())
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_outstanding_logins: MAX_OUTSTANDING_LOGINS,
            trusted_proxies: Vec::new(),
            rate: RateLimits::default(),
            sessions: SessionLimits::default(),
            sweep_interval: SWEEP_INTERVAL,
        }
    }
}

/// The `[limits.rate]` table: on by default, each bucket overridable.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimits {
    pub enabled: bool,
    pub authorize_per_ip: Quota,
    pub authorize_per_client: Quota,
    pub callback_per_ip: Quota,
    pub token_failures_per_ip: Quota,
    pub token_failures_per_client: Quota,
    pub api_failures_per_ip: Quota,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            enabled: true,
            authorize_per_ip: AUTHORIZE_PER_IP,
            authorize_per_client: AUTHORIZE_PER_CLIENT,
            callback_per_ip: CALLBACK_PER_IP,
            token_failures_per_ip: TOKEN_FAILURES_PER_IP,
            token_failures_per_client: TOKEN_FAILURES_PER_CLIENT,
            api_failures_per_ip: API_FAILURES_PER_IP,
        }
    }
}

impl Limits {
    /// Checks the table as the configuration file gives it.
    pub fn check(&self) -> Result<(), LimitsError> {
        if self.max_outstanding_logins == 0 {
            return Err(LimitsError::NoLogins);
        }
        for (name, q) in self.rate.named() {
            if q.burst == 0 || q.per_minute == 0 {
                return Err(LimitsError::EmptyQuota(name));
            }
        }
        self.sessions.check()?;
        self.proxies().map(|_| ())
    }

    fn proxies(&self) -> Result<Vec<ProxyRange>, LimitsError> {
        self.trusted_proxies
            .iter()
            .map(|p| ProxyRange::parse(p).ok_or_else(|| LimitsError::BadProxy(p.clone())))
            .collect()
    }
}

impl RateLimits {
    fn named(&self) -> [(&'static str, Quota); 6] {
        [
            ("authorize_per_ip", self.authorize_per_ip),
            ("authorize_per_client", self.authorize_per_client),
            ("callback_per_ip", self.callback_per_ip),
            ("token_failures_per_ip", self.token_failures_per_ip),
            ("token_failures_per_client", self.token_failures_per_client),
            ("api_failures_per_ip", self.api_failures_per_ip),
        ]
    }
}

/// How long to wait before a request would be allowed: `Retry-After`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter(pub Duration);

impl RetryAfter {
    /// Whole seconds, rounded up and at least one (RFC 9110 §10.2.3 has
    /// seconds only; zero would invite an immediate retry).
    pub fn seconds(self) -> u64 {
        let d = self.0;
        (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
    }
}

/// One bucket's next state under GCRA: `tat` is the instant the bucket
/// would be full again (`None`: full now). A request conforms if taking it
/// leaves `tat` within `burst` intervals of now.
fn gcra(tat: Option<Instant>, now: Instant, quota: Quota) -> Result<Instant, RetryAfter> {
    let base = tat.map_or(now, |t| t.max(now));
    let next = base + quota.interval();
    let limit = now + quota.tolerance();
    if next > limit {
        Err(RetryAfter(next - limit))
    } else {
        Ok(next)
    }
}

/// Token buckets, one per key, never more than [`MAX_TRACKED_KEYS`] keys.
pub struct Buckets<K> {
    quota: Quota,
    max_keys: usize,
    table: Mutex<Table<K>>,
}

struct Table<K> {
    /// Each tracked key's "full again" instant; a key whose instant has
    /// passed holds a full bucket, the same as no entry, and may be dropped.
    tat: HashMap<K, Instant>,
    /// The one bucket new keys share while the table is full.
    overflow: Option<Instant>,
    /// While the table is full, no entry can be dropped before this (the
    /// earliest instant left at the last prune): no walk until then.
    no_prune_before: Option<Instant>,
}

impl<K: Hash + Eq + Clone> Buckets<K> {
    pub fn new(quota: Quota) -> Self {
        Self::with_max_keys(quota, MAX_TRACKED_KEYS)
    }

    fn with_max_keys(quota: Quota, max_keys: usize) -> Self {
        Self {
            quota,
            max_keys,
            table: Mutex::new(Table {
                tat: HashMap::new(),
                overflow: None,
                no_prune_before: None,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table<K>> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes one request from `key`'s bucket, or says when one is there.
    pub fn take(&self, key: &K, now: Instant) -> Result<(), RetryAfter> {
        self.run(key, now, true)
    }

    /// Whether `key`'s bucket has a request left, without taking it (for
    /// counting failures: checked before the work, taken after a failure).
    pub fn check(&self, key: &K, now: Instant) -> Result<(), RetryAfter> {
        self.run(key, now, false)
    }

    fn run(&self, key: &K, now: Instant, take: bool) -> Result<(), RetryAfter> {
        let mut table = self.lock();
        let quota = self.quota;
        if let Some(&tat) = table.tat.get(key) {
            let next = gcra(Some(tat), now, quota)?;
            if take {
                table.tat.insert(key.clone(), next);
            }
            return Ok(());
        }
        if table.tat.len() >= self.max_keys {
            table.prune(now);
        }
        if table.tat.len() >= self.max_keys {
            let next = gcra(table.overflow, now, quota)?;
            if take {
                table.overflow = Some(next);
            }
            return Ok(());
        }
        let next = gcra(None, now, quota)?;
        if take {
            table.tat.insert(key.clone(), next);
        }
        Ok(())
    }

    /// Forgets the keys whose buckets are full again (run on the sweep
    /// timer, and when the table is full).
    pub fn prune(&self, now: Instant) {
        let mut table = self.lock();
        table.no_prune_before = None;
        table.prune(now);
    }

    /// Keys tracked right now.
    pub fn len(&self) -> usize {
        self.lock().tat.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<K: Hash + Eq> Table<K> {
    fn prune(&mut self, now: Instant) {
        if self.no_prune_before.is_some_and(|t| now < t) {
            return;
        }
        self.tat.retain(|_, tat| *tat > now);
        self.no_prune_before = self.tat.values().min().copied();
    }
}

/// An address as the rate limits count it: IPv4 as it is (IPv4-mapped IPv6
/// too), IPv6 by its [`IPV6_KEY_PREFIX`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AddressKey(IpAddr);

impl From<IpAddr> for AddressKey {
    fn from(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(_) => Self(ip),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self(IpAddr::V4(v4)),
                None => {
                    let mask = u128::MAX << (128 - u32::from(IPV6_KEY_PREFIX));
                    Self(IpAddr::V6((u128::from(v6) & mask).into()))
                }
            },
        }
    }
}

/// A trusted proxy: one address, or `address/prefix`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ProxyRange {
    net: IpAddr,
    prefix: u8,
}

impl ProxyRange {
    fn parse(s: &str) -> Option<Self> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let net: IpAddr = addr.trim().parse().ok()?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.trim().parse::<u8>().ok().filter(|p| *p <= max)?,
            None => max,
        };
        Some(Self { net, prefix })
    }

    fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.net, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// The rate limits of one broker.
pub struct RateLimiter {
    enabled: bool,
    trusted_proxies: Vec<ProxyRange>,
    authorize_per_ip: Buckets<AddressKey>,
    authorize_per_client: Buckets<String>,
    callback_per_ip: Buckets<AddressKey>,
    token_failures_per_ip: Buckets<AddressKey>,
    token_failures_per_client: Buckets<String>,
    api_failures_per_ip: Buckets<AddressKey>,
}

impl RateLimiter {
    /// The limiter `limits` describe. The configuration is checked when
    /// read ([`Limits::check`]); an entry of `trusted_proxies` that does not
    /// parse is left out here, trusting nothing it might have meant.
    pub fn new(limits: &Limits) -> Self {
        let r = &limits.rate;
        let trusted_proxies = limits
            .trusted_proxies
            .iter()
            .filter_map(|p| {
                let range = ProxyRange::parse(p);
                if range.is_none() {
                    tracing::warn!(proxy = %p, "limits.trusted_proxies: not an address; ignored");
                }
                range
            })
            .collect();
        Self {
            enabled: r.enabled,
            trusted_proxies,
            authorize_per_ip: Buckets::new(r.authorize_per_ip),
            authorize_per_client: Buckets::new(r.authorize_per_client),
            callback_per_ip: Buckets::new(r.callback_per_ip),
            token_failures_per_ip: Buckets::new(r.token_failures_per_ip),
            token_failures_per_client: Buckets::new(r.token_failures_per_client),
            api_failures_per_ip: Buckets::new(r.api_failures_per_ip),
        }
    }

    /// The client's address: the TCP peer, unless the peer is a trusted
    /// proxy; then the right-most address of `X-Forwarded-For` (all its
    /// headers, in order) that is not a trusted proxy itself — the left part
    /// is whatever the client chose to send. An unreadable entry stops the
    /// walk at the last proxy that was trusted.
    pub fn client_address<'a>(
        &self,
        peer: IpAddr,
        forwarded_for: impl Iterator<Item = &'a str>,
    ) -> IpAddr {
        let trusted = |ip: IpAddr| self.trusted_proxies.iter().any(|p| p.contains(ip));
        if !trusted(peer) {
            return peer;
        }
        let hops: Vec<&str> = forwarded_for.flat_map(|h| h.split(',')).collect();
        let mut client = peer;
        for hop in hops.into_iter().rev() {
            let Ok(ip) = hop.trim().parse::<IpAddr>() else {
                break;
            };
            client = ip;
            if !trusted(ip) {
                break;
            }
        }
        client
    }

    fn apply<K: Hash + Eq + Clone>(
        &self,
        buckets: &Buckets<K>,
        key: &K,
        take: bool,
    ) -> Result<(), RetryAfter> {
        if !self.enabled {
            return Ok(());
        }
        let now = Instant::now();
        if take {
            buckets.take(key, now)
        } else {
            buckets.check(key, now)
        }
    }

    /// One `/authorize` request from `from`.
    pub fn authorize(&self, from: IpAddr) -> Result<(), RetryAfter> {
        self.apply(&self.authorize_per_ip, &from.into(), true)
    }

    /// One `/authorize` request for the registered app `client_id`.
    pub fn authorize_client(&self, client_id: &str) -> Result<(), RetryAfter> {
        self.apply(&self.authorize_per_client, &client_id.to_owned(), true)
    }

    /// One `/login/callback` request from `from`.
    pub fn callback(&self, from: IpAddr) -> Result<(), RetryAfter> {
        self.apply(&self.callback_per_ip, &from.into(), true)
    }

    /// Whether a client authentication from `from` (for the registered
    /// app `client_id`, if any) may be tried.
    pub fn token_failures_allow(
        &self,
        from: IpAddr,
        client_id: Option<&str>,
    ) -> Result<(), RetryAfter> {
        self.apply(&self.token_failures_per_ip, &from.into(), false)?;
        match client_id {
            Some(id) => self.apply(&self.token_failures_per_client, &id.to_owned(), false),
            None => Ok(()),
        }
    }

    /// Counts a failed client authentication.
    pub fn token_failure(&self, from: IpAddr, client_id: Option<&str>) {
        // Already checked: a bucket emptied since by a concurrent failure
        // only makes the next attempt wait.
        let _ = self.apply(&self.token_failures_per_ip, &from.into(), true);
        if let Some(id) = client_id {
            let _ = self.apply(&self.token_failures_per_client, &id.to_owned(), true);
        }
    }

    /// Whether a management-API authentication from `from` may be tried.
    pub fn api_failures_allow(&self, from: IpAddr) -> Result<(), RetryAfter> {
        self.apply(&self.api_failures_per_ip, &from.into(), false)
    }

    /// Counts a failed management-API authentication.
    pub fn api_failure(&self, from: IpAddr) {
        let _ = self.apply(&self.api_failures_per_ip, &from.into(), true);
    }

    /// Forgets full buckets (on the sweep timer).
    pub fn prune(&self) {
        let now = Instant::now();
        self.authorize_per_ip.prune(now);
        self.authorize_per_client.prune(now);
        self.callback_per_ip.prune(now);
        self.token_failures_per_ip.prune(now);
        self.token_failures_per_client.prune(now);
        self.api_failures_per_ip.prune(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const Q: Quota = Quota {
        burst: 3,
        per_minute: 60,
    };

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn a_bucket_allows_its_burst_then_one_per_interval_and_says_when() {
        let b = Buckets::new(Q);
        let t0 = Instant::now();
        for i in 0..3 {
            assert_eq!(b.take(&"k", t0), Ok(()), "request {i} of the burst");
        }
        assert_eq!(b.take(&"k", t0), Err(RetryAfter(secs(1))));
        assert_eq!(b.check(&"k", t0 + secs(1)), Ok(()), "one regained");
        assert_eq!(b.take(&"k", t0 + secs(1)), Ok(()));
        assert_eq!(
            b.take(&"k", t0 + secs(1)),
            Err(RetryAfter(secs(1))),
            "and only one"
        );
        assert_eq!(b.take(&"other", t0), Ok(()), "keys are independent");
        assert_eq!(b.take(&"k", t0 + secs(4)), Ok(()), "full again later");
    }

    #[test]
    fn checking_a_bucket_takes_nothing() {
        let b = Buckets::new(Quota {
            burst: 1,
            per_minute: 1,
        });
        let t0 = Instant::now();
        for _ in 0..5 {
            assert_eq!(b.check(&"k", t0), Ok(()));
        }
        assert_eq!(b.take(&"k", t0), Ok(()));
        assert_eq!(b.check(&"k", t0), Err(RetryAfter(secs(60))));
    }

    #[test]
    fn the_table_never_tracks_more_keys_than_its_bound_and_new_keys_then_share_a_bucket() {
        let b = Buckets::with_max_keys(Q, 100);
        let t0 = Instant::now();
        for i in 0..10_000u32 {
            // A flood of distinct addresses, each with one request.
            let _ = b.take(&i, t0);
            assert!(b.len() <= 100, "after {i}: {}", b.len());
        }
        assert_eq!(b.len(), 100);
        // The shared bucket of the keys that found no room is empty…
        assert_eq!(b.take(&20_000, t0), Err(RetryAfter(secs(1))));
        // …tracked keys keep their own.
        assert_eq!(b.take(&0, t0), Ok(()));
        // Once their buckets are full again the keys are forgotten, and new
        // ones have room.
        let later = t0 + secs(60);
        assert_eq!(b.take(&20_000, later), Ok(()));
        assert_eq!(b.len(), 1, "the full buckets were dropped");
        b.prune(later + secs(1));
        assert!(b.is_empty());
    }

    #[test]
    fn ipv6_addresses_count_by_their_64_prefix_and_mapped_ipv4_as_ipv4() {
        let key = |s: &str| AddressKey::from(s.parse::<IpAddr>().expect("ip"));
        assert_eq!(key("2001:db8:1:2::1"), key("2001:db8:1:2:ffff::9"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(key("::ffff:192.0.2.7"), key("192.0.2.7"));
        assert_ne!(key("192.0.2.7"), key("192.0.2.8"));
    }

    fn limiter(proxies: &[&str]) -> RateLimiter {
        RateLimiter::new(&Limits {
            trusted_proxies: proxies.iter().map(|s| s.to_string()).collect(),
            ..Limits::default()
        })
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn x_forwarded_for_is_ignored_unless_the_peer_is_a_trusted_proxy() {
        let none = limiter(&[]);
        assert_eq!(
            none.client_address(ip("198.51.100.1"), ["203.0.113.9"].into_iter()),
            ip("198.51.100.1")
        );
        let trusting = limiter(&["10.0.0.2", "10.1.0.0/16"]);
        assert_eq!(
            trusting.client_address(ip("198.51.100.1"), ["203.0.113.9"].into_iter()),
            ip("198.51.100.1"),
            "a peer that is not a proxy cannot name another client"
        );
        // The client may prepend anything; the right-most untrusted hop is it.
        assert_eq!(
            trusting.client_address(
                ip("10.0.0.2"),
                ["1.2.3.4, 203.0.113.9", "10.1.5.5"].into_iter()
            ),
            ip("203.0.113.9")
        );
        assert_eq!(
            trusting.client_address(ip("10.0.0.2"), std::iter::empty()),
            ip("10.0.0.2"),
            "no header: the proxy itself"
        );
        assert_eq!(
            trusting.client_address(ip("10.0.0.2"), ["garbage, 10.1.0.9"].into_iter()),
            ip("10.1.0.9"),
            "an unreadable hop stops the walk at the last trusted one"
        );
    }

    #[test]
    fn a_limits_table_with_an_empty_quota_or_a_bad_proxy_is_refused() {
        let mut limits = Limits::default();
        limits.rate.callback_per_ip.per_minute = 0;
        assert_eq!(
            limits.check(),
            Err(LimitsError::EmptyQuota("callback_per_ip"))
        );
        let limits = Limits {
            trusted_proxies: vec!["10.0.0.0/33".into()],
            ..Limits::default()
        };
        assert!(matches!(limits.check(), Err(LimitsError::BadProxy(p)) if p == "10.0.0.0/33"));
        assert_eq!(Limits::default().check(), Ok(()));
    }

    #[test]
    fn retry_after_is_whole_seconds_rounded_up_and_never_zero() {
        assert_eq!(RetryAfter(Duration::from_millis(1)).seconds(), 1);
        assert_eq!(RetryAfter(Duration::from_millis(1500)).seconds(), 2);
        assert_eq!(RetryAfter(secs(3)).seconds(), 3);
        assert_eq!(RetryAfter(Duration::ZERO).seconds(), 1);
    }
}
