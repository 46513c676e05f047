//! The canonical records: what a contact, task, note, appointment and business are, whichever
//! side they were read from (GHL API.md §3–§4, eKyte API.md §3–§7).
//!
//! Fields marked *metadata* (`date_updated`, `created`) describe a record but are not synced:
//! they are not in `field_names`, so they never cause a write and never change a fingerprint.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::{GhlBusinessId, GhlUserId};
use crate::normalise as n;
use crate::record::{EntityKind, FieldValue, NormaliseCtx, Record, Side, TaskStatus, wrong_shape};

macro_rules! text_field {
    ($self:ident, $value:ident, $field:ident, $kind:expr, $name:expr) => {
        match $value {
            FieldValue::Text(v) => $self.$field = v,
            other => wrong_shape($kind, $name, &other),
        }
    };
}

fn id_text<T: ToString>(v: &Option<T>) -> FieldValue {
    FieldValue::Text(v.as_ref().map(ToString::to_string))
}

fn parse_id<T>(kind: EntityKind, name: &str, value: FieldValue, slot: &mut Option<T>)
where
    T: std::str::FromStr,
{
    match value {
        FieldValue::Text(None) => *slot = None,
        FieldValue::Text(Some(s)) => match s.parse() {
            Ok(id) => *slot = Some(id),
            Err(_) => wrong_shape(kind, name, &FieldValue::Text(Some(s))),
        },
        other => wrong_shape(kind, name, &other),
    }
}

/// A GHL contact in canonical form.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    /// The full name. GHL derives it from first and last names when absent; so does
    /// normalisation. It is what an eKyte workspace is named after.
    pub name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub company_name: Option<String>,
    pub address1: Option<String>,
    pub city: Option<String>,
    pub state: Option<String>,
    pub postal_code: Option<String>,
    pub country: Option<String>,
    pub website: Option<String>,
    pub timezone: Option<String>,
    pub tags: Vec<String>,
    /// The custom fields the tenant selected for sync: field id → value as text.
    pub custom_fields: BTreeMap<String, String>,
    pub business_id: Option<GhlBusinessId>,
    pub assigned_to: Option<GhlUserId>,
    /// The global do-not-disturb flag.
    pub dnd: bool,
    /// Per-channel do-not-disturb: channel (`Call`, `Email`, `SMS`, …) → status.
    pub dnd_channels: BTreeMap<String, String>,
    /// Metadata: GHL's `dateUpdated`.
    #[serde(default)]
    pub date_updated: Option<DateTime<Utc>>,
}

impl Contact {
    pub const FIELDS: &'static [&'static str] = &[
        "first_name",
        "last_name",
        "name",
        "email",
        "phone",
        "company_name",
        "address1",
        "city",
        "state",
        "postal_code",
        "country",
        "website",
        "timezone",
        "tags",
        "custom_fields",
        "business_id",
        "assigned_to",
        "dnd",
        "dnd_channels",
    ];

    /// The best name to show for this contact.
    pub fn display_name(&self) -> String {
        self.name
            .clone()
            .or_else(|| self.company_name.clone())
            .or_else(|| self.email.clone())
            .or_else(|| self.phone.clone())
            .unwrap_or_else(|| "(unnamed contact)".to_owned())
    }
}

impl Record for Contact {
    const KIND: EntityKind = EntityKind::Contact;

