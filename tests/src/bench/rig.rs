//! The service as the benchmarks run it: the real composition root (`App::build`), a store of
//! its own (a SQLite file in a temporary folder, or a fresh PostgreSQL database on
//! `TEST_DATABASE_URL`'s server, dropped at the end), the in-process queue or RabbitMQ with
//! its own queue prefix, the worker, and optionally the webhook ingress — all pointed at a
//! simulated world ([`Sims`]: in this process or in a child of its own).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use app::config::{Config, QueueBackend};
use app::demo::sim::WorldSpec;
use app::queue::Broker;
use app::queue::memory::MemoryBroker;
use app::scheduler::Job;
use app::wiring::{self, App};
use app::worker::WorkerStats;
use domain::TenantId;
use ports::queue::Envelope;
use store::test_support::{TestBackend, TestDb};

use super::sims::Sims;

/// `--store sqlite|postgres`.
pub fn parse_store(raw: &str) -> anyhow::Result<TestBackend> {
    match raw {
        "sqlite" => Ok(TestBackend::Sqlite),
        "postgres" | "postgresql" | "pg" => Ok(TestBackend::Postgres),
        other => bail!("--store must be sqlite or postgres, not {other:?}"),
    }
}

/// Which broker the service runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueKind {
    /// The in-process queue (the embedded default).
    Memory,
    /// RabbitMQ on `queue.url` (127.0.0.1:5672 by default), with the benchmark's own prefix.
    Amqp,
}

impl QueueKind {
    pub fn parse(raw: &str) -> anyhow::Result<Self> {
        match raw {
            "memory" => Ok(Self::Memory),
            "amqp" | "rabbitmq" => Ok(Self::Amqp),
            other => bail!("--queue must be memory or amqp, not {other:?}"),
        }
    }
}

/// The embedded defaults (plus any `GES_*` variables), validated.
pub fn base_config() -> anyhow::Result<Config> {
    Config::from_figment(Config::figment(None)).context("loading the default configuration")
}

