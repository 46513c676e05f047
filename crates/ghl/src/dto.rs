//! GHL's JSON as it travels (API.md §3–§7), private to the adapter.
//!
//! Read types are lenient where GHL is known to vary: every optional text field accepts a
//! string, a number or a boolean (and `null`), unknown fields are ignored, and lists may be
//! missing or `null`. Field names mirror GHL's spellings, typos included (`succeded`,
//! `buiseness`). Write bodies are built in `mapping.rs` as JSON maps, so that an update carries
//! exactly the changed fields.

use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// `null`, a string, a number or a boolean → `Option<String>`; anything else is an error.
fn text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(Value::Bool(b)) => Some(b.to_string()),
        Some(other) => {
            return Err(serde::de::Error::custom(format!(
                "expected text, got {other}"
            )));
        }
    })
}

/// A list that may be missing or `null`.
fn list<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

/// A boolean that may come as `"true"`/`"false"`.
fn flag<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    Ok(match Option::<Value>::deserialize(d)? {
        Some(Value::Bool(b)) => Some(b),
        Some(Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    })
}

/// A count that may come as a number or a numeric string.
fn count<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Ok(match Option::<Value>::deserialize(d)? {
        Some(Value::Number(n)) => n.as_u64().or_else(|| n.as_f64().map(|f| f as u64)),
        Some(Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    })
}

// ------------------------------------------------------------------------------- contacts

/// `GetContectByIdSchema` (sic) and the list item shapes (API.md §3.1, §4.1).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ContactDto {
    #[serde(default, deserialize_with = "text")]
    pub id: Option<String>,
    #[serde(default, deserialize_with = "text")]
    pub location_id: Option<String>,
    #[serde(default, deserialize_with = "text")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "text")]
    pub first_name: Option<String>,
    #[serde(default, deserialize_with = "text")]
    pub last_name: Option<String>,
    #[serde(default, deserialize_with = "text")]
    pub email: Option<String>,
    #[serde(default, deserialize_with = "text")]
    pub phone: Option<String>,
    #[serde(default, deserialize_with = "text")]
    pub company_name: Option<String>,
    #[serde(default, deserialize_with = "text")]
    pub address1: Option<String>,
    #[serde(default, deserialize_with = "text")]
    pub city: Option<String>,
    #[serde(default, deserialize_with = "text")]
    pub state: Option<String>,
    #[serde(default, deserialize_with = "text")]
    pub postal_code: Option<String>,
    #[serde(default, deserialize_with = "text")]
    pub country: Option<String>,
    #[serde(default, deserialize_with = "text")]
    pub website: Option<String>,
    #[serde(default, deserialize_with = "text")]
    pub timezone: Option<String>,
    #[serde(default, deserialize_with = "list")]
    pub tags: Vec<String>,
    /// Read shape `[{id, value}]`; `value` varies by field kind (API.md §3.1).
    #[serde(default, deserialize_with = "list")]
    pub custom_fields: Vec<CustomFieldValueDto>,
    #[serde(default, deserialize_with = "text")]
    pub business_id: Option<String>,
    #[serde(default, deserialize_with = "text")]
    pub assigned_to: Option<String>,
    #[serde(default, deserialize_with = "flag")]
    pub dnd: Option<bool>,
    /// Channel (`Call`, `Email`, `SMS`, `WhatsApp`, `GMB`, `FB`, and `RCS` in practice) →
    /// `{status, code, message}` (API.md §3.1). Kept raw: its shape varies between payloads.
    #[serde(default)]
    pub dnd_settings: Option<Value>,
    #[serde(default, deserialize_with = "text")]
    pub date_added: Option<String>,
    #[serde(default, deserialize_with = "text")]
    pub date_updated: Option<String>,
    /// The search cursor of this contact: `[sortValue…, id]` (API.md §5).
    #[serde(default)]
    pub search_after: Option<Vec<Value>>,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct CustomFieldValueDto {
    #[serde(default, deserialize_with = "text")]
    pub id: Option<String>,
    #[serde(default)]
    pub value: Value,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ContactEnvelope {
    pub contact: ContactDto,
}

/// `POST /contacts/upsert` → `{new, contact, traceId}`.
#[derive(Debug, Deserialize)]
pub(crate) struct UpsertAnswer {
    #[serde(default, deserialize_with = "flag")]
    pub new: Option<bool>,
    pub contact: ContactDto,
}

/// `PUT /contacts/{id}` → `{succeded, contact}` (sic).
#[derive(Debug, Deserialize)]
pub(crate) struct UpdateAnswer {
    #[serde(default, deserialize_with = "flag")]
    pub succeded: Option<bool>,
    pub contact: Option<ContactDto>,
}

/// `DELETE …` → `{succeded}` (sic, \[C2\]).
#[derive(Debug, Deserialize)]
pub(crate) struct DeleteAnswer {
    #[serde(default, deserialize_with = "flag")]
    pub succeded: Option<bool>,
}

/// `POST /contacts/search` → `{contacts, total, traceId}` (API.md §5, #289).
#[derive(Debug, Deserialize)]
pub(crate) struct SearchAnswer {
    #[serde(default, deserialize_with = "list")]
    pub contacts: Vec<ContactDto>,
    #[serde(default, deserialize_with = "count")]
    pub total: Option<u64>,
}

/// `GET /contacts/` (deprecated) and `GET /contacts/business/{id}` → `{contacts, count, meta}`.
#[derive(Debug, Deserialize)]
pub(crate) struct ListAnswer {
    #[serde(default, deserialize_with = "list")]
    pub contacts: Vec<ContactDto>,
    #[serde(default, deserialize_with = "count")]
    pub count: Option<u64>,
    #[serde(default)]
    pub meta: Option<ListMetaDto>,
}

/// `ContactsMetaSchema` (\[C2\]): the deprecated list's cursor.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ListMetaDto {
    #[serde(default, deserialize_with = "count")]
    pub total: Option<u64>,
    #[serde(default, deserialize_with = "count")]
    pub start_after: Option<u64>,
    #[serde(default, deserialize_with = "text")]
    pub start_after_id: Option<String>,
}

