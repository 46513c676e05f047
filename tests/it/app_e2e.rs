//! Acceptance of issue 7: the app as one whole — webhook ingress, RabbitMQ, the worker, the
//! CLI and the binary — on the machine's real RabbitMQ and PostgreSQL, against both
//! simulators.
//!
//! Each test has its own queue prefix (deleted afterwards) and its own migrated PostgreSQL
//! database, so the tests run in parallel with each other and with other suites. A service
//! that is not running fails the test with the way to start it. The broker is made "down"
//! only through a proxy of the test's own; the machine's RabbitMQ is never stopped. Waits are
//! conditions with deadlines (`support::eventually`, `wait_quiet`).
//!
//! The tests that need the real process (`dlq replay`, SIGTERM, `demo`) build
//! `ghl-ekyte-sync` once, next to this test binary (see `support::binary`).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use app::demo::run::wait_quiet;
use app::demo::sim::SYNC_TAG;
use app::demo::verify::verify;
use app::queue::{Broker, Depths};
use app::worker::WorkerStats;
use domain::GhlContactId;
use e2e::support::{AppSpec, TestApp, WebhookSigner, binary_command, eventually, require_rabbitmq};
use ports::queue::{Envelope, Payload, Publisher};
use ports::store::{DeadLetterStore, Inbox};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// Long enough for any wait on this machine; short enough that a hang fails in test time.
const SETTLE: Duration = Duration::from_secs(60);

/// The title of the onboarding task `World::tenant` configures (M4: once per contact).
const ONBOARDING_TITLE: &str = "Welcome call";

async fn depths(t: &TestApp) -> Depths {
    t.amqp.depths().await.expect("queue depths")
}

/// One `sync.contact` message per seeded contact, on the bulk lane; returns their ids.
async fn enqueue_contact_syncs(t: &TestApp) -> Vec<String> {
    let mut ids = Vec::new();
    for contact in &t.world.contacts {
        let id = format!("e2e-sync-{contact}");
        let env = Envelope::new(
            id.clone(),
            t.tenant.id.clone(),
            Payload::SyncContact {
                contact: GhlContactId::parse(contact).expect("contact id"),
                dry_run: false,
                prefetched: None,
            },
            chrono::Utc::now(),
        );
        t.amqp.publish(&env).await.expect("publish a sync.contact");
        ids.push(id);
    }
    ids
}

/// How many of these messages the engine recorded as handled (its inbox is written in the
/// same step as the work, before the ack).
async fn handled(t: &TestApp, ids: &[String]) -> usize {
    let mut n = 0;
    for id in ids {
        if Inbox::seen(
            t.app.store.as_ref(),
            &t.tenant.id,
            engine::INBOX_MESSAGES,
            id,
        )
        .await
        .expect("read the inbox")
        {
            n += 1;
        }
    }
    n
}

/// GHL tasks per contact, by title.
fn ghl_task_titles(t: &TestApp) -> BTreeMap<String, Vec<String>> {
    let dump = t
        .world
        .ghl
        .dump_location(&t.world.location)
        .expect("GHL dump");
    let mut titles: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for task in dump["tasks"].as_array().into_iter().flatten() {
        if let (Some(c), Some(title)) = (task["contactId"].as_str(), task["title"].as_str()) {
            titles
                .entry(c.to_owned())
                .or_default()
                .push(title.to_owned());
        }
    }
    titles
}

/// eKyte task titles of one workspace.
fn ekyte_task_titles(t: &TestApp, workspace: i64) -> Vec<String> {
    let dump = t
        .world
        .ekyte
        .dump(t.world.company.company_id)
        .expect("eKyte dump");
    dump.tasks
        .iter()
        .filter(|task| task.workspace_id == workspace)
        .map(|task| task.title.clone())
        .collect()
}

