//! Wire ↔ domain, in one place: GHL's JSON (`dto.rs`) into the canonical records of
//! `domain`, and domain records and field changes into GHL's write bodies.
//!
//! Guarantees:
//! - records come back in canonical shape but not normalised (the port's promise); only the
//!   custom fields the tenant selected (`TenantSettings::custom_fields`) are carried;
//! - an update body carries exactly the changed fields, spelled as `UpdateContactDto` /
//!   `UpdateTaskBody` want them (API.md §3.2, §4.3); a change GHL cannot take through that
//!   endpoint (`tags`, `company_name`, `business_id`) is refused, never dropped;
//! - times: GHL's ISO timestamps are read as given; the appointment times of
//!   `GET /contacts/:id/appointments` come as `YYYY-MM-DD HH:mm:ss` **without a zone**
//!   (API.md §4.5, \[C2\] `GetEventSchema` example) and are read as UTC — GHL documents no zone
//!   for them (the location's time zone is the other plausible reading; see the crate docs).
//!   eKyte's own zone-less times are the eKyte adapter's business. Times are written as
//!   RFC 3339 UTC with milliseconds, the form of GHL's own examples.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use anyhow::{Context, anyhow};
use chrono::{DateTime, NaiveDateTime, SecondsFormat, TimeZone, Utc};
use domain::{
    Appointment, Business, Contact, FieldChange, FieldValue, GhlAppointmentId, GhlBusinessId,
    GhlContactId, GhlNoteId, GhlTaskId, GhlUserId, LocationId, Note, Record, Task, TaskStatus,
};
use ports::ghl::{
    ContactSearch, GhlAppointment, GhlBusiness, GhlContact, GhlNote, GhlTask, SearchCursor,
};
use serde_json::{Map, Value, json};

use crate::dto::{AppointmentDto, BusinessDto, ContactDto, NoteDto, TaskDto};

// ------------------------------------------------------------------------------- times

/// Read a GHL time: RFC 3339; `YYYY-MM-DD HH:mm:ss` or `YYYY-MM-DDTHH:mm:ss` without a zone
/// (read as UTC, see the module docs); a plain date (midnight UTC); epoch milliseconds.
pub(crate) fn parse_time(raw: &str) -> Option<DateTime<Utc>> {
    let s = raw.trim();
    if s.is_empty() {
        return None;
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    for format in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, format) {
            return Some(Utc.from_utc_datetime(&t));
        }
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return d.and_hms_opt(0, 0, 0).map(|t| Utc.from_utc_datetime(&t));
    }
    if s.len() >= 12 && s.bytes().all(|b| b.is_ascii_digit()) {
        return s
            .parse::<i64>()
            .ok()
            .and_then(|ms| Utc.timestamp_millis_opt(ms).single());
    }
    None
}

/// A time that must parse when present (a synced field): `Err` names the field.
fn synced_time(raw: Option<&str>, what: &str) -> anyhow::Result<Option<DateTime<Utc>>> {
    match raw.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) => parse_time(s)
            .map(Some)
            .ok_or_else(|| anyhow!("{what} {s:?} is not a time")),
    }
}

/// Metadata times are best-effort: an odd value is dropped, not fatal.
fn meta_time(raw: Option<&str>) -> Option<DateTime<Utc>> {
    raw.and_then(parse_time)
}

/// How GHL's examples write times (`2021-07-08T02:30:00.000Z`).
pub(crate) fn format_time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

// ------------------------------------------------------------------------------- ids

fn required<T, E: std::fmt::Display>(
    raw: Option<String>,
    what: &str,
    parse: impl FnOnce(String) -> Result<T, E>,
) -> anyhow::Result<T> {
    let raw = raw.ok_or_else(|| anyhow!("{what} is missing"))?;
    parse(raw).map_err(|e| anyhow!("{what}: {e}"))
}

fn optional<T, E: std::fmt::Display>(
    raw: Option<String>,
    what: &str,
    parse: impl FnOnce(String) -> Result<T, E>,
) -> anyhow::Result<Option<T>> {
    match raw.filter(|s| !s.trim().is_empty()) {
        None => Ok(None),
        Some(s) => parse(s).map(Some).map_err(|e| anyhow!("{what}: {e}")),
    }
}

// ------------------------------------------------------------------------------- contacts

/// A custom field value as canonical text: strings as they are, numbers and booleans
/// printed, lists (checkbox, multi-select) joined with ", ", objects (files) as JSON.
fn custom_value_text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Array(items) => Some(
            items
                .iter()
                .filter_map(custom_value_text)
                .collect::<Vec<_>>()
                .join(", "),
        ),
        Value::Object(_) => Some(v.to_string()),
    }
}

