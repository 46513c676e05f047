//! The simulator's in-memory data and every write to it.
//!
//! All writes go through [`Store`] methods, whether they come from the GHL API, the control
//! API or the Rust handle, so the rules hold for every caller: the duplicate-contact rule,
//! `dateUpdated` moving forward on every write, tag normalisation, and the webhook events a
//! write causes (returned to the caller in order, never sent from here). A write either
//! succeeds completely or changes nothing.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use super::config::LocationSpec;
use super::error::{ApiError, ApiResult};
use super::install::Installs;
use super::model::{Appointment, Business, Contact, CustomFieldDef, Location, Note, Task};
use super::util::{ghl_id, iso, next_update, normalise_phone, now_ms, object_id};
use super::validate::{AppointmentPatch, BusinessPatch, ContactPatch, NotePatch, TaskPatch};

/// A webhook event a write caused (API.md §9.2), before the common envelope fields are added.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub kind: &'static str,
    pub location_id: String,
    pub fields: Map<String, Value>,
}

/// What a contact write changed, to pick the webhook events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Changes {
    profile: bool,
    tags: bool,
    dnd: bool,
}

/// A custom field value of the type its definition asks for (API.md §3.3, the spec's
/// `TextField` … `MultiSelectField`): text kinds take a string, `NUMERICAL` and `MONETORY` a
/// number (not a numeric string), `CHECKBOX` and `MULTIPLE_OPTIONS` an array of strings.
/// `null` and an empty value clear the field. Kinds the spec gives no write shape for
/// (`DATE`…) take a string. 422 with one message per refused value, as class-validator does.
fn check_custom_values(patch: &ContactPatch, defs: &[CustomFieldDef]) -> ApiResult<()> {
    let Some(writes) = &patch.custom_fields else {
        return Ok(());
    };
    let mut refused = Vec::new();
    for w in writes {
        let def = defs.iter().find(|d| {
            w.id.as_deref() == Some(d.id.as_str())
                || w.key
                    .as_deref()
                    .is_some_and(|k| d.field_key == k || d.field_key == format!("contact.{k}"))
        });
        let Some(def) = def else { continue };
        let ok = match (def.data_type.as_str(), &w.value) {
            (_, Value::Null) => true,
            ("NUMERICAL" | "MONETORY", v) => v.is_number(),
            ("CHECKBOX" | "MULTIPLE_OPTIONS", Value::Array(items)) => {
                items.iter().all(Value::is_string)
            }
            ("CHECKBOX" | "MULTIPLE_OPTIONS", _) => false,
            ("FILE_UPLOAD", v) => v.is_object(),
            (_, v) => v.is_string(),
        };
        if !ok {
            refused.push(format!(
                "customFields: the value of {} ({}) is not of its type",
                def.id, def.data_type
            ));
        }
    }
    if refused.is_empty() {
        Ok(())
    } else {
        Err(ApiError::unprocessable(refused))
    }
}

impl Changes {
    fn any(self) -> bool {
        self.profile || self.tags || self.dnd
    }
}

/// The search index when it lags behind writes: writes become visible `lag` after they happen.
#[derive(Debug)]
struct LaggedIndex {
    lag: Duration,
    pending: VecDeque<(Instant, String, Option<Contact>)>,
    docs: HashMap<String, Contact>,
}

#[derive(Debug)]
pub struct LocationData {
    pub info: Location,
    pub contacts: HashMap<String, Contact>,
    /// Lower-cased email → contact ids in creation order (duplicates exist only when the
    /// location allows them).
    email_idx: HashMap<String, Vec<String>>,
    /// Normalised phone → contact ids.
    phone_idx: HashMap<String, Vec<String>>,
    /// Contact id → its tasks in creation order.
    pub tasks: HashMap<String, Vec<Task>>,
    pub notes: HashMap<String, Vec<Note>>,
    pub appointments: BTreeMap<String, Appointment>,
    pub businesses: BTreeMap<String, Business>,
    pub custom_fields: Vec<CustomFieldDef>,
    index: Option<LaggedIndex>,
}

impl LocationData {
    fn new(info: Location, lag: Duration) -> Self {
        Self {
            info,
            contacts: HashMap::new(),
            email_idx: HashMap::new(),
            phone_idx: HashMap::new(),
            tasks: HashMap::new(),
            notes: HashMap::new(),
            appointments: BTreeMap::new(),
            businesses: BTreeMap::new(),
            custom_fields: Vec::new(),
            index: (!lag.is_zero()).then(|| LaggedIndex {
                lag,
                pending: VecDeque::new(),
                docs: HashMap::new(),
            }),
        }
    }

    fn index_put(idx: &mut HashMap<String, Vec<String>>, key: Option<String>, id: &str) {
        if let Some(k) = key {
            idx.entry(k).or_default().push(id.to_owned());
        }
    }

    fn index_del(idx: &mut HashMap<String, Vec<String>>, key: Option<String>, id: &str) {
        if let Some(k) = key
            && let Some(ids) = idx.get_mut(&k)
        {
            ids.retain(|x| x != id);
            if ids.is_empty() {
                idx.remove(&k);
            }
        }
    }

    fn phone_key(c: &Contact) -> Option<String> {
        c.get("phone")
            .map(normalise_phone)
            .filter(|p| !p.is_empty())
    }

    /// The oldest other contact with this email (lower-cased) or phone (normalised).
    pub fn find_by_email(&self, email: &str, except: Option<&str>) -> Option<&Contact> {
        self.email_idx
            .get(&email.to_lowercase())?
            .iter()
            .find(|id| Some(id.as_str()) != except)
            .and_then(|id| self.contacts.get(id))
    }

    pub fn find_by_phone(&self, phone: &str, except: Option<&str>) -> Option<&Contact> {
        self.phone_idx
            .get(&normalise_phone(phone))?
            .iter()
            .find(|id| Some(id.as_str()) != except)
            .and_then(|id| self.contacts.get(id))
    }

    /// Queue a contact's new state (or its deletion) for the lagging search index.
    fn reindex(&mut self, id: &str) {
        if let Some(ix) = &mut self.index {
            ix.pending.push_back((
                Instant::now() + ix.lag,
                id.to_owned(),
                self.contacts.get(id).cloned(),
            ));
        }
    }

