//! Auth0's list shapes, shared by every `GET /api/v2/<resource>`:
//!
//! - offset pagination: `page` (from 0), `per_page`, and `include_totals`,
//!   which turns the bare array into `{start, limit, length, total, <items>}`;
//! - checkpoint pagination: `from` (an opaque cursor, absent on the first
//!   call) and `take`, answered as `{<items>, next}`, `next` present only
//!   while more remain;
//! - `fields` (comma-separated) with `include_fields` (default `true`):
//!   keep only those fields of each item, or every field but those.
//!
//! A request with `from` or `take` is a checkpoint request, as in Auth0
//! (whose SDKs send `include_totals=true` along with `take`).

use serde::Serialize;
use serde_json::{Map, Value};

use super::ApiError;

/// Items per page when `per_page` / `take` is not given: Auth0's default.
pub const DEFAULT_PER_PAGE: usize = 50;
/// Most items one page may hold: Auth0's own maximum for `per_page` and
/// `take`, which keeps one answer to a few hundred KiB.
pub const MAX_PER_PAGE: usize = 100;

/// Auth0's `errorCode` for a malformed query parameter.
const INVALID_QUERY: &str = "invalid_query_string";

/// How a list was asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Paging {
    /// `page` / `per_page`; `totals` for `include_totals=true`.
    Offset {
        page: usize,
        per_page: usize,
        totals: bool,
    },
    /// `from` / `take`.
    Checkpoint { from: Option<String>, take: usize },
}

/// A management request's query: unlike OAuth requests, a parameter may
/// repeat (Auth0's `strategy=a&strategy=b`).
#[derive(Debug, Default, Clone)]
pub struct Query(Vec<(String, String)>);

impl Query {
    pub fn parse(encoded: &str) -> Self {
        Self(
            url::form_urlencoded::parse(encoded.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// The first value of `name`; an empty value counts as absent.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }

    /// Every non-empty value of `name`.
    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }
}

/// The field selection of `fields` / `include_fields`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fields {
    names: Vec<String>,
    include: bool,
}

/// A list request's paging and field selection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    pub paging: Paging,
    pub fields: Fields,
}

