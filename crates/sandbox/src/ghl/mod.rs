//! GHL simulator: an HTTP server that behaves like GoHighLevel's API v2 (LeadConnector) for
//! contacts, tags, tasks, notes, appointments, businesses, OAuth and agencies (companies with
//! several locations, bulk installs, `GET /oauth/installedLocations`), and that emits signed
//! webhooks — written from `shared/ghl/API.md` and the official OpenAPI specs only.
//!
//! What it guarantees to its users (adapter tests, the end-to-end and chaos suites, the
//! benchmarks, the demo):
//! - the same paths, methods, JSON shapes and field spellings as GHL (`succeded`,
//!   `buiseness`), the same status codes and error bodies (API.md §2);
//! - the documented rules: duplicate contacts refused per location setting, single-use refresh
//!   tokens, per-(app, location) rate limits with their five headers, `dateUpdated` moving on
//!   every write, `searchAfter` paging past the 10,000-record page cap;
//! - faults on demand (latency, 5xx, timeouts, injected 429s, webhook loss, duplication,
//!   reordering) that never change data: a faulted request never reaches a handler; the one
//!   exception is opt-in and named for it (`WriteFaults`: the write is applied, its answer
//!   is lost);
//! - a control API under `/_control` and a Rust handle ([`GhlSandbox`]) with the same
//!   operations, neither faulted, rate-limited nor counted as API traffic.
//!
//! Where the documents are silent, the choices made are listed in this module's `README.md`.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use sandbox::ghl::{GhlConfig, GhlSandbox, LocationSpec, PitSpec};
//! let ghl = GhlSandbox::start(GhlConfig::default()).await?;
//! let loc = ghl.create_location(LocationSpec::default())?;
//! let scopes = vec!["contacts.readonly".to_owned(), "contacts.write".to_owned()];
//! let token = ghl.register_pit(PitSpec { location_id: Some(loc.clone()), scopes, ..PitSpec::default() })?;
//! // call ghl.base_url() with `Authorization: Bearer {token}` and `Version: 2021-07-28`
//! ghl.shutdown().await?;
//! # Ok(()) }
//! ```

mod api;
mod auth;
mod config;
mod consent;
mod control;
mod core;
mod error;
mod install;
mod model;
mod ratelimit;
mod search;
mod store;
mod util;
mod validate;
mod webhooks;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use self::api::{VERSION_2021_04_15, VERSION_2021_07_28};
use self::auth::AuthRegistry;
pub use self::auth::{SCOPES, TokenPair};
pub use self::config::{
    AgencyConfig, DndWrite, GhlConfig, InstalledCount, LocationSpec, OAuthClientSpec, OAuthConfig,
    PitSpec, RateLimitConfig, RateWindow, RefreshUserType, SearchCursor, WebhookConfig,
    WebhookFaults, WriteFaults,
};
use self::core::Core;
pub use self::core::{CustomFieldSpec, LocationUpdate};
pub use self::error::ApiError;
use self::ratelimit::RateLimiter;
pub use self::search::{MAX_PAGE_LIMIT, MAX_PAGED_RECORDS};
use self::store::Store;
use self::webhooks::{WebhookKeys, Webhooks};
use crate::common::{CounterSnapshot, Counters, FaultConfig, Faults, ServerHandle, serve};

/// A running GHL simulator. Every method is a direct call (no HTTP); the control API at
/// `{base_url}/_control/…` offers the same operations to other processes.
#[derive(Debug)]
pub struct GhlSandbox {
    core: Arc<Core>,
    server: ServerHandle,
    webhook_worker: JoinHandle<()>,
}

impl GhlSandbox {
    /// Bind `config.host:config.port` (port 0 = any free port) and serve.
    pub async fn start(config: GhlConfig) -> anyhow::Result<Self> {
        let addr = format!("{}:{}", config.host, config.port);
        let listener = TcpListener::bind(&addr)
            .await
            .with_context(|| format!("binding the GHL simulator to {addr}"))?;
        Self::start_on(listener, config).await
    }

