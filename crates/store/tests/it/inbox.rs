use chrono::Utc;
use ports::store::Inbox;
use sea_orm::sea_query::{Alias, Expr, ExprTrait, Query};
use store::test_support::TestBackend;

use crate::support::{exec, on_both, raw, tid, with_tenants};

on_both!(record_once_and_prune_by_age);

async fn record_once_and_prune_by_age(b: TestBackend) {
    let (db, store) = with_tenants(b).await;
    let (acme, other) = (tid("acme"), tid("other"));
    assert!(!store.seen(&acme, "ghl", "wh-1").await.unwrap());
    assert!(store.record(&acme, "ghl", "wh-1").await.unwrap());
    assert!(!store.record(&acme, "ghl", "wh-1").await.unwrap());
    assert!(store.seen(&acme, "ghl", "wh-1").await.unwrap());
    // The key is scoped by tenant and source.
    assert!(store.record(&other, "ghl", "wh-1").await.unwrap());
    assert!(store.record(&acme, "ekyte", "wh-1").await.unwrap());
    assert!(store.record(&acme, "ghl", "wh-2").await.unwrap());

    // wh-1 of acme/ghl is two days old; the rest are new.
    let conn = raw(&db).await;
    exec(
        &conn,
        Query::update()
            .table(Alias::new("inbox"))
            .value(
                Alias::new("created_at"),
                Utc::now() - chrono::Duration::days(2),
            )
            .and_where(Expr::col(Alias::new("dedupe_key")).eq("wh-1"))
            .and_where(Expr::col(Alias::new("source")).eq("ghl"))
            .and_where(Expr::col(Alias::new("tenant_id")).eq("acme")),
    )
    .await;
    assert_eq!(
        store
            .prune(Utc::now() - chrono::Duration::days(3))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        store
            .prune(Utc::now() - chrono::Duration::days(1))
            .await
            .unwrap(),
        1
    );
    assert!(!store.seen(&acme, "ghl", "wh-1").await.unwrap());
    assert!(store.seen(&other, "ghl", "wh-1").await.unwrap());
    assert!(store.seen(&acme, "ghl", "wh-2").await.unwrap());
    assert_eq!(
        store
            .prune(Utc::now() + chrono::Duration::seconds(5))
            .await
            .unwrap(),
        3
    );
}

on_both!(record_many_keys_in_one_statement_keeping_those_there);

async fn record_many_keys_in_one_statement_keeping_those_there(b: TestBackend) {
    let (_db, store) = with_tenants(b).await;
    let (acme, other) = (tid("acme"), tid("other"));
    assert!(store.record(&acme, "webhook", "wh-1").await.unwrap());
    let before = store.statements();
    store
        .record_many(
            "webhook",
            &[
                (acme.clone(), "wh-1".to_owned()),
                (acme.clone(), "wh-2".to_owned()),
                (acme.clone(), "wh-2".to_owned()),
                (other.clone(), "wh-1".to_owned()),
            ],
        )
        .await
        .unwrap();
    assert_eq!(
        store.statements() - before,
        1,
        "one statement for the batch"
    );
    assert!(store.seen(&acme, "webhook", "wh-2").await.unwrap());
    assert!(store.seen(&other, "webhook", "wh-1").await.unwrap());
    assert!(!store.seen(&other, "webhook", "wh-2").await.unwrap());
    // Already there: left as it was.
    assert!(!store.record(&acme, "webhook", "wh-1").await.unwrap());
    store.record_many("webhook", &[]).await.unwrap();
}
