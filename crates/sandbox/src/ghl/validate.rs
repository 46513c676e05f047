//! Request-body validation with GHL's (NestJS `class-validator`) behaviour: unknown properties
//! are refused with `property X should not exist` (#262, #313), wrong types with
//! `X must be a string`, and every problem of a body is reported at once in the 422
//! `UnprocessableDTO` array (API.md §2).
//!
//! The parsed results are patches: `None` = "not in the body", `Some(None)` = "sent as null".

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::{Map, Value};

use super::error::{ApiError, ApiResult};
use super::model::{BUSINESS_STRING_FIELDS, CONTACT_STRING_FIELDS};
use super::util::{parse_birth_date, parse_datetime, parse_rfc3339};

/// Collects the problems of one JSON object body.
pub struct Body<'a> {
    obj: &'a Map<String, Value>,
    errors: Vec<String>,
}

impl<'a> Body<'a> {
    /// Check that `v` is an object whose keys are all in `allowed`.
    pub fn new(v: &'a Value, allowed: &[&str]) -> ApiResult<Self> {
        let Some(obj) = v.as_object() else {
            return Err(ApiError::unprocessable(vec![
                "body must be a JSON object".to_owned(),
            ]));
        };
        let errors = obj
            .keys()
            .filter(|k| !allowed.contains(&k.as_str()))
            .map(|k| format!("property {k} should not exist"))
            .collect();
        Ok(Self { obj, errors })
    }

    pub fn has(&self, key: &str) -> bool {
        self.obj.contains_key(key)
    }

    pub fn raw(&self, key: &str) -> Option<&'a Value> {
        self.obj.get(key)
    }

    pub fn error(&mut self, message: String) {
        self.errors.push(message);
    }

    /// Absent → `None`; a string → `Some(Some(trimmed))` (an empty string clears the field).
    /// `null` is refused, as class-validator refuses it for a property the DTO does not mark
    /// `nullable` (use [`Self::opt_nullable_str`] for those).
    pub fn opt_str(&mut self, key: &str) -> Option<Option<String>> {
        match self.obj.get(key)? {
            Value::Null => {
                self.errors.push(format!("{key} must be a string"));
                None
            }
            _ => self.opt_nullable_str(key),
        }
    }

    /// [`Self::opt_str`] for a property the DTO marks `nullable`: `null` → `Some(None)`.
    pub fn opt_nullable_str(&mut self, key: &str) -> Option<Option<String>> {
        match self.obj.get(key)? {
            Value::Null => Some(None),
            Value::String(s) => {
                let s = s.trim();
                Some((!s.is_empty()).then(|| s.to_owned()))
            }
            _ => {
                self.errors.push(format!("{key} must be a string"));
                None
            }
        }
    }

    pub fn req_str(&mut self, key: &str) -> Option<String> {
        match self.obj.get(key) {
            Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_owned()),
            Some(Value::String(_)) => {
                self.errors.push(format!("{key} should not be empty"));
                None
            }
            Some(Value::Null) | None => {
                self.errors.push(format!("{key} should not be empty"));
                self.errors.push(format!("{key} must be a string"));
                None
            }
            Some(_) => {
                self.errors.push(format!("{key} must be a string"));
                None
            }
        }
    }

    pub fn opt_bool(&mut self, key: &str) -> Option<bool> {
        match self.obj.get(key)? {
            Value::Bool(b) => Some(*b),
            _ => {
                self.errors.push(format!("{key} must be a boolean value"));
                None
            }
        }
    }

    pub fn req_bool(&mut self, key: &str) -> Option<bool> {
        if !self.obj.contains_key(key) {
            self.errors.push(format!("{key} must be a boolean value"));
            return None;
        }
        self.opt_bool(key)
    }

    pub fn opt_u64(&mut self, key: &str) -> Option<u64> {
        match self.obj.get(key)? {
            Value::Number(n) if n.as_u64().is_some() => n.as_u64(),
            Value::Number(n) if n.as_f64().is_some_and(|f| f >= 0.0 && f.fract() == 0.0) => {
                n.as_f64().map(|f| f as u64)
            }
            _ => {
                self.errors.push(format!(
                    "{key} must be a number conforming to the specified constraints"
                ));
                None
            }
        }
    }

    pub fn opt_str_array(&mut self, key: &str) -> Option<Vec<String>> {
        match self.obj.get(key)? {
            Value::Array(items) => {
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    match item {
                        Value::String(s) => out.push(s.clone()),
                        _ => {
                            self.errors
                                .push(format!("each value in {key} must be a string"));
                            return None;
                        }
                    }
                }
                Some(out)
            }
            _ => {
                self.errors.push(format!("{key} must be an array"));
                None
            }
        }
    }

    pub fn opt_object(&mut self, key: &str) -> Option<Option<Value>> {
        match self.obj.get(key)? {
            Value::Null => Some(None),
            v @ Value::Object(_) => Some(Some(v.clone())),
            _ => {
                self.errors.push(format!("{key} must be an object"));
                None
            }
        }
    }

    /// An ISO 8601 date-time (`dueDate`, `startTime`, …).
    pub fn opt_datetime(&mut self, key: &str) -> Option<DateTime<Utc>> {
        match self.obj.get(key)? {
            Value::String(s) => match parse_datetime(s) {
                Some(t) => Some(t),
                None => {
                    self.errors
                        .push(format!("{key} must be a valid ISO 8601 date string"));
                    None
                }
            },
            Value::Number(n) => n.as_i64().map(super::util::from_epoch_ms),
            _ => {
                self.errors
                    .push(format!("{key} must be a valid ISO 8601 date string"));
                None
            }
        }
    }

    /// A date-time a GHL route takes (`dueDate` of a task): RFC 3339 with its zone only, as
    /// the spec's examples show (`2020-10-25T11:00:00Z`). The spec types it `string` without
    /// a format, so which other forms GHL reads is unknown; a date alone, a time without a
    /// zone (whose zone would be a guess), another separator or epoch milliseconds (as a
    /// number or a string) are refused, the reading under which a client sending them finds
    /// out here rather than with a task due at another time.
    pub fn opt_strict_datetime(&mut self, key: &str) -> Option<DateTime<Utc>> {
        let v = self.obj.get(key)?;
        match v.as_str().and_then(parse_rfc3339) {
            Some(t) => Some(t),
            None => {
                self.errors
                    .push(format!("{key} must be a valid ISO 8601 date string"));
                None
            }
        }
    }

    pub fn req_strict_datetime(&mut self, key: &str) -> Option<DateTime<Utc>> {
        if !self.obj.contains_key(key) {
            self.errors
                .push(format!("{key} must be a valid ISO 8601 date string"));
            return None;
        }
        self.opt_strict_datetime(key)
    }

    pub fn req_datetime(&mut self, key: &str) -> Option<DateTime<Utc>> {
        if !self.obj.contains_key(key) {
            self.errors
                .push(format!("{key} must be a valid ISO 8601 date string"));
            return None;
        }
        self.opt_datetime(key)
    }

    /// 422 with every collected message, or `Ok`.
    pub fn finish(self) -> ApiResult<()> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ApiError::unprocessable(self.errors))
        }
    }
}

