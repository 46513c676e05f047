//! The one-command demo: both simulators, a SQLite store in a temporary folder, RabbitMQ when
//! it answers (else the in-process queue), the real worker and ingress in this process; then
//! the initial full sync, edits in GHL arriving as signed webhooks, edits in eKyte found by
//! polling, a reconciliation sweep, and a field-by-field comparison of both sides.
//!
//! Exits 0 only if the two sides converged.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use indicatif::{ProgressBar, ProgressStyle};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::sim::{World, WorldSpec};
use super::verify::{Verdict, verify};
use super::{DemoArgs, QueueChoice, ReportFormat};
use crate::config::{Config, QueueBackend};
use crate::queue::Broker;
use crate::queue::amqp::AmqpBroker;
use crate::queue::memory::MemoryBroker;
use crate::scheduler::{Job, enqueue};
use crate::wiring::{self, App};
use crate::worker::WorkerStats;

/// Everything the report says.
#[derive(Debug, Serialize)]
pub struct DemoReport {
    pub converged: bool,
    pub queue: String,
    pub contacts: usize,
    pub ghl_edits: std::collections::BTreeMap<&'static str, usize>,
    pub ekyte_edits: std::collections::BTreeMap<&'static str, usize>,
    pub verdict: Verdict,
    pub api_calls_ghl: u64,
    pub api_calls_ekyte: u64,
    pub ghl_429: u64,
    pub ghl_429_earned: u64,
    pub webhooks_sent: u64,
    pub messages_done: u64,
    pub retries: u64,
    pub dead_letters: u64,
    pub phase_seconds: Vec<(String, f64)>,
    pub duration_s: f64,
}

/// A phase indicator: a spinner on a terminal, log lines otherwise.
pub struct Phase {
    bar: Option<ProgressBar>,
    started: Instant,
    name: String,
}

impl Phase {
    fn start(name: &str) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = ProgressBar::new_spinner();
            b.set_style(
                ProgressStyle::with_template("{spinner} {msg} [{elapsed}]")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            b.enable_steady_tick(Duration::from_millis(120));
            b.set_message(name.to_owned());
            b
        });
        if bar.is_none() {
            tracing::info!(phase = name, "demo phase started");
        }
        Self {
            bar,
            started: Instant::now(),
            name: name.to_owned(),
        }
    }

    fn message(&self, m: String) {
        if let Some(b) = &self.bar {
            b.set_message(format!("{}: {m}", self.name));
        }
    }

    fn finish(self, out: &mut Vec<(String, f64)>) {
        let secs = self.started.elapsed().as_secs_f64();
        if let Some(b) = self.bar {
            b.finish_with_message(format!("{} ✓ ({secs:.1}s)", self.name));
        } else {
            tracing::info!(phase = %self.name, seconds = secs, "demo phase done");
        }
        out.push((self.name, secs));
    }
}

/// The queue the demo runs on; RabbitMQ topologies are the demo's own and deleted after.
enum DemoBroker {
    Amqp(Arc<AmqpBroker>),
    Memory(Arc<MemoryBroker>),
}

impl DemoBroker {
    fn broker(&self) -> Arc<dyn Broker> {
        match self {
            Self::Amqp(b) => b.clone(),
            Self::Memory(b) => b.clone(),
        }
    }

    /// The worker closes its broker when it stops, so the clean-up connects anew.
    async fn clean_up(&self, cfg: &Config) {
        if let Self::Amqp(_) = self
            && let Err(e) = crate::wiring::delete_amqp_queues(cfg).await
        {
            eprintln!(
                "warning: could not delete the demo's queues ({}.*): {e:#}",
                cfg.queue.prefix
            );
        }
    }
}

/// RabbitMQ if asked or reachable, else the in-process queue; says which. `cfg` already has
/// the demo's own queue prefix and retry tiers.
async fn pick_broker(cfg: &Config, choice: QueueChoice) -> anyhow::Result<(DemoBroker, String)> {
    let where_ = || {
        format!(
            "RabbitMQ at {}",
            crate::config::mask_url(cfg.queue.url.expose_secret())
        )
    };
    match choice {
        QueueChoice::Memory => Ok((
            DemoBroker::Memory(Arc::new(MemoryBroker::new())),
            "in-process queue".into(),
        )),
        QueueChoice::Amqp => Ok((
            DemoBroker::Amqp(crate::wiring::amqp_broker(cfg).await.with_context(|| {
                format!(
                    "{} did not answer (`rabbitmq-server -detached` starts it)",
                    where_()
                )
            })?),
            where_(),
        )),
        QueueChoice::Auto => {
            match tokio::time::timeout(Duration::from_secs(3), crate::wiring::amqp_broker(cfg))
                .await
            {
                Ok(Ok(b)) => Ok((DemoBroker::Amqp(b), where_())),
                _ => Ok((
                    DemoBroker::Memory(Arc::new(MemoryBroker::new())),
                    "in-process queue (RabbitMQ did not answer on queue.url)".into(),
                )),
            }
        }
    }
}

