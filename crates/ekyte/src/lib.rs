//! The eKyte adapter: implements [`ports::ekyte::EkyteApi`] over eKyte's three API surfaces
//! and [`ports::ekyte::EkyteChangeSource`] by polling (eKyte sends no webhooks).
//!
//! | what | surface (API.md §1) | credential |
//! |---|---|---|
//! | reads: workspaces, tasks with comments, users, task types | A, public BI `/v1.x` | API key |
//! | creates: workspaces (`ExternalId`), tasks, boards, notes; the board listing | B, automation `/n8n` or `/zapier` | API key + `CompanyId` + `UserEmail` |
//! | updates, status, comments, note edits, workspace rename/deactivate | C, MCP `/mcp?token=` | personal MCP token |
//!
//! Guarantees:
//! - [`EkyteAdapter::capabilities`] reads only the credential store: API key alone allows read
//!   and create, an MCP token adds update, status, comment, note edits and deactivation. Any
//!   operation outside them returns `Unsupported` before any request is sent.
//! - Before the first MCP call of a tenant the token's identity is checked with
//!   `get_current_user`; an anonymous identity (how eKyte serves a malformed token) fails with
//!   `Unauthorized` and nothing is written (see `mcp.rs`).
//! - Creates are sent once; when the outcome is unknown (429, 5xx, timeout) the record is
//!   looked up — `ExternalId` for workspaces, title + workspace + due for tasks, title for
//!   boards and notes — and only created again when the lookup shows it is not there.
//! - Dates and bodies follow `mapping.rs`: zone-less eKyte times in the tenant's zone ↔ UTC,
//!   HTML ↔ canonical text. Records are otherwise returned as eKyte shows them.
//! - Secrets never reach a log line or an error message (`error.rs`).

mod client;
pub mod config;
mod creds;
mod dto;
mod error;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
mod mapping;
mod mcp;
pub mod poll;

use std::sync::Arc;

use async_trait::async_trait;
use domain::{
    EkyteBoardId, EkyteCommentId, EkyteNoteId, EkyteTaskId, EkyteTaskTypeId, EkyteWorkspaceId,
    ExternalRef, FieldChange, FieldValue, Task, TaskStatus, Tenant,
};
use ports::ekyte::{
    Board, BoardNote, Capabilities, EkyteApi, EkyteOp, EkyteTask, NoteContent, Workspace,
    WorkspaceFound, WorkspaceTarget,
};
use ports::store::{CredentialSecret, CredentialStore, Provider};
use ports::{ApiError, Scope, StoreError};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::client::{Calls, Http};
use crate::creds::{Creds, CredsCache};
use crate::dto::{
    BoardDto, CommentDto, DetailedBoardDto, Envelope, NewBoardBody, NewNoteBody, NewTaskBody,
    NewWorkspaceBody, TaskDto, TaskTypeDto, UserDto, WorkspaceDto,
};
use crate::error::{from_store, is_retryable, outcome_unknown};
use crate::mcp::{Mcp, ToolOutput};

pub use crate::config::{AutomationApi, ConfigError, EkyteConfig, PollConfig, RetryConfig};
pub use crate::mapping::McpIdentity;
pub use crate::poll::EkytePoller;

/// A member of the eKyte company (`/v1.0/users`, API.md §3.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EkyteUser {
    /// A UUID string.
    pub id: Option<String>,
    pub name: Option<String>,
    pub email: Option<String>,
}

/// A task type (`/v1.0/task-types`, API.md §3.3): it decides the workflow of created tasks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EkyteTaskType {
    pub id: EkyteTaskTypeId,
    pub name: String,
    pub active: bool,
    pub workflow_id: Option<u64>,
}

/// What [`EkyteAdapter::healthcheck`] found about one tenant's eKyte setup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    pub capabilities: Capabilities,
    /// The user behind the MCP token, when one is configured and it is a real user.
    pub mcp_identity: Option<McpIdentity>,
    /// Everything that would make a sync operation fail, in words an operator acts on. Empty
    /// when the tenant is ready.
    pub problems: Vec<String>,
}

/// The eKyte adapter. Cheap to clone; clones share the HTTP client and the MCP sessions.
#[derive(Clone)]
pub struct EkyteAdapter {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for EkyteAdapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EkyteAdapter")
            .field("base_url", &self.inner.config.base_url)
            .field("automation", &self.inner.config.automation)
            .finish_non_exhaustive()
    }
}

pub(crate) struct Inner {
    pub(crate) config: EkyteConfig,
    pub(crate) http: Http,
    mcp: Mcp,
    credentials: Arc<dyn CredentialStore>,
    /// Shared with `http`, which forgets a tenant's entry when eKyte refuses it.
    creds_cache: Arc<CredsCache>,
}

impl Creds {
    fn capabilities(&self) -> Capabilities {
        if self.mcp_token.is_some() {
            Capabilities::with_mcp()
        } else {
            Capabilities::api_key_only()
        }
    }

    fn require(&self, op: EkyteOp) -> Result<(), ApiError> {
        if self.capabilities().allows(op) {
            return Ok(());
        }
        tracing::info!(
            operation = op.as_str(),
            "eKyte operation not allowed by the credentials"
        );
        Err(ApiError::unsupported(format!(
            "eKyte {} needs a personal MCP token; the tenant has only the company API key",
            op.as_str()
        )))
    }

    fn token(&self, op: EkyteOp) -> Result<&SecretString, ApiError> {
        self.require(op)?;
        self.mcp_token
            .as_ref()
            .ok_or_else(|| ApiError::unsupported(op.as_str()))
    }
}

/// A boxed, `Send` future borrowing from the caller: how the create and lookup steps are
/// handed to [`Inner::create_resolved`] (async closures are not yet provably `Send`).
type Fut<'a, T> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, ApiError>> + Send + 'a>>;

/// Whether a create's lookup found the record.
pub(crate) enum Lookup {
    Found(u64),
    Absent,
    /// Nothing can tell with these credentials.
    Impossible,
}

