//! Message queues behind one interface: RabbitMQ through lapin ([`amqp`]) for a cluster of
//! workers, and an in-process queue ([`memory`]) with the same semantics for the embedded
//! default and tests.
//!
//! Semantics both implementations guarantee (DESIGN.md §5):
//! - two lanes, real-time and bulk, each consumed with its own prefetch (= that lane's
//!   in-flight limit), so a backfill never delays a webhook;
//! - `publish` returns only after the broker confirmed the message; a nack is an error;
//! - a delivery stays unacknowledged until [`Broker::ack`], [`Broker::retry`] or
//!   [`Broker::dead_letter`]; unacknowledged deliveries come back after a crash or a
//!   connection loss (at least once; the engine is idempotent);
//! - `retry` publishes the next attempt to a delay tier (a queue whose TTL dead-letters the
//!   message back to its lane) and then acks the delivery;
//! - `defer` hands a delivery back unprocessed, with the same attempt, to be delivered again
//!   after about a delay (a tenant over its share of the bulk lane, [`crate::fair`]), and then
//!   acks it;
//! - `dead_letter` publishes the message with its error chain to the dead-letter queue and
//!   then acks the delivery;
//! - a message carries the publisher's trace context ([`crate::telemetry::inject`]) to its
//!   delivery; retries carry the context of the attempt that scheduled them.

use std::time::Duration;

use async_trait::async_trait;
use ports::QueueError;
use ports::queue::{Envelope, Lane, Publisher};
use tokio::sync::mpsc;

pub mod amqp;
pub mod memory;

/// One message handed to the worker.
#[derive(Debug)]
pub struct Delivery {
    pub lane: Lane,
    /// The parsed envelope, or why the body is not one (such a message is dead-lettered).
    pub envelope: Result<Envelope, String>,
    /// The raw body, kept for dead-lettering and replay.
    pub body: Vec<u8>,
    /// Whether the broker delivered it before (a crash or a requeue).
    pub redelivered: bool,
    /// The W3C trace context the publisher sent with it (`traceparent`, `tracestate`; AMQP
    /// headers on RabbitMQ), so the worker's span joins the publisher's trace. Often empty.
    pub trace_context: Vec<(String, String)>,
    /// Implementation data (channel and delivery tag, or the in-process id).
    pub handle: DeliveryHandle,
}

/// Where a delivery came from, for acknowledging it.
#[derive(Debug, Clone)]
pub enum DeliveryHandle {
    Amqp {
        /// Which connection generation the delivery belongs to; acks on a replaced
        /// connection are impossible (the broker redelivers instead).
        generation: u64,
        channel_id: u16,
        delivery_tag: u64,
    },
    Memory {
        id: u64,
    },
}

/// The deliveries of both lanes.
#[derive(Debug)]
pub struct Consumers {
    pub realtime: mpsc::Receiver<Delivery>,
    pub bulk: mpsc::Receiver<Delivery>,
}

/// Messages waiting, per queue, for `status` and the metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Depths {
    pub realtime: u64,
    pub bulk: u64,
    pub delayed: u64,
    pub dead: u64,
}

/// A message in the dead-letter queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadMessage {
    pub body: Vec<u8>,
    pub error_chain: Vec<String>,
}

/// A message broker: publish with confirms, consume with manual acks, retry through delay
/// tiers, dead-letter with the error chain.
#[async_trait]
pub trait Broker: Publisher + Send + Sync {
    /// Declare the topology (idempotent; safe from every replica at start).
    async fn declare(&self) -> Result<(), QueueError>;

    /// Start consuming both lanes, with at most `realtime` and `bulk` unacknowledged
    /// deliveries on each. `consumer_tag` must be unique per process (each pod its own).
    /// Consumption survives connection losses (the implementation re-subscribes after
    /// reconnecting). A prefetch of 0 is an error.
    async fn consume_lanes(
        &self,
        consumer_tag: &str,
        realtime: u16,
        bulk: u16,
    ) -> Result<Consumers, QueueError>;

    /// [`Broker::consume_lanes`] with the same prefetch on both lanes.
    async fn consume(&self, consumer_tag: &str, prefetch: u16) -> Result<Consumers, QueueError> {
        self.consume_lanes(consumer_tag, prefetch, prefetch).await
    }

    /// Stop delivering new messages (shutdown); deliveries already handed out can still be
    /// acknowledged.
    async fn stop_consuming(&self);

    async fn ack(&self, delivery: &Delivery) -> Result<(), QueueError>;

    /// Publish `next` (the same message with `attempt + 1`) to the delay tier that waits
    /// `delay`, then ack `delivery`.
    async fn retry(
        &self,
        delivery: &Delivery,
        next: &Envelope,
        delay: Duration,
    ) -> Result<(), QueueError>;

    /// Hand `delivery` back unprocessed: publish `envelope` (its own, same attempt) to wait
    /// about `delay` on its lane, then ack. RabbitMQ rounds the delay down to a defer tier
    /// (the message may come back early, never much later than asked); the in-process queue
    /// waits exactly.
    async fn defer(
        &self,
        delivery: &Delivery,
        envelope: &Envelope,
        delay: Duration,
    ) -> Result<(), QueueError>;

    /// Publish the delivery's body with its error chain to the dead-letter queue, then ack.
    async fn dead_letter(
        &self,
        delivery: &Delivery,
        error_chain: &[String],
    ) -> Result<(), QueueError>;

    /// Give a delivery back unprocessed (it will be delivered again).
    async fn requeue(&self, delivery: &Delivery) -> Result<(), QueueError>;

    /// Whether the broker connection is up (readiness).
    fn ready(&self) -> bool;

    async fn depths(&self) -> Result<Depths, QueueError>;

    /// Close connections (after the worker drained).
    async fn close(&self);
}

/// The lane a message goes to.
pub fn lane_of(env: &Envelope) -> Lane {
    env.lane
}