fn dnd_channels(settings: Option<&Value>) -> BTreeMap<String, String> {
    let Some(Value::Object(m)) = settings else {
        return BTreeMap::new();
    };
    m.iter()
        .filter_map(|(channel, setting)| {
            let status = setting.get("status")?.as_str()?;
            Some((channel.clone(), status.to_owned()))
        })
        .collect()
}

/// A contact as GHL holds it. `custom_fields` lists the ids the tenant syncs; `location` is
/// used when the record does not say (thin list projections).
pub(crate) fn contact(
    dto: ContactDto,
    custom_fields: &[String],
    location: &LocationId,
) -> anyhow::Result<GhlContact> {
    let id = required(dto.id, "contact id", GhlContactId::parse)?;
    let location = optional(dto.location_id, "locationId", LocationId::parse)?
        .unwrap_or_else(|| location.clone());
    let wanted: BTreeSet<&str> = custom_fields.iter().map(String::as_str).collect();
    let custom_fields = dto
        .custom_fields
        .iter()
        .filter_map(|f| {
            let id = f.id.as_deref().filter(|id| wanted.contains(id))?;
            Some((id.to_owned(), custom_value_text(&f.value)?))
        })
        .collect();
    let contact = Contact {
        first_name: dto.first_name,
        last_name: dto.last_name,
        name: dto.name,
        email: dto.email,
        phone: dto.phone,
        company_name: dto.company_name,
        address1: dto.address1,
        city: dto.city,
        state: dto.state,
        postal_code: dto.postal_code,
        country: dto.country,
        website: dto.website,
        timezone: dto.timezone,
        tags: dto.tags,
        custom_fields,
        business_id: optional(dto.business_id, "businessId", GhlBusinessId::parse)?,
        assigned_to: optional(dto.assigned_to, "assignedTo", GhlUserId::parse)?,
        dnd: dto.dnd.unwrap_or(false),
        dnd_channels: dnd_channels(dto.dnd_settings.as_ref()),
        date_updated: meta_time(dto.date_updated.as_deref()),
    };
    Ok(GhlContact {
        id,
        location,
        contact,
        date_added: meta_time(dto.date_added.as_deref()),
    })
}

/// The text fields of a contact: domain name, GHL key, whether `UpdateContactDto` declares
/// them nullable (API.md §3.2; the others are cleared with an empty string).
const CONTACT_TEXT: &[(&str, &str, bool)] = &[
    ("first_name", "firstName", true),
    ("last_name", "lastName", true),
    ("name", "name", true),
    ("email", "email", true),
    ("phone", "phone", true),
    ("address1", "address1", true),
    ("city", "city", true),
    ("state", "state", true),
    ("postal_code", "postalCode", false),
    ("country", "country", false),
    ("website", "website", true),
    ("timezone", "timezone", true),
    ("assigned_to", "assignedTo", true),
];

/// A location's custom fields by id: their kind (`dataType`) and, for the kinds with
/// options, the options (to split a multi-select's canonical text back into its values).
#[derive(Debug, Default)]
pub(crate) struct FieldKinds(HashMap<String, (String, Vec<String>)>);

pub(crate) fn field_kinds(list: crate::dto::CustomFieldsAnswer) -> FieldKinds {
    FieldKinds(
        list.custom_fields
            .into_iter()
            .map(|d| {
                let options = d
                    .picklist_options
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|o| match o {
                        Value::String(s) => Some(s.clone()),
                        other => other
                            .get("label")
                            .and_then(Value::as_str)
                            .map(str::to_owned),
                    })
                    .collect();
                (d.id, (d.data_type.unwrap_or_default(), options))
            })
            .collect(),
    )
}

/// Turn the text values of a body's `customFields` into the types their kinds take (API.md
/// §3.3): a number for `NUMERICAL` and `MONETORY`, a string array for `CHECKBOX` and
/// `MULTIPLE_OPTIONS` (the canonical text joins the values with ", "; an option that itself
/// holds ", " is matched whole against the field's options), text for the others and for
/// fields the catalogue does not know. An empty value stays "" (it clears the field).
pub(crate) fn type_custom_fields(
    body: &mut Map<String, Value>,
    kinds: &FieldKinds,
) -> Result<(), Vec<String>> {
    let Some(Value::Array(items)) = body.get_mut("customFields") else {
        return Ok(());
    };
    let mut refused = Vec::new();
    for item in items.iter_mut() {
        let (Some(id), Some(Value::String(text))) = (
            item.get("id").and_then(Value::as_str).map(str::to_owned),
            item.get("field_value").cloned(),
        ) else {
            continue;
        };
        if text.is_empty() {
            continue;
        }
        let Some((kind, options)) = kinds.0.get(&id) else {
            continue;
        };
        let typed = match kind.as_str() {
            "NUMERICAL" | "MONETORY" => match text.trim().parse::<f64>() {
                Ok(n) => serde_json::Number::from_f64(n).map(Value::Number),
                Err(_) => None,
            },
            "CHECKBOX" | "MULTIPLE_OPTIONS" => Some(Value::Array(
                split_options(&text, options)
                    .into_iter()
                    .map(Value::String)
                    .collect(),
            )),
            _ => continue,
        };
        match typed {
            Some(v) => item["field_value"] = v,
            None => refused.push(format!(
                "custom field {id} ({kind}) cannot take {text:?}: not a number"
            )),
        }
    }
    if refused.is_empty() {
        Ok(())
    } else {
        Err(refused)
    }
}

