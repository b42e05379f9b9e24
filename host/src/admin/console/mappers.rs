//! Console pages for mappers: the list (active version, which connections
//! use each), a mapper's versions (digest, who uploaded it, when),
//! "Activate" on any version (rollback) and "Upload a new version" — each
//! a call of `/api/v2/mappers` made in-process. A component is uploaded as
//! a `multipart/form-data` file and sent to the API as `application/wasm`,
//! so the API's validation (and its size limit) is the console's.

use bytes::Bytes;
use http::{Method, Response, StatusCode};
use serde::Deserialize;

use super::connections::ApiConnection;
use super::pages::{self, FieldErrors, MapperRow, MapperUse, VersionRow};
use super::{Body, Ctx, Failure, PREFIX, Req, error_page, html, path_segment, redirect, status_of};
use crate::catalog::registry::parse_ref;

/// The upload form's file field.
const COMPONENT_FIELD: &str = "component";

/// How many connections the list reads to say which use each mapper:
/// the API's largest page.
const CONNECTIONS_PAGE: &str = "connections?per_page=100&include_totals=true";

/// A mapper as `GET /api/v2/mappers` lists it.
#[derive(Debug, Deserialize)]
struct ApiMapper {
    name: String,
    active_version: u32,
}

/// `GET /api/v2/mappers/{name}/versions`.
#[derive(Debug, Deserialize)]
struct ApiVersions {
    versions: Vec<ApiVersion>,
}

/// One stored version, as the API shows it.
#[derive(Debug, Deserialize)]
struct ApiVersion {
    version: u32,
    sha256: String,
    size: u64,
    created_at: u64,
    created_by: String,
    #[serde(default)]
    active: bool,
}

#[derive(Deserialize)]
struct ConnectionList {
    connections: Vec<ApiConnection>,
}

/// Routes `/admin/mappers/...`.
pub(super) async fn route(
    req: &Req<'_>,
    ctx: &Ctx,
    method: &Method,
    seg: &[&str],
) -> Response<Body> {
    match (method, seg) {
        (&Method::GET, []) => list(req, ctx, String::new(), FieldErrors::default()).await,
        (&Method::POST, ["new"]) => {
            let name = req.form.text("name");
            if name.is_empty() {
                let mut errors = FieldErrors::default();
                errors
                    .fields
                    .insert("name", "Give the mapper a name.".into());
                return list(req, ctx, name, errors).await;
            }
            match upload(req, ctx, &name).await {
                Ok(()) => redirect(&format!("{PREFIX}/mappers/{}", path_segment(&name))),
                Err(errors) => list(req, ctx, name, errors).await,
            }
        }
        (&Method::GET, [name]) => show(req, ctx, name, FieldErrors::default()).await,
        (&Method::POST, [name, "versions"]) => match upload(req, ctx, name).await {
            Ok(()) => redirect(&format!("{PREFIX}/mappers/{}", path_segment(name))),
            Err(errors) => show(req, ctx, name, errors).await,
        },
        (&Method::POST, [name, "versions", version, "activate"]) => {
            let path = format!(
                "mappers/{}/versions/{}/activate",
                path_segment(name),
                path_segment(version)
            );
            match req
                .api::<serde_json::Value>(ctx, Method::POST, &path, None)
                .await
            {
                Ok(_) => redirect(&format!("{PREFIX}/mappers/{}", path_segment(name))),
                Err(f) => show(req, ctx, name, FieldErrors::general(f)).await,
            }
        }
        _ => error_page(StatusCode::NOT_FOUND, "Not found", "No such console page."),
    }
}

/// Sends the form's component to `PUT /api/v2/mappers/{name}`; the API's
/// refusal comes back by the field it is about.
async fn upload(req: &Req<'_>, ctx: &Ctx, name: &str) -> Result<(), FieldErrors> {
    let Some(bytes) = req.file(COMPONENT_FIELD).filter(|b| !b.is_empty()) else {
        let mut errors = FieldErrors::default();
        errors.fields.insert(
            COMPONENT_FIELD,
            "Choose a WebAssembly component (.wasm) to upload.".into(),
        );
        return Err(errors);
    };
    let path = format!("mappers/{}", path_segment(name));
    req.api_raw::<serde_json::Value>(
        ctx,
        Method::PUT,
        &path,
        "application/wasm",
        Bytes::clone(bytes),
    )
    .await
    .map(|_| ())
    .map_err(|f| upload_errors(&f))
}

/// The API's refusal of an upload, next to its field: the name's rules
/// for a 400 about the name, the component for what the validation and
/// compilation said (400, 413, 422), the form's top otherwise.
fn upload_errors(f: &Failure) -> FieldErrors {
    let mut errors = FieldErrors::default();
    match f.status {
        400 if f.message.contains("mapper name") => {
            errors.fields.insert("name", f.message.clone());
        }
        400 | 413 | 415 | 422 => {
            errors.fields.insert(COMPONENT_FIELD, f.message.clone());
        }
        _ => errors.general = Some(f.message.clone()),
    }
    errors
}

