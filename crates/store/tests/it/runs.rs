use chrono::{TimeZone, Utc};
use futures::future::join_all;
use ports::StoreError;
use ports::store::{RunCounts, RunKind, RunStatus, RunStore};
use store::test_support::TestBackend;

use crate::support::{on_both, tid, with_tenants};

on_both!(
    checkpoint_resume_and_finish,
    concurrent_starts_share_one_run,
    the_latest_run_of_each_kind_of_every_tenant,
);

async fn checkpoint_resume_and_finish(b: TestBackend) {
    let (_db, store) = with_tenants(b).await;
    let t = tid("acme");
    let since = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let run = store
        .start_or_resume(&t, RunKind::Full, Some(since))
        .await
        .unwrap();
    assert_eq!(run.status, RunStatus::Running);
    assert_eq!(run.since, Some(since));
    assert_eq!(run.counts, RunCounts::default());
    assert_eq!(run.cursor, None);

    let counts = RunCounts {
        pages: 3,
        seen: 300,
        enqueued: 12,
        skipped: 288,
        errors: 0,
        api_calls: 4,
    };
    store
        .checkpoint(run.id, Some("cursor-3".into()), counts)
        .await
        .unwrap();
    // A crash and a restart resume the same run where it got to.
    let resumed = store
        .start_or_resume(&t, RunKind::Full, None)
        .await
        .unwrap();
    assert_eq!(resumed.id, run.id);
    assert_eq!(resumed.cursor.as_deref(), Some("cursor-3"));
    assert_eq!(resumed.counts, counts);
    assert_eq!(resumed.since, Some(since));
    // Another kind or tenant is another run.
    let poll = store
        .start_or_resume(&t, RunKind::Poll, None)
        .await
        .unwrap();
    assert_ne!(poll.id, run.id);
    assert_eq!(store.last_completed(&t, RunKind::Full).await.unwrap(), None);

    store
        .finish(run.id, RunStatus::Completed, None)
        .await
        .unwrap();
    let done = store
        .last_completed(&t, RunKind::Full)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(done.id, run.id);
    assert_eq!(done.status, RunStatus::Completed);
    assert!(done.finished_at.is_some());

    let next = store
        .start_or_resume(&t, RunKind::Full, None)
        .await
        .unwrap();
    assert_ne!(next.id, run.id);
    store
        .finish(next.id, RunStatus::Failed, Some("GHL said 401".into()))
        .await
        .unwrap();
    // A failed run does not count as completed.
    assert_eq!(
        store
            .last_completed(&t, RunKind::Full)
            .await
            .unwrap()
            .unwrap()
            .id,
        run.id
    );
    let recent = store.recent(&t, 10).await.unwrap();
    let ids: Vec<_> = recent.iter().map(|r| r.id).collect();
    assert_eq!(ids, [next.id, poll.id, run.id]);
    assert_eq!(recent[0].error.as_deref(), Some("GHL said 401"));
    assert_eq!(store.recent(&t, 1).await.unwrap().len(), 1);
    assert!(store.recent(&tid("other"), 10).await.unwrap().is_empty());

    assert!(matches!(
        store.checkpoint(999_999, None, counts).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store.finish(999_999, RunStatus::Failed, None).await,
        Err(StoreError::NotFound { .. })
    ));
}

async fn concurrent_starts_share_one_run(b: TestBackend) {
    let (_db, store) = with_tenants(b).await;
    let tasks = (0..8).map(|_| {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .start_or_resume(&tid("acme"), RunKind::Full, None)
                .await
        })
    });
    let ids: Vec<i64> = join_all(tasks)
        .await
        .into_iter()
        .map(|r| r.unwrap().unwrap().id)
        .collect();
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    assert_eq!(store.recent(&tid("acme"), 10).await.unwrap().len(), 1);
}

/// The newest run of each kind of every tenant, in a fixed number of statements, with a
/// sweep's dead-lettered contact syncs counted as its errors (like `recent`).
async fn the_latest_run_of_each_kind_of_every_tenant(b: TestBackend) {
    use ports::store::{DeadLetterStore, NewDeadLetter};
    let (_db, store) = with_tenants(b).await;
    let (acme, other) = (tid("acme"), tid("other"));
    let mut newest_full = 0;
    for round in 0..3 {
        for (t, kind) in [
            (&acme, RunKind::Full),
            (&acme, RunKind::Poll),
            (&other, RunKind::Incremental),
        ] {
            let run = store.start_or_resume(t, kind, None).await.unwrap();
            store
                .finish(run.id, RunStatus::Completed, None)
                .await
                .unwrap();
            if round == 2 && kind == RunKind::Full {
                newest_full = run.id;
            }
        }
    }
    for contact in ["contact1", "contact2"] {
        DeadLetterStore::put(
            &store,
            &NewDeadLetter {
                tenant: Some(acme.clone()),
                message_id: ports::queue::sweep_message_id(
                    newest_full,
                    &domain::GhlContactId::parse(contact).unwrap(),
                    false,
                ),
                kind: "sync.contact".into(),
                envelope: "{}".into(),
                error_chain: vec!["failed".into()],
                attempts: 1,
            },
        )
        .await
        .unwrap();
    }
    let latest = store.latest_runs().await.unwrap();
    let mut seen: Vec<(String, &str)> = latest
        .iter()
        .map(|r| (r.tenant.to_string(), r.kind.as_str()))
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("acme".to_owned(), "full"),
            ("acme".to_owned(), "poll"),
            ("other".to_owned(), "incremental")
        ]
    );
    let full = latest.iter().find(|r| r.kind == RunKind::Full).unwrap();
    assert_eq!(full.id, newest_full, "the newest one");
    assert_eq!(full.counts.errors, 2, "its dead-lettered contact syncs");
    let recent = store.recent(&acme, 10).await.unwrap();
    let same = recent.iter().find(|r| r.id == newest_full).unwrap();
    assert_eq!(same.counts.errors, 2, "as recent counts them");
}
