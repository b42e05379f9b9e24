//! The broker's signing keys: the tokens we issue are compact JWS (RFC 7515)
//! signed with them, and apps verify those against the JWKS (RFC 7517) we
//! publish.
//!
//! The key document ([`file`]), held by the store, lists every key we have
//! signed with, so rotation is adding a key: all of them stay in the JWKS,
//! and the newest per algorithm signs. Replacing the keys invalidates every
//! token issued, so a document we cannot parse is an error, never a reason
//! to generate new keys.

mod file;
mod rotation;

use std::fmt;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::write::EncoderStringWriter;
// Signing is aws-lc-rs, not ring: an RSA-2048 signature, the largest cost of
// an RS256 login, takes it less than half of ring's time (OpenSSL's fast
// paths), and ECDSA P-256 about 20 % less (BENCHMARKS.md, "Signing").
use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::rand::{SecureRandom as _, SystemRandom};
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _,
    RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_SHA256, RsaKeyPair, UnparsedPublicKey,
    VerificationAlgorithm,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

pub use self::file::KeyState;
use self::file::{KeyFile, StoredKey};
pub use self::rotation::{KeyInfo, RotationError};

/// Size of the RSA keys we generate. 2048 bits is what RFC 7518 §3.3 requires
/// at least, and every OpenID Connect client accepts.
const RSA_BITS: KeySize = KeySize::Rsa2048;

/// The largest RSA signature we sign into a stack buffer: keys of at most
/// 4096 bits, so a larger key in the document is refused on load.
const MAX_RSA_SIGNATURE: usize = 4096 / 8;

/// Initial capacity of a signed token: a typical id_token fits, so signing
/// allocates once; a bigger one grows the string.
const TOKEN_CAPACITY: usize = 1024;

/// Longest token [`KeySet::verify`] looks at: ours are one or two KiB; a
/// caller sending more is not presenting one of them.
pub const MAX_VERIFIED_TOKEN_BYTES: usize = 16 * 1024;

/// What a token we sign is, written in its JWS header's `typ` (explicit
/// typing, RFC 8725 §3.11): one kind of token is never accepted as another
/// — an id_token is no access token, and neither is a logout token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenType {
    /// `JWT`: id_tokens, as every OpenID Connect client expects them.
    IdToken,
    /// `at+jwt`: JWT access tokens for APIs (RFC 9068 §2.1).
    AccessToken,
    /// `logout+jwt`: back-channel logout tokens (OpenID Connect
    /// Back-Channel Logout 1.0 §2.4).
    LogoutToken,
}

impl TokenType {
    const ALL: [TokenType; 3] = [Self::IdToken, Self::AccessToken, Self::LogoutToken];

    /// The header's `typ`.
    pub fn typ(self) -> &'static str {
        match self {
            Self::IdToken => "JWT",
            Self::AccessToken => "at+jwt",
            Self::LogoutToken => "logout+jwt",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// JWS algorithms the broker signs id_tokens with (RFC 7518 §3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Alg {
    /// RSASSA-PKCS1-v1_5 with SHA-256: the one every client must support
    /// (OpenID Connect Core §15.1).
    #[serde(rename = "RS256")]
    Rs256,
    /// ECDSA with P-256 and SHA-256.
    #[serde(rename = "ES256")]
    Es256,
}

impl Alg {
    /// Every algorithm we sign with, for discovery's
    /// `id_token_signing_alg_values_supported`.
    pub const ALL: [Alg; 2] = [Alg::Rs256, Alg::Es256];

    /// The JOSE name, as in a JWS header.
    pub fn as_str(self) -> &'static str {
        match self {
            Alg::Rs256 => "RS256",
            Alg::Es256 => "ES256",
        }
    }
}

impl fmt::Display for Alg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Alg {
    type Err = KeyError;

    /// Exact JOSE names only: "none", HMAC and everything else are refused.
    fn from_str(s: &str) -> Result<Self, KeyError> {
        match s {
            "RS256" => Ok(Alg::Rs256),
            "ES256" => Ok(Alg::Es256),
            other => Err(KeyError::UnsupportedAlg(other.to_owned())),
        }
    }
}

/// What can go wrong with the key document or signing.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The document names no file: it may come from the store or from an
    /// imported `keys.json`, and either way new keys would invalidate every
    /// token issued, so the advice is to restore, not regenerate.
    #[error(
        "the signing keys are unusable: {0}. Restore them from a backup; new keys would \
         make every token already issued stop verifying"
    )]
    Corrupt(String),
    #[error("generating signing keys failed: {0}")]
    Generate(String),
    #[error("signing failed")]
    Sign,
    #[error("JWT claims must be a JSON object (RFC 7519 §7.2)")]
    ClaimsNotObject,
    #[error("JWS algorithm {0:?} is not accepted (only RS256 and ES256 are)")]
    UnsupportedAlg(String),
    /// A token presented to us that we did not sign as this kind.
    #[error("the token is not valid: {0}")]
    Invalid(&'static str),
}

