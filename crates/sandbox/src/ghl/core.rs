//! The simulator's shared state and the operations the control API and the Rust handle offer.
//!
//! One [`Core`] per running simulator. Writes run under the store lock and hand their webhook
//! events to the emitter before the lock is released, so the delivery order is the write
//! order. Seeding writes emit nothing (seeded data "was always there"); `act_*` writes are a
//! person using the GHL UI and emit exactly what the API would.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::auth::{AuthRegistry, BulkGrant, Principal, TokenPair};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::config::{AgencyConfig, LocationSpec, OAuthClientSpec, PitSpec, WriteFaults};
use super::error::{ApiError, ApiResult};
use super::install::{CompanyInstall, Install};
use super::model::{CustomFieldDef, Location};
use super::ratelimit::RateLimiter;
use super::store::{Event, Store};
use super::util::{ghl_id, now_ms};
use super::validate::{
    AppointmentPatch, BusinessPatch, ContactDto, ContactPatch, NotePatch, TaskPatch,
};
use super::webhooks::Webhooks;
use crate::common::{Counters, Faults};

/// Changes to a location's settings (control API `PATCH /_control/locations/{id}`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct LocationUpdate {
    pub name: Option<String>,
    pub allow_duplicate_contact: Option<bool>,
    pub timezone: Option<String>,
    /// An inactive location refuses token refreshes ("Location is not active", [O3]).
    pub active: Option<bool>,
    pub email: Option<String>,
    pub address: Option<String>,
}

/// A custom field definition to add to a location.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct CustomFieldSpec {
    /// Empty = generated.
    pub id: String,
    pub name: String,
    /// `contact.pincode`; empty = `contact.<name>`.
    pub field_key: String,
    /// `TEXT`, `NUMERICAL`, `CHECKBOX`, … (free text here).
    pub data_type: String,
}

/// Decides which completed writes lose their answer ([`WriteFaults`]).
#[derive(Debug)]
pub struct LostAnswers {
    state: Mutex<(WriteFaults, StdRng)>,
}

impl LostAnswers {
    pub fn new(cfg: WriteFaults) -> Self {
        let rng = StdRng::seed_from_u64(cfg.seed);
        Self {
            state: Mutex::new((cfg, rng)),
        }
    }

    pub fn set(&self, cfg: WriteFaults) {
        *self.state.lock().unwrap_or_else(PoisonError::into_inner) =
            (cfg.clone(), StdRng::seed_from_u64(cfg.seed));
    }

    pub fn config(&self) -> WriteFaults {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .0
            .clone()
    }

    /// Whether the answer of this completed write on `route` (`"METHOD /template"`) is lost.
    pub fn lose(&self, route: &str) -> bool {
        let mut guard = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let (cfg, rng) = &mut *guard;
        let p = cfg
            .routes
            .get(route)
            .copied()
            .unwrap_or(cfg.lost_response_rate);
        p > 0.0 && rng.gen_bool(p.min(1.0))
    }
}

pub struct Core {
    store: Mutex<Store>,
    auth: Mutex<AuthRegistry>,
    pub limiter: RateLimiter,
    pub counters: Counters,
    pub faults: Faults,
    pub webhooks: Webhooks,
    pub lost_answers: LostAnswers,
    pub company_id: String,
    agency: Mutex<AgencyConfig>,
    base_url: Mutex<String>,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core")
            .field("company_id", &self.company_id)
            .finish_non_exhaustive()
    }
}

impl Core {
    pub fn new(
        store: Store,
        auth: AuthRegistry,
        limiter: RateLimiter,
        counters: Counters,
        faults: Faults,
        webhooks: Webhooks,
        company_id: String,
    ) -> Self {
        Self {
            store: Mutex::new(store),
            auth: Mutex::new(auth),
            limiter,
            counters,
            faults,
            webhooks,
            lost_answers: LostAnswers::new(WriteFaults::default()),
            company_id,
            agency: Mutex::new(AgencyConfig::default()),
            base_url: Mutex::new(String::new()),
        }
    }

