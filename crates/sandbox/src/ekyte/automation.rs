//! Surface B: the automation API of eKyte's Zapier and n8n integrations (API.md §4).
//!
//! Served twice with identical behaviour: under `/n8n` (reads at `/n8n/polling/<path>`, writes
//! at `/n8n/<path>`, as eKyte's n8n node calls it) and under `/zapier` (reads and writes at
//! `/zapier/<path>`, as eKyte's server controller routes it).
//!
//! Guarantees: every request needs `apiKey` and `CompanyId` (query) naming the same company,
//! else HTTP 401 with an empty body (SRV: `return Unauthorized()`); writes and the
//! notifications read also need a `UserEmail` of a member of that company, refused the same way
//! on both (`{ "Id", "Text" }`, 400/404). Reads are bare JSON arrays; the "recent" ones cover
//! the last 15 minutes of the simulated clock (§4.1), so a client that polls less often misses
//! events, as it would against eKyte. Writes take PascalCase bodies, return `{ "<Kind>Id": n }`,
//! and fail with HTTP 400/404 and `{ "Id", "Text" }`. There is no update, delete, comment or
//! search route, because eKyte has none on this surface.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use chrono::{DateTime, Duration, Utc};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::dates::ParsedDate;
use super::model::{CompanyData, Profile};
use super::params::{Fields, Params};
use super::seed::{NewBoard, NewNote, NewProject, NewTask, NewTicket, NewWorkspace};
use super::state::Sim;
use super::store::{SimError, Store};
use super::text::automation_description;
use super::views::View;

pub(crate) fn routes() -> Router<Arc<Sim>> {
    let mut table: BTreeMap<String, MethodRouter<Arc<Sim>>> = BTreeMap::new();
    for (reads, writes) in [("/n8n/polling", "/n8n"), ("/zapier", "/zapier")] {
        let mut add = |path: String, route: MethodRouter<Arc<Sim>>| {
            let slot = table.remove(&path).unwrap_or_default();
            table.insert(path, slot.merge(route));
        };
        add(format!("{reads}/auth"), get(auth));
        add(format!("{reads}/tasks"), get(poll_tasks));
        add(format!("{reads}/v2/tasks"), get(poll_tasks_v2));
        add(format!("{reads}/workspaces"), get(poll_workspaces));
        add(format!("{reads}/boards"), get(poll_boards));
        add(
            format!("{reads}/projects/created"),
            get(poll_projects_created),
        );
        add(
            format!("{reads}/tickets/concluded"),
            get(poll_tickets_concluded),
        );
        add(
            format!("{reads}/tickets/changes"),
            get(poll_tickets_changes),
        );
        add(format!("{reads}/notifications"), get(poll_notifications));
        add(format!("{writes}/tasks"), post(post_task));
        add(format!("{writes}/workspaces"), post(post_workspace));
        add(format!("{writes}/boards"), post(post_board));
        add(format!("{writes}/notes"), post(post_note));
        add(format!("{writes}/projects"), post(post_project));
        add(format!("{writes}/tickets"), post(post_ticket));
    }
    table
        .into_iter()
        .fold(Router::new(), |r, (path, route)| r.route(&path, route))
}

fn unauthorized() -> Response {
    StatusCode::UNAUTHORIZED.into_response()
}

fn refuse(e: &SimError) -> Response {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
    (status, Json(json!({ "Id": e.id, "Text": e.text }))).into_response()
}

/// `apiKey` → company, which must equal `CompanyId` (SRV `CurrentCompanyId != auth.CompanyId`).
fn authenticate(store: &Store, p: &Params) -> Option<i64> {
    let company = store.company_by_key(p.get("apiKey")?)?;
    let claimed = p.get("CompanyId")?.parse::<i64>().ok()?;
    (claimed == company).then_some(company)
}

// ----- reads ---------------------------------------------------------------------------------

