//! Test helpers: tenants, in-memory doubles of the store ports the adapter uses, and a started
//! sandbox with a seeded company.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::{
    EkyteCompanyId, EkyteMapping, EkyteTaskTypeId, EntityKind, LocationId, Tenant, TenantId,
    TenantSettings,
};
use ekyte::{EkyteAdapter, EkyteConfig, RetryConfig};
use ports::store::{
    Claim, ClaimKey, Credential, CredentialSecret, CredentialStore, DuePredicate, Link, LinkState,
    LinkStore, LinkUpdate, NewCredential, Provider, RefreshError, Refresher, RunCounts, RunKind,
    RunStatus, RunStore, SyncRun,
};
use ports::{Priority, Scope, StoreError};
use sandbox::ekyte::{
    DefaultCompany, EkyteConfig as SimConfig, EkyteSandbox, NewCompany, NewPhase, NewTaskType,
    NewUser, NewWorkflow, NewWorkspace, Profile, SeededUser,
};
use secrecy::SecretString;

pub fn tenant(company: i64, settings: EkyteMapping) -> Tenant {
    Tenant {
        id: TenantId::parse("acme").unwrap(),
        name: "Acme".into(),
        location_id: LocationId::parse("loc1").unwrap(),
        ekyte_company_id: EkyteCompanyId::new(company as u64).unwrap(),
        active: true,
        settings: TenantSettings {
            ekyte: settings,
            ..TenantSettings::default()
        },
        install: Default::default(),
    }
}

pub fn scope_of(t: Tenant) -> Scope {
    Scope::new(Arc::new(t), Priority::RealTime)
}

/// Fast retries so tests of retry paths take milliseconds.
pub fn fast_config(base_url: &str) -> EkyteConfig {
    EkyteConfig {
        retry: RetryConfig {
            max_attempts: 3,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
        },
        request_timeout: Duration::from_secs(5),
        ..EkyteConfig::for_base_url(base_url).unwrap()
    }
}

// ----- credentials ---------------------------------------------------------------------------

#[derive(Default)]
pub struct MemCredentials {
    secret: Mutex<Option<CredentialSecret>>,
}

impl MemCredentials {
    pub fn new(api_key: &str, mcp_token: Option<&str>) -> Arc<Self> {
        let c = Arc::new(Self::default());
        c.set(api_key, mcp_token);
        c
    }

    pub fn set(&self, api_key: &str, mcp_token: Option<&str>) {
        *self.secret.lock().unwrap() = Some(CredentialSecret::Ekyte {
            api_key: SecretString::from(api_key.to_owned()),
            mcp_token: mcp_token.map(|t| SecretString::from(t.to_owned())),
        });
    }
}

#[async_trait]
impl CredentialStore for MemCredentials {
    /// One secret for whichever tenant asks: no tenant to list.
    async fn all(
        &self,
        _provider: Provider,
    ) -> Result<Vec<(TenantId, ports::store::CredentialRead)>, StoreError> {
        Ok(Vec::new())
    }

    async fn get(&self, tenant: &TenantId, provider: Provider) -> Result<Credential, StoreError> {
        let secret = self.secret.lock().unwrap().clone();
        match (provider, secret) {
            (Provider::Ekyte, Some(secret)) => Ok(Credential {
                tenant: tenant.clone(),
                provider,
                secret,
                expires_at: None,
                version: 1,
                updated_at: Utc::now(),
            }),
            _ => Err(StoreError::NotFound {
                what: "credential".into(),
            }),
        }
    }

    async fn put(
        &self,
        tenant: &TenantId,
        provider: Provider,
        credential: &NewCredential,
    ) -> Result<Credential, StoreError> {
        *self.secret.lock().unwrap() = Some(credential.secret.clone());
        self.get(tenant, provider).await
    }

    async fn delete(&self, _tenant: &TenantId, _provider: Provider) -> Result<(), StoreError> {
        *self.secret.lock().unwrap() = None;
        Ok(())
    }

    async fn with_credential_lock(
        &self,
        tenant: &TenantId,
        provider: Provider,
        due: DuePredicate,
        refresh: Refresher,
    ) -> Result<Credential, RefreshError> {
        let current = self.get(tenant, provider).await?;
        if !due(&current) {
            return Ok(current);
        }
        let new = refresh(current).await?;
        Ok(self.put(tenant, provider, &new).await?)
    }
}

// ----- links ---------------------------------------------------------------------------------

/// The link store as a vector; enough of the contract for the poller and its tests.
#[derive(Default)]
pub struct MemLinks {
    rows: Mutex<Vec<Link>>,
}

impl MemLinks {
    pub fn all(&self) -> Vec<Link> {
        self.rows.lock().unwrap().clone()
    }
}

