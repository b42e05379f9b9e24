//! `/api/v2/users`: list (Auth0's offset pagination, searchable by
//! email), get (with the user's `identities`), update the metadata
//! (Auth0's merge), delete (which revokes the user's sessions and
//! tokens), unlink an identity (`DELETE …/identities/{provider}/{user_id}`,
//! Auth0's). Their sessions and refresh tokens are `sessions.rs`'s.

use http::Method;
use serde_json::{Value, json};

use super::listing::{Fields, ListQuery, Paging, Query};
use super::{ApiError, ApiReply, ApiRequest, method_not_allowed};
use crate::broker::Broker;
use crate::broker::linking::{find_identity, identity_user_id};
use crate::events::{EventType, LinkDetails};
use crate::store::{Metadata, StoredIdentity, Unlinked, User};
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
                let ids: Vec<String> = users.iter().map(|u| u.user_id.clone()).collect();
                let identities = self.store.identities(&ids).await?;
                let mut shown = Vec::with_capacity(users.len());
                for u in &users {
                    shown.push(
                        list.select(
                            self.with_idp_tokens(req, public_json(u, &identities))
                                .await?,
                        ),
                    );
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
                let identities = self
                    .store
                    .identities(std::slice::from_ref(&user.user_id))
                    .await?;
                let shown = self
                    .with_idp_tokens(req, public_json(&user, &identities))
                    .await?;
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
                let identities = self
                    .store
                    .identities(std::slice::from_ref(&user.user_id))
                    .await?;
                Ok(ApiReply::json(200, public_json(&user, &identities)))
            }
            (&Method::DELETE, [id]) => {
                // Read before the delete takes them: every identity's
                // provider tokens go with the user.
                let identities = self.store.identities(&[(*id).to_owned()]).await?;
                if !self.store.delete_user(id).await? {
                    return Err(ApiError::not_found(format!("user `{id}`")));
                }
                self.forget_idp_tokens(&identities).await?;
                // What was issued to them goes with them: their sessions
                // end (their apps are told), their tokens are revoked.
                self.revoke_user(id).await?;
                Ok(ApiReply::no_content())
            }
            (&Method::DELETE, [id, "identities", provider, identity]) => {
                self.unlink(req, id, provider, identity).await
            }
            _ => Err(method_not_allowed()),
        }
    }

    /// `DELETE /api/v2/users/{id}/identities/{provider}/{user_id}`
    /// (Auth0's unlink): the identity leaves the user and becomes its own
    /// user (its id `oauth2|<connection>|<provider id>`); the answer is the
    /// identities the user keeps. The user's primary identity cannot be
    /// unlinked (Auth0 refuses it too).
    async fn unlink(
        &self,
        req: &ApiRequest<'_>,
        id: &str,
        provider: &str,
        identity: &str,
    ) -> Result<ApiReply, ApiError> {
        if self.store.get_user(id).await?.is_none() {
            return Err(ApiError::not_found(format!("user `{id}`")));
        }
        let identities = self.store.identities(&[id.to_owned()]).await?;
        let found = find_identity(&identities, provider, identity).map_err(|n| {
            ApiError::bad_request(format!(
                "{n} identities of the user have the id `{identity}`: name one as `<connection>|{identity}`"
            ))
        })?;
        let Some(found) = found else {
            return Err(ApiError::not_found(format!(
                "identity `{provider}/{identity}` of user `{id}`"
            )));
        };
        let new_user_id = identity_user_id(&found.connection, &found.provider_user_id);
        let unlinked = self
            .store
            .unlink_identity(
                id,
                &found.connection,
                &found.provider_user_id,
                &new_user_id,
                self.clock.now(),
            )
            .await?;
        match unlinked {
            Unlinked::Unlinked(_) => {}
            Unlinked::Primary => {
                return Err(ApiError::bad_request(
                    "the user's primary identity cannot be unlinked",
                ));
            }
            // Unlinked by another call since it was read.
            Unlinked::NoSuchIdentity => {
                return Err(ApiError::not_found(format!(
                    "identity `{provider}/{identity}` of user `{id}`"
                )));
            }
        }
        let details = LinkDetails {
            identity: found.key(),
            by: &req.caller.id,
            reason: "management API",
            new_user_id: Some(&new_user_id),
        };
        self.log_link(EventType::IdentityUnlinked, id, &details, None);
        let kept = self.store.identities(&[id.to_owned()]).await?;
        let primary = identity_user_id_of(id, &kept);
        let kept: Vec<Value> = kept
            .iter()
            .map(|i| identity_json(i, primary == Some(i)))
            .collect();
        Ok(ApiReply::json(200, Value::Array(kept)))
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
        mut shown: Value,
    ) -> Result<Value, ApiError> {
        if !req.caller.has(super::READ_USER_IDP_TOKENS) {
            return Ok(shown);
        }
        let now = self.clock.now();
        let identities = shown
            .get_mut("identities")
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
            .filter_map(Value::as_object_mut);
        // Each identity's own tokens (a linked user holds several).
        for identity in identities {
            let key = identity
                .get("connection")
                .and_then(Value::as_str)
                .zip(identity.get("user_id").and_then(Value::as_str))
                .and_then(|(name, id)| Some((self.connection(name)?.id.clone(), id.to_owned())));
            let Some((connection_id, provider_user_id)) = key else {
                continue;
            };
            let Some(tokens) = self
                .store
                .idp_tokens(&connection_id, &provider_user_id)
                .await?
            else {
                continue;
            };
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
/// `identities`).
#[derive(serde::Serialize)]
struct Identity<'a> {
    /// Auth0's provider name for custom social connections.
    provider: &'static str,
    connection: &'a str,
    /// The provider's id of the user (the profile's `user_id`).
    user_id: &'a str,
    #[serde(rename = "isSocial")]
    is_social: bool,
    /// What the provider said at the identity's last login; Auth0 shows
    /// it for the identities other than the primary one (whose profile
    /// is the user's own).
    #[serde(rename = "profileData", skip_serializing_if = "Option::is_none")]
    profile_data: Option<Value>,
}

/// The identity a user's id names (`oauth2|<connection>|<provider id>`):
/// their primary one, whose profile is the user's.
fn identity_user_id_of<'a>(
    user_id: &str,
    identities: &'a [StoredIdentity],
) -> Option<&'a StoredIdentity> {
    identities
        .iter()
        .find(|i| identity_user_id(&i.connection, &i.provider_user_id) == user_id)
}

