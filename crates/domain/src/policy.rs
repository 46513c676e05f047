//! Field policy: per entity and field, which way changes flow and who wins a conflict; per
//! entity, whether creates and deletes propagate.
//!
//! Defaults follow DESIGN.md §2: the contact profile is GHL's (a workspace's name flows back,
//! but GHL wins a conflict on it); tasks are two-way with the newest change winning; GHL notes
//! flow to eKyte; eKyte comments flow to GHL as notes. A tenant's configuration may override
//! any field rule or entity setting.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::record::{EntityKind, Side};

/// Which way a field's changes flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    GhlToEkyte,
    EkyteToGhl,
    TwoWay,
}

impl Direction {
    /// Whether a value may be written *to* `side` under this direction.
    pub fn writes_to(self, side: Side) -> bool {
        match self {
            Self::GhlToEkyte => side == Side::Ekyte,
            Self::EkyteToGhl => side == Side::Ghl,
            Self::TwoWay => true,
        }
    }

    /// The side whose changes count alone, for one-way fields.
    pub fn source(self) -> Option<Side> {
        match self {
            Self::GhlToEkyte => Some(Side::Ghl),
            Self::EkyteToGhl => Some(Side::Ekyte),
            Self::TwoWay => None,
        }
    }

    pub fn mirrored(self) -> Self {
        match self {
            Self::GhlToEkyte => Self::EkyteToGhl,
            Self::EkyteToGhl => Self::GhlToEkyte,
            Self::TwoWay => Self::TwoWay,
        }
    }
}

/// Who wins when both sides changed a two-way field differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConflictRule {
    /// The field's owner wins.
    OwnerWins,
    /// The side whose record changed last wins; the owner wins a tie or when a side does not
    /// say when it changed.
    NewestWins,
}

/// The rule for one field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FieldRule {
    pub direction: Direction,
    pub conflict: ConflictRule,
    /// The owner: the source of a one-way field, the tie-breaker of a two-way one.
    pub owner: Side,
}

impl FieldRule {
    pub const fn one_way(from: Side) -> Self {
        Self {
            direction: match from {
                Side::Ghl => Direction::GhlToEkyte,
                Side::Ekyte => Direction::EkyteToGhl,
            },
            conflict: ConflictRule::OwnerWins,
            owner: from,
        }
    }

    pub const fn two_way(conflict: ConflictRule, owner: Side) -> Self {
        Self {
            direction: Direction::TwoWay,
            conflict,
            owner,
        }
    }

    pub fn mirrored(self) -> Self {
        Self {
            direction: self.direction.mirrored(),
            conflict: self.conflict,
            owner: self.owner.other(),
        }
    }

    /// A one-way field's owner is its source, whatever `owner` says.
    pub fn effective_owner(self) -> Side {
        self.direction.source().unwrap_or(self.owner)
    }
}

/// What to do on one side when the linked record disappears on the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeleteAction {
    /// Delete it too (eKyte has no delete: for a workspace this is deactivation, for a task
    /// cancellation).
    Delete,
    /// Keep it and mark it archived (GHL: the archive tag).
    Archive,
    /// Cancel it (tasks).
    Cancel,
    /// Keep it as it is; only the link is closed.
    Ignore,
}

/// What happens on GHL to a task cancelled in eKyte (GHL has no cancelled state).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CancelledTaskAction {
    /// Mark it completed.
    Complete,
    /// Delete it (only when the tenant asks for it).
    Delete,
}

/// The policy for one entity kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct EntityPolicy {
    /// Per-field overrides of `default_rule`.
    pub fields: BTreeMap<String, FieldRule>,
    pub default_rule: FieldRule,
    /// Whether a record that exists only in GHL is created in eKyte.
    pub create_in_ekyte: bool,
    /// Whether a record that exists only in eKyte is created in GHL.
    pub create_in_ghl: bool,
    /// What eKyte does when the GHL record is deleted.
    pub on_ghl_delete: DeleteAction,
    /// What GHL does when the eKyte record disappears (a workspace deactivated, say).
    pub on_ekyte_delete: DeleteAction,
}

