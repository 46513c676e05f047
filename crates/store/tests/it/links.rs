use std::time::Duration;

use chrono::{TimeZone, Utc};
use domain::{EntityKind, Fingerprint, Side, Task, TaskStatus};
use futures::future::join_all;
use ports::StoreError;
use ports::store::{BaseRecord, Claim, ClaimKey, Completion, LinkState, LinkStore, LinkUpdate};
use sea_orm::sea_query::{Alias, Expr, ExprTrait, Query};
use store::test_support::TestBackend;

use crate::support::{exec, on_both, raw, tid, with_tenants};

on_both!(
    claim_complete_and_already_linked,
    sixteen_concurrent_claims_one_wins,
    stale_claim_is_taken_over_by_exactly_one,
    same_owner_reclaiming_must_look_first,
    release_deletes_only_claims,
    insert_linked_enforces_both_unique_ids,
    complete_checks_version_and_ids,
    complete_many_writes_each_row_as_complete_would,
    parents_and_paging,
    many_ids_and_parents_in_one_read,
    a_contacts_links_in_one_read,
    stored_rows_that_do_not_parse_are_corrupt,
    pending_ekyte_creates_are_recent_claims_without_an_ekyte_id,
);

const HOUR: Duration = Duration::from_secs(3600);

fn key(side: Side, id: &str) -> ClaimKey {
    ClaimKey {
        tenant: tid("acme"),
        kind: EntityKind::Contact,
        side,
        id: id.into(),
        ghl_parent: None,
        ekyte_parent: None,
        pending: ports::store::BaseRecord::None,
    }
}

fn linked(ghl: Option<&str>, ekyte: Option<&str>) -> LinkUpdate {
    LinkUpdate {
        ghl_id: ghl.map(Into::into),
        ekyte_id: ekyte.map(Into::into),
        ghl_parent: None,
        ekyte_parent: None,
        state: LinkState::Linked,
        base: BaseRecord::None,
        ghl_fp: None,
        ekyte_fp: None,
    }
}

fn fp(seed: &str) -> Fingerprint {
    Fingerprint::of_document(EntityKind::ProfileNote, seed)
}

async fn claim_complete_and_already_linked(b: TestBackend) {
    let (_db, store) = with_tenants(b).await;
    let Claim::Claimed(link) = store
        .claim(&key(Side::Ghl, "c1"), "w1", HOUR)
        .await
        .unwrap()
    else {
        panic!("first claim must win")
    };
    assert_eq!(link.state, LinkState::Claimed);
    assert_eq!(link.ghl_id.as_deref(), Some("c1"));
    assert_eq!(link.ekyte_id, None);
    assert_eq!(link.claimed_by.as_deref(), Some("w1"));
    assert_eq!(link.version, 1);

    match store
        .claim(&key(Side::Ghl, "c1"), "w2", HOUR)
        .await
        .unwrap()
    {
        Claim::ClaimedByOther { by, since } => {
            assert_eq!(by, "w1");
            assert_eq!(Some(since), link.claimed_at);
        }
        other => panic!("expected ClaimedByOther, got {other:?}"),
    }

    let task = Task {
        title: Some("Kick-off".into()),
        due: Some(Utc.with_ymd_and_hms(2026, 3, 4, 5, 6, 7).unwrap()),
        status: TaskStatus::Completed,
        ..Task::default()
    };
    let update = LinkUpdate {
        ekyte_id: Some("900".into()),
        ekyte_parent: Some("77".into()),
        base: BaseRecord::Task(task.clone()),
        ghl_fp: Some(fp("g")),
        ekyte_fp: Some(fp("e")),
        ..linked(None, None)
    };
    let done = store.complete(link.id, 1, &update).await.unwrap();
    assert_eq!(done.version, 2);
    assert_eq!(done.state, LinkState::Linked);
    // An id left out of the update keeps its stored value.
    assert_eq!(done.ghl_id.as_deref(), Some("c1"));
    assert_eq!(done.ekyte_id.as_deref(), Some("900"));
    assert_eq!(done.claimed_by, None);
    assert_eq!(done.base, BaseRecord::Task(task));

    let read = store
        .by_ekyte(&tid("acme"), EntityKind::Contact, "900")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read, done, "what complete returns is what is stored");
    assert_eq!(read.fingerprint(Side::Ekyte), Some(fp("e")));
    assert_eq!(
        store
            .by_ghl(&tid("acme"), EntityKind::Contact, "c1")
            .await
            .unwrap(),
        Some(done.clone())
    );
    // Same ids, other tenant or other kind: nothing.
    assert_eq!(
        store
            .by_ghl(&tid("other"), EntityKind::Contact, "c1")
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .by_ghl(&tid("acme"), EntityKind::Task, "c1")
            .await
            .unwrap(),
        None
    );

    for (side, id) in [(Side::Ghl, "c1"), (Side::Ekyte, "900")] {
        match store.claim(&key(side, id), "w3", HOUR).await.unwrap() {
            Claim::AlreadyLinked(l) => assert_eq!(l.id, done.id),
            other => panic!("expected AlreadyLinked, got {other:?}"),
        }
    }
}

