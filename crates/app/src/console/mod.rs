//! The operator console: server-rendered pages under `/console`, served by the ingress, that
//! show what the sync did and let an operator put it right. An inbound adapter like the
//! webhook route: it reads through the ports (the store and the queue) and keeps no state of
//! its own beyond the login rate limit.
//!
//! Access (see [`auth`]): off unless `console.enabled`; every route but the login page needs a
//! session (or the trusted proxy's header). Without one, a browser is sent to the login page
//! and any other client gets 401. Every POST carries the session's CSRF token (403 without
//! it); only operators act (403 for viewers); an account limited to some tenants sees and acts
//! on those alone (403 for the others). Every action is audited with who did it. No secret is
//! ever rendered: a token shows as its expiry.

pub mod auth;
mod connect;
mod contact;
mod pages;
mod plan;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use domain::TenantId;
use ports::Clock;
use ports::queue::{Envelope, Payload, Publisher, SyncMode};
use ports::store::{
    AgencyStore, AuditEntry, AuditLog, CredentialStore, DeadLetterStore, RunStore, TenantStore,
};

use crate::operator;

pub use auth::{Gate, Who};

/// What the console's pages read and act through.
#[derive(Clone)]
pub struct ConsoleState {
    pub gate: Arc<Gate>,
    pub tenants: Arc<dyn TenantStore>,
    pub credentials: Arc<dyn CredentialStore>,
    pub agencies: Arc<dyn AgencyStore>,
    pub dead_letters: Arc<dyn DeadLetterStore>,
    pub runs: Arc<dyn RunStore>,
    pub audit: Arc<dyn AuditLog>,
    pub publisher: Arc<dyn Publisher>,
    pub clock: Arc<dyn Clock>,
    pub links: Arc<dyn ports::store::LinkStore>,
    /// Both sides, read now for a contact's page.
    pub ghl: Arc<dyn ports::ghl::GhlApi>,
    pub ekyte: Arc<dyn ports::ekyte::EkyteApi>,
    /// The use cases: a dry-run plans a contact's sync without writing.
    pub engine: Arc<engine::Engine>,
    /// How often each kind of run is scheduled (`[scheduler]`, or the CronJobs it stands for).
    pub schedule: Schedule,
    /// The GHL `chooselocation` link that starts an install, with a signed state; `None`
    /// when the Marketplace app is not configured.
    pub install_link: InstallLink,
    /// Maps a pending location to an eKyte company (the same use case as `tenants map`).
    pub mapper: Arc<crate::admin::Mapper>,
    /// What the workers observed: GHL rate budgets and queue waits.
    pub observations: Arc<dyn ports::store::Observations>,
    /// The queues' depths now.
    pub broker: Arc<dyn crate::queue::Broker>,
    /// Where records open in GHL and in eKyte.
    pub deep_links: DeepLinks,
}

/// Links that open a record in its vendor's web app (`console.*_url` templates).
#[derive(Debug, Clone, Default)]
pub struct DeepLinks {
    pub ghl_contact: String,
    pub ekyte_workspace: String,
    pub ekyte_task: String,
}

impl DeepLinks {
    pub fn new(c: &crate::config::ConsoleConfig) -> Self {
        Self {
            ghl_contact: c.ghl_contact_url.clone(),
            ekyte_workspace: c.ekyte_workspace_url.clone(),
            ekyte_task: c.ekyte_task_url.clone(),
        }
    }

    fn fill(template: &str, values: &[(&str, &str)]) -> Option<String> {
        if template.is_empty() {
            return None;
        }
        Some(values.iter().fold(template.to_owned(), |t, (k, v)| {
            t.replace(
                &format!("{{{k}}}"),
                &url::form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>(),
            )
        }))
    }

    pub fn ghl_contact(&self, location: &str, contact: &str) -> Option<String> {
        Self::fill(
            &self.ghl_contact,
            &[("location", location), ("contact", contact)],
        )
    }

    pub fn ekyte_workspace(&self, company: &str, workspace: &str) -> Option<String> {
        Self::fill(
            &self.ekyte_workspace,
            &[("company", company), ("workspace", workspace)],
        )
    }

    pub fn ekyte_task(&self, company: &str, task: &str) -> Option<String> {
        Self::fill(&self.ekyte_task, &[("company", company), ("task", task)])
    }
}

/// Makes the link that starts an install for a tenant's location or an agency.
pub type InstallLink = Arc<dyn Fn(&crate::oauth_state::InstallFor) -> Option<String> + Send + Sync>;

/// How often the scheduler starts each kind of run: a run older than twice that is *late*.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    pub incremental: std::time::Duration,
    pub full: std::time::Duration,
    pub poll: std::time::Duration,
}

impl Schedule {
    fn every(&self, kind: ports::store::RunKind) -> std::time::Duration {
        match kind {
            ports::store::RunKind::Incremental => self.incremental,
            ports::store::RunKind::Full => self.full,
            ports::store::RunKind::Poll => self.poll,
        }
    }

