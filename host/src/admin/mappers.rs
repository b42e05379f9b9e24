//! `/api/v2/mappers`: upload a component as a new version (validated,
//! compiled, made active atomically), list versions, activate any (rollback),
//! delete when no connection uses it.

use std::sync::Arc;

use http::Method;
use serde_json::{Value, json};

use super::{ApiError, ApiReply, ApiRequest, Caller, MAX_MAPPER_BYTES, method_not_allowed};
use crate::broker::Broker;
use crate::catalog::registry::parse_ref;
use crate::mapper::{LoadError, LoadedMapper, sha256_hex};
use crate::model::ConnectionName;

impl Broker {
    pub(super) async fn mappers_api(
        &self,
        req: &ApiRequest<'_>,
        seg: &[&str],
        caller: &Caller,
    ) -> Result<ApiReply, ApiError> {
        match (req.method, seg) {
            (&Method::GET, []) => {
                let list: Vec<Value> = self
                    .store
                    .mappers()
                    .await?
                    .into_iter()
                    .map(|m| json!({"name": m.name, "active_version": m.active_version}))
                    .collect();
                Ok(ApiReply::json(200, Value::Array(list)))
            }
            (&Method::PUT, [name]) => self.put_mapper(name, req, caller).await,
            (&Method::GET, [name] | [name, "versions"]) => {
                let versions = self.store.mapper_versions(name).await?;
                if versions.is_empty() {
                    return Err(ApiError::not_found(format!("mapper `{name}`")));
                }
                let active = self
                    .store
                    .mappers()
                    .await?
                    .into_iter()
                    .find(|m| m.name == *name)
                    .map(|m| m.active_version);
                let list: Vec<Value> = versions
                    .into_iter()
                    .map(|v| {
                        let is_active = Some(v.version) == active;
                        let mut value = serde_json::to_value(v).unwrap_or_default();
                        value["active"] = json!(is_active);
                        value
                    })
                    .collect();
                Ok(ApiReply::json(200, json!({"name": name, "versions": list})))
            }
            (&Method::POST, [name, "versions", version, "activate"]) => {
                let version: u32 = version.parse().map_err(|_| {
                    ApiError::bad_request(format!("`{version}` is not a version number"))
                })?;
                self.refuse_config_mapper(name)?;
                self.activate_mapper(name, version).await?;
                tracing::info!(caller = %caller.id, mapper = %name, version, "mapper version activated");
                Ok(ApiReply::json(
                    200,
                    json!({"name": name, "active_version": version}),
                ))
            }
            (&Method::DELETE, [name]) => {
                self.refuse_config_mapper(name)?;
                let users: Vec<String> = self
                    .store
                    .connections()
                    .await?
                    .into_iter()
                    .filter(|c| {
                        c.spec
                            .options
                            .mapper
                            .as_deref()
                            .is_some_and(|r| parse_ref(r).is_ok_and(|(n, _)| n == *name))
                    })
                    .map(|c| c.spec.name)
                    .collect();
                if !users.is_empty() {
                    return Err(ApiError::new(
                        409,
                        format!("mapper `{name}` is used by connections {users:?}"),
                    ));
                }
                if !self.store.delete_mapper(name).await? {
                    return Err(ApiError::not_found(format!("mapper `{name}`")));
                }
                self.catalog_changed().await;
                Ok(ApiReply::no_content())
            }
            _ => Err(method_not_allowed()),
        }
    }

    /// Validates and compiles off the async workers, stores the version and
    /// makes it active, then swaps it in: the next login uses it.
    async fn put_mapper(
        &self,
        name: &str,
        req: &ApiRequest<'_>,
        caller: &Caller,
    ) -> Result<ApiReply, ApiError> {
        ConnectionName::parse(name)
            .map_err(|e| ApiError::bad_request(e.replace("connection name", "mapper name")))?;
        if !req
            .content_type
            .is_some_and(|c| c.starts_with("application/wasm"))
        {
            return Err(ApiError::new(415, "send the component as application/wasm"));
        }
        if req.body.len() > MAX_MAPPER_BYTES {
            return Err(ApiError::new(
                413,
                format!("the component is over {MAX_MAPPER_BYTES} bytes"),
            ));
        }
        let version = self
            .register_mapper(name, req.body.clone(), &caller.id)
            .await?;
        let mut out = serde_json::to_value(&version).unwrap_or_default();
        out["active"] = json!(true);
        Ok(ApiReply::json(201, out))
    }

