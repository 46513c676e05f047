//! The brokers against their contract (queue/mod.rs): the RabbitMQ broker against a real
//! RabbitMQ (`GES_TEST_AMQP_URL`, default guest on 127.0.0.1:5672), each test on its own
//! exchange and queues (a uuid prefix, deleted by a guard), and the in-process broker.
//!
//! When RabbitMQ cannot be reached the RabbitMQ tests fail and say how to start it. Waits are
//! conditions with deadlines; a fixed window is used only to show that something does *not*
//! happen, and then only after a positive check that would have caught it.

// Helpers live outside `#[test]` functions, where clippy's exemption for `unwrap` does not
// reach; a failing unwrap is how a test should fail.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::future::Future;
use std::time::{Duration, Instant};

use app::queue::amqp::{AmqpBroker, AmqpSettings, Topology};
use app::queue::memory::MemoryBroker;
use app::queue::{Broker, Consumers, Delivery};
use domain::{GhlContactId, TenantId};
use lapin::options::{BasicPublishOptions, QueueDeleteOptions};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use ports::QueueError;
use ports::queue::{Envelope, Lane, Payload, Publisher};
use secrecy::SecretString;
use tokio::sync::mpsc;

const DEADLINE: Duration = Duration::from_secs(10);
const TIERS: [Duration; 2] = [Duration::from_millis(200), Duration::from_millis(400)];

fn amqp_url() -> String {
    std::env::var("GES_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

/// Fail (never skip) when RabbitMQ does not answer, saying how to start it.
fn require_rabbitmq() {
    let url = url::Url::parse(&amqp_url()).expect("GES_TEST_AMQP_URL is not a URL");
    let host = url.host_str().unwrap_or("127.0.0.1").to_owned();
    let port = url.port().unwrap_or(5672);
    let reachable = std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), port))
        .ok()
        .and_then(|mut addrs| addrs.next())
        .is_some_and(|addr| {
            std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok()
        });
    assert!(
        reachable,
        "RabbitMQ is not reachable on {host}:{port}. Start it with `rabbitmq-server -detached` \
         (or point GES_TEST_AMQP_URL at one) and run the tests again."
    );
}

fn envelope(id: &str, lane: Lane) -> Envelope {
    let mut env = Envelope::new(
        id,
        TenantId::parse("acme").unwrap(),
        Payload::SyncContact {
            contact: GhlContactId::parse("contact-1").unwrap(),
            dry_run: false,
            prefetched: None,
        },
        chrono::Utc::now(),
    );
    env.lane = lane;
    env
}

fn id_of(delivery: &Delivery) -> String {
    delivery.envelope.as_ref().expect("an envelope").id.clone()
}

async fn recv(rx: &mut mpsc::Receiver<Delivery>, what: &str) -> Delivery {
    match tokio::time::timeout(DEADLINE, rx.recv()).await {
        Ok(Some(delivery)) => delivery,
        Ok(None) => panic!("{what}: the receiver ended"),
        Err(_) => panic!("{what}: nothing delivered within {DEADLINE:?}"),
    }
}

/// Wait until `check` holds, polling, or fail after the deadline.
async fn wait_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(
            start.elapsed() < DEADLINE,
            "{what}: not within {DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// A fresh prefix whose exchange and queues are deleted when the guard drops (also when the
/// test panics).
struct Prefix {
    topology: Topology,
}

impl Prefix {
    fn new() -> Self {
        require_rabbitmq();
        let prefix = format!("ges-test-{}", uuid::Uuid::new_v4().simple());
        Self {
            topology: Topology::new(&prefix, &TIERS),
        }
    }

    fn settings(&self) -> AmqpSettings {
        let mut settings = AmqpSettings::new(
            self.topology.exchange.clone(),
            TIERS.to_vec(),
            Duration::from_secs(5),
        );
        settings.connection_name = format!("{} {}", self.topology.exchange, uuid::Uuid::new_v4());
        settings.connect_timeout = Duration::from_secs(5);
        settings.initial_reconnect_backoff = Duration::from_millis(50);
        settings.max_reconnect_backoff = Duration::from_millis(500);
        settings
    }

    async fn broker(&self) -> AmqpBroker {
        let broker = AmqpBroker::connect(SecretString::from(amqp_url()), self.settings())
            .await
            .expect("connect to RabbitMQ");
        broker.declare().await.expect("declare the topology");
        broker
    }
}

impl Drop for Prefix {
    fn drop(&mut self) {
        let topology = self.topology.clone();
        // Drop cannot await; delete on a thread with its own runtime.
        let deleted = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async move {
                let connection = Connection::connect(&amqp_url(), lapin_properties()).await?;
                let channel = connection.create_channel().await?;
                for queue in topology.all_queues() {
                    channel
                        .queue_delete(&queue, QueueDeleteOptions::default())
                        .await?;
                }
                channel
                    .exchange_delete(&topology.exchange, Default::default())
                    .await?;
                connection.close(200, "test done").await?;
                Ok::<_, anyhow::Error>(())
            })
        })
        .join();
        if let Ok(Err(e)) = deleted {
            eprintln!(
                "could not delete test queues of {}: {e:#}",
                self.topology.exchange
            );
        }
    }
}

