//! Records rendered in the shapes eKyte serves (API.md §3.3, §5), in one place so the BI API,
//! the automation polling lists and the MCP tools agree on every field.
//!
//! All dates go out through [`super::dates::format_local`]: zone-less, company time.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde_json::{Value, json};
use uuid::Uuid;

use super::dates::{format_local, format_opt};
use super::model::{
    Board, Comment, CompanyData, FlowPhase, Note, Notification, Project, Task, TaskType, Ticket,
    TimeTracking, Workspace,
};
use super::store::Store;

/// Everything a renderer needs about one company.
#[derive(Clone, Copy)]
pub(crate) struct View<'a> {
    pub store: &'a Store,
    pub data: &'a CompanyData,
    pub tz: Tz,
    pub expose_external_id: bool,
    /// How a date-only upper bound of a filter reads (`EkyteConfig::due_to_date_means`).
    pub date_only: super::dates::DateOnlyMeans,
}

/// The BI envelope with paging (API.md §3.1). `number` is the page asked for, even past the end.
pub(crate) fn envelope(data: Vec<Value>, page: usize, size: usize, total: usize) -> Value {
    json!({
        "error": null,
        "data": data,
        "paging": {
            "currentPage": { "size": size, "number": page },
            "totalCollectionSize": total,
            "totalPages": total.div_ceil(size),
        },
    })
}

/// One page of `items` (1-based), rendered, in the BI envelope.
pub(crate) fn paged<T>(
    items: &[T],
    page: usize,
    size: usize,
    render: impl Fn(&T) -> Value,
) -> Value {
    let start = (page.max(1) - 1).saturating_mul(size);
    let data = items.iter().skip(start).take(size).map(render).collect();
    envelope(data, page.max(1), size, items.len())
}

impl<'a> View<'a> {
    fn date(&self, t: DateTime<Utc>) -> String {
        format_local(t, self.tz)
    }

    fn date_opt(&self, t: Option<DateTime<Utc>>) -> Option<String> {
        format_opt(t, self.tz)
    }

    pub fn user_ref(&self, id: Option<Uuid>) -> Value {
        match id.and_then(|id| self.store.user(id)) {
            Some(u) => json!({ "id": u.id, "userName": u.user_name, "email": u.email }),
            None => Value::Null,
        }
    }

    fn user_name(&self, id: Option<Uuid>) -> Option<String> {
        id.and_then(|id| self.store.user(id))
            .map(|u| u.user_name.clone())
    }

    fn user_email(&self, id: Option<Uuid>) -> Option<String> {
        id.and_then(|id| self.store.user(id))
            .map(|u| u.email.clone())
    }

