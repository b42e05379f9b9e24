//! Secrets at rest (issue #14 §4): the values a copy of the database must
//! not hand out — connections' client secrets, the broker's and the
//! connections' private keys, Actions' secrets, the provider's tokens —
//! are stored sealed with AES-256-GCM under a key the database does not
//! hold.
//!
//! A sealed value is one string, `wpsec1:<key id>:<base64url(nonce ‖
//! ciphertext ‖ tag)>`, so it fits in the JSON field or text column that
//! held the clear value. Its additional authenticated data names its place
//! (table, row id, field): a ciphertext copied to another row, or to
//! another field of the same row, does not open.
//!
//! The AEAD is aws-lc-rs's: it is already the broker's crypto library
//! (signing keys, `private_key_jwt`), so no second implementation of AES is
//! linked in, and AES-GCM runs on the CPU's AES instructions.
//!
//! Several keys may be given (the first seals, every one opens), so
//! `waypass store rotate-key` can reseal under a new key while the old one
//! still reads. A key's id is derived from the key (a hash), so a wrong key
//! is told apart from a tampered value: "sealed under key X, not
//! configured" rather than a failed decryption or garbage.

use std::fmt;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::rand::{SecureRandom as _, SystemRandom};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

/// AES-256: a key is 32 bytes (given base64-encoded).
pub const KEY_LEN: usize = 32;

/// What starts every sealed value (format version 1). A stored value
/// without it is a clear value written before secrets were sealed
/// (schema 6 and older): it reads as it is, until `rotate-key` seals it.
const SEALED_PREFIX: &str = "wpsec1:";

/// Hex digits of a key id: 64 bits of the key's hash tell keys apart
/// (a handful per deployment) without being a useful handle on the key.
const KEY_ID_HEX_LEN: usize = 16;

/// Where a secret lives: its table, its row's id and its field. The AAD of
/// its sealed value, so a value only opens where it was sealed.
#[derive(Debug, Clone, Copy)]
pub struct Place<'a> {
    pub table: &'static str,
    pub id: &'a str,
    pub field: &'a str,
}

impl Place<'_> {
    /// NUL-separated: no table, id or field name holds a NUL, so two
    /// places never have the same AAD.
    fn aad(&self) -> Vec<u8> {
        let mut aad = Vec::with_capacity(16 + self.table.len() + self.id.len() + self.field.len());
        aad.extend_from_slice(b"waypass-secret\0");
        aad.extend_from_slice(self.table.as_bytes());
        aad.push(0);
        aad.extend_from_slice(self.id.as_bytes());
        aad.push(0);
        aad.extend_from_slice(self.field.as_bytes());
        aad
    }
}

impl fmt::Display for Place<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} `{}` {}", self.table, self.id, self.field)
    }
}

/// Why a key could not be had or a value could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptError {
    /// A configured key is not base64 of 32 bytes.
    #[error("secrets key #{index}: {reason}")]
    BadKey { index: usize, reason: String },
    #[error("no secrets key given (WAYPASS_SECRETS_KEY or secrets_key_file)")]
    NoKey,
    /// The value was sealed under a key that is not configured: the
    /// broker was started with the wrong key (or without the old one).
    #[error(
        "{place}: sealed under secrets key `{key_id}`, which is not configured (configured: {configured}); start with the key that sealed it"
    )]
    UnknownKey {
        place: String,
        key_id: String,
        configured: String,
    },
    /// The key is right but the value does not open: it was altered, or
    /// moved from another row or field.
    #[error("{place}: the sealed value does not open (altered, or moved from another row)")]
    Tampered { place: String },
    #[error("{place}: not a well-formed sealed value")]
    Malformed { place: String },
    #[error("the system random generator failed")]
    Random,
}

/// One AES-256-GCM key and its id.
struct SecretsKey {
    id: String,
    key: LessSafeKey,
}

/// The configured keys: the first seals, all open.
pub struct Keyring {
    keys: Vec<SecretsKey>,
    random: SystemRandom,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("key_ids", &self.key_ids())
            .finish_non_exhaustive()
    }
}

/// The outcome of opening a stored value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opened {
    /// Sealed under the active key: nothing to do.
    Current(String),
    /// Sealed under an older key, or stored in the clear by an older
    /// schema: `rotate-key` reseals it.
    Stale(String),
}

impl Opened {
    pub fn into_clear(self) -> String {
        match self {
            Self::Current(s) | Self::Stale(s) => s,
        }
    }

    pub fn is_current(&self) -> bool {
        matches!(self, Self::Current(_))
    }
}

