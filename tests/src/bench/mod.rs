//! The benchmarks of issue 9 (run by `cargo run --release -p e2e --bin bench -- <name>`):
//! each starts the simulators on loopback, runs the real service (or the hand-written
//! baseline) against them, and returns one JSON report. They are not tests: nothing here
//! asserts a time.

pub mod backfill;
pub mod baseline;
pub mod calls;
pub mod console;
pub mod events;
pub mod ingress;
pub mod latency;
pub mod locations;
pub mod machine;
pub mod rate;
pub mod rig;
pub mod sims;
pub mod sizes;
pub mod worker;

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use app::demo::sim::{World, WorldSpec};
use sandbox::common::{CounterSnapshot, FaultConfig, LatencyProfile};

/// GHL's real burst limit: 100 requests per 10 s (API.md §8).
pub const REAL_INTERVAL_MS: u64 = 10_000;
/// The baseline's sleep on a 429 against the real GHL.
pub const REAL_SLEEP_ON_429_MS: u64 = 10_000;

/// The rate limit a benchmark runs under: GHL's, with time compressed.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct RateLimit {
    pub max: u32,
    pub interval_ms: u64,
    /// How many times faster than GHL's real clock (10 s / `interval_ms`).
    pub time_compression: f64,
    /// Requests per second allowed.
    pub allowed_per_s: f64,
    /// The baseline's fixed sleep on a 429: GHL's 10 s scaled by the compression.
    pub baseline_sleep_on_429_ms: u64,
}

impl RateLimit {
    pub fn new(max: u32, interval_ms: u64) -> Self {
        let compression = REAL_INTERVAL_MS as f64 / interval_ms as f64;
        Self {
            max,
            interval_ms,
            time_compression: compression,
            allowed_per_s: f64::from(max) * 1000.0 / interval_ms as f64,
            baseline_sleep_on_429_ms: (REAL_SLEEP_ON_429_MS as f64 / compression).round() as u64,
        }
    }

    /// The least time `calls` requests can take under this limit.
    pub fn floor_s(&self, calls: u64) -> f64 {
        calls as f64 / self.allowed_per_s
    }
}

/// The simulated data: contacts with tasks, notes and appointments.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Data {
    pub contacts: usize,
    pub tasks_per_contact: usize,
    pub notes_per_contact: usize,
    pub appointments_per_contact: usize,
    pub businesses: usize,
    /// Latency each simulated request waits before it is handled (both simulators).
    pub latency_ms: u64,
}

impl Data {
    pub fn new(contacts: usize) -> Self {
        Self {
            contacts,
            tasks_per_contact: 2,
            notes_per_contact: 1,
            appointments_per_contact: 1,
            businesses: (contacts / 20).max(1),
            latency_ms: 0,
        }
    }

    pub fn spec(&self, rate: &RateLimit) -> WorldSpec {
        let faults = FaultConfig {
            latency: LatencyProfile {
                base_ms: self.latency_ms,
                ..LatencyProfile::default()
            },
            ..FaultConfig::default()
        };
        WorldSpec {
            contacts: self.contacts,
            tasks_per_contact: self.tasks_per_contact,
            notes_per_contact: self.notes_per_contact,
            appointments_per_contact: self.appointments_per_contact,
            businesses: self.businesses,
            seed: 7,
            ghl_faults: faults.clone(),
            ekyte_faults: faults,
            ghl_rate_max: rate.max,
            ghl_rate_interval_ms: rate.interval_ms,
            onboarding: true,
            ..WorldSpec::default()
        }
    }
}

/// The API traffic a run caused, from the simulators' counters.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Traffic {
    pub ghl_calls: u64,
    pub ekyte_calls: u64,
    pub ghl_429: u64,
    /// 429s for exceeding the limit (the simulator tells them from injected ones).
    pub rate_limited_earned: u64,
    pub rate_limited_injected: u64,
    /// GHL requests per route (`METHOD /template`), every status.
    pub ghl_routes: BTreeMap<String, u64>,
    pub ekyte_routes: BTreeMap<String, u64>,
}

impl Traffic {
    pub fn of(world: &World) -> Self {
        let g = world.ghl.counter_snapshot();
        let e = world.ekyte.counters().snapshot();
        Self {
            ghl_calls: g.total_requests(),
            ekyte_calls: e.total_requests(),
            ghl_429: g.status_total(429),
            rate_limited_earned: g.event("rate_limited_earned"),
            rate_limited_injected: g.event("rate_limited_injected"),
            ghl_routes: routes(&g),
            ekyte_routes: routes(&e),
        }
    }

    /// GHL calls per contact, per route and in all.
    pub fn per_contact(&self, contacts: usize) -> BTreeMap<String, f64> {
        let n = contacts.max(1) as f64;
        let mut out: BTreeMap<String, f64> = self
            .ghl_routes
            .iter()
            .map(|(k, v)| (k.clone(), round3(*v as f64 / n)))
            .collect();
        out.insert("total".into(), round3(self.ghl_calls as f64 / n));
        out
    }

    /// GHL writes (every POST, PUT and DELETE but the two searches, which read), and the
    /// reads: the rest.
    pub fn ghl_writes(&self) -> u64 {
        self.ghl_routes
            .iter()
            .filter(|(route, _)| {
                let write = ["POST ", "PUT ", "DELETE "]
                    .iter()
                    .any(|m| route.starts_with(m));
                write && !route.ends_with("/search")
            })
            .map(|(_, n)| n)
            .sum()
    }

    pub fn ghl_reads(&self) -> u64 {
        self.ghl_calls - self.ghl_writes()
    }
}

fn routes(s: &CounterSnapshot) -> BTreeMap<String, u64> {
    s.routes
        .iter()
        .map(|(k, by_status)| (k.clone(), by_status.values().sum()))
        .collect()
}

/// Reset both simulators' counters (between phases of one run).
pub fn reset_counters(world: &World) {
    world.ghl.counters().reset();
    world.ekyte.counters().reset();
}

/// Statements by kind between two readings of `Rig::statements_by_kind`, per `per` units
/// (contacts, webhooks), the kinds that ran none left out.
pub fn statements_between(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
    per: usize,
) -> BTreeMap<String, f64> {
    after
        .iter()
        .filter_map(|(k, v)| {
            let n = v - before.get(k).copied().unwrap_or(0);
            (n > 0).then(|| (k.clone(), round3(n as f64 / per.max(1) as f64)))
        })
        .collect()
}

/// Where the `p`th percentile of `len` sorted values is (nearest rank); `len` must not be 0.
pub fn percentile_index(len: usize, p: f64) -> usize {
    let idx = ((p / 100.0) * (len - 1) as f64).round() as usize;
    idx.min(len - 1)
}

/// The `p`th percentile of `sorted` (nearest rank), rounded to the millisecond; 0 if empty.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    round3(sorted[percentile_index(sorted.len(), p)])
}

pub fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

pub fn secs(d: Duration) -> f64 {
    round3(d.as_secs_f64())
}

/// `a / b`, rounded, or null when `b` is zero.
pub fn ratio(a: f64, b: f64) -> Value {
    if b == 0.0 {
        Value::Null
    } else {
        serde_json::json!(round3(a / b))
    }
}
