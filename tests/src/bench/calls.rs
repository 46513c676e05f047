//! Benchmark 2: GHL calls per contact, per route, from the simulator's counters — on the
//! first full sync of a location, on a second full sync where nothing changed, and on an
//! incremental sync where nothing changed (goal: search pages only); with the naive three
//! reads per contact of the baseline next to them.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use app::demo::sim::World;
use app::scheduler::Job;

use super::baseline::Plain;
use super::machine::{Load, Machine};
use super::rig::{QueueKind, Rig, RigOptions};
use super::{Data, RateLimit, Traffic, reset_counters, round3, secs, statements_between};

#[derive(Debug, Clone)]
pub struct CallsArgs {
    pub data: Data,
    pub rate: RateLimit,
    pub queue: QueueKind,
    /// The store's backend (`--store sqlite|postgres`).
    pub store: store::test_support::TestBackend,
    pub webhooks: bool,
}

fn phase(world: &World, contacts: usize, wall: Duration) -> Value {
    let t = Traffic::of(world);
    json!({
        "contacts": contacts,
        "wall_s": secs(wall),
        "ghl_calls": t.ghl_calls,
        "ghl_calls_per_contact": t.per_contact(contacts),
        "ghl_reads_per_contact": round3(t.ghl_reads() as f64 / contacts.max(1) as f64),
        "ghl_writes_per_contact": round3(t.ghl_writes() as f64 / contacts.max(1) as f64),
        "ekyte_calls_per_contact": round3(t.ekyte_calls as f64 / contacts.max(1) as f64),
        "ghl_routes": t.ghl_routes,
        "rate_limited_earned": t.rate_limited_earned,
        "ekyte_calls": t.ekyte_calls,
        "ekyte_routes": t.ekyte_routes,
    })
}

pub async fn run(args: &CallsArgs) -> anyhow::Result<Value> {
    let n = args.data.contacts;
    let spec = args.data.spec(&args.rate);
    let load_before = Load::now();
    let world = World::start(&spec).await?;
    let rig = Rig::start(
        &world,
        &spec,
        &RigOptions {
            queue: args.queue,
            store: args.store,
            ingress: args.webhooks,
            webhooks_to_ingress: args.webhooks,
            ..RigOptions::default()
        },
    )
    .await?;
    let deadline = Duration::from_secs(3600);
    let mut phases = serde_json::Map::new();
    for (name, job) in [
        ("first_full_sync", Job::Full),
        ("second_full_sync_nothing_changed", Job::Full),
        ("incremental_sync_nothing_changed", Job::Incremental),
    ] {
        eprintln!("calls: {name}");
        reset_counters(&world);
        let statements_before = rig.statements();
        let kinds_before = rig.statements_by_kind();
        let t0 = Instant::now();
        rig.enqueue(job).await?;
        let end = rig.quiet(&world, deadline).await?;
        let statements = rig.statements() - statements_before;
        let mut figures = phase(&world, n, end - t0);
        figures["store_statements"] = json!(statements);
        figures["store_statements_per_contact"] =
            json!(round3(statements as f64 / n.max(1) as f64));
        figures["store_statements_per_contact_by_kind"] = json!(statements_between(
            &kinds_before,
            &rig.statements_by_kind(),
            n
        ));
        phases.insert(name.into(), figures);
    }
    let verdict = app::demo::verify::verify(&world)?;
    rig.stop().await;
    drop(world);

    eprintln!("calls: the baseline's backfill");
    let world = World::start(&spec).await?;
    let mut plain = Plain::new(
        &world,
        Duration::from_millis(args.rate.baseline_sleep_on_429_ms),
    )?;
    reset_counters(&world);
    let t0 = Instant::now();
    plain.backfill().await?;
    let baseline = phase(&world, n, t0.elapsed());
    Ok(json!({
        "benchmark": "calls",
        "store": args.store.to_string(),
        "machine": Machine::read(),
        "load": { "before": load_before, "after": Load::now() },
        "data": args.data,
        "rate_limit": args.rate,
        "webhooks_delivered_to_ingress": args.webhooks,
        "goal": "incremental with nothing changed: search pages only; full sync: below the naive 3 reads per contact",
        "ours": phases,
        "ours_converged": verdict.converged,
        "baseline_backfill": baseline,
        "search_pages_needed": n.div_ceil(100),
    }))
}
