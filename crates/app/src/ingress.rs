//! The HTTP ingress (axum): GHL webhooks, the OAuth callback, health and metrics.
//!
//! `POST /webhooks/ghl` answers GHL only after the event is durably accepted (publisher
//! confirm). GHL retries a webhook **only on HTTP 429** (API.md §9.5), so every failure to
//! accept durably — broker down or slow, store down — is answered 429, never 5xx; a bad
//! signature is 401, a malformed or stale payload 400, a wrong content type 415, a body over
//! the limit 413, and a duplicate `webhookId` 200 without a second publish (ids are checked in
//! memory, [`RecentWebhooks`], and recorded in the store's inbox after the publish; the
//! worker's inbox catches a duplicate another replica took).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use metrics::counter;
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use domain::{LifecycleChange, Tenant, TenantId};
use ghl::webhook::{Signatures, WebhookVerifier};
use ghl::{GhlAdapter, OAuthClient};
use ports::Clock;
use ports::ghl::{CompanyEvent, CompanyEventKind, GhlEvent, GhlEventKind, Webhook};
use ports::queue::{Envelope, Payload, Publisher};
use ports::store::{
    AuditEntry, AuditLog, CredentialSecret, CredentialStore, Inbox, Provider, StoreHealth,
    TenantStore,
};

use crate::agency::{Agencies, Placed};
use crate::metrics::Telemetry;
use crate::oauth_state::{InstallFor, StateSigner};

/// The inbox source of webhook ids (accepted deliveries, recorded after the publish).
pub const INBOX_WEBHOOKS: &str = "webhook";

/// Webhook ids accepted lately by this process, so a redelivery is answered `duplicate`
/// without a second publish and without reading the store first (issue 17: one store round
/// trip per webhook, not two). Bounded: past [`RecentWebhooks::CAPACITY`] ids the oldest are
/// forgotten. A duplicate this process does not remember (another replica took the first
/// delivery, or this one restarted) is published again and skipped by the worker's inbox,
/// which keys messages by the same webhook id.
pub struct RecentWebhooks {
    ids: std::sync::Mutex<RecentIds>,
    /// Two independent random keys: an id is remembered as a 128-bit digest of (tenant, id),
    /// not as its strings.
    keys: [std::hash::RandomState; 2],
}

#[derive(Default)]
struct RecentIds {
    set: std::collections::HashSet<u128>,
    order: std::collections::VecDeque<u128>,
}

impl Default for RecentWebhooks {
    fn default() -> Self {
        Self {
            ids: std::sync::Mutex::default(),
            keys: [std::hash::RandomState::new(), std::hash::RandomState::new()],
        }
    }
}

impl RecentWebhooks {
    /// About 40 bytes an id (a digest in a set and in a queue): at most ~4 MiB. Held as the
    /// strings, the ids took about 250 bytes each, and a backfill's echoes (one webhook per
    /// contact) made the worker's memory grow with the location (issue 17).
    pub const CAPACITY: usize = 100_000;

    fn ids(&self) -> std::sync::MutexGuard<'_, RecentIds> {
        self.ids
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The digest of (tenant, id). Two ids mistaken for one would answer a new delivery
    /// `duplicate`; with 128 bits under random keys, among 100,000 ids that is about one
    /// chance in 10^28, and nobody outside can aim for it.
    fn digest(&self, tenant: &TenantId, webhook_id: &str) -> u128 {
        use std::hash::BuildHasher;
        let [high, low] = self
            .keys
            .each_ref()
            .map(|k| k.hash_one((tenant.as_str(), webhook_id)));
        (u128::from(high) << 64) | u128::from(low)
    }

    pub fn seen(&self, tenant: &TenantId, webhook_id: &str) -> bool {
        let key = self.digest(tenant, webhook_id);
        self.ids().set.contains(&key)
    }

    pub fn remember(&self, tenant: &TenantId, webhook_id: &str) {
        let key = self.digest(tenant, webhook_id);
        let mut ids = self.ids();
        if !ids.set.insert(key) {
            return;
        }
        ids.order.push_back(key);
        while ids.order.len() > Self::CAPACITY {
            if let Some(old) = ids.order.pop_front() {
                ids.set.remove(&old);
            }
        }
    }
}

