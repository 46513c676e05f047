//! What the chaos test observes from outside the service: the broker's queues (through a
//! connection of its own that survives the broker's restart), the simulators' counters, and
//! a fingerprint of both sides' data, to tell when the system has gone quiet.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use secrecy::SecretString;

use app::demo::sim::World;
use app::queue::amqp::{AmqpBroker, AmqpSettings};
use app::queue::{Broker, DeadMessage, Depths};

/// A broker handle of the test's own, for depths, poison and the dead-letter queue.
pub struct Queues {
    pub broker: AmqpBroker,
    url: String,
    exchange: String,
}

impl Queues {
    /// Connect lazily (the handle reconnects by itself across the broker's restart).
    pub fn new(url: &str, prefix: &str, retry_delays: Vec<Duration>) -> anyhow::Result<Self> {
        let mut settings = AmqpSettings::new(prefix, retry_delays, Duration::from_secs(10));
        settings.connection_name = format!("chaos test {prefix}");
        settings.max_reconnect_backoff = Duration::from_secs(1);
        let broker = AmqpBroker::connect_lazy(SecretString::from(url.to_owned()), settings)
            .map_err(|e| anyhow!("{e}"))?;
        Ok(Self {
            broker,
            url: url.to_owned(),
            exchange: prefix.to_owned(),
        })
    }

    pub async fn depths(&self) -> Option<Depths> {
        self.broker.depths().await.ok()
    }

    /// Publish raw bodies (not envelopes) to a lane, with publisher confirms, through a
    /// connection of their own: the product's publisher only sends well-formed envelopes.
    pub async fn publish_raw(&self, lane: &str, bodies: &[Vec<u8>]) -> anyhow::Result<()> {
        let props = ConnectionProperties::default()
            .with_executor(tokio_executor_trait::Tokio::current())
            .with_reactor(tokio_reactor_trait::Tokio);
        let conn = Connection::connect(&self.url, props)
            .await
            .context("connecting to publish poison")?;
        let ch = conn.create_channel().await?;
        ch.confirm_select(ConfirmSelectOptions::default()).await?;
        for (i, body) in bodies.iter().enumerate() {
            let confirm = ch
                .basic_publish(
                    &self.exchange,
                    lane,
                    // mandatory: an unroutable message comes back instead of vanishing.
                    BasicPublishOptions {
                        mandatory: true,
                        ..BasicPublishOptions::default()
                    },
                    body,
                    BasicProperties::default()
                        .with_delivery_mode(2)
                        .with_message_id(format!("chaos-poison-raw-{i}").into()),
                )
                .await?
                .await?;
            let taken = confirm.is_ack();
            if !taken || confirm.take_message().is_some() {
                bail!("the broker did not take poison message {i} (nacked or unroutable)");
            }
        }
        let _ = conn.close(200, "poison published").await;
        Ok(())
    }

    /// Take every message of the dead-letter queue.
    pub async fn take_dead(&self) -> anyhow::Result<Vec<DeadMessage>> {
        let mut all = Vec::new();
        loop {
            let batch = self
                .broker
                .take_dead_letters(500)
                .await
                .map_err(|e| anyhow!("{e}"))?;
            if batch.is_empty() {
                return Ok(all);
            }
            all.extend(batch);
        }
    }
}

/// A fingerprint of both simulators' data: equal fingerprints mean nothing was written in
/// between (GHL's `dateUpdated` moves on every write, even one that changes nothing).
pub fn data_fingerprint(world: &World) -> anyhow::Result<u64> {
    let ghl = world
        .ghl
        .dump_location(&world.location)
        .map_err(|e| anyhow!("{e:?}"))?;
    let ek = world
        .ekyte
        .dump(world.company.company_id)
        .map_err(|e| anyhow!("{e:?}"))?;
    let mut h = DefaultHasher::new();
    ghl.to_string().hash(&mut h);
    serde_json::to_string(&ek)?.hash(&mut h);
    Ok(h.finish())
}

/// Requests the simulators have answered so far (any route, any status).
pub fn api_requests(world: &World) -> u64 {
    world.ghl.counter_snapshot().total_requests()
        + world.ekyte.counters().snapshot().total_requests()
}

/// What "quiet" looked like when it was reached, or the last state before the deadline.
#[derive(Debug, Clone, Default)]
pub struct Quiet {
    pub waited: Duration,
    pub depths: Option<Depths>,
}

/// Wait until nothing is queued or delayed, no webhook is on its way, and the simulators
/// answered no request for `still` — workers in other processes cannot be asked what they
/// hold, but every message in hand makes calls (it re-fetches), so silence at the APIs with
/// empty queues means nothing is in flight. Fails past `deadline`.
pub async fn wait_quiet(
    queues: &Queues,
    world: &World,
    still: Duration,
    deadline: Duration,
) -> anyhow::Result<Quiet> {
    let started = Instant::now();
    let mut last_calls = api_requests(world);
    let mut quiet_since: Option<Instant> = None;
    let mut last_depths = None;
    loop {
        let depths = queues.depths().await;
        let calls = api_requests(world);
        let idle = depths
            .as_ref()
            .is_some_and(|d| d.realtime + d.bulk + d.delayed == 0)
            && world.ghl.webhooks_in_flight() == 0
            && calls == last_calls;
        last_calls = calls;
        last_depths = depths.clone().or(last_depths);
        if idle {
            let since = *quiet_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= still {
                return Ok(Quiet {
                    waited: started.elapsed(),
                    depths,
                });
            }
        } else {
            quiet_since = None;
        }
        if started.elapsed() > deadline {
            bail!(
                "the system did not go quiet within {deadline:?}: queues {:?}, webhooks in flight {}",
                last_depths,
                world.ghl.webhooks_in_flight()
            );
        }
        // The polling interval of the condition above.
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
