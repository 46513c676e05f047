//! Integration tests of the GHL adapter: against the GHL simulator (`sandbox::ghl`) for
//! behaviour, and against wiremock for faults the simulator does not produce on demand.
//! Everything talks to loopback only.

// Tests may unwrap: a panic with the value is the failure report.
#![allow(clippy::unwrap_used)]

mod endpoints;
mod faults;
mod rate;
mod support;
mod tokens;
mod webhooks;
