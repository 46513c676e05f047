//! The baseline: the integration a person writes by hand. One request at a time, no rate
//! budget, a fixed sleep on a 429 (GHL's 10 s, scaled by the benchmark's time compression),
//! and for each contact: read the contact, its tasks and its notes, then create (or update)
//! the workspace, the tasks and the notes in eKyte. What it wrote is remembered in memory
//! only. It does less than the service (no appointments or profile note, no onboarding, no
//! two-way sync, no stored links, no signature check) — which only flatters it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use reqwest::Method;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use app::demo::sim::World;

/// What the baseline did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PlainCounts {
    pub ghl_calls: u64,
    pub ekyte_calls: u64,
    pub got_429: u64,
    pub slept_s: f64,
    pub contacts_synced: u64,
    pub events_handled: u64,
}

#[derive(Debug, Clone)]
struct Linked {
    workspace: i64,
    board: i64,
    name: String,
    /// GHL task id → (eKyte task id, title, completed).
    tasks: HashMap<String, (i64, String, bool)>,
    /// GHL note id → (eKyte note id, body).
    notes: HashMap<String, (i64, String)>,
}

/// The hand-written sequential client.
pub struct Plain {
    http: reqwest::Client,
    ghl: String,
    pit: String,
    location: String,
    ekyte: String,
    auth_query: Vec<(&'static str, String)>,
    mcp_token: Option<String>,
    email: String,
    task_type: i64,
    sleep_on_429: Duration,
    linked: HashMap<String, Linked>,
    rpc_id: u64,
    pub counts: PlainCounts,
}

impl Plain {
    pub fn new(world: &World, sleep_on_429: Duration) -> anyhow::Result<Self> {
        let c = &world.company;
        Ok(Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()?,
            ghl: world.ghl.base_url(),
            pit: world.pit.clone(),
            location: world.location.clone(),
            ekyte: world.ekyte.base_url(),
            auth_query: vec![
                ("apiKey", c.api_key.clone()),
                ("CompanyId", c.company_id.to_string()),
                ("UserEmail", c.admin.email.clone()),
            ],
            mcp_token: c.admin.mcp_token.clone(),
            email: c.admin.email.clone(),
            task_type: c.task_type_id,
            sleep_on_429,
            linked: HashMap::new(),
            rpc_id: 0,
            counts: PlainCounts::default(),
        })
    }

    /// One GHL request; on a 429, sleep the fixed time and send it again.
    async fn ghl(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        loop {
            let mut req = self
                .http
                .request(method.clone(), format!("{}{path}", self.ghl))
                .bearer_auth(&self.pit)
                .header("Version", "2021-07-28")
                .header("Accept", "application/json");
            if let Some(b) = &body {
                req = req.json(b);
            }
            let resp = req.send().await.with_context(|| format!("GHL {path}"))?;
            self.counts.ghl_calls += 1;
            if resp.status().as_u16() == 429 {
                self.counts.got_429 += 1;
                self.counts.slept_s += self.sleep_on_429.as_secs_f64();
                tokio::time::sleep(self.sleep_on_429).await;
                continue;
            }
            if !resp.status().is_success() {
                bail!("GHL {method} {path}: HTTP {}", resp.status());
            }
            return Ok(resp.json().await?);
        }
    }

