use ports::StoreError;
use ports::store::StoreHealth;
use store::test_support::TestBackend;
use store::{DataKey, Keyring, Store};

use crate::support::{on_both, setup};

on_both!(ping_answers_and_schema_is_current);

async fn ping_answers_and_schema_is_current(b: TestBackend) {
    let (_db, store) = setup(b).await;
    store.ping().await.unwrap();
    store.ensure_schema_current().await.unwrap();
    let status = store.migration_status().await.unwrap();
    assert!(!status.is_empty() && status.iter().all(|m| m.applied));
    // Migrating an up-to-date database changes nothing.
    assert!(store.migrate().await.unwrap().applied.is_empty());
}

fn ring() -> Keyring {
    Keyring::new(DataKey::generate("k").unwrap())
}

#[tokio::test]
async fn unreachable_database_is_unavailable_and_keeps_the_password_out() {
    let err = Store::connect("postgres://ges:hunter2@127.0.0.1:1/ges", ring())
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, StoreError::Unavailable { .. }), "{err:?}");
    assert!(!text.contains("hunter2"), "{text}");
    assert!(std::error::Error::source(&err).is_some());
}

#[tokio::test]
async fn other_schemes_are_refused() {
    let err = Store::connect("mysql://root@localhost/db", ring())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("postgres://"), "{err}");
}

#[tokio::test]
async fn a_new_sqlite_file_and_its_directory_are_created() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/dir/ges.db");
    let url = format!("sqlite://{}", path.display());
    let report = store::migrate_url(&url).await.unwrap();
    assert!(!report.applied.is_empty());
    assert!(path.exists());
    let store = Store::connect(&url, ring()).await.unwrap();
    store.ensure_schema_current().await.unwrap();
    assert!(store::migrate_url(&url).await.unwrap().applied.is_empty());
}

#[tokio::test]
async fn a_store_on_an_unmigrated_database_says_to_migrate() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("empty.db").display());
    let store = Store::connect(&url, ring()).await.unwrap();
    let err = store.ensure_schema_current().await.unwrap_err();
    assert!(err.to_string().contains("ghl-ekyte-sync migrate"), "{err}");
}
