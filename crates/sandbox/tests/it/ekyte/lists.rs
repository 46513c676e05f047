//! The lists API.md §3.2 and §4.1 name beyond the first ones: BI tickets, time trackings,
//! members and insights, and the automation API's notifications of one user.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use sandbox::ekyte::dates::{DEFAULT_TIMEZONE, format_local};
use sandbox::ekyte::{
    NewCompany, NewSquad, NewTask, NewTicket, NewUser, NewWorkspace, NotificationKind, Profile,
    SettingsPatch, TicketStatus,
};
use serde_json::{Value, json};

use super::{BI_LISTS, Env, POLLING_READS, env, zapier_spelling};

fn ids(page: &Value) -> Vec<i64> {
    page["data"]
        .as_array()
        .expect("a data list")
        .iter()
        .map(|r| r["id"].as_i64().expect("numeric id"))
        .collect()
}

/// The local calendar day of an instant, as a date-only filter value.
fn local_day(t: DateTime<Utc>) -> String {
    format_local(t, DEFAULT_TIMEZONE)[..10].to_owned()
}

fn assert_zone_less(v: &Value) {
    let s = v.as_str().unwrap_or_else(|| panic!("a date string: {v}"));
    assert!(
        !s.ends_with('Z') && !s[10..].contains('+') && !s[10..].contains('-'),
        "{s}"
    );
}

fn assert_bad_request(status: StatusCode, body: &Value, what: &str) {
    assert_eq!(status, StatusCode::BAD_REQUEST, "{what}: {body}");
    assert_eq!(body["error"]["code"], "400", "{what}");
    assert!(body["error"]["message"].is_string(), "{what}");
    assert!(body["data"].is_null() && body["paging"].is_null(), "{what}");
}

fn page_size(e: &Env, size: usize) {
    e.sb.update_settings(SettingsPatch {
        page_size: Some(size),
        ..SettingsPatch::default()
    });
}

// ----- surface A -----------------------------------------------------------------------------