/// The accepted webhook ids on their way to the store's inbox, written together (issue 17):
/// each delivery still waits for its id to be committed before it is answered, but the ids
/// that arrive while one batch is being written go in the next batch's one statement, not
/// one statement each.
pub struct InboxWrites {
    inbox: Arc<dyn Inbox>,
    queue: std::sync::OnceLock<tokio::sync::mpsc::Sender<InboxWrite>>,
}

struct InboxWrite {
    tenant: TenantId,
    key: String,
    done: tokio::sync::oneshot::Sender<Result<(), String>>,
}

impl InboxWrites {
    /// At most this many ids go in one statement.
    pub const BATCH: usize = 512;

    pub fn new(inbox: Arc<dyn Inbox>) -> Self {
        Self {
            inbox,
            queue: std::sync::OnceLock::new(),
        }
    }

    /// Record `key` for `tenant` under [`INBOX_WEBHOOKS`]; returns once it is committed
    /// (or with the store's error, as text: every waiter of the batch gets it).
    pub async fn record(&self, tenant: &TenantId, key: &str) -> Result<(), String> {
        // Started on first use, on the runtime that serves the ingress; it ends when the
        // last sender (this struct) is dropped.
        let queue = self.queue.get_or_init(|| {
            let (tx, rx) = tokio::sync::mpsc::channel(4 * Self::BATCH);
            tokio::spawn(write_batches(self.inbox.clone(), rx));
            tx
        });
        let (done, answer) = tokio::sync::oneshot::channel();
        queue
            .send(InboxWrite {
                tenant: tenant.clone(),
                key: key.to_owned(),
                done,
            })
            .await
            .map_err(|_| "the inbox writer stopped".to_owned())?;
        answer
            .await
            .map_err(|_| "the inbox writer stopped".to_owned())?
    }
}

async fn write_batches(inbox: Arc<dyn Inbox>, mut rx: tokio::sync::mpsc::Receiver<InboxWrite>) {
    let mut batch = Vec::with_capacity(InboxWrites::BATCH);
    while rx.recv_many(&mut batch, InboxWrites::BATCH).await > 0 {
        let keys: Vec<(TenantId, String)> = batch
            .iter()
            .map(|w| (w.tenant.clone(), w.key.clone()))
            .collect();
        let outcome = inbox
            .record_many(INBOX_WEBHOOKS, &keys)
            .await
            .map_err(|e| e.to_string());
        for w in batch.drain(..) {
            let _ = w.done.send(outcome.clone());
        }
    }
}

/// What the webhook route needs.
#[derive(Clone)]
pub struct WebhookState {
    pub verifier: Arc<WebhookVerifier>,
    pub tenants: Arc<dyn TenantStore>,
    /// Webhook ids this process accepted lately.
    pub recent: Arc<RecentWebhooks>,
    /// Where accepted webhook ids are recorded (for the operator and the audit of a
    /// delivery; the dedupe itself is `recent` and the worker's inbox).
    pub inbox: Arc<InboxWrites>,
    pub publisher: Arc<dyn Publisher>,
    pub credentials: Arc<dyn CredentialStore>,
    pub clock: Arc<dyn Clock>,
    /// Where the events answered `ignored` are recorded for the operator.
    pub audit: Arc<dyn AuditLog>,
    /// The agencies' installs: company tokens (deleted by the agency's UNINSTALL), and
    /// where the locations an INSTALL or LocationCreate names go.
    pub agencies: Agencies,
    /// Drops cached GHL tokens after an install or uninstall.
    pub ghl: Option<GhlAdapter>,
}

/// What the OAuth callback needs.
#[derive(Clone)]
pub struct OAuthState {
    pub oauth: Arc<OAuthClient>,
    pub tenants: Arc<dyn TenantStore>,
    pub credentials: Arc<dyn CredentialStore>,
    /// Where the locations an agency install approves go.
    pub agencies: Agencies,
    pub signer: Arc<StateSigner>,
    pub ghl: Option<GhlAdapter>,
    /// The console is served too: the callback's page links to where the install goes on.
    pub console: bool,
}

/// What the health and metrics routes need.
#[derive(Clone)]
pub struct HealthState {
    pub store: Arc<dyn StoreHealth>,
    pub broker_ready: Arc<dyn Fn() -> bool + Send + Sync>,
    pub telemetry: Arc<Telemetry>,
}

