//! The adapter's reading of GHL's answers, for fuzzing (feature `fuzzing`; `fuzz/` at the
//! repository root).
//!
//! [`read`] takes the raw body of one answer and runs on it exactly what the adapter runs
//! after a request — the wire DTO decoding (`dto.rs`) and the mapping to port types
//! (`mapping.rs`), or for an error status the error-body reading and the classification onto
//! the port's error cases (`error.rs`). It returns port types or the port error; the wire
//! types stay private, and nothing here sends a request.

use domain::{GhlContactId, LocationId};
use ports::ApiError;
use ports::ghl::{GhlAppointment, GhlBusiness, GhlContact, GhlNote, GhlTask};
use reqwest::StatusCode;

use crate::client::Answer;
use crate::dto::{
    BusinessEnvelope, ContactEnvelope, DuplicateAnswer, EventEnvelope, EventsAnswer, ListAnswer,
    NoteEnvelope, NotesAnswer, SearchAnswer, TagsAnswer, TaskEnvelope, TasksAnswer, TokenAnswer,
    UpdateAnswer, UpsertAnswer,
};
use crate::error::{CallError, ErrorBody};
use crate::oauth::{Installation, OAuthClient};
use crate::{check_deleted, mapping, unreadable};

/// Which answer the body is read as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    GetContact,
    SearchContacts,
    ListContacts,
    ContactsOfBusiness,
    UpsertContact,
    UpdateContact,
    FindDuplicate,
    Delete,
    ListTasks,
    GetTask,
    ListNotes,
    GetNote,
    ListAppointments,
    GetAppointment,
    GetBusiness,
    Tags,
    /// `POST /oauth/token`.
    Token,
    /// A non-2xx answer with this status, on a contacts route.
    Error(u16),
}

impl Route {
    /// A route chosen by one byte (the fuzzer's first).
    pub fn from_byte(b: u8) -> Self {
        const OK: [Route; 17] = [
            Route::GetContact,
            Route::SearchContacts,
            Route::ListContacts,
            Route::ContactsOfBusiness,
            Route::UpsertContact,
            Route::UpdateContact,
            Route::FindDuplicate,
            Route::Delete,
            Route::ListTasks,
            Route::GetTask,
            Route::ListNotes,
            Route::GetNote,
            Route::ListAppointments,
            Route::GetAppointment,
            Route::GetBusiness,
            Route::Tags,
            Route::Token,
        ];
        const ERRORS: [u16; 8] = [400, 401, 403, 404, 409, 422, 500, 503];
        match OK.get(usize::from(b) % 32) {
            Some(r) => *r,
            None => Route::Error(ERRORS[usize::from(b) % ERRORS.len()]),
        }
    }
}

/// What the adapter made of an answer.
#[derive(Debug)]
pub enum Read {
    Contact(GhlContact),
    Contacts {
        contacts: Vec<GhlContact>,
        total: Option<u64>,
        has_next: bool,
    },
    Upserted {
        contact: GhlContact,
        created: bool,
    },
    /// `None`: GHL left the contact out and the adapter would read it again.
    Updated(Option<GhlContact>),
    Duplicate(Option<GhlContactId>),
    Deleted,
    Tasks(Vec<GhlTask>),
    Task(GhlTask),
    Notes(Vec<GhlNote>),
    Note(GhlNote),
    Appointments(Vec<GhlAppointment>),
    Appointment(GhlAppointment),
    Business(GhlBusiness),
    Tags(Vec<String>),
    Token(Installation),
}

const ROUTE: &str = "fuzz";

fn location() -> LocationId {
    LocationId::parse("fuzzLocation00000001").unwrap_or_else(|_| unreachable!())
}

fn contact_id() -> GhlContactId {
    GhlContactId::parse("fuzzContact000000001").unwrap_or_else(|_| unreachable!())
}

/// Custom fields a tenant carries, so that their values are read too.
const CUSTOM_FIELDS: [&str; 2] = ["cf1", "cf2"];