/// The service's configuration for `world`: the simulators' URLs, the rate limit the
/// simulator enforces (the adapter's budget starts from it and then follows the headers), the
/// database at `db_url`, short retry tiers and a queue prefix of its own.
pub fn config_for(world: &dyn Sims, spec: &WorldSpec, db_url: &str) -> anyhow::Result<Config> {
    let mut cfg = world.configure(base_config()?)?;
    cfg.ghl.rate_max = spec.ghl_rate_max;
    cfg.ghl.rate_interval = Duration::from_millis(spec.ghl_rate_interval_ms);
    cfg.database.url = SecretString::from(db_url.to_owned());
    cfg.queue.retry_delays = vec![
        Duration::from_millis(500),
        Duration::from_secs(1),
        Duration::from_secs(2),
    ];
    cfg.queue.prefix = format!(
        "ges-bench-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    cfg.queue.backend = QueueBackend::Amqp;
    Ok(cfg)
}

/// Delete the queues of `cfg.queue.prefix` (the bench's own); a failure is only a warning.
pub async fn delete_amqp_topology(cfg: &Config) {
    if let Err(e) = app::wiring::delete_amqp_queues(cfg).await {
        eprintln!(
            "warning: could not delete the bench queues ({}.*): {e:#}",
            cfg.queue.prefix
        );
    }
}

/// What to start.
#[derive(Debug, Clone)]
pub struct RigOptions {
    pub queue: QueueKind,
    /// The store's backend.
    pub store: TestBackend,
    /// Start the worker now (else call [`Rig::start_worker`] later, e.g. after a backlog).
    pub worker: bool,
    /// Serve the webhook ingress on loopback.
    pub ingress: bool,
    /// Route the simulator's webhooks to the ingress.
    pub webhooks_to_ingress: bool,
    /// Overrides `queue.prefetch` (messages in flight per lane).
    pub prefetch: Option<u16>,
    /// Overrides `ghl.webhook_ed25519_key` (the load generator signs with its own key).
    pub webhook_key: Option<String>,
    /// Overrides `queue.fair_bulk` (sharing the bulk lane between tenants).
    pub fair_bulk: Option<bool>,
}

impl RigOptions {
    /// `queue` and `store`, with the ingress on loopback and the simulator's webhooks sent
    /// to it: the service as GHL's events reach it.
    pub fn with_webhooks(queue: QueueKind, store: TestBackend) -> Self {
        Self {
            queue,
            store,
            ingress: true,
            webhooks_to_ingress: true,
            ..Self::default()
        }
    }
}

impl Default for RigOptions {
    fn default() -> Self {
        Self {
            queue: QueueKind::Memory,
            store: TestBackend::Sqlite,
            worker: true,
            ingress: false,
            webhooks_to_ingress: false,
            prefetch: None,
            webhook_key: None,
            fair_bulk: None,
        }
    }
}

/// The running service.
pub struct Rig {
    pub app: App,
    pub stats: Arc<WorkerStats>,
    pub ingress: Option<SocketAddr>,
    pub queue: QueueKind,
    pub tenant: TenantId,
    /// The store's backend, named in every report.
    pub store_backend: TestBackend,
    shutdown: CancellationToken,
    worker: Option<JoinHandle<()>>,
    ingress_task: Option<JoinHandle<()>>,
    _db: TestDb,
}

impl Rig {
    pub async fn start(
        world: &dyn Sims,
        spec: &WorldSpec,
        opts: &RigOptions,
    ) -> anyhow::Result<Self> {
        let db = TestDb::empty(opts.store)
            .await
            .with_context(|| format!("a {} database for the bench", opts.store))?;
        let mut cfg = config_for(world, spec, db.url())?;
        if let Some(p) = opts.prefetch {
            cfg.queue.prefetch = p;
            cfg.database.max_connections = cfg.database.max_connections.max(2 * u32::from(p) + 2);
        }
        if let Some(k) = &opts.webhook_key {
            cfg.ghl.webhook_ed25519_key = k.clone();
        }
        if let Some(fair) = opts.fair_bulk {
            cfg.queue.fair_bulk = fair;
        }
        let broker: Arc<dyn Broker> = match opts.queue {
            QueueKind::Memory => Arc::new(MemoryBroker::new()),
            QueueKind::Amqp => app::wiring::amqp_broker(&cfg).await?,
        };
        let ring = wiring::keyring(&cfg, true)?;
        let store = wiring::connect_store(&cfg, ring).await?;
        store.migrate().await.context("migrating the bench store")?;
        let app = App::build(cfg, store, broker).await?;
        let tenant = world.tenant(spec)?;
        let (api_key, mcp, pit) = world.secrets();
        app::admin::add_tenant(
            app.store.as_ref(),
            app.store.as_ref(),
            &tenant,
            Some(api_key),
            mcp,
            Some(pit),
        )
        .await?;
        let mut rig = Self {
            stats: Arc::default(),
            app,
            ingress: None,
            queue: opts.queue,
            tenant: tenant.id.clone(),
            store_backend: opts.store,
            shutdown: CancellationToken::new(),
            worker: None,
            ingress_task: None,
            _db: db,
        };
        if opts.ingress {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let addr = listener.local_addr()?;
            let router = rig.app.ingress()?;
            let shutdown = rig.shutdown.clone();
            rig.ingress_task = Some(tokio::spawn(async move {
                if let Err(e) = app::ingress::serve(listener, router, shutdown).await {
                    eprintln!("ingress stopped: {e}");
                }
            }));
            rig.ingress = Some(addr);
            if opts.webhooks_to_ingress {
                world
                    .set_webhook_target(Some(format!("http://{addr}/webhooks/ghl")))
                    .await?;
            }
        }
        if opts.store == TestBackend::Postgres {
            stand_in_for_autoanalyze(rig.db_url(), rig.shutdown.clone()).await?;
        }
        if opts.worker {
            rig.start_worker();
        }
        Ok(rig)
    }

    fn db_url(&self) -> &str {
        self._db.url()
    }

    pub fn start_worker(&mut self) {
        if self.worker.is_some() {
            return;
        }
        let worker = self.app.worker(format!(
            "bench-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..6]
        ));
        self.stats = worker.stats.clone();
        let shutdown = self.shutdown.clone();
        self.worker = Some(tokio::spawn(async move {
            if let Err(e) = worker.run(shutdown).await {
                eprintln!("worker stopped: {e:#}");
            }
        }));
    }

    /// Statements the service's store has sent since it connected.
    pub fn statements(&self) -> u64 {
        self.app.store.statements()
    }

    /// [`Rig::statements`] by what they do (`store::Store::statements_by_kind`).
    pub fn statements_by_kind(&self) -> std::collections::BTreeMap<String, u64> {
        self.app.store.statements_by_kind()
    }

    /// Install one more location of the world ([`World::add_site`]) as a tenant.
    pub async fn add_site(&self, site: &app::demo::sim::Site) -> anyhow::Result<()> {
        let (api_key, mcp, pit) = site.secrets();
        app::admin::add_tenant(
            self.app.store.as_ref(),
            self.app.store.as_ref(),
            &site.tenant,
            Some(api_key),
            mcp,
            Some(pit),
        )
        .await
    }

    /// Publish a full or incremental sweep of the tenant (what the scheduler does).
    pub async fn enqueue(&self, job: Job) -> anyhow::Result<()> {
        self.enqueue_for(&self.tenant, job).await
    }

    /// Publish a sweep of `tenant`.
    pub async fn enqueue_for(&self, tenant: &TenantId, job: Job) -> anyhow::Result<()> {
        // The scheduler's message id names the minute (and the inbox dedupes it); a bench
        // runs several sweeps a minute, so each gets an id of its own.
        let env = Envelope::new(
            format!("bench:{}:{}", job.name(), uuid::Uuid::new_v4().simple()),
            tenant.clone(),
            job.payload(false),
            self.app.clock.now(),
        );
        self.app.broker.publish(&env).await?;
        Ok(())
    }

    /// Wait until nothing is queued, delayed, in flight or on its way as a webhook; returns
    /// the moment that was first seen (polled every few milliseconds, so the wall times the
    /// benchmarks report are not padded by the wait).
    pub async fn quiet(&self, world: &dyn Sims, deadline: Duration) -> anyhow::Result<Instant> {
        let until = Instant::now() + deadline;
        let poll = match self.queue {
            QueueKind::Memory => Duration::from_millis(5),
            QueueKind::Amqp => Duration::from_millis(20),
        };
        let mut first_quiet: Option<Instant> = None;
        let mut still = 0;
        let mut last = u64::MAX;
        loop {
            let seen_at = Instant::now();
            let depths = self.app.broker.depths().await.context("queue depths")?;
            let settled = self.stats.settled();
            let mut busy = depths.realtime
                + depths.bulk
                + depths.delayed
                + self.stats.in_flight.load(Ordering::SeqCst);
            // Asked only when the rest is quiet: a child's simulators answer through a pipe.
            if busy == 0 {
                busy = world.webhooks_in_flight().await?;
            }
            if busy == 0 && settled == last {
                first_quiet.get_or_insert(seen_at);
                still += 1;
                if still >= 3 {
                    return Ok(first_quiet.unwrap_or(seen_at));
                }
            } else {
                still = 0;
                first_quiet = None;
            }
            last = settled;
            if Instant::now() > until {
                bail!(
                    "not quiet within {deadline:?}: {depths:?}, {} in flight",
                    self.stats.in_flight.load(Ordering::SeqCst)
                );
            }
            tokio::time::sleep(poll).await;
        }
    }

    /// Stop the worker and the ingress, and delete a RabbitMQ topology.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(w) = self.worker.take() {
            let _ = w.await;
        } else {
            self.app.broker.close().await;
        }
        if let Some(i) = self.ingress_task.take() {
            let _ = i.await;
        }
        if self.queue == QueueKind::Amqp {
            delete_amqp_topology(&self.app.config).await;
        }
    }
}