impl Keyring {
    /// Keys from base64 text, separated by commas, spaces or newlines (an
    /// environment variable or a file, one per line); the first seals.
    pub fn parse(text: &str) -> Result<Self, CryptError> {
        let keys = text
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|s| !s.is_empty())
            .enumerate()
            .map(|(i, s)| {
                let index = i + 1;
                let bytes = STANDARD
                    .decode(s)
                    .or_else(|_| URL_SAFE_NO_PAD.decode(s))
                    .map_err(|e| CryptError::BadKey {
                        index,
                        reason: format!("not base64: {e}"),
                    })?;
                Self::key(&bytes).map_err(|reason| CryptError::BadKey { index, reason })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if keys.is_empty() {
            return Err(CryptError::NoKey);
        }
        Ok(Self {
            keys,
            random: SystemRandom::new(),
        })
    }

    /// A fresh random key, base64-encoded (what a key file holds).
    pub fn generate_key() -> Result<String, CryptError> {
        let mut key = [0u8; KEY_LEN];
        SystemRandom::new()
            .fill(&mut key)
            .map_err(|_| CryptError::Random)?;
        Ok(STANDARD.encode(key))
    }

    fn key(bytes: &[u8]) -> Result<SecretsKey, String> {
        if bytes.len() != KEY_LEN {
            return Err(format!(
                "{} bytes, where AES-256 takes {KEY_LEN}",
                bytes.len()
            ));
        }
        let mut hashed = b"waypass secrets key id\0".to_vec();
        hashed.extend_from_slice(bytes);
        let id: String = hex(digest(&SHA256, &hashed).as_ref())
            .chars()
            .take(KEY_ID_HEX_LEN)
            .collect();
        let unbound = UnboundKey::new(&AES_256_GCM, bytes).map_err(|e| e.to_string())?;
        Ok(SecretsKey {
            id,
            key: LessSafeKey::new(unbound),
        })
    }

    /// The ids of the configured keys, the active one first.
    pub fn key_ids(&self) -> Vec<&str> {
        self.keys.iter().map(|k| k.id.as_str()).collect()
    }

    /// The id of the key that seals.
    pub fn active_key_id(&self) -> &str {
        &self.keys[0].id
    }

    /// Seals `clear` for `place` under the active key, with a fresh random
    /// nonce (96 bits: far from the 2^32 seals per key NIST SP 800-38D
    /// §8.3 allows random nonces for, at a few secrets per row).
    pub fn seal(&self, place: Place<'_>, clear: &str) -> Result<String, CryptError> {
        let active = &self.keys[0];
        let mut nonce = [0u8; NONCE_LEN];
        self.random
            .fill(&mut nonce)
            .map_err(|_| CryptError::Random)?;
        let mut in_out = clear.as_bytes().to_vec();
        active
            .key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(place.aad()),
                &mut in_out,
            )
            .map_err(|_| CryptError::Random)?;
        let mut sealed = nonce.to_vec();
        sealed.extend_from_slice(&in_out);
        Ok(format!(
            "{SEALED_PREFIX}{}:{}",
            active.id,
            URL_SAFE_NO_PAD.encode(sealed)
        ))
    }

    /// Opens a stored value: a sealed one with the key it names, a clear
    /// one (written before sealing existed) as it is.
    pub fn open(&self, place: Place<'_>, stored: &str) -> Result<Opened, CryptError> {
        let Some(rest) = stored.strip_prefix(SEALED_PREFIX) else {
            return Ok(Opened::Stale(stored.to_owned()));
        };
        let malformed = || CryptError::Malformed {
            place: place.to_string(),
        };
        let (key_id, body) = rest.split_once(':').ok_or_else(malformed)?;
        let Some(index) = self.keys.iter().position(|k| k.id == key_id) else {
            return Err(CryptError::UnknownKey {
                place: place.to_string(),
                key_id: key_id.to_owned(),
                configured: self.key_ids().join(", "),
            });
        };
        let bytes = URL_SAFE_NO_PAD.decode(body).map_err(|_| malformed())?;
        if bytes.len() < NONCE_LEN + AES_256_GCM.tag_len() {
            return Err(malformed());
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| malformed())?;
        let mut in_out = ciphertext.to_vec();
        let clear = self.keys[index]
            .key
            .open_in_place(nonce, Aad::from(place.aad()), &mut in_out)
            .map_err(|_| CryptError::Tampered {
                place: place.to_string(),
            })?;
        let clear = String::from_utf8(clear.to_vec()).map_err(|_| malformed())?;
        Ok(if index == 0 {
            Opened::Current(clear)
        } else {
            Opened::Stale(clear)
        })
    }

