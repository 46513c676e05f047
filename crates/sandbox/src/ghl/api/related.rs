//! What hangs off a contact: tasks, notes, appointments ([C2], [CAL2]); plus the location-wide
//! task search and custom field catalogue ([LOC2]).

use std::collections::HashMap;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use serde_json::{Value, json};

use super::{Shared, contact_location, created, json_body, ok, succeeded, unit_result};
use crate::ghl::auth::AuthCtx;
use crate::ghl::error::ApiError;
use crate::ghl::model::Task;
use crate::ghl::validate::{Body, NotePatch, TaskPatch};

/// `GET /contacts/{contactId}/tasks` → `{tasks}` (no pagination, API.md §4.3).
pub async fn list_tasks(
    State(core): State<Shared>,
    Extension(ctx): Extension<AuthCtx>,
    Path(contact_id): Path<String>,
) -> Response {
    unit_result((|| {
        contact_location(&core, &ctx, &contact_id)?;
        let store = core.store();
        let tasks: Vec<Value> = store
            .tasks(&contact_id)?
            .iter()
            .map(|t| t.to_json())
            .collect();
        Ok(ok(json!({"tasks": tasks})))
    })())
}

pub async fn get_task(
    State(core): State<Shared>,
    Extension(ctx): Extension<AuthCtx>,
    Path((contact_id, task_id)): Path<(String, String)>,
) -> Response {
    unit_result((|| {
        contact_location(&core, &ctx, &contact_id)?;
        let store = core.store();
        Ok(ok(
            json!({"task": store.task(&contact_id, &task_id)?.to_json()}),
        ))
    })())
}

/// `POST /contacts/{contactId}/tasks` → 201 `{task}`; `title`, `dueDate`, `completed` required.
pub async fn create_task(
    State(core): State<Shared>,
    Extension(ctx): Extension<AuthCtx>,
    Path(contact_id): Path<String>,
    body: Bytes,
) -> Response {
    unit_result((|| {
        let patch = TaskPatch::parse(&json_body(&body)?, true, false)?;
        contact_location(&core, &ctx, &contact_id)?;
        let t = core.write(|s, ev| s.create_task(&contact_id, &patch, ev))?;
        Ok(created(json!({"task": t.to_json()})))
    })())
}

