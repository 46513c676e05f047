//! The adapter's reading of eKyte's answers, for fuzzing (feature `fuzzing`; `fuzz/` at the
//! repository root).
//!
//! [`read`] takes one answer (status, whether it came as an event stream, body) and runs on it
//! exactly what the adapter runs after a request on that surface: the BI envelope, the
//! automation answer or the MCP JSON-RPC/SSE answer and tool result, then the wire DTOs and
//! the mapping to port types (with the tenant's time zone). It returns port types or the port
//! error; the wire types stay private, and nothing here sends a request.

use chrono::{DateTime, Utc};
use domain::{EkyteTaskId, EkyteWorkspaceId};
use ports::ApiError;
use ports::ekyte::{Board, EkyteComment, EkyteTask, Workspace};
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use secrecy::SecretString;
use serde::Deserialize as _;

use crate::client::{Request, Response, read_automation, read_automation_rows, read_bi};
use crate::dto::{BoardDto, CommentDto, CurrentUserDto, Envelope, TaskDto, WorkspaceDto};
use crate::mcp::{RpcError, ToolOutput, answer, http_error, tool_output};
use crate::{McpIdentity, created_id, mapping};

/// Which answer the body is read as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    /// `GET /v1.0/workspaces`.
    BiWorkspaces,
    /// `GET /v1.2/tasks`.
    BiTasks,
    /// An automation create (`POST /n8n/…`): the new record's id.
    AutomationCreate,
    /// The automation workspace lookup by `ExternalId`.
    AutomationWorkspaces,
    /// The automation board listing.
    AutomationBoards,
    /// MCP `get_detailed_task`.
    McpTask,
    /// MCP `get_current_user` (the token's identity check).
    McpIdentity,
    /// MCP `list_task_comments`.
    McpComments,
    /// A zone-less eKyte time in the tenant's zone.
    LocalTime,
}

impl Surface {
    pub fn from_byte(b: u8) -> Self {
        const ALL: [Surface; 9] = [
            Surface::BiWorkspaces,
            Surface::BiTasks,
            Surface::AutomationCreate,
            Surface::AutomationWorkspaces,
            Surface::AutomationBoards,
            Surface::McpTask,
            Surface::McpIdentity,
            Surface::McpComments,
            Surface::LocalTime,
        ];
        ALL[usize::from(b) % ALL.len()]
    }
}