    /// Whether the last run of this kind, started at `at`, missed its schedule (more than
    /// twice its interval ago).
    pub fn late(
        &self,
        kind: ports::store::RunKind,
        at: chrono::DateTime<chrono::Utc>,
        now: chrono::DateTime<chrono::Utc>,
    ) -> bool {
        chrono::Duration::from_std(self.every(kind) * 2).is_ok_and(|twice| now - at > twice)
    }
}

/// The console's routes, all under `/console`.
pub fn router(state: ConsoleState) -> Router {
    Router::new()
        .route(
            "/console",
            get(|| async { Redirect::to("/console/tenants") }),
        )
        .route("/console/login", get(login_page).post(login))
        .route("/console/logout", post(logout))
        .route("/console/tenants", get(tenants_page))
        .route("/console/connect", get(connect::page))
        .route("/console/connect/map", post(connect::map))
        .route("/console/tenants/{id}", get(tenant_page))
        .route("/console/tenants/{id}/{action}", post(act))
        .route("/console/tenants/{id}/dry-run-full", post(plan::start))
        .route("/console/tenants/{id}/dry-runs/{job}", get(plan::page))
        .route("/console/tenants/{id}/contacts", get(contacts_page))
        .route(
            "/console/tenants/{id}/contacts/{contact}",
            get(contact_page),
        )
        .route(
            "/console/tenants/{id}/contacts/{contact}/{action}",
            post(contact_action),
        )
        .with_state(state)
}

/// Every console answer: HTML that is never cached nor framed.
fn html(status: StatusCode, body: String) -> Response {
    let mut r = (status, body).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    r
}

fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"))
}

/// No session: a browser goes to the login page, any other client gets 401.
fn unauthenticated(headers: &HeaderMap) -> Response {
    if wants_html(headers) {
        Redirect::to("/console/login").into_response()
    } else {
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Cookie realm=\"console\"")],
            "sign in at /console/login",
        )
            .into_response()
    }
}

fn forbidden(why: &str) -> Response {
    html(StatusCode::FORBIDDEN, pages::message("Not allowed", why))
}

/// The signed-in user, or the answer for a request without one (boxed: a response is large).
fn who(s: &ConsoleState, headers: &HeaderMap) -> Result<Who, Box<Response>> {
    s.gate
        .identify(headers, s.clock.now())
        .ok_or_else(|| Box::new(unauthenticated(headers)))
}

const BAD_CSRF: &str = "the form's CSRF token is missing or wrong: reload the page";

/// The sender of an action: signed in, with the session's CSRF token, and an operator.
fn operator(s: &ConsoleState, headers: &HeaderMap, csrf: &str) -> Result<Who, Box<Response>> {
    let who = who(s, headers)?;
    if !s.gate.csrf_ok(&who, csrf) {
        return Err(Box::new(forbidden(BAD_CSRF)));
    }
    if !who.may_act() {
        return Err(Box::new(forbidden("a viewer reads; only an operator acts")));
    }
    Ok(who)
}

fn store_failed(e: &impl std::fmt::Display) -> Response {
    tracing::warn!(error = %e, "console: the store failed");
    html(
        StatusCode::SERVICE_UNAVAILABLE,
        pages::message("Unavailable", &format!("the store failed: {e}")),
    )
}

#[derive(Debug, Deserialize)]
struct LoginQuery {
    #[serde(default)]
    error: Option<String>,
}

async fn login_page(
    State(s): State<ConsoleState>,
    headers: HeaderMap,
    Query(q): Query<LoginQuery>,
) -> Response {
    if s.gate.identify(&headers, s.clock.now()).is_some() {
        return Redirect::to("/console/tenants").into_response();
    }
    html(
        StatusCode::OK,
        pages::login(s.gate.password_logins(), q.error.as_deref()),
    )
}

#[derive(Deserialize)]
struct LoginForm {
    user: String,
    password: String,
}

async fn login(
    State(s): State<ConsoleState>,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Response {
    if !s.gate.password_logins() {
        return forbidden("sign in through the proxy in front of the console");
    }
    match s.gate.login(&f.user, &f.password, s.clock.now()) {
        Ok(session) => {
            tracing::info!(user = %f.user.trim(), "console login");
            let cookie = auth::set_cookie(&session, s.gate.ttl(), !auth::loopback(&headers));
            (
                StatusCode::SEE_OTHER,
                [
                    (header::SET_COOKIE, cookie),
                    (header::LOCATION, "/console/tenants".to_owned()),
                ],
            )
                .into_response()
        }
        Err(auth::LoginRefused::Wrong) => html(
            StatusCode::UNAUTHORIZED,
            pages::login(true, Some("wrong user or password")),
        ),
        Err(auth::LoginRefused::Throttled) => html(
            StatusCode::TOO_MANY_REQUESTS,
            pages::login(
                true,
                Some("too many wrong passwords: wait a minute and try again"),
            ),
        ),
    }
}

#[derive(Debug, Default, Deserialize)]
struct ActionForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    dead_letter: Option<i64>,
    #[serde(default)]
    mode: Option<String>,
    /// A dead letters' error class (replay a group).
    #[serde(default)]
    class: Option<String>,
    /// `YYYY-MM-DDTHH:MM` in UTC (replay all since).
    #[serde(default)]
    since: Option<String>,
}

