//! The in-process broker: the semantics of [`super`] inside one process, for the embedded
//! default (`demo`, `run` without RabbitMQ) and for tests.
//!
//! What it guarantees, like the RabbitMQ broker:
//! - two lanes, each handing out a delivery only while fewer than `prefetch` deliveries of that
//!   lane are unacknowledged, so a full bulk lane never holds back a real-time message;
//! - a delivery stays unacknowledged until `ack`, `retry`, `dead_letter` or `requeue`;
//!   `requeue` puts it back at the front of its lane, marked redelivered;
//! - `retry` and `defer` schedule the envelope on a tokio timer and re-enqueue it on its lane
//!   after the delay (the delay is used as given; the RabbitMQ broker rounds it to a tier);
//! - `dead_letter` keeps the body with its error chain: read them with
//!   [`MemoryBroker::dead_letters`] or drain them with [`MemoryBroker::take_dead_letters`];
//! - `publish` is confirmed at once, until [`Broker::close`]; after that every operation
//!   fails with `Unavailable` and `ready()` is false.
//!
//! What it does not: messages live in memory only, so a process crash loses them (the embedded
//! default accepts that; a cluster uses RabbitMQ). There is one consumer: `consume` can be
//! called once per broker, a second call is an error. [`MemoryBroker::drop_connection`]
//! imitates a broker connection loss for tests: every unacknowledged delivery goes back to its
//! lane (redelivered) and acknowledging the old delivery fails, as with RabbitMQ.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use anyhow::anyhow;
use async_trait::async_trait;
use ports::QueueError;
use ports::queue::{Envelope, Lane, Publisher};
use tokio::sync::mpsc;

use super::{Broker, Consumers, DeadMessage, Delivery, DeliveryHandle, Depths};

/// The in-process broker. Cheap to clone; clones share the queues.
#[derive(Clone, Default)]
pub struct MemoryBroker {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    state: Mutex<State>,
    closed: AtomicBool,
}

#[derive(Default)]
struct State {
    realtime: LaneQueue,
    bulk: LaneQueue,
    /// Ids of deliveries handed out; an id is never reused, so a stale handle cannot ack a
    /// newer delivery.
    next_id: u64,
    /// Retries waiting for their timer.
    delayed: u64,
    dead: Vec<DeadMessage>,
    consumed: bool,
}

#[derive(Default)]
struct LaneQueue {
    ready: VecDeque<Message>,
    unacked: HashMap<u64, Message>,
    /// In-flight limit of the consumer (0 until `consume`).
    prefetch: usize,
    /// The consumer's receiver; `None` before `consume` and after `stop_consuming`.
    sender: Option<mpsc::Sender<Delivery>>,
}

#[derive(Debug, Clone)]
struct Message {
    body: Vec<u8>,
    redelivered: bool,
    trace_context: Vec<(String, String)>,
}

impl State {
    fn lane(&mut self, lane: Lane) -> &mut LaneQueue {
        match lane {
            Lane::RealTime => &mut self.realtime,
            Lane::Bulk => &mut self.bulk,
        }
    }

    /// Hand out what prefetch allows, on both lanes.
    fn dispatch(&mut self) {
        for lane in [Lane::RealTime, Lane::Bulk] {
            self.dispatch_lane(lane);
        }
    }

    fn dispatch_lane(&mut self, lane: Lane) {
        loop {
            let next_id = self.next_id;
            let queue = self.lane(lane);
            let Some(sender) = queue.sender.clone() else {
                return;
            };
            if queue.unacked.len() >= queue.prefetch {
                return;
            }
            let Some(message) = queue.ready.pop_front() else {
                return;
            };
            let delivery = Delivery {
                lane,
                envelope: Envelope::from_json(&message.body).map_err(|e| e.to_string()),
                body: message.body.clone(),
                redelivered: message.redelivered,
                trace_context: message.trace_context.clone(),
                handle: DeliveryHandle::Memory { id: next_id },
            };
            // The channel holds `prefetch` deliveries and at most `prefetch` are unacked, so
            // it is never full; it is closed only when the consumer dropped its receiver.
            match sender.try_send(delivery) {
                Ok(()) => {
                    queue.unacked.insert(next_id, message);
                    self.next_id += 1;
                }
                Err(_) => {
                    queue.ready.push_front(message);
                    queue.sender = None;
                    tracing::warn!(
                        lane = lane.as_str(),
                        "in-process consumer went away; its lane stops delivering"
                    );
                    return;
                }
            }
        }
    }

