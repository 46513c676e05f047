//! The records the simulator keeps, and the JSON views GHL serves of them.
//!
//! Each record has one view per schema it appears in ([C2] `GetContectByIdSchema`,
//! `CreateContactSchema`, `TaskSchema`, `GetNoteSchema`, `GetEventSchema`, [CAL2]
//! `CalendarEventDTO`, [B2] `BusinessDto`, webhook payloads of API.md §9.2). Unset optional
//! fields are omitted rather than sent as `null`: the specs type them as plain strings.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use serde_json::{Map, Value, json};

use super::util::iso;

/// The plain string fields of a contact, in their GHL spelling. `name` is derived from them.
pub const CONTACT_STRING_FIELDS: &[&str] = &[
    "firstName",
    "lastName",
    "email",
    "phone",
    "companyName",
    "address1",
    "city",
    "state",
    "postalCode",
    "country",
    "website",
    "timezone",
    "source",
    "assignedTo",
    "gender",
];

/// A location (sub-account).
#[derive(Debug, Clone, PartialEq)]
pub struct Location {
    pub id: String,
    pub name: String,
    pub company_id: String,
    pub allow_duplicate_contact: bool,
    pub timezone: String,
    /// An inactive location refuses token refreshes with "Location is not active" ([O3]).
    pub active: bool,
    pub email: String,
    pub address: String,
    /// Creation order (lists of a company's locations use it).
    pub seq: u64,
}

impl Location {
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "name": self.name,
            "companyId": self.company_id,
            "allowDuplicateContact": self.allow_duplicate_contact,
            "timezone": self.timezone,
            "active": self.active,
            "email": self.email,
            "address": self.address,
        })
    }

    /// `LocationCreate` / `LocationUpdate` fields (API.md §9.2a): `id` is the location's own
    /// id and there is no `locationId`. A sandbox location sells no SaaS product, so
    /// `stripeProductId` is `null`.
    pub fn to_webhook(&self) -> Map<String, Value> {
        let mut f = Map::new();
        f.insert("id".into(), json!(self.id));
        f.insert("companyId".into(), json!(self.company_id));
        f.insert("name".into(), json!(self.name));
        f.insert("email".into(), json!(self.email));
        f.insert("stripeProductId".into(), Value::Null);
        f
    }

    pub fn tz(&self) -> chrono_tz::Tz {
        self.timezone.parse().unwrap_or(chrono_tz::UTC)
    }
}

/// A custom field definition of a location ([LOC2] `CustomFieldSchema`).
#[derive(Debug, Clone, PartialEq)]
pub struct CustomFieldDef {
    pub id: String,
    pub name: String,
    /// `contact.pincode`
    pub field_key: String,
    pub data_type: String,
}

