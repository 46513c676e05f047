//! The GHL side: every operation the mission names (DESIGN.md §1), in domain terms.
//!
//! Records come back in canonical shape but **not normalised** (normalisation needs the
//! tenant's settings; the engine does it). Wire types stay in the adapter.
//!
//! Error contract, for every method unless its doc says more:
//! - `NotFound` for HTTP 404 (the record, or its parent contact, does not exist);
//! - `Unauthorized` when no valid token can be had (after one refresh-and-retry on 401, and
//!   after re-reading the store on `invalid_grant`); the message says to reinstall the app;
//! - `Forbidden` for HTTP 403, naming the missing scope when GHL does;
//! - `Invalid` for HTTP 400/422 with GHL's messages;
//! - `RateLimited` when 429s persist past the adapter's bounded backoff;
//! - `Transient` for 5xx, timeouts and connection errors that persist past the retries the
//!   adapter may make (idempotent requests only);
//! - `Unknown` for anything else.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use domain::{
    Appointment, Business, Contact, FieldChange, GhlAppointmentId, GhlBusinessId, GhlContactId,
    GhlNoteId, GhlTaskId, LocationId, Note, Task,
};

use crate::error::ApiError;
use crate::scope::Scope;

/// A contact as GHL holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GhlContact {
    pub id: GhlContactId,
    pub location: LocationId,
    pub contact: Contact,
    pub date_added: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GhlTask {
    pub id: GhlTaskId,
    pub contact: GhlContactId,
    pub task: Task,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GhlNote {
    pub id: GhlNoteId,
    pub contact: GhlContactId,
    pub note: Note,
    /// The GHL user who wrote it, when known.
    pub user_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GhlAppointment {
    pub id: GhlAppointmentId,
    pub contact: GhlContactId,
    pub appointment: Appointment,
    pub date_updated: Option<DateTime<Utc>>,
}

/// One answer of [`GhlApi::calendar_events`]: a calendar's appointments that start within
/// the range it read, `from..=through`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CalendarRange {
    pub events: Vec<GhlAppointment>,
    /// Where the range read ends: the `to` asked for when GHL took the range whole, earlier
    /// when GHL refused it as too wide and a narrower one was read. A caller reading a window
    /// goes on just after it.
    pub through: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GhlBusiness {
    pub id: GhlBusinessId,
    pub business: Business,
}

/// What this service keeps of a GHL location (`GET /locations/:id`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GhlLocation {
    pub name: Option<String>,
    /// The location's IANA time zone, when GHL has one.
    pub timezone: Option<String>,
}

/// An opaque position in a contact listing (GHL's `searchAfter`, or the deprecated list's
/// `startAfter`/`startAfterId`), safe to store in a run checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SearchCursor(pub String);

/// A contact search (`POST /contacts/search`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ContactSearch {
    /// Only contacts with `dateUpdated >= updated_since`.
    pub updated_since: Option<DateTime<Utc>>,
    /// Only contacts with this tag.
    pub tag: Option<String>,
    /// Page size, 1..=500 (GHL's limit).
    pub page_limit: u32,
    /// Where the previous page ended; `None` for the first page. The order is
    /// `dateUpdated` ascending, then id, so a crash resumes where it stopped.
    pub after: Option<SearchCursor>,
}

/// One page of contacts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactPage {
    pub contacts: Vec<GhlContact>,
    /// GHL's `total` when given.
    pub total: Option<u64>,
    /// The cursor for the next page; `None` on the last page.
    pub next: Option<SearchCursor>,
}

/// How the search should be done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ListingMode {
    /// `POST /contacts/search` (preferred).
    #[default]
    Search,
    /// The deprecated `GET /contacts/`, kept as a fallback (no tag or date filters; the
    /// engine filters client-side).
    Legacy,
}

/// A location-wide task search (`POST /locations/:id/tasks/search`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TaskSearch {
    pub contacts: Vec<GhlContactId>,
    pub completed: Option<bool>,
    pub skip: u32,
    pub limit: u32,
}

/// The GHL API.
#[cfg_attr(feature = "mocks", mockall::automock)]
#[async_trait]
pub trait GhlApi: Send + Sync {
    /// `GET /contacts/:id`.
    async fn get_contact(&self, scope: &Scope, id: &GhlContactId) -> Result<GhlContact, ApiError>;

    /// `POST /contacts/`. On GHL's duplicate rule returns `Conflict` with `existing_id` set
    /// from `meta.contactId`. A create whose outcome is unknown (timeout, 5xx) is resolved by
    /// a duplicate lookup before any retry: if the contact is found it is returned.
    async fn create_contact(
        &self,
        scope: &Scope,
        contact: &Contact,
    ) -> Result<GhlContact, ApiError>;

