use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ports::StoreError;
use ports::store::ContactLocks;
use store::test_support::TestBackend;
use tokio::sync::oneshot;

use crate::support::{on_both, setup, tid};

on_both!(
    second_locker_waits_for_release,
    waiting_is_bounded,
    dropped_guard_releases,
    cancelled_holder_releases,
    other_contacts_do_not_wait,
);

const LONG: Duration = Duration::from_secs(20);

async fn second_locker_waits_for_release(b: TestBackend) {
    let (_db, store) = setup(b).await;
    let first = store.lock(&tid("acme"), "c1", LONG).await.unwrap();
    let released = Arc::new(AtomicBool::new(false));
    let (started_tx, started_rx) = oneshot::channel();
    let second = tokio::spawn({
        let store = store.clone();
        let released = released.clone();
        async move {
            let _ = started_tx.send(());
            let guard = store.lock(&tid("acme"), "c1", LONG).await.unwrap();
            // Only reachable once the first holder let go.
            let after_release = released.load(Ordering::SeqCst);
            guard.release().await;
            after_release
        }
    });
    started_rx.await.unwrap();
    // The second locker is still waiting while the first holds the lock.
    let mut second = second;
    assert!(
        tokio::time::timeout(Duration::from_millis(300), &mut second)
            .await
            .is_err(),
        "the second locker got the lock while the first held it"
    );
    released.store(true, Ordering::SeqCst);
    first.release().await;
    let saw_release = tokio::time::timeout(LONG, second)
        .await
        .expect("the second locker never got the lock")
        .unwrap();
    assert!(saw_release);
}

async fn waiting_is_bounded(b: TestBackend) {
    let (_db, store) = setup(b).await;
    let held = store.lock(&tid("acme"), "c1", LONG).await.unwrap();
    let started = std::time::Instant::now();
    let err = match store
        .lock(&tid("acme"), "c1", Duration::from_millis(200))
        .await
    {
        Err(e) => e,
        Ok(_) => panic!("got a lock that is held"),
    };
    assert!(matches!(err, StoreError::Unavailable { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    held.release().await;
    // After the timeout nothing is left behind: the lock is free once released.
    store
        .lock(&tid("acme"), "c1", LONG)
        .await
        .unwrap()
        .release()
        .await;
}

async fn dropped_guard_releases(b: TestBackend) {
    let (_db, store) = setup(b).await;
    let guard = store.lock(&tid("acme"), "c1", LONG).await.unwrap();
    assert!(
        matches!(
            store.lock(&tid("acme"), "c1", Duration::from_secs(1)).await,
            Err(StoreError::Unavailable { .. })
        ),
        "the lock must be held before the drop"
    );
    drop(guard);
    let again = store.lock(&tid("acme"), "c1", LONG).await;
    assert!(
        again.is_ok(),
        "a dropped guard kept the lock: {:?}",
        again.err()
    );
}

async fn cancelled_holder_releases(b: TestBackend) {
    let (_db, store) = setup(b).await;
    let (locked_tx, locked_rx) = oneshot::channel();
    let holder = tokio::spawn({
        let store = store.clone();
        async move {
            let _guard = store.lock(&tid("acme"), "c1", LONG).await.unwrap();
            let _ = locked_tx.send(());
            // Holds the lock until cancelled.
            std::future::pending::<()>().await;
        }
    });
    locked_rx.await.unwrap();
    // Long enough to cover opening a pooled connection, so a refusal means "held".
    assert!(
        matches!(
            store.lock(&tid("acme"), "c1", Duration::from_secs(1)).await,
            Err(StoreError::Unavailable { .. })
        ),
        "the lock must be held before the cancellation"
    );
    holder.abort();
    assert!(holder.await.unwrap_err().is_cancelled());
    let again = store.lock(&tid("acme"), "c1", LONG).await;
    assert!(
        again.is_ok(),
        "a cancelled holder kept the lock: {:?}",
        again.err()
    );
}

async fn other_contacts_do_not_wait(b: TestBackend) {
    let (_db, store) = setup(b).await;
    let _c1 = store.lock(&tid("acme"), "c1", LONG).await.unwrap();
    let short = Duration::from_secs(2);
    store.lock(&tid("acme"), "c2", short).await.unwrap();
    // Same key, other tenant.
    store.lock(&tid("other"), "c1", short).await.unwrap();
}

/// Two stores on one database stand for two worker processes: the lock holds across them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_locks_hold_across_processes() {
    let (db, first) = setup(TestBackend::Postgres).await;
    let second = db.store().await.unwrap();
    let held = first.lock(&tid("acme"), "c1", LONG).await.unwrap();
    assert!(matches!(
        second
            .lock(&tid("acme"), "c1", Duration::from_secs(1))
            .await,
        Err(StoreError::Unavailable { .. })
    ));
    held.release().await;
    second
        .lock(&tid("acme"), "c1", LONG)
        .await
        .unwrap()
        .release()
        .await;
}