#[tokio::test]
async fn bi_tickets_filter_by_status_workspace_squad_and_creation() {
    let e = env().await;
    let c = e.co.company_id;
    let squad =
        e.sb.create_squad(
            c,
            NewSquad {
                name: "Squad A".into(),
            },
        )
        .unwrap();
    let other =
        e.sb.create_workspace(
            c,
            NewWorkspace {
                name: "Outro cliente".into(),
                squad_id: Some(squad),
                ..NewWorkspace::default()
            },
        )
        .unwrap();
    let ticket = |ws: i64, subject: &str| NewTicket {
        workspace_id: ws,
        subject: subject.into(),
        ticket_type: 1,
        requester_email: e.co.editor.email.clone(),
        ..NewTicket::default()
    };
    let t1 =
        e.sb.create_ticket(c, ticket(e.co.workspace_id, "a"))
            .unwrap();
    e.sb.advance_clock(Duration::from_secs(2 * 86_400));
    let t2 = e.sb.create_ticket(c, ticket(other, "b")).unwrap();
    e.sb.set_ticket_status(c, t2, TicketStatus::Resolved)
        .unwrap();
    let t3 =
        e.sb.create_ticket(c, ticket(e.co.workspace_id, "c"))
            .unwrap();

    let (s, all) = e.bi("/v1.1/tickets", &[]).await;
    assert_eq!(s, StatusCode::OK);
    assert!(all["error"].is_null());
    assert_eq!(ids(&all), [t1, t2, t3], "ascending ids");
    assert_eq!(all["paging"]["totalCollectionSize"], 3);
    let row = &all["data"][0];
    assert_eq!(row["subject"], "a");
    assert_eq!(row["status"], 1);
    assert_eq!(row["ticketType"], 1);
    assert_eq!(row["workspaceId"], e.co.workspace_id);
    assert_eq!(row["workspace"], "Cliente Demo");
    assert_eq!(row["requesterEmail"], e.co.editor.email.as_str());
    assert_eq!(row["requester"], "Edu Editor");
    assert_eq!(row["analystEmail"], e.co.admin.email.as_str());
    assert!(row["squadId"].is_null());
    assert!(row["concludedDate"].is_null());
    assert_zone_less(&row["creationDate"]);
    assert_eq!(all["data"][1]["squad"], "Squad A");
    assert_zone_less(&all["data"][1]["concludedDate"]);

    let other_s = other.to_string();
    let squad_s = squad.to_string();
    let (_, by_ws) = e.bi("/v1.1/tickets", &[("WORKSPACEID", &other_s)]).await;
    assert_eq!(ids(&by_ws), [t2], "names bind case-insensitively");
    let (_, by_squad) = e.bi("/v1.1/tickets", &[("squadId", &squad_s)]).await;
    assert_eq!(ids(&by_squad), [t2]);
    let (_, resolved) = e.bi("/v1.1/tickets", &[("status", "3")]).await;
    assert_eq!(ids(&resolved), [t2]);
    let (_, open) = e.bi("/v1.1/tickets", &[("Status", "1")]).await;
    assert_eq!(ids(&open), [t1, t3]);
    let (_, every) = e.bi("/v1.1/tickets", &[("status", "0")]).await;
    assert_eq!(ids(&every), [t1, t2, t3], "0 is every status");

    let dump = e.sb.dump(c).unwrap();
    let created = |id: i64| dump.tickets.iter().find(|t| t.id == id).unwrap().created_at;
    let (_, recent) = e
        .bi("/v1.1/tickets", &[("createdFrom", &local_day(created(t2)))])
        .await;
    assert_eq!(ids(&recent), [t2, t3]);
    // A date-only upper bound is the day's midnight by default (the ASP.NET reading), its
    // whole day when so set.
    let day_of_t1 = local_day(created(t1));
    let (_, early) = e.bi("/v1.1/tickets", &[("createdTo", &day_of_t1)]).await;
    assert!(
        ids(&early).is_empty(),
        "midnight leaves out the day: {early}"
    );
    e.sb.update_settings(sandbox::ekyte::SettingsPatch {
        due_to_date_means: Some(sandbox::ekyte::DateOnlyMeans::EndOfDay),
        ..Default::default()
    });
    let (_, early) = e.bi("/v1.1/tickets", &[("createdTo", &day_of_t1)]).await;
    assert_eq!(ids(&early), [t1], "the whole day covers it");
    e.sb.update_settings(sandbox::ekyte::SettingsPatch {
        due_to_date_means: Some(sandbox::ekyte::DateOnlyMeans::Midnight),
        ..Default::default()
    });

    for (name, value) in [
        ("status", "5"),
        ("workspaceId", "abc"),
        ("createdFrom", "10/05/2024"),
        ("page", "x"),
    ] {
        let (s, bad) = e.bi("/v1.1/tickets", &[(name, value)]).await;
        assert_bad_request(s, &bad, name);
    }

    page_size(&e, 2);
    let (_, p1) = e.bi("/v1.1/tickets", &[]).await;
    assert_eq!(ids(&p1), [t1, t2]);
    assert_eq!(
        p1["paging"],
        json!({ "currentPage": { "size": 2, "number": 1 }, "totalCollectionSize": 3, "totalPages": 2 })
    );
    let (_, p2) = e.bi("/v1.1/tickets", &[("page", "2")]).await;
    assert_eq!(ids(&p2), [t3]);
    e.sb.shutdown().await.unwrap();
}