    /// The contacts `POST /contacts/search` sees now.
    pub fn searchable(&mut self) -> Vec<&Contact> {
        match &mut self.index {
            None => self.contacts.values().collect(),
            Some(ix) => {
                let now = Instant::now();
                while ix.pending.front().is_some_and(|(due, _, _)| *due <= now) {
                    if let Some((_, id, doc)) = ix.pending.pop_front() {
                        match doc {
                            Some(c) => ix.docs.insert(id, c),
                            None => ix.docs.remove(&id),
                        };
                    }
                }
                ix.docs.values().collect()
            }
        }
    }

    fn set_lag(&mut self, lag: Duration) {
        self.index = (!lag.is_zero()).then(|| LaggedIndex {
            lag,
            pending: VecDeque::new(),
            docs: self.contacts.clone(),
        });
    }

    /// Contacts in a stable order: oldest first, ties by id.
    pub fn contacts_by_date_added(&self) -> Vec<&Contact> {
        let mut v: Vec<&Contact> = self.contacts.values().collect();
        v.sort_by(|a, b| a.date_added.cmp(&b.date_added).then(a.id.cmp(&b.id)));
        v
    }

    pub fn tz(&self) -> chrono_tz::Tz {
        self.info.tz()
    }
}

/// Every location's data, plus id → location maps for records addressed by id alone.
#[derive(Debug)]
pub struct Store {
    pub locations: HashMap<String, LocationData>,
    contact_loc: HashMap<String, String>,
    appointment_loc: HashMap<String, String>,
    business_loc: HashMap<String, String>,
    lowercase_tags: bool,
    search_lag: Duration,
    /// `GET /calendars/events`: the widest range served, in days (0 = any).
    calendar_events_max_days: u32,
    /// How a write's `dndSettings` lands (see `GhlConfig::dnd_write`).
    dnd_write: super::config::DndWrite,
    /// Whether search hits carry their own `searchAfter` (see `GhlConfig::search_cursor`).
    search_cursor: super::config::SearchCursor,
    /// Which app is installed on which location, and the company-wide installs.
    pub installs: Installs,
    location_seq: u64,
}

impl Store {
    pub fn new(lowercase_tags: bool, search_lag: Duration) -> Self {
        Self {
            installs: Installs::default(),
            location_seq: 0,
            locations: HashMap::new(),
            contact_loc: HashMap::new(),
            appointment_loc: HashMap::new(),
            business_loc: HashMap::new(),
            lowercase_tags,
            search_lag,
            calendar_events_max_days: 0,
            dnd_write: super::config::DndWrite::default(),
            search_cursor: super::config::SearchCursor::default(),
        }
    }

    pub fn with_search_cursor(mut self, search_cursor: super::config::SearchCursor) -> Self {
        self.search_cursor = search_cursor;
        self
    }

    pub fn search_cursor(&self) -> super::config::SearchCursor {
        self.search_cursor
    }

    pub fn with_dnd_write(mut self, dnd_write: super::config::DndWrite) -> Self {
        self.dnd_write = dnd_write;
        self
    }

    pub fn with_calendar_events_max_days(mut self, days: u32) -> Self {
        self.calendar_events_max_days = days;
        self
    }

    // ---------------------------------------------------------------- locations

    pub fn create_location(
        &mut self,
        spec: &LocationSpec,
        default_company: &str,
    ) -> ApiResult<Location> {
        let id = if spec.id.is_empty() {
            ghl_id()
        } else {
            spec.id.clone()
        };
        if self.locations.contains_key(&id) {
            return Err(ApiError::bad_request(format!(
                "Location {id} already exists"
            )));
        }
        if spec.timezone.parse::<chrono_tz::Tz>().is_err() {
            return Err(ApiError::unprocessable(vec![format!(
                "timezone {} is not a valid IANA zone",
                spec.timezone
            )]));
        }
        let info = Location {
            id: id.clone(),
            name: spec.name.clone(),
            company_id: if spec.company_id.is_empty() {
                default_company.to_owned()
            } else {
                spec.company_id.clone()
            },
            allow_duplicate_contact: spec.allow_duplicate_contact,
            timezone: spec.timezone.clone(),
            active: true,
            email: spec.email.clone(),
            address: spec.address.clone(),
            seq: self.location_seq,
        };
        self.location_seq += 1;
        self.locations
            .insert(id, LocationData::new(info.clone(), self.search_lag));
        Ok(info)
    }

    pub fn location(&self, id: &str) -> ApiResult<&LocationData> {
        self.locations
            .get(id)
            .ok_or_else(|| ApiError::not_found("Location"))
    }

    pub fn location_mut(&mut self, id: &str) -> ApiResult<&mut LocationData> {
        self.locations
            .get_mut(id)
            .ok_or_else(|| ApiError::not_found("Location"))
    }

    /// The locations of a company, in creation order.
    pub fn company_locations(&self, company_id: &str) -> Vec<&Location> {
        let mut v: Vec<&Location> = self
            .locations
            .values()
            .map(|l| &l.info)
            .filter(|l| l.company_id == company_id)
            .collect();
        v.sort_by_key(|l| l.seq);
        v
    }

    pub fn set_search_lag(&mut self, lag: Duration) {
        self.search_lag = lag;
        for l in self.locations.values_mut() {
            l.set_lag(lag);
        }
    }

    // ---------------------------------------------------------------- contacts

    pub fn contact_location(&self, contact_id: &str) -> Option<&str> {
        self.contact_loc.get(contact_id).map(String::as_str)
    }

    pub fn contact(&self, contact_id: &str) -> ApiResult<&Contact> {
        self.contact_location(contact_id)
            .and_then(|l| self.locations.get(l))
            .and_then(|l| l.contacts.get(contact_id))
            .ok_or_else(|| ApiError::not_found("Contact"))
    }

    fn contact_loc_mut(&mut self, contact_id: &str) -> ApiResult<&mut LocationData> {
        let loc = self
            .contact_loc
            .get(contact_id)
            .ok_or_else(|| ApiError::not_found("Contact"))?;
        self.locations
            .get_mut(loc)
            .ok_or_else(|| ApiError::not_found("Contact"))
    }