async fn logout(
    State(s): State<ConsoleState>,
    headers: HeaderMap,
    Form(f): Form<ActionForm>,
) -> Response {
    let who = match who(&s, &headers) {
        Ok(w) => w,
        Err(r) => return *r,
    };
    if !s.gate.csrf_ok(&who, &f.csrf) {
        return forbidden(BAD_CSRF);
    }
    let cookie = auth::set_cookie("", std::time::Duration::ZERO, !auth::loopback(&headers));
    (
        StatusCode::SEE_OTHER,
        [
            (header::SET_COOKIE, cookie),
            (header::LOCATION, "/console/login".to_owned()),
        ],
    )
        .into_response()
}

/// The tenants page's filters.
#[derive(Debug, Default, Deserialize)]
pub struct TenantFilter {
    /// Only tenants whose badge is not green.
    #[serde(default)]
    pub unhealthy: Option<String>,
    /// `location` or `agency`.
    #[serde(default)]
    pub kind: Option<String>,
    /// A part of the id or the name.
    #[serde(default)]
    pub name: Option<String>,
}

/// One tenant's row on the tenants page.
#[derive(Debug, Clone)]
pub struct TenantLine {
    pub row: operator::TenantRow,
    /// Why it is not green; empty when healthy.
    pub problems: Vec<String>,
    pub dead_letters: u64,
    pub last_runs: BTreeMap<&'static str, ports::store::SyncRun>,
    pub ekyte: EkyteKey,
    /// The location's GHL rate budget as a worker last saw it.
    pub rate: Option<ports::store::RateObservation>,
    /// How long its messages waited in the queue, as a worker last reported.
    pub waits: Option<ports::store::QueueObservation>,
}

/// A daily budget with less than this share left is a problem.
const DAILY_LOW: f64 = 0.05;
/// Messages that waited longer than this are a problem, when reported this recently.
const LONG_WAIT: chrono::Duration = chrono::Duration::minutes(5);
const RECENT_REPORT: chrono::Duration = chrono::Duration::minutes(15);

/// What the observations say is wrong.
fn observed_problems(
    rate: Option<&ports::store::RateObservation>,
    waits: Option<&ports::store::QueueObservation>,
    now: chrono::DateTime<chrono::Utc>,
) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some(r) = rate
        && let Some(left) = r.daily_remaining
        && r.daily_limit > 0
        && (left as f64) < r.daily_limit as f64 * DAILY_LOW
    {
        problems.push(format!(
            "GHL daily budget nearly spent: {left} of {} left (seen {})",
            r.daily_limit,
            operator::when(r.at)
        ));
    }
    if let Some(w) = waits
        && now - w.at < RECENT_REPORT
        && chrono::Duration::milliseconds(i64::try_from(w.longest_wait_ms).unwrap_or(i64::MAX))
            > LONG_WAIT
    {
        problems.push(format!(
            "messages waited up to {} in the queue (reported {})",
            humantime::format_duration(std::time::Duration::from_secs(w.longest_wait_ms / 1000)),
            operator::when(w.at)
        ));
    }
    problems
}

/// A tenant's eKyte credentials as the console shows them: never their values.
#[derive(Debug, Clone, Default)]
pub struct EkyteKey {
    /// An API key is stored.
    pub api_key: bool,
    /// A personal MCP token is stored with it (needed for updates).
    pub mcp_token: bool,
    /// The stored row cannot be read (the keys changed, a corrupt row).
    pub unreadable: Option<String>,
    /// The last check of the key found a problem (cleared by a passing check or a new key).
    pub failure: Option<ports::store::RefreshFailure>,
}

impl EkyteKey {
    pub fn read(
        read: Option<Result<ports::store::Credential, ports::StoreError>>,
        failure: Option<ports::store::RefreshFailure>,
    ) -> Self {
        use ports::store::CredentialSecret;
        use secrecy::ExposeSecret as _;
        let mut key = Self {
            failure,
            ..Self::default()
        };
        match read {
            None => {}
            Some(Ok(c)) => match c.secret {
                CredentialSecret::Ekyte { api_key, mcp_token } => {
                    key.api_key = !api_key.expose_secret().trim().is_empty();
                    key.mcp_token = mcp_token.is_some_and(|t| !t.expose_secret().trim().is_empty());
                }
                _ => {
                    key.unreadable = Some("the stored eKyte credential is not an eKyte key".into())
                }
            },
            Some(Err(e)) => key.unreadable = Some(e.to_string()),
        }
        key
    }