#[tokio::test]
async fn bi_time_trackings_shape_filters_and_paging() {
    let e = env().await;
    let c = e.co.company_id;
    let squad =
        e.sb.create_squad(
            c,
            NewSquad {
                name: "Squad T".into(),
            },
        )
        .unwrap();
    let other =
        e.sb.create_workspace(
            c,
            NewWorkspace {
                name: "Outro".into(),
                squad_id: Some(squad),
                ..NewWorkspace::default()
            },
        )
        .unwrap();
    let task =
        e.sb.create_task(c, NewTask::new(other, e.co.task_type_id, "apontada"))
            .unwrap();

    // 30 entries recorded in May, 100 in June (recorded a day after the work), one on a task.
    let mut entries: Vec<Value> = (0..130)
        .map(|i| {
            let (start, created) = if i < 30 {
                ("2024-05-01T12:00:00Z", "2024-05-01T15:00:00Z")
            } else {
                ("2024-06-09T12:00:00Z", "2024-06-10T15:00:00Z")
            };
            json!({
                "workspace_id": e.co.workspace_id, "user_id": e.co.editor.id,
                "start_date": start, "effort_minutes": 30 + i,
                "accomplished_hourly_rate": 150.5, "created_at": created,
            })
        })
        .collect();
    entries.push(json!({
        "task_id": task, "phase_id": e.co.phase_ids[0], "start_date": "2024-06-20T13:00:00Z",
        "end_date": "2024-06-20T14:45:00Z", "created_at": "2024-06-20T15:00:00Z",
    }));
    let url = e.url(&format!("/_control/companies/{c}/time-trackings"));
    let r = e.http.post(&url).json(&entries).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let seeded: Value = r.json().await.unwrap();
    assert_eq!(seeded["ids"].as_array().unwrap().len(), 131);

    // A seed that contradicts its task is refused with the record's index.
    let bad = json!([{ "workspace_id": e.co.workspace_id, "task_id": task,
        "start_date": "2024-06-20T13:00:00Z", "effort_minutes": 5 }]);
    let r = e.http.post(&url).json(&bad).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let bad: Value = r.json().await.unwrap();
    assert_eq!(bad["index"], 0);
    assert_eq!(bad["error"]["id"], 208);

    let (s, p1) = e.bi("/v1.0/time-trackings", &[]).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(p1["data"].as_array().unwrap().len(), 100);
    assert_eq!(p1["paging"]["totalCollectionSize"], 131);
    assert_eq!(p1["paging"]["totalPages"], 2);
    let row = &p1["data"][0];
    assert_eq!(row["effort"], 30);
    assert_eq!(row["accomplishedHourlyRate"], 150.5);
    assert_eq!(row["workspaceId"], e.co.workspace_id);
    assert_eq!(row["workspace"], "Cliente Demo");
    assert_eq!(row["startDate"], "2024-05-01T09:00:00", "São Paulo time");
    assert_eq!(row["createdIn"], "2024-05-01T12:00:00");
    assert_eq!(row["userEmail"], e.co.editor.email.as_str());
    assert!(row["ctcTaskId"].is_null());
    let (_, p2) = e.bi("/v1.0/time-trackings", &[("page", "2")]).await;
    assert_eq!(p2["data"].as_array().unwrap().len(), 31);
    let mut seen: BTreeSet<i64> = ids(&p1).into_iter().collect();
    seen.extend(ids(&p2));
    assert_eq!(seen.len(), 131, "the two pages hold every entry once");

    // Created filters read `createdIn`, not `startDate`: June 10 is recorded work of June 9.
    let (_, june) = e
        .bi("/v1.0/time-trackings", &[("createdFrom", "2024-06-10")])
        .await;
    assert_eq!(june["paging"]["totalCollectionSize"], 101);
    let (_, may) = e
        .bi(
            "/v1.0/time-trackings",
            &[("CREATEDTO", "2024-05-01T23:59:59")],
        )
        .await;
    assert_eq!(may["paging"]["totalCollectionSize"], 30);
    let (_, window) = e
        .bi(
            "/v1.0/time-trackings",
            &[
                ("createdFrom", "2024-06-09"),
                ("createdTo", "2024-06-09T23:59:59"),
            ],
        )
        .await;
    assert_eq!(window["paging"]["totalCollectionSize"], 0);

    let other_s = other.to_string();
    let squad_s = squad.to_string();
    let (_, by_ws) = e
        .bi("/v1.0/time-trackings", &[("workspaceId", &other_s)])
        .await;
    let (_, by_squad) = e.bi("/v1.0/time-trackings", &[("squadid", &squad_s)]).await;
    assert_eq!(ids(&by_ws), ids(&by_squad));
    assert_eq!(by_ws["data"].as_array().unwrap().len(), 1);
    let on_task = &by_ws["data"][0];
    assert_eq!(
        on_task["effort"], 105,
        "end - start when no effort is given"
    );
    assert_eq!(on_task["ctcTaskId"], task);
    assert_eq!(on_task["phase"], "Briefing");
    assert_eq!(on_task["squad"], "Squad T");
    let (_, tasks) = e.bi("/v1.1/tasks", &[("workspaceId", &other_s)]).await;
    assert_eq!(
        tasks["data"][0]["actualTime"], 105,
        "tracked time is actual time"
    );

    for (name, value) in [
        ("createdFrom", "ontem"),
        ("createdTo", "2024-13-01"),
        ("squadId", "x"),
    ] {
        let (s, bad) = e.bi("/v1.0/time-trackings", &[(name, value)]).await;
        assert_bad_request(s, &bad, name);
    }
    page_size(&e, 50);
    let (_, small) = e.bi("/v1.0/time-trackings", &[("page", "3")]).await;
    assert_eq!(small["paging"]["totalPages"], 3);
    assert_eq!(small["data"].as_array().unwrap().len(), 31);
    e.sb.shutdown().await.unwrap();
}