/// The router. Each route group has only the state it uses.
pub fn router(
    webhooks: WebhookState,
    oauth: Option<OAuthState>,
    health: HealthState,
    max_body_bytes: usize,
) -> Router {
    let mut app = Router::new()
        .route("/webhooks/ghl", post(webhook))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(webhooks);
    if let Some(oauth) = oauth {
        app = app.merge(
            Router::new()
                .route("/oauth/callback", get(oauth_callback))
                .with_state(oauth),
        );
    }
    app.merge(health_router(health))
}

/// Health and metrics only (what a `worker` serves).
pub fn health_router(health: HealthState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_page))
        .with_state(health)
}

/// Serve until `shutdown`; in-flight requests finish.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "ingress listening");
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move { shutdown.cancelled().await })
    .await
}

fn answer(status: StatusCode, outcome: &'static str, message: impl Into<String>) -> Response {
    counter!("ges_webhooks_total", "outcome" => outcome).increment(1);
    let body = serde_json::json!({ "status": outcome, "message": message.into() });
    (status, axum::Json(body)).into_response()
}

/// The webhook route, in a server span: the trace a webhook starts runs from here through the
/// broker to the worker.
async fn webhook(State(s): State<WebhookState>, headers: HeaderMap, body: Bytes) -> Response {
    use tracing::Instrument as _;
    let span = tracing::info_span!(
        "webhook",
        otel.name = "POST /webhooks/ghl",
        otel.kind = "server",
        tenant = tracing::field::Empty,
        event = tracing::field::Empty,
        http.response.status_code = tracing::field::Empty,
    );
    let response = accept_webhook(&s, &headers, &body)
        .instrument(span.clone())
        .await;
    span.record(
        "http.response.status_code",
        i64::from(response.status().as_u16()),
    );
    response
}

async fn accept_webhook(s: &WebhookState, headers: &HeaderMap, body: &Bytes) -> Response {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("application/json")
        })
        .unwrap_or(false);
    if !json {
        return answer(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "rejected",
            "content type must be application/json",
        );
    }
    let event = match s
        .verifier
        .verify(Signatures::from_headers(headers), body, s.clock.now())
    {
        Ok(e) => e,
        Err(e) => {
            let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
            tracing::warn!(error = %e, %status, "webhook refused");
            return answer(status, "rejected", e.to_string());
        }
    };
    tracing::Span::current().record("event", event.type_name());
    match event {
        Webhook::Location(event) => location_event(s, event).await,
        Webhook::Company(event) => company_event(s, event).await,
    }
}

fn store_down(e: &ports::StoreError) -> Response {
    tracing::warn!(error = %e, "store unavailable; asking GHL to retry");
    answer(StatusCode::TOO_MANY_REQUESTS, "retry", "cannot accept now")
}

/// An event we answer 200 and do nothing with: logged at INFO, counted by type.
fn ignored(event_type: &str, why: &str) -> Response {
    tracing::info!(event = event_type, reason = why, "webhook ignored");
    counter!("ges_webhooks_ignored_total", "type" => event_type.to_owned()).increment(1);
    answer(StatusCode::OK, "ignored", why.to_owned())
}

async fn location_event(s: &WebhookState, event: GhlEvent) -> Response {
    let tenant = match s.tenants.by_location(&event.location).await {
        Ok(Some(t)) => {
            tracing::Span::current().record("tenant", t.id.as_str());
            t
        }
        Ok(None) => return location_without_tenant(s, &event).await,
        Err(e) => return store_down(&e),
    };
    if s.recent.seen(&tenant.id, &event.webhook_id) {
        return answer(StatusCode::OK, "duplicate", "already accepted");
    }
    let response = match &event.kind {
        GhlEventKind::Uninstall { .. } => {
            lifecycle(s, &tenant, false, event.timestamp, "UNINSTALL").await
        }
        GhlEventKind::Install { company_id, .. } => {
            if let Err(e) = remember_company(s, &tenant, company_id.as_deref()).await {
                return store_down(&e);
            }
            lifecycle(s, &tenant, true, event.timestamp, "INSTALL").await
        }
        _ if !tenant.active => {
            // Uninstalled (or paused): quiet, not broken. Nothing is queued, so nothing
            // fails later; a reinstall's sync catches up with what happened meanwhile.
            return ignored(event.kind.type_name(), "the tenant is not active");
        }
        GhlEventKind::Unknown { event_type } => {
            // Opportunities, messages, orders…: nothing here uses them, so nothing is queued.
            const WHY: &str = "this event type is not used by the sync";
            if let Err(e) = audit_ignored(s, &tenant.id, &event.webhook_id, event_type, WHY).await {
                return store_down(&e);
            }
            ignored(event_type, WHY)
        }
        _ => return publish(s, &tenant, event).await,
    };
    if response.status() == StatusCode::OK {
        record_id(s, &tenant.id, &event.webhook_id).await;
    }
    response
}

