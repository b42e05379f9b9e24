//! `/api/v2/keys/signing`: the signing keys (Auth0's endpoints) — list,
//! get by kid, rotate, revoke.

use http::Method;

use super::{ApiError, ApiReply, ApiRequest, method_not_allowed};
use crate::broker::Broker;
use crate::broker::rotation::KeyOpError;
use crate::keys::{KeyInfo, RotationError};

/// Reads the signing keys.
pub const READ_SIGNING_KEYS: &str = "read:signing_keys";
/// Rotates them.
pub const CREATE_SIGNING_KEYS: &str = "create:signing_keys";
/// Revokes one.
pub const UPDATE_SIGNING_KEYS: &str = "update:signing_keys";

/// The scope a `/keys/...` request needs.
pub(super) fn scope(method: &Method, seg: &[&str]) -> &'static str {
    match (method, seg) {
        (&Method::POST, ["signing", "rotate"]) => CREATE_SIGNING_KEYS,
        (&Method::PUT, ["signing", _, "revoke"]) => UPDATE_SIGNING_KEYS,
        _ => READ_SIGNING_KEYS,
    }
}

impl From<KeyOpError> for ApiError {
    fn from(e: KeyOpError) -> Self {
        match e {
            KeyOpError::Rotation(RotationError::Unknown(kid)) => {
                ApiError::not_found(format!("signing key `{kid}`"))
            }
            KeyOpError::Rotation(e @ RotationError::Current(_)) => {
                ApiError::bad_request(e.to_string())
            }
            KeyOpError::Rotation(RotationError::Key(e)) => {
                tracing::error!(error = %e, "a signing-key operation failed");
                ApiError::new(500, "the signing keys could not be changed")
            }
            KeyOpError::Store(e) => e.into(),
            e @ KeyOpError::Contended => ApiError::new(409, e.to_string()),
        }
    }
}

impl Broker {
    pub(super) async fn keys_api(
        &self,
        req: &ApiRequest<'_>,
        seg: &[&str],
    ) -> Result<ApiReply, ApiError> {
        match (req.method, seg) {
            (&Method::GET, ["signing"]) => to_reply(200, &self.signing_keys()),
            (&Method::GET, ["signing", kid]) => {
                let key = self
                    .signing_keys()
                    .into_iter()
                    .find(|k| k.kid == *kid)
                    .ok_or_else(|| ApiError::not_found(format!("signing key `{kid}`")))?;
                to_reply(200, &key)
            }
            (&Method::POST, ["signing", "rotate"]) => {
                let keys = self.rotate_signing_keys().await?;
                // Auth0 answers with the new current key's kid.
                let current: Vec<&KeyInfo> = keys.iter().filter(|k| k.current).collect();
                let body = Rotated {
                    kid: current.first().map(|k| k.kid.as_str()).unwrap_or_default(),
                    keys: current,
                };
                to_reply(201, &body)
            }
            (&Method::PUT, ["signing", kid, "revoke"]) => {
                let keys = self.revoke_signing_key(kid).await?;
                let key = keys.into_iter().find(|k| k.kid == *kid);
                to_reply(200, &key)
            }
            (_, ["signing", ..]) => Err(method_not_allowed()),
            _ => Err(ApiError::not_found(format!("/api/v2/{}", req.path))),
        }
    }
}

/// `POST /keys/signing/rotate`'s answer: the first current key's kid (the
/// RS256 one, Auth0's algorithm) and every current key.
#[derive(serde::Serialize)]
struct Rotated<'a> {
    kid: &'a str,
    keys: Vec<&'a KeyInfo>,
}

fn to_reply(status: u16, value: &impl serde::Serialize) -> Result<ApiReply, ApiError> {
    let body = serde_json::to_string(value).map_err(|e| ApiError::new(500, e.to_string()))?;
    Ok(ApiReply { status, body })
}
