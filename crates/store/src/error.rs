//! The one place driver errors become [`StoreError`]s, as the store ports' contract says:
//! a unique violation is `Conflict`, a connection failure or timeout is `Unavailable`, data
//! that does not parse is `Corrupt`, a missing row is `NotFound`, anything else `Unknown`.
//! Every case keeps the driver error as its cause.

use std::ops::Deref;

use ports::StoreError;
use sea_orm::{DbErr, RuntimeErr, SqlErr, sqlx};

/// Translate a driver error met while doing `what` (a short phrase: "insert link").
pub(crate) fn db_err(what: &str, err: DbErr) -> StoreError {
    if let Some(sql) = err.sql_err() {
        return match sql {
            SqlErr::UniqueConstraintViolation(message) => StoreError::Conflict {
                message: format!("{what}: {message}"),
            },
            // Only tenant references are foreign keys: the caller named a tenant that is not
            // stored.
            SqlErr::ForeignKeyConstraintViolation(_) => StoreError::NotFound {
                what: format!("the tenant referenced by {what}"),
            },
            _ => unknown(what, err),
        };
    }
    match &err {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => unavailable(what, err),
        DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => {
            match e.deref() {
                sqlx::Error::Io(_)
                | sqlx::Error::Tls(_)
                | sqlx::Error::Protocol(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::WorkerCrashed => unavailable(what, err),
                sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => corrupt(what, &err),
                sqlx::Error::Database(db) if is_transient_code(db.code().as_deref()) => {
                    unavailable(what, err)
                }
                _ => unknown(what, err),
            }
        }
        DbErr::Type(_) | DbErr::Json(_) | DbErr::TryIntoErr { .. } => corrupt(what, &err),
        DbErr::RecordNotFound(_) => StoreError::NotFound {
            what: what.to_owned(),
        },
        _ => unknown(what, err),
    }
}

/// Database error codes that mean "try again": PostgreSQL connection exceptions (class 08),
/// shutdown and cancellation (57P01–57P03, 57014 statement timeout), lock timeouts (55P03),
/// serialization failures and deadlocks (40001, 40P01), too many connections (53300);
/// SQLite busy and locked (5, 6 and their extended codes, which end in the same low byte).
fn is_transient_code(code: Option<&str>) -> bool {
    let Some(code) = code else { return false };
    if code.starts_with("08") {
        return true;
    }
    if matches!(
        code,
        "57P01" | "57P02" | "57P03" | "57014" | "55P03" | "40001" | "40P01" | "53300"
    ) {
        return true;
    }
    code.parse::<u32>().is_ok_and(|n| matches!(n & 0xff, 5 | 6))
}

pub(crate) fn unavailable(what: &str, err: DbErr) -> StoreError {
    StoreError::Unavailable {
        message: what.to_owned(),
        source: Some(Box::new(err)),
    }
}

fn corrupt(what: &str, err: &DbErr) -> StoreError {
    StoreError::Corrupt {
        message: format!("{what}: {err}"),
    }
}

fn unknown(what: &str, err: DbErr) -> StoreError {
    StoreError::Unknown(anyhow::Error::new(err).context(what.to_owned()))
}

/// A stored value that does not parse into its domain type.
pub(crate) fn bad_value(table: &str, column: &str, detail: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        message: format!("{table}.{column}: {detail}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_codes() {
        for code in ["08006", "57014", "55P03", "40P01", "5", "517", "6", "262"] {
            assert!(is_transient_code(Some(code)), "{code}");
        }
        for code in ["23505", "42P01", "19", "2067", "1"] {
            assert!(!is_transient_code(Some(code)), "{code}");
        }
        assert!(!is_transient_code(None));
    }

    #[test]
    fn pool_exhaustion_is_unavailable_with_its_cause() {
        let err = db_err(
            "read tenant",
            DbErr::ConnectionAcquire(sea_orm::ConnAcquireErr::Timeout),
        );
        assert!(matches!(err, StoreError::Unavailable { .. }));
        assert!(std::error::Error::source(&err).is_some());
    }
}
