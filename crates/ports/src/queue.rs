//! Messages (DESIGN.md §5) and the publisher port.
//!
//! An envelope is JSON, persistent, and carries a stable `id` (GHL's `webhookId` where there is
//! one) used as the AMQP `message_id` and as the inbox dedupe key.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use domain::{GhlContactId, TenantId};

use crate::ekyte::EkyteChange;
use crate::error::QueueError;
use crate::ghl::{GhlAppointment, GhlEvent, GhlTask};

/// What a sweep already read, many contacts per call, for a contact it enqueues, so the
/// contact's sync does not read it again (issue 17). Only for a contact the sweep found
/// without a link: the sync uses it only if the contact is still unlinked when it runs (a
/// record read earlier must not be taken for a change of a record synced since).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prefetched {
    /// Every GHL task of the contact, from the location's task search.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tasks: Option<Vec<GhlTask>>,
    /// The contact's appointments, from the location's calendars over the configured window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub appointments: Option<Vec<GhlAppointment>>,
}

impl Prefetched {
    pub fn is_empty(&self) -> bool {
        self.tasks.is_none() && self.appointments.is_none()
    }

    /// The tasks read for `contact`, if they were read (never another contact's).
    pub fn tasks_of(&self, contact: &GhlContactId) -> Option<Vec<GhlTask>> {
        let tasks = self.tasks.as_ref()?;
        Some(
            tasks
                .iter()
                .filter(|t| t.contact == *contact)
                .cloned()
                .collect(),
        )
    }

    /// The appointments read for `contact`, if they were read (never another contact's).
    pub fn appointments_of(&self, contact: &GhlContactId) -> Option<Vec<GhlAppointment>> {
        let list = self.appointments.as_ref()?;
        Some(
            list.iter()
                .filter(|a| a.contact == *contact)
                .cloned()
                .collect(),
        )
    }
}

/// The message id of a sweep's `sync.contact` for one contact: `sync:{run}:{contact}:{ms}`,
/// with the contact's `dateUpdated` in epoch milliseconds (`sync:{run}:{contact}` without
/// one), or `unseen:{run}:{contact}` for a linked contact the sweep's search no longer
/// returned. The run is read back from the id: a dead-lettered one counts in its run's errors.
///
/// The version is in the id because the inbox lets one id through once: a contact edited while
/// a run goes on moves behind the run's cursor and is seen again, and that second sync is the
/// one that catches an edit whose webhook was lost. A page read again after a crash gives the
/// same ids, so those syncs are still let through once.
pub fn sweep_message_id(
    run: i64,
    contact: &GhlContactId,
    unseen: bool,
    updated: Option<DateTime<Utc>>,
) -> String {
    match (unseen, updated) {
        (true, _) => format!("unseen:{run}:{contact}"),
        (false, None) => format!("sync:{run}:{contact}"),
        (false, Some(at)) => format!("sync:{run}:{contact}:{}", at.timestamp_millis()),
    }
}

/// The prefixes of every [`sweep_message_id`] of a run.
pub fn sweep_message_prefixes(run: i64) -> [String; 2] {
    [format!("sync:{run}:"), format!("unseen:{run}:")]
}

/// Which queue a message travels on: a backfill never delays a webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Lane {
    RealTime,
    Bulk,
}

impl Lane {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RealTime => "realtime",
            Self::Bulk => "bulk",
        }
    }
}

/// Full or incremental contact sync (M2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncMode {
    Full,
    Incremental,
}

/// What a message asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "data")]
pub enum Payload {
    /// Reconcile the entity a GHL webhook names (re-fetched).
    #[serde(rename = "ghl.event")]
    GhlEvent(GhlEvent),
    /// Reconcile the eKyte entity that changed.
    #[serde(rename = "ekyte.change")]
    EkyteChange(EkyteChange),
    /// Reconcile one contact with everything under it.
    #[serde(rename = "sync.contact")]
    SyncContact {
        contact: GhlContactId,
        #[serde(default)]
        dry_run: bool,
        /// What the sweep that enqueued it already read.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        prefetched: Option<Box<Prefetched>>,
    },
    /// Page through contacts from a checkpoint and enqueue `sync.contact` for changed ones.
    #[serde(rename = "sync.full")]
    SyncFull {
        mode: SyncMode,
        #[serde(default)]
        dry_run: bool,
    },
    /// Poll eKyte for changes since the last poll.
    #[serde(rename = "ekyte.poll")]
    EkytePoll,
    /// The rest of sweep `run`, from its checkpoint. A sweep enqueues a bounded number of
    /// contact syncs per message and queues this behind them, so a location's backlog in the
    /// bulk lane stays bounded however large it is. `pages` is how many pages the run had
    /// read when this was queued: a continuation that finds the run further on (another
    /// message carried it on meanwhile) ends without doing anything.
    #[serde(rename = "sync.continue")]
    SyncContinue {
        mode: SyncMode,
        run: i64,
        pages: u64,
    },
}