/// Which contact DTO a body is checked against ([C2] `components.schemas`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContactDto {
    /// `CreateContactDto` (`POST /contacts/`).
    Create,
    /// `UpsertContactDto` = Create + `createNewIfDuplicateAllowed`.
    Upsert,
    /// `UpdateContactDto` = Create − `locationId`, `gender`, `companyName`.
    Update,
    /// The control API: every field, plus the ones only GHL itself sets (`id`, `businessId`,
    /// dates, attribution) so tests can seed any state.
    Control,
}

const CREATE_FIELDS: &[&str] = &[
    "firstName",
    "lastName",
    "name",
    "email",
    "locationId",
    "gender",
    "phone",
    "address1",
    "city",
    "state",
    "postalCode",
    "website",
    "timezone",
    "dnd",
    "dndSettings",
    "inboundDndSettings",
    "tags",
    "customFields",
    "source",
    "dateOfBirth",
    "country",
    "companyName",
    "assignedTo",
];

const CONTROL_EXTRA: &[&str] = &[
    "id",
    "businessId",
    "dateAdded",
    "dateUpdated",
    "type",
    "attributionSource",
    "lastAttributionSource",
    "followers",
];

impl ContactDto {
    fn allowed(self) -> Vec<&'static str> {
        let mut v: Vec<&'static str> = CREATE_FIELDS.to_vec();
        match self {
            Self::Create => {}
            Self::Upsert => v.push("createNewIfDuplicateAllowed"),
            Self::Update => v.retain(|k| !matches!(*k, "locationId" | "gender" | "companyName")),
            Self::Control => {
                v.extend_from_slice(CONTROL_EXTRA);
                v.push("createNewIfDuplicateAllowed");
            }
        }
        v
    }

    /// Whether the DTO marks `field` `nullable` (the OpenAPI spec of contacts; the control
    /// API takes `null` anywhere).
    fn nullable(self, field: &str) -> bool {
        const BOTH: &[&str] = &[
            "address1",
            "city",
            "email",
            "firstName",
            "lastName",
            "name",
            "phone",
            "state",
            "timezone",
            "website",
        ];
        match self {
            Self::Control => true,
            Self::Create | Self::Upsert => BOTH.contains(&field) || field == "companyName",
            Self::Update => BOTH.contains(&field) || matches!(field, "assignedTo" | "source"),
        }
    }
}

