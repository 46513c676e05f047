//! The eKyte side: workspaces, tasks, board notes and comments, what the credentials allow,
//! and change polling (eKyte sends no webhooks).
//!
//! eKyte's API is split (eKyte API.md §1): reads through the public `/v1.x` API, creates
//! through the automation API, updates and comments through the MCP endpoint with a personal
//! token. [`EkyteApi::capabilities`] says which of the operations below the tenant's
//! credentials allow; an operation outside them returns `Unsupported` **without any request**.
//!
//! Records come back in canonical shape, dates converted from the tenant's eKyte time zone to
//! UTC, bodies from HTML to canonical text — but not otherwise normalised (the engine does it).
//!
//! Error contract, for every method unless its doc says more:
//! - `NotFound` when the id does not exist (or the MCP answers an empty record for it);
//! - `Unauthorized` for a rejected API key or company mismatch (HTTP 401), or an MCP token
//!   that resolves to an anonymous identity (checked before the first write);
//! - `Invalid` for HTTP 400/404 `{Id, Text}` errors of the automation API, keeping eKyte's
//!   text, and for JSON-RPC errors caused by the arguments;
//! - `Unsupported` as above;
//! - `RateLimited` / `Transient` when 429 / 5xx / timeouts persist past the adapter's bounded
//!   retries (idempotent requests only; creates are resolved by lookup first);
//! - `Unknown` for anything else.

use std::collections::BTreeSet;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use domain::{
    EkyteBoardId, EkyteCommentId, EkyteNoteId, EkyteTaskId, EkyteWorkspaceId, ExternalRef,
    FieldChange, Task, TaskStatus,
};

use crate::error::ApiError;
use crate::scope::Scope;

/// An operation on eKyte, for capability checks and audit entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EkyteOp {
    Read,
    CreateWorkspace,
    CreateTask,
    CreateBoard,
    CreateNote,
    UpdateWorkspace,
    DeactivateWorkspace,
    UpdateTask,
    SetTaskStatus,
    CreateComment,
    UpdateNote,
    ReadNote,
}

impl EkyteOp {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::CreateWorkspace => "create_workspace",
            Self::CreateTask => "create_task",
            Self::CreateBoard => "create_board",
            Self::CreateNote => "create_note",
            Self::UpdateWorkspace => "update_workspace",
            Self::DeactivateWorkspace => "deactivate_workspace",
            Self::UpdateTask => "update_task",
            Self::SetTaskStatus => "set_task_status",
            Self::CreateComment => "create_comment",
            Self::UpdateNote => "update_note",
            Self::ReadNote => "read_note",
        }
    }
}

/// What the configured credentials allow.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Capabilities {
    pub allowed: BTreeSet<EkyteOp>,
}

impl Capabilities {
    pub fn allows(&self, op: EkyteOp) -> bool {
        self.allowed.contains(&op)
    }

    /// API key alone: read and create (public + automation APIs).
    pub fn api_key_only() -> Self {
        use EkyteOp::*;
        Self {
            allowed: [Read, CreateWorkspace, CreateTask, CreateBoard, CreateNote].into(),
        }
    }

    /// API key plus an MCP token: also update, comment, deactivate, read notes.
    pub fn with_mcp() -> Self {
        use EkyteOp::*;
        let mut c = Self::api_key_only();
        c.allowed.extend([
            UpdateWorkspace,
            DeactivateWorkspace,
            UpdateTask,
            SetTaskStatus,
            CreateComment,
            UpdateNote,
            ReadNote,
        ]);
        c
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workspace {
    pub id: EkyteWorkspaceId,
    pub name: String,
    pub active: bool,
    /// The `ExternalId`, when the surface that read the workspace shows it.
    pub external_id: Option<String>,
}

/// A workspace as this service wants it after an update: every field it owns, whole. MCP
/// `update_workspace` may replace what it is given and clear the rest (docs/fidelity.md), so
/// an update names all of them, not only the one that changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkspaceTarget {
    pub name: String,
    /// `false` deactivates: eKyte has no delete.
    pub active: bool,
    /// The GHL record the workspace stands for, written back as its `ExternalId`; `None` when
    /// the caller does not know it (the `ExternalId` is then left out of the call).
    pub external: Option<ExternalRef>,
}

/// What [`EkyteApi::find_workspace`] could tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkspaceFound {
    /// Reads show `ExternalId`: the workspace that carries it, if any.
    ByExternalId(Option<Workspace>),
    /// Reads do not show `ExternalId`: the active workspaces with the name asked for, any of
    /// which may be the one sought, or none.
    Named(Vec<Workspace>),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EkyteComment {
    pub id: EkyteCommentId,
    pub task: EkyteTaskId,
    /// Canonical text (converted from eKyte's HTML).
    pub body: Option<String>,
    pub author: Option<String>,
    pub created: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EkyteTask {
    pub id: EkyteTaskId,
    pub workspace: EkyteWorkspaceId,
    /// Canonical task: title, body (text), due (`currentDueDate`, UTC), status from the
    /// situation (10/20 open, 30 completed, 40 cancelled). eKyte carries no assignee here.
    pub task: Task,
    /// Present when read with comments.
    pub comments: Vec<EkyteComment>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Board {
    pub id: EkyteBoardId,
    pub workspace: Option<EkyteWorkspaceId>,
    pub title: String,
}

/// A note as a board lists it (MCP `get_detailed_board`): no content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BoardNote {
    pub id: EkyteNoteId,
    pub title: String,
}

/// A board note to write: the title and the HTML content eKyte stores.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoteContent {
    pub title: String,
    pub html: String,
}

/// The eKyte API.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait EkyteApi: Send + Sync {
    /// What the tenant's credentials allow. `Unauthorized` when there are no credentials.
    async fn capabilities(&self, scope: &Scope) -> Result<Capabilities, ApiError>;