pub async fn update_task(
    State(core): State<Shared>,
    Extension(ctx): Extension<AuthCtx>,
    Path((contact_id, task_id)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    unit_result((|| {
        let patch = TaskPatch::parse(&json_body(&body)?, false, false)?;
        contact_location(&core, &ctx, &contact_id)?;
        let t = core.write(|s, ev| s.update_task(&contact_id, &task_id, &patch, ev))?;
        Ok(ok(json!({"task": t.to_json()})))
    })())
}

/// `PUT /contacts/{contactId}/tasks/{taskId}/completed` `{completed}` → `{task}`.
pub async fn complete_task(
    State(core): State<Shared>,
    Extension(ctx): Extension<AuthCtx>,
    Path((contact_id, task_id)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    unit_result((|| {
        let v = json_body(&body)?;
        let mut b = Body::new(&v, &["completed"])?;
        let completed = b.req_bool("completed");
        b.finish()?;
        let patch = TaskPatch {
            completed,
            ..TaskPatch::default()
        };
        contact_location(&core, &ctx, &contact_id)?;
        let t = core.write(|s, ev| s.update_task(&contact_id, &task_id, &patch, ev))?;
        Ok(ok(json!({"task": t.to_json()})))
    })())
}

pub async fn delete_task(
    State(core): State<Shared>,
    Extension(ctx): Extension<AuthCtx>,
    Path((contact_id, task_id)): Path<(String, String)>,
) -> Response {
    unit_result((|| {
        contact_location(&core, &ctx, &contact_id)?;
        core.write(|s, ev| s.delete_task(&contact_id, &task_id, ev))?;
        Ok(ok(succeeded()))
    })())
}

/// `GET /contacts/{contactId}/notes` → `{notes}` (no pagination, API.md §4.4).
pub async fn list_notes(
    State(core): State<Shared>,
    Extension(ctx): Extension<AuthCtx>,
    Path(contact_id): Path<String>,
) -> Response {
    unit_result((|| {
        contact_location(&core, &ctx, &contact_id)?;
        let store = core.store();
        let notes: Vec<Value> = store
            .notes(&contact_id)?
            .iter()
            .map(|n| n.to_json())
            .collect();
        Ok(ok(json!({"notes": notes})))
    })())
}

pub async fn get_note(
    State(core): State<Shared>,
    Extension(ctx): Extension<AuthCtx>,
    Path((contact_id, note_id)): Path<(String, String)>,
) -> Response {
    unit_result((|| {
        contact_location(&core, &ctx, &contact_id)?;
        let store = core.store();
        Ok(ok(
            json!({"note": store.note(&contact_id, &note_id)?.to_json()}),
        ))
    })())
}

pub async fn create_note(
    State(core): State<Shared>,
    Extension(ctx): Extension<AuthCtx>,
    Path(contact_id): Path<String>,
    body: Bytes,
) -> Response {
    unit_result((|| {
        let patch = NotePatch::parse(&json_body(&body)?, true, false)?;
        contact_location(&core, &ctx, &contact_id)?;
        let n = core.write(|s, ev| s.create_note(&contact_id, &patch, ev))?;
        Ok(created(json!({"note": n.to_json()})))
    })())
}

pub async fn update_note(
    State(core): State<Shared>,
    Extension(ctx): Extension<AuthCtx>,
    Path((contact_id, note_id)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    unit_result((|| {
        let patch = NotePatch::parse(&json_body(&body)?, false, false)?;
        contact_location(&core, &ctx, &contact_id)?;
        let n = core.write(|s, ev| s.update_note(&contact_id, &note_id, &patch, ev))?;
        Ok(ok(json!({"note": n.to_json()})))
    })())
}

pub async fn delete_note(
    State(core): State<Shared>,
    Extension(ctx): Extension<AuthCtx>,
    Path((contact_id, note_id)): Path<(String, String)>,
) -> Response {
    unit_result((|| {
        contact_location(&core, &ctx, &contact_id)?;
        core.write(|s, ev| s.delete_note(&contact_id, &note_id, ev))?;
        Ok(ok(succeeded()))
    })())
}

/// `GET /contacts/{contactId}/appointments` → `{events}` with `YYYY-MM-DD HH:mm:ss` times.
pub async fn contact_appointments(
    State(core): State<Shared>,
    Extension(ctx): Extension<AuthCtx>,
    Path(contact_id): Path<String>,
) -> Response {
    unit_result((|| {
        contact_location(&core, &ctx, &contact_id)?;
        let store = core.store();
        let (list, tz) = store.contact_appointments(&contact_id)?;
        let events: Vec<Value> = list.iter().map(|a| a.to_contact_json(tz)).collect();
        Ok(ok(json!({"events": events})))
    })())
}

/// `GET /calendars/events/appointments/{eventId}` (Version 2021-04-15) → `{event}`.
pub async fn get_appointment(
    State(core): State<Shared>,
    Extension(ctx): Extension<AuthCtx>,
    Path(event_id): Path<String>,
) -> Response {
    unit_result((|| {
        let store = core.store();
        let (a, tz) = store.appointment(&event_id)?;
        ctx.require_location(&a.location_id)?;
        Ok(ok(json!({"event": a.to_calendar_json(tz)})))
    })())
}

/// `GET /calendars/?locationId` (Version 2021-04-15, scope `calendars.readonly`) →
/// `{calendars}` ([CAL2] `CalendarDTO`, the fields the simulator knows).
pub async fn list_calendars(
    State(core): State<Shared>,
    Extension(ctx): Extension<AuthCtx>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    unit_result((|| {
        let loc_id = super::required_query(&q, "locationId")?.to_owned();
        ctx.require_location(&loc_id)?;
        let store = core.store();
        let calendars: Vec<Value> = store
            .calendars(&loc_id)?
            .into_iter()
            .map(|id| json!({"id": id, "locationId": loc_id, "name": id, "isActive": true}))
            .collect();
        Ok(ok(json!({"calendars": calendars})))
    })())
}

/// `GET /calendars/events?locationId&calendarId&startTime&endTime` (Version 2021-04-15, scope
/// `calendars/events.readonly`) → `{events}` ([CAL2] `CalendarEventDTO`). Times are epoch
/// milliseconds as strings; one of `calendarId`, `userId`, `groupId` is required (the
/// simulator serves `calendarId`). Events whose start falls in the range are returned (the
/// documents do not say whether an event overlapping the start counts: it does not here).
pub async fn calendar_events(
    State(core): State<Shared>,
    Extension(ctx): Extension<AuthCtx>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    unit_result((|| {
        let loc_id = super::required_query(&q, "locationId")?.to_owned();
        let millis = |name: &str| -> Result<chrono::DateTime<chrono::Utc>, ApiError> {
            let raw = super::required_query(&q, name)?;
            raw.parse::<i64>()
                .ok()
                .and_then(chrono::DateTime::from_timestamp_millis)
                .ok_or_else(|| {
                    ApiError::unprocessable(vec![format!("{name} must be a time in milliseconds")])
                })
        };
        let (from, to) = (millis("startTime")?, millis("endTime")?);
        let Some(calendar) = q.get("calendarId").filter(|c| !c.is_empty()) else {
            return Err(if q.contains_key("userId") || q.contains_key("groupId") {
                ApiError::unprocessable(vec![
                    "the simulator serves calendar events by calendarId only".to_owned(),
                ])
            } else {
                ApiError::unprocessable(vec![
                    "Either of calendarId, userId or groupId is required".to_owned(),
                ])
            });
        };
        ctx.require_location(&loc_id)?;
        let store = core.store();
        let (list, tz) = store.calendar_events(&loc_id, calendar, from, to)?;
        let events: Vec<Value> = list.iter().map(|a| a.to_calendar_json(tz)).collect();
        Ok(ok(json!({"events": events})))
    })())
}

/// `POST /locations/{locationId}/tasks/search` ([LOC2] `TaskSearchParamsDto`) → `{tasks}`.
/// The spec types `tasks` as an array of arrays; the simulator answers task objects
/// (assumption: the spec's item type is a generator slip).
pub async fn search_location_tasks(
    State(core): State<Shared>,
    Extension(ctx): Extension<AuthCtx>,
    Path(location_id): Path<String>,
    body: Bytes,
) -> Response {
    unit_result((|| {
        let v = json_body(&body)?;
        let mut b = Body::new(
            &v,
            &[
                "contactId",
                "completed",
                "assignedTo",
                "query",
                "limit",
                "skip",
                "businessId",
            ],
        )?;
        let contact_ids = b.opt_str_array("contactId");
        let completed = b.opt_bool("completed");
        let assigned = b.opt_str_array("assignedTo");
        let query = b.opt_str("query").flatten().map(|q| q.to_lowercase());
        let limit = b.opt_u64("limit").unwrap_or(25) as usize;
        let skip = b.opt_u64("skip").unwrap_or(0) as usize;
        let business = b.opt_str("businessId").flatten();
        b.finish()?;
        ctx.require_location(&location_id)?;
        let store = core.store();
        let loc = store.location(&location_id)?;
        let mut tasks: Vec<&Task> = loc
            .tasks
            .values()
            .flatten()
            .filter(|t| {
                contact_ids
                    .as_ref()
                    .is_none_or(|ids| ids.contains(&t.contact_id))
            })
            .filter(|t| completed.is_none_or(|c| t.completed == c))
            .filter(|t| {
                assigned
                    .as_ref()
                    .is_none_or(|a| t.assigned_to.as_ref().is_some_and(|x| a.contains(x)))
            })
            .filter(|t| {
                query.as_ref().is_none_or(|q| {
                    t.title.to_lowercase().contains(q)
                        || t.body
                            .as_ref()
                            .is_some_and(|b| b.to_lowercase().contains(q))
                })
            })
            .filter(|t| {
                business.as_ref().is_none_or(|bid| {
                    loc.contacts
                        .get(&t.contact_id)
                        .is_some_and(|c| c.business_id.as_ref() == Some(bid))
                })
            })
            .collect();
        tasks.sort_by(|a, b| a.date_added.cmp(&b.date_added).then(a.id.cmp(&b.id)));
        let page: Vec<Value> = tasks
            .iter()
            .skip(skip)
            .take(limit)
            .map(|t| t.to_search_json())
            .collect();
        Ok(ok(json!({"tasks": page})))
    })())
}

/// `GET /locations/{locationId}` → `{location}` ([LOC2] `GetLocationByIdSuccessfulResponseDto`):
/// a location token for that location, or a Company token of the location's company (the
/// spec names both `Location-Access` and `Agency-Access`).
pub async fn get_location(
    State(core): State<Shared>,
    Extension(ctx): Extension<AuthCtx>,
    Path(location_id): Path<String>,
) -> Response {
    unit_result((|| {
        let store = core.store();
        let loc = store.location(&location_id)?;
        match ctx.location_id() {
            Some(_) => ctx.require_location(&location_id)?,
            None if ctx.company_id == loc.info.company_id => {}
            None => return Err(ApiError::wrong_location()),
        }
        Ok(ok(json!({"location": loc.info.to_json()})))
    })())
}

/// `GET /locations/{locationId}/customFields?model=` → `{customFields}` ([LOC2]).
pub async fn custom_fields(
    State(core): State<Shared>,
    Extension(ctx): Extension<AuthCtx>,
    Path(location_id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    unit_result((|| {
        if let Some(m) = q.get("model")
            && !matches!(m.as_str(), "contact" | "opportunity" | "all")
        {
            return Err(ApiError::unprocessable(vec![
                "model must be one of the following values: contact, opportunity, all".to_owned(),
            ]));
        }
        ctx.require_location(&location_id)?;
        let store = core.store();
        let loc = store.location(&location_id)?;
        let fields: Vec<Value> = if q.get("model").is_some_and(|m| m == "opportunity") {
            Vec::new()
        } else {
            loc.custom_fields
                .iter()
                .enumerate()
                .map(|(i, d)| d.to_json(&location_id, i))
                .collect()
        };
        Ok(ok(json!({"customFields": fields})))
    })())
}