    /// Why the tenant cannot work with eKyte, if it cannot.
    pub fn problem(&self) -> Option<String> {
        if let Some(u) = &self.unreadable {
            return Some(format!("eKyte key unreadable: {u}"));
        }
        if !self.api_key {
            return Some("no eKyte API key: store one (`tenants add --ekyte-api-key`)".into());
        }
        self.failure
            .as_ref()
            .map(|f| format!("eKyte check failed {}: {}", operator::when(f.at), f.error))
    }
}

/// Every tenant the user may see, with its health, filtered.
pub async fn tenant_lines(
    s: &ConsoleState,
    who: &Who,
    filter: &TenantFilter,
) -> Result<Vec<TenantLine>, ports::StoreError> {
    let now = s.clock.now();
    let since = now - chrono::Duration::hours(1);
    let dead = s.dead_letters.summary(None, false, None).await?;
    let recent_dead = s.dead_letters.summary(None, true, Some(since)).await?;
    let mut failures =
        operator::failures_by_tenant(&recent_dead, &s.audit.failures_since(since).await?);
    // One read each for every tenant's runs and refresh failures.
    let mut runs: BTreeMap<TenantId, Vec<ports::store::SyncRun>> = BTreeMap::new();
    for run in s.runs.latest_runs().await? {
        runs.entry(run.tenant.clone()).or_default().push(run);
    }
    use ports::store::Provider;
    let mut refresh_failures: BTreeMap<TenantId, ports::store::RefreshFailure> = s
        .credentials
        .refresh_failures(Provider::Ghl)
        .await?
        .into_iter()
        .collect();
    let mut ghl_tokens: BTreeMap<TenantId, _> = s
        .credentials
        .all(Provider::Ghl)
        .await?
        .into_iter()
        .collect();
    let mut ekyte_keys: BTreeMap<TenantId, _> = s
        .credentials
        .all(Provider::Ekyte)
        .await?
        .into_iter()
        .collect();
    let rates: BTreeMap<String, ports::store::RateObservation> = s
        .observations
        .rates()
        .await?
        .into_iter()
        .map(|r| (r.resource.clone(), r))
        .collect();
    let mut waits: BTreeMap<TenantId, ports::store::QueueObservation> = s
        .observations
        .queue_waits()
        .await?
        .into_iter()
        .map(|w| (w.tenant.clone(), w))
        .collect();
    let mut ekyte_failures: BTreeMap<TenantId, ports::store::RefreshFailure> = s
        .credentials
        .refresh_failures(Provider::Ekyte)
        .await?
        .into_iter()
        .collect();
    let mut lines = Vec::new();
    for t in s.tenants.list().await? {
        if !who.may_see(&t.id) {
            continue;
        }
        let token = operator::GhlToken::read(ghl_tokens.remove(&t.id).unwrap_or_else(|| {
            Err(ports::StoreError::NotFound {
                what: format!("the GHL credentials of tenant {}", t.id),
            })
        }))
        .failed(refresh_failures.remove(&t.id));
        let ekyte = EkyteKey::read(ekyte_keys.remove(&t.id), ekyte_failures.remove(&t.id));
        let row = operator::TenantRow::with_token(&t, token);
        let dead_letters: u64 = dead
            .iter()
            .filter(|g| g.tenant.as_ref() == Some(&t.id))
            .map(|g| g.count)
            .sum();
        let mut last_runs = BTreeMap::new();
        for run in runs.remove(&t.id).unwrap_or_default() {
            last_runs.insert(run.kind.as_str(), run);
        }
        let mut problems = Vec::new();
        if t.state() != "active" {
            problems.push(format!("{} (nothing syncs)", t.state()));
        }
        if let Some(f) = &row.ghl_token.refresh_failure {
            problems.push(format!(
                "GHL token refresh failed {}: {}",
                operator::when(f.at),
                f.error
            ));
        }
        match (row.ghl_token.kind, row.ghl_token.expires_at) {
            ("none", _) => problems.push("no GHL token: install the app".to_owned()),
            ("unreadable", _) => problems.push(format!(
                "GHL token unreadable: {}",
                row.ghl_token.problem.as_deref().unwrap_or("unknown")
            )),
            ("oauth", Some(at)) if at < now => problems.push(format!(
                "GHL token expired {} and not refreshed",
                operator::when(at)
            )),
            _ => {}
        }
        for run in last_runs.values() {
            if t.active && s.schedule.late(run.kind, run.started_at, now) {
                problems.push(format!(
                    "last {} run is late: started {}, scheduled every {}",
                    run.kind.as_str(),
                    operator::when(run.started_at),
                    humantime::format_duration(s.schedule.every(run.kind))
                ));
            }
            if run.status == ports::store::RunStatus::Failed {
                problems.push(format!(
                    "last {} run failed: {}",
                    run.kind.as_str(),
                    run.error.as_deref().unwrap_or("no reason recorded")
                ));
            }
        }
        problems.extend(ekyte.problem());
        let rate = rates.get(t.location_id.as_str()).cloned();
        let wait = waits.remove(&t.id);
        problems.extend(observed_problems(rate.as_ref(), wait.as_ref(), now));
        if dead_letters > 0 {
            problems.push(format!("{dead_letters} dead letter(s)"));
        }
        for f in failures.remove(&t.id).unwrap_or_default() {
            problems.push(format!(
                "{} failure(s) in the last hour: {}",
                f.count, f.cause
            ));
        }
        lines.push(TenantLine {
            row,
            problems,
            dead_letters,
            last_runs,
            ekyte,
            rate,
            waits: wait,
        });
    }
    if who.tenants.is_none() {
        for p in s.agencies.pending_locations().await? {
            let row = operator::TenantRow::pending(&p);
            lines.push(TenantLine {
                problems: vec![format!("pending: {}", p.reason)],
                row,
                dead_letters: 0,
                last_runs: BTreeMap::new(),
                ekyte: EkyteKey::default(),
                rate: None,
                waits: None,
            });
        }
    }
    let name = filter
        .name
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_lowercase);
    lines.retain(|l| {
        filter.unhealthy.is_none() || !l.problems.is_empty()
    } && filter
        .kind
        .as_deref()
        .filter(|k| !k.is_empty())
        .is_none_or(|k| l.row.install_kind == k)
        && name.as_deref().is_none_or(|n| {
            l.row.id.as_str().contains(n) || l.row.name.to_lowercase().contains(n)
        }));
    Ok(lines)
}

