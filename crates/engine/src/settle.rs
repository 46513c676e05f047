//! Settling one entity: reconcile, apply the plan through a [`Writer`], store the link.
//!
//! This is where "exactly one create" happens: before creating the counterpart of a record,
//! the link is claimed (unique on tenant + kind + source id). A claim taken over from a
//! crashed worker, or retried after an unknown outcome, looks the record up before creating.
//!
//! Failure handling, per write:
//! - `Unsupported` (eKyte credentials without an MCP token): audited as `unsupported`, not
//!   retried; the link keeps its old base so nothing is mistaken for a change later;
//! - eKyte `NotFound` on an update or status change: the record is re-created and relinked;
//! - a create refused as `Invalid` (a task without a due date, say): audited as `failed` with
//!   GHL's or eKyte's message, the claim released, and the rest of the contact goes on;
//! - anything else is returned to the worker, which classifies it (retry or dead-letter). A
//!   create that may have happened keeps its claim, so the retry looks it up first.

use std::time::Duration;

use async_trait::async_trait;

use domain::{
    Base, EntityKind, EntityPolicy, FieldChange, Fingerprint, LastWritten, Observed, Record, Side,
    TaskStatus, WriteOp, reconcile,
};
use ports::ApiError;
use ports::store::{
    AuditAction, BaseRecord, Claim, ClaimKey, Link, LinkState, LinkStore, LinkUpdate,
};

use crate::cx::{Cx, Note};
use crate::error::SyncError;

/// Records that can be kept as a link's base.
pub(crate) trait Stored: Record {
    fn to_base(&self) -> BaseRecord;
    fn from_base(base: &BaseRecord) -> Option<Self>;
}

impl Stored for domain::Contact {
    fn to_base(&self) -> BaseRecord {
        BaseRecord::Contact(Box::new(self.clone()))
    }
    fn from_base(base: &BaseRecord) -> Option<Self> {
        match base {
            BaseRecord::Contact(c) => Some((**c).clone()),
            _ => None,
        }
    }
}

impl Stored for domain::Task {
    fn to_base(&self) -> BaseRecord {
        BaseRecord::Task(self.clone())
    }
    fn from_base(base: &BaseRecord) -> Option<Self> {
        match base {
            BaseRecord::Task(t) => Some(t.clone()),
            _ => None,
        }
    }
}

impl Stored for domain::Note {
    fn to_base(&self) -> BaseRecord {
        BaseRecord::Note(self.clone())
    }
    fn from_base(base: &BaseRecord) -> Option<Self> {
        match base {
            BaseRecord::Note(n) => Some(n.clone()),
            _ => None,
        }
    }
}

impl Stored for domain::Business {
    fn to_base(&self) -> BaseRecord {
        BaseRecord::Business(self.clone())
    }
    fn from_base(base: &BaseRecord) -> Option<Self> {
        match base {
            BaseRecord::Business(b) => Some(b.clone()),
            _ => None,
        }
    }
}

/// Where an entity lives: its parent on each side (a task's contact and workspace…).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Place {
    pub ghl_parent: Option<String>,
    pub ekyte_parent: Option<String>,
}

/// How one kind of entity is written to each side.
#[async_trait]
pub(crate) trait Writer<R: Record>: Send + Sync {
    /// Create the record on `side`, as the counterpart of `source_id` on the other side;
    /// returns its id on `side`.
    async fn create(
        &self,
        cx: &Cx,
        side: Side,
        record: &R,
        source_id: &str,
        at: &Place,
    ) -> Result<String, SyncError>;

    /// Change `changes` on `side`; `target` is the whole record as `side` should hold it
    /// (for vendors whose update replaces everything), `counterpart` its id on the other side.
    #[allow(clippy::too_many_arguments)]
    async fn update(
        &self,
        cx: &Cx,
        side: Side,
        id: &str,
        counterpart: Option<&str>,
        changes: &[FieldChange],
        target: &R,
        at: &Place,
    ) -> Result<(), SyncError>;

    async fn set_status(
        &self,
        cx: &Cx,
        side: Side,
        id: &str,
        status: TaskStatus,
        at: &Place,
    ) -> Result<(), SyncError>;