impl CustomFieldDef {
    pub fn to_json(&self, location_id: &str, position: usize) -> Value {
        json!({
            "id": self.id,
            "name": self.name,
            "fieldKey": self.field_key,
            "dataType": self.data_type,
            "position": position,
            "locationId": location_id,
            "model": "contact",
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Contact {
    pub id: String,
    pub location_id: String,
    /// Keys from [`CONTACT_STRING_FIELDS`]; an absent key is an unset field.
    pub fields: BTreeMap<&'static str, String>,
    pub dnd: bool,
    pub dnd_settings: Option<Value>,
    pub inbound_dnd_settings: Option<Value>,
    pub tags: Vec<String>,
    /// Read shape `[{id, value}]`; `value` is kept as JSON (API.md §3.1).
    pub custom_fields: Vec<(String, Value)>,
    pub date_of_birth: Option<NaiveDate>,
    pub business_id: Option<String>,
    pub contact_type: String,
    pub attribution_source: Option<Value>,
    pub last_attribution_source: Option<Value>,
    pub followers: Vec<String>,
    pub date_added: DateTime<Utc>,
    pub date_updated: DateTime<Utc>,
}

impl Contact {
    pub fn new(id: String, location_id: String, now: DateTime<Utc>) -> Self {
        Self {
            id,
            location_id,
            fields: BTreeMap::new(),
            dnd: false,
            dnd_settings: None,
            inbound_dnd_settings: None,
            tags: Vec::new(),
            custom_fields: Vec::new(),
            date_of_birth: None,
            business_id: None,
            contact_type: "lead".to_owned(),
            attribution_source: None,
            last_attribution_source: None,
            followers: Vec::new(),
            date_added: now,
            date_updated: now,
        }
    }

    pub fn get(&self, field: &str) -> Option<&str> {
        self.fields.get(field).map(String::as_str)
    }

    /// `firstName lastName`, as GHL derives `name`.
    pub fn name(&self) -> Option<String> {
        let parts: Vec<&str> = [self.get("firstName"), self.get("lastName")]
            .into_iter()
            .flatten()
            .collect();
        (!parts.is_empty()).then(|| parts.join(" "))
    }

    pub fn email_lower(&self) -> Option<String> {
        self.get("email").map(str::to_lowercase)
    }

    fn put_str(m: &mut Map<String, Value>, key: &str, v: Option<&str>) {
        if let Some(v) = v {
            m.insert(key.to_owned(), Value::String(v.to_owned()));
        }
    }

    fn custom_fields_json(&self) -> Value {
        Value::Array(
            self.custom_fields
                .iter()
                .map(|(id, value)| json!({"id": id, "value": value}))
                .collect(),
        )
    }

    /// `GetContectByIdSchema` ([C2]): the full record of `GET /contacts/{id}`, also used for
    /// search results, update and upsert answers.
    pub fn to_json(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("id".into(), json!(self.id));
        m.insert("locationId".into(), json!(self.location_id));
        Self::put_str(&mut m, "name", self.name().as_deref());
        for key in CONTACT_STRING_FIELDS {
            Self::put_str(&mut m, key, self.get(key));
        }
        Self::put_str(&mut m, "emailLowerCase", self.email_lower().as_deref());
        Self::put_str(
            &mut m,
            "firstNameLowerCase",
            self.get("firstName").map(str::to_lowercase).as_deref(),
        );
        Self::put_str(
            &mut m,
            "lastNameLowerCase",
            self.get("lastName").map(str::to_lowercase).as_deref(),
        );
        Self::put_str(
            &mut m,
            "fullNameLowerCase",
            self.name().map(|n| n.to_lowercase()).as_deref(),
        );
        m.insert("dnd".into(), json!(self.dnd));
        if let Some(d) = &self.dnd_settings {
            m.insert("dndSettings".into(), d.clone());
        }
        if let Some(d) = &self.inbound_dnd_settings {
            m.insert("inboundDndSettings".into(), d.clone());
        }
        m.insert("type".into(), json!(self.contact_type));
        m.insert("tags".into(), json!(self.tags));
        if let Some(d) = self.date_of_birth {
            m.insert("dateOfBirth".into(), json!(birth_iso(d)));
        }
        m.insert("dateAdded".into(), json!(iso(&self.date_added)));
        m.insert("dateUpdated".into(), json!(iso(&self.date_updated)));
        m.insert("customFields".into(), self.custom_fields_json());
        Self::put_str(&mut m, "businessId", self.business_id.as_deref());
        if let Some(a) = &self.attribution_source {
            m.insert("attributionSource".into(), a.clone());
        }
        if let Some(a) = &self.last_attribution_source {
            m.insert("lastAttributionSource".into(), a.clone());
        }
        m
    }

    /// `CreateContactSchema` ([C2]): the 201 answer of `POST /contacts/`.
    pub fn to_create_json(&self) -> Value {
        let mut m = self.to_json();
        m.insert("deleted".into(), json!(false));
        if let Some(d) = self.date_of_birth {
            // The [C2] example pairs 1990-09-25 with birthMonth 8: a zero-based month.
            m.insert("birthMonth".into(), json!(d.month0()));
            m.insert("birthDay".into(), json!(d.day()));
        }
        Value::Object(m)
    }

    /// List items of `GET /contacts/` and `GET /contacts/business/{id}`: the full record plus
    /// the `ContactsSearchSchema` extras (`followers`, `attributions`).
    pub fn to_list_json(&self) -> Value {
        let mut m = self.to_json();
        m.insert("followers".into(), json!(self.followers));
        let attributions: Vec<Value> = [&self.attribution_source, &self.last_attribution_source]
            .into_iter()
            .flatten()
            .cloned()
            .collect();
        m.insert("attributions".into(), Value::Array(attributions));
        Value::Object(m)
    }

    /// Contact webhook fields (API.md §9.2, [WHEV] ContactCreate): a fixed list, not the full
    /// record. `dndSettings` only on `ContactDndUpdate`.
    pub fn webhook_fields(&self, with_dnd_settings: bool) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("id".into(), json!(self.id));
        for key in [
            "address1",
            "city",
            "state",
            "companyName",
            "country",
            "source",
        ] {
            Self::put_str(&mut m, key, self.get(key));
        }
        m.insert("dateAdded".into(), json!(iso(&self.date_added)));
        if let Some(d) = self.date_of_birth {
            m.insert("dateOfBirth".into(), json!(birth_iso(d)));
        }
        m.insert("dnd".into(), json!(self.dnd));
        Self::put_str(&mut m, "email", self.get("email"));
        Self::put_str(&mut m, "name", self.name().as_deref());
        for key in [
            "firstName",
            "lastName",
            "phone",
            "postalCode",
            "website",
            "assignedTo",
        ] {
            Self::put_str(&mut m, key, self.get(key));
        }
        m.insert("tags".into(), json!(self.tags));
        // A leftover of GHL's payload: never populated (#324).
        m.insert("attachments".into(), json!([]));
        m.insert("customFields".into(), self.custom_fields_json());
        if with_dnd_settings {
            m.insert(
                "dndSettings".into(),
                self.dnd_settings.clone().unwrap_or_else(|| json!({})),
            );
        }
        m
    }
}

fn birth_iso(d: NaiveDate) -> String {
    format!("{}T00:00:00.000Z", d.format("%Y-%m-%d"))
}

#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    pub id: String,
    pub location_id: String,
    pub contact_id: String,
    pub title: String,
    pub body: Option<String>,
    pub assigned_to: Option<String>,
    pub due_date: DateTime<Utc>,
    pub completed: bool,
    pub date_added: DateTime<Utc>,
    pub date_updated: DateTime<Utc>,
}

impl Task {
    /// `TaskSchema` ([C2]).
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("id".into(), json!(self.id));
        m.insert("title".into(), json!(self.title));
        if let Some(b) = &self.body {
            m.insert("body".into(), json!(b));
        }
        if let Some(a) = &self.assigned_to {
            m.insert("assignedTo".into(), json!(a));
        }
        m.insert("dueDate".into(), json!(iso(&self.due_date)));
        m.insert("completed".into(), json!(self.completed));
        m.insert("contactId".into(), json!(self.contact_id));
        Value::Object(m)
    }

    /// Items of the location task search: `TaskSchema` plus the dates and the location.
    pub fn to_search_json(&self) -> Value {
        let mut v = self.to_json();
        v["locationId"] = json!(self.location_id);
        v["dateAdded"] = json!(iso(&self.date_added));
        v["dateUpdated"] = json!(iso(&self.date_updated));
        v
    }

    /// Task webhook fields (API.md §9.2): `id, assignedTo, body, contactId, title, dateAdded,
    /// dueDate`.
    pub fn webhook_fields(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("id".into(), json!(self.id));
        if let Some(a) = &self.assigned_to {
            m.insert("assignedTo".into(), json!(a));
        }
        if let Some(b) = &self.body {
            m.insert("body".into(), json!(b));
        }
        m.insert("contactId".into(), json!(self.contact_id));
        m.insert("title".into(), json!(self.title));
        m.insert("dateAdded".into(), json!(iso(&self.date_added)));
        m.insert("dueDate".into(), json!(iso(&self.due_date)));
        m.insert("completed".into(), json!(self.completed));
        m
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Note {
    pub id: String,
    pub location_id: String,
    pub contact_id: String,
    pub body: String,
    pub user_id: Option<String>,
    pub title: Option<String>,
    pub color: Option<String>,
    pub pinned: bool,
    pub date_added: DateTime<Utc>,
    pub date_updated: DateTime<Utc>,
}

impl Note {
    /// `GetNoteSchema` ([C2]).
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("id".into(), json!(self.id));
        m.insert("body".into(), json!(self.body));
        if let Some(u) = &self.user_id {
            m.insert("userId".into(), json!(u));
        }
        m.insert("dateAdded".into(), json!(iso(&self.date_added)));
        m.insert("contactId".into(), json!(self.contact_id));
        if let Some(t) = &self.title {
            m.insert("title".into(), json!(t));
        }
        if let Some(c) = &self.color {
            m.insert("color".into(), json!(c));
        }
        m.insert("pinned".into(), json!(self.pinned));
        Value::Object(m)
    }

    /// Note webhook fields: a fixed allowlist without `userId`/`title` (#312).
    pub fn webhook_fields(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("id".into(), json!(self.id));
        m.insert("body".into(), json!(self.body));
        m.insert("contactId".into(), json!(self.contact_id));
        m.insert("dateAdded".into(), json!(iso(&self.date_added)));
        m
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Appointment {
    pub id: String,
    pub location_id: String,
    pub contact_id: String,
    pub calendar_id: String,
    pub group_id: Option<String>,
    pub title: String,
    /// `appointmentStatus`: booked, confirmed, cancelled, showed, noshow, invalid.
    pub status: String,
    pub assigned_user_id: Option<String>,
    pub users: Vec<String>,
    pub notes: Option<String>,
    pub description: Option<String>,
    pub address: Option<String>,
    pub source: Option<String>,
    pub start_time: DateTime<Utc>,
    pub end_time: DateTime<Utc>,
    pub date_added: DateTime<Utc>,
    pub date_updated: DateTime<Utc>,
}

impl Appointment {
    /// `GetEventSchema` ([C2]) of `GET /contacts/{id}/appointments`: times as
    /// `YYYY-MM-DD HH:mm:ss` without zone, rendered in the location's timezone (assumption).
    pub fn to_contact_json(&self, tz: chrono_tz::Tz) -> Value {
        let local =
            |t: &DateTime<Utc>| t.with_timezone(&tz).format("%Y-%m-%d %H:%M:%S").to_string();
        let mut m = Map::new();
        m.insert("id".into(), json!(self.id));
        m.insert("calendarId".into(), json!(self.calendar_id));
        m.insert("status".into(), json!(self.status));
        m.insert("title".into(), json!(self.title));
        if let Some(a) = &self.assigned_user_id {
            m.insert("assignedUserId".into(), json!(a));
        }
        if let Some(n) = &self.notes {
            m.insert("notes".into(), json!(n));
        }
        m.insert("startTime".into(), json!(local(&self.start_time)));
        m.insert("endTime".into(), json!(local(&self.end_time)));
        if let Some(a) = &self.address {
            m.insert("address".into(), json!(a));
        }
        m.insert("locationId".into(), json!(self.location_id));
        m.insert("contactId".into(), json!(self.contact_id));
        if let Some(g) = &self.group_id {
            m.insert("groupId".into(), json!(g));
        }
        m.insert("appointmentStatus".into(), json!(self.status));
        m.insert("users".into(), json!(self.users));
        m.insert("dateAdded".into(), json!(local(&self.date_added)));
        m.insert("dateUpdated".into(), json!(local(&self.date_updated)));
        m.insert("assignedResources".into(), json!([]));
        Value::Object(m)
    }

    fn offset_time(t: &DateTime<Utc>, tz: chrono_tz::Tz) -> String {
        t.with_timezone(&tz)
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, false)
    }

    /// `CalendarEventDTO` ([CAL2]) of `GET /calendars/events/appointments/{id}`: ISO times with
    /// the location's offset, every required field present.
    pub fn to_calendar_json(&self, tz: chrono_tz::Tz) -> Value {
        let mut m = Map::new();
        m.insert("id".into(), json!(self.id));
        if let Some(a) = &self.address {
            m.insert("address".into(), json!(a));
        }
        m.insert("title".into(), json!(self.title));
        m.insert("calendarId".into(), json!(self.calendar_id));
        m.insert("locationId".into(), json!(self.location_id));
        m.insert("contactId".into(), json!(self.contact_id));
        m.insert(
            "groupId".into(),
            json!(self.group_id.clone().unwrap_or_default()),
        );
        m.insert("appointmentStatus".into(), json!(self.status));
        m.insert(
            "assignedUserId".into(),
            json!(self.assigned_user_id.clone().unwrap_or_default()),
        );
        m.insert("users".into(), json!(self.users));
        if let Some(n) = &self.notes {
            m.insert("notes".into(), json!(n));
        }
        if let Some(d) = &self.description {
            m.insert("description".into(), json!(d));
        }
        m.insert("isRecurring".into(), json!(false));
        m.insert(
            "startTime".into(),
            json!(Self::offset_time(&self.start_time, tz)),
        );
        m.insert(
            "endTime".into(),
            json!(Self::offset_time(&self.end_time, tz)),
        );
        m.insert(
            "dateAdded".into(),
            json!(Self::offset_time(&self.date_added, tz)),
        );
        m.insert(
            "dateUpdated".into(),
            json!(Self::offset_time(&self.date_updated, tz)),
        );
        m.insert("assignedResources".into(), json!([]));
        let mut created_by =
            json!({"source": self.source.clone().unwrap_or_else(|| "third_party".to_owned())});
        if let Some(a) = &self.assigned_user_id {
            created_by["userId"] = json!(a);
        }
        m.insert("createdBy".into(), created_by);
        Value::Object(m)
    }

    /// Appointment webhook payload part (API.md §9.2): `appointment{...}`.
    pub fn webhook_fields(&self, tz: chrono_tz::Tz) -> Map<String, Value> {
        let mut a = Map::new();
        a.insert("id".into(), json!(self.id));
        if let Some(x) = &self.address {
            a.insert("address".into(), json!(x));
        }
        a.insert("title".into(), json!(self.title));
        a.insert("calendarId".into(), json!(self.calendar_id));
        a.insert("contactId".into(), json!(self.contact_id));
        if let Some(g) = &self.group_id {
            a.insert("groupId".into(), json!(g));
        }
        a.insert("appointmentStatus".into(), json!(self.status));
        if let Some(u) = &self.assigned_user_id {
            a.insert("assignedUserId".into(), json!(u));
        }
        a.insert("users".into(), json!(self.users));
        if let Some(n) = &self.notes {
            a.insert("notes".into(), json!(n));
        }
        if let Some(s) = &self.source {
            a.insert("source".into(), json!(s));
        }
        a.insert(
            "startTime".into(),
            json!(Self::offset_time(&self.start_time, tz)),
        );
        a.insert(
            "endTime".into(),
            json!(Self::offset_time(&self.end_time, tz)),
        );
        a.insert(
            "dateAdded".into(),
            json!(Self::offset_time(&self.date_added, tz)),
        );
        a.insert(
            "dateUpdated".into(),
            json!(Self::offset_time(&self.date_updated, tz)),
        );
        let mut m = Map::new();
        m.insert("appointment".into(), Value::Object(a));
        m
    }
}

/// The optional string fields of a business, in their GHL spelling ([B2] `BusinessDto`).
pub const BUSINESS_STRING_FIELDS: &[&str] = &[
    "phone",
    "email",
    "website",
    "address",
    "city",
    "description",
    "state",
    "postalCode",
    "country",
];

#[derive(Debug, Clone, PartialEq)]
pub struct Business {
    pub id: String,
    pub location_id: String,
    pub name: String,
    pub fields: BTreeMap<&'static str, String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Business {
    /// `BusinessDto` ([B2]); `createdBy`/`updatedBy` are empty objects in the spec.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("id".into(), json!(self.id));
        m.insert("name".into(), json!(self.name));
        for key in BUSINESS_STRING_FIELDS {
            if let Some(v) = self.fields.get(key) {
                m.insert((*key).to_owned(), json!(v));
            }
        }
        m.insert("locationId".into(), json!(self.location_id));
        m.insert("createdBy".into(), json!({}));
        m.insert("updatedBy".into(), json!({}));
        m.insert("createdAt".into(), json!(iso(&self.created_at)));
        m.insert("updatedAt".into(), json!(iso(&self.updated_at)));
        Value::Object(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ghl::util::parse_datetime;

    fn t(s: &str) -> DateTime<Utc> {
        parse_datetime(s).expect("valid test timestamp")
    }

    #[test]
    fn contact_views_omit_unset_fields_and_derive_names() {
        let mut c = Contact::new("c1".into(), "loc".into(), t("2024-01-01T00:00:00Z"));
        c.fields.insert("firstName", "Rubika".into());
        c.fields.insert("lastName", "Deo".into());
        c.fields.insert("email", "Rubika@Deos.com".into());
        c.date_of_birth = NaiveDate::from_ymd_opt(1990, 9, 25);
        let v = Value::Object(c.to_json());
        assert_eq!(v["name"], "Rubika Deo");
        assert_eq!(v["fullNameLowerCase"], "rubika deo");
        assert_eq!(v["emailLowerCase"], "rubika@deos.com");
        assert_eq!(v["dateOfBirth"], "1990-09-25T00:00:00.000Z");
        assert!(v.get("phone").is_none(), "unset fields are omitted");
        let created = c.to_create_json();
        assert_eq!(created["birthMonth"], 8);
        assert_eq!(created["birthDay"], 25);
        let hook = Value::Object(c.webhook_fields(false));
        assert!(hook.get("dndSettings").is_none());
        assert_eq!(hook["attachments"], json!([]));
    }

    #[test]
    fn appointment_times_follow_each_schema() {
        let a = Appointment {
            id: "a1".into(),
            location_id: "loc".into(),
            contact_id: "c1".into(),
            calendar_id: "cal".into(),
            group_id: None,
            title: "Call".into(),
            status: "booked".into(),
            assigned_user_id: None,
            users: vec![],
            notes: None,
            description: None,
            address: None,
            source: None,
            start_time: t("2023-09-25T10:30:00Z"),
            end_time: t("2023-09-25T11:00:00Z"),
            date_added: t("2023-09-01T00:00:00Z"),
            date_updated: t("2023-09-01T00:00:00Z"),
        };
        let tz: chrono_tz::Tz = "Asia/Kolkata".parse().expect("known zone");
        assert_eq!(a.to_contact_json(tz)["startTime"], "2023-09-25 16:00:00");
        assert_eq!(
            a.to_calendar_json(tz)["startTime"],
            "2023-09-25T16:00:00+05:30"
        );
    }
}
