//! The rate budget against the simulator's limiter, with GHL's 100 requests per 10 s
//! compressed to 100 per 100 ms (1,000 requests per second).
//!
//! The adapters start with GHL's real numbers (100 / 10 s) and learn the compressed window from
//! the `X-RateLimit-*` headers of the first answers.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use domain::GhlContactId;
use ghl::GhlAdapter;
use ports::ghl::GhlApi;
use ports::{Priority, Scope};
use sandbox::ghl::{GhlConfig as SandboxConfig, RateLimitConfig};
use serde_json::json;

use crate::support::{LOCATION, World, whole_machine};

const CALLS: usize = 1_000;
const MAX: u32 = 100;
const INTERVAL_MS: u64 = 100;

fn compressed() -> SandboxConfig {
    SandboxConfig {
        rate_limit: RateLimitConfig {
            max: MAX,
            interval_ms: INTERVAL_MS,
            ..RateLimitConfig::default()
        },
        ..SandboxConfig::default()
    }
}

/// Run `CALLS` reads from `tasks` tasks spread over `adapters`, as fast as the budget lets.
async fn hammer(adapters: &[GhlAdapter], scope: &Scope, contact: &GhlContactId, tasks: usize) {
    let left = Arc::new(AtomicUsize::new(CALLS));
    let mut handles = Vec::new();
    for i in 0..tasks {
        let adapter = adapters[i % adapters.len()].clone();
        // Half the tasks are real-time, half bulk: both lanes share the budget.
        let scope = if i % 2 == 0 {
            scope.clone()
        } else {
            Scope::new(scope.tenant.clone(), Priority::Bulk)
        };
        let (left, contact) = (left.clone(), contact.clone());
        handles.push(tokio::spawn(async move {
            while left
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                adapter.get_contact(&scope, &contact).await.unwrap();
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
}

async fn seeded(w: &World) -> GhlContactId {
    let id = w
        .ghl
        .seed_contacts(
            LOCATION,
            &[json!({"firstName": "Rate", "email": "rate@x.test"})],
        )
        .unwrap()
        .remove(0);
    GhlContactId::parse(id).unwrap()
}

/// How much of the limit the budget uses is a figure, not a pass mark: the `rate` benchmark
/// measures it (`cargo run --release -p e2e --bin bench -- rate`, docs/performance.md), and
/// `budget::tests::alone_we_use_the_whole_window` pins the rule on a paused clock. Here the
/// real headers of the simulator must teach the budget the compressed window, and a lone
/// process at full pace must not earn a single 429.
#[tokio::test(flavor = "multi_thread")]
async fn one_process_stays_inside_the_limit_it_learned() {
    let _alone = whole_machine().await;
    let w = World::start_alone(compressed()).await;
    let contact = seeded(&w).await;
    w.ghl.counters().reset();
    let adapter = w.replica(|c| c);
    hammer(std::slice::from_ref(&adapter), &w.scope(), &contact, 32).await;
    let counters = w.ghl.counter_snapshot();
    assert_eq!(
        counters.route_total("GET", "/contacts/{contactId}"),
        CALLS as u64
    );
    assert_eq!(counters.status_total(429), 0, "{:?}", counters.events);
    assert_eq!(counters.event("rate_limited_earned"), 0);
    let b = &adapter.budgets().for_resource(LOCATION)[0];
    assert_eq!(
        b.interval,
        Duration::from_millis(INTERVAL_MS),
        "learned from the headers"
    );
    assert_eq!(b.max, MAX, "learned from the headers");
    assert_eq!(b.granted, CALLS as u64);
    assert_eq!(b.throttled, 0);
    assert_eq!(
        b.others_seen, 0,
        "alone, our own requests explain every count"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn two_replicas_sharing_a_location_stay_inside_the_limit() {
    let _alone = whole_machine().await;
    let w = World::start_alone(compressed()).await;
    let contact = seeded(&w).await;
    w.ghl.counters().reset();
    let second = w.replica(|c| c);
    hammer(
        &[w.adapter.clone(), second.clone()],
        &w.scope(),
        &contact,
        32,
    )
    .await;
    let counters = w.ghl.counter_snapshot();
    assert_eq!(
        counters.route_total("GET", "/contacts/{contactId}"),
        CALLS as u64
    );
    assert_eq!(counters.status_total(429), 0, "{:?}", counters.events);
    for a in [&w.adapter, &second] {
        let b = &a.budgets().for_resource(LOCATION)[0];
        assert_eq!(b.throttled, 0);
        assert!(
            b.others_seen > 0,
            "each replica saw the other in the headers"
        );
    }
}
