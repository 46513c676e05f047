//! eKyte simulator tests: the three surfaces over real HTTP on loopback, plus the control API.

use std::time::Duration;

use reqwest::StatusCode;
use sandbox::common::FaultConfig;
use sandbox::ekyte::{
    DefaultCompany, EkyteConfig, EkyteSandbox, NewCompany, NewTask, NewUser, NewWorkspace, Profile,
    RateLimitConfig, Situation,
};
use serde_json::{Value, json};

/// The new lists of issue 14 (tickets, time trackings, members, insights, notifications).
mod lists;

/// Every surface-A list the simulator serves; `readme_routes_table_is_what_is_served` keeps
/// this, the README's routes table and the router in step.
const BI_LISTS: [&str; 11] = [
    "/v1.0/workspaces",
    "/v1.1/tasks",
    "/v1.2/tasks",
    "/v1.0/users",
    "/v1.0/task-types",
    "/v1.0/projects",
    "/v1.1/projects",
    "/v1.1/tickets",
    "/v1.0/time-trackings",
    "/v1.0/members",
    "/v1.0/insights",
];

/// Every surface-B read, n8n spelling; the Zapier spelling drops `polling/`.
const POLLING_READS: [&str; 9] = [
    "/n8n/polling/auth",
    "/n8n/polling/tasks",
    "/n8n/polling/v2/tasks",
    "/n8n/polling/workspaces",
    "/n8n/polling/boards",
    "/n8n/polling/projects/created",
    "/n8n/polling/tickets/concluded",
    "/n8n/polling/tickets/changes",
    "/n8n/polling/notifications",
];

fn zapier_spelling(n8n: &str) -> String {
    n8n.replacen("/n8n/polling/", "/zapier/", 1)
}

struct Env {
    sb: EkyteSandbox,
    co: DefaultCompany,
    http: reqwest::Client,
}

async fn env() -> Env {
    env_with(EkyteConfig::default()).await
}

async fn env_with(config: EkyteConfig) -> Env {
    let sb = EkyteSandbox::start(config).await.expect("start");
    let co = sb.seed_default_company().expect("seed");
    Env {
        sb,
        co,
        http: reqwest::Client::new(),
    }
}

impl Env {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.sb.base_url())
    }

    async fn get(&self, path: &str, query: &[(&str, String)]) -> (StatusCode, Value) {
        let r = self
            .http
            .get(self.url(path))
            .query(query)
            .send()
            .await
            .expect("send");
        let status = r.status();
        let text = r.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// A BI call with this company's key.
    async fn bi(&self, path: &str, extra: &[(&str, &str)]) -> (StatusCode, Value) {
        let mut q = vec![("apiKey", self.co.api_key.clone())];
        q.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
        self.get(path, &q).await
    }

    fn auth(&self) -> Vec<(&'static str, String)> {
        vec![
            ("apiKey", self.co.api_key.clone()),
            ("CompanyId", self.co.company_id.to_string()),
        ]
    }

    /// An automation write as `email`.
    async fn post_as(&self, path: &str, email: &str, body: &Value) -> (StatusCode, Value) {
        let mut q = self.auth();
        q.push(("UserEmail", email.to_owned()));
        let r = self
            .http
            .post(self.url(path))
            .query(&q)
            .json(body)
            .send()
            .await
            .expect("send");
        let status = r.status();
        let text = r.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        self.post_as(path, &self.co.admin.email.clone(), body).await
    }

    fn task_body(&self, title: &str) -> Value {
        json!({
            "Title": title,
            "Description": "<p>Olá</p>",
            "CurrentDueDate": "2030-05-10T18:30:00",
            "CtcTaskTypeId": self.co.task_type_id,
            "WorkspaceId": self.co.workspace_id,
        })
    }

    fn token(&self) -> String {
        self.co.admin.mcp_token.clone().expect("token")
    }

    /// One JSON-RPC request; returns the HTTP status, content type and the parsed message
    /// (from JSON or from the SSE `data:` line).
    async fn mcp_raw(&self, token: &str, accept: &str, msg: &Value) -> (StatusCode, String, Value) {
        let r = self
            .http
            .post(self.url("/mcp"))
            .query(&[("token", token)])
            .header("accept", accept)
            .json(msg)
            .send()
            .await
            .expect("send");
        let status = r.status();
        let ctype = r
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let text = r.text().await.expect("body");
        let body = if ctype.starts_with("text/event-stream") {
            let data = text
                .lines()
                .find_map(|l| l.strip_prefix("data: "))
                .expect("an SSE data line");
            serde_json::from_str(data).expect("SSE data is JSON")
        } else {
            serde_json::from_str(&text).unwrap_or(Value::Null)
        };
        (status, ctype, body)
    }

    /// `tools/call` with the given token; returns the parsed tool JSON and the `isError` flag.
    async fn tool_with(&self, token: &str, name: &str, args: Value) -> (Value, bool) {
        let msg = json!({
            "jsonrpc": "2.0", "id": 7, "method": "tools/call",
            "params": { "name": name, "arguments": args },
        });
        let (status, _, body) = self
            .mcp_raw(token, "application/json, text/event-stream", &msg)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let result = &body["result"];
        let text = result["content"][0]["text"].as_str().expect("text content");
        let is_error = result["isError"].as_bool().unwrap_or(false);
        (
            serde_json::from_str(text).unwrap_or(Value::String(text.to_owned())),
            is_error,
        )
    }

    async fn tool(&self, name: &str, args: Value) -> Value {
        let (v, err) = self.tool_with(&self.token(), name, args).await;
        assert!(!err, "{name} failed: {v}");
        v
    }
}

// ----- surface A -----------------------------------------------------------------------------

#[tokio::test]
async fn bi_envelope_pages_a_250_task_workspace_in_three() {
    let e = env().await;
    let c = e.co.company_id;
    for i in 0..250 {
        e.sb.create_task(
            c,
            NewTask::new(e.co.workspace_id, e.co.task_type_id, &format!("t{i}")),
        )
        .unwrap();
    }
    let ws = e.co.workspace_id.to_string();
    let (s, p1) = e.bi("/v1.2/tasks", &[("workspaceId", &ws)]).await;
    assert_eq!(s, StatusCode::OK);
    assert!(p1["error"].is_null());
    assert_eq!(p1["data"].as_array().unwrap().len(), 100);
    assert_eq!(
        p1["paging"],
        json!({ "currentPage": { "size": 100, "number": 1 }, "totalCollectionSize": 250, "totalPages": 3 })
    );
    let (_, p3) = e
        .bi("/v1.2/tasks", &[("workspaceId", &ws), ("page", "3")])
        .await;
    assert_eq!(p3["data"].as_array().unwrap().len(), 50);
    assert_eq!(p3["paging"]["currentPage"]["number"], 3);
    let (_, p4) = e
        .bi("/v1.2/tasks", &[("workspaceId", &ws), ("page", "4")])
        .await;
    assert!(p4["data"].as_array().unwrap().is_empty());

    // Walking the pages the way eKyte's own connector does sees every task once.
    let mut seen = std::collections::BTreeSet::new();
    let mut page = 1;
    loop {
        let (_, body) = e
            .bi(
                "/v1.1/tasks",
                &[("workspaceId", &ws), ("page", &page.to_string())],
            )
            .await;
        for t in body["data"].as_array().unwrap() {
            assert_eq!(t["workspaceId"], e.co.workspace_id, "v1.1 is flattened");
            assert!(seen.insert(t["id"].as_i64().unwrap()));
        }
        if body["paging"]["currentPage"]["number"].as_i64() >= body["paging"]["totalPages"].as_i64()
        {
            break;
        }
        page += 1;
    }
    assert_eq!(seen.len(), 250);

    // Another workspace's filter sees none of them.
    let (_, none) = e.bi("/v1.2/tasks", &[("workspaceId", "1")]).await;
    assert_eq!(none["paging"]["totalCollectionSize"], 0);
    e.sb.shutdown().await.unwrap();
}

