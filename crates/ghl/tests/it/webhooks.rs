//! Webhook signatures (Ed25519, legacy RSA), the replay window, the simulator's own signed
//! deliveries, and a property test: the parser never panics.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, Utc};
use ed25519_dalek::Signer as _;
use ed25519_dalek::pkcs8::EncodePublicKey as _;
use ghl::webhook::{
    PUBLISHED_ED25519_KEY, SignatureScheme, Signatures, WebhookConfig, WebhookError,
    WebhookVerifier, parse_event,
};
use ports::ghl::{GhlApi, GhlEventKind, TaskSearch};
use proptest::prelude::*;
use rsa::pkcs8::DecodePrivateKey as _;
use rsa::signature::SignatureEncoding as _;
use sandbox::ghl::WebhookFaults;
use serde_json::{Value, json};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::{LOCATION, World};

const RSA_TEST_KEY: &str = include_str!("fixtures/rsa_test_key.pem");

struct Keys {
    ed: ed25519_dalek::SigningKey,
    rsa: rsa::pkcs1v15::SigningKey<sha2::Sha256>,
    verifier: WebhookVerifier,
}

fn keys() -> Keys {
    let ed = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
    let ed_pem = ed
        .verifying_key()
        .to_public_key_pem(Default::default())
        .unwrap();
    let rsa_private = rsa::RsaPrivateKey::from_pkcs8_pem(RSA_TEST_KEY).unwrap();
    let rsa_pem = rsa_private
        .to_public_key()
        .to_public_key_pem(Default::default())
        .unwrap();
    let verifier = WebhookVerifier::new(&WebhookConfig {
        ed25519_keys: vec![ed_pem],
        rsa_keys: vec![rsa_pem],
        ..WebhookConfig::default()
    })
    .unwrap();
    Keys {
        ed,
        rsa: rsa::pkcs1v15::SigningKey::new(rsa_private),
        verifier,
    }
}

fn body_at(ts: DateTime<Utc>) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "type": "ContactUpdate", "locationId": LOCATION, "id": "c1", "email": "a@x.test",
        "webhookId": "7f2c-1", "timestamp": ts.to_rfc3339(), "appId": "app", "versionId": "v"
    }))
    .unwrap()
}

impl Keys {
    fn ed_sign(&self, body: &[u8]) -> String {
        BASE64.encode(self.ed.sign(body).to_bytes())
    }

    fn rsa_sign(&self, body: &[u8]) -> String {
        BASE64.encode(self.rsa.sign(body).to_bytes())
    }
}

#[test]
fn a_valid_ed25519_signature_is_accepted() {
    let k = keys();
    let now = Utc::now();
    let body = body_at(now);
    let sig = k.ed_sign(&body);
    let e = k
        .verifier
        .verify(
            Signatures {
                ghl: Some(&sig),
                legacy: None,
            },
            &body,
            now,
        )
        .unwrap()
        .into_location()
        .expect("a location event");
    assert_eq!(e.webhook_id, "7f2c-1");
    assert!(matches!(e.kind, GhlEventKind::ContactUpdate { .. }));
}

#[test]
fn a_valid_rsa_signature_is_accepted_when_the_ed25519_header_is_absent() {
    let k = keys();
    let now = Utc::now();
    let body = body_at(now);
    let sig = k.rsa_sign(&body);
    let headers = {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert("X-WH-Signature", sig.parse().unwrap());
        h
    };
    let sigs = Signatures::from_headers(&headers);
    assert_eq!(
        k.verifier.verify_signature(sigs, &body).unwrap(),
        SignatureScheme::RsaSha256
    );
    k.verifier.verify(sigs, &body, now).unwrap();
    // Off after GHL's switch-over: the legacy header alone is refused.
    let strict = WebhookVerifier::new(&WebhookConfig {
        accept_legacy: false,
        ..WebhookConfig::default()
    })
    .unwrap();
    assert!(matches!(
        strict.verify_signature(sigs, &body),
        Err(WebhookError::LegacyRefused)
    ));
}

