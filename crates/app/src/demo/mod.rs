//! The simulators' commands, `sandbox` (the simulators on their own) and `demo` (the whole
//! service against them), and the simulated world the end-to-end suites and the benchmarks
//! share. Built only with the `simulators` feature (on by default, off in the production
//! image). The demo is a client of the app: it builds an [`App`](crate::wiring::App) and runs
//! its worker and ingress as `run` would; nothing of the app reaches into it.

pub mod run;
mod sandbox;
pub mod sim;
pub mod verify;

use std::process::ExitCode;

use clap::Args;

use crate::config::Config;

pub use sandbox::{SandboxArgs, sandbox};

/// How the demo prints its report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum QueueChoice {
    /// RabbitMQ when it answers on queue.url, else the in-process queue.
    Auto,
    Amqp,
    Memory,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Contacts to seed.
    #[arg(long, default_value_t = 200)]
    pub contacts: usize,
    /// Edits to make on each side after the first sync (default: as many as contacts).
    #[arg(long)]
    pub edits: Option<usize>,
    /// The report's format.
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    pub report: ReportFormat,
    /// Which queue to use.
    #[arg(long, value_enum, default_value_t = QueueChoice::Auto)]
    pub queue: QueueChoice,
    /// Seed for the random edits (the same seed makes the same edits).
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// At the end, scrape the demo's own `/metrics` (over HTTP, as Prometheus would) and
    /// write the text to this file.
    #[arg(long, value_name = "FILE")]
    pub metrics_out: Option<std::path::PathBuf>,
    /// After the report, keep the service running with the operator console on, print its URL
    /// and a login, and stop on Ctrl-C (or SIGTERM).
    #[arg(long)]
    pub console: bool,
}

/// The one-command demo.
pub async fn demo(config: Config, args: DemoArgs) -> anyhow::Result<ExitCode> {
    run::run(config, args).await
}
