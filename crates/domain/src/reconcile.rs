//! Three-way reconciliation (DESIGN.md §4).
//!
//! [`reconcile`] compares, field by field, the last agreed record (the *base*), GHL now and
//! eKyte now, and returns the merged record, a plan of writes per side and the conflicts:
//!
//! - only one side changed a field → take it;
//! - both changed it the same way → nothing to do, no conflict;
//! - both changed it differently → the field's rule decides (owner wins, or newest wins with
//!   the owner breaking ties), and the conflict is reported for the audit log;
//! - a one-way field takes only its source's changes; a change on the other side is reverted
//!   and reported.
//!
//! Changes are detected in each side's own terms: a base value is first *projected* onto the
//! side (GHL shows a cancelled task as completed), so a coarser side never looks changed.
//!
//! **Echo suppression.** When a side's current fingerprint equals the one we last wrote to it,
//! what we see is our own write coming back: that side is treated as unchanged.
//!
//! **Creates** seed every field the new record's side carries: ownership protects values a
//! side holds, and a record being created holds none yet.
//!
//! Guarantees (property-tested in `tests.rs`): (a) applying the plan and reconciling again
//! plans nothing; (b) reconciling right after our own write plans nothing, even when the side
//! stored it in its own lossy way; (c) an update never changes, on the side that owns a field,
//! that field; (d) identical changes on both sides plan nothing and report no conflict;
//! (e) swapping the sides under the mirrored policy mirrors the result.

use std::fmt;

use chrono::{DateTime, Utc};

use crate::fingerprint::Fingerprint;
use crate::policy::{ConflictRule, DeleteAction, Direction, EntityPolicy, FieldRule};
use crate::record::{FieldValue, Record, Side, TaskStatus};

/// What the store remembers about a link before this reconciliation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Base<R> {
    /// Never linked.
    Unlinked,
    /// The last agreed canonical record.
    Linked(R),
    /// The link was closed (the record was deleted on one side); nothing syncs any more.
    Tombstone,
}

impl<R> Base<R> {
    pub fn record(&self) -> Option<&R> {
        match self {
            Self::Linked(r) => Some(r),
            _ => None,
        }
    }
}

/// One side's current state, as read just now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed<R> {
    /// `None` when the record does not exist (never created, or deleted).
    pub record: Option<R>,
    /// When the side says the record last changed; used by newest-wins.
    pub updated_at: Option<DateTime<Utc>>,
}

impl<R> Observed<R> {
    pub fn present(record: R, updated_at: Option<DateTime<Utc>>) -> Self {
        Self {
            record: Some(record),
            updated_at,
        }
    }

    pub fn absent() -> Self {
        Self {
            record: None,
            updated_at: None,
        }
    }
}

/// The fingerprints last written to each side (of the side's projection).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LastWritten {
    pub ghl: Option<Fingerprint>,
    pub ekyte: Option<Fingerprint>,
}

impl LastWritten {
    pub fn get(&self, side: Side) -> Option<Fingerprint> {
        match side {
            Side::Ghl => self.ghl,
            Side::Ekyte => self.ekyte,
        }
    }

    pub fn set(&mut self, side: Side, fp: Option<Fingerprint>) {
        match side {
            Side::Ghl => self.ghl = fp,
            Side::Ekyte => self.ekyte = fp,
        }
    }
}

/// One field changed by an update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldChange {
    pub field: &'static str,
    pub from: FieldValue,
    pub to: FieldValue,
}

/// Why a side gets no write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SkipReason {
    /// The record exists only on the other side and the policy does not create it here.
    CreateNotAllowed,
    /// The link is closed.
    Tombstoned,
    /// The record was deleted on the other side and the policy keeps this one.
    DeleteIgnored,
}

impl SkipReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CreateNotAllowed => "create_not_allowed",
            Self::Tombstoned => "link_closed",
            Self::DeleteIgnored => "delete_not_propagated",
        }
    }
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One intended write (or a recorded decision not to write) on one side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOp<R> {
    /// Create the record, in the side's projection, holding only fields it may be written.
    Create(R),
    /// Change these fields.
    Update(Vec<FieldChange>),
    /// Mark a task completed.
    Complete,
    /// Cancel a task.
    Cancel,
    /// Re-open a completed or cancelled task.
    Reopen,
    /// Delete (eKyte: deactivate a workspace, cancel a task).
    Delete,
    /// Keep but mark archived (GHL: the archive tag).
    Archive,
    /// No write, for this reason.
    Skip(SkipReason),
}