/// The values of a multi-select's canonical text ("a, b"): the field's options that the
/// text is made of, longest first, so that an option holding ", " stays whole; what no option
/// matches is split at ", ".
fn split_options(text: &str, options: &[String]) -> Vec<String> {
    let mut rest = text.trim();
    let mut out = Vec::new();
    let mut longest: Vec<&String> = options.iter().collect();
    longest.sort_by_key(|o| std::cmp::Reverse(o.len()));
    while !rest.is_empty() {
        let whole = longest.iter().find(|o| {
            rest.strip_prefix(o.as_str())
                .is_some_and(|after| after.is_empty() || after.starts_with(", "))
        });
        let (value, after) = match whole {
            Some(o) => (o.to_string(), &rest[o.len()..]),
            None => match rest.split_once(", ") {
                Some((v, _)) => (v.to_owned(), &rest[v.len()..]),
                None => (rest.to_owned(), ""),
            },
        };
        out.push(value.trim().to_owned());
        rest = after.strip_prefix(", ").unwrap_or(after).trim_start();
    }
    out
}

fn custom_fields_write(fields: &BTreeMap<String, String>) -> Value {
    // v2 spells the value `field_value` (API.md §3.3); text here, typed from the location's
    // catalogue just before sending (`type_custom_fields`).
    Value::Array(
        fields
            .iter()
            .map(|(id, v)| json!({"id": id, "field_value": v}))
            .collect(),
    )
}

/// The channels the write DTO declares (`DndSettingsSchema`, API.md §3.1), as GHL spells
/// them. Reads may carry others (`RCS`); a write naming one is refused (422), so they are
/// left out.
const DND_WRITABLE: [&str; 6] = ["Call", "Email", "SMS", "WhatsApp", "GMB", "FB"];

/// `dndSettings` for the declared channels among `channels` (matched whatever their case).
fn dnd_settings_write(channels: &BTreeMap<String, String>) -> Value {
    Value::Object(
        channels
            .iter()
            .filter_map(|(ch, status)| {
                let declared = DND_WRITABLE.iter().find(|d| d.eq_ignore_ascii_case(ch))?;
                Some(((*declared).to_owned(), json!({"status": status})))
            })
            .collect(),
    )
}

/// `CreateContactDto` / `UpsertContactDto` (API.md §3.2) for a new contact.
pub(crate) fn contact_create_body(
    location: &LocationId,
    c: &Contact,
) -> Result<Map<String, Value>, Vec<String>> {
    if c.business_id.is_some() {
        return Err(vec![
            "business_id cannot be set when creating a contact: CreateContactDto has no \
             businessId (API.md §3.2)"
                .to_owned(),
        ]);
    }
    let mut body = Map::new();
    body.insert("locationId".into(), json!(location.as_str()));
    for (field, key, _) in CONTACT_TEXT {
        if let FieldValue::Text(Some(v)) = Record::get(c, field) {
            body.insert((*key).into(), json!(v));
        }
    }
    if let Some(v) = &c.company_name {
        body.insert("companyName".into(), json!(v));
    }
    if !c.tags.is_empty() {
        body.insert("tags".into(), json!(c.tags));
    }
    if !c.custom_fields.is_empty() {
        body.insert("customFields".into(), custom_fields_write(&c.custom_fields));
    }
    if c.dnd {
        body.insert("dnd".into(), json!(true));
    }
    if !c.dnd_channels.is_empty() {
        body.insert("dndSettings".into(), dnd_settings_write(&c.dnd_channels));
    }
    Ok(body)
}