#[test]
fn a_tampered_body_is_refused() {
    let k = keys();
    let now = Utc::now();
    let body = body_at(now);
    let ed = k.ed_sign(&body);
    let rsa = k.rsa_sign(&body);
    let mut tampered = body.clone();
    let i = tampered.iter().position(|b| *b == b'a').unwrap();
    tampered[i] = b'b';
    for sigs in [
        Signatures {
            ghl: Some(&ed),
            legacy: None,
        },
        Signatures {
            ghl: None,
            legacy: Some(&rsa),
        },
    ] {
        let e = k.verifier.verify(sigs, &tampered, now).unwrap_err();
        assert!(matches!(e, WebhookError::BadSignature(_)), "{e}");
        assert_eq!(e.http_status(), 401);
    }
    // Re-serialising the JSON (as the Node examples do) is not the raw body either.
    let reserialised =
        serde_json::to_vec_pretty(&serde_json::from_slice::<Value>(&body).unwrap()).unwrap();
    assert!(
        k.verifier
            .verify(
                Signatures {
                    ghl: Some(&ed),
                    legacy: None
                },
                &reserialised,
                now
            )
            .is_err()
    );
}

#[test]
fn a_signature_from_another_key_is_refused() {
    let k = keys();
    let now = Utc::now();
    let body = body_at(now);
    let sig = k.ed_sign(&body);
    // GHL's published key did not sign this.
    let published = WebhookVerifier::new(&WebhookConfig {
        ed25519_keys: vec![PUBLISHED_ED25519_KEY.to_owned()],
        ..WebhookConfig::default()
    })
    .unwrap();
    assert!(matches!(
        published.verify(
            Signatures {
                ghl: Some(&sig),
                legacy: None
            },
            &body,
            now
        ),
        Err(WebhookError::BadSignature(SignatureScheme::Ed25519))
    ));
    let rsa = k.rsa_sign(&body);
    assert!(matches!(
        published.verify(
            Signatures {
                ghl: None,
                legacy: Some(&rsa)
            },
            &body,
            now
        ),
        Err(WebhookError::BadSignature(SignatureScheme::RsaSha256))
    ));
}

#[test]
fn a_missing_header_is_refused_and_a_bad_ed25519_never_falls_back() {
    let k = keys();
    let now = Utc::now();
    let body = body_at(now);
    let e = k
        .verifier
        .verify(Signatures::default(), &body, now)
        .unwrap_err();
    assert!(matches!(e, WebhookError::MissingSignature));
    assert_eq!(e.http_status(), 401);
    let good_rsa = k.rsa_sign(&body);
    let wrong_ed = k.ed_sign(b"something else");
    assert!(matches!(
        k.verifier.verify(
            Signatures {
                ghl: Some(&wrong_ed),
                legacy: Some(&good_rsa)
            },
            &body,
            now
        ),
        Err(WebhookError::BadSignature(SignatureScheme::Ed25519))
    ));
}

#[test]
fn a_stale_timestamp_is_refused() {
    let k = keys();
    let now = Utc::now();
    let body = body_at(now - chrono::Duration::minutes(6));
    let sig = k.ed_sign(&body);
    let sigs = Signatures {
        ghl: Some(&sig),
        legacy: None,
    };
    let e = k.verifier.verify(sigs, &body, now).unwrap_err();
    assert!(matches!(e, WebhookError::Stale { .. }), "{e}");
    assert_eq!(e.http_status(), 401);
    // A wider window (configurable) lets it through.
    let patient = WebhookVerifier::new(&WebhookConfig {
        ed25519_keys: vec![
            k.ed.verifying_key()
                .to_public_key_pem(Default::default())
                .unwrap(),
        ],
        replay_window: Duration::from_secs(600),
        ..WebhookConfig::default()
    })
    .unwrap();
    patient.verify(sigs, &body, now).unwrap();
}

