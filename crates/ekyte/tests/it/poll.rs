//! Change polling against the simulator, with in-memory link and run stores updated the way
//! the engine updates them after handling a change.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use domain::{Contact, EntityKind, Fingerprint, Record, Side, TaskStatus, Tenant};
use ekyte::EkyteAdapter;
use ports::ekyte::{EkyteChange, EkyteChangeSource, PollReport};
use ports::store::{BaseRecord, LinkState, LinkStore, LinkUpdate, RunKind, RunStatus, RunStore};
use sandbox::ekyte::{NewTask, NewWorkspace};

use crate::support::{Env, MemLinks, MemRuns, fast_config};

/// The eKyte-side fingerprints, computed here from the domain as the port defines them (not
/// through the adapter's helpers), so the test checks the adapter against the definition.
fn ws_fp(tenant: &Tenant, name: &str) -> Fingerprint {
    let c = Contact {
        name: Some(name.to_owned()),
        ..Contact::default()
    };
    Fingerprint::of(
        &c.normalised(&tenant.settings.normalise_ctx())
            .project(Side::Ekyte),
    )
}

fn task_fp(tenant: &Tenant, t: &domain::Task) -> Fingerprint {
    Fingerprint::of(
        &t.normalised(&tenant.settings.normalise_ctx())
            .project(Side::Ekyte),
    )
}

fn update(ekyte_id: String, parent: Option<String>, fp: Option<Fingerprint>) -> LinkUpdate {
    LinkUpdate {
        ghl_id: Some(format!("ghl-{ekyte_id}")),
        ekyte_id: Some(ekyte_id),
        ghl_parent: None,
        ekyte_parent: parent,
        state: LinkState::Linked,
        base: BaseRecord::None,
        ghl_fp: None,
        ekyte_fp: fp,
    }
}

/// What the engine does to the link store once a change is handled.
async fn handle(links: &MemLinks, tenant: &Tenant, change: &EkyteChange) {
    let t = &tenant.id;
    match change {
        EkyteChange::WorkspaceCreated { workspace } => {
            let fp = ws_fp(tenant, &workspace.name);
            links
                .insert_linked(
                    t,
                    EntityKind::Contact,
                    &update(workspace.id.to_string(), None, Some(fp)),
                )
                .await
                .unwrap();
        }
        EkyteChange::WorkspaceRenamed { workspace } => {
            let l = links
                .by_ekyte(t, EntityKind::Contact, &workspace.id.to_string())
                .await
                .unwrap()
                .unwrap();
            let mut u = update(
                workspace.id.to_string(),
                None,
                Some(ws_fp(tenant, &workspace.name)),
            );
            u.state = l.state;
            links.complete(l.id, l.version, &u).await.unwrap();
        }
        EkyteChange::WorkspaceDeactivated { workspace } => {
            let l = links
                .by_ekyte(t, EntityKind::Contact, &workspace.id.to_string())
                .await
                .unwrap()
                .unwrap();
            let mut u = update(workspace.id.to_string(), None, l.ekyte_fp);
            u.state = LinkState::Deleted;
            links.complete(l.id, l.version, &u).await.unwrap();
        }
        EkyteChange::TaskCreated { task } => {
            links
                .insert_linked(
                    t,
                    EntityKind::Task,
                    &update(
                        task.id.to_string(),
                        Some(task.workspace.to_string()),
                        Some(task_fp(tenant, &task.task)),
                    ),
                )
                .await
                .unwrap();
        }
        EkyteChange::TaskChanged { task } => {
            let l = links
                .by_ekyte(t, EntityKind::Task, &task.id.to_string())
                .await
                .unwrap()
                .unwrap();
            let u = update(
                task.id.to_string(),
                l.ekyte_parent.clone(),
                Some(task_fp(tenant, &task.task)),
            );
            links.complete(l.id, l.version, &u).await.unwrap();
        }
        EkyteChange::CommentAdded { comment, .. } => {
            links
                .insert_linked(
                    t,
                    EntityKind::Comment,
                    &update(comment.id.to_string(), Some(comment.task.to_string()), None),
                )
                .await
                .unwrap();
        }
    }
}

