//! Pieces both simulators share: request counters, fault injection and a server handle.
//!
//! Counters are keyed by the matched route template (`POST /contacts/:contactId/tasks`), not by
//! the raw path, so a test can ask "was this endpoint ever called" without knowing ids.

mod counters;
mod faults;
mod server;

pub use counters::{CounterSnapshot, Counters, RouteKey};
pub use faults::{FaultConfig, FaultDecision, FaultOutcome, Faults, LatencyProfile, RouteFault};
pub use server::{ServerHandle, serve};