    pub fn store(&self) -> MutexGuard<'_, Store> {
        // A panicking handler must not wedge the simulator for every later test.
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn auth(&self) -> MutexGuard<'_, AuthRegistry> {
        self.auth.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn agency_config(&self) -> AgencyConfig {
        self.agency
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn set_agency_config(&self, cfg: AgencyConfig) {
        *self.agency.lock().unwrap_or_else(PoisonError::into_inner) = cfg;
    }

    pub fn set_base_url(&self, url: String) {
        *self.base_url.lock().unwrap_or_else(PoisonError::into_inner) = url;
    }

    pub fn base_url(&self) -> String {
        self.base_url
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Run a write and emit its events (only when it succeeded: a failed write changed
    /// nothing and announces nothing).
    pub fn write<T>(
        &self,
        f: impl FnOnce(&mut Store, &mut Vec<Event>) -> ApiResult<T>,
    ) -> ApiResult<T> {
        let mut store = self.store();
        let mut events = Vec::new();
        let out = f(&mut store, &mut events)?;
        for e in events {
            self.webhooks.emit(e);
        }
        Ok(out)
    }

    /// Run a write whose events are discarded (seeding).
    fn seed<T>(&self, f: impl FnOnce(&mut Store, &mut Vec<Event>) -> ApiResult<T>) -> ApiResult<T> {
        let mut store = self.store();
        let mut events = Vec::new();
        f(&mut store, &mut events)
    }

    // ------------------------------------------------------------ locations and credentials

    /// Create a location without a webhook (it "was always there"); a company install that
    /// covers future locations still installs its app on it.
    pub fn create_location(&self, spec: &LocationSpec) -> ApiResult<Value> {
        let mut store = self.store();
        let loc = store.create_location(spec, &self.company_id)?;
        install_future_apps(&mut store, &loc, now_ms());
        Ok(loc.to_json())
    }

    pub fn locations(&self) -> Vec<Value> {
        let store = self.store();
        let mut v: Vec<Value> = store.locations.values().map(|l| l.info.to_json()).collect();
        v.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
        v
    }

    pub fn location(&self, id: &str) -> ApiResult<Value> {
        Ok(self.store().location(id)?.info.to_json())
    }

    /// Change a location's settings without a webhook (control API `PATCH`).
    pub fn update_location(&self, id: &str, u: &LocationUpdate) -> ApiResult<Value> {
        let mut store = self.store();
        let loc = store.location_mut(id)?;
        apply_location_update(&mut loc.info, u)?;
        Ok(loc.info.to_json())
    }

    pub fn define_custom_fields(
        &self,
        location_id: &str,
        specs: &[CustomFieldSpec],
    ) -> ApiResult<Vec<Value>> {
        let mut store = self.store();
        let loc = store.location_mut(location_id)?;
        for s in specs {
            let name = if s.name.is_empty() {
                s.field_key.clone()
            } else {
                s.name.clone()
            };
            let def = CustomFieldDef {
                id: if s.id.is_empty() {
                    ghl_id()
                } else {
                    s.id.clone()
                },
                field_key: if s.field_key.is_empty() {
                    format!("contact.{}", name.to_lowercase().replace(' ', "_"))
                } else {
                    s.field_key.clone()
                },
                name,
                data_type: if s.data_type.is_empty() {
                    "TEXT".to_owned()
                } else {
                    s.data_type.clone()
                },
            };
            loc.custom_fields.retain(|d| d.id != def.id);
            loc.custom_fields.push(def);
        }
        Ok(loc
            .custom_fields
            .iter()
            .enumerate()
            .map(|(i, d)| d.to_json(location_id, i))
            .collect())
    }

    pub fn register_client(&self, spec: OAuthClientSpec) -> ApiResult<()> {
        self.auth().register_client(spec)
    }

    fn principal(
        &self,
        location_id: Option<&str>,
        company_id: Option<&str>,
    ) -> ApiResult<(Principal, String)> {
        match (location_id, company_id) {
            (Some(l), _) => {
                let company = self.store().location(l)?.info.company_id.clone();
                Ok((Principal::Location(l.to_owned()), company))
            }
            (None, Some(c)) => Ok((Principal::Company(c.to_owned()), c.to_owned())),
            (None, None) => Err(ApiError::unprocessable(vec![
                "locationId or companyId should not be empty".to_owned(),
            ])),
        }
    }

    /// A location consent installs the client's app on the location (keeping an earlier
    /// `installedAt`); an agency consent installs nothing by itself.
    fn consent_installs(&self, client_id: &str, p: &Principal) -> ApiResult<()> {
        let (app, version) = self.auth().client_app(client_id)?;
        if let Principal::Location(l) = p {
            self.store()
                .installs
                .install(&app, l, Install::new(now_ms(), version));
        }
        Ok(())
    }

    pub fn issue_code(
        &self,
        client_id: &str,
        location_id: Option<&str>,
        company_id: Option<&str>,
        scopes: Option<Vec<String>>,
    ) -> ApiResult<String> {
        let (p, company) = self.principal(location_id, company_id)?;
        self.consent_installs(client_id, &p)?;
        self.auth().issue_code(client_id, p, company, scopes, None)
    }

    pub fn issue_tokens(
        &self,
        client_id: &str,
        location_id: Option<&str>,
        company_id: Option<&str>,
        scopes: Option<Vec<String>>,
    ) -> ApiResult<TokenPair> {
        let (p, company) = self.principal(location_id, company_id)?;
        self.consent_installs(client_id, &p)?;
        self.auth().issue_pair(client_id, p, company, scopes)
    }

    /// A bulk installation of an agency app (API.md §7): the person approved `approved`
    /// locations of `company_id` (and maybe every future one). Installs the client's app on
    /// them now, records the company install, and returns a code whose Company token says
    /// `isBulkInstallation: true`. All or nothing: an unknown client, an unknown location or
    /// one of another company changes nothing.
    pub fn issue_bulk_code(
        &self,
        client_id: &str,
        company_id: &str,
        approved: &[String],
        install_to_future: bool,
        scopes: Option<Vec<String>>,
    ) -> ApiResult<String> {
        let (app, version) = self.auth().client_app(client_id)?;
        let mut store = self.store();
        let approved = company_members(&store, company_id, approved, &self.company_id)?;
        let all: Vec<String> = store
            .company_locations(company_id)
            .iter()
            .map(|l| l.id.clone())
            .collect();
        let bulk = BulkGrant {
            approve_all: !all.is_empty() && all.iter().all(|l| approved.contains(l)),
            approved_locations: approved.clone(),
            install_to_future,
        };
        // Lock order: store, then auth.
        let code = self.auth().issue_code(
            client_id,
            Principal::Company(company_id.to_owned()),
            company_id.to_owned(),
            scopes,
            Some(bulk),
        )?;
        let now = now_ms();
        for l in &approved {
            store
                .installs
                .install(&app, l, Install::new(now, version.clone()));
        }
        store.installs.set_company(
            &app,
            company_id,
            CompanyInstall {
                install_to_future,
                version_id: version,
            },
        );
        Ok(code)
    }

    /// `(appId, versionId)` of an app: a registered client's, else the webhook config's
    /// version (the app the simulator's webhooks speak for).
    fn app_and_version(&self, app_id: Option<&str>) -> (String, String) {
        let (default_app, default_version) = self.webhooks.app();
        match app_id {
            None => (default_app, default_version),
            Some(a) if a == default_app => (default_app, default_version),
            Some(a) => {
                let v = self.auth().app_version(a).unwrap_or(default_version);
                (a.to_owned(), v)
            }
        }
    }

    /// The install records of a company and its locations (control API).
    pub fn installs_json(&self, company_id: &str) -> Value {
        let store = self.store();
        let ids: Vec<&str> = store
            .company_locations(company_id)
            .iter()
            .map(|l| l.id.as_str())
            .collect();
        store.installs.to_json(company_id, &ids)
    }

    pub fn register_pit(&self, spec: &PitSpec) -> ApiResult<String> {
        let companies: std::collections::HashMap<String, String> = self
            .store()
            .locations
            .values()
            .map(|l| (l.info.id.clone(), l.info.company_id.clone()))
            .collect();
        self.auth()
            .register_pit(spec, |l| companies.get(l).cloned())
    }

    // ------------------------------------------------------------ reads

    pub fn contact_json(&self, id: &str) -> ApiResult<Value> {
        Ok(Value::Object(self.store().contact(id)?.to_json()))
    }

    pub fn dump(&self, location_id: &str) -> ApiResult<Value> {
        self.store().dump(location_id)
    }

    // ------------------------------------------------------------ seeding (no webhooks)

    fn items(v: &Value) -> ApiResult<&Vec<Value>> {
        v.as_array()
            .ok_or_else(|| ApiError::unprocessable(vec!["body must be an array".to_owned()]))
    }

    /// Seed contacts (control `ContactDto` fields, so `id`, dates and `businessId` may be set).
    /// All or nothing: the first invalid item aborts before anything is written.
    pub fn seed_contacts(&self, location_id: &str, items: &Value) -> ApiResult<Vec<String>> {
        let patches = Self::items(items)?
            .iter()
            .map(|v| ContactPatch::parse(v, ContactDto::Control))
            .collect::<ApiResult<Vec<_>>>()?;
        self.seed(|s, ev| {
            s.location(location_id)?;
            let mut ids = Vec::with_capacity(patches.len());
            for p in &patches {
                ids.push(s.create_contact(location_id, p, ev)?.id);
                ev.clear();
            }
            Ok(ids)
        })
    }

    pub fn seed_tasks(&self, contact_id: &str, items: &Value) -> ApiResult<Vec<String>> {
        let patches = Self::items(items)?
            .iter()
            .map(|v| TaskPatch::parse(v, true, true))
            .collect::<ApiResult<Vec<_>>>()?;
        self.seed(|s, ev| {
            patches
                .iter()
                .map(|p| s.create_task(contact_id, p, ev).map(|t| t.id))
                .collect()
        })
    }

    pub fn seed_notes(&self, contact_id: &str, items: &Value) -> ApiResult<Vec<String>> {
        let patches = Self::items(items)?
            .iter()
            .map(|v| NotePatch::parse(v, true, true))
            .collect::<ApiResult<Vec<_>>>()?;
        self.seed(|s, ev| {
            patches
                .iter()
                .map(|p| s.create_note(contact_id, p, ev).map(|n| n.id))
                .collect()
        })
    }

    pub fn seed_appointments(&self, items: &Value) -> ApiResult<Vec<String>> {
        let patches = Self::items(items)?
            .iter()
            .map(|v| AppointmentPatch::parse(v, true))
            .collect::<ApiResult<Vec<_>>>()?;
        self.seed(|s, ev| {
            patches
                .iter()
                .map(|p| s.create_appointment(p, ev).map(|a| a.id))
                .collect()
        })
    }

    pub fn seed_businesses(&self, location_id: &str, items: &Value) -> ApiResult<Vec<String>> {
        let patches = Self::items(items)?
            .iter()
            .map(|v| BusinessPatch::parse(v, true, true))
            .collect::<ApiResult<Vec<_>>>()?;
        self.seed(|s, _| {
            patches
                .iter()
                .map(|p| s.create_business(location_id, p).map(|b| b.id))
                .collect()
        })
    }

    // ------------------------------------------------------------ acting as a person

    pub fn act_create_contact(&self, location_id: &str, body: &Value) -> ApiResult<Value> {
        let p = ContactPatch::parse(body, ContactDto::Control)?;
        let c = self.write(|s, ev| s.create_contact(location_id, &p, ev))?;
        Ok(Value::Object(c.to_json()))
    }

    pub fn act_update_contact(&self, contact_id: &str, body: &Value) -> ApiResult<Value> {
        let p = ContactPatch::parse(body, ContactDto::Control)?;
        let c = self.write(|s, ev| s.update_contact(contact_id, &p, ev))?;
        Ok(Value::Object(c.to_json()))
    }

    pub fn act_delete_contact(&self, contact_id: &str) -> ApiResult<()> {
        self.write(|s, ev| s.delete_contact(contact_id, ev))
            .map(|_| ())
    }

    pub fn act_tags(&self, contact_id: &str, tags: &[String], add: bool) -> ApiResult<Vec<String>> {
        self.write(|s, ev| s.change_tags(contact_id, tags, add, ev))
    }

    pub fn act_create_task(&self, contact_id: &str, body: &Value) -> ApiResult<Value> {
        let p = TaskPatch::parse(&with_task_defaults(body), true, true)?;
        Ok(self
            .write(|s, ev| s.create_task(contact_id, &p, ev))?
            .to_json())
    }

    pub fn act_update_task(
        &self,
        contact_id: &str,
        task_id: &str,
        body: &Value,
    ) -> ApiResult<Value> {
        let p = TaskPatch::parse(body, false, false)?;
        Ok(self
            .write(|s, ev| s.update_task(contact_id, task_id, &p, ev))?
            .to_json())
    }

    pub fn act_complete_task(
        &self,
        contact_id: &str,
        task_id: &str,
        completed: bool,
    ) -> ApiResult<Value> {
        let p = TaskPatch {
            completed: Some(completed),
            ..TaskPatch::default()
        };
        Ok(self
            .write(|s, ev| s.update_task(contact_id, task_id, &p, ev))?
            .to_json())
    }

    pub fn act_delete_task(&self, contact_id: &str, task_id: &str) -> ApiResult<()> {
        self.write(|s, ev| s.delete_task(contact_id, task_id, ev))
            .map(|_| ())
    }

    pub fn act_create_note(&self, contact_id: &str, body: &Value) -> ApiResult<Value> {
        let p = NotePatch::parse(body, true, true)?;
        Ok(self
            .write(|s, ev| s.create_note(contact_id, &p, ev))?
            .to_json())
    }

    pub fn act_update_note(
        &self,
        contact_id: &str,
        note_id: &str,
        body: &Value,
    ) -> ApiResult<Value> {
        let p = NotePatch::parse(body, false, false)?;
        Ok(self
            .write(|s, ev| s.update_note(contact_id, note_id, &p, ev))?
            .to_json())
    }

    pub fn act_delete_note(&self, contact_id: &str, note_id: &str) -> ApiResult<()> {
        self.write(|s, ev| s.delete_note(contact_id, note_id, ev))
            .map(|_| ())
    }

    pub fn act_create_appointment(&self, body: &Value) -> ApiResult<Value> {
        let p = AppointmentPatch::parse(body, true)?;
        self.write(|s, ev| {
            let a = s.create_appointment(&p, ev)?;
            let tz = s.location(&a.location_id)?.tz();
            Ok(a.to_calendar_json(tz))
        })
    }

    pub fn act_update_appointment(&self, id: &str, body: &Value) -> ApiResult<Value> {
        let p = AppointmentPatch::parse(body, false)?;
        self.write(|s, ev| {
            let a = s.update_appointment(id, &p, ev)?;
            let tz = s.location(&a.location_id)?.tz();
            Ok(a.to_calendar_json(tz))
        })
    }

    pub fn act_delete_appointment(&self, id: &str) -> ApiResult<()> {
        self.write(|s, ev| s.delete_appointment(id, ev)).map(|_| ())
    }

    /// `INSTALL`, location form (API.md §9.2a): the app (the webhook config's unless given)
    /// is installed on the location; `installedAt` is the event's `timestamp`.
    pub fn act_install(&self, location_id: &str, app_id: Option<&str>) -> ApiResult<()> {
        let (app, version) = self.app_and_version(app_id);
        let mut store = self.store();
        let company = store.location(location_id)?.info.company_id.clone();
        let at = now_ms();
        store
            .installs
            .install(&app, location_id, Install::new(at, version.clone()));
        self.webhooks.emit_at(
            "INSTALL",
            Some(location_id.to_owned()),
            location_install_fields(&app, &version, &company),
            at,
        );
        Ok(())
    }

    /// `UNINSTALL`, location form `{type, appId, locationId}` (API.md §9.2a). With an app id,
    /// that app leaves the location and its OAuth tokens for the location stop working; without
    /// one, every app leaves and every token bound to the location stops working (PITs too).
    pub fn act_uninstall(&self, location_id: &str, app_id: Option<&str>) -> ApiResult<()> {
        let (app, version) = self.app_and_version(app_id);
        let mut store = self.store();
        store.location(location_id)?;
        let at = now_ms();
        match app_id {
            Some(a) => {
                store.installs.uninstall(a, location_id);
                self.auth()
                    .revoke_app(a, &[Principal::Location(location_id.to_owned())]);
            }
            None => {
                store.installs.uninstall_everything(location_id);
                self.auth().revoke_location(location_id);
            }
        }
        let mut f = Map::new();
        f.insert("appId".into(), json!(app));
        f.insert("versionId".into(), json!(version));
        self.webhooks
            .emit_at("UNINSTALL", Some(location_id.to_owned()), f, at);
        Ok(())
    }

    /// `INSTALL`, company form `{type, appId, companyId, planId, trial}` (no `locationId`,
    /// API.md §9.2a): an agency-wide install of `app_id` on `locations` of the company. The
    /// company install keeps its `installToFutureLocations` (set by a bulk consent; `false`
    /// when there was none). All or nothing.
    pub fn act_install_company(
        &self,
        company_id: &str,
        app_id: &str,
        locations: &[String],
    ) -> ApiResult<()> {
        let (app, version) = self.app_and_version(Some(app_id));
        let mut store = self.store();
        let locations = company_members(&store, company_id, locations, &self.company_id)?;
        let at = now_ms();
        for l in &locations {
            store
                .installs
                .install(&app, l, Install::new(at, version.clone()));
        }
        if store.installs.company(&app, company_id).is_none() {
            store.installs.set_company(
                &app,
                company_id,
                CompanyInstall {
                    install_to_future: false,
                    version_id: version.clone(),
                },
            );
        }
        let mut f = Map::new();
        f.insert("appId".into(), json!(app));
        f.insert("versionId".into(), json!(version));
        f.insert("companyId".into(), json!(company_id));
        f.insert("planId".into(), json!(""));
        f.insert("trial".into(), no_trial());
        self.webhooks.emit_at("INSTALL", None, f, at);
        Ok(())
    }

    /// `UNINSTALL`, company form `{type, appId, companyId}` (API.md §9.2a): the app leaves
    /// every location of the company and the company itself; its OAuth tokens for them (the
    /// Company token included) stop working. Other apps and PITs are untouched.
    pub fn act_uninstall_company(&self, company_id: &str, app_id: &str) -> ApiResult<()> {
        let (app, version) = self.app_and_version(Some(app_id));
        let mut store = self.store();
        if !company_known(&store, company_id, &self.company_id) {
            return Err(ApiError::not_found("Company"));
        }
        let ids: Vec<String> = store
            .company_locations(company_id)
            .iter()
            .map(|l| l.id.clone())
            .collect();
        let at = now_ms();
        for l in &ids {
            store.installs.uninstall(&app, l);
        }
        store.installs.remove_company(&app, company_id);
        let mut principals: Vec<Principal> = ids.iter().cloned().map(Principal::Location).collect();
        principals.push(Principal::Company(company_id.to_owned()));
        self.auth().revoke_app(&app, &principals);
        let mut f = Map::new();
        f.insert("appId".into(), json!(app));
        f.insert("versionId".into(), json!(version));
        f.insert("companyId".into(), json!(company_id));
        self.webhooks.emit_at("UNINSTALL", None, f, at);
        Ok(())
    }

    /// A person creates a location in the agency: `LocationCreate` `{type, id, companyId, name,
    /// email, stripeProductId}` (no `locationId`). Apps whose company install covers future
    /// locations are installed on it at the event's `timestamp`; with
    /// `install_webhook_for_future_locations` each also sends a location-form `INSTALL`.
    pub fn act_create_location(&self, spec: &LocationSpec) -> ApiResult<Value> {
        let webhook_installs = self.agency_config().install_webhook_for_future_locations;
        let mut store = self.store();
        let loc = store.create_location(spec, &self.company_id)?;
        let at = now_ms();
        let auto = install_future_apps(&mut store, &loc, at);
        self.webhooks
            .emit_at("LocationCreate", None, loc.to_webhook(), at);
        if webhook_installs {
            for (app, version) in auto {
                self.webhooks.emit_at(
                    "INSTALL",
                    Some(loc.id.clone()),
                    location_install_fields(&app, &version, &loc.company_id),
                    at,
                );
            }
        }
        Ok(loc.to_json())
    }

    /// A person edits a location: `LocationUpdate`, same shape as `LocationCreate`; nothing
    /// is sent when nothing changed.
    pub fn act_update_location(&self, id: &str, u: &LocationUpdate) -> ApiResult<Value> {
        let mut store = self.store();
        let loc = store.location_mut(id)?;
        if apply_location_update(&mut loc.info, u)? {
            self.webhooks
                .emit_at("LocationUpdate", None, loc.info.to_webhook(), now_ms());
        }
        Ok(loc.info.to_json())
    }

    pub fn set_search_lag(&self, lag: Duration) {
        self.store().set_search_lag(lag);
    }
}

/// Apply a settings change; `true` when anything changed. Validation first: a refused
/// change changes nothing.
fn apply_location_update(loc: &mut Location, u: &LocationUpdate) -> ApiResult<bool> {
    if let Some(tz) = &u.timezone
        && tz.parse::<chrono_tz::Tz>().is_err()
    {
        return Err(ApiError::unprocessable(vec![format!(
            "timezone {tz} is not a valid IANA zone"
        )]));
    }
    let before = loc.clone();
    if let Some(tz) = &u.timezone {
        loc.timezone = tz.clone();
    }
    if let Some(n) = &u.name {
        loc.name = n.clone();
    }
    if let Some(a) = u.allow_duplicate_contact {
        loc.allow_duplicate_contact = a;
    }
    if let Some(a) = u.active {
        loc.active = a;
    }
    if let Some(e) = &u.email {
        loc.email = e.clone();
    }
    if let Some(a) = &u.address {
        loc.address = a.clone();
    }
    Ok(*loc != before)
}

/// Install on a new location every app whose company install covers future locations;
/// returns `(appId, versionId)` of each.
fn install_future_apps(
    store: &mut Store,
    loc: &Location,
    at: chrono::DateTime<chrono::Utc>,
) -> Vec<(String, String)> {
    let apps = store.installs.future_apps(&loc.company_id);
    apps.into_iter()
        .filter_map(|(app, c)| {
            store
                .installs
                .install(&app, &loc.id, Install::new(at, c.version_id.clone()))
                .then_some((app, c.version_id))
        })
        .collect()
}

/// A company exists when it is the simulator's default one or a location names it.
fn company_known(store: &Store, company_id: &str, default_company: &str) -> bool {
    company_id == default_company
        || store
            .locations
            .values()
            .any(|l| l.info.company_id == company_id)
}

/// `locations`, de-duplicated in order, after checking each is a location of `company_id`.
fn company_members(
    store: &Store,
    company_id: &str,
    locations: &[String],
    default_company: &str,
) -> ApiResult<Vec<String>> {
    if company_id.is_empty() {
        return Err(ApiError::unprocessable(vec![
            "companyId should not be empty".to_owned(),
        ]));
    }
    if !company_known(store, company_id, default_company) {
        return Err(ApiError::not_found("Company"));
    }
    let mut out: Vec<String> = Vec::with_capacity(locations.len());
    for l in locations {
        if store.location(l)?.info.company_id != company_id {
            return Err(ApiError::bad_request(format!(
                "Location {l} does not belong to company {company_id}"
            )));
        }
        if !out.contains(l) {
            out.push(l.clone());
        }
    }
    Ok(out)
}

fn no_trial() -> Value {
    json!({"onTrial": false, "trialDuration": 0, "trialStartDate": null})
}

/// The location form of `INSTALL` (API.md §9.2 / §9.2a): `appId, locationId, companyId,
/// userId, planId, trial, isWhitelabelCompany, whitelabelDetails, companyName`.
fn location_install_fields(app: &str, version: &str, company_id: &str) -> Map<String, Value> {
    let mut f = Map::new();
    f.insert("appId".into(), json!(app));
    f.insert("versionId".into(), json!(version));
    f.insert("companyId".into(), json!(company_id));
    f.insert("userId".into(), json!("sandboxUser000000001"));
    f.insert("planId".into(), json!(""));
    f.insert("trial".into(), no_trial());
    f.insert("isWhitelabelCompany".into(), json!(false));
    f.insert("whitelabelDetails".into(), json!({}));
    f.insert("companyName".into(), json!("Sandbox Agency"));
    f
}

/// A person creating a task in the UI need not type every required field.
fn with_task_defaults(body: &Value) -> Value {
    let mut v = body.clone();
    if let Some(o) = v.as_object_mut() {
        o.entry("completed").or_insert(json!(false));
        o.entry("dueDate").or_insert_with(|| {
            json!(super::util::iso(
                &(super::util::now_ms() + chrono::Duration::days(1))
            ))
        });
    }
    v
}