/// The channels `DndSettingsSchema` declares (API.md §3.1). Reads may carry others (`RCS`),
/// which a write may not: unknown properties are refused, as everywhere in GHL's DTOs.
pub const DND_CHANNELS: [&str; 6] = ["Call", "Email", "SMS", "WhatsApp", "GMB", "FB"];

/// `dndSettings` of a write: an object of declared channels, each `{status: active | inactive
/// | permanent, message?, code?}`; `null` is refused (the spec does not make it nullable).
fn check_dnd_settings(b: &mut Body<'_>, settings: Option<&Option<Value>>) {
    let Some(settings) = settings else { return };
    let Some(Value::Object(channels)) = settings else {
        b.error("dndSettings must be an object".to_owned());
        return;
    };
    for (channel, setting) in channels {
        if !DND_CHANNELS.contains(&channel.as_str()) {
            b.error(format!("dndSettings.property {channel} should not exist"));
            continue;
        }
        let status = setting.get("status").and_then(Value::as_str);
        if !matches!(status, Some("active" | "inactive" | "permanent")) {
            b.error(format!(
                "dndSettings.{channel}.status must be one of the following values: active, inactive, permanent"
            ));
        }
    }
}

/// One entry of `customFields` on write: `{id | key, field_value}` (API.md §3.3).
#[derive(Debug, Clone, PartialEq)]
pub struct CustomFieldWrite {
    pub id: Option<String>,
    pub key: Option<String>,
    pub value: Value,
}

/// A parsed contact write.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContactPatch {
    pub strings: Vec<(&'static str, Option<String>)>,
    pub name: Option<Option<String>>,
    pub dnd: Option<bool>,
    pub dnd_settings: Option<Option<Value>>,
    pub inbound_dnd_settings: Option<Option<Value>>,
    pub tags: Option<Vec<String>>,
    pub custom_fields: Option<Vec<CustomFieldWrite>>,
    pub date_of_birth: Option<Option<NaiveDate>>,
    pub location_id: Option<String>,
    pub create_new_if_duplicate_allowed: bool,
    // Control-only fields.
    pub id: Option<String>,
    pub business_id: Option<Option<String>>,
    pub contact_type: Option<String>,
    pub attribution_source: Option<Option<Value>>,
    pub last_attribution_source: Option<Option<Value>>,
    pub followers: Option<Vec<String>>,
    pub date_added: Option<DateTime<Utc>>,
    pub date_updated: Option<DateTime<Utc>>,
}

impl ContactPatch {
    pub fn string(&self, field: &str) -> Option<&Option<String>> {
        self.strings
            .iter()
            .find(|(k, _)| *k == field)
            .map(|(_, v)| v)
    }

    pub fn drop_string(&mut self, field: &str) {
        self.strings.retain(|(k, _)| *k != field);
    }