fn row(id: i64, tenant: &TenantId, kind: EntityKind, u: &LinkUpdate) -> Link {
    Link {
        id,
        tenant: tenant.clone(),
        kind,
        ghl_id: u.ghl_id.clone(),
        ekyte_id: u.ekyte_id.clone(),
        ghl_parent: u.ghl_parent.clone(),
        ekyte_parent: u.ekyte_parent.clone(),
        state: u.state,
        base: u.base.clone(),
        ghl_fp: u.ghl_fp,
        ekyte_fp: u.ekyte_fp,
        version: 1,
        claimed_by: None,
        claimed_at: None,
        created_at: Utc::now(),
        updated_at: Utc::now(),
    }
}

#[async_trait]
impl LinkStore for MemLinks {
    async fn by_ghl(
        &self,
        t: &TenantId,
        k: EntityKind,
        id: &str,
    ) -> Result<Option<Link>, StoreError> {
        Ok(self
            .all()
            .into_iter()
            .find(|l| &l.tenant == t && l.kind == k && l.ghl_id.as_deref() == Some(id)))
    }

    async fn by_ekyte(
        &self,
        t: &TenantId,
        k: EntityKind,
        id: &str,
    ) -> Result<Option<Link>, StoreError> {
        Ok(self
            .all()
            .into_iter()
            .find(|l| &l.tenant == t && l.kind == k && l.ekyte_id.as_deref() == Some(id)))
    }

    async fn by_ghl_parent(
        &self,
        t: &TenantId,
        k: EntityKind,
        p: &str,
    ) -> Result<Vec<Link>, StoreError> {
        Ok(self
            .all()
            .into_iter()
            .filter(|l| &l.tenant == t && l.kind == k && l.ghl_parent.as_deref() == Some(p))
            .collect())
    }

    async fn by_ekyte_parent(
        &self,
        t: &TenantId,
        k: EntityKind,
        p: &str,
    ) -> Result<Vec<Link>, StoreError> {
        Ok(self
            .all()
            .into_iter()
            .filter(|l| &l.tenant == t && l.kind == k && l.ekyte_parent.as_deref() == Some(p))
            .collect())
    }

    async fn list(
        &self,
        t: &TenantId,
        k: EntityKind,
        after_id: i64,
        limit: u32,
    ) -> Result<Vec<Link>, StoreError> {
        let mut rows: Vec<Link> = self
            .all()
            .into_iter()
            .filter(|l| &l.tenant == t && l.kind == k && l.id > after_id)
            .collect();
        rows.sort_by_key(|l| l.id);
        rows.truncate(limit as usize);
        Ok(rows)
    }

    async fn claim(
        &self,
        _key: &ClaimKey,
        _owner: &str,
        _stale: Duration,
    ) -> Result<Claim, StoreError> {
        Err(StoreError::Unknown(anyhow::anyhow!(
            "not used by the adapter"
        )))
    }

    async fn complete(
        &self,
        link_id: i64,
        expected_version: i64,
        u: &LinkUpdate,
    ) -> Result<Link, StoreError> {
        let mut rows = self.rows.lock().unwrap();
        let l = rows
            .iter_mut()
            .find(|l| l.id == link_id)
            .ok_or(StoreError::NotFound {
                what: "link".into(),
            })?;
        if l.version != expected_version {
            return Err(StoreError::Conflict {
                message: "version".into(),
            });
        }
        let mut next = row(l.id, &l.tenant, l.kind, u);
        next.version = l.version + 1;
        *l = next.clone();
        Ok(next)
    }

    async fn release(&self, link_id: i64) -> Result<(), StoreError> {
        self.rows
            .lock()
            .unwrap()
            .retain(|l| l.id != link_id || l.state != LinkState::Claimed);
        Ok(())
    }
    async fn pending_ekyte_creates(
        &self,
        tenant: &TenantId,
        kind: EntityKind,
        since: chrono::DateTime<chrono::Utc>,
    ) -> Result<u64, StoreError> {
        let rows = self.rows.lock().unwrap();
        let pending = rows.iter().filter(|l| {
            &l.tenant == tenant
                && l.kind == kind
                && l.state == LinkState::Claimed
                && l.ekyte_id.is_none()
                && l.claimed_at.is_some_and(|at| at >= since)
        });
        Ok(pending.count() as u64)
    }

    async fn insert_linked(
        &self,
        t: &TenantId,
        k: EntityKind,
        u: &LinkUpdate,
    ) -> Result<Link, StoreError> {
        let mut rows = self.rows.lock().unwrap();
        if rows.iter().any(|l| {
            &l.tenant == t && l.kind == k && u.ekyte_id.is_some() && l.ekyte_id == u.ekyte_id
        }) {
            return Err(StoreError::Conflict {
                message: "already linked".into(),
            });
        }
        let id = rows.len() as i64 + 1;
        let link = row(id, t, k, u);
        rows.push(link.clone());
        Ok(link)
    }
}

