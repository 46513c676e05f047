//! Webhook emission (API.md §9): envelope, signatures, delivery, retries and faults.
//!
//! Guarantees:
//! - every payload is signed over its **exact body bytes**: Ed25519 in `x-ghl-signature`
//!   (base64), and, when enabled, RSA-SHA256 PKCS#1 v1.5 in `x-wh-signature` (API.md §9.3);
//!   the public keys are served as SPKI PEM;
//! - events are delivered one at a time in emission order, unless a reorder fault holds one
//!   back; a retry after a 429 is scheduled apart, so it does not block later events (GHL
//!   retries ~10 minutes later, API.md §9.5);
//! - only HTTP 429 is retried, at most `max_retries` times; any other status, a timeout or a
//!   connection error is final;
//! - `in_flight` counts deliveries not yet finished (retries included), so a test can wait for
//!   the queue to drain instead of sleeping.
//!
//! Named events: `webhooks_emitted` (events created), `webhooks_sent` (deliveries answered
//! 2xx, duplicates included), `webhooks_dropped`, `webhooks_duplicated`, `webhooks_reordered`,
//! `webhooks_retried` (retry attempts), `webhooks_failed` (deliveries that ended without a
//! 2xx), `webhooks_unrouted` (events emitted while no target URL was set).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::pkcs8::EncodePublicKey;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Map, Value, json};
use tokio::sync::{mpsc, watch};

use super::config::{WebhookConfig, WebhookFaults};
use super::store::Event;
use super::util::{iso, now_ms};
use crate::common::Counters;

/// How long a reordered event waits for a later one before it is sent anyway.
const REORDER_HOLD: Duration = Duration::from_millis(200);

/// The simulator's signing keys, generated at start.
pub struct WebhookKeys {
    ed25519: ed25519_dalek::SigningKey,
    ed25519_pem: String,
    rsa: Option<rsa::pkcs1v15::SigningKey<sha2::Sha256>>,
    rsa_pem: Option<String>,
}

impl std::fmt::Debug for WebhookKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookKeys")
            .field("ed25519_pem", &self.ed25519_pem)
            .field("rsa_pem", &self.rsa_pem)
            .finish_non_exhaustive()
    }
}

impl WebhookKeys {
    /// A fresh Ed25519 key, and a 2048-bit RSA key when `with_rsa` (slow in debug builds).
    pub fn generate(with_rsa: bool) -> anyhow::Result<Self> {
        let mut rng = rand::rngs::OsRng;
        let ed25519 = ed25519_dalek::SigningKey::generate(&mut rng);
        let ed25519_pem = ed25519
            .verifying_key()
            .to_public_key_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
            .map_err(|e| anyhow::anyhow!("encoding the Ed25519 public key: {e}"))?;
        let (rsa, rsa_pem) = if with_rsa {
            use rsa::pkcs8::EncodePublicKey as _;
            let private = rsa::RsaPrivateKey::new(&mut rng, 2048)?;
            let pem = private
                .to_public_key()
                .to_public_key_pem(rsa::pkcs8::LineEnding::LF)
                .map_err(|e| anyhow::anyhow!("encoding the RSA public key: {e}"))?;
            (Some(rsa::pkcs1v15::SigningKey::new(private)), Some(pem))
        } else {
            (None, None)
        };
        Ok(Self {
            ed25519,
            ed25519_pem,
            rsa,
            rsa_pem,
        })
    }

    pub fn ed25519_public_pem(&self) -> &str {
        &self.ed25519_pem
    }

    pub fn rsa_public_pem(&self) -> Option<&str> {
        self.rsa_pem.as_deref()
    }

    /// `(x-ghl-signature, x-wh-signature)` for these exact bytes.
    pub fn sign(&self, body: &[u8]) -> (String, Option<String>) {
        use rsa::signature::{SignatureEncoding, Signer as _};
        let ed = B64.encode(self.ed25519.sign(body).to_bytes());
        let rsa = self
            .rsa
            .as_ref()
            .map(|k| B64.encode(k.sign(body).to_bytes()));
        (ed, rsa)
    }
}

