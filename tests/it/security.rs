//! Security checks (issue 9), through the real service:
//!
//! - **webhook forgery**: forged, tampered, replayed, stale, malformed and oversized
//!   deliveries sent byte for byte to the real HTTP ingress (in-process app on a loopback
//!   port, a real store, the in-process broker): each one is refused with the status the
//!   ingress documents, and neither the queue nor the store's inbox moves; genuine deliveries
//!   sent beside them (header case and whitespace that HTTP allows) are accepted, so the
//!   refusals are not an ingress that refuses everything;
//! - **tenant isolation**: with two tenants in one store, events validly signed for location A
//!   that name B's contacts, tasks, notes and appointments change nothing of B's, in either
//!   simulator or in the link store;
//! - **secrets**: the real binary runs the paths where secrets leak (config check, a refused
//!   configuration, tenant setup, the OAuth exchange, a sync with 401 refreshes, eKyte
//!   failures with the API key in the query) with `RUST_LOG=debug` and JSON logs, and no
//!   planted value appears in any log line or in the database; a `pg_dump` and the SQLite file
//!   after credentials were stored hold no plaintext token.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use app::config::{Config, QueueBackend};
use app::demo::run::wait_quiet;
use app::demo::sim::SYNC_TAG;
use app::demo::sim::{World, WorldSpec};
use app::queue::Broker as _;
use app::queue::memory::MemoryBroker;
use app::wiring::App;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use chrono::{DateTime, Utc};
use domain::{
    EkyteCompanyId, EkyteTaskTypeId, GhlContactId, LocationId, Tenant, TenantId, TenantSettings,
};
use e2e::security::{
    Planted, RawAnswer, WebhookSigner, assert_no_leaks, pg_dump, post_request, random_secret,
    raw_http, sqlite_bytes,
};
use e2e::support::{AppSpec, TestApp, TestQueues, amqp_url, binary_command, eventually};
use ports::queue::{Envelope, Payload, Publisher as _};
use ports::store::{CredentialStore, DeadLetterStore, Inbox, Provider, TenantStore};
use sandbox::common::FaultConfig;
use sandbox::ghl::{LocationSpec, PitSpec};
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use secrecy::SecretString;
use serde_json::{Value, json};
use store::test_support::{TestBackend, TestDb, random_key_base64};
use tokio_util::sync::CancellationToken;

const LOC_A: &str = "secLocationA00000001";
const CONTACT_A: &str = "secContactA000000001";

/// The configuration every in-process app here starts from: the embedded defaults.
fn base_config() -> Config {
    Config::from_figment(Config::figment(None)).unwrap()
}

/// A webhook body as GHL sends it (API.md §9.1), compact JSON.
fn event(kind: &str, webhook_id: &str, at: DateTime<Utc>, location: &str, extra: Value) -> Vec<u8> {
    let mut v = json!({
        "type": kind,
        "locationId": location,
        "webhookId": webhook_id,
        "timestamp": at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    });
    if let (Value::Object(m), Value::Object(e)) = (&mut v, extra) {
        m.extend(e);
    }
    serde_json::to_vec(&v).unwrap()
}

// ------------------------------------------------------------------------------- the door

/// The real ingress of an in-process app: a fresh store, the in-process broker (nothing
/// consumes it, so whatever was published stays countable), one tenant with a GHL token.
struct Door {
    addr: SocketAddr,
    broker: Arc<MemoryBroker>,
    app: App,
    raw: DatabaseConnection,
    signer: WebhookSigner,
    tenant: Tenant,
    shutdown: CancellationToken,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    // Dropped last: the database outlives the connections above.
    _db: TestDb,
}

impl Door {
    async fn open(backend: TestBackend) -> Self {
        let db = TestDb::fresh(backend)
            .await
            .unwrap_or_else(|e| panic!("a fresh {backend} database: {e}"));
        let signer = WebhookSigner::generate();
        let mut cfg = base_config();
        cfg.database.url = SecretString::from(db.url().to_owned());
        cfg.queue.backend = QueueBackend::Memory;
        cfg.ghl.webhook_ed25519_key = signer.public_pem();
        cfg.crypto.key = SecretString::from(random_key_base64());
        let ring = app::wiring::keyring(&cfg, false).unwrap();
        let store = app::wiring::connect_store(&cfg, ring).await.unwrap();
        let broker = Arc::new(MemoryBroker::new());
        let app = App::build(cfg, store, broker.clone()).await.unwrap();
        let tenant = Tenant {
            id: TenantId::parse("sec-a").unwrap(),
            name: "Security tenant A".into(),
            location_id: LocationId::parse(LOC_A).unwrap(),
            ekyte_company_id: EkyteCompanyId::new(1).unwrap(),
            active: true,
            // What `tenants add` requires; this test never reaches eKyte.
            settings: {
                let mut s = TenantSettings::default();
                s.ekyte.user_email = Some("ops@security.test".into());
                s.ekyte.task_type_id = Some(EkyteTaskTypeId::new(1).unwrap());
                s
            },
            install: Default::default(),
        };
        app::admin::add_tenant(
            app.store.as_ref(),
            app.store.as_ref(),
            &tenant,
            None,
            None,
            Some(SecretString::from(
                "pit-security-door-token-0001".to_owned(),
            )),
        )
        .await
        .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(app::ingress::serve(
            listener,
            app.ingress().unwrap(),
            shutdown.clone(),
        ));
        let raw = db.raw().await.unwrap();
        Self {
            addr,
            broker,
            app,
            raw,
            signer,
            tenant,
            shutdown,
            server,
            _db: db,
        }
    }

    async fn send(&self, request: Vec<u8>) -> RawAnswer {
        raw_http(self.addr, request).await.unwrap()
    }

    /// Messages waiting in the broker, both lanes.
    async fn queued(&self) -> u64 {
        let d = self.broker.depths().await.unwrap();
        d.realtime + d.bulk + d.delayed + d.dead
    }

    /// Every inbox row, as `tenant|source|key`.
    async fn inbox(&self) -> Vec<String> {
        let backend = self.raw.get_database_backend();
        let rows = self
            .raw
            .query_all_raw(Statement::from_string(
                backend,
                "SELECT tenant_id, source, dedupe_key FROM inbox ORDER BY tenant_id, source, dedupe_key",
            ))
            .await
            .unwrap();
        rows.iter()
            .map(|r| {
                let t: String = r.try_get("", "tenant_id").unwrap();
                let s: String = r.try_get("", "source").unwrap();
                let k: String = r.try_get("", "dedupe_key").unwrap();
                format!("{t}|{s}|{k}")
            })
            .collect()
    }

    /// Whether the tenant is active and still has its GHL token (what a forged UNINSTALL
    /// would take away).
    async fn tenant_intact(&self) -> bool {
        let t = TenantStore::get(self.app.store.as_ref(), &self.tenant.id)
            .await
            .unwrap();
        let cred = CredentialStore::get(self.app.store.as_ref(), &self.tenant.id, Provider::Ghl)
            .await
            .is_ok();
        t.active && cred
    }

