//! The sync engine: every flow of the mission (DESIGN.md §1, M1–M7), two-way, idempotent,
//! with dry-run.
//!
//! The engine depends on `domain` and `ports` only: it is generic over the adapters, which the
//! app hands in as `Arc<dyn Port>`s. [`Engine::handle`] is the one entry point the worker
//! calls per message; the CLI calls the use cases directly.
//!
//! Guarantees:
//! - **Always re-fetch**: webhook payloads and poll results are hints; the current records
//!   are read and reconciled, so order and duplicates do not matter.
//! - **Per-contact serialisation**: everything under one contact runs under its lock.
//! - **Exactly one create**: through link claims (see `settle`).
//! - **Dedupe**: a message whose id was handled before is skipped (inbox).
//! - **Nothing silent**: every write, skip, conflict and unsupported operation is audited;
//!   the audit entries of a message are stored whatever its outcome.

mod contact;
mod cx;
mod error;
mod flows;
mod report;
mod settle;
mod sweep;
mod unit;
mod writers;

use std::sync::Arc;
use std::time::Duration;

use domain::TenantId;
use ports::ekyte::{EkyteApi, EkyteChangeSource, PollReport};
use ports::ghl::GhlApi;
use ports::queue::{Envelope, Payload, Publisher};
use ports::store::{AuditEntry, AuditLog, ContactLocks, Inbox, LinkStore, RunStore, TenantStore};
use ports::{Clock, Priority, Scope};

pub use contact::{BusinessCache, ContactSettings, ONBOARDING_WINDOW_HOURS};
pub use cx::Options;
pub use error::SyncError;
pub use report::{Report, ReportLine, is_write};
pub use sweep::{
    AppointmentWindow, PlanSink, PlanSummary, Progress, Quiet, SweepFrom, SweepReport, SweepStep,
};

/// The ports the engine calls.
#[derive(Clone)]
pub struct Ports {
    pub ghl: Arc<dyn GhlApi>,
    pub ekyte: Arc<dyn EkyteApi>,
    pub changes: Arc<dyn EkyteChangeSource>,
    pub tenants: Arc<dyn TenantStore>,
    pub links: Arc<dyn LinkStore>,
    pub locks: Arc<dyn ContactLocks>,
    pub audit: Arc<dyn AuditLog>,
    pub inbox: Arc<dyn Inbox>,
    pub runs: Arc<dyn RunStore>,
    pub publisher: Arc<dyn Publisher>,
    pub clock: Arc<dyn Clock>,
}

/// Tunables (from the app's `[sync]` configuration).
#[derive(Debug, Clone)]
pub struct Settings {
    pub lock_wait: Duration,
    pub claim_stale_after: Duration,
    pub incremental_overlap: Duration,
    pub page_size: u32,
    /// How long a fetched business is reused.
    pub business_ttl: Duration,
    /// Sweeps read the tasks (and appointments) of never-synced contacts many contacts per
    /// call, and send them with each contact's message.
    pub prefetch: bool,
    /// The calendars' window a sweep reads appointments from; `None`: each contact's sync
    /// reads its own appointments.
    pub appointment_window: Option<sweep::AppointmentWindow>,
    /// How many contact syncs one sweep message enqueues before it queues its continuation
    /// behind them (`None`: the whole run in one message). Bounds a location's backlog in the
    /// bulk lane.
    pub sweep_batch: Option<u64>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            lock_wait: Duration::from_secs(30),
            claim_stale_after: Duration::from_secs(300),
            incremental_overlap: Duration::from_secs(120),
            page_size: 100,
            business_ttl: Duration::from_secs(600),
            prefetch: true,
            appointment_window: Some(sweep::AppointmentWindow {
                past: chrono::Duration::days(365),
                future: chrono::Duration::days(365),
            }),
            sweep_batch: Some(200),
        }
    }
}

/// The engine: the use cases over the ports.
pub struct Engine {
    ports: Ports,
    settings: Settings,
    contact_settings: ContactSettings,
    businesses: BusinessCache,
    /// What a sweep read once per run (the calendars), kept between its messages.
    sweeps: sweep::SweepMemory,
    /// This process's identity in link claims.
    owner: String,
}

/// The inbox source under which handled message ids are recorded.
pub const INBOX_MESSAGES: &str = "message";

/// What a poll did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct PollSummary {
    pub changes: usize,
    pub published: usize,
    pub calls: u32,
    pub workspaces_seen: u32,
    pub tasks_seen: u32,
    /// The poll's budget ran out: a follow-up poll was queued to go on where it stopped.
    pub continued: bool,
}

impl Engine {
    pub fn new(ports: Ports, settings: Settings) -> Self {
        Self {
            contact_settings: ContactSettings {
                lock_wait: settings.lock_wait,
                claim_stale_after: settings.claim_stale_after,
                appointment_window: settings.appointment_window,
            },
            businesses: BusinessCache::new(settings.business_ttl),
            sweeps: sweep::SweepMemory::default(),
            owner: format!("worker-{}", uuid::Uuid::new_v4()),
            ports,
            settings,
        }
    }