struct Poll {
    env: Env,
    links: Arc<MemLinks>,
    runs: Arc<MemRuns>,
    poller: ekyte::EkytePoller,
}

impl Poll {
    async fn start(max_calls: Option<u32>) -> Self {
        Self::start_with(|config| {
            if let Some(m) = max_calls {
                config.poll.max_calls = m;
            }
        })
        .await
    }

    async fn start_with(adjust: impl FnOnce(&mut ekyte::EkyteConfig)) -> Self {
        let env = Env::start(false).await;
        let mut config = fast_config(&env.sb.base_url());
        adjust(&mut config);
        let adapter = EkyteAdapter::new(config, env.creds.clone()).unwrap();
        let links = Arc::new(MemLinks::default());
        let runs = Arc::new(MemRuns::default());
        let poller = adapter.poller(links.clone(), runs.clone());
        Self {
            env,
            links,
            runs,
            poller,
        }
    }

    fn tenant(&self) -> &Tenant {
        &self.env.scope.tenant
    }

    /// Poll, then handle every change as the engine would.
    async fn poll_and_handle(&self) -> PollReport {
        let report = self.poller.poll(&self.env.scope).await.unwrap();
        for c in &report.changes {
            handle(&self.links, self.tenant(), c).await;
        }
        report
    }

    /// Link a workspace as if the engine had created it from a GHL contact.
    async fn link_workspace(&self, id: i64, name: &str) {
        let fp = ws_fp(self.tenant(), name);
        self.links
            .insert_linked(
                &self.tenant().id,
                EntityKind::Contact,
                &update(id.to_string(), None, Some(fp)),
            )
            .await
            .unwrap();
    }
}

fn keys(report: &PollReport) -> BTreeSet<String> {
    report.changes.iter().map(EkyteChange::dedupe_key).collect()
}

