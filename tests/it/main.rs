//! The end-to-end suite: the real adapters, store and queues against the simulators, with real
//! PostgreSQL and RabbitMQ on localhost where a test says so.
// Test code: an unwrap that fails is a failed test with a location, which is what we want.
#![allow(clippy::unwrap_used)]

mod app_e2e;
mod console;
mod console_browser;
mod convergence;
mod lifecycle;
mod operator_cli;
mod rate_window;
mod sandbox_cli;
mod security;
mod traces;
