//! Wire-level behaviour against `wiremock`: SSE framing, `{Id, Text}` refusals, retries of
//! reads, creates resolved by lookup, error envelopes on 2xx, secrets kept out of errors.

use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use domain::{
    EkyteMapping, EkyteTaskId, EkyteTaskTypeId, EkyteWorkspaceId, ExternalRef, FieldChange,
    FieldValue, Task,
};
use ekyte::EkyteAdapter;
use ports::ekyte::EkyteApi;
use ports::{ApiError, Scope};
use serde_json::{Value, json};
use wiremock::matchers::{body_partial_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::support::{MemCredentials, fast_config, scope_of, tenant};

const KEY: &str = "k-SECRET-0123456789";
const TOKEN: &str = "t-SECRET-abcdef0123456789";

struct Wire {
    server: MockServer,
    adapter: EkyteAdapter,
    scope: Scope,
}

async fn wire(with_mcp: bool) -> Wire {
    wire_with(with_mcp, |_| {}).await
}

async fn wire_with(with_mcp: bool, tweak: impl FnOnce(&mut ekyte::EkyteConfig)) -> Wire {
    let server = MockServer::start().await;
    let mut config = fast_config(&server.uri());
    tweak(&mut config);
    let creds = MemCredentials::new(KEY, with_mcp.then_some(TOKEN));
    let adapter = EkyteAdapter::new(config, creds).unwrap();
    let scope = scope_of(tenant(
        4242,
        EkyteMapping {
            task_type_id: Some(EkyteTaskTypeId::new(5).unwrap()),
            user_email: Some("ops@agency.example".into()),
            ..EkyteMapping::default()
        },
    ));
    Wire {
        server,
        adapter,
        scope,
    }
}

fn envelope(data: Value) -> Value {
    json!({
        "error": null,
        "data": data,
        "paging": { "currentPage": { "size": 100, "number": 1 }, "totalCollectionSize": 1, "totalPages": 1 }
    })
}

/// Answers a JSON-RPC request with `result`, echoing its id; as SSE when `sse`.
struct Rpc {
    result: Value,
    sse: bool,
    session: Option<&'static str>,
}

impl Respond for Rpc {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&req.body).unwrap();
        let msg = json!({ "jsonrpc": "2.0", "id": body["id"], "result": self.result });
        let mut t = if self.sse {
            ResponseTemplate::new(200)
                .insert_header("content-type", "text/event-stream")
                .set_body_string(format!(": ping\n\nevent: message\ndata: {msg}\n\n"))
        } else {
            ResponseTemplate::new(200).set_body_json(msg)
        };
        if let Some(s) = self.session {
            t = t.insert_header("mcp-session-id", s);
        }
        t
    }
}

fn tool_text(v: Value) -> Value {
    json!({ "content": [{ "type": "text", "text": v.to_string() }] })
}

/// `initialize`, `notifications/initialized` and `get_current_user` for a real user.
async fn mcp_handshake(server: &MockServer, sse: bool) {
    Mock::given(method("POST"))
        .and(path("/mcp"))
        .and(query_param("token", TOKEN))
        .and(body_partial_json(json!({ "method": "initialize" })))
        .respond_with(Rpc {
            result: json!({ "protocolVersion": "2024-11-05", "capabilities": { "tools": {} } }),
            sse,
            session: Some("s-1"),
        })
        .mount(server)
        .await;
    Mock::given(method("POST"))
        .and(path("/mcp"))
        .and(body_partial_json(
            json!({ "method": "notifications/initialized" }),
        ))
        .respond_with(ResponseTemplate::new(202))
        .mount(server)
        .await;
    Mock::given(method("POST"))
        .and(path("/mcp"))
        .and(header("mcp-session-id", "s-1"))
        .and(body_partial_json(
            json!({ "params": { "name": "get_current_user" } }),
        ))
        .respond_with(Rpc {
            result: tool_text(json!({
                "id": "7c9e6679-7425-40de-944b-e07fc1f90ae7",
                "userName": "Ana",
                "email": "ana@agency.example"
            })),
            sse,
            session: None,
        })
        .mount(server)
        .await;
}

