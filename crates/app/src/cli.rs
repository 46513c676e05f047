//! The command line (clap). Every command loads and validates the configuration first, so a
//! mistake in it is reported before anything starts. Every error says what failed and what to
//! do; lists print as tables, or JSON with `--json`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use tokio_util::sync::CancellationToken;

use domain::{EkyteCompanyId, LocationId, Tenant, TenantId, TenantSettings};
use ports::store::{
    AgencyStore, AuditLog, CredentialStore, DeadLetterStore, Provider, RunStore, TenantStore,
};
use ports::{Priority, Scope};

use crate::admin::{self, add_tenant};
use crate::config::Config;
use crate::operator;
use crate::scheduler::{Job, enqueue};
use crate::signals::shutdown_on_signals;
use crate::wiring::{self, App};

/// Exit code for an unusable configuration (sysexits' EX_CONFIG).
pub const EXIT_CONFIG: u8 = 78;

#[derive(Debug, Parser)]
#[command(
    name = "ghl-ekyte-sync",
    version,
    about = "Keeps GoHighLevel and eKyte in sync, both ways.",
    long_about = None
)]
pub struct Cli {
    /// A TOML file layered over the built-in defaults (also GES_CONFIG).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Everything in one process: worker, ingress and scheduler.
    Run(RunArgs),
    /// Consume messages and sync (scale by adding workers); serves /healthz, /readyz and
    /// /metrics on http.bind.
    Worker(WorkerArgs),
    /// Serve webhooks, the OAuth callback, health and metrics.
    Ingress,
    /// Apply the database migrations (under a lock; safe to run from several places).
    Migrate,
    /// Full, incremental or one-contact sync.
    #[command(subcommand)]
    Sync(SyncCommand),
    /// Enqueue an eKyte poll for every active tenant (or one).
    PollEkyte(TenantFilter),
    /// Inspect and replay dead letters.
    #[command(subcommand)]
    Dlq(DlqCommand),
    /// Add and list tenants (one GHL location ↔ one eKyte company).
    #[command(subcommand)]
    Tenants(TenantsCommand),
    /// Stored credentials: re-seal them under the current encryption key after a rotation.
    #[command(subcommand)]
    Credentials(CredentialsCommand),
    /// GHL OAuth: the installation link, or a manual code exchange.
    #[command(subcommand)]
    Oauth(OauthCommand),
    /// Tenants, queues, dead letters and the last runs.
    Status(JsonFlag),
    /// The operator console's accounts.
    #[command(subcommand)]
    Console(ConsoleCommand),
    /// Serve the GHL and eKyte simulators and print what a client needs to call them.
    #[cfg(feature = "simulators")]
    Sandbox(crate::demo::SandboxArgs),
    /// The whole thing against the simulators, with a convergence report.
    #[cfg(feature = "simulators")]
    Demo(crate::demo::DemoArgs),
    /// Not in this build: it has no simulators (see `demo`).
    #[cfg(not(feature = "simulators"))]
    Sandbox(NotBuilt),
    /// Not in this build: the production build carries no simulators; a build from source
    /// with the default features (`cargo run --release -- demo`) has them.
    #[cfg(not(feature = "simulators"))]
    Demo(NotBuilt),
    /// Inspect the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
}

/// The arguments of a command this build does not have, taken whole so that the command can
/// say why instead of clap calling its arguments unknown.
#[cfg(not(feature = "simulators"))]
#[derive(Debug, Args)]
pub struct NotBuilt {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    pub rest: Vec<String>,
}

/// What `demo` and `sandbox` say in a build without the simulators.
#[cfg(not(feature = "simulators"))]
pub const NO_SIMULATORS: &str = "this build has no simulators (the production build leaves them out); for the demo and the sandbox, build from source with the default features: `cargo run --release -- demo`";

#[derive(Debug, Args)]
pub struct JsonFlag {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct TenantFilter {
    /// Only this tenant (default: every active tenant).
    #[arg(long)]
    pub tenant: Option<String>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Do not schedule syncs and polls in-process (Kubernetes CronJobs do it).
    #[arg(long)]
    pub no_scheduler: bool,
    #[command(flatten)]
    pub worker: WorkerArgs,
}

#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// Consumer tag prefix; a unique suffix is added (each pod its own).
    #[arg(long, env = "HOSTNAME", default_value = "worker")]
    pub consumer_tag: String,
}

