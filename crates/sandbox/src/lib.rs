//! Faithful simulators of the two vendors this service talks to: GoHighLevel (the LeadConnector
//! API v2) and eKyte (its public BI API, its automation API and its MCP endpoint).
//!
//! Each simulator is an axum HTTP server with in-memory data, written from the API documents in
//! `shared/ghl/API.md` and `shared/ekyte/API.md`. Both have a control API (seed data, act as a
//! person in the vendor's UI, read counters) and fault injection (latency, error rates, 429
//! bursts), so tests, the demo and the benchmarks can run without any vendor account.
//!
//! This crate shares no code with the adapters (`crates/ghl`, `crates/ekyte`): when an adapter
//! misreads the documents, the simulator does not make the same mistake silently.

pub mod common;
pub mod ekyte;
pub mod ghl;
pub mod variants;
