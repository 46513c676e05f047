use domain::{LocationId, TenantSettings, WorkspacePer};
use ports::StoreError;
use ports::store::TenantStore;
use store::test_support::TestBackend;

use crate::support::{on_both, setup, tenant, tid};

on_both!(
    tenants_round_trip_and_update,
    duplicate_location_is_a_conflict
);

async fn tenants_round_trip_and_update(b: TestBackend) {
    let (_db, store) = setup(b).await;
    let mut acme = tenant("acme", "loc-acme");
    acme.settings = TenantSettings {
        workspace_per: WorkspacePer::Business,
        phone_region: "BR".into(),
        custom_fields: vec!["cf1".into()],
        ..TenantSettings::default()
    };
    store.upsert(&acme).await.unwrap();
    store.upsert(&tenant("beta", "loc-beta")).await.unwrap();

    assert_eq!(store.get(&tid("acme")).await.unwrap(), acme);
    let by_loc = store
        .by_location(&LocationId::parse("loc-acme").unwrap())
        .await
        .unwrap();
    assert_eq!(by_loc, Some(acme.clone()));
    assert_eq!(
        store
            .by_location(&LocationId::parse("nowhere").unwrap())
            .await
            .unwrap(),
        None
    );
    let ids: Vec<_> = store
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.id.to_string())
        .collect();
    assert_eq!(ids, ["acme", "beta"]);

    // Upsert replaces, including a move to another location.
    acme.name = "Acme Renamed".into();
    acme.location_id = LocationId::parse("loc-acme-2").unwrap();
    store.upsert(&acme).await.unwrap();
    assert_eq!(store.get(&tid("acme")).await.unwrap(), acme);
    assert_eq!(store.list().await.unwrap().len(), 2);

    store.set_active(&tid("acme"), false).await.unwrap();
    assert!(!store.get(&tid("acme")).await.unwrap().active);

    assert!(matches!(
        store.get(&tid("ghost")).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store.set_active(&tid("ghost"), true).await,
        Err(StoreError::NotFound { .. })
    ));
}

async fn duplicate_location_is_a_conflict(b: TestBackend) {
    let (_db, store) = setup(b).await;
    store.upsert(&tenant("acme", "loc-1")).await.unwrap();
    let err = store.upsert(&tenant("beta", "loc-1")).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Conflict { message } if message.contains("loc-1")),
        "{err:?}"
    );
    assert!(matches!(
        store.get(&tid("beta")).await,
        Err(StoreError::NotFound { .. })
    ));
}
