use ports::StoreError;
use ports::store::{DeadLetterStore, NewDeadLetter};
use store::test_support::TestBackend;

use crate::support::{on_both, tid, with_tenants};

on_both!(put_list_get_and_replay);

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

    let all = store.list(None, false, 10).await.unwrap();
    let ids: Vec<_> = all.iter().map(|d| d.id).collect();
    assert_eq!(ids, [c, n, a]);
    assert_eq!(all[2].letter, letter(Some("acme"), 1));
    assert_eq!(all[1].letter.tenant, None);
    assert!(all.iter().all(|d| d.replayed_at.is_none()));

    let acme: Vec<_> = store
        .list(Some(tid("acme")), false, 10)
        .await
        .unwrap()
        .iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(acme, [c, a]);
    assert_eq!(store.list(None, false, 1).await.unwrap().len(), 1);

    store.mark_replayed(c).await.unwrap();
    let pending: Vec<_> = store
        .list(None, false, 10)
        .await
        .unwrap()
        .iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(pending, [n, a]);
    let with_replayed = store.list(None, true, 10).await.unwrap();
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