impl EkyteAdapter {
    /// Build the adapter. Fails only on a configuration that cannot work (the field is named).
    pub fn new(
        config: EkyteConfig,
        credentials: Arc<dyn CredentialStore>,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        let creds_cache = Arc::new(CredsCache::default());
        let http = Http::new(&config, Arc::clone(&creds_cache))?;
        let mcp = Mcp::new(&config);
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                http,
                mcp,
                credentials,
                creds_cache,
            }),
        })
    }

    pub fn config(&self) -> &EkyteConfig {
        &self.inner.config
    }

    /// A change poller over this adapter, recording its runs in `runs` and comparing with
    /// `links`.
    pub fn poller(
        &self,
        links: Arc<dyn ports::store::LinkStore>,
        runs: Arc<dyn ports::store::RunStore>,
    ) -> EkytePoller {
        EkytePoller::new(self.clone(), links, runs)
    }

    pub(crate) fn inner(&self) -> &Inner {
        &self.inner
    }

    /// Members of the company (`/v1.0/users`, every page).
    #[tracing::instrument(skip_all, fields(tenant = %scope.tenant.id))]
    pub async fn list_users(&self, scope: &Scope) -> Result<Vec<EkyteUser>, ApiError> {
        let creds = self.inner.creds(scope).await?;
        creds.require(EkyteOp::Read)?;
        let calls = Calls::unbounded(scope);
        let rows: Vec<UserDto> = self
            .inner
            .http
            .bi_list(&calls, "v1.0/users", &[], &creds.api_key)
            .await?;
        Ok(rows
            .into_iter()
            .map(|u| EkyteUser {
                id: u.id.map(|v| match v {
                    Value::String(s) => s,
                    other => other.to_string(),
                }),
                name: u.user_name,
                email: u.email,
            })
            .collect())
    }

    /// Task types of the company (`/v1.0/task-types`, every page).
    #[tracing::instrument(skip_all, fields(tenant = %scope.tenant.id))]
    pub async fn list_task_types(&self, scope: &Scope) -> Result<Vec<EkyteTaskType>, ApiError> {
        let creds = self.inner.creds(scope).await?;
        creds.require(EkyteOp::Read)?;
        let calls = Calls::unbounded(scope);
        let rows: Vec<TaskTypeDto> = self
            .inner
            .http
            .bi_list(&calls, "v1.0/task-types", &[], &creds.api_key)
            .await?;
        rows.into_iter()
            .map(|t| {
                Ok(EkyteTaskType {
                    id: EkyteTaskTypeId::new(t.id).map_err(|e| {
                        ApiError::Unknown(anyhow::anyhow!("eKyte sent a bad task type id: {e}"))
                    })?,
                    name: t.name.unwrap_or_default(),
                    active: t.active.unwrap_or(true),
                    workflow_id: t.workflow_id,
                })
            })
            .collect()
    }

    /// The user behind the tenant's MCP token. `Unsupported` without a token; `Unauthorized`
    /// when it resolves to an anonymous caller.
    #[tracing::instrument(skip_all, fields(tenant = %scope.tenant.id))]
    pub async fn mcp_identity(&self, scope: &Scope) -> Result<McpIdentity, ApiError> {
        let creds = self.inner.creds(scope).await?;
        let token = creds.token(EkyteOp::UpdateTask)?;
        self.inner
            .mcp
            .identity(
                &self.inner.http,
                &Calls::unbounded(scope),
                &scope.tenant.id,
                token,
            )
            .await
    }

    /// Check a tenant's eKyte setup: the key and company (`/polling/auth`, API.md §2.1), that
    /// `ekyte.user_email` is a member (`/v1.0/users`), that `ekyte.task_type_id` exists and is
    /// active (`/v1.0/task-types`), and the MCP identity when a token is configured.
    /// `Unauthorized` when the key itself is refused; other findings are listed in `problems`.
    #[tracing::instrument(skip_all, fields(tenant = %scope.tenant.id))]
    pub async fn healthcheck(&self, scope: &Scope) -> Result<Health, ApiError> {
        let inner = &self.inner;
        // A check looks at what is stored now (a key may have just been replaced).
        inner.creds_cache.forget(scope.tenant.id.as_str());
        let creds = inner.creds(scope).await?;
        let calls = Calls::unbounded(scope);
        let mut problems = Vec::new();
        let auth = inner
            .http
            .automation_get(
                &calls,
                &inner.config.automation.read_path("auth"),
                &creds.api_key,
                &creds.company,
            )
            .await?;
        let answered = auth
            .get("CompanyId")
            .or_else(|| auth.get("companyId"))
            .and_then(|v| {
                v.as_u64()
                    .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            });
        if answered.map(|c| c.to_string()) != Some(creds.company.clone()) {
            problems.push(format!(
                "the API key belongs to eKyte company {answered:?}, not {}",
                creds.company
            ));
        }
        let mapping = &scope.tenant.settings.ekyte;
        match &mapping.user_email {
            None => problems.push(
                "ekyte.user_email is not set: the automation API cannot create anything".into(),
            ),
            Some(email) => {
                let users = self.list_users(scope).await?;
                let member = users.iter().any(|u| {
                    u.email
                        .as_deref()
                        .is_some_and(|e| e.trim().eq_ignore_ascii_case(email.trim()))
                });
                if !member {
                    problems.push(format!(
                        "ekyte.user_email {email} is not a member of the eKyte company"
                    ));
                }
            }
        }
        match mapping.task_type_id {
            None => problems
                .push("ekyte.task_type_id is not set: tasks cannot be created in eKyte".into()),
            Some(id) => {
                let types = self.list_task_types(scope).await?;
                match types.iter().find(|t| t.id == id) {
                    None => problems.push(format!("ekyte.task_type_id {id} does not exist")),
                    Some(t) if !t.active => {
                        problems.push(format!("ekyte.task_type_id {id} ({}) is inactive", t.name));
                    }
                    Some(_) => {}
                }
            }
        }
        let mcp_identity = match &creds.mcp_token {
            None => None,
            Some(token) => match inner
                .mcp
                .identity(&inner.http, &calls, &scope.tenant.id, token)
                .await
            {
                Ok(id) => Some(id),
                Err(e) => {
                    problems.push(e.to_string());
                    None
                }
            },
        };
        Ok(Health {
            capabilities: creds.capabilities(),
            mcp_identity,
            problems,
        })
    }
}

// ----- shared internals ----------------------------------------------------------------------

fn tenant_user_email(tenant: &Tenant) -> Result<String, ApiError> {
    tenant
        .settings
        .ekyte
        .user_email
        .clone()
        .filter(|e| !e.trim().is_empty())
        .ok_or_else(|| ApiError::Invalid {
            messages: vec![format!(
                "tenant {} has no ekyte.user_email; eKyte's automation API creates records as a \
                 company member",
                tenant.id
            )],
        })
}

fn created_id(v: &Value, key: &str, what: &str) -> Result<u64, ApiError> {
    let found = v.as_object().and_then(|o| {
        o.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .or_else(|| o.iter().find(|(k, _)| k.eq_ignore_ascii_case("id")))
            .map(|(_, v)| v)
    });
    found
        .and_then(|v| {
            v.as_u64()
                .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
        })
        .filter(|id| *id > 0)
        .ok_or_else(|| {
            ApiError::Unknown(anyhow::anyhow!(
                "eKyte created {what} but its answer names no {key}"
            ))
        })
}

fn bad_id(what: &str, e: domain::IdError) -> ApiError {
    ApiError::Unknown(anyhow::anyhow!("eKyte returned an invalid {what}: {e}"))
}

impl Inner {
    /// The tenant's credentials, from memory when read within the cache's TTL (`creds.rs`).
    pub(crate) async fn creds(&self, scope: &Scope) -> Result<Creds, ApiError> {
        let company = scope.tenant.ekyte_company_id.to_string();
        if let Some(creds) = self.creds_cache.get(scope.tenant.id.as_str(), &company) {
            return Ok(creds);
        }
        let creds = self.read_creds(scope).await?;
        self.creds_cache.put(scope.tenant.id.as_str(), &creds);
        Ok(creds)
    }

