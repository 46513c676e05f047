//! Full and incremental syncs (M2): page through GHL's contacts from a checkpoint and enqueue a
//! per-contact sync for the ones that changed.
//!
//! - The run's cursor is stored after every page: a crash resumes, it does not restart.
//! - Incremental: contacts with `dateUpdated >= last start − overlap`; a contact gets a sync
//!   when it has no link or its fingerprint differs from the one last agreed (our own writes
//!   come back with the same fingerprint and are skipped). It reads search pages only.
//! - Full: every selected contact, and also what the contact's fingerprint cannot show:
//!   tasks through the location-wide task search (many contacts per call) and notes per
//!   contact, compared with their links. Dropped webhooks are caught here.
//! - Full: linked contacts the search no longer returns (deleted in GHL, or no longer
//!   selected, while the webhook was lost) get a sync too, which re-reads the contact and
//!   settles its link. Each page's contacts are marked seen in the store before the page's
//!   checkpoint, so a run spread over many messages or resumed after a crash still knows at its
//!   last page every contact it saw.
//! - A sweep message enqueues at most `sweep_batch` contact syncs, then queues its
//!   continuation (`sync.continue`) behind them and ends: a location's backlog in the bulk
//!   lane stays bounded however large the location, so other locations' messages are never
//!   far behind it, and the worker sharing that lane between tenants judges a short line.
//!   What the run read once (the calendars' appointments) is kept in the store for its
//!   later pages and messages; that it was read is kept in memory, so a replica that does
//!   not have it reads the calendars again.

use std::collections::{HashMap, HashSet};

use domain::{EntityKind, Fingerprint, GhlContactId, Record, Selector, Side};
use ports::Scope;
use ports::ghl::{ContactSearch, GhlAppointment, GhlContact, GhlTask, ListingMode, TaskSearch};
use ports::queue::{Envelope, Payload, Prefetched, SyncMode, sweep_message_id};
use ports::store::{LinkState, RunCounts, RunKind, RunStatus};

use crate::Engine;
use crate::error::SyncError;

/// How many contacts one task search covers, and the page size of its results.
const TASK_SEARCH_CONTACTS: usize = 50;
const TASK_SEARCH_LIMIT: u32 = 100;
/// Links read per store call when looking for linked contacts a full sync did not see.
const LINK_PAGE: u32 = 500;

/// The location's appointments as one sweep read them.
pub(crate) enum Appointments {
    NotRead,
    /// Each contact's sync reads its own (unreadable, off, or dearer than per contact).
    Unavailable,
    /// Kept in the store for the run (`RunStore::keep_appointments`), read back page by page:
    /// a location's appointments are not held in the worker. (That they were kept is this
    /// worker's memory: a continuation another worker handles reads the calendars again.)
    Kept,
    /// Held here, by a dry run (which writes nothing, and goes in one message).
    ByContact(HashMap<GhlContactId, Vec<GhlAppointment>>),
}

/// About how many appointments one calendar answer should hold. An answer is decoded whole
/// (the route has no paging), so the ranges asked for are sized to keep it near this.
const CALENDAR_ANSWER: i64 = 500;
/// The narrowest range a calendar is read in, however dense its appointments.
const CALENDAR_NARROWEST: chrono::Duration = chrono::Duration::hours(1);

/// The widest range a calendar of this location is read in: as if the `expected` contacts had
/// one appointment each, spread evenly over the window, [`CALENDAR_ANSWER`] to an answer
/// (GHL may allow less; the adapter narrows what it refuses). That costs at most one call per
/// [`CALENDAR_ANSWER`] contacts, and keeps a large location's first answers small before
/// their density is known.
fn calendar_span_for(window: chrono::Duration, expected: u64) -> chrono::Duration {
    span_holding(window, expected, window)
}

/// The next range's width after an answer of `found` appointments over `read`: sized so that
/// an answer as dense holds about [`CALENDAR_ANSWER`], at most `widest`.
fn next_calendar_span(
    read: chrono::Duration,
    found: usize,
    widest: chrono::Duration,
) -> chrono::Duration {
    if found == 0 {
        return widest;
    }
    span_holding(read, u64::try_from(found).unwrap_or(u64::MAX), widest)
}

/// The width in which `count` appointments over `width` would be [`CALENDAR_ANSWER`], between
/// [`CALENDAR_NARROWEST`] and `widest`.
fn span_holding(width: chrono::Duration, count: u64, widest: chrono::Duration) -> chrono::Duration {
    let ms = i128::from(width.num_milliseconds().max(1));
    let fit = ms * i128::from(CALENDAR_ANSWER) / i128::from(count.max(1));
    chrono::Duration::milliseconds(i64::try_from(fit).unwrap_or(i64::MAX))
        .clamp(CALENDAR_NARROWEST, widest.max(CALENDAR_NARROWEST))
}

