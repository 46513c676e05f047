//! Contacts, tags, search, duplicate lookup and contacts of a business ([C2], API.md §4.1,
//! §4.2, §5, §6).

use std::collections::HashMap;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use serde_json::{Value, json};

use super::{
    Shared, contact_location, created, json_body, number_query, ok, required_query, succeeded,
    trace_id, unit_result,
};
use crate::ghl::auth::AuthCtx;
use crate::ghl::config::SearchCursor;
use crate::ghl::error::{ApiError, ApiResult};
use crate::ghl::model::Contact;
use crate::ghl::search::{self, SearchRequest};
use crate::ghl::validate::{Body, ContactDto, ContactPatch};

/// `GET /contacts/{contactId}` → `{contact}`.
pub async fn get_one(
    State(core): State<Shared>,
    Extension(ctx): Extension<AuthCtx>,
    Path(id): Path<String>,
) -> Response {
    unit_result((|| {
        let store = core.store();
        let c = store.contact(&id)?;
        ctx.require_location(&c.location_id)?;
        Ok(ok(json!({"contact": Value::Object(c.to_json())})))
    })())
}

/// `POST /contacts/` → 201 `{contact: CreateContactSchema}`.
pub async fn create(
    State(core): State<Shared>,
    Extension(ctx): Extension<AuthCtx>,
    body: Bytes,
) -> Response {
    unit_result((|| {
        let patch = ContactPatch::parse(&json_body(&body)?, ContactDto::Create)?;
        let loc = patch.location_id.clone().unwrap_or_default();
        ctx.require_location(&loc)?;
        let c = core.write(|s, ev| s.create_contact(&loc, &patch, ev))?;
        Ok(created(json!({"contact": c.to_create_json()})))
    })())
}

/// `PUT /contacts/{contactId}` → `{succeded, contact}`.
pub async fn update(
    State(core): State<Shared>,
    Extension(ctx): Extension<AuthCtx>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    unit_result((|| {
        let patch = ContactPatch::parse(&json_body(&body)?, ContactDto::Update)?;
        contact_location(&core, &ctx, &id)?;
        let c = core.write(|s, ev| s.update_contact(&id, &patch, ev))?;
        Ok(ok(
            json!({"succeded": true, "contact": Value::Object(c.to_json())}),
        ))
    })())
}

/// `DELETE /contacts/{contactId}` → `{succeded}`.
pub async fn delete(
    State(core): State<Shared>,
    Extension(ctx): Extension<AuthCtx>,
    Path(id): Path<String>,
) -> Response {
    unit_result((|| {
        contact_location(&core, &ctx, &id)?;
        core.write(|s, ev| s.delete_contact(&id, ev))?;
        Ok(ok(succeeded()))
    })())
}

/// `POST /contacts/upsert` → `{new, contact, traceId}`.
pub async fn upsert(
    State(core): State<Shared>,
    Extension(ctx): Extension<AuthCtx>,
    body: Bytes,
) -> Response {
    unit_result((|| {
        let patch = ContactPatch::parse(&json_body(&body)?, ContactDto::Upsert)?;
        let loc = patch.location_id.clone().unwrap_or_default();
        ctx.require_location(&loc)?;
        let (new, c) = core.write(|s, ev| s.upsert_contact(&loc, &patch, ev))?;
        Ok(ok(json!({
            "new": new,
            "contact": Value::Object(c.to_json()),
            "traceId": trace_id(),
        })))
    })())
}

/// `GET /contacts/` (deprecated): oldest first, `limit` ≤ 100, cursor `startAfter` (epoch ms of
/// `dateAdded`) + `startAfterId`, `meta` as `ContactsMetaSchema`.
pub async fn list(
    State(core): State<Shared>,
    Extension(ctx): Extension<AuthCtx>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    unit_result((|| {
        let loc_id = required_query(&q, "locationId")?.to_owned();
        let limit = number_query(&q, "limit", 20, Some(100))?.max(1) as usize;
        let start_after = match q.get("startAfter").filter(|v| !v.is_empty()) {
            Some(v) => Some(v.parse::<i64>().map_err(|_| {
                ApiError::unprocessable(vec![
                    "startAfter must be a number conforming to the specified constraints"
                        .to_owned(),
                ])
            })?),
            None => None,
        };
        let start_after_id = q.get("startAfterId").cloned().unwrap_or_default();
        let query = q.get("query").filter(|v| !v.is_empty()).cloned();
        ctx.require_location(&loc_id)?;
        let store = core.store();
        let loc = store.location(&loc_id)?;
        let all: Vec<&Contact> = loc
            .contacts_by_date_added()
            .into_iter()
            .filter(|c| {
                query
                    .as_deref()
                    .is_none_or(|qq| search::query_matches(qq, c))
            })
            .collect();
        let total = all.len();
        let start = match start_after {
            Some(ms) => all.partition_point(|c| {
                let t = c.date_added.timestamp_millis();
                t < ms
                    || (t == ms
                        && (start_after_id.is_empty() || c.id.as_str() <= start_after_id.as_str()))
            }),
            None => 0,
        };
        let page: Vec<&Contact> = all.iter().skip(start).take(limit).copied().collect();
        let current = start / limit + 1;
        let mut meta = json!({
            "total": total,
            "currentPage": current,
            "prevPage": if current > 1 { json!(current - 1) } else { Value::Null },
        });
        if start + page.len() < total
            && let Some(last) = page.last()
        {
            let ms = last.date_added.timestamp_millis();
            meta["startAfter"] = json!(ms);
            meta["startAfterId"] = json!(last.id);
            meta["nextPage"] = json!(current + 1);
            meta["nextPageUrl"] = json!(format!(
                "{}/contacts/?locationId={}&startAfter={}&startAfterId={}&limit={}",
                core.base_url(),
                loc_id,
                ms,
                last.id,
                limit
            ));
        } else {
            meta["nextPage"] = Value::Null;
        }
        Ok(ok(json!({
            "contacts": page.iter().map(|c| c.to_list_json()).collect::<Vec<_>>(),
            "count": total,
            "meta": meta,
        })))
    })())
}

