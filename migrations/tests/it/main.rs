//! The migrations against real PostgreSQL and SQLite: applied once, idempotent, safe to start
//! three times at once, and the constraints the store relies on are really there.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use futures::future::join_all;
use migration::{Migrator, MigratorTrait};
use sea_orm_migration::sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, Statement,
};
use store::test_support::{TestBackend, TestDb};
use tokio::sync::Barrier;

const TABLES: [&str; 14] = [
    "sweep_appointments",
    "rate_window",
    "sweep_seen",
    "observations",
    "tenants",
    "credential_refresh_failures",
    "ghl_agencies",
    "ghl_pending_locations",
    "credentials",
    "links",
    "inbox",
    "sync_runs",
    "audit_log",
    "dead_letters",
];

async fn empty(backend: TestBackend) -> TestDb {
    TestDb::empty(backend).await.unwrap_or_else(|e| {
        let mut msg = e.to_string();
        let mut cause = std::error::Error::source(&e);
        while let Some(c) = cause {
            msg.push_str(&format!(": {c}"));
            cause = c.source();
        }
        panic!("{msg}")
    })
}

async fn connect(db: &TestDb) -> DatabaseConnection {
    let mut opts = ConnectOptions::new(db.url().to_owned());
    opts.max_connections(2).sqlx_logging(false);
    if db.backend() == TestBackend::Sqlite {
        opts.map_sqlx_sqlite_opts(|o| o.create_if_missing(true));
    }
    Database::connect(opts).await.unwrap()
}

async fn count(db: &DatabaseConnection, sql: &str) -> i64 {
    let row = db
        .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .unwrap()
        .unwrap();
    row.try_get_by_index::<i64>(0).unwrap()
}

async fn tables(db: &DatabaseConnection) -> Vec<String> {
    let sql = match db.get_database_backend() {
        DbBackend::Postgres => {
            "SELECT table_name::text FROM information_schema.tables \
             WHERE table_schema = 'public' ORDER BY 1"
        }
        _ => "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY 1",
    };
    db.query_all_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .unwrap()
        .iter()
        .map(|r| r.try_get_by_index::<String>(0).unwrap())
        .collect()
}

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

on_both!(
    applies_once_and_a_second_run_changes_nothing,
    constraints_hold,
    down_and_up_again,
    an_existing_tenant_counts_as_installed_when_it_was_created,
);

/// The tenant-install migration on a database that already holds a tenant: the tenant is a
/// location install, installed when it was created, with no lifecycle event seen yet.
async fn an_existing_tenant_counts_as_installed_when_it_was_created(b: TestBackend) {
    let test_db = empty(b).await;
    let db = connect(&test_db).await;
    Migrator::up(&db, Some(1)).await.unwrap();
    exec(
        &db,
        "INSERT INTO tenants (id, name, location_id, ekyte_company_id, active, settings, \
         created_at, updated_at) VALUES ('acme', 'T', 'loc-1', 1, true, '{}', \
         '2026-01-02T03:04:05+00:00', '2026-01-02T03:04:05+00:00')",
    )
    .await
    .unwrap();
    assert_eq!(
        migration::run(&db).await.unwrap().applied.len(),
        Migrator::migrations().len() - 1
    );
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT install_kind, ghl_company_id IS NULL, lifecycle_at IS NULL, \
             installed_at = created_at FROM tenants WHERE id = 'acme'",
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.try_get_by_index::<String>(0).unwrap(), "location");
    assert!(row.try_get_by_index::<bool>(1).unwrap());
    assert!(row.try_get_by_index::<bool>(2).unwrap());
    assert!(
        row.try_get_by_index::<bool>(3).unwrap(),
        "installed when created"
    );
}

async fn applies_once_and_a_second_run_changes_nothing(b: TestBackend) {
    let test_db = empty(b).await;
    let db = connect(&test_db).await;
    let all: Vec<String> = Migrator::migrations()
        .iter()
        .map(|m| m.name().to_owned())
        .collect();

    let before = migration::status(&db).await.unwrap();
    assert!(before.iter().all(|m| !m.applied));
    assert_eq!(migration::pending(&db).await.unwrap(), all);
    // Reading the status wrote nothing.
    assert!(tables(&db).await.is_empty(), "{:?}", tables(&db).await);

    let first = migration::run(&db).await.unwrap();
    assert_eq!(first.applied, all);
    let present = tables(&db).await;
    for t in TABLES {
        assert!(
            present.iter().any(|p| p == t),
            "missing table {t}: {present:?}"
        );
    }
    assert!(
        migration::status(&db)
            .await
            .unwrap()
            .iter()
            .all(|m| m.applied)
    );

    let second = migration::run(&db).await.unwrap();
    assert!(second.applied.is_empty());
    assert_eq!(
        count(&db, "SELECT count(*) FROM seaql_migrations").await,
        all.len() as i64
    );
}

