//! `/api/v2/resource-servers`: the APIs apps get access tokens for, in
//! Auth0's shape (`identifier`, `scopes` as `{value, description}`,
//! `signing_alg`, `token_lifetime`, `allow_offline_access`). The
//! `identifier` is the `audience` apps send and never changes.
//!
//! Deleting an API stops new tokens for it (and refreshes of old ones);
//! JWT access tokens already issued stay valid until they expire, since
//! an API checks them on its own.

use http::Method;
use serde::{Deserialize, Serialize};

use super::{ApiError, ApiReply, ApiRequest, json_body, method_not_allowed};
use crate::broker::Broker;
use crate::keys::Alg;
use crate::model::resource_server::{ApiScope, DEFAULT_TOKEN_LIFETIME, ResourceServer};

/// The fields an API is created or updated with.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResourceServerBody {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    identifier: Option<String>,
    #[serde(default)]
    scopes: Option<Vec<ApiScope>>,
    #[serde(default)]
    signing_alg: Option<Alg>,
    #[serde(default)]
    token_lifetime: Option<u64>,
    #[serde(default)]
    allow_offline_access: Option<bool>,
}

/// An API as the API shows it.
#[derive(Debug, Serialize)]
struct ResourceServerJson<'a> {
    id: &'a str,
    name: &'a str,
    identifier: &'a str,
    scopes: &'a [ApiScope],
    signing_alg: Alg,
    token_lifetime: u64,
    allow_offline_access: bool,
}

impl<'a> ResourceServerJson<'a> {
    fn of(api: &'a ResourceServer) -> Self {
        Self {
            id: &api.id,
            name: &api.name,
            identifier: &api.identifier,
            scopes: &api.scopes,
            signing_alg: api.signing_alg,
            token_lifetime: api.token_lifetime,
            allow_offline_access: api.allow_offline_access,
        }
    }
}

impl Broker {
    pub(super) async fn resource_servers_api(
        &self,
        req: &ApiRequest<'_>,
        seg: &[&str],
    ) -> Result<ApiReply, ApiError> {
        match (req.method, seg) {
            (&Method::GET, []) => {
                let apis = self.stored_apis().await?;
                let list: Vec<ResourceServerJson<'_>> =
                    apis.iter().map(ResourceServerJson::of).collect();
                reply(200, &list)
            }
            (&Method::POST, []) => {
                let body = parse(json_body(req)?)?;
                let identifier = body
                    .identifier
                    .clone()
                    .ok_or_else(|| ApiError::bad_request("identifier is required"))?;
                let mut api = ResourceServer {
                    id: format!("rs_{}", self.random.identifier(24)),
                    name: identifier.clone(),
                    identifier,
                    scopes: Vec::new(),
                    signing_alg: Alg::Rs256,
                    token_lifetime: DEFAULT_TOKEN_LIFETIME,
                    allow_offline_access: false,
                };
                apply(&mut api, body);
                api.check().map_err(ApiError::bad_request)?;
                self.save_api(&api).await?;
                reply(201, &ResourceServerJson::of(&api))
            }
            (&Method::GET, [id]) => {
                let api = self.stored_api(id).await?;
                reply(200, &ResourceServerJson::of(&api))
            }
            (&Method::PATCH, [id]) => {
                let mut api = self.stored_api(id).await?;
                let body = parse(json_body(req)?)?;
                if body
                    .identifier
                    .as_ref()
                    .is_some_and(|i| *i != api.identifier)
                {
                    return Err(ApiError::bad_request(
                        "identifier cannot be changed (apps name the API by it)",
                    ));
                }
                apply(&mut api, body);
                api.check().map_err(ApiError::bad_request)?;
                self.save_api(&api).await?;
                reply(200, &ResourceServerJson::of(&api))
            }
            (&Method::DELETE, [id]) => {
                if !self.store.delete_resource_server(id).await? {
                    return Err(ApiError::not_found(format!("resource server `{id}`")));
                }
                self.catalog_changed().await;
                Ok(ApiReply::no_content())
            }
            _ => Err(method_not_allowed()),
        }
    }

    async fn stored_apis(&self) -> Result<Vec<ResourceServer>, ApiError> {
        self.store
            .resource_servers()
            .await?
            .into_iter()
            .map(|stored| {
                let id = stored.id.clone();
                ResourceServer::from_stored(stored).map_err(|e| {
                    ApiError::new(
                        500,
                        format!("stored resource server `{id}` cannot be read: {e}"),
                    )
                })
            })
            .collect()
    }

    async fn stored_api(&self, id: &str) -> Result<ResourceServer, ApiError> {
        self.stored_apis()
            .await?
            .into_iter()
            .find(|a| a.id == id)
            .ok_or_else(|| ApiError::not_found(format!("resource server `{id}`")))
    }

    /// Stores the API, then rebuilds the catalog from the store.
    async fn save_api(&self, api: &ResourceServer) -> Result<(), ApiError> {
        self.store.put_resource_server(&api.to_stored()).await?;
        self.catalog_changed().await;
        Ok(())
    }
}

fn parse(body: serde_json::Value) -> Result<ResourceServerBody, ApiError> {
    serde_json::from_value(body)
        .map_err(|e| ApiError::bad_request(format!("invalid resource server: {e}")))
}

fn apply(api: &mut ResourceServer, body: ResourceServerBody) {
    if let Some(name) = body.name {
        api.name = name;
    }
    if let Some(scopes) = body.scopes {
        api.scopes = scopes;
    }
    if let Some(alg) = body.signing_alg {
        api.signing_alg = alg;
    }
    if let Some(lifetime) = body.token_lifetime {
        api.token_lifetime = lifetime;
    }
    if let Some(offline) = body.allow_offline_access {
        api.allow_offline_access = offline;
    }
}

fn reply(status: u16, value: &impl Serialize) -> Result<ApiReply, ApiError> {
    let body = serde_json::to_string(value)
        .map_err(|e| ApiError::new(500, format!("the answer could not be encoded: {e}")))?;
    Ok(ApiReply { status, body })
}
