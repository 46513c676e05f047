//! End to end (issue 17): the time from a person's edit in GHL to the eKyte write it causes,
//! through everything in between — the simulator's webhook, the ingress (signature check,
//! publish), the queue, the worker's re-fetch and reconciliation, and the write — with every
//! simulated API call taking `latency_ms` and the service busy meanwhile.
//!
//! The measured location is synced first, without latency. Then the simulators' latency is
//! turned on, a second location of `background` contacts starts its first full sync on the
//! same worker (the bulk lane, its own GHL budget, and the webhooks of the onboarding tasks
//! it writes), and every `every_ms` one edit is made in the measured location, alternately:
//!
//! - a contact renamed (`lastName`): done when its workspace carries the new name;
//! - a task added to a contact: done when eKyte holds a task of that title.
//!
//! The clock of an edit starts just before the simulator applies it and stops at the first
//! look (every 5 ms, in this process's copy of the simulators) that finds its effect. Nothing
//! here asserts a time; the report gives the percentiles and the goal beside them.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use serde_json::{Value, json};

use app::demo::sim::World;
use app::scheduler::Job;
use domain::{ExternalRef, GhlContactId, LocationId};
use sandbox::common::{FaultConfig, LatencyProfile};

use super::machine::{Load, LoadSpan, Machine, cpu_seconds};
use super::rig::{QueueKind, Rig, RigOptions};
use super::{Data, RateLimit, Traffic, percentile, reset_counters, round3};

#[derive(Debug, Clone)]
pub struct LatencyArgs {
    /// Contacts of the measured location.
    pub contacts: usize,
    /// Contacts of the location whose first sync runs meanwhile (0: no background).
    pub background: usize,
    pub edits: usize,
    pub every_ms: u64,
    /// Every simulated API call waits this long before it is handled.
    pub latency_ms: u64,
    pub rate: RateLimit,
    pub queue: QueueKind,
    pub store: store::test_support::TestBackend,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Rename,
    Task,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Rename => "contact_renamed",
            Kind::Task => "task_added",
        }
    }
}

struct Pending {
    kind: Kind,
    /// The workspace's `ExternalId` (a rename) and the text to find.
    external: String,
    marker: String,
    at: Instant,
}

/// Whether the eKyte write `p` waits for is there.
fn arrived(world: &World, company: i64, p: &Pending) -> bool {
    match p.kind {
        Kind::Rename => world
            .ekyte
            .workspaces_by_external_id(company, &p.external)
            .iter()
            .any(|w| w.name.contains(&p.marker)),
        Kind::Task => !world.ekyte.tasks_titled(company, &p.marker).is_empty(),
    }
}

fn summary(mut latencies: Vec<f64>) -> Value {
    latencies.sort_by(f64::total_cmp);
    json!({
        "edits": latencies.len(),
        "p50_s": percentile(&latencies, 50.0),
        "p90_s": percentile(&latencies, 90.0),
        "p99_s": percentile(&latencies, 99.0),
        "max_s": latencies.last().copied().map(round3),
    })
}

