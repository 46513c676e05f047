//! Benchmark 3: worker throughput and memory against zero-latency simulators with no rate
//! limit in the way, on a backlog: N `sync.contact` messages are enqueued first, then the
//! worker starts and the drain is timed — once on a fresh location (every contact creates its
//! workspace, tasks, notes, profile note and onboarding task) and once more with nothing
//! changed (reads and comparisons only).
//!
//! The worker runs in a child process (this binary, `__worker-child`) so its peak RSS
//! (`VmHWM`) and CPU time are its own, not the simulators'; the simulators stay in the parent.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use app::demo::sim::World;
use app::queue::Broker;
use app::queue::memory::MemoryBroker;
use app::wiring::{self, App};
use domain::{GhlContactId, Tenant};
use ports::queue::{Envelope, Payload};

use super::machine::{Load, Machine, cpu_seconds, peak_rss_mib, rss_mib};
use super::rig::{QueueKind, base_config, delete_amqp_topology};
use super::{Data, RateLimit, Traffic, reset_counters, round3};

/// The hidden sub-command the child runs.
pub const CHILD: &str = "__worker-child";

#[derive(Debug, Clone)]
pub struct WorkerArgs {
    pub data: Data,
    pub queue: QueueKind,
    pub prefetch: u16,
}

/// What the parent tells the child.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ChildSpec {
    ghl_url: String,
    ekyte_url: String,
    tenant: Tenant,
    ekyte_api_key: String,
    ekyte_mcp_token: Option<String>,
    ghl_token: String,
    contacts: Vec<String>,
    rate_max: u32,
    rate_interval_ms: u64,
    queue: QueueKind,
    prefetch: u16,
}

/// One drained backlog.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Drain {
    messages: usize,
    enqueue_s: f64,
    drain_s: f64,
    syncs_per_s: f64,
    worker_cpu_s: f64,
    /// Contact syncs per CPU-second of the worker process ("per core").
    syncs_per_cpu_s: f64,
    /// Cores the worker process kept busy on average.
    worker_cores_used: f64,
    rss_after_enqueue_mib: f64,
    rss_after_drain_mib: f64,
    done: u64,
    retried: u64,
    dead_lettered: u64,
}

pub async fn run(args: &WorkerArgs) -> anyhow::Result<Value> {
    // No limit in the way: the simulator admits far more than the worker can send.
    let rate = RateLimit::new(1_000_000, 1_000);
    let spec = args.data.spec(&rate);
    eprintln!("worker: seeding {} contacts", args.data.contacts);
    let world = World::start(&spec).await?;
    let tenant = world.tenant(&spec)?;
    let company = &world.company;
    let child_spec = ChildSpec {
        ghl_url: world.ghl.base_url(),
        ekyte_url: world.ekyte.base_url(),
        tenant,
        ekyte_api_key: company.api_key.clone(),
        ekyte_mcp_token: company.admin.mcp_token.clone(),
        ghl_token: world.pit.clone(),
        contacts: world.contacts.clone(),
        rate_max: rate.max,
        rate_interval_ms: rate.interval_ms,
        queue: args.queue,
        prefetch: args.prefetch,
    };
    reset_counters(&world);
    let load_before = Load::now();
    let parent_cpu0 = cpu_seconds();
    let exe = std::env::current_exe().context("locating the bench binary")?;
    let mut child = tokio::process::Command::new(exe)
        .arg(CHILD)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .context("starting the worker child process")?;
    let mut stdin = child.stdin.take().context("child stdin")?;
    stdin.write_all(&serde_json::to_vec(&child_spec)?).await?;
    drop(stdin);
    let mut out = String::new();
    child
        .stdout
        .take()
        .context("child stdout")?
        .read_to_string(&mut out)
        .await?;
    let status = child.wait().await?;
    if !status.success() {
        bail!("the worker child failed ({status})");
    }
    let child_report: Value =
        serde_json::from_str(&out).with_context(|| format!("the child's report: {out}"))?;
    let simulators_cpu_s = cpu_seconds() - parent_cpu0;
    let traffic = Traffic::of(&world);
    let verdict = app::demo::verify::verify(&world)?;
    Ok(json!({
        "benchmark": "worker",
        "machine": Machine::read(),
        "load": { "before": load_before, "after": Load::now() },
        "data": args.data,
        "queue": args.queue,
        "prefetch_per_lane": args.prefetch,
        "worker": child_report,
        "simulators_cpu_s": round3(simulators_cpu_s),
        "ghl_calls": traffic.ghl_calls,
        "ekyte_calls": traffic.ekyte_calls,
        "converged": verdict.converged,
    }))
}

