//! Shared fixtures.

use domain::{EkyteCompanyId, LocationId, Tenant, TenantId, TenantSettings};
use ports::store::TenantStore;
use sea_orm::{ConnectionTrait, DatabaseConnection};
use store::Store;
use store::test_support::{TestBackend, TestDb};

/// Run one test body on each backend.
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                super::$name(store::test_support::TestBackend::Postgres).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                super::$name(store::test_support::TestBackend::Sqlite).await
            }
        }
    )*};
}
pub(crate) use on_both;

/// Print an error with its whole cause chain (the unreachable-PostgreSQL hint included).
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

/// A fresh migrated database and a store on it.
pub async fn setup(backend: TestBackend) -> (TestDb, Store) {
    let db = TestDb::fresh(backend)
        .await
        .unwrap_or_else(|e| panic!("{}", chain(&e)));
    let store = db.store().await.unwrap_or_else(|e| panic!("{}", chain(&e)));
    (db, store)
}

pub async fn raw(db: &TestDb) -> DatabaseConnection {
    db.raw().await.unwrap_or_else(|e| panic!("{}", chain(&e)))
}

pub fn tid(raw: &str) -> TenantId {
    TenantId::parse(raw).unwrap()
}

pub fn tenant(id: &str, location: &str) -> Tenant {
    Tenant {
        id: tid(id),
        name: format!("Tenant {id}"),
        location_id: LocationId::parse(location).unwrap(),
        ekyte_company_id: EkyteCompanyId::new(42).unwrap(),
        active: true,
        settings: TenantSettings::default(),
        install: Default::default(),
    }
}

/// A store with tenants `acme` (location `loc-acme`) and `other` (`loc-other`).
pub async fn with_tenants(backend: TestBackend) -> (TestDb, Store) {
    let (db, store) = setup(backend).await;
    store.upsert(&tenant("acme", "loc-acme")).await.unwrap();
    store.upsert(&tenant("other", "loc-other")).await.unwrap();
    (db, store)
}

/// Run a raw statement built with sea-query (placeholders per backend).
pub async fn exec<S: sea_orm::StatementBuilder>(db: &DatabaseConnection, stmt: &S) {
    db.execute(stmt).await.unwrap();
}
