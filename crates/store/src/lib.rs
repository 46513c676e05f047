//! The persistence adapter: every store port of `ports::store` over sea-orm, on PostgreSQL
//! (production) or SQLite (the embedded default), chosen by the database URL.
//!
//! One value, [`Store`], implements all the ports; hand out `Arc<dyn Port>` views of one
//! `Arc<Store>`:
//!
//! ```no_run
//! # async fn wire() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use ports::store::{LinkStore, TenantStore};
//! use secrecy::SecretString;
//!
//! let keyring = store::Keyring::parse(&SecretString::from("k1:<32 bytes, base64>".to_owned()))?;
//! let store = Arc::new(store::Store::connect("sqlite://data/ges.db", keyring).await?);
//! store.migrate().await?; // or `migration::run` from a Job
//! let tenants: Arc<dyn TenantStore> = store.clone();
//! let links: Arc<dyn LinkStore> = store.clone();
//! # Ok(()) }
//! ```
//!
//! Guarantees beyond the port docs:
//! - One code path for both backends; the only backend-specific parts are the locks
//!   (advisory and row locks on PostgreSQL, in-process mutexes on SQLite) and the SQLite
//!   connection settings. SQLite is for one process: its locks do not reach other processes.
//! - Timestamps are stored at microsecond precision in UTC, so what is read equals what was
//!   written on both backends.
//! - Credentials are encrypted at rest (see [`Keyring`]); secrets never reach a log line.
//! - Driver errors are translated once, in `error.rs`, keeping their cause.

mod agencies;
mod audit;
mod config;
mod credentials;
mod crypto;
mod dead_letters;
mod entity;
mod error;
mod inbox;
mod kept;
mod links;
mod locks;
mod mapping;
mod observations;
mod runs;
mod seen;
mod tenants;
mod window;

#[cfg(feature = "test-support")]
pub mod test_support;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use sea_orm::{DatabaseConnection, DbBackend};

use ports::StoreError;
use ports::store::StoreHealth;

pub use config::{StoreOptions, redact_url};
pub use credentials::ResealReport;
pub use crypto::{DataKey, KeyError, Keyring};
pub use migration::{MigrationReport, MigrationState};

use crate::error::unavailable;
use crate::locks::KeyedLocks;

/// The store: a connection pool, the credential keyring, and the in-process locks SQLite
/// needs. Cheap to clone (all clones share the pool).
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    db: DatabaseConnection,
    backend: DbBackend,
    keyring: Keyring,
    local: LocalLocks,
    /// Statements sent to the database since connecting (see [`Store::statements`]).
    statements: Arc<AtomicU64>,
    /// The same, by what they do (see [`Store::statements_by_kind`]).
    tally: Arc<Mutex<HashMap<String, u64>>>,
    /// Tenants read lately (`tenants.rs`).
    tenants: tenants::TenantCache,
    /// Rate windows whose slots exist (`window.rs`).
    windows: window::Ensured,
}

