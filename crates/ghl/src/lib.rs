//! The GHL adapter: [`GhlAdapter`] implements [`ports::ghl::GhlApi`] over GHL's API v2
//! (`shared/ghl/API.md`), with OAuth and Private Integration Tokens ([`oauth`]), a shared
//! per-(app, location) rate budget ([`budget`]) and webhook verification ([`webhook`]).
//!
//! What every port call guarantees, on top of the port's error contract:
//! - exact paths, methods, bodies and `Version` headers of API.md §4 (`client::routes`);
//! - a slot of the tenant's rate budget before every request, real-time calls first;
//! - retries bounded by the [`RetryPolicy`]: 429s always, 5xx/timeouts only when repeating the
//!   request is harmless; a create whose outcome is unknown is resolved by looking the record
//!   up (duplicate search, task/note list, or the 400 `meta.contactId` of a retry) — never by a
//!   blind repeat;
//! - one refresh-and-retry on 401, through the credential store's lock;
//! - a metric per request (`ges_api_calls_total{provider="ghl",route,status,tenant}`, and
//!   `ges_api_call_seconds`), a tracing span per port call with the tenant and the ids.
//!
//! Behaviour worth knowing:
//! - `delete_*` after an attempt with an unknown outcome treats "not found" as done;
//! - `update_contact` with no changes reads the contact instead of writing;
//! - appointment times of `GET /contacts/:id/appointments` carry no zone and are read as UTC
//!   (see `mapping`);
//! - `ListingMode::Legacy` ignores `updated_since` and `tag` (the deprecated list has no
//!   filters) and returns GHL's thin list projection of each contact.
//!
//! Wiring it (the app's composition root):
//!
//! ```no_run
//! # use std::sync::Arc;
//! # fn wire(store: Arc<dyn ports::store::CredentialStore>) -> Result<(), Box<dyn std::error::Error>> {
//! use ghl::{GhlAdapter, GhlAdapterConfig, WebhookConfig, WebhookVerifier};
//! let adapter = GhlAdapter::new(
//!     GhlAdapterConfig {
//!         client_id: "…".into(),
//!         client_secret: "…".to_owned().into(),
//!         redirect_uri: Some("https://sync.example/oauth/callback".parse()?),
//!         ..GhlAdapterConfig::default()
//!     },
//!     store,
//! )?;
//! let install_url = adapter.oauth().authorize_url("signed-state")?; // send a person here
//! let budgets = adapter.budgets(); // read by /metrics: `budgets.snapshot()`
//! let verifier = WebhookVerifier::new(&WebhookConfig::default())?; // GHL's published keys
//! # let _ = (install_url, budgets, verifier);
//! # Ok(()) }
//! ```

pub mod budget;
mod client;
pub mod config;
mod dto;
pub mod error;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
mod mapping;
pub mod oauth;
pub mod webhook;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::{
    Contact, FieldChange, GhlAppointmentId, GhlBusinessId, GhlContactId, GhlNoteId, GhlTaskId,
    Note, Task, TenantId,
};
use ports::ghl::{
    CalendarRange, ContactPage, ContactSearch, GhlApi, GhlAppointment, GhlBusiness, GhlContact,
    GhlLocation, GhlNote, GhlTask, ListingMode, TaskSearch,
};
use ports::store::{CredentialStore, RateWindow};
use ports::{ApiError, Scope};
use serde_json::{Value, json};

use crate::budget::BudgetKey;
pub use crate::budget::{BudgetSnapshot, RateBudgets, RateHeaders};
use crate::client::{Answer, ApiRequest, Safety, Transport, backoff, routes};
pub use crate::config::{GhlAdapterConfig, RateConfig, RetryPolicy, default_scopes};
use crate::dto::{
    BusinessEnvelope, CalendarsAnswer, ContactEnvelope, DeleteAnswer, DuplicateAnswer,
    EventEnvelope, EventsAnswer, ListAnswer, NoteEnvelope, NotesAnswer, SearchAnswer, TagsAnswer,
    TaskEnvelope, TasksAnswer, UpdateAnswer, UpsertAnswer,
};
use crate::error::CallError;
pub use crate::error::ConfigError;
use crate::oauth::{AccessToken, TokenManager};
pub use crate::oauth::{Installation, InstalledLocation, LocationToken, OAuthClient, UserType};
pub use crate::webhook::{
    SignatureScheme, Signatures, WebhookConfig, WebhookError, WebhookVerifier,
};

/// `pageLimit` of `POST /contacts/search` (API.md §5).
const MAX_SEARCH_PAGE: u32 = 500;
/// `limit` of the deprecated `GET /contacts/` (\[C2\]).
const MAX_LEGACY_PAGE: u32 = 100;
/// `limit` of `GET /contacts/business/{id}` (API.md §4.1).
const MAX_BUSINESS_PAGE: u32 = 100;
/// A note found after an unknown-outcome create must be at most this much older than the
/// attempt (clock skew between us and GHL).
const NOTE_MATCH_SKEW: chrono::Duration = chrono::Duration::minutes(5);

