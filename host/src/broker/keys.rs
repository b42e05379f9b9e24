//! The broker's signing keys: the tokens we issue are compact JWS (RFC 7515)
//! signed with them, and apps verify those against the JWKS (RFC 7517) we
//! publish.
//!
//! The key file ([`file`]) holds every key we have signed with, so rotation is
//! adding a key: all of them stay in the JWKS, and the newest per algorithm
//! signs. Replacing the keys invalidates every token issued, so keys are
//! generated only when the file does not exist — never over one we cannot
//! read or parse.

mod file;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::write::EncoderStringWriter;
use ring::rand::{SecureRandom as _, SystemRandom};
use ring::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _,
    RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_SHA256, RsaKeyPair, RsaPublicKeyComponents,
    UnparsedPublicKey,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use self::file::{KeyFile, StoredKey};

/// Size of the RSA keys we generate. 2048 bits is what RFC 7518 §3.3 requires
/// at least, and every OpenID Connect client accepts.
const RSA_BITS: usize = 2048;

/// The largest RSA signature we sign into a stack buffer: ring signs with keys
/// of at most 4096 bits, so a larger key in the file is refused on load.
const MAX_RSA_SIGNATURE: usize = 4096 / 8;

/// Tokens longer than this are refused before any decoding: ours are around a
/// kilobyte, and the limit bounds the work an unauthenticated caller can ask
/// of `verify`.
const MAX_TOKEN_LEN: usize = 16 * 1024;

/// Initial capacity of a signed token: a typical id_token fits, so signing
/// allocates once; a bigger one grows the string.
const TOKEN_CAPACITY: usize = 1024;

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

/// What can go wrong with the key file, signing, or a token we are asked to
/// verify.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read signing key file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "signing key file {} is unusable: {reason}. Restore it from a backup; only if that \
         is impossible, move it away and restart to generate new keys (every token already \
         issued will then stop verifying)",
        path.display()
    )]
    Corrupt { path: PathBuf, reason: String },
    #[error("cannot write signing key file {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("generating signing keys failed: {0}")]
    Generate(String),
    #[error("signing failed")]
    Sign,
    #[error("JWT claims must be a JSON object (RFC 7519 §7.2)")]
    ClaimsNotObject,
    #[error("not a well-formed JWS: {0}")]
    Malformed(&'static str),
    #[error("JWS algorithm {0:?} is not accepted (only RS256 and ES256 are)")]
    UnsupportedAlg(String),
    #[error("token is signed by unknown key {0:?}")]
    UnknownKey(String),
    #[error("key {kid:?} does not sign with {alg}")]
    AlgMismatch { kid: String, alg: Alg },
    #[error("token signature does not verify")]
    BadSignature,
}

/// The broker's signing keys, parsed once and kept ready to sign.
///
/// `Debug` shows kids, algorithms and creation times only.
pub struct KeySet {
    /// In file order; every one of them verifies and is in the JWKS.
    keys: Vec<Key>,
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
    /// base64url of `{"alg":…,"typ":"JWT","kid":…}`: the first part of every
    /// token this key signs, encoded once.
    header_b64: String,
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

/// The JWS header we read: `alg` as a string, so that "none" and "HS256" are
/// refused by name rather than as a parse error.
#[derive(Deserialize)]
struct ReceivedHeader {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    crit: Option<Value>,
}

impl KeySet {
    /// Loads the key file, or generates an RSA-2048 (RS256) and a P-256
    /// (ES256) key and writes it (owner-only 0600 file, written atomically:
    /// temp file + rename) on first start.
    ///
    /// Only a missing file leads to new keys; any other read or parse failure
    /// is an error, since new keys would invalidate every token issued. One
    /// broker per key file: two first starts racing would each write their
    /// own keys, and the last rename would win.
    pub fn load_or_generate(path: &Path) -> Result<KeySet, KeyError> {
        match std::fs::read(path) {
            Ok(bytes) => Self::load(path, &bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let rng = SystemRandom::new();
                let stored = generate_stored(&rng, unix_now())?;
                let contents = serde_json::to_vec_pretty(&KeyFile {
                    version: file::VERSION,
                    keys: stored,
                })
                .map_err(|e| KeyError::Generate(e.to_string()))?;
                file::write_atomically(path, &contents, &rng).map_err(|source| {
                    KeyError::Write {
                        path: path.to_owned(),
                        source,
                    }
                })?;
                let set = Self::load(path, &contents)?;
                tracing::info!(path = %path.display(), kids = ?set.kids(), "generated signing keys");
                Ok(set)
            }
            Err(source) => Err(KeyError::Read {
                path: path.to_owned(),
                source,
            }),
        }
    }