/// `UpdateContactDto` (API.md §3.2) with exactly the changed fields.
pub(crate) fn contact_update_body(
    changes: &[FieldChange],
) -> Result<Map<String, Value>, Vec<String>> {
    let mut body = Map::new();
    let mut refused = Vec::new();
    for change in changes {
        if let Some((_, key, nullable)) = CONTACT_TEXT.iter().find(|(f, _, _)| *f == change.field) {
            match &change.to {
                FieldValue::Text(Some(v)) => {
                    body.insert((*key).into(), json!(v));
                }
                FieldValue::Text(None) if *nullable => {
                    body.insert((*key).into(), Value::Null);
                }
                FieldValue::Text(None) => {
                    body.insert((*key).into(), json!(""));
                }
                other => refused.push(format!("{} cannot hold {other}", change.field)),
            }
            continue;
        }
        match (change.field, &change.from, &change.to) {
            ("dnd", _, FieldValue::Bool(b)) => {
                body.insert("dnd".into(), json!(b));
            }
            // Every declared channel the contact has, not only the changed ones: whether GHL
            // merges `dndSettings` into what it holds or replaces it is not documented, and
            // the whole set reads the same either way. A channel the change drops is sent
            // inactive.
            ("dnd_channels", from, FieldValue::Map(to)) => {
                let mut out = to.clone();
                if let FieldValue::Map(f) = from {
                    for ch in f.keys().filter(|ch| !to.contains_key(*ch)) {
                        out.insert(ch.clone(), "inactive".to_owned());
                    }
                }
                body.insert("dndSettings".into(), dnd_settings_write(&out));
            }
            ("custom_fields", from, FieldValue::Map(to)) => {
                let mut out = to.clone();
                out.retain(|id, v| match from {
                    FieldValue::Map(f) => f.get(id) != Some(v),
                    _ => true,
                });
                if let FieldValue::Map(f) = from {
                    for id in f.keys().filter(|id| !to.contains_key(*id)) {
                        out.insert(id.clone(), String::new());
                    }
                }
                body.insert("customFields".into(), custom_fields_write(&out));
            }
            ("tags", _, _) => refused.push(
                "tags change only through add_tags/remove_tags: PUT /contacts/:id overwrites the \
                 whole list (API.md §3.2)"
                    .to_owned(),
            ),
            ("company_name", _, _) => refused.push(
                "company_name cannot be changed through PUT /contacts/:id: UpdateContactDto has \
                 no companyName (API.md §3.2)"
                    .to_owned(),
            ),
            ("business_id", _, _) => refused.push(
                "business_id cannot be changed through PUT /contacts/:id: UpdateContactDto has \
                 no businessId (GHL moves contacts with POST /contacts/bulk/business)"
                    .to_owned(),
            ),
            (field, _, to) => refused.push(format!("contact field {field} cannot take {to}")),
        }
    }
    if refused.is_empty() {
        Ok(body)
    } else {
        Err(refused)
    }
}

// ------------------------------------------------------------------------------- search

const SEARCH_CURSOR: &str = "search:";
const LEGACY_CURSOR: &str = "legacy:";

/// Store GHL's `searchAfter` array as an opaque cursor.
pub(crate) fn search_cursor(values: &[Value]) -> SearchCursor {
    SearchCursor(format!("{SEARCH_CURSOR}{}", Value::from(values.to_vec())))
}

fn parse_search_cursor(c: &SearchCursor) -> Result<Vec<Value>, String> {
    let raw =
        c.0.strip_prefix(SEARCH_CURSOR)
            .ok_or_else(|| "the cursor does not come from a contact search".to_owned())?;
    match serde_json::from_str(raw) {
        Ok(Value::Array(a)) if !a.is_empty() => Ok(a),
        _ => Err(format!("the search cursor {:?} is damaged", c.0)),
    }
}

/// The deprecated list's cursor: `startAfter` (epoch ms) and `startAfterId`.
pub(crate) fn legacy_cursor(start_after: u64, start_after_id: &str) -> SearchCursor {
    SearchCursor(format!("{LEGACY_CURSOR}{start_after}:{start_after_id}"))
}

pub(crate) fn parse_legacy_cursor(c: &SearchCursor) -> Result<(u64, String), String> {
    let raw =
        c.0.strip_prefix(LEGACY_CURSOR)
            .ok_or_else(|| "the cursor does not come from the legacy contact list".to_owned())?;
    let (ms, id) = raw
        .split_once(':')
        .ok_or_else(|| format!("the legacy cursor {:?} is damaged", c.0))?;
    let ms = ms
        .parse()
        .map_err(|_| format!("the legacy cursor {:?} is damaged", c.0))?;
    Ok((ms, id.to_owned()))
}