/// The broker's signing keys, parsed once and kept ready to sign.
///
/// `Debug` shows kids, algorithms and creation times only.
pub struct KeySet {
    /// In document order; every one but the revoked is in the JWKS (a
    /// previous key until it retires).
    keys: Vec<Key>,
    /// The keys as stored, beside `keys`: what a rotation rewrites.
    stored: Vec<StoredKey>,
    /// Index in `keys` of the newest RS256 and ES256 key: the ones that sign.
    active_rs256: usize,
    active_es256: usize,
    jwks: Value,
    rng: SystemRandom,
}

struct Key {
    kid: String,
    alg: Alg,
    created_at: u64,
    pair: Pair,
    /// base64url of `{"alg":…,"typ":…,"kid":…}` for each [`TokenType`]:
    /// the first part of every token this key signs, encoded once.
    headers_b64: [String; 3],
    /// The public key, as [`UnparsedPublicKey`] takes it.
    public: Vec<u8>,
}

enum Pair {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
}

/// The JWS header we write.
#[derive(Serialize)]
struct Header<'a> {
    alg: Alg,
    typ: &'static str,
    kid: &'a str,
}

/// The JWS header of a token presented to us.
#[derive(Deserialize)]
struct PresentedHeader {
    alg: String,
    #[serde(default)]
    typ: Option<String>,
    #[serde(default)]
    kid: Option<String>,
}

impl KeySet {
    /// A freshly generated key document, in the format
    /// [`from_document`](Self::from_document) reads, for a store to hold.
    pub fn generate_document() -> Result<String, KeyError> {
        let rng = SystemRandom::new();
        let stored = generate_stored(&rng, unix_now())?;
        serde_json::to_string(&KeyFile {
            version: file::VERSION,
            keys: stored,
        })
        .map_err(|e| KeyError::Generate(e.to_string()))
    }

    /// Parses a key document a store holds (the format of the `keys.json`
    /// earlier versions wrote, which start-up imports as is).
    pub fn from_document(document: &str) -> Result<KeySet, KeyError> {
        let parsed: KeyFile = serde_json::from_str(document)
            .map_err(|e| KeyError::Corrupt(format!("not a key document: {e}")))?;
        if parsed.version != file::VERSION {
            return Err(KeyError::Corrupt(format!(
                "format version {} is not supported (this Waypass reads version {})",
                parsed.version,
                file::VERSION
            )));
        }
        Self::from_stored(&parsed.keys, SystemRandom::new()).map_err(KeyError::Corrupt)
    }

    /// The document `document` becomes when its keys are rotated: a fresh
    /// RS256 and ES256 key appended (they sign from now on), the previous
    /// generation kept so that what it signed still verifies, and older
    /// generations dropped. For a connection's `private_key_jwt` keys.
    pub fn rotate_document(document: &str) -> Result<String, KeyError> {
        let mut parsed: KeyFile = serde_json::from_str(document)
            .map_err(|e| KeyError::Corrupt(format!("not a key document: {e}")))?;
        let rng = SystemRandom::new();
        // Never older than the newest key: the new ones must sign.
        let newest = parsed.keys.iter().map(|k| k.created_at).max().unwrap_or(0);
        let created_at = unix_now().max(newest);
        let fresh = generate_stored(&rng, created_at)?;
        // Of each algorithm, the newest key stays (the previous generation).
        let mut kept: Vec<StoredKey> = Vec::new();
        for alg in Alg::ALL {
            if let Some(pos) = parsed
                .keys
                .iter()
                .enumerate()
                .filter(|(_, k)| k.alg == alg)
                .max_by_key(|(i, k)| (k.created_at, *i))
                .map(|(i, _)| i)
            {
                kept.push(parsed.keys.swap_remove(pos));
            }
        }
        kept.extend(fresh);
        parsed.keys = kept;
        serde_json::to_string(&parsed).map_err(|e| KeyError::Generate(e.to_string()))
    }

    /// Fresh keys in memory (tests).
    pub fn generate() -> Result<KeySet, KeyError> {
        let rng = SystemRandom::new();
        let stored = generate_stored(&rng, unix_now())?;
        Self::from_stored(&stored, rng).map_err(KeyError::Generate)
    }