impl ListQuery {
    /// Reads the paging and field parameters; a malformed one is a 400
    /// naming it.
    pub fn parse(params: &Query) -> Result<Self, ApiError> {
        let number = |name: &str| -> Result<Option<usize>, ApiError> {
            params
                .get(name)
                .map(|v| {
                    v.parse::<usize>().map_err(|_| {
                        ApiError::bad_request(format!("`{name}` must be a non-negative integer"))
                            .with_code(INVALID_QUERY)
                    })
                })
                .transpose()
        };
        let size = |name: &str| -> Result<usize, ApiError> {
            match number(name)? {
                None => Ok(DEFAULT_PER_PAGE),
                Some(n) if (1..=MAX_PER_PAGE).contains(&n) => Ok(n),
                Some(_) => Err(ApiError::bad_request(format!(
                    "`{name}` must be between 1 and {MAX_PER_PAGE}"
                ))
                .with_code(INVALID_QUERY)),
            }
        };
        let paging = if params.get("from").is_some() || params.get("take").is_some() {
            Paging::Checkpoint {
                from: params
                    .get("from")
                    .filter(|f| !f.is_empty())
                    .map(str::to_owned),
                take: size("take")?,
            }
        } else {
            Paging::Offset {
                page: number("page")?.unwrap_or(0),
                per_page: size("per_page")?,
                totals: flag(params, "include_totals")?.unwrap_or(false),
            }
        };
        let fields = Fields {
            names: params
                .get("fields")
                .map(|f| {
                    f.split(',')
                        .map(str::trim)
                        .filter(|f| !f.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
            include: flag(params, "include_fields")?.unwrap_or(true),
        };
        Ok(Self { paging, fields })
    }

    /// One page of `items` (each with the key it is ordered and resumed
    /// by, unique), in Auth0's shape under `name` (`connections`, …).
    /// `items` need not be sorted.
    pub fn answer(&self, name: &str, mut items: Vec<(String, Value)>) -> Value {
        items.sort_by(|a, b| a.0.cmp(&b.0));
        let total = items.len();
        match &self.paging {
            Paging::Offset {
                page,
                per_page,
                totals,
            } => {
                let start = page.saturating_mul(*per_page);
                let list: Vec<Value> = items
                    .into_iter()
                    .skip(start)
                    .take(*per_page)
                    .map(|(_, item)| self.fields.apply(item))
                    .collect();
                if *totals {
                    self.offset_page(name, start, *per_page, total, list)
                } else {
                    Value::Array(list)
                }
            }
            Paging::Checkpoint { from, take } => {
                // The cursor is the key of the last item sent: what follows
                // it stays right when items before it are added or deleted.
                let rest: Vec<(String, Value)> = items
                    .into_iter()
                    .filter(|(key, _)| from.as_ref().is_none_or(|f| key > f))
                    .collect();
                let more = rest.len() > *take;
                let page: Vec<(String, Value)> = rest.into_iter().take(*take).collect();
                let next = more.then(|| page.last().map(|(k, _)| k.clone())).flatten();
                let list = page
                    .into_iter()
                    .map(|(_, item)| self.fields.apply(item))
                    .collect();
                checkpoint_page(name, list, next)
            }
        }
    }

    /// `{start, limit, length, total, <name>}` for a page a store
    /// already cut (`list`), of `total` items.
    pub fn offset_page(
        &self,
        name: &str,
        start: usize,
        limit: usize,
        total: usize,
        list: Vec<Value>,
    ) -> Value {
        let page = OffsetPage {
            start,
            limit,
            length: list.len(),
            total,
        };
        let mut out = serde_json::to_value(page).unwrap_or_default();
        if let Some(obj) = out.as_object_mut() {
            obj.insert(name.to_owned(), Value::Array(list));
        }
        out
    }

    /// The selected fields of one item.
    pub fn select(&self, item: Value) -> Value {
        self.fields.apply(item)
    }
}

/// The totals of an offset page, as Auth0 names them.
#[derive(Serialize)]
struct OffsetPage {
    start: usize,
    limit: usize,
    length: usize,
    total: usize,
}

fn checkpoint_page(name: &str, list: Vec<Value>, next: Option<String>) -> Value {
    let mut out = Map::new();
    out.insert(name.to_owned(), Value::Array(list));
    if let Some(next) = next {
        out.insert("next".into(), Value::String(next));
    }
    Value::Object(out)
}

impl Fields {
    /// Reads `fields` / `include_fields` alone (for `GET …/{id}`).
    pub fn parse(params: &Query) -> Result<Self, ApiError> {
        ListQuery::parse(params).map(|q| q.fields)
    }

    /// Keeps the named fields (or drops them, with `include_fields=false`);
    /// no `fields` keeps the item whole.
    pub fn apply(&self, item: Value) -> Value {
        if self.names.is_empty() {
            return item;
        }
        match item {
            Value::Object(obj) => Value::Object(
                obj.into_iter()
                    .filter(|(k, _)| self.names.iter().any(|n| n == k) == self.include)
                    .collect(),
            ),
            other => other,
        }
    }
}

/// `true` / `false`; anything else is a 400 naming the parameter.
fn flag(params: &Query, name: &str) -> Result<Option<bool>, ApiError> {
    match params.get(name) {
        None => Ok(None),
        Some("true") => Ok(Some(true)),
        Some("false") => Ok(Some(false)),
        Some(_) => Err(
            ApiError::bad_request(format!("`{name}` must be true or false"))
                .with_code(INVALID_QUERY),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn query(q: &str) -> ListQuery {
        ListQuery::parse(&Query::parse(q)).expect("query")
    }

    fn items(n: usize) -> Vec<(String, Value)> {
        (0..n)
            .map(|i| {
                (
                    format!("id{i:02}"),
                    json!({"id": format!("id{i:02}"), "name": i}),
                )
            })
            .collect()
    }

    #[test]
    fn without_paging_parameters_the_list_is_a_bare_array_of_the_first_page() {
        let out = query("").answer("things", items(60));
        assert_eq!(out.as_array().map(Vec::len), Some(DEFAULT_PER_PAGE));
    }

    #[test]
    fn include_totals_answers_start_limit_length_and_total() {
        let out = query("page=1&per_page=4&include_totals=true").answer("things", items(10));
        assert_eq!(out["start"], 4);
        assert_eq!(out["limit"], 4);
        assert_eq!(out["length"], 4);
        assert_eq!(out["total"], 10);
        assert_eq!(out["things"][0]["id"], "id04");
        let past = query("page=5&per_page=4&include_totals=true").answer("things", items(10));
        assert_eq!(past["things"], json!([]));
    }

    #[test]
    fn checkpoint_pages_follow_next_until_it_is_absent() {
        let mut seen = Vec::new();
        let mut from = String::new();
        for _ in 0..10 {
            let q = if from.is_empty() {
                query("take=4&include_totals=true")
            } else {
                query(&format!("take=4&from={from}"))
            };
            let out = q.answer("things", items(10));
            for t in out["things"].as_array().expect("items") {
                seen.push(t["id"].as_str().expect("id").to_owned());
            }
            match out.get("next").and_then(Value::as_str) {
                Some(next) => from = next.to_owned(),
                None => break,
            }
        }
        let all: Vec<String> = items(10).into_iter().map(|(k, _)| k).collect();
        assert_eq!(seen, all);
    }

    #[test]
    fn fields_keep_or_drop_the_named_fields() {
        let out = query("fields=id&include_fields=true").answer("things", items(1));
        assert_eq!(out[0], json!({"id": "id00"}));
        let out = query("fields=id&include_fields=false").answer("things", items(1));
        assert_eq!(out[0], json!({"name": 0}));
    }

    #[test]
    fn malformed_paging_parameters_are_refused_naming_them() {
        for (q, name) in [
            ("per_page=0", "per_page"),
            ("per_page=101", "per_page"),
            ("take=x", "take"),
            ("page=-1", "page"),
            ("include_totals=yes", "include_totals"),
        ] {
            let err = ListQuery::parse(&Query::parse(q)).unwrap_err();
            assert!(err.message.contains(name), "{q}: {}", err.message);
        }
    }
}