/// Three `migrate` runs started at once, each with its own pool (like three pods): all
/// succeed and every migration is applied exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_concurrent_runs_on_postgres_apply_once() {
    let test_db = empty(TestBackend::Postgres).await;
    let mut conns = Vec::new();
    for _ in 0..3 {
        conns.push(connect(&test_db).await);
    }
    let barrier = Arc::new(Barrier::new(3));
    let runs = conns.into_iter().map(|db| {
        let barrier = barrier.clone();
        tokio::spawn(async move {
            barrier.wait().await;
            let report = migration::run(&db).await;
            (report, db)
        })
    });
    let mut applied = Vec::new();
    let mut db = None;
    for run in join_all(runs).await {
        let (report, conn) = run.unwrap();
        let report = report.unwrap_or_else(|e| panic!("a concurrent run failed: {e:?}"));
        applied.extend(report.applied);
        db = Some(conn);
    }
    let all: Vec<String> = Migrator::migrations()
        .iter()
        .map(|m| m.name().to_owned())
        .collect();
    assert_eq!(applied, all, "each migration applied by exactly one run");
    let db = db.unwrap();
    assert_eq!(
        count(&db, "SELECT count(*) FROM seaql_migrations").await,
        all.len() as i64
    );
}

async fn exec(db: &DatabaseConnection, sql: &str) -> Result<(), String> {
    db.execute_unprepared(sql)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

async fn constraints_hold(b: TestBackend) {
    let test_db = empty(b).await;
    let db = connect(&test_db).await;
    migration::run(&db).await.unwrap();
    if b == TestBackend::Sqlite {
        exec(&db, "PRAGMA foreign_keys = ON").await.unwrap();
    }
    let now = "'2026-01-01T00:00:00+00:00'";
    let tenant = |id: &str, loc: &str| {
        format!(
            "INSERT INTO tenants (id, name, location_id, ekyte_company_id, active, settings, \
             created_at, updated_at) VALUES ('{id}', 'T', '{loc}', 1, true, '{{}}', {now}, {now})"
        )
    };
    exec(&db, &tenant("acme", "loc-1")).await.unwrap();
    assert!(
        exec(&db, &tenant("beta", "loc-1")).await.is_err(),
        "location is unique"
    );

    let link = |ghl: &str, ekyte: &str, state: &str| {
        format!(
            "INSERT INTO links (tenant_id, kind, ghl_id, ekyte_id, state, base, version, \
             created_at, updated_at) VALUES ('acme', 'task', {ghl}, {ekyte}, '{state}', \
             '{{\"kind\":\"none\"}}', 1, {now}, {now})"
        )
    };
    exec(&db, &link("'g1'", "NULL", "claimed")).await.unwrap();
    exec(&db, &link("'g2'", "NULL", "claimed")).await.unwrap();
    assert!(
        exec(&db, &link("'g1'", "NULL", "claimed")).await.is_err(),
        "GHL id unique"
    );
    exec(&db, &link("NULL", "'e1'", "linked")).await.unwrap();
    assert!(
        exec(&db, &link("'g3'", "'e1'", "linked")).await.is_err(),
        "eKyte id unique"
    );
    assert!(
        exec(&db, &link("NULL", "NULL", "linked")).await.is_err(),
        "one id at least"
    );
    assert!(
        exec(&db, &link("'g4'", "NULL", "bogus")).await.is_err(),
        "state checked"
    );
    let orphan = "INSERT INTO links (tenant_id, kind, ghl_id, state, base, version, \
                  created_at, updated_at) VALUES ('ghost', 'task', 'g9', 'linked', '{}', 1, \
                  '2026-01-01T00:00:00+00:00', '2026-01-01T00:00:00+00:00')";
    assert!(exec(&db, orphan).await.is_err(), "tenant foreign key");

    let inbox = format!(
        "INSERT INTO inbox (tenant_id, source, dedupe_key, created_at) VALUES \
         ('acme', 'ghl', 'k', {now})"
    );
    exec(&db, &inbox).await.unwrap();
    assert!(exec(&db, &inbox).await.is_err(), "inbox key unique");

    let run = format!(
        "INSERT INTO sync_runs (tenant_id, kind, status, counts, started_at, updated_at) \
         VALUES ('acme', 'full', 'running', '{{}}', {now}, {now})"
    );
    exec(&db, &run).await.unwrap();
    assert!(
        exec(&db, &run).await.is_err(),
        "one running run per tenant and kind"
    );
    exec(&db, "UPDATE sync_runs SET status = 'completed'")
        .await
        .unwrap();
    exec(&db, &run).await.unwrap();
}

async fn down_and_up_again(b: TestBackend) {
    let test_db = empty(b).await;
    let db = connect(&test_db).await;
    migration::run(&db).await.unwrap();
    Migrator::down(&db, None).await.unwrap();
    let left: Vec<_> = tables(&db)
        .await
        .into_iter()
        .filter(|t| TABLES.contains(&t.as_str()))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    assert_eq!(
        migration::run(&db).await.unwrap().applied.len(),
        Migrator::migrations().len()
    );
}