    /// Serve on an already bound listener.
    pub async fn start_on(listener: TcpListener, config: GhlConfig) -> anyhow::Result<Self> {
        let counters = Counters::new();
        let with_rsa = config.webhooks.rsa_signature;
        // RSA key generation is CPU-bound (seconds in a debug build): keep it off the runtime.
        let keys = tokio::task::spawn_blocking(move || WebhookKeys::generate(with_rsa))
            .await
            .context("generating the webhook signing keys")??;
        let (webhooks, webhook_worker) = Webhooks::start(&config.webhooks, keys, counters.clone())?;
        let core = Arc::new(Core::new(
            Store::new(
                config.lowercase_tags,
                Duration::from_millis(config.search_index_lag_ms),
            )
            .with_calendar_events_max_days(config.calendar_events_max_days)
            .with_dnd_write(config.dnd_write)
            .with_search_cursor(config.search_cursor),
            AuthRegistry::new(config.oauth.clone()),
            RateLimiter::new(config.rate_limit.clone()),
            counters,
            Faults::new(config.faults.clone()),
            webhooks,
            config.company_id.clone(),
        ));
        core.lost_answers.set(config.write_faults.clone());
        core.set_agency_config(config.agency.clone());
        for l in &config.locations {
            core.create_location(l)
                .map_err(|e| anyhow::anyhow!("creating location {:?}: {e}", l.id))?;
        }
        for c in &config.oauth_clients {
            core.register_client(c.clone())
                .map_err(|e| anyhow::anyhow!("registering client {:?}: {e}", c.client_id))?;
        }
        for p in &config.pits {
            core.register_pit(p)
                .map_err(|e| anyhow::anyhow!("registering a PIT: {e}"))?;
        }
        let router = api::router(core.clone())
            .merge(consent::router(core.clone()))
            .nest("/_control", control::router(core.clone()))
            .fallback(api::fallback);
        let server = serve(listener, router)?;
        core.set_base_url(server.base_url());
        tracing::info!(url = %server.base_url(), "GHL simulator listening");
        Ok(Self {
            core,
            server,
            webhook_worker,
        })
    }

    /// `http://127.0.0.1:PORT`, no trailing slash: the GHL base URL to give an adapter.
    pub fn base_url(&self) -> String {
        self.server.base_url()
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr
    }

