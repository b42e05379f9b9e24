//! `/api/v2/clients`: apps. The secret is shown once, at creation and at
//! rotation; only its hash is stored.

use http::Method;
use serde::Deserialize;
use serde_json::{Value, json};

use super::listing::{Fields, ListQuery, Query};
use super::{
    ApiError, ApiReply, ApiRequest, Caller, SCOPES, WRITE_EGRESS, json_body, method_not_allowed,
};
use crate::broker::Broker;
use crate::keys::Alg;
use crate::model::client_secret::ClientSecretHash;
use crate::model::{
    AppType, Client, ClientAuthMethod, ClientType, GrantType, app_type_rules,
    backchannel_is_private, check_app_type, check_backchannel_uri, check_grant_types,
    check_logout_urls, check_require_pkce,
};

/// The scope that lets a management client set clients' `scopes` (Auth0
/// splits this power into `create:client_grants` and
/// `update:client_grants`; here both are one act, handing out management
/// powers, and every resource has one `write:` scope, so it is one scope).
/// A holder grants only scopes it holds itself.
pub const GRANT_SCOPE: &str = "write:client_grants";

/// Scopes only the bootstrap admin token may grant, whatever the caller
/// holds: `write:egress` lets a connection reach private networks, a power
/// the admin must hand out by name, never pass along by delegation.
const ADMIN_ONLY_SCOPES: [&str; 1] = [WRITE_EGRESS];

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
    /// Auth0's `app_type`; it decides `type` and the grants.
    #[serde(default)]
    app_type: Option<AppType>,
    /// Enforced at the token endpoint.
    #[serde(default)]
    token_endpoint_auth_method: Option<ClientAuthMethod>,
    /// The grants the app may use (Auth0's `grant_types`).
    #[serde(default)]
    grant_types: Option<Vec<GrantType>>,
    /// Where the app may send browsers after logout.
    #[serde(default)]
    allowed_logout_urls: Option<Vec<String>>,
    /// Auth0's back-channel logout settings.
    #[serde(default)]
    oidc_logout: Option<OidcLogout>,
}

/// Auth0's `oidc_logout`: where the app receives back-channel logout
/// tokens. Auth0 takes one URL in the list; so does Waypass, and an empty
/// list removes it.
#[derive(Debug, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
struct OidcLogout {
    #[serde(default)]
    backchannel_logout_urls: Vec<String>,
}

impl ClientBody {
    /// The back-channel logout URI the body sets: `Some(None)` removes it.
    fn backchannel(&self) -> Result<Option<Option<String>>, ApiError> {
        let Some(settings) = &self.oidc_logout else {
            return Ok(None);
        };
        match settings.backchannel_logout_urls.as_slice() {
            [] => Ok(Some(None)),
            [one] => {
                check_backchannel_uri(one).map_err(ApiError::bad_request)?;
                Ok(Some(Some(one.clone())))
            }
            _ => Err(ApiError::bad_request(
                "oidc_logout.backchannel_logout_urls takes one URL",
            )),
        }
    }
}

/// A back-channel logout URI on a private host means the broker POSTs into
/// its own network: through the API, that needs `write:egress`, as for a
/// connection's private reach.
fn check_backchannel_reach(
    caller: &Caller,
    current: Option<&str>,
    requested: Option<Option<String>>,
) -> Result<(), ApiError> {
    let Some(Some(uri)) = requested else {
        return Ok(());
    };
    let private = url::Url::parse(&uri).is_ok_and(|u| backchannel_is_private(&u));
    if private && current != Some(uri.as_str()) && !caller.has(WRITE_EGRESS) {
        return Err(ApiError::new(
            403,
            format!(
                "the backchannel logout URL `{uri}` names an IP address or a private host: that needs the scope `{WRITE_EGRESS}`"
            ),
        ));
    }
    Ok(())
}

