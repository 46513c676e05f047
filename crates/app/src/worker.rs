//! The worker: consume both lanes, hand each message to the engine, and settle it exactly
//! once — ack, retry through a delay tier, or dead-letter — from the error's classification.
//!
//! - Each lane has its own in-flight limit (a semaphore of `prefetch` slots), so a bulk
//!   backlog never takes the slots of real-time work.
//! - The bulk lane's slots are shared between tenants ([`crate::fair`]): it takes
//!   `LOOK_AHEAD × prefetch` more deliveries from the broker than it has slots, to look past
//!   one tenant's backlog, and hands a delivery of a tenant over its share back to the broker for a while (same
//!   attempt). Off with `queue.fair_bulk = false`.
//! - A message is acknowledged only after the engine returned, i.e. after the store writes of
//!   its handling committed.
//! - Retries re-publish the message with `attempt + 1` to the delay tier of that attempt
//!   (`queue.retry_delays`, the last tier repeating; a `Retry-After` hint longer than the tier
//!   picks a longer one); past `queue.max_attempts` the message is dead-lettered.
//! - Dead letters carry the whole error chain and are mirrored into the store's dead letters
//!   (for `dlq list|show|replay`).
//! - Shutdown (STYLE #7): on cancellation, stop consuming, let in-flight messages finish within
//!   the drain timeout, give back what was received but not started, close the broker.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use metrics::{counter, histogram};
use ports::queue::Envelope;
use ports::store::{DeadLetterStore, NewDeadLetter};
use ports::{Classify, Disposition};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use engine::Engine;

use crate::fair::{Admission, Shares};
use crate::queue::{Broker, Delivery};

/// With shared bulk slots, how many times its slots the bulk lane takes from the broker
/// beyond them: half of that a tenant may hold waiting for a slot (enough for a second of
/// work at a compressed GHL pace), half stays free to see other tenants' deliveries.
const LOOK_AHEAD: u16 = 3;

/// The retry schedule, as data (STYLE #8).
#[derive(Debug, Clone)]
pub struct RetrySchedule {
    pub delays: Vec<Duration>,
    pub max_attempts: u32,
}

impl RetrySchedule {
    /// The delay before attempt `next_attempt` (1 for the first retry), at least `hint`.
    pub fn delay(&self, next_attempt: u32, hint: Option<Duration>) -> Duration {
        let idx =
            (next_attempt.saturating_sub(1) as usize).min(self.delays.len().saturating_sub(1));
        let tier = self
            .delays
            .get(idx)
            .copied()
            .unwrap_or(Duration::from_secs(5));
        match hint {
            Some(h) if h > tier => self
                .delays
                .iter()
                .copied()
                .find(|d| *d >= h)
                .unwrap_or_else(|| self.delays.last().copied().unwrap_or(tier)),
            _ => tier,
        }
    }
}

/// Live counts of one worker, for the demo's report and for tests that wait for quiet.
#[derive(Debug, Default)]
pub struct WorkerStats {
    pub in_flight: AtomicU64,
    pub done: AtomicU64,
    pub skipped: AtomicU64,
    pub retried: AtomicU64,
    pub dead_lettered: AtomicU64,
    pub unsettled: AtomicU64,
    /// Bulk deliveries handed back to come again later (a tenant over its share); not
    /// settled: the message comes back.
    pub deferred: AtomicU64,
}

impl WorkerStats {
    fn count(&self, outcome: Outcome) {
        let c = match outcome {
            Outcome::Done => &self.done,
            Outcome::Skipped => &self.skipped,
            Outcome::Retried => &self.retried,
            Outcome::DeadLettered => &self.dead_lettered,
            Outcome::Unsettled => &self.unsettled,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub fn settled(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
            + self.skipped.load(Ordering::Relaxed)
            + self.retried.load(Ordering::Relaxed)
            + self.dead_lettered.load(Ordering::Relaxed)
            + self.unsettled.load(Ordering::Relaxed)
    }
}

/// What the worker needs.
pub struct Worker {
    pub engine: Arc<Engine>,
    pub broker: Arc<dyn Broker>,
    pub dead_letters: Arc<dyn DeadLetterStore>,
    pub retry: RetrySchedule,
    pub prefetch: u16,
    /// Share the bulk lane's slots between tenants ([`crate::fair`]).
    pub fair_bulk: bool,
    pub consumer_tag: String,
    pub drain_timeout: Duration,
    pub stats: Arc<WorkerStats>,
    /// Records queue waits and GHL budgets for the console (reported while running).
    pub observer: Option<Arc<crate::observe::Observer>>,
}

/// How one message was settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Done,
    Skipped,
    Retried,
    DeadLettered,
    /// Settling failed (the broker went away); the broker will redeliver it.
    Unsettled,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Self::Done => "done",
            Self::Skipped => "skipped",
            Self::Retried => "retried",
            Self::DeadLettered => "dead_lettered",
            Self::Unsettled => "unsettled",
        }
    }
}