    pub fn ports(&self) -> &Ports {
        &self.ports
    }

    fn contacts(&self) -> contact::ContactSync<'_> {
        contact::ContactSync {
            ports: &self.ports,
            businesses: &self.businesses,
            settings: &self.contact_settings,
        }
    }

    /// The scope of an active tenant.
    pub async fn scope(&self, tenant: &TenantId, priority: Priority) -> Result<Scope, SyncError> {
        let t = match self.ports.tenants.get(tenant).await {
            Ok(t) => t,
            Err(ports::StoreError::NotFound { .. }) => {
                return Err(SyncError::UnknownTenant(tenant.clone()));
            }
            Err(e) => return Err(SyncError::store("read tenant")(e)),
        };
        if !t.active {
            // Audited, so the operator sees what an uninstall left unprocessed.
            let entry = AuditEntry::tenant_skip(
                &t.id,
                self.ports.clock.now(),
                format!("tenant is {}: the work was skipped", t.state()),
                None,
            );
            self.ports
                .audit
                .append(&[entry])
                .await
                .map_err(SyncError::store("append audit"))?;
            return Err(SyncError::InactiveTenant(tenant.clone()));
        }
        Ok(Scope::new(Arc::new(t), priority))
    }

    /// The claims a handling takes belong to this worker *and* this message: a retry of the
    /// same message may retake them at once (its earlier attempt is over), while another
    /// message handled at the same time by this process waits like any other owner. (With
    /// the worker alone as the owner, two messages for the same record in one process each
    /// took the other's claim for their own and both created it.) Without a message id, the
    /// handling is its own owner.
    fn cx(&self, scope: Scope, opts: Options) -> cx::Cx {
        let owner = match &opts.message_id {
            Some(id) => format!("{}/{id}", self.owner),
            None => format!("{}/{}", self.owner, uuid::Uuid::new_v4()),
        };
        cx::Cx::new(scope, opts, self.ports.clock.now(), owner)
    }

    async fn flush(&self, cx: &cx::Cx) -> Result<(), SyncError> {
        if cx.entries.is_empty() {
            return Ok(());
        }
        self.ports
            .audit
            .append(&cx.entries)
            .await
            .map_err(SyncError::store("append audit"))
    }

    /// Run `f` with a fresh context and store its audit entries whatever happens.
    async fn audited<F>(&self, scope: Scope, opts: Options, f: F) -> Result<Report, SyncError>
    where
        F: for<'c> FnOnce(
            &'c Engine,
            &'c mut cx::Cx,
        ) -> futures::future::BoxFuture<'c, Result<(), SyncError>>,
    {
        let scope = scope.counted();
        let meter = scope.calls.clone();
        let mut cx = self.cx(scope, opts);
        let result = f(self, &mut cx).await;
        let (ghl, ekyte) = meter.counts();
        if ghl + ekyte > 0 {
            // A message that only read is in the history too, with what it read.
            if cx.entries.is_empty() && result.is_ok() {
                cx.skip(
                    domain::EntityKind::Contact,
                    None,
                    None,
                    "read only: nothing to write",
                );
            }
            let calls = ports::store::ApiCalls { ghl, ekyte };
            for e in &mut cx.entries {
                e.calls = Some(calls);
            }
        }
        let flushed = self.flush(&cx).await;
        result?;
        flushed?;
        Ok(cx.report())
    }

    /// Sync one contact with everything under it (M1, M4, M5, M7).
    pub async fn sync_contact(
        &self,
        scope: Scope,
        contact: &domain::GhlContactId,
        opts: Options,
    ) -> Result<Report, SyncError> {
        let contact = contact.clone();
        self.audited(scope, opts, move |e, cx| {
            Box::pin(async move { e.contacts().run(cx, &contact).await })
        })
        .await
    }

    /// Handle one verified GHL event.
    pub async fn ghl_event(
        &self,
        scope: Scope,
        event: &ports::ghl::GhlEvent,
        opts: Options,
    ) -> Result<Report, SyncError> {
        let event = event.clone();
        self.audited(scope, opts, move |e, cx| {
            Box::pin(async move { e.contacts().ghl_event(cx, &event).await })
        })
        .await
    }

    /// Handle one eKyte change.
    pub async fn ekyte_change(
        &self,
        scope: Scope,
        change: &ports::ekyte::EkyteChange,
        opts: Options,
    ) -> Result<Report, SyncError> {
        let change = change.clone();
        self.audited(scope, opts, move |e, cx| {
            Box::pin(async move { e.contacts().ekyte_change(cx, &change).await })
        })
        .await
    }

    /// The scheduled poll of an eKyte company: the tenant's own poll and, when it is the
    /// company's poll lead, its active peers' (`domain::tenant::poll_peers`), one after the
    /// other in this worker, so the company's workspace listing is read once for all of them,
    /// however many workers run. A peer's failure does not stop the others; the first one is
    /// returned (a retry polls again, which is harmless: polls only compare).
    pub async fn poll_company(&self, scope: &Scope) -> Result<PollSummary, SyncError> {
        let own = self.poll_ekyte(scope).await?;
        let all = self
            .ports
            .tenants
            .list()
            .await
            .map_err(SyncError::store("list the tenants"))?;
        let mut failed = None;
        for peer in domain::tenant::poll_peers(&all, &scope.tenant) {
            let peer_scope = Scope::new(Arc::new(peer.clone()), scope.priority);
            if let Err(e) = self.poll_ekyte(&peer_scope).await {
                tracing::warn!(tenant = %peer.id, lead = %scope.tenant.id, error = %e, "the poll of a tenant sharing the eKyte company failed");
                failed.get_or_insert(e);
            }
        }
        failed.map_or(Ok(own), Err)
    }

    /// Poll eKyte and publish one `ekyte.change` message per change found; when the poll's
    /// budget ran out before the pass ended, queue a follow-up poll that goes on from there,
    /// so one poll request always covers every workspace.
    pub async fn poll_ekyte(&self, scope: &Scope) -> Result<PollSummary, SyncError> {
        let PollReport {
            changes,
            calls,
            workspaces_seen,
            tasks_seen,
            more,
        } = self
            .ports
            .changes
            .poll(scope)
            .await
            .map_err(SyncError::ekyte("poll"))?;
        let now = self.ports.clock.now();
        let publish = |id: String, payload: Payload| {
            let env = Envelope::new(id, scope.tenant.id.clone(), payload, now);
            async move { self.ports.publisher.publish(&env).await }
        };
        let mut published = 0;
        for change in &changes {
            publish(
                format!("ekyte:{}:{}", now.timestamp_millis(), change.dedupe_key()),
                Payload::EkyteChange(change.clone()),
            )
            .await
            .map_err(SyncError::Queue)?;
            published += 1;
        }
        if more {
            publish(
                format!("poll:{}:{}:more", scope.tenant.id, now.timestamp_millis()),
                Payload::EkytePoll,
            )
            .await
            .map_err(SyncError::Queue)?;
        }
        Ok(PollSummary {
            changes: changes.len(),
            published,
            calls,
            workspaces_seen,
            tasks_seen,
            continued: more,
        })
    }

    /// The worker's entry point: dedupe, dispatch, audit, remember.
    pub async fn handle(&self, env: &Envelope) -> Result<Report, SyncError> {
        let priority = match env.lane {
            ports::queue::Lane::RealTime => Priority::RealTime,
            ports::queue::Lane::Bulk => Priority::Bulk,
        };
        let scope = self.scope(&env.tenant, priority).await?;
        if self
            .ports
            .inbox
            .seen(&env.tenant, INBOX_MESSAGES, &env.id)
            .await
            .map_err(SyncError::store("read inbox"))?
        {
            tracing::debug!(message_id = %env.id, "already handled; skipped");
            return Ok(Report::default());
        }
        let opts = Options {
            message_id: Some(env.id.clone()),
            ..Options::default()
        };
        let report = match &env.payload {
            Payload::GhlEvent(ev) => self.ghl_event(scope, ev, opts).await?,
            Payload::EkyteChange(ch) => self.ekyte_change(scope, ch, opts).await?,
            Payload::SyncContact {
                contact,
                dry_run,
                prefetched,
            } => {
                let opts = Options {
                    dry_run: *dry_run,
                    prefetched: prefetched.as_deref().cloned().map(Arc::new),
                    ..opts
                };
                self.sync_contact(scope, contact, opts).await?
            }
            Payload::SyncFull { mode, dry_run } => {
                let step = self
                    .sweep_step(
                        &scope,
                        *mode,
                        *dry_run,
                        SweepFrom::Message {
                            requested_at: env.created_at,
                        },
                        &Quiet,
                    )
                    .await?;
                self.continue_sweep(&scope, *mode, step.next).await?;
                Report::default()
            }
            Payload::SyncContinue { mode, run, pages } => {
                let from = SweepFrom::Continue {
                    run: *run,
                    pages: *pages,
                };
                let step = self.sweep_step(&scope, *mode, false, from, &Quiet).await?;
                self.continue_sweep(&scope, *mode, step.next).await?;
                Report::default()
            }
            Payload::EkytePoll => {
                self.poll_company(&scope).await?;
                Report::default()
            }
        };
        self.ports
            .inbox
            .record(&env.tenant, INBOX_MESSAGES, &env.id)
            .await
            .map_err(SyncError::store("record inbox"))?;
        Ok(report)
    }
}

#[cfg(test)]
mod tests;