/// The mutable part of the webhook configuration.
#[derive(Debug, Clone)]
struct Settings {
    url: Option<String>,
    app_id: String,
    version_id: String,
    max_retries: u32,
    retry_delay: Duration,
    faults: WebhookFaults,
}

/// One delivery unit on the queue.
#[derive(Debug)]
struct Outgoing {
    url: String,
    body: Arc<Vec<u8>>,
    ghl_signature: String,
    wh_signature: Option<String>,
    duplicate: bool,
    hold: bool,
}

struct Shared {
    settings: Mutex<Settings>,
    keys: WebhookKeys,
    counters: Counters,
    in_flight: watch::Sender<u64>,
    log: Mutex<VecDeque<Value>>,
    log_capacity: usize,
    rng: Mutex<StdRng>,
    client: reqwest::Client,
}

impl Shared {
    fn settings(&self) -> std::sync::MutexGuard<'_, Settings> {
        self.settings.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn finish_one(&self) {
        self.in_flight.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// The webhook emitter shared by every writer of the simulator.
#[derive(Clone)]
pub struct Webhooks {
    tx: mpsc::UnboundedSender<Outgoing>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhooks").finish_non_exhaustive()
    }
}

impl Webhooks {
    /// Start the delivery worker on the current Tokio runtime.
    pub fn start(
        cfg: &WebhookConfig,
        keys: WebhookKeys,
        counters: Counters,
    ) -> anyhow::Result<(Self, tokio::task::JoinHandle<()>)> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(cfg.delivery_timeout_ms))
            .build()?;
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            settings: Mutex::new(Settings {
                url: cfg.url.clone(),
                app_id: cfg.app_id.clone(),
                version_id: cfg.version_id.clone(),
                max_retries: cfg.max_retries,
                retry_delay: Duration::from_millis(cfg.retry_delay_ms),
                faults: cfg.faults.clone(),
            }),
            keys,
            counters,
            in_flight: watch::Sender::new(0),
            log: Mutex::new(VecDeque::new()),
            log_capacity: cfg.log_capacity,
            rng: Mutex::new(StdRng::seed_from_u64(cfg.faults.seed)),
            client,
        });
        let join = tokio::spawn(run(rx, shared.clone()));
        Ok((Self { tx, shared }, join))
    }

    pub fn keys(&self) -> &WebhookKeys {
        &self.shared.keys
    }

    pub fn set_url(&self, url: Option<String>) {
        self.shared.settings().url = url;
    }

    pub fn url(&self) -> Option<String> {
        self.shared.settings().url.clone()
    }

    pub fn set_faults(&self, faults: WebhookFaults) {
        *self
            .shared
            .rng
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = StdRng::seed_from_u64(faults.seed);
        self.shared.settings().faults = faults;
    }

    pub fn faults(&self) -> WebhookFaults {
        self.shared.settings().faults.clone()
    }

    /// Change the retry policy (GHL: 6 retries ~10 min apart).
    pub fn set_retry(&self, max_retries: u32, delay: Duration) {
        let mut s = self.shared.settings();
        s.max_retries = max_retries;
        s.retry_delay = delay;
    }

    /// Every payload emitted so far (oldest first, up to the log capacity), dropped ones too.
    pub fn log(&self) -> Vec<Value> {
        self.shared
            .log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .cloned()
            .collect()
    }

    pub fn clear_log(&self) {
        self.shared
            .log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// Deliveries not finished yet (queued, held back, being sent or waiting for a retry).
    pub fn in_flight(&self) -> u64 {
        *self.shared.in_flight.borrow()
    }

    /// Wait until nothing is in flight; `false` when `timeout` passed first.
    pub async fn drained(&self, timeout: Duration) -> bool {
        let mut rx = self.shared.in_flight.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|n| *n == 0))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Build, sign, log and queue one event. Synchronous and cheap: writers call it while they
    /// hold the store lock, which is what keeps emission order equal to write order.
    pub fn emit(&self, ev: Event) {
        self.emit_at(ev.kind, Some(ev.location_id), ev.fields, now_ms());
    }

    /// The `appId` and `versionId` payloads carry unless an event names its own app.
    pub fn app(&self) -> (String, String) {
        let s = self.shared.settings();
        (s.app_id.clone(), s.version_id.clone())
    }

    /// Emit an event with arbitrary fields, stamped `at` (the time of the act that caused it).
    /// `location_id: None` is a company-level event: its payload has no `locationId` at all
    /// (API.md §9.2a). `fields` may carry their own `appId` and `versionId`.
    pub fn emit_at(
        &self,
        kind: &str,
        location_id: Option<String>,
        fields: Map<String, Value>,
        at: chrono::DateTime<chrono::Utc>,
    ) {
        let settings = self.shared.settings().clone();
        let c = &self.shared.counters;
        let mut payload = Map::new();
        payload.insert("type".into(), json!(kind));
        if let Some(l) = location_id {
            payload.insert("locationId".into(), json!(l));
        }
        for (k, v) in fields {
            payload.insert(k, v);
        }
        if kind == "TaskCreate" && settings.faults.omit_task_create_contact_id {
            payload.remove("contactId");
        }
        payload.insert("timestamp".into(), json!(iso(&at)));
        payload.insert("webhookId".into(), json!(uuid::Uuid::new_v4().to_string()));
        payload.entry("appId").or_insert(json!(settings.app_id));
        payload
            .entry("versionId")
            .or_insert(json!(settings.version_id));
        let payload = Value::Object(payload);
        c.bump("webhooks_emitted");
        {
            let mut log = self
                .shared
                .log
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if log.len() >= self.shared.log_capacity.max(1) {
                log.pop_front();
            }
            log.push_back(payload.clone());
        }
        let Some(url) = settings.url else {
            c.bump("webhooks_unrouted");
            return;
        };
        let (drop, duplicate, hold) = {
            let mut rng = self
                .shared
                .rng
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let f = &settings.faults;
            let mut roll = |p: f64| p > 0.0 && rng.gen_bool(p.min(1.0));
            (
                roll(f.drop_probability),
                roll(f.duplicate_probability),
                roll(f.reorder_probability),
            )
        };
        if drop {
            c.bump("webhooks_dropped");
            return;
        }
        let body = match serde_json::to_vec(&payload) {
            Ok(b) => Arc::new(b),
            Err(e) => {
                tracing::error!(error = %e, "serialising a webhook payload");
                c.bump("webhooks_failed");
                return;
            }
        };
        let (ghl_signature, wh_signature) = self.shared.keys.sign(&body);
        if duplicate {
            c.bump("webhooks_duplicated");
        }
        if hold {
            c.bump("webhooks_reordered");
        }
        let units = if duplicate { 2 } else { 1 };
        self.shared.in_flight.send_modify(|n| *n += units);
        let out = Outgoing {
            url,
            body,
            ghl_signature,
            wh_signature,
            duplicate,
            hold,
        };
        if self.tx.send(out).is_err() {
            // The worker is gone (shutdown): nothing will deliver it.
            self.shared
                .in_flight
                .send_modify(|n| *n = n.saturating_sub(units));
            c.bump("webhooks_failed");
        }
    }
}

