//! The composition root of ghl-ekyte-sync: configuration, telemetry, the CLI, and (as they
//! arrive) the queues, the HTTP ingress, the scheduler and the worker. This is the only crate
//! that names concrete adapters.

pub mod cli;
pub mod config;
pub mod queue;
pub mod telemetry;