/// One eKyte poll, settled, then the field-by-field verdict on both sides. The simulator's
/// company has an eKyte-only workspace that only the poller carries to GHL, so a verdict
/// without a poll would always find it unsynced.
async fn poll_then_verify(t: &TestApp, stats: &WorkerStats) {
    app::scheduler::enqueue(
        app::scheduler::Job::Poll,
        Some(&t.tenant.id),
        t.app.store.as_ref(),
        t.amqp.as_ref(),
        chrono::Utc::now(),
        false,
    )
    .await
    .expect("enqueue a poll");
    wait_quiet(t.app.broker.as_ref(), &t.world, stats, SETTLE, None)
        .await
        .expect("settle after the poll");
    let verdict = verify(&t.world).expect("verify");
    assert!(
        verdict.converged,
        "GHL and eKyte disagree: {:#?}",
        verdict.problems
    );
}

/// Every contact has exactly one workspace, its onboarding task exactly once in GHL, and the
/// same tasks in eKyte as in GHL, each once; then the field-by-field check of both sides.
async fn assert_each_contact_synced_exactly_once(
    t: &TestApp,
    stats: &WorkerStats,
    contacts: &[String],
) {
    let ghl_titles = ghl_task_titles(t);
    for contact in contacts {
        let workspaces = t.workspaces_of(contact);
        assert_eq!(
            workspaces.len(),
            1,
            "contact {contact} must have exactly one workspace, has {}",
            workspaces.len()
        );
        let ghl = ghl_titles.get(contact).cloned().unwrap_or_default();
        let onboarding = ghl.iter().filter(|t| *t == ONBOARDING_TITLE).count();
        assert_eq!(
            onboarding, 1,
            "contact {contact}: the onboarding task must exist once in GHL, found {onboarding}"
        );
        let mut ghl_sorted = ghl.clone();
        ghl_sorted.sort();
        let mut ekyte = ekyte_task_titles(t, workspaces[0].id);
        ekyte.sort();
        assert_eq!(
            ekyte, ghl_sorted,
            "contact {contact}: eKyte's tasks must be GHL's, each once"
        );
    }
    poll_then_verify(t, stats).await;
}

fn new_contact(first: &str, last: &str) -> Value {
    json!({
        "firstName": first,
        "lastName": last,
        "email": format!("{}.{}@example.test", first.to_lowercase(), uuid::Uuid::new_v4().simple()),
        "tags": [SYNC_TAG],
    })
}

async fn get_status(http: &reqwest::Client, url: String) -> u16 {
    http.get(url)
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

/// Serve the ingress, wait until it is ready (the GHL simulator retries a refused webhook
/// only minutes later), and point the simulator's webhooks at it.
async fn webhooks_to_ingress(t: &TestApp, stop: CancellationToken) {
    let ingress = t.serve_ingress(stop).await;
    let http = reqwest::Client::new();
    eventually("the ingress is ready", SETTLE, || async {
        (get_status(&http, format!("http://{ingress}/readyz")).await == 200).then_some(())
    })
    .await;
    t.world
        .ghl
        .set_webhook_target(Some(format!("http://{ingress}/webhooks/ghl")));
}

// ---------------------------------------------------------------------------------------------

/// The real-time path end to end: the GHL simulator signs and sends the webhook of a person's
/// new contact to the ingress, which publishes it to RabbitMQ with a confirm; the worker
/// re-fetches the contact and creates its workspace in eKyte — within 2 s of the person's
/// action. Nothing else could have created it: no sweep runs, and only the webhook names the
/// new contact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_webhook_for_a_new_contact_reaches_ekyte_within_2s() {
    let t = TestApp::start(AppSpec::new("webhook")).await;
    let worker = t.spawn_worker();
    let stop = CancellationToken::new();
    webhooks_to_ingress(&t, stop.clone()).await;

    let started = Instant::now();
    let contact = t
        .world
        .ghl
        .act_create_contact(&t.world.location, new_contact("Nova", "Cliente"))
        .expect("create a contact in GHL");
    let id = contact["id"].as_str().expect("the contact's id").to_owned();
    let workspace = eventually(
        "the new contact's workspace in eKyte",
        Duration::from_secs(2),
        || async { t.workspaces_of(&id).into_iter().next() },
    )
    .await;
    let latency = started.elapsed();
    eprintln!("webhook → eKyte workspace in {latency:?}");
    assert!(latency <= Duration::from_secs(2), "took {latency:?}");
    assert!(workspace.active);

    // It went through the signed webhook: the simulator sent it and the worker handled it.
    let sent = t.world.ghl.webhook_log();
    assert!(
        sent.iter()
            .any(|w| w["type"] == "ContactCreate" && w["id"] == json!(id)),
        "the simulator sent no ContactCreate for {id}"
    );
    wait_quiet(t.app.broker.as_ref(), &t.world, &worker.stats, SETTLE, None)
        .await
        .expect("settle");
    assert_eq!(t.workspaces_of(&id).len(), 1, "one workspace, not more");
    assert_eq!(worker.stats.dead_lettered.load(Ordering::Relaxed), 0);
    poll_then_verify(&t, &worker.stats).await;
    assert_eq!(t.workspaces_of(&id).len(), 1, "still one workspace");
    stop.cancel();
    worker.stop().await;
}