impl Worker {
    /// Consume until `shutdown` is cancelled, then drain. Returns after the broker is closed.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let bulk_prefetch = if self.fair_bulk {
            self.prefetch.saturating_mul(LOOK_AHEAD + 1)
        } else {
            self.prefetch
        };
        let consumers = self
            .broker
            .consume_lanes(&self.consumer_tag, self.prefetch, bulk_prefetch)
            .await
            .map_err(|e| anyhow::anyhow!(e).context("cannot start consuming"))?;
        tracing::info!(
            consumer_tag = %self.consumer_tag,
            prefetch = self.prefetch,
            bulk_prefetch,
            fair_bulk = self.fair_bulk,
            "worker consuming"
        );
        let reporting = self
            .observer
            .clone()
            .map(|o| tokio::spawn(o.run(shutdown.clone())));
        let me = Arc::new(self);
        let mut lanes = JoinSet::new();
        lanes.spawn(me.clone().lane(consumers.realtime, shutdown.clone()));
        if me.fair_bulk {
            let slots = usize::from(me.prefetch.max(1));
            let shares = Shares::new(slots, slots * usize::from(LOOK_AHEAD));
            lanes.spawn(
                me.clone()
                    .shared_lane(consumers.bulk, shares, shutdown.clone()),
            );
        } else {
            lanes.spawn(me.clone().lane(consumers.bulk, shutdown.clone()));
        }
        while let Some(r) = lanes.join_next().await {
            if let Err(e) = r {
                tracing::error!(error = %e, "a worker lane panicked");
            }
        }
        if let Some(r) = reporting
            && let Err(e) = r.await
        {
            tracing::error!(error = %e, "the worker's observer panicked");
        }
        me.broker.close().await;
        tracing::info!("worker stopped");
        Ok(())
    }

    async fn lane(self: Arc<Self>, mut rx: mpsc::Receiver<Delivery>, shutdown: CancellationToken) {
        let slots = Arc::new(Semaphore::new(usize::from(self.prefetch.max(1))));
        let mut in_flight = JoinSet::new();
        loop {
            let permit = tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                p = slots.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => break,
                },
            };
            let delivery = tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                d = rx.recv() => match d {
                    Some(d) => d,
                    None => break,
                },
            };
            let me = self.clone();
            in_flight.spawn(async move {
                let outcome = me.settle(&delivery).await;
                drop(permit);
                outcome
            });
            // Reap finished tasks so the set does not grow.
            while in_flight.try_join_next().is_some() {}
        }
        self.stop(rx, in_flight).await;
    }

    /// A lane whose slots are shared between tenants: take a delivery, then admit it (it runs
    /// once it has a slot) or hand it back for a while.
    async fn shared_lane(
        self: Arc<Self>,
        mut rx: mpsc::Receiver<Delivery>,
        shares: Arc<Shares>,
        shutdown: CancellationToken,
    ) {
        let slots = Arc::new(Semaphore::new(usize::from(self.prefetch.max(1))));
        let mut in_flight = JoinSet::new();
        loop {
            let delivery = tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                d = rx.recv() => match d {
                    Some(d) => d,
                    None => break,
                },
            };
            // A body that is no envelope has no tenant: it runs (to be dead-lettered).
            let admission = match &delivery.envelope {
                Ok(env) => Some(shares.admit(&env.tenant, &env.id, Instant::now())),
                Err(_) => None,
            };
            let me = self.clone();
            let slots = slots.clone();
            let shutdown = shutdown.clone();
            in_flight.spawn(async move {
                let mut ticket = match admission {
                    Some(Admission::Defer(delay)) => return me.defer(&delivery, delay).await,
                    Some(Admission::Run(ticket)) => Some(ticket),
                    None => None,
                };
                let permit = tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => None,
                    p = slots.acquire_owned() => p.ok(),
                };
                let Some(permit) = permit else {
                    // Shutting down before it started: it goes back to the broker.
                    me.give_back(&delivery).await;
                    return;
                };
                if let Some(t) = ticket.as_mut() {
                    t.start();
                }
                me.settle(&delivery).await;
                drop(permit);
                drop(ticket);
            });
            while in_flight.try_join_next().is_some() {}
        }
        self.stop(rx, in_flight).await;
    }

    /// A lane stops: no more deliveries, those received but not started go back to the
    /// broker, and those running finish (within the drain timeout).
    async fn stop<T: 'static>(&self, mut rx: mpsc::Receiver<Delivery>, in_flight: JoinSet<T>) {
        self.broker.stop_consuming().await;
        rx.close();
        while let Ok(d) = rx.try_recv() {
            self.give_back(&d).await;
        }
        self.drain(in_flight).await;
    }

    /// Hand an unstarted delivery back to the broker; if that fails, the broker redelivers it
    /// once the channel closes.
    async fn give_back(&self, delivery: &Delivery) {
        if let Err(e) = self.broker.requeue(delivery).await {
            tracing::warn!(error = %e, "could not give back an unstarted delivery; the broker will redeliver it");
        }
    }

    /// Hand a delivery back to come again after `delay` (its tenant is over its share).
    async fn defer(&self, d: &Delivery, delay: Duration) {
        let Ok(env) = &d.envelope else { return };
        match self.broker.defer(d, env, delay).await {
            Ok(()) => {
                self.stats.deferred.fetch_add(1, Ordering::Relaxed);
                counter!("ges_deferred_total", "kind" => env.kind(), "tenant" => env.tenant.to_string())
                    .increment(1);
                tracing::debug!(message_id = %env.id, tenant = %env.tenant, ?delay, "over its tenant's share of the bulk lane; handed back");
            }
            Err(e) => {
                self.stats.unsettled.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, message_id = %env.id, "could not hand a delivery back; the broker will redeliver it");
            }
        }
    }

    /// Let in-flight work finish within the drain timeout.
    async fn drain<T: 'static>(&self, mut in_flight: JoinSet<T>) {
        let deadline = tokio::time::sleep(self.drain_timeout);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                _ = &mut deadline => {
                    tracing::warn!(left = in_flight.len(), "drain timeout: abandoning in-flight messages (they will be redelivered)");
                    in_flight.abort_all();
                    break;
                }
                next = in_flight.join_next() => if next.is_none() { break },
            }
        }
    }

    /// Handle one delivery and settle it.
    pub async fn settle(&self, d: &Delivery) -> Outcome {
        self.stats.in_flight.fetch_add(1, Ordering::SeqCst);
        let outcome = self.settle_inner(d).await;
        self.stats.count(outcome);
        self.stats.in_flight.fetch_sub(1, Ordering::SeqCst);
        outcome
    }

    async fn settle_inner(&self, d: &Delivery) -> Outcome {
        let started = Instant::now();
        let env = match &d.envelope {
            Ok(env) => env,
            Err(reason) => {
                let chain = vec![format!("message body is not an envelope: {reason}")];
                return self.dead_letter(d, None, "unparsable", &chain).await;
            }
        };
        let kind = env.kind();
        if let Some(o) = &self.observer {
            o.took(env);
        }
        let span = tracing::info_span!(
            "message",
            otel.name = %format!("process {kind}"),
            otel.kind = "consumer",
            message_id = %env.id,
            kind,
            tenant = %env.tenant,
            attempt = env.attempt,
            lane = d.lane.as_str(),
        );
        crate::telemetry::adopt(&span, &d.trace_context);
        let tenant = env.tenant.to_string();
        let result = {
            use tracing::Instrument;
            self.engine.handle(env).instrument(span.clone()).await
        };
        histogram!("ges_message_seconds", "kind" => kind).record(started.elapsed().as_secs_f64());
        let outcome = match result {
            Ok(_) => self.ack(d, Outcome::Done).await,
            Err(e) => {
                let chain = e.chain();
                let now = chrono::Utc::now();
                let disposition = match e.disposition() {
                    // A claim that has turned stale is ours to take over: past it, a wait is
                    // an ordinary retry.
                    Disposition::Wait { until } if until <= now => {
                        Disposition::Retry { after: None }
                    }
                    other => other,
                };
                match disposition {
                    Disposition::Skip => {
                        tracing::warn!(parent: &span, error = %chain.join(": "), "skipped");
                        self.ack(d, Outcome::Skipped).await
                    }
                    Disposition::DeadLetter => {
                        tracing::error!(parent: &span, error = %chain.join(": "), "dead-lettered");
                        self.dead_letter(d, Some(env), kind, &chain).await
                    }
                    Disposition::Wait { until } => {
                        // Not a failure of this message: it looks again when the holder's
                        // claim turns stale (or sooner), its attempts untouched.
                        let left = (until - now).to_std().unwrap_or_default();
                        let delay = self.retry.delay(env.attempt.max(1), Some(left));
                        tracing::info!(parent: &span, reason = %chain.join(": "), ?delay, "waiting for another holder's claim");
                        self.again(d, env, delay, "ges_waits_total", kind, &tenant)
                            .await
                    }
                    Disposition::Retry { after } => {
                        let next_attempt = env.attempt + 1;
                        if next_attempt >= self.retry.max_attempts {
                            let mut chain = chain;
                            chain.insert(0, ports::failure::retries_exhausted(next_attempt));
                            tracing::error!(parent: &span, error = %chain.join(": "), "retries exhausted");
                            self.dead_letter(d, Some(env), kind, &chain).await
                        } else {
                            let delay = self.retry.delay(next_attempt, after);
                            tracing::warn!(parent: &span, error = %chain.join(": "), ?delay, "will retry");
                            let next = Envelope {
                                attempt: next_attempt,
                                ..env.clone()
                            };
                            self.again(d, &next, delay, "ges_retries_total", kind, &tenant)
                                .await
                        }
                    }
                }
            }
        };
        counter!("ges_messages_total", "kind" => kind, "outcome" => outcome.as_str(), "tenant" => tenant)
            .increment(1);
        outcome
    }

    async fn ack(&self, d: &Delivery, outcome: Outcome) -> Outcome {
        match self.broker.ack(d).await {
            Ok(()) => outcome,
            Err(e) => {
                tracing::warn!(error = %e, "ack failed; the broker will redeliver (handling is idempotent)");
                Outcome::Unsettled
            }
        }
    }
    /// Send `env` round again after `delay` (through the delay tiers), counted in `series`;
    /// if that cannot be scheduled, the broker redelivers the message itself.
    async fn again(
        &self,
        d: &Delivery,
        env: &Envelope,
        delay: Duration,
        series: &'static str,
        kind: &'static str,
        tenant: &str,
    ) -> Outcome {
        match self.broker.retry(d, env, delay).await {
            Ok(()) => {
                counter!(series, "kind" => kind, "tenant" => tenant.to_owned()).increment(1);
                Outcome::Retried
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not send the message round again; the broker will redeliver");
                Outcome::Unsettled
            }
        }
    }

    async fn dead_letter(
        &self,
        d: &Delivery,
        env: Option<&Envelope>,
        kind: &'static str,
        chain: &[String],
    ) -> Outcome {
        let letter = NewDeadLetter {
            tenant: env.map(|e| e.tenant.clone()),
            message_id: env.map(|e| e.id.clone()).unwrap_or_default(),
            kind: kind.to_owned(),
            envelope: storable_body(&d.body),
            error_chain: chain.to_vec(),
            attempts: env.map(|e| e.attempt + 1).unwrap_or(1),
        };
        // The store's copy is what `dlq replay` reads; the broker's is the durable parking
        // place. Both are written before the ack, so a crash in between redelivers.
        if let Err(e) = self.dead_letters.put(&letter).await {
            tracing::error!(error = %e, "could not mirror the dead letter into the store; leaving the message for redelivery");
            return Outcome::Unsettled;
        }
        match self.broker.dead_letter(d, chain).await {
            Ok(()) => {
                let tenant = env.map(|e| e.tenant.to_string()).unwrap_or_default();
                counter!("ges_dead_letters_total", "kind" => kind, "tenant" => tenant).increment(1);
                Outcome::DeadLettered
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not dead-letter; the broker will redeliver");
                Outcome::Unsettled
            }
        }
    }
}

