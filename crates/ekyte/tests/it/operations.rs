//! Every adapter operation against the simulator, then a counter check that every route the
//! adapter is meant to use was called.

use chrono::{TimeZone, Utc};
use domain::{
    EkyteWorkspaceId, ExternalRef, FieldChange, FieldValue, GhlContactId, LocationId, Task,
    TaskStatus,
};
use ports::ApiError;
use ports::ekyte::{EkyteApi, NoteContent, WorkspaceFound, WorkspaceTarget};
use sandbox::common::{FaultConfig, RouteFault};
use sandbox::ekyte::{DateOnlyMeans, EkyteConfig as SimConfig, Situation, WorkspaceEdit};

use crate::support::{Env, fast_config, seed_company_in};

/// The routes (method + template, as the simulator counts them) the adapter must use.
const ROUTES: &[&str] = &[
    "GET /v1.0/workspaces",
    "GET /v1.2/tasks",
    "GET /v1.0/users",
    "GET /v1.0/task-types",
    "GET /n8n/polling/auth",
    "GET /n8n/polling/boards",
    "POST /n8n/tasks",
    "POST /n8n/workspaces",
    "POST /n8n/boards",
    "POST /n8n/notes",
    "POST /mcp",
];

/// The MCP methods and tools the adapter must use (simulator event counters).
const MCP: &[&str] = &[
    "mcp_method:initialize",
    "mcp_method:notifications/initialized",
    "mcp_tool:get_current_user",
    "mcp_tool:update_task",
    "mcp_tool:create_task_comment",
    "mcp_tool:update_board_note",
    "mcp_tool:update_workspace",
    "mcp_tool:get_detailed_task",
];

fn external(contact: &str) -> ExternalRef {
    ExternalRef::Contact {
        location: LocationId::parse("loc1").unwrap(),
        contact: GhlContactId::parse(contact).unwrap(),
    }
}

fn change(field: &'static str, to: FieldValue) -> FieldChange {
    FieldChange {
        field,
        from: FieldValue::Text(None),
        to,
    }
}

