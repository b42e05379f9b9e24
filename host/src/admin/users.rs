//! `/api/v2/users`: list (Auth0's offset pagination, searchable by
//! email), get, update the metadata (Auth0's merge), delete (which
//! revokes the user's sessions and tokens). Their sessions and refresh
//! tokens are `sessions.rs`'s.

use http::Method;
use serde_json::{Value, json};

use super::listing::{Fields, ListQuery, Paging, Query};
use super::{ApiError, ApiReply, ApiRequest, method_not_allowed};
use crate::broker::Broker;
use crate::store::{Metadata, User};
use serde::Deserialize;

impl Broker {
    pub(super) async fn users_api(
        &self,
        req: &ApiRequest<'_>,
        seg: &[&str],
    ) -> Result<ApiReply, ApiError> {
        match (req.method, seg) {
            (&Method::GET, []) => {
                // Auth0's offset pagination and `fields`; `email` searches
                // (case-insensitive substring). Cut by the store, ordered by
                // user id.
                let query = Query::parse(req.query);
                let list = ListQuery::parse(&query)?;
                let Paging::Offset {
                    page,
                    per_page,
                    totals,
                } = list.paging
                else {
                    return Err(ApiError::bad_request(
                        "users are paged with `page` and `per_page`",
                    )
                    .with_code("invalid_query_string"));
                };
                let email = query.get("email");
                let start = page.saturating_mul(per_page);
                let users = self.store.list_users(start, per_page, email).await?;
                let mut shown = Vec::with_capacity(users.len());
                for u in &users {
                    shown.push(list.select(self.with_idp_tokens(req, u, public_json(u)).await?));
                }
                let users = shown;
                if !totals {
                    return Ok(ApiReply::json(200, Value::Array(users)));
                }
                let total = self.store.count_users(email).await?;
                Ok(ApiReply::json(
                    200,
                    list.offset_page("users", start, per_page, total, users),
                ))
            }
            (&Method::GET, [id]) => {
                let fields = Fields::parse(&Query::parse(req.query))?;
                let user = self
                    .store
                    .get_user(id)
                    .await?
                    .ok_or_else(|| ApiError::not_found(format!("user `{id}`")))?;
                let shown = self.with_idp_tokens(req, &user, public_json(&user)).await?;
                Ok(ApiReply::json(200, fields.apply(shown)))
            }
            (&Method::PATCH, [id]) => {
                let body: MetadataPatch = serde_json::from_value(super::json_body(req)?)
                    .map_err(|e| ApiError::bad_request(e.to_string()))?;
                if body.app_metadata.is_none() && body.user_metadata.is_none() {
                    return Err(ApiError::bad_request(
                        "send `app_metadata` and/or `user_metadata` (objects)",
                    ));
                }
                let user = self
                    .store
                    .merge_user_metadata(
                        id,
                        &body.app_metadata.unwrap_or_default(),
                        &body.user_metadata.unwrap_or_default(),
                    )
                    .await?
                    .ok_or_else(|| ApiError::not_found(format!("user `{id}`")))?;
                Ok(ApiReply::json(200, public_json(&user)))
            }
            (&Method::DELETE, [id]) => {
                let user = self.store.get_user(id).await?;
                if !self.store.delete_user(id).await? {
                    return Err(ApiError::not_found(format!("user `{id}`")));
                }
                if let Some(user) = user {
                    self.forget_idp_tokens(&user).await?;
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

impl Broker {
    /// Adds the provider's tokens to the user's identity of their
    /// connection (Auth0's `access_token`, `refresh_token`, `expires_in`
    /// in `identities[]`), for a caller holding `read:user_idp_tokens`
    /// only; anyone else gets `user` as it is.
    async fn with_idp_tokens(
        &self,
        req: &ApiRequest<'_>,
        user: &User,
        mut shown: Value,
    ) -> Result<Value, ApiError> {
        if !req.caller.has(super::READ_USER_IDP_TOKENS) {
            return Ok(shown);
        }
        let Some(tokens) = self.idp_tokens_of(user).await? else {
            return Ok(shown);
        };
        let now = self.clock.now();
        let identities = shown
            .get_mut("identities")
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
            .filter_map(Value::as_object_mut);
        for identity in identities {
            if identity.get("connection").and_then(Value::as_str) != Some(&user.connection)
                || identity.get("user_id").and_then(Value::as_str)
                    != Some(tokens.provider_user_id.as_str())
            {
                continue;
            }
            identity.insert("access_token".into(), json!(tokens.access_token));
            if let Some(refresh) = &tokens.refresh_token {
                identity.insert("refresh_token".into(), json!(refresh));
            }
            if let Some(at) = tokens.expires_at {
                identity.insert("expires_in".into(), json!(at.saturating_sub(now)));
            }
        }
        Ok(shown)
    }
}

/// One of a user's identities, in Auth0's shape (the user's
/// `identities`). Identities are not linked yet (each connection's
/// identity is its own user), so a user has exactly one.
#[derive(serde::Serialize)]
struct Identity<'a> {
    /// Auth0's provider name for custom social connections.
    provider: &'static str,
    connection: &'a str,
    /// The provider's id of the user (the profile's `user_id`).
    user_id: &'a str,
    #[serde(rename = "isSocial")]
    is_social: bool,
}

/// `PATCH /api/v2/users/{id}`: Auth0's metadata fields, merged at the top
/// level (a property set to `null` is removed). Other fields of Auth0's
/// user are not writable here: refused by name.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MetadataPatch {
    app_metadata: Option<Metadata>,
    user_metadata: Option<Metadata>,
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
        let identity = Identity {
            provider: "oauth2",
            connection: &u.connection,
            user_id: &u.profile.user_id,
            is_social: true,
        };
        obj.insert("identities".into(), json!([identity]));
        obj.insert("app_metadata".into(), Value::Object(u.app_metadata.clone()));
        obj.insert(
            "user_metadata".into(),
            Value::Object(u.user_metadata.clone()),
        );
    }
    value
}
