//! How each kind of entity is written to each side (DESIGN.md §2):
//!
//! | entity | GHL | eKyte |
//! |---|---|---|
//! | contact | contact (`POST/PUT/DELETE /contacts`, archive = tag) | workspace (create with `ExternalId`, rename, deactivate) |
//! | business | — (read only) | workspace name, when workspaces are per business |
//! | task | contact task (completed flag) | task (situation 10/30/40; delete = cancel) |
//! | note | contact note | board note on the workspace's board |

use std::collections::HashSet;

use async_trait::async_trait;

use domain::normalise::text_to_html;
use domain::{
    Business, Contact, EkyteNoteId, EkyteTaskId, EkyteWorkspaceId, EntityKind, ExternalRef,
    FieldChange, GhlContactId, GhlNoteId, GhlTaskId, Note, Selector, Side, Task, TaskStatus,
};
use ports::ApiError;
use ports::ekyte::{NoteContent, WorkspaceFound, WorkspaceTarget};

use crate::Ports;
use crate::cx::Cx;
use crate::error::SyncError;
use crate::settle::{Place, Writer};

fn bad_id(what: &str, raw: &str) -> SyncError {
    SyncError::Config(format!("stored {what} id {raw:?} is not valid"))
}

pub(crate) fn ghl_contact(raw: &str) -> Result<GhlContactId, SyncError> {
    GhlContactId::parse(raw).map_err(|_| bad_id("GHL contact", raw))
}

pub(crate) fn workspace(raw: &str) -> Result<EkyteWorkspaceId, SyncError> {
    EkyteWorkspaceId::parse(raw).map_err(|_| bad_id("eKyte workspace", raw))
}

fn parent_contact(at: &Place) -> Result<GhlContactId, SyncError> {
    at.ghl_parent
        .as_deref()
        .ok_or_else(|| SyncError::Config("a task or note needs its GHL contact".into()))
        .and_then(ghl_contact)
}

fn parent_workspace(at: &Place) -> Result<EkyteWorkspaceId, SyncError> {
    at.ekyte_parent
        .as_deref()
        .ok_or_else(|| SyncError::Config("a task needs its eKyte workspace".into()))
        .and_then(workspace)
}

fn unsupported(side: Side, what: &str) -> SyncError {
    let source = ApiError::unsupported(what.to_owned());
    match side {
        Side::Ghl => SyncError::Ghl {
            op: "write",
            source,
        },
        Side::Ekyte => SyncError::Ekyte {
            op: "write",
            source,
        },
    }
}

/// The GHL contact a workspace stands for, as its `ExternalId` names it.
fn contact_ref(cx: &Cx, contact: &str) -> Result<ExternalRef, SyncError> {
    Ok(ExternalRef::Contact {
        location: cx.scope.tenant.location_id.clone(),
        contact: ghl_contact(contact)?,
    })
}

/// The GHL business a workspace stands for, as its `ExternalId` names it.
fn business_ref(cx: &Cx, business: &str) -> Result<ExternalRef, SyncError> {
    Ok(ExternalRef::Business {
        location: cx.scope.tenant.location_id.clone(),
        business: domain::GhlBusinessId::parse(business)
            .map_err(|_| bad_id("GHL business", business))?,
    })
}

/// The workspace name of a contact.
pub(crate) fn workspace_name(c: &Contact) -> String {
    c.display_name()
}

pub(crate) struct ContactWriter<'a> {
    pub ports: &'a Ports,
}