    /// Parse and validate a contact body against one DTO.
    pub fn parse(v: &Value, dto: ContactDto) -> ApiResult<Self> {
        let allowed = dto.allowed();
        let mut b = Body::new(v, &allowed)?;
        let mut p = Self::default();
        for field in CONTACT_STRING_FIELDS {
            if !allowed.contains(field) {
                continue;
            }
            let value = if dto.nullable(field) {
                b.opt_nullable_str(field)
            } else {
                b.opt_str(field)
            };
            if let Some(value) = value {
                p.strings.push((field, value));
            }
        }
        if let Some(Some(email)) = p.string("email")
            && !looks_like_email(email)
        {
            b.error("email must be an email".to_owned());
        }
        p.name = b.opt_nullable_str("name");
        p.dnd = b.opt_bool("dnd");
        p.dnd_settings = b.opt_object("dndSettings");
        if dto != ContactDto::Control {
            check_dnd_settings(&mut b, p.dnd_settings.as_ref());
        }
        p.inbound_dnd_settings = b.opt_object("inboundDndSettings");
        p.tags = b.opt_str_array("tags");
        p.custom_fields = parse_custom_fields(&mut b);
        match b.raw("dateOfBirth") {
            None => {}
            Some(Value::Null) => p.date_of_birth = Some(None),
            Some(Value::String(s)) if s.trim().is_empty() => p.date_of_birth = Some(None),
            Some(Value::String(s)) => match parse_birth_date(s) {
                Some(d) => p.date_of_birth = Some(Some(d)),
                None => b.error(
                    "dateOfBirth must be in one of the formats YYYY/MM/DD, MM/DD/YYYY, YYYY-MM-DD, \
                     MM-DD-YYYY, YYYY.MM.DD, MM.DD.YYYY, YYYY_MM_DD, MM_DD_YYYY"
                        .to_owned(),
                ),
            },
            Some(_) => b.error("dateOfBirth must be a string".to_owned()),
        }
        if allowed.contains(&"locationId") {
            match dto {
                ContactDto::Create | ContactDto::Upsert => p.location_id = b.req_str("locationId"),
                _ => p.location_id = b.opt_str("locationId").flatten(),
            }
        }
        p.create_new_if_duplicate_allowed =
            b.opt_bool("createNewIfDuplicateAllowed").unwrap_or(false);
        if dto == ContactDto::Control {
            p.id = b.opt_str("id").flatten();
            p.business_id = b.opt_nullable_str("businessId");
            p.contact_type = b.opt_str("type").flatten();
            p.attribution_source = b.opt_object("attributionSource");
            p.last_attribution_source = b.opt_object("lastAttributionSource");
            p.followers = b.opt_str_array("followers");
            p.date_added = b.opt_datetime("dateAdded");
            p.date_updated = b.opt_datetime("dateUpdated");
        }
        b.finish()?;
        Ok(p)
    }
}

fn looks_like_email(s: &str) -> bool {
    match s.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !s.contains(char::is_whitespace)
        }
        None => false,
    }
}

fn parse_custom_fields(b: &mut Body<'_>) -> Option<Vec<CustomFieldWrite>> {
    let raw = b.raw("customFields")?;
    let Value::Array(items) = raw else {
        b.error("customFields must be an array".to_owned());
        return None;
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let Some(obj) = item.as_object() else {
            b.error(format!("customFields.{i} must be an object"));
            continue;
        };
        for k in obj.keys() {
            // `field_value` is the v2 spelling (API.md §3.3); `value` (the read spelling) is
            // accepted as well, as many integrations send it.
            if !matches!(k.as_str(), "id" | "key" | "field_value" | "value") {
                b.error(format!("customFields.{i}.property {k} should not exist"));
            }
        }
        let text = |k: &str| obj.get(k).and_then(Value::as_str).map(str::to_owned);
        let id = text("id");
        let key = text("key");
        if id.is_none() && key.is_none() {
            b.error(format!("customFields.{i}.id must be a string"));
            continue;
        }
        let value = obj
            .get("field_value")
            .or_else(|| obj.get("value"))
            .cloned()
            .unwrap_or(Value::Null);
        out.push(CustomFieldWrite { id, key, value });
    }
    Some(out)
}

/// `CreateTaskParams` / `UpdateTaskBody` ([C2]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskPatch {
    pub title: Option<String>,
    pub body: Option<Option<String>>,
    pub assigned_to: Option<Option<String>>,
    pub due_date: Option<DateTime<Utc>>,
    pub completed: Option<bool>,
    /// Control only.
    pub id: Option<String>,
}

const TASK_FIELDS: &[&str] = &["title", "body", "dueDate", "completed", "assignedTo"];