async fn publish(s: &WebhookState, tenant: &Tenant, event: GhlEvent) -> Response {
    let env = Envelope::new(
        event.webhook_id.clone(),
        tenant.id.clone(),
        Payload::GhlEvent(event.clone()),
        s.clock.now(),
    );
    if let Err(e) = s.publisher.publish(&env).await {
        tracing::warn!(error = %e, webhook_id = %event.webhook_id, "broker did not confirm; asking GHL to retry");
        return answer(
            StatusCode::TOO_MANY_REQUESTS,
            "retry",
            "cannot accept durably now",
        );
    }
    // Published for good; remembering the id only saves a duplicate publish later.
    record_id(s, &tenant.id, &event.webhook_id).await;
    answer(StatusCode::OK, "accepted", "accepted")
}

/// Remember an accepted id: in this process, and in the store's inbox.
async fn record_id(s: &WebhookState, tenant: &TenantId, webhook_id: &str) {
    s.recent.remember(tenant, webhook_id);
    if let Err(e) = s.inbox.record(tenant, webhook_id).await {
        tracing::warn!(error = %e, "could not record the webhook id; a redelivery will be deduped by the worker");
    }
}

/// A location's INSTALL names its company: remember it, so the agency's company-wide events
/// (UNINSTALL, LocationUpdate) find the tenant.
async fn remember_company(
    s: &WebhookState,
    tenant: &Tenant,
    company: Option<&str>,
) -> Result<(), ports::StoreError> {
    let Some(company) = company else {
        return Ok(());
    };
    if tenant.install.company_id.as_deref() == Some(company) {
        return Ok(());
    }
    let mut updated = tenant.clone();
    updated.install.company_id = Some(company.to_owned());
    s.tenants.upsert(&updated).await
}

/// An event for a location with no tenant. A location-form INSTALL of an agency that
/// installed the app agency-wide places the location (its rule's tenant, or pending); a
/// location-form UNINSTALL forgets a pending location; the rest is not ours (yet): accepting
/// it loses nothing, refusing would make GHL retry for an hour to no end.
async fn location_without_tenant(s: &WebhookState, event: &GhlEvent) -> Response {
    let what = event.kind.type_name();
    match &event.kind {
        GhlEventKind::Install {
            company_id: Some(company),
            ..
        } => match s.agencies.agencies.agency_install(company).await {
            Ok(_) => place_location(s, company, &event.location, None, event.timestamp, what).await,
            Err(ports::StoreError::NotFound { .. }) => ignored(
                what,
                "no tenant for this location (add it with `tenants add`, then install the app on it)",
            ),
            Err(e) => store_down(&e),
        },
        GhlEventKind::Uninstall { .. } => {
            if let Err(e) = s.agencies.agencies.take_pending(&event.location).await {
                return store_down(&e);
            }
            ignored(what, "no tenant for this location")
        }
        _ => {
            tracing::warn!(location = %event.location, kind = what, "webhook for a location with no tenant; ignored");
            ignored(what, "no tenant for this location")
        }
    }
}

/// Place one location of an agency install (its tenant, made by the company's rule, or
/// pending) and say where it went.
async fn place_location(
    s: &WebhookState,
    company: &str,
    location: &domain::LocationId,
    name: Option<&str>,
    at: chrono::DateTime<chrono::Utc>,
    what: &str,
) -> Response {
    match s.agencies.place_one(company, location, name, at).await {
        Ok(Placed::Connected(t)) => answer(
            StatusCode::OK,
            "accepted",
            format!("location {location} is tenant {}", t.id),
        ),
        Ok(Placed::Stale(_)) => ignored(
            what,
            "older than the tenant's last install or uninstall (a replay or a late delivery)",
        ),
        Ok(Placed::Pending(p)) => answer(
            StatusCode::OK,
            "accepted",
            format!(
                "location {location} is pending until it is mapped to an eKyte company: {}",
                p.reason
            ),
        ),
        Err(e) => {
            // Answered 429 so GHL tries again; placing is idempotent.
            tracing::warn!(%company, %location, error = %format!("{e:#}"), "could not place the location");
            answer(
                StatusCode::TOO_MANY_REQUESTS,
                "retry",
                "cannot add the location now",
            )
        }
    }
}