/// `GET /contacts/search/duplicate` (no schema in the spec): `{contact}` or `{contact: null}`.
#[derive(Debug, Deserialize)]
pub(crate) struct DuplicateAnswer {
    #[serde(default)]
    pub contact: Option<ContactDto>,
}

/// `{tags}` of both tag endpoints (API.md §4.2).
#[derive(Debug, Deserialize)]
pub(crate) struct TagsAnswer {
    #[serde(default, deserialize_with = "list")]
    pub tags: Vec<String>,
}

// ------------------------------------------------------------------------------- tasks, notes

/// `TaskSchema` (API.md §4.3), plus the dates the location search adds.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TaskDto {
    #[serde(default, deserialize_with = "text")]
    pub id: Option<String>,
    #[serde(default, deserialize_with = "text")]
    pub title: Option<String>,
    #[serde(default, deserialize_with = "text")]
    pub body: Option<String>,
    #[serde(default, deserialize_with = "text")]
    pub assigned_to: Option<String>,
    #[serde(default, deserialize_with = "text")]
    pub due_date: Option<String>,
    #[serde(default, deserialize_with = "flag")]
    pub completed: Option<bool>,
    #[serde(default, deserialize_with = "text")]
    pub contact_id: Option<String>,
    #[serde(default, deserialize_with = "text")]
    pub date_updated: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct TaskEnvelope {
    pub task: TaskDto,
}

#[derive(Debug, Deserialize)]
pub(crate) struct TasksAnswer {
    #[serde(default, deserialize_with = "list")]
    pub tasks: Vec<TaskDto>,
}

/// `GetNoteSchema` (API.md §4.4).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct NoteDto {
    #[serde(default, deserialize_with = "text")]
    pub id: Option<String>,
    #[serde(default, deserialize_with = "text")]
    pub body: Option<String>,
    #[serde(default, deserialize_with = "text")]
    pub title: Option<String>,
    #[serde(default, deserialize_with = "text")]
    pub user_id: Option<String>,
    #[serde(default, deserialize_with = "text")]
    pub date_added: Option<String>,
    #[serde(default, deserialize_with = "text")]
    pub contact_id: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct NoteEnvelope {
    pub note: NoteDto,
}

#[derive(Debug, Deserialize)]
pub(crate) struct NotesAnswer {
    #[serde(default, deserialize_with = "list")]
    pub notes: Vec<NoteDto>,
}

// ------------------------------------------------------------------------------- appointments

