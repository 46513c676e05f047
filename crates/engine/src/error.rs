//! The engine's error, classified once for the worker (retry / dead-letter / skip).

use std::time::Duration;

use domain::TenantId;
use ports::{ApiError, Classify, Disposition, QueueError, StoreError};

/// Why handling a message failed. Every case keeps its cause.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("GHL {op} failed")]
    Ghl {
        op: &'static str,
        #[source]
        source: ApiError,
    },

    #[error("eKyte {op} failed")]
    Ekyte {
        op: &'static str,
        #[source]
        source: ApiError,
    },

    #[error("store {op} failed")]
    Store {
        op: &'static str,
        #[source]
        source: StoreError,
    },

    #[error("publishing failed")]
    Queue(#[source] QueueError),

    /// Another worker holds the contact or the claim; try again shortly. `stale_at`: when the
    /// claim it holds turns stale and may be taken over (none for a lock).
    #[error("busy: {what}")]
    Busy {
        what: String,
        stale_at: Option<chrono::DateTime<chrono::Utc>>,
    },

    /// The message names a tenant this deployment does not know.
    #[error("unknown tenant {0}")]
    UnknownTenant(TenantId),

    /// The tenant is uninstalled (or paused): its queued messages are skipped, not retried
    /// and not dead-lettered; a reinstall's sync catches up.
    #[error("tenant {0} is not active (uninstalled or paused)")]
    InactiveTenant(TenantId),

    /// The tenant's settings do not allow the work (an eKyte task type is missing, say).
    #[error("tenant configuration: {0}")]
    Config(String),
}

impl SyncError {
    pub fn ghl(op: &'static str) -> impl FnOnce(ApiError) -> Self {
        move |source| Self::Ghl { op, source }
    }

    pub fn ekyte(op: &'static str) -> impl FnOnce(ApiError) -> Self {
        move |source| Self::Ekyte { op, source }
    }

    pub fn store(op: &'static str) -> impl FnOnce(StoreError) -> Self {
        move |source| Self::Store { op, source }
    }

    /// The API error inside, if any.
    pub fn api(&self) -> Option<&ApiError> {
        match self {
            Self::Ghl { source, .. } | Self::Ekyte { source, .. } => Some(source),
            _ => None,
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.api().is_some_and(ApiError::is_not_found)
    }

    /// Busy with a claim `by` has held `since`: until it turns stale after `stale_after`.
    pub(crate) fn claimed(
        what: String,
        since: chrono::DateTime<chrono::Utc>,
        stale_after: Duration,
    ) -> Self {
        Self::Busy {
            what,
            stale_at: chrono::Duration::from_std(stale_after)
                .ok()
                .map(|d| since + d),
        }
    }

    pub fn is_unsupported(&self) -> bool {
        matches!(self.api(), Some(ApiError::Unsupported { .. }))
    }

    /// The error and its causes, outermost first (for dead letters and audit entries).
    pub fn chain(&self) -> Vec<String> {
        let mut out = vec![self.to_string()];
        let mut cur: Option<&dyn std::error::Error> = std::error::Error::source(self);
        while let Some(e) = cur {
            out.push(e.to_string());
            cur = e.source();
        }
        out
    }
}

impl Classify for SyncError {
    fn disposition(&self) -> Disposition {
        match self {
            Self::Ghl { source, .. } | Self::Ekyte { source, .. } => source.disposition(),
            Self::Store { source, .. } => source.disposition(),
            Self::Queue(q) => q.disposition(),
            Self::Busy {
                stale_at: Some(until),
                ..
            } => Disposition::Wait { until: *until },
            Self::Busy { stale_at: None, .. } => Disposition::Retry {
                after: Some(Duration::from_secs(1)),
            },
            Self::UnknownTenant(_) | Self::Config(_) => Disposition::DeadLetter,
            Self::InactiveTenant(_) => Disposition::Skip,
        }
    }
}