#[tokio::test]
async fn bi_members_carry_profiles_and_insights_are_an_empty_list() {
    let e = env().await;
    let c = e.co.company_id;
    let guest =
        e.sb.create_user(
            c,
            NewUser {
                email: "cliente@fora.example".into(),
                profile: Profile::Guest,
                ..NewUser::default()
            },
        )
        .unwrap();
    let (s, members) = e.bi("/v1.0/members", &[]).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(members["paging"]["totalCollectionSize"], 3);
    let rows = members["data"].as_array().unwrap();
    let by_email = |email: &str| {
        rows.iter()
            .find(|r| r["email"] == email)
            .unwrap_or_else(|| panic!("{email} in {members}"))
    };
    let admin = by_email(&e.co.admin.email);
    assert_eq!(admin["id"], e.co.admin.id.to_string());
    assert_eq!(admin["userName"], "Ana Admin");
    assert_eq!(admin["profile"], "Owner");
    assert_eq!(
        admin["workspaces"],
        json!([{ "id": e.co.workspace_id, "name": "Cliente Demo" }])
    );
    assert_eq!(by_email(&e.co.editor.email)["profile"], "Editor");
    let g = by_email("cliente@fora.example");
    assert_eq!(g["profile"], "Guest");
    assert_eq!(g["id"], guest.to_string());
    assert_eq!(g["workspaces"], json!([]));
    page_size(&e, 2);
    let (_, p2) = e.bi("/v1.0/members", &[("page", "2")]).await;
    assert_eq!(p2["data"].as_array().unwrap().len(), 1);
    assert_eq!(p2["paging"]["totalPages"], 2);

    let (s, insights) = e.bi("/v1.0/insights", &[("page", "3")]).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        insights,
        json!({
            "error": null,
            "data": [],
            "paging": { "currentPage": { "size": 2, "number": 3 }, "totalCollectionSize": 0, "totalPages": 0 },
        })
    );
    let (s, bad) = e.bi("/v1.0/insights", &[("page", "x")]).await;
    assert_bad_request(s, &bad, "page");
    e.sb.shutdown().await.unwrap();
}

// ----- surface B: notifications ---------------------------------------------------------------

impl Env {
    async fn notifications(&self, path: &str, email: &str) -> (StatusCode, Value) {
        let mut q = self.auth();
        q.push(("UserEmail", email.to_owned()));
        self.get(path, &q).await
    }

    /// `(notificationType, taskId or ticketId)` of `email`'s current notifications.
    async fn notified(&self, email: &str) -> Vec<(i64, i64)> {
        let (s, body) = self
            .notifications("/n8n/polling/notifications", email)
            .await;
        assert_eq!(s, StatusCode::OK, "{body}");
        body.as_array()
            .expect("a bare array")
            .iter()
            .map(|n| {
                let about = n["taskId"].as_i64().or(n["ticketId"].as_i64());
                (
                    n["notificationType"].as_i64().expect("a numeric type"),
                    about.expect("about a task or a ticket"),
                )
            })
            .collect()
    }
}

