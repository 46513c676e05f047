//! Every endpoint of the mission against the GHL simulator, and a check on the simulator's
//! counters that none of them was left out.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{TimeZone, Utc};
use domain::{
    Contact, FieldChange, FieldValue, GhlAppointmentId, GhlBusinessId, GhlContactId, Note, Task,
    TaskStatus,
};
use ports::ghl::{ContactSearch, GhlApi, ListingMode, TaskSearch};
use ports::store::{CredentialSecret, CredentialStore, Provider};
use ports::{ApiError, Scope};
use sandbox::ghl::{CustomFieldSpec, OAuthClientSpec};
use serde_json::{Value, json};

use crate::support::{LOCATION, World, scope, tenant};

/// The routes the mission names (issue 4, API.md §4, §7), as the simulator counts them.
const MISSION_ROUTES: &[&str] = &[
    "GET /contacts/{contactId}",
    "POST /contacts/",
    "POST /contacts/upsert",
    "PUT /contacts/{contactId}",
    "DELETE /contacts/{contactId}",
    "GET /contacts/",
    "POST /contacts/search",
    "GET /contacts/search/duplicate",
    "GET /contacts/business/{businessId}",
    "GET /businesses/{businessId}",
    "GET /contacts/{contactId}/tasks",
    "GET /contacts/{contactId}/tasks/{taskId}",
    "POST /contacts/{contactId}/tasks",
    "PUT /contacts/{contactId}/tasks/{taskId}",
    "PUT /contacts/{contactId}/tasks/{taskId}/completed",
    "DELETE /contacts/{contactId}/tasks/{taskId}",
    "POST /locations/{locationId}/tasks/search",
    "GET /contacts/{contactId}/notes",
    "GET /contacts/{contactId}/notes/{id}",
    "POST /contacts/{contactId}/notes",
    "PUT /contacts/{contactId}/notes/{id}",
    "DELETE /contacts/{contactId}/notes/{id}",
    "GET /contacts/{contactId}/appointments",
    "GET /calendars/events/appointments/{eventId}",
    "POST /contacts/{contactId}/tags",
    "DELETE /contacts/{contactId}/tags",
    "POST /oauth/token",
    "POST /oauth/locationToken",
];

fn text(v: &str) -> FieldValue {
    FieldValue::Text(Some(v.to_owned()))
}

