//! Many locations at once (issue 17): after an agency-wide install, every location backfills
//! together, each within its own GHL budget. Two scenarios, each run with the bulk lane
//! shared between tenants (`queue.fair_bulk`, the default) and without (one FIFO):
//!
//! - `late`: location A's backfill has queued its first contacts when location B's starts;
//!   how long B takes to reach eKyte, against the least time B's own calls need at its
//!   limit;
//! - `many`: `sites` locations of `contacts` contacts each start together. The wall time
//!   against the floor of one location (its calls at its limit: the locations' budgets are
//!   separate, so all of them together need no longer than one, in principle), and the
//!   latency of a webhook sent meanwhile for any location: a `ghl.event` published on the
//!   real-time lane every `probe_ms`, timed until the worker recorded it handled.
//!
//! Nothing here asserts a time; the report says what was measured and the goals beside it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use app::demo::sim::{Site, World};
use app::scheduler::Job;
use domain::{GhlContactId, LocationId, TenantId};
use ports::ghl::{GhlEvent, GhlEventKind};
use ports::queue::{Envelope, Payload};
use ports::store::{Inbox, RunKind, RunStore};

use super::machine::{Machine, cpu_seconds, peak_rss_mib};
use super::rig::{QueueKind, Rig, RigOptions};
use super::{Data, RateLimit, Traffic, percentile, reset_counters, round3, secs};

#[derive(Debug, Clone)]
pub struct LocationsArgs {
    pub scenario: Scenario,
    pub rate: RateLimit,
    pub queue: QueueKind,
    pub store: store::test_support::TestBackend,
    pub prefetch: u16,
    /// Run only with the bulk lane shared (skip the one-FIFO comparison).
    pub fair_only: bool,
}

#[derive(Debug, Clone, Copy)]
pub enum Scenario {
    Late {
        big: usize,
        small: usize,
    },
    Many {
        sites: usize,
        contacts: usize,
        probe_ms: u64,
    },
}

/// Tasks each contact ends with in eKyte: its GHL tasks and the onboarding task.
fn tasks_of(data: &Data) -> usize {
    data.tasks_per_contact + 1
}

/// The eKyte company of a location has its seeded workspace and one per contact, and the
/// contacts' tasks.
fn reached(world: &World, company: i64, contacts: usize, data: &Data) -> bool {
    let (workspaces, tasks) = world.ekyte.sizes(company);
    workspaces > contacts && tasks >= contacts * tasks_of(data)
}

struct Started {
    world: World,
    rig: Rig,
    sites: Vec<Site>,
}

async fn start(
    args: &LocationsArgs,
    first: usize,
    others: &[usize],
    fair: bool,
) -> anyhow::Result<Started> {
    let data = Data::new(first);
    let spec = data.spec(&args.rate);
    let world = World::start(&spec).await?;
    let mut sites = Vec::new();
    for (i, n) in others.iter().enumerate() {
        sites.push(world.add_site(i + 2, &spec, *n)?);
    }
    let rig = Rig::start(
        &world,
        &spec,
        &RigOptions {
            queue: args.queue,
            store: args.store,
            prefetch: Some(args.prefetch),
            fair_bulk: Some(fair),
            ..RigOptions::default()
        },
    )
    .await?;
    for site in &sites {
        rig.add_site(site).await?;
    }
    reset_counters(&world);
    Ok(Started { world, rig, sites })
}

