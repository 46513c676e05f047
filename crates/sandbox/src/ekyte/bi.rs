//! Surface A: the public, read-only BI API (`/v1.x/...`, API.md §3).
//!
//! Guarantees: authentication is the company key in the `apiKey` query parameter only (the
//! `x-api-key` header of §2.1 is unconfirmed and refused); an unknown key answers HTTP 401 with
//! `error.code = "404"`; every list is the §3.1 envelope, 1-based `page`, fixed page size,
//! records in ascending id order; dates are zone-less company time. Nothing here writes.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Utc};
use serde_json::Value;

use super::model::{CompanyData, Situation, Task, TicketStatus};
use super::params::Params;
use super::state::Sim;
use super::store::SimError;
use super::traffic::bi_error;
use super::views::{View, paged};

pub(crate) fn routes() -> Router<Arc<Sim>> {
    Router::new()
        .route("/v1.0/workspaces", get(workspaces))
        .route("/v1.2/tasks", get(tasks_v12))
        .route("/v1.1/tasks", get(tasks_v11))
        .route("/v1.0/users", get(users))
        .route("/v1.0/task-types", get(task_types))
        .route("/v1.0/projects", get(projects))
        .route("/v1.1/projects", get(projects))
        .route("/v1.1/tickets", get(tickets))
        .route("/v1.0/time-trackings", get(time_trackings))
        .route("/v1.0/members", get(members))
        .route("/v1.0/insights", get(insights))
}

/// A page request after authentication.
struct Page<'a> {
    view: View<'a>,
    params: &'a Params,
    number: usize,
    size: usize,
}