async fn sixteen_concurrent_claims_one_wins(b: TestBackend) {
    let (_db, store) = with_tenants(b).await;
    let tasks = (0..16).map(|i| {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .claim(&key(Side::Ekyte, "ws-1"), &format!("worker-{i}"), HOUR)
                .await
        })
    });
    let results: Vec<Claim> = join_all(tasks)
        .await
        .into_iter()
        .map(|r| r.unwrap().unwrap())
        .collect();
    let winners: Vec<_> = results
        .iter()
        .filter_map(|c| match c {
            Claim::Claimed(l) => l.claimed_by.clone(),
            _ => None,
        })
        .collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    for c in &results {
        match c {
            Claim::Claimed(_) => {}
            Claim::ClaimedByOther { by, .. } => assert_eq!(by, &winners[0]),
            other => panic!("unexpected {other:?}"),
        }
    }
    let rows = store
        .list(&tid("acme"), EntityKind::Contact, 0, 100)
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
}

async fn age_claims(db: &store::test_support::TestDb) {
    let conn = raw(db).await;
    let old = Utc::now() - chrono::Duration::hours(2);
    exec(
        &conn,
        Query::update()
            .table(Alias::new("links"))
            .value(Alias::new("claimed_at"), old)
            .and_where(Expr::col(Alias::new("state")).eq("claimed")),
    )
    .await;
}

