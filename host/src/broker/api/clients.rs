//! `/api/v2/clients`: apps. The secret is shown once, at creation and at
//! rotation; only its hash is stored.

use http::Method;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, ApiReply, ApiRequest, SCOPES, json_body, method_not_allowed};
use crate::broker::Broker;
use crate::broker::keys::Alg;
use crate::broker::model::{Client, ClientType, check_callbacks, check_require_pkce};
use crate::broker::secret::SecretHash;

/// The fields a client is created or updated with.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientBody {
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(rename = "type", default)]
    client_type: Option<ClientType>,
    #[serde(default)]
    callbacks: Option<Vec<String>>,
    #[serde(default)]
    id_token_signed_response_alg: Option<Alg>,
    /// Management scopes for the `client_credentials` grant.
    #[serde(default)]
    scopes: Option<Vec<String>>,
    /// PKCE at `/authorize` (default true; public apps cannot turn it off).
    #[serde(default)]
    require_pkce: Option<bool>,
}

impl Broker {
    pub(super) async fn clients_api(
        &self,
        req: &ApiRequest<'_>,
        seg: &[&str],
    ) -> Result<ApiReply, ApiError> {
        match (req.method, seg) {
            (&Method::GET, []) => {
                let list: Vec<Value> = self
                    .store
                    .clients()
                    .await?
                    .iter()
                    .map(public_json)
                    .collect();
                Ok(ApiReply::json(200, Value::Array(list)))
            }
            (&Method::POST, []) => self.create_client(json_body(req)?).await,
            (&Method::GET, [id]) => Ok(ApiReply::json(
                200,
                public_json(&self.client_record(id).await?),
            )),
            (&Method::PATCH, [id]) => {
                let mut client = self.client_record(id).await?;
                self.refuse_config_client(id)?;
                let body = parse(json_body(req)?)?;
                if body.client_id.is_some() || body.client_type.is_some() {
                    return Err(ApiError::bad_request(
                        "client_id and type cannot be changed",
                    ));
                }
                apply(&mut client, body)?;
                self.save_client(&client).await?;
                Ok(ApiReply::json(200, public_json(&client)))
            }
            (&Method::POST, [id, "rotate-secret"]) => {
                let mut client = self.client_record(id).await?;
                self.refuse_config_client(id)?;
                if client.client_type == ClientType::Public {
                    return Err(ApiError::bad_request("a public client has no secret"));
                }
                let secret = self.random.token();
                client.secret_hash = Some(SecretHash::of(&secret));
                self.save_client(&client).await?;
                let mut out = public_json(&client);
                out["client_secret"] = json!(secret);
                Ok(ApiReply::json(200, out))
            }
            (&Method::DELETE, [id]) => {
                self.client_record(id).await?;
                self.refuse_config_client(id)?;
                let used_by: Vec<String> = self
                    .catalog_read()
                    .connections
                    .values()
                    .filter(|c| c.is_enabled_for(id))
                    .map(|c| c.name().to_owned())
                    .collect();
                if !used_by.is_empty() {
                    return Err(ApiError::new(
                        409,
                        format!(
                            "client `{id}` is enabled on connections {used_by:?}; disable it there first"
                        ),
                    ));
                }
                self.store.delete_client(id).await?;
                self.catalog_write().clients.remove(*id);
                Ok(ApiReply::no_content())
            }
            _ => Err(method_not_allowed()),
        }
    }

    async fn client_record(&self, id: &str) -> Result<Client, ApiError> {
        self.store
            .clients()
            .await?
            .into_iter()
            .find(|c| c.client_id == id)
            .ok_or_else(|| ApiError::not_found(format!("client `{id}`")))
    }

    /// 409 for an app the configuration file defines: a change through the
    /// API would be undone at the next start.
    fn refuse_config_client(&self, id: &str) -> Result<(), ApiError> {
        if self.config_defined.clients.contains(id) {
            return Err(ApiError::new(
                409,
                format!("client `{id}` is defined in the configuration file; change it there"),
            ));
        }
        Ok(())
    }

    async fn create_client(&self, body: Value) -> Result<ApiReply, ApiError> {
        let body = parse(body)?;
        let client_type = body.client_type.unwrap_or_default();
        let client_id = match &body.client_id {
            Some(id)
                if !id.is_empty()
                    && id.len() <= 128
                    && id.bytes().all(|b| b.is_ascii_graphic()) =>
            {
                id.clone()
            }
            Some(_) => {
                return Err(ApiError::bad_request(
                    "client_id must be 1–128 printable characters",
                ));
            }
            None => self.random.identifier(32),
        };
        if self.catalog_read().clients.contains_key(&client_id) {
            return Err(ApiError::new(
                409,
                format!("client `{client_id}` already exists"),
            ));
        }
        let secret = (client_type == ClientType::Confidential).then(|| self.random.token());
        let mut client = Client {
            client_id,
            name: String::new(),
            client_type,
            secret_hash: secret.as_deref().map(SecretHash::of),
            callbacks: Vec::new(),
            id_token_alg: Alg::Rs256,
            scopes: Vec::new(),
            require_pkce: true,
        };
        apply(&mut client, body)?;
        check_callbacks(&client.callbacks).map_err(ApiError::bad_request)?;
        if client.name.is_empty() {
            client.name = client.client_id.clone();
        }
        self.save_client(&client).await?;
        let mut out = public_json(&client);
        if let Some(secret) = secret {
            out["client_secret"] = json!(secret);
        }
        Ok(ApiReply::json(201, out))
    }

    async fn save_client(&self, client: &Client) -> Result<(), ApiError> {
        self.store.put_client(client).await?;
        self.catalog_write().clients.insert(
            client.client_id.clone(),
            std::sync::Arc::new(client.clone()),
        );
        Ok(())
    }
}

fn parse(body: Value) -> Result<ClientBody, ApiError> {
    serde_json::from_value(body).map_err(|e| ApiError::bad_request(format!("invalid client: {e}")))
}

fn apply(client: &mut Client, body: ClientBody) -> Result<(), ApiError> {
    if let Some(name) = body.name {
        client.name = name;
    }
    if let Some(callbacks) = body.callbacks {
        check_callbacks(&callbacks).map_err(ApiError::bad_request)?;
        client.callbacks = callbacks;
    }
    if let Some(alg) = body.id_token_signed_response_alg {
        client.id_token_alg = alg;
    }
    if let Some(require) = body.require_pkce {
        check_require_pkce(client.client_type, require).map_err(ApiError::bad_request)?;
        client.require_pkce = require;
    }
    if let Some(scopes) = body.scopes {
        if let Some(bad) = scopes.iter().find(|s| !SCOPES.contains(&s.as_str())) {
            return Err(ApiError::bad_request(format!(
                "unknown scope `{bad}`; known: {}",
                SCOPES.join(" ")
            )));
        }
        if !scopes.is_empty() && client.client_type == ClientType::Public {
            return Err(ApiError::bad_request(
                "a public client cannot hold management scopes",
            ));
        }
        client.scopes = scopes;
    }
    Ok(())
}

/// The client as the API shows it: never the secret or its hash.
fn public_json(c: &Client) -> Value {
    json!({
        "client_id": c.client_id,
        "name": c.name,
        "type": c.client_type,
        "callbacks": c.callbacks,
        "id_token_signed_response_alg": c.id_token_alg,
        "scopes": c.scopes,
        "require_pkce": c.require_pkce,
    })
}
