//! `POST /contacts/search` (API.md §5): filters, sort, full-text query, `page` paging capped
//! at 10,000 records and `searchAfter` cursors for the rest.
//!
//! Guarantees: results are totally ordered (the sort fields, then the contact id), so paging
//! with `searchAfter` visits every matching contact exactly once while nothing changes; the
//! cursor after a hit is `[sortValue…, id]` (dates as epoch ms), which the handler shows on
//! each hit only under `GhlConfig::search_cursor = per_hit`; missing sort values sort last in
//! both directions (as Elasticsearch does by default).

use std::cmp::Ordering;

use serde_json::{Value, json};

use super::error::{ApiError, ApiResult};
use super::model::Contact;
use super::util::{normalise_phone, parse_rfc3339};
use super::validate::Body;

/// `pageLimit` maximum per request ([SEARCHDOC] via API.md §5).
pub const MAX_PAGE_LIMIT: u64 = 500;
/// `page` paging reaches at most this many records; beyond it only `searchAfter` works.
pub const MAX_PAGED_RECORDS: u64 = 10_000;
/// Maximum length of `query` and of a filter value (API.md §5).
pub const MAX_VALUE_LEN: usize = 75;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DateField {
    Added,
    Updated,
}

/// A searchable field.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Field {
    /// A plain string field of the contact (`email`, `phone`, `city`, …).
    Text(&'static str),
    /// A `…LowerCase` field: the lower-cased value of `firstName`/`lastName`/`email`.
    Lower(&'static str),
    FullNameLower,
    Date(DateField),
    Tags,
    Dnd,
    BusinessId,
    Id,
    Type,
    Custom(String),
}

impl Field {
    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "dateAdded" => Self::Date(DateField::Added),
            "dateUpdated" => Self::Date(DateField::Updated),
            "tags" => Self::Tags,
            "dnd" => Self::Dnd,
            "businessId" => Self::BusinessId,
            "id" => Self::Id,
            "type" => Self::Type,
            "firstNameLowerCase" => Self::Lower("firstName"),
            "lastNameLowerCase" => Self::Lower("lastName"),
            "emailLowerCase" => Self::Lower("email"),
            "fullNameLowerCase" => Self::FullNameLower,
            "firstName" => Self::Text("firstName"),
            "lastName" => Self::Text("lastName"),
            "email" => Self::Text("email"),
            "phone" => Self::Text("phone"),
            "companyName" => Self::Text("companyName"),
            "address" | "address1" => Self::Text("address1"),
            "city" => Self::Text("city"),
            "state" => Self::Text("state"),
            "country" => Self::Text("country"),
            "postalCode" => Self::Text("postalCode"),
            "website" => Self::Text("website"),
            "source" => Self::Text("source"),
            "timezone" => Self::Text("timezone"),
            "assignedTo" => Self::Text("assignedTo"),
            other => {
                let id = other.strip_prefix("customFields.")?;
                if id.is_empty() {
                    return None;
                }
                Self::Custom(id.to_owned())
            }
        })
    }

    fn value<'a>(&self, c: &'a Contact) -> FieldValue<'a> {
        match self {
            Self::Text(k) => FieldValue::text(c.get(k).map(str::to_owned)),
            Self::Lower(k) => FieldValue::text(c.get(k).map(str::to_lowercase)),
            Self::FullNameLower => FieldValue::text(c.name().map(|n| n.to_lowercase())),
            Self::Date(DateField::Added) => FieldValue::Date(c.date_added.timestamp_millis()),
            Self::Date(DateField::Updated) => FieldValue::Date(c.date_updated.timestamp_millis()),
            Self::Tags => FieldValue::Tags(&c.tags),
            Self::Dnd => FieldValue::Bool(c.dnd),
            Self::BusinessId => FieldValue::text(c.business_id.clone()),
            Self::Id => FieldValue::text(Some(c.id.clone())),
            Self::Type => FieldValue::text(Some(c.contact_type.clone())),
            Self::Custom(id) => {
                FieldValue::text(c.custom_fields.iter().find(|(k, _)| k == id).map(
                    |(_, v)| match v {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    },
                ))
            }
        }
    }

    fn is_phone(&self) -> bool {
        *self == Self::Text("phone")
    }
}