    /// `POST /contacts/upsert`; the bool says whether a contact was created.
    async fn upsert_contact(
        &self,
        scope: &Scope,
        contact: &Contact,
    ) -> Result<(GhlContact, bool), ApiError>;

    /// `PUT /contacts/:id` with only the changed fields. `tags` is refused as `Invalid`:
    /// tags change only through [`GhlApi::add_tags`] / [`GhlApi::remove_tags`], because a
    /// PUT overwrites the whole list.
    async fn update_contact(
        &self,
        scope: &Scope,
        id: &GhlContactId,
        changes: &[FieldChange],
    ) -> Result<GhlContact, ApiError>;

    /// `DELETE /contacts/:id`. `NotFound` when already gone.
    async fn delete_contact(&self, scope: &Scope, id: &GhlContactId) -> Result<(), ApiError>;

    /// One page of contacts. `Invalid` when `page_limit` is outside 1..=500.
    async fn list_contacts(
        &self,
        scope: &Scope,
        mode: ListingMode,
        query: &ContactSearch,
    ) -> Result<ContactPage, ApiError>;

    /// `GET /contacts/search/duplicate`: the contact GHL would match for this e-mail or phone.
    async fn find_duplicate(
        &self,
        scope: &Scope,
        email: Option<String>,
        phone: Option<String>,
    ) -> Result<Option<GhlContactId>, ApiError>;

    /// `GET /locations/:id` of the scope's location (scope `locations.readonly`).
    async fn get_location(&self, scope: &Scope) -> Result<GhlLocation, ApiError>;

    /// Refresh the tenant's OAuth access token now, whatever its expiry (an operator's
    /// action), and return the new token's expiry. `Unauthorized` when GHL refuses the
    /// refresh (the app must be reinstalled; the failure is remembered for the operator);
    /// `Unsupported` for a token with no refresh (a Private Integration Token), and by
    /// default.
    async fn refresh_token(
        &self,
        _scope: &Scope,
    ) -> Result<Option<chrono::DateTime<chrono::Utc>>, ApiError> {
        Err(ApiError::unsupported("refreshing the GHL token"))
    }

    /// `GET /businesses/:id`.
    async fn get_business(
        &self,
        scope: &Scope,
        id: &GhlBusinessId,
    ) -> Result<GhlBusiness, ApiError>;

    /// `GET /contacts/business/:businessId` with `skip`/`limit` (limit ≤ 100). Returns the
    /// page and GHL's `count`.
    async fn contacts_of_business(
        &self,
        scope: &Scope,
        id: &GhlBusinessId,
        skip: u32,
        limit: u32,
    ) -> Result<(Vec<GhlContact>, u64), ApiError>;

    /// `GET /contacts/:id/tasks` (no paging: the full list).
    async fn list_tasks(
        &self,
        scope: &Scope,
        contact: &GhlContactId,
    ) -> Result<Vec<GhlTask>, ApiError>;

    /// `GET /contacts/:id/tasks/:taskId`.
    async fn get_task(
        &self,
        scope: &Scope,
        contact: &GhlContactId,
        id: &GhlTaskId,
    ) -> Result<GhlTask, ApiError>;

    /// `POST /contacts/:id/tasks`. `Invalid` when the task has no title or due date (both
    /// required by GHL).
    async fn create_task(
        &self,
        scope: &Scope,
        contact: &GhlContactId,
        task: &Task,
    ) -> Result<GhlTask, ApiError>;

    /// `PUT /contacts/:id/tasks/:taskId` with the changed fields (not the status; see
    /// [`GhlApi::set_task_completed`]).
    async fn update_task(
        &self,
        scope: &Scope,
        contact: &GhlContactId,
        id: &GhlTaskId,
        changes: &[FieldChange],
    ) -> Result<GhlTask, ApiError>;

    /// `PUT /contacts/:id/tasks/:taskId/completed`.
    async fn set_task_completed(
        &self,
        scope: &Scope,
        contact: &GhlContactId,
        id: &GhlTaskId,
        completed: bool,
    ) -> Result<GhlTask, ApiError>;

    /// `DELETE /contacts/:id/tasks/:taskId`.
    async fn delete_task(
        &self,
        scope: &Scope,
        contact: &GhlContactId,
        id: &GhlTaskId,
    ) -> Result<(), ApiError>;

    /// `POST /locations/:id/tasks/search`: tasks of many contacts in one call.
    async fn search_tasks(
        &self,
        scope: &Scope,
        query: &TaskSearch,
    ) -> Result<Vec<GhlTask>, ApiError>;