    fn field_names() -> &'static [&'static str] {
        Self::FIELDS
    }

    fn get(&self, field: &str) -> FieldValue {
        match field {
            "first_name" => FieldValue::Text(self.first_name.clone()),
            "last_name" => FieldValue::Text(self.last_name.clone()),
            "name" => FieldValue::Text(self.name.clone()),
            "email" => FieldValue::Text(self.email.clone()),
            "phone" => FieldValue::Text(self.phone.clone()),
            "company_name" => FieldValue::Text(self.company_name.clone()),
            "address1" => FieldValue::Text(self.address1.clone()),
            "city" => FieldValue::Text(self.city.clone()),
            "state" => FieldValue::Text(self.state.clone()),
            "postal_code" => FieldValue::Text(self.postal_code.clone()),
            "country" => FieldValue::Text(self.country.clone()),
            "website" => FieldValue::Text(self.website.clone()),
            "timezone" => FieldValue::Text(self.timezone.clone()),
            "tags" => FieldValue::List(self.tags.clone()),
            "custom_fields" => FieldValue::Map(self.custom_fields.clone()),
            "business_id" => id_text(&self.business_id),
            "assigned_to" => id_text(&self.assigned_to),
            "dnd" => FieldValue::Bool(self.dnd),
            "dnd_channels" => FieldValue::Map(self.dnd_channels.clone()),
            other => unknown_field(Self::KIND, other),
        }
    }

    fn set(&mut self, field: &str, value: FieldValue) {
        const K: EntityKind = EntityKind::Contact;
        match (field, value) {
            ("first_name", v) => text_field!(self, v, first_name, K, field),
            ("last_name", v) => text_field!(self, v, last_name, K, field),
            ("name", v) => text_field!(self, v, name, K, field),
            ("email", v) => text_field!(self, v, email, K, field),
            ("phone", v) => text_field!(self, v, phone, K, field),
            ("company_name", v) => text_field!(self, v, company_name, K, field),
            ("address1", v) => text_field!(self, v, address1, K, field),
            ("city", v) => text_field!(self, v, city, K, field),
            ("state", v) => text_field!(self, v, state, K, field),
            ("postal_code", v) => text_field!(self, v, postal_code, K, field),
            ("country", v) => text_field!(self, v, country, K, field),
            ("website", v) => text_field!(self, v, website, K, field),
            ("timezone", v) => text_field!(self, v, timezone, K, field),
            ("tags", FieldValue::List(v)) => self.tags = v,
            ("custom_fields", FieldValue::Map(v)) => self.custom_fields = v,
            ("business_id", v) => parse_id(K, field, v, &mut self.business_id),
            ("assigned_to", v) => parse_id(K, field, v, &mut self.assigned_to),
            ("dnd", FieldValue::Bool(v)) => self.dnd = v,
            ("dnd_channels", FieldValue::Map(v)) => self.dnd_channels = v,
            (f, v) => wrong_shape(K, f, &v),
        }
    }

    fn empty() -> Self {
        Self::default()
    }

    /// eKyte keeps a contact as a workspace, which has a name and nothing else we can read
    /// back; everything else reaches eKyte through the rendered profile note.
    fn carries(side: Side, field: &str) -> bool {
        match side {
            Side::Ghl => true,
            Side::Ekyte => field == "name",
        }
    }

    fn normalised(&self, ctx: &NormaliseCtx) -> Self {
        let first_name = n::opt_line(self.first_name.as_deref());
        let last_name = n::opt_line(self.last_name.as_deref());
        let name = n::opt_line(self.name.as_deref()).or_else(|| {
            let joined = [first_name.as_deref(), last_name.as_deref()]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" ");
            n::line(&joined)
        });
        Self {
            first_name,
            last_name,
            name,
            email: n::email(self.email.as_deref()),
            phone: n::phone(self.phone.as_deref(), ctx.phone_region),
            company_name: n::opt_line(self.company_name.as_deref()),
            address1: n::opt_line(self.address1.as_deref()),
            city: n::opt_line(self.city.as_deref()),
            state: n::opt_line(self.state.as_deref()),
            postal_code: n::opt_line(self.postal_code.as_deref()),
            country: n::country(self.country.as_deref()),
            website: n::opt_line(self.website.as_deref()),
            timezone: n::opt_line(self.timezone.as_deref()),
            tags: n::tags(&self.tags),
            custom_fields: self
                .custom_fields
                .iter()
                .filter_map(|(k, v)| Some((n::line(k)?, n::opt_text_body(Some(v))?)))
                .collect(),
            business_id: self.business_id.clone(),
            assigned_to: self.assigned_to.clone(),
            dnd: self.dnd,
            dnd_channels: self
                .dnd_channels
                .iter()
                .filter_map(|(k, v)| Some((n::line(k)?, n::line(v)?.to_lowercase())))
                .collect(),
            date_updated: n::opt_instant(self.date_updated),
        }
    }
}