    /// Delete the record `id` on `side`; `current` is the record as `side` was last read to
    /// hold it (a vendor without deletes may need it whole to mark it gone).
    async fn delete(
        &self,
        cx: &Cx,
        side: Side,
        id: &str,
        current: Option<&R>,
        at: &Place,
    ) -> Result<(), SyncError>;

    /// Archive the record `id` on `side`; `current` as for [`Writer::delete`].
    async fn archive(
        &self,
        cx: &Cx,
        side: Side,
        id: &str,
        current: Option<&R>,
        at: &Place,
    ) -> Result<(), SyncError>;

    /// Find a record on `side` that a create may already have made (after a crash or an
    /// unknown outcome).
    async fn lookup(
        &self,
        cx: &Cx,
        side: Side,
        record: &R,
        source_id: &str,
        at: &Place,
    ) -> Result<Option<String>, SyncError>;
}

/// One entity to settle.
pub(crate) struct Subject<R> {
    pub kind: EntityKind,
    pub link: Option<Link>,
    pub ghl_id: Option<String>,
    pub ekyte_id: Option<String>,
    /// Both normalised.
    pub ghl: Observed<R>,
    pub ekyte: Observed<R>,
    pub place: Place,
}

pub(crate) struct Settler<'a> {
    pub links: &'a dyn LinkStore,
    pub claim_stale_after: Duration,
}

fn action_of<R>(op: &WriteOp<R>) -> AuditAction {
    match op {
        WriteOp::Create(_) => AuditAction::Create,
        WriteOp::Update(_) => AuditAction::Update,
        WriteOp::Complete => AuditAction::Complete,
        WriteOp::Cancel => AuditAction::Cancel,
        WriteOp::Reopen => AuditAction::Reopen,
        WriteOp::Delete => AuditAction::Delete,
        WriteOp::Archive => AuditAction::Archive,
        WriteOp::Skip(_) => AuditAction::Skip,
    }
}

fn fields_of<R: Record>(op: &WriteOp<R>) -> Vec<String> {
    match op {
        WriteOp::Update(changes) => changes.iter().map(|c| c.field.to_owned()).collect(),
        WriteOp::Create(r) => R::field_names()
            .iter()
            .filter(|f| !r.get(f).is_empty())
            .map(|f| (*f).to_owned())
            .collect(),
        WriteOp::Complete | WriteOp::Cancel | WriteOp::Reopen => vec!["status".to_owned()],
        _ => vec![],
    }
}

fn status_of<R>(op: &WriteOp<R>) -> Option<TaskStatus> {
    match op {
        WriteOp::Complete => Some(TaskStatus::Completed),
        WriteOp::Cancel => Some(TaskStatus::Cancelled),
        WriteOp::Reopen => Some(TaskStatus::Open),
        _ => None,
    }
}

struct Ids {
    ghl: Option<String>,
    ekyte: Option<String>,
}

impl Ids {
    fn get(&self, side: Side) -> Option<&str> {
        match side {
            Side::Ghl => self.ghl.as_deref(),
            Side::Ekyte => self.ekyte.as_deref(),
        }
    }

    fn set(&mut self, side: Side, id: String) {
        match side {
            Side::Ghl => self.ghl = Some(id),
            Side::Ekyte => self.ekyte = Some(id),
        }
    }
}

/// A refusal that is about the tenant's access, not about one record's data: no other write
/// of the message can succeed either.
fn refused_for_the_tenant(e: &SyncError) -> bool {
    matches!(
        e.api(),
        Some(ApiError::Unauthorized { .. } | ApiError::Forbidden { .. })
    )
}

/// A create's error that certainly created nothing.
fn certainly_not_created(e: &SyncError) -> bool {
    matches!(
        e.api(),
        Some(
            ApiError::Invalid { .. }
                | ApiError::Unsupported { .. }
                | ApiError::Unauthorized { .. }
                | ApiError::Forbidden { .. }
                | ApiError::Conflict { .. }
        )
    )
}

