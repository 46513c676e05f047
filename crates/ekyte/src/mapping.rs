//! Wire ↔ domain, in one place: eKyte's zone-less dates, HTML bodies, situations, and the
//! records the port returns.
//!
//! Rules (API.md §3.1, §7; ports/src/ekyte.rs):
//! - eKyte date-times carry no zone. They are read as wall-clock time in the tenant's zone
//!   (`TenantSettings.ekyte.timezone`, default `America/Sao_Paulo`) and converted to UTC;
//!   instants are written back as that zone's wall-clock time, `YYYY-MM-DDTHH:MM:SS`. A value
//!   that does carry an offset (`Z`, `-03:00`) is honoured. A wall-clock time that occurs twice
//!   (clocks turned back) reads as the earlier instant; one that does not exist (clocks turned
//!   forward) reads with the offset in force before the gap. So any instant written round-trips
//!   to itself, to the second, except the second pass through a repeated hour.
//! - Bodies: eKyte stores HTML; the port speaks canonical text (`domain::normalise`).
//! - Situations: 10 active and 20 paused are open, 30 completed, 40 cancelled.

use chrono::{DateTime, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, Offset, TimeZone, Utc};
use chrono_tz::Tz;
use domain::normalise::{html_to_text, line, text_to_html};
use domain::{
    EkyteBoardId, EkyteCommentId, EkyteTaskId, EkyteWorkspaceId, Task, TaskStatus, Tenant,
};
use ports::ApiError;
use ports::ekyte::{Board, EkyteComment, EkyteTask, Workspace};

use crate::dto::{BoardDto, CommentDto, CurrentUserDto, TaskDto, WorkspaceDto};

/// The tenant's eKyte zone.
pub(crate) fn zone(tenant: &Tenant) -> Result<Tz, ApiError> {
    tenant
        .settings
        .ekyte
        .timezone
        .parse::<Tz>()
        .map_err(|_| ApiError::Invalid {
            messages: vec![format!(
                "ekyte.timezone {:?} of tenant {} is not an IANA time zone name",
                tenant.settings.ekyte.timezone, tenant.id
            )],
        })
}

/// An instant as eKyte takes it: the zone's wall-clock time, whole seconds, no offset.
pub(crate) fn format_local(t: DateTime<Utc>, tz: Tz) -> String {
    t.with_timezone(&tz)
        .naive_local()
        .format("%Y-%m-%dT%H:%M:%S")
        .to_string()
}

/// The zone's calendar day of an instant as a filter's two bounds, each a full wall-clock
/// timestamp (`2026-04-10T00:00:00`, `2026-04-10T23:59:59`). Not the bare date: what a
/// date-only upper bound means (midnight, or the whole day) is nowhere documented, and an
/// ASP.NET server reads it as midnight, which leaves out everything due later that day.
pub(crate) fn local_day_bounds(t: DateTime<Utc>, tz: Tz) -> (String, String) {
    let day = t.with_timezone(&tz).date_naive();
    (
        day.format("%Y-%m-%dT00:00:00").to_string(),
        day.format("%Y-%m-%dT23:59:59").to_string(),
    )
}

/// Read an eKyte date: `2022-08-09T06:01:15.9186831`, `2022-08-09T00:00:00`, `2022-08-09`
/// (wall-clock time in `tz`), or the same with `Z` / `±HH:MM`.
pub(crate) fn parse_local(raw: &str, tz: Tz) -> Option<DateTime<Utc>> {
    let s = raw.trim();
    if s.is_empty() {
        return None;
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Some(local_to_utc(d.and_time(NaiveTime::MIN), tz));
    }
    let naive = NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
        .or_else(|_| NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f"))
        .or_else(|_| NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M"))
        .ok()?;
    Some(local_to_utc(naive, tz))
}

fn local_to_utc(naive: NaiveDateTime, tz: Tz) -> DateTime<Utc> {
    match tz.from_local_datetime(&naive) {
        LocalResult::Single(t) => t.with_timezone(&Utc),
        LocalResult::Ambiguous(a, b) => a.min(b).with_timezone(&Utc),
        LocalResult::None => {
            // In a gap: use the offset in force just before it.
            let before = naive - chrono::Duration::hours(3);
            let offset = match tz.from_local_datetime(&before) {
                LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => t.offset().fix(),
                LocalResult::None => Utc.fix(),
            };
            (naive - chrono::Duration::seconds(i64::from(offset.local_minus_utc()))).and_utc()
        }
    }
}

fn date_field(raw: Option<&str>, tz: Tz, what: &str) -> Result<Option<DateTime<Utc>>, ApiError> {
    match raw.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) => parse_local(s, tz).map(Some).ok_or_else(|| {
            // An unreadable date must not read as "no date": that would look like a change.
            ApiError::Unknown(anyhow::anyhow!(
                "eKyte sent {what} {s:?}, which is not a date"
            ))
        }),
    }
}