    /// The tenant's credentials as the store holds them now.
    pub(crate) async fn read_creds(&self, scope: &Scope) -> Result<Creds, ApiError> {
        let tenant = &scope.tenant.id;
        let cred = self
            .credentials
            .get(tenant, Provider::Ekyte)
            .await
            .map_err(|e| match e {
                StoreError::NotFound { .. } => ApiError::Unauthorized {
                    message: format!(
                        "tenant {tenant} has no eKyte credentials; store the company API key"
                    ),
                },
                StoreError::Crypto { message } => ApiError::Unauthorized {
                    message: format!(
                        "the eKyte credentials of tenant {tenant} cannot be decrypted: {message}"
                    ),
                },
                other => from_store(other, "reading eKyte credentials"),
            })?;
        match cred.secret {
            CredentialSecret::Ekyte { api_key, mcp_token } => {
                if api_key.expose_secret().trim().is_empty() {
                    return Err(ApiError::Unauthorized {
                        message: format!("the eKyte API key of tenant {tenant} is empty"),
                    });
                }
                Ok(Creds {
                    api_key,
                    mcp_token: mcp_token.filter(|t| !t.expose_secret().trim().is_empty()),
                    company: scope.tenant.ekyte_company_id.to_string(),
                })
            }
            _ => Err(ApiError::Unauthorized {
                message: format!(
                    "the credential stored for eKyte of tenant {tenant} is not an eKyte API key"
                ),
            }),
        }
    }

    /// All workspaces, raw (so callers can tell whether `ExternalId` is shown).
    pub(crate) async fn workspace_rows(
        &self,
        calls: &Calls,
        creds: &Creds,
    ) -> Result<Vec<WorkspaceDto>, ApiError> {
        self.http
            .bi_list(calls, "v1.0/workspaces", &[], &creds.api_key)
            .await
    }

    pub(crate) async fn workspaces(
        &self,
        calls: &Calls,
        creds: &Creds,
    ) -> Result<Vec<Workspace>, ApiError> {
        self.workspace_rows(calls, creds)
            .await?
            .into_iter()
            .map(mapping::workspace)
            .collect()
    }

    /// `/v1.2/tasks` rows, every situation (`status=0`, API.md §3.2), every page.
    async fn task_rows(
        &self,
        calls: &Calls,
        creds: &Creds,
        workspace: Option<EkyteWorkspaceId>,
        with_comments: bool,
        extra: &[(&str, String)],
    ) -> Result<Vec<TaskDto>, ApiError> {
        let mut query: Vec<(&str, String)> = Vec::new();
        if let Some(ws) = workspace {
            query.push(("workspaceId", ws.to_string()));
        }
        query.push(("status", "0".to_owned()));
        if with_comments {
            query.push(("includeComments", "1".to_owned()));
        }
        query.extend(extra.iter().cloned());
        self.http
            .bi_list(calls, "v1.2/tasks", &query, &creds.api_key)
            .await
    }

    pub(crate) async fn tasks(
        &self,
        calls: &Calls,
        scope: &Scope,
        creds: &Creds,
        workspace: EkyteWorkspaceId,
        with_comments: bool,
    ) -> Result<Vec<EkyteTask>, ApiError> {
        let tz = mapping::zone(&scope.tenant)?;
        self.task_rows(calls, creds, Some(workspace), with_comments, &[])
            .await?
            .into_iter()
            .map(|t| mapping::task(t, tz, Some(workspace)))
            .collect()
    }

    async fn tool(
        &self,
        calls: &Calls,
        scope: &Scope,
        token: &SecretString,
        name: &str,
        arguments: Value,
        idempotent: bool,
    ) -> Result<ToolOutput, ApiError> {
        self.mcp
            .tool(
                &self.http,
                calls,
                &scope.tenant.id,
                token,
                name,
                arguments,
                idempotent,
            )
            .await
    }

    /// A read tool whose answer must be a value; a refusal is `Invalid` with eKyte's text.
    /// The notes `get_detailed_board` lists for a board (none for a board it does not show).
    async fn board_notes(
        &self,
        calls: &Calls,
        scope: &Scope,
        token: &SecretString,
        board: EkyteBoardId,
    ) -> Result<Vec<crate::dto::NoteRefDto>, ApiError> {
        let v = self
            .read_tool(
                calls,
                scope,
                token,
                "get_detailed_board",
                json!({ "boardId": board.get() }),
            )
            .await?;
        // An unknown board comes back as `{}`: no notes.
        let detail = DetailedBoardDto::deserialize(&v).map_err(|e| {
            ApiError::Unknown(
                crate::error::shape_error(&e).context("the board detail has an unknown shape"),
            )
        })?;
        Ok(detail.notes)
    }

    async fn read_tool(
        &self,
        calls: &Calls,
        scope: &Scope,
        token: &SecretString,
        name: &str,
        arguments: Value,
    ) -> Result<Value, ApiError> {
        match self
            .tool(calls, scope, token, name, arguments, true)
            .await?
        {
            ToolOutput::Value(v) => Ok(v),
            ToolOutput::Refused(text) => Err(ApiError::Invalid {
                messages: vec![text],
            }),
        }
    }

    /// An update tool. A refusal becomes `NotFound` when `exists` says the record is gone,
    /// else `Invalid` with eKyte's text; an empty answer (`{}`) is `NotFound` (port contract).
    #[allow(clippy::too_many_arguments)]
    async fn update_tool(
        &self,
        calls: &Calls,
        scope: &Scope,
        token: &SecretString,
        name: &str,
        arguments: Value,
        what: &str,
        exists: Fut<'_, bool>,
    ) -> Result<Value, ApiError> {
        match self
            .tool(calls, scope, token, name, arguments, true)
            .await?
        {
            ToolOutput::Value(v) if is_empty_record(&v) => Err(ApiError::not_found(what)),
            ToolOutput::Value(v) => Ok(v),
            ToolOutput::Refused(text) => {
                if exists.await? {
                    Err(ApiError::Invalid {
                        messages: vec![text],
                    })
                } else {
                    Err(ApiError::not_found(what))
                }
            }
        }
    }

    /// Whether MCP shows a task (`get_detailed_task` answers `{}` for unknown ids, API.md §5).
    async fn task_exists_mcp(
        &self,
        calls: &Calls,
        scope: &Scope,
        token: &SecretString,
        id: EkyteTaskId,
    ) -> Result<bool, ApiError> {
        match self
            .tool(
                calls,
                scope,
                token,
                "get_detailed_task",
                json!({ "taskId": id.get() }),
                true,
            )
            .await?
        {
            ToolOutput::Value(v) => Ok(!is_empty_record(&v)),
            ToolOutput::Refused(_) => Ok(false),
        }
    }

