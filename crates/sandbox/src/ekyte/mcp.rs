//! Surface C: eKyte's MCP endpoint, `POST /mcp?token=<personal token>`, JSON-RPC 2.0
//! (API.md §5).
//!
//! Guarantees:
//! - `initialize`, `ping`, `tools/list`, `tools/call`; notifications get HTTP 202 with no body.
//!   Answers are plain JSON, or one SSE `message` event when the client accepts
//!   `text/event-stream` and the simulator is set to prefer it (or the client accepts only SSE).
//! - Tool results are `result.content[0].text` holding JSON; lists use the BI envelope
//!   `{error, data, paging}`. A refused tool call is a result with `isError: true` and a
//!   Portuguese text; an unknown tool is a JSON-RPC error (-32602).
//! - There is no delete tool of any kind (§5, [c:69705320774]).
//! - Identity (§2.2): the token's owner, scoped to the owner's company and to the workspaces the
//!   owner may see; every write is attributed to the owner. A non-empty token that matches no
//!   one is **served anyway as an anonymous caller**: `get_current_user` answers the nil UUID
//!   with null name and e-mail, writes succeed with no author. When the string contains a real
//!   token (a pasted URL) the anonymous session lands in that token's company and may read and
//!   write all of it; otherwise it sees nothing and its writes change nothing and answer `{}`.
//!   A missing or empty token is HTTP 401.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::config::{CurrentUserShape, McpArguments};
use super::dates::ParsedDate;
use super::model::{CompanyData, Profile, Situation, Task, Workspace};
use super::params::{Fields, Params};
use super::seed::{
    NewBoard, NewComment, NewNote, NewTask, NewWorkspace, NoteEdit, TaskEdit, WorkspaceEdit,
};
use super::state::Sim;
use super::store::{Caller, SimError, Store, executor_chain};
use super::text::contains_folded;
use super::views::{View, envelope, paged};

/// Protocol revisions the simulator speaks; it echoes the client's when it is one of these.
const PROTOCOL_VERSIONS: [&str; 3] = ["2024-11-05", "2025-03-26", "2025-06-18"];

/// `list_projects` returns at most 75 rows, alphabetical, without offset (API.md §5).
const LIST_PROJECTS_MAX: usize = 75;

/// `list_tasks.limit` when the client sends none (unpublished; the simulator's choice).
const LIST_TASKS_DEFAULT: usize = 50;

pub(crate) fn routes() -> Router<Arc<Sim>> {
    Router::new().route("/mcp", post(handle))
}

fn rpc_error(id: Value, code: i64, message: &str) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "error": { "code": code, "message": message } })
}

fn rpc_result(id: Value, result: Value) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "result": result })
}

fn accepts(headers: &HeaderMap, what: &str) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains(what))
}

async fn handle(
    State(sim): State<Arc<Sim>>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let p = Params::parse(q.as_deref());
    let Some(token) = p.get("token") else {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(rpc_error(Value::Null, -32001, "Token de acesso ausente.")),
        )
            .into_response();
    };
    let caller = sim.read().resolve_token(token);
    let sse_only = accepts(&headers, "text/event-stream")
        && !accepts(&headers, "application/json")
        && !accepts(&headers, "*/*");
    let sse = sse_only || (sim.settings().mcp_prefer_sse && accepts(&headers, "text/event-stream"));

    let message: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(_) => return reply(rpc_error(Value::Null, -32700, "Parse error"), sse, false),
    };
    let mut initialized = false;
    let answer = match message {
        Value::Array(batch) if batch.is_empty() => {
            Some(rpc_error(Value::Null, -32600, "Invalid Request"))
        }
        Value::Array(batch) => {
            let answers: Vec<Value> = batch
                .iter()
                .filter_map(|m| one(&sim, caller, m, &mut initialized))
                .collect();
            (!answers.is_empty()).then_some(Value::Array(answers))
        }
        single => one(&sim, caller, &single, &mut initialized),
    };
    match answer {
        Some(a) => reply(a, sse, initialized),
        None => StatusCode::ACCEPTED.into_response(),
    }
}

