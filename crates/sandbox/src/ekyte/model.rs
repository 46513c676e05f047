//! The simulator's records, one set per company (API.md §7).
//!
//! These are the simulator's internal truth, not a wire format: instants are UTC, names are
//! snake_case, and everything the surfaces serve is rendered from here. The control API's dump
//! serialises these types as they are, so a test can compare both sides field by field.
//!
//! Fields marked "internal" (`updated_at`, `phase_changed_at`, …) are never served: eKyte has no
//! `updatedSince` filter (API.md §"Not publicly documented" 5); they only drive the 15-minute
//! polling windows of the automation API (§4.1).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Task situation codes (API.md §7: 10 active, 20 paused, 30 completed, 40 cancelled).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Situation {
    #[default]
    Active,
    Paused,
    Completed,
    Cancelled,
}

impl Situation {
    pub fn code(self) -> i64 {
        match self {
            Self::Active => 10,
            Self::Paused => 20,
            Self::Completed => 30,
            Self::Cancelled => 40,
        }
    }

    pub fn from_code(code: i64) -> Option<Self> {
        match code {
            10 => Some(Self::Active),
            20 => Some(Self::Paused),
            30 => Some(Self::Completed),
            40 => Some(Self::Cancelled),
            _ => None,
        }
    }
}

/// A person's profile in one company (API.md §7: admin/owner, editor, guest).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Profile {
    Owner,
    Admin,
    #[default]
    Editor,
    Guest,
}

impl Profile {
    /// Owners and admins see every workspace and may create workspaces (SRV `PostWorkspace`).
    pub fn is_admin(self) -> bool {
        matches!(self, Self::Owner | Self::Admin)
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::Owner => "Owner",
            Self::Admin => "Admin",
            Self::Editor => "Editor",
            Self::Guest => "Guest",
        }
    }
}

/// The eKyte tenant.
#[derive(Debug, Clone, Serialize)]
pub struct Company {
    pub id: i64,
    pub name: String,
    #[serde(serialize_with = "ser_tz")]
    pub timezone: Tz,
    pub api_key: String,
    /// Company setting: only admins/owners may create tasks (SRV `PostTask`).
    pub only_admins_create_tasks: bool,
    /// Company-level team: who executes a phase when neither the task type nor the workspace
    /// names someone (SRV `PostTask` executor chain, third step).
    pub phase_team: BTreeMap<i64, Uuid>,
}

fn ser_tz<S: serde::Serializer>(tz: &Tz, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(tz.name())
}

/// A person. One person may belong to several companies; e-mails are unique system-wide.
#[derive(Debug, Clone, Serialize)]
pub struct User {
    pub id: Uuid,
    pub user_name: String,
    pub email: String,
}

