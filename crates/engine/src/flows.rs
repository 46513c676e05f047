//! Routing what happened to the contact sync: GHL webhook events (every type of API.md §9.2)
//! and eKyte changes found by polling (M3, M5).

use domain::{Contact, EntityKind, ExternalRef, GhlContactId, Observed, Record, WorkspacePer};
use ports::ekyte::EkyteChange;
use ports::ghl::{GhlEvent, GhlEventKind, TaskSearch};
use ports::store::{LinkState, LinkUpdate};

use crate::contact::ContactSync;
use crate::cx::Cx;
use crate::error::SyncError;
use crate::settle::{Place, Settler, Stored, Subject};
use crate::writers::{ContactWriter, ghl_contact};

/// At most this many pages of the location-wide task search are read to find the contact of
/// a `TaskCreate` that came without one (#332); past that the sweep catches up.
const TASK_SEARCH_PAGES: u32 = 20;
const TASK_SEARCH_PAGE: u32 = 100;

/// How long a workspace create whose answer was lost may wait for its retry before a new
/// workspace without a readable `ExternalId` is taken for one made in eKyte (the retries of a
/// message, and a claim's takeover after `claim_stale_after`, come well within it).
const PENDING_CREATE_HORIZON: std::time::Duration = std::time::Duration::from_secs(3600);

