//! The RabbitMQ broker (AMQP 0-9-1 through lapin, on tokio), for a cluster of workers.
//!
//! Topology ([`Topology`], declared idempotently by [`Broker::declare`]):
//! - `{prefix}`: a durable direct exchange; routing key = [`Lane::as_str`];
//! - `{prefix}.realtime`, `{prefix}.bulk`: durable quorum queues bound with their lane's key;
//! - `{prefix}.delay.{lane}.{ms}ms`: one durable quorum queue per lane and retry tier whose
//!   message TTL dead-letters the message back to the exchange with the lane's key;
//! - `{prefix}.dead`: the durable quorum dead-letter queue (body + `error_chain` header).
//!
//! What it guarantees:
//! - every publish (messages, retries, dead letters) waits for the publisher confirm: `Ok`
//!   means RabbitMQ has the message; a nack or an unroutable message is `Nacked`, no confirm
//!   within `confirm_timeout` is `ConfirmTimeout`, no connection is `Unavailable` at once;
//! - each lane is consumed on its own channel with `basic.qos(prefetch)` and manual acks; a
//!   body that is not an envelope is still delivered (`envelope: Err`) so it can be
//!   dead-lettered;
//! - on connection loss it reconnects with capped exponential backoff, re-declares the
//!   topology (when `declare` was called) and re-subscribes into the same receivers;
//!   [`Broker::ready`] is false meanwhile. Deliveries of the lost connection cannot be settled
//!   any more (`ack` & co. return `Unavailable`); RabbitMQ redelivers them.

use std::collections::HashSet;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use anyhow::anyhow;
use async_trait::async_trait;
use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicGetOptions, BasicNackOptions,
    BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions, ExchangeDeclareOptions,
    QueueBindOptions, QueueDeclareOptions,
};
use lapin::protocol::AMQPErrorKind;
use lapin::publisher_confirm::Confirmation;
use lapin::types::{AMQPValue, FieldArray, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use ports::QueueError;
use ports::queue::{Envelope, Lane, Publisher};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use super::{Broker, Consumers, DeadMessage, Delivery, DeliveryHandle, Depths};
use crate::config::mask_url;

/// AMQP 0-9-1 §1.8.2 (basic.properties delivery-mode): 2 = persistent.
const PERSISTENT: u8 = 2;
/// AMQP 0-9-1 §1.9 reply codes: 200 = reply-success, used to close channels and connections.
const REPLY_SUCCESS: u16 = 200;
/// Header with the envelope's attempt (0 for the first delivery).
pub const ATTEMPT_HEADER: &str = "attempt";
/// Header of a dead letter: the error chain, outermost first, as an array of strings.
pub const ERROR_CHAIN_HEADER: &str = "error_chain";
/// Header of a dead letter: the lane the message was consumed from.
pub const LANE_HEADER: &str = "lane";
/// How often the supervisor looks at the connection besides lapin's error callback.
const HEALTH_INTERVAL: Duration = Duration::from_millis(250);

/// Settings of the RabbitMQ broker (from `[queue]` in the config).
#[derive(Debug, Clone)]
pub struct AmqpSettings {
    /// Prefix of every exchange and queue name, so deployments can share a broker.
    pub prefix: String,
    /// Delay tiers for retries: one delay queue per lane and tier.
    pub retry_delays: Vec<Duration>,
    /// How long a publish waits for its confirm (also bounds acks).
    pub confirm_timeout: Duration,
    /// How long one connection attempt may take.
    pub connect_timeout: Duration,
    /// First wait after a failed reconnect; doubles up to `max_reconnect_backoff`.
    pub initial_reconnect_backoff: Duration,
    pub max_reconnect_backoff: Duration,
    /// The connection name shown by RabbitMQ (`rabbitmqctl list_connections client_properties`).
    pub connection_name: String,
}

impl AmqpSettings {
    /// Settings with the usual timings: connect within 10 s, reconnect backoff 100 ms → 30 s.
    pub fn new(
        prefix: impl Into<String>,
        retry_delays: Vec<Duration>,
        confirm_timeout: Duration,
    ) -> Self {
        let prefix = prefix.into();
        Self {
            connection_name: format!("ghl-ekyte-sync {prefix}"),
            prefix,
            retry_delays,
            confirm_timeout,
            connect_timeout: Duration::from_secs(10),
            initial_reconnect_backoff: Duration::from_millis(100),
            max_reconnect_backoff: Duration::from_secs(30),
        }
    }
}

/// The names of the exchange and queues for one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    pub exchange: String,
    pub realtime: String,
    pub bulk: String,
    pub dead: String,
    /// Delay tiers of retries, ascending and without duplicates.
    pub tiers: Vec<Duration>,
    /// Delay tiers of deferred bulk messages ([`DEFER_TIERS`]).
    pub defer_tiers: Vec<Duration>,
}

/// The waits a deferred bulk message can take (a tenant over its share of the bulk lane):
/// one delay queue each on the bulk lane, besides the retry tiers.
pub const DEFER_TIERS: [Duration; 5] = [
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(3),
    Duration::from_secs(10),
    Duration::from_secs(30),
];

impl Topology {
    pub fn new(prefix: &str, retry_delays: &[Duration]) -> Self {
        let mut tiers = retry_delays.to_vec();
        tiers.sort_unstable();
        tiers.dedup();
        Self {
            exchange: prefix.to_owned(),
            realtime: format!("{prefix}.{}", Lane::RealTime.as_str()),
            bulk: format!("{prefix}.{}", Lane::Bulk.as_str()),
            dead: format!("{prefix}.dead"),
            tiers,
            defer_tiers: DEFER_TIERS.to_vec(),
        }
    }

    pub fn lane_queue(&self, lane: Lane) -> &str {
        match lane {
            Lane::RealTime => &self.realtime,
            Lane::Bulk => &self.bulk,
        }
    }

    /// The delay queue of `lane` for a tier.
    pub fn delay_queue(&self, lane: Lane, tier: Duration) -> String {
        format!(
            "{}.delay.{}.{}ms",
            self.exchange,
            lane.as_str(),
            tier.as_millis()
        )
    }

