//! A dry-run of a whole full sync, listed contact by contact, with nothing written on either
//! side and nothing queued.
//!
//! The operator's POST starts it in the background of this process ([`engine::Engine::plan_full`])
//! and lands on its page. Every entry it produces goes to the audit log under one message-id
//! prefix, `console-dry-run:<job>:<contact>`, between a start and an end line whose message id
//! is `console-dry-run:<job>`: the page reads them back by that prefix
//! ([`ports::store::AuditLog::by_message_prefix`]), so it holds no state of its own and any
//! replica can show it.

use std::sync::Arc;

use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use domain::{EntityKind, GhlContactId, TenantId};
use ports::store::{AuditAction, AuditEntry, AuditLog};

use super::{ConsoleState, html, operator, pages, seen_tenant, store_failed, visible_tenant};

/// How long a dry-run may go without its end line before the page calls it abandoned.
const ABANDONED_AFTER: chrono::Duration = chrono::Duration::hours(6);
/// Entries a dry-run page reads at most.
const MAX_ENTRIES: u32 = 20_000;

fn job_prefix(job: &str) -> String {
    format!("console-dry-run:{job}")
}

#[derive(Debug, Default, Deserialize)]
pub struct StartForm {
    #[serde(default)]
    csrf: String,
}

/// Writes each contact's plan failure to the audit log (a plan that worked was audited by
/// the engine as it was made).
struct AuditSink {
    audit: Arc<dyn AuditLog>,
    clock: Arc<dyn ports::Clock>,
    tenant: TenantId,
    prefix: String,
}

#[async_trait::async_trait]
impl engine::PlanSink for AuditSink {
    async fn planned(
        &self,
        contact: &GhlContactId,
        plan: Result<engine::Report, engine::SyncError>,
    ) {
        let Err(e) = plan else { return };
        let mut entry = AuditEntry::tenant_skip(
            &self.tenant,
            self.clock.now(),
            format!("not planned: {}", e.chain().join(": ")),
            Some(format!("{}{contact}", self.prefix)),
        );
        entry.kind = EntityKind::Contact;
        entry.contact = Some(contact.clone());
        entry.ghl_id = Some(contact.to_string());
        entry.dry_run = true;
        if let Err(e) = self.audit.append(&[entry]).await {
            tracing::warn!(tenant = %self.tenant, contact = %contact, error = %e, "console dry-run: could not record a contact that was not planned");
        }
    }
}

pub async fn start(
    State(s): State<ConsoleState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(f): Form<StartForm>,
) -> Response {
    let who = match operator(&s, &headers, &f.csrf) {
        Ok(w) => w,
        Err(r) => return *r,
    };
    let tenant = match visible_tenant(&s, &who, &id).await {
        Ok(t) => t,
        Err(r) => return *r,
    };
    let job = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
    let actor = format!("console user {}", who.user);
    let mut started = AuditEntry::operator(
        &tenant.id,
        s.clock.now(),
        &actor,
        format!("started a dry-run of a full sync ({job})"),
    );
    started.message_id = Some(job_prefix(&job));
    started.dry_run = true;
    if let Err(e) = s.audit.append(&[started]).await {
        return store_failed(&e);
    }
    tracing::info!(tenant = %tenant.id, user = %who.user, job, "console: dry-run of a full sync started");
    let id = tenant.id.clone();
    let (engine, audit, clock) = (s.engine.clone(), s.audit.clone(), s.clock.clone());
    let task_job = job.clone();
    tokio::spawn(async move {
        let job = task_job;
        let prefix = format!("{}:", job_prefix(&job));
        let sink = AuditSink {
            audit: audit.clone(),
            clock: clock.clone(),
            tenant: tenant.id.clone(),
            prefix: prefix.clone(),
        };
        let tenant_id = tenant.id.clone();
        let scope = ports::Scope::new(Arc::new(tenant), ports::Priority::Bulk);
        let outcome = engine.plan_full(&scope, &prefix, &sink).await;
        let said = match &outcome {
            Ok(p) => format!(
                "dry-run {job} finished: {} contact(s) planned, {} with writes ({} write(s) in all), {} could not be planned",
                p.contacts, p.with_writes, p.writes, p.failed
            ),
            Err(e) => format!("dry-run {job} failed: {}", e.chain().join(": ")),
        };
        tracing::info!(tenant = %tenant_id, job, outcome = %said, "console: dry-run of a full sync ended");
        let mut end = AuditEntry::operator(&tenant_id, clock.now(), &actor, said);
        end.message_id = Some(job_prefix(&job));
        end.dry_run = true;
        if let Err(e) = audit.append(&[end]).await {
            tracing::warn!(tenant = %tenant_id, job, error = %e, "console: could not record the end of a dry-run");
        }
    });
    Redirect::to(&format!("/console/tenants/{id}/dry-runs/{job}")).into_response()
}

