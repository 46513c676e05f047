//! A tenant's life through GHL's own webhooks (issue 15), on the real ingress, RabbitMQ and
//! PostgreSQL: every documented event type gets a 2xx, installs and uninstalls are ordered by
//! their timestamps, an uninstalled tenant is quiet, and `tenants add` refuses a tenant that
//! cannot work.

use std::sync::atomic::Ordering;
use std::time::Duration;

use app::queue::Broker as _;
use chrono::{DateTime, Utc};
use e2e::support::{AppSpec, TestApp, WebhookSigner, eventually};
use ports::queue::{Envelope, Payload, Publisher};
use ports::store::{
    AuditAction, AuditLog, AuditQuery, CredentialStore, DeadLetterStore, Provider, TenantStore,
};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const COMPANY: &str = "agencyCo1";
const SETTLE: Duration = Duration::from_secs(60);

/// A signed-payload body: `fields` plus a fresh `webhookId` and the timestamp `at`.
fn body(fields: Value, at: DateTime<Utc>) -> Vec<u8> {
    let mut v = fields;
    let m = v.as_object_mut().expect("an object");
    m.insert("webhookId".into(), json!(uuid::Uuid::new_v4().to_string()));
    m.insert("timestamp".into(), json!(at.to_rfc3339()));
    serde_json::to_vec(&v).expect("JSON")
}

/// One example of each of the 35 event docs of ../shared/ghl/API.md §9.2a, in its documented
/// shape, and both forms where GHL documents two. The lifecycle ones come last (the location
/// form of UNINSTALL uninstalls the tenant).
fn documented_events(location: &str) -> Vec<(&'static str, Value)> {
    let l = location;
    let contact = json!({"type": "", "locationId": l, "id": "docContact1", "email": "a@b.test",
        "firstName": "Doc", "tags": [], "customFields": [], "dateAdded": "2025-01-01T00:00:00.000Z"});
    let with_type = |t: &str, v: &Value| {
        let mut v = v.clone();
        v["type"] = json!(t);
        v
    };
    let task = json!({"locationId": l, "id": "docTask1", "assignedTo": "u1", "body": "b",
        "contactId": "docContact1", "title": "t", "dateAdded": "2025-01-01T00:00:00.000Z",
        "dueDate": "2025-01-02T00:00:00.000Z"});
    let note = json!({"locationId": l, "id": "docNote1", "body": "b", "contactId": "docContact1",
        "dateAdded": "2025-01-01T00:00:00.000Z"});
    let appointment = json!({"locationId": l, "appointment": {"id": "docAppt1", "title": "t",
        "calendarId": "cal1", "contactId": "docContact1", "appointmentStatus": "confirmed",
        "startTime": "2025-01-02T10:00:00.000Z", "endTime": "2025-01-02T11:00:00.000Z"}});
    let opportunity = json!({"locationId": l, "id": "docOpp1", "assignedTo": "u1",
        "contactId": "docContact1", "monetaryValue": 100, "name": "Deal",
        "pipelineId": "p1", "pipelineStageId": "s1", "source": "web", "status": "open"});
    let message = json!({"locationId": l, "attachments": [], "body": "hi",
        "contactId": "docContact1", "conversationId": "conv1", "dateAdded": "2025-01-01T00:00:00.000Z",
        "direction": "inbound", "messageType": "SMS"});
    let mut events = vec![
        ("ContactCreate", with_type("ContactCreate", &contact)),
        ("ContactUpdate", with_type("ContactUpdate", &contact)),
        ("ContactDelete", with_type("ContactDelete", &contact)),
        ("ContactDndUpdate", {
            let mut v = with_type("ContactDndUpdate", &contact);
            v["dndSettings"] = json!({"SMS": {"status": "active", "message": "", "code": ""}});
            v
        }),
        ("ContactTagUpdate", with_type("ContactTagUpdate", &contact)),
        ("NoteCreate", with_type("NoteCreate", &note)),
        ("NoteUpdate", with_type("NoteUpdate", &note)),
        ("NoteDelete", with_type("NoteDelete", &note)),
        ("TaskCreate", with_type("TaskCreate", &task)),
        ("TaskComplete", with_type("TaskComplete", &task)),
        ("TaskDelete", with_type("TaskDelete", &task)),
        // The three appointment docs all show "AppointmentCreate" (§9.2a): both readings.
        (
            "AppointmentCreate",
            with_type("AppointmentCreate", &appointment),
        ),
        (
            "AppointmentUpdate",
            with_type("AppointmentUpdate", &appointment),
        ),
        (
            "AppointmentDelete",
            with_type("AppointmentDelete", &appointment),
        ),
        (
            "AppointmentDelete (as documented)",
            with_type("AppointmentCreate", &appointment),
        ),
    ];
    for t in [
        "OpportunityCreate",
        "OpportunityUpdate",
        "OpportunityDelete",
        "OpportunityAssignedToUpdate",
        "OpportunityMonetaryValueUpdate",
        "OpportunityStageUpdate",
        "OpportunityStatusUpdate",
    ] {
        events.push((t, with_type(t, &opportunity)));
    }
    events.extend([
        ("InboundMessage", with_type("InboundMessage", &message)),
        ("OutboundMessage", with_type("OutboundMessage", &message)),
        // Its `type` is the channel.
        ("ProviderOutboundMessage", with_type("SMS", &message)),
        (
            "ConversationUnreadWebhook",
            json!({"type": "ConversationUnreadUpdate",
            "locationId": l, "id": "conv1", "contactId": "docContact1", "unreadCount": 1}),
        ),
        (
            "CampaignStatusUpdate",
            json!({"type": "CampaignStatusUpdate", "locationId": l,
            "campaignId": "camp1", "contactId": "docContact1", "status": "completed"}),
        ),
        (
            "OrderCreate",
            json!({"type": "OrderCreate", "locationId": l, "_id": "order1",
            "status": "completed", "amount": 10, "currency": "USD"}),
        ),
        (
            "OrderStatusUpdate",
            json!({"type": "OrderStatusUpdate", "locationId": l,
            "_id": "order1", "status": "refunded"}),
        ),
        (
            "LCEmailStats",
            json!({"type": "LCEmailStats", "locationId": l, "companyId": COMPANY,
            "webhookPayload": {"event": "delivered"}}),
        ),
        (
            "PlanChange",
            json!({"type": "PLAN_CHANGE", "appId": "app1", "companyId": COMPANY,
            "locationId": l, "userId": "u1", "currentPlanId": "p1", "newPlanId": "p2"}),
        ),
        (
            "LocationCreate",
            json!({"type": "LocationCreate", "id": "newLocation9",
            "companyId": COMPANY, "name": "Client 9", "email": "c9@agency.test",
            "stripeProductId": "prod1"}),
        ),
        (
            "LocationUpdate",
            json!({"type": "LocationUpdate", "id": l, "companyId": COMPANY,
            "name": "Renamed by GHL", "email": "x@agency.test", "stripeProductId": "prod1"}),
        ),
        (
            "UserCreate (location form)",
            json!({"type": "UserCreate", "id": "user1",
            "locationId": l, "firstName": "A", "lastName": "B", "email": "ab@agency.test",
            "phone": "+15550000000", "extension": "", "role": "user", "permissions": {}}),
        ),
        (
            "UserCreate (company form)",
            json!({"type": "UserCreate", "id": "user2",
            "companyId": COMPANY, "locations": [l], "firstName": "C", "lastName": "D",
            "email": "cd@agency.test", "phone": "", "extension": "", "role": "admin",
            "permissions": {}}),
        ),
        (
            "INSTALL (location form)",
            json!({"type": "INSTALL", "appId": "app1",
            "locationId": l, "companyId": COMPANY, "userId": "u1", "planId": "p1",
            "trial": {"onTrial": false}, "isWhitelabelCompany": false,
            "whitelabelDetails": {}, "companyName": "Agency"}),
        ),
        (
            "INSTALL (agency form)",
            json!({"type": "INSTALL", "appId": "app1",
            "companyId": COMPANY, "planId": "p1", "trial": {"onTrial": false}}),
        ),
        (
            "UNINSTALL (agency form)",
            json!({"type": "UNINSTALL", "appId": "app1",
            "companyId": COMPANY}),
        ),
        (
            "UNINSTALL (location form)",
            json!({"type": "UNINSTALL", "appId": "app1",
            "locationId": l}),
        ),
    ]);
    events
}

