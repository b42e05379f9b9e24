//! APIs that apps get access tokens for: Auth0's resource servers
//! (`/api/v2/resource-servers`), with the names Auth0 gives their fields.
//! An app asks for one with `audience=<identifier>` at `/authorize` and gets
//! an RFC 9068 JWT access token for it.

use serde::{Deserialize, Serialize};

use crate::keys::Alg;
use crate::store::{StoredResourceServer, StoredScope};

/// An access token's lifetime unless the API says otherwise: one hour. A
/// JWT access token cannot be revoked before it expires (the API checks
/// it alone), so it is kept as short as the broker's own tokens; Auth0's
/// default is a day.
pub const DEFAULT_TOKEN_LIFETIME: u64 = 3600;
/// The longest an API may let its tokens live: 30 days, Auth0's limit.
pub const MAX_TOKEN_LIFETIME: u64 = 30 * 24 * 3600;
/// Longest identifier accepted: a URL, as Auth0 recommends, is well under.
pub const MAX_IDENTIFIER_BYTES: usize = 600;
/// Most scopes one API may define: each is a few bytes in every token
/// listing them; Auth0 allows far fewer per token in practice.
pub const MAX_SCOPES: usize = 500;
/// Longest scope value.
pub const MAX_SCOPE_BYTES: usize = 280;

/// An API, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceServer {
    /// `rs_` and a suffix; never changes.
    pub id: String,
    pub name: String,
    /// The `audience` apps ask for: unique, never changes.
    pub identifier: String,
    pub scopes: Vec<ApiScope>,
    /// How its access tokens are signed.
    pub signing_alg: Alg,
    /// Seconds its access tokens live.
    pub token_lifetime: u64,
    /// Whether apps may get refresh tokens for it (`offline_access`).
    pub allow_offline_access: bool,
}

/// One scope an API accepts (Auth0's `{value, description}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiScope {
    pub value: String,
    #[serde(default)]
    pub description: String,
}

impl ResourceServer {
    /// Whether the API defines `scope`.
    pub fn accepts(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s.value == scope)
    }

    /// Checks every field; the error names the one refused.
    pub fn check(&self) -> Result<(), String> {
        if self.identifier.is_empty()
            || self.identifier.len() > MAX_IDENTIFIER_BYTES
            || self.identifier.chars().any(char::is_whitespace)
        {
            return Err(format!(
                "identifier must be 1 to {MAX_IDENTIFIER_BYTES} bytes without spaces"
            ));
        }
        if self.name.contains(['<', '>']) {
            return Err("name cannot contain < or >".into());
        }
        if !(1..=MAX_TOKEN_LIFETIME).contains(&self.token_lifetime) {
            return Err(format!(
                "token_lifetime must be 1 to {MAX_TOKEN_LIFETIME} seconds"
            ));
        }
        if self.scopes.len() > MAX_SCOPES {
            return Err(format!("at most {MAX_SCOPES} scopes"));
        }
        for scope in &self.scopes {
            // RFC 6749 §3.3: a scope token is printable ASCII but space,
            // `"` and `\`.
            let ok = !scope.value.is_empty()
                && scope.value.len() <= MAX_SCOPE_BYTES
                && scope
                    .value
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\');
            if !ok {
                return Err(format!(
                    "scope `{}` is not a scope token (RFC 6749 §3.3)",
                    scope.value
                ));
            }
        }
        Ok(())
    }

    /// The stored form.
    pub fn to_stored(&self) -> StoredResourceServer {
        StoredResourceServer {
            id: self.id.clone(),
            name: self.name.clone(),
            identifier: self.identifier.clone(),
            scopes: self
                .scopes
                .iter()
                .map(|s| StoredScope {
                    value: s.value.clone(),
                    description: s.description.clone(),
                })
                .collect(),
            signing_alg: self.signing_alg.as_str().to_owned(),
            token_lifetime: self.token_lifetime,
            allow_offline_access: self.allow_offline_access,
        }
    }

    /// Reads a stored API back; the error names the field it refuses.
    pub fn from_stored(stored: StoredResourceServer) -> Result<Self, String> {
        let api = Self {
            signing_alg: stored
                .signing_alg
                .parse()
                .map_err(|e| format!("signing_alg: {e}"))?,
            id: stored.id,
            name: stored.name,
            identifier: stored.identifier,
            scopes: stored
                .scopes
                .into_iter()
                .map(|s| ApiScope {
                    value: s.value,
                    description: s.description,
                })
                .collect(),
            token_lifetime: stored.token_lifetime,
            allow_offline_access: stored.allow_offline_access,
        };
        api.check()?;
        Ok(api)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api() -> ResourceServer {
        ResourceServer {
            id: "rs_1".into(),
            name: "Orders".into(),
            identifier: "https://orders.example.com".into(),
            scopes: vec![ApiScope {
                value: "read:orders".into(),
                description: "Read orders".into(),
            }],
            signing_alg: Alg::Es256,
            token_lifetime: 600,
            allow_offline_access: true,
        }
    }

    #[test]
    fn an_api_round_trips_through_its_stored_form() {
        assert_eq!(ResourceServer::from_stored(api().to_stored()), Ok(api()));
        assert!(api().accepts("read:orders") && !api().accepts("write:orders"));
    }

    #[test]
    fn identifiers_scopes_lifetimes_and_algorithms_are_checked() {
        for (broken, field) in [
            (
                ResourceServer {
                    identifier: String::new(),
                    ..api()
                },
                "identifier",
            ),
            (
                ResourceServer {
                    identifier: "has space".into(),
                    ..api()
                },
                "identifier",
            ),
            (
                ResourceServer {
                    token_lifetime: 0,
                    ..api()
                },
                "token_lifetime",
            ),
            (
                ResourceServer {
                    token_lifetime: MAX_TOKEN_LIFETIME + 1,
                    ..api()
                },
                "token_lifetime",
            ),
            (
                ResourceServer {
                    scopes: vec![ApiScope {
                        value: "two words".into(),
                        description: String::new(),
                    }],
                    ..api()
                },
                "scope",
            ),
        ] {
            let err = broken.check().expect_err(field);
            assert!(err.contains(field), "{err}");
        }
        let mut stored = api().to_stored();
        stored.signing_alg = "HS256".into();
        assert!(
            ResourceServer::from_stored(stored)
                .unwrap_err()
                .contains("signing_alg")
        );
    }
}
