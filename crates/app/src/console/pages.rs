//! The console's HTML (maud: compiled into the binary, escaped by default). No script: every
//! action is a form POST carrying the session's CSRF token.

use chrono::{DateTime, Utc};
use maud::{DOCTYPE, Markup, html};

use domain::Tenant;
use ports::store::{BaseRecord, DeadLetter, DeadLetterGroup, Link, RunStatus, SyncRun};

use super::contact::ContactView;
use super::{TenantFilter, TenantLine, Who};
use crate::config::ConsoleRole;
use crate::operator::{TenantRow, when};

const CSS: &str = "
body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
header{background:#1d2330;color:#fff;padding:.6em 1.2em;display:flex;gap:1em;align-items:center}
header a{color:#fff}header .who{margin-left:auto}
main{padding:1.2em}table{border-collapse:collapse;width:100%;background:#fff}
th,td{border:1px solid #dde1e7;padding:.35em .5em;text-align:left;vertical-align:top}
th{background:#eef0f4}.ok{color:#137333}.bad{color:#b3261e;font-weight:600}
.badge{display:inline-block;border-radius:.8em;padding:0 .6em;color:#fff}
.badge.ok{background:#137333}.badge.bad{background:#b3261e}
form.inline{display:inline}button{cursor:pointer}pre{white-space:pre-wrap;margin:0}
.filters{margin-bottom:1em}.muted{color:#667}#replay-since{margin:.6em 0}
";

fn page(title: &str, who: Option<(&Who, &str)>, body: Markup) -> String {
    page_refreshed(title, who, body, None)
}

/// A page that reloads itself every `refresh` seconds while something runs (no script: the
/// browser's own refresh).
fn page_refreshed(
    title: &str,
    who: Option<(&Who, &str)>,
    body: Markup,
    refresh: Option<u32>,
) -> String {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                @if let Some(secs) = refresh { meta http-equiv="refresh" content=(secs); }
                title { (title) " · ghl-ekyte-sync console" }
                style { (maud::PreEscaped(CSS)) }
            }
            body {
                header {
                    strong { "ghl-ekyte-sync" }
                    @if let Some((who, csrf)) = who {
                        a href="/console/tenants" { "Tenants" }
                        a href="/console/connect" { "Connect" }
                        span.who {
                            (who.user) " (" (role(who.role)) ") "
                            form.inline method="post" action="/console/logout" {
                                input type="hidden" name="csrf" value=(csrf);
                                button type="submit" { "Log out" }
                            }
                        }
                    }
                }
                main { h1 { (title) } (body) }
            }
        }
    }
    .into_string()
}

fn role(r: ConsoleRole) -> &'static str {
    match r {
        ConsoleRole::Viewer => "viewer",
        ConsoleRole::Operator => "operator",
    }
}

pub fn message(title: &str, text: &str) -> String {
    page(
        title,
        None,
        html! { p { (text) } p { a href="/console/tenants" { "Back to the tenants" } } },
    )
}

pub fn login(password_logins: bool, error: Option<&str>) -> String {
    page(
        "Log in",
        None,
        html! {
            @if let Some(e) = error { p.bad role="alert" { (e) } }
            @if password_logins {
                form method="post" action="/console/login" {
                    p { label { "User " input name="user" autocomplete="username" required; } }
                    p { label { "Password " input name="password" type="password" autocomplete="current-password" required; } }
                    p { button type="submit" { "Log in" } }
                }
            } @else {
                p { "Sign in through the proxy in front of the console." }
            }
        },
    )
}

fn badge(problems: &[String]) -> Markup {
    html! {
        @if problems.is_empty() {
            span.badge.ok { "healthy" }
        } @else {
            span.badge.bad { "needs attention" }
            ul { @for p in problems { li.bad { (p) } } }
        }
    }
}

fn token(row: &TenantRow, now: DateTime<Utc>) -> Markup {
    html! {
        (row.ghl_token.describe(now))
        @if let Some(at) = row.ghl_token.last_refresh { br; span.muted { "stored " (when(at)) } }
        @if let Some(f) = &row.ghl_token.refresh_failure { br; span.bad { "refresh failed " (when(f.at)) } }
    }
}

fn ekyte_keys(k: &super::EkyteKey, pending: bool) -> Markup {
    html! {
        @if pending { span.muted { "-" } }
        @else if let Some(u) = &k.unreadable { span.bad { "unreadable: " (u) } }
        @else if !k.api_key { span.bad { "no API key" } }
        @else {
            @match &k.failure {
                Some(f) => span.bad { "API key: check failed " (when(f.at)) },
                None => span.ok { "API key: no failed check" },
            }
            br;
            @if k.mcp_token { "MCP token: present" } @else { span.muted { "MCP token: none (no updates)" } }
        }
    }
}

fn run_cell(run: Option<&SyncRun>) -> Markup {
    html! {
        @match run {
            None => span.muted { "never" },
            Some(r) => {
                (when(r.started_at)) br;
                @match r.status {
                    RunStatus::Running => span { "running: " (r.counts.enqueued) " queued of " (r.counts.seen) " seen" },
                    RunStatus::Completed => span.ok { "completed: " (r.counts.seen) " seen, " (r.counts.errors) " errors" },
                    RunStatus::Failed => span.bad { "failed: " (r.error.as_deref().unwrap_or("no reason recorded")) },
                }
            }
        }
    }
}

fn rate_cell(r: Option<&ports::store::RateObservation>) -> Markup {
    html! {
        @match r {
            None => span.muted { "no GHL answer seen" },
            Some(r) => {
                @match r.remaining {
                    Some(left) => { (left) " of " (r.max) " per " (r.interval_ms / 1000) " s" },
                    None => { "? of " (r.max) " per " (r.interval_ms / 1000) " s" },
                }
                br;
                @match r.daily_remaining {
                    Some(left) => { (left) " of " (r.daily_limit) " today" },
                    None => span.muted { "daily: not reported" },
                }
                br; span.muted { "seen " (when(r.at)) }
            }
        }
    }
}

fn wait_cell(w: Option<&ports::store::QueueObservation>) -> Markup {
    html! {
        @match w {
            None => span.muted { "nothing taken lately" },
            Some(w) => {
                (w.taken) " taken, waited up to " (humantime::format_duration(std::time::Duration::from_millis(w.longest_wait_ms - w.longest_wait_ms % 1000)))
                br; span.muted { "reported " (when(w.at)) }
            }
        }
    }
}

pub fn tenants(
    who: &Who,
    csrf: &str,
    lines: &[TenantLine],
    filter: &TenantFilter,
    depths: &Result<crate::queue::Depths, String>,
) -> String {
    let now = Utc::now();
    page(
        "Tenants",
        Some((who, csrf)),
        html! {
            p #queues {
                @match depths {
                    Ok(d) => { "Waiting in the queues now (all tenants): real-time " (d.realtime) " · bulk " (d.bulk) " · delayed retries " (d.delayed) " · dead " (d.dead) }
                    Err(e) => span.bad { "The queues' depths are unavailable: " (e) }
                }
            }
            form.filters method="get" action="/console/tenants" {
                label { input type="checkbox" name="unhealthy" value="1" checked[filter.unhealthy.is_some()]; " unhealthy only" } " "
                label { "install " select name="kind" {
                    option value="" { "any" }
                    option value="location" selected[filter.kind.as_deref() == Some("location")] { "location" }
                    option value="agency" selected[filter.kind.as_deref() == Some("agency")] { "agency" }
                } } " "
                label { "name " input name="name" value=(filter.name.as_deref().unwrap_or("")); } " "
                button type="submit" { "Filter" }
            }
            table #tenants {
                thead { tr {
                    th { "tenant" } th { "health" } th { "state" } th { "install" } th { "GHL token" }
                    th { "eKyte company" } th { "eKyte keys" } th { "GHL rate budget left" } th { "queue wait" }
                    th { "dead letters" } th { "last full sync" }
                    th { "last incremental" } th { "last poll" }
                } }
                tbody {
                    @for l in lines {
                        tr data-tenant=(l.row.id) {
                            td {
                                @if l.row.state == "pending" { (l.row.name) br; span.muted { (l.row.location) } }
                                @else { a href={ "/console/tenants/" (l.row.id) } { (l.row.id) } br; span.muted { (l.row.name) } }
                            }
                            td { (badge(&l.problems)) }
                            td { (l.row.state) }
                            td { (l.row.install_kind) @if let Some(c) = &l.row.ghl_company { br; span.muted { (c) } } }
                            td { (token(&l.row, now)) }
                            td { @match l.row.ekyte_company { Some(c) => (c), None => span.muted { "not mapped" } } }
                            td { (ekyte_keys(&l.ekyte, l.row.state == "pending")) }
                            td { (rate_cell(l.rate.as_ref())) }
                            td { (wait_cell(l.waits.as_ref())) }
                            td { (l.dead_letters) }
                            td { (run_cell(l.last_runs.get("full"))) }
                            td { (run_cell(l.last_runs.get("incremental"))) }
                            td { (run_cell(l.last_runs.get("poll"))) }
                        }
                    }
                }
            }
            p.muted { (lines.len()) " shown" }
        },
    )
}

/// What the tenant page shows.
pub struct TenantView<'a> {
    pub tenant: &'a Tenant,
    pub row: &'a TenantRow,
    pub ekyte: &'a super::EkyteKey,
    pub runs: &'a [SyncRun],
    /// Its dead letters not replayed yet, per error class.
    pub groups: &'a [DeadLetterGroup],
    /// One page of them (of `class` when set).
    pub letters: &'a [DeadLetter],
    /// Where the next page starts, when there is one.
    pub next_letters: Option<i64>,
    pub class: Option<&'a str>,
}

pub fn tenant(who: &Who, csrf: &str, v: &TenantView<'_>, now: DateTime<Utc>) -> String {
    let (tenant, row, runs) = (v.tenant, v.row, v.runs);
    let running = runs.iter().any(|r| r.status == RunStatus::Running);
    let id = tenant.id.as_str();
    let action = |name: &str| format!("/console/tenants/{id}/{name}");
    let waiting: u64 = v.groups.iter().map(|g| g.count).sum();
    let page_link = |before: Option<i64>, class: Option<&str>| {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        if let Some(b) = before {
            q.append_pair("before", &b.to_string());
        }
        if let Some(c) = class {
            q.append_pair("class", c);
        }
        format!("/console/tenants/{id}?{}#dead-letters", q.finish())
    };
    page_refreshed(
        &format!("Tenant {id}"),
        Some((who, csrf)),
        html! {
            @if running { p.muted #live { "A sync is running: this page refreshes every 5 seconds." } }
            p {
                (tenant.name) " · GHL location " (tenant.location_id) " · eKyte company "
                (tenant.ekyte_company_id) " · " strong { (tenant.state()) } " · install "
                (row.install_kind) " · GHL token: " (token(row, now))
            }
            p #ekyte-keys {
                "eKyte: " (ekyte_keys(v.ekyte, false))
                @if let Some(f) = &v.ekyte.failure { br; span.bad { (f.error) } }
            }
            @if who.may_act() {
                p #actions {
                    @if tenant.active {
                        form.inline method="post" action=(action("pause")) {
                            input type="hidden" name="csrf" value=(csrf);
                            button type="submit" { "Pause" }
                        }
                    } @else {
                        form.inline method="post" action=(action("resume")) {
                            input type="hidden" name="csrf" value=(csrf);
                            button type="submit" { "Resume" }
                        }
                    }
                    " "
                    @if !matches!(row.ghl_token.kind, "private" | "none") {
                        form.inline method="post" action=(action("refresh-token")) {
                            input type="hidden" name="csrf" value=(csrf);
                            button type="submit" { "Refresh GHL token now" }
                        }
                        " "
                    }
                    form.inline method="post" action=(action("check-ekyte")) {
                        input type="hidden" name="csrf" value=(csrf);
                        button type="submit" { "Check eKyte now" }
                    }
                    " "
                    @for (mode, label) in [("incremental", "Start an incremental sync"), ("full", "Start a full sync")] {
                        form.inline method="post" action=(action("sync")) {
                            input type="hidden" name="csrf" value=(csrf);
                            input type="hidden" name="mode" value=(mode);
                            button type="submit" { (label) }
                        }
                        " "
                    }
                    form.inline method="post" action=(action("dry-run-full")) {
                        input type="hidden" name="csrf" value=(csrf);
                        button type="submit" { "Dry-run a full sync" }
                    }
                }
            }
            form.filters method="get" action={ "/console/tenants/" (id) "/contacts" } {
                label { "Find a contact (GHL id, eKyte workspace id, email or name) " input name="q"; } " "
                button type="submit" { "Find" }
            }
            h2 { "Sync runs" }
            table #runs {
                thead { tr { th { "kind" } th { "started" } th { "status" } th { "seen" } th { "queued" } th { "errors" } th { "API calls" } th { "duration" } } }
                tbody {
                    @if runs.is_empty() { tr { td colspan="8" .muted { "no run yet" } } }
                    @for r in runs {
                        tr {
                            td { (r.kind.as_str()) }
                            td { (when(r.started_at)) }
                            td { (run_cell(Some(r))) }
                            td { (r.counts.seen) } td { (r.counts.enqueued) } td { (r.counts.errors) } td { (r.counts.api_calls) }
                            td { @match r.finished_at { Some(f) => { ((f - r.started_at).num_seconds()) "s" }, None => span.muted { "running" } } }
                        }
                    }
                }
            }
            h2 #dead-letters { "Dead letters (" (waiting) ")" }
            @if !v.groups.is_empty() {
                table #dead-letter-groups {
                    thead { tr { th { "error" } th { "letters" } th { "newest" } th {} } }
                    tbody {
                        @for g in v.groups {
                            tr data-class=(g.class) {
                                td { a href=(page_link(None, Some(&g.class))) { (g.class) } }
                                td { (g.count) }
                                td { (when(g.newest_at)) }
                                td {
                                    @if who.may_act() {
                                        form.inline method="post" action=(action("replay-group")) {
                                            input type="hidden" name="csrf" value=(csrf);
                                            input type="hidden" name="class" value=(g.class);
                                            button type="submit" { "Replay all " (g.count) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                @if who.may_act() {
                    form #replay-since method="post" action=(action("replay-since")) {
                        input type="hidden" name="csrf" value=(csrf);
                        label { "Replay every dead letter created since (UTC) " input type="datetime-local" name="since" required; } " "
                        button type="submit" { "Replay" }
                    }
                }
            }
            @if let Some(c) = v.class {
                p { "Showing group " strong { (c) } " · " a href=(page_link(None, None)) { "show all" } }
            }
            table #dead-letter-list {
                thead { tr { th { "id" } th { "message" } th { "attempts" } th { "when" } th { "error, with its causes" } th {} } }
                tbody {
                    @if v.letters.is_empty() { tr { td colspan="6" .muted { "none: nothing failed for good" } } }
                    @for d in v.letters {
                        tr data-dead-letter=(d.id) {
                            td { (d.id) }
                            td { (d.letter.kind) br; span.muted { (d.letter.message_id) } }
                            td { (d.letter.attempts) }
                            td { (when(d.created_at)) }
                            td { pre { (d.letter.error_chain.join("\n  caused by: ")) } }
                            td {
                                @if who.may_act() {
                                    form.inline method="post" action=(action("replay")) {
                                        input type="hidden" name="csrf" value=(csrf);
                                        input type="hidden" name="dead_letter" value=(d.id);
                                        button type="submit" { "Replay" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            @if let Some(next) = v.next_letters {
                p { a #older-letters href=(page_link(Some(next), v.class)) { "Older dead letters →" } }
            }
        },
        running.then_some(5),
    )
}

fn link_name(l: &Link) -> String {
    match &l.base {
        BaseRecord::Contact(c) => c
            .name
            .clone()
            .or_else(|| c.email.clone())
            .unwrap_or_default(),
        _ => String::new(),
    }
}

pub fn contacts(who: &Who, csrf: &str, tenant: &Tenant, q: &str, found: &[Link]) -> String {
    let id = tenant.id.as_str();
    page(
        &format!("Contacts of {id}"),
        Some((who, csrf)),
        html! {
            form.filters method="get" action={ "/console/tenants/" (id) "/contacts" } {
                label { "GHL id, eKyte workspace id, email or name " input name="q" value=(q); } " "
                button type="submit" { "Find" }
            }
            @if !q.trim().is_empty() && found.is_empty() { p.muted { "No linked contact matches." } }
            @if !found.is_empty() {
                table #contacts {
                    thead { tr { th { "GHL contact" } th { "eKyte workspace" } th { "name" } th { "state" } } }
                    tbody { @for l in found {
                        tr {
                            td { @if let Some(g) = &l.ghl_id { a href={ "/console/tenants/" (id) "/contacts/" (g) } { (g) } } }
                            td { (l.ekyte_id.as_deref().unwrap_or("—")) }
                            td { (link_name(l)) }
                            td { (format!("{:?}", l.state).to_lowercase()) }
                        }
                    } }
                }
            }
        },
    )
}

pub fn contact(
    who: &Who,
    csrf: &str,
    v: &ContactView,
    planned: Option<&Result<engine::Report, String>>,
    deep: &super::DeepLinks,
) -> String {
    let id = v.tenant.id.as_str();
    let location = v.tenant.location_id.as_str();
    let company = v.tenant.ekyte_company_id.to_string();
    let ghl_link = deep.ghl_contact(location, &v.ghl_id);
    let out = |href: Option<String>, text: &str| {
        html! {
            @match href {
                Some(h) => a.out href=(h) target="_blank" rel="noopener noreferrer" { (text) " ↗" },
                None => (text),
            }
        }
    };
    let base = format!("/console/tenants/{id}/contacts/{}", v.ghl_id);
    page(
        &format!("Contact {}", v.ghl_id),
        Some((who, csrf)),
        html! {
            p {
                "Tenant " a href={ "/console/tenants/" (id) } { (id) } " · GHL contact " (out(ghl_link.clone(), &v.ghl_id))
                @match &v.link {
                    Some(l) => {
                        " ↔ eKyte workspace "
                        @match l.ekyte_id.as_deref() {
                            Some(w) => (out(deep.ekyte_workspace(&company, w), w)),
                            None => "not created",
                        }
                        " (" (format!("{:?}", l.state).to_lowercase()) ", last agreed " (when(l.updated_at)) ")"
                    },
                    None => { " · " span.bad { "not linked to eKyte" } },
                }
            }
            @if who.may_act() {
                p #actions {
                    form.inline method="post" action={ (base) "/sync" } {
                        input type="hidden" name="csrf" value=(csrf);
                        button type="submit" { "Sync now" }
                    }
                    " "
                    form.inline method="post" action={ (base) "/dry-run" } {
                        input type="hidden" name="csrf" value=(csrf);
                        button type="submit" { "Dry-run now" }
                    }
                }
            }
            @if let Some(planned) = planned {
                section #dry-run {
                    h2 { "Dry-run: what a sync would do now (nothing was written)" }
                    @match planned {
                        Err(e) => p.bad { (e) },
                        Ok(report) if report.writes() == 0 => p.ok { "Nothing to write: both sides agree." },
                        Ok(report) => table {
                            thead { tr { th { "action" } th { "on" } th { "record" } th { "fields" } th { "why" } } }
                            tbody { @for l in &report.lines {
                                tr.planned {
                                    td { (l.action.as_str()) }
                                    td { (l.target.map(|s| format!("{s:?}")).unwrap_or_default()) }
                                    td { (format!("{:?}", l.kind)) " " (l.ghl_id.as_deref().or(l.ekyte_id.as_deref()).unwrap_or("")) }
                                    td { (l.fields.join(", ")) }
                                    td { (l.reason.as_deref().unwrap_or("")) }
                                }
                            } }
                        },
                    }
                }
            }
            @for e in &v.read_errors { p.bad { "Could not read " (e) } }
            h2 { "Fields" }
            table #fields {
                thead { tr { th { "field" } th { "last agreed" } th { "GHL now" } th { "eKyte now" } th { "policy (direction, conflict, owner)" } } }
                tbody { @for f in &v.fields {
                    tr data-field=(f.name) class=[f.differs.then_some("bad")] {
                        td { (f.name) } td { (f.agreed) } td { (f.ghl) } td { (f.ekyte) } td { (f.rule) }
                    }
                } }
            }
            h2 { "Linked records" }
            table #links {
                thead { tr { th { "kind" } th { "GHL id" } th { "eKyte id" } th { "state" } th { "updated" } } }
                tbody {
                    @if v.children.is_empty() { tr { td colspan="5" .muted { "none" } } }
                    @for l in &v.children {
                        tr {
                            td { (format!("{:?}", l.kind)) }
                            td { @match l.ghl_id.as_deref() {
                                // GHL shows a contact's tasks and notes on the contact's page.
                                Some(g) => (out(ghl_link.clone(), g)),
                                None => "—",
                            } }
                            td { @match l.ekyte_id.as_deref() {
                                Some(e) if l.kind == domain::EntityKind::Task => (out(deep.ekyte_task(&company, e), e)),
                                Some(e) => (out(v.link.as_ref().and_then(|c| c.ekyte_id.as_deref()).and_then(|w| deep.ekyte_workspace(&company, w)), e)),
                                None => "—",
                            } }
                            td { (format!("{:?}", l.state).to_lowercase()) }
                            td { (when(l.updated_at)) }
                        }
                    }
                }
            }
            h2 { "History" }
            table #history {
                thead { tr { th { "when" } th { "action" } th { "on" } th { "record" } th { "fields" } th { "why" } th { "cause" } th { "calls" } } }
                tbody {
                    @if v.history.is_empty() { tr { td colspan="8" .muted { "nothing recorded" } } }
                    @for (i, r) in v.history.iter().enumerate() {
                        tr.history {
                            td { (when(r.entry.at)) }
                            td { (r.entry.action.as_str()) @if r.entry.dry_run { " (dry-run)" } }
                            td { (r.entry.target.map(|s| format!("{s:?}")).unwrap_or_default()) }
                            td { (format!("{:?}", r.entry.kind)) " " (r.entry.ghl_id.as_deref().or(r.entry.ekyte_id.as_deref()).unwrap_or("")) }
                            td { (r.entry.fields.join(", ")) }
                            td { (r.entry.reason.as_deref().unwrap_or("")) }
                            td.muted { (cause(r.entry.message_id.as_deref())) br; (r.entry.message_id.as_deref().unwrap_or("")) }
                            td.calls {
                                // Once per message: its lines are together, newest first.
                                @if let Some(c) = r.entry.calls {
                                    @if i == 0 || v.history[i - 1].entry.message_id != r.entry.message_id {
                                        "GHL " (c.ghl) " · eKyte " (c.ekyte)
                                    }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

/// What the Connect page shows.
pub struct ConnectView {
    /// The agency install's link; `None` without `ghl.client_id` and `ghl.redirect_uri`, or
    /// for an account limited to some tenants.
    pub agency_link: Option<String>,
    /// Each visible tenant with its own install link.
    pub tenant_links: Vec<(domain::Tenant, Option<String>)>,
    /// Why no link can be made, when none can.
    pub links_missing: bool,
    pub pending: Vec<ports::store::PendingLocation>,
    /// The tenants whose settings a mapping may copy.
    pub templates: Vec<domain::TenantId>,
    /// A refused mapping: the location and why.
    pub refused: Option<(String, String)>,
}

pub fn connect(who: &Who, csrf: &str, v: &ConnectView) -> String {
    page(
        "Connect",
        Some((who, csrf)),
        html! {
            h2 { "Connect GHL" }
            @if !who.may_act() {
                p.muted { "A viewer reads; only an operator starts an install." }
            } @else if v.links_missing {
                p.bad { "Installs need the Marketplace app: set ghl.client_id, ghl.client_secret and ghl.redirect_uri (this service's /oauth/callback)." }
            }
            @if let Some(link) = &v.agency_link {
                p {
                    a #connect-agency href=(link) { "Connect a GHL agency" }
                    " — GHL asks the agency which sub-accounts to install on; each one comes back here to be mapped to an eKyte company."
                }
            }
            @if v.tenant_links.iter().any(|(_, l)| l.is_some()) {
                h3 { "Connect one tenant's location" }
                table #connect-tenants {
                    thead { tr { th { "tenant" } th { "GHL location" } th { "state" } th {} } }
                    tbody {
                        @for (t, link) in &v.tenant_links {
                            @if let Some(link) = link {
                                tr data-tenant=(t.id) {
                                    td { (t.id) " · " (t.name) }
                                    td { (t.location_id) }
                                    td { (t.state()) }
                                    td { a.connect-tenant href=(link) { "Connect GHL" } }
                                }
                            }
                        }
                    }
                }
            }
            @if who.tenants.is_none() {
                h2 { "Locations waiting for an eKyte company (" (v.pending.len()) ")" }
                @if v.pending.is_empty() {
                    p.muted { "none: every approved location has its tenant" }
                }
                @for p in &v.pending {
                    section.pending data-location=(p.location_id) {
                        h3 { (p.name.as_deref().unwrap_or("unnamed")) " · " (p.location_id) }
                        p.muted { "GHL company " (p.company_id) ", approved " (when(p.since)) ": " (p.reason) }
                        @if let Some((loc, why)) = &v.refused {
                            @if loc == p.location_id.as_str() { p.bad role="alert" { "Not saved: " (why) } }
                        }
                        @if who.may_act() {
                            form.map method="post" action="/console/connect/map" {
                                input type="hidden" name="csrf" value=(csrf);
                                input type="hidden" name="location" value=(p.location_id);
                                p {
                                    label { "eKyte company id " input name="ekyte_company" inputmode="numeric" required; } " "
                                    label { "tenant id " input name="id" placeholder={ "loc-" (p.location_id.as_str().to_ascii_lowercase()) }; } " "
                                    label { "name " input name="name" placeholder=(p.name.as_deref().unwrap_or("")); }
                                }
                                p {
                                    label { "copy settings from " select name="like" {
                                        option value="" { "(defaults)" }
                                        @for t in &v.templates { option value=(t) { (t) } }
                                    } } " "
                                    label { "eKyte user email " input name="user_email" type="email"; } " "
                                    label { "task type id " input name="task_type_id" inputmode="numeric"; }
                                }
                                p {
                                    label { "eKyte API key " input name="api_key" type="password" autocomplete="off"; } " "
                                    label { "MCP token " input name="mcp_token" type="password" autocomplete="off"; } " "
                                    span.muted { "(empty: the keys of a tenant already on that eKyte company)" }
                                }
                                p { button type="submit" { "Check with eKyte and save" } }
                            }
                        }
                    }
                }
            }
        },
    )
}

/// One contact's plan in a dry-run of a full sync.
pub struct PlannedContact {
    pub contact: String,
    pub lines: Vec<ports::store::AuditEntry>,
    /// Why it could not be planned.
    pub failure: Option<String>,
}

/// What the dry-run page shows.
pub struct PlanView<'a> {
    pub tenant: &'a Tenant,
    pub job: &'a str,
    pub started: Option<(DateTime<Utc>, String)>,
    /// The closing line: how it ended.
    pub finished: Option<String>,
    /// Contacts with writes planned, or that could not be planned, in planning order.
    pub contacts: Vec<PlannedContact>,
    /// Contacts planned so far.
    pub planned: usize,
    /// No end after this long: the process running it stopped.
    pub abandoned: bool,
}

pub fn plan(who: &Who, csrf: &str, v: &PlanView<'_>) -> String {
    let id = v.tenant.id.as_str();
    let running = v.finished.is_none() && !v.abandoned;
    page_refreshed(
        &format!("Dry-run of a full sync · {id}"),
        Some((who, csrf)),
        html! {
            p { a href={ "/console/tenants/" (id) } { "← tenant " (id) } }
            @if let Some((at, by)) = &v.started { p { "Dry-run " code { (v.job) } " started " (when(*at)) " by " (by) "." } }
            p #plan-status {
                @if let Some(f) = &v.finished { strong { (f) } " Nothing was written on either side." }
                @else if v.abandoned { span.bad { "It did not finish: the service that ran it stopped. Start another." } }
                @else { "Planning… " (v.planned) " contact(s) so far; this page refreshes every 2 seconds." }
            }
            table #plan {
                thead { tr { th { "contact" } th { "side" } th { "record" } th { "would" } th { "fields" } th { "why" } } }
                tbody {
                    @if v.contacts.is_empty() {
                        tr { td colspan="6" .muted {
                            @if running { "no write planned yet" } @else { "none: a full sync would write nothing now" }
                        } }
                    }
                    @for c in &v.contacts {
                        @if let Some(f) = &c.failure {
                            tr.bad data-contact=(c.contact) {
                                td { a href={ "/console/tenants/" (id) "/contacts/" (c.contact) } { (c.contact) } }
                                td colspan="5" { "could not be planned: " (f) }
                            }
                        }
                        @for (i, l) in c.lines.iter().enumerate() {
                            tr.planned data-contact=(c.contact) {
                                td { @if i == 0 { a href={ "/console/tenants/" (id) "/contacts/" (c.contact) } { (c.contact) } } }
                                td { (l.target.map(|s| s.to_string()).unwrap_or_default()) }
                                td { (l.kind.to_string()) " " span.muted { (l.ghl_id.as_deref().or(l.ekyte_id.as_deref()).unwrap_or("new")) } }
                                td { (l.action.as_str()) }
                                td { (l.fields.join(", ")) }
                                td { (l.reason.as_deref().unwrap_or("")) }
                            }
                        }
                    }
                }
            }
        },
        running.then_some(2),
    )
}

/// What a message id says about why the work was done (the ids each source gives its
/// messages: a webhook's is GHL's `webhookId`, the others start with their source).
fn cause(message_id: Option<&str>) -> &'static str {
    let Some(id) = message_id else {
        return "";
    };
    let Some((source, _)) = id.split_once(':') else {
        return "GHL webhook";
    };
    match source {
        "sync" => "full or incremental sync",
        "unseen" => "full sync (gone from GHL's search)",
        "ekyte" | "poll" => "eKyte poll",
        "console" => "console action",
        "console-dry-run" => "console dry-run",
        "cli" => "CLI",
        _ => "message",
    }
}