async fn started(
    test: &'static str,
) -> (
    TestApp,
    WebhookSigner,
    std::net::SocketAddr,
    CancellationToken,
) {
    let signer = WebhookSigner::new();
    let mut spec = AppSpec::new(test);
    spec.webhook_key_pem = Some(signer.public_pem());
    let t = TestApp::start(spec).await;
    let stop = CancellationToken::new();
    let ingress = t.serve_ingress(stop.clone()).await;
    let http = reqwest::Client::new();
    eventually("the ingress is ready", SETTLE, || async {
        let r = http.get(format!("http://{ingress}/readyz")).send().await;
        r.ok().filter(|r| r.status() == 200).map(|_| ())
    })
    .await;
    (t, signer, ingress, stop)
}

async fn tenant(t: &TestApp) -> domain::Tenant {
    TenantStore::get(t.app.store.as_ref(), &t.tenant.id)
        .await
        .expect("read the tenant")
}

/// Every documented event type, in its documented shape, gets a 2xx: GHL never redelivers
/// anything else, so a 4xx loses the event for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_event_type_gets_a_2xx() {
    let (t, signer, ingress, stop) = started("docevents").await;
    let http = reqwest::Client::new();
    let now = Utc::now();
    let events = documented_events(&t.world.location);
    let types: std::collections::BTreeSet<&str> = events
        .iter()
        .map(|(name, _)| name.split(' ').next().unwrap_or(name))
        .collect();
    assert_eq!(
        types.len(),
        35,
        "the 35 event docs of API.md §9.2a: {types:?}"
    );
    // The change the LocationUpdate below reports, as GHL holds it: the handler reads the
    // location, since the event carries no time zone.
    t.world
        .ghl
        .update_location(
            &t.world.location,
            sandbox::ghl::LocationUpdate {
                name: Some("Renamed by GHL".into()),
                timezone: Some("America/Chicago".into()),
                ..Default::default()
            },
        )
        .expect("change the location in GHL");
    let mut refused = Vec::new();
    let mut outcomes = std::collections::BTreeMap::new();
    for (i, (name, fields)) in events.into_iter().enumerate() {
        // Strictly increasing timestamps: the lifecycle ones are ordered by them.
        let at = now + chrono::Duration::milliseconds(i as i64);
        let (status, answer) = signer.post(&http, ingress, &body(fields, at)).await;
        if !(200..300).contains(&status) {
            refused.push(format!("{name}: {status} {answer}"));
        }
        outcomes.insert(name, answer["status"].as_str().unwrap_or("").to_owned());
    }
    assert!(refused.is_empty(), "refused: {refused:#?}");
    // Used ones are queued; the others are ignored at the door, audited, and queue nothing.
    assert_eq!(outcomes["ContactCreate"], "accepted");
    assert_eq!(outcomes["OpportunityCreate"], "ignored");
    assert_eq!(outcomes["UserCreate (company form)"], "ignored");
    let audit = AuditLog::query(
        t.app.store.as_ref(),
        &AuditQuery {
            tenant: t.tenant.id.clone(),
            contact: None,
            before_id: None,
            limit: 200,
        },
    )
    .await
    .expect("audit");
    for used_by_nothing in [
        "OpportunityCreate",
        "InboundMessage",
        "PLAN_CHANGE",
        "UserCreate",
    ] {
        assert!(
            audit.iter().any(|r| r
                .entry
                .reason
                .as_deref()
                .is_some_and(|why| why.contains(used_by_nothing))),
            "no audit line for {used_by_nothing}"
        );
    }
    let queued = outcomes
        .keys()
        .filter(|n| {
            ["Contact", "Note", "Task", "Appointment"]
                .iter()
                .any(|p| n.starts_with(p))
        })
        .count();
    assert_eq!(queued, 15);
    let depths = t.amqp.depths().await.expect("depths");
    assert_eq!(
        depths.realtime as usize, queued,
        "only the events the sync uses are queued: {outcomes:?}"
    );
    // The effects that can be seen: the LocationUpdate renamed the tenant and took the
    // location's time zone, the location-form INSTALL recorded its company, and the final
    // UNINSTALL left it uninstalled.
    let after = tenant(&t).await;
    assert_eq!(after.name, "Renamed by GHL");
    assert_eq!(after.install.timezone.as_deref(), Some("America/Chicago"));
    assert_eq!(after.install.company_id.as_deref(), Some(COMPANY));
    assert_eq!(after.state(), "uninstalled");
    stop.cancel();
}

/// INSTALL, UNINSTALL, then the first INSTALL again — replayed with its own id, and delivered
/// late under a new one: the tenant stays uninstalled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_or_late_install_never_undoes_a_newer_uninstall() {
    let (t, signer, ingress, stop) = started("replay").await;
    let http = reqwest::Client::new();
    let l = t.world.location.clone();
    let now = Utc::now();
    let install = |at| {
        body(
            json!({"type": "INSTALL", "appId": "app1", "locationId": l, "companyId": COMPANY}),
            at,
        )
    };
    let first = install(now - chrono::Duration::seconds(60));
    let (status, answer) = signer.post(&http, ingress, &first).await;
    assert_eq!((status, answer["status"].as_str()), (200, Some("accepted")));
    let uninstall = body(
        json!({"type": "UNINSTALL", "appId": "app1", "locationId": l}),
        now - chrono::Duration::seconds(30),
    );
    let (status, answer) = signer.post(&http, ingress, &uninstall).await;
    assert_eq!((status, answer["status"].as_str()), (200, Some("accepted")));
    assert_eq!(tenant(&t).await.state(), "uninstalled");

    let (status, answer) = signer.post(&http, ingress, &first).await;
    assert_eq!(
        (status, answer["status"].as_str()),
        (200, Some("duplicate"))
    );
    let late = install(now - chrono::Duration::seconds(60));
    let (status, answer) = signer.post(&http, ingress, &late).await;
    assert_eq!(
        (status, answer["status"].as_str()),
        (200, Some("ignored")),
        "{answer}"
    );
    assert_eq!(tenant(&t).await.state(), "uninstalled");
    // A newer INSTALL is a reinstall.
    let (status, _) = signer.post(&http, ingress, &install(now)).await;
    assert_eq!(status, 200);
    assert_eq!(tenant(&t).await.state(), "active");
    stop.cancel();
}