/// The broker connection is lost while the worker is busy (the link is cut under it, so
/// RabbitMQ takes back every unacknowledged delivery), stays down a moment, and comes back.
/// Every contact still ends up synced, and nothing shows twice: one workspace per contact,
/// one onboarding task per contact in GHL, each task once in eKyte — although RabbitMQ
/// redelivered messages that had already been handled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_connection_drops_mid_run_and_nothing_is_lost_or_doubled() {
    let mut spec = AppSpec::new("connloss");
    spec.world.contacts = 24;
    spec.world.tasks_per_contact = 2;
    spec.world.businesses = 2;
    spec.ekyte_latency_ms = 10;
    spec.through_proxy = true;
    let t = TestApp::start(spec).await;
    let proxy = t.proxy.as_ref().expect("proxy");
    let ids = enqueue_contact_syncs(&t).await;
    let n = ids.len() as u64;
    let generation = t.amqp.generation();
    let worker = t.spawn_worker();
    let stats = worker.stats.clone();

    // Cut while deliveries are in flight, after a few were done.
    eventually("a few messages done and more in flight", SETTLE, || async {
        (stats.done.load(Ordering::SeqCst) >= 3 && stats.in_flight.load(Ordering::SeqCst) >= 1)
            .then_some(())
    })
    .await;
    proxy.cut();
    let done_at_cut = stats.done.load(Ordering::SeqCst);
    eventually("readiness false while the link is down", SETTLE, || async {
        (!t.amqp.ready()).then_some(())
    })
    .await;
    // The handlers running at the cut finish (their settlement cannot reach the broker).
    eventually("the in-flight messages finished", SETTLE, || async {
        (stats.in_flight.load(Ordering::SeqCst) == 0).then_some(())
    })
    .await;
    assert!(
        done_at_cut < n,
        "everything was done before the cut; the test proves nothing"
    );

    proxy.restore();
    eventually("reconnected", SETTLE, || async {
        (t.amqp.ready() && t.amqp.generation() > generation).then_some(())
    })
    .await;
    wait_quiet(t.app.broker.as_ref(), &t.world, &stats, SETTLE, None)
        .await
        .expect("settle after the reconnect");

    assert_eq!(handled(&t, &ids).await, ids.len(), "every message handled");
    assert!(
        stats.settled() > n,
        "RabbitMQ redelivered nothing ({} settlements for {n} messages): the cut hit no delivery",
        stats.settled()
    );
    assert_eq!(stats.dead_lettered.load(Ordering::SeqCst), 0);
    assert_eq!(depths(&t).await, Depths::default(), "nothing left queued");
    assert_each_contact_synced_exactly_once(&t, &worker.stats, &t.world.contacts).await;
    worker.stop().await;
}