impl ContactSync<'_> {
    /// A verified GHL event: re-fetch and reconcile what it names.
    pub async fn ghl_event(&self, cx: &mut Cx, event: &GhlEvent) -> Result<(), SyncError> {
        // Tenant isolation: an event for another location never touches this tenant's data.
        if event.location != cx.scope.tenant.location_id {
            cx.skip(
                EntityKind::Contact,
                None,
                None,
                format!(
                    "event {} is for location {}, not this tenant's",
                    event.webhook_id, event.location
                ),
            );
            return Ok(());
        }
        let contact = match &event.kind {
            GhlEventKind::Install { .. } | GhlEventKind::Uninstall { .. } => {
                cx.skip(
                    EntityKind::Contact,
                    None,
                    None,
                    format!("{} is handled by the ingress", event.kind.type_name()),
                );
                return Ok(());
            }
            GhlEventKind::Unknown { event_type } => {
                cx.skip(
                    EntityKind::Contact,
                    None,
                    None,
                    format!("event type {event_type} is not synced"),
                );
                return Ok(());
            }
            GhlEventKind::TaskCreate {
                task,
                contact: None,
            }
            | GhlEventKind::TaskComplete {
                task,
                contact: None,
            }
            | GhlEventKind::TaskDelete {
                task,
                contact: None,
            } => match self.contact_of_task(cx, task).await? {
                Some(c) => c,
                None => {
                    cx.skip(
                            EntityKind::Task,
                            Some(task.as_str()),
                            None,
                            "the event names no contact and the task search did not find it; the next sweep will",
                        );
                    return Ok(());
                }
            },
            kind => match kind.contact() {
                Some(c) => c.clone(),
                None => {
                    cx.skip(
                        EntityKind::Appointment,
                        None,
                        None,
                        format!("{} names no contact", kind.type_name()),
                    );
                    return Ok(());
                }
            },
        };
        if cx.opts.ghl_changed_at.is_none() {
            cx.opts.ghl_changed_at = Some(event.timestamp);
        }
        let created = match &event.kind {
            GhlEventKind::ContactCreate { contact } => {
                Some((EntityKind::Contact, contact.as_str()))
            }
            GhlEventKind::TaskCreate { task, .. } => Some((EntityKind::Task, task.as_str())),
            GhlEventKind::NoteCreate { note, .. } => Some((EntityKind::Note, note.as_str())),
            _ => None,
        };
        self.run_unless_linked(cx, &contact, created).await
    }

    async fn contact_of_task(
        &self,
        cx: &Cx,
        task: &domain::GhlTaskId,
    ) -> Result<Option<GhlContactId>, SyncError> {
        for page in 0..TASK_SEARCH_PAGES {
            let found = self
                .ports
                .ghl
                .search_tasks(
                    &cx.scope,
                    &TaskSearch {
                        contacts: vec![],
                        completed: None,
                        skip: page * TASK_SEARCH_PAGE,
                        limit: TASK_SEARCH_PAGE,
                    },
                )
                .await
                .map_err(SyncError::ghl("search tasks"))?;
            if let Some(t) = found.iter().find(|t| &t.id == task) {
                return Ok(Some(t.contact.clone()));
            }
            if (found.len() as u32) < TASK_SEARCH_PAGE {
                break;
            }
        }
        Ok(None)
    }

    /// A change found by polling eKyte.
    pub async fn ekyte_change(&self, cx: &mut Cx, change: &EkyteChange) -> Result<(), SyncError> {
        if cx.opts.ekyte_changed_at.is_none() {
            cx.opts.ekyte_changed_at = Some(cx.now);
        }
        let tenant = cx.scope.tenant.clone();
        let links = self.ports.links.clone();
        let ws_contact = |ws: String| {
            let tenant = tenant.clone();
            let links = links.clone();
            async move {
                links
                    .by_ekyte(&tenant.id, EntityKind::Contact, &ws)
                    .await
                    .map_err(SyncError::store("read workspace link"))
            }
        };
        let contact = match change {
            EkyteChange::WorkspaceCreated { workspace } => {
                return self.workspace_created(cx, workspace).await;
            }
            EkyteChange::WorkspaceRenamed { workspace }
            | EkyteChange::WorkspaceDeactivated { workspace } => {
                ws_contact(workspace.id.to_string())
                    .await?
                    .and_then(|l| l.ghl_id)
            }
            EkyteChange::TaskCreated { task } => ws_contact(task.workspace.to_string())
                .await?
                .and_then(|l| l.ghl_id),
            EkyteChange::TaskChanged { task } => {
                let by_task = self
                    .ports
                    .links
                    .by_ekyte(&tenant.id, EntityKind::Task, &task.id.to_string())
                    .await
                    .map_err(SyncError::store("read task link"))?
                    .and_then(|l| l.ghl_parent);
                match by_task {
                    Some(c) => Some(c),
                    None => ws_contact(task.workspace.to_string())
                        .await?
                        .and_then(|l| l.ghl_id),
                }
            }
            EkyteChange::CommentAdded { workspace, comment } => {
                let by_task = self
                    .ports
                    .links
                    .by_ekyte(&tenant.id, EntityKind::Task, &comment.task.to_string())
                    .await
                    .map_err(SyncError::store("read task link"))?
                    .and_then(|l| l.ghl_parent);
                match by_task {
                    Some(c) => Some(c),
                    None => ws_contact(workspace.to_string())
                        .await?
                        .and_then(|l| l.ghl_id),
                }
            }
        };
        match contact {
            Some(c) => self.run(cx, &ghl_contact(&c)?).await,
            None => {
                cx.skip(
                    EntityKind::Contact,
                    None,
                    None,
                    format!(
                        "eKyte change {} is in no linked workspace",
                        change.dedupe_key()
                    ),
                );
                Ok(())
            }
        }
    }

    /// A workspace made in eKyte (M3): link it to the contact its `ExternalId` names, or
    /// create a GHL contact for it when the tenant's policy allows.
    async fn workspace_created(
        &self,
        cx: &mut Cx,
        ws: &ports::ekyte::Workspace,
    ) -> Result<(), SyncError> {
        let tenant = cx.scope.tenant.clone();
        let ws_id = ws.id.to_string();
        if let Some(l) = self
            .ports
            .links
            .by_ekyte(&tenant.id, EntityKind::Contact, &ws_id)
            .await
            .map_err(SyncError::store("read workspace link"))?
            && let Some(c) = l.ghl_id.filter(|_| l.state == LinkState::Linked)
        {
            return self.run(cx, &ghl_contact(&c)?).await;
        }
        if !ws.active {
            cx.skip(
                EntityKind::Contact,
                None,
                Some(&ws_id),
                "inactive workspace",
            );
            return Ok(());
        }
        // A workspace that names one of this location's contacts belongs to it.
        if let Some(ExternalRef::Contact { location, contact }) = ws
            .external_id
            .as_deref()
            .and_then(|e| ExternalRef::parse(e).ok())
            && location == tenant.location_id
        {
            {
                let existing = self
                    .ports
                    .links
                    .by_ghl(&tenant.id, EntityKind::Contact, contact.as_str())
                    .await
                    .map_err(SyncError::store("read contact link"))?;
                if existing.is_none() && !cx.dry_run() {
                    let ctx = tenant.settings.normalise_ctx();
                    let named = Contact {
                        name: Some(ws.name.clone()),
                        ..Contact::default()
                    }
                    .normalised(&ctx);
                    self.ports
                        .links
                        .insert_linked(
                            &tenant.id,
                            EntityKind::Contact,
                            &LinkUpdate {
                                ghl_id: Some(contact.to_string()),
                                ekyte_id: Some(ws_id.clone()),
                                ghl_parent: None,
                                ekyte_parent: None,
                                state: LinkState::Linked,
                                // No agreed record yet: the first sync reconciles both sides
                                // with GHL winning the name (contact policy).
                                base: named.to_base(),
                                ghl_fp: None,
                                ekyte_fp: Some(domain::Fingerprint::of(
                                    &named.project(domain::Side::Ekyte),
                                )),
                            },
                        )
                        .await
                        .map_err(SyncError::store("link workspace by ExternalId"))?;
                }
                return self.run(cx, &contact).await;
            }
        }
        if tenant.settings.workspace_per == WorkspacePer::Business {
            cx.skip(
                EntityKind::Contact,
                None,
                Some(&ws_id),
                "workspaces are per business; a new workspace does not become a contact",
            );
            return Ok(());
        }
        // Without a readable ExternalId, a workspace one of our creates made but whose answer
        // was lost looks like one made in eKyte: copied to GHL now, it would become a second
        // contact, and the lost create's retry a second workspace. While such creates are
        // pending, leave it: the next poll lists it again, after the retry has linked it (by
        // its name, see `writers::find_own_workspace`) or left it to be a contact.
        if ws.external_id.is_none() {
            let since = self.ports.clock.now()
                - chrono::Duration::from_std(PENDING_CREATE_HORIZON).unwrap_or_default();
            let pending = self
                .ports
                .links
                .pending_ekyte_creates(&tenant.id, EntityKind::Contact, since)
                .await
                .map_err(SyncError::store("count pending workspace creates"))?;
            if pending > 0 {
                cx.skip(
                    EntityKind::Contact,
                    None,
                    Some(&ws_id),
                    format!(
                        "{pending} workspace create(s) of this location are pending, and eKyte \
                         does not show whose this workspace is; looked at again on the next poll"
                    ),
                );
                return Ok(());
            }
        }
        let ctx = tenant.settings.normalise_ctx();
        let record = Contact {
            name: Some(ws.name.clone()),
            ..Contact::default()
        }
        .normalised(&ctx);
        let policy = tenant.settings.policy.contact.clone();
        let settler = Settler {
            links: self.ports.links.as_ref(),
            claim_stale_after: self.settings.claim_stale_after,
        };
        let link = settler
            .settle(
                cx,
                &policy,
                &ContactWriter { ports: self.ports },
                Subject {
                    kind: EntityKind::Contact,
                    link: None,
                    ghl_id: None,
                    ekyte_id: Some(ws_id),
                    ghl: Observed::absent(),
                    ekyte: Observed::present(record, cx.opts.ekyte_changed_at),
                    place: Place::default(),
                },
            )
            .await?;
        // Finish the new contact now (profile, onboarding) rather than wait for its webhook.
        match link.and_then(|l| l.ghl_id.filter(|_| l.state == LinkState::Linked)) {
            Some(c) => self.run(cx, &ghl_contact(&c)?).await,
            None => Ok(()),
        }
    }
}