/// A task, GHL's (`title, body, dueDate, completed, assignedTo`) or eKyte's (`Title,
/// Description, CurrentDueDate, situation`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    pub title: Option<String>,
    /// Canonical plain text (see `normalise`).
    pub body: Option<String>,
    pub due: Option<DateTime<Utc>>,
    pub status: TaskStatus,
    /// GHL user the task is assigned to. eKyte picks executors from the task type's workflow
    /// and cannot take an assignee through its API key, so eKyte does not carry this field.
    pub assignee: Option<GhlUserId>,
    /// Metadata: when the side last changed the task, if it says.
    #[serde(default)]
    pub updated_at: Option<DateTime<Utc>>,
}

impl Default for Task {
    fn default() -> Self {
        Self {
            title: None,
            body: None,
            due: None,
            status: TaskStatus::Open,
            assignee: None,
            updated_at: None,
        }
    }
}

impl Task {
    pub const FIELDS: &'static [&'static str] = &["title", "body", "due", "status", "assignee"];
}

impl Record for Task {
    const KIND: EntityKind = EntityKind::Task;

    fn field_names() -> &'static [&'static str] {
        Self::FIELDS
    }

    fn get(&self, field: &str) -> FieldValue {
        match field {
            "title" => FieldValue::Text(self.title.clone()),
            "body" => FieldValue::Text(self.body.clone()),
            "due" => FieldValue::Time(self.due),
            "status" => FieldValue::Status(self.status),
            "assignee" => id_text(&self.assignee),
            other => unknown_field(Self::KIND, other),
        }
    }

    fn set(&mut self, field: &str, value: FieldValue) {
        const K: EntityKind = EntityKind::Task;
        match (field, value) {
            ("title", v) => text_field!(self, v, title, K, field),
            ("body", v) => text_field!(self, v, body, K, field),
            ("due", FieldValue::Time(v)) => self.due = v,
            ("status", FieldValue::Status(v)) => self.status = v,
            ("assignee", v) => parse_id(K, field, v, &mut self.assignee),
            (f, v) => wrong_shape(K, f, &v),
        }
    }

    fn empty() -> Self {
        Self::default()
    }

    fn carries(side: Side, field: &str) -> bool {
        !(side == Side::Ekyte && field == "assignee")
    }

    /// GHL has only `completed: bool`: a cancelled task shows there as completed.
    fn project_value(side: Side, field: &str, value: FieldValue) -> FieldValue {
        match (side, field, value) {
            (Side::Ghl, "status", FieldValue::Status(TaskStatus::Cancelled)) => {
                FieldValue::Status(TaskStatus::Completed)
            }
            (_, _, v) => v,
        }
    }

    fn normalised(&self, _ctx: &NormaliseCtx) -> Self {
        Self {
            title: n::opt_line(self.title.as_deref()),
            body: n::opt_text_body(self.body.as_deref()),
            due: n::opt_instant(self.due),
            status: self.status,
            assignee: self.assignee.clone(),
            updated_at: n::opt_instant(self.updated_at),
        }
    }
}

/// A note: a GHL contact note (`body`, `title`) or an eKyte board note (`Title`, `Content`).
/// An eKyte task comment flowing back to GHL is a note too.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Note {
    pub title: Option<String>,
    /// Canonical plain text.
    pub body: Option<String>,
    /// Metadata: when it was written.
    #[serde(default)]
    pub created: Option<DateTime<Utc>>,
}

impl Note {
    pub const FIELDS: &'static [&'static str] = &["title", "body"];
}

impl Record for Note {
    const KIND: EntityKind = EntityKind::Note;

    fn field_names() -> &'static [&'static str] {
        Self::FIELDS
    }

    fn get(&self, field: &str) -> FieldValue {
        match field {
            "title" => FieldValue::Text(self.title.clone()),
            "body" => FieldValue::Text(self.body.clone()),
            other => unknown_field(Self::KIND, other),
        }
    }

    fn set(&mut self, field: &str, value: FieldValue) {
        const K: EntityKind = EntityKind::Note;
        match (field, value) {
            ("title", v) => text_field!(self, v, title, K, field),
            ("body", v) => text_field!(self, v, body, K, field),
            (f, v) => wrong_shape(K, f, &v),
        }
    }

    fn empty() -> Self {
        Self::default()
    }

    fn normalised(&self, _ctx: &NormaliseCtx) -> Self {
        Self {
            title: n::opt_line(self.title.as_deref()),
            body: n::opt_text_body(self.body.as_deref()),
            created: n::opt_instant(self.created),
        }
    }
}