/// The connections whose `options.mapper` names `mapper` (pinned to a
/// version or following the active one).
fn users_of(mapper: &str, connections: &[ApiConnection]) -> Vec<MapperUse> {
    connections
        .iter()
        .filter_map(|c| {
            let reference = c.options.mapper.as_deref()?;
            let (name, pinned) = parse_ref(reference).ok()?;
            (name == mapper).then(|| MapperUse {
                id: c.id.clone(),
                display: c.display_name.clone().unwrap_or_else(|| c.name.clone()),
                pinned,
            })
        })
        .collect()
}

async fn list(req: &Req<'_>, ctx: &Ctx, name: String, errors: FieldErrors) -> Response<Body> {
    let status = if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    let mut errors = errors;
    let mappers = match req
        .api::<Vec<ApiMapper>>(ctx, Method::GET, "mappers", None)
        .await
    {
        Ok(list) => list,
        Err(f) => {
            errors.general = Some(f.message);
            Vec::new()
        }
    };
    let connections = connections(req, ctx, &mut errors).await;
    let rows = mappers
        .into_iter()
        .map(|m| MapperRow {
            href: path_segment(&m.name),
            used_by: users_of(&m.name, &connections),
            name: m.name,
            active_version: m.active_version,
        })
        .collect();
    let page = pages::Mappers {
        l: ctx.layout("mappers"),
        rows,
        mapper_name: name,
        errors,
    };
    html(status, askama::Template::render(&page))
}

async fn connections(req: &Req<'_>, ctx: &Ctx, errors: &mut FieldErrors) -> Vec<ApiConnection> {
    match req
        .api::<ConnectionList>(ctx, Method::GET, CONNECTIONS_PAGE, None)
        .await
    {
        Ok(list) => list.connections,
        Err(f) => {
            errors.general.get_or_insert(f.message);
            Vec::new()
        }
    }
}

async fn show(req: &Req<'_>, ctx: &Ctx, name: &str, errors: FieldErrors) -> Response<Body> {
    let path = format!("mappers/{}/versions", path_segment(name));
    let versions = match req.api::<ApiVersions>(ctx, Method::GET, &path, None).await {
        Ok(v) => v.versions,
        Err(f) => return error_page(status_of(&f), "Mapper", &f.message),
    };
    let status = if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    let mut errors = errors;
    let used_by = users_of(name, &connections(req, ctx, &mut errors).await);
    let active_version = versions.iter().find(|v| v.active).map(|v| v.version);
    let mut versions = versions;
    // The API lists them oldest first; the newest is the one looked for.
    versions.sort_unstable_by_key(|v| std::cmp::Reverse(v.version));
    let versions = versions
        .into_iter()
        .map(|v| VersionRow {
            version: v.version,
            sha256: v.sha256,
            size: human_size(v.size),
            bytes: v.size,
            created_at: super::display_time(&crate::events::rfc3339(v.created_at)),
            created_by: v.created_by,
            active: v.active,
        })
        .collect();
    let page = pages::MapperPage {
        l: ctx.layout("mappers"),
        name: name.to_owned(),
        href: path_segment(name),
        active_version,
        versions,
        used_by,
        errors,
    };
    html(status, askama::Template::render(&page))
}

/// A size in the unit that reads best (KiB and MiB, one decimal).
fn human_size(bytes: u64) -> String {
    const KIB: u64 = 1 << 10;
    const MIB: u64 = 1 << 20;
    // Precision is irrelevant here: a display rounded to a tenth.
    #[allow(clippy::cast_precision_loss)]
    let tenths = |unit: u64| bytes as f64 / unit as f64;
    match bytes {
        b if b < KIB => format!("{b} bytes"),
        b if b < MIB => format!("{:.1} KiB", tenths(KIB)),
        _ => format!("{:.1} MiB", tenths(MIB)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_in_bytes_kib_or_mib() {
        assert_eq!(human_size(512), "512 bytes");
        assert_eq!(human_size(74_893), "73.1 KiB");
        assert_eq!(human_size(15 << 20), "15.0 MiB");
    }

    fn failure(status: u16, message: &str) -> Failure {
        Failure {
            status,
            message: message.into(),
        }
    }

    #[test]
    fn an_upload_refusal_is_put_by_the_field_it_is_about() {
        let errors = upload_errors(&failure(400, "not a WebAssembly component: bad magic"));
        assert!(
            errors
                .get(COMPONENT_FIELD)
                .is_some_and(|e| e.contains("bad magic"))
        );
        let errors = upload_errors(&failure(422, "imports fetch-user-profile wrongly"));
        assert!(errors.get(COMPONENT_FIELD).is_some());
        let errors = upload_errors(&failure(
            400,
            "`bad name` is not a valid mapper name: use letters, digits and dashes",
        ));
        assert!(errors.get("name").is_some());
        let errors = upload_errors(&failure(409, "defined in the configuration file"));
        assert!(errors.fields.is_empty());
        assert_eq!(
            errors.general.as_deref(),
            Some("defined in the configuration file")
        );
    }
}