/// How far back and ahead a sweep reads the calendars' appointments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppointmentWindow {
    pub past: chrono::Duration,
    pub future: chrono::Duration,
}

/// Progress of a sweep, for a progress bar.
pub trait Progress: Send + Sync {
    fn page(&self, seen: u64, total: Option<u64>, enqueued: u64);
}

/// No progress display.
pub struct Quiet;

impl Progress for Quiet {
    fn page(&self, _: u64, _: Option<u64>, _: u64) {}
}

/// What a sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SweepReport {
    pub run_id: i64,
    pub mode: String,
    pub pages: u64,
    pub seen: u64,
    pub enqueued: u64,
    pub unchanged: u64,
    pub not_selected: u64,
    /// Linked contacts the search did not return (enqueued, and counted in `enqueued`).
    pub unseen_linked: u64,
    pub api_calls: u64,
    pub resumed: bool,
}

/// Where a sweep starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SweepFrom {
    /// A new run, or the checkpoint of the one left running, and on to its last page in one
    /// go (the CLI and the tests).
    Whole,
    /// A `sync.full` message published at `requested_at`: it resumes the run left running
    /// if that run started after it (it is this message again, retried or redelivered after
    /// a crash), and otherwise starts over from the first page, ending the run under way as
    /// superseded. A full sync asked for after an outage must compare every contact again,
    /// not only the pages a run begun before it had not reached; starting over costs a
    /// re-read of the search pages, since the contacts synced meanwhile are unchanged.
    Message {
        requested_at: chrono::DateTime<chrono::Utc>,
    },
    /// A `sync.continue` message: run `run` from its checkpoint, if it is still running.
    ///
    /// Whatever `pages` says: a retried or redelivered continuation finds the run further on
    /// than when it was queued, and goes on from there. Two messages carrying one run on
    /// each go on from the latest checkpoint, so they share its pages rather than read them
    /// twice; two that go on from the same checkpoint at once queue the same continuation
    /// id, and the inbox lets only one of those through.
    Continue { run: i64, pages: u64 },
}

/// One message's part of a sweep.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepStep {
    pub report: SweepReport,
    /// The run and its pages read, when it goes on in a continuation.
    pub next: Option<(i64, u64)>,
}

/// What a run read once and its next message needs again: whether it read the calendars
/// (their appointments are in the store, or, for a dry run, here). Forgotten when the run
/// ends, and after [`SweepMemory::KEEP`] unused.
#[derive(Default)]
pub(crate) struct SweepMemory(std::sync::Mutex<HashMap<i64, (std::time::Instant, Appointments)>>);

impl SweepMemory {
    const KEEP: std::time::Duration = std::time::Duration::from_secs(3600);

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i64, (std::time::Instant, Appointments)>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn take(&self, run: i64) -> Appointments {
        let mut runs = self.lock();
        runs.retain(|_, (at, _)| at.elapsed() < Self::KEEP);
        runs.remove(&run).map_or(Appointments::NotRead, |(_, a)| a)
    }

    fn keep(&self, run: i64, appointments: Appointments) {
        self.lock()
            .insert(run, (std::time::Instant::now(), appointments));
    }
}

/// `Config` naming what the tenant's settings lack, when they lack what every sync needs.
pub(crate) fn refuse_unready(tenant: &domain::Tenant) -> Result<(), SyncError> {
    let missing = tenant.settings.missing();
    if missing.is_empty() {
        return Ok(());
    }
    Err(SyncError::Config(format!(
        "tenant {} cannot sync: its settings lack {} (set them with `tenants add --settings`, then replay its dead letters)",
        tenant.id,
        missing.join(", ")
    )))
}

impl Engine {
    /// Run a full or incremental sweep for one tenant, from its first page (or the
    /// checkpoint of the run left running) to its last, in one go.
    pub async fn sweep(
        &self,
        scope: &Scope,
        mode: SyncMode,
        dry_run: bool,
        progress: &dyn Progress,
    ) -> Result<SweepReport, SyncError> {
        let step = self
            .sweep_step(scope, mode, dry_run, SweepFrom::Whole, progress)
            .await?;
        Ok(step.report)
    }