async fn stale_claim_is_taken_over_by_exactly_one(b: TestBackend) {
    let (db, store) = with_tenants(b).await;
    let Claim::Claimed(first) = store
        .claim(&key(Side::Ghl, "c1"), "crashed", HOUR)
        .await
        .unwrap()
    else {
        panic!("first claim must win")
    };
    age_claims(&db).await;

    let tasks = (0..8).map(|i| {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .claim(&key(Side::Ghl, "c1"), &format!("w{i}"), HOUR)
                .await
        })
    });
    let results: Vec<Claim> = join_all(tasks)
        .await
        .into_iter()
        .map(|r| r.unwrap().unwrap())
        .collect();
    let taken: Vec<_> = results
        .iter()
        .filter_map(|c| match c {
            Claim::TakenOver(l) => Some(l.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(taken.len(), 1, "{results:?}");
    let new_owner = taken[0].claimed_by.clone().unwrap();
    assert_ne!(new_owner, "crashed");
    assert_eq!(taken[0].id, first.id);
    assert_eq!(taken[0].version, 2);
    for c in &results {
        if let Claim::ClaimedByOther { by, .. } = c {
            assert_eq!(by, &new_owner);
        } else {
            assert!(matches!(c, Claim::TakenOver(_)), "{c:?}");
        }
    }
    // The stale holder's completion is now refused: its version is gone.
    assert!(matches!(
        store.complete(first.id, 1, &linked(None, Some("e1"))).await,
        Err(StoreError::Conflict { .. })
    ));
}

async fn same_owner_reclaiming_must_look_first(b: TestBackend) {
    let (_db, store) = with_tenants(b).await;
    assert!(matches!(
        store
            .claim(&key(Side::Ghl, "c1"), "msg-1", HOUR)
            .await
            .unwrap(),
        Claim::Claimed(_)
    ));
    assert!(matches!(
        store.claim(&key(Side::Ghl, "c1"), "msg-1", HOUR).await.unwrap(),
        Claim::TakenOver(l) if l.claimed_by.as_deref() == Some("msg-1") && l.version == 2
    ));
}

async fn release_deletes_only_claims(b: TestBackend) {
    let (_db, store) = with_tenants(b).await;
    let Claim::Claimed(c) = store
        .claim(&key(Side::Ghl, "c1"), "w1", HOUR)
        .await
        .unwrap()
    else {
        panic!()
    };
    store.release(c.id).await.unwrap();
    assert_eq!(
        store
            .by_ghl(&tid("acme"), EntityKind::Contact, "c1")
            .await
            .unwrap(),
        None
    );
    // Released: the next worker claims afresh.
    assert!(matches!(
        store
            .claim(&key(Side::Ghl, "c1"), "w2", HOUR)
            .await
            .unwrap(),
        Claim::Claimed(_)
    ));

    let l = store
        .insert_linked(
            &tid("acme"),
            EntityKind::Contact,
            &linked(Some("c2"), Some("e2")),
        )
        .await
        .unwrap();
    store.release(l.id).await.unwrap();
    assert!(
        store
            .by_ghl(&tid("acme"), EntityKind::Contact, "c2")
            .await
            .unwrap()
            .is_some()
    );
    // Releasing what does not exist is not an error.
    store.release(999_999).await.unwrap();
}

async fn insert_linked_enforces_both_unique_ids(b: TestBackend) {
    let (_db, store) = with_tenants(b).await;
    let t = tid("acme");
    let k = EntityKind::Task;
    let first = store
        .insert_linked(&t, k, &linked(Some("g1"), Some("e1")))
        .await
        .unwrap();
    assert_eq!((first.version, first.state), (1, LinkState::Linked));
    for dup in [linked(Some("g2"), Some("e1")), linked(Some("g1"), None)] {
        let err = store.insert_linked(&t, k, &dup).await.unwrap_err();
        assert!(matches!(err, StoreError::Conflict { .. }), "{err:?}");
    }
    // Absent ids never clash with each other (NULLs are distinct in the unique indexes).
    store
        .insert_linked(&t, k, &linked(Some("g3"), None))
        .await
        .unwrap();
    store
        .insert_linked(&t, k, &linked(Some("g4"), None))
        .await
        .unwrap();
    store
        .insert_linked(&t, k, &linked(None, Some("e5")))
        .await
        .unwrap();
    // The same ids under another tenant or kind are another link.
    store
        .insert_linked(&tid("other"), k, &linked(Some("g1"), Some("e1")))
        .await
        .unwrap();
    store
        .insert_linked(&t, EntityKind::Note, &linked(Some("g1"), Some("e1")))
        .await
        .unwrap();
    assert!(
        store
            .insert_linked(&t, k, &linked(None, None))
            .await
            .is_err()
    );
    // An unknown tenant is refused by the foreign key.
    assert!(matches!(
        store
            .insert_linked(&tid("ghost"), k, &linked(Some("g9"), None))
            .await,
        Err(StoreError::NotFound { .. })
    ));
}

async fn complete_checks_version_and_ids(b: TestBackend) {
    let (_db, store) = with_tenants(b).await;
    let t = tid("acme");
    let k = EntityKind::Contact;
    store
        .insert_linked(&t, k, &linked(Some("g-taken"), Some("e-taken")))
        .await
        .unwrap();
    let Claim::Claimed(c) = store
        .claim(&key(Side::Ghl, "c1"), "w1", HOUR)
        .await
        .unwrap()
    else {
        panic!()
    };
    // The new eKyte id belongs to another link.
    let err = store
        .complete(c.id, 1, &linked(None, Some("e-taken")))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err:?}");
    // Nothing changed, so version 1 still completes.
    let done = store
        .complete(c.id, 1, &linked(None, Some("e1")))
        .await
        .unwrap();
    assert_eq!(done.version, 2);
    // A reconciliation that read version 1 lost the race.
    assert!(matches!(
        store.complete(c.id, 1, &linked(None, None)).await,
        Err(StoreError::Conflict { .. })
    ));
    let closed = store
        .complete(
            c.id,
            2,
            &LinkUpdate {
                state: LinkState::Deleted,
                ..linked(None, None)
            },
        )
        .await
        .unwrap();
    assert_eq!(closed.state, LinkState::Deleted);
    assert_eq!(closed.ekyte_id.as_deref(), Some("e1"));
    assert!(matches!(
        store.complete(123_456, 1, &linked(None, None)).await,
        Err(StoreError::NotFound { .. })
    ));
}

async fn complete_many_writes_each_row_as_complete_would(b: TestBackend) {
    let (_db, store) = with_tenants(b).await;
    let t = tid("acme");
    let k = EntityKind::Contact;
    store
        .insert_linked(&t, k, &linked(Some("g-taken"), Some("e-taken")))
        .await
        .unwrap();
    let mut claims = Vec::new();
    for id in ["c1", "c2", "c3"] {
        let Claim::Claimed(c) = store.claim(&key(Side::Ghl, id), "w1", HOUR).await.unwrap() else {
            panic!("{id} not claimed")
        };
        claims.push(c);
    }
    let done = |i: usize, ekyte: &str| Completion {
        link_id: claims[i].id,
        expected_version: 1,
        update: LinkUpdate {
            ekyte_parent: Some(format!("p{i}")),
            base: BaseRecord::Task(Task {
                title: Some(format!("t{i}")),
                ..Task::default()
            }),
            ghl_fp: Some(fp(ekyte)),
            ..linked(None, Some(ekyte))
        },
    };
    // A new eKyte id that belongs to another link: nothing of the call is written.
    let err = store
        .complete_many(&[done(0, "e0"), done(1, "e-taken")])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err:?}");
    assert_eq!(
        store.by_ghl(&t, k, "c1").await.unwrap().unwrap().state,
        LinkState::Claimed
    );

    let written = store
        .complete_many(&[done(2, "e2"), done(0, "e0"), done(1, "e1")])
        .await
        .unwrap();
    assert_eq!(
        written.iter().map(|l| l.id).collect::<Vec<_>>(),
        [claims[2].id, claims[0].id, claims[1].id],
        "in the items' order"
    );
    for (i, ghl) in ["c1", "c2", "c3"].into_iter().enumerate() {
        let l = store.by_ghl(&t, k, ghl).await.unwrap().unwrap();
        assert_eq!(l.state, LinkState::Linked);
        assert_eq!(l.version, 2);
        assert_eq!(l.ekyte_id, Some(format!("e{i}")));
        assert_eq!(l.ekyte_parent, Some(format!("p{i}")));
        // Left `None`: kept.
        assert_eq!(l.ghl_id.as_deref(), Some(ghl));
        assert_eq!(l.ghl_fp, Some(fp(&format!("e{i}"))));
        assert_eq!(l.ekyte_fp, None);
        assert_eq!(l.claimed_by, None);
        assert_eq!(l.claimed_at, None);
        assert!(matches!(&l.base, BaseRecord::Task(task) if task.title == Some(format!("t{i}"))));
        assert!(written.contains(&l));
    }

    // A stale version is refused and named; the row whose version matched is written.
    let err = store
        .complete_many(&[
            Completion {
                expected_version: 2,
                ..done(0, "e0")
            },
            done(1, "e1"),
        ])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Conflict { message } if message.contains(&claims[1].id.to_string())),
        "{err:?}"
    );
    assert_eq!(store.by_ghl(&t, k, "c1").await.unwrap().unwrap().version, 3);
    assert!(matches!(
        store
            .complete_many(&[Completion {
                link_id: 123_456,
                ..done(0, "e0")
            }])
            .await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(store.complete_many(&[]).await.unwrap().is_empty());
}

async fn a_contacts_links_in_one_read(b: TestBackend) {
    let (_db, store) = with_tenants(b).await;
    let t = tid("acme");
    let mut want = Vec::new();
    for (kind, ghl, parent, its) in [
        (EntityKind::Contact, "c1", None, true),
        (EntityKind::ProfileNote, "c1", Some("c1"), true),
        (EntityKind::Task, "t1", Some("c1"), true),
        (EntityKind::Note, "n1", Some("c1"), true),
        // Another contact's, and kinds the read does not cover.
        (EntityKind::Contact, "c2", None, false),
        (EntityKind::Task, "t2", Some("c2"), false),
        (EntityKind::Board, "ws:1", None, false),
        (EntityKind::Onboarding, "c1:welcome", Some("c1"), false),
    ] {
        let l = store
            .insert_linked(
                &t,
                kind,
                &LinkUpdate {
                    ghl_parent: parent.map(Into::into),
                    ..linked(Some(ghl), None)
                },
            )
            .await
            .unwrap();
        if its {
            want.push(l.id);
        }
    }
    // A claim is read too.
    let Claim::Claimed(c) = store
        .claim(
            &ClaimKey {
                kind: EntityKind::Task,
                ghl_parent: Some("c1".into()),
                ..key(Side::Ghl, "t3")
            },
            "w1",
            HOUR,
        )
        .await
        .unwrap()
    else {
        panic!()
    };
    want.push(c.id);
    let mut got: Vec<i64> = store
        .of_contact(&t, "c1")
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.id)
        .collect();
    got.sort_unstable();
    assert_eq!(got, want);
    assert!(
        store
            .of_contact(&tid("other"), "c1")
            .await
            .unwrap()
            .is_empty()
    );
}