/// Read `body` as the answer of `route`, as the adapter does.
pub fn read(route: Route, body: &[u8]) -> Result<Read, ApiError> {
    let answer = Answer {
        body: body.to_vec(),
        route: ROUTE,
    };
    let custom: Vec<String> = CUSTOM_FIELDS.iter().map(|s| (*s).to_owned()).collect();
    let loc = location();
    let cid = contact_id();
    let contact = |dto| mapping::contact(dto, &custom, &loc).map_err(|e| unreadable(ROUTE, e));
    Ok(match route {
        Route::GetContact => {
            let env: ContactEnvelope = answer.decode()?;
            Read::Contact(contact(env.contact)?)
        }
        Route::SearchContacts => {
            let page: SearchAnswer = answer.decode()?;
            let has_next = page
                .contacts
                .last()
                .and_then(mapping::next_search_cursor)
                .is_some();
            let contacts = mapping::all(page.contacts, "contact", |c| {
                mapping::contact(c, &custom, &loc)
            })
            .map_err(|e| unreadable(ROUTE, e))?;
            Read::Contacts {
                contacts,
                total: page.total,
                has_next,
            }
        }
        Route::ListContacts | Route::ContactsOfBusiness => {
            let page: ListAnswer = answer.decode()?;
            let meta = page.meta.unwrap_or_default();
            let has_next = matches!(
                (&meta.start_after, &meta.start_after_id),
                (Some(_), Some(id)) if !page.contacts.is_empty() && !id.is_empty()
            );
            let contacts = mapping::all(page.contacts, "contact", |c| {
                mapping::contact(c, &custom, &loc)
            })
            .map_err(|e| unreadable(ROUTE, e))?;
            Read::Contacts {
                contacts,
                total: meta.total.or(page.count),
                has_next,
            }
        }
        Route::UpsertContact => {
            let up: UpsertAnswer = answer.decode()?;
            Read::Upserted {
                created: up.new.unwrap_or(false),
                contact: contact(up.contact)?,
            }
        }
        Route::UpdateContact => {
            let up: UpdateAnswer = answer.decode()?;
            if up.succeded == Some(false) {
                return Err(ApiError::Unknown(anyhow::anyhow!(
                    "{ROUTE}: GHL answered succeded: false"
                )));
            }
            Read::Updated(up.contact.map(contact).transpose()?)
        }
        Route::FindDuplicate => {
            let found: DuplicateAnswer = answer.decode()?;
            Read::Duplicate(match found.contact.and_then(|c| c.id) {
                Some(id) => Some(
                    GhlContactId::parse(id)
                        .map_err(|e| unreadable(ROUTE, anyhow::Error::new(e)))?,
                ),
                None => None,
            })
        }
        Route::Delete => {
            check_deleted(&answer)?;
            Read::Deleted
        }
        Route::ListTasks => {
            let list: TasksAnswer = answer.decode()?;
            Read::Tasks(
                mapping::all(list.tasks, "task", |t| mapping::task(t, Some(&cid)))
                    .map_err(|e| unreadable(ROUTE, e))?,
            )
        }
        Route::GetTask => {
            let env: TaskEnvelope = answer.decode()?;
            Read::Task(mapping::task(env.task, Some(&cid)).map_err(|e| unreadable(ROUTE, e))?)
        }
        Route::ListNotes => {
            let list: NotesAnswer = answer.decode()?;
            Read::Notes(
                mapping::all(list.notes, "note", |n| mapping::note(n, &cid))
                    .map_err(|e| unreadable(ROUTE, e))?,
            )
        }
        Route::GetNote => {
            let env: NoteEnvelope = answer.decode()?;
            Read::Note(mapping::note(env.note, &cid).map_err(|e| unreadable(ROUTE, e))?)
        }
        Route::ListAppointments => {
            let list: EventsAnswer = answer.decode()?;
            Read::Appointments(
                mapping::all(list.events, "appointment", |a| {
                    mapping::appointment(a, Some(&cid))
                })
                .map_err(|e| unreadable(ROUTE, e))?,
            )
        }
        Route::GetAppointment => {
            let env: EventEnvelope = answer.decode()?;
            Read::Appointment(
                mapping::appointment(env.event, None).map_err(|e| unreadable(ROUTE, e))?,
            )
        }
        Route::GetBusiness => {
            let env: BusinessEnvelope = answer.decode()?;
            Read::Business(mapping::business(env.business).map_err(|e| unreadable(ROUTE, e))?)
        }
        Route::Tags => Read::Tags(answer.decode::<TagsAnswer>()?.tags),
        Route::Token => {
            let t: TokenAnswer = answer.decode()?;
            Read::Token(OAuthClient::installation(t, None)?)
        }
        Route::Error(status) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
            let error = CallError::Status {
                route: ROUTE,
                status,
                body: Box::new(ErrorBody::parse(body)),
                scope: "contacts.readonly",
                after_unknown: false,
            };
            // What the adapter asks of a failed call before classifying it.
            let _ = (error.is_not_found(), error.outcome_unknown());
            return Err(error.into_api_error());
        }
    })
}
