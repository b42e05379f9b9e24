//! The authorization server's state and rules, without HTTP: pending
//! authorization requests, authorization codes, access and refresh tokens.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::{SecureRandom, SystemRandom};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::DevUser;

/// How long a person has to fill in the login form.
const PENDING_LIFETIME: Duration = Duration::from_secs(30 * 60);
/// RFC 6749 §4.1.2: "A maximum authorization code lifetime of 10 minutes is
/// RECOMMENDED."
pub(super) const CODE_LIFETIME: Duration = Duration::from_secs(10 * 60);
/// The `expires_in` of every access token issued.
pub(super) const ACCESS_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);
/// Refresh tokens expire too, so that their table can be purged.
const REFRESH_TOKEN_LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);
/// Entries per table: the form is reachable from a browser, so anyone can
/// create pending requests; expired entries are purged before refusing.
pub(super) const MAX_ENTRIES: usize = 10_000;

/// What a client asked for at the authorization endpoint, kept server-side
/// until the user logs in or denies.
#[derive(Debug, Clone)]
pub(super) struct AuthRequest {
    pub client_id: String,
    pub redirect_uri: String,
    pub state: Option<String>,
    /// As requested; granted as is.
    pub scope: String,
    /// An S256 `code_challenge` (RFC 7636 §4.3), the only method supported.
    pub code_challenge: Option<String>,
    /// OpenID Connect's `nonce`, returned in the id_token.
    pub nonce: Option<String>,
}

/// Tokens issued at the token endpoint (RFC 6749 §5.1).
#[derive(Debug)]
pub(super) struct Tokens {
    pub access_token: String,
    pub refresh_token: String,
    pub scope: String,
    pub expires_in: u64,
    /// Who they were issued to and for whom: what an id_token says.
    pub client_id: String,
    pub user: DevUser,
    pub nonce: Option<String>,
}

