//! Per-contact serialisation (DESIGN.md §4) and the in-process lock map SQLite relies on.
//!
//! PostgreSQL: a transaction-scoped advisory lock (`pg_advisory_xact_lock`) keyed by a
//! 64-bit SHA-256 prefix of (tenant, key), taken on a pooled connection held by the guard.
//! Ending the transaction releases it: `release()` rolls back; a guard dropped without
//! release (an error, a panic, a cancelled task) drops the transaction, which queues the
//! rollback that sqlx flushes when the connection goes back to the pool — or, if the
//! connection was mid-query, closes it, which ends the session and its locks. Waiting is
//! bounded twice: by the server (`lock_timeout`) and by the client (a timer over the whole
//! acquisition), so a waiter that gave up never acquires the lock later behind our back.
//!
//! SQLite: one process, so an async mutex per key in a map; entries are removed when nobody
//! holds or waits for them, so the map does not grow with every contact ever seen.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use sea_orm::{ConnectionTrait, DatabaseTransaction, DbBackend, TransactionTrait};
use sha2::{Digest, Sha256};
use tokio::sync::OwnedMutexGuard;

use domain::TenantId;
use ports::StoreError;
use ports::store::{ContactLocks, LockGuard};

use crate::Store;
use crate::error::db_err;

/// The advisory lock key of (tenant, key): the first 8 bytes of a SHA-256, stable across
/// processes, releases and Rust versions (unlike `DefaultHasher`).
pub(crate) fn advisory_key(namespace: &str, tenant: &str, key: &str) -> i64 {
    let mut h = Sha256::new();
    for part in [namespace, tenant, key] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    let digest = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(first)
}

