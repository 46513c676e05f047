//! Wire types: eKyte's JSON as it travels, private to this crate.
//!
//! eKyte publishes no schema (API.md "Not publicly documented" 6), so reads are lenient where
//! the sources disagree or are silent: ids and flags may arrive as numbers or strings, `active`
//! as `1`/`0` or a boolean, a task's workspace flat (`workspaceId`, v1.1 and MCP) or nested
//! (`workspace{id}`, v1.2), unknown fields are ignored. Writes to the automation API are
//! PascalCase (API.md §4, N8N `CLAUDE.md`); MCP arguments are camelCase (API.md §5).
//! Conversion to the domain happens in `mapping.rs`, nowhere else.

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};
use serde_json::Value;

// ----- lenient scalars ---------------------------------------------------------------------

/// A positive id sent as a number or as a decimal string.
pub(crate) fn flex_id<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    match Value::deserialize(d)? {
        Value::Number(n) => n
            .as_u64()
            .ok_or_else(|| de::Error::custom(format!("id {n} is not a positive integer"))),
        Value::String(s) => s
            .trim()
            .parse()
            .map_err(|_| de::Error::custom(format!("id {s:?} is not a positive integer"))),
        other => Err(de::Error::custom(format!("id {other} is not a number"))),
    }
}

/// An optional id; `null`, absent, `0` and `""` are all "none".
pub(crate) fn flex_opt_id<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Ok(match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => n.as_u64().filter(|v| *v > 0),
        Some(Value::String(s)) => s.trim().parse().ok().filter(|v| *v > 0),
        Some(_) => None,
    })
}

/// An optional integer sent as a number or a string.
pub(crate) fn flex_opt_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    Ok(match Option::<Value>::deserialize(d)? {
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    })
}

/// A flag sent as `1`/`0`, `true`/`false` or their strings (API.md §3.3: workspace `active`
/// is `1`/`0`).
pub(crate) fn flex_opt_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    Ok(match Option::<Value>::deserialize(d)? {
        Some(Value::Bool(b)) => Some(b),
        Some(Value::Number(n)) => n.as_i64().map(|v| v != 0),
        Some(Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
            "1" | "true" => Some(true),
            "0" | "false" => Some(false),
            _ => None,
        },
        _ => None,
    })
}

/// A field whose presence matters: absent → `None`, `null` → `Some(None)`.
pub(crate) fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Ok(Some(match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(other) => Some(other.to_string()),
    }))
}

// ----- lists of unpublished shapes ---------------------------------------------------------

/// The items of a list that parse as `T`; each other one is skipped, logged (its position and
/// how its shape differs, never its content) and counted in
/// `ges_ekyte_items_skipped_total{what}`. eKyte publishes none of its shapes (API.md §3.3),
/// so one odd record must not cost the whole list: a poll that failed on it would see no
/// other change of its workspace either.
pub(crate) fn keep_parsed<T: serde::de::DeserializeOwned>(
    items: Vec<Value>,
    what: &'static str,
) -> Vec<T> {
    let mut out = Vec::with_capacity(items.len());
    for (at, item) in items.into_iter().enumerate() {
        match serde_json::from_value::<T>(item) {
            Ok(v) => out.push(v),
            Err(e) => {
                tracing::warn!(what, at, error = %crate::error::shape_error(&e), "an eKyte record of an unknown shape was skipped");
                metrics::counter!("ges_ekyte_items_skipped_total", "what" => what).increment(1);
            }
        }
    }
    out
}

fn lenient_comments<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<CommentDto>>, D::Error> {
    let raw: Option<Vec<Value>> = Option::deserialize(d)?;
    Ok(raw.map(|items| keep_parsed(items, "comment")))
}

// ----- surface A: the BI envelope (API.md §3.1) ----------------------------------------------

#[derive(Debug, Deserialize)]
pub(crate) struct Envelope<T> {
    #[serde(default)]
    pub error: Option<BiError>,
    #[serde(default = "none")]
    pub data: Option<Vec<T>>,
    #[serde(default)]
    pub paging: Option<Paging>,
}