    /// Send a create once; when its outcome is unknown, look the record up, and create again
    /// only when the lookup says it is not there (DESIGN.md §4 "exactly one create").
    async fn create_resolved<'a>(
        &self,
        what: &str,
        id_key: &str,
        post: &(dyn Fn() -> Fut<'a, Value> + Send + Sync + 'a),
        lookup: &(dyn Fn() -> Fut<'a, Lookup> + Send + Sync + 'a),
    ) -> Result<u64, ApiError> {
        let retry = self.http.retry();
        let attempts = retry.max_attempts.max(1);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let err = match post().await {
                Ok(v) => return created_id(&v, id_key, what),
                Err(e) if is_retryable(&e) => e,
                Err(e) => return Err(e),
            };
            match lookup().await {
                Ok(Lookup::Found(id)) => {
                    tracing::info!(what, id, error = %err, "create outcome resolved by lookup: it exists");
                    return Ok(id);
                }
                Ok(Lookup::Absent) if attempt < attempts => {
                    let after = match &err {
                        ApiError::RateLimited { retry_after } => *retry_after,
                        _ => None,
                    };
                    let wait = retry.backoff(attempt, after);
                    tracing::debug!(what, attempt, ?wait, error = %err, "create failed and left nothing; retrying");
                    tokio::time::sleep(wait).await;
                }
                Ok(Lookup::Absent) => return Err(err),
                Ok(Lookup::Impossible) => return Err(outcome_unknown(what, err, None)),
                Err(lookup_err) => return Err(outcome_unknown(what, err, Some(lookup_err))),
            }
        }
    }

    /// The workspace whose `ExternalId` is `external`: from the BI listing when it shows the
    /// field, else from MCP `list_short_workspaces` when a token is configured; where neither
    /// shows it, the active workspaces named exactly `name` (the BI `name` filter).
    async fn find_by_external(
        &self,
        calls: &Calls,
        scope: &Scope,
        creds: &Creds,
        external: &ExternalRef,
        name: &str,
    ) -> Result<WorkspaceFound, ApiError> {
        let wanted = external.to_string();
        let rows = self.workspace_rows(calls, creds).await?;
        let shown = |rows: &[WorkspaceDto]| rows.iter().any(|r| r.external_id.is_some());
        let rows = if rows.is_empty() || shown(&rows) {
            rows
        } else {
            let mcp = match &creds.mcp_token {
                Some(token) => self.mcp_workspace_rows(calls, scope, token).await?,
                None => Vec::new(),
            };
            if !shown(&mcp) {
                tracing::debug!(
                    "no eKyte read shows ExternalId; looking for the workspace by its name"
                );
                return self
                    .named(calls, creds, name)
                    .await
                    .map(WorkspaceFound::Named);
            }
            mcp
        };
        let mut matches: Vec<Workspace> = rows
            .into_iter()
            .filter(|r| r.external_id.as_ref().and_then(Option::as_deref) == Some(wanted.as_str()))
            .map(mapping::workspace)
            .collect::<Result<_, _>>()?;
        if matches.len() > 1 {
            tracing::warn!(external_id = %wanted, count = matches.len(), "several eKyte workspaces share one ExternalId; taking the oldest active one");
        }
        // eKyte does not keep ExternalId unique: prefer an active one, then the oldest.
        matches.sort_by_key(|w| (!w.active, w.id));
        Ok(WorkspaceFound::ByExternalId(matches.into_iter().next()))
    }

    /// The active workspaces called exactly `name` (spaces aside): the BI `name` filter is a
    /// substring match (API.md §3.2), so its rows are narrowed here.
    async fn named(
        &self,
        calls: &Calls,
        creds: &Creds,
        name: &str,
    ) -> Result<Vec<Workspace>, ApiError> {
        let name = name.trim();
        if name.is_empty() {
            return Ok(Vec::new());
        }
        let rows: Vec<WorkspaceDto> = self
            .http
            .bi_list(
                calls,
                "v1.0/workspaces",
                &[("name", name.to_owned())],
                &creds.api_key,
            )
            .await?;
        let mut named = Vec::new();
        for row in rows {
            let w = mapping::workspace(row)?;
            if w.active && mapping::same_title(Some(&w.name), Some(name)) {
                named.push(w);
            }
        }
        Ok(named)
    }

    async fn mcp_workspace_rows(
        &self,
        calls: &Calls,
        scope: &Scope,
        token: &SecretString,
    ) -> Result<Vec<WorkspaceDto>, ApiError> {
        let mut out = Vec::new();
        let mut previous = None;
        for page in 1..=self.config.max_pages {
            let v = self
                .read_tool(
                    calls,
                    scope,
                    token,
                    "list_short_workspaces",
                    json!({ "page": page }),
                )
                .await?;
            let Some((rows, more)) =
                mcp_page::<WorkspaceDto>(&v, "list_short_workspaces", page, &mut previous)?
            else {
                return Ok(out);
            };
            out.extend(rows);
            if !more {
                return Ok(out);
            }
        }
        Err(ApiError::Unknown(anyhow::anyhow!(
            "list_short_workspaces: paging did not end after {} pages",
            self.config.max_pages
        )))
    }

    async fn boards(
        &self,
        calls: &Calls,
        creds: &Creds,
        workspace: EkyteWorkspaceId,
    ) -> Result<Vec<Board>, ApiError> {
        // Every board of the company comes back; only this workspace's are kept, as read. A
        // row whose workspace cannot be read is kept too, so that its mapping fails the
        // listing as before rather than hide a board.
        let rows: Vec<BoardDto> = self
            .http
            .automation_rows(
                calls,
                &self.config.automation.read_path("boards"),
                &creds.api_key,
                &creds.company,
                "the board listing",
                |b: &BoardDto| {
                    b.workspace()
                        .is_none_or(|w| EkyteWorkspaceId::new(w).map_or(true, |w| w == workspace))
                },
            )
            .await?;
        rows.into_iter()
            .map(mapping::board)
            .filter(|b| b.as_ref().map_or(true, |b| b.workspace == Some(workspace)))
            .collect()
    }
}