/// The GHL adapter. Clone it freely: clones share the HTTP client, the rate budgets and the
/// token cache.
#[derive(Debug, Clone)]
pub struct GhlAdapter {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    transport: Arc<Transport>,
    tokens: TokenManager,
    oauth: Arc<OAuthClient>,
    app: String,
    /// The widest `GET /calendars/events` range GHL accepted after refusing a wider one:
    /// later reads ask for ranges this wide at once instead of halving again.
    calendar_span: std::sync::Mutex<Option<chrono::Duration>>,
    /// Each location's custom field kinds (`dataType` by id), read when a write carries
    /// custom fields, kept for [`FIELD_KINDS_TTL`].
    field_kinds: KindsCache,
}

/// How long a location's custom field catalogue is trusted before it is read again.
const FIELD_KINDS_TTL: std::time::Duration = std::time::Duration::from_secs(300);

fn invalid(messages: Vec<String>) -> ApiError {
    ApiError::Invalid { messages }
}

fn unreadable(route: &'static str, e: anyhow::Error) -> ApiError {
    CallError::Decode { route, source: e }.into()
}

impl Inner {
    /// Give the `customFields` of a contact write the types their fields take (API.md §3.3:
    /// numbers for numeric and monetary fields, string arrays for checkboxes and
    /// multi-selects), from the location's catalogue. A body without custom fields reads
    /// nothing.
    async fn type_custom_fields(
        &self,
        scope: &Scope,
        body: &mut serde_json::Map<String, Value>,
    ) -> Result<(), ApiError> {
        if !body.contains_key("customFields") {
            return Ok(());
        }
        let kinds = self.field_kinds(scope).await?;
        mapping::type_custom_fields(body, &kinds).map_err(invalid)
    }

    async fn field_kinds(&self, scope: &Scope) -> Result<Arc<mapping::FieldKinds>, ApiError> {
        let location = scope.tenant.location_id.to_string();
        let fresh = |entry: Option<&(std::time::Instant, Arc<mapping::FieldKinds>)>| {
            entry
                .filter(|(at, _)| at.elapsed() < FIELD_KINDS_TTL)
                .map(|(_, k)| Arc::clone(k))
        };
        if let Some(k) = fresh(lock_kinds(&self.field_kinds).get(&location)) {
            return Ok(k);
        }
        let req = ApiRequest::new(
            &routes::LIST_CUSTOM_FIELDS,
            format!("/locations/{location}/customFields"),
        )
        .query("model", "contact");
        let answer = self.call(scope, &req).await?;
        let list: dto::CustomFieldsAnswer = answer.decode()?;
        let kinds = Arc::new(mapping::field_kinds(list));
        lock_kinds(&self.field_kinds)
            .insert(location, (std::time::Instant::now(), Arc::clone(&kinds)));
        Ok(kinds)
    }
}

type KindsCache = std::sync::Mutex<Kinds>;

type Kinds = HashMap<String, (std::time::Instant, Arc<mapping::FieldKinds>)>;

fn lock_kinds(m: &KindsCache) -> std::sync::MutexGuard<'_, Kinds> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl GhlAdapter {
    /// Build the adapter. Credentials are read (and refreshed) through `credentials` by
    /// tenant id (`Provider::Ghl`).
    pub fn new(
        config: GhlAdapterConfig,
        credentials: Arc<dyn CredentialStore>,
    ) -> Result<Self, ConfigError> {
        Self::with_window(config, credentials, None)
    }

    /// Build the adapter with its rate budgets also taking their slots from `window`, the
    /// rate window every replica of the deployment shares (`None`: each process goes by
    /// GHL's headers alone, and leaves room for the others it sees there).
    pub fn with_window(
        config: GhlAdapterConfig,
        credentials: Arc<dyn CredentialStore>,
        window: Option<Arc<dyn RateWindow>>,
    ) -> Result<Self, ConfigError> {
        let budgets = Arc::new(match window {
            Some(w) => RateBudgets::shared(config.rate.clone(), w, config.request_timeout),
            None => RateBudgets::new(config.rate.clone()),
        });
        let transport = Arc::new(Transport::new(&config, budgets)?);
        let oauth = Arc::new(OAuthClient::with_transport(&config, transport.clone()));
        Ok(Self {
            inner: Arc::new(Inner {
                tokens: TokenManager::new(credentials, oauth.clone(), config.refresh_margin),
                transport,
                oauth,
                app: config.budget_app().to_owned(),
                calendar_span: std::sync::Mutex::default(),
                field_kinds: std::sync::Mutex::default(),
            }),
        })
    }

    /// The OAuth endpoints (authorisation URL, code exchange, location tokens).
    pub fn oauth(&self) -> Arc<OAuthClient> {
        self.inner.oauth.clone()
    }

    /// The rate budgets of this process, for metrics and `status`.
    pub fn budgets(&self) -> Arc<RateBudgets> {
        self.inner.transport.budgets().clone()
    }

    /// Drop the cached tokens of a tenant (after an uninstall or a new install).
    pub fn forget_credentials(&self, tenant: &TenantId) {
        self.inner.tokens.forget(tenant);
    }

    /// `GET /calendars/events/appointments/:eventId` (Calendars, `Version: 2021-04-15`,
    /// scope `calendars/events.readonly`, API.md §4.5): the full record of one appointment,
    /// e.g. for an `Appointment*` webhook.
    #[tracing::instrument(skip_all, fields(tenant = %scope.tenant.id, appointment_id = %id))]
    pub async fn get_appointment(
        &self,
        scope: &Scope,
        id: &GhlAppointmentId,
    ) -> Result<GhlAppointment, ApiError> {
        let req = ApiRequest::new(
            &routes::GET_APPOINTMENT,
            format!("/calendars/events/appointments/{id}"),
        );
        let answer = self.inner.call(scope, &req).await?;
        let env: EventEnvelope = answer.decode()?;
        mapping::appointment(env.event, None).map_err(|e| unreadable(answer.route, e))
    }
}