    /// Every delay queue, per lane and tier: the retry tiers on both lanes, the defer tiers
    /// on the bulk lane (a tier in both lists is one queue).
    pub fn delay_queues(&self) -> Vec<(Lane, Duration, String)> {
        let mut queues: Vec<(Lane, Duration, String)> = [Lane::RealTime, Lane::Bulk]
            .into_iter()
            .flat_map(|lane| {
                self.tiers
                    .iter()
                    .map(move |tier| (lane, *tier, self.delay_queue(lane, *tier)))
            })
            .collect();
        for tier in &self.defer_tiers {
            if !self.tiers.contains(tier) {
                queues.push((Lane::Bulk, *tier, self.delay_queue(Lane::Bulk, *tier)));
            }
        }
        queues
    }

    /// The tier a deferred message waits in: the longest defer tier not above `delay`, else
    /// the shortest (a deferred message may come back early and be deferred again; coming
    /// back late would leave its tenant's budget idle).
    pub fn defer_tier_for(&self, delay: Duration) -> Option<Duration> {
        self.defer_tiers
            .iter()
            .copied()
            .rev()
            .find(|tier| *tier <= delay)
            .or_else(|| self.defer_tiers.first().copied())
    }

    /// The tier a retry waits in: the exact tier, else the next larger, else the largest.
    pub fn tier_for(&self, delay: Duration) -> Option<Duration> {
        self.tiers
            .iter()
            .copied()
            .find(|tier| *tier >= delay)
            .or_else(|| self.tiers.last().copied())
    }

    /// Every queue name (for deleting a test topology, or listing).
    pub fn all_queues(&self) -> Vec<String> {
        let mut names = vec![self.realtime.clone(), self.bulk.clone(), self.dead.clone()];
        names.extend(self.delay_queues().into_iter().map(|(_, _, name)| name));
        names
    }
}

/// The RabbitMQ broker. Cheap to clone; clones share the connection.
#[derive(Clone)]
pub struct AmqpBroker {
    shared: Arc<Shared>,
}

struct Shared {
    url: SecretString,
    /// The URL with its password masked, for logs and errors.
    display_url: String,
    settings: AmqpSettings,
    topology: Topology,
    /// The current connection generation; `None` while disconnected.
    live: Mutex<Option<Arc<Live>>>,
    generation: AtomicU64,
    /// Whether `declare` succeeded once: reconnects then re-declare.
    declared: AtomicBool,
    /// What `consume` asked for, so reconnects re-subscribe into the same receivers.
    consumer: Mutex<Option<ConsumerSpec>>,
    /// Serialises building a generation against subscribing on it.
    rebuild: tokio::sync::Mutex<()>,
    /// Serialises basic.publish frames so confirm sequence numbers follow frame order.
    publishing: tokio::sync::Mutex<()>,
    /// Wakes the supervisor (connection error, consumer gone).
    wake: Arc<Notify>,
    shutdown: CancellationToken,
}

#[derive(Clone)]
struct ConsumerSpec {
    tag: String,
    realtime_prefetch: u16,
    bulk_prefetch: u16,
    realtime: mpsc::Sender<Delivery>,
    bulk: mpsc::Sender<Delivery>,
}

impl ConsumerSpec {
    fn sender(&self, lane: Lane) -> mpsc::Sender<Delivery> {
        match lane {
            Lane::RealTime => self.realtime.clone(),
            Lane::Bulk => self.bulk.clone(),
        }
    }
}

/// One connection and its channels.
struct Live {
    generation: u64,
    connection: Connection,
    /// In confirm mode (RabbitMQ publisher confirms, https://www.rabbitmq.com/confirms.html).
    /// Replaced in place when RabbitMQ closes it (a refused publish closes the channel).
    publisher: Mutex<Channel>,
    lanes: Mutex<Option<LaneChannels>>,
}

struct LaneChannels {
    realtime: LaneChannel,
    bulk: LaneChannel,
    /// Stops the forwarding tasks (`stop_consuming`, `close`, a lost generation).
    stop: CancellationToken,
}

impl LaneChannels {
    fn lane(&self, lane: Lane) -> &LaneChannel {
        match lane {
            Lane::RealTime => &self.realtime,
            Lane::Bulk => &self.bulk,
        }
    }
}

#[derive(Clone)]
struct LaneChannel {
    channel: Channel,
    consumer_tag: String,
    /// Delivery tags handed out and not yet settled: settling twice would make RabbitMQ
    /// close the channel (PRECONDITION_FAILED, unknown delivery tag).
    outstanding: Arc<Mutex<HashSet<u64>>>,
    /// False once the consumer ended without being asked to (cancelled by the broker).
    alive: Arc<AtomicBool>,
}

fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing here leaves shared state half-updated across a panic; use it as it is.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Live {
    fn publisher(&self) -> Channel {
        locked(&self.publisher).clone()
    }

    /// The connection and the consumers are up (the publishing channel is checked apart: it
    /// can be replaced without reconnecting).
    fn healthy(&self) -> bool {
        if !self.connection.status().connected() {
            return false;
        }
        match &*locked(&self.lanes) {
            Some(lanes) if !lanes.stop.is_cancelled() => [&lanes.realtime, &lanes.bulk]
                .iter()
                .all(|l| l.channel.status().connected() && l.alive.load(Ordering::SeqCst)),
            _ => true,
        }
    }

    fn lane(&self, lane: Lane) -> Option<LaneChannel> {
        locked(&self.lanes).as_ref().map(|l| l.lane(lane).clone())
    }
}

fn unavailable(message: impl Into<String>, source: lapin::Error) -> QueueError {
    QueueError::Unavailable {
        message: message.into(),
        source: Some(Box::new(source)),
    }
}

/// A channel-level (soft) AMQP error: RabbitMQ refused this operation, the connection is fine.
fn soft_error(error: &lapin::Error) -> bool {
    matches!(error, lapin::Error::ProtocolError(e) if matches!(e.kind(), AMQPErrorKind::Soft(_)))
}

/// Map a lapin error of a management operation (declare, depths): connection trouble is
/// `Unavailable`, a refusal keeps its cause with what to do.
fn management_error(error: lapin::Error, what: String) -> QueueError {
    if soft_error(&error) {
        QueueError::Unknown(anyhow::Error::new(error).context(what))
    } else {
        unavailable(what, error)
    }
}

/// Bound a broker round trip: a link that silently stopped passing bytes looks connected
/// until the heartbeat gives up, and nothing here may hang that long.
async fn within<T>(
    limit: Duration,
    what: &str,
    operation: impl Future<Output = Result<T, QueueError>>,
) -> Result<T, QueueError> {
    tokio::time::timeout(limit, operation)
        .await
        .unwrap_or_else(|_| {
            Err(QueueError::Unavailable {
                message: format!("{what}: no answer from RabbitMQ within {limit:?}"),
                source: None,
            })
        })
}