/// Async mutexes by key, created on demand and forgotten when idle.
#[derive(Default)]
pub(crate) struct KeyedLocks {
    map: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl KeyedLocks {
    fn map(&self) -> MutexGuard<'_, HashMap<String, Arc<tokio::sync::Mutex<()>>>> {
        // A panic while holding this std mutex cannot leave the map inconsistent (every
        // operation is a single insert, get or remove), so poisoning is ignored.
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wait for the lock on `key`, at most `wait` when given.
    pub(crate) async fn lock(
        self: &Arc<Self>,
        key: String,
        wait: Option<Duration>,
    ) -> Option<KeyedGuard> {
        let mutex = self.map().entry(key.clone()).or_default().clone();
        let acquired = match wait {
            Some(wait) => tokio::time::timeout(wait, mutex.lock_owned()).await.ok(),
            None => Some(mutex.lock_owned().await),
        };
        match acquired {
            Some(guard) => Some(KeyedGuard {
                guard: Some(guard),
                key,
                locks: Arc::clone(self),
            }),
            None => {
                self.forget_if_idle(&key);
                None
            }
        }
    }

    fn forget_if_idle(&self, key: &str) {
        let mut map = self.map();
        // The map's own reference is the only one left: nobody holds or waits for it.
        if map.get(key).is_some_and(|m| Arc::strong_count(m) == 1) {
            map.remove(key);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.map().len()
    }
}

pub(crate) struct KeyedGuard {
    guard: Option<OwnedMutexGuard<()>>,
    key: String,
    locks: Arc<KeyedLocks>,
}

impl Drop for KeyedGuard {
    fn drop(&mut self) {
        // Unlock first so the idle check sees this guard's reference gone.
        drop(self.guard.take());
        self.locks.forget_if_idle(&self.key);
    }
}

struct LocalGuard(#[allow(dead_code)] KeyedGuard);

#[async_trait]
impl LockGuard for LocalGuard {
    async fn release(self: Box<Self>) {}
}

struct PgGuard {
    txn: Option<DatabaseTransaction>,
}

#[async_trait]
impl LockGuard for PgGuard {
    async fn release(mut self: Box<Self>) {
        if let Some(txn) = self.txn.take()
            && let Err(error) = txn.rollback().await
        {
            // The lock still ends with the session: sqlx closes a connection that failed.
            tracing::warn!(%error, "could not end the contact lock transaction cleanly");
        }
    }
}

fn timed_out(key: &str, wait: Duration) -> StoreError {
    StoreError::Unavailable {
        message: format!("timed out after {wait:?} waiting for the lock on {key:?}"),
        source: None,
    }
}

impl Store {
    async fn pg_contact_lock(
        &self,
        tenant: &TenantId,
        key: &str,
        wait: Duration,
    ) -> Result<Box<dyn LockGuard>, StoreError> {
        let started = Instant::now();
        let lock_key = advisory_key("ges-contact-lock-v1", tenant.as_str(), key);
        let txn = tokio::time::timeout(wait, self.db().begin())
            .await
            .map_err(|_| timed_out(key, wait))?
            .map_err(|e| db_err("begin a contact lock transaction", e))?;
        // BEGIN, and the ROLLBACK that releases the lock.
        self.count_statements("BEGIN/END", 2);
        let remaining = wait.saturating_sub(started.elapsed());
        if remaining.is_zero() {
            return Err(timed_out(key, wait));
        }
        // `0` would mean "wait forever".
        let millis = remaining.as_millis().clamp(1, i64::MAX as u128);
        // Both in one round trip (the simple query protocol takes several statements); both
        // values are integers formatted here, nothing from outside.
        let sql = format!(
            "SET LOCAL lock_timeout = '{millis}ms'; SELECT pg_advisory_xact_lock({lock_key})"
        );
        let acquire = txn.execute_unprepared(&sql);
        // Sent unprepared, which the metric callback does not see.
        self.count_statements("SELECT pg_advisory_xact_lock", 1);
        // The server gives up at `lock_timeout`; the margin covers the round trip.
        match tokio::time::timeout(remaining + Duration::from_millis(500), acquire).await {
            Err(_) => Err(timed_out(key, wait)),
            Ok(Err(e)) => match db_err("take the contact lock", e) {
                StoreError::Unavailable { source, .. } => Err(StoreError::Unavailable {
                    message: format!("timed out after {wait:?} waiting for the lock on {key:?}"),
                    source,
                }),
                other => Err(other),
            },
            Ok(Ok(_)) => Ok(Box::new(PgGuard { txn: Some(txn) })),
        }
    }
}

#[async_trait]
impl ContactLocks for Store {
    #[tracing::instrument(skip_all, fields(tenant = %tenant, key = %key))]
    async fn lock(
        &self,
        tenant: &TenantId,
        key: &str,
        wait: Duration,
    ) -> Result<Box<dyn LockGuard>, StoreError> {
        if self.backend() == DbBackend::Postgres {
            return self.pg_contact_lock(tenant, key, wait).await;
        }
        let map_key = format!("{tenant}\0{key}");
        match self.local().contacts.lock(map_key, Some(wait)).await {
            Some(guard) => Ok(Box::new(LocalGuard(guard))),
            None => Err(timed_out(key, wait)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advisory_keys_are_stable_and_separate_parts() {
        // Golden value: changing the derivation would let two releases running side by side
        // (a rolling deploy) lock different keys for the same contact.
        assert_eq!(
            advisory_key("ges-contact-lock-v1", "acme", "c1"),
            advisory_key("ges-contact-lock-v1", "acme", "c1")
        );
        assert_ne!(
            advisory_key("ges-contact-lock-v1", "acme", "c1"),
            advisory_key("ges-contact-lock-v1", "acme1", "c")
        );
        let mut h = Sha256::new();
        h.update(b"ges-contact-lock-v1\0acme\0c1\0");
        let d = h.finalize();
        let expected = i64::from_be_bytes(d[..8].try_into().unwrap());
        assert_eq!(advisory_key("ges-contact-lock-v1", "acme", "c1"), expected);
    }

    #[tokio::test]
    async fn idle_entries_are_forgotten() {
        let locks = Arc::new(KeyedLocks::default());
        let a = locks.lock("a".into(), None).await.unwrap();
        assert!(
            locks
                .lock("a".into(), Some(Duration::from_millis(20)))
                .await
                .is_none()
        );
        assert_eq!(locks.len(), 1);
        drop(a);
        assert_eq!(locks.len(), 0);
    }
}
