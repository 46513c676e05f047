//! The composition root of ghl-ekyte-sync: configuration, telemetry, the CLI, and (as they
//! arrive) the queues, the HTTP ingress, the scheduler and the worker. This is the only crate
//! that names concrete adapters.

pub mod admin;
pub mod agency;
pub mod cli;
pub mod config;
pub mod console;
#[cfg(feature = "simulators")]
pub mod demo;
pub mod fair;
pub mod ingress;
pub mod metrics;
pub mod oauth_state;
pub mod observe;
pub mod operator;
pub mod queue;
pub mod scheduler;
pub mod signals;
pub mod telemetry;
pub mod wiring;
pub mod worker;