    /// Whether `stored` is sealed under the active key (without opening
    /// it): `rotate-key` skips those, which makes it resumable.
    pub fn is_current(&self, stored: &str) -> bool {
        stored
            .strip_prefix(SEALED_PREFIX)
            .and_then(|rest| rest.split_once(':'))
            .is_some_and(|(id, _)| id == self.active_key_id())
    }
}

/// Whether a stored value is sealed (by any key).
pub fn is_sealed(stored: &str) -> bool {
    stored.starts_with(SEALED_PREFIX)
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_A: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const KEY_B: &str = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";

    fn place(id: &str) -> Place<'_> {
        Place {
            table: "connections",
            id,
            field: "options.client_secret",
        }
    }

    #[test]
    fn a_sealed_value_opens_where_it_was_sealed_and_holds_no_clear_text() {
        let keys = Keyring::parse(KEY_A).expect("key");
        let sealed = keys.seal(place("con_1"), "s3cret-value").expect("seal");
        assert!(!sealed.contains("s3cret"), "{sealed}");
        assert!(keys.is_current(&sealed));
        assert_eq!(
            keys.open(place("con_1"), &sealed).expect("open"),
            Opened::Current("s3cret-value".into())
        );
    }

    #[test]
    fn a_sealed_value_moved_to_another_row_or_field_does_not_open() {
        let keys = Keyring::parse(KEY_A).expect("key");
        let sealed = keys.seal(place("con_1"), "s3cret").expect("seal");
        assert!(matches!(
            keys.open(place("con_2"), &sealed),
            Err(CryptError::Tampered { .. })
        ));
        let other_field = Place {
            field: "document",
            ..place("con_1")
        };
        assert!(matches!(
            keys.open(other_field, &sealed),
            Err(CryptError::Tampered { .. })
        ));
    }

    #[test]
    fn a_value_sealed_under_a_key_not_configured_names_the_key_instead_of_garbage() {
        let a = Keyring::parse(KEY_A).expect("key");
        let b = Keyring::parse(KEY_B).expect("key");
        let sealed = a.seal(place("con_1"), "s3cret").expect("seal");
        let err = b.open(place("con_1"), &sealed).expect_err("wrong key");
        assert!(
            err.to_string().contains(a.active_key_id())
                && err.to_string().contains("not configured"),
            "{err}"
        );
    }

    #[test]
    fn an_older_key_still_opens_and_says_the_value_is_stale() {
        let old = Keyring::parse(KEY_A).expect("key");
        let sealed = old.seal(place("con_1"), "s3cret").expect("seal");
        let both = Keyring::parse(&format!("{KEY_B}, {KEY_A}")).expect("keys");
        assert!(!both.is_current(&sealed));
        assert_eq!(
            both.open(place("con_1"), &sealed).expect("open"),
            Opened::Stale("s3cret".into())
        );
    }

    #[test]
    fn a_clear_value_of_an_older_schema_reads_as_it_is_and_is_stale() {
        let keys = Keyring::parse(KEY_A).expect("key");
        assert_eq!(
            keys.open(place("con_1"), "legacy").expect("open"),
            Opened::Stale("legacy".into())
        );
        assert!(!keys.is_current("legacy"));
    }

    #[test]
    fn a_key_of_the_wrong_length_or_not_base64_is_refused_with_its_position() {
        let short = Keyring::parse(&format!("{KEY_A},AAEC")).expect_err("short");
        assert!(
            matches!(short, CryptError::BadKey { index: 2, .. }),
            "{short}"
        );
        assert!(matches!(
            Keyring::parse("not base64!"),
            Err(CryptError::BadKey { index: 1, .. })
        ));
        assert_eq!(Keyring::parse(" \n").expect_err("none"), CryptError::NoKey);
    }

    #[test]
    fn a_truncated_or_mangled_sealed_value_is_malformed_not_a_panic() {
        let keys = Keyring::parse(KEY_A).expect("key");
        let id = keys.active_key_id().to_owned();
        for bad in [
            "wpsec1:".to_owned(),
            format!("wpsec1:{id}"),
            format!("wpsec1:{id}:"),
            format!("wpsec1:{id}:AAAA"),
            format!("wpsec1:{id}:%%%"),
        ] {
            assert!(
                matches!(
                    keys.open(place("x"), &bad),
                    Err(CryptError::Malformed { .. })
                ),
                "{bad}"
            );
        }
    }
}
