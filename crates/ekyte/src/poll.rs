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

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use domain::{Contact, EntityKind, ExternalRef, Fingerprint, Record, Side, Tenant, TenantId};
use ports::ekyte::{EkyteChange, EkyteChangeSource, EkyteOp, EkyteTask, PollReport, Workspace};
use ports::store::{
    Link, LinkState, LinkStore, RunCounts, RunKind, RunStatus, RunStore, TenantStore,
};
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
    /// The other tenants of the same eKyte company (see [`EkytePoller::with_tenants`]).
    tenants: Option<Arc<dyn TenantStore>>,
    /// Companies' workspace listings, shared by the polls of their tenants. One async lock
    /// per company: polls of one company that run at once wait for a single listing.
    listings: Arc<std::sync::Mutex<HashMap<u64, SharedListing>>>,
}

type SharedListing = Arc<tokio::sync::Mutex<Option<Listing>>>;

/// One company's workspace listing, as a poll read it, and the tenants whose polls used it.
struct Listing {
    at: std::time::Instant,
    workspaces: Vec<Workspace>,
    used_by: HashSet<TenantId>,
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

/// Links of the kinds a poll compares with, keyed by eKyte id: only what the comparison
/// reads of each, since a poll holds every link of the tenant at once (a whole link keeps
/// its last agreed record, and a location of 10,000 contacts made a poll's peak several
/// times the worker's memory).
#[derive(Default)]
struct Known {
    workspaces: HashMap<String, KnownLink>,
    tasks: HashMap<String, KnownLink>,
    comments: HashSet<String>,
}

/// What a poll compares of one link.
struct KnownLink {
    state: LinkState,
    ekyte_fp: Option<Fingerprint>,
}

impl KnownLink {
    /// The link by its eKyte id, if it has one.
    fn keyed(link: Link) -> Option<(String, Self)> {
        let known = Self {
            state: link.state,
            ekyte_fp: link.ekyte_fp,
        };
        link.ekyte_id.map(|id| (id, known))
    }
}

/// The tenant's place in its eKyte company, for the workspaces it does not link.
struct Company {
    /// The tenant is the company's default location: workspaces without a readable
    /// `ExternalId` are its own.
    default_here: bool,
    /// Workspaces the company's other tenants link.
    linked_elsewhere: HashSet<String>,
    /// Other tenants share the company.
    shared: bool,
}

impl Company {
    /// Whether a workspace `tenant` does not link is `tenant`'s: its `ExternalId` names the
    /// tenant's location, or it has none (or one not written by this service) and the tenant
    /// is the default location and no other tenant links it.
    fn owns(&self, tenant: &Tenant, ws: &Workspace) -> bool {
        match ws.external_id.as_deref().map(ExternalRef::parse) {
            Some(Ok(r)) => r.location() == &tenant.location_id,
            _ => self.default_here && !self.linked_elsewhere.contains(&ws.id.to_string()),
        }
    }
}

/// The company's default location among `me` and its `peers` (the other tenants of the same
/// eKyte company): the first active tenant, by id, with `ekyte.default_location`; failing that,
/// `me` when no other tenant of the company is active; otherwise none.
fn default_location(me: &Tenant, peers: &[&Tenant]) -> Option<TenantId> {
    let mut active: Vec<&Tenant> = peers.iter().copied().filter(|t| t.active).collect();
    active.push(me);
    active.sort_by(|a, b| a.id.as_str().cmp(b.id.as_str()));
    if let Some(t) = active.iter().find(|t| t.settings.ekyte.default_location) {
        return Some(t.id.clone());
    }
    (active.len() == 1).then(|| me.id.clone())
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
            tenants: None,
            listings: Arc::default(),
        }
    }

    /// The company's workspaces: read, or — when tenants share the company — reused from
    /// another tenant's poll a moment ago. Each tenant uses a listing once: its next poll
    /// reads the company again, so a cycle of polls lists it once and no poll misses what a
    /// listing older than its own last poll could not show.
    async fn workspaces(
        &self,
        scope: &Scope,
        company: &Company,
        calls: &Calls,
        creds: &crate::Creds,
    ) -> Result<Vec<Workspace>, ApiError> {
        if !company.shared {
            return self.adapter.inner().workspaces(calls, creds).await;
        }
        let me = &scope.tenant.id;
        let fresh_for = self.adapter.config().poll.shared_listing_for;
        let slot = self
            .listings
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(scope.tenant.ekyte_company_id.get())
            .or_default()
            .clone();
        let mut slot = slot.lock().await;
        if let Some(listing) = slot.as_mut()
            && listing.at.elapsed() < fresh_for
            && listing.used_by.insert(me.clone())
        {
            return Ok(listing.workspaces.clone());
        }
        let workspaces = self.adapter.inner().workspaces(calls, creds).await?;
        *slot = Some(Listing {
            at: std::time::Instant::now(),
            workspaces: workspaces.clone(),
            used_by: HashSet::from([me.clone()]),
        });
        Ok(workspaces)
    }

    /// Several GHL locations may share one eKyte company (one company for the agency, one
    /// sub-account per client). With the tenant store, a poll yields only the workspaces of
    /// its own tenant: those it links, those whose `ExternalId` names its location, and —
    /// when it is the company's default location — those without a readable `ExternalId` that
    /// no other tenant of the company links. Without it, the tenant is taken to be the
    /// company's only one.
    pub fn with_tenants(mut self, tenants: Arc<dyn TenantStore>) -> Self {
        self.tenants = Some(tenants);
        self
    }

    /// Who the workspaces this tenant does not link belong to.
    async fn company(&self, scope: &Scope) -> Result<Company, ApiError> {
        let me = &scope.tenant;
        let Some(store) = &self.tenants else {
            return Ok(Company {
                default_here: true,
                linked_elsewhere: HashSet::new(),
                shared: false,
            });
        };
        let all = store
            .list()
            .await
            .map_err(|e| from_store(e, "listing the tenants"))?;
        let peers: Vec<&Tenant> = all
            .iter()
            .filter(|t| t.ekyte_company_id == me.ekyte_company_id && t.id != me.id)
            .collect();
        let default = default_location(me, &peers);
        let default_here = default.as_ref() == Some(&me.id);
        if default.is_none() {
            tracing::warn!(
                company = %me.ekyte_company_id,
                "several GHL locations share this eKyte company and none is its default \
                 (ekyte.default_location): workspaces made in eKyte without an ExternalId \
                 are not synced"
            );
        }
        // Only the default location takes unlabelled workspaces, so only it needs to know
        // which the others (installed or not) already link.
        let mut linked_elsewhere = HashSet::new();
        if default_here {
            for peer in &peers {
                for kind in [EntityKind::Contact, EntityKind::Business] {
                    self.links_of(&peer.id, kind, |l| {
                        linked_elsewhere.extend(l.ekyte_id);
                    })
                    .await?;
                }
            }
        }
        Ok(Company {
            default_here,
            linked_elsewhere,
            shared: !peers.is_empty(),
        })
    }

    /// Hand every link of `kind` to `keep`, a page at a time (a page is dropped before the
    /// next is read).
    async fn links_of(
        &self,
        tenant: &TenantId,
        kind: EntityKind,
        mut keep: impl FnMut(Link),
    ) -> Result<(), ApiError> {
        let page = self.adapter.config().poll.link_page;
        let mut after = 0;
        loop {
            let batch = self
                .links
                .list(tenant, kind, after, page)
                .await
                .map_err(|e| from_store(e, "listing links"))?;
            let n = batch.len();
            if let Some(last) = batch.last() {
                after = last.id;
            }
            for link in batch {
                keep(link);
            }
            if n < page as usize {
                return Ok(());
            }
        }
    }

    async fn known(&self, scope: &Scope) -> Result<Known, ApiError> {
        let t = &scope.tenant.id;
        let mut known = Known::default();
        // Business links first, so a contact link for the same workspace wins.
        for kind in [EntityKind::Business, EntityKind::Contact] {
            self.links_of(t, kind, |l| known.workspaces.extend(KnownLink::keyed(l)))
                .await?;
        }
        self.links_of(t, EntityKind::Task, |l| {
            known.tasks.extend(KnownLink::keyed(l))
        })
        .await?;
        self.links_of(t, EntityKind::Comment, |l| {
            known.comments.extend(l.ekyte_id)
        })
        .await?;
        Ok(known)
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

        let company = self.company(scope).await?;
        let mut workspaces = self.workspaces(scope, &company, calls, &creds).await?;
        workspaces.sort_by_key(|w| w.id);
        let known = self.known(scope).await?;
        tally.workspaces_seen = u32::try_from(workspaces.len()).unwrap_or(u32::MAX);

        let mut to_scan = Vec::new();
        for ws in workspaces {
            match known.workspaces.get(&ws.id.to_string()) {
                None if !company.owns(tenant, &ws) => tally.skipped += 1,
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
                if !known.comments.contains(&comment.id.to_string()) {
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
        let calls = Calls::bounded(scope, self.adapter.config().poll.max_calls);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(id: &str, location: &str, default: bool, active: bool) -> Tenant {
        let mut settings = domain::TenantSettings::default();
        settings.ekyte.default_location = default;
        Tenant {
            id: TenantId::parse(id).unwrap(),
            name: id.into(),
            location_id: domain::LocationId::parse(location).unwrap(),
            ekyte_company_id: domain::EkyteCompanyId::new(7).unwrap(),
            active,
            settings,
            install: Default::default(),
        }
    }

    fn ws(id: u64, external: Option<&str>) -> Workspace {
        Workspace {
            id: domain::EkyteWorkspaceId::new(id).unwrap(),
            name: format!("ws {id}"),
            active: true,
            external_id: external.map(str::to_owned),
        }
    }

    #[test]
    fn a_workspace_belongs_to_the_location_its_external_id_names() {
        let a = tenant("a", "locA", false, true);
        let company = Company {
            default_here: false,
            linked_elsewhere: HashSet::new(),
            shared: true,
        };
        assert!(company.owns(&a, &ws(1, Some("ghl:locA:c1"))));
        assert!(company.owns(&a, &ws(2, Some("ghl:locA:business:b1"))));
        assert!(!company.owns(&a, &ws(3, Some("ghl:locB:c1"))));
        // Unlabelled: not the default location's business here.
        assert!(!company.owns(&a, &ws(4, None)));
        assert!(!company.owns(&a, &ws(5, Some("crm-123"))));
    }

    #[test]
    fn unlabelled_workspaces_go_to_the_default_location_unless_another_tenant_links_them() {
        let a = tenant("a", "locA", true, true);
        let company = Company {
            default_here: true,
            linked_elsewhere: HashSet::from(["9".to_owned()]),
            shared: true,
        };
        assert!(company.owns(&a, &ws(4, None)));
        assert!(!company.owns(&a, &ws(9, None)), "linked by another tenant");
        assert!(!company.owns(&a, &ws(3, Some("ghl:locB:c1"))));
    }

    #[test]
    fn the_default_location_is_the_flagged_one_or_the_only_one() {
        let a = tenant("a", "locA", false, true);
        let b = tenant("b", "locB", true, true);
        let c = tenant("c", "locC", false, false);
        assert_eq!(default_location(&a, &[]), Some(a.id.clone()), "alone");
        assert_eq!(
            default_location(&a, &[&c]),
            Some(a.id.clone()),
            "the other one is uninstalled"
        );
        assert_eq!(default_location(&a, &[&b, &c]), Some(b.id.clone()));
        assert_eq!(default_location(&b, &[&a]), Some(b.id.clone()));
        let d = tenant("d", "locD", false, true);
        assert_eq!(default_location(&a, &[&d]), None, "two, none flagged");
    }
}