    /// Remove a handed-out delivery, or say why it cannot be settled.
    fn settle(&mut self, delivery: &Delivery) -> Result<Message, QueueError> {
        let DeliveryHandle::Memory { id } = delivery.handle else {
            return Err(QueueError::Unknown(anyhow!(
                "the in-process broker cannot settle a delivery of another broker"
            )));
        };
        self.lane(delivery.lane).unacked.remove(&id).ok_or_else(|| {
            QueueError::Unknown(anyhow!(
                "in-process delivery {id} is not outstanding (already settled, or returned to \
                 its lane by a connection loss)"
            ))
        })
    }
}

impl MemoryBroker {
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.inner)
    }

    fn check_open(&self) -> Result<(), QueueError> {
        if self.inner.closed.load(Ordering::SeqCst) {
            Err(closed())
        } else {
            Ok(())
        }
    }

    /// The dead letters so far, oldest first (they stay in the broker).
    pub fn dead_letters(&self) -> Vec<DeadMessage> {
        self.state().dead.clone()
    }

    /// Remove and return up to `max` dead letters, oldest first.
    pub fn take_dead_letters(&self, max: usize) -> Vec<DeadMessage> {
        let mut state = self.state();
        let n = max.min(state.dead.len());
        state.dead.drain(..n).collect()
    }

    /// Deliveries handed out and not yet settled, per lane `(realtime, bulk)`.
    pub fn unacked(&self) -> (usize, usize) {
        let state = self.state();
        (state.realtime.unacked.len(), state.bulk.unacked.len())
    }

    /// Imitate a broker connection loss (for tests): every unacknowledged delivery goes back to
    /// the front of its lane marked redelivered, settling one of the old deliveries fails, and
    /// the consumer receives them again.
    pub fn drop_connection(&self) {
        let mut state = self.state();
        for lane in [Lane::RealTime, Lane::Bulk] {
            let queue = state.lane(lane);
            let mut ids: Vec<u64> = queue.unacked.keys().copied().collect();
            // Back in the order they were handed out.
            ids.sort_unstable();
            for id in ids.into_iter().rev() {
                if let Some(mut message) = queue.unacked.remove(&id) {
                    message.redelivered = true;
                    queue.ready.push_front(message);
                }
            }
        }
        state.dispatch();
    }

    /// Settle `delivery` and put `next` back on its lane after `delay` (a retry or a defer).
    fn later(
        &self,
        delivery: &Delivery,
        next: &Envelope,
        delay: Duration,
    ) -> Result<(), QueueError> {
        self.check_open()?;
        let body = next
            .to_json()
            .map_err(|e| QueueError::Unknown(anyhow::Error::new(e).context("encode envelope")))?
            .into_bytes();
        {
            let mut state = self.state();
            state.settle(delivery)?;
            state.delayed += 1;
            state.dispatch_lane(delivery.lane);
        }
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        let lane = next.lane;
        let trace_context = crate::telemetry::inject();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            // A dropped or closed broker has nobody to deliver to.
            let Some(inner) = weak.upgrade() else { return };
            if inner.closed.load(Ordering::SeqCst) {
                return;
            }
            let mut state = lock(&inner);
            state.delayed = state.delayed.saturating_sub(1);
            state.lane(lane).ready.push_back(Message {
                body,
                redelivered: false,
                trace_context,
            });
            state.dispatch_lane(lane);
        });
        Ok(())
    }

    fn enqueue(&self, lane: Lane, body: Vec<u8>) {
        let mut state = self.state();
        state.lane(lane).ready.push_back(Message {
            body,
            redelivered: false,
            trace_context: crate::telemetry::inject(),
        });
        state.dispatch_lane(lane);
    }
}

fn lock(inner: &Inner) -> MutexGuard<'_, State> {
    // A panic while holding the lock cannot leave the queues half-updated in a way that
    // matters more than losing the broker, so a poisoned lock is used as is.
    inner
        .state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn closed() -> QueueError {
    QueueError::Unavailable {
        message: "the in-process broker is closed".into(),
        source: None,
    }
}