impl AmqpBroker {
    /// Connect to RabbitMQ (the first connection must succeed) and keep the connection up in
    /// the background. Must be called inside a tokio runtime.
    pub async fn connect(url: SecretString, settings: AmqpSettings) -> Result<Self, QueueError> {
        let broker = Self::new(url, settings)?;
        let live = broker.shared.build().await?;
        *locked(&broker.shared.live) = Some(live);
        broker.spawn_supervisor();
        Ok(broker)
    }

    /// Like [`connect`](Self::connect) but returns at once; the connection is made in the
    /// background (with the reconnect backoff) and `ready()` is false until it is up.
    pub fn connect_lazy(url: SecretString, settings: AmqpSettings) -> Result<Self, QueueError> {
        let broker = Self::new(url, settings)?;
        broker.spawn_supervisor();
        Ok(broker)
    }

    fn new(url: SecretString, settings: AmqpSettings) -> Result<Self, QueueError> {
        if settings.retry_delays.is_empty() {
            return Err(QueueError::Unknown(anyhow!(
                "queue.retry_delays needs at least one delay (each is a delay queue)"
            )));
        }
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(QueueError::Unknown(anyhow!(
                "the RabbitMQ broker must be created inside a tokio runtime"
            )));
        }
        let display_url = mask_url(url.expose_secret());
        let topology = Topology::new(&settings.prefix, &settings.retry_delays);
        Ok(Self {
            shared: Arc::new(Shared {
                url,
                display_url,
                settings,
                topology,
                live: Mutex::new(None),
                generation: AtomicU64::new(0),
                declared: AtomicBool::new(false),
                consumer: Mutex::new(None),
                rebuild: tokio::sync::Mutex::new(()),
                publishing: tokio::sync::Mutex::new(()),
                wake: Arc::new(Notify::new()),
                shutdown: CancellationToken::new(),
            }),
        })
    }

    fn spawn_supervisor(&self) {
        let weak = Arc::downgrade(&self.shared);
        let shutdown = self.shared.shutdown.clone();
        tokio::spawn(supervise(weak, shutdown));
    }

    /// The names this broker declares and uses.
    pub fn topology(&self) -> &Topology {
        &self.shared.topology
    }

    /// The connection name RabbitMQ shows for this broker's connection.
    pub fn connection_name(&self) -> &str {
        &self.shared.settings.connection_name
    }

    /// The current connection generation (increases with every reconnect).
    pub fn generation(&self) -> u64 {
        self.shared.generation.load(Ordering::SeqCst)
    }

    /// Remove and return up to `max` messages of the dead-letter queue, oldest first.
    /// Delete every queue and the exchange of this prefix (the demo's and tests' own
    /// topology, when they are done with it). Messages in them are lost: never call this on a
    /// deployment's topology.
    pub async fn delete_topology(&self) -> Result<(), QueueError> {
        let limit = self.shared.settings.confirm_timeout;
        within(limit, "delete the topology", async {
            let live = self.shared.current()?;
            let channel = live
                .connection
                .create_channel()
                .await
                .map_err(|e| unavailable("open a channel to delete the topology", e))?;
            for queue in self.shared.topology.all_queues() {
                channel
                    .queue_delete(&queue, lapin::options::QueueDeleteOptions::default())
                    .await
                    .map_err(|e| unavailable(format!("delete queue {queue}"), e))?;
            }
            channel
                .exchange_delete(
                    &self.shared.topology.exchange,
                    lapin::options::ExchangeDeleteOptions::default(),
                )
                .await
                .map_err(|e| unavailable("delete the exchange", e))?;
            let _ = channel.close(200, "done").await;
            Ok(())
        })
        .await
    }

    pub async fn take_dead_letters(&self, max: usize) -> Result<Vec<DeadMessage>, QueueError> {
        let limit = self.shared.settings.confirm_timeout;
        within(limit, "read dead letters", self.take_dead_letters_now(max)).await
    }

    async fn take_dead_letters_now(&self, max: usize) -> Result<Vec<DeadMessage>, QueueError> {
        let live = self.shared.current()?;
        let queue = &self.shared.topology.dead;
        let channel = live
            .connection
            .create_channel()
            .await
            .map_err(|e| unavailable("open a channel to read dead letters", e))?;
        let mut taken = Vec::new();
        let mut last_tag = None;
        while taken.len() < max {
            // basic.get without auto-ack (AMQP 0-9-1 basic.get no-ack=false): acked below.
            let got = channel
                .basic_get(queue, BasicGetOptions { no_ack: false })
                .await
                .map_err(|e| management_error(e, format!("read dead letters from {queue}")))?;
            let Some(message) = got else { break };
            last_tag = Some(message.delivery.delivery_tag);
            let error_chain = message
                .delivery
                .properties
                .headers()
                .as_ref()
                .and_then(|h| h.inner().get(ERROR_CHAIN_HEADER))
                .map(strings_of)
                .unwrap_or_default();
            taken.push(DeadMessage {
                body: message.delivery.data,
                error_chain,
            });
        }
        if let Some(tag) = last_tag {
            channel
                .basic_ack(tag, BasicAckOptions { multiple: true })
                .await
                .map_err(|e| unavailable("ack the dead letters read", e))?;
        }
        let _ = channel.close(REPLY_SUCCESS, "dead letters read").await;
        Ok(taken)
    }

    async fn depths_now(&self) -> Result<Depths, QueueError> {
        let live = self.shared.current()?;
        let channel = live
            .connection
            .create_channel()
            .await
            .map_err(|e| unavailable("open a channel to read queue depths", e))?;
        let topology = &self.shared.topology;
        let mut depths = Depths {
            realtime: message_count(&channel, &topology.realtime).await?,
            bulk: message_count(&channel, &topology.bulk).await?,
            delayed: 0,
            dead: message_count(&channel, &topology.dead).await?,
        };
        for (_, _, queue) in topology.delay_queues() {
            depths.delayed += message_count(&channel, &queue).await?;
        }
        let _ = channel.close(REPLY_SUCCESS, "depths read").await;
        Ok(depths)
    }

    /// Publish `body` through `exchange` with `routing_key` and wait for the confirm.
    async fn publish_raw(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        properties: BasicProperties,
    ) -> Result<(), QueueError> {
        let live = self.shared.publishable()?;
        let timeout = self.shared.settings.confirm_timeout;
        let confirmed = async {
            let confirm = {
                let _order = self.shared.publishing.lock().await;
                live.publisher()
                    .basic_publish(
                        exchange,
                        routing_key,
                        // mandatory (AMQP 0-9-1 basic.publish): an unroutable message comes back
                        // (basic.return) instead of being dropped silently.
                        BasicPublishOptions {
                            mandatory: true,
                            immediate: false,
                        },
                        body,
                        properties,
                    )
                    .await
            };
            let confirmation = confirm.map_err(|e| self.publish_error(e))?.await;
            match confirmation.map_err(|e| self.publish_error(e))? {
                Confirmation::Ack(None) => Ok(()),
                Confirmation::Ack(Some(returned)) => Err(QueueError::Nacked {
                    message: format!(
                        "unroutable: no queue for routing key {routing_key:?} on exchange \
                         {exchange:?} ({} {}); declare the topology first",
                        returned.reply_code, returned.reply_text
                    ),
                }),
                Confirmation::Nack(_) => Err(QueueError::Nacked {
                    message: format!(
                        "RabbitMQ nacked the message for {routing_key:?} on {exchange:?}"
                    ),
                }),
                Confirmation::NotRequested => Err(QueueError::Unknown(anyhow!(
                    "the publishing channel is not in confirm mode"
                ))),
            }
        };
        match tokio::time::timeout(timeout, confirmed).await {
            Ok(result) => result,
            Err(_) => Err(QueueError::ConfirmTimeout(timeout)),
        }
    }

    fn publish_error(&self, error: lapin::Error) -> QueueError {
        if soft_error(&error) {
            // RabbitMQ refused the publish on this channel (e.g. the exchange is missing);
            // the supervisor replaces the closed channel.
            self.shared.wake.notify_one();
            QueueError::Nacked {
                message: format!("RabbitMQ refused the publish: {error}"),
            }
        } else {
            self.shared.wake.notify_one();
            unavailable(
                format!("publish to RabbitMQ at {}", self.shared.display_url),
                error,
            )
        }
    }

    /// The lane channel a delivery belongs to, with its tag removed from the outstanding set.
    fn settle(&self, delivery: &Delivery) -> Result<(LaneChannel, u64), QueueError> {
        let DeliveryHandle::Amqp {
            generation,
            channel_id,
            delivery_tag,
        } = delivery.handle
        else {
            return Err(QueueError::Unknown(anyhow!(
                "the RabbitMQ broker cannot settle an in-process delivery"
            )));
        };
        let gone = || QueueError::Unavailable {
            message: format!(
                "the connection (generation {generation}) that delivered this message is gone; \
                 RabbitMQ delivers it again"
            ),
            source: None,
        };
        let live = self.shared.current().map_err(|_| gone())?;
        if live.generation != generation {
            return Err(gone());
        }
        let lane = live.lane(delivery.lane).ok_or_else(gone)?;
        if lane.channel.id() != channel_id {
            return Err(gone());
        }
        if !locked(&lane.outstanding).remove(&delivery_tag) {
            return Err(QueueError::Unknown(anyhow!(
                "delivery {delivery_tag} on channel {channel_id} was already settled"
            )));
        }
        Ok((lane, delivery_tag))
    }

    async fn settle_with(&self, delivery: &Delivery, op: Settle) -> Result<(), QueueError> {
        let (lane, tag) = self.settle(delivery)?;
        let timeout = self.shared.settings.confirm_timeout;
        let settling = async {
            match op {
                Settle::Ack => {
                    lane.channel
                        .basic_ack(tag, BasicAckOptions::default())
                        .await
                }
                // basic.nack with requeue (https://www.rabbitmq.com/confirms.html#consumer-nacks-requeue).
                Settle::Requeue => {
                    let options = BasicNackOptions {
                        multiple: false,
                        requeue: true,
                    };
                    lane.channel.basic_nack(tag, options).await
                }
            }
        };
        match tokio::time::timeout(timeout, settling).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                self.shared.wake.notify_one();
                Err(unavailable(format!("{op:?} delivery {tag}"), e))
            }
            Err(_) => Err(QueueError::Unavailable {
                message: format!("{op:?} delivery {tag}: no answer within {timeout:?}"),
                source: None,
            }),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Settle {
    Ack,
    Requeue,
}

