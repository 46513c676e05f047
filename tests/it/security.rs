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
use app::queue::Broker as _;
use app::queue::memory::MemoryBroker;
use app::wiring::App;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use chrono::{DateTime, Utc};
use domain::{EkyteCompanyId, LocationId, Tenant, TenantId, TenantSettings};
use e2e::security::{RawAnswer, WebhookSigner, post_request, raw_http};
use ports::store::{CredentialStore, Provider, TenantStore};
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
            settings: TenantSettings::default(),
        };
        app::cli::add_tenant(
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
