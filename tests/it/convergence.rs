//! Convergence, in process (issue 6): both simulators, the real adapters, a SQLite store
//! through the real migrations, the in-process queue and the real worker and ingress.
//!
//! - a full sync of 50 contacts (tasks, notes, appointments, 5 businesses) gives exactly the
//!   expected eKyte mapping, field by field;
//! - 20 edits on each side (GHL's arrive as signed webhooks, eKyte's by polling) converge, and
//!   a further pass plans nothing;
//! - the same events, duplicated and shuffled, change nothing;
//! - an incremental sync with nothing changed reads search pages only; a full sync's calls
//!   per contact are printed.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

use app::config::Config;
use app::demo::run::wait_quiet;
use app::demo::sim::{World, WorldSpec};
use app::demo::verify::verify;
use app::queue::memory::MemoryBroker;
use app::queue::{Broker, Consumers, Delivery, Depths};
use app::scheduler::{Job, enqueue};
use app::wiring::{self, App};
use ports::queue::{Envelope, Payload, Publisher, SyncMode};
use ports::{Priority, QueueError};

/// The in-process broker, remembering every message published through it.
struct Recording {
    inner: Arc<MemoryBroker>,
    published: Mutex<Vec<Envelope>>,
}

#[async_trait]
impl Publisher for Recording {
    async fn publish(&self, envelope: &Envelope) -> Result<(), QueueError> {
        self.inner.publish(envelope).await?;
        self.published.lock().unwrap().push(envelope.clone());
        Ok(())
    }
}

#[async_trait]
impl Broker for Recording {
    async fn declare(&self) -> Result<(), QueueError> {
        self.inner.declare().await
    }
    async fn consume_lanes(
        &self,
        tag: &str,
        realtime: u16,
        bulk: u16,
    ) -> Result<Consumers, QueueError> {
        self.inner.consume_lanes(tag, realtime, bulk).await
    }
    async fn stop_consuming(&self) {
        self.inner.stop_consuming().await
    }
    async fn ack(&self, d: &Delivery) -> Result<(), QueueError> {
        self.inner.ack(d).await
    }
    async fn retry(
        &self,
        d: &Delivery,
        next: &Envelope,
        delay: Duration,
    ) -> Result<(), QueueError> {
        self.inner.retry(d, next, delay).await
    }
    async fn defer(&self, d: &Delivery, env: &Envelope, delay: Duration) -> Result<(), QueueError> {
        self.inner.defer(d, env, delay).await
    }
    async fn dead_letter(&self, d: &Delivery, chain: &[String]) -> Result<(), QueueError> {
        self.inner.dead_letter(d, chain).await
    }
    async fn requeue(&self, d: &Delivery) -> Result<(), QueueError> {
        self.inner.requeue(d).await
    }
    fn ready(&self) -> bool {
        self.inner.ready()
    }
    async fn depths(&self) -> Result<Depths, QueueError> {
        self.inner.depths().await
    }
    async fn close(&self) {
        self.inner.close().await
    }
}

