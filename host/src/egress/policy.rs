//! The per-connection egress policy: which hosts, which schemes, which limits.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

use url::Url;

/// Per-request time limit. Providers' userinfo endpoints answer in well under
/// a second; five leaves room for a slow one without holding a login for long.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Upper bound for a connection's request timeout.
pub const MAX_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Lower bound for a connection's request timeout: zero would fail every
/// request without trying; 10 ms (as the mapper's own minimum deadline) is
/// enough for a provider on the same host.
pub const MIN_REQUEST_TIMEOUT: Duration = Duration::from_millis(10);
/// Largest response body a mapper may receive. Userinfo documents are a few
/// KiB; 1 MiB fits any of them and keeps a hostile provider from filling memory.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 1024 * 1024;
/// Upper bound for a connection's response cap.
pub const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;
/// Lower bound for a connection's response cap: zero would refuse every
/// response with a body; 1 KiB still lets a mapper read a provider's error.
pub const MIN_RESPONSE_BYTES: usize = 1024;
/// Largest request body a mapper may send (form posts, GraphQL queries).
/// Zero is a valid setting (bodyless requests only), so there is no minimum.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 256 * 1024;
/// Upper bound for a connection's request-body cap. Bodies are held in
/// memory whole; real ones are a few KiB.
pub const MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024;
/// Requests per invocation. Real mappers need one to three (GitHub needs two);
/// ten leaves room while stopping a loop from hammering the provider.
pub const DEFAULT_MAX_REQUESTS: u32 = 10;
/// Upper bound for a connection's request budget.
pub const MAX_REQUESTS: u32 = 100;

/// Names that only ever resolve inside a private network, as a whole name
/// or its last labels: `localhost` and `*.localhost` (RFC 6761 §6.3),
/// `*.local` (multicast DNS, RFC 6762), `*.internal` (ICANN's private-use
/// TLD, 2024; also GCP's `metadata.google.internal`), `*.home.arpa`
/// (RFC 8375), and the TLDs RFC 6762 Appendix G lists as in private use
/// (`intranet`, `private`, `corp`, `home`, `lan`). A rule naming one of these
/// or an IP literal is private reach, whatever the name resolves to today.
pub const PRIVATE_NAME_SUFFIXES: [&str; 9] = [
    "localhost",
    "local",
    "internal",
    "home.arpa",
    "intranet",
    "private",
    "corp",
    "home",
    "lan",
];

/// How a changed policy reaches further into private networks than before:
/// what only the operator (the configuration file) or a management caller
/// holding `write:egress` may grant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrivateReach {
    #[error("the change turns on `mapper_egress.allow_private_networks`")]
    AllowsPrivateNetworks,
    #[error(
        "the change adds `{0}`, an IP literal or a private name, to the hosts the connection reaches"
    )]
    AddsPrivateHost(String),
    #[error(
        "the change adds `{0}` to the hosts of a connection allowed private networks (any name may resolve to a private address)"
    )]
    WidensPrivateConnection(String),
}

/// What one connection's mapper may reach, and how much.
#[derive(Debug, Clone, PartialEq)]
pub struct EgressPolicy {
    /// Hosts the mapper may call. Empty means no network at all.
    pub allowed_hosts: Vec<HostRule>,
    /// Allow loopback, private and link-local addresses (after resolution).
    /// Cloud metadata addresses stay refused even then.
    pub allow_private_networks: bool,
    /// Time limit for one request, connect to last byte.
    pub request_timeout: Duration,
    /// Cap on one response body.
    pub max_response_bytes: usize,
    /// Cap on one request body.
    pub max_request_bytes: usize,
    /// Requests allowed in one invocation.
    pub max_requests: u32,
}

impl Default for EgressPolicy {
    /// The closed sandbox: no host allowed.
    fn default() -> Self {
        Self {
            allowed_hosts: Vec::new(),
            allow_private_networks: false,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            max_requests: DEFAULT_MAX_REQUESTS,
        }
    }
}