/// The body of `POST /contacts/search` (API.md §5): `dateUpdated` ascending (GHL breaks ties
/// by id: each hit's `searchAfter` is `[dateUpdated, id]`), a `range` filter on `dateUpdated`
/// and an `eq` filter on `tags`, paged with `searchAfter`.
pub(crate) fn search_body(location: &LocationId, q: &ContactSearch) -> Result<Value, String> {
    let mut filters = Vec::new();
    if let Some(since) = &q.updated_since {
        filters.push(json!({
            "field": "dateUpdated",
            "operator": "range",
            "value": {"gte": format_time(since)},
        }));
    }
    if let Some(tag) = &q.tag {
        filters.push(json!({"field": "tags", "operator": "eq", "value": tag}));
    }
    let mut body = json!({
        "locationId": location.as_str(),
        "pageLimit": q.page_limit,
        "sort": [{"field": "dateUpdated", "direction": "asc"}],
    });
    if !filters.is_empty() {
        body["filters"] = Value::Array(filters);
    }
    if let Some(after) = &q.after {
        body["searchAfter"] = Value::Array(parse_search_cursor(after)?);
    }
    Ok(body)
}

/// The cursor after a page's last contact: its own `searchAfter`, or `[dateUpdated ms, id]`
/// when GHL left it out.
pub(crate) fn next_search_cursor(last: &ContactDto) -> Option<SearchCursor> {
    if let Some(sa) = last.search_after.as_ref().filter(|sa| !sa.is_empty()) {
        return Some(search_cursor(sa));
    }
    let ms = meta_time(last.date_updated.as_deref())?.timestamp_millis();
    Some(search_cursor(&[json!(ms), json!(last.id.clone()?)]))
}

// ------------------------------------------------------------------------------- tasks

pub(crate) fn task(dto: TaskDto, contact: Option<&GhlContactId>) -> anyhow::Result<GhlTask> {
    let id = required(dto.id, "task id", GhlTaskId::parse)?;
    let contact = match optional(dto.contact_id, "task contactId", GhlContactId::parse)? {
        Some(c) => c,
        None => contact
            .cloned()
            .ok_or_else(|| anyhow!("task {id} names no contact"))?,
    };
    let task = Task {
        title: dto.title,
        body: dto.body,
        due: synced_time(dto.due_date.as_deref(), "task dueDate")?,
        status: if dto.completed.unwrap_or(false) {
            TaskStatus::Completed
        } else {
            TaskStatus::Open
        },
        assignee: optional(dto.assigned_to, "task assignedTo", GhlUserId::parse)?,
        updated_at: meta_time(dto.date_updated.as_deref()),
    };
    Ok(GhlTask { id, contact, task })
}

/// GHL has no "cancelled": a cancelled task is shown as completed (domain `Task::project`).
fn completed(status: TaskStatus) -> bool {
    !matches!(status, TaskStatus::Open)
}

/// `CreateTaskParams {title*, body, dueDate*, completed*, assignedTo}` (API.md §4.3).
pub(crate) fn task_create_body(t: &Task) -> Result<Map<String, Value>, Vec<String>> {
    let mut missing = Vec::new();
    let title = t.title.as_deref().map(str::trim).filter(|s| !s.is_empty());
    if title.is_none() {
        missing.push("a GHL task needs a title (CreateTaskParams.title is required)".to_owned());
    }
    if t.due.is_none() {
        missing
            .push("a GHL task needs a due date (CreateTaskParams.dueDate is required)".to_owned());
    }
    let (Some(title), Some(due)) = (title, t.due) else {
        return Err(missing);
    };
    let mut body = Map::new();
    body.insert("title".into(), json!(title));
    if let Some(b) = &t.body {
        body.insert("body".into(), json!(b));
    }
    body.insert("dueDate".into(), json!(format_time(&due)));
    body.insert("completed".into(), json!(completed(t.status)));
    if let Some(a) = &t.assignee {
        body.insert("assignedTo".into(), json!(a.as_str()));
    }
    Ok(body)
}

/// `UpdateTaskBody` (API.md §4.3) with exactly the changed fields. A status change is carried
/// as `completed`, which the body allows, although callers use the `/completed` route.
pub(crate) fn task_update_body(changes: &[FieldChange]) -> Result<Map<String, Value>, Vec<String>> {
    let mut body = Map::new();
    let mut refused = Vec::new();
    for change in changes {
        match (change.field, &change.to) {
            ("title", FieldValue::Text(Some(t))) if !t.trim().is_empty() => {
                body.insert("title".into(), json!(t));
            }
            ("title", _) => refused.push("a GHL task cannot lose its title".to_owned()),
            ("body", FieldValue::Text(b)) => {
                body.insert("body".into(), json!(b.clone().unwrap_or_default()));
            }
            ("due", FieldValue::Time(Some(t))) => {
                body.insert("dueDate".into(), json!(format_time(t)));
            }
            ("due", _) => refused.push("a GHL task cannot lose its due date".to_owned()),
            ("status", FieldValue::Status(s)) => {
                body.insert("completed".into(), json!(completed(*s)));
            }
            ("assignee", FieldValue::Text(Some(a))) => {
                body.insert("assignedTo".into(), json!(a));
            }
            // `UpdateTaskBody.assignedTo` is a string the spec does not make nullable, and no
            // documented value means "nobody": refused, visibly, rather than sent as null.
            ("assignee", FieldValue::Text(None)) => refused.push(
                "a GHL task's assignee cannot be cleared: UpdateTaskBody.assignedTo is a \
                 non-nullable string"
                    .to_owned(),
            ),
            (field, to) => refused.push(format!("task field {field} cannot take {to}")),
        }
    }
    if refused.is_empty() {
        Ok(body)
    } else {
        Err(refused)
    }
}