    /// One eKyte automation-API create; returns the id field of the answer.
    async fn create(&mut self, what: &str, id_field: &str, body: Value) -> anyhow::Result<i64> {
        let resp = self
            .http
            .post(format!("{}/n8n/{what}", self.ekyte))
            .query(&self.auth_query)
            .json(&body)
            .send()
            .await?;
        self.counts.ekyte_calls += 1;
        let status = resp.status();
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("eKyte POST /n8n/{what}: HTTP {status}: {v}");
        }
        v[id_field]
            .as_i64()
            .with_context(|| format!("eKyte POST /n8n/{what} answered without {id_field}: {v}"))
    }

    /// One MCP tool call (updates: eKyte's automation API has none).
    async fn tool(&mut self, name: &str, arguments: Value) -> anyhow::Result<()> {
        let Some(token) = self.mcp_token.clone() else {
            return Ok(());
        };
        self.rpc_id += 1;
        let resp = self
            .http
            .post(format!("{}/mcp", self.ekyte))
            .query(&[("token", token)])
            .header("Accept", "application/json, text/event-stream")
            .json(&json!({
                "jsonrpc": "2.0",
                "id": self.rpc_id,
                "method": "tools/call",
                "params": { "name": name, "arguments": arguments },
            }))
            .send()
            .await?;
        self.counts.ekyte_calls += 1;
        let status = resp.status();
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() || v.get("error").is_some_and(|e| !e.is_null()) {
            bail!("eKyte MCP {name}: HTTP {status}: {v}");
        }
        if v["result"]["isError"] == json!(true) {
            bail!("eKyte MCP {name} refused: {}", v["result"]);
        }
        Ok(())
    }

    /// The backfill: page through the contacts, sync each one.
    pub async fn backfill(&mut self) -> anyhow::Result<()> {
        let mut after: Option<Value> = None;
        loop {
            let mut body = json!({
                "locationId": self.location,
                "pageLimit": 100,
                "sort": [{ "field": "dateUpdated", "direction": "asc" }],
            });
            if let Some(a) = &after {
                body["searchAfter"] = a.clone();
            }
            let page = self
                .ghl(Method::POST, "/contacts/search", Some(body))
                .await?;
            let contacts = page["contacts"].as_array().cloned().unwrap_or_default();
            for c in &contacts {
                if let Some(id) = c["id"].as_str() {
                    self.sync_contact(id).await?;
                }
            }
            match contacts.last() {
                Some(last) if contacts.len() == 100 => after = Some(search_after(last)?),
                _ => return Ok(()),
            }
        }
    }

    /// Read the contact, its tasks and notes; write what eKyte lacks or what changed.
    pub async fn sync_contact(&mut self, id: &str) -> anyhow::Result<()> {
        let contact = self
            .ghl(Method::GET, &format!("/contacts/{id}"), None)
            .await?;
        let tasks = self
            .ghl(Method::GET, &format!("/contacts/{id}/tasks"), None)
            .await?;
        let notes = self
            .ghl(Method::GET, &format!("/contacts/{id}/notes"), None)
            .await?;
        let c = &contact["contact"];
        let name = format!(
            "{} {}",
            c["firstName"].as_str().unwrap_or_default(),
            c["lastName"].as_str().unwrap_or_default()
        )
        .trim()
        .to_owned();
        let mut linked = match self.linked.remove(id) {
            Some(l) => {
                if l.name != name {
                    let ws = l.workspace;
                    self.tool(
                        "update_workspace",
                        json!({ "workspaceId": ws, "name": name }),
                    )
                    .await?;
                }
                Linked { name, ..l }
            }
            None => {
                let workspace = self
                    .create(
                        "workspaces",
                        "WorkspaceId",
                        json!({ "Name": name, "ExternalId": format!("plain:{id}"), "Active": true }),
                    )
                    .await?;
                let board = self
                    .create(
                        "boards",
                        "BoardId",
                        json!({ "Title": "GHL notes", "WorkspaceId": workspace }),
                    )
                    .await?;
                Linked {
                    workspace,
                    board,
                    name,
                    tasks: HashMap::new(),
                    notes: HashMap::new(),
                }
            }
        };
        for t in tasks["tasks"].as_array().into_iter().flatten() {
            let Some(tid) = t["id"].as_str() else {
                continue;
            };
            let title = t["title"].as_str().unwrap_or("Task").to_owned();
            let completed = t["completed"].as_bool().unwrap_or(false);
            match linked.tasks.get(tid).cloned() {
                None => {
                    let due = t["dueDate"]
                        .as_str()
                        .and_then(|d| chrono::DateTime::parse_from_rfc3339(d).ok())
                        .map(|d| d.naive_utc().format("%Y-%m-%dT%H:%M:%S").to_string())
                        .unwrap_or_else(|| "2027-01-01T12:00:00".to_owned());
                    let eid = self
                        .create(
                            "tasks",
                            "TaskId",
                            json!({
                                "Title": title,
                                "Description": t["body"].as_str().unwrap_or_default(),
                                "CurrentDueDate": due,
                                "CtcTaskTypeId": self.task_type,
                                "WorkspaceId": linked.workspace,
                                "UserEmail": self.email,
                            }),
                        )
                        .await?;
                    if completed {
                        self.tool("update_task", json!({ "taskId": eid, "situation": 30 }))
                            .await?;
                    }
                    linked.tasks.insert(tid.to_owned(), (eid, title, completed));
                }
                Some((eid, old_title, old_completed))
                    if old_title != title || old_completed != completed =>
                {
                    let situation = if completed { 30 } else { 10 };
                    self.tool(
                        "update_task",
                        json!({ "taskId": eid, "title": title, "situation": situation }),
                    )
                    .await?;
                    linked.tasks.insert(tid.to_owned(), (eid, title, completed));
                }
                Some(_) => {}
            }
        }
        for n in notes["notes"].as_array().into_iter().flatten() {
            let Some(nid) = n["id"].as_str() else {
                continue;
            };
            let body = n["body"].as_str().unwrap_or_default().to_owned();
            match linked.notes.get(nid).cloned() {
                None => {
                    let eid = self
                        .create(
                            "notes",
                            "NoteId",
                            json!({ "PlanId": linked.board, "Title": "GHL note", "Content": body }),
                        )
                        .await?;
                    linked.notes.insert(nid.to_owned(), (eid, body));
                }
                Some((eid, old)) if old != body => {
                    self.tool(
                        "update_board_note",
                        json!({ "noteId": eid, "content": body }),
                    )
                    .await?;
                    linked.notes.insert(nid.to_owned(), (eid, body));
                }
                Some(_) => {}
            }
        }
        self.linked.insert(id.to_owned(), linked);
        self.counts.contacts_synced += 1;
        Ok(())
    }

    /// Handle webhooks one at a time as they arrive, until `idle` passes with none (after the
    /// simulator delivered everything) — the event half of the baseline.
    pub async fn handle_events(
        &mut self,
        world: &World,
        rx: &mut mpsc::UnboundedReceiver<Value>,
        deadline: Duration,
    ) -> anyhow::Result<Instant> {
        let until = Instant::now() + deadline;
        let mut last_done = Instant::now();
        loop {
            match tokio::time::timeout(Duration::from_millis(5), rx.recv()).await {
                Ok(Some(event)) => {
                    let contact = event["contactId"]
                        .as_str()
                        .or_else(|| {
                            event["type"]
                                .as_str()
                                .filter(|t| t.starts_with("Contact"))
                                .and(event["id"].as_str())
                        })
                        .map(str::to_owned);
                    if let Some(c) = contact {
                        self.sync_contact(&c).await?;
                    }
                    self.counts.events_handled += 1;
                    last_done = Instant::now();
                }
                Ok(None) => return Ok(last_done),
                Err(_) => {
                    if world.ghl.webhooks_in_flight() == 0 && rx.is_empty() {
                        return Ok(last_done);
                    }
                }
            }
            if Instant::now() > until {
                bail!("the baseline did not finish its events within {deadline:?}");
            }
        }
    }
}