impl Inner {
    /// One call for a tenant: its token, its budget, one refresh-and-retry on 401.
    async fn call(&self, scope: &Scope, req: &ApiRequest) -> Result<Answer, CallError> {
        let key = BudgetKey::new(self.app.clone(), scope.tenant.location_id.as_str());
        let token = self.tokens.access(scope).await.map_err(CallError::Api)?;
        match self.send(scope, req, &key, &token).await {
            Err(e) if needs_new_token(&e) => {
                tracing::info!(
                    route = req.route.label,
                    "GHL answered 401; getting a new token"
                );
                let token = self
                    .tokens
                    .after_unauthorized(scope, &token)
                    .await
                    .map_err(CallError::Api)?;
                match self.send(scope, req, &key, &token).await {
                    Err(e) if needs_new_token(&e) => Err(CallError::Api(ApiError::Unauthorized {
                        message: format!(
                            "GHL refused a fresh token of tenant {} on {}: the app must be \
                             reinstalled on location {}",
                            scope.tenant.id, req.route.label, scope.tenant.location_id
                        ),
                    })),
                    other => other,
                }
            }
            other => other,
        }
    }

    async fn send(
        &self,
        scope: &Scope,
        req: &ApiRequest,
        key: &BudgetKey,
        token: &AccessToken,
    ) -> Result<Answer, CallError> {
        scope.calls.ghl();
        Box::pin(self.transport.send(
            req,
            Some(&token.secret),
            Some((key, scope.priority)),
            Some(scope.tenant.id.as_str()),
        ))
        .await
    }

    fn custom_fields(scope: &Scope) -> &[String] {
        &scope.tenant.settings.custom_fields
    }

    fn contact_of(
        &self,
        scope: &Scope,
        route: &'static str,
        dto: dto::ContactDto,
    ) -> Result<GhlContact, ApiError> {
        mapping::contact(dto, Self::custom_fields(scope), &scope.tenant.location_id)
            .map_err(|e| unreadable(route, e))
    }

    async fn get_contact(&self, scope: &Scope, id: &GhlContactId) -> Result<GhlContact, ApiError> {
        let req = ApiRequest::new(&routes::GET_CONTACT, format!("/contacts/{id}"));
        let answer = self.call(scope, &req).await?;
        let env: ContactEnvelope = answer.decode()?;
        self.contact_of(scope, answer.route, env.contact)
    }

    async fn find_duplicate(
        &self,
        scope: &Scope,
        email: Option<&str>,
        phone: Option<&str>,
    ) -> Result<Option<GhlContactId>, ApiError> {
        let email = email.map(str::trim).filter(|s| !s.is_empty());
        let phone = phone.map(str::trim).filter(|s| !s.is_empty());
        if email.is_none() && phone.is_none() {
            return Err(invalid(vec![
                "a duplicate lookup needs an e-mail or a phone".to_owned(),
            ]));
        }
        // `reqwest` form-encodes the query, so a phone's `+` travels as `%2B` (API.md §4.1).
        let mut req = ApiRequest::new(&routes::FIND_DUPLICATE, "/contacts/search/duplicate")
            .query("locationId", scope.tenant.location_id.as_str());
        if let Some(e) = email {
            req = req.query("email", e);
        }
        if let Some(p) = phone {
            req = req.query("number", p);
        }
        let answer = self.call(scope, &req).await?;
        let found: DuplicateAnswer = answer.decode()?;
        match found.contact.and_then(|c| c.id) {
            Some(id) => GhlContactId::parse(id)
                .map(Some)
                .map_err(|e| unreadable(answer.route, anyhow::Error::new(e))),
            None => Ok(None),
        }
    }

