//! The rate window the replicas share: `max` slots, each held from its take until an interval
//! after its release; bulk takes leave room; a late release never frees another holder's
//! slot; replicas taking at once never share one.

use std::collections::HashSet;
use std::time::Duration;

use ports::store::{RateWindow, Taken, WindowKey, WindowSlot};
use store::test_support::TestBackend;

use crate::support::{on_both, setup};

on_both!(
    a_window_gives_its_slots_then_says_when_one_frees,
    bulk_takes_leave_room_for_real_time,
    a_late_release_does_not_free_another_holders_slot,
    a_crashed_holders_slot_frees_when_its_hold_expires,
    many_answered_slots_free_in_one_release,
);

const HOUR: Duration = Duration::from_secs(3600);

fn key(resource: &str) -> WindowKey {
    WindowKey {
        app: "app".into(),
        resource: resource.into(),
    }
}

async fn take(
    w: &dyn RateWindow,
    k: &WindowKey,
    max: u32,
    free: u32,
    hold: Duration,
    who: &str,
) -> Taken {
    w.take(k, max, free, hold, who).await.unwrap()
}

fn slot(t: Taken) -> WindowSlot {
    match t {
        Taken::Slot(s) => s,
        Taken::Full { next_free_in } => panic!("full for {next_free_in:?}, expected a slot"),
    }
}

fn full(t: Taken) -> Duration {
    match t {
        Taken::Full { next_free_in } => next_free_in,
        Taken::Slot(s) => panic!("got slot {s:?}, expected a full window"),
    }
}

async fn a_window_gives_its_slots_then_says_when_one_frees(b: TestBackend) {
    let (_db, store) = setup(b).await;
    let k = key("loc-a");
    let mut slots = Vec::new();
    for i in 0..5 {
        slots.push(slot(take(&store, &k, 5, 0, HOUR, &format!("p:{i}")).await));
    }
    let distinct: HashSet<u32> = slots.iter().map(|s| s.slot).collect();
    assert_eq!(distinct, (0..5).collect(), "five different slots");
    let wait = full(take(&store, &k, 5, 0, HOUR, "p:5").await);
    assert!(
        wait > Duration::from_secs(3500) && wait <= HOUR,
        "every slot is held for an hour: {wait:?}"
    );
    // Another location's window is its own.
    slot(take(&store, &key("loc-b"), 5, 0, HOUR, "p:6").await);

    // Answered: the slot frees an interval later, and the wait says so.
    store
        .release(&slots[2], Duration::from_millis(400))
        .await
        .unwrap();
    let wait = full(take(&store, &k, 5, 0, HOUR, "p:7").await);
    assert!(
        wait <= Duration::from_millis(400),
        "the released slot frees within its interval: {wait:?}"
    );
    store.release(&slots[3], Duration::ZERO).await.unwrap();
    let again = slot(take(&store, &k, 5, 0, HOUR, "p:8").await);
    assert_eq!(
        again.slot, slots[3].slot,
        "the slot freed at once is taken again"
    );
}

async fn bulk_takes_leave_room_for_real_time(b: TestBackend) {
    let (_db, store) = setup(b).await;
    let k = key("loc-a");
    for i in 0..3 {
        slot(take(&store, &k, 5, 2, HOUR, &format!("bulk:{i}")).await);
    }
    full(take(&store, &k, 5, 2, HOUR, "bulk:3").await);
    for i in 0..2 {
        slot(take(&store, &k, 5, 0, HOUR, &format!("rt:{i}")).await);
    }
    full(take(&store, &k, 5, 0, HOUR, "rt:2").await);
}