/// A location added to an agency: when the agency's install covers future locations, it is
/// placed like an approved one (its rule's tenant, or pending), installed from the event's
/// time.
async fn location_created(
    s: &WebhookState,
    event: &CompanyEvent,
    location: &domain::LocationId,
    name: Option<&str>,
) -> Response {
    let company = &event.company_id;
    match s.tenants.by_location(location).await {
        Ok(Some(_)) => return ignored("LocationCreate", "the location has a tenant already"),
        Ok(None) => {}
        Err(e) => return store_down(&e),
    }
    let covered = match s.agencies.agencies.agency_install(company).await {
        Ok(install) => install.install_to_future,
        Err(ports::StoreError::NotFound { .. }) => false,
        Err(e) => return store_down(&e),
    };
    if !covered {
        tracing::info!(%company, %location, "a location was added to the agency; no agency install covers future locations, so it syncs once it has a tenant (`tenants add --agency-company`)");
        return ignored(
            "LocationCreate",
            "no agency install covering future locations for this company",
        );
    }
    place_location(
        s,
        company,
        location,
        name,
        event.timestamp,
        "LocationCreate",
    )
    .await
}

/// An audit line for an event answered `ignored` (a skip, with the event's type and id).
async fn audit_ignored(
    s: &WebhookState,
    tenant: &TenantId,
    webhook_id: &str,
    event_type: &str,
    why: &str,
) -> Result<(), ports::StoreError> {
    s.audit
        .append(&[AuditEntry::tenant_skip(
            tenant,
            s.clock.now(),
            format!("GHL event {event_type}: {why}"),
            Some(webhook_id.to_owned()),
        )])
        .await
}

/// Apply an install or uninstall of GHL time `at` to one tenant, unless the tenant has seen
/// a newer one: a replayed or late INSTALL never undoes a newer UNINSTALL.
async fn lifecycle(
    s: &WebhookState,
    tenant: &Tenant,
    install: bool,
    at: chrono::DateTime<chrono::Utc>,
    what: &str,
) -> Response {
    match apply_lifecycle(s, tenant, install, at).await {
        Ok(true) if install => {
            tracing::info!(tenant = %tenant.id, "app installed on the location: tenant active (tokens arrive through the OAuth callback)");
            answer(StatusCode::OK, "accepted", "installed")
        }
        Ok(true) => {
            tracing::warn!(tenant = %tenant.id, "app uninstalled from the location: tenant uninstalled and its GHL tokens deleted");
            answer(StatusCode::OK, "accepted", "uninstalled")
        }
        Ok(false) => ignored(
            what,
            "older than the tenant's last install or uninstall (a replay or a late delivery)",
        ),
        Err(e) => store_down(&e),
    }
}