impl Default for EntityPolicy {
    fn default() -> Self {
        Self {
            fields: BTreeMap::new(),
            default_rule: FieldRule::one_way(Side::Ghl),
            create_in_ekyte: true,
            create_in_ghl: false,
            on_ghl_delete: DeleteAction::Ignore,
            on_ekyte_delete: DeleteAction::Ignore,
        }
    }
}

impl EntityPolicy {
    pub fn rule(&self, field: &str) -> FieldRule {
        self.fields.get(field).copied().unwrap_or(self.default_rule)
    }

    pub fn create_in(&self, side: Side) -> bool {
        match side {
            Side::Ghl => self.create_in_ghl,
            Side::Ekyte => self.create_in_ekyte,
        }
    }

    /// What `side` does when the record disappears on the other side.
    pub fn on_delete_of_other(&self, side: Side) -> DeleteAction {
        match side {
            Side::Ekyte => self.on_ghl_delete,
            Side::Ghl => self.on_ekyte_delete,
        }
    }

    /// The same policy with the roles of the sides swapped.
    pub fn mirrored(&self) -> Self {
        Self {
            fields: self
                .fields
                .iter()
                .map(|(k, r)| (k.clone(), r.mirrored()))
                .collect(),
            default_rule: self.default_rule.mirrored(),
            create_in_ekyte: self.create_in_ghl,
            create_in_ghl: self.create_in_ekyte,
            on_ghl_delete: self.on_ekyte_delete,
            on_ekyte_delete: self.on_ghl_delete,
        }
    }

    /// Contacts: the profile is GHL's. The workspace name flows back (M3), but GHL wins a
    /// conflict on it. A contact deleted in GHL deactivates its workspace; a deactivated
    /// workspace tags the GHL contact `ekyte-archived` (DESIGN.md §2).
    pub fn contact_default() -> Self {
        Self {
            fields: [(
                "name".to_owned(),
                FieldRule::two_way(ConflictRule::OwnerWins, Side::Ghl),
            )]
            .into(),
            default_rule: FieldRule::one_way(Side::Ghl),
            create_in_ekyte: true,
            create_in_ghl: true,
            on_ghl_delete: DeleteAction::Delete,
            on_ekyte_delete: DeleteAction::Archive,
        }
    }

    /// Tasks: two-way, newest change wins; the assignee is GHL's (eKyte assigns executors
    /// from the workflow). A task deleted in GHL is cancelled in eKyte.
    pub fn task_default() -> Self {
        Self {
            fields: [("assignee".to_owned(), FieldRule::one_way(Side::Ghl))].into(),
            default_rule: FieldRule::two_way(ConflictRule::NewestWins, Side::Ghl),
            create_in_ekyte: true,
            create_in_ghl: true,
            on_ghl_delete: DeleteAction::Cancel,
            on_ekyte_delete: DeleteAction::Ignore,
        }
    }

    /// GHL notes become board notes; edits in GHL follow. Board notes cannot be deleted
    /// through eKyte's API, so a GHL delete only closes the link.
    pub fn note_default() -> Self {
        Self {
            fields: BTreeMap::new(),
            default_rule: FieldRule::one_way(Side::Ghl),
            create_in_ekyte: true,
            create_in_ghl: false,
            on_ghl_delete: DeleteAction::Ignore,
            on_ekyte_delete: DeleteAction::Ignore,
        }
    }

    /// eKyte task comments become GHL notes, once (M5).
    pub fn comment_default() -> Self {
        Self {
            fields: BTreeMap::new(),
            default_rule: FieldRule::one_way(Side::Ekyte),
            create_in_ekyte: false,
            create_in_ghl: true,
            on_ghl_delete: DeleteAction::Ignore,
            on_ekyte_delete: DeleteAction::Ignore,
        }
    }