/// The strings of a header array (non-strings are shown as they are).
fn strings_of(value: &AMQPValue) -> Vec<String> {
    match value {
        AMQPValue::FieldArray(items) => items
            .as_slice()
            .iter()
            .map(|item| match item {
                AMQPValue::LongString(s) => s.to_string(),
                AMQPValue::ShortString(s) => s.to_string(),
                other => format!("{other:?}"),
            })
            .collect(),
        AMQPValue::LongString(s) => vec![s.to_string()],
        other => vec![format!("{other:?}")],
    }
}

fn message_properties(envelope: &Envelope) -> BasicProperties {
    let mut headers = FieldTable::default();
    headers.insert(
        ATTEMPT_HEADER.into(),
        AMQPValue::LongLongInt(i64::from(envelope.attempt)),
    );
    // W3C trace context as message headers, the way OpenTelemetry's messaging conventions
    // carry it over AMQP.
    for (name, value) in crate::telemetry::inject() {
        headers.insert(name.as_str().into(), text(&value));
    }
    BasicProperties::default()
        .with_delivery_mode(PERSISTENT)
        .with_content_type("application/json".into())
        .with_message_id(ShortString::from(envelope.id.as_str()))
        .with_correlation_id(ShortString::from(envelope.correlation_id.as_str()))
        .with_type(envelope.kind().into())
        .with_timestamp(u64::try_from(envelope.created_at.timestamp()).unwrap_or_default())
        .with_headers(headers)
}

/// The W3C trace context headers of a delivery (absent unless the publisher exported traces).
fn trace_headers(properties: &BasicProperties) -> Vec<(String, String)> {
    let Some(headers) = properties.headers() else {
        return Vec::new();
    };
    crate::telemetry::TRACE_HEADERS
        .iter()
        .filter_map(|name| {
            let value = match headers.inner().get(*name)? {
                AMQPValue::LongString(s) => s.to_string(),
                AMQPValue::ShortString(s) => s.to_string(),
                _ => return None,
            };
            Some(((*name).to_owned(), value))
        })
        .collect()
}

fn encode(envelope: &Envelope) -> Result<Vec<u8>, QueueError> {
    envelope
        .to_json()
        .map(String::into_bytes)
        .map_err(|e| QueueError::Unknown(anyhow::Error::new(e).context("encode the envelope")))
}