enum FieldValue<'a> {
    Missing,
    Text(String),
    Date(i64),
    Bool(bool),
    Tags(&'a [String]),
}

impl FieldValue<'_> {
    fn text(v: Option<String>) -> Self {
        match v {
            Some(s) if !s.is_empty() => Self::Text(s),
            _ => Self::Missing,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
struct Range {
    gt: Option<Value>,
    gte: Option<Value>,
    lt: Option<Value>,
    lte: Option<Value>,
}

#[derive(Debug, Clone, PartialEq)]
enum Op {
    Eq(Value),
    NotEq(Value),
    Contains(String),
    NotContains(String),
    Exists,
    NotExists,
    Range(Range),
}

#[derive(Debug, Clone, PartialEq)]
enum Filter {
    Leaf { field: Field, op: Op },
    Group { and: bool, filters: Vec<Filter> },
}

#[derive(Debug, Clone, PartialEq)]
struct SortSpec {
    field: Field,
    desc: bool,
}

/// A validated search request.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchRequest {
    pub location_id: String,
    page_limit: usize,
    page: Option<u64>,
    search_after: Option<Vec<Value>>,
    filters: Vec<Filter>,
    sort: Vec<SortSpec>,
    query: Option<String>,
}

fn parse_filter(v: &Value, path: &str, errors: &mut Vec<String>) -> Option<Filter> {
    let Some(obj) = v.as_object() else {
        errors.push(format!("{path} must be an object"));
        return None;
    };
    if let Some(group) = obj.get("group") {
        let and = match group.as_str().map(str::to_ascii_uppercase).as_deref() {
            Some("AND") => true,
            Some("OR") => false,
            _ => {
                errors.push(format!(
                    "{path}.group must be one of the following values: AND, OR"
                ));
                return None;
            }
        };
        let Some(items) = obj.get("filters").and_then(Value::as_array) else {
            errors.push(format!("{path}.filters must be an array"));
            return None;
        };
        let filters = items
            .iter()
            .enumerate()
            .filter_map(|(i, f)| parse_filter(f, &format!("{path}.filters.{i}"), errors))
            .collect();
        return Some(Filter::Group { and, filters });
    }
    let Some(name) = obj.get("field").and_then(Value::as_str) else {
        errors.push(format!("{path}.field must be a string"));
        return None;
    };
    let Some(field) = Field::parse(name) else {
        errors.push(format!(
            "{path}.field {name} is not a supported search field"
        ));
        return None;
    };
    let operator = obj.get("operator").and_then(Value::as_str).unwrap_or("");
    let value = obj.get("value").cloned().unwrap_or(Value::Null);
    if let Value::String(s) = &value
        && s.chars().count() > MAX_VALUE_LEN
    {
        errors.push(format!(
            "{path}.value must be shorter than or equal to {MAX_VALUE_LEN} characters"
        ));
        return None;
    }
    let text_value = |errors: &mut Vec<String>| match &value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => {
            errors.push(format!("{path}.value must be a string"));
            None
        }
    };
    let op = match operator {
        "eq" | "not_eq" => {
            if value.is_null() {
                errors.push(format!("{path}.value should not be empty"));
                return None;
            }
            if operator == "eq" {
                Op::Eq(value.clone())
            } else {
                Op::NotEq(value.clone())
            }
        }
        "contains" | "not_contains" => {
            if matches!(field, Field::Date(_) | Field::Dnd) {
                errors.push(format!(
                    "{path}.operator {operator} is not supported for {name}"
                ));
                return None;
            }
            let s = text_value(errors)?;
            if operator == "contains" {
                Op::Contains(s)
            } else {
                Op::NotContains(s)
            }
        }
        "exists" => Op::Exists,
        "not_exists" => Op::NotExists,
        "range" => {
            if matches!(field, Field::Tags | Field::Dnd) {
                errors.push(format!("{path}.operator range is not supported for {name}"));
                return None;
            }
            let Some(r) = value.as_object() else {
                errors.push(format!(
                    "{path}.value must be an object with gt, gte, lt or lte"
                ));
                return None;
            };
            let range = Range {
                gt: r.get("gt").cloned(),
                gte: r.get("gte").cloned(),
                lt: r.get("lt").cloned(),
                lte: r.get("lte").cloned(),
            };
            if range == Range::default() {
                errors.push(format!(
                    "{path}.value must be an object with gt, gte, lt or lte"
                ));
                return None;
            }
            if let Field::Date(_) = field {
                for b in [&range.gt, &range.gte, &range.lt, &range.lte]
                    .into_iter()
                    .flatten()
                {
                    if date_bound(b).is_none() {
                        errors.push(format!("{path}.value bound {b} is not a date"));
                        return None;
                    }
                }
            }
            Op::Range(range)
        }
        other => {
            errors.push(format!(
                "{path}.operator {other} must be one of the following values: eq, not_eq, \
                 contains, not_contains, exists, not_exists, range"
            ));
            return None;
        }
    };
    Some(Filter::Leaf { field, op })
}