fn is_empty_record(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

/// `update_task`'s arguments. Whether the tool patches the fields it is given or replaces
/// the task's fields with them is not documented (API.md §5), so every field this service
/// owns is sent from `target`, the whole task as eKyte should hold it: title, description
/// and due date, whichever changed. The situation goes only when `changes` touch the status
/// (a move has effects of its own). Nothing to send when nothing changed.
fn update_task_arguments(
    id: EkyteTaskId,
    changes: &[FieldChange],
    target: &domain::Task,
    tz: chrono_tz::Tz,
) -> Result<(serde_json::Map<String, Value>, bool), ApiError> {
    let mut args = serde_json::Map::new();
    let mut status = false;
    for c in changes {
        match (c.field, &c.to) {
            ("title", FieldValue::Text(Some(t))) if !t.trim().is_empty() => {}
            ("title", FieldValue::Text(_)) => {
                return Err(ApiError::Invalid {
                    messages: vec!["an eKyte task needs a title".into()],
                });
            }
            ("body", FieldValue::Text(_)) | ("due", FieldValue::Time(Some(_))) => {}
            ("due", FieldValue::Time(None)) => {
                return Err(ApiError::Invalid {
                    messages: vec![
                        "eKyte cannot clear a task's due date (CurrentDueDate is required)".into(),
                    ],
                });
            }
            ("status", FieldValue::Status(s)) => {
                status = true;
                args.insert("situation".into(), json!(mapping::situation_of(*s)));
            }
            ("assignee", _) => {
                return Err(ApiError::unsupported(
                    "update_task.assignee: eKyte picks executors from the workflow",
                ));
            }
            (field, value) => {
                return Err(ApiError::Invalid {
                    messages: vec![format!("eKyte tasks have no field {field} = {value}")],
                });
            }
        }
    }
    if changes.is_empty() {
        return Ok((args, status));
    }
    let title = target
        .title
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::Invalid {
            messages: vec!["an eKyte task needs a title".into()],
        })?;
    args.insert("title".into(), json!(title));
    args.insert(
        "description".into(),
        json!(mapping::body_html(target.body.as_deref())),
    );
    if let Some(due) = target.due {
        args.insert(
            "currentDueDate".into(),
            json!(mapping::format_local(due, tz)),
        );
    }
    args.insert("taskId".into(), json!(id.get()));
    Ok((args, status))
}

/// One page of an MCP list envelope (API.md §5): the rows that parse as `T` (an odd one is
/// skipped, see [`dto::keep_parsed`]) and whether the paging says more follow. `None` when
/// the page repeats the one before: a server that ignores `page` would otherwise be read
/// `max_pages` times, every copy kept.
fn mcp_page<T: serde::de::DeserializeOwned>(
    v: &Value,
    tool: &'static str,
    page: u32,
    previous: &mut Option<Vec<Value>>,
) -> Result<Option<(Vec<T>, bool)>, ApiError> {
    let env: Envelope<Value> = Envelope::deserialize(v).map_err(|e| {
        ApiError::Unknown(
            crate::error::shape_error(&e).context(format!("{tool} answered an unknown shape")),
        )
    })?;
    let data = env.data.unwrap_or_default();
    if !data.is_empty() && previous.as_ref() == Some(&data) {
        tracing::warn!(
            tool,
            page,
            "eKyte MCP served the same page twice; the listing ends here"
        );
        return Ok(None);
    }
    let got = data.len();
    let rows = crate::dto::keep_parsed::<T>(data.clone(), tool);
    *previous = Some(data);
    let paging = env.paging.unwrap_or_default();
    let number = paging
        .current_page
        .and_then(|c| c.number)
        .unwrap_or(i64::from(page));
    let more = matches!(paging.total_pages, Some(t) if number < t && got > 0);
    Ok(Some((rows, more)))
}

#[async_trait]
impl EkyteApi for EkyteAdapter {
    #[tracing::instrument(skip_all, fields(tenant = %scope.tenant.id))]
    async fn capabilities(&self, scope: &Scope) -> Result<Capabilities, ApiError> {
        Ok(self.inner.creds(scope).await?.capabilities())
    }

    async fn check(&self, scope: &Scope) -> Result<Vec<String>, ApiError> {
        Ok(self.healthcheck(scope).await?.problems)
    }

    #[tracing::instrument(skip_all, fields(tenant = %scope.tenant.id))]
    async fn list_workspaces(&self, scope: &Scope) -> Result<Vec<Workspace>, ApiError> {
        let creds = self.inner.creds(scope).await?;
        creds.require(EkyteOp::Read)?;
        self.inner
            .workspaces(&Calls::unbounded(scope), &creds)
            .await
    }