impl Shared {
    /// The live connection, or `Unavailable` at once when there is none.
    fn current(&self) -> Result<Arc<Live>, QueueError> {
        if self.shutdown.is_cancelled() {
            return Err(QueueError::Unavailable {
                message: "the RabbitMQ broker is closed".into(),
                source: None,
            });
        }
        match &*locked(&self.live) {
            Some(live) if live.connection.status().connected() => Ok(live.clone()),
            _ => Err(QueueError::Unavailable {
                message: format!(
                    "not connected to RabbitMQ at {} (reconnecting)",
                    self.display_url
                ),
                source: None,
            }),
        }
    }

    /// The live connection with a working publishing channel, or `Unavailable` at once.
    fn publishable(&self) -> Result<Arc<Live>, QueueError> {
        let live = self.current()?;
        if live.publisher().status().connected() {
            Ok(live)
        } else {
            Err(QueueError::Unavailable {
                message: "the publishing channel is being reopened".into(),
                source: None,
            })
        }
    }

    /// Connect, declare (when asked before), open the publishing channel and re-subscribe.
    async fn build(self: &Arc<Self>) -> Result<Arc<Live>, QueueError> {
        let _building = self.rebuild.lock().await;
        let handle = tokio::runtime::Handle::try_current()
            .map_err(|e| QueueError::Unknown(anyhow::Error::new(e).context("no tokio runtime")))?;
        let properties = ConnectionProperties::default()
            .with_connection_name(LongString::from(self.settings.connection_name.clone()))
            .with_executor(tokio_executor_trait::Tokio::default().with_handle(handle))
            .with_reactor(tokio_reactor_trait::Tokio);
        let connecting = Connection::connect(self.url.expose_secret(), properties);
        let connection = match tokio::time::timeout(self.settings.connect_timeout, connecting).await
        {
            Ok(Ok(connection)) => connection,
            Ok(Err(e)) => {
                return Err(unavailable(
                    format!(
                        "connect to RabbitMQ at {} (is it running? `rabbitmq-server -detached` \
                         starts it on this machine)",
                        self.display_url
                    ),
                    e,
                ));
            }
            Err(_) => {
                return Err(QueueError::Unavailable {
                    message: format!(
                        "connect to RabbitMQ at {}: no answer within {:?}",
                        self.display_url, self.settings.connect_timeout
                    ),
                    source: None,
                });
            }
        };
        let limit = self.settings.connect_timeout;
        within(
            limit,
            "set up the RabbitMQ connection",
            self.set_up(connection),
        )
        .await
    }

    /// Declare (when asked before), open the publishing channel and re-subscribe.
    async fn set_up(self: &Arc<Self>, connection: Connection) -> Result<Arc<Live>, QueueError> {
        let weak = Arc::downgrade(self);
        connection.on_error(move |error| match weak.upgrade() {
            Some(shared) if !shared.shutdown.is_cancelled() => {
                tracing::warn!(%error, "RabbitMQ connection error");
                shared.wake.notify_one();
            }
            // Closed on purpose (a one-shot command ending, a drained worker): the runtime
            // going away under the connection is no error to report.
            _ => tracing::debug!(%error, "RabbitMQ connection error after close"),
        });
        if self.declared.load(Ordering::SeqCst) {
            declare_on(&connection, &self.topology).await?;
        }
        let publisher = open_publisher(&connection).await?;
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        let live = Arc::new(Live {
            generation,
            connection,
            publisher: Mutex::new(publisher),
            lanes: Mutex::new(None),
        });
        let spec = locked(&self.consumer).clone();
        if let Some(spec) = spec {
            self.subscribe(&live, &spec).await?;
        }
        tracing::info!(url = %self.display_url, generation, "connected to RabbitMQ");
        Ok(live)
    }

    /// Consume both lanes of `live` into the spec's receivers.
    async fn subscribe(
        self: &Arc<Self>,
        live: &Arc<Live>,
        spec: &ConsumerSpec,
    ) -> Result<(), QueueError> {
        let stop = CancellationToken::new();
        let mut lanes = Vec::with_capacity(2);
        for lane in [Lane::RealTime, Lane::Bulk] {
            let channel = live
                .connection
                .create_channel()
                .await
                .map_err(|e| unavailable(format!("open the {} channel", lane.as_str()), e))?;
            // Consumer prefetch (https://www.rabbitmq.com/consumer-prefetch.html): global=false
            // limits each consumer on the channel, here the lane's only consumer.
            let prefetch = match lane {
                Lane::RealTime => spec.realtime_prefetch,
                Lane::Bulk => spec.bulk_prefetch,
            };
            channel
                .basic_qos(prefetch, BasicQosOptions { global: false })
                .await
                .map_err(|e| unavailable(format!("set the {} prefetch", lane.as_str()), e))?;
            let consumer_tag = format!("{}.{}", spec.tag, lane.as_str());
            let queue = self.topology.lane_queue(lane);
            // Manual acknowledgements (https://www.rabbitmq.com/confirms.html#consumer-acknowledgements).
            let consumer = channel
                .basic_consume(
                    queue,
                    &consumer_tag,
                    BasicConsumeOptions {
                        no_ack: false,
                        ..BasicConsumeOptions::default()
                    },
                    FieldTable::default(),
                )
                .await
                .map_err(|e| management_error(e, format!("consume {queue}")))?;
            let lane_channel = LaneChannel {
                channel,
                consumer_tag,
                outstanding: Arc::new(Mutex::new(HashSet::new())),
                alive: Arc::new(AtomicBool::new(true)),
            };
            tokio::spawn(forward(
                consumer,
                Forwarding {
                    lane,
                    generation: live.generation,
                    channel_id: lane_channel.channel.id(),
                    sender: spec.sender(lane),
                    outstanding: lane_channel.outstanding.clone(),
                    alive: lane_channel.alive.clone(),
                    stop: stop.clone(),
                    shared: Arc::downgrade(self),
                },
            ));
            lanes.push(lane_channel);
        }
        let (Some(bulk), Some(realtime)) = (lanes.pop(), lanes.pop()) else {
            return Err(QueueError::Unknown(anyhow!("two lanes expected")));
        };
        let previous = locked(&live.lanes).replace(LaneChannels {
            realtime,
            bulk,
            stop,
        });
        if let Some(previous) = previous {
            previous.stop.cancel();
        }
        Ok(())
    }
}