#[tokio::test]
async fn bi_rejects_a_bad_key_with_http_401_and_code_404() {
    let e = env().await;
    for path in BI_LISTS {
        let (s, body) = e.get(path, &[("apiKey", "nope".to_owned())]).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{path}");
        assert_eq!(body["error"]["code"], "404", "{path}");
        assert!(body["data"].is_null(), "{path}");
        assert!(body["paging"].is_null(), "{path}");
        let (s, body) = e.get(path, &[]).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{path} without a key");
        assert_eq!(body["error"]["code"], "404", "{path} without a key");
    }
    e.sb.shutdown().await.unwrap();
}

#[tokio::test]
async fn bi_shapes_and_filters() {
    let e = env().await;
    let c = e.co.company_id;
    let (_, users) = e.bi("/v1.0/users", &[]).await;
    let emails: Vec<&str> = users["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["email"].as_str().unwrap())
        .collect();
    assert!(emails.contains(&e.co.admin.email.as_str()));
    let (_, types) = e.bi("/v1.0/task-types", &[]).await;
    assert_eq!(types["data"][0]["workflowId"], e.co.workflow_id);
    assert_eq!(types["data"][0]["effortFormated"], "03:00");

    let other =
        e.sb.create_workspace(
            c,
            NewWorkspace {
                name: "Padaria São João".into(),
                external_id: Some("ghl:loc:abc".into()),
                ..NewWorkspace::default()
            },
        )
        .unwrap();
    e.sb.deactivate_workspace(c, other).unwrap();
    let (_, inactive) = e.bi("/v1.0/workspaces", &[("situationId", "0")]).await;
    assert_eq!(inactive["data"].as_array().unwrap().len(), 1);
    assert_eq!(inactive["data"][0]["active"], 0);
    assert!(
        inactive["data"][0].get("externalId").is_none(),
        "no read shape shows it (API.md §3.3)"
    );
    let (_, by_name) = e.bi("/v1.0/workspaces", &[("name", "sao joao")]).await;
    assert_eq!(by_name["data"][0]["id"], other);

    let mut done = NewTask::new(e.co.workspace_id, e.co.task_type_id, "done");
    done.situation = Situation::Completed;
    e.sb.create_task(c, done).unwrap();
    e.sb.create_task(
        c,
        NewTask::new(e.co.workspace_id, e.co.task_type_id, "open"),
    )
    .unwrap();
    let (_, all) = e.bi("/v1.2/tasks", &[("status", "0")]).await;
    assert_eq!(all["paging"]["totalCollectionSize"], 2);
    let (_, completed) = e.bi("/v1.2/tasks", &[("status", "30")]).await;
    assert_eq!(completed["data"][0]["title"], "done");
    assert!(completed["data"][0]["resolvedDate"].is_string());
    let (s, bad) = e.bi("/v1.2/tasks", &[("status", "99")]).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(bad["error"]["message"].is_string());
    e.sb.shutdown().await.unwrap();
}

#[tokio::test]
async fn external_id_is_kept_but_not_shown_in_reads_by_default() {
    let e = env().await;
    let (_, w) = e
        .post(
            "/n8n/workspaces",
            &json!({ "Name": "Sem id", "ExternalId": "ghl:L:C" }),
        )
        .await;
    let (_, list) = e.bi("/v1.0/workspaces", &[]).await;
    let row = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == w["WorkspaceId"])
        .cloned()
        .unwrap();
    assert!(row.get("externalId").is_none(), "{row}");
    let short = e.tool("list_short_workspaces", json!({})).await;
    assert!(short["data"][0].get("externalId").is_none());
    // Still stored: eKyte keeps what it was given.
    assert_eq!(
        e.sb.workspaces_by_external_id(e.co.company_id, "ghl:L:C")
            .len(),
        1
    );
    // Shown where so set (the reading under which a client finds its records by it).
    e.sb.update_settings(sandbox::ekyte::SettingsPatch {
        expose_external_id: Some(true),
        ..Default::default()
    });
    let (_, list) = e.bi("/v1.0/workspaces", &[]).await;
    let shown = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["externalId"] == "ghl:L:C");
    assert!(shown, "{list}");
    e.sb.shutdown().await.unwrap();
}

// ----- surface B -----------------------------------------------------------------------------