    /// Businesses (per-business workspaces): GHL's; the workspace name follows the business.
    pub fn business_default() -> Self {
        Self {
            fields: BTreeMap::new(),
            default_rule: FieldRule::one_way(Side::Ghl),
            create_in_ekyte: true,
            create_in_ghl: false,
            on_ghl_delete: DeleteAction::Ignore,
            on_ekyte_delete: DeleteAction::Ignore,
        }
    }
}

/// The whole sync policy of a tenant.
///
/// Deserialising reads *overrides*: every setting a tenant leaves out keeps the default of
/// its entity (not a generic default), so `contact.on_ekyte_delete = "delete"` changes that
/// one setting and nothing else. Check field names with [`SyncPolicy::validate`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "SyncPolicyOverrides")]
pub struct SyncPolicy {
    pub contact: EntityPolicy,
    pub task: EntityPolicy,
    pub note: EntityPolicy,
    pub comment: EntityPolicy,
    pub business: EntityPolicy,
    /// The tag put on a GHL contact whose workspace was deactivated (M6).
    pub archive_tag: String,
    /// What a task cancelled in eKyte becomes in GHL.
    pub cancelled_task_in_ghl: CancelledTaskAction,
}

impl Default for SyncPolicy {
    fn default() -> Self {
        Self {
            contact: EntityPolicy::contact_default(),
            task: EntityPolicy::task_default(),
            note: EntityPolicy::note_default(),
            comment: EntityPolicy::comment_default(),
            business: EntityPolicy::business_default(),
            archive_tag: "ekyte-archived".to_owned(),
            cancelled_task_in_ghl: CancelledTaskAction::Complete,
        }
    }
}

/// A policy that names a field its entity does not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error(
        "policy.{entity}.fields names {field:?}, which is not a synced field of {entity} (known: {known})"
    )]
    UnknownField {
        entity: &'static str,
        field: String,
        known: String,
    },
    #[error("policy.archive_tag must not be empty")]
    EmptyArchiveTag,
}

impl SyncPolicy {
    pub fn for_kind(&self, kind: EntityKind) -> &EntityPolicy {
        match kind {
            EntityKind::Contact | EntityKind::ProfileNote | EntityKind::Board => &self.contact,
            EntityKind::Task | EntityKind::Onboarding => &self.task,
            EntityKind::Note => &self.note,
            EntityKind::Comment => &self.comment,
            EntityKind::Business | EntityKind::Appointment => &self.business,
        }
    }