fn reply(body: Value, sse: bool, initialized: bool) -> Response {
    let mut response = if sse {
        // One SSE event per answer, as streamable-HTTP servers send it (API.md §5).
        let text = format!("event: message\ndata: {body}\n\n");
        (
            [
                (header::CONTENT_TYPE, "text/event-stream"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            text,
        )
            .into_response()
    } else {
        axum::Json(body).into_response()
    };
    if initialized && let Ok(v) = HeaderValue::from_str(&Uuid::new_v4().to_string()) {
        response.headers_mut().insert("mcp-session-id", v);
    }
    response
}

/// Handle one JSON-RPC message; `None` for notifications.
fn one(sim: &Sim, caller: Caller, msg: &Value, initialized: &mut bool) -> Option<Value> {
    let Some(obj) = msg.as_object() else {
        return Some(rpc_error(Value::Null, -32600, "Invalid Request"));
    };
    let id = obj.get("id").cloned();
    let method = obj.get("method").and_then(Value::as_str);
    let valid = obj.get("jsonrpc").and_then(Value::as_str) == Some("2.0") && method.is_some();
    let Some(id) = id else {
        // A notification (`notifications/initialized`, …): nothing to answer.
        if let Some(m) = method {
            sim.counters.bump(&format!("mcp_method:{m}"));
        }
        return None;
    };
    let Some(method) = method.filter(|_| valid) else {
        return Some(rpc_error(id, -32600, "Invalid Request"));
    };
    sim.counters.bump(&format!("mcp_method:{method}"));
    let params = obj.get("params").cloned().unwrap_or(Value::Null);
    Some(match method {
        "initialize" => {
            *initialized = true;
            let asked = params.get("protocolVersion").and_then(Value::as_str);
            let version = asked
                .filter(|v| PROTOCOL_VERSIONS.contains(v))
                .unwrap_or(PROTOCOL_VERSIONS[PROTOCOL_VERSIONS.len() - 1]);
            rpc_result(
                id,
                json!({
                    "protocolVersion": version,
                    "capabilities": { "tools": { "listChanged": false } },
                    "serverInfo": { "name": "ekyte-mcp", "version": "1.0.0-sandbox" },
                    "instructions": "eKyte MCP (simulator). Verifique a identidade com get_current_user antes de escrever.",
                }),
            )
        }
        "ping" => rpc_result(id, json!({})),
        "tools/list" => rpc_result(id, json!({ "tools": tool_list() })),
        "tools/call" => call(sim, caller, id, &params),
        _ => rpc_error(id, -32601, "Method not found"),
    })
}

fn call(sim: &Sim, caller: Caller, id: Value, params: &Value) -> Value {
    let Some(name) = params.get("name").and_then(Value::as_str) else {
        return rpc_error(id, -32602, "Invalid params: name");
    };
    let empty = Map::new();
    let args = match params.get("arguments") {
        None | Some(Value::Null) => &empty,
        Some(Value::Object(o)) => o,
        Some(_) => return rpc_error(id, -32602, "Invalid params: arguments"),
    };
    let Some(spec) = TOOLS.iter().find(|t| t.name == name) else {
        sim.counters.bump("mcp_unknown_tool");
        return rpc_error(id, -32602, &format!("Unknown tool: {name}"));
    };
    sim.counters.bump(&format!("mcp_tool:{name}"));
    if sim.settings().mcp_arguments == McpArguments::Strict
        && let Err(why) = check_arguments(spec, args)
    {
        sim.counters.bump("mcp_invalid_arguments");
        return rpc_error(
            id,
            -32602,
            &format!("Invalid arguments for tool {name}: {why}"),
        );
    }
    if matches!(caller, Caller::Anonymous { .. }) {
        sim.counters.bump("mcp_anonymous_call");
        if spec.write {
            sim.counters.bump("mcp_anonymous_write");
        }
    }
    let result = match run(sim, caller, spec, Fields(args)) {
        Ok(v) => json!({ "content": [{ "type": "text", "text": v.to_string() }] }),
        Err(e) => json!({ "content": [{ "type": "text", "text": e.text }], "isError": true }),
    };
    rpc_result(id, result)
}

/// Arguments against a tool's `inputSchema`, as a validating MCP server reads them (see
/// [`super::config::EkyteConfig::mcp_arguments`]): no argument the schema does not list, every
/// required one present, each of its declared JSON type (`null` is no type).
fn check_arguments(spec: &ToolSpec, args: &Map<String, Value>) -> Result<(), String> {
    for (name, value) in args {
        let Some((_, ty, _, _)) = spec.args.iter().find(|a| a.0 == name) else {
            return Err(format!("unrecognized key {name:?}"));
        };
        let fits = match *ty {
            ID => value.as_i64().is_some(),
            S => value.is_string(),
            "boolean" => value.is_boolean(),
            "array" => value.is_array(),
            _ => true,
        };
        if !fits {
            return Err(format!("{name:?}: expected {ty}, received {value}"));
        }
    }
    match spec.args.iter().find(|a| a.2 && !args.contains_key(a.0)) {
        Some((name, ..)) => Err(format!("{name:?} is required")),
        None => Ok(()),
    }
}

// ----- tools ---------------------------------------------------------------------------------

struct ToolSpec {
    name: &'static str,
    description: &'static str,
    write: bool,
    /// (name, JSON type, required, description)
    args: &'static [(&'static str, &'static str, bool, &'static str)],
}

const ID: &str = "integer";
const S: &str = "string";