/// Run every operation of the port (and the adapter's extras) with assertions on what eKyte
/// stored and what the adapter read back.
async fn exercise_every_operation(env: &Env) {
    let (a, s, c) = (&env.adapter, &env.scope, env.company());

    let health = a.healthcheck(s).await.unwrap();
    assert!(health.problems.is_empty(), "{:?}", health.problems);
    assert_eq!(health.mcp_identity.unwrap().email, env.co.admin.email);
    let users = a.list_users(s).await.unwrap();
    assert!(
        users
            .iter()
            .any(|u| u.email.as_deref() == Some(env.co.admin.email.as_str()))
    );
    let types = a.list_task_types(s).await.unwrap();
    assert!(
        types
            .iter()
            .any(|t| t.id.get() == env.co.task_type_id as u64 && t.active)
    );

    // Workspaces: create with ExternalId, find it back, read it.
    let ext = external("c1");
    let ws = a.create_workspace(s, "Cliente GHL", &ext).await.unwrap();
    let stored = env.sb.workspace(c, ws.get() as i64).unwrap();
    assert_eq!(stored.external_id.as_deref(), Some("ghl:loc1:c1"));
    // Found by its ExternalId where reads show it, else among the workspaces of its name.
    let shown = env.sb.settings().expose_external_id;
    let found = |f: WorkspaceFound| -> Vec<EkyteWorkspaceId> {
        match f {
            WorkspaceFound::ByExternalId(w) => {
                assert!(shown, "ExternalId is hidden, yet matched");
                w.into_iter().map(|w| w.id).collect()
            }
            WorkspaceFound::Named(named) => {
                assert!(!shown, "ExternalId is shown, yet not used");
                named.into_iter().map(|w| w.id).collect()
            }
        }
    };
    let by_ext = a.find_workspace(s, &ext, "Cliente GHL").await.unwrap();
    assert_eq!(found(by_ext), [ws]);
    let nobody = a
        .find_workspace(s, &external("nobody"), "Nobody")
        .await
        .unwrap();
    assert!(found(nobody).is_empty());
    assert_eq!(
        a.get_workspace(s, ws, None).await.unwrap().name,
        "Cliente GHL"
    );
    assert_eq!(a.list_workspaces(s).await.unwrap().len(), 2);
    assert!(
        a.get_workspace(s, EkyteWorkspaceId::new(999_999_999).unwrap(), Some("x"))
            .await
            .unwrap_err()
            .is_not_found()
    );

    // Tasks: create (automation), read (BI), update and complete (MCP).
    let due = Utc.with_ymd_and_hms(2026, 5, 4, 15, 0, 0).unwrap();
    let task = Task {
        title: Some("Kick-off".into()),
        body: Some("Linha 1\nLinha <2>".into()),
        due: Some(due),
        ..Task::default()
    };
    let tid = a.create_task(s, ws, &task).await.unwrap();
    let stored = env.sb.task(c, tid.get() as i64).unwrap();
    assert_eq!(
        stored.description,
        "<div>Linha 1</div><div>Linha &lt;2&gt;</div>"
    );
    assert_eq!(stored.current_due_date, Some(due));
    let listed = a.list_tasks(s, ws, true).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].task.body.as_deref(), Some("Linha 1\nLinha <2>"));
    assert_eq!(listed[0].task.status, TaskStatus::Open);
    assert_eq!(listed[0].workspace, ws);

    let due2 = Utc.with_ymd_and_hms(2026, 6, 1, 12, 30, 0).unwrap();
    let edits = [
        change("title", FieldValue::Text(Some("Kick-off call".into()))),
        change("body", FieldValue::Text(Some("Agenda".into()))),
        change("due", FieldValue::Time(Some(due2))),
    ];
    let target = crate::support::target_of(&crate::support::some_task(), &edits);
    a.update_task(s, tid, &edits, &target).await.unwrap();
    let stored = env.sb.task(c, tid.get() as i64).unwrap();
    assert_eq!(stored.title, "Kick-off call");
    assert_eq!(stored.description, "<div>Agenda</div>");
    assert_eq!(stored.current_due_date, Some(due2));
    a.set_task_status(s, tid, TaskStatus::Completed)
        .await
        .unwrap();
    assert_eq!(
        env.sb.task(c, tid.get() as i64).unwrap().situation,
        Situation::Completed
    );

    // Comments (MCP) and reading one task back with them.
    let cid = a
        .create_comment(s, tid, "<div>Olá &amp; tchau</div>")
        .await
        .unwrap();
    let got = a.get_task(s, tid).await.unwrap();
    assert_eq!(got.task.status, TaskStatus::Completed);
    assert_eq!(got.task.title.as_deref(), Some("Kick-off call"));
    let comment = got.comments.iter().find(|x| x.id == cid).unwrap();
    assert_eq!(comment.body.as_deref(), Some("Olá & tchau"));
    assert_eq!(
        comment.author.as_deref(),
        Some(env.co.admin.user_name.as_str())
    );

    // Boards and notes.
    let board = a.create_board(s, ws, "GHL").await.unwrap();
    let boards = a.list_boards(s, ws).await.unwrap();
    assert_eq!(boards.len(), 1);
    assert_eq!((boards[0].id, boards[0].title.as_str()), (board, "GHL"));
    let note = a
        .create_note(
            s,
            board,
            &NoteContent {
                title: "Profile".into(),
                html: "<div>v1</div>".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(
        env.sb.note(c, note.get() as i64).unwrap().content,
        "<div>v1</div>"
    );
    a.update_note(
        s,
        note,
        &NoteContent {
            title: "Profile".into(),
            html: "<div>v2</div>".into(),
        },
    )
    .await
    .unwrap();
    assert_eq!(
        env.sb.note(c, note.get() as i64).unwrap().content,
        "<div>v2</div>"
    );

    // Workspace rename and deactivation (MCP).
    let mut target = WorkspaceTarget {
        name: "Cliente Renomeado".into(),
        active: true,
        external: Some(ext.clone()),
    };
    a.update_workspace(s, ws, &target).await.unwrap();
    target.active = false;
    a.update_workspace(s, ws, &target).await.unwrap();
    // The name last seen was the old one: the adapter still finds it.
    let read = a.get_workspace(s, ws, Some("Cliente GHL")).await.unwrap();
    assert_eq!(
        (read.name.as_str(), read.active),
        ("Cliente Renomeado", false)
    );
    // Under `replace` (the default), a field left out would have been cleared.
    let stored = env.sb.workspace(c, ws.get() as i64).unwrap();
    assert_eq!(
        stored.external_id.as_deref(),
        Some(ext.to_string().as_str())
    );
}

#[tokio::test]
async fn every_listed_route_is_called_by_the_operations() {
    let env = Env::start(true).await;
    exercise_every_operation(&env).await;
    let counters = env.sb.counters().snapshot();
    let missing: Vec<&str> = ROUTES
        .iter()
        .copied()
        .filter(|r| {
            let (method, route) = r.split_once(' ').unwrap();
            counters.route_total(method, route) == 0
        })
        .chain(MCP.iter().copied().filter(|e| counters.event(e) == 0))
        .collect();
    assert!(
        missing.is_empty(),
        "never called: {missing:?}\n{counters:#?}"
    );
    // The adapter never sends a zoned date, never reaches a route eKyte does not have, and an
    // MCP session is opened once per tenant.
    assert_eq!(counters.event("zoned_date_input"), 0);
    assert_eq!(counters.route_total("GET", "<unmatched>"), 0);
    assert_eq!(counters.route_total("POST", "<unmatched>"), 0);
    assert_eq!(counters.event("mcp_method:initialize"), 1);
    assert_eq!(counters.event("mcp_tool:get_current_user"), 1);
}

#[tokio::test]
async fn lists_follow_paging_to_the_last_page() {
    let env = Env::start(false).await;
    let c = env.company();
    env.sb.update_settings(sandbox::ekyte::SettingsPatch {
        page_size: Some(2),
        ..Default::default()
    });
    for i in 0..4 {
        env.sb
            .create_workspace(
                c,
                sandbox::ekyte::NewWorkspace {
                    name: format!("W{i}"),
                    ..Default::default()
                },
            )
            .unwrap();
    }
    for i in 0..5 {
        env.sb
            .create_task(
                c,
                sandbox::ekyte::NewTask::new(
                    env.co.workspace_id,
                    env.co.task_type_id,
                    &format!("T{i}"),
                ),
            )
            .unwrap();
    }
    env.sb.counters().reset();
    let all = env.adapter.list_workspaces(&env.scope).await.unwrap();
    assert_eq!(all.len(), 5);
    let ws = EkyteWorkspaceId::new(env.co.workspace_id as u64).unwrap();
    let tasks = env.adapter.list_tasks(&env.scope, ws, false).await.unwrap();
    assert_eq!(tasks.len(), 5);
    let snap = env.sb.counters().snapshot();
    assert_eq!(snap.route_total("GET", "/v1.0/workspaces"), 3);
    assert_eq!(snap.route_total("GET", "/v1.2/tasks"), 3);
}

#[tokio::test]
async fn the_zapier_routes_create_too() {
    let env = Env::start(false).await;
    let mut config = fast_config(&env.sb.base_url());
    config.automation = ekyte::AutomationApi::Zapier;
    let adapter = ekyte::EkyteAdapter::new(config, env.creds.clone()).unwrap();
    let ws = adapter
        .create_workspace(&env.scope, "Via Zapier", &external("z1"))
        .await
        .unwrap();
    let board = adapter.create_board(&env.scope, ws, "GHL").await.unwrap();
    assert_eq!(
        adapter.list_boards(&env.scope, ws).await.unwrap()[0].id,
        board
    );
    let snap = env.sb.counters().snapshot();
    assert_eq!(snap.route_total("POST", "/zapier/workspaces"), 1);
    assert_eq!(snap.route_total("GET", "/zapier/boards"), 1);
    assert_eq!(snap.route_total("POST", "/n8n/workspaces"), 0);
}

#[tokio::test]
async fn automation_refusals_keep_ekytes_text() {
    let env = Env::start(false).await;
    let mut other = env.scope.tenant.as_ref().clone();
    other.settings.ekyte.user_email = Some("stranger@nowhere.example".into());
    let scope = crate::support::scope_of(other);
    let err = env
        .adapter
        .create_workspace(&scope, "X", &external("c9"))
        .await
        .unwrap_err();
    match err {
        ApiError::Invalid { messages } => {
            assert_eq!(messages.len(), 1);
            assert!(!messages[0].is_empty());
            assert!(!messages[0].contains(&env.co.api_key));
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
    // A wrong company id for the key is HTTP 401 on the automation API.
    let mut wrong = env.scope.tenant.as_ref().clone();
    wrong.ekyte_company_id = domain::EkyteCompanyId::new(1).unwrap();
    let err = env
        .adapter
        .create_board(
            &crate::support::scope_of(wrong),
            EkyteWorkspaceId::new(env.co.workspace_id as u64).unwrap(),
            "GHL",
        )
        .await
        .unwrap_err();
    assert!(matches!(err, ApiError::Unauthorized { .. }), "{err:?}");
}

#[tokio::test]
async fn missing_mapping_is_invalid_before_any_request() {
    let env = Env::start(false).await;
    let mut t = env.scope.tenant.as_ref().clone();
    t.settings.ekyte.task_type_id = None;
    let scope = crate::support::scope_of(t);
    let ws = EkyteWorkspaceId::new(env.co.workspace_id as u64).unwrap();
    let task = Task {
        title: Some("x".into()),
        due: Some(Utc::now()),
        ..Task::default()
    };
    let err = env
        .adapter
        .create_task(&scope, ws, &task)
        .await
        .unwrap_err();
    assert!(matches!(err, ApiError::Invalid { .. }), "{err:?}");
    let no_due = Task {
        title: Some("x".into()),
        ..Task::default()
    };
    let err = env
        .adapter
        .create_task(&env.scope, ws, &no_due)
        .await
        .unwrap_err();
    assert!(matches!(err, ApiError::Invalid { .. }), "{err:?}");
    assert_eq!(env.requests(), 0);
}

#[tokio::test]
async fn unknown_ids_are_not_found() {
    let env = Env::start(true).await;
    let (a, s) = (&env.adapter, &env.scope);
    let task = domain::EkyteTaskId::new(424_242).unwrap();
    assert!(a.get_task(s, task).await.unwrap_err().is_not_found());
    let err = a
        .update_task(
            s,
            task,
            &[change("title", FieldValue::Text(Some("x".into())))],
            &crate::support::some_task(),
        )
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
    let err = a
        .set_task_status(s, task, TaskStatus::Cancelled)
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
    let err = a.create_comment(s, task, "<div>x</div>").await.unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
    let ws = EkyteWorkspaceId::new(77).unwrap();
    let err = a
        .update_workspace(
            s,
            ws,
            &WorkspaceTarget {
                name: "x".into(),
                active: true,
                external: None,
            },
        )
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
    let note = domain::EkyteNoteId::new(77).unwrap();
    let err = a
        .update_note(
            s,
            note,
            &NoteContent {
                title: "t".into(),
                html: "<div>x</div>".into(),
            },
        )
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
}

/// eKyte's reads do not show `ExternalId` (the simulator's default, API.md §3.3): the lookup
/// answers with the active workspaces of the name asked for, and a create whose answer was
/// lost reports its outcome unknown (the caller's links decide), never a second workspace.
#[tokio::test]
async fn hidden_external_ids_make_the_lookup_go_by_name() {
    for with_mcp in [false, true] {
        let env = Env::start_with(
            SimConfig {
                expose_external_id: false,
                ..SimConfig::default()
            },
            with_mcp,
        )
        .await;
        let (a, s, c) = (&env.adapter, &env.scope, env.company());
        let first = a
            .create_workspace(s, "Ana Souza", &external("c1"))
            .await
            .unwrap();
        let other = a
            .create_workspace(s, "Ana Souza Filha", &external("c2"))
            .await
            .unwrap();
        let found = a
            .find_workspace(s, &external("c1"), "Ana Souza")
            .await
            .unwrap();
        let WorkspaceFound::Named(named) = found else {
            panic!("ExternalId is hidden, yet found by it: {found:?}");
        };
        let ids: Vec<_> = named.iter().map(|w| w.id).collect();
        assert_eq!(ids, [first], "exact names only, not {other}");

        // The same create again, its POST failing before eKyte answers: the outcome is
        // unknown to the adapter, which neither guesses nor posts a second time.
        let mut faults = FaultConfig::default();
        faults.routes.insert(
            "POST /n8n/workspaces".into(),
            RouteFault {
                error_rate: Some(1.0),
                ..RouteFault::default()
            },
        );
        env.sb.faults().set(faults);
        let err = a
            .create_workspace(s, "Ana Souza", &external("c1"))
            .await
            .unwrap_err();
        assert!(
            matches!(
                ports::Classify::disposition(&err),
                ports::Disposition::Retry { .. }
            ),
            "{err:?}"
        );
        let posts = env
            .sb
            .counters()
            .snapshot()
            .route_total("POST", "/n8n/workspaces");
        assert_eq!(
            posts, 3,
            "one POST each for the two creates, one for the failed one"
        );
        let named = env
            .sb
            .dump(c)
            .unwrap()
            .workspaces
            .iter()
            .filter(|w| w.name == "Ana Souza")
            .count();
        assert_eq!(named, 1);
    }
}

#[tokio::test]
async fn get_task_scans_the_bi_api_without_a_token() {
    let env = Env::start(false).await;
    let c = env.company();
    let other_ws = env
        .sb
        .create_workspace(
            c,
            sandbox::ekyte::NewWorkspace {
                name: "Outro".into(),
                ..Default::default()
            },
        )
        .unwrap();
    let id = env
        .sb
        .create_task(
            c,
            sandbox::ekyte::NewTask::new(other_ws, env.co.task_type_id, "Achar"),
        )
        .unwrap();
    env.sb
        .edit_workspace(c, other_ws, WorkspaceEdit::default())
        .unwrap();
    let got = env
        .adapter
        .get_task(&env.scope, domain::EkyteTaskId::new(id as u64).unwrap())
        .await
        .unwrap();
    assert_eq!(got.task.title.as_deref(), Some("Achar"));
    assert_eq!(got.workspace.get(), other_ws as u64);
    assert_eq!(env.sb.counters().snapshot().route_total("POST", "/mcp"), 0);
}

#[tokio::test]
async fn a_company_in_another_zone_seeds() {
    // Guards the helper the time-zone tests rely on.
    let sb = sandbox::ekyte::EkyteSandbox::start(SimConfig::default())
        .await
        .unwrap();
    let co = seed_company_in(&sb, "Asia/Kolkata");
    let env = Env::over(sb, co, true);
    let health = env.adapter.healthcheck(&env.scope).await.unwrap();
    assert!(health.problems.is_empty(), "{:?}", health.problems);
}

/// With the name it last saw, one filtered page finds a workspace among hundreds; a wrong or
/// missing name falls back to the whole listing.
#[tokio::test]
async fn a_name_hint_spares_the_scan_of_every_workspace() {
    let env = Env::start(false).await;
    let (a, s, c) = (&env.adapter, &env.scope, env.company());
    for i in 0..250 {
        env.sb
            .create_workspace(
                c,
                sandbox::ekyte::NewWorkspace {
                    name: format!("Outro cliente {i}"),
                    active: true,
                    ..sandbox::ekyte::NewWorkspace::default()
                },
            )
            .unwrap();
    }
    let ws = a
        .create_workspace(s, "Padaria Central", &external("hint"))
        .await
        .unwrap();
    let sb = &env.sb;
    let listing_calls = |hint: Option<&'static str>| async move {
        sb.counters().reset();
        let w = a.get_workspace(s, ws, hint).await.unwrap();
        assert_eq!((w.id, w.name.as_str()), (ws, "Padaria Central"));
        sb.counters()
            .snapshot()
            .route_total("GET", "/v1.0/workspaces")
    };
    let whole = listing_calls(None).await;
    assert!(whole >= 3, "252 workspaces span 3 pages of 100: {whole}");
    assert_eq!(listing_calls(Some("Padaria Central")).await, 1);
    assert_eq!(listing_calls(Some("Nome antigo")).await, 1 + whole);
}

/// A task due late in the day, created once; its second create fails before eKyte answers
/// (as after a timeout), so the adapter looks for the first. The simulator reads a date-only
/// `dueTo` as midnight (its default, the ASP.NET reading): a lookup bounded by the bare day
/// would miss the 18:00 task and create it again.
#[tokio::test]
async fn a_task_due_late_in_the_day_is_found_after_an_unknown_outcome() {
    for means in [DateOnlyMeans::Midnight, DateOnlyMeans::EndOfDay] {
        let env = Env::start_with(
            SimConfig {
                due_to_date_means: means,
                ..SimConfig::default()
            },
            false,
        )
        .await;
        let ws = EkyteWorkspaceId::new(env.co.workspace_id as u64).unwrap();
        let task = Task {
            title: Some("Evening review".into()),
            // 18:00 in São Paulo.
            due: Some(Utc.with_ymd_and_hms(2026, 4, 10, 21, 0, 0).unwrap()),
            ..Task::default()
        };
        let first = env
            .adapter
            .create_task(&env.scope, ws, &task)
            .await
            .unwrap();
        let mut faults = FaultConfig::default();
        faults.routes.insert(
            "POST /n8n/tasks".into(),
            RouteFault {
                error_rate: Some(1.0),
                ..RouteFault::default()
            },
        );
        env.sb.faults().set(faults);
        let again = env
            .adapter
            .create_task(&env.scope, ws, &task)
            .await
            .unwrap_or_else(|e| panic!("{means:?}: the lookup missed the task: {e:?}"));
        assert_eq!(again, first, "{means:?}");
        let tasks = env.sb.dump(env.company()).unwrap().tasks;
        let named = tasks.iter().filter(|t| t.title == "Evening review").count();
        assert_eq!(named, 1, "{means:?}: created twice");
    }
}

/// A change of the due date alone leaves the task's title and description as they were,
/// whether MCP `update_task` patches the fields it is given or replaces them all: the
/// adapter sends every field it owns, from the task as it should be.
#[tokio::test]
async fn a_due_date_change_keeps_title_and_description_whether_mcp_patches_or_replaces() {
    for mcp_update in [
        sandbox::ekyte::McpUpdate::Replace,
        sandbox::ekyte::McpUpdate::Patch,
    ] {
        let env = Env::start_with(
            SimConfig {
                mcp_update,
                ..SimConfig::default()
            },
            true,
        )
        .await;
        let (a, s, c) = (&env.adapter, &env.scope, env.company());
        let ws = EkyteWorkspaceId::new(env.co.workspace_id as u64).unwrap();
        let due = Utc.with_ymd_and_hms(2026, 5, 4, 15, 0, 0).unwrap();
        let task = Task {
            title: Some("Kick-off".into()),
            body: Some("Agenda".into()),
            due: Some(due),
            ..Task::default()
        };
        let id = a.create_task(s, ws, &task).await.unwrap();
        let due2 = Utc.with_ymd_and_hms(2026, 5, 6, 15, 0, 0).unwrap();
        let target = Task {
            due: Some(due2),
            ..task.clone()
        };
        a.update_task(
            s,
            id,
            &[change("due", FieldValue::Time(Some(due2)))],
            &target,
        )
        .await
        .unwrap_or_else(|e| panic!("{mcp_update:?}: {e:?}"));
        let stored = env.sb.task(c, id.get() as i64).unwrap();
        assert_eq!(stored.title, "Kick-off", "{mcp_update:?}");
        assert_eq!(stored.description, "<div>Agenda</div>", "{mcp_update:?}");
        assert_eq!(stored.current_due_date, Some(due2), "{mcp_update:?}");
    }
}

/// A status MCP `update_task` did not take is an error, not a write believed done: believed,
/// the next poll would read the old status as a change made in eKyte and undo GHL's.
#[tokio::test]
async fn a_status_mcp_does_not_take_is_an_error_not_a_write_believed_done() {
    let env = Env::start_with(
        SimConfig {
            mcp_update_ignores_situation: true,
            ..SimConfig::default()
        },
        true,
    )
    .await;
    let (a, s, c) = (&env.adapter, &env.scope, env.company());
    let ws = EkyteWorkspaceId::new(env.co.workspace_id as u64).unwrap();
    let task = Task {
        title: Some("Kick-off".into()),
        due: Some(Utc.with_ymd_and_hms(2026, 5, 4, 15, 0, 0).unwrap()),
        ..Task::default()
    };
    let id = a.create_task(s, ws, &task).await.unwrap();
    let err = a
        .set_task_status(s, id, TaskStatus::Completed)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ApiError::Unsupported { operation } if operation.contains("situation")),
        "{err:?}"
    );
    // Through a content update that also moves the status, the same.
    let target = Task {
        status: TaskStatus::Cancelled,
        ..task.clone()
    };
    let err = a
        .update_task(
            s,
            id,
            &[change("status", FieldValue::Status(TaskStatus::Cancelled))],
            &target,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, ApiError::Unsupported { .. }), "{err:?}");
    assert_eq!(
        env.sb.task(c, id.get() as i64).unwrap().situation,
        Situation::Active
    );

    // Taken, it is fine.
    env.sb.update_settings(sandbox::ekyte::SettingsPatch {
        mcp_update_ignores_situation: Some(false),
        ..Default::default()
    });
    a.set_task_status(s, id, TaskStatus::Completed)
        .await
        .unwrap();
    assert_eq!(
        env.sb.task(c, id.get() as i64).unwrap().situation,
        Situation::Completed
    );
}