async fn tenants_page(
    State(s): State<ConsoleState>,
    headers: HeaderMap,
    Query(filter): Query<TenantFilter>,
) -> Response {
    let who = match who(&s, &headers) {
        Ok(w) => w,
        Err(r) => return *r,
    };
    let depths = s.broker.depths().await.map_err(|e| e.to_string());
    match tenant_lines(&s, &who, &filter).await {
        Ok(lines) => html(
            StatusCode::OK,
            pages::tenants(&who, &s.gate.csrf_token(&who), &lines, &filter, &depths),
        ),
        Err(e) => store_failed(&e),
    }
}

fn tenant_id(raw: &str) -> Result<TenantId, Box<Response>> {
    TenantId::parse(raw).map_err(|_| {
        Box::new(html(
            StatusCode::NOT_FOUND,
            pages::message("Not found", "no such tenant"),
        ))
    })
}

/// The tenant page's dead-letter view: a page of letters, maybe of one error class.
#[derive(Debug, Default, Deserialize)]
pub struct LetterQuery {
    /// Letters older than this id (the next page).
    #[serde(default)]
    pub before: Option<i64>,
    /// Only letters of this error class.
    #[serde(default)]
    pub class: Option<String>,
}

/// Dead letters shown per page.
const LETTERS_PER_PAGE: usize = 25;

/// One page of a tenant's dead letters not replayed yet, newest first, of one class when
/// asked, and the id to page on from when there are more.
async fn letter_page(
    s: &ConsoleState,
    id: &TenantId,
    q: &LetterQuery,
) -> Result<(Vec<ports::store::DeadLetter>, Option<i64>), ports::StoreError> {
    const READ: u32 = 200;
    let class = q.class.as_deref().filter(|c| !c.is_empty());
    let mut shown = Vec::new();
    let mut before = q.before;
    loop {
        let batch = s
            .dead_letters
            .list(Some(id.clone()), false, before, READ)
            .await?;
        let exhausted = batch.len() < READ as usize;
        before = batch.last().map(|d| d.id);
        for d in batch {
            if class.is_none_or(|c| ports::failure::error_class(&d.letter.error_chain) == c) {
                if shown.len() == LETTERS_PER_PAGE {
                    let next = shown.last().map(|d: &ports::store::DeadLetter| d.id);
                    return Ok((shown, next));
                }
                shown.push(d);
            }
        }
        if exhausted {
            return Ok((shown, None));
        }
    }
}

async fn tenant_page(
    State(s): State<ConsoleState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<LetterQuery>,
) -> Response {
    let (who, tenant) = match seen_tenant(&s, &headers, &id).await {
        Ok(found) => found,
        Err(r) => return *r,
    };
    let id = tenant.id.clone();
    let row = operator::TenantRow::of(&tenant, s.credentials.as_ref()).await;
    let ekyte = EkyteKey::read(
        match s.credentials.get(&id, ports::store::Provider::Ekyte).await {
            Err(ports::StoreError::NotFound { .. }) => None,
            other => Some(other),
        },
        s.credentials
            .refresh_failure(&id, ports::store::Provider::Ekyte)
            .await
            .ok()
            .flatten(),
    );
    let read = async {
        let runs = s.runs.recent(&id, 20).await?;
        let groups = s
            .dead_letters
            .summary(Some(id.clone()), false, None)
            .await?;
        let (letters, next) = letter_page(&s, &id, &q).await?;
        Ok::<_, ports::StoreError>((runs, groups, letters, next))
    };
    let (runs, groups, letters, next) = match read.await {
        Ok(r) => r,
        Err(e) => return store_failed(&e),
    };
    html(
        StatusCode::OK,
        pages::tenant(
            &who,
            &s.gate.csrf_token(&who),
            &pages::TenantView {
                tenant: &tenant,
                row: &row,
                ekyte: &ekyte,
                runs: &runs,
                groups: &groups,
                letters: &letters,
                next_letters: next,
                class: q.class.as_deref().filter(|c| !c.is_empty()),
            },
            s.clock.now(),
        ),
    )
}