/// `GetEventSchema` (\[C2\], times `YYYY-MM-DD HH:mm:ss`) and `CalendarEventDTO` (\[CAL2\], ISO
/// times) share these fields (API.md §4.5).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AppointmentDto {
    #[serde(default, deserialize_with = "text")]
    pub id: Option<String>,
    #[serde(default, deserialize_with = "text")]
    pub title: Option<String>,
    #[serde(default, deserialize_with = "text")]
    pub calendar_id: Option<String>,
    #[serde(default, deserialize_with = "text")]
    pub contact_id: Option<String>,
    #[serde(default, deserialize_with = "text")]
    pub status: Option<String>,
    #[serde(default, deserialize_with = "text")]
    pub appointment_status: Option<String>,
    #[serde(default, deserialize_with = "text")]
    pub address: Option<String>,
    #[serde(default, deserialize_with = "text")]
    pub notes: Option<String>,
    #[serde(default, deserialize_with = "text")]
    pub start_time: Option<String>,
    #[serde(default, deserialize_with = "text")]
    pub end_time: Option<String>,
    #[serde(default, deserialize_with = "text")]
    pub date_updated: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct EventsAnswer {
    #[serde(default, deserialize_with = "list")]
    pub events: Vec<AppointmentDto>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct EventEnvelope {
    pub event: AppointmentDto,
}

/// `GET /calendars/` ([CAL2] `CalendarsGetSuccessfulResponseDTO`): only the ids are used.
#[derive(Debug, Deserialize)]
pub(crate) struct CalendarsAnswer {
    #[serde(default, deserialize_with = "list")]
    pub calendars: Vec<CalendarDto>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct CalendarDto {
    #[serde(default)]
    pub id: Option<String>,
}

// ------------------------------------------------------------------------------- businesses

/// `BusinessDto` (\[B2\], API.md §4.6).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct BusinessDto {
    #[serde(default, deserialize_with = "text")]
    pub id: Option<String>,
    #[serde(default, deserialize_with = "text")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "text")]
    pub phone: Option<String>,
    #[serde(default, deserialize_with = "text")]
    pub email: Option<String>,
    #[serde(default, deserialize_with = "text")]
    pub website: Option<String>,
    #[serde(default, deserialize_with = "text")]
    pub address: Option<String>,
    #[serde(default, deserialize_with = "text")]
    pub city: Option<String>,
    #[serde(default, deserialize_with = "text")]
    pub state: Option<String>,
    #[serde(default, deserialize_with = "text")]
    pub postal_code: Option<String>,
    #[serde(default, deserialize_with = "text")]
    pub country: Option<String>,
    #[serde(default, deserialize_with = "text")]
    pub description: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct LocationEnvelope {
    pub location: LocationDto,
}

/// `GetLocationByIdSchema` ([LOC2]): the fields this service keeps.
#[derive(Debug, Deserialize)]
pub(crate) struct LocationDto {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub timezone: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct BusinessEnvelope {
    pub business: BusinessDto,
}

// ------------------------------------------------------------------------------- OAuth

/// `POST /oauth/token` → `GetAccessCodeSuccessfulResponseDto` (\[O2\], API.md §7).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TokenAnswer {
    #[serde(rename = "access_token")]
    pub access_token: String,
    #[serde(default, rename = "refresh_token", deserialize_with = "text")]
    pub refresh_token: Option<String>,
    #[serde(default, rename = "expires_in", deserialize_with = "count")]
    pub expires_in: Option<u64>,
    /// Space-separated.
    #[serde(default, deserialize_with = "text")]
    pub scope: Option<String>,
    #[serde(default, deserialize_with = "text")]
    pub user_type: Option<String>,
    #[serde(default, deserialize_with = "text")]
    pub location_id: Option<String>,
    #[serde(default, deserialize_with = "text")]
    pub company_id: Option<String>,
    #[serde(default, deserialize_with = "text")]
    pub user_id: Option<String>,
    /// Agency installs: the install covers the company's future locations.
    #[serde(default, deserialize_with = "flag")]
    pub install_to_future_locations: Option<bool>,
}

/// `GET /oauth/installedLocations` (\[O2\], API.md §7).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct InstalledLocationsAnswer {
    #[serde(default, deserialize_with = "list")]
    pub locations: Vec<InstalledLocationDto>,
    #[serde(default, deserialize_with = "count")]
    pub count: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct InstalledLocationDto {
    #[serde(rename = "_id", deserialize_with = "text")]
    pub id: Option<String>,
    #[serde(default, deserialize_with = "text")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "flag")]
    pub is_installed: Option<bool>,
}

impl TokenAnswer {
    pub fn scopes(&self) -> Vec<String> {
        self.scope
            .as_deref()
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contacts_read_leniently() {
        let c: ContactDto = serde_json::from_str(
            r#"{"id":"c1","postalCode":35061,"tags":null,"dnd":"true","customFields":[{"id":"f","value":[1,2]}],
                "dndSettings":{"SMS":{"status":"active","message":"x"},"RCS":null},"unknownThing":{"a":1}}"#,
        )
        .unwrap();
        assert_eq!(c.postal_code.as_deref(), Some("35061"));
        assert!(c.tags.is_empty());
        assert_eq!(c.dnd, Some(true));
        assert_eq!(c.custom_fields.len(), 1);
        assert_eq!(c.dnd_settings.unwrap()["SMS"]["status"], "active");
    }

    #[test]
    fn ghl_spellings_are_mirrored() {
        let a: DeleteAnswer = serde_json::from_str(r#"{"succeded":true}"#).unwrap();
        assert_eq!(a.succeded, Some(true));
        let u: UpdateAnswer =
            serde_json::from_str(r#"{"succeded":true,"contact":{"id":"c"}}"#).unwrap();
        assert_eq!(u.contact.unwrap().id.as_deref(), Some("c"));
    }

    #[test]
    fn token_answers_split_scopes() {
        let t: TokenAnswer = serde_json::from_str(
            r#"{"access_token":"a","refresh_token":"r","expires_in":86399,"scope":"contacts.readonly contacts.write","userType":"Location","locationId":"l"}"#,
        )
        .unwrap();
        assert_eq!(t.scopes(), vec!["contacts.readonly", "contacts.write"]);
        assert_eq!(t.expires_in, Some(86_399));
    }
}

/// `GET /locations/{locationId}/customFields` (API.md §3.3): the fields' ids and kinds.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CustomFieldsAnswer {
    #[serde(default)]
    pub custom_fields: Vec<CustomFieldDef>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CustomFieldDef {
    pub id: String,
    #[serde(default)]
    pub data_type: Option<String>,
    #[serde(default)]
    pub picklist_options: Option<Vec<Value>>,
}