    /// Ask eKyte whether the tenant can work (an operator's check): what is wrong with its
    /// setup (the user, the task type, the MCP token), empty when nothing is.
    /// `Unauthorized` when the API key itself is refused or missing; `Unsupported` by default.
    async fn check(&self, _scope: &Scope) -> Result<Vec<String>, ApiError> {
        Err(ApiError::unsupported("checking the eKyte setup"))
    }

    /// Every workspace of the company (all pages).
    async fn list_workspaces(&self, scope: &Scope) -> Result<Vec<Workspace>, ApiError>;

    /// One workspace, active or not. `NotFound` when it does not exist.
    ///
    /// `name_hint` is the name the caller last saw. eKyte's read API has no read by id, so an
    /// adapter may look among the workspaces of that name first, and must fall back to the
    /// whole listing when the workspace is not among them (it was renamed).
    async fn get_workspace<'a>(
        &self,
        scope: &Scope,
        id: EkyteWorkspaceId,
        name_hint: Option<&'a str>,
    ) -> Result<Workspace, ApiError>;

    /// Create a workspace with this `ExternalId` (automation API). A create whose outcome is
    /// unknown is resolved by looking the `ExternalId` up before any retry.
    async fn create_workspace(
        &self,
        scope: &Scope,
        name: &str,
        external: &ExternalRef,
    ) -> Result<EkyteWorkspaceId, ApiError>;

    /// The workspace with this `ExternalId`, for recovering a create whose outcome is unknown.
    /// No documented read shows `ExternalId` (API.md §3.3): where none does, the adapter
    /// answers [`WorkspaceFound::Named`] with the active workspaces called exactly `name`, and
    /// the caller tells its own from the others (the link store knows which are taken).
    /// `Unsupported` only when neither can be read.
    async fn find_workspace<'a>(
        &self,
        scope: &Scope,
        external: &ExternalRef,
        name: &'a str,
    ) -> Result<WorkspaceFound, ApiError>;

    /// Bring a workspace to `target` (MCP `update_workspace`): a rename, or a deactivation
    /// (eKyte has no delete). Needs the capability of what the call does: `UpdateWorkspace`
    /// for an active target, `DeactivateWorkspace` for an inactive one. `Invalid` for an empty
    /// name, `NotFound` when the workspace is gone or out of the token's sight.
    async fn update_workspace(
        &self,
        scope: &Scope,
        id: EkyteWorkspaceId,
        target: &WorkspaceTarget,
    ) -> Result<(), ApiError>;

    /// Tasks of a workspace, every situation, every page; with comments when asked.
    async fn list_tasks(
        &self,
        scope: &Scope,
        workspace: EkyteWorkspaceId,
        with_comments: bool,
    ) -> Result<Vec<EkyteTask>, ApiError>;

    /// One task (with its comments).
    async fn get_task(&self, scope: &Scope, id: EkyteTaskId) -> Result<EkyteTask, ApiError>;

    /// Create a task (automation API) with the tenant's task type; executors come from the
    /// workflow. `Invalid` when the tenant has no task type or user e-mail configured, or the
    /// task has no title or due date. A create whose outcome is unknown is resolved by a
    /// lookup (title + workspace + due) before any retry.
    async fn create_task(
        &self,
        scope: &Scope,
        workspace: EkyteWorkspaceId,
        task: &Task,
    ) -> Result<EkyteTaskId, ApiError>;

    /// Change title / body / due (MCP `update_task`). `target` is the whole task as eKyte
    /// should hold it afterwards: whether `update_task` patches the fields it is given or
    /// replaces the task's fields with them is not documented (API.md §5), so an adapter may
    /// send every field it owns.
    async fn update_task<'a>(
        &self,
        scope: &Scope,
        id: EkyteTaskId,
        changes: &[FieldChange],
        target: &'a domain::Task,
    ) -> Result<(), ApiError>;

    /// Set the situation (MCP): open 10, completed 30, cancelled 40.
    async fn set_task_status(
        &self,
        scope: &Scope,
        id: EkyteTaskId,
        status: TaskStatus,
    ) -> Result<(), ApiError>;

    /// Add a comment to a task (MCP `create_task_comment`); `html` as eKyte stores it.
    async fn create_comment(
        &self,
        scope: &Scope,
        task: EkyteTaskId,
        html: &str,
    ) -> Result<EkyteCommentId, ApiError>;

    /// Boards of a workspace.
    async fn list_boards(
        &self,
        scope: &Scope,
        workspace: EkyteWorkspaceId,
    ) -> Result<Vec<Board>, ApiError>;

    /// Create a board in a workspace (automation API).
    async fn create_board(
        &self,
        scope: &Scope,
        workspace: EkyteWorkspaceId,
        title: &str,
    ) -> Result<EkyteBoardId, ApiError>;

    /// Create a note on a board (automation API).
    async fn create_note(
        &self,
        scope: &Scope,
        board: EkyteBoardId,
        note: &NoteContent,
    ) -> Result<EkyteNoteId, ApiError>;

    /// The notes of a board, ids and titles (MCP `get_detailed_board`; no other surface reads
    /// notes). `Unsupported` without an MCP token; an empty list for a board eKyte does not
    /// show.
    async fn list_notes(
        &self,
        scope: &Scope,
        board: EkyteBoardId,
    ) -> Result<Vec<BoardNote>, ApiError>;

    /// Replace a note's title and content (MCP `update_board_note`).
    async fn update_note(
        &self,
        scope: &Scope,
        id: EkyteNoteId,
        note: &NoteContent,
    ) -> Result<(), ApiError>;
}