async fn act(
    State(s): State<ConsoleState>,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
    Form(f): Form<ActionForm>,
) -> Response {
    let who = match operator(&s, &headers, &f.csrf) {
        Ok(w) => w,
        Err(r) => return *r,
    };
    let id = match visible_tenant(&s, &who, &id).await {
        Ok(t) => t.id,
        Err(r) => return *r,
    };
    let done = match perform(&s, &id, &action, &f).await {
        Ok(Some(done)) => done,
        Ok(None) => {
            return html(
                StatusCode::NOT_FOUND,
                pages::message("Not found", "no such action"),
            );
        }
        Err(e) => {
            tracing::warn!(tenant = %id, action, error = %format!("{e:#}"), "console action failed");
            let tried = AuditEntry::operator(
                &id,
                s.clock.now(),
                &format!("console user {}", who.user),
                format!("{action} failed: {e:#}"),
            );
            if let Err(e) = s.audit.append(&[tried]).await {
                return store_failed(&e);
            }
            return html(
                StatusCode::UNPROCESSABLE_ENTITY,
                pages::message("The action failed", &format!("{e:#}")),
            );
        }
    };
    tracing::info!(tenant = %id, user = %who.user, action = %done, "console action");
    if let Err(e) = s
        .audit
        .append(&[AuditEntry::operator(
            &id,
            s.clock.now(),
            &format!("console user {}", who.user),
            done,
        )])
        .await
    {
        return store_failed(&e);
    }
    Redirect::to(&format!("/console/tenants/{id}")).into_response()
}

/// Carry out an action; `Ok(None)` for an unknown one. Returns what was done, for the audit.
async fn perform(
    s: &ConsoleState,
    id: &TenantId,
    action: &str,
    f: &ActionForm,
) -> anyhow::Result<Option<String>> {
    Ok(Some(match action {
        "replay" => {
            let dl = f
                .dead_letter
                .ok_or_else(|| anyhow::anyhow!("name the dead letter to replay"))?;
            let letter = s.dead_letters.get(dl).await?;
            if letter.letter.tenant.as_ref() != Some(id) {
                anyhow::bail!("dead letter {dl} is not tenant {id}'s");
            }
            if crate::admin::replay_one(s.dead_letters.as_ref(), s.publisher.as_ref(), dl).await? {
                format!("replayed dead letter {dl}")
            } else {
                format!("dead letter {dl} was replayed already")
            }
        }
        "replay-group" => {
            let class = f
                .class
                .clone()
                .filter(|c| !c.is_empty())
                .ok_or_else(|| anyhow::anyhow!("name the group to replay"))?;
            let n = crate::admin::replay_matching(
                s.dead_letters.as_ref(),
                s.publisher.as_ref(),
                id,
                |d| ports::failure::error_class(&d.letter.error_chain) == class,
            )
            .await?;
            format!("replayed {n} dead letter(s) of group \"{class}\"")
        }
        "replay-since" => {
            let raw = f.since.as_deref().unwrap_or_default().trim();
            let since = chrono::NaiveDateTime::parse_from_str(raw, "%Y-%m-%dT%H:%M")
                .or_else(|_| chrono::NaiveDateTime::parse_from_str(raw, "%Y-%m-%dT%H:%M:%S"))
                .map_err(|_| {
                    anyhow::anyhow!("give the time as YYYY-MM-DDTHH:MM (UTC), not {raw:?}")
                })?
                .and_utc();
            let n = crate::admin::replay_matching(
                s.dead_letters.as_ref(),
                s.publisher.as_ref(),
                id,
                |d| d.created_at >= since,
            )
            .await?;
            format!(
                "replayed {n} dead letter(s) created since {}",
                since.format("%Y-%m-%d %H:%M UTC")
            )
        }
        "refresh-token" => {
            let tenant = s.tenants.get(id).await?;
            let scope = ports::Scope::new(Arc::new(tenant), ports::Priority::RealTime);
            match s.ghl.refresh_token(&scope).await? {
                Some(until) => format!(
                    "refreshed the GHL token (valid until {})",
                    until.format("%Y-%m-%d %H:%M UTC")
                ),
                None => "refreshed the GHL token".to_owned(),
            }
        }
        "check-ekyte" => {
            let tenant = s.tenants.get(id).await?;
            let scope = ports::Scope::new(Arc::new(tenant), ports::Priority::RealTime);
            let outcome = s.ekyte.check(&scope).await;
            let failure = match &outcome {
                Ok(problems) if problems.is_empty() => None,
                Ok(problems) => Some(problems.join("; ")),
                Err(e @ ports::ApiError::Unauthorized { .. }) => Some(e.to_string()),
                // eKyte did not answer: nothing is known about the key.
                Err(_) => None,
            };
            if outcome.is_ok() || failure.is_some() {
                s.credentials
                    .note_refresh(id, ports::store::Provider::Ekyte, failure.clone())
                    .await?;
            }
            match (outcome, failure) {
                (Ok(_), None) => {
                    "checked eKyte: the key, the user and the task type work".to_owned()
                }
                (_, Some(why)) => format!("checked eKyte: {why}"),
                (Err(e), None) => return Err(anyhow::Error::new(e).context("asking eKyte")),
            }
        }
        "pause" | "resume" => {
            let active = action == "resume";
            s.tenants.set_active(id, active).await?;
            format!("{action}d the tenant")
        }
        "sync" => {
            let mode = match f.mode.as_deref() {
                Some("full") => SyncMode::Full,
                Some("incremental") | None => SyncMode::Incremental,
                Some(other) => anyhow::bail!("unknown sync mode {other:?}"),
            };
            let now = s.clock.now();
            let name = match mode {
                SyncMode::Full => "full",
                SyncMode::Incremental => "incremental",
            };
            let env = Envelope::new(
                format!("console:{name}:{id}:{}", uuid::Uuid::new_v4().simple()),
                id.clone(),
                Payload::SyncFull {
                    mode,
                    dry_run: false,
                },
                now,
            );
            s.publisher.publish(&env).await?;
            format!("started a {name} sync")
        }
        _ => return Ok(None),
    }))
}