    /// Check that every field override names a real field.
    pub fn validate(&self) -> Result<(), PolicyError> {
        use crate::entities::{Business, Contact, Note, Task};
        let checks: [(&'static str, &EntityPolicy, &'static [&'static str]); 5] = [
            ("contact", &self.contact, Contact::FIELDS),
            ("task", &self.task, Task::FIELDS),
            ("note", &self.note, Note::FIELDS),
            ("comment", &self.comment, Note::FIELDS),
            ("business", &self.business, Business::FIELDS),
        ];
        for (entity, policy, known) in checks {
            if let Some(field) = policy.fields.keys().find(|f| !known.contains(&f.as_str())) {
                return Err(PolicyError::UnknownField {
                    entity,
                    field: field.clone(),
                    known: known.join(", "),
                });
            }
        }
        if self.archive_tag.trim().is_empty() {
            return Err(PolicyError::EmptyArchiveTag);
        }
        Ok(())
    }
}

/// The overrides one entity's configuration may carry.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct EntityOverrides {
    fields: BTreeMap<String, FieldRule>,
    default_rule: Option<FieldRule>,
    create_in_ekyte: Option<bool>,
    create_in_ghl: Option<bool>,
    on_ghl_delete: Option<DeleteAction>,
    on_ekyte_delete: Option<DeleteAction>,
}

impl EntityOverrides {
    fn apply(self, mut base: EntityPolicy) -> EntityPolicy {
        base.fields.extend(self.fields);
        if let Some(r) = self.default_rule {
            base.default_rule = r;
        }
        if let Some(v) = self.create_in_ekyte {
            base.create_in_ekyte = v;
        }
        if let Some(v) = self.create_in_ghl {
            base.create_in_ghl = v;
        }
        if let Some(v) = self.on_ghl_delete {
            base.on_ghl_delete = v;
        }
        if let Some(v) = self.on_ekyte_delete {
            base.on_ekyte_delete = v;
        }
        base
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct SyncPolicyOverrides {
    contact: EntityOverrides,
    task: EntityOverrides,
    note: EntityOverrides,
    comment: EntityOverrides,
    business: EntityOverrides,
    archive_tag: Option<String>,
    cancelled_task_in_ghl: Option<CancelledTaskAction>,
}

impl From<SyncPolicyOverrides> for SyncPolicy {
    fn from(o: SyncPolicyOverrides) -> Self {
        let d = SyncPolicy::default();
        Self {
            contact: o.contact.apply(d.contact),
            task: o.task.apply(d.task),
            note: o.note.apply(d.note),
            comment: o.comment.apply(d.comment),
            business: o.business.apply(d.business),
            archive_tag: o.archive_tag.unwrap_or(d.archive_tag),
            cancelled_task_in_ghl: o.cancelled_task_in_ghl.unwrap_or(d.cancelled_task_in_ghl),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_design() {
        let p = SyncPolicy::default();
        assert_eq!(p.contact.rule("email").direction, Direction::GhlToEkyte);
        assert_eq!(p.contact.rule("name").direction, Direction::TwoWay);
        assert_eq!(p.contact.rule("name").effective_owner(), Side::Ghl);
        assert_eq!(p.task.rule("status").conflict, ConflictRule::NewestWins);
        assert_eq!(p.contact.on_ekyte_delete, DeleteAction::Archive);
        assert_eq!(p.archive_tag, "ekyte-archived");
    }

    #[test]
    fn mirroring_twice_is_identity() {
        let p = EntityPolicy::contact_default();
        assert_eq!(p.mirrored().mirrored(), p);
        assert_eq!(p.mirrored().rule("email").direction, Direction::EkyteToGhl);
    }

    #[test]
    fn tenant_overrides_deserialise() {
        let p: SyncPolicy = serde_json::from_str(
            r#"{"contact": {"on_ekyte_delete": "delete"},
                "task": {"fields": {"title": {"direction": "ghl_to_ekyte", "conflict": "owner_wins", "owner": "ghl"}}}}"#,
        )
        .unwrap();
        assert_eq!(p.contact.on_ekyte_delete, DeleteAction::Delete);
        assert_eq!(p.task.rule("title").direction, Direction::GhlToEkyte);
        // What the tenant did not mention keeps the entity's own default.
        assert_eq!(p.contact.rule("name").direction, Direction::TwoWay);
        assert_eq!(p.task.rule("status").conflict, ConflictRule::NewestWins);
        assert_eq!(p.archive_tag, "ekyte-archived");
        assert_eq!(p.validate(), Ok(()));
        let full = serde_json::to_string(&p).unwrap();
        assert_eq!(serde_json::from_str::<SyncPolicy>(&full).unwrap(), p);
    }

    #[test]
    fn unknown_fields_are_reported() {
        let p: SyncPolicy = serde_json::from_str(
            r#"{"task": {"fields": {"titel": {"direction": "two_way", "conflict": "owner_wins", "owner": "ghl"}}}}"#,
        )
        .unwrap();
        let err = p.validate().unwrap_err().to_string();
        assert!(
            err.contains("policy.task.fields") && err.contains("titel"),
            "{err}"
        );
        assert!(serde_json::from_str::<SyncPolicy>(r#"{"contakt": {}}"#).is_err());
    }
}
