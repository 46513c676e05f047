//! What the simulator cannot easily produce, against wiremock: 429s with and without headers,
//! 5xx and timeouts on reads (retried) and on creates (resolved by a lookup, not repeated),
//! 422 bodies of both shapes, 403 naming a scope, bodies that are not what GHL documents.

use std::sync::Arc;
use std::time::{Duration, Instant};

use domain::{Contact, GhlContactId, Note};
use ghl::{GhlAdapter, GhlAdapterConfig, RateConfig};
use ports::ghl::GhlApi;
use ports::store::{CredentialSecret, CredentialStore, NewCredential, Provider};
use ports::{ApiError, Classify, Disposition, Scope};
use secrecy::SecretString;
use serde_json::{Value, json};
use wiremock::matchers::{body_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::{
    MachineShare, MemoryCredentials, adapter_config, scope, share_machine, tenant,
};

const LOC: &str = "locWiremock000000001";

struct Fake {
    _share: MachineShare,
    server: MockServer,
    adapter: GhlAdapter,
    scope: Scope,
}

async fn fake_with(adapt: impl FnOnce(GhlAdapterConfig) -> GhlAdapterConfig) -> Fake {
    let share = share_machine().await;
    let server = MockServer::start().await;
    let store = MemoryCredentials::new();
    let t = tenant("wm", LOC);
    store
        .put(
            &t.id,
            Provider::Ghl,
            &NewCredential {
                secret: CredentialSecret::GhlPrivate {
                    token: SecretString::from("pit-wiremock".to_owned()),
                },
                expires_at: None,
            },
        )
        .await
        .unwrap();
    let config = adapt(GhlAdapterConfig {
        rate: RateConfig {
            interval: Duration::from_millis(50),
            ..RateConfig::default()
        },
        ..adapter_config(&server.uri())
    });
    let adapter = GhlAdapter::new(config, store as Arc<dyn CredentialStore>).unwrap();
    Fake {
        _share: share,
        server,
        adapter,
        scope: scope(&t),
    }
}

async fn fake() -> Fake {
    fake_with(|c| c).await
}

fn contact_json(id: &str) -> Value {
    json!({"contact": {"id": id, "locationId": LOC, "firstName": "Ana", "email": "ana@x.test",
                       "dateUpdated": "2024-01-01T00:00:00.000Z"}})
}

fn id(raw: &str) -> GhlContactId {
    GhlContactId::parse(raw).unwrap()
}

fn rate_headers(t: ResponseTemplate, remaining: u32) -> ResponseTemplate {
    t.insert_header("X-RateLimit-Limit-Daily", "200000")
        .insert_header("X-RateLimit-Daily-Remaining", "199000")
        .insert_header("X-RateLimit-Interval-Milliseconds", "50")
        .insert_header("X-RateLimit-Max", "100")
        .insert_header("X-RateLimit-Remaining", remaining.to_string().as_str())
}

async fn requests_to(server: &MockServer, verb: &str, p: &str) -> usize {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| r.method.as_str() == verb && r.url.path() == p)
        .count()
}

