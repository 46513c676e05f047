//! `sandbox` (the simulators on their own) and `demo` (the whole service against them).

use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use crate::config::Config;

#[derive(Debug, Args)]
pub struct SandboxArgs {
    /// Port of the GHL simulator (0 = any free port).
    #[arg(long, default_value_t = 0)]
    pub ghl_port: u16,
    /// Port of the eKyte simulator (0 = any free port).
    #[arg(long, default_value_t = 0)]
    pub ekyte_port: u16,
    /// Interface to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: std::net::IpAddr,
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
    #[arg(long, value_enum, default_value_t = crate::cli::ReportFormat::Text)]
    pub report: crate::cli::ReportFormat,
    /// Which queue to use.
    #[arg(long, value_enum, default_value_t = QueueChoice::Auto)]
    pub queue: QueueChoice,
    /// Seed for the random edits (the same seed makes the same edits).
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
}

/// Serve both simulators until Ctrl-C, with a default eKyte company seeded.
pub async fn sandbox(args: SandboxArgs) -> anyhow::Result<ExitCode> {
    let ghl = sandbox::ghl::GhlSandbox::start(sandbox::ghl::GhlConfig {
        host: args.host.to_string(),
        port: args.ghl_port,
        ..sandbox::ghl::GhlConfig::default()
    })
    .await
    .context("cannot start the GHL simulator (is the port free?)")?;
    let ekyte = sandbox::ekyte::EkyteSandbox::start(sandbox::ekyte::EkyteConfig {
        host: args.host,
        port: args.ekyte_port,
        ..sandbox::ekyte::EkyteConfig::default()
    })
    .await
    .context("cannot start the eKyte simulator (is the port free?)")?;
    let company = ekyte
        .seed_default_company()
        .map_err(|e| anyhow::anyhow!("seeding the eKyte company: {e:?}"))?;
    println!(
        "GHL simulator:   {}   (control API under /_control)",
        ghl.base_url()
    );
    println!(
        "eKyte simulator: {}   (control API under /_control)",
        ekyte.base_url()
    );
    println!(
        "eKyte company {} seeded: task type {}, workspace {}",
        company.company_id, company.task_type_id, company.workspace_id
    );
    println!("Ctrl-C stops both.");
    let stop = crate::cli::shutdown_on_signals();
    stop.cancelled().await;
    ghl.shutdown().await?;
    ekyte.shutdown().await?;
    Ok(ExitCode::SUCCESS)
}

/// The one-command demo.
pub async fn demo(config: Config, args: DemoArgs) -> anyhow::Result<ExitCode> {
    crate::demo_run::run(config, args).await
}