static TOOLS: &[ToolSpec] = &[
    ToolSpec {
        name: "get_current_user",
        description: "Usuário dono do token.",
        write: false,
        args: &[],
    },
    ToolSpec {
        name: "list_all_users_with_profile",
        description: "Usuários da empresa com perfil.",
        write: false,
        args: &[("page", ID, false, "Página (1..)")],
    },
    ToolSpec {
        name: "list_short_workspaces",
        description: "Lista resumida de workspaces visíveis.",
        write: false,
        args: &[
            (
                "textKey",
                ID,
                false,
                "Campo de busca (ignorado pelo simulador)",
            ),
            ("textSearch", S, false, "Texto no nome"),
            ("active", "boolean", false, "Somente ativos/inativos"),
            ("page", ID, false, "Página (1..)"),
        ],
    },
    ToolSpec {
        name: "create_workspace",
        description: "Cria um workspace (administradores).",
        write: true,
        args: &[
            ("name", S, true, "Nome"),
            ("companyId", ID, false, "Empresa (deve ser a do token)"),
            ("externalId", S, false, "Id externo livre"),
            ("description", S, false, "Descrição"),
            ("squadId", ID, false, "Squad"),
            ("active", "boolean", false, "Ativo (padrão true)"),
            ("access", S, false, "Acesso (ignorado pelo simulador)"),
        ],
    },
    ToolSpec {
        name: "update_workspace",
        description: "Altera nome, situação, id externo ou squad de um workspace (administradores).",
        write: true,
        args: &[
            ("workspaceId", ID, true, "Workspace (alias: id)"),
            ("name", S, false, "Nome"),
            ("active", "boolean", false, "false desativa"),
            ("externalId", S, false, "Id externo"),
            ("description", S, false, "Descrição"),
            ("squadId", ID, false, "Squad"),
        ],
    },
    ToolSpec {
        name: "list_task_types",
        description: "Tipos de tarefa.",
        write: false,
        args: &[
            ("textSearch", S, false, "Texto no nome"),
            ("page", ID, false, "Página"),
        ],
    },
    ToolSpec {
        name: "get_task_type_flow",
        description: "Fluxo (etapas) de um tipo de tarefa, com executores previstos.",
        write: false,
        args: &[
            ("id", ID, true, "Tipo de tarefa"),
            (
                "workspaceId",
                ID,
                false,
                "Workspace para resolver executores",
            ),
        ],
    },
    ToolSpec {
        name: "create_task",
        description: "Cria uma tarefa; o autor é o dono do token.",
        write: true,
        args: &[
            ("title", S, true, "Título"),
            ("description", S, false, "HTML"),
            ("workspaceId", ID, true, "Workspace"),
            ("ctcTaskTypeId", ID, true, "Tipo de tarefa"),
            (
                "currentDueDate",
                S,
                true,
                "Concluir até (YYYY-MM-DDTHH:MM:SS, hora da empresa)",
            ),
            ("originalDueDate", S, false, "Prazo original"),
            ("phaseStartDate", S, false, "Início da etapa"),
            ("phaseDueDate", S, false, "Prazo da etapa"),
            ("estimatedTime", ID, false, "Minutos"),
            ("executorId", S, false, "Executor da etapa inicial (UUID)"),
            (
                "phaseId",
                ID,
                false,
                "Etapa inicial (primeira ativa por padrão)",
            ),
            (
                "situation",
                ID,
                false,
                "10 ativa (padrão), 20 pausada, 30 concluída, 40 cancelada",
            ),
            ("priority", ID, false, "Prioridade bruta"),
            ("priorityGroup", ID, false, "0–100"),
            ("quantity", ID, false, "Quantidade"),
            ("ctcTaskProjectId", ID, false, "Projeto do workspace"),
            ("allocationType", ID, false, "Ignorado pelo simulador"),
            ("updateFlow", "boolean", false, "Ignorado pelo simulador"),
            (
                "flow",
                "array",
                false,
                "[{phaseId, executorId}] executores por etapa",
            ),
        ],
    },
    ToolSpec {
        name: "list_tasks",
        description: "Lista tarefas (sem descrição). limit ≤ 200.",
        write: false,
        args: &[
            ("limit", ID, false, "Máximo de linhas (padrão 50, até 200)"),
            ("page", ID, false, "Página (1..)"),
            ("workspaceId", ID, false, "Workspace"),
            ("ctcTaskProjectId", ID, false, "Projeto"),
            ("ctcTaskTypeId", ID, false, "Tipo de tarefa"),
            ("situation", ID, false, "10/20/30/40"),
            ("squadId", ID, false, "Squad"),
            ("executorId", S, false, "Executor (UUID)"),
            ("creationDateStart", S, false, "Criada a partir de"),
            ("creationDateEnd", S, false, "Criada até"),
            ("concludedDateStart", S, false, "Concluída a partir de"),
            ("concludedDateEnd", S, false, "Concluída até"),
            ("currentDueDateStart", S, false, "Prazo a partir de"),
            ("currentDueDateEnd", S, false, "Prazo até"),
            ("textSearch", S, false, "Texto no título"),
            (
                "concluded",
                "boolean",
                false,
                "Somente concluídas / não concluídas",
            ),
            ("order", S, false, "asc (padrão) ou desc, por id"),
        ],
    },
    ToolSpec {
        name: "get_detailed_task",
        description: "Tarefa completa, com descrição e fluxo. {} quando não encontrada.",
        write: false,
        args: &[("taskId", ID, true, "Tarefa")],
    },
    ToolSpec {
        name: "update_task",
        description: "Altera campos de uma tarefa.",
        write: true,
        args: &[
            ("taskId", ID, true, "Tarefa"),
            ("title", S, false, "Título"),
            ("description", S, false, "HTML"),
            ("currentDueDate", S, false, "Concluir até"),
            ("phaseStartDate", S, false, "Início da etapa"),
            ("phaseDueDate", S, false, "Prazo da etapa"),
            ("situation", ID, false, "10/20/30/40"),
            ("priorityGroup", ID, false, "0–100"),
            ("priority", ID, false, "Prioridade bruta"),
            ("estimatedTime", ID, false, "Minutos"),
            ("executorId", S, false, "Executor da etapa atual (UUID)"),
        ],
    },
    ToolSpec {
        name: "update_task_phase",
        description: "Move a tarefa para outra etapa do seu fluxo.",
        write: true,
        args: &[
            ("taskId", ID, true, "Tarefa"),
            ("phaseId", ID, true, "Etapa de destino"),
            ("executorId", S, false, "Executor na etapa (UUID)"),
        ],
    },
    ToolSpec {
        name: "list_task_flow_phases",
        description: "Etapas do fluxo da tarefa.",
        write: false,
        args: &[("taskId", ID, true, "Tarefa")],
    },
    ToolSpec {
        name: "create_task_comment",
        description: "Comenta na tarefa; o autor é o dono do token.",
        write: true,
        args: &[
            ("taskId", ID, true, "Tarefa"),
            ("description", S, true, "HTML"),
            ("artifacts", "array", false, "Ignorado pelo simulador"),
        ],
    },
    ToolSpec {
        name: "list_task_comments",
        description: "Comentários da tarefa, mais antigos primeiro.",
        write: false,
        args: &[
            ("taskId", ID, true, "Tarefa"),
            ("page", ID, false, "Página"),
        ],
    },
    ToolSpec {
        name: "list_projects",
        description: "Projetos (até 75, ordem alfabética).",
        write: false,
        args: &[("workspaceId", ID, false, "Workspace")],
    },
    ToolSpec {
        name: "list_boards",
        description: "Quadros.",
        write: false,
        args: &[
            ("workspaceId", ID, false, "Workspace"),
            ("textSearch", S, false, "Texto no título"),
            ("page", ID, false, "Página"),
        ],
    },
    ToolSpec {
        name: "get_detailed_board",
        description: "Quadro com categorias e notas. {} quando não encontrado.",
        write: false,
        args: &[("boardId", ID, true, "Quadro (alias: id)")],
    },
    ToolSpec {
        name: "create_board",
        description: "Cria um quadro.",
        write: true,
        args: &[
            ("title", S, true, "Título"),
            ("description", S, false, "Descrição"),
            ("workspaceId", ID, false, "Workspace"),
            ("categories", "array", false, "Nomes de categorias"),
        ],
    },
    ToolSpec {
        name: "create_board_note",
        description: "Cria uma nota num quadro.",
        write: true,
        args: &[
            ("boardId", ID, true, "Quadro (alias: planId)"),
            ("title", S, true, "Título"),
            ("content", S, false, "HTML"),
            ("description", S, false, "Descrição"),
            (
                "category",
                S,
                false,
                "Nome da categoria (criada se não existir)",
            ),
            ("categoryId", ID, false, "Categoria existente"),
        ],
    },
    ToolSpec {
        name: "get_detailed_note",
        description: "Nota completa. {} quando não encontrada.",
        write: false,
        args: &[("noteId", ID, true, "Nota (alias: id)")],
    },
    ToolSpec {
        name: "update_board_note",
        description: "Altera uma nota.",
        write: true,
        args: &[
            ("noteId", ID, true, "Nota (alias: id)"),
            ("title", S, false, "Título"),
            ("content", S, false, "HTML"),
            ("description", S, false, "Descrição"),
            ("category", S, false, "Nome da categoria"),
            ("categoryId", ID, false, "Categoria existente"),
        ],
    },
];