    /// A freshly generated key document (the key file's format), for a
    /// store to hold.
    pub fn generate_document() -> Result<String, KeyError> {
        let rng = SystemRandom::new();
        let stored = generate_stored(&rng, unix_now())?;
        serde_json::to_string(&KeyFile {
            version: file::VERSION,
            keys: stored,
        })
        .map_err(|e| KeyError::Generate(e.to_string()))
    }

    /// Parses a key document a store holds (the key file's format).
    pub fn from_document(document: &str) -> Result<KeySet, KeyError> {
        Self::load(
            Path::new("<signing keys in the store>"),
            document.as_bytes(),
        )
    }

    /// Fresh keys in memory (tests).
    pub fn generate() -> Result<KeySet, KeyError> {
        let rng = SystemRandom::new();
        let stored = generate_stored(&rng, unix_now())?;
        Self::from_stored(&stored, rng).map_err(KeyError::Generate)
    }

    fn load(path: &Path, bytes: &[u8]) -> Result<KeySet, KeyError> {
        let corrupt = |reason: String| KeyError::Corrupt {
            path: path.to_owned(),
            reason,
        };
        let parsed: KeyFile =
            serde_json::from_slice(bytes).map_err(|e| corrupt(format!("not a key file: {e}")))?;
        if parsed.version != file::VERSION {
            return Err(corrupt(format!(
                "format version {} is not supported (this Waypass reads version {})",
                parsed.version,
                file::VERSION
            )));
        }
        file::warn_if_shared(path);
        Self::from_stored(&parsed.keys, SystemRandom::new()).map_err(corrupt)
    }

    /// Parses stored keys: the one path for keys loaded and keys just
    /// generated, so what we write is what we can read.
    fn from_stored(stored: &[StoredKey], rng: SystemRandom) -> Result<KeySet, String> {
        let mut keys: Vec<Key> = Vec::with_capacity(stored.len());
        for entry in stored {
            let key = Key::from_stored(entry, &rng)
                .map_err(|reason| format!("key {:?}: {reason}", entry.kid))?;
            if keys.iter().any(|k| k.kid == key.kid) {
                return Err(format!("key {:?} appears twice", key.kid));
            }
            keys.push(key);
        }
        let newest = |alg: Alg| {
            // `>=`: of keys created in the same second, the later in the file wins.
            let mut best: Option<usize> = None;
            for (i, key) in keys.iter().enumerate() {
                if key.alg == alg && best.is_none_or(|b| key.created_at >= keys[b].created_at) {
                    best = Some(i);
                }
            }
            best.ok_or_else(|| format!("it holds no {alg} key"))
        };
        let active_rs256 = newest(Alg::Rs256)?;
        let active_es256 = newest(Alg::Es256)?;
        let jwks = serde_json::json!({
            "keys": keys.iter().map(Key::jwk).collect::<Vec<_>>(),
        });
        Ok(KeySet {
            keys,
            active_rs256,
            active_es256,
            jwks,
            rng,
        })
    }