/// The child: build the service on the simulators the parent started, enqueue the backlog,
/// start the worker, time the drain; twice. Prints its report on stdout.
pub async fn child() -> anyhow::Result<Value> {
    let mut raw = Vec::new();
    tokio::io::stdin().read_to_end(&mut raw).await?;
    let spec: ChildSpec = serde_json::from_slice(&raw).context("the child's spec on stdin")?;
    let dir = tempfile::tempdir()?;
    let mut cfg = base_config()?;
    cfg.ghl.api_base = url::Url::parse(&spec.ghl_url)?;
    cfg.ekyte.api_base = url::Url::parse(&spec.ekyte_url)?;
    cfg.ghl.rate_max = spec.rate_max;
    cfg.ghl.rate_interval = Duration::from_millis(spec.rate_interval_ms);
    cfg.database.url = SecretString::from(format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("worker.db").display()
    ));
    cfg.queue.prefetch = spec.prefetch;
    cfg.database.max_connections = cfg
        .database
        .max_connections
        .max(2 * u32::from(spec.prefetch) + 2);
    cfg.queue.prefix = format!(
        "ges-bench-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let rss_start = rss_mib();
    let broker: Arc<dyn Broker> = match spec.queue {
        QueueKind::Memory => Arc::new(MemoryBroker::new()),
        QueueKind::Amqp => app::wiring::amqp_broker(&cfg).await?,
    };
    let ring = wiring::keyring(&cfg, true)?;
    let store = wiring::connect_store(&cfg, ring).await?;
    store.migrate().await?;
    let app = App::build(cfg, store, broker).await?;
    app::admin::add_tenant(
        app.store.as_ref(),
        app.store.as_ref(),
        &spec.tenant,
        Some(SecretString::from(spec.ekyte_api_key.clone())),
        spec.ekyte_mcp_token.clone().map(SecretString::from),
        Some(SecretString::from(spec.ghl_token.clone())),
    )
    .await?;
    let contacts: Vec<GhlContactId> = spec
        .contacts
        .iter()
        .map(GhlContactId::parse)
        .collect::<Result<_, _>>()?;

    let result = async {
        let mut worker = Some(app.worker("bench-worker".into()));
        let stats = worker
            .as_ref()
            .map(|w| w.stats.clone())
            .context("the worker")?;
        let shutdown = tokio_util::sync::CancellationToken::new();
        let mut drains = Vec::new();
        let mut handle = None;
        for round in ["first_sync", "resync_nothing_changed"] {
            eprintln!("worker child: {round}: enqueueing {}", contacts.len());
            let running = handle.is_some();
            // Read before the enqueue: a running worker settles messages while they are
            // still being published (slowly, with publisher confirms on RabbitMQ).
            let settled0 = stats.settled();
            let done0 = stats.done.load(Ordering::Relaxed);
            let retried0 = stats.retried.load(Ordering::Relaxed);
            let dead0 = stats.dead_lettered.load(Ordering::Relaxed);
            let cpu_enqueue = cpu_seconds();
            let t_enqueue = Instant::now();
            for c in &contacts {
                let env = Envelope::new(
                    format!("bench:{round}:{c}"),
                    spec.tenant.id.clone(),
                    Payload::SyncContact {
                        contact: c.clone(),
                        dry_run: false,
                        prefetched: None,
                    },
                    app.clock.now(),
                );
                app.broker.publish(&env).await?;
            }
            let enqueue = t_enqueue.elapsed();
            let rss_after_enqueue = rss_mib();
            // A running worker starts on the messages as they arrive: time from the first.
            let (cpu0, t0) = if running {
                (cpu_enqueue, t_enqueue)
            } else {
                (cpu_seconds(), Instant::now())
            };
            // The first backlog is drained by a worker started after it was enqueued; the
            // second is enqueued faster than it drains, so it is a backlog too.
            if let Some(w) = worker.take() {
                handle = Some(tokio::spawn(w.run(shutdown.clone())));
            }
            let target = settled0 + contacts.len() as u64;
            let deadline = Instant::now() + Duration::from_secs(3600);
            while stats.settled() < target || stats.in_flight.load(Ordering::SeqCst) > 0 {
                if Instant::now() > deadline {
                    bail!("the backlog did not drain within an hour");
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            let drain = t0.elapsed();
            let cpu = cpu_seconds() - cpu0;
            let n = contacts.len();
            drains.push((
                round,
                Drain {
                    messages: n,
                    enqueue_s: round3(enqueue.as_secs_f64()),
                    drain_s: round3(drain.as_secs_f64()),
                    syncs_per_s: round3(n as f64 / drain.as_secs_f64()),
                    worker_cpu_s: round3(cpu),
                    syncs_per_cpu_s: round3(n as f64 / cpu.max(f64::MIN_POSITIVE)),
                    worker_cores_used: round3(cpu / drain.as_secs_f64()),
                    rss_after_enqueue_mib: round3(rss_after_enqueue),
                    rss_after_drain_mib: round3(rss_mib()),
                    done: stats.done.load(Ordering::Relaxed) - done0,
                    retried: stats.retried.load(Ordering::Relaxed) - retried0,
                    dead_lettered: stats.dead_lettered.load(Ordering::Relaxed) - dead0,
                },
            ));
        }
        shutdown.cancel();
        if let Some(h) = handle {
            let _ = h.await;
        }
        anyhow::Ok(drains)
    }
    .await;
    let report = match result {
        Ok(drains) => json!({
            "rss_at_start_mib": round3(rss_start),
            "peak_rss_mib": round3(peak_rss_mib()),
            "backlogs": drains.into_iter().map(|(k, v)| (k.to_owned(), json!(v))).collect::<serde_json::Map<_, _>>(),
        }),
        Err(e) => {
            if spec.queue == QueueKind::Amqp {
                delete_amqp_topology(&app.config).await;
            }
            return Err(e);
        }
    };
    if spec.queue == QueueKind::Amqp {
        delete_amqp_topology(&app.config).await;
    }
    Ok(report)
}
