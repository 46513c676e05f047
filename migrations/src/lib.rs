//! The database schema of ghl-ekyte-sync (DESIGN.md §6), as sea-orm migrations that run on
//! PostgreSQL and SQLite alike.
//!
//! Entry points for the `ghl-ekyte-sync migrate` command and the store's tests:
//!
//! - [`run`] applies every pending migration and says which ones it applied. On PostgreSQL it
//!   holds a transaction-scoped advisory lock for the whole run, so any number of `migrate`
//!   runs started at once (a Kubernetes Job retried while the first attempt is still running,
//!   an operator at a terminal) all succeed and each migration is applied exactly once: the
//!   first run applies them, the others wait for the lock and then find nothing pending.
//!   Because PostgreSQL has transactional DDL, a failed run leaves the schema as it was.
//! - [`status`] lists every migration this build knows and whether it is applied, without
//!   writing anything.
//!
//! SQLite is the embedded single-process default: no cross-process lock is taken there, but
//! each migration still runs in its own transaction, so a crash never leaves half a migration.

use sea_orm_migration::MigrationStatus;
use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{
    ConnectionTrait, DatabaseConnection, DbBackend, Statement, TransactionTrait,
};

mod m20260101_000001_initial;
mod m20261204_000001_tenant_install;
mod m20261204_000002_ghl_agencies;
mod m20261206_000001_pending_locations;
mod m20261206_000002_observations;
mod m20261206_000003_audit_calls;
mod m20261207_000001_rate_window;
mod m20261208_000001_sweep_seen;
mod m20261209_000001_sweep_appointments;

pub use sea_orm_migration::MigratorTrait;
pub use sea_orm_migration::sea_orm::DbErr;

/// The migrations of this build, oldest first.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20260101_000001_initial::Migration),
            Box::new(m20261204_000001_tenant_install::Migration),
            Box::new(m20261204_000002_ghl_agencies::Migration),
            Box::new(m20261206_000001_pending_locations::Migration),
            Box::new(m20261206_000002_observations::Migration),
            Box::new(m20261206_000003_audit_calls::Migration),
            Box::new(m20261207_000001_rate_window::Migration),
            Box::new(m20261208_000001_sweep_seen::Migration),
            Box::new(m20261209_000001_sweep_appointments::Migration),
        ]
    }
}

/// The advisory lock that serialises migration runs on PostgreSQL.
///
/// The two-`int4` form of the advisory lock functions lives in a different key space from the
/// single-`bigint` form the store uses for per-contact locks, so the two can never collide.
/// The numbers spell "ges" and "migrate" closely enough to be recognisable in `pg_locks`.
const LOCK_CLASS: i32 = 0x0067_6573; // "ges"
const LOCK_OBJECT: i32 = 0x6d69_6772; // "migr"

/// Why a migration run failed.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// The database could not be reached, or the lock could not be taken.
    #[error("cannot reach the database to {action}")]
    Connection {
        action: &'static str,
        #[source]
        source: DbErr,
    },
    /// A migration (or reading the migration table) failed; nothing of that migration stays.
    #[error("migration failed while trying to {action}")]
    Failed {
        action: &'static str,
        #[source]
        source: DbErr,
    },
}

impl MigrateError {
    fn classify(action: &'static str, source: DbErr) -> Self {
        match source {
            DbErr::Conn(_) | DbErr::ConnectionAcquire(_) => Self::Connection { action, source },
            _ => Self::Failed { action, source },
        }
    }
}

/// What a run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationReport {
    /// Names of the migrations this run applied, in order; empty when the schema was current.
    pub applied: Vec<String>,
}

/// One migration and whether it is applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationState {
    pub name: String,
    pub applied: bool,
}

/// Apply every pending migration (see the module doc for the locking guarantees).
pub async fn run(db: &DatabaseConnection) -> Result<MigrationReport, MigrateError> {
    match db.get_database_backend() {
        DbBackend::Postgres => run_postgres(db).await,
        _ => run_unlocked(db).await,
    }
}

async fn run_postgres(db: &DatabaseConnection) -> Result<MigrationReport, MigrateError> {
    // Everything happens in one transaction that holds the lock until commit: the pending
    // list is read after the lock is taken, so a run that waited sees the work of the run
    // it waited for and applies nothing. Each migration nests as a savepoint.
    let txn = db
        .begin()
        .await
        .map_err(|e| MigrateError::classify("begin the migration transaction", e))?;
    txn.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT pg_advisory_xact_lock($1, $2)",
        [LOCK_CLASS.into(), LOCK_OBJECT.into()],
    ))
    .await
    .map_err(|e| MigrateError::classify("take the migration lock", e))?;
    let pending = pending_names(&txn).await?;
    tracing::info!(
        pending = pending.len(),
        "applying migrations under the lock"
    );
    Migrator::up(&txn, None)
        .await
        .map_err(|e| MigrateError::classify("apply the pending migrations", e))?;
    txn.commit()
        .await
        .map_err(|e| MigrateError::classify("commit the migrations", e))?;
    Ok(MigrationReport { applied: pending })
}

async fn run_unlocked(db: &DatabaseConnection) -> Result<MigrationReport, MigrateError> {
    let pending = pending_names(db).await?;
    tracing::info!(pending = pending.len(), "applying migrations");
    Migrator::up(db, None)
        .await
        .map_err(|e| MigrateError::classify("apply the pending migrations", e))?;
    Ok(MigrationReport { applied: pending })
}

async fn pending_names<C: ConnectionTrait>(db: &C) -> Result<Vec<String>, MigrateError> {
    let pending = Migrator::get_pending_migrations_read_only(db)
        .await
        .map_err(|e| MigrateError::classify("read the applied migrations", e))?;
    Ok(pending.iter().map(|m| m.name().to_owned()).collect())
}

/// Every migration of this build and whether it is applied. Writes nothing. Fails when the
/// database records a migration this build does not know (the schema is newer than the code).
pub async fn status(db: &DatabaseConnection) -> Result<Vec<MigrationState>, MigrateError> {
    let all = Migrator::get_migration_with_status_read_only(db)
        .await
        .map_err(|e| MigrateError::classify("read the applied migrations", e))?;
    Ok(all
        .iter()
        .map(|m| MigrationState {
            name: m.name().to_owned(),
            applied: m.status() == MigrationStatus::Applied,
        })
        .collect())
}

/// Names of the migrations not applied yet (empty when the schema is current).
pub async fn pending(db: &DatabaseConnection) -> Result<Vec<String>, MigrateError> {
    pending_names(db).await
}