/// The agency uninstalls company-wide (`companyId`, no `locationId`): the tenant is
/// uninstalled and its GHL token deleted. Later events get 200 `ignored` and queue nothing; a
/// message queued before the uninstall is skipped with an audit line, not dead-lettered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_an_agency_uninstall_the_tenant_is_quiet_not_broken() {
    let (t, signer, ingress, stop) = started("quiet").await;
    let http = reqwest::Client::new();
    let l = t.world.location.clone();
    let now = Utc::now();
    // The location's INSTALL names its company; the agency's UNINSTALL names only that.
    let (status, _) = signer
        .post(
            &http,
            ingress,
            &body(
                json!({"type": "INSTALL", "appId": "app1", "locationId": l, "companyId": COMPANY}),
                now - chrono::Duration::seconds(20),
            ),
        )
        .await;
    assert_eq!(status, 200);
    // A message queued while the tenant was still installed.
    let queued = Envelope::new(
        "queued-before-uninstall",
        t.tenant.id.clone(),
        Payload::SyncContact {
            contact: domain::GhlContactId::parse("someContact1").unwrap(),
            dry_run: false,
            prefetched: None,
        },
        now,
    );
    t.amqp.publish(&queued).await.expect("publish");
    let (status, answer) = signer
        .post(
            &http,
            ingress,
            &body(
                json!({"type": "UNINSTALL", "appId": "app1", "companyId": COMPANY}),
                now - chrono::Duration::seconds(10),
            ),
        )
        .await;
    assert_eq!(
        (status, answer["status"].as_str()),
        (200, Some("accepted")),
        "{answer}"
    );
    assert_eq!(tenant(&t).await.state(), "uninstalled");
    assert!(
        CredentialStore::get(t.app.store.as_ref(), &t.tenant.id, Provider::Ghl)
            .await
            .is_err(),
        "the GHL token is deleted"
    );

    let (status, answer) = signer
        .post(
            &http,
            ingress,
            &e2e::support::WebhookSigner::contact_create(&l, "afterUninstall1"),
        )
        .await;
    assert_eq!(
        (status, answer["status"].as_str()),
        (200, Some("ignored")),
        "{answer}"
    );

    let worker = t.spawn_worker();
    eventually("the queued message is skipped", SETTLE, || async {
        (worker.stats.skipped.load(Ordering::Relaxed) >= 1).then_some(())
    })
    .await;
    let depths = t.amqp.depths().await.expect("depths");
    assert_eq!(
        (depths.realtime, depths.bulk, depths.delayed, depths.dead),
        (0, 0, 0, 0),
        "nothing queued, nothing dead"
    );
    assert_eq!(worker.stats.dead_lettered.load(Ordering::Relaxed), 0);
    assert_eq!(worker.stats.retried.load(Ordering::Relaxed), 0);
    let letters = DeadLetterStore::list(t.app.store.as_ref(), None, true, None, 10)
        .await
        .expect("dead letters");
    assert!(letters.is_empty(), "{letters:?}");
    let audit = AuditLog::query(
        t.app.store.as_ref(),
        &AuditQuery {
            tenant: t.tenant.id.clone(),
            contact: None,
            before_id: None,
            limit: 20,
        },
    )
    .await
    .expect("audit");
    assert!(
        audit.iter().any(|r| r.entry.action == AuditAction::Skip
            && r.entry
                .reason
                .as_deref()
                .is_some_and(|why| why.contains("uninstalled"))),
        "an audit line for the skipped message: {audit:#?}"
    );
    worker.stop().await;
    stop.cancel();
}

/// `tenants add` refuses, before storing anything, a tenant without `ekyte.user_email` and one
/// whose eKyte key fails the auth test; each says what is wrong and exits non-zero.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_add_refuses_a_tenant_that_cannot_work_and_stores_nothing() {
    let t = TestApp::start(AppSpec::new("addcheck")).await;
    let dir = tempfile::tempdir().unwrap();
    let (api_key, _, _) = t.world.secrets();
    let add = |settings: &domain::TenantSettings, key: &str, id: &str| {
        let file = dir.path().join(format!("{id}.json"));
        std::fs::write(&file, serde_json::to_vec(settings).unwrap()).unwrap();
        let key = key.to_owned();
        let id = id.to_owned();
        let location = format!("loc{id}");
        let t = &t;
        async move {
            let mut cmd = t
                .command(&[
                    "tenants",
                    "add",
                    "--id",
                    &id,
                    "--location",
                    &location,
                    "--ekyte-company",
                    &t.tenant.ekyte_company_id.to_string(),
                    "--settings",
                    &file.display().to_string(),
                ])
                .await;
            cmd.env("GES_TENANT_EKYTE_API_KEY", key);
            cmd.output().await.expect("run tenants add")
        }
    };
    use secrecy::ExposeSecret as _;
    let mut no_email = t.tenant.settings.clone();
    no_email.ekyte.user_email = None;
    let out = add(&no_email, api_key.expose_secret(), "noemail").await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("ekyte.user_email"), "{stderr}");

    let out = add(&t.tenant.settings, "not-the-key", "badkey").await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("eKyte"), "{stderr}");
    assert!(stderr.contains("nothing was stored"), "{stderr}");

    let ids: Vec<String> = TenantStore::list(t.app.store.as_ref())
        .await
        .unwrap()
        .into_iter()
        .map(|x| x.id.to_string())
        .collect();
    assert_eq!(
        ids,
        vec![t.tenant.id.to_string()],
        "only the test's own tenant"
    );

    // The same command with what was missing succeeds.
    let out = add(&t.tenant.settings, api_key.expose_secret(), "good").await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn welcome_calls(t: &TestApp) -> std::collections::BTreeMap<String, usize> {
    let dump = t
        .world
        .ghl
        .dump_location(&t.world.location)
        .expect("the GHL dump");
    let mut per_contact = std::collections::BTreeMap::new();
    for task in dump["tasks"].as_array().into_iter().flatten() {
        if let (true, Some(c)) = (task["title"] == "Welcome call", task["contactId"].as_str()) {
            *per_contact.entry(c.to_owned()).or_default() += 1;
        }
    }
    per_contact
}