/// Run a read with the company's view and the start of the polling window.
fn read(
    sim: &Sim,
    raw: Option<String>,
    list: impl FnOnce(&View<'_>, DateTime<Utc>) -> Value,
) -> Response {
    read_with(sim, raw, |v, _, since| Ok(list(v, since)))
}

/// [`read`] for lists that read more of the query and may refuse with `{ "Id", "Text" }`.
fn read_with(
    sim: &Sim,
    raw: Option<String>,
    list: impl FnOnce(&View<'_>, &Params, DateTime<Utc>) -> Result<Value, SimError>,
) -> Response {
    let p = Params::parse(raw.as_deref());
    let store = sim.read();
    let Some(data) = authenticate(&store, &p).and_then(|c| store.company(c).ok()) else {
        return unauthorized();
    };
    let settings = sim.settings();
    let window = Duration::seconds(i64::try_from(settings.polling_window_secs).unwrap_or(0));
    let view = View {
        store: &store,
        data,
        tz: data.company.timezone,
        expose_external_id: settings.expose_external_id,
        date_only: settings.due_to_date_means,
    };
    match list(&view, &p, sim.now() - window) {
        Ok(v) => Json(v).into_response(),
        Err(e) => refuse(&e),
    }
}

async fn auth(State(sim): State<Arc<Sim>>, RawQuery(q): RawQuery) -> Response {
    let p = Params::parse(q.as_deref());
    match authenticate(&sim.read(), &p) {
        Some(company) => Json(json!({ "CompanyId": company })).into_response(),
        None => unauthorized(),
    }
}

/// "Triggers when task is changed": tasks whose change clock is inside the window.
async fn poll_tasks(State(sim): State<Arc<Sim>>, RawQuery(q): RawQuery) -> Response {
    read(&sim, q, |v, since| {
        v.data
            .tasks
            .values()
            .filter(|t| t.updated_at >= since)
            .map(|t| v.task_flat(t))
            .collect()
    })
}

/// "Triggers when task is created or has a phase changed".
async fn poll_tasks_v2(State(sim): State<Arc<Sim>>, RawQuery(q): RawQuery) -> Response {
    read(&sim, q, |v, since| {
        v.data
            .tasks
            .values()
            .filter(|t| t.creation_date >= since || t.phase_changed_at >= since)
            .map(|t| v.task_flat(t))
            .collect()
    })
}

/// Active workspaces as `{id, name}` (the n8n node's typing); not windowed: it feeds pickers.
async fn poll_workspaces(State(sim): State<Arc<Sim>>, RawQuery(q): RawQuery) -> Response {
    read(&sim, q, |v, _| {
        v.data
            .workspaces
            .values()
            .filter(|w| w.active)
            .map(|w| json!({ "id": w.id, "name": w.name }))
            .collect()
    })
}

/// All boards; not windowed.
async fn poll_boards(State(sim): State<Arc<Sim>>, RawQuery(q): RawQuery) -> Response {
    read(&sim, q, |v, _| {
        v.data
            .boards
            .values()
            .map(|b| json!({ "id": b.id, "title": b.title, "workspaceId": b.workspace_id }))
            .collect()
    })
}

async fn poll_projects_created(State(sim): State<Arc<Sim>>, RawQuery(q): RawQuery) -> Response {
    read(&sim, q, |v, since| {
        v.data
            .projects
            .values()
            .filter(|p| p.created_at >= since)
            .map(|p| v.project(p))
            .collect()
    })
}

async fn poll_tickets_concluded(State(sim): State<Arc<Sim>>, RawQuery(q): RawQuery) -> Response {
    read(&sim, q, |v, since| {
        v.data
            .tickets
            .values()
            .filter(|t| t.concluded_at.is_some_and(|c| c >= since))
            .map(|t| v.ticket(t))
            .collect()
    })
}

async fn poll_tickets_changes(State(sim): State<Arc<Sim>>, RawQuery(q): RawQuery) -> Response {
    read(&sim, q, |v, since| {
        v.data
            .tickets
            .values()
            .filter(|t| t.updated_at >= since)
            .map(|t| v.ticket(t))
            .collect()
    })
}

/// SRV `GetZapierNotificationsAsync(companyId, userId)`: the notifications of the `UserEmail`
/// person created inside the window. The person is resolved like a write's `UserEmail` (same
/// errors, same order: 401 before anything else), since the server method needs a user id.
async fn poll_notifications(State(sim): State<Arc<Sim>>, RawQuery(q): RawQuery) -> Response {
    let notify_actor = sim.settings().notify_actor;
    read_with(&sim, q, |v, p, since| {
        let (user, _) = resolve_user(v.store, v.data.company.id, p.get("UserEmail"))?;
        Ok(v.data
            .notifications
            .values()
            .filter(|n| n.user_id == user && n.created_at >= since)
            .filter(|n| notify_actor || n.created_by != Some(user))
            .map(|n| v.notification(n))
            .collect())
    })
}

/// `UserEmail` → a member of `company` and their profile, with the writes' errors: absent →
/// 400 (required), unknown → 404, not a member → 400.
fn resolve_user(
    store: &Store,
    company: i64,
    email: Option<&str>,
) -> Result<(Uuid, Profile), SimError> {
    let email = email.ok_or_else(|| SimError::required("UserEmail"))?;
    let user = store
        .user_by_email(email)
        .map(|u| u.id)
        .ok_or_else(SimError::user_not_found)?;
    let profile = store
        .company(company)
        .ok()
        .and_then(|d| d.profile(user))
        .ok_or_else(SimError::user_not_in_company)?;
    Ok((user, profile))
}

// ----- writes --------------------------------------------------------------------------------

/// An authenticated write: the company, the acting user and the body's fields.
struct Write<'a> {
    sim: &'a Sim,
    company: i64,
    user: Uuid,
    profile: Profile,
    fields: Fields<'a>,
}

/// Authenticate, parse the PascalCase body, resolve `UserEmail` (body first, then query), then
/// run `act` under the store's write lock.
fn write(
    sim: &Sim,
    raw: Option<String>,
    body: &Bytes,
    id_name: &str,
    act: impl FnOnce(&mut Store, &Write<'_>) -> Result<i64, SimError>,
) -> Response {
    let p = Params::parse(raw.as_deref());
    let mut store = sim.write();
    let Some(company) = authenticate(&store, &p) else {
        return unauthorized();
    };
    let parsed: Result<Map<String, Value>, _> = if body.iter().all(u8::is_ascii_whitespace) {
        Ok(Map::new())
    } else {
        serde_json::from_slice(body)
    };
    let object = match parsed {
        Ok(o) => o,
        Err(e) => return refuse(&SimError::bad_body(e)),
    };
    let fields = Fields(&object);
    let email = match fields.text("UserEmail") {
        Ok(e) => e,
        Err(e) => return refuse(&e),
    };
    let (user, profile) =
        match resolve_user(&store, company, email.as_deref().or(p.get("UserEmail"))) {
            Ok(found) => found,
            Err(e) => return refuse(&e),
        };
    let w = Write {
        sim,
        company,
        user,
        profile,
        fields,
    };
    match act(&mut store, &w) {
        Ok(id) => Json(json!({ id_name: id })).into_response(),
        Err(e) => refuse(&e),
    }
}

impl Write<'_> {
    fn data<'s>(&self, store: &'s Store) -> Result<&'s CompanyData, SimError> {
        store.company(self.company)
    }

    /// A date field in company time; a zoned value is accepted but counted.
    fn date(&self, store: &Store, name: &str) -> Result<Option<ParsedDate>, SimError> {
        let tz = self.data(store)?.company.timezone;
        let d = self.fields.date(name, tz)?;
        if d.is_some_and(|d| d.zoned) {
            self.sim.counters.bump("zoned_date_input");
        }
        Ok(d)
    }

    fn require_workspace_access(&self, store: &Store, ws: i64) -> Result<(), SimError> {
        let data = self.data(store)?;
        let w = data
            .workspaces
            .get(&ws)
            .ok_or_else(SimError::workspace_not_found)?;
        if data.can_see_workspace(self.user, w) {
            Ok(())
        } else {
            Err(SimError::no_workspace_access())
        }
    }
}