    async fn close(self) {
        self.shutdown.cancel();
        self.server.await.unwrap().unwrap();
    }
}

// ------------------------------------------------------------------------------- forgery

/// One delivery and what the ingress must answer.
struct Case {
    name: &'static str,
    request: Vec<u8>,
    status: u16,
    /// The `status` field of the ingress's JSON answer, when it sends one.
    outcome: Option<&'static str>,
}

const JSON: (&str, &str) = ("Content-Type", " application/json");

fn sig_header(value: &str) -> (&'static str, String) {
    ("x-ghl-signature", format!(" {value}"))
}

fn post(headers: &[(&str, String)], body: &[u8]) -> Vec<u8> {
    let h: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    post_request("/webhooks/ghl", &h, body, false)
}

/// A signed delivery with the usual headers.
fn signed(signer: &WebhookSigner, body: &[u8]) -> Vec<u8> {
    post(
        &[(JSON.0, JSON.1.to_owned()), sig_header(&signer.sign(body))],
        body,
    )
}

/// The Ed25519 group order ℓ, little-endian (RFC 8032 §5.1).
const ELL: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10,
];

/// The same signature with S replaced by S + ℓ: it verifies under a lax check, and a verifier
/// that accepts it lets anyone make a second valid signature of a genuine body.
fn malleate(sig: [u8; 64]) -> [u8; 64] {
    let mut out = sig;
    let mut carry = 0u16;
    for i in 0..32 {
        let v = u16::from(sig[32 + i]) + u16::from(ELL[i]) + carry;
        out[32 + i] = (v & 0xff) as u8;
        carry = v >> 8;
    }
    out
}