    fn normalise_tags(&self, tags: &[String]) -> Vec<String> {
        let mut out: Vec<String> = Vec::with_capacity(tags.len());
        for t in tags {
            let t = t.trim();
            if t.is_empty() {
                continue;
            }
            let t = if self.lowercase_tags {
                t.to_lowercase()
            } else {
                t.to_owned()
            };
            if !out.contains(&t) {
                out.push(t);
            }
        }
        out
    }

    /// Refuse a write that would give `except`'s location a second contact with the same email
    /// or phone, when the location does not allow duplicates (API.md §6). Email is checked
    /// first, as GHL's default sequence does.
    fn check_duplicate(
        loc: &LocationData,
        patch: &ContactPatch,
        except: Option<&str>,
    ) -> ApiResult<()> {
        if loc.info.allow_duplicate_contact {
            return Ok(());
        }
        if let Some(Some(email)) = patch.string("email")
            && let Some(other) = loc.find_by_email(email, except)
        {
            return Err(ApiError::duplicate_contact(
                &other.id,
                "email",
                other.name().as_deref(),
            ));
        }
        if let Some(Some(phone)) = patch.string("phone")
            && let Some(other) = loc.find_by_phone(phone, except)
        {
            return Err(ApiError::duplicate_contact(
                &other.id,
                "phone",
                other.name().as_deref(),
            ));
        }
        Ok(())
    }

    /// Apply a validated patch to a contact; reports what changed.
    fn apply(
        c: &mut Contact,
        patch: &ContactPatch,
        defs: &[CustomFieldDef],
        tags: Option<Vec<String>>,
        dnd_write: super::config::DndWrite,
    ) -> Changes {
        let before = c.clone();
        for (field, value) in &patch.strings {
            let value = match (*field, value) {
                ("phone", Some(p)) => Some(normalise_phone(p)).filter(|p| !p.is_empty()),
                (_, v) => v.clone(),
            };
            match value {
                Some(v) => c.fields.insert(field, v),
                None => c.fields.remove(field),
            };
        }
        // `name` alone is split into first and last name; explicit first/last names win.
        if let Some(name) = &patch.name
            && patch.string("firstName").is_none()
            && patch.string("lastName").is_none()
        {
            c.fields.remove("firstName");
            c.fields.remove("lastName");
            if let Some(name) = name {
                let mut parts = name.splitn(2, char::is_whitespace);
                if let Some(first) = parts.next().filter(|s| !s.is_empty()) {
                    c.fields.insert("firstName", first.to_owned());
                }
                if let Some(last) = parts.next().map(str::trim).filter(|s| !s.is_empty()) {
                    c.fields.insert("lastName", last.to_owned());
                }
            }
        }
        if let Some(d) = patch.date_of_birth {
            c.date_of_birth = d;
        }
        if let Some(cfs) = &patch.custom_fields {
            for w in cfs {
                let id = match (&w.id, &w.key) {
                    (Some(id), _) => Some(id.clone()),
                    (None, Some(key)) => defs
                        .iter()
                        .find(|d| d.field_key == *key || d.field_key == format!("contact.{key}"))
                        .map(|d| d.id.clone()),
                    (None, None) => None,
                };
                let Some(id) = id else { continue };
                // With a catalogue, ids outside it are ignored, as GHL ignores unknown fields.
                if !defs.is_empty() && !defs.iter().any(|d| d.id == id) {
                    continue;
                }
                let empty = match &w.value {
                    Value::Null => true,
                    Value::String(s) => s.is_empty(),
                    Value::Array(a) => a.is_empty(),
                    _ => false,
                };
                let pos = c.custom_fields.iter().position(|(k, _)| *k == id);
                match (pos, empty) {
                    (Some(i), true) => {
                        c.custom_fields.remove(i);
                    }
                    (Some(i), false) => c.custom_fields[i].1 = w.value.clone(),
                    (None, false) => c.custom_fields.push((id, w.value.clone())),
                    (None, true) => {}
                }
            }
        }
        if let Some(b) = &patch.business_id {
            c.business_id = b.clone();
        }
        if let Some(t) = &patch.contact_type {
            c.contact_type = t.clone();
        }
        if let Some(a) = &patch.attribution_source {
            c.attribution_source = a.clone();
        }
        if let Some(a) = &patch.last_attribution_source {
            c.last_attribution_source = a.clone();
        }
        if let Some(f) = &patch.followers {
            c.followers = f.clone();
        }
        if let Some(t) = tags {
            c.tags = t;
        }
        if let Some(d) = patch.dnd {
            c.dnd = d;
        }
        match (&patch.dnd_settings, dnd_write) {
            (Some(Some(Value::Object(new))), super::config::DndWrite::Merge) => {
                let mut merged = match &c.dnd_settings {
                    Some(Value::Object(old)) => old.clone(),
                    _ => Map::new(),
                };
                merged.extend(new.clone());
                c.dnd_settings = Some(Value::Object(merged));
            }
            (Some(d), _) => c.dnd_settings = d.clone(),
            (None, _) => {}
        }
        if let Some(d) = &patch.inbound_dnd_settings {
            c.inbound_dnd_settings = d.clone();
        }
        let mut profile_before = before.clone();
        profile_before.tags = c.tags.clone();
        profile_before.dnd = c.dnd;
        profile_before.dnd_settings = c.dnd_settings.clone();
        profile_before.date_updated = c.date_updated;
        Changes {
            profile: profile_before != *c,
            tags: before.tags != c.tags,
            dnd: before.dnd != c.dnd || before.dnd_settings != c.dnd_settings,
        }
    }

    fn contact_events(c: &Contact, created: bool, changes: Changes, ev: &mut Vec<Event>) {
        let event = |kind, dnd| Event {
            kind,
            location_id: c.location_id.clone(),
            fields: c.webhook_fields(dnd),
        };
        if created {
            ev.push(event("ContactCreate", false));
            return;
        }
        if changes.profile {
            ev.push(event("ContactUpdate", false));
        }
        if changes.tags {
            ev.push(event("ContactTagUpdate", false));
        }
        if changes.dnd {
            ev.push(event("ContactDndUpdate", true));
        }
    }