/// SRV `PostTask`. The assignee cannot be chosen: the executor chain decides.
async fn post_task(State(sim): State<Arc<Sim>>, RawQuery(q): RawQuery, body: Bytes) -> Response {
    write(&sim, q, &body, "TaskId", |store, w| {
        let f = w.fields;
        let title = f
            .text("Title")?
            .ok_or_else(|| SimError::required("Title"))?;
        let due = w
            .date(store, "CurrentDueDate")?
            .ok_or_else(|| SimError::required("CurrentDueDate"))?;
        let task_type = f
            .int("CtcTaskTypeId")?
            .ok_or_else(|| SimError::required("CtcTaskTypeId"))?;
        let ws = f
            .int("WorkspaceId")?
            .ok_or_else(|| SimError::required("WorkspaceId"))?;
        let data = w.data(store)?;
        if w.profile == Profile::Guest {
            return Err(SimError::guests_cannot_create_tasks());
        }
        if data.company.only_admins_create_tasks && !w.profile.is_admin() {
            return Err(SimError::only_admins_create_tasks());
        }
        w.require_workspace_access(store, ws)?;
        if !data.task_types.contains_key(&task_type) {
            return Err(SimError::task_type_not_found());
        }
        let project = f.int("CtcTaskProjectId")?;
        if let Some(pid) = project {
            let p = data
                .projects
                .get(&pid)
                .ok_or_else(SimError::project_not_found)?;
            if p.workspace_id != ws {
                return Err(SimError::project_not_in_workspace());
            }
        }
        let priority_group = f.int("PriorityGroup")?.unwrap_or(0);
        if !(0..=100).contains(&priority_group) {
            return Err(SimError::bad_value("PriorityGroup"));
        }
        let phase_start = w.date(store, "PhaseStartDate")?;
        let now = w.sim.now();
        if f.bool("PlanTask")? == Some(false) {
            let pid = project.ok_or_else(SimError::unplanned_needs_project)?;
            return store.add_unplanned_project_task(
                w.company,
                pid,
                task_type,
                title,
                Some(w.user),
                now,
            );
        }
        let mut task = NewTask::new(ws, task_type, &title);
        task.description = f
            .str("Description")?
            .map(|d| automation_description(&d))
            .unwrap_or_default();
        task.project_id = project;
        task.current_due_date = Some(due.instant);
        task.phase_start_date = phase_start.map(|d| d.instant);
        task.priority_group = priority_group;
        task.quantity = f.int("Quantity")?.unwrap_or(1);
        task.estimated_time = f.int("EstimatedTime")?;
        task.created_by = Some(w.user);
        store.add_task(w.company, task, &BTreeMap::new(), now)
    })
}