/// The store side of [`lifecycle`]: `Ok(false)` when the event was stale.
async fn apply_lifecycle(
    s: &WebhookState,
    tenant: &Tenant,
    install: bool,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<bool, ports::StoreError> {
    let applied = tenant.install.judge(at) == LifecycleChange::Apply
        && s.tenants.apply_lifecycle(&tenant.id, install, at).await?;
    // An uninstalled tenant keeps no GHL token. Deleting is idempotent, so it is done again
    // for a stale UNINSTALL of a tenant that is uninstalled: a retry after a failed delete
    // finishes the job.
    if !install && (applied || !tenant.active) {
        s.credentials.delete(&tenant.id, Provider::Ghl).await?;
    }
    if applied && let Some(g) = &s.ghl {
        g.forget_credentials(&tenant.id);
    }
    Ok(applied)
}

/// A company-level event (API.md §9.2a): answered 2xx whatever it is, since GHL never
/// redelivers anything else; the agency's INSTALL and UNINSTALL reach every tenant of the
/// company, LocationUpdate refreshes the tenant's name, the rest is ignored and counted.
async fn company_event(s: &WebhookState, event: CompanyEvent) -> Response {
    let tenants = match s.tenants.by_company(&event.company_id).await {
        Ok(t) => t,
        Err(e) => return store_down(&e),
    };
    match &event.kind {
        CompanyEventKind::Install { .. } | CompanyEventKind::Uninstall { .. } => {
            let install = matches!(event.kind, CompanyEventKind::Install { .. });
            // The company token first, unless it was stored after this event (a reinstall
            // the replayed or late UNINSTALL must not undo).
            let stored = s.agencies.agencies.agency_install(&event.company_id).await;
            if install && stored.is_ok() {
                return company_installed(s, &event).await;
            }
            if !install {
                match stored {
                    Ok(a) if a.updated_at < event.timestamp => {
                        if let Err(e) = s.agencies.agencies.delete_agency(&event.company_id).await {
                            return store_down(&e);
                        }
                    }
                    Ok(_) | Err(ports::StoreError::NotFound { .. }) => {}
                    Err(e) => return store_down(&e),
                }
            }
            let mut applied = 0;
            for tenant in &tenants {
                match apply_lifecycle(s, tenant, install, event.timestamp).await {
                    Ok(true) => applied += 1,
                    Ok(false) => {}
                    Err(e) => return store_down(&e),
                }
            }
            let what = event.kind.type_name();
            if tenants.is_empty() {
                return ignored(what, "no tenant belongs to this company");
            }
            if applied == 0 {
                return ignored(
                    what,
                    "older than every tenant's last install or uninstall (a replay or a late delivery)",
                );
            }
            if install {
                tracing::info!(company = %event.company_id, tenants = applied, "app installed by the agency before its token was stored: its known tenants are active; the OAuth callback places its locations");
            } else {
                tracing::warn!(company = %event.company_id, tenants = applied, "app uninstalled by the agency: its tenants are uninstalled and their GHL tokens deleted");
            }
            answer(
                StatusCode::OK,
                "accepted",
                format!("{what} applied to {applied} tenant(s)"),
            )
        }
        CompanyEventKind::LocationUpdate { location, name } => {
            // By the location: its tenant may not know its company yet.
            let tenant = match s.tenants.by_location(location).await {
                Ok(Some(t)) => t,
                Ok(None) => return ignored("LocationUpdate", "no tenant for this location"),
                Err(e) => return store_down(&e),
            };
            let mut updated = tenant.clone();
            updated.install.company_id = Some(event.company_id.clone());
            if let Some(name) = name {
                updated.name = name.clone();
            }
            // The event carries no time zone (API.md §9.2a): the location is read for it.
            // Without a working token (uninstalled, revoked) the event's name is kept alone.
            if let Some(g) = &s.ghl
                && tenant.active
            {
                let scope = ports::Scope::new(Arc::new(tenant.clone()), ports::Priority::RealTime);
                match ports::ghl::GhlApi::get_location(g, &scope).await {
                    Ok(location) => {
                        if let Some(name) = location.name {
                            updated.name = name;
                        }
                        if location.timezone.is_some() {
                            updated.install.timezone = location.timezone;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(tenant = %tenant.id, error = %e, "LocationUpdate: could not read the location; its time zone is not refreshed");
                    }
                }
            }
            if updated == tenant {
                return ignored("LocationUpdate", "nothing this service keeps changed");
            }
            if let Err(e) = s.tenants.upsert(&updated).await {
                return store_down(&e);
            }
            tracing::info!(tenant = %tenant.id, name = %updated.name, timezone = ?updated.install.timezone, "location changed in GHL: tenant updated");
            answer(
                StatusCode::OK,
                "accepted",
                "tenant name and time zone updated",
            )
        }
        CompanyEventKind::LocationCreate { location, name } => {
            location_created(s, &event, location, name.as_deref()).await
        }
        CompanyEventKind::Other { event_type } => {
            const WHY: &str = "this company-level event type is not used by the sync";
            for tenant in &tenants {
                if let Err(e) =
                    audit_ignored(s, &tenant.id, &event.webhook_id, event_type, WHY).await
                {
                    return store_down(&e);
                }
            }
            ignored(event_type, WHY)
        }
    }
}

/// The agency's company-wide INSTALL, with its token stored: list the locations the install
/// covers now and place each (re-activated, made by the rule, or pending), unless a tenant
/// saw a newer lifecycle event. GHL is asked to retry (429) when the list cannot be read.
async fn company_installed(s: &WebhookState, event: &CompanyEvent) -> Response {
    let company = &event.company_id;
    let locations = match s.agencies.installed(company).await {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(%company, error = %e, "could not list the agency's installed locations; asking GHL to retry");
            return answer(
                StatusCode::TOO_MANY_REQUESTS,
                "retry",
                "cannot list the installed locations now",
            );
        }
    };
    if locations.is_empty() {
        return ignored("INSTALL", "GHL lists no location of the agency's install");
    }
    match s
        .agencies
        .place_all(company, &locations, event.timestamp)
        .await
    {
        Ok(placed) if placed.connected.is_empty() && placed.pending.is_empty() => ignored(
            "INSTALL",
            "older than every tenant's last install or uninstall (a replay or a late delivery)",
        ),
        Ok(placed) => answer(StatusCode::OK, "accepted", placed.describe(company)),
        Err(e) => {
            tracing::warn!(%company, error = %format!("{e:#}"), "could not place the agency's locations; asking GHL to retry");
            answer(
                StatusCode::TOO_MANY_REQUESTS,
                "retry",
                "cannot place the installed locations now",
            )
        }
    }
}

#[derive(Debug, Deserialize)]
struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

fn page(status: StatusCode, text: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        text,
    )
        .into_response()
}