    /// Create a contact in `location_id` (the `POST /contacts/` rules).
    pub fn create_contact(
        &mut self,
        location_id: &str,
        patch: &ContactPatch,
        ev: &mut Vec<Event>,
    ) -> ApiResult<Contact> {
        let tags = patch.tags.as_deref().map(|t| self.normalise_tags(t));
        if let Some(id) = &patch.id
            && self.contact_loc.contains_key(id)
        {
            return Err(ApiError::bad_request(format!(
                "Contact {id} already exists"
            )));
        }
        let dnd_write = self.dnd_write;
        let loc = self.location_mut(location_id)?;
        Self::check_duplicate(loc, patch, None)?;
        let now = now_ms();
        let id = patch.id.clone().unwrap_or_else(ghl_id);
        let mut c = Contact::new(id.clone(), location_id.to_owned(), now);
        check_custom_values(patch, &loc.custom_fields)?;
        Self::apply(&mut c, patch, &loc.custom_fields, tags, dnd_write);
        if let Some(t) = patch.date_added {
            c.date_added = t;
            c.date_updated = t;
        }
        if let Some(t) = patch.date_updated {
            c.date_updated = t;
        }
        LocationData::index_put(&mut loc.email_idx, c.email_lower(), &id);
        LocationData::index_put(&mut loc.phone_idx, LocationData::phone_key(&c), &id);
        loc.contacts.insert(id.clone(), c.clone());
        loc.reindex(&id);
        self.contact_loc.insert(id, location_id.to_owned());
        Self::contact_events(&c, true, Changes::default(), ev);
        Ok(c)
    }

    /// Update a contact (the `PUT /contacts/{id}` rules: `tags` overwrite, duplicates refused).
    pub fn update_contact(
        &mut self,
        contact_id: &str,
        patch: &ContactPatch,
        ev: &mut Vec<Event>,
    ) -> ApiResult<Contact> {
        let tags = patch.tags.as_deref().map(|t| self.normalise_tags(t));
        let dnd_write = self.dnd_write;
        let loc = self.contact_loc_mut(contact_id)?;
        Self::check_duplicate(loc, patch, Some(contact_id))?;
        let defs = loc.custom_fields.clone();
        check_custom_values(patch, &defs)?;
        let c = loc
            .contacts
            .get_mut(contact_id)
            .ok_or_else(|| ApiError::not_found("Contact"))?;
        let old_email = c.email_lower();
        let old_phone = LocationData::phone_key(c);
        let changes = Self::apply(c, patch, &defs, tags, dnd_write);
        // Every successful write moves `dateUpdated`, even one that changed nothing.
        c.date_updated = match patch.date_updated {
            Some(t) => t,
            None => next_update(&c.date_updated),
        };
        let c = c.clone();
        if old_email != c.email_lower() {
            LocationData::index_del(&mut loc.email_idx, old_email, contact_id);
            LocationData::index_put(&mut loc.email_idx, c.email_lower(), contact_id);
        }
        let new_phone = LocationData::phone_key(&c);
        if old_phone != new_phone {
            LocationData::index_del(&mut loc.phone_idx, old_phone, contact_id);
            LocationData::index_put(&mut loc.phone_idx, new_phone, contact_id);
        }
        loc.reindex(contact_id);
        if changes.any() {
            Self::contact_events(&c, false, changes, ev);
        }
        Ok(c)
    }

    /// `POST /contacts/upsert` (API.md §6): match by email, then phone; `createNewIfDuplicate
    /// Allowed` only matters when the location allows duplicates. Returns `(new, contact)`.
    pub fn upsert_contact(
        &mut self,
        location_id: &str,
        patch: &ContactPatch,
        ev: &mut Vec<Event>,
    ) -> ApiResult<(bool, Contact)> {
        let loc = self.location(location_id)?;
        if loc.info.allow_duplicate_contact && patch.create_new_if_duplicate_allowed {
            return self
                .create_contact(location_id, patch, ev)
                .map(|c| (true, c));
        }
        let by_email = patch
            .string("email")
            .and_then(Option::as_deref)
            .and_then(|e| loc.find_by_email(e, None))
            .map(|c| c.id.clone());
        let by_phone = patch
            .string("phone")
            .and_then(Option::as_deref)
            .and_then(|p| loc.find_by_phone(p, None))
            .map(|c| c.id.clone());
        let Some(target) = by_email.clone().or(by_phone.clone()) else {
            return self
                .create_contact(location_id, patch, ev)
                .map(|c| (true, c));
        };
        let mut patch = patch.clone();
        // One contact matched the email and another the phone: the first field of the sequence
        // wins and the phone is silently dropped (#37).
        if by_email.is_some() && by_phone.is_some() && by_email != by_phone {
            patch.drop_string("phone");
        }
        // `gender` on an existing contact is discarded with a 200 (#313).
        patch.drop_string("gender");
        self.update_contact(&target, &patch, ev).map(|c| (false, c))
    }

    pub fn delete_contact(&mut self, contact_id: &str, ev: &mut Vec<Event>) -> ApiResult<Contact> {
        let loc = self.contact_loc_mut(contact_id)?;
        let c = loc
            .contacts
            .remove(contact_id)
            .ok_or_else(|| ApiError::not_found("Contact"))?;
        LocationData::index_del(&mut loc.email_idx, c.email_lower(), contact_id);
        LocationData::index_del(&mut loc.phone_idx, LocationData::phone_key(&c), contact_id);
        // Tasks and notes go with their contact; appointments stay on the calendar.
        loc.tasks.remove(contact_id);
        loc.notes.remove(contact_id);
        loc.reindex(contact_id);
        self.contact_loc.remove(contact_id);
        ev.push(Event {
            kind: "ContactDelete",
            location_id: c.location_id.clone(),
            fields: c.webhook_fields(false),
        });
        Ok(c)
    }

