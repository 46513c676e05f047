//! Contact sync (M1, M4, M5, M7): one GHL contact with everything under it.
//!
//! Under the contact's lock (two messages about one contact never reconcile at once):
//! 1. re-fetch the contact (payloads are hints) and apply the tenant's selector;
//! 2. settle the contact ↔ its workspace (created with `ExternalId = ghl:<location>:<id>`, or
//!    the business's workspace when workspaces are per business);
//! 3. onboarding tasks in GHL, once per contact (claims), for contacts linked recently;
//! 4. the profile note of the unified view (profile, business, appointments), written only
//!    when its fingerprint changed;
//! 5. tasks both ways; eKyte comments → GHL notes; GHL notes → board notes.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chrono::Duration as ChronoDuration;

use domain::{
    Business, Contact, EkyteWorkspaceId, EntityKind, Fingerprint, GhlBusinessId, GhlContactId,
    Note, Observed, Record, Side, Task, TenantId, WorkspacePer, profile,
};
use ports::ApiError;
use ports::ekyte::{EkyteTask, NoteContent};
use ports::ghl::GhlBusiness;
use ports::store::{AuditAction, BaseRecord, Claim, ClaimKey, Link, LinkState, LinkUpdate};

use crate::Ports;
use crate::cx::{Cx, Note as AuditNote};
use crate::error::SyncError;
use crate::settle::{Place, Settler, Stored, Subject};
use crate::unit::Deferred;
use crate::writers::{BusinessWriter, ContactWriter, NoteWriter, TaskWriter, workspace};

/// Contacts linked less than this long ago still get onboarding tasks (so a crash between
/// linking and onboarding is repaired by the retry, while templates added later do not
/// reach old contacts).
pub const ONBOARDING_WINDOW_HOURS: i64 = 24;

type BusinessKey = (TenantId, GhlBusinessId);

/// Businesses fetched recently, so a sweep fetches each business once (M2).
pub struct BusinessCache {
    ttl: Duration,
    entries: Mutex<HashMap<BusinessKey, (Instant, Option<GhlBusiness>)>>,
}

impl BusinessCache {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn get(&self, tenant: &TenantId, id: &GhlBusinessId) -> Option<Option<GhlBusiness>> {
        let map = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        map.get(&(tenant.clone(), id.clone()))
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, b)| b.clone())
    }

    fn put(&self, tenant: &TenantId, id: &GhlBusinessId, b: Option<GhlBusiness>) {
        let mut map = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() > 10_000 {
            map.retain(|_, (at, _)| at.elapsed() < self.ttl);
        }
        map.insert((tenant.clone(), id.clone()), (Instant::now(), b));
    }
}

/// Settings of the contact sync.
#[derive(Debug, Clone)]
pub struct ContactSettings {
    pub lock_wait: Duration,
    pub claim_stale_after: Duration,
    /// The profile note shows the appointments starting within this window around now,
    /// however they were read (a sweep reads the calendars over this window; a webhook's
    /// sync reads the contact's own list), so both ways write the same note.
    pub appointment_window: Option<crate::sweep::AppointmentWindow>,
}

pub(crate) struct ContactSync<'a> {
    pub ports: &'a Ports,
    pub businesses: &'a BusinessCache,
    pub settings: &'a ContactSettings,
}

/// A contact's GHL lists, read beside its workspace.
struct Lists {
    /// Its tasks and appointments, when this sync read them (not handed them by a sweep).
    prefetched: Option<ports::queue::Prefetched>,
    notes: Vec<ports::ghl::GhlNote>,
}

/// A contact's workspace, as far as it is known.
struct Home {
    workspace: Option<EkyteWorkspaceId>,
    /// The contact link after settling.
    link: Option<Link>,
    /// Whether the contact link was made in this run.
    linked_now: bool,
}