#[tokio::test]
async fn the_simulators_signed_deliveries_verify_and_parse() {
    let receiver = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&receiver)
        .await;
    let w = World::start().await;
    w.ghl.set_webhook_target(Some(receiver.uri()));
    w.ghl.set_webhook_faults(WebhookFaults {
        omit_task_create_contact_id: true,
        ..WebhookFaults::default()
    });
    let verifier = WebhookVerifier::new(&WebhookConfig {
        ed25519_keys: vec![w.ghl.webhook_public_key_pem()],
        ..WebhookConfig::default()
    })
    .unwrap();

    let c = w
        .ghl
        .act_create_contact(
            LOCATION,
            json!({"firstName": "Hook", "email": "hook@x.test"}),
        )
        .unwrap();
    let c = c["id"].as_str().unwrap().to_owned();
    w.ghl
        .act_create_task(&c, json!({"title": "From the UI"}))
        .unwrap();
    w.ghl
        .act_create_note(&c, json!({"body": "A note"}))
        .unwrap();
    w.ghl
        .act_create_appointment(json!({"contactId": c, "startTime": "2030-01-01T10:00:00Z"}))
        .unwrap();
    assert!(w.ghl.wait_webhooks_drained(Duration::from_secs(10)).await);

    let received = receiver.received_requests().await.unwrap();
    let mut kinds = Vec::new();
    for r in &received {
        let event = verifier
            .verify(Signatures::from_headers(&r.headers), &r.body, Utc::now())
            .unwrap()
            .into_location()
            .expect("a location event");
        assert_eq!(event.location.as_str(), LOCATION);
        kinds.push(event.kind);
    }
    assert!(
        kinds
            .iter()
            .any(|k| matches!(k, GhlEventKind::ContactCreate { .. }))
    );
    assert!(
        kinds
            .iter()
            .any(|k| matches!(k, GhlEventKind::NoteCreate { .. }))
    );
    assert!(kinds.iter().any(|k| matches!(
        k,
        GhlEventKind::AppointmentCreate {
            contact: Some(_),
            ..
        }
    )));
    // TaskCreate without contactId (#332): resolved through the location's task search.
    let (task, contact) = kinds
        .iter()
        .find_map(|k| match k {
            GhlEventKind::TaskCreate { task, contact } => Some((task.clone(), contact.clone())),
            _ => None,
        })
        .unwrap();
    assert_eq!(contact, None);
    let tasks = w
        .adapter
        .search_tasks(
            &w.scope(),
            &TaskSearch {
                limit: 100,
                ..TaskSearch::default()
            },
        )
        .await
        .unwrap();
    let owner = tasks.iter().find(|t| t.id == task).unwrap();
    assert_eq!(owner.contact.as_str(), c);
}

// ------------------------------------------------------------------------------- properties

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,24}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(".{0,12}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Payloads close to real ones: a known (or unknown) type, and each field either sensible or
/// random.
fn near_payload() -> impl Strategy<Value = Value> {
    let kind = prop_oneof![
        Just("ContactCreate"),
        Just("ContactDndUpdate"),
        Just("TaskCreate"),
        Just("TaskComplete"),
        Just("NoteUpdate"),
        Just("AppointmentDelete"),
        Just("INSTALL"),
        Just("UNINSTALL"),
        Just("SomethingNew"),
    ];
    let field = |good: Value| prop_oneof![Just(good), json_value()];
    (
        kind,
        field(json!(LOCATION)),
        field(json!("wh-1")),
        field(json!("2025-01-01T00:00:00Z")),
        field(json!("c1")),
        field(json!("c2")),
        field(json!({"id": "a1", "contactId": "c1"})),
    )
        .prop_map(|(kind, loc, wh, ts, id, contact, appt)| {
            json!({"type": kind, "locationId": loc, "webhookId": wh, "timestamp": ts,
                   "id": id, "contactId": contact, "appointment": appt})
        })
}

proptest! {
    #[test]
    fn the_parser_never_panics_on_bytes(body in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse_event(&body);
    }

    #[test]
    fn the_parser_never_panics_on_json(v in json_value()) {
        let _ = parse_event(&serde_json::to_vec(&v).unwrap());
    }

    #[test]
    fn the_parser_never_panics_on_near_payloads(v in near_payload()) {
        if let Err(e) = parse_event(&serde_json::to_vec(&v).unwrap()) {
            prop_assert_eq!(e.http_status(), 400);
        }
    }

    #[test]
    fn verification_never_panics(
        body in prop::collection::vec(any::<u8>(), 0..256),
        ghl in proptest::option::of(".{0,100}"),
        legacy in proptest::option::of(".{0,100}"),
    ) {
        static PUBLISHED: std::sync::OnceLock<WebhookVerifier> = std::sync::OnceLock::new();
        let v = PUBLISHED.get_or_init(|| WebhookVerifier::new(&WebhookConfig::default()).unwrap());
        let r = v.verify(Signatures { ghl: ghl.as_deref(), legacy: legacy.as_deref() }, &body, Utc::now());
        prop_assert!(r.is_err());
    }
}
