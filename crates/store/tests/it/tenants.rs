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

on_both!(
    installs_and_uninstalls_apply_in_timestamp_order,
    the_tenants_of_a_company_are_found_by_it
);

async fn installs_and_uninstalls_apply_in_timestamp_order(b: TestBackend) {
    use chrono::TimeZone;
    let (_db, store) = setup(b).await;
    store.upsert(&tenant("acme", "loc-1")).await.unwrap();
    let at = |m: u32| chrono::Utc.with_ymd_and_hms(2026, 12, 1, 10, m, 0).unwrap();
    let acme = tid("acme");
    assert!(store.apply_lifecycle(&acme, true, at(1)).await.unwrap());
    let t = store.get(&acme).await.unwrap();
    assert!(t.active);
    assert_eq!(t.install.installed_at, Some(at(1)));
    assert_eq!(t.install.changed_at, Some(at(1)));
    assert!(store.apply_lifecycle(&acme, false, at(3)).await.unwrap());
    assert_eq!(store.get(&acme).await.unwrap().state(), "uninstalled");
    // The first INSTALL again, and one between: older than the UNINSTALL, so nothing.
    assert!(!store.apply_lifecycle(&acme, true, at(1)).await.unwrap());
    assert!(!store.apply_lifecycle(&acme, true, at(2)).await.unwrap());
    assert!(!store.apply_lifecycle(&acme, true, at(3)).await.unwrap());
    assert_eq!(store.get(&acme).await.unwrap().state(), "uninstalled");
    // A newer INSTALL is a reinstall: active, installed from then on.
    assert!(store.apply_lifecycle(&acme, true, at(5)).await.unwrap());
    let t = store.get(&acme).await.unwrap();
    assert!(t.active);
    assert_eq!(t.install.installed_at, Some(at(5)));
    // A repeated INSTALL of an active tenant keeps its install time.
    assert!(store.apply_lifecycle(&acme, true, at(7)).await.unwrap());
    assert_eq!(
        store.get(&acme).await.unwrap().install.installed_at,
        Some(at(5))
    );
    // An upsert (a settings change) leaves the lifecycle as it is.
    let mut again = tenant("acme", "loc-1");
    again.name = "Acme again".into();
    store.upsert(&again).await.unwrap();
    let t = store.get(&acme).await.unwrap();
    assert_eq!(t.install.changed_at, Some(at(7)));
    assert_eq!(t.install.installed_at, Some(at(5)));
    assert!(matches!(
        store.apply_lifecycle(&tid("ghost"), true, at(9)).await,
        Err(StoreError::NotFound { .. })
    ));
}

async fn the_tenants_of_a_company_are_found_by_it(b: TestBackend) {
    let (_db, store) = setup(b).await;
    for (id, loc, company) in [
        ("a", "loc-a", Some("co1")),
        ("b", "loc-b", Some("co1")),
        ("c", "loc-c", Some("co2")),
        ("d", "loc-d", None),
    ] {
        let mut t = tenant(id, loc);
        t.install.company_id = company.map(str::to_owned);
        t.install.kind = domain::InstallKind::Agency;
        store.upsert(&t).await.unwrap();
    }
    let ids = |list: Vec<domain::Tenant>| {
        list.into_iter()
            .map(|t| t.id.to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(store.by_company("co1").await.unwrap()), ["a", "b"]);
    assert_eq!(ids(store.by_company("co2").await.unwrap()), ["c"]);
    assert!(store.by_company("nobody").await.unwrap().is_empty());
    let a = store.get(&tid("a")).await.unwrap();
    assert_eq!(a.install.kind, domain::InstallKind::Agency);
    assert_eq!(a.install.company_id.as_deref(), Some("co1"));
}