/// The tenant a page is about, when the user may see it.
async fn visible_tenant(
    s: &ConsoleState,
    who: &Who,
    raw: &str,
) -> Result<domain::Tenant, Box<Response>> {
    let id = tenant_id(raw)?;
    if !who.may_see(&id) {
        return Err(Box::new(forbidden("this account may not see that tenant")));
    }
    match s.tenants.get(&id).await {
        Ok(t) => Ok(t),
        Err(ports::StoreError::NotFound { .. }) => Err(Box::new(html(
            StatusCode::NOT_FOUND,
            pages::message("Not found", "no such tenant"),
        ))),
        Err(e) => Err(Box::new(store_failed(&e))),
    }
}

/// The signed-in user and the tenant a page names, when the user may see it.
async fn seen_tenant(
    s: &ConsoleState,
    headers: &HeaderMap,
    raw: &str,
) -> Result<(Who, domain::Tenant), Box<Response>> {
    let who = who(s, headers)?;
    let tenant = visible_tenant(s, &who, raw).await?;
    Ok((who, tenant))
}

/// The tenant and the GHL contact a contact route names, when the user may see the tenant.
async fn visible_contact(
    s: &ConsoleState,
    who: &Who,
    tenant: &str,
    contact: &str,
) -> Result<(domain::Tenant, domain::GhlContactId), Box<Response>> {
    let tenant = visible_tenant(s, who, tenant).await?;
    let contact = domain::GhlContactId::parse(contact).map_err(|_| {
        Box::new(html(
            StatusCode::NOT_FOUND,
            pages::message("Not found", "not a GHL contact id"),
        ))
    })?;
    Ok((tenant, contact))
}

#[derive(Debug, Default, Deserialize)]
struct SearchQuery {
    #[serde(default)]
    q: String,
}

async fn contacts_page(
    State(s): State<ConsoleState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<SearchQuery>,
) -> Response {
    let (who, tenant) = match seen_tenant(&s, &headers, &id).await {
        Ok(found) => found,
        Err(r) => return *r,
    };
    match contact::find(&s, &tenant.id, &q.q).await {
        Ok(found) if found.len() == 1 && !q.q.trim().is_empty() => {
            match found[0].ghl_id.as_deref() {
                Some(g) => Redirect::to(&format!("/console/tenants/{}/contacts/{g}", tenant.id))
                    .into_response(),
                None => html(
                    StatusCode::OK,
                    pages::contacts(&who, &s.gate.csrf_token(&who), &tenant, &q.q, &found),
                ),
            }
        }
        Ok(found) => html(
            StatusCode::OK,
            pages::contacts(&who, &s.gate.csrf_token(&who), &tenant, &q.q, &found),
        ),
        Err(e) => store_failed(&e),
    }
}

async fn contact_page(
    State(s): State<ConsoleState>,
    headers: HeaderMap,
    Path((id, contact_id)): Path<(String, String)>,
) -> Response {
    let who = match who(&s, &headers) {
        Ok(w) => w,
        Err(r) => return *r,
    };
    let (tenant, ghl_id) = match visible_contact(&s, &who, &id, &contact_id).await {
        Ok(found) => found,
        Err(r) => return *r,
    };
    match contact::view(&s, tenant, &ghl_id).await {
        Ok(view) => html(
            StatusCode::OK,
            pages::contact(&who, &s.gate.csrf_token(&who), &view, None, &s.deep_links),
        ),
        Err(e) => store_failed(&e),
    }
}

