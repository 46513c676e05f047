//! Driving the simulator from outside: seed data, act as a person in eKyte's web app, read
//! counters, set faults and limits, move the clock, dump a company.
//!
//! [`EkyteControl`] is the Rust API; the `/_control/...` HTTP routes are the same operations as
//! JSON, for the demo and for tests in other processes. The control routes sit outside the
//! traffic layer: never rate-limited, faulted or counted. Bulk routes take one record or an
//! array and hold the store's write lock once for the whole batch; a failing record stops the
//! batch there (earlier ones stay) and the error names its `index`.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post, put};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

use super::config::{RateLimitConfig, RuntimeSettings};
use super::model::{
    Company, CompanyDump, Note, Notification, Profile, Situation, Task, TicketStatus, Workflow,
    Workspace,
};
use super::seed::{
    DefaultCompany, NewBoard, NewComment, NewCompany, NewNote, NewNotification, NewPhase,
    NewProject, NewSquad, NewTask, NewTaskType, NewTicket, NewTimeTracking, NewUser, NewWorkflow,
    NewWorkspace, NoteEdit, SeededUser, TaskEdit, WorkspaceEdit,
};
use super::state::Sim;
use super::store::{SimError, Store, random_hex64};
use crate::common::{CounterSnapshot, Counters, FaultConfig, Faults};

/// Runtime knobs the control API may change while the server runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SettingsPatch {
    pub page_size: Option<usize>,
    pub polling_window_secs: Option<u64>,
    pub mcp_list_tasks_max: Option<usize>,
    pub mcp_prefer_sse: Option<bool>,
    pub expose_external_id: Option<bool>,
    pub notify_actor: Option<bool>,
    pub due_to_date_means: Option<super::config::DateOnlyMeans>,
    pub mcp_update: Option<super::config::McpUpdate>,
    pub mcp_arguments: Option<super::config::McpArguments>,
    pub mcp_current_user: Option<super::config::CurrentUserShape>,
    pub mcp_update_ignores_situation: Option<bool>,
}

/// The simulator's control surface as direct calls. Cheap to clone; all clones drive the same
/// simulator.
#[derive(Debug, Clone)]
pub struct EkyteControl {
    pub(crate) sim: Arc<Sim>,
}

impl EkyteControl {
    fn with<T>(&self, f: impl FnOnce(&mut Store, DateTime<Utc>) -> T) -> T {
        let now = self.sim.now();
        f(&mut self.sim.write(), now)
    }

    // ----- observation and knobs -------------------------------------------------------------

    /// The shared request counters (`snapshot()`, `reset()`).
    pub fn counters(&self) -> &Counters {
        &self.sim.counters
    }

    /// The shared fault injector (`set(FaultConfig)`, `config()`).
    pub fn faults(&self) -> &Faults {
        &self.sim.faults
    }

    pub fn set_rate_limit(&self, limit: Option<RateLimitConfig>) {
        self.sim.limiter.set(limit);
    }

    pub fn rate_limit(&self) -> Option<RateLimitConfig> {
        self.sim.limiter.config()
    }

    pub fn settings(&self) -> RuntimeSettings {
        self.sim.settings()
    }

    pub fn update_settings(&self, patch: SettingsPatch) {
        self.sim.update_settings(|s| {
            if let Some(v) = patch.page_size {
                s.page_size = v.max(1);
            }
            if let Some(v) = patch.polling_window_secs {
                s.polling_window_secs = v;
            }
            if let Some(v) = patch.mcp_list_tasks_max {
                s.mcp_list_tasks_max = v.max(1);
            }
            if let Some(v) = patch.mcp_prefer_sse {
                s.mcp_prefer_sse = v;
            }
            if let Some(v) = patch.expose_external_id {
                s.expose_external_id = v;
            }
            if let Some(v) = patch.notify_actor {
                s.notify_actor = v;
            }
            if let Some(v) = patch.due_to_date_means {
                s.due_to_date_means = v;
            }
            if let Some(v) = patch.mcp_update {
                s.mcp_update = v;
            }
            if let Some(v) = patch.mcp_arguments {
                s.mcp_arguments = v;
            }
            if let Some(v) = patch.mcp_current_user {
                s.mcp_current_user = v;
            }
            if let Some(v) = patch.mcp_update_ignores_situation {
                s.mcp_update_ignores_situation = v;
            }
        });
    }