/// A token endpoint error; the variants are the RFC 6749 §5.2 codes.
#[derive(Debug, thiserror::Error)]
pub(super) enum TokenError {
    #[error("{0}")]
    InvalidRequest(&'static str),
    #[error("{0}")]
    InvalidClient(&'static str),
    #[error("{0}")]
    InvalidGrant(&'static str),
    #[error("{0}")]
    UnsupportedGrantType(&'static str),
    /// Not an RFC 6749 §5.2 code: the provider itself failed.
    #[error(transparent)]
    Unavailable(#[from] Unavailable),
}

impl TokenError {
    /// The `error` value of the response.
    pub(super) fn code(&self) -> &'static str {
        match self {
            Self::InvalidRequest(_) => "invalid_request",
            Self::InvalidClient(_) => "invalid_client",
            Self::InvalidGrant(_) => "invalid_grant",
            Self::UnsupportedGrantType(_) => "unsupported_grant_type",
            Self::Unavailable(_) => "temporarily_unavailable",
        }
    }
}

/// The provider could not store or generate something.
#[derive(Debug, thiserror::Error)]
pub(super) enum Unavailable {
    #[error("the system random generator failed")]
    Random,
    #[error("too many pending requests, codes or tokens; try again later")]
    Full,
}

/// Random values: 32 bytes from the system generator, base64url.
pub(super) fn random_token(rng: &SystemRandom) -> Result<String, Unavailable> {
    let mut bytes = [0u8; 32];
    rng.fill(&mut bytes).map_err(|_| Unavailable::Random)?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// RFC 7636 §4.1/§4.2: a verifier or challenge is 43 to 128 unreserved
/// characters.
pub(super) fn is_pkce_value(value: &str) -> bool {
    (43..=128).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

/// RFC 7636 §4.6: `BASE64URL(SHA256(code_verifier)) == code_challenge`.
fn pkce_matches(challenge: &str, verifier: &str) -> bool {
    let computed = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    bool::from(computed.as_bytes().ct_eq(challenge.as_bytes()))
}

/// An entry that stops being valid at some time.
trait Expiring {
    fn expires_at(&self) -> Option<SystemTime>;
    fn live(&self, now: SystemTime) -> bool {
        self.expires_at().is_none_or(|at| now < at)
    }
}

struct Pending {
    request: AuthRequest,
    expires_at: SystemTime,
}

struct Code {
    request: AuthRequest,
    user: DevUser,
    expires_at: SystemTime,
    /// Set by the first token request that presents it.
    spent: bool,
    /// The tokens issued for it, revoked if it is presented again.
    issued: Vec<String>,
}

struct Access {
    user: DevUser,
    expires_at: Option<SystemTime>,
}

struct Refresh {
    client_id: String,
    user: DevUser,
    scope: String,
    expires_at: SystemTime,
}

impl Expiring for Pending {
    fn expires_at(&self) -> Option<SystemTime> {
        Some(self.expires_at)
    }
}
impl Expiring for Code {
    fn expires_at(&self) -> Option<SystemTime> {
        Some(self.expires_at)
    }
}
impl Expiring for Access {
    fn expires_at(&self) -> Option<SystemTime> {
        self.expires_at
    }
}
impl Expiring for Refresh {
    fn expires_at(&self) -> Option<SystemTime> {
        Some(self.expires_at)
    }
}

/// Inserts `value` under a fresh random key, purging expired entries if the
/// table is full.
fn insert<V: Expiring>(
    table: &mut HashMap<String, V>,
    value: V,
    now: SystemTime,
    rng: &SystemRandom,
) -> Result<String, Unavailable> {
    if table.len() >= MAX_ENTRIES {
        table.retain(|_, v| v.live(now));
        if table.len() >= MAX_ENTRIES {
            return Err(Unavailable::Full);
        }
    }
    let key = random_token(rng)?;
    table.insert(key.clone(), value);
    Ok(key)
}

/// Everything the provider has issued and not yet forgotten.
#[derive(Default)]
pub(super) struct State {
    pending: HashMap<String, Pending>,
    codes: HashMap<String, Code>,
    access: HashMap<String, Access>,
    refresh: HashMap<String, Refresh>,
}

impl State {
    /// A state knowing the pre-issued access tokens, which never expire.
    pub(super) fn with_tokens(tokens: Vec<(String, DevUser)>) -> Self {
        let access = tokens
            .into_iter()
            .map(|(token, user)| {
                let access = Access {
                    user,
                    expires_at: None,
                };
                (token, access)
            })
            .collect();
        Self {
            access,
            ..Self::default()
        }
    }

    /// Keeps `request` until the user answers; returns its opaque id.
    pub(super) fn begin(
        &mut self,
        request: AuthRequest,
        now: SystemTime,
        rng: &SystemRandom,
    ) -> Result<String, Unavailable> {
        let pending = Pending {
            request,
            expires_at: now + PENDING_LIFETIME,
        };
        insert(&mut self.pending, pending, now, rng)
    }

    /// The pending request `id`, if it is live.
    pub(super) fn pending(&self, id: &str, now: SystemTime) -> Option<&AuthRequest> {
        let pending = self.pending.get(id).filter(|p| p.live(now))?;
        Some(&pending.request)
    }

    /// Removes the pending request `id`: the user answered.
    pub(super) fn finish(&mut self, id: &str, now: SystemTime) -> Option<AuthRequest> {
        let pending = self.pending.remove(id).filter(|p| p.live(now))?;
        Some(pending.request)
    }

    /// Issues a single-use authorization code for `user` (RFC 6749 §4.1.2).
    pub(super) fn issue_code(
        &mut self,
        request: AuthRequest,
        user: DevUser,
        now: SystemTime,
        rng: &SystemRandom,
    ) -> Result<String, Unavailable> {
        let code = Code {
            request,
            user,
            expires_at: now + CODE_LIFETIME,
            spent: false,
            issued: Vec::new(),
        };
        insert(&mut self.codes, code, now, rng)
    }

    /// The `authorization_code` grant (RFC 6749 §4.1.3) for the
    /// authenticated client `client_id`.
    ///
    /// The first presentation spends the code even if it fails, so a PKCE
    /// verifier cannot be guessed; a second one revokes the tokens issued
    /// for it (RFC 6749 §4.1.2, RFC 9700 §4.2.4).
    pub(super) fn exchange_code(
        &mut self,
        client_id: &str,
        code: &str,
        redirect_uri: &str,
        code_verifier: Option<&str>,
        now: SystemTime,
        rng: &SystemRandom,
    ) -> Result<Tokens, TokenError> {
        let Some(entry) = self.codes.get_mut(code).filter(|c| c.live(now)) else {
            return Err(TokenError::InvalidGrant(
                "unknown or expired authorization code",
            ));
        };
        if entry.spent {
            for token in std::mem::take(&mut entry.issued) {
                self.access.remove(&token);
                self.refresh.remove(&token);
            }
            return Err(TokenError::InvalidGrant(
                "authorization code already used; the tokens issued for it are revoked",
            ));
        }
        entry.spent = true;
        let request = entry.request.clone();
        let user = entry.user.clone();

        if request.client_id != client_id {
            return Err(TokenError::InvalidGrant(
                "authorization code issued to another client",
            ));
        }
        // RFC 6749 §4.1.3: identical to the authorization request's.
        if request.redirect_uri != redirect_uri {
            return Err(TokenError::InvalidGrant(
                "redirect_uri differs from the authorization request's",
            ));
        }
        match (request.code_challenge.as_deref(), code_verifier) {
            (None, None) => {}
            (Some(challenge), Some(verifier)) => {
                if !is_pkce_value(verifier) || !pkce_matches(challenge, verifier) {
                    return Err(TokenError::InvalidGrant(
                        "code_verifier does not match the code_challenge",
                    ));
                }
            }
            (Some(_), None) => {
                return Err(TokenError::InvalidGrant(
                    "code_verifier required: the authorization request had a code_challenge",
                ));
            }
            // RFC 9700 §2.1.1: refused, against PKCE downgrade attacks.
            (None, Some(_)) => {
                return Err(TokenError::InvalidGrant(
                    "code_verifier given but the authorization request had no code_challenge",
                ));
            }
        }

        let mut tokens = self.issue_tokens(client_id, user, request.scope, now, rng)?;
        tokens.nonce = request.nonce;
        if let Some(entry) = self.codes.get_mut(code) {
            entry.issued = vec![tokens.access_token.clone(), tokens.refresh_token.clone()];
        }
        Ok(tokens)
    }

    /// The `refresh_token` grant (RFC 6749 §6) for the authenticated client
    /// `client_id`. The refresh token is rotated (RFC 9700 §4.14.2), and
    /// one presented by another client is revoked too.
    pub(super) fn refresh(
        &mut self,
        client_id: &str,
        refresh_token: &str,
        now: SystemTime,
        rng: &SystemRandom,
    ) -> Result<Tokens, TokenError> {
        let valid = self
            .refresh
            .get(refresh_token)
            .is_some_and(|r| r.live(now) && r.client_id == client_id);
        let entry = match self.refresh.remove(refresh_token) {
            Some(entry) if valid => entry,
            _ => {
                return Err(TokenError::InvalidGrant(
                    "unknown or expired refresh token, or issued to another client",
                ));
            }
        };
        Ok(self.issue_tokens(client_id, entry.user, entry.scope, now, rng)?)
    }

    fn issue_tokens(
        &mut self,
        client_id: &str,
        user: DevUser,
        scope: String,
        now: SystemTime,
        rng: &SystemRandom,
    ) -> Result<Tokens, Unavailable> {
        let issued_to = user.clone();
        let refresh = Refresh {
            client_id: client_id.to_owned(),
            user: user.clone(),
            scope: scope.clone(),
            expires_at: now + REFRESH_TOKEN_LIFETIME,
        };
        let refresh_token = insert(&mut self.refresh, refresh, now, rng)?;
        let access = Access {
            user,
            expires_at: Some(now + ACCESS_TOKEN_LIFETIME),
        };
        let access_token = match insert(&mut self.access, access, now, rng) {
            Ok(token) => token,
            Err(e) => {
                self.refresh.remove(&refresh_token);
                return Err(e);
            }
        };
        Ok(Tokens {
            access_token,
            refresh_token,
            scope,
            expires_in: ACCESS_TOKEN_LIFETIME.as_secs(),
            client_id: client_id.to_owned(),
            user: issued_to,
            nonce: None,
        })
    }

    /// The user behind a live access token.
    pub(super) fn user(&self, access_token: &str, now: SystemTime) -> Option<&DevUser> {
        let access = self.access.get(access_token).filter(|a| a.live(now))?;
        Some(&access.user)
    }
}
