//! `/api/v2/users`: list (Auth0's offset pagination, searchable by
//! email), get, delete.

use http::Method;
use serde_json::{Value, json};

use super::listing::{Fields, ListQuery, Paging, Query};
use super::{ApiError, ApiReply, ApiRequest, method_not_allowed};
use crate::broker::Broker;
use crate::store::User;

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
                let users: Vec<Value> = users.iter().map(|u| list.select(public_json(u))).collect();
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
                Ok(ApiReply::json(200, fields.apply(public_json(&user))))
            }
            (&Method::DELETE, [id]) => {
                if !self.store.delete_user(id).await? {
                    return Err(ApiError::not_found(format!("user `{id}`")));
                }
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
