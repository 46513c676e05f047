//! Benchmark 6: how much of GHL's burst limit the rate budget uses, with nothing else in the
//! way: `--calls` single-contact reads from `--tasks` concurrent tasks (half real-time, half
//! bulk), first through one adapter, then through `--replicas` adapters sharing the location
//! (replicas; 2 by default). With `--shared-window` every adapter also takes its slots from
//! the store's shared rate window (`ghl.shared_window`), as the replicas of a deployment on
//! PostgreSQL do (`--store postgres`). The simulator's limit is GHL's, compressed in time.
//!
//! A sliding window lets the first `max` calls through at once and each further `max` one
//! interval later, so `calls` calls need at least `(calls - max) / max` intervals. The machine
//! may not even reach that pace with no limit at all, so the floor is also never below the
//! same run with the limit out of reach (measured before and after, the slower of the two).
//! `share = floor / wall`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{Value, json};

use app::demo::sim::World;
use domain::{GhlContactId, Tenant};
use ghl::GhlAdapter;
use ports::ghl::GhlApi;
use ports::store::RateWindow;
use ports::{Priority, Scope};
use sandbox::ghl::RateLimitConfig;
use store::test_support::TestBackend;

use super::machine::{Load, Machine};
use super::rig::{Rig, RigOptions};
use super::{Data, RateLimit, reset_counters, round3, secs};

#[derive(Debug, Clone)]
pub struct RateArgs {
    pub rate: RateLimit,
    pub calls: usize,
    pub tasks: usize,
    /// Rounds of each measurement; the report keeps every round and the best.
    pub rounds: usize,
    /// Adapters sharing the location in the second measurement.
    pub replicas: usize,
    pub store: TestBackend,
    /// Whether the adapters take their slots from the store's shared window.
    pub shared_window: bool,
}

/// `calls` reads spread over `tasks` tasks and `adapters` (half real-time, half bulk), as fast
/// as their budgets let; the elapsed time.
pub async fn hammer(
    adapters: &[GhlAdapter],
    tenant: &Arc<Tenant>,
    contact: &GhlContactId,
    calls: usize,
    tasks: usize,
) -> anyhow::Result<Duration> {
    let left = Arc::new(AtomicUsize::new(calls));
    let started = Instant::now();
    let mut handles = Vec::new();
    for i in 0..tasks {
        let adapter = adapters[i % adapters.len()].clone();
        let priority = if i % 2 == 0 {
            Priority::RealTime
        } else {
            Priority::Bulk
        };
        let scope = Scope::new(tenant.clone(), priority);
        let (left, contact) = (left.clone(), contact.clone());
        handles.push(tokio::spawn(async move {
            while left
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                adapter.get_contact(&scope, &contact).await?;
            }
            anyhow::Ok(())
        }));
    }
    for h in handles {
        h.await.context("a reading task panicked")??;
    }
    Ok(started.elapsed())
}

struct Bench<'a> {
    world: &'a World,
    rig: &'a Rig,
    tenant: Arc<Tenant>,
    contact: GhlContactId,
    args: &'a RateArgs,
}

