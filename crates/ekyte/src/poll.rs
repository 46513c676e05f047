//! Change polling: eKyte sends no webhooks (API.md §8), so changes are found by listing what
//! eKyte shows and comparing it with the link store's fingerprints (DESIGN.md §2, §4).
//!
//! One poll:
//! 1. lists every workspace (BI `/v1.0/workspaces`, all pages);
//! 2. for each workspace: no link (of kind `Contact`, or `Business` when workspaces are kept
//!    per business) and active → `WorkspaceCreated`; a `Linked` link whose `ekyte_fp` differs
//!    from the fingerprint of the workspace's name → `WorkspaceRenamed`; a `Linked` link and
//!    the workspace inactive → `WorkspaceDeactivated`;
//! 3. for each active workspace with a `Linked` link, lists its tasks with comments (BI
//!    `/v1.2/tasks?workspaceId=…&status=0&includeComments=1`, all pages): a task without a link
//!    → `TaskCreated`; a `Linked` task whose `ekyte_fp` differs → `TaskChanged` (title, body,
//!    due or status changed); a comment without a link → `CommentAdded`.
//!
//! Fingerprints are those the link store keeps for the eKyte side:
//! `Fingerprint::of(&record.normalised(&tenant.settings.normalise_ctx()).project(Side::Ekyte))`,
//! where a workspace's record is a `Contact` with only `name` set. Links in state `Deleted`
//! are closed and yield nothing; `Claimed` links (a create in flight) yield nothing either.
//!
//! Guarantees: the poll is a pure comparison — it writes no link — so a change is yielded again
//! by every poll until whoever handles it updates the link (stores the new `ekyte_fp`, links the
//! new record, or closes the link); [`EkyteChange::dedupe_key`] is stable for that. A poll makes
//! at most `poll.max_calls` HTTP requests (retries included); when that budget runs out, the
//! report says `more` and the next poll scans the workspaces this one did not reach (the run's
//! cursor is the last workspace fully scanned); a pass ends with the last workspace. Each poll is one `RunKind::Poll` run: checkpointed after the
//! workspace listing and after each workspace, with `api_calls` counted, then finished
//! `Completed` (or `Failed` with the error).

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use domain::{Contact, EntityKind, Fingerprint, Record, Side, Tenant};
use ports::ekyte::{EkyteChange, EkyteChangeSource, EkyteOp, EkyteTask, PollReport, Workspace};
use ports::store::{Link, LinkState, LinkStore, RunCounts, RunKind, RunStatus, RunStore};
use ports::{ApiError, Scope};

use crate::EkyteAdapter;
use crate::client::Calls;
use crate::error::{BudgetSpent, from_store};

/// The eKyte change source. Holds the adapter and the two store ports it needs.
#[derive(Clone)]
pub struct EkytePoller {
    adapter: EkyteAdapter,
    links: Arc<dyn LinkStore>,
    runs: Arc<dyn RunStore>,
}

impl std::fmt::Debug for EkytePoller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EkytePoller")
            .field("adapter", &self.adapter)
            .finish_non_exhaustive()
    }
}

/// The eKyte-side fingerprint of a workspace, as links of kind `Contact` keep it.
pub fn workspace_fingerprint(tenant: &Tenant, workspace: &Workspace) -> Fingerprint {
    let record = Contact {
        name: Some(workspace.name.clone()),
        ..Contact::default()
    };
    Fingerprint::of(
        &record
            .normalised(&tenant.settings.normalise_ctx())
            .project(Side::Ekyte),
    )
}

/// The eKyte-side fingerprint of a task, as links of kind `Task` keep it.
pub fn task_fingerprint(tenant: &Tenant, task: &EkyteTask) -> Fingerprint {
    Fingerprint::of(
        &task
            .task
            .normalised(&tenant.settings.normalise_ctx())
            .project(Side::Ekyte),
    )
}

/// Links of the kinds a poll compares with, keyed by eKyte id.
#[derive(Default)]
struct Known {
    workspaces: HashMap<String, Link>,
    tasks: HashMap<String, Link>,
    comments: HashMap<String, Link>,
}

/// Progress of one poll.
#[derive(Default)]
struct Tally {
    changes: Vec<EkyteChange>,
    workspaces_seen: u32,
    tasks_seen: u32,
    comments_seen: u32,
    skipped: u64,
    cursor: Option<String>,
    /// Stopped by the budget with workspaces left to scan.
    more: bool,
}

impl Tally {
    fn counts(&self, calls: &Calls) -> RunCounts {
        RunCounts {
            pages: u64::from(calls.made()),
            seen: u64::from(self.workspaces_seen)
                + u64::from(self.tasks_seen)
                + u64::from(self.comments_seen),
            enqueued: self.changes.len() as u64,
            skipped: self.skipped,
            errors: 0,
            api_calls: u64::from(calls.made()),
        }
    }