/// A date bound or a date in a cursor: epoch milliseconds as a JSON number, or an RFC 3339
/// string with its zone. The search body is not in the spec (API.md §5), so which forms GHL
/// reads is unknown; a bare date, a time without a zone and epoch milliseconds inside a string
/// are refused, so a client sending them learns it here.
fn date_bound(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Value::String(s) => parse_rfc3339(s).map(|t| t.timestamp_millis()),
        _ => None,
    }
}

impl SearchRequest {
    /// Validate a search body; 422 for a missing `locationId`/`pageLimit` (#31) and for
    /// anything the simulator does not understand, so a misspelt filter fails loudly.
    pub fn parse(v: &Value) -> ApiResult<Self> {
        let mut b = Body::new(
            v,
            &[
                "locationId",
                "pageLimit",
                "page",
                "searchAfter",
                "filters",
                "sort",
                "query",
            ],
        )?;
        let location_id = b.req_str("locationId");
        let page_limit = match b.raw("pageLimit") {
            None | Some(Value::Null) => {
                b.error("pageLimit should not be empty".to_owned());
                None
            }
            Some(_) => match b.opt_u64("pageLimit") {
                Some(0) => {
                    b.error("pageLimit must not be less than 1".to_owned());
                    None
                }
                Some(n) if n > MAX_PAGE_LIMIT => {
                    b.error(format!(
                        "pageLimit must not be greater than {MAX_PAGE_LIMIT}"
                    ));
                    None
                }
                other => other,
            },
        };
        let page = b.opt_u64("page");
        if page == Some(0) {
            b.error("page must not be less than 1".to_owned());
        }
        let search_after = match b.raw("searchAfter") {
            None | Some(Value::Null) => None,
            Some(Value::Array(a)) => Some(a.clone()),
            Some(_) => {
                b.error("searchAfter must be an array".to_owned());
                None
            }
        };
        if page.is_some() && search_after.is_some() {
            b.error("page and searchAfter cannot be used together".to_owned());
        }
        let mut errors = Vec::new();
        let filters = match b.raw("filters") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .filter_map(|(i, f)| parse_filter(f, &format!("filters.{i}"), &mut errors))
                .collect(),
            Some(_) => {
                errors.push("filters must be an array".to_owned());
                Vec::new()
            }
        };
        let sort = match b.raw("sort") {
            None | Some(Value::Null) => vec![SortSpec {
                // Newest first, like GHL's contact list (assumption, see README).
                field: Field::Date(DateField::Added),
                desc: true,
            }],
            Some(Value::Array(items)) => {
                let mut out = Vec::new();
                for (i, s) in items.iter().enumerate() {
                    let name = s.get("field").and_then(Value::as_str).unwrap_or("");
                    match Field::parse(name) {
                        Some(Field::Tags) | None => {
                            errors.push(format!("sort.{i}.field {name} is not a sortable field"))
                        }
                        Some(field) => {
                            let desc = match s.get("direction").and_then(Value::as_str) {
                                None | Some("asc") => false,
                                Some("desc") => true,
                                Some(d) => {
                                    errors.push(format!(
                                        "sort.{i}.direction {d} must be one of the following \
                                         values: asc, desc"
                                    ));
                                    false
                                }
                            };
                            out.push(SortSpec { field, desc });
                        }
                    }
                }
                out
            }
            Some(_) => {
                errors.push("sort must be an array".to_owned());
                Vec::new()
            }
        };
        let query = b.opt_str("query").flatten();
        if query
            .as_ref()
            .is_some_and(|q| q.chars().count() > MAX_VALUE_LEN)
        {
            errors.push(format!(
                "query must be shorter than or equal to {MAX_VALUE_LEN} characters"
            ));
        }
        if let Some(sa) = &search_after
            && sa.len() != sort.len() + 1
        {
            errors.push(format!(
                "searchAfter must have {} values (the sort values and the id of the last contact)",
                sort.len() + 1
            ));
        }
        for e in errors {
            b.error(e);
        }
        b.finish()?;
        let page_limit = usize::try_from(page_limit.unwrap_or(1)).unwrap_or(1);
        if let Some(p) = page
            && p.saturating_mul(page_limit as u64) > MAX_PAGED_RECORDS
        {
            return Err(ApiError::bad_request(format!(
                "page * pageLimit must not exceed {MAX_PAGED_RECORDS}; use searchAfter to read further"
            )));
        }
        Ok(Self {
            location_id: location_id.unwrap_or_default(),
            page_limit,
            page,
            search_after,
            filters,
            sort,
            query,
        })
    }
}