fn none<T>() -> Option<T> {
    None
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct BiError {
    #[serde(default)]
    pub message: Option<String>,
    /// eKyte's internal code, not an HTTP status (API.md §3.1: "404" on an HTTP 401).
    #[serde(default)]
    pub code: Option<Value>,
}

impl BiError {
    pub fn describe(&self) -> String {
        let message = self
            .message
            .as_deref()
            .filter(|m| !m.trim().is_empty())
            .unwrap_or("(no message)");
        match &self.code {
            Some(Value::String(c)) => format!("{message} (eKyte code {c})"),
            Some(Value::Number(c)) => format!("{message} (eKyte code {c})"),
            _ => message.to_owned(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Paging {
    #[serde(default)]
    pub current_page: Option<CurrentPage>,
    #[serde(default, deserialize_with = "flex_opt_i64")]
    pub total_pages: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct CurrentPage {
    #[serde(default, deserialize_with = "flex_opt_i64")]
    pub number: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct WorkspaceDto {
    #[serde(deserialize_with = "flex_id")]
    pub id: u64,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "flex_opt_bool")]
    pub active: Option<bool>,
    /// Absent when the surface does not show `ExternalId` at all (API.md §3.3 lists no such
    /// field); `Some(None)` when it shows the field empty.
    #[serde(default, alias = "ExternalId", deserialize_with = "present")]
    pub external_id: Option<Option<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RefDto {
    #[serde(default, deserialize_with = "flex_opt_id")]
    pub id: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct UserRefDto {
    #[serde(default)]
    pub user_name: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
}

/// A task as `/v1.2/tasks` (nested) or MCP `get_detailed_task` / `list_tasks` (flat) show it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TaskDto {
    #[serde(deserialize_with = "flex_id")]
    pub id: u64,
    #[serde(default)]
    pub title: Option<String>,
    /// HTML (API.md §3.3).
    #[serde(default)]
    pub description: Option<String>,
    /// 10 active, 20 paused, 30 completed, 40 cancelled (API.md §7).
    #[serde(default, deserialize_with = "flex_opt_i64")]
    pub situation: Option<i64>,
    /// Zone-less local time (API.md §3.1).
    #[serde(default)]
    pub current_due_date: Option<String>,
    #[serde(default, deserialize_with = "flex_opt_id")]
    pub workspace_id: Option<u64>,
    #[serde(default)]
    pub workspace: Option<Value>,
    #[serde(default, alias = "createdBy")]
    pub create_by: Option<Value>,
    #[serde(default)]
    pub created_by_email: Option<String>,
    /// Present with `includeComments=1`. A comment of another shape is skipped (logged and
    /// counted), not the task.
    #[serde(default, deserialize_with = "lenient_comments")]
    pub comments: Option<Vec<CommentDto>>,
}

impl TaskDto {
    /// The workspace id, flat or nested.
    pub fn workspace(&self) -> Option<u64> {
        self.workspace_id.or_else(|| {
            self.workspace
                .as_ref()
                .and_then(|w| RefDto::deserialize(w).ok())
                .and_then(|r| r.id)
        })
    }

    /// The creator's e-mail, nested (`createBy{email}`) or flat (`createdByEmail`).
    pub fn creator_email(&self) -> Option<String> {
        self.created_by_email.clone().or_else(|| {
            self.create_by
                .as_ref()
                .and_then(|v| UserRefDto::deserialize(v).ok())
                .and_then(|u| u.email)
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CommentDto {
    #[serde(deserialize_with = "flex_id")]
    pub id: u64,
    /// HTML.
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub creation_date: Option<String>,
    #[serde(default, alias = "createdBy")]
    pub create_by: Option<Value>,
}

impl CommentDto {
    pub fn author(&self) -> Option<String> {
        let who = self
            .create_by
            .as_ref()
            .and_then(|v| UserRefDto::deserialize(v).ok())?;
        who.user_name.filter(|n| !n.trim().is_empty()).or(who.email)
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct UserDto {
    #[serde(default)]
    pub id: Option<Value>,
    #[serde(default)]
    pub user_name: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TaskTypeDto {
    #[serde(deserialize_with = "flex_id")]
    pub id: u64,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "flex_opt_bool")]
    pub active: Option<bool>,
    #[serde(default, deserialize_with = "flex_opt_id")]
    pub workflow_id: Option<u64>,
}

// ----- surface B: the automation API (API.md §4) ---------------------------------------------

/// A board as `/polling/boards` or MCP `list_boards` shows it (shape unpublished: API.md §4.1).
#[derive(Debug, Deserialize)]
pub(crate) struct BoardDto {
    #[serde(alias = "Id", deserialize_with = "flex_id")]
    pub id: u64,
    #[serde(default, alias = "Title", alias = "name", alias = "Name")]
    pub title: Option<String>,
    #[serde(
        default,
        rename = "workspaceId",
        alias = "WorkspaceId",
        deserialize_with = "flex_opt_id"
    )]
    pub workspace_id: Option<u64>,
    #[serde(default)]
    pub workspace: Option<Value>,
}

impl BoardDto {
    pub fn workspace(&self) -> Option<u64> {
        self.workspace_id.or_else(|| {
            self.workspace
                .as_ref()
                .and_then(|w| RefDto::deserialize(w).ok())
                .and_then(|r| r.id)
        })
    }
}

/// `{ "Id": <int>, "Text": "<Portuguese message>" }` on 400/404 (API.md §4.2, SRV).
#[derive(Debug, Deserialize)]
pub(crate) struct AutomationErrorDto {
    #[serde(rename = "Text", alias = "text")]
    pub text: String,
}

/// `POST /tasks` body (`CtcTaskZapierRequest`, API.md §4.2).
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct NewTaskBody {
    pub title: String,
    pub description: String,
    pub current_due_date: String,
    pub ctc_task_type_id: u64,
    pub workspace_id: u64,
    /// Also in the query; eKyte's n8n node sends it in both places (API.md §4.2).
    pub user_email: String,
}

/// `POST /workspaces` body (`WorkspaceZapierRequest`, API.md §4.2). No `Active`: the server
/// DTO declares it, but eKyte's own n8n node never sends it, and reads give `active` as 1/0,
/// so neither the type the server binds nor what its absence means is known; the node's
/// workspaces are active without it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct NewWorkspaceBody {
    pub name: String,
    pub external_id: String,
}

/// `POST /boards` body (`BoardZapierRequest`, API.md §4.2).
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct NewBoardBody {
    pub title: String,
    pub workspace_id: u64,
}

/// `POST /notes` body (`NoteZapierRequest`, API.md §4.2); `PlanId` is the board.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct NewNoteBody {
    pub plan_id: u64,
    pub title: String,
    pub content: String,
}

// ----- surface C: MCP (API.md §5) ------------------------------------------------------------

/// `get_current_user`'s answer. Which fields mark an anonymous caller is not published
/// (API.md §2.2); `mapping::identity` checks every one that could. The user may come bare or
/// inside the BI envelope (`{"data": {…}}` or `{"data": [{…}]}`, §5): see [`CurrentUserDto::read`].
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CurrentUserDto {
    #[serde(default, alias = "userId")]
    pub id: Option<Value>,
    #[serde(default, alias = "name")]
    pub user_name: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default, deserialize_with = "flex_opt_bool")]
    pub anonymous: Option<bool>,
}

impl CurrentUserDto {
    /// The user in a tool's answer, bare or enveloped.
    pub(crate) fn read(v: &Value) -> Result<Self, serde_json::Error> {
        let user = match v.get("data") {
            Some(Value::Array(rows)) if rows.len() == 1 => &rows[0],
            Some(inner @ Value::Object(_)) => inner,
            _ => v,
        };
        Self::deserialize(user)
    }
}

/// `get_detailed_board`: the notes it lists (titles are enough to resolve a create).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct DetailedBoardDto {
    #[serde(default)]
    pub notes: Vec<NoteRefDto>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct NoteRefDto {
    #[serde(deserialize_with = "flex_id")]
    pub id: u64,
    #[serde(default)]
    pub title: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_current_user_is_read_bare_or_in_the_bi_envelope() {
        let user = serde_json::json!({ "id": "u-1", "email": "ana@example.com" });
        for answer in [
            user.clone(),
            serde_json::json!({ "data": user }),
            serde_json::json!({ "data": [user] }),
        ] {
            let dto = CurrentUserDto::read(&answer).unwrap();
            assert_eq!(dto.email.as_deref(), Some("ana@example.com"), "{answer}");
            assert_eq!(dto.id, Some(Value::from("u-1")), "{answer}");
        }
    }

    #[test]
    fn workspace_rows_say_whether_they_show_the_external_id() {
        let shown: WorkspaceDto =
            serde_json::from_str(r#"{"id":"7","name":"A","active":1,"externalId":null}"#).unwrap();
        assert_eq!(shown.id, 7);
        assert_eq!(shown.active, Some(true));
        assert_eq!(shown.external_id, Some(None));
        let hidden: WorkspaceDto =
            serde_json::from_str(r#"{"id":7,"name":"A","active":false}"#).unwrap();
        assert_eq!(hidden.external_id, None);
        assert_eq!(hidden.active, Some(false));
    }

    #[test]
    fn tasks_take_the_workspace_flat_or_nested() {
        let nested: TaskDto =
            serde_json::from_str(r#"{"id":1,"workspace":{"id":5,"name":"x"}}"#).unwrap();
        assert_eq!(nested.workspace(), Some(5));
        let flat: TaskDto = serde_json::from_str(r#"{"id":1,"workspaceId":"6"}"#).unwrap();
        assert_eq!(flat.workspace(), Some(6));
    }

    #[test]
    fn automation_bodies_are_pascal_case() {
        let body = serde_json::to_value(NewTaskBody {
            title: "t".into(),
            description: String::new(),
            current_due_date: "2024-01-01T00:00:00".into(),
            ctc_task_type_id: 3,
            workspace_id: 4,
            user_email: "a@b.c".into(),
        })
        .unwrap();
        for key in [
            "Title",
            "Description",
            "CurrentDueDate",
            "CtcTaskTypeId",
            "WorkspaceId",
            "UserEmail",
        ] {
            assert!(body.get(key).is_some(), "{key}");
        }
        let note = serde_json::to_value(NewNoteBody {
            plan_id: 1,
            title: "x".into(),
            content: "<div>y</div>".into(),
        })
        .unwrap();
        assert_eq!(note["PlanId"], 1);
        let ws = serde_json::to_value(NewWorkspaceBody {
            name: "n".into(),
            external_id: "ghl:l:c".into(),
        })
        .unwrap();
        assert_eq!(ws["ExternalId"], "ghl:l:c");
        assert!(ws.get("Active").is_none(), "{ws}");
    }
}