    fn workspace_name(&self, id: i64) -> Option<&'a str> {
        self.data.workspaces.get(&id).map(|w| w.name.as_str())
    }

    fn squad_of(&self, workspace: i64) -> Option<(i64, &'a str)> {
        let sid = self.data.workspaces.get(&workspace)?.squad_id?;
        self.data.squads.get(&sid).map(|s| (s.id, s.name.as_str()))
    }

    fn phase_name<'t>(&self, task: &'t Task) -> Option<&'t str> {
        let pid = task.phase_id?;
        task.flow
            .iter()
            .find(|f| f.phase_id == pid)
            .map(|f| f.name.as_str())
    }

    fn link(task: &Task) -> String {
        format!("https://app.ekyte.com/#/tasks/{}", task.id)
    }

    fn task_type_name(&self, id: i64) -> Option<&'a str> {
        self.data.task_types.get(&id).map(|t| t.name.as_str())
    }

    /// `/v1.1/tasks` and the automation polling lists: flattened names (API.md §3.3).
    pub fn task_flat(&self, t: &Task) -> Value {
        let project = t.project_id.and_then(|p| self.data.projects.get(&p));
        let squad = self.squad_of(t.workspace_id);
        json!({
            "id": t.id,
            "title": t.title,
            "description": t.description,
            "link": Self::link(t),
            "situation": t.situation.code(),
            "priority": t.priority,
            "priorityGroup": t.priority_group,
            "creationDate": self.date(t.creation_date),
            "originalDueDate": self.date_opt(t.original_due_date),
            "currentDueDate": self.date_opt(t.current_due_date),
            "phaseStartDate": self.date_opt(t.phase_start_date),
            "phaseDueDate": self.date_opt(t.phase_due_date),
            "resolvedDate": self.date_opt(t.resolved_date),
            "estimatedTime": t.estimated_time,
            "actualTime": t.actual_time,
            "phaseId": t.phase_id,
            "phase": self.phase_name(t),
            "createdById": t.created_by,
            "createdBy": self.user_name(t.created_by),
            "createdByEmail": self.user_email(t.created_by),
            "executorId": t.executor_id,
            "executor": self.user_name(t.executor_id),
            "executorEmail": self.user_email(t.executor_id),
            "workspaceId": t.workspace_id,
            "workspace": self.workspace_name(t.workspace_id),
            "squadId": squad.map(|s| s.0),
            "squad": squad.map(|s| s.1),
            "projectId": t.project_id,
            "project": project.map(|p| p.name.as_str()),
            "projectAlias": project.map(|p| p.alias.as_str()),
            "ctcTaskTypeId": t.task_type_id,
            "ctcTaskType": self.task_type_name(t.task_type_id),
            "tags": "",
        })
    }

    /// `/v1.2/tasks`: nested objects (API.md §3.3; exact shape unconfirmed).
    pub fn task_v12(&self, t: &Task, comments: bool, phases: bool, checklist: bool) -> Value {
        let project = t.project_id.and_then(|p| self.data.projects.get(&p));
        let squad = self.squad_of(t.workspace_id);
        let mut v = json!({
            "id": t.id,
            "title": t.title,
            "description": t.description,
            "link": Self::link(t),
            "situation": t.situation.code(),
            "priority": t.priority,
            "priorityGroup": t.priority_group,
            "quantity": t.quantity,
            "creationDate": self.date(t.creation_date),
            "originalDueDate": self.date_opt(t.original_due_date),
            "currentDueDate": self.date_opt(t.current_due_date),
            "phaseStartDate": self.date_opt(t.phase_start_date),
            "phaseDueDate": self.date_opt(t.phase_due_date),
            "resolvedDate": self.date_opt(t.resolved_date),
            "estimatedTime": t.estimated_time,
            "actualTime": t.actual_time,
            "workspace": { "id": t.workspace_id, "name": self.workspace_name(t.workspace_id) },
            "squad": squad.map(|(id, name)| json!({ "id": id, "name": name })),
            "project": project.map(|p| json!({ "id": p.id, "name": p.name, "alias": p.alias })),
            "ctcTaskType": { "id": t.task_type_id, "name": self.task_type_name(t.task_type_id) },
            "phase": t.phase_id.map(|id| json!({ "id": id, "name": self.phase_name(t) })),
            "executor": self.user_ref(t.executor_id),
            "createBy": self.user_ref(t.created_by),
            "tags": [],
        });
        if comments {
            v["comments"] = t.comments.iter().map(|c| self.comment(c)).collect();
        }
        if phases {
            v["phases"] = t.flow.iter().map(|f| self.flow_phase(f)).collect();
        }
        if checklist {
            v["checklist"] = json!([]);
        }
        v
    }

    pub fn comment(&self, c: &Comment) -> Value {
        json!({
            "id": c.id,
            "description": c.description,
            "creationDate": self.date(c.created_at),
            "createBy": self.user_ref(c.author_id),
        })
    }

    pub fn flow_phase(&self, f: &FlowPhase) -> Value {
        json!({
            "phaseId": f.phase_id,
            "name": f.name,
            "sequential": f.sequential,
            "active": f.active,
            "duration": f.duration_days,
            "effort": f.effort_minutes,
            "executorId": f.executor_id,
            "executor": self.user_ref(f.executor_id),
            "phaseStartDate": self.date_opt(f.phase_start_date),
            "phaseDueDate": self.date_opt(f.phase_due_date),
            "concludedDate": self.date_opt(f.concluded_date),
        })
    }

    /// MCP `list_tasks` rows (no description, API.md §5) and, with `detailed`, the
    /// `get_detailed_task` record (description and flow).
    pub fn task_mcp(&self, t: &Task, detailed: bool) -> Value {
        let mut v = json!({
            "id": t.id,
            "title": t.title,
            "situation": t.situation.code(),
            "ctcTaskTypeId": t.task_type_id,
            "ctcTaskType": { "id": t.task_type_id, "name": self.task_type_name(t.task_type_id) },
            "workspaceId": t.workspace_id,
            "workspace": { "id": t.workspace_id, "name": self.workspace_name(t.workspace_id) },
            "ctcTaskProjectId": t.project_id,
            "phaseId": t.phase_id,
            "phase": t.phase_id.map(|id| json!({ "id": id, "name": self.phase_name(t) })),
            "executorId": t.executor_id,
            "executor": self.user_ref(t.executor_id),
            "createById": t.created_by,
            "createBy": self.user_ref(t.created_by),
            "priorityGroup": t.priority_group,
            "priority": t.priority,
            "quantity": t.quantity,
            "creationDate": self.date(t.creation_date),
            "originalDueDate": self.date_opt(t.original_due_date),
            "currentDueDate": self.date_opt(t.current_due_date),
            "phaseStartDate": self.date_opt(t.phase_start_date),
            "phaseDueDate": self.date_opt(t.phase_due_date),
            "resolvedDate": self.date_opt(t.resolved_date),
            "estimatedTime": t.estimated_time,
            "actualTime": t.actual_time,
        });
        if detailed {
            v["description"] = json!(t.description);
            v["flow"] = t.flow.iter().map(|f| self.flow_phase(f)).collect();
        }
        v
    }

    /// BI `/v1.0/task-types` and MCP `list_task_types` rows (API.md §3.3).
    pub fn task_type(&self, t: &TaskType) -> Value {
        let wf = self.data.workflows.get(&t.workflow_id);
        let effort: u32 = wf
            .map(|w| {
                w.phases
                    .iter()
                    .filter(|p| p.active)
                    .map(|p| p.effort_minutes)
                    .sum()
            })
            .unwrap_or(0);
        json!({
            "id": t.id,
            "name": t.name,
            "active": i64::from(t.active),
            // eKyte's spelling (API.md §3.3).
            "effortFormated": format!("{:02}:{:02}", effort / 60, effort % 60),
            "workflowId": t.workflow_id,
            "workflow": wf.map(|w| json!({ "id": w.id, "name": w.name, "active": w.active })),
            "ctcTaskTypeGroup": t.group.as_ref().map(|g| json!({ "name": g })),
        })
    }

    /// BI `/v1.0/workspaces` and MCP `list_short_workspaces` rows.
    pub fn workspace(&self, w: &Workspace) -> Value {
        let squad = w.squad_id.and_then(|s| self.data.squads.get(&s));
        let mut v = json!({
            "id": w.id,
            "name": w.name,
            "active": i64::from(w.active),
            "squadId": w.squad_id,
            "squad": squad.map(|s| s.name.as_str()),
        });
        if self.expose_external_id {
            v["externalId"] = json!(w.external_id);
        }
        v
    }

    pub fn project(&self, p: &Project) -> Value {
        let squad = self.squad_of(p.workspace_id);
        let tasks = || {
            self.data
                .tasks
                .values()
                .filter(|t| t.project_id == Some(p.id))
        };
        json!({
            "id": p.id,
            "name": p.name,
            "alias": p.alias,
            "description": p.description,
            "situation": p.situation,
            "startDate": self.date(p.start_date),
            "endDate": self.date_opt(p.end_date),
            "creationDate": self.date(p.created_at),
            "workspaceId": p.workspace_id,
            "workspace": self.workspace_name(p.workspace_id),
            "squadId": squad.map(|s| s.0),
            "squad": squad.map(|s| s.1),
            "plannedTasksCount": tasks().count(),
            "accomplishedTasksCount": tasks()
                .filter(|t| t.situation == super::model::Situation::Completed)
                .count(),
        })
    }

    pub fn board(&self, b: &Board) -> Value {
        json!({
            "id": b.id,
            "title": b.title,
            "description": b.description,
            "workspaceId": b.workspace_id,
            "workspace": b.workspace_id.map(|w| json!({ "id": w, "name": self.workspace_name(w) })),
            "notesCount": self.data.notes.values().filter(|n| n.board_id == b.id).count(),
            "creationDate": self.date(b.created_at),
        })
    }

    pub fn board_detailed(&self, b: &Board) -> Value {
        let mut v = self.board(b);
        v["categories"] = b
            .categories
            .iter()
            .map(|c| json!({ "id": c.id, "name": c.name }))
            .collect();
        v["notes"] = self
            .data
            .notes
            .values()
            .filter(|n| n.board_id == b.id)
            .map(|n| {
                json!({
                    "id": n.id,
                    "title": n.title,
                    "categoryId": n.category_id,
                    "updateDate": self.date(n.updated_at),
                })
            })
            .collect();
        v
    }

    pub fn note(&self, n: &Note) -> Value {
        let category = self
            .data
            .boards
            .get(&n.board_id)
            .and_then(|b| b.categories.iter().find(|c| Some(c.id) == n.category_id));
        json!({
            "id": n.id,
            "boardId": n.board_id,
            "title": n.title,
            "description": n.description,
            "content": n.content,
            "categoryId": n.category_id,
            "category": category.map(|c| json!({ "id": c.id, "name": c.name })),
            "creationDate": self.date(n.created_at),
            "updateDate": self.date(n.updated_at),
            "createBy": self.user_ref(n.created_by),
            "updateBy": self.user_ref(n.updated_by),
        })
    }

    pub fn ticket(&self, t: &Ticket) -> Value {
        json!({
            "id": t.id,
            "subject": t.subject,
            "message": t.message,
            "ticketType": t.ticket_type,
            "status": t.status.code(),
            "workspaceId": t.workspace_id,
            "workspace": self.workspace_name(t.workspace_id),
            "projectId": t.project_id,
            "requesterEmail": self.user_email(Some(t.requester_id)),
            "analystEmail": self.user_email(t.analyst_id),
            "priorityGroup": t.priority_group,
            "expectDueDate": self.date_opt(t.expect_due_date),
            "creationDate": self.date(t.created_at),
            "concludedDate": self.date_opt(t.concluded_at),
        })
    }

    /// BI `/v1.1/tickets` rows: the polling item plus the people and the squad, flattened like
    /// the v1.1 task (shape unpublished, API.md §"Not documented" 6; fields from §7).
    pub fn ticket_bi(&self, t: &Ticket) -> Value {
        let squad = self.squad_of(t.workspace_id);
        let project = t.project_id.and_then(|p| self.data.projects.get(&p));
        let mut v = self.ticket(t);
        v["squadId"] = json!(squad.map(|s| s.0));
        v["squad"] = json!(squad.map(|s| s.1));
        v["project"] = json!(project.map(|p| p.name.as_str()));
        v["requesterId"] = json!(t.requester_id);
        v["requester"] = json!(self.user_name(Some(t.requester_id)));
        v["analystId"] = json!(t.analyst_id);
        v["analyst"] = json!(self.user_name(t.analyst_id));
        v["usersCC"] =
            t.cc.iter()
                .filter_map(|u| self.user_email(Some(*u)))
                .collect();
        v["createdById"] = json!(t.created_by);
        v["createdBy"] = json!(self.user_name(t.created_by));
        v
    }

    /// BI `/v1.0/time-trackings` rows. `effort`, `accomplishedHourlyRate`, `workspaceId`,
    /// `workspace`, `startDate` and `createdIn` are observed (API.md §3.3); the rest is the
    /// simulator's guess.
    pub fn time_tracking(&self, t: &TimeTracking) -> Value {
        let squad = self.squad_of(t.workspace_id);
        let task = t.task_id.and_then(|id| self.data.tasks.get(&id));
        let phase = task.and_then(|task| {
            task.flow
                .iter()
                .find(|f| Some(f.phase_id) == t.phase_id)
                .map(|f| f.name.as_str())
        });
        json!({
            "id": t.id,
            "effort": t.effort_minutes,
            "accomplishedHourlyRate": t.accomplished_hourly_rate,
            "workspaceId": t.workspace_id,
            "workspace": self.workspace_name(t.workspace_id),
            "squadId": squad.map(|s| s.0),
            "squad": squad.map(|s| s.1),
            "startDate": self.date(t.start_date),
            "endDate": self.date_opt(t.end_date),
            "createdIn": self.date(t.created_at),
            "ctcTaskId": t.task_id,
            "ctcTask": task.map(|task| task.title.as_str()),
            "phaseId": t.phase_id,
            "phase": phase,
            "userId": t.user_id,
            "user": self.user_name(t.user_id),
            "userEmail": self.user_email(t.user_id),
            "comment": t.comment,
        })
    }

    /// BI `/v1.0/members` rows: a company member with profile and workspaces (the route is seen
    /// once, without a shape, API.md §3.2; this shape is the simulator's guess).
    pub fn member(&self, user: Uuid) -> Value {
        let Some(u) = self.store.user(user) else {
            return Value::Null;
        };
        let workspaces: Vec<Value> = self
            .data
            .workspaces
            .values()
            .filter(|w| w.members.contains(&user))
            .map(|w| json!({ "id": w.id, "name": w.name }))
            .collect();
        json!({
            "id": u.id,
            "userName": u.user_name,
            "email": u.email,
            "profile": self.data.profile(user).map(|p| p.label()),
            "active": 1,
            "workspaces": workspaces,
        })
    }

    /// Automation `polling/notifications` items (shape unpublished, API.md §4.1; the simulator's
    /// guess, camelCase like the other polling items).
    pub fn notification(&self, n: &Notification) -> Value {
        let link = match (n.task_id, n.ticket_id) {
            (Some(t), _) => Some(format!("https://app.ekyte.com/#/tasks/{t}")),
            (None, Some(t)) => Some(format!("https://app.ekyte.com/#/tickets/{t}")),
            (None, None) => None,
        };
        json!({
            "id": n.id,
            "notificationType": n.kind.code(),
            "title": n.title,
            "message": n.message,
            "link": link,
            "userId": n.user_id,
            "userEmail": self.user_email(Some(n.user_id)),
            "taskId": n.task_id,
            "ticketId": n.ticket_id,
            "workspaceId": n.workspace_id,
            "workspace": n.workspace_id.and_then(|w| self.workspace_name(w)),
            "createdById": n.created_by,
            "createdBy": self.user_name(n.created_by),
            "creationDate": self.date(n.created_at),
        })
    }
}