    /// Compact JWS of `claims` with header {"alg", "typ":"JWT", "kid"} using
    /// the active key for `alg`.
    pub fn sign(&self, alg: Alg, claims: &Value) -> Result<String, KeyError> {
        if !claims.is_object() {
            return Err(KeyError::ClaimsNotObject);
        }
        let key = &self.keys[match alg {
            Alg::Rs256 => self.active_rs256,
            Alg::Es256 => self.active_es256,
        }];

        // The token is built in place: header, payload encoded straight from
        // the serializer, then the signature over what is already there.
        let mut token = String::with_capacity(TOKEN_CAPACITY);
        token.push_str(&key.header_b64);
        token.push('.');
        let mut payload = EncoderStringWriter::from_consumer(&mut token, &URL_SAFE_NO_PAD);
        serde_json::to_writer(&mut payload, claims).map_err(|_| KeyError::Sign)?;
        payload.into_inner();

        match &key.pair {
            Pair::Rsa(pair) => {
                let mut buf = [0u8; MAX_RSA_SIGNATURE];
                let sig = &mut buf[..pair.public().modulus_len()];
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

    /// The public JWKS document: {"keys":[{kty, use:"sig", alg, kid, n, e} /
    /// {kty:"EC", crv:"P-256", x, y, …}]}: every key we hold, in file order.
    pub fn jwks(&self) -> Value {
        self.jwks.clone()
    }

    /// Verifies a compact JWS made by this key set and returns its claims.
    ///
    /// The header must name a key of ours (`kid`) and that key's algorithm;
    /// "none", HMAC and any other algorithm are refused, as is a `crit`
    /// header (RFC 7515 §4.1.11: we understand no extensions). Expiry and
    /// audience are the caller's to check.
    pub fn verify(&self, token: &str) -> Result<Value, KeyError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(KeyError::Malformed("token is too long"));
        }
        let mut parts = token.split('.');
        let (Some(header_b64), Some(payload_b64), Some(sig_b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(KeyError::Malformed("not three dot-separated parts"));
        };

        let header: ReceivedHeader = decode_json(header_b64)
            .ok_or(KeyError::Malformed("header is not base64url-encoded JSON"))?;
        let alg: Alg = header.alg.parse()?;
        if header.crit.is_some() {
            return Err(KeyError::Malformed(
                "critical header extensions are not supported",
            ));
        }
        let kid = header.kid.ok_or(KeyError::Malformed("header has no kid"))?;
        let key = self
            .keys
            .iter()
            .find(|k| k.kid == kid)
            .ok_or(KeyError::UnknownKey(kid))?;
        if key.alg != alg {
            return Err(KeyError::AlgMismatch {
                kid: key.kid.clone(),
                alg,
            });
        }

        let sig = URL_SAFE_NO_PAD
            .decode(sig_b64)
            .map_err(|_| KeyError::Malformed("signature is not base64url"))?;
        let signing_input = &token[..header_b64.len() + 1 + payload_b64.len()];
        key.verify(signing_input.as_bytes(), &sig)?;

        let claims: Value = decode_json(payload_b64)
            .ok_or(KeyError::Malformed("payload is not base64url-encoded JSON"))?;
        if !claims.is_object() {
            return Err(KeyError::Malformed("payload is not a JSON object"));
        }
        Ok(claims)
    }

    fn kids(&self) -> Vec<&str> {
        self.keys.iter().map(|k| k.kid.as_str()).collect()
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
    fn from_stored(stored: &StoredKey, rng: &SystemRandom) -> Result<Key, String> {
        let key = Key::parse(stored.alg, &stored.pkcs8, stored.created_at, rng)?;
        if key.kid != stored.kid {
            return Err(format!("its kid should be {:?} for this key", key.kid));
        }
        Ok(key)
    }

    /// Parses a base64 PKCS#8 key for `alg` and derives its kid: the RFC 7638
    /// thumbprint, so the kid is stable across restarts and copies.
    fn parse(
        alg: Alg,
        pkcs8_b64: &str,
        created_at: u64,
        rng: &SystemRandom,
    ) -> Result<Key, String> {
        let pkcs8 = STANDARD
            .decode(pkcs8_b64)
            .map_err(|e| format!("pkcs8 is not base64: {e}"))?;
        let (pair, thumbprint_input) = match alg {
            Alg::Rs256 => {
                let pair = RsaKeyPair::from_pkcs8(&pkcs8)
                    .map_err(|e| format!("not a usable RSA PKCS#8 key: {e}"))?;
                if pair.public().modulus_len() > MAX_RSA_SIGNATURE {
                    return Err("RSA keys over 4096 bits are not supported".to_owned());
                }
                let (n, e) = rsa_components(&pair);
                // RFC 7638 §3.2: required members only, sorted, no whitespace.
                let input = format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#);
                (Pair::Rsa(pair), input)
            }
            Alg::Es256 => {
                let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8, rng)
                    .map_err(|e| format!("not a usable P-256 PKCS#8 key: {e}"))?;
                let (x, y) = ec_coordinates(&pair);
                let input = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
                (Pair::Ec(pair), input)
            }
        };
        let kid = URL_SAFE_NO_PAD.encode(Sha256::digest(thumbprint_input.as_bytes()));
        let header = serde_json::to_vec(&Header {
            alg,
            typ: "JWT",
            kid: &kid,
        })
        .map_err(|e| e.to_string())?;
        Ok(Key {
            header_b64: URL_SAFE_NO_PAD.encode(header),
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

    fn verify(&self, message: &[u8], sig: &[u8]) -> Result<(), KeyError> {
        let checked = match &self.pair {
            Pair::Rsa(pair) => UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, pair.public())
                .verify(message, sig),
            Pair::Ec(pair) => UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, pair.public_key())
                .verify(message, sig),
        };
        checked.map_err(|_| KeyError::BadSignature)
    }
}

/// base64url `n` and `e`, big-endian without leading zeros (RFC 7518 §6.3.1).
fn rsa_components(pair: &RsaKeyPair) -> (String, String) {
    let public = RsaPublicKeyComponents::<Vec<u8>>::from(pair.public());
    (
        URL_SAFE_NO_PAD.encode(&public.n),
        URL_SAFE_NO_PAD.encode(&public.e),
    )
}

/// base64url `x` and `y` of the public point, each the full 32 bytes (RFC 7518
/// §6.2.1.2). ring gives the point uncompressed: `04 || x || y`.
fn ec_coordinates(pair: &EcdsaKeyPair) -> (String, String) {
    let point = pair.public_key().as_ref();
    let (x, y) = point[1..].split_at(32);
    (URL_SAFE_NO_PAD.encode(x), URL_SAFE_NO_PAD.encode(y))
}

fn decode_json<T: serde::de::DeserializeOwned>(b64: &str) -> Option<T> {
    let bytes = URL_SAFE_NO_PAD.decode(b64).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// One new RS256 and one new ES256 key, as they are stored.
fn generate_stored(rng: &SystemRandom, created_at: u64) -> Result<Vec<StoredKey>, KeyError> {
    let failed = |what: &str| KeyError::Generate(what.to_owned());
    // Fails cleanly here when there is no OS random source at all, rather than
    // inside the RSA generator, which cannot report it (see `RingRng`).
    rng.fill(&mut [0u8; 32])
        .map_err(|_| failed("the system random number generator failed"))?;

    let rsa_key = rsa::RsaPrivateKey::new(&mut RingRng(rng), RSA_BITS)
        .map_err(|e| KeyError::Generate(format!("RSA: {e}")))?;
    let rsa_pkcs8 = rsa::pkcs8::EncodePrivateKey::to_pkcs8_der(&rsa_key)
        .map_err(|e| KeyError::Generate(format!("RSA PKCS#8: {e}")))?;
    let ec_pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, rng)
        .map_err(|_| failed("P-256"))?;

    let mut stored = Vec::with_capacity(2);
    for (alg, pkcs8) in [
        (Alg::Rs256, rsa_pkcs8.as_bytes()),
        (Alg::Es256, ec_pkcs8.as_ref()),
    ] {
        let pkcs8 = STANDARD.encode(pkcs8);
        let key = Key::parse(alg, &pkcs8, created_at, rng).map_err(KeyError::Generate)?;
        stored.push(StoredKey {
            kid: key.kid,
            alg,
            created_at,
            pkcs8,
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

/// `rsa` draws randomness through rand_core 0.6; this lends it ring's
/// `SystemRandom` (the OS generator), so there is one source for all keys.
struct RingRng<'a>(&'a SystemRandom);

impl rsa::rand_core::RngCore for RingRng<'_> {
    fn next_u32(&mut self) -> u32 {
        let mut bytes = [0u8; 4];
        self.fill_bytes(&mut bytes);
        u32::from_le_bytes(bytes)
    }

    fn next_u64(&mut self) -> u64 {
        let mut bytes = [0u8; 8];
        self.fill_bytes(&mut bytes);
        u64::from_le_bytes(bytes)
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        // rand_core 0.6 gives this no error path, and generating a key from
        // anything but the OS generator would be worse than stopping. The OS
        // generator was just checked to work (`generate_stored`).
        if self.0.fill(dest).is_err() {
            panic!("the system random number generator failed during key generation");
        }
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rsa::rand_core::Error> {
        self.0
            .fill(dest)
            .map_err(|_| rsa::rand_core::Error::new("the system random number generator failed"))
    }
}

impl rsa::rand_core::CryptoRng for RingRng<'_> {}

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;

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

    fn header_of(token: &str) -> Value {
        let header = token.split('.').next().expect("header");
        decode_json(header).expect("header json")
    }

    fn jwk_for<'a>(jwks: &'a Value, kid: &str) -> &'a Value {
        jwks["keys"]
            .as_array()
            .expect("keys array")
            .iter()
            .find(|k| k["kid"] == kid)
            .expect("kid in jwks")
    }

    fn write_key_file(path: &Path, keys: Vec<StoredKey>) {
        let file = KeyFile {
            version: file::VERSION,
            keys,
        };
        std::fs::write(path, serde_json::to_vec(&file).expect("serialize")).expect("write");
    }

    #[test]
    fn signed_tokens_verify_and_return_their_claims() {
        for alg in Alg::ALL {
            let token = keys().sign(alg, &claims()).expect("sign");
            assert_eq!(keys().verify(&token).expect("verify"), claims(), "{alg}");
        }
    }

    #[test]
    fn tokens_carry_alg_typ_and_the_signing_kid_in_the_header() {
        for alg in Alg::ALL {
            let token = keys().sign(alg, &claims()).expect("sign");
            let header = header_of(&token);
            assert_eq!(header["alg"], alg.as_str());
            assert_eq!(header["typ"], "JWT");
            let kid = header["kid"].as_str().expect("kid");
            assert_eq!(jwk_for(&keys().jwks(), kid)["alg"], alg.as_str());
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
            assert!(matches!(
                keys().verify(&tampered),
                Err(KeyError::BadSignature)
            ));
        }
    }

    #[test]
    fn a_token_signed_by_another_key_set_fails_verification() {
        for alg in Alg::ALL {
            let token = other_keys().sign(alg, &claims()).expect("sign");
            assert!(matches!(
                keys().verify(&token),
                Err(KeyError::UnknownKey(_))
            ));
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
            assert!(matches!(
                keys().verify(&spliced),
                Err(KeyError::BadSignature)
            ));
        }
    }

    #[test]
    fn alg_none_and_hmac_headers_are_refused() {
        let kid = keys().keys[keys().active_rs256].kid.clone();
        let payload = b64_json(&claims());
        for alg in ["none", "HS256", "HS512", "rs256", ""] {
            let header = b64_json(&json!({"alg": alg, "typ": "JWT", "kid": kid}));
            for sig in ["", "c2ln"] {
                let token = format!("{header}.{payload}.{sig}");
                let err = keys().verify(&token).expect_err(alg);
                assert!(
                    matches!(&err, KeyError::UnsupportedAlg(a) if a == alg),
                    "{alg}: {err}"
                );
            }
        }
    }

    #[test]
    fn a_header_naming_another_alg_than_its_key_is_refused() {
        // Algorithm confusion: an RS256 key's kid with an ES256 header.
        let token = keys().sign(Alg::Rs256, &claims()).expect("sign");
        let kid = header_of(&token)["kid"].clone();
        let (_, rest) = token.split_once('.').expect("dot");
        let header = b64_json(&json!({"alg": "ES256", "typ": "JWT", "kid": kid}));
        assert!(matches!(
            keys().verify(&format!("{header}.{rest}")),
            Err(KeyError::AlgMismatch {
                alg: Alg::Es256,
                ..
            })
        ));
    }

    #[test]
    fn malformed_tokens_are_refused() {
        let token = keys().sign(Alg::Es256, &claims()).expect("sign");
        let kid = header_of(&token)["kid"].clone();
        let (_, rest) = token.split_once('.').expect("dot");
        let no_kid = format!("{}.{rest}", b64_json(&json!({"alg": "ES256"})));
        let critical = format!(
            "{}.{rest}",
            b64_json(&json!({"alg": "ES256", "kid": kid, "crit": ["exp"]}))
        );
        let too_long = format!("{token}{}", "A".repeat(MAX_TOKEN_LEN));
        for bad in [
            "",
            "a.b",
            &format!("{token}.x"),
            &format!("{token}="),
            &format!("!{token}"),
            &no_kid,
            &critical,
            &too_long,
        ] {
            assert!(
                matches!(keys().verify(bad), Err(KeyError::Malformed(_))),
                "{bad:.40}"
            );
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
    fn signatures_verify_with_ring_against_the_published_jwks() {
        let jwks = keys().jwks();
        let b64 = |v: &Value| {
            URL_SAFE_NO_PAD
                .decode(v.as_str().expect("str"))
                .expect("b64url")
        };
        for alg in Alg::ALL {
            let token = keys().sign(alg, &claims()).expect("sign");
            let (input, sig) = token.rsplit_once('.').expect("dot");
            let sig = URL_SAFE_NO_PAD.decode(sig).expect("sig b64url");
            let jwk = jwk_for(&jwks, header_of(&token)["kid"].as_str().expect("kid"));
            let checked = match alg {
                Alg::Rs256 => RsaPublicKeyComponents {
                    n: b64(&jwk["n"]),
                    e: b64(&jwk["e"]),
                }
                .verify(&RSA_PKCS1_2048_8192_SHA256, input.as_bytes(), &sig),
                Alg::Es256 => {
                    assert_eq!(sig.len(), 64, "JOSE r||s");
                    let mut point = vec![0x04];
                    point.extend(b64(&jwk["x"]));
                    point.extend(b64(&jwk["y"]));
                    UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point)
                        .verify(input.as_bytes(), &sig)
                }
            };
            assert!(checked.is_ok(), "{alg}");
        }
    }

    #[test]
    fn the_first_start_writes_an_owner_only_file_that_later_starts_reuse() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("keys.json");
        let first = KeySet::load_or_generate(&path).expect("generate");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .expect("read dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(leftovers, ["keys.json"], "no temporary file left");

        let second = KeySet::load_or_generate(&path).expect("load");
        assert_eq!(second.kids(), first.kids());
        assert_eq!(second.jwks(), first.jwks());
        for alg in Alg::ALL {
            let token = first.sign(alg, &claims()).expect("sign");
            assert_eq!(second.verify(&token).expect("verify"), claims());
        }
    }

    #[test]
    fn the_newest_key_per_alg_signs_and_older_ones_still_verify() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("keys.json");
        let rng = SystemRandom::new();
        let old = generate_stored(&rng, 1_000).expect("generate");
        let new = generate_stored(&rng, 2_000).expect("generate");
        let (old_kids, new_kids): (Vec<_>, Vec<_>) = old
            .iter()
            .zip(&new)
            .map(|(o, n)| (o.kid.clone(), n.kid.clone()))
            .unzip();
        // Newest last in one alg, first in the other: order in the file does not matter.
        let mut stored = new;
        stored.extend(old);
        stored.swap(0, 2);
        write_key_file(&path, stored);

        let rotated = KeySet::load_or_generate(&path).expect("load");
        assert_eq!(rotated.jwks()["keys"].as_array().expect("keys").len(), 4);
        for (i, alg) in Alg::ALL.into_iter().enumerate() {
            let token = rotated.sign(alg, &claims()).expect("sign");
            assert_eq!(header_of(&token)["kid"], new_kids[i].as_str());
        }
        let old_only = dir.path().join("old.json");
        let reread: KeyFile =
            serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("parse");
        write_key_file(
            &old_only,
            reread
                .keys
                .into_iter()
                .filter(|k| old_kids.contains(&k.kid))
                .collect(),
        );
        let before_rotation = KeySet::load_or_generate(&old_only).expect("load");
        for alg in Alg::ALL {
            let token = before_rotation.sign(alg, &claims()).expect("sign");
            assert_eq!(rotated.verify(&token).expect("verify"), claims());
        }
    }

    #[test]
    fn a_corrupt_key_file_is_an_error_naming_its_path_and_is_left_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("keys.json");
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
            std::fs::write(&path, &contents).expect("write");
            let err = KeySet::load_or_generate(&path).expect_err(&contents);
            assert!(matches!(err, KeyError::Corrupt { .. }), "{err}");
            assert!(
                err.to_string().contains(&path.display().to_string()),
                "{err}"
            );
            assert_eq!(std::fs::read_to_string(&path).expect("read"), contents);
        }
    }

    #[test]
    fn a_key_file_whose_kid_does_not_match_its_key_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("keys.json");
        let mut stored = generate_stored(&SystemRandom::new(), 0).expect("generate");
        stored[1].kid = stored[0].kid.clone();
        write_key_file(&path, stored);
        let err = KeySet::load_or_generate(&path).expect_err("kid mismatch");
        assert!(matches!(err, KeyError::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains("kid should be"), "{err}");
    }

    #[test]
    fn an_unreadable_key_file_is_an_error_not_a_reason_to_generate() {
        let dir = tempfile::tempdir().expect("tempdir");
        // A directory where the file should be: reading it fails, but not with NotFound.
        let err = KeySet::load_or_generate(dir.path()).expect_err("directory");
        assert!(matches!(err, KeyError::Read { .. }), "{err}");
        assert!(err.to_string().contains(&dir.path().display().to_string()));
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
    fn a_key_set_can_be_shared_between_threads() {
        fn shareable<T: Send + Sync>() {}
        shareable::<KeySet>();
    }
}