#[async_trait]
impl Publisher for MemoryBroker {
    async fn publish(&self, envelope: &Envelope) -> Result<(), QueueError> {
        self.check_open()?;
        let body = envelope
            .to_json()
            .map_err(|e| QueueError::Unknown(anyhow::Error::new(e).context("encode envelope")))?;
        self.enqueue(envelope.lane, body.into_bytes());
        Ok(())
    }
}

#[async_trait]
impl Broker for MemoryBroker {
    async fn declare(&self) -> Result<(), QueueError> {
        self.check_open()
    }

    /// Start handing out deliveries. Only one consumer: a second call is an error.
    async fn consume_lanes(
        &self,
        consumer_tag: &str,
        realtime_prefetch: u16,
        bulk_prefetch: u16,
    ) -> Result<Consumers, QueueError> {
        self.check_open()?;
        if realtime_prefetch == 0 || bulk_prefetch == 0 {
            return Err(QueueError::Unknown(anyhow!(
                "prefetch must be at least 1 (it is the in-flight limit per lane)"
            )));
        }
        let mut state = self.state();
        if state.consumed {
            return Err(QueueError::Unknown(anyhow!(
                "the in-process broker has a single consumer and `consume` was already called"
            )));
        }
        state.consumed = true;
        let (realtime_limit, bulk_limit) =
            (usize::from(realtime_prefetch), usize::from(bulk_prefetch));
        let (realtime_tx, realtime) = mpsc::channel(realtime_limit);
        let (bulk_tx, bulk) = mpsc::channel(bulk_limit);
        state.realtime.prefetch = realtime_limit;
        state.realtime.sender = Some(realtime_tx);
        state.bulk.prefetch = bulk_limit;
        state.bulk.sender = Some(bulk_tx);
        state.dispatch();
        tracing::info!(
            consumer_tag,
            realtime_prefetch,
            bulk_prefetch,
            "consuming the in-process queue"
        );
        Ok(Consumers { realtime, bulk })
    }

    async fn stop_consuming(&self) {
        let mut state = self.state();
        // Dropping the senders ends the receivers once the worker took what is in them.
        state.realtime.sender = None;
        state.bulk.sender = None;
    }

    async fn ack(&self, delivery: &Delivery) -> Result<(), QueueError> {
        self.check_open()?;
        let mut state = self.state();
        state.settle(delivery)?;
        state.dispatch_lane(delivery.lane);
        Ok(())
    }

    async fn retry(
        &self,
        delivery: &Delivery,
        next: &Envelope,
        delay: Duration,
    ) -> Result<(), QueueError> {
        self.later(delivery, next, delay)
    }

    async fn defer(
        &self,
        delivery: &Delivery,
        envelope: &Envelope,
        delay: Duration,
    ) -> Result<(), QueueError> {
        self.later(delivery, envelope, delay)
    }

    async fn dead_letter(
        &self,
        delivery: &Delivery,
        error_chain: &[String],
    ) -> Result<(), QueueError> {
        self.check_open()?;
        let mut state = self.state();
        let message = state.settle(delivery)?;
        state.dead.push(DeadMessage {
            body: message.body,
            error_chain: error_chain.to_vec(),
        });
        state.dispatch_lane(delivery.lane);
        Ok(())
    }

    async fn requeue(&self, delivery: &Delivery) -> Result<(), QueueError> {
        self.check_open()?;
        let mut state = self.state();
        let mut message = state.settle(delivery)?;
        message.redelivered = true;
        state.lane(delivery.lane).ready.push_front(message);
        state.dispatch_lane(delivery.lane);
        Ok(())
    }

    fn ready(&self) -> bool {
        !self.inner.closed.load(Ordering::SeqCst)
    }

    async fn depths(&self) -> Result<Depths, QueueError> {
        self.check_open()?;
        let state = self.state();
        // Like a RabbitMQ queue's message count: waiting messages, not unacknowledged ones.
        Ok(Depths {
            realtime: state.realtime.ready.len() as u64,
            bulk: state.bulk.ready.len() as u64,
            delayed: state.delayed,
            dead: state.dead.len() as u64,
        })
    }

    async fn close(&self) {
        self.inner.closed.store(true, Ordering::SeqCst);
        let mut state = self.state();
        state.realtime.sender = None;
        state.bulk.sender = None;
    }
}