/// A message that can never succeed (the tenant has no eKyte credentials: Unauthorized, a
/// permanent error) is dead-lettered at once, without retries, with its error chain — in the
/// store (what `dlq` reads) and in the broker's dead-letter queue. Once the credentials are
/// stored, the real `dlq replay` command publishes it again and the worker processes it; a
/// second replay of the same letter does nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_message_is_dead_lettered_with_its_chain_and_replayed_once_fixed() {
    let mut spec = AppSpec::new("poison");
    spec.ekyte_credentials = false;
    let t = TestApp::start(spec).await;
    let worker = t.spawn_worker();
    let stop = CancellationToken::new();
    webhooks_to_ingress(&t, stop.clone()).await;
    let contact = t
        .world
        .ghl
        .act_create_contact(&t.world.location, new_contact("Veneno", "Teste"))
        .expect("create a contact in GHL");
    let id = contact["id"].as_str().expect("the contact's id").to_owned();

    let store: &dyn DeadLetterStore = t.app.store.as_ref();
    // The simulator sends the webhook on its own time: wait for its dead letter, then for
    // quiet (a retry would still be in the queue).
    eventually("the webhook's dead letter", SETTLE, || async {
        (!store
            .list(None, false, None, 100)
            .await
            .expect("dead letters")
            .is_empty())
        .then_some(())
    })
    .await;
    wait_quiet(t.app.broker.as_ref(), &t.world, &worker.stats, SETTLE, None)
        .await
        .expect("settle");
    let letters = store
        .list(None, false, None, 100)
        .await
        .expect("dead letters");
    assert_eq!(letters.len(), 1, "one dead letter: {letters:#?}");
    let letter = &letters[0];
    assert_eq!(letter.letter.kind, "ghl.event");
    assert_eq!(letter.letter.tenant.as_ref(), Some(&t.tenant.id));
    assert_eq!(
        letter.letter.attempts, 1,
        "a permanent error is not retried"
    );
    let chain = letter.letter.error_chain.join(" | ");
    assert!(
        letter.letter.error_chain.len() >= 2 && chain.contains("no eKyte credentials"),
        "the error chain must keep the cause: {chain}"
    );
    assert_eq!(worker.stats.retried.load(Ordering::SeqCst), 0);
    assert_eq!(worker.stats.dead_lettered.load(Ordering::SeqCst), 1);
    assert!(t.workspaces_of(&id).is_empty());

    // The broker's copy: the same message and chain, parked in the dead-letter queue.
    assert_eq!(depths(&t).await.dead, 1);
    let parked = t.amqp.take_dead_letters(10).await.expect("read the DLQ");
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0].error_chain, letter.letter.error_chain);
    assert_eq!(
        String::from_utf8_lossy(&parked[0].body),
        letter.letter.envelope
    );

    // Fix the cause, then replay with the real command.
    t.add_tenant(true).await;
    let replay = t
        .command(&["dlq", "replay", &letter.id.to_string()])
        .await
        .output()
        .await
        .expect("run dlq replay");
    let stdout = String::from_utf8_lossy(&replay.stdout);
    assert!(
        replay.status.success() && stdout.contains("replayed 1 dead letter"),
        "dlq replay failed ({}): {stdout}\n{}",
        replay.status,
        String::from_utf8_lossy(&replay.stderr)
    );
    eventually("the replayed message's workspace", SETTLE, || async {
        t.workspaces_of(&id).into_iter().next()
    })
    .await;
    wait_quiet(t.app.broker.as_ref(), &t.world, &worker.stats, SETTLE, None)
        .await
        .expect("settle after the replay");
    let after = store.get(letter.id).await.expect("the dead letter");
    assert!(after.replayed_at.is_some(), "marked replayed");
    assert!(
        store
            .list(None, false, None, 100)
            .await
            .expect("list")
            .is_empty()
    );

    // Replaying it again is refused as already done: nothing is published twice.
    let again = t
        .command(&["dlq", "replay", &letter.id.to_string()])
        .await
        .output()
        .await
        .expect("run dlq replay again");
    assert!(again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("replayed 0 dead letter"),
        "{}",
        String::from_utf8_lossy(&again.stdout)
    );
    wait_quiet(t.app.broker.as_ref(), &t.world, &worker.stats, SETTLE, None)
        .await
        .expect("settle");
    assert_eq!(t.workspaces_of(&id).len(), 1);
    assert_eq!(worker.stats.dead_lettered.load(Ordering::SeqCst), 1);
    assert_eq!(depths(&t).await, Depths::default());
    poll_then_verify(&t, &worker.stats).await;
    stop.cancel();
    worker.stop().await;
}