/// M4 is for new contacts: the first full sync of a location whose book exists already
/// writes no onboarding task; a contact created afterwards gets its task exactly once, though
/// its webhook comes twice and a sweep runs at the same time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_full_sync_onboards_no_existing_contact_and_a_new_one_exactly_once() {
    /// The existing book the app is installed on.
    const BOOK: u64 = 1000;
    let mut spec = AppSpec::new("onboard");
    spec.world.contacts = BOOK as usize;
    spec.world.onboarding = true;
    let t = TestApp::start(spec).await;
    let mut tenant = t.tenant.clone();
    tenant.settings.onboarding_backfill = false;
    TenantStore::upsert(t.app.store.as_ref(), &tenant)
        .await
        .expect("turn backfill onboarding off");
    let worker = t.spawn_worker();
    let stop = CancellationToken::new();
    let ingress = t.serve_ingress(stop.clone()).await;
    t.world
        .ghl
        .set_webhook_target(Some(format!("http://{ingress}/webhooks/ghl")));
    let scope = t
        .app
        .engine
        .scope(&t.tenant.id, ports::Priority::Bulk)
        .await
        .unwrap();
    let sweep = |scope| {
        let t = &t;
        async move {
            t.app
                .engine
                .sweep(&scope, ports::queue::SyncMode::Full, false, &engine::Quiet)
                .await
                .expect("full sync")
        }
    };
    let report = sweep(scope.clone()).await;
    assert!(report.enqueued >= BOOK, "{report:?}");
    app::demo::run::wait_quiet(t.app.broker.as_ref(), &t.world, &worker.stats, SETTLE, None)
        .await
        .expect("settle");
    assert!(
        t.workspaces_of(&t.world.contacts[0]).len() == 1,
        "the book synced"
    );
    assert_eq!(
        welcome_calls(&t),
        Default::default(),
        "no onboarding for the existing book"
    );

    let created = t
        .world
        .ghl
        .act_create_contact(
            &t.world.location,
            json!({"firstName": "Brand", "lastName": "New", "email": "brand.new@example.test",
                "tags": [app::demo::sim::SYNC_TAG]}),
        )
        .expect("create a contact");
    let id = created["id"].as_str().unwrap().to_owned();
    // Its webhook (the simulator sends it), two more syncs of it under other message ids, and
    // a full sync, all at the same time.
    let again = |n: u32| {
        let env = Envelope::new(
            format!("again-{n}"),
            t.tenant.id.clone(),
            Payload::SyncContact {
                contact: domain::GhlContactId::parse(&id).unwrap(),
                dry_run: false,
                prefetched: None,
            },
            Utc::now(),
        );
        let amqp = t.amqp.clone();
        async move { amqp.publish(&env).await.expect("publish") }
    };
    let (_, _, report) = tokio::join!(again(1), again(2), sweep(scope.clone()));
    assert!(report.seen > BOOK, "{report:?}");
    app::demo::run::wait_quiet(t.app.broker.as_ref(), &t.world, &worker.stats, SETTLE, None)
        .await
        .expect("settle");
    let calls = welcome_calls(&t);
    assert_eq!(calls.get(&id), Some(&1), "{calls:?}");
    assert_eq!(calls.len(), 1, "only the new contact: {calls:?}");
    assert_eq!(worker.stats.dead_lettered.load(Ordering::Relaxed), 0);
    worker.stop().await;
    stop.cancel();
}

/// The tenant's eKyte key is revoked while its full sync runs: the failures are dead-lettered
/// with their chains and count in the run's errors (not a `completed` run with 0 errors);
/// once the key is fixed, `dlq replay --all --tenant` converges both sides.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_revoked_mid_sync_fails_visibly_and_a_replay_after_the_fix_converges() {
    let mut spec = AppSpec::new("revoked");
    spec.world.contacts = 30;
    let t = TestApp::start(spec).await;
    let store = t.app.store.as_ref();
    let (api_key, mcp, _) = t.world.secrets();
    let tenant_id = t.tenant.id.clone();
    let put_key = |key: secrecy::SecretString| {
        let mcp = mcp.clone();
        let tenant_id = tenant_id.clone();
        async move {
            CredentialStore::put(
                store,
                &tenant_id,
                Provider::Ekyte,
                &ports::store::NewCredential {
                    secret: ports::store::CredentialSecret::Ekyte {
                        api_key: key,
                        mcp_token: mcp,
                    },
                    expires_at: None,
                },
            )
            .await
            .expect("store the eKyte key")
        }
    };
    let scope = t
        .app
        .engine
        .scope(&t.tenant.id, ports::Priority::Bulk)
        .await
        .unwrap();
    // The sweep queues the contacts; the key is revoked before the worker reaches them.
    let report = t
        .app
        .engine
        .sweep(&scope, ports::queue::SyncMode::Full, false, &engine::Quiet)
        .await
        .expect("full sync");
    assert!(report.enqueued >= 30, "{report:?}");
    put_key(secrecy::SecretString::from("revoked-key")).await;
    let worker = t.spawn_worker();
    app::demo::run::wait_quiet(t.app.broker.as_ref(), &t.world, &worker.stats, SETTLE, None)
        .await
        .expect("settle");
    let letters = DeadLetterStore::list(store, Some(t.tenant.id.clone()), false, None, 500)
        .await
        .expect("dead letters");
    assert!(
        letters.len() >= 30,
        "every contact failed: {}",
        letters.len()
    );
    assert!(
        letters[0]
            .letter
            .error_chain
            .iter()
            .any(|c| c.to_lowercase().contains("unauthor") || c.contains("401")),
        "the chain names the cause: {:?}",
        letters[0].letter.error_chain
    );
    let runs = ports::store::RunStore::recent(store, &t.tenant.id, 5)
        .await
        .expect("runs");
    let full = runs
        .iter()
        .find(|r| r.kind == ports::store::RunKind::Full)
        .expect("the full run");
    assert_eq!(
        full.counts.errors,
        letters.len() as u64,
        "the run counts its failed contact syncs"
    );

    // Fixed, and replayed with the operator's command.
    put_key(api_key).await;
    let replay = t
        .command(&["dlq", "replay", "--all", "--tenant", t.tenant.id.as_str()])
        .await
        .output()
        .await
        .expect("run dlq replay");
    assert!(
        replay.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&replay.stdout),
        String::from_utf8_lossy(&replay.stderr)
    );
    app::demo::run::wait_quiet(t.app.broker.as_ref(), &t.world, &worker.stats, SETTLE, None)
        .await
        .expect("settle after the replay");
    for c in &t.world.contacts {
        assert_eq!(t.workspaces_of(c).len(), 1, "contact {c} has its workspace");
    }
    app::scheduler::enqueue(
        app::scheduler::Job::Poll,
        Some(&t.tenant.id),
        store,
        t.amqp.as_ref(),
        Utc::now(),
        false,
    )
    .await
    .expect("enqueue a poll");
    app::demo::run::wait_quiet(t.app.broker.as_ref(), &t.world, &worker.stats, SETTLE, None)
        .await
        .expect("settle after the poll");
    let verdict = app::demo::verify::verify(&t.world).expect("verify");
    assert!(verdict.converged, "{:#?}", verdict.problems);
    worker.stop().await;
}