    /// One message's part of a sweep (see [`SweepFrom`]): pages until the run ends or, for a
    /// message, until it has enqueued `sweep_batch` contact syncs; then [`SweepStep::next`]
    /// says where its continuation goes on.
    pub async fn sweep_step(
        &self,
        scope: &Scope,
        mode: SyncMode,
        dry_run: bool,
        from: SweepFrom,
        progress: &dyn Progress,
    ) -> Result<SweepStep, SyncError> {
        let tenant = &scope.tenant;
        // A tenant that cannot work fails its run, visibly, instead of queueing a sync per
        // contact that each fail alone.
        refuse_unready(tenant)?;
        let kind = match mode {
            SyncMode::Full => RunKind::Full,
            SyncMode::Incremental => RunKind::Incremental,
        };
        let since = match mode {
            SyncMode::Full => None,
            SyncMode::Incremental => {
                let last_inc = self
                    .ports
                    .runs
                    .last_completed(&tenant.id, RunKind::Incremental)
                    .await
                    .map_err(SyncError::store("read last run"))?;
                let last_full = self
                    .ports
                    .runs
                    .last_completed(&tenant.id, RunKind::Full)
                    .await
                    .map_err(SyncError::store("read last run"))?;
                let newest = [last_inc, last_full]
                    .into_iter()
                    .flatten()
                    .map(|r| r.started_at)
                    .max();
                newest.map(|t| {
                    t - chrono::Duration::from_std(self.settings.incremental_overlap)
                        .unwrap_or_else(|_| chrono::Duration::minutes(2))
                })
            }
        };
        // A dry run records no run: it writes nothing, so it must neither move the next
        // incremental sync's lower bound nor resume (and advance) a real run's cursor. Its
        // messages carry a run id of their own, below zero.
        let run = if dry_run {
            let now = self.ports.clock.now();
            ports::store::SyncRun {
                id: -now.timestamp_micros(),
                tenant: tenant.id.clone(),
                kind,
                status: RunStatus::Running,
                cursor: None,
                since,
                counts: RunCounts::default(),
                error: None,
                started_at: now,
                updated_at: now,
                finished_at: None,
            }
        } else {
            match self.run_for(tenant, kind, since, from).await? {
                Some(run) => run,
                None => {
                    return Ok(SweepStep {
                        report: SweepReport {
                            mode: kind.as_str().to_owned(),
                            ..SweepReport::default()
                        },
                        next: None,
                    });
                }
            }
        };
        // A dry run goes from its first page to its last in one message: it records no run
        // a continuation could go on from.
        let batch = match from {
            SweepFrom::Whole => None,
            _ if dry_run => None,
            _ => self.settings.sweep_batch.filter(|b| *b > 0),
        };
        let resumed = run.cursor.is_some() || run.counts.pages > 0;
        let mut counts = run.counts;
        let mut report = SweepReport {
            run_id: run.id,
            mode: kind.as_str().to_owned(),
            resumed,
            ..SweepReport::default()
        };
        let mut cursor = run.cursor.clone().map(ports::ghl::SearchCursor);
        let tag = match &tenant.settings.selector {
            Selector::Tag { tag } => Some(tag.clone()),
            _ => None,
        };
        let ctx = tenant.settings.normalise_ctx();
        let bulk = scope.bulk();
        // Every contact the search returned: marked in the store page by page (a real full
        // run), or kept here (a dry run, which writes nothing and goes in one message).
        let mark_seen = mode == SyncMode::Full && !dry_run;
        let mut seen_ids: Option<HashSet<GhlContactId>> =
            (mode == SyncMode::Full && dry_run).then(HashSet::new);
        // The location's appointments by contact, read once per run when first needed.
        let mut appointments = self.sweeps.take(run.id);
        let mut enqueued_here = 0u64;
        // Ok(Some(pages)): this message's part is done and the run goes on from `pages`.
        let result: Result<Option<u64>, SyncError> = async {
            loop {
                let page = self
                    .search_page(&bulk, run.since, tag.clone(), cursor.clone())
                    .await?;
                counts.api_calls += 1;
                counts.pages += 1;
                // (contact, changed, unlinked)
                let mut candidates: Vec<(GhlContact, bool, bool)> = Vec::new();
                let (page_len, search_total) = (page.contacts.len(), page.total);
                // The page's contact links, in one read.
                let ids: Vec<String> = page.contacts.iter().map(|c| c.id.to_string()).collect();
                let mut links: HashMap<String, ports::store::Link> = self
                    .ports
                    .links
                    .by_ghl_ids(&tenant.id, EntityKind::Contact, &ids)
                    .await
                    .map_err(SyncError::store("read contact links"))?
                    .into_iter()
                    .filter_map(|l| l.ghl_id.clone().map(|g| (g, l)))
                    .collect();
                if mark_seen {
                    self.ports
                        .runs
                        .mark_seen(run.id, &ids)
                        .await
                        .map_err(SyncError::store("mark the page's contacts seen"))?;
                }
                for c in page.contacts {
                    counts.seen += 1;
                    if let Some(seen) = seen_ids.as_mut() {
                        seen.insert(c.id.clone());
                    }
                    let normalised = c.contact.normalised(&ctx);
                    if !tenant.settings.selector.matches(&normalised) {
                        report.not_selected += 1;
                        continue;
                    }
                    let link = links.remove(c.id.as_str());
                    let changed = match &link {
                        None => true,
                        Some(l) if l.state == LinkState::Deleted => false,
                        Some(l) if l.state == LinkState::Claimed => true,
                        Some(l) => {
                            l.ghl_fp != Some(Fingerprint::of(&normalised.project(Side::Ghl)))
                        }
                    };
                    let closed = link.as_ref().is_some_and(|l| l.state == LinkState::Deleted);
                    if !closed {
                        candidates.push((c, changed, link.is_none()));
                    }
                }
                if mode == SyncMode::Full {
                    let unchanged: Vec<GhlContactId> = candidates
                        .iter()
                        .filter(|(_, changed, _)| !changed)
                        .map(|(c, _, _)| c.id.clone())
                        .collect();
                    let deeper = self
                        .children_changed(&bulk, &unchanged, &mut counts)
                        .await?;
                    for (c, changed, _) in candidates.iter_mut() {
                        if deeper.contains(&c.id) {
                            *changed = true;
                        }
                    }
                }
                // Contacts never synced: their tasks and appointments are read here, many
                // contacts per call, and travel with their message.
                let unlinked: Vec<GhlContactId> = candidates
                    .iter()
                    .filter(|(_, changed, unlinked)| *changed && *unlinked)
                    .map(|(c, _, _)| c.id.clone())
                    .collect();
                // How many never-synced contacts this sweep will find, judged by this page.
                let expected = search_total.map_or(unlinked.len() as u64, |total| {
                    total * unlinked.len() as u64 / page_len.max(1) as u64
                });
                let mut prefetched = self
                    .prefetch(
                        &bulk,
                        (!dry_run).then_some(run.id),
                        &unlinked,
                        expected,
                        &mut appointments,
                        &mut counts,
                    )
                    .await?;
                for (c, changed, _) in candidates {
                    if !changed {
                        report.unchanged += 1;
                        continue;
                    }
                    counts.enqueued += 1;
                    enqueued_here += 1;
                    self.enqueue_sync(
                        scope,
                        sweep_message_id(run.id, &c.id, false, c.contact.date_updated),
                        &c.id,
                        dry_run,
                        prefetched.remove(&c.id),
                    )
                    .await?;
                }
                if page.next.is_none() && mode == SyncMode::Full {
                    let unseen = match &seen_ids {
                        Some(seen) => self.unseen_linked(scope, seen).await?,
                        None if mark_seen => self.unseen_marked(scope, run.id).await?,
                        None => Vec::new(),
                    };
                    for id in unseen {
                        counts.enqueued += 1;
                        report.unseen_linked += 1;
                        self.enqueue_sync(
                            scope,
                            sweep_message_id(run.id, &id, true, None),
                            &id,
                            dry_run,
                            None,
                        )
                        .await?;
                    }
                }
                cursor = page.next;
                if !dry_run {
                    self.ports
                        .runs
                        .checkpoint(run.id, cursor.as_ref().map(|c| c.0.clone()), counts)
                        .await
                        .map_err(SyncError::store("checkpoint run"))?;
                }
                progress.page(counts.seen, page.total, counts.enqueued);
                if cursor.is_none() {
                    return Ok(None);
                }
                if batch.is_some_and(|b| enqueued_here >= b) {
                    return Ok(Some(counts.pages));
                }
            }
        }
        .await;
        if let Ok(Some(pages)) = result {
            self.sweeps.keep(run.id, appointments);
            report.pages = counts.pages;
            report.seen = counts.seen;
            report.enqueued = counts.enqueued;
            report.api_calls = counts.api_calls;
            return Ok(SweepStep {
                report,
                next: Some((run.id, pages)),
            });
        }
        let (status, error) = match &result {
            Ok(_) => (RunStatus::Completed, None),
            Err(e) => (RunStatus::Failed, Some(e.chain().join(": "))),
        };
        // A failed run stays resumable only if it is left running; mark it failed only for
        // errors a retry cannot fix.
        let finish = !dry_run
            && !matches!(
                &result,
                Err(e) if matches!(
                    ports::Classify::disposition(e),
                    ports::Disposition::Retry { .. } | ports::Disposition::Wait { .. }
                )
            );
        if finish {
            self.ports
                .runs
                .finish(run.id, status, error)
                .await
                .map_err(SyncError::store("finish run"))?;
        }
        // A run that failed for a retry keeps what it read for the retry.
        if result.is_err() && !finish {
            self.sweeps.keep(run.id, appointments);
        }
        result?;
        report.pages = counts.pages;
        report.seen = counts.seen;
        report.enqueued = counts.enqueued;
        report.api_calls = counts.api_calls;
        Ok(SweepStep { report, next: None })
    }