impl ContactSync<'_> {
    fn settler(&self) -> Settler<'_> {
        Settler {
            links: self.ports.links.as_ref(),
            claim_stale_after: self.settings.claim_stale_after,
        }
    }

    /// Sync one contact, under its lock.
    pub async fn run(&self, cx: &mut Cx, id: &GhlContactId) -> Result<(), SyncError> {
        self.run_unless_linked(cx, id, None).await
    }

    /// Sync one contact, under its lock — unless `created`, the entity a `*Create` event
    /// names, is already linked when the lock is ours. Such an event says nothing the sync
    /// that linked the entity did not already see (it read the entity after its creation, and
    /// later changes bring their own events or the sweep): it is our own create coming back
    /// (the onboarding tasks of a backfill, a note copied from an eKyte comment, a contact
    /// made for an eKyte workspace) or a redelivery. Checking under the lock matters: the
    /// echo of a create usually arrives while the sync that made it still holds the lock.
    pub(crate) async fn run_unless_linked(
        &self,
        cx: &mut Cx,
        id: &GhlContactId,
        created: Option<(EntityKind, &str)>,
    ) -> Result<(), SyncError> {
        // Dead-lettered, to be replayed once the settings are fixed: never a silent skip.
        crate::sweep::refuse_unready(&cx.scope.tenant)?;
        // The create event of a record already linked (most often the echo of one this
        // service created) needs nothing: known before the contact's lock, it neither waits
        // for the sync that made the record, which may still hold the lock, nor takes it.
        // The skip is what the same read under the lock would decide; a sync that closes the
        // link meanwhile reconciles the contact itself. Anything but linked is read again once
        // the lock is held.
        if let Some((kind, created_id)) = created
            && self.skip_if_linked(cx, id, kind, created_id).await?
        {
            return Ok(());
        }
        let guard = self
            .ports
            .locks
            .lock(
                &cx.scope.tenant.id,
                &format!("contact:{id}"),
                self.settings.lock_wait,
            )
            .await
            .map_err(|e| match e {
                ports::StoreError::Unavailable { .. } => SyncError::Busy {
                    what: format!("contact {id} is being synced by another worker"),
                    stale_at: None,
                },
                other => SyncError::Store {
                    op: "lock contact",
                    source: other,
                },
            })?;
        // Under the lock the linked records' link updates wait, and are written together
        // before it is released (see `unit`).
        let unit = Arc::new(Deferred::new(self.ports.links.clone()));
        let ports = Ports {
            links: unit.clone(),
            ..self.ports.clone()
        };
        let locked = ContactSync {
            ports: &ports,
            businesses: self.businesses,
            settings: self.settings,
        };
        let result = match created {
            Some((kind, created_id)) => {
                // Looked for among the contact's links, which the sync reads first anyway:
                // a created record linked under another contact is not found, and the
                // contact is synced, which settles it as a sync would.
                let link = unit
                    .among_contact(&cx.scope.tenant.id, id.as_str(), kind, created_id)
                    .await
                    .map_err(SyncError::store("read links of the contact"));
                match link {
                    Ok(link) => {
                        if locked.skip_linked(cx, id, kind, created_id, link) {
                            Ok(())
                        } else {
                            locked.run_locked(cx, id).await
                        }
                    }
                    Err(e) => Err(e),
                }
            }
            None => locked.run_locked(cx, id).await,
        };
        let flushed = unit.flush().await;
        guard.release().await;
        match (result, flushed) {
            (Ok(()), Ok(())) => Ok(()),
            (Ok(()), Err(e)) => Err(SyncError::store("complete links")(e)),
            (Err(e), Ok(())) => Err(e),
            (Err(e), Err(lost)) => {
                // The sync failed anyway and is retried; its retry reads the links again.
                tracing::warn!(
                    error = %lost,
                    "the links this failed sync completed were not written"
                );
                Err(e)
            }
        }
    }

    /// Skip the create event of `created_id` when it is linked already (our own create, or
    /// a redelivery); whether it was.
    async fn skip_if_linked(
        &self,
        cx: &mut Cx,
        contact: &GhlContactId,
        kind: EntityKind,
        created_id: &str,
    ) -> Result<bool, SyncError> {
        let link = self
            .ports
            .links
            .by_ghl(&cx.scope.tenant.id, kind, created_id)
            .await
            .map_err(SyncError::store("read link of the created entity"))?;
        Ok(self.skip_linked(cx, contact, kind, created_id, link))
    }

    /// Skip the create event of `created_id` when `link`, its link as read, is linked;
    /// whether it was.
    fn skip_linked(
        &self,
        cx: &mut Cx,
        contact: &GhlContactId,
        kind: EntityKind,
        created_id: &str,
        link: Option<Link>,
    ) -> bool {
        match link {
            Some(l) if l.state == LinkState::Linked => {
                cx.contact = Some(contact.clone());
                cx.skip(
                    kind,
                    Some(created_id),
                    l.ekyte_id.as_deref(),
                    "create event for an entity already linked (our own create, or a redelivery)",
                );
                true
            }
            _ => false,
        }
    }

    async fn run_locked(&self, cx: &mut Cx, id: &GhlContactId) -> Result<(), SyncError> {
        cx.contact = Some(id.clone());
        let tenant = cx.scope.tenant.clone();
        let ctx = tenant.settings.normalise_ctx();
        let link = self
            .ports
            .links
            .by_ghl(&tenant.id, EntityKind::Contact, id.as_str())
            .await
            .map_err(SyncError::store("read contact link"))?;
        if link.is_some() {
            // Synced (or being synced) since the sweep read its records: read them afresh.
            cx.opts.prefetched = None;
        }
        let fetched = match self.ports.ghl.get_contact(&cx.scope, id).await {
            Ok(c) => Some(c),
            Err(e) if e.is_not_found() => None,
            Err(e) => return Err(SyncError::ghl("get contact")(e)),
        };

        let Some(fetched) = fetched else {
            return self.contact_gone(cx, id, link).await;
        };
        let contact = fetched.contact.normalised(&ctx);
        if !tenant.settings.selector.matches(&contact) {
            cx.skip(
                EntityKind::Contact,
                Some(id.as_str()),
                None,
                format!("not selected ({})", tenant.settings.selector.describe()),
            );
            return Ok(());
        }
        if link.as_ref().is_some_and(|l| l.state == LinkState::Deleted) {
            cx.skip(
                EntityKind::Contact,
                Some(id.as_str()),
                link.as_ref().and_then(|l| l.ekyte_id.as_deref()),
                "link closed (workspace deactivated or contact deleted earlier)",
            );
            return Ok(());
        }

        // The contact's lists are read while its workspace is settled: each is a call with
        // a latency of its own, and a webhook's write used to wait for them one after another
        // (issue 17). A sweep's sync of a new contact was handed its tasks and appointments.
        let scope = cx.scope.clone();
        let lists = self.read_lists(&scope, id, cx.opts.prefetched.is_none());
        let settle_home = async {
            let business = match &contact.business_id {
                Some(b) => self.business(cx, b).await?,
                None => None,
            };
            let home = match (tenant.settings.workspace_per, &business) {
                (WorkspacePer::Business, Some(b)) => {
                    self.business_home(cx, id, &contact, b, link).await?
                }
                _ => {
                    self.contact_home(cx, id, &contact, fetched.contact.date_updated, link)
                        .await?
                }
            };
            Ok::<_, SyncError>((business, home))
        };
        let (lists, home) = futures::join!(lists, settle_home);
        let (business, home) = home?;
        let lists = lists?;
        if let Some(read) = lists.prefetched {
            cx.opts.prefetched = Some(std::sync::Arc::new(read));
        }
        cx.ghl_notes = Some(lists.notes);
        let Some(ws) = home.workspace else {
            if cx.dry_run() {
                // Plan what the children would get once the workspace exists.
                self.tasks(cx, id, None, &ctx).await?;
                self.notes(cx, id, None, &ctx).await?;
            }
            return Ok(());
        };

        if let Some(l) = &home.link {
            let tenant = &cx.scope.tenant;
            // M4 is for contacts new to the install, not the book the first sync finds.
            if tenant.settings.onboarding_backfill
                || tenant.install.is_new_contact(fetched.date_added)
            {
                self.onboarding(cx, id, l, home.linked_now).await?;
            }
        }
        self.profile(
            cx,
            id,
            ws,
            &contact,
            business.as_ref().map(|b| &b.business),
            &ctx,
        )
        .await?;
        self.tasks(cx, id, Some(ws), &ctx).await?;
        self.notes(cx, id, Some(ws), &ctx).await?;
        Ok(())
    }

    /// The contact's GHL notes, and its tasks and appointments unless `all` is false (a
    /// sweep read those already), side by side.
    async fn read_lists(
        &self,
        scope: &ports::Scope,
        id: &GhlContactId,
        all: bool,
    ) -> Result<Lists, SyncError> {
        let ghl = &self.ports.ghl;
        let notes = async {
            ghl.list_notes(scope, id)
                .await
                .map_err(SyncError::ghl("list notes"))
        };
        if !all {
            return Ok(Lists {
                prefetched: None,
                notes: notes.await?,
            });
        }
        let tasks = async {
            ghl.list_tasks(scope, id)
                .await
                .map_err(SyncError::ghl("list tasks"))
        };
        let appointments = async {
            ghl.list_appointments(scope, id)
                .await
                .map_err(SyncError::ghl("list appointments"))
        };
        let (notes, tasks, appointments) = futures::try_join!(notes, tasks, appointments)?;
        Ok(Lists {
            prefetched: Some(ports::queue::Prefetched {
                tasks: Some(tasks),
                appointments: Some(appointments),
            }),
            notes,
        })
    }

    /// The contact is gone from GHL: settle its link (deactivate the workspace by policy).
    async fn contact_gone(
        &self,
        cx: &mut Cx,
        id: &GhlContactId,
        link: Option<Link>,
    ) -> Result<(), SyncError> {
        let Some(link) = link.filter(|l| l.state == LinkState::Linked) else {
            cx.skip(
                EntityKind::Contact,
                Some(id.as_str()),
                None,
                "not in GHL and not linked",
            );
            return Ok(());
        };
        let ekyte = match link.ekyte_id.as_deref() {
            Some(ws) => {
                self.observe_workspace(cx, workspace(ws)?, agreed_name(&link))
                    .await?
            }
            None => Observed::absent(),
        };
        let subject = Subject {
            kind: EntityKind::Contact,
            ghl_id: Some(id.to_string()),
            ekyte_id: link.ekyte_id.clone(),
            link: Some(link),
            ghl: Observed::absent(),
            ekyte,
            place: Place::default(),
        };
        let policy = cx.scope.tenant.settings.policy.contact.clone();
        self.settler()
            .settle(cx, &policy, &ContactWriter { ports: self.ports }, subject)
            .await?;
        Ok(())
    }

    /// The workspace as eKyte has it; `name_hint` is the name last agreed (it spares the
    /// adapter a scan of every workspace).
    async fn observe_workspace(
        &self,
        cx: &Cx,
        ws: EkyteWorkspaceId,
        name_hint: Option<&str>,
    ) -> Result<Observed<Contact>, SyncError> {
        let ctx = cx.scope.tenant.settings.normalise_ctx();
        match self
            .ports
            .ekyte
            .get_workspace(&cx.scope, ws, name_hint)
            .await
        {
            Ok(w) if w.active => Ok(Observed::present(
                Contact {
                    name: Some(w.name),
                    ..Contact::default()
                }
                .normalised(&ctx),
                cx.opts.ekyte_changed_at,
            )),
            Ok(_) => Ok(Observed::absent()),
            Err(e) if e.is_not_found() => Ok(Observed::absent()),
            Err(e) => Err(SyncError::ekyte("get workspace")(e)),
        }
    }

    async fn business(
        &self,
        cx: &Cx,
        id: &GhlBusinessId,
    ) -> Result<Option<GhlBusiness>, SyncError> {
        let tenant = &cx.scope.tenant.id;
        if let Some(hit) = self.businesses.get(tenant, id) {
            return Ok(hit);
        }
        let fetched = match self.ports.ghl.get_business(&cx.scope, id).await {
            Ok(b) => Some(b),
            Err(e) if e.is_not_found() => None,
            Err(e) => return Err(SyncError::ghl("get business")(e)),
        };
        let ctx = cx.scope.tenant.settings.normalise_ctx();
        let fetched = fetched.map(|b| GhlBusiness {
            business: b.business.normalised(&ctx),
            ..b
        });
        self.businesses.put(tenant, id, fetched.clone());
        Ok(fetched)
    }

    /// Workspace per contact: settle contact ↔ workspace.
    async fn contact_home(
        &self,
        cx: &mut Cx,
        id: &GhlContactId,
        contact: &Contact,
        updated: Option<chrono::DateTime<chrono::Utc>>,
        link: Option<Link>,
    ) -> Result<Home, SyncError> {
        let was_linked = link.as_ref().is_some_and(|l| l.state == LinkState::Linked);
        let linked = link.as_ref().filter(|l| l.state == LinkState::Linked);
        let ekyte = match linked.and_then(|l| l.ekyte_id.as_deref()) {
            Some(ws) => {
                self.observe_workspace(cx, workspace(ws)?, linked.and_then(agreed_name))
                    .await?
            }
            None => Observed::absent(),
        };
        let subject = Subject {
            kind: EntityKind::Contact,
            ghl_id: Some(id.to_string()),
            ekyte_id: None,
            link,
            ghl: Observed::present(contact.clone(), cx.opts.ghl_changed_at.or(updated)),
            ekyte,
            place: Place::default(),
        };
        let policy = cx.scope.tenant.settings.policy.contact.clone();
        let link = self
            .settler()
            .settle(cx, &policy, &ContactWriter { ports: self.ports }, subject)
            .await?;
        let linked = link.as_ref().filter(|l| l.state == LinkState::Linked);
        Ok(Home {
            workspace: linked
                .and_then(|l| l.ekyte_id.as_deref())
                .map(workspace)
                .transpose()?,
            linked_now: !was_linked && linked.is_some(),
            link: linked.cloned(),
        })
    }

    /// Workspace per business: settle business ↔ workspace, then link the contact under it.
    async fn business_home(
        &self,
        cx: &mut Cx,
        id: &GhlContactId,
        contact: &Contact,
        business: &GhlBusiness,
        link: Option<Link>,
    ) -> Result<Home, SyncError> {
        let tenant = cx.scope.tenant.clone();
        let ctx = tenant.settings.normalise_ctx();
        let blink = self
            .ports
            .links
            .by_ghl(&tenant.id, EntityKind::Business, business.id.as_str())
            .await
            .map_err(SyncError::store("read business link"))?;
        let blinked = blink.as_ref().filter(|l| l.state == LinkState::Linked);
        let ekyte = match blinked.and_then(|l| l.ekyte_id.as_deref()) {
            Some(ws) => match self
                .ports
                .ekyte
                .get_workspace(&cx.scope, workspace(ws)?, blinked.and_then(agreed_name))
                .await
            {
                Ok(w) => Observed::present(
                    Business {
                        name: Some(w.name),
                        ..Business::default()
                    }
                    .normalised(&ctx),
                    None,
                ),
                Err(e) if e.is_not_found() => Observed::absent(),
                Err(e) => return Err(SyncError::ekyte("get workspace")(e)),
            },
            None => Observed::absent(),
        };
        let subject = Subject {
            kind: EntityKind::Business,
            ghl_id: Some(business.id.to_string()),
            ekyte_id: None,
            link: blink,
            ghl: Observed::present(business.business.clone(), None),
            ekyte,
            place: Place::default(),
        };
        let policy = tenant.settings.policy.business.clone();
        let blink = self
            .settler()
            .settle(cx, &policy, &BusinessWriter { ports: self.ports }, subject)
            .await?;
        let Some(ws) = blink
            .as_ref()
            .filter(|l| l.state == LinkState::Linked)
            .and_then(|l| l.ekyte_id.clone())
        else {
            return Ok(Home {
                workspace: None,
                link: None,
                linked_now: false,
            });
        };
        // The contact's own link points at the shared workspace through its parent.
        let was_linked = link.as_ref().is_some_and(|l| l.state == LinkState::Linked);
        let update = LinkUpdate {
            ghl_id: Some(id.to_string()),
            ekyte_id: None,
            ghl_parent: Some(business.id.to_string()),
            ekyte_parent: Some(ws.clone()),
            state: LinkState::Linked,
            base: contact.to_base(),
            ghl_fp: Some(Fingerprint::of(&contact.project(Side::Ghl))),
            ekyte_fp: None,
        };
        let link = if cx.dry_run() {
            link
        } else {
            Some(match link {
                Some(l) if l.base == update.base && l.ekyte_parent == update.ekyte_parent => l,
                Some(l) => self
                    .ports
                    .links
                    .complete(l.id, l.version, &update)
                    .await
                    .map_err(SyncError::store("update contact link"))?,
                None => self
                    .ports
                    .links
                    .insert_linked(&tenant.id, EntityKind::Contact, &update)
                    .await
                    .map_err(SyncError::store("link contact"))?,
            })
        };
        Ok(Home {
            workspace: Some(workspace(&ws)?),
            linked_now: !was_linked && link.is_some(),
            link,
        })
    }

    /// M4: the tenant's onboarding tasks, created in GHL once per contact.
    async fn onboarding(
        &self,
        cx: &mut Cx,
        id: &GhlContactId,
        contact_link: &Link,
        linked_now: bool,
    ) -> Result<(), SyncError> {
        let templates = cx.scope.tenant.settings.onboarding.clone();
        let recent =
            cx.now - contact_link.created_at < ChronoDuration::hours(ONBOARDING_WINDOW_HOURS);
        if templates.is_empty() || !(linked_now || recent) {
            return Ok(());
        }
        for t in templates {
            let key = format!("{id}:{}", t.key);
            if cx.dry_run() {
                let done = self
                    .ports
                    .links
                    .by_ghl(&cx.scope.tenant.id, EntityKind::Onboarding, &key)
                    .await
                    .map_err(SyncError::store("read onboarding link"))?;
                if done.is_none() {
                    cx.record(AuditNote {
                        target: Some(Side::Ghl),
                        kind: EntityKind::Onboarding,
                        action: AuditAction::Create,
                        ghl_id: Some(&key),
                        ekyte_id: None,
                        fields: vec!["title".into(), "due".into()],
                        reason: Some("dry run: onboarding task planned".into()),
                    });
                }
                continue;
            }
            let claim = self
                .ports
                .links
                .claim(
                    &ClaimKey {
                        tenant: cx.scope.tenant.id.clone(),
                        kind: EntityKind::Onboarding,
                        side: Side::Ghl,
                        id: key.clone(),
                        ghl_parent: Some(id.to_string()),
                        ekyte_parent: None,
                        pending: BaseRecord::None,
                    },
                    &cx.owner,
                    self.settings.claim_stale_after,
                )
                .await
                .map_err(SyncError::store("claim onboarding"))?;
            let task = t.instantiate(contact_link.created_at.min(cx.now));
            let (held, look_first) = match claim {
                Claim::Claimed(l) => (l, false),
                Claim::TakenOver(l) => (l, true),
                Claim::AlreadyLinked(_) => continue,
                // Another worker is creating it, or died doing so: retry until it is linked
                // or its claim is stale and ours to take over. Going on without it would
                // lose the task for good (a later sync of the contact may come too late).
                Claim::ClaimedByOther { by, since } if by != cx.owner => {
                    return Err(SyncError::claimed(
                        format!("onboarding task {key} is being created by {by} since {since}"),
                        since,
                        self.settings.claim_stale_after,
                    ));
                }
                Claim::ClaimedByOther { .. } => {
                    match self
                        .ports
                        .links
                        .claim(
                            &ClaimKey {
                                tenant: cx.scope.tenant.id.clone(),
                                kind: EntityKind::Onboarding,
                                side: Side::Ghl,
                                id: key.clone(),
                                ghl_parent: Some(id.to_string()),
                                ekyte_parent: None,
                                pending: BaseRecord::None,
                            },
                            &cx.owner,
                            Duration::ZERO,
                        )
                        .await
                        .map_err(SyncError::store("retake onboarding claim"))?
                    {
                        Claim::Claimed(l) | Claim::TakenOver(l) => (l, true),
                        _ => continue,
                    }
                }
            };
            let existing = if look_first {
                // An earlier attempt may have made tasks a prefetched list does not show.
                cx.opts.prefetched = None;
                let tasks = self
                    .ports
                    .ghl
                    .list_tasks(&cx.scope, id)
                    .await
                    .map_err(SyncError::ghl("list tasks"))?;
                let ctx = cx.scope.tenant.settings.normalise_ctx();
                tasks
                    .into_iter()
                    .find(|g| g.task.normalised(&ctx).title == task.title)
                    .map(|g| g.id.to_string())
            } else {
                None
            };
            let task_id = match existing {
                Some(t) => t,
                None => match self.ports.ghl.create_task(&cx.scope, id, &task).await {
                    Ok(created) => {
                        let created_id = created.id.to_string();
                        cx.ghl_created_tasks.push(created);
                        created_id
                    }
                    Err(e @ (ApiError::Invalid { .. } | ApiError::Forbidden { .. })) => {
                        self.ports
                            .links
                            .release(held.id)
                            .await
                            .map_err(SyncError::store("release onboarding claim"))?;
                        let e = SyncError::ghl("create onboarding task")(e);
                        cx.record(AuditNote {
                            target: Some(Side::Ghl),
                            kind: EntityKind::Onboarding,
                            action: AuditAction::Failed,
                            ghl_id: Some(&key),
                            ekyte_id: None,
                            fields: vec![],
                            reason: Some(e.chain().join(": ")),
                        });
                        continue;
                    }
                    Err(e) => return Err(SyncError::ghl("create onboarding task")(e)),
                },
            };
            self.ports
                .links
                .complete(
                    held.id,
                    held.version,
                    &LinkUpdate {
                        ghl_id: Some(key.clone()),
                        ekyte_id: None,
                        ghl_parent: Some(id.to_string()),
                        ekyte_parent: Some(format!("ghl-task:{task_id}")),
                        state: LinkState::Linked,
                        base: BaseRecord::None,
                        ghl_fp: None,
                        ekyte_fp: None,
                    },
                )
                .await
                .map_err(SyncError::store("record onboarding"))?;
            cx.record(AuditNote {
                target: Some(Side::Ghl),
                kind: EntityKind::Onboarding,
                action: AuditAction::Create,
                ghl_id: Some(&task_id),
                ekyte_id: None,
                fields: vec!["title".into(), "body".into(), "due".into()],
                reason: Some(format!("onboarding template {}", t.key)),
            });
        }
        Ok(())
    }

    /// Whether this run created the workspace `ws` (for the contact or its business): then
    /// it holds nothing yet that this run did not write.
    fn created_here(&self, cx: &Cx, ws: EkyteWorkspaceId) -> bool {
        let ws = ws.to_string();
        [EntityKind::Contact, EntityKind::Business]
            .into_iter()
            .any(|kind| cx.created_here(kind, Side::Ekyte, &ws))
    }

    /// The workspace's board for GHL notes and the profile note, created once.
    async fn board(
        &self,
        cx: &mut Cx,
        ws: EkyteWorkspaceId,
    ) -> Result<domain::EkyteBoardId, SyncError> {
        let tenant = cx.scope.tenant.clone();
        let key = format!("ws:{ws}");
        let parse = |raw: &str| {
            domain::EkyteBoardId::parse(raw).map_err(|_| {
                SyncError::Config(format!("stored eKyte board id {raw:?} is not valid"))
            })
        };
        // A workspace this run created has no board link yet: the claim below is the read.
        let fresh = self.created_here(cx, ws);
        if !fresh
            && let Some(l) = self
                .ports
                .links
                .by_ghl(&tenant.id, EntityKind::Board, &key)
                .await
                .map_err(SyncError::store("read board link"))?
            && let (LinkState::Linked, Some(b)) = (l.state, l.ekyte_id.as_deref())
        {
            return parse(b);
        }
        let claim_key = ClaimKey {
            tenant: tenant.id.clone(),
            kind: EntityKind::Board,
            side: Side::Ghl,
            id: key.clone(),
            ghl_parent: None,
            ekyte_parent: Some(ws.to_string()),
            pending: BaseRecord::None,
        };
        // Whether a board of this title may exist already: not when the claim is new and the
        // workspace was created by this very run (nobody else can have added the board).
        let mut may_exist = true;
        let held = match self
            .ports
            .links
            .claim(&claim_key, &cx.owner, self.settings.claim_stale_after)
            .await
            .map_err(SyncError::store("claim board"))?
        {
            Claim::Claimed(l) => {
                may_exist = !fresh;
                l
            }
            Claim::TakenOver(l) => l,
            Claim::AlreadyLinked(l) => {
                return l.ekyte_id.as_deref().map(parse).unwrap_or_else(|| {
                    Err(SyncError::Config("board link without board id".into()))
                });
            }
            Claim::ClaimedByOther { by, .. } if by == cx.owner => self
                .ports
                .links
                .claim(&claim_key, &cx.owner, Duration::ZERO)
                .await
                .map_err(SyncError::store("retake board claim"))
                .and_then(|c| match c {
                    Claim::Claimed(l) | Claim::TakenOver(l) => Ok(l),
                    _ => Err(SyncError::Busy {
                        what: format!("board of workspace {ws}"),
                        stale_at: None,
                    }),
                })?,
            Claim::ClaimedByOther { by, since } => {
                return Err(SyncError::claimed(
                    format!("board of workspace {ws} is being created by {by}"),
                    since,
                    self.settings.claim_stale_after,
                ));
            }
        };
        let title = tenant.settings.ekyte.board_title.clone();
        // Look before creating, unless the workspace is brand new: the listing is every
        // board of the company, so a listing per new contact made a first sync O(N²).
        let existing = if may_exist {
            self.ports
                .ekyte
                .list_boards(&cx.scope, ws)
                .await
                .map_err(SyncError::ekyte("list boards"))?
                .into_iter()
                .find(|b| b.title == title)
                .map(|b| b.id)
        } else {
            None
        };
        let board = match existing {
            Some(b) => b,
            None => {
                let b = self
                    .ports
                    .ekyte
                    .create_board(&cx.scope, ws, &title)
                    .await
                    .map_err(SyncError::ekyte("create board"))?;
                cx.record(AuditNote {
                    target: Some(Side::Ekyte),
                    kind: EntityKind::Board,
                    action: AuditAction::Create,
                    ghl_id: None,
                    ekyte_id: Some(&b.to_string()),
                    fields: vec!["title".into()],
                    reason: Some(format!("notes board of workspace {ws}")),
                });
                b
            }
        };
        self.ports
            .links
            .complete(
                held.id,
                held.version,
                &LinkUpdate {
                    ghl_id: Some(key),
                    ekyte_id: Some(board.to_string()),
                    ghl_parent: None,
                    ekyte_parent: Some(ws.to_string()),
                    state: LinkState::Linked,
                    base: BaseRecord::None,
                    ghl_fp: None,
                    ekyte_fp: None,
                },
            )
            .await
            .map_err(SyncError::store("record board"))?;
        Ok(board)
    }

    /// M7: the profile note, rewritten only when what it shows changed.
    async fn profile(
        &self,
        cx: &mut Cx,
        id: &GhlContactId,
        ws: EkyteWorkspaceId,
        contact: &Contact,
        business: Option<&Business>,
        ctx: &domain::NormaliseCtx,
    ) -> Result<(), SyncError> {
        let prefetched = cx
            .opts
            .prefetched
            .as_ref()
            .and_then(|p| p.appointments_of(id));
        let appointments = match prefetched {
            Some(list) => list,
            None => self
                .ports
                .ghl
                .list_appointments(&cx.scope, id)
                .await
                .map_err(SyncError::ghl("list appointments"))?,
        };
        let window = self
            .settings
            .appointment_window
            .map(|w| (cx.now - w.past, cx.now + w.future));
        let appointments: Vec<_> = appointments
            .into_iter()
            .filter(|a| match (window, a.appointment.start) {
                (None, _) => true,
                (Some((from, to)), Some(start)) => from <= start && start <= to,
                (Some(_), None) => false,
            })
            .map(|a| a.appointment.normalised(ctx))
            .collect();
        let content = NoteContent {
            title: profile::title(contact),
            html: profile::render(contact, business, &appointments),
        };
        let fp = Fingerprint::of_document(
            EntityKind::ProfileNote,
            &format!("{}\n{}", content.title, content.html),
        );
        let tenant = cx.scope.tenant.clone();
        let link = self
            .ports
            .links
            .by_ghl(&tenant.id, EntityKind::ProfileNote, id.as_str())
            .await
            .map_err(SyncError::store("read profile link"))?;
        let linked = link
            .as_ref()
            .filter(|l| l.state == LinkState::Linked && l.ekyte_id.is_some());
        if linked.is_some_and(|l| l.ekyte_fp == Some(fp)) {
            return Ok(());
        }
        if cx.dry_run() {
            cx.record(AuditNote {
                target: Some(Side::Ekyte),
                kind: EntityKind::ProfileNote,
                action: if linked.is_some() {
                    AuditAction::Update
                } else {
                    AuditAction::Create
                },
                ghl_id: Some(id.as_str()),
                ekyte_id: linked.and_then(|l| l.ekyte_id.as_deref()),
                fields: vec!["content".into()],
                reason: Some("dry run: planned, not written".into()),
            });
            return Ok(());
        }
        if let Some(l) = linked.cloned() {
            let note_raw = l.ekyte_id.clone().unwrap_or_default();
            let note = domain::EkyteNoteId::parse(&note_raw).map_err(|_| {
                SyncError::Config(format!("stored eKyte note id {note_raw:?} is not valid"))
            })?;
            match self
                .ports
                .ekyte
                .update_note(&cx.scope, note, &content)
                .await
            {
                Ok(()) => {
                    self.ports
                        .links
                        .complete(
                            l.id,
                            l.version,
                            &LinkUpdate {
                                ghl_id: l.ghl_id.clone(),
                                ekyte_id: l.ekyte_id.clone(),
                                ghl_parent: l.ghl_parent.clone(),
                                ekyte_parent: l.ekyte_parent.clone(),
                                state: LinkState::Linked,
                                base: BaseRecord::Document { fingerprint: fp },
                                ghl_fp: None,
                                ekyte_fp: Some(fp),
                            },
                        )
                        .await
                        .map_err(SyncError::store("update profile link"))?;
                    cx.record(AuditNote {
                        target: Some(Side::Ekyte),
                        kind: EntityKind::ProfileNote,
                        action: AuditAction::Update,
                        ghl_id: Some(id.as_str()),
                        ekyte_id: Some(&note_raw),
                        fields: vec!["content".into()],
                        reason: None,
                    });
                    return Ok(());
                }
                Err(ApiError::Unsupported { operation }) => {
                    cx.record(AuditNote {
                        target: Some(Side::Ekyte),
                        kind: EntityKind::ProfileNote,
                        action: AuditAction::Unsupported,
                        ghl_id: Some(id.as_str()),
                        ekyte_id: Some(&note_raw),
                        fields: vec!["content".into()],
                        reason: Some(format!(
                            "profile changed but eKyte credentials cannot update notes ({operation}); add an MCP token"
                        )),
                    });
                    return Ok(());
                }
                Err(e) if e.is_not_found() => {
                    // Re-create below and relink.
                }
                Err(e) => return Err(SyncError::ekyte("update profile note")(e)),
            }
        }
        let board = self.board(cx, ws).await?;
        let claim_key = ClaimKey {
            tenant: tenant.id.clone(),
            kind: EntityKind::ProfileNote,
            side: Side::Ghl,
            id: id.to_string(),
            ghl_parent: Some(id.to_string()),
            ekyte_parent: Some(board.to_string()),
            pending: BaseRecord::None,
        };
        let held = match link.filter(|l| l.state == LinkState::Linked) {
            Some(l) => l,
            None => match self
                .ports
                .links
                .claim(&claim_key, &cx.owner, self.settings.claim_stale_after)
                .await
                .map_err(SyncError::store("claim profile note"))?
            {
                Claim::Claimed(l) | Claim::TakenOver(l) => l,
                Claim::AlreadyLinked(_) => return Ok(()),
                Claim::ClaimedByOther { by, .. } if by == cx.owner => match self
                    .ports
                    .links
                    .claim(&claim_key, &cx.owner, Duration::ZERO)
                    .await
                    .map_err(SyncError::store("retake profile claim"))?
                {
                    Claim::Claimed(l) | Claim::TakenOver(l) => l,
                    _ => return Ok(()),
                },
                Claim::ClaimedByOther { by, since } => {
                    return Err(SyncError::claimed(
                        format!("profile note of {id} is being created by {by}"),
                        since,
                        self.settings.claim_stale_after,
                    ));
                }
            },
        };
        let note = self
            .ports
            .ekyte
            .create_note(&cx.scope, board, &content)
            .await
            .map_err(SyncError::ekyte("create profile note"))?;
        self.ports
            .links
            .complete(
                held.id,
                held.version,
                &LinkUpdate {
                    ghl_id: Some(id.to_string()),
                    ekyte_id: Some(note.to_string()),
                    ghl_parent: Some(id.to_string()),
                    ekyte_parent: Some(board.to_string()),
                    state: LinkState::Linked,
                    base: BaseRecord::Document { fingerprint: fp },
                    ghl_fp: None,
                    ekyte_fp: Some(fp),
                },
            )
            .await
            .map_err(SyncError::store("record profile note"))?;
        cx.record(AuditNote {
            target: Some(Side::Ekyte),
            kind: EntityKind::ProfileNote,
            action: AuditAction::Create,
            ghl_id: Some(id.as_str()),
            ekyte_id: Some(&note.to_string()),
            fields: vec!["content".into()],
            reason: None,
        });
        Ok(())
    }

    /// Tasks both ways, and eKyte comments → GHL notes.
    async fn tasks(
        &self,
        cx: &mut Cx,
        id: &GhlContactId,
        ws: Option<EkyteWorkspaceId>,
        ctx: &domain::NormaliseCtx,
    ) -> Result<(), SyncError> {
        let tenant = cx.scope.tenant.clone();
        let prefetched = cx.opts.prefetched.as_ref().and_then(|p| p.tasks_of(id));
        let ghl_tasks = match prefetched {
            // Read before this run's onboarding tasks existed: add those.
            Some(tasks) => with_made(tasks, &cx.ghl_created_tasks, |a, b| a.id == b.id),
            None => self
                .ports
                .ghl
                .list_tasks(&cx.scope, id)
                .await
                .map_err(SyncError::ghl("list tasks"))?,
        };
        let links = self
            .ports
            .links
            .by_ghl_parent(&tenant.id, EntityKind::Task, id.as_str())
            .await
            .map_err(SyncError::store("read task links"))?;
        let mut by_ghl: HashMap<String, Link> = links
            .iter()
            .filter_map(|l| l.ghl_id.clone().map(|g| (g, l.clone())))
            .collect();
        let mut ekyte_tasks: BTreeMap<String, EkyteTask> = BTreeMap::new();
        // A workspace this run created holds no task yet, and no task link names it yet:
        // nothing to list, nothing to read.
        let fresh = ws.is_some_and(|ws| self.created_here(cx, ws));
        if let Some(ws) = ws.filter(|_| !fresh) {
            for t in self
                .ports
                .ekyte
                .list_tasks(&cx.scope, ws, true)
                .await
                .map_err(SyncError::ekyte("list tasks"))?
            {
                ekyte_tasks.insert(t.id.to_string(), t);
            }
        }
        let ekyte_links: HashMap<String, Link> = match ws.filter(|_| !fresh) {
            Some(ws) => self
                .ports
                .links
                .by_ekyte_parent(&tenant.id, EntityKind::Task, &ws.to_string())
                .await
                .map_err(SyncError::store("read task links"))?
                .into_iter()
                .filter_map(|l| l.ekyte_id.clone().map(|e| (e, l)))
                .collect(),
            None => HashMap::new(),
        };
        let place = Place {
            ghl_parent: Some(id.to_string()),
            ekyte_parent: ws.map(|w| w.to_string()),
        };
        let policy = tenant.settings.policy.task.clone();
        let writer = TaskWriter { ports: self.ports };
        let ekyte_obs = |link: Option<&Link>| -> Observed<Task> {
            match link
                .and_then(|l| l.ekyte_id.as_ref())
                .and_then(|e| ekyte_tasks.get(e))
            {
                Some(t) => Observed::present(t.task.normalised(ctx), cx.opts.ekyte_changed_at),
                None => Observed::absent(),
            }
        };

        let mut settled: Vec<Subject<Task>> = Vec::new();
        // eKyte tasks claimed for a create in GHL whose outcome nobody learnt (the attempt
        // failed, or its worker died): settled again, first, so the claim is retaken or
        // waited for and the GHL task looked up before it is written. Were they left out,
        // nothing would ever create them; were they last, a GHL task that create did make
        // would be taken for a new one and copied back into eKyte.
        if tenant.settings.workspace_per == WorkspacePer::Contact || ws.is_none() {
            for (eid, t) in &ekyte_tasks {
                let Some(link) = ekyte_links.get(eid) else {
                    continue;
                };
                if link.state != LinkState::Claimed {
                    continue;
                }
                settled.push(Subject {
                    kind: EntityKind::Task,
                    ghl_id: None,
                    ekyte_id: Some(eid.clone()),
                    link: Some(link.clone()),
                    ghl: Observed::absent(),
                    ekyte: Observed::present(t.task.normalised(ctx), cx.opts.ekyte_changed_at),
                    place: place.clone(),
                });
            }
        }
        for g in &ghl_tasks {
            let link = by_ghl.remove(g.id.as_str());
            let ekyte = if link.as_ref().is_some_and(|l| l.state == LinkState::Linked) {
                ekyte_obs(link.as_ref())
            } else {
                Observed::absent()
            };
            settled.push(Subject {
                kind: EntityKind::Task,
                ghl_id: Some(g.id.to_string()),
                ekyte_id: None,
                link,
                ghl: Observed::present(g.task.normalised(ctx), cx.opts.ghl_changed_at),
                ekyte,
                place: place.clone(),
            });
        }
        // Linked tasks gone from GHL (deleted there).
        for (_, link) in by_ghl {
            if link.state != LinkState::Linked {
                continue;
            }
            settled.push(Subject {
                kind: EntityKind::Task,
                ghl_id: link.ghl_id.clone(),
                ekyte_id: link.ekyte_id.clone(),
                ekyte: ekyte_obs(Some(&link)),
                link: Some(link),
                ghl: Observed::absent(),
                place: place.clone(),
            });
        }
        // Tasks made in eKyte, in this contact's own workspace (M3).
        if tenant.settings.workspace_per == WorkspacePer::Contact || ws.is_none() {
            for (eid, t) in &ekyte_tasks {
                if ekyte_links.contains_key(eid) {
                    continue;
                }
                settled.push(Subject {
                    kind: EntityKind::Task,
                    ghl_id: None,
                    ekyte_id: Some(eid.clone()),
                    link: None,
                    ghl: Observed::absent(),
                    ekyte: Observed::present(t.task.normalised(ctx), cx.opts.ekyte_changed_at),
                    place: place.clone(),
                });
            }
        }
        let mut linked_tasks = Vec::new();
        for subject in settled {
            let link = self.settler().settle(cx, &policy, &writer, subject).await?;
            if let Some(l) = link.filter(|l| l.state == LinkState::Linked) {
                linked_tasks.push(l);
            }
        }

        // M5: eKyte comments on this contact's tasks become GHL notes.
        for l in linked_tasks {
            let Some(t) = l.ekyte_id.as_ref().and_then(|e| ekyte_tasks.get(e)) else {
                continue;
            };
            for c in &t.comments {
                self.comment(cx, id, t, c).await?;
            }
        }
        Ok(())
    }

    async fn comment(
        &self,
        cx: &mut Cx,
        id: &GhlContactId,
        task: &EkyteTask,
        comment: &ports::ekyte::EkyteComment,
    ) -> Result<(), SyncError> {
        let tenant = cx.scope.tenant.clone();
        let cid = comment.id.to_string();
        let existing = self
            .ports
            .links
            .by_ekyte(&tenant.id, EntityKind::Comment, &cid)
            .await
            .map_err(SyncError::store("read comment link"))?;
        if existing
            .as_ref()
            .is_some_and(|l| l.state == LinkState::Linked)
        {
            return Ok(());
        }
        if !tenant.settings.policy.comment.create_in_ghl {
            return Ok(());
        }
        let body = comment.body.clone().unwrap_or_default();
        let note = Note {
            title: None,
            body: domain::normalise::text_body(&format!(
                "eKyte comment on \"{}\"{}:\n{}",
                task.task.title.as_deref().unwrap_or("task"),
                comment
                    .author
                    .as_deref()
                    .map(|a| format!(" by {a}"))
                    .unwrap_or_default(),
                body
            )),
            created: comment.created,
        };
        if cx.dry_run() {
            cx.record(AuditNote {
                target: Some(Side::Ghl),
                kind: EntityKind::Comment,
                action: AuditAction::Create,
                ghl_id: None,
                ekyte_id: Some(&cid),
                fields: vec!["body".into()],
                reason: Some("dry run: planned, not written".into()),
            });
            return Ok(());
        }
        let key = ClaimKey {
            tenant: tenant.id.clone(),
            kind: EntityKind::Comment,
            side: Side::Ekyte,
            id: cid.clone(),
            ghl_parent: Some(id.to_string()),
            ekyte_parent: Some(task.id.to_string()),
            pending: BaseRecord::None,
        };
        let held = match self
            .ports
            .links
            .claim(&key, &cx.owner, self.settings.claim_stale_after)
            .await
            .map_err(SyncError::store("claim comment"))?
        {
            Claim::Claimed(l) => l,
            // A crashed attempt may have written the note; a duplicate note is the lesser
            // evil against a lost comment, and it is audited.
            Claim::TakenOver(l) => l,
            Claim::AlreadyLinked(_) => return Ok(()),
            Claim::ClaimedByOther { since, .. } => {
                return Err(SyncError::claimed(
                    format!("comment {cid} is being copied"),
                    since,
                    self.settings.claim_stale_after,
                ));
            }
        };
        let created = self
            .ports
            .ghl
            .create_note(&cx.scope, id, &note)
            .await
            .map_err(SyncError::ghl("create note from comment"))?;
        cx.ghl_created_notes.push(created.clone());
        // The GHL note came from eKyte: link it as a note too, so its NoteCreate webhook is
        // recognised as our own and not copied back to eKyte.
        let ctx = tenant.settings.normalise_ctx();
        let stored = created.note.normalised(&ctx);
        self.ports
            .links
            .insert_linked(
                &tenant.id,
                EntityKind::Note,
                &LinkUpdate {
                    ghl_id: Some(created.id.to_string()),
                    ekyte_id: None,
                    ghl_parent: Some(id.to_string()),
                    ekyte_parent: Some(format!("comment:{cid}")),
                    state: LinkState::Linked,
                    base: stored.to_base(),
                    ghl_fp: Some(Fingerprint::of(&stored.project(Side::Ghl))),
                    ekyte_fp: Some(Fingerprint::of(&stored.project(Side::Ekyte))),
                },
            )
            .await
            .map_err(SyncError::store("link note from comment"))?;
        self.ports
            .links
            .complete(
                held.id,
                held.version,
                &LinkUpdate {
                    ghl_id: Some(created.id.to_string()),
                    ekyte_id: Some(cid.clone()),
                    ghl_parent: Some(id.to_string()),
                    ekyte_parent: Some(task.id.to_string()),
                    state: LinkState::Linked,
                    base: BaseRecord::None,
                    ghl_fp: None,
                    ekyte_fp: None,
                },
            )
            .await
            .map_err(SyncError::store("record comment"))?;
        cx.record(AuditNote {
            target: Some(Side::Ghl),
            kind: EntityKind::Comment,
            action: AuditAction::Create,
            ghl_id: Some(created.id.as_str()),
            ekyte_id: Some(&cid),
            fields: vec!["body".into()],
            reason: Some("eKyte comment copied as a GHL note".into()),
        });
        Ok(())
    }

    /// GHL notes → board notes.
    async fn notes(
        &self,
        cx: &mut Cx,
        id: &GhlContactId,
        ws: Option<EkyteWorkspaceId>,
        ctx: &domain::NormaliseCtx,
    ) -> Result<(), SyncError> {
        let tenant = cx.scope.tenant.clone();
        let notes = match cx.ghl_notes.take() {
            // Read before this run's copies of eKyte comments existed: add those.
            Some(notes) => with_made(notes, &cx.ghl_created_notes, |a, b| a.id == b.id),
            None => self
                .ports
                .ghl
                .list_notes(&cx.scope, id)
                .await
                .map_err(SyncError::ghl("list notes"))?,
        };
        let mut by_ghl: HashMap<String, Link> = self
            .ports
            .links
            .by_ghl_parent(&tenant.id, EntityKind::Note, id.as_str())
            .await
            .map_err(SyncError::store("read note links"))?
            .into_iter()
            .filter_map(|l| l.ghl_id.clone().map(|g| (g, l)))
            .collect();
        let policy = tenant.settings.policy.note.clone();
        let writer = NoteWriter { ports: self.ports };
        let mut subjects = Vec::new();
        for n in notes {
            let link = by_ghl.remove(n.id.as_str());
            // eKyte cannot show us a board note without an MCP token: what we wrote is what
            // it holds, unless we learn otherwise.
            let ekyte = match link.as_ref().filter(|l| l.state == LinkState::Linked) {
                Some(l) => match Note::from_base(&l.base) {
                    Some(b) => Observed::present(b.project(Side::Ekyte), None),
                    None => Observed::absent(),
                },
                None => Observed::absent(),
            };
            subjects.push((n.note.normalised(ctx), n.id.to_string(), link, ekyte));
        }
        let board = match (
            ws,
            subjects.iter().any(|(_, _, l, _)| l.is_none()),
            cx.dry_run(),
        ) {
            (Some(ws), true, false) => Some(self.board(cx, ws).await?),
            _ => None,
        };
        for (note, nid, link, ekyte) in subjects {
            let place = Place {
                ghl_parent: Some(id.to_string()),
                ekyte_parent: link
                    .as_ref()
                    .and_then(|l| l.ekyte_parent.clone())
                    .or_else(|| board.map(|b| b.to_string())),
            };
            self.settler()
                .settle(
                    cx,
                    &policy,
                    &writer,
                    Subject {
                        kind: EntityKind::Note,
                        ghl_id: Some(nid),
                        ekyte_id: None,
                        link,
                        ghl: Observed::present(note, cx.opts.ghl_changed_at),
                        ekyte,
                        place,
                    },
                )
                .await?;
        }
        // Notes deleted in GHL: their links close (board notes cannot be deleted).
        for (_, link) in by_ghl {
            if link.state != LinkState::Linked {
                continue;
            }
            let ekyte = match Note::from_base(&link.base) {
                Some(b) => Observed::present(b.project(Side::Ekyte), None),
                None => Observed::absent(),
            };
            let place = Place {
                ghl_parent: Some(id.to_string()),
                ekyte_parent: link.ekyte_parent.clone(),
            };
            self.settler()
                .settle(
                    cx,
                    &policy,
                    &writer,
                    Subject {
                        kind: EntityKind::Note,
                        ghl_id: link.ghl_id.clone(),
                        ekyte_id: link.ekyte_id.clone(),
                        link: Some(link),
                        ghl: Observed::absent(),
                        ekyte,
                        place,
                    },
                )
                .await?;
        }
        Ok(())
    }
}

/// A list read earlier in the run, with the records the run made since added (those it does
/// not hold already).
fn with_made<T: Clone>(mut read: Vec<T>, made: &[T], same: impl Fn(&T, &T) -> bool) -> Vec<T> {
    for m in made {
        if !read.iter().any(|r| same(r, m)) {
            read.push(m.clone());
        }
    }
    read
}

/// The workspace name last agreed on a contact or business link, if its record holds one.
fn agreed_name(link: &Link) -> Option<&str> {
    match &link.base {
        BaseRecord::Contact(c) => c.name.as_deref(),
        BaseRecord::Business(b) => b.name.as_deref(),
        _ => None,
    }
}