#[tokio::test]
async fn automation_validation_answers_id_and_text() {
    let e = env().await;
    let mut body = e.task_body("x");
    body.as_object_mut().unwrap().remove("Title");
    let (s, err) = e.post("/n8n/tasks", &body).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(err["Id"].is_i64());
    assert!(err["Text"].as_str().unwrap().contains("Title"), "{err}");

    for missing in ["CurrentDueDate", "CtcTaskTypeId", "WorkspaceId"] {
        let mut b = e.task_body("x");
        b.as_object_mut().unwrap().remove(missing);
        let (s, err) = e.post("/zapier/tasks", &b).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{missing}");
        assert!(err["Text"].as_str().unwrap().contains(missing), "{err}");
    }

    // camelCase bodies are not what eKyte expects.
    let camel = json!({ "title": "x", "currentDueDate": "2030-01-01", "ctcTaskTypeId": e.co.task_type_id, "workspaceId": e.co.workspace_id });
    let (s, _) = e.post("/n8n/tasks", &camel).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    let mut unknown_type = e.task_body("x");
    unknown_type["CtcTaskTypeId"] = json!(999_999);
    let (s, err) = e.post("/n8n/tasks", &unknown_type).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(err["Text"].is_string());

    let mut bad_date = e.task_body("x");
    bad_date["CurrentDueDate"] = json!("10/05/2030");
    let (s, _) = e.post("/n8n/tasks", &bad_date).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    let (s, _) = e
        .post("/n8n/tasks", &Value::String("not an object".into()))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    // Only admins/owners create workspaces.
    let (s, err) = e
        .post_as(
            "/n8n/workspaces",
            &e.co.editor.email,
            &json!({ "Name": "W" }),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{err}");

    // Nothing above created a task.
    assert!(e.sb.dump(e.co.company_id).unwrap().tasks.is_empty());
    e.sb.shutdown().await.unwrap();
}

#[tokio::test]
async fn automation_task_gets_executors_from_the_chain_not_the_caller() {
    let e = env().await;
    let c = e.co.company_id;
    let designer =
        e.sb.create_user(
            c,
            NewUser {
                email: "designer@agencia.example".into(),
                user_name: "Dani Design".into(),
                ..NewUser::default()
            },
        )
        .unwrap();
    e.sb.create_user(
        c,
        NewUser {
            email: "reviewer@agencia.example".into(),
            ..NewUser::default()
        },
    )
    .unwrap();
    let reviewer =
        e.sb.dump(c)
            .unwrap()
            .users
            .iter()
            .find(|u| u.email == "reviewer@agencia.example")
            .unwrap()
            .id;
    // Phase 2: workspace team. Phase 3: company team.
    let ws =
        e.sb.create_workspace(
            c,
            NewWorkspace {
                name: "Cliente B".into(),
                phase_team: [(e.co.phase_ids[1], designer)].into(),
                ..NewWorkspace::default()
            },
        )
        .unwrap();
    e.sb.set_company_phase_member(c, e.co.phase_ids[2], Some(reviewer))
        .unwrap();
    let mut body = e.task_body("Post de Natal");
    body["WorkspaceId"] = json!(ws);
    body["ExecutorId"] = json!(designer.to_string()); // ignored: the assignee cannot be chosen
    let (s, created) = e.post("/n8n/tasks", &body).await;
    assert_eq!(s, StatusCode::OK, "{created}");
    let id = created["TaskId"].as_i64().unwrap();

    let task = e.sb.task(c, id).unwrap();
    let flow: Vec<_> = task.flow.iter().map(|f| f.executor_id.unwrap()).collect();
    assert_eq!(flow, vec![e.co.editor.id, designer, reviewer]);
    assert_eq!(
        task.executor_id,
        Some(e.co.editor.id),
        "task type default wins"
    );
    assert_eq!(task.situation, Situation::Active);
    assert_eq!(task.created_by, Some(e.co.admin.id));
    assert_eq!(task.description, "<div>Olá</div>", "<p> becomes <div>");

    let (_, bi) = e
        .bi(
            "/v1.2/tasks",
            &[("workspaceId", &ws.to_string()), ("includePhases", "1")],
        )
        .await;
    let t = &bi["data"][0];
    assert_eq!(t["executor"]["email"], e.co.editor.email);
    assert_eq!(t["phase"]["name"], "Briefing");
    assert_eq!(t["phases"].as_array().unwrap().len(), 3);
    assert_eq!(t["phases"][1]["executor"]["userName"], "Dani Design");

    // Without any team or default, the owner executes.
    e.sb.set_company_phase_member(c, e.co.phase_ids[2], None)
        .unwrap();
    let (_, created) = e.post("/zapier/tasks", &body).await;
    let t2 = e.sb.task(c, created["TaskId"].as_i64().unwrap()).unwrap();
    assert_eq!(t2.flow[2].executor_id, Some(e.co.admin.id));
    e.sb.shutdown().await.unwrap();
}

#[tokio::test]
async fn automation_refuses_users_outside_the_company() {
    let e = env().await;
    let other = e.sb.create_company(NewCompany::default()).unwrap();
    e.sb.create_user(
        other.id,
        NewUser {
            email: "stranger@elsewhere.example".into(),
            profile: Profile::Admin,
            ..NewUser::default()
        },
    )
    .unwrap();
    let (s, err) = e
        .post_as(
            "/n8n/tasks",
            "stranger@elsewhere.example",
            &e.task_body("x"),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(err["Text"].as_str().unwrap().contains("empresa"), "{err}");
    let (s, _) = e
        .post_as("/n8n/tasks", "nobody@nowhere.example", &e.task_body("x"))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // An editor who is not a member of the workspace has no access to it.
    let lone =
        e.sb.create_workspace(
            e.co.company_id,
            NewWorkspace {
                name: "Fechado".into(),
                ..NewWorkspace::default()
            },
        )
        .unwrap();
    let mut body = e.task_body("x");
    body["WorkspaceId"] = json!(lone);
    let (s, _) = e.post_as("/n8n/tasks", &e.co.editor.email, &body).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    // UserEmail may come in the body instead of the query.
    let mut body = e.task_body("via body");
    body["UserEmail"] = json!(e.co.editor.email);
    let r = e
        .http
        .post(e.url("/n8n/tasks"))
        .query(&e.auth())
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(e.sb.dump(e.co.company_id).unwrap().tasks.len() == 1);
    e.sb.shutdown().await.unwrap();
}

#[tokio::test]
async fn automation_company_mismatch_is_401() {
    let e = env().await;
    let other = e.sb.create_company(NewCompany::default()).unwrap();
    let paths = POLLING_READS
        .iter()
        .flat_map(|p| [(*p).to_owned(), zapier_spelling(p)]);
    for path in paths {
        // UserEmail is valid, so only the key/company pair can be what is refused.
        let r = e
            .http
            .get(e.url(&path))
            .query(&[
                ("apiKey", e.co.api_key.clone()),
                ("CompanyId", other.id.to_string()),
                ("UserEmail", e.co.editor.email.clone()),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{path}");
        assert!(r.bytes().await.unwrap().is_empty(), "{path}: empty body");
        let (s, _) = e.get(&path, &[("apiKey", e.co.api_key.clone())]).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{path} without CompanyId");
        let (s, _) = e
            .get(
                &path,
                &[
                    ("apiKey", "nope".to_owned()),
                    ("CompanyId", e.co.company_id.to_string()),
                ],
            )
            .await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{path} with a bad key");
    }
    let (s, body) = e.get("/n8n/polling/auth", &e.auth()).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(body, json!({ "CompanyId": e.co.company_id }));
    let r = e
        .http
        .post(e.url("/zapier/tasks"))
        .query(&[
            ("apiKey", e.co.api_key.clone()),
            ("CompanyId", other.id.to_string()),
            ("UserEmail", e.co.admin.email.clone()),
        ])
        .json(&e.task_body("x"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    e.sb.shutdown().await.unwrap();
}

#[tokio::test]
async fn automation_creates_workspaces_boards_notes_and_projects() {
    let e = env().await;
    let c = e.co.company_id;
    let (s, w) = e
        .post(
            "/n8n/workspaces",
            &json!({ "Name": "Cliente GHL", "ExternalId": "ghl:L1:C1" }),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{w}");
    let ws = w["WorkspaceId"].as_i64().unwrap();
    assert_eq!(e.sb.workspaces_by_external_id(c, "ghl:L1:C1")[0].id, ws);

    let (_, b) = e
        .post(
            "/n8n/boards",
            &json!({ "Title": "Perfil", "WorkspaceId": ws }),
        )
        .await;
    let board = b["BoardId"].as_i64().unwrap();
    let (_, n1) = e
        .post(
            "/zapier/notes",
            &json!({ "PlanId": board, "Title": "A", "Content": "<b>x</b>", "Category": "Reunião" }),
        )
        .await;
    let (_, n2) = e
        .post(
            "/n8n/notes",
            &json!({ "PlanId": board, "Title": "B", "Category": "REUNIAO" }),
        )
        .await;
    let dump = e.sb.dump(c).unwrap();
    let cat = |id: &Value| {
        dump.notes
            .iter()
            .find(|n| n.id == id.as_i64().unwrap())
            .unwrap()
            .category_id
    };
    assert_eq!(cat(&n1["NoteId"]), cat(&n2["NoteId"]));
    let (s, _) = e.post("/n8n/notes", &json!({ "Title": "no board" })).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = e
        .post(
            "/n8n/notes",
            &json!({ "PlanId": 1, "Title": "unknown board" }),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    let (s, p) = e
        .post(
            "/n8n/projects",
            &json!({ "Name": "Campanha de Verão 2030", "WorkspaceId": ws, "Tags": "a|b" }),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{p}");
    let project = dump_project(&e, p["ProjectId"].as_i64().unwrap());
    assert_eq!(project["alias"], "Campanha-de-Ve");

    // A project of another workspace cannot carry the task.
    let mut body = e.task_body("x");
    body["CtcTaskProjectId"] = p["ProjectId"].clone();
    let (s, err) = e.post("/n8n/tasks", &body).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{err}");

    // No update, delete or comment route exists on this surface.
    for path in ["/n8n/tasks/1", "/n8n/comments", "/zapier/tasks/1"] {
        let r = e.http.put(e.url(path)).send().await.unwrap();
        assert!(
            r.status() == StatusCode::NOT_FOUND || r.status() == StatusCode::METHOD_NOT_ALLOWED
        );
    }
    e.sb.shutdown().await.unwrap();
}

#[tokio::test]
async fn automation_unplanned_tasks_tickets_and_admin_only_setting() {
    let e = env().await;
    let c = e.co.company_id;
    let (_, p) = e
        .post(
            "/n8n/projects",
            &json!({ "Name": "Sprint", "WorkspaceId": e.co.workspace_id }),
        )
        .await;
    let project = p["ProjectId"].as_i64().unwrap();

    // PlanTask=false needs a project and yields a task no list shows.
    let mut body = e.task_body("modelo");
    body["PlanTask"] = json!(false);
    let (s, err) = e.post("/n8n/tasks", &body).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{err}");
    body["CtcTaskProjectId"] = json!(project);
    let (s, created) = e.post("/n8n/tasks", &body).await;
    assert_eq!(s, StatusCode::OK, "{created}");
    let id = created["TaskId"].as_i64().unwrap();
    let (_, bi) = e.bi("/v1.2/tasks", &[]).await;
    assert_eq!(bi["paging"]["totalCollectionSize"], 0);
    assert_eq!(
        e.tool("get_detailed_task", json!({ "taskId": id })).await,
        json!({})
    );
    assert_eq!(
        dump_project(&e, project)["unplanned_tasks"][0]["executor_id"],
        e.co.admin.id.to_string(),
        "the creator executes it"
    );

    // Tickets: unknown CC e-mails become guests; the concluded list follows the window.
    let (s, t) = e
        .post(
            "/zapier/tickets",
            &json!({
                "Subject": "Ajuda", "Message": "<p>?</p>", "WorkspaceId": e.co.workspace_id,
                "RequesterEmail": e.co.editor.email, "UsersCC": "novo@cliente.example, ",
            }),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{t}");
    let ticket = t["TicketId"].as_i64().unwrap();
    let dump = e.sb.dump(c).unwrap();
    let guest = dump
        .users
        .iter()
        .find(|u| u.email == "novo@cliente.example")
        .expect("CC became a user");
    assert_eq!(guest.profile, Profile::Guest);
    let (_, changes) = e.get("/n8n/polling/tickets/changes", &e.auth()).await;
    assert_eq!(changes[0]["id"], ticket);
    let (_, concluded) = e.get("/n8n/polling/tickets/concluded", &e.auth()).await;
    assert!(concluded.as_array().unwrap().is_empty());
    e.sb.set_ticket_status(c, ticket, sandbox::ekyte::TicketStatus::Resolved)
        .unwrap();
    let (_, concluded) = e.get("/zapier/tickets/concluded", &e.auth()).await;
    assert_eq!(concluded[0]["status"], 3);

    // The company setting that reserves task creation to admins.
    let strict =
        e.sb.create_company(NewCompany {
            only_admins_create_tasks: true,
            ..NewCompany::default()
        })
        .unwrap();
    let ed =
        e.sb.create_user(
            strict.id,
            NewUser {
                email: "ed@strict.example".into(),
                ..NewUser::default()
            },
        )
        .unwrap();
    let wf = e.sb.dump(c).unwrap().workflows[0].clone();
    let wf =
        e.sb.create_workflow(
            strict.id,
            sandbox::ekyte::NewWorkflow {
                name: wf.name,
                active: true,
                phases: vec![sandbox::ekyte::NewPhase::named("Única")],
            },
        )
        .unwrap();
    let tt =
        e.sb.create_task_type(
            strict.id,
            sandbox::ekyte::NewTaskType {
                name: "T".into(),
                workflow_id: wf.id,
                active: true,
                group: None,
                default_executors: Default::default(),
            },
        )
        .unwrap();
    let ws =
        e.sb.create_workspace(
            strict.id,
            NewWorkspace {
                name: "W".into(),
                members: vec![ed],
                ..NewWorkspace::default()
            },
        )
        .unwrap();
    let r = e
        .http
        .post(e.url("/n8n/tasks"))
        .query(&[
            ("apiKey", strict.api_key.clone()),
            ("CompanyId", strict.id.to_string()),
            ("UserEmail", "ed@strict.example".to_owned()),
        ])
        .json(&json!({ "Title": "x", "CurrentDueDate": "2030-01-01", "CtcTaskTypeId": tt, "WorkspaceId": ws }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let err: Value = r.json().await.unwrap();
    assert!(
        err["Text"].as_str().unwrap().contains("administradores"),
        "{err}"
    );
    e.sb.shutdown().await.unwrap();
}

fn dump_project(e: &Env, id: i64) -> Value {
    let dump = e.sb.dump(e.co.company_id).expect("dump");
    let project = dump.projects.iter().find(|p| p.id == id).expect("project");
    serde_json::to_value(project).expect("serialisable")
}

#[tokio::test]
async fn polling_lists_cover_only_the_last_15_minutes() {
    let e = env().await;
    let c = e.co.company_id;
    let (_, created) = e.post("/n8n/tasks", &e.task_body("novo")).await;
    let id = created["TaskId"].as_i64().unwrap();
    let ids = |v: &Value| -> Vec<i64> {
        v.as_array()
            .expect("a bare array")
            .iter()
            .map(|t| t["id"].as_i64().unwrap())
            .collect()
    };
    let (_, now) = e.get("/n8n/polling/tasks", &e.auth()).await;
    assert_eq!(ids(&now), vec![id]);
    let (_, v2) = e.get("/zapier/v2/tasks", &e.auth()).await;
    assert_eq!(ids(&v2), vec![id]);

    e.sb.advance_clock(Duration::from_secs(14 * 60));
    let (_, still) = e.get("/n8n/polling/tasks", &e.auth()).await;
    assert_eq!(ids(&still), vec![id]);
    e.sb.advance_clock(Duration::from_secs(2 * 60));
    let (_, gone) = e.get("/n8n/polling/tasks", &e.auth()).await;
    assert!(ids(&gone).is_empty(), "16 minutes later the change is gone");

    // A person edits the title: it is "changed" again, but not "created or phase changed".
    e.sb.edit_task(
        c,
        id,
        sandbox::ekyte::TaskEdit {
            title: Some("renomeado".into()),
            ..Default::default()
        },
    )
    .unwrap();
    let (_, changed) = e.get("/n8n/polling/tasks", &e.auth()).await;
    assert_eq!(ids(&changed), vec![id]);
    assert_eq!(changed[0]["title"], "renomeado");
    let (_, v2) = e.get("/n8n/polling/v2/tasks", &e.auth()).await;
    assert!(ids(&v2).is_empty());
    e.sb.move_task_phase(c, id, e.co.phase_ids[1], None)
        .unwrap();
    let (_, v2) = e.get("/n8n/polling/v2/tasks", &e.auth()).await;
    assert_eq!(ids(&v2), vec![id]);

    let (_, workspaces) = e.get("/n8n/polling/workspaces", &e.auth()).await;
    assert_eq!(
        workspaces,
        json!([{ "id": e.co.workspace_id, "name": "Cliente Demo" }])
    );
    e.sb.shutdown().await.unwrap();
}

// ----- dates ---------------------------------------------------------------------------------

#[tokio::test]
async fn dates_are_zone_less_company_time_and_round_trip() {
    let e = env().await;
    let (_, created) = e.post("/n8n/tasks", &e.task_body("prazo")).await;
    let id = created["TaskId"].as_i64().unwrap();
    let task = e.sb.task(e.co.company_id, id).unwrap();
    // 18:30 in São Paulo (UTC−3) is 21:30 UTC.
    assert_eq!(
        task.current_due_date.unwrap().to_rfc3339(),
        "2030-05-10T21:30:00+00:00"
    );
    let (_, bi) = e.bi("/v1.2/tasks", &[]).await;
    let t = &bi["data"][0];
    assert_eq!(t["currentDueDate"], "2030-05-10T18:30:00");
    let created_at = t["creationDate"].as_str().unwrap();
    assert!(
        !created_at.ends_with('Z') && !created_at.contains('+'),
        "{created_at}"
    );

    // Sending the served values back changes nothing.
    let (back, _) = e
        .tool_with(
            &e.token(),
            "update_task",
            json!({ "taskId": id, "title": t["title"], "description": t["description"],
                    "currentDueDate": t["currentDueDate"], "phaseStartDate": t["phaseStartDate"] }),
        )
        .await;
    let after = e.sb.task(e.co.company_id, id).unwrap();
    assert_eq!(after.current_due_date, task.current_due_date);
    assert_eq!(after.phase_start_date, task.phase_start_date);
    assert_eq!(after.updated_at, task.updated_at, "{back}");
    assert_eq!(e.sb.counters().snapshot().event("zoned_date_input"), 0);

    // Another company in Tokyo serves the same instant as its own wall-clock time.
    let tokyo =
        e.sb.create_company(NewCompany {
            timezone: Some("Asia/Tokyo".into()),
            ..NewCompany::default()
        })
        .unwrap();
    assert_eq!(tokyo.timezone.name(), "Asia/Tokyo");
    let shown = sandbox::ekyte::dates::format_local(task.current_due_date.unwrap(), tokyo.timezone);
    assert_eq!(shown, "2030-05-11T06:30:00");

    // A zoned input is accepted as an instant but counted, so tests can catch the client.
    let mut zoned = e.task_body("zoned");
    zoned["CurrentDueDate"] = json!("2030-05-10T21:30:00Z");
    let (_, z) = e.post("/n8n/tasks", &zoned).await;
    let zt =
        e.sb.task(e.co.company_id, z["TaskId"].as_i64().unwrap())
            .unwrap();
    assert_eq!(zt.current_due_date, task.current_due_date);
    assert_eq!(e.sb.counters().snapshot().event("zoned_date_input"), 1);
    e.sb.shutdown().await.unwrap();
}

// ----- surface C -----------------------------------------------------------------------------

#[tokio::test]
async fn mcp_handshake_and_tool_calls_over_json_and_sse() {
    let e = env().await;
    let token = e.token();
    let init = json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": { "protocolVersion": "2024-11-05", "capabilities": {}, "clientInfo": { "name": "t", "version": "0" } },
    });
    let (s, ctype, body) = e
        .mcp_raw(&token, "application/json, text/event-stream", &init)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(ctype.starts_with("application/json"));
    assert_eq!(body["result"]["protocolVersion"], "2024-11-05");
    assert!(body["result"]["serverInfo"]["name"].is_string());
    assert!(body["result"]["capabilities"]["tools"].is_object());

    let r = e
        .http
        .post(e.url("/mcp"))
        .query(&[("token", &token)])
        .json(&json!({ "jsonrpc": "2.0", "method": "notifications/initialized" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert!(r.text().await.unwrap().is_empty());

    // In the BI envelope by default (`mcp_current_user = enveloped`).
    let me = e.tool("get_current_user", json!({})).await;
    assert_eq!(me["data"]["email"], e.co.admin.email);
    assert_eq!(me["data"]["companyId"], e.co.company_id);

    // The same calls over SSE.
    e.sb.set_mcp_prefer_sse(true);
    let (s, ctype, body) = e
        .mcp_raw(&token, "application/json, text/event-stream", &init)
        .await;
    assert_eq!(s, StatusCode::OK);
    assert!(ctype.starts_with("text/event-stream"), "{ctype}");
    assert_eq!(body["id"], 1);
    let created = e
        .tool(
            "create_task",
            json!({
                "title": "Via MCP", "description": "<div>x</div>",
                "workspaceId": e.co.workspace_id, "ctcTaskTypeId": e.co.task_type_id,
                "currentDueDate": "2030-01-02T00:00:00",
                "executorId": e.co.admin.id,
            }),
        )
        .await;
    let id = created["taskId"].as_i64().unwrap();
    assert_eq!(
        created["executorId"],
        e.co.admin.id.to_string(),
        "MCP may choose"
    );
    assert_eq!(created["createById"], e.co.admin.id.to_string());
    // A client that only accepts JSON still gets JSON.
    let (_, ctype, _) = e.mcp_raw(&token, "application/json", &init).await;
    assert!(ctype.starts_with("application/json"));
    e.sb.set_mcp_prefer_sse(false);

    let updated = e
        .tool(
            "update_task",
            json!({ "taskId": id, "title": "Novo título", "description": "<div>x</div>",
                    "currentDueDate": "2030-01-01T10:00:00", "situation": 30 }),
        )
        .await;
    assert_eq!(updated["title"], "Novo título");
    assert_eq!(updated["situation"], 30);
    assert!(updated["resolvedDate"].is_string());

    let phase = e
        .tool(
            "update_task_phase",
            json!({ "taskId": id, "phaseId": e.co.phase_ids[2] }),
        )
        .await;
    assert_eq!(phase["phase"]["name"], "Revisão");

    let comment = e
        .tool(
            "create_task_comment",
            json!({ "taskId": id, "description": "<div>oi</div>" }),
        )
        .await;
    assert_eq!(comment["createBy"]["email"], e.co.admin.email);
    let comments = e.tool("list_task_comments", json!({ "taskId": id })).await;
    assert_eq!(comments["paging"]["totalCollectionSize"], 1);

    let list = e.tool("list_tasks", json!({ "limit": 500 })).await;
    assert_eq!(
        list["paging"]["currentPage"]["size"], 200,
        "limit is capped"
    );
    assert!(
        list["data"][0].get("description").is_none(),
        "no description"
    );
    let detail = e.tool("get_detailed_task", json!({ "taskId": id })).await;
    assert_eq!(detail["description"], "<div>x</div>");
    let missing = e.tool("get_detailed_task", json!({ "taskId": 42 })).await;
    assert_eq!(missing, json!({}));

    let flow = e
        .tool(
            "get_task_type_flow",
            json!({ "id": e.co.task_type_id, "workspaceId": e.co.workspace_id }),
        )
        .await;
    assert_eq!(
        flow["flowPhases"][0]["executorId"],
        e.co.editor.id.to_string()
    );

    // Workspaces: create with externalId, rename, deactivate.
    let ws = e
        .tool(
            "create_workspace",
            json!({ "name": "Via MCP", "externalId": "ghl:x" }),
        )
        .await;
    let wid = ws["id"].as_i64().unwrap();
    let ws = e
        .tool(
            "update_workspace",
            json!({ "workspaceId": wid, "name": "Renomeado", "active": false }),
        )
        .await;
    assert_eq!(ws["active"], 0);
    assert_eq!(ws["name"], "Renomeado");
    let short = e
        .tool("list_short_workspaces", json!({ "active": false }))
        .await;
    assert!(short["data"][0].get("externalId").is_none(), "{short}");

    // Boards and notes.
    let board = e
        .tool(
            "create_board",
            json!({ "title": "Notas", "workspaceId": e.co.workspace_id }),
        )
        .await;
    let bid = board["id"].as_i64().unwrap();
    let note = e
        .tool("create_board_note", json!({ "boardId": bid, "title": "Perfil", "content": "<p>a</p>", "category": "Perfil" }))
        .await;
    let nid = note["id"].as_i64().unwrap();
    let note = e
        .tool(
            "update_board_note",
            json!({ "noteId": nid, "content": "<p>b</p>" }),
        )
        .await;
    assert_eq!(note["content"], "<p>b</p>");
    let detailed = e
        .tool("get_detailed_board", json!({ "boardId": bid }))
        .await;
    assert_eq!(detailed["notes"][0]["id"], nid);
    assert_eq!(detailed["categories"][0]["name"], "Perfil");
    let got = e.tool("get_detailed_note", json!({ "noteId": nid })).await;
    assert_eq!(got["category"]["name"], "Perfil");

    // Errors: a refused call is a tool error, an unknown tool a JSON-RPC error.
    let (err, is_error) = e
        .tool_with(&token, "update_task", json!({ "taskId": 1 }))
        .await;
    assert!(is_error, "{err}");
    let (_, _, body) = e
        .mcp_raw(
            &token,
            "application/json",
            &json!({ "jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": { "name": "delete_task", "arguments": {} } }),
        )
        .await;
    assert!(body["error"]["code"].is_i64(), "{body}");
    let (_, _, body) = e
        .mcp_raw(
            &token,
            "application/json",
            &json!({ "jsonrpc": "2.0", "id": 4, "method": "nope" }),
        )
        .await;
    assert_eq!(body["error"]["code"], -32601);

    let snap = e.sb.counters().snapshot();
    assert_eq!(snap.event("mcp_tool:update_task"), 2);
    assert_eq!(snap.event("mcp_tool:create_task"), 1);
    e.sb.shutdown().await.unwrap();
}

#[tokio::test]
async fn mcp_tools_list_has_no_delete_tool() {
    let e = env().await;
    let (_, _, body) = e
        .mcp_raw(
            &e.token(),
            "application/json",
            &json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/list" }),
        )
        .await;
    let names: Vec<&str> = body["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    for wanted in [
        "get_current_user",
        "list_short_workspaces",
        "create_workspace",
        "update_workspace",
        "list_task_types",
        "get_task_type_flow",
        "create_task",
        "list_tasks",
        "get_detailed_task",
        "update_task",
        "update_task_phase",
        "create_task_comment",
        "list_task_comments",
        "list_boards",
        "get_detailed_board",
        "create_board",
        "create_board_note",
        "get_detailed_note",
        "update_board_note",
    ] {
        assert!(names.contains(&wanted), "{wanted} missing");
    }
    assert!(names.iter().all(|n| !n.contains("delete")), "{names:?}");
    e.sb.shutdown().await.unwrap();
}

#[tokio::test]
async fn mcp_malformed_token_is_served_as_anonymous() {
    let e = env().await;
    let c = e.co.company_id;
    let id =
        e.sb.create_task(
            c,
            NewTask::new(e.co.workspace_id, e.co.task_type_id, "alvo"),
        )
        .unwrap();
    // The classic mistake: the whole URL pasted as the token.
    let pasted = format!("https://api.ekyte.com/mcp?token={}", e.token());
    let (me, is_error) = e.tool_with(&pasted, "get_current_user", json!({})).await;
    assert!(!is_error, "no error: that is the trap");
    let me = &me["data"];
    assert_eq!(me["id"], "00000000-0000-0000-0000-000000000000");
    assert!(me["email"].is_null());
    assert!(me["userName"].is_null());
    assert_eq!(
        me["companyId"], c,
        "the company is still the pasted token's"
    );

    // Writes succeed silently, without an author.
    let (comment, is_error) = e
        .tool_with(
            &pasted,
            "create_task_comment",
            json!({ "taskId": id, "description": "anon" }),
        )
        .await;
    assert!(!is_error, "{comment}");
    assert!(comment["createBy"].is_null());
    let task = e.sb.task(c, id).unwrap();
    assert_eq!(task.comments[0].author_id, None);

    // A token tied to nothing reads nothing, and its writes change nothing.
    let (list, _) = e.tool_with("garbage", "list_tasks", json!({})).await;
    assert_eq!(list["paging"]["totalCollectionSize"], 0);
    let (upd, is_error) = e
        .tool_with(
            "garbage",
            "update_task",
            json!({ "taskId": id, "title": "hacked" }),
        )
        .await;
    assert!(!is_error);
    assert_eq!(upd, json!({}));
    assert_eq!(e.sb.task(c, id).unwrap().title, "alvo");

    let snap = e.sb.counters().snapshot();
    assert_eq!(snap.event("mcp_anonymous_write"), 2);
    // No token at all is refused outright.
    let r = e
        .http
        .post(e.url("/mcp"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    e.sb.shutdown().await.unwrap();
}

#[tokio::test]
async fn mcp_token_scope_is_the_owner_and_what_they_may_see() {
    let e = env().await;
    let c = e.co.company_id;
    let token = "cd".repeat(32);
    let guest =
        e.sb.create_user(
            c,
            NewUser {
                email: "cliente@fora.example".into(),
                profile: Profile::Guest,
                mcp_token: Some(token.clone()),
                ..NewUser::default()
            },
        )
        .unwrap();
    let hidden =
        e.sb.create_task(
            c,
            NewTask::new(e.co.workspace_id, e.co.task_type_id, "interno"),
        )
        .unwrap();
    let (list, _) = e
        .tool_with(&token, "list_short_workspaces", json!({}))
        .await;
    assert_eq!(list["paging"]["totalCollectionSize"], 0);
    let (t, _) = e
        .tool_with(&token, "get_detailed_task", json!({ "taskId": hidden }))
        .await;
    assert_eq!(t, json!({}));
    let (_, is_error) = e
        .tool_with(
            &token,
            "update_task",
            json!({ "taskId": hidden, "title": "x" }),
        )
        .await;
    assert!(is_error);
    e.sb.add_workspace_member(c, e.co.workspace_id, guest)
        .unwrap();
    let (t, _) = e
        .tool_with(&token, "get_detailed_task", json!({ "taskId": hidden }))
        .await;
    assert_eq!(t["title"], "interno");
    // Another company's data is invisible to the token.
    let other = e.sb.seed_default_company().unwrap();
    let foreign =
        e.sb.create_task(
            other.company_id,
            NewTask::new(other.workspace_id, other.task_type_id, "alheio"),
        )
        .unwrap();
    let t = e
        .tool("get_detailed_task", json!({ "taskId": foreign }))
        .await;
    assert_eq!(t, json!({}));
    e.sb.shutdown().await.unwrap();
}

// ----- faults, limits, counters ------------------------------------------------------------

#[tokio::test]
async fn faulted_requests_change_no_data_and_are_counted() {
    let e = env().await;
    e.sb.faults().set(FaultConfig {
        error_rate: 1.0,
        ..FaultConfig::default()
    });
    let (s, body) = e.post("/n8n/tasks", &e.task_body("x")).await;
    assert!(s.is_server_error(), "{s}");
    assert!(body["Text"].is_string(), "automation error shape: {body}");
    let (s, body) = e.bi("/v1.2/tasks", &[]).await;
    assert!(s.is_server_error());
    assert!(body["error"]["code"].is_string(), "BI error shape");
    let (_, is_err) = {
        let (s, _, body) = e
            .mcp_raw(
                &e.token(),
                "application/json",
                &json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": { "name": "create_task_comment", "arguments": {} } }),
            )
            .await;
        (s, s.is_server_error() && body["error"].is_object())
    };
    assert!(is_err);
    assert!(e.sb.dump(e.co.company_id).unwrap().tasks.is_empty());

    // Control routes are never faulted.
    let r = e.http.get(e.url("/_control/health")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    let snap = e.sb.counters().snapshot();
    assert_eq!(snap.event("fault_server_error"), 3);
    assert_eq!(
        snap.event("mcp_tool:create_task_comment"),
        0,
        "never reached"
    );
    assert_eq!(snap.route_total("POST", "/n8n/tasks"), 1);
    assert_eq!(snap.total_requests(), 3, "control traffic is not counted");

    e.sb.faults().set(FaultConfig::default());
    let (s, _) = e.post("/n8n/tasks", &e.task_body("x")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(e.sb.dump(e.co.company_id).unwrap().tasks.len(), 1);
    e.sb.shutdown().await.unwrap();
}

#[tokio::test]
async fn timeouts_answer_504_and_shutdown_ends_them() {
    let e = env().await;
    e.sb.faults().set(FaultConfig {
        timeout_rate: 1.0,
        timeout_ms: 200,
        ..FaultConfig::default()
    });
    let (s, _) = e.bi("/v1.0/users", &[]).await;
    assert_eq!(s, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(e.sb.counters().snapshot().event("fault_timeout"), 1);

    // A hang far longer than the test must not hold shutdown.
    e.sb.faults().set(FaultConfig {
        timeout_rate: 1.0,
        timeout_ms: 600_000,
        ..FaultConfig::default()
    });
    let url = e.url("/v1.0/users");
    let pending = tokio::spawn(async move { reqwest::get(url).await.map(|r| r.status()) });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while e.sb.counters().snapshot().event("fault_timeout") < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "request never arrived"
        );
        tokio::task::yield_now().await;
    }
    tokio::time::timeout(Duration::from_secs(10), e.sb.shutdown())
        .await
        .expect("shutdown is prompt")
        .unwrap();
    let _ = pending.await;
}

#[tokio::test]
async fn rate_limits_separate_earned_from_injected_429s() {
    let e = env_with(EkyteConfig {
        rate_limit: Some(RateLimitConfig {
            requests: 3,
            window_ms: 60_000,
        }),
        ..EkyteConfig::default()
    })
    .await;
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(e.bi("/v1.0/users", &[]).await.0);
    }
    assert_eq!(
        statuses,
        vec![
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::TOO_MANY_REQUESTS,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );
    // Another credential has its own budget.
    let (s, _, _) = e
        .mcp_raw(
            &e.token(),
            "application/json",
            &json!({ "jsonrpc": "2.0", "id": 1, "method": "ping" }),
        )
        .await;
    assert_eq!(s, StatusCode::OK);

    e.sb.set_rate_limit(None);
    e.sb.faults().set(FaultConfig {
        burst_429_probability: 1.0,
        burst_429_length: 2,
        ..FaultConfig::default()
    });
    let (s, _) = e.bi("/v1.0/users", &[]).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
    let snap = e.sb.counters().snapshot();
    assert_eq!(snap.event("rate_limited_earned"), 2);
    assert_eq!(snap.event("rate_limited_injected"), 1);
    assert_eq!(snap.routes["GET /v1.0/users"][&429], 3);
    e.sb.shutdown().await.unwrap();
}

#[tokio::test]
async fn counters_are_keyed_by_route_template() {
    let e = env().await;
    e.bi("/v1.2/tasks", &[("workspaceId", "1")]).await;
    e.bi("/v1.2/tasks", &[("workspaceId", "2")]).await;
    e.post("/zapier/tasks", &e.task_body("x")).await;
    e.get("/n8n/polling/tasks", &e.auth()).await;
    e.get("/v9/nothing", &[]).await;
    e.tool("list_tasks", json!({})).await;
    let r = e
        .http
        .get(e.url("/_control/counters"))
        .send()
        .await
        .unwrap();
    let snap: Value = r.json().await.unwrap();
    assert_eq!(snap["routes"]["GET /v1.2/tasks"]["200"], 2);
    assert_eq!(snap["routes"]["POST /zapier/tasks"]["200"], 1);
    assert_eq!(snap["routes"]["GET /n8n/polling/tasks"]["200"], 1);
    assert_eq!(snap["routes"]["POST /mcp"]["200"], 1);
    assert_eq!(snap["routes"]["GET <unmatched>"]["404"], 1);
    assert_eq!(snap["events"]["mcp_tool:list_tasks"], 1);
    let r = e
        .http
        .post(e.url("/_control/counters/reset"))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    assert_eq!(e.sb.counters().snapshot().total_requests(), 0);
    e.sb.shutdown().await.unwrap();
}

// ----- control API -------------------------------------------------------------------------

#[tokio::test]
async fn control_api_seeds_in_bulk_acts_and_dumps() {
    let sb = EkyteSandbox::start(EkyteConfig::default()).await.unwrap();
    let http = reqwest::Client::new();
    let base = sb.base_url();
    let co: DefaultCompany = http
        .post(format!("{base}/_control/seed-default"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let c = co.company_id;
    let tasks: Vec<Value> = (0..3000)
        .map(|i| {
            json!({
                "workspace_id": co.workspace_id, "task_type_id": co.task_type_id,
                "title": format!("t{i}"), "current_due_date": "2030-01-01T12:00:00Z",
            })
        })
        .collect();
    let started = std::time::Instant::now();
    let r: Value = http
        .post(format!("{base}/_control/companies/{c}/tasks"))
        .json(&tasks)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let took = started.elapsed();
    assert_eq!(r["ids"].as_array().unwrap().len(), 3000);
    assert!(took < Duration::from_secs(20), "bulk seeding took {took:?}");

    let bad: reqwest::Response = http
        .post(format!("{base}/_control/companies/{c}/tasks"))
        .json(&json!([{ "workspace_id": 1, "task_type_id": co.task_type_id, "title": "x" }]))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::NOT_FOUND);
    let bad: Value = bad.json().await.unwrap();
    assert_eq!(bad["index"], 0);

    let first = r["ids"][0].as_i64().unwrap();
    for (path, body) in [
        (format!("tasks/{first}/complete"), json!({})),
        (
            format!("tasks/{first}/comments"),
            json!({ "description": "<div>feito</div>", "author_id": co.editor.id }),
        ),
        (
            format!("workspaces/{}/rename", co.workspace_id),
            json!({ "name": "Cliente Renomeado" }),
        ),
        (
            format!("workspaces/{}/deactivate", co.workspace_id),
            json!({}),
        ),
    ] {
        let r = http
            .post(format!("{base}/_control/companies/{c}/{path}"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.status());
    }
    let dump: Value = http
        .get(format!("{base}/_control/companies/{c}/dump"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(dump["tasks"].as_array().unwrap().len(), 3000);
    let t0 = &dump["tasks"][0];
    assert_eq!(t0["situation"], "completed");
    assert_eq!(t0["comments"][0]["author_id"], co.editor.id.to_string());
    assert_eq!(dump["workspaces"][0]["name"], "Cliente Renomeado");
    assert_eq!(dump["workspaces"][0]["active"], false);
    assert_eq!(dump["company"]["timezone"], "America/Sao_Paulo");

    // The BI view agrees with the dump.
    let (status, bi) = {
        let r = http
            .get(format!("{base}/v1.2/tasks"))
            .query(&[
                ("apiKey", co.api_key.as_str()),
                ("status", "30"),
                ("includeComments", "1"),
            ])
            .send()
            .await
            .unwrap();
        (r.status(), r.json::<Value>().await.unwrap())
    };
    assert_eq!(status, StatusCode::OK);
    assert_eq!(bi["paging"]["totalCollectionSize"], 1);
    assert_eq!(
        bi["data"][0]["comments"][0]["createBy"]["email"],
        co.editor.email
    );

    // Faults and the clock through HTTP.
    let r = http
        .put(format!("{base}/_control/faults"))
        .json(&json!({ "error_rate": 1.0 }))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    assert_eq!(sb.faults().config().error_rate, 1.0);
    let r: Value = http
        .post(format!("{base}/_control/clock/advance"))
        .json(&json!({ "seconds": 3600 }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(r["now"].is_string());
    assert!(sb.now() > chrono::Utc::now() + chrono::Duration::minutes(59));
    sb.shutdown().await.unwrap();
}

#[test]
fn config_deserialises_from_a_partial_document() {
    let c: EkyteConfig = serde_json::from_value(json!({ "port": 18081 })).unwrap();
    assert_eq!(c.port, 18081);
    assert_eq!(c.page_size, 100);
    assert_eq!(c.polling_window_secs, 900);
    assert!(c.rate_limit.is_none());
    let c: EkyteConfig = serde_json::from_value(json!({
        "mcp_prefer_sse": true,
        "rate_limit": { "requests": 10, "window_ms": 1000 },
        "faults": { "error_rate": 0.1 },
    }))
    .unwrap();
    assert!(c.mcp_prefer_sse);
    assert_eq!(c.faults.error_rate, 0.1);
}

/// MCP `update_task` replaces the task's content by default (the reading API.md §5 leaves
/// open): a call that leaves out the title or the due date is refused, one that leaves out the
/// description clears it; under `patch` they stay. A situation alone moves the task either way.
#[tokio::test]
async fn mcp_update_task_replaces_content_by_default_and_patches_when_set() {
    let e = env().await;
    let c = e.co.company_id;
    let mut t = NewTask::new(e.co.workspace_id, e.co.task_type_id, "Original");
    t.description = "<div>Texto</div>".into();
    let id = e.sb.create_task(c, t).unwrap();
    let (err, is_error) = e
        .tool_with(
            &e.token(),
            "update_task",
            json!({ "taskId": id, "title": "Só o título" }),
        )
        .await;
    assert!(is_error, "a replace without a due date: {err}");
    e.tool(
        "update_task",
        json!({ "taskId": id, "title": "Novo", "currentDueDate": "2030-01-01T10:00:00" }),
    )
    .await;
    assert_eq!(
        e.sb.task(c, id).unwrap().description,
        "",
        "replaced: cleared"
    );
    e.tool("update_task", json!({ "taskId": id, "situation": 30 }))
        .await;
    assert_eq!(
        e.sb.task(c, id).unwrap().title,
        "Novo",
        "a move keeps the content"
    );

    e.sb.update_settings(sandbox::ekyte::SettingsPatch {
        mcp_update: Some(sandbox::ekyte::McpUpdate::Patch),
        ..Default::default()
    });
    e.tool(
        "update_task",
        json!({ "taskId": id, "description": "<div>Outro</div>" }),
    )
    .await;
    e.tool("update_task", json!({ "taskId": id, "title": "Patch" }))
        .await;
    let after = e.sb.task(c, id).unwrap();
    assert_eq!(
        (after.title.as_str(), after.description.as_str()),
        ("Patch", "<div>Outro</div>")
    );
}

/// MCP `update_workspace` under `replace` (the default) takes the workspace whole: a call
/// without a name is refused, an absent `externalId` is cleared and an absent `active` means
/// active; under `patch` what a call leaves out stays.
#[tokio::test]
async fn mcp_update_workspace_replaces_by_default_and_patches_when_set() {
    let e = env().await;
    let c = e.co.company_id;
    let ws = e.co.workspace_id;
    e.tool(
        "update_workspace",
        json!({ "workspaceId": ws, "name": "Com id", "externalId": "ghl:contact:l1:c1" }),
    )
    .await;
    let (err, is_error) = e
        .tool_with(
            &e.token(),
            "update_workspace",
            json!({ "workspaceId": ws, "active": false }),
        )
        .await;
    assert!(is_error, "a replace without a name: {err}");
    assert!(e.sb.workspace(c, ws).unwrap().active);
    e.tool(
        "update_workspace",
        json!({ "workspaceId": ws, "name": "Sem id" }),
    )
    .await;
    let after = e.sb.workspace(c, ws).unwrap();
    assert_eq!(
        (after.name.as_str(), after.active, after.external_id),
        ("Sem id", true, None),
        "replaced: the id left out is cleared"
    );

    e.sb.update_settings(sandbox::ekyte::SettingsPatch {
        mcp_update: Some(sandbox::ekyte::McpUpdate::Patch),
        ..Default::default()
    });
    e.tool(
        "update_workspace",
        json!({ "workspaceId": ws, "externalId": "ghl:contact:l1:c2" }),
    )
    .await;
    e.tool(
        "update_workspace",
        json!({ "workspaceId": ws, "active": false }),
    )
    .await;
    let after = e.sb.workspace(c, ws).unwrap();
    assert_eq!(
        (
            after.name.as_str(),
            after.active,
            after.external_id.as_deref()
        ),
        ("Sem id", false, Some("ghl:contact:l1:c2")),
        "patched: what is left out stays"
    );
}

/// Under `mcp_arguments = strict` (the default) a tool call is checked against the tool's
/// `inputSchema` and refused with JSON-RPC -32602: an argument it does not list (an id
/// alias among them), a required one missing, one of another type. Under `lenient` the alias
/// and the number in a string go through.
#[tokio::test]
async fn mcp_arguments_are_checked_against_the_schema_unless_lenient() {
    let e = env().await;
    let c = e.co.company_id;
    let id =
        e.sb.create_task(
            c,
            NewTask::new(e.co.workspace_id, e.co.task_type_id, "alvo"),
        )
        .unwrap();
    let call = |args: Value| {
        json!({
            "jsonrpc": "2.0", "id": 9, "method": "tools/call",
            "params": { "name": "get_detailed_task", "arguments": args },
        })
    };
    for (args, why) in [
        (
            json!({ "taskId": id, "extra": 1 }),
            "unrecognized key \"extra\"",
        ),
        (json!({ "id": id }), "unrecognized key \"id\""),
        (json!({}), "\"taskId\" is required"),
        (json!({ "taskId": id.to_string() }), "expected integer"),
    ] {
        let (status, _, body) = e
            .mcp_raw(&e.token(), "application/json", &call(args.clone()))
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["error"]["code"], -32602, "{args}: {body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(why), "{args}: {message}");
    }
    assert_eq!(
        e.tool("get_detailed_task", json!({ "taskId": id })).await["id"],
        id
    );

    e.sb.update_settings(sandbox::ekyte::SettingsPatch {
        mcp_arguments: Some(sandbox::ekyte::McpArguments::Lenient),
        ..Default::default()
    });
    for args in [
        json!({ "id": id, "extra": 1 }),
        json!({ "taskId": id.to_string() }),
    ] {
        assert_eq!(e.tool("get_detailed_task", args).await["id"], id);
    }
}