/// A policy's limits pulled into their bounds: what a session enforces.
/// Computed once per session, so no request can skip a bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EffectiveLimits {
    pub(crate) request_timeout: Duration,
    pub(crate) max_response_bytes: usize,
    pub(crate) max_request_bytes: usize,
    pub(crate) max_requests: u32,
}

impl EgressPolicy {
    /// This policy's limits within their bounds: a connection's overrides
    /// loosen the sandbox only so far.
    pub(crate) fn clamped_limits(&self) -> EffectiveLimits {
        EffectiveLimits {
            request_timeout: self
                .request_timeout
                .clamp(MIN_REQUEST_TIMEOUT, MAX_REQUEST_TIMEOUT),
            max_response_bytes: self
                .max_response_bytes
                .clamp(MIN_RESPONSE_BYTES, MAX_RESPONSE_BYTES),
            max_request_bytes: self.max_request_bytes.min(MAX_REQUEST_BYTES),
            max_requests: self.max_requests.min(MAX_REQUESTS),
        }
    }

    /// A policy allowing `hosts`, with default limits.
    pub fn allowing(hosts: impl IntoIterator<Item = HostRule>) -> Self {
        Self {
            allowed_hosts: hosts.into_iter().collect(),
            ..Self::default()
        }
    }

    /// How this policy reaches further into private networks than
    /// `before` (the same connection's policy before a change; `None` for a
    /// new connection), if it does: it turns on private networks, adds a
    /// host that is an IP literal or a private name, or adds any host while
    /// private networks are allowed. Narrowing, or a change that leaves the
    /// reach as it was, is never private reach.
    pub fn private_reach_added(&self, before: Option<&EgressPolicy>) -> Option<PrivateReach> {
        let was_private = before.is_some_and(|b| b.allow_private_networks);
        if self.allow_private_networks && !was_private {
            return Some(PrivateReach::AllowsPrivateNetworks);
        }
        let is_new = |rule: &&HostRule| before.is_none_or(|b| !b.allowed_hosts.contains(rule));
        let mut added = self.allowed_hosts.iter().filter(is_new);
        if self.allow_private_networks {
            return added
                .next()
                .map(|rule| PrivateReach::WidensPrivateConnection(rule.to_string()));
        }
        added
            .find(|rule| rule.names_private_host())
            .map(|rule| PrivateReach::AddsPrivateHost(rule.to_string()))
    }

    /// Why `url` may not be requested, if it may not. Addresses are checked
    /// later, after resolution.
    pub(crate) fn check_url(&self, url: &Url) -> Result<(), String> {
        let host = url.host_str().unwrap_or_default();
        let port = url.port_or_known_default();
        let mut matched = self
            .allowed_hosts
            .iter()
            .filter(|rule| rule.matches_host(host, port))
            .peekable();
        if matched.peek().is_none() {
            return Err(format!(
                "host `{host}` is not on this connection's allow-list"
            ));
        }
        if url.scheme() == "http" && !matched.any(|rule| rule.allow_http) {
            return Err(format!(
                "plain http to `{host}` is not allowed; use https or allow the host as http://{host}"
            ));
        }
        Ok(())
    }
}

/// One allowed host: `api.example.com`, `*.example.com`, `api.example.com:8443`,
/// or with a scheme, `http://127.0.0.1:8080` to allow plain HTTP to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRule {
    host: HostPattern,
    port: Option<u16>,
    allow_http: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    Exact(String),
    /// `*.example.com`: any name ending in `.example.com`, not the apex.
    /// Kept with its leading dot (`.example.com`) so matching needs no
    /// allocation.
    Suffix(String),
}

impl HostRule {
    /// The rule for exactly the host and port `url` connects to (its
    /// scheme's default port when it names none); allows plain HTTP only
    /// when `url` itself is `http://`.
    pub fn for_url(url: &Url) -> Option<Self> {
        let host = url.host_str()?.to_ascii_lowercase();
        Some(Self {
            host: HostPattern::Exact(host),
            port: url.port_or_known_default(),
            allow_http: url.scheme() == "http",
        })
    }