/// SIGTERM reaches the real `worker` process while a message is half-way (its workspace
/// exists, its tasks are still being written). The process finishes what it started, acks
/// it, gives back what it had not started, and exits 0: afterwards exactly the messages not
/// handled are queued again (an unacked in-flight message would be requeued on top; a lost
/// one would be missing), every contact touched is complete, and a new worker finishes the
/// rest with no contact synced twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_work_finishes_in_flight_messages_acks_them_and_exits_0() {
    let mut spec = AppSpec::new("sigterm");
    spec.world.contacts = 12;
    spec.world.tasks_per_contact = 3;
    spec.world.businesses = 2;
    spec.ekyte_latency_ms = 40;
    spec.prefetch = 2;
    let t = TestApp::start(spec).await;
    let ids = enqueue_contact_syncs(&t).await;
    let log = tempfile::NamedTempFile::new().expect("log file");
    let mut child = t
        .command(&["worker", "--consumer-tag", "e2e-sigterm"])
        .await
        .stdout(log.reopen().expect("log"))
        .stderr(log.reopen().expect("log"))
        .spawn()
        .expect("start the worker process");
    let pid = child.id().expect("the worker's pid");
    let log_text = || std::fs::read_to_string(log.path()).unwrap_or_default();

    // Half-way: a contact's workspace exists but its message is not recorded as handled.
    let (started, done) = eventually("a message half-way", SETTLE, || async {
        let started = t
            .world
            .contacts
            .iter()
            .filter(|c| !t.workspaces_of(c).is_empty())
            .count();
        let done = handled(&t, &ids).await;
        (started > done).then_some((started, done))
    })
    .await;
    let signalled = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(signalled.success());
    let status = tokio::time::timeout(SETTLE, child.wait())
        .await
        .unwrap_or_else(|_| panic!("the worker did not exit after SIGTERM:\n{}", log_text()))
        .expect("wait for the worker");
    assert_eq!(
        status.code(),
        Some(0),
        "the worker must exit 0 on SIGTERM:\n{}",
        log_text()
    );

    let finished = handled(&t, &ids).await;
    eprintln!(
        "at SIGTERM {started} contact(s) started, {done} handled; after exit {finished} handled of {}",
        ids.len()
    );
    assert!(
        finished >= started,
        "the messages in flight at SIGTERM must finish ({finished} handled, {started} had started)"
    );
    assert!(
        finished < ids.len(),
        "the worker went on consuming after SIGTERM (all {} handled)",
        ids.len()
    );
    let ghl_titles = ghl_task_titles(&t);
    for contact in &t.world.contacts {
        if let Some(ws) = t.workspaces_of(contact).first() {
            let expected = ghl_titles.get(contact).map_or(0, Vec::len);
            assert_eq!(
                ekyte_task_titles(&t, ws.id).len(),
                expected,
                "contact {contact} was left half-done by the shutdown"
            );
        }
    }
    // Acked exactly what it handled: everything else, and only that, is queued again.
    let remaining = (ids.len() - finished) as u64;
    let queued = eventually(
        "the queue to hold the unhandled messages",
        SETTLE,
        || async {
            let d = depths(&t).await;
            (d.bulk == remaining).then_some(d)
        },
    )
    .await;
    assert_eq!(
        queued,
        Depths {
            bulk: remaining,
            ..Depths::default()
        }
    );
    assert!(
        log_text().contains("worker stopped"),
        "the worker's log: {}",
        log_text()
    );

    // A new worker finishes the rest; nothing is done twice.
    let worker = t.spawn_worker();
    wait_quiet(t.app.broker.as_ref(), &t.world, &worker.stats, SETTLE, None)
        .await
        .expect("settle");
    assert_eq!(handled(&t, &ids).await, ids.len());
    assert_eq!(
        worker.stats.done.load(Ordering::SeqCst),
        remaining,
        "the new worker got exactly the messages the old one gave back"
    );
    assert_each_contact_synced_exactly_once(&t, &worker.stats, &t.world.contacts).await;
    worker.stop().await;
}