fn forged_cases(door: &Door, replayed: &[u8]) -> Vec<Case> {
    let s = &door.signer;
    let now = Utc::now();
    let contact = |id: &str| json!({ "id": id });
    let ev = |wh: &str| event("ContactUpdate", wh, now, LOC_A, contact(CONTACT_A));
    let other = WebhookSigner::generate();
    let json_ct = (JSON.0, JSON.1.to_owned());
    let mut cases = Vec::new();
    let mut case = |name, request, status, outcome| {
        cases.push(Case {
            name,
            request,
            status,
            outcome,
        })
    };
    let rejected = Some("rejected");

    let b = ev("wh-f01");
    case(
        "signed with another Ed25519 key",
        post(&[json_ct.clone(), sig_header(&other.sign(&b))], &b),
        401,
        rejected,
    );

    let b = ev("wh-f02");
    let sig = s.sign(&b);
    let mut flipped = b.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x01;
    case(
        "one byte of the body flipped after signing",
        post(&[json_ct.clone(), sig_header(&sig)], &flipped),
        401,
        rejected,
    );

    let b = ev("wh-f03");
    let sig = s.sign(&b);
    let changed = event(
        "ContactUpdate",
        "wh-f03",
        now,
        LOC_A,
        contact("secContactEvil000001"),
    );
    case(
        "a field (the contact id) changed after signing",
        post(&[json_ct.clone(), sig_header(&sig)], &changed),
        401,
        rejected,
    );

    let b = ev("wh-f04");
    let sig = s.sign(&b);
    let pretty = serde_json::to_vec_pretty(&serde_json::from_slice::<Value>(&b).unwrap()).unwrap();
    case(
        "whitespace added after signing (pretty-printed)",
        post(&[json_ct.clone(), sig_header(&sig)], &pretty),
        401,
        rejected,
    );

    let b = ev("wh-f05");
    let sig = s.sign(&b);
    let mut trailing = b.clone();
    trailing.push(b'\n');
    case(
        "a trailing newline added after signing",
        post(&[json_ct.clone(), sig_header(&sig)], &trailing),
        401,
        rejected,
    );

    let b = ev("wh-f06");
    case(
        "the genuine signature of another body",
        post(&[json_ct.clone(), sig_header(&s.sign(&ev("wh-other")))], &b),
        401,
        rejected,
    );

    let b = event(
        "ContactUpdate",
        "wh-f07",
        now - chrono::Duration::minutes(10),
        LOC_A,
        contact(CONTACT_A),
    );
    case(
        "stale: validly signed, timestamp 10 minutes old",
        signed(s, &b),
        401,
        rejected,
    );

    let b = event(
        "ContactUpdate",
        "wh-f08",
        now + chrono::Duration::minutes(10),
        LOC_A,
        contact(CONTACT_A),
    );
    case(
        "from the future: validly signed, timestamp 10 minutes ahead",
        signed(s, &b),
        401,
        rejected,
    );

    let b = ev("wh-f09");
    case(
        "no signature header",
        post(std::slice::from_ref(&json_ct), &b),
        401,
        rejected,
    );

    let b = ev("wh-f10");
    case(
        "empty x-ghl-signature (no fallback to the legacy header)",
        post(
            &[
                json_ct.clone(),
                ("x-ghl-signature", String::new()),
                ("x-wh-signature", format!(" {}", s.sign(&b))),
            ],
            &b,
        ),
        401,
        rejected,
    );

    let b = ev("wh-f11");
    case(
        "signature that is not base64",
        post(&[json_ct.clone(), sig_header("!!not*base64??")], &b),
        401,
        rejected,
    );

    let b = ev("wh-f12");
    let short = B64.encode(&s.signature(&b)[..63]);
    case(
        "signature truncated to 63 bytes",
        post(&[json_ct.clone(), sig_header(&short)], &b),
        401,
        rejected,
    );

    let b = ev("wh-f13");
    let sig = s.sign(&b);
    case(
        "base64 text of the signature cut short",
        post(&[json_ct.clone(), sig_header(&sig[..sig.len() - 4])], &b),
        401,
        rejected,
    );

    let b = ev("wh-f14");
    let mut bits = s.signature(&b);
    bits[10] ^= 0x04;
    case(
        "one bit of the signature flipped",
        post(&[json_ct.clone(), sig_header(&B64.encode(bits))], &b),
        401,
        rejected,
    );

    let b = ev("wh-f15");
    case(
        "malleated signature (S + ℓ) of the genuine body",
        post(
            &[
                json_ct.clone(),
                sig_header(&B64.encode(malleate(s.signature(&b)))),
            ],
            &b,
        ),
        401,
        rejected,
    );

    let b = ev("wh-f16");
    case(
        "upper-case X-GHL-SIGNATURE carrying another key's signature",
        post(
            &[
                json_ct.clone(),
                ("X-GHL-SIGNATURE", format!(" {}", other.sign(&b))),
            ],
            &b,
        ),
        401,
        rejected,
    );

    let b = ev("wh-f17");
    case(
        "mixed-case X-Ghl-Signature carrying the signature of another body",
        post(
            &[
                json_ct.clone(),
                ("X-Ghl-Signature", format!(" {}", s.sign(&ev("wh-x")))),
            ],
            &b,
        ),
        401,
        rejected,
    );

    let b = ev("wh-f18");
    let sig = s.sign(&b);
    let spaced = format!("{} {}", &sig[..20], &sig[20..]);
    case(
        "whitespace inside the base64 signature",
        post(&[json_ct.clone(), sig_header(&spaced)], &b),
        401,
        rejected,
    );

    let b = ev("wh-f19");
    case(
        "two x-ghl-signature headers, a forged one first",
        post(
            &[
                json_ct.clone(),
                sig_header(&other.sign(&b)),
                sig_header(&s.sign(&b)),
            ],
            &b,
        ),
        401,
        rejected,
    );

    let b = ev("wh-f20");
    case(
        "two x-ghl-signature headers, the genuine one first (ambiguous: refused)",
        post(
            &[
                json_ct.clone(),
                sig_header(&s.sign(&b)),
                sig_header(&other.sign(&b)),
            ],
            &b,
        ),
        401,
        rejected,
    );

    let b = ev("wh-f21");
    case(
        "the same header twice in different case (X-GHL-Signature, x-ghl-signature)",
        post(
            &[
                json_ct.clone(),
                ("X-GHL-Signature", format!(" {}", s.sign(&b))),
                ("x-ghl-signature", format!(" {}", other.sign(&b))),
            ],
            &b,
        ),
        401,
        rejected,
    );

    let b = ev("wh-f22");
    case(
        "legacy x-wh-signature carrying a valid Ed25519 signature",
        post(
            &[
                json_ct.clone(),
                ("x-wh-signature", format!(" {}", s.sign(&b))),
            ],
            &b,
        ),
        401,
        rejected,
    );

    let b = ev("wh-f23");
    let rsa_sized: Vec<u8> = (0..512).map(|i| (i * 7 + 3) as u8).collect();
    case(
        "legacy x-wh-signature with 512 bytes that are no RSA signature",
        post(
            &[
                json_ct.clone(),
                ("x-wh-signature", format!(" {}", B64.encode(&rsa_sized))),
            ],
            &b,
        ),
        401,
        rejected,
    );

    let b = ev("wh-f24");
    case(
        "forged x-ghl-signature beside a legacy header (no fallback)",
        post(
            &[
                json_ct.clone(),
                sig_header(&other.sign(&b)),
                ("x-wh-signature", format!(" {}", B64.encode(&rsa_sized))),
            ],
            &b,
        ),
        401,
        rejected,
    );

    let big = event(
        "ContactUpdate",
        "wh-f25",
        now,
        LOC_A,
        json!({ "id": CONTACT_A, "padding": "x".repeat(300_000) }),
    );
    assert!(big.len() > door.app.config.http.max_body_bytes);
    case(
        "huge body over http.max_body_bytes, validly signed",
        signed(s, &big),
        413,
        None,
    );

    let big = event(
        "ContactUpdate",
        "wh-f26",
        now,
        LOC_A,
        json!({ "id": CONTACT_A, "padding": "y".repeat(300_000) }),
    );
    let sig = s.sign(&big);
    case(
        "huge body sent chunked, without Content-Length, validly signed",
        post_request(
            "/webhooks/ghl",
            &[JSON, ("x-ghl-signature", &sig)],
            &big,
            true,
        ),
        413,
        None,
    );

    let b = ev("wh-f27");
    case(
        "text/plain content type, validly signed",
        post(
            &[
                ("Content-Type", " text/plain".to_owned()),
                sig_header(&s.sign(&b)),
            ],
            &b,
        ),
        415,
        rejected,
    );

    let b = ev("wh-f28");
    case(
        "no content type, validly signed",
        post(&[sig_header(&s.sign(&b))], &b),
        415,
        rejected,
    );

    let b = ev("wh-f29");
    case(
        "application/jsonx (a prefix match would take it), validly signed",
        post(
            &[
                ("Content-Type", " application/jsonx".to_owned()),
                sig_header(&s.sign(&b)),
            ],
            &b,
        ),
        415,
        rejected,
    );

    case("empty body, validly signed", signed(s, b""), 400, rejected);
    case(
        "a body that is not JSON, validly signed",
        signed(s, b"type=ContactUpdate&webhookId=wh-f31"),
        400,
        rejected,
    );
    let arr = serde_json::to_vec(&json!([
        serde_json::from_slice::<Value>(&ev("wh-f32")).unwrap()
    ]))
    .unwrap();
    case(
        "a JSON array instead of an object, validly signed",
        signed(s, &arr),
        400,
        rejected,
    );
    let no_id = serde_json::to_vec(&json!({
        "type": "ContactUpdate", "locationId": LOC_A, "id": CONTACT_A,
        "timestamp": now.to_rfc3339(),
    }))
    .unwrap();
    case(
        "an event without webhookId, validly signed",
        signed(s, &no_id),
        400,
        rejected,
    );

    let b = event(
        "ContactUpdate",
        "wh-f34",
        now,
        "secLocationUnknown01",
        contact(CONTACT_A),
    );
    // Not ours: answered 200 so GHL does not retry for an hour (it retries only on 429,
    // API.md §9.5), and nothing is queued.
    case(
        "an event for a location with no tenant, validly signed",
        signed(s, &b),
        200,
        Some("ignored"),
    );

    let b = event("UNINSTALL", "wh-f35", now, LOC_A, json!({ "appId": "app" }));
    case(
        "UNINSTALL signed with another key",
        post(&[json_ct.clone(), sig_header(&other.sign(&b))], &b),
        401,
        rejected,
    );

    let b = event(
        "UNINSTALL",
        "wh-f36",
        now - chrono::Duration::hours(1),
        LOC_A,
        json!({ "appId": "app" }),
    );
    case(
        "a genuine UNINSTALL replayed an hour later",
        signed(s, &b),
        401,
        rejected,
    );

    let b = ev("wh-f37");
    case(
        "signature header with bytes that are not ASCII",
        post(
            &[json_ct.clone(), ("x-ghl-signature", " é€ñ".to_owned())],
            &b,
        ),
        401,
        rejected,
    );

    case(
        "an accepted delivery sent again (same bytes, same webhookId)",
        signed(s, replayed),
        200,
        Some("duplicate"),
    );

    let mut again: Value = serde_json::from_slice(replayed).unwrap();
    again["id"] = json!("secContactOther00001");
    let again = serde_json::to_vec(&again).unwrap();
    case(
        "a new body under an accepted webhookId, validly signed",
        signed(s, &again),
        200,
        Some("duplicate"),
    );
    cases
}