/// A person's place in one company.
#[derive(Debug, Clone, Serialize)]
pub struct Membership {
    pub profile: Profile,
    /// Personal MCP token (API.md §2.2), scoped to this company.
    pub mcp_token: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Squad {
    pub id: i64,
    pub name: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Workspace {
    pub id: i64,
    pub name: String,
    pub description: Option<String>,
    pub active: bool,
    /// Free string set on create (API.md §4.2, §7). Not unique: eKyte does not enforce it.
    pub external_id: Option<String>,
    pub squad_id: Option<i64>,
    pub members: BTreeSet<Uuid>,
    /// Workspace team: executor per phase, second step of the executor chain.
    pub phase_team: BTreeMap<i64, Uuid>,
    pub created_by: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    /// Internal change clock.
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Phase {
    pub id: i64,
    pub name: String,
    pub sequential: bool,
    /// Days the phase is planned to take.
    pub duration_days: u32,
    /// Planned effort in minutes.
    pub effort_minutes: u32,
    pub active: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Workflow {
    pub id: i64,
    pub name: String,
    pub active: bool,
    /// In order: the first active phase is where a new task starts.
    pub phases: Vec<Phase>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TaskType {
    pub id: i64,
    pub name: String,
    pub active: bool,
    pub workflow_id: i64,
    pub group: Option<String>,
    /// First step of the executor chain: the task type's default executor per phase.
    pub default_executors: BTreeMap<i64, Uuid>,
}

/// One phase of one task's own flow (copied from the workflow at creation).
#[derive(Debug, Clone, Serialize)]
pub struct FlowPhase {
    pub phase_id: i64,
    pub name: String,
    pub sequential: bool,
    pub active: bool,
    pub duration_days: u32,
    pub effort_minutes: u32,
    pub executor_id: Option<Uuid>,
    pub phase_start_date: Option<DateTime<Utc>>,
    pub phase_due_date: Option<DateTime<Utc>>,
    pub concluded_date: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Comment {
    pub id: i64,
    /// HTML.
    pub description: String,
    /// `None` when written through an anonymous MCP session (API.md §2.2).
    pub author_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
}

/// `CtcTask`.
#[derive(Debug, Clone, Serialize)]
pub struct Task {
    pub id: i64,
    pub title: String,
    /// HTML.
    pub description: String,
    pub situation: Situation,
    pub task_type_id: i64,
    pub workspace_id: i64,
    pub project_id: Option<i64>,
    pub phase_id: Option<i64>,
    pub executor_id: Option<Uuid>,
    pub flow: Vec<FlowPhase>,
    /// 0–100 bands (SRV): 0 none, 1–25 low, 26–50 medium, 51–75 high, 76–100 urgent.
    pub priority_group: i64,
    /// Raw priority; its scale is unconfirmed (API.md §7).
    pub priority: i64,
    pub quantity: i64,
    pub estimated_time: i64,
    pub actual_time: i64,
    pub creation_date: DateTime<Utc>,
    pub original_due_date: Option<DateTime<Utc>>,
    pub current_due_date: Option<DateTime<Utc>>,
    pub phase_start_date: Option<DateTime<Utc>>,
    pub phase_due_date: Option<DateTime<Utc>>,
    pub resolved_date: Option<DateTime<Utc>>,
    /// `None` when created through an anonymous MCP session.
    pub created_by: Option<Uuid>,
    pub comments: Vec<Comment>,
    /// Internal change clock (any change, comments included).
    pub updated_at: DateTime<Utc>,
    /// Internal: when the task entered its current phase (creation counts).
    pub phase_changed_at: DateTime<Utc>,
}

/// An unplanned project task (`PlanTask = false`, SRV): a template row inside a project,
/// invisible to task lists.
#[derive(Debug, Clone, Serialize)]
pub struct ProjectTask {
    pub id: i64,
    pub title: String,
    pub task_type_id: i64,
    pub executor_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
}

/// `CtcTaskProject`.
#[derive(Debug, Clone, Serialize)]
pub struct Project {
    pub id: i64,
    pub workspace_id: i64,
    pub name: String,
    pub alias: String,
    pub description: Option<String>,
    /// 1 = active ([c:52223928784]).
    pub situation: i64,
    pub start_date: DateTime<Utc>,
    pub end_date: Option<DateTime<Utc>>,
    pub tags: Vec<String>,
    pub created_by: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub unplanned_tasks: Vec<ProjectTask>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BoardCategory {
    pub id: i64,
    pub name: String,
}

/// A board (`Plan`).
#[derive(Debug, Clone, Serialize)]
pub struct Board {
    pub id: i64,
    pub title: String,
    pub description: Option<String>,
    pub workspace_id: Option<i64>,
    pub categories: Vec<BoardCategory>,
    pub created_by: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A board note (`PlanFields`).
#[derive(Debug, Clone, Serialize)]
pub struct Note {
    pub id: i64,
    pub board_id: i64,
    pub category_id: Option<i64>,
    pub title: String,
    pub description: Option<String>,
    /// HTML.
    pub content: String,
    pub created_by: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub updated_by: Option<Uuid>,
    pub updated_at: DateTime<Utc>,
}

/// Ticket status (values per [c:52223928784], unverified).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TicketStatus {
    Processing,
    Waiting,
    Resolved,
    Cancelled,
}

impl TicketStatus {
    pub fn code(self) -> i64 {
        match self {
            Self::Processing => 1,
            Self::Waiting => 2,
            Self::Resolved => 3,
            Self::Cancelled => 9,
        }
    }

    pub fn from_code(code: i64) -> Option<Self> {
        match code {
            1 => Some(Self::Processing),
            2 => Some(Self::Waiting),
            3 => Some(Self::Resolved),
            9 => Some(Self::Cancelled),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Ticket {
    pub id: i64,
    pub workspace_id: i64,
    pub project_id: Option<i64>,
    pub subject: String,
    pub message: String,
    pub ticket_type: i64,
    pub status: TicketStatus,
    pub requester_id: Uuid,
    pub analyst_id: Option<Uuid>,
    pub cc: Vec<Uuid>,
    pub priority_group: i64,
    pub expect_due_date: Option<DateTime<Utc>>,
    pub created_by: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    /// Internal change clock.
    pub updated_at: DateTime<Utc>,
    pub concluded_at: Option<DateTime<Utc>>,
}

/// Why a person was notified. eKyte's notification types are unpublished (API.md §4.1 names only
/// `GetZapierNotificationsAsync`); these are the events API.md mentions or implies, numbered by
/// the simulator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotificationKind {
    /// A task the person executes a phase of was created (API.md §4.2 `PostTask`: "a creation
    /// notification is sent").
    TaskCreated,
    /// Someone commented on a task the person currently executes.
    TaskComment,
    /// The person became the executor of a task's current phase (phase move or reassignment).
    TaskAssigned,
    /// A ticket was assigned to the person as analyst.
    TicketAssigned,
}

impl NotificationKind {
    pub fn code(self) -> i64 {
        match self {
            Self::TaskCreated => 1,
            Self::TaskComment => 2,
            Self::TaskAssigned => 3,
            Self::TicketAssigned => 4,
        }
    }
}

/// One notification of one person in one company (API.md §7: "Notification (per user)").
#[derive(Debug, Clone, Serialize)]
pub struct Notification {
    pub id: i64,
    /// Who is notified.
    pub user_id: Uuid,
    pub kind: NotificationKind,
    pub title: String,
    pub message: String,
    pub task_id: Option<i64>,
    pub ticket_id: Option<i64>,
    pub workspace_id: Option<i64>,
    /// Who caused it; `None` for the web app's unattributed actions and anonymous MCP writes.
    pub created_by: Option<Uuid>,
    pub created_at: DateTime<Utc>,
}

/// A time entry ("apontamento", API.md §3.3, §7).
#[derive(Debug, Clone, Serialize)]
pub struct TimeTracking {
    pub id: i64,
    pub workspace_id: i64,
    pub task_id: Option<i64>,
    pub phase_id: Option<i64>,
    /// Whose time it is.
    pub user_id: Option<Uuid>,
    pub start_date: DateTime<Utc>,
    pub end_date: Option<DateTime<Utc>>,
    /// Minutes (API.md §3.3 `effort`).
    pub effort_minutes: i64,
    /// API.md §3.3 `accomplishedHourlyRate`; its meaning (money per hour) is a guess.
    pub accomplished_hourly_rate: f64,
    pub comment: Option<String>,
    /// When the entry was recorded (`createdIn`), which may be long after `start_date`.
    pub created_at: DateTime<Utc>,
}

/// Everything one company holds.
#[derive(Debug, Clone)]
pub struct CompanyData {
    pub company: Company,
    pub members: BTreeMap<Uuid, Membership>,
    pub squads: BTreeMap<i64, Squad>,
    pub workspaces: BTreeMap<i64, Workspace>,
    pub workflows: BTreeMap<i64, Workflow>,
    pub task_types: BTreeMap<i64, TaskType>,
    pub tasks: BTreeMap<i64, Task>,
    pub projects: BTreeMap<i64, Project>,
    pub boards: BTreeMap<i64, Board>,
    pub notes: BTreeMap<i64, Note>,
    pub tickets: BTreeMap<i64, Ticket>,
    pub notifications: BTreeMap<i64, Notification>,
    pub time_trackings: BTreeMap<i64, TimeTracking>,
}

impl CompanyData {
    pub fn new(company: Company) -> Self {
        Self {
            company,
            members: BTreeMap::new(),
            squads: BTreeMap::new(),
            workspaces: BTreeMap::new(),
            workflows: BTreeMap::new(),
            task_types: BTreeMap::new(),
            tasks: BTreeMap::new(),
            projects: BTreeMap::new(),
            boards: BTreeMap::new(),
            notes: BTreeMap::new(),
            tickets: BTreeMap::new(),
            notifications: BTreeMap::new(),
            time_trackings: BTreeMap::new(),
        }
    }

    /// The company owner: the last step of the executor chain. With no owner, the first admin.
    pub fn owner(&self) -> Option<Uuid> {
        let by = |p: Profile| {
            self.members
                .iter()
                .find(|(_, m)| m.profile == p)
                .map(|(id, _)| *id)
        };
        by(Profile::Owner).or_else(|| by(Profile::Admin))
    }

    pub fn profile(&self, user: Uuid) -> Option<Profile> {
        self.members.get(&user).map(|m| m.profile)
    }

    /// Whether `user` may see workspace `ws`: admins see all, others only where they are
    /// members (API.md §2.2 "what the user may see"; the exact rule is an assumption).
    pub fn can_see_workspace(&self, user: Uuid, ws: &Workspace) -> bool {
        match self.profile(user) {
            Some(p) if p.is_admin() => true,
            Some(_) => ws.members.contains(&user),
            None => false,
        }
    }
}

/// One company's full state, as the control API dumps it.
#[derive(Debug, Clone, Serialize)]
pub struct CompanyDump {
    pub company: Company,
    pub users: Vec<DumpUser>,
    pub squads: Vec<Squad>,
    pub workspaces: Vec<Workspace>,
    pub workflows: Vec<Workflow>,
    pub task_types: Vec<TaskType>,
    pub tasks: Vec<Task>,
    pub projects: Vec<Project>,
    pub boards: Vec<Board>,
    pub notes: Vec<Note>,
    pub tickets: Vec<Ticket>,
    pub notifications: Vec<Notification>,
    pub time_trackings: Vec<TimeTracking>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DumpUser {
    pub id: Uuid,
    pub user_name: String,
    pub email: String,
    pub profile: Profile,
    pub mcp_token: Option<String>,
}

impl CompanyData {
    pub fn dump(&self, users: &std::collections::HashMap<Uuid, User>) -> CompanyDump {
        CompanyDump {
            company: self.company.clone(),
            users: self
                .members
                .iter()
                .filter_map(|(id, m)| {
                    users.get(id).map(|u| DumpUser {
                        id: u.id,
                        user_name: u.user_name.clone(),
                        email: u.email.clone(),
                        profile: m.profile,
                        mcp_token: m.mcp_token.clone(),
                    })
                })
                .collect(),
            squads: self.squads.values().cloned().collect(),
            workspaces: self.workspaces.values().cloned().collect(),
            workflows: self.workflows.values().cloned().collect(),
            task_types: self.task_types.values().cloned().collect(),
            tasks: self.tasks.values().cloned().collect(),
            projects: self.projects.values().cloned().collect(),
            boards: self.boards.values().cloned().collect(),
            notes: self.notes.values().cloned().collect(),
            tickets: self.tickets.values().cloned().collect(),
            notifications: self.notifications.values().cloned().collect(),
            time_trackings: self.time_trackings.values().cloned().collect(),
        }
    }
}