#[derive(Debug, Subcommand)]
pub enum SyncCommand {
    /// Enqueue a full sync (every selected contact, tasks and notes compared).
    Full(SweepArgs),
    /// Enqueue an incremental sync (contacts updated since the last sync).
    Incremental(SweepArgs),
    /// Sync one contact now and print what was done (or, with --dry-run, planned).
    Contact(ContactArgs),
}

#[derive(Debug, Args)]
pub struct SweepArgs {
    #[command(flatten)]
    pub filter: TenantFilter,
    /// Plan and audit only; write nothing to GHL or eKyte.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct ContactArgs {
    /// The GHL contact id.
    pub contact: String,
    #[arg(long)]
    pub tenant: String,
    #[arg(long)]
    pub dry_run: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// Dead letters, newest first, a page at a time (or, with --summary, counted per tenant
    /// and error class).
    List {
        #[arg(long)]
        tenant: Option<String>,
        /// Include the ones already replayed.
        #[arg(long)]
        all: bool,
        /// At most this many (a page).
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..))]
        limit: u32,
        /// Only the ones older than this id: the next page after a page ending at it.
        #[arg(long, value_name = "ID")]
        before: Option<i64>,
        /// Count them per tenant and error class instead of listing them.
        #[arg(long, conflicts_with = "before")]
        summary: bool,
        #[arg(long)]
        json: bool,
    },
    /// One dead letter with its error chain and message.
    Show {
        id: i64,
        #[arg(long)]
        json: bool,
    },
    /// Publish dead letters again (attempt reset) and mark them replayed.
    Replay {
        /// Ids to replay.
        ids: Vec<i64>,
        /// Replay every dead letter not replayed yet (of one tenant with --tenant).
        #[arg(long, conflicts_with = "ids")]
        all: bool,
        #[arg(long)]
        tenant: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum TenantsCommand {
    /// Add (or update) a tenant with its eKyte credentials and, optionally, a GHL Private
    /// Integration Token (without one, install the GHL app with `oauth url`).
    Add(Box<TenantAddArgs>),
    /// Every tenant: its state, install, GHL token expiry and eKyte company; and the
    /// locations an agency install approved that are pending (no eKyte company yet).
    List(JsonFlag),
    /// Give a pending location (approved by an agency install, see `tenants list`) its eKyte
    /// company: its tenant is checked like `tenants add` checks one, stored and active.
    Map(Box<TenantMapArgs>),
}

/// A tenant's eKyte keys (secrets: from the environment, never echoed).
#[derive(Debug, Args)]
pub struct EkyteKeys {
    /// eKyte company API key.
    #[arg(long, env = "GES_TENANT_EKYTE_API_KEY", hide_env_values = true)]
    pub ekyte_api_key: Option<String>,
    /// eKyte personal MCP token (allows updates, comments, deactivation).
    #[arg(long, env = "GES_TENANT_EKYTE_MCP_TOKEN", hide_env_values = true)]
    pub ekyte_mcp_token: Option<String>,
}

#[derive(Debug, Args)]
pub struct TenantMapArgs {
    /// The pending GHL location (sub-account) id.
    #[arg(long)]
    pub location: String,
    /// The eKyte company id (Minha Empresa) its clients go to.
    #[arg(long)]
    pub ekyte_company: u64,
    /// Our id for the tenant (default: `loc-` and the location id in lower case).
    #[arg(long)]
    pub id: Option<String>,
    /// Default: the location's name in GHL.
    #[arg(long)]
    pub name: Option<String>,
    /// Tenant settings (mapping, selector, onboarding, policy) as a TOML or JSON file.
    #[arg(long)]
    pub settings: Option<PathBuf>,
    /// Without an API key: the keys of a tenant already on that eKyte company.
    #[command(flatten)]
    pub ekyte: EkyteKeys,
    /// Store it without asking eKyte whether the key, the user email and the task type work.
    #[arg(long)]
    pub no_check: bool,
}

#[derive(Debug, Args)]
pub struct TenantAddArgs {
    /// Our id for the tenant: lower-case letters, digits, '-' and '_'.
    #[arg(long)]
    pub id: String,
    #[arg(long)]
    pub name: Option<String>,
    /// The GHL location (sub-account) id.
    #[arg(long)]
    pub location: String,
    /// The eKyte company id (Minha Empresa).
    #[arg(long)]
    pub ekyte_company: u64,
    /// Tenant settings (mapping, selector, onboarding, policy) as a TOML or JSON file.
    #[arg(long)]
    pub settings: Option<PathBuf>,
    #[command(flatten)]
    pub ekyte: EkyteKeys,
    /// A GHL Private Integration Token for the location.
    #[arg(long, env = "GES_TENANT_GHL_TOKEN", hide_env_values = true)]
    pub ghl_private_token: Option<String>,
    /// Add it inactive (nothing syncs until activated by an install).
    #[arg(long)]
    pub inactive: bool,
    /// The location belongs to this GHL company, which installed the app agency-wide
    /// (`oauth url --agency`): its GHL calls use location tokens minted from the agency's.
    #[arg(long)]
    pub agency_company: Option<String>,
    /// Store it without asking eKyte whether the key, the user email and the task type work
    /// (for a machine that cannot reach eKyte; the settings are still checked).
    #[arg(long)]
    pub no_check: bool,
}

#[derive(Debug, Subcommand)]
pub enum OauthCommand {
    /// Print the link that installs the GHL app on the tenant's location.
    Url {
        /// The tenant whose location is installed.
        #[arg(long, required_unless_present = "agency", conflicts_with = "agency")]
        tenant: Option<String>,
        /// An agency-wide install: the agency approves its locations, and each one with a
        /// tenant (`tenants add --agency-company`) is connected.
        #[arg(long)]
        agency: bool,
    },
    /// Exchange an authorisation code by hand and store the tokens.
    Exchange {
        #[arg(long)]
        tenant: String,
        #[arg(long, env = "GES_OAUTH_CODE", hide_env_values = true)]
        code: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum CredentialsCommand {
    /// Re-seal every stored credential under `crypto.key` (id `crypto.key_id`), so the keys
    /// in `crypto.old_keys` can be removed. Safe while workers run and safe to repeat; exits
    /// non-zero while any row is still sealed under another key.
    Reseal(JsonFlag),
}

#[derive(Debug, Subcommand)]
pub enum ConsoleCommand {
    /// Read a password on standard input (one line) and print its argon2 hash, for a
    /// `[[console.accounts]]` entry's `password_hash`.
    HashPassword,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the effective configuration (secrets redacted); exit non-zero when it is invalid.
    Check {
        /// Print JSON instead of TOML.
        #[arg(long)]
        json: bool,
    },
}

/// Parse the arguments, run the command, and turn the outcome into an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            eprintln!(
                "hint: the commented defaults are in crates/app/config/default.toml; `ghl-ekyte-sync config check` prints the effective configuration"
            );
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if let Command::Config(ConfigCommand::Check { json }) = cli.command {
        return config_check(&config, json);
    }
    if let Command::Console(ConsoleCommand::HashPassword) = cli.command {
        return hash_password();
    }
    // The services log as configured; every other command is one-shot, read by a person (the
    // demo prints its own report): human form, warnings only unless asked (telemetry.rs).
    let profile = match cli.command {
        Command::Run(_) | Command::Worker(_) | Command::Ingress => {
            crate::telemetry::Profile::Service
        }
        _ => crate::telemetry::Profile::Command,
    };
    let telemetry = config.telemetry.clone();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Inside the runtime: the trace exporter sends on it.
    let traces = match runtime.block_on(async { crate::telemetry::init_for(&telemetry, profile) }) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let code = match runtime.block_on(dispatch(config, cli.command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    };
    // From outside the runtime's threads, while it still runs the exporter's requests.
    traces.shutdown();
    code
}

fn config_check(config: &Config, json: bool) -> ExitCode {
    let view = config.redacted();
    let printed = if json {
        serde_json::to_string_pretty(&view).map_err(|e| e.to_string())
    } else {
        toml::to_string_pretty(&view).map_err(|e| e.to_string())
    };
    match printed {
        Ok(text) => {
            println!("{text}");
            eprintln!("configuration is valid");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: cannot print the configuration: {e}");
            ExitCode::FAILURE
        }
    }
}

fn tenant_id(raw: &str) -> anyhow::Result<TenantId> {
    TenantId::parse(raw).with_context(|| format!("--tenant {raw:?}"))
}

async fn app(config: Config) -> anyhow::Result<App> {
    let ring = wiring::keyring(&config, false)?;
    let store = wiring::connect_store(&config, ring).await?;
    let broker = wiring::broker(&config).await?;
    App::build(config, store, broker).await
}

fn consumer_tag(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

async fn dispatch(config: Config, command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Config(_) | Command::Console(_) => {
            unreachable!("handled before the runtime starts")
        }
        Command::Migrate => {
            let url = secrecy::ExposeSecret::expose_secret(&config.database.url).to_owned();
            let report = store::migrate_url(&url)
                .await
                .with_context(|| format!("migrating {} failed", crate::config::mask_url(&url)))?;
            if report.applied.is_empty() {
                println!("the schema is current; nothing to apply");
            } else {
                println!(
                    "applied {} migration(s): {}",
                    report.applied.len(),
                    report.applied.join(", ")
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Run(args) => {
            let app = app(config).await?;
            let shutdown = shutdown_on_signals();
            run_all(app, args, shutdown).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Worker(args) => {
            let app = app(config).await?;
            let shutdown = shutdown_on_signals();
            // Health and metrics for the probes and Prometheus; no webhook routes.
            let listener = tokio::net::TcpListener::bind(app.config.http.bind)
                .await
                .with_context(|| {
                    format!("cannot listen on {} (http.bind)", app.config.http.bind)
                })?;
            let health = tokio::spawn(crate::ingress::serve(
                listener,
                crate::ingress::health_router(app.health()),
                shutdown.clone(),
            ));
            app.worker(consumer_tag(&args.consumer_tag))
                .run(shutdown)
                .await?;
            health.await.context("health server task")??;
            Ok(ExitCode::SUCCESS)
        }
        Command::Ingress => {
            let app = app(config).await?;
            let shutdown = shutdown_on_signals();
            let listener = tokio::net::TcpListener::bind(app.config.http.bind)
                .await
                .with_context(|| {
                    format!("cannot listen on {} (http.bind)", app.config.http.bind)
                })?;
            crate::ingress::serve(listener, app.ingress()?, shutdown).await?;
            app.broker.close().await;
            Ok(ExitCode::SUCCESS)
        }
        Command::Sync(SyncCommand::Full(a)) => sweep_cmd(config, Job::Full, a).await,
        Command::Sync(SyncCommand::Incremental(a)) => sweep_cmd(config, Job::Incremental, a).await,
        Command::Sync(SyncCommand::Contact(a)) => sync_contact(config, a).await,
        Command::PollEkyte(f) => {
            let app = app(config).await?;
            let only = f.tenant.as_deref().map(tenant_id).transpose()?;
            let n = enqueue(
                Job::Poll,
                only.as_ref(),
                app.store.as_ref(),
                app.broker.as_ref(),
                app.clock.now(),
                false,
            )
            .await?;
            println!("enqueued an eKyte poll for {n} tenant(s)");
            app.broker.close().await;
            Ok(ExitCode::SUCCESS)
        }
        Command::Dlq(cmd) => dlq(config, cmd).await,
        Command::Tenants(cmd) => tenants(config, cmd).await,
        Command::Credentials(cmd) => credentials(config, cmd).await,
        Command::Oauth(cmd) => oauth(config, cmd).await,
        Command::Status(f) => status(config, f.json).await,
        #[cfg(feature = "simulators")]
        Command::Sandbox(args) => crate::demo::sandbox(args).await,
        #[cfg(feature = "simulators")]
        Command::Demo(args) => crate::demo::demo(config, args).await,
        #[cfg(not(feature = "simulators"))]
        Command::Sandbox(_) | Command::Demo(_) => bail!(NO_SIMULATORS),
    }
}

/// Worker + ingress + scheduler in one process, until `shutdown`.
pub async fn run_all(app: App, args: RunArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(app.config.http.bind)
        .await
        .with_context(|| format!("cannot listen on {} (http.bind)", app.config.http.bind))?;
    let router = app.ingress()?;
    let ingress = tokio::spawn(crate::ingress::serve(listener, router, shutdown.clone()));
    if app.config.scheduler.enabled && !args.no_scheduler {
        tokio::spawn(crate::scheduler::run(
            app.config.scheduler.clone(),
            app.store.clone(),
            app.broker.clone(),
            app.clock.clone(),
            shutdown.clone(),
        ));
    }
    app.worker(consumer_tag(&args.worker.consumer_tag))
        .run(shutdown.clone())
        .await?;
    ingress.await.context("ingress task")??;
    Ok(())
}

async fn sweep_cmd(config: Config, job: Job, a: SweepArgs) -> anyhow::Result<ExitCode> {
    let app = app(config).await?;
    let only = a.filter.tenant.as_deref().map(tenant_id).transpose()?;
    let n = enqueue(
        job,
        only.as_ref(),
        app.store.as_ref(),
        app.broker.as_ref(),
        app.clock.now(),
        a.dry_run,
    )
    .await?;
    println!(
        "enqueued a {} sync{} for {n} tenant(s); workers run it",
        job.name(),
        if a.dry_run { " (dry run)" } else { "" }
    );
    app.broker.close().await;
    Ok(ExitCode::SUCCESS)
}

async fn sync_contact(config: Config, a: ContactArgs) -> anyhow::Result<ExitCode> {
    let app = app(config).await?;
    let tenant = tenant_id(&a.tenant)?;
    let contact = domain::GhlContactId::parse(&a.contact).context("contact id")?;
    let scope = app.engine.scope(&tenant, Priority::RealTime).await?;
    let report = app
        .engine
        .sync_contact(
            scope,
            &contact,
            engine::Options {
                dry_run: a.dry_run,
                message_id: Some(format!("cli:{}", uuid::Uuid::new_v4())),
                ..engine::Options::default()
            },
        )
        .await
        .map_err(|e| anyhow::anyhow!(e.chain().join(": ")))?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let mut t = Table::new();
        t.load_preset(UTF8_FULL_CONDENSED);
        t.set_header([
            "side", "entity", "action", "ghl id", "ekyte id", "fields", "reason",
        ]);
        for l in &report.lines {
            t.add_row([
                l.target.map(|s| s.to_string()).unwrap_or_default(),
                l.kind.to_string(),
                l.action.as_str().to_owned(),
                l.ghl_id.clone().unwrap_or_default(),
                l.ekyte_id.clone().unwrap_or_default(),
                l.fields.join(", "),
                l.reason.clone().unwrap_or_default(),
            ]);
        }
        println!("{t}");
        println!(
            "{} write(s){}",
            report.writes(),
            if a.dry_run {
                " planned (dry run: nothing written)"
            } else {
                ""
            }
        );
    }
    app.broker.close().await;
    Ok(ExitCode::SUCCESS)
}

async fn dlq(config: Config, cmd: DlqCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        DlqCommand::List {
            tenant,
            all,
            limit,
            before,
            summary,
            json,
        } => {
            let ring = wiring::keyring(&config, true)?;
            let store = wiring::connect_store(&config, ring).await?;
            let tenant = tenant.as_deref().map(tenant_id).transpose()?;
            if summary {
                let groups = DeadLetterStore::summary(store.as_ref(), tenant, all, None).await?;
                let summary = operator::DeadLetterSummary::new(groups);
                if json {
                    println!("{}", serde_json::to_string_pretty(&summary)?);
                } else {
                    println!("{}", summary.table());
                }
                return Ok(ExitCode::SUCCESS);
            }
            // One more than the page: whether there is a next page, without pointing at an
            // empty one.
            let mut list =
                DeadLetterStore::list(store.as_ref(), tenant, all, before, limit.saturating_add(1))
                    .await?;
            let more = list.len() > limit as usize;
            list.truncate(limit as usize);
            let rows: Vec<operator::DeadLetterRow> = list.iter().map(Into::into).collect();
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                println!("{}", operator::dead_letters_page(&rows, more));
            }
            Ok(ExitCode::SUCCESS)
        }
        DlqCommand::Show { id, json } => {
            let ring = wiring::keyring(&config, true)?;
            let store = wiring::connect_store(&config, ring).await?;
            let d = DeadLetterStore::get(store.as_ref(), id)
                .await
                .with_context(|| format!("dead letter {id} (see `dlq list`)"))?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({
                        "id": d.id, "tenant": d.letter.tenant, "message_id": d.letter.message_id,
                        "kind": d.letter.kind, "attempts": d.letter.attempts,
                        "error_chain": d.letter.error_chain, "envelope": d.letter.envelope,
                        "created_at": d.created_at, "replayed_at": d.replayed_at,
                    }))?
                );
            } else {
                println!(
                    "dead letter {} ({}), message {}",
                    d.id, d.letter.kind, d.letter.message_id
                );
                println!("attempts: {}", d.letter.attempts);
                println!("error chain:");
                for (i, e) in d.letter.error_chain.iter().enumerate() {
                    println!("  {i}: {e}");
                }
                println!("message:\n{}", d.letter.envelope);
            }
            Ok(ExitCode::SUCCESS)
        }
        DlqCommand::Replay { ids, all, tenant } => {
            let app = app(config).await?;
            let n = replay(&app, ids, all, tenant.as_deref()).await?;
            println!("replayed {n} dead letter(s)");
            app.broker.close().await;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Publish dead letters again with the attempt reset, and mark them replayed.
pub async fn replay(
    app: &App,
    ids: Vec<i64>,
    all: bool,
    tenant: Option<&str>,
) -> anyhow::Result<usize> {
    let store: &dyn DeadLetterStore = app.store.as_ref();
    let ids = if all {
        let tenant = tenant.map(tenant_id).transpose()?;
        store
            .list(tenant, false, None, 10_000)
            .await?
            .into_iter()
            .map(|d| d.id)
            .collect()
    } else {
        ids
    };
    if ids.is_empty() {
        bail!("name dead letters to replay (ids, or --all); `dlq list` shows them");
    }
    let mut n = 0;
    for id in ids {
        if admin::replay_one(store, app.broker.as_ref(), id).await? {
            n += 1;
        } else {
            eprintln!("dead letter {id} was replayed already; skipped");
        }
    }
    Ok(n)
}

fn read_settings(path: &std::path::Path) -> anyhow::Result<TenantSettings> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let settings: TenantSettings = if path.extension().is_some_and(|e| e == "json") {
        serde_json::from_str(&text)
            .with_context(|| format!("{} is not valid tenant settings", path.display()))?
    } else {
        toml::from_str(&text)
            .with_context(|| format!("{} is not valid tenant settings", path.display()))?
    };
    settings
        .validate()
        .with_context(|| format!("{}", path.display()))?;
    Ok(settings)
}

async fn credentials(config: Config, cmd: CredentialsCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        CredentialsCommand::Reseal(f) => {
            let ring = wiring::keyring(&config, false)?;
            let store = wiring::connect_store(&config, ring).await?;
            store
                .ensure_schema_current()
                .await
                .context("the database schema is not current: run `ghl-ekyte-sync migrate`")?;
            let report = store.reseal_credentials().await.context(
                "re-sealing the credentials (a key the keyring lacks goes in crypto.old_keys)",
            )?;
            let others: Vec<String> = report
                .by_key
                .iter()
                .filter(|(k, _)| **k != report.current_key)
                .map(|(k, n)| format!("{n} under {k}"))
                .collect();
            if f.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!(
                    "{} credential(s) re-sealed under {}, {} already under it, {} rewritten by another process meanwhile",
                    report.resealed,
                    report.current_key,
                    report.already_current,
                    report.changed_meanwhile
                );
            }
            if others.is_empty() {
                if !f.json {
                    println!(
                        "every credential is sealed under {}: crypto.old_keys can be removed",
                        report.current_key
                    );
                }
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!(
                    "still sealed under another key: {} (a process with an older crypto.key wrote them); run again once every process uses {}",
                    others.join(", "),
                    report.current_key
                );
                Ok(ExitCode::FAILURE)
            }
        }
    }
}

