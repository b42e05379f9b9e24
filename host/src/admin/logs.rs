//! `/api/v2/logs`: what happened, in Auth0's log event shape — list
//! (paged by `page`/`per_page`, or by checkpoint `from`/`take`; filtered
//! by `q`) and get by id.
//!
//! `q` takes the simple forms of Auth0's Lucene syntax, joined by spaces
//! or `AND`: `type:f`, `user_id:"oauth2|acme|42"`, `connection:"acme"`,
//! `date:[2026-12-01 TO 2026-12-02]` (either bound may be `*`; dates as
//! `YYYY-MM-DD`, RFC 3339 UTC or epoch seconds; inclusive). Anything else
//! in `q` is a 400 saying so: a filter silently ignored would answer the
//! wrong question.

use http::Method;
use serde::Serialize;

use super::{ApiError, ApiReply, ApiRequest, method_not_allowed};
use crate::broker::Broker;
use crate::broker::oauth::Params;
use crate::events::{parse_date, rfc3339};
use crate::store::{LogEvent, LogQuery};

/// Events per page unless `per_page` (or `take`) says otherwise, and at
/// most (Auth0's defaults and limits).
const DEFAULT_PER_PAGE: usize = 50;
const MAX_PER_PAGE: usize = 100;
/// Longest `q` accepted: a handful of filters.
const MAX_QUERY_BYTES: usize = 1024;

/// An event as the API shows it: Auth0's fields, `date` as RFC 3339.
#[derive(Debug, Serialize)]
struct ApiLogEvent<'a> {
    log_id: &'a str,
    date: String,
    #[serde(rename = "type")]
    event_type: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    connection: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    connection_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ip: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_agent: Option<&'a str>,
    #[serde(skip_serializing_if = "serde_json::Value::is_null")]
    details: &'a serde_json::Value,
}

impl<'a> ApiLogEvent<'a> {
    fn new(e: &'a LogEvent) -> Self {
        Self {
            log_id: &e.log_id,
            date: rfc3339(e.date),
            event_type: &e.event_type,
            description: e.description.as_deref(),
            connection: e.connection.as_deref(),
            connection_id: e.connection_id.as_deref(),
            client_id: e.client_id.as_deref(),
            client_name: e.client_name.as_deref(),
            user_id: e.user_id.as_deref(),
            user_name: e.user_name.as_deref(),
            ip: e.ip.as_deref(),
            user_agent: e.user_agent.as_deref(),
            details: &e.details,
        }
    }
}

/// The page with totals (`include_totals=true`).
#[derive(Debug, Serialize)]
struct Totals<'a> {
    start: usize,
    limit: usize,
    length: usize,
    total: u64,
    logs: Vec<ApiLogEvent<'a>>,
}

impl Broker {
    pub(super) async fn logs_api(
        &self,
        req: &ApiRequest<'_>,
        seg: &[&str],
    ) -> Result<ApiReply, ApiError> {
        match (req.method, seg) {
            (&Method::GET, []) => {
                let params =
                    Params::parse(req.query).map_err(|e| ApiError::bad_request(e.description))?;
                let number = |name: &str, default: usize| -> Result<usize, ApiError> {
                    params
                        .get(name)
                        .map(|v| {
                            v.parse().map_err(|_| {
                                ApiError::bad_request(format!("`{name}` must be a number"))
                            })
                        })
                        .unwrap_or(Ok(default))
                };
                let mut query = match params.get("q") {
                    Some(q) => parse_q(q)?,
                    None => LogQuery::default(),
                };
                let checkpoint = params.get("from").is_some() || params.get("take").is_some();
                let (start, limit) = if checkpoint {
                    if params.get("page").is_some() {
                        return Err(ApiError::bad_request(
                            "`from`/`take` and `page` cannot be combined",
                        ));
                    }
                    // `take` without `from`: from the oldest event.
                    query.after = Some(params.get("from").unwrap_or_default().to_owned());
                    (0, number("take", DEFAULT_PER_PAGE)?.clamp(1, MAX_PER_PAGE))
                } else {
                    let per_page = number("per_page", DEFAULT_PER_PAGE)?.clamp(1, MAX_PER_PAGE);
                    (number("page", 0)?.saturating_mul(per_page), per_page)
                };
                query.offset = start;
                query.limit = limit;
                // This instance's own events are written before it reads.
                self.events.flush().await;
                let page = self.store.log_events(&query).await?;
                let logs: Vec<ApiLogEvent<'_>> = page.events.iter().map(ApiLogEvent::new).collect();
                let body = if params.get("include_totals") == Some("true") {
                    serde_json::to_string(&Totals {
                        start,
                        limit,
                        length: logs.len(),
                        total: page.total,
                        logs,
                    })
                } else {
                    serde_json::to_string(&logs)
                };
                Ok(ApiReply {
                    status: 200,
                    body: body.map_err(|e| ApiError::new(500, e.to_string()))?,
                })
            }
            (&Method::GET, [id]) => {
                self.events.flush().await;
                let event = self
                    .store
                    .log_event(id)
                    .await?
                    .ok_or_else(|| ApiError::not_found(format!("log event `{id}`")))?;
                let body = serde_json::to_string(&ApiLogEvent::new(&event))
                    .map_err(|e| ApiError::new(500, e.to_string()))?;
                Ok(ApiReply { status: 200, body })
            }
            _ => Err(method_not_allowed()),
        }
    }
}

