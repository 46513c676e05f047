use chrono::{TimeZone, Utc};
use domain::{EntityKind, Side};
use futures::future::join_all;
use ports::StoreError;
use ports::store::{
    BaseRecord, Claim, ClaimKey, LinkState, LinkStore, LinkUpdate, RunCounts, RunKind, RunStatus,
    RunStore,
};
use store::test_support::TestBackend;

use crate::support::{on_both, tid, with_tenants};

on_both!(
    a_run_keeps_its_appointments_until_it_finishes,
    a_run_remembers_what_it_saw_until_it_finishes,
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
                    Some(chrono::Utc::now()),
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

/// A linked contact of `acme` with GHL id `ghl`.
async fn linked_contact(store: &store::Store, ghl: &str, ekyte: &str) -> i64 {
    let key = ClaimKey {
        tenant: tid("acme"),
        kind: EntityKind::Contact,
        side: Side::Ghl,
        id: ghl.into(),
        ghl_parent: None,
        ekyte_parent: None,
        pending: ports::store::BaseRecord::None,
    };
    let Claim::Claimed(link) = store
        .claim(&key, "w1", std::time::Duration::from_secs(3600))
        .await
        .unwrap()
    else {
        panic!("a fresh claim wins")
    };
    let update = LinkUpdate {
        ghl_id: None,
        ekyte_id: Some(ekyte.into()),
        ghl_parent: None,
        ekyte_parent: None,
        state: LinkState::Linked,
        base: BaseRecord::None,
        ghl_fp: None,
        ekyte_fp: None,
    };
    store
        .complete(link.id, link.version, &update)
        .await
        .unwrap()
        .id
}

async fn a_run_remembers_what_it_saw_until_it_finishes(b: TestBackend) {
    let (_db, store) = with_tenants(b).await;
    let t = tid("acme");
    let mut links = Vec::new();
    for i in 0..5 {
        links.push(linked_contact(&store, &format!("c{i}"), &format!("{}", 100 + i)).await);
    }
    // A claimed (not yet linked) contact is never "unseen": nothing to settle yet.
    store
        .claim(
            &ClaimKey {
                tenant: t.clone(),
                kind: EntityKind::Contact,
                side: Side::Ghl,
                id: "claimed".into(),
                ghl_parent: None,
                ekyte_parent: None,
                pending: ports::store::BaseRecord::None,
            },
            "w1",
            std::time::Duration::from_secs(3600),
        )
        .await
        .unwrap();
    let run = store
        .start_or_resume(&t, RunKind::Full, None)
        .await
        .unwrap();
    let other = store
        .start_or_resume(&tid("other"), RunKind::Full, None)
        .await
        .unwrap();
    // Two pages; one id twice (a page boundary that moved), one that has no link.
    store
        .mark_seen(run.id, &["c0".into(), "c1".into(), "nobody".into()])
        .await
        .unwrap();
    store
        .mark_seen(run.id, &["c1".into(), "c3".into()])
        .await
        .unwrap();
    store.mark_seen(run.id, &[]).await.unwrap();
    // Another run's marks are its own.
    store.mark_seen(other.id, &["c2".into()]).await.unwrap();
    let unseen = store.unseen_contacts(&t, run.id, 0, 100).await.unwrap();
    assert_eq!(
        unseen,
        vec![(links[2], "c2".to_owned()), (links[4], "c4".to_owned())]
    );
    // Paged by link id.
    let first = store.unseen_contacts(&t, run.id, 0, 1).await.unwrap();
    assert_eq!(first, vec![(links[2], "c2".to_owned())]);
    let rest = store
        .unseen_contacts(&t, run.id, links[2], 1)
        .await
        .unwrap();
    assert_eq!(rest, vec![(links[4], "c4".to_owned())]);
    // A finished run forgets: nothing of it counts as seen any more.
    store
        .finish(run.id, RunStatus::Completed, None)
        .await
        .unwrap();
    assert_eq!(
        store
            .unseen_contacts(&t, run.id, 0, 100)
            .await
            .unwrap()
            .len(),
        5
    );
    // The running run of a kind, and none once it finished.
    assert_eq!(store.running(&t, RunKind::Full).await.unwrap(), None);
    assert_eq!(
        store
            .running(&tid("other"), RunKind::Full)
            .await
            .unwrap()
            .map(|r| r.id),
        Some(other.id)
    );
}

async fn a_run_keeps_its_appointments_until_it_finishes(b: TestBackend) {
    use domain::{Appointment, GhlAppointmentId, GhlContactId};
    use ports::ghl::GhlAppointment;
    let (_db, store) = with_tenants(b).await;
    let t = tid("acme");
    let run = store
        .start_or_resume(&t, RunKind::Full, None)
        .await
        .unwrap();
    let other = store
        .start_or_resume(&tid("other"), RunKind::Full, None)
        .await
        .unwrap();
    let at = Utc.with_ymd_and_hms(2026, 3, 1, 9, 30, 0).unwrap();
    let appointment = |id: &str, contact: &str| GhlAppointment {
        id: GhlAppointmentId::parse(id).unwrap(),
        contact: GhlContactId::parse(contact).unwrap(),
        appointment: Appointment {
            title: Some(format!("Call {id} — “quoted”")),
            start: Some(at),
            end: None,
            status: Some("confirmed".into()),
            calendar_id: Some("cal1".into()),
            address: None,
            notes: Some("line 1\nline 2".into()),
        },
        date_updated: Some(at),
    };
    // More than one statement's worth, kept in two calls, one of them twice.
    let many: Vec<GhlAppointment> = (0..1203)
        .map(|i| appointment(&format!("a{i}"), &format!("c{}", i % 601)))
        .collect();
    store.keep_appointments(run.id, &many[..700]).await.unwrap();
    store.keep_appointments(run.id, &many[600..]).await.unwrap();
    store.keep_appointments(run.id, &[]).await.unwrap();
    store
        .keep_appointments(other.id, &[appointment("x1", "c1")])
        .await
        .unwrap();

    let mut got = store
        .kept_appointments(run.id, &["c1".into(), "c2".into(), "nobody".into()])
        .await
        .unwrap();
    got.sort_by(|a, b| a.id.as_str().cmp(b.id.as_str()));
    let ids: Vec<&str> = got.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(ids, ["a1", "a2", "a602", "a603"]);
    assert_eq!(got[0], many[1], "read back as kept");
    // Every contact of a page at once: more contacts than one statement binds.
    let contacts: Vec<String> = (0..601).map(|i| format!("c{i}")).collect();
    assert_eq!(
        store
            .kept_appointments(run.id, &contacts)
            .await
            .unwrap()
            .len(),
        1203
    );

    store
        .finish(run.id, RunStatus::Completed, None)
        .await
        .unwrap();
    assert!(
        store
            .kept_appointments(run.id, &contacts)
            .await
            .unwrap()
            .is_empty(),
        "a finished run forgets its appointments"
    );
    assert_eq!(
        store
            .kept_appointments(other.id, &["c1".into()])
            .await
            .unwrap()
            .len(),
        1,
        "another run's are its own"
    );
}