    /// Parses stored keys: the one path for keys loaded and keys just
    /// generated, so what we write is what we can read.
    fn from_stored(stored: &[StoredKey], rng: SystemRandom) -> Result<KeySet, String> {
        let mut keys: Vec<Key> = Vec::with_capacity(stored.len());
        for entry in stored {
            let key = Key::from_stored(entry)
                .map_err(|reason| format!("key {:?}: {reason}", entry.kid))?;
            if keys.iter().any(|k| k.kid == key.kid) {
                return Err(format!("key {:?} appears twice", key.kid));
            }
            keys.push(key);
        }
        let newest = |alg: Alg| {
            // `>=`: of keys created in the same second, the later in the document wins.
            let mut best: Option<usize> = None;
            for (i, key) in keys.iter().enumerate() {
                if key.alg == alg
                    && stored[i].state == KeyState::Current
                    && best.is_none_or(|b| key.created_at >= keys[b].created_at)
                {
                    best = Some(i);
                }
            }
            best.ok_or_else(|| format!("it holds no {alg} key"))
        };
        let active_rs256 = newest(Alg::Rs256)?;
        let active_es256 = newest(Alg::Es256)?;
        let jwks = serde_json::json!({
            "keys": keys
                .iter()
                .zip(stored)
                .filter(|(_, s)| s.state != KeyState::Revoked)
                .map(|(k, _)| k.jwk())
                .collect::<Vec<_>>(),
        });
        Ok(KeySet {
            keys,
            stored: stored.to_vec(),
            active_rs256,
            active_es256,
            jwks,
            rng,
        })
    }

    /// Compact JWS of `claims` with header {"alg", "typ":"JWT", "kid"} using
    /// the active key for `alg`: an id_token.
    pub fn sign(&self, alg: Alg, claims: &Value) -> Result<String, KeyError> {
        if !claims.is_object() {
            return Err(KeyError::ClaimsNotObject);
        }
        self.sign_as(alg, TokenType::IdToken, claims)
    }

    /// Compact JWS of `claims` (a struct: it serialises to an object) with
    /// `typ`'s header, using the active key for `alg`.
    pub fn sign_as<T: Serialize>(
        &self,
        alg: Alg,
        typ: TokenType,
        claims: &T,
    ) -> Result<String, KeyError> {
        let key = &self.keys[match alg {
            Alg::Rs256 => self.active_rs256,
            Alg::Es256 => self.active_es256,
        }];

        // The token is built in place: header, payload encoded straight from
        // the serializer, then the signature over what is already there.
        let mut token = String::with_capacity(TOKEN_CAPACITY);
        token.push_str(&key.headers_b64[typ.index()]);
        token.push('.');
        let mut payload = EncoderStringWriter::from_consumer(&mut token, &URL_SAFE_NO_PAD);
        serde_json::to_writer(&mut payload, claims).map_err(|_| KeyError::Sign)?;
        payload.into_inner();

        match &key.pair {
            Pair::Rsa(pair) => {
                let mut buf = [0u8; MAX_RSA_SIGNATURE];
                let sig = &mut buf[..pair.public_modulus_len()];
                pair.sign(&RSA_PKCS1_SHA256, &self.rng, token.as_bytes(), sig)
                    .map_err(|_| KeyError::Sign)?;
                token.push('.');
                URL_SAFE_NO_PAD.encode_string(sig, &mut token);
            }
            Pair::Ec(pair) => {
                let sig = pair
                    .sign(&self.rng, token.as_bytes())
                    .map_err(|_| KeyError::Sign)?;
                token.push('.');
                URL_SAFE_NO_PAD.encode_string(sig.as_ref(), &mut token);
            }
        }
        Ok(token)
    }