    /// Stop serving and stop webhook delivery (events still queued are not delivered).
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.webhook_worker.abort();
        self.server.shutdown().await?;
        Ok(())
    }

    // ---------------------------------------------------------------- counters and faults

    /// Live counters (route template + status, named events); `snapshot()` and `reset()`.
    pub fn counters(&self) -> &Counters {
        &self.core.counters
    }

    pub fn counter_snapshot(&self) -> CounterSnapshot {
        self.core.counters.snapshot()
    }

    /// Live request-fault injector; `set(FaultConfig)` applies from the next request.
    pub fn faults(&self) -> &Faults {
        &self.core.faults
    }

    pub fn set_faults(&self, config: FaultConfig) {
        self.core.faults.set(config);
    }

    /// Lost answers after completed writes (opt-in; these requests DO change data).
    pub fn set_write_faults(&self, config: WriteFaults) {
        self.core.lost_answers.set(config);
    }

    pub fn write_faults(&self) -> WriteFaults {
        self.core.lost_answers.config()
    }

    pub fn rate_limits(&self) -> RateLimitConfig {
        self.core.limiter.config()
    }

    pub fn set_rate_limits(&self, config: RateLimitConfig) {
        self.core.limiter.set_config(config);
    }

    /// Forget all rate-limit history (empty windows, fresh daily budgets).
    pub fn reset_rate_limits(&self) {
        self.core.limiter.reset();
    }

    pub fn set_search_index_lag(&self, lag: Duration) {
        self.core.set_search_lag(lag);
    }

    // ---------------------------------------------------------------- locations and auth

    /// Create a location (no webhook; see [`Self::act_create_location`]); returns its id. A
    /// company install covering future locations installs its app on it.
    pub fn create_location(&self, spec: LocationSpec) -> Result<String, ApiError> {
        self.core
            .create_location(&spec)
            .map(|v| v["id"].as_str().unwrap_or_default().to_owned())
    }

    /// Change a location's settings, without a webhook.
    pub fn update_location(&self, id: &str, update: LocationUpdate) -> Result<Value, ApiError> {
        self.core.update_location(id, &update)
    }

    pub fn define_custom_fields(
        &self,
        location_id: &str,
        fields: &[CustomFieldSpec],
    ) -> Result<Vec<Value>, ApiError> {
        self.core.define_custom_fields(location_id, fields)
    }

    pub fn register_oauth_client(&self, spec: OAuthClientSpec) -> Result<(), ApiError> {
        self.core.register_client(spec)
    }

    /// An authorization code for (client, location), as if a person consented in
    /// `chooselocation`; exchange it at `POST /oauth/token`. The consent installs the client's
    /// app on the location (no webhook; see [`Self::act_install`] for the `INSTALL` event).
    pub fn issue_auth_code(
        &self,
        client_id: &str,
        location_id: &str,
        scopes: Option<Vec<String>>,
    ) -> Result<String, ApiError> {
        self.core
            .issue_code(client_id, Some(location_id), None, scopes)
    }

    /// An agency (Company) authorization code, for `POST /oauth/locationToken` flows. It
    /// installs nothing: location tokens are only minted where the app is installed.
    pub fn issue_agency_auth_code(
        &self,
        client_id: &str,
        company_id: &str,
        scopes: Option<Vec<String>>,
    ) -> Result<String, ApiError> {
        self.core
            .issue_code(client_id, None, Some(company_id), scopes)
    }

    /// The bulk-install consent of an agency app: a person approved `approved_locations` of
    /// `company_id` (and, with `install_to_future`, every location created later). The
    /// client's app is installed on them now (`installedAt` = now) and the Company token the
    /// code exchanges for says `isBulkInstallation: true`, `approvedLocations`,
    /// `installToFutureLocations` and `approveAllLocations` (every current location
    /// approved). No webhook: see [`Self::act_install_company`].
    pub fn issue_bulk_install_code(
        &self,
        client_id: &str,
        company_id: &str,
        approved_locations: &[String],
        install_to_future: bool,
        scopes: Option<Vec<String>>,
    ) -> Result<String, ApiError> {
        self.core.issue_bulk_code(
            client_id,
            company_id,
            approved_locations,
            install_to_future,
            scopes,
        )
    }

    /// Which app is installed where in a company: `{companies: [{appId, companyId,
    /// installToFutureLocations, versionId}], locations: [{appId, locationId, installedAt,
    /// versionId}]}`.
    pub fn installs(&self, company_id: &str) -> Value {
        self.core.installs_json(company_id)
    }

    pub fn agency_config(&self) -> AgencyConfig {
        self.core.agency_config()
    }

    pub fn set_agency_config(&self, config: AgencyConfig) {
        self.core.set_agency_config(config);
    }

    /// A location token pair without the code exchange (installs the client's app on the
    /// location, as the consent would).
    pub fn issue_tokens(
        &self,
        client_id: &str,
        location_id: &str,
        scopes: Option<Vec<String>>,
    ) -> Result<TokenPair, ApiError> {
        self.core
            .issue_tokens(client_id, Some(location_id), None, scopes)
    }

    /// Register a Private Integration Token; returns the token.
    pub fn register_pit(&self, spec: PitSpec) -> Result<String, ApiError> {
        self.core.register_pit(&spec)
    }

    /// Make an access token expire now; returns how many tokens were expired.
    pub fn expire_access_token(&self, token: &str) -> usize {
        self.core.auth().expire(Some(token))
    }

    /// Make every OAuth access token expire now (PITs do not expire).
    pub fn expire_all_access_tokens(&self) -> usize {
        self.core.auth().expire(None)
    }

    pub fn set_oauth_config(&self, config: OAuthConfig) {
        self.core.auth().set_config(config);
    }

    // ---------------------------------------------------------------- reads

    /// A contact as `GET /contacts/{id}` would return it (`None` when it does not exist).
    pub fn contact(&self, id: &str) -> Option<Value> {
        self.core.contact_json(id).ok()
    }

    /// Everything a location holds: `{location, customFields, contacts, tasks, notes,
    /// appointments, businesses}`, each list in id order.
    pub fn dump_location(&self, id: &str) -> Result<Value, ApiError> {
        self.core.dump(id)
    }

    // ---------------------------------------------------------------- seeding (no webhooks)

    /// Seed contacts in bulk: each item uses the API field names plus `id`, `businessId`,
    /// `dateAdded`, `dateUpdated`, `type`, `attributionSource`, `followers`. Returns the ids.
    pub fn seed_contacts(
        &self,
        location_id: &str,
        contacts: &[Value],
    ) -> Result<Vec<String>, ApiError> {
        self.core
            .seed_contacts(location_id, &Value::Array(contacts.to_vec()))
    }

    pub fn seed_tasks(&self, contact_id: &str, tasks: &[Value]) -> Result<Vec<String>, ApiError> {
        self.core
            .seed_tasks(contact_id, &Value::Array(tasks.to_vec()))
    }

    pub fn seed_notes(&self, contact_id: &str, notes: &[Value]) -> Result<Vec<String>, ApiError> {
        self.core
            .seed_notes(contact_id, &Value::Array(notes.to_vec()))
    }

    /// Each item: `{contactId*, startTime*, endTime, title, calendarId, appointmentStatus,
    /// assignedUserId, users, notes, address, …}`.
    pub fn seed_appointments(&self, appointments: &[Value]) -> Result<Vec<String>, ApiError> {
        self.core
            .seed_appointments(&Value::Array(appointments.to_vec()))
    }

    pub fn seed_businesses(
        &self,
        location_id: &str,
        businesses: &[Value],
    ) -> Result<Vec<String>, ApiError> {
        self.core
            .seed_businesses(location_id, &Value::Array(businesses.to_vec()))
    }

    // ---------------------------------------------------------------- a person in the GHL UI

    pub fn act_create_contact(&self, location_id: &str, contact: Value) -> Result<Value, ApiError> {
        self.core.act_create_contact(location_id, &contact)
    }

    pub fn act_update_contact(&self, contact_id: &str, fields: Value) -> Result<Value, ApiError> {
        self.core.act_update_contact(contact_id, &fields)
    }

    pub fn act_delete_contact(&self, contact_id: &str) -> Result<(), ApiError> {
        self.core.act_delete_contact(contact_id)
    }

    pub fn act_add_tags(&self, contact_id: &str, tags: &[&str]) -> Result<Vec<String>, ApiError> {
        let tags: Vec<String> = tags.iter().map(|t| (*t).to_owned()).collect();
        self.core.act_tags(contact_id, &tags, true)
    }

    pub fn act_remove_tags(
        &self,
        contact_id: &str,
        tags: &[&str],
    ) -> Result<Vec<String>, ApiError> {
        let tags: Vec<String> = tags.iter().map(|t| (*t).to_owned()).collect();
        self.core.act_tags(contact_id, &tags, false)
    }

    /// `title` required; `dueDate` defaults to tomorrow and `completed` to false.
    pub fn act_create_task(&self, contact_id: &str, task: Value) -> Result<Value, ApiError> {
        self.core.act_create_task(contact_id, &task)
    }

    pub fn act_update_task(
        &self,
        contact_id: &str,
        task_id: &str,
        fields: Value,
    ) -> Result<Value, ApiError> {
        self.core.act_update_task(contact_id, task_id, &fields)
    }

    pub fn act_complete_task(
        &self,
        contact_id: &str,
        task_id: &str,
        completed: bool,
    ) -> Result<Value, ApiError> {
        self.core.act_complete_task(contact_id, task_id, completed)
    }

    pub fn act_delete_task(&self, contact_id: &str, task_id: &str) -> Result<(), ApiError> {
        self.core.act_delete_task(contact_id, task_id)
    }

    pub fn act_create_note(&self, contact_id: &str, note: Value) -> Result<Value, ApiError> {
        self.core.act_create_note(contact_id, &note)
    }

    pub fn act_update_note(
        &self,
        contact_id: &str,
        note_id: &str,
        fields: Value,
    ) -> Result<Value, ApiError> {
        self.core.act_update_note(contact_id, note_id, &fields)
    }

    pub fn act_delete_note(&self, contact_id: &str, note_id: &str) -> Result<(), ApiError> {
        self.core.act_delete_note(contact_id, note_id)
    }

    /// Book an appointment: `{contactId*, startTime*, …}`; returns the `CalendarEventDTO`.
    pub fn act_create_appointment(&self, appointment: Value) -> Result<Value, ApiError> {
        self.core.act_create_appointment(&appointment)
    }

    pub fn act_update_appointment(&self, id: &str, fields: Value) -> Result<Value, ApiError> {
        self.core.act_update_appointment(id, &fields)
    }

    pub fn act_delete_appointment(&self, id: &str) -> Result<(), ApiError> {
        self.core.act_delete_appointment(id)
    }

    /// Install the app (the webhook config's unless given) on a location and emit the
    /// location-form `INSTALL` (`appId, locationId, companyId, userId, companyName,
    /// isWhitelabelCompany, whitelabelDetails, planId, trial`).
    pub fn act_install(&self, location_id: &str, app_id: Option<&str>) -> Result<(), ApiError> {
        self.core.act_install(location_id, app_id)
    }

    /// Emit the location-form `UNINSTALL` `{type, appId, locationId}`. With `app_id`, that
    /// app leaves the location and its OAuth tokens for it stop working; without, every app
    /// leaves and every token bound to the location stops working (PITs included).
    pub fn act_uninstall(&self, location_id: &str, app_id: Option<&str>) -> Result<(), ApiError> {
        self.core.act_uninstall(location_id, app_id)
    }

    /// An agency-wide install: `app_id` is installed on `locations` (all of `company_id`) and
    /// the company-form `INSTALL` `{type, appId, companyId, planId, trial}` (no `locationId`)
    /// is emitted. All or nothing.
    pub fn act_install_company(
        &self,
        company_id: &str,
        app_id: &str,
        locations: &[String],
    ) -> Result<(), ApiError> {
        self.core.act_install_company(company_id, app_id, locations)
    }

    /// The agency uninstalls `app_id`: company-form `UNINSTALL` `{type, appId, companyId}`;
    /// every location of the company loses the app, and the app's OAuth tokens for them and
    /// for the company answer 401 from now on (refresh tokens: 400 invalid grant).
    pub fn act_uninstall_company(&self, company_id: &str, app_id: &str) -> Result<(), ApiError> {
        self.core.act_uninstall_company(company_id, app_id)
    }

    /// A person creates a location in its company: `LocationCreate` `{type, id, companyId,
    /// name, email, stripeProductId}` (no `locationId`). A company install with
    /// `installToFutureLocations` installs its app on it. Returns the new location's id.
    pub fn act_create_location(&self, spec: LocationSpec) -> Result<String, ApiError> {
        self.core
            .act_create_location(&spec)
            .map(|v| v["id"].as_str().unwrap_or_default().to_owned())
    }

    /// A person edits a location: `LocationUpdate` (same shape as `LocationCreate`), unless
    /// nothing changed. [`Self::update_location`] changes settings silently.
    pub fn act_update_location(&self, id: &str, update: LocationUpdate) -> Result<Value, ApiError> {
        self.core.act_update_location(id, &update)
    }

    // ---------------------------------------------------------------- webhooks

    pub fn set_webhook_target(&self, url: Option<String>) {
        self.core.webhooks.set_url(url);
    }

    pub fn set_webhook_faults(&self, faults: WebhookFaults) {
        self.core.webhooks.set_faults(faults);
    }

    pub fn webhook_faults(&self) -> WebhookFaults {
        self.core.webhooks.faults()
    }

    /// Retries after a 429 (GHL: at most 6, ~10 minutes apart).
    pub fn set_webhook_retry(&self, max_retries: u32, delay: Duration) {
        self.core.webhooks.set_retry(max_retries, delay);
    }

    /// The Ed25519 public key (SPKI PEM) that verifies `x-ghl-signature`.
    pub fn webhook_public_key_pem(&self) -> String {
        self.core.webhooks.keys().ed25519_public_pem().to_owned()
    }

    /// The RSA public key (SPKI PEM) that verifies `x-wh-signature`, when enabled.
    pub fn webhook_rsa_public_key_pem(&self) -> Option<String> {
        self.core
            .webhooks
            .keys()
            .rsa_public_pem()
            .map(str::to_owned)
    }

    /// Every payload emitted (dropped ones included), oldest first.
    pub fn webhook_log(&self) -> Vec<Value> {
        self.core.webhooks.log()
    }

    pub fn clear_webhook_log(&self) {
        self.core.webhooks.clear_log();
    }

    /// Deliveries not finished (queued, held back, in progress or awaiting a retry).
    pub fn webhooks_in_flight(&self) -> u64 {
        self.core.webhooks.in_flight()
    }

    /// Wait until no delivery is in flight; `false` if `timeout` passed first.
    pub async fn wait_webhooks_drained(&self, timeout: Duration) -> bool {
        self.core.webhooks.drained(timeout).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_handle_can_be_shared_across_tasks() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<GhlSandbox>();
        assert_send_sync::<GhlConfig>();
    }
}