#[async_trait]
impl Writer<Contact> for ContactWriter<'_> {
    async fn create(
        &self,
        cx: &Cx,
        side: Side,
        record: &Contact,
        source_id: &str,
        _at: &Place,
    ) -> Result<String, SyncError> {
        let scope = &cx.scope;
        match side {
            Side::Ekyte => {
                let ext = contact_ref(cx, source_id)?;
                let id = self
                    .ports
                    .ekyte
                    .create_workspace(scope, &workspace_name(record), &ext)
                    .await
                    .map_err(SyncError::ekyte("create workspace"))?;
                Ok(id.to_string())
            }
            Side::Ghl => {
                let mut c = record.clone();
                // A contact made from an eKyte workspace must stay selected, or its later
                // changes would be skipped.
                if let Selector::Tag { tag } = &scope.tenant.settings.selector {
                    c.tags = domain::normalise::tags(c.tags.iter().chain([tag]));
                }
                match self.ports.ghl.create_contact(scope, &c).await {
                    Ok(created) => Ok(created.id.to_string()),
                    // GHL's duplicate rule names the contact that already exists: link it.
                    Err(ApiError::Conflict {
                        existing_id: Some(id),
                        ..
                    }) => Ok(id),
                    Err(e) => Err(SyncError::ghl("create contact")(e)),
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn update(
        &self,
        cx: &Cx,
        side: Side,
        id: &str,
        counterpart: Option<&str>,
        changes: &[FieldChange],
        target: &Contact,
        _at: &Place,
    ) -> Result<(), SyncError> {
        match side {
            Side::Ekyte => {
                let target = WorkspaceTarget {
                    name: workspace_name(target),
                    active: true,
                    external: counterpart.map(|c| contact_ref(cx, c)).transpose()?,
                };
                self.ports
                    .ekyte
                    .update_workspace(&cx.scope, workspace(id)?, &target)
                    .await
                    .map_err(SyncError::ekyte("rename workspace"))
            }
            Side::Ghl => {
                // Tags change only through the tag endpoints (M6).
                let changes: Vec<FieldChange> = changes
                    .iter()
                    .filter(|c| c.field != "tags")
                    .cloned()
                    .collect();
                if changes.is_empty() {
                    return Ok(());
                }
                self.ports
                    .ghl
                    .update_contact(&cx.scope, &ghl_contact(id)?, &changes)
                    .await
                    .map(|_| ())
                    .map_err(SyncError::ghl("update contact"))
            }
        }
    }

    async fn set_status(
        &self,
        _cx: &Cx,
        side: Side,
        _id: &str,
        _status: TaskStatus,
        _at: &Place,
    ) -> Result<(), SyncError> {
        Err(unsupported(side, "contacts have no status"))
    }

    async fn delete(
        &self,
        cx: &Cx,
        side: Side,
        id: &str,
        current: Option<&Contact>,
        _at: &Place,
    ) -> Result<(), SyncError> {
        match side {
            // eKyte has no delete: a workspace is deactivated, under the name it has now.
            Side::Ekyte => {
                // Not read as present: already gone, which is what a delete wants.
                let Some(current) = current else {
                    return Err(SyncError::ekyte("deactivate workspace")(
                        ApiError::NotFound {
                            what: format!("eKyte workspace {id}"),
                        },
                    ));
                };
                let target = WorkspaceTarget {
                    name: workspace_name(current),
                    active: false,
                    external: cx.contact.clone().map(|contact| ExternalRef::Contact {
                        location: cx.scope.tenant.location_id.clone(),
                        contact,
                    }),
                };
                self.ports
                    .ekyte
                    .update_workspace(&cx.scope, workspace(id)?, &target)
                    .await
                    .map_err(SyncError::ekyte("deactivate workspace"))
            }
            Side::Ghl => self
                .ports
                .ghl
                .delete_contact(&cx.scope, &ghl_contact(id)?)
                .await
                .map_err(SyncError::ghl("delete contact")),
        }
    }

    async fn archive(
        &self,
        cx: &Cx,
        side: Side,
        id: &str,
        current: Option<&Contact>,
        at: &Place,
    ) -> Result<(), SyncError> {
        match side {
            Side::Ghl => {
                let tag = cx.scope.tenant.settings.policy.archive_tag.clone();
                self.ports
                    .ghl
                    .add_tags(&cx.scope, &ghl_contact(id)?, &[tag])
                    .await
                    .map(|_| ())
                    .map_err(SyncError::ghl("add archive tag"))
            }
            Side::Ekyte => self.delete(cx, side, id, current, at).await,
        }
    }

    async fn lookup(
        &self,
        cx: &Cx,
        side: Side,
        record: &Contact,
        source_id: &str,
        _at: &Place,
    ) -> Result<Option<String>, SyncError> {
        match side {
            Side::Ekyte => {
                let ext = contact_ref(cx, source_id)?;
                find_own_workspace(self.ports, cx, &ext, &workspace_name(record)).await
            }
            Side::Ghl => {
                if record.email.is_none() && record.phone.is_none() {
                    return Ok(None);
                }
                Ok(self
                    .ports
                    .ghl
                    .find_duplicate(&cx.scope, record.email.clone(), record.phone.clone())
                    .await
                    .map_err(SyncError::ghl("find duplicate"))?
                    .map(|id| id.to_string()))
            }
        }
    }
}

/// The workspace name of a business.
fn business_name(b: &Business, source_id: &str) -> String {
    b.name
        .clone()
        .unwrap_or_else(|| format!("Business {source_id}"))
}

/// The workspace an earlier create of `ext` may have made, when its outcome was lost: the
/// one carrying `ext` as its `ExternalId` where eKyte's reads show that field; where they do
/// not (no documented read shape does, API.md §3.3), the one active workspace called `name`
/// that no contact or business of the tenant links. Several such: a conflict for the
/// operator, rather than a guess or a second workspace.
async fn find_own_workspace(
    ports: &Ports,
    cx: &Cx,
    ext: &ExternalRef,
    name: &str,
) -> Result<Option<String>, SyncError> {
    let named = match ports
        .ekyte
        .find_workspace(&cx.scope, ext, name)
        .await
        .map_err(SyncError::ekyte("find workspace"))?
    {
        WorkspaceFound::ByExternalId(w) => return Ok(w.map(|w| w.id.to_string())),
        WorkspaceFound::Named(named) => named,
    };
    let tenant = &cx.scope.tenant.id;
    let mut free = Vec::new();
    for w in named {
        let id = w.id.to_string();
        let mut linked = false;
        for kind in [EntityKind::Contact, EntityKind::Business] {
            linked |= ports
                .links
                .by_ekyte(tenant, kind, &id)
                .await
                .map_err(SyncError::store("read workspace link"))?
                .is_some();
        }
        if !linked {
            free.push(id);
        }
    }
    match free.as_slice() {
        [] => Ok(None),
        [one] => {
            tracing::info!(external_id = %ext, workspace = %one, "a workspace of this name that nothing links is taken as the one a lost create made");
            Ok(Some(one.clone()))
        }
        many => Err(SyncError::Ekyte {
            op: "find workspace",
            source: ApiError::Conflict {
                message: format!(
                    "the create of {ext}'s workspace {name:?} may have happened, and {} \
                     workspaces of that name are linked to nothing ({}); link the right one \
                     by hand, or deactivate the others, then retry",
                    many.len(),
                    many.join(", ")
                ),
                existing_id: None,
            },
        }),
    }
}

/// Businesses only ever name their shared workspace (workspaces per business).
pub(crate) struct BusinessWriter<'a> {
    pub ports: &'a Ports,
}

#[async_trait]
impl Writer<Business> for BusinessWriter<'_> {
    async fn create(
        &self,
        cx: &Cx,
        side: Side,
        record: &Business,
        source_id: &str,
        _at: &Place,
    ) -> Result<String, SyncError> {
        if side == Side::Ghl {
            return Err(unsupported(side, "businesses are not created in GHL"));
        }
        let ext = business_ref(cx, source_id)?;
        let name = business_name(record, source_id);
        self.ports
            .ekyte
            .create_workspace(&cx.scope, &name, &ext)
            .await
            .map(|id| id.to_string())
            .map_err(SyncError::ekyte("create workspace"))
    }

    #[allow(clippy::too_many_arguments)]
    async fn update(
        &self,
        cx: &Cx,
        side: Side,
        id: &str,
        counterpart: Option<&str>,
        _changes: &[FieldChange],
        target: &Business,
        _at: &Place,
    ) -> Result<(), SyncError> {
        if side == Side::Ghl {
            return Err(unsupported(side, "businesses are read-only in GHL here"));
        }
        let target = WorkspaceTarget {
            name: target.name.clone().unwrap_or_default(),
            active: true,
            external: counterpart.map(|b| business_ref(cx, b)).transpose()?,
        };
        self.ports
            .ekyte
            .update_workspace(&cx.scope, workspace(id)?, &target)
            .await
            .map_err(SyncError::ekyte("rename workspace"))
    }

    async fn set_status(
        &self,
        _: &Cx,
        side: Side,
        _: &str,
        _: TaskStatus,
        _: &Place,
    ) -> Result<(), SyncError> {
        Err(unsupported(side, "businesses have no status"))
    }

    async fn delete(
        &self,
        _: &Cx,
        side: Side,
        _: &str,
        _: Option<&Business>,
        _: &Place,
    ) -> Result<(), SyncError> {
        Err(unsupported(side, "business workspaces are not deleted"))
    }

    async fn archive(
        &self,
        _: &Cx,
        side: Side,
        _: &str,
        _: Option<&Business>,
        _: &Place,
    ) -> Result<(), SyncError> {
        Err(unsupported(side, "business workspaces are not archived"))
    }

    async fn lookup(
        &self,
        cx: &Cx,
        side: Side,
        record: &Business,
        source_id: &str,
        _at: &Place,
    ) -> Result<Option<String>, SyncError> {
        if side == Side::Ghl {
            return Ok(None);
        }
        let ext = business_ref(cx, source_id)?;
        find_own_workspace(self.ports, cx, &ext, &business_name(record, source_id)).await
    }
}

pub(crate) struct TaskWriter<'a> {
    pub ports: &'a Ports,
}

