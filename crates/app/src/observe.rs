//! What a worker observes for the console: each GHL budget it uses (the last answer's rate
//! headers) and how long each tenant's messages waited in the queue before it took them.
//! Kept in memory and written to the store every `every` (one statement per kind), so the
//! console, in whichever process it runs, sees every replica's view.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use domain::TenantId;
use ports::Clock;
use ports::queue::Envelope;
use ports::store::{Observations, QueueObservation, RateObservation};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Default, Clone, Copy)]
struct Waits {
    taken: u64,
    longest_ms: u64,
    last_ms: u64,
}

/// A worker's observations between two reports.
pub struct Observer {
    store: Arc<dyn Observations>,
    budgets: Arc<ghl::RateBudgets>,
    clock: Arc<dyn Clock>,
    every: Duration,
    waits: Mutex<HashMap<TenantId, Waits>>,
    /// Requests granted per budget at the last report: a budget nobody used since is not
    /// written again.
    reported: Mutex<HashMap<String, (u64, u64)>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Observer {
    pub fn new(
        store: Arc<dyn Observations>,
        budgets: Arc<ghl::RateBudgets>,
        clock: Arc<dyn Clock>,
        every: Duration,
    ) -> Self {
        Self {
            store,
            budgets,
            clock,
            every,
            waits: Mutex::default(),
            reported: Mutex::default(),
        }
    }

    /// A message was taken from the queue now. Retries are left out: they wait on purpose.
    pub fn took(&self, env: &Envelope) {
        if env.attempt > 0 {
            return;
        }
        let waited = (self.clock.now() - env.created_at)
            .num_milliseconds()
            .max(0)
            .unsigned_abs();
        let mut waits = lock(&self.waits);
        let w = waits.entry(env.tenant.clone()).or_default();
        w.taken += 1;
        w.longest_ms = w.longest_ms.max(waited);
        w.last_ms = waited;
    }

    /// Write what was observed since the last report.
    pub async fn report(&self) -> Result<(), ports::StoreError> {
        let now = self.clock.now();
        let waits: Vec<QueueObservation> = lock(&self.waits)
            .drain()
            .map(|(tenant, w)| QueueObservation {
                tenant,
                taken: w.taken,
                longest_wait_ms: w.longest_ms,
                last_wait_ms: w.last_ms,
                at: now,
            })
            .collect();
        let rates: Vec<RateObservation> = {
            let mut reported = lock(&self.reported);
            self.budgets
                .snapshot()
                .into_iter()
                .filter(|b| {
                    let seen = (b.granted, b.throttled);
                    reported.insert(b.resource.clone(), seen) != Some(seen)
                })
                .map(|b| RateObservation {
                    resource: b.resource,
                    max: b.max,
                    interval_ms: u64::try_from(b.interval.as_millis()).unwrap_or(u64::MAX),
                    remaining: b.remaining,
                    daily_limit: b.daily_limit,
                    daily_remaining: b.daily_remaining,
                    throttled: b.throttled,
                    at: now,
                })
                .collect()
        };
        self.store.note_queue(&waits).await?;
        self.store.note_rates(&rates).await
    }

    /// Report every `every` until `shutdown`, and once more then.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(self.every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => {}
            }
            if let Err(e) = self.report().await {
                tracing::warn!(error = %e, "could not record the worker's observations");
                metrics::counter!("ges_observation_failures_total").increment(1);
            }
        }
        if let Err(e) = self.report().await {
            tracing::warn!(error = %e, "could not record the worker's last observations");
        }
    }
}
