//! How the store connects: the backend is chosen by the URL's scheme, and each backend gets
//! the settings it needs to behave (SQLite: file created if missing, WAL, busy timeout,
//! foreign keys on).
//!
//! URL forms: `postgres://user:pass@host:5432/db` (or `postgresql://`), and `sqlite://path`,
//! `sqlite:path` or `sqlite::memory:`. A relative SQLite path is relative to the working
//! directory; its parent directories are created.

use std::time::Duration;

use anyhow::anyhow;
use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{ConnectOptions, Database, DatabaseConnection, DbBackend};

use ports::StoreError;

use crate::error::unavailable;

/// A pooled connection idle at least this long is pinged before use.
const IDLE_CHECK_AFTER: Duration = Duration::from_secs(30);

/// The most connections a SQLite pool opens, whatever `max_connections` says: SQLite runs one
/// writer at a time, and on SQLite no lock pins a connection (they are in-process), so more
/// connections only add busy-waits and page-cache misses. Measured (`bench calls`, 1,000
/// contacts): 2 and 4 connections alike; 40 cost 10-20% more CPU and 10 MiB more memory; 1
/// made the first sync 10-25% slower (docs/performance.md).
pub const SQLITE_POOL: u32 = 4;

/// Tuning knobs; the defaults suit the service.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Pool size. Default 16 on PostgreSQL, 4 on SQLite (and at most [`SQLITE_POOL`] there).
    /// Each held contact lock and each
    /// in-flight token refresh pins one PostgreSQL connection, so size this above the
    /// worker's concurrency.
    pub max_connections: Option<u32>,
    /// How long to wait for a pooled connection before `Unavailable`.
    pub acquire_timeout: Duration,
    /// How long to wait for the first connection.
    pub connect_timeout: Duration,
    /// SQLite: how long a writer waits for another writer before `Unavailable`.
    pub sqlite_busy_timeout: Duration,
    /// Log every statement through sqlx (noisy; off by default).
    pub log_statements: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            max_connections: None,
            acquire_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            sqlite_busy_timeout: Duration::from_secs(5),
            log_statements: false,
        }
    }
}

/// The scheme of a database URL, checked; never echoes the rest (it may hold a password).
pub(crate) fn backend_of(url: &str) -> Result<DbBackend, StoreError> {
    let scheme = url.split_once(':').map(|(s, _)| s).unwrap_or_default();
    match scheme {
        "postgres" | "postgresql" => Ok(DbBackend::Postgres),
        "sqlite" => Ok(DbBackend::Sqlite),
        other => Err(StoreError::Unknown(anyhow!(
            "database.url must start with postgres:// or sqlite:// (got scheme {other:?})"
        ))),
    }
}

/// The URL with any password replaced, for messages.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or_default();
            let masked = if userinfo.contains(':') { ":***" } else { "" };
            format!("{scheme}://{user}{masked}@{host}{path}")
        }
        None => url.to_owned(),
    }
}

fn sqlite_path(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or_default();
    (!path.is_empty() && path != ":memory:").then_some(path)
}

/// Open a pool for `url` with `options`.
pub(crate) async fn connect(
    url: &str,
    options: &StoreOptions,
) -> Result<(DatabaseConnection, DbBackend), StoreError> {
    let backend = backend_of(url)?;
    let mut opts = ConnectOptions::new(url.to_owned());
    opts.acquire_timeout(options.acquire_timeout)
        // A connection in use is known to work; one idle for a while (the database may have
        // restarted meanwhile) is checked before it is handed out. Checking every checkout
        // cost a round trip per statement.
        .test_before_acquire_if_idle_for(IDLE_CHECK_AFTER)
        .connect_timeout(options.connect_timeout)
        .sqlx_logging(options.log_statements);
    match backend {
        DbBackend::Sqlite => {
            let path = sqlite_path(url);
            // An in-memory database exists per connection: more than one would be several
            // databases.
            let max = if path.is_none() {
                1
            } else {
                options
                    .max_connections
                    .unwrap_or(SQLITE_POOL)
                    .min(SQLITE_POOL)
            };
            if let Some(parent) = path
                .map(std::path::Path::new)
                .and_then(std::path::Path::parent)
                .filter(|p| !p.as_os_str().is_empty())
            {
                std::fs::create_dir_all(parent).map_err(|e| {
                    StoreError::Unknown(anyhow::Error::new(e).context(format!(
                        "create the directory {} for the SQLite database",
                        parent.display()
                    )))
                })?;
            }
            let busy = options.sqlite_busy_timeout;
            opts.max_connections(max).map_sqlx_sqlite_opts(move |o| {
                o.create_if_missing(true)
                    // WAL lets readers run while one connection writes.
                    .journal_mode(SqliteJournalMode::Wal)
                    // NORMAL is durable across application crashes in WAL mode; only an OS
                    // crash can lose the last commits (sqlite.org/pragma.html#pragma_synchronous).
                    .synchronous(SqliteSynchronous::Normal)
                    .busy_timeout(busy)
                    .foreign_keys(true)
            });
        }
        _ => {
            opts.max_connections(options.max_connections.unwrap_or(16));
        }
    }
    let db = Database::connect(opts).await.map_err(|e| {
        unavailable(
            &format!("cannot connect to the database at {}", redact_url(url)),
            e,
        )
    })?;
    Ok((db, backend))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes_and_redaction() {
        assert_eq!(backend_of("postgres://x/y").unwrap(), DbBackend::Postgres);
        assert_eq!(backend_of("postgresql://x/y").unwrap(), DbBackend::Postgres);
        assert_eq!(backend_of("sqlite://a.db").unwrap(), DbBackend::Sqlite);
        assert_eq!(backend_of("sqlite::memory:").unwrap(), DbBackend::Sqlite);
        let err = backend_of("mysql://root:hunter2@h/db")
            .unwrap_err()
            .to_string();
        assert!(err.contains("mysql") && !err.contains("hunter2"), "{err}");
        assert_eq!(
            redact_url("postgres://ges:hunter2@db:5432/ges"),
            "postgres://ges:***@db:5432/ges"
        );
        assert_eq!(
            redact_url("postgres://postgres@127.0.0.1/x"),
            "postgres://postgres@127.0.0.1/x"
        );
        assert_eq!(
            sqlite_path("sqlite://data/ges.db?mode=rwc"),
            Some("data/ges.db")
        );
        assert_eq!(sqlite_path("sqlite::memory:"), None);
    }
}
