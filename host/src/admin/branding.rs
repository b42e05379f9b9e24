//! `/api/v2/branding` and `/api/v2/branding/templates/universal-login`:
//! the login page's colours, logo, favicon and font, and the operator's
//! page around Waypass's widget, in Auth0's shapes and with Auth0's
//! scopes (`read:branding`, `update:branding`, `delete:branding`).
//!
//! Settings are checked whole after each `PATCH` (a JSON Merge Patch,
//! RFC 7396), and a template is parsed before it is stored (Auth0's rule:
//! one `auth0:head`, at least one `auth0:widget`), so the catalog never
//! meets one it cannot render.

use http::Method;
use serde::{Deserialize, Serialize};

use super::{ApiError, ApiReply, ApiRequest, MAX_JSON_BYTES, json_body, method_not_allowed};
use crate::broker::Broker;
use crate::model::branding::{BrandingSettings, MAX_TEMPLATE_BYTES, PageTemplate};

/// Reads the branding (Auth0's scope).
pub const READ_BRANDING: &str = "read:branding";
/// Changes the settings or the template (Auth0's scope).
pub const UPDATE_BRANDING: &str = "update:branding";
/// Removes the template (Auth0's scope).
pub const DELETE_BRANDING: &str = "delete:branding";

/// The scope a request on `/branding…` needs.
pub(super) fn scope(method: &Method) -> &'static str {
    match *method {
        Method::GET | Method::HEAD => READ_BRANDING,
        Method::DELETE => DELETE_BRANDING,
        _ => UPDATE_BRANDING,
    }
}

/// What `GET …/universal-login` answers (Auth0 names the field `body`).
#[derive(Serialize)]
struct TemplateJson<'a> {
    body: &'a str,
}

/// What `PUT …/universal-login` takes as JSON: `{"template": "…"}`, or
/// the template as a JSON string (what Auth0's SDKs send for a bare
/// string).
#[derive(Deserialize)]
#[serde(untagged)]
enum TemplateBody {
    Object { template: String },
    Text(String),
}

impl Broker {
    pub(super) async fn branding_api(
        &self,
        req: &ApiRequest<'_>,
        seg: &[&str],
    ) -> Result<ApiReply, ApiError> {
        match (req.method, seg) {
            (&Method::GET, []) => {
                let settings = self.stored_branding_settings().await?;
                reply(200, &settings)
            }
            (&Method::PATCH, []) => {
                let patch = json_body(req)?;
                if !patch.is_object() {
                    return Err(ApiError::bad_request("the body must be a JSON object"));
                }
                let settings = self
                    .stored_branding_settings()
                    .await?
                    .patched(&patch)
                    .map_err(|e| ApiError::bad_request(format!("invalid branding: {e}")))?;
                let json = serde_json::to_string(&settings).map_err(|e| {
                    ApiError::new(500, format!("the settings could not be encoded: {e}"))
                })?;
                self.store.put_branding_settings(&json).await?;
                self.catalog_changed().await;
                reply(200, &settings)
            }
            (&Method::GET, ["templates", "universal-login"]) => {
                match self.store.branding().await?.universal_login_template {
                    Some(body) => reply(200, &TemplateJson { body: &body }),
                    None => Err(ApiError::new(404, "Template does not exist.")),
                }
            }
            (&Method::PUT, ["templates", "universal-login"]) => {
                let source = template_source(req)?;
                let template = PageTemplate::parse(&source)
                    .map_err(|e| ApiError::bad_request(e.to_string()))?;
                let replaced = self
                    .store
                    .put_universal_login_template(Some(template.source()))
                    .await?;
                self.catalog_changed().await;
                reply(
                    if replaced { 200 } else { 201 },
                    &TemplateJson {
                        body: template.source(),
                    },
                )
            }
            (&Method::DELETE, ["templates", "universal-login"]) => {
                self.store.put_universal_login_template(None).await?;
                self.catalog_changed().await;
                Ok(ApiReply::no_content())
            }
            _ => Err(method_not_allowed()),
        }
    }

    async fn stored_branding_settings(&self) -> Result<BrandingSettings, ApiError> {
        match self.store.branding().await?.settings {
            Some(json) => serde_json::from_str(&json).map_err(|e| {
                ApiError::new(500, format!("the stored branding cannot be read: {e}"))
            }),
            None => Ok(BrandingSettings::default()),
        }
    }
}

/// The template a `PUT` carries: JSON (`{"template": …}` or a string), or
/// the page itself as `text/html`.
fn template_source(req: &ApiRequest<'_>) -> Result<String, ApiError> {
    let html = req.content_type.is_some_and(|c| c.starts_with("text/html"));
    if !html {
        let body: TemplateBody = serde_json::from_value(json_body(req)?).map_err(|_| {
            ApiError::bad_request("send {\"template\": \"…\"} as JSON, or the page as text/html")
        })?;
        return Ok(match body {
            TemplateBody::Object { template } | TemplateBody::Text(template) => template,
        });
    }
    // The JSON limit is far above a template's; the template's own limit
    // is checked when it is parsed.
    if req.body.len() > MAX_JSON_BYTES.max(MAX_TEMPLATE_BYTES) {
        return Err(ApiError::new(
            413,
            format!("the body is over {MAX_JSON_BYTES} bytes"),
        ));
    }
    String::from_utf8(req.body.to_vec())
        .map_err(|_| ApiError::bad_request("the template is not UTF-8"))
}

fn reply(status: u16, value: &impl Serialize) -> Result<ApiReply, ApiError> {
    let body = serde_json::to_string(value)
        .map_err(|e| ApiError::new(500, format!("the answer could not be encoded: {e}")))?;
    Ok(ApiReply { status, body })
}