// ------------------------------------------------------------------------------- notes

pub(crate) fn note(dto: NoteDto, contact: &GhlContactId) -> anyhow::Result<GhlNote> {
    let id = required(dto.id, "note id", GhlNoteId::parse)?;
    let contact = optional(dto.contact_id, "note contactId", GhlContactId::parse)?
        .unwrap_or_else(|| contact.clone());
    Ok(GhlNote {
        id,
        contact,
        note: Note {
            title: dto.title,
            body: dto.body,
            created: meta_time(dto.date_added.as_deref()),
        },
        user_id: dto.user_id.filter(|u| !u.is_empty()),
    })
}

/// `NotesDTO {body*, title}` / `UpdateNoteDTO` (API.md §4.4).
pub(crate) fn note_body(n: &Note) -> Result<Map<String, Value>, Vec<String>> {
    let body = n
        .body
        .as_deref()
        .filter(|b| !b.trim().is_empty())
        .ok_or_else(|| vec!["a GHL note needs a body (NotesDTO.body is required)".to_owned()])?;
    let mut out = Map::new();
    out.insert("body".into(), json!(body));
    if let Some(t) = n.title.as_deref().filter(|t| !t.is_empty()) {
        out.insert("title".into(), json!(t));
    }
    Ok(out)
}

// ------------------------------------------------------------------------------- others

pub(crate) fn appointment(
    dto: AppointmentDto,
    contact: Option<&GhlContactId>,
) -> anyhow::Result<GhlAppointment> {
    let id = required(dto.id, "appointment id", GhlAppointmentId::parse)?;
    let contact = match optional(dto.contact_id, "appointment contactId", GhlContactId::parse)? {
        Some(c) => c,
        None => contact
            .cloned()
            .ok_or_else(|| anyhow!("appointment {id} names no contact"))?,
    };
    Ok(GhlAppointment {
        id,
        contact,
        appointment: Appointment {
            title: dto.title,
            start: synced_time(dto.start_time.as_deref(), "appointment startTime")?,
            end: synced_time(dto.end_time.as_deref(), "appointment endTime")?,
            status: dto.appointment_status.or(dto.status),
            calendar_id: dto.calendar_id,
            address: dto.address,
            notes: dto.notes,
        },
        date_updated: meta_time(dto.date_updated.as_deref()),
    })
}

pub(crate) fn business(dto: BusinessDto) -> anyhow::Result<GhlBusiness> {
    let id = required(dto.id, "business id", GhlBusinessId::parse)?;
    Ok(GhlBusiness {
        id,
        business: Business {
            name: dto.name,
            phone: dto.phone,
            email: dto.email,
            website: dto.website,
            address: dto.address,
            city: dto.city,
            state: dto.state,
            postal_code: dto.postal_code,
            country: dto.country,
            description: dto.description,
        },
    })
}

