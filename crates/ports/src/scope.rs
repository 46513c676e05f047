//! Who a port call is for, and how urgent it is.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use domain::Tenant;

/// Real-time work (webhooks, eKyte changes) goes before bulk work (full syncs) when both wait
/// for the GHL rate budget (M9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Priority {
    RealTime,
    Bulk,
}

/// The tenant a call is made for, with its settings, and the call's priority. Adapters find
/// the tenant's credentials through the credential store by `tenant.id`, and count each
/// request they send on `calls` (shared by the scope's clones and [`Self::bulk`]; see
/// [`Self::counted`]).
#[derive(Debug, Clone)]
pub struct Scope {
    pub tenant: Arc<Tenant>,
    pub priority: Priority,
    pub calls: Arc<CallMeter>,
}

impl Scope {
    pub fn new(tenant: Arc<Tenant>, priority: Priority) -> Self {
        Self {
            tenant,
            priority,
            calls: Arc::default(),
        }
    }

    pub fn bulk(&self) -> Self {
        Self {
            priority: Priority::Bulk,
            ..self.clone()
        }
    }

    /// The same scope with a meter of its own, at zero (one use case's calls).
    pub fn counted(&self) -> Self {
        Self {
            calls: Arc::default(),
            ..self.clone()
        }
    }
}

/// Requests sent to each vendor for one scope.
#[derive(Debug, Default)]
pub struct CallMeter {
    ghl: AtomicU32,
    ekyte: AtomicU32,
}

impl CallMeter {
    pub fn ghl(&self) {
        self.ghl.fetch_add(1, Ordering::Relaxed);
    }

    pub fn ekyte(&self) {
        self.ekyte.fetch_add(1, Ordering::Relaxed);
    }

    /// (GHL, eKyte) requests counted so far.
    pub fn counts(&self) -> (u32, u32) {
        (
            self.ghl.load(Ordering::Relaxed),
            self.ekyte.load(Ordering::Relaxed),
        )
    }
}