fn lapin_properties() -> ConnectionProperties {
    ConnectionProperties::default()
        .with_executor(tokio_executor_trait::Tokio::current())
        .with_reactor(tokio_reactor_trait::Tokio)
}

/// Publish a raw body past the broker (a message that is not an envelope).
async fn publish_raw(topology: &Topology, lane: Lane, body: &[u8]) {
    let connection = Connection::connect(&amqp_url(), lapin_properties())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    channel.confirm_select(Default::default()).await.unwrap();
    let confirm = channel
        .basic_publish(
            &topology.exchange,
            lane.as_str(),
            BasicPublishOptions::default(),
            body,
            BasicProperties::default().with_delivery_mode(2),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(confirm.is_ack());
    connection.close(200, "done").await.unwrap();
}

/// Close the broker's connection from the server side, as an operator or a broker restart
/// would (`rabbitmqctl close_connection`), found by its unique connection name.
async fn force_close(connection_name: &str) {
    let name = connection_name.to_owned();
    tokio::task::spawn_blocking(move || {
        let listed = std::process::Command::new("rabbitmqctl")
            .args(["-q", "list_connections", "pid", "client_properties"])
            .output()
            .expect("run rabbitmqctl (it comes with rabbitmq-server)");
        let listing = String::from_utf8_lossy(&listed.stdout);
        let pid = listing
            .lines()
            .find(|line| line.contains(&name))
            .and_then(|line| line.split_whitespace().next())
            .unwrap_or_else(|| panic!("connection {name:?} not listed by rabbitmqctl:\n{listing}"))
            .to_owned();
        let closed = std::process::Command::new("rabbitmqctl")
            .args(["-q", "close_connection", &pid, "test: connection loss"])
            .output()
            .expect("run rabbitmqctl close_connection");
        assert!(
            closed.status.success(),
            "rabbitmqctl close_connection failed: {}",
            String::from_utf8_lossy(&closed.stderr)
        );
    })
    .await
    .unwrap();
}

// ---------------------------------------------------------------------------------------------
// Scenarios both brokers pass.

/// Published messages arrive on their lane with the envelope intact, and the ack settles them.
async fn publish_consume_ack(broker: &dyn Broker, consumers: &mut Consumers) {
    broker
        .publish(&envelope("rt-1", Lane::RealTime))
        .await
        .unwrap();
    broker
        .publish(&envelope("bulk-1", Lane::Bulk))
        .await
        .unwrap();

    let rt = recv(&mut consumers.realtime, "realtime").await;
    assert_eq!(rt.lane, Lane::RealTime);
    assert_eq!(rt.envelope.as_ref().unwrap(), &envelope_like(&rt, "rt-1"));
    assert!(!rt.redelivered);
    let bulk = recv(&mut consumers.bulk, "bulk").await;
    assert_eq!(id_of(&bulk), "bulk-1");
    assert_eq!(bulk.lane, Lane::Bulk);

    broker.ack(&rt).await.unwrap();
    broker.ack(&bulk).await.unwrap();
    // Settling twice is an error, not a broken channel.
    assert!(broker.ack(&rt).await.is_err(), "a second ack must fail");
}

/// The envelope a delivery should carry: what was published (the timestamp is taken from the
/// delivery, the rest is fixed).
fn envelope_like(delivery: &Delivery, id: &str) -> Envelope {
    let got = delivery.envelope.as_ref().unwrap();
    let mut expected = envelope(id, delivery.lane);
    expected.created_at = got.created_at;
    expected
}

/// A retry comes back on its lane after the delay with the next attempt.
async fn retry_returns_after_the_delay(broker: &dyn Broker, consumers: &mut Consumers) {
    broker
        .publish(&envelope("retry-1", Lane::RealTime))
        .await
        .unwrap();
    let first = recv(&mut consumers.realtime, "first delivery").await;
    assert_eq!(first.envelope.as_ref().unwrap().attempt, 0);

    let mut next = first.envelope.clone().unwrap();
    next.attempt += 1;
    let started = Instant::now();
    // 300 ms: the RabbitMQ broker waits in the next larger tier (400 ms).
    broker
        .retry(&first, &next, Duration::from_millis(300))
        .await
        .unwrap();
    let again = recv(&mut consumers.realtime, "retried delivery").await;
    let waited = started.elapsed();
    assert_eq!(id_of(&again), "retry-1");
    assert_eq!(again.envelope.as_ref().unwrap().attempt, 1);
    assert_eq!(again.lane, Lane::RealTime);
    assert!(
        waited >= Duration::from_millis(280),
        "the retry came back after {waited:?}, before its delay"
    );
    broker.ack(&again).await.unwrap();
    // The retried delivery was acked by `retry`.
    assert!(broker.ack(&first).await.is_err());
}

/// A deferred bulk delivery comes back on the bulk lane, after about its delay (RabbitMQ:
/// the longest defer tier not above it, 500 ms here), with the same attempt; it is counted
/// as delayed meanwhile, and the deferral acked the first delivery.
async fn defer_returns_with_the_same_attempt(broker: &dyn Broker, consumers: &mut Consumers) {
    let mut env = envelope("deferred-1", Lane::Bulk);
    env.attempt = 2;
    broker.publish(&env).await.unwrap();
    let first = recv(&mut consumers.bulk, "first delivery").await;
    let started = Instant::now();
    broker
        .defer(
            &first,
            first.envelope.as_ref().unwrap(),
            Duration::from_millis(700),
        )
        .await
        .unwrap();
    assert_eq!(broker.depths().await.unwrap().delayed, 1);
    let again = recv(&mut consumers.bulk, "deferred delivery").await;
    let waited = started.elapsed();
    assert_eq!(id_of(&again), "deferred-1");
    assert_eq!(
        again.envelope.as_ref().unwrap().attempt,
        2,
        "a deferral is no attempt"
    );
    assert!(
        waited >= Duration::from_millis(480),
        "the deferred delivery came back after {waited:?}, before its tier"
    );
    assert_eq!(broker.depths().await.unwrap().delayed, 0);
    broker.ack(&again).await.unwrap();
    assert!(broker.ack(&first).await.is_err(), "the deferral acked it");
}

/// Each lane holds its own number of unacknowledged deliveries.
async fn lanes_have_their_own_prefetch(broker: &dyn Broker, consumers: &mut Consumers) {
    for i in 0..4 {
        for lane in [Lane::RealTime, Lane::Bulk] {
            broker
                .publish(&envelope(&format!("{}-{i}", lane.as_str()), lane))
                .await
                .unwrap();
        }
    }
    for i in 0..3 {
        recv(&mut consumers.bulk, &format!("bulk {i}")).await;
    }
    recv(&mut consumers.realtime, "realtime 0").await;
    wait_until("the lanes' backlogs to be counted", || async {
        let d = broker.depths().await.unwrap();
        d.bulk == 1 && d.realtime == 3
    })
    .await;
    assert!(
        consumers.realtime.try_recv().is_err(),
        "more than 1 real-time unacked"
    );
    assert!(
        consumers.bulk.try_recv().is_err(),
        "more than 3 bulk unacked"
    );
}

/// With prefetch 1 on each lane, a bulk delivery held unacked does not hold back real time.
async fn realtime_is_not_blocked_by_bulk(broker: &dyn Broker, consumers: &mut Consumers) {
    for i in 0..3 {
        broker
            .publish(&envelope(&format!("bulk-{i}"), Lane::Bulk))
            .await
            .unwrap();
    }
    let held = recv(&mut consumers.bulk, "bulk").await;
    broker
        .publish(&envelope("urgent", Lane::RealTime))
        .await
        .unwrap();
    let urgent = recv(&mut consumers.realtime, "realtime while bulk is full").await;
    assert_eq!(id_of(&urgent), "urgent");
    assert!(
        consumers.bulk.try_recv().is_err(),
        "a second bulk delivery came out with prefetch 1"
    );
    broker.ack(&urgent).await.unwrap();
    broker.ack(&held).await.unwrap();
    let second = recv(&mut consumers.bulk, "bulk after the ack").await;
    assert_eq!(id_of(&second), "bulk-1");
    broker.ack(&second).await.unwrap();
}

/// `requeue` gives the delivery back; it comes again, marked redelivered.
async fn requeue_delivers_again(broker: &dyn Broker, consumers: &mut Consumers) {
    broker
        .publish(&envelope("again", Lane::Bulk))
        .await
        .unwrap();
    let first = recv(&mut consumers.bulk, "first").await;
    broker.requeue(&first).await.unwrap();
    let second = recv(&mut consumers.bulk, "requeued").await;
    assert_eq!(id_of(&second), "again");
    assert!(second.redelivered);
    broker.ack(&second).await.unwrap();
}

/// A body that is not an envelope is delivered (to be dead-lettered), not dropped.
async fn dead_letter_delivery(
    broker: &dyn Broker,
    consumers: &mut Consumers,
    chain: &[String],
) -> Delivery {
    let delivery = recv(&mut consumers.bulk, "poison").await;
    broker.dead_letter(&delivery, chain).await.unwrap();
    assert!(broker.ack(&delivery).await.is_err(), "dead_letter acked it");
    delivery
}

fn chain() -> Vec<String> {
    vec![
        "reconcile contact c-1".to_owned(),
        "eKyte rejected the task: Title is required".to_owned(),
    ]
}

// ---------------------------------------------------------------------------------------------
// RabbitMQ

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_publish_consume_ack_and_nothing_comes_back() {
    let prefix = Prefix::new();
    let broker = prefix.broker().await;
    let mut consumers = broker.consume("test-ack", 4).await.unwrap();
    publish_consume_ack(&broker, &mut consumers).await;
    broker.close().await;
    drop(consumers);

    // A new consumer on a new connection: acked messages are gone. The sentinel, published
    // last, is the first thing it gets.
    let broker = prefix.broker().await;
    let mut consumers = broker.consume("test-ack-2", 4).await.unwrap();
    broker
        .publish(&envelope("sentinel-rt", Lane::RealTime))
        .await
        .unwrap();
    broker
        .publish(&envelope("sentinel-bulk", Lane::Bulk))
        .await
        .unwrap();
    assert_eq!(
        id_of(&recv(&mut consumers.realtime, "rt").await),
        "sentinel-rt"
    );
    assert_eq!(
        id_of(&recv(&mut consumers.bulk, "bulk").await),
        "sentinel-bulk"
    );
    broker.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_messages_are_persistent_json_with_message_id_and_attempt_header() {
    let prefix = Prefix::new();
    let broker = prefix.broker().await;
    let mut env = envelope("wh-42", Lane::Bulk);
    env.attempt = 3;
    broker.publish(&env).await.unwrap();

    let connection = Connection::connect(&amqp_url(), lapin_properties())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    let got = channel
        .basic_get(&prefix.topology.bulk, Default::default())
        .await
        .unwrap()
        .expect("the message is in the bulk queue");
    let props = &got.delivery.properties;
    assert_eq!(props.delivery_mode(), &Some(2));
    assert_eq!(
        props.message_id().as_ref().map(|m| m.as_str()),
        Some("wh-42")
    );
    assert_eq!(
        props.content_type().as_ref().map(|m| m.as_str()),
        Some("application/json")
    );
    let attempt = props
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get("attempt").cloned());
    assert_eq!(attempt, Some(lapin::types::AMQPValue::LongLongInt(3)));
    assert_eq!(Envelope::from_json(&got.delivery.data).unwrap(), env);
    connection.close(200, "done").await.unwrap();
    broker.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_unacked_deliveries_come_back_after_the_connection_closes() {
    let prefix = Prefix::new();
    let broker = prefix.broker().await;
    let mut consumers = broker.consume("test-unacked", 4).await.unwrap();
    for id in ["u-1", "u-2"] {
        broker.publish(&envelope(id, Lane::RealTime)).await.unwrap();
    }
    let a = recv(&mut consumers.realtime, "u-1").await;
    let b = recv(&mut consumers.realtime, "u-2").await;
    assert!(!a.redelivered && !b.redelivered);
    broker.close().await;
    assert!(
        matches!(broker.ack(&a).await, Err(QueueError::Unavailable { .. })),
        "acking on a closed broker fails cleanly"
    );

    let broker = prefix.broker().await;
    let mut consumers = broker.consume("test-unacked-2", 4).await.unwrap();
    let again: Vec<Delivery> = vec![
        recv(&mut consumers.realtime, "again 1").await,
        recv(&mut consumers.realtime, "again 2").await,
    ];
    let ids: BTreeSet<String> = again.iter().map(id_of).collect();
    assert_eq!(ids, BTreeSet::from(["u-1".to_owned(), "u-2".to_owned()]));
    assert!(again.iter().all(|d| d.redelivered));
    for d in &again {
        broker.ack(d).await.unwrap();
    }
    broker.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_prefetch_is_honoured() {
    let prefix = Prefix::new();
    let broker = prefix.broker().await;
    for i in 0..5 {
        broker
            .publish(&envelope(&format!("p-{i}"), Lane::Bulk))
            .await
            .unwrap();
    }
    let mut consumers = broker.consume("test-prefetch", 2).await.unwrap();
    let first = recv(&mut consumers.bulk, "p-0").await;
    let second = recv(&mut consumers.bulk, "p-1").await;
    assert_eq!([id_of(&first), id_of(&second)], ["p-0", "p-1"]);
    // RabbitMQ holds the other three: the queue still counts them as ready.
    wait_until("3 ready in the bulk queue", || async {
        broker.depths().await.unwrap().bulk == 3
    })
    .await;
    assert!(
        consumers.bulk.try_recv().is_err(),
        "a third delivery came out"
    );

    broker.ack(&first).await.unwrap();
    let third = recv(&mut consumers.bulk, "p-2 after one ack").await;
    assert_eq!(id_of(&third), "p-2");
    wait_until("2 ready in the bulk queue", || async {
        broker.depths().await.unwrap().bulk == 2
    })
    .await;
    assert!(consumers.bulk.try_recv().is_err(), "more than 2 unacked");
    broker.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_retry_returns_after_the_tier_ttl_with_the_next_attempt() {
    let prefix = Prefix::new();
    let broker = prefix.broker().await;
    let mut consumers = broker.consume("test-retry", 4).await.unwrap();
    retry_returns_after_the_delay(&broker, &mut consumers).await;

    // While a retry waits it is counted as delayed, in the tier that fits.
    broker
        .publish(&envelope("retry-2", Lane::Bulk))
        .await
        .unwrap();
    let first = recv(&mut consumers.bulk, "retry-2").await;
    let mut next = first.envelope.clone().unwrap();
    next.attempt += 1;
    broker
        .retry(&first, &next, Duration::from_secs(3600))
        .await
        .unwrap();
    let depths = broker.depths().await.unwrap();
    assert_eq!(depths.delayed, 1, "{depths:?}");
    let again = recv(&mut consumers.bulk, "retry-2 from the largest tier").await;
    assert_eq!(again.envelope.as_ref().unwrap().attempt, 1);
    broker.ack(&again).await.unwrap();
    broker.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_a_deferred_delivery_returns_after_its_tier_with_the_same_attempt() {
    let prefix = Prefix::new();
    let broker = prefix.broker().await;
    let mut consumers = broker.consume("test-defer", 4).await.unwrap();
    defer_returns_with_the_same_attempt(&broker, &mut consumers).await;
    broker.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_each_lane_has_its_own_prefetch() {
    let prefix = Prefix::new();
    let broker = prefix.broker().await;
    let mut consumers = broker
        .consume_lanes("test-lanes-prefetch", 1, 3)
        .await
        .unwrap();
    lanes_have_their_own_prefetch(&broker, &mut consumers).await;
    broker.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_dead_letters_keep_the_body_and_the_error_chain() {
    let prefix = Prefix::new();
    let broker = prefix.broker().await;
    let mut consumers = broker.consume("test-dead", 4).await.unwrap();

    broker
        .publish(&envelope("poison-1", Lane::Bulk))
        .await
        .unwrap();
    let poison = dead_letter_delivery(&broker, &mut consumers, &chain()).await;
    // Not an envelope at all: delivered with the reason, and dead-lettered as it came.
    publish_raw(&prefix.topology, Lane::Bulk, b"{not json").await;
    let garbage = recv(&mut consumers.bulk, "garbage").await;
    assert!(garbage.envelope.is_err());
    broker
        .dead_letter(&garbage, &["not an envelope".to_owned()])
        .await
        .unwrap();

    let depths = broker.depths().await.unwrap();
    assert_eq!((depths.dead, depths.bulk), (2, 0), "{depths:?}");
    let dead = broker.take_dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 2);
    assert_eq!(dead[0].body, poison.body);
    assert_eq!(dead[0].error_chain, chain());
    assert_eq!(dead[1].body, b"{not json");
    assert_eq!(dead[1].error_chain, vec!["not an envelope".to_owned()]);
    assert_eq!(broker.depths().await.unwrap().dead, 0);
    broker.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_declare_twice_and_from_two_brokers_is_fine() {
    let prefix = Prefix::new();
    let a = prefix.broker().await;
    a.declare().await.unwrap();
    let b = prefix.broker().await;
    b.declare().await.unwrap();
    assert_eq!(
        b.depths().await.unwrap(),
        app::queue::Depths::default(),
        "declaring again keeps the queues (and creates nothing else)"
    );
    a.close().await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_publish_without_topology_is_refused_not_lost() {
    let prefix = Prefix::new();
    let broker = AmqpBroker::connect(SecretString::from(amqp_url()), prefix.settings())
        .await
        .unwrap();
    // No declare: the exchange does not exist.
    let err = broker
        .publish(&envelope("x", Lane::Bulk))
        .await
        .expect_err("publishing to a missing exchange must fail");
    assert!(matches!(err, QueueError::Nacked { .. }), "{err:?}");
    // The broker recovers its publishing channel once the topology exists.
    wait_until("ready again", || async { broker.ready() }).await;
    broker.declare().await.unwrap();
    broker.publish(&envelope("y", Lane::Bulk)).await.unwrap();
    assert_eq!(broker.depths().await.unwrap().bulk, 1);
    broker.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_unroutable_messages_are_refused() {
    let prefix = Prefix::new();
    let broker = prefix.broker().await;
    // The exchange is there but the bulk queue is gone: without `mandatory` the message would
    // vanish with a positive confirm.
    let connection = Connection::connect(&amqp_url(), lapin_properties())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    channel
        .queue_delete(&prefix.topology.bulk, QueueDeleteOptions::default())
        .await
        .unwrap();
    connection.close(200, "done").await.unwrap();
    let err = broker.publish(&envelope("lost?", Lane::Bulk)).await;
    match err {
        Err(QueueError::Nacked { message }) => assert!(message.contains("unroutable"), "{message}"),
        other => panic!("expected Nacked, got {other:?}"),
    }
    // The real-time lane is unaffected.
    broker
        .publish(&envelope("fine", Lane::RealTime))
        .await
        .unwrap();
    broker.close().await;
}

/// A RabbitMQ policy limited to one test's queues; cleared on drop.
struct Policy(String);

impl Policy {
    fn set(name: &str, pattern: &str, definition: &str) -> Self {
        rabbitmqctl(&[
            "set_policy",
            "--apply-to",
            "queues",
            name,
            pattern,
            definition,
        ]);
        Self(name.to_owned())
    }
}

impl Drop for Policy {
    fn drop(&mut self) {
        rabbitmqctl(&["clear_policy", &self.0]);
    }
}

fn rabbitmqctl(args: &[&str]) {
    let out = std::process::Command::new("rabbitmqctl")
        .arg("-q")
        .args(args)
        .output()
        .expect("run rabbitmqctl (it comes with rabbitmq-server)");
    assert!(
        out.status.success(),
        "rabbitmqctl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_a_broker_nack_is_an_error() {
    let prefix = Prefix::new();
    let broker = prefix.broker().await;
    // A full queue that rejects publishes: RabbitMQ answers with basic.nack
    // (https://www.rabbitmq.com/maxlength.html#overflow-behaviour).
    let pattern = format!("^{}\\.bulk$", prefix.topology.exchange);
    let _policy = Policy::set(
        &format!("{}-full", prefix.topology.exchange),
        &pattern,
        r#"{"max-length":0,"overflow":"reject-publish"}"#,
    );
    let started = Instant::now();
    let err = loop {
        // Accepted until the policy applies; then every publish is refused.
        match broker.publish(&envelope("refused", Lane::Bulk)).await {
            Ok(()) => assert!(started.elapsed() < DEADLINE, "no nack within {DEADLINE:?}"),
            Err(e) => break e,
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert!(matches!(err, QueueError::Nacked { .. }), "{err:?}");
    // The publishing channel survives a nack.
    broker
        .publish(&envelope("ok", Lane::RealTime))
        .await
        .unwrap();
    broker.close().await;
}

/// A TCP proxy to RabbitMQ that can stop passing bytes without closing anything, like a
/// network that silently drops packets.
struct FrozenLink {
    port: u16,
    frozen: tokio::sync::watch::Sender<bool>,
}

impl FrozenLink {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (frozen, watch) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let upstream = tokio::net::TcpStream::connect("127.0.0.1:5672")
                    .await
                    .unwrap();
                let (client_read, client_write) = client.into_split();
                let (upstream_read, upstream_write) = upstream.into_split();
                tokio::spawn(pass(client_read, upstream_write, watch.clone()));
                tokio::spawn(pass(upstream_read, client_write, watch.clone()));
            }
        });
        Self { port, frozen }
    }

    fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    fn freeze(&self) {
        self.frozen.send_replace(true);
    }
}

/// Copy bytes one way, holding them while the link is frozen.
async fn pass(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut frozen: tokio::sync::watch::Receiver<bool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if frozen.wait_for(|f| !*f).await.is_err() || to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_no_confirm_in_time_is_a_confirm_timeout_not_a_hang() {
    let prefix = Prefix::new();
    let link = FrozenLink::start().await;
    let mut settings = prefix.settings();
    settings.confirm_timeout = Duration::from_millis(500);
    let broker = AmqpBroker::connect(SecretString::from(link.url()), settings)
        .await
        .unwrap();
    broker.declare().await.unwrap();
    broker
        .publish(&envelope("before", Lane::Bulk))
        .await
        .unwrap();

    link.freeze();
    let started = Instant::now();
    let err = broker.publish(&envelope("unconfirmed", Lane::Bulk)).await;
    let waited = started.elapsed();
    assert!(
        matches!(err, Err(QueueError::ConfirmTimeout(t)) if t == Duration::from_millis(500)),
        "{err:?}"
    );
    assert!(
        waited >= Duration::from_millis(500) && waited < Duration::from_secs(2),
        "gave up after {waited:?}"
    );
    broker.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_realtime_is_not_blocked_by_a_full_bulk_lane() {
    let prefix = Prefix::new();
    let broker = prefix.broker().await;
    let mut consumers = broker.consume("test-lanes", 1).await.unwrap();
    realtime_is_not_blocked_by_bulk(&broker, &mut consumers).await;
    broker.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_requeue_delivers_again() {
    let prefix = Prefix::new();
    let broker = prefix.broker().await;
    let mut consumers = broker.consume("test-requeue", 2).await.unwrap();
    requeue_delivers_again(&broker, &mut consumers).await;
    broker.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_closed_or_unreachable_broker_is_unavailable_quickly() {
    let prefix = Prefix::new();
    let broker = prefix.broker().await;
    assert!(broker.ready());
    broker.close().await;
    assert!(!broker.ready());
    let started = Instant::now();
    let err = broker.publish(&envelope("late", Lane::RealTime)).await;
    assert!(
        matches!(err, Err(QueueError::Unavailable { .. })),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(1));

    // Nothing listens on port 1.
    let unreachable = SecretString::from("amqp://guest:secret-pw@127.0.0.1:1/%2f".to_owned());
    let err = AmqpBroker::connect(unreachable.clone(), prefix.settings())
        .await
        .err()
        .expect("connecting to a closed port fails");
    assert!(matches!(err, QueueError::Unavailable { .. }), "{err:?}");
    let shown = format!("{err}");
    assert!(!shown.contains("secret-pw"), "the password leaked: {shown}");
    assert!(shown.contains("rabbitmq-server -detached"), "{shown}");

    // Started lazily against a broker that is down: not ready, and publishing fails fast
    // (the ingress answers 429) instead of waiting for the confirm timeout.
    let lazy = AmqpBroker::connect_lazy(unreachable, prefix.settings()).unwrap();
    assert!(!lazy.ready());
    let started = Instant::now();
    let err = lazy.publish(&envelope("down", Lane::RealTime)).await;
    assert!(
        matches!(err, Err(QueueError::Unavailable { .. })),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(1));
    lazy.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_lazy_broker_connects_in_the_background() {
    let prefix = Prefix::new();
    let broker =
        AmqpBroker::connect_lazy(SecretString::from(amqp_url()), prefix.settings()).unwrap();
    wait_until("lazy broker ready", || async { broker.ready() }).await;
    broker.declare().await.unwrap();
    broker.publish(&envelope("lazy", Lane::Bulk)).await.unwrap();
    broker.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_connection_loss_and_recovery_loses_nothing() {
    let prefix = Prefix::new();
    let broker = prefix.broker().await;
    let mut consumers = broker.consume("test-recovery", 8).await.unwrap();
    for id in ["c-1", "c-2", "c-3"] {
        broker.publish(&envelope(id, Lane::RealTime)).await.unwrap();
    }
    let before: Vec<Delivery> = vec![
        recv(&mut consumers.realtime, "c-1").await,
        recv(&mut consumers.realtime, "c-2").await,
        recv(&mut consumers.realtime, "c-3").await,
    ];
    // One is acked before the loss: it must not come back.
    let (acked, unacked) = before.split_first().unwrap();
    broker.ack(acked).await.unwrap();
    let generation = broker.generation();

    // Watch readiness from before the close: the outage may be over before rabbitmqctl returns.
    let watcher = {
        let broker = broker.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let mut down_since = None;
            while started.elapsed() < DEADLINE {
                match (broker.ready(), down_since) {
                    (false, None) => down_since = Some(Instant::now()),
                    (true, Some(since)) => return Some(since.elapsed()),
                    _ => {}
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            None
        })
    };
    force_close(broker.connection_name()).await;
    let outage = watcher.await.unwrap();
    assert!(
        outage.is_some(),
        "ready() did not go false and then true again within {DEADLINE:?}"
    );
    assert!(broker.generation() > generation, "no new connection");

    // Deliveries of the old connection cannot be settled; RabbitMQ redelivers them.
    for old in unacked {
        let err = broker.ack(old).await;
        assert!(
            matches!(err, Err(QueueError::Unavailable { .. })),
            "{err:?}"
        );
    }
    // Published after the reconnect, consumed through the same receiver.
    broker
        .publish(&envelope("c-4", Lane::RealTime))
        .await
        .unwrap();
    let mut seen = BTreeSet::new();
    while seen.len() < 3 {
        let d = recv(&mut consumers.realtime, "after the reconnect").await;
        if d.redelivered {
            assert!(
                ["c-2", "c-3"].contains(&id_of(&d).as_str()),
                "{}",
                id_of(&d)
            );
        }
        broker.ack(&d).await.unwrap();
        assert!(
            seen.insert(id_of(&d)),
            "{} delivered twice after recovery",
            id_of(&d)
        );
    }
    assert_eq!(
        seen,
        BTreeSet::from(["c-2".to_owned(), "c-3".to_owned(), "c-4".to_owned()])
    );
    // Nothing else is pending: a sentinel is the next delivery.
    broker
        .publish(&envelope("sentinel", Lane::RealTime))
        .await
        .unwrap();
    assert_eq!(
        id_of(&recv(&mut consumers.realtime, "sentinel").await),
        "sentinel"
    );
    broker.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_stop_consuming_ends_the_receivers_and_acks_still_work() {
    let prefix = Prefix::new();
    let broker = prefix.broker().await;
    let mut consumers = broker.consume("test-stop", 4).await.unwrap();
    broker
        .publish(&envelope("in-flight", Lane::Bulk))
        .await
        .unwrap();
    let in_flight = recv(&mut consumers.bulk, "in-flight").await;
    broker.stop_consuming().await;
    assert!(
        tokio::time::timeout(DEADLINE, consumers.bulk.recv())
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        tokio::time::timeout(DEADLINE, consumers.realtime.recv())
            .await
            .unwrap()
            .is_none()
    );
    broker
        .publish(&envelope("later", Lane::Bulk))
        .await
        .unwrap();
    broker.ack(&in_flight).await.unwrap();
    // Only "later" is left; the acked one is gone.
    assert_eq!(broker.depths().await.unwrap().bulk, 1);
    broker.close().await;
}

// ---------------------------------------------------------------------------------------------
// In-process

#[tokio::test]
async fn memory_publish_consume_ack_and_nothing_comes_back() {
    let broker = MemoryBroker::new();
    let mut consumers = broker.consume("test", 4).await.unwrap();
    publish_consume_ack(&broker, &mut consumers).await;
    broker.drop_connection();
    broker
        .publish(&envelope("sentinel", Lane::RealTime))
        .await
        .unwrap();
    assert_eq!(
        id_of(&recv(&mut consumers.realtime, "sentinel").await),
        "sentinel"
    );
    assert!(consumers.bulk.try_recv().is_err());
}

#[tokio::test]
async fn memory_unacked_deliveries_come_back_after_a_connection_loss() {
    let broker = MemoryBroker::new();
    let mut consumers = broker.consume("test", 4).await.unwrap();
    for id in ["u-1", "u-2"] {
        broker.publish(&envelope(id, Lane::RealTime)).await.unwrap();
    }
    let a = recv(&mut consumers.realtime, "u-1").await;
    let b = recv(&mut consumers.realtime, "u-2").await;
    broker.ack(&a).await.unwrap();
    broker.drop_connection();
    assert!(
        broker.ack(&b).await.is_err(),
        "the old delivery cannot be acked"
    );
    let again = recv(&mut consumers.realtime, "u-2 again").await;
    assert_eq!(id_of(&again), "u-2");
    assert!(again.redelivered);
    broker.ack(&again).await.unwrap();
    assert_eq!(broker.unacked(), (0, 0));
}

#[tokio::test]
async fn memory_prefetch_is_honoured() {
    let broker = MemoryBroker::new();
    for i in 0..5 {
        broker
            .publish(&envelope(&format!("p-{i}"), Lane::Bulk))
            .await
            .unwrap();
    }
    let mut consumers = broker.consume("test", 2).await.unwrap();
    let first = recv(&mut consumers.bulk, "p-0").await;
    let _second = recv(&mut consumers.bulk, "p-1").await;
    assert!(consumers.bulk.try_recv().is_err());
    assert_eq!(broker.unacked(), (0, 2));
    assert_eq!(broker.depths().await.unwrap().bulk, 3);
    broker.ack(&first).await.unwrap();
    assert_eq!(id_of(&recv(&mut consumers.bulk, "p-2").await), "p-2");
    assert!(consumers.bulk.try_recv().is_err());
    assert_eq!(broker.unacked(), (0, 2));
}

#[tokio::test]
async fn memory_retry_returns_after_the_delay_with_the_next_attempt() {
    let broker = MemoryBroker::new();
    let mut consumers = broker.consume("test", 4).await.unwrap();
    retry_returns_after_the_delay(&broker, &mut consumers).await;

    broker
        .publish(&envelope("later", Lane::Bulk))
        .await
        .unwrap();
    let first = recv(&mut consumers.bulk, "later").await;
    let mut next = first.envelope.clone().unwrap();
    next.attempt += 1;
    broker
        .retry(&first, &next, Duration::from_millis(200))
        .await
        .unwrap();
    assert_eq!(broker.depths().await.unwrap().delayed, 1);
    let again = recv(&mut consumers.bulk, "later again").await;
    assert_eq!(again.envelope.as_ref().unwrap().attempt, 1);
    assert_eq!(broker.depths().await.unwrap().delayed, 0);
}

#[tokio::test]
async fn memory_a_deferred_delivery_returns_after_its_delay_with_the_same_attempt() {
    let broker = MemoryBroker::new();
    let mut consumers = broker.consume("test", 4).await.unwrap();
    defer_returns_with_the_same_attempt(&broker, &mut consumers).await;
}

#[tokio::test]
async fn memory_each_lane_has_its_own_prefetch() {
    let broker = MemoryBroker::new();
    let mut consumers = broker.consume_lanes("test", 1, 3).await.unwrap();
    lanes_have_their_own_prefetch(&broker, &mut consumers).await;
}

#[tokio::test]
async fn memory_dead_letters_keep_the_body_and_the_error_chain() {
    let broker = MemoryBroker::new();
    let mut consumers = broker.consume("test", 4).await.unwrap();
    broker
        .publish(&envelope("poison-1", Lane::Bulk))
        .await
        .unwrap();
    let poison = dead_letter_delivery(&broker, &mut consumers, &chain()).await;
    let dead = broker.dead_letters();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].body, poison.body);
    assert_eq!(dead[0].error_chain, chain());
    assert_eq!(broker.depths().await.unwrap().dead, 1);
    assert_eq!(broker.take_dead_letters(10), dead);
    assert!(broker.dead_letters().is_empty());
}

#[tokio::test]
async fn memory_realtime_is_not_blocked_by_a_full_bulk_lane() {
    let broker = MemoryBroker::new();
    let mut consumers = broker.consume("test", 1).await.unwrap();
    realtime_is_not_blocked_by_bulk(&broker, &mut consumers).await;
}

#[tokio::test]
async fn memory_requeue_delivers_again() {
    let broker = MemoryBroker::new();
    let mut consumers = broker.consume("test", 2).await.unwrap();
    requeue_delivers_again(&broker, &mut consumers).await;
}

#[tokio::test]
async fn memory_consume_once_stop_and_close() {
    let broker = MemoryBroker::new();
    let mut consumers = broker.consume("test", 2).await.unwrap();
    assert!(
        broker.consume("again", 2).await.is_err(),
        "one consumer only"
    );
    broker
        .publish(&envelope("in-flight", Lane::Bulk))
        .await
        .unwrap();
    let in_flight = recv(&mut consumers.bulk, "in-flight").await;
    broker.stop_consuming().await;
    assert!(consumers.bulk.recv().await.is_none());
    assert!(consumers.realtime.recv().await.is_none());
    broker.ack(&in_flight).await.unwrap();

    assert!(broker.ready());
    broker.close().await;
    assert!(!broker.ready());
    let err = broker.publish(&envelope("late", Lane::Bulk)).await;
    assert!(
        matches!(err, Err(QueueError::Unavailable { .. })),
        "{err:?}"
    );
}