/// Situation code → canonical status (API.md §7: 10/20 open, 30 completed, 40 cancelled).
pub(crate) fn status_of(situation: Option<i64>) -> TaskStatus {
    match situation {
        Some(30) => TaskStatus::Completed,
        Some(40) => TaskStatus::Cancelled,
        _ => TaskStatus::Open,
    }
}

/// Canonical status → situation code for writes.
pub(crate) fn situation_of(status: TaskStatus) -> i64 {
    match status {
        TaskStatus::Open => 10,
        TaskStatus::Completed => 30,
        TaskStatus::Cancelled => 40,
    }
}

/// Canonical text → the HTML eKyte stores (empty for no body).
pub(crate) fn body_html(body: Option<&str>) -> String {
    body.map(text_to_html).unwrap_or_default()
}

fn id_error(what: &str, e: domain::IdError) -> ApiError {
    ApiError::Unknown(anyhow::anyhow!("eKyte sent an invalid {what}: {e}"))
}

pub(crate) fn workspace(dto: WorkspaceDto) -> Result<Workspace, ApiError> {
    Ok(Workspace {
        id: EkyteWorkspaceId::new(dto.id).map_err(|e| id_error("workspace id", e))?,
        name: dto.name.unwrap_or_default(),
        // A row without the flag is taken as active: deactivation is only reported when seen.
        active: dto.active.unwrap_or(true),
        external_id: dto.external_id.flatten().filter(|s| !s.trim().is_empty()),
    })
}

pub(crate) fn comment(
    dto: CommentDto,
    task: EkyteTaskId,
    tz: Tz,
) -> Result<EkyteComment, ApiError> {
    let author = dto.author();
    Ok(EkyteComment {
        id: EkyteCommentId::new(dto.id).map_err(|e| id_error("comment id", e))?,
        task,
        body: dto.description.as_deref().and_then(html_to_text),
        author,
        created: date_field(dto.creation_date.as_deref(), tz, "a comment creationDate")?,
    })
}

/// A task. `workspace` is used when the record does not name its own (a listing filtered by
/// workspace).
pub(crate) fn task(
    dto: TaskDto,
    tz: Tz,
    workspace: Option<EkyteWorkspaceId>,
) -> Result<EkyteTask, ApiError> {
    let id = EkyteTaskId::new(dto.id).map_err(|e| id_error("task id", e))?;
    let ws = match dto.workspace() {
        Some(w) => EkyteWorkspaceId::new(w).map_err(|e| id_error("workspace id", e))?,
        None => workspace.ok_or_else(|| {
            ApiError::Unknown(anyhow::anyhow!("eKyte task {id} names no workspace"))
        })?,
    };
    let due = date_field(dto.current_due_date.as_deref(), tz, "a currentDueDate")?;
    let mut comments = Vec::new();
    for c in dto.comments.unwrap_or_default() {
        match comment(c, id, tz) {
            Ok(c) => comments.push(c),
            // One odd comment (an id of 0, a date of another form) is skipped, not the task.
            Err(e) => {
                tracing::warn!(task = %id, error = %e, "an eKyte comment that does not read was skipped");
                metrics::counter!("ges_ekyte_items_skipped_total", "what" => "comment")
                    .increment(1);
            }
        }
    }
    Ok(EkyteTask {
        id,
        workspace: ws,
        task: Task {
            title: dto.title,
            body: dto.description.as_deref().and_then(html_to_text),
            due,
            status: status_of(dto.situation),
            assignee: None,
            updated_at: None,
        },
        comments,
    })
}

pub(crate) fn board(dto: BoardDto) -> Result<Board, ApiError> {
    let workspace = dto
        .workspace()
        .map(EkyteWorkspaceId::new)
        .transpose()
        .map_err(|e| id_error("workspace id", e))?;
    Ok(Board {
        id: EkyteBoardId::new(dto.id).map_err(|e| id_error("board id", e))?,
        workspace,
        title: dto.title.unwrap_or_default(),
    })
}

