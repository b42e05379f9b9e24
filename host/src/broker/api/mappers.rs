//! `/api/v2/mappers`: upload a component as a new version (validated,
//! compiled, made active atomically), list versions, activate any (rollback),
//! delete when no connection uses it.

use std::collections::BTreeSet;
use std::sync::Arc;

use http::Method;
use serde_json::{Value, json};

use super::{ApiError, ApiReply, ApiRequest, Caller, MAX_MAPPER_BYTES, method_not_allowed};
use crate::broker::model::{ConnectionName, ProfileSource};
use crate::broker::registry::parse_ref;
use crate::broker::{Broker, Catalog};
use crate::mapper::{LoadError, LoadedMapper, sha256_hex};

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
                let active = self.catalog_read().mappers.active_version(name);
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
                    .catalog_read()
                    .connections
                    .values()
                    .filter(|c| match &c.profile {
                        ProfileSource::Mapper(r) => parse_ref(r).is_ok_and(|(n, _)| n == *name),
                        ProfileSource::Script(_) => false,
                    })
                    .map(|c| c.name().to_owned())
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
                self.catalog_write().mappers.remove(name);
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
    /// `name` and makes it active, then swaps it in: the next login uses it.
    /// Shared by the API and the watched mappers directory.
    pub async fn register_mapper(
        &self,
        name: &str,
        bytes: bytes::Bytes,
        created_by: &str,
    ) -> Result<crate::broker::store::MapperVersion, ApiError> {
        self.refuse_config_mapper(name)?;
        let loaded = self.compile(bytes.clone()).await?;
        let sha = loaded.digest().to_owned();
        let version = self
            .store
            .add_mapper_version(name, &bytes, &sha, created_by, self.clock.now())
            .await?;
        {
            let mut catalog = self.catalog_write();
            catalog
                .mappers
                .insert(name, version.version, Arc::new(loaded), true);
            unload_unused(&mut catalog, name);
        }
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

    /// Loads a stored version if needed, then makes it active in the store
    /// and in service.
    async fn activate_mapper(&self, name: &str, version: u32) -> Result<(), ApiError> {
        self.ensure_loaded(name, version).await?;
        if !self.store.activate_mapper_version(name, version).await? {
            return Err(ApiError::not_found(format!(
                "mapper `{name}` version {version}"
            )));
        }
        let mut catalog = self.catalog_write();
        catalog.mappers.activate(name, version);
        unload_unused(&mut catalog, name);
        Ok(())
    }

    /// Puts a stored version in service (for a rollback or a pin) without
    /// making it active.
    pub(super) async fn ensure_loaded(&self, name: &str, version: u32) -> Result<(), ApiError> {
        if self.catalog_read().mappers.is_loaded(name, version) {
            return Ok(());
        }
        let bytes = self
            .store
            .mapper_bytes(name, version)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("mapper `{name}` version {version}")))?;
        let loaded = self.compile(bytes.into()).await?;
        self.catalog_write()
            .mappers
            .insert(name, version, Arc::new(loaded), false);
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

/// After a version of `name` became active: unloads the versions no
/// connection can reach any more (neither active nor pinned as `name@N`).
/// The store keeps them; a rollback or a new pin loads one again.
fn unload_unused(catalog: &mut Catalog, name: &str) {
    let pinned: BTreeSet<u32> = catalog
        .connections
        .values()
        .filter_map(|c| match &c.profile {
            ProfileSource::Mapper(reference) => match parse_ref(reference) {
                Ok((n, Some(version))) if n == name => Some(version),
                _ => None,
            },
            ProfileSource::Script(_) => None,
        })
        .collect();
    let dropped = catalog.mappers.unload_unused(name, &pinned);
    if !dropped.is_empty() {
        tracing::info!(mapper = %name, versions = ?dropped, "unloaded mapper versions no connection uses");
    }
}