fn text_eq(field: &Field, have: &str, want: &Value) -> bool {
    let want = match want {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => return false,
    };
    if field.is_phone() {
        normalise_phone(have) == normalise_phone(&want)
    } else {
        have.to_lowercase() == want.to_lowercase()
    }
}

fn cmp_bound(have: &FieldValue<'_>, bound: &Value) -> Option<Ordering> {
    match have {
        FieldValue::Date(ms) => date_bound(bound).map(|b| ms.cmp(&b)),
        FieldValue::Text(s) => {
            let b = match bound {
                Value::String(b) => b.to_lowercase(),
                Value::Number(n) => n.to_string(),
                _ => return None,
            };
            // Numbers stored as text compare numerically when both sides parse.
            match (s.parse::<f64>(), b.parse::<f64>()) {
                (Ok(x), Ok(y)) => x.partial_cmp(&y),
                _ => Some(s.to_lowercase().cmp(&b)),
            }
        }
        _ => None,
    }
}

fn matches(f: &Filter, c: &Contact) -> bool {
    match f {
        Filter::Group { and: true, filters } => filters.iter().all(|f| matches(f, c)),
        Filter::Group {
            and: false,
            filters,
        } => filters.iter().any(|f| matches(f, c)),
        Filter::Leaf { field, op } => {
            let have = field.value(c);
            match op {
                Op::Exists => match have {
                    FieldValue::Missing => false,
                    FieldValue::Tags(t) => !t.is_empty(),
                    _ => true,
                },
                Op::NotExists => !matches(
                    &Filter::Leaf {
                        field: field.clone(),
                        op: Op::Exists,
                    },
                    c,
                ),
                Op::Eq(want) => eq(field, &have, want),
                Op::NotEq(want) => !eq(field, &have, want),
                Op::Contains(s) => contains(field, &have, s),
                Op::NotContains(s) => !contains(field, &have, s),
                Op::Range(r) => {
                    let ok = |b: &Option<Value>, pred: fn(Ordering) -> bool| {
                        b.as_ref()
                            .is_none_or(|b| cmp_bound(&have, b).is_some_and(pred))
                    };
                    !matches!(have, FieldValue::Missing)
                        && ok(&r.gt, |o| o == Ordering::Greater)
                        && ok(&r.gte, |o| o != Ordering::Less)
                        && ok(&r.lt, |o| o == Ordering::Less)
                        && ok(&r.lte, |o| o != Ordering::Greater)
                }
            }
        }
    }
}