    /// The run a sweep goes on with: `None` for a continuation whose run has ended.
    async fn run_for(
        &self,
        tenant: &domain::Tenant,
        kind: RunKind,
        since: Option<chrono::DateTime<chrono::Utc>>,
        from: SweepFrom,
    ) -> Result<Option<ports::store::SyncRun>, SyncError> {
        let running = || async {
            self.ports
                .runs
                .running(&tenant.id, kind)
                .await
                .map_err(SyncError::store("read the running run"))
        };
        let (run, pages) = match from {
            SweepFrom::Whole => return self.start_run(tenant, kind, since).await.map(Some),
            SweepFrom::Message { requested_at } => {
                if let Some(old) = running().await?
                    && old.started_at < requested_at
                {
                    tracing::info!(
                        tenant = %tenant.id,
                        run = old.id,
                        pages = old.counts.pages,
                        "a newer {} sync request starts over; the run under way ends as superseded",
                        kind.as_str()
                    );
                    self.ports
                        .runs
                        .finish(
                            old.id,
                            RunStatus::Failed,
                            Some(format!(
                                "superseded: a {} sync requested at {requested_at} started over from the first page",
                                kind.as_str()
                            )),
                        )
                        .await
                        .map_err(SyncError::store("end the superseded run"))?;
                }
                return self.start_run(tenant, kind, since).await.map(Some);
            }
            SweepFrom::Continue { run, pages } => (run, pages),
        };
        match running().await? {
            Some(r) if r.id == run => Ok(Some(r)),
            other => {
                tracing::info!(
                    tenant = %tenant.id,
                    run,
                    pages,
                    running = ?other.map(|r| r.id),
                    "the continuation of a sync that has ended; nothing to do"
                );
                Ok(None)
            }
        }
    }