/// Poll `done` every 20 ms until it holds; the first moment it was seen.
async fn until(deadline: Duration, mut done: impl FnMut() -> bool) -> anyhow::Result<Instant> {
    let end = Instant::now() + deadline;
    loop {
        let now = Instant::now();
        if done() {
            return Ok(now);
        }
        if now > end {
            bail!("not done within {deadline:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn late(args: &LocationsArgs, big: usize, small: usize, fair: bool) -> anyhow::Result<Value> {
    let s = start(args, big, &[small], fair).await?;
    let (world, rig) = (&s.world, &s.rig);
    let b = &s.sites[0];
    let data = Data::new(big);
    let cpu0 = cpu_seconds();
    let t0 = Instant::now();
    rig.enqueue(Job::Full).await?;
    // A's backfill is under way: its sweep has queued its first contacts (a sweep queues a
    // bounded batch per message, so A's backlog is never all queued at once any more), or
    // has even finished.
    let runs = rig.app.store.clone();
    let a_tenant = rig.tenant.clone();
    let deadline = Duration::from_secs(3600);
    let end = Instant::now() + deadline;
    loop {
        let running = runs
            .running(&a_tenant, RunKind::Full)
            .await
            .context("reading A's runs")?;
        if running.is_some_and(|r| r.counts.enqueued > 0)
            || runs
                .last_completed(&a_tenant, RunKind::Full)
                .await
                .context("reading A's runs")?
                .is_some()
        {
            break;
        }
        if Instant::now() > end {
            bail!("A's sweep did not finish queueing within {deadline:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let b_starts = t0.elapsed();
    let b0 = Instant::now();
    rig.enqueue_for(&b.tenant.id, Job::Full).await?;
    let b_company = b.company.company_id;
    let b_done = until(deadline, || reached(world, b_company, small, &data)).await?;
    let a_company = world.company.company_id;
    let a_done = until(deadline, || reached(world, a_company, big, &data)).await?;
    rig.quiet(world, deadline).await?;
    let cpu = cpu_seconds() - cpu0;
    let traffic = Traffic::of(world);
    let per_contact = traffic.ghl_calls as f64 / (big + small) as f64;
    let b_floor = args
        .rate
        .floor_s((per_contact * small as f64).round() as u64);
    let b_s = (b_done - b0).as_secs_f64();
    let report = json!({
        "fair_bulk": fair,
        "a_contacts": big,
        "b_contacts": small,
        "b_started_after_s": secs(b_starts),
        "b_s": round3(b_s),
        "b_floor_s": round3(b_floor),
        "b_over_floor": round3(b_s / b_floor.max(f64::MIN_POSITIVE)),
        "a_done_s": secs(a_done - t0),
        "ghl_calls_per_contact": round3(per_contact),
        "rate_limited_earned": traffic.rate_limited_earned,
        "deferred": rig.stats.deferred.load(std::sync::atomic::Ordering::Relaxed),
        "messages_done": rig.stats.done.load(std::sync::atomic::Ordering::Relaxed),
        "cpu_s": round3(cpu),
    });
    eprintln!("locations late (fair_bulk {fair}): {report}");
    rig_stop(s).await;
    Ok(report)
}

async fn rig_stop(s: Started) {
    s.rig.stop().await;
    drop(s.world);
}

/// Probes on the real-time lane: a `ContactUpdate` for a random contact of a random location
/// every `every`, until `stop`; each one's time from publish to handled.
async fn probe(
    rig: Arc<Rig>,
    targets: Vec<(TenantId, LocationId, Vec<String>)>,
    every: Duration,
    stop: tokio_util::sync::CancellationToken,
) -> anyhow::Result<Vec<f64>> {
    let mut pending: HashMap<String, (TenantId, Instant)> = HashMap::new();
    let mut latencies = Vec::new();
    let mut next = Instant::now();
    let mut n = 0usize;
    // A plain LCG: the probes only need to spread, not to be unpredictable.
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut pick = |len: usize| {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (seed >> 33) as usize % len.max(1)
    };
    loop {
        let now = Instant::now();
        if now >= next && !stop.is_cancelled() {
            let (tenant, location, contacts) = &targets[pick(targets.len())];
            let contact = &contacts[pick(contacts.len())];
            let id = format!("probe-{n}");
            n += 1;
            let event = GhlEvent {
                webhook_id: id.clone(),
                location: location.clone(),
                timestamp: rig.app.clock.now(),
                kind: GhlEventKind::ContactUpdate {
                    contact: GhlContactId::parse(contact.clone())?,
                },
            };
            let env = Envelope::new(
                id.clone(),
                tenant.clone(),
                Payload::GhlEvent(event),
                rig.app.clock.now(),
            );
            rig.app.broker.publish(&env).await?;
            pending.insert(id, (tenant.clone(), Instant::now()));
            next += every;
        }
        let mut handled = Vec::new();
        for (id, (tenant, sent)) in &pending {
            if rig
                .app
                .store
                .seen(tenant, engine::INBOX_MESSAGES, id)
                .await?
            {
                latencies.push(sent.elapsed().as_secs_f64());
                handled.push(id.clone());
            }
        }
        for id in handled {
            pending.remove(&id);
        }
        if stop.is_cancelled() && pending.is_empty() {
            return Ok(latencies);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn many(
    args: &LocationsArgs,
    sites: usize,
    contacts: usize,
    probe_ms: u64,
    fair: bool,
) -> anyhow::Result<Value> {
    let others = vec![contacts; sites.saturating_sub(1)];
    let s = start(args, contacts, &others, fair).await?;
    let data = Data::new(contacts);
    let Started {
        world,
        rig,
        sites: added,
    } = s;
    let rig = Arc::new(rig);
    let mut targets = vec![(
        rig.tenant.clone(),
        LocationId::parse(&world.location)?,
        world.contacts.clone(),
    )];
    for site in &added {
        targets.push((
            site.tenant.id.clone(),
            LocationId::parse(&site.location)?,
            site.contacts.clone(),
        ));
    }
    let stop = tokio_util::sync::CancellationToken::new();
    let prober = tokio::spawn(probe(
        rig.clone(),
        targets,
        Duration::from_millis(probe_ms),
        stop.clone(),
    ));
    let cpu0 = cpu_seconds();
    let t0 = Instant::now();
    rig.enqueue(Job::Full).await?;
    for site in &added {
        rig.enqueue_for(&site.tenant.id, Job::Full).await?;
    }
    let deadline = Duration::from_secs(4 * 3600);
    let mut companies = vec![world.company.company_id];
    companies.extend(added.iter().map(|s| s.company.company_id));
    let mut done_at: Vec<Option<f64>> = vec![None; companies.len()];
    until(deadline, || {
        for (i, c) in companies.iter().enumerate() {
            if done_at[i].is_none() && reached(&world, *c, contacts, &data) {
                done_at[i] = Some(t0.elapsed().as_secs_f64());
            }
        }
        done_at.iter().all(Option::is_some)
    })
    .await?;
    stop.cancel();
    let end = rig.quiet(&world, deadline).await?;
    let wall = (end - t0).as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    let mut latencies = prober.await.context("the probe task")??;
    latencies.sort_by(f64::total_cmp);
    let traffic = Traffic::of(&world);
    let per_location = traffic.ghl_calls as f64 / sites as f64;
    let floor_one = args.rate.floor_s(per_location.round() as u64);
    let mut finished: Vec<f64> = done_at.into_iter().flatten().collect();
    finished.sort_by(f64::total_cmp);
    let report = json!({
        "fair_bulk": fair,
        "sites": sites,
        "contacts_per_site": contacts,
        "wall_s": round3(wall),
        "floor_one_location_s": round3(floor_one),
        "ratio": round3(wall / floor_one.max(f64::MIN_POSITIVE)),
        "locations_done_s": {
            "first": finished.first().copied().map(round3),
            "median": percentile(&finished, 50.0),
            "last": finished.last().copied().map(round3),
        },
        "webhook_latency_s": {
            "probes": latencies.len(),
            "p50": percentile(&latencies, 50.0),
            "p99": percentile(&latencies, 99.0),
            "max": latencies.last().copied().map(round3),
        },
        "ghl_calls_per_contact": round3(traffic.ghl_calls as f64 / (sites * contacts) as f64),
        "rate_limited_earned": traffic.rate_limited_earned,
        "deferred": rig.stats.deferred.load(std::sync::atomic::Ordering::Relaxed),
        "messages_done": rig.stats.done.load(std::sync::atomic::Ordering::Relaxed),
        "cpu_s": round3(cpu),
    });
    eprintln!("locations many (fair_bulk {fair}): {report}");
    match Arc::try_unwrap(rig) {
        Ok(rig) => rig.stop().await,
        Err(_) => bail!("the rig is still shared after the probes ended"),
    }
    drop(world);
    Ok(report)
}

pub async fn run(args: &LocationsArgs) -> anyhow::Result<Value> {
    let machine = Machine::read();
    let modes: &[bool] = if args.fair_only {
        &[true]
    } else {
        &[true, false]
    };
    let mut runs = Vec::new();
    for fair in modes {
        runs.push(match args.scenario {
            Scenario::Late { big, small } => late(args, big, small, *fair).await?,
            Scenario::Many {
                sites,
                contacts,
                probe_ms,
            } => many(args, sites, contacts, probe_ms, *fair).await?,
        });
    }
    let (name, goal) = match args.scenario {
        Scenario::Late { .. } => (
            "late",
            "B reaches eKyte in about its own floor, not after A's backlog",
        ),
        Scenario::Many { .. } => (
            "many",
            "wall <= 1.25 x the floor of one location; webhook p99 <= 1 s",
        ),
    };
    Ok(json!({
        "benchmark": "locations",
        "scenario": name,
        "goal": goal,
        "store": args.store.to_string(),
        "queue": args.queue,
        "prefetch": args.prefetch,
        "rate_limit": args.rate,
        "machine": machine,
        "runs": runs,
        "peak_rss_mib": round3(peak_rss_mib()),
    }))
}
