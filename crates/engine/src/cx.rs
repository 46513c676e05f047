//! The context of one use-case run: who it is for, its options, and the audit entries it
//! collects (flushed to the audit log once, at the end, whatever the outcome).

use chrono::{DateTime, Utc};

use std::collections::HashSet;
use std::sync::Arc;

use domain::{EntityKind, GhlContactId, Side};
use ports::Scope;
use ports::ghl::{GhlNote, GhlTask};
use ports::queue::Prefetched;
use ports::store::{AuditAction, AuditEntry};

use crate::report::{Report, ReportLine};

/// Options of one run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    /// Plan and report, write nothing to either side (nor any link).
    pub dry_run: bool,
    /// The message being handled, for the audit log.
    pub message_id: Option<String>,
    /// When GHL says the triggering change happened (the webhook's timestamp); used by
    /// newest-wins, since GHL tasks and notes carry no update time.
    pub ghl_changed_at: Option<DateTime<Utc>>,
    /// When the eKyte change was observed (eKyte records carry no update time).
    pub ekyte_changed_at: Option<DateTime<Utc>>,
    /// What the sweep that enqueued a contact's sync already read (used only while the
    /// contact is still unlinked when its sync runs).
    pub prefetched: Option<Arc<Prefetched>>,
}

pub(crate) struct Cx {
    pub scope: Scope,
    pub opts: Options,
    pub now: DateTime<Utc>,
    /// This worker's identity, for link claims.
    pub owner: String,
    pub contact: Option<GhlContactId>,
    pub entries: Vec<AuditEntry>,
    /// GHL tasks this run created (onboarding), for a task list read before they existed.
    pub ghl_created_tasks: Vec<GhlTask>,
    /// The contact's GHL notes, read beside its workspace (taken by the notes step).
    pub ghl_notes: Option<Vec<GhlNote>>,
    /// GHL notes this run created (copies of eKyte comments), for a note list read before
    /// they existed.
    pub ghl_created_notes: Vec<GhlNote>,
    /// Records this run made (kind, side, id).
    made: HashSet<(EntityKind, Side, String)>,
}

/// Fields of an audit entry other than the constant ones.
pub(crate) struct Note<'a> {
    pub target: Option<Side>,
    pub kind: EntityKind,
    pub action: AuditAction,
    pub ghl_id: Option<&'a str>,
    pub ekyte_id: Option<&'a str>,
    pub fields: Vec<String>,
    pub reason: Option<String>,
}

impl Cx {
    pub fn new(scope: Scope, opts: Options, now: DateTime<Utc>, owner: String) -> Self {
        Self {
            scope,
            opts,
            now,
            owner,
            contact: None,
            entries: Vec::new(),
            ghl_created_tasks: Vec::new(),
            ghl_notes: None,
            ghl_created_notes: Vec::new(),
            made: HashSet::new(),
        }
    }

    pub fn dry_run(&self) -> bool {
        self.opts.dry_run
    }

    pub fn record(&mut self, n: Note<'_>) {
        tracing::debug!(
            tenant = %self.scope.tenant.id,
            kind = %n.kind,
            action = n.action.as_str(),
            target = n.target.map(Side::as_str),
            ghl_id = n.ghl_id,
            ekyte_id = n.ekyte_id,
            reason = n.reason.as_deref(),
            dry_run = self.opts.dry_run,
            "audit"
        );
        self.entries.push(AuditEntry {
            tenant: self.scope.tenant.id.clone(),
            at: self.now,
            target: n.target,
            kind: n.kind,
            action: n.action,
            contact: self.contact.clone(),
            ghl_id: n.ghl_id.map(str::to_owned),
            ekyte_id: n.ekyte_id.map(str::to_owned),
            fields: n.fields,
            reason: n.reason,
            message_id: self.opts.message_id.clone(),
            dry_run: self.opts.dry_run,
            calls: None,
        });
    }

    /// Note that this run made the record `id` on `target` (a create, not a record found
    /// after an earlier attempt whose outcome was unknown).
    pub fn made_new(&mut self, kind: EntityKind, target: Side, id: &str) {
        self.made.insert((kind, target, id.to_owned()));
    }

    /// Whether this run made the record `id` on `target` (see [`Self::made_new`]): then it
    /// holds nothing this run did not put there.
    pub fn created_here(&self, kind: EntityKind, target: Side, id: &str) -> bool {
        !self.opts.dry_run && self.made.contains(&(kind, target, id.to_owned()))
    }

    /// A skip with a reason.
    pub fn skip(
        &mut self,
        kind: EntityKind,
        ghl_id: Option<&str>,
        ekyte_id: Option<&str>,
        reason: impl Into<String>,
    ) {
        self.record(Note {
            target: None,
            kind,
            action: AuditAction::Skip,
            ghl_id,
            ekyte_id,
            fields: vec![],
            reason: Some(reason.into()),
        });
    }

    pub fn report(&self) -> Report {
        Report {
            dry_run: self.opts.dry_run,
            lines: self.entries.iter().map(ReportLine::from).collect(),
        }
    }
}