/// Two GHL locations share one eKyte company (the agency's), one tenant each; the first is
/// the company's default location. Each location's contacts get one workspace each, labelled
/// with their own location; neither location gets the other's clients back as contacts; a
/// workspace made in eKyte without an `ExternalId` becomes a contact of the default location
/// only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_locations_share_one_ekyte_company_without_crossing() {
    let mut spec = AppSpec::new("shared");
    spec.world.contacts = 8;
    spec.world.onboarding = false;
    let t = TestApp::start(spec).await;
    let store = t.app.store.as_ref();
    let mut first = t.tenant.clone();
    first.settings.ekyte.default_location = true;
    TenantStore::upsert(store, &first).await.unwrap();

    // The second location, its token and its own clients.
    let ghl = &t.world.ghl;
    let loc2 = ghl
        .create_location(sandbox::ghl::LocationSpec {
            name: "Second client".into(),
            ..Default::default()
        })
        .expect("a second location");
    let pit2 = ghl
        .register_pit(sandbox::ghl::PitSpec {
            location_id: Some(loc2.clone()),
            scopes: ghl::default_scopes(),
            ..Default::default()
        })
        .expect("its token");
    let seeded: Vec<Value> = (0..5)
        .map(|i| {
            json!({"firstName": format!("Second{i}"), "lastName": "Client",
                "email": format!("second{i}@client2.test"), "tags": [app::demo::sim::SYNC_TAG]})
        })
        .collect();
    let second_contacts = ghl.seed_contacts(&loc2, &seeded).expect("seed");
    let mut second = t.tenant.clone();
    second.id = domain::TenantId::parse("second").unwrap();
    second.name = "Second client".into();
    second.location_id = domain::LocationId::parse(&loc2).unwrap();
    let (api_key, mcp, _) = t.world.secrets();
    app::admin::add_tenant(
        store,
        store,
        &second,
        Some(api_key),
        mcp,
        Some(secrecy::SecretString::from(pit2)),
    )
    .await
    .expect("add the second tenant");

    let worker = t.spawn_worker();
    let settle =
        || app::demo::run::wait_quiet(t.app.broker.as_ref(), &t.world, &worker.stats, SETTLE, None);
    for tenant in [&first, &second] {
        let scope = t
            .app
            .engine
            .scope(&tenant.id, ports::Priority::Bulk)
            .await
            .unwrap();
        t.app
            .engine
            .sweep(&scope, ports::queue::SyncMode::Full, false, &engine::Quiet)
            .await
            .expect("full sync");
    }
    settle().await.expect("settle after the full syncs");
    let poll_all = || async {
        let published = app::scheduler::enqueue(
            app::scheduler::Job::Poll,
            None,
            store,
            t.amqp.as_ref(),
            Utc::now(),
            false,
        )
        .await
        .expect("enqueue the polls");
        // One message for the company: whichever worker takes it polls both tenants, so
        // replicas do not each list the company.
        assert_eq!(published, 1, "one poll per eKyte company");
        settle().await.expect("settle after the polls");
    };
    let listings = || {
        t.world
            .ekyte
            .counters()
            .snapshot()
            .route_total("GET", "/v1.0/workspaces")
    };
    poll_all().await;
    // A quiet cycle: one listing of the shared company for the two tenants' polls (one page,
    // few workspaces), where each tenant listing it would make two.
    let before = listings();
    poll_all().await;
    assert_eq!(
        listings() - before,
        1,
        "the company is listed once per cycle"
    );

    let company = t.world.company.company_id;
    for c in &t.world.contacts {
        assert_eq!(t.workspaces_of(c).len(), 1, "first location's {c}");
    }
    for c in &second_contacts {
        let ext = format!("ghl:{loc2}:{c}");
        assert_eq!(
            t.world.ekyte.workspaces_by_external_id(company, &ext).len(),
            1,
            "second location's {c}"
        );
    }
    let contacts_of = |loc: &str| {
        ghl.dump_location(loc).expect("dump")["contacts"]
            .as_array()
            .map_or(0, Vec::len)
    };
    assert_eq!(
        contacts_of(&loc2),
        second_contacts.len(),
        "the second location got none of the other workspaces back"
    );
    let first_before = contacts_of(&t.world.location);

    // Made in eKyte, unlabelled: the default location's.
    t.world
        .ekyte
        .create_workspace(
            company,
            sandbox::ekyte::NewWorkspace {
                name: "Walk-in client".into(),
                active: true,
                ..Default::default()
            },
        )
        .expect("a workspace made in eKyte");
    poll_all().await;
    assert_eq!(contacts_of(&t.world.location), first_before + 1);
    assert_eq!(contacts_of(&loc2), second_contacts.len());
    assert_eq!(worker.stats.dead_lettered.load(Ordering::Relaxed), 0);
    worker.stop().await;
}

/// The marketplace app of an agency test: registered with the GHL simulator, and the app as
/// deployed with its keys (and `rules`), serving the real callback and webhook routes, which
/// the simulator's webhooks are pointed at. Also the GHL company of the world's location.
struct Marketplace {
    client: &'static str,
    company: String,
    deployed: app::wiring::App,
    ingress: std::net::SocketAddr,
    stop: CancellationToken,
}

impl Marketplace {
    async fn deploy(
        t: &TestApp,
        client: &'static str,
        app_id: &str,
        rules: impl FnOnce(&str) -> Vec<app::config::AgencyRule>,
    ) -> Self {
        let ghl = &t.world.ghl;
        let secret = format!("{client}-secret");
        ghl.register_oauth_client(sandbox::ghl::OAuthClientSpec {
            client_id: client.into(),
            client_secret: secret.clone(),
            app_id: app_id.into(),
            ..Default::default()
        })
        .expect("register the marketplace app");
        let company = ghl.dump_location(&t.world.location).expect("dump")["location"]["companyId"]
            .as_str()
            .expect("the location's company")
            .to_owned();
        let mut config = t.config.clone();
        config.ghl.client_id = client.into();
        config.ghl.client_secret = secrecy::SecretString::from(secret);
        config.ghl.app_id = app_id.into();
        config.ghl.agency_rules = rules(&company);
        let deployed = app::wiring::App::build(config, t.app.store.clone(), t.amqp.clone())
            .await
            .expect("the app");
        let stop = CancellationToken::new();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ingress = listener.local_addr().unwrap();
        tokio::spawn(app::ingress::serve(
            listener,
            deployed.ingress().expect("the router"),
            stop.clone(),
        ));
        ghl.set_webhook_target(Some(format!("http://{ingress}/webhooks/ghl")));
        Self {
            client,
            company,
            deployed,
            ingress,
            stop,
        }
    }

    /// A full sync of the tenant by the deployed app (its contact syncs are queued).
    async fn full_sync(&self, tenant: &domain::TenantId) {
        let scope = self
            .deployed
            .engine
            .scope(tenant, ports::Priority::Bulk)
            .await
            .unwrap();
        self.deployed
            .engine
            .sweep(&scope, ports::queue::SyncMode::Full, false, &engine::Quiet)
            .await
            .expect("full sync");
    }