/// One identity's JSON in a user's `identities`: the one place it is
/// built.
fn identity_json(i: &StoredIdentity, primary: bool) -> Value {
    let profile_data = (!primary).then(|| {
        let mut data = serde_json::to_value(&i.profile).unwrap_or_default();
        if let Some(obj) = data.as_object_mut() {
            obj.remove("user_id");
        }
        data
    });
    let identity = Identity {
        provider: "oauth2",
        connection: &i.connection,
        user_id: &i.provider_user_id,
        is_social: i.is_social,
        profile_data,
    };
    serde_json::to_value(identity).unwrap_or_default()
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

/// The user as the API shows them; `identities` may hold other users'
/// (a page's): theirs are picked, the primary one first.
fn public_json(u: &User, identities: &[StoredIdentity]) -> Value {
    let mut value = serde_json::to_value(&u.profile).unwrap_or_default();
    if let Some(obj) = value.as_object_mut() {
        obj.remove("user_id");
        obj.insert("provider_user_id".into(), json!(u.profile.user_id));
        obj.insert("user_id".into(), json!(u.user_id));
        obj.insert("connection".into(), json!(u.connection));
        obj.insert("created_at".into(), json!(u.created_at));
        obj.insert("last_login".into(), json!(u.last_login));
        obj.insert("logins_count".into(), json!(u.logins_count));
        let own: Vec<StoredIdentity> = identities
            .iter()
            .filter(|i| i.user_id == u.user_id)
            .cloned()
            .collect();
        let primary = identity_user_id_of(&u.user_id, &own);
        let mut list: Vec<Value> = primary
            .map(|p| identity_json(p, true))
            .into_iter()
            .collect();
        list.extend(
            own.iter()
                .filter(|i| Some(*i) != primary)
                .map(|i| identity_json(i, false)),
        );
        obj.insert("identities".into(), Value::Array(list));
        obj.insert("app_metadata".into(), Value::Object(u.app_metadata.clone()));
        obj.insert(
            "user_metadata".into(),
            Value::Object(u.user_metadata.clone()),
        );
    }
    value
}
