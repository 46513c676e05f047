//! The simulator's in-memory database and the rules eKyte applies when records change.
//!
//! Every surface (BI reads, automation creates, MCP updates, the control API) goes through this
//! one store, so a record created on one surface is seen identically on the others. Callers
//! hold the store's lock for one operation; nothing here awaits.
//!
//! Guarantees: ids are unique across companies (one sequence per record kind, as database
//! identity columns would be); an operation that returns an error changed nothing; the executor
//! of every new task comes from the chain eKyte documents (API.md §4.2 `PostTask`): task type
//! default → workspace team member for the phase → company-level team member → company owner.
//! The operations that notify people in eKyte (a new task, a comment, a phase move or
//! reassignment, a new ticket) record those notifications in the same step, whatever surface
//! called them, so the automation API's notifications poll agrees with every other surface.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use rand::Rng;
use uuid::Uuid;

use super::dates::{DEFAULT_TIMEZONE, to_tick};
use super::model::{
    Board, BoardCategory, Comment, Company, CompanyData, CompanyDump, FlowPhase, Membership, Note,
    Notification, NotificationKind, Phase, Profile, Project, ProjectTask, Situation, Squad, Task,
    TaskType, Ticket, TicketStatus, TimeTracking, User, Workflow, Workspace,
};
use super::seed::{
    NewBoard, NewComment, NewCompany, NewNote, NewNotification, NewProject, NewSquad, NewTask,
    NewTaskType, NewTicket, NewTimeTracking, NewUser, NewWorkflow, NewWorkspace, NoteEdit,
    TaskEdit, WorkspaceEdit,
};
use super::text::fold;

/// How a refusal is classified; the surfaces turn it into their own status and body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The request is malformed or breaks a rule (HTTP 400 on the automation API).
    Invalid,
    /// A referenced record does not exist or is not visible (HTTP 404).
    NotFound,
    /// The caller may not do this (HTTP 400 on the automation API, which has no 403).
    Denied,
}

/// A refusal with eKyte's numeric id and Portuguese text (API.md §4.2: `{ "Id", "Text" }`).
/// The ids are the simulator's own numbering; eKyte's real values are not published.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize)]
#[error("{text} (eKyte error {id})")]
pub struct SimError {
    pub kind: ErrorKind,
    pub id: i64,
    pub text: String,
}

impl SimError {
    pub fn new(kind: ErrorKind, id: i64, text: impl Into<String>) -> Self {
        Self {
            kind,
            id,
            text: text.into(),
        }
    }

    /// HTTP status on surfaces that follow the automation API's 400/404 split.
    pub fn status(&self) -> u16 {
        match self.kind {
            ErrorKind::NotFound => 404,
            ErrorKind::Invalid | ErrorKind::Denied => 400,
        }
    }

    pub fn bad_body(detail: impl std::fmt::Display) -> Self {
        Self::new(
            ErrorKind::Invalid,
            1,
            format!("Requisição inválida: {detail}"),
        )
    }
    pub fn required(field: &str) -> Self {
        Self::new(
            ErrorKind::Invalid,
            10,
            format!("O campo {field} é obrigatório."),
        )
    }
    pub fn bad_date(field: &str, value: &str) -> Self {
        Self::new(
            ErrorKind::Invalid,
            11,
            format!("Data inválida no campo {field}: {value:?}."),
        )
    }
    pub fn bad_value(field: &str) -> Self {
        Self::new(
            ErrorKind::Invalid,
            12,
            format!("Valor inválido no campo {field}."),
        )
    }
    pub fn user_not_found() -> Self {
        Self::new(ErrorKind::NotFound, 100, "Usuário não encontrado.")
    }
    pub fn company_not_found() -> Self {
        Self::new(ErrorKind::NotFound, 101, "Empresa não encontrada.")
    }
    pub fn workspace_not_found() -> Self {
        Self::new(ErrorKind::NotFound, 102, "Workspace não encontrado.")
    }
    pub fn task_type_not_found() -> Self {
        Self::new(ErrorKind::NotFound, 103, "Tipo de tarefa não encontrado.")
    }
    pub fn project_not_found() -> Self {
        Self::new(ErrorKind::NotFound, 104, "Projeto não encontrado.")
    }
    pub fn board_not_found() -> Self {
        Self::new(ErrorKind::NotFound, 105, "Quadro não encontrado.")
    }
    pub fn task_not_found() -> Self {
        Self::new(ErrorKind::NotFound, 106, "Tarefa não encontrada.")
    }
    pub fn note_not_found() -> Self {
        Self::new(ErrorKind::NotFound, 107, "Nota não encontrada.")
    }
    pub fn phase_not_found() -> Self {
        Self::new(
            ErrorKind::NotFound,
            108,
            "Etapa não encontrada no fluxo da tarefa.",
        )
    }
    pub fn workflow_not_found() -> Self {
        Self::new(
            ErrorKind::NotFound,
            109,
            "Fluxo de trabalho não encontrado.",
        )
    }
    pub fn squad_not_found() -> Self {
        Self::new(ErrorKind::NotFound, 110, "Squad não encontrado.")
    }
    pub fn ticket_not_found() -> Self {
        Self::new(ErrorKind::NotFound, 111, "Ocorrência não encontrada.")
    }
    pub fn user_not_in_company() -> Self {
        Self::new(ErrorKind::Denied, 200, "Usuário não pertence à empresa.")
    }
    pub fn no_workspace_access() -> Self {
        Self::new(
            ErrorKind::Denied,
            201,
            "Usuário não possui acesso ao workspace.",
        )
    }
    pub fn only_admins_create_tasks() -> Self {
        Self::new(
            ErrorKind::Denied,
            202,
            "Somente administradores podem criar tarefas nesta empresa.",
        )
    }
    pub fn only_admins_create_workspaces() -> Self {
        Self::new(
            ErrorKind::Denied,
            203,
            "Somente administradores podem criar workspaces.",
        )
    }
    pub fn project_not_in_workspace() -> Self {
        Self::new(
            ErrorKind::Invalid,
            204,
            "O projeto não pertence ao workspace informado.",
        )
    }
    pub fn unplanned_needs_project() -> Self {
        Self::new(
            ErrorKind::Invalid,
            205,
            "Tarefas não planejadas exigem o campo CtcTaskProjectId.",
        )
    }
    pub fn conflict(what: &str) -> Self {
        Self::new(ErrorKind::Invalid, 206, format!("{what} já está em uso."))
    }
    pub fn task_not_in_workspace() -> Self {
        Self::new(
            ErrorKind::Invalid,
            208,
            "A tarefa não pertence ao workspace informado.",
        )
    }
    pub fn guests_cannot_create_tasks() -> Self {
        Self::new(
            ErrorKind::Denied,
            207,
            "Usuários convidados não podem criar tarefas.",
        )
    }
}

/// Who an MCP token stands for (API.md §2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    User {
        company: i64,
        user: Uuid,
    },
    /// A token that matches nobody. eKyte serves it anyway, with no identity. When the string
    /// contains a real token (a pasted URL), the session still lands in that token's company.
    Anonymous {
        company: Option<i64>,
    },
}

#[derive(Debug)]
struct Sequences {
    company: i64,
    squad: i64,
    workspace: i64,
    workflow: i64,
    phase: i64,
    task_type: i64,
    task: i64,
    comment: i64,
    project: i64,
    board: i64,
    category: i64,
    note: i64,
    ticket: i64,
    time_tracking: i64,
    notification: i64,
}