/// A change found by polling eKyte.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EkyteChange {
    /// A workspace with no link (made in eKyte by a person).
    WorkspaceCreated { workspace: Workspace },
    /// A linked workspace's name changed.
    WorkspaceRenamed { workspace: Workspace },
    /// A linked workspace was deactivated.
    WorkspaceDeactivated { workspace: Workspace },
    /// A task with no link in a linked workspace.
    TaskCreated { task: EkyteTask },
    /// A linked task whose fingerprint changed (title, body, due or status).
    TaskChanged { task: EkyteTask },
    /// A comment with no link on a task of a linked workspace.
    CommentAdded {
        comment: EkyteComment,
        workspace: EkyteWorkspaceId,
    },
}

impl EkyteChange {
    /// A key that is the same for the same observed state, for message ids and dedupe.
    pub fn dedupe_key(&self) -> String {
        match self {
            Self::WorkspaceCreated { workspace } => format!("ws-created:{}", workspace.id),
            Self::WorkspaceRenamed { workspace } => {
                format!("ws-renamed:{}:{}", workspace.id, workspace.name)
            }
            Self::WorkspaceDeactivated { workspace } => format!("ws-deactivated:{}", workspace.id),
            Self::TaskCreated { task } => format!("task-created:{}", task.id),
            Self::TaskChanged { task } => format!(
                "task-changed:{}:{}",
                task.id,
                domain::Fingerprint::of(&task.task)
            ),
            Self::CommentAdded { comment, .. } => format!("comment:{}", comment.id),
        }
    }
}

/// The outcome of one poll.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PollReport {
    pub changes: Vec<EkyteChange>,
    /// HTTP calls this poll made (bounded: one listing of workspaces plus one task listing
    /// per linked workspace, and their extra pages).
    pub calls: u32,
    pub workspaces_seen: u32,
    pub tasks_seen: u32,
    /// The budget ran out before every linked workspace was scanned: a follow-up poll goes
    /// on from where this one stopped, and the pass is complete when one ends with `false`.
    pub more: bool,
}

/// Finds what changed in eKyte since the last poll, by comparing what eKyte shows with the
/// fingerprints in the link store. Records the poll in the run store (checkpoint, counts).
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait EkyteChangeSource: Send + Sync {
    async fn poll(&self, scope: &Scope) -> Result<PollReport, ApiError>;
}
