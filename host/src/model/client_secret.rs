//! How an app's client secret is stored and checked.
//!
//! Two forms, chosen by who picked the secret:
//!
//! - **SHA-256** for secrets Waypass generates (API-created clients,
//!   `rotate-secret`): 256 random bits. Brute-forcing 2^256 candidates is
//!   infeasible whatever the hash costs, so a slow hash would buy nothing,
//!   and the token endpoint, on every login's path, stays at one SHA-256.
//!   `client_secret_sha256` in the configuration file is this form too (the
//!   file's owner chose to give a hash, not a secret).
//! - **argon2id** (a PHC string, salted) for secrets from the configuration
//!   file that a person could have chosen (`client_secret`,
//!   `client_secret_env`, `client_secret_file`): a stolen database must not
//!   let anyone try a password list at SHA-256 speed.
//!
//! A legitimate app presents the same secret on every token request; paying
//! argon2 each time would make the slow-hash clients' logins slow and give
//! anyone who can reach `/oauth/token` a cheap way to burn our CPU with the
//! right secret too. [`Verifier`] remembers, per client, a keyed digest of
//! the secret that argon2 last verified (see there for why that is safe),
//! and runs at most [`MAX_CONCURRENT_SLOW_VERIFICATIONS`] argon2
//! verifications at once, off the async workers.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use ring::hmac;
use ring::rand::{SecureRandom as _, SystemRandom};
use subtle::ConstantTimeEq as _;

use crate::secret::SecretHash;

/// argon2id memory cost in KiB: 19 MiB, the first of OWASP's recommended
/// argon2id configurations (Password Storage Cheat Sheet). Every
/// verification holds this much memory for its duration, which
/// [`MAX_CONCURRENT_SLOW_VERIFICATIONS`] bounds.
pub const ARGON2_MEMORY_KIB: u32 = 19 * 1024;
/// argon2id passes over the memory: 2, with [`ARGON2_MEMORY_KIB`], as OWASP
/// recommends (tens of milliseconds on one core here: see `BENCHMARKS.md`).
pub const ARGON2_ITERATIONS: u32 = 2;
/// argon2id lanes: 1. One request must not occupy several of the few
/// cores a broker has; the cost of the hash comes from memory and passes.
pub const ARGON2_PARALLELISM: u32 = 1;
/// Salt length in bytes: 16, RFC 9106 §3.1's recommendation.
const SALT_BYTES: usize = 16;
/// argon2 verifications running at once. Each holds a core and
/// [`ARGON2_MEMORY_KIB`] of memory for tens of milliseconds; more at once
/// would let a flood of wrong secrets take every core (and 19 MiB each)
/// from the logins. Legitimate apps rarely need one: see [`Verifier`].
pub const MAX_CONCURRENT_SLOW_VERIFICATIONS: usize = 2;

/// A stored client secret, never the secret itself.
///
/// Stored (and serialised) as one string: 64 hex digits for SHA-256 (the
/// form stores held before argon2id existed here, so old rows read back
/// unchanged), or an argon2id PHC string (`$argon2id$v=19$m=…`).
#[derive(Clone, PartialEq, Eq)]
pub enum ClientSecretHash {
    /// SHA-256 of a generated 256-bit secret, or `client_secret_sha256`.
    Sha256(SecretHash),
    /// argon2id PHC string of a secret a person could have chosen.
    Argon2id(Arc<str>),
}

/// Why a stored client secret could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum ClientSecretError {
    #[error("the operating system's random number generator failed")]
    Random,
    #[error("argon2id: {0}")]
    Argon2(String),
    #[error("a stored client secret must be 64 hex digits (SHA-256) or an argon2id PHC string")]
    Unrecognised,
}

impl ClientSecretHash {
    /// The SHA-256 form, for a generated high-entropy secret.
    pub fn fast(secret: &str) -> Self {
        Self::Sha256(SecretHash::of(secret))
    }

    /// The argon2id form with a fresh random salt, for a secret a person
    /// could have chosen. Takes tens of milliseconds: not for async code.
    pub fn slow(secret: &str) -> Result<Self, ClientSecretError> {
        let mut salt = [0u8; SALT_BYTES];
        SystemRandom::new()
            .fill(&mut salt)
            .map_err(|_| ClientSecretError::Random)?;
        let salt = SaltString::encode_b64(&salt).map_err(argon2_error)?;
        let phc = argon2()?
            .hash_password(secret.as_bytes(), &salt)
            .map_err(argon2_error)?;
        Ok(Self::Argon2id(phc.to_string().into()))
    }