/// The message id of a sweep's continuation (see [`Payload::SyncContinue`]).
pub fn sweep_continuation_id(run: i64, pages: u64) -> String {
    format!("sweep:{run}:{pages}")
}

impl Payload {
    /// Every [`kind`](Self::kind), for series that should exist before their first event.
    pub const KINDS: [&'static str; 6] = [
        "ghl.event",
        "ekyte.change",
        "sync.contact",
        "sync.full",
        "ekyte.poll",
        "sync.continue",
    ];

    /// The `kind` of DESIGN.md §5.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::GhlEvent(_) => "ghl.event",
            Self::EkyteChange(_) => "ekyte.change",
            Self::SyncContact { .. } => "sync.contact",
            Self::SyncFull { .. } => "sync.full",
            Self::EkytePoll => "ekyte.poll",
            Self::SyncContinue { .. } => "sync.continue",
        }
    }

    /// Events and changes are real-time; sweeps and their fan-out are bulk.
    pub fn default_lane(&self) -> Lane {
        match self {
            Self::GhlEvent(_) | Self::EkyteChange(_) => Lane::RealTime,
            Self::SyncContact { .. }
            | Self::SyncFull { .. }
            | Self::SyncContinue { .. }
            | Self::EkytePoll => Lane::Bulk,
        }
    }
}

/// The message envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// Stable key: the AMQP `message_id` and the dedupe key.
    pub id: String,
    pub tenant: TenantId,
    /// 0 for the first delivery; re-published retries carry attempt + 1.
    pub attempt: u32,
    pub correlation_id: String,
    pub created_at: DateTime<Utc>,
    pub lane: Lane,
    #[serde(flatten)]
    pub payload: Payload,
}

impl Envelope {
    /// A new envelope on the payload's default lane. `id` should be stable for the same
    /// work (a webhook id, a change key), so a duplicate is recognised.
    pub fn new(
        id: impl Into<String>,
        tenant: TenantId,
        payload: Payload,
        now: DateTime<Utc>,
    ) -> Self {
        let id = id.into();
        Self {
            correlation_id: id.clone(),
            id,
            tenant,
            attempt: 0,
            created_at: now,
            lane: payload.default_lane(),
            payload,
        }
    }

    pub fn kind(&self) -> &'static str {
        self.payload.kind()
    }

    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(self)
    }

    pub fn from_json(raw: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(raw)
    }
}

/// Publishes messages durably.
///
/// Error contract: returns only after the broker confirmed the message (publisher confirm);
/// `Nacked` when the broker refused it, `ConfirmTimeout` when no confirm came in time,
/// `Unavailable` when the broker cannot be reached. An `Ok` means the message will not be
/// lost.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait Publisher: Send + Sync {
    async fn publish(&self, envelope: &Envelope) -> Result<(), QueueError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_contact_seen_again_after_an_edit_gets_a_sync_of_its_own() {
        let c = GhlContactId::parse("c1").unwrap();
        let t1 = DateTime::parse_from_rfc3339("2026-12-07T10:00:00.123Z")
            .unwrap()
            .to_utc();
        let t2 = t1 + chrono::Duration::milliseconds(1);
        // The same version read again (a page re-read after a crash): one id, let through once.
        assert_eq!(
            sweep_message_id(7, &c, false, Some(t1)),
            sweep_message_id(7, &c, false, Some(t1))
        );
        // Edited meanwhile: a second id, which the inbox does not take for the first.
        assert_ne!(
            sweep_message_id(7, &c, false, Some(t1)),
            sweep_message_id(7, &c, false, Some(t2))
        );
        // Every id still starts with its run's prefix (dead letters are counted per run).
        let prefixes = sweep_message_prefixes(7);
        for id in [
            sweep_message_id(7, &c, false, Some(t2)),
            sweep_message_id(7, &c, false, None),
            sweep_message_id(7, &c, true, None),
        ] {
            assert!(prefixes.iter().any(|p| id.starts_with(p.as_str())), "{id}");
        }
    }

    #[test]
    fn envelopes_round_trip_with_the_design_kinds() {
        let env = Envelope::new(
            "wh-1",
            TenantId::parse("acme").unwrap(),
            Payload::SyncContact {
                contact: GhlContactId::parse("c1").unwrap(),
                dry_run: false,
                prefetched: None,
            },
            chrono::Utc::now(),
        );
        let json = env.to_json().unwrap();
        assert!(json.contains(r#""kind":"sync.contact""#), "{json}");
        assert_eq!(Envelope::from_json(json.as_bytes()).unwrap(), env);
        assert_eq!(env.lane, Lane::Bulk);
    }
}