/// How often the stand-in for autovacuum analyzes the bench database.
const ANALYZE_EVERY: Duration = Duration::from_secs(15);

/// Production's PostgreSQL runs autovacuum, whose analyze keeps the planner's statistics up
/// as the tables grow, and invalidates the plans cached on a table's earlier size. This
/// machine's server may run without it (a CI configuration): then the plans the worker's
/// connections prepared on empty tables stay, and a link lookup came to read the whole
/// table (9,000 buffers, 22 ms each at 80,000 links). When autovacuum is off, the bench
/// analyzes its database every [`ANALYZE_EVERY`] as autovacuum would (its naptime is a
/// minute), and says so on stderr.
async fn stand_in_for_autoanalyze(url: &str, stop: CancellationToken) -> anyhow::Result<()> {
    use sea_orm::{ConnectionTrait, Database};
    let db = Database::connect(url)
        .await
        .context("a connection for the bench's analyze")?;
    let on = db
        .query_one_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            "SHOW autovacuum",
        ))
        .await?
        .map(|row| row.try_get::<String>("", "autovacuum"))
        .transpose()?;
    if on.as_deref() == Some("on") {
        return Ok(());
    }
    eprintln!(
        "bench: this PostgreSQL runs without autovacuum; the bench analyzes its database every {}s in its stead",
        ANALYZE_EVERY.as_secs()
    );
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(ANALYZE_EVERY);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tick.tick() => {}
            }
            if let Err(e) = db.execute_unprepared("ANALYZE").await {
                eprintln!("bench: analyze failed: {e}");
            }
        }
        let _ = db.close().await;
    });
    Ok(())
}