/// A channel in confirm mode for publishing.
async fn open_publisher(connection: &Connection) -> Result<Channel, QueueError> {
    let publisher = connection
        .create_channel()
        .await
        .map_err(|e| unavailable("open the publishing channel", e))?;
    // Publisher confirms (https://www.rabbitmq.com/confirms.html#publisher-confirms).
    publisher
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(|e| unavailable("enable publisher confirms", e))?;
    Ok(publisher)
}

/// What a forwarding task needs besides its consumer.
struct Forwarding {
    lane: Lane,
    generation: u64,
    channel_id: u16,
    sender: mpsc::Sender<Delivery>,
    outstanding: Arc<Mutex<HashSet<u64>>>,
    alive: Arc<AtomicBool>,
    stop: CancellationToken,
    shared: Weak<Shared>,
}

/// Move deliveries from a lapin consumer into the lane's receiver until stopped.
async fn forward(mut consumer: lapin::Consumer, f: Forwarding) {
    loop {
        let next = tokio::select! {
            _ = f.stop.cancelled() => return,
            next = consumer.next() => next,
        };
        match next {
            Some(Ok(message)) => {
                let tag = message.delivery_tag;
                locked(&f.outstanding).insert(tag);
                let trace_context = trace_headers(&message.properties);
                let delivery = Delivery {
                    lane: f.lane,
                    envelope: Envelope::from_json(&message.data).map_err(|e| e.to_string()),
                    body: message.data,
                    redelivered: message.redelivered,
                    trace_context,
                    handle: DeliveryHandle::Amqp {
                        generation: f.generation,
                        channel_id: f.channel_id,
                        delivery_tag: tag,
                    },
                };
                tokio::select! {
                    _ = f.stop.cancelled() => return,
                    sent = f.sender.send(delivery) => if sent.is_err() {
                        // The worker dropped its receiver: nobody left to deliver to.
                        return;
                    },
                }
            }
            Some(Err(error)) => {
                tracing::warn!(lane = f.lane.as_str(), %error, "RabbitMQ consumer failed");
                break;
            }
            None => {
                tracing::warn!(lane = f.lane.as_str(), "RabbitMQ cancelled the consumer");
                break;
            }
        }
    }
    if !f.stop.is_cancelled() {
        f.alive.store(false, Ordering::SeqCst);
        if let Some(shared) = f.shared.upgrade() {
            shared.wake.notify_one();
        }
    }
}

/// Keep a connection up until shutdown: watch it, and rebuild it with capped exponential
/// backoff when it is lost.
async fn supervise(shared: Weak<Shared>, shutdown: CancellationToken) {
    loop {
        // Wait until the connection is not healthy.
        loop {
            let Some(s) = shared.upgrade() else { return };
            let live = locked(&s.live).clone();
            let Some(live) = live.filter(|live| live.healthy()) else {
                break;
            };
            if !live.publisher().status().connected() {
                // RabbitMQ closed the publishing channel (a refused publish): replace it and
                // keep the connection, so the consumers' deliveries stay valid.
                let limit = s.settings.confirm_timeout;
                let reopening = open_publisher(&live.connection);
                match within(limit, "reopen the publishing channel", reopening).await {
                    Ok(channel) => {
                        *locked(&live.publisher) = channel;
                        tracing::info!(generation = live.generation, "publishing channel reopened");
                        continue;
                    }
                    Err(error) => {
                        tracing::warn!(%error, "reopening the publishing channel failed");
                        break;
                    }
                }
            }
            // Holding only a weak reference while waiting lets a dropped broker end this task.
            let wake = s.wake.clone();
            drop(s);
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = wake.notified() => {}
                _ = tokio::time::sleep(HEALTH_INTERVAL) => {}
            }
        }
        let Some(s) = shared.upgrade() else { return };
        if shutdown.is_cancelled() {
            return;
        }
        let lost = locked(&s.live).take();
        if let Some(lost) = lost {
            tracing::warn!(
                url = %s.display_url,
                generation = lost.generation,
                state = ?lost.connection.status().state(),
                "RabbitMQ connection lost; reconnecting"
            );
            retire(&lost).await;
        }
        let mut backoff = s.settings.initial_reconnect_backoff;
        let max = s.settings.max_reconnect_backoff;
        drop(s);
        loop {
            let Some(s) = shared.upgrade() else { return };
            if shutdown.is_cancelled() {
                return;
            }
            match s.build().await {
                Ok(live) => {
                    if shutdown.is_cancelled() {
                        retire(&live).await;
                        return;
                    }
                    *locked(&s.live) = Some(live);
                    break;
                }
                Err(error) => {
                    tracing::warn!(
                        url = %s.display_url,
                        error = %error,
                        retry_in = ?backoff,
                        "reconnecting to RabbitMQ failed"
                    );
                }
            }
            drop(s);
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(max);
        }
    }
}

/// Stop a generation's consumers and close its connection (best effort: it may be dead).
async fn retire(live: &Live) {
    if let Some(lanes) = locked(&live.lanes).take() {
        lanes.stop.cancel();
    }
    if live.connection.status().connected() {
        let closing = live.connection.close(REPLY_SUCCESS, "reconnecting");
        let _ = tokio::time::timeout(Duration::from_secs(2), closing).await;
    }
}

fn queue_args(entries: &[(&str, AMQPValue)]) -> FieldTable {
    let mut table = FieldTable::default();
    for (key, value) in entries {
        table.insert(ShortString::from(*key), value.clone());
    }
    table
}

fn text(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value))
}

