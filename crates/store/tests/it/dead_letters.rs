use chrono::Utc;
use ports::StoreError;
use ports::store::{DeadLetterStore, NewDeadLetter};
use sea_orm::sea_query::{Alias, Expr, ExprTrait, Query};
use store::test_support::TestBackend;

use crate::support::{exec, on_both, raw, tid, with_tenants};

on_both!(
    put_list_get_and_replay,
    pages_newest_first_before_an_id,
    summary_counts_per_tenant_and_class
);

fn letter(tenant: Option<&str>, n: u32) -> NewDeadLetter {
    NewDeadLetter {
        tenant: tenant.map(tid),
        message_id: format!("msg-{n}"),
        kind: "ghl.event".into(),
        envelope: format!(r#"{{"id":"msg-{n}","payload":{{"x":[1,2]}}}}"#),
        error_chain: vec!["handling failed".into(), format!("cause {n}")],
        attempts: n,
    }
}

async fn put_list_get_and_replay(b: TestBackend) {
    let (_db, store) = with_tenants(b).await;
    let a = store.put(&letter(Some("acme"), 1)).await.unwrap();
    let n = store.put(&letter(None, 2)).await.unwrap();
    let c = store.put(&letter(Some("acme"), 3)).await.unwrap();

    let all = store.list(None, false, None, 10).await.unwrap();
    let ids: Vec<_> = all.iter().map(|d| d.id).collect();
    assert_eq!(ids, [c, n, a]);
    assert_eq!(all[2].letter, letter(Some("acme"), 1));
    assert_eq!(all[1].letter.tenant, None);
    assert!(all.iter().all(|d| d.replayed_at.is_none()));

    let acme: Vec<_> = store
        .list(Some(tid("acme")), false, None, 10)
        .await
        .unwrap()
        .iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(acme, [c, a]);
    assert_eq!(store.list(None, false, None, 1).await.unwrap().len(), 1);

    store.mark_replayed(c).await.unwrap();
    let pending: Vec<_> = store
        .list(None, false, None, 10)
        .await
        .unwrap()
        .iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(pending, [n, a]);
    let with_replayed = store.list(None, true, None, 10).await.unwrap();
    assert_eq!(with_replayed.len(), 3);
    let got = store.get(c).await.unwrap();
    assert!(got.replayed_at.is_some());
    assert_eq!(got.letter, letter(Some("acme"), 3));

    assert!(matches!(
        store.get(999_999).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store.mark_replayed(999_999).await,
        Err(StoreError::NotFound { .. })
    ));
}

async fn pages_newest_first_before_an_id(b: TestBackend) {
    let (_db, store) = with_tenants(b).await;
    let mut ids = Vec::new();
    for n in 1..=5 {
        let tenant = if n % 2 == 0 { "other" } else { "acme" };
        ids.push(store.put(&letter(Some(tenant), n)).await.unwrap());
    }
    let page = |tenant: Option<&str>, all: bool, before: Option<i64>, limit: u32| {
        let store = &store;
        let tenant = tenant.map(tid);
        async move {
            store
                .list(tenant, all, before, limit)
                .await
                .unwrap()
                .iter()
                .map(|d| d.id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(page(None, false, None, 2).await, [ids[4], ids[3]]);
    assert_eq!(page(None, false, Some(ids[3]), 2).await, [ids[2], ids[1]]);
    assert_eq!(page(None, false, Some(ids[1]), 2).await, [ids[0]]);
    assert!(page(None, false, Some(ids[0]), 2).await.is_empty());
    // Paging composes with the tenant and the replayed filters.
    assert_eq!(
        page(Some("acme"), false, Some(ids[4]), 10).await,
        [ids[2], ids[0]]
    );
    store.mark_replayed(ids[2]).await.unwrap();
    assert_eq!(page(Some("acme"), false, Some(ids[4]), 10).await, [ids[0]]);
    assert_eq!(
        page(Some("acme"), true, Some(ids[4]), 10).await,
        [ids[2], ids[0]]
    );
    // An id past the newest is the first page.
    assert_eq!(page(None, true, Some(i64::MAX), 1).await, [ids[4]]);
}

fn failing(tenant: Option<&str>, n: u32, chain: &[&str]) -> NewDeadLetter {
    NewDeadLetter {
        error_chain: chain.iter().map(|s| (*s).to_owned()).collect(),
        ..letter(tenant, n)
    }
}

async fn summary_counts_per_tenant_and_class(b: TestBackend) {
    let (db, store) = with_tenants(b).await;
    assert!(store.summary(None, false, None).await.unwrap().is_empty());
    let unauthorized = |contact: &str| {
        [
            "GHL get contact failed".to_owned(),
            format!("unauthorized: the token of {contact} was revoked"),
        ]
    };
    let (c1, c2) = (unauthorized("c1"), unauthorized("c2"));
    let c1: Vec<&str> = c1.iter().map(String::as_str).collect();
    let c2: Vec<&str> = c2.iter().map(String::as_str).collect();
    let retried = [
        "gave up after 5 attempts",
        "eKyte create task failed",
        "transient failure: HTTP 503",
    ];
    let a1 = store.put(&failing(Some("acme"), 1, &c1)).await.unwrap();
    let a2 = store.put(&failing(Some("acme"), 2, &c1)).await.unwrap();
    let a3 = store.put(&failing(Some("acme"), 3, &c2)).await.unwrap();
    let a4 = store
        .put(&failing(Some("acme"), 4, &retried))
        .await
        .unwrap();
    let o1 = store
        .put(&failing(Some("other"), 5, &retried))
        .await
        .unwrap();
    let n1 = store
        .put(&failing(
            None,
            6,
            &["message body is not an envelope: expected value at line 1"],
        ))
        .await
        .unwrap();

    let groups = store.summary(None, false, None).await.unwrap();
    let got: Vec<_> = groups
        .iter()
        .map(|g| {
            (
                g.tenant.as_ref().map(|t| t.as_str().to_owned()),
                g.class.as_str(),
                g.count,
                g.newest_id,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (
                None,
                "message body is not an envelope: expected value at line #",
                1,
                n1
            ),
            (
                Some("acme".to_owned()),
                "GHL get contact failed: unauthorized",
                3,
                a3
            ),
            (
                Some("acme".to_owned()),
                "eKyte create task failed: transient failure",
                1,
                a4
            ),
            (
                Some("other".to_owned()),
                "eKyte create task failed: transient failure",
                1,
                o1
            ),
        ],
        "letters without a tenant first, then by tenant, the largest group first"
    );
    let newest = store.get(a3).await.unwrap().created_at;
    assert_eq!(groups[1].newest_at, newest);

    // One tenant; replayed ones only when asked.
    store.mark_replayed(a3).await.unwrap();
    store.mark_replayed(a1).await.unwrap();
    let acme = store.summary(Some(tid("acme")), false, None).await.unwrap();
    let counts: Vec<_> = acme.iter().map(|g| (g.class.as_str(), g.count)).collect();
    assert_eq!(
        counts,
        [
            ("GHL get contact failed: unauthorized", 1),
            ("eKyte create task failed: transient failure", 1)
        ]
    );
    assert_eq!(acme[0].newest_id, a2);
    let with_replayed = store.summary(Some(tid("acme")), true, None).await.unwrap();
    assert_eq!(with_replayed[0].count, 3);

    // Since a time: a2 is made two hours old.
    let conn = raw(&db).await;
    exec(
        &conn,
        Query::update()
            .table(Alias::new("dead_letters"))
            .value(
                Alias::new("created_at"),
                Utc::now() - chrono::Duration::hours(2),
            )
            .and_where(Expr::col(Alias::new("id")).eq(a2)),
    )
    .await;
    let recent = store
        .summary(
            Some(tid("acme")),
            true,
            Some(Utc::now() - chrono::Duration::hours(1)),
        )
        .await
        .unwrap();
    let counts: Vec<_> = recent.iter().map(|g| (g.class.as_str(), g.count)).collect();
    assert_eq!(
        counts,
        [
            ("GHL get contact failed: unauthorized", 2),
            ("eKyte create task failed: transient failure", 1)
        ]
    );
    assert!(
        store
            .summary(None, true, Some(Utc::now() + chrono::Duration::hours(1)))
            .await
            .unwrap()
            .is_empty()
    );
}
