//! Claims for one login's tokens that are never stored in the clear: the
//! connection's `non_persistent_attrs` (Auth0's: passed to the app, never
//! kept). They travel from the callback to `/oauth/token` inside the
//! authorization code's grant, which the store keeps until the code is
//! redeemed; so they are sealed there with a key derived from the code
//! itself. The store keeps only the code's hash, so neither the database
//! nor a copy of it can open them: only the app presenting the code can.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest as _, Sha256};

use crate::store::Metadata;

/// Separates these keys from any other use of a bearer value's hash.
const KEY_CONTEXT: &str = "waypass-sealed-claims-v1:";

/// The AES-256-GCM key of `bearer`. Each bearer value is random and seals
/// one message, so the fixed nonce below is never reused under a key.
fn key(bearer: &str) -> Option<LessSafeKey> {
    let digest = Sha256::digest(format!("{KEY_CONTEXT}{bearer}"));
    UnboundKey::new(&AES_256_GCM, &digest)
        .ok()
        .map(LessSafeKey::new)
}

fn nonce() -> Nonce {
    Nonce::assume_unique_for_key([0; 12])
}

/// `claims` sealed under `bearer` (base64url); `None` if it cannot be
/// (then nothing is passed on: a login never stores them in the clear).
pub(super) fn seal(bearer: &str, claims: &Metadata) -> Option<String> {
    let mut buffer = serde_json::to_vec(claims).ok()?;
    key(bearer)?
        .seal_in_place_append_tag(nonce(), Aad::empty(), &mut buffer)
        .ok()?;
    Some(URL_SAFE_NO_PAD.encode(buffer))
}

/// What [`seal`] sealed under `bearer`; `None` if `sealed` was not sealed
/// under it (or was altered).
pub(super) fn unseal(bearer: &str, sealed: &str) -> Option<Metadata> {
    let mut buffer = URL_SAFE_NO_PAD.decode(sealed).ok()?;
    let plain = key(bearer)?
        .open_in_place(nonce(), Aad::empty(), &mut buffer)
        .ok()?;
    serde_json::from_slice(plain).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> Metadata {
        serde_json::from_value(serde_json::json!({"nickname": "countess"})).expect("object")
    }

    #[test]
    fn sealed_claims_open_only_with_their_bearer_value() {
        let sealed = seal("code-1", &claims()).expect("sealed");
        assert!(!sealed.contains("countess"));
        assert_eq!(unseal("code-1", &sealed), Some(claims()));
        assert_eq!(unseal("code-2", &sealed), None);
    }

    #[test]
    fn altered_sealed_claims_do_not_open() {
        let sealed = seal("code-1", &claims()).expect("sealed");
        let mut bytes = URL_SAFE_NO_PAD.decode(&sealed).expect("base64");
        bytes[0] ^= 1;
        assert_eq!(unseal("code-1", &URL_SAFE_NO_PAD.encode(bytes)), None);
        assert_eq!(unseal("code-1", "not base64!"), None);
    }
}
