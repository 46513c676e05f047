//! The domain of ghl-ekyte-sync: identifiers, canonical records, normalisation, fingerprints,
//! field policy, three-way reconciliation, the contact selector, onboarding templates and the
//! unified-view rendering.
//!
//! Everything here is pure: no async, no I/O, no clock (callers pass the time in). The crate's
//! dependency list is checked in CI to hold nothing that does I/O.

pub mod entities;
pub mod fingerprint;
pub mod ids;
pub mod normalise;
pub mod onboarding;
pub mod policy;
pub mod profile;
pub mod reconcile;
pub mod record;
pub mod selector;
pub mod tenant;

pub use entities::{Appointment, Business, Contact, Note, Task};
pub use fingerprint::Fingerprint;
pub use ids::*;
pub use onboarding::OnboardingTemplate;
pub use policy::{
    CancelledTaskAction, ConflictRule, DeleteAction, Direction, EntityPolicy, FieldRule, SyncPolicy,
};
pub use reconcile::{
    Base, Conflict, ConflictKind, FieldChange, LastWritten, Observed, Reconciliation, SkipReason,
    WriteOp, apply_ops, reconcile,
};
pub use record::{EntityKind, FieldValue, NormaliseCtx, Record, Side, TaskStatus};
pub use selector::{Selector, SelectorRule};
pub use tenant::{
    EkyteMapping, Install, InstallKind, LifecycleChange, Tenant, TenantSettings, WorkspacePer,
};