    /// `GET /contacts/:id/notes` (no paging).
    async fn list_notes(
        &self,
        scope: &Scope,
        contact: &GhlContactId,
    ) -> Result<Vec<GhlNote>, ApiError>;

    /// `GET /contacts/:id/notes/:id`.
    async fn get_note(
        &self,
        scope: &Scope,
        contact: &GhlContactId,
        id: &GhlNoteId,
    ) -> Result<GhlNote, ApiError>;

    /// `POST /contacts/:id/notes`. `Invalid` when the body is empty.
    async fn create_note(
        &self,
        scope: &Scope,
        contact: &GhlContactId,
        note: &Note,
    ) -> Result<GhlNote, ApiError>;

    /// `PUT /contacts/:id/notes/:id`.
    async fn update_note(
        &self,
        scope: &Scope,
        contact: &GhlContactId,
        id: &GhlNoteId,
        note: &Note,
    ) -> Result<GhlNote, ApiError>;

    /// `DELETE /contacts/:id/notes/:id`.
    async fn delete_note(
        &self,
        scope: &Scope,
        contact: &GhlContactId,
        id: &GhlNoteId,
    ) -> Result<(), ApiError>;

    /// `GET /contacts/:id/appointments` (no paging).
    async fn list_appointments(
        &self,
        scope: &Scope,
        contact: &GhlContactId,
    ) -> Result<Vec<GhlAppointment>, ApiError>;

    /// `GET /calendars/?locationId=` (scope `calendars.readonly`): the ids of the location's
    /// calendars. `Forbidden` when the token lacks the scope (an install older than it).
    async fn list_calendars(&self, scope: &Scope) -> Result<Vec<String>, ApiError>;

    /// `GET /calendars/events?locationId&calendarId&startTime&endTime` (scope
    /// `calendars/events.readonly`): one answer, the appointments of one calendar starting
    /// within `from..=to`, each with its contact (events without a contact are left out).
    /// GHL documents no paging for this route, so an answer holds every appointment of its
    /// range: a caller reading a wide window asks for it range by range, and holds one answer
    /// at a time. When GHL refuses the range as too wide (it states no limit), a narrower one
    /// from `from` is read instead, down to a day, and the width that passed is used for the
    /// next calls; [`CalendarRange::through`] says where the answer ends. Errors: as every
    /// call, and `Invalid` for a range GHL refuses though it is a day or less.
    async fn calendar_events(
        &self,
        scope: &Scope,
        calendar: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<CalendarRange, ApiError>;

    /// `POST /contacts/:id/tags`; returns the contact's tags after the call.
    async fn add_tags(
        &self,
        scope: &Scope,
        contact: &GhlContactId,
        tags: &[String],
    ) -> Result<Vec<String>, ApiError>;

    /// `DELETE /contacts/:id/tags` (with a JSON body); returns the tags after the call.
    async fn remove_tags(
        &self,
        scope: &Scope,
        contact: &GhlContactId,
        tags: &[String],
    ) -> Result<Vec<String>, ApiError>;
}

/// A verified GHL webhook, parsed into what the engine needs (API.md §9.2). Payload fields
/// are hints: the engine re-fetches the record, so only ids travel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GhlEvent {
    /// GHL's `webhookId`: the dedupe key.
    pub webhook_id: String,
    pub location: LocationId,
    /// GHL's `timestamp`.
    pub timestamp: DateTime<Utc>,
    pub kind: GhlEventKind,
}

/// A verified GHL webhook: about one location (most events), or about a company (agency)
/// as a whole, with no `locationId` (API.md §9.2a).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Webhook {
    Location(GhlEvent),
    Company(CompanyEvent),
}

impl Webhook {
    pub fn webhook_id(&self) -> &str {
        match self {
            Self::Location(e) => &e.webhook_id,
            Self::Company(e) => &e.webhook_id,
        }
    }

    pub fn timestamp(&self) -> DateTime<Utc> {
        match self {
            Self::Location(e) => e.timestamp,
            Self::Company(e) => e.timestamp,
        }
    }

    /// GHL's name for the event type.
    pub fn type_name(&self) -> &str {
        match self {
            Self::Location(e) => e.kind.type_name(),
            Self::Company(e) => e.kind.type_name(),
        }
    }

    /// The location event, if it is one.
    pub fn into_location(self) -> Option<GhlEvent> {
        match self {
            Self::Location(e) => Some(e),
            Self::Company(_) => None,
        }
    }
}