fn ekyte_task(raw: &str) -> Result<EkyteTaskId, SyncError> {
    EkyteTaskId::parse(raw).map_err(|_| bad_id("eKyte task", raw))
}

fn ghl_task(raw: &str) -> Result<GhlTaskId, SyncError> {
    GhlTaskId::parse(raw).map_err(|_| bad_id("GHL task", raw))
}

/// The task an earlier attempt to create `want` may have made, among `candidates` (the
/// target side's tasks under the parent that no link holds yet, normalised): the one with
/// the same title and due; failing that, the same title; failing that, the same due.
///
/// The looser matches matter because the look comes late: a claim is taken over only when
/// stale, and by then a person may have moved the new task's due date or renamed it. Missing
/// it creates a duplicate, which the other direction then copies back as a second task.
fn earlier_create(want: &Task, candidates: &[(String, Task)]) -> Option<String> {
    let by = |same: &dyn Fn(&Task) -> bool| {
        candidates
            .iter()
            .find(|(_, t)| same(t))
            .map(|(id, _)| id.clone())
    };
    let titled = |t: &Task| want.title.is_some() && t.title == want.title;
    let due = |t: &Task| want.due.is_some() && t.due == want.due;
    by(&|t| titled(t) && due(t))
        .or_else(|| by(&titled))
        .or_else(|| by(&due))
}