/// SRV `PostWorkspace`: admins and owners only; the creator becomes a member.
async fn post_workspace(
    State(sim): State<Arc<Sim>>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Response {
    write(&sim, q, &body, "WorkspaceId", |store, w| {
        let f = w.fields;
        let name = f.text("Name")?.ok_or_else(|| SimError::required("Name"))?;
        if !w.profile.is_admin() {
            return Err(SimError::only_admins_create_workspaces());
        }
        let ws = NewWorkspace {
            name,
            description: f.str("Description")?,
            active: f.bool("Active")?.unwrap_or(true),
            external_id: f.str("ExternalId")?,
            squad_id: f.int("SquadId")?,
            created_by: Some(w.user),
            ..NewWorkspace::default()
        };
        store.add_workspace(w.company, ws, w.sim.now())
    })
}

async fn post_board(State(sim): State<Arc<Sim>>, RawQuery(q): RawQuery, body: Bytes) -> Response {
    write(&sim, q, &body, "BoardId", |store, w| {
        let f = w.fields;
        let title = f
            .text("Title")?
            .ok_or_else(|| SimError::required("Title"))?;
        let ws = f.int("WorkspaceId")?;
        if let Some(ws) = ws {
            w.require_workspace_access(store, ws)?;
        }
        let board = NewBoard {
            title,
            description: f.str("Description")?,
            workspace_id: ws,
            categories: Vec::new(),
            created_by: Some(w.user),
        };
        store.add_board(w.company, board, w.sim.now())
    })
}

/// Notes live on boards (`PlanId`); `Category` is matched case/accent-insensitively and
/// created when missing (API.md §4.2).
async fn post_note(State(sim): State<Arc<Sim>>, RawQuery(q): RawQuery, body: Bytes) -> Response {
    write(&sim, q, &body, "NoteId", |store, w| {
        let f = w.fields;
        let board = f
            .int("PlanId")?
            .ok_or_else(|| SimError::required("PlanId"))?;
        let note = NewNote {
            board_id: board,
            title: f.str("Title")?.unwrap_or_default(),
            description: f.str("Description")?,
            content: f.str("Content")?.unwrap_or_default(),
            category: f.text("Category")?,
            created_by: Some(w.user),
        };
        store.add_note(w.company, note, w.sim.now())
    })
}

async fn post_project(State(sim): State<Arc<Sim>>, RawQuery(q): RawQuery, body: Bytes) -> Response {
    write(&sim, q, &body, "ProjectId", |store, w| {
        let f = w.fields;
        let name = f.text("Name")?.ok_or_else(|| SimError::required("Name"))?;
        let data = w.data(store)?;
        // API.md §4.2: falls back to the user's default / first workspace.
        let ws = match f.int("WorkspaceId")? {
            Some(ws) => {
                w.require_workspace_access(store, ws)?;
                ws
            }
            None => data
                .workspaces
                .values()
                .find(|x| x.active && data.can_see_workspace(w.user, x))
                .map(|x| x.id)
                .ok_or_else(SimError::workspace_not_found)?,
        };
        let project = NewProject {
            workspace_id: ws,
            name,
            alias: f.text("Alias")?,
            description: f.str("Description")?,
            start_date: w.date(store, "StartDate")?.map(|d| d.instant),
            end_date: None,
            tags: f
                .str("Tags")?
                .map(|t| {
                    t.split('|')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
            created_by: Some(w.user),
        };
        store.add_project(w.company, project, w.sim.now())
    })
}

async fn post_ticket(State(sim): State<Arc<Sim>>, RawQuery(q): RawQuery, body: Bytes) -> Response {
    write(&sim, q, &body, "TicketId", |store, w| {
        let f = w.fields;
        let ws = f
            .int("WorkspaceId")?
            .ok_or_else(|| SimError::required("WorkspaceId"))?;
        let requester = f
            .text("RequesterEmail")?
            .ok_or_else(|| SimError::required("RequesterEmail"))?;
        let ticket = NewTicket {
            workspace_id: ws,
            project_id: f.int("ProjectId")?,
            subject: f.str("Subject")?.unwrap_or_default(),
            message: f.str("Message")?.unwrap_or_default(),
            // API.md §4.2: enum, default `Request`; the simulator numbers Request as 1.
            ticket_type: f.int("TicketType")?.unwrap_or(1),
            requester_email: requester,
            cc: f
                .str("UsersCC")?
                .map(|s| s.split(',').map(|e| e.trim().to_owned()).collect())
                .unwrap_or_default(),
            priority_group: f.int("PriorityGroup")?.unwrap_or(0),
            expect_due_date: w.date(store, "ExpectDueDate")?.map(|d| d.instant),
            created_by: Some(w.user),
        };
        store.add_ticket(w.company, ticket, w.sim.now())
    })
}