    pub fn set_mcp_prefer_sse(&self, on: bool) {
        self.update_settings(SettingsPatch {
            mcp_prefer_sse: Some(on),
            ..SettingsPatch::default()
        });
    }

    /// The simulated now (UTC): real time plus every [`Self::advance_clock`].
    pub fn now(&self) -> DateTime<Utc> {
        self.sim.now()
    }

    /// Move the simulated clock forward (polling windows, creation dates, …).
    pub fn advance_clock(&self, by: std::time::Duration) {
        self.sim.clock.advance(by);
    }

    // ----- reads -------------------------------------------------------------------------------

    pub fn company_ids(&self) -> Vec<i64> {
        self.sim.read().company_ids()
    }

    /// A company's whole state, for field-by-field comparison.
    pub fn dump(&self, company: i64) -> Result<CompanyDump, SimError> {
        self.sim.read().dump(company)
    }

    /// How many workspaces and tasks `company` holds (cheap, for progress polling).
    pub fn sizes(&self, company: i64) -> (usize, usize) {
        let store = self.sim.read();
        store
            .company(company)
            .map(|d| (d.workspaces.len(), d.tasks.len()))
            .unwrap_or_default()
    }

    pub fn task(&self, company: i64, id: i64) -> Option<Task> {
        let store = self.sim.read();
        store.company(company).ok()?.tasks.get(&id).cloned()
    }

    pub fn workspace(&self, company: i64, id: i64) -> Option<Workspace> {
        let store = self.sim.read();
        store.company(company).ok()?.workspaces.get(&id).cloned()
    }

    pub fn note(&self, company: i64, id: i64) -> Option<Note> {
        let store = self.sim.read();
        store.company(company).ok()?.notes.get(&id).cloned()
    }

    /// Every notification of `user` in `company`, oldest first, whether or not the polling
    /// window or the `notify_actor` setting would serve it.
    pub fn notifications(&self, company: i64, user: Uuid) -> Result<Vec<Notification>, SimError> {
        let store = self.sim.read();
        Ok(store
            .notifications_of(company, user)?
            .into_iter()
            .cloned()
            .collect())
    }