#[tokio::test]
async fn every_route_of_the_mission_is_called_and_answers_as_documented() {
    let w = World::start().await;
    let s = w.scope();
    let ghl = &w.adapter;

    // ---------------------------------------------------------------- seed data
    w.ghl
        .define_custom_fields(
            LOCATION,
            &[CustomFieldSpec {
                id: "cfTier".into(),
                name: "Tier".into(),
                field_key: "contact.tier".into(),
                data_type: "TEXT".into(),
            }],
        )
        .unwrap();
    let biz = w
        .ghl
        .seed_businesses(LOCATION, &[json!({"name": "ACME Ltda", "city": "Recife"})])
        .unwrap()
        .remove(0);
    let ana = w
        .ghl
        .seed_contacts(
            LOCATION,
            &[
                json!({"firstName": "Ana", "lastName": "Souza", "email": "ana@acme.test",
                     "businessId": biz, "customFields": [{"id": "cfTier", "value": "gold"}]}),
            ],
        )
        .unwrap()
        .remove(0);
    let appointment = w
        .ghl
        .seed_appointments(&[json!({"contactId": ana, "title": "Kick-off",
                                    "startTime": "2030-01-02T10:00:00Z", "endTime": "2030-01-02T10:30:00Z"})])
        .unwrap()
        .remove(0);
    let ana = GhlContactId::parse(ana).unwrap();
    let biz = GhlBusinessId::parse(biz).unwrap();

    // ---------------------------------------------------------------- contacts
    let got = ghl.get_contact(&s, &ana).await.unwrap();
    assert_eq!(got.contact.email.as_deref(), Some("ana@acme.test"));
    assert_eq!(got.contact.business_id.as_ref(), Some(&biz));
    assert_eq!(
        got.contact.custom_fields,
        BTreeMap::from([("cfTier".to_owned(), "gold".to_owned())])
    );
    assert_eq!(got.location.as_str(), LOCATION);

    let bob = Contact {
        first_name: Some("Bob".into()),
        last_name: Some("Lima".into()),
        email: Some("bob@acme.test".into()),
        phone: Some("+15550002222".into()),
        company_name: Some("ACME".into()),
        tags: vec!["ekyte".into()],
        ..Contact::default()
    };
    let created = ghl.create_contact(&s, &bob).await.unwrap();
    let bob_id = created.id.clone();
    assert_eq!(created.contact.tags, vec!["ekyte"]);
    assert_eq!(created.contact.company_name.as_deref(), Some("ACME"));

    // GHL's duplicate rule: a second create is a conflict naming the first.
    match ghl.create_contact(&s, &bob).await {
        Err(ApiError::Conflict { existing_id, .. }) => {
            assert_eq!(existing_id.as_deref(), Some(bob_id.as_str()))
        }
        other => panic!("expected a conflict, got {other:?}"),
    }

    let updated = ghl
        .update_contact(
            &s,
            &bob_id,
            &[
                FieldChange {
                    field: "city",
                    from: FieldValue::Text(None),
                    to: text("Recife"),
                },
                FieldChange {
                    field: "dnd",
                    from: FieldValue::Bool(false),
                    to: FieldValue::Bool(true),
                },
            ],
        )
        .await
        .unwrap();
    assert_eq!(updated.contact.city.as_deref(), Some("Recife"));
    assert!(updated.contact.dnd);
    assert!(matches!(
        ghl.update_contact(
            &s,
            &bob_id,
            &[FieldChange {
                field: "tags",
                from: FieldValue::List(vec![]),
                to: FieldValue::List(vec!["x".into()]),
            }],
        )
        .await,
        Err(ApiError::Invalid { .. })
    ));

    let (upserted, new) = ghl
        .upsert_contact(
            &s,
            &Contact {
                email: Some("bob@acme.test".into()),
                city: Some("Olinda".into()),
                ..Contact::default()
            },
        )
        .await
        .unwrap();
    assert!(!new);
    assert_eq!(upserted.id, bob_id);
    assert_eq!(upserted.contact.city.as_deref(), Some("Olinda"));

    assert_eq!(
        ghl.find_duplicate(&s, Some("bob@acme.test".into()), None)
            .await
            .unwrap(),
        Some(bob_id.clone())
    );
    assert_eq!(
        ghl.find_duplicate(&s, None, Some("+15550002222".into()))
            .await
            .unwrap(),
        Some(bob_id.clone()),
        "the + of the phone must travel as %2B"
    );
    assert_eq!(
        ghl.find_duplicate(&s, Some("nobody@acme.test".into()), None)
            .await
            .unwrap(),
        None
    );

    let page = ghl
        .list_contacts(
            &s,
            ListingMode::Search,
            &ContactSearch {
                tag: Some("ekyte".into()),
                page_limit: 10,
                ..ContactSearch::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        page.contacts.iter().map(|c| &c.id).collect::<Vec<_>>(),
        vec![&bob_id]
    );
    assert_eq!(page.total, Some(1));
    assert_eq!(page.next, None);

    let legacy = ghl
        .list_contacts(
            &s,
            ListingMode::Legacy,
            &ContactSearch {
                page_limit: 500,
                ..ContactSearch::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(legacy.contacts.len(), 2);

    // ---------------------------------------------------------------- business
    let b = ghl.get_business(&s, &biz).await.unwrap();
    assert_eq!(b.business.name.as_deref(), Some("ACME Ltda"));
    let (members, count) = ghl.contacts_of_business(&s, &biz, 0, 10).await.unwrap();
    assert_eq!(count, 1);
    assert_eq!(members[0].id, ana);

    // ---------------------------------------------------------------- tags
    let tags = ghl
        .add_tags(&s, &bob_id, &["VIP".into(), "lead".into()])
        .await
        .unwrap();
    // GHL may keep the case a client sent, or lower it (the simulator plays both): compare
    // as GHL matches tags, ignoring case.
    let has = |tags: &[String], t: &str| tags.iter().any(|x| x.eq_ignore_ascii_case(t));
    assert!(has(&tags, "vip") && has(&tags, "lead"), "{tags:?}");
    // Removed as it was added (the engine only removes tags it wrote itself).
    let tags = ghl.remove_tags(&s, &bob_id, &["VIP".into()]).await.unwrap();
    assert!(!has(&tags, "vip"), "{tags:?}");
    assert!(has(&tags, "lead"), "{tags:?}");

    // ---------------------------------------------------------------- tasks
    let due = Utc.with_ymd_and_hms(2030, 3, 4, 15, 0, 0).unwrap();
    let task = ghl
        .create_task(
            &s,
            &bob_id,
            &Task {
                title: Some("Send the proposal".into()),
                body: Some("with prices".into()),
                due: Some(due),
                ..Task::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(task.task.due, Some(due));
    assert_eq!(task.contact, bob_id);
    let again = ghl.get_task(&s, &bob_id, &task.id).await.unwrap();
    assert_eq!(again.task.title.as_deref(), Some("Send the proposal"));
    let renamed = ghl
        .update_task(
            &s,
            &bob_id,
            &task.id,
            &[FieldChange {
                field: "title",
                from: text("Send the proposal"),
                to: text("Send the final proposal"),
            }],
        )
        .await
        .unwrap();
    assert_eq!(
        renamed.task.title.as_deref(),
        Some("Send the final proposal")
    );
    let done = ghl
        .set_task_completed(&s, &bob_id, &task.id, true)
        .await
        .unwrap();
    assert_eq!(done.task.status, TaskStatus::Completed);
    assert_eq!(ghl.list_tasks(&s, &bob_id).await.unwrap().len(), 1);
    let found = ghl
        .search_tasks(
            &s,
            &TaskSearch {
                contacts: vec![bob_id.clone()],
                completed: Some(true),
                skip: 0,
                limit: 10,
            },
        )
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].contact, bob_id);
    ghl.delete_task(&s, &bob_id, &task.id).await.unwrap();
    assert!(
        ghl.get_task(&s, &bob_id, &task.id)
            .await
            .unwrap_err()
            .is_not_found()
    );

    // ---------------------------------------------------------------- notes
    let note = ghl
        .create_note(
            &s,
            &bob_id,
            &Note {
                title: Some("Call".into()),
                body: Some("Talked about the renewal".into()),
                created: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        ghl.get_note(&s, &bob_id, &note.id)
            .await
            .unwrap()
            .note
            .body
            .as_deref(),
        Some("Talked about the renewal")
    );
    let edited = ghl
        .update_note(
            &s,
            &bob_id,
            &note.id,
            &Note {
                title: Some("Call".into()),
                body: Some("Renewal agreed".into()),
                created: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(edited.note.body.as_deref(), Some("Renewal agreed"));
    assert_eq!(ghl.list_notes(&s, &bob_id).await.unwrap().len(), 1);
    ghl.delete_note(&s, &bob_id, &note.id).await.unwrap();
    assert!(ghl.list_notes(&s, &bob_id).await.unwrap().is_empty());

    // ---------------------------------------------------------------- appointments
    let appts = ghl.list_appointments(&s, &ana).await.unwrap();
    assert_eq!(appts.len(), 1);
    assert_eq!(appts[0].appointment.title.as_deref(), Some("Kick-off"));
    // "YYYY-MM-DD HH:mm:ss" without a zone, read as UTC (the location's zone is UTC here).
    assert_eq!(
        appts[0].appointment.start,
        Some(Utc.with_ymd_and_hms(2030, 1, 2, 10, 0, 0).unwrap())
    );
    let full = w
        .adapter
        .get_appointment(&s, &GhlAppointmentId::parse(appointment).unwrap())
        .await
        .unwrap();
    assert_eq!(full.appointment.start, appts[0].appointment.start);

    // ---------------------------------------------------------------- delete
    ghl.delete_contact(&s, &bob_id).await.unwrap();
    assert!(
        ghl.get_contact(&s, &bob_id)
            .await
            .unwrap_err()
            .is_not_found()
    );
    assert!(
        ghl.delete_contact(&s, &bob_id)
            .await
            .unwrap_err()
            .is_not_found()
    );

    // ---------------------------------------------------------------- OAuth installs
    w.ghl
        .register_oauth_client(OAuthClientSpec::default())
        .unwrap();
    let oauth = w.adapter.oauth();
    let code = w
        .ghl
        .issue_auth_code("sandbox-client", LOCATION, None)
        .unwrap();
    let install = oauth.exchange_code(&code).await.unwrap();
    assert_eq!(
        install.location_id.as_ref().map(|l| l.as_str()),
        Some(LOCATION)
    );
    let located = tenant("located", LOCATION);
    w.store
        .put(&located.id, Provider::Ghl, &install.credential)
        .await
        .unwrap();
    ghl.get_contact(&scope(&located), &ana).await.unwrap();

    // An agency install: location tokens are minted with POST /oauth/locationToken.
    let company = w
        .ghl
        .dump_location(LOCATION)
        .unwrap()
        .pointer("/location/companyId")
        .and_then(|v| v.as_str())
        .unwrap()
        .to_owned();
    let agency_code = w
        .ghl
        .issue_agency_auth_code("sandbox-client", &company, None)
        .unwrap();
    let agency = oauth.exchange_code(&agency_code).await.unwrap();
    assert_eq!(agency.user_type, ghl::UserType::Company);
    let via_agency = tenant("agency", LOCATION);
    w.store
        .put(&via_agency.id, Provider::Ghl, &agency.credential)
        .await
        .unwrap();
    let c = ghl.get_contact(&scope(&via_agency), &ana).await.unwrap();
    assert_eq!(c.id, ana);
    assert!(matches!(
        w.store.current(&via_agency.id).unwrap().secret,
        CredentialSecret::GhlOAuth { .. }
    ));

    // ---------------------------------------------------------------- coverage
    let counters = w.ghl.counter_snapshot();
    let missing: Vec<&&str> = MISSION_ROUTES
        .iter()
        .filter(|r| {
            let (method, route) = r.split_once(' ').unwrap();
            counters.route_total(method, route) == 0
        })
        .collect();
    assert!(
        missing.is_empty(),
        "routes never called: {missing:?}\ncounters: {:#?}",
        counters.routes
    );
    assert_eq!(counters.status_total(429), 0);
    assert_eq!(counters.event("oauth_location_token"), 1);
}

#[tokio::test]
async fn search_pages_with_search_after_in_date_updated_order() {
    let w = World::start().await;
    let s = w.scope();
    let contacts: Vec<_> = (0..23)
        .map(|i| {
            json!({"firstName": format!("P{i:02}"), "email": format!("p{i}@x.test"),
                   "dateUpdated": format!("2024-01-01T00:00:{:02}.000Z", 59 - i), "tags": ["ekyte"]})
        })
        .collect();
    w.ghl.seed_contacts(LOCATION, &contacts).unwrap();
    let mut seen = Vec::new();
    let mut after = None;
    let mut pages = 0;
    loop {
        let page = w
            .adapter
            .list_contacts(
                &s,
                ListingMode::Search,
                &ContactSearch {
                    page_limit: 5,
                    after: after.clone(),
                    updated_since: Some(Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 40).unwrap()),
                    tag: Some("ekyte".into()),
                },
            )
            .await
            .unwrap();
        pages += 1;
        assert_eq!(page.total, Some(20), "dateUpdated ≥ :40 leaves 20 of 23");
        seen.extend(
            page.contacts
                .iter()
                .map(|c| c.contact.date_updated.unwrap()),
        );
        match page.next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    assert_eq!(seen.len(), 20);
    assert!(
        seen.windows(2).all(|w| w[0] <= w[1]),
        "ascending dateUpdated"
    );
    assert!(pages >= 4);
    assert!(matches!(
        w.adapter
            .list_contacts(
                &s,
                ListingMode::Search,
                &ContactSearch {
                    page_limit: 501,
                    ..ContactSearch::default()
                }
            )
            .await,
        Err(ApiError::Invalid { .. })
    ));
}

/// Whether a search hit carries its own `searchAfter` comes from a third-party mirror only
/// (API.md §5); by default the simulator leaves it out. The adapter then pages with
/// `[dateUpdated epoch ms, id]` of the last hit: several contacts updated in the same
/// millisecond, straddling page boundaries, are each read exactly once.
#[tokio::test]
async fn search_pages_without_a_cursor_on_the_hits_and_reads_ties_once() {
    let w = World::start_with(
        sandbox::ghl::GhlConfig {
            search_cursor: sandbox::ghl::SearchCursor::Absent,
            ..sandbox::ghl::GhlConfig::default()
        },
        |c| c,
    )
    .await;
    let s = w.scope();
    // 17 contacts over 4 distinct milliseconds: runs of 5, 6, 4 and 2 share one `dateUpdated`,
    // so pages of 4 cut through the middle of every run.
    let stamps = [5, 6, 4, 2]
        .iter()
        .enumerate()
        .flat_map(|(ms, n)| std::iter::repeat_n(ms, *n))
        .collect::<Vec<_>>();
    let contacts: Vec<_> = stamps
        .iter()
        .enumerate()
        .map(|(i, ms)| {
            json!({"firstName": format!("S{i:02}"), "email": format!("s{i}@x.test"),
                   "dateUpdated": format!("2024-03-01T10:00:00.{ms:03}Z")})
        })
        .collect();
    let seeded = w.ghl.seed_contacts(LOCATION, &contacts).unwrap();
    let mut seen = Vec::new();
    let mut after = None;
    for _ in 0..20 {
        let page = w
            .adapter
            .list_contacts(
                &s,
                ListingMode::Search,
                &ContactSearch {
                    page_limit: 4,
                    after: after.clone(),
                    ..ContactSearch::default()
                },
            )
            .await
            .unwrap();
        seen.extend(page.contacts.into_iter().map(|c| c.id.as_str().to_owned()));
        match page.next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    let mut want = seeded.clone();
    want.sort();
    let mut got = seen.clone();
    got.sort();
    assert_eq!(got, want, "every contact exactly once: {seen:?}");
}

#[tokio::test]
async fn the_legacy_list_pages_with_its_own_cursor() {
    let w = World::start().await;
    let s = w.scope();
    let contacts: Vec<_> = (0..7)
        .map(|i| json!({"firstName": format!("L{i}"), "email": format!("l{i}@x.test")}))
        .collect();
    w.ghl.seed_contacts(LOCATION, &contacts).unwrap();
    let mut ids = Vec::new();
    let mut after = None;
    loop {
        let page = w
            .adapter
            .list_contacts(
                &s,
                ListingMode::Legacy,
                &ContactSearch {
                    page_limit: 3,
                    after: after.clone(),
                    ..ContactSearch::default()
                },
            )
            .await
            .unwrap();
        ids.extend(page.contacts.into_iter().map(|c| c.id));
        match page.next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 7);
}

#[tokio::test]
async fn a_task_create_webhook_without_contact_is_resolved_by_the_location_search() {
    let w = World::start().await;
    let s = w.scope();
    let c = w
        .ghl
        .seed_contacts(LOCATION, &[json!({"firstName": "T"})])
        .unwrap()
        .remove(0);
    let t = w
        .ghl
        .act_create_task(&c, json!({"title": "From the UI"}))
        .unwrap();
    let task_id = t["id"].as_str().unwrap().to_owned();
    // The engine does not know the contact: it pages through the location's tasks.
    let all = w
        .adapter
        .search_tasks(
            &s,
            &TaskSearch {
                limit: 100,
                ..TaskSearch::default()
            },
        )
        .await
        .unwrap();
    let hit = all.iter().find(|t| t.id.as_str() == task_id).unwrap();
    assert_eq!(hit.contact.as_str(), c);
}

#[tokio::test]
async fn forbidden_names_the_missing_scope() {
    let w = World::start().await;
    let narrow = w
        .ghl
        .register_pit(sandbox::ghl::PitSpec {
            location_id: Some(LOCATION.into()),
            scopes: vec!["contacts.readonly".into()],
            ..sandbox::ghl::PitSpec::default()
        })
        .unwrap();
    let t = tenant("narrow", LOCATION);
    w.store
        .put(
            &t.id,
            Provider::Ghl,
            &ports::store::NewCredential {
                secret: CredentialSecret::GhlPrivate {
                    token: secrecy::SecretString::from(narrow),
                },
                expires_at: None,
            },
        )
        .await
        .unwrap();
    let err = w
        .adapter
        .create_contact(
            &scope(&t),
            &Contact {
                email: Some("x@y.test".into()),
                ..Contact::default()
            },
        )
        .await
        .unwrap_err();
    match err {
        ApiError::Forbidden { missing_scope, .. } => {
            assert_eq!(missing_scope.as_deref(), Some("contacts.write"))
        }
        other => panic!("{other:?}"),
    }
}

/// A sweep reads a location's appointments per calendar over a wide window. The simulator,
/// like the reading of [CAL2] that breaks a careless client, refuses ranges over 31 days: the
/// adapter narrows the range until it passes, reads the window range by range, and starts
/// its next read at the width it learnt. What it reads is what the contact's own listing
/// shows.
#[tokio::test]
async fn calendar_events_cover_a_wide_window_in_ranges_the_api_accepts() {
    // The reading under test: GHL refuses ranges over 31 days (the simulator's pessimistic
    // default, pinned here so that the flipped run of the matrix tests it too).
    let w = World::start_with(
        sandbox::ghl::GhlConfig {
            calendar_events_max_days: 31,
            ..sandbox::ghl::GhlConfig::default()
        },
        |c| c,
    )
    .await;
    let s = w.scope();
    let ana = w
        .ghl
        .seed_contacts(
            LOCATION,
            &[json!({"firstName": "Ana", "email": "ana@cal.test"})],
        )
        .unwrap()
        .remove(0);
    let now = Utc::now();
    let at = |days: i64| (now + chrono::Duration::days(days)).to_rfc3339();
    w.ghl
        .seed_appointments(&[
            json!({"contactId": ana, "calendarId": "calMain", "title": "Past", "startTime": at(-300), "endTime": at(-300)}),
            json!({"contactId": ana, "calendarId": "calMain", "title": "Soon", "startTime": at(1), "endTime": at(1)}),
            json!({"contactId": ana, "calendarId": "calMain", "title": "Later", "startTime": at(200), "endTime": at(200)}),
            json!({"contactId": ana, "calendarId": "calOther", "title": "Elsewhere", "startTime": at(2), "endTime": at(2)}),
            json!({"contactId": ana, "calendarId": "calMain", "title": "Too old", "startTime": at(-400), "endTime": at(-400)}),
        ])
        .unwrap();
    let ana = GhlContactId::parse(ana).unwrap();

    let mut calendars = w.adapter.list_calendars(&s).await.unwrap();
    calendars.sort();
    assert_eq!(calendars, ["calMain", "calOther"]);

    let (from, to) = (
        now - chrono::Duration::days(365),
        now + chrono::Duration::days(365),
    );
    let before = w.ghl.counter_snapshot();
    let got = read_window(&w, &s, "calMain", from, to).await;
    let first_read = w
        .ghl
        .counter_snapshot()
        .route_total("GET", "/calendars/events")
        - before.route_total("GET", "/calendars/events");
    let mut titles: Vec<_> = got
        .iter()
        .map(|a| a.appointment.title.clone().unwrap_or_default())
        .collect();
    titles.sort();
    assert_eq!(
        titles,
        ["Later", "Past", "Soon"],
        "the window, this calendar only"
    );
    assert!(got.iter().all(|a| a.contact == ana));
    // Each reads as the contact's own listing reads it.
    let own = w.adapter.list_appointments(&s, &ana).await.unwrap();
    for a in &got {
        let same = own
            .iter()
            .find(|o| o.id == a.id)
            .expect("in the contact's listing");
        assert_eq!(same.appointment, a.appointment);
    }
    // 730 days in ranges of at most 31: at least 24 reads; the second read wastes none on
    // ranges the API refuses.
    assert!(first_read >= 24, "{first_read} reads");
    let before = w.ghl.counter_snapshot();
    let again = read_window(&w, &s, "calMain", from, to).await;
    let second_read = w
        .ghl
        .counter_snapshot()
        .route_total("GET", "/calendars/events")
        - before.route_total("GET", "/calendars/events");
    assert_eq!(again.len(), 3);
    assert!(
        second_read < first_read,
        "learnt width not used: {second_read} reads after {first_read}"
    );
}

/// Reads `from..=to` as a caller of the port does: one answer at a time, each asking for the
/// rest of the window, going on just after where the last one ended.
async fn read_window(
    w: &World,
    s: &Scope,
    calendar: &str,
    from: chrono::DateTime<Utc>,
    to: chrono::DateTime<Utc>,
) -> Vec<ports::ghl::GhlAppointment> {
    let (mut at, mut out, mut answers) = (from, Vec::new(), 0);
    loop {
        let range = w
            .adapter
            .calendar_events(s, calendar, at, to)
            .await
            .unwrap();
        answers += 1;
        assert!(
            range.through >= at && range.through <= to,
            "answer {answers} ends at {} outside {at}..={to}",
            range.through
        );
        assert!(
            range.events.iter().all(|a| a
                .appointment
                .start
                .is_some_and(|t| t >= at && t <= range.through)),
            "answer {answers} holds appointments outside the range it says it read"
        );
        out.extend(range.events);
        if range.through >= to {
            return out;
        }
        at = range.through + chrono::Duration::milliseconds(1);
    }
}

/// Custom fields of the kinds whose write shape is not text (API.md §3.3) leave GHL as
/// canonical text and go back in the type their field takes: the simulator refuses a
/// number or a list written as text, as GHL's validation does. Read, written to a new
/// contact, read again: the values GHL holds are the same.
#[tokio::test]
async fn custom_fields_go_back_to_ghl_in_the_type_their_field_takes() {
    let w = World::start().await;
    let kinds = [
        ("cfNum", "NUMERICAL", json!(12.5)),
        ("cfBox", "CHECKBOX", json!(["yes"])),
        ("cfMulti", "MULTIPLE_OPTIONS", json!(["red", "blue"])),
        ("cfDate", "DATE", json!("2026-04-10")),
    ];
    let specs: Vec<CustomFieldSpec> = kinds
        .iter()
        .map(|(id, kind, _)| CustomFieldSpec {
            id: (*id).into(),
            name: (*id).into(),
            field_key: format!("contact.{id}"),
            data_type: (*kind).into(),
        })
        .collect();
    w.ghl.define_custom_fields(LOCATION, &specs).unwrap();
    let values: Vec<Value> = kinds
        .iter()
        .map(|(id, _, v)| json!({"id": id, "value": v}))
        .collect();
    let ana = w
        .ghl
        .seed_contacts(
            LOCATION,
            &[json!({"firstName": "Ana", "email": "ana@kinds.test", "customFields": values})],
        )
        .unwrap()
        .remove(0);
    let mut tenant = (*w.scope().tenant).clone();
    tenant.settings.custom_fields = kinds.iter().map(|(id, _, _)| (*id).to_owned()).collect();
    let s = Scope::new(Arc::new(tenant), ports::Priority::RealTime);

    let read = w
        .adapter
        .get_contact(&s, &GhlContactId::parse(ana).unwrap())
        .await
        .unwrap();
    assert_eq!(read.contact.custom_fields["cfMulti"], "red, blue");
    assert_eq!(read.contact.custom_fields["cfNum"], "12.5");
    let copy = Contact {
        first_name: Some("Copy".into()),
        email: Some("copy@kinds.test".into()),
        custom_fields: read.contact.custom_fields.clone(),
        ..Contact::default()
    };
    let created = w.adapter.create_contact(&s, &copy).await.unwrap();
    let held = w.ghl.contact(created.id.as_str()).unwrap();
    for (id, _, want) in &kinds {
        let got = held["customFields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["id"] == *id)
            .map(|f| f["value"].clone());
        assert_eq!(got.as_ref(), Some(want), "{id}: {held}");
    }
}

/// A change of one DND channel sends every declared channel the contact has: whether GHL
/// merges `dndSettings` or replaces it is not documented (the simulator plays both), and the
/// other channels must survive either way. `RCS`, which reads carry but the write DTO does
/// not declare, is never sent (422).
#[tokio::test]
async fn a_dnd_change_keeps_the_other_channels_whether_ghl_merges_or_replaces() {
    for dnd_write in [
        sandbox::ghl::DndWrite::Replace,
        sandbox::ghl::DndWrite::Merge,
    ] {
        let w = World::start_with(
            sandbox::ghl::GhlConfig {
                dnd_write,
                ..sandbox::ghl::GhlConfig::default()
            },
            |c| c,
        )
        .await;
        let s = w.scope();
        let id = w
            .ghl
            .seed_contacts(
                LOCATION,
                &[json!({"firstName": "Dina", "email": "dina@dnd.test", "dnd": false,
                         "dndSettings": {"Call": {"status": "active"}, "Email": {"status": "active"},
                                         "RCS": {"status": "active"}}})],
            )
            .unwrap()
            .remove(0);
        let id = GhlContactId::parse(id).unwrap();
        let read = w.adapter.get_contact(&s, &id).await.unwrap();
        let from = read.contact.dnd_channels.clone();
        assert_eq!(from.len(), 3, "{from:?}");
        let mut to = from.clone();
        let call = to
            .keys()
            .find(|k| k.eq_ignore_ascii_case("call"))
            .unwrap()
            .clone();
        to.insert(call, "inactive".to_owned());
        w.adapter
            .update_contact(
                &s,
                &id,
                &[FieldChange {
                    field: "dnd_channels",
                    from: FieldValue::Map(from),
                    to: FieldValue::Map(to),
                }],
            )
            .await
            .unwrap_or_else(|e| panic!("{dnd_write:?}: {e:?}"));
        let held = w.ghl.contact(id.as_str()).unwrap();
        let status = |ch: &str| {
            held["dndSettings"][ch]["status"]
                .as_str()
                .map(str::to_owned)
        };
        assert_eq!(
            status("Call").as_deref(),
            Some("inactive"),
            "{dnd_write:?}: {held}"
        );
        assert_eq!(
            status("Email").as_deref(),
            Some("active"),
            "{dnd_write:?}: {held}"
        );
    }
}