    #[tracing::instrument(skip_all, fields(tenant = %scope.tenant.id, workspace = %id))]
    async fn get_workspace<'a>(
        &self,
        scope: &Scope,
        id: EkyteWorkspaceId,
        name_hint: Option<&'a str>,
    ) -> Result<Workspace, ApiError> {
        let creds = self.inner.creds(scope).await?;
        creds.require(EkyteOp::Read)?;
        let calls = Calls::unbounded(scope);
        // The BI API has no by-id read (API.md §3.2): list and pick. Its `name` filter (§3.2)
        // narrows the listing to a page or so when the caller knows the name; a workspace
        // renamed since is not among those rows, and the whole listing finds it.
        if let Some(name) = name_hint.map(str::trim).filter(|n| !n.is_empty()) {
            let rows: Vec<WorkspaceDto> = self
                .inner
                .http
                .bi_list(
                    &calls,
                    "v1.0/workspaces",
                    &[("name", name.to_owned())],
                    &creds.api_key,
                )
                .await?;
            if let Some(row) = rows.into_iter().find(|r| r.id == id.get()) {
                return mapping::workspace(row);
            }
        }
        self.inner
            .workspaces(&calls, &creds)
            .await?
            .into_iter()
            .find(|w| w.id == id)
            .ok_or_else(|| ApiError::not_found(format!("eKyte workspace {id}")))
    }

    #[tracing::instrument(skip_all, fields(tenant = %scope.tenant.id, external_id = %external))]
    async fn create_workspace(
        &self,
        scope: &Scope,
        name: &str,
        external: &ExternalRef,
    ) -> Result<EkyteWorkspaceId, ApiError> {
        let creds = self.inner.creds(scope).await?;
        creds.require(EkyteOp::CreateWorkspace)?;
        let email = tenant_user_email(&scope.tenant)?;
        if name.trim().is_empty() {
            return Err(ApiError::Invalid {
                messages: vec!["an eKyte workspace needs a name".into()],
            });
        }
        let inner = &self.inner;
        let calls = Calls::unbounded(scope);
        let body = serde_json::to_value(NewWorkspaceBody {
            name: name.to_owned(),
            external_id: external.to_string(),
        })
        .map_err(|e| ApiError::Unknown(e.into()))?;
        let path = inner.config.automation.write_path("workspaces");
        let (calls, creds) = (&calls, &creds);
        let post = || -> Fut<'_, Value> {
            Box::pin(inner.http.automation_post(
                calls,
                &path,
                &body,
                &creds.api_key,
                &creds.company,
                &email,
            ))
        };
        let lookup = || -> Fut<'_, Lookup> {
            Box::pin(async move {
                match inner
                    .find_by_external(calls, scope, creds, external, name)
                    .await
                {
                    Ok(WorkspaceFound::ByExternalId(Some(w))) => Ok(Lookup::Found(w.id.get())),
                    Ok(WorkspaceFound::ByExternalId(None)) => Ok(Lookup::Absent),
                    // Which of the named ones (if any) is this create's, only the caller's
                    // links can tell: the outcome stays unknown here.
                    Ok(WorkspaceFound::Named(_)) | Err(ApiError::Unsupported { .. }) => {
                        Ok(Lookup::Impossible)
                    }
                    Err(e) => Err(e),
                }
            })
        };
        let id = inner
            .create_resolved("workspace", "WorkspaceId", &post, &lookup)
            .await?;
        EkyteWorkspaceId::new(id).map_err(|e| bad_id("workspace id", e))
    }

    #[tracing::instrument(skip_all, fields(tenant = %scope.tenant.id, external_id = %external))]
    async fn find_workspace<'a>(
        &self,
        scope: &Scope,
        external: &ExternalRef,
        name: &'a str,
    ) -> Result<WorkspaceFound, ApiError> {
        let creds = self.inner.creds(scope).await?;
        creds.require(EkyteOp::Read)?;
        self.inner
            .find_by_external(&Calls::unbounded(scope), scope, &creds, external, name)
            .await
    }

    #[tracing::instrument(skip_all, fields(tenant = %scope.tenant.id, workspace = %id, active = target.active))]
    async fn update_workspace(
        &self,
        scope: &Scope,
        id: EkyteWorkspaceId,
        target: &WorkspaceTarget,
    ) -> Result<(), ApiError> {
        let creds = self.inner.creds(scope).await?;
        let token = creds.token(if target.active {
            EkyteOp::UpdateWorkspace
        } else {
            EkyteOp::DeactivateWorkspace
        })?;
        if target.name.trim().is_empty() {
            return Err(ApiError::Invalid {
                messages: vec!["an eKyte workspace needs a name".into()],
            });
        }
        // Every field this service owns, whichever changed: the same call reads the same
        // whether the tool patches or replaces (docs/fidelity.md).
        let mut args = json!({
            "workspaceId": id.get(),
            "name": target.name,
            "active": target.active,
        });
        if let Some(ext) = &target.external {
            args["externalId"] = json!(ext.to_string());
        }
        self.update_workspace_with(scope, &creds, token, id, args)
            .await
    }

    #[tracing::instrument(skip_all, fields(tenant = %scope.tenant.id, workspace = %workspace))]
    async fn list_tasks(
        &self,
        scope: &Scope,
        workspace: EkyteWorkspaceId,
        with_comments: bool,
    ) -> Result<Vec<EkyteTask>, ApiError> {
        let creds = self.inner.creds(scope).await?;
        creds.require(EkyteOp::Read)?;
        self.inner
            .tasks(
                &Calls::unbounded(scope),
                scope,
                &creds,
                workspace,
                with_comments,
            )
            .await
    }

    #[tracing::instrument(skip_all, fields(tenant = %scope.tenant.id, task = %id))]
    async fn get_task(&self, scope: &Scope, id: EkyteTaskId) -> Result<EkyteTask, ApiError> {
        let inner = &self.inner;
        let creds = inner.creds(scope).await?;
        creds.require(EkyteOp::Read)?;
        let calls = Calls::unbounded(scope);
        let tz = mapping::zone(&scope.tenant)?;
        // The BI API reads tasks by filter only (API.md §3.2). With an MCP token, find the
        // task's workspace first and list just that one; MCP sees only what its owner may
        // see (§2.2), so when it does not show the task, scan every workspace.
        if let Some(token) = &creds.mcp_token {
            // Only a shortcut: a failing MCP (a bad token, say) must not block a read the
            // API key can serve.
            let located = inner
                .read_tool(
                    &calls,
                    scope,
                    token,
                    "get_detailed_task",
                    json!({ "taskId": id.get() }),
                )
                .await
                .unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "MCP could not locate the task; scanning the BI API");
                    Value::Null
                });
            if !is_empty_record(&located)
                && let Ok(dto) = TaskDto::deserialize(&located)
                && let Some(ws) = dto.workspace().and_then(|w| EkyteWorkspaceId::new(w).ok())
            {
                let found = inner
                    .tasks(&calls, scope, &creds, ws, true)
                    .await?
                    .into_iter()
                    .find(|t| t.id == id);
                if let Some(t) = found {
                    return Ok(t);
                }
            }
        }
        let rows = inner.task_rows(&calls, &creds, None, true, &[]).await?;
        match rows.into_iter().find(|t| t.id == id.get()) {
            Some(t) => mapping::task(t, tz, None),
            None => Err(ApiError::not_found(format!("eKyte task {id}"))),
        }
    }

    #[tracing::instrument(skip_all, fields(tenant = %scope.tenant.id, workspace = %workspace))]
    async fn create_task(
        &self,
        scope: &Scope,
        workspace: EkyteWorkspaceId,
        task: &Task,
    ) -> Result<EkyteTaskId, ApiError> {
        let inner = &self.inner;
        let creds = inner.creds(scope).await?;
        creds.require(EkyteOp::CreateTask)?;
        let tenant = &scope.tenant;
        let tz = mapping::zone(tenant)?;
        let email = tenant_user_email(tenant)?;
        let task_type = tenant
            .settings
            .ekyte
            .task_type_id
            .ok_or_else(|| ApiError::Invalid {
                messages: vec![format!(
                    "tenant {} has no ekyte.task_type_id; eKyte creates tasks with a task type",
                    tenant.id
                )],
            })?;
        let title = task
            .title
            .clone()
            .filter(|t| !t.trim().is_empty())
            .ok_or_else(|| ApiError::Invalid {
                messages: vec!["an eKyte task needs a title".into()],
            })?;
        let due = task.due.ok_or_else(|| ApiError::Invalid {
            messages: vec!["an eKyte task needs a due date (CurrentDueDate)".into()],
        })?;
        let body = serde_json::to_value(NewTaskBody {
            title: title.clone(),
            description: mapping::body_html(task.body.as_deref()),
            current_due_date: mapping::format_local(due, tz),
            ctc_task_type_id: task_type.get(),
            workspace_id: workspace.get(),
            user_email: email.clone(),
        })
        .map_err(|e| ApiError::Unknown(e.into()))?;
        let calls = Calls::unbounded(scope);
        let path = inner.config.automation.write_path("tasks");
        let (day_from, day_to) = mapping::local_day_bounds(due, tz);
        let (calls, creds, title, email) = (&calls, &creds, &title, &email);
        let (day_from, day_to) = (&day_from, &day_to);
        let post = || -> Fut<'_, Value> {
            Box::pin(inner.http.automation_post(
                calls,
                &path,
                &body,
                &creds.api_key,
                &creds.company,
                email,
            ))
        };
        let lookup = || -> Fut<'_, Lookup> {
            Box::pin(async move {
                // Title + workspace + due (DESIGN.md §4), narrowed to the due day.
                let rows = inner
                    .task_rows(
                        calls,
                        creds,
                        Some(workspace),
                        false,
                        &[("dueFrom", day_from.clone()), ("dueTo", day_to.clone())],
                    )
                    .await?;
                let found = rows
                    .into_iter()
                    .filter(|r| mapping::same_title(r.title.as_deref(), Some(title)))
                    .filter(|r| {
                        r.current_due_date
                            .as_deref()
                            .and_then(|d| mapping::parse_local(d, tz))
                            .is_some_and(|d| d.timestamp() == due.timestamp())
                    })
                    .filter(|r| {
                        r.creator_email()
                            .is_none_or(|e| e.trim().eq_ignore_ascii_case(email.trim()))
                    })
                    .map(|r| r.id)
                    .max();
                Ok(found.map_or(Lookup::Absent, Lookup::Found))
            })
        };
        let id = inner
            .create_resolved("task", "TaskId", &post, &lookup)
            .await?;
        EkyteTaskId::new(id).map_err(|e| bad_id("task id", e))
    }

    #[tracing::instrument(skip_all, fields(tenant = %scope.tenant.id, task = %id))]
    async fn update_task<'a>(
        &self,
        scope: &Scope,
        id: EkyteTaskId,
        changes: &[FieldChange],
        target: &'a Task,
    ) -> Result<(), ApiError> {
        let creds = self.inner.creds(scope).await?;
        let token = creds.token(EkyteOp::UpdateTask)?;
        let tz = mapping::zone(&scope.tenant)?;
        let (args, touches_status) = update_task_arguments(id, changes, target, tz)?;
        if touches_status {
            creds.require(EkyteOp::SetTaskStatus)?;
        }
        if args.is_empty() {
            return Ok(());
        }
        let answer = self
            .update_task_with(scope, token, id, Value::Object(args))
            .await?;
        if touches_status {
            self.status_taken(scope, token, id, &answer, target.status)
                .await?;
        }
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(tenant = %scope.tenant.id, task = %id, status = status.as_str()))]
    async fn set_task_status(
        &self,
        scope: &Scope,
        id: EkyteTaskId,
        status: TaskStatus,
    ) -> Result<(), ApiError> {
        let creds = self.inner.creds(scope).await?;
        let token = creds.token(EkyteOp::SetTaskStatus)?;
        // `update_task` takes the situation (10/30/40, API.md §7); the phase is left to eKyte.
        // Whether eKyte took it is checked (`status_taken`).
        let args = json!({ "taskId": id.get(), "situation": mapping::situation_of(status) });
        let answer = self.update_task_with(scope, token, id, args).await?;
        self.status_taken(scope, token, id, &answer, status).await
    }

    #[tracing::instrument(skip_all, fields(tenant = %scope.tenant.id, task = %task))]
    async fn create_comment(
        &self,
        scope: &Scope,
        task: EkyteTaskId,
        html: &str,
    ) -> Result<EkyteCommentId, ApiError> {
        let inner = &self.inner;
        let creds = inner.creds(scope).await?;
        let token = creds.token(EkyteOp::CreateComment)?;
        if html.trim().is_empty() {
            return Err(ApiError::Invalid {
                messages: vec!["an eKyte comment needs a text".into()],
            });
        }
        let calls = Calls::unbounded(scope);
        let identity = inner
            .mcp
            .identity(&inner.http, &calls, &scope.tenant.id, token)
            .await?;
        let wanted = domain::normalise::html_to_text(html);
        let args = json!({ "taskId": task.get(), "description": html });
        let (calls, identity, wanted, args) = (&calls, &identity, &wanted, &args);
        let post = || -> Fut<'_, Value> {
            Box::pin(async move {
                match inner
                    .tool(
                        calls,
                        scope,
                        token,
                        "create_task_comment",
                        args.clone(),
                        false,
                    )
                    .await?
                {
                    ToolOutput::Value(v) if is_empty_record(&v) => {
                        Err(ApiError::not_found(format!("eKyte task {task}")))
                    }
                    ToolOutput::Value(v) => Ok(v),
                    ToolOutput::Refused(text) => {
                        if inner.task_exists_mcp(calls, scope, token, task).await? {
                            Err(ApiError::Invalid {
                                messages: vec![text],
                            })
                        } else {
                            Err(ApiError::not_found(format!("eKyte task {task}")))
                        }
                    }
                }
            })
        };
        let lookup = || -> Fut<'_, Lookup> {
            Box::pin(async move {
                // Our own comment with the same text (the token's owner is its author).
                let mut newest = None;
                let mut previous = None;
                for page in 1..=inner.config.max_pages {
                    let v = inner
                        .read_tool(
                            calls,
                            scope,
                            token,
                            "list_task_comments",
                            json!({ "taskId": task.get(), "page": page }),
                        )
                        .await?;
                    let Some((rows, more)) =
                        mcp_page::<CommentDto>(&v, "list_task_comments", page, &mut previous)?
                    else {
                        break;
                    };
                    for c in rows {
                        let mine = c
                            .create_by
                            .as_ref()
                            .and_then(|v| v.get("email"))
                            .and_then(Value::as_str)
                            .is_none_or(|e| e.eq_ignore_ascii_case(&identity.email));
                        let same = c.description.as_deref().is_some_and(|d| {
                            d == html || domain::normalise::html_to_text(d) == *wanted
                        });
                        if mine && same {
                            newest = newest.max(Some(c.id));
                        }
                    }
                    if !more {
                        break;
                    }
                }
                Ok(newest.map_or(Lookup::Absent, Lookup::Found))
            })
        };
        let id = inner
            .create_resolved("comment", "id", &post, &lookup)
            .await?;
        EkyteCommentId::new(id).map_err(|e| bad_id("comment id", e))
    }

    #[tracing::instrument(skip_all, fields(tenant = %scope.tenant.id, workspace = %workspace))]
    async fn list_boards(
        &self,
        scope: &Scope,
        workspace: EkyteWorkspaceId,
    ) -> Result<Vec<Board>, ApiError> {
        let creds = self.inner.creds(scope).await?;
        creds.require(EkyteOp::Read)?;
        self.inner
            .boards(&Calls::unbounded(scope), &creds, workspace)
            .await
    }

    #[tracing::instrument(skip_all, fields(tenant = %scope.tenant.id, workspace = %workspace))]
    async fn create_board(
        &self,
        scope: &Scope,
        workspace: EkyteWorkspaceId,
        title: &str,
    ) -> Result<EkyteBoardId, ApiError> {
        let inner = &self.inner;
        let creds = inner.creds(scope).await?;
        creds.require(EkyteOp::CreateBoard)?;
        let email = tenant_user_email(&scope.tenant)?;
        if title.trim().is_empty() {
            return Err(ApiError::Invalid {
                messages: vec!["an eKyte board needs a title".into()],
            });
        }
        let body = serde_json::to_value(NewBoardBody {
            title: title.to_owned(),
            workspace_id: workspace.get(),
        })
        .map_err(|e| ApiError::Unknown(e.into()))?;
        let calls = Calls::unbounded(scope);
        let path = inner.config.automation.write_path("boards");
        let (calls, creds) = (&calls, &creds);
        let post = || -> Fut<'_, Value> {
            Box::pin(inner.http.automation_post(
                calls,
                &path,
                &body,
                &creds.api_key,
                &creds.company,
                &email,
            ))
        };
        let lookup = || -> Fut<'_, Lookup> {
            Box::pin(async move {
                let found = inner
                    .boards(calls, creds, workspace)
                    .await?
                    .into_iter()
                    .filter(|b| mapping::same_title(Some(&b.title), Some(title)))
                    .map(|b| b.id.get())
                    .max();
                Ok(found.map_or(Lookup::Absent, Lookup::Found))
            })
        };
        let id = inner
            .create_resolved("board", "BoardId", &post, &lookup)
            .await?;
        EkyteBoardId::new(id).map_err(|e| bad_id("board id", e))
    }

    #[tracing::instrument(skip_all, fields(tenant = %scope.tenant.id, board = %board))]
    async fn create_note(
        &self,
        scope: &Scope,
        board: EkyteBoardId,
        note: &NoteContent,
    ) -> Result<EkyteNoteId, ApiError> {
        let inner = &self.inner;
        let creds = inner.creds(scope).await?;
        creds.require(EkyteOp::CreateNote)?;
        let email = tenant_user_email(&scope.tenant)?;
        let body = serde_json::to_value(NewNoteBody {
            plan_id: board.get(),
            title: note.title.clone(),
            content: note.html.clone(),
        })
        .map_err(|e| ApiError::Unknown(e.into()))?;
        let calls = Calls::unbounded(scope);
        let path = inner.config.automation.write_path("notes");
        let (calls, creds) = (&calls, &creds);
        let post = || -> Fut<'_, Value> {
            Box::pin(inner.http.automation_post(
                calls,
                &path,
                &body,
                &creds.api_key,
                &creds.company,
                &email,
            ))
        };
        let lookup = || -> Fut<'_, Lookup> {
            Box::pin(async move {
                // Notes are readable only through MCP (`get_detailed_board`, API.md §5).
                let Some(token) = &creds.mcp_token else {
                    return Ok(Lookup::Impossible);
                };
                let found = inner
                    .board_notes(calls, scope, token, board)
                    .await?
                    .into_iter()
                    .filter(|n| mapping::same_title(n.title.as_deref(), Some(&note.title)))
                    .map(|n| n.id)
                    .max();
                Ok(found.map_or(Lookup::Absent, Lookup::Found))
            })
        };
        let id = inner
            .create_resolved("note", "NoteId", &post, &lookup)
            .await?;
        EkyteNoteId::new(id).map_err(|e| bad_id("note id", e))
    }

    #[tracing::instrument(skip_all, fields(tenant = %scope.tenant.id, board = %board))]
    async fn list_notes(
        &self,
        scope: &Scope,
        board: EkyteBoardId,
    ) -> Result<Vec<BoardNote>, ApiError> {
        let creds = self.inner.creds(scope).await?;
        let token = creds.token(EkyteOp::ReadNote)?;
        self.inner
            .board_notes(&Calls::unbounded(scope), scope, token, board)
            .await?
            .into_iter()
            .map(|n| {
                Ok(BoardNote {
                    id: EkyteNoteId::new(n.id).map_err(|e| bad_id("note id", e))?,
                    title: n.title.unwrap_or_default(),
                })
            })
            .collect()
    }

    #[tracing::instrument(skip_all, fields(tenant = %scope.tenant.id, note = %id))]
    async fn update_note(
        &self,
        scope: &Scope,
        id: EkyteNoteId,
        note: &NoteContent,
    ) -> Result<(), ApiError> {
        let inner = &self.inner;
        let creds = inner.creds(scope).await?;
        let token = creds.token(EkyteOp::UpdateNote)?;
        let calls = Calls::unbounded(scope);
        let args = json!({ "noteId": id.get(), "title": note.title, "content": note.html });
        inner
            .update_tool(
                &calls,
                scope,
                token,
                "update_board_note",
                args,
                &format!("eKyte note {id}"),
                Box::pin(async {
                    let v = inner
                        .tool(
                            &calls,
                            scope,
                            token,
                            "get_detailed_note",
                            json!({ "noteId": id.get() }),
                            true,
                        )
                        .await?;
                    Ok(matches!(v, ToolOutput::Value(v) if !is_empty_record(&v)))
                }),
            )
            .await
            .map(|_| ())
    }
}

