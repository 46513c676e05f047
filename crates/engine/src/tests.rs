//! Port-level tests that pin the engine's decisions: `mockall` mocks for the vendor ports
//! (with `times(…)` on the writes a decision must or must not make), small in-memory fakes
//! for the stores.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};

use domain::{
    Contact, EkyteTaskId, EkyteWorkspaceId, EntityKind, ExternalRef, Fingerprint, GhlContactId,
    GhlTaskId, LocationId, Record, Side, Task, Tenant, TenantId, TenantSettings, profile,
};
use ports::ekyte::{
    Capabilities, EkyteChange, EkyteTask, MockEkyteApi, MockEkyteChangeSource, Workspace,
};
use ports::ghl::{GhlContact, GhlEvent, GhlEventKind, GhlTask, MockGhlApi};
use ports::queue::MockPublisher;
use ports::store::{
    AuditAction, AuditEntry, AuditLog, AuditQuery, AuditRecord, BaseRecord, Claim, ClaimKey,
    ContactLocks, Inbox, Link, LinkState, LinkStore, LinkUpdate, LockGuard, MockRunStore,
    MockTenantStore,
};
use ports::{ApiError, Clock, Scope, StoreError};

use crate::{Engine, Options, Ports, Settings};

// ------------------------------------------------------------------ in-memory store fakes

#[derive(Default)]
struct FakeLinks {
    rows: Mutex<Vec<Link>>,
    /// Calls of `complete`, and the sizes of the calls of `complete_many`.
    singles: Mutex<usize>,
    batches: Mutex<Vec<usize>>,
    /// Reads of a contact's links at once (`of_contact`).
    contact_reads: Mutex<usize>,
    /// Reads of one link by its GHL id (`by_ghl`).
    ghl_reads: Mutex<usize>,
    /// `complete_many` refuses, as a database gone away would.
    refuse_batches: Mutex<bool>,
}

impl FakeLinks {
    fn all(&self) -> Vec<Link> {
        self.rows.lock().unwrap().clone()
    }

    fn find(&self, kind: EntityKind, pred: impl Fn(&Link) -> bool) -> Option<Link> {
        self.all().into_iter().find(|l| l.kind == kind && pred(l))
    }

    /// The last seeded link is a claim `owner` has held since `at`.
    fn hold_last(&self, owner: &str, at: DateTime<Utc>) {
        let mut rows = self.rows.lock().unwrap();
        let claim = rows.last_mut().unwrap();
        claim.claimed_by = Some(owner.to_owned());
        claim.claimed_at = Some(at);
    }

    fn seed(&self, tenant: &TenantId, kind: EntityKind, u: LinkUpdate) {
        let mut rows = self.rows.lock().unwrap();
        let id = rows.len() as i64 + 1;
        rows.push(link_from(id, tenant, kind, &u, 1));
    }

    /// A task claim of the contact's workspace, by the side's id it was claimed for.
    fn seed_claimed_task(&self, tenant: &TenantId, ghl_id: Option<&str>, ekyte_id: Option<&str>) {
        self.seed(
            tenant,
            EntityKind::Task,
            LinkUpdate {
                ghl_id: ghl_id.map(str::to_owned),
                ekyte_id: ekyte_id.map(str::to_owned),
                ghl_parent: Some(CONTACT.into()),
                ekyte_parent: Some(WS.to_string()),
                state: LinkState::Claimed,
                base: BaseRecord::None,
                ghl_fp: None,
                ekyte_fp: None,
            },
        );
    }
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 6, 1, 12, 0, 0).unwrap()
}

fn link_from(id: i64, tenant: &TenantId, kind: EntityKind, u: &LinkUpdate, version: i64) -> Link {
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
        version,
        claimed_by: None,
        claimed_at: None,
        created_at: t0(),
        updated_at: t0(),
    }
}

impl FakeLinks {
    fn complete_row(&self, id: i64, version: i64, u: &LinkUpdate) -> Result<Link, StoreError> {
        let mut rows = self.rows.lock().unwrap();
        let l = rows
            .iter_mut()
            .find(|l| l.id == id)
            .ok_or(StoreError::NotFound {
                what: format!("link {id}"),
            })?;
        if l.version != version {
            return Err(StoreError::Conflict {
                message: "version".into(),
            });
        }
        let updated = link_from(id, &l.tenant, l.kind, u, version + 1);
        *l = updated.clone();
        Ok(updated)
    }
}