fn tool_list() -> Vec<Value> {
    TOOLS
        .iter()
        .map(|t| {
            let properties: Map<String, Value> = t
                .args
                .iter()
                .map(|(n, ty, _, d)| ((*n).to_owned(), json!({ "type": ty, "description": d })))
                .collect();
            let required: Vec<&str> = t.args.iter().filter(|a| a.2).map(|a| a.0).collect();
            json!({
                "name": t.name,
                "description": t.description,
                "inputSchema": { "type": "object", "properties": properties, "required": required },
            })
        })
        .collect()
}

/// Who is calling, inside one company.
#[derive(Clone, Copy)]
struct Ctx<'a> {
    sim: &'a Sim,
    company: i64,
    /// `None` for an anonymous session.
    user: Option<Uuid>,
}

impl Ctx<'_> {
    fn sees(&self, data: &CompanyData, ws: &Workspace) -> bool {
        self.user.is_none_or(|u| data.can_see_workspace(u, ws))
    }

    fn sees_ws_id(&self, data: &CompanyData, ws: i64) -> bool {
        data.workspaces.get(&ws).is_some_and(|w| self.sees(data, w))
    }

    fn profile(&self, data: &CompanyData) -> Option<Profile> {
        self.user.and_then(|u| data.profile(u))
    }

    fn require_admin(&self, data: &CompanyData) -> Result<(), SimError> {
        match self.user {
            None => Ok(()),
            Some(_) if self.profile(data).is_some_and(Profile::is_admin) => Ok(()),
            Some(_) => Err(SimError::only_admins_create_workspaces()),
        }
    }

    fn view<'s>(&self, store: &'s Store) -> Result<View<'s>, SimError> {
        let data = store.company(self.company)?;
        Ok(View {
            store,
            data,
            tz: data.company.timezone,
            expose_external_id: self.sim.settings().expose_external_id,
            date_only: self.sim.settings().due_to_date_means,
        })
    }

    fn date(
        &self,
        f: Fields<'_>,
        tz: chrono_tz::Tz,
        name: &str,
    ) -> Result<Option<ParsedDate>, SimError> {
        let d = f.date(name, tz)?;
        if d.is_some_and(|d| d.zoned) {
            self.sim.counters.bump("zoned_date_input");
        }
        Ok(d)
    }

    fn visible_task<'s>(&self, data: &'s CompanyData, id: i64) -> Result<&'s Task, SimError> {
        data.tasks
            .get(&id)
            .filter(|t| self.sees_ws_id(data, t.workspace_id))
            .ok_or_else(SimError::task_not_found)
    }
}

fn page_of(f: Fields<'_>) -> Result<usize, SimError> {
    Ok(usize::try_from(f.int("page")?.unwrap_or(1))
        .unwrap_or(1)
        .max(1))
}

fn required_id(f: Fields<'_>, names: &[&str]) -> Result<i64, SimError> {
    f.int_any(names)?
        .ok_or_else(|| SimError::required(names[0]))
}