    async fn start_run(
        &self,
        tenant: &domain::Tenant,
        kind: RunKind,
        since: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<ports::store::SyncRun, SyncError> {
        self.ports
            .runs
            .start_or_resume(&tenant.id, kind, since)
            .await
            .map_err(SyncError::store("start run"))
    }

    /// Queue the continuation of a sweep that went on past this message.
    pub(crate) async fn continue_sweep(
        &self,
        scope: &Scope,
        mode: SyncMode,
        next: Option<(i64, u64)>,
    ) -> Result<(), SyncError> {
        let Some((run, pages)) = next else {
            return Ok(());
        };
        self.publish(
            scope,
            ports::queue::sweep_continuation_id(run, pages),
            Payload::SyncContinue { mode, run, pages },
        )
        .await
    }

    /// Publish one message of the tenant's sweep.
    async fn publish(&self, scope: &Scope, id: String, payload: Payload) -> Result<(), SyncError> {
        let env = Envelope::new(id, scope.tenant.id.clone(), payload, self.ports.clock.now());
        self.ports
            .publisher
            .publish(&env)
            .await
            .map_err(SyncError::Queue)
    }

    /// The tenant's linked contacts run `run` did not mark seen.
    async fn unseen_marked(&self, scope: &Scope, run: i64) -> Result<Vec<GhlContactId>, SyncError> {
        let mut unseen = Vec::new();
        let mut after = 0;
        loop {
            let rows = self
                .ports
                .runs
                .unseen_contacts(&scope.tenant.id, run, after, LINK_PAGE)
                .await
                .map_err(SyncError::store("read the contacts the run did not see"))?;
            let n = rows.len();
            for (link, id) in rows {
                after = after.max(link);
                match GhlContactId::parse(&id) {
                    Ok(id) => unseen.push(id),
                    // Ids are checked before a link is written: only a damaged row gets here.
                    Err(e) => {
                        tracing::warn!(link, error = %e, "contact link with a bad GHL id left alone")
                    }
                }
            }
            if n < LINK_PAGE as usize {
                return Ok(unseen);
            }
        }
    }

    /// One page of GHL's contact search, as a sweep reads it.
    async fn search_page(
        &self,
        bulk: &Scope,
        updated_since: Option<chrono::DateTime<chrono::Utc>>,
        tag: Option<String>,
        after: Option<ports::ghl::SearchCursor>,
    ) -> Result<ports::ghl::ContactPage, SyncError> {
        self.ports
            .ghl
            .list_contacts(
                bulk,
                ListingMode::Search,
                &ContactSearch {
                    updated_since,
                    tag,
                    page_limit: self.settings.page_size,
                    after,
                },
            )
            .await
            .map_err(SyncError::ghl("search contacts"))
    }

    async fn enqueue_sync(
        &self,
        scope: &Scope,
        message_id: String,
        contact: &GhlContactId,
        dry_run: bool,
        prefetched: Option<Prefetched>,
    ) -> Result<(), SyncError> {
        self.publish(
            scope,
            message_id,
            Payload::SyncContact {
                contact: contact.clone(),
                dry_run,
                prefetched: prefetched.filter(|p| !p.is_empty()).map(Box::new),
            },
        )
        .await
    }

    /// Contacts linked to a workspace that are not in `seen`.
    async fn unseen_linked(
        &self,
        scope: &Scope,
        seen: &HashSet<GhlContactId>,
    ) -> Result<Vec<GhlContactId>, SyncError> {
        let mut unseen = Vec::new();
        let mut after = 0;
        loop {
            let links = self
                .ports
                .links
                .list(&scope.tenant.id, EntityKind::Contact, after, LINK_PAGE)
                .await
                .map_err(SyncError::store("list contact links"))?;
            let n = links.len();
            for l in links {
                after = after.max(l.id);
                if l.state != LinkState::Linked {
                    continue;
                }
                let Some(id) = l.ghl_id.as_deref() else {
                    continue;
                };
                match GhlContactId::parse(id) {
                    Ok(id) if !seen.contains(&id) => unseen.push(id),
                    Ok(_) => {}
                    // Ids are checked before a link is written: only a damaged row gets here.
                    Err(e) => {
                        tracing::warn!(link = l.id, error = %e, "contact link with a bad GHL id left alone")
                    }
                }
            }
            if n < LINK_PAGE as usize {
                return Ok(unseen);
            }
        }
    }

    /// The GHL tasks of `contacts` (at most [`TASK_SEARCH_CONTACTS`]), by contact, through
    /// the location's task search, page by page.
    async fn search_tasks_of(
        &self,
        scope: &Scope,
        contacts: &[GhlContactId],
        counts: &mut RunCounts,
    ) -> Result<HashMap<GhlContactId, Vec<GhlTask>>, SyncError> {
        let mut tasks_of: HashMap<GhlContactId, Vec<GhlTask>> = HashMap::new();
        let mut skip = 0;
        loop {
            let found = self
                .ports
                .ghl
                .search_tasks(
                    scope,
                    &TaskSearch {
                        contacts: contacts.to_vec(),
                        completed: None,
                        skip,
                        limit: TASK_SEARCH_LIMIT,
                    },
                )
                .await
                .map_err(SyncError::ghl("search tasks"))?;
            counts.api_calls += 1;
            let n = found.len() as u32;
            for t in found {
                tasks_of.entry(t.contact.clone()).or_default().push(t);
            }
            if n < TASK_SEARCH_LIMIT {
                return Ok(tasks_of);
            }
            skip += TASK_SEARCH_LIMIT;
        }
    }

    /// What the syncs of these never-synced contacts would read one contact at a time:
    /// their tasks (the location's task search, [`TASK_SEARCH_CONTACTS`] contacts a call) and,
    /// when `sync.appointments_from_calendars` is on, their appointments (the location's
    /// calendars, read once per sweep).
    async fn prefetch(
        &self,
        scope: &Scope,
        keep_for: Option<i64>,
        contacts: &[GhlContactId],
        expected: u64,
        appointments: &mut Appointments,
        counts: &mut RunCounts,
    ) -> Result<HashMap<GhlContactId, Prefetched>, SyncError> {
        let mut out: HashMap<GhlContactId, Prefetched> = HashMap::new();
        if contacts.is_empty() || !self.settings.prefetch {
            return Ok(out);
        }
        for chunk in contacts.chunks(TASK_SEARCH_CONTACTS) {
            let mut tasks_of = self.search_tasks_of(scope, chunk, counts).await?;
            for c in chunk {
                out.entry(c.clone()).or_default().tasks =
                    Some(tasks_of.remove(c).unwrap_or_default());
            }
        }
        if let Appointments::NotRead = appointments {
            *appointments = self
                .calendar_appointments(scope, keep_for, expected, counts)
                .await?;
        }
        let mut by_contact = match (&mut *appointments, keep_for) {
            (Appointments::ByContact(held), _) => std::mem::take(held),
            (Appointments::Kept, Some(run)) => {
                let ids: Vec<String> = contacts.iter().map(ToString::to_string).collect();
                let mut kept: HashMap<GhlContactId, Vec<GhlAppointment>> = HashMap::new();
                for a in self
                    .ports
                    .runs
                    .kept_appointments(run, &ids)
                    .await
                    .map_err(SyncError::store("read the appointments the run kept"))?
                {
                    kept.entry(a.contact.clone()).or_default().push(a);
                }
                kept
            }
            _ => return Ok(out),
        };
        for c in contacts {
            let mut mine = by_contact.remove(c).unwrap_or_default();
            // In the calendars' order, whichever way they were kept.
            mine.sort_by(|a, b| {
                (a.appointment.start, a.id.as_str()).cmp(&(b.appointment.start, b.id.as_str()))
            });
            out.entry(c.clone()).or_default().appointments = Some(mine);
        }
        if let Appointments::ByContact(held) = appointments {
            *held = by_contact;
        }
        Ok(out)
    }

    /// Every appointment of the location's calendars in the configured window, by contact;
    /// `Unavailable` when the tenant's token may not list calendars (an install made before
    /// the app asked for `calendars.readonly`), when the setting is off, or when the
    /// `expected` never-synced contacts are too few to pay for reading every calendar: then
    /// each contact's sync reads its own appointments.
    async fn calendar_appointments(
        &self,
        scope: &Scope,
        keep_for: Option<i64>,
        expected: u64,
        counts: &mut RunCounts,
    ) -> Result<Appointments, SyncError> {
        let Some(window) = self.settings.appointment_window else {
            return Ok(Appointments::Unavailable);
        };
        // Reading the calendars costs about one call per calendar and month of the window
        // (GHL may refuse wider ranges); one read per contact is cheaper for a few contacts
        // (an incremental sync, a full sync of a location already synced).
        let months = ((window.past + window.future).num_days() / 31 + 1).max(1) as u64;
        if expected < months {
            return Ok(Appointments::Unavailable);
        }
        let calendars = match self.ports.ghl.list_calendars(scope).await {
            Ok(c) => c,
            Err(e @ (ports::ApiError::Forbidden { .. } | ports::ApiError::Unauthorized { .. })) => {
                tracing::warn!(
                    tenant = %scope.tenant.id,
                    error = %e,
                    "the location's calendars cannot be listed; appointments are read contact by contact"
                );
                counts.api_calls += 1;
                return Ok(Appointments::Unavailable);
            }
            Err(e) => return Err(SyncError::ghl("list calendars")(e)),
        };
        counts.api_calls += 1;
        if (calendars.len() as u64) * months >= expected {
            return Ok(Appointments::Unavailable);
        }
        let now = self.ports.clock.now();
        let (from, to) = (now - window.past, now + window.future);
        let widest = calendar_span_for(to - from, expected);
        let mut by_contact: HashMap<GhlContactId, Vec<GhlAppointment>> = HashMap::new();
        for calendar in &calendars {
            // Range by range, each answer kept before the next is asked for: GHL has no paging
            // here, so the range's width is all that bounds what one answer holds.
            let (mut at, mut span) = (from, widest);
            loop {
                let ask = (at + span).min(to);
                let range = self
                    .ports
                    .ghl
                    .calendar_events(scope, calendar, at, ask)
                    .await
                    .map_err(SyncError::ghl("list calendar events"))?;
                counts.api_calls += 1;
                if range.through < at {
                    // The port's contract says it ends within the range asked for; going on
                    // from before `at` would never end.
                    return Err(SyncError::ghl("list calendar events")(
                        ports::ApiError::Unknown(anyhow::anyhow!(
                            "the calendar read ended at {} before it began at {at}",
                            range.through
                        )),
                    ));
                }
                span = next_calendar_span(range.through - at, range.events.len(), widest);
                match keep_for {
                    Some(run) => self
                        .ports
                        .runs
                        .keep_appointments(run, &range.events)
                        .await
                        .map_err(SyncError::store("keep the appointments the run read"))?,
                    None => {
                        for a in range.events {
                            by_contact.entry(a.contact.clone()).or_default().push(a);
                        }
                    }
                }
                if range.through >= to {
                    break;
                }
                at = range.through + chrono::Duration::milliseconds(1);
            }
        }
        Ok(match keep_for {
            Some(_) => Appointments::Kept,
            None => Appointments::ByContact(by_contact),
        })
    }

    /// The links of `kind` under these contacts, by contact, in one read.
    async fn links_by_parent(
        &self,
        tenant: &domain::TenantId,
        kind: EntityKind,
        contacts: impl Iterator<Item = &GhlContactId>,
    ) -> Result<HashMap<String, Vec<ports::store::Link>>, ports::StoreError> {
        let parents: Vec<String> = contacts.map(ToString::to_string).collect();
        let mut by_parent: HashMap<String, Vec<ports::store::Link>> = HashMap::new();
        if parents.is_empty() {
            return Ok(by_parent);
        }
        for l in self
            .ports
            .links
            .by_ghl_parents(tenant, kind, &parents)
            .await?
        {
            if let Some(p) = l.ghl_parent.clone() {
                by_parent.entry(p).or_default().push(l);
            }
        }
        Ok(by_parent)
    }

    /// Of these (unchanged) contacts, the ones whose tasks or notes changed in GHL.
    async fn children_changed(
        &self,
        scope: &Scope,
        contacts: &[GhlContactId],
        counts: &mut RunCounts,
    ) -> Result<HashSet<GhlContactId>, SyncError> {
        let tenant = &scope.tenant;
        let ctx = tenant.settings.normalise_ctx();
        let mut changed = HashSet::new();
        for chunk in contacts.chunks(TASK_SEARCH_CONTACTS) {
            let mut tasks_of: HashMap<GhlContactId, Vec<(String, Fingerprint)>> = self
                .search_tasks_of(scope, chunk, counts)
                .await?
                .into_iter()
                .map(|(c, tasks)| {
                    let fps = tasks
                        .into_iter()
                        .map(|t| {
                            let fp = Fingerprint::of(&t.task.normalised(&ctx).project(Side::Ghl));
                            (t.id.to_string(), fp)
                        })
                        .collect();
                    (c, fps)
                })
                .collect();
            let mut links_of = self
                .links_by_parent(&tenant.id, EntityKind::Task, chunk.iter())
                .await
                .map_err(SyncError::store("read task links"))?;
            for c in chunk {
                let links = links_of.remove(c.as_str()).unwrap_or_default();
                let linked: HashMap<&str, Option<Fingerprint>> = links
                    .iter()
                    .filter(|l| l.state == LinkState::Linked)
                    .filter_map(|l| l.ghl_id.as_deref().map(|g| (g, l.ghl_fp)))
                    .collect();
                let now = tasks_of.remove(c).unwrap_or_default();
                let differs = now.len() != linked.len()
                    || now
                        .iter()
                        .any(|(id, fp)| linked.get(id.as_str()) != Some(&Some(*fp)));
                if differs {
                    changed.insert(c.clone());
                }
            }
        }
        // Notes have no location-wide search: one read per contact not already changed.
        let remaining: Vec<&GhlContactId> =
            contacts.iter().filter(|c| !changed.contains(*c)).collect();
        let mut note_links = self
            .links_by_parent(&tenant.id, EntityKind::Note, remaining.iter().copied())
            .await
            .map_err(SyncError::store("read note links"))?;
        for c in remaining {
            let notes = self
                .ports
                .ghl
                .list_notes(scope, c)
                .await
                .map_err(SyncError::ghl("list notes"))?;
            counts.api_calls += 1;
            let links = note_links.remove(c.as_str()).unwrap_or_default();
            let linked: HashMap<&str, Option<Fingerprint>> = links
                .iter()
                .filter(|l| l.state == LinkState::Linked)
                .filter_map(|l| l.ghl_id.as_deref().map(|g| (g, l.ghl_fp)))
                .collect();
            let differs = notes.len() != linked.len()
                || notes.iter().any(|n| {
                    let fp = Fingerprint::of(&n.note.normalised(&ctx).project(Side::Ghl));
                    linked.get(n.id.as_str()) != Some(&Some(fp))
                });
            if differs {
                changed.insert(c.clone());
            }
        }
        Ok(changed)
    }
}

/// Where a planned full sync sends each contact's plan as it is made.
#[async_trait::async_trait]
pub trait PlanSink: Send + Sync {
    /// The plan for one contact: what it would write, or why it could not be planned.
    async fn planned(&self, contact: &GhlContactId, plan: Result<crate::Report, SyncError>);
}

/// What planning a full sync found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct PlanSummary {
    /// Contacts planned (each selected one, and each linked one the search no longer returns).
    pub contacts: u64,
    /// Of those, the ones with writes planned.
    pub with_writes: u64,
    /// Writes planned in all.
    pub writes: u64,
    /// Contacts that could not be planned.
    pub failed: u64,
}