async fn contact_action(
    State(s): State<ConsoleState>,
    headers: HeaderMap,
    Path((id, contact_id, action)): Path<(String, String, String)>,
    Form(f): Form<ActionForm>,
) -> Response {
    let who = match operator(&s, &headers, &f.csrf) {
        Ok(w) => w,
        Err(r) => return *r,
    };
    let (tenant, ghl_id) = match visible_contact(&s, &who, &id, &contact_id).await {
        Ok(found) => found,
        Err(r) => return *r,
    };
    let now = s.clock.now();
    let actor = format!("console user {}", who.user);
    match action.as_str() {
        "sync" => {
            let env = Envelope::new(
                format!("console:contact:{ghl_id}:{}", uuid::Uuid::new_v4().simple()),
                tenant.id.clone(),
                Payload::SyncContact {
                    contact: ghl_id.clone(),
                    dry_run: false,
                    prefetched: None,
                },
                now,
            );
            if let Err(e) = s.publisher.publish(&env).await {
                return html(
                    StatusCode::SERVICE_UNAVAILABLE,
                    pages::message(
                        "The action failed",
                        &format!("could not queue the sync: {e}"),
                    ),
                );
            }
            let mut entry = AuditEntry::operator(
                &tenant.id,
                now,
                &actor,
                format!("queued a sync of contact {ghl_id}"),
            );
            entry.contact = Some(ghl_id.clone());
            entry.ghl_id = Some(ghl_id.to_string());
            if let Err(e) = s.audit.append(&[entry]).await {
                return store_failed(&e);
            }
            Redirect::to(&format!("/console/tenants/{}/contacts/{ghl_id}", tenant.id))
                .into_response()
        }
        "dry-run" => {
            let scope = ports::Scope::new(Arc::new(tenant.clone()), ports::Priority::RealTime);
            let planned = s
                .engine
                .sync_contact(
                    scope,
                    &ghl_id,
                    engine::Options {
                        dry_run: true,
                        message_id: Some(format!(
                            "console-dry-run:{}",
                            uuid::Uuid::new_v4().simple()
                        )),
                        ..engine::Options::default()
                    },
                )
                .await
                .map_err(|e| format!("{e:#}"));
            tracing::info!(tenant = %tenant.id, user = %who.user, contact = %ghl_id, "console dry-run");
            match contact::view(&s, tenant, &ghl_id).await {
                Ok(view) => html(
                    StatusCode::OK,
                    pages::contact(
                        &who,
                        &s.gate.csrf_token(&who),
                        &view,
                        Some(&planned),
                        &s.deep_links,
                    ),
                ),
                Err(e) => store_failed(&e),
            }
        }
        _ => html(
            StatusCode::NOT_FOUND,
            pages::message("Not found", "no such action"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chrono::TimeZone;
    use ports::store::RunKind;

    use super::Schedule;

    #[test]
    fn a_nearly_spent_daily_budget_and_a_long_recent_wait_are_problems() {
        let now = chrono::Utc.with_ymd_and_hms(2026, 12, 6, 12, 0, 0).unwrap();
        let rate = |left: u64| ports::store::RateObservation {
            resource: "loc".into(),
            max: 100,
            interval_ms: 10_000,
            remaining: Some(50),
            daily_limit: 200_000,
            daily_remaining: Some(left),
            throttled: 0,
            at: now,
        };
        let wait = |ms: u64, minutes_ago: i64| ports::store::QueueObservation {
            tenant: domain::TenantId::parse("acme").unwrap(),
            taken: 3,
            longest_wait_ms: ms,
            last_wait_ms: ms,
            at: now - chrono::Duration::minutes(minutes_ago),
        };
        assert!(super::observed_problems(Some(&rate(10_000)), None, now).is_empty());
        let low = super::observed_problems(Some(&rate(9_999)), None, now);
        assert_eq!(low.len(), 1);
        assert!(low[0].contains("9999 of 200000 left"), "{low:?}");
        let long = super::observed_problems(None, Some(&wait(301_000, 1)), now);
        assert!(long[0].contains("waited up to 5m 1s"), "{long:?}");
        assert!(super::observed_problems(None, Some(&wait(299_000, 1)), now).is_empty());
        assert!(
            super::observed_problems(None, Some(&wait(3_600_000, 16)), now).is_empty(),
            "an old report is no longer news"
        );
    }

    #[test]
    fn a_run_is_late_after_twice_its_interval() {
        let s = Schedule {
            incremental: Duration::from_secs(15 * 60),
            full: Duration::from_secs(24 * 3600),
            poll: Duration::from_secs(60),
        };
        let now = chrono::Utc.with_ymd_and_hms(2026, 12, 6, 12, 0, 0).unwrap();
        let ago = |m: i64| now - chrono::Duration::minutes(m);
        assert!(!s.late(RunKind::Incremental, ago(30), now), "exactly twice");
        assert!(s.late(RunKind::Incremental, ago(31), now));
        assert!(!s.late(RunKind::Full, ago(47 * 60), now));
        assert!(s.late(RunKind::Full, ago(49 * 60), now));
        assert!(s.late(RunKind::Poll, ago(3), now));
    }
}