impl Broker {
    pub(super) async fn clients_api(
        &self,
        req: &ApiRequest<'_>,
        seg: &[&str],
    ) -> Result<ApiReply, ApiError> {
        match (req.method, seg) {
            (&Method::GET, []) => {
                // Auth0's paginations and `fields`.
                let list = ListQuery::parse(&Query::parse(req.query))?;
                let items = self
                    .store
                    .clients()
                    .await?
                    .into_iter()
                    .map(|stored| {
                        read_stored(stored).map(|c| (c.client_id.clone(), public_json(&c)))
                    })
                    .collect::<Result<_, _>>()?;
                Ok(ApiReply::json(200, list.answer("clients", items)))
            }
            (&Method::POST, []) => self.create_client(json_body(req)?, &req.caller).await,
            (&Method::GET, [id]) => {
                let fields = Fields::parse(&Query::parse(req.query))?;
                Ok(ApiReply::json(
                    200,
                    fields.apply(public_json(&self.client_record(id).await?)),
                ))
            }
            (&Method::PATCH, [id]) => {
                let mut client = self.client_record(id).await?;
                self.refuse_config_client(id)?;
                let body = parse(json_body(req)?)?;
                if body.client_id.is_some() || body.client_type.is_some() {
                    return Err(ApiError::bad_request(
                        "client_id and type cannot be changed",
                    ));
                }
                if let Some(app_type) = body.app_type
                    && app_type_rules(app_type).client_type != client.client_type
                {
                    return Err(ApiError::bad_request(format!(
                        "app_type {} is a {} client; this one is {} (create a new client)",
                        app_type.as_str(),
                        app_type_rules(app_type).client_type.as_str(),
                        client.client_type.as_str()
                    )));
                }
                if let Some(scopes) = &body.scopes {
                    check_grant(&req.caller, &client.scopes, scopes)?;
                }
                check_backchannel_reach(
                    &req.caller,
                    client.backchannel_logout_uri.as_deref(),
                    body.backchannel()?,
                )?;
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
                // Whoever rotates a secret learns it, and acts as the
                // client from then on: only a caller already holding every
                // scope the client holds may.
                check_may_act_as(&req.caller, &client)?;
                let secret = self.random.token();
                client.secret_hash = Some(ClientSecretHash::fast(&secret));
                self.save_client(&client).await?;
                // After the new hash is in service: a token issued with the
                // old secret from here on is refused by `client_credentials`'
                // re-check, and every earlier one is deleted now.
                self.revoke_tokens(id, "its secret was rotated").await?;
                let mut out = public_json(&client);
                out["client_secret"] = json!(secret);
                Ok(ApiReply::json(200, out))
            }
            (&Method::DELETE, [id]) => {
                self.client_record(id).await?;
                self.refuse_config_client(id)?;
                let used_by: Vec<String> = self
                    .store
                    .connections()
                    .await?
                    .into_iter()
                    .filter(|c| c.spec.enabled_clients.iter().any(|e| e == id))
                    .map(|c| c.spec.name)
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
                self.catalog_changed().await;
                self.revoke_tokens(id, "it was deleted").await?;
                let refresh = self.store.delete_refresh_tokens_of_client(id).await?;
                tracing::info!(client_id = %id, refresh, "revoked the deleted client's refresh tokens");
                Ok(ApiReply::no_content())
            }
            _ => Err(method_not_allowed()),
        }
    }