#[tokio::test]
async fn notifications_tell_each_person_about_their_work_for_15_minutes() {
    let e = env().await;
    let c = e.co.company_id;
    let (admin, editor) = (e.co.admin.email.clone(), e.co.editor.email.clone());
    let (_, created) = e.post("/n8n/tasks", &e.task_body("Post")).await;
    let task = created["TaskId"].as_i64().unwrap();

    // The editor executes the first phase; the owner the other two (executor chain).
    let (s, list) = e.notifications("/n8n/polling/notifications", &editor).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    let n = &list[0];
    assert_eq!(n["notificationType"], 1);
    assert_eq!(n["taskId"], task);
    assert_eq!(n["userEmail"], editor.as_str());
    assert_eq!(n["workspaceId"], e.co.workspace_id);
    assert_eq!(n["workspace"], "Cliente Demo");
    assert_eq!(n["createdBy"], "Ana Admin");
    assert_eq!(n["link"], format!("https://app.ekyte.com/#/tasks/{task}"));
    assert!(n["message"].as_str().unwrap().contains("Post"));
    assert_zone_less(&n["creationDate"]);
    let (_, zapier) = e.notifications("/zapier/notifications", &editor).await;
    assert_eq!(zapier, list, "both spellings serve the same list");
    let mut q = e.auth();
    q.push(("useremail", editor.to_uppercase()));
    let (_, loose) = e.get("/n8n/polling/notifications", &q).await;
    assert_eq!(
        loose, list,
        "parameter name and e-mail match case-insensitively"
    );

    // The actor hears of their own creation unless the switch says eKyte skips it.
    assert_eq!(e.notified(&admin).await, [(1, task)]);
    e.sb.update_settings(SettingsPatch {
        notify_actor: Some(false),
        ..SettingsPatch::default()
    });
    assert!(e.notified(&admin).await.is_empty());
    assert_eq!(e.notified(&editor).await, [(1, task)]);
    e.sb.update_settings(SettingsPatch {
        notify_actor: Some(true),
        ..SettingsPatch::default()
    });

    // A comment through MCP, a phase move in the web app, a ticket through Zapier.
    e.tool(
        "create_task_comment",
        json!({ "taskId": task, "description": "<div>Revisar</div>" }),
    )
    .await;
    assert_eq!(e.notified(&editor).await, [(1, task), (2, task)]);
    e.sb.move_task_phase(c, task, e.co.phase_ids[1], None)
        .unwrap();
    let (_, t) = e
        .post(
            "/zapier/tickets",
            &json!({ "Subject": "Ajuda", "WorkspaceId": e.co.workspace_id,
                     "RequesterEmail": editor }),
        )
        .await;
    let ticket = t["TicketId"].as_i64().unwrap();
    assert_eq!(
        e.notified(&admin).await,
        [(1, task), (3, task), (4, ticket)]
    );
    assert_eq!(
        e.notified(&editor).await,
        [(1, task), (2, task)],
        "one person's list holds nobody else's"
    );

    // The window: 14 minutes on, still there; 16 on, gone from the poll, kept in the store.
    e.sb.advance_clock(Duration::from_secs(14 * 60));
    assert_eq!(e.notified(&editor).await.len(), 2);
    e.sb.advance_clock(Duration::from_secs(2 * 60));
    assert!(e.notified(&editor).await.is_empty());
    assert!(e.notified(&admin).await.is_empty());
    let kept: Vec<NotificationKind> =
        e.sb.notifications(c, e.co.editor.id)
            .unwrap()
            .iter()
            .map(|n| n.kind)
            .collect();
    assert_eq!(
        kept,
        [NotificationKind::TaskCreated, NotificationKind::TaskComment]
    );

    // Seeded through the control API: a fresh one shows, a backdated one does not.
    let now = e.sb.now();
    let seed = json!([
        { "user_id": e.co.editor.id, "kind": "task_assigned", "task_id": task,
          "title": "Lembrete", "message": "Olhe a tarefa" },
        { "user_id": e.co.editor.id, "kind": "task_comment", "task_id": task,
          "created_at": now - chrono::Duration::minutes(20) },
    ]);
    let r = e
        .http
        .post(e.url(&format!("/_control/companies/{c}/notifications")))
        .json(&seed)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let (_, list) = e.notifications("/n8n/polling/notifications", &editor).await;
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["title"], "Lembrete");
    assert_eq!(
        list[0]["workspaceId"], e.co.workspace_id,
        "taken from the task"
    );
    let all: Value = e
        .http
        .get(e.url(&format!(
            "/_control/companies/{c}/users/{}/notifications",
            e.co.editor.id
        )))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(all.as_array().unwrap().len(), 4);
    let r = e
        .http
        .post(e.url(&format!("/_control/companies/{c}/notifications")))
        .json(&json!({ "user_id": uuid::Uuid::new_v4(), "kind": "task_created" }))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::BAD_REQUEST,
        "only members are notified"
    );
    e.sb.shutdown().await.unwrap();
}