    /// A create that is never repeated blindly: after an unknown outcome, `lookup` says
    /// whether the record exists; only when it does not is the create sent again.
    async fn create_resolved<T, L, F>(
        &self,
        scope: &Scope,
        req: &ApiRequest,
        decode: impl Fn(&Answer) -> Result<T, ApiError>,
        lookup: L,
    ) -> Result<T, ApiError>
    where
        L: Fn() -> F,
        F: Future<Output = Result<Option<T>, ApiError>>,
    {
        let policy = self.transport.retry().clone();
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.call(scope, req).await {
                Ok(answer) => return decode(&answer),
                Err(e) if e.outcome_unknown() => {
                    tracing::warn!(
                        route = req.route.label,
                        "create outcome unknown; looking it up"
                    );
                    if let Some(found) = lookup().await? {
                        tracing::info!(route = req.route.label, "the create had succeeded");
                        return Ok(found);
                    }
                    if attempt >= policy.max_attempts {
                        return Err(e.into());
                    }
                    backoff(&policy, attempt).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// A 401 that a new token may cure (not a missing scope).
fn needs_new_token(e: &CallError) -> bool {
    matches!(e, CallError::Status { status, body, .. } if status.as_u16() == 401 && !body.says_scope())
}

fn check_deleted(answer: &Answer) -> Result<(), ApiError> {
    let d: DeleteAnswer = answer.decode()?;
    if d.succeded == Some(false) {
        return Err(ApiError::Unknown(anyhow::anyhow!(
            "{}: GHL answered succeded: false",
            answer.route
        )));
    }
    Ok(())
}

/// A DELETE: done, or "not found" after an attempt that may have done it already.
fn deleted(result: Result<Answer, CallError>) -> Result<(), ApiError> {
    match result {
        Ok(answer) => check_deleted(&answer),
        Err(e) if e.is_not_found() && e.after_unknown() => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[async_trait]
impl GhlApi for GhlAdapter {
    #[tracing::instrument(skip_all, fields(tenant = %scope.tenant.id, contact_id = %id))]
    async fn get_contact(&self, scope: &Scope, id: &GhlContactId) -> Result<GhlContact, ApiError> {
        self.inner.get_contact(scope, id).await
    }

    #[tracing::instrument(skip_all, fields(tenant = %scope.tenant.id))]
    async fn create_contact(
        &self,
        scope: &Scope,
        contact: &Contact,
    ) -> Result<GhlContact, ApiError> {
        let inner = &self.inner;
        let mut body =
            mapping::contact_create_body(&scope.tenant.location_id, contact).map_err(invalid)?;
        inner.type_custom_fields(scope, &mut body).await?;
        let req = ApiRequest::new(&routes::CREATE_CONTACT, "/contacts/").json(body);
        let policy = inner.transport.retry().clone();
        let can_look_up = contact.email.is_some() || contact.phone.is_some();
        let mut unknown_before = false;
        let mut attempt = 0;
        loop {
            attempt += 1;
            match inner.call(scope, &req).await {
                Ok(answer) => {
                    let env: ContactEnvelope = answer.decode()?;
                    return inner.contact_of(scope, answer.route, env.contact);
                }
                Err(e) if e.outcome_unknown() => {
                    // The contact may exist now (API.md §11 #4, DESIGN.md §4 "Exactly one
                    // create"): look before any retry.
                    if !can_look_up {
                        tracing::warn!(
                            "create outcome unknown and nothing to look the contact up by"
                        );
                        return Err(e.into());
                    }
                    let found = inner
                        .find_duplicate(scope, contact.email.as_deref(), contact.phone.as_deref())
                        .await?;
                    if let Some(id) = found {
                        tracing::info!(contact_id = %id, "the create had succeeded (found by lookup)");
                        return inner.get_contact(scope, &id).await;
                    }
                    if attempt >= policy.max_attempts {
                        return Err(e.into());
                    }
                    unknown_before = true;
                    backoff(&policy, attempt).await;
                }
                Err(e) => {
                    let e = ApiError::from(e);
                    // A retry refused as a duplicate of the contact our unknown attempt made.
                    if unknown_before
                        && let ApiError::Conflict {
                            existing_id: Some(id),
                            ..
                        } = &e
                        && let Ok(id) = GhlContactId::parse(id.as_str())
                    {
                        tracing::info!(contact_id = %id, "the earlier create had succeeded (meta.contactId)");
                        return inner.get_contact(scope, &id).await;
                    }
                    return Err(e);
                }
            }
        }
    }

    #[tracing::instrument(skip_all, fields(tenant = %scope.tenant.id))]
    async fn upsert_contact(
        &self,
        scope: &Scope,
        contact: &Contact,
    ) -> Result<(GhlContact, bool), ApiError> {
        let mut body =
            mapping::contact_create_body(&scope.tenant.location_id, contact).map_err(invalid)?;
        self.inner.type_custom_fields(scope, &mut body).await?;
        // An upsert matches on e-mail or phone (API.md §6): with either, a repeat finds the
        // contact the first attempt made. Without them it creates every time.
        let safety = if contact.email.is_some() || contact.phone.is_some() {
            Safety::Idempotent
        } else {
            Safety::Unsafe
        };
        let req = ApiRequest::new(&routes::UPSERT_CONTACT, "/contacts/upsert")
            .json(body)
            .safety(safety);
        let answer = self.inner.call(scope, &req).await?;
        let up: UpsertAnswer = answer.decode()?;
        let created = up.new.unwrap_or(false);
        Ok((
            self.inner.contact_of(scope, answer.route, up.contact)?,
            created,
        ))
    }

    #[tracing::instrument(skip_all, fields(tenant = %scope.tenant.id, contact_id = %id))]
    async fn update_contact(
        &self,
        scope: &Scope,
        id: &GhlContactId,
        changes: &[FieldChange],
    ) -> Result<GhlContact, ApiError> {
        let mut body = mapping::contact_update_body(changes).map_err(invalid)?;
        self.inner.type_custom_fields(scope, &mut body).await?;
        if body.is_empty() {
            return self.inner.get_contact(scope, id).await;
        }
        let req = ApiRequest::new(&routes::UPDATE_CONTACT, format!("/contacts/{id}")).json(body);
        let answer = self.inner.call(scope, &req).await?;
        let up: UpdateAnswer = answer.decode()?;
        if up.succeded == Some(false) {
            return Err(ApiError::Unknown(anyhow::anyhow!(
                "{}: GHL answered succeded: false",
                answer.route
            )));
        }
        match up.contact {
            Some(c) => self.inner.contact_of(scope, answer.route, c),
            None => self.inner.get_contact(scope, id).await,
        }
    }

    #[tracing::instrument(skip_all, fields(tenant = %scope.tenant.id, contact_id = %id))]
    async fn delete_contact(&self, scope: &Scope, id: &GhlContactId) -> Result<(), ApiError> {
        let req = ApiRequest::new(&routes::DELETE_CONTACT, format!("/contacts/{id}"));
        deleted(self.inner.call(scope, &req).await)
    }

    #[tracing::instrument(skip_all, fields(tenant = %scope.tenant.id, mode = ?mode))]
    async fn list_contacts(
        &self,
        scope: &Scope,
        mode: ListingMode,
        query: &ContactSearch,
    ) -> Result<ContactPage, ApiError> {
        if !(1..=MAX_SEARCH_PAGE).contains(&query.page_limit) {
            return Err(invalid(vec![format!(
                "page_limit must be between 1 and {MAX_SEARCH_PAGE} (GHL's limit), got {}",
                query.page_limit
            )]));
        }
        let location = &scope.tenant.location_id;
        match mode {
            ListingMode::Search => {
                let body = mapping::search_body(location, query).map_err(|m| invalid(vec![m]))?;
                let req = ApiRequest::new(&routes::SEARCH_CONTACTS, "/contacts/search").json(body);
                let answer = self.inner.call(scope, &req).await?;
                let page: SearchAnswer = answer.decode()?;
                let full = page.contacts.len() >= query.page_limit as usize;
                let next = if full {
                    page.contacts.last().and_then(mapping::next_search_cursor)
                } else {
                    None
                };
                let contacts = mapping::all(page.contacts, "contact", |c| {
                    mapping::contact(c, Inner::custom_fields(scope), location)
                })
                .map_err(|e| unreadable(answer.route, e))?;
                Ok(ContactPage {
                    contacts,
                    total: page.total,
                    next,
                })
            }
            ListingMode::Legacy => {
                let limit = query.page_limit.min(MAX_LEGACY_PAGE);
                let mut req = ApiRequest::new(&routes::LIST_CONTACTS, "/contacts/")
                    .query("locationId", location.as_str())
                    .query("limit", limit.to_string());
                if let Some(after) = &query.after {
                    let (ms, id) =
                        mapping::parse_legacy_cursor(after).map_err(|m| invalid(vec![m]))?;
                    req = req
                        .query("startAfter", ms.to_string())
                        .query("startAfterId", id);
                }
                let answer = self.inner.call(scope, &req).await?;
                let page: ListAnswer = answer.decode()?;
                let meta = page.meta.unwrap_or_default();
                let next = match (&meta.start_after, &meta.start_after_id) {
                    (Some(ms), Some(id)) if !page.contacts.is_empty() && !id.is_empty() => {
                        Some(mapping::legacy_cursor(*ms, id))
                    }
                    _ => None,
                };
                let contacts = mapping::all(page.contacts, "contact", |c| {
                    mapping::contact(c, Inner::custom_fields(scope), location)
                })
                .map_err(|e| unreadable(answer.route, e))?;
                Ok(ContactPage {
                    contacts,
                    total: meta.total.or(page.count),
                    next,
                })
            }
        }
    }

    #[tracing::instrument(skip_all, fields(tenant = %scope.tenant.id))]
    async fn find_duplicate(
        &self,
        scope: &Scope,
        email: Option<String>,
        phone: Option<String>,
    ) -> Result<Option<GhlContactId>, ApiError> {
        self.inner
            .find_duplicate(scope, email.as_deref(), phone.as_deref())
            .await
    }

    #[tracing::instrument(skip_all, fields(tenant = %scope.tenant.id))]
    async fn refresh_token(
        &self,
        scope: &Scope,
    ) -> Result<Option<chrono::DateTime<chrono::Utc>>, ApiError> {
        self.inner.tokens.refresh_now(scope).await
    }

    #[tracing::instrument(skip_all, fields(tenant = %scope.tenant.id))]
    async fn get_location(&self, scope: &Scope) -> Result<GhlLocation, ApiError> {
        let location = &scope.tenant.location_id;
        let req = ApiRequest::new(&routes::GET_LOCATION, format!("/locations/{location}"));
        let answer = self.inner.call(scope, &req).await?;
        let env: dto::LocationEnvelope = answer.decode()?;
        Ok(GhlLocation {
            name: env.location.name.filter(|n| !n.trim().is_empty()),
            timezone: env.location.timezone.filter(|z| !z.trim().is_empty()),
        })
    }

    #[tracing::instrument(skip_all, fields(tenant = %scope.tenant.id, business_id = %id))]
    async fn get_business(
        &self,
        scope: &Scope,
        id: &GhlBusinessId,
    ) -> Result<GhlBusiness, ApiError> {
        let req = ApiRequest::new(&routes::GET_BUSINESS, format!("/businesses/{id}"));
        let answer = self.inner.call(scope, &req).await?;
        let env: BusinessEnvelope = answer.decode()?;
        mapping::business(env.business).map_err(|e| unreadable(answer.route, e))
    }

    #[tracing::instrument(skip_all, fields(tenant = %scope.tenant.id, business_id = %id))]
    async fn contacts_of_business(
        &self,
        scope: &Scope,
        id: &GhlBusinessId,
        skip: u32,
        limit: u32,
    ) -> Result<(Vec<GhlContact>, u64), ApiError> {
        if !(1..=MAX_BUSINESS_PAGE).contains(&limit) {
            return Err(invalid(vec![format!(
                "limit must be between 1 and {MAX_BUSINESS_PAGE}, got {limit}"
            )]));
        }
        let location = &scope.tenant.location_id;
        // `skip` and `limit` are strings in the spec ([C2]); a query string makes no difference.
        let req = ApiRequest::new(
            &routes::BUSINESS_CONTACTS,
            format!("/contacts/business/{id}"),
        )
        .query("locationId", location.as_str())
        .query("skip", skip.to_string())
        .query("limit", limit.to_string());
        let answer = self.inner.call(scope, &req).await?;
        let page: ListAnswer = answer.decode()?;
        let count = page.count.unwrap_or(page.contacts.len() as u64);
        let contacts = mapping::all(page.contacts, "contact", |c| {
            mapping::contact(c, Inner::custom_fields(scope), location)
        })
        .map_err(|e| unreadable(answer.route, e))?;
        Ok((contacts, count))
    }

    #[tracing::instrument(skip_all, fields(tenant = %scope.tenant.id, contact_id = %contact))]
    async fn list_tasks(
        &self,
        scope: &Scope,
        contact: &GhlContactId,
    ) -> Result<Vec<GhlTask>, ApiError> {
        let req = ApiRequest::new(&routes::LIST_TASKS, format!("/contacts/{contact}/tasks"));
        let answer = self.inner.call(scope, &req).await?;
        let list: TasksAnswer = answer.decode()?;
        mapping::all(list.tasks, "task", |t| mapping::task(t, Some(contact)))
            .map_err(|e| unreadable(answer.route, e))
    }

    #[tracing::instrument(skip_all, fields(tenant = %scope.tenant.id, contact_id = %contact, task_id = %id))]
    async fn get_task(
        &self,
        scope: &Scope,
        contact: &GhlContactId,
        id: &GhlTaskId,
    ) -> Result<GhlTask, ApiError> {
        let req = ApiRequest::new(&routes::GET_TASK, format!("/contacts/{contact}/tasks/{id}"));
        let answer = self.inner.call(scope, &req).await?;
        let env: TaskEnvelope = answer.decode()?;
        mapping::task(env.task, Some(contact)).map_err(|e| unreadable(answer.route, e))
    }

    #[tracing::instrument(skip_all, fields(tenant = %scope.tenant.id, contact_id = %contact))]
    async fn create_task(
        &self,
        scope: &Scope,
        contact: &GhlContactId,
        task: &Task,
    ) -> Result<GhlTask, ApiError> {
        let body = mapping::task_create_body(task).map_err(invalid)?;
        let req =
            ApiRequest::new(&routes::CREATE_TASK, format!("/contacts/{contact}/tasks")).json(body);
        let decode = |answer: &Answer| {
            let env: TaskEnvelope = answer.decode()?;
            mapping::task(env.task, Some(contact)).map_err(|e| unreadable(answer.route, e))
        };
        // The same title and due date under the contact: the create went through.
        let lookup = || async {
            let tasks = self.list_tasks(scope, contact).await?;
            Ok(tasks.into_iter().find(|t| {
                t.task.title.as_deref().map(str::trim) == task.title.as_deref().map(str::trim)
                    && t.task.due.map(|d| d.timestamp()) == task.due.map(|d| d.timestamp())
            }))
        };
        self.inner
            .create_resolved(scope, &req, decode, lookup)
            .await
    }

    #[tracing::instrument(skip_all, fields(tenant = %scope.tenant.id, contact_id = %contact, task_id = %id))]
    async fn update_task(
        &self,
        scope: &Scope,
        contact: &GhlContactId,
        id: &GhlTaskId,
        changes: &[FieldChange],
    ) -> Result<GhlTask, ApiError> {
        let body = mapping::task_update_body(changes).map_err(invalid)?;
        if body.is_empty() {
            return self.get_task(scope, contact, id).await;
        }
        let req = ApiRequest::new(
            &routes::UPDATE_TASK,
            format!("/contacts/{contact}/tasks/{id}"),
        )
        .json(body);
        let answer = self.inner.call(scope, &req).await?;
        let env: TaskEnvelope = answer.decode()?;
        mapping::task(env.task, Some(contact)).map_err(|e| unreadable(answer.route, e))
    }

    #[tracing::instrument(skip_all, fields(tenant = %scope.tenant.id, contact_id = %contact, task_id = %id))]
    async fn set_task_completed(
        &self,
        scope: &Scope,
        contact: &GhlContactId,
        id: &GhlTaskId,
        completed: bool,
    ) -> Result<GhlTask, ApiError> {
        let req = ApiRequest::new(
            &routes::COMPLETE_TASK,
            format!("/contacts/{contact}/tasks/{id}/completed"),
        )
        .json(json!({"completed": completed}));
        let answer = self.inner.call(scope, &req).await?;
        let env: TaskEnvelope = answer.decode()?;
        mapping::task(env.task, Some(contact)).map_err(|e| unreadable(answer.route, e))
    }

    #[tracing::instrument(skip_all, fields(tenant = %scope.tenant.id, contact_id = %contact, task_id = %id))]
    async fn delete_task(
        &self,
        scope: &Scope,
        contact: &GhlContactId,
        id: &GhlTaskId,
    ) -> Result<(), ApiError> {
        let req = ApiRequest::new(
            &routes::DELETE_TASK,
            format!("/contacts/{contact}/tasks/{id}"),
        );
        deleted(self.inner.call(scope, &req).await)
    }

    #[tracing::instrument(skip_all, fields(tenant = %scope.tenant.id))]
    async fn search_tasks(
        &self,
        scope: &Scope,
        query: &TaskSearch,
    ) -> Result<Vec<GhlTask>, ApiError> {
        let location = &scope.tenant.location_id;
        // `TaskSearchParamsDto` ([LOC2], API.md §4.3); a zero limit means GHL's default (25).
        let mut body = json!({"skip": query.skip});
        if query.limit > 0 {
            body["limit"] = json!(query.limit);
        }
        if !query.contacts.is_empty() {
            body["contactId"] = Value::from(
                query
                    .contacts
                    .iter()
                    .map(|c| c.as_str())
                    .collect::<Vec<_>>(),
            );
        }
        if let Some(done) = query.completed {
            body["completed"] = json!(done);
        }
        let req = ApiRequest::new(
            &routes::SEARCH_TASKS,
            format!("/locations/{location}/tasks/search"),
        )
        .json(body);
        let answer = self.inner.call(scope, &req).await?;
        let list: TasksAnswer = answer.decode()?;
        mapping::all(list.tasks, "task", |t| mapping::task(t, None))
            .map_err(|e| unreadable(answer.route, e))
    }

    #[tracing::instrument(skip_all, fields(tenant = %scope.tenant.id, contact_id = %contact))]
    async fn list_notes(
        &self,
        scope: &Scope,
        contact: &GhlContactId,
    ) -> Result<Vec<GhlNote>, ApiError> {
        let req = ApiRequest::new(&routes::LIST_NOTES, format!("/contacts/{contact}/notes"));
        let answer = self.inner.call(scope, &req).await?;
        let list: NotesAnswer = answer.decode()?;
        mapping::all(list.notes, "note", |n| mapping::note(n, contact))
            .map_err(|e| unreadable(answer.route, e))
    }

    #[tracing::instrument(skip_all, fields(tenant = %scope.tenant.id, contact_id = %contact, note_id = %id))]
    async fn get_note(
        &self,
        scope: &Scope,
        contact: &GhlContactId,
        id: &GhlNoteId,
    ) -> Result<GhlNote, ApiError> {
        let req = ApiRequest::new(&routes::GET_NOTE, format!("/contacts/{contact}/notes/{id}"));
        let answer = self.inner.call(scope, &req).await?;
        let env: NoteEnvelope = answer.decode()?;
        mapping::note(env.note, contact).map_err(|e| unreadable(answer.route, e))
    }

    #[tracing::instrument(skip_all, fields(tenant = %scope.tenant.id, contact_id = %contact))]
    async fn create_note(
        &self,
        scope: &Scope,
        contact: &GhlContactId,
        note: &Note,
    ) -> Result<GhlNote, ApiError> {
        let body = mapping::note_body(note).map_err(invalid)?;
        let req =
            ApiRequest::new(&routes::CREATE_NOTE, format!("/contacts/{contact}/notes")).json(body);
        let started = Utc::now();
        let decode = |answer: &Answer| {
            let env: NoteEnvelope = answer.decode()?;
            mapping::note(env.note, contact).map_err(|e| unreadable(answer.route, e))
        };
        // The same body and title, written since this create began: it went through.
        let lookup = || async {
            let notes = self.list_notes(scope, contact).await?;
            Ok(notes.into_iter().find(|n| {
                n.note.body.as_deref().map(str::trim) == note.body.as_deref().map(str::trim)
                    && n.note.title.as_deref().filter(|t| !t.is_empty())
                        == note.title.as_deref().filter(|t| !t.is_empty())
                    && n.note
                        .created
                        .is_none_or(|c| c >= started - NOTE_MATCH_SKEW)
            }))
        };
        self.inner
            .create_resolved(scope, &req, decode, lookup)
            .await
    }

    #[tracing::instrument(skip_all, fields(tenant = %scope.tenant.id, contact_id = %contact, note_id = %id))]
    async fn update_note(
        &self,
        scope: &Scope,
        contact: &GhlContactId,
        id: &GhlNoteId,
        note: &Note,
    ) -> Result<GhlNote, ApiError> {
        let body = mapping::note_body(note).map_err(invalid)?;
        let req = ApiRequest::new(
            &routes::UPDATE_NOTE,
            format!("/contacts/{contact}/notes/{id}"),
        )
        .json(body);
        let answer = self.inner.call(scope, &req).await?;
        let env: NoteEnvelope = answer.decode()?;
        mapping::note(env.note, contact).map_err(|e| unreadable(answer.route, e))
    }

    #[tracing::instrument(skip_all, fields(tenant = %scope.tenant.id, contact_id = %contact, note_id = %id))]
    async fn delete_note(
        &self,
        scope: &Scope,
        contact: &GhlContactId,
        id: &GhlNoteId,
    ) -> Result<(), ApiError> {
        let req = ApiRequest::new(
            &routes::DELETE_NOTE,
            format!("/contacts/{contact}/notes/{id}"),
        );
        deleted(self.inner.call(scope, &req).await)
    }

    #[tracing::instrument(skip_all, fields(tenant = %scope.tenant.id, contact_id = %contact))]
    async fn list_appointments(
        &self,
        scope: &Scope,
        contact: &GhlContactId,
    ) -> Result<Vec<GhlAppointment>, ApiError> {
        let req = ApiRequest::new(
            &routes::LIST_APPOINTMENTS,
            format!("/contacts/{contact}/appointments"),
        );
        let answer = self.inner.call(scope, &req).await?;
        let list: EventsAnswer = answer.decode()?;
        mapping::all(list.events, "appointment", |a| {
            mapping::appointment(a, Some(contact))
        })
        .map_err(|e| unreadable(answer.route, e))
    }

    #[tracing::instrument(skip_all, fields(tenant = %scope.tenant.id))]
    async fn list_calendars(&self, scope: &Scope) -> Result<Vec<String>, ApiError> {
        let req = ApiRequest::new(&routes::LIST_CALENDARS, "/calendars/")
            .query("locationId", scope.tenant.location_id.as_str());
        let answer = self.inner.call(scope, &req).await?;
        let list: CalendarsAnswer = answer.decode()?;
        Ok(list
            .calendars
            .into_iter()
            .filter_map(|c| c.id.filter(|id| !id.trim().is_empty()))
            .collect())
    }

    #[tracing::instrument(skip_all, fields(tenant = %scope.tenant.id, calendar = %calendar))]
    async fn calendar_events(
        &self,
        scope: &Scope,
        calendar: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<CalendarRange, ApiError> {
        // A range GHL refuses (400/422: too wide, by a limit the documents do not state) is
        // asked again half as wide, down to a day; the width that then passes is remembered
        // and caps the ranges of the next calls.
        let lock = || {
            self.inner
                .calendar_span
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        };
        let mut span = *lock();
        let mut narrowed = false;
        loop {
            let end = match span {
                Some(s) if to - from > s => from + s,
                _ => to,
            };
            let req = ApiRequest::new(&routes::CALENDAR_EVENTS, "/calendars/events")
                .query("locationId", scope.tenant.location_id.as_str())
                .query("calendarId", calendar)
                .query("startTime", from.timestamp_millis().to_string())
                .query("endTime", end.timestamp_millis().to_string());
            let answer = match self.inner.call(scope, &req).await.map_err(ApiError::from) {
                Ok(a) => a,
                Err(ApiError::Invalid { .. }) if end - from > chrono::Duration::days(1) => {
                    tracing::debug!(%calendar, %from, %end, "GHL refused the range; asking for half of it");
                    span = Some((end - from) / 2);
                    narrowed = true;
                    continue;
                }
                Err(e) => return Err(e),
            };
            if narrowed {
                *lock() = span;
            }
            let list: EventsAnswer = answer.decode()?;
            let mut events = Vec::with_capacity(list.events.len());
            for dto in list.events {
                // Blocked slots and events without a contact are not a contact's appointments.
                if dto
                    .contact_id
                    .as_deref()
                    .is_none_or(|c| c.trim().is_empty())
                {
                    continue;
                }
                events.push(
                    mapping::appointment(dto, None).map_err(|e| unreadable(answer.route, e))?,
                );
            }
            return Ok(CalendarRange {
                events,
                through: end,
            });
        }
    }

    #[tracing::instrument(skip_all, fields(tenant = %scope.tenant.id, contact_id = %contact))]
    async fn add_tags(
        &self,
        scope: &Scope,
        contact: &GhlContactId,
        tags: &[String],
    ) -> Result<Vec<String>, ApiError> {
        if tags.is_empty() {
            return Ok(self.inner.get_contact(scope, contact).await?.contact.tags);
        }
        let req = ApiRequest::new(&routes::ADD_TAGS, format!("/contacts/{contact}/tags"))
            .json(json!({"tags": tags}));
        let answer = self.inner.call(scope, &req).await?;
        Ok(answer.decode::<TagsAnswer>()?.tags)
    }

    #[tracing::instrument(skip_all, fields(tenant = %scope.tenant.id, contact_id = %contact))]
    async fn remove_tags(
        &self,
        scope: &Scope,
        contact: &GhlContactId,
        tags: &[String],
    ) -> Result<Vec<String>, ApiError> {
        if tags.is_empty() {
            return Ok(self.inner.get_contact(scope, contact).await?.contact.tags);
        }
        // DELETE with a JSON body (API.md §4.2).
        let req = ApiRequest::new(&routes::REMOVE_TAGS, format!("/contacts/{contact}/tags"))
            .json(json!({"tags": tags}));
        let answer = self.inner.call(scope, &req).await?;
        Ok(answer.decode::<TagsAnswer>()?.tags)
    }
}
