//! Request counters per route template and status, plus named event counters.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use serde::Serialize;

/// A route as the simulator's router names it: method plus the path template.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct RouteKey {
    pub method: String,
    pub route: String,
}

impl RouteKey {
    pub fn new(method: impl Into<String>, route: impl Into<String>) -> Self {
        Self {
            method: method.into(),
            route: route.into(),
        }
    }
}

impl std::fmt::Display for RouteKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.method, self.route)
    }
}

#[derive(Debug, Default)]
struct Inner {
    by_route: BTreeMap<RouteKey, BTreeMap<u16, u64>>,
    events: BTreeMap<String, u64>,
}

/// Thread-safe counters shared by a simulator's handlers and its control API.
#[derive(Debug, Clone, Default)]
pub struct Counters {
    inner: Arc<Mutex<Inner>>,
}

/// A copy of the counters at one moment, as the control API serves it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CounterSnapshot {
    /// `"METHOD /route"` → status → count.
    pub routes: BTreeMap<String, BTreeMap<u16, u64>>,
    /// Named events (`webhooks_sent`, `rate_limited_earned`, …) → count.
    pub events: BTreeMap<String, u64>,
}

impl CounterSnapshot {
    /// Requests served on one route, whatever their status.
    pub fn route_total(&self, method: &str, route: &str) -> u64 {
        self.routes
            .get(&format!("{method} {route}"))
            .map(|by_status| by_status.values().sum())
            .unwrap_or(0)
    }

    /// All requests served, every route and status.
    pub fn total_requests(&self) -> u64 {
        self.routes.values().flat_map(|s| s.values()).sum()
    }

    /// Requests answered with one status, every route.
    pub fn status_total(&self, status: u16) -> u64 {
        self.routes.values().filter_map(|s| s.get(&status)).sum()
    }

    /// A named event count (0 when it never happened).
    pub fn event(&self, name: &str) -> u64 {
        self.events.get(name).copied().unwrap_or(0)
    }
}

impl Counters {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic in another handler must not take the counters down with it.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Count one served request.
    pub fn record(&self, key: RouteKey, status: u16) {
        *self
            .lock()
            .by_route
            .entry(key)
            .or_default()
            .entry(status)
            .or_default() += 1;
    }

    /// Count a named event.
    pub fn bump(&self, event: &str) {
        self.add(event, 1);
    }

    /// Add `n` to a named event.
    pub fn add(&self, event: &str, n: u64) {
        *self.lock().events.entry(event.to_owned()).or_default() += n;
    }

    pub fn snapshot(&self) -> CounterSnapshot {
        let inner = self.lock();
        CounterSnapshot {
            routes: inner
                .by_route
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
            events: inner.events.clone(),
        }
    }

    pub fn reset(&self) {
        let mut inner = self.lock();
        inner.by_route.clear();
        inner.events.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_route_and_status() {
        let c = Counters::new();
        c.record(RouteKey::new("GET", "/contacts/{contactId}"), 200);
        c.record(RouteKey::new("GET", "/contacts/{contactId}"), 404);
        c.record(RouteKey::new("POST", "/contacts/"), 201);
        c.bump("webhooks_sent");
        let s = c.snapshot();
        assert_eq!(s.route_total("GET", "/contacts/{contactId}"), 2);
        assert_eq!(s.total_requests(), 3);
        assert_eq!(s.status_total(404), 1);
        assert_eq!(s.event("webhooks_sent"), 1);
        assert_eq!(s.event("never"), 0);
        c.reset();
        assert_eq!(c.snapshot().total_requests(), 0);
    }
}