impl<R> WriteOp<R> {
    pub fn is_write(&self) -> bool {
        !matches!(self, Self::Skip(_))
    }

    pub fn name(&self) -> &'static str {
        match self {
            Self::Create(_) => "create",
            Self::Update(_) => "update",
            Self::Complete => "complete",
            Self::Cancel => "cancel",
            Self::Reopen => "reopen",
            Self::Delete => "delete",
            Self::Archive => "archive",
            Self::Skip(_) => "skip",
        }
    }
}

/// How a conflict came about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConflictKind {
    /// Both sides changed a two-way field differently (or disagree on first link).
    BothChanged,
    /// The side that does not own a one-way field changed it; the change is reverted.
    NotOwner,
}

/// A disagreement the rules settled; audited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub field: &'static str,
    pub kind: ConflictKind,
    pub base: Option<FieldValue>,
    pub ghl: FieldValue,
    pub ekyte: FieldValue,
    pub winner: Side,
    pub rule: ConflictRule,
}

/// The result of one reconciliation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reconciliation<R> {
    /// The new base to store once the writes succeed.
    pub merged: Base<R>,
    pub ghl: Vec<WriteOp<R>>,
    pub ekyte: Vec<WriteOp<R>>,
    pub conflicts: Vec<Conflict>,
}

impl<R> Reconciliation<R> {
    pub fn ops(&self, side: Side) -> &[WriteOp<R>] {
        match side {
            Side::Ghl => &self.ghl,
            Side::Ekyte => &self.ekyte,
        }
    }

    /// Whether nothing is to be written to either side.
    pub fn is_noop(&self) -> bool {
        !self.ghl.iter().chain(&self.ekyte).any(WriteOp::is_write)
    }
}

/// Reconcile one entity. All records must be normalised.
pub fn reconcile<R: Record>(
    base: &Base<R>,
    ghl: &Observed<R>,
    ekyte: &Observed<R>,
    last_written: &LastWritten,
    policy: &EntityPolicy,
) -> Reconciliation<R> {
    match base {
        Base::Tombstone => Reconciliation {
            merged: Base::Tombstone,
            ghl: vec![WriteOp::Skip(SkipReason::Tombstoned)],
            ekyte: vec![WriteOp::Skip(SkipReason::Tombstoned)],
            conflicts: vec![],
        },
        Base::Unlinked => unlinked(ghl, ekyte, policy),
        Base::Linked(b) => {
            let g = without_echo(Side::Ghl, ghl, b, last_written);
            let e = without_echo(Side::Ekyte, ekyte, b, last_written);
            linked(b, &g, &e, policy)
        }
    }
}

/// Our own write seen again counts as no change on that side.
fn without_echo<R: Record>(
    side: Side,
    observed: &Observed<R>,
    base: &R,
    last: &LastWritten,
) -> Observed<R> {
    match (&observed.record, last.get(side)) {
        (Some(now), Some(written)) if Fingerprint::of(now) == written => Observed {
            record: Some(base.project(side)),
            updated_at: observed.updated_at,
        },
        _ => observed.clone(),
    }
}

fn unlinked<R: Record>(
    ghl: &Observed<R>,
    ekyte: &Observed<R>,
    policy: &EntityPolicy,
) -> Reconciliation<R> {
    match (&ghl.record, &ekyte.record) {
        (None, None) => Reconciliation {
            merged: Base::Unlinked,
            ghl: vec![],
            ekyte: vec![],
            conflicts: vec![],
        },
        (Some(only), None) => create_from(Side::Ghl, only, policy),
        (None, Some(only)) => create_from(Side::Ekyte, only, policy),
        (Some(_), Some(_)) => merge_present(None, ghl, ekyte, policy),
    }
}

fn create_from<R: Record>(source: Side, record: &R, policy: &EntityPolicy) -> Reconciliation<R> {
    let target = source.other();
    let (merged, op) = if policy.create_in(target) {
        // A create seeds every field the target carries, owned or not: ownership protects
        // values a side holds, and a new record holds none yet.
        (
            Base::Linked(record.clone()),
            WriteOp::Create(record.project(target)),
        )
    } else {
        (Base::Unlinked, WriteOp::Skip(SkipReason::CreateNotAllowed))
    };
    let (ghl, ekyte) = match target {
        Side::Ghl => (vec![op], vec![]),
        Side::Ekyte => (vec![], vec![op]),
    };
    Reconciliation {
        merged,
        ghl,
        ekyte,
        conflicts: vec![],
    }
}