// ----- runs ----------------------------------------------------------------------------------

#[derive(Default)]
pub struct MemRuns {
    runs: Mutex<Vec<SyncRun>>,
    pub checkpoints: Mutex<Vec<(i64, Option<String>, RunCounts)>>,
}

impl MemRuns {
    pub fn all(&self) -> Vec<SyncRun> {
        self.runs.lock().unwrap().clone()
    }
}

#[async_trait]
impl RunStore for MemRuns {
    async fn running(
        &self,
        tenant: &TenantId,
        kind: RunKind,
    ) -> Result<Option<SyncRun>, StoreError> {
        Ok(self
            .runs
            .lock()
            .unwrap()
            .iter()
            .find(|r| &r.tenant == tenant && r.kind == kind && r.status == RunStatus::Running)
            .cloned())
    }

    async fn mark_seen(&self, _run_id: i64, _ghl_ids: &[String]) -> Result<(), StoreError> {
        Ok(())
    }

    /// The eKyte poll's tests keep no contact links.
    async fn unseen_contacts(
        &self,
        _tenant: &TenantId,
        _run_id: i64,
        _after_id: i64,
        _limit: u32,
    ) -> Result<Vec<(i64, String)>, StoreError> {
        Ok(Vec::new())
    }

    /// The eKyte poll reads no calendars.
    async fn keep_appointments(
        &self,
        _run_id: i64,
        _appointments: &[ports::ghl::GhlAppointment],
    ) -> Result<(), StoreError> {
        Err(StoreError::Unknown(anyhow::anyhow!(
            "the eKyte poll's tests keep no appointments"
        )))
    }

    async fn kept_appointments(
        &self,
        _run_id: i64,
        _contacts: &[String],
    ) -> Result<Vec<ports::ghl::GhlAppointment>, StoreError> {
        Ok(Vec::new())
    }

    async fn start_or_resume(
        &self,
        tenant: &TenantId,
        kind: RunKind,
        since: Option<DateTime<Utc>>,
    ) -> Result<SyncRun, StoreError> {
        let mut runs = self.runs.lock().unwrap();
        if let Some(r) = runs
            .iter()
            .find(|r| &r.tenant == tenant && r.kind == kind && r.status == RunStatus::Running)
        {
            return Ok(r.clone());
        }
        let run = SyncRun {
            id: runs.len() as i64 + 1,
            tenant: tenant.clone(),
            kind,
            status: RunStatus::Running,
            cursor: None,
            since,
            counts: RunCounts::default(),
            error: None,
            started_at: Utc::now(),
            updated_at: Utc::now(),
            finished_at: None,
        };
        runs.push(run.clone());
        Ok(run)
    }

    async fn checkpoint(
        &self,
        run_id: i64,
        cursor: Option<String>,
        counts: RunCounts,
    ) -> Result<(), StoreError> {
        self.checkpoints
            .lock()
            .unwrap()
            .push((run_id, cursor.clone(), counts));
        let mut runs = self.runs.lock().unwrap();
        let r = runs
            .iter_mut()
            .find(|r| r.id == run_id)
            .ok_or(StoreError::NotFound { what: "run".into() })?;
        r.cursor = cursor;
        r.counts = counts;
        r.updated_at = Utc::now();
        Ok(())
    }

    async fn finish(
        &self,
        run_id: i64,
        status: RunStatus,
        error: Option<String>,
    ) -> Result<(), StoreError> {
        let mut runs = self.runs.lock().unwrap();
        let r = runs
            .iter_mut()
            .find(|r| r.id == run_id)
            .ok_or(StoreError::NotFound { what: "run".into() })?;
        r.status = status;
        r.error = error;
        r.finished_at = Some(Utc::now());
        Ok(())
    }

    async fn last_completed(
        &self,
        tenant: &TenantId,
        kind: RunKind,
    ) -> Result<Option<SyncRun>, StoreError> {
        Ok(self
            .all()
            .into_iter()
            .filter(|r| &r.tenant == tenant && r.kind == kind && r.status == RunStatus::Completed)
            .max_by_key(|r| r.id))
    }

    async fn recent(&self, tenant: &TenantId, limit: u32) -> Result<Vec<SyncRun>, StoreError> {
        let mut runs: Vec<SyncRun> = self
            .all()
            .into_iter()
            .filter(|r| &r.tenant == tenant)
            .collect();
        runs.sort_by_key(|r| std::cmp::Reverse(r.id));
        runs.truncate(limit as usize);
        Ok(runs)
    }