    /// Whether the rule names an IP literal or a name that is private by
    /// its suffix ([`PRIVATE_NAME_SUFFIXES`]); a wildcard is judged by the
    /// domain under it (`*.internal` is private).
    pub fn names_private_host(&self) -> bool {
        let name = match &self.host {
            HostPattern::Exact(h) => h.as_str(),
            HostPattern::Suffix(dot_suffix) => &dot_suffix[1..],
        };
        // A trailing dot names the same host (RFC 1034 §3.1).
        let name = name.strip_suffix('.').unwrap_or(name);
        if name.starts_with('[') || name.parse::<IpAddr>().is_ok() {
            return true;
        }
        PRIVATE_NAME_SUFFIXES.iter().any(|suffix| {
            name == *suffix
                || name
                    .strip_suffix(suffix)
                    .is_some_and(|rest| rest.ends_with('.'))
        })
    }

    /// Runs per rule per request, so it compares in place: the URL parser
    /// already lowercases http(s) hosts, and the rule was lowercased at parse.
    fn matches_host(&self, host: &str, port: Option<u16>) -> bool {
        let host_ok = match &self.host {
            HostPattern::Exact(h) => h.eq_ignore_ascii_case(host),
            HostPattern::Suffix(dot_suffix) => {
                // Longer than the suffix: at least one label before it.
                host.len() > dot_suffix.len()
                    && host.as_bytes()[host.len() - dot_suffix.len()..]
                        .eq_ignore_ascii_case(dot_suffix.as_bytes())
            }
        };
        host_ok && (self.port.is_none() || self.port == port)
    }
}

impl fmt::Display for HostRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.allow_http {
            f.write_str("http://")?;
        }
        match &self.host {
            HostPattern::Exact(h) => f.write_str(h)?,
            HostPattern::Suffix(dot_suffix) => write!(f, "*{dot_suffix}")?,
        }
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        Ok(())
    }
}