/// The delivery worker: one event at a time, in queue order; held-back events go out after the
/// next event (or after [`REORDER_HOLD`] when nothing else comes).
async fn run(mut rx: mpsc::UnboundedReceiver<Outgoing>, shared: Arc<Shared>) {
    let mut held: VecDeque<Outgoing> = VecDeque::new();
    loop {
        let next = if held.is_empty() {
            match rx.recv().await {
                Some(o) => o,
                None => break,
            }
        } else {
            match tokio::time::timeout(REORDER_HOLD, rx.recv()).await {
                Ok(Some(o)) => o,
                Ok(None) => break,
                Err(_) => {
                    while let Some(h) = held.pop_front() {
                        deliver(&shared, h).await;
                    }
                    continue;
                }
            }
        };
        if next.hold && held.is_empty() {
            held.push_back(next);
            continue;
        }
        deliver(&shared, next).await;
        while let Some(h) = held.pop_front() {
            deliver(&shared, h).await;
        }
    }
    while let Some(h) = held.pop_front() {
        deliver(&shared, h).await;
    }
}

enum Attempt {
    Delivered,
    Throttled,
    Failed,
}

async fn post(shared: &Shared, o: &Outgoing) -> Attempt {
    let mut req = shared
        .client
        .post(&o.url)
        .header("content-type", "application/json")
        .header("x-ghl-signature", &o.ghl_signature);
    if let Some(sig) = &o.wh_signature {
        req = req.header("x-wh-signature", sig);
    }
    match req.body(o.body.as_ref().clone()).send().await {
        Ok(r) if r.status().is_success() => Attempt::Delivered,
        Ok(r) if r.status().as_u16() == 429 => Attempt::Throttled,
        Ok(r) => {
            tracing::debug!(status = %r.status(), url = %o.url, "webhook refused");
            Attempt::Failed
        }
        Err(e) => {
            tracing::debug!(error = %e, url = %o.url, "webhook delivery failed");
            Attempt::Failed
        }
    }
}