#[async_trait]
impl LinkStore for FakeLinks {
    async fn by_ghl(
        &self,
        t: &TenantId,
        k: EntityKind,
        id: &str,
    ) -> Result<Option<Link>, StoreError> {
        *self.ghl_reads.lock().unwrap() += 1;
        Ok(self.find(k, |l| &l.tenant == t && l.ghl_id.as_deref() == Some(id)))
    }
    async fn by_ekyte(
        &self,
        t: &TenantId,
        k: EntityKind,
        id: &str,
    ) -> Result<Option<Link>, StoreError> {
        Ok(self.find(k, |l| &l.tenant == t && l.ekyte_id.as_deref() == Some(id)))
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
    async fn of_contact(&self, t: &TenantId, c: &str) -> Result<Vec<Link>, StoreError> {
        *self.contact_reads.lock().unwrap() += 1;
        Ok(self
            .all()
            .into_iter()
            .filter(|l| {
                &l.tenant == t
                    && match l.kind {
                        EntityKind::Contact | EntityKind::ProfileNote => {
                            l.ghl_id.as_deref() == Some(c)
                        }
                        EntityKind::Task | EntityKind::Note => l.ghl_parent.as_deref() == Some(c),
                        _ => false,
                    }
            })
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
        after: i64,
        limit: u32,
    ) -> Result<Vec<Link>, StoreError> {
        Ok(self
            .all()
            .into_iter()
            .filter(|l| &l.tenant == t && l.kind == k && l.id > after)
            .take(limit as usize)
            .collect())
    }
    async fn claim(
        &self,
        key: &ClaimKey,
        owner: &str,
        stale: Duration,
    ) -> Result<Claim, StoreError> {
        let mut rows = self.rows.lock().unwrap();
        let pos = rows.iter().position(|l| {
            l.tenant == key.tenant
                && l.kind == key.kind
                && match key.side {
                    Side::Ghl => l.ghl_id.as_deref() == Some(key.id.as_str()),
                    Side::Ekyte => l.ekyte_id.as_deref() == Some(key.id.as_str()),
                }
        });
        match pos {
            Some(i) if rows[i].state != LinkState::Claimed => {
                Ok(Claim::AlreadyLinked(rows[i].clone()))
            }
            Some(i) => {
                let l = &mut rows[i];
                let stale_claim = l
                    .claimed_at
                    .is_some_and(|at| (t0() - at).to_std().is_ok_and(|held_for| held_for >= stale));
                if stale.is_zero() || stale_claim {
                    l.claimed_by = Some(owner.to_owned());
                    l.version += 1;
                    return Ok(Claim::TakenOver(l.clone()));
                }
                Ok(Claim::ClaimedByOther {
                    by: l.claimed_by.clone().unwrap_or_default(),
                    since: t0(),
                })
            }
            None => {
                let id = rows.len() as i64 + 1;
                let u = LinkUpdate {
                    ghl_id: (key.side == Side::Ghl).then(|| key.id.clone()),
                    ekyte_id: (key.side == Side::Ekyte).then(|| key.id.clone()),
                    ghl_parent: key.ghl_parent.clone(),
                    ekyte_parent: key.ekyte_parent.clone(),
                    state: LinkState::Claimed,
                    base: key.pending.clone(),
                    ghl_fp: None,
                    ekyte_fp: None,
                };
                let mut l = link_from(id, &key.tenant, key.kind, &u, 1);
                l.claimed_by = Some(owner.to_owned());
                rows.push(l.clone());
                Ok(Claim::Claimed(l))
            }
        }
    }
    async fn complete(&self, id: i64, version: i64, u: &LinkUpdate) -> Result<Link, StoreError> {
        *self.singles.lock().unwrap() += 1;
        self.complete_row(id, version, u)
    }
    async fn complete_many(
        &self,
        items: &[ports::store::Completion],
    ) -> Result<Vec<Link>, StoreError> {
        self.batches.lock().unwrap().push(items.len());
        if *self.refuse_batches.lock().unwrap() {
            return Err(StoreError::Unavailable {
                message: "gone".into(),
                source: None,
            });
        }
        items
            .iter()
            .map(|c| self.complete_row(c.link_id, c.expected_version, &c.update))
            .collect()
    }
    async fn release(&self, id: i64) -> Result<(), StoreError> {
        self.rows
            .lock()
            .unwrap()
            .retain(|l| !(l.id == id && l.state == LinkState::Claimed));
        Ok(())
    }
    async fn pending_ekyte_creates(
        &self,
        t: &TenantId,
        k: EntityKind,
        since: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let pending = self.all().into_iter().filter(|l| {
            &l.tenant == t
                && l.kind == k
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
        let id = rows.len() as i64 + 1;
        let l = link_from(id, t, k, u, 1);
        rows.push(l.clone());
        Ok(l)
    }
}

/// Per-key async mutexes, as the store's SQLite locks are.
#[derive(Default)]
struct FakeLocks {
    keys: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

struct Guard(#[allow(dead_code)] tokio::sync::OwnedMutexGuard<()>);

#[async_trait]
impl LockGuard for Guard {
    async fn release(self: Box<Self>) {}
}

#[async_trait]
impl ContactLocks for FakeLocks {
    async fn lock(
        &self,
        t: &TenantId,
        key: &str,
        _wait: Duration,
    ) -> Result<Box<dyn LockGuard>, StoreError> {
        let m = self
            .keys
            .lock()
            .unwrap()
            .entry(format!("{t}:{key}"))
            .or_default()
            .clone();
        Ok(Box::new(Guard(m.lock_owned().await)))
    }
}

#[derive(Default)]
struct FakeAudit {
    entries: Mutex<Vec<AuditEntry>>,
}

impl FakeAudit {
    fn actions(&self, kind: EntityKind) -> Vec<AuditAction> {
        self.entries
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.kind == kind)
            .map(|e| e.action)
            .collect()
    }
}

#[async_trait]
impl AuditLog for FakeAudit {
    async fn append(&self, entries: &[AuditEntry]) -> Result<(), StoreError> {
        self.entries.lock().unwrap().extend_from_slice(entries);
        Ok(())
    }
    async fn query(&self, _q: &AuditQuery) -> Result<Vec<AuditRecord>, StoreError> {
        Ok(vec![])
    }
    async fn by_message_prefix(
        &self,
        tenant: &TenantId,
        prefix: &str,
        limit: u32,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        Ok(self
            .entries
            .lock()
            .unwrap()
            .iter()
            .enumerate()
            .filter(|(_, e)| {
                &e.tenant == tenant
                    && e.message_id
                        .as_deref()
                        .is_some_and(|m| m.starts_with(prefix))
            })
            .take(limit as usize)
            .map(|(i, e)| AuditRecord {
                id: i as i64 + 1,
                entry: e.clone(),
            })
            .collect())
    }
    async fn failures_since(
        &self,
        _since: DateTime<Utc>,
    ) -> Result<Vec<ports::store::FailureCount>, StoreError> {
        Ok(vec![])
    }
}

#[derive(Default)]
struct FakeInbox {
    keys: Mutex<HashSet<String>>,
}

#[async_trait]
impl Inbox for FakeInbox {
    async fn seen(&self, _t: &TenantId, s: &str, k: &str) -> Result<bool, StoreError> {
        Ok(self.keys.lock().unwrap().contains(&format!("{s}:{k}")))
    }
    async fn record(&self, _t: &TenantId, s: &str, k: &str) -> Result<bool, StoreError> {
        Ok(self.keys.lock().unwrap().insert(format!("{s}:{k}")))
    }
    async fn prune(&self, _b: DateTime<Utc>) -> Result<u64, StoreError> {
        Ok(0)
    }
}

struct FixedClock;

impl Clock for FixedClock {
    fn now(&self) -> DateTime<Utc> {
        t0()
    }
}

// ------------------------------------------------------------------ the world

const CONTACT: &str = "c1";
const WS: u64 = 70;

fn tenant() -> Tenant {
    let mut settings = TenantSettings {
        selector: domain::Selector::All,
        ..TenantSettings::default()
    };
    settings.ekyte.task_type_id = Some(domain::EkyteTaskTypeId::new(5).unwrap());
    settings.ekyte.user_email = Some("ops@agency.test".into());
    Tenant {
        id: TenantId::parse("acme").unwrap(),
        name: "Acme".into(),
        location_id: LocationId::parse("loc1").unwrap(),
        ekyte_company_id: domain::EkyteCompanyId::new(9).unwrap(),
        active: true,
        settings,
        install: Default::default(),
    }
}

fn contact() -> Contact {
    Contact {
        name: Some("Ana Souza".into()),
        email: Some("ana@x.com".into()),
        ..Contact::default()
    }
}

fn task(title: &str) -> Task {
    Task {
        title: Some(title.into()),
        due: Some(t0()),
        ..Task::default()
    }
}

struct World {
    tenant: Tenant,
    links: Arc<FakeLinks>,
    audit: Arc<FakeAudit>,
    inbox: Arc<FakeInbox>,
    locks: Arc<FakeLocks>,
}

impl World {
    fn new() -> Self {
        Self {
            tenant: tenant(),
            links: Arc::default(),
            audit: Arc::default(),
            inbox: Arc::default(),
            locks: Arc::default(),
        }
    }

    fn scope(&self) -> Scope {
        Scope::new(Arc::new(self.tenant.clone()), ports::Priority::RealTime)
    }

    fn engine(&self, ghl: MockGhlApi, ekyte: MockEkyteApi) -> Engine {
        self.engine_with(
            ghl,
            ekyte,
            MockEkyteChangeSource::new(),
            MockPublisher::new(),
        )
    }

    /// A full dry-run sweep on `ghl` (a dry run records no run: the run store is a mock with
    /// no expectations) and the envelopes it published.
    async fn dry_run_sweep(
        &self,
        ghl: MockGhlApi,
    ) -> (crate::SweepReport, Vec<ports::queue::Envelope>) {
        let (publisher, published) = capturing_publisher();
        let engine = self.engine_with(
            ghl,
            MockEkyteApi::new(),
            MockEkyteChangeSource::new(),
            publisher,
        );
        let report = engine
            .sweep(
                &self.scope(),
                ports::queue::SyncMode::Full,
                true,
                &crate::Quiet,
            )
            .await
            .unwrap();
        let sent = published.lock().unwrap().clone();
        (report, sent)
    }

    fn engine_with(
        &self,
        ghl: MockGhlApi,
        ekyte: MockEkyteApi,
        changes: MockEkyteChangeSource,
        publisher: MockPublisher,
    ) -> Engine {
        let mut tenants = MockTenantStore::new();
        let t = self.tenant.clone();
        tenants.expect_get().returning(move |_| Ok(t.clone()));
        Engine::new(
            Ports {
                ghl: Arc::new(ghl),
                ekyte: Arc::new(ekyte),
                changes: Arc::new(changes),
                tenants: Arc::new(tenants),
                links: self.links.clone(),
                locks: self.locks.clone(),
                audit: self.audit.clone(),
                inbox: self.inbox.clone(),
                runs: Arc::new(MockRunStore::new()),
                publisher: Arc::new(publisher),
                clock: Arc::new(FixedClock),
            },
            Settings::default(),
        )
    }

    /// Takes `cid()`'s contact lock, as another sync at work on it holds it.
    async fn hold_contact_lock(&self, ttl: Duration) -> Box<dyn ports::store::LockGuard> {
        self.locks
            .lock(&self.tenant.id, &format!("contact:{}", cid()), ttl)
            .await
            .unwrap()
    }

    /// Links for a contact already synced: contact ↔ workspace, its profile note (with the
    /// fingerprint the engine renders for `c`), and the board.
    fn linked_contact(&self, c: &Contact) {
        let ctx = self.tenant.settings.normalise_ctx();
        let c = c.normalised(&ctx);
        self.links.seed(
            &self.tenant.id,
            EntityKind::Contact,
            LinkUpdate {
                ghl_id: Some(CONTACT.into()),
                ekyte_id: Some(WS.to_string()),
                ghl_parent: None,
                ekyte_parent: None,
                state: LinkState::Linked,
                base: BaseRecord::Contact(Box::new(c.clone())),
                ghl_fp: Some(Fingerprint::of(&c.project(Side::Ghl))),
                ekyte_fp: Some(Fingerprint::of(&c.project(Side::Ekyte))),
            },
        );
        let title = profile::title(&c);
        let html = profile::render(&c, None, &[]);
        let fp = Fingerprint::of_document(EntityKind::ProfileNote, &format!("{title}\n{html}"));
        self.links.seed(
            &self.tenant.id,
            EntityKind::ProfileNote,
            LinkUpdate {
                ghl_id: Some(CONTACT.into()),
                ekyte_id: Some("300".into()),
                ghl_parent: Some(CONTACT.into()),
                ekyte_parent: Some("200".into()),
                state: LinkState::Linked,
                base: BaseRecord::Document { fingerprint: fp },
                ghl_fp: None,
                ekyte_fp: Some(fp),
            },
        );
    }

    fn linked_task(&self, ghl_id: &str, ekyte_id: u64, t: &Task) {
        let ctx = self.tenant.settings.normalise_ctx();
        let t = t.normalised(&ctx);
        self.links.seed(
            &self.tenant.id,
            EntityKind::Task,
            LinkUpdate {
                ghl_id: Some(ghl_id.into()),
                ekyte_id: Some(ekyte_id.to_string()),
                ghl_parent: Some(CONTACT.into()),
                ekyte_parent: Some(WS.to_string()),
                state: LinkState::Linked,
                base: BaseRecord::Task(t.clone()),
                ghl_fp: Some(Fingerprint::of(&t.project(Side::Ghl))),
                ekyte_fp: Some(Fingerprint::of(&t.project(Side::Ekyte))),
            },
        );
    }
}

/// A publisher that keeps every envelope it is given.
fn capturing_publisher() -> (MockPublisher, Arc<Mutex<Vec<ports::queue::Envelope>>>) {
    let published: Arc<Mutex<Vec<ports::queue::Envelope>>> = Arc::default();
    let mut publisher = MockPublisher::new();
    let sent = published.clone();
    publisher.expect_publish().returning(move |env| {
        sent.lock().unwrap().push(env.clone());
        Ok(())
    });
    (publisher, published)
}

/// A search page holding the contact `cid()`, never synced, of a location whose search says
/// it has `total` contacts.
fn one_new_contact_page(total: u64) -> ports::ghl::ContactPage {
    ports::ghl::ContactPage {
        contacts: vec![GhlContact {
            id: cid(),
            location: LocationId::parse("loc1").unwrap(),
            contact: contact(),
            date_added: None,
        }],
        total: Some(total),
        next: None,
    }
}

fn cid() -> GhlContactId {
    GhlContactId::parse(CONTACT).unwrap()
}

/// A GHL mock that serves the contact `c` and these tasks; no notes, appointments.
fn ghl_reads(c: Contact, tasks: Arc<Mutex<Vec<GhlTask>>>) -> MockGhlApi {
    let mut m = MockGhlApi::new();
    m.expect_get_contact().returning(move |_, id| {
        Ok(GhlContact {
            id: id.clone(),
            location: LocationId::parse("loc1").unwrap(),
            contact: c.clone(),
            date_added: None,
        })
    });
    m.expect_list_tasks()
        .returning(move |_, _| Ok(tasks.lock().unwrap().clone()));
    m.expect_list_notes().returning(|_, _| Ok(vec![]));
    m.expect_list_appointments().returning(|_, _| Ok(vec![]));
    m
}

/// An eKyte mock that serves the workspace (named `name`) and these tasks.
fn ekyte_reads(name: &str, tasks: Arc<Mutex<Vec<EkyteTask>>>) -> MockEkyteApi {
    let mut m = MockEkyteApi::new();
    let name = name.to_owned();
    m.expect_get_workspace().returning(move |_, id, _| {
        Ok(Workspace {
            id,
            name: name.clone(),
            active: true,
            external_id: None,
        })
    });
    m.expect_list_tasks()
        .returning(move |_, _, _| Ok(tasks.lock().unwrap().clone()));
    m.expect_capabilities()
        .returning(|_| Ok(Capabilities::with_mcp()));
    m
}

fn ghl_task(id: &str, t: Task) -> GhlTask {
    GhlTask {
        id: GhlTaskId::parse(id).unwrap(),
        contact: cid(),
        task: t,
    }
}

fn ekyte_task(id: u64, t: Task) -> EkyteTask {
    EkyteTask {
        id: EkyteTaskId::new(id).unwrap(),
        workspace: EkyteWorkspaceId::new(WS).unwrap(),
        task: Task {
            assignee: None,
            ..t
        },
        comments: vec![],
    }
}

// ------------------------------------------------------------------ the decisions

#[tokio::test]
async fn our_own_echo_writes_nothing() {
    let w = World::new();
    w.linked_contact(&contact());
    let t = task("Kick-off");
    w.linked_task("g1", 11, &t);
    let ghl = ghl_reads(
        contact(),
        Arc::new(Mutex::new(vec![ghl_task("g1", t.clone())])),
    );
    let mut ekyte = ekyte_reads(
        "Ana Souza",
        Arc::new(Mutex::new(vec![ekyte_task(11, t.clone())])),
    );
    // The poll reports the task we wrote: it must not cause a single write, on either side.
    ekyte.expect_update_task().times(0);
    ekyte.expect_set_task_status().times(0);
    ekyte.expect_create_task().times(0);
    ekyte.expect_update_workspace().times(0);
    ekyte.expect_update_note().times(0);
    ekyte.expect_create_note().times(0);
    let engine = w.engine(ghl, ekyte);
    let report = engine
        .ekyte_change(
            w.scope(),
            &EkyteChange::TaskChanged {
                task: ekyte_task(11, t),
            },
            Options::default(),
        )
        .await
        .unwrap();
    assert_eq!(report.writes(), 0, "{report:?}");
}

#[tokio::test]
async fn ekyte_not_found_on_update_recreates_and_relinks() {
    let w = World::new();
    w.linked_contact(&contact());
    let old = task("Kick-off");
    w.linked_task("g1", 11, &old);
    let new = task("Kick-off call");
    let ghl = ghl_reads(
        contact(),
        Arc::new(Mutex::new(vec![ghl_task("g1", new.clone())])),
    );
    // eKyte still lists the old task (its list is stale), but updating it says it is gone.
    let mut ekyte = ekyte_reads("Ana Souza", Arc::new(Mutex::new(vec![ekyte_task(11, old)])));
    ekyte
        .expect_update_task()
        .times(1)
        .returning(|_, _, _, _| Err(ApiError::not_found("eKyte task 11")));
    ekyte
        .expect_create_task()
        .times(1)
        .withf(|_, ws, t| ws.get() == WS && t.title.as_deref() == Some("Kick-off call"))
        .returning(|_, _, _| Ok(EkyteTaskId::new(12).unwrap()));
    let engine = w.engine(ghl, ekyte);
    engine
        .sync_contact(w.scope(), &cid(), Options::default())
        .await
        .unwrap();
    let link = w
        .links
        .find(EntityKind::Task, |l| l.ghl_id.as_deref() == Some("g1"))
        .unwrap();
    assert_eq!(
        link.ekyte_id.as_deref(),
        Some("12"),
        "relinked to the new task"
    );
    assert_eq!(
        Task::from_base_for_test(&link.base).title.as_deref(),
        Some("Kick-off call")
    );
}

trait FromBase {
    fn from_base_for_test(b: &BaseRecord) -> Task;
}

impl FromBase for Task {
    fn from_base_for_test(b: &BaseRecord) -> Task {
        match b {
            BaseRecord::Task(t) => t.clone(),
            other => panic!("not a task base: {other:?}"),
        }
    }
}

#[tokio::test]
async fn unsupported_is_audited_and_not_retried() {
    let w = World::new();
    w.linked_contact(&contact());
    let old = task("Kick-off");
    w.linked_task("g1", 11, &old);
    let new = task("Kick-off call");
    let ghl = ghl_reads(contact(), Arc::new(Mutex::new(vec![ghl_task("g1", new)])));
    let mut ekyte = ekyte_reads(
        "Ana Souza",
        Arc::new(Mutex::new(vec![ekyte_task(11, old.clone())])),
    );
    ekyte
        .expect_update_task()
        .times(1)
        .returning(|_, _, _, _| Err(ApiError::unsupported("update_task needs an MCP token")));
    ekyte.expect_create_task().times(0);
    let engine = w.engine(ghl, ekyte);
    let result = engine
        .sync_contact(w.scope(), &cid(), Options::default())
        .await;
    assert!(
        result.is_ok(),
        "unsupported must not fail the message: {result:?}"
    );
    assert!(
        w.audit
            .actions(EntityKind::Task)
            .contains(&AuditAction::Unsupported)
    );
    let link = w
        .links
        .find(EntityKind::Task, |l| l.ghl_id.as_deref() == Some("g1"))
        .unwrap();
    assert_eq!(
        Task::from_base_for_test(&link.base).title.as_deref(),
        Some("Kick-off"),
        "the base keeps what eKyte still holds"
    );
}

#[tokio::test]
async fn a_conflict_is_won_by_the_owner_and_audited() {
    let w = World::new();
    w.linked_contact(&contact());
    // Both renamed: GHL owns the name, so the workspace takes GHL's.
    let ghl_now = Contact {
        name: Some("Ana Souza Lima".into()),
        ..contact()
    };
    let ghl = ghl_reads(ghl_now, Arc::new(Mutex::new(vec![])));
    let mut ekyte = ekyte_reads("Souza Consultoria", Arc::new(Mutex::new(vec![])));
    ekyte
        .expect_update_workspace()
        .times(1)
        .withf(|_, ws, t| {
            // The whole workspace, for an MCP that replaces: the name, still active, and the
            // contact it stands for.
            ws.get() == WS
                && t.name == "Ana Souza Lima"
                && t.active
                && matches!(&t.external, Some(ExternalRef::Contact { contact, .. }) if *contact == cid())
        })
        .returning(|_, _, _| Ok(()));
    ekyte
        .expect_update_note()
        .times(1)
        .returning(|_, _, _| Ok(()));
    // `ghl` has no update expectation: a write to GHL would fail the test.
    let engine = w.engine(ghl, ekyte);
    engine
        .sync_contact(w.scope(), &cid(), Options::default())
        .await
        .unwrap();
    let entries = w.audit.entries.lock().unwrap().clone();
    let conflict = entries
        .iter()
        .find(|e| e.action == AuditAction::Conflict)
        .expect("conflict audited");
    assert_eq!(conflict.fields, vec!["name".to_owned()]);
    assert!(
        conflict.reason.as_deref().unwrap().contains("ghl wins"),
        "{conflict:?}"
    );
}

fn task_create_event(id: &str) -> GhlEvent {
    GhlEvent {
        webhook_id: id.into(),
        location: LocationId::parse("loc1").unwrap(),
        timestamp: t0(),
        kind: GhlEventKind::TaskCreate {
            task: GhlTaskId::parse("g9").unwrap(),
            contact: Some(cid()),
        },
    }
}

/// GHL serves the task `g9` ("Send proposal"); eKyte must create it exactly once (as 31).
fn a_ghl_task_g9_ekyte_creates_once() -> (MockGhlApi, MockEkyteApi) {
    let t = task("Send proposal");
    let ghl = ghl_reads(contact(), Arc::new(Mutex::new(vec![ghl_task("g9", t)])));
    let ekyte_tasks: Arc<Mutex<Vec<EkyteTask>>> = Arc::default();
    let mut ekyte = ekyte_reads("Ana Souza", ekyte_tasks.clone());
    ekyte
        .expect_create_task()
        .times(1)
        .returning(move |_, _, t| {
            ekyte_tasks.lock().unwrap().push(ekyte_task(31, t.clone()));
            Ok(EkyteTaskId::new(31).unwrap())
        });
    (ghl, ekyte)
}

#[tokio::test]
async fn a_task_create_twice_makes_one_ekyte_task() {
    let w = World::new();
    w.linked_contact(&contact());
    let (ghl, ekyte) = a_ghl_task_g9_ekyte_creates_once();
    let engine = Arc::new(w.engine(ghl, ekyte));
    // Twice at once (two workers), then once more (a redelivery).
    let (e1, e2) = (task_create_event("wh-1"), task_create_event("wh-2"));
    let (a, b) = tokio::join!(
        engine.ghl_event(w.scope(), &e1, Options::default()),
        engine.ghl_event(w.scope(), &e2, Options::default()),
    );
    a.unwrap();
    b.unwrap();
    engine
        .ghl_event(w.scope(), &task_create_event("wh-1"), Options::default())
        .await
        .unwrap();
    let task_links: Vec<Link> = w
        .links
        .all()
        .into_iter()
        .filter(|l| l.kind == EntityKind::Task)
        .collect();
    assert_eq!(task_links.len(), 1);
    assert_eq!(task_links[0].ekyte_id.as_deref(), Some("31"));
    assert_eq!(task_links[0].state, LinkState::Linked);
}

#[tokio::test]
async fn a_create_event_for_a_linked_task_reads_nothing() {
    // Our own onboarding task (or any task already synced) coming back as TaskCreate: the
    // mocks have no expectations, so a single GHL or eKyte call would fail the test.
    let w = World::new();
    w.linked_contact(&contact());
    w.linked_task("g9", 31, &task("Welcome call"));
    let engine = w.engine(MockGhlApi::new(), MockEkyteApi::new());
    let report = engine
        .ghl_event(w.scope(), &task_create_event("wh-echo"), Options::default())
        .await
        .unwrap();
    assert_eq!(report.writes(), 0);
    assert_eq!(report.count(AuditAction::Skip), 1);
}

#[tokio::test]
async fn the_echo_of_a_linked_task_does_not_wait_for_the_contacts_lock() {
    // The onboarding task's TaskCreate comes back while the sync that made it still holds
    // the contact's lock: the echo is answered without the lock, not parked behind it.
    let w = World::new();
    w.linked_contact(&contact());
    w.linked_task("g9", 31, &task("Welcome call"));
    let held = w.hold_contact_lock(Duration::from_secs(1)).await;
    let engine = w.engine(MockGhlApi::new(), MockEkyteApi::new());
    let report = tokio::time::timeout(
        Duration::from_secs(10),
        engine.ghl_event(w.scope(), &task_create_event("wh-echo"), Options::default()),
    )
    .await
    .expect("the echo waited for the lock another sync holds")
    .unwrap();
    assert_eq!(report.writes(), 0);
    assert_eq!(report.count(AuditAction::Skip), 1);
    held.release().await;
}

#[tokio::test]
async fn an_echo_that_waited_for_the_lock_finds_its_task_among_the_contacts_links() {
    // The echo comes while the sync that made the task holds the lock and has not linked
    // it yet: it waits for the lock, then finds the task linked in the contact's links,
    // read once, as a sync would read them first: no read of the task's link of its own.
    let w = World::new();
    w.linked_contact(&contact());
    w.links.seed_claimed_task(&w.tenant.id, Some("g9"), None);
    let held = w.hold_contact_lock(Duration::from_secs(5)).await;
    let engine = w.engine(MockGhlApi::new(), MockEkyteApi::new());
    let event = task_create_event("wh-echo");
    let echo = engine.ghl_event(w.scope(), &event, Options::default());
    let finish_the_sync = async {
        // The echo has read the task's link before the lock: still a claim, so it waits.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while *w.links.ghl_reads.lock().unwrap() == 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the echo never read"
            );
            tokio::task::yield_now().await;
        }
        let claim = w
            .links
            .find(EntityKind::Task, |l| l.ghl_id.as_deref() == Some("g9"));
        let claim = claim.unwrap();
        w.links
            .complete_row(
                claim.id,
                claim.version,
                &LinkUpdate {
                    ghl_id: claim.ghl_id.clone(),
                    ekyte_id: Some("31".into()),
                    ghl_parent: claim.ghl_parent.clone(),
                    ekyte_parent: claim.ekyte_parent.clone(),
                    state: LinkState::Linked,
                    base: BaseRecord::Task(task("Welcome call")),
                    ghl_fp: None,
                    ekyte_fp: None,
                },
            )
            .unwrap();
        held.release().await;
    };
    let (report, ()) = tokio::join!(echo, finish_the_sync);
    let report = report.unwrap();
    assert_eq!(report.writes(), 0);
    assert_eq!(report.count(AuditAction::Skip), 1);
    assert_eq!(
        *w.links.ghl_reads.lock().unwrap(),
        1,
        "only the read before the lock"
    );
    assert_eq!(*w.links.contact_reads.lock().unwrap(), 1);
}

#[tokio::test]
async fn a_task_complete_for_a_linked_task_is_still_synced() {
    // Only create events are recognised as already known; a completion is a change.
    let w = World::new();
    w.linked_contact(&contact());
    let t = task("Send proposal");
    w.linked_task("g9", 31, &t);
    let done = Task {
        status: domain::TaskStatus::Completed,
        ..t.clone()
    };
    let ghl = ghl_reads(contact(), Arc::new(Mutex::new(vec![ghl_task("g9", done)])));
    let mut ekyte = ekyte_reads("Ana Souza", Arc::new(Mutex::new(vec![ekyte_task(31, t)])));
    ekyte
        .expect_set_task_status()
        .times(1)
        .returning(|_, _, _| Ok(()));
    let engine = w.engine(ghl, ekyte);
    let ev = GhlEvent {
        kind: GhlEventKind::TaskComplete {
            task: GhlTaskId::parse("g9").unwrap(),
            contact: Some(cid()),
        },
        ..task_create_event("wh-done")
    };
    engine
        .ghl_event(w.scope(), &ev, Options::default())
        .await
        .unwrap();
}

/// A new contact with one onboarding template: every create expected once.
fn new_contact_with_onboarding() -> (World, MockGhlApi, MockEkyteApi) {
    let mut w = World::new();
    w.tenant.settings.onboarding = vec![domain::OnboardingTemplate {
        key: "welcome".into(),
        title: "Welcome call".into(),
        body: None,
        due_in_hours: 24,
    }];
    let ghl_tasks: Arc<Mutex<Vec<GhlTask>>> = Arc::default();
    let mut ghl = ghl_reads(contact(), ghl_tasks.clone());
    let store = ghl_tasks.clone();
    ghl.expect_create_task()
        .times(1)
        .withf(|_, _, t| t.title.as_deref() == Some("Welcome call"))
        .returning(move |_, c, t| {
            let created = GhlTask {
                id: GhlTaskId::parse("onb1").unwrap(),
                contact: c.clone(),
                task: t.clone(),
            };
            store.lock().unwrap().push(created.clone());
            Ok(created)
        });
    let ekyte_tasks: Arc<Mutex<Vec<EkyteTask>>> = Arc::default();
    let mut ekyte = ekyte_reads("Ana Souza", ekyte_tasks.clone());
    ekyte
        .expect_create_workspace()
        .times(1)
        .returning(|_, _, _| Ok(EkyteWorkspaceId::new(WS).unwrap()));
    ekyte.expect_list_boards().returning(|_, _| Ok(vec![]));
    ekyte
        .expect_create_board()
        .times(1)
        .returning(|_, _, _| Ok(domain::EkyteBoardId::new(200).unwrap()));
    ekyte
        .expect_create_note()
        .times(1)
        .returning(|_, _, _| Ok(domain::EkyteNoteId::new(300).unwrap()));
    let store = ekyte_tasks.clone();
    ekyte
        .expect_create_task()
        .times(1)
        .returning(move |_, _, t| {
            store.lock().unwrap().push(ekyte_task(41, t.clone()));
            Ok(EkyteTaskId::new(41).unwrap())
        });
    (w, ghl, ekyte)
}

#[tokio::test]
async fn onboarding_happens_once_for_a_new_contact_even_under_duplicate_events() {
    let (w, ghl, ekyte) = new_contact_with_onboarding();
    let engine = Arc::new(w.engine(ghl, ekyte));
    let ev = |id: &str| GhlEvent {
        webhook_id: id.into(),
        location: LocationId::parse("loc1").unwrap(),
        timestamp: t0(),
        kind: GhlEventKind::ContactCreate { contact: cid() },
    };
    let (ea, eb) = (ev("wh-a"), ev("wh-b"));
    let (a, b) = tokio::join!(
        engine.ghl_event(w.scope(), &ea, Options::default()),
        engine.ghl_event(w.scope(), &eb, Options::default()),
    );
    a.unwrap();
    b.unwrap();
    engine
        .ghl_event(w.scope(), &ev("wh-c"), Options::default())
        .await
        .unwrap();
    assert_eq!(
        w.audit
            .actions(EntityKind::Onboarding)
            .iter()
            .filter(|a| **a == AuditAction::Create)
            .count(),
        1
    );
}

#[tokio::test]
async fn a_linked_contacts_link_updates_are_written_together_and_a_claims_at_once() {
    let w = World::new();
    w.linked_contact(&contact());
    let t = task("Kick-off");
    w.linked_task("g1", 11, &t);
    // Renamed in GHL, with its task; and a new GHL task to copy.
    let ghl_now = Contact {
        name: Some("Ana Souza Lima".into()),
        ..contact()
    };
    let renamed = task("Kick-off call");
    let ghl = ghl_reads(
        ghl_now,
        Arc::new(Mutex::new(vec![
            ghl_task("g1", renamed.clone()),
            ghl_task("g2", task("Brief")),
        ])),
    );
    let mut ekyte = ekyte_reads("Ana Souza", Arc::new(Mutex::new(vec![ekyte_task(11, t)])));
    ekyte
        .expect_update_workspace()
        .times(1)
        .returning(|_, _, _| Ok(()));
    ekyte
        .expect_update_note()
        .times(1)
        .returning(|_, _, _| Ok(()));
    ekyte
        .expect_update_task()
        .times(1)
        .returning(|_, _, _, _| Ok(()));
    ekyte
        .expect_create_task()
        .times(1)
        .returning(|_, _, _| Ok(EkyteTaskId::new(12).unwrap()));
    let engine = w.engine(ghl, ekyte);
    engine
        .sync_contact(w.scope(), &cid(), Options::default())
        .await
        .unwrap();
    // The new task's claim was completed at once; the contact's, its profile note's and the
    // renamed task's updates in one write, before the lock was released.
    assert_eq!(
        *w.links.singles.lock().unwrap(),
        1,
        "the claim's completion"
    );
    assert_eq!(*w.links.batches.lock().unwrap(), [3], "the updates");
    let rows = w.links.all();
    assert!(
        rows.iter().all(|l| l.state == LinkState::Linked),
        "{rows:#?}"
    );
    let g1 = w
        .links
        .find(EntityKind::Task, |l| l.ghl_id.as_deref() == Some("g1"));
    assert!(
        matches!(&g1.unwrap().base, BaseRecord::Task(b) if b.title.as_deref() == Some("Kick-off call")),
        "the renamed task's new base is stored"
    );
}

#[tokio::test]
async fn a_deferred_update_is_read_back_before_it_is_written() {
    let w = World::new();
    let t = &w.tenant.id;
    w.linked_task("g1", 41, &task("Kick-off"));
    let unit = crate::unit::Deferred::new(w.links.clone());
    let read = unit
        .by_ghl(t, EntityKind::Task, "g1")
        .await
        .unwrap()
        .unwrap();
    // The eKyte task moved to another workspace.
    let moved = unit
        .complete(
            read.id,
            read.version,
            &LinkUpdate {
                ekyte_parent: Some("71".into()),
                ekyte_fp: Some(Fingerprint::of_document(EntityKind::Task, "moved")),
                ..link_update_of(&read)
            },
        )
        .await
        .unwrap();
    assert_eq!(moved.version, read.version + 1);
    // Not written yet…
    assert_eq!(w.links.all()[0], read);
    // …but read back through the unit by its ids and its new parent, not its old one.
    assert_eq!(
        unit.by_ekyte(t, EntityKind::Task, "41").await.unwrap(),
        Some(moved.clone())
    );
    assert_eq!(
        unit.by_ekyte_parent(t, EntityKind::Task, "71")
            .await
            .unwrap(),
        std::slice::from_ref(&moved)
    );
    assert!(
        unit.by_ekyte_parent(t, EntityKind::Task, &WS.to_string())
            .await
            .unwrap()
            .is_empty()
    );
    let key = ClaimKey {
        tenant: t.clone(),
        kind: EntityKind::Task,
        side: Side::Ghl,
        id: "g1".into(),
        ghl_parent: Some(CONTACT.into()),
        ekyte_parent: None,
        pending: BaseRecord::None,
    };
    assert!(matches!(
        unit.claim(&key, "me", Duration::from_secs(60)).await.unwrap(),
        Claim::AlreadyLinked(l) if l == moved
    ));
    // A second update of the same link is merged into the first.
    let again = unit
        .complete(
            moved.id,
            moved.version,
            &LinkUpdate {
                ekyte_parent: None,
                ghl_fp: Some(Fingerprint::of_document(EntityKind::Task, "x")),
                ..link_update_of(&moved)
            },
        )
        .await
        .unwrap();
    assert_eq!(again.ekyte_parent.as_deref(), Some("71"));
    // A claim's completion is written at once.
    let Claim::Claimed(held) = unit
        .claim(
            &ClaimKey {
                id: "g2".into(),
                ..key
            },
            "me",
            Duration::from_secs(60),
        )
        .await
        .unwrap()
    else {
        panic!("not claimed")
    };
    unit.complete(
        held.id,
        held.version,
        &LinkUpdate {
            ekyte_id: Some("42".into()),
            state: LinkState::Linked,
            ..link_update_of(&held)
        },
    )
    .await
    .unwrap();
    assert_eq!(*w.links.singles.lock().unwrap(), 1);
    assert!(w.links.batches.lock().unwrap().is_empty());
    unit.flush().await.unwrap();
    assert_eq!(*w.links.batches.lock().unwrap(), [1]);
    let stored = w
        .links
        .by_ghl(t, EntityKind::Task, "g1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.ekyte_parent.as_deref(), Some("71"));
    assert_eq!(stored.ghl_fp, again.ghl_fp);
    // Nothing is left to write.
    unit.flush().await.unwrap();
    assert_eq!(w.links.batches.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_contacts_links_are_read_once_and_its_own_writes_are_seen() {
    let w = World::new();
    let t = &w.tenant.id;
    w.linked_contact(&contact());
    w.linked_task("g1", 41, &task("Kick-off"));
    let unit = crate::unit::Deferred::new(w.links.clone());
    let home = unit
        .by_ghl(t, EntityKind::Contact, CONTACT)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(home.ekyte_id, Some(WS.to_string()));
    // Written meanwhile by another process: the read at once does not see it, as a read a
    // moment earlier would not have (the claims decide who creates).
    w.links.seed(
        t,
        EntityKind::Note,
        LinkUpdate {
            ghl_parent: Some(CONTACT.into()),
            ..link_update_of(&home)
        },
    );
    assert!(
        unit.by_ghl_parent(t, EntityKind::Note, CONTACT)
            .await
            .unwrap()
            .is_empty()
    );
    let tasks = unit
        .by_ghl_parent(t, EntityKind::Task, CONTACT)
        .await
        .unwrap();
    assert_eq!(tasks.len(), 1);
    let profile = unit
        .by_ghl(t, EntityKind::ProfileNote, CONTACT)
        .await
        .unwrap();
    assert!(profile.is_some());
    assert_eq!(*w.links.contact_reads.lock().unwrap(), 1, "one read");
    // A task this sync claims is among the contact's tasks from then on; released, it is not.
    let key = ClaimKey {
        tenant: t.clone(),
        kind: EntityKind::Task,
        side: Side::Ghl,
        id: "g2".into(),
        ghl_parent: Some(CONTACT.into()),
        ekyte_parent: None,
        pending: BaseRecord::None,
    };
    let Claim::Claimed(held) = unit
        .claim(&key, "me", Duration::from_secs(60))
        .await
        .unwrap()
    else {
        panic!("not claimed")
    };
    let ids = |v: Vec<Link>| v.into_iter().map(|l| l.id).collect::<Vec<_>>();
    assert_eq!(
        ids(unit
            .by_ghl_parent(t, EntityKind::Task, CONTACT)
            .await
            .unwrap()),
        [tasks[0].id, held.id]
    );
    unit.release(held.id).await.unwrap();
    assert_eq!(
        ids(unit
            .by_ghl_parent(t, EntityKind::Task, CONTACT)
            .await
            .unwrap()),
        [tasks[0].id]
    );
    // Another contact's links are read from the store.
    assert!(
        unit.by_ghl(t, EntityKind::Contact, "c2")
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(*w.links.contact_reads.lock().unwrap(), 1);
}

#[tokio::test]
async fn after_a_failed_write_the_contacts_links_are_read_again() {
    let w = World::new();
    let t = &w.tenant.id;
    w.linked_contact(&contact());
    w.linked_task("g1", 41, &task("Kick-off"));
    let unit = crate::unit::Deferred::new(w.links.clone());
    let tasks = unit
        .by_ghl_parent(t, EntityKind::Task, CONTACT)
        .await
        .unwrap();
    unit.complete(
        tasks[0].id,
        tasks[0].version,
        &LinkUpdate {
            ekyte_fp: Some(Fingerprint::of_document(EntityKind::Task, "x")),
            ..link_update_of(&tasks[0])
        },
    )
    .await
    .unwrap();
    *w.links.refuse_batches.lock().unwrap() = true;
    assert!(matches!(
        unit.flush().await,
        Err(StoreError::Unavailable { .. })
    ));
    // What the store holds is read again, not what the failed write would have made.
    let again = unit
        .by_ghl_parent(t, EntityKind::Task, CONTACT)
        .await
        .unwrap();
    assert_eq!(again, tasks);
    assert_eq!(*w.links.contact_reads.lock().unwrap(), 2);
}

fn link_update_of(l: &Link) -> LinkUpdate {
    LinkUpdate {
        ghl_id: l.ghl_id.clone(),
        ekyte_id: l.ekyte_id.clone(),
        ghl_parent: l.ghl_parent.clone(),
        ekyte_parent: l.ekyte_parent.clone(),
        state: l.state,
        base: l.base.clone(),
        ghl_fp: l.ghl_fp,
        ekyte_fp: l.ekyte_fp,
    }
}

#[tokio::test]
async fn dry_run_writes_nothing_and_reports_the_plan() {
    let w = World::new();
    let ghl = ghl_reads(
        contact(),
        Arc::new(Mutex::new(vec![ghl_task("g1", task("A"))])),
    );
    // No write expectation at all: any write call would panic.
    let mut ekyte = MockEkyteApi::new();
    ekyte
        .expect_capabilities()
        .returning(|_| Ok(Capabilities::with_mcp()));
    let engine = w.engine(ghl, ekyte);
    let report = engine
        .sync_contact(
            w.scope(),
            &cid(),
            Options {
                dry_run: true,
                ..Options::default()
            },
        )
        .await
        .unwrap();
    assert!(report.dry_run);
    assert!(
        report
            .lines
            .iter()
            .any(|l| l.kind == EntityKind::Contact && l.action == AuditAction::Create)
    );
    assert!(
        report
            .lines
            .iter()
            .any(|l| l.kind == EntityKind::Task && l.action == AuditAction::Create)
    );
    assert!(w.links.all().is_empty(), "a dry run claims nothing");
    assert!(w.audit.entries.lock().unwrap().iter().all(|e| e.dry_run));
}

#[tokio::test]
async fn an_event_for_another_location_touches_nothing() {
    let w = World::new();
    let engine = w.engine(MockGhlApi::new(), MockEkyteApi::new());
    let ev = GhlEvent {
        webhook_id: "wh-x".into(),
        location: LocationId::parse("someone-else").unwrap(),
        timestamp: t0(),
        kind: GhlEventKind::ContactUpdate { contact: cid() },
    };
    let report = engine
        .ghl_event(w.scope(), &ev, Options::default())
        .await
        .unwrap();
    assert_eq!(report.writes(), 0);
    assert_eq!(report.count(AuditAction::Skip), 1);
}

#[tokio::test]
async fn a_handled_message_is_not_handled_twice() {
    let w = World::new();
    w.linked_contact(&contact());
    let mut ghl = MockGhlApi::new();
    // Exactly one fetch: the second delivery of the same message is recognised.
    ghl.expect_get_contact().times(1).returning(|_, id| {
        Ok(GhlContact {
            id: id.clone(),
            location: LocationId::parse("loc1").unwrap(),
            contact: contact(),
            date_added: None,
        })
    });
    ghl.expect_list_tasks().returning(|_, _| Ok(vec![]));
    ghl.expect_list_notes().returning(|_, _| Ok(vec![]));
    ghl.expect_list_appointments().returning(|_, _| Ok(vec![]));
    let ekyte = ekyte_reads("Ana Souza", Arc::default());
    let engine = w.engine(ghl, ekyte);
    let env = ports::queue::Envelope::new(
        "wh-dup",
        w.tenant.id.clone(),
        ports::queue::Payload::SyncContact {
            contact: cid(),
            dry_run: false,
            prefetched: None,
        },
        t0(),
    );
    engine.handle(&env).await.unwrap();
    engine.handle(&env).await.unwrap();
}

// ------------------------------------------------------------------ unknown create outcomes

fn note_create_event(note: &str) -> GhlEvent {
    GhlEvent {
        webhook_id: format!("wh-{note}"),
        location: LocationId::parse("loc1").unwrap(),
        timestamp: t0(),
        kind: GhlEventKind::NoteCreate {
            note: domain::GhlNoteId::parse(note).unwrap(),
            contact: cid(),
        },
    }
}

/// A contact with its board (200), and a claim on the GHL note `n1` left by a worker that
/// died after eKyte answered its create but before the link was stored.
fn world_with_a_dead_claim() -> World {
    let w = World::new();
    w.linked_contact(&contact());
    let link = |ghl: &str, ekyte: Option<&str>, parent: Option<&str>, state| LinkUpdate {
        ghl_id: Some(ghl.into()),
        ekyte_id: ekyte.map(Into::into),
        ghl_parent: parent.map(Into::into),
        ekyte_parent: Some("200".into()),
        state,
        base: BaseRecord::None,
        ghl_fp: None,
        ekyte_fp: None,
    };
    w.links.seed(
        &w.tenant.id,
        EntityKind::Board,
        link(&format!("ws:{WS}"), Some("200"), None, LinkState::Linked),
    );
    w.links.seed(
        &w.tenant.id,
        EntityKind::Note,
        link("n1", None, Some(CONTACT), LinkState::Claimed),
    );
    w.links
        .hold_last("worker-dead", t0() - chrono::Duration::hours(1));
    w
}

fn ghl_with_note(id: &str, body: &str) -> MockGhlApi {
    let mut ghl = MockGhlApi::new();
    let c = contact();
    ghl.expect_get_contact().returning(move |_, id| {
        Ok(GhlContact {
            id: id.clone(),
            location: LocationId::parse("loc1").unwrap(),
            contact: c.clone(),
            date_added: None,
        })
    });
    ghl.expect_list_tasks().returning(|_, _| Ok(vec![]));
    ghl.expect_list_appointments().returning(|_, _| Ok(vec![]));
    let note = ports::ghl::GhlNote {
        id: domain::GhlNoteId::parse(id).unwrap(),
        contact: cid(),
        note: domain::Note {
            title: None,
            body: Some(body.into()),
            created: Some(t0()),
        },
        user_id: None,
    };
    ghl.expect_list_notes()
        .returning(move |_, _| Ok(vec![note.clone()]));
    ghl
}

fn board_note(id: u64, title: &str) -> ports::ekyte::BoardNote {
    ports::ekyte::BoardNote {
        id: domain::EkyteNoteId::new(id).unwrap(),
        title: title.into(),
    }
}

/// Handle the `NoteCreate` of `n1` and return its link afterwards.
async fn handle_note_n1(w: &World, ghl: MockGhlApi, ekyte: MockEkyteApi) -> Link {
    let engine = w.engine(ghl, ekyte);
    engine
        .ghl_event(w.scope(), &note_create_event("n1"), Options::default())
        .await
        .unwrap();
    w.links
        .find(EntityKind::Note, |l| l.ghl_id.as_deref() == Some("n1"))
        .unwrap()
}

#[tokio::test]
async fn a_note_whose_create_outcome_was_lost_is_found_not_written_twice() {
    let w = world_with_a_dead_claim();
    let ghl = ghl_with_note("n1", "Call went well");
    let mut ekyte = ekyte_reads("Ana Souza", Arc::default());
    ekyte.expect_list_notes().returning(|_, _| {
        Ok(vec![
            board_note(500, "Kick-off agenda"),
            board_note(501, "Call went well"),
        ])
    });
    ekyte.expect_create_note().times(0);
    ekyte.expect_update_note().returning(|_, _, _| Ok(()));
    let link = handle_note_n1(&w, ghl, ekyte).await;
    assert_eq!(link.state, LinkState::Linked);
    assert_eq!(link.ekyte_id.as_deref(), Some("501"));
}

#[tokio::test]
async fn a_same_titled_note_linked_to_another_is_not_taken_over() {
    let w = world_with_a_dead_claim();
    // Board note 501 has the same title but belongs to GHL note n0.
    w.links.seed(
        &w.tenant.id,
        EntityKind::Note,
        LinkUpdate {
            ghl_id: Some("n0".into()),
            ekyte_id: Some("501".into()),
            ghl_parent: Some(CONTACT.into()),
            ekyte_parent: Some("200".into()),
            state: LinkState::Linked,
            base: BaseRecord::None,
            ghl_fp: None,
            ekyte_fp: None,
        },
    );
    let ghl = ghl_with_note("n1", "Call went well");
    let mut ekyte = ekyte_reads("Ana Souza", Arc::default());
    ekyte
        .expect_list_notes()
        .returning(|_, _| Ok(vec![board_note(501, "Call went well")]));
    ekyte
        .expect_create_note()
        .times(1)
        .returning(|_, _, _| Ok(domain::EkyteNoteId::new(502).unwrap()));
    ekyte.expect_update_note().returning(|_, _, _| Ok(()));
    let link = handle_note_n1(&w, ghl, ekyte).await;
    assert_eq!(link.ekyte_id.as_deref(), Some("502"));
}

// ------------------------------------------------------------------ polls

#[tokio::test]
async fn a_poll_cut_short_by_its_budget_queues_its_continuation() {
    let w = World::new();
    let poll = |more: bool| {
        let mut changes = MockEkyteChangeSource::new();
        changes.expect_poll().times(1).returning(move |_| {
            Ok(ports::ekyte::PollReport {
                changes: vec![],
                calls: 500,
                workspaces_seen: 1_000,
                tasks_seen: 4_000,
                more,
            })
        });
        changes
    };
    let published: Arc<Mutex<Vec<ports::queue::Envelope>>> = Arc::default();
    let publisher = |published: Arc<Mutex<Vec<ports::queue::Envelope>>>| {
        let mut p = MockPublisher::new();
        p.expect_publish().returning(move |env| {
            published.lock().unwrap().push(env.clone());
            Ok(())
        });
        p
    };

    let engine = w.engine_with(
        MockGhlApi::new(),
        MockEkyteApi::new(),
        poll(true),
        publisher(published.clone()),
    );
    let summary = engine.poll_ekyte(&w.scope()).await.unwrap();
    assert!(summary.continued);
    let sent = published.lock().unwrap().clone();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert!(matches!(sent[0].payload, ports::queue::Payload::EkytePoll));
    assert_eq!(sent[0].tenant, w.tenant.id);

    published.lock().unwrap().clear();
    let engine = w.engine_with(
        MockGhlApi::new(),
        MockEkyteApi::new(),
        poll(false),
        publisher(published.clone()),
    );
    assert!(!engine.poll_ekyte(&w.scope()).await.unwrap().continued);
    assert!(published.lock().unwrap().is_empty(), "the pass ended");
}

/// A task made in eKyte (`1000761`), claimed for a create in GHL by a worker that died
/// before it learnt the outcome.
fn world_with_a_dead_ekyte_claim() -> World {
    let w = World::new();
    w.linked_contact(&contact());
    w.links.seed(
        &w.tenant.id,
        EntityKind::Board,
        LinkUpdate {
            ghl_id: Some(format!("ws:{WS}")),
            ekyte_id: Some("200".into()),
            ghl_parent: None,
            ekyte_parent: Some(WS.to_string()),
            state: LinkState::Linked,
            base: BaseRecord::None,
            ghl_fp: None,
            ekyte_fp: None,
        },
    );
    w.links
        .seed_claimed_task(&w.tenant.id, None, Some("1000761"));
    w.links
        .hold_last("worker-dead", t0() - chrono::Duration::hours(1));
    w
}

#[tokio::test]
async fn an_ekyte_task_left_claimed_by_a_dead_worker_is_created_in_ghl() {
    let w = world_with_a_dead_ekyte_claim();
    let t = task("Made in eKyte");
    let ghl_tasks: Arc<Mutex<Vec<GhlTask>>> = Arc::default();
    let mut ghl = ghl_reads(contact(), ghl_tasks.clone());
    let store = ghl_tasks.clone();
    ghl.expect_create_task().times(1).returning(move |_, _, t| {
        let created = ghl_task("g77", t.clone());
        store.lock().unwrap().push(created.clone());
        Ok(created)
    });
    let ekyte = ekyte_reads(
        "Ana Souza",
        Arc::new(Mutex::new(vec![ekyte_task(1_000_761, t)])),
    );
    let engine = w.engine(ghl, ekyte);
    engine
        .sync_contact(w.scope(), &cid(), Options::default())
        .await
        .unwrap();
    let link = w
        .links
        .find(EntityKind::Task, |l| {
            l.ekyte_id.as_deref() == Some("1000761")
        })
        .unwrap();
    assert_eq!(link.state, LinkState::Linked);
    assert_eq!(link.ghl_id.as_deref(), Some("g77"));
}

#[tokio::test]
async fn a_ghl_task_the_dead_workers_create_made_is_linked_not_copied_back() {
    let w = world_with_a_dead_ekyte_claim();
    let t = task("Made in eKyte");
    // The create had succeeded: GHL shows the task, with no link yet.
    let ghl = ghl_reads(
        contact(),
        Arc::new(Mutex::new(vec![ghl_task("g77", t.clone())])),
    );
    let mut ekyte = ekyte_reads(
        "Ana Souza",
        Arc::new(Mutex::new(vec![ekyte_task(1_000_761, t)])),
    );
    ekyte.expect_create_task().times(0);
    let engine = w.engine(ghl, ekyte);
    engine
        .sync_contact(w.scope(), &cid(), Options::default())
        .await
        .unwrap();
    let links: Vec<Link> = w
        .links
        .all()
        .into_iter()
        .filter(|l| l.kind == EntityKind::Task)
        .collect();
    assert_eq!(links.len(), 1, "{links:?}");
    assert_eq!(links[0].ghl_id.as_deref(), Some("g77"));
    assert_eq!(links[0].ekyte_id.as_deref(), Some("1000761"));
    assert_eq!(links[0].state, LinkState::Linked);
}

/// The chaos suite's duplicate: a worker died after eKyte made its copy of `g9` and before
/// the link was stored; by the time the claim went stale, a person had moved the copy's due
/// date in eKyte. The copy is still found (same title, no link holds it), not made twice.
#[tokio::test]
async fn a_ghl_task_whose_ekyte_copy_was_moved_before_the_takeover_is_not_created_twice() {
    let w = World::new();
    w.linked_contact(&contact());
    w.links.seed_claimed_task(&w.tenant.id, Some("g9"), None);
    w.links
        .hold_last("worker-dead", t0() - chrono::Duration::hours(1));
    let t = task("Send proposal");
    // Another task with the original due date, held by another link, is not a candidate.
    let other = task("Kick-off");
    let ghl = ghl_reads(
        contact(),
        Arc::new(Mutex::new(vec![
            ghl_task("g1", other.clone()),
            ghl_task("g9", t.clone()),
        ])),
    );
    let moved = Task {
        due: Some(t0() + chrono::Duration::days(45)),
        ..t.clone()
    };
    w.links.seed(
        &w.tenant.id,
        EntityKind::Task,
        LinkUpdate {
            ghl_id: Some("g1".into()),
            ekyte_id: Some("30".into()),
            ghl_parent: Some(CONTACT.into()),
            ekyte_parent: Some(WS.to_string()),
            state: LinkState::Linked,
            base: BaseRecord::None,
            ghl_fp: None,
            ekyte_fp: None,
        },
    );
    let mut ekyte = ekyte_reads(
        "Ana Souza",
        Arc::new(Mutex::new(vec![
            ekyte_task(30, other),
            ekyte_task(31, moved),
        ])),
    );
    ekyte.expect_create_task().times(0);
    ekyte.expect_update_task().returning(|_, _, _, _| Ok(()));
    let engine = w.engine(ghl, ekyte);
    engine
        .sync_contact(w.scope(), &cid(), Options::default())
        .await
        .unwrap();
    let link = w
        .links
        .find(EntityKind::Task, |l| l.ghl_id.as_deref() == Some("g9"))
        .unwrap();
    assert_eq!(link.state, LinkState::Linked);
    assert_eq!(link.ekyte_id.as_deref(), Some("31"));
}

#[tokio::test]
async fn a_claim_of_another_message_in_this_process_is_waited_for_not_taken() {
    let w = World::new();
    w.linked_contact(&contact());
    let (ghl, ekyte) = a_ghl_task_g9_ekyte_creates_once();
    let engine = w.engine(ghl, ekyte);
    // Message 1, handled by this very process, holds the claim (its create is under way).
    w.links.seed_claimed_task(&w.tenant.id, Some("g9"), None);
    w.links.hold_last(&format!("{}/msg-1", engine.owner), t0());
    let opts = |id: &str| Options {
        message_id: Some(id.into()),
        ..Options::default()
    };
    // Message 2 for the same task, at the same time, in the same process: it waits.
    let busy = engine
        .ghl_event(w.scope(), &task_create_event("wh-2"), opts("msg-2"))
        .await;
    assert!(
        matches!(busy, Err(crate::SyncError::Busy { .. })),
        "{busy:?}"
    );
    // Message 1's retry retakes its own claim, looks first, and creates the task once.
    engine
        .ghl_event(w.scope(), &task_create_event("wh-1"), opts("msg-1"))
        .await
        .unwrap();
    let link = w
        .links
        .find(EntityKind::Task, |l| l.ghl_id.as_deref() == Some("g9"))
        .unwrap();
    assert_eq!(link.state, LinkState::Linked);
    assert_eq!(link.ekyte_id.as_deref(), Some("31"));
}

/// A dry-run sweep (`sync full --dry-run`) queues its contact syncs as dry runs and records
/// no run (the run store, a mock with no expectations, would panic on any call): it must not
/// move the next incremental sync's lower bound, nor resume a real run.
#[tokio::test]
async fn a_dry_run_sweep_records_no_run() {
    let w = World::new();
    let mut ghl = MockGhlApi::new();
    ghl.expect_list_contacts()
        .returning(|_, _, _| Ok(one_new_contact_page(1)));
    // A contact never synced: the sweep reads its tasks and the calendars for its message.
    ghl.expect_search_tasks().returning(|_, _| Ok(vec![]));
    ghl.expect_list_calendars().returning(|_| Ok(vec![]));
    let (report, sent) = w.dry_run_sweep(ghl).await;
    assert!(report.run_id < 0, "a run id of its own: {}", report.run_id);
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert!(matches!(
        &sent[0].payload,
        ports::queue::Payload::SyncContact { dry_run: true, .. }
    ));
}

/// A contact edited while a sweep goes on moves behind the cursor and comes back on a later
/// page. Its second sync, the one that would catch an edit whose webhook was lost, must not
/// carry the first one's message id: the inbox lets an id through once.
#[tokio::test]
async fn a_contact_seen_again_after_an_edit_is_queued_under_an_id_of_its_own() {
    let w = World::new();
    let t1 = t0();
    let t2 = t0() + chrono::Duration::seconds(40);
    let found = |at| GhlContact {
        id: cid(),
        location: LocationId::parse("loc1").unwrap(),
        contact: Contact {
            date_updated: Some(at),
            ..contact()
        },
        date_added: None,
    };
    let mut ghl = MockGhlApi::new();
    ghl.expect_list_contacts().returning(move |_, _, q| {
        Ok(match &q.after {
            // The first page, and the contact on it as it was then.
            None => ports::ghl::ContactPage {
                contacts: vec![found(t1)],
                total: Some(1),
                next: Some(ports::ghl::SearchCursor("after-first".into())),
            },
            // Edited since: further on in `dateUpdated` order, so on the next page again.
            Some(_) => ports::ghl::ContactPage {
                contacts: vec![found(t2)],
                total: Some(1),
                next: None,
            },
        })
    });
    ghl.expect_search_tasks().returning(|_, _| Ok(vec![]));
    ghl.expect_list_calendars().returning(|_| Ok(vec![]));
    let (_, sent) = w.dry_run_sweep(ghl).await;
    let ids: Vec<String> = sent
        .iter()
        .filter(|e| matches!(&e.payload, ports::queue::Payload::SyncContact { contact, .. } if *contact == cid()))
        .map(|e| e.id.clone())
        .collect();
    assert_eq!(ids.len(), 2, "seen twice, queued twice: {ids:?}");
    assert_ne!(
        ids[0], ids[1],
        "the second sync would be dropped as the first"
    );
}

/// A contact a sweep found never synced comes with its tasks and appointments, read many
/// contacts per call: its sync reads neither again, and still syncs the onboarding task it
/// creates (which the sweep could not have seen).
#[tokio::test]
async fn a_never_synced_contact_syncs_from_what_the_sweep_read() {
    let mut w = World::new();
    w.tenant.settings.onboarding_backfill = true;
    w.tenant.settings.onboarding = vec![domain::OnboardingTemplate {
        key: "welcome".into(),
        title: "Welcome call".into(),
        body: None,
        due_in_hours: 24,
    }];
    let mut ghl = MockGhlApi::new();
    ghl.expect_get_contact().returning(|_, id| {
        Ok(GhlContact {
            id: id.clone(),
            location: LocationId::parse("loc1").unwrap(),
            contact: contact(),
            date_added: None,
        })
    });
    ghl.expect_list_notes().returning(|_, _| Ok(vec![]));
    ghl.expect_list_tasks().times(0);
    ghl.expect_list_appointments().times(0);
    ghl.expect_create_task().times(1).returning(|_, c, t| {
        Ok(GhlTask {
            id: GhlTaskId::parse("onb1").unwrap(),
            contact: c.clone(),
            task: t.clone(),
        })
    });
    let mut ekyte = ekyte_reads("Ana Souza", Arc::default());
    ekyte
        .expect_create_workspace()
        .times(1)
        .returning(|_, _, _| Ok(EkyteWorkspaceId::new(WS).unwrap()));
    // The workspace is new: nothing to look for in it.
    ekyte.expect_list_boards().times(0);
    ekyte
        .expect_create_board()
        .times(1)
        .returning(|_, _, _| Ok(domain::EkyteBoardId::new(200).unwrap()));
    let profiles: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = profiles.clone();
    ekyte
        .expect_create_note()
        .times(1)
        .returning(move |_, _, content| {
            seen.lock().unwrap().push(content.html.clone());
            Ok(domain::EkyteNoteId::new(300).unwrap())
        });
    let created: Arc<Mutex<Vec<String>>> = Arc::default();
    let made = created.clone();
    ekyte
        .expect_create_task()
        .times(2)
        .returning(move |_, _, t| {
            let mut made = made.lock().unwrap();
            made.push(t.title.clone().unwrap_or_default());
            Ok(EkyteTaskId::new(40 + made.len() as u64).unwrap())
        });
    let engine = w.engine(ghl, ekyte);
    let appointment = ports::ghl::GhlAppointment {
        id: domain::GhlAppointmentId::parse("ap1").unwrap(),
        contact: cid(),
        appointment: domain::Appointment {
            title: Some("Discovery session".into()),
            start: Some(t0() + chrono::Duration::days(1)),
            end: Some(t0() + chrono::Duration::days(1) + chrono::Duration::hours(1)),
            ..domain::Appointment::default()
        },
        date_updated: None,
    };
    let prefetched = ports::queue::Prefetched {
        tasks: Some(vec![ghl_task("g1", task("Kick-off"))]),
        appointments: Some(vec![appointment]),
    };
    engine
        .sync_contact(
            w.scope(),
            &cid(),
            Options {
                prefetched: Some(Arc::new(prefetched)),
                ..Options::default()
            },
        )
        .await
        .unwrap();
    let mut made = created.lock().unwrap().clone();
    made.sort();
    assert_eq!(made, ["Kick-off", "Welcome call"]);
    let profiles = profiles.lock().unwrap();
    assert!(
        profiles[0].contains("Discovery session"),
        "the prefetched appointment is in the profile: {}",
        profiles[0]
    );
}

/// Once the contact is linked (a webhook synced it after the sweep read it), what the sweep
/// read is stale: the sync reads afresh.
#[tokio::test]
async fn a_contact_linked_since_the_sweep_is_read_afresh() {
    let w = World::new();
    w.linked_contact(&contact());
    let mut ghl = ghl_reads(contact(), Arc::default());
    ghl.expect_create_task().times(0);
    let mut ekyte = ekyte_reads("Ana Souza", Arc::default());
    ekyte.expect_create_task().times(0);
    let engine = w.engine(ghl, ekyte);
    let stale = ports::queue::Prefetched {
        tasks: Some(vec![ghl_task("g-old", task("Deleted since"))]),
        appointments: Some(vec![]),
    };
    let report = engine
        .sync_contact(
            w.scope(),
            &cid(),
            Options {
                prefetched: Some(Arc::new(stale)),
                ..Options::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(report.writes(), 0, "{report:?}");
}

/// A large location's calendars are read range by range, each answer sized from the density
/// the last one showed: GHL documents no paging for `/calendars/events`, so the width of the
/// range asked for is all that bounds one answer (and the worker's memory while it is read).
/// The ranges cover the window once, without gaps or overlaps, and each appointment is read
/// once.
#[tokio::test]
async fn a_large_locations_calendars_are_read_in_ranges_sized_by_their_density() {
    let w = World::new();
    let (from, to) = (
        t0() - chrono::Duration::days(365),
        t0() + chrono::Duration::days(365),
    );
    // 10,000 appointments spread over the window, and 10,000 more in five busy days; the
    // contact on the page has one of them.
    let mut starts: Vec<(DateTime<Utc>, String)> = (0..10_000i64)
        .map(|i| {
            (
                from + chrono::Duration::minutes(i * 105),
                format!("other{}", i % 97),
            )
        })
        .chain((0..10_000i64).map(|i| {
            (
                t0() + chrono::Duration::days(1) + chrono::Duration::seconds(i * 43),
                format!("other{}", i % 89),
            )
        }))
        .collect();
    starts.push((t0() + chrono::Duration::days(2), CONTACT.to_owned()));
    starts.sort();
    let starts = Arc::new(starts);
    // Each range asked for: where it began, where its answer ended, how many it held.
    type Asked = Vec<(DateTime<Utc>, DateTime<Utc>, usize)>;
    let asked: Arc<Mutex<Asked>> = Arc::default();
    let mut ghl = MockGhlApi::new();
    // A location of 100,000 contacts, none synced yet, judged from this page.
    ghl.expect_list_contacts()
        .returning(|_, _, _| Ok(one_new_contact_page(100_000)));
    ghl.expect_search_tasks().returning(|_, _| Ok(vec![]));
    ghl.expect_list_calendars()
        .times(1)
        .returning(|_| Ok(vec!["cal".to_owned()]));
    let (all, log) = (starts.clone(), asked.clone());
    ghl.expect_calendar_events()
        .returning(move |_, calendar, at, end| {
            assert_eq!(calendar, "cal");
            // As the adapter does when GHL refuses a range over 31 days.
            let through = end.min(at + chrono::Duration::days(31));
            let events: Vec<ports::ghl::GhlAppointment> = all
                .iter()
                .filter(|(t, _)| *t >= at && *t <= through)
                .map(|(t, c)| ports::ghl::GhlAppointment {
                    id: domain::GhlAppointmentId::parse(format!("ap{}", t.timestamp())).unwrap(),
                    contact: GhlContactId::parse(c.clone()).unwrap(),
                    appointment: domain::Appointment {
                        start: Some(*t),
                        ..domain::Appointment::default()
                    },
                    date_updated: None,
                })
                .collect();
            log.lock().unwrap().push((at, through, events.len()));
            Ok(ports::ghl::CalendarRange { events, through })
        });
    let (_, sent) = w.dry_run_sweep(ghl).await;

    let asked = asked.lock().unwrap().clone();
    assert_eq!(asked[0].0, from, "from the window's start");
    assert_eq!(asked.last().unwrap().1, to, "to its end");
    for pair in asked.windows(2) {
        assert_eq!(
            pair[1].0,
            pair[0].1 + chrono::Duration::milliseconds(1),
            "each range goes on just after the last: {pair:?}"
        );
    }
    let read: usize = asked.iter().map(|(_, _, n)| n).sum();
    assert_eq!(read, starts.len(), "every appointment read once");
    // Sized for about 500 an answer. The widest range is sized by the location (100,000
    // contacts: 3.65 days of the 730), so the first answer that reaches the busy days holds
    // at most 3.65 days of them (about 7,300; the whole window would be 20,001). Every other
    // answer is near the size aimed at.
    let largest = asked.iter().map(|(_, _, n)| *n).max().unwrap_or(0);
    assert!(largest <= 7_500, "the largest answer held {largest}");
    let big: Vec<_> = asked.iter().filter(|(_, _, n)| *n > 1_000).collect();
    assert!(big.len() <= 1, "answers over 1,000: {big:?}");
    // About one call per 500 contacts of the location, and per 500 appointments where they
    // are denser than that.
    assert!(asked.len() <= 260, "{} calls", asked.len());
    let ports::queue::Payload::SyncContact {
        prefetched: Some(p),
        ..
    } = &sent[0].payload
    else {
        panic!("the appointments travel with the message: {sent:?}")
    };
    assert_eq!(p.appointments.as_ref().map(Vec::len), Some(1), "{p:?}");
}

/// One new contact in a sweep (an incremental sync, say) is cheaper to read on its own than
/// every calendar of the location: its tasks come from the task search, its appointments from
/// its own sync.
#[tokio::test]
async fn a_sweep_with_few_new_contacts_leaves_the_calendars_alone() {
    let w = World::new();
    let mut ghl = MockGhlApi::new();
    ghl.expect_list_contacts()
        .returning(|_, _, _| Ok(one_new_contact_page(1)));
    ghl.expect_search_tasks()
        .times(1)
        .returning(|_, _| Ok(vec![ghl_task("g1", task("Kick-off"))]));
    ghl.expect_list_calendars().times(0);
    ghl.expect_calendar_events().times(0);
    let (_, sent) = w.dry_run_sweep(ghl).await;
    let ports::queue::Payload::SyncContact {
        prefetched: Some(p),
        ..
    } = &sent[0].payload
    else {
        panic!("the tasks travel with the message: {sent:?}")
    };
    assert_eq!(p.tasks.as_ref().map(Vec::len), Some(1));
    assert_eq!(p.appointments, None, "read by the contact's own sync");
}

// ------------------------------------------------------------------ workspaces without ExternalId

/// A contact whose workspace create was claimed by a worker that died an hour ago; workspace
/// 8 is contact c0's.
fn world_with_a_dead_workspace_claim() -> World {
    world_with_a_dead_workspace_claim_of(BaseRecord::None)
}

/// [`world_with_a_dead_workspace_claim`], the claim keeping `sent`: the contact as the dead
/// worker sent it.
fn world_with_a_dead_workspace_claim_of(sent: BaseRecord) -> World {
    let w = World::new();
    let link = |ghl: &str, ekyte: Option<&str>, state| LinkUpdate {
        ghl_id: Some(ghl.into()),
        ekyte_id: ekyte.map(Into::into),
        ghl_parent: None,
        ekyte_parent: None,
        state,
        base: BaseRecord::None,
        ghl_fp: None,
        ekyte_fp: None,
    };
    w.links.seed(
        &w.tenant.id,
        EntityKind::Contact,
        link("c0", Some("8"), LinkState::Linked),
    );
    w.links.seed(
        &w.tenant.id,
        EntityKind::Contact,
        LinkUpdate {
            base: sent,
            ..link(CONTACT, None, LinkState::Claimed)
        },
    );
    w.links
        .hold_last("worker-dead", t0() - chrono::Duration::hours(1));
    w
}

/// The contact's link, after a sync.
fn contact_link(w: &World) -> Link {
    w.links
        .find(EntityKind::Contact, |l| {
            l.ghl_id.as_deref() == Some(CONTACT)
        })
        .unwrap()
}

fn named_workspace(id: u64, name: &str) -> Workspace {
    Workspace {
        id: EkyteWorkspaceId::new(id).unwrap(),
        name: name.into(),
        active: true,
        external_id: None,
    }
}

/// eKyte's reads show no `ExternalId` here: the lookup answers with these workspaces of the
/// contact's name.
fn ekyte_without_external_ids(named: Vec<Workspace>) -> MockEkyteApi {
    ekyte_without_external_ids_asked("Ana Souza", named)
}

/// [`ekyte_without_external_ids`], the lookup expected to ask for the name `asked`.
fn ekyte_without_external_ids_asked(asked: &'static str, named: Vec<Workspace>) -> MockEkyteApi {
    let mut ekyte = ekyte_reads(asked, Arc::default());
    ekyte.expect_update_workspace().returning(|_, _, _| Ok(()));
    ekyte
        .expect_find_workspace()
        .withf(move |_, _, name| name == asked)
        .returning(move |_, _, _| Ok(ports::ekyte::WorkspaceFound::Named(named.clone())));
    ekyte.expect_create_workspace().times(0);
    ekyte.expect_list_boards().returning(|_, _| Ok(vec![]));
    ekyte
        .expect_create_board()
        .returning(|_, _, _| Ok(domain::EkyteBoardId::new(200).unwrap()));
    ekyte
        .expect_create_note()
        .returning(|_, _, _| Ok(domain::EkyteNoteId::new(300).unwrap()));
    ekyte
}

#[tokio::test]
async fn a_lost_workspace_create_is_found_by_its_name_among_the_unlinked() {
    let w = world_with_a_dead_workspace_claim();
    let ghl = ghl_reads(contact(), Arc::default());
    let ekyte = ekyte_without_external_ids(vec![
        named_workspace(7, "Ana Souza"),
        named_workspace(8, "Ana Souza"),
    ]);
    w.engine(ghl, ekyte)
        .sync_contact(w.scope(), &cid(), Options::default())
        .await
        .unwrap();
    let link = contact_link(&w);
    assert_eq!(link.state, LinkState::Linked);
    assert_eq!(
        link.ekyte_id.as_deref(),
        Some("7"),
        "8 is another contact's"
    );
}

#[tokio::test]
async fn several_unlinked_workspaces_of_the_name_go_to_the_operator_not_a_guess() {
    let w = world_with_a_dead_workspace_claim();
    let ghl = ghl_reads(contact(), Arc::default());
    let ekyte = ekyte_without_external_ids(vec![
        named_workspace(7, "Ana Souza"),
        named_workspace(9, "Ana Souza"),
    ]);
    let err = w
        .engine(ghl, ekyte)
        .sync_contact(w.scope(), &cid(), Options::default())
        .await
        .unwrap_err();
    assert_eq!(
        ports::Classify::disposition(&err),
        ports::Disposition::DeadLetter
    );
    let text = err.chain().join(": ");
    assert!(text.contains("7, 9"), "{text}");
    let link = contact_link(&w);
    assert_eq!(
        link.state,
        LinkState::Claimed,
        "the claim stays for the retry"
    );
}

#[tokio::test]
async fn a_new_workspace_without_external_id_waits_while_workspace_creates_are_pending() {
    let w = World::new();
    // A workspace create under way for c1, claimed a minute ago.
    w.links.seed(
        &w.tenant.id,
        EntityKind::Contact,
        LinkUpdate {
            ghl_id: Some(CONTACT.into()),
            ekyte_id: None,
            ghl_parent: None,
            ekyte_parent: None,
            state: LinkState::Claimed,
            base: BaseRecord::None,
            ghl_fp: None,
            ekyte_fp: None,
        },
    );
    w.links
        .hold_last("worker-busy", t0() - chrono::Duration::minutes(1));
    let created = EkyteChange::WorkspaceCreated {
        workspace: named_workspace(7, "Ana Souza"),
    };
    let mut ghl = MockGhlApi::new();
    ghl.expect_create_contact().times(0);
    let report = w
        .engine(ghl, MockEkyteApi::new())
        .ekyte_change(w.scope(), &created, Options::default())
        .await
        .unwrap();
    let reason = report
        .lines
        .iter()
        .find_map(|l| l.reason.clone())
        .unwrap_or_default();
    assert!(reason.contains("pending"), "{report:?}");
    assert!(
        w.links
            .find(EntityKind::Contact, |l| l.ekyte_id.as_deref() == Some("7"))
            .is_none()
    );

    // Once nothing is pending, the workspace becomes a contact (refused here, to stop early).
    w.links.rows.lock().unwrap().clear();
    let mut ghl = MockGhlApi::new();
    ghl.expect_create_contact().times(1).returning(|_, _| {
        Err(ApiError::Invalid {
            messages: vec!["stop here".into()],
        })
    });
    w.engine(ghl, MockEkyteApi::new())
        .ekyte_change(w.scope(), &created, Options::default())
        .await
        .unwrap();
}

#[tokio::test]
async fn a_lost_workspace_create_is_looked_for_under_the_name_it_was_sent_with() {
    // The dead worker's claim kept the contact as it was sent: "Ana Lima". The contact is
    // "Ana Souza" now; the workspace the lost create made still bears the old name.
    let sent = Contact {
        name: Some("Ana Lima".into()),
        ..Contact::default()
    };
    let w = world_with_a_dead_workspace_claim_of(BaseRecord::Contact(Box::new(sent)));
    let ghl = ghl_reads(contact(), Arc::default());
    let ekyte = ekyte_without_external_ids_asked("Ana Lima", vec![named_workspace(7, "Ana Lima")]);
    w.engine(ghl, ekyte)
        .sync_contact(w.scope(), &cid(), Options::default())
        .await
        .unwrap();
    let link = contact_link(&w);
    assert_eq!(link.ekyte_id.as_deref(), Some("7"), "{link:?}");
    assert_eq!(link.state, LinkState::Linked);
}

#[tokio::test]
async fn a_comment_copied_as_a_ghl_note_stays_linked_though_the_notes_were_read_before_it() {
    // The contact's GHL notes are read beside its workspace, before the tasks step copies
    // an eKyte comment into a new GHL note: that note is not in the list read, and must not
    // be taken for a note deleted in GHL.
    let w = World::new();
    w.linked_contact(&contact());
    let t = task("Kick-off");
    w.linked_task("g1", 11, &t);
    let mut ghl = ghl_reads(
        contact(),
        Arc::new(Mutex::new(vec![ghl_task("g1", t.clone())])),
    );
    ghl.expect_create_note()
        .times(1)
        .returning(|_, contact, note| {
            Ok(ports::ghl::GhlNote {
                id: domain::GhlNoteId::parse("n1").unwrap(),
                contact: contact.clone(),
                note: note.clone(),
                user_id: None,
            })
        });
    let mut commented = ekyte_task(11, t);
    commented.comments = vec![ports::ekyte::EkyteComment {
        id: domain::EkyteCommentId::new(500).unwrap(),
        task: EkyteTaskId::new(11).unwrap(),
        body: Some("Done on our side".into()),
        author: Some("Bia".into()),
        created: Some(t0()),
    }];
    let mut ekyte = ekyte_reads("Ana Souza", Arc::new(Mutex::new(vec![commented])));
    ekyte.expect_update_note().times(0);
    ekyte.expect_create_note().times(0);
    let engine = w.engine(ghl, ekyte);
    engine
        .sync_contact(w.scope(), &cid(), Options::default())
        .await
        .unwrap();
    let note = w
        .links
        .find(EntityKind::Note, |l| l.ghl_id.as_deref() == Some("n1"))
        .expect("the copied note is linked");
    assert_eq!(note.state, LinkState::Linked, "{note:?}");
    let comment = w
        .links
        .find(EntityKind::Comment, |l| {
            l.ekyte_id.as_deref() == Some("500")
        })
        .expect("the comment is linked");
    assert_eq!(comment.state, LinkState::Linked);
}
