//! Businesses ([B2], API.md §4.6). No webhooks exist for them (#330).

use std::collections::HashMap;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use serde_json::{Value, json};

use super::{Shared, created, json_body, number_query, ok, required_query, unit_result};
use crate::ghl::auth::AuthCtx;
use crate::ghl::error::ApiResult;
use crate::ghl::validate::BusinessPatch;

fn business_location(core: &Shared, ctx: &AuthCtx, id: &str) -> ApiResult<()> {
    let loc = core.store().business(id)?.location_id.clone();
    ctx.require_location(&loc)
}

/// `GET /businesses/{businessId}` → `{business}`.
pub async fn get_one(
    State(core): State<Shared>,
    Extension(ctx): Extension<AuthCtx>,
    Path(id): Path<String>,
) -> Response {
    unit_result((|| {
        let store = core.store();
        let b = store.business(&id)?;
        ctx.require_location(&b.location_id)?;
        Ok(ok(json!({"business": b.to_json()})))
    })())
}

/// `GET /businesses/?locationId&limit&skip` → `{businesses}` (oldest first).
pub async fn list(
    State(core): State<Shared>,
    Extension(ctx): Extension<AuthCtx>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    unit_result((|| {
        let loc_id = required_query(&q, "locationId")?.to_owned();
        let limit = number_query(&q, "limit", 100, None)? as usize;
        let skip = number_query(&q, "skip", 0, None)? as usize;
        ctx.require_location(&loc_id)?;
        let store = core.store();
        let loc = store.location(&loc_id)?;
        let mut all: Vec<_> = loc.businesses.values().collect();
        all.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        let page: Vec<Value> = all
            .iter()
            .skip(skip)
            .take(limit)
            .map(|b| b.to_json())
            .collect();
        Ok(ok(json!({"businesses": page})))
    })())
}

/// `POST /businesses/` → 201 `{success, buiseness}` (sic, [B2] `UpdateBusinessResponseDto`).
pub async fn create(
    State(core): State<Shared>,
    Extension(ctx): Extension<AuthCtx>,
    body: Bytes,
) -> Response {
    unit_result((|| {
        let patch = BusinessPatch::parse(&json_body(&body)?, true, false)?;
        let loc = patch.location_id.clone().unwrap_or_default();
        ctx.require_location(&loc)?;
        let b = core.write(|s, _| s.create_business(&loc, &patch))?;
        Ok(created(json!({"success": true, "buiseness": b.to_json()})))
    })())
}

/// `PUT /businesses/{businessId}` → `{success, buiseness}`.
pub async fn update(
    State(core): State<Shared>,
    Extension(ctx): Extension<AuthCtx>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    unit_result((|| {
        let patch = BusinessPatch::parse(&json_body(&body)?, false, false)?;
        business_location(&core, &ctx, &id)?;
        let b = core.write(|s, _| s.update_business(&id, &patch))?;
        Ok(ok(json!({"success": true, "buiseness": b.to_json()})))
    })())
}

/// `DELETE /businesses/{businessId}` → `{success}`.
pub async fn delete(
    State(core): State<Shared>,
    Extension(ctx): Extension<AuthCtx>,
    Path(id): Path<String>,
) -> Response {
    unit_result((|| {
        business_location(&core, &ctx, &id)?;
        core.write(|s, _| s.delete_business(&id))?;
        Ok(ok(json!({"success": true})))
    })())
}