fn run(sim: &Sim, caller: Caller, spec: &ToolSpec, f: Fields<'_>) -> Result<Value, SimError> {
    let (company, user) = match caller {
        Caller::User { company, user } => (Some(company), Some(user)),
        Caller::Anonymous { company } => (company, None),
    };
    if spec.name == "get_current_user" {
        let me = current_user(sim, company, user)?;
        return Ok(match sim.settings().mcp_current_user {
            CurrentUserShape::Enveloped => json!({ "data": me }),
            CurrentUserShape::Bare => me,
        });
    }
    let Some(company) = company else {
        // Anonymous and tied to no company: nothing to see, and writes vanish.
        let size = sim.settings().page_size;
        return Ok(if spec.name.starts_with("list_") {
            envelope(Vec::new(), 1, size, 0)
        } else {
            json!({})
        });
    };
    let ctx = Ctx { sim, company, user };
    if spec.write {
        let mut store = sim.write();
        write_tool(ctx, &mut store, spec.name, f)
    } else {
        let store = sim.read();
        read_tool(ctx, &store, spec.name, f)
    }
}

fn current_user(sim: &Sim, company: Option<i64>, user: Option<Uuid>) -> Result<Value, SimError> {
    let store = sim.read();
    let data = company.and_then(|c| store.company(c).ok());
    match (user.and_then(|u| store.user(u)), data) {
        (Some(u), Some(d)) => Ok(json!({
            "id": u.id,
            "userName": u.user_name,
            "email": u.email,
            "profile": d.profile(u.id).map(Profile::label),
            "companyId": d.company.id,
            "companyName": d.company.name,
            "timezone": d.company.timezone.name(),
        })),
        // The anonymous identity: a nil id that still looks like a UUID, no name, no e-mail.
        _ => Ok(json!({
            "id": Uuid::nil(),
            "userName": null,
            "email": null,
            "profile": null,
            "companyId": data.map(|d| d.company.id),
            "companyName": null,
            "timezone": data.map(|d| d.company.timezone.name()),
        })),
    }
}

fn read_tool(ctx: Ctx<'_>, store: &Store, name: &str, f: Fields<'_>) -> Result<Value, SimError> {
    let v = ctx.view(store)?;
    let data = v.data;
    let size = ctx.sim.settings().page_size;
    match name {
        "list_all_users_with_profile" => {
            let rows: Vec<_> = data
                .members
                .iter()
                .filter_map(|(id, m)| store.user(*id).map(|u| (u, m.profile)))
                .collect();
            Ok(paged(
                &rows,
                page_of(f)?,
                size,
                |(u, p)| json!({ "id": u.id, "userName": u.user_name, "email": u.email, "profile": p.label() }),
            ))
        }
        "list_short_workspaces" => {
            let text = f.text("textSearch")?;
            let active = f.bool("active")?;
            let rows: Vec<_> = data
                .workspaces
                .values()
                .filter(|w| ctx.sees(data, w))
                .filter(|w| active.is_none_or(|a| w.active == a))
                .filter(|w| text.as_deref().is_none_or(|t| contains_folded(&w.name, t)))
                .collect();
            Ok(paged(&rows, page_of(f)?, size, |w| v.workspace(w)))
        }
        "list_task_types" => {
            let text = f.text("textSearch")?;
            let rows: Vec<_> = data
                .task_types
                .values()
                .filter(|t| text.as_deref().is_none_or(|s| contains_folded(&t.name, s)))
                .collect();
            Ok(paged(&rows, page_of(f)?, size, |t| v.task_type(t)))
        }
        "get_task_type_flow" => {
            let id = required_id(f, &["id", "taskTypeId", "ctcTaskTypeId"])?;
            let tt = data
                .task_types
                .get(&id)
                .ok_or_else(SimError::task_type_not_found)?;
            let ws = match f.int("workspaceId")? {
                Some(w) => Some(
                    data.workspaces
                        .get(&w)
                        .filter(|x| ctx.sees(data, x))
                        .ok_or_else(SimError::workspace_not_found)?,
                ),
                None => None,
            };
            let wf = data
                .workflows
                .get(&tt.workflow_id)
                .ok_or_else(SimError::workflow_not_found)?;
            let phases: Vec<Value> = wf
                .phases
                .iter()
                .map(|p| {
                    let ex = executor_chain(data, tt, ws, p.id);
                    json!({
                        "phaseId": p.id,
                        "name": p.name,
                        "sequential": p.sequential,
                        "duration": p.duration_days,
                        "effort": p.effort_minutes,
                        "active": p.active,
                        "executorId": ex,
                        "executor": v.user_ref(ex),
                    })
                })
                .collect();
            Ok(json!({
                "id": tt.id,
                "name": tt.name,
                "workflowId": wf.id,
                "workflow": { "id": wf.id, "name": wf.name, "active": wf.active },
                "flowPhases": phases,
            }))
        }
        "list_tasks" => list_tasks(ctx, v, f),
        "get_detailed_task" => {
            let id = required_id(f, &["taskId", "id"])?;
            // API.md §5: unplanned project tasks (and, here, any unknown id) answer `{}`.
            Ok(ctx
                .visible_task(data, id)
                .map(|t| v.task_mcp(t, true))
                .unwrap_or_else(|_| json!({})))
        }
        "list_task_flow_phases" => {
            let t = ctx.visible_task(data, required_id(f, &["taskId", "id"])?)?;
            let rows: Vec<_> = t.flow.iter().collect();
            Ok(paged(&rows, 1, rows.len().max(1), |p| v.flow_phase(p)))
        }
        "list_task_comments" => {
            let t = ctx.visible_task(data, required_id(f, &["taskId", "id"])?)?;
            let rows: Vec<_> = t.comments.iter().collect();
            Ok(paged(&rows, page_of(f)?, size, |c| v.comment(c)))
        }
        "list_projects" => {
            let ws = f.int("workspaceId")?;
            let mut rows: Vec<_> = data
                .projects
                .values()
                .filter(|p| ws.is_none_or(|w| p.workspace_id == w))
                .filter(|p| ctx.sees_ws_id(data, p.workspace_id))
                .collect();
            rows.sort_by_key(|p| p.name.to_lowercase());
            rows.truncate(LIST_PROJECTS_MAX);
            Ok(paged(&rows, 1, LIST_PROJECTS_MAX, |p| v.project(p)))
        }
        "list_boards" => {
            let ws = f.int("workspaceId")?;
            let text = f.text("textSearch")?;
            let rows: Vec<_> = data
                .boards
                .values()
                .filter(|b| ws.is_none() || b.workspace_id == ws)
                .filter(|b| b.workspace_id.is_none_or(|w| ctx.sees_ws_id(data, w)))
                .filter(|b| text.as_deref().is_none_or(|t| contains_folded(&b.title, t)))
                .collect();
            Ok(paged(&rows, page_of(f)?, size, |b| v.board(b)))
        }
        "get_detailed_board" => {
            let id = required_id(f, &["boardId", "id", "planId"])?;
            Ok(data
                .boards
                .get(&id)
                .filter(|b| b.workspace_id.is_none_or(|w| ctx.sees_ws_id(data, w)))
                .map(|b| v.board_detailed(b))
                .unwrap_or_else(|| json!({})))
        }
        "get_detailed_note" => {
            let id = required_id(f, &["noteId", "id"])?;
            Ok(data
                .notes
                .get(&id)
                .filter(|n| board_visible(ctx, data, n.board_id))
                .map(|n| v.note(n))
                .unwrap_or_else(|| json!({})))
        }
        other => Err(SimError::bad_value(other)),
    }
}

