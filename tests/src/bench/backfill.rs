//! Benchmark 1 (and the backfill half of 5): a full sync of a fresh location against GHL's
//! rate limit compressed in time, by the service and by the hand-written baseline, each on
//! its own simulators seeded alike.
//!
//! `floor_s` is the calls a run made divided by the allowed rate: no client can make those
//! calls faster. `ratio = wall_s / floor_s` says how close to the limit it ran; the 429s the
//! simulator counts as earned say whether it ever went over.

use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Value, json};

use app::demo::sim::{World, WorldSpec};
use app::scheduler::Job;

use super::baseline::{Plain, PlainCounts};
use super::machine::{Load, LoadSpan, Machine, cpu_seconds, peak_rss_mib};
use super::rig::{QueueKind, Rig, RigOptions};
use super::sims::{ChildSims, Sims, SimsPlace};
use super::{Data, RateLimit, Traffic, ratio, round3, secs};

#[derive(Debug, Clone)]
pub struct BackfillArgs {
    pub data: Data,
    pub rate: RateLimit,
    pub queue: QueueKind,
    /// The store's backend (`--store sqlite|postgres`).
    pub store: store::test_support::TestBackend,
    /// Deliver GHL's webhooks to the service's ingress during the backfill (what a real
    /// installation does: the onboarding tasks it creates come back as `TaskCreate`).
    pub webhooks: bool,
    pub baseline: bool,
    pub prefetch: Option<u16>,
    /// Where the simulators run (`--sims here|child`): in a child process, the CPU and RSS
    /// reported are the service's alone.
    pub sims: SimsPlace,
}

/// One side's figures.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    pub wall_s: f64,
    pub floor_s: f64,
    pub ratio: f64,
    pub ghl_calls_per_contact: f64,
    pub traffic: Traffic,
    pub cpu_s: f64,
    pub cpu_ms_per_contact: f64,
    pub load: LoadSpan,
}

impl Run {
    fn new(
        wall: Duration,
        traffic: Traffic,
        contacts: usize,
        rate: &RateLimit,
        cpu_s: f64,
        load: LoadSpan,
    ) -> Self {
        let floor = rate.floor_s(traffic.ghl_calls);
        Self {
            wall_s: secs(wall),
            floor_s: round3(floor),
            ratio: round3(wall.as_secs_f64() / floor.max(f64::MIN_POSITIVE)),
            ghl_calls_per_contact: round3(traffic.ghl_calls as f64 / contacts.max(1) as f64),
            traffic,
            cpu_s: round3(cpu_s),
            cpu_ms_per_contact: round3(cpu_s * 1000.0 / contacts.max(1) as f64),
            load,
        }
    }
}

/// The service's backfill on a fresh world: its figures, the worker's, and whether both
/// sides agree afterwards.
pub async fn ours(args: &BackfillArgs) -> anyhow::Result<(Run, Value, Value)> {
    let spec = args.data.spec(&args.rate);
    match args.sims {
        SimsPlace::Here => {
            let world = World::start(&spec).await?;
            let (run, worker) = ours_on(&world, &spec, args).await?;
            Ok((run, worker, world.verify().await?))
        }
        SimsPlace::Child => {
            eprintln!("backfill: seeding the simulators in a child process");
            let sims = ChildSims::start(&args.data, &args.rate).await?;
            let (cpu0, _) = sims.usage().await?;
            let (run, mut worker) = ours_on(&sims, &spec, args).await?;
            let (cpu1, rss) = sims.usage().await?;
            worker["simulators"] = json!({
                "process": "child",
                "seed_s": sims.seed_s(),
                "cpu_s": round3(cpu1 - cpu0),
                "peak_rss_mib": rss,
            });
            let verdict = sims.verify().await?;
            sims.stop().await?;
            Ok((run, worker, verdict))
        }
    }
}