impl Settler<'_> {
    /// Reconcile and apply. Returns the link as stored afterwards.
    pub async fn settle<R: Stored, W: Writer<R>>(
        &self,
        cx: &mut Cx,
        policy: &EntityPolicy,
        writer: &W,
        s: Subject<R>,
    ) -> Result<Option<Link>, SyncError> {
        let base = match &s.link {
            None => Base::Unlinked,
            Some(l) => match l.state {
                LinkState::Claimed => Base::Unlinked,
                LinkState::Deleted => Base::Tombstone,
                LinkState::Linked => Base::Linked(R::from_base(&l.base).unwrap_or_else(R::empty)),
            },
        };
        let last = LastWritten {
            ghl: s.link.as_ref().and_then(|l| l.ghl_fp),
            ekyte: s.link.as_ref().and_then(|l| l.ekyte_fp),
        };
        let r = reconcile(&base, &s.ghl, &s.ekyte, &last, policy);
        let mut ids = Ids {
            ghl: s
                .ghl_id
                .clone()
                .or_else(|| s.link.as_ref().and_then(|l| l.ghl_id.clone())),
            ekyte: s
                .ekyte_id
                .clone()
                .or_else(|| s.link.as_ref().and_then(|l| l.ekyte_id.clone())),
        };

        for c in &r.conflicts {
            let reason = match c.kind {
                domain::ConflictKind::BothChanged => format!(
                    "both sides changed {} (ghl {}, ekyte {}); {} wins by {:?}",
                    c.field, c.ghl, c.ekyte, c.winner, c.rule
                ),
                domain::ConflictKind::NotOwner => format!(
                    "{} changed {}, which {} owns; reverted to {}",
                    c.winner.other(),
                    c.field,
                    c.winner,
                    if c.winner == Side::Ghl {
                        &c.ghl
                    } else {
                        &c.ekyte
                    }
                ),
            };
            cx.record(Note {
                target: Some(c.winner.other()),
                kind: s.kind,
                action: AuditAction::Conflict,
                ghl_id: ids.ghl.as_deref(),
                ekyte_id: ids.ekyte.as_deref(),
                fields: vec![c.field.to_owned()],
                reason: Some(reason),
            });
        }

        if cx.dry_run() {
            for side in [Side::Ghl, Side::Ekyte] {
                for op in r.ops(side) {
                    cx.record(Note {
                        target: Some(side),
                        kind: s.kind,
                        action: action_of(op),
                        ghl_id: ids.ghl.as_deref(),
                        ekyte_id: ids.ekyte.as_deref(),
                        fields: fields_of(op),
                        reason: match op {
                            WriteOp::Skip(reason) => Some(reason.to_string()),
                            _ => Some("dry run: planned, not written".to_owned()),
                        },
                    });
                }
            }
            return Ok(s.link);
        }

        let mut link = s.link.clone();
        let mut unsupported = false;
        let mut created = false;
        let merged = r.merged.record().cloned();

        for side in [Side::Ghl, Side::Ekyte] {
            for op in r.ops(side) {
                let action = action_of(op);
                let fields = fields_of(op);
                let outcome = match op {
                    WriteOp::Skip(reason) => {
                        cx.skip(
                            s.kind,
                            ids.ghl.as_deref(),
                            ids.ekyte.as_deref(),
                            reason.to_string(),
                        );
                        continue;
                    }
                    WriteOp::Create(record) => {
                        match self
                            .create(cx, writer, s.kind, side, record, &ids, &s.place)
                            .await?
                        {
                            Created::New(l, id, how) => {
                                if how.is_none() {
                                    // Made now, not found after an earlier attempt: it holds
                                    // nothing this run did not put there.
                                    cx.made_new(s.kind, side, &id);
                                }
                                ids.set(side, id);
                                link = Some(l);
                                created = true;
                                cx.record(Note {
                                    target: Some(side),
                                    kind: s.kind,
                                    action,
                                    ghl_id: ids.ghl.as_deref(),
                                    ekyte_id: ids.ekyte.as_deref(),
                                    fields,
                                    reason: how,
                                });
                                continue;
                            }
                            Created::Done(l) => {
                                cx.skip(
                                    s.kind,
                                    ids.ghl.as_deref(),
                                    ids.ekyte.as_deref(),
                                    "already linked by another worker",
                                );
                                return Ok(Some(l));
                            }
                            Created::Refused(e) => {
                                if e.is_unsupported() {
                                    self.unsupported(cx, s.kind, side, &ids, &e);
                                } else if refused_for_the_tenant(&e) {
                                    // Nothing of this message can succeed until an operator
                                    // fixes the credentials: the worker dead-letters it, to
                                    // be replayed then.
                                    self.failed(cx, s.kind, side, &ids, &e);
                                    return Err(e);
                                } else {
                                    // This record alone was refused (its data): recorded in
                                    // the audit, and its siblings still sync.
                                    self.failed(cx, s.kind, side, &ids, &e);
                                }
                                return Ok(link);
                            }
                        }
                    }
                    WriteOp::Update(changes) => {
                        let Some(id) = ids.get(side).map(str::to_owned) else {
                            cx.skip(
                                s.kind,
                                ids.ghl.as_deref(),
                                ids.ekyte.as_deref(),
                                format!("no counterpart on {side} to update"),
                            );
                            continue;
                        };
                        let target = merged
                            .as_ref()
                            .map(|m| m.project(side))
                            .unwrap_or_else(R::empty);
                        let counterpart = ids.get(side.other());
                        writer
                            .update(cx, side, &id, counterpart, changes, &target, &s.place)
                            .await
                    }
                    WriteOp::Complete | WriteOp::Cancel | WriteOp::Reopen => {
                        let Some(id) = ids.get(side).map(str::to_owned) else {
                            continue;
                        };
                        let status = status_of(op).unwrap_or(TaskStatus::Open);
                        writer.set_status(cx, side, &id, status, &s.place).await
                    }
                    WriteOp::Delete | WriteOp::Archive => {
                        let Some(id) = ids.get(side).map(str::to_owned) else {
                            continue;
                        };
                        let current = match side {
                            Side::Ghl => s.ghl.record.as_ref(),
                            Side::Ekyte => s.ekyte.record.as_ref(),
                        };
                        let res = if matches!(op, WriteOp::Delete) {
                            writer.delete(cx, side, &id, current, &s.place).await
                        } else {
                            writer.archive(cx, side, &id, current, &s.place).await
                        };
                        // Already gone is what a delete wants.
                        match res {
                            Err(e) if e.is_not_found() => Ok(()),
                            other => other,
                        }
                    }
                };
                match outcome {
                    Ok(()) => cx.record(Note {
                        target: Some(side),
                        kind: s.kind,
                        action,
                        ghl_id: ids.ghl.as_deref(),
                        ekyte_id: ids.ekyte.as_deref(),
                        fields,
                        reason: None,
                    }),
                    Err(e) if e.is_unsupported() => {
                        unsupported = true;
                        self.unsupported(cx, s.kind, side, &ids, &e);
                    }
                    Err(e) if e.is_not_found() && side == Side::Ekyte => {
                        // The eKyte record is gone (eKyte has no delete API, so someone
                        // removed it by hand): create it again and relink.
                        let (Some(m), Some(source)) = (&merged, ids.ghl.clone()) else {
                            continue;
                        };
                        let record = m.project(Side::Ekyte);
                        let id = writer
                            .create(cx, Side::Ekyte, &record, &source, &s.place)
                            .await?;
                        if R::field_names().contains(&"status")
                            && let domain::FieldValue::Status(st) = record.get("status")
                            && st != TaskStatus::Open
                        {
                            writer
                                .set_status(cx, Side::Ekyte, &id, st, &s.place)
                                .await?;
                        }
                        let old = ids.ekyte.clone();
                        cx.made_new(s.kind, Side::Ekyte, &id);
                        ids.set(Side::Ekyte, id);
                        cx.record(Note {
                            target: Some(Side::Ekyte),
                            kind: s.kind,
                            action: AuditAction::Create,
                            ghl_id: ids.ghl.as_deref(),
                            ekyte_id: ids.ekyte.as_deref(),
                            fields: fields_of(&WriteOp::Create(record)),
                            reason: Some(format!(
                                "re-created: eKyte record {} was not found",
                                old.unwrap_or_default()
                            )),
                        });
                    }
                    Err(e) if e.is_not_found() => {
                        // The GHL record vanished under us; its delete event will follow.
                        self.failed(cx, s.kind, side, &ids, &e);
                        return Ok(link);
                    }
                    Err(e) => return Err(e),
                }
            }
        }

        self.store(
            cx,
            s.kind,
            link,
            r.merged,
            &ids,
            &s.place,
            unsupported && !created,
        )
        .await
    }

    fn unsupported(&self, cx: &mut Cx, kind: EntityKind, side: Side, ids: &Ids, e: &SyncError) {
        cx.record(Note {
            target: Some(side),
            kind,
            action: AuditAction::Unsupported,
            ghl_id: ids.ghl.as_deref(),
            ekyte_id: ids.ekyte.as_deref(),
            fields: vec![],
            reason: Some(e.chain().join(": ")),
        });
    }

    fn failed(&self, cx: &mut Cx, kind: EntityKind, side: Side, ids: &Ids, e: &SyncError) {
        cx.record(Note {
            target: Some(side),
            kind,
            action: AuditAction::Failed,
            ghl_id: ids.ghl.as_deref(),
            ekyte_id: ids.ekyte.as_deref(),
            fields: vec![],
            reason: Some(e.chain().join(": ")),
        });
    }

    #[allow(clippy::too_many_arguments)]
    async fn create<R: Stored, W: Writer<R>>(
        &self,
        cx: &Cx,
        writer: &W,
        kind: EntityKind,
        side: Side,
        record: &R,
        ids: &Ids,
        place: &Place,
    ) -> Result<Created, SyncError> {
        let source = side.other();
        let Some(source_id) = ids.get(source) else {
            return Err(SyncError::Config(format!(
                "cannot create a {kind} on {side}: its {source} id is unknown"
            )));
        };
        let key = ClaimKey {
            tenant: cx.scope.tenant.id.clone(),
            kind,
            side: source,
            id: source_id.to_owned(),
            ghl_parent: place.ghl_parent.clone(),
            ekyte_parent: place.ekyte_parent.clone(),
            pending: record.to_base(),
        };
        let claim = self
            .links
            .claim(&key, &cx.owner, self.claim_stale_after)
            .await
            .map_err(SyncError::store("claim link"))?;
        let (held, look_first) = match claim {
            Claim::Claimed(l) => (l, false),
            Claim::TakenOver(l) => (l, true),
            Claim::AlreadyLinked(l) => return Ok(Created::Done(l)),
            Claim::ClaimedByOther { by, since } => {
                if by == cx.owner {
                    // Our own earlier attempt, whose outcome we did not learn: retake it.
                    let l = self
                        .links
                        .claim(&key, &cx.owner, Duration::ZERO)
                        .await
                        .map_err(SyncError::store("retake claim"))?;
                    match l {
                        Claim::Claimed(l) | Claim::TakenOver(l) => (l, true),
                        Claim::AlreadyLinked(l) => return Ok(Created::Done(l)),
                        Claim::ClaimedByOther { by, since } => {
                            return Err(SyncError::claimed(
                                format!(
                                    "{kind} {source_id} is being created by {by} since {since}"
                                ),
                                since,
                                self.claim_stale_after,
                            ));
                        }
                    }
                } else {
                    return Err(SyncError::claimed(
                        format!("{kind} {source_id} is being created by {by} since {since}"),
                        since,
                        self.claim_stale_after,
                    ));
                }
            }
        };
        // The record as the earlier attempt sent it, when its claim kept it: a lost create is
        // found by what it wrote (the name or title may have changed since).
        let sent = R::from_base(&held.base);
        let found = if look_first {
            writer
                .lookup(cx, side, sent.as_ref().unwrap_or(record), source_id, place)
                .await?
        } else {
            None
        };
        let how = found
            .as_ref()
            .map(|_| "found after an earlier attempt whose outcome was unknown".to_owned());
        let id = match found {
            Some(id) => id,
            None => match writer.create(cx, side, record, source_id, place).await {
                Ok(id) => id,
                Err(e) if certainly_not_created(&e) => {
                    self.links
                        .release(held.id)
                        .await
                        .map_err(SyncError::store("release claim"))?;
                    return Ok(Created::Refused(e));
                }
                // The outcome may be unknown: keep the claim so a retry looks first.
                Err(e) => return Err(e),
            },
        };
        Ok(Created::New(held, id, how))
    }

    #[allow(clippy::too_many_arguments)]
    async fn store<R: Stored>(
        &self,
        cx: &mut Cx,
        kind: EntityKind,
        link: Option<Link>,
        merged: Base<R>,
        ids: &Ids,
        place: &Place,
        keep_old_base: bool,
    ) -> Result<Option<Link>, SyncError> {
        match merged {
            Base::Unlinked => Ok(link),
            Base::Tombstone => {
                let Some(l) = link else { return Ok(None) };
                if l.state == LinkState::Deleted {
                    return Ok(Some(l));
                }
                let update = LinkUpdate {
                    ghl_id: ids.ghl.clone(),
                    ekyte_id: ids.ekyte.clone(),
                    ghl_parent: l.ghl_parent.clone(),
                    ekyte_parent: l.ekyte_parent.clone(),
                    state: LinkState::Deleted,
                    base: l.base.clone(),
                    ghl_fp: l.ghl_fp,
                    ekyte_fp: l.ekyte_fp,
                };
                let stored = self
                    .links
                    .complete(l.id, l.version, &update)
                    .await
                    .map_err(SyncError::store("close link"))?;
                cx.skip(
                    kind,
                    ids.ghl.as_deref(),
                    ids.ekyte.as_deref(),
                    "link closed: deleted on one side",
                );
                Ok(Some(stored))
            }
            Base::Linked(m) => {
                if keep_old_base {
                    return Ok(link);
                }
                let update = LinkUpdate {
                    ghl_id: ids.ghl.clone(),
                    ekyte_id: ids.ekyte.clone(),
                    ghl_parent: place
                        .ghl_parent
                        .clone()
                        .or_else(|| link.as_ref().and_then(|l| l.ghl_parent.clone())),
                    ekyte_parent: place
                        .ekyte_parent
                        .clone()
                        .or_else(|| link.as_ref().and_then(|l| l.ekyte_parent.clone())),
                    state: LinkState::Linked,
                    base: m.to_base(),
                    ghl_fp: ids
                        .ghl
                        .as_ref()
                        .map(|_| Fingerprint::of(&m.project(Side::Ghl))),
                    ekyte_fp: ids
                        .ekyte
                        .as_ref()
                        .map(|_| Fingerprint::of(&m.project(Side::Ekyte))),
                };
                match link {
                    Some(l) if unchanged(&l, &update) => Ok(Some(l)),
                    Some(l) => self
                        .links
                        .complete(l.id, l.version, &update)
                        .await
                        .map(Some)
                        .map_err(SyncError::store("update link")),
                    None => {
                        let l = self
                            .links
                            .insert_linked(&cx.scope.tenant.id, kind, &update)
                            .await
                            .map_err(SyncError::store("insert link"))?;
                        cx.record(Note {
                            target: None,
                            kind,
                            action: AuditAction::Link,
                            ghl_id: ids.ghl.as_deref(),
                            ekyte_id: ids.ekyte.as_deref(),
                            fields: vec![],
                            reason: Some("records on both sides linked".to_owned()),
                        });
                        Ok(Some(l))
                    }
                }
            }
        }
    }
}

enum Created {
    /// Created (or found); the held claim and the new id, and how it was found if not made.
    New(Link, String, Option<String>),
    /// Someone else linked it meanwhile.
    Done(Link),
    /// Refused for sure; the claim was released.
    Refused(SyncError),
}

fn unchanged(l: &Link, u: &LinkUpdate) -> bool {
    l.state == u.state
        && l.ghl_id == u.ghl_id
        && l.ekyte_id == u.ekyte_id
        && l.base == u.base
        && l.ghl_fp == u.ghl_fp
        && l.ekyte_fp == u.ekyte_fp
        && (u.ghl_parent.is_none() || l.ghl_parent == u.ghl_parent)
        && (u.ekyte_parent.is_none() || l.ekyte_parent == u.ekyte_parent)
}
