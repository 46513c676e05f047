//! The eKyte adapter's integration tests: against the eKyte simulator (`sandbox::ekyte`) over
//! real HTTP on loopback, and against `wiremock` fakes for answers the simulator does not give
//! on demand (SSE framing, exact error bodies, failures at chosen requests).

// Tests may unwrap: a panic with the value is the failure report.
#![allow(clippy::unwrap_used)]

mod capabilities;
mod identity;
mod operations;
mod poll;
mod support;
mod timezone;
mod wire;