/// Deliver one unit (twice when duplicated); a 429 hands it to a retry task.
async fn deliver(shared: &Arc<Shared>, o: Outgoing) {
    let copies = if o.duplicate { 2 } else { 1 };
    let o = Arc::new(o);
    for _ in 0..copies {
        match post(shared, &o).await {
            Attempt::Delivered => {
                shared.counters.bump("webhooks_sent");
                shared.finish_one();
            }
            Attempt::Failed => {
                shared.counters.bump("webhooks_failed");
                shared.finish_one();
            }
            Attempt::Throttled => {
                let shared = shared.clone();
                let o = o.clone();
                tokio::spawn(async move { retry(&shared, &o).await });
            }
        }
    }
}

async fn retry(shared: &Arc<Shared>, o: &Outgoing) {
    let (max, delay) = {
        let s = shared.settings();
        (s.max_retries, s.retry_delay)
    };
    for attempt in 1..=max {
        tokio::time::sleep(delay).await;
        shared.counters.bump("webhooks_retried");
        match post(shared, o).await {
            Attempt::Delivered => {
                shared.counters.bump("webhooks_sent");
                shared.finish_one();
                return;
            }
            Attempt::Throttled if attempt < max => continue,
            Attempt::Throttled | Attempt::Failed => break,
        }
    }
    shared.counters.bump("webhooks_failed");
    shared.finish_one();
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::Verifier;
    use ed25519_dalek::pkcs8::DecodePublicKey;

    #[test]
    fn signatures_verify_with_the_published_keys() {
        let keys = WebhookKeys::generate(false).expect("keys");
        let body = br#"{"type":"ContactCreate","id":"x"}"#;
        let (ed, rsa) = keys.sign(body);
        assert!(rsa.is_none());
        let vk = ed25519_dalek::VerifyingKey::from_public_key_pem(keys.ed25519_public_pem())
            .expect("SPKI PEM");
        let sig_bytes: [u8; 64] = B64
            .decode(ed)
            .expect("base64")
            .try_into()
            .expect("64 bytes");
        let sig = ed25519_dalek::Signature::from_bytes(&sig_bytes);
        assert!(vk.verify(body, &sig).is_ok());
        assert!(vk.verify(b"another body", &sig).is_err());
    }

    #[tokio::test]
    async fn without_a_target_events_are_logged_not_sent() {
        let counters = Counters::new();
        let (w, _join) = Webhooks::start(
            &WebhookConfig::default(),
            WebhookKeys::generate(false).expect("keys"),
            counters.clone(),
        )
        .expect("start");
        let mut fields = Map::new();
        fields.insert("id".into(), json!("t1"));
        fields.insert("contactId".into(), json!("c1"));
        w.set_faults(WebhookFaults {
            omit_task_create_contact_id: true,
            ..WebhookFaults::default()
        });
        w.emit(Event {
            kind: "TaskCreate",
            location_id: "loc".into(),
            fields,
        });
        assert!(w.drained(Duration::from_secs(1)).await);
        let log = w.log();
        assert_eq!(log.len(), 1);
        assert_eq!(log[0]["type"], "TaskCreate");
        assert!(log[0].get("contactId").is_none(), "#332 fault");
        for k in ["timestamp", "webhookId", "appId", "versionId", "locationId"] {
            assert!(log[0].get(k).is_some(), "{k}");
        }
        assert_eq!(counters.snapshot().event("webhooks_unrouted"), 1);
    }
}
