//! Fresh databases for tests (feature `test-support`), migrated through the real migrations.
//!
//! ```no_run
//! # async fn t() -> Result<(), Box<dyn std::error::Error>> {
//! use store::test_support::{TestBackend, TestDb};
//! let db = TestDb::fresh(TestBackend::Postgres).await?; // a new database, migrated
//! let store = db.store().await?;                        // a Store with a random key
//! // … the database is dropped when `db` is dropped, even if the test panics.
//! # Ok(()) }
//! ```
//!
//! PostgreSQL comes from `TEST_DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`): the helper connects there, creates a
//! database with a random name, and drops it (`WITH (FORCE)`) afterwards. When the server
//! cannot be reached the helper fails with a message saying how to start it — tests never
//! skip silently. SQLite databases are files in a temporary directory.

use std::fmt;

use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection};
use secrecy::ExposeSecret;

use crate::{DataKey, Keyring, Store};

/// Where `TEST_DATABASE_URL` points when unset.
pub const DEFAULT_TEST_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// How to start the local server, for failure messages.
pub const START_POSTGRES_HINT: &str = "Start it with `pg_ctlcluster --skip-systemctl-redirect \
     $(ls /etc/postgresql) main start`, or point TEST_DATABASE_URL at a running server";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestBackend {
    Postgres,
    Sqlite,
}

impl fmt::Display for TestBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Postgres => "postgres",
            Self::Sqlite => "sqlite",
        })
    }
}

/// Why a fresh database could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TestDbError {
    #[error("PostgreSQL is not reachable at {url} (TEST_DATABASE_URL): {source}. {hint}", hint = START_POSTGRES_HINT)]
    Unreachable {
        url: String,
        #[source]
        source: sea_orm::DbErr,
    },
    #[error("TEST_DATABASE_URL {0:?} is not a postgres:// URL")]
    BadUrl(String),
    #[error("{action}")]
    Setup {
        action: String,
        #[source]
        source: anyhow::Error,
    },
}

fn setup(action: impl Into<String>, source: impl Into<anyhow::Error>) -> TestDbError {
    TestDbError::Setup {
        action: action.into(),
        source: source.into(),
    }
}

/// The server URL tests use.
pub fn admin_url() -> String {
    std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_TEST_DATABASE_URL.to_owned())
}

/// A database that exists for one test.
pub struct TestDb {
    backend: TestBackend,
    url: String,
    cleanup: Cleanup,
}

enum Cleanup {
    Postgres { admin_url: String, name: String },
    // Held for its drop, which deletes the directory.
    Sqlite(#[allow(dead_code)] tempfile::TempDir),
}

impl TestDb {
    /// A new, migrated database on `backend`.
    pub async fn fresh(backend: TestBackend) -> Result<Self, TestDbError> {
        let db = Self::empty(backend).await?;
        crate::migrate_url(&db.url)
            .await
            .map_err(|e| setup(format!("migrate the fresh {backend} database"), e))?;
        Ok(db)
    }

    /// A new database without any schema (for migration tests).
    pub async fn empty(backend: TestBackend) -> Result<Self, TestDbError> {
        match backend {
            TestBackend::Postgres => Self::empty_postgres().await,
            TestBackend::Sqlite => {
                let dir =
                    tempfile::tempdir().map_err(|e| setup("create a temporary directory", e))?;
                let url = format!("sqlite://{}", dir.path().join("test.db").display());
                Ok(Self {
                    backend,
                    url,
                    cleanup: Cleanup::Sqlite(dir),
                })
            }
        }
    }

    async fn empty_postgres() -> Result<Self, TestDbError> {
        let admin_url = admin_url();
        let mut url =
            url::Url::parse(&admin_url).map_err(|_| TestDbError::BadUrl(admin_url.clone()))?;
        if !matches!(url.scheme(), "postgres" | "postgresql") {
            return Err(TestDbError::BadUrl(admin_url));
        }
        let admin = connect_admin(&admin_url).await?;
        let name = format!("ges_test_{:016x}", rand::random::<u64>());
        admin
            .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
            .await
            .map_err(|e| setup(format!("create database {name}"), e))?;
        // Best effort: the pool is only for this one statement.
        let _ = admin.close().await;
        url.set_path(&format!("/{name}"));
        Ok(Self {
            backend: TestBackend::Postgres,
            url: url.into(),
            cleanup: Cleanup::Postgres { admin_url, name },
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn backend(&self) -> TestBackend {
        self.backend
    }

    /// A store on this database with a fresh random key `test-key`.
    pub async fn store(&self) -> Result<Store, TestDbError> {
        let key = DataKey::generate("test-key").map_err(|e| setup("generate a key", e))?;
        self.store_with(Keyring::new(key)).await
    }

    pub async fn store_with(&self, keyring: Keyring) -> Result<Store, TestDbError> {
        Store::connect(&self.url, keyring)
            .await
            .map_err(|e| setup(format!("connect to the test {} database", self.backend), e))
    }

    /// A plain connection, for inspecting rows as they are stored.
    pub async fn raw(&self) -> Result<DatabaseConnection, TestDbError> {
        let mut opts = ConnectOptions::new(self.url.clone());
        opts.max_connections(2).sqlx_logging(false);
        Database::connect(opts)
            .await
            .map_err(|e| setup("open a raw connection", e))
    }
}

async fn connect_admin(admin_url: &str) -> Result<DatabaseConnection, TestDbError> {
    let mut opts = ConnectOptions::new(admin_url.to_owned());
    opts.max_connections(1)
        .connect_timeout(std::time::Duration::from_secs(5))
        .acquire_timeout(std::time::Duration::from_secs(5))
        .sqlx_logging(false);
    Database::connect(opts)
        .await
        .map_err(|source| TestDbError::Unreachable {
            url: crate::redact_url(admin_url),
            source,
        })
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Cleanup::Postgres { admin_url, name } = &self.cleanup else {
            return;
        };
        let (admin_url, name) = (admin_url.clone(), name.clone());
        // Drop runs inside the test's runtime, which cannot be blocked on; a thread with its
        // own small runtime does the async work, and joining it keeps the drop synchronous
        // so no database outlives its test.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            rt.block_on(async {
                let admin = connect_admin(&admin_url).await.map_err(|e| e.to_string())?;
                let result = admin
                    .execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                    .await
                    .map_err(|e| e.to_string());
                let _ = admin.close().await;
                result.map(|_| ())
            })
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("could not drop test database {}: {e}", self.url_name()),
            Err(_) => eprintln!("dropping test database {} panicked", self.url_name()),
        }
    }
}

impl TestDb {
    fn url_name(&self) -> &str {
        self.url.rsplit('/').next().unwrap_or_default()
    }
}

/// A random base64 key, for tests that build their own keyring.
pub fn random_key_base64() -> String {
    DataKey::generate("k")
        .map(|k| k.to_base64().expose_secret().to_owned())
        .unwrap_or_default()
}
