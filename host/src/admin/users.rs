//! `/api/v2/users`: list (paged, searchable by email), get, delete (which
//! revokes the user's sessions and tokens). Their sessions and refresh
//! tokens are `sessions.rs`'s.

use http::Method;
use serde_json::{Value, json};

use super::{ApiError, ApiReply, ApiRequest, method_not_allowed};
use crate::broker::Broker;
use crate::broker::oauth::Params;
use crate::store::User;

/// Users per page unless `per_page` says otherwise, and at most.
const DEFAULT_PER_PAGE: usize = 50;
const MAX_PER_PAGE: usize = 100;

impl Broker {
    pub(super) async fn users_api(
        &self,
        req: &ApiRequest<'_>,
        seg: &[&str],
    ) -> Result<ApiReply, ApiError> {
        match (req.method, seg) {
            (&Method::GET, []) => {
                let params =
                    Params::parse(req.query).map_err(|e| ApiError::bad_request(e.description))?;
                let number = |name: &str, default: usize| -> Result<usize, ApiError> {
                    params
                        .get(name)
                        .map(|v| {
                            v.parse().map_err(|_| {
                                ApiError::bad_request(format!("`{name}` must be a number"))
                            })
                        })
                        .unwrap_or(Ok(default))
                };
                let per_page = number("per_page", DEFAULT_PER_PAGE)?.clamp(1, MAX_PER_PAGE);
                let page = number("page", 0)?;
                let users = self
                    .store
                    .list_users(page.saturating_mul(per_page), per_page, params.get("email"))
                    .await?;
                let list: Vec<Value> = users.iter().map(public_json).collect();
                Ok(ApiReply::json(
                    200,
                    json!({"page": page, "per_page": per_page, "users": list}),
                ))
            }
            (&Method::GET, [id]) => {
                let user = self
                    .store
                    .get_user(id)
                    .await?
                    .ok_or_else(|| ApiError::not_found(format!("user `{id}`")))?;
                Ok(ApiReply::json(200, public_json(&user)))
            }
            (&Method::DELETE, [id]) => {
                if !self.store.delete_user(id).await? {
                    return Err(ApiError::not_found(format!("user `{id}`")));
                }
                // What was issued to them goes with them: their sessions
                // end (their apps are told), their tokens are revoked.
                self.revoke_user(id).await?;
                Ok(ApiReply::no_content())
            }
            _ => Err(method_not_allowed()),
        }
    }
}

fn public_json(u: &User) -> Value {
    let mut value = serde_json::to_value(&u.profile).unwrap_or_default();
    if let Some(obj) = value.as_object_mut() {
        obj.remove("user_id");
        obj.insert("provider_user_id".into(), json!(u.profile.user_id));
        obj.insert("user_id".into(), json!(u.user_id));
        obj.insert("connection".into(), json!(u.connection));
        obj.insert("created_at".into(), json!(u.created_at));
        obj.insert("last_login".into(), json!(u.last_login));
        obj.insert("logins_count".into(), json!(u.logins_count));
    }
    value
}