/// A company-level webhook: the tenant is found through `companyId` (API.md §9.2a).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompanyEvent {
    pub webhook_id: String,
    /// The GHL company (agency).
    pub company_id: String,
    pub timestamp: DateTime<Utc>,
    pub kind: CompanyEventKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CompanyEventKind {
    /// The agency installed the app for its locations (bulk install).
    Install { app_id: Option<String> },
    /// The agency uninstalled the app: every location of the company.
    Uninstall { app_id: Option<String> },
    /// A location was added to the company (`id` is the location's id).
    LocationCreate {
        location: LocationId,
        name: Option<String>,
    },
    /// A location's details changed.
    LocationUpdate {
        location: LocationId,
        name: Option<String>,
    },
    /// `UserCreate` and any other company-level type this service does not use.
    Other { event_type: String },
}

impl CompanyEventKind {
    pub fn type_name(&self) -> &str {
        match self {
            Self::Install { .. } => "INSTALL",
            Self::Uninstall { .. } => "UNINSTALL",
            Self::LocationCreate { .. } => "LocationCreate",
            Self::LocationUpdate { .. } => "LocationUpdate",
            Self::Other { event_type } => event_type,
        }
    }
}

/// The event types this service acts on; anything else is `Unknown` (skipped and audited).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum GhlEventKind {
    ContactCreate {
        contact: GhlContactId,
    },
    ContactUpdate {
        contact: GhlContactId,
    },
    ContactDelete {
        contact: GhlContactId,
    },
    ContactTagUpdate {
        contact: GhlContactId,
    },
    ContactDndUpdate {
        contact: GhlContactId,
    },
    /// `contact` may be missing in real payloads (#332): resolve through the task search.
    TaskCreate {
        task: GhlTaskId,
        contact: Option<GhlContactId>,
    },
    TaskComplete {
        task: GhlTaskId,
        contact: Option<GhlContactId>,
    },
    TaskDelete {
        task: GhlTaskId,
        contact: Option<GhlContactId>,
    },
    NoteCreate {
        note: GhlNoteId,
        contact: GhlContactId,
    },
    NoteUpdate {
        note: GhlNoteId,
        contact: GhlContactId,
    },
    NoteDelete {
        note: GhlNoteId,
        contact: GhlContactId,
    },
    AppointmentCreate {
        appointment: GhlAppointmentId,
        contact: Option<GhlContactId>,
    },
    AppointmentUpdate {
        appointment: GhlAppointmentId,
        contact: Option<GhlContactId>,
    },
    AppointmentDelete {
        appointment: GhlAppointmentId,
        contact: Option<GhlContactId>,
    },
    /// The app was installed on a location (or a company).
    Install {
        company_id: Option<String>,
        app_id: Option<String>,
    },
    Uninstall {
        company_id: Option<String>,
        app_id: Option<String>,
    },
    Unknown {
        event_type: String,
    },
}

impl GhlEventKind {
    /// The contact the event is about, when the payload names it.
    pub fn contact(&self) -> Option<&GhlContactId> {
        match self {
            Self::ContactCreate { contact }
            | Self::ContactUpdate { contact }
            | Self::ContactDelete { contact }
            | Self::ContactTagUpdate { contact }
            | Self::ContactDndUpdate { contact }
            | Self::NoteCreate { contact, .. }
            | Self::NoteUpdate { contact, .. }
            | Self::NoteDelete { contact, .. } => Some(contact),
            Self::TaskCreate { contact, .. }
            | Self::TaskComplete { contact, .. }
            | Self::TaskDelete { contact, .. }
            | Self::AppointmentCreate { contact, .. }
            | Self::AppointmentUpdate { contact, .. }
            | Self::AppointmentDelete { contact, .. } => contact.as_ref(),
            Self::Install { .. } | Self::Uninstall { .. } | Self::Unknown { .. } => None,
        }
    }

    /// GHL's name for the event type.
    pub fn type_name(&self) -> &str {
        match self {
            Self::ContactCreate { .. } => "ContactCreate",
            Self::ContactUpdate { .. } => "ContactUpdate",
            Self::ContactDelete { .. } => "ContactDelete",
            Self::ContactTagUpdate { .. } => "ContactTagUpdate",
            Self::ContactDndUpdate { .. } => "ContactDndUpdate",
            Self::TaskCreate { .. } => "TaskCreate",
            Self::TaskComplete { .. } => "TaskComplete",
            Self::TaskDelete { .. } => "TaskDelete",
            Self::NoteCreate { .. } => "NoteCreate",
            Self::NoteUpdate { .. } => "NoteUpdate",
            Self::NoteDelete { .. } => "NoteDelete",
            Self::AppointmentCreate { .. } => "AppointmentCreate",
            Self::AppointmentUpdate { .. } => "AppointmentUpdate",
            Self::AppointmentDelete { .. } => "AppointmentDelete",
            Self::Install { .. } => "INSTALL",
            Self::Uninstall { .. } => "UNINSTALL",
            Self::Unknown { event_type } => event_type,
        }
    }
}
