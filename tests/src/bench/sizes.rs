//! Cost against size: the backfill of one location at several sizes (1,000, 10,000 and
//! 100,000 contacts by default), each in a process of its own (`bench backfill --sims child
//! --no-baseline`) with the simulators in a child of that, so each size's CPU time and peak
//! RSS are the service's alone and start from nothing.
//!
//! The goal (issue 17): CPU per contact and peak RSS do not grow with the location; the
//! largest size within 1.2× of the smallest on both.

use anyhow::{Context, bail};
use serde_json::{Value, json};

use super::machine::Machine;
use super::rig::QueueKind;
use super::{RateLimit, ratio};

#[derive(Debug, Clone)]
pub struct SizesArgs {
    pub sizes: Vec<usize>,
    pub rate: RateLimit,
    pub queue: QueueKind,
    pub store: store::test_support::TestBackend,
}

/// `--sizes 1000,10000,100000`.
pub fn parse_sizes(raw: &str) -> anyhow::Result<Vec<usize>> {
    let sizes: Vec<usize> = raw
        .split(',')
        .map(|s| {
            s.trim()
                .parse::<usize>()
                .with_context(|| format!("--sizes: {s:?} is not a number of contacts"))
        })
        .collect::<Result<_, _>>()?;
    if sizes.is_empty() || sizes.contains(&0) {
        bail!("--sizes needs one or more sizes above zero, like 1000,10000,100000");
    }
    Ok(sizes)
}

pub async fn run(args: &SizesArgs) -> anyhow::Result<Value> {
    let exe = std::env::current_exe().context("locating the bench binary")?;
    let queue = match args.queue {
        QueueKind::Memory => "memory",
        QueueKind::Amqp => "amqp",
    };
    let mut runs = Vec::new();
    for &n in &args.sizes {
        eprintln!("sizes: backfill of {n} contacts in a process of its own");
        let out = tokio::process::Command::new(&exe)
            .args(["backfill", "--sims", "child", "--no-baseline"])
            .args(["--contacts", &n.to_string()])
            .args(["--rate-max", &args.rate.max.to_string()])
            .args(["--rate-interval-ms", &args.rate.interval_ms.to_string()])
            .args(["--queue", queue])
            .args(["--store", &args.store.to_string()])
            .stderr(std::process::Stdio::inherit())
            .kill_on_drop(true)
            .output()
            .await
            .context("running the backfill")?;
        if !out.status.success() {
            bail!("the backfill of {n} contacts failed ({})", out.status);
        }
        let report: Value = serde_json::from_slice(&out.stdout)
            .with_context(|| format!("the backfill's report for {n} contacts"))?;
        runs.push(summary(n, &report));
    }
    let (first, last) = (runs.first(), runs.last());
    let growth = |key: &str| match (first, last) {
        (Some(a), Some(b)) => ratio(
            b[key].as_f64().unwrap_or(0.0),
            a[key].as_f64().unwrap_or(0.0),
        ),
        _ => Value::Null,
    };
    let cpu_growth = growth("cpu_ms_per_contact");
    let rss_growth = growth("peak_rss_mib");
    let met = [&cpu_growth, &rss_growth]
        .iter()
        .all(|g| g.as_f64().is_some_and(|g| g <= 1.2));
    Ok(json!({
        "benchmark": "sizes",
        "store": args.store.to_string(),
        "machine": Machine::read(),
        "rate_limit": args.rate,
        "queue": args.queue,
        "goal": "CPU per contact and peak RSS of the largest size within 1.2x of the smallest",
        "runs": runs,
        "largest_over_smallest": {
            "cpu_ms_per_contact": cpu_growth,
            "peak_rss_mib": rss_growth,
            "store_statements_per_contact": growth("store_statements_per_contact"),
            "ratio": growth("ratio"),
        },
        "goal_met": met,
    }))
}

/// The figures of one size, from its backfill report.
fn summary(contacts: usize, r: &Value) -> Value {
    let ours = &r["ours"];
    let worker = &r["ours_worker"];
    json!({
        "contacts": contacts,
        "wall_s": ours["wall_s"],
        "floor_s": ours["floor_s"],
        "ratio": ours["ratio"],
        "ghl_calls_per_contact": ours["ghl_calls_per_contact"],
        "earned_429s": ours["traffic"]["rate_limited_earned"],
        "cpu_s": ours["cpu_s"],
        "cpu_ms_per_contact": ours["cpu_ms_per_contact"],
        "peak_rss_mib": r["peak_rss_mib"],
        "store_statements_per_contact": worker["store_statements_per_contact"],
        "simulators_cpu_s": worker["simulators"]["cpu_s"],
        "simulators_peak_rss_mib": worker["simulators"]["peak_rss_mib"],
        "dead_lettered": worker["dead_lettered"],
        "deferred_per_contact": worker["deferred"]
            .as_f64()
            .map(|d| super::round3(d / contacts.max(1) as f64)),
        "converged": r["ours_converged"],
    })
}
