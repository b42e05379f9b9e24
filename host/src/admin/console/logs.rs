//! The console's Logs page: login and management events as
//! `GET /api/v2/logs` gives them (newest first), paged, filtered by type.
//! Shown: when, what, the connection, app, user and address — never an
//! event's `details` (which may quote what a provider answered).

use http::{Response, StatusCode};
use serde::Deserialize;

use super::pages::{self, LogRow};
use super::{Body, Ctx, Failure, Req, error_page, html, path_segment};
use crate::events::EventType;

/// Events per page: a screenful or two.
pub(super) const PER_PAGE: usize = 50;

/// The types the filter offers, with what they mean; the codes are the
/// API's own ([`EventType::code`]).
pub(super) const EVENT_TYPES: [(EventType, &str); 10] = [
    (EventType::Success, "Successful login"),
    (EventType::Failure, "Failed login"),
    (EventType::CodeExchange, "Code exchanged for tokens"),
    (EventType::CodeExchangeFailure, "Code exchange refused"),
    (EventType::ClientCredentials, "Client credentials exchanged"),
    (
        EventType::ClientCredentialsFailure,
        "Client credentials refused",
    ),
    (EventType::ApiSuccess, "Management API change"),
    (EventType::ApiFailure, "Management API change refused"),
    (EventType::IdentityLinked, "Identity linked"),
    (EventType::IdentityUnlinked, "Identity unlinked"),
];

/// What the console reads of an event (Auth0's log event shape).
#[derive(Debug, Deserialize)]
pub(super) struct ApiLogEvent {
    log_id: String,
    date: String,
    #[serde(rename = "type")]
    event_type: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    connection: Option<String>,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    client_name: Option<String>,
    #[serde(default)]
    user_id: Option<String>,
    #[serde(default)]
    ip: Option<String>,
}

/// `GET /api/v2/logs?include_totals=true`.
#[derive(Debug, Deserialize)]
struct LogPage {
    total: u64,
    logs: Vec<ApiLogEvent>,
}

/// What an event type's code means, or the code itself.
pub(super) fn type_label(code: &str) -> &str {
    EVENT_TYPES
        .iter()
        .find(|(t, _)| t.code() == code)
        .map(|(_, label)| *label)
        .unwrap_or(code)
}

/// An event as a row of a table.
pub(super) fn row(e: ApiLogEvent) -> LogRow {
    LogRow {
        type_label: type_label(&e.event_type).to_owned(),
        success: !e.event_type.starts_with('f'),
        user_href: e.user_id.as_deref().map(path_segment),
        client: e.client_name.or(e.client_id),
        log_id: e.log_id,
        date: super::display_time(&e.date),
        event_type: e.event_type,
        description: e.description,
        connection: e.connection,
        user_id: e.user_id,
        ip: e.ip,
    }
}

/// The events of `q` (the API's filter syntax), newest first.
pub(super) async fn events(
    req: &Req<'_>,
    ctx: &Ctx,
    q: Option<&str>,
    page: usize,
    per_page: usize,
) -> Result<(Vec<LogRow>, u64), Failure> {
    // The serializer is not `Send`: finished before the call awaits.
    let path = {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        query
            .append_pair("page", &page.to_string())
            .append_pair("per_page", &per_page.to_string())
            .append_pair("include_totals", "true");
        if let Some(q) = q {
            query.append_pair("q", q);
        }
        query.finish()
    };
    let path = format!("logs?{path}");
    let list = req
        .api::<LogPage>(ctx, http::Method::GET, &path, None)
        .await?;
    Ok((list.logs.into_iter().map(row).collect(), list.total))
}

/// `GET /admin/logs?type=CODE&page=N`.
pub(super) async fn page(req: &Req<'_>, ctx: &Ctx) -> Response<Body> {
    let params = req.params();
    let chosen = params.text("type");
    // Only a known code reaches the API's `q`: nothing typed in the
    // address bar becomes filter syntax.
    if !chosen.is_empty() && !EVENT_TYPES.iter().any(|(t, _)| t.code() == chosen) {
        return error_page(
            StatusCode::BAD_REQUEST,
            "Logs",
            &format!("`{chosen}` is not an event type."),
        );
    }
    let page = match params.get("page").map(str::parse::<usize>) {
        None => 0,
        Some(Ok(page)) => page,
        Some(Err(_)) => {
            return error_page(StatusCode::BAD_REQUEST, "Logs", "The page is not a number.");
        }
    };
    let q = (!chosen.is_empty()).then(|| format!("type:{chosen}"));
    let (rows, total, error) = match events(req, ctx, q.as_deref(), page, PER_PAGE).await {
        Ok((rows, total)) => (rows, total, None),
        Err(f) => (Vec::new(), 0, Some(f.message)),
    };
    let shown_to = page.saturating_mul(PER_PAGE).saturating_add(rows.len());
    let page_view = pages::Logs {
        l: ctx.layout("logs"),
        types: EVENT_TYPES
            .iter()
            .map(|(t, label)| (t.code(), *label))
            .collect(),
        first: if rows.is_empty() {
            0
        } else {
            page.saturating_mul(PER_PAGE).saturating_add(1)
        },
        last: shown_to,
        newer: page.checked_sub(1),
        older: (u64::try_from(shown_to).unwrap_or(u64::MAX) < total)
            .then_some(page.saturating_add(1)),
        type_query: url::form_urlencoded::byte_serialize(chosen.as_bytes()).collect(),
        chosen,
        rows,
        total,
        error,
    };
    html(StatusCode::OK, askama::Template::render(&page_view))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_type_has_one_label_and_unknown_codes_show_as_they_are() {
        let mut codes: Vec<&str> = EVENT_TYPES.iter().map(|(t, _)| t.code()).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), EVENT_TYPES.len());
        assert_eq!(type_label("s"), "Successful login");
        assert_eq!(type_label("xyz"), "xyz");
    }
}