fn board_visible(ctx: Ctx<'_>, data: &CompanyData, board: i64) -> bool {
    data.boards
        .get(&board)
        .is_some_and(|b| b.workspace_id.is_none_or(|w| ctx.sees_ws_id(data, w)))
}

fn list_tasks(ctx: Ctx<'_>, v: View<'_>, f: Fields<'_>) -> Result<Value, SimError> {
    let data = v.data;
    let tz = v.tz;
    let max = ctx.sim.settings().mcp_list_tasks_max;
    let limit = usize::try_from(f.int("limit")?.unwrap_or(LIST_TASKS_DEFAULT as i64))
        .unwrap_or(LIST_TASKS_DEFAULT)
        .clamp(1, max);
    let ws = f.int("workspaceId")?;
    let project = f.int("ctcTaskProjectId")?;
    let task_type = f.int("ctcTaskTypeId")?;
    let squad = f.int("squadId")?;
    let situation = match f.int("situation")? {
        None | Some(0) => None,
        Some(c) => Some(Situation::from_code(c).ok_or_else(|| SimError::bad_value("situation"))?),
    };
    let executor = f.uuid("executorId")?;
    let concluded = f.bool("concluded")?;
    let text = f.text("textSearch")?;
    let range = |from: &str, to: &str| -> Result<_, SimError> {
        let bound = |name: &str, upper: bool| -> Result<_, SimError> {
            match f.str(name)?.filter(|s| !s.trim().is_empty()) {
                None => Ok(None),
                Some(s) => super::dates::parse_bound(&s, tz, upper, v.date_only)
                    .map(Some)
                    .map_err(|_| SimError::bad_date(name, &s)),
            }
        };
        Ok((bound(from, false)?, bound(to, true)?))
    };
    let created = range("creationDateStart", "creationDateEnd")?;
    let resolved = range("concludedDateStart", "concludedDateEnd")?;
    let due = range("currentDueDateStart", "currentDueDateEnd")?;
    let inside = |t: Option<chrono::DateTime<chrono::Utc>>,
                  (a, b): (
        Option<chrono::DateTime<chrono::Utc>>,
        Option<chrono::DateTime<chrono::Utc>>,
    )| {
        if a.is_none() && b.is_none() {
            return true;
        }
        t.is_some_and(|t| a.is_none_or(|a| t >= a) && b.is_none_or(|b| t <= b))
    };
    let mut rows: Vec<&Task> = data
        .tasks
        .values()
        .filter(|t| ctx.sees_ws_id(data, t.workspace_id))
        .filter(|t| ws.is_none_or(|w| t.workspace_id == w))
        .filter(|t| project.is_none() || t.project_id == project)
        .filter(|t| task_type.is_none_or(|x| t.task_type_id == x))
        .filter(|t| {
            squad.is_none()
                || data
                    .workspaces
                    .get(&t.workspace_id)
                    .and_then(|w| w.squad_id)
                    == squad
        })
        .filter(|t| situation.is_none_or(|s| t.situation == s))
        .filter(|t| executor.is_none() || t.executor_id == executor)
        .filter(|t| concluded.is_none_or(|c| (t.situation == Situation::Completed) == c))
        .filter(|t| text.as_deref().is_none_or(|s| contains_folded(&t.title, s)))
        .filter(|t| inside(Some(t.creation_date), created))
        .filter(|t| inside(t.resolved_date, resolved))
        .filter(|t| inside(t.current_due_date, due))
        .collect();
    if f.str("order")?
        .is_some_and(|o| o.to_lowercase().contains("desc"))
    {
        rows.reverse();
    }
    Ok(paged(&rows, page_of(f)?, limit, |t| v.task_mcp(t, false)))
}