async fn a_late_release_does_not_free_another_holders_slot(b: TestBackend) {
    let (_db, store) = setup(b).await;
    let k = key("loc-a");
    // The first holder's hold expires at once (it stalled); another process takes the slot.
    let first = slot(take(&store, &k, 1, 0, Duration::ZERO, "p1:0").await);
    let second = wait_for_slot(&store, &k, "p2:0").await;
    assert_eq!(first.slot, second.slot);
    // The first request's answer comes at last: its release must leave the slot held.
    store.release(&first, Duration::ZERO).await.unwrap();
    full(take(&store, &k, 1, 0, HOUR, "p3:0").await);
    store.release(&second, Duration::ZERO).await.unwrap();
    slot(take(&store, &k, 1, 0, HOUR, "p3:1").await);
}

async fn a_crashed_holders_slot_frees_when_its_hold_expires(b: TestBackend) {
    let (_db, store) = setup(b).await;
    let k = key("loc-a");
    slot(take(&store, &k, 1, 0, Duration::from_millis(300), "gone:0").await);
    let wait = full(take(&store, &k, 1, 0, HOUR, "p:0").await);
    assert!(wait <= Duration::from_millis(300), "{wait:?}");
    wait_for_slot(&store, &k, "p:1").await;
}

async fn many_answered_slots_free_in_one_release(b: TestBackend) {
    let (_db, store) = setup(b).await;
    let (ka, kb) = (key("loc-a"), key("loc-b"));
    let a: Vec<WindowSlot> = [
        slot(take(&store, &ka, 2, 0, HOUR, "p:0").await),
        slot(take(&store, &ka, 2, 0, HOUR, "p:1").await),
    ]
    .into();
    let b0 = slot(take(&store, &kb, 1, 0, HOUR, "p:2").await);
    // Another holder's slot in the batch (its hold expired and was taken since) stays held.
    let stale = WindowSlot {
        holder: "gone:0".into(),
        ..b0.clone()
    };
    full(take(&store, &ka, 2, 0, HOUR, "p:3").await);
    store
        .release_many(&[a[0].clone(), a[1].clone(), stale], Duration::ZERO)
        .await
        .unwrap();
    let again: HashSet<u32> = [
        slot(take(&store, &ka, 2, 0, HOUR, "p:4").await).slot,
        slot(take(&store, &ka, 2, 0, HOUR, "p:5").await).slot,
    ]
    .into();
    assert_eq!(again, [0, 1].into(), "both of loc-a's slots freed");
    full(take(&store, &kb, 1, 0, HOUR, "p:6").await);
    store.release_many(&[], Duration::ZERO).await.unwrap();
}

/// Take a slot of a one-slot window, waiting as long as the window says, for 5 s at most.
async fn wait_for_slot(store: &dyn RateWindow, k: &WindowKey, who: &str) -> WindowSlot {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match take(store, k, 1, 0, HOUR, who).await {
            Taken::Slot(s) => return s,
            Taken::Full { next_free_in } => {
                assert!(tokio::time::Instant::now() < deadline, "no slot within 5 s");
                tokio::time::sleep(next_free_in.max(Duration::from_millis(1))).await;
            }
        }
    }
}

/// Three replicas (three pools) taking twenty slots each at once from a window of ten: ten
/// slots are taken, each by one of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_taking_at_once_never_share_a_slot() {
    let (db, first) = setup(TestBackend::Postgres).await;
    let mut replicas = vec![first];
    for _ in 0..2 {
        replicas.push(db.store().await.unwrap());
    }
    let k = key("loc-a");
    let mut tasks = Vec::new();
    for (r, store) in replicas.iter().enumerate() {
        for i in 0..20 {
            let (store, k) = (store.clone(), k.clone());
            tasks.push(tokio::spawn(async move {
                store
                    .take(&k, 10, 0, HOUR, &format!("r{r}:{i}"))
                    .await
                    .unwrap()
            }));
        }
    }
    let mut taken = Vec::new();
    for t in tasks {
        if let Taken::Slot(s) = t.await.unwrap() {
            taken.push(s.slot);
        }
    }
    taken.sort_unstable();
    assert_eq!(
        taken,
        (0..10).collect::<Vec<u32>>(),
        "each slot once, none twice"
    );
}