    /// The agency approves `locations` (and future ones, when `future`); GHL sends the
    /// browser to the callback. Returns its status and page.
    async fn consent(&self, t: &TestApp, locations: &[String], future: bool) -> (u16, String) {
        let code = t
            .world
            .ghl
            .issue_bulk_install_code(self.client, &self.company, locations, future, None)
            .expect("the agency's consent");
        let state = self.deployed.state_signer().sign_agency(Utc::now());
        let r = reqwest::Client::new()
            .get(format!("http://{}/oauth/callback", self.ingress))
            .query(&[("code", code.as_str()), ("state", state.as_str())])
            .send()
            .await
            .expect("the callback answers");
        (r.status().as_u16(), r.text().await.unwrap_or_default())
    }
}

/// Issue 15's acceptance, through GHL's own flows: a company with three locations installs the
/// app agency-wide through the bulk consent and the real callback, and a config rule maps all
/// three to one eKyte company (no tenant exists before). Every location's clients sync to that
/// company, one workspace each, labelled with their own location. A LocationCreate adds a
/// fourth location, which syncs. The company UNINSTALL makes all four uninstalled; events
/// afterwards get 2xx, queue nothing, dead-letter nothing, and write nothing on either side.
/// A reinstall resyncs and creates nothing twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agency_installs_three_locations_at_once_uninstalls_and_reinstalls() {
    let mut spec = AppSpec::new("agency");
    spec.world.contacts = 1;
    spec.world.onboarding = false;
    let t = TestApp::start(spec).await;
    let store = t.app.store.clone();
    let ghl = &t.world.ghl;
    const APP: &str = "agencyApp000000001";
    let ekyte_company = t.world.company.company_id;
    let (api_key, mcp, _) = t.world.secrets();
    let market = Marketplace::deploy(&t, "agency-client", APP, |company| {
        let mut settings = t.tenant.settings.clone();
        settings.ekyte.default_location = false;
        vec![app::config::AgencyRule {
            company: company.to_owned(),
            like: None,
            ekyte_company: Some(ekyte_company as u64),
            settings: Some(settings),
            ekyte_api_key: Some(api_key.clone()),
            ekyte_mcp_token: mcp.clone(),
        }]
    })
    .await;
    let company = market.company.clone();

    // Three client locations of the company, two clients each, and no tenant for any.
    let mut locations = Vec::new();
    let mut clients: Vec<(String, String)> = Vec::new();
    for n in 1..=3 {
        let (loc, seeded) = client_location(ghl, n, false);
        clients.extend(seeded.into_iter().map(|c| (loc.clone(), c)));
        locations.push(loc);
    }
    let failed_before = ghl.counter_snapshot().event("webhooks_failed");

    let deployed = &market.deployed;
    let (m, tt) = (&market, &t);
    let install =
        move |locations: Vec<String>| async move { m.consent(tt, &locations, true).await };
    let (status, text) = install(locations.clone()).await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("3 location(s) connected"), "{text}");
    let agency = ports::store::AgencyStore::agency_install(store.as_ref(), &company)
        .await
        .expect("the company token is stored");
    assert!(agency.install_to_future);
    let tenant_of = |loc: String| {
        let store = store.clone();
        async move {
            TenantStore::by_location(store.as_ref(), &domain::LocationId::parse(&loc).unwrap())
                .await
                .unwrap()
        }
    };
    for loc in &locations {
        let tenant = tenant_of(loc.clone())
            .await
            .expect("the rule made a tenant");
        assert_eq!(tenant.install.kind, domain::InstallKind::Agency);
        assert_eq!(tenant.install.company_id.as_deref(), Some(company.as_str()));
        assert_eq!(tenant.ekyte_company_id.get(), ekyte_company as u64);
        assert_eq!(tenant.state(), "active");
    }

    let worker = deployed.worker("agency-e2e".into());
    let stats = worker.stats.clone();
    let worker_stop = CancellationToken::new();
    let worker_task = tokio::spawn(worker.run(worker_stop.clone()));
    let settle = || async {
        assert!(ghl.wait_webhooks_drained(SETTLE).await, "webhooks drained");
        app::demo::run::wait_quiet(deployed.broker.as_ref(), &t.world, &stats, SETTLE, None)
            .await
            .expect("settle");
    };
    let sync_all = |locations: Vec<String>| async move {
        for loc in locations {
            let tenant = tenant_of(loc).await.unwrap();
            m.full_sync(&tenant.id).await;
        }
        settle().await;
    };
    let minted_before = ghl
        .counter_snapshot()
        .route_total("POST", "/oauth/locationToken");
    sync_all(locations.clone()).await;
    let one_each = |clients: &[(String, String)]| {
        for (loc, c) in clients {
            let ext = format!("ghl:{loc}:{c}");
            assert_eq!(
                t.world
                    .ekyte
                    .workspaces_by_external_id(ekyte_company, &ext)
                    .len(),
                1,
                "{ext}"
            );
        }
    };
    one_each(&clients);
    assert!(
        ghl.counter_snapshot()
            .route_total("POST", "/oauth/locationToken")
            >= minted_before + 3,
        "each location's calls use a token minted from the agency's"
    );

    // A location renamed and moved to another time zone in GHL: LocationUpdate carries no
    // zone, so the tenant reads the location (with a token minted from the agency's).
    ghl.act_update_location(
        &locations[1],
        sandbox::ghl::LocationUpdate {
            name: Some("Client 2 (renamed)".into()),
            timezone: Some("Europe/Lisbon".into()),
            ..Default::default()
        },
    )
    .expect("edit a location");
    eventually("the tenant follows its location", SETTLE, || async {
        tenant_of(locations[1].clone())
            .await
            .filter(|t| {
                t.name == "Client 2 (renamed)"
                    && t.install.timezone.as_deref() == Some("Europe/Lisbon")
            })
            .map(|_| ())
    })
    .await;

    // A fourth location, created in GHL: the install covers it, the rule maps it, it syncs.
    let (fourth, seeded) = client_location(ghl, 4, true);
    clients.extend(seeded.into_iter().map(|c| (fourth.clone(), c)));
    locations.push(fourth.clone());
    let tenant4 = eventually("the fourth location's tenant", SETTLE, || async {
        tenant_of(fourth.clone()).await.filter(|t| t.active)
    })
    .await;
    assert_eq!(tenant4.name, "Client 4");
    assert_eq!(tenant4.ekyte_company_id.get(), ekyte_company as u64);
    sync_all(vec![fourth.clone()]).await;
    one_each(&clients);
    let workspaces = t.world.ekyte.dump(ekyte_company).unwrap().workspaces.len();

    // The agency uninstalls: every tenant of the company, and the company token.
    ghl.act_uninstall_company(&company, APP).expect("uninstall");
    eventually("every tenant uninstalled", SETTLE, || async {
        let all = TenantStore::by_company(store.as_ref(), &company)
            .await
            .unwrap();
        (all.len() == 4 && all.iter().all(|t| t.state() == "uninstalled")).then_some(())
    })
    .await;
    assert!(
        ports::store::AgencyStore::agency_install(store.as_ref(), &company)
            .await
            .is_err(),
        "the company token is deleted"
    );

    // Events afterwards: answered 2xx, nothing queued, nothing dead, nothing written.
    let calls_before = ghl.counter_snapshot().total_requests();
    let after_uninstall = ghl
        .act_create_contact(
            &locations[0],
            json!({"firstName": "After", "lastName": "Uninstall", "email": "after@client.test",
                "tags": [app::demo::sim::SYNC_TAG]}),
        )
        .expect("a contact");
    let late_id = after_uninstall["id"].as_str().unwrap().to_owned();
    ghl.act_update_contact(&clients[0].1, json!({"firstName": "Renamed"}))
        .expect("an edit");
    settle().await;
    assert_eq!(
        ghl.counter_snapshot().event("webhooks_failed"),
        failed_before,
        "every event got a 2xx"
    );
    assert_eq!(
        ghl.counter_snapshot().total_requests(),
        calls_before,
        "no GHL call for an uninstalled tenant"
    );
    assert_eq!(
        t.world.ekyte.dump(ekyte_company).unwrap().workspaces.len(),
        workspaces,
        "nothing written to eKyte"
    );
    let depths = deployed.broker.depths().await.expect("depths");
    assert_eq!((depths.realtime, depths.bulk, depths.dead), (0, 0, 0));
    let letters = DeadLetterStore::list(store.as_ref(), None, true, None, 10)
        .await
        .expect("dead letters");
    assert!(letters.is_empty(), "{letters:?}");

    // A reinstall: connected again, resynced (the contact made meanwhile too), nothing twice.
    let (status, text) = install(locations.clone()).await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("4 location(s) connected"), "{text}");
    sync_all(locations.clone()).await;
    clients.push((locations[0].clone(), late_id));
    one_each(&clients);
    assert_eq!(
        t.world.ekyte.dump(ekyte_company).unwrap().workspaces.len(),
        workspaces + 1,
        "only the contact made while uninstalled is new"
    );
    assert_eq!(stats.dead_lettered.load(Ordering::Relaxed), 0);
    worker_stop.cancel();
    let _ = worker_task.await;
    market.stop.cancel();
}