    /// `POST /contacts/{id}/tags` (add) or `DELETE` (remove). Returns the contact's tags after.
    pub fn change_tags(
        &mut self,
        contact_id: &str,
        tags: &[String],
        add: bool,
        ev: &mut Vec<Event>,
    ) -> ApiResult<Vec<String>> {
        let tags = self.normalise_tags(tags);
        let current = self.contact(contact_id)?.tags.clone();
        let next: Vec<String> = if add {
            let mut v = current.clone();
            v.extend(tags.iter().filter(|t| !current.contains(t)).cloned());
            v
        } else {
            current
                .iter()
                .filter(|t| !tags.contains(t))
                .cloned()
                .collect()
        };
        let patch = ContactPatch {
            tags: Some(next),
            ..ContactPatch::default()
        };
        self.update_contact(contact_id, &patch, ev).map(|c| c.tags)
    }

    // ---------------------------------------------------------------- tasks

    pub fn tasks(&self, contact_id: &str) -> ApiResult<Vec<&Task>> {
        let c = self.contact(contact_id)?;
        Ok(self
            .locations
            .get(&c.location_id)
            .and_then(|l| l.tasks.get(contact_id))
            .map(|v| v.iter().collect())
            .unwrap_or_default())
    }

    pub fn task(&self, contact_id: &str, task_id: &str) -> ApiResult<&Task> {
        self.tasks(contact_id)?
            .into_iter()
            .find(|t| t.id == task_id)
            .ok_or_else(|| ApiError::not_found("Task"))
    }

    pub fn create_task(
        &mut self,
        contact_id: &str,
        patch: &TaskPatch,
        ev: &mut Vec<Event>,
    ) -> ApiResult<Task> {
        let location_id = self.contact(contact_id)?.location_id.clone();
        let now = now_ms();
        let task = Task {
            id: patch.id.clone().unwrap_or_else(ghl_id),
            location_id: location_id.clone(),
            contact_id: contact_id.to_owned(),
            title: patch.title.clone().unwrap_or_default(),
            body: patch.body.clone().flatten(),
            assigned_to: patch.assigned_to.clone().flatten(),
            due_date: patch.due_date.unwrap_or(now),
            completed: patch.completed.unwrap_or(false),
            date_added: now,
            date_updated: now,
        };
        let loc = self.location_mut(&location_id)?;
        let list = loc.tasks.entry(contact_id.to_owned()).or_default();
        if list.iter().any(|t| t.id == task.id) {
            return Err(ApiError::bad_request(format!(
                "Task {} already exists",
                task.id
            )));
        }
        list.push(task.clone());
        ev.push(Event {
            kind: "TaskCreate",
            location_id,
            fields: task.webhook_fields(),
        });
        Ok(task)
    }

    pub fn update_task(
        &mut self,
        contact_id: &str,
        task_id: &str,
        patch: &TaskPatch,
        ev: &mut Vec<Event>,
    ) -> ApiResult<Task> {
        let location_id = self.contact(contact_id)?.location_id.clone();
        let loc = self.location_mut(&location_id)?;
        let task = loc
            .tasks
            .get_mut(contact_id)
            .and_then(|v| v.iter_mut().find(|t| t.id == task_id))
            .ok_or_else(|| ApiError::not_found("Task"))?;
        let was_completed = task.completed;
        if let Some(t) = &patch.title {
            task.title = t.clone();
        }
        if let Some(b) = &patch.body {
            task.body = b.clone();
        }
        if let Some(a) = &patch.assigned_to {
            task.assigned_to = a.clone();
        }
        if let Some(d) = patch.due_date {
            task.due_date = d;
        }
        if let Some(c) = patch.completed {
            task.completed = c;
        }
        task.date_updated = next_update(&task.date_updated);
        let task = task.clone();
        // GHL has no TaskUpdate event; completing a task is the only update it announces.
        if task.completed && !was_completed {
            ev.push(Event {
                kind: "TaskComplete",
                location_id,
                fields: task.webhook_fields(),
            });
        }
        Ok(task)
    }

    pub fn delete_task(
        &mut self,
        contact_id: &str,
        task_id: &str,
        ev: &mut Vec<Event>,
    ) -> ApiResult<Task> {
        let location_id = self.contact(contact_id)?.location_id.clone();
        let loc = self.location_mut(&location_id)?;
        let list = loc
            .tasks
            .get_mut(contact_id)
            .ok_or_else(|| ApiError::not_found("Task"))?;
        let pos = list
            .iter()
            .position(|t| t.id == task_id)
            .ok_or_else(|| ApiError::not_found("Task"))?;
        let task = list.remove(pos);
        ev.push(Event {
            kind: "TaskDelete",
            location_id,
            fields: task.webhook_fields(),
        });
        Ok(task)
    }

    // ---------------------------------------------------------------- notes

    pub fn notes(&self, contact_id: &str) -> ApiResult<Vec<&Note>> {
        let c = self.contact(contact_id)?;
        Ok(self
            .locations
            .get(&c.location_id)
            .and_then(|l| l.notes.get(contact_id))
            .map(|v| v.iter().collect())
            .unwrap_or_default())
    }

    pub fn note(&self, contact_id: &str, note_id: &str) -> ApiResult<&Note> {
        self.notes(contact_id)?
            .into_iter()
            .find(|n| n.id == note_id)
            .ok_or_else(|| ApiError::not_found("Note"))
    }

    pub fn create_note(
        &mut self,
        contact_id: &str,
        patch: &NotePatch,
        ev: &mut Vec<Event>,
    ) -> ApiResult<Note> {
        let location_id = self.contact(contact_id)?.location_id.clone();
        let now = now_ms();
        let note = Note {
            id: patch.id.clone().unwrap_or_else(ghl_id),
            location_id: location_id.clone(),
            contact_id: contact_id.to_owned(),
            body: patch.body.clone().unwrap_or_default(),
            user_id: patch.user_id.clone().flatten(),
            title: patch.title.clone().flatten(),
            color: patch.color.clone().flatten(),
            pinned: patch.pinned.unwrap_or(false),
            date_added: now,
            date_updated: now,
        };
        let loc = self.location_mut(&location_id)?;
        let list = loc.notes.entry(contact_id.to_owned()).or_default();
        if list.iter().any(|n| n.id == note.id) {
            return Err(ApiError::bad_request(format!(
                "Note {} already exists",
                note.id
            )));
        }
        list.push(note.clone());
        ev.push(Event {
            kind: "NoteCreate",
            location_id,
            fields: note.webhook_fields(),
        });
        Ok(note)
    }