fn write_tool(
    ctx: Ctx<'_>,
    store: &mut Store,
    name: &str,
    f: Fields<'_>,
) -> Result<Value, SimError> {
    let now = ctx.sim.now();
    let data = store.company(ctx.company)?;
    let tz = data.company.timezone;
    match name {
        "create_workspace" => {
            ctx.require_admin(data)?;
            let name = f.text("name")?.ok_or_else(|| SimError::required("name"))?;
            if f.int("companyId")?.is_some_and(|c| c != ctx.company) {
                return Err(SimError::company_not_found());
            }
            let ws = NewWorkspace {
                name,
                description: f.str("description")?,
                active: f.bool("active")?.unwrap_or(true),
                external_id: f.str("externalId")?,
                squad_id: f.int("squadId")?,
                created_by: ctx.user,
                ..NewWorkspace::default()
            };
            let id = store.add_workspace(ctx.company, ws, now)?;
            let v = ctx.view(store)?;
            Ok(v.workspace(&v.data.workspaces[&id]))
        }
        "update_workspace" => {
            ctx.require_admin(data)?;
            let id = required_id(f, &["workspaceId", "id"])?;
            if !ctx.sees_ws_id(data, id) {
                return Err(SimError::workspace_not_found());
            }
            // Under `replace` (see `EkyteConfig::mcp_update`) a call gives the workspace whole:
            // its name is required, an absent `active` means active and an absent
            // `externalId` is cleared. Description and squad are kept under both.
            let replace = ctx.sim.settings().mcp_update == super::config::McpUpdate::Replace;
            let name = f.str("name")?;
            if replace && name.is_none() {
                return Err(SimError::required("name"));
            }
            let external_id = f.str("externalId")?;
            let clear_external = replace && external_id.is_none();
            let edit = WorkspaceEdit {
                name,
                description: f.str("description")?,
                active: f.bool("active")?.or(replace.then_some(true)),
                external_id,
                squad_id: f.int("squadId")?,
            };
            store.edit_workspace(ctx.company, id, edit, now)?;
            if clear_external
                && let Some(ws) = store.company_mut(ctx.company)?.workspaces.get_mut(&id)
            {
                ws.external_id = None;
            }
            let v = ctx.view(store)?;
            Ok(v.workspace(&v.data.workspaces[&id]))
        }
        "create_task" => {
            let title = f
                .text("title")?
                .ok_or_else(|| SimError::required("title"))?;
            let ws = f
                .int("workspaceId")?
                .ok_or_else(|| SimError::required("workspaceId"))?;
            let tt = f
                .int("ctcTaskTypeId")?
                .ok_or_else(|| SimError::required("ctcTaskTypeId"))?;
            let due = ctx
                .date(f, tz, "currentDueDate")?
                .ok_or_else(|| SimError::required("currentDueDate"))?;
            match ctx.profile(data) {
                Some(Profile::Guest) => return Err(SimError::guests_cannot_create_tasks()),
                Some(p) if data.company.only_admins_create_tasks && !p.is_admin() => {
                    return Err(SimError::only_admins_create_tasks());
                }
                _ => {}
            }
            if !data.workspaces.contains_key(&ws) {
                return Err(SimError::workspace_not_found());
            }
            if !ctx.sees_ws_id(data, ws) {
                return Err(SimError::no_workspace_access());
            }
            let mut flow_executors = BTreeMap::new();
            for step in f.array("flow")?.into_iter().flatten() {
                let Some(obj) = step.as_object() else {
                    return Err(SimError::bad_value("flow"));
                };
                let step = Fields(obj);
                if let (Some(p), Some(e)) = (step.int("phaseId")?, step.uuid("executorId")?) {
                    flow_executors.insert(p, e);
                }
            }
            let situation = match f.int("situation")? {
                None => Situation::Active,
                Some(c) => {
                    Situation::from_code(c).ok_or_else(|| SimError::bad_value("situation"))?
                }
            };
            let mut task = NewTask::new(ws, tt, &title);
            task.description = f.str("description")?.unwrap_or_default();
            task.situation = situation;
            task.project_id = f.int("ctcTaskProjectId")?;
            task.current_due_date = Some(due.instant);
            task.original_due_date = ctx.date(f, tz, "originalDueDate")?.map(|d| d.instant);
            task.phase_start_date = ctx.date(f, tz, "phaseStartDate")?.map(|d| d.instant);
            task.phase_due_date = ctx.date(f, tz, "phaseDueDate")?.map(|d| d.instant);
            task.phase_id = f.int("phaseId")?;
            task.executor_id = f.uuid("executorId")?;
            task.priority_group = f.int("priorityGroup")?.unwrap_or(0);
            task.priority = f.int("priority")?.unwrap_or(0);
            task.quantity = f.int("quantity")?.unwrap_or(1);
            task.estimated_time = f.int("estimatedTime")?;
            task.created_by = ctx.user;
            let id = store.add_task(ctx.company, task, &flow_executors, now)?;
            let v = ctx.view(store)?;
            let mut out = v.task_mcp(&v.data.tasks[&id], true);
            out["taskId"] = json!(id);
            Ok(out)
        }
        "update_task" => {
            let id = required_id(f, &["taskId", "id"])?;
            ctx.visible_task(data, id)?;
            let situation = match f.int("situation")? {
                None => None,
                Some(c) => {
                    Some(Situation::from_code(c).ok_or_else(|| SimError::bad_value("situation"))?)
                }
            };
            let title = f.str("title")?;
            let description = f.str("description")?;
            let current_due_date = ctx.date(f, tz, "currentDueDate")?.map(|d| d.instant);
            // Under `replace`, a call that edits the task's content replaces all of it (see
            // `EkyteConfig::mcp_update`): a title and a due date are required, an absent
            // description is cleared. A call with none of them (a situation alone) moves the
            // task and leaves its content.
            let edits_content =
                title.is_some() || description.is_some() || current_due_date.is_some();
            let replace =
                edits_content && ctx.sim.settings().mcp_update == super::config::McpUpdate::Replace;
            if replace && title.is_none() {
                return Err(SimError::required("title"));
            }
            if replace && current_due_date.is_none() {
                return Err(SimError::required("currentDueDate"));
            }
            let description = match description {
                None if replace => Some(String::new()),
                d => d,
            };
            let situation = situation.filter(|_| !ctx.sim.settings().mcp_update_ignores_situation);
            let edit = TaskEdit {
                title,
                description,
                current_due_date,
                phase_start_date: ctx.date(f, tz, "phaseStartDate")?.map(|d| d.instant),
                phase_due_date: ctx.date(f, tz, "phaseDueDate")?.map(|d| d.instant),
                situation,
                priority_group: f.int("priorityGroup")?,
                priority: f.int("priority")?,
                estimated_time: f.int("estimatedTime")?,
                executor_id: f.uuid("executorId")?,
            };
            store.edit_task(ctx.company, id, edit, ctx.user, now)?;
            let v = ctx.view(store)?;
            Ok(v.task_mcp(&v.data.tasks[&id], true))
        }
        "update_task_phase" => {
            let id = required_id(f, &["taskId", "id"])?;
            ctx.visible_task(data, id)?;
            let phase = f
                .int("phaseId")?
                .ok_or_else(|| SimError::required("phaseId"))?;
            let executor = f.uuid("executorId")?;
            store.move_task_phase(ctx.company, id, phase, executor, ctx.user, now)?;
            let v = ctx.view(store)?;
            Ok(v.task_mcp(&v.data.tasks[&id], true))
        }
        "create_task_comment" => {
            let id = required_id(f, &["taskId", "id"])?;
            ctx.visible_task(data, id)?;
            let description = f
                .text("description")?
                .ok_or_else(|| SimError::required("description"))?;
            let cid = store.add_comment(
                ctx.company,
                NewComment {
                    task_id: id,
                    description,
                    author_id: ctx.user,
                    created_at: None,
                },
                now,
            )?;
            let v = ctx.view(store)?;
            let task = &v.data.tasks[&id];
            let comment = task
                .comments
                .iter()
                .find(|c| c.id == cid)
                .ok_or_else(SimError::task_not_found)?;
            let mut out = v.comment(comment);
            out["taskId"] = json!(id);
            Ok(out)
        }
        "create_board" => {
            let title = f
                .text("title")?
                .ok_or_else(|| SimError::required("title"))?;
            let ws = f.int("workspaceId")?;
            if ws.is_some_and(|w| !ctx.sees_ws_id(data, w)) {
                return Err(SimError::workspace_not_found());
            }
            let categories = f
                .array("categories")?
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default();
            let id = store.add_board(
                ctx.company,
                NewBoard {
                    title,
                    description: f.str("description")?,
                    workspace_id: ws,
                    categories,
                    created_by: ctx.user,
                },
                now,
            )?;
            let v = ctx.view(store)?;
            Ok(v.board_detailed(&v.data.boards[&id]))
        }
        "create_board_note" => {
            let board = required_id(f, &["boardId", "planId", "id"])?;
            if !board_visible(ctx, data, board) {
                return Err(SimError::board_not_found());
            }
            let title = f
                .text("title")?
                .ok_or_else(|| SimError::required("title"))?;
            let category = category_name(data, board, f)?;
            let id = store.add_note(
                ctx.company,
                NewNote {
                    board_id: board,
                    title,
                    description: f.str("description")?,
                    content: f.str("content")?.unwrap_or_default(),
                    category,
                    created_by: ctx.user,
                },
                now,
            )?;
            let v = ctx.view(store)?;
            Ok(v.note(&v.data.notes[&id]))
        }
        "update_board_note" => {
            let id = required_id(f, &["noteId", "id"])?;
            let note = data.notes.get(&id).ok_or_else(SimError::note_not_found)?;
            if !board_visible(ctx, data, note.board_id) {
                return Err(SimError::note_not_found());
            }
            let category = category_name(data, note.board_id, f)?;
            let edit = NoteEdit {
                title: f.str("title")?,
                description: f.str("description")?,
                content: f.str("content")?,
                category,
            };
            store.edit_note(ctx.company, id, edit, ctx.user, now)?;
            let v = ctx.view(store)?;
            Ok(v.note(&v.data.notes[&id]))
        }
        other => Err(SimError::bad_value(other)),
    }
}

/// `categoryId` (must exist on the board) or `category` (a name) → the name the store matches.
fn category_name(
    data: &CompanyData,
    board: i64,
    f: Fields<'_>,
) -> Result<Option<String>, SimError> {
    if let Some(cid) = f.int("categoryId")? {
        return data
            .boards
            .get(&board)
            .and_then(|b| b.categories.iter().find(|c| c.id == cid))
            .map(|c| Some(c.name.clone()))
            .ok_or_else(|| SimError::bad_value("categoryId"));
    }
    f.text("category")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_tool_deletes_anything() {
        for t in TOOLS {
            assert!(
                !t.name.contains("delete") && !t.name.contains("remove"),
                "{}",
                t.name
            );
        }
    }

    #[test]
    fn every_required_argument_is_in_the_schema() {
        for t in tool_list() {
            let props = t["inputSchema"]["properties"].as_object().unwrap();
            for r in t["inputSchema"]["required"].as_array().unwrap() {
                assert!(props.contains_key(r.as_str().unwrap()));
            }
        }
    }
}