    /// Checks that `token` is a compact JWS we signed as `typ`: its header
    /// names one of our keys and that key's algorithm, its `typ` is
    /// `typ`'s, and the signature verifies. Returns the claims, which the
    /// caller checks (`iss`, `aud`, `exp`: what they must be depends on
    /// where the token is presented).
    pub fn verify(&self, token: &str, typ: TokenType) -> Result<Value, KeyError> {
        const MALFORMED: KeyError = KeyError::Invalid("not a compact JWS");
        if token.len() > MAX_VERIFIED_TOKEN_BYTES {
            return Err(KeyError::Invalid("too long"));
        }
        let (input, signature) = token.rsplit_once('.').ok_or(MALFORMED)?;
        let (header, payload) = input.split_once('.').ok_or(MALFORMED)?;
        let header: PresentedHeader = URL_SAFE_NO_PAD
            .decode(header)
            .ok()
            .and_then(|h| serde_json::from_slice(&h).ok())
            .ok_or(MALFORMED)?;
        if header.typ.as_deref() != Some(typ.typ()) {
            return Err(KeyError::Invalid("not a token of this kind"));
        }
        let key = header
            .kid
            .as_deref()
            .and_then(|kid| self.keys.iter().find(|k| k.kid == kid))
            .ok_or(KeyError::Invalid("signed by no key of ours"))?;
        // The key decides the algorithm, never the header (RFC 8725 §3.1).
        if header.alg != key.alg.as_str() {
            return Err(KeyError::Invalid("the algorithm is not its key's"));
        }
        let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|_| MALFORMED)?;
        let algorithm: &'static dyn VerificationAlgorithm = match key.alg {
            Alg::Rs256 => &RSA_PKCS1_2048_8192_SHA256,
            Alg::Es256 => &ECDSA_P256_SHA256_FIXED,
        };
        UnparsedPublicKey::new(algorithm, &key.public)
            .verify(input.as_bytes(), &signature)
            .map_err(|_| KeyError::Invalid("the signature does not verify"))?;
        let payload = URL_SAFE_NO_PAD.decode(payload).map_err(|_| MALFORMED)?;
        let claims: Value = serde_json::from_slice(&payload).map_err(|_| MALFORMED)?;
        if !claims.is_object() {
            return Err(MALFORMED);
        }
        Ok(claims)
    }

    /// The public JWKS document: {"keys":[{kty, use:"sig", alg, kid, n, e} /
    /// {kty:"EC", crv:"P-256", x, y, …}]}: every key we hold but the
    /// revoked, in document order, previous keys whatever the time (see
    /// [`KeySet::jwks_at`]). Built once at load.
    pub fn jwks(&self) -> &Value {
        &self.jwks
    }
}

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeySet")
            .field("keys", &self.keys)
            .field(
                "signing",
                &[
                    &self.keys[self.active_rs256].kid,
                    &self.keys[self.active_es256].kid,
                ],
            )
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

impl Key {
    /// A stored key, whose kid must be the one its public key gives.
    fn from_stored(stored: &StoredKey) -> Result<Key, String> {
        let key = Key::parse(stored.alg, &stored.pkcs8, stored.created_at)?;
        if key.kid != stored.kid {
            return Err(format!("its kid should be {:?} for this key", key.kid));
        }
        Ok(key)
    }

    /// Parses a base64 PKCS#8 key for `alg` and derives its kid: the RFC 7638
    /// thumbprint, so the kid is stable across restarts and copies.
    fn parse(alg: Alg, pkcs8_b64: &str, created_at: u64) -> Result<Key, String> {
        let pkcs8 = STANDARD
            .decode(pkcs8_b64)
            .map_err(|e| format!("pkcs8 is not base64: {e}"))?;
        let (pair, thumbprint_input) = match alg {
            Alg::Rs256 => {
                let pair = RsaKeyPair::from_pkcs8(&pkcs8)
                    .map_err(|e| format!("not a usable RSA PKCS#8 key: {e}"))?;
                if pair.public_modulus_len() > MAX_RSA_SIGNATURE {
                    return Err("RSA keys over 4096 bits are not supported".to_owned());
                }
                let (n, e) = rsa_components(&pair);
                // RFC 7638 §3.2: required members only, sorted, no whitespace.
                let input = format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#);
                (Pair::Rsa(pair), input)
            }
            Alg::Es256 => {
                let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8)
                    .map_err(|e| format!("not a usable P-256 PKCS#8 key: {e}"))?;
                let (x, y) = ec_coordinates(&pair);
                let input = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
                (Pair::Ec(pair), input)
            }
        };
        let kid = URL_SAFE_NO_PAD.encode(Sha256::digest(thumbprint_input.as_bytes()));
        let header = |typ: TokenType| -> Result<String, String> {
            let header = serde_json::to_vec(&Header {
                alg,
                typ: typ.typ(),
                kid: &kid,
            })
            .map_err(|e| e.to_string())?;
            Ok(URL_SAFE_NO_PAD.encode(header))
        };
        let [id, access, logout] = TokenType::ALL;
        let headers_b64 = [header(id)?, header(access)?, header(logout)?];
        let public = match &pair {
            Pair::Rsa(pair) => pair.public_key().as_ref().to_vec(),
            Pair::Ec(pair) => pair.public_key().as_ref().to_vec(),
        };
        Ok(Key {
            headers_b64,
            public,
            kid,
            alg,
            created_at,
            pair,
        })
    }

    /// The public JWK (RFC 7517 §4, RFC 7518 §6.2.1 / §6.3.1): no private
    /// members.
    fn jwk(&self) -> Value {
        match &self.pair {
            Pair::Rsa(pair) => {
                let (n, e) = rsa_components(pair);
                serde_json::json!({
                    "kty": "RSA", "use": "sig", "alg": self.alg, "kid": self.kid, "n": n, "e": e,
                })
            }
            Pair::Ec(pair) => {
                let (x, y) = ec_coordinates(pair);
                serde_json::json!({
                    "kty": "EC", "use": "sig", "alg": self.alg, "kid": self.kid,
                    "crv": "P-256", "x": x, "y": y,
                })
            }
        }
    }
}