/// Two titles that eKyte would show the same (trimmed, inner white space collapsed).
pub(crate) fn same_title(a: Option<&str>, b: Option<&str>) -> bool {
    a.and_then(line) == b.and_then(line)
}

/// The identity behind an MCP token, or why it is anonymous (API.md §2.2: a malformed token
/// is served as anonymous without error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct McpIdentity {
    /// The eKyte user id (a UUID string).
    pub user_id: String,
    pub email: String,
    pub name: Option<String>,
}

pub(crate) fn identity(dto: CurrentUserDto) -> Result<McpIdentity, &'static str> {
    if dto.anonymous == Some(true) {
        return Err("eKyte says the caller is anonymous");
    }
    let id = match dto.id {
        Some(serde_json::Value::String(s)) => s,
        Some(serde_json::Value::Number(n)) => n.to_string(),
        _ => String::new(),
    };
    let nil = id.chars().all(|c| c == '0' || c == '-');
    if id.trim().is_empty() || nil {
        return Err("the token resolves to no user (empty or nil user id)");
    }
    let email = dto.email.unwrap_or_default();
    if email.trim().is_empty() {
        return Err("the token resolves to a user without an e-mail");
    }
    Ok(McpIdentity {
        user_id: id,
        email,
        name: dto.user_name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Timelike;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn local_dates_are_read_in_the_tenant_zone() {
        let sp: Tz = "America/Sao_Paulo".parse().unwrap();
        assert_eq!(
            parse_local("2022-08-09T06:01:15.9186831", sp).unwrap(),
            utc("2022-08-09T09:01:15.918683100Z")
        );
        assert_eq!(
            parse_local("2022-08-09", sp).unwrap(),
            utc("2022-08-09T03:00:00Z")
        );
        assert_eq!(
            parse_local("2022-08-09T06:00:00Z", sp).unwrap(),
            utc("2022-08-09T06:00:00Z")
        );
        assert!(parse_local("09/08/2022", sp).is_none());
    }

    #[test]
    fn writes_round_trip_to_the_same_instant() {
        for zone in ["America/Sao_Paulo", "Asia/Kolkata", "Europe/Berlin", "UTC"] {
            let tz: Tz = zone.parse().unwrap();
            for s in [
                "2024-01-15T10:30:00Z",
                "2024-07-01T23:59:59Z",
                "2024-03-31T00:59:00Z",
            ] {
                let t = utc(s);
                assert_eq!(parse_local(&format_local(t, tz), tz), Some(t), "{zone} {s}");
            }
        }
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        // 02:30 does not exist on 2024-03-31 in Berlin; read with the winter offset.
        let gap = parse_local("2024-03-31T02:30:00", berlin).unwrap();
        assert_eq!(gap, utc("2024-03-31T01:30:00Z"));
        assert_eq!(gap.second(), 0);
    }

    #[test]
    fn situations_map_both_ways() {
        assert_eq!(status_of(Some(20)), TaskStatus::Open);
        assert_eq!(status_of(Some(30)), TaskStatus::Completed);
        assert_eq!(status_of(Some(40)), TaskStatus::Cancelled);
        for s in [
            TaskStatus::Open,
            TaskStatus::Completed,
            TaskStatus::Cancelled,
        ] {
            assert_eq!(status_of(Some(situation_of(s))), s);
        }
    }

    #[test]
    fn anonymous_identities_are_refused() {
        let anon = CurrentUserDto {
            id: Some(serde_json::json!("00000000-0000-0000-0000-000000000000")),
            ..CurrentUserDto::default()
        };
        assert!(identity(anon).is_err());
        let flagged = CurrentUserDto {
            id: Some(serde_json::json!("7c9e6679-7425-40de-944b-e07fc1f90ae7")),
            email: Some("a@b.c".into()),
            anonymous: Some(true),
            ..CurrentUserDto::default()
        };
        assert!(identity(flagged).is_err());
        let ok = CurrentUserDto {
            id: Some(serde_json::json!("7c9e6679-7425-40de-944b-e07fc1f90ae7")),
            email: Some("a@b.c".into()),
            ..CurrentUserDto::default()
        };
        assert_eq!(identity(ok).unwrap().email, "a@b.c");
    }
}