    fn push(&mut self, change: EkyteChange) {
        let kind = match &change {
            EkyteChange::WorkspaceCreated { .. } => "workspace_created",
            EkyteChange::WorkspaceRenamed { .. } => "workspace_renamed",
            EkyteChange::WorkspaceDeactivated { .. } => "workspace_deactivated",
            EkyteChange::TaskCreated { .. } => "task_created",
            EkyteChange::TaskChanged { .. } => "task_changed",
            EkyteChange::CommentAdded { .. } => "comment_added",
        };
        metrics::counter!("ges_ekyte_poll_changes_total", "kind" => kind).increment(1);
        self.changes.push(change);
    }
}

impl EkytePoller {
    pub fn new(adapter: EkyteAdapter, links: Arc<dyn LinkStore>, runs: Arc<dyn RunStore>) -> Self {
        Self {
            adapter,
            links,
            runs,
        }
    }

    async fn links_of(&self, scope: &Scope, kind: EntityKind) -> Result<Vec<Link>, ApiError> {
        let page = self.adapter.config().poll.link_page;
        let mut out = Vec::new();
        let mut after = 0;
        loop {
            let batch = self
                .links
                .list(&scope.tenant.id, kind, after, page)
                .await
                .map_err(|e| from_store(e, "listing links"))?;
            let n = batch.len();
            if let Some(last) = batch.last() {
                after = last.id;
            }
            out.extend(batch);
            if n < page as usize {
                return Ok(out);
            }
        }
    }

    async fn known(&self, scope: &Scope) -> Result<Known, ApiError> {
        let by_ekyte = |links: Vec<Link>| {
            links
                .into_iter()
                .filter_map(|l| l.ekyte_id.clone().map(|id| (id, l)))
                .collect::<HashMap<_, _>>()
        };
        // Business links first, so a contact link for the same workspace wins.
        let mut workspaces = by_ekyte(self.links_of(scope, EntityKind::Business).await?);
        workspaces.extend(by_ekyte(self.links_of(scope, EntityKind::Contact).await?));
        Ok(Known {
            workspaces,
            tasks: by_ekyte(self.links_of(scope, EntityKind::Task).await?),
            comments: by_ekyte(self.links_of(scope, EntityKind::Comment).await?),
        })
    }

    /// The whole poll, checkpointing as it goes. Errors carry the tally reached.
    async fn scan(
        &self,
        scope: &Scope,
        run_id: i64,
        calls: &Calls,
        tally: &mut Tally,
    ) -> Result<(), ApiError> {
        let inner = self.adapter.inner();
        let tenant = &scope.tenant;
        let creds = inner.creds(scope).await?;
        creds.require(EkyteOp::Read)?;
        let resume_after: Option<u64> = self
            .runs
            .last_completed(&tenant.id, RunKind::Poll)
            .await
            .map_err(|e| from_store(e, "reading the last poll"))?
            .and_then(|r| r.cursor)
            .and_then(|c| c.parse().ok());

        let mut workspaces = inner.workspaces(calls, &creds).await?;
        workspaces.sort_by_key(|w| w.id);
        let known = self.known(scope).await?;
        tally.workspaces_seen = u32::try_from(workspaces.len()).unwrap_or(u32::MAX);

        let mut to_scan = Vec::new();
        for ws in workspaces {
            match known.workspaces.get(&ws.id.to_string()) {
                None if ws.active => tally.push(EkyteChange::WorkspaceCreated { workspace: ws }),
                None => {}
                Some(link) if link.state != LinkState::Linked => tally.skipped += 1,
                Some(link) => {
                    if link.ekyte_fp != Some(workspace_fingerprint(tenant, &ws)) {
                        tally.push(EkyteChange::WorkspaceRenamed {
                            workspace: ws.clone(),
                        });
                    }
                    if ws.active {
                        to_scan.push(ws.id);
                    } else {
                        tally.push(EkyteChange::WorkspaceDeactivated { workspace: ws });
                    }
                }
            }
        }
        self.checkpoint(run_id, None, tally, calls).await?;

        // Continue where a poll cut short by its budget stopped; the pass ends with the
        // last workspace, and the next poll starts a new one from the first.
        if let Some(after) = resume_after {
            let split = to_scan.partition_point(|w| w.get() <= after);
            to_scan.drain(..split);
        }
        let total = to_scan.len();
        for (done, ws) in to_scan.into_iter().enumerate() {
            let tasks = match inner.tasks(calls, scope, &creds, ws, true).await {
                Ok(t) => t,
                Err(e) if BudgetSpent::is(&e) => {
                    if done == 0 {
                        return Err(ApiError::Unknown(anyhow::anyhow!(
                            "the poll budget of {} calls does not cover one workspace's tasks \
                             (workspace {ws}); raise poll.max_calls",
                            self.adapter.config().poll.max_calls
                        )));
                    }
                    tracing::info!(
                        scanned = done,
                        total,
                        calls = calls.made(),
                        "poll budget spent; the next poll continues from here"
                    );
                    tally.more = true;
                    return Ok(());
                }
                Err(e) => return Err(e),
            };
            self.compare_tasks(scope, ws, tasks, &known, tally);
            tally.cursor = if done + 1 == total {
                None
            } else {
                Some(ws.to_string())
            };
            self.checkpoint(run_id, tally.cursor.clone(), tally, calls)
                .await?;
        }
        tally.cursor = None;
        Ok(())
    }