/// The callback's answer when the console is served: the same text, and a link to where the
/// install goes on (a link, not a redirect: the console's `SameSite=Strict` session cookie is
/// not sent on the redirect from GHL's site, but is on a click on this page).
fn console_page(status: StatusCode, text: &str, next: &str) -> Response {
    let body = maud::html! {
        (maud::DOCTYPE)
        html lang="en" {
            head { meta charset="utf-8"; title { "GHL installation" } }
            body {
                pre #outcome { (text) }
                p { a #continue href=(next) { "Continue in the console" } }
            }
        }
    };
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body.into_string(),
    )
        .into_response()
}

async fn oauth_callback(State(s): State<OAuthState>, Query(q): Query<CallbackQuery>) -> Response {
    if let Some(e) = q.error {
        return page(
            StatusCode::BAD_REQUEST,
            format!("GHL refused the installation: {e}"),
        );
    }
    let (Some(code), Some(state)) = (q.code, q.state) else {
        return page(
            StatusCode::BAD_REQUEST,
            "missing code or state: start the installation from `ghl-ekyte-sync oauth url --tenant …`".into(),
        );
    };
    let (outcome, next) = match s.signer.verify_install(&state, chrono::Utc::now()) {
        Ok(InstallFor::Tenant(tenant_id)) => (
            complete_install(&s, &tenant_id, &code).await,
            format!("/console/tenants/{tenant_id}"),
        ),
        Ok(InstallFor::Agency) => (
            complete_agency_install(&s, &code).await,
            "/console/connect".to_owned(),
        ),
        Err(e) => return page(StatusCode::BAD_REQUEST, format!("invalid state: {e}")),
    };
    let (status, msg) = match outcome {
        Ok(msg) => (StatusCode::OK, msg),
        Err((status, msg)) => (status, msg),
    };
    if s.console {
        console_page(status, &msg, &next)
    } else {
        page(status, msg)
    }
}

fn unavailable(what: &str) -> impl FnOnce(ports::StoreError) -> (StatusCode, String) + '_ {
    move |e| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("could not {what}: {e}"),
        )
    }
}

/// An agency-wide install (`oauth url --agency`): store the company token (sealed, refreshed
/// under its own lock), list the locations the agency installed the app on, and place each:
/// its tenant connected (its GHL calls then use location tokens minted from the company
/// token), made by the company's mapping rule, or pending until `tenants map`.
pub async fn complete_agency_install(
    s: &OAuthState,
    code: &str,
) -> Result<String, (StatusCode, String)> {
    let install = s.oauth.exchange_code(code).await.map_err(|e| {
        (
            StatusCode::BAD_GATEWAY,
            format!("the code exchange with GHL failed: {e}"),
        )
    })?;
    let company = match (&install.user_type, &install.company_id) {
        (ghl::UserType::Company, Some(c)) => c.clone(),
        _ => {
            return Err((
                StatusCode::BAD_REQUEST,
                "GHL answered with a sub-account install, not an agency's: start it with `oauth url --tenant …` for one location".into(),
            ));
        }
    };
    let CredentialSecret::GhlOAuth { access_token, .. } = &install.credential.secret else {
        return Err((
            StatusCode::BAD_GATEWAY,
            "GHL's answer is not an OAuth token".into(),
        ));
    };
    s.agencies
        .agencies
        .put_agency(&company, &install.credential, install.install_to_future)
        .await
        .map_err(unavailable("store the agency token"))?;
    let locations = s
        .oauth
        .installed_locations(access_token, &company, &s.agencies.app_id)
        .await
        .map_err(|e| {
            (
                StatusCode::BAD_GATEWAY,
                format!(
                    "the agency token is stored, but listing its installed locations failed: {e}"
                ),
            )
        })?;
    let placed = s
        .agencies
        .place_all(&company, &locations, chrono::Utc::now())
        .await
        .map_err(|e| {
            (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("could not place the installed locations (try the install again): {e:#}"),
            )
        })?;
    tracing::info!(%company, connected = placed.connected.len(), pending = placed.pending.len(), "GHL agency installation stored");
    Ok(placed.describe(&company))
}

