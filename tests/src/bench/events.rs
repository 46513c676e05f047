//! The event half of benchmark 5: after a backfill, people edit GHL (contact fields, new and
//! completed tasks, new and edited notes) and each edit arrives as a webhook; the clock runs
//! from the first edit until everything is handled. The service takes the webhooks through
//! its ingress, queue and worker; the baseline takes them on a bare HTTP endpoint and handles
//! them one at a time. Both run on their own simulators, seeded alike, under the same
//! compressed rate limit, with the same edits.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use app::demo::sim::World;
use app::scheduler::Job;

use super::baseline::{Plain, receiver};
use super::machine::{Load, LoadSpan, Machine};
use super::rig::{QueueKind, Rig, RigOptions};
use super::{Data, RateLimit, Traffic, ratio, reset_counters, round3, secs};

#[derive(Debug, Clone)]
pub struct EventsArgs {
    pub data: Data,
    pub edits: usize,
    pub rate: RateLimit,
    pub queue: QueueKind,
    /// The store's backend (`--store sqlite|postgres`).
    pub store: store::test_support::TestBackend,
    pub baseline: bool,
}

fn figures(
    world: &World,
    wall: Duration,
    webhooks: u64,
    rate: &RateLimit,
    load: LoadSpan,
) -> Value {
    let t = Traffic::of(world);
    json!({
        "wall_s": secs(wall),
        "webhooks": webhooks,
        "events_per_s": round3(webhooks as f64 / wall.as_secs_f64().max(f64::MIN_POSITIVE)),
        "ghl_calls": t.ghl_calls,
        "ghl_calls_per_event": round3(t.ghl_calls as f64 / webhooks.max(1) as f64),
        "floor_s": round3(rate.floor_s(t.ghl_calls)),
        "ekyte_calls": t.ekyte_calls,
        "rate_limited_earned": t.rate_limited_earned,
        "ghl_routes": t.ghl_routes,
        "load": load,
    })
}

pub async fn run(args: &EventsArgs) -> anyhow::Result<Value> {
    let spec = args.data.spec(&args.rate);
    let deadline = Duration::from_secs(3600);

    eprintln!(
        "events: service backfill of {} contacts",
        args.data.contacts
    );
    let mut world = World::start(&spec).await?;
    let rig = Rig::start(
        &world,
        &spec,
        &RigOptions::with_webhooks(args.queue, args.store),
    )
    .await?;
    rig.enqueue(Job::Full).await?;
    rig.quiet(&world, deadline).await?;
    eprintln!("events: {} edits in GHL (service)", args.edits);
    reset_counters(&world);
    let statements_before = rig.statements();
    let kinds_before = rig.statements_by_kind();
    let before = Load::now();
    let t0 = Instant::now();
    let done = world.ghl_edits(args.edits)?;
    let end = rig.quiet(&world, deadline).await?;
    let statements = rig.statements() - statements_before;
    let webhooks = world.ghl.counter_snapshot().event("webhooks_sent");
    let mut ours = figures(
        &world,
        end - t0,
        webhooks,
        &args.rate,
        LoadSpan {
            before,
            after: Load::now(),
        },
    );
    // The ingress's statements and the worker's, every webhook of the edits included.
    ours["store_statements"] = json!(statements);
    ours["store_statements_per_webhook"] =
        json!(round3(statements as f64 / webhooks.max(1) as f64));
    ours["store_statements_per_webhook_by_kind"] = json!(super::statements_between(
        &kinds_before,
        &rig.statements_by_kind(),
        webhooks as usize
    ));
    let verdict = app::demo::verify::verify(&world)?;
    rig.stop().await;
    drop(world);

    let mut report = json!({
        "benchmark": "events",
        "store": args.store.to_string(),
        "machine": Machine::read(),
        "data": args.data,
        "rate_limit": args.rate,
        "queue": args.queue,
        "edits": done,
        "ours": ours,
        "ours_converged": verdict.converged,
    });
    if args.baseline {
        eprintln!("events: baseline backfill");
        let mut world = World::start(&spec).await?;
        let mut plain = Plain::new(
            &world,
            Duration::from_millis(args.rate.baseline_sleep_on_429_ms),
        )?;
        plain.backfill().await?;
        let (url, mut rx) = receiver().await?;
        world.ghl.set_webhook_target(Some(url));
        eprintln!("events: {} edits in GHL (baseline)", args.edits);
        reset_counters(&world);
        let before = Load::now();
        let t0 = Instant::now();
        world.ghl_edits(args.edits)?;
        let end = plain.handle_events(&world, &mut rx, deadline).await?;
        let webhooks = world.ghl.counter_snapshot().event("webhooks_sent");
        let base = figures(
            &world,
            end - t0,
            webhooks,
            &args.rate,
            LoadSpan {
                before,
                after: Load::now(),
            },
        );
        let num = |v: &Value, k: &str| v[k].as_f64().unwrap_or(0.0);
        report["ours_over_baseline"] = json!({
            "wall_s": ratio(num(&report["ours"], "wall_s"), num(&base, "wall_s")),
            "ghl_calls": ratio(num(&report["ours"], "ghl_calls"), num(&base, "ghl_calls")),
            "ekyte_calls": ratio(num(&report["ours"], "ekyte_calls"), num(&base, "ekyte_calls")),
        });
        report["baseline"] = base;
        report["baseline_counts"] = json!(plain.counts);
    }
    Ok(report)
}