async fn parents_and_paging(b: TestBackend) {
    let (_db, store) = with_tenants(b).await;
    let t = tid("acme");
    let mut ids = Vec::new();
    for (i, (gp, ep)) in [("c1", "w1"), ("c2", "w2"), ("c1", "w1"), ("c1", "w3")]
        .into_iter()
        .enumerate()
    {
        let l = store
            .insert_linked(
                &t,
                EntityKind::Task,
                &LinkUpdate {
                    ghl_parent: Some(gp.into()),
                    ekyte_parent: Some(ep.into()),
                    ..linked(Some(&format!("g{i}")), Some(&format!("e{i}")))
                },
            )
            .await
            .unwrap();
        ids.push(l.id);
    }
    // Same parent, other kind and other tenant: never listed.
    store
        .insert_linked(
            &t,
            EntityKind::Note,
            &LinkUpdate {
                ghl_parent: Some("c1".into()),
                ..linked(Some("n1"), None)
            },
        )
        .await
        .unwrap();
    store
        .insert_linked(
            &tid("other"),
            EntityKind::Task,
            &LinkUpdate {
                ghl_parent: Some("c1".into()),
                ..linked(Some("x1"), None)
            },
        )
        .await
        .unwrap();

    let under_c1: Vec<_> = store
        .by_ghl_parent(&t, EntityKind::Task, "c1")
        .await
        .unwrap()
        .iter()
        .map(|l| l.id)
        .collect();
    assert_eq!(under_c1, [ids[0], ids[2], ids[3]]);
    let under_w1: Vec<_> = store
        .by_ekyte_parent(&t, EntityKind::Task, "w1")
        .await
        .unwrap()
        .iter()
        .map(|l| l.id)
        .collect();
    assert_eq!(under_w1, [ids[0], ids[2]]);

    let page1: Vec<_> = store
        .list(&t, EntityKind::Task, 0, 3)
        .await
        .unwrap()
        .iter()
        .map(|l| l.id)
        .collect();
    assert_eq!(page1, ids[..3]);
    let page2: Vec<_> = store
        .list(&t, EntityKind::Task, page1[2], 3)
        .await
        .unwrap()
        .iter()
        .map(|l| l.id)
        .collect();
    assert_eq!(page2, ids[3..]);
}

