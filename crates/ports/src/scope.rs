//! Who a port call is for, and how urgent it is.

use std::sync::Arc;

use domain::Tenant;

/// Real-time work (webhooks, eKyte changes) goes before bulk work (full syncs) when both wait
/// for the GHL rate budget (M9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Priority {
    RealTime,
    Bulk,
}

/// The tenant a call is made for, with its settings, and the call's priority. Adapters find
/// the tenant's credentials through the credential store by `tenant.id`.
#[derive(Debug, Clone)]
pub struct Scope {
    pub tenant: Arc<Tenant>,
    pub priority: Priority,
}

impl Scope {
    pub fn new(tenant: Arc<Tenant>, priority: Priority) -> Self {
        Self { tenant, priority }
    }

    pub fn bulk(&self) -> Self {
        Self {
            tenant: self.tenant.clone(),
            priority: Priority::Bulk,
        }
    }
}