#[tokio::test]
async fn notifications_refuse_a_missing_or_foreign_user_like_the_writes() {
    let e = env().await;
    let other = e.sb.create_company(NewCompany::default()).unwrap();
    e.sb.create_user(
        other.id,
        NewUser {
            email: "stranger@elsewhere.example".into(),
            ..NewUser::default()
        },
    )
    .unwrap();
    // What a write answers for the same UserEmail (none given: the body has none either).
    let write = |email: Option<&str>| {
        let mut q = e.auth();
        if let Some(m) = email {
            q.push(("UserEmail", m.to_owned()));
        }
        let req = e
            .http
            .post(e.url("/n8n/tasks"))
            .query(&q)
            .json(&e.task_body("x"));
        async move {
            let r = req.send().await.unwrap();
            (r.status(), r.json::<Value>().await.unwrap())
        }
    };
    for (email, status, id) in [
        (None, StatusCode::BAD_REQUEST, 10),
        (Some("nobody@nowhere.example"), StatusCode::NOT_FOUND, 100),
        (
            Some("stranger@elsewhere.example"),
            StatusCode::BAD_REQUEST,
            200,
        ),
    ] {
        let written = write(email).await;
        for path in ["/n8n/polling/notifications", "/zapier/notifications"] {
            let mut q = e.auth();
            if let Some(m) = email {
                q.push(("UserEmail", m.to_owned()));
            }
            let (s, body) = e.get(path, &q).await;
            assert_eq!(s, status, "{path} {email:?}: {body}");
            assert_eq!(body["Id"], id, "{path} {email:?}");
            let keys: Vec<&String> = body.as_object().unwrap().keys().collect();
            assert_eq!(keys, ["Id", "Text"], "{path} {email:?}");
            assert_eq!((s, body), written, "{path} answers as the write does");
        }
    }
    // A blank UserEmail is an absent one.
    let mut q = e.auth();
    q.push(("UserEmail", "  ".to_owned()));
    let (s, body) = e.get("/zapier/notifications", &q).await;
    assert_eq!(
        (s, body["Id"].as_i64()),
        (StatusCode::BAD_REQUEST, Some(10))
    );
    assert!(e.sb.dump(e.co.company_id).unwrap().tasks.is_empty());
    e.sb.shutdown().await.unwrap();
}

// ----- the catalogue ---------------------------------------------------------------------------

/// `a/{b, c}/d` → `a/b/d`, `a/c/d` (one brace group, as the README writes them).
fn expand(path: &str) -> Vec<String> {
    match (path.find('{'), path.find('}')) {
        (Some(open), Some(close)) if open < close => path[open + 1..close]
            .split(',')
            .map(|item| format!("{}{}{}", &path[..open], item.trim(), &path[close + 1..]))
            .collect(),
        _ => vec![path.to_owned()],
    }
}

/// The `GET` paths a row of the README's routes table lists: code spans after a `GET ` span,
/// up to the next `POST ` span.
fn readme_gets(surface: &str) -> BTreeSet<String> {
    let readme = include_str!("../../../src/ekyte/README.md");
    let row = readme
        .lines()
        .find(|l| l.starts_with(&format!("| {surface} |")))
        .unwrap_or_else(|| panic!("a routes row for surface {surface}"));
    let mut gets = BTreeSet::new();
    let mut in_get = false;
    for span in row.split('`').skip(1).step_by(2) {
        let path = if let Some(rest) = span.strip_prefix("GET ") {
            in_get = true;
            rest
        } else if span.starts_with("POST ") {
            in_get = false;
            continue;
        } else {
            span
        };
        if in_get && path.starts_with('/') && !path.contains("...") {
            gets.extend(expand(path));
        }
    }
    gets
}

#[tokio::test]
async fn readme_routes_table_is_what_is_served() {
    let bi: BTreeSet<String> = BI_LISTS.iter().map(|p| (*p).to_owned()).collect();
    assert_eq!(readme_gets("A"), bi, "README surface A row vs BI_LISTS");
    let polling: BTreeSet<String> = POLLING_READS.iter().map(|p| (*p).to_owned()).collect();
    assert_eq!(
        readme_gets("B"),
        polling,
        "README surface B row vs POLLING_READS"
    );

    let e = env().await;
    for path in BI_LISTS {
        let (s, body) = e.bi(path, &[]).await;
        assert_eq!(s, StatusCode::OK, "{path}: {body}");
        assert!(
            body["data"].is_array() && body["paging"].is_object(),
            "{path}"
        );
    }
    let mut q = e.auth();
    q.push(("UserEmail", e.co.editor.email.clone()));
    for path in POLLING_READS {
        for path in [path.to_owned(), zapier_spelling(path)] {
            let (s, body) = e.get(&path, &q).await;
            assert_eq!(s, StatusCode::OK, "{path}: {body}");
            assert!(
                body.is_array() || path.ends_with("/auth"),
                "{path} is a bare array: {body}"
            );
        }
    }
    let unmatched: u64 =
        e.sb.counters()
            .snapshot()
            .routes
            .iter()
            .filter(|(route, _)| route.contains("<unmatched>"))
            .map(|(_, by_status)| by_status.values().sum::<u64>())
            .sum();
    assert_eq!(unmatched, 0, "every listed route is a route");
    e.sb.shutdown().await.unwrap();
}