impl FromStr for HostRule {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (allow_http, rest) = match s.split_once("://") {
            Some(("http", rest)) => (true, rest),
            Some(("https", rest)) => (false, rest),
            Some((scheme, _)) => {
                return Err(format!("`{s}`: scheme `{scheme}` is not http or https"));
            }
            None => (false, s),
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.is_empty() || rest.contains(['/', '?', '#', '@']) {
            return Err(format!(
                "`{s}` is not a host: expected host, host:port or *.domain"
            ));
        }
        let (wildcard, rest) = match rest.strip_prefix("*.") {
            Some(r) => (true, r),
            None => (false, rest),
        };
        // Let the URL parser do host syntax, IDNA and IPv6 brackets.
        let url = Url::parse(&format!("http://{rest}/"))
            .map_err(|e| format!("`{s}` is not a valid host: {e}"))?;
        let host = url
            .host_str()
            .ok_or_else(|| format!("`{s}` has no host"))?
            .to_ascii_lowercase();
        if wildcard
            && url
                .host()
                .is_some_and(|h| !matches!(h, url::Host::Domain(_)))
        {
            return Err(format!("`{s}`: wildcards apply to domain names only"));
        }
        // `url.port()` is `None` for a scheme's default port as well as for
        // no port at all, and `None` here means "any port": `host:80` must
        // not allow every port. A second parse as https tells them apart —
        // its default port is 443, so it keeps an explicit 80.
        let port = url.port().or_else(|| {
            Url::parse(&format!("https://{rest}/"))
                .ok()
                .and_then(|u| u.port())
        });
        Ok(Self {
            host: if wildcard {
                HostPattern::Suffix(format!(".{host}"))
            } else {
                HostPattern::Exact(host)
            },
            port,
            allow_http,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(rules: &[&str]) -> EgressPolicy {
        EgressPolicy::allowing(rules.iter().map(|r| r.parse().expect("rule parses")))
    }

    fn check(p: &EgressPolicy, url: &str) -> Result<(), String> {
        p.check_url(&Url::parse(url).expect("url parses"))
    }

    #[test]
    fn an_empty_policy_allows_nothing() {
        assert!(check(&EgressPolicy::default(), "https://example.com/").is_err());
    }

    #[test]
    fn exact_hosts_match_case_insensitively_and_nothing_else() {
        let p = policy(&["API.example.com"]);
        assert!(check(&p, "https://api.example.com/userinfo").is_ok());
        assert!(check(&p, "https://API.EXAMPLE.COM/").is_ok());
        let err = check(&p, "https://evil.example.com/").unwrap_err();
        assert!(err.contains("not on this connection's allow-list"), "{err}");
        assert!(check(&p, "https://api.example.com.evil.net/").is_err());
    }

    #[test]
    fn plain_http_needs_an_http_rule() {
        let p = policy(&["api.example.com"]);
        let err = check(&p, "http://api.example.com/").unwrap_err();
        assert!(err.contains("plain http"), "{err}");
        let p = policy(&["http://127.0.0.1:8080"]);
        assert!(check(&p, "http://127.0.0.1:8080/x").is_ok());
        assert!(check(&p, "http://127.0.0.1:8081/x").is_err());
    }

    #[test]
    fn a_rule_naming_a_default_port_allows_that_port_only() {
        let p = policy(&["http://127.0.0.1:80"]);
        assert!(check(&p, "http://127.0.0.1/").is_ok());
        assert!(check(&p, "http://127.0.0.1:80/").is_ok());
        assert!(check(&p, "http://127.0.0.1:8080/").is_err());
        let p = policy(&["api.example.com:443"]);
        assert!(check(&p, "https://api.example.com/").is_ok());
        assert!(check(&p, "https://api.example.com:8443/").is_err());
        // 80 on an https rule is an explicit port too, not "any".
        let p = policy(&["https://api.example.com:80"]);
        assert!(check(&p, "https://api.example.com:80/").is_ok());
        assert!(check(&p, "https://api.example.com/").is_err());
    }

    #[test]
    fn a_rule_without_a_port_allows_any_port() {
        let p = policy(&["auth.example.com", "http://127.0.0.1"]);
        assert!(check(&p, "https://auth.example.com/").is_ok());
        assert!(check(&p, "https://auth.example.com:8443/").is_ok());
        assert!(check(&p, "http://127.0.0.1/").is_ok());
        assert!(check(&p, "http://127.0.0.1:8080/").is_ok());
    }

    #[test]
    fn wildcards_match_subdomains_but_not_the_apex() {
        let p = policy(&["*.example.com"]);
        assert!(check(&p, "https://a.example.com/").is_ok());
        assert!(check(&p, "https://a.b.example.com/").is_ok());
        assert!(check(&p, "https://example.com/").is_err());
        assert!(check(&p, "https://badexample.com/").is_err());
        assert!(check(&p, "https://A.Example.COM/").is_ok());
    }

    #[test]
    fn rules_that_are_not_hosts_are_refused() {
        for bad in [
            "",
            "https://a.com/path",
            "ftp://a.com",
            "user@a.com",
            "*.127.0.0.1",
        ] {
            assert!(bad.parse::<HostRule>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn limits_are_clamped_into_their_bounds() {
        let wild = EgressPolicy {
            request_timeout: Duration::from_secs(3600),
            max_response_bytes: usize::MAX,
            max_request_bytes: usize::MAX,
            max_requests: u32::MAX,
            ..EgressPolicy::default()
        }
        .clamped_limits();
        assert_eq!(wild.request_timeout, MAX_REQUEST_TIMEOUT);
        assert_eq!(wild.max_response_bytes, MAX_RESPONSE_BYTES);
        assert_eq!(wild.max_request_bytes, MAX_REQUEST_BYTES);
        assert_eq!(wild.max_requests, MAX_REQUESTS);
        let zero = EgressPolicy {
            request_timeout: Duration::ZERO,
            max_response_bytes: 0,
            max_request_bytes: 0,
            max_requests: 0,
            ..EgressPolicy::default()
        }
        .clamped_limits();
        assert_eq!(zero.request_timeout, MIN_REQUEST_TIMEOUT);
        assert_eq!(zero.max_response_bytes, MIN_RESPONSE_BYTES);
        assert_eq!(zero.max_request_bytes, 0, "bodyless requests only");
        assert_eq!(zero.max_requests, 0, "no requests at all");
    }

    #[test]
    fn ip_literals_and_private_names_are_private_hosts_and_public_names_are_not() {
        for private in [
            "127.0.0.1",
            "http://10.0.0.5:8080",
            "[::1]:9000",
            "8.8.8.8",
            "localhost",
            "http://localhost:3000",
            "api.localhost",
            "db.internal",
            "*.internal",
            "printer.local",
            "*.local",
            "nas.home.arpa",
            "git.corp",
            "router.lan.",
        ] {
            let rule: HostRule = private.parse().expect("parses");
            assert!(rule.names_private_host(), "{private}");
        }
        for public in [
            "api.example.com",
            "*.example.com",
            "localhost.example.com",
            "internal.example.com",
            "mylocal",
            "notlan",
        ] {
            let rule: HostRule = public.parse().expect("parses");
            assert!(!rule.names_private_host(), "{public}");
        }
    }

    #[test]
    fn private_reach_is_added_by_turning_on_private_networks_or_a_private_host() {
        let public = policy(&["api.example.com"]);
        assert_eq!(public.private_reach_added(None), None);
        assert_eq!(public.private_reach_added(Some(&public)), None);

        let private_on = EgressPolicy {
            allow_private_networks: true,
            ..public.clone()
        };
        assert_eq!(
            private_on.private_reach_added(Some(&public)),
            Some(PrivateReach::AllowsPrivateNetworks)
        );
        assert_eq!(
            private_on.private_reach_added(None),
            Some(PrivateReach::AllowsPrivateNetworks)
        );

        let literal = policy(&["api.example.com", "http://10.0.0.5:8080"]);
        assert_eq!(
            literal.private_reach_added(Some(&public)),
            Some(PrivateReach::AddsPrivateHost("http://10.0.0.5:8080".into()))
        );
        let named = policy(&["api.example.com", "vault.internal"]);
        assert!(matches!(
            named.private_reach_added(Some(&public)),
            Some(PrivateReach::AddsPrivateHost(_))
        ));
        // Another public host on a public connection is not private reach.
        let wider = policy(&["api.example.com", "cdn.example.net"]);
        assert_eq!(wider.private_reach_added(Some(&public)), None);
    }

    #[test]
    fn a_connection_allowed_private_networks_may_narrow_but_not_widen_without_the_grant() {
        let granted = EgressPolicy {
            allow_private_networks: true,
            ..policy(&["idp.example.com", "http://10.0.0.5:8080"])
        };
        // Unchanged (a PATCH of the script, the scope, …): nothing added.
        assert_eq!(granted.private_reach_added(Some(&granted)), None);
        // Fewer hosts, or private networks turned off: narrowing.
        let narrower = EgressPolicy {
            allow_private_networks: true,
            ..policy(&["idp.example.com"])
        };
        assert_eq!(narrower.private_reach_added(Some(&granted)), None);
        let off = policy(&["idp.example.com"]);
        assert_eq!(off.private_reach_added(Some(&granted)), None);
        // Any new host, public-looking or not: a name can resolve anywhere.
        let widened = EgressPolicy {
            allow_private_networks: true,
            ..policy(&[
                "idp.example.com",
                "http://10.0.0.5:8080",
                "evil.example.net",
            ])
        };
        assert_eq!(
            widened.private_reach_added(Some(&granted)),
            Some(PrivateReach::WidensPrivateConnection(
                "evil.example.net".into()
            ))
        );
    }

    #[test]
    fn rules_display_as_they_parse() {
        for s in [
            "api.example.com",
            "http://127.0.0.1:8080",
            "*.example.com",
            "[::1]:9000",
            "http://127.0.0.1:80",
            "api.example.com:443",
        ] {
            let rule: HostRule = s.parse().expect("parses");
            assert_eq!(rule.to_string(), s);
        }
    }
}