    pub fn update_note(
        &mut self,
        contact_id: &str,
        note_id: &str,
        patch: &NotePatch,
        ev: &mut Vec<Event>,
    ) -> ApiResult<Note> {
        let location_id = self.contact(contact_id)?.location_id.clone();
        let loc = self.location_mut(&location_id)?;
        let note = loc
            .notes
            .get_mut(contact_id)
            .and_then(|v| v.iter_mut().find(|n| n.id == note_id))
            .ok_or_else(|| ApiError::not_found("Note"))?;
        if let Some(b) = &patch.body {
            note.body = b.clone();
        }
        if let Some(u) = &patch.user_id {
            note.user_id = u.clone();
        }
        if let Some(t) = &patch.title {
            note.title = t.clone();
        }
        if let Some(c) = &patch.color {
            note.color = c.clone();
        }
        if let Some(p) = patch.pinned {
            note.pinned = p;
        }
        note.date_updated = next_update(&note.date_updated);
        let note = note.clone();
        ev.push(Event {
            kind: "NoteUpdate",
            location_id,
            fields: note.webhook_fields(),
        });
        Ok(note)
    }

    pub fn delete_note(
        &mut self,
        contact_id: &str,
        note_id: &str,
        ev: &mut Vec<Event>,
    ) -> ApiResult<Note> {
        let location_id = self.contact(contact_id)?.location_id.clone();
        let loc = self.location_mut(&location_id)?;
        let list = loc
            .notes
            .get_mut(contact_id)
            .ok_or_else(|| ApiError::not_found("Note"))?;
        let pos = list
            .iter()
            .position(|n| n.id == note_id)
            .ok_or_else(|| ApiError::not_found("Note"))?;
        let note = list.remove(pos);
        ev.push(Event {
            kind: "NoteDelete",
            location_id,
            fields: note.webhook_fields(),
        });
        Ok(note)
    }

    // ---------------------------------------------------------------- appointments

    pub fn appointment(&self, id: &str) -> ApiResult<(&Appointment, chrono_tz::Tz)> {
        let loc = self
            .appointment_loc
            .get(id)
            .and_then(|l| self.locations.get(l))
            .ok_or_else(|| ApiError::not_found("Appointment"))?;
        let a = loc
            .appointments
            .get(id)
            .ok_or_else(|| ApiError::not_found("Appointment"))?;
        Ok((a, loc.tz()))
    }

    /// A contact's appointments, by start time.
    pub fn contact_appointments(
        &self,
        contact_id: &str,
    ) -> ApiResult<(Vec<&Appointment>, chrono_tz::Tz)> {
        let c = self.contact(contact_id)?;
        let loc = self.location(&c.location_id)?;
        let mut v: Vec<&Appointment> = loc
            .appointments
            .values()
            .filter(|a| a.contact_id == contact_id)
            .collect();
        v.sort_by(|a, b| a.start_time.cmp(&b.start_time).then(a.id.cmp(&b.id)));
        Ok((v, loc.tz()))
    }

    /// The location's calendars: every calendar an appointment was booked in, by id.
    pub fn calendars(&self, location_id: &str) -> ApiResult<Vec<String>> {
        let loc = self.location(location_id)?;
        let ids: std::collections::BTreeSet<&String> =
            loc.appointments.values().map(|a| &a.calendar_id).collect();
        Ok(ids.into_iter().cloned().collect())
    }

    /// `GET /calendars/events`: one calendar's appointments starting within `from..=to`.
    pub fn calendar_events(
        &self,
        location_id: &str,
        calendar_id: &str,
        from: chrono::DateTime<chrono::Utc>,
        to: chrono::DateTime<chrono::Utc>,
    ) -> ApiResult<(Vec<&Appointment>, chrono_tz::Tz)> {
        if to < from {
            return Err(ApiError::unprocessable(vec![
                "endTime must be after startTime".to_owned(),
            ]));
        }
        let max = self.calendar_events_max_days;
        if max > 0 && to - from > chrono::Duration::days(i64::from(max)) {
            return Err(ApiError::unprocessable(vec![format!(
                "the range between startTime and endTime must not exceed {max} days"
            )]));
        }
        let loc = self.location(location_id)?;
        let mut v: Vec<&Appointment> = loc
            .appointments
            .values()
            .filter(|a| a.calendar_id == calendar_id && a.start_time >= from && a.start_time <= to)
            .collect();
        v.sort_by(|a, b| a.start_time.cmp(&b.start_time).then(a.id.cmp(&b.id)));
        Ok((v, loc.tz()))
    }

    pub fn create_appointment(
        &mut self,
        patch: &AppointmentPatch,
        ev: &mut Vec<Event>,
    ) -> ApiResult<Appointment> {
        let contact_id = patch.contact_id.clone().unwrap_or_default();
        let location_id = self.contact(&contact_id)?.location_id.clone();
        let id = patch.id.clone().unwrap_or_else(ghl_id);
        if self.appointment_loc.contains_key(&id) {
            return Err(ApiError::bad_request(format!(
                "Appointment {id} already exists"
            )));
        }
        let now = now_ms();
        let start = patch.start_time.unwrap_or(now);
        let a = Appointment {
            id: id.clone(),
            location_id: location_id.clone(),
            contact_id,
            calendar_id: patch
                .calendar_id
                .clone()
                .unwrap_or_else(|| "sandboxCalendar00001".to_owned()),
            group_id: patch.group_id.clone().flatten(),
            title: patch
                .title
                .clone()
                .unwrap_or_else(|| "Appointment".to_owned()),
            status: patch.status.clone().unwrap_or_else(|| "booked".to_owned()),
            assigned_user_id: patch.assigned_user_id.clone().flatten(),
            users: patch.users.clone().unwrap_or_default(),
            notes: patch.notes.clone().flatten(),
            description: patch.description.clone().flatten(),
            address: patch.address.clone().flatten(),
            source: patch.source.clone().flatten(),
            start_time: start,
            end_time: patch
                .end_time
                .unwrap_or(start + chrono::Duration::minutes(30)),
            date_added: now,
            date_updated: now,
        };
        let loc = self.location_mut(&location_id)?;
        let tz = loc.tz();
        loc.appointments.insert(id.clone(), a.clone());
        self.appointment_loc.insert(id, location_id.clone());
        ev.push(Event {
            kind: "AppointmentCreate",
            location_id,
            fields: a.webhook_fields(tz),
        });
        Ok(a)
    }