/// Wait until nothing is queued, delayed, in flight or on its way as a webhook, and the
/// worker's settled count held still for a moment; fail past `deadline`.
pub async fn wait_quiet(
    broker: &dyn Broker,
    world: &World,
    stats: &WorkerStats,
    deadline: Duration,
    phase: Option<&Phase>,
) -> anyhow::Result<()> {
    let until = Instant::now() + deadline;
    let mut still = 0;
    let mut last = u64::MAX;
    loop {
        let depths = broker.depths().await.context("reading queue depths")?;
        let settled = stats.settled();
        let busy = depths.realtime
            + depths.bulk
            + depths.delayed
            + stats.in_flight.load(Ordering::SeqCst)
            + world.ghl.webhooks_in_flight();
        if let Some(p) = phase {
            p.message(format!("{settled} messages handled, {busy} pending"));
        }
        if busy == 0 && settled == last {
            still += 1;
            if still >= 3 {
                return Ok(());
            }
        } else {
            still = 0;
        }
        last = settled;
        if Instant::now() > until {
            bail!(
                "the system did not settle within {deadline:?} (queued {} realtime, {} bulk, {} delayed; {} in flight)",
                depths.realtime,
                depths.bulk,
                depths.delayed,
                stats.in_flight.load(Ordering::SeqCst)
            );
        }
        // Polling interval of the condition above (this is a wait with a deadline, not a
        // guess at how long work takes).
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

pub async fn run(config: Config, args: DemoArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let mut phases = Vec::new();
    let edits = args.edits.unwrap_or(args.contacts);

    // The recorder first, so the first sync's calls are counted on /metrics too.
    crate::metrics::prometheus();
    let p = Phase::start("starting the simulators and seeding");
    // GHL's limit is 100 requests per 10 s per location; the demo compresses time ten-fold
    // (100 per second) so a few hundred contacts sync in a minute or two. The adapter learns
    // the limit from the simulator's X-RateLimit-* headers, as it would from GHL's.
    let spec = WorldSpec {
        contacts: args.contacts,
        seed: args.seed,
        businesses: (args.contacts / 20).max(1),
        ghl_rate_max: 100,
        ghl_rate_interval_ms: 1000,
        ..WorldSpec::default()
    };
    let mut world = World::start(&spec).await?;
    p.finish(&mut phases);

    let dir = tempfile::tempdir().context("creating a temporary folder for the SQLite store")?;
    let mut cfg = world.configure(config)?;
    cfg.ghl.rate_max = spec.ghl_rate_max;
    cfg.ghl.rate_interval = Duration::from_millis(spec.ghl_rate_interval_ms);
    cfg.database.url = SecretString::from(format!(
        "sqlite://{}/demo.db?mode=rwc",
        dir.path().display()
    ));
    cfg.queue.retry_delays = vec![
        Duration::from_millis(500),
        Duration::from_secs(1),
        Duration::from_secs(2),
    ];
    // Own queue names, so a demo never takes another deployment's messages.
    cfg.queue.prefix = format!(
        "ges-demo-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    cfg.queue.backend = QueueBackend::Amqp;
    // The console's one account: a fresh password each run, shown with the URL at the end.
    let console_password = args
        .console
        .then(|| uuid::Uuid::new_v4().simple().to_string()[..16].to_owned());
    if let Some(password) = &console_password {
        use argon2::PasswordHasher as _;
        let salt = argon2::password_hash::SaltString::encode_b64(uuid::Uuid::new_v4().as_bytes())
            .map_err(|e| anyhow::anyhow!("a salt for the console password: {e}"))?;
        let hash = argon2::Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map_err(|e| anyhow::anyhow!("hashing the console password: {e}"))?;
        cfg.console.enabled = true;
        cfg.console.accounts = vec![crate::config::ConsoleAccount {
            user: "demo".into(),
            password_hash: SecretString::from(hash.to_string()),
            role: crate::config::ConsoleRole::Operator,
            tenants: Vec::new(),
        }];
    }
    // The ingress listens before the app is built: the console's Connect page needs the
    // callback's address, which the simulator's consent page sends the browser back to.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    if args.console {
        let client = sandbox::ghl::OAuthClientSpec::default();
        world
            .ghl
            .register_oauth_client(client.clone())
            .map_err(|e| anyhow::anyhow!("registering the demo's Marketplace app: {e:?}"))?;
        cfg.ghl.client_id = client.client_id;
        cfg.ghl.client_secret = SecretString::from(client.client_secret);
        cfg.ghl.marketplace_base = url::Url::parse(&world.ghl.base_url())?;
        cfg.ghl.redirect_uri = url::Url::parse(&format!("http://{addr}/oauth/callback"))?;
    }
    let (demo_broker, queue) = pick_broker(&cfg, args.queue).await?;
    let broker = demo_broker.broker();
    eprintln!("queue: {queue}");
    let ring = wiring::keyring(&cfg, true)?;
    let store = wiring::connect_store(&cfg, ring).await?;
    store
        .migrate()
        .await
        .context("migrating the demo database")?;
    let app = App::build(cfg, store, broker).await?;
    let tenant = world.tenant(&spec)?;
    let (api_key, mcp, pit) = world.secrets();
    crate::admin::add_tenant(
        app.store.as_ref(),
        app.store.as_ref(),
        &tenant,
        Some(api_key),
        mcp,
        Some(pit),
    )
    .await?;

    let shutdown = CancellationToken::new();
    let worker = app.worker(format!(
        "demo-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..6]
    ));
    let stats = worker.stats.clone();
    let worker_task = tokio::spawn(worker.run(shutdown.clone()));
    let ingress_task = tokio::spawn(crate::ingress::serve(
        listener,
        app.ingress()?,
        shutdown.clone(),
    ));
    world
        .ghl
        .set_webhook_target(Some(format!("http://{addr}/webhooks/ghl")));
    let settle = Duration::from_secs(600);

    let outcome: anyhow::Result<(Verdict, _, _)> = async {
        let p = Phase::start("initial full sync");
        enqueue(
            Job::Full,
            None,
            app.store.as_ref(),
            app.broker.as_ref(),
            app.clock.now(),
            false,
        )
        .await?;
        wait_quiet(app.broker.as_ref(), &world, &stats, settle, Some(&p)).await?;
        p.finish(&mut phases);

        let p = Phase::start("edits in GHL, arriving as signed webhooks");
        let ghl_edits = world.ghl_edits(edits)?;
        world
            .ghl
            .wait_webhooks_drained(Duration::from_secs(60))
            .await;
        wait_quiet(app.broker.as_ref(), &world, &stats, settle, Some(&p)).await?;
        p.finish(&mut phases);

        let p = Phase::start("edits in eKyte, found by polling");
        let ekyte_edits = world.ekyte_edits(edits)?;
        enqueue(
            Job::Poll,
            None,
            app.store.as_ref(),
            app.broker.as_ref(),
            app.clock.now(),
            false,
        )
        .await?;
        wait_quiet(app.broker.as_ref(), &world, &stats, settle, Some(&p)).await?;
        p.finish(&mut phases);

        // What the scheduler does on its own: a sweep of both sides, until nothing changes.
        let p = Phase::start("reconciliation sweep");
        for _ in 0..2 {
            enqueue(
                Job::Full,
                None,
                app.store.as_ref(),
                app.broker.as_ref(),
                app.clock.now(),
                false,
            )
            .await?;
            wait_quiet(app.broker.as_ref(), &world, &stats, settle, Some(&p)).await?;
            enqueue(
                Job::Poll,
                None,
                app.store.as_ref(),
                app.broker.as_ref(),
                app.clock.now(),
                false,
            )
            .await?;
            wait_quiet(app.broker.as_ref(), &world, &stats, settle, Some(&p)).await?;
        }
        p.finish(&mut phases);
        let verdict = verify(&world)?;
        if let Some(path) = &args.metrics_out {
            scrape_metrics(addr, path).await?;
        }
        Ok((verdict, ghl_edits, ekyte_edits))
    }
    .await;

    let report = outcome.map(|(verdict, ghl_edits, ekyte_edits)| {
        report_of(
            &world,
            &stats,
            &args,
            queue,
            phases,
            started,
            verdict,
            ghl_edits,
            ekyte_edits,
        )
    });
    if let Ok(report) = &report {
        match args.report {
            ReportFormat::Json => println!("{}", serde_json::to_string_pretty(report)?),
            ReportFormat::Text => print_text(report),
        }
        if let Some(password) = &console_password {
            // Left running so the state the demo made can be looked at.
            println!(
                "\nconsole: http://{addr}/console  (user demo, password {password}); Ctrl-C stops it"
            );
            crate::signals::shutdown_on_signals().cancelled().await;
        }
    }
    shutdown.cancel();
    let _ = worker_task.await;
    let _ = ingress_task.await;
    demo_broker.clean_up(&app.config).await;
    let report = report?;
    Ok(if report.converged {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The report of a demo run that got to its verdict.
#[allow(clippy::too_many_arguments)]
fn report_of(
    world: &World,
    stats: &crate::worker::WorkerStats,
    args: &DemoArgs,
    queue: String,
    phases: Vec<(String, f64)>,
    started: Instant,
    verdict: Verdict,
    ghl_edits: std::collections::BTreeMap<&'static str, usize>,
    ekyte_edits: std::collections::BTreeMap<&'static str, usize>,
) -> DemoReport {
    let g = world.ghl.counter_snapshot();
    let e = world.ekyte.counters().snapshot();
    DemoReport {
        converged: verdict.converged,
        queue,
        contacts: args.contacts,
        ghl_edits,
        ekyte_edits,
        api_calls_ghl: g.total_requests(),
        api_calls_ekyte: e.total_requests(),
        ghl_429: g.status_total(429),
        ghl_429_earned: g.event("rate_limited_earned"),
        webhooks_sent: g.event("webhooks_sent"),
        messages_done: stats.done.load(Ordering::Relaxed),
        retries: stats.retried.load(Ordering::Relaxed),
        dead_letters: stats.dead_lettered.load(Ordering::Relaxed),
        phase_seconds: phases,
        duration_s: started.elapsed().as_secs_f64(),
        verdict,
    }
}

/// Scrape the ingress's `/metrics` as Prometheus does and write the text to `path`.
async fn scrape_metrics(addr: std::net::SocketAddr, path: &std::path::Path) -> anyhow::Result<()> {
    let url = format!("http://{addr}/metrics");
    let text = reqwest::get(&url)
        .await
        .and_then(reqwest::Response::error_for_status)
        .with_context(|| format!("scraping {url}"))?
        .text()
        .await
        .with_context(|| format!("reading the answer of {url}"))?;
    std::fs::write(path, text)
        .with_context(|| format!("writing the metrics scrape to {}", path.display()))?;
    eprintln!("metrics: {url} scraped into {}", path.display());
    Ok(())
}

fn print_text(r: &DemoReport) {
    let c = &r.verdict.counts;
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header(["entity", "GHL", "eKyte"]);
    t.add_row([
        "contacts ↔ workspaces".to_owned(),
        c.ghl_contacts_synced.to_string(),
        c.ekyte_workspaces.to_string(),
    ]);
    t.add_row([
        "tasks".to_owned(),
        c.ghl_tasks.to_string(),
        c.ekyte_tasks.to_string(),
    ]);
    t.add_row([
        "notes ↔ board notes".to_owned(),
        c.ghl_notes.to_string(),
        c.ekyte_board_notes.to_string(),
    ]);
    t.add_row([
        "eKyte comments".to_owned(),
        "—".to_owned(),
        c.ekyte_comments.to_string(),
    ]);
    t.add_row([
        "API calls".to_owned(),
        r.api_calls_ghl.to_string(),
        r.api_calls_ekyte.to_string(),
    ]);
    println!("{t}");
    println!("queue: {}", r.queue);
    println!(
        "GHL rate limit: 100 requests per second per location (GHL's 100 per 10 s, time compressed ten-fold)"
    );
    println!("GHL edits: {:?}", r.ghl_edits);
    println!("eKyte edits: {:?}", r.ekyte_edits);
    println!(
        "messages handled {} · retries {} · dead letters {} · webhooks delivered {} · GHL 429s {} ({} earned)",
        r.messages_done, r.retries, r.dead_letters, r.webhooks_sent, r.ghl_429, r.ghl_429_earned
    );
    for (name, secs) in &r.phase_seconds {
        println!("  {name}: {secs:.1}s");
    }
    println!("duration {:.1}s", r.duration_s);
    if r.converged {
        println!("CONVERGED: both sides agree field by field.");
    } else {
        println!("NOT CONVERGED: {} problem(s):", r.verdict.problem_count);
        for p in &r.verdict.problems {
            println!("  - {p}");
        }
    }
}