#[tokio::test]
async fn a_poll_yields_exactly_what_changed_since_the_last_one() {
    let p = Poll::start(None).await;
    let (sb, c) = (&p.env.sb, p.env.company());
    let w1 = p.env.co.workspace_id;
    let tt = p.env.co.task_type_id;
    p.link_workspace(w1, "Cliente Demo").await;
    let w2 = sb
        .create_workspace(
            c,
            NewWorkspace {
                name: "Feito no eKyte".into(),
                ..Default::default()
            },
        )
        .unwrap();
    let mut t1 = NewTask::new(w1, tt, "Briefing");
    t1.current_due_date = Some(Utc.with_ymd_and_hms(2026, 2, 1, 13, 0, 0).unwrap());
    t1.description = "<div>Escopo</div>".into();
    let t1 = sb.create_task(c, t1).unwrap();
    let t2 = sb.create_task(c, NewTask::new(w1, tt, "Roteiro")).unwrap();
    let c1 = sb
        .add_comment(c, t1, Some(p.env.co.editor.id), "<div>Primeiro</div>")
        .unwrap();

    // First poll: what exists without a link.
    let first = p.poll_and_handle().await;
    assert_eq!(
        keys(&first),
        BTreeSet::from([
            format!("ws-created:{w2}"),
            format!("task-created:{t1}"),
            format!("task-created:{t2}"),
            format!("comment:{c1}"),
        ])
    );
    let created = first
        .changes
        .iter()
        .find_map(|ch| match ch {
            EkyteChange::TaskCreated { task } if task.id.get() == t1 as u64 => Some(task.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(created.task.body.as_deref(), Some("Escopo"));
    assert_eq!(
        created.task.due,
        Some(Utc.with_ymd_and_hms(2026, 2, 1, 13, 0, 0).unwrap())
    );
    assert_eq!(first.workspaces_seen, 2);
    assert_eq!(first.tasks_seen, 2);
    // One workspace listing plus one task listing for the one linked workspace.
    assert_eq!(first.calls, 2);

    // The run store holds a completed poll with its counts.
    let runs = p.runs.all();
    assert_eq!(runs.len(), 1);
    assert_eq!(
        (runs[0].kind, runs[0].status),
        (RunKind::Poll, RunStatus::Completed)
    );
    assert_eq!(runs[0].counts.api_calls, 2);
    assert_eq!(runs[0].counts.enqueued, 4);
    assert_eq!(runs[0].cursor, None);
    assert!(p.runs.checkpoints.lock().unwrap().len() >= 2);

    // Nothing changed: nothing to report (w2 is linked now, so its tasks are listed too).
    let quiet = p.poll_and_handle().await;
    assert!(quiet.changes.is_empty(), "{:?}", quiet.changes);
    assert_eq!(quiet.calls, 3);

    // Three changes a person makes in eKyte.
    sb.rename_workspace(c, w1, "Cliente Demo Ltda").unwrap();
    sb.complete_task(c, t1).unwrap();
    let c2 = sb
        .add_comment(c, t2, Some(p.env.co.editor.id), "<div>Revisar amanhã</div>")
        .unwrap();
    let next = p.poll_and_handle().await;
    assert_eq!(
        keys(&next),
        BTreeSet::from([
            format!("ws-renamed:{w1}:Cliente Demo Ltda"),
            next.changes
                .iter()
                .find(|ch| matches!(ch, EkyteChange::TaskChanged { .. }))
                .map(EkyteChange::dedupe_key)
                .unwrap(),
            format!("comment:{c2}"),
        ])
    );
    assert_eq!(next.changes.len(), 3);
    for ch in &next.changes {
        match ch {
            EkyteChange::TaskChanged { task } => {
                assert_eq!(task.id.get(), t1 as u64);
                assert_eq!(task.task.status, TaskStatus::Completed);
            }
            EkyteChange::CommentAdded { comment, workspace } => {
                assert_eq!(comment.task.get(), t2 as u64);
                assert_eq!(workspace.get(), w1 as u64);
                assert_eq!(comment.body.as_deref(), Some("Revisar amanhã"));
            }
            EkyteChange::WorkspaceRenamed { workspace } => {
                assert_eq!(workspace.id.get(), w1 as u64)
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    // Handled: the next poll is quiet again.
    let after = p.poll_and_handle().await;
    assert!(after.changes.is_empty(), "{:?}", after.changes);
    assert_eq!(p.runs.all().len(), 4);
    assert!(
        p.runs
            .all()
            .iter()
            .all(|r| r.status == RunStatus::Completed)
    );
}

#[tokio::test]
async fn closed_links_yield_nothing_and_deactivation_is_reported_once_handled() {
    let p = Poll::start(None).await;
    let (sb, c) = (&p.env.sb, p.env.company());
    let w1 = p.env.co.workspace_id;
    p.link_workspace(w1, "Cliente Demo").await;
    let t = sb
        .create_task(c, NewTask::new(w1, p.env.co.task_type_id, "Antiga"))
        .unwrap();
    let first = p.poll_and_handle().await;
    assert_eq!(keys(&first), BTreeSet::from([format!("task-created:{t}")]));

    // Close the task's link (deleted on the GHL side): its changes are no longer reported.
    let l = p
        .links
        .by_ekyte(&p.tenant().id, EntityKind::Task, &t.to_string())
        .await
        .unwrap()
        .unwrap();
    let mut u = update(t.to_string(), l.ekyte_parent.clone(), l.ekyte_fp);
    u.state = LinkState::Deleted;
    p.links.complete(l.id, l.version, &u).await.unwrap();
    sb.cancel_task(c, t).unwrap();
    assert!(p.poll_and_handle().await.changes.is_empty());

    // Deactivating the workspace is reported; once its link is closed, never again.
    sb.deactivate_workspace(c, w1).unwrap();
    let report = p.poll_and_handle().await;
    assert_eq!(
        keys(&report),
        BTreeSet::from([format!("ws-deactivated:{w1}")])
    );
    let quiet = p.poll_and_handle().await;
    assert!(quiet.changes.is_empty(), "{:?}", quiet.changes);
    // A closed workspace's tasks are not listed: one call, the workspace listing.
    assert_eq!(quiet.calls, 1);
}

#[tokio::test]
async fn a_poll_stays_within_its_budget_and_the_next_one_continues() {
    // Budget 3: the workspace listing and two task listings per poll.
    let p = Poll::start(Some(3)).await;
    let (sb, c) = (&p.env.sb, p.env.company());
    let tt = p.env.co.task_type_id;
    let mut tasks = Vec::new();
    let mut workspaces = vec![p.env.co.workspace_id];
    for name in ["B", "C"] {
        workspaces.push(
            sb.create_workspace(
                c,
                NewWorkspace {
                    name: name.into(),
                    ..Default::default()
                },
            )
            .unwrap(),
        );
    }
    for (i, ws) in workspaces.iter().enumerate() {
        let name = if i == 0 {
            "Cliente Demo"
        } else {
            ["B", "C"][i - 1]
        };
        p.link_workspace(*ws, name).await;
        tasks.push(
            sb.create_task(c, NewTask::new(*ws, tt, &format!("T{i}")))
                .unwrap(),
        );
    }

    let first = p.poll_and_handle().await;
    assert!(first.calls <= 3, "{}", first.calls);
    assert_eq!(
        keys(&first),
        BTreeSet::from([
            format!("task-created:{}", tasks[0]),
            format!("task-created:{}", tasks[1])
        ])
    );
    assert_eq!(p.runs.all()[0].cursor, Some(workspaces[1].to_string()));
    assert!(first.more, "the budget ran out before the pass ended");

    // The next poll starts with the workspace the first one did not reach, and ends the pass.
    let second = p.poll_and_handle().await;
    assert!(second.calls <= 3, "{}", second.calls);
    assert_eq!(
        keys(&second),
        BTreeSet::from([format!("task-created:{}", tasks[2])])
    );
    assert!(!second.more, "the pass ended with the last workspace");
    // A new pass starts from the first workspace.
    let t3 = sb
        .create_task(c, NewTask::new(workspaces[0], tt, "T3"))
        .unwrap();
    let third = p.poll_and_handle().await;
    assert_eq!(keys(&third), BTreeSet::from([format!("task-created:{t3}")]));
}

#[tokio::test]
async fn a_poll_that_starts_while_another_runs_leaves_the_work_to_it() {
    for (alive_for, covered) in [(Duration::from_secs(60), true), (Duration::ZERO, false)] {
        let p = Poll::start_with(|c| c.poll.alive_for = alive_for).await;
        let (sb, c) = (&p.env.sb, p.env.company());
        let ws = p.env.co.workspace_id;
        p.link_workspace(ws, "Cliente Demo").await;
        let task = sb
            .create_task(c, NewTask::new(ws, p.env.co.task_type_id, "T"))
            .unwrap();
        // Another worker's poll run, checkpointed just now (or, with `alive_for` zero, one
        // left by a dead worker).
        p.runs
            .start_or_resume(&p.tenant().id, RunKind::Poll, None)
            .await
            .unwrap();
        let report = p.poller.poll(&p.env.scope).await.unwrap();
        if covered {
            assert_eq!(report.calls, 0, "{report:?}");
            assert!(report.changes.is_empty());
            assert!(!report.more);
        } else {
            assert_eq!(
                keys(&report),
                BTreeSet::from([format!("task-created:{task}")])
            );
            assert_eq!(p.runs.all().len(), 1, "the dead worker's run was resumed");
            assert_eq!(p.runs.all()[0].status, RunStatus::Completed);
        }
    }
}

#[tokio::test]
async fn a_failed_poll_is_recorded_as_failed() {
    let p = Poll::start(None).await;
    p.env.creds.set("not-the-key-123456", None);
    let err = p.poller.poll(&p.env.scope).await.unwrap_err();
    assert!(
        matches!(err, ports::ApiError::Unauthorized { .. }),
        "{err:?}"
    );
    let runs = p.runs.all();
    assert_eq!(runs[0].status, RunStatus::Failed);
    assert!(runs[0].error.as_deref().unwrap().contains("unauthorized"));
    assert!(
        !runs[0]
            .error
            .as_deref()
            .unwrap()
            .contains("not-the-key-123456")
    );
}