impl Bench<'_> {
    fn replica(&self) -> anyhow::Result<GhlAdapter> {
        let store = self.rig.app.store.clone();
        let window = self
            .args
            .shared_window
            .then(|| store.clone() as Arc<dyn RateWindow>);
        GhlAdapter::with_window(app::wiring::ghl_config(&self.rig.app.config), store, window)
            .context("a GHL adapter")
    }

    fn limit(&self, max: u32) {
        self.world.ghl.set_rate_limits(RateLimitConfig {
            max,
            interval_ms: self.args.rate.interval_ms,
            ..RateLimitConfig::default()
        });
        self.world.ghl.reset_rate_limits();
    }

    /// The same reads with the limit out of reach, through a fresh adapter.
    async fn unlimited(&self) -> anyhow::Result<Duration> {
        self.limit(u32::MAX / 2);
        let free = self.replica()?;
        let elapsed = hammer(
            std::slice::from_ref(&free),
            &self.tenant,
            &self.contact,
            self.args.calls,
            self.args.tasks,
        )
        .await?;
        self.limit(self.args.rate.max);
        reset_counters(self.world);
        Ok(elapsed)
    }

    /// One round with `replicas` fresh adapters under the limit.
    async fn round(&self, replicas: usize) -> anyhow::Result<Value> {
        let before = self.unlimited().await?;
        let adapters = (0..replicas)
            .map(|_| self.replica())
            .collect::<anyhow::Result<Vec<_>>>()?;
        let wall = hammer(
            &adapters,
            &self.tenant,
            &self.contact,
            self.args.calls,
            self.args.tasks,
        )
        .await?;
        let counters = self.world.ghl.counter_snapshot();
        let capacity = before.max(self.unlimited().await?);
        let rate = &self.args.rate;
        let by_limit = (self.args.calls as u64).saturating_sub(u64::from(rate.max)) as f64
            / rate.allowed_per_s;
        let floor = by_limit.max(capacity.as_secs_f64());
        let budgets: Vec<Value> = adapters
            .iter()
            .map(|a| {
                let b = a.budgets().snapshot();
                json!({
                    "throttled": b.iter().map(|s| s.throttled).sum::<u64>(),
                    "others_seen": b.iter().map(|s| s.others_seen).sum::<u64>(),
                })
            })
            .collect();
        Ok(json!({
            "wall_s": secs(wall),
            "floor_by_limit_s": round3(by_limit),
            "no_limit_s": secs(capacity),
            "share_of_limit": round3(floor / wall.as_secs_f64()),
            "req_per_s": round3(self.args.calls as f64 / wall.as_secs_f64()),
            "ghl_429": counters.status_total(429),
            "rate_limited_earned": counters.event("rate_limited_earned"),
            "budgets": budgets,
        }))
    }

    async fn rounds(&self, replicas: usize) -> anyhow::Result<Value> {
        let mut rounds = Vec::new();
        for r in 1..=self.args.rounds {
            eprintln!("rate: {replicas} replica(s), round {r}");
            rounds.push(self.round(replicas).await?);
        }
        let best = rounds
            .iter()
            .filter_map(|r| r["share_of_limit"].as_f64())
            .fold(0.0_f64, f64::max);
        let earned: u64 = rounds
            .iter()
            .filter_map(|r| r["rate_limited_earned"].as_u64())
            .sum();
        Ok(json!({
            "best_share_of_limit": best,
            "rate_limited_earned": earned,
            "rounds": rounds,
        }))
    }
}

pub async fn run(args: &RateArgs) -> anyhow::Result<Value> {
    anyhow::ensure!(
        args.calls > 0 && args.tasks > 0 && args.rounds > 0,
        "--calls, --tasks and --rounds must be positive"
    );
    let load_before = Load::now();
    let spec = Data::new(1).spec(&args.rate);
    anyhow::ensure!(args.replicas > 0, "--replicas must be positive");
    let world = World::start(&spec).await?;
    let rig = Rig::start(
        &world,
        &spec,
        &RigOptions {
            worker: false,
            store: args.store,
            ..RigOptions::default()
        },
    )
    .await?;
    let contact = GhlContactId::parse(world.contacts[0].clone())
        .context("the simulator's first contact id")?;
    let bench = Bench {
        world: &world,
        rig: &rig,
        tenant: Arc::new(world.tenant(&spec)?),
        contact,
        args,
    };
    let one = bench.rounds(1).await?;
    let many = bench.rounds(args.replicas).await?;
    rig.stop().await;
    Ok(json!({
        "benchmark": "rate",
        "machine": Machine::read(),
        "load": { "before": load_before, "after": Load::now() },
        "rate_limit": args.rate,
        "calls": args.calls,
        "tasks": args.tasks,
        "store": args.store.to_string(),
        "shared_window": args.shared_window,
        "replicas": args.replicas,
        "goal": "one replica: ≥ 90% of the limit; 3 replicas: ≥ 95% with the shared window; no 429 earned",
        "one_replica": one,
        "replicas_sharing": many,
    }))
}