    async fn latest_runs(&self) -> Result<Vec<SyncRun>, StoreError> {
        let mut newest: std::collections::BTreeMap<(String, &'static str), SyncRun> =
            std::collections::BTreeMap::new();
        for r in self.all() {
            let key = (r.tenant.to_string(), r.kind.as_str());
            if newest.get(&key).is_none_or(|n| n.id < r.id) {
                newest.insert(key, r);
            }
        }
        Ok(newest.into_values().collect())
    }
}

// ----- a sandbox with a company --------------------------------------------------------------

pub struct Env {
    pub sb: EkyteSandbox,
    pub co: DefaultCompany,
    pub creds: Arc<MemCredentials>,
    pub adapter: EkyteAdapter,
    pub scope: Scope,
}

impl Env {
    /// The default company (America/Sao_Paulo), credentials with or without the owner's MCP
    /// token.
    pub async fn start(with_mcp: bool) -> Self {
        Self::start_with(SimConfig::default(), with_mcp).await
    }

    pub async fn start_with(config: SimConfig, with_mcp: bool) -> Self {
        let sb = EkyteSandbox::start(config).await.unwrap();
        let co = sb.seed_default_company().unwrap();
        Self::over(sb, co, with_mcp)
    }

    pub fn over(sb: EkyteSandbox, co: DefaultCompany, with_mcp: bool) -> Self {
        let token = co.admin.mcp_token.clone();
        let creds =
            MemCredentials::new(&co.api_key, if with_mcp { token.as_deref() } else { None });
        let adapter = EkyteAdapter::new(fast_config(&sb.base_url()), creds.clone()).unwrap();
        let scope = scope_of(tenant(
            co.company_id,
            EkyteMapping {
                task_type_id: Some(EkyteTaskTypeId::new(co.task_type_id as u64).unwrap()),
                user_email: Some(co.admin.email.clone()),
                timezone: co.timezone.clone(),
                board_title: "GHL".into(),
                default_location: false,
            },
        ));
        Self {
            sb,
            co,
            creds,
            adapter,
            scope,
        }
    }

    pub fn company(&self) -> i64 {
        self.co.company_id
    }

    pub fn requests(&self) -> u64 {
        self.sb.counters().snapshot().total_requests()
    }
}

/// A company like the default one but in another time zone (the default seed is São Paulo).
pub fn seed_company_in(sb: &EkyteSandbox, timezone: &str) -> DefaultCompany {
    let company = sb
        .create_company(NewCompany {
            name: "Agência Fuso".into(),
            timezone: Some(timezone.into()),
            ..NewCompany::default()
        })
        .unwrap();
    let c = company.id;
    let admin = SeededUser {
        id: uuid_v4(),
        email: format!("owner+{c}@fuso.example"),
        user_name: "Olga Owner".into(),
        mcp_token: Some(format!("{:064x}", c as u128 * 7919)),
    };
    sb.create_user(
        c,
        NewUser {
            id: Some(admin.id),
            user_name: admin.user_name.clone(),
            email: admin.email.clone(),
            profile: Profile::Owner,
            mcp_token: admin.mcp_token.clone(),
        },
    )
    .unwrap();
    let wf = sb
        .create_workflow(
            c,
            NewWorkflow {
                name: "Fluxo".into(),
                active: true,
                phases: vec![NewPhase::named("Fazer"), NewPhase::named("Revisar")],
            },
        )
        .unwrap();
    let phase_ids: Vec<i64> = wf.phases.iter().map(|p| p.id).collect();
    let task_type_id = sb
        .create_task_type(
            c,
            NewTaskType {
                name: "Tarefa".into(),
                workflow_id: wf.id,
                active: true,
                group: None,
                default_executors: Default::default(),
            },
        )
        .unwrap();
    let workspace_id = sb
        .create_workspace(
            c,
            NewWorkspace {
                name: "Cliente Fuso".into(),
                members: vec![admin.id],
                created_by: Some(admin.id),
                ..NewWorkspace::default()
            },
        )
        .unwrap();
    DefaultCompany {
        company_id: c,
        api_key: company.api_key,
        timezone: timezone.into(),
        editor: admin.clone(),
        admin,
        workflow_id: wf.id,
        phase_ids,
        task_type_id,
        workspace_id,
    }
}

fn uuid_v4() -> uuid::Uuid {
    uuid::Uuid::new_v4()
}

/// The task as eKyte should hold it once `changes` are made to `base`: what `update_task`
/// is given besides the changes.
pub fn target_of(base: &domain::Task, changes: &[domain::FieldChange]) -> domain::Task {
    use domain::Record;
    let mut t = base.clone();
    for c in changes {
        t.set(c.field, c.to.clone());
    }
    t
}

/// A task of a title and a due date of its own, to change in tests.
pub fn some_task() -> domain::Task {
    domain::Task {
        title: Some("Tarefa".into()),
        due: Some(chrono::Utc::now()),
        ..domain::Task::default()
    }
}