/// Declare the exchange and queues (idempotent: same names and arguments each time).
async fn declare_on(connection: &Connection, topology: &Topology) -> Result<(), QueueError> {
    let channel = connection
        .create_channel()
        .await
        .map_err(|e| unavailable("open a channel to declare the topology", e))?;
    let durable = || QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    // Quorum queues (https://www.rabbitmq.com/quorum-queues.html): replicated and durable.
    let quorum = || ("x-queue-type", text("quorum"));
    let hint = "a queue or exchange of that name exists with other settings; delete it or \
                change queue.prefix";

    // A durable direct exchange (https://www.rabbitmq.com/tutorials/amqp-concepts.html#exchange-direct).
    channel
        .exchange_declare(
            &topology.exchange,
            ExchangeKind::Direct,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(|e| {
            management_error(e, format!("declare exchange {}: {hint}", topology.exchange))
        })?;

    for lane in [Lane::RealTime, Lane::Bulk] {
        let queue = topology.lane_queue(lane);
        channel
            .queue_declare(queue, durable(), queue_args(&[quorum()]))
            .await
            .map_err(|e| management_error(e, format!("declare queue {queue}: {hint}")))?;
        channel
            .queue_bind(
                queue,
                &topology.exchange,
                lane.as_str(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|e| management_error(e, format!("bind queue {queue}")))?;
    }

    // Delay queues are quorum queues too: RabbitMQ 3.10 added message TTL and at-least-once
    // dead-lettering to quorum queues, so a retry waiting here survives a broker restart and
    // is not lost on its way back (classic queues dead-letter at most once).
    for (lane, tier, queue) in topology.delay_queues() {
        let ttl = i64::try_from(tier.as_millis()).unwrap_or(i64::MAX);
        let args = queue_args(&[
            quorum(),
            // Per-queue message TTL (https://www.rabbitmq.com/ttl.html#per-queue-message-ttl).
            ("x-message-ttl", AMQPValue::LongLongInt(ttl)),
            // Dead-letter exchange and key (https://www.rabbitmq.com/dlx.html): back to the lane.
            ("x-dead-letter-exchange", text(&topology.exchange)),
            ("x-dead-letter-routing-key", text(lane.as_str())),
            // At-least-once dead-lettering, which requires reject-publish overflow
            // (https://www.rabbitmq.com/quorum-queues.html#dead-lettering).
            ("x-dead-letter-strategy", text("at-least-once")),
            ("x-overflow", text("reject-publish")),
        ]);
        channel
            .queue_declare(&queue, durable(), args)
            .await
            .map_err(|e| management_error(e, format!("declare queue {queue}: {hint}")))?;
    }

    channel
        .queue_declare(&topology.dead, durable(), queue_args(&[quorum()]))
        .await
        .map_err(|e| management_error(e, format!("declare queue {}: {hint}", topology.dead)))?;
    let _ = channel.close(REPLY_SUCCESS, "topology declared").await;
    Ok(())
}

/// Messages ready in `queue`.
async fn message_count(channel: &Channel, queue: &str) -> Result<u64, QueueError> {
    // A passive declare (AMQP 0-9-1 queue.declare passive=true) reports the message count
    // without creating anything.
    let passive = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    };
    channel
        .queue_declare(queue, passive, FieldTable::default())
        .await
        .map(|q| u64::from(q.message_count()))
        .map_err(|e| {
            management_error(
                e,
                format!("read the depth of {queue} (is the topology declared?)"),
            )
        })
}

#[async_trait]
impl Publisher for AmqpBroker {
    async fn publish(&self, envelope: &Envelope) -> Result<(), QueueError> {
        let body = encode(envelope)?;
        self.publish_raw(
            &self.shared.topology.exchange,
            envelope.lane.as_str(),
            &body,
            message_properties(envelope),
        )
        .await
    }
}

#[async_trait]
impl Broker for AmqpBroker {
    async fn declare(&self) -> Result<(), QueueError> {
        let live = self.shared.current()?;
        let limit = self.shared.settings.confirm_timeout;
        let declaring = declare_on(&live.connection, &self.shared.topology);
        within(limit, "declare the topology", declaring).await?;
        self.shared.declared.store(true, Ordering::SeqCst);
        tracing::info!(prefix = %self.shared.settings.prefix, "RabbitMQ topology declared");
        Ok(())
    }

    /// Consume both lanes. Consumer tags are `{consumer_tag}.realtime` and
    /// `{consumer_tag}.bulk`. Call once; after a reconnect the same receivers get the
    /// deliveries of the new connection.
    async fn consume_lanes(
        &self,
        consumer_tag: &str,
        realtime_prefetch: u16,
        bulk_prefetch: u16,
    ) -> Result<Consumers, QueueError> {
        if realtime_prefetch == 0 || bulk_prefetch == 0 {
            return Err(QueueError::Unknown(anyhow!(
                "prefetch must be at least 1 (it is the in-flight limit per lane)"
            )));
        }
        let _building = self.shared.rebuild.lock().await;
        let live = self.shared.current()?;
        if locked(&self.shared.consumer).is_some() {
            return Err(QueueError::Unknown(anyhow!(
                "this broker is already consuming"
            )));
        }
        let (realtime_tx, realtime) = mpsc::channel(usize::from(realtime_prefetch));
        let (bulk_tx, bulk) = mpsc::channel(usize::from(bulk_prefetch));
        let spec = ConsumerSpec {
            tag: consumer_tag.to_owned(),
            realtime_prefetch,
            bulk_prefetch,
            realtime: realtime_tx,
            bulk: bulk_tx,
        };
        let limit = self.shared.settings.confirm_timeout;
        within(limit, "subscribe", self.shared.subscribe(&live, &spec)).await?;
        *locked(&self.shared.consumer) = Some(spec);
        tracing::info!(
            consumer_tag,
            realtime_prefetch,
            bulk_prefetch,
            generation = live.generation,
            "consuming RabbitMQ"
        );
        Ok(Consumers { realtime, bulk })
    }

    async fn stop_consuming(&self) {
        let _building = self.shared.rebuild.lock().await;
        // Dropping the senders ends the receivers once the worker took what is in them.
        locked(&self.shared.consumer).take();
        let live = locked(&self.shared.live).clone();
        let Some(live) = live else { return };
        let lanes = locked(&live.lanes)
            .as_ref()
            .map(|l| (l.stop.clone(), l.realtime.clone(), l.bulk.clone()));
        let Some((stop, realtime, bulk)) = lanes else {
            return;
        };
        stop.cancel();
        // Keep the channels: deliveries already handed out are still acknowledged on them.
        for lane in [realtime, bulk] {
            let cancel = lane
                .channel
                .basic_cancel(&lane.consumer_tag, BasicCancelOptions::default());
            if let Ok(Err(error)) =
                tokio::time::timeout(self.shared.settings.confirm_timeout, cancel).await
            {
                tracing::debug!(%error, tag = %lane.consumer_tag, "cancel consumer");
            }
        }
    }

    async fn ack(&self, delivery: &Delivery) -> Result<(), QueueError> {
        self.settle_with(delivery, Settle::Ack).await
    }

    async fn retry(
        &self,
        delivery: &Delivery,
        next: &Envelope,
        delay: Duration,
    ) -> Result<(), QueueError> {
        let topology = &self.shared.topology;
        let tier = topology
            .tier_for(delay)
            .ok_or_else(|| QueueError::Unknown(anyhow!("no retry delay tiers configured")))?;
        let queue = topology.delay_queue(next.lane, tier);
        let body = encode(next)?;
        // Through the default exchange straight to the delay queue
        // (https://www.rabbitmq.com/tutorials/amqp-concepts.html#exchange-default).
        self.publish_raw("", &queue, &body, message_properties(next))
            .await?;
        self.ack(delivery).await
    }

    async fn defer(
        &self,
        delivery: &Delivery,
        envelope: &Envelope,
        delay: Duration,
    ) -> Result<(), QueueError> {
        let topology = &self.shared.topology;
        let tier = topology
            .defer_tier_for(delay)
            .ok_or_else(|| QueueError::Unknown(anyhow!("no defer tiers configured")))?;
        // Defer tiers exist on the bulk lane; a real-time message is never deferred, but if
        // one were, it would wait in the bulk lane's tier and come back to the bulk lane.
        let queue = topology.delay_queue(Lane::Bulk, tier);
        let body = encode(envelope)?;
        self.publish_raw("", &queue, &body, message_properties(envelope))
            .await?;
        self.ack(delivery).await
    }

    async fn dead_letter(
        &self,
        delivery: &Delivery,
        error_chain: &[String],
    ) -> Result<(), QueueError> {
        let mut headers = FieldTable::default();
        let chain: Vec<AMQPValue> = error_chain.iter().map(|e| text(e)).collect();
        headers.insert(
            ERROR_CHAIN_HEADER.into(),
            AMQPValue::FieldArray(FieldArray::from(chain)),
        );
        headers.insert(LANE_HEADER.into(), text(delivery.lane.as_str()));
        let mut properties = BasicProperties::default().with_delivery_mode(PERSISTENT);
        if let Ok(envelope) = &delivery.envelope {
            headers.insert(
                ATTEMPT_HEADER.into(),
                AMQPValue::LongLongInt(i64::from(envelope.attempt)),
            );
            properties = properties
                .with_content_type("application/json".into())
                .with_message_id(ShortString::from(envelope.id.as_str()))
                .with_type(envelope.kind().into());
        }
        let dead = &self.shared.topology.dead;
        self.publish_raw("", dead, &delivery.body, properties.with_headers(headers))
            .await
            .map_err(|e| match e {
                QueueError::Unknown(e) => {
                    QueueError::Unknown(e.context(format!("dead-letter to {dead}")))
                }
                other => other,
            })?;
        self.ack(delivery).await
    }

    async fn requeue(&self, delivery: &Delivery) -> Result<(), QueueError> {
        self.settle_with(delivery, Settle::Requeue).await
    }

    fn ready(&self) -> bool {
        self.shared.publishable().is_ok()
    }

    async fn depths(&self) -> Result<Depths, QueueError> {
        let limit = self.shared.settings.confirm_timeout;
        within(limit, "read queue depths", self.depths_now()).await
    }

    async fn close(&self) {
        self.shared.shutdown.cancel();
        let _building = self.shared.rebuild.lock().await;
        locked(&self.shared.consumer).take();
        let live = locked(&self.shared.live).take();
        let Some(live) = live else { return };
        let lanes = locked(&live.lanes).take();
        let limit = self.shared.settings.confirm_timeout;
        let closing = async {
            if let Some(lanes) = lanes {
                lanes.stop.cancel();
                for lane in [lanes.realtime, lanes.bulk] {
                    let _ = lane.channel.close(REPLY_SUCCESS, "closing").await;
                }
            }
            let _ = live.publisher().close(REPLY_SUCCESS, "closing").await;
            if live.connection.status().connected() {
                let _ = live.connection.close(REPLY_SUCCESS, "closing").await;
            }
            Ok(())
        };
        // Best effort: on a dead link the broker closes the connection on its side anyway.
        let _ = within(limit, "close the connection", closing).await;
        tracing::info!(url = %self.shared.display_url, "RabbitMQ connection closed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_wait_in_the_matching_tier_or_the_next_larger() {
        let t = Topology::new(
            "ges",
            &[
                Duration::from_secs(30),
                Duration::from_secs(5),
                Duration::from_secs(5),
            ],
        );
        assert_eq!(
            t.tiers,
            vec![Duration::from_secs(5), Duration::from_secs(30)]
        );
        assert_eq!(
            t.tier_for(Duration::from_secs(5)),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            t.tier_for(Duration::from_secs(1)),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            t.tier_for(Duration::from_secs(6)),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            t.tier_for(Duration::from_secs(3600)),
            Some(Duration::from_secs(30))
        );
        assert_eq!(Topology::new("ges", &[]).tier_for(Duration::ZERO), None);
    }

    #[test]
    fn names_follow_the_prefix() {
        let t = Topology::new("ges", &[Duration::from_millis(200)]);
        assert_eq!(t.exchange, "ges");
        assert_eq!(t.realtime, "ges.realtime");
        assert_eq!(t.bulk, "ges.bulk");
        assert_eq!(t.dead, "ges.dead");
        assert_eq!(
            t.delay_queue(Lane::Bulk, Duration::from_millis(200)),
            "ges.delay.bulk.200ms"
        );
        // Lanes and dead letters, one retry tier per lane, and the bulk lane's defer tiers.
        assert_eq!(t.all_queues().len(), 3 + 2 + DEFER_TIERS.len());
        assert!(t.all_queues().contains(&"ges.delay.bulk.3000ms".to_owned()));
        assert!(
            !t.all_queues()
                .contains(&"ges.delay.realtime.3000ms".to_owned())
        );
    }

    #[test]
    fn a_deferred_message_waits_in_the_longest_defer_tier_not_above_its_delay() {
        let t = Topology::new("ges", &[Duration::from_secs(5)]);
        let tier = |ms| t.defer_tier_for(Duration::from_millis(ms));
        assert_eq!(tier(10), Some(Duration::from_millis(500)));
        assert_eq!(tier(999), Some(Duration::from_millis(500)));
        assert_eq!(tier(2_999), Some(Duration::from_secs(1)));
        assert_eq!(tier(3_000), Some(Duration::from_secs(3)));
        assert_eq!(tier(29_000), Some(Duration::from_secs(10)));
        assert_eq!(tier(86_400_000), Some(Duration::from_secs(30)));
        // A tier in both lists is one queue.
        let shared = Topology::new("ges", &[Duration::from_secs(10)]);
        let bulk_10s: Vec<_> = shared
            .delay_queues()
            .into_iter()
            .filter(|(_, _, name)| name == "ges.delay.bulk.10000ms")
            .collect();
        assert_eq!(bulk_10s.len(), 1);
    }
}