/// base64url `n` and `e`, big-endian without leading zeros (RFC 7518 §6.3.1).
fn rsa_components(pair: &RsaKeyPair) -> (String, String) {
    let public = pair.public_key();
    (
        URL_SAFE_NO_PAD.encode(public.modulus().big_endian_without_leading_zero()),
        URL_SAFE_NO_PAD.encode(public.exponent().big_endian_without_leading_zero()),
    )
}

/// base64url `x` and `y` of the public point, each the full 32 bytes (RFC 7518
/// §6.2.1.2). ring gives the point uncompressed: `04 || x || y`.
fn ec_coordinates(pair: &EcdsaKeyPair) -> (String, String) {
    let point = pair.public_key().as_ref();
    let (x, y) = point[1..].split_at(32);
    (URL_SAFE_NO_PAD.encode(x), URL_SAFE_NO_PAD.encode(y))
}

/// One new RS256 and one new ES256 key, as they are stored.
fn generate_stored(rng: &SystemRandom, created_at: u64) -> Result<Vec<StoredKey>, KeyError> {
    let failed = |what: &str| KeyError::Generate(what.to_owned());
    // Fails early, with a message that says why, when there is no OS random
    // source at all.
    rng.fill(&mut [0u8; 32])
        .map_err(|_| failed("the system random number generator failed"))?;

    let rsa_pkcs8 = RsaKeyPair::generate(RSA_BITS)
        .and_then(|pair| pair.as_der())
        .map_err(|e| KeyError::Generate(format!("RSA: {e}")))?;
    let ec_pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, rng)
        .map_err(|_| failed("P-256"))?;

    let mut stored = Vec::with_capacity(2);
    for (alg, pkcs8) in [
        (Alg::Rs256, rsa_pkcs8.as_ref()),
        (Alg::Es256, ec_pkcs8.as_ref()),
    ] {
        let pkcs8 = STANDARD.encode(pkcs8);
        let key = Key::parse(alg, &pkcs8, created_at).map_err(KeyError::Generate)?;
        stored.push(StoredKey {
            kid: key.kid,
            alg,
            created_at,
            pkcs8,
            state: KeyState::Current,
            retire_at: None,
            current_since: None,
            revoked_at: None,
        });
    }
    Ok(stored)
}