async fn tenants(config: Config, cmd: TenantsCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        TenantsCommand::Add(a) => {
            let ring = wiring::keyring(&config, false)?;
            let store = wiring::connect_store(&config, ring).await?;
            let settings = match &a.settings {
                Some(p) => read_settings(p)?,
                None => TenantSettings::default(),
            };
            let tenant = Tenant {
                id: tenant_id(&a.id)?,
                name: a.name.clone().unwrap_or_else(|| a.id.clone()),
                location_id: LocationId::parse(&a.location).context("--location")?,
                ekyte_company_id: EkyteCompanyId::new(a.ekyte_company)
                    .context("--ekyte-company")?,
                active: !a.inactive,
                settings,
                install: match &a.agency_company {
                    Some(company) => domain::Install {
                        kind: domain::InstallKind::Agency,
                        company_id: Some(company.clone()),
                        ..Default::default()
                    },
                    None => Default::default(),
                },
            };
            let mut tenant = tenant;
            // Re-adding a tenant (new settings or keys) keeps what its install taught it.
            if a.agency_company.is_none()
                && let Ok(known) = TenantStore::get(store.as_ref(), &tenant.id).await
            {
                tenant.install = known.install;
            }
            let api_key = wiring::secret(a.ekyte.ekyte_api_key);
            let mcp_token = wiring::secret(a.ekyte.ekyte_mcp_token);
            if let Some(code) = checked(
                &config,
                &store,
                &tenant,
                api_key.as_ref(),
                mcp_token.as_ref(),
                a.no_check,
            )
            .await
            {
                return Ok(code);
            }
            add_tenant(
                store.as_ref(),
                store.as_ref(),
                &tenant,
                api_key,
                mcp_token,
                wiring::secret(a.ghl_private_token),
            )
            .await?;
            println!(
                "tenant {} saved (location {}, eKyte company {})",
                tenant.id, tenant.location_id, tenant.ekyte_company_id
            );
            Ok(ExitCode::SUCCESS)
        }
        TenantsCommand::Map(m) => map_tenant(&config, *m).await,
        TenantsCommand::List(f) => {
            let ring = wiring::keyring(&config, true)?;
            let store = wiring::connect_store(&config, ring).await?;
            let list = TenantStore::list(store.as_ref()).await?;
            let mut rows = Vec::with_capacity(list.len());
            for tenant in &list {
                rows.push(operator::TenantRow::of(tenant, store.as_ref()).await);
            }
            for pending in AgencyStore::pending_locations(store.as_ref()).await? {
                rows.push(operator::TenantRow::pending(&pending));
            }
            if f.json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                println!("{}", operator::tenants_table(&rows, chrono::Utc::now()));
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The checks a tenant passes before it is stored (`tenants add`, `tenants map`): the
/// settings every sync needs, an eKyte key, and (unless `no_check`) eKyte's answer for the
/// key, the user and the task type. `Some(exit code 2)`, with the reason on stderr, when it is
/// refused; nothing is stored then.
async fn checked(
    config: &Config,
    store: &Arc<store::Store>,
    tenant: &Tenant,
    api_key: Option<&secrecy::SecretString>,
    mcp_token: Option<&secrecy::SecretString>,
    no_check: bool,
) -> Option<ExitCode> {
    let missing = tenant.settings.missing();
    if !missing.is_empty() {
        eprintln!(
            "error: tenant {} is missing settings it cannot sync without: {} (put them in the --settings file); nothing was stored",
            tenant.id,
            missing.join(", ")
        );
        return Some(ExitCode::from(2));
    }
    if no_check {
        return None;
    }
    if api_key.is_none()
        && CredentialStore::get(store.as_ref(), &tenant.id, Provider::Ekyte)
            .await
            .is_err()
    {
        eprintln!(
            "error: tenant {} has no eKyte API key: pass --ekyte-api-key (or GES_TENANT_EKYTE_API_KEY); nothing was stored",
            tenant.id
        );
        return Some(ExitCode::from(2));
    }
    if let Err(e) = admin::check_ekyte(
        wiring::ekyte_config(config),
        store.clone(),
        tenant,
        api_key,
        mcp_token,
    )
    .await
    {
        eprintln!("error: {e:#}; nothing was stored");
        return Some(ExitCode::from(2));
    }
    None
}

/// `tenants map`: a pending location gets its eKyte company and so its tenant.
async fn map_tenant(config: &Config, m: TenantMapArgs) -> anyhow::Result<ExitCode> {
    let ring = wiring::keyring(config, false)?;
    let store = wiring::connect_store(config, ring).await?;
    let mapper = admin::Mapper {
        tenants: store.clone(),
        credentials: store.clone(),
        agencies: store.clone(),
        ekyte: wiring::ekyte_config(config),
    };
    let request = admin::MapRequest {
        location: LocationId::parse(&m.location).context("--location")?,
        ekyte_company: EkyteCompanyId::new(m.ekyte_company).context("--ekyte-company")?,
        id: m.id.as_deref().map(tenant_id).transpose()?,
        name: m.name,
        settings: match &m.settings {
            Some(p) => read_settings(p)?,
            None => TenantSettings::default(),
        },
        api_key: wiring::secret(m.ekyte.ekyte_api_key),
        mcp_token: wiring::secret(m.ekyte.ekyte_mcp_token),
        check: !m.no_check,
    };
    match mapper.map(request).await? {
        Ok(tenant) => {
            println!(
                "tenant {} saved: location {} of GHL company {} maps to eKyte company {}; it syncs through the agency install",
                tenant.id,
                tenant.location_id,
                tenant.install.company_id.as_deref().unwrap_or("?"),
                tenant.ekyte_company_id
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(why) => {
            eprintln!("error: {why}; nothing was stored");
            Ok(ExitCode::from(2))
        }
    }
}

async fn oauth(config: Config, cmd: OauthCommand) -> anyhow::Result<ExitCode> {
    let app = app(config).await?;
    let result = match cmd {
        OauthCommand::Url {
            tenant: None,
            agency: true,
        } => {
            let state = app.state_signer().sign_agency(chrono::Utc::now());
            let url = app
                .ghl
                .oauth()
                .authorize_url(&state)
                .context("[ghl] client_id / redirect_uri")?;
            println!("{url}");
            eprintln!(
                "open this link as the agency, choose the sub-accounts to install on; it is valid for one hour"
            );
            Ok(ExitCode::SUCCESS)
        }
        OauthCommand::Url { tenant, .. } => {
            let tenant = tenant_id(tenant.as_deref().unwrap_or_default())?;
            TenantStore::get(app.store.as_ref(), &tenant)
                .await
                .with_context(|| format!("tenant {tenant}: add it with `tenants add` first"))?;
            let state = app.state_signer().sign(&tenant, chrono::Utc::now());
            let url = app
                .ghl
                .oauth()
                .authorize_url(&state)
                .context("[ghl] client_id / redirect_uri")?;
            println!("{url}");
            eprintln!(
                "open this link, choose the sub-account of tenant {tenant}; it is valid for one hour"
            );
            Ok(ExitCode::SUCCESS)
        }
        OauthCommand::Exchange { tenant, code } => {
            let tenant = tenant_id(&tenant)?;
            match crate::ingress::complete_install(&app.oauth_state(), &tenant, &code).await {
                Ok(msg) => {
                    println!("{msg}");
                    Ok(ExitCode::SUCCESS)
                }
                Err((_, msg)) => Err(anyhow::anyhow!(msg)),
            }
        }
    };
    app.broker.close().await;
    result
}

async fn status(config: Config, json: bool) -> anyhow::Result<ExitCode> {
    let app = app(config).await?;
    let store = app.store.as_ref();
    let tenants = TenantStore::list(store).await?;
    let depths = app.broker.depths().await.ok();
    let dead: u64 = DeadLetterStore::summary(store, None, false, None)
        .await?
        .iter()
        .map(|g| g.count)
        .sum();
    let since = chrono::SubsecRound::trunc_subsecs(app.clock.now(), 0) - chrono::Duration::hours(1);
    let mut failures = operator::failures_by_tenant(
        &DeadLetterStore::summary(store, None, true, Some(since)).await?,
        &AuditLog::failures_since(store, since).await?,
    );
    let mut rows = Vec::with_capacity(tenants.len());
    let mut caps = Vec::with_capacity(tenants.len());
    for t in &tenants {
        let runs = RunStore::recent(store, &t.id, 3).await?;
        let scope = Scope::new(Arc::new(t.clone()), Priority::Bulk);
        let c = ports::ekyte::EkyteApi::capabilities(&app.ekyte, &scope)
            .await
            .ok();
        rows.push(operator::StatusTenant {
            tenant: t.id.clone(),
            state: t.state(),
            active: t.active,
            location: t.location_id.to_string(),
            ekyte_company: t.ekyte_company_id.get(),
            ekyte_capabilities: c
                .as_ref()
                .map(|c| c.allowed.iter().map(|o| o.as_str()).collect()),
            recent_runs: runs.iter().map(Into::into).collect(),
            failures: failures.remove(&t.id).unwrap_or_default(),
        });
        caps.push(c);
    }
    let report = operator::StatusReport {
        tenants: rows,
        queues: depths,
        dead_letters: dead,
        failures_since: since,
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("{}", report.render(&caps));
    }
    app.broker.close().await;
    Ok(ExitCode::SUCCESS)
}

/// `console hash-password`: an argon2id hash (default parameters, a random salt) of the line
/// on standard input; the password itself is never printed.
fn hash_password() -> ExitCode {
    use argon2::PasswordHasher as _;
    let mut line = String::new();
    if std::io::stdin().read_line(&mut line).is_err()
        || line.trim_end_matches(['\r', '\n']).is_empty()
    {
        eprintln!("error: type the password on standard input (one line)");
        return ExitCode::from(2);
    }
    let password = line.trim_end_matches(['\r', '\n']);
    let mut salt = [0u8; 16];
    salt.copy_from_slice(&uuid::Uuid::new_v4().into_bytes());
    let salt = match argon2::password_hash::SaltString::encode_b64(&salt) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    match argon2::Argon2::default().hash_password(password.as_bytes(), &salt) {
        Ok(hash) => {
            println!("{hash}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