impl Engine {
    /// What a full sync would write, contact by contact, without writing or queueing
    /// anything and without recording a run: every contact a full sync would take is
    /// planned as a dry run in this task, one after the other, its audit entries carrying
    /// the message id `{message_prefix}{contact}`; each plan goes to `sink` as it is made.
    /// Unlike [`Self::sweep`] it plans unchanged contacts too (their plan is empty). `Err`
    /// when the listing itself fails.
    pub async fn plan_full(
        &self,
        scope: &Scope,
        message_prefix: &str,
        sink: &dyn PlanSink,
    ) -> Result<PlanSummary, SyncError> {
        let tenant = &scope.tenant;
        refuse_unready(tenant)?;
        let tag = match &tenant.settings.selector {
            Selector::Tag { tag } => Some(tag.clone()),
            _ => None,
        };
        let ctx = tenant.settings.normalise_ctx();
        let bulk = scope.bulk();
        let mut summary = PlanSummary::default();
        let mut seen = HashSet::new();
        let mut cursor = None;
        loop {
            let page = self
                .search_page(&bulk, None, tag.clone(), cursor.clone())
                .await?;
            for c in page.contacts {
                seen.insert(c.id.clone());
                if tenant
                    .settings
                    .selector
                    .matches(&c.contact.normalised(&ctx))
                {
                    self.plan_one(scope, message_prefix, &c.id, sink, &mut summary)
                        .await;
                }
            }
            cursor = page.next;
            if cursor.is_none() {
                break;
            }
        }
        for id in self.unseen_linked(scope, &seen).await? {
            self.plan_one(scope, message_prefix, &id, sink, &mut summary)
                .await;
        }
        Ok(summary)
    }

    async fn plan_one(
        &self,
        scope: &Scope,
        message_prefix: &str,
        id: &GhlContactId,
        sink: &dyn PlanSink,
        summary: &mut PlanSummary,
    ) {
        let plan = self
            .sync_contact(
                scope.clone(),
                id,
                crate::Options {
                    dry_run: true,
                    message_id: Some(format!("{message_prefix}{id}")),
                    ..crate::Options::default()
                },
            )
            .await;
        summary.contacts += 1;
        match &plan {
            Ok(report) if report.writes() > 0 => {
                summary.with_writes += 1;
                summary.writes += report.writes() as u64;
            }
            Ok(_) => {}
            Err(_) => summary.failed += 1,
        }
        sink.planned(id, plan).await;
    }
}