fn retitle() -> [FieldChange; 1] {
    [FieldChange {
        field: "title",
        from: FieldValue::Text(None),
        to: FieldValue::Text(Some("Novo".into())),
    }]
}

/// Every message of an error and its causes.
fn chain(e: &ApiError) -> String {
    let mut out = e.to_string();
    let mut cur: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(c) = cur {
        out.push_str(" | ");
        out.push_str(&c.to_string());
        cur = c.source();
    }
    out
}

async fn mcp_update(sse: bool) {
    let w = wire(true).await;
    mcp_handshake(&w.server, sse).await;
    Mock::given(method("POST"))
        .and(path("/mcp"))
        .and(header("mcp-session-id", "s-1"))
        .and(body_partial_json(json!({
            "method": "tools/call",
            "params": { "name": "update_task", "arguments": { "taskId": 9, "title": "Novo" } }
        })))
        .respond_with(Rpc {
            result: tool_text(json!({ "id": 9, "title": "Novo" })),
            sse,
            session: None,
        })
        .expect(1)
        .mount(&w.server)
        .await;
    w.adapter
        .update_task(
            &w.scope,
            EkyteTaskId::new(9).unwrap(),
            &retitle(),
            &crate::support::target_of(&crate::support::some_task(), &retitle()),
        )
        .await
        .unwrap();
    let who = w.adapter.mcp_identity(&w.scope).await.unwrap();
    assert_eq!(who.email, "ana@agency.example");
}

#[tokio::test]
async fn mcp_answers_as_sse_are_read() {
    mcp_update(true).await;
}

#[tokio::test]
async fn mcp_answers_as_plain_json_are_read() {
    mcp_update(false).await;
}

#[tokio::test]
async fn json_rpc_argument_errors_are_invalid() {
    let w = wire(true).await;
    mcp_handshake(&w.server, false).await;
    Mock::given(method("POST"))
        .and(path("/mcp"))
        .and(body_partial_json(
            json!({ "params": { "name": "update_task" } }),
        ))
        .respond_with(|req: &Request| {
            let body: Value = serde_json::from_slice(&req.body).unwrap();
            ResponseTemplate::new(200).set_body_json(json!({
                "jsonrpc": "2.0", "id": body["id"],
                "error": { "code": -32602, "message": "Invalid params: taskId" }
            }))
        })
        .mount(&w.server)
        .await;
    let err = w
        .adapter
        .update_task(
            &w.scope,
            EkyteTaskId::new(9).unwrap(),
            &retitle(),
            &crate::support::target_of(&crate::support::some_task(), &retitle()),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ApiError::Invalid { messages } if messages == &["Invalid params: taskId"]),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_forgotten_mcp_session_is_opened_again_once() {
    let w = wire(true).await;
    mcp_handshake(&w.server, false).await;
    Mock::given(method("POST"))
        .and(path("/mcp"))
        .and(body_partial_json(
            json!({ "params": { "name": "update_task" } }),
        ))
        .respond_with(ResponseTemplate::new(404))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&w.server)
        .await;
    Mock::given(method("POST"))
        .and(path("/mcp"))
        .and(body_partial_json(
            json!({ "params": { "name": "update_task" } }),
        ))
        .respond_with(Rpc {
            result: tool_text(json!({ "id": 9 })),
            sse: false,
            session: None,
        })
        .with_priority(2)
        .mount(&w.server)
        .await;
    w.adapter
        .update_task(
            &w.scope,
            EkyteTaskId::new(9).unwrap(),
            &retitle(),
            &crate::support::target_of(&crate::support::some_task(), &retitle()),
        )
        .await
        .unwrap();
    let inits = w
        .server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| String::from_utf8_lossy(&r.body).contains("\"initialize\""))
        .count();
    assert_eq!(inits, 2);
}