/// What the adapter made of an answer.
#[derive(Debug)]
pub enum Read {
    Workspaces(Vec<Workspace>),
    Tasks(Vec<EkyteTask>),
    Created(u64),
    Boards(Vec<Board>),
    Task(Option<EkyteTask>),
    Identity(Result<McpIdentity, &'static str>),
    Comments(Vec<EkyteComment>),
    Time(Option<DateTime<Utc>>),
    /// The tool refused, with eKyte's (scrubbed) text.
    Refused(String),
}

/// The secret every fuzzed request carries, scrubbed from any text taken from an answer.
pub const SECRET: &str = "fuzz-secret-api-key-0123456789";

fn unknown(e: serde_json::Error, what: &str) -> ApiError {
    ApiError::Unknown(
        crate::error::shape_error(&e).context(format!("{what} answered an unknown shape")),
    )
}

/// Read `body` as an answer of `surface` with HTTP `status` (`sse`: served as
/// `text/event-stream`), as the adapter does.
pub fn read(surface: Surface, status: u16, sse: bool, body: &str) -> Result<Read, ApiError> {
    let secret = SecretString::from(SECRET.to_owned());
    let tz = chrono_tz::America::Sao_Paulo;
    let url = url::Url::parse("http://127.0.0.1/fuzz")
        .map_err(|e| ApiError::Unknown(anyhow::anyhow!("the fixed URL does not parse: {e}")))?;
    let req = Request {
        method: Method::GET,
        route: "fuzz".into(),
        url,
        body: None,
        headers: Vec::new(),
        secrets: vec![&secret],
        idempotent: true,
    };
    let mut headers = HeaderMap::new();
    if sse {
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    }
    let resp = Response {
        status: StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
        headers,
        body: body.to_owned(),
    };
    let mcp = |resp: &Response| -> Result<ToolOutput, ApiError> {
        if !resp.status.is_success() {
            return Err(match http_error(&req, resp, true) {
                RpcError::Api(e) => e,
                RpcError::SessionGone => ApiError::Unknown(anyhow::anyhow!("session gone")),
            });
        }
        let result = answer(&req, resp, 7)?;
        Ok(tool_output(&result, &secret))
    };
    Ok(match surface {
        Surface::BiWorkspaces => {
            let env: Envelope<WorkspaceDto> = read_bi(&req, &resp)?;
            Read::Workspaces(
                env.data
                    .unwrap_or_default()
                    .into_iter()
                    .map(mapping::workspace)
                    .collect::<Result<_, _>>()?,
            )
        }
        Surface::BiTasks => {
            let env: Envelope<TaskDto> = read_bi(&req, &resp)?;
            Read::Tasks(
                env.data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|t| mapping::task(t, tz, None))
                    .collect::<Result<_, _>>()?,
            )
        }
        Surface::AutomationCreate => {
            let v = read_automation(&req, &resp)?;
            Read::Created(created_id(&v, "WorkspaceId", "workspace")?)
        }
        Surface::AutomationWorkspaces => {
            let v = read_automation(&req, &resp)?;
            let env: Envelope<WorkspaceDto> =
                Envelope::deserialize(&v).map_err(|e| unknown(e, "the workspace lookup"))?;
            Read::Workspaces(
                env.data
                    .unwrap_or_default()
                    .into_iter()
                    .map(mapping::workspace)
                    .collect::<Result<_, _>>()?,
            )
        }
        Surface::AutomationBoards => {
            let rows: Vec<BoardDto> =
                read_automation_rows(&req, &resp, "the board listing", |_| true)?;
            Read::Boards(
                rows.into_iter()
                    .map(mapping::board)
                    .collect::<Result<_, _>>()?,
            )
        }
        Surface::McpTask => match mcp(&resp)? {
            ToolOutput::Value(v) => Read::Task(match TaskDto::deserialize(&v) {
                Ok(dto) => {
                    let ws = dto.workspace().and_then(|w| EkyteWorkspaceId::new(w).ok());
                    Some(mapping::task(dto, tz, ws)?)
                }
                Err(_) => None,
            }),
            ToolOutput::Refused(text) => Read::Refused(text),
        },
        Surface::McpIdentity => match mcp(&resp)? {
            ToolOutput::Value(v) => {
                let dto = CurrentUserDto::read(&v).map_err(|e| unknown(e, "get_current_user"))?;
                Read::Identity(mapping::identity(dto))
            }
            ToolOutput::Refused(text) => Read::Refused(text),
        },
        Surface::McpComments => match mcp(&resp)? {
            ToolOutput::Value(v) => {
                let env: Envelope<CommentDto> =
                    Envelope::deserialize(&v).map_err(|e| unknown(e, "list_task_comments"))?;
                let task = EkyteTaskId::new(1).map_err(|e| {
                    ApiError::Unknown(anyhow::anyhow!("the fixed task id is refused: {e}"))
                })?;
                Read::Comments(
                    env.data
                        .unwrap_or_default()
                        .into_iter()
                        .map(|c| mapping::comment(c, task, tz))
                        .collect::<Result<_, _>>()?,
                )
            }
            ToolOutput::Refused(text) => Read::Refused(text),
        },
        Surface::LocalTime => Read::Time(mapping::parse_local(body, tz)),
    })
}

/// Whether `text` (anything [`read`] returned, rendered) holds the request's secret: the
/// adapter promises it never does.
pub fn leaks_secret(text: &str) -> bool {
    text.contains(SECRET)
}
