//! Inputs of the control API and of the Rust handle: records to seed, and the edits a person
//! makes in eKyte's web app.
//!
//! All are plain serde types with defaults for everything optional, so a JSON body names only
//! what it cares about. Instants are UTC (RFC 3339); the vendor surfaces are where local,
//! zone-less dates live.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::model::{NotificationKind, Profile, Situation};

fn yes() -> bool {
    true
}

fn one_i64() -> i64 {
    1
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct NewCompany {
    /// Chosen by the simulator when absent.
    pub id: Option<i64>,
    pub name: String,
    /// Generated (64 hex chars) when absent.
    pub api_key: Option<String>,
    /// IANA name; `America/Sao_Paulo` when absent.
    pub timezone: Option<String>,
    pub only_admins_create_tasks: bool,
    /// Company-level team: phase id → executor.
    pub phase_team: BTreeMap<i64, Uuid>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct NewUser {
    pub id: Option<Uuid>,
    pub user_name: String,
    pub email: String,
    pub profile: Profile,
    /// Personal MCP token; none means the person has not generated one.
    pub mcp_token: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct NewSquad {
    pub name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct NewPhase {
    pub name: String,
    pub sequential: bool,
    pub duration_days: u32,
    pub effort_minutes: u32,
    pub active: bool,
}

impl Default for NewPhase {
    fn default() -> Self {
        Self {
            name: String::new(),
            sequential: true,
            duration_days: 1,
            effort_minutes: 60,
            active: true,
        }
    }
}

impl NewPhase {
    pub fn named(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            ..Self::default()
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewWorkflow {
    pub name: String,
    #[serde(default = "yes")]
    pub active: bool,
    pub phases: Vec<NewPhase>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewTaskType {
    pub name: String,
    pub workflow_id: i64,
    #[serde(default = "yes")]
    pub active: bool,
    #[serde(default)]
    pub group: Option<String>,
    /// Phase id → default executor (first step of the executor chain).
    #[serde(default)]
    pub default_executors: BTreeMap<i64, Uuid>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct NewWorkspace {
    pub name: String,
    pub description: Option<String>,
    pub active: bool,
    pub external_id: Option<String>,
    pub squad_id: Option<i64>,
    pub members: Vec<Uuid>,
    /// Phase id → executor (second step of the executor chain).
    pub phase_team: BTreeMap<i64, Uuid>,
    pub created_by: Option<Uuid>,
    /// Backdate the record (also its change clock); now when absent.
    pub created_at: Option<DateTime<Utc>>,
}

impl Default for NewWorkspace {
    fn default() -> Self {
        Self {
            name: String::new(),
            description: None,
            active: true,
            external_id: None,
            squad_id: None,
            members: Vec::new(),
            phase_team: BTreeMap::new(),
            created_by: None,
            created_at: None,
        }
    }
}

/// A task to seed. Unlike the automation API, seeding may set anything: situation, dates,
/// executor, author.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewTask {
    pub workspace_id: i64,
    pub task_type_id: i64,
    pub title: String,
    /// HTML, stored as given.
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub situation: Situation,
    #[serde(default)]
    pub project_id: Option<i64>,
    #[serde(default)]
    pub current_due_date: Option<DateTime<Utc>>,
    /// Defaults to `current_due_date`.
    #[serde(default)]
    pub original_due_date: Option<DateTime<Utc>>,
    #[serde(default)]
    pub phase_start_date: Option<DateTime<Utc>>,
    #[serde(default)]
    pub phase_due_date: Option<DateTime<Utc>>,
    /// Backdate the task (also its change clocks); now when absent.
    #[serde(default)]
    pub creation_date: Option<DateTime<Utc>>,
    /// Completed tasks get the creation date when absent.
    #[serde(default)]
    pub resolved_date: Option<DateTime<Utc>>,
    /// Start in this phase instead of the first active one.
    #[serde(default)]
    pub phase_id: Option<i64>,
    /// Executor of the starting phase; the executor chain decides when absent.
    #[serde(default)]
    pub executor_id: Option<Uuid>,
    #[serde(default)]
    pub priority_group: i64,
    #[serde(default)]
    pub priority: i64,
    #[serde(default = "one_i64")]
    pub quantity: i64,
    #[serde(default)]
    pub estimated_time: Option<i64>,
    #[serde(default)]
    pub created_by: Option<Uuid>,
}

impl NewTask {
    pub fn new(workspace_id: i64, task_type_id: i64, title: &str) -> Self {
        Self {
            workspace_id,
            task_type_id,
            title: title.to_owned(),
            description: String::new(),
            situation: Situation::Active,
            project_id: None,
            current_due_date: None,
            original_due_date: None,
            phase_start_date: None,
            phase_due_date: None,
            creation_date: None,
            resolved_date: None,
            phase_id: None,
            executor_id: None,
            priority_group: 0,
            priority: 0,
            quantity: 1,
            estimated_time: None,
            created_by: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewComment {
    pub task_id: i64,
    /// HTML.
    pub description: String,
    #[serde(default)]
    pub author_id: Option<Uuid>,
    #[serde(default)]
    pub created_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct NewProject {
    pub workspace_id: i64,
    pub name: String,
    /// ≤ 15 chars; derived from the name when absent (API.md §4.2 `/projects`).
    pub alias: Option<String>,
    pub description: Option<String>,
    pub start_date: Option<DateTime<Utc>>,
    pub end_date: Option<DateTime<Utc>>,
    pub tags: Vec<String>,
    pub created_by: Option<Uuid>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct NewBoard {
    pub title: String,
    pub description: Option<String>,
    pub workspace_id: Option<i64>,
    pub categories: Vec<String>,
    pub created_by: Option<Uuid>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct NewNote {
    pub board_id: i64,
    pub title: String,
    pub description: Option<String>,
    /// HTML.
    pub content: String,
    /// Category name, matched case/accent-insensitively; created when missing.
    pub category: Option<String>,
    pub created_by: Option<Uuid>,
}

/// What a person changes on a task in the web app. Absent fields stay as they are.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct TaskEdit {
    pub title: Option<String>,
    pub description: Option<String>,
    pub current_due_date: Option<DateTime<Utc>>,
    pub phase_start_date: Option<DateTime<Utc>>,
    pub phase_due_date: Option<DateTime<Utc>>,
    pub situation: Option<Situation>,
    pub priority_group: Option<i64>,
    pub priority: Option<i64>,
    pub estimated_time: Option<i64>,
    pub executor_id: Option<Uuid>,
}

/// What a person changes on a workspace. Absent fields stay as they are.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct WorkspaceEdit {
    pub name: Option<String>,
    pub description: Option<String>,
    pub active: Option<bool>,
    pub external_id: Option<String>,
    pub squad_id: Option<i64>,
}

/// What a person changes on a board note. Absent fields stay as they are.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct NoteEdit {
    pub title: Option<String>,
    pub description: Option<String>,
    pub content: Option<String>,
    /// Category name (matched like on create; created when missing).
    pub category: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct NewTicket {
    pub workspace_id: i64,
    pub project_id: Option<i64>,
    pub subject: String,
    pub message: String,
    /// Numeric, > 0 (API.md §4.2 `/tickets`).
    pub ticket_type: i64,
    pub requester_email: String,
    /// E-mails; unknown ones become Guest users.
    pub cc: Vec<String>,
    pub priority_group: i64,
    pub expect_due_date: Option<DateTime<Utc>>,
    pub created_by: Option<Uuid>,
}

/// A notification to seed. The simulator also creates notifications itself when tasks are
/// created, commented or reassigned and tickets assigned; this is for anything else.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewNotification {
    /// Who is notified; must be a member of the company.
    pub user_id: Uuid,
    pub kind: NotificationKind,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub task_id: Option<i64>,
    #[serde(default)]
    pub ticket_id: Option<i64>,
    /// Taken from the task or ticket when absent.
    #[serde(default)]
    pub workspace_id: Option<i64>,
    #[serde(default)]
    pub created_by: Option<Uuid>,
    /// Backdate it (outside the polling window, say); now when absent.
    #[serde(default)]
    pub created_at: Option<DateTime<Utc>>,
}

/// A time entry to seed (eKyte's web app, MCP `create_time_tracking`, API.md §5).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct NewTimeTracking {
    /// Taken from the task when absent.
    pub workspace_id: Option<i64>,
    pub task_id: Option<i64>,
    /// Must be a phase of the task's flow.
    pub phase_id: Option<i64>,
    pub user_id: Option<Uuid>,
    /// Required.
    pub start_date: Option<DateTime<Utc>>,
    pub end_date: Option<DateTime<Utc>>,
    /// Minutes; `end_date - start_date` when absent.
    pub effort_minutes: Option<i64>,
    pub accomplished_hourly_rate: f64,
    pub comment: Option<String>,
    /// When it was recorded (`createdIn`); now when absent.
    pub created_at: Option<DateTime<Utc>>,
}

/// What [`crate::ekyte::EkyteSandbox::seed_default_company`] created.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DefaultCompany {
    pub company_id: i64,
    pub api_key: String,
    pub timezone: String,
    /// Owner of the company, with an MCP token.
    pub admin: SeededUser,
    /// An editor without MCP token, member of the default workspace.
    pub editor: SeededUser,
    pub workflow_id: i64,
    /// In workflow order: "Briefing", "Produção", "Revisão".
    pub phase_ids: Vec<i64>,
    pub task_type_id: i64,
    /// One active workspace ("Cliente Demo"), both users members.
    pub workspace_id: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SeededUser {
    pub id: Uuid,
    pub email: String,
    pub user_name: String,
    pub mcp_token: Option<String>,
}