    /// Validates and compiles `bytes`, stores them as the next version of
    /// `name` and makes it active, then rebuilds the catalog from the store
    /// (with the component just compiled): the next login uses whichever
    /// version the store holds active — this one, or one pushed after it.
    /// Shared by the API and the watched mappers directory.
    pub async fn register_mapper(
        &self,
        name: &str,
        bytes: bytes::Bytes,
        created_by: &str,
    ) -> Result<crate::store::MapperVersion, ApiError> {
        self.refuse_config_mapper(name)?;
        let loaded = Arc::new(self.compile(bytes.clone()).await?);
        let sha = loaded.digest().to_owned();
        let version = self
            .store
            .add_mapper_version(name, &bytes, &sha, created_by, self.clock.now())
            .await?;
        let staged = self.catalog.stage(name, version.version, loaded);
        self.catalog_changed().await;
        drop(staged);
        tracing::info!(created_by, mapper = %name, version = version.version, sha256 = %sha, "mapper version registered");
        Ok(version)
    }

    /// 409 for a mapper the configuration file defines or one of its
    /// connections runs: new code there would change what a connection the
    /// file owns does — which `user_id`s it issues — behind the file's
    /// back. Checked before anything is compiled or stored.
    fn refuse_config_mapper(&self, name: &str) -> Result<(), ApiError> {
        if self.config_defined.mappers.contains(name) {
            return Err(ApiError::new(
                409,
                format!(
                    "mapper `{name}` is defined in the configuration file or run by a connection it \
                     defines; change it there (`[[mappers]]`)"
                ),
            ));
        }
        Ok(())
    }

    /// Makes a stored version active: loaded first (so a version that no
    /// longer loads is refused before anything changes), then activated in
    /// the store, then the catalog rebuilt from the store.
    async fn activate_mapper(&self, name: &str, version: u32) -> Result<(), ApiError> {
        let not_found = || ApiError::not_found(format!("mapper `{name}` version {version}"));
        let loaded = match self.catalog_read().mappers.get(name, version) {
            Some(loaded) => loaded,
            None => {
                let bytes = self
                    .store
                    .mapper_bytes(name, version)
                    .await?
                    .ok_or_else(not_found)?;
                Arc::new(self.compile(bytes.into()).await?)
            }
        };
        let staged = self.catalog.stage(name, version, loaded);
        if !self.store.activate_mapper_version(name, version).await? {
            return Err(not_found());
        }
        self.catalog_changed().await;
        drop(staged);
        Ok(())
    }

    /// Validation and compilation take milliseconds to seconds: done on a
    /// blocking thread, never on the login path.
    async fn compile(&self, bytes: bytes::Bytes) -> Result<LoadedMapper, ApiError> {
        let runtime = self.runtime.clone();
        let digest = sha256_hex(&bytes);
        tokio::task::spawn_blocking(move || runtime.load(&bytes))
            .await
            .map_err(|e| ApiError::new(500, format!("compiling the mapper failed: {e}")))?
            .map_err(|e| {
                tracing::info!(sha256 = %digest, error = %e, "mapper refused");
                match e {
                    LoadError::NotAComponent(_) | LoadError::Compile(_) => {
                        ApiError::bad_request(e.to_string())
                    }
                    LoadError::ForbiddenImports(_)
                    | LoadError::WorldMismatch(_)
                    | LoadError::CompileTimeout { .. } => ApiError::new(422, e.to_string()),
                    LoadError::TooLarge { .. } => ApiError::new(413, e.to_string()),
                }
            })
    }
}