    /// Tasks of `company` whose title contains `needle` (a person searching the task list).
    pub fn tasks_titled(&self, company: i64, needle: &str) -> Vec<Task> {
        let store = self.sim.read();
        store
            .company(company)
            .map(|d| {
                d.tasks
                    .values()
                    .filter(|t| t.title.contains(needle))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Workspaces whose `ExternalId` equals `external_id` (eKyte does not keep it unique).
    pub fn workspaces_by_external_id(&self, company: i64, external_id: &str) -> Vec<Workspace> {
        let store = self.sim.read();
        store
            .company(company)
            .map(|d| {
                d.workspaces
                    .values()
                    .filter(|w| w.external_id.as_deref() == Some(external_id))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    // ----- seeding -----------------------------------------------------------------------------

    pub fn create_company(&self, c: NewCompany) -> Result<Company, SimError> {
        self.with(|s, _| s.create_company(c))
    }

    pub fn create_user(&self, company: i64, u: NewUser) -> Result<Uuid, SimError> {
        self.with(|s, _| s.add_user(company, u))
    }

    pub fn create_squad(&self, company: i64, sq: NewSquad) -> Result<i64, SimError> {
        self.with(|s, _| s.add_squad(company, sq))
    }

    /// Returns the workflow with its phase ids, in order.
    pub fn create_workflow(&self, company: i64, w: NewWorkflow) -> Result<Workflow, SimError> {
        self.with(|s, _| s.add_workflow(company, w))
    }

    pub fn create_task_type(&self, company: i64, t: NewTaskType) -> Result<i64, SimError> {
        self.with(|s, _| s.add_task_type(company, t))
    }

    /// Company-level team: who executes `phase` when neither task type nor workspace says.
    pub fn set_company_phase_member(
        &self,
        company: i64,
        phase: i64,
        user: Option<Uuid>,
    ) -> Result<(), SimError> {
        self.with(|s, _| s.set_company_phase_member(company, phase, user))
    }

    /// A workspace, as a person creates it in the web app (or seeded with `created_at`).
    pub fn create_workspace(&self, company: i64, w: NewWorkspace) -> Result<i64, SimError> {
        self.with(|s, now| s.add_workspace(company, w, now))
    }

    pub fn add_workspace_member(
        &self,
        company: i64,
        workspace: i64,
        user: Uuid,
    ) -> Result<(), SimError> {
        self.with(|s, _| s.add_workspace_member(company, workspace, user))
    }

    /// A task, as a person creates it in the web app (executor may be chosen) or seeded.
    pub fn create_task(&self, company: i64, t: NewTask) -> Result<i64, SimError> {
        self.with(|s, now| s.add_task(company, t, &Default::default(), now))
    }

    pub fn create_comment(&self, company: i64, c: NewComment) -> Result<i64, SimError> {
        self.with(|s, now| s.add_comment(company, c, now))
    }

    pub fn create_project(&self, company: i64, p: NewProject) -> Result<i64, SimError> {
        self.with(|s, now| s.add_project(company, p, now))
    }

    pub fn create_board(&self, company: i64, b: NewBoard) -> Result<i64, SimError> {
        self.with(|s, now| s.add_board(company, b, now))
    }

    pub fn create_note(&self, company: i64, n: NewNote) -> Result<i64, SimError> {
        self.with(|s, now| s.add_note(company, n, now))
    }

    pub fn create_ticket(&self, company: i64, t: NewTicket) -> Result<i64, SimError> {
        self.with(|s, now| s.add_ticket(company, t, now))
    }

    /// A notification beyond those the simulator sends itself (task created, commented,
    /// reassigned; ticket assigned).
    pub fn create_notification(&self, company: i64, n: NewNotification) -> Result<i64, SimError> {
        self.with(|s, now| s.add_notification(company, n, now))
    }

    /// A time entry; it adds its effort to the task's `actualTime`.
    pub fn create_time_tracking(&self, company: i64, t: NewTimeTracking) -> Result<i64, SimError> {
        self.with(|s, now| s.add_time_tracking(company, t, now))
    }

    // ----- a person acting in the web app --------------------------------------------------

    pub fn edit_workspace(
        &self,
        company: i64,
        workspace: i64,
        e: WorkspaceEdit,
    ) -> Result<bool, SimError> {
        self.with(|s, now| s.edit_workspace(company, workspace, e, now))
    }

    pub fn rename_workspace(
        &self,
        company: i64,
        workspace: i64,
        name: &str,
    ) -> Result<bool, SimError> {
        self.edit_workspace(
            company,
            workspace,
            WorkspaceEdit {
                name: Some(name.to_owned()),
                ..WorkspaceEdit::default()
            },
        )
    }

    pub fn set_workspace_active(
        &self,
        company: i64,
        workspace: i64,
        active: bool,
    ) -> Result<bool, SimError> {
        self.edit_workspace(
            company,
            workspace,
            WorkspaceEdit {
                active: Some(active),
                ..WorkspaceEdit::default()
            },
        )
    }

    pub fn deactivate_workspace(&self, company: i64, workspace: i64) -> Result<bool, SimError> {
        self.set_workspace_active(company, workspace, false)
    }

    /// Returns whether anything changed.
    pub fn edit_task(&self, company: i64, task: i64, e: TaskEdit) -> Result<bool, SimError> {
        self.with(|s, now| s.edit_task(company, task, e, None, now))
    }

    pub fn set_task_situation(
        &self,
        company: i64,
        task: i64,
        situation: Situation,
    ) -> Result<bool, SimError> {
        self.edit_task(
            company,
            task,
            TaskEdit {
                situation: Some(situation),
                ..TaskEdit::default()
            },
        )
    }

    pub fn complete_task(&self, company: i64, task: i64) -> Result<bool, SimError> {
        self.set_task_situation(company, task, Situation::Completed)
    }

    pub fn cancel_task(&self, company: i64, task: i64) -> Result<bool, SimError> {
        self.set_task_situation(company, task, Situation::Cancelled)
    }

    pub fn move_task_phase(
        &self,
        company: i64,
        task: i64,
        phase: i64,
        executor: Option<Uuid>,
    ) -> Result<(), SimError> {
        self.with(|s, now| s.move_task_phase(company, task, phase, executor, None, now))
    }

    /// A comment typed in the task timeline by `author`.
    pub fn add_comment(
        &self,
        company: i64,
        task: i64,
        author: Option<Uuid>,
        html: &str,
    ) -> Result<i64, SimError> {
        self.create_comment(
            company,
            NewComment {
                task_id: task,
                description: html.to_owned(),
                author_id: author,
                created_at: None,
            },
        )
    }

    pub fn edit_note(
        &self,
        company: i64,
        note: i64,
        e: NoteEdit,
        by: Option<Uuid>,
    ) -> Result<bool, SimError> {
        self.with(|s, now| s.edit_note(company, note, e, by, now))
    }

    pub fn set_ticket_status(
        &self,
        company: i64,
        ticket: i64,
        status: TicketStatus,
    ) -> Result<(), SimError> {
        self.with(|s, now| s.set_ticket_status(company, ticket, status, now))
    }

    // ----- one-call setup ------------------------------------------------------------------

    /// A ready company: owner with an MCP token, an editor, a three-phase workflow
    /// ("Briefing" → "Produção" → "Revisão"), a task type whose first phase defaults to the
    /// editor, and one workspace with both as members. Time zone `America/Sao_Paulo`.
    pub fn seed_default_company(&self) -> Result<DefaultCompany, SimError> {
        self.with(|s, now| {
            let company = s.create_company(NewCompany {
                name: "Agência Demo".into(),
                ..NewCompany::default()
            })?;
            let c = company.id;
            let tag = c.to_string();
            let admin = SeededUser {
                id: Uuid::new_v4(),
                email: format!("admin+{tag}@agencia.example"),
                user_name: "Ana Admin".into(),
                mcp_token: Some(random_hex64()),
            };
            let editor = SeededUser {
                id: Uuid::new_v4(),
                email: format!("editor+{tag}@agencia.example"),
                user_name: "Edu Editor".into(),
                mcp_token: None,
            };
            for (u, profile) in [(&admin, Profile::Owner), (&editor, Profile::Editor)] {
                s.add_user(
                    c,
                    NewUser {
                        id: Some(u.id),
                        user_name: u.user_name.clone(),
                        email: u.email.clone(),
                        profile,
                        mcp_token: u.mcp_token.clone(),
                    },
                )?;
            }
            let wf = s.add_workflow(
                c,
                NewWorkflow {
                    name: "Fluxo padrão".into(),
                    active: true,
                    phases: ["Briefing", "Produção", "Revisão"]
                        .into_iter()
                        .map(NewPhase::named)
                        .collect(),
                },
            )?;
            let phase_ids: Vec<i64> = wf.phases.iter().map(|p| p.id).collect();
            let task_type_id = s.add_task_type(
                c,
                NewTaskType {
                    name: "Tarefa".into(),
                    workflow_id: wf.id,
                    active: true,
                    group: None,
                    default_executors: [(phase_ids[0], editor.id)].into(),
                },
            )?;
            let workspace_id = s.add_workspace(
                c,
                NewWorkspace {
                    name: "Cliente Demo".into(),
                    members: vec![admin.id, editor.id],
                    created_by: Some(admin.id),
                    ..NewWorkspace::default()
                },
                now,
            )?;
            Ok(DefaultCompany {
                company_id: c,
                api_key: company.api_key,
                timezone: company.timezone.name().to_owned(),
                admin,
                editor,
                workflow_id: wf.id,
                phase_ids,
                task_type_id,
                workspace_id,
            })
        })
    }
}

// ----- HTTP ----------------------------------------------------------------------------------

type Ctl = State<EkyteControl>;

pub(crate) fn routes(control: EkyteControl) -> Router {
    Router::new()
        .route(
            "/_control/health",
            get(|| async { Json(json!({ "ok": true })) }),
        )
        .route("/_control/counters", get(counters))
        .route("/_control/counters/reset", post(reset_counters))
        .route("/_control/faults", get(get_faults).put(put_faults))
        .route(
            "/_control/rate-limit",
            get(get_rate_limit).put(put_rate_limit),
        )
        .route("/_control/settings", get(get_settings).put(put_settings))
        .route("/_control/clock", get(clock))
        .route("/_control/clock/advance", post(advance_clock))
        .route("/_control/seed-default", post(seed_default))
        .route("/_control/companies", get(companies).post(create_company))
        .route("/_control/companies/{c}/dump", get(dump))
        .route("/_control/companies/{c}/users", post(bulk_users))
        .route("/_control/companies/{c}/squads", post(bulk_squads))
        .route("/_control/companies/{c}/workflows", post(bulk_workflows))
        .route("/_control/companies/{c}/task-types", post(bulk_task_types))
        .route(
            "/_control/companies/{c}/phase-team/{phase}",
            put(phase_team),
        )
        .route("/_control/companies/{c}/workspaces", post(bulk_workspaces))
        .route(
            "/_control/companies/{c}/workspaces/{w}",
            patch(edit_workspace),
        )
        .route(
            "/_control/companies/{c}/workspaces/{w}/rename",
            post(rename_workspace),
        )
        .route(
            "/_control/companies/{c}/workspaces/{w}/deactivate",
            post(deactivate_workspace),
        )
        .route(
            "/_control/companies/{c}/workspaces/{w}/activate",
            post(activate_workspace),
        )
        .route(
            "/_control/companies/{c}/workspaces/{w}/members",
            post(add_member),
        )
        .route("/_control/companies/{c}/tasks", post(bulk_tasks))
        .route(
            "/_control/companies/{c}/tasks/{t}",
            get(get_task).patch(edit_task),
        )
        .route(
            "/_control/companies/{c}/tasks/{t}/complete",
            post(complete_task),
        )
        .route(
            "/_control/companies/{c}/tasks/{t}/cancel",
            post(cancel_task),
        )
        .route("/_control/companies/{c}/tasks/{t}/pause", post(pause_task))
        .route(
            "/_control/companies/{c}/tasks/{t}/reopen",
            post(reopen_task),
        )
        .route("/_control/companies/{c}/tasks/{t}/phase", post(move_phase))
        .route(
            "/_control/companies/{c}/tasks/{t}/comments",
            post(add_comment),
        )
        .route("/_control/companies/{c}/comments", post(bulk_comments))
        .route("/_control/companies/{c}/projects", post(bulk_projects))
        .route("/_control/companies/{c}/boards", post(bulk_boards))
        .route("/_control/companies/{c}/notes", post(bulk_notes))
        .route("/_control/companies/{c}/notes/{n}", patch(edit_note))
        .route("/_control/companies/{c}/tickets", post(bulk_tickets))
        .route(
            "/_control/companies/{c}/tickets/{t}/status",
            post(ticket_status),
        )
        .route(
            "/_control/companies/{c}/notifications",
            post(bulk_notifications),
        )
        .route(
            "/_control/companies/{c}/users/{u}/notifications",
            get(user_notifications),
        )
        .route(
            "/_control/companies/{c}/time-trackings",
            post(bulk_time_trackings),
        )
        .with_state(control)
}

fn fail(e: &SimError, index: Option<usize>) -> Response {
    let status = match e.kind {
        super::store::ErrorKind::NotFound => StatusCode::NOT_FOUND,
        _ => StatusCode::BAD_REQUEST,
    };
    (status, Json(json!({ "error": e, "index": index }))).into_response()
}

fn answer<T: Serialize>(r: Result<T, SimError>) -> Response {
    match r {
        Ok(v) => Json(v).into_response(),
        Err(e) => fail(&e, None),
    }
}

/// One record or an array of them.
#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany<T> {
    Many(Vec<T>),
    One(T),
}

impl<T> OneOrMany<T> {
    fn into_vec(self) -> Vec<T> {
        match self {
            Self::Many(v) => v,
            Self::One(t) => vec![t],
        }
    }
}

/// Parse a bulk body by hand so a bad record is reported with the simulator's error shape.
fn parse_bulk<T: DeserializeOwned>(body: Value) -> Result<Vec<T>, SimError> {
    serde_json::from_value::<OneOrMany<T>>(body)
        .map(OneOrMany::into_vec)
        .map_err(SimError::bad_body)
}

fn bulk<T: DeserializeOwned, R: Serialize>(
    ctl: &EkyteControl,
    body: Value,
    mut each: impl FnMut(&mut Store, T, DateTime<Utc>) -> Result<R, SimError>,
) -> Response {
    let records = match parse_bulk::<T>(body) {
        Ok(r) => r,
        Err(e) => return fail(&e, None),
    };
    ctl.with(|store, now| {
        let mut ids = Vec::with_capacity(records.len());
        for (i, r) in records.into_iter().enumerate() {
            match each(store, r, now) {
                Ok(id) => ids.push(id),
                Err(e) => return fail(&e, Some(i)),
            }
        }
        Json(json!({ "ids": ids })).into_response()
    })
}

async fn counters(State(ctl): Ctl) -> Json<CounterSnapshot> {
    Json(ctl.counters().snapshot())
}

async fn reset_counters(State(ctl): Ctl) -> StatusCode {
    ctl.counters().reset();
    StatusCode::NO_CONTENT
}

async fn get_faults(State(ctl): Ctl) -> Json<FaultConfig> {
    Json(ctl.faults().config())
}

async fn put_faults(State(ctl): Ctl, Json(cfg): Json<FaultConfig>) -> StatusCode {
    ctl.faults().set(cfg);
    StatusCode::NO_CONTENT
}

async fn get_rate_limit(State(ctl): Ctl) -> Json<Option<RateLimitConfig>> {
    Json(ctl.rate_limit())
}

async fn put_rate_limit(State(ctl): Ctl, Json(limit): Json<Option<RateLimitConfig>>) -> StatusCode {
    ctl.set_rate_limit(limit);
    StatusCode::NO_CONTENT
}

async fn get_settings(State(ctl): Ctl) -> Json<RuntimeSettings> {
    Json(ctl.settings())
}

async fn put_settings(State(ctl): Ctl, Json(patch): Json<SettingsPatch>) -> StatusCode {
    ctl.update_settings(patch);
    StatusCode::NO_CONTENT
}

async fn clock(State(ctl): Ctl) -> Json<Value> {
    Json(json!({ "now": ctl.now(), "offset_secs": ctl.sim.clock.offset().as_secs_f64() }))
}

#[derive(Deserialize)]
struct Advance {
    seconds: f64,
}

async fn advance_clock(State(ctl): Ctl, Json(a): Json<Advance>) -> Response {
    if !a.seconds.is_finite() || a.seconds < 0.0 {
        return fail(&SimError::bad_value("seconds"), None);
    }
    ctl.advance_clock(std::time::Duration::from_secs_f64(a.seconds));
    Json(json!({ "now": ctl.now() })).into_response()
}

async fn seed_default(State(ctl): Ctl) -> Response {
    answer(ctl.seed_default_company())
}

async fn companies(State(ctl): Ctl) -> Json<Vec<i64>> {
    Json(ctl.company_ids())
}

async fn create_company(State(ctl): Ctl, Json(c): Json<NewCompany>) -> Response {
    answer(ctl.create_company(c))
}

async fn dump(State(ctl): Ctl, Path(c): Path<i64>) -> Response {
    answer(ctl.dump(c))
}

async fn bulk_users(State(ctl): Ctl, Path(c): Path<i64>, Json(b): Json<Value>) -> Response {
    bulk(&ctl, b, |s, u: NewUser, _| s.add_user(c, u))
}

async fn bulk_squads(State(ctl): Ctl, Path(c): Path<i64>, Json(b): Json<Value>) -> Response {
    bulk(&ctl, b, |s, q: NewSquad, _| s.add_squad(c, q))
}

async fn bulk_workflows(State(ctl): Ctl, Path(c): Path<i64>, Json(b): Json<Value>) -> Response {
    let records = match parse_bulk::<NewWorkflow>(b) {
        Ok(r) => r,
        Err(e) => return fail(&e, None),
    };
    ctl.with(|s, _| {
        let mut out = Vec::new();
        for (i, w) in records.into_iter().enumerate() {
            match s.add_workflow(c, w) {
                Ok(wf) => out.push(wf),
                Err(e) => return fail(&e, Some(i)),
            }
        }
        let ids: Vec<i64> = out.iter().map(|w| w.id).collect();
        let phase_ids: Vec<Vec<i64>> = out
            .iter()
            .map(|w| w.phases.iter().map(|p| p.id).collect())
            .collect();
        Json(json!({ "ids": ids, "phase_ids": phase_ids })).into_response()
    })
}

async fn bulk_task_types(State(ctl): Ctl, Path(c): Path<i64>, Json(b): Json<Value>) -> Response {
    bulk(&ctl, b, |s, t: NewTaskType, _| s.add_task_type(c, t))
}

#[derive(Deserialize)]
struct UserRef {
    user_id: Option<Uuid>,
}

async fn phase_team(
    State(ctl): Ctl,
    Path((c, phase)): Path<(i64, i64)>,
    Json(u): Json<UserRef>,
) -> Response {
    answer(ctl.set_company_phase_member(c, phase, u.user_id))
}

async fn bulk_workspaces(State(ctl): Ctl, Path(c): Path<i64>, Json(b): Json<Value>) -> Response {
    bulk(&ctl, b, |s, w: NewWorkspace, now| {
        s.add_workspace(c, w, now)
    })
}

async fn edit_workspace(
    State(ctl): Ctl,
    Path((c, w)): Path<(i64, i64)>,
    Json(e): Json<WorkspaceEdit>,
) -> Response {
    answer(
        ctl.edit_workspace(c, w, e)
            .map(|changed| json!({ "changed": changed })),
    )
}

#[derive(Deserialize)]
struct Rename {
    name: String,
}

async fn rename_workspace(
    State(ctl): Ctl,
    Path((c, w)): Path<(i64, i64)>,
    Json(r): Json<Rename>,
) -> Response {
    answer(
        ctl.rename_workspace(c, w, &r.name)
            .map(|changed| json!({ "changed": changed })),
    )
}

async fn deactivate_workspace(State(ctl): Ctl, Path((c, w)): Path<(i64, i64)>) -> Response {
    answer(
        ctl.set_workspace_active(c, w, false)
            .map(|changed| json!({ "changed": changed })),
    )
}

async fn activate_workspace(State(ctl): Ctl, Path((c, w)): Path<(i64, i64)>) -> Response {
    answer(
        ctl.set_workspace_active(c, w, true)
            .map(|changed| json!({ "changed": changed })),
    )
}

async fn add_member(
    State(ctl): Ctl,
    Path((c, w)): Path<(i64, i64)>,
    Json(u): Json<UserRef>,
) -> Response {
    let Some(user) = u.user_id else {
        return fail(&SimError::required("user_id"), None);
    };
    answer(ctl.add_workspace_member(c, w, user))
}

async fn bulk_tasks(State(ctl): Ctl, Path(c): Path<i64>, Json(b): Json<Value>) -> Response {
    bulk(&ctl, b, |s, t: NewTask, now| {
        s.add_task(c, t, &Default::default(), now)
    })
}

async fn get_task(State(ctl): Ctl, Path((c, t)): Path<(i64, i64)>) -> Response {
    answer(ctl.task(c, t).ok_or_else(SimError::task_not_found))
}

async fn edit_task(
    State(ctl): Ctl,
    Path((c, t)): Path<(i64, i64)>,
    Json(e): Json<TaskEdit>,
) -> Response {
    answer(
        ctl.edit_task(c, t, e)
            .map(|changed| json!({ "changed": changed })),
    )
}

fn situation(ctl: &EkyteControl, c: i64, t: i64, s: Situation) -> Response {
    answer(
        ctl.set_task_situation(c, t, s)
            .map(|changed| json!({ "changed": changed })),
    )
}

async fn complete_task(State(ctl): Ctl, Path((c, t)): Path<(i64, i64)>) -> Response {
    situation(&ctl, c, t, Situation::Completed)
}

async fn cancel_task(State(ctl): Ctl, Path((c, t)): Path<(i64, i64)>) -> Response {
    situation(&ctl, c, t, Situation::Cancelled)
}

async fn pause_task(State(ctl): Ctl, Path((c, t)): Path<(i64, i64)>) -> Response {
    situation(&ctl, c, t, Situation::Paused)
}

async fn reopen_task(State(ctl): Ctl, Path((c, t)): Path<(i64, i64)>) -> Response {
    situation(&ctl, c, t, Situation::Active)
}

#[derive(Deserialize)]
struct MovePhase {
    phase_id: i64,
    #[serde(default)]
    executor_id: Option<Uuid>,
}

async fn move_phase(
    State(ctl): Ctl,
    Path((c, t)): Path<(i64, i64)>,
    Json(m): Json<MovePhase>,
) -> Response {
    answer(ctl.move_task_phase(c, t, m.phase_id, m.executor_id))
}

#[derive(Deserialize)]
struct CommentBody {
    description: String,
    #[serde(default)]
    author_id: Option<Uuid>,
}

async fn add_comment(
    State(ctl): Ctl,
    Path((c, t)): Path<(i64, i64)>,
    Json(b): Json<CommentBody>,
) -> Response {
    answer(
        ctl.add_comment(c, t, b.author_id, &b.description)
            .map(|id| json!({ "id": id })),
    )
}

async fn bulk_comments(State(ctl): Ctl, Path(c): Path<i64>, Json(b): Json<Value>) -> Response {
    bulk(&ctl, b, |s, x: NewComment, now| s.add_comment(c, x, now))
}

async fn bulk_projects(State(ctl): Ctl, Path(c): Path<i64>, Json(b): Json<Value>) -> Response {
    bulk(&ctl, b, |s, x: NewProject, now| s.add_project(c, x, now))
}

async fn bulk_boards(State(ctl): Ctl, Path(c): Path<i64>, Json(b): Json<Value>) -> Response {
    bulk(&ctl, b, |s, x: NewBoard, now| s.add_board(c, x, now))
}

async fn bulk_notes(State(ctl): Ctl, Path(c): Path<i64>, Json(b): Json<Value>) -> Response {
    bulk(&ctl, b, |s, x: NewNote, now| s.add_note(c, x, now))
}

#[derive(Deserialize)]
struct NoteEditBody {
    #[serde(flatten)]
    edit: NoteEdit,
    #[serde(default)]
    by: Option<Uuid>,
}

async fn edit_note(
    State(ctl): Ctl,
    Path((c, n)): Path<(i64, i64)>,
    Json(b): Json<NoteEditBody>,
) -> Response {
    answer(
        ctl.edit_note(c, n, b.edit, b.by)
            .map(|changed| json!({ "changed": changed })),
    )
}

async fn bulk_tickets(State(ctl): Ctl, Path(c): Path<i64>, Json(b): Json<Value>) -> Response {
    bulk(&ctl, b, |s, x: NewTicket, now| s.add_ticket(c, x, now))
}

#[derive(Deserialize)]
struct StatusBody {
    status: TicketStatus,
}

async fn ticket_status(
    State(ctl): Ctl,
    Path((c, t)): Path<(i64, i64)>,
    Json(b): Json<StatusBody>,
) -> Response {
    answer(ctl.set_ticket_status(c, t, b.status))
}

async fn bulk_notifications(State(ctl): Ctl, Path(c): Path<i64>, Json(b): Json<Value>) -> Response {
    bulk(&ctl, b, |s, x: NewNotification, now| {
        s.add_notification(c, x, now)
    })
}

async fn user_notifications(State(ctl): Ctl, Path((c, u)): Path<(i64, Uuid)>) -> Response {
    answer(ctl.notifications(c, u))
}

async fn bulk_time_trackings(
    State(ctl): Ctl,
    Path(c): Path<i64>,
    Json(b): Json<Value>,
) -> Response {
    bulk(&ctl, b, |s, x: NewTimeTracking, now| {
        s.add_time_tracking(c, x, now)
    })
}