impl Default for Sequences {
    // Distinct ranges per kind make an id passed in the wrong place fail loudly (404) instead
    // of hitting another record by accident.
    fn default() -> Self {
        Self {
            company: 10_001,
            squad: 501,
            workspace: 20_001,
            workflow: 301,
            phase: 3_001,
            task_type: 601,
            task: 1_000_001,
            comment: 5_000_001,
            project: 40_001,
            board: 7_001,
            category: 70_001,
            note: 80_001,
            ticket: 900_001,
            time_tracking: 30_000_001,
            notification: 50_000_001,
        }
    }
}

fn take(n: &mut i64) -> i64 {
    let v = *n;
    *n += 1;
    v
}

/// A fresh secret the way eKyte shows them: 64 hex characters (API.md §2.2).
pub fn random_hex64() -> String {
    let mut rng = rand::thread_rng();
    (0..32)
        .map(|_| format!("{:02x}", rng.r#gen::<u8>()))
        .collect()
}

#[derive(Debug, Default)]
pub struct Store {
    next: Sequences,
    companies: BTreeMap<i64, CompanyData>,
    users: HashMap<Uuid, User>,
    by_email: HashMap<String, Uuid>,
    api_keys: HashMap<String, i64>,
    tokens: HashMap<String, (i64, Uuid)>,
}

impl Store {
    pub fn new() -> Self {
        Self::default()
    }

    // ----- lookups ---------------------------------------------------------------------------

    pub fn company(&self, id: i64) -> Result<&CompanyData, SimError> {
        self.companies
            .get(&id)
            .ok_or_else(SimError::company_not_found)
    }

    pub(super) fn company_mut(&mut self, id: i64) -> Result<&mut CompanyData, SimError> {
        self.companies
            .get_mut(&id)
            .ok_or_else(SimError::company_not_found)
    }

    pub fn company_ids(&self) -> Vec<i64> {
        self.companies.keys().copied().collect()
    }

    /// The company an API key belongs to (surfaces A and B, API.md §2.1).
    pub fn company_by_key(&self, key: &str) -> Option<i64> {
        self.api_keys.get(key).copied()
    }

    pub fn user(&self, id: Uuid) -> Option<&User> {
        self.users.get(&id)
    }

    pub fn user_by_email(&self, email: &str) -> Option<&User> {
        self.by_email
            .get(&email.trim().to_lowercase())
            .and_then(|id| self.users.get(id))
    }

    /// Resolve an MCP token. Never fails: an unknown token is an anonymous caller (§2.2).
    pub fn resolve_token(&self, token: &str) -> Caller {
        if let Some(&(company, user)) = self.tokens.get(token) {
            return Caller::User { company, user };
        }
        let company = self
            .tokens
            .iter()
            .find(|(t, _)| t.len() >= 16 && token.contains(t.as_str()))
            .map(|(_, (c, _))| *c);
        Caller::Anonymous { company }
    }

    pub fn dump(&self, company: i64) -> Result<CompanyDump, SimError> {
        Ok(self.company(company)?.dump(&self.users))
    }

    // ----- seeding ---------------------------------------------------------------------------

    pub fn create_company(&mut self, c: NewCompany) -> Result<Company, SimError> {
        let id = match c.id {
            Some(id) if self.companies.contains_key(&id) => {
                return Err(SimError::conflict("O id da empresa"));
            }
            Some(id) => {
                self.next.company = self.next.company.max(id + 1);
                id
            }
            None => take(&mut self.next.company),
        };
        let timezone = match c.timezone.as_deref() {
            None => DEFAULT_TIMEZONE,
            Some(name) => name
                .parse::<Tz>()
                .map_err(|_| SimError::bad_value("timezone"))?,
        };
        let api_key = c.api_key.unwrap_or_else(random_hex64);
        if api_key.is_empty() {
            return Err(SimError::required("api_key"));
        }
        if self.api_keys.contains_key(&api_key) {
            return Err(SimError::conflict("A chave de API"));
        }
        let company = Company {
            id,
            name: if c.name.is_empty() {
                format!("Empresa {id}")
            } else {
                c.name
            },
            timezone,
            api_key: api_key.clone(),
            only_admins_create_tasks: c.only_admins_create_tasks,
            phase_team: c.phase_team,
        };
        self.api_keys.insert(api_key, id);
        self.companies.insert(id, CompanyData::new(company.clone()));
        Ok(company)
    }

    /// Add a person to a company. A person already known by e-mail (in another company) is
    /// linked rather than duplicated.
    pub fn add_user(&mut self, company: i64, u: NewUser) -> Result<Uuid, SimError> {
        // Stored as typed; matched case-insensitively.
        let typed = u.email.trim().to_owned();
        let email = typed.to_lowercase();
        if email.is_empty() || !email.contains('@') {
            return Err(SimError::required("email"));
        }
        self.company(company)?;
        if let Some(token) = &u.mcp_token {
            if token.is_empty() {
                return Err(SimError::bad_value("mcp_token"));
            }
            if self.tokens.contains_key(token) {
                return Err(SimError::conflict("O token MCP"));
            }
        }
        let id = match self.by_email.get(&email) {
            Some(existing) => {
                if u.id.is_some_and(|id| id != *existing) {
                    return Err(SimError::conflict("O e-mail"));
                }
                *existing
            }
            None => {
                let id = u.id.unwrap_or_else(Uuid::new_v4);
                if self.users.contains_key(&id) {
                    return Err(SimError::conflict("O id do usuário"));
                }
                id
            }
        };
        let data = self.company_mut(company)?;
        if data.members.contains_key(&id) {
            return Err(SimError::conflict("O usuário"));
        }
        data.members.insert(
            id,
            Membership {
                profile: u.profile,
                mcp_token: u.mcp_token.clone(),
            },
        );
        if let Some(token) = u.mcp_token {
            self.tokens.insert(token, (company, id));
        }
        let user_name = if u.user_name.is_empty() {
            typed.split('@').next().unwrap_or_default().to_owned()
        } else {
            u.user_name
        };
        self.users.entry(id).or_insert(User {
            id,
            user_name,
            email: typed,
        });
        self.by_email.insert(email, id);
        Ok(id)
    }

    pub fn add_squad(&mut self, company: i64, s: NewSquad) -> Result<i64, SimError> {
        self.company(company)?;
        let id = take(&mut self.next.squad);
        self.company_mut(company)?
            .squads
            .insert(id, Squad { id, name: s.name });
        Ok(id)
    }

    pub fn add_workflow(&mut self, company: i64, w: NewWorkflow) -> Result<Workflow, SimError> {
        self.company(company)?;
        if w.name.trim().is_empty() {
            return Err(SimError::required("name"));
        }
        let id = take(&mut self.next.workflow);
        let phases = w
            .phases
            .into_iter()
            .map(|p| Phase {
                id: take(&mut self.next.phase),
                name: p.name,
                sequential: p.sequential,
                duration_days: p.duration_days,
                effort_minutes: p.effort_minutes,
                active: p.active,
            })
            .collect();
        let wf = Workflow {
            id,
            name: w.name,
            active: w.active,
            phases,
        };
        self.company_mut(company)?.workflows.insert(id, wf.clone());
        Ok(wf)
    }

    pub fn add_task_type(&mut self, company: i64, t: NewTaskType) -> Result<i64, SimError> {
        let data = self.company(company)?;
        if t.name.trim().is_empty() {
            return Err(SimError::required("name"));
        }
        if !data.workflows.contains_key(&t.workflow_id) {
            return Err(SimError::workflow_not_found());
        }
        if t.default_executors
            .values()
            .any(|u| !data.members.contains_key(u))
        {
            return Err(SimError::user_not_in_company());
        }
        let id = take(&mut self.next.task_type);
        self.company_mut(company)?.task_types.insert(
            id,
            TaskType {
                id,
                name: t.name,
                active: t.active,
                workflow_id: t.workflow_id,
                group: t.group,
                default_executors: t.default_executors,
            },
        );
        Ok(id)
    }

    /// Set (or clear) the company-level executor of a phase.
    pub fn set_company_phase_member(
        &mut self,
        company: i64,
        phase_id: i64,
        user: Option<Uuid>,
    ) -> Result<(), SimError> {
        let data = self.company_mut(company)?;
        match user {
            Some(u) if !data.members.contains_key(&u) => Err(SimError::user_not_in_company()),
            Some(u) => {
                data.company.phase_team.insert(phase_id, u);
                Ok(())
            }
            None => {
                data.company.phase_team.remove(&phase_id);
                Ok(())
            }
        }
    }

    pub fn add_workspace(
        &mut self,
        company: i64,
        w: NewWorkspace,
        now: DateTime<Utc>,
    ) -> Result<i64, SimError> {
        let data = self.company(company)?;
        if w.name.trim().is_empty() {
            return Err(SimError::required("Name"));
        }
        if w.squad_id.is_some_and(|s| !data.squads.contains_key(&s)) {
            return Err(SimError::squad_not_found());
        }
        let people = w
            .members
            .iter()
            .chain(w.phase_team.values())
            .chain(w.created_by.iter());
        for u in people {
            if !data.members.contains_key(u) {
                return Err(SimError::user_not_in_company());
            }
        }
        let id = take(&mut self.next.workspace);
        let at = w.created_at.map(to_tick).unwrap_or(now);
        let mut members: std::collections::BTreeSet<Uuid> = w.members.into_iter().collect();
        members.extend(w.created_by);
        self.company_mut(company)?.workspaces.insert(
            id,
            Workspace {
                id,
                name: w.name,
                description: w.description,
                active: w.active,
                external_id: w.external_id,
                squad_id: w.squad_id,
                members,
                phase_team: w.phase_team,
                created_by: w.created_by,
                created_at: at,
                updated_at: at,
            },
        );
        Ok(id)
    }

    /// Create a task. The executor of every phase comes from the chain unless the caller names
    /// one (`t.executor_id` for the starting phase, `flow_executors` per phase — the MCP and the
    /// web app allow it, the automation API does not).
    pub fn add_task(
        &mut self,
        company: i64,
        t: NewTask,
        flow_executors: &BTreeMap<i64, Uuid>,
        now: DateTime<Utc>,
    ) -> Result<i64, SimError> {
        let data = self.company(company)?;
        if t.title.trim().is_empty() {
            return Err(SimError::required("Title"));
        }
        if !(0..=100).contains(&t.priority_group) {
            return Err(SimError::bad_value("PriorityGroup"));
        }
        let ws = data
            .workspaces
            .get(&t.workspace_id)
            .ok_or_else(SimError::workspace_not_found)?;
        let tt = data
            .task_types
            .get(&t.task_type_id)
            .ok_or_else(SimError::task_type_not_found)?;
        let wf = data
            .workflows
            .get(&tt.workflow_id)
            .ok_or_else(SimError::workflow_not_found)?;
        if let Some(p) = t.project_id {
            let project = data
                .projects
                .get(&p)
                .ok_or_else(SimError::project_not_found)?;
            if project.workspace_id != t.workspace_id {
                return Err(SimError::project_not_in_workspace());
            }
        }
        let people = t
            .executor_id
            .iter()
            .chain(t.created_by.iter())
            .chain(flow_executors.values());
        for u in people {
            if !data.members.contains_key(u) {
                return Err(SimError::user_not_in_company());
            }
        }
        let active: Vec<&Phase> = wf.phases.iter().filter(|p| p.active).collect();
        let start_idx = match t.phase_id {
            Some(pid) => Some(
                active
                    .iter()
                    .position(|p| p.id == pid)
                    .ok_or_else(SimError::phase_not_found)?,
            ),
            None if active.is_empty() => None,
            None => Some(0),
        };

        let creation = t.creation_date.map(to_tick).unwrap_or(now);
        let current_due = t.current_due_date.map(to_tick);
        let phase_start = t.phase_start_date.map(to_tick).unwrap_or(creation);
        let phase_due = match (t.phase_due_date, start_idx) {
            (Some(d), _) => Some(to_tick(d)),
            (None, Some(i)) if active[i].duration_days > 0 => {
                let planned = phase_start + Duration::days(i64::from(active[i].duration_days));
                Some(match current_due {
                    Some(due) if due > phase_start => planned.min(due),
                    _ => planned,
                })
            }
            _ => current_due,
        };
        let flow: Vec<FlowPhase> = active
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let chosen = flow_executors
                    .get(&p.id)
                    .copied()
                    .or(if Some(i) == start_idx {
                        t.executor_id
                    } else {
                        None
                    });
                let is_start = Some(i) == start_idx;
                FlowPhase {
                    phase_id: p.id,
                    name: p.name.clone(),
                    sequential: p.sequential,
                    active: p.active,
                    duration_days: p.duration_days,
                    effort_minutes: p.effort_minutes,
                    executor_id: chosen.or_else(|| executor_chain(data, tt, Some(ws), p.id)),
                    phase_start_date: is_start.then_some(phase_start),
                    phase_due_date: if is_start { phase_due } else { None },
                    concluded_date: start_idx.filter(|s| i < *s).map(|_| creation),
                }
            })
            .collect();
        let (phase_id, executor_id) = match start_idx {
            Some(i) => (Some(flow[i].phase_id), flow[i].executor_id),
            None => (None, t.executor_id),
        };
        let resolved = match t.situation {
            Situation::Completed => Some(t.resolved_date.map(to_tick).unwrap_or(creation)),
            _ => None,
        };
        let estimated = t
            .estimated_time
            .unwrap_or_else(|| active.iter().map(|p| i64::from(p.effort_minutes)).sum());
        let id = take(&mut self.next.task);
        // API.md §4.2 `PostTask`: "a creation notification is sent"; the simulator sends it to
        // every executor of the task's flow, once each.
        let mut notified: Vec<Uuid> = Vec::new();
        for u in flow.iter().filter_map(|f| f.executor_id).chain(executor_id) {
            if !notified.contains(&u) {
                notified.push(u);
            }
        }
        let created_message = match self.name_of(t.created_by) {
            Some(who) => format!("{who} criou a tarefa \"{}\".", t.title),
            None => format!("A tarefa \"{}\" foi criada.", t.title),
        };
        let task = Task {
            id,
            title: t.title,
            description: t.description,
            situation: t.situation,
            task_type_id: t.task_type_id,
            workspace_id: t.workspace_id,
            project_id: t.project_id,
            phase_id,
            executor_id,
            flow,
            priority_group: t.priority_group,
            priority: t.priority,
            quantity: t.quantity,
            estimated_time: estimated,
            actual_time: 0,
            creation_date: creation,
            original_due_date: t.original_due_date.map(to_tick).or(current_due),
            current_due_date: current_due,
            phase_start_date: start_idx.map(|_| phase_start),
            phase_due_date: phase_due,
            resolved_date: resolved,
            created_by: t.created_by,
            comments: Vec::new(),
            updated_at: creation,
            phase_changed_at: creation,
        };
        let (workspace, by) = (task.workspace_id, task.created_by);
        self.company_mut(company)?.tasks.insert(id, task);
        for user in notified {
            self.notify(
                company,
                Notice {
                    user,
                    kind: NotificationKind::TaskCreated,
                    title: "Nova tarefa".into(),
                    message: created_message.clone(),
                    task: Some(id),
                    ticket: None,
                    workspace: Some(workspace),
                    by,
                    at: creation,
                },
            )?;
        }
        Ok(id)
    }

    /// `PlanTask = false` (API.md §4.2): an unplanned row inside a project; the creator
    /// executes it. Returns its id, which no task list shows.
    pub fn add_unplanned_project_task(
        &mut self,
        company: i64,
        project_id: i64,
        task_type_id: i64,
        title: String,
        creator: Option<Uuid>,
        now: DateTime<Utc>,
    ) -> Result<i64, SimError> {
        let data = self.company(company)?;
        if !data.task_types.contains_key(&task_type_id) {
            return Err(SimError::task_type_not_found());
        }
        if !data.projects.contains_key(&project_id) {
            return Err(SimError::project_not_found());
        }
        let id = take(&mut self.next.task);
        let project = self
            .company_mut(company)?
            .projects
            .get_mut(&project_id)
            .ok_or_else(SimError::project_not_found)?;
        project.unplanned_tasks.push(ProjectTask {
            id,
            title,
            task_type_id,
            executor_id: creator,
            created_at: now,
        });
        Ok(id)
    }

    pub fn add_comment(
        &mut self,
        company: i64,
        c: NewComment,
        now: DateTime<Utc>,
    ) -> Result<i64, SimError> {
        let data = self.company(company)?;
        if c.description.trim().is_empty() {
            return Err(SimError::required("description"));
        }
        if c.author_id.is_some_and(|a| !data.members.contains_key(&a)) {
            return Err(SimError::user_not_in_company());
        }
        if !data.tasks.contains_key(&c.task_id) {
            return Err(SimError::task_not_found());
        }
        let id = take(&mut self.next.comment);
        let at = c.created_at.map(to_tick).unwrap_or(now);
        let task = self
            .company_mut(company)?
            .tasks
            .get_mut(&c.task_id)
            .ok_or_else(SimError::task_not_found)?;
        task.comments.push(Comment {
            id,
            description: c.description,
            author_id: c.author_id,
            created_at: at,
        });
        task.updated_at = task.updated_at.max(at);
        let (executor, title, workspace) =
            (task.executor_id, task.title.clone(), task.workspace_id);
        if let Some(user) = executor {
            let message = match self.name_of(c.author_id) {
                Some(who) => format!("{who} comentou na tarefa \"{title}\"."),
                None => format!("Novo comentário na tarefa \"{title}\"."),
            };
            self.notify(
                company,
                Notice {
                    user,
                    kind: NotificationKind::TaskComment,
                    title: "Novo comentário".into(),
                    message,
                    task: Some(c.task_id),
                    ticket: None,
                    workspace: Some(workspace),
                    by: c.author_id,
                    at,
                },
            )?;
        }
        Ok(id)
    }

    pub fn add_project(
        &mut self,
        company: i64,
        p: NewProject,
        now: DateTime<Utc>,
    ) -> Result<i64, SimError> {
        let data = self.company(company)?;
        if p.name.trim().is_empty() {
            return Err(SimError::required("Name"));
        }
        if !data.workspaces.contains_key(&p.workspace_id) {
            return Err(SimError::workspace_not_found());
        }
        let alias = match p.alias {
            Some(a) if a.chars().count() > 15 => return Err(SimError::bad_value("Alias")),
            Some(a) if !a.trim().is_empty() => a,
            // API.md §4.2 `/projects`: first 14 chars of the name, spaces → `-`.
            _ => p
                .name
                .chars()
                .take(14)
                .collect::<String>()
                .replace(' ', "-"),
        };
        let id = take(&mut self.next.project);
        self.company_mut(company)?.projects.insert(
            id,
            Project {
                id,
                workspace_id: p.workspace_id,
                name: p.name,
                alias,
                description: p.description,
                situation: 1,
                start_date: p.start_date.map(to_tick).unwrap_or(now),
                end_date: p.end_date.map(to_tick),
                tags: p.tags,
                created_by: p.created_by,
                created_at: now,
                unplanned_tasks: Vec::new(),
            },
        );
        Ok(id)
    }

    pub fn add_board(
        &mut self,
        company: i64,
        b: NewBoard,
        now: DateTime<Utc>,
    ) -> Result<i64, SimError> {
        let data = self.company(company)?;
        if b.title.trim().is_empty() {
            return Err(SimError::required("Title"));
        }
        if b.workspace_id
            .is_some_and(|w| !data.workspaces.contains_key(&w))
        {
            return Err(SimError::workspace_not_found());
        }
        let id = take(&mut self.next.board);
        let mut categories: Vec<BoardCategory> = Vec::new();
        for name in b.categories {
            if !categories.iter().any(|c| fold(&c.name) == fold(&name)) {
                categories.push(BoardCategory {
                    id: take(&mut self.next.category),
                    name,
                });
            }
        }
        self.company_mut(company)?.boards.insert(
            id,
            Board {
                id,
                title: b.title,
                description: b.description,
                workspace_id: b.workspace_id,
                categories,
                created_by: b.created_by,
                created_at: now,
                updated_at: now,
            },
        );
        Ok(id)
    }

    /// The board's category matching `name` (case/accent-insensitive), created when missing
    /// (API.md §4.2 `/notes`).
    fn category_for(&mut self, company: i64, board: i64, name: &str) -> Result<i64, SimError> {
        let next = &mut self.next.category;
        let board = self
            .companies
            .get_mut(&company)
            .ok_or_else(SimError::company_not_found)?
            .boards
            .get_mut(&board)
            .ok_or_else(SimError::board_not_found)?;
        let wanted = fold(name);
        if let Some(c) = board.categories.iter().find(|c| fold(&c.name) == wanted) {
            return Ok(c.id);
        }
        let id = take(next);
        board.categories.push(BoardCategory {
            id,
            name: name.trim().to_owned(),
        });
        Ok(id)
    }

    pub fn add_note(
        &mut self,
        company: i64,
        n: NewNote,
        now: DateTime<Utc>,
    ) -> Result<i64, SimError> {
        let data = self.company(company)?;
        if !data.boards.contains_key(&n.board_id) {
            return Err(SimError::board_not_found());
        }
        if n.created_by.is_some_and(|u| !data.members.contains_key(&u)) {
            return Err(SimError::user_not_in_company());
        }
        let category_id = match n.category.as_deref().map(str::trim) {
            Some(name) if !name.is_empty() => Some(self.category_for(company, n.board_id, name)?),
            _ => None,
        };
        let id = take(&mut self.next.note);
        self.company_mut(company)?.notes.insert(
            id,
            Note {
                id,
                board_id: n.board_id,
                category_id,
                title: n.title,
                description: n.description,
                content: n.content,
                created_by: n.created_by,
                created_at: now,
                updated_by: n.created_by,
                updated_at: now,
            },
        );
        Ok(id)
    }

    /// Create a ticket (API.md §4.2 `/tickets`): the requester must exist and is linked to the
    /// company as Guest when not a member; unknown CC e-mails become Guest users; the analyst
    /// is the company owner (the simulator models no ticket analysts).
    pub fn add_ticket(
        &mut self,
        company: i64,
        t: NewTicket,
        now: DateTime<Utc>,
    ) -> Result<i64, SimError> {
        let data = self.company(company)?;
        if t.ticket_type <= 0 {
            return Err(SimError::bad_value("TicketType"));
        }
        if !data.workspaces.contains_key(&t.workspace_id) {
            return Err(SimError::workspace_not_found());
        }
        if let Some(p) = t.project_id {
            match data.projects.get(&p) {
                None => return Err(SimError::project_not_found()),
                Some(project) if project.workspace_id != t.workspace_id => {
                    return Err(SimError::project_not_in_workspace());
                }
                Some(_) => {}
            }
        }
        let requester = self
            .user_by_email(&t.requester_email)
            .map(|u| u.id)
            .ok_or_else(SimError::user_not_found)?;
        let owner = data.owner();
        self.ensure_member(company, requester, Profile::Guest)?;
        let mut cc = Vec::new();
        for email in t.cc.iter().map(|e| e.trim()).filter(|e| !e.is_empty()) {
            let id = match self.user_by_email(email) {
                Some(u) => u.id,
                None => self.add_user(
                    company,
                    NewUser {
                        email: email.to_owned(),
                        profile: Profile::Guest,
                        ..NewUser::default()
                    },
                )?,
            };
            self.ensure_member(company, id, Profile::Guest)?;
            cc.push(id);
        }
        let id = take(&mut self.next.ticket);
        let assigned = owner.map(|user| Notice {
            user,
            kind: NotificationKind::TicketAssigned,
            title: "Nova ocorrência".into(),
            message: format!("A ocorrência \"{}\" foi atribuída a você.", t.subject),
            task: None,
            ticket: Some(id),
            workspace: Some(t.workspace_id),
            by: t.created_by,
            at: now,
        });
        self.company_mut(company)?.tickets.insert(
            id,
            Ticket {
                id,
                workspace_id: t.workspace_id,
                project_id: t.project_id,
                subject: t.subject,
                message: t.message,
                ticket_type: t.ticket_type,
                status: TicketStatus::Processing,
                requester_id: requester,
                analyst_id: owner,
                cc,
                priority_group: t.priority_group,
                expect_due_date: t.expect_due_date.map(to_tick),
                created_by: t.created_by,
                created_at: now,
                updated_at: now,
                concluded_at: None,
            },
        );
        if let Some(notice) = assigned {
            self.notify(company, notice)?;
        }
        Ok(id)
    }

    /// A person's display name, for notification texts.
    fn name_of(&self, user: Option<Uuid>) -> Option<String> {
        user.and_then(|u| self.users.get(&u))
            .map(|u| u.user_name.clone())
    }

    /// Record a notification. Every caller has already checked the person is a member.
    fn notify(&mut self, company: i64, n: Notice) -> Result<i64, SimError> {
        self.company(company)?;
        let id = take(&mut self.next.notification);
        self.company_mut(company)?.notifications.insert(
            id,
            Notification {
                id,
                user_id: n.user,
                kind: n.kind,
                title: n.title,
                message: n.message,
                task_id: n.task,
                ticket_id: n.ticket,
                workspace_id: n.workspace,
                created_by: n.by,
                created_at: n.at,
            },
        );
        Ok(id)
    }

    /// Seed a notification the simulator would not send by itself.
    pub fn add_notification(
        &mut self,
        company: i64,
        n: NewNotification,
        now: DateTime<Utc>,
    ) -> Result<i64, SimError> {
        let data = self.company(company)?;
        if !data.members.contains_key(&n.user_id) {
            return Err(SimError::user_not_in_company());
        }
        if n.created_by.is_some_and(|u| !data.members.contains_key(&u)) {
            return Err(SimError::user_not_in_company());
        }
        let task_ws = match n.task_id {
            Some(t) => Some(
                data.tasks
                    .get(&t)
                    .ok_or_else(SimError::task_not_found)?
                    .workspace_id,
            ),
            None => None,
        };
        let ticket_ws = match n.ticket_id {
            Some(t) => Some(
                data.tickets
                    .get(&t)
                    .ok_or_else(SimError::ticket_not_found)?
                    .workspace_id,
            ),
            None => None,
        };
        let workspace = n.workspace_id.or(task_ws).or(ticket_ws);
        if workspace.is_some_and(|w| !data.workspaces.contains_key(&w)) {
            return Err(SimError::workspace_not_found());
        }
        self.notify(
            company,
            Notice {
                user: n.user_id,
                kind: n.kind,
                title: n.title,
                message: n.message,
                task: n.task_id,
                ticket: n.ticket_id,
                workspace,
                by: n.created_by,
                at: n.created_at.map(to_tick).unwrap_or(now),
            },
        )
    }

    /// A person's notifications in one company, oldest first.
    pub fn notifications_of(
        &self,
        company: i64,
        user: Uuid,
    ) -> Result<Vec<&Notification>, SimError> {
        Ok(self
            .company(company)?
            .notifications
            .values()
            .filter(|n| n.user_id == user)
            .collect())
    }

    /// Record a time entry. It counts towards its task's `actualTime` (minutes), which moves
    /// the task's change clock like any other change to what the task lists serve.
    pub fn add_time_tracking(
        &mut self,
        company: i64,
        t: NewTimeTracking,
        now: DateTime<Utc>,
    ) -> Result<i64, SimError> {
        let data = self.company(company)?;
        let start = t
            .start_date
            .map(to_tick)
            .ok_or_else(|| SimError::required("start_date"))?;
        let end = t.end_date.map(to_tick);
        if end.is_some_and(|e| e < start) {
            return Err(SimError::bad_value("end_date"));
        }
        let effort = match (t.effort_minutes, end) {
            (Some(m), _) => m,
            (None, Some(e)) => (e - start).num_minutes(),
            (None, None) => return Err(SimError::required("effort_minutes")),
        };
        if effort < 0 {
            return Err(SimError::bad_value("effort_minutes"));
        }
        if !t.accomplished_hourly_rate.is_finite() || t.accomplished_hourly_rate < 0.0 {
            return Err(SimError::bad_value("accomplished_hourly_rate"));
        }
        if t.user_id.is_some_and(|u| !data.members.contains_key(&u)) {
            return Err(SimError::user_not_in_company());
        }
        let task = match t.task_id {
            Some(id) => Some(data.tasks.get(&id).ok_or_else(SimError::task_not_found)?),
            None => None,
        };
        let workspace = match (t.workspace_id, task) {
            (Some(w), Some(task)) if task.workspace_id != w => {
                return Err(SimError::task_not_in_workspace());
            }
            (Some(w), _) => w,
            (None, Some(task)) => task.workspace_id,
            (None, None) => return Err(SimError::required("workspace_id")),
        };
        if !data.workspaces.contains_key(&workspace) {
            return Err(SimError::workspace_not_found());
        }
        if let Some(phase) = t.phase_id {
            let in_flow = task.is_some_and(|task| task.flow.iter().any(|f| f.phase_id == phase));
            if !in_flow {
                return Err(SimError::phase_not_found());
            }
        }
        let at = t.created_at.map(to_tick).unwrap_or(now);
        let id = take(&mut self.next.time_tracking);
        let data = self.company_mut(company)?;
        if let Some(task) = t.task_id.and_then(|id| data.tasks.get_mut(&id)) {
            task.actual_time += effort;
            task.updated_at = task.updated_at.max(at);
        }
        data.time_trackings.insert(
            id,
            TimeTracking {
                id,
                workspace_id: workspace,
                task_id: t.task_id,
                phase_id: t.phase_id,
                user_id: t.user_id,
                start_date: start,
                end_date: end,
                effort_minutes: effort,
                accomplished_hourly_rate: t.accomplished_hourly_rate,
                comment: t.comment,
                created_at: at,
            },
        );
        Ok(id)
    }

    fn ensure_member(
        &mut self,
        company: i64,
        user: Uuid,
        profile: Profile,
    ) -> Result<(), SimError> {
        self.company_mut(company)?
            .members
            .entry(user)
            .or_insert(Membership {
                profile,
                mcp_token: None,
            });
        Ok(())
    }

    // ----- changes -----------------------------------------------------------------------------

    /// Apply a person's edit. Returns whether anything changed (an edit that sets the same
    /// values does not move the change clock).
    /// `by` is who edits (for the notification a reassignment sends); `None` when unknown.
    pub fn edit_task(
        &mut self,
        company: i64,
        task_id: i64,
        e: TaskEdit,
        by: Option<Uuid>,
        now: DateTime<Utc>,
    ) -> Result<bool, SimError> {
        let data = self.company(company)?;
        if e.executor_id
            .is_some_and(|u| !data.members.contains_key(&u))
        {
            return Err(SimError::user_not_in_company());
        }
        if e.priority_group.is_some_and(|p| !(0..=100).contains(&p)) {
            return Err(SimError::bad_value("priorityGroup"));
        }
        if e.title.as_deref().is_some_and(|t| t.trim().is_empty()) {
            return Err(SimError::required("title"));
        }
        let task = self
            .company_mut(company)?
            .tasks
            .get_mut(&task_id)
            .ok_or_else(SimError::task_not_found)?;
        let mut changed = false;
        let mut reassigned = None;
        fn set<T: PartialEq>(slot: &mut T, value: Option<T>, changed: &mut bool) {
            if let Some(v) = value
                && *slot != v
            {
                *slot = v;
                *changed = true;
            }
        }
        set(&mut task.title, e.title, &mut changed);
        set(&mut task.description, e.description, &mut changed);
        set(
            &mut task.current_due_date,
            e.current_due_date.map(|d| Some(to_tick(d))),
            &mut changed,
        );
        set(
            &mut task.phase_start_date,
            e.phase_start_date.map(|d| Some(to_tick(d))),
            &mut changed,
        );
        set(
            &mut task.phase_due_date,
            e.phase_due_date.map(|d| Some(to_tick(d))),
            &mut changed,
        );
        set(&mut task.priority_group, e.priority_group, &mut changed);
        set(&mut task.priority, e.priority, &mut changed);
        set(&mut task.estimated_time, e.estimated_time, &mut changed);
        if let Some(ex) = e.executor_id
            && task.executor_id != Some(ex)
        {
            task.executor_id = Some(ex);
            let current = task.phase_id;
            if let Some(fp) = task.flow.iter_mut().find(|f| Some(f.phase_id) == current) {
                fp.executor_id = Some(ex);
            }
            reassigned = Some(ex);
            changed = true;
        }
        if let Some(s) = e.situation
            && task.situation != s
        {
            task.situation = s;
            task.resolved_date = match s {
                Situation::Completed => Some(now),
                _ => None,
            };
            if s == Situation::Completed {
                let current = task.phase_id;
                if let Some(fp) = task.flow.iter_mut().find(|f| Some(f.phase_id) == current) {
                    fp.concluded_date = Some(now);
                }
            }
            changed = true;
        }
        if changed {
            task.updated_at = now;
        }
        if let Some(user) = reassigned {
            let notice = Notice::assigned(task, user, by, now);
            self.notify(company, notice)?;
        }
        Ok(changed)
    }

    /// Move a task to another phase of its own flow. Phases before the target count as done.
    /// The target phase's executor is notified; `by` is who moved it (`None` when unknown).
    pub fn move_task_phase(
        &mut self,
        company: i64,
        task_id: i64,
        phase_id: i64,
        executor: Option<Uuid>,
        by: Option<Uuid>,
        now: DateTime<Utc>,
    ) -> Result<(), SimError> {
        let data = self.company(company)?;
        if executor.is_some_and(|u| !data.members.contains_key(&u)) {
            return Err(SimError::user_not_in_company());
        }
        let task = self
            .company_mut(company)?
            .tasks
            .get_mut(&task_id)
            .ok_or_else(SimError::task_not_found)?;
        let target = task
            .flow
            .iter()
            .position(|f| f.phase_id == phase_id)
            .ok_or_else(SimError::phase_not_found)?;
        for (i, fp) in task.flow.iter_mut().enumerate() {
            if i < target {
                fp.concluded_date.get_or_insert(now);
            } else {
                fp.concluded_date = None;
            }
        }
        let fp = &mut task.flow[target];
        if executor.is_some() {
            fp.executor_id = executor;
        }
        let due = now + Duration::days(i64::from(fp.duration_days.max(1)));
        fp.phase_start_date = Some(now);
        fp.phase_due_date = Some(due);
        task.phase_id = Some(phase_id);
        task.executor_id = fp.executor_id;
        task.phase_start_date = Some(now);
        task.phase_due_date = Some(due);
        task.phase_changed_at = now;
        task.updated_at = now;
        if let Some(user) = task.executor_id {
            let notice = Notice::assigned(task, user, by, now);
            self.notify(company, notice)?;
        }
        Ok(())
    }

    pub fn edit_workspace(
        &mut self,
        company: i64,
        workspace_id: i64,
        e: WorkspaceEdit,
        now: DateTime<Utc>,
    ) -> Result<bool, SimError> {
        let data = self.company(company)?;
        if e.squad_id.is_some_and(|s| !data.squads.contains_key(&s)) {
            return Err(SimError::squad_not_found());
        }
        if e.name.as_deref().is_some_and(|n| n.trim().is_empty()) {
            return Err(SimError::required("name"));
        }
        let ws = self
            .company_mut(company)?
            .workspaces
            .get_mut(&workspace_id)
            .ok_or_else(SimError::workspace_not_found)?;
        let before = (
            ws.name.clone(),
            ws.description.clone(),
            ws.active,
            ws.external_id.clone(),
            ws.squad_id,
        );
        if let Some(n) = e.name {
            ws.name = n;
        }
        if let Some(d) = e.description {
            ws.description = Some(d);
        }
        if let Some(a) = e.active {
            ws.active = a;
        }
        if let Some(x) = e.external_id {
            ws.external_id = Some(x);
        }
        if let Some(s) = e.squad_id {
            ws.squad_id = Some(s);
        }
        let after = (
            ws.name.clone(),
            ws.description.clone(),
            ws.active,
            ws.external_id.clone(),
            ws.squad_id,
        );
        let changed = before != after;
        if changed {
            ws.updated_at = now;
        }
        Ok(changed)
    }

    /// Make `user` a member of a workspace (what "grant access" does in the web app).
    pub fn add_workspace_member(
        &mut self,
        company: i64,
        workspace_id: i64,
        user: Uuid,
    ) -> Result<(), SimError> {
        let data = self.company_mut(company)?;
        if !data.members.contains_key(&user) {
            return Err(SimError::user_not_in_company());
        }
        data.workspaces
            .get_mut(&workspace_id)
            .ok_or_else(SimError::workspace_not_found)?
            .members
            .insert(user);
        Ok(())
    }

    pub fn edit_note(
        &mut self,
        company: i64,
        note_id: i64,
        e: NoteEdit,
        by: Option<Uuid>,
        now: DateTime<Utc>,
    ) -> Result<bool, SimError> {
        let data = self.company(company)?;
        let board = data
            .notes
            .get(&note_id)
            .ok_or_else(SimError::note_not_found)?
            .board_id;
        let category = match e.category.as_deref().map(str::trim) {
            Some(name) if !name.is_empty() => Some(Some(self.category_for(company, board, name)?)),
            Some(_) => Some(None),
            None => None,
        };
        let note = self
            .company_mut(company)?
            .notes
            .get_mut(&note_id)
            .ok_or_else(SimError::note_not_found)?;
        let before = (
            note.title.clone(),
            note.description.clone(),
            note.content.clone(),
            note.category_id,
        );
        if let Some(t) = e.title {
            note.title = t;
        }
        if let Some(d) = e.description {
            note.description = Some(d);
        }
        if let Some(c) = e.content {
            note.content = c;
        }
        if let Some(c) = category {
            note.category_id = c;
        }
        let changed = before
            != (
                note.title.clone(),
                note.description.clone(),
                note.content.clone(),
                note.category_id,
            );
        if changed {
            note.updated_at = now;
            note.updated_by = by;
        }
        Ok(changed)
    }

    pub fn set_ticket_status(
        &mut self,
        company: i64,
        ticket_id: i64,
        status: TicketStatus,
        now: DateTime<Utc>,
    ) -> Result<(), SimError> {
        let ticket = self
            .company_mut(company)?
            .tickets
            .get_mut(&ticket_id)
            .ok_or_else(SimError::ticket_not_found)?;
        ticket.status = status;
        ticket.updated_at = now;
        ticket.concluded_at = match status {
            TicketStatus::Resolved | TicketStatus::Cancelled => Some(now),
            _ => None,
        };
        Ok(())
    }
}