impl TaskPatch {
    /// `create`: `title`, `dueDate`, `completed` are required (`CreateTaskParams.required`).
    pub fn parse(v: &Value, create: bool, control: bool) -> ApiResult<Self> {
        let mut allowed = TASK_FIELDS.to_vec();
        if control {
            allowed.push("id");
        }
        let mut b = Body::new(v, &allowed)?;
        let mut p = Self::default();
        // The control API seeds with any readable form; GHL's routes take RFC 3339 only.
        let due = |b: &mut Body<'_>| match (create, control) {
            (true, true) => b.req_datetime("dueDate"),
            (true, false) => b.req_strict_datetime("dueDate"),
            (false, true) => b.opt_datetime("dueDate"),
            (false, false) => b.opt_strict_datetime("dueDate"),
        };
        if create {
            p.title = b.req_str("title");
            p.due_date = due(&mut b);
            p.completed = b.req_bool("completed");
        } else {
            p.title = b.opt_str("title").flatten();
            p.due_date = due(&mut b);
            p.completed = b.opt_bool("completed");
        }
        p.body = b.opt_str("body");
        p.assigned_to = b.opt_str("assignedTo");
        if control {
            p.id = b.opt_str("id").flatten();
        }
        b.finish()?;
        Ok(p)
    }
}

/// `NotesDTO` / `UpdateNoteDTO` ([C2]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NotePatch {
    pub body: Option<String>,
    pub user_id: Option<Option<String>>,
    pub title: Option<Option<String>>,
    pub color: Option<Option<String>>,
    pub pinned: Option<bool>,
    pub id: Option<String>,
}

impl NotePatch {
    pub fn parse(v: &Value, create: bool, control: bool) -> ApiResult<Self> {
        let mut allowed = vec!["body", "userId", "title", "color", "pinned"];
        if control {
            allowed.push("id");
        }
        let mut b = Body::new(v, &allowed)?;
        let mut p = Self {
            body: if create {
                b.req_str("body")
            } else {
                b.opt_str("body").flatten()
            },
            user_id: b.opt_str("userId"),
            title: b.opt_str("title"),
            color: b.opt_str("color"),
            pinned: b.opt_bool("pinned"),
            id: None,
        };
        if control {
            p.id = b.opt_str("id").flatten();
        }
        b.finish()?;
        Ok(p)
    }
}

/// `CreateBusinessDto` / `UpdateBusinessDto` ([B2]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BusinessPatch {
    pub name: Option<String>,
    pub location_id: Option<String>,
    pub strings: Vec<(&'static str, Option<String>)>,
    pub id: Option<String>,
}

impl BusinessPatch {
    pub fn parse(v: &Value, create: bool, control: bool) -> ApiResult<Self> {
        let mut allowed: Vec<&str> = BUSINESS_STRING_FIELDS.to_vec();
        allowed.push("name");
        if create {
            allowed.push("locationId");
        }
        if control {
            allowed.push("id");
        }
        let mut b = Body::new(v, &allowed)?;
        let mut p = Self::default();
        if create {
            p.name = b.req_str("name");
            if !control {
                p.location_id = b.req_str("locationId");
            } else {
                p.location_id = b.opt_str("locationId").flatten();
            }
        } else {
            p.name = b.opt_str("name").flatten();
        }
        for field in BUSINESS_STRING_FIELDS {
            if let Some(value) = b.opt_str(field) {
                p.strings.push((field, value));
            }
        }
        if control {
            p.id = b.opt_str("id").flatten();
        }
        b.finish()?;
        Ok(p)
    }
}

/// An appointment written through the control API (GHL's calendar booking is out of scope).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AppointmentPatch {
    pub id: Option<String>,
    pub contact_id: Option<String>,
    pub calendar_id: Option<String>,
    pub group_id: Option<Option<String>>,
    pub title: Option<String>,
    pub status: Option<String>,
    pub assigned_user_id: Option<Option<String>>,
    pub users: Option<Vec<String>>,
    pub notes: Option<Option<String>>,
    pub description: Option<Option<String>>,
    pub address: Option<Option<String>>,
    pub source: Option<Option<String>>,
    pub start_time: Option<DateTime<Utc>>,
    pub end_time: Option<DateTime<Utc>>,
}