async fn stored_rows_that_do_not_parse_are_corrupt(b: TestBackend) {
    let (db, store) = with_tenants(b).await;
    let t = tid("acme");
    store
        .insert_linked(&t, EntityKind::Contact, &linked(Some("g1"), None))
        .await
        .unwrap();
    store
        .insert_linked(&t, EntityKind::Contact, &linked(Some("g2"), None))
        .await
        .unwrap();
    let conn = raw(&db).await;
    let bad_base = serde_json::json!({"kind": "spaceship"});
    exec(
        &conn,
        Query::update()
            .table(Alias::new("links"))
            .value(Alias::new("base"), bad_base)
            .and_where(Expr::col(Alias::new("ghl_id")).eq("g1")),
    )
    .await;
    exec(
        &conn,
        Query::update()
            .table(Alias::new("links"))
            .value(Alias::new("ghl_fp"), "not-a-fingerprint")
            .and_where(Expr::col(Alias::new("ghl_id")).eq("g2")),
    )
    .await;
    for id in ["g1", "g2"] {
        let err = store.by_ghl(&t, EntityKind::Contact, id).await.unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { .. }), "{id}: {err:?}");
    }
}

/// A sweep reads a page's links at once: the same rows as one read per id or parent, and
/// none of another kind or tenant.
async fn many_ids_and_parents_in_one_read(b: TestBackend) {
    let (_db, store) = with_tenants(b).await;
    let t = tid("acme");
    for (g, parent) in [("g1", "c1"), ("g2", "c1"), ("g3", "c2"), ("g4", "c3")] {
        store
            .insert_linked(
                &t,
                EntityKind::Task,
                &LinkUpdate {
                    ghl_parent: Some(parent.into()),
                    ..linked(Some(g), None)
                },
            )
            .await
            .unwrap();
    }
    for (tenant, kind, g) in [
        (tid("other"), EntityKind::Task, "g1x"),
        (t.clone(), EntityKind::Note, "n1"),
    ] {
        store
            .insert_linked(
                &tenant,
                kind,
                &LinkUpdate {
                    ghl_parent: Some("c1".into()),
                    ..linked(Some(g), None)
                },
            )
            .await
            .unwrap();
    }
    let ghl_ids = |links: Vec<ports::store::Link>| {
        let mut ids: Vec<String> = links.into_iter().filter_map(|l| l.ghl_id).collect();
        ids.sort();
        ids
    };
    let wanted: Vec<String> = ["g1", "g3", "missing"].map(String::from).to_vec();
    assert_eq!(
        ghl_ids(
            store
                .by_ghl_ids(&t, EntityKind::Task, &wanted)
                .await
                .unwrap()
        ),
        ["g1", "g3"]
    );
    let parents: Vec<String> = ["c1", "c2", "c9"].map(String::from).to_vec();
    assert_eq!(
        ghl_ids(
            store
                .by_ghl_parents(&t, EntityKind::Task, &parents)
                .await
                .unwrap()
        ),
        ["g1", "g2", "g3"]
    );
    assert!(
        store
            .by_ghl_ids(&t, EntityKind::Task, &[])
            .await
            .unwrap()
            .is_empty()
    );
}