fn eq(field: &Field, have: &FieldValue<'_>, want: &Value) -> bool {
    match have {
        FieldValue::Missing => false,
        FieldValue::Text(s) => match want {
            Value::Array(any) => any.iter().any(|w| text_eq(field, s, w)),
            w => text_eq(field, s, w),
        },
        FieldValue::Date(ms) => date_bound(want) == Some(*ms),
        FieldValue::Bool(b) => match want {
            Value::Bool(w) => w == b,
            Value::String(s) => s.eq_ignore_ascii_case(&b.to_string()),
            _ => false,
        },
        FieldValue::Tags(tags) => {
            let has = |w: &Value| {
                w.as_str()
                    .is_some_and(|w| tags.iter().any(|t| t.eq_ignore_ascii_case(w.trim())))
            };
            match want {
                Value::Array(any) => any.iter().any(has),
                w => has(w),
            }
        }
    }
}

fn contains(field: &Field, have: &FieldValue<'_>, needle: &str) -> bool {
    let needle = if field.is_phone() {
        normalise_phone(needle)
    } else {
        needle.to_lowercase()
    };
    match have {
        FieldValue::Text(s) => s.to_lowercase().contains(&needle),
        FieldValue::Tags(tags) => tags.iter().any(|t| t.to_lowercase().contains(&needle)),
        _ => false,
    }
}

/// The full-text `query`: a case-insensitive match on name, email, company and phone digits.
pub fn query_matches(q: &str, c: &Contact) -> bool {
    let q = q.to_lowercase();
    let digits = normalise_phone(&q);
    c.name().is_some_and(|n| n.to_lowercase().contains(&q))
        || ["email", "companyName"]
            .iter()
            .any(|k| c.get(k).is_some_and(|v| v.to_lowercase().contains(&q)))
        || (digits.len() >= 3
            && digits.len() == q.chars().filter(|ch| !ch.is_whitespace()).count()
            && c.get("phone").is_some_and(|p| p.contains(&digits)))
}

/// One component of a sort key.
#[derive(Debug, Clone, PartialEq)]
enum SortVal {
    Null,
    Num(i64),
    Str(String),
}

impl SortVal {
    fn of(field: &Field, c: &Contact) -> Self {
        match field.value(c) {
            FieldValue::Missing | FieldValue::Tags(_) => Self::Null,
            FieldValue::Text(s) => Self::Str(s.to_lowercase()),
            FieldValue::Date(ms) => Self::Num(ms),
            FieldValue::Bool(b) => Self::Num(i64::from(b)),
        }
    }

    fn from_cursor(v: &Value, field: &Field) -> Self {
        match v {
            Value::Null => Self::Null,
            Value::Number(n) => Self::Num(
                n.as_i64()
                    .unwrap_or_else(|| n.as_f64().unwrap_or(0.0) as i64),
            ),
            Value::String(s) => match field {
                Field::Date(_) => date_bound(v).map_or(Self::Null, Self::Num),
                _ => Self::Str(s.to_lowercase()),
            },
            Value::Bool(b) => Self::Num(i64::from(*b)),
            _ => Self::Null,
        }
    }

    fn to_json(&self) -> Value {
        match self {
            Self::Null => Value::Null,
            Self::Num(n) => json!(n),
            Self::Str(s) => json!(s),
        }
    }