#[tokio::test]
async fn a_read_is_retried_after_a_5xx() {
    let f = fake().await;
    Mock::given(method("GET"))
        .and(path("/contacts/c1"))
        .respond_with(ResponseTemplate::new(502).set_body_string("<html>Bad Gateway</html>"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&f.server)
        .await;
    Mock::given(method("GET"))
        .and(path("/contacts/c1"))
        .and(header("Version", "2021-07-28"))
        .and(header("Authorization", "Bearer pit-wiremock"))
        .respond_with(ResponseTemplate::new(200).set_body_json(contact_json("c1")))
        .with_priority(2)
        .mount(&f.server)
        .await;
    let c = f.adapter.get_contact(&f.scope, &id("c1")).await.unwrap();
    assert_eq!(c.contact.first_name.as_deref(), Some("Ana"));
    assert_eq!(requests_to(&f.server, "GET", "/contacts/c1").await, 2);
}

#[tokio::test]
async fn a_read_that_keeps_failing_is_transient_with_its_cause() {
    let f = fake().await;
    Mock::given(method("GET"))
        .and(path("/contacts/c1"))
        .respond_with(
            ResponseTemplate::new(503)
                .set_body_json(json!({"statusCode": 503, "message": "Service Unavailable"})),
        )
        .mount(&f.server)
        .await;
    let e = f
        .adapter
        .get_contact(&f.scope, &id("c1"))
        .await
        .unwrap_err();
    assert!(matches!(e, ApiError::Transient { .. }), "{e:?}");
    assert_eq!(e.disposition(), Disposition::Retry { after: None });
    let cause = std::error::Error::source(&e).unwrap().to_string();
    assert!(
        cause.contains("503") && cause.contains("Service Unavailable"),
        "{cause}"
    );
    assert_eq!(requests_to(&f.server, "GET", "/contacts/c1").await, 4);
}

#[tokio::test]
async fn a_create_after_a_5xx_is_resolved_by_a_lookup_not_repeated() {
    let f = fake().await;
    Mock::given(method("POST"))
        .and(path("/contacts/"))
        .respond_with(ResponseTemplate::new(500))
        .expect(1)
        .mount(&f.server)
        .await;
    Mock::given(method("GET"))
        .and(path("/contacts/search/duplicate"))
        .and(query_param("locationId", LOC))
        .and(query_param("email", "ana@x.test"))
        .respond_with(ResponseTemplate::new(200).set_body_json(contact_json("c9")))
        .expect(1)
        .mount(&f.server)
        .await;
    Mock::given(method("GET"))
        .and(path("/contacts/c9"))
        .respond_with(ResponseTemplate::new(200).set_body_json(contact_json("c9")))
        .mount(&f.server)
        .await;
    let c = f
        .adapter
        .create_contact(
            &f.scope,
            &Contact {
                first_name: Some("Ana".into()),
                email: Some("ana@x.test".into()),
                ..Contact::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(c.id.as_str(), "c9");
    f.server.verify().await;
}

#[tokio::test]
async fn a_create_whose_lookup_finds_nothing_is_sent_again_and_its_duplicate_answer_wins() {
    let f = fake().await;
    Mock::given(method("POST"))
        .and(path("/contacts/"))
        .respond_with(ResponseTemplate::new(504))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&f.server)
        .await;
    // The search index lags: the lookup misses the contact the first attempt made, and the
    // second attempt meets GHL's duplicate rule naming it.
    Mock::given(method("POST"))
        .and(path("/contacts/"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "statusCode": 400, "message": "This location does not allow duplicated contacts.",
            "meta": {"contactId": "c7", "matchingField": "email"}})))
        .with_priority(2)
        .mount(&f.server)
        .await;
    Mock::given(method("GET"))
        .and(path("/contacts/search/duplicate"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"contact": null})))
        .mount(&f.server)
        .await;
    Mock::given(method("GET"))
        .and(path("/contacts/c7"))
        .respond_with(ResponseTemplate::new(200).set_body_json(contact_json("c7")))
        .mount(&f.server)
        .await;
    let c = f
        .adapter
        .create_contact(
            &f.scope,
            &Contact {
                email: Some("ana@x.test".into()),
                ..Contact::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(c.id.as_str(), "c7");
    assert_eq!(requests_to(&f.server, "POST", "/contacts/").await, 2);
}

#[tokio::test]
async fn a_create_with_nothing_to_look_up_by_is_not_retried() {
    let f = fake().await;
    Mock::given(method("POST"))
        .and(path("/contacts/"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&f.server)
        .await;
    let e = f
        .adapter
        .create_contact(
            &f.scope,
            &Contact {
                name: Some("Nameless Co".into()),
                ..Contact::default()
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(e, ApiError::Transient { .. }), "{e:?}");
    assert_eq!(requests_to(&f.server, "POST", "/contacts/").await, 1);
}

#[tokio::test]
async fn a_timed_out_read_is_retried_but_a_timed_out_note_create_is_looked_up() {
    let f = fake_with(|c| GhlAdapterConfig {
        request_timeout: Duration::from_millis(300),
        ..c
    })
    .await;
    Mock::given(method("GET"))
        .and(path("/contacts/c1"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(contact_json("c1"))
                .set_delay(Duration::from_secs(3)),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&f.server)
        .await;
    Mock::given(method("GET"))
        .and(path("/contacts/c1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(contact_json("c1")))
        .with_priority(2)
        .mount(&f.server)
        .await;
    f.adapter.get_contact(&f.scope, &id("c1")).await.unwrap();

    Mock::given(method("POST"))
        .and(path("/contacts/c1/notes"))
        .respond_with(ResponseTemplate::new(201).set_delay(Duration::from_secs(3)))
        .expect(1)
        .mount(&f.server)
        .await;
    Mock::given(method("GET"))
        .and(path("/contacts/c1/notes"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"notes": [
            {"id": "n-old", "body": "hello", "contactId": "c1", "dateAdded": "2001-01-01T00:00:00.000Z"},
            {"id": "n1", "body": "hello", "contactId": "c1", "dateAdded": chrono::Utc::now().to_rfc3339()}
        ]})))
        .mount(&f.server)
        .await;
    let n = f
        .adapter
        .create_note(
            &f.scope,
            &id("c1"),
            &Note {
                body: Some("hello".into()),
                ..Note::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(n.id.as_str(), "n1", "an identical older note is not ours");
    f.server.verify().await;
}

#[tokio::test]
async fn a_delete_retried_after_a_5xx_treats_not_found_as_done() {
    let f = fake().await;
    Mock::given(method("DELETE"))
        .and(path("/contacts/c1"))
        .respond_with(ResponseTemplate::new(502))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&f.server)
        .await;
    Mock::given(method("DELETE"))
        .and(path("/contacts/c1"))
        .respond_with(
            ResponseTemplate::new(400)
                .set_body_json(json!({"statusCode": 400, "message": "Contact not found"})),
        )
        .with_priority(2)
        .mount(&f.server)
        .await;
    f.adapter.delete_contact(&f.scope, &id("c1")).await.unwrap();
    // Without an earlier unknown outcome, "not found" is reported as such.
    assert!(
        f.adapter
            .delete_contact(&f.scope, &id("c1"))
            .await
            .unwrap_err()
            .is_not_found()
    );
}

#[tokio::test]
async fn a_429_with_headers_waits_for_the_interval_then_succeeds() {
    let f = fake().await;
    Mock::given(method("GET"))
        .and(path("/contacts/c1"))
        .respond_with(rate_headers(ResponseTemplate::new(429), 0))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&f.server)
        .await;
    Mock::given(method("GET"))
        .and(path("/contacts/c1"))
        .respond_with(rate_headers(
            ResponseTemplate::new(200).set_body_json(contact_json("c1")),
            99,
        ))
        .with_priority(2)
        .mount(&f.server)
        .await;
    let t0 = Instant::now();
    f.adapter.get_contact(&f.scope, &id("c1")).await.unwrap();
    assert!(
        t0.elapsed() >= Duration::from_millis(50),
        "waited for X-RateLimit-Interval-Milliseconds: {:?}",
        t0.elapsed()
    );
    let budget = &f.adapter.budgets().for_resource(LOC)[0];
    assert_eq!(budget.throttled, 1);
    assert_eq!(budget.interval, Duration::from_millis(50));
}

#[tokio::test]
async fn a_429_without_headers_is_backed_off_and_retried() {
    let f = fake().await;
    Mock::given(method("GET"))
        .and(path("/contacts/c1"))
        .respond_with(ResponseTemplate::new(429))
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&f.server)
        .await;
    Mock::given(method("GET"))
        .and(path("/contacts/c1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(contact_json("c1")))
        .with_priority(2)
        .mount(&f.server)
        .await;
    f.adapter.get_contact(&f.scope, &id("c1")).await.unwrap();
    assert_eq!(requests_to(&f.server, "GET", "/contacts/c1").await, 3);
}

#[tokio::test]
async fn repeated_429s_outlast_the_backoff_and_are_rate_limited_with_a_delay() {
    let f = fake().await;
    Mock::given(method("POST"))
        .and(path("/contacts/search"))
        .respond_with(rate_headers(ResponseTemplate::new(429), 0))
        .mount(&f.server)
        .await;
    let e = f
        .adapter
        .list_contacts(
            &f.scope,
            ports::ghl::ListingMode::Search,
            &ports::ghl::ContactSearch {
                page_limit: 10,
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    match e {
        ApiError::RateLimited {
            retry_after: Some(d),
        } => assert_eq!(d, Duration::from_millis(50)),
        other => panic!("{other:?}"),
    }
    assert_eq!(requests_to(&f.server, "POST", "/contacts/search").await, 4);
}

#[tokio::test]
async fn a_422_message_may_be_a_string_or_an_array() {
    let f = fake().await;
    Mock::given(method("POST"))
        .and(path("/contacts/c1/tags"))
        .respond_with(ResponseTemplate::new(422).set_body_json(json!({
            "statusCode": 422, "message": "tags must be an array", "error": "Unprocessable Entity"})))
        .mount(&f.server)
        .await;
    Mock::given(method("DELETE"))
        .and(path("/contacts/c1/tags"))
        .and(body_json(json!({"tags": ["a", "b"]})))
        .respond_with(ResponseTemplate::new(422).set_body_json(json!({
            "statusCode": 422, "message": ["tags.0 should not be empty", "property x should not exist"],
            "error": "Unprocessable Entity"})))
        .mount(&f.server)
        .await;
    match f.adapter.add_tags(&f.scope, &id("c1"), &["a".into()]).await {
        Err(ApiError::Invalid { messages }) => assert_eq!(messages, vec!["tags must be an array"]),
        other => panic!("{other:?}"),
    }
    match f
        .adapter
        .remove_tags(&f.scope, &id("c1"), &["a".into(), "b".into()])
        .await
    {
        Err(ApiError::Invalid { messages }) => assert_eq!(
            messages,
            vec!["tags.0 should not be empty", "property x should not exist"]
        ),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_403_names_the_scope_and_a_scope_401_does_not_refresh() {
    let f = fake().await;
    Mock::given(method("PUT"))
        .and(path("/contacts/c1"))
        .respond_with(ResponseTemplate::new(403).set_body_json(json!({
            "statusCode": 403, "message": "The token is not authorized for this scope: contacts.write",
            "error": "Forbidden"})))
        .mount(&f.server)
        .await;
    Mock::given(method("GET"))
        .and(path("/contacts/c1/notes"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({
            "statusCode": 401, "message": "The token is not authorized for this scope."})))
        .mount(&f.server)
        .await;
    let e = f
        .adapter
        .update_contact(
            &f.scope,
            &id("c1"),
            &[domain::FieldChange {
                field: "city",
                from: domain::FieldValue::Text(None),
                to: domain::FieldValue::Text(Some("X".into())),
            }],
        )
        .await
        .unwrap_err();
    match &e {
        ApiError::Forbidden { missing_scope, .. } => {
            assert_eq!(missing_scope.as_deref(), Some("contacts.write"))
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(e.disposition(), Disposition::DeadLetter);
    match f.adapter.list_notes(&f.scope, &id("c1")).await {
        Err(ApiError::Forbidden {
            missing_scope: None,
            message,
        }) => assert!(message.contains("contacts.readonly"), "{message}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(requests_to(&f.server, "GET", "/contacts/c1/notes").await, 1);
}

#[tokio::test]
async fn bodies_we_cannot_read_are_errors_that_say_where() {
    let f = fake().await;
    Mock::given(method("GET"))
        .and(path("/contacts/c1"))
        .respond_with(ResponseTemplate::new(200).set_body_string("<html>maintenance</html>"))
        .mount(&f.server)
        .await;
    Mock::given(method("GET"))
        .and(path("/contacts/c2"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"contact": {"id": "bad id/../x"}})),
        )
        .mount(&f.server)
        .await;
    for (c, want) in [("c1", "GET /contacts/{contactId}"), ("c2", "contact id")] {
        let e = f.adapter.get_contact(&f.scope, &id(c)).await.unwrap_err();
        assert!(matches!(e, ApiError::Unknown(_)), "{e:?}");
        let chain = format!("{:#}", anyhow::Error::new(e));
        assert!(chain.contains(want), "{chain}");
    }
}

#[tokio::test]
async fn calendars_use_their_own_version_header() {
    let f = fake().await;
    Mock::given(method("GET"))
        .and(path("/calendars/events/appointments/a1"))
        .and(header("Version", "2021-04-15"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"event": {
            "id": "a1", "contactId": "c1", "title": "Demo",
            "startTime": "2030-01-02T10:00:00-03:00", "endTime": "2030-01-02T10:30:00-03:00"}})))
        .expect(1)
        .mount(&f.server)
        .await;
    let a = f
        .adapter
        .get_appointment(&f.scope, &domain::GhlAppointmentId::parse("a1").unwrap())
        .await
        .unwrap();
    assert_eq!(
        a.appointment.start.unwrap().to_rfc3339(),
        "2030-01-02T13:00:00+00:00"
    );
    f.server.verify().await;
}