/// Parses `q` (see the module's documentation).
fn parse_q(q: &str) -> Result<LogQuery, ApiError> {
    if q.len() > MAX_QUERY_BYTES {
        return Err(ApiError::bad_request(format!(
            "`q` is over {MAX_QUERY_BYTES} bytes"
        )));
    }
    let unsupported = |term: &str| {
        ApiError::bad_request(format!(
            "`q`: `{term}` is not supported; use type:CODE, user_id:\"ID\", connection:\"NAME\", \
             date:[FROM TO TO] joined by spaces or AND"
        ))
    };
    let mut query = LogQuery::default();
    let mut rest = q.trim();
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("AND ") {
            rest = after.trim_start();
            continue;
        }
        let colon = rest.find(':').ok_or_else(|| unsupported(rest))?;
        let field = &rest[..colon];
        let value_start = &rest[colon + 1..];
        // A value: "quoted", [range], or a bare word up to a space.
        let (value, tail) = if let Some(quoted) = value_start.strip_prefix('"') {
            let end = quoted.find('"').ok_or_else(|| unsupported(rest))?;
            (&quoted[..end], &quoted[end + 1..])
        } else if value_start.starts_with('[') {
            let end = value_start.find(']').ok_or_else(|| unsupported(rest))?;
            (&value_start[..=end], &value_start[end + 1..])
        } else {
            let end = value_start.find(' ').unwrap_or(value_start.len());
            (&value_start[..end], &value_start[end..])
        };
        match field {
            "type" => query.event_type = Some(value.to_owned()),
            "user_id" => query.user_id = Some(value.to_owned()),
            "connection" => query.connection = Some(value.to_owned()),
            "date" => {
                let range = value
                    .strip_prefix('[')
                    .and_then(|v| v.strip_suffix(']'))
                    .ok_or_else(|| unsupported(value))?;
                let (from, to) = range.split_once(" TO ").ok_or_else(|| unsupported(value))?;
                let bound = |b: &str| -> Result<Option<u64>, ApiError> {
                    match b.trim() {
                        "*" => Ok(None),
                        b => parse_date(b).map(Some).ok_or_else(|| {
                            ApiError::bad_request(format!(
                                "`q`: `{b}` is not a date (YYYY-MM-DD, RFC 3339 UTC or epoch seconds)"
                            ))
                        }),
                    }
                };
                query.date_from = bound(from)?;
                // A bare day as the upper bound means the whole day.
                query.date_to = bound(to)?.map(|t| {
                    if to.trim().len() == 10 && to.contains('-') {
                        t + 86_399
                    } else {
                        t
                    }
                });
            }
            _ => return Err(unsupported(field)),
        }
        rest = tail.trim_start();
    }
    Ok(query)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_simple_lucene_forms_are_parsed_and_others_refused() {
        let q = parse_q(
            "type:f AND user_id:\"oauth2|acme|4 2\" connection:\"acme\" date:[2023-11-14 TO *]",
        )
        .expect("parses");
        assert_eq!(q.event_type.as_deref(), Some("f"));
        assert_eq!(q.user_id.as_deref(), Some("oauth2|acme|4 2"));
        assert_eq!(q.connection.as_deref(), Some("acme"));
        assert_eq!(q.date_from, Some(1_699_920_000));
        assert_eq!(q.date_to, None);
        let day = parse_q("date:[* TO 2023-11-14]").expect("parses");
        assert_eq!(day.date_to, Some(1_699_920_000 + 86_399));
        assert!(parse_q("description:*oops*").is_err());
        assert!(parse_q("type:f OR type:s").is_err());
        assert!(parse_q("user_id:\"unterminated").is_err());
        assert!(parse_q("date:[yesterday TO *]").is_err());
    }
}