impl AppointmentPatch {
    pub fn parse(v: &Value, create: bool) -> ApiResult<Self> {
        let allowed = [
            "id",
            "contactId",
            "calendarId",
            "groupId",
            "title",
            "appointmentStatus",
            "assignedUserId",
            "users",
            "notes",
            "description",
            "address",
            "source",
            "startTime",
            "endTime",
        ];
        let mut b = Body::new(v, &allowed)?;
        let p = Self {
            id: b.opt_str("id").flatten(),
            contact_id: if create {
                b.req_str("contactId")
            } else {
                b.opt_str("contactId").flatten()
            },
            calendar_id: b.opt_str("calendarId").flatten(),
            group_id: b.opt_str("groupId"),
            title: b.opt_str("title").flatten(),
            status: b.opt_str("appointmentStatus").flatten(),
            assigned_user_id: b.opt_str("assignedUserId"),
            users: b.opt_str_array("users"),
            notes: b.opt_str("notes"),
            description: b.opt_str("description"),
            address: b.opt_str("address"),
            source: b.opt_str("source"),
            start_time: if create {
                b.req_datetime("startTime")
            } else {
                b.opt_datetime("startTime")
            },
            end_time: b.opt_datetime("endTime"),
        };
        b.finish()?;
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn messages(e: ApiError) -> Vec<String> {
        assert_eq!(e.status.as_u16(), 422, "{e}");
        serde_json::from_value(e.body["message"].clone()).expect("message array")
    }

    #[test]
    fn update_refuses_create_only_fields_like_ghl() {
        let e = ContactPatch::parse(
            &json!({"locationId": "x", "gender": "male", "companyName": "Acme", "firstName": "A"}),
            ContactDto::Update,
        )
        .expect_err("update dto has no locationId/gender/companyName");
        let m = messages(e);
        for f in ["locationId", "gender", "companyName"] {
            assert!(
                m.contains(&format!("property {f} should not exist")),
                "{m:?}"
            );
        }
    }

    #[test]
    fn create_requires_location_and_checks_types() {
        let e = ContactPatch::parse(
            &json!({"firstName": 3, "email": "not-an-email", "tags": ["a", 1]}),
            ContactDto::Create,
        )
        .expect_err("invalid");
        let m = messages(e);
        assert!(m.contains(&"locationId should not be empty".to_owned()));
        assert!(m.contains(&"firstName must be a string".to_owned()));
        assert!(m.contains(&"email must be an email".to_owned()));
        assert!(m.contains(&"each value in tags must be a string".to_owned()));
    }

    #[test]
    fn null_clears_and_absence_keeps() {
        let p = ContactPatch::parse(
            &json!({"locationId": "l", "email": null, "dateOfBirth": "09/25/1990",
                    "customFields": [{"key": "pincode", "field_value": "123"}]}),
            ContactDto::Create,
        )
        .expect("valid");
        assert_eq!(p.string("email"), Some(&None));
        assert_eq!(p.string("phone"), None);
        assert_eq!(p.date_of_birth, Some(NaiveDate::from_ymd_opt(1990, 9, 25)));
        assert_eq!(
            p.custom_fields.expect("present")[0].key.as_deref(),
            Some("pincode")
        );
    }

    #[test]
    fn task_create_requires_title_due_date_completed() {
        let m = messages(TaskPatch::parse(&json!({"body": "x"}), true, false).expect_err("bad"));
        assert!(m.iter().any(|s| s.starts_with("title")));
        assert!(m.iter().any(|s| s.starts_with("dueDate")));
        assert!(m.iter().any(|s| s.starts_with("completed")));
        let ok = TaskPatch::parse(
            &json!({"title": "t", "dueDate": "2030-01-01T10:00:00Z", "completed": false}),
            true,
            false,
        )
        .expect("valid");
        assert_eq!(ok.completed, Some(false));
    }

    #[test]
    fn a_task_due_date_is_rfc_3339_with_its_zone() {
        for good in [
            "2030-01-01T10:00:00Z",
            "2030-01-01T10:00:00.123Z",
            "2030-01-01T07:00:00-03:00",
        ] {
            let p = TaskPatch::parse(&json!({"dueDate": good}), false, false).expect(good);
            assert_eq!(
                p.due_date.map(|t| t.timestamp()),
                Some(1_893_492_000),
                "{good}"
            );
        }
        for bad in [
            json!("2030/01/01"),
            json!("2030-01-01"),
            json!("2030-01-01T10:00:00"),
            json!("2030-01-01 10:00"),
            json!("1893492000000"),
            json!(1_893_492_000_000_i64),
        ] {
            let m = messages(
                TaskPatch::parse(&json!({"dueDate": bad}), false, false).expect_err("refused"),
            );
            assert_eq!(m, ["dueDate must be a valid ISO 8601 date string"], "{bad}");
        }
        // The control API still seeds with a bare date.
        TaskPatch::parse(&json!({"dueDate": "2030-01-01"}), false, true).expect("control");
    }
}