impl EkyteAdapter {
    async fn update_workspace_with(
        &self,
        scope: &Scope,
        creds: &Creds,
        token: &SecretString,
        id: EkyteWorkspaceId,
        args: Value,
    ) -> Result<(), ApiError> {
        let inner = &self.inner;
        let calls = Calls::unbounded(scope);
        inner
            .update_tool(
                &calls,
                scope,
                token,
                "update_workspace",
                args,
                &format!("eKyte workspace {id}"),
                Box::pin(async {
                    Ok(inner
                        .workspace_rows(&calls, creds)
                        .await?
                        .iter()
                        .any(|w| w.id == id.get()))
                }),
            )
            .await
            .map(|_| ())
    }

    /// Whether eKyte took the status an `update_task` asked for: read from the tool's answer,
    /// else from `get_detailed_task`. That MCP applies `situation` is read from no document,
    /// so a status eKyte did not take is an error the operator sees, not a write believed
    /// done: the next poll would read the old status as a change made in eKyte, and undo
    /// GHL's. `Unsupported` when it did not; `Ok` when it did or nothing says.
    async fn status_taken(
        &self,
        scope: &Scope,
        token: &SecretString,
        id: EkyteTaskId,
        answer: &Value,
        status: TaskStatus,
    ) -> Result<(), ApiError> {
        let situation = |v: &Value| TaskDto::deserialize(v).ok().and_then(|t| t.situation);
        let now = match situation(answer) {
            Some(s) => Some(s),
            None => self
                .inner
                .read_tool(
                    &Calls::unbounded(scope),
                    scope,
                    token,
                    "get_detailed_task",
                    json!({ "taskId": id.get() }),
                )
                .await
                .ok()
                .as_ref()
                .and_then(situation),
        };
        match now {
            Some(now) if mapping::status_of(Some(now)) != status => {
                metrics::counter!("ges_ekyte_status_not_taken_total").increment(1);
                Err(ApiError::unsupported(format!(
                    "eKyte answered MCP update_task for task {id} with situation {now}, not \
                     {}: this MCP server does not move a task's status",
                    mapping::situation_of(status)
                )))
            }
            _ => Ok(()),
        }
    }

    async fn update_task_with(
        &self,
        scope: &Scope,
        token: &SecretString,
        id: EkyteTaskId,
        args: Value,
    ) -> Result<Value, ApiError> {
        let inner = &self.inner;
        let calls = Calls::unbounded(scope);
        inner
            .update_tool(
                &calls,
                scope,
                token,
                "update_task",
                args,
                &format!("eKyte task {id}"),
                Box::pin(inner.task_exists_mcp(&calls, scope, token, id)),
            )
            .await
    }
}