    pub fn update_appointment(
        &mut self,
        id: &str,
        patch: &AppointmentPatch,
        ev: &mut Vec<Event>,
    ) -> ApiResult<Appointment> {
        if let Some(contact) = &patch.contact_id {
            self.contact(contact)?;
        }
        let location_id = self
            .appointment_loc
            .get(id)
            .cloned()
            .ok_or_else(|| ApiError::not_found("Appointment"))?;
        let loc = self.location_mut(&location_id)?;
        let tz = loc.tz();
        let a = loc
            .appointments
            .get_mut(id)
            .ok_or_else(|| ApiError::not_found("Appointment"))?;
        macro_rules! set {
            ($field:ident) => {
                if let Some(v) = &patch.$field {
                    a.$field = v.clone();
                }
            };
        }
        set!(contact_id);
        set!(calendar_id);
        set!(group_id);
        set!(title);
        set!(status);
        set!(assigned_user_id);
        set!(users);
        set!(notes);
        set!(description);
        set!(address);
        set!(source);
        set!(start_time);
        set!(end_time);
        a.date_updated = next_update(&a.date_updated);
        let a = a.clone();
        ev.push(Event {
            kind: "AppointmentUpdate",
            location_id,
            fields: a.webhook_fields(tz),
        });
        Ok(a)
    }

    pub fn delete_appointment(&mut self, id: &str, ev: &mut Vec<Event>) -> ApiResult<Appointment> {
        let location_id = self
            .appointment_loc
            .remove(id)
            .ok_or_else(|| ApiError::not_found("Appointment"))?;
        let loc = self.location_mut(&location_id)?;
        let tz = loc.tz();
        let a = loc
            .appointments
            .remove(id)
            .ok_or_else(|| ApiError::not_found("Appointment"))?;
        ev.push(Event {
            kind: "AppointmentDelete",
            location_id,
            fields: a.webhook_fields(tz),
        });
        Ok(a)
    }

    // ---------------------------------------------------------------- businesses

    pub fn business(&self, id: &str) -> ApiResult<&Business> {
        self.business_loc
            .get(id)
            .and_then(|l| self.locations.get(l))
            .and_then(|l| l.businesses.get(id))
            .ok_or_else(|| ApiError::not_found("Business"))
    }

    /// Businesses emit no webhooks (#330).
    pub fn create_business(
        &mut self,
        location_id: &str,
        patch: &BusinessPatch,
    ) -> ApiResult<Business> {
        let id = patch.id.clone().unwrap_or_else(object_id);
        if self.business_loc.contains_key(&id) {
            return Err(ApiError::bad_request(format!(
                "Business {id} already exists"
            )));
        }
        let loc = self.location_mut(location_id)?;
        let now = now_ms();
        let mut b = Business {
            id: id.clone(),
            location_id: location_id.to_owned(),
            name: patch.name.clone().unwrap_or_default(),
            fields: BTreeMap::new(),
            created_at: now,
            updated_at: now,
        };
        for (k, v) in &patch.strings {
            if let Some(v) = v {
                b.fields.insert(k, v.clone());
            }
        }
        loc.businesses.insert(id.clone(), b.clone());
        self.business_loc.insert(id, location_id.to_owned());
        Ok(b)
    }

    pub fn update_business(&mut self, id: &str, patch: &BusinessPatch) -> ApiResult<Business> {
        let location_id = self
            .business_loc
            .get(id)
            .cloned()
            .ok_or_else(|| ApiError::not_found("Business"))?;
        let loc = self.location_mut(&location_id)?;
        let b = loc
            .businesses
            .get_mut(id)
            .ok_or_else(|| ApiError::not_found("Business"))?;
        if let Some(n) = &patch.name {
            b.name = n.clone();
        }
        for (k, v) in &patch.strings {
            match v {
                Some(v) => b.fields.insert(k, v.clone()),
                None => b.fields.remove(k),
            };
        }
        b.updated_at = next_update(&b.updated_at);
        Ok(b.clone())
    }

    /// Deleting a business unlinks its contacts (their `businessId` is cleared).
    pub fn delete_business(&mut self, id: &str) -> ApiResult<Business> {
        let location_id = self
            .business_loc
            .remove(id)
            .ok_or_else(|| ApiError::not_found("Business"))?;
        let loc = self.location_mut(&location_id)?;
        let b = loc
            .businesses
            .remove(id)
            .ok_or_else(|| ApiError::not_found("Business"))?;
        let linked: Vec<String> = loc
            .contacts
            .values()
            .filter(|c| c.business_id.as_deref() == Some(id))
            .map(|c| c.id.clone())
            .collect();
        for cid in linked {
            if let Some(c) = loc.contacts.get_mut(&cid) {
                c.business_id = None;
                c.date_updated = next_update(&c.date_updated);
            }
            loc.reindex(&cid);
        }
        Ok(b)
    }

    // ---------------------------------------------------------------- dump