/// A notification about to be recorded.
struct Notice {
    user: Uuid,
    kind: NotificationKind,
    title: String,
    message: String,
    task: Option<i64>,
    ticket: Option<i64>,
    workspace: Option<i64>,
    by: Option<Uuid>,
    at: DateTime<Utc>,
}

impl Notice {
    /// `user` now executes `task`'s current phase.
    fn assigned(task: &Task, user: Uuid, by: Option<Uuid>, at: DateTime<Utc>) -> Self {
        let phase = task
            .flow
            .iter()
            .find(|f| Some(f.phase_id) == task.phase_id)
            .map_or("", |f| f.name.as_str());
        Self {
            user,
            kind: NotificationKind::TaskAssigned,
            title: "Tarefa atribuída".into(),
            message: format!(
                "Você é o executor da etapa \"{phase}\" da tarefa \"{}\".",
                task.title
            ),
            task: Some(task.id),
            ticket: None,
            workspace: Some(task.workspace_id),
            by,
            at,
        }
    }
}

/// The executor of `phase` for a new task: task type default → workspace team → company team →
/// company owner (API.md §4.2 `PostTask`). People who left the company are skipped.
pub fn executor_chain(
    data: &CompanyData,
    task_type: &TaskType,
    workspace: Option<&Workspace>,
    phase: i64,
) -> Option<Uuid> {
    let member = |u: &Uuid| data.members.contains_key(u);
    task_type
        .default_executors
        .get(&phase)
        .filter(|u| member(u))
        .or_else(|| {
            workspace
                .and_then(|w| w.phase_team.get(&phase))
                .filter(|u| member(u))
        })
        .or_else(|| data.company.phase_team.get(&phase).filter(|u| member(u)))
        .copied()
        .or_else(|| data.owner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ekyte::seed::NewPhase;

    fn now() -> DateTime<Utc> {
        to_tick(Utc::now())
    }

    struct Fixture {
        store: Store,
        company: i64,
        owner: Uuid,
        ed: Uuid,
        phases: Vec<i64>,
        tt: i64,
        ws: i64,
    }

    fn fixture() -> Fixture {
        let mut s = Store::new();
        let c = s.create_company(NewCompany::default()).unwrap().id;
        let owner = s
            .add_user(
                c,
                NewUser {
                    email: "owner@x.com".into(),
                    profile: Profile::Owner,
                    ..NewUser::default()
                },
            )
            .unwrap();
        let ed = s
            .add_user(
                c,
                NewUser {
                    email: "ed@x.com".into(),
                    ..NewUser::default()
                },
            )
            .unwrap();
        let wf = s
            .add_workflow(
                c,
                NewWorkflow {
                    name: "wf".into(),
                    active: true,
                    phases: vec![
                        NewPhase::named("a"),
                        NewPhase::named("b"),
                        NewPhase::named("c"),
                    ],
                },
            )
            .unwrap();
        let phases: Vec<i64> = wf.phases.iter().map(|p| p.id).collect();
        let tt = s
            .add_task_type(
                c,
                NewTaskType {
                    name: "tt".into(),
                    workflow_id: wf.id,
                    active: true,
                    group: None,
                    default_executors: [(phases[0], ed)].into(),
                },
            )
            .unwrap();
        let ws = s
            .add_workspace(
                c,
                NewWorkspace {
                    name: "ws".into(),
                    ..NewWorkspace::default()
                },
                now(),
            )
            .unwrap();
        Fixture {
            store: s,
            company: c,
            owner,
            ed,
            phases,
            tt,
            ws,
        }
    }

    #[test]
    fn executor_chain_falls_through_to_the_owner() {
        let mut f = fixture();
        let third = f
            .store
            .add_user(
                f.company,
                NewUser {
                    email: "third@x.com".into(),
                    ..NewUser::default()
                },
            )
            .unwrap();
        let fourth = f
            .store
            .add_user(
                f.company,
                NewUser {
                    email: "fourth@x.com".into(),
                    ..NewUser::default()
                },
            )
            .unwrap();
        // Phase b: workspace team; phase c: company team beats nobody, workspace beats company.
        f.store
            .set_company_phase_member(f.company, f.phases[1], Some(fourth))
            .unwrap();
        f.store
            .companies
            .get_mut(&f.company)
            .unwrap()
            .workspaces
            .get_mut(&f.ws)
            .unwrap()
            .phase_team
            .insert(f.phases[1], third);
        let id = f
            .store
            .add_task(
                f.company,
                NewTask::new(f.ws, f.tt, "t"),
                &BTreeMap::new(),
                now(),
            )
            .unwrap();
        let task = &f.store.company(f.company).unwrap().tasks[&id];
        let execs: Vec<_> = task.flow.iter().map(|p| p.executor_id).collect();
        assert_eq!(execs, vec![Some(f.ed), Some(third), Some(f.owner)]);
        assert_eq!(task.executor_id, Some(f.ed));
        assert_eq!(task.phase_id, Some(f.phases[0]));
    }

    #[test]
    fn failed_operations_change_nothing() {
        let mut f = fixture();
        let before = format!("{:?}", f.store.dump(f.company).unwrap());
        let mut bad = NewTask::new(f.ws, f.tt, "t");
        bad.project_id = Some(123);
        assert_eq!(
            f.store
                .add_task(f.company, bad, &BTreeMap::new(), now())
                .unwrap_err()
                .id,
            104
        );
        assert!(
            f.store
                .edit_task(f.company, 1, TaskEdit::default(), None, now())
                .is_err()
        );
        assert_eq!(before, format!("{:?}", f.store.dump(f.company).unwrap()));
    }

    #[test]
    fn completing_and_reopening_sets_and_clears_resolved_date() {
        let mut f = fixture();
        let id = f
            .store
            .add_task(
                f.company,
                NewTask::new(f.ws, f.tt, "t"),
                &BTreeMap::new(),
                now(),
            )
            .unwrap();
        let done = TaskEdit {
            situation: Some(Situation::Completed),
            ..TaskEdit::default()
        };
        assert!(
            f.store
                .edit_task(f.company, id, done.clone(), None, now())
                .unwrap()
        );
        assert!(!f.store.edit_task(f.company, id, done, None, now()).unwrap());
        assert!(
            f.store.company(f.company).unwrap().tasks[&id]
                .resolved_date
                .is_some()
        );
        let reopen = TaskEdit {
            situation: Some(Situation::Active),
            ..TaskEdit::default()
        };
        f.store
            .edit_task(f.company, id, reopen, None, now())
            .unwrap();
        assert!(
            f.store.company(f.company).unwrap().tasks[&id]
                .resolved_date
                .is_none()
        );
    }

    #[test]
    fn pasted_url_tokens_land_anonymous_in_the_right_company() {
        let mut f = fixture();
        let token = "ab".repeat(32);
        f.store
            .add_user(
                f.company,
                NewUser {
                    email: "tok@x.com".into(),
                    mcp_token: Some(token.clone()),
                    ..NewUser::default()
                },
            )
            .unwrap();
        assert!(matches!(f.store.resolve_token(&token), Caller::User { .. }));
        assert_eq!(
            f.store
                .resolve_token(&format!("https://api.ekyte.com/mcp?token={token}")),
            Caller::Anonymous {
                company: Some(f.company)
            }
        );
        assert_eq!(
            f.store.resolve_token("nonsense"),
            Caller::Anonymous { company: None }
        );
    }

    #[test]
    fn note_categories_match_without_case_or_accents() {
        let mut f = fixture();
        let b = f
            .store
            .add_board(
                f.company,
                NewBoard {
                    title: "b".into(),
                    categories: vec!["Reunião".into()],
                    ..NewBoard::default()
                },
                now(),
            )
            .unwrap();
        let note = |cat: &str| NewNote {
            board_id: b,
            title: "n".into(),
            category: Some(cat.into()),
            ..NewNote::default()
        };
        let n1 = f.store.add_note(f.company, note("REUNIAO"), now()).unwrap();
        let n2 = f.store.add_note(f.company, note("Perfil"), now()).unwrap();
        let data = f.store.company(f.company).unwrap();
        assert_eq!(data.boards[&b].categories.len(), 2);
        assert_eq!(
            data.notes[&n1].category_id,
            Some(data.boards[&b].categories[0].id)
        );
        assert_eq!(
            data.notes[&n2].category_id,
            Some(data.boards[&b].categories[1].id)
        );
    }

    fn kinds_of(store: &Store, company: i64, user: Uuid) -> Vec<NotificationKind> {
        store
            .notifications_of(company, user)
            .unwrap()
            .iter()
            .map(|n| n.kind)
            .collect()
    }

    #[test]
    fn notifications_follow_creation_comments_reassignment_and_tickets() {
        let mut f = fixture();
        let mut t = NewTask::new(f.ws, f.tt, "Post");
        t.created_by = Some(f.owner);
        let id = f
            .store
            .add_task(f.company, t, &BTreeMap::new(), now())
            .unwrap();
        // ed executes phase a; the owner executes b and c (chain) but is told once.
        assert_eq!(
            kinds_of(&f.store, f.company, f.ed),
            [NotificationKind::TaskCreated]
        );
        let own = f.store.notifications_of(f.company, f.owner).unwrap();
        assert_eq!(own.len(), 1);
        assert_eq!(own[0].created_by, Some(f.owner), "the actor is recorded");
        assert_eq!(own[0].task_id, Some(id));
        assert_eq!(own[0].workspace_id, Some(f.ws));

        let comment = |author| NewComment {
            task_id: id,
            description: "<div>oi</div>".into(),
            author_id: author,
            created_at: None,
        };
        f.store
            .add_comment(f.company, comment(Some(f.owner)), now())
            .unwrap();
        assert_eq!(
            kinds_of(&f.store, f.company, f.ed).last(),
            Some(&NotificationKind::TaskComment),
            "the current executor hears of comments"
        );
        assert!(
            f.store
                .add_comment(
                    f.company,
                    NewComment {
                        task_id: 1,
                        ..comment(None)
                    },
                    now()
                )
                .is_err()
        );

        f.store
            .move_task_phase(f.company, id, f.phases[1], None, Some(f.ed), now())
            .unwrap();
        let last = f.store.notifications_of(f.company, f.owner).unwrap();
        let last = last.last().unwrap();
        assert_eq!(last.kind, NotificationKind::TaskAssigned);
        assert_eq!(last.created_by, Some(f.ed));
        assert!(last.message.contains("\"b\""), "{}", last.message);

        let to_ed = TaskEdit {
            executor_id: Some(f.ed),
            ..TaskEdit::default()
        };
        f.store
            .edit_task(f.company, id, to_ed.clone(), None, now())
            .unwrap();
        // Setting the same executor again is no reassignment.
        f.store
            .edit_task(f.company, id, to_ed, None, now())
            .unwrap();
        assert_eq!(
            kinds_of(&f.store, f.company, f.ed),
            [
                NotificationKind::TaskCreated,
                NotificationKind::TaskComment,
                NotificationKind::TaskAssigned
            ]
        );

        let ticket = f
            .store
            .add_ticket(
                f.company,
                NewTicket {
                    workspace_id: f.ws,
                    subject: "Ajuda".into(),
                    ticket_type: 1,
                    requester_email: "ed@x.com".into(),
                    created_by: Some(f.ed),
                    ..NewTicket::default()
                },
                now(),
            )
            .unwrap();
        let last = f.store.notifications_of(f.company, f.owner).unwrap();
        let last = last.last().unwrap();
        assert_eq!(last.kind, NotificationKind::TicketAssigned);
        assert_eq!(last.ticket_id, Some(ticket));
    }

    #[test]
    fn time_trackings_add_to_actual_time_and_refuse_what_does_not_fit() {
        let mut f = fixture();
        let at = now() - Duration::hours(1);
        let id = f
            .store
            .add_task(
                f.company,
                NewTask {
                    creation_date: Some(at),
                    ..NewTask::new(f.ws, f.tt, "t")
                },
                &BTreeMap::new(),
                at,
            )
            .unwrap();
        let other_ws = f
            .store
            .add_workspace(
                f.company,
                NewWorkspace {
                    name: "outro".into(),
                    ..NewWorkspace::default()
                },
                now(),
            )
            .unwrap();
        let start = now() - Duration::minutes(120);
        let entry = NewTimeTracking {
            task_id: Some(id),
            phase_id: Some(f.phases[0]),
            user_id: Some(f.ed),
            start_date: Some(start),
            end_date: Some(start + Duration::minutes(90)),
            ..NewTimeTracking::default()
        };
        let before = format!("{:?}", f.store.dump(f.company).unwrap());
        for (bad, want) in [
            (
                NewTimeTracking {
                    workspace_id: Some(other_ws),
                    ..entry.clone()
                },
                208,
            ),
            (
                NewTimeTracking {
                    phase_id: Some(1),
                    ..entry.clone()
                },
                108,
            ),
            (
                NewTimeTracking {
                    start_date: None,
                    ..entry.clone()
                },
                10,
            ),
            (
                NewTimeTracking {
                    end_date: Some(start - Duration::minutes(1)),
                    ..entry.clone()
                },
                12,
            ),
            (
                NewTimeTracking {
                    task_id: None,
                    ..entry.clone()
                },
                10,
            ),
        ] {
            let err = f
                .store
                .add_time_tracking(f.company, bad, now())
                .unwrap_err();
            assert_eq!(err.id, want, "{err}");
        }
        assert_eq!(before, format!("{:?}", f.store.dump(f.company).unwrap()));

        let tt = f.store.add_time_tracking(f.company, entry, now()).unwrap();
        let data = f.store.company(f.company).unwrap();
        assert_eq!(data.time_trackings[&tt].effort_minutes, 90);
        assert_eq!(data.time_trackings[&tt].workspace_id, f.ws, "from the task");
        assert_eq!(data.tasks[&id].actual_time, 90);
        assert!(data.tasks[&id].updated_at > at, "the task changed");
    }
}
