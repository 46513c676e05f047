//! `RateWindow`: the GHL rate window the replicas share (issue 17), one row per slot of an
//! (app, resource) window in `rate_window`. A take is one statement on PostgreSQL (the slot,
//! or how long until one frees) and at most two on SQLite; a release is one. Time is the
//! database's (milliseconds since the epoch), so the replicas' clocks need not agree.
//!
//! PostgreSQL: the free slot is picked `FOR UPDATE SKIP LOCKED`, so two replicas taking at
//! once take two different slots, and a row another replica changed since the statement's
//! snapshot is checked again after the lock (read committed). SQLite serialises writers.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use sea_orm::{ConnectionTrait, DbBackend, QueryResult, Statement, Value};

use ports::StoreError;
use ports::store::{RateWindow, Taken, WindowKey, WindowSlot};

use crate::Store;
use crate::error::{bad_value, db_err};

const TABLE: &str = "rate_window";

/// The database's clock in milliseconds since the epoch.
const PG_NOW: &str = "(extract(epoch FROM clock_timestamp()) * 1000)::bigint";
/// SQLite's `'now'` is fixed for the whole statement.
const SQLITE_NOW: &str = "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)";

/// The windows whose slots this process created, with their size.
#[derive(Default)]
pub(crate) struct Ensured(Mutex<HashSet<(WindowKey, u32)>>);

impl Ensured {
    fn has(&self, key: &WindowKey, max: u32) -> bool {
        self.lock().contains(&(key.clone(), max))
    }