fn unix_now() -> u64 {
    // Only a record of when a key was made, used to pick the newest: a clock
    // before 1970 just makes the key look old.
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;

    use ring::signature::{
        ECDSA_P256_SHA256_FIXED, RSA_PKCS1_2048_8192_SHA256, RsaPublicKeyComponents,
        UnparsedPublicKey,
    };
    use serde_json::json;

    use super::*;

    /// RSA generation takes a while in a debug build: tests that only need
    /// some keys share these.
    fn keys() -> &'static KeySet {
        static KEYS: OnceLock<KeySet> = OnceLock::new();
        KEYS.get_or_init(|| KeySet::generate().expect("generate keys"))
    }

    fn other_keys() -> &'static KeySet {
        static KEYS: OnceLock<KeySet> = OnceLock::new();
        KEYS.get_or_init(|| KeySet::generate().expect("generate keys"))
    }

    fn claims() -> Value {
        json!({"iss": "https://login.example", "sub": "u1", "aud": "app", "exp": 2_000_000_000u64})
    }

    fn b64_json(value: &Value) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).expect("serialize"))
    }

    fn decode_json(b64: &str) -> Option<Value> {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(b64).ok()?).ok()
    }

    fn header_of(token: &str) -> Value {
        let header = token.split('.').next().expect("header");
        decode_json(header).expect("header json")
    }

    fn jwk_for<'a>(jwks: &'a Value, kid: &str) -> Option<&'a Value> {
        jwks["keys"]
            .as_array()
            .expect("keys array")
            .iter()
            .find(|k| k["kid"] == kid)
    }

    fn document(keys: Vec<StoredKey>) -> String {
        let doc = KeyFile {
            version: file::VERSION,
            keys,
        };
        serde_json::to_string(&doc).expect("serialize")
    }

    /// Why [`verify`] refused a token.
    #[derive(Debug, PartialEq, Eq)]
    enum Refused {
        UnknownKey,
        BadSignature,
    }

    /// What an app does with our id_tokens: find the header's `kid` in the
    /// published JWKS and check the signature with that public key alone
    /// (ring, not our signing code). Our own tokens are well-formed, so
    /// malformed input panics rather than being an outcome.
    fn verify(jwks: &Value, token: &str) -> Result<Value, Refused> {
        let (input, sig) = token.rsplit_once('.').expect("three parts");
        let (_, payload) = input.split_once('.').expect("three parts");
        let sig = URL_SAFE_NO_PAD.decode(sig).expect("sig b64url");
        let header = header_of(token);
        let kid = header["kid"].as_str().expect("kid");
        let jwk = jwk_for(jwks, kid).ok_or(Refused::UnknownKey)?;
        assert_eq!(jwk["alg"], header["alg"], "the header names its key's alg");
        let b64 = |v: &Value| {
            URL_SAFE_NO_PAD
                .decode(v.as_str().expect("str"))
                .expect("b64url")
        };
        let checked = match jwk["kty"].as_str() {
            Some("RSA") => RsaPublicKeyComponents {
                n: b64(&jwk["n"]),
                e: b64(&jwk["e"]),
            }
            .verify(&RSA_PKCS1_2048_8192_SHA256, input.as_bytes(), &sig),
            _ => {
                // ECDSA_P256_SHA256_FIXED takes the JOSE form, r||s (RFC 7518 §3.4).
                let mut point = vec![0x04];
                point.extend(b64(&jwk["x"]));
                point.extend(b64(&jwk["y"]));
                UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point)
                    .verify(input.as_bytes(), &sig)
            }
        };
        checked.map_err(|_| Refused::BadSignature)?;
        Ok(decode_json(payload).expect("payload json"))
    }

    #[test]
    fn signed_tokens_verify_against_the_published_jwks_and_carry_their_claims() {
        for alg in Alg::ALL {
            let token = keys().sign(alg, &claims()).expect("sign");
            assert_eq!(verify(keys().jwks(), &token), Ok(claims()), "{alg}");
        }
    }

    #[test]
    fn a_generated_document_loads_and_signs_with_both_algorithms() {
        let doc = KeySet::generate_document().expect("generate");
        let set = KeySet::from_document(&doc).expect("load");
        assert_eq!(set.jwks()["keys"].as_array().expect("keys").len(), 2);
        for alg in Alg::ALL {
            let token = set.sign(alg, &claims()).expect("sign");
            assert_eq!(verify(set.jwks(), &token), Ok(claims()), "{alg}");
        }
        // Loading the same document again gives the same keys: what every
        // instance on one store does.
        let again = KeySet::from_document(&doc).expect("load again");
        assert_eq!(again.jwks(), set.jwks());
    }

    #[test]
    fn tokens_carry_alg_typ_and_the_signing_kid_in_the_header() {
        for alg in Alg::ALL {
            let token = keys().sign(alg, &claims()).expect("sign");
            let header = header_of(&token);
            assert_eq!(header["alg"], alg.as_str());
            assert_eq!(header["typ"], "JWT");
            let kid = header["kid"].as_str().expect("kid");
            assert_eq!(
                jwk_for(keys().jwks(), kid).expect("kid in jwks")["alg"],
                alg.as_str()
            );
            assert!(!token.contains('='), "base64url without padding: {token}");
        }
    }

    #[test]
    fn a_tampered_payload_fails_verification() {
        for alg in Alg::ALL {
            let token = keys().sign(alg, &claims()).expect("sign");
            let parts: Vec<&str> = token.split('.').collect();
            let mut forged = claims();
            forged["sub"] = json!("admin");
            let tampered = format!("{}.{}.{}", parts[0], b64_json(&forged), parts[2]);
            assert_eq!(verify(keys().jwks(), &tampered), Err(Refused::BadSignature));
        }
    }

    #[test]
    fn a_token_signed_by_another_key_set_names_a_kid_not_in_our_jwks() {
        for alg in Alg::ALL {
            let token = other_keys().sign(alg, &claims()).expect("sign");
            assert_eq!(verify(keys().jwks(), &token), Err(Refused::UnknownKey));
        }
    }

    #[test]
    fn a_signature_from_another_key_under_our_kid_fails_verification() {
        for alg in Alg::ALL {
            let ours = keys().sign(alg, &claims()).expect("sign");
            let theirs = other_keys().sign(alg, &claims()).expect("sign");
            let header = ours.split('.').next().expect("header");
            let (_, rest) = theirs.split_once('.').expect("dot");
            let spliced = format!("{header}.{rest}");
            assert_eq!(verify(keys().jwks(), &spliced), Err(Refused::BadSignature));
        }
    }

    #[test]
    fn only_json_objects_are_signed() {
        assert!(matches!(
            keys().sign(Alg::Rs256, &json!(["not", "claims"])),
            Err(KeyError::ClaimsNotObject)
        ));
    }

    #[test]
    fn the_jwks_lists_every_key_with_public_fields_only() {
        let jwks = keys().jwks();
        let published = jwks["keys"].as_array().expect("keys array");
        assert_eq!(published.len(), 2);
        for jwk in published {
            let fields: Vec<&str> = jwk
                .as_object()
                .expect("object")
                .keys()
                .map(String::as_str)
                .collect();
            let mut expected = match jwk["kty"].as_str() {
                Some("RSA") => vec!["alg", "e", "kid", "kty", "n", "use"],
                Some("EC") => vec!["alg", "crv", "kid", "kty", "use", "x", "y"],
                other => panic!("unexpected kty {other:?}"),
            };
            expected.sort_unstable();
            let mut fields = fields;
            fields.sort_unstable();
            assert_eq!(fields, expected);
            assert_eq!(jwk["use"], "sig");
            for private in ["d", "p", "q", "dp", "dq", "qi"] {
                assert!(jwk.get(private).is_none(), "{private} published");
            }
        }
        let rsa = published.iter().find(|k| k["kty"] == "RSA").expect("RSA");
        assert_eq!(rsa["alg"], "RS256");
        assert_eq!(rsa["e"], "AQAB");
        let n = URL_SAFE_NO_PAD
            .decode(rsa["n"].as_str().expect("n"))
            .expect("n b64url");
        assert_eq!(
            (n.len(), n[0] != 0),
            (256, true),
            "2048 bits, no leading zero"
        );
        let ec = published.iter().find(|k| k["kty"] == "EC").expect("EC");
        assert_eq!((&ec["alg"], &ec["crv"]), (&json!("ES256"), &json!("P-256")));
    }

    #[test]
    fn each_kid_is_the_rfc7638_thumbprint_of_its_public_key() {
        for jwk in keys().jwks()["keys"].as_array().expect("keys") {
            let canonical = match jwk["kty"].as_str() {
                Some("RSA") => json!({"e": jwk["e"], "kty": "RSA", "n": jwk["n"]}),
                _ => json!({"crv": "P-256", "kty": "EC", "x": jwk["x"], "y": jwk["y"]}),
            };
            // serde_json's map is sorted and `to_string` is compact: RFC 7638 §3.3.
            let digest = Sha256::digest(canonical.to_string().as_bytes());
            assert_eq!(jwk["kid"], URL_SAFE_NO_PAD.encode(digest));
        }
    }

    #[test]
    fn the_newest_key_per_alg_signs_and_older_ones_still_verify() {
        let rng = SystemRandom::new();
        let old = generate_stored(&rng, 1_000).expect("generate");
        let new = generate_stored(&rng, 2_000).expect("generate");
        let new_kids: Vec<_> = new.iter().map(|k| k.kid.clone()).collect();
        let before_rotation = KeySet::from_stored(&old, SystemRandom::new()).expect("old keys");
        // Newest last in one alg, first in the other: order in the document does not matter.
        let mut stored = new;
        stored.extend(old);
        stored.swap(0, 2);

        let rotated = KeySet::from_document(&document(stored)).expect("load");
        assert_eq!(rotated.jwks()["keys"].as_array().expect("keys").len(), 4);
        for (i, alg) in Alg::ALL.into_iter().enumerate() {
            let token = rotated.sign(alg, &claims()).expect("sign");
            assert_eq!(header_of(&token)["kid"], new_kids[i].as_str());
            // Tokens signed before the rotation still verify against the new JWKS.
            let old_token = before_rotation.sign(alg, &claims()).expect("sign");
            assert_eq!(verify(rotated.jwks(), &old_token), Ok(claims()), "{alg}");
        }
    }

    #[test]
    fn a_corrupt_key_document_is_an_error() {
        for contents in [
            "".to_owned(),
            "{\"version\":1,\"keys\":[{\"kid\":".to_owned(),
            "{\"version\":2,\"keys\":[]}".to_owned(),
            "{\"version\":1,\"keys\":[]}".to_owned(),
            json!({"version": 1, "keys": [
                {"kid": "x", "alg": "ES256", "created_at": 0, "pkcs8": "bm90IGEga2V5"},
            ]})
            .to_string(),
        ] {
            let err = KeySet::from_document(&contents).expect_err(&contents);
            assert!(matches!(err, KeyError::Corrupt(_)), "{err}");
        }
    }

    #[test]
    fn a_key_document_whose_kid_does_not_match_its_key_is_refused() {
        let mut stored = generate_stored(&SystemRandom::new(), 0).expect("generate");
        stored[1].kid = stored[0].kid.clone();
        let err = KeySet::from_document(&document(stored)).expect_err("kid mismatch");
        assert!(matches!(err, KeyError::Corrupt(_)), "{err}");
        assert!(err.to_string().contains("kid should be"), "{err}");
    }

    #[test]
    fn debug_output_contains_no_key_material() {
        let rng = SystemRandom::new();
        let stored = generate_stored(&rng, 0).expect("generate");
        let set = KeySet::from_stored(&stored, rng).expect("parse");
        let debug = format!("{set:?} {:?}", &set.keys[0]);
        for key in &stored {
            assert!(debug.contains(&key.kid));
            let der = STANDARD.decode(&key.pkcs8).expect("b64");
            // Any 16-byte window of the private key, in the encodings Debug might use.
            for window in der.chunks(16).filter(|w| w.len() == 16) {
                assert!(!debug.contains(&hex::encode(window)), "{debug}");
                assert!(!debug.contains(&format!("{:?}", window)[1..40]), "{debug}");
            }
            assert!(!debug.contains(&key.pkcs8[..24]), "{debug}");
        }
        assert!(debug.len() < 600, "{debug}");
    }

    #[test]
    fn alg_names_round_trip_through_serde_display_and_from_str() {
        for alg in Alg::ALL {
            let json = serde_json::to_value(alg).expect("serialize");
            assert_eq!(json, alg.to_string());
            assert_eq!(
                serde_json::from_value::<Alg>(json).expect("deserialize"),
                alg
            );
            assert_eq!(alg.as_str().parse::<Alg>().expect("parse"), alg);
        }
        assert!(matches!(
            "none".parse::<Alg>(),
            Err(KeyError::UnsupportedAlg(_))
        ));
    }

    #[test]
    fn our_tokens_verify_as_their_own_kind_only() {
        #[derive(Serialize)]
        struct Claims {
            sub: &'static str,
        }
        for alg in Alg::ALL {
            let access = keys()
                .sign_as(alg, TokenType::AccessToken, &Claims { sub: "u1" })
                .expect("sign");
            assert_eq!(header_of(&access)["typ"], "at+jwt");
            assert_eq!(
                keys()
                    .verify(&access, TokenType::AccessToken)
                    .expect("ours")["sub"],
                "u1"
            );
            let id_token = keys().sign(alg, &claims()).expect("sign");
            assert_eq!(
                keys().verify(&id_token, TokenType::IdToken).expect("ours"),
                claims()
            );
            for (token, wrong) in [
                (&access, TokenType::IdToken),
                (&access, TokenType::LogoutToken),
                (&id_token, TokenType::AccessToken),
            ] {
                assert!(
                    matches!(keys().verify(token, wrong), Err(KeyError::Invalid(_))),
                    "{alg}: a token of one kind is refused as {wrong:?}"
                );
            }
        }
    }

    #[test]
    fn a_forged_or_foreign_token_does_not_verify() {
        for alg in Alg::ALL {
            let ours = keys().sign(alg, &claims()).expect("sign");
            let parts: Vec<&str> = ours.split('.').collect();
            let mut forged = claims();
            forged["sub"] = json!("admin");
            let tampered = format!("{}.{}.{}", parts[0], b64_json(&forged), parts[2]);
            let theirs = other_keys().sign(alg, &claims()).expect("sign");
            // The header claims `none`: the key decides, so it is refused.
            let mut none = header_of(&ours);
            none["alg"] = json!("none");
            let unsigned = format!("{}.{}.", b64_json(&none), parts[1]);
            for bad in [
                tampered.as_str(),
                theirs.as_str(),
                unsigned.as_str(),
                "",
                "a.b",
                "a.b.c",
                &"x".repeat(MAX_VERIFIED_TOKEN_BYTES + 1),
            ] {
                assert!(
                    matches!(
                        keys().verify(bad, TokenType::IdToken),
                        Err(KeyError::Invalid(_))
                    ),
                    "{alg}: {bad:.40}"
                );
            }
        }
    }

    #[test]
    fn a_key_set_can_be_shared_between_threads() {
        fn shareable<T: Send + Sync>() {}
        shareable::<KeySet>();
    }
}