/// While the broker is unreachable, the ingress cannot accept durably and answers 429 (GHL
/// retries only on 429; any other answer loses the event) — never a 5xx — and readiness
/// says so; when the broker is back, the same webhook retried is accepted with 200. Only
/// accepted webhooks are in the queue, each once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ingress_answers_429_never_5xx_while_the_broker_is_down_and_200_once_back() {
    let signer = WebhookSigner::new();
    let mut spec = AppSpec::new("ingress429");
    spec.through_proxy = true;
    spec.webhook_key_pem = Some(signer.public_pem());
    let t = TestApp::start(spec).await;
    let proxy = t.proxy.as_ref().expect("proxy");
    let stop = CancellationToken::new();
    let ingress = t.serve_ingress(stop.clone()).await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("http client");
    let location = t.world.location.clone();
    let readyz = format!("http://{ingress}/readyz");

    let first = WebhookSigner::contact_create(&location, "contactBeforeOutage1");
    let (status, body) = signer.post(&http, ingress, &first).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("accepted")));
    assert_eq!(get_status(&http, readyz.clone()).await, 200);
    assert_eq!(depths(&t).await.realtime, 1);

    proxy.cut();
    let during = WebhookSigner::contact_create(&location, "contactDuringOutage1");
    let mut answers = vec![signer.post(&http, ingress, &during).await];
    eventually("readiness reports the broker down", SETTLE, || async {
        (get_status(&http, readyz.clone()).await == 503).then_some(())
    })
    .await;
    for i in 0..4 {
        let body = WebhookSigner::contact_create(&location, &format!("contactDuring{i:05}"));
        answers.push(signer.post(&http, ingress, &body).await);
    }
    answers.push(signer.post(&http, ingress, &during).await);
    for (status, body) in &answers {
        assert_eq!(
            (*status, body["status"].as_str()),
            (429, Some("retry")),
            "while the broker is down every webhook must get 429: {answers:?}"
        );
    }
    assert_eq!(
        get_status(&http, format!("http://{ingress}/healthz")).await,
        200,
        "liveness does not depend on the broker"
    );

    proxy.restore();
    // GHL retries the refused webhook, same body and signature, until it is accepted.
    let started = Instant::now();
    let mut retries = Vec::new();
    loop {
        let (status, body) = signer.post(&http, ingress, &during).await;
        retries.push(status);
        assert!(
            status == 429 || status == 200,
            "after the restore: {status} {body}"
        );
        if status == 200 {
            assert_eq!(body["status"], "accepted");
            break;
        }
        assert!(
            started.elapsed() < SETTLE,
            "not accepted again within {SETTLE:?}: {retries:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(get_status(&http, readyz.clone()).await, 200);
    // Accepted ones are queued once each; the refused ones were not.
    assert_eq!(depths(&t).await.realtime, 2);
    let (status, body) = signer.post(&http, ingress, &first).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("duplicate")));
    assert_eq!(depths(&t).await.realtime, 2);
    stop.cancel();
    t.amqp.close().await;
}

/// `ghl-ekyte-sync demo --report json` exits 0 and reports convergence on RabbitMQ and on
/// the in-process queue (a small world; the demo itself checks both sides field by field).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_converges_on_rabbitmq_and_on_the_in_process_queue() {
    require_rabbitmq();
    let run = |queue: &'static str| async move {
        let started = Instant::now();
        let out = binary_command()
            .await
            .args([
                "demo",
                "--report",
                "json",
                "--queue",
                queue,
                "--contacts",
                "6",
            ])
            .env("GES_QUEUE__URL", e2e::support::amqp_url())
            .output()
            .await
            .expect("run the demo");
        (queue, out, started.elapsed())
    };
    let (amqp, memory) = tokio::join!(run("amqp"), run("memory"));
    for (queue, out, took) in [amqp, memory] {
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        eprintln!("demo --queue {queue}: {} in {took:?}", out.status);
        assert!(
            out.status.success(),
            "demo --queue {queue} failed ({}):\n{stdout}\n{stderr}",
            out.status
        );
        let report: Value = serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("demo --queue {queue}: not JSON ({e}):\n{stdout}"));
        assert_eq!(report["converged"], true, "{queue}: {report:#}");
        assert_eq!(report["contacts"], 6);
        let label = report["queue"].as_str().unwrap_or_default();
        let expected = if queue == "amqp" {
            "RabbitMQ"
        } else {
            "in-process"
        };
        assert!(label.contains(expected), "{queue}: ran on {label}");
        assert!(report["messages_done"].as_u64().unwrap_or(0) > 0);
        assert!(report["webhooks_sent"].as_u64().unwrap_or(0) > 0);
        assert_eq!(report["dead_letters"], 0, "{queue}: {report:#}");
    }
}