#[async_trait]
impl Writer<Task> for TaskWriter<'_> {
    async fn create(
        &self,
        cx: &Cx,
        side: Side,
        record: &Task,
        _source_id: &str,
        at: &Place,
    ) -> Result<String, SyncError> {
        let scope = &cx.scope;
        match side {
            Side::Ekyte => {
                let ws = parent_workspace(at)?;
                let id = self
                    .ports
                    .ekyte
                    .create_task(scope, ws, record)
                    .await
                    .map_err(SyncError::ekyte("create task"))?;
                // The automation API creates tasks active; a finished one is closed after.
                if record.status != TaskStatus::Open {
                    self.ports
                        .ekyte
                        .set_task_status(scope, id, record.status)
                        .await
                        .map_err(SyncError::ekyte("set task status"))?;
                }
                Ok(id.to_string())
            }
            Side::Ghl => {
                let contact = parent_contact(at)?;
                self.ports
                    .ghl
                    .create_task(scope, &contact, record)
                    .await
                    .map(|t| t.id.to_string())
                    .map_err(SyncError::ghl("create task"))
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn update(
        &self,
        cx: &Cx,
        side: Side,
        id: &str,
        _counterpart: Option<&str>,
        changes: &[FieldChange],
        target: &Task,
        at: &Place,
    ) -> Result<(), SyncError> {
        match side {
            Side::Ekyte => self
                .ports
                .ekyte
                .update_task(&cx.scope, ekyte_task(id)?, changes, target)
                .await
                .map_err(SyncError::ekyte("update task")),
            Side::Ghl => self
                .ports
                .ghl
                .update_task(&cx.scope, &parent_contact(at)?, &ghl_task(id)?, changes)
                .await
                .map(|_| ())
                .map_err(SyncError::ghl("update task")),
        }
    }

    async fn set_status(
        &self,
        cx: &Cx,
        side: Side,
        id: &str,
        status: TaskStatus,
        at: &Place,
    ) -> Result<(), SyncError> {
        match side {
            Side::Ekyte => self
                .ports
                .ekyte
                .set_task_status(&cx.scope, ekyte_task(id)?, status)
                .await
                .map_err(SyncError::ekyte("set task status")),
            Side::Ghl => {
                let contact = parent_contact(at)?;
                let task = ghl_task(id)?;
                if status == TaskStatus::Cancelled
                    && cx.scope.tenant.settings.policy.cancelled_task_in_ghl
                        == domain::CancelledTaskAction::Delete
                {
                    return self
                        .ports
                        .ghl
                        .delete_task(&cx.scope, &contact, &task)
                        .await
                        .map_err(SyncError::ghl("delete task"));
                }
                self.ports
                    .ghl
                    .set_task_completed(&cx.scope, &contact, &task, status != TaskStatus::Open)
                    .await
                    .map(|_| ())
                    .map_err(SyncError::ghl("complete task"))
            }
        }
    }

    async fn delete(
        &self,
        cx: &Cx,
        side: Side,
        id: &str,
        _: Option<&Task>,
        at: &Place,
    ) -> Result<(), SyncError> {
        match side {
            // eKyte has no delete: the task is cancelled.
            Side::Ekyte => {
                self.set_status(cx, side, id, TaskStatus::Cancelled, at)
                    .await
            }
            Side::Ghl => self
                .ports
                .ghl
                .delete_task(&cx.scope, &parent_contact(at)?, &ghl_task(id)?)
                .await
                .map_err(SyncError::ghl("delete task")),
        }
    }

    async fn archive(
        &self,
        cx: &Cx,
        side: Side,
        id: &str,
        _: Option<&Task>,
        at: &Place,
    ) -> Result<(), SyncError> {
        self.set_status(cx, side, id, TaskStatus::Completed, at)
            .await
    }

    async fn lookup(
        &self,
        cx: &Cx,
        side: Side,
        record: &Task,
        _source_id: &str,
        at: &Place,
    ) -> Result<Option<String>, SyncError> {
        let ctx = cx.scope.tenant.settings.normalise_ctx();
        let want = domain::Record::normalised(record, &ctx);
        let tenant = &cx.scope.tenant.id;
        let candidates: Vec<(String, Task)> = match side {
            Side::Ekyte => {
                let ws = parent_workspace(at)?;
                let held = self
                    .ports
                    .links
                    .by_ekyte_parent(tenant, EntityKind::Task, &ws.to_string())
                    .await
                    .map_err(SyncError::store("read task links"))?;
                let held: HashSet<String> = held.into_iter().filter_map(|l| l.ekyte_id).collect();
                self.ports
                    .ekyte
                    .list_tasks(&cx.scope, ws, false)
                    .await
                    .map_err(SyncError::ekyte("list tasks"))?
                    .into_iter()
                    .map(|t| (t.id.to_string(), domain::Record::normalised(&t.task, &ctx)))
                    .filter(|(id, _)| !held.contains(id))
                    .collect()
            }
            Side::Ghl => {
                let contact = parent_contact(at)?;
                let held = self
                    .ports
                    .links
                    .by_ghl_parent(tenant, EntityKind::Task, contact.as_str())
                    .await
                    .map_err(SyncError::store("read task links"))?;
                let held: HashSet<String> = held.into_iter().filter_map(|l| l.ghl_id).collect();
                self.ports
                    .ghl
                    .list_tasks(&cx.scope, &contact)
                    .await
                    .map_err(SyncError::ghl("list tasks"))?
                    .into_iter()
                    .map(|t| (t.id.to_string(), domain::Record::normalised(&t.task, &ctx)))
                    .filter(|(id, _)| !held.contains(id))
                    .collect()
            }
        };
        Ok(earlier_create(&want, &candidates))
    }
}

/// GHL notes become board notes; the board is passed as the eKyte parent.
pub(crate) struct NoteWriter<'a> {
    pub ports: &'a Ports,
}

/// A board note's content for a canonical note.
pub(crate) fn note_content(n: &Note) -> NoteContent {
    let title = n.title.clone().unwrap_or_else(|| {
        let first = n
            .body
            .as_deref()
            .and_then(|b| b.lines().next())
            .unwrap_or("Note from GHL");
        first.chars().take(80).collect()
    });
    NoteContent {
        title,
        html: n.body.as_deref().map(text_to_html).unwrap_or_default(),
    }
}

fn board(at: &Place) -> Result<domain::EkyteBoardId, SyncError> {
    let raw = at
        .ekyte_parent
        .as_deref()
        .ok_or_else(|| SyncError::Config("a board note needs its board".into()))?;
    domain::EkyteBoardId::parse(raw).map_err(|_| bad_id("eKyte board", raw))
}

#[async_trait]
impl Writer<Note> for NoteWriter<'_> {
    async fn create(
        &self,
        cx: &Cx,
        side: Side,
        record: &Note,
        _source_id: &str,
        at: &Place,
    ) -> Result<String, SyncError> {
        match side {
            Side::Ekyte => self
                .ports
                .ekyte
                .create_note(&cx.scope, board(at)?, &note_content(record))
                .await
                .map(|id| id.to_string())
                .map_err(SyncError::ekyte("create board note")),
            Side::Ghl => self
                .ports
                .ghl
                .create_note(&cx.scope, &parent_contact(at)?, record)
                .await
                .map(|n| n.id.to_string())
                .map_err(SyncError::ghl("create note")),
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn update(
        &self,
        cx: &Cx,
        side: Side,
        id: &str,
        _counterpart: Option<&str>,
        _changes: &[FieldChange],
        target: &Note,
        at: &Place,
    ) -> Result<(), SyncError> {
        match side {
            Side::Ekyte => {
                let note = EkyteNoteId::parse(id).map_err(|_| bad_id("eKyte note", id))?;
                self.ports
                    .ekyte
                    .update_note(&cx.scope, note, &note_content(target))
                    .await
                    .map_err(SyncError::ekyte("update board note"))
            }
            Side::Ghl => {
                let note = GhlNoteId::parse(id).map_err(|_| bad_id("GHL note", id))?;
                self.ports
                    .ghl
                    .update_note(&cx.scope, &parent_contact(at)?, &note, target)
                    .await
                    .map(|_| ())
                    .map_err(SyncError::ghl("update note"))
            }
        }
    }

    async fn set_status(
        &self,
        _: &Cx,
        side: Side,
        _: &str,
        _: TaskStatus,
        _: &Place,
    ) -> Result<(), SyncError> {
        Err(unsupported(side, "notes have no status"))
    }

    async fn delete(
        &self,
        cx: &Cx,
        side: Side,
        id: &str,
        _: Option<&Note>,
        at: &Place,
    ) -> Result<(), SyncError> {
        match side {
            Side::Ekyte => Err(unsupported(side, "eKyte board notes cannot be deleted")),
            Side::Ghl => {
                let note = GhlNoteId::parse(id).map_err(|_| bad_id("GHL note", id))?;
                self.ports
                    .ghl
                    .delete_note(&cx.scope, &parent_contact(at)?, &note)
                    .await
                    .map_err(SyncError::ghl("delete note"))
            }
        }
    }

    async fn archive(
        &self,
        _: &Cx,
        side: Side,
        _: &str,
        _: Option<&Note>,
        _: &Place,
    ) -> Result<(), SyncError> {
        Err(unsupported(side, "notes are not archived"))
    }

    /// After a create whose outcome was not learnt (a worker died, the database went away
    /// before the link was stored), find the note it may have written: the newest one with
    /// the same title (eKyte lists no content) or body (GHL) that no other note is linked to.
    async fn lookup(
        &self,
        cx: &Cx,
        side: Side,
        record: &Note,
        _source_id: &str,
        at: &Place,
    ) -> Result<Option<String>, SyncError> {
        let candidates: Vec<String> = match side {
            Side::Ekyte => {
                let title = note_content(record).title;
                let notes = match self.ports.ekyte.list_notes(&cx.scope, board(at)?).await {
                    Ok(notes) => notes,
                    // Without an MCP token nothing reads notes: the note may be written
                    // twice (audited), never lost.
                    Err(ApiError::Unsupported { .. }) => return Ok(None),
                    Err(e) => return Err(SyncError::ekyte("list board notes")(e)),
                };
                let mut same: Vec<_> = notes
                    .into_iter()
                    .filter(|n| n.title.trim() == title.trim())
                    .collect();
                same.sort_by_key(|n| std::cmp::Reverse(n.id));
                same.into_iter().map(|n| n.id.to_string()).collect()
            }
            Side::Ghl => {
                let want = record.body.as_deref().map(str::trim);
                let mut same: Vec<_> = self
                    .ports
                    .ghl
                    .list_notes(&cx.scope, &parent_contact(at)?)
                    .await
                    .map_err(SyncError::ghl("list notes"))?
                    .into_iter()
                    .filter(|n| n.note.body.as_deref().map(str::trim) == want)
                    .collect();
                same.sort_by_key(|n| std::cmp::Reverse(n.note.created));
                same.into_iter().map(|n| n.id.to_string()).collect()
            }
        };
        for id in candidates {
            let linked = match side {
                Side::Ekyte => {
                    self.ports
                        .links
                        .by_ekyte(&cx.scope.tenant.id, EntityKind::Note, &id)
                }
                Side::Ghl => self
                    .ports
                    .links
                    .by_ghl(&cx.scope.tenant.id, EntityKind::Note, &id),
            }
            .await
            .map_err(SyncError::store("read note link"))?;
            if linked.is_none() {
                return Ok(Some(id));
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;

    fn task(title: &str, day: u32) -> Task {
        Task {
            title: Some(title.into()),
            due: Some(Utc.with_ymd_and_hms(2026, 6, day, 12, 0, 0).unwrap()),
            ..Task::default()
        }
    }

    fn pick(want: &Task, candidates: &[(&str, Task)]) -> Option<String> {
        let owned: Vec<(String, Task)> = candidates
            .iter()
            .map(|(id, t)| ((*id).to_owned(), t.clone()))
            .collect();
        earlier_create(want, &owned)
    }

    #[test]
    fn an_earlier_create_is_found_by_title_and_due_first_then_title_then_due() {
        let want = task("Send proposal", 1);
        let exact = ("exact", task("Send proposal", 1));
        let titled = ("titled", task("Send proposal", 9));
        let dated = ("dated", task("Renamed", 1));
        let neither = ("neither", task("Other", 2));
        let all = [neither.clone(), dated.clone(), titled.clone(), exact];
        assert_eq!(pick(&want, &all).as_deref(), Some("exact"));
        let no_exact = [neither.clone(), dated.clone(), titled];
        assert_eq!(pick(&want, &no_exact).as_deref(), Some("titled"));
        assert_eq!(
            pick(&want, &[neither.clone(), dated]).as_deref(),
            Some("dated")
        );
        assert_eq!(pick(&want, &[neither]), None);
    }

    #[test]
    fn a_task_without_title_or_due_matches_nothing_by_the_missing_field() {
        let want = Task::default();
        assert_eq!(pick(&want, &[("blank", Task::default())]), None);
    }
}