    /// Reads the stored string form.
    pub fn parse(stored: &str) -> Result<Self, ClientSecretError> {
        if stored.starts_with("$argon2id$") {
            // Checked once here, so a verification never meets a bad
            // string: argon2id, parameters argon2 accepts, a salt, a hash.
            let hash = PasswordHash::new(stored).map_err(argon2_error)?;
            Params::try_from(&hash).map_err(argon2_error)?;
            if hash.algorithm != argon2::ARGON2ID_IDENT
                || hash.salt.is_none()
                || hash.hash.is_none()
            {
                return Err(ClientSecretError::Unrecognised);
            }
            return Ok(Self::Argon2id(stored.into()));
        }
        SecretHash::from_hex(stored)
            .map(Self::Sha256)
            .ok_or(ClientSecretError::Unrecognised)
    }

    /// The stored string form.
    pub fn as_stored(&self) -> String {
        match self {
            Self::Sha256(hash) => hash.to_hex(),
            Self::Argon2id(phc) => phc.to_string(),
        }
    }

    /// Whether `candidate` is the secret. For argon2id this runs the slow
    /// hash on the calling thread: the token endpoint goes through
    /// [`Verifier`] instead.
    pub fn matches(&self, candidate: &str) -> bool {
        match self {
            Self::Sha256(hash) => hash.matches(candidate),
            Self::Argon2id(phc) => verify_argon2(phc, candidate),
        }
    }
}

/// Our argon2id parameters (the ones new hashes get; a verification uses
/// the parameters written in the stored string).
fn argon2() -> Result<Argon2<'static>, ClientSecretError> {
    let params = Params::new(
        ARGON2_MEMORY_KIB,
        ARGON2_ITERATIONS,
        ARGON2_PARALLELISM,
        None,
    )
    .map_err(argon2_error)?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

fn argon2_error(e: impl fmt::Display) -> ClientSecretError {
    ClientSecretError::Argon2(e.to_string())
}

fn verify_argon2(phc: &str, candidate: &str) -> bool {
    // `parse` checked the string; a failure here is a mismatch, not a panic.
    PasswordHash::new(phc).is_ok_and(|hash| {
        Argon2::default()
            .verify_password(candidate.as_bytes(), &hash)
            .is_ok()
    })
}

impl fmt::Debug for ClientSecretHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sha256(hash) => write!(f, "Sha256({hash:?})"),
            Self::Argon2id(_) => f.write_str("Argon2id(…)"),
        }
    }
}

impl serde::Serialize for ClientSecretHash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.as_stored())
    }
}

impl<'de> serde::Deserialize<'de> for ClientSecretHash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Checks presented client secrets, remembering the ones argon2 verified.
///
/// The memory holds, per client, `HMAC-SHA256(k, client_id ‖ stored PHC ‖
/// secret)` of the last secret argon2 accepted, with `k` random per
/// process. A presented secret whose digest equals it is the verified
/// secret (HMAC is collision-resistant), for the same stored hash (a
/// changed hash changes every digest): accepting it is exactly as safe as
/// running argon2 again. It is derived and rebuildable: lost at restart,
/// the next request pays argon2 once. It holds at most one entry per client
/// with an argon2id secret (only those from the configuration file), and a
/// wrong secret never adds one. Someone who can read this process's memory
/// could test guesses at HMAC speed instead of argon2 speed, but could read
/// the connections' provider secrets in clear there anyway.
pub struct Verifier {
    key: hmac::Key,
    verified: Mutex<HashMap<String, hmac::Tag>>,
    /// Permits for argon2 runs; a permit moves into the blocking task, so
    /// a request dropped mid-verification (its client went away) still
    /// holds it until the hash finishes.
    slow: Arc<tokio::sync::Semaphore>,
    /// argon2 verifications run so far (tests and benchmarks watch it).
    slow_runs: std::sync::atomic::AtomicU64,
}

impl Default for Verifier {
    fn default() -> Self {
        Self::new()
    }
}