    /// Everything one location holds, in stable orders (contacts, tasks and notes by id), for
    /// field-by-field comparisons.
    pub fn dump(&self, location_id: &str) -> ApiResult<Value> {
        let loc = self.location(location_id)?;
        let tz = loc.tz();
        let mut contacts: Vec<&Contact> = loc.contacts.values().collect();
        contacts.sort_by(|a, b| a.id.cmp(&b.id));
        let mut tasks: Vec<&Task> = loc.tasks.values().flatten().collect();
        tasks.sort_by(|a, b| a.id.cmp(&b.id));
        let mut notes: Vec<&Note> = loc.notes.values().flatten().collect();
        notes.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(json!({
            "location": loc.info.to_json(),
            "customFields": loc.custom_fields.iter().enumerate()
                .map(|(i, d)| d.to_json(location_id, i)).collect::<Vec<_>>(),
            "contacts": contacts.iter().map(|c| Value::Object(c.to_json())).collect::<Vec<_>>(),
            "tasks": tasks.iter().map(|t| t.to_search_json()).collect::<Vec<_>>(),
            "notes": notes.iter().map(|n| {
                let mut v = n.to_json();
                v["dateUpdated"] = json!(iso(&n.date_updated));
                v
            }).collect::<Vec<_>>(),
            "appointments": loc.appointments.values()
                .map(|a| a.to_calendar_json(tz)).collect::<Vec<_>>(),
            "businesses": loc.businesses.values().map(Business::to_json).collect::<Vec<_>>(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ghl::validate::ContactDto;

    fn store_with_location(allow_dup: bool) -> (Store, String) {
        let mut s = Store::new(true, Duration::ZERO);
        let loc = s
            .create_location(
                &LocationSpec {
                    id: "loc1".into(),
                    allow_duplicate_contact: allow_dup,
                    ..LocationSpec::default()
                },
                "co",
            )
            .expect("new location");
        (s, loc.id)
    }

    fn patch(v: Value) -> ContactPatch {
        ContactPatch::parse(&v, ContactDto::Control).expect("valid patch")
    }

    #[test]
    fn duplicate_email_or_phone_is_refused_with_the_existing_id() {
        let (mut s, loc) = store_with_location(false);
        let mut ev = Vec::new();
        let a = s
            .create_contact(
                &loc,
                &patch(json!({"email": "A@x.io", "phone": "+1 555-0100"})),
                &mut ev,
            )
            .expect("first");
        let e = s
            .create_contact(&loc, &patch(json!({"email": "a@X.io"})), &mut ev)
            .expect_err("same email");
        assert_eq!(e.body["meta"]["contactId"], json!(a.id));
        assert_eq!(e.body["meta"]["matchingField"], "email");
        let e = s
            .create_contact(&loc, &patch(json!({"phone": "+15550100"})), &mut ev)
            .expect_err("same phone");
        assert_eq!(e.body["meta"]["matchingField"], "phone");
        assert_eq!(ev.len(), 1, "refused writes emit nothing");
        assert_eq!(s.location(&loc).expect("exists").contacts.len(), 1);

        let (mut s, loc) = store_with_location(true);
        s.create_contact(&loc, &patch(json!({"email": "a@x.io"})), &mut ev)
            .expect("first");
        s.create_contact(&loc, &patch(json!({"email": "a@x.io"})), &mut ev)
            .expect("duplicates allowed");
    }

    #[test]
    fn update_events_follow_what_changed() {
        let (mut s, loc) = store_with_location(false);
        let mut ev = Vec::new();
        let c = s
            .create_contact(
                &loc,
                &patch(json!({"firstName": "A", "tags": ["One"]})),
                &mut ev,
            )
            .expect("created");
        assert_eq!(c.tags, vec!["one"], "tags are lower-cased");
        ev.clear();
        let u = s
            .update_contact(&c.id, &patch(json!({"tags": ["one", "two"]})), &mut ev)
            .expect("updated");
        assert!(u.date_updated > c.date_updated);
        assert_eq!(
            ev.iter().map(|e| e.kind).collect::<Vec<_>>(),
            ["ContactTagUpdate"]
        );
        ev.clear();
        s.update_contact(
            &c.id,
            &patch(json!({"city": "Lisbon", "dnd": true})),
            &mut ev,
        )
        .expect("updated");
        assert_eq!(
            ev.iter().map(|e| e.kind).collect::<Vec<_>>(),
            ["ContactUpdate", "ContactDndUpdate"]
        );
        ev.clear();
        let again = s
            .update_contact(&c.id, &patch(json!({"city": "Lisbon"})), &mut ev)
            .expect("no-op update");
        assert!(
            ev.is_empty(),
            "a write that changes nothing announces nothing"
        );
        assert!(again.date_updated > u.date_updated);
    }

    #[test]
    fn upsert_prefers_email_and_drops_the_conflicting_phone() {
        let (mut s, loc) = store_with_location(false);
        let mut ev = Vec::new();
        let by_phone = s
            .create_contact(&loc, &patch(json!({"phone": "+15550101"})), &mut ev)
            .expect("phone contact");
        let by_email = s
            .create_contact(&loc, &patch(json!({"email": "e@x.io"})), &mut ev)
            .expect("email contact");
        let (new, c) = s
            .upsert_contact(
                &loc,
                &patch(json!({"email": "e@x.io", "phone": "+15550101", "firstName": "E"})),
                &mut ev,
            )
            .expect("upsert");
        assert!(!new);
        assert_eq!(c.id, by_email.id);
        assert_eq!(c.get("phone"), None, "phone silently dropped (#37)");
        assert_eq!(
            s.contact(&by_phone.id).expect("kept").get("phone"),
            Some("+15550101")
        );
        let (new, _) = s
            .upsert_contact(&loc, &patch(json!({"email": "new@x.io"})), &mut ev)
            .expect("upsert creates");
        assert!(new);
    }

    #[test]
    fn lagging_index_shows_writes_late() {
        let (mut s, loc) = store_with_location(false);
        s.set_search_lag(Duration::from_millis(50));
        let mut ev = Vec::new();
        s.create_contact(&loc, &patch(json!({"firstName": "Late"})), &mut ev)
            .expect("created");
        let l = s.location_mut(&loc).expect("exists");
        assert_eq!(l.searchable().len(), 0);
        let deadline = Instant::now() + Duration::from_secs(5);
        while l.searchable().is_empty() {
            assert!(Instant::now() < deadline, "index never caught up");
            std::thread::yield_now();
        }
    }

    #[test]
    fn deleting_a_contact_removes_its_tasks_and_notes() {
        let (mut s, loc) = store_with_location(false);
        let mut ev = Vec::new();
        let c = s
            .create_contact(&loc, &patch(json!({"firstName": "A"})), &mut ev)
            .expect("created");
        let t = TaskPatch::parse(
            &json!({"title": "t", "dueDate": "2030-01-01T00:00:00Z", "completed": false}),
            true,
            false,
        )
        .expect("valid");
        s.create_task(&c.id, &t, &mut ev).expect("task");
        s.delete_contact(&c.id, &mut ev).expect("deleted");
        assert!(s.contact(&c.id).is_err());
        assert!(s.location(&loc).expect("exists").tasks.is_empty());
        assert_eq!(ev.last().map(|e| e.kind), Some("ContactDelete"));
    }
}