/// Exchange the code and store the tokens for the tenant (also `oauth exchange`).
pub async fn complete_install(
    s: &OAuthState,
    tenant_id: &TenantId,
    code: &str,
) -> Result<String, (StatusCode, String)> {
    let tenant = s.tenants.get(tenant_id).await.map_err(|e| {
        (
            StatusCode::BAD_REQUEST,
            format!("tenant {tenant_id} is unknown ({e}); add it with `ghl-ekyte-sync tenants add` first"),
        )
    })?;
    let install = s.oauth.exchange_code(code).await.map_err(|e| {
        (
            StatusCode::BAD_GATEWAY,
            format!("the code exchange with GHL failed: {e}"),
        )
    })?;
    if let Some(loc) = &install.location_id
        && loc != &tenant.location_id
    {
        return Err((
            StatusCode::BAD_REQUEST,
            format!(
                "the app was installed on location {loc}, but tenant {tenant_id} is for location {}; install it on the right sub-account",
                tenant.location_id
            ),
        ));
    }
    s.credentials
        .put(&tenant.id, Provider::Ghl, &install.credential)
        .await
        .map_err(|e| {
            (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("could not store the tokens: {e}"),
            )
        })?;
    s.tenants.set_active(&tenant.id, true).await.map_err(|e| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("could not activate the tenant: {e}"),
        )
    })?;
    if let Some(g) = &s.ghl {
        g.forget_credentials(&tenant.id);
    }
    tracing::info!(tenant = %tenant.id, scopes = ?install.scopes, "GHL installation stored");
    Ok(format!(
        "Installed: tenant {} is connected to GHL location {}. You can close this page.",
        tenant.id, tenant.location_id
    ))
}

async fn readyz(State(s): State<HealthState>) -> Response {
    let store = s.store.ping().await;
    let broker = (s.broker_ready)();
    let body = serde_json::json!({
        "store": store.as_ref().map(|_| "ok").unwrap_or("unavailable"),
        "broker": if broker { "ok" } else { "unavailable" },
    });
    let status = if store.is_ok() && broker {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}

async fn metrics_page(State(s): State<HealthState>) -> Response {
    let text = s.telemetry.render().await;
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        text,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_webhooks_are_told_apart_by_tenant_and_forgotten_past_the_capacity() {
        let recent = RecentWebhooks::default();
        let (a, b) = (
            TenantId::parse("acme").unwrap(),
            TenantId::parse("beta").unwrap(),
        );
        recent.remember(&a, "wh-1");
        assert!(recent.seen(&a, "wh-1"));
        assert!(!recent.seen(&b, "wh-1"), "another tenant's id");
        assert!(!recent.seen(&a, "wh-2"));
        // The parts are hashed apart: ("acme", "1x") is not ("acme1", "x").
        recent.remember(&a, "1x");
        assert!(!recent.seen(&TenantId::parse("acme1").unwrap(), "x"));
        for i in 0..RecentWebhooks::CAPACITY {
            recent.remember(&b, &format!("fill-{i}"));
        }
        assert!(!recent.seen(&a, "wh-1"), "the oldest ids are forgotten");
        assert!(recent.seen(&b, &format!("fill-{}", RecentWebhooks::CAPACITY - 1)));
        assert_eq!(recent.ids().set.len(), RecentWebhooks::CAPACITY);
        assert_eq!(recent.ids().order.len(), RecentWebhooks::CAPACITY);
    }
}