impl Verifier {
    pub fn new() -> Self {
        let rng = SystemRandom::new();
        // As for tokens: without a working system RNG nothing here is safe.
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &rng)
            .unwrap_or_else(|_| panic!("the operating system's random number generator failed"));
        Self {
            key,
            verified: Mutex::new(HashMap::new()),
            slow: Arc::new(tokio::sync::Semaphore::new(
                MAX_CONCURRENT_SLOW_VERIFICATIONS,
            )),
            slow_runs: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Whether `presented` is `client_id`'s secret, stored as `stored`.
    pub async fn verify(
        &self,
        client_id: &str,
        stored: &ClientSecretHash,
        presented: &str,
    ) -> bool {
        let phc = match stored {
            ClientSecretHash::Sha256(hash) => return hash.matches(presented),
            ClientSecretHash::Argon2id(phc) => Arc::clone(phc),
        };
        let digest = self.digest(client_id, &phc, presented);
        let known = self
            .lock()
            .get(client_id)
            .is_some_and(|tag| bool::from(tag.as_ref().ct_eq(digest.as_ref())));
        if known {
            return true;
        }
        let Ok(permit) = Arc::clone(&self.slow).acquire_owned().await else {
            // The semaphore is never closed; refuse rather than skip the check.
            return false;
        };
        self.slow_runs
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let candidate = presented.to_owned();
        let ok = tokio::task::spawn_blocking(move || {
            let ok = verify_argon2(&phc, &candidate);
            drop(permit);
            ok
        })
        .await
        .unwrap_or(false);
        if ok {
            self.lock().insert(client_id.to_owned(), digest);
        }
        ok
    }

    /// How many argon2 verifications have run.
    pub fn slow_verifications(&self) -> u64 {
        self.slow_runs.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn digest(&self, client_id: &str, phc: &str, presented: &str) -> hmac::Tag {
        let mut ctx = hmac::Context::with_key(&self.key);
        // Length-prefixed, so no two (id, hash, secret) triples share an input.
        for part in [client_id, phc, presented] {
            ctx.update(&(part.len() as u64).to_be_bytes());
            ctx.update(part.as_bytes());
        }
        ctx.sign()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, hmac::Tag>> {
        self.verified.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slow_hash_is_a_salted_argon2id_phc_string_with_our_parameters() {
        let a = ClientSecretHash::slow("correct horse").expect("hash");
        let b = ClientSecretHash::slow("correct horse").expect("hash");
        let stored = a.as_stored();
        assert!(
            stored.starts_with(&format!(
                "$argon2id$v=19$m={ARGON2_MEMORY_KIB},t={ARGON2_ITERATIONS},p={ARGON2_PARALLELISM}$"
            )),
            "{stored}"
        );
        assert_ne!(stored, b.as_stored(), "each hash has its own salt");
        assert!(a.matches("correct horse"));
        assert!(!a.matches("correct horse "));
    }

    #[test]
    fn stored_forms_read_back_and_old_sha256_rows_still_read() {
        let slow = ClientSecretHash::slow("s").expect("hash");
        let json = serde_json::to_value(&slow).expect("serialises");
        let back: ClientSecretHash = serde_json::from_value(json).expect("reads back");
        assert_eq!(back, slow);

        let hex = SecretHash::of("s").to_hex();
        let old: ClientSecretHash =
            serde_json::from_value(serde_json::json!(hex)).expect("a SHA-256 row");
        assert_eq!(old, ClientSecretHash::fast("s"));
        assert!(old.matches("s"));

        for bad in [
            "",
            "abc",
            "$argon2id$v=19$garbage",
            "$argon2i$v=19$m=8,t=1,p=1$c2FsdA$aGFzaA",
        ] {
            assert!(ClientSecretHash::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn debug_never_shows_the_phc_string() {
        let slow = ClientSecretHash::slow("s").expect("hash");
        assert_eq!(format!("{slow:?}"), "Argon2id(…)");
    }

    #[tokio::test]
    async fn the_verifier_runs_argon2_once_for_a_right_secret_and_every_time_for_a_wrong_one() {
        let stored = ClientSecretHash::slow("app-secret").expect("hash");
        let verifier = Verifier::new();
        for _ in 0..3 {
            assert!(verifier.verify("app", &stored, "app-secret").await);
        }
        assert_eq!(verifier.slow_verifications(), 1, "then remembered");
        assert!(!verifier.verify("app", &stored, "wrong").await);
        assert!(!verifier.verify("app", &stored, "wrong").await);
        assert_eq!(
            verifier.slow_verifications(),
            3,
            "wrong secrets are never remembered"
        );
        assert!(verifier.verify("app", &stored, "app-secret").await);
        assert_eq!(verifier.slow_verifications(), 3);
    }

    #[tokio::test]
    async fn a_remembered_secret_does_not_open_another_client_nor_a_changed_hash() {
        let stored = ClientSecretHash::slow("shared").expect("hash");
        let verifier = Verifier::new();
        assert!(verifier.verify("a", &stored, "shared").await);
        // Another client with the same stored hash: its own argon2 run.
        assert!(verifier.verify("b", &stored, "shared").await);
        assert_eq!(verifier.slow_verifications(), 2);
        // The hash changed (the file's secret changed): nothing remembered counts.
        let changed = ClientSecretHash::slow("new").expect("hash");
        assert!(!verifier.verify("a", &changed, "shared").await);
        assert!(verifier.verify("a", &changed, "new").await);
        assert_eq!(verifier.slow_verifications(), 4);
    }

    #[tokio::test]
    async fn sha256_secrets_never_run_argon2() {
        let verifier = Verifier::new();
        let stored = ClientSecretHash::fast("generated");
        assert!(verifier.verify("api-made", &stored, "generated").await);
        assert!(!verifier.verify("api-made", &stored, "other").await);
        assert_eq!(verifier.slow_verifications(), 0);
    }
}