#[tokio::test]
async fn automation_refusals_keep_ekytes_text_and_are_not_retried() {
    let w = wire(false).await;
    Mock::given(method("POST"))
        .and(path("/n8n/tasks"))
        .and(query_param("apiKey", KEY))
        .and(query_param("CompanyId", "4242"))
        .and(query_param("UserEmail", "ops@agency.example"))
        .and(body_partial_json(json!({
            "Title": "Kick-off", "CtcTaskTypeId": 5, "WorkspaceId": 3,
            "CurrentDueDate": "2026-04-10T15:00:00", "UserEmail": "ops@agency.example"
        })))
        .respond_with(
            ResponseTemplate::new(400)
                .set_body_json(json!({ "Id": 200, "Text": "O usuário não pertence à empresa." })),
        )
        .expect(1)
        .mount(&w.server)
        .await;
    let task = Task {
        title: Some("Kick-off".into()),
        due: Some(Utc.with_ymd_and_hms(2026, 4, 10, 18, 0, 0).unwrap()),
        ..Task::default()
    };
    let err = w
        .adapter
        .create_task(&w.scope, EkyteWorkspaceId::new(3).unwrap(), &task)
        .await
        .unwrap_err();
    match err {
        ApiError::Invalid { messages } => {
            assert_eq!(
                messages,
                vec!["O usuário não pertence à empresa.".to_owned()]
            );
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn reads_retry_on_5xx_and_429() {
    let w = wire(false).await;
    Mock::given(method("GET"))
        .and(path("/v1.0/workspaces"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&w.server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1.0/workspaces"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "0"))
        .up_to_n_times(1)
        .with_priority(2)
        .mount(&w.server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1.0/workspaces"))
        .and(query_param("apiKey", KEY))
        .and(query_param("page", "1"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(envelope(json!([{ "id": 3, "name": "A", "active": 1 }]))),
        )
        .with_priority(3)
        .mount(&w.server)
        .await;
    let all = w.adapter.list_workspaces(&w.scope).await.unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(w.server.received_requests().await.unwrap().len(), 3);
}

#[tokio::test]
async fn reads_give_up_after_bounded_retries() {
    let w = wire(false).await;
    Mock::given(method("GET"))
        .and(path("/v1.0/workspaces"))
        .respond_with(
            ResponseTemplate::new(502).set_body_string(format!("bad gateway for apiKey={KEY}")),
        )
        .expect(3)
        .mount(&w.server)
        .await;
    let err = w.adapter.list_workspaces(&w.scope).await.unwrap_err();
    assert!(matches!(err, ApiError::Transient { .. }), "{err:?}");
    let text = chain(&err);
    assert!(text.contains("502"), "{text}");
    assert!(!text.contains(KEY), "the key leaked: {text}");

    let limited = wire(false).await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(429))
        .expect(3)
        .mount(&limited.server)
        .await;
    let err = limited
        .adapter
        .list_workspaces(&limited.scope)
        .await
        .unwrap_err();
    assert!(matches!(err, ApiError::RateLimited { .. }), "{err:?}");
}

#[tokio::test]
async fn a_create_whose_answer_is_lost_is_resolved_by_lookup() {
    let w = wire(false).await;
    Mock::given(method("POST"))
        .and(path("/n8n/tasks"))
        .respond_with(ResponseTemplate::new(503))
        .expect(1)
        .mount(&w.server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1.2/tasks"))
        .and(query_param("workspaceId", "3"))
        .and(query_param("status", "0"))
        .and(query_param("dueFrom", "2026-04-10T00:00:00"))
        .and(query_param("dueTo", "2026-04-10T23:59:59"))
        .respond_with(ResponseTemplate::new(200).set_body_json(envelope(json!([
            { "id": 76, "title": "Kick-off", "currentDueDate": "2026-04-10T16:00:00", "workspace": { "id": 3 } },
            { "id": 77, "title": " Kick-off ", "currentDueDate": "2026-04-10T15:00:00",
              "workspace": { "id": 3 }, "createBy": { "email": "ops@agency.example" } }
        ]))))
        .expect(1)
        .mount(&w.server)
        .await;
    let task = Task {
        title: Some("Kick-off".into()),
        due: Some(Utc.with_ymd_and_hms(2026, 4, 10, 18, 0, 0).unwrap()),
        ..Task::default()
    };
    let id = w
        .adapter
        .create_task(&w.scope, EkyteWorkspaceId::new(3).unwrap(), &task)
        .await
        .unwrap();
    assert_eq!(id.get(), 77);
}

#[tokio::test]
async fn a_create_that_left_nothing_is_sent_again() {
    let w = wire(false).await;
    Mock::given(method("POST"))
        .and(path("/n8n/boards"))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&w.server)
        .await;
    Mock::given(method("POST"))
        .and(path("/n8n/boards"))
        .and(body_partial_json(
            json!({ "Title": "GHL", "WorkspaceId": 3 }),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "BoardId": 78 })))
        .with_priority(2)
        .mount(&w.server)
        .await;
    Mock::given(method("GET"))
        .and(path("/n8n/polling/boards"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([
            { "id": 70, "title": "GHL", "workspaceId": 4 }
        ])))
        .expect(1)
        .mount(&w.server)
        .await;
    let id = w
        .adapter
        .create_board(&w.scope, EkyteWorkspaceId::new(3).unwrap(), "GHL")
        .await
        .unwrap();
    assert_eq!(id.get(), 78);
    let posts = w
        .server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.method.as_str() == "POST")
        .count();
    assert_eq!(posts, 2);
}

#[tokio::test]
async fn a_timed_out_workspace_create_is_found_by_its_external_id() {
    let w = wire_with(false, |c| c.request_timeout = Duration::from_millis(300)).await;
    Mock::given(method("POST"))
        .and(path("/n8n/workspaces"))
        .and(body_partial_json(
            json!({ "Name": "Cliente", "ExternalId": "ghl:loc1:c1" }),
        ))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({ "WorkspaceId": 31 }))
                .set_delay(Duration::from_secs(3)),
        )
        .expect(1)
        .mount(&w.server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1.0/workspaces"))
        .respond_with(ResponseTemplate::new(200).set_body_json(envelope(json!([
            { "id": 30, "name": "Outro", "active": 1, "externalId": null },
            { "id": 31, "name": "Cliente", "active": 1, "externalId": "ghl:loc1:c1" }
        ]))))
        .mount(&w.server)
        .await;
    let ext = ExternalRef::parse("ghl:loc1:c1").unwrap();
    let id = w
        .adapter
        .create_workspace(&w.scope, "Cliente", &ext)
        .await
        .unwrap();
    assert_eq!(id.get(), 31);
}

#[tokio::test]
async fn a_create_that_cannot_be_looked_up_is_not_sent_twice() {
    // Notes are only readable through MCP; without a token the outcome stays unknown.
    let w = wire(false).await;
    Mock::given(method("POST"))
        .and(path("/n8n/notes"))
        .respond_with(ResponseTemplate::new(503))
        .expect(1)
        .mount(&w.server)
        .await;
    let err = w
        .adapter
        .create_note(
            &w.scope,
            domain::EkyteBoardId::new(7).unwrap(),
            &ports::ekyte::NoteContent {
                title: "Profile".into(),
                html: "<div>x</div>".into(),
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(err, ApiError::Transient { .. }), "{err:?}");
    assert!(err.to_string().contains("may have succeeded"), "{err}");
}

#[tokio::test]
async fn an_error_envelope_on_200_is_an_error() {
    let w = wire(false).await;
    Mock::given(method("GET"))
        .and(path("/v1.0/workspaces"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "error": { "id": "e1", "message": "Falha interna", "code": "500", "details": null },
            "data": null,
            "paging": null
        })))
        .expect(1)
        .mount(&w.server)
        .await;
    let err = w.adapter.list_workspaces(&w.scope).await.unwrap_err();
    assert!(matches!(err, ApiError::Unknown(_)), "{err:?}");
    assert!(chain(&err).contains("Falha interna"), "{}", chain(&err));
}

#[tokio::test]
async fn a_bi_401_is_unauthorized() {
    let w = wire(false).await;
    Mock::given(method("GET"))
        .and(path("/v1.0/workspaces"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({
            "error": { "id": "e1", "message": "Chave de API inválida.", "code": "404" },
            "data": null, "paging": null
        })))
        .expect(1)
        .mount(&w.server)
        .await;
    let err = w.adapter.list_workspaces(&w.scope).await.unwrap_err();
    match &err {
        ApiError::Unauthorized { message } => {
            assert!(message.contains("Chave de API inválida."), "{message}");
            assert!(!message.contains(KEY));
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn transport_errors_never_carry_the_url() {
    // A port nobody listens on: connection refused, retried, then Transient.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let creds = MemCredentials::new(KEY, Some(TOKEN));
    let adapter = EkyteAdapter::new(fast_config(&format!("http://{addr}")), creds).unwrap();
    let scope = scope_of(tenant(4242, EkyteMapping::default()));
    let err = adapter.list_workspaces(&scope).await.unwrap_err();
    assert!(matches!(err, ApiError::Transient { .. }), "{err:?}");
    let err2 = adapter
        .update_task(
            &scope,
            EkyteTaskId::new(1).unwrap(),
            &retitle(),
            &crate::support::target_of(&crate::support::some_task(), &retitle()),
        )
        .await
        .unwrap_err();
    for e in [&err, &err2] {
        let text = format!("{} {e:?}", chain(e));
        assert!(!text.contains(KEY), "the key leaked: {text}");
        assert!(!text.contains(TOKEN), "the token leaked: {text}");
    }
}

#[tokio::test]
async fn an_adapter_is_shared_across_tasks() {
    // The adapter is cheap to clone and Send + Sync: the app holds it in an Arc<dyn EkyteApi>.
    let w = wire(false).await;
    Mock::given(method("GET"))
        .and(path("/v1.0/workspaces"))
        .respond_with(ResponseTemplate::new(200).set_body_json(envelope(json!([]))))
        .expect(2)
        .mount(&w.server)
        .await;
    let api: Arc<dyn EkyteApi> = Arc::new(w.adapter.clone());
    let (a, b) = tokio::join!(api.list_workspaces(&w.scope), api.list_workspaces(&w.scope));
    assert!(a.unwrap().is_empty() && b.unwrap().is_empty());
}

/// eKyte publishes none of its shapes: a task row without an id and a comment without one
/// are skipped (logged and counted), not the listing; the other tasks and comments come
/// through.
#[tokio::test]
async fn one_odd_record_is_skipped_not_the_whole_listing() {
    let w = wire(false).await;
    Mock::given(method("GET"))
        .and(path("/v1.2/tasks"))
        .and(query_param("workspaceId", "3"))
        .respond_with(ResponseTemplate::new(200).set_body_json(envelope(json!([
            { "title": "no id at all", "workspace": { "id": 3 } },
            { "id": 41, "title": "Kick-off", "workspace": { "id": 3 }, "comments": [
                { "description": "<div>no id</div>", "creationDate": "2026-04-10T10:00:00" },
                { "id": 0, "description": "<div>a zero id</div>" },
                { "id": 501, "description": "<div>fine</div>", "creationDate": "2026-04-10T11:00:00" },
                { "id": 502, "description": "<div>odd date</div>", "creationDate": "yesterday" }
            ] },
            { "id": 42, "title": "Review", "workspace": { "id": 3 } }
        ]))))
        .mount(&w.server)
        .await;
    let tasks = w
        .adapter
        .list_tasks(&w.scope, domain::EkyteWorkspaceId::new(3).unwrap(), true)
        .await
        .unwrap();
    let ids: Vec<u64> = tasks.iter().map(|t| t.id.get()).collect();
    assert_eq!(ids, [41, 42]);
    let comments: Vec<u64> = tasks[0].comments.iter().map(|c| c.id.get()).collect();
    assert_eq!(comments, [501]);
}

/// A server that ignores `page` and says more pages follow: the listing stops at the first
/// repeated page instead of reading it `max_pages` times and keeping every copy.
#[tokio::test]
async fn a_page_served_twice_ends_the_listing() {
    let w = wire(false).await;
    Mock::given(method("GET"))
        .and(path("/v1.0/workspaces"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "error": null,
            "data": [{ "id": 3, "name": "A", "active": 1 }, { "id": 4, "name": "B", "active": 1 }],
            "paging": { "currentPage": { "size": 100, "number": 1 }, "totalCollectionSize": 900, "totalPages": 9 }
        })))
        .mount(&w.server)
        .await;
    let all = w.adapter.list_workspaces(&w.scope).await.unwrap();
    let ids: Vec<u64> = all.iter().map(|ws| ws.id.get()).collect();
    assert_eq!(ids, [3, 4], "each workspace once");
    assert_eq!(w.server.received_requests().await.unwrap().len(), 2);
}

#[tokio::test]
async fn the_board_listing_keeps_the_workspaces_rows_and_refuses_a_bad_row_or_shape() {
    let w = wire(false).await;
    let ws = EkyteWorkspaceId::new(3).unwrap();
    Mock::given(method("GET"))
        .and(path("/n8n/polling/boards"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([
            { "id": 70, "title": "GHL", "workspaceId": 4 },
            { "Id": "71", "Title": "GHL", "workspace": { "id": 3 } },
            { "id": 72, "name": "Other", "WorkspaceId": "3" },
            { "id": 73, "title": "No workspace" }
        ])))
        .up_to_n_times(1)
        .mount(&w.server)
        .await;
    let boards = w.adapter.list_boards(&w.scope, ws).await.unwrap();
    let ids: Vec<u64> = boards.iter().map(|b| b.id.get()).collect();
    assert_eq!(
        ids,
        [71, 72],
        "only workspace 3's boards, in the listing's order"
    );
    assert_eq!(boards[1].title, "Other");

    // A row of this workspace, or of a workspace that cannot be read, whose board id is not
    // one fails the listing: a board of ours is never hidden. Another workspace's bad row
    // is none of this listing's business.
    Mock::given(method("GET"))
        .and(path("/n8n/polling/boards"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([
            { "id": 70, "title": "GHL", "workspaceId": 3 },
            { "id": 0, "title": "GHL", "workspaceId": 9 }
        ])))
        .up_to_n_times(1)
        .mount(&w.server)
        .await;
    let boards = w.adapter.list_boards(&w.scope, ws).await.unwrap();
    assert_eq!(boards.len(), 1);
    for bad in [
        json!({ "id": 0, "title": "GHL", "workspaceId": 3 }),
        json!({ "id": 0, "title": "GHL" }),
    ] {
        Mock::given(method("GET"))
            .and(path("/n8n/polling/boards"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!([
                { "id": 70, "title": "GHL", "workspaceId": 3 },
                bad
            ])))
            .up_to_n_times(1)
            .mount(&w.server)
            .await;
        let err = w.adapter.list_boards(&w.scope, ws).await.unwrap_err();
        assert!(matches!(err, ApiError::Unknown(_)), "{err:?}");
    }

    // An object where a listing belongs is a shape eKyte's documents do not have.
    Mock::given(method("GET"))
        .and(path("/n8n/polling/boards"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "boards": [] })))
        .up_to_n_times(1)
        .mount(&w.server)
        .await;
    let err = w.adapter.list_boards(&w.scope, ws).await.unwrap_err();
    assert!(
        format!("{err:#}").contains("the board listing has an unknown shape"),
        "{err:#}"
    );

    // A body cut short is not JSON, whatever was kept before the cut.
    Mock::given(method("GET"))
        .and(path("/n8n/polling/boards"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(
            r#"[{"id": 70, "workspaceId": 3}, {"id""#,
            "application/json",
        ))
        .up_to_n_times(1)
        .mount(&w.server)
        .await;
    let err = w.adapter.list_boards(&w.scope, ws).await.unwrap_err();
    assert!(format!("{err:#}").contains("not JSON"), "{err:#}");
}