async fn ours_on(
    sims: &dyn Sims,
    spec: &WorldSpec,
    args: &BackfillArgs,
) -> anyhow::Result<(Run, Value)> {
    let rig = Rig::start(
        sims,
        spec,
        &RigOptions {
            queue: args.queue,
            store: args.store,
            ingress: args.webhooks,
            webhooks_to_ingress: args.webhooks,
            prefetch: args.prefetch,
            ..RigOptions::default()
        },
    )
    .await?;
    sims.reset_counters().await?;
    let before = Load::now();
    let statements0 = rig.statements();
    let cpu0 = cpu_seconds();
    let t0 = Instant::now();
    rig.enqueue(Job::Full).await?;
    let end = rig.quiet(sims, Duration::from_secs(4 * 3600)).await?;
    let wall = end - t0;
    let cpu = cpu_seconds() - cpu0;
    // The peak up to the backfill's end, before the poll below reads the whole company.
    let rss = peak_rss_mib();
    let statements = rig.statements() - statements0;
    let traffic = sims.traffic().await?;
    let load = LoadSpan {
        before,
        after: Load::now(),
    };
    let contacts = args.data.contacts.max(1) as f64;
    let stats = &rig.stats;
    let worker = json!({
        "messages_done": stats.done.load(std::sync::atomic::Ordering::Relaxed),
        "retried": stats.retried.load(std::sync::atomic::Ordering::Relaxed),
        // Bulk messages handed back to the delay queues by the lane's shares (`fair.rs`).
        "deferred": stats.deferred.load(std::sync::atomic::Ordering::Relaxed),
        "dead_lettered": stats.dead_lettered.load(std::sync::atomic::Ordering::Relaxed),
        "store_statements": statements,
        "store_statements_per_contact": round3(statements as f64 / contacts),
        "peak_rss_mib_backfill": round3(rss),
        "budget": rig.app.ghl.budgets().snapshot().iter().map(|b| json!({
            "granted": b.granted, "throttled": b.throttled, "others_seen": b.others_seen,
        })).collect::<Vec<_>>(),
    });
    // The seed holds a workspace made in eKyte; the backfill (GHL to eKyte) leaves it alone,
    // and the verdict, which checks both ways, would count it against the run. One poll of
    // eKyte, after every figure above was taken, copies it as the scheduler's would.
    rig.enqueue(Job::Poll).await?;
    rig.quiet(sims, Duration::from_secs(600)).await?;
    rig.stop().await;
    Ok((
        Run::new(wall, traffic, args.data.contacts, &args.rate, cpu, load),
        worker,
    ))
}

/// The baseline's backfill on a fresh world seeded alike.
pub async fn baseline(args: &BackfillArgs) -> anyhow::Result<(Run, PlainCounts, World)> {
    let spec = args.data.spec(&args.rate);
    let world = World::start(&spec).await?;
    let mut plain = Plain::new(
        &world,
        Duration::from_millis(args.rate.baseline_sleep_on_429_ms),
    )?;
    super::reset_counters(&world);
    let before = Load::now();
    let cpu0 = cpu_seconds();
    let t0 = Instant::now();
    plain.backfill().await?;
    let wall = t0.elapsed();
    let cpu = cpu_seconds() - cpu0;
    let traffic = Traffic::of(&world);
    let load = LoadSpan {
        before,
        after: Load::now(),
    };
    Ok((
        Run::new(wall, traffic, args.data.contacts, &args.rate, cpu, load),
        plain.counts,
        world,
    ))
}

pub async fn run(args: &BackfillArgs) -> anyhow::Result<Value> {
    let machine = Machine::read();
    eprintln!(
        "backfill: {} contacts, limit {} per {} ms, service first",
        args.data.contacts, args.rate.max, args.rate.interval_ms
    );
    let (ours, worker, verdict) = ours(args).await?;
    let converged = verdict["converged"].as_bool().unwrap_or(false);
    eprintln!(
        "backfill (service): wall {:.1}s, floor {:.1}s, ratio {:.3}, earned 429s {}, converged {converged}, {:.2} ms CPU per contact",
        ours.wall_s,
        ours.floor_s,
        ours.ratio,
        ours.traffic.rate_limited_earned,
        ours.cpu_ms_per_contact
    );
    let mut report = json!({
        "benchmark": "backfill",
        "store": args.store.to_string(),
        "machine": machine,
        "data": args.data,
        "rate_limit": args.rate,
        "queue": args.queue,
        "webhooks_delivered_to_ingress": args.webhooks,
        "goal": "ratio <= 1.10 with zero 429s earned",
        "ours": ours,
        "ours_worker": worker,
        "simulators": args.sims,
        "ours_converged": converged,
        "ours_problems": verdict["problems"],
        "goal_met": ours.ratio <= 1.10 && ours.traffic.rate_limited_earned == 0,
    });
    if args.baseline {
        eprintln!("backfill: the hand-written baseline");
        let (base, counts, _world) = baseline(args).await?;
        eprintln!(
            "backfill (baseline): wall {:.1}s, floor {:.1}s, ratio {:.3}, 429s {}",
            base.wall_s, base.floor_s, base.ratio, base.traffic.rate_limited_earned
        );
        report["baseline"] = json!(base);
        report["baseline_counts"] = json!(counts);
        report["ours_over_baseline"] = json!({
            "wall_s": ratio(ours.wall_s, base.wall_s),
            "ghl_calls": ratio(ours.traffic.ghl_calls as f64, base.traffic.ghl_calls as f64),
            "ekyte_calls": ratio(ours.traffic.ekyte_calls as f64, base.traffic.ekyte_calls as f64),
            "rate_limited_earned": json!([ours.traffic.rate_limited_earned, base.traffic.rate_limited_earned]),
            "cpu_s": ratio(ours.cpu_s, base.cpu_s),
        });
    }
    // The backfill's own peak; the process's also counts the poll after it (it reads every
    // workspace of the company) and the baseline's world.
    report["peak_rss_mib"] = report["ours_worker"]["peak_rss_mib_backfill"].clone();
    report["peak_rss_mib_process"] = json!(round3(peak_rss_mib()));
    Ok(report)
}