/// A location of the world's GHL company named "Client {n}", with two clients selected for
/// sync; created by a person (`act`: GHL sends LocationCreate) or seeded quietly.
fn client_location(ghl: &sandbox::ghl::GhlSandbox, n: usize, act: bool) -> (String, Vec<String>) {
    let spec = sandbox::ghl::LocationSpec {
        name: format!("Client {n}"),
        ..Default::default()
    };
    let loc = if act {
        ghl.act_create_location(spec)
    } else {
        ghl.create_location(spec)
    }
    .expect("a location");
    let seeded: Vec<Value> = (0..2)
        .map(|i| {
            json!({"firstName": format!("L{n}c{i}"), "lastName": "Client",
                "email": format!("l{n}c{i}@client.test"), "tags": [app::demo::sim::SYNC_TAG]})
        })
        .collect();
    let contacts = ghl.seed_contacts(&loc, &seeded).expect("seed");
    (loc, contacts)
}

/// With a rule (`ghl.agency_rules`: every location of this company is made like tenant
/// `sim`), the agency's consent alone makes the tenants of the approved locations, and a
/// location the agency creates later (its install covers future locations) gets its tenant
/// from the LocationCreate webhook and syncs its first contact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agency_rule_makes_the_tenants_of_approved_and_new_locations() {
    let mut spec = AppSpec::new("agencyrule");
    spec.world.contacts = 2;
    spec.world.onboarding = false;
    let t = TestApp::start(spec).await;
    let store = t.app.store.clone();
    let ghl = &t.world.ghl;
    let market = Marketplace::deploy(&t, "rule-client", "agencyApp000000002", |company| {
        vec![app::config::AgencyRule::like(company, "sim")]
    })
    .await;
    let mut sim = t.tenant.clone();
    sim.settings.ekyte.default_location = true;
    TenantStore::upsert(store.as_ref(), &sim).await.unwrap();
    let second = ghl
        .create_location(sandbox::ghl::LocationSpec {
            name: "Second client".into(),
            ..Default::default()
        })
        .expect("a location");

    let deployed = &market.deployed;
    let (_, text) = market
        .consent(&t, &[t.world.location.clone(), second.clone()], true)
        .await;
    assert!(text.contains("2 location(s) connected"), "{text}");
    let made =
        TenantStore::by_location(store.as_ref(), &domain::LocationId::parse(&second).unwrap())
            .await
            .unwrap()
            .expect("a tenant made for the approved location");
    assert_eq!(made.ekyte_company_id, t.tenant.ekyte_company_id);
    assert_eq!(made.install.kind, domain::InstallKind::Agency);
    assert!(!made.settings.ekyte.default_location);
    assert_eq!(made.state(), "active");

    // The agency adds a location: its tenant comes from the webhook, and it syncs.
    let worker = deployed.worker("agency-rule".into());
    let stats = worker.stats.clone();
    let worker_stop = CancellationToken::new();
    let worker_task = tokio::spawn(worker.run(worker_stop.clone()));
    let third = ghl
        .act_create_location(sandbox::ghl::LocationSpec {
            name: "Third client".into(),
            ..Default::default()
        })
        .expect("a new location");
    let third_id = domain::LocationId::parse(&third).unwrap();
    let tenant = eventually("the new location's tenant", SETTLE, || async {
        TenantStore::by_location(store.as_ref(), &third_id)
            .await
            .unwrap()
            .filter(|t| t.active)
    })
    .await;
    assert_eq!(tenant.name, "Third client");
    let contact = ghl
        .act_create_contact(
            &third,
            json!({"firstName": "First", "lastName": "Client", "email": "first@third.test",
                "tags": [app::demo::sim::SYNC_TAG]}),
        )
        .expect("a contact");
    let id = contact["id"].as_str().unwrap().to_owned();
    let ext = format!("ghl:{third}:{id}");
    let company_id = t.world.company.company_id;
    eventually("the new location's contact in eKyte", SETTLE, || async {
        (t.world
            .ekyte
            .workspaces_by_external_id(company_id, &ext)
            .len()
            == 1)
            .then_some(())
    })
    .await;
    assert_eq!(stats.dead_lettered.load(Ordering::Relaxed), 0);
    worker_stop.cancel();
    let _ = worker_task.await;
    market.stop.cancel();
}