/// A GHL appointment, shown in the contact's unified view in eKyte (M7). One-way.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Appointment {
    pub title: Option<String>,
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
    /// GHL's `appointmentStatus` (`confirmed`, `cancelled`, `showed`, …), lower-case.
    pub status: Option<String>,
    pub calendar_id: Option<String>,
    pub address: Option<String>,
    pub notes: Option<String>,
}

impl Appointment {
    pub const FIELDS: &'static [&'static str] = &[
        "title",
        "start",
        "end",
        "status",
        "calendar_id",
        "address",
        "notes",
    ];
}

impl Record for Appointment {
    const KIND: EntityKind = EntityKind::Appointment;

    fn field_names() -> &'static [&'static str] {
        Self::FIELDS
    }

    fn get(&self, field: &str) -> FieldValue {
        match field {
            "title" => FieldValue::Text(self.title.clone()),
            "start" => FieldValue::Time(self.start),
            "end" => FieldValue::Time(self.end),
            "status" => FieldValue::Text(self.status.clone()),
            "calendar_id" => FieldValue::Text(self.calendar_id.clone()),
            "address" => FieldValue::Text(self.address.clone()),
            "notes" => FieldValue::Text(self.notes.clone()),
            other => unknown_field(Self::KIND, other),
        }
    }

    fn set(&mut self, field: &str, value: FieldValue) {
        const K: EntityKind = EntityKind::Appointment;
        match (field, value) {
            ("title", v) => text_field!(self, v, title, K, field),
            ("start", FieldValue::Time(v)) => self.start = v,
            ("end", FieldValue::Time(v)) => self.end = v,
            ("status", v) => text_field!(self, v, status, K, field),
            ("calendar_id", v) => text_field!(self, v, calendar_id, K, field),
            ("address", v) => text_field!(self, v, address, K, field),
            ("notes", v) => text_field!(self, v, notes, K, field),
            (f, v) => wrong_shape(K, f, &v),
        }
    }

    fn empty() -> Self {
        Self::default()
    }

    fn carries(side: Side, _field: &str) -> bool {
        side == Side::Ghl
    }

    fn normalised(&self, _ctx: &NormaliseCtx) -> Self {
        Self {
            title: n::opt_line(self.title.as_deref()),
            start: n::opt_instant(self.start),
            end: n::opt_instant(self.end),
            status: n::opt_line(self.status.as_deref()).map(|s| s.to_lowercase()),
            calendar_id: n::opt_line(self.calendar_id.as_deref()),
            address: n::opt_line(self.address.as_deref()),
            notes: n::opt_text_body(self.notes.as_deref()),
        }
    }
}

/// A GHL business (`BusinessDto`). Shown in the unified view; names the shared workspace
/// when workspaces are kept per business.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Business {
    pub name: Option<String>,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub website: Option<String>,
    pub address: Option<String>,
    pub city: Option<String>,
    pub state: Option<String>,
    pub postal_code: Option<String>,
    pub country: Option<String>,
    pub description: Option<String>,
}

impl Business {
    pub const FIELDS: &'static [&'static str] = &[
        "name",
        "phone",
        "email",
        "website",
        "address",
        "city",
        "state",
        "postal_code",
        "country",
        "description",
    ];
}

impl Record for Business {
    const KIND: EntityKind = EntityKind::Business;