    fn mark(&self, key: &WindowKey, max: u32, present: bool) {
        let mut set = self.lock();
        if present {
            set.insert((key.clone(), max));
        } else {
            set.remove(&(key.clone(), max));
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<(WindowKey, u32)>> {
        // Each operation is one insert, lookup or removal: a panic cannot leave it half done.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn values(key: &WindowKey, rest: impl IntoIterator<Item = Value>) -> Vec<Value> {
    let mut v: Vec<Value> = vec![key.app.clone().into(), key.resource.clone().into()];
    v.extend(rest);
    v
}

impl Store {
    fn window_now(&self) -> &'static str {
        match self.backend() {
            DbBackend::Postgres => PG_NOW,
            _ => SQLITE_NOW,
        }
    }

    /// Create the window's `max` slots, free at once, unless they exist.
    async fn ensure_window(&self, key: &WindowKey, max: u32) -> Result<(), StoreError> {
        let sql = match self.backend() {
            DbBackend::Postgres => {
                "INSERT INTO rate_window (app, resource, slot, free_at, holder) \
                 SELECT $1, $2, g, 0, '' FROM generate_series(0, $3 - 1) AS g \
                 ON CONFLICT DO NOTHING"
            }
            // `WHERE true` keeps SQLite from reading `ON CONFLICT` as a join constraint.
            _ => {
                "WITH RECURSIVE g(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM g WHERE n + 1 < ?3) \
                 INSERT INTO rate_window (app, resource, slot, free_at, holder) \
                 SELECT ?1, ?2, n, 0, '' FROM g WHERE true ON CONFLICT DO NOTHING"
            }
        };
        self.db()
            .execute_raw(Statement::from_sql_and_values(
                self.backend(),
                sql,
                values(key, [i64::from(max).into()]),
            ))
            .await
            .map_err(|e| db_err("create the slots of a rate window", e))?;
        self.ensured_windows().mark(key, max, true);
        Ok(())
    }

    /// One attempt: the slot taken, or the wait until `leave_free + 1` slots are free
    /// (`None` when the window has no slots yet).
    async fn try_take_slot(
        &self,
        key: &WindowKey,
        max: u32,
        leave_free: u32,
        hold: Duration,
        holder: &str,
    ) -> Result<(Option<u32>, Option<i64>), StoreError> {
        let args = values(
            key,
            [
                i64::from(max).into(),
                i64::from(leave_free).into(),
                millis(hold).into(),
                holder.to_owned().into(),
            ],
        );
        let now = self.window_now();
        let row = match self.backend() {
            DbBackend::Postgres => {
                // The wait is read from the snapshot before the update: it matters only when
                // nothing was taken. The clock and the count are uncorrelated subqueries, each
                // computed once (joined in, the planner counted the free slots once per row).
                let sql = format!(
                    "WITH clock AS MATERIALIZED (SELECT {now} AS ms), \
                     pick AS ( \
                       SELECT w.slot FROM rate_window w \
                       WHERE w.app = $1 AND w.resource = $2 AND w.slot < $3 \
                         AND w.free_at <= (SELECT ms FROM clock) \
                         AND (SELECT count(*) FROM rate_window f \
                              WHERE f.app = $1 AND f.resource = $2 AND f.slot < $3 \
                                AND f.free_at <= (SELECT ms FROM clock)) > $4 \
                       ORDER BY w.free_at, w.slot LIMIT 1 \
                       FOR UPDATE OF w SKIP LOCKED), \
                     taken AS ( \
                       UPDATE rate_window SET free_at = (SELECT ms FROM clock) + $5, holder = $6 \
                       WHERE app = $1 AND resource = $2 AND slot = (SELECT slot FROM pick) \
                       RETURNING slot) \
                     SELECT (SELECT slot::bigint FROM taken) AS slot, \
                            (SELECT free_at FROM rate_window \
                             WHERE app = $1 AND resource = $2 AND slot < $3 \
                             ORDER BY free_at OFFSET $4 LIMIT 1) - (SELECT ms FROM clock) AS wait"
                );
                self.query_window(sql, args).await?
            }
            _ => {
                let sql = format!(
                    "UPDATE rate_window SET free_at = {now} + ?5, holder = ?6 \
                     WHERE app = ?1 AND resource = ?2 AND slot = ( \
                       SELECT slot FROM rate_window \
                       WHERE app = ?1 AND resource = ?2 AND slot < ?3 AND free_at <= {now} \
                       ORDER BY free_at, slot LIMIT 1) \
                     AND (SELECT count(*) FROM rate_window \
                          WHERE app = ?1 AND resource = ?2 AND slot < ?3 AND free_at <= {now}) > ?4 \
                     RETURNING slot, NULL AS wait"
                );
                match self.query_window(sql, args.clone()).await? {
                    Some(row) => Some(row),
                    None => {
                        let sql = format!(
                            "SELECT NULL AS slot, (SELECT free_at FROM rate_window \
                             WHERE app = ?1 AND resource = ?2 AND slot < ?3 \
                             ORDER BY free_at LIMIT 1 OFFSET ?4) - {now} AS wait"
                        );
                        self.query_window(sql, args).await?
                    }
                }
            }
        };
        let Some(row) = row else {
            return Ok((None, None));
        };
        let slot: Option<i64> = row
            .try_get("", "slot")
            .map_err(|e| bad_value(TABLE, "slot", e))?;
        let wait: Option<i64> = row
            .try_get("", "wait")
            .map_err(|e| bad_value(TABLE, "free_at", e))?;
        let slot = slot
            .map(|s| u32::try_from(s).map_err(|e| bad_value(TABLE, "slot", e)))
            .transpose()?;
        Ok((slot, wait))
    }

    async fn query_window(
        &self,
        sql: String,
        args: Vec<Value>,
    ) -> Result<Option<QueryResult>, StoreError> {
        self.db()
            .query_one_raw(Statement::from_sql_and_values(self.backend(), sql, args))
            .await
            .map_err(|e| db_err("take a slot of a rate window", e))
    }
}

#[async_trait]
impl RateWindow for Store {
    async fn take(
        &self,
        key: &WindowKey,
        max: u32,
        leave_free: u32,
        hold: Duration,
        holder: &str,
    ) -> Result<Taken, StoreError> {
        let max = max.max(1);
        if !self.ensured_windows().has(key, max) {
            self.ensure_window(key, max).await?;
        }
        let (slot, wait) = self
            .try_take_slot(key, max, leave_free, hold, holder)
            .await?;
        if let Some(slot) = slot {
            return Ok(Taken::Slot(WindowSlot {
                key: key.clone(),
                slot,
                holder: holder.to_owned(),
            }));
        }
        let Some(wait) = wait else {
            // No slots (a window cleared under us, or fewer slots than `leave_free`): create
            // them again; the next take finds them.
            self.ensured_windows().mark(key, max, false);
            self.ensure_window(key, max).await?;
            return Ok(Taken::Full {
                next_free_in: Duration::ZERO,
            });
        };
        Ok(Taken::Full {
            next_free_in: Duration::from_millis(u64::try_from(wait).unwrap_or(0)),
        })
    }

    async fn release(&self, slot: &WindowSlot, interval: Duration) -> Result<(), StoreError> {
        let now = self.window_now();
        let sql = match self.backend() {
            DbBackend::Postgres => format!(
                "UPDATE rate_window SET free_at = {now} + $3 \
                 WHERE app = $1 AND resource = $2 AND slot = $4 AND holder = $5"
            ),
            _ => format!(
                "UPDATE rate_window SET free_at = {now} + ?3 \
                 WHERE app = ?1 AND resource = ?2 AND slot = ?4 AND holder = ?5"
            ),
        };
        self.db()
            .execute_raw(Statement::from_sql_and_values(
                self.backend(),
                sql,
                values(
                    &slot.key,
                    [
                        millis(interval).into(),
                        i64::from(slot.slot).into(),
                        slot.holder.clone().into(),
                    ],
                ),
            ))
            .await
            .map_err(|e| db_err("release a slot of a rate window", e))?;
        Ok(())
    }

    async fn release_many(
        &self,
        slots: &[WindowSlot],
        interval: Duration,
    ) -> Result<(), StoreError> {
        let now = self.window_now();
        let mark = match self.backend() {
            DbBackend::Postgres => "$",
            _ => "?",
        };
        for chunk in slots.chunks(RELEASE_CHUNK) {
            // Numbered placeholders: the interval first, then four per slot.
            let mut args: Vec<Value> = vec![millis(interval).into()];
            let mut rows = Vec::with_capacity(chunk.len());
            for slot in chunk {
                let n = args.len();
                rows.push(format!(
                    "({mark}{}, {mark}{}, {mark}{}, {mark}{})",
                    n + 1,
                    n + 2,
                    n + 3,
                    n + 4
                ));
                args.extend(values(
                    &slot.key,
                    [i64::from(slot.slot).into(), slot.holder.clone().into()],
                ));
            }
            let sql = format!(
                "UPDATE rate_window SET free_at = {now} + {mark}1 \
                 WHERE (app, resource, slot, holder) IN ({})",
                rows.join(", ")
            );
            self.db()
                .execute_raw(Statement::from_sql_and_values(self.backend(), sql, args))
                .await
                .map_err(|e| db_err("release slots of a rate window", e))?;
        }
        Ok(())
    }
}

/// How many slots one statement of `release_many` frees.
const RELEASE_CHUNK: usize = 200;