/// In-process locks, used on SQLite only (one process owns the file).
#[derive(Default)]
struct LocalLocks {
    credentials: Arc<KeyedLocks>,
    contacts: Arc<KeyedLocks>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.inner.backend)
            .field("keyring", &self.inner.keyring)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Connect with the default [`StoreOptions`]. `url` is `postgres://…` or `sqlite://…`
    /// (a SQLite file is created if missing). Does not migrate: see [`Store::migrate`].
    ///
    /// `Unavailable` when the database cannot be reached; `Unknown` for a URL of another
    /// scheme. Messages never contain the URL's password.
    pub async fn connect(url: &str, keyring: Keyring) -> Result<Self, StoreError> {
        Self::connect_with(url, keyring, StoreOptions::default()).await
    }

    pub async fn connect_with(
        url: &str,
        keyring: Keyring,
        options: StoreOptions,
    ) -> Result<Self, StoreError> {
        let (mut db, backend) = config::connect(url, &options).await?;
        tracing::info!(backend = ?backend, url = %redact_url(url), "store connected");
        let statements = Arc::new(AtomicU64::new(0));
        let tally = Arc::new(Mutex::new(HashMap::new()));
        let counted = Arc::clone(&statements);
        let tallied = Arc::clone(&tally);
        db.set_metric_callback(move |m| {
            counted.fetch_add(1, Ordering::Relaxed);
            let kind = statement_kind(&m.statement.sql);
            *tallied
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(kind)
                .or_insert(0) += 1;
        });
        Ok(Self {
            inner: Arc::new(Inner {
                db,
                backend,
                keyring,
                local: LocalLocks::default(),
                statements,
                tally,
                tenants: tenants::TenantCache::default(),
                windows: window::Ensured::default(),
            }),
        })
    }

    /// Apply pending migrations (under the PostgreSQL advisory lock; see `migration::run`).
    pub async fn migrate(&self) -> Result<MigrationReport, StoreError> {
        migration::run(&self.inner.db).await.map_err(migrate_err)
    }

    /// Every migration this build knows and whether it is applied.
    pub async fn migration_status(&self) -> Result<Vec<MigrationState>, StoreError> {
        migration::status(&self.inner.db).await.map_err(migrate_err)
    }

    /// Fail with a message telling the operator to migrate when the schema is behind this
    /// build (for a worker's start-up check; workers do not migrate by themselves).
    pub async fn ensure_schema_current(&self) -> Result<(), StoreError> {
        let pending = migration::pending(&self.inner.db)
            .await
            .map_err(migrate_err)?;
        if pending.is_empty() {
            Ok(())
        } else {
            Err(StoreError::Unknown(anyhow::anyhow!(
                "the database schema is behind this build ({} migration(s) pending: {}); \
                 run `ghl-ekyte-sync migrate`",
                pending.len(),
                pending.join(", ")
            )))
        }
    }

    /// Close the pool (at shutdown; dropping the last clone also closes it).
    pub async fn close(&self) -> Result<(), StoreError> {
        self.inner
            .db
            .close_by_ref()
            .await
            .map_err(|e| unavailable("close the connection pool", e))
    }

    /// Which backend the URL chose.
    pub fn is_postgres(&self) -> bool {
        self.inner.backend == DbBackend::Postgres
    }

    /// Statements this store sent to the database since it connected: every statement of
    /// every query, inside transactions too, plus the `BEGIN` and the end of each
    /// transaction. Connection checks of the pool are not statements of ours and are not
    /// counted. For the benchmarks and the `store_statements_total` metric.
    pub fn statements(&self) -> u64 {
        self.inner.statements.load(Ordering::Relaxed)
    }

    /// [`Store::statements`] by what they do: the verb and the first table named
    /// (`"INSERT links"`, `"SELECT inbox"`), `"BEGIN/END"` for a transaction's ends.
    /// For the benchmarks, which report where a sync's statements go.
    pub fn statements_by_kind(&self) -> BTreeMap<String, u64> {
        self.inner
            .tally
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }

    /// Count `n` statements the metric callback does not see (a transaction's begin and end,
    /// a statement sent unprepared), as `kind` in [`Store::statements_by_kind`].
    pub(crate) fn count_statements(&self, kind: &str, n: u64) {
        self.inner.statements.fetch_add(n, Ordering::Relaxed);
        *self
            .inner
            .tally
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(kind.to_owned())
            .or_insert(0) += n;
    }

    pub(crate) fn db(&self) -> &DatabaseConnection {
        &self.inner.db
    }

    pub(crate) fn backend(&self) -> DbBackend {
        self.inner.backend
    }

    /// The mark of a numbered placeholder in raw SQL: `$n` on PostgreSQL, `?n` on SQLite.
    pub(crate) fn placeholder(&self) -> char {
        if self.backend() == DbBackend::Postgres {
            '$'
        } else {
            '?'
        }
    }

    /// The tuples of a multi-row `VALUES` whose rows share their first value: `rows` tuples,
    /// each the first placeholder and then `per_row` of its own, numbered on
    /// (`($1, $2, $3), ($1, $4, $5)` for two rows of two).
    pub(crate) fn rows_sharing_first(&self, rows: usize, per_row: usize) -> String {
        let m = self.placeholder();
        (0..rows)
            .map(|r| {
                let own: Vec<String> = (0..per_row)
                    .map(|k| format!("{m}{}", 2 + r * per_row + k))
                    .collect();
                format!("({m}1, {})", own.join(", "))
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub(crate) fn keyring(&self) -> &Keyring {
        &self.inner.keyring
    }

    pub(crate) fn tenant_cache(&self) -> &tenants::TenantCache {
        &self.inner.tenants
    }

    pub(crate) fn ensured_windows(&self) -> &window::Ensured {
        &self.inner.windows
    }

    fn local(&self) -> &LocalLocks {
        &self.inner.local
    }
}

/// Connect to `url`, apply pending migrations and close: what `ghl-ekyte-sync migrate` needs,
/// without a keyring.
pub async fn migrate_url(url: &str) -> Result<MigrationReport, StoreError> {
    let (db, _) = config::connect(url, &StoreOptions::default()).await?;
    let report = migration::run(&db).await.map_err(migrate_err);
    // Closing is best effort: the report is what matters.
    if let Err(error) = db.close().await {
        tracing::warn!(%error, "closing the migration connection failed");
    }
    report
}

fn migrate_err(e: migration::MigrateError) -> StoreError {
    match e {
        migration::MigrateError::Connection { .. } => StoreError::Unavailable {
            message: "cannot reach the database to migrate".to_owned(),
            source: Some(Box::new(e)),
        },
        other => StoreError::Unknown(anyhow::Error::new(other)),
    }
}

#[async_trait]
impl StoreHealth for Store {
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner
            .db
            .ping()
            .await
            .map_err(|e| unavailable("ping the database", e))
    }
}

/// What a statement does, for [`Store::statements_by_kind`]: its verb and the first table it
/// names after `FROM`, `INTO` or `UPDATE` (`"SELECT links"`); a bare verb when it names none.
fn statement_kind(sql: &str) -> String {
    // Runs for every statement: the words are compared in place, only the result is built.
    let mut words = sql.split_whitespace();
    let verb = words.next().unwrap_or("");
    let mut prev = verb;
    let table = words.find_map(|w| {
        let after_keyword = ["FROM", "INTO", "UPDATE"]
            .iter()
            .any(|k| prev.eq_ignore_ascii_case(k));
        prev = w;
        after_keyword.then(|| w.trim_matches(|c| c == '"' || c == '`' || c == '('))
    });
    let verb = verb.to_ascii_uppercase();
    match table {
        Some(t) => format!("{verb} {t}"),
        None => verb,
    }
}

#[cfg(test)]
mod statement_kind_tests {
    use super::statement_kind;

    #[test]
    fn a_statement_is_named_by_its_verb_and_first_table() {
        assert_eq!(
            statement_kind(r#"INSERT INTO "links" ("tenant_id") VALUES ($1) RETURNING "id""#),
            "INSERT links"
        );
        assert_eq!(
            statement_kind(r#"UPDATE "links" SET "state" = $1 WHERE "id" = $2"#),
            "UPDATE links"
        );
        assert_eq!(
            statement_kind(r#"SELECT "links"."id" FROM "links" WHERE "links"."kind" = $1"#),
            "SELECT links"
        );
        assert_eq!(
            statement_kind("SELECT pg_try_advisory_xact_lock($1)"),
            "SELECT"
        );
    }
}