/// A bare webhook receiver for the baseline: answers 200 at once and hands the payload on
/// (no signature check, no durable accept).
pub async fn receiver() -> anyhow::Result<(String, mpsc::UnboundedReceiver<Value>)> {
    use axum::routing::post;
    let (tx, rx) = mpsc::unbounded_channel::<Value>();
    let tx = Arc::new(tx);
    let app = axum::Router::new().route(
        "/hook",
        post(move |body: axum::body::Bytes| {
            let tx = tx.clone();
            async move {
                if let Ok(v) = serde_json::from_slice::<Value>(&body) {
                    let _ = tx.send(v);
                }
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((format!("http://{addr}/hook"), rx))
}

/// The cursor after a hit of a `dateUpdated asc` search: its own `searchAfter` when GHL gives
/// one, else `[dateUpdated epoch ms, id]` (API.md §5: only a third-party mirror says hits carry
/// it).
fn search_after(hit: &Value) -> anyhow::Result<Value> {
    if let Some(sa) = hit["searchAfter"].as_array().filter(|a| !a.is_empty()) {
        return Ok(Value::Array(sa.clone()));
    }
    let updated = hit["dateUpdated"]
        .as_str()
        .context("a search hit without dateUpdated")?;
    let ms = chrono::DateTime::parse_from_rfc3339(updated)
        .with_context(|| format!("a search hit's dateUpdated {updated:?}"))?
        .timestamp_millis();
    Ok(json!([ms, hit["id"].clone()]))
}
