//! Replicas sharing one location's GHL window through the store's rate window
//! (`ghl.shared_window`) on real PostgreSQL: together they stay inside GHL's limit without
//! holding back for each other. With the window, a replica no longer leaves room for the
//! others it sees in GHL's headers, so the window alone keeps them inside the limit: a window
//! that let two replicas hold one slot would earn 429s here.
//!
//! How much of the limit they use is a figure (`bench rate --replicas 3 --shared-window
//! --store postgres`, docs/performance.md §6), not a pass mark.

use std::sync::Arc;

use domain::GhlContactId;
use e2e::bench::rate::hammer;
use e2e::bench::rig::{Rig, RigOptions};
use e2e::bench::{Data, RateLimit};
use ghl::GhlAdapter;
use ports::store::RateWindow;
use store::test_support::TestBackend;

use app::demo::sim::World;

const CALLS: usize = 600;
const TASKS: usize = 24;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_sharing_the_window_stay_inside_the_limit() {
    let rate = RateLimit::new(100, 100);
    let spec = Data::new(1).spec(&rate);
    let world = World::start(&spec).await.unwrap();
    let rig = Rig::start(
        &world,
        &spec,
        &RigOptions {
            worker: false,
            store: TestBackend::Postgres,
            ..RigOptions::default()
        },
    )
    .await
    .unwrap_or_else(|e| panic!("the rig needs PostgreSQL on 127.0.0.1:5432: {e:#}"));
    let tenant = Arc::new(world.tenant(&spec).unwrap());
    let contact = GhlContactId::parse(world.contacts[0].clone()).unwrap();
    let store = rig.app.store.clone();
    let replicas: Vec<GhlAdapter> = (0..3)
        .map(|_| {
            GhlAdapter::with_window(
                app::wiring::ghl_config(&rig.app.config),
                store.clone(),
                Some(store.clone() as Arc<dyn RateWindow>),
            )
            .unwrap()
        })
        .collect();
    world.ghl.counters().reset();

    hammer(&replicas, &tenant, &contact, CALLS, TASKS)
        .await
        .unwrap();

    let counters = world.ghl.counter_snapshot();
    assert_eq!(
        counters.route_total("GET", "/contacts/{contactId}"),
        CALLS as u64
    );
    assert_eq!(counters.status_total(429), 0, "{:?}", counters.events);
    assert_eq!(counters.event("rate_limited_earned"), 0);
    for r in &replicas {
        let b = &r.budgets().for_resource(tenant.location_id.as_ref())[0];
        assert_eq!(b.throttled, 0);
        assert!(b.granted > 0, "each replica made calls");
        assert!(
            !b.shared,
            "the others' requests in the headers do not make a replica hold back"
        );
    }
    rig.stop().await;
}