pub async fn run(args: &LatencyArgs) -> anyhow::Result<Value> {
    if args.edits == 0 {
        bail!("--edits must be at least 1");
    }
    let data = Data::new(args.contacts);
    let spec = data.spec(&args.rate);
    let deadline = Duration::from_secs(3600);
    let world = World::start(&spec).await?;
    let site = if args.background > 0 {
        Some(world.add_site(2, &spec, args.background)?)
    } else {
        None
    };
    let rig = Rig::start(
        &world,
        &spec,
        &RigOptions::with_webhooks(args.queue, args.store),
    )
    .await?;
    if let Some(site) = &site {
        rig.add_site(site).await?;
    }
    eprintln!(
        "latency: first sync of the measured location ({} contacts)",
        args.contacts
    );
    rig.enqueue(Job::Full).await?;
    rig.quiet(&world, deadline).await?;

    let slow = FaultConfig {
        latency: LatencyProfile {
            base_ms: args.latency_ms,
            ..LatencyProfile::default()
        },
        ..FaultConfig::default()
    };
    world.ghl.set_faults(slow.clone());
    world.ekyte.faults().set(slow);
    reset_counters(&world);
    if let Some(site) = &site {
        eprintln!(
            "latency: background: first sync of a location of {} contacts",
            args.background
        );
        rig.enqueue_for(&site.tenant.id, Job::Full).await?;
    }

    let location = LocationId::parse(&world.location)?;
    let company = world.company.company_id;
    let contacts = world.contacts.clone();
    let before = Load::now();
    let cpu0 = cpu_seconds();
    let t0 = Instant::now();
    let every = Duration::from_millis(args.every_ms);
    let mut next = Instant::now();
    let mut made = 0usize;
    let mut pending: Vec<Pending> = Vec::new();
    let mut by_kind: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    let give_up = Duration::from_secs(120);
    let mut missed = 0usize;
    eprintln!(
        "latency: {} edits, one every {} ms, {} ms per API call",
        args.edits, args.every_ms, args.latency_ms
    );
    while made < args.edits || !pending.is_empty() {
        if made < args.edits && Instant::now() >= next {
            let contact = &contacts[(made * 7919) % contacts.len()];
            let kind = if made.is_multiple_of(2) {
                Kind::Rename
            } else {
                Kind::Task
            };
            let marker = format!("Lat{made}x");
            let external = ExternalRef::Contact {
                location: location.clone(),
                contact: GhlContactId::parse(contact.clone())?,
            }
            .to_string();
            let at = Instant::now();
            match kind {
                Kind::Rename => world
                    .ghl
                    .act_update_contact(contact, json!({ "lastName": marker }))
                    .map(|_| ()),
                Kind::Task => world
                    .ghl
                    .act_create_task(
                        contact,
                        json!({
                            "title": marker,
                            "body": "timed by the latency benchmark",
                            "dueDate": (chrono::Utc::now() + chrono::Duration::days(7)).to_rfc3339(),
                            "completed": false,
                        }),
                    )
                    .map(|_| ()),
            }
            .map_err(|e| anyhow!("edit {made} in GHL: {e:?}"))?;
            pending.push(Pending {
                kind,
                external,
                marker,
                at,
            });
            made += 1;
            next += every;
        }
        let now = Instant::now();
        pending.retain(|p| {
            if arrived(&world, company, p) {
                let i = usize::from(p.kind == Kind::Task);
                by_kind[i].push(p.at.elapsed().as_secs_f64());
                false
            } else if now - p.at > give_up {
                missed += 1;
                false
            } else {
                true
            }
        });
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let wall = t0.elapsed();
    let cpu = cpu_seconds() - cpu0;
    let after = Load::now();
    let traffic = Traffic::of(&world);
    let background_workspaces = site
        .as_ref()
        .map(|s| world.ekyte.sizes(s.company.company_id).0);
    let all: Vec<f64> = by_kind.iter().flatten().copied().collect();
    // The background backfill is cut short: it was there to keep the service busy.
    rig.stop().await;
    drop(world);

    Ok(json!({
        "benchmark": "latency",
        "store": args.store.to_string(),
        "queue": args.queue,
        "machine": Machine::read(),
        "rate_limit": args.rate,
        "latency_ms_per_api_call": args.latency_ms,
        "contacts": args.contacts,
        "background_contacts": args.background,
        "edits_every_ms": args.every_ms,
        "edit_to_ekyte_s": summary(all),
        "contact_renamed": summary(by_kind[0].clone()),
        "task_added": summary(by_kind[1].clone()),
        "missed": missed,
        "missed_after_s": give_up.as_secs(),
        "wall_s": round3(wall.as_secs_f64()),
        "cpu_s": round3(cpu),
        "background_workspaces_made": background_workspaces,
        "ghl_calls": traffic.ghl_calls,
        "ekyte_calls": traffic.ekyte_calls,
        "rate_limited_earned": traffic.rate_limited_earned,
        "load": LoadSpan { before, after },
        "goal": "edit to eKyte write p99 <= 1 s with 100 ms per API call and background load",
        "kinds": [Kind::Rename.name(), Kind::Task.name()],
    }))
}