    fn compare_tasks(
        &self,
        scope: &Scope,
        workspace: domain::EkyteWorkspaceId,
        tasks: Vec<EkyteTask>,
        known: &Known,
        tally: &mut Tally,
    ) {
        for task in tasks {
            tally.tasks_seen += 1;
            tally.comments_seen += u32::try_from(task.comments.len()).unwrap_or(u32::MAX);
            let link = known.tasks.get(&task.id.to_string());
            if link.is_some_and(|l| l.state == LinkState::Deleted) {
                tally.skipped += 1;
                continue;
            }
            for comment in &task.comments {
                if !known.comments.contains_key(&comment.id.to_string()) {
                    tally.push(EkyteChange::CommentAdded {
                        comment: comment.clone(),
                        workspace,
                    });
                }
            }
            match link {
                None => tally.push(EkyteChange::TaskCreated { task }),
                Some(l) if l.state == LinkState::Linked => {
                    if l.ekyte_fp != Some(task_fingerprint(&scope.tenant, &task)) {
                        tally.push(EkyteChange::TaskChanged { task });
                    }
                }
                Some(_) => tally.skipped += 1,
            }
        }
    }

    /// A poll run of the tenant that is running and was checkpointed recently
    /// ([`crate::PollConfig::alive_for`]).
    async fn running_poll(
        &self,
        tenant: &domain::TenantId,
    ) -> Result<Option<ports::store::SyncRun>, ApiError> {
        let alive_for = chrono::Duration::from_std(self.adapter.config().poll.alive_for)
            .unwrap_or(chrono::Duration::MAX);
        let now = chrono::Utc::now();
        Ok(self
            .runs
            .recent(tenant, 10)
            .await
            .map_err(|e| from_store(e, "reading the recent runs"))?
            .into_iter()
            .find(|r| {
                r.kind == RunKind::Poll
                    && r.status == RunStatus::Running
                    && now.signed_duration_since(r.updated_at) < alive_for
            }))
    }

    async fn checkpoint(
        &self,
        run_id: i64,
        cursor: Option<String>,
        tally: &Tally,
        calls: &Calls,
    ) -> Result<(), ApiError> {
        self.runs
            .checkpoint(run_id, cursor, tally.counts(calls))
            .await
            .map_err(|e| from_store(e, "checkpointing the poll"))
    }
}

#[async_trait]
impl EkyteChangeSource for EkytePoller {
    #[tracing::instrument(skip_all, fields(tenant = %scope.tenant.id))]
    async fn poll(&self, scope: &Scope) -> Result<PollReport, ApiError> {
        let tenant = &scope.tenant.id;
        if let Some(alive) = self.running_poll(tenant).await? {
            tracing::info!(
                run = alive.id,
                "another poll of this tenant is running; it covers this one"
            );
            return Ok(PollReport {
                changes: vec![],
                calls: 0,
                workspaces_seen: 0,
                tasks_seen: 0,
                more: false,
            });
        }
        let run = self
            .runs
            .start_or_resume(tenant, RunKind::Poll, None)
            .await
            .map_err(|e| from_store(e, "starting the poll run"))?;
        let calls = Calls::bounded(&scope.tenant.id, self.adapter.config().poll.max_calls);
        let mut tally = Tally::default();
        match self.scan(scope, run.id, &calls, &mut tally).await {
            Ok(()) => {
                self.checkpoint(run.id, tally.cursor.clone(), &tally, &calls)
                    .await?;
                self.runs
                    .finish(run.id, RunStatus::Completed, None)
                    .await
                    .map_err(|e| from_store(e, "finishing the poll run"))?;
                tracing::info!(
                    changes = tally.changes.len(),
                    calls = calls.made(),
                    workspaces = tally.workspaces_seen,
                    tasks = tally.tasks_seen,
                    "eKyte poll done"
                );
                Ok(PollReport {
                    changes: tally.changes,
                    calls: calls.made(),
                    workspaces_seen: tally.workspaces_seen,
                    tasks_seen: tally.tasks_seen,
                    more: tally.more,
                })
            }
            Err(e) => {
                let mut counts = tally.counts(&calls);
                counts.errors += 1;
                // Best effort: the poll's own error is the one to report.
                if let Err(se) = self.runs.checkpoint(run.id, None, counts).await {
                    tracing::warn!(error = %se, "could not checkpoint the failed poll");
                }
                if let Err(se) = self
                    .runs
                    .finish(run.id, RunStatus::Failed, Some(e.to_string()))
                    .await
                {
                    tracing::warn!(error = %se, "could not finish the failed poll");
                }
                Err(e)
            }
        }
    }
}