    async fn client_record(&self, id: &str) -> Result<Client, ApiError> {
        let stored = self
            .store
            .clients()
            .await?
            .into_iter()
            .find(|c| c.client_id == id)
            .ok_or_else(|| ApiError::not_found(format!("client `{id}`")))?;
        read_stored(stored)
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

    /// Deletes every access token issued to `client_id` (its management
    /// tokens and its users' tokens alike).
    async fn revoke_tokens(&self, client_id: &str, why: &str) -> Result<(), ApiError> {
        let revoked = self.store.delete_access_tokens_of_client(client_id).await?;
        tracing::info!(
            client_id,
            revoked,
            "revoked the client's access tokens: {why}"
        );
        Ok(())
    }

    async fn create_client(&self, body: Value, caller: &Caller) -> Result<ApiReply, ApiError> {
        let body = parse(body)?;
        if let Some(scopes) = &body.scopes {
            check_grant(caller, &[], scopes)?;
        }
        check_backchannel_reach(caller, None, body.backchannel()?)?;
        // `app_type` decides the type; `type` alone is Waypass's older way.
        let client_type = match (body.app_type, body.client_type) {
            (Some(app_type), Some(given)) if app_type_rules(app_type).client_type != given => {
                return Err(ApiError::bad_request(format!(
                    "app_type {} is a {} client, not {}",
                    app_type.as_str(),
                    app_type_rules(app_type).client_type.as_str(),
                    given.as_str()
                )));
            }
            (Some(app_type), _) => app_type_rules(app_type).client_type,
            (None, given) => given.unwrap_or_default(),
        };
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
        if self
            .store
            .clients()
            .await?
            .iter()
            .any(|c| c.client_id == client_id)
        {
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
            // Generated, 256 random bits: SHA-256 is enough (`client_secret`).
            secret_hash: secret.as_deref().map(ClientSecretHash::fast),
            callbacks: Vec::new(),
            id_token_alg: Alg::Rs256,
            scopes: Vec::new(),
            require_pkce: true,
            app_type: AppType::default_for(client_type),
            token_endpoint_auth_method: None,
            grant_types: GrantType::defaults(client_type),
            allowed_logout_urls: Vec::new(),
            backchannel_logout_uri: None,
        };
        apply(&mut client, body)?;
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

    /// Stores the client, then rebuilds the catalog from the store.
    async fn save_client(&self, client: &Client) -> Result<(), ApiError> {
        self.store.put_client(&client.to_stored()).await?;
        self.catalog_changed().await;
        Ok(())
    }
}

/// Whether `caller` may change a client's scopes from `current` to
/// `requested`: it needs [`GRANT_SCOPE`] (the admin token holds every
/// scope), and every scope it adds must be one it holds itself, and not an
/// admin-only one unless the caller is the admin. Dropping scopes is never
/// an escalation, so a grant holder may remove any.
fn check_grant(caller: &Caller, current: &[String], requested: &[String]) -> Result<(), ApiError> {
    check_known(requested)?;
    check_delegation(caller, current, requested)
}

/// [`check_grant`]'s rules for scopes known to exist.
fn check_delegation(
    caller: &Caller,
    current: &[String],
    requested: &[String],
) -> Result<(), ApiError> {
    let is_new = |s: &&String| !current.contains(*s);
    let changes =
        requested.iter().any(|s| is_new(&s)) || current.iter().any(|s| !requested.contains(s));
    if !changes {
        return Ok(());
    }
    if !caller.has(GRANT_SCOPE) {
        return Err(ApiError::new(
            403,
            format!("setting a client's scopes needs the scope `{GRANT_SCOPE}`"),
        ));
    }
    for scope in requested.iter().filter(is_new) {
        if ADMIN_ONLY_SCOPES.contains(&scope.as_str()) && !caller.is_admin() {
            return Err(ApiError::new(
                403,
                format!("only the admin token may grant `{scope}`"),
            ));
        }
        if !caller.has(scope) {
            return Err(ApiError::new(
                403,
                format!("the token cannot grant `{scope}`: it does not hold it"),
            ));
        }
    }
    Ok(())
}

/// Whether `caller` may obtain `client`'s credentials (a rotated secret):
/// only if it holds every scope the client holds (admin-only ones: only
/// the admin), so the secret gives it no power it lacks.
fn check_may_act_as(caller: &Caller, client: &Client) -> Result<(), ApiError> {
    let beyond = client.scopes.iter().find(|s| {
        !caller.has(s) || (ADMIN_ONLY_SCOPES.contains(&s.as_str()) && !caller.is_admin())
    });
    match beyond {
        None => Ok(()),
        Some(scope) => Err(ApiError::new(
            403,
            format!(
                "rotating the secret of client `{}` would hand over its scope `{scope}`, which the token does not hold",
                client.client_id
            ),
        )),
    }
}

/// 400 for a scope Waypass does not know.
fn check_known(scopes: &[String]) -> Result<(), ApiError> {
    match scopes.iter().find(|s| !SCOPES.contains(&s.as_str())) {
        Some(bad) => Err(ApiError::bad_request(format!(
            "unknown scope `{bad}`; known: {}",
            SCOPES.join(" ")
        ))),
        None => Ok(()),
    }
}

fn parse(body: Value) -> Result<ClientBody, ApiError> {
    serde_json::from_value(body).map_err(|e| ApiError::bad_request(format!("invalid client: {e}")))
}

fn apply(client: &mut Client, body: ClientBody) -> Result<(), ApiError> {
    if let Some(backchannel) = body.backchannel()? {
        client.backchannel_logout_uri = backchannel;
    }
    if let Some(grants) = body.grant_types {
        check_grant_types(client.client_type, &grants).map_err(ApiError::bad_request)?;
        client.grant_types = grants;
    }
    if let Some(urls) = body.allowed_logout_urls {
        check_logout_urls(&urls).map_err(ApiError::bad_request)?;
        client.allowed_logout_urls = urls;
    }
    if let Some(name) = body.name {
        client.name = name;
    }
    if let Some(callbacks) = body.callbacks {
        client.callbacks = callbacks;
    }
    if let Some(app_type) = body.app_type {
        client.app_type = app_type;
    }
    if let Some(method) = body.token_endpoint_auth_method {
        client.token_endpoint_auth_method = Some(method);
    }
    // The type's rules: callbacks (none needed by a machine-to-machine
    // app), the authentication method.
    check_app_type(
        client.app_type,
        client.client_type,
        client.token_endpoint_auth_method,
        &client.callbacks,
    )
    .map_err(ApiError::bad_request)?;
    if let Some(alg) = body.id_token_signed_response_alg {
        client.id_token_alg = alg;
    }
    if let Some(require) = body.require_pkce {
        check_require_pkce(client.client_type, require).map_err(ApiError::bad_request)?;
        client.require_pkce = require;
    }
    if let Some(scopes) = body.scopes {
        check_known(&scopes)?;
        if !scopes.is_empty() && client.client_type == ClientType::Public {
            return Err(ApiError::bad_request(
                "a public client cannot hold management scopes",
            ));
        }
        client.scopes = scopes;
    }
    Ok(())
}

/// A stored client as the API's type; one the store holds but this code
/// cannot read is the server's fault (500), named.
fn read_stored(stored: crate::store::StoredClient) -> Result<Client, ApiError> {
    let id = stored.client_id.clone();
    Client::from_stored(stored).map_err(|e| {
        tracing::error!(client_id = %id, error = %e, "a stored client cannot be read");
        ApiError::new(500, format!("stored client `{id}` cannot be read: {e}"))
    })
}

/// The client as the API shows it: never the secret or its hash.
fn public_json(c: &Client) -> Value {
    // What the app may use: its grant_types that its type allows.
    let grant_types: Vec<&str> = c
        .grant_types
        .iter()
        .filter(|g| c.allows_grant(**g))
        .map(|g| g.as_str())
        .collect();
    // A public app's method is `none` whether or not it was set.
    let auth_method = match c.client_type {
        ClientType::Public => Some(ClientAuthMethod::None),
        ClientType::Confidential => c.token_endpoint_auth_method,
    };
    json!({
        "client_id": c.client_id,
        "name": c.name,
        "type": c.client_type,
        "app_type": c.app_type,
        "token_endpoint_auth_method": auth_method,
        "grant_types": grant_types,
        "callbacks": c.callbacks,
        "id_token_signed_response_alg": c.id_token_alg,
        "scopes": c.scopes,
        "require_pkce": c.require_pkce,
        "allowed_logout_urls": c.allowed_logout_urls,
        "oidc_logout": OidcLogout {
            backchannel_logout_urls: c.backchannel_logout_uri.iter().cloned().collect(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(scopes: &[&str], admin: bool) -> Caller {
        Caller {
            id: "c".into(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            admin,
        }
    }

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn write_egress_is_granted_by_the_admin_alone_even_to_a_holder_of_it() {
        let holder = caller(&[GRANT_SCOPE, "write:egress"], false);
        let err = check_delegation(&holder, &[], &strings(&["write:egress"]))
            .expect_err("delegation refused");
        assert_eq!(err.status, 403);
        assert!(
            err.message.contains("only the admin token"),
            "{}",
            err.message
        );
        let admin = caller(&[GRANT_SCOPE, "write:egress"], true);
        assert!(check_delegation(&admin, &[], &strings(&["write:egress"])).is_ok());
        // Nor does rotating a secret hand it over.
        let client = Client {
            client_id: "egress".into(),
            name: "egress".into(),
            client_type: ClientType::Confidential,
            secret_hash: None,
            callbacks: Vec::new(),
            id_token_alg: Alg::Rs256,
            scopes: strings(&["write:egress"]),
            require_pkce: true,
            app_type: AppType::NonInteractive,
            token_endpoint_auth_method: None,
            grant_types: GrantType::defaults(ClientType::Confidential),
            allowed_logout_urls: Vec::new(),
            backchannel_logout_uri: None,
        };
        assert_eq!(
            check_may_act_as(&holder, &client).map_err(|e| e.status),
            Err(403)
        );
        assert!(check_may_act_as(&admin, &client).is_ok());
    }

    #[test]
    fn scopes_left_as_they_are_need_no_grant_scope_and_removals_need_it_but_nothing_held() {
        let writer = caller(&["write:clients"], false);
        let current = strings(&["write:mappers"]);
        assert!(
            check_grant(&writer, &current, &current).is_ok(),
            "no change"
        );
        let err = check_grant(&writer, &current, &[]).expect_err("a change");
        assert!(err.message.contains(GRANT_SCOPE), "{}", err.message);
        let granter = caller(&[GRANT_SCOPE], false);
        assert!(
            check_grant(&granter, &current, &[]).is_ok(),
            "removing a scope it does not hold"
        );
    }

    #[test]
    fn an_unknown_scope_is_a_bad_request_even_for_the_admin() {
        let admin = caller(&SCOPES, true);
        let err = check_grant(&admin, &[], &strings(&["write:everything"])).expect_err("unknown");
        assert_eq!(err.status, 400, "{}", err.message);
    }
}