fn linked<R: Record>(
    base: &R,
    ghl: &Observed<R>,
    ekyte: &Observed<R>,
    policy: &EntityPolicy,
) -> Reconciliation<R> {
    match (&ghl.record, &ekyte.record) {
        (Some(_), Some(_)) => merge_present(Some(base), ghl, ekyte, policy),
        (None, None) => Reconciliation {
            merged: Base::Tombstone,
            ghl: vec![],
            ekyte: vec![],
            conflicts: vec![],
        },
        (None, Some(_)) => deleted_on(Side::Ghl, policy),
        (Some(_), None) => deleted_on(Side::Ekyte, policy),
    }
}

fn deleted_on<R: Record>(gone: Side, policy: &EntityPolicy) -> Reconciliation<R> {
    let survivor = gone.other();
    let op = match policy.on_delete_of_other(survivor) {
        DeleteAction::Delete => WriteOp::Delete,
        DeleteAction::Archive => WriteOp::Archive,
        DeleteAction::Cancel => WriteOp::Cancel,
        DeleteAction::Ignore => WriteOp::Skip(SkipReason::DeleteIgnored),
    };
    let (ghl, ekyte) = match survivor {
        Side::Ghl => (vec![op], vec![]),
        Side::Ekyte => (vec![], vec![op]),
    };
    Reconciliation {
        merged: Base::Tombstone,
        ghl,
        ekyte,
        conflicts: vec![],
    }
}

/// Whether two sides' values say the same thing, and if so which one to keep: the one that
/// projects onto the other (it is at least as fine-grained).
fn agree<R: Record>(field: &str, g: &FieldValue, e: &FieldValue) -> Option<FieldValue> {
    if R::project_value(Side::Ghl, field, e.clone()) == *g {
        Some(e.clone())
    } else if R::project_value(Side::Ekyte, field, g.clone()) == *e {
        Some(g.clone())
    } else {
        None
    }
}

fn winner(rule: FieldRule, ghl: &Observed<impl Sized>, ekyte: &Observed<impl Sized>) -> Side {
    let owner = rule.effective_owner();
    match (rule.direction, rule.conflict) {
        (Direction::TwoWay, ConflictRule::NewestWins) => match (ghl.updated_at, ekyte.updated_at) {
            (Some(g), Some(e)) if g > e => Side::Ghl,
            (Some(g), Some(e)) if e > g => Side::Ekyte,
            _ => owner,
        },
        _ => owner,
    }
}

fn merge_present<R: Record>(
    base: Option<&R>,
    ghl: &Observed<R>,
    ekyte: &Observed<R>,
    policy: &EntityPolicy,
) -> Reconciliation<R> {
    let (Some(g), Some(e)) = (&ghl.record, &ekyte.record) else {
        unreachable!("merge_present is called with both sides present")
    };
    let mut merged = R::empty();
    let mut conflicts = Vec::new();

    for &f in R::field_names() {
        let rule = policy.rule(f);
        let gc = R::carries(Side::Ghl, f);
        let ec = R::carries(Side::Ekyte, f);
        let bv = base.map(|b| b.get(f));
        let gv = g.get(f);
        let ev = e.get(f);
        let value = match (gc, ec) {
            (false, false) => bv.clone().unwrap_or_else(|| R::empty().get(f)),
            (true, false) => gv,
            (false, true) => ev,
            (true, true) => {
                let changed = |side: Side, now: &FieldValue| match &bv {
                    Some(b) => R::project_value(side, f, b.clone()) != *now,
                    None => true,
                };
                let g_changed = changed(Side::Ghl, &gv);
                let e_changed = changed(Side::Ekyte, &ev);
                let agreed = agree::<R>(f, &gv, &ev);
                let conflict = |kind, winner| Conflict {
                    field: f,
                    kind,
                    base: bv.clone(),
                    ghl: gv.clone(),
                    ekyte: ev.clone(),
                    winner,
                    rule: rule.conflict,
                };
                match (rule.direction.source(), &bv) {
                    // Both sides show the same thing and it is news: nothing to settle,
                    // whoever owns the field (a coarse side may look unchanged).
                    (_, Some(_)) if (g_changed || e_changed) && agreed.is_some() => {
                        agreed.clone().unwrap_or(gv.clone())
                    }
                    // One-way: only the source's changes count.
                    (Some(source), Some(b)) => {
                        let (src_changed, src_v, other_changed) = match source {
                            Side::Ghl => (g_changed, &gv, e_changed),
                            Side::Ekyte => (e_changed, &ev, g_changed),
                        };
                        // When the other side shows the same change in finer form (GHL
                        // "completed", eKyte "cancelled"), keep the finer one.
                        let value = match (src_changed, &agreed) {
                            (false, _) => b.clone(),
                            (true, Some(a)) => a.clone(),
                            (true, None) => src_v.clone(),
                        };
                        let other = source.other();
                        let other_v = if other == Side::Ghl { &gv } else { &ev };
                        if other_changed && R::project_value(other, f, value.clone()) != *other_v {
                            conflicts.push(conflict(ConflictKind::NotOwner, source));
                        }
                        value
                    }
                    (Some(source), None) => {
                        if agreed.is_none() {
                            conflicts.push(conflict(ConflictKind::NotOwner, source));
                        }
                        agreed.unwrap_or_else(|| {
                            if source == Side::Ghl {
                                gv.clone()
                            } else {
                                ev.clone()
                            }
                        })
                    }
                    (None, _) => match (g_changed, e_changed) {
                        (false, false) => bv.clone().unwrap_or(gv.clone()),
                        (true, false) => gv.clone(),
                        (false, true) => ev.clone(),
                        (true, true) => match agreed {
                            Some(v) => v,
                            None => {
                                let w = winner(rule, ghl, ekyte);
                                conflicts.push(conflict(ConflictKind::BothChanged, w));
                                if w == Side::Ghl {
                                    gv.clone()
                                } else {
                                    ev.clone()
                                }
                            }
                        },
                    },
                }
            }
        };
        merged.set(f, value);
    }

    let ghl_ops = side_ops(Side::Ghl, &merged, g, policy);
    let ekyte_ops = side_ops(Side::Ekyte, &merged, e, policy);
    Reconciliation {
        merged: Base::Linked(merged),
        ghl: ghl_ops,
        ekyte: ekyte_ops,
        conflicts,
    }
}