/// The message body as the store keeps it (a text column): the body itself when it is text
/// a database can hold, else `base64:` and the exact bytes encoded — never a lossy copy, and
/// never a NUL byte, which PostgreSQL's text refuses (the letter would then never be stored,
/// and the message would go round forever). Envelopes are JSON objects, so the prefix cannot
/// be mistaken for one.
fn storable_body(body: &[u8]) -> String {
    use base64::Engine as _;
    match std::str::from_utf8(body) {
        Ok(text) if !text.contains('\0') => text.to_owned(),
        _ => format!(
            "base64:{}",
            base64::engine::general_purpose::STANDARD.encode(body)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_a_database_cannot_hold_are_stored_exactly_in_base64() {
        assert_eq!(storable_body(br#"{"id":"x"}"#), r#"{"id":"x"}"#);
        assert_eq!(storable_body(b"\x00\xff\xfe x"), "base64:AP/+IHg=");
        assert_eq!(storable_body(b"a\x00b"), "base64:YQBi");
    }

    #[test]
    fn retry_tiers_follow_the_schedule_and_hints() {
        let s = RetrySchedule {
            delays: vec![
                Duration::from_secs(5),
                Duration::from_secs(30),
                Duration::from_secs(120),
            ],
            max_attempts: 8,
        };
        assert_eq!(s.delay(1, None), Duration::from_secs(5));
        assert_eq!(s.delay(2, None), Duration::from_secs(30));
        assert_eq!(
            s.delay(7, None),
            Duration::from_secs(120),
            "the last tier repeats"
        );
        assert_eq!(
            s.delay(1, Some(Duration::from_secs(20))),
            Duration::from_secs(30)
        );
        assert_eq!(
            s.delay(1, Some(Duration::from_secs(999))),
            Duration::from_secs(120)
        );
        assert_eq!(
            s.delay(2, Some(Duration::from_secs(1))),
            Duration::from_secs(30)
        );
    }
}