/// Authenticate, then answer with what `list` builds (or the error envelope).
fn serve(
    sim: &Sim,
    raw: Option<String>,
    list: impl FnOnce(&Page<'_>) -> Result<Value, SimError>,
) -> Response {
    let params = Params::parse(raw.as_deref());
    let store = sim.read();
    let company = params
        .get("apiKey")
        .and_then(|key| store.company_by_key(key))
        .and_then(|id| store.company(id).ok());
    let Some(data) = company else {
        return (
            StatusCode::UNAUTHORIZED,
            Json(bi_error(401, "Chave de API inválida.")),
        )
            .into_response();
    };
    let settings = sim.settings();
    let number = match params.int("page") {
        Ok(p) => usize::try_from(p.unwrap_or(1)).unwrap_or(1).max(1),
        Err(e) => return bad_request(&e),
    };
    let page = Page {
        view: View {
            store: &store,
            data,
            tz: data.company.timezone,
            expose_external_id: settings.expose_external_id,
            date_only: settings.due_to_date_means,
        },
        params: &params,
        number,
        size: settings.page_size,
    };
    match list(&page) {
        Ok(v) => Json(v).into_response(),
        Err(e) => bad_request(&e),
    }
}

fn bad_request(e: &SimError) -> Response {
    (StatusCode::BAD_REQUEST, Json(bi_error(400, &e.text))).into_response()
}

async fn workspaces(State(sim): State<Arc<Sim>>, RawQuery(q): RawQuery) -> Response {
    serve(&sim, q, |pg| {
        let p = pg.params;
        let situation = p.int("situationId")?;
        let squad = p.int("squadId")?;
        let name = p.get("name");
        let rows: Vec<_> = pg
            .view
            .data
            .workspaces
            .values()
            .filter(|w| match situation {
                // situationId follows `active` (1/0); any other value matches nothing.
                Some(s) => i64::from(w.active) == s,
                None => true,
            })
            .filter(|w| squad.is_none() || w.squad_id == squad)
            .filter(|w| name.is_none_or(|n| super::text::contains_folded(&w.name, n)))
            .collect();
        Ok(paged(&rows, pg.number, pg.size, |w| pg.view.workspace(w)))
    })
}

async fn tasks_v12(State(sim): State<Arc<Sim>>, RawQuery(q): RawQuery) -> Response {
    serve(&sim, q, |pg| {
        let rows = filter_tasks(pg)?;
        let p = pg.params;
        let (comments, phases, checklist) = (
            p.flag("includeComments"),
            p.flag("includePhases"),
            p.flag("includeChecklist"),
        );
        Ok(paged(&rows, pg.number, pg.size, |t| {
            pg.view.task_v12(t, comments, phases, checklist)
        }))
    })
}

async fn tasks_v11(State(sim): State<Arc<Sim>>, RawQuery(q): RawQuery) -> Response {
    serve(&sim, q, |pg| {
        let rows = filter_tasks(pg)?;
        Ok(paged(&rows, pg.number, pg.size, |t| pg.view.task_flat(t)))
    })
}

async fn users(State(sim): State<Arc<Sim>>, RawQuery(q): RawQuery) -> Response {
    serve(&sim, q, |pg| {
        let rows: Vec<_> = pg
            .view
            .data
            .members
            .keys()
            .filter_map(|id| pg.view.store.user(*id))
            .collect();
        Ok(paged(
            &rows,
            pg.number,
            pg.size,
            |u| serde_json::json!({ "id": u.id, "userName": u.user_name, "email": u.email, "active": 1 }),
        ))
    })
}

async fn task_types(State(sim): State<Arc<Sim>>, RawQuery(q): RawQuery) -> Response {
    serve(&sim, q, |pg| {
        let rows: Vec<_> = pg.view.data.task_types.values().collect();
        Ok(paged(&rows, pg.number, pg.size, |t| pg.view.task_type(t)))
    })
}

async fn projects(State(sim): State<Arc<Sim>>, RawQuery(q): RawQuery) -> Response {
    serve(&sim, q, |pg| {
        let p = pg.params;
        let tz = pg.view.tz;
        let means = pg.view.date_only;
        let ws = p.int("workspaceId")?;
        let squad = p.int("squadId")?;
        let start = (
            p.bound("startFrom", tz, false, means)?,
            p.bound("startTo", tz, true, means)?,
        );
        let created = (
            p.bound("createdFrom", tz, false, means)?,
            p.bound("createdTo", tz, true, means)?,
        );
        let data = pg.view.data;
        let rows: Vec<_> = data
            .projects
            .values()
            .filter(|pr| ws.is_none_or(|w| pr.workspace_id == w))
            .filter(|pr| {
                squad.is_none()
                    || data
                        .workspaces
                        .get(&pr.workspace_id)
                        .and_then(|w| w.squad_id)
                        == squad
            })
            .filter(|pr| within(Some(pr.start_date), start))
            .filter(|pr| within(Some(pr.created_at), created))
            .collect();
        Ok(paged(&rows, pg.number, pg.size, |pr| pg.view.project(pr)))
    })
}

/// Tickets (API.md §3.2: `status`, `workspaceId`, `squadId`, `createdFrom`; `createdTo` is
/// accepted too, as on every other list with `createdFrom`). `status` absent or 0 means all, as
/// on tasks.
async fn tickets(State(sim): State<Arc<Sim>>, RawQuery(q): RawQuery) -> Response {
    serve(&sim, q, |pg| {
        let p = pg.params;
        let tz = pg.view.tz;
        let means = pg.view.date_only;
        let ws = p.int("workspaceId")?;
        let squad = p.int("squadId")?;
        let status = match p.int("status")? {
            None | Some(0) => None,
            Some(code) => {
                Some(TicketStatus::from_code(code).ok_or_else(|| SimError::bad_value("status"))?)
            }
        };
        let created = (
            p.bound("createdFrom", tz, false, means)?,
            p.bound("createdTo", tz, true, means)?,
        );
        let data = pg.view.data;
        let rows: Vec<_> = data
            .tickets
            .values()
            .filter(|t| ws.is_none_or(|w| t.workspace_id == w))
            .filter(|t| squad.is_none() || squad_of(data, t.workspace_id) == squad)
            .filter(|t| status.is_none_or(|s| t.status == s))
            .filter(|t| within(Some(t.created_at), created))
            .collect();
        Ok(paged(&rows, pg.number, pg.size, |t| pg.view.ticket_bi(t)))
    })
}

/// Time entries (API.md §3.2: `createdFrom`, `createdTo`, `workspaceId`, `squadId`). The
/// created range is on `createdIn`, when the entry was recorded, not on `startDate`.
async fn time_trackings(State(sim): State<Arc<Sim>>, RawQuery(q): RawQuery) -> Response {
    serve(&sim, q, |pg| {
        let p = pg.params;
        let tz = pg.view.tz;
        let means = pg.view.date_only;
        let ws = p.int("workspaceId")?;
        let squad = p.int("squadId")?;
        let created = (
            p.bound("createdFrom", tz, false, means)?,
            p.bound("createdTo", tz, true, means)?,
        );
        let data = pg.view.data;
        let rows: Vec<_> = data
            .time_trackings
            .values()
            .filter(|t| ws.is_none_or(|w| t.workspace_id == w))
            .filter(|t| squad.is_none() || squad_of(data, t.workspace_id) == squad)
            .filter(|t| within(Some(t.created_at), created))
            .collect();
        Ok(paged(&rows, pg.number, pg.size, |t| {
            pg.view.time_tracking(t)
        }))
    })
}

/// Company members with profile and workspaces (route seen, shape guessed; API.md §3.2).
async fn members(State(sim): State<Arc<Sim>>, RawQuery(q): RawQuery) -> Response {
    serve(&sim, q, |pg| {
        let rows: Vec<_> = pg.view.data.members.keys().copied().collect();
        Ok(paged(&rows, pg.number, pg.size, |u| pg.view.member(*u)))
    })
}

/// API.md names the route and nothing about its content, so the simulator serves an empty
/// list: a client gets the envelope, paging and errors of every list, and no invented data.
async fn insights(State(sim): State<Arc<Sim>>, RawQuery(q): RawQuery) -> Response {
    serve(&sim, q, |pg| {
        let rows: [Value; 0] = [];
        Ok(paged(&rows, pg.number, pg.size, Clone::clone))
    })
}

fn squad_of(data: &CompanyData, workspace: i64) -> Option<i64> {
    data.workspaces.get(&workspace).and_then(|w| w.squad_id)
}

type Range = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);