    /// Missing values last whatever the direction.
    fn cmp_dir(&self, other: &Self, desc: bool) -> Ordering {
        let o = match (self, other) {
            (Self::Null, Self::Null) => return Ordering::Equal,
            (Self::Null, _) => return Ordering::Greater,
            (_, Self::Null) => return Ordering::Less,
            (Self::Num(a), Self::Num(b)) => a.cmp(b),
            (Self::Str(a), Self::Str(b)) => a.cmp(b),
            (Self::Num(_), Self::Str(_)) => Ordering::Less,
            (Self::Str(_), Self::Num(_)) => Ordering::Greater,
        };
        if desc { o.reverse() } else { o }
    }
}

type Key = (Vec<SortVal>, String);

fn cmp_keys(a: &Key, b: &Key, sort: &[SortSpec]) -> Ordering {
    for (i, s) in sort.iter().enumerate() {
        let o = a.0[i].cmp_dir(&b.0[i], s.desc);
        if o != Ordering::Equal {
            return o;
        }
    }
    a.1.cmp(&b.1)
}

/// The page of a search: `(contact, its searchAfter cursor)` in order, plus the total count.
pub fn run<'a>(
    contacts: Vec<&'a Contact>,
    req: &SearchRequest,
) -> (Vec<(&'a Contact, Value)>, usize) {
    let mut hits: Vec<(Key, &Contact)> = contacts
        .into_iter()
        .filter(|c| req.filters.iter().all(|f| matches(f, c)))
        .filter(|c| req.query.as_deref().is_none_or(|q| query_matches(q, c)))
        .map(|c| {
            let vals = req.sort.iter().map(|s| SortVal::of(&s.field, c)).collect();
            ((vals, c.id.clone()), c)
        })
        .collect();
    let total = hits.len();
    hits.sort_by(|a, b| cmp_keys(&a.0, &b.0, &req.sort));
    let start = match (&req.search_after, req.page) {
        (Some(cursor), _) => {
            let vals = req
                .sort
                .iter()
                .zip(cursor)
                .map(|(s, v)| SortVal::from_cursor(v, &s.field))
                .collect();
            let id = cursor
                .last()
                .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                .unwrap_or_default();
            let key = (vals, id);
            hits.partition_point(|h| cmp_keys(&h.0, &key, &req.sort) != Ordering::Greater)
        }
        (None, Some(page)) => usize::try_from(page - 1)
            .unwrap_or(usize::MAX)
            .saturating_mul(req.page_limit),
        (None, None) => 0,
    };
    let page = hits
        .into_iter()
        .skip(start)
        .take(req.page_limit)
        .map(|(key, c)| {
            let mut cursor: Vec<Value> = key.0.iter().map(SortVal::to_json).collect();
            cursor.push(json!(key.1));
            (c, Value::Array(cursor))
        })
        .collect();
    (page, total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ghl::util::from_epoch_ms;

    fn contact(id: &str, added_ms: i64, tags: &[&str], email: Option<&str>) -> Contact {
        let mut c = Contact::new(id.into(), "loc".into(), from_epoch_ms(added_ms));
        c.tags = tags.iter().map(|t| (*t).to_owned()).collect();
        if let Some(e) = email {
            c.fields.insert("email", e.to_owned());
        }
        c
    }

    fn req(v: Value) -> SearchRequest {
        SearchRequest::parse(&v).expect("valid search")
    }

    fn ids(page: &[(&Contact, Value)]) -> Vec<String> {
        page.iter().map(|(c, _)| c.id.clone()).collect()
    }

    #[test]
    fn location_and_page_limit_are_required() {
        let e = SearchRequest::parse(&json!({})).expect_err("422");
        assert_eq!(e.status.as_u16(), 422);
        let m = e.body["message"].as_array().expect("array").len();
        assert!(m >= 2, "{}", e.body);
        let e = SearchRequest::parse(&json!({"locationId": "l", "pageLimit": 501}))
            .expect_err("too big");
        assert_eq!(e.status.as_u16(), 422);
        let e = SearchRequest::parse(&json!({"locationId": "l", "pageLimit": 500, "page": 21}))
            .expect_err("past 10k");
        assert_eq!(e.status.as_u16(), 400);
        SearchRequest::parse(&json!({"locationId": "l", "pageLimit": 500, "page": 20}))
            .expect("exactly 10k is fine");
    }

    #[test]
    fn search_after_walks_every_contact_once_in_both_directions() {
        let all: Vec<Contact> = (0..25)
            .map(|i| contact(&format!("c{i:02}"), 1000 + (i % 7), &[], None))
            .collect();
        for dir in ["asc", "desc"] {
            let mut seen = Vec::new();
            let mut cursor: Option<Value> = None;
            loop {
                let mut body = json!({"locationId": "loc", "pageLimit": 4,
                    "sort": [{"field": "dateAdded", "direction": dir}]});
                if let Some(c) = &cursor {
                    body["searchAfter"] = c.clone();
                }
                let (page, total) = run(all.iter().collect(), &req(body));
                assert_eq!(total, 25);
                if page.is_empty() {
                    break;
                }
                cursor = page.last().map(|(_, sa)| sa.clone());
                seen.extend(ids(&page));
            }
            let mut sorted = seen.clone();
            sorted.sort();
            sorted.dedup();
            assert_eq!(sorted.len(), 25, "{dir}: every contact exactly once");
            assert_eq!(seen.len(), 25);
        }
    }

    #[test]
    fn filters_groups_and_ranges() {
        let all = [
            contact("a", 1000, &["vip", "ekyte"], Some("a@x.io")),
            contact("b", 2000, &["ekyte"], Some("b@y.io")),
            contact("c", 3000, &[], None),
        ];
        let run_ids = |filters: Value| {
            let (page, _) = run(
                all.iter().collect(),
                &req(
                    json!({"locationId": "loc", "pageLimit": 10, "filters": filters,
                    "sort": [{"field": "dateAdded", "direction": "asc"}]}),
                ),
            );
            ids(&page)
        };
        assert_eq!(
            run_ids(json!([{"field": "tags", "operator": "eq", "value": "ekyte"}])),
            ["a", "b"]
        );
        assert_eq!(
            run_ids(json!([{"field": "tags", "operator": "not_eq", "value": "vip"}])),
            ["b", "c"]
        );
        assert_eq!(
            run_ids(json!([{"field": "email", "operator": "exists"}])),
            ["a", "b"]
        );
        assert_eq!(
            run_ids(json!([{"field": "email", "operator": "not_exists"}])),
            ["c"]
        );
        assert_eq!(
            run_ids(json!([{"field": "email", "operator": "contains", "value": "Y.IO"}])),
            ["b"]
        );
        assert_eq!(
            run_ids(json!([{"field": "dateAdded", "operator": "range",
                "value": {"gt": 1000, "lte": "1970-01-01T00:00:03.000Z"}}])),
            ["b", "c"]
        );
        assert_eq!(
            run_ids(json!([{"group": "OR", "filters": [
                {"field": "tags", "operator": "eq", "value": "vip"},
                {"field": "email", "operator": "not_exists"}]}])),
            ["a", "c"]
        );
        let e = SearchRequest::parse(&json!({"locationId": "l", "pageLimit": 1,
            "filters": [{"field": "nope", "operator": "eq", "value": 1}]}))
        .expect_err("unknown field");
        assert_eq!(e.status.as_u16(), 422);
        for bad in ["1970/01/01", "1970-01-01", "1970-01-01T00:00:03", "3000"] {
            let e = SearchRequest::parse(&json!({"locationId": "l", "pageLimit": 1,
                "filters": [{"field": "dateAdded", "operator": "range", "value": {"gte": bad}}]}))
            .expect_err(bad);
            assert_eq!(e.status.as_u16(), 422, "{bad}");
        }
    }
}