pub async fn page(
    State(s): State<ConsoleState>,
    headers: HeaderMap,
    Path((id, job)): Path<(String, String)>,
) -> Response {
    let (who, tenant) = match seen_tenant(&s, &headers, &id).await {
        Ok(found) => found,
        Err(r) => return *r,
    };
    let not_found = || {
        html(
            StatusCode::NOT_FOUND,
            pages::message("Not found", "no such dry-run"),
        )
    };
    if job.len() != 12 || !job.bytes().all(|b| b.is_ascii_hexdigit()) {
        return not_found();
    }
    let own = job_prefix(&job);
    let records = match s
        .audit
        .by_message_prefix(&tenant.id, &own, MAX_ENTRIES)
        .await
    {
        Ok(r) => r,
        Err(e) => return store_failed(&e),
    };
    let mut started = None;
    let mut finished = None;
    let mut contacts: Vec<pages::PlannedContact> = Vec::new();
    let mut planned = std::collections::HashSet::new();
    let contact_prefix = format!("{own}:");
    for r in records {
        let e = r.entry;
        let Some(mid) = e.message_id.as_deref() else {
            continue;
        };
        if mid == own {
            let text = e.reason.clone().unwrap_or_default();
            let (by, what) = text.split_once(": ").unwrap_or(("", text.as_str()));
            if what.starts_with("started ") {
                started = Some((e.at, by.trim_start_matches("console user ").to_owned()));
            } else {
                finished = Some(what.to_owned());
            }
            continue;
        }
        let Some(contact) = mid.strip_prefix(&contact_prefix) else {
            continue;
        };
        planned.insert(contact.to_owned());
        let failure = (e.action == AuditAction::Skip)
            .then(|| {
                e.reason
                    .as_deref()
                    .and_then(|r| r.strip_prefix("not planned: "))
            })
            .flatten()
            .map(str::to_owned);
        if failure.is_none() && !engine::is_write(e.action) {
            continue;
        }
        let at = match contacts.iter().position(|c| c.contact == contact) {
            Some(i) => i,
            None => {
                contacts.push(pages::PlannedContact {
                    contact: contact.to_owned(),
                    lines: Vec::new(),
                    failure: None,
                });
                contacts.len() - 1
            }
        };
        match failure {
            Some(f) => contacts[at].failure = Some(f),
            None => contacts[at].lines.push(e),
        }
    }
    if started.is_none() {
        return not_found();
    }
    let abandoned = finished.is_none()
        && started
            .as_ref()
            .is_some_and(|(at, _)| s.clock.now() - *at > ABANDONED_AFTER);
    html(
        StatusCode::OK,
        pages::plan(
            &who,
            &s.gate.csrf_token(&who),
            &pages::PlanView {
                tenant: &tenant,
                job: &job,
                started,
                finished,
                contacts,
                planned: planned.len(),
                abandoned,
            },
        ),
    )
}