/// Inclusive range test; a record without the date never matches a bounded range.
fn within(t: Option<DateTime<Utc>>, (from, to): Range) -> bool {
    if from.is_none() && to.is_none() {
        return true;
    }
    let Some(t) = t else { return false };
    from.is_none_or(|f| t >= f) && to.is_none_or(|e| t <= e)
}

/// The `/v1.x/tasks` filters of API.md §3.2. `status` absent or 0 means every situation.
fn filter_tasks<'a>(pg: &Page<'a>) -> Result<Vec<&'a Task>, SimError> {
    let p = pg.params;
    let tz = pg.view.tz;
    let means = pg.view.date_only;
    let data = pg.view.data;
    let ws = p.int("workspaceId")?;
    let project = p.int("projectId")?;
    let task_type = p.int("taskTypeId")?;
    let phase = p.int("phaseId")?;
    let squad = p.int("squadId")?;
    let situation = match p.int("status")? {
        None | Some(0) => None,
        Some(code) => {
            Some(Situation::from_code(code).ok_or_else(|| SimError::bad_value("status"))?)
        }
    };
    let range = |from: &str, to: &str| -> Result<Range, SimError> {
        Ok((
            p.bound(from, tz, false, means)?,
            p.bound(to, tz, true, means)?,
        ))
    };
    let created = range("createdFrom", "createdTo")?;
    let due = range("dueFrom", "dueTo")?;
    let phase_date = range("phaseDateFrom", "phaseDateTo")?;
    let resolved = range("resolvedDateFrom", "resolvedDateTo")?;
    Ok(data
        .tasks
        .values()
        .filter(|t| ws.is_none_or(|w| t.workspace_id == w))
        .filter(|t| project.is_none() || t.project_id == project)
        .filter(|t| task_type.is_none_or(|x| t.task_type_id == x))
        .filter(|t| phase.is_none() || t.phase_id == phase)
        .filter(|t| situation.is_none_or(|s| t.situation == s))
        .filter(|t| {
            squad.is_none()
                || data
                    .workspaces
                    .get(&t.workspace_id)
                    .and_then(|w| w.squad_id)
                    == squad
        })
        .filter(|t| within(Some(t.creation_date), created))
        .filter(|t| within(t.current_due_date, due))
        .filter(|t| within(t.phase_due_date, phase_date))
        .filter(|t| within(t.resolved_date, resolved))
        .collect())
}