/// Map a list, naming the position of the first record that does not read.
pub(crate) fn all<D, T>(
    items: Vec<D>,
    what: &str,
    mut one: impl FnMut(D) -> anyhow::Result<T>,
) -> anyhow::Result<Vec<T>> {
    items
        .into_iter()
        .enumerate()
        .map(|(i, d)| one(d).with_context(|| format!("{what} #{i}")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn loc() -> LocationId {
        LocationId::parse("loc1").unwrap()
    }

    fn change(field: &'static str, from: FieldValue, to: FieldValue) -> FieldChange {
        FieldChange { field, from, to }
    }

    #[test]
    fn custom_field_values_take_the_type_of_their_field() {
        let kinds = field_kinds(crate::dto::CustomFieldsAnswer {
            custom_fields: serde_json::from_value(json!([
                {"id": "n", "dataType": "NUMERICAL"},
                {"id": "m", "dataType": "MONETORY"},
                {"id": "c", "dataType": "CHECKBOX", "picklistOptions": ["yes"]},
                {"id": "s", "dataType": "MULTIPLE_OPTIONS",
                 "picklistOptions": ["red", "blue, navy", "green"]},
                {"id": "d", "dataType": "DATE"},
                {"id": "t", "dataType": "TEXT"}
            ]))
            .unwrap(),
        });
        let fields = BTreeMap::from(
            [
                ("n", "42"),
                ("m", "100.5"),
                ("c", "yes"),
                ("s", "blue, navy, red, violet, mauve"),
                ("d", "2026-04-10"),
                ("t", "1, 2"),
                ("unknown", "7"),
                ("cleared", ""),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned())),
        );
        let mut body = Map::new();
        body.insert("customFields".into(), custom_fields_write(&fields));
        type_custom_fields(&mut body, &kinds).unwrap();
        let value = |id: &str| {
            body["customFields"]
                .as_array()
                .unwrap()
                .iter()
                .find(|f| f["id"] == id)
                .unwrap()["field_value"]
                .clone()
        };
        assert_eq!(value("n"), json!(42.0));
        assert_eq!(value("m"), json!(100.5));
        assert_eq!(value("c"), json!(["yes"]));
        assert_eq!(
            value("s"),
            json!(["blue, navy", "red", "violet", "mauve"]),
            "a known option holding \", \" stays whole"
        );
        assert_eq!(value("d"), json!("2026-04-10"));
        assert_eq!(value("t"), json!("1, 2"), "text stays text");
        assert_eq!(value("unknown"), json!("7"));
        assert_eq!(value("cleared"), json!(""));

        let mut bad = Map::new();
        let not_a_number = BTreeMap::from([("n".to_owned(), "lots".to_owned())]);
        bad.insert("customFields".into(), custom_fields_write(&not_a_number));
        let refused = type_custom_fields(&mut bad, &kinds).unwrap_err();
        assert!(refused[0].contains("not a number"), "{refused:?}");
    }

    #[test]
    fn a_task_update_sends_no_null_the_spec_does_not_allow() {
        let text = |s: Option<&str>| FieldValue::Text(s.map(str::to_owned));
        let body = task_update_body(&[change("assignee", text(None), text(Some("u1")))]).unwrap();
        assert_eq!(body["assignedTo"], "u1");
        let refused =
            task_update_body(&[change("assignee", text(Some("u1")), text(None))]).unwrap_err();
        assert!(refused[0].contains("cannot be cleared"), "{refused:?}");
        let body = task_update_body(&[change("body", text(Some("x")), text(None))]).unwrap();
        assert_eq!(body["body"], "", "an empty body, not null");
        assert!(body.values().all(|v| !v.is_null()), "{body:?}");
    }

    #[test]
    fn appointment_times_without_zone_are_utc() {
        let t = parse_time("2021-07-16 11:00:00").unwrap();
        assert_eq!(t, Utc.with_ymd_and_hms(2021, 7, 16, 11, 0, 0).unwrap());
        assert_eq!(
            parse_time("2021-07-02T05:18:26.704Z")
                .unwrap()
                .timestamp_millis(),
            1_625_203_106_704
        );
        assert_eq!(
            parse_time("2021-07-16T11:00:00-03:00").unwrap(),
            Utc.with_ymd_and_hms(2021, 7, 16, 14, 0, 0).unwrap()
        );
        assert_eq!(
            parse_time("1736471515514").unwrap().timestamp_millis(),
            1_736_471_515_514
        );
        assert_eq!(parse_time("soon"), None);
    }

    #[test]
    fn contacts_carry_only_the_selected_custom_fields() {
        let dto: ContactDto = serde_json::from_value(json!({
            "id": "c1", "firstName": "Ana", "tags": ["vip"],
            "customFields": [{"id": "f1", "value": "x"}, {"id": "f2", "value": 3}, {"id": "f3", "value": ["a", "b"]}],
            "dndSettings": {"SMS": {"status": "active"}, "Email": {}},
            "businessId": "", "dateUpdated": "2024-01-02T03:04:05.000Z"
        }))
        .unwrap();
        let c = contact(dto, &["f2".into(), "f3".into()], &loc()).unwrap();
        assert_eq!(c.location, loc());
        assert_eq!(c.contact.first_name.as_deref(), Some("Ana"));
        assert_eq!(
            c.contact.custom_fields,
            BTreeMap::from([
                ("f2".to_owned(), "3".to_owned()),
                ("f3".to_owned(), "a, b".to_owned())
            ])
        );
        assert_eq!(
            c.contact.dnd_channels,
            BTreeMap::from([("SMS".to_owned(), "active".to_owned())])
        );
        assert_eq!(c.contact.business_id, None);
        assert!(c.contact.date_updated.is_some());
    }

    #[test]
    fn bad_ids_are_errors_not_silence() {
        let dto: ContactDto = serde_json::from_value(json!({"id": "a b"})).unwrap();
        assert!(contact(dto, &[], &loc()).is_err());
        let dto: ContactDto = serde_json::from_value(json!({})).unwrap();
        assert!(contact(dto, &[], &loc()).is_err());
    }

    #[test]
    fn updates_carry_only_changed_fields() {
        let body = contact_update_body(&[
            change(
                "email",
                FieldValue::Text(None),
                FieldValue::Text(Some("a@x.com".into())),
            ),
            change(
                "city",
                FieldValue::Text(Some("X".into())),
                FieldValue::Text(None),
            ),
            change(
                "postal_code",
                FieldValue::Text(Some("1".into())),
                FieldValue::Text(None),
            ),
            change(
                "custom_fields",
                FieldValue::Map(BTreeMap::from([
                    ("a".into(), "1".into()),
                    ("b".into(), "2".into()),
                ])),
                FieldValue::Map(BTreeMap::from([
                    ("a".into(), "1".into()),
                    ("c".into(), "3".into()),
                ])),
            ),
            change("dnd", FieldValue::Bool(false), FieldValue::Bool(true)),
        ])
        .unwrap();
        assert_eq!(
            Value::Object(body),
            json!({
                "email": "a@x.com", "city": null, "postalCode": "",
                "customFields": [{"id": "b", "field_value": ""}, {"id": "c", "field_value": "3"}],
                "dnd": true,
            })
        );
    }

    #[test]
    fn updates_refuse_what_put_cannot_do() {
        let err = contact_update_body(&[
            change(
                "tags",
                FieldValue::List(vec![]),
                FieldValue::List(vec!["x".into()]),
            ),
            change(
                "company_name",
                FieldValue::Text(None),
                FieldValue::Text(Some("A".into())),
            ),
        ])
        .unwrap_err();
        assert_eq!(err.len(), 2);
        assert!(err[0].contains("add_tags"));
    }

    #[test]
    fn creates_need_what_ghl_requires() {
        assert_eq!(task_create_body(&Task::default()).unwrap_err().len(), 2);
        let due = Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).unwrap();
        let body = task_create_body(&Task {
            title: Some("Call".into()),
            due: Some(due),
            status: TaskStatus::Cancelled,
            ..Task::default()
        })
        .unwrap();
        assert_eq!(
            Value::Object(body),
            json!({"title": "Call", "dueDate": "2024-05-01T12:00:00.000Z", "completed": true})
        );
        assert!(note_body(&Note::default()).is_err());
        let c = contact_create_body(
            &loc(),
            &Contact {
                name: Some("Ana".into()),
                company_name: Some("ACME".into()),
                ..Contact::default()
            },
        )
        .unwrap();
        assert_eq!(
            Value::Object(c),
            json!({"locationId": "loc1", "name": "Ana", "companyName": "ACME"})
        );
    }

    #[test]
    fn cursors_round_trip() {
        let c = search_cursor(&[json!(1_736_471_515_514_i64), json!("VU1SPQwBqbfa1z9MyaDl")]);
        let body = search_body(
            &loc(),
            &ContactSearch {
                page_limit: 100,
                after: Some(c),
                tag: Some("ekyte".into()),
                updated_since: Some(Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap()),
            },
        )
        .unwrap();
        assert_eq!(
            body["searchAfter"],
            json!([1_736_471_515_514_i64, "VU1SPQwBqbfa1z9MyaDl"])
        );
        assert_eq!(
            body["filters"][0]["value"]["gte"],
            "2024-01-01T00:00:00.000Z"
        );
        assert_eq!(
            body["filters"][1],
            json!({"field": "tags", "operator": "eq", "value": "ekyte"})
        );
        let l = legacy_cursor(17, "abc");
        assert_eq!(parse_legacy_cursor(&l).unwrap(), (17, "abc".to_owned()));
        assert!(parse_legacy_cursor(&search_cursor(&[json!(1)])).is_err());
        assert!(parse_search_cursor(&SearchCursor("search:[".into())).is_err());
    }

    #[test]
    fn tasks_need_their_contact() {
        let dto: TaskDto = serde_json::from_value(json!({"id": "t1", "completed": true})).unwrap();
        assert!(task(dto.clone(), None).is_err());
        let c = GhlContactId::parse("c1").unwrap();
        let t = task(dto, Some(&c)).unwrap();
        assert_eq!(t.contact, c);
        assert_eq!(t.task.status, TaskStatus::Completed);
    }
}