/// `POST /contacts/search` → `{contacts, total, traceId}`; each contact carries its
/// `searchAfter` cursor only under `GhlConfig::search_cursor = per_hit`.
pub async fn search(
    State(core): State<Shared>,
    Extension(ctx): Extension<AuthCtx>,
    body: Bytes,
) -> Response {
    unit_result((|| {
        let req = SearchRequest::parse(&json_body(&body)?)?;
        ctx.require_location(&req.location_id)?;
        let mut store = core.store();
        let per_hit = store.search_cursor() == SearchCursor::PerHit;
        let loc = store.location_mut(&req.location_id)?;
        let (page, total) = search::run(loc.searchable(), &req);
        let contacts: Vec<Value> = page
            .into_iter()
            .map(|(c, cursor)| {
                let mut m = c.to_json();
                if per_hit {
                    m.insert("searchAfter".into(), cursor);
                }
                Value::Object(m)
            })
            .collect();
        Ok(ok(
            json!({"contacts": contacts, "total": total, "traceId": trace_id()}),
        ))
    })())
}

/// `GET /contacts/search/duplicate?locationId&number&email` → `{contact}` or
/// `{contact: null}` (the spec has no response schema; assumption). Email is looked up first,
/// then the phone ([C2] description).
pub async fn duplicate(
    State(core): State<Shared>,
    Extension(ctx): Extension<AuthCtx>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    unit_result((|| {
        let loc_id = required_query(&q, "locationId")?.to_owned();
        ctx.require_location(&loc_id)?;
        let email = q.get("email").map(|s| s.trim()).filter(|s| !s.is_empty());
        // `+` must arrive as %2B; a raw `+` decodes to a space and the lookup misses, as in GHL.
        let number = q.get("number").map(|s| s.trim()).filter(|s| !s.is_empty());
        if email.is_none() && number.is_none() {
            return Err(ApiError::unprocessable(vec![
                "email or number should not be empty".to_owned(),
            ]));
        }
        let store = core.store();
        let loc = store.location(&loc_id)?;
        let found = email
            .and_then(|e| loc.find_by_email(e, None))
            .or_else(|| number.and_then(|n| loc.find_by_phone(n, None)));
        Ok(ok(json!({
            "contact": found.map(|c| Value::Object(c.to_json())),
            "traceId": trace_id(),
        })))
    })())
}

/// `GET /contacts/business/{businessId}?locationId&limit&skip&query` → `{contacts, count}`.
pub async fn by_business(
    State(core): State<Shared>,
    Extension(ctx): Extension<AuthCtx>,
    Path(business_id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    unit_result((|| {
        let loc_id = required_query(&q, "locationId")?.to_owned();
        let limit = number_query(&q, "limit", 25, Some(100))? as usize;
        let skip = number_query(&q, "skip", 0, None)? as usize;
        let query = q.get("query").filter(|v| !v.is_empty()).cloned();
        ctx.require_location(&loc_id)?;
        let store = core.store();
        let loc = store.location(&loc_id)?;
        let all: Vec<&Contact> = loc
            .contacts_by_date_added()
            .into_iter()
            .filter(|c| c.business_id.as_deref() == Some(business_id.as_str()))
            .filter(|c| {
                query
                    .as_deref()
                    .is_none_or(|qq| search::query_matches(qq, c))
            })
            .collect();
        Ok(ok(json!({
            "contacts": all.iter().skip(skip).take(limit).map(|c| c.to_list_json()).collect::<Vec<_>>(),
            "count": all.len(),
        })))
    })())
}

fn tags_body(body: &Bytes) -> ApiResult<Vec<String>> {
    let v = json_body(body)?;
    let mut b = Body::new(&v, &["tags"])?;
    let tags = b.opt_str_array("tags");
    if !b.has("tags") {
        b.error("tags should not be empty".to_owned());
        b.error("tags must be an array".to_owned());
    }
    b.finish()?;
    Ok(tags.unwrap_or_default())
}

/// `POST /contacts/{contactId}/tags` `{tags}` → 201 `{tags}` (the contact's tags after).
pub async fn add_tags(
    State(core): State<Shared>,
    Extension(ctx): Extension<AuthCtx>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    unit_result((|| {
        let tags = tags_body(&body)?;
        contact_location(&core, &ctx, &id)?;
        let after = core.write(|s, ev| s.change_tags(&id, &tags, true, ev))?;
        Ok(created(json!({"tags": after})))
    })())
}

/// `DELETE /contacts/{contactId}/tags` with a JSON body `{tags}` → `{tags}`.
pub async fn remove_tags(
    State(core): State<Shared>,
    Extension(ctx): Extension<AuthCtx>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    unit_result((|| {
        let tags = tags_body(&body)?;
        contact_location(&core, &ctx, &id)?;
        let after = core.write(|s, ev| s.change_tags(&id, &tags, false, ev))?;
        Ok(ok(json!({"tags": after})))
    })())
}