async fn pending_ekyte_creates_are_recent_claims_without_an_ekyte_id(b: TestBackend) {
    let (db, store) = with_tenants(b).await;
    let acme = tid("acme");
    let hour_ago = || Utc::now() - chrono::Duration::hours(1);
    let pending = |since| {
        let store = store.clone();
        let acme = acme.clone();
        async move {
            store
                .pending_ekyte_creates(&acme, EntityKind::Contact, since)
                .await
                .unwrap()
        }
    };
    assert_eq!(pending(hour_ago()).await, 0);
    // A workspace create for GHL contact c1 (no eKyte id yet), and a GHL create for
    // workspace 77 (its eKyte id is known: not an eKyte create).
    let Claim::Claimed(_) = store
        .claim(&key(Side::Ghl, "c1"), "w1", HOUR)
        .await
        .unwrap()
    else {
        panic!("c1 not claimed");
    };
    let Claim::Claimed(_) = store
        .claim(&key(Side::Ekyte, "77"), "w1", HOUR)
        .await
        .unwrap()
    else {
        panic!("77 not claimed");
    };
    store
        .insert_linked(&acme, EntityKind::Contact, &linked(Some("c2"), Some("78")))
        .await
        .unwrap();
    assert_eq!(pending(hour_ago()).await, 1);
    assert_eq!(
        store
            .pending_ekyte_creates(&tid("other"), EntityKind::Contact, hour_ago())
            .await
            .unwrap(),
        0,
        "another tenant's"
    );
    // Claimed two hours ago: older than the horizon asked for.
    age_claims(&db).await;
    assert_eq!(pending(hour_ago()).await, 0);
    assert_eq!(pending(Utc::now() - chrono::Duration::hours(3)).await, 1);
}