/// The writes that bring `current` (a side's record) to the merged record.
fn side_ops<R: Record>(
    side: Side,
    merged: &R,
    current: &R,
    policy: &EntityPolicy,
) -> Vec<WriteOp<R>> {
    let target = merged.project(side);
    let mut changes = Vec::new();
    let mut status_op = None;
    for &f in R::field_names() {
        if !R::carries(side, f) || !policy.rule(f).direction.writes_to(side) {
            continue;
        }
        let to = target.get(f);
        let from = current.get(f);
        if to == from {
            continue;
        }
        match to {
            FieldValue::Status(s) => {
                status_op = Some(match s {
                    TaskStatus::Completed => WriteOp::Complete,
                    TaskStatus::Cancelled => WriteOp::Cancel,
                    TaskStatus::Open => WriteOp::Reopen,
                });
            }
            to => changes.push(FieldChange { field: f, from, to }),
        }
    }
    let mut ops = Vec::new();
    if !changes.is_empty() {
        ops.push(WriteOp::Update(changes));
    }
    ops.extend(status_op);
    ops
}

/// Apply a side's ops to that side's record, as the side would store them. The engine uses the
/// result to predict what it will read back (and so the fingerprint to remember); the property
/// tests use it to play a plan.
pub fn apply_ops<R: Record>(side: Side, current: Option<R>, ops: &[WriteOp<R>]) -> Option<R> {
    let mut rec = current;
    for op in ops {
        rec = match (op, rec) {
            (WriteOp::Create(r), _) => Some(r.clone()),
            (WriteOp::Update(changes), Some(mut r)) => {
                for c in changes {
                    r.set(c.field, c.to.clone());
                }
                Some(r)
            }
            (WriteOp::Complete, Some(mut r)) => {
                set_status(side, &mut r, TaskStatus::Completed);
                Some(r)
            }
            (WriteOp::Cancel, Some(mut r)) => {
                set_status(side, &mut r, TaskStatus::Cancelled);
                Some(r)
            }
            (WriteOp::Reopen, Some(mut r)) => {
                set_status(side, &mut r, TaskStatus::Open);
                Some(r)
            }
            (WriteOp::Delete, _) => None,
            (WriteOp::Archive | WriteOp::Skip(_), r) => r,
            (_, None) => None,
        };
    }
    rec
}

fn set_status<R: Record>(side: Side, r: &mut R, status: TaskStatus) {
    if R::field_names().contains(&"status") {
        r.set(
            "status",
            R::project_value(side, "status", FieldValue::Status(status)),
        );
    }
}

#[cfg(test)]
mod tests;