/// Everything running, in this process.
struct Running {
    world: World,
    app: App,
    broker: Arc<Recording>,
    stats: Arc<app::worker::WorkerStats>,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

const SETTLE: Duration = Duration::from_secs(300);

async fn start(spec: &WorldSpec) -> Running {
    start_with(spec, |_| {}).await
}

/// [`start`], with the service's configuration changed by `tweak`.
async fn start_with(spec: &WorldSpec, tweak: impl FnOnce(&mut Config)) -> Running {
    let world = World::start(spec).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = world
        .configure(Config::from_figment(Config::figment(None)).unwrap())
        .unwrap();
    tweak(&mut cfg);
    cfg.ghl.rate_max = spec.ghl_rate_max;
    cfg.ghl.rate_interval = Duration::from_millis(spec.ghl_rate_interval_ms);
    cfg.database.url =
        SecretString::from(format!("sqlite://{}/e2e.db?mode=rwc", dir.path().display()));
    cfg.queue.retry_delays = vec![Duration::from_millis(200), Duration::from_millis(500)];
    let store = wiring::connect_store(&cfg, wiring::keyring(&cfg, true).unwrap())
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let broker = Arc::new(Recording {
        inner: Arc::new(MemoryBroker::new()),
        published: Mutex::default(),
    });
    let app = App::build(cfg, store, broker.clone()).await.unwrap();
    let tenant = world.tenant(spec).unwrap();
    let (key, mcp, pit) = world.secrets();
    app::admin::add_tenant(
        app.store.as_ref(),
        app.store.as_ref(),
        &tenant,
        Some(key),
        mcp,
        Some(pit),
    )
    .await
    .unwrap();
    let shutdown = CancellationToken::new();
    let worker = app.worker("e2e".into());
    let stats = worker.stats.clone();
    tokio::spawn(worker.run(shutdown.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(app::ingress::serve(
        listener,
        app.ingress().unwrap(),
        shutdown.clone(),
    ));
    world
        .ghl
        .set_webhook_target(Some(format!("http://{addr}/webhooks/ghl")));
    Running {
        world,
        app,
        broker,
        stats,
        shutdown,
        _dir: dir,
    }
}

impl Running {
    async fn quiet(&self) {
        wait_quiet(self.broker.as_ref(), &self.world, &self.stats, SETTLE, None)
            .await
            .unwrap();
    }

    /// One sweep of the tenant, run here (its report is wanted), then quiet.
    async fn sweep(&self, mode: SyncMode) -> engine::SweepReport {
        let tenant = domain::TenantId::parse("sim").unwrap();
        let scope = self
            .app
            .engine
            .scope(&tenant, Priority::Bulk)
            .await
            .unwrap();
        let report = self
            .app
            .engine
            .sweep(&scope, mode, false, &engine::Quiet)
            .await
            .unwrap();
        self.quiet().await;
        report
    }

    async fn job(&self, job: Job) {
        enqueue(
            job,
            None,
            self.app.store.as_ref(),
            self.broker.as_ref(),
            self.app.clock.now(),
            false,
        )
        .await
        .unwrap();
        self.quiet().await;
    }

    /// The contact's link says it was deleted.
    async fn assert_contact_link_deleted(&self, contact: &str) {
        let link = ports::store::LinkStore::by_ghl(
            self.app.store.as_ref(),
            &domain::TenantId::parse("sim").unwrap(),
            domain::EntityKind::Contact,
            contact,
        )
        .await
        .unwrap()
        .expect("the deleted contact's link");
        assert_eq!(link.state, ports::store::LinkState::Deleted, "{link:?}");
    }

    /// Both sides' whole state, for "nothing changed" comparisons.
    fn snapshot(&self) -> (serde_json::Value, serde_json::Value) {
        let g = self.world.ghl.dump_location(&self.world.location).unwrap();
        let e = serde_json::to_value(
            self.world
                .ekyte
                .dump(self.world.company.company_id)
                .unwrap(),
        )
        .unwrap();
        (g, e)
    }

    /// Write requests the simulators served (anything but GET and searches).
    fn writes(&self) -> u64 {
        let count = |s: &sandbox::common::CounterSnapshot| {
            s.routes
                .iter()
                .filter(|(route, _)| {
                    !route.starts_with("GET ")
                        && !route.ends_with("/search")
                        && !route.contains("/polling/")
                })
                .flat_map(|(_, by_status)| by_status.iter())
                .filter(|(status, _)| **status < 300)
                .map(|(_, n)| *n)
                .sum::<u64>()
        };
        count(&self.world.ghl.counter_snapshot()) + count(&self.world.ekyte.counters().snapshot())
    }
}

fn spec() -> WorldSpec {
    WorldSpec {
        contacts: 50,
        tasks_per_contact: 2,
        notes_per_contact: 1,
        appointments_per_contact: 1,
        businesses: 5,
        seed: 42,
        ghl_rate_max: 100,
        ghl_rate_interval_ms: 1000,
        ..WorldSpec::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn both_sides_converge_and_stay_put() {
    let mut r = start(&spec()).await;

    // Full sync and a poll (the eKyte company starts with one workspace of its own, which
    // becomes a GHL contact): eKyte holds exactly the expected mapping.
    r.job(Job::Full).await;
    r.job(Job::Poll).await;
    let v = verify(&r.world).unwrap();
    assert!(v.converged, "after the full sync: {:#?}", v.problems);
    assert_eq!(v.counts.ghl_contacts_synced, 50 + 1, "{:?}", v.counts);
    assert_eq!(v.counts.ekyte_workspaces, 50 + 1, "{:?}", v.counts);
    assert_eq!(v.counts.ghl_tasks, v.counts.ekyte_tasks);
    // Two tasks per seeded contact, and one onboarding task per contact.
    assert_eq!(v.counts.ghl_tasks, 50 * 2 + 51, "{:?}", v.counts);
    assert_eq!(v.counts.ghl_notes, 50, "{:?}", v.counts);

    // 20 edits on each side, then what the scheduler does (a sweep of both sides).
    r.world.ghl_edits(20).unwrap();
    assert!(
        r.world
            .ghl
            .wait_webhooks_drained(Duration::from_secs(60))
            .await
    );
    r.quiet().await;
    r.world.ekyte_edits(20).unwrap();
    r.job(Job::Poll).await;
    for _ in 0..2 {
        r.job(Job::Full).await;
        r.job(Job::Poll).await;
    }
    let v = verify(&r.world).unwrap();
    assert!(v.converged, "after the edits: {:#?}", v.problems);

    // A further pass plans nothing: a dry run of every contact, and a poll.
    let scope = r
        .app
        .engine
        .scope(&domain::TenantId::parse("sim").unwrap(), Priority::Bulk)
        .await
        .unwrap();
    let ghl_dump = r.world.ghl.dump_location(&r.world.location).unwrap();
    for c in ghl_dump["contacts"].as_array().unwrap() {
        let id = domain::GhlContactId::parse(c["id"].as_str().unwrap()).unwrap();
        let report = r
            .app
            .engine
            .sync_contact(
                scope.clone(),
                &id,
                engine::Options {
                    dry_run: true,
                    ..engine::Options::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(
            report.writes(),
            0,
            "contact {id} still plans writes: {:#?}",
            report.lines
        );
    }
    let poll = r.app.engine.poll_ekyte(&scope).await.unwrap();
    assert_eq!(poll.changes, 0, "a poll after convergence found changes");
    r.quiet().await;

    // The same events, duplicated and shuffled, change nothing.
    let before = r.snapshot();
    let writes_before = r.writes();
    let mut replay: Vec<Envelope> = r
        .broker
        .published
        .lock()
        .unwrap()
        .iter()
        .filter(|e| matches!(e.payload, Payload::GhlEvent(_) | Payload::EkyteChange(_)))
        .cloned()
        .collect();
    assert!(
        replay.len() > 20,
        "too few events recorded to replay: {}",
        replay.len()
    );
    replay.extend(replay.clone());
    replay.shuffle(&mut rand::rngs::StdRng::seed_from_u64(9));
    for (i, env) in replay.iter().enumerate() {
        // A new id each, so the inbox does not simply drop them: the engine must find nothing
        // to do on its own.
        let env = Envelope {
            id: format!("replay-{i}-{}", env.id),
            ..env.clone()
        };
        r.app.engine.handle(&env).await.unwrap();
    }
    r.quiet().await;
    assert_eq!(
        r.writes(),
        writes_before,
        "replayed events wrote to a vendor"
    );
    assert_eq!(r.snapshot(), before, "replayed events changed a side");

    // An incremental sync with nothing changed reads search pages only.
    r.world.ghl.counters().reset();
    let inc = r.sweep(SyncMode::Incremental).await;
    let snap = r.world.ghl.counter_snapshot();
    let other: Vec<&String> = snap
        .routes
        .keys()
        .filter(|route| route.as_str() != "POST /contacts/search")
        .collect();
    assert!(
        other.is_empty(),
        "an idle incremental sync called {other:?}"
    );
    assert_eq!(inc.enqueued, 0, "{inc:?}");
    assert!(snap.route_total("POST", "/contacts/search") >= 1);

    // A full sync's calls per contact, for the record.
    r.world.ghl.counters().reset();
    r.world.ekyte.counters().reset();
    r.job(Job::Full).await;
    let g = r.world.ghl.counter_snapshot().total_requests();
    let e = r.world.ekyte.counters().snapshot().total_requests();
    let contacts = v.counts.ghl_contacts_synced as f64;
    println!(
        "full sync with nothing changed: {:.2} GHL calls and {:.2} eKyte calls per contact ({g} and {e} for {contacts} contacts)",
        g as f64 / contacts,
        e as f64 / contacts
    );
    r.shutdown.cancel();
}

/// A contact deleted in GHL while its webhook was lost: the search of the next full sync no
/// longer returns it, so the sync finds it through its link, re-reads it (404), and
/// deactivates its workspace.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_sync_catches_a_deletion_whose_webhook_was_lost() {
    let spec = WorldSpec {
        contacts: 6,
        businesses: 0,
        ..spec()
    };
    let r = start(&spec).await;
    // The eKyte company's own workspace becomes a GHL contact through the poll.
    r.job(Job::Full).await;
    r.job(Job::Poll).await;
    let v = verify(&r.world).unwrap();
    assert!(v.converged, "after the full sync: {:#?}", v.problems);

    let gone = r.world.contacts[0].clone();
    r.world.ghl.set_webhook_target(None);
    r.world.ghl.act_delete_contact(&gone).unwrap();
    assert!(
        r.world.ghl.counter_snapshot().event("webhooks_unrouted") >= 1,
        "the deletion's webhook was not lost"
    );
    let v = verify(&r.world).unwrap();
    assert!(!v.converged, "the lost deletion left nothing to catch");

    let report = r.sweep(SyncMode::Full).await;
    assert_eq!(report.unseen_linked, 1, "{report:?}");
    let v = verify(&r.world).unwrap();
    assert!(v.converged, "after the second full sync: {:#?}", v.problems);
    r.assert_contact_link_deleted(&gone).await;

    // The next full sync has nothing left to catch.
    let again = r.sweep(SyncMode::Full).await;
    assert_eq!(again.unseen_linked, 0, "{again:?}");
    r.shutdown.cancel();
}

/// A full sync through the queue goes in bounded messages: each sweep message queues at most
/// `sync.sweep_batch` contact syncs (rounded up to a page), then its continuation behind them.
/// The run still converges, and still catches a deletion whose webhook was lost, though no
/// one message saw every page: what the run saw is kept in the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_sync_goes_in_bounded_messages_and_still_sees_every_contact() {
    const PAGE: u32 = 10;
    const BATCH: u64 = 15;
    let spec = WorldSpec {
        contacts: 60,
        businesses: 0,
        ..spec()
    };
    let r = start_with(&spec, |cfg| {
        cfg.sync.page_size = PAGE;
        cfg.sync.sweep_batch = BATCH;
    })
    .await;
    r.job(Job::Full).await;
    r.job(Job::Poll).await;
    let v = verify(&r.world).unwrap();
    assert!(v.converged, "after the full sync: {:#?}", v.problems);
    assert_eq!(v.counts.ghl_contacts_synced, 60 + 1, "{:?}", v.counts);

    // The contact syncs each sweep message queued, in the order they were published.
    let batches = |published: &[Envelope]| -> Vec<usize> {
        let mut out = Vec::new();
        for env in published {
            match &env.payload {
                Payload::SyncFull { .. } | Payload::SyncContinue { .. } => out.push(0),
                Payload::SyncContact { .. } => {
                    if let Some(n) = out.last_mut() {
                        *n += 1;
                    }
                }
                _ => {}
            }
        }
        out
    };
    let published = r.broker.published.lock().unwrap().clone();
    let first = batches(&published);
    // 60 contacts, 2 pages (20) per message: the sync.full and two continuations, then
    // the last continuation finds nothing left.
    assert_eq!(first.iter().sum::<usize>(), 60, "{first:?}");
    assert!(first.len() >= 3, "the run went in one message: {first:?}");
    let bound = (BATCH as usize).div_ceil(PAGE as usize) * PAGE as usize;
    assert!(
        first.iter().all(|n| *n <= bound),
        "a sweep message queued more than {bound}: {first:?}"
    );

    // A deletion whose webhook was lost, caught by the next full sync through the queue.
    // Every other contact changed too (webhooks lost as well), so that this run also goes in
    // several messages: a contact one message saw must not count as unseen at the end.
    let gone = r.world.contacts[7].clone();
    r.world.ghl.set_webhook_target(None);
    r.world.ghl.act_delete_contact(&gone).unwrap();
    for id in r.world.contacts.iter().filter(|c| **c != gone) {
        r.world
            .ghl
            .act_update_contact(id, serde_json::json!({ "city": "Sorocaba" }))
            .unwrap();
    }
    r.broker.published.lock().unwrap().clear();
    r.job(Job::Full).await;
    let second = batches(&r.broker.published.lock().unwrap());
    assert!(second.len() >= 3, "the run went in one message: {second:?}");
    let v = verify(&r.world).unwrap();
    assert!(v.converged, "after the second full sync: {:#?}", v.problems);
    r.assert_contact_link_deleted(&gone).await;
    let unseen: Vec<_> = r
        .broker
        .published
        .lock()
        .unwrap()
        .iter()
        .filter(|e| e.id.starts_with("unseen:"))
        .map(|e| e.id.clone())
        .collect();
    assert_eq!(unseen.len(), 1, "{unseen:?}");
    assert!(unseen[0].ends_with(&gone), "{unseen:?}");
    // The run finished, and forgot what it saw.
    let runs = ports::store::RunStore::recent(
        r.app.store.as_ref(),
        &domain::TenantId::parse("sim").unwrap(),
        10,
    )
    .await
    .unwrap();
    assert!(
        runs.iter()
            .all(|run| run.status != ports::store::RunStatus::Running),
        "{runs:?}"
    );
    r.shutdown.cancel();
}

/// A worker died holding the claim on a contact's workspace create. The contact's sync
/// comes back to that claim until it turns stale, without spending the message's attempts
/// (only two here, fewer than the waits), then takes it over, finds no workspace of the
/// contact's name that nothing links, and creates it: once, and nothing is dead-lettered.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sync_waits_out_a_dead_workers_claim_without_spending_its_attempts() {
    let spec = WorldSpec {
        contacts: 3,
        businesses: 0,
        ..spec()
    };
    let stale_after = Duration::from_secs(3);
    let r = start_with(&spec, |cfg| {
        cfg.queue.max_attempts = 2;
        cfg.sync.claim_stale_after = stale_after;
    })
    .await;
    let held = r.world.contacts[0].clone();
    let claim = ports::store::LinkStore::claim(
        r.app.store.as_ref(),
        &ports::store::ClaimKey {
            tenant: domain::TenantId::parse("sim").unwrap(),
            kind: domain::EntityKind::Contact,
            side: domain::Side::Ghl,
            id: held.clone(),
            ghl_parent: None,
            ekyte_parent: None,
            pending: ports::store::BaseRecord::None,
        },
        "worker-gone/sync:0:lost",
        stale_after,
    )
    .await
    .unwrap();
    assert!(
        matches!(claim, ports::store::Claim::Claimed(_)),
        "{claim:?}"
    );
    let started = std::time::Instant::now();
    r.job(Job::Full).await;
    assert!(
        started.elapsed() >= stale_after,
        "quiet before the claim could be taken over"
    );
    let depths = r.broker.depths().await.unwrap();
    assert_eq!(depths.dead, 0, "dead-lettered while waiting: {depths:?}");
    let ws = r.world.ekyte.workspaces_by_external_id(
        r.world.company.company_id,
        &format!("ghl:{}:{held}", r.world.location),
    );
    assert_eq!(ws.len(), 1, "{ws:?}");
    // The eKyte company's own workspace becomes a GHL contact through the poll.
    r.job(Job::Poll).await;
    let v = verify(&r.world).unwrap();
    assert!(v.converged, "{:#?}", v.problems);
    r.shutdown.cancel();
}

/// A checkbox, a multi-select, a number and a date custom field go GHL → eKyte (the profile
/// note) → GHL (a rename made in eKyte comes back) and GHL still holds each value as it was,
/// in its own type: the simulator refuses a number or a list written as text.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn typed_custom_fields_round_trip_unchanged() {
    let spec = WorldSpec {
        contacts: 1,
        businesses: 0,
        ..spec()
    };
    let r = start(&spec).await;
    let kinds = [
        ("cfBox", "CHECKBOX", serde_json::json!(["yes"])),
        (
            "cfMulti",
            "MULTIPLE_OPTIONS",
            serde_json::json!(["red", "blue"]),
        ),
        ("cfNum", "NUMERICAL", serde_json::json!(12.5)),
        ("cfDate", "DATE", serde_json::json!("2026-04-10")),
    ];
    let specs: Vec<sandbox::ghl::CustomFieldSpec> = kinds
        .iter()
        .map(|(id, kind, _)| sandbox::ghl::CustomFieldSpec {
            id: (*id).into(),
            name: format!("Field {id}"),
            field_key: format!("contact.{id}"),
            data_type: (*kind).into(),
        })
        .collect();
    r.world
        .ghl
        .define_custom_fields(&r.world.location, &specs)
        .unwrap();
    let mut tenant = r.world.tenant(&spec).unwrap();
    tenant.settings.custom_fields = kinds.iter().map(|(id, _, _)| (*id).to_owned()).collect();
    ports::store::TenantStore::upsert(r.app.store.as_ref(), &tenant)
        .await
        .unwrap();
    let ana = r.world.contacts[0].clone();
    let values: Vec<serde_json::Value> = kinds
        .iter()
        .map(|(id, _, v)| serde_json::json!({"id": id, "value": v}))
        .collect();
    r.world
        .ghl
        .act_update_contact(&ana, serde_json::json!({ "customFields": values }))
        .unwrap();
    let held = |contact: &serde_json::Value| -> Vec<(String, serde_json::Value)> {
        let mut v: Vec<_> = contact["customFields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| (f["id"].as_str().unwrap().to_owned(), f["value"].clone()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    };
    let before = held(&r.world.ghl.contact(&ana).unwrap());
    assert_eq!(before.len(), 4, "{before:?}");

    r.job(Job::Full).await;
    let company = r.world.company.company_id;
    let dump = r.world.ekyte.dump(company).unwrap();
    let ws = r
        .world
        .ekyte
        .workspaces_by_external_id(company, &format!("ghl:{}:{ana}", r.world.location));
    assert_eq!(ws.len(), 1, "{ws:?}");
    let profile = dump
        .notes
        .iter()
        .map(|n| n.content.as_str())
        .find(|c| c.contains("red, blue"))
        .unwrap_or_else(|| panic!("no profile note shows the multi-select: {:?}", dump.notes));
    for shown in ["yes", "12.5", "2026-04-10"] {
        assert!(profile.contains(shown), "{shown} missing from {profile}");
    }

    r.world
        .ekyte
        .rename_workspace(company, ws[0].id, "Ana Renomeada")
        .unwrap();
    r.job(Job::Poll).await;
    let after = r.world.ghl.contact(&ana).unwrap();
    let name = format!(
        "{} {}",
        after["firstName"].as_str().unwrap_or_default(),
        after["lastName"].as_str().unwrap_or_default()
    );
    assert!(
        after["contactName"] == "Ana Renomeada" || name.trim() == "Ana Renomeada",
        "the rename did not come back: {after}"
    );
    assert_eq!(held(&after), before, "GHL's values changed on the way back");
    r.shutdown.cancel();
}
