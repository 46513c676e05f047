//! What handling a message did (or, in a dry run, would do): the audit entries, in order.

use serde::Serialize;

use domain::{EntityKind, Side};
use ports::store::{AuditAction, AuditEntry};

/// One line of a report: a write, a skip, a conflict or an unsupported operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReportLine {
    pub target: Option<Side>,
    pub kind: EntityKind,
    pub action: AuditAction,
    pub ghl_id: Option<String>,
    pub ekyte_id: Option<String>,
    pub fields: Vec<String>,
    pub reason: Option<String>,
}

impl From<&AuditEntry> for ReportLine {
    fn from(e: &AuditEntry) -> Self {
        Self {
            target: e.target,
            kind: e.kind,
            action: e.action,
            ghl_id: e.ghl_id.clone(),
            ekyte_id: e.ekyte_id.clone(),
            fields: e.fields.clone(),
            reason: e.reason.clone(),
        }
    }
}

/// The outcome of one use case.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    pub dry_run: bool,
    pub lines: Vec<ReportLine>,
}

/// Actions that change a vendor's data.
pub fn is_write(action: AuditAction) -> bool {
    matches!(
        action,
        AuditAction::Create
            | AuditAction::Update
            | AuditAction::Complete
            | AuditAction::Cancel
            | AuditAction::Reopen
            | AuditAction::Delete
            | AuditAction::Archive
    )
}

impl Report {
    pub fn count(&self, action: AuditAction) -> usize {
        self.lines.iter().filter(|l| l.action == action).count()
    }

    /// Writes (done, or planned in a dry run) to one side.
    pub fn writes_to(&self, side: Side) -> usize {
        self.lines
            .iter()
            .filter(|l| l.target == Some(side) && is_write(l.action))
            .count()
    }

    pub fn writes(&self) -> usize {
        self.lines.iter().filter(|l| is_write(l.action)).count()
    }

    pub fn extend(&mut self, other: Report) {
        self.lines.extend(other.lines);
    }
}