async fn forgery_is_refused(backend: TestBackend) {
    let door = Door::open(backend).await;
    let s = &door.signer;
    let now = Utc::now();
    let ev = |wh: &str| event("ContactUpdate", wh, now, LOC_A, json!({ "id": CONTACT_A }));

    // Genuine deliveries, in the forms HTTP allows: each is accepted and queued once.
    let mut accepted = BTreeSet::new();
    let first = ev("wh-ok-1");
    let genuine: Vec<(&str, Vec<u8>)> = vec![
        ("plain genuine delivery", signed(s, &first)),
        (
            "upper-case X-GHL-SIGNATURE (field names are case-insensitive, RFC 9110 §5.1)",
            {
                let b = ev("wh-ok-2");
                post(
                    &[
                        (JSON.0, JSON.1.to_owned()),
                        ("X-GHL-SIGNATURE", format!(" {}", s.sign(&b))),
                    ],
                    &b,
                )
            },
        ),
        (
            "spaces and a tab around the signature (not part of the value, RFC 9110 §5.5)",
            {
                let b = ev("wh-ok-3");
                post(
                    &[
                        (JSON.0, JSON.1.to_owned()),
                        ("x-ghl-signature", format!(" \t {} \t ", s.sign(&b))),
                    ],
                    &b,
                )
            },
        ),
        (
            "Application/JSON; charset=utf-8 (media types are case-insensitive)",
            {
                let b = ev("wh-ok-4");
                post(
                    &[
                        (
                            "content-type",
                            " Application/JSON; charset=utf-8".to_owned(),
                        ),
                        sig_header(&s.sign(&b)),
                    ],
                    &b,
                )
            },
        ),
        (
            "genuine x-ghl-signature beside a garbage legacy header (Ed25519 decides)",
            {
                let b = ev("wh-ok-5");
                post(
                    &[
                        (JSON.0, JSON.1.to_owned()),
                        sig_header(&s.sign(&b)),
                        ("x-wh-signature", " garbage".to_owned()),
                    ],
                    &b,
                )
            },
        ),
    ];
    for (i, (name, request)) in genuine.into_iter().enumerate() {
        let before = door.queued().await;
        let a = door.send(request).await;
        assert_eq!(a.status, 200, "{name}: {} {}", a.head, a.body);
        assert_eq!(door.queued().await, before + 1, "{name}: queued once");
        accepted.insert(format!("wh-ok-{}", i + 1));
    }

    let cases = forged_cases(&door, &first);
    assert!(cases.len() >= 20, "only {} variants", cases.len());
    let mut failures = Vec::new();
    for c in cases {
        let queued = door.queued().await;
        let inbox = door.inbox().await;
        let a = door.send(c.request).await;
        let outcome = serde_json::from_str::<Value>(&a.body)
            .ok()
            .and_then(|v| v["status"].as_str().map(str::to_owned));
        if a.status != c.status {
            failures.push(format!(
                "{}: answered {} (want {}): {}",
                c.name, a.status, c.status, a.body
            ));
        }
        if let Some(want) = c.outcome
            && outcome.as_deref() != Some(want)
        {
            failures.push(format!("{}: outcome {outcome:?}, want {want}", c.name));
        }
        if door.queued().await != queued {
            failures.push(format!("{}: something reached the queue", c.name));
        }
        if door.inbox().await != inbox {
            failures.push(format!("{}: the inbox changed", c.name));
        }
        if !door.tenant_intact().await {
            failures.push(format!(
                "{}: the tenant was deactivated or lost its token",
                c.name
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "forged deliveries not refused as they must be:\n  {}",
        failures.join("\n  ")
    );

    // What reached the queue is exactly the genuine deliveries, once each.
    let mut consumers = door.broker.consume("security-check", 64).await.unwrap();
    let mut got = BTreeSet::new();
    for _ in 0..accepted.len() {
        let d = tokio::time::timeout(Duration::from_secs(10), consumers.realtime.recv())
            .await
            .expect("a queued delivery")
            .expect("the lane is open");
        let env = d.envelope.expect("an envelope");
        assert_eq!(env.tenant, door.tenant.id);
        assert!(got.insert(env.id), "delivered twice");
    }
    assert!(consumers.realtime.try_recv().is_err(), "more was queued");
    assert!(consumers.bulk.try_recv().is_err(), "more was queued");
    assert_eq!(got, accepted);
    let inbox = door.inbox().await;
    let want: Vec<String> = accepted
        .iter()
        .map(|id| format!("{}|webhook|{id}", door.tenant.id))
        .collect();
    assert_eq!(inbox, want, "the inbox holds the genuine deliveries only");
    door.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_webhooks_are_refused_and_never_queued_sqlite() {
    forgery_is_refused(TestBackend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_webhooks_are_refused_and_never_queued_postgres() {
    forgery_is_refused(TestBackend::Postgres).await;
}

// ------------------------------------------------------------------------------- isolation

/// Long enough for any wait on this machine; short enough that a hang fails in test time.
const SETTLE: Duration = Duration::from_secs(90);

/// The second tenant's GHL location (the first is the simulated world's).
const LOC_B: &str = "secLocationB00000001";

/// Tenant B beside the world's tenant A, in the same store and the same simulators: its own
/// GHL location (own token) with contacts, tasks, notes and appointments, and its own eKyte
/// company (own API key and MCP token).
struct OtherTenant {
    tenant: Tenant,
    company: i64,
    contacts: Vec<String>,
    tasks: Vec<String>,
    notes: Vec<String>,
    appointments: Vec<String>,
}

impl OtherTenant {
    async fn add(t: &TestApp) -> Self {
        let ghl = &t.world.ghl;
        let location = ghl
            .create_location(LocationSpec {
                id: LOC_B.to_owned(),
                name: "Another agency's client".to_owned(),
                ..LocationSpec::default()
            })
            .unwrap();
        let pit = ghl
            .register_pit(PitSpec {
                location_id: Some(location.clone()),
                scopes: ghl::default_scopes(),
                ..PitSpec::default()
            })
            .unwrap();
        let people: Vec<Value> = (0..2)
            .map(|i| {
                json!({
                    "firstName": "Beatriz",
                    "lastName": format!("Outra {i}"),
                    "email": format!("beatriz{i}@other-agency.test"),
                    "phone": format!("+5521999{:06}", 100_000 + i),
                    "companyName": format!("Outra Empresa {i}"),
                    "tags": [SYNC_TAG],
                })
            })
            .collect();
        let contacts = ghl.seed_contacts(&location, &people).unwrap();
        let (mut tasks, mut notes, mut appointments) = (Vec::new(), Vec::new(), Vec::new());
        for (i, c) in contacts.iter().enumerate() {
            let due = |k: i64| (Utc::now() + chrono::Duration::days(3 + k)).to_rfc3339();
            tasks.extend(
                ghl.seed_tasks(
                    c,
                    &[
                        json!({ "title": format!("B task {i}.0"), "body": "theirs", "dueDate": due(0), "completed": false }),
                        json!({ "title": format!("B task {i}.1"), "body": "theirs", "dueDate": due(1), "completed": false }),
                    ],
                )
                .unwrap(),
            );
            notes.extend(
                ghl.seed_notes(
                    c,
                    &[json!({ "body": format!("B note {i}: confidential, about their client") })],
                )
                .unwrap(),
            );
            let start = Utc::now() + chrono::Duration::days(5 + i as i64);
            appointments.extend(
                ghl.seed_appointments(&[json!({
                    "contactId": c,
                    "title": format!("B meeting {i}"),
                    "startTime": start.to_rfc3339(),
                    "endTime": (start + chrono::Duration::hours(1)).to_rfc3339(),
                    "appointmentStatus": "confirmed",
                    "calendarId": "simCalendar00000001",
                    "address": "Zoom",
                })])
                .unwrap(),
            );
        }
        let company = t.world.ekyte.seed_default_company().unwrap();
        let mut settings = t.tenant.settings.clone();
        settings.ekyte.task_type_id =
            Some(EkyteTaskTypeId::new(company.task_type_id as u64).unwrap());
        settings.ekyte.user_email = Some(company.admin.email.clone());
        let tenant = Tenant {
            id: TenantId::parse("sec-b").unwrap(),
            name: "Another agency".into(),
            location_id: LocationId::parse(&location).unwrap(),
            ekyte_company_id: EkyteCompanyId::new(company.company_id as u64).unwrap(),
            active: true,
            settings,
            install: Default::default(),
        };
        app::admin::add_tenant(
            t.app.store.as_ref(),
            t.app.store.as_ref(),
            &tenant,
            Some(SecretString::from(company.api_key.clone())),
            company.admin.mcp_token.clone().map(SecretString::from),
            Some(SecretString::from(pit)),
        )
        .await
        .unwrap();
        Self {
            tenant,
            company: company.company_id,
            contacts,
            tasks,
            notes,
            appointments,
        }
    }

    fn ids(&self) -> Vec<&str> {
        self.contacts
            .iter()
            .chain(&self.tasks)
            .chain(&self.notes)
            .chain(&self.appointments)
            .map(String::as_str)
            .collect()
    }

    fn workspaces_of(&self, t: &TestApp, contact: &str) -> Vec<sandbox::ekyte::Workspace> {
        t.world.ekyte.workspaces_by_external_id(
            self.company,
            &format!("ghl:{}:{contact}", self.tenant.location_id),
        )
    }
}

/// Rows of one tenant in a table, each as the JSON PostgreSQL makes of it.
async fn rows_of(
    raw: &DatabaseConnection,
    table: &str,
    column: &str,
    tenant: &TenantId,
) -> Vec<String> {
    let sql = format!(
        "SELECT row_to_json(r)::text AS j FROM {table} r WHERE {column} = $1 ORDER BY row_to_json(r)::text"
    );
    raw.query_all_raw(Statement::from_sql_and_values(
        raw.get_database_backend(),
        sql,
        [tenant.to_string().into()],
    ))
    .await
    .unwrap()
    .iter()
    .map(|r| r.try_get::<String>("", "j").unwrap())
    .collect()
}

/// Everything of tenant B an attacker on tenant A would want to change: its GHL location
/// (contacts, tasks, notes, appointments, tags), its eKyte company (workspaces, tasks, notes),
/// and its rows in the store (the tenant, its credentials, its links).
async fn snapshot_of(
    t: &TestApp,
    raw: &DatabaseConnection,
    b: &OtherTenant,
) -> Vec<(String, String)> {
    let ghl = t.world.ghl.dump_location(LOC_B).unwrap();
    let ekyte = t.world.ekyte.dump(b.company).unwrap();
    vec![
        (
            "GHL location B".into(),
            serde_json::to_string_pretty(&ghl).unwrap(),
        ),
        (
            "eKyte company B".into(),
            serde_json::to_string_pretty(&ekyte).unwrap(),
        ),
        (
            "store: tenant B".into(),
            rows_of(raw, "tenants", "id", &b.tenant.id).await.join("\n"),
        ),
        (
            "store: credentials of B".into(),
            rows_of(raw, "credentials", "tenant_id", &b.tenant.id)
                .await
                .join("\n"),
        ),
        (
            "store: links of B".into(),
            rows_of(raw, "links", "tenant_id", &b.tenant.id)
                .await
                .join("\n"),
        ),
    ]
}

/// The first line where two texts differ, for a readable failure.
fn first_difference(before: &str, after: &str) -> String {
    for (i, (x, y)) in before.lines().zip(after.lines()).enumerate() {
        if x != y {
            return format!("line {}: before {x:?}\n               after  {y:?}", i + 1);
        }
    }
    format!(
        "{} lines before, {} after",
        before.lines().count(),
        after.lines().count()
    )
}

/// Two tenants in one store, one worker, one ingress. Webhooks validly signed for A's location
/// but naming B's contacts, tasks, notes and appointments are accepted by the ingress and
/// handled by the worker (A's token cannot read B's records; the engine must not reach them
/// any other way); messages for tenant A carrying events of B's location are skipped by the
/// engine; a `sync.contact` for tenant A naming B's contact is refused. B's GHL records, B's
/// eKyte company and B's rows in the store stay byte-identical, nothing of B appears on A's
/// side, and a control event for A's own new contact is handled while all this goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_signed_for_one_location_never_touch_another_tenant() {
    let signer = WebhookSigner::generate();
    let mut spec = AppSpec::new("isolation");
    spec.world.contacts = 2;
    spec.world.businesses = 1;
    spec.webhook_key_pem = Some(signer.public_pem());
    let t = TestApp::start(spec).await;
    let b = OtherTenant::add(&t).await;
    let a = t.tenant.clone();
    let raw = t.db.raw().await.unwrap();
    let worker = t.spawn_worker();
    let stop = CancellationToken::new();
    let ingress = t.serve_ingress(stop.clone()).await;

    // Both tenants fully synced: B's contacts have their workspaces in B's company and their
    // links in the store, so there is something of B's to protect.
    app::scheduler::enqueue(
        app::scheduler::Job::Full,
        None,
        t.app.store.as_ref(),
        t.amqp.as_ref(),
        Utc::now(),
        false,
    )
    .await
    .unwrap();
    eventually(
        "both tenants' contacts in their eKyte companies",
        SETTLE,
        || async {
            let a_done = t
                .world
                .contacts
                .iter()
                .all(|c| t.workspaces_of(c).len() == 1);
            let b_done = b.contacts.iter().all(|c| b.workspaces_of(&t, c).len() == 1);
            (a_done && b_done).then_some(())
        },
    )
    .await;
    wait_quiet(t.app.broker.as_ref(), &t.world, &worker.stats, SETTLE, None)
        .await
        .unwrap();
    let b_links = rows_of(&raw, "links", "tenant_id", &b.tenant.id).await;
    assert!(
        b_links.len() >= b.contacts.len() + b.tasks.len(),
        "tenant B is not linked: {} link(s)",
        b_links.len()
    );
    let before = snapshot_of(&t, &raw, &b).await;
    let settled_before = worker.stats.settled();

    // Through the ingress: validly signed, for A's location, naming B's records.
    let (bc, bt, bn, ba) = (&b.contacts, &b.tasks, &b.notes, &b.appointments);
    let a_contact = &t.world.contacts[0];
    let forged: Vec<(&str, Value)> = vec![
        ("ContactUpdate", json!({ "id": bc[0] })),
        (
            "ContactCreate",
            json!({ "id": bc[1], "firstName": "Hijacked", "tags": [SYNC_TAG] }),
        ),
        (
            "ContactTagUpdate",
            json!({ "id": bc[0], "tags": ["ekyte-archived"] }),
        ),
        ("ContactDndUpdate", json!({ "id": bc[0], "dnd": true })),
        ("ContactDelete", json!({ "id": bc[1] })),
        (
            "TaskCreate",
            json!({ "id": bt[0], "contactId": bc[0], "title": "Hijacked" }),
        ),
        ("TaskComplete", json!({ "id": bt[1], "contactId": bc[0] })),
        ("TaskDelete", json!({ "id": bt[2], "contactId": bc[1] })),
        // Without the contact: the engine searches the tasks of A's location only.
        ("TaskCreate", json!({ "id": bt[3] })),
        // B's task and note under A's own contact.
        (
            "TaskComplete",
            json!({ "id": bt[0], "contactId": a_contact }),
        ),
        (
            "NoteCreate",
            json!({ "id": bn[0], "contactId": a_contact, "body": "Hijacked" }),
        ),
        (
            "NoteCreate",
            json!({ "id": bn[0], "contactId": bc[0], "body": "Hijacked" }),
        ),
        (
            "NoteUpdate",
            json!({ "id": bn[0], "contactId": bc[0], "body": "Hijacked" }),
        ),
        ("NoteDelete", json!({ "id": bn[1], "contactId": bc[1] })),
        (
            "AppointmentCreate",
            json!({ "appointment": { "id": ba[0], "contactId": bc[0] } }),
        ),
        (
            "AppointmentUpdate",
            json!({ "appointment": { "id": ba[0], "contactId": bc[0], "title": "Hijacked" } }),
        ),
        (
            "AppointmentDelete",
            json!({ "appointment": { "id": ba[1], "contactId": bc[1] } }),
        ),
    ];
    let now = Utc::now();
    let mut sent = Vec::new();
    for (i, (kind, extra)) in forged.iter().enumerate() {
        let id = format!("iso-wh-{i:02}-{kind}");
        let body = event(kind, &id, now, a.location_id.as_str(), extra.clone());
        let answer = raw_http(ingress, signed(&signer, &body)).await.unwrap();
        assert_eq!(
            answer.status, 200,
            "{kind} naming B's records must be accepted (the test needs it to reach the worker): {}",
            answer.body
        );
        sent.push(id);
    }

    // Straight to the worker: messages of tenant A carrying events of B's location (the
    // engine's own guard), and a `sync.contact` of tenant A naming B's contact.
    for (i, (kind, extra)) in forged.iter().enumerate().take(8) {
        let id = format!("iso-env-{i:02}-{kind}");
        let body = event(kind, &id, now, LOC_B, extra.clone());
        let ev = ghl::webhook::parse_event(&body)
            .unwrap()
            .into_location()
            .expect("a location event");
        let env = Envelope::new(id.clone(), a.id.clone(), Payload::GhlEvent(ev), now);
        t.amqp.publish(&env).await.unwrap();
        sent.push(id);
    }
    for (i, c) in bc.iter().enumerate() {
        let id = format!("iso-sync-{i}");
        let env = Envelope::new(
            id.clone(),
            a.id.clone(),
            Payload::SyncContact {
                contact: GhlContactId::parse(c).unwrap(),
                dry_run: false,
                prefetched: None,
            },
            now,
        );
        t.amqp.publish(&env).await.unwrap();
        sent.push(id);
    }

    // The control: A's own new contact, announced the same way, reaches A's eKyte company.
    let created = t
        .world
        .ghl
        .act_create_contact(
            &t.world.location,
            json!({ "firstName": "Controle", "lastName": "Da Silva", "email": "controle@a.test", "tags": [SYNC_TAG] }),
        )
        .unwrap();
    let control = created["id"].as_str().unwrap().to_owned();
    let body = event(
        "ContactCreate",
        "iso-control",
        Utc::now(),
        a.location_id.as_str(),
        json!({ "id": control, "tags": [SYNC_TAG] }),
    );
    let answer = raw_http(ingress, signed(&signer, &body)).await.unwrap();
    assert_eq!(answer.status, 200, "control event: {}", answer.body);
    eventually(
        "A's control contact in A's eKyte company",
        SETTLE,
        || async { (t.workspaces_of(&control).len() == 1).then_some(()) },
    )
    .await;
    wait_quiet(t.app.broker.as_ref(), &t.world, &worker.stats, SETTLE, None)
        .await
        .unwrap();
    // Every message sent, and the control.
    let expected = sent.len() as u64 + 1;
    assert!(
        worker.stats.settled() >= settled_before + expected,
        "the worker settled {} message(s) after the snapshot; {} were sent",
        worker.stats.settled() - settled_before,
        expected
    );

    // How each one ended, for the record (B unchanged is the assertion, not the outcome).
    let dead: std::collections::BTreeMap<String, String> =
        DeadLetterStore::list(t.app.store.as_ref(), Some(a.id.clone()), true, None, 1000)
            .await
            .unwrap()
            .into_iter()
            .map(|d| (d.letter.message_id, d.letter.error_chain.join(": ")))
            .collect();
    for id in &sent {
        let handled = Inbox::seen(t.app.store.as_ref(), &a.id, engine::INBOX_MESSAGES, id)
            .await
            .unwrap();
        let how = match dead.get(id) {
            _ if handled => "handled".to_owned(),
            Some(error) => format!("dead-lettered ({error})"),
            None => "skipped".to_owned(),
        };
        eprintln!("{id}: {how}");
    }

    // Nothing of B's moved.
    let after = snapshot_of(&t, &raw, &b).await;
    let changed: Vec<String> = before
        .iter()
        .zip(&after)
        .filter(|((_, x), (_, y))| x != y)
        .map(|((what, x), (_, y))| format!("{what} changed: {}", first_difference(x, y)))
        .collect();
    assert!(
        changed.is_empty(),
        "events of tenant A changed tenant B's data:\n  {}",
        changed.join("\n  ")
    );
    // And nothing of B's was copied to A's side.
    let a_side = [
        (
            "GHL location A",
            serde_json::to_string(&t.world.ghl.dump_location(&t.world.location).unwrap()).unwrap(),
        ),
        (
            "eKyte company A",
            serde_json::to_string(&t.world.ekyte.dump(t.world.company.company_id).unwrap())
                .unwrap(),
        ),
        (
            "store: links of A",
            rows_of(&raw, "links", "tenant_id", &a.id).await.join("\n"),
        ),
    ];
    for (what, text) in &a_side {
        for id in b.ids() {
            assert!(!text.contains(id), "{what} holds B's record {id}");
        }
        assert!(
            !text.contains("Hijacked"),
            "{what} holds text of a forged event"
        );
    }
    stop.cancel();
    worker.stop().await;
}

// ------------------------------------------------------------------------------- secrets

/// An eKyte company whose API key and owner's MCP token are the planted values (what
/// `seed_default_company` makes, with our secrets): returns the company id, the task type
/// and the owner's e-mail.
fn company_with_planted_keys(world: &World, api_key: &str, mcp_token: &str) -> (i64, i64, String) {
    use sandbox::ekyte::{NewCompany, NewPhase, NewTaskType, NewUser, NewWorkflow, Profile};
    let ekyte = &world.ekyte;
    let company = ekyte
        .create_company(NewCompany {
            name: "Agência Secreta".into(),
            api_key: Some(api_key.to_owned()),
            ..NewCompany::default()
        })
        .unwrap()
        .id;
    let email = format!("owner+{company}@secreta.example");
    ekyte
        .create_user(
            company,
            NewUser {
                user_name: "Olga Owner".into(),
                email: email.clone(),
                profile: Profile::Owner,
                mcp_token: Some(mcp_token.to_owned()),
                ..NewUser::default()
            },
        )
        .unwrap();
    let editor = ekyte
        .create_user(
            company,
            NewUser {
                user_name: "Edu Editor".into(),
                email: format!("editor+{company}@secreta.example"),
                profile: Profile::Editor,
                ..NewUser::default()
            },
        )
        .unwrap();
    let workflow = ekyte
        .create_workflow(
            company,
            NewWorkflow {
                name: "Fluxo".into(),
                active: true,
                phases: ["Briefing", "Produção"]
                    .into_iter()
                    .map(NewPhase::named)
                    .collect(),
            },
        )
        .unwrap();
    let task_type = ekyte
        .create_task_type(
            company,
            NewTaskType {
                name: "Tarefa".into(),
                workflow_id: workflow.id,
                active: true,
                group: None,
                default_executors: [(workflow.phases[0].id, editor)].into(),
            },
        )
        .unwrap();
    (company, task_type, email)
}

/// What one run of the binary printed.
struct Run {
    what: String,
    status: std::process::ExitStatus,
    output: Vec<u8>,
}

impl Run {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.output).into_owned()
    }

    fn assert_ok(&self) {
        assert!(
            self.status.success(),
            "{} failed ({}):\n{}",
            self.what,
            self.status,
            self.text()
        );
    }
}

async fn run_binary(env: &[(&str, String)], args: &[&str]) -> Run {
    let mut cmd = binary_command().await;
    cmd.args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(std::process::Stdio::null());
    let out = tokio::time::timeout(SETTLE, cmd.output())
        .await
        .unwrap_or_else(|_| panic!("ghl-ekyte-sync {} did not finish", args.join(" ")))
        .unwrap();
    let mut output = out.stdout;
    output.extend_from_slice(&out.stderr);
    Run {
        what: format!("ghl-ekyte-sync {}", args.join(" ")),
        status: out.status,
        output,
    }
}

/// Credentials planted with random values go in through the real binary's `tenants add`, are
/// used by a real sync (the binary's worker on RabbitMQ, against the simulators; the GHL
/// token for every read, the eKyte API key and MCP token for every write, a `sync contact`
/// while eKyte fails every request, `status`), all with `RUST_LOG=debug` and JSON logs, and
/// `config check` with the encryption key in the environment. No planted value — the GHL
/// token, the eKyte API key, the MCP token, the encryption key as configured or as its raw
/// bytes — appears in any output of the binary, or in the database as an attacker with the
/// files would read it (`pg_dump`, or the SQLite file with its WAL).
async fn secrets_stay_out_of_logs_and_database(backend: TestBackend) {
    let queues = TestQueues::new("secrets");
    let db = TestDb::fresh(backend)
        .await
        .unwrap_or_else(|e| panic!("a fresh {backend} database: {e}"));
    let spec = WorldSpec {
        contacts: 3,
        tasks_per_contact: 1,
        notes_per_contact: 1,
        appointments_per_contact: 1,
        businesses: 1,
        ghl_rate_max: 1000,
        ghl_rate_interval_ms: 1000,
        ..WorldSpec::default()
    };
    let world = World::start(&spec).await.unwrap();

    let ghl_token = random_secret("pit-", 40);
    let api_key = random_secret("ekyte-key-", 48);
    let mcp_token = random_secret("mcp-", 48);
    let crypto_key = random_key_base64();
    let mut planted = Planted::new();
    planted
        .add("GHL private integration token", &ghl_token)
        .add("eKyte API key", &api_key)
        .add("eKyte MCP token", &mcp_token)
        .add("crypto.key (as configured)", &crypto_key)
        .add("crypto.key (raw bytes)", B64.decode(&crypto_key).unwrap());

    world
        .ghl
        .register_pit(PitSpec {
            token: ghl_token.clone(),
            location_id: Some(world.location.clone()),
            scopes: ghl::default_scopes(),
            ..PitSpec::default()
        })
        .unwrap();
    let (company, task_type, owner) = company_with_planted_keys(&world, &api_key, &mcp_token);
    let mut settings = world.tenant(&spec).unwrap().settings;
    settings.ekyte.task_type_id = Some(EkyteTaskTypeId::new(task_type as u64).unwrap());
    settings.ekyte.user_email = Some(owner);
    let dir = tempfile::tempdir().unwrap();
    let settings_file = dir.path().join("tenant.json");
    std::fs::write(&settings_file, serde_json::to_vec(&settings).unwrap()).unwrap();

    let env: Vec<(&str, String)> = vec![
        ("GES_DATABASE__URL", db.url().to_owned()),
        ("GES_CRYPTO__KEY", crypto_key.clone()),
        ("GES_QUEUE__BACKEND", "amqp".into()),
        ("GES_QUEUE__URL", amqp_url()),
        ("GES_QUEUE__PREFIX", queues.prefix.clone()),
        ("GES_QUEUE__RETRY_DELAYS", queues.retry_delays_env()),
        ("GES_GHL__API_BASE", world.ghl.base_url()),
        (
            "GES_GHL__WEBHOOK_ED25519_KEY",
            world.ghl.webhook_public_key_pem(),
        ),
        ("GES_GHL__RATE_MAX", "1000".into()),
        ("GES_GHL__RATE_INTERVAL", "1000ms".into()),
        ("GES_EKYTE__API_BASE", world.ekyte.base_url()),
        ("GES_SCHEDULER__ENABLED", "false".into()),
        ("GES_HTTP__BIND", "127.0.0.1:0".into()),
        ("GES_WORKER__DRAIN_TIMEOUT", "20s".into()),
        ("GES_TELEMETRY__FORMAT", "json".into()),
        ("GES_TELEMETRY__LEVEL", "debug".into()),
        ("RUST_LOG", "debug".into()),
    ];
    let tenant = "sec-tenant";
    let mut runs = Vec::new();

    let check = run_binary(&env, &["config", "check", "--json"]).await;
    check.assert_ok();
    runs.push(check);

    let mut add_env = env.clone();
    add_env.extend([
        ("GES_TENANT_EKYTE_API_KEY", api_key.clone()),
        ("GES_TENANT_EKYTE_MCP_TOKEN", mcp_token.clone()),
        ("GES_TENANT_GHL_TOKEN", ghl_token.clone()),
    ]);
    let company_arg = company.to_string();
    let settings_arg = settings_file.display().to_string();
    let add = run_binary(
        &add_env,
        &[
            "tenants",
            "add",
            "--id",
            tenant,
            "--location",
            &world.location,
            "--ekyte-company",
            &company_arg,
            "--settings",
            &settings_arg,
        ],
    )
    .await;
    add.assert_ok();
    runs.push(add);

    // The worker, logging to a file, until SIGTERM.
    let log = dir.path().join("worker.log");
    let log_file = std::fs::File::create(&log).unwrap();
    let mut worker = binary_command()
        .await
        .args(["worker", "--consumer-tag", "sec"])
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(std::process::Stdio::null())
        .stdout(log_file.try_clone().unwrap())
        .stderr(log_file)
        .spawn()
        .unwrap();
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
    eventually("the worker consuming", SETTLE, || async {
        log_text().contains("worker consuming").then_some(())
    })
    .await;

    let full = run_binary(&env, &["sync", "full", "--tenant", tenant]).await;
    full.assert_ok();
    runs.push(full);
    let external = |c: &str| format!("ghl:{}:{c}", world.location);
    eventually("every contact in the planted company", SETTLE, || async {
        world
            .contacts
            .iter()
            .all(|c| {
                world
                    .ekyte
                    .workspaces_by_external_id(company, &external(c))
                    .len()
                    == 1
            })
            .then_some(())
    })
    .await;

    // An update (needs the MCP token) through a one-contact sync, then the same while eKyte
    // answers every request with a server error (errors are where URLs with keys leak).
    let contact = world.contacts[0].clone();
    world
        .ghl
        .act_update_contact(&contact, json!({ "lastName": "Renomeada Segredo" }))
        .unwrap();
    let one = run_binary(
        &env,
        &["sync", "contact", &contact, "--tenant", tenant, "--json"],
    )
    .await;
    one.assert_ok();
    runs.push(one);
    world
        .ghl
        .act_update_contact(&contact, json!({ "lastName": "Renomeada Falha" }))
        .unwrap();
    world.ekyte.faults().set(FaultConfig {
        error_rate: 1.0,
        ..FaultConfig::default()
    });
    let failing = run_binary(&env, &["sync", "contact", &contact, "--tenant", tenant]).await;
    world.ekyte.faults().set(FaultConfig::default());
    assert!(
        !failing.status.success(),
        "a sync against an eKyte that fails every request must fail:\n{}",
        failing.text()
    );
    runs.push(failing);
    let status = run_binary(&env, &["status", "--json"]).await;
    status.assert_ok();
    runs.push(status);

    let pid = worker.id().unwrap();
    let signalled = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(signalled.success());
    let exit = tokio::time::timeout(SETTLE, worker.wait())
        .await
        .unwrap_or_else(|_| panic!("the worker did not stop:\n{}", log_text()))
        .unwrap();
    assert!(exit.success(), "the worker exited {exit}:\n{}", log_text());

    // A key rotation finished with `credentials reseal`: the new key as current, the old one
    // as an old key; afterwards the new key alone reads every credential.
    let new_key = random_key_base64();
    planted
        .add("new crypto.key (as configured)", &new_key)
        .add("new crypto.key (raw bytes)", B64.decode(&new_key).unwrap());
    let with_keys = |keys: &[(&'static str, String)]| {
        let mut e: Vec<(&str, String)> = env
            .iter()
            .filter(|(k, _)| *k != "GES_CRYPTO__KEY")
            .cloned()
            .collect();
        e.extend(keys.iter().cloned());
        e
    };
    let rotating = with_keys(&[
        ("GES_CRYPTO__KEY", new_key.clone()),
        ("GES_CRYPTO__KEY_ID", "k2".into()),
        ("GES_CRYPTO__OLD_KEYS__K1", crypto_key.clone()),
    ]);
    let reseal = run_binary(&rotating, &["credentials", "reseal"]).await;
    reseal.assert_ok();
    assert!(
        reseal
            .text()
            .contains("2 credential(s) re-sealed under k2, 0 already under it"),
        "{}",
        reseal.text()
    );
    runs.push(reseal);
    let rotated = with_keys(&[
        ("GES_CRYPTO__KEY", new_key.clone()),
        ("GES_CRYPTO__KEY_ID", "k2".into()),
    ]);
    let again = run_binary(&rotated, &["credentials", "reseal", "--json"]).await;
    again.assert_ok();
    assert!(
        again.text().contains("\"already_current\": 2"),
        "{}",
        again.text()
    );
    runs.push(again);
    let one = run_binary(&rotated, &["sync", "contact", &contact, "--tenant", tenant]).await;
    one.assert_ok();
    runs.push(one);
    // The old key alone no longer opens them.
    let stale = run_binary(&env, &["sync", "contact", &contact, "--tenant", tenant]).await;
    assert!(
        !stale.status.success() && stale.text().contains("k2"),
        "the old key alone still read the re-sealed credentials:\n{}",
        stale.text()
    );
    runs.push(stale);

    // The credentials were really used: GHL answered the planted token, eKyte's automation
    // API the planted key, and its MCP endpoint the planted token.
    let ekyte_calls = world.ekyte.counters().snapshot();
    assert!(
        ekyte_calls.route_total("POST", "/mcp") > 0,
        "the MCP token was never used: {:?}",
        ekyte_calls.routes.keys().collect::<Vec<_>>()
    );
    // The logs are the debug logs of real work, so finding nothing in them means something.
    let worker_log = std::fs::read(&log).unwrap();
    let worker_text = String::from_utf8_lossy(&worker_log);
    assert!(
        worker_text.contains("\"level\":\"DEBUG\"") && worker_text.contains(tenant),
        "the worker's log holds no debug line about the tenant:\n{worker_text}"
    );

    let mut leaks = planted.scan(&worker_log, "worker log");
    for r in &runs {
        leaks.extend(planted.scan(&r.output, &r.what));
    }
    assert_no_leaks(&leaks, "the binary's output (RUST_LOG=debug)");

    let (dump, source) = match backend {
        TestBackend::Postgres => (pg_dump(db.url()).unwrap(), "pg_dump"),
        TestBackend::Sqlite => {
            let path = db.url().trim_start_matches("sqlite://").to_owned();
            (
                sqlite_bytes(std::path::Path::new(&path)).unwrap(),
                "the SQLite file",
            )
        }
    };
    let text = String::from_utf8_lossy(&dump);
    assert!(
        text.contains(tenant) && text.contains("credentials"),
        "{source} does not hold the tenant and its credentials: not the right database"
    );
    let raw = db.raw().await.unwrap();
    let stored = rows_count(&raw, tenant).await;
    assert_eq!(stored, 2, "the GHL and eKyte credentials are stored");
    assert_no_leaks(&planted.scan(&dump, source), source);
}

/// Credential rows of a tenant.
async fn rows_count(raw: &DatabaseConnection, tenant: &str) -> i64 {
    let backend = raw.get_database_backend();
    let sql = match backend {
        sea_orm::DbBackend::Postgres => {
            "SELECT COUNT(*) AS n FROM credentials WHERE tenant_id = $1"
        }
        _ => "SELECT COUNT(*) AS n FROM credentials WHERE tenant_id = ?",
    };
    raw.query_one_raw(Statement::from_sql_and_values(
        backend,
        sql,
        [tenant.into()],
    ))
    .await
    .unwrap()
    .unwrap()
    .try_get::<i64>("", "n")
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planted_credentials_never_appear_in_debug_logs_or_the_database_postgres() {
    secrets_stay_out_of_logs_and_database(TestBackend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planted_credentials_never_appear_in_debug_logs_or_the_database_sqlite() {
    secrets_stay_out_of_logs_and_database(TestBackend::Sqlite).await;
}
