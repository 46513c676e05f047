//! The field model shared by every canonical record: sides, entity kinds, field values and the
//! [`Record`] trait that reconciliation, fingerprints and projections are written against.
//!
//! A record names its synced fields in a fixed order. Each side may carry only some of them
//! (an eKyte workspace carries a contact's name, not its phone): a field a side does not carry
//! is never read from that side and never written to it. A side may also show a value in a
//! coarser form than the canonical one (GHL has no "cancelled" task; it shows such a task as
//! completed): [`Record::project_value`] says how, so that changes are detected in the side's
//! own terms.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::normalise::PhoneRegion;

/// One of the two systems we keep in sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    Ghl,
    Ekyte,
}

impl Side {
    pub fn other(self) -> Self {
        match self {
            Self::Ghl => Self::Ekyte,
            Self::Ekyte => Self::Ghl,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ghl => "ghl",
            Self::Ekyte => "ekyte",
        }
    }
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a link row connects. The string forms are stored in the database; never rename one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntityKind {
    /// GHL contact ↔ eKyte workspace (or the business's workspace).
    Contact,
    /// GHL business ↔ eKyte workspace, when workspaces are kept per business.
    Business,
    /// GHL task ↔ eKyte task.
    Task,
    /// GHL note ↔ eKyte board note.
    Note,
    /// eKyte task comment → GHL note.
    Comment,
    /// The "Profile" board note of a contact's unified view (M7).
    ProfileNote,
    /// The notes board of a workspace.
    Board,
    /// An onboarding task created once per newly linked contact (M4).
    Onboarding,
    /// A GHL appointment (shown in the profile note).
    Appointment,
}

impl EntityKind {
    pub const ALL: [EntityKind; 9] = [
        Self::Contact,
        Self::Business,
        Self::Task,
        Self::Note,
        Self::Comment,
        Self::ProfileNote,
        Self::Board,
        Self::Onboarding,
        Self::Appointment,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Contact => "contact",
            Self::Business => "business",
            Self::Task => "task",
            Self::Note => "note",
            Self::Comment => "comment",
            Self::ProfileNote => "profile_note",
            Self::Board => "board",
            Self::Onboarding => "onboarding",
            Self::Appointment => "appointment",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == raw)
    }
}

impl fmt::Display for EntityKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A task's state. eKyte knows all three (situations 10/20 → open, 30, 40); GHL only knows
/// open and completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    Open,
    Completed,
    Cancelled,
}

impl TaskStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Completed => "completed",
            Self::Cancelled => "cancelled",
        }
    }
}

/// The value of one synced field, in canonical form.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "t", content = "v", rename_all = "snake_case")]
pub enum FieldValue {
    Text(Option<String>),
    Bool(bool),
    Time(Option<DateTime<Utc>>),
    List(Vec<String>),
    Map(BTreeMap<String, String>),
    Status(TaskStatus),
}

impl FieldValue {
    /// Whether the value says "nothing here" (absent text or time, empty list or map).
    pub fn is_empty(&self) -> bool {
        match self {
            Self::Text(v) => v.is_none(),
            Self::Time(v) => v.is_none(),
            Self::List(v) => v.is_empty(),
            Self::Map(v) => v.is_empty(),
            Self::Bool(_) | Self::Status(_) => false,
        }
    }
}

impl fmt::Display for FieldValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Text(Some(s)) => write!(f, "{s:?}"),
            Self::Text(None) | Self::Time(None) => f.write_str("∅"),
            Self::Bool(b) => write!(f, "{b}"),
            Self::Time(Some(t)) => write!(f, "{}", t.to_rfc3339()),
            Self::List(v) => write!(f, "{v:?}"),
            Self::Map(m) => write!(f, "{m:?}"),
            Self::Status(s) => f.write_str(s.as_str()),
        }
    }
}

/// What normalisation needs to know about the tenant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NormaliseCtx {
    pub phone_region: PhoneRegion,
}

/// A canonical record: a fixed, ordered set of synced fields.
pub trait Record: Clone + PartialEq + fmt::Debug + Send + Sync + 'static {
    const KIND: EntityKind;

    /// The synced fields, in the order fingerprints use. Never reorder; only append.
    fn field_names() -> &'static [&'static str];

    /// The value of a synced field. Panics in debug builds on an unknown name.
    fn get(&self, field: &str) -> FieldValue;

    /// Set a synced field. A value of the wrong shape is a programming error: debug builds
    /// panic, release builds leave the field as it was.
    fn set(&mut self, field: &str, value: FieldValue);

    /// A record with every field empty (the starting point of a create).
    fn empty() -> Self;

    /// Whether `side` stores this field at all.
    fn carries(side: Side, field: &str) -> bool {
        let _ = (side, field);
        true
    }

    /// How `side` shows a canonical value (identity unless the side is coarser).
    fn project_value(side: Side, field: &str, value: FieldValue) -> FieldValue {
        let _ = (side, field);
        value
    }

    /// The record in canonical form. Must be idempotent.
    fn normalised(&self, ctx: &NormaliseCtx) -> Self;

    /// The record as `side` would store it: fields it does not carry are empty, the others
    /// in the side's own form.
    fn project(&self, side: Side) -> Self {
        let mut out = Self::empty();
        for &f in Self::field_names() {
            if Self::carries(side, f) {
                out.set(f, Self::project_value(side, f, self.get(f)));
            }
        }
        out
    }
}

/// Shape mismatches in `set` are bugs in this crate; they must be loud in tests.
pub(crate) fn wrong_shape(kind: EntityKind, field: &str, value: &FieldValue) {
    debug_assert!(false, "{kind}.{field} cannot hold {value:?}");
}