/// The agency's UNINSTALL deletes its company token, unless the token was stored after the
/// event: a late UNINSTALL never undoes a reinstall that came after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_agency_uninstall_leaves_the_token_of_a_newer_install() {
    use ports::store::{AgencyStore, CredentialSecret, NewCredential};
    let (t, signer, ingress, stop) = started("lateuninstall").await;
    let store = t.app.store.as_ref();
    let token = NewCredential {
        secret: CredentialSecret::GhlOAuth {
            access_token: secrecy::SecretString::from("company-access".to_owned()),
            refresh_token: secrecy::SecretString::from("company-refresh".to_owned()),
            scopes: vec!["oauth.readonly".into(), "oauth.write".into()],
            user_type: "Company".into(),
            company_id: Some(COMPANY.into()),
        },
        expires_at: None,
    };
    store.put_agency(COMPANY, &token, false).await.unwrap();
    let http = reqwest::Client::new();
    let uninstall = |at| {
        body(
            json!({"type": "UNINSTALL", "appId": "app1", "companyId": COMPANY}),
            at,
        )
    };
    let (status, _) = signer
        .post(
            &http,
            ingress,
            &uninstall(Utc::now() - chrono::Duration::seconds(60)),
        )
        .await;
    assert_eq!(status, 200);
    assert!(
        store.agency_install(COMPANY).await.is_ok(),
        "the newer install's token stays"
    );
    let (status, _) = signer
        .post(
            &http,
            ingress,
            &uninstall(Utc::now() + chrono::Duration::seconds(1)),
        )
        .await;
    assert_eq!(status, 200);
    assert!(
        store.agency_install(COMPANY).await.is_err(),
        "a newer UNINSTALL deletes it"
    );
    stop.cancel();
}

/// Without a mapping rule, the locations an agency approves are pending: the callback page
/// names them, `tenants list` shows them, and `tenants map` (the real binary) refuses a tenant
/// that cannot work, storing nothing, then maps one with its eKyte company (the keys of the
/// tenant already on that company), after which it syncs. The company-wide INSTALL webhook
/// lists the installed locations itself: a location added to the install is pending too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approved_locations_without_a_rule_are_pending_until_tenants_map() {
    let mut spec = AppSpec::new("pending");
    spec.world.contacts = 1;
    spec.world.onboarding = false;
    let t = TestApp::start(spec).await;
    let store = t.app.store.clone();
    let ghl = &t.world.ghl;
    const APP: &str = "agencyApp000000003";
    let market = Marketplace::deploy(&t, "pending-client", APP, |_| vec![]).await;
    let company = market.company.clone();
    let (l1, clients1) = client_location(ghl, 1, false);
    let (l2, _) = client_location(ghl, 2, false);

    let (status, text) = market.consent(&t, &[l1.clone(), l2.clone()], false).await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("0 location(s) connected"), "{text}");
    assert!(text.contains("2 location(s) are pending"), "{text}");
    assert!(text.contains("tenants map"), "{text}");
    let pending = || async {
        let mut ids: Vec<String> = ports::store::AgencyStore::pending_locations(store.as_ref())
            .await
            .unwrap()
            .into_iter()
            .map(|p| p.location_id.to_string())
            .collect();
        ids.sort();
        ids
    };
    let mut both = vec![l1.clone(), l2.clone()];
    both.sort();
    assert_eq!(pending().await, both);

    // `tenants list`: the pending locations, with why.
    let out = t
        .command(&["tenants", "list", "--json"])
        .await
        .output()
        .await
        .unwrap();
    assert!(out.status.success());
    let listed: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let row = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["location"] == json!(l1))
        .expect("the pending location is listed")
        .clone();
    assert_eq!(row["state"], "pending");
    assert_eq!(row["install_kind"], "agency");
    assert_eq!(row["ghl_company"], json!(company));
    assert_eq!(row["ekyte_company"], Value::Null);
    assert!(
        row["pending_reason"]
            .as_str()
            .is_some_and(|r| r.contains("no mapping rule")),
        "{row}"
    );
    let table = t
        .command(&["tenants", "list"])
        .await
        .output()
        .await
        .unwrap();
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.contains("1 tenant(s), 2 location(s) pending"),
        "{table}"
    );

    // `tenants map` refuses what cannot work and stores nothing.
    let dir = tempfile::tempdir().unwrap();
    let ekyte_company = t.tenant.ekyte_company_id.to_string();
    let map = |location: String, settings: domain::TenantSettings| {
        let file = dir.path().join(format!("{location}.json"));
        std::fs::write(&file, serde_json::to_vec(&settings).unwrap()).unwrap();
        let (t, ekyte_company) = (&t, ekyte_company.clone());
        async move {
            t.command(&[
                "tenants",
                "map",
                "--location",
                &location,
                "--ekyte-company",
                &ekyte_company,
                "--settings",
                &file.display().to_string(),
            ])
            .await
            .output()
            .await
            .expect("run tenants map")
        }
    };
    let mut settings = t.tenant.settings.clone();
    settings.ekyte.default_location = false;
    let mut no_email = settings.clone();
    no_email.ekyte.user_email = None;
    let out = map(l1.clone(), no_email).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("ekyte.user_email"), "{stderr}");
    assert!(stderr.contains("nothing was stored"), "{stderr}");
    let out = map("locNotPending9".into(), settings.clone()).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("is not pending"), "{stderr}");
    assert_eq!(pending().await, both, "nothing changed");
    assert_eq!(TenantStore::list(store.as_ref()).await.unwrap().len(), 1);

    // With what it needs, it is mapped: the keys come from the tenant on that eKyte company.
    let out = map(l1.clone(), settings).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tenant = TenantStore::by_location(store.as_ref(), &domain::LocationId::parse(&l1).unwrap())
        .await
        .unwrap()
        .expect("the mapped tenant");
    assert_eq!(tenant.id.as_str(), format!("loc-{}", l1.to_lowercase()));
    assert_eq!(tenant.name, "Client 1");
    assert_eq!(tenant.state(), "active");
    assert_eq!(tenant.install.kind, domain::InstallKind::Agency);
    assert_eq!(tenant.install.company_id.as_deref(), Some(company.as_str()));
    assert_eq!(tenant.ekyte_company_id, t.tenant.ekyte_company_id);
    assert_eq!(pending().await, vec![l2.clone()]);

    // It syncs, through the agency's token.
    let deployed = &market.deployed;
    let worker = deployed.worker("pending-e2e".into());
    let stats = worker.stats.clone();
    let worker_stop = CancellationToken::new();
    let worker_task = tokio::spawn(worker.run(worker_stop.clone()));
    market.full_sync(&tenant.id).await;
    app::demo::run::wait_quiet(deployed.broker.as_ref(), &t.world, &stats, SETTLE, None)
        .await
        .expect("settle");
    for c in &clients1 {
        let ext = format!("ghl:{l1}:{c}");
        assert_eq!(
            t.world
                .ekyte
                .workspaces_by_external_id(t.world.company.company_id, &ext)
                .len(),
            1,
            "{ext}"
        );
    }

    // The agency installs the app on one more location: the company-wide INSTALL (no
    // locationId) makes the ingress list the installed locations, and the new one is pending.
    let (l3, _) = client_location(ghl, 3, false);
    ghl.act_install_company(&company, APP, std::slice::from_ref(&l3))
        .expect("install on one more location");
    let mut expected = vec![l2.clone(), l3.clone()];
    expected.sort();
    eventually("the added location is pending", SETTLE, || async {
        (pending().await == expected).then_some(())
    })
    .await;
    assert_eq!(
        TenantStore::get(store.as_ref(), &tenant.id)
            .await
            .unwrap()
            .state(),
        "active",
        "the mapped location stays connected"
    );
    assert_eq!(stats.dead_lettered.load(Ordering::Relaxed), 0);
    worker_stop.cancel();
    let _ = worker_task.await;
    market.stop.cancel();
}