    fn field_names() -> &'static [&'static str] {
        Self::FIELDS
    }

    fn get(&self, field: &str) -> FieldValue {
        match field {
            "name" => FieldValue::Text(self.name.clone()),
            "phone" => FieldValue::Text(self.phone.clone()),
            "email" => FieldValue::Text(self.email.clone()),
            "website" => FieldValue::Text(self.website.clone()),
            "address" => FieldValue::Text(self.address.clone()),
            "city" => FieldValue::Text(self.city.clone()),
            "state" => FieldValue::Text(self.state.clone()),
            "postal_code" => FieldValue::Text(self.postal_code.clone()),
            "country" => FieldValue::Text(self.country.clone()),
            "description" => FieldValue::Text(self.description.clone()),
            other => unknown_field(Self::KIND, other),
        }
    }

    fn set(&mut self, field: &str, value: FieldValue) {
        const K: EntityKind = EntityKind::Business;
        match (field, value) {
            ("name", v) => text_field!(self, v, name, K, field),
            ("phone", v) => text_field!(self, v, phone, K, field),
            ("email", v) => text_field!(self, v, email, K, field),
            ("website", v) => text_field!(self, v, website, K, field),
            ("address", v) => text_field!(self, v, address, K, field),
            ("city", v) => text_field!(self, v, city, K, field),
            ("state", v) => text_field!(self, v, state, K, field),
            ("postal_code", v) => text_field!(self, v, postal_code, K, field),
            ("country", v) => text_field!(self, v, country, K, field),
            ("description", v) => text_field!(self, v, description, K, field),
            (f, v) => wrong_shape(K, f, &v),
        }
    }

    fn empty() -> Self {
        Self::default()
    }

    /// A business's workspace carries its name.
    fn carries(side: Side, field: &str) -> bool {
        side == Side::Ghl || field == "name"
    }

    fn normalised(&self, ctx: &NormaliseCtx) -> Self {
        Self {
            name: n::opt_line(self.name.as_deref()),
            phone: n::phone(self.phone.as_deref(), ctx.phone_region),
            email: n::email(self.email.as_deref()),
            website: n::opt_line(self.website.as_deref()),
            address: n::opt_line(self.address.as_deref()),
            city: n::opt_line(self.city.as_deref()),
            state: n::opt_line(self.state.as_deref()),
            postal_code: n::opt_line(self.postal_code.as_deref()),
            country: n::country(self.country.as_deref()),
            description: n::opt_text_body(self.description.as_deref()),
        }
    }
}

fn unknown_field(kind: EntityKind, field: &str) -> FieldValue {
    debug_assert!(false, "{kind} has no field {field}");
    FieldValue::Text(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contact_normalisation_derives_the_name_and_cleans_fields() {
        let raw = Contact {
            first_name: Some("  Ana ".into()),
            last_name: Some("Souza".into()),
            email: Some("ANA@X.COM ".into()),
            phone: Some("(202) 555-0143".into()),
            tags: vec!["VIP".into(), "vip".into(), " ekyte".into()],
            country: Some("us".into()),
            ..Contact::default()
        };
        let c = raw.normalised(&NormaliseCtx::default());
        assert_eq!(c.name.as_deref(), Some("Ana Souza"));
        assert_eq!(c.email.as_deref(), Some("ana@x.com"));
        assert_eq!(c.phone.as_deref(), Some("+12025550143"));
        assert_eq!(c.tags, vec!["ekyte", "vip"]);
        assert_eq!(c.country.as_deref(), Some("US"));
        assert_eq!(c.normalised(&NormaliseCtx::default()), c);
    }

    #[test]
    fn projection_keeps_only_what_a_side_carries() {
        let c = Contact {
            name: Some("Ana".into()),
            email: Some("a@x.com".into()),
            ..Contact::default()
        };
        let on_ekyte = c.project(Side::Ekyte);
        assert_eq!(on_ekyte.name.as_deref(), Some("Ana"));
        assert_eq!(on_ekyte.email, None);

        let t = Task {
            status: TaskStatus::Cancelled,
            assignee: Some(GhlUserId::parse("u1").unwrap()),
            ..Task::default()
        };
        assert_eq!(t.project(Side::Ghl).status, TaskStatus::Completed);
        assert_eq!(t.project(Side::Ekyte).status, TaskStatus::Cancelled);
        assert_eq!(t.project(Side::Ekyte).assignee, None);
    }

    #[test]
    fn get_and_set_round_trip_every_field() {
        let c = Contact {
            name: Some("n".into()),
            tags: vec!["a".into()],
            business_id: Some(GhlBusinessId::parse("b1").unwrap()),
            dnd: true,
            ..Contact::default()
        };
        let mut copy = Contact::empty();
        for f in Contact::field_names() {
            copy.set(f, c.get(f));
        }
        assert_eq!(copy, c);
    }
}
